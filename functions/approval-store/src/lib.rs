//! What the approval request, the approval callback and the acting step share: the approval record and its table
//! (DynamoDB, with an in-memory twin), the link-signing key from Secrets Manager, the Step Functions task callback
//! and undo starter, the approvers' mail (SNS, one message per recipient) and the text of those messages.

pub mod dynamo;
pub mod email;
pub mod key;
pub mod memory;
pub mod notify;
pub mod owner;
pub mod record;
pub mod sfn;
pub mod slack;

use std::future::Future;

use finops_aws::FinopsError;
use serde::{Deserialize, Serialize};

pub use dynamo::DynamoApprovals;
pub use finops_core::config::required_var;
pub use key::{SecretsManagerKey, SigningKey, StaticKey, MIN_KEY_BYTES};
pub use memory::MemoryApprovals;
pub use notify::{MemoryMail, Notifier, SnsNotifier};
pub use record::{
    ApprovalRecord, ApprovalState, Decision, SlackClick, UndoOf, DECIDED_VIA_POST, DECIDED_VIA_SLACK, NO_TASK,
};
pub use sfn::{
    state_machine_of, undo_execution_name, undo_input, CallbackResult, SfnCallback, TaskCallback, UndoStarter,
};

/// Whether a message of a run to one recipient went out, as far as the sending step knows: a retried step sends it
/// again only when it is known not to have gone out, so nobody gets the same message twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailStatus {
    /// Being sent, or the answer was lost (it may have gone out): never sent again.
    Sending,
    Sent,
    /// SNS refused it (throttled): nothing went out, and a retry may send it.
    Unsent,
}

impl EmailStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Unsent => "unsent",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Sending, Self::Sent, Self::Unsent].into_iter().find(|v| v.as_str() == s)
    }
}

/// One message a run sends one recipient (the approvals digest, the undo offer, an owner's notice), claimed before it
/// goes out: [`finops_core::approval::message_id_for`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageClaim {
    pub message_id: String,
    pub run_id: String,
    /// Kept for the audit trail until then (plus the retention).
    pub expires_at: i64,
    /// Which delivery of the step claims it (random per invocation): an SDK retry of the creating write whose
    /// answer was lost finds its own claim, and sends the message, where another delivery finds someone else's.
    pub claim_id: String,
}

/// Outcome of the single-use flip from `pending` to `decided`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideResult {
    /// Decided; `task_token` is the token the record held at that moment (read atomically with the flip): a
    /// redelivered wait may have replaced the first attempt's token, and only the live one is answered.
    Decided {
        task_token: String,
        /// This decision's own mark: [`ApprovalRecords::revert_decision`] with it takes back this decision and no
        /// other (a time, to the second, could be someone else's too).
        revert_mark: String,
    },
    /// Someone (by another link, or in Slack) decided first.
    AlreadyUsed,
    Expired,
    Missing,
    /// Pending, but the workflow does not wait on it yet (the moment between the message and the wait): nothing was
    /// recorded, and the same link works a moment later.
    NotWaiting,
}

/// Reading approval records: what the acting step may do (it verifies the decision before it acts).
pub trait ApprovalReader: Send + Sync {
    fn get(&self, approval_id: &str) -> impl Future<Output = Result<Option<ApprovalRecord>, FinopsError>> + Send;
}

/// What [`ApprovalRecords::claim_pending`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// No record had this id: it is stored.
    Created,
    /// A pending record had this id (the step was retried): it stands as it was, audience and window included.
    Renewed(ApprovalRecord),
    /// The record was already decided or expired: nothing is asked again.
    Settled(ApprovalRecord),
}

/// What [`ApprovalRecords::attach_task`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    /// The pending record now waits on this task token (a redelivered wait replaces an earlier attempt's).
    Waiting(ApprovalRecord),
    /// Already decided or expired (an earlier attempt's answer went to a task that no longer waits): this wait ends
    /// with no action.
    Settled(ApprovalRecord),
    /// Nobody was asked about it (no audience, or the request step's messages failed): nothing can decide it.
    Missing,
}

/// Writing them: the request step (pending records, the wait's task token, its messages' claims) and the callback
/// (the decision).
pub trait ApprovalRecords: ApprovalReader {
    /// Stores `record` unless its id exists. See [`Claim`].
    fn claim_pending(&self, record: &ApprovalRecord) -> impl Future<Output = Result<Claim, FinopsError>> + Send;
    /// The approval map's wait: the pending record gets the task token its execution waits on.
    fn attach_task(
        &self,
        approval_id: &str,
        task_token: &str,
    ) -> impl Future<Output = Result<Attach, FinopsError>> + Send;
    /// Claims one message before it is sent: true for the one delivery that may now send it (the first, its own SDK
    /// retry, or a retry after SNS refused it).
    fn claim_message(&self, claim: &MessageClaim) -> impl Future<Output = Result<bool, FinopsError>> + Send;
    /// Records whether a claimed message went out (after the publish).
    fn mark_message(
        &self,
        message_id: &str,
        status: EmailStatus,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// The single-use flip from `pending` to `decided`, only while the record has not expired and the workflow waits.
    fn decide(
        &self,
        approval_id: &str,
        decision: &Decision<'_>,
        now_unix: i64,
    ) -> impl Future<Output = Result<DecideResult, FinopsError>> + Send;
    /// Back to `pending`, when the decision could not be handed to the workflow: the person can try again and the
    /// audit trail never says "approved" for a run that did not act. Only the decision `decide` marked `revert_mark`.
    fn revert_decision(
        &self,
        approval_id: &str,
        revert_mark: &str,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// The workflow stopped waiting: the record is `expired`, and a decision that came too late is kept as a late
    /// answer, not as the decision.
    fn mark_expired(&self, approval_id: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// Claims the owner's notice of `stage` (`asked` once; `told` once, after `asked`): true for the one call that
    /// may now send it.
    fn claim_owner_notice(
        &self,
        approval_id: &str,
        stage: owner::OwnerNotice,
    ) -> impl Future<Output = Result<bool, FinopsError>> + Send;
    /// Where the approval was asked in Slack (once posted).
    fn mark_slack_message(
        &self,
        approval_id: &str,
        at: &slack::SlackMessageRef,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
}

/// Where the approval records and the link-signing key are: `FINOPS_APPROVALS_TABLE`, `FINOPS_SIGNING_SECRET_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub approvals_table: String,
    pub signing_secret_id: String,
}

impl StoreConfig {
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, finops_core::ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        Ok(Self {
            approvals_table: required_var(&vars, "FINOPS_APPROVALS_TABLE")?,
            signing_secret_id: required_var(&vars, "FINOPS_SIGNING_SECRET_ID")?,
        })
    }
}

/// Approval records stay in the table this long after they expire (DynamoDB TTL), for the audit trail.
pub const RECORD_RETENTION_SECONDS: i64 = 30 * 86_400;
