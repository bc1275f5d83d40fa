//! The request step: who is asked about each proposal, and their messages. Three requests come to it:
//!
//! - "Ask Approvers" (before the approval map, [`ask`]): each proposal's approval record with its audience, computed
//!   here from the deployment's routing and the account's live facts, and one message per person in an audience.
//! - The approval map's wait (`lambda:invoke.waitForTaskToken`, [`RequestStep::wait`]): attaches the task token the
//!   execution waits on to the proposal's record. Step Functions retries and redelivers it; each attempt waits on a
//!   new token, and the record answers the latest.
//! - "Offer Undo" (after the map, [`undo`]): undo records and the undo links, mailed to each approval's audience,
//!   with the outcomes told in Slack and to owners.
//!
//! The approval id is derived from the run and the resource ([`approval_id_for`]), so every delivery of every request
//! finds the same record.

pub mod ask;
pub mod config;
pub mod undo;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use finops_approval_store::owner::{Mailer, OwnerNotice, SesMailer};
use finops_approval_store::slack::{SecretsManagerSlack, SlackApi, SlackWebApi};
use finops_approval_store::{
    ApprovalRecord, ApprovalRecords, Attach, DynamoApprovals, EmailStatus, MessageClaim, Notifier, SecretsManagerKey,
    SigningKey, SnsNotifier,
};
use finops_aws::{validate_run_id, AccountFacts, FinopsError, SdkOrganization};
use finops_core::approval::approval_id_for;
use finops_core::steps::OfferUndoRequest;
pub use finops_core::steps::{ApprovalRequestEvent, ApprovalRequestOutput};
pub use finops_core::DeploymentMode;

pub use config::{RequestApprovalConfig, RequestConfig};

/// The request step with what it reads and writes: approval records, the signing key, the approvers' mail, the
/// organization's account facts, and, where set up, Slack and the owners' mail.
pub struct RequestStep<R, K, N, F, S, M> {
    pub records: R,
    pub key: K,
    pub mail: N,
    pub facts: F,
    pub slack: Option<S>,
    pub owners: Option<M>,
    pub config: RequestConfig,
}

/// Each person in the records' audiences (by normalised address) with the records they are asked about: one message
/// each, whatever the number of records.
fn by_recipient(records: &[ApprovalRecord]) -> BTreeMap<String, Vec<&ApprovalRecord>> {
    let mut by_recipient: BTreeMap<String, Vec<&ApprovalRecord>> = BTreeMap::new();
    for record in records {
        for approver in &record.audience.approvers {
            by_recipient.entry(finops_core::approval::normalized_address(approver)).or_default().push(record);
        }
    }
    by_recipient
}

/// What [`RequestStep::tell_outcomes`] told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Told {
    pub slack_messages: usize,
    pub owners: usize,
}

impl<R, K, N, F, S, M> RequestStep<R, K, N, F, S, M>
where
    R: ApprovalRecords,
    K: SigningKey,
    N: Notifier,
    F: AccountFacts,
    S: SlackApi,
    M: Mailer,
{
    /// Whichever request the state machine sent: the proposals to ask about, a wait's task token, or the outcomes.
    pub async fn invoke(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        trace_header: Option<&str>,
    ) -> Result<serde_json::Value, FinopsError> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.expect("plain data serialises");
        // This delivery's claim on the messages it sends (random), so the SDK's retry of a claim finds it its own.
        let claim_id = || {
            let mut random = [0u8; 16];
            getrandom::fill(&mut random).map_err(|e| FinopsError::Configuration(format!("no randomness: {e}")))?;
            Ok::<_, FinopsError>(hex::encode(random))
        };
        if event.get("outcomes").is_some() {
            let request = undo::offer_request(event)?;
            // Slack and the owners are told as a courtesy: a message or notice that fails does not fail the run.
            if let Err(e) = self.tell_outcomes(&request).await {
                tracing::warn!(error = %e, "the outcomes were not told in Slack or to the owners");
            }
            return Ok(json(serde_json::to_value(self.offer_undo(&request, now, &claim_id()?).await?)));
        }
        if event.get("taskToken").is_some() {
            return Ok(json(serde_json::to_value(self.wait(event).await?)));
        }
        Ok(json(serde_json::to_value(self.ask(event, now, &claim_id()?, trace_header).await?)))
    }

    /// Mails `recipient` the message `claim` names, at most once: a retried step that finds the claim taken sends
    /// nothing. The message (subject, body) is rendered only when claimed. `Ok(Some(refusal))` when SNS refused it, so
    /// it did not go out and the step's retry may send it; a send not confirmed (SNS may have taken it and the answer
    /// was lost) stays claimed and is never sent twice: if it did not go out, nobody answers and nothing is done.
    async fn mail_once(
        &self,
        claim: &MessageClaim,
        recipient: &str,
        message: impl FnOnce() -> (String, String),
        what: &str,
    ) -> Result<Option<FinopsError>, FinopsError> {
        if !self.records.claim_message(claim).await? {
            return Ok(None);
        }
        let (subject, body) = message();
        match self.mail.publish(recipient, &subject, &body).await {
            Ok(_) => {
                if let Err(e) = self.records.mark_message(&claim.message_id, EmailStatus::Sent).await {
                    // Only the audit of the message is missing: `sending` already keeps a retry from resending.
                    tracing::warn!(error = %e, "could not record that a {what} was sent");
                }
                Ok(None)
            }
            Err(e @ FinopsError::Throttled { .. }) => {
                if let Err(mark) = self.records.mark_message(&claim.message_id, EmailStatus::Unsent).await {
                    tracing::error!(error = %mark, "could not record that a {what} was not sent");
                }
                Ok(Some(e))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a {what} not confirmed; it is not sent again");
                Ok(None)
            }
        }
    }

    /// The approval map's wait for one proposal: its record now answers this task token. A record already decided or
    /// expired (an earlier attempt's answer went to a task that no longer waits) is left as it is, and this wait ends
    /// with no action; a proposal nobody was asked about is an error (no action either).
    pub async fn wait(&self, event: serde_json::Value) -> Result<ApprovalRequestOutput, FinopsError> {
        let event: ApprovalRequestEvent = serde_json::from_value(event).map_err(|e| {
            FinopsError::InvalidInput(format!("the wait expects {{taskToken, proposal, runId, executionArn}}: {e}"))
        })?;
        validate_run_id(&event.run_id)?;
        if self.config.mode == DeploymentMode::Recommend {
            return Err(FinopsError::InvalidInput(
                "this deployment is in recommend mode: nobody is asked to approve anything".into(),
            ));
        }
        if event.task_token.trim().is_empty() {
            return Err(FinopsError::InvalidInput("taskToken is empty".into()));
        }
        let key = self.key.key().await?;
        let id = approval_id_for(&key, &event.run_id, &event.proposal.resource_id);
        match self.records.attach_task(&id, &event.task_token).await? {
            Attach::Waiting(record) => {
                tracing::info!(run_id = record.run_id, approval_id = id, "the workflow waits for the decision");
                Ok(ApprovalRequestOutput { approval_id: id, expires_at: record.expires_at })
            }
            Attach::Settled(record) => {
                tracing::warn!(
                    run_id = record.run_id,
                    approval_id = id,
                    state = record.state.as_str(),
                    decision = "APPROVAL_ALREADY_SETTLED",
                    "the wait came again after its approval was answered for an earlier attempt; this wait ends \
                     with no action"
                );
                Ok(ApprovalRequestOutput { approval_id: id, expires_at: record.expires_at })
            }
            Attach::Missing => Err(FinopsError::InvalidInput(format!(
                "nobody was asked about {} (no approver for its account, or its messages could not be sent): \
                 nothing is done",
                event.proposal.resource_id
            ))),
        }
    }

    /// After the approval map: each approval asked in Slack gets its message updated with what came of it (stopped,
    /// denied, no answer, failed and why), and each owner who was told of a proposal hears its outcome (once). A
    /// message Slack refuses to update, or a notice SES refuses, is logged and left: the run's report is the record.
    pub async fn tell_outcomes(&self, request: &OfferUndoRequest) -> Result<Told, FinopsError> {
        let key = self.key.key().await?;
        let mut told = Told::default();
        for outcome in &request.outcomes {
            let text = |k: &str| outcome.get(k).and_then(serde_json::Value::as_str).unwrap_or_default();
            let resource_id = text("resourceId");
            if resource_id.is_empty() {
                continue;
            }
            let approval_id = approval_id_for(&key, &request.run_id, resource_id);
            let Some(record) = self.records.get(&approval_id).await? else { continue };
            let decided = match (record.decision, &record.approver, &record.decided_at) {
                (Some(d), Some(who), Some(at)) => format!("{} by {who} at {at}", d.as_str()),
                _ => "No decision in time".to_owned(),
            };
            let words = finops_core::slack::outcome_words(text("outcome"), text("operation"));
            let said = match text("detail") {
                "" => words.to_owned(),
                detail => format!("{words} ({detail})"),
            };
            if let (Some(slack), Some(at)) = (&self.slack, &record.slack) {
                let message = finops_core::slack::outcome_message(&record.proposal, &decided, &said);
                match slack.update(at, &message).await {
                    Ok(()) => told.slack_messages += 1,
                    Err(e) => {
                        tracing::warn!(approval_id, error = %e, "could not update the Slack message with the outcome")
                    }
                }
            }
            if let (Some(mailer), Some(owner)) = (&self.owners, record.owner_address()) {
                if self.records.claim_owner_notice(&approval_id, OwnerNotice::Told).await? {
                    let (subject, body) =
                        finops_approval_store::email::render_owner_outcome(&record.proposal, &decided, &said);
                    match mailer.send(&owner, &subject, &body).await {
                        Ok(()) => told.owners += 1,
                        Err(e) => tracing::warn!(approval_id, error = %e, "the owner's outcome notice was not sent"),
                    }
                }
            }
        }
        Ok(told)
    }
}

/// The request step as the Lambda and the local runner build it.
pub type RequestApprovalStep = RequestStep<
    DynamoApprovals,
    SecretsManagerKey,
    SnsNotifier,
    Option<SdkOrganization>,
    SlackWebApi<SecretsManagerSlack>,
    SesMailer,
>;

impl RequestApprovalStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: RequestApprovalConfig) -> Result<Self, FinopsError> {
        // Organizations is read only where a route needs an account's OUs or tags.
        let facts =
            config.request.routing.as_ref().is_some_and(|r| r.needs_account_facts()).then(|| SdkOrganization::new(sdk));
        Ok(Self {
            records: DynamoApprovals::new(sdk, config.store.approvals_table),
            key: SecretsManagerKey::new(sdk, config.store.signing_secret_id),
            mail: SnsNotifier::new(sdk, config.topic_arn),
            facts,
            slack: config.slack.map(|s| SlackWebApi::new(&s.api_url, SecretsManagerSlack::new(sdk, &s.secret_id))),
            owners: config.owner_notices_from.map(|from| SesMailer::new(sdk, from)),
            config: config.request,
        })
    }
}

#[cfg(test)]
mod tests;
