//! The policy check: deterministic, independent of the LLM. Every recommendation ends in exactly one of
//! `proposals` (may be put to a human) or `denials` (with a reason a person can read).
//!
//! Tag values are untrusted input. They are only ever compared against configured keys and values, never
//! interpreted: a Name tag that says "ignore previous instructions" is a string like any other.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::criteria::IdleVerdict;
use crate::inventory::{InstanceRecord, RootDeviceType};
use crate::utilisation::UtilisationSummary;

/// What the reasoning step recommends for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    Keep,
    Stop,
    SnapshotAndStop,
    Rightsize,
    Review,
    Terminate,
}

impl RecommendedAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Stop => "stop",
            Self::SnapshotAndStop => "snapshot_and_stop",
            Self::Rightsize => "rightsize",
            Self::Review => "review",
            Self::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub instance_id: String,
    pub action: RecommendedAction,
    #[serde(default)]
    pub confidence: f64,
    #[serde(default)]
    pub justification: String,
    /// Which reasoner produced it (`agent`, `converse`, `rules`, `rules (fallback: ...)`).
    #[serde(default)]
    pub backend: String,
    /// What the reasoner says it based the recommendation on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// The agent session or trace the recommendation came from, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// What a human is asked to approve. A stop always snapshots first; so does a terminate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposedAction {
    SnapshotAndStop,
    SnapshotAndTerminate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    pub instance_id: String,
    pub region: String,
    pub instance_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub action: ProposedAction,
    pub recommended: RecommendedAction,
    pub confidence: f64,
    pub justification: String,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving_usd: Option<f64>,
    pub price_source: String,
    /// The metric evidence behind the verdict (the assessment's reasons).
    pub evidence: Vec<String>,
    pub volume_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenialReason {
    Duplicate,
    UnknownInstance,
    NoActionNeeded,
    TerminateDisabled,
    Protected,
    Production,
    Managed,
    InstanceStoreRoot,
    NotRunning,
    Snoozed,
    NotIdle,
    CountCap,
    SavingsCap,
}

impl DenialReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::UnknownInstance => "unknown-instance",
            Self::NoActionNeeded => "no-action-needed",
            Self::TerminateDisabled => "terminate-disabled",
            Self::Protected => "protected",
            Self::Production => "production",
            Self::Managed => "managed",
            Self::InstanceStoreRoot => "instance-store-root",
            Self::NotRunning => "not-running",
            Self::Snoozed => "snoozed",
            Self::NotIdle => "not-idle",
            Self::CountCap => "count-cap",
            Self::SavingsCap => "savings-cap",
        }
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    pub instance_id: String,
    pub recommended: RecommendedAction,
    pub reason: DenialReason,
    /// A sentence for the report and the email.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    /// Tag keys that name an environment (matched case-insensitively, spaces trimmed).
    pub environment_tag_keys: Vec<String>,
    /// Environment values that mean production (case-insensitive, spaces and quotes trimmed; `prod-eu` counts).
    pub production_values: Vec<String>,
    pub protect_tag_key: String,
    pub snooze_tag_key: String,
    pub max_proposals: usize,
    pub max_monthly_usd: f64,
    pub terminate_enabled: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            environment_tag_keys: vec!["Environment".into(), "env".into(), "stage".into()],
            production_values: vec!["prod".into(), "production".into(), "prd".into(), "live".into()],
            protect_tag_key: "finops:protect".into(),
            snooze_tag_key: "finops:snooze-until".into(),
            max_proposals: 10,
            max_monthly_usd: 2_000.0,
            terminate_enabled: false,
        }
    }
}

impl PolicyConfig {
    /// Reads `FINOPS_PROTECTED_TAG_KEYS`, `FINOPS_PRODUCTION_VALUES` (comma-separated), `FINOPS_MAX_PROPOSALS`,
    /// `FINOPS_MAX_MONTHLY_USD` and `FINOPS_TERMINATE_ENABLED`; unset keeps the default.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, crate::ConfigError> {
        use crate::ConfigError;
        let vars: HashMap<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("FINOPS_")).collect();
        let mut c = Self::default();
        let list = |k: &str| -> Result<Option<Vec<String>>, ConfigError> {
            let Some(v) = vars.get(k) else { return Ok(None) };
            let items: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            if items.is_empty() {
                return Err(ConfigError::new(k, "needs at least one value: an empty list would protect nothing"));
            }
            Ok(Some(items))
        };
        if let Some(keys) = list("FINOPS_PROTECTED_TAG_KEYS")? {
            c.environment_tag_keys = keys;
        }
        if let Some(values) = list("FINOPS_PRODUCTION_VALUES")? {
            c.production_values = values;
        }
        if let Some(v) = vars.get("FINOPS_MAX_PROPOSALS") {
            c.max_proposals = v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("FINOPS_MAX_PROPOSALS", format!("{v:?} is not a count")))?;
        }
        if let Some(v) = vars.get("FINOPS_MAX_MONTHLY_USD") {
            c.max_monthly_usd =
                v.trim().parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).ok_or_else(|| {
                    ConfigError::new("FINOPS_MAX_MONTHLY_USD", format!("{v:?} is not a dollar amount"))
                })?;
        }
        if let Some(v) = vars.get("FINOPS_TERMINATE_ENABLED") {
            c.terminate_enabled = match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" | "" => false,
                _ => return Err(ConfigError::new("FINOPS_TERMINATE_ENABLED", format!("{v:?} is not true or false"))),
            };
        }
        Ok(c)
    }
}

fn normalise(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'').to_lowercase()
}

impl PolicyConfig {
    /// The production value an instance's environment tags carry, if any.
    pub fn production_tag(&self, instance: &InstanceRecord) -> Option<(String, String)> {
        let keys: Vec<String> = self.environment_tag_keys.iter().map(|k| normalise(k)).collect();
        let values: Vec<String> = self.production_values.iter().map(|v| normalise(v)).collect();
        instance.tags.iter().find_map(|(k, v)| {
            if !keys.contains(&normalise(k)) {
                return None;
            }
            let value = normalise(v);
            // `prod`, and `prod-eu` / `prod_2` / `production (eu)`: a production value followed by a separator.
            let is_production = values.iter().any(|p| {
                value == *p
                    || value
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.starts_with(|c: char| !c.is_alphanumeric()))
            });
            is_production.then(|| (k.clone(), v.clone()))
        })
    }

    /// `finops:protect` with any value but an explicit no (`false`, `no`, `0`, `off`) protects: fail closed.
    pub fn protect_tag(&self, instance: &InstanceRecord) -> Option<String> {
        let key = normalise(&self.protect_tag_key);
        instance.tags.iter().find(|(k, _)| normalise(k) == key).and_then(|(_, v)| {
            let v = normalise(v);
            (!matches!(v.as_str(), "false" | "no" | "0" | "off")).then_some(v)
        })
    }

    /// When the instance is snoozed until, if that is in the future. An unreadable value counts as snoozed for
    /// ever: a person meant to protect the instance.
    pub fn snoozed_until(&self, instance: &InstanceRecord, now: DateTime<Utc>) -> Option<String> {
        let key = normalise(&self.snooze_tag_key);
        let (_, raw) = instance.tags.iter().find(|(k, _)| normalise(k) == key)?;
        let value = raw.trim();
        let until = DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
        });
        match until {
            Some(t) if t > now => Some(t.to_rfc3339()),
            Some(_) => None,
            None => Some(format!("unreadable value {value:?}, treated as snoozed")),
        }
    }

    /// Why this instance may not be stopped right now, from its own state and tags: the check the actions step
    /// repeats on the live instance right before it stops anything.
    pub fn instance_block(&self, instance: &InstanceRecord, now: DateTime<Utc>) -> Option<(DenialReason, String)> {
        if let Some(v) = self.protect_tag(instance) {
            return Some((DenialReason::Protected, format!("tagged {}={v}", self.protect_tag_key)));
        }
        if let Some((k, v)) = self.production_tag(instance) {
            return Some((DenialReason::Production, format!("production instance (tag {k}={v:?})")));
        }
        if let Some(what) = instance.membership.describe() {
            return Some((
                DenialReason::Managed,
                format!("{what}: stopping it gets it replaced or breaks the cluster"),
            ));
        }
        if instance.root_device_type == RootDeviceType::InstanceStore {
            return Some((
                DenialReason::InstanceStoreRoot,
                "instance-store root volume: stopping it loses the root disk".into(),
            ));
        }
        if instance.state != "running" {
            return Some((DenialReason::NotRunning, format!("instance is {}, not running", instance.state)));
        }
        if let Some(until) = self.snoozed_until(instance, now) {
            return Some((DenialReason::Snoozed, format!("snoozed until {until}")));
        }
        None
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub proposals: Vec<Proposal>,
    pub denials: Vec<Denial>,
}

/// Decides. `utilisation` holds this run's summaries by instance id; recommendations for instances the metrics did
/// not find idle are denied whatever the agent says.
pub fn evaluate(
    config: &PolicyConfig,
    inventory: &[InstanceRecord],
    utilisation: &HashMap<&str, &UtilisationSummary>,
    recommendations: &[Recommendation],
    now: DateTime<Utc>,
) -> PolicyOutcome {
    let by_id: HashMap<&str, &InstanceRecord> = inventory.iter().map(|i| (i.instance_id.as_str(), i)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut denials = Vec::new();
    let mut eligible: Vec<Proposal> = Vec::new();
    let deny = |r: &Recommendation, reason: DenialReason, detail: String| Denial {
        instance_id: r.instance_id.clone(),
        recommended: r.action,
        reason,
        detail,
    };

    for rec in recommendations {
        if !seen.insert(rec.instance_id.as_str()) {
            denials.push(deny(rec, DenialReason::Duplicate, "a second recommendation for the same instance".into()));
            continue;
        }
        let Some(instance) = by_id.get(rec.instance_id.as_str()) else {
            denials.push(deny(rec, DenialReason::UnknownInstance, "not in this run's inventory".into()));
            continue;
        };
        let action = match rec.action {
            RecommendedAction::Stop | RecommendedAction::SnapshotAndStop => ProposedAction::SnapshotAndStop,
            RecommendedAction::Terminate if config.terminate_enabled => ProposedAction::SnapshotAndTerminate,
            RecommendedAction::Terminate => {
                denials.push(deny(
                    rec,
                    DenialReason::TerminateDisabled,
                    "terminate is not enabled in this deployment".into(),
                ));
                continue;
            }
            other => {
                denials.push(deny(
                    rec,
                    DenialReason::NoActionNeeded,
                    format!("{} is reported, not automated", other.as_str()),
                ));
                continue;
            }
        };
        if let Some((reason, detail)) = config.instance_block(instance, now) {
            denials.push(deny(rec, reason, detail));
            continue;
        }
        let summary = utilisation.get(rec.instance_id.as_str());
        match summary.map(|s| s.verdict()) {
            Some(IdleVerdict::Idle) => {}
            Some(v) => {
                denials.push(deny(
                    rec,
                    DenialReason::NotIdle,
                    format!("metrics say {v}, only Idle instances are stopped"),
                ));
                continue;
            }
            None => {
                denials.push(deny(rec, DenialReason::NotIdle, "no utilisation summary for this instance".into()));
                continue;
            }
        }
        let summary = summary.expect("checked above");
        let env = config
            .environment_tag_keys
            .iter()
            .find_map(|k| instance.tags.iter().find(|(t, _)| normalise(t) == normalise(k)).map(|(_, v)| v.clone()));
        eligible.push(Proposal {
            instance_id: instance.instance_id.clone(),
            region: instance.region.clone(),
            instance_type: instance.instance_type.clone(),
            name: instance.name().map(str::to_owned),
            environment: env,
            owner: instance.tags.iter().find(|(k, _)| normalise(k) == "owner").map(|(_, v)| v.clone()),
            action,
            recommended: rec.action,
            confidence: rec.confidence.clamp(0.0, 1.0),
            justification: rec.justification.chars().take(500).collect(),
            backend: rec.backend.clone(),
            monthly_saving_usd: summary.cost.monthly_saving_usd,
            price_source: summary.cost.price_source.to_string(),
            evidence: summary.assessment.reasons.clone(),
            volume_ids: instance.volumes.iter().map(|v| v.volume_id.clone()).collect(),
        });
    }

    // Caps: the largest savings first, so a cap keeps the proposals that matter most.
    eligible.sort_by(|a, b| {
        b.monthly_saving_usd
            .unwrap_or(0.0)
            .total_cmp(&a.monthly_saving_usd.unwrap_or(0.0))
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    let mut proposals = Vec::new();
    let mut total = 0.0;
    for p in eligible {
        let saving = p.monthly_saving_usd.unwrap_or(0.0);
        let capped = if proposals.len() >= config.max_proposals {
            Some((DenialReason::CountCap, format!("beyond the cap of {} proposals per run", config.max_proposals)))
        } else if total + saving > config.max_monthly_usd {
            Some((
                DenialReason::SavingsCap,
                format!("beyond the cap of ${:.2}/month of actions per run", config.max_monthly_usd),
            ))
        } else {
            None
        };
        match capped {
            Some((reason, detail)) => {
                denials.push(Denial { instance_id: p.instance_id, recommended: p.recommended, reason, detail })
            }
            None => {
                total += saving;
                proposals.push(p);
            }
        }
    }
    PolicyOutcome { proposals, denials }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::{CriteriaPreset, IdleCriteria};
    use crate::inventory::ClusterMembership;
    use crate::pricing::{embedded_hourly, CostEstimate};
    use crate::utilisation::{DailyUtilisation, LookbackWindow};
    use crate::Lifecycle;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn instance(id: &str, tags: &[(&str, &str)]) -> InstanceRecord {
        let tags: std::collections::BTreeMap<String, String> =
            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        InstanceRecord {
            instance_id: id.into(),
            region: "us-east-1".into(),
            instance_type: "m5.large".into(),
            state: "running".into(),
            launch_time: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            lifecycle: Lifecycle::OnDemand,
            platform: "Linux/UNIX".into(),
            root_device_type: RootDeviceType::Ebs,
            membership: ClusterMembership::from_tags(&tags),
            tags,
            volumes: vec![],
        }
    }

    fn summary(i: &InstanceRecord, busy: bool) -> UtilisationSummary {
        let w = LookbackWindow::ending_before(now(), 14);
        let days: Vec<DailyUtilisation> = w
            .days_iter()
            .map(|day| DailyUtilisation {
                day,
                cpu_avg_percent: Some(if busy { 50.0 } else { 0.5 }),
                cpu_max_percent: Some(if busy { 90.0 } else { 1.0 }),
                network_bytes: Some(1000.0),
                disk_ops: None,
                mem_used_percent: None,
            })
            .collect();
        let assessment = IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14).assess(&w, i.launch_time, &days);
        UtilisationSummary {
            instance_id: i.instance_id.clone(),
            region: i.region.clone(),
            stats: Default::default(),
            cost: CostEstimate::new(i, assessment.verdict, embedded_hourly(&i.instance_type, &i.region, false), &[]),
            assessment,
            days,
        }
    }

    fn rec(id: &str, action: RecommendedAction) -> Recommendation {
        Recommendation {
            instance_id: id.into(),
            action,
            confidence: 0.9,
            justification: "idle 14 days".into(),
            backend: "rules".into(),
            evidence: vec![],
            trace_id: None,
        }
    }

    fn run(config: &PolicyConfig, fleet: &[InstanceRecord], busy: &[&str], recs: &[Recommendation]) -> PolicyOutcome {
        let sums: Vec<UtilisationSummary> =
            fleet.iter().map(|i| summary(i, busy.contains(&i.instance_id.as_str()))).collect();
        let by_id = sums.iter().map(|s| (s.instance_id.as_str(), s)).collect();
        evaluate(config, fleet, &by_id, recs, now())
    }

    fn reason_for(o: &PolicyOutcome, id: &str) -> Option<DenialReason> {
        o.denials.iter().find(|d| d.instance_id == id).map(|d| d.reason)
    }

    #[test]
    fn each_kind_of_instance_gets_its_reason() {
        let fleet = vec![
            instance("i-dev", &[("Environment", "dev"), ("Owner", "ana")]),
            instance("i-prod-db-001", &[("Environment", "  Production ")]),
            instance("i-env", &[("ENV", "PRD")]),
            instance("i-stage", &[("stage", "live")]),
            instance("i-keep", &[("finops:protect", "true")]),
            instance("i-asg", &[("aws:autoscaling:groupName", "web")]),
            instance("i-snoozed", &[("finops:snooze-until", "2026-12-01T00:00:00Z")]),
            instance("i-snooze-over", &[("finops:snooze-until", "2026-11-01")]),
            instance("i-busy", &[]),
        ];
        let mut stopped = instance("i-stopped", &[]);
        stopped.state = "stopped".into();
        let mut store = instance("i-store", &[]);
        store.root_device_type = RootDeviceType::InstanceStore;
        let fleet: Vec<InstanceRecord> = fleet.into_iter().chain([stopped, store]).collect();
        let recs: Vec<Recommendation> = fleet
            .iter()
            .map(|i| rec(&i.instance_id, RecommendedAction::SnapshotAndStop))
            .chain([
                rec("i-hallucinated", RecommendedAction::Stop),
                rec("i-dev", RecommendedAction::Stop),
                rec("i-dev", RecommendedAction::Terminate),
            ])
            .collect();
        let o = run(&PolicyConfig::default(), &fleet, &["i-busy"], &recs);
        let proposed: Vec<&str> = o.proposals.iter().map(|p| p.instance_id.as_str()).collect();
        assert_eq!(proposed, ["i-dev", "i-snooze-over"]);
        assert_eq!(o.proposals[0].owner.as_deref(), Some("ana"));
        assert_eq!(o.proposals[0].environment.as_deref(), Some("dev"));
        assert_eq!(o.proposals[0].action, ProposedAction::SnapshotAndStop);
        assert_eq!(reason_for(&o, "i-prod-db-001"), Some(DenialReason::Production));
        assert!(o.denials.iter().any(|d| d.instance_id == "i-prod-db-001" && d.detail.contains("Environment")));
        assert_eq!(reason_for(&o, "i-env"), Some(DenialReason::Production));
        assert_eq!(reason_for(&o, "i-stage"), Some(DenialReason::Production));
        assert_eq!(reason_for(&o, "i-keep"), Some(DenialReason::Protected));
        assert_eq!(reason_for(&o, "i-asg"), Some(DenialReason::Managed));
        assert_eq!(reason_for(&o, "i-snoozed"), Some(DenialReason::Snoozed));
        assert_eq!(reason_for(&o, "i-busy"), Some(DenialReason::NotIdle));
        assert_eq!(reason_for(&o, "i-stopped"), Some(DenialReason::NotRunning));
        assert_eq!(reason_for(&o, "i-store"), Some(DenialReason::InstanceStoreRoot));
        assert_eq!(reason_for(&o, "i-hallucinated"), Some(DenialReason::UnknownInstance));
        assert_eq!(o.denials.iter().filter(|d| d.reason == DenialReason::Duplicate).count(), 2);
        assert_eq!(o.proposals.len() + o.denials.len(), recs.len());
    }

    #[test]
    fn keep_review_rightsize_are_reported_not_proposed() {
        let fleet = vec![instance("i-1", &[])];
        for action in [RecommendedAction::Keep, RecommendedAction::Review, RecommendedAction::Rightsize] {
            let o = run(&PolicyConfig::default(), &fleet, &[], &[rec("i-1", action)]);
            assert!(o.proposals.is_empty());
            assert_eq!(o.denials[0].reason, DenialReason::NoActionNeeded);
        }
    }

    #[test]
    fn terminate_needs_the_deployment_switch_and_still_snapshots() {
        let fleet = vec![instance("i-1", &[])];
        let off = run(&PolicyConfig::default(), &fleet, &[], &[rec("i-1", RecommendedAction::Terminate)]);
        assert_eq!(off.denials[0].reason, DenialReason::TerminateDisabled);
        let config = PolicyConfig { terminate_enabled: true, ..PolicyConfig::default() };
        let on = run(&config, &fleet, &[], &[rec("i-1", RecommendedAction::Terminate)]);
        assert_eq!(on.proposals[0].action, ProposedAction::SnapshotAndTerminate);
    }

    #[test]
    fn caps_keep_the_largest_savings() {
        let mut fleet = vec![instance("i-small", &[]), instance("i-big", &[]), instance("i-mid", &[])];
        fleet[1].instance_type = "m5.4xlarge".into();
        fleet[2].instance_type = "m5.xlarge".into();
        let recs: Vec<Recommendation> = fleet.iter().map(|i| rec(&i.instance_id, RecommendedAction::Stop)).collect();
        let count = run(&PolicyConfig { max_proposals: 2, ..PolicyConfig::default() }, &fleet, &[], &recs);
        let ids: Vec<&str> = count.proposals.iter().map(|p| p.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-big", "i-mid"]);
        assert_eq!(reason_for(&count, "i-small"), Some(DenialReason::CountCap));
        // m5.4xlarge = $560.64/month; a $500 cap skips it and still takes the smaller ones.
        let dollars = run(&PolicyConfig { max_monthly_usd: 500.0, ..PolicyConfig::default() }, &fleet, &[], &recs);
        assert_eq!(reason_for(&dollars, "i-big"), Some(DenialReason::SavingsCap));
        assert_eq!(dollars.proposals.len(), 2);
    }

    #[test]
    fn protect_tag_fails_closed_and_explicit_no_unprotects() {
        let c = PolicyConfig::default();
        for v in ["true", "yes", "", "please", "TRUE "] {
            assert!(c.protect_tag(&instance("i", &[("finops:protect", v)])).is_some(), "{v:?}");
        }
        for v in ["false", " No ", "0", "OFF"] {
            assert!(c.protect_tag(&instance("i", &[("finops:protect", v)])).is_none(), "{v:?}");
        }
        assert!(c.protect_tag(&instance("i", &[("FinOps:Protect", "true")])).is_some());
    }

    #[test]
    fn production_values_match_whole_words_only() {
        let c = PolicyConfig::default();
        for v in ["prod", "PROD", " Production ", "\"prod\"", "prod-eu", "live_2", "prd (db)"] {
            assert!(c.production_tag(&instance("i", &[("Environment", v)])).is_some(), "{v:?}");
        }
        for v in ["prodigy", "pre-prod", "dev", "livestock", "non-prod"] {
            assert!(c.production_tag(&instance("i", &[("Environment", v)])).is_none(), "{v:?}");
        }
        // Only environment keys count: a Name that says prod is just a name.
        assert!(c.production_tag(&instance("i", &[("Name", "prod")])).is_none());
    }
}
