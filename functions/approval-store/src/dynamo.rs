//! The approvals table in DynamoDB: one item per approval (or undo) record, keyed `approvalId`, and one per message
//! a run sent a recipient (keyed by its message id, which no link can name). Every change is a conditional write, so
//! retries and races settle to one outcome.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use finops_aws::FinopsError;
use finops_core::approval::ApprovalAction;

use crate::record::{ApprovalRecord, ApprovalState, Decision};
use crate::{
    owner, slack, ApprovalReader, ApprovalRecords, Attach, Claim, DecideResult, EmailStatus, MessageClaim,
    RECORD_RETENTION_SECONDS,
};

pub struct DynamoApprovals {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

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

fn json_of<T: serde::Serialize>(value: &T) -> AttributeValue {
    s(&serde_json::to_string(value).expect("plain data serialises"))
}

fn conditional_check_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// An attribute holding JSON, if present; a corrupt one is an error.
fn parsed<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
    key: &'static str,
) -> Result<Option<T>, FinopsError> {
    let Some(json) = item.get(key).and_then(|v| v.as_s().ok()) else { return Ok(None) };
    serde_json::from_str(json).map(Some).map_err(|_| FinopsError::Aws {
        service: "DynamoDB",
        operation: "GetItem",
        code: "CorruptRecord".into(),
        message: format!("approval record without a valid {key}"),
    })
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
        task_token: text("taskToken"),
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
        // A record without the audience it was created with (written before audiences were kept) decides nothing.
        audience: parsed(item, "audience")?.ok_or_else(|| bad("audience"))?,
        undo: parsed(item, "undoOf")?,
        slack: parsed(item, "slackMessage")?,
        owner_notice: text("ownerNotice"),
    })
}

impl ApprovalReader for DynamoApprovals {
    async fn get(&self, approval_id: &str) -> Result<Option<ApprovalRecord>, FinopsError> {
        self.item(approval_id).await?.as_ref().map(from_item).transpose()
    }
}

impl DynamoApprovals {
    /// The item under `key` (a record or a message claim), read consistently.
    async fn item(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, FinopsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("approvalId", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "GetItem", e))?;
        Ok(out.item)
    }

    /// The task token of a decided record, and whether the decision is the one written with `nonce`.
    async fn decided_by(&self, approval_id: &str, nonce: &str) -> Result<Option<(String, bool)>, FinopsError> {
        Ok(self.item(approval_id).await?.and_then(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str);
            let decided = text("state") == Some(ApprovalState::Decided.as_str());
            decided.then(|| (text("taskToken").unwrap_or_default().to_owned(), text("decisionNonce") == Some(nonce)))
        }))
    }

    /// A message's claim item, as it is now.
    async fn message_status(&self, message_id: &str) -> Result<Option<(EmailStatus, String)>, FinopsError> {
        Ok(self.item(message_id).await?.map(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            (EmailStatus::parse(&text("emailStatus")).unwrap_or(EmailStatus::Sending), text("claimId"))
        }))
    }
}

impl ApprovalRecords for DynamoApprovals {
    async fn claim_pending(&self, r: &ApprovalRecord) -> Result<Claim, FinopsError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("approvalId", s(&r.approval_id))
            .item("proposal", json_of(&r.proposal))
            .item("runId", s(&r.run_id))
            .item("executionArn", s(&r.execution_arn))
            .item("resourceId", s(&r.proposal.resource_id))
            .item("createdAt", n(r.created_at))
            .item("expiresAt", n(r.expires_at))
            .item("ttl", n(r.expires_at.saturating_add(RECORD_RETENTION_SECONDS)))
            .item("state", s(ApprovalState::Pending.as_str()))
            .item("audience", json_of(&r.audience));
        if let Some(token) = &r.task_token {
            // Undo records only: nothing waits on them.
            put = put.item("taskToken", s(token));
        }
        if let Some(undo) = &r.undo {
            // Undo records only: what the record's one decision undoes.
            put = put.item("undoOf", json_of(undo));
        }
        match put.condition_expression("attribute_not_exists(approvalId)").send().await {
            Ok(_) => return Ok(Claim::Created),
            Err(e) if conditional_check_failed(&e) => {}
            Err(e) => return Err(FinopsError::from_sdk("DynamoDB", "PutItem", e)),
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

    async fn attach_task(&self, approval_id: &str, task_token: &str) -> Result<Attach, FinopsError> {
        // Only the task token is written (IAM lets this step write nothing else of an existing record), and only on a
        // pending record.
        let attached = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression("SET taskToken = :token")
            .condition_expression("attribute_exists(approvalId) AND #state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", s(task_token))
            .expression_attribute_values(":pending", s(ApprovalState::Pending.as_str()))
            .send()
            .await;
        match attached {
            Ok(_) => {}
            Err(e) if conditional_check_failed(&e) => {}
            Err(e) => return Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
        Ok(match self.get(approval_id).await? {
            Some(r) if r.state == ApprovalState::Pending && r.task_token.as_deref() == Some(task_token) => {
                Attach::Waiting(r)
            }
            Some(r) if r.state != ApprovalState::Pending => Attach::Settled(r),
            Some(_) => {
                return Err(FinopsError::Transient {
                    service: "DynamoDB",
                    operation: "UpdateItem",
                    message: format!("approval {approval_id} did not take the task token"),
                })
            }
            None => Attach::Missing,
        })
    }

    async fn claim_message(&self, claim: &MessageClaim) -> Result<bool, FinopsError> {
        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("approvalId", s(&claim.message_id))
            .item("runId", s(&claim.run_id))
            .item("expiresAt", n(claim.expires_at))
            .item("ttl", n(claim.expires_at.saturating_add(RECORD_RETENTION_SECONDS)))
            .item("emailStatus", s(EmailStatus::Sending.as_str()))
            .item("claimId", s(&claim.claim_id))
            .condition_expression("attribute_not_exists(approvalId)")
            .send()
            .await;
        match created {
            Ok(_) => return Ok(true),
            Err(e) if conditional_check_failed(&e) => {}
            Err(e) => return Err(FinopsError::from_sdk("DynamoDB", "PutItem", e)),
        }
        match self.message_status(&claim.message_id).await? {
            // The SDK retried this very write after its answer was lost: the claim is ours.
            Some((_, claim_id)) if !claim.claim_id.is_empty() && claim_id == claim.claim_id => Ok(true),
            // SNS refused it earlier: nothing went out, and this delivery may take it over (once).
            Some((EmailStatus::Unsent, _)) => {
                let reclaimed = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("approvalId", s(&claim.message_id))
                    .update_expression("SET emailStatus = :sending")
                    .condition_expression("emailStatus = :unsent")
                    .expression_attribute_values(":sending", s(EmailStatus::Sending.as_str()))
                    .expression_attribute_values(":unsent", s(EmailStatus::Unsent.as_str()))
                    .send()
                    .await;
                match reclaimed {
                    Ok(_) => Ok(true),
                    Err(e) if conditional_check_failed(&e) => Ok(false),
                    Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
                }
            }
            _ => Ok(false),
        }
    }

    async fn mark_message(&self, message_id: &str, status: EmailStatus) -> Result<(), FinopsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(message_id))
            .update_expression("SET emailStatus = :status")
            .condition_expression("attribute_exists(approvalId)")
            .expression_attribute_values(":status", s(status.as_str()))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "UpdateItem", e))?;
        Ok(())
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
            Err(e) if conditional_check_failed(&e) => Ok(false),
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
            .expression_attribute_values(":at", json_of(at))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("DynamoDB", "UpdateItem", e))?;
        Ok(())
    }

    async fn decide(
        &self,
        approval_id: &str,
        decision: &Decision<'_>,
        now_unix: i64,
    ) -> Result<DecideResult, FinopsError> {
        // This write's own mark: its SDK retry after a lost answer finds its own decision, where a second person's
        // (or a second click's) finds another.
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| FinopsError::Configuration(format!("no randomness: {e}")))?;
        let nonce = hex::encode(random);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression(
                "SET #state = :decided, decision = :decision, approver = :approver, decidedAt = :at, \
                 decidedVia = :via, sourceIp = :ip, decisionNonce = :nonce",
            )
            .expression_attribute_values(":nonce", s(&nonce))
            .condition_expression("#state = :pending AND expiresAt > :now AND attribute_exists(taskToken)")
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
                Ok(DecideResult::Decided { task_token: decided.task_token.unwrap_or_default(), revert_mark: nonce })
            }
            Err(e) if conditional_check_failed(&e) => {
                // This very write, retried by the SDK after its answer was lost: the decision is ours.
                if let Some((token, true)) = self.decided_by(approval_id, &nonce).await? {
                    return Ok(DecideResult::Decided { task_token: token, revert_mark: nonce });
                }
                // Which condition failed decides the page the person sees.
                Ok(match self.get(approval_id).await? {
                    None => DecideResult::Missing,
                    Some(r) if r.state == ApprovalState::Pending && now_unix >= r.expires_at => DecideResult::Expired,
                    Some(r) if r.state == ApprovalState::Pending => DecideResult::NotWaiting,
                    Some(r) if r.state == ApprovalState::Expired => DecideResult::Expired,
                    Some(_) => DecideResult::AlreadyUsed,
                })
            }
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn revert_decision(&self, approval_id: &str, revert_mark: &str) -> Result<(), FinopsError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("approvalId", s(approval_id))
            .update_expression(
                "SET #state = :pending REMOVE decision, approver, decidedAt, decidedVia, sourceIp, decisionNonce",
            )
            .condition_expression("#state = :decided AND decisionNonce = :nonce")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s(ApprovalState::Pending.as_str()))
            .expression_attribute_values(":decided", s(ApprovalState::Decided.as_str()))
            .expression_attribute_values(":nonce", s(revert_mark))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else's decision is there now (or the record expired): not ours to undo.
            Err(e) if conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(FinopsError::from_sdk("DynamoDB", "UpdateItem", e)),
        }
    }

    async fn mark_expired(&self, approval_id: &str) -> Result<(), FinopsError> {
        let Some(record) = self.get(approval_id).await? else { return Ok(()) };
        let late =
            record.decision_summary().map(|d| format!("{d} (after the workflow stopped waiting; nothing was done)"));
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
