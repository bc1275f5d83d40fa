//! The deterministic reasoner: `Idle` -> snapshot_and_stop, `Underutilised` -> rightsize, anything else -> keep.
//! Used when configured, when Bedrock fails, and for every instance a model answer did not validate for.

use finops_core::policy::{Recommendation, RecommendedAction};
use finops_core::{IdleVerdict, UtilisationSummary};

pub fn recommend(summary: &UtilisationSummary) -> Recommendation {
    let (action, confidence) = match summary.verdict() {
        IdleVerdict::Idle => (RecommendedAction::SnapshotAndStop, 0.8),
        IdleVerdict::Underutilised => (RecommendedAction::Rightsize, 0.6),
        IdleVerdict::Active | IdleVerdict::InsufficientData => (RecommendedAction::Keep, 0.9),
    };
    let justification: String = summary
        .assessment
        .reasons
        .first()
        .map_or_else(|| format!("verdict {}", summary.verdict()), |r| format!("{}: {r}", summary.verdict()))
        .chars()
        .take(500)
        .collect();
    Recommendation {
        instance_id: summary.instance_id.clone(),
        action,
        confidence,
        justification,
        backend: "rules".into(),
        evidence: summary.assessment.reasons.clone(),
        trace_id: None,
    }
}
