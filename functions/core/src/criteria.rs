//! Idle criteria: which daily thresholds make an instance `Idle` or `Underutilised`, and the verdict with its
//! reasons.
//!
//! Two rules exist, each a set of daily thresholds plus how many days must meet them:
//! - the strict *idle* rule (Compute Optimizer style): peak CPU < 5 % and network < 5 MB on every day;
//! - the *Trusted Advisor* "Low Utilization" rule: average CPU <= 10 % and network <= 5 MB on at least 4 days.
//!
//! An idle day always meets the Trusted Advisor thresholds too, so `Idle` is the stronger verdict. The preset
//! `idle` evaluates only the strict rule; `trusted-advisor` (the default) evaluates the strict rule first and then
//! the Trusted Advisor rule, so stop candidates and rightsizing candidates come out of one scan.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::daily::{DailyUtilisation, LookbackWindow};
use crate::verdict::{Assessment, IdleVerdict};

/// 1 MB as the thresholds use it. Decimal (10^6 bytes), the smaller reading of "5 MB": a smaller threshold flags
/// fewer instances, which is the safe side for a tool that proposes stops.
pub const BYTES_PER_MB: f64 = 1_000_000.0;

/// A daily value passes when it is below the limit (`inclusive`: at or below).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub limit: f64,
    pub inclusive: bool,
}

impl Threshold {
    pub const fn below(limit: f64) -> Self {
        Self { limit, inclusive: false }
    }
    pub const fn at_most(limit: f64) -> Self {
        Self { limit, inclusive: true }
    }
    pub fn passes(&self, value: f64) -> bool {
        if self.inclusive {
            value <= self.limit
        } else {
            value < self.limit
        }
    }
    fn op(&self) -> &'static str {
        if self.inclusive {
            "<="
        } else {
            "<"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuStatistic {
    /// The day's average CPUUtilization.
    Average,
    /// The day's highest CPUUtilization datapoint: one busy hour keeps the day from counting as idle.
    Maximum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "days")]
pub enum Qualifying {
    /// Every day of the lookback must meet the thresholds.
    EveryDay,
    /// At least this many days must.
    AtLeast(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRule {
    pub cpu_statistic: CpuStatistic,
    pub cpu_percent: Threshold,
    /// NetworkIn + NetworkOut per day, bytes.
    pub network_bytes: Threshold,
    /// EBSReadOps + EBSWriteOps per day; applied on days that have the metric, so an I/O-bound batch box with low
    /// CPU is not called idle.
    #[serde(default)]
    pub disk_ops: Option<Threshold>,
    /// CWAgent mem_used_percent daily average. When set, instances without the agent's metric get
    /// `InsufficientData`.
    #[serde(default)]
    pub mem_used_percent: Option<Threshold>,
    pub qualifying: Qualifying,
}

impl DailyRule {
    /// Compute Optimizer-style idle: peak CPU < 5 %, network < 5 MB, fewer than 1M disk ops, every day.
    pub fn strict_idle() -> Self {
        Self {
            cpu_statistic: CpuStatistic::Maximum,
            cpu_percent: Threshold::below(5.0),
            network_bytes: Threshold::below(5.0 * BYTES_PER_MB),
            disk_ops: Some(Threshold::below(1_000_000.0)),
            mem_used_percent: None,
            qualifying: Qualifying::EveryDay,
        }
    }

    /// Trusted Advisor "Low Utilization Amazon EC2 Instances": daily average CPU <= 10 % and network I/O <= 5 MB on
    /// 4 or more of the last 14 days.
    pub fn trusted_advisor() -> Self {
        Self {
            cpu_statistic: CpuStatistic::Average,
            cpu_percent: Threshold::at_most(10.0),
            network_bytes: Threshold::at_most(5.0 * BYTES_PER_MB),
            disk_ops: None,
            mem_used_percent: None,
            qualifying: Qualifying::AtLeast(4),
        }
    }

    fn required_days(&self, lookback_days: u32) -> u32 {
        match self.qualifying {
            Qualifying::EveryDay => lookback_days,
            Qualifying::AtLeast(n) => n.min(lookback_days),
        }
    }

    /// The thresholds a day crosses (empty: the day qualifies). A day without core data crosses "no data".
    pub fn crossings(&self, day: &DailyUtilisation) -> Vec<Crossing> {
        let mut out = Vec::new();
        let cpu = match self.cpu_statistic {
            CpuStatistic::Average => day.cpu_avg_percent,
            CpuStatistic::Maximum => day.cpu_max_percent,
        };
        let cpu_label = match self.cpu_statistic {
            CpuStatistic::Average => "average CPU",
            CpuStatistic::Maximum => "peak CPU",
        };
        match (cpu, day.network_bytes) {
            (Some(cpu), Some(net)) => {
                if !self.cpu_percent.passes(cpu) {
                    out.push(Crossing::new(day.day, cpu_label, Measure::Percent(cpu), self.cpu_percent));
                }
                if !self.network_bytes.passes(net) {
                    out.push(Crossing::new(day.day, "network", Measure::Bytes(net), self.network_bytes));
                }
            }
            _ => out.push(Crossing::no_data(day.day, if cpu.is_none() { cpu_label } else { "network" })),
        }
        if let (Some(t), Some(ops)) = (self.disk_ops, day.disk_ops) {
            if !t.passes(ops) {
                out.push(Crossing::new(day.day, "disk ops", Measure::Count(ops), t));
            }
        }
        if let Some(t) = self.mem_used_percent {
            match day.mem_used_percent {
                Some(m) if !t.passes(m) => out.push(Crossing::new(day.day, "memory", Measure::Percent(m), t)),
                Some(_) => {}
                None => out.push(Crossing::no_data(day.day, "memory")),
            }
        }
        out
    }

    /// The thresholds a day measured after the verdict crosses, by values that are there: a missing datapoint is no
    /// evidence of use, a busy one is. Peak CPU always counts (an instance that spiked is not idle, whatever the
    /// rule's daily statistic), against the rule's CPU limit.
    pub fn signs_of_use(&self, day: &DailyUtilisation) -> Vec<Crossing> {
        let mut out = Vec::new();
        for (label, value) in [("peak CPU", day.cpu_max_percent), ("average CPU", day.cpu_avg_percent)] {
            if let Some(cpu) = value.filter(|v| !self.cpu_percent.passes(*v)) {
                out.push(Crossing::new(day.day, label, Measure::Percent(cpu), self.cpu_percent));
                break;
            }
        }
        if let Some(net) = day.network_bytes.filter(|v| !self.network_bytes.passes(*v)) {
            out.push(Crossing::new(day.day, "network", Measure::Bytes(net), self.network_bytes));
        }
        if let (Some(t), Some(ops)) = (self.disk_ops, day.disk_ops) {
            if !t.passes(ops) {
                out.push(Crossing::new(day.day, "disk ops", Measure::Count(ops), t));
            }
        }
        out
    }

    /// The thresholds in words (`peak CPU < 5% and network < 5 MB ...`).
    pub fn describe(&self) -> String {
        let cpu = match self.cpu_statistic {
            CpuStatistic::Average => "average CPU",
            CpuStatistic::Maximum => "peak CPU",
        };
        let mut s = format!(
            "{cpu} {} {}% and network {} {}",
            self.cpu_percent.op(),
            fmt_num(self.cpu_percent.limit),
            self.network_bytes.op(),
            Measure::Bytes(self.network_bytes.limit)
        );
        if let Some(d) = self.disk_ops {
            s.push_str(&format!(" and disk ops {} {}", d.op(), Measure::Count(d.limit)));
        }
        if let Some(m) = self.mem_used_percent {
            s.push_str(&format!(" and memory {} {}%", m.op(), fmt_num(m.limit)));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriteriaPreset {
    Idle,
    TrustedAdvisor,
}

impl CriteriaPreset {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "idle" => Ok(Self::Idle),
            "trusted-advisor" | "trusted_advisor" | "ta" => Ok(Self::TrustedAdvisor),
            other => Err(format!("unknown criteria preset {other:?} (allowed: idle, trusted-advisor)")),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::TrustedAdvisor => "trusted-advisor",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleCriteria {
    pub preset: CriteriaPreset,
    pub lookback_days: u32,
    /// Days with CPU and network data needed before any verdict other than `InsufficientData` is given.
    pub min_days_with_data: u32,
    pub idle: Option<DailyRule>,
    pub underutilised: Option<DailyRule>,
}

pub const DEFAULT_LOOKBACK_DAYS: u32 = 14;

impl IdleCriteria {
    pub fn preset(preset: CriteriaPreset, lookback_days: u32) -> Self {
        let underutilised = match preset {
            CriteriaPreset::Idle => None,
            CriteriaPreset::TrustedAdvisor => Some(DailyRule::trusted_advisor()),
        };
        Self {
            preset,
            lookback_days,
            min_days_with_data: lookback_days,
            idle: Some(DailyRule::strict_idle()),
            underutilised,
        }
    }

    /// Whether an instance launched (or last started) at `launch_time` can be judged over the window at all; one
    /// launched inside it is `InsufficientData` whatever its metrics say, so the metrics step asks none for it.
    pub fn can_judge(window: &LookbackWindow, launch_time: DateTime<Utc>) -> bool {
        launch_time <= window.start()
    }

    /// The daily CPU statistic that can settle a verdict on its own (the first of the metrics step's two stages).
    /// Every rule's CPU threshold is an upper bound and a day's average never exceeds its maximum, so an average
    /// above a limit puts the maximum above it too: the average can rule out rules on either statistic, the
    /// maximum only rules on the maximum. The maximum is used when every rule is on it (it rules out more days).
    pub fn screening_statistic(&self) -> CpuStatistic {
        let rules = [&self.idle, &self.underutilised];
        if rules.iter().copied().flatten().all(|r| r.cpu_statistic == CpuStatistic::Maximum) {
            CpuStatistic::Maximum
        } else {
            CpuStatistic::Average
        }
    }

    /// `Active` when the screening statistic alone rules out every rule: on more days than a rule can spare, the
    /// CPU value crosses its limit, whatever the network, disk and memory did. `None`: the other metrics decide.
    /// [`Self::assess`] applies this first, so an evaluation that fetched only this statistic for an instance and
    /// one that fetched everything give the same verdict and the same reasons.
    pub fn screen(&self, window: &LookbackWindow, days: &[DailyUtilisation]) -> Option<Assessment> {
        let statistic = self.screening_statistic();
        let total = window.days;
        let value = |d: &DailyUtilisation| match statistic {
            CpuStatistic::Average => d.cpu_avg_percent,
            CpuStatistic::Maximum => d.cpu_max_percent,
        };
        let label = match statistic {
            CpuStatistic::Average => "average CPU",
            CpuStatistic::Maximum => "peak CPU",
        };
        let mut reasons = Vec::new();
        let rules = [(IdleVerdict::Idle, &self.idle), (IdleVerdict::Underutilised, &self.underutilised)];
        for (verdict, rule) in rules {
            let Some(rule) = rule else { continue };
            // A rule on the maximum is crossed by an average above its limit; a rule on the average is not
            // settled by a maximum.
            let metric = match (statistic, rule.cpu_statistic) {
                (CpuStatistic::Maximum, CpuStatistic::Average) => return None,
                (CpuStatistic::Average, CpuStatistic::Maximum) => "average CPU (so peak CPU)",
                _ => label,
            };
            let crossing: Vec<(NaiveDate, f64)> = days
                .iter()
                .filter_map(|d| value(d).filter(|v| !rule.cpu_percent.passes(*v)).map(|v| (d.day, v)))
                .collect();
            let required = rule.required_days(total);
            let can_qualify = total.saturating_sub(crossing.len() as u32);
            if can_qualify >= required {
                return None;
            }
            let (day, v) = crossing[0];
            reasons.push(format!(
                "not {}: {metric} crosses the limit on {} of {total} days, so at most {can_qualify} can qualify ({required} needed), e.g. {}",
                if verdict == IdleVerdict::Idle { "idle" } else { "underutilised" },
                crossing.len(),
                Crossing::new(day, metric, Measure::Percent(v), rule.cpu_percent)
            ));
        }
        if reasons.is_empty() {
            return None;
        }
        let observed = days.iter().filter(|d| value(d).is_some()).count() as u32;
        Some(Assessment::new(IdleVerdict::Active, None, 0, observed, total, reasons))
    }

    /// Gives the verdict for one instance over the window, with the reasons a person needs to check it.
    pub fn assess(&self, window: &LookbackWindow, launch_time: DateTime<Utc>, days: &[DailyUtilisation]) -> Assessment {
        let total = window.days;
        let observed = days.iter().filter(|d| d.has_core_data()).count() as u32;
        let mut reasons = Vec::new();

        if !Self::can_judge(window, launch_time) {
            let age_days = (window.end() - launch_time).num_hours().max(0) as f64 / 24.0;
            reasons.push(format!(
                "launched (or last started) {}, {:.1} days before the window ends; the {total}-day lookback needs data since {}",
                launch_time.format("%Y-%m-%d %H:%M UTC"),
                age_days,
                window.first_day
            ));
            // Its data is not looked at (the metrics step does not even ask for it), so none is counted.
            return Assessment::new(IdleVerdict::InsufficientData, None, 0, 0, total, reasons);
        }
        if let Some(active) = self.screen(window, days) {
            return active;
        }
        let needed = self.min_days_with_data.min(total);
        if observed < needed {
            let missing: Vec<NaiveDate> = days.iter().filter(|d| !d.has_core_data()).map(|d| d.day).collect();
            reasons.push(format!(
                "CloudWatch CPU and network data on {observed} of {total} days, {needed} needed{}",
                describe_days(" (missing ", &missing, ")")
            ));
            return Assessment::new(IdleVerdict::InsufficientData, None, 0, observed, total, reasons);
        }
        for rule in [&self.idle, &self.underutilised].into_iter().flatten() {
            if rule.mem_used_percent.is_some() && days.iter().all(|d| d.mem_used_percent.is_none()) {
                reasons.push(
                    "memory threshold configured but no CWAgent mem_used_percent for this instance (agent missing?)"
                        .to_string(),
                );
                return Assessment::new(IdleVerdict::InsufficientData, None, 0, observed, total, reasons);
            }
        }

        let mut first_failure: Option<String> = None;
        let rules = [
            (IdleVerdict::Idle, "idle", &self.idle),
            (IdleVerdict::Underutilised, "trusted-advisor", &self.underutilised),
        ];
        for (verdict, name, rule) in rules {
            let Some(rule) = rule else { continue };
            let mut qualifying = 0u32;
            let mut failing_days = 0usize;
            let mut example: Option<Crossing> = None;
            for day in days {
                let mut crossings = rule.crossings(day);
                if crossings.is_empty() {
                    qualifying += 1;
                } else {
                    failing_days += 1;
                    if example.is_none() {
                        example = Some(crossings.swap_remove(0));
                    }
                }
            }
            let required = rule.required_days(total);
            if qualifying >= required {
                reasons.push(format!(
                    "{name} rule: {} on {qualifying} of {total} days ({required} needed)",
                    rule.describe()
                ));
                if let Some(f) = first_failure.take() {
                    reasons.push(f);
                }
                return Assessment::new(verdict, Some(name), qualifying, observed, total, reasons);
            }
            // The thresholds are in the criteria beside every document; one example day says which was crossed,
            // and the daily series has the rest. Fleet-sized documents stay small this way.
            let more = failing_days.saturating_sub(1);
            let summary = format!(
                "not {}: {qualifying} of {total} days qualify ({required} needed), e.g. {}{}",
                if verdict == IdleVerdict::Idle { "idle" } else { "underutilised" },
                example.map(|c| c.to_string()).unwrap_or_default(),
                if more > 0 { format!(" (and {more} more days)") } else { String::new() }
            );
            if first_failure.is_none() {
                first_failure = Some(summary);
            } else {
                reasons.push(first_failure.take().unwrap_or_default());
                reasons.push(summary);
            }
        }
        reasons.extend(first_failure);
        Assessment::new(IdleVerdict::Active, None, 0, observed, total, reasons)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    Percent(f64),
    Bytes(f64),
    Count(f64),
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Percent(v) => write!(f, "{}%", fmt_num(v)),
            Self::Bytes(v) => write!(f, "{} MB", fmt_num(v / BYTES_PER_MB)),
            Self::Count(v) => write!(f, "{}", fmt_num(v)),
        }
    }
}

/// One threshold that one day crossed (or had no data for).
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub day: NaiveDate,
    pub metric: &'static str,
    pub value: Option<Measure>,
    pub threshold: Option<Threshold>,
}

impl Crossing {
    fn new(day: NaiveDate, metric: &'static str, value: Measure, threshold: Threshold) -> Self {
        Self { day, metric, value: Some(value), threshold: Some(threshold) }
    }
    fn no_data(day: NaiveDate, metric: &'static str) -> Self {
        Self { day, metric, value: None, threshold: None }
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.value, self.threshold) {
            (Some(v), Some(t)) => {
                let limit = match v {
                    Measure::Percent(_) => Measure::Percent(t.limit),
                    Measure::Bytes(_) => Measure::Bytes(t.limit),
                    Measure::Count(_) => Measure::Count(t.limit),
                };
                write!(f, "{} {} {v} (limit {} {limit})", self.day, self.metric, t.op())
            }
            _ => write!(f, "{} no {} data", self.day, self.metric),
        }
    }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

fn describe_days(prefix: &str, days: &[NaiveDate], suffix: &str) -> String {
    if days.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = days.iter().take(5).map(|d| d.to_string()).collect();
    let more = if days.len() > 5 { format!(" and {} more", days.len() - 5) } else { String::new() };
    format!("{prefix}{}{more}{suffix}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn window() -> LookbackWindow {
        LookbackWindow::ending_before(Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap(), 14)
    }

    fn old_launch() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    /// Every day with the same values.
    fn flat(cpu_avg: f64, cpu_max: f64, net_bytes: f64) -> Vec<DailyUtilisation> {
        window()
            .days_iter()
            .map(|day| DailyUtilisation {
                day,
                cpu_avg_percent: Some(cpu_avg),
                cpu_max_percent: Some(cpu_max),
                network_bytes: Some(net_bytes),
                disk_ops: Some(10_000.0),
                mem_used_percent: None,
            })
            .collect()
    }

    fn verdict(c: &IdleCriteria, days: &[DailyUtilisation]) -> IdleVerdict {
        c.assess(&window(), old_launch(), days).verdict
    }

    fn ta() -> IdleCriteria {
        IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14)
    }
    fn idle() -> IdleCriteria {
        IdleCriteria::preset(CriteriaPreset::Idle, 14)
    }

    #[test]
    fn idle_peak_cpu_threshold_is_strict() {
        assert_eq!(verdict(&idle(), &flat(1.0, 4.999, 1000.0)), IdleVerdict::Idle);
        assert_eq!(verdict(&idle(), &flat(1.0, 5.0, 1000.0)), IdleVerdict::Active, "exactly 5% is not < 5%");
    }

    #[test]
    fn idle_network_threshold_is_strict_and_in_bytes() {
        let five_mb = 5.0 * BYTES_PER_MB;
        assert_eq!(verdict(&idle(), &flat(1.0, 2.0, five_mb - 1.0)), IdleVerdict::Idle);
        assert_eq!(verdict(&idle(), &flat(1.0, 2.0, five_mb)), IdleVerdict::Active);
        // 5 (as if someone passed megabytes where bytes are expected) is tiny and idle; 5 MiB is above 5 MB.
        assert_eq!(verdict(&idle(), &flat(1.0, 2.0, 5.0 * 1024.0 * 1024.0)), IdleVerdict::Active);
    }

    #[test]
    fn signs_of_use_count_values_that_are_there_and_ignore_missing_ones() {
        let rule = DailyRule::strict_idle();
        let day = |cpu_max: Option<f64>, net: Option<f64>| DailyUtilisation {
            day: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
            cpu_avg_percent: cpu_max.map(|c| c / 4.0),
            cpu_max_percent: cpu_max,
            network_bytes: net,
            disk_ops: None,
            mem_used_percent: None,
        };
        assert!(rule.signs_of_use(&day(None, None)).is_empty(), "no data is no evidence of use");
        assert!(rule.signs_of_use(&day(Some(2.0), Some(1e5))).is_empty());
        let busy = rule.signs_of_use(&day(Some(80.0), None));
        assert_eq!(busy.len(), 1);
        assert!(busy[0].to_string().contains("peak CPU 80%"), "{}", busy[0]);
        assert_eq!(rule.signs_of_use(&day(Some(1.0), Some(9e9)))[0].metric, "network");
        // A rule on average CPU still sees a spike in the peak.
        assert!(!DailyRule::trusted_advisor().signs_of_use(&day(Some(60.0), Some(0.0))).is_empty());
    }

    #[test]
    fn idle_needs_every_day() {
        let mut days = flat(1.0, 2.0, 1000.0);
        days[13].cpu_max_percent = Some(60.0);
        let a = idle().assess(&window(), old_launch(), &days);
        assert_eq!(a.verdict, IdleVerdict::Active);
        assert!(a.reasons.iter().any(|r| r.contains("2026-11-27 peak CPU 60%")), "{:?}", a.reasons);
    }

    #[test]
    fn trusted_advisor_thresholds_are_inclusive() {
        assert_eq!(verdict(&ta(), &flat(10.0, 50.0, 5.0 * BYTES_PER_MB)), IdleVerdict::Underutilised);
        assert_eq!(verdict(&ta(), &flat(10.01, 50.0, 1000.0)), IdleVerdict::Active);
        assert_eq!(verdict(&ta(), &flat(5.0, 50.0, 5.0 * BYTES_PER_MB + 1.0)), IdleVerdict::Active);
    }

    #[test]
    fn trusted_advisor_needs_four_of_fourteen_days() {
        let mut days = flat(50.0, 90.0, 1e9);
        for d in days.iter_mut().take(3) {
            d.cpu_avg_percent = Some(3.0);
            d.network_bytes = Some(1000.0);
        }
        assert_eq!(verdict(&ta(), &days), IdleVerdict::Active, "3 days are not enough");
        days[10].cpu_avg_percent = Some(3.0);
        days[10].network_bytes = Some(1000.0);
        let a = ta().assess(&window(), old_launch(), &days);
        assert_eq!(a.verdict, IdleVerdict::Underutilised);
        assert_eq!(a.qualifying_days, 4);
        assert_eq!(a.rule.as_deref(), Some("trusted-advisor"));
    }

    #[test]
    fn idle_preset_never_says_underutilised() {
        assert_eq!(verdict(&idle(), &flat(8.0, 50.0, 1000.0)), IdleVerdict::Active);
        assert_eq!(verdict(&ta(), &flat(8.0, 50.0, 1000.0)), IdleVerdict::Underutilised);
    }

    #[test]
    fn idle_wins_over_underutilised_in_trusted_advisor_preset() {
        let a = ta().assess(&window(), old_launch(), &flat(0.5, 1.0, 1000.0));
        assert_eq!(a.verdict, IdleVerdict::Idle);
        assert_eq!(a.rule.as_deref(), Some("idle"));
        assert_eq!(a.qualifying_days, 14);
    }

    #[test]
    fn busy_disk_keeps_low_cpu_box_from_idle() {
        let mut days = flat(1.0, 3.0, 1000.0);
        for d in &mut days {
            d.disk_ops = Some(40_000_000.0);
        }
        let a = ta().assess(&window(), old_launch(), &days);
        assert_eq!(a.verdict, IdleVerdict::Underutilised, "{:?}", a.reasons);
        assert!(a.reasons.iter().any(|r| r.contains("disk ops")), "{:?}", a.reasons);
    }

    #[test]
    fn missing_day_gives_insufficient_data_not_idle() {
        let mut days = flat(0.1, 0.2, 10.0);
        days[5] = DailyUtilisation::empty(days[5].day);
        let a = idle().assess(&window(), old_launch(), &days);
        assert_eq!(a.verdict, IdleVerdict::InsufficientData);
        assert!(a.reasons[0].contains("13 of 14 days"), "{:?}", a.reasons);
        assert!(a.reasons[0].contains("2026-11-19"), "{:?}", a.reasons);
    }

    #[test]
    fn network_missing_counts_as_missing_day() {
        let mut days = flat(0.1, 0.2, 10.0);
        days[0].network_bytes = None;
        assert_eq!(verdict(&idle(), &days), IdleVerdict::InsufficientData);
    }

    #[test]
    fn empty_series_is_insufficient_data() {
        let a = ta().assess(&window(), old_launch(), &[]);
        assert_eq!(a.verdict, IdleVerdict::InsufficientData);
        assert_eq!(a.days_with_data, 0);
    }

    #[test]
    fn brand_new_instance_is_insufficient_data_even_if_quiet() {
        let launched = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let a = ta().assess(&window(), launched, &flat(0.0, 0.0, 0.0));
        assert_eq!(a.verdict, IdleVerdict::InsufficientData);
        assert!(a.reasons[0].contains("launched"), "{:?}", a.reasons);
        // Launched exactly at the window start has full data and can be judged.
        assert_eq!(ta().assess(&window(), window().start(), &flat(0.0, 0.0, 0.0)).verdict, IdleVerdict::Idle);
    }

    #[test]
    fn memory_threshold_without_agent_is_insufficient_data() {
        let mut c = idle();
        c.idle.as_mut().unwrap().mem_used_percent = Some(Threshold::below(20.0));
        assert_eq!(verdict(&c, &flat(0.1, 0.2, 10.0)), IdleVerdict::InsufficientData);
        let mut days = flat(0.1, 0.2, 10.0);
        for d in &mut days {
            d.mem_used_percent = Some(12.0);
        }
        assert_eq!(verdict(&c, &days), IdleVerdict::Idle);
        days[3].mem_used_percent = Some(75.0);
        assert_eq!(verdict(&c, &days), IdleVerdict::Active);
    }

    #[test]
    fn thresholds_are_configurable() {
        let mut c = idle();
        c.idle.as_mut().unwrap().cpu_percent = Threshold::below(20.0);
        assert_eq!(verdict(&c, &flat(5.0, 15.0, 10.0)), IdleVerdict::Idle);
        c.idle.as_mut().unwrap().qualifying = Qualifying::AtLeast(10);
        let mut days = flat(5.0, 15.0, 10.0);
        for d in days.iter_mut().take(4) {
            d.cpu_max_percent = Some(90.0);
        }
        assert_eq!(verdict(&c, &days), IdleVerdict::Idle, "10 of 14 qualify");
    }

    #[test]
    fn shorter_lookback_and_min_days_are_honoured() {
        let w = LookbackWindow::ending_before(Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap(), 7);
        let mut c = IdleCriteria::preset(CriteriaPreset::Idle, 7);
        let mut days: Vec<DailyUtilisation> = flat(0.1, 0.2, 10.0).into_iter().skip(7).collect();
        assert_eq!(c.assess(&w, old_launch(), &days).verdict, IdleVerdict::Idle);
        days[0] = DailyUtilisation::empty(days[0].day);
        assert_eq!(c.assess(&w, old_launch(), &days).verdict, IdleVerdict::InsufficientData);
        c.min_days_with_data = 6;
        // Six observed days are now enough to judge, but the idle rule still wants every day to qualify.
        assert_eq!(c.assess(&w, old_launch(), &days).verdict, IdleVerdict::Active);
    }

    #[test]
    fn busy_cpu_settles_active_without_the_other_metrics() {
        // Network and disk missing everywhere: CPU alone rules both rules out, so the verdict does not wait for them.
        let mut days = flat(35.0, 90.0, 0.0);
        for d in &mut days {
            (d.network_bytes, d.disk_ops, d.cpu_max_percent) = (None, None, None);
        }
        let a = ta().assess(&window(), old_launch(), &days);
        assert_eq!(a.verdict, IdleVerdict::Active, "{:?}", a.reasons);
        assert_eq!(a.days_with_data, 14, "days with the screening statistic");
        assert_eq!(a.reasons.len(), 2, "{:?}", a.reasons);
        assert!(a.reasons[0].starts_with("not idle: average CPU (so peak CPU) crosses the limit on 14 of 14 days"));
        assert!(a.reasons[1].contains("not underutilised: average CPU crosses the limit on 14 of 14 days, so at most 0 can qualify (4 needed), e.g. 2026-11-14 average CPU 35% (limit <= 10%)"), "{:?}", a.reasons);
        assert_eq!(ta().screen(&window(), &days), Some(a));
    }

    #[test]
    fn cpu_that_leaves_a_rule_possible_settles_nothing() {
        // 10 busy days leave 4 that could qualify for the Trusted Advisor rule: network decides.
        let mut days = flat(3.0, 4.0, 1000.0);
        for d in days.iter_mut().take(10) {
            (d.cpu_avg_percent, d.cpu_max_percent) = (Some(40.0), Some(90.0));
        }
        assert_eq!(ta().screen(&window(), &days), None);
        assert_eq!(verdict(&ta(), &days), IdleVerdict::Underutilised);
        days[12].cpu_avg_percent = Some(40.0);
        assert!(ta().screen(&window(), &days).is_some(), "11 busy days leave 3, fewer than 4");
        // Missing CPU days are not evidence of use.
        let mut quiet_gaps = flat(40.0, 90.0, 1000.0);
        for d in quiet_gaps.iter_mut().take(11) {
            d.cpu_avg_percent = None;
        }
        assert_eq!(ta().screen(&window(), &quiet_gaps), None);
    }

    #[test]
    fn screening_statistic_follows_the_rules() {
        assert_eq!(ta().screening_statistic(), CpuStatistic::Average, "the Trusted Advisor rule is on the average");
        assert_eq!(idle().screening_statistic(), CpuStatistic::Maximum);
        // The strict rule on the maximum: an average of 6% already rules it out; a maximum of 6% cannot rule out
        // a rule on the average.
        let a = idle().screen(&window(), &flat(1.0, 6.0, 0.0)).expect("peak CPU settles the idle preset");
        assert!(a.reasons[0].contains("peak CPU 6% (limit < 5%)"), "{:?}", a.reasons);
        assert_eq!(ta().screen(&window(), &flat(4.0, 60.0, 0.0)), None);
        assert!(ta().screen(&window(), &flat(11.0, 60.0, 0.0)).is_some());
        let mut on_average = idle();
        on_average.idle.as_mut().unwrap().cpu_statistic = CpuStatistic::Average;
        assert_eq!(on_average.screening_statistic(), CpuStatistic::Average);
    }

    #[test]
    fn preset_names_parse() {
        assert_eq!(CriteriaPreset::parse("Trusted-Advisor").unwrap(), CriteriaPreset::TrustedAdvisor);
        assert_eq!(CriteriaPreset::parse("idle").unwrap(), CriteriaPreset::Idle);
        assert!(CriteriaPreset::parse("lazy").unwrap_err().contains("allowed"));
    }
}
