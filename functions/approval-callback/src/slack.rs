//! Slack's interactions: a click on an approval message's button. The same single-use record as the email's pages
//! decides it, so a click makes the email's link "already decided" and the reverse.
//!
//! Nothing is read before Slack's signature is checked (the app's signing secret, constant time, at most five
//! minutes old), and nothing is decided unless the button's own signed link verifies (a link made for a Slack
//! button), the click was made on the approval's own message (the workspace, channel and ts the request step recorded
//! when it posted it) by a Slack user the approval's audience names, and the record is still pending. The clicking
//! user is the approver of record. Slack waits three seconds for the answer: the decision is one DynamoDB write and
//! one SendTaskSuccess, then the message is updated in place; a click that changes nothing gets a note only the
//! clicker sees.

use chrono::{DateTime, SecondsFormat, Utc};
use finops_approval_store::slack::{SlackApi, SlackSecrets};
use finops_approval_store::{
    ApprovalRecord, ApprovalRecords, ApprovalState, Decision, SigningKey, SlackClick, TaskCallback, DECIDED_VIA_SLACK,
};
use finops_core::approval::{ApprovalAction, LinkError};
use finops_core::slack::{decided_message, parse_interaction, verify_request};

use crate::{deliver_decision, Delivered, HttpRequest, HttpResponse};

/// Where the Slack app's Interactivity Request URL points (on the callback's Function URL).
pub const INTERACTIONS_PATH: &str = "/slack/interactions";

fn answer(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![
            ("content-type", "text/plain; charset=utf-8".into()),
            ("cache-control", "no-store".into()),
            ("x-content-type-options", "nosniff".into()),
        ],
        body: body.to_owned(),
    }
}

/// Answers one interaction. Every refusal changes nothing.
pub async fn interaction<R: ApprovalRecords, K: SigningKey, C: TaskCallback, S: SlackApi + SlackSecrets>(
    request: &HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    slack: &S,
    now: DateTime<Utc>,
) -> HttpResponse {
    match decide(request, records, key, callback, slack, now).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "Slack interaction failed");
            answer(502, "the decision could not be recorded; nothing was changed")
        }
    }
}

async fn decide<R: ApprovalRecords, K: SigningKey, C: TaskCallback, S: SlackApi + SlackSecrets>(
    request: &HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    slack: &S,
    now: DateTime<Utc>,
) -> Result<HttpResponse, finops_aws::FinopsError> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Ok(answer(405, "Slack interactions are POSTed"));
    }
    let secret = match slack.credentials().await {
        Ok(c) => c.signing_secret,
        Err(finops_aws::FinopsError::Configuration(why)) => return Ok(answer(404, &why)),
        Err(e) => return Err(e),
    };
    let (timestamp, signature) = (request.header("x-slack-request-timestamp"), request.header("x-slack-signature"));
    if let Err(e) = verify_request(secret.as_bytes(), timestamp, signature, request.body, now.timestamp()) {
        tracing::warn!(decision = "REJECTED_SLACK_REQUEST", error = %e, "a Slack interaction that Slack did not sign");
        return Ok(answer(401, &e.to_string()));
    }
    let click = match parse_interaction(request.body) {
        Ok(click) => click,
        Err(e) => return Ok(answer(400, &e.to_string())),
    };
    let link = &click.link;
    let (channel, user) = (click.channel_id.as_str(), click.user_id.as_str());
    let tell = |text: String| async move {
        if let Err(e) = slack.tell(channel, user, &text).await {
            tracing::warn!(error = %e, "could not tell the clicker why nothing changed");
        }
    };
    let key = key.key().await?;
    match link.verify(&key, now.timestamp()) {
        Ok(()) => {}
        Err(LinkError::Expired(_)) => {
            tell("This approval's buttons have expired. No action was taken.".into()).await;
            return Ok(answer(200, "expired"));
        }
        Err(e) => {
            tracing::warn!(approval_id = link.id, decision = "REJECTED_LINK", error = %e, "a Slack button's link");
            return Ok(answer(403, &e.to_string()));
        }
    }
    let Some(record) = records.get(&link.id).await? else {
        return Ok(answer(404, "there is no such approval; nothing was changed"));
    };
    if record.undo.is_some() {
        return Ok(answer(400, "an undo is confirmed on its page, not in Slack"));
    }
    let at = SlackClick {
        team: &click.team_id,
        channel: &click.channel_id,
        message_ts: &click.message_ts,
        user: &click.user_id,
    };
    if let Err(why) = record.may_decide_in_slack(link.action, &at) {
        tracing::warn!(
            approval_id = link.id,
            user = click.user_id,
            decision = "REJECTED_SLACK_CLICK",
            why,
            "a click that may not decide"
        );
        tell(format!("{why} Nothing was changed.")).await;
        return Ok(answer(403, &why));
    }
    match record.state {
        ApprovalState::Decided => {
            let decided = record.decision_summary().unwrap_or_else(|| "?".into());
            tell(format!("Already decided: {decided}. Nothing was changed now.")).await;
            return Ok(answer(200, "already decided"));
        }
        ApprovalState::Pending if now.timestamp() < record.expires_at => {}
        ApprovalState::Pending | ApprovalState::Expired => {
            tell("This approval has expired: the workflow stopped waiting. No action was taken.".into()).await;
            return Ok(answer(200, "expired"));
        }
    }
    let approver = click.approver();
    let decided_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let decision = Decision {
        action: link.action,
        approver: &approver,
        source_ip: request.source_ip,
        decided_at: &decided_at,
        via: DECIDED_VIA_SLACK,
    };
    let said = match deliver_decision(records, callback, &record, &decision, now).await? {
        Delivered::Accepted => {
            show_decision(slack, &record, &decision).await;
            return Ok(answer(200, ""));
        }
        Delivered::AlreadyUsed => "Someone answered this approval first. Nothing was changed now.",
        Delivered::Expired | Delivered::TimedOut => "This approval timed out before your answer. No action was taken.",
        Delivered::Missing => "There is no such approval. Nothing was changed.",
        Delivered::NotWaiting => {
            "The workflow is not waiting for this yet. Nothing was changed: click again in a minute."
        }
        Delivered::Unconfirmed => {
            "Your decision is recorded, but the workflow's answer was lost. If it did not get it, nothing is done and \
             the approval times out. Do not click again."
        }
    };
    tell(said.into()).await;
    Ok(answer(200, said))
}

/// The approval's Slack message, if it has one, says who decided what (its buttons gone). A message Slack refuses to
/// update is logged: the decision stands either way.
pub async fn show_decision<S: SlackApi>(slack: &S, record: &ApprovalRecord, decision: &Decision<'_>) {
    let Some(at) = &record.slack else { return };
    // An undo record has no Slack message of its own.
    if decision.action == ApprovalAction::Undo {
        return;
    }
    let message = decided_message(&record.proposal, decision.action, decision.approver, decision.decided_at);
    if let Err(e) = slack.update(at, &message).await {
        tracing::warn!(approval_id = record.approval_id, error = %e, "could not update the Slack message");
    }
}
