//! What the approval request and the approval callback share: the approval record and its DynamoDB table, the
//! link-signing key from Secrets Manager (cached for the life of the container), the Step Functions task callback,
//! the SNS notifier, and the text of the approval email.

pub mod email;
pub mod owner;
pub mod slack;

use std::collections::HashMap;
use std::future::Future;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use finops_aws::FinopsError;
use finops_core::approval::ApprovalAction;
use finops_core::policy::Proposal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Decided,
    /// Step Functions no longer waits for it (timed out); kept for the audit trail.
    Expired,
}

impl ApprovalState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Decided => "decided",
            Self::Expired => "expired",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Decided, Self::Expired].into_iter().find(|v| v.as_str() == s)
    }
}

/// Whether the approval email went out, as far as the request step knows: a retried request sends it again only
/// when it is known not to have gone out, so approvers get at most one email per proposal.
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
    fn parse(s: &str) -> Option<Self> {
        [Self::Sending, Self::Sent, Self::Unsent].into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub approval_id: String,
    /// Never leaves this record: not in the email, not in a URL, not in a page.
    pub task_token: String,
    pub proposal: Proposal,
    pub run_id: String,
    pub execution_arn: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: ApprovalState,
    pub decision: Option<ApprovalAction>,
    /// The name or email the approver typed; the only identity that leaves this table (EC2 tags, the task output).
    pub approver: Option<String>,
    pub decided_at: Option<String>,
    /// Where the decision came from, for the audit trail only: never shown on a page, never written to a tag.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// How the decision was made: `POST` on the page of the link that was followed. The actions step requires it.
    #[serde(default)]
    pub decided_via: Option<String>,
    /// A decision that arrived after the workflow stopped waiting: kept for the audit trail, never a decision.
    #[serde(default)]
    pub late_answer: Option<String>,
    /// Whether the approval email went out. Records written before it was kept count as sent.
    #[serde(default = "email_sent")]
    pub email: EmailStatus,
    /// Which delivery of the request created the record (random per invocation): an SDK retry of the creating write
    /// whose answer was lost finds its own claim, and sends the email, where another delivery finds someone else's.
    #[serde(default)]
    pub claim_id: String,
    /// In a deployment that routes approvals (by account, OU or account tag), who may decide and which route chose
    /// them; only they were emailed, and the approval page refuses anyone else. None: every approver of the
    /// deployment.
    #[serde(default)]
    pub routed: Option<finops_core::organization::Routed>,
    /// Set on an undo record only: what was done, which the record's one decision ([`ApprovalAction::Undo`]) undoes.
    /// An undo record never authorises the action itself, and a proposal's approval never an undo.
    #[serde(default)]
    pub undo: Option<UndoOf>,
    /// Where the approval was also asked in Slack (the approvers' channel and the message): a click decides only
    /// from there, and the message is updated with the decision and the outcome.
    #[serde(default)]
    pub slack: Option<slack::SlackMessageRef>,
    /// Which notice its owner got (`asked`, then `told`), where the resource's owner tag is an address.
    #[serde(default)]
    pub owner_notice: Option<String>,
}

/// What an undo record offers to undo: the action its proposal's approval authorised, and when it was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoOf {
    /// The approval that authorised the action.
    pub approval_id: String,
    pub approved_by: Option<String>,
    /// RFC 3339.
    pub acted_at: String,
}

/// The task token of an undo record: nothing waits on an undo (a confirmed undo starts its own execution).
pub const NO_TASK: &str = "none: an undo record";

fn email_sent() -> EmailStatus {
    EmailStatus::Sent
}

impl ApprovalRecord {
    /// A record waiting for its decision, as the approval request writes it.
    pub fn pending(
        approval_id: impl Into<String>,
        task_token: impl Into<String>,
        proposal: Proposal,
        run_id: impl Into<String>,
        execution_arn: impl Into<String>,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            approval_id: approval_id.into(),
            task_token: task_token.into(),
            proposal,
            run_id: run_id.into(),
            execution_arn: execution_arn.into(),
            created_at,
            expires_at,
            state: ApprovalState::Pending,
            decision: None,
            approver: None,
            decided_at: None,
            source_ip: None,
            decided_via: None,
            late_answer: None,
            email: EmailStatus::Sending,
            claim_id: String::new(),
            routed: None,
            undo: None,
            slack: None,
            owner_notice: None,
        }
    }

    /// The undo record of what `approval` authorised and the actions step did at `acted_at`: the same proposal, run
    /// and routing, pending its one decision until `expires_at`.
    pub fn undo_of(
        approval: &ApprovalRecord,
        undo_id: impl Into<String>,
        acted_at: impl Into<String>,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        let mut record = Self::pending(
            undo_id,
            NO_TASK,
            approval.proposal.clone(),
            approval.run_id.clone(),
            approval.execution_arn.clone(),
            created_at,
            expires_at,
        )
        .routed_to(approval.routed.clone());
        record.undo = Some(UndoOf {
            approval_id: approval.approval_id.clone(),
            approved_by: approval.approver.clone(),
            acted_at: acted_at.into(),
        });
        record
    }

    /// The record of an approval only the routed approvers may decide.
    pub fn routed_to(mut self, routed: Option<finops_core::organization::Routed>) -> Self {
        self.routed = routed;
        self
    }

    /// The record as one delivery of the request claims it ([`ApprovalRecord::claim_id`]).
    pub fn claimed_by(mut self, claim_id: impl Into<String>) -> Self {
        self.claim_id = claim_id.into();
        self
    }

    /// The same record once a person decided on the confirmation page (what [`ApprovalRecords::decide`] stores).
    pub fn decided(mut self, decision: &Decision<'_>) -> Self {
        self.state = ApprovalState::Decided;
        self.decision = Some(decision.action);
        self.approver = Some(decision.approver.to_owned());
        self.decided_at = Some(decision.decided_at.to_owned());
        self.source_ip = Some(decision.source_ip.unwrap_or("unknown").to_owned());
        self.decided_via = Some(decision.via.to_owned());
        self
    }
}

/// A decision made by POST on the confirmation page of the link that was followed.
pub const DECIDED_VIA_POST: &str = "POST";

/// A decision made by a click on the approval's own Slack message, in the channel it was posted to, with Slack's
/// signature verified and the button's signed link checked (the approver is the clicking Slack user).
pub const DECIDED_VIA_SLACK: &str = "slack-signed-click";

impl ApprovalRecord {
    /// Whether `who` (as typed on the page) may make `action` here: anyone with the link where approvals are not
    /// routed; where they are, the routed approvers, and the resource's owner for a snooze only, once the owner was
    /// sent its notice (an address in the deployment's owner domains: a tag alone never makes someone an owner). An
    /// owner keeps their resource; they never approve or deny its stop.
    pub fn may_decide(&self, who: &str, action: ApprovalAction) -> bool {
        let Some(routed) = &self.routed else { return true };
        let told = self.owner_notice.is_some();
        let owner = self.proposal.owner.as_deref().map(str::trim).filter(|o| told && owner::is_email_address(o));
        routed.allows(who)
            || (action == ApprovalAction::Snooze && owner.is_some_and(|o| o.eq_ignore_ascii_case(who.trim())))
    }

    /// Whether the decision on record was made as a person makes one: by POST on the page (by a routed approver,
    /// where approvals are routed), or by a signed click in the Slack channel the approval was asked in (the routed
    /// group's channel, where approvals are routed). The acting steps check it for themselves: `Err` says why not.
    pub fn decision_is_authentic(&self) -> Result<(), String> {
        let id = &self.approval_id;
        let approver = self.approver.as_deref().unwrap_or_default();
        match self.decided_via.as_deref() {
            Some(DECIDED_VIA_POST) => match self.routed.as_ref() {
                // Routed approvals: the page refuses anyone else; the acting step checks the record for itself.
                Some(routed) if !self.decision.is_some_and(|d| self.may_decide(approver, d)) => {
                    Err(format!("approval {id} was decided by someone it was not routed to ({})", routed.because))
                }
                _ => Ok(()),
            },
            Some(DECIDED_VIA_SLACK) => {
                let Some(asked) = &self.slack else {
                    return Err(format!("approval {id} was decided in Slack but never asked there"));
                };
                match &self.routed {
                    Some(routed) if routed.slack_channel.as_deref() != Some(asked.channel.as_str()) => Err(format!(
                        "approval {id} was decided in Slack channel {}, not the channel of its route ({})",
                        asked.channel, routed.because
                    )),
                    _ => Ok(()),
                }
            }
            _ => Err(format!("approval {id} was not decided by POST on its confirmation page or a signed Slack click")),
        }
    }
}

/// A decision as the callback records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    pub action: ApprovalAction,
    pub approver: &'a str,
    pub source_ip: Option<&'a str>,
    pub decided_at: &'a str,
    pub via: &'a str,
}

/// Outcome of the single-use flip from `pending` to `decided`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideResult {
    /// Decided; `task_token` is the token the record held at that moment (read atomically with the flip): a
    /// redelivered approval request may have replaced the first attempt's token, and only the live one is answered.
    Decided {
        task_token: String,
    },
    /// Someone (or a mail scanner's POST) used it first.
    AlreadyUsed,
    Expired,
    Missing,
}

/// Reading approval records: what the actions step may do (it verifies the decision before it acts).
pub trait ApprovalReader: Send + Sync {
    fn get(&self, approval_id: &str) -> impl Future<Output = Result<Option<ApprovalRecord>, FinopsError>> + Send;
}

/// What [`ApprovalRecords::claim_pending`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// No record had this id: it is stored, and the caller sends the one email.
    Created,
    /// A pending record had this id (Step Functions retried or redelivered the request): its task token is now the
    /// new one, the one the execution waits on. Its email went out with an earlier delivery (or may have: see
    /// [`EmailStatus`]), so none is sent again unless it is known not to have gone out.
    Renewed(ApprovalRecord),
    /// The record was already decided or expired: an earlier delivery's approval was answered (its answer went to
    /// a task that no longer waits, so the callback marks it expired). Nothing is sent; this attempt waits out its
    /// window and takes no action.
    Settled(ApprovalRecord),
}

/// Writing them: the approval request (a pending record) and the callback (the decision).
pub trait ApprovalRecords: ApprovalReader {
    /// Stores `record` unless its id exists; a pending record with the id gets `record`'s task token. See [`Claim`].
    fn claim_pending(&self, record: &ApprovalRecord) -> impl Future<Output = Result<Claim, FinopsError>> + Send;
    /// Records whether the email went out (after the publish).
    fn mark_email(
        &self,
        approval_id: &str,
        status: EmailStatus,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// Takes over an email known not to have gone out (`unsent` becomes `sending`): true for the one delivery that
    /// may now send it.
    fn reclaim_unsent_email(&self, approval_id: &str) -> impl Future<Output = Result<bool, FinopsError>> + Send;
    /// The single-use flip from `pending` to `decided`, only while the record has not expired.
    fn decide(
        &self,
        approval_id: &str,
        decision: &Decision<'_>,
        now_unix: i64,
    ) -> impl Future<Output = Result<DecideResult, FinopsError>> + Send;
    /// Back to `pending`, when the decision could not be handed to the workflow: the person can try again and the
    /// audit trail never says "approved" for a run that did not act. Only the decision made at `decided_at`.
    fn revert_decision(
        &self,
        approval_id: &str,
        decided_at: &str,
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

pub struct DynamoApprovals {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// Where the approval records and the link-signing key are: `FINOPS_APPROVALS_TABLE`, `FINOPS_SIGNING_SECRET_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub approvals_table: String,
    pub signing_secret_id: String,
}

pub use finops_core::config::required_var;

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

impl DynamoApprovals {
    pub fn new(config: &SdkConfig, table: impl Into<String>) -> Self {
        Self { client: aws_sdk_dynamodb::Client::new(config), table: table.into() }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<ApprovalRecord, FinopsError> {
    let bad = |what: &str| FinopsError::Aws {
        service: "DynamoDB",
        operation: "GetItem",
        code: "CorruptRecord".into(),
        message: format!("approval record without a valid {what}"),
    };
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
    Ok(ApprovalRecord {
        approval_id: text("approvalId").ok_or_else(|| bad("approvalId"))?,
        task_token: text("taskToken").ok_or_else(|| bad("taskToken"))?,
        proposal: serde_json::from_str(&text("proposal").ok_or_else(|| bad("proposal"))?)
            .map_err(|_| bad("proposal"))?,
        run_id: text("runId").unwrap_or_default(),
        execution_arn: text("executionArn").unwrap_or_default(),
        created_at: num("createdAt").unwrap_or(0),
        expires_at: num("expiresAt").ok_or_else(|| bad("expiresAt"))?,
        state: text("state").as_deref().and_then(ApprovalState::parse).ok_or_else(|| bad("state"))?,
        decision: text("decision").as_deref().and_then(ApprovalAction::parse),
        approver: text("approver"),
        decided_at: text("decidedAt"),
        source_ip: text("sourceIp"),
        decided_via: text("decidedVia"),
        late_answer: text("lateAnswer"),
        email: text("emailStatus").as_deref().and_then(EmailStatus::parse).unwrap_or(EmailStatus::Sent),
        claim_id: text("claimId").unwrap_or_default(),
        routed: match text("routedApprovers") {
            None => None,
            Some(json) => Some(serde_json::from_str(&json).map_err(|_| bad("routedApprovers"))?),
        },
        undo: match text("undoOf") {
            None => None,
            Some(json) => Some(serde_json::from_str(&json).map_err(|_| bad("undoOf"))?),
        },
        slack: match text("slackMessage") {
            None => None,
            Some(json) => Some(serde_json::from_str(&json).map_err(|_| bad("slackMessage"))?),
        },
        owner_notice: text("ownerNotice"),
    })
}

impl ApprovalReader for DynamoApprovals {
    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalRecord>, FinopsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "GetItem", e))?;
        out.item().map(from_item).transpose()
    }
}

impl ApprovalRecords for DynamoApprovals {
    async fn claim_pending(&self, r: &ApprovalRecord) -> Result<Claim, FinopsError> {
        let proposal = serde_json::to_string(&r.proposal).map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
        let routed = r.routed.as_ref().map(|routed| serde_json::to_string(routed).expect("strings serialise"));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("approvalId", s(&r.approval_id))
            .item("taskToken", s(&r.task_token))
            .item("proposal", s(&proposal))
            .item("runId", s(&r.run_id))
            .item("executionArn", s(&r.execution_arn))
            .item("resourceId", s(&r.proposal.resource_id))
            .item("createdAt", n(r.created_at))
            .item("expiresAt", n(r.expires_at))
            .item("ttl", n(r.expires_at.saturating_add(RECORD_RETENTION_SECONDS)))
            .item("state", s(ApprovalState::Pending.as_str()))
            .item("emailStatus", s(EmailStatus::Sending.as_str()))
            .item("claimId", s(&r.claim_id));
        if let Some(json) = routed {
            // Routed approvals only: who may decide (the approval page checks the decider against it).
            put = put.item("routedApprovers", s(&json));
        }
        if let Some(undo) = &r.undo {
            // Undo records only: what the record's one decision undoes.
            put = put.item("undoOf", s(&serde_json::to_string(undo).expect("strings serialise")));
        }
        let created = put.condition_expression("attribute_not_exists(approvalId)").send().await;
        match created {
            Ok(_) => return Ok(Claim::Created),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(FinopsError::from_sdk("DynamoDB", "PutItem", e)),
        }
        // The SDK retried this very write after its answer was lost: the record is ours, and so is the email.
        if !r.claim_id.is_empty() && self.get(&r.approval_id).await?.is_some_and(|e| e.claim_id == r.claim_id) {
            return Ok(Claim::Created);
        }
        // Only the task token is written (IAM lets this step write nothing else of an existing record); the record
        // is then read to tell a pending one from a settled one.
        let renewed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(&r.approval_id))
            .update_expression("SET taskToken = :token")
            .condition_expression("attribute_exists(approvalId)")
            .expression_attribute_values(":token", s(&r.task_token))
            .send()
            .await;
        match renewed {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                return Err(FinopsError::Transient {
                    service: "DynamoDB",
                    operation: "UpdateItem",
                    message: format!("approval {} vanished while it was claimed", r.approval_id),
                })
            }
            Err(e) => return Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
        match self.get(&r.approval_id).await? {
            Some(existing) if existing.state == ApprovalState::Pending => Ok(Claim::Renewed(existing)),
            Some(existing) => Ok(Claim::Settled(existing)),
            None => Err(FinopsError::Transient {
                service: "DynamoDB",
                operation: "GetItem",
                message: format!("approval {} vanished while it was claimed", r.approval_id),
            }),
        }
    }

    async fn claim_owner_notice(&self, approval_id: &str, stage: owner::OwnerNotice) -> Result<bool, FinopsError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET ownerNotice = :stage")
            .expression_attribute_values(":stage", s(stage.as_str()));
        let update = match stage {
            owner::OwnerNotice::Asked => {
                update.condition_expression("attribute_exists(approvalId) AND attribute_not_exists(ownerNotice)")
            }
            owner::OwnerNotice::Told => update
                .condition_expression("ownerNotice = :asked")
                .expression_attribute_values(":asked", s(owner::OwnerNotice::Asked.as_str())),
        };
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn mark_slack_message(&self, approval_id: &str, at: &slack::SlackMessageRef) -> Result<(), FinopsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET slackMessage = :at")
            .condition_expression("attribute_exists(approvalId)")
            .expression_attribute_values(":at", s(&serde_json::to_string(at).expect("strings serialise")))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "UpdateItem", e))?;
        Ok(())
    }

    async fn mark_email(&self, approval_id: &str, status: EmailStatus) -> Result<(), FinopsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET emailStatus = :status")
            .condition_expression("attribute_exists(approvalId)")
            .expression_attribute_values(":status", s(status.as_str()))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "UpdateItem", e))?;
        Ok(())
    }

    async fn reclaim_unsent_email(&self, approval_id: &str) -> Result<bool, FinopsError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET emailStatus = :sending")
            .condition_expression("emailStatus = :unsent")
            .expression_attribute_values(":sending", s(EmailStatus::Sending.as_str()))
            .expression_attribute_values(":unsent", s(EmailStatus::Unsent.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn decide(
        &self,
        approval_id: &str,
        decision: &Decision<'_>,
        now_unix: i64,
    ) -> Result<DecideResult, FinopsError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression(
                "SET #state = :decided, decision = :decision, approver = :approver, decidedAt = :at, \
                 decidedVia = :via, sourceIp = :ip",
            )
            .condition_expression("#state = :pending AND expiresAt > :now")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":decided", s(ApprovalState::Decided.as_str()))
            .expression_attribute_values(":pending", s(ApprovalState::Pending.as_str()))
            .expression_attribute_values(":decision", s(decision.action.as_str()))
            .expression_attribute_values(":approver", s(decision.approver))
            .expression_attribute_values(":at", s(decision.decided_at))
            .expression_attribute_values(":via", s(decision.via))
            .expression_attribute_values(":ip", s(decision.source_ip.unwrap_or("unknown")))
            .expression_attribute_values(":now", n(now_unix))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let decided = from_item(out.attributes().unwrap_or(&HashMap::new()))?;
                Ok(DecideResult::Decided { task_token: decided.task_token })
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                // Which condition failed decides the page the person sees.
                Ok(match self.get(approval_id).await? {
                    None => DecideResult::Missing,
                    Some(r) if r.state == ApprovalState::Pending => DecideResult::Expired,
                    Some(r) if r.state == ApprovalState::Expired => DecideResult::Expired,
                    Some(_) => DecideResult::AlreadyUsed,
                })
            }
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn revert_decision(&self, approval_id: &str, decided_at: &str) -> Result<(), FinopsError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET #state = :pending REMOVE decision, approver, decidedAt, decidedVia, sourceIp")
            .condition_expression("#state = :decided AND decidedAt = :at")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s(ApprovalState::Pending.as_str()))
            .expression_attribute_values(":decided", s(ApprovalState::Decided.as_str()))
            .expression_attribute_values(":at", s(decided_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's decision is there now (or the record expired): not ours to undo.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn mark_expired(&self, approval_id: &str) -> Result<(), FinopsError> {
        let Some(record) = self.get(approval_id).await? else { return Ok(()) };
        let late = record.decision.map(|d| {
            format!(
                "{} by {} at {} (after the workflow stopped waiting; nothing was done)",
                d.as_str(),
                record.approver.as_deref().unwrap_or("someone"),
                record.decided_at.as_deref().unwrap_or("?")
            )
        });
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":expired", s(ApprovalState::Expired.as_str()));
        update = match late {
            Some(late) => update
                .update_expression("SET #state = :expired, lateAnswer = :late REMOVE decision, decidedVia")
                .expression_attribute_values(":late", s(&late)),
            None => update.update_expression("SET #state = :expired"),
        };
        update.send().await.map_err(|e| FinopsError::from_sdk("DynamoDB", "UpdateItem", e))?;
        Ok(())
    }
}

/// Approval records in memory, with the same conditions as the table (tests and fakes of the other steps).
#[derive(Default)]
pub struct MemoryApprovals {
    records: std::sync::Mutex<HashMap<String, ApprovalRecord>>,
}

impl MemoryApprovals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ApprovalRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `approval_id` now (tests).
    pub fn get_now(&self, approval_id: &str) -> Option<ApprovalRecord> {
        self.lock().get(approval_id).cloned()
    }

    /// Stores a record as it is (a test setting up a decided or expired approval).
    pub fn insert(&self, record: ApprovalRecord) {
        self.lock().insert(record.approval_id.clone(), record);
    }
}

impl ApprovalReader for MemoryApprovals {
    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalRecord>, FinopsError> {
        Ok(self.lock().get(approval_id).cloned())
    }
}

impl ApprovalRecords for MemoryApprovals {
    async fn claim_pending(&self, record: &ApprovalRecord) -> Result<Claim, FinopsError> {
        let mut records = self.lock();
        match records.get_mut(&record.approval_id) {
            Some(existing) if !record.claim_id.is_empty() && existing.claim_id == record.claim_id => Ok(Claim::Created),
            None => {
                records.insert(
                    record.approval_id.clone(),
                    ApprovalRecord { state: ApprovalState::Pending, ..record.clone() },
                );
                Ok(Claim::Created)
            }
            Some(existing) if existing.state == ApprovalState::Pending => {
                existing.task_token = record.task_token.clone();
                Ok(Claim::Renewed(existing.clone()))
            }
            Some(existing) => Ok(Claim::Settled(existing.clone())),
        }
    }

    async fn claim_owner_notice(&self, approval_id: &str, stage: owner::OwnerNotice) -> Result<bool, FinopsError> {
        let mut records = self.lock();
        let Some(r) = records.get_mut(approval_id) else { return Ok(false) };
        let claimable = match stage {
            owner::OwnerNotice::Asked => r.owner_notice.is_none(),
            owner::OwnerNotice::Told => r.owner_notice.as_deref() == Some(owner::OwnerNotice::Asked.as_str()),
        };
        if claimable {
            r.owner_notice = Some(stage.as_str().to_owned());
        }
        Ok(claimable)
    }

    async fn mark_slack_message(&self, approval_id: &str, at: &slack::SlackMessageRef) -> Result<(), FinopsError> {
        if let Some(r) = self.lock().get_mut(approval_id) {
            r.slack = Some(at.clone());
        }
        Ok(())
    }

    async fn mark_email(&self, approval_id: &str, status: EmailStatus) -> Result<(), FinopsError> {
        if let Some(r) = self.lock().get_mut(approval_id) {
            r.email = status;
        }
        Ok(())
    }

    async fn reclaim_unsent_email(&self, approval_id: &str) -> Result<bool, FinopsError> {
        Ok(match self.lock().get_mut(approval_id) {
            Some(r) if r.email == EmailStatus::Unsent => {
                r.email = EmailStatus::Sending;
                true
            }
            _ => false,
        })
    }

    async fn decide(&self, approval_id: &str, d: &Decision<'_>, now_unix: i64) -> Result<DecideResult, FinopsError> {
        let mut records = self.lock();
        let Some(r) = records.get_mut(approval_id) else { return Ok(DecideResult::Missing) };
        match r.state {
            ApprovalState::Pending if r.expires_at > now_unix => {
                *r = r.clone().decided(d);
                Ok(DecideResult::Decided { task_token: r.task_token.clone() })
            }
            ApprovalState::Pending | ApprovalState::Expired => Ok(DecideResult::Expired),
            ApprovalState::Decided => Ok(DecideResult::AlreadyUsed),
        }
    }

    async fn revert_decision(&self, approval_id: &str, decided_at: &str) -> Result<(), FinopsError> {
        if let Some(r) = self.lock().get_mut(approval_id) {
            if r.state == ApprovalState::Decided && r.decided_at.as_deref() == Some(decided_at) {
                r.state = ApprovalState::Pending;
                (r.decision, r.approver, r.decided_at, r.source_ip, r.decided_via) = (None, None, None, None, None);
            }
        }
        Ok(())
    }

    async fn mark_expired(&self, approval_id: &str) -> Result<(), FinopsError> {
        if let Some(r) = self.lock().get_mut(approval_id) {
            if let Some(d) = r.decision.take() {
                r.late_answer = Some(format!(
                    "{} by {} at {} (after the workflow stopped waiting; nothing was done)",
                    d.as_str(),
                    r.approver.as_deref().unwrap_or("someone"),
                    r.decided_at.as_deref().unwrap_or("?")
                ));
                r.decided_via = None;
            }
            r.state = ApprovalState::Expired;
        }
        Ok(())
    }
}

/// The HMAC key for approval links.
pub trait SigningKey: Send + Sync {
    fn key(&self) -> impl Future<Output = Result<Vec<u8>, FinopsError>> + Send;
}

/// The key from Secrets Manager, fetched once per container.
pub struct SecretsManagerKey {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: tokio::sync::OnceCell<Vec<u8>>,
}

impl SecretsManagerKey {
    pub fn new(config: &SdkConfig, secret_id: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
            secret_id: secret_id.into(),
            cached: tokio::sync::OnceCell::new(),
        }
    }
}

/// Keys shorter than this are refused: a guessable key makes every link forgeable.
pub const MIN_KEY_BYTES: usize = 32;

/// One secret's current value (the link-signing key, the Slack app's secrets).
pub(crate) async fn secret_value(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput, FinopsError> {
    client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| FinopsError::from_sdk("SecretsManager", "GetSecretValue", e))
}

impl SigningKey for SecretsManagerKey {
    async fn key(&self) -> Result<Vec<u8>, FinopsError> {
        self.cached
            .get_or_try_init(|| async {
                let out = secret_value(&self.client, &self.secret_id).await?;
                let key = out
                    .secret_string()
                    .map(|s| s.as_bytes().to_vec())
                    .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
                    .unwrap_or_default();
                if key.len() < MIN_KEY_BYTES {
                    return Err(FinopsError::Configuration(format!(
                        "signing secret {} is shorter than {MIN_KEY_BYTES} bytes",
                        self.secret_id
                    )));
                }
                Ok(key)
            })
            .await
            .cloned()
    }
}

/// A fixed key (tests, the local demo).
pub struct StaticKey(pub Vec<u8>);

impl SigningKey for StaticKey {
    async fn key(&self) -> Result<Vec<u8>, FinopsError> {
        Ok(self.0.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    Accepted,
    /// The waiting task timed out: the workflow already took the "no action" path.
    TimedOut,
    /// Unknown or already completed task.
    Invalid,
}

/// Hands a decision to the waiting task. `Err(FinopsError::Throttled)` means Step Functions refused the call, so the
/// task did not get it; any other error means it may have (an answer lost after Step Functions took it).
pub trait TaskCallback: Send + Sync {
    fn send_success(
        &self,
        task_token: &str,
        output: &str,
    ) -> impl Future<Output = Result<CallbackResult, FinopsError>> + Send;
}

pub struct SfnCallback {
    client: aws_sdk_sfn::Client,
}

/// Attempts of a throttled SendTaskSuccess (refused, so trying again cannot deliver it twice).
const CALLBACK_ATTEMPTS: u32 = 4;

impl SfnCallback {
    /// SendTaskSuccess is not retried by the SDK: after an answer lost once Step Functions took the decision, the
    /// retry meets a task that no longer waits and reads as "timed out", and the callback would then undo a
    /// decision the workflow acted on (found by `make chaos`). Only a throttled call is tried again, here.
    pub fn new(config: &SdkConfig) -> Self {
        let conf = aws_sdk_sfn::config::Builder::from(config)
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
            .build();
        Self { client: aws_sdk_sfn::Client::from_conf(conf) }
    }
}

impl TaskCallback for SfnCallback {
    async fn send_success(&self, task_token: &str, output: &str) -> Result<CallbackResult, FinopsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.client.send_task_success().task_token(task_token).output(output).send().await {
                Ok(_) => Ok(CallbackResult::Accepted),
                Err(e) => match e.as_service_error() {
                    Some(se) if se.is_task_timed_out() => Ok(CallbackResult::TimedOut),
                    Some(se) if se.is_task_does_not_exist() || se.is_invalid_token() => Ok(CallbackResult::Invalid),
                    _ => Err(FinopsError::from_sdk("StepFunctions", "SendTaskSuccess", e)),
                },
            };
            match result {
                Err(FinopsError::Throttled { .. }) if attempt < CALLBACK_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// Starts the undo of a decided undo record: an execution of the state machine that ran the action, with the
/// undo entry. Its name is the undo id's, so a second start of the same undo starts nothing.
pub trait UndoStarter: Send + Sync {
    /// The execution's ARN. `Err(FinopsError::Throttled)` means it was not started.
    fn start_undo(&self, record: &ApprovalRecord) -> impl Future<Output = Result<String, FinopsError>> + Send;
}

/// The state machine of an execution (`...:execution:<machine>:<name>` is `...:stateMachine:<machine>`).
pub fn state_machine_of(execution_arn: &str) -> Result<String, FinopsError> {
    let bad = || FinopsError::InvalidInput(format!("{execution_arn:?} is not a Step Functions execution ARN"));
    let (machine, _name) = execution_arn.rsplit_once(':').ok_or_else(bad)?;
    let (prefix, machine_name) = machine.split_once(":execution:").ok_or_else(bad)?;
    if !prefix.starts_with("arn:") || machine_name.is_empty() || machine_name.contains(':') {
        return Err(bad());
    }
    Ok(format!("{prefix}:stateMachine:{machine_name}"))
}

/// The name of the execution that undoes `undo_id` (one per undo record).
pub fn undo_execution_name(undo_id: &str) -> String {
    format!("undo-{undo_id}")
}

/// The undo execution's input for a decided undo record.
pub fn undo_input(record: &ApprovalRecord) -> finops_core::steps::UndoExecutionInput {
    finops_core::steps::UndoExecutionInput {
        entry: "undo".into(),
        undo: finops_core::steps::UndoOrder {
            undo_id: record.approval_id.clone(),
            run_id: record.run_id.clone(),
            proposal: finops_core::steps::Target::of(&record.proposal),
        },
    }
}

impl UndoStarter for SfnCallback {
    async fn start_undo(&self, record: &ApprovalRecord) -> Result<String, FinopsError> {
        let machine = state_machine_of(&record.execution_arn)?;
        let name = undo_execution_name(&record.approval_id);
        let input = serde_json::to_string(&undo_input(record)).expect("plain data serialises");
        match self.client.start_execution().state_machine_arn(&machine).name(&name).input(input).send().await {
            Ok(out) => Ok(out.execution_arn().to_owned()),
            // Started before (a retried POST after a lost answer): the one undo execution is running or done.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_execution_already_exists()) => {
                Ok(format!("{}:{name}", machine.replacen(":stateMachine:", ":execution:", 1)))
            }
            Err(e) => Err(FinopsError::from_sdk("StepFunctions", "StartExecution", e)),
        }
    }
}

/// Sends the approval email. `Err(FinopsError::Throttled)` means nothing was sent (the service refused the
/// request); any other error means it may have been (an answer lost after the service took the message).
pub trait Notifier: Send + Sync {
    /// `audience`: the routed approvers (the topic's subscriptions filter on them); empty: every subscriber.
    fn publish(
        &self,
        subject: &str,
        body: &str,
        audience: &[String],
    ) -> impl Future<Output = Result<String, FinopsError>> + Send;
}

/// The message attribute the approval topic's subscriptions filter on when approvals are routed: a String.Array
/// of the routed addresses, matched by each address's filter policy `{"approvers": ["<address>"]}`.
pub const AUDIENCE_ATTRIBUTE: &str = "approvers";

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

/// Attempts of a throttled publish (SNS refused it, so trying again cannot send it twice).
const PUBLISH_ATTEMPTS: u32 = 4;

impl SnsNotifier {
    /// The email goes out at most once: the SDK's own retries would publish again after an answer that was lost (a
    /// timeout or a 5xx after SNS took the message: two emails, found by `make chaos`), so they are off, and only a
    /// throttled publish is tried again, by [`Notifier::publish`].
    pub fn new(config: &SdkConfig, topic_arn: impl Into<String>) -> Self {
        let conf = aws_sdk_sns::config::Builder::from(config)
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
            .build();
        Self { client: aws_sdk_sns::Client::from_conf(conf), topic_arn: topic_arn.into() }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, subject: &str, body: &str, audience: &[String]) -> Result<String, FinopsError> {
        let audience = (!audience.is_empty()).then(|| {
            let addresses: Vec<String> = audience.iter().map(|a| a.trim().to_ascii_lowercase()).collect();
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String.Array")
                .string_value(serde_json::to_string(&addresses).expect("strings serialise"))
                .build()
                .expect("data type is set")
        });
        // SNS subjects: ASCII, no newlines, at most 100 characters.
        let subject: String =
            subject.chars().map(|c| if c.is_ascii() && !c.is_control() { c } else { '?' }).take(100).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut publish = self.client.publish().topic_arn(&self.topic_arn).subject(&subject).message(body);
            if let Some(audience) = &audience {
                publish = publish.message_attributes(AUDIENCE_ATTRIBUTE, audience.clone());
            }
            let sent = publish.send().await;
            match sent.map_err(|e| FinopsError::from_sdk("SNS", "Publish", e)) {
                Ok(out) => return Ok(out.message_id().unwrap_or_default().to_owned()),
                Err(FinopsError::Throttled { .. }) if attempt < PUBLISH_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod undo_tests {
    use super::*;

    #[test]
    fn a_decision_is_authentic_by_post_or_by_a_click_in_the_channel_it_was_asked_in() {
        let proposal: Proposal = serde_json::from_value(serde_json::json!({
            "resourceId": "i-0abc", "region": "eu-west-1", "resourceType": "t3.large", "action": "snapshot-and-stop",
            "confidence": 0.9, "justification": "idle", "backend": "rules", "priceSource": "embedded",
            "evidence": [], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
        }))
        .unwrap();
        let decided = |via: &str, approver: &str| {
            ApprovalRecord::pending("a", "t", proposal.clone(), "run-1", "arn", 0, 10).decided(&Decision {
                action: ApprovalAction::Approve,
                approver,
                source_ip: None,
                decided_at: "2026-11-30T10:00:00Z",
                via,
            })
        };
        assert_eq!(decided(DECIDED_VIA_POST, "ops@example.com").decision_is_authentic(), Ok(()));
        assert!(decided("GET", "ops@example.com").decision_is_authentic().is_err());
        // A Slack decision needs the message it was asked in.
        let mut slack = decided(DECIDED_VIA_SLACK, "slack:U0ALICE/alice");
        assert!(slack.decision_is_authentic().unwrap_err().contains("never asked there"));
        slack.slack = Some(slack::SlackMessageRef { channel: "C0DATATEAM".into(), ts: "1.2".into() });
        assert_eq!(slack.decision_is_authentic(), Ok(()));
        // Routed: the route's channel, and for a page decision one of its addresses.
        let route = |channel: Option<&str>| finops_core::organization::Routed {
            approvers: vec!["data@example.com".into()],
            because: "account 111111111111".into(),
            slack_channel: channel.map(str::to_owned),
        };
        slack.routed = Some(route(Some("C0DATATEAM")));
        assert_eq!(slack.decision_is_authentic(), Ok(()));
        slack.routed = Some(route(Some("C0OTHER")));
        assert!(slack.decision_is_authentic().unwrap_err().contains("not the channel of its route"));
        let post = decided(DECIDED_VIA_POST, "ops@example.com").routed_to(Some(route(None)));
        assert!(post.decision_is_authentic().unwrap_err().contains("not routed to"));
    }

    #[test]
    fn an_undo_starts_an_execution_of_the_machine_that_acted() {
        let arn = "arn:aws:states:us-east-1:123456789012:execution:finops-workflow:run-2026-11-30";
        assert_eq!(
            state_machine_of(arn).unwrap(),
            "arn:aws:states:us-east-1:123456789012:stateMachine:finops-workflow"
        );
        for bad in ["", "run-1", "arn:aws:states:us-east-1:1:stateMachine:m", "arn:aws:states:us-east-1:1:execution::x"]
        {
            assert!(matches!(state_machine_of(bad), Err(FinopsError::InvalidInput(_))), "{bad}");
        }
        assert_eq!(undo_execution_name("00112233445566778899aabbccddeeff").len(), 37);
    }

    #[test]
    fn an_undo_input_of_the_hubs_own_resource_names_no_account() {
        // Found by `make demo`: `"account": null` is refused by the actions step, which reads a present account
        // strictly.
        let proposal = serde_json::from_value(serde_json::json!({
            "resourceId": "i-1", "region": "ap-southeast-2", "resourceType": "t3.large", "action": "snapshot-and-stop",
            "confidence": 1.0, "justification": "idle", "backend": "rules", "priceSource": "embedded",
            "evidence": [], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
        }))
        .unwrap();
        let record = ApprovalRecord::pending("a", "t", proposal, "run-1", "arn", 0, 1);
        let input = serde_json::to_value(undo_input(&record)).unwrap();
        assert!(input["undo"]["proposal"].get("account").is_none(), "{input}");
        assert_eq!(input["entry"], "undo");
    }
}
