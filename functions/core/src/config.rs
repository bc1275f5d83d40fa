//! Detection configuration, read from environment variables (Lambda configuration, CDK context) and overridable
//! per run by the schedule's input or CLI flags.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::criteria::{CriteriaPreset, IdleCriteria, Qualifying, Threshold, BYTES_PER_MB, DEFAULT_LOOKBACK_DAYS};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("configuration {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self { key: key.to_owned(), message: message.into() }
    }
}

/// The deployment's mode (`FINOPS_MODE`). In `Recommend` nobody is ever asked to approve anything and nothing is
/// done, whatever a run's input or an agent tool asks for. Unset is `Recommend`: a deployment acts only when it says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentMode {
    Recommend,
    Act,
}

impl DeploymentMode {
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, ConfigError> {
        match vars.into_iter().find(|(k, _)| k == "FINOPS_MODE").map(|(_, v)| v.trim().to_ascii_lowercase()) {
            None => Ok(Self::Recommend),
            Some(v) if v == "recommend" => Ok(Self::Recommend),
            Some(v) if v == "act" => Ok(Self::Act),
            Some(v) => Err(ConfigError::new("FINOPS_MODE", format!("{v:?}: allowed are recommend, act"))),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Recommend => "recommend",
            Self::Act => "act",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PricingMode {
    /// AWS Price List Query API, embedded table when it fails.
    Api,
    /// Only the embedded table (offline, emulated AWS).
    Embedded,
}

/// How the metrics step asks CloudWatch (`FINOPS_METRIC_STAGES`). CloudWatch bills GetMetricData per metric
/// requested, and most instances are busy: `Two` asks one CPU statistic of every instance first and the other
/// metrics only of those it does not settle ([`crate::IdleCriteria::screen`]); verdicts and reasons are the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricStages {
    /// Every metric of every instance in one pass (six or seven per instance).
    One,
    #[default]
    Two,
}

/// Longest lookback accepted: CloudWatch keeps 5-minute datapoints (which daily Maximum is computed from) for 63
/// days.
pub const MAX_LOOKBACK_DAYS: u32 = 63;
pub const DEFAULT_SHORTLIST_LIMIT: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionConfig {
    pub criteria: IdleCriteria,
    pub run_bucket: Option<String>,
    /// Most shortlist entries put into a step's output; the full shortlist is always in the run bucket.
    pub shortlist_limit: usize,
    pub pricing: PricingMode,
    #[serde(default)]
    pub metric_stages: MetricStages,
    /// How long an instance must have been stopped before its volumes' cost is reported as waste
    /// (`FINOPS_STOPPED_DAYS`, 1 to 365, default 30).
    #[serde(default = "default_stopped_days")]
    pub stopped_days: u32,
}

pub const DEFAULT_STOPPED_DAYS: u32 = 30;

fn default_stopped_days() -> u32 {
    DEFAULT_STOPPED_DAYS
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            criteria: IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, DEFAULT_LOOKBACK_DAYS),
            run_bucket: None,
            shortlist_limit: DEFAULT_SHORTLIST_LIMIT,
            pricing: PricingMode::Api,
            metric_stages: MetricStages::Two,
            stopped_days: DEFAULT_STOPPED_DAYS,
        }
    }
}

/// Environment variables understood, for documentation and error messages.
pub const ENV_KEYS: &[&str] = &[
    "FINOPS_CRITERIA",
    "FINOPS_LOOKBACK_DAYS",
    "FINOPS_MIN_DAYS_WITH_DATA",
    "FINOPS_IDLE_CPU_PERCENT",
    "FINOPS_IDLE_NETWORK_MB",
    "FINOPS_IDLE_DISK_OPS",
    "FINOPS_IDLE_MEM_PERCENT",
    "FINOPS_UNDERUTILISED_CPU_PERCENT",
    "FINOPS_UNDERUTILISED_NETWORK_MB",
    "FINOPS_UNDERUTILISED_MIN_DAYS",
    "FINOPS_RUN_BUCKET",
    "FINOPS_SHORTLIST_LIMIT",
    "FINOPS_PRICING",
    "FINOPS_METRIC_STAGES",
    "FINOPS_STOPPED_DAYS",
];

impl DetectionConfig {
    /// Reads the `FINOPS_*` variables of the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads configuration from name/value pairs; anything unset keeps its default.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> =
            vars.into_iter().filter(|(k, v)| k.starts_with("FINOPS_") && !v.trim().is_empty()).collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim());
        let preset = match get("FINOPS_CRITERIA") {
            Some(v) => CriteriaPreset::parse(v).map_err(|m| ConfigError::new("FINOPS_CRITERIA", m))?,
            None => CriteriaPreset::TrustedAdvisor,
        };
        let lookback = match get("FINOPS_LOOKBACK_DAYS") {
            Some(v) => parse_lookback("FINOPS_LOOKBACK_DAYS", v)?,
            None => DEFAULT_LOOKBACK_DAYS,
        };
        let mut config = Self { criteria: IdleCriteria::preset(preset, lookback), ..Self::default() };
        if let Some(v) = get("FINOPS_MIN_DAYS_WITH_DATA") {
            config.criteria.min_days_with_data =
                parse_in("FINOPS_MIN_DAYS_WITH_DATA", v, 1.0, f64::from(lookback))? as u32;
        }
        if let Some(rule) = config.criteria.idle.as_mut() {
            if let Some(v) = get("FINOPS_IDLE_CPU_PERCENT") {
                rule.cpu_percent = Threshold::below(parse_in("FINOPS_IDLE_CPU_PERCENT", v, 0.0, 100.0)?);
            }
            if let Some(v) = get("FINOPS_IDLE_NETWORK_MB") {
                rule.network_bytes = Threshold::below(parse_in("FINOPS_IDLE_NETWORK_MB", v, 0.0, 1e9)? * BYTES_PER_MB);
            }
            if let Some(v) = get("FINOPS_IDLE_DISK_OPS") {
                rule.disk_ops = if v.eq_ignore_ascii_case("off") {
                    None
                } else {
                    Some(Threshold::below(parse_in("FINOPS_IDLE_DISK_OPS", v, 0.0, 1e15)?))
                };
            }
            if let Some(v) = get("FINOPS_IDLE_MEM_PERCENT") {
                rule.mem_used_percent = Some(Threshold::below(parse_in("FINOPS_IDLE_MEM_PERCENT", v, 0.0, 100.0)?));
            }
        }
        if let Some(rule) = config.criteria.underutilised.as_mut() {
            if let Some(v) = get("FINOPS_UNDERUTILISED_CPU_PERCENT") {
                rule.cpu_percent = Threshold::at_most(parse_in("FINOPS_UNDERUTILISED_CPU_PERCENT", v, 0.0, 100.0)?);
            }
            if let Some(v) = get("FINOPS_UNDERUTILISED_NETWORK_MB") {
                rule.network_bytes =
                    Threshold::at_most(parse_in("FINOPS_UNDERUTILISED_NETWORK_MB", v, 0.0, 1e9)? * BYTES_PER_MB);
            }
            if let Some(v) = get("FINOPS_UNDERUTILISED_MIN_DAYS") {
                let days = parse_in("FINOPS_UNDERUTILISED_MIN_DAYS", v, 1.0, f64::from(lookback))?;
                rule.qualifying = Qualifying::AtLeast(days as u32);
            }
        }
        config.run_bucket = get("FINOPS_RUN_BUCKET").map(str::to_owned);
        if let Some(v) = get("FINOPS_STOPPED_DAYS") {
            config.stopped_days = parse_in("FINOPS_STOPPED_DAYS", v, 1.0, 365.0)? as u32;
        }
        if let Some(v) = get("FINOPS_SHORTLIST_LIMIT") {
            config.shortlist_limit = parse_in("FINOPS_SHORTLIST_LIMIT", v, 1.0, 5000.0)? as usize;
        }
        if let Some(v) = get("FINOPS_PRICING") {
            config.pricing = match v.to_ascii_lowercase().as_str() {
                "api" => PricingMode::Api,
                "embedded" => PricingMode::Embedded,
                _ => return Err(ConfigError::new("FINOPS_PRICING", format!("{v:?} is not one of: api, embedded"))),
            };
        }
        if let Some(v) = get("FINOPS_METRIC_STAGES") {
            config.metric_stages = match v.to_ascii_lowercase().as_str() {
                "two" | "2" => MetricStages::Two,
                "one" | "1" => MetricStages::One,
                _ => return Err(ConfigError::new("FINOPS_METRIC_STAGES", format!("{v:?} is not one of: two, one"))),
            };
        }
        Ok(config)
    }

    /// The run bucket, which every step that stores run documents needs (`FINOPS_RUN_BUCKET`).
    pub fn required_run_bucket(&self) -> Result<&str, ConfigError> {
        self.run_bucket.as_deref().ok_or_else(|| ConfigError::new("FINOPS_RUN_BUCKET", "is not set"))
    }

    /// Applies a run's own `lookbackDays` and `criteria` (schedule input, CLI flags). Threshold overrides made by
    /// environment stay; the rules' day counts follow the new lookback.
    pub fn with_run_overrides(
        mut self,
        lookback_days: Option<u32>,
        criteria: Option<&str>,
    ) -> Result<Self, ConfigError> {
        if let Some(c) = criteria {
            let preset = CriteriaPreset::parse(c).map_err(|m| ConfigError::new("criteria", m))?;
            if preset != self.criteria.preset {
                let mut fresh = IdleCriteria::preset(preset, self.criteria.lookback_days);
                fresh.idle = self.criteria.idle.clone();
                fresh.min_days_with_data = self.criteria.min_days_with_data;
                self.criteria = fresh;
            }
        }
        if let Some(days) = lookback_days {
            if !(1..=MAX_LOOKBACK_DAYS).contains(&days) {
                return Err(ConfigError::new("lookbackDays", format!("{days} is outside 1..={MAX_LOOKBACK_DAYS}")));
            }
            let follows_lookback = self.criteria.min_days_with_data == self.criteria.lookback_days;
            self.criteria.lookback_days = days;
            if follows_lookback || self.criteria.min_days_with_data > days {
                self.criteria.min_days_with_data = days;
            }
        }
        Ok(self)
    }
}

fn parse_lookback(key: &str, v: &str) -> Result<u32, ConfigError> {
    Ok(parse_in(key, v, 1.0, f64::from(MAX_LOOKBACK_DAYS))? as u32)
}

fn parse_in(key: &str, v: &str, min: f64, max: f64) -> Result<f64, ConfigError> {
    let n: f64 = v.parse().map_err(|_| ConfigError::new(key, format!("{v:?} is not a number")))?;
    if !n.is_finite() || n < min || n > max {
        return Err(ConfigError::new(key, format!("{v} is outside {min}..={max}")));
    }
    Ok(n)
}

/// A required, non-empty variable of a step's environment.
pub fn required_var(vars: &[(String, String)], name: &str) -> Result<String, ConfigError> {
    vars.iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_owned())
        .ok_or_else(|| ConfigError::new(name, "is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::CpuStatistic;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_trusted_advisor_over_14_days_with_both_rules() {
        let c = DetectionConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.criteria.preset, CriteriaPreset::TrustedAdvisor);
        assert_eq!(c.criteria.lookback_days, 14);
        assert_eq!(c.criteria.min_days_with_data, 14);
        assert_eq!(c.criteria.idle.as_ref().unwrap().cpu_statistic, CpuStatistic::Maximum);
        assert_eq!(c.criteria.underutilised.as_ref().unwrap().qualifying, Qualifying::AtLeast(4));
        assert_eq!(c.pricing, PricingMode::Api);
    }

    #[test]
    fn every_threshold_can_be_set() {
        let c = DetectionConfig::from_vars(vars(&[
            ("FINOPS_LOOKBACK_DAYS", "30"),
            ("FINOPS_IDLE_CPU_PERCENT", "3"),
            ("FINOPS_IDLE_NETWORK_MB", "2.5"),
            ("FINOPS_IDLE_DISK_OPS", "off"),
            ("FINOPS_IDLE_MEM_PERCENT", "15"),
            ("FINOPS_UNDERUTILISED_CPU_PERCENT", "20"),
            ("FINOPS_UNDERUTILISED_NETWORK_MB", "50"),
            ("FINOPS_UNDERUTILISED_MIN_DAYS", "7"),
            ("FINOPS_MIN_DAYS_WITH_DATA", "25"),
            ("FINOPS_RUN_BUCKET", "runs"),
            ("FINOPS_SHORTLIST_LIMIT", "50"),
            ("FINOPS_STOPPED_DAYS", "45"),
            ("FINOPS_PRICING", "embedded"),
            ("FINOPS_METRIC_STAGES", "one"),
        ]))
        .unwrap();
        let idle = c.criteria.idle.as_ref().unwrap();
        assert_eq!(idle.cpu_percent, Threshold::below(3.0));
        assert_eq!(idle.network_bytes, Threshold::below(2_500_000.0));
        assert_eq!(idle.disk_ops, None);
        assert_eq!(idle.mem_used_percent, Some(Threshold::below(15.0)));
        let ta = c.criteria.underutilised.as_ref().unwrap();
        assert_eq!(ta.cpu_percent, Threshold::at_most(20.0));
        assert_eq!(ta.network_bytes, Threshold::at_most(50_000_000.0));
        assert_eq!(ta.qualifying, Qualifying::AtLeast(7));
        assert_eq!(c.criteria.lookback_days, 30);
        assert_eq!(c.criteria.min_days_with_data, 25);
        assert_eq!(c.run_bucket.as_deref(), Some("runs"));
        assert_eq!(c.shortlist_limit, 50);
        assert_eq!(c.stopped_days, 45);
        assert_eq!(c.pricing, PricingMode::Embedded);
        assert_eq!(c.metric_stages, MetricStages::One);
        assert_eq!(DetectionConfig::from_vars(vars(&[])).unwrap().metric_stages, MetricStages::Two, "the default");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("FINOPS_LOOKBACK_DAYS", "0"),
            ("FINOPS_LOOKBACK_DAYS", "400"),
            ("FINOPS_IDLE_CPU_PERCENT", "ten"),
            ("FINOPS_IDLE_CPU_PERCENT", "150"),
            ("FINOPS_CRITERIA", "lazy"),
            ("FINOPS_PRICING", "guess"),
            ("FINOPS_METRIC_STAGES", "three"),
            ("FINOPS_UNDERUTILISED_MIN_DAYS", "15"),
        ] {
            let e = DetectionConfig::from_vars(vars(&[(k, v)])).unwrap_err();
            assert_eq!(e.key, k, "{v}");
        }
    }

    #[test]
    fn run_overrides_move_lookback_and_preset() {
        let c = DetectionConfig::from_vars(vars(&[("FINOPS_IDLE_CPU_PERCENT", "3")])).unwrap();
        let c = c.with_run_overrides(Some(7), Some("idle")).unwrap();
        assert_eq!(c.criteria.preset, CriteriaPreset::Idle);
        assert!(c.criteria.underutilised.is_none());
        assert_eq!(c.criteria.lookback_days, 7);
        assert_eq!(c.criteria.min_days_with_data, 7);
        assert_eq!(c.criteria.idle.as_ref().unwrap().cpu_percent, Threshold::below(3.0), "env override kept");
        assert_eq!(DetectionConfig::default().with_run_overrides(Some(0), None).unwrap_err().key, "lookbackDays");
        assert_eq!(DetectionConfig::default().with_run_overrides(None, Some("x")).unwrap_err().key, "criteria");
    }
}
