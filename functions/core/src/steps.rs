//! Every step's input and output, as the state machine passes them (one module, one casing convention: camelCase
//! fields, snake_case enum values). `statemachine/finops.asl.json` builds the inputs from the outputs, and the
//! contract test (`functions/core/tests/asl_contract.rs`) walks it to check that each Task's Parameters deserialise
//! into these types. Payloads stay small whatever the fleet size (state payloads are limited to 256 KB): fleets go
//! to the run bucket, and states carry references and counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::approval::ApprovalAction;
use crate::daily::LookbackWindow;
use crate::inventory::InstanceRecord;
use crate::policy::{Denial, Proposal, ProposedAction, Recommendation, RecommendedAction};
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
    /// Resource kinds beyond running instances ([`crate::resources`]): unattached volumes, Elastic IPs, stopped
    /// instances, NAT gateways.
    #[serde(default)]
    pub other_resources: crate::resources::OtherResources,
}

/// The utilisation document a run stores: one summary per inventoried instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilisationDocument {
    pub run_id: String,
    pub window: LookbackWindow,
    pub criteria: crate::criteria::IdleCriteria,
    pub summaries: Vec<UtilisationSummary>,
    /// The inventory's other resources, measured and priced: idle or not and why, and the saving. The policy step
    /// judges them.
    #[serde(default)]
    pub resources: Vec<crate::resources::ResourceFinding>,
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
    /// Metric queries sent to CloudWatch (billed per metric requested); the run's own cost counts them.
    #[serde(default)]
    pub metrics_requested: usize,
    /// Price List API calls this step made (prices are cached for the container's life).
    #[serde(default)]
    pub price_list_calls: usize,
    /// A run over several accounts: what was scanned and what could not be (absent for one account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationSummary>,
    /// The accounts in a sentence, for the report and the ledger: "this account only", or the organization's
    /// counts and what was not scanned and why.
    #[serde(default)]
    pub accounts_summary: String,
}

/// The accounts line of a single-account run.
pub const THIS_ACCOUNT_ONLY: &str = "this account only";

// ---- organization fan-out: plan, scan one (account, region) item, merge ----

/// At most this many skipped accounts and unreachable items travel in state payloads; the rest are counted (the
/// merge's document in the run bucket has them all).
pub const LISTED_IN_STATE: usize = 20;

/// What the planning step gets: the run and its regions (a list or a comma-separated string).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRequest {
    pub run_id: String,
    pub regions: Regions,
    #[serde(default)]
    pub lookback_days: Option<u32>,
    #[serde(default)]
    pub criteria: Option<String>,
}

/// The planning step's output: where the work items are (the Distributed Map's ItemReader reads them) and what
/// was left out. Small whatever the organization's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOutput {
    pub run_id: String,
    pub regions: Vec<String>,
    /// A JSON array of [`ScanItemRequest`]s.
    pub items: ObjectRef,
    pub item_count: usize,
    pub account_count: usize,
    /// The first [`LISTED_IN_STATE`] accounts not scanned (suspended, excluded, not a member), and how many in all.
    pub skipped: Vec<crate::organization::SkippedAccount>,
    pub skipped_count: usize,
}

impl OrganizationSummary {
    /// "3 accounts, 5 of 6 account-regions scanned; not scanned: legacy (333333333333) us-east-1: ...; skipped:
    /// closed (444444444444): suspended". The lists are those the summary carries, and say how many more there are.
    pub fn describe(&self) -> String {
        let mut text =
            format!("{} accounts, {} of {} account-regions scanned", self.accounts, self.items_scanned, self.items);
        let more =
            |shown: usize, all: usize| if all > shown { format!(" and {} more", all - shown) } else { String::new() };
        if self.unreachable_count > 0 {
            let listed: Vec<String> = self
                .unreachable
                .iter()
                .map(|u| {
                    format!("{} {}: {}", u.item.account, u.item.region, u.reason.chars().take(160).collect::<String>())
                })
                .collect();
            text += &format!(
                "; not scanned: {}{}",
                listed.join("; "),
                more(self.unreachable.len(), self.unreachable_count)
            );
        }
        if self.skipped_count > 0 {
            let listed: Vec<String> = self.skipped.iter().map(|s| format!("{}: {}", s.account, s.reason)).collect();
            text += &format!("; skipped: {}{}", listed.join("; "), more(self.skipped.len(), self.skipped_count));
        }
        text
    }
}

/// One Distributed Map item: scan this account in this region for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScanItemRequest {
    pub run_id: String,
    pub account: crate::organization::AccountRef,
    pub region: String,
    /// The plan's clock: every item judges the same days, even when the Map runs across midnight.
    pub as_of: DateTime<Utc>,
    #[serde(default)]
    pub lookback_days: Option<u32>,
    #[serde(default)]
    pub criteria: Option<String>,
}

/// What one item's scan stored: its instances (each naming the account), their analysis, or why the account could
/// not be reached. One document per item at [`ScanItemDocument::key`], which the merge reads back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanItemDocument {
    pub run_id: String,
    pub item: crate::organization::WorkItem,
    /// None when scanned; otherwise what AWS said (role missing, SCP denial, region not enabled).
    #[serde(default)]
    pub unreachable: Option<String>,
    pub window: LookbackWindow,
    pub instances: Vec<InstanceRecord>,
    pub summaries: Vec<UtilisationSummary>,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
    pub price_list_calls: usize,
    #[serde(default)]
    pub other_resources: crate::resources::OtherResources,
    /// The other resources measured and priced (the policy step judges them).
    #[serde(default)]
    pub resources: Vec<crate::resources::ResourceFinding>,
}

impl ScanItemDocument {
    /// Where an item's document lives: derived from the item alone, so the merge finds it without the Map's results.
    pub fn key(run_id: &str, item: &crate::organization::WorkItem) -> String {
        format!("runs/{run_id}/items/{}/{}.json", item.account.id, item.region)
    }
}

/// The scan step's state output (what the Map's ResultWriter collects): counts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanItemOutput {
    pub account_id: String,
    pub region: String,
    pub reached: bool,
    pub instance_count: usize,
    pub candidates: usize,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
    pub document: ObjectRef,
}

/// The merge step's input: the plan (to know every item that should have a document) and the run's overrides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeRequest {
    pub run_id: String,
    pub items: ObjectRef,
    #[serde(default)]
    pub skipped: Vec<crate::organization::SkippedAccount>,
    #[serde(default)]
    pub skipped_count: usize,
    #[serde(default)]
    pub lookback_days: Option<u32>,
    #[serde(default)]
    pub criteria: Option<String>,
}

/// The organization part of a run's detection, for the report and the ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSummary {
    pub accounts: usize,
    pub items: usize,
    pub items_scanned: usize,
    /// The first [`LISTED_IN_STATE`] items not scanned and why, and how many in all.
    pub unreachable: Vec<crate::organization::UnreachableItem>,
    pub unreachable_count: usize,
    pub skipped: Vec<crate::organization::SkippedAccount>,
    pub skipped_count: usize,
}

// ---- inventory step ----

/// What the schedule (or the state machine) sends. `regions` may be a list or a comma-separated string, as a
/// person would type it into the schedule's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryRequest {
    #[serde(default)]
    pub run_id: Option<String>,
    pub regions: Regions,
    /// Only these instances (the single-instance entry the agent tools start).
    #[serde(default)]
    pub instance_ids: Option<Vec<String>>,
}

impl InventoryRequest {
    /// The regions, validated and without duplicates, in the order given.
    pub fn regions(&self) -> Result<Vec<String>, String> {
        let raw: Vec<String> = match &self.regions {
            Regions::List(list) => list.iter().map(|r| r.trim().to_owned()).collect(),
            Regions::Csv(csv) => csv.split(',').map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect(),
        };
        let mut regions: Vec<String> = Vec::new();
        for r in raw {
            crate::regions::validate_region(&r)?;
            if !regions.contains(&r) {
                regions.push(r);
            }
        }
        if regions.is_empty() {
            return Err("regions is empty".into());
        }
        Ok(regions)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Regions {
    List(Vec<String>),
    Csv(String),
}

// ---- metrics step ----

/// What the state machine passes: the inventory step's output (extra fields ignored) and optional per-run
/// overrides from the schedule's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRequest {
    pub run_id: String,
    pub inventory: ObjectRef,
    #[serde(default)]
    pub lookback_days: Option<u32>,
    #[serde(default)]
    pub criteria: Option<String>,
}

// ---- reasoning step ----

/// What the state machine passes: the metrics step's documents and shortlist, and the scope's request when the agent
/// tools asked about one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningRequest {
    pub run_id: String,
    pub inventory: ObjectRef,
    pub utilisation: ObjectRef,
    pub shortlist: Vec<ShortlistEntry>,
    /// The single-instance entry's request, which stands in for the reasoner's recommendation (`null` on the
    /// scheduled entry). The policy step still decides.
    #[serde(default)]
    pub request: Option<RequestedAction>,
}

/// What the agent tools asked for about one instance (the single-instance entry's input, normalised by the state
/// machine's "Scope To Requested Instance" state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedAction {
    pub instance_id: String,
    pub action: RecommendedAction,
    #[serde(default)]
    pub justification: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptSize {
    pub instances: usize,
    pub total_tokens: usize,
    pub max_instance_tokens: usize,
}

/// A model's tokens over a run (what Bedrock bills), as its responses reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUsage {
    pub fn add(&mut self, other: TokenUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningOutput {
    pub run_id: String,
    pub inventory: ObjectRef,
    pub utilisation: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Vec<Recommendation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations_ref: Option<ObjectRef>,
    pub recommendation_count: usize,
    pub backend: String,
    pub fallbacks: usize,
    pub discarded: Vec<Discarded>,
    pub prompt: PromptSize,
    /// The model's tokens for this run (zero for the rules); the run-cost step prices them.
    #[serde(default)]
    pub model_usage: TokenUsage,
}

/// Something the model said that was not used, for the report and the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discarded {
    pub instance_id: String,
    pub reason: String,
}

// ---- policy step ----

/// What the state machine passes the policy step: the reasoning step's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRequest {
    pub run_id: String,
    pub inventory: ObjectRef,
    pub utilisation: ObjectRef,
    #[serde(default)]
    pub recommendations: Option<Vec<Recommendation>>,
    /// Where the reasoning step stored a long recommendation list, instead of `recommendations`.
    #[serde(default)]
    pub recommendations_ref: Option<ObjectRef>,
}

/// Output of the policy step: the proposals a human is asked about, and why the rest were denied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOutput {
    pub run_id: String,
    pub proposals: Vec<Proposal>,
    pub proposal_count: usize,
    pub proposed_monthly_saving_usd: f64,
    pub denials: Vec<Denial>,
    pub denial_counts: BTreeMap<String, usize>,
    pub denials_omitted: usize,
    pub recommendation_count: usize,
    /// The complete outcome, every denial included.
    pub policy: ObjectRef,
    /// The run's resources beyond instances as the policy judged them (the findings are in the policy document).
    #[serde(default)]
    pub resources: crate::resources::ResourcesSummary,
}

// ---- request-approval step ----

/// What the state machine passes the request step before the approval map ("Ask Approvers"): the run's proposals.
/// Each gets an approval record with its audience; each person in an audience gets one message for the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskApproversRequest {
    pub run_id: String,
    pub execution_arn: String,
    pub proposals: Vec<Proposal>,
}

/// What "Ask Approvers" returns: counts and one line for the report (no link, no address of an approver).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AskApproversOutput {
    /// Proposals with an approval record someone was asked about.
    pub asked: usize,
    /// Proposals nobody may approve (no route and no default for their account): nothing is done about them.
    pub unasked: Vec<String>,
    /// People each sent one message (a digest of what they may decide).
    pub recipients: usize,
    pub slack_messages: usize,
    pub owners_told: usize,
    pub summary: String,
}

/// What the approval map passes the request step (a `waitForTaskToken` task): the wait attaches its task token to
/// the proposal's approval record, which "Ask Approvers" created.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestEvent {
    pub task_token: String,
    pub proposal: Proposal,
    pub run_id: String,
    pub execution_arn: String,
}

/// What the wait returns (the task itself ends with the callback's decision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestOutput {
    pub approval_id: String,
    pub expires_at: i64,
}

// ---- undo ----

/// What the state machine passes the request step after the approval map ("Offer Undo"): the run's outcomes. Each
/// approved stop and deletion in them gets a signed, single-use undo link, mailed to its approval's audience only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferUndoRequest {
    pub run_id: String,
    pub execution_arn: String,
    pub outcomes: Vec<serde_json::Value>,
}

/// What "Offer Undo" returns: counts and one line for the report. The links themselves went by email to the
/// approvers: never into the execution's output or history, a log or the report topic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferUndoOutput {
    pub summary: String,
    /// Actions an undo was offered for.
    pub offered: usize,
    /// Approvers the offer was mailed to.
    pub recipients: usize,
}

/// The input of an undo execution, as the callback starts it once a person confirmed an undo link by POST: the
/// entry, and what to undo. The actions step trusts none of it but the undo id: it reads the undo record and checks
/// the rest against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoExecutionInput {
    /// Always "undo".
    pub entry: String,
    pub undo: UndoOrder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoOrder {
    pub undo_id: String,
    /// The run that acted.
    pub run_id: String,
    pub proposal: Target,
}

/// What the approval callback hands the waiting task (SendTaskSuccess) when a person decided by POST: the approval
/// map's `$.approval`. The actions step uses only `approvalId` and reads the decision itself from the approvals table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalTaskResult {
    pub decision: ApprovalAction,
    pub decided_at: String,
    pub approver: String,
    pub approval_id: String,
}

// ---- actions step ----

/// The resource an operation is about (a subset of the policy step's proposal; extra fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The instance, volume or Elastic IP allocation.
    #[serde(alias = "instanceId")]
    pub resource_id: String,
    pub region: String,
    #[serde(default = "default_action")]
    pub action: ProposedAction,
    #[serde(default)]
    pub justification: String,
    /// Launch time at the scan: another one now means the instance was restarted since.
    #[serde(default)]
    pub launch_time: Option<DateTime<Utc>>,
    /// Where the scan's measurements end; the stop measures again from here.
    #[serde(default)]
    pub measured_until: Option<DateTime<Utc>>,
    /// The member account it runs in (absent: the hub's own), for the audit trail. Never written as null: the
    /// actions step reads a present account strictly (a null is not "the hub's own").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::organization::AccountRef>,
    /// The proposal's estimate, recorded with what was done so later runs can prove it.
    #[serde(default)]
    pub monthly_saving_usd: Option<f64>,
}

impl Target {
    /// The target of a proposal, as the approval map passes a proposal to the actions step.
    pub fn of(proposal: &Proposal) -> Self {
        Self {
            resource_id: proposal.resource_id.clone(),
            region: proposal.region.clone(),
            action: proposal.action,
            justification: proposal.justification.clone(),
            launch_time: proposal.launch_time,
            measured_until: Some(proposal.measured_until),
            account: proposal.account.clone(),
            monthly_saving_usd: proposal.monthly_saving_usd,
        }
    }
}

fn default_action() -> ProposedAction {
    ProposedAction::SnapshotAndStop
}

/// The approval task's result as the state machine passes it: only the approval id is used. What was decided, and
/// by whom, is read from the approvals table, never from the payload.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRef {
    #[serde(default)]
    pub approval_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum ActionRequest {
    Snapshot {
        run_id: String,
        proposal: Target,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    SnapshotStatus {
        run_id: String,
        proposal: Target,
        snapshot_ids: Vec<String>,
    },
    Stop {
        run_id: String,
        proposal: Target,
        snapshot_ids: Vec<String>,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    Tag {
        run_id: String,
        proposal: Target,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    /// An unattached volume, once this run's snapshot of it completed: deleted after the live re-check.
    DeleteVolume {
        run_id: String,
        proposal: Target,
        snapshot_ids: Vec<String>,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    /// A long-stopped instance's volumes, once this run's snapshots of them completed: detached and deleted after
    /// the live re-check (only where the deployment turned it on).
    DeleteInstanceVolumes {
        run_id: String,
        proposal: Target,
        snapshot_ids: Vec<String>,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    /// An unassociated Elastic IP: released after the live re-check.
    ReleaseAddress {
        run_id: String,
        proposal: Target,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
    /// Read only: whether the volume is gone or the address released, asked after the delete or release step failed
    /// (its retries spent), so the report says what happened rather than "unknown".
    CleanupStatus {
        run_id: String,
        proposal: Target,
    },
    /// Read only: whether this run stopped the instance, asked after the stop step failed (its retries spent), so
    /// the report says what happened rather than what was intended.
    StopStatus {
        run_id: String,
        proposal: Target,
    },
    /// Undo what `run_id` did to the resource (start the instance again, recreate the volume from this run's
    /// snapshot), only with an undo record decided by POST; `decision.approvalId` is the undo record's id.
    Undo {
        run_id: String,
        proposal: Target,
        #[serde(default)]
        decision: Option<DecisionRef>,
    },
}

impl ActionRequest {
    pub fn run_id(&self) -> &str {
        match self {
            Self::Snapshot { run_id, .. }
            | Self::SnapshotStatus { run_id, .. }
            | Self::Stop { run_id, .. }
            | Self::Tag { run_id, .. }
            | Self::DeleteVolume { run_id, .. }
            | Self::DeleteInstanceVolumes { run_id, .. }
            | Self::ReleaseAddress { run_id, .. }
            | Self::CleanupStatus { run_id, .. }
            | Self::StopStatus { run_id, .. }
            | Self::Undo { run_id, .. } => run_id,
        }
    }

    /// The operation's name, as the outcome reports it.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Snapshot { .. } => "snapshot",
            Self::SnapshotStatus { .. } => "snapshot_status",
            Self::Stop { .. } => "stop",
            Self::Tag { .. } => "tag",
            Self::DeleteVolume { .. } => "delete_volume",
            Self::DeleteInstanceVolumes { .. } => "delete_instance_volumes",
            Self::ReleaseAddress { .. } => "release_address",
            Self::CleanupStatus { .. } => "cleanup_status",
            Self::StopStatus { .. } => "stop_status",
            Self::Undo { .. } => "undo",
        }
    }

    /// Whether the operation only reads (a status check): it needs no decision and changes nothing.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::SnapshotStatus { .. } | Self::CleanupStatus { .. } | Self::StopStatus { .. })
    }

    /// The decision the payload names for an operation that changes something (None: none named, or read-only).
    pub fn decision_ref(&self) -> Option<&DecisionRef> {
        match self {
            Self::Snapshot { decision, .. }
            | Self::Stop { decision, .. }
            | Self::Tag { decision, .. }
            | Self::DeleteVolume { decision, .. }
            | Self::DeleteInstanceVolumes { decision, .. }
            | Self::ReleaseAddress { decision, .. }
            | Self::Undo { decision, .. } => decision.as_ref(),
            Self::SnapshotStatus { .. } | Self::CleanupStatus { .. } | Self::StopStatus { .. } => None,
        }
    }

    pub fn target_mut(&mut self) -> &mut Target {
        match self {
            Self::Snapshot { proposal, .. }
            | Self::SnapshotStatus { proposal, .. }
            | Self::Stop { proposal, .. }
            | Self::Tag { proposal, .. }
            | Self::DeleteVolume { proposal, .. }
            | Self::DeleteInstanceVolumes { proposal, .. }
            | Self::ReleaseAddress { proposal, .. }
            | Self::CleanupStatus { proposal, .. }
            | Self::StopStatus { proposal, .. }
            | Self::Undo { proposal, .. } => proposal,
        }
    }

    pub fn target(&self) -> &Target {
        match self {
            Self::Snapshot { proposal, .. }
            | Self::SnapshotStatus { proposal, .. }
            | Self::Stop { proposal, .. }
            | Self::Tag { proposal, .. }
            | Self::DeleteVolume { proposal, .. }
            | Self::DeleteInstanceVolumes { proposal, .. }
            | Self::ReleaseAddress { proposal, .. }
            | Self::CleanupStatus { proposal, .. }
            | Self::StopStatus { proposal, .. }
            | Self::Undo { proposal, .. } => proposal,
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
    /// Snapshots failed (nothing may be stopped), or the stop step failed and the instance was found not stopped.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutcome {
    pub operation: String,
    #[serde(alias = "instanceId")]
    pub resource_id: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(default)]
    pub snapshot_ids: Vec<String>,
    /// What was done (a stop, a deletion, a release: done or already done), when, and its estimate; null otherwise
    /// (always present, so the state machine can select it).
    #[serde(default)]
    pub acted: Option<crate::savings::ActedOn>,
}

// ---- the approval map's result ----

/// What one proposal came to: the approval map's item result, built by its final Pass states ("Record Stop",
/// "No Answer, No Action", ...), listed in the run report and the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalOutcome {
    #[serde(alias = "instanceId")]
    pub resource_id: String,
    /// approve, deny, snooze or none (no answer); absent when a step failed before a decision was known.
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    /// done, already_done, refused, denied, no_answer, snapshot_failed, failed, or unknown (the stop step failed
    /// and what it did could not be read: check the instance).
    pub outcome: String,
    pub detail: String,
    pub snapshot_ids: Vec<String>,
    /// The failed step's error (Error and Cause), when `outcome` is `failed`.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// What was done, when, and its estimate (stops, deletions, releases): what later runs prove.
    #[serde(default)]
    pub acted: Option<crate::savings::ActedOn>,
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

// ---- run-cost step ----

/// What the state machine passes the run-cost step: the execution, and the counts the steps reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunCostRequest {
    pub run_id: String,
    pub execution_arn: String,
    pub instance_count: usize,
    pub metrics_requested: u64,
    pub price_list_calls: u64,
    /// The reasoning step's `modelUsage`.
    pub model_usage: TokenUsage,
}

/// What the run cost, what it used, and one line for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCostOutput {
    #[serde(flatten)]
    pub cost: crate::run_cost::RunCost,
    pub usage: crate::run_cost::RunUsage,
    pub summary: String,
}

// ---- savings step ----

/// What the state machine passes the savings step: the run asking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsRequest {
    pub run_id: String,
}

/// Until when a run saw one earlier action still hold: what the next run continues from (kept in the ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    /// The run that acted.
    pub run_id: String,
    pub resource_id: String,
    pub confirmed_until: DateTime<Utc>,
}

/// Output of the savings step: every action the ledger records, checked against the live resource, as totals per
/// kind and per account (the entries stay out of the state: only what the next run needs travels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsOutput {
    pub summary: String,
    #[serde(flatten)]
    pub total: crate::savings::SavingsFigures,
    pub by_kind: BTreeMap<String, crate::savings::SavingsFigures>,
    pub by_account: BTreeMap<String, crate::savings::SavingsFigures>,
    /// Every action seen holding at some run, with the last moment it was.
    #[serde(default)]
    pub confirmed: Vec<Confirmation>,
    /// Ledger items whose outcomes could not be read (skipped, and counted here).
    #[serde(default)]
    pub unreadable_ledger_items: usize,
    /// The optional check against the bill (`FINOPS_COST_EXPLORER=on`): absent when off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_explorer: Option<CostExplorerCheck>,
}

/// What the Cost Explorer check found: the comparison, or why there is none this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostExplorerCheck {
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<crate::savings::CostComparison>,
}
