//! "Offer Undo", after the approval map: for each stop and deletion a person approved, an undo record (the approval's
//! proposal, run and audience, waiting for its one decision), and for each person in those audiences one message with
//! their own signed, single-use links to it. The links go by email only: the step's output (the execution's history,
//! the run report) says how many were offered to how many people, never a link.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use finops_approval_store::email::{render_undo_offer, UndoItem};
use finops_approval_store::owner::Mailer;
use finops_approval_store::slack::SlackApi;
use finops_approval_store::{ApprovalRecord, ApprovalRecords, Claim, MessageClaim, Notifier, SigningKey};
use finops_aws::{validate_run_id, AccountFacts, FinopsError};
use finops_core::approval::{approval_id_for, message_id_for, undo_id_for, ApprovalAction, ApprovalLink};
use finops_core::policy::ProposedAction;
use finops_core::savings::ActedOn;
use finops_core::steps::{OfferUndoOutput, OfferUndoRequest};

use crate::RequestStep;

/// The message kind of an undo offer ([`message_id_for`]).
pub const UNDO_OFFER: &str = "undo-offer";

/// The "Offer Undo" request (the map's outcomes), checked before anything is told or offered.
pub fn offer_request(event: serde_json::Value) -> Result<OfferUndoRequest, FinopsError> {
    let request: OfferUndoRequest = serde_json::from_value(event)
        .map_err(|e| FinopsError::InvalidInput(format!("offer undo expects {{runId, executionArn, outcomes}}: {e}")))?;
    validate_run_id(&request.run_id)?;
    Ok(request)
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
    /// Only what a person approved (authentically: by their own link's page, or a signed click by a named Slack user)
    /// gets an undo; a release cannot be undone and gets none. A retried offer finds the same records (the undo id
    /// is derived from the run and the resource) and sends nobody a second message.
    pub async fn offer_undo(
        &self,
        request: &OfferUndoRequest,
        now: DateTime<Utc>,
        claim_id: &str,
    ) -> Result<OfferUndoOutput, FinopsError> {
        let key = self.key.key().await?;
        let mut offered: Vec<ApprovalRecord> = Vec::new();
        let (mut released, mut volumes_deleted) = (0, 0);
        for outcome in &request.outcomes {
            let Some(acted) = outcome.get("acted").filter(|a| a.is_object()) else { continue };
            let acted: ActedOn = serde_json::from_value(acted.clone())
                .map_err(|e| FinopsError::InvalidInput(format!("an outcome's acted record: {e}")))?;
            let approval_id = approval_id_for(&key, &request.run_id, &acted.resource_id);
            let approval = match self.records.get(&approval_id).await? {
                Some(a)
                    if a.undo.is_none()
                        && a.decision == Some(ApprovalAction::Approve)
                        && a.decision_is_authentic().is_ok() =>
                {
                    a
                }
                _ => {
                    tracing::warn!(
                        run_id = request.run_id,
                        resource_id = acted.resource_id,
                        "acted on without an approval on record: no undo offered"
                    );
                    continue;
                }
            };
            // What can be undone is what the approval was for, whatever the outcome says.
            if approval.proposal.action.undo_label().is_none() {
                match approval.proposal.action {
                    ProposedAction::SnapshotAndDeleteVolumes => volumes_deleted += 1,
                    _ => released += 1,
                }
                continue;
            }
            let undo_id = undo_id_for(&key, &request.run_id, &acted.resource_id);
            let expires_at = (now + Duration::days(self.config.undo_window_days)).timestamp();
            let acted_at = acted.acted_at.to_rfc3339_opts(SecondsFormat::Secs, true);
            let record =
                ApprovalRecord::undo_of(&approval, undo_id, acted_at, acted.stopped_as, now.timestamp(), expires_at);
            match self.records.claim_pending(&record).await? {
                Claim::Created => offered.push(record),
                Claim::Renewed(existing) => offered.push(existing),
                // Used or expired already (a retried offer long after): nothing to offer again.
                Claim::Settled(_) => continue,
            }
        }
        let mut refused = None;
        let by_recipient = crate::by_recipient(&offered);
        for (recipient, records) in &by_recipient {
            let claim = MessageClaim {
                message_id: message_id_for(&key, &request.run_id, UNDO_OFFER, recipient),
                run_id: request.run_id.clone(),
                expires_at: records.iter().map(|r| r.expires_at).max().unwrap_or(now.timestamp()),
                claim_id: claim_id.to_owned(),
            };
            let offer = || {
                let items: Vec<UndoItem<'_>> = records
                    .iter()
                    .map(|r| UndoItem {
                        proposal: &r.proposal,
                        label: r.proposal.action.undo_label().unwrap_or("Undo"),
                        url: ApprovalLink::sign(&key, &r.approval_id, ApprovalAction::Undo, r.expires_at, recipient)
                            .url(&self.config.base_url),
                        approved_by: r.undo.as_ref().and_then(|u| u.approved_by.as_deref()).unwrap_or("someone"),
                    })
                    .collect();
                render_undo_offer(recipient, &request.run_id, &items, self.config.undo_window_days)
            };
            refused = self.mail_once(&claim, recipient, offer, "undo offer").await?.or(refused);
        }
        if let Some(e) = refused {
            return Err(e);
        }
        for record in &offered {
            tracing::info!(
                run_id = request.run_id,
                resource_id = record.proposal.resource_id,
                undo_id = record.approval_id,
                decision = "UNDO_OFFERED",
                "undo offered to the approval's audience"
            );
        }
        let mut summary = match offered.is_empty() {
            true => "none (nothing approved was stopped or deleted)".to_owned(),
            false => format!(
                "offered for {} action(s) to {} approver(s), by email only (each link single use, valid {} days)",
                offered.len(),
                by_recipient.len(),
                self.config.undo_window_days
            ),
        };
        if released > 0 {
            summary.push_str(&format!("; {released} released address(es) cannot be got back"));
        }
        if volumes_deleted > 0 {
            summary.push_str(&format!(
                "; {volumes_deleted} stopped instance(s)' deleted volumes: recreate them from the kept snapshots by hand"
            ));
        }
        Ok(OfferUndoOutput { summary, offered: offered.len(), recipients: by_recipient.len() })
    }
}
