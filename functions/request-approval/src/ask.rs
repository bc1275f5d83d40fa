//! "Ask Approvers": before the approval map, every proposal of the run gets its approval record, with the audience the
//! deployment's routing gives its account (from the account's live facts), and every person in an audience gets one
//! message for the run: a digest of what they may decide, each link signed for them. Slack is asked per proposal in
//! its audience's channel, and owners get a notice with a keep-it link of their own kind.
//!
//! At most one message per recipient per run: each is claimed in the table before it goes out, so a retried step
//! sends only what is known not to have gone out (SNS refused it).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use finops_approval_store::email::{
    execution_console_url, render_digest, render_owner_notice, spark, trace_console_url, Digest, DigestItem, OwnerItem,
};
use finops_approval_store::owner::{self, Mailer, OwnerNotice};
use finops_approval_store::slack::{SlackApi, SlackMessageRef};
use finops_approval_store::{ApprovalRecord, ApprovalRecords, Claim, MessageClaim, Notifier, SigningKey};
use finops_aws::{validate_run_id, AccountFacts, FinopsError};
use finops_core::approval::{approval_id_for, message_id_for, ApprovalAction, ApprovalLink, SLACK_RECIPIENT};
use finops_core::organization::{Account, Audience};
use finops_core::policy::Proposal;
use finops_core::steps::{AskApproversOutput, AskApproversRequest};
use finops_core::DeploymentMode;

use crate::{RequestConfig, RequestStep};

/// The message kind of an approver's digest ([`message_id_for`]).
pub const DIGEST: &str = "digest";

/// Account facts, looked up once per account per invocation.
pub(crate) type FactsCache = HashMap<String, Option<Account>>;

/// Who is asked about `proposal`: the deployment's routing applied to its account as Organizations describes it now.
/// None: nobody may approve anything there (no route and no default), or a routed deployment got a proposal that
/// names no account.
pub(crate) async fn audience_for<F: AccountFacts>(
    config: &RequestConfig,
    proposal: &Proposal,
    facts: &F,
    cache: &mut FactsCache,
) -> Result<Option<Audience>, FinopsError> {
    // No routing: recommend mode, where nobody is asked (and `ask` refuses before it gets here).
    let Some(routing) = &config.routing else { return Ok(None) };
    let Some(account) = &proposal.account else {
        if routing.routes.is_empty() {
            // The deployment's approvers for everything: no account needed.
            return Ok(routing.audience_for(&Account::bare("")));
        }
        tracing::warn!(
            resource_id = proposal.resource_id,
            "approvals are routed by account, and this proposal names none: nobody is asked, nothing is done"
        );
        return Ok(None);
    };
    let live = if routing.needs_account_facts() {
        if !cache.contains_key(&account.id) {
            let found = facts.account(&account.id).await?;
            cache.insert(account.id.clone(), found);
        }
        cache.get(&account.id).cloned().flatten()
    } else {
        None
    };
    Ok(routing.audience_for(&live.unwrap_or_else(|| Account::bare(&account.id))))
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
    /// Creates each proposal's approval record and asks its audience. `claim_id`: this delivery's (random), so the
    /// SDK's retry of a claim it made finds it its own.
    pub async fn ask(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        claim_id: &str,
        trace_header: Option<&str>,
    ) -> Result<AskApproversOutput, FinopsError> {
        let request: AskApproversRequest = serde_json::from_value(event).map_err(|e| {
            FinopsError::InvalidInput(format!("ask approvers expects {{runId, executionArn, proposals}}: {e}"))
        })?;
        validate_run_id(&request.run_id)?;
        if self.config.mode == DeploymentMode::Recommend {
            // The state machine never gets here in recommend mode; this step refuses anyway, so nothing that reaches
            // it (a hand-made execution, a future path) can ask a person to approve a stop.
            return Err(FinopsError::InvalidInput(
                "this deployment is in recommend mode: nobody is asked to approve anything".into(),
            ));
        }
        let key = self.key.key().await?;
        let mut cache = FactsCache::new();
        let mut asked: Vec<ApprovalRecord> = Vec::new();
        let mut unasked = Vec::new();
        for proposal in request.proposals {
            let Some(audience) = audience_for(&self.config, &proposal, &self.facts, &mut cache).await? else {
                tracing::warn!(
                    run_id = request.run_id,
                    resource_id = proposal.resource_id,
                    decision = "NOBODY_TO_ASK",
                    "no approver for this proposal's account: nobody is asked, nothing is done"
                );
                unasked.push(proposal.resource_id);
                continue;
            };
            let id = approval_id_for(&key, &request.run_id, &proposal.resource_id);
            let record = ApprovalRecord::pending(
                &id,
                proposal,
                &request.run_id,
                &request.execution_arn,
                audience,
                now.timestamp(),
                (now + Duration::seconds(self.config.window_seconds)).timestamp(),
            );
            // A retried step finds its records as they were: their audience and window stand.
            match self.records.claim_pending(&record).await? {
                Claim::Created => asked.push(record),
                Claim::Renewed(existing) => asked.push(existing),
                Claim::Settled(existing) => tracing::info!(
                    approval_id = id,
                    state = existing.state.as_str(),
                    "already answered before this delivery: not asked again"
                ),
            }
        }
        let execution_console = execution_console_url(&request.execution_arn);
        let region = asked.first().map_or("us-east-1", |r| r.proposal.region.as_str());
        let trace = trace_header.and_then(|h| trace_console_url(region, h));
        let mut refused = None;
        let by_recipient = crate::by_recipient(&asked);
        for (recipient, records) in &by_recipient {
            let claim = MessageClaim {
                message_id: message_id_for(&key, &request.run_id, DIGEST, recipient),
                run_id: request.run_id.clone(),
                expires_at: records.iter().map(|r| r.expires_at).max().unwrap_or(now.timestamp()),
                claim_id: claim_id.to_owned(),
            };
            let digest = || {
                let link = |r: &ApprovalRecord, action| {
                    ApprovalLink::sign(&key, &r.approval_id, action, r.expires_at, recipient).url(&self.config.base_url)
                };
                let items = records
                    .iter()
                    .map(|r| DigestItem {
                        proposal: &r.proposal,
                        audience: &r.audience,
                        approve: link(r, ApprovalAction::Approve),
                        deny: link(r, ApprovalAction::Deny),
                        snooze: link(r, ApprovalAction::Snooze),
                    })
                    .collect();
                let expires = records.iter().map(|r| r.expires_at).min().unwrap_or(now.timestamp());
                render_digest(&Digest {
                    recipient,
                    run_id: &request.run_id,
                    items,
                    snooze_days: self.config.snooze_days,
                    execution_console: &execution_console,
                    trace_console: trace.as_deref(),
                    expires_at_utc: &utc(expires, now),
                })
            };
            refused = self.mail_once(&claim, recipient, digest, "digest").await?.or(refused);
        }
        let slack_messages = self.ask_in_slack(&key, &asked).await;
        let owners_told = self.tell_owners(&key, &asked, now).await;
        if let Some(e) = refused {
            return Err(e);
        }
        for record in &asked {
            tracing::info!(
                run_id = record.run_id,
                resource_id = record.proposal.resource_id,
                approval_id = record.approval_id,
                approvers = record.audience.approvers.len(),
                because = record.audience.because,
                decision = "APPROVAL_REQUESTED",
                "approval requested"
            );
        }
        let mut summary = format!(
            "{} of {} proposal(s) asked: one message each to {} approver(s)",
            asked.len(),
            asked.len() + unasked.len(),
            by_recipient.len()
        );
        if slack_messages > 0 {
            summary.push_str(&format!("; {slack_messages} asked in Slack"));
        }
        if owners_told > 0 {
            summary.push_str(&format!("; {owners_told} owner(s) told"));
        }
        if !unasked.is_empty() {
            summary.push_str(&format!("; nobody may approve {} (no approver for their account)", unasked.join(", ")));
        }
        Ok(AskApproversOutput {
            asked: asked.len(),
            unasked,
            recipients: by_recipient.len(),
            slack_messages,
            owners_told,
            summary,
        })
    }

    /// Asks each approval in Slack too, once: a Block Kit message in its audience's channel (where the audience names
    /// Slack users who may click), its buttons carrying links signed for Slack, then the message's place on the
    /// record (a click decides only there). Slack down or refusing: email only. How many were posted.
    async fn ask_in_slack(&self, key: &[u8], asked: &[ApprovalRecord]) -> usize {
        let Some(slack) = &self.slack else { return 0 };
        let mut posted = 0;
        for record in asked.iter().filter(|r| r.slack.is_none()) {
            let Some(channel) = record.audience.slack_ask_channel() else { continue };
            match self.post_ask(slack, key, record, channel).await {
                Ok(at) => {
                    posted += 1;
                    tracing::info!(approval_id = record.approval_id, channel, ts = at.ts, "approval asked in Slack");
                }
                Err(e) => tracing::warn!(approval_id = record.approval_id, error = %e, "not asked in Slack"),
            }
        }
        posted
    }

    async fn post_ask(
        &self,
        slack: &S,
        key: &[u8],
        record: &ApprovalRecord,
        channel: &str,
    ) -> Result<SlackMessageRef, FinopsError> {
        let sign = |action| ApprovalLink::sign(key, &record.approval_id, action, record.expires_at, SLACK_RECIPIENT);
        let (approve, deny, snooze) =
            (sign(ApprovalAction::Approve), sign(ApprovalAction::Deny), sign(ApprovalAction::Snooze));
        let chart = record.proposal.daily.as_ref().map(|d| {
            format!(
                "{:<20} {}\n{:<20} {}",
                format!("{} per day:", d.cpu_label),
                spark(&d.cpu_percent, d.cpu_limit_percent, "%"),
                "network per day:",
                spark(&d.network_mb, d.network_limit_mb, "MB")
            )
        });
        let expires_at_utc = utc(record.expires_at, Utc::now());
        let message = finops_core::slack::ask_message(&finops_core::slack::AskMessage {
            proposal: &record.proposal,
            approve: &approve,
            deny: &deny,
            snooze: &snooze,
            snooze_days: self.config.snooze_days,
            expires_at_utc: &expires_at_utc,
            chart,
        });
        let at = slack.post(channel, &message).await?;
        self.records.mark_slack_message(&record.approval_id, &at).await?;
        Ok(at)
    }

    /// Tells each resource owner named by an owner tag (an address in the deployment's owner domains, and not one of
    /// the resource's approvers) of the proposals about their resources, once each, in one message: what is proposed
    /// and why, and one owner's keep-it link each (signed for them). A courtesy: a notice SES refuses is logged. How
    /// many owners were told.
    async fn tell_owners(&self, key: &[u8], asked: &[ApprovalRecord], now: DateTime<Utc>) -> usize {
        let Some(mailer) = &self.owners else { return 0 };
        let mut by_owner: BTreeMap<String, Vec<&ApprovalRecord>> = BTreeMap::new();
        for record in asked {
            // Tags are untrusted: only an address in the deployment's owner domains is mailed.
            let Some(owner) = record.owner_address().filter(|o| owner::in_domains(o, &self.config.owner_domains))
            else {
                continue;
            };
            // An owner who is one of its approvers already has every link.
            if record.audience.allows(&owner) {
                continue;
            }
            match self.records.claim_owner_notice(&record.approval_id, OwnerNotice::Asked).await {
                Ok(true) => by_owner.entry(owner).or_default().push(record),
                Ok(false) => {}
                Err(e) => tracing::warn!(approval_id = record.approval_id, error = %e, "owner notice not claimed"),
            }
        }
        let mut told = 0;
        for (owner, records) in &by_owner {
            let items: Vec<OwnerItem<'_>> = records
                .iter()
                .map(|r| OwnerItem {
                    proposal: &r.proposal,
                    keep: ApprovalLink::sign(key, &r.approval_id, ApprovalAction::OwnerSnooze, r.expires_at, owner)
                        .url(&self.config.base_url),
                })
                .collect();
            let expires = records.iter().map(|r| r.expires_at).min().unwrap_or(now.timestamp());
            let (subject, body) = render_owner_notice(owner, &items, self.config.snooze_days, &utc(expires, now));
            match mailer.send(owner, &subject, &body).await {
                Ok(()) => {
                    told += 1;
                    tracing::info!(resources = records.len(), decision = "OWNER_NOTIFIED", "an owner was told");
                }
                Err(e) => tracing::warn!(error = %e, "an owner's notice was not sent"),
            }
        }
        told
    }
}

pub(crate) fn utc(unix: i64, fallback: DateTime<Utc>) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0).unwrap_or(fallback).to_rfc3339_opts(SecondsFormat::Secs, true)
}
