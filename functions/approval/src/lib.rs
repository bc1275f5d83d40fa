//! The approval callback. Approvers reach it from the email's links.
//!
//! - `GET /approvals/<id>?action&exp&sig` shows what is proposed and why, with one button per decision, and changes
//!   nothing: mail security scanners fetch every link before a person sees it.
//! - `POST` (a button) verifies the signature in constant time and the expiry, flips the record from `pending` to
//!   `decided` with a conditional write (single use), then sends the decision to the waiting execution with
//!   SendTaskSuccess (deny and snooze are decisions too, not task failures).
//!
//! Tampered, expired, reused or unknown links, and a task Step Functions reports as timed out or gone, get a clear
//! page with a 4xx status and change nothing. Every response has `Cache-Control: no-store` and a restrictive CSP.

pub mod page;

use chrono::{DateTime, SecondsFormat, Utc};
use finops_approvals::{ApprovalRecords, ApprovalState, CallbackResult, DecideResult, SigningKey, TaskCallback};
use finops_core::approval::{ApprovalAction, ApprovalLink, LinkError};

/// An HTTP request as the handler needs it (from a Function URL event or the local server).
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
    pub source_ip: Option<&'a str>,
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

pub async fn handle<R: ApprovalRecords, K: SigningKey, C: TaskCallback>(
    request: HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
    now: DateTime<Utc>,
) -> HttpResponse {
    match decide_or_show(request, records, key, callback, now).await {
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

async fn decide_or_show<R: ApprovalRecords, K: SigningKey, C: TaskCallback>(
    request: HttpRequest<'_>,
    records: &R,
    key: &K,
    callback: &C,
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
    let Some(record) = records.get(&link.id).await? else {
        return Ok(notice(404, "Unknown approval", "There is no such approval. Nothing was changed."));
    };
    match record.state {
        ApprovalState::Decided => {
            let detail = format!(
                "It was already answered: {} by {} at {}. Nothing was changed now.",
                record.decision.map_or("?", |d| d.as_str()),
                record.approver.as_deref().unwrap_or("someone"),
                record.decided_at.as_deref().unwrap_or("?")
            );
            return Ok(notice(409, "Already decided", &detail));
        }
        ApprovalState::Expired => {
            return Ok(notice(410, "This approval has expired", "The workflow stopped waiting. No action was taken."))
        }
        ApprovalState::Pending if now.timestamp() >= record.expires_at => {
            return Ok(notice(410, "This approval has expired", "The workflow stopped waiting. No action was taken."))
        }
        ApprovalState::Pending => {}
    }
    if method != "POST" {
        let buttons: Vec<(ApprovalAction, String)> = ApprovalAction::ALL
            .into_iter()
            .map(|a| {
                let l = link.for_action(&key, a);
                (a, format!("/approvals/{}?action={}&exp={}&sig={}", l.id, a.as_str(), l.expires, l.sig))
            })
            .collect();
        return Ok(respond(200, page::confirmation(&record, link.action, &buttons)));
    }

    let approver_field = url::form_urlencoded::parse(request.body)
        .find(|(k, _)| k == "approver")
        .map(|(_, v)| v.trim().chars().filter(|c| !c.is_control()).take(200).collect::<String>())
        .unwrap_or_default();
    if approver_field.is_empty() {
        return Ok(notice(
            400,
            "Who is deciding?",
            "Enter your name or email on the confirmation page: it goes into the audit trail.",
        ));
    }
    let approver = match request.source_ip {
        Some(ip) => format!("{approver_field} (from {ip})"),
        None => approver_field,
    };
    let decided_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    match records.decide(&link.id, link.action, &approver, &decided_at, now.timestamp()).await? {
        DecideResult::Decided => {}
        DecideResult::AlreadyUsed => {
            return Ok(notice(409, "Already decided", "Someone answered this approval first. Nothing was changed now."))
        }
        DecideResult::Expired => return Ok(notice(410, "This approval has expired", "No action was taken.")),
        DecideResult::Missing => return Ok(notice(404, "Unknown approval", "Nothing was changed.")),
    }
    let output = serde_json::json!({
        "decision": link.action.as_str(),
        "decidedAt": decided_at,
        "approver": approver,
        "approvalId": link.id,
    });
    match callback.send_success(&record.task_token, &output.to_string()).await? {
        CallbackResult::Accepted => {
            finops_aws::xray::record_decision(
                "finops.approval",
                &approver,
                &record.proposal.instance_id,
                link.action.as_str(),
                &record.run_id,
            );
            tracing::info!(
                run_id = record.run_id,
                instance_id = record.proposal.instance_id,
                decision = link.action.as_str(),
                "decision recorded"
            );
            let what = match link.action {
                ApprovalAction::Approve => "Approved. The workflow now snapshots the instance's volumes and stops it once the snapshots complete.",
                ApprovalAction::Deny => "Denied. The instance will not be touched in this run.",
                ApprovalAction::Snooze => "Snoozed. The instance is tagged and left alone until the snooze ends.",
            };
            Ok(notice(200, "Decision recorded", what))
        }
        CallbackResult::TimedOut | CallbackResult::Invalid => {
            records.mark_expired(&link.id).await?;
            Ok(notice(
                410,
                "The workflow stopped waiting",
                "This approval timed out before your answer arrived. No action was taken.",
            ))
        }
    }
}
