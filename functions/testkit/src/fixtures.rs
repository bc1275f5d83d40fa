//! Plain domain fixtures: an instance record and a utilisation summary without any AWS.

use chrono::{DateTime, TimeZone, Utc};
use finops_core::criteria::{CriteriaPreset, IdleCriteria};
use finops_core::pricing::embedded_hourly;
use finops_core::{CostEstimate, DailyUtilisation, InstanceRecord, LookbackWindow, UtilisationSummary};

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

/// An ordinary running EBS-backed instance: one 20 GiB gp3 root volume, no instance storage.
pub fn instance(id: &str, instance_type: &str, tags: &[(&str, &str)]) -> InstanceRecord {
    let launched = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    InstanceRecord::ordinary(id, "ap-southeast-2", instance_type, launched, 20).with_tags(tags.iter().copied())
}

/// 14 days, idle (peak CPU 1 %) or busy (peak 90 %), judged with the default criteria at [`now`].
pub fn summary(instance: &InstanceRecord, idle: bool) -> UtilisationSummary {
    let window = LookbackWindow::ending_before(now(), 14);
    let days: Vec<DailyUtilisation> = window
        .days_iter()
        .map(|day| DailyUtilisation {
            day,
            cpu_avg_percent: Some(if idle { 0.5 } else { 50.0 }),
            cpu_max_percent: Some(if idle { 1.0 } else { 90.0 }),
            network_bytes: Some(if idle { 1e5 } else { 1e10 }),
            disk_ops: Some(1000.0),
            mem_used_percent: None,
        })
        .collect();
    let assessment =
        IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14).assess(&window, instance.launch_time, &days);
    UtilisationSummary {
        instance_id: instance.instance_id.clone(),
        region: instance.region.clone(),
        stats: finops_core::utilisation::UtilisationStats::from_days(&days),
        cost: CostEstimate::new(
            instance,
            assessment.verdict,
            embedded_hourly(&instance.instance_type, &instance.region, false),
            &[],
        ),
        assessment,
        days,
    }
}

/// The audience of a deployment that names these approvers (no Slack): what a test's approval record is asked of.
pub fn audience(approvers: &[&str]) -> finops_core::organization::Audience {
    finops_core::organization::Audience {
        approvers: approvers.iter().map(|a| a.to_string()).collect(),
        because: "the deployment's approvers".into(),
        slack_channel: None,
        slack_users: Vec::new(),
    }
}
