//! Approval records in memory, with the same conditions as the table (tests and fakes of the other steps).

use std::collections::HashMap;

use finops_aws::FinopsError;

use crate::record::{ApprovalRecord, ApprovalState, Decision};
use crate::{owner, slack, ApprovalReader, ApprovalRecords, Attach, Claim, DecideResult, EmailStatus, MessageClaim};

#[derive(Default)]
pub struct MemoryApprovals {
    records: std::sync::Mutex<HashMap<String, ApprovalRecord>>,
    /// Message claims: (status, claim id) by message id.
    messages: std::sync::Mutex<HashMap<String, (EmailStatus, String)>>,
    /// The mark of each record's decision (the table's `decisionNonce`), and how many were made.
    marks: std::sync::Mutex<(HashMap<String, String>, u64)>,
}

impl MemoryApprovals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ApprovalRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `approval_id` now (tests).
    pub fn get_now(&self, approval_id: &str) -> Option<ApprovalRecord> {
        self.lock().get(approval_id).cloned()
    }

    /// Every record (tests).
    pub fn all(&self) -> Vec<ApprovalRecord> {
        self.lock().values().cloned().collect()
    }

    /// Stores a record as it is (a test setting up a decided or expired approval).
    pub fn insert(&self, record: ApprovalRecord) {
        self.lock().insert(record.approval_id.clone(), record);
    }

    /// A message's claim status (tests).
    pub fn message_status(&self, message_id: &str) -> Option<EmailStatus> {
        self.messages.lock().unwrap_or_else(|p| p.into_inner()).get(message_id).map(|(s, _)| *s)
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
        match records.get(&record.approval_id) {
            None => {
                records.insert(
                    record.approval_id.clone(),
                    ApprovalRecord { state: ApprovalState::Pending, ..record.clone() },
                );
                Ok(Claim::Created)
            }
            Some(existing) if existing.state == ApprovalState::Pending => Ok(Claim::Renewed(existing.clone())),
            Some(existing) => Ok(Claim::Settled(existing.clone())),
        }
    }

    async fn attach_task(&self, approval_id: &str, task_token: &str) -> Result<Attach, FinopsError> {
        let mut records = self.lock();
        Ok(match records.get_mut(approval_id) {
            None => Attach::Missing,
            Some(r) if r.state == ApprovalState::Pending => {
                r.task_token = Some(task_token.to_owned());
                Attach::Waiting(r.clone())
            }
            Some(r) => Attach::Settled(r.clone()),
        })
    }

    async fn claim_message(&self, claim: &MessageClaim) -> Result<bool, FinopsError> {
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        match messages.get_mut(&claim.message_id) {
            None => {
                messages.insert(claim.message_id.clone(), (EmailStatus::Sending, claim.claim_id.clone()));
                Ok(true)
            }
            Some((_, claim_id)) if !claim.claim_id.is_empty() && *claim_id == claim.claim_id => Ok(true),
            Some((status, _)) if *status == EmailStatus::Unsent => {
                *status = EmailStatus::Sending;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    async fn mark_message(&self, message_id: &str, status: EmailStatus) -> Result<(), FinopsError> {
        if let Some(entry) = self.messages.lock().unwrap_or_else(|p| p.into_inner()).get_mut(message_id) {
            entry.0 = status;
        }
        Ok(())
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

    async fn decide(&self, approval_id: &str, d: &Decision<'_>, now_unix: i64) -> Result<DecideResult, FinopsError> {
        let mut records = self.lock();
        let Some(r) = records.get_mut(approval_id) else { return Ok(DecideResult::Missing) };
        match r.state {
            ApprovalState::Pending if r.expires_at <= now_unix => Ok(DecideResult::Expired),
            ApprovalState::Pending => match r.task_token.clone() {
                Some(task_token) => {
                    *r = r.clone().decided(d);
                    let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
                    marks.1 += 1;
                    let revert_mark = format!("decision-{}", marks.1);
                    marks.0.insert(approval_id.to_owned(), revert_mark.clone());
                    Ok(DecideResult::Decided { task_token, revert_mark })
                }
                None => Ok(DecideResult::NotWaiting),
            },
            ApprovalState::Expired => Ok(DecideResult::Expired),
            ApprovalState::Decided => Ok(DecideResult::AlreadyUsed),
        }
    }

    async fn revert_decision(&self, approval_id: &str, revert_mark: &str) -> Result<(), FinopsError> {
        let marked = self.marks.lock().unwrap_or_else(|p| p.into_inner()).0.get(approval_id).map(String::as_str)
            == Some(revert_mark);
        if let Some(r) = self.lock().get_mut(approval_id) {
            if r.state == ApprovalState::Decided && marked {
                r.state = ApprovalState::Pending;
                (r.decision, r.approver, r.decided_at, r.source_ip, r.decided_via) = (None, None, None, None, None);
            }
        }
        Ok(())
    }

    async fn mark_expired(&self, approval_id: &str) -> Result<(), FinopsError> {
        if let Some(r) = self.lock().get_mut(approval_id) {
            if let Some(d) = r.decision_summary() {
                r.late_answer = Some(format!("{d} (after the workflow stopped waiting; nothing was done)"));
                (r.decision, r.decided_via) = (None, None);
            }
            r.state = ApprovalState::Expired;
        }
        Ok(())
    }
}
