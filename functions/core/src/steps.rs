//! The payloads the detection steps exchange through Step Functions. They stay small whatever the fleet size
//! (state payloads are limited to 256 KB): fleets go to the run bucket, and states carry references and counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::daily::LookbackWindow;
use crate::inventory::InstanceRecord;
use crate::utilisation::UtilisationSummary;
use crate::verdict::IdleVerdict;

/// Where a step stored a document in the run bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub bytes: u64,
}

/// The inventory document a run stores: every running instance of every region scanned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryDocument {
    pub run_id: String,
    pub regions: Vec<String>,
    pub collected_at: chrono::DateTime<chrono::Utc>,
    pub instances: Vec<InstanceRecord>,
}

/// The utilisation document a run stores: one summary per inventoried instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilisationDocument {
    pub run_id: String,
    pub window: LookbackWindow,
    pub criteria: crate::criteria::IdleCriteria,
    pub summaries: Vec<UtilisationSummary>,
}

/// Output of the inventory step (input of the metrics step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryOutput {
    pub run_id: String,
    pub regions: Vec<String>,
    pub inventory: ObjectRef,
    pub instance_count: usize,
    pub instances_by_region: BTreeMap<String, usize>,
}

/// Verdict counts for reports and the console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerdictCounts {
    pub idle: usize,
    pub underutilised: usize,
    pub active: usize,
    pub insufficient_data: usize,
}

impl VerdictCounts {
    pub fn add(&mut self, v: IdleVerdict) {
        match v {
            IdleVerdict::Idle => self.idle += 1,
            IdleVerdict::Underutilised => self.underutilised += 1,
            IdleVerdict::Active => self.active += 1,
            IdleVerdict::InsufficientData => self.insufficient_data += 1,
        }
    }
}

/// One instance worth a closer look (`Idle` or `Underutilised`), compact enough for a state payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShortlistEntry {
    pub instance_id: String,
    pub region: String,
    pub instance_type: String,
    pub verdict: IdleVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving_usd: Option<f64>,
}

impl ShortlistEntry {
    pub fn from_summary(s: &UtilisationSummary, instance_type: &str) -> Self {
        Self {
            instance_id: s.instance_id.clone(),
            region: s.region.clone(),
            instance_type: instance_type.to_owned(),
            verdict: s.verdict(),
            monthly_saving_usd: s.cost.monthly_saving_usd,
        }
    }
}

/// Output of the metrics step (input of the reasoning step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsOutput {
    pub run_id: String,
    pub regions: Vec<String>,
    pub inventory: ObjectRef,
    /// Every instance's daily series, verdict and cost.
    pub utilisation: ObjectRef,
    pub window: LookbackWindow,
    pub criteria: String,
    pub instance_count: usize,
    pub verdicts: VerdictCounts,
    /// `Idle` and `Underutilised` instances, largest saving first, at most the configured limit.
    pub shortlist: Vec<ShortlistEntry>,
    /// Shortlisted instances left out of `shortlist` by the limit (they are in the utilisation document).
    pub shortlist_omitted: usize,
    pub estimated_monthly_saving_usd: f64,
    pub get_metric_data_calls: usize,
}

/// Orders candidates by saving (largest first), then id, and keeps at most `limit` of them.
pub fn shortlist(entries: impl IntoIterator<Item = ShortlistEntry>, limit: usize) -> (Vec<ShortlistEntry>, usize) {
    let mut all: Vec<ShortlistEntry> =
        entries.into_iter().filter(|e| matches!(e.verdict, IdleVerdict::Idle | IdleVerdict::Underutilised)).collect();
    all.sort_by(|a, b| {
        b.monthly_saving_usd
            .unwrap_or(0.0)
            .total_cmp(&a.monthly_saving_usd.unwrap_or(0.0))
            .then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    let omitted = all.len().saturating_sub(limit);
    all.truncate(limit);
    (all, omitted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, verdict: IdleVerdict, saving: Option<f64>) -> ShortlistEntry {
        ShortlistEntry {
            instance_id: id.into(),
            region: "us-east-1".into(),
            instance_type: "t3.micro".into(),
            verdict,
            monthly_saving_usd: saving,
        }
    }

    #[test]
    fn shortlist_keeps_candidates_by_saving_and_counts_the_rest() {
        let (list, omitted) = shortlist(
            vec![
                entry("i-a", IdleVerdict::Active, Some(500.0)),
                entry("i-b", IdleVerdict::Idle, Some(10.0)),
                entry("i-c", IdleVerdict::Underutilised, Some(30.0)),
                entry("i-d", IdleVerdict::InsufficientData, None),
                entry("i-e", IdleVerdict::Idle, None),
            ],
            2,
        );
        let ids: Vec<&str> = list.iter().map(|e| e.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-c", "i-b"]);
        assert_eq!(omitted, 1);
    }
}
