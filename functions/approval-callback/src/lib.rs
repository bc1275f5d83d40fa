//! The approval callback. Approvers reach it from the email's links.
//!
//! - `GET /approvals/<id>?action&to&exp&sig` shows what is proposed and why, and the one decision its link is for, as
//!   its recipient (`to`, signed with the rest), and changes nothing: mail security scanners fetch every link before a
//!   person sees it. It shows no other link.
//! - `POST` (its button) verifies the signature in constant time and the expiry, checks that the record's audience
//!   allows the recipient this decision, flips the record from `pending` to `decided` with a conditional write
//!   (single use), then sends the decision to the waiting execution with SendTaskSuccess (deny and snooze are
//!   decisions too, not task failures).
//!
//! Tampered, expired, reused or unknown links, and a task Step Functions reports as timed out or gone, get a clear
//! page with a 4xx status and change nothing. Every response has `Cache-Control: no-store` and a restrictive CSP.

pub mod page;
pub mod slack;

use chrono::{DateTime, SecondsFormat, Utc};
use finops_approval_store::slack::{NoSlack, SecretsManagerSlack, SlackApi, SlackConfig, SlackSecrets, SlackWebApi};
use finops_approval_store::{
    ApprovalRecords, ApprovalState, CallbackResult, DecideResult, Decision, DynamoApprovals, SecretsManagerKey,
    SfnCallback, SigningKey, StoreConfig, TaskCallback, UndoStarter, DECIDED_VIA_POST,
};
use finops_core::approval::{ApprovalAction, ApprovalLink, LinkError};
use finops_core::policy::ProposedAction;
use finops_core::steps::ApprovalTaskResult;

/// An HTTP request as the handler needs it (from a Function URL event or the local server).
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub source_ip: Option<&'a str>,
    /// The request's headers (names in any case); only Slack's signature headers are read.
    pub headers: Vec<(&'a str, &'a str)>,
}

impl HttpRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Headers on every response: never cached (a decision page must not be replayed from a cache), no scripts, no
/// framing, forms only to this origin.
pub fn security_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "text/html; charset=utf-8".into()),
        ("cache-control", "no-store".into()),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'".into(),
        ),
        ("x-content-type-options", "nosniff".into()),
        ("referrer-policy", "no-referrer".into()),
        ("x-frame-options", "DENY".into()),
    ]
}

fn respond(status: u16, body: String) -> HttpResponse {
    HttpResponse { status, headers: security_headers(), body }
}

fn notice(status: u16, title: &str, message: &str) -> HttpResponse {
    respond(status, page::notice(title, message))
}

/// The callback of a deployment without Slack.
pub async fn handle<R: ApprovalRecords, K: SigningKey, C: TaskCallback + UndoStarter>(
    request: HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    now: DateTime<Utc>,
) -> HttpResponse {
    handle_with_slack(request, records, key, callback, &NoSlack, now).await
}

/// Every request: the approval pages, and Slack's interactions at [`slack::INTERACTIONS_PATH`]. A decision made on
/// a page updates the approval's Slack message too (and a click makes the page say "already decided").
pub async fn handle_with_slack<
    R: ApprovalRecords,
    K: SigningKey,
    C: TaskCallback + UndoStarter,
    S: SlackApi + SlackSecrets,
>(
    request: HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    slack: &S,
    now: DateTime<Utc>,
) -> HttpResponse {
    if request.path == slack::INTERACTIONS_PATH {
        return slack::interaction(&request, records, key, callback, slack, now).await;
    }
    match decide_or_show(request, records, key, callback, slack, now).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "approval callback failed");
            notice(
                502,
                "Something went wrong",
                "The decision could not be recorded. Nothing was changed. Try the link again in a minute.",
            )
        }
    }
}

async fn decide_or_show<R: ApprovalRecords, K: SigningKey, C: TaskCallback + UndoStarter, S: SlackApi>(
    request: HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    slack: &S,
    now: DateTime<Utc>,
) -> Result<HttpResponse, finops_aws::FinopsError> {
    let method = request.method.to_ascii_uppercase();
    if method != "GET" && method != "HEAD" && method != "POST" {
        return Ok(notice(405, "Not allowed", "Use the links in the approval email."));
    }
    if !request.path.starts_with("/approvals/") {
        return Ok(notice(404, "Not found", "This address is not an approval link."));
    }
    let link = match ApprovalLink::parse(request.path, request.query) {
        Ok(link) => link,
        Err(e) => return Ok(notice(400, "Not a valid approval link", &e.to_string())),
    };
    let key = key.key().await?;
    match link.verify(&key, now.timestamp()) {
        Ok(()) => {}
        Err(LinkError::Expired(_)) => {
            return Ok(notice(
                410,
                "This link has expired",
                "The approval window is over. No action was taken on the instance.",
            ))
        }
        Err(e) => {
            tracing::warn!(approval_id = link.id, decision = "REJECTED_LINK", error = %e, "rejected approval link");
            return Ok(notice(403, "This link is not valid", &e.to_string()));
        }
    }
    if !link.is_for_a_mailbox() {
        return Ok(notice(
            400,
            "This is a Slack button's link",
            "It decides only as a click in Slack by an approver named for it. Nothing was changed.",
        ));
    }
    let Some(record) = records.get(&link.id).await? else {
        return Ok(notice(404, "Unknown approval", "There is no such approval. Nothing was changed."));
    };
    // The link was signed for its recipient: they decide, if the record's audience (or, for an owner's link, the
    // owner it was sent to) allows them this decision. A link of one kind never decides another kind's record.
    if let Err(why) = record.may_decide(link.action, &link.recipient) {
        tracing::warn!(
            approval_id = link.id,
            decision = "REJECTED_DECIDER",
            why,
            "a link that does not fit its record"
        );
        return Ok(notice(403, "Not yours to decide", &format!("{why}. Nothing was changed.")));
    }
    // Who decided is said only to the approval's audience (an owner's link reads "one of its approvers").
    if record.state == ApprovalState::Decided {
        let decided = match record.decision_summary() {
            Some(summary) if record.audience.allows(&link.recipient) => summary,
            _ => format!("{}, by one of its approvers", record.decision.map_or("?", |d| d.as_str())),
        };
        let detail = format!("It was already answered: {decided}. Nothing was changed now.");
        return Ok(notice(409, "Already decided", &detail));
    }
    if record.state != ApprovalState::Pending || now.timestamp() >= record.expires_at {
        return Ok(notice(410, "This approval has expired", "The workflow stopped waiting. No action was taken."));
    }
    if method != "POST" {
        return Ok(respond(200, page::confirmation(&record, link.action, &link.url(""), &link.recipient)));
    }

    // The page of a link records that link's decision only: a body asking for another one (a form of another
    // page, a script, a crafted request) is refused before anything is written. Who decides is the link's recipient:
    // nothing typed counts.
    let form: Vec<(String, String)> = url::form_urlencoded::parse(request.body).into_owned().collect();
    let decisions: Vec<&str> = form.iter().filter(|(k, _)| k == "decision").map(|(_, v)| v.as_str()).collect();
    if decisions != [link.action.as_str()] {
        return Ok(notice(
            400,
            "This page records one decision",
            &format!(
                "The link you followed is for \"{}\", and this page can only record that. Nothing was changed. \
                 Use the link for the decision you mean.",
                link.action
            ),
        ));
    }
    let decided_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let decision = Decision {
        action: link.action,
        approver: &link.recipient,
        source_ip: request.source_ip,
        decided_at: &decided_at,
        via: DECIDED_VIA_POST,
    };
    if record.undo.is_some() {
        return undo_decided(records, callback, &record, &decision, now).await;
    }
    match deliver_decision(records, callback, &record, &decision, now).await? {
        Delivered::Accepted => {
            slack::show_decision(slack, &record, &decision).await;
            let what = match (link.action, record.proposal.action) {
                (ApprovalAction::Approve, ProposedAction::SnapshotAndStop) => "Approved. The workflow now snapshots the instance's volumes and stops it once the snapshots complete.",
                (ApprovalAction::Approve, ProposedAction::SnapshotAndDelete) => "Approved. The workflow now snapshots the volume and deletes it once the snapshot completes (the snapshot is kept).",
                (ApprovalAction::Approve, ProposedAction::Release) => "Approved. The workflow now releases the address, if it is still associated with nothing.",
                (ApprovalAction::Approve, ProposedAction::SnapshotAndDeleteVolumes) => "Approved. The workflow now snapshots the instance's volumes and, once the snapshots complete, detaches and deletes them if it is still stopped (the snapshots are kept).",
                (ApprovalAction::Deny, ProposedAction::SnapshotAndStop) => "Denied. The instance will not be touched in this run.",
                (ApprovalAction::Deny, _) => "Denied. It will not be touched in this run.",
                (ApprovalAction::Snooze | ApprovalAction::OwnerSnooze, ProposedAction::SnapshotAndStop) => "Snoozed. The instance is tagged and left alone until the snooze ends.",
                (ApprovalAction::Snooze | ApprovalAction::OwnerSnooze, _) => "Snoozed. It is tagged and left alone until the snooze ends.",
                // An undo record's decision goes to `undo_decided`, never to a waiting task.
                (ApprovalAction::Undo, _) => "Recorded.",
            };
            Ok(notice(200, "Decision recorded", &format!("{what} Recorded as {}.", link.recipient)))
        }
        Delivered::AlreadyUsed => {
            Ok(notice(409, "Already decided", "Someone answered this approval first. Nothing was changed now."))
        }
        Delivered::Expired => Ok(notice(410, "This approval has expired", "No action was taken.")),
        Delivered::Missing => Ok(notice(404, "Unknown approval", "Nothing was changed.")),
        Delivered::NotWaiting => Ok(notice(
            503,
            "Not ready yet",
            "The workflow is not waiting for this decision yet (it was asked a moment ago). Nothing was changed: \
             use the same link again in a minute.",
        )),
        Delivered::TimedOut => Ok(notice(
            410,
            "The workflow stopped waiting",
            "This approval timed out before your answer arrived. No action was taken.",
        )),
        Delivered::Unconfirmed => Ok(notice(
            202,
            "Decision recorded; delivery not confirmed",
            "Your decision is recorded, but the workflow's answer was lost. If it did not get the decision, \
             nothing is done and the approval times out. Do not use the link again.",
        )),
    }
}

/// What became of a decision handed to the waiting workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Recorded and delivered: the workflow goes on with it.
    Accepted,
    /// Someone decided first (by the other link, page or Slack): nothing changed now.
    AlreadyUsed,
    Expired,
    Missing,
    /// The workflow does not wait for it yet: nothing was recorded (the same link works a moment later).
    NotWaiting,
    /// The workflow stopped waiting before the answer arrived: no action, the record says expired.
    TimedOut,
    /// Recorded, but whether the workflow got it is unknown (it acts on it, or times out and does nothing).
    Unconfirmed,
}

/// The one way a decision of a proposal's approval is recorded and handed over, whichever way the person made it
/// (the page's POST, a Slack click): the single-use flip, then SendTaskSuccess with the record's token. A refused
/// SendTaskSuccess takes the decision back (so the person can try again and no record says "approved" for a run
/// that did not act); a lost answer is asked again.
pub async fn deliver_decision<R: ApprovalRecords, C: TaskCallback>(
    records: &R,
    callback: &C,
    record: &finops_approval_store::ApprovalRecord,
    decision: &Decision<'_>,
    now: DateTime<Utc>,
) -> Result<Delivered, finops_aws::FinopsError> {
    let id = record.approval_id.as_str();
    // The token the record held when it was decided: a redelivered request may have replaced the one read above.
    let (task_token, revert_mark) = match records.decide(id, decision, now.timestamp()).await? {
        DecideResult::Decided { task_token, revert_mark } => (task_token, revert_mark),
        DecideResult::AlreadyUsed => return Ok(Delivered::AlreadyUsed),
        DecideResult::Expired => return Ok(Delivered::Expired),
        DecideResult::Missing => return Ok(Delivered::Missing),
        DecideResult::NotWaiting => return Ok(Delivered::NotWaiting),
    };
    let output = ApprovalTaskResult {
        decision: decision.action,
        decided_at: decision.decided_at.to_owned(),
        approver: decision.approver.to_owned(),
        approval_id: id.to_owned(),
    };
    // Strings and a unit enum: serialising cannot fail.
    let output = serde_json::to_string(&output).expect("the task result serialises");
    let sent = match callback.send_success(&task_token, &output).await {
        Ok(sent) => sent,
        Err(e @ finops_aws::FinopsError::Throttled { .. }) => {
            // Step Functions refused it, so the workflow did not get the decision: undo it, so the record never says
            // "approved" for a run that did not act, and the person can try the link again.
            records.revert_decision(id, &revert_mark).await?;
            return Err(e);
        }
        Err(e) => match delivered_after_all(callback, &task_token, &output, record, now).await {
            // The answer was lost, not the decision: the decision stands, recorded and delivered.
            Some(sent) => {
                tracing::warn!(approval_id = id, error = %e, "SendTaskSuccess answer lost; the decision was delivered");
                sent
            }
            None => {
                // Perhaps delivered, perhaps not: the decision stays recorded (the workflow may be acting on it), and
                // the person is told so. If it was not delivered, the approval times out and nothing is done.
                tracing::error!(approval_id = id, error = %e, "SendTaskSuccess outcome unknown");
                return Ok(Delivered::Unconfirmed);
            }
        },
    };
    match sent {
        CallbackResult::Accepted => {
            finops_aws::xray::record_decision(
                "finops.approval",
                decision.approver,
                &record.proposal.resource_id,
                decision.action.as_str(),
                &record.run_id,
            );
            tracing::info!(
                run_id = record.run_id,
                resource_id = record.proposal.resource_id,
                decision = decision.action.as_str(),
                via = decision.via,
                "decision recorded"
            );
            if let Some(metric) = finops_core::metrics::decision_metric(decision.action) {
                finops_aws::metrics::emit(&metric);
            }
            Ok(Delivered::Accepted)
        }
        CallbackResult::TimedOut | CallbackResult::Invalid => {
            records.mark_expired(id).await?;
            Ok(Delivered::TimedOut)
        }
    }
}

/// An undo confirmed by POST: the single-use flip, then the undo execution (the actions step does the undo, after
/// checking the record and the live resource itself; this function holds no client that acts). A start that fails
/// is tried once more (a second start of the same undo starts nothing). If both were refused, the decision is taken
/// back so the person can try the link again. If either answer may have been lost after the start went through, the
/// decision stands: taking it back then would leave an undo running on a decision the page said was not taken.
async fn undo_decided<R: ApprovalRecords, C: UndoStarter>(
    records: &R,
    starter: &C,
    record: &finops_approval_store::ApprovalRecord,
    decision: &Decision<'_>,
    now: DateTime<Utc>,
) -> Result<HttpResponse, finops_aws::FinopsError> {
    let id = record.approval_id.as_str();
    let p = &record.proposal;
    if p.action.undo_label().is_none() {
        return Ok(notice(400, "Nothing to undo", p.action.undo_explained()));
    }
    let revert_mark = match records.decide(id, decision, now.timestamp()).await? {
        DecideResult::Decided { revert_mark, .. } => revert_mark,
        DecideResult::AlreadyUsed => {
            return Ok(notice(409, "Already decided", "This undo was used already. Nothing was changed now."))
        }
        DecideResult::Expired => {
            return Ok(notice(410, "This undo link has expired", "Nothing was changed. It can still be done by hand."))
        }
        DecideResult::Missing | DecideResult::NotWaiting => {
            return Ok(notice(404, "Unknown undo", "Nothing was changed."))
        }
    };
    let decided = record.clone().decided(decision);
    let mut may_have_started = false;
    let started = match starter.start_undo(&decided).await {
        Ok(arn) => Ok(arn),
        Err(first) => {
            may_have_started = first.outcome_unknown();
            tracing::warn!(undo_id = id, error = %first, "the undo execution did not start; trying once more");
            starter.start_undo(&decided).await
        }
    };
    let execution = match started {
        Ok(arn) => arn,
        Err(e) if may_have_started || e.outcome_unknown() => {
            tracing::warn!(undo_id = id, error = %e, "the undo may have started; its decision stands");
            finops_aws::xray::record_decision(
                "finops.approval",
                decision.approver,
                &p.resource_id,
                "undo",
                &record.run_id,
            );
            return Ok(notice(
                202,
                "Undo asked for, not confirmed",
                "Step Functions did not confirm that the undo started, and it may have. If it did, the workflow undoes \
                 the change only if the resource is still as finops-agent left it. This link cannot be used again: if \
                 nothing has changed in ten minutes, undo it by hand.",
            ));
        }
        Err(e) => {
            records.revert_decision(id, &revert_mark).await?;
            return Err(e);
        }
    };
    finops_aws::xray::record_decision("finops.approval", decision.approver, &p.resource_id, "undo", &record.run_id);
    tracing::info!(run_id = record.run_id, resource_id = p.resource_id, undo_id = id, execution, "undo started");
    let what = match p.action {
        ProposedAction::SnapshotAndStop => {
            "Undo started. The workflow starts the instance again if it is still stopped as finops-agent left it."
        }
        ProposedAction::SnapshotAndDelete => {
            "Undo started. The workflow creates a new volume from the snapshot taken before the deletion."
        }
        ProposedAction::Release | ProposedAction::SnapshotAndDeleteVolumes => p.action.undo_explained(),
    };
    Ok(notice(200, "Undo started", what))
}

/// After a SendTaskSuccess whose outcome is unknown (5xx, timeout): asks again. Accepted means the first did not
/// arrive and this one did. "No such task" well before the approval window ends means the first did arrive (the task
/// cannot have timed out yet, so the token was used). Anything else stays unknown (`None`).
async fn delivered_after_all<C: TaskCallback>(
    callback: &C,
    task_token: &str,
    output: &str,
    record: &finops_approval_store::ApprovalRecord,
    now: DateTime<Utc>,
) -> Option<CallbackResult> {
    let window = (record.expires_at - record.created_at).max(0);
    // The task's own deadline is about the record's, give or take a retried request step: keep well clear of it.
    let margin = (window / 10).clamp(2, 300);
    match callback.send_success(task_token, output).await {
        Ok(CallbackResult::Accepted) => Some(CallbackResult::Accepted),
        Ok(CallbackResult::TimedOut | CallbackResult::Invalid) if now.timestamp() + margin < record.expires_at => {
            Some(CallbackResult::Accepted)
        }
        _ => None,
    }
}

/// The callback as the Lambda and the local runner build it: the approvals table, the signing key, Step Functions.
pub struct ApprovalCallback {
    records: DynamoApprovals,
    key: SecretsManagerKey,
    callback: SfnCallback,
    slack: Option<SlackWebApi<SecretsManagerSlack>>,
}

impl ApprovalCallback {
    /// `slack`: where set up (`FINOPS_SLACK_*`), its interactions are answered and its messages updated.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        config: StoreConfig,
        slack: Option<SlackConfig>,
    ) -> Result<Self, finops_aws::FinopsError> {
        Ok(Self {
            records: DynamoApprovals::new(sdk, config.approvals_table),
            key: SecretsManagerKey::new(sdk, config.signing_secret_id),
            callback: SfnCallback::new(sdk),
            slack: slack.map(|s| SlackWebApi::new(&s.api_url, SecretsManagerSlack::new(sdk, &s.secret_id))),
        })
    }

    /// The callback as the Lambda builds it from its environment.
    pub fn from_vars(sdk: &aws_config::SdkConfig, vars: &[(String, String)]) -> Result<Self, finops_aws::FinopsError> {
        let store = StoreConfig::from_vars(vars.iter().cloned())
            .map_err(|e| finops_aws::FinopsError::Configuration(e.to_string()))?;
        Self::new(sdk, store, SlackConfig::from_vars(vars)?)
    }

    pub async fn respond(&self, request: HttpRequest<'_>, now: DateTime<Utc>) -> HttpResponse {
        handle_with_slack(request, &self.records, &self.key, &self.callback, &self.slack, now).await
    }
}

#[cfg(test)]
mod tests;
