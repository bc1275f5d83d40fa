//! A run's fault plan, drawn from its seed: which AWS operations throttle, fail or lose their answers and how often,
//! which steps fail, run twice or time out, how the model misbehaves, whether the signing secret is unreadable for
//! a while, and how big the fleet is.

use finops_testkit::scripted_model::Behaviour as ModelBehaviour;

use crate::functions::{StepFault, StepFaultKind};
use crate::proxy::{ApiFault, ApiFaultKind};
use crate::rng::Rng;

/// Operations the proxy can fail, with whether they change something (only those can lose an answer after the
/// work is done; losing a read's answer is a plain 5xx).
pub const API_OPERATIONS: [(&str, bool); 20] = [
    ("CreateSnapshots", true),
    ("StopInstances", true),
    ("CreateTags", true),
    ("CreateSnapshot", true),
    ("DeleteVolume", true),
    ("DescribeVolumes", false),
    ("DescribeInstances", false),
    ("DescribeSnapshots", false),
    ("GetMetricData", false),
    ("PutItem", true),
    ("UpdateItem", true),
    ("GetItem", false),
    ("DeleteItem", true),
    ("Publish", true),
    ("SendTaskSuccess", true),
    ("S3 PUT", true),
    ("S3 GET", false),
    // One-click undo: the callback's start of the undo execution, and what the undo does.
    ("StartExecution", true),
    ("StartInstances", true),
    ("CreateVolume", true),
];

pub const STEPS: [&str; 11] = [
    "finops-inventory",
    "finops-metrics",
    "finops-reasoning",
    "finops-policy",
    "finops-request-approval",
    "finops-actions:snapshot",
    "finops-actions:snapshot_status",
    "finops-actions:stop",
    "finops-actions:tag",
    "finops-actions:delete_volume",
    "finops-actions:undo",
];

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub api: Vec<ApiFault>,
    pub steps: Vec<StepFault>,
    pub model: ModelBehaviour,
    /// GetSecretValue fails from `.0` to `.0 + .1` seconds after the run starts.
    pub secret_outage: Option<(f64, f64)>,
    pub fleet_size: usize,
    /// Regions the run scans.
    pub regions: Vec<&'static str>,
}

impl FaultPlan {
    pub fn draw(rng: &mut Rng) -> Self {
        let mut api = Vec::new();
        for _ in 0..rng.below(5) {
            let (operation, changes) = rng.pick(&API_OPERATIONS);
            let kinds: &[ApiFaultKind] = if changes {
                &[ApiFaultKind::Throttle, ApiFaultKind::ServerError, ApiFaultKind::LostResponse]
            } else {
                &[ApiFaultKind::Throttle, ApiFaultKind::ServerError]
            };
            api.push(ApiFault { operation, kind: rng.pick(kinds), probability: rng.pick(&[0.15, 0.3, 0.5]) });
        }
        let mut steps = Vec::new();
        for _ in 0..rng.below(4) {
            let kind = rng.pick(&[
                StepFaultKind::Refused,
                StepFaultKind::LostAnswer,
                StepFaultKind::Twice,
                StepFaultKind::Timeout,
            ]);
            steps.push(StepFault { step: rng.pick(&STEPS), kind, probability: rng.pick(&[0.3, 0.5]) });
        }
        let model = match rng.below(10) {
            0 => ModelBehaviour::Throttle,
            1 => ModelBehaviour::Fail,
            2 => ModelBehaviour::Garbage,
            _ => ModelBehaviour::Script,
        };
        let secret_outage = rng.chance(0.2).then(|| (rng.unit() * 3.0, 1.0 + rng.unit() * 3.0));
        Self {
            api,
            steps,
            model,
            secret_outage,
            fleet_size: 4 + rng.below(5) as usize,
            regions: vec!["ap-southeast-2"],
        }
    }

    /// No fault at all, the scripted model: a run where what the approvers do is all that happens (the harness's own
    /// tests).
    pub fn calm(fleet_size: usize) -> Self {
        Self {
            api: Vec::new(),
            steps: Vec::new(),
            model: ModelBehaviour::Script,
            secret_outage: None,
            fleet_size,
            regions: vec!["ap-southeast-2"],
        }
    }

    /// One line: what this run will suffer.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .api
            .iter()
            .map(|f| format!("{} {} p={}", f.kind.label(), f.operation, f.probability))
            .chain(self.steps.iter().map(|f| format!("{} {} p={}", f.kind.label(), f.step, f.probability)))
            .collect();
        if self.model != ModelBehaviour::Script {
            parts.push(format!("model {:?}", self.model));
        }
        if let Some((from, len)) = self.secret_outage {
            parts.push(format!("secret unreadable {from:.1}-{:.1}s", from + len));
        }
        if parts.is_empty() {
            "no faults".into()
        } else {
            parts.join(", ")
        }
    }
}
