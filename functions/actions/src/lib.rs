//! The actions step: what happens to one approved instance, one operation per invocation so the state machine
//! can wait between them.
//!
//! - `snapshot`: CreateSnapshots of every attached EBS volume, tagged with run id, instance id and reason.
//! - `snapshot_status`: all completed, still pending, or failed.
//! - `stop` / `terminate`: only with completed snapshots of every attached volume, and only after re-reading the
//!   live instance and re-running the policy on its current tags and state.
//! - `tag`: records a decision (`finops:snooze-until` for a snooze).
//!
//! Every operation is idempotent: a retried or duplicated invocation finds the snapshots this run already made (by
//! their run-id tag) and the state it already caused (by the instance's run-id tag), and does not act twice.

pub mod ec2;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::approval::ApprovalAction;
use finops_core::policy::{PolicyConfig, ProposedAction};
use finops_core::InstanceRecord;
use serde::{Deserialize, Serialize};

pub use ec2::SdkEc2Actions;

pub const TAG_RUN_ID: &str = "finops:run-id";
pub const TAG_INSTANCE_ID: &str = "finops:instance-id";
pub const TAG_ACTION: &str = "finops:action";
pub const TAG_REASON: &str = "finops:reason";
pub const TAG_APPROVED_BY: &str = "finops:approved-by";
pub const TAG_ACTED_AT: &str = "finops:acted-at";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    pub snapshot_id: String,
    pub volume_id: String,
    /// `pending`, `completed`, `error` (EC2's SnapshotState).
    pub state: String,
    #[serde(default)]
    pub progress: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// EC2, narrowed to what the actions step does.
pub trait Ec2Actions: Send + Sync {
    fn describe_instance(
        &self,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<InstanceRecord>, FinopsError>> + Send;
    fn run_snapshots(
        &self,
        region: &str,
        run_id: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Vec<SnapshotInfo>, FinopsError>> + Send;
    fn create_snapshots(
        &self,
        region: &str,
        instance_id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<SnapshotInfo>, FinopsError>> + Send;
    fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> impl Future<Output = Result<Vec<SnapshotInfo>, FinopsError>> + Send;
    fn tag_instance(
        &self,
        region: &str,
        instance_id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    fn stop(&self, region: &str, instance_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
    fn terminate(&self, region: &str, instance_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionsConfig {
    pub policy: PolicyConfig,
    pub snooze_days: i64,
}

impl ActionsConfig {
    pub fn from_env() -> Result<Self, FinopsError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let policy = PolicyConfig::from_vars(vars.clone())?;
        let snooze_days = match vars.iter().find(|(k, _)| k == "FINOPS_SNOOZE_DAYS") {
            Some((_, v)) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| FinopsError::Configuration(format!("FINOPS_SNOOZE_DAYS {v:?} is not 1..=365")))?,
            None => 7,
        };
        Ok(Self { policy, snooze_days })
    }
}

/// The instance an operation is about (a subset of the policy step's proposal; extra fields are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub instance_id: String,
    pub region: String,
    #[serde(default = "default_action")]
    pub action: ProposedAction,
    #[serde(default)]
    pub justification: String,
}

fn default_action() -> ProposedAction {
    ProposedAction::SnapshotAndStop
}

/// The approver's decision as the approval callback reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    pub decision: ApprovalAction,
    #[serde(default)]
    pub approver: String,
    #[serde(default)]
    pub decided_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum ActionRequest {
    Snapshot {
        #[serde(rename = "runId")]
        run_id: String,
        proposal: Target,
    },
    SnapshotStatus {
        #[serde(rename = "runId")]
        run_id: String,
        proposal: Target,
        #[serde(rename = "snapshotIds")]
        snapshot_ids: Vec<String>,
    },
    Stop {
        #[serde(rename = "runId")]
        run_id: String,
        proposal: Target,
        #[serde(rename = "snapshotIds")]
        snapshot_ids: Vec<String>,
        #[serde(default)]
        decision: Option<DecisionRecord>,
    },
    Terminate {
        #[serde(rename = "runId")]
        run_id: String,
        proposal: Target,
        #[serde(rename = "snapshotIds")]
        snapshot_ids: Vec<String>,
        #[serde(default)]
        decision: Option<DecisionRecord>,
    },
    Tag {
        #[serde(rename = "runId")]
        run_id: String,
        proposal: Target,
        decision: DecisionRecord,
    },
}

impl ActionRequest {
    pub fn run_id(&self) -> &str {
        match self {
            Self::Snapshot { run_id, .. }
            | Self::SnapshotStatus { run_id, .. }
            | Self::Stop { run_id, .. }
            | Self::Terminate { run_id, .. }
            | Self::Tag { run_id, .. } => run_id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acted now.
    Done,
    /// This run had already done it (a retry or a duplicate invocation).
    AlreadyDone,
    /// Not done, on purpose: the reason says why. Nothing was changed.
    Refused,
    /// Snapshots still in progress.
    Pending,
    /// Snapshots failed: nothing may be stopped.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutcome {
    pub operation: String,
    pub instance_id: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
}

impl ActionOutcome {
    fn new(
        operation: &str,
        target: &Target,
        outcome: Outcome,
        detail: impl Into<String>,
        snapshot_ids: Vec<String>,
    ) -> Self {
        Self {
            operation: operation.into(),
            instance_id: target.instance_id.clone(),
            outcome,
            detail: detail.into(),
            snapshot_ids,
        }
    }
}

/// EC2 tag values allow letters, digits, spaces and `+ - = . _ : / @`; anything else (from a justification an LLM
/// wrote, say) is replaced, and the value is cut to EC2's 256 characters.
pub fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c) { c } else { ' ' })
        .take(256)
        .collect::<String>()
        .trim()
        .to_owned()
}

fn snapshot_ids(snaps: &[SnapshotInfo]) -> Vec<String> {
    snaps.iter().map(|s| s.snapshot_id.clone()).collect()
}

pub async fn handle<E: Ec2Actions>(
    event: serde_json::Value,
    ec2: &E,
    config: &ActionsConfig,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, FinopsError> {
    let request: ActionRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!(
            "actions expects {{operation: snapshot|snapshot_status|stop|terminate|tag, runId, proposal, ...}}: {e}"
        ))
    })?;
    let run_id = request.run_id().to_owned();
    let outcome = match request {
        ActionRequest::Snapshot { run_id, proposal } => snapshot(ec2, &run_id, &proposal).await?,
        ActionRequest::SnapshotStatus { run_id, proposal, snapshot_ids } => {
            validate_run_id(&run_id)?;
            let snaps = ec2.describe_snapshots(&proposal.region, &snapshot_ids).await?;
            let (outcome, detail) = snapshot_state(&snaps, &snapshot_ids);
            ActionOutcome::new("snapshot_status", &proposal, outcome, detail, snapshot_ids)
        }
        ActionRequest::Stop { run_id, proposal, snapshot_ids, decision } => {
            halt(ec2, config, &run_id, &proposal, &snapshot_ids, decision.as_ref(), false, now).await?
        }
        ActionRequest::Terminate { run_id, proposal, snapshot_ids, decision } => {
            halt(ec2, config, &run_id, &proposal, &snapshot_ids, decision.as_ref(), true, now).await?
        }
        ActionRequest::Tag { run_id, proposal, decision } => {
            tag(ec2, config, &run_id, &proposal, &decision, now).await?
        }
    };
    let decision = format!("{}:{:?}", outcome.operation, outcome.outcome);
    finops_aws::xray::record_decision("finops.action", "actions", &outcome.instance_id, &decision, &run_id);
    tracing::info!(
        instance_id = outcome.instance_id,
        operation = outcome.operation,
        outcome = ?outcome.outcome,
        detail = outcome.detail,
        "action"
    );
    Ok(outcome)
}

async fn snapshot<E: Ec2Actions>(ec2: &E, run_id: &str, target: &Target) -> Result<ActionOutcome, FinopsError> {
    validate_run_id(run_id)?;
    let existing: Vec<SnapshotInfo> = ec2
        .run_snapshots(&target.region, run_id, &target.instance_id)
        .await?
        .into_iter()
        .filter(|s| s.state != "error")
        .collect();
    if !existing.is_empty() {
        let detail = format!("{} snapshot(s) from this run already exist", existing.len());
        return Ok(ActionOutcome::new("snapshot", target, Outcome::AlreadyDone, detail, snapshot_ids(&existing)));
    }
    let Some(_) = ec2.describe_instance(&target.region, &target.instance_id).await? else {
        return Ok(ActionOutcome::new("snapshot", target, Outcome::Refused, "instance no longer exists", vec![]));
    };
    let tags = vec![
        (TAG_RUN_ID.to_owned(), run_id.to_owned()),
        (TAG_INSTANCE_ID.to_owned(), target.instance_id.clone()),
        (TAG_REASON.to_owned(), tag_value(&format!("finops idle stop: {}", target.justification))),
        ("Name".to_owned(), format!("finops {} before stop", target.instance_id)),
    ];
    let created = ec2.create_snapshots(&target.region, &target.instance_id, &tags).await?;
    let detail = format!("{} snapshot(s) started", created.len());
    Ok(ActionOutcome::new("snapshot", target, Outcome::Done, detail, snapshot_ids(&created)))
}

fn snapshot_state(snaps: &[SnapshotInfo], requested: &[String]) -> (Outcome, String) {
    let missing: Vec<&String> = requested.iter().filter(|id| !snaps.iter().any(|s| &s.snapshot_id == *id)).collect();
    if !missing.is_empty() {
        return (Outcome::Failed, format!("snapshot(s) not found: {missing:?}"));
    }
    if let Some(bad) = snaps.iter().find(|s| s.state == "error") {
        return (Outcome::Failed, format!("snapshot {} of {} failed", bad.snapshot_id, bad.volume_id));
    }
    let pending: Vec<&SnapshotInfo> = snaps.iter().filter(|s| s.state != "completed").collect();
    if !pending.is_empty() {
        let progress: Vec<String> = pending.iter().map(|s| format!("{} {}", s.snapshot_id, s.progress)).collect();
        return (Outcome::Pending, format!("in progress: {}", progress.join(", ")));
    }
    (Outcome::Done, format!("{} snapshot(s) completed", snaps.len()))
}

#[allow(clippy::too_many_arguments)]
async fn halt<E: Ec2Actions>(
    ec2: &E,
    config: &ActionsConfig,
    run_id: &str,
    target: &Target,
    snapshot_ids: &[String],
    decision: Option<&DecisionRecord>,
    terminate: bool,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, FinopsError> {
    validate_run_id(run_id)?;
    let operation = if terminate { "terminate" } else { "stop" };
    let refuse =
        |detail: String| Ok(ActionOutcome::new(operation, target, Outcome::Refused, detail, snapshot_ids.to_vec()));
    if terminate && !(config.policy.terminate_enabled && target.action == ProposedAction::SnapshotAndTerminate) {
        return refuse("terminate is not enabled for this deployment or was not what was approved".into());
    }
    if decision.is_some_and(|d| d.decision != ApprovalAction::Approve) {
        return refuse("the decision was not approve".into());
    }
    let Some(live) = ec2.describe_instance(&target.region, &target.instance_id).await? else {
        return refuse("instance no longer exists".into());
    };
    let ours = live.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id);
    let done_state = if terminate { ["shutting-down", "terminated"] } else { ["stopping", "stopped"] };
    if ours && done_state.contains(&live.state.as_str()) {
        return Ok(ActionOutcome::new(
            operation,
            target,
            Outcome::AlreadyDone,
            format!("already {} by this run", live.state),
            snapshot_ids.to_vec(),
        ));
    }
    // The live instance, not the inventory: tags added or state changed since the scan count now.
    if let Some((reason, detail)) = config.policy.instance_block(&live, now) {
        return refuse(format!("policy re-check on the live instance: {reason}: {detail}"));
    }
    if !live.volumes.is_empty() || !snapshot_ids.is_empty() {
        let snaps = ec2.describe_snapshots(&target.region, snapshot_ids).await?;
        let (state, detail) = snapshot_state(&snaps, snapshot_ids);
        if state != Outcome::Done {
            return refuse(format!("snapshots not complete: {detail}"));
        }
        let foreign: Vec<&str> = snaps
            .iter()
            .filter(|s| {
                s.tags.get(TAG_RUN_ID).map(String::as_str) != Some(run_id)
                    || s.tags.get(TAG_INSTANCE_ID) != Some(&target.instance_id)
            })
            .map(|s| s.snapshot_id.as_str())
            .collect();
        if !foreign.is_empty() {
            return refuse(format!("snapshot(s) {foreign:?} were not made by this run for this instance"));
        }
        let uncovered: Vec<&str> = live
            .volumes
            .iter()
            .filter(|v| !snaps.iter().any(|s| s.volume_id == v.volume_id))
            .map(|v| v.volume_id.as_str())
            .collect();
        if !uncovered.is_empty() {
            return refuse(format!("volume(s) {uncovered:?} have no snapshot from this run"));
        }
    }
    // Mark before acting, so a retry after a crash between the two knows the state change was ours.
    let approver =
        decision.map(|d| tag_value(&d.approver)).filter(|a| !a.is_empty()).unwrap_or_else(|| "unknown".into());
    let mut tags = vec![
        (TAG_RUN_ID.to_owned(), run_id.to_owned()),
        (TAG_ACTION.to_owned(), if terminate { "terminated" } else { "stopped" }.to_owned()),
        (TAG_APPROVED_BY.to_owned(), approver),
        (TAG_ACTED_AT.to_owned(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    ];
    if !target.justification.is_empty() {
        tags.push((TAG_REASON.to_owned(), tag_value(&target.justification)));
    }
    ec2.tag_instance(&target.region, &target.instance_id, &tags).await?;
    if terminate {
        ec2.terminate(&target.region, &target.instance_id).await?;
    } else {
        ec2.stop(&target.region, &target.instance_id).await?;
    }
    Ok(ActionOutcome::new(
        operation,
        target,
        Outcome::Done,
        format!("{operation} requested after {} completed snapshot(s)", snapshot_ids.len()),
        snapshot_ids.to_vec(),
    ))
}

async fn tag<E: Ec2Actions>(
    ec2: &E,
    config: &ActionsConfig,
    run_id: &str,
    target: &Target,
    decision: &DecisionRecord,
    now: DateTime<Utc>,
) -> Result<ActionOutcome, FinopsError> {
    validate_run_id(run_id)?;
    let who = tag_value(&decision.approver);
    let mut tags = vec![
        (TAG_RUN_ID.to_owned(), run_id.to_owned()),
        ("finops:decision".to_owned(), decision.decision.as_str().to_owned()),
    ];
    if !who.is_empty() {
        tags.push(("finops:decided-by".to_owned(), who));
    }
    let detail = if decision.decision == ApprovalAction::Snooze {
        let until = (now + Duration::days(config.snooze_days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        tags.push((config.policy.snooze_tag_key.clone(), until.clone()));
        format!("snoozed until {until}")
    } else {
        format!("decision {} recorded", decision.decision)
    };
    ec2.tag_instance(&target.region, &target.instance_id, &tags).await?;
    Ok(ActionOutcome::new("tag", target, Outcome::Done, detail, vec![]))
}
