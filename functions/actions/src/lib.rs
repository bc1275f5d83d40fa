//! The actions step: what happens to one approved instance, one operation per invocation so the state machine
//! can wait between them. The only crate that can change an instance ([`Ec2Actions`]).
//!
//! - `snapshot`: CreateSnapshots of every attached EBS volume, tagged with run id, instance id and reason.
//! - `snapshot_status`: all completed, still pending, or failed.
//! - `stop`: only with completed snapshots of every attached volume, and only after re-reading the live instance,
//!   re-running the policy on its current tags and state (instance storage included), checking it was not restarted
//!   and measuring it again since the scan.
//! - `tag`: records a decision (`finops:snooze-until` for a snooze) on the instance, volume or address.
//! - For an unattached volume: `snapshot` (CreateSnapshot of that volume) and `snapshot_status` as above, then
//!   `delete_volume`: only with this run's completed snapshot of it (kept, so it can be recreated), and only after
//!   re-reading it (still `available`, the policy on its live tags) and measuring its I/O again since the scan.
//! - For an unassociated Elastic IP: `release_address`, after re-reading it (still unassociated, the policy on its
//!   live tags, a DNS record's name included).
//!
//! Each operation acts only on the kind the person approved: the approval record's action must be the operation's.
//!
//! Nothing is trusted from the payload: `snapshot`, `stop` and `tag` act only when the approvals table holds a
//! decision for this run and this instance, made by POST on the page of the followed link; the decision and the
//! approver come from that record. Every operation is idempotent: a retried or duplicated invocation finds the
//! snapshots this run already made (by their run-id tag) and the state it already caused (by the instance's run-id
//! tag), and does not act twice.

pub mod ec2;
pub mod memory;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use finops_approval_store::{ApprovalReader, ApprovalRecord, ApprovalState};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::approval::ApprovalAction;
use finops_core::criteria::DailyRule;
use finops_core::policy::{PolicyConfig, ProposedAction};
use finops_core::resources::{resource_block, ResourceKind};
pub use finops_core::steps::{ActionOutcome, ActionRequest, DecisionRef, Outcome, Target};
use finops_core::{DeploymentMode, DetectionConfig, InstanceRecord, LookbackWindow};
use finops_inventory::{InstanceLookup, ResourceLookup};
use finops_metrics::MetricsApi;
use serde::{Deserialize, Serialize};

pub use ec2::SdkEc2Actions;

pub const TAG_RUN_ID: &str = "finops:run-id";
pub const TAG_INSTANCE_ID: &str = "finops:instance-id";
pub const TAG_VOLUME_ID: &str = "finops:volume-id";
pub const TAG_ACTION: &str = "finops:action";
pub const TAG_REASON: &str = "finops:reason";
pub const TAG_APPROVED_BY: &str = "finops:approved-by";
pub const TAG_ACTED_AT: &str = "finops:acted-at";
/// On the snapshot of a volume to be deleted: where it was and what it was, so an undo can recreate it.
pub const TAG_VOLUME_ZONE: &str = "finops:volume-az";
pub const TAG_VOLUME_TYPE: &str = "finops:volume-type";
pub const TAG_VOLUME_NAME: &str = "finops:volume-name";
/// On the snapshot of a stopped instance's volume: the device it was attached at.
pub const TAG_DEVICE: &str = "finops:device";
/// On what an undo started again or recreated: the undo record's id, who asked and when.
pub const TAG_UNDO_ID: &str = "finops:undo-id";
pub const TAG_UNDONE_BY: &str = "finops:undone-by";
pub const TAG_UNDONE_AT: &str = "finops:undone-at";

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

/// What a run's snapshots were taken of: an instance's volumes (tagged `finops:instance-id`), or one unattached
/// volume before it is deleted (tagged `finops:volume-id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOf<'a> {
    Instance(&'a str),
    Volume(&'a str),
}

impl SnapshotOf<'_> {
    /// The tag that names it on its snapshots.
    pub fn tag(&self) -> (&'static str, &str) {
        match *self {
            Self::Instance(id) => (TAG_INSTANCE_ID, id),
            Self::Volume(id) => (TAG_VOLUME_ID, id),
        }
    }
}

/// EC2, narrowed to what the actions step changes: snapshots, tags, stop, and the deletion of an unattached volume
/// and the release of an unassociated address. Reading an instance, volume or address is [`InstanceLookup`]'s and
/// [`ResourceLookup`]'s job, which read-only code holds instead of this.
pub trait Ec2Actions: Send + Sync {
    /// This run's snapshots of `of` (by their run-id tag and the tag naming what they were taken of).
    fn run_snapshots(
        &self,
        region: &str,
        run_id: &str,
        of: SnapshotOf<'_>,
    ) -> impl Future<Output = Result<Vec<SnapshotInfo>, FinopsError>> + Send;
    /// CreateSnapshot of one volume (an unattached one: CreateSnapshots needs an instance).
    fn create_volume_snapshot(
        &self,
        region: &str,
        volume_id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<SnapshotInfo, FinopsError>> + Send;
    fn delete_volume(&self, region: &str, volume_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
    fn release_address(
        &self,
        region: &str,
        allocation_id: &str,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
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
    /// CreateTags on an instance, a volume or an Elastic IP allocation.
    fn tag_resource(
        &self,
        region: &str,
        resource_id: &str,
        tags: &[(String, String)],
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    fn stop(&self, region: &str, instance_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// DetachVolume: only a long-stopped instance's volume, before it is deleted (where the deployment allows it).
    fn detach_volume(
        &self,
        region: &str,
        volume_id: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// StartInstances: only an undo, of an instance this deployment stopped (IAM allows it on nothing else).
    fn start(&self, region: &str, instance_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// What starting the instance would run (DescribeInstances and its user data, DescribeInstanceAttribute), if it
    /// exists.
    fn start_configuration(
        &self,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<StartConfiguration>, FinopsError>> + Send;
    /// The volumes recreated from `volume_id`'s deletion (by their `finops:volume-id` and `finops:action` tags), each
    /// with the undo that made it.
    fn recreated_volumes(
        &self,
        region: &str,
        volume_id: &str,
    ) -> impl Future<Output = Result<Vec<RecreatedBy>, FinopsError>> + Send;
    /// CreateVolume from a snapshot, tagged at creation (`client_token`: the undo id, so EC2 creates it once).
    fn create_volume_from_snapshot(
        &self,
        region: &str,
        recreated: &RecreatedVolume,
        tags: &[(String, String)],
        client_token: &str,
    ) -> impl Future<Output = Result<String, FinopsError>> + Send;
}

/// A volume recreated from a deleted one, and the undo that made it (its `finops:undo-id` tag).
#[derive(Debug, Clone, PartialEq)]
pub struct RecreatedBy {
    pub volume_id: String,
    pub undo_id: Option<String>,
}

/// A deleted volume as its snapshot describes it: what CreateVolume needs to bring it back.
#[derive(Debug, Clone, PartialEq)]
pub struct RecreatedVolume {
    pub snapshot_id: String,
    pub availability_zone: String,
    pub volume_type: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionsConfig {
    pub policy: PolicyConfig,
    pub snooze_days: i64,
    /// The idle rule of the deployment: measured again just before a stop, any day crossing it keeps the instance.
    pub idle_rule: DailyRule,
    /// Where the decisions are verified (`FINOPS_APPROVALS_TABLE`, read only).
    pub approvals_table: String,
    /// The member accounts' actions role (`FINOPS_MEMBER_ACTIONS_ROLE`), when the deployment covers an organization
    /// (`FINOPS_ACCOUNTS`); None: this step acts in its own account only, and refuses a proposal that names another.
    pub member_actions_role: Option<String>,
    /// The deployment's mode (`FINOPS_MODE`; unset is recommend): in recommend mode nothing is changed, undo included.
    pub mode: DeploymentMode,
}

impl ActionsConfig {
    pub fn from_env() -> Result<Self, FinopsError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let policy = PolicyConfig::from_vars(vars.clone())?;
        let detection = DetectionConfig::from_vars(vars.clone())?;
        let snooze_days = match vars.iter().find(|(k, _)| k == "FINOPS_SNOOZE_DAYS") {
            Some((_, v)) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| FinopsError::Configuration(format!("FINOPS_SNOOZE_DAYS {v:?} is not 1..=365")))?,
            None => 7,
        };
        let idle_rule = detection.criteria.idle.unwrap_or_else(DailyRule::strict_idle);
        let approvals_table = finops_approval_store::required_var(&vars, "FINOPS_APPROVALS_TABLE")?;
        let mode = DeploymentMode::from_vars(vars.clone())?;
        let member_actions_role = finops_core::organization::OrganizationConfig::from_vars(vars)
            .map_err(|e| FinopsError::Configuration(e.to_string()))?
            .map(|organization| organization.actions_role);
        Ok(Self { policy, snooze_days, idle_rule, approvals_table, member_actions_role, mode })
    }
}

/// An outcome about `target`.
fn outcome_of(
    operation: &str,
    target: &Target,
    outcome: Outcome,
    detail: impl Into<String>,
    snapshot_ids: Vec<String>,
) -> ActionOutcome {
    ActionOutcome {
        operation: operation.into(),
        resource_id: target.resource_id.clone(),
        outcome,
        detail: detail.into(),
        snapshot_ids,
        acted: None,
    }
}

/// The outcome of an action that was taken (now, or by this run before): recorded with when and its estimate.
fn acted(mut outcome: ActionOutcome, target: &Target, now: DateTime<Utc>) -> ActionOutcome {
    if matches!(outcome.outcome, Outcome::Done | Outcome::AlreadyDone) {
        outcome.acted = Some(finops_core::savings::ActedOn {
            resource_id: target.resource_id.clone(),
            action: target.action,
            region: target.region.clone(),
            account: target.account.clone(),
            monthly_saving_usd: target.monthly_saving_usd,
            acted_at: now,
            stopped_as: None,
        });
    }
    outcome
}

/// `finops:action` on a stopped instance whose volumes were deleted.
pub const VOLUMES_DELETED: &str = "volumes-deleted";

/// `finops:action` on a volume an undo recreated from its deletion's snapshot.
pub const RECREATED_VOLUME: &str = "recreated-volume";

/// Checks (a second apart) that a detached volume is `available` before the step fails as transient.
const DETACH_CHECKS: u32 = 10;

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

/// The approval record an operation names, read once, or why there is none.
pub type Approval = Result<ApprovalRecord, String>;

pub use finops_core::undo::{StartConfiguration, StoppedAs};

/// The step with what it reads and what it changes: instances, volumes and addresses as they are now (read), EC2
/// (act), approval records (read) and CloudWatch (read, to measure again).
pub struct Actions<'a, L, E, A, M> {
    pub live: &'a L,
    pub ec2: &'a E,
    pub approvals: &'a A,
    pub metrics: &'a M,
    pub config: &'a ActionsConfig,
}

impl<L: InstanceLookup + ResourceLookup, E: Ec2Actions, A: ApprovalReader, M: MetricsApi> Actions<'_, L, E, A, M> {
    /// The Lambda handler.
    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<ActionOutcome, FinopsError> {
        let mut request: ActionRequest = serde_json::from_value(event).map_err(|e| {
            FinopsError::InvalidInput(format!(
                "actions expects {{operation: snapshot|snapshot_status|stop|stop_status|delete_volume|release_address|tag|undo, \
                 runId, proposal, ...}}: {e}"
            ))
        })?;
        let run_id = request.run_id().to_owned();
        validate_run_id(&run_id)?;
        let account_id = request.target().account.as_ref().map(|a| a.id.clone());
        let approval = if request.is_read_only() {
            Err("a read-only operation".into())
        } else if self.config.mode == DeploymentMode::Recommend {
            // The kill switch: a recommend deployment changes nothing, whatever reaches this step (an undo execution
            // started from a link offered before the switch, a hand-made execution).
            let detail = "not done: this deployment is in recommend mode, which changes nothing (undo included)";
            return Ok(outcome_of(request.operation(), request.target(), Outcome::Refused, detail, vec![]));
        } else {
            self.approval(request.decision_ref()).await?
        };
        // An operation that acts takes its target from the approval record a person decided, never from the payload:
        // the payload only names which record, and must name the same resource, region and account, or nothing is
        // approved for it.
        let approval = approval.and_then(|record| {
            let target = request.target_mut();
            if let Some(why) = names_another_target(&record, target) {
                tracing::warn!(resource_id = target.resource_id, why, decision = "REFUSED", "unverified action");
                return Err(why);
            }
            *target = Target::of(&record.proposal);
            Ok(record)
        });
        let approval = &approval;
        let outcome = match request {
            ActionRequest::Snapshot { run_id, proposal, .. } => match proposal.action {
                ProposedAction::SnapshotAndDelete => self.snapshot_volume(&run_id, &proposal, approval, now).await?,
                ProposedAction::SnapshotAndStop
                | ProposedAction::Release
                | ProposedAction::SnapshotAndDeleteVolumes => self.snapshot(&run_id, &proposal, approval).await?,
            },
            ActionRequest::SnapshotStatus { proposal, snapshot_ids, .. } => {
                let snaps = self.ec2.describe_snapshots(&proposal.region, &snapshot_ids).await?;
                let (outcome, detail) = snapshot_state(&snaps, &snapshot_ids);
                outcome_of("snapshot_status", &proposal, outcome, detail, snapshot_ids)
            }
            ActionRequest::Stop { run_id, proposal, snapshot_ids, .. } => {
                let (outcome, stopped_as) = self.stop(&run_id, &proposal, &snapshot_ids, approval, now).await?;
                let mut outcome = acted(outcome, &proposal, now);
                if let Some(acted) = outcome.acted.as_mut() {
                    acted.stopped_as = stopped_as;
                }
                outcome
            }
            ActionRequest::Tag { run_id, proposal, .. } => self.tag(&run_id, &proposal, approval, now).await?,
            ActionRequest::StopStatus { run_id, proposal } => {
                acted(self.stop_status(&run_id, &proposal).await?, &proposal, now)
            }
            ActionRequest::DeleteVolume { run_id, proposal, snapshot_ids, .. } => {
                acted(self.delete_volume(&run_id, &proposal, &snapshot_ids, approval, now).await?, &proposal, now)
            }
            ActionRequest::DeleteInstanceVolumes { run_id, proposal, snapshot_ids, .. } => acted(
                self.delete_instance_volumes(&run_id, &proposal, &snapshot_ids, approval, now).await?,
                &proposal,
                now,
            ),
            ActionRequest::ReleaseAddress { run_id, proposal, .. } => {
                acted(self.release_address(&run_id, &proposal, approval, now).await?, &proposal, now)
            }
            ActionRequest::CleanupStatus { run_id, proposal } => {
                acted(self.cleanup_status(&run_id, &proposal).await?, &proposal, now)
            }
            ActionRequest::Undo { run_id, proposal, .. } => self.undo(&run_id, &proposal, approval, now).await?,
        };
        let decision = format!("{}:{:?}", outcome.operation, outcome.outcome);
        finops_aws::xray::record_decision_in(
            "finops.action",
            "actions",
            &outcome.resource_id,
            &decision,
            &run_id,
            account_id.as_deref(),
        );
        tracing::info!(
            run_id,
            instance_id = outcome.resource_id,
            operation = outcome.operation,
            outcome = ?outcome.outcome,
            detail = outcome.detail,
            "action"
        );
        Ok(outcome)
    }

    /// The approval record an acting operation names (read once), or why there is none to act on.
    async fn approval(&self, decision: Option<&DecisionRef>) -> Result<Approval, FinopsError> {
        let Some(id) = decision.and_then(|d| d.approval_id.as_deref()) else {
            return Ok(Err("no approval id: only a decision recorded in the approvals table authorises this".into()));
        };
        if !finops_core::approval::is_approval_id(id) {
            return Ok(Err(format!("{id:?} is not an approval id")));
        }
        Ok(self.approvals.get(id).await?.ok_or_else(|| format!("approval {id} is not in the approvals table")))
    }

    /// The approval record behind an operation, if it authorises one of `wanted` for this run and this resource,
    /// made as the deployment allows (by someone its audience names), and the action the person was shown is one of
    /// `actions` (an approved release never deletes a volume, an approved stop never releases anything); otherwise
    /// why not, in words for the report.
    fn verified(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        wanted: &[ApprovalAction],
        actions: &[ProposedAction],
    ) -> Result<ApprovalRecord, String> {
        let record = approval.as_ref().map_err(Clone::clone)?;
        let id = &record.approval_id;
        let why_not = if record.undo.is_some() != wanted.contains(&ApprovalAction::Undo) {
            // An undo record authorises its undo only; a proposal's approval never an undo.
            Some(format!("approval {id} is not a record of this kind of decision"))
        } else if record.state != ApprovalState::Decided {
            Some(format!("approval {id} is {:?}, not decided", record.state))
        } else if !record.decision.is_some_and(|d| wanted.contains(&d)) {
            Some(format!("approval {id} decided {:?}, not {wanted:?}", record.decision))
        } else if let Err(why) = record.decision_is_authentic() {
            // By its recipient's own link, or a signed click by a Slack user its audience names.
            Some(why)
        } else if record.run_id != run_id {
            Some(format!("approval {id} belongs to run {:?}, not {run_id:?}", record.run_id))
        } else if !actions.contains(&record.proposal.action) {
            Some(format!(
                "approval {id} is for {} {}, not for this operation",
                record.proposal.action.verb(),
                record.proposal.resource_id
            ))
        } else {
            None
        };
        match why_not {
            Some(why) => {
                tracing::warn!(
                    run_id,
                    resource_id = target.resource_id,
                    why,
                    decision = "REFUSED",
                    "unverified action"
                );
                Err(why)
            }
            None => Ok(record.clone()),
        }
    }

    async fn snapshot(&self, run_id: &str, target: &Target, approval: &Approval) -> Result<ActionOutcome, FinopsError> {
        let refuse = |detail: String| Ok(outcome_of("snapshot", target, Outcome::Refused, detail, vec![]));
        let of = SnapshotOf::Instance(&target.resource_id);
        // The approval record decides which: a payload saying "volumes" for an approved stop is refused.
        let (action, why) = match target.action {
            ProposedAction::SnapshotAndDeleteVolumes => (target.action, "stopped instance's volumes, to delete"),
            _ => (ProposedAction::SnapshotAndStop, "idle stop"),
        };
        if let Some(settled) = self.snapshot_settled(run_id, target, approval, action, of).await? {
            return Ok(settled);
        }
        let Some(live) = self.live.describe_instance(&target.region, &target.resource_id).await? else {
            return refuse("instance no longer exists".into());
        };
        let tags = vec![
            (TAG_RUN_ID.to_owned(), run_id.to_owned()),
            (TAG_INSTANCE_ID.to_owned(), target.resource_id.clone()),
            (TAG_REASON.to_owned(), tag_value(&format!("finops {why}: {}", target.justification))),
            ("Name".to_owned(), format!("finops {} before {}", target.resource_id, action.verb())),
        ];
        let created = self.ec2.create_snapshots(&target.region, &target.resource_id, &tags).await?;
        if action == ProposedAction::SnapshotAndDeleteVolumes {
            // Where each volume was attached, on its snapshot: what recreating and attaching it again needs.
            for snap in &created {
                let device =
                    live.volumes.iter().find(|v| v.volume_id == snap.volume_id).and_then(|v| v.device_name.clone());
                let tags = [
                    (TAG_VOLUME_ID.to_owned(), snap.volume_id.clone()),
                    (TAG_DEVICE.to_owned(), device.unwrap_or_default()),
                ];
                self.ec2.tag_resource(&target.region, &snap.snapshot_id, &tags).await?;
            }
        }
        let detail = format!("{} snapshot(s) started", created.len());
        Ok(outcome_of("snapshot", target, Outcome::Done, detail, snapshot_ids(&created)))
    }

    /// After the stop step failed: reads the live instance and says whether this run stopped it (its run-id tag and
    /// a stopping or stopped state). Changes nothing.
    async fn stop_status(&self, run_id: &str, target: &Target) -> Result<ActionOutcome, FinopsError> {
        let live = self.live.describe_instance(&target.region, &target.resource_id).await?;
        let (outcome, detail) = match live {
            Some(live)
                if live.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
                    && ["stopping", "stopped"].contains(&live.state.as_str()) =>
            {
                (Outcome::AlreadyDone, format!("{} by this run (found after the stop step failed)", live.state))
            }
            Some(live) => {
                (Outcome::Failed, format!("not stopped: the stop step failed; the instance is {}", live.state))
            }
            None => (Outcome::Failed, "not stopped: the stop step failed; the instance no longer exists".into()),
        };
        Ok(outcome_of("stop", target, outcome, detail, Vec::new()))
    }

    async fn stop(
        &self,
        run_id: &str,
        target: &Target,
        snapshot_ids: &[String],
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<(ActionOutcome, Option<StoppedAs>), FinopsError> {
        let refuse = |detail: String| {
            let refused = format!("not stopped: {detail}");
            Ok((outcome_of("stop", target, Outcome::Refused, refused, snapshot_ids.to_vec()), None))
        };
        let stop = [ProposedAction::SnapshotAndStop];
        let record = match self.verified(run_id, target, approval, &[ApprovalAction::Approve], &stop) {
            Ok(record) => record,
            Err(why) => return refuse(why),
        };
        let Some(live) = self.live.describe_instance(&target.region, &target.resource_id).await? else {
            return refuse("instance no longer exists".into());
        };
        let ours = live.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id);
        if ours && ["stopping", "stopped"].contains(&live.state.as_str()) {
            // A retry or a duplicate. How the stop left it was the first answer's (lost): the tags that say "ours"
            // anyone who may tag could have written, after stopping and changing it. So no undo starts it.
            let detail = format!("already {} by this run", live.state);
            return Ok((outcome_of("stop", target, Outcome::AlreadyDone, detail, snapshot_ids.to_vec()), None));
        }
        // The live instance, not the inventory: tags added, storage or state changed since the scan count now.
        if let Some((reason, detail)) = self.config.policy.instance_block(&live, now) {
            return refuse(format!("policy re-check on the live instance: {reason}: {detail}"));
        }
        if let Some(why) = self.measured_again(&live, target, now).await? {
            return refuse(why);
        }
        let of = SnapshotOf::Instance(&target.resource_id);
        let snaps = match self.completed_run_snapshots(&target.region, run_id, snapshot_ids, of).await? {
            Ok(snaps) => snaps,
            Err(why) => return refuse(why),
        };
        let uncovered: Vec<&str> = live
            .volumes
            .iter()
            .filter(|v| !snaps.iter().any(|s| s.volume_id == v.volume_id))
            .map(|v| v.volume_id.as_str())
            .collect();
        if !uncovered.is_empty() {
            return refuse(format!("volume(s) {uncovered:?} have no snapshot from this run"));
        }
        // Mark before acting, so a retry after a crash between the two knows the state change was ours.
        let approver = record.approver.as_deref().map(tag_value).filter(|a| !a.is_empty());
        let mut tags = vec![
            (TAG_RUN_ID.to_owned(), run_id.to_owned()),
            (TAG_ACTION.to_owned(), "stopped".to_owned()),
            (TAG_APPROVED_BY.to_owned(), approver.unwrap_or_else(|| "unknown".into())),
            (TAG_ACTED_AT.to_owned(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        if !target.justification.is_empty() {
            tags.push((TAG_REASON.to_owned(), tag_value(&target.justification)));
        }
        self.ec2.tag_resource(&target.region, &target.resource_id, &tags).await?;
        // What starting it again would run, read while it runs (a type or user data can change only once stopped).
        let configuration = self.ec2.start_configuration(&target.region, &target.resource_id).await?;
        self.ec2.stop(&target.region, &target.resource_id).await?;
        let stopped_as = match configuration {
            Some(configuration) => {
                self.stopped_at(target, now).await?.map(|at| StoppedAs { stopped_at: at, configuration })
            }
            None => None,
        };
        let detail = format!("stop requested after {} completed snapshot(s)", snapshot_ids.len());
        Ok((outcome_of("stop", target, Outcome::Done, detail, snapshot_ids.to_vec()), stopped_as))
    }

    /// When EC2 says the stop this step requested at `requested` happened (its StateTransitionReason, from
    /// `stopping` on), read a few times while EC2 catches up. None (no undo will start it): EC2 does not say, or says
    /// another time, a stop that may be someone else's.
    async fn stopped_at(
        &self,
        target: &Target,
        requested: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, FinopsError> {
        for attempt in 0..STOPPED_AT_READS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            let live = self.live.describe_instance(&target.region, &target.resource_id).await?;
            match live.and_then(|l| l.stopped_since) {
                Some(stopped) if stop_is_the_request(requested, stopped) => return Ok(Some(stopped)),
                Some(stopped) => {
                    tracing::warn!(resource_id = target.resource_id, %requested, %stopped, "stopped at another time than this request: no undo will start it");
                    return Ok(None);
                }
                None => {}
            }
        }
        tracing::warn!(resource_id = target.resource_id, "EC2 does not say when it stopped: no undo will start it");
        Ok(None)
    }

    /// The snapshots an acting operation waits for, if every one of them completed and this run took it of `of` (by
    /// its run-id tag, the tag naming what it was taken of, and, for a volume, EC2's own volume id); otherwise why
    /// not, for the report.
    async fn completed_run_snapshots(
        &self,
        region: &str,
        run_id: &str,
        snapshot_ids: &[String],
        of: SnapshotOf<'_>,
    ) -> Result<Result<Vec<SnapshotInfo>, String>, FinopsError> {
        let snaps = self.ec2.describe_snapshots(region, snapshot_ids).await?;
        let (state, detail) = snapshot_state(&snaps, snapshot_ids);
        if state != Outcome::Done {
            return Ok(Err(format!("snapshots not complete: {detail}")));
        }
        let (key, id) = of.tag();
        let ours = |s: &SnapshotInfo| {
            s.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
                && s.tags.get(key).map(String::as_str) == Some(id)
                && !matches!(of, SnapshotOf::Volume(volume) if s.volume_id != volume)
        };
        let foreign: Vec<&str> = snaps.iter().filter(|s| !ours(s)).map(|s| s.snapshot_id.as_str()).collect();
        Ok(match foreign.is_empty() {
            true => Ok(snaps),
            false => Err(format!("snapshot(s) {foreign:?} were not made by this run of {id}")),
        })
    }

    /// The volume as it is now, if it is still the unattached one a person approved deleting: `available`, attached
    /// to nothing, and nothing in the policy against it by its live tags.
    async fn unattached_now(
        &self,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<Result<finops_inventory::LiveVolume, String>, FinopsError> {
        let Some(live) = self.live.describe_volume(&target.region, &target.resource_id).await? else {
            return Ok(Err("the volume no longer exists".into()));
        };
        Ok(if live.state != "available" || !live.attached_to.is_empty() {
            Err(format!("the volume is {} now (attached to {:?})", live.state, live.attached_to))
        } else if let Some(blocked) =
            resource_block(ResourceKind::EbsVolume, &live.record.tags, &self.config.policy, now)
        {
            Err(format!("policy re-check on the live volume: {}: {}", blocked.reason, blocked.detail))
        } else {
            Ok(live)
        })
    }

    /// The outcome that ends a snapshot operation before it creates anything, if one does: refused when the approval
    /// does not authorise `action` for this run and resource, already done when this run snapshotted `of` before (a
    /// retry or a duplicate invocation).
    async fn snapshot_settled(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        action: ProposedAction,
        of: SnapshotOf<'_>,
    ) -> Result<Option<ActionOutcome>, FinopsError> {
        if let Err(why) = self.verified(run_id, target, approval, &[ApprovalAction::Approve], &[action]) {
            let detail = format!("not snapshotted: {why}");
            return Ok(Some(outcome_of("snapshot", target, Outcome::Refused, detail, vec![])));
        }
        let existing: Vec<SnapshotInfo> = self
            .ec2
            .run_snapshots(&target.region, run_id, of)
            .await?
            .into_iter()
            .filter(|s| s.state != "error")
            .collect();
        Ok((!existing.is_empty()).then(|| {
            let detail = format!("{} snapshot(s) from this run already exist", existing.len());
            outcome_of("snapshot", target, Outcome::AlreadyDone, detail, snapshot_ids(&existing))
        }))
    }

    /// CreateSnapshot of an approved unattached volume, after the live re-check: the snapshot is kept (and named in
    /// the outcome) so the volume can be recreated.
    async fn snapshot_volume(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let refuse = |detail: String| Ok(outcome_of("snapshot", target, Outcome::Refused, detail, vec![]));
        let of = SnapshotOf::Volume(&target.resource_id);
        if let Some(settled) =
            self.snapshot_settled(run_id, target, approval, ProposedAction::SnapshotAndDelete, of).await?
        {
            return Ok(settled);
        }
        let live = match self.unattached_now(target, now).await? {
            Ok(live) => live,
            Err(why) => return refuse(format!("not snapshotted: {why}")),
        };
        let mut tags = vec![
            (TAG_RUN_ID.to_owned(), run_id.to_owned()),
            (TAG_VOLUME_ID.to_owned(), target.resource_id.clone()),
            (TAG_REASON.to_owned(), tag_value(&format!("finops unattached volume: {}", target.justification))),
            ("Name".to_owned(), format!("finops {} before delete", target.resource_id)),
            (TAG_VOLUME_ZONE.to_owned(), live.availability_zone.clone()),
            (TAG_VOLUME_TYPE.to_owned(), live.record.volume_type.clone()),
        ];
        if let Some(name) = live.record.tags.get("Name").map(|n| tag_value(n)).filter(|n| !n.is_empty()) {
            tags.push((TAG_VOLUME_NAME.to_owned(), name));
        }
        let created = self.ec2.create_volume_snapshot(&target.region, &target.resource_id, &tags).await?;
        let detail = format!("snapshot {} started", created.snapshot_id);
        Ok(outcome_of("snapshot", target, Outcome::Done, detail, vec![created.snapshot_id]))
    }

    /// Deletes an approved unattached volume, only with this run's completed snapshot of it, and only after the
    /// live re-check and a new measurement since the scan (a volume attached and used in between is kept).
    async fn delete_volume(
        &self,
        run_id: &str,
        target: &Target,
        snapshot_ids: &[String],
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let outcome = |outcome: Outcome, detail: String| {
            Ok(outcome_of("delete_volume", target, outcome, detail, snapshot_ids.to_vec()))
        };
        let delete = [ProposedAction::SnapshotAndDelete];
        let record = match self.verified(run_id, target, approval, &[ApprovalAction::Approve], &delete) {
            Ok(record) => record,
            Err(why) => return outcome(Outcome::Refused, format!("not deleted: {why}")),
        };
        let of = SnapshotOf::Volume(&target.resource_id);
        if let Err(why) = self.completed_run_snapshots(&target.region, run_id, snapshot_ids, of).await? {
            return outcome(Outcome::Refused, format!("not deleted: {why}"));
        }
        let kept = snapshot_ids.join(", ");
        let live = match self.unattached_now(target, now).await? {
            Ok(live) => live,
            // A retry after a lost answer finds it gone (or still being deleted), its snapshot from this run
            // complete.
            Err(why) => {
                let state = self.live.describe_volume(&target.region, &target.resource_id).await?.map(|v| v.state);
                return match state.as_deref() {
                    None | Some("deleting" | "deleted") => outcome(
                        Outcome::AlreadyDone,
                        format!(
                            "the volume is gone (deleted by an earlier attempt of this step); snapshot {kept} keeps it"
                        ),
                    ),
                    Some(_) => outcome(Outcome::Refused, format!("not deleted: {why}")),
                };
            }
        };
        let Some(measured_until) = target.measured_until else {
            return outcome(Outcome::Refused, "not deleted: the proposal does not say when it was measured".into());
        };
        let today = now.date_naive();
        let first_day = measured_until.date_naive().min(today);
        let days = u32::try_from((today - first_day).num_days()).unwrap_or(0) + 1;
        let window = LookbackWindow { first_day, days };
        let since = finops_metrics::volume_activity(self.metrics, &target.region, &target.resource_id, &window).await?;
        if since.days_with_io > 0 {
            return outcome(
                Outcome::Refused,
                format!("not deleted: used since the scan (I/O on {} day(s))", since.days_with_io),
            );
        }
        // The approver and the time go on the snapshot that outlives the volume: the audit trail stays with it.
        let approver = record.approver.as_deref().map(tag_value).filter(|a| !a.is_empty());
        let audit = vec![
            (TAG_ACTION.to_owned(), "deleted-volume".to_owned()),
            (TAG_APPROVED_BY.to_owned(), approver.unwrap_or_else(|| "unknown".into())),
            (TAG_ACTED_AT.to_owned(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        for id in snapshot_ids {
            self.ec2.tag_resource(&target.region, id, &audit).await?;
        }
        self.ec2.delete_volume(&target.region, &live.record.volume_id).await?;
        outcome(Outcome::Done, format!("deleted after snapshot {kept} completed (kept, to recreate the volume)"))
    }

    /// Deletes an approved long-stopped instance's volumes: only where the deployment turned it on, with this run's
    /// completed snapshot of every volume (kept, tagged with its device), and only after the live re-check (still
    /// stopped, not started since the scan, nothing in the policy against it or any of its volumes). Each volume is
    /// detached and then deleted; a volume still detaching makes the step fail as transient, and its retry goes on
    /// from where it is (a detached or deleted volume is not touched again).
    async fn delete_instance_volumes(
        &self,
        run_id: &str,
        target: &Target,
        snapshot_ids: &[String],
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let outcome = |outcome: Outcome, detail: String| {
            Ok(outcome_of("delete_instance_volumes", target, outcome, detail, snapshot_ids.to_vec()))
        };
        if !self.config.policy.delete_stopped_instance_volumes {
            let why =
                "not deleted: this deployment does not delete stopped instances' volumes (FINOPS_STOPPED_VOLUMES)";
            return outcome(Outcome::Refused, why.into());
        }
        let wanted = [ProposedAction::SnapshotAndDeleteVolumes];
        let record = match self.verified(run_id, target, approval, &[ApprovalAction::Approve], &wanted) {
            Ok(record) => record,
            Err(why) => return outcome(Outcome::Refused, format!("not deleted: {why}")),
        };
        let (region, id) = (target.region.as_str(), target.resource_id.as_str());
        let Some(live) = self.live.describe_instance(region, id).await? else {
            return outcome(Outcome::Refused, "not deleted: the instance no longer exists".into());
        };
        let ours = live.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
            && live.tags.get(TAG_ACTION).map(String::as_str) == Some(VOLUMES_DELETED);
        if ours && live.volumes.is_empty() {
            return outcome(Outcome::AlreadyDone, "its volumes were deleted by this run".into());
        }
        if live.state != "stopped" {
            return outcome(Outcome::Refused, format!("not deleted: the instance is {} now", live.state));
        }
        if live.volumes.is_empty() {
            return outcome(Outcome::Refused, "not deleted: no volume is attached to it (not by this run)".into());
        }
        if target.launch_time.is_none() || target.launch_time != Some(live.launch_time) {
            return outcome(Outcome::Refused, "not deleted: the instance was started since the scan".into());
        }
        if let Some(what) = live.membership.describe() {
            return outcome(Outcome::Refused, format!("not deleted: {what}"));
        }
        if let Some(blocked) = resource_block(ResourceKind::StoppedInstance, &live.tags, &self.config.policy, now) {
            let why = format!("policy re-check on the live instance: {}: {}", blocked.reason, blocked.detail);
            return outcome(Outcome::Refused, format!("not deleted: {why}"));
        }
        let snaps = match self.completed_run_snapshots(region, run_id, snapshot_ids, SnapshotOf::Instance(id)).await? {
            Ok(snaps) => snaps,
            Err(why) => return outcome(Outcome::Refused, format!("not deleted: {why}")),
        };
        let mut volumes = Vec::new();
        for v in &live.volumes {
            if !snaps.iter().any(|s| s.volume_id == v.volume_id) {
                return outcome(
                    Outcome::Refused,
                    format!("not deleted: volume {} has no snapshot from this run", v.volume_id),
                );
            }
            // Every volume by its own tags too, before any is touched: a production or protected volume keeps them all.
            let Some(volume) = self.live.describe_volume(region, &v.volume_id).await? else {
                return outcome(Outcome::Refused, format!("not deleted: volume {} cannot be read", v.volume_id));
            };
            if let Some(blocked) =
                resource_block(ResourceKind::EbsVolume, &volume.record.tags, &self.config.policy, now)
            {
                let why = format!("volume {}: {}: {}", v.volume_id, blocked.reason, blocked.detail);
                return outcome(Outcome::Refused, format!("not deleted: {why}"));
            }
            volumes.push(volume);
        }
        // Mark before acting, so a retry after a crash knows the detaching was ours.
        let approver = record.approver.as_deref().map(tag_value).filter(|a| !a.is_empty());
        let audit = [
            (TAG_RUN_ID.to_owned(), run_id.to_owned()),
            (TAG_ACTION.to_owned(), VOLUMES_DELETED.to_owned()),
            (TAG_APPROVED_BY.to_owned(), approver.unwrap_or_else(|| "unknown".into())),
            (TAG_ACTED_AT.to_owned(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        self.ec2.tag_resource(region, id, &audit).await?;
        for volume in &volumes {
            if volume.attached_to.iter().any(|i| i == id) {
                self.ec2.detach_volume(region, &volume.record.volume_id, id).await?;
            }
        }
        let mut deleted = Vec::new();
        for volume in &volumes {
            let vid = volume.record.volume_id.as_str();
            let mut state = String::new();
            for attempt in 0..DETACH_CHECKS {
                match self.live.describe_volume(region, vid).await? {
                    None => break,
                    Some(v) if v.state == "available" && v.attached_to.is_empty() => {
                        state = v.state;
                        break;
                    }
                    Some(v) => state = v.state,
                }
                if attempt + 1 < DETACH_CHECKS {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            match state.as_str() {
                "" => {}
                "available" => {
                    self.ec2.delete_volume(region, vid).await?;
                    deleted.push(vid);
                }
                other => {
                    return Err(FinopsError::Transient {
                        service: "EC2",
                        operation: "DetachVolume",
                        message: format!("volume {vid} is still {other}: the step's retry deletes it once detached"),
                    })
                }
            }
        }
        let kept = snapshot_ids.join(", ");
        outcome(
            Outcome::Done,
            format!("deleted {} volume(s) after their snapshots completed (kept: {kept})", deleted.len()),
        )
    }

    /// After the delete or release step failed: reads the volume or address and says whether it is gone (deleted
    /// with this run's snapshot of it kept, or released). Changes nothing.
    async fn cleanup_status(&self, run_id: &str, target: &Target) -> Result<ActionOutcome, FinopsError> {
        let mut snapshot_ids = Vec::new();
        let (operation, outcome, detail) = match target.action {
            ProposedAction::SnapshotAndDelete => {
                let live = self.live.describe_volume(&target.region, &target.resource_id).await?;
                let ours =
                    self.ec2.run_snapshots(&target.region, run_id, SnapshotOf::Volume(&target.resource_id)).await?;
                let kept: Vec<&str> =
                    ours.iter().filter(|s| s.state == "completed").map(|s| s.snapshot_id.as_str()).collect();
                snapshot_ids = kept.iter().map(|id| (*id).to_owned()).collect();
                let (outcome, detail) = match live.map(|v| v.state) {
                    // Gone without a completed snapshot of this run: not this run's deletion.
                    _ if kept.is_empty() => (
                        Outcome::Failed,
                        "not deleted by this run: the delete step failed and no completed snapshot of this run exists"
                            .to_owned(),
                    ),
                    None => (
                        Outcome::AlreadyDone,
                        format!("deleted (found after the delete step failed); snapshot {} keeps it", kept.join(", ")),
                    ),
                    Some(state) if state == "deleting" || state == "deleted" => {
                        (Outcome::AlreadyDone, format!("{state} (found after the delete step failed)"))
                    }
                    Some(state) => {
                        (Outcome::Failed, format!("not deleted: the delete step failed; the volume is {state}"))
                    }
                };
                ("delete_volume", outcome, detail)
            }
            ProposedAction::Release => match self.live.describe_address(&target.region, &target.resource_id).await? {
                None => (
                    "release_address",
                    Outcome::AlreadyDone,
                    "released (found after the release step failed: by this step, or by someone else)".into(),
                ),
                Some(_) => ("release_address", Outcome::Failed, "not released: the release step failed".into()),
            },
            ProposedAction::SnapshotAndDeleteVolumes => {
                let live = self.live.describe_instance(&target.region, &target.resource_id).await?;
                let (outcome, detail) = match live {
                    Some(i)
                        if i.volumes.is_empty()
                            && i.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
                            && i.tags.get(TAG_ACTION).map(String::as_str) == Some(VOLUMES_DELETED) =>
                    {
                        (Outcome::AlreadyDone, "volumes deleted by this run (found after the step failed)".to_owned())
                    }
                    Some(i) => (
                        Outcome::Failed,
                        format!("not done: the delete step failed; {} volume(s) still attached", i.volumes.len()),
                    ),
                    None => (Outcome::Failed, "not done: the delete step failed; the instance no longer exists".into()),
                };
                ("delete_instance_volumes", outcome, detail)
            }
            ProposedAction::SnapshotAndStop => {
                return Err(FinopsError::InvalidInput(
                    "cleanup_status is for volumes and addresses; stop_status is for instances".into(),
                ))
            }
        };
        Ok(outcome_of(operation, target, outcome, detail, snapshot_ids))
    }

    /// Releases an approved unassociated Elastic IP after the live re-check (still associated with nothing, and
    /// nothing in the policy against it by its live tags, a DNS record's name included).
    async fn release_address(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let outcome =
            |outcome: Outcome, detail: String| Ok(outcome_of("release_address", target, outcome, detail, vec![]));
        let release = [ProposedAction::Release];
        if let Err(why) = self.verified(run_id, target, approval, &[ApprovalAction::Approve], &release) {
            return outcome(Outcome::Refused, format!("not released: {why}"));
        }
        let Some(live) = self.live.describe_address(&target.region, &target.resource_id).await? else {
            return outcome(
                Outcome::AlreadyDone,
                "the address is no longer allocated (released by an earlier attempt of this step, or by someone \
                 else)"
                    .into(),
            );
        };
        if let Some(association) = &live.association_id {
            return outcome(Outcome::Refused, format!("not released: associated now ({association})"));
        }
        if let Some(blocked) = resource_block(ResourceKind::ElasticIp, &live.tags, &self.config.policy, now) {
            let why = format!("policy re-check on the live address: {}: {}", blocked.reason, blocked.detail);
            return outcome(Outcome::Refused, format!("not released: {why}"));
        }
        self.ec2.release_address(&target.region, &target.resource_id).await?;
        outcome(Outcome::Done, format!("released (public IPv4 {})", live.public_ip))
    }

    /// Undoes what `run_id` did, with an undo record decided by POST: starts the instance again if it is still
    /// stopped as that run left it, or recreates the volume from that run's completed snapshot (same zone and type,
    /// its Name, a new id). Once: the instance and the new volume carry the undo id, and a retry finds them.
    async fn undo(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let outcome = |outcome: Outcome, detail: String, snaps: Vec<String>| {
            Ok(outcome_of("undo", target, outcome, detail, snaps))
        };
        let undoable = [ProposedAction::SnapshotAndStop, ProposedAction::SnapshotAndDelete];
        let record = match self.verified(run_id, target, approval, &[ApprovalAction::Undo], &undoable) {
            Ok(record) => record,
            Err(why) => return outcome(Outcome::Refused, format!("not undone: {why}"), vec![]),
        };
        let undo_id = record.approval_id.as_str();
        let audit = vec![
            (TAG_UNDO_ID.to_owned(), undo_id.to_owned()),
            (TAG_UNDONE_BY.to_owned(), record.approver.as_deref().map(tag_value).unwrap_or_else(|| "unknown".into())),
            (TAG_UNDONE_AT.to_owned(), now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        let (region, id) = (target.region.as_str(), target.resource_id.as_str());
        // What was done, and so what is undone, is the record's (its proposal's action), never the payload's.
        match record.proposal.action {
            ProposedAction::SnapshotAndStop => {
                let Some(live) = self.live.describe_instance(region, id).await? else {
                    return outcome(Outcome::Refused, "not started: the instance no longer exists".into(), vec![]);
                };
                let running = ["pending", "running"].contains(&live.state.as_str());
                if running && live.tags.get(TAG_UNDO_ID).map(String::as_str) == Some(undo_id) {
                    return outcome(Outcome::AlreadyDone, format!("{} again by this undo", live.state), vec![]);
                }
                let configuration = self.ec2.start_configuration(region, id).await?;
                if let Some(why) = changed_since_stopped(&live, configuration.as_ref(), &record, run_id) {
                    return outcome(Outcome::Refused, format!("not started: {why}"), vec![]);
                }
                // What a person changed since wins: tagged production or protected, snoozed, now in a cluster.
                if let Some((reason, detail)) = self.config.policy.start_block(&live, now) {
                    let why = format!("not started: policy re-check on the live instance: {reason}: {detail}");
                    return outcome(Outcome::Refused, why, vec![]);
                }
                // The undo id first (a retry after a crash knows the start was ours), the start, then the action tag
                // (IAM lets StartInstances touch only instances still tagged as stopped by finops).
                self.ec2.tag_resource(region, id, &audit).await?;
                self.ec2.start(region, id).await?;
                self.ec2.tag_resource(region, id, &[(TAG_ACTION.to_owned(), "started-again".to_owned())]).await?;
                outcome(Outcome::Done, format!("started again (stopped by run {run_id})"), vec![])
            }
            ProposedAction::SnapshotAndDelete => {
                // One volume from one deletion: this undo's own is a retry's answer; another undo's is not made
                // twice.
                let recreated = self.ec2.recreated_volumes(region, id).await?;
                if let Some(ours) = recreated.iter().find(|v| v.undo_id.as_deref() == Some(undo_id)) {
                    let detail = format!("recreated as {} by this undo", ours.volume_id);
                    return outcome(Outcome::AlreadyDone, detail, vec![]);
                }
                if let Some(other) = recreated.first() {
                    let why = format!("not recreated: {id} was recreated already, as {}", other.volume_id);
                    return outcome(Outcome::Refused, why, vec![]);
                }
                let snapshot = self
                    .ec2
                    .run_snapshots(region, run_id, SnapshotOf::Volume(id))
                    .await?
                    .into_iter()
                    .find(|s| s.state == "completed" && s.volume_id == id);
                let Some(snapshot) = snapshot else {
                    let why = format!("not recreated: no completed snapshot of {id} from run {run_id}");
                    return outcome(Outcome::Refused, why, vec![]);
                };
                // The snapshot is what is left of the volume: tagged production or protected since, it stays as is (the
                // guard IAM enforces on CreateVolume from it too).
                if let Some((reason, detail)) = self.config.policy.production_or_protected(&snapshot.tags) {
                    let why = format!("not recreated: the snapshot is {reason} now: {detail}");
                    return outcome(Outcome::Refused, why, vec![snapshot.snapshot_id]);
                }
                let Some(zone) = snapshot.tags.get(TAG_VOLUME_ZONE).filter(|z| !z.is_empty()) else {
                    let why =
                        format!("not recreated: snapshot {} does not say the volume's zone", snapshot.snapshot_id);
                    return outcome(Outcome::Refused, why, vec![snapshot.snapshot_id]);
                };
                let recreated = RecreatedVolume {
                    snapshot_id: snapshot.snapshot_id.clone(),
                    availability_zone: zone.clone(),
                    volume_type: snapshot.tags.get(TAG_VOLUME_TYPE).cloned().unwrap_or_else(|| "gp3".into()),
                };
                let mut tags = audit;
                tags.push((TAG_VOLUME_ID.to_owned(), id.to_owned()));
                tags.push((TAG_ACTION.to_owned(), RECREATED_VOLUME.to_owned()));
                if let Some(name) = snapshot.tags.get(TAG_VOLUME_NAME) {
                    tags.push(("Name".to_owned(), name.clone()));
                }
                let volume = self.ec2.create_volume_from_snapshot(region, &recreated, &tags, undo_id).await?;
                let detail = format!("recreated as {volume} in {zone} from snapshot {}", snapshot.snapshot_id);
                outcome(Outcome::Done, detail, vec![snapshot.snapshot_id])
            }
            ProposedAction::Release | ProposedAction::SnapshotAndDeleteVolumes => {
                outcome(Outcome::Refused, format!("not undone: {}", record.proposal.action.undo_explained()), vec![])
            }
        }
    }

    /// Why the instance is no longer the idle one a person approved, if it is not: restarted since the scan, or a
    /// day since the scan crossed the deployment's idle rule (CPU peak, network, disk). An approval can arrive days
    /// after the scan.
    async fn measured_again(
        &self,
        live: &InstanceRecord,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, FinopsError> {
        let (Some(launched), Some(measured_until)) = (target.launch_time, target.measured_until) else {
            return Ok(Some("the proposal does not say when the instance was launched and measured".into()));
        };
        if live.launch_time.timestamp() != launched.timestamp() {
            return Ok(Some(format!(
                "restarted since the scan (launch time {} then, {} now)",
                launched.to_rfc3339(),
                live.launch_time.to_rfc3339()
            )));
        }
        let today = now.date_naive();
        let first_day = measured_until.date_naive().min(today);
        let days = u32::try_from((today - first_day).num_days()).unwrap_or(0) + 1;
        let window = LookbackWindow { first_day, days };
        let (daily, _) =
            finops_metrics::collect_daily(self.metrics, std::slice::from_ref(live), &window, &finops_core::Silent)
                .await?;
        let signs: Vec<String> =
            daily.iter().flatten().flat_map(|d| self.config.idle_rule.signs_of_use(d)).map(|c| c.to_string()).collect();
        Ok((!signs.is_empty()).then(|| format!("no longer idle since the scan: {}", signs.join("; "))))
    }

    async fn tag(
        &self,
        run_id: &str,
        target: &Target,
        approval: &Approval,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        // A snooze (an approver's, or its owner's) or a denial is recorded on every kind of resource proposed.
        let wanted = [ApprovalAction::Snooze, ApprovalAction::OwnerSnooze, ApprovalAction::Deny];
        let any = [
            ProposedAction::SnapshotAndStop,
            ProposedAction::SnapshotAndDelete,
            ProposedAction::Release,
            ProposedAction::SnapshotAndDeleteVolumes,
        ];
        let record = match self.verified(run_id, target, approval, &wanted, &any) {
            Ok(record) => record,
            Err(why) => return Ok(outcome_of("tag", target, Outcome::Refused, format!("not tagged: {why}"), vec![])),
        };
        let decided = record.decision.unwrap_or(ApprovalAction::Deny);
        let mut tags = vec![
            (TAG_RUN_ID.to_owned(), run_id.to_owned()),
            ("finops:decision".to_owned(), decided.as_str().to_owned()),
        ];
        if let Some(who) = record.approver.as_deref().map(tag_value).filter(|w| !w.is_empty()) {
            tags.push(("finops:decided-by".to_owned(), who));
        }
        let detail = if decided.is_snooze() {
            let until =
                (now + Duration::days(self.config.snooze_days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            tags.push((self.config.policy.snooze_tag_key.clone(), until.clone()));
            format!("snoozed until {until}")
        } else {
            format!("decision {decided} recorded")
        };
        self.ec2.tag_resource(&target.region, &target.resource_id, &tags).await?;
        Ok(outcome_of("tag", target, Outcome::Done, detail, vec![]))
    }
}

/// The longest an acting invocation runs (the actions Lambda's timeout, cdk/lib/functions.ts) plus clock skew: a stop
/// EC2 reports this long from the step's clock is not its request's.
const STOP_REQUEST_SPAN_SECONDS: i64 = 180;

/// Reads of the instance after StopInstances, a second apart, before the stop step gives up on knowing when.
const STOPPED_AT_READS: u32 = 3;

/// Whether EC2's stop time can be the stop this step requested at `requested` (its clock when it was invoked).
fn stop_is_the_request(requested: DateTime<Utc>, stopped: DateTime<Utc>) -> bool {
    let after = (stopped - requested).num_seconds();
    (-STOP_REQUEST_SPAN_SECONDS..=STOP_REQUEST_SPAN_SECONDS).contains(&after)
}

/// Why the payload's target is not the one the approval record is for (resource, region or account), if it is not: the
/// account the step acts in is the one the approver was shown, never the payload's own.
fn names_another_target(record: &ApprovalRecord, target: &Target) -> Option<String> {
    let id = &record.approval_id;
    let account = |a: Option<&finops_core::organization::AccountRef>| a.map_or("this one".into(), |a| a.id.clone());
    if record.proposal.resource_id != target.resource_id || record.proposal.region != target.region {
        Some(format!(
            "approval {id} is for {} in {}, not {} in {}",
            record.proposal.resource_id, record.proposal.region, target.resource_id, target.region
        ))
    } else if record.proposal.account.as_ref().map(|a| &a.id) != target.account.as_ref().map(|a| &a.id) {
        Some(format!(
            "approval {id} is for a resource in account {}, not in account {}",
            account(record.proposal.account.as_ref()),
            account(target.account.as_ref())
        ))
    } else {
        None
    }
}

/// Why a stopped instance is not as the stop an undo record undoes left it, if it is not: not stopped, stopped by
/// another run or by hand, started since (its launch time moved on: a start and a stop by a person), stopped at
/// another time than that stop (EC2's state transition says when), or changed while stopped (what starting it would
/// run: its type, boot code, role, security groups or disks).
fn changed_since_stopped(
    live: &InstanceRecord,
    configuration: Option<&StartConfiguration>,
    record: &ApprovalRecord,
    run_id: &str,
) -> Option<String> {
    if live.state != "stopped" {
        return Some(format!("it is {} (changed since, not by this undo)", live.state));
    }
    if live.tags.get(TAG_RUN_ID).map(String::as_str) != Some(run_id)
        || live.tags.get(TAG_ACTION).map(String::as_str) != Some("stopped")
    {
        return Some("stopped since by another run or by hand, not the stop this undoes".into());
    }
    match record.proposal.launch_time {
        Some(launched) if launched.timestamp() == live.launch_time.timestamp() => {}
        Some(launched) => {
            return Some(format!(
                "started since the stop this undoes (launch time {} then, {} now): someone else runs it now",
                launched.to_rfc3339(),
                live.launch_time.to_rfc3339()
            ))
        }
        None => return Some("the approval does not say when the instance was launched".into()),
    }
    // How the stop left it, as the stop step read it right after stopping and the undo record keeps it.
    let Some(stopped_as) = record.undo.as_ref().and_then(|u| u.stopped_as.as_ref()) else {
        return Some("the stop did not record how it left the instance: not known to be the stop this undoes".into());
    };
    match live.stopped_since {
        Some(stopped) if stopped.timestamp() == stopped_as.stopped_at.timestamp() => {}
        Some(stopped) => {
            return Some(format!(
                "stopped at {} by EC2's account of it, not at {} by the stop this undoes: stopped again since",
                stopped.to_rfc3339(),
                stopped_as.stopped_at.to_rfc3339()
            ))
        }
        None => return Some("EC2 does not say when it stopped: not known to be the stop this undoes".into()),
    }
    let Some(configuration) = configuration else {
        return Some("EC2 does not describe how it would start".into());
    };
    let changes = configuration.changes_since(&stopped_as.configuration);
    (!changes.is_empty()).then(|| format!("changed while stopped ({}): someone else's to start", changes.join("; ")))
}

fn snapshot_state(snaps: &[SnapshotInfo], requested: &[String]) -> (Outcome, String) {
    if requested.is_empty() {
        return (Outcome::Failed, "no snapshots were made".into());
    }
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

/// The actions step as the Lambda and the local runner build it.
pub struct ActionsStep {
    instances: finops_inventory::Ec2Inventory,
    ec2: SdkEc2Actions,
    approvals: finops_approval_store::DynamoApprovals,
    metrics: finops_metrics::CloudWatchMetrics,
    config: ActionsConfig,
    sdk: aws_config::SdkConfig,
    /// Sessions in member accounts as their actions role, set up on the first proposal that names an account.
    members: tokio::sync::OnceCell<finops_aws::MemberSessions>,
}

impl ActionsStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: ActionsConfig) -> Self {
        Self {
            instances: finops_inventory::Ec2Inventory::new(sdk.clone()),
            ec2: SdkEc2Actions::new(sdk.clone()),
            approvals: finops_approval_store::DynamoApprovals::new(sdk, config.approvals_table.clone()),
            metrics: finops_metrics::CloudWatchMetrics::new(sdk.clone()),
            config,
            sdk: sdk.clone(),
            members: tokio::sync::OnceCell::new(),
        }
    }

    /// The account a request's proposal names, strictly: a present but malformed account is refused, never read
    /// as "the hub's own".
    fn account_of(event: &serde_json::Value) -> Result<Option<finops_core::organization::AccountRef>, FinopsError> {
        let Some(account) = event.get("proposal").and_then(|p| p.get("account")) else { return Ok(None) };
        let account: finops_core::organization::AccountRef = serde_json::from_value(account.clone())
            .map_err(|e| FinopsError::InvalidInput(format!("proposal.account: {e}")))?;
        finops_core::organization::parse_account_id(&account.id)
            .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
        Ok(Some(account))
    }

    /// Acts where the proposal's instance runs: in the hub's own account with this function's role, in a member
    /// account as the member's actions role (which carries the same guard). The decision is verified in the hub's
    /// approvals table either way.
    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<ActionOutcome, FinopsError> {
        let outcome = self.act_in_its_account(event, now).await?;
        finops_aws::metrics::emit(&finops_core::metrics::action_metric(&outcome));
        Ok(outcome)
    }

    async fn act_in_its_account(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, FinopsError> {
        let own = Actions {
            live: &self.instances,
            ec2: &self.ec2,
            approvals: &self.approvals,
            metrics: &self.metrics,
            config: &self.config,
        };
        let Some(account) = Self::account_of(&event)? else { return own.handle(event, now).await };
        let Some(role) = &self.config.member_actions_role else {
            return Err(FinopsError::Configuration(format!(
                "the proposal is in account {account}, and this deployment acts in its own account only (FINOPS_ACCOUNTS is not set)"
            )));
        };
        let sessions =
            self.members.get_or_try_init(|| finops_aws::MemberSessions::new(&self.sdk, role, "finops-actions")).await?;
        if account.id == sessions.hub_account() {
            return own.handle(event, now).await;
        }
        let member = sessions.config_for(&account).await?;
        let (instances, ec2, metrics) = (
            finops_inventory::Ec2Inventory::new(member.clone()),
            SdkEc2Actions::new(member.clone()),
            finops_metrics::CloudWatchMetrics::new(member),
        );
        let in_member = Actions {
            live: &instances,
            ec2: &ec2,
            approvals: &self.approvals,
            metrics: &metrics,
            config: &self.config,
        };
        in_member.handle(event, now).await
    }
}
