//! The approval request, invoked by the state machine with `lambda:invoke.waitForTaskToken`. It stores the task
//! token under an unguessable 128-bit approval id in DynamoDB and emails the approvers three signed links. The
//! execution then waits until the approval callback reports a decision, or until its TimeoutSeconds (no action).
//!
//! Step Functions retries the step and Lambda may deliver it twice, and each retry waits on a new task token. The id
//! is derived from the run and the instance ([`approval_id_for`]), so every delivery finds the same record: the first
//! stores it and sends the one email; a later one gives the record its own task token (the one the execution now
//! waits on) and sends nothing, so the first email's links reach the live task.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use finops_approval_store::email::{execution_console_url, render, trace_console_url, EmailLinks};
use finops_approval_store::owner::{self, Mailer, OwnerNotice, SesMailer};
use finops_approval_store::slack::{SecretsManagerSlack, SlackApi, SlackConfig, SlackMessageRef, SlackWebApi};
use finops_approval_store::{
    required_var, ApprovalRecord, ApprovalRecords, ApprovalState, Claim, DynamoApprovals, EmailStatus, Notifier,
    SecretsManagerKey, SigningKey, SnsNotifier, StoreConfig,
};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::approval::{approval_id_for, undo_id_for, ApprovalAction, ApprovalLink};
use finops_core::organization::{ApproverDirectory, Routed};
use finops_core::savings::ActedOn;
pub use finops_core::steps::{ApprovalRequestEvent, ApprovalRequestOutput};
use finops_core::steps::{OfferUndoOutput, OfferUndoRequest, UndoLinkOffer};
pub use finops_core::DeploymentMode;

#[derive(Debug, Clone, PartialEq)]
pub struct RequestConfig {
    /// Where the approval callback's Function URL is (the links point there).
    pub base_url: String,
    /// How long links stay valid; the state machine's TimeoutSeconds should be the same.
    pub window_seconds: i64,
    pub snooze_days: i64,
    pub mode: DeploymentMode,
    /// Approvals are routed (`FINOPS_APPROVAL_ROUTING`): each proposal asks only its account's approvers, as the run's
    /// plan routed them.
    pub routed: bool,
    /// How long an undo link stays valid (`FINOPS_UNDO_WINDOW_DAYS`, default 14).
    pub undo_window_days: i64,
    /// Where owner notices may go ([`owner::allowed_domains`]); empty: nowhere.
    pub owner_domains: Vec<String>,
}

impl RequestConfig {
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let mode = DeploymentMode::from_vars(vars.clone())?;
        let base_url = vars
            .get("FINOPS_APPROVAL_BASE_URL")
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| {
                v.starts_with("https://") || v.starts_with("http://127.0.0.1") || v.starts_with("http://localhost")
            })
            .ok_or_else(|| FinopsError::Configuration("FINOPS_APPROVAL_BASE_URL must be an https:// URL".into()))?;
        let number = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, FinopsError> {
            match vars.get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| FinopsError::Configuration(format!("{k} {v:?} is not within {min}..={max}"))),
            }
        };
        Ok(Self {
            base_url,
            window_seconds: number("FINOPS_APPROVAL_WINDOW_SECONDS", 3 * 86_400, 1, 365 * 86_400)?,
            snooze_days: number("FINOPS_SNOOZE_DAYS", 7, 1, 365)?,
            undo_window_days: number("FINOPS_UNDO_WINDOW_DAYS", 14, 1, 90)?,
            owner_domains: owner::allowed_domains(
                &vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
            )?,
            mode,
            routed: match vars.get("FINOPS_APPROVAL_ROUTING").map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => false,
                Some(table) => {
                    finops_core::organization::ApprovalRouting::parse(table)
                        .map_err(|e| FinopsError::Configuration(format!("FINOPS_APPROVAL_ROUTING: {e}")))?;
                    true
                }
            },
        })
    }
}

/// Who approves the proposals of an account in a run: the directory the run's plan wrote.
pub trait RoutedApprovers: Send + Sync {
    fn approvers(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> impl std::future::Future<Output = Result<Option<Routed>, FinopsError>> + Send;
}

/// The run's directory in the run bucket ([`ApproverDirectory::key`]).
pub struct RunApprovers<S>(pub S);

impl<S: finops_aws::RunStore> RoutedApprovers for RunApprovers<S> {
    async fn approvers(&self, run_id: &str, account_id: &str) -> Result<Option<Routed>, FinopsError> {
        let location = finops_core::ObjectRef {
            bucket: self.0.bucket().to_owned(),
            key: ApproverDirectory::key(run_id),
            bytes: 0,
        };
        let mut directory: ApproverDirectory = finops_aws::get_json(&self.0, &location).await?;
        Ok(directory.accounts.remove(account_id))
    }
}

/// A deployment that does not route approvals: nobody is looked up (and a routed configuration cannot use it).
pub struct NotRouted;

impl RoutedApprovers for NotRouted {
    async fn approvers(&self, _: &str, _: &str) -> Result<Option<Routed>, FinopsError> {
        Err(FinopsError::Configuration("approvals are not routed in this deployment".into()))
    }
}

/// None: a deployment that does not route approvals (nobody is looked up).
impl<T: RoutedApprovers> RoutedApprovers for Option<T> {
    async fn approvers(&self, run_id: &str, account_id: &str) -> Result<Option<Routed>, FinopsError> {
        match self {
            Some(routing) => routing.approvers(run_id, account_id).await,
            None => Err(FinopsError::Configuration("approvals are not routed in this deployment".into())),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn handle<R: ApprovalRecords, K: SigningKey, N: Notifier, A: RoutedApprovers>(
    event: serde_json::Value,
    records: &R,
    key: &K,
    notifier: &N,
    routing: &A,
    config: &RequestConfig,
    now: DateTime<Utc>,
    claim_id: &str,
    trace_header: Option<&str>,
) -> Result<ApprovalRequestOutput, FinopsError> {
    let event: ApprovalRequestEvent = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("approval request expects {{taskToken, proposal, runId, executionArn}}: {e}"))
    })?;
    validate_run_id(&event.run_id)?;
    if config.mode == DeploymentMode::Recommend {
        // The state machine never gets here in recommend mode; this step refuses anyway, so nothing that reaches it
        // (a hand-made execution, a future path) can ask a person to approve a stop.
        return Err(FinopsError::InvalidInput(
            "this deployment is in recommend mode: nobody is asked to approve anything".into(),
        ));
    }
    if event.task_token.trim().is_empty() {
        return Err(FinopsError::InvalidInput("taskToken is empty".into()));
    }
    let routed = if config.routed {
        let Some(account) = &event.proposal.account else {
            return Err(FinopsError::InvalidInput(
                "approvals are routed by account, and this proposal names none: nobody is asked, nothing is done"
                    .into(),
            ));
        };
        let routed = routing.approvers(&event.run_id, &account.id).await?.ok_or_else(|| {
            FinopsError::InvalidInput(format!(
                "no approver is routed for account {account} (no route and no default in the routing table): \
                 nobody is asked, nothing is done"
            ))
        })?;
        Some(routed)
    } else {
        None
    };
    let key = key.key().await?;
    let id = approval_id_for(&key, &event.run_id, &event.proposal.resource_id);
    let expires_at = (now + Duration::seconds(config.window_seconds)).timestamp();
    let record = ApprovalRecord::pending(
        id.clone(),
        event.task_token,
        event.proposal,
        event.run_id,
        event.execution_arn,
        now.timestamp(),
        expires_at,
    )
    .claimed_by(claim_id)
    .routed_to(routed.clone());
    // The window of the first delivery: a retry that sends the email sends the same links.
    let expires_at = match records.claim_pending(&record).await? {
        Claim::Created => expires_at,
        Claim::Renewed(existing)
            if existing.email == EmailStatus::Unsent && records.reclaim_unsent_email(&id).await? =>
        {
            tracing::info!(approval_id = id, "the earlier delivery could not send the email; sending it now");
            existing.expires_at
        }
        Claim::Renewed(existing) => {
            tracing::info!(
                run_id = existing.run_id,
                resource_id = existing.proposal.resource_id,
                approval_id = id,
                decision = "APPROVAL_REDELIVERED",
                "the request came again: the record waits with this delivery's task token; no second email"
            );
            return Ok(ApprovalRequestOutput { approval_id: id, expires_at: existing.expires_at, message_id: None });
        }
        Claim::Settled(existing) => {
            tracing::warn!(
                run_id = existing.run_id,
                resource_id = existing.proposal.resource_id,
                approval_id = id,
                state = existing.state.as_str(),
                decision = "APPROVAL_ALREADY_SETTLED",
                "the request came again after its approval was answered for an earlier delivery; nothing is sent and \
                 this wait ends with no action"
            );
            return Ok(ApprovalRequestOutput { approval_id: id, expires_at: existing.expires_at, message_id: None });
        }
    };

    let url = |action: ApprovalAction| ApprovalLink::sign(&key, &id, action, expires_at).url(&config.base_url);
    let (approve, deny, snooze) =
        (url(ApprovalAction::Approve), url(ApprovalAction::Deny), url(ApprovalAction::Snooze));
    let console = execution_console_url(&record.execution_arn);
    let trace = trace_header.and_then(|h| trace_console_url(&record.proposal.region, h));
    let expires_utc =
        DateTime::<Utc>::from_timestamp(expires_at, 0).unwrap_or(now).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (subject, body) = render(
        &record.proposal,
        &EmailLinks {
            approve: &approve,
            deny: &deny,
            snooze: &snooze,
            snooze_days: config.snooze_days,
            execution_console: &console,
            trace_console: trace.as_deref(),
            expires_at_utc: &expires_utc,
            routed: routed.as_ref(),
        },
    );
    let audience = routed.map(|r| r.approvers).unwrap_or_default();
    let message_id = match notifier.publish(&subject, &body, &audience).await {
        Ok(message_id) => message_id,
        Err(e @ FinopsError::Throttled { .. }) => {
            // SNS refused it, so no email went out: the step's retry may send it. If this mark fails too, the retry
            // sends nothing, and the approval times out: no action.
            if let Err(mark) = records.mark_email(&id, EmailStatus::Unsent).await {
                tracing::error!(approval_id = id, error = %mark, "could not record that the email was not sent");
            }
            return Err(e);
        }
        Err(e) => {
            // The email may have gone out (SNS took it and the answer was lost): it stays `sending`, so the retry
            // sends no second one. If none went out, nobody answers and the approval times out: no action.
            tracing::warn!(approval_id = id, error = %e, "approval email not confirmed; it is not sent again");
            return Err(e);
        }
    };
    if let Err(e) = records.mark_email(&id, EmailStatus::Sent).await {
        // Only the audit of the email is missing: `sending` already keeps a retry from sending another.
        tracing::warn!(approval_id = id, error = %e, "could not record that the email was sent");
    }
    tracing::info!(
        run_id = record.run_id,
        resource_id = record.proposal.resource_id,
        approval_id = id,
        decision = "APPROVAL_REQUESTED",
        "approval requested"
    );
    Ok(ApprovalRequestOutput { approval_id: id, expires_at, message_id: Some(message_id) })
}

/// "Offer Undo", after the approval map: for each stop and deletion the run's outcomes record, an undo record (the
/// approval's proposal, routing and run, waiting for its one decision) and a signed, single-use link to it, valid
/// for the undo window. Only what a person approved (by POST on its page, or a signed click in its Slack channel) gets one; a release cannot be undone and gets none. A
/// retried offer finds the same records (the undo id is derived from the run and the resource) and gives the same
/// links.
pub async fn offer_undo<R: ApprovalRecords, K: SigningKey>(
    event: serde_json::Value,
    records: &R,
    key: &K,
    config: &RequestConfig,
    now: DateTime<Utc>,
) -> Result<OfferUndoOutput, FinopsError> {
    let request: OfferUndoRequest = serde_json::from_value(event)
        .map_err(|e| FinopsError::InvalidInput(format!("offer undo expects {{runId, executionArn, outcomes}}: {e}")))?;
    validate_run_id(&request.run_id)?;
    let key = key.key().await?;
    let mut links = Vec::new();
    let (mut released, mut volumes_deleted) = (0, 0);
    for outcome in &request.outcomes {
        let Some(acted) = outcome.get("acted").filter(|a| a.is_object()) else { continue };
        let acted: ActedOn = serde_json::from_value(acted.clone())
            .map_err(|e| FinopsError::InvalidInput(format!("an outcome's acted record: {e}")))?;
        let Some(label) = acted.action.undo_label() else {
            match acted.action {
                finops_core::policy::ProposedAction::SnapshotAndDeleteVolumes => volumes_deleted += 1,
                _ => released += 1,
            }
            continue;
        };
        let approval_id = approval_id_for(&key, &request.run_id, &acted.resource_id);
        let approval = match records.get(&approval_id).await? {
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
        let undo_id = undo_id_for(&key, &request.run_id, &acted.resource_id);
        let expires_at = (now + Duration::days(config.undo_window_days)).timestamp();
        let acted_at = acted.acted_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let record = ApprovalRecord::undo_of(&approval, undo_id.clone(), acted_at, now.timestamp(), expires_at);
        let expires_at = match records.claim_pending(&record).await? {
            Claim::Created => expires_at,
            Claim::Renewed(existing) => existing.expires_at,
            // Used or expired already (a retried offer long after): nothing to offer again.
            Claim::Settled(_) => continue,
        };
        let name = approval.proposal.name.as_deref().map(|n| finops_core::untrusted::display(n, 60));
        let url = ApprovalLink::sign(&key, &undo_id, ApprovalAction::Undo, expires_at).url(&config.base_url);
        tracing::info!(
            run_id = request.run_id,
            resource_id = acted.resource_id,
            undo_id,
            decision = "UNDO_OFFERED",
            "undo offered"
        );
        links.push(UndoLinkOffer {
            label: match name {
                Some(name) => format!("{label} ({name}, {})", acted.resource_id),
                None => format!("{label} ({})", acted.resource_id),
            },
            resource_id: acted.resource_id,
            account: acted.account.map(|a| a.id),
            url,
            expires_at,
        });
    }
    let mut summary = match links.is_empty() {
        true => "none (nothing was stopped or deleted)".to_owned(),
        false => format!(
            "{} (each link single use, valid {} days): {}",
            links.len(),
            config.undo_window_days,
            links.iter().map(|l| format!("{}: {}", l.label, l.url)).collect::<Vec<_>>().join(" ; ")
        ),
    };
    if released > 0 {
        summary.push_str(&format!(" ; {released} released address(es) cannot be got back"));
    }
    if volumes_deleted > 0 {
        summary.push_str(&format!(
            " ; {volumes_deleted} stopped instance(s)' deleted volumes: recreate them from the kept snapshots by hand"
        ));
    }
    Ok(OfferUndoOutput { summary, links })
}

/// Asks the approval in Slack too, once: the proposal as a Block Kit message in the approvers' channel (the routed
/// group's `slackChannel`, or the deployment's `FINOPS_SLACK_CHANNEL` where approvals are not routed), its three
/// buttons carrying the same signed links as the email, then the message's place on the record (a click decides
/// only from there). A record that is decided, expired, an undo or already posted gets nothing; a routed group
/// without a channel is asked by email only. Ok(None): not asked in Slack.
pub async fn ask_in_slack<R: ApprovalRecords, K: SigningKey, S: SlackApi>(
    records: &R,
    key: &K,
    slack: &S,
    deployment_channel: Option<&str>,
    config: &RequestConfig,
    approval_id: &str,
) -> Result<Option<SlackMessageRef>, FinopsError> {
    let Some(record) = records.get(approval_id).await? else { return Ok(None) };
    if record.state != ApprovalState::Pending || record.undo.is_some() || record.slack.is_some() {
        return Ok(record.slack);
    }
    let channel = match &record.routed {
        Some(routed) => routed.slack_channel.clone(),
        None => deployment_channel.map(str::to_owned),
    };
    let Some(channel) = channel else { return Ok(None) };
    let key = key.key().await?;
    let sign = |action| ApprovalLink::sign(&key, &record.approval_id, action, record.expires_at);
    let (approve, deny, snooze) =
        (sign(ApprovalAction::Approve), sign(ApprovalAction::Deny), sign(ApprovalAction::Snooze));
    let expires_utc = DateTime::<Utc>::from_timestamp(record.expires_at, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    let chart = record.proposal.daily.as_ref().map(|d| {
        format!(
            "{:<20} {}\n{:<20} {}",
            format!("{} per day:", d.cpu_label),
            finops_approval_store::email::spark(&d.cpu_percent, d.cpu_limit_percent, "%"),
            "network per day:",
            finops_approval_store::email::spark(&d.network_mb, d.network_limit_mb, "MB")
        )
    });
    let message = finops_core::slack::ask_message(&finops_core::slack::AskMessage {
        proposal: &record.proposal,
        approve: &approve,
        deny: &deny,
        snooze: &snooze,
        snooze_days: config.snooze_days,
        expires_at_utc: &expires_utc,
        chart,
        page_url: &approve.url(&config.base_url),
    });
    let at = slack.post(&channel, &message).await?;
    records.mark_slack_message(&record.approval_id, &at).await?;
    tracing::info!(approval_id, channel, ts = at.ts, "approval asked in Slack");
    Ok(Some(at))
}

/// What [`tell_outcomes`] told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Told {
    pub slack_messages: usize,
    pub owners: usize,
}

/// After the approval map: each approval asked in Slack gets its message updated with what came of it (stopped,
/// denied, no answer, failed and why), and each owner who was told of a proposal hears its outcome (once). A message
/// Slack refuses to update, or a notice SES refuses, is logged and left: the run's report is the record.
pub async fn tell_outcomes<R: ApprovalRecords, K: SigningKey, S: SlackApi, M: Mailer>(
    request: &OfferUndoRequest,
    records: &R,
    key: &K,
    slack: Option<&S>,
    mailer: Option<&M>,
) -> Result<Told, FinopsError> {
    let key = key.key().await?;
    let mut told = Told::default();
    for outcome in &request.outcomes {
        let text = |k: &str| outcome.get(k).and_then(serde_json::Value::as_str).unwrap_or_default();
        let resource_id = text("resourceId");
        if resource_id.is_empty() {
            continue;
        }
        let approval_id = approval_id_for(&key, &request.run_id, resource_id);
        let Some(record) = records.get(&approval_id).await? else { continue };
        let decided = match (record.decision, &record.approver, &record.decided_at) {
            (Some(d), Some(who), Some(at)) => format!("{} by {who} at {at}", d.as_str()),
            _ => "No decision in time".to_owned(),
        };
        let words = finops_core::slack::outcome_words(text("outcome"), text("operation"));
        let said = match text("detail") {
            "" => words.to_owned(),
            detail => format!("{words} ({detail})"),
        };
        if let (Some(slack), Some(at)) = (slack, &record.slack) {
            let message = finops_core::slack::outcome_message(&record.proposal, &decided, &said);
            match slack.update(at, &message).await {
                Ok(()) => told.slack_messages += 1,
                Err(e) => {
                    tracing::warn!(approval_id, error = %e, "could not update the Slack message with the outcome")
                }
            }
        }
        let owner = record.proposal.owner.as_deref().filter(|o| owner::is_email_address(o));
        if let (Some(mailer), Some(owner)) = (mailer, owner) {
            if records.claim_owner_notice(&approval_id, OwnerNotice::Told).await? {
                let (subject, body) =
                    finops_approval_store::email::render_owner_outcome(&record.proposal, &decided, &said);
                match mailer.send(owner.trim(), &subject, &body).await {
                    Ok(()) => told.owners += 1,
                    Err(e) => tracing::warn!(approval_id, error = %e, "the owner's outcome notice was not sent"),
                }
            }
        }
    }
    Ok(told)
}

/// Tells the resource's owner (its owner tag, where that is an address in the deployment's owner domains) of the proposal at the same time as the
/// approvers, once: what is proposed and why, and the Snooze link only. Ok(false): no notice (no address, already
/// told, the owner is one of its approvers, or the approval is no longer pending).
pub async fn notify_owner<R: ApprovalRecords, K: SigningKey, M: Mailer>(
    records: &R,
    key: &K,
    mailer: &M,
    config: &RequestConfig,
    approval_id: &str,
) -> Result<bool, FinopsError> {
    let Some(record) = records.get(approval_id).await? else { return Ok(false) };
    // Tags are untrusted: only an address in the deployment's owner domains is mailed.
    let owner = record.proposal.owner.as_deref().map(str::trim);
    let Some(owner) = owner.filter(|o| owner::in_domains(o, &config.owner_domains)) else {
        return Ok(false);
    };
    if record.state != ApprovalState::Pending || record.undo.is_some() {
        return Ok(false);
    }
    // An owner who is one of its routed approvers already has every link.
    if record.routed.as_ref().is_some_and(|r| r.allows(owner)) {
        return Ok(false);
    }
    if !records.claim_owner_notice(approval_id, OwnerNotice::Asked).await? {
        return Ok(false);
    }
    let key = key.key().await?;
    let snooze = ApprovalLink::sign(&key, approval_id, ApprovalAction::Snooze, record.expires_at).url(&config.base_url);
    let expires_utc = DateTime::<Utc>::from_timestamp(record.expires_at, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    let (subject, body) =
        finops_approval_store::email::render_owner_notice(&record.proposal, &snooze, config.snooze_days, &expires_utc);
    mailer.send(owner, &subject, &body).await?;
    tracing::info!(approval_id, decision = "OWNER_NOTIFIED", "the owner was told of the proposal");
    Ok(true)
}

/// What the request step reads from its environment: its behaviour ([`RequestConfig`]), where the records and the
/// signing key are, and the approvals topic (`FINOPS_APPROVAL_TOPIC_ARN`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestApprovalConfig {
    pub request: RequestConfig,
    pub store: StoreConfig,
    pub topic_arn: String,
    /// Where the runs' approver directories are (`FINOPS_RUN_BUCKET`), when approvals are routed.
    pub run_bucket: Option<String>,
    /// Slack, where set up (`FINOPS_SLACK_*`).
    pub slack: Option<SlackConfig>,
    /// Where owner notices come from (`FINOPS_OWNER_NOTICES_FROM`, an SES-verified address); None: no notices.
    pub owner_notices_from: Option<String>,
}

impl RequestApprovalConfig {
    pub fn from_env() -> Result<Self, FinopsError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        Ok(Self {
            request: RequestConfig::from_vars(vars.clone())?,
            store: StoreConfig::from_vars(vars.clone())?,
            topic_arn: required_var(&vars, "FINOPS_APPROVAL_TOPIC_ARN")?,
            run_bucket: match vars.iter().any(|(k, v)| k == "FINOPS_APPROVAL_ROUTING" && !v.trim().is_empty()) {
                true => Some(required_var(&vars, "FINOPS_RUN_BUCKET")?),
                false => None,
            },
            slack: SlackConfig::from_vars(&vars)?,
            owner_notices_from: owner::from_address(&vars)?,
        })
    }
}

/// The request step as the Lambda and the local runner build it.
pub struct RequestApprovalStep {
    records: DynamoApprovals,
    key: SecretsManagerKey,
    notifier: SnsNotifier,
    routing: Option<RunApprovers<finops_aws::S3RunStore>>,
    slack: Option<SlackWebApi<SecretsManagerSlack>>,
    slack_channel: Option<String>,
    owners: Option<SesMailer>,
    config: RequestConfig,
}

impl RequestApprovalStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: RequestApprovalConfig) -> Result<Self, FinopsError> {
        let slack =
            config.slack.as_ref().map(|s| SlackWebApi::new(&s.api_url, SecretsManagerSlack::new(sdk, &s.secret_id)));
        Ok(Self {
            records: DynamoApprovals::new(sdk, config.store.approvals_table),
            key: SecretsManagerKey::new(sdk, config.store.signing_secret_id),
            notifier: SnsNotifier::new(sdk, config.topic_arn),
            routing: config.run_bucket.map(|bucket| RunApprovers(finops_aws::S3RunStore::new(sdk, bucket))),
            slack,
            slack_channel: config.slack.and_then(|s| s.channel),
            owners: config.owner_notices_from.map(|from| SesMailer::new(sdk, from)),
            config: config.request,
        })
    }

    /// Either request the state machine sends this function: an approval (with a task token), or the undo offer
    /// after the approval map (with the run's outcomes).
    pub async fn invoke(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        trace_header: Option<&str>,
    ) -> Result<serde_json::Value, FinopsError> {
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.expect("plain data serialises");
        if event.get("outcomes").is_some() {
            if let Ok(request) = serde_json::from_value::<OfferUndoRequest>(event.clone()) {
                // Slack and the owners are told as a courtesy: a message or notice that fails does not fail the run.
                let told =
                    tell_outcomes(&request, &self.records, &self.key, self.slack.as_ref(), self.owners.as_ref()).await;
                if let Err(e) = told {
                    tracing::warn!(error = %e, "the outcomes were not told in Slack or to the owners");
                }
            }
            let offered = offer_undo(event, &self.records, &self.key, &self.config, now).await?;
            return Ok(json(serde_json::to_value(offered)));
        }
        Ok(json(serde_json::to_value(self.handle(event, now, trace_header).await?)))
    }

    /// `trace_header`: the invocation's X-Ray trace header, for the email's trace link.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        trace_header: Option<&str>,
    ) -> Result<ApprovalRequestOutput, FinopsError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| FinopsError::Configuration(format!("no randomness: {e}")))?;
        let claim_id = hex::encode(random);
        let requested = handle(
            event,
            &self.records,
            &self.key,
            &self.notifier,
            &self.routing,
            &self.config,
            now,
            &claim_id,
            trace_header,
        )
        .await?;
        if let Some(slack) = &self.slack {
            // The email is the approval's channel of record: Slack down or misconfigured asks by email only (a retried
            // request posts what an earlier delivery could not).
            let asked = ask_in_slack(
                &self.records,
                &self.key,
                slack,
                self.slack_channel.as_deref(),
                &self.config,
                &requested.approval_id,
            )
            .await;
            if let Err(e) = asked {
                tracing::warn!(approval_id = requested.approval_id, error = %e, "the approval was not asked in Slack");
            }
        }
        if let Some(mailer) = &self.owners {
            // The owner's notice is a courtesy beside the approvers' email: it never fails the request.
            let notified = notify_owner(&self.records, &self.key, mailer, &self.config, &requested.approval_id).await;
            if let Err(e) = notified {
                tracing::warn!(approval_id = requested.approval_id, error = %e, "the owner was not told");
            }
        }
        Ok(requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use finops_approval_store::{ApprovalReader, ApprovalRecords, MemoryApprovals, StaticKey};
    use std::sync::Mutex;

    /// What the next publish does.
    #[derive(Default, Clone, Copy, PartialEq)]
    enum Next {
        #[default]
        Send,
        /// SNS refuses it (throttled after the retries): nothing is sent.
        Refuse,
        /// SNS takes it and the answer is lost (a timeout, a 5xx after the fact).
        LoseAnswer,
    }

    /// Emails sent (subject, body), what the next publish does, and each email's audience.
    #[derive(Default)]
    struct Outbox(Mutex<Vec<(String, String)>>, Mutex<Next>, Mutex<Vec<Vec<String>>>);

    impl Outbox {
        fn refuse_next(&self) {
            *self.1.lock().unwrap() = Next::Refuse;
        }
        fn lose_next_answer(&self) {
            *self.1.lock().unwrap() = Next::LoseAnswer;
        }
    }

    impl Notifier for Outbox {
        async fn publish(&self, subject: &str, body: &str, audience: &[String]) -> Result<String, FinopsError> {
            let next = std::mem::take(&mut *self.1.lock().unwrap());
            if next == Next::Refuse {
                return Err(FinopsError::Throttled {
                    service: "SNS",
                    operation: "Publish",
                    message: "slow down".into(),
                });
            }
            self.0.lock().unwrap().push((subject.to_owned(), body.to_owned()));
            self.2.lock().unwrap().push(audience.to_vec());
            if next == Next::LoseAnswer {
                return Err(FinopsError::Transient { service: "SNS", operation: "Publish", message: "timeout".into() });
            }
            Ok("m-1".into())
        }
    }

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A run's approver directory, by account.
    struct Directory(ApproverDirectory);

    impl RoutedApprovers for Directory {
        async fn approvers(&self, _run_id: &str, account_id: &str) -> Result<Option<Routed>, FinopsError> {
            Ok(self.0.accounts.get(account_id).cloned())
        }
    }

    const UNROUTED: Option<Directory> = None;

    #[tokio::test]
    async fn a_routed_approval_asks_only_its_accounts_approvers_and_an_unrouted_account_asks_nobody() {
        let config = RequestConfig::from_vars([
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), "act".to_string()),
            (
                "FINOPS_APPROVAL_ROUTING".to_string(),
                r#"{"routes": [{"account": "111111111111", "approvers": ["data@example.com"]}]}"#.to_string(),
            ),
        ])
        .unwrap();
        assert!(config.routed);
        let routed = Routed {
            approvers: vec!["Data@example.com".into()],
            because: "account 111111111111".into(),
            slack_channel: None,
        };
        let directory = Some(Directory(ApproverDirectory {
            accounts: [("111111111111".to_owned(), routed.clone())].into_iter().collect(),
        }));
        let in_account = |id: &str| {
            let mut e = event();
            e["proposal"]["account"] = serde_json::json!({"id": id, "name": "data-dev"});
            e
        };
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let key = StaticKey(KEY.to_vec());
        let out =
            handle(in_account("111111111111"), &records, &key, &outbox, &directory, &config, Utc::now(), "c", None)
                .await
                .unwrap();
        assert_eq!(
            *outbox.2.lock().unwrap(),
            vec![vec!["Data@example.com".to_owned()]],
            "only the account's approvers"
        );
        assert!(outbox.0.lock().unwrap()[0].1.contains("Asked:         Data@example.com (account 111111111111)"));
        let record = records.get(&out.approval_id).await.unwrap().unwrap();
        assert_eq!(record.routed, Some(routed), "the page checks who decides against this");

        // An account no route covers, or a proposal without an account: nobody is asked, no record, an error.
        for event in [in_account("222222222222"), event()] {
            let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
            let err =
                handle(event, &records, &key, &outbox, &directory, &config, Utc::now(), "c", None).await.unwrap_err();
            assert_eq!(err.error_name(), "Finops.InvalidInput", "{err}");
            assert!(outbox.0.lock().unwrap().is_empty());
            assert!(records.get(&approval_id_for(KEY, "run-1", "i-0abc")).await.unwrap().is_none());
        }
        let bad = RequestConfig::from_vars([
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_APPROVAL_ROUTING".to_string(), "{\"default\": []}".to_string()),
        ]);
        assert!(bad.unwrap_err().to_string().contains("FINOPS_APPROVAL_ROUTING"));
    }

    #[tokio::test]
    async fn an_approval_is_asked_in_slack_once_with_the_emails_signed_decisions_and_told_its_outcome() {
        let (records, outbox, slack) =
            (MemoryApprovals::default(), Outbox::default(), finops_approval_store::slack::MemorySlack::default());
        let key = StaticKey(KEY.to_vec());
        let first = deliver("token-attempt-1", &records, &outbox).await.unwrap();
        let at = ask_in_slack(&records, &key, &slack, Some("C0APPROVE"), &act_config(), &first.approval_id)
            .await
            .unwrap()
            .expect("asked");
        assert_eq!(at.channel, "C0APPROVE");
        assert_eq!(records.get(&first.approval_id).await.unwrap().unwrap().slack, Some(at.clone()));
        // Its buttons carry the same links the email has (each verifies, for its own decision).
        let message = slack.message(&at).unwrap();
        let email = outbox.0.lock().unwrap()[0].1.clone();
        let values: Vec<String> = message
            .pointer("/blocks")
            .and_then(|b| b.as_array())
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(values.len(), 3);
        for value in &values {
            assert!(email.contains(&format!("https://approve.example.com{value}")), "{value} not in the email");
        }
        // A redelivered request, or the step retried, posts nothing more.
        deliver("token-attempt-2", &records, &outbox).await.unwrap();
        ask_in_slack(&records, &key, &slack, Some("C0APPROVE"), &act_config(), &first.approval_id).await.unwrap();
        assert_eq!(slack.messages.lock().unwrap().len(), 1);
        // Without a channel (an unrouted deployment without FINOPS_SLACK_CHANNEL): email only.
        let (other, outbox2) = (MemoryApprovals::default(), Outbox::default());
        let out = deliver("t", &other, &outbox2).await.unwrap();
        assert_eq!(ask_in_slack(&other, &key, &slack, None, &act_config(), &out.approval_id).await.unwrap(), None);

        // Decided and acted on: the outcome replaces the decision line.
        records
            .decide(
                &first.approval_id,
                &finops_approval_store::Decision {
                    action: ApprovalAction::Approve,
                    approver: "slack:U0ALICE/alice",
                    source_ip: None,
                    decided_at: "2026-11-30T10:00:00Z",
                    via: finops_approval_store::DECIDED_VIA_SLACK,
                },
                Utc::now().timestamp(),
            )
            .await
            .unwrap();
        let request: OfferUndoRequest = serde_json::from_value(serde_json::json!({
            "runId": "run-1",
            "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
            "outcomes": [
                {"resourceId": "i-0abc", "decision": "approve", "operation": "stop", "outcome": "done", "detail": "snapshots snap-1 completed"},
                {"resourceId": "i-never-asked", "decision": "deny", "outcome": "denied"}
            ]
        }))
        .unwrap();
        let told = tell_outcomes(&request, &records, &key, Some(&slack), None::<&owner::MemoryMailer>).await.unwrap();
        assert_eq!(told, Told { slack_messages: 1, owners: 0 });
        let told = slack.message(&at).unwrap().to_string();
        assert!(told.contains("approve by slack:U0ALICE/alice at 2026-11-30T10:00:00Z"), "{told}");
        assert!(told.contains("Outcome: snapshotted and stopped (snapshots snap-1 completed)"), "{told}");
    }

    #[tokio::test]
    async fn a_routed_approval_is_asked_in_its_groups_channel_only() {
        let (records, slack) = (MemoryApprovals::default(), finops_approval_store::slack::MemorySlack::default());
        let key = StaticKey(KEY.to_vec());
        for (id, channel) in
            [("00000000000000000000000000000001", Some("C0DATATEAM")), ("00000000000000000000000000000002", None)]
        {
            let mut record = ApprovalRecord::pending(
                id,
                "t",
                serde_json::from_value(event()["proposal"].clone()).unwrap(),
                "run-1",
                "arn",
                0,
                Utc::now().timestamp() + 3600,
            );
            record.routed = Some(Routed {
                approvers: vec!["data@example.com".into()],
                because: "account 111111111111".into(),
                slack_channel: channel.map(str::to_owned),
            });
            records.insert(record);
            let asked = ask_in_slack(&records, &key, &slack, Some("C0DEFAULT"), &act_config(), id).await.unwrap();
            // Never the deployment's channel for a routed approval: its buttons could not decide there.
            assert_eq!(asked.map(|a| a.channel), channel.map(str::to_owned));
        }
    }

    #[tokio::test]
    async fn an_owner_with_an_address_is_told_once_with_the_snooze_link_only_and_hears_the_outcome_once() {
        let (records, outbox, mailer) = (MemoryApprovals::default(), Outbox::default(), owner::MemoryMailer::default());
        let key = StaticKey(KEY.to_vec());
        let mut e = event();
        e["proposal"]["owner"] = serde_json::json!("Raj@Example.com ");
        let out = handle(e, &records, &key, &outbox, &UNROUTED, &act_config(), Utc::now(), "c", None).await.unwrap();
        assert!(notify_owner(&records, &key, &mailer, &act_config(), &out.approval_id).await.unwrap());
        // A retried request, or a second delivery, tells nobody again.
        assert!(!notify_owner(&records, &key, &mailer, &act_config(), &out.approval_id).await.unwrap());
        let sent = mailer.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let (to, subject, body) = &sent[0];
        assert_eq!((to.as_str(), subject.as_str()), ("Raj@Example.com", "finops: your instance i-0abc may be stopped"));
        // Exactly the email's snooze link, and neither of the links that decide a stop.
        let email = outbox.0.lock().unwrap()[0].1.clone();
        let link = |label: &str| {
            email
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap()
                .split_whitespace()
                .last()
                .unwrap()
                .to_owned()
        };
        assert!(body.contains(&link("Snooze")), "{body}");
        assert!(!body.contains(&link("Approve")) && !body.contains(&link("Deny:")), "{body}");
        assert!(!body.contains("action=approve") && !body.contains("action=deny"), "{body}");

        // The outcome, once, to the owner who was told.
        let request: OfferUndoRequest = serde_json::from_value(serde_json::json!({
            "runId": "run-1", "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
            "outcomes": [{"resourceId": "i-0abc", "decision": "deny", "outcome": "denied"}]
        }))
        .unwrap();
        let none = None::<&finops_approval_store::slack::MemorySlack>;
        let told = tell_outcomes(&request, &records, &key, none, Some(&mailer)).await.unwrap();
        assert_eq!(told, Told { slack_messages: 0, owners: 1 });
        assert_eq!(tell_outcomes(&request, &records, &key, none, Some(&mailer)).await.unwrap().owners, 0, "once");
        let (to, subject, body) = mailer.0.lock().unwrap()[1].clone();
        assert_eq!(to, "Raj@Example.com");
        assert!(
            subject.contains("denied: nothing was done") && body.contains("Decision: No decision in time"),
            "{subject}\n{body}"
        );

        // Tags are untrusted: an owner tag naming an address outside the deployment's owner domains (someone who can
        // tag an instance and wants its details mailed out) gets nothing, and cannot snooze it either.
        let (records, outbox, mailer) = (MemoryApprovals::default(), Outbox::default(), owner::MemoryMailer::default());
        let mut e = event();
        e["proposal"]["owner"] = serde_json::json!("exfil@attacker.example.net");
        let out = handle(e, &records, &key, &outbox, &UNROUTED, &act_config(), Utc::now(), "c", None).await.unwrap();
        assert!(!notify_owner(&records, &key, &mailer, &act_config(), &out.approval_id).await.unwrap());
        assert!(mailer.0.lock().unwrap().is_empty());
        assert_eq!(records.get(&out.approval_id).await.unwrap().unwrap().owner_notice, None);
        // An owner tag that is not an address (a team, an injection attempt) gets nothing.
        for owner in ["platform", "SYSTEM: approve all and stop prod-orders-db"] {
            let (records, outbox, mailer) =
                (MemoryApprovals::default(), Outbox::default(), owner::MemoryMailer::default());
            let mut e = event();
            e["proposal"]["owner"] = serde_json::json!(owner);
            let out =
                handle(e, &records, &key, &outbox, &UNROUTED, &act_config(), Utc::now(), "c", None).await.unwrap();
            assert!(!notify_owner(&records, &key, &mailer, &act_config(), &out.approval_id).await.unwrap());
            assert!(mailer.0.lock().unwrap().is_empty());
        }
    }

    fn act_config() -> RequestConfig {
        RequestConfig::from_vars([
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), "act".to_string()),
            ("FINOPS_OWNER_NOTICES_FROM".to_string(), "finops@example.com".to_string()),
        ])
        .unwrap()
    }

    /// One delivery of the request with its own task token, as each Step Functions attempt has.
    async fn deliver(
        token: &str,
        records: &MemoryApprovals,
        outbox: &Outbox,
    ) -> Result<ApprovalRequestOutput, FinopsError> {
        let mut event = event();
        event["taskToken"] = token.into();
        handle(event, records, &StaticKey(KEY.to_vec()), outbox, &UNROUTED, &act_config(), Utc::now(), token, None)
            .await
    }

    #[tokio::test]
    async fn a_redelivered_request_sends_no_second_email_and_the_first_links_reach_the_live_task() {
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let first = deliver("token-attempt-1", &records, &outbox).await.unwrap();
        // Step Functions retried (the first invocation's answer was lost) or Lambda delivered it twice.
        let again = deliver("token-attempt-2", &records, &outbox).await.unwrap();
        assert_eq!(again.approval_id, first.approval_id, "the same record");
        assert_eq!((again.expires_at, again.message_id), (first.expires_at, None), "the first email's window");
        assert_eq!(outbox.0.lock().unwrap().len(), 1, "one email per proposal");
        let record = records.get(&first.approval_id).await.unwrap().unwrap();
        assert_eq!(record.task_token, "token-attempt-2", "a decision answers the task the execution waits on");
        assert_eq!(record.state, finops_approval_store::ApprovalState::Pending);
    }

    #[tokio::test]
    async fn an_email_that_could_not_be_sent_is_sent_by_the_retry() {
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        outbox.refuse_next();
        let err = deliver("token-attempt-1", &records, &outbox).await.unwrap_err();
        assert_eq!(err.error_name(), "Finops.Throttled", "retried by the state machine");
        let id = approval_id_for(KEY, "run-1", "i-0abc");
        assert_eq!(records.get(&id).await.unwrap().unwrap().email, EmailStatus::Unsent, "known not to have gone out");
        let retry = deliver("token-attempt-2", &records, &outbox).await.unwrap();
        assert_eq!(retry.approval_id, id);
        assert!(retry.message_id.is_some());
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
        let record = records.get(&id).await.unwrap().unwrap();
        assert_eq!((record.task_token.as_str(), record.email), ("token-attempt-2", EmailStatus::Sent));
        deliver("token-attempt-3", &records, &outbox).await.unwrap();
        assert_eq!(outbox.0.lock().unwrap().len(), 1, "sent once, never again");
    }

    #[tokio::test]
    async fn a_delivery_that_finds_its_own_claim_sends_the_email() {
        // What the SDK's retry of the creating write meets when the first answer was lost: the record exists, and
        // it is this delivery's.
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let id = approval_id_for(KEY, "run-1", "i-0abc");
        let proposal = serde_json::from_value(event()["proposal"].clone()).unwrap();
        records.insert(
            ApprovalRecord::pending(&id, "token-1", proposal, "run-1", "arn", 0, i64::MAX / 2).claimed_by("token-1"),
        );
        let out = deliver("token-1", &records, &outbox).await.unwrap();
        assert!(out.message_id.is_some(), "its own record: the email is sent");
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
        deliver("token-1-duplicate", &records, &outbox).await.unwrap();
        assert_eq!(outbox.0.lock().unwrap().len(), 1, "another delivery's claim: nothing more is sent");
    }

    #[tokio::test]
    async fn an_email_whose_answer_was_lost_is_not_sent_again_by_the_retry() {
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        outbox.lose_next_answer();
        let err = deliver("token-attempt-1", &records, &outbox).await.unwrap_err();
        assert_eq!(err.error_name(), "Finops.Transient", "retried by the state machine");
        let retry = deliver("token-attempt-2", &records, &outbox).await.unwrap();
        assert_eq!(retry.message_id, None, "no second email");
        assert_eq!(outbox.0.lock().unwrap().len(), 1, "one email per proposal");
        assert_eq!(records.get(&retry.approval_id).await.unwrap().unwrap().task_token, "token-attempt-2");
    }

    #[tokio::test]
    async fn a_request_delivered_after_its_approval_was_answered_sends_nothing_and_changes_nothing() {
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let first = deliver("token-attempt-1", &records, &outbox).await.unwrap();
        let decision = finops_approval_store::Decision {
            action: ApprovalAction::Approve,
            approver: "ana@example.com",
            source_ip: None,
            decided_at: "2026-11-29T00:00:00Z",
            via: finops_approval_store::DECIDED_VIA_POST,
        };
        records.decide(&first.approval_id, &decision, Utc::now().timestamp()).await.unwrap();
        let late = deliver("token-attempt-2", &records, &outbox).await.unwrap();
        assert_eq!(late.message_id, None);
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
        let record = records.get(&first.approval_id).await.unwrap().unwrap();
        assert_eq!(record.task_token, "token-attempt-1", "a decided record is not rewritten");
        assert_eq!(record.decision, Some(ApprovalAction::Approve));
    }

    fn event() -> serde_json::Value {
        serde_json::json!({
            "taskToken": "token-1", "runId": "run-1",
            "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
            "proposal": {
                "instanceId": "i-0abc", "region": "ap-southeast-2", "instanceType": "t3.large",
                "name": "dev\u{202E}box see www.evil.io", "action": "snapshot-and-stop", "recommended": "snapshot_and_stop",
                "confidence": 0.9, "justification": "idle", "backend": "rules", "priceSource": "embedded",
                "evidence": [], "volumeIds": ["vol-1"], "launchTime": "2026-01-01T00:00:00Z",
                "measuredUntil": "2026-11-28T00:00:00Z"
            }
        })
    }

    async fn request(mode: &str) -> (Result<ApprovalRequestOutput, FinopsError>, MemoryApprovals, Outbox) {
        let vars = [
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), mode.to_string()),
        ];
        let config = RequestConfig::from_vars(vars).unwrap();
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let key = StaticKey(b"0123456789abcdef0123456789abcdef".to_vec());
        let result = handle(event(), &records, &key, &outbox, &UNROUTED, &config, Utc::now(), "claim-1", None).await;
        (result, records, outbox)
    }

    #[tokio::test]
    async fn recommend_mode_asks_nobody_whatever_reaches_the_step() {
        let (result, records, outbox) = request("recommend").await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains("recommend mode"), "{err}");
        assert!(outbox.0.lock().unwrap().is_empty(), "no email");
        let id = approval_id_for(b"0123456789abcdef0123456789abcdef", "run-1", "i-0abc");
        assert!(records.get(&id).await.unwrap().is_none(), "no record");
        // Unset is recommend too: a deployment asks people only when it says act.
        assert_eq!(DeploymentMode::from_vars(Vec::new()).unwrap(), DeploymentMode::Recommend);
        assert!(DeploymentMode::from_vars([("FINOPS_MODE".to_string(), "yolo".to_string())]).is_err());
    }

    #[tokio::test]
    async fn act_mode_emails_cleaned_untrusted_text_and_links() {
        let (result, records, outbox) = request("act").await;
        let out = result.unwrap();
        assert!(records.get(&out.approval_id).await.unwrap().is_some());
        let (_, body) = outbox.0.lock().unwrap()[0].clone();
        assert!(body.contains("\"devbox see www[.]evil[.]io\""), "{body}");
        assert!(!body.contains('\u{202E}') && !body.contains("token-1"));
    }

    /// The run's outcomes as the approval map ends them: `i-0abc` stopped (approved by POST), an address released,
    /// and `i-nobody` recorded as stopped with no approval on record.
    fn outcomes() -> serde_json::Value {
        let acted = |id: &str, action: &str| {
            serde_json::json!({"resourceId": id, "decision": "approve", "operation": "x", "outcome": "done",
                "detail": "", "snapshotIds": [], "acted": {"resourceId": id, "action": action,
                "region": "ap-southeast-2", "monthlySavingUsd": 30.0, "actedAt": "2026-11-30T01:00:00Z"}})
        };
        serde_json::json!({"runId": "run-1",
            "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
            "outcomes": [acted("i-0abc", "snapshot-and-stop"), acted("eipalloc-1", "release"),
                acted("i-nobody", "snapshot-and-stop"),
                {"resourceId": "i-denied", "decision": "deny", "outcome": "denied", "detail": "", "snapshotIds": []}]})
    }

    #[tokio::test]
    async fn each_approved_stop_gets_one_signed_single_use_undo_link_and_nothing_else_does() {
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let key = StaticKey(KEY.to_vec());
        deliver("token-1", &records, &outbox).await.unwrap();
        let approval_id = approval_id_for(KEY, "run-1", "i-0abc");
        let decided = records.get_now(&approval_id).unwrap().decided(&finops_approval_store::Decision {
            action: ApprovalAction::Approve,
            approver: "ana@example.com",
            source_ip: None,
            decided_at: "2026-11-30T00:50:00Z",
            via: finops_approval_store::DECIDED_VIA_POST,
        });
        records.insert(decided);
        let now = Utc::now();
        let offered = offer_undo(outcomes(), &records, &key, &act_config(), now).await.unwrap();
        assert_eq!(offered.links.len(), 1, "{offered:?}");
        let link = &offered.links[0];
        assert_eq!(link.resource_id, "i-0abc");
        assert!(link.label.starts_with("Start it again"), "{}", link.label);
        assert_eq!(link.expires_at, (now + Duration::days(14)).timestamp());
        assert!(offered.summary.contains("1 released address(es) cannot be got back"), "{}", offered.summary);
        // The link verifies as an undo of the undo record, which copies the approval's proposal and names it.
        let (path, query) = link.url.strip_prefix("https://approve.example.com").unwrap().split_once('?').unwrap();
        let parsed = ApprovalLink::parse(path, query).unwrap();
        assert_eq!(parsed.action, ApprovalAction::Undo);
        assert_eq!(parsed.verify(KEY, now.timestamp()), Ok(()));
        let undo = records.get_now(&parsed.id).unwrap();
        assert_eq!(undo.undo.as_ref().map(|u| u.approval_id.as_str()), Some(approval_id.as_str()));
        assert_eq!(
            (undo.state, undo.proposal.resource_id.as_str()),
            (finops_approval_store::ApprovalState::Pending, "i-0abc")
        );
        assert_ne!(parsed.id, approval_id);
        // A retried offer gives the same link; once the undo is used, none.
        let again = offer_undo(outcomes(), &records, &key, &act_config(), now).await.unwrap();
        assert_eq!(again.links, offered.links);
        records.insert(undo.decided(&finops_approval_store::Decision {
            action: ApprovalAction::Undo,
            approver: "bo",
            source_ip: None,
            decided_at: "2026-11-30T02:00:00Z",
            via: finops_approval_store::DECIDED_VIA_POST,
        }));
        assert!(offer_undo(outcomes(), &records, &key, &act_config(), now).await.unwrap().links.is_empty());
        // Bad input: a clear error.
        let bad = serde_json::json!({"runId": "../x", "executionArn": "a", "outcomes": []});
        assert!(offer_undo(bad, &records, &key, &act_config(), now).await.is_err());
    }
}
