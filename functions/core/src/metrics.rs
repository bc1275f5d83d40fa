//! The metrics the functions emit, in CloudWatch Embedded Metric Format: a JSON log line that CloudWatch Logs turns
//! into metrics, so emitting costs no API call. [`CATALOGUE`] is every metric there is (name, unit, dimension and its
//! values); the CDK app's dashboard may name only these (`cdk/lib/emitted-metrics.json` is the catalogue as JSON,
//! kept equal by a test), and the end-to-end run checks that each one is emitted.

use serde_json::{json, Map, Value};

use crate::approval::ApprovalAction;
use crate::steps::{ActionOutcome, Outcome, PolicyOutput, SavingsOutput};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "FinopsAgent";

/// One metric the code emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: &'static str,
    pub unit: &'static str,
    /// The one dimension and every value it takes, or none.
    pub dimension: Option<(&'static str, &'static [&'static str])>,
    /// Which step emits it, and when.
    pub emitted_by: &'static str,
}

pub const DECISIONS: [&str; 3] = ["approve", "deny", "snooze"];
pub const OUTCOMES: [&str; 5] = ["done", "already_done", "refused", "pending", "failed"];

pub const CATALOGUE: [MetricSpec; 9] = [
    MetricSpec { name: "Runs", unit: "Count", dimension: None, emitted_by: "policy, once a run" },
    MetricSpec { name: "Proposals", unit: "Count", dimension: None, emitted_by: "policy, once a run" },
    MetricSpec { name: "Denials", unit: "Count", dimension: None, emitted_by: "policy, once a run" },
    MetricSpec {
        name: "ProposedMonthlySavingUsd",
        unit: "None",
        dimension: None,
        emitted_by: "policy, once a run: the estimate of what is proposed",
    },
    MetricSpec {
        name: "ApprovalDecisions",
        unit: "Count",
        dimension: Some(("Decision", &DECISIONS)),
        emitted_by: "approval-callback, each decision delivered (page or Slack)",
    },
    MetricSpec {
        name: "Actions",
        unit: "Count",
        dimension: Some(("Outcome", &OUTCOMES)),
        emitted_by: "actions, each operation",
    },
    MetricSpec {
        name: "EstimatedMonthlySavingUsd",
        unit: "None",
        dimension: None,
        emitted_by: "savings, once a run: the estimate of what still holds",
    },
    MetricSpec {
        name: "RealizedSavingToDateUsd",
        unit: "None",
        dimension: None,
        emitted_by: "savings, once a run: realized to date, over everything acted on",
    },
    MetricSpec { name: "ActionsUndone", unit: "Count", dimension: None, emitted_by: "savings, once a run: to date" },
];

/// One EMF record: values of catalogue metrics that share one dimension value (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct Emf {
    values: Vec<(&'static MetricSpec, f64)>,
    dimension: Option<(&'static str, String)>,
}

fn spec(name: &str) -> &'static MetricSpec {
    CATALOGUE.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} is not in the metrics catalogue"))
}

impl Emf {
    /// Metrics without a dimension. Panics on a name outside the catalogue (a programming error, caught by tests).
    pub fn of(values: &[(&str, f64)]) -> Self {
        let values = values.iter().map(|(n, v)| (spec(n), *v)).collect::<Vec<_>>();
        assert!(values.iter().all(|(s, _)| s.dimension.is_none()), "these metrics have a dimension");
        Self { values, dimension: None }
    }

    /// One metric with its dimension's value; a value outside the catalogue's is refused the same way.
    pub fn one(name: &str, value: f64, dimension_value: &str) -> Self {
        let s = spec(name);
        let (dimension, allowed) = s.dimension.unwrap_or_else(|| panic!("{name} has no dimension"));
        assert!(allowed.contains(&dimension_value), "{name}: {dimension}={dimension_value} is not in the catalogue");
        Self { values: vec![(s, value)], dimension: Some((dimension, dimension_value.to_owned())) }
    }

    /// The log line: `{"_aws": {"Timestamp", "CloudWatchMetrics": [{Namespace, Dimensions, Metrics}]}, ...values}`.
    pub fn to_line(&self, timestamp_ms: i64) -> String {
        let mut root = Map::new();
        let dimensions: Vec<Vec<&str>> = vec![self.dimension.iter().map(|(k, _)| *k).collect()];
        let metrics: Vec<Value> = self.values.iter().map(|(s, _)| json!({"Name": s.name, "Unit": s.unit})).collect();
        root.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics}]}),
        );
        if let Some((k, v)) = &self.dimension {
            root.insert((*k).into(), json!(v));
        }
        for (s, v) in &self.values {
            root.insert(s.name.into(), json!(v));
        }
        Value::Object(root).to_string()
    }
}

/// What a run's policy step emits.
pub fn policy_metrics(out: &PolicyOutput) -> Emf {
    Emf::of(&[
        ("Runs", 1.0),
        ("Proposals", out.proposal_count as f64),
        ("Denials", out.denial_counts.values().sum::<usize>() as f64),
        ("ProposedMonthlySavingUsd", out.proposed_monthly_saving_usd),
    ])
}

/// A decision delivered to the workflow (an undo is not an approval decision: none).
pub fn decision_metric(action: ApprovalAction) -> Option<Emf> {
    // An owner keeping their resource is a snooze on the dashboard.
    let decision = match action {
        ApprovalAction::Undo => return None,
        ApprovalAction::OwnerSnooze => ApprovalAction::Snooze,
        other => other,
    };
    Some(Emf::one("ApprovalDecisions", 1.0, decision.as_str()))
}

/// One operation of the actions step.
pub fn action_metric(outcome: &ActionOutcome) -> Emf {
    let value = match outcome.outcome {
        Outcome::Done => "done",
        Outcome::AlreadyDone => "already_done",
        Outcome::Refused => "refused",
        Outcome::Pending => "pending",
        Outcome::Failed => "failed",
    };
    Emf::one("Actions", 1.0, value)
}

/// What a run's savings step emits (gauges: the dashboard takes each month's maximum).
pub fn savings_metrics(out: &SavingsOutput) -> Emf {
    Emf::of(&[
        ("EstimatedMonthlySavingUsd", out.total.estimated_monthly_usd),
        ("RealizedSavingToDateUsd", out.total.realized_usd),
        ("ActionsUndone", out.total.undone as f64),
    ])
}

/// The catalogue as `cdk/lib/emitted-metrics.json` holds it (what the dashboard may name).
pub fn catalogue_json() -> Value {
    json!({
        "namespace": NAMESPACE,
        "metrics": CATALOGUE.iter().map(|m| json!({
            "name": m.name,
            "unit": m.unit,
            "dimension": m.dimension.map(|(k, values)| json!({"name": k, "values": values})),
            "emittedBy": m.emitted_by,
        })).collect::<Vec<_>>(),
    })
}

/// The metric names in an EMF line (empty if it is not one), with the dimension value each was emitted with.
pub fn names_in_line(line: &str) -> Vec<(String, Option<(String, String)>)> {
    let Ok(v) = serde_json::from_str::<Value>(line) else { return Vec::new() };
    let Some(directives) = v.pointer("/_aws/CloudWatchMetrics").and_then(Value::as_array) else { return Vec::new() };
    let mut out = Vec::new();
    for d in directives {
        let dims: Vec<String> = d["Dimensions"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|set| set.as_array().cloned().unwrap_or_default())
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        let dimension = dims.first().map(|k| (k.clone(), v[k.as_str()].as_str().unwrap_or_default().to_owned()));
        for m in d["Metrics"].as_array().into_iter().flatten() {
            if let Some(name) = m["Name"].as_str().filter(|n| v.get(*n).is_some_and(Value::is_number)) {
                out.push((name.to_owned(), dimension.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_valid_emf_with_its_values_at_the_root() {
        let line = Emf::one("ApprovalDecisions", 1.0, "deny").to_line(1_800_000_000_000);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Decision"]]));
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "ApprovalDecisions", "Unit": "Count"}])
        );
        assert_eq!((v["Decision"].as_str(), v["ApprovalDecisions"].as_f64()), (Some("deny"), Some(1.0)));
        assert_eq!(names_in_line(&line), vec![("ApprovalDecisions".into(), Some(("Decision".into(), "deny".into())))]);
        let plain = Emf::of(&[("Runs", 1.0), ("Proposals", 3.0)]).to_line(0);
        assert_eq!(
            serde_json::from_str::<Value>(&plain).unwrap()["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
        assert_eq!(names_in_line(&plain).len(), 2);
        assert!(names_in_line("{\"level\":\"INFO\"}").is_empty());
    }

    #[test]
    #[should_panic(expected = "not in the metrics catalogue")]
    fn a_name_outside_the_catalogue_is_a_bug() {
        Emf::of(&[("Runz", 1.0)]);
    }

    #[test]
    #[should_panic(expected = "is not in the catalogue")]
    fn a_dimension_value_outside_the_catalogue_is_a_bug() {
        Emf::one("Actions", 1.0, "exploded");
    }

    #[test]
    fn the_cdk_apps_copy_of_the_catalogue_is_this_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../cdk/lib/emitted-metrics.json");
        let expected = serde_json::to_string_pretty(&catalogue_json()).unwrap() + "\n";
        if std::env::var_os("FINOPS_WRITE_METRICS_CATALOGUE").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        // Compared as JSON values: the key order of serde_json's output depends on the features the workspace unifies.
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            written,
            catalogue_json(),
            "regenerate: FINOPS_WRITE_METRICS_CATALOGUE=1 cargo test -p finops-core metrics"
        );
    }
}
