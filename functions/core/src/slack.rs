//! Slack, as plain data: the request signature Slack puts on every interaction, the interaction a button click sends,
//! and the Block Kit messages that ask, say who decided, and say what came of it. No network here.
//!
//! A click is trusted only as far as this module proves it: Slack's signature over `v0:{timestamp}:{body}` with the
//! app's signing secret (constant time, the timestamp within five minutes, so a captured request cannot be replayed
//! later), and a button value that is itself a signed approval link ([`crate::approval::ApprovalLink`]) of one
//! decision. Whatever a person typed into a tag or a model wrote is quoted as data: Slack's control characters are
//! escaped, so a tag cannot mention `@channel`, link somewhere or close the quote.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::approval::{ApprovalAction, ApprovalLink, LinkError, SLACK_RECIPIENT};
use crate::policy::{Proposal, ProposedAction};

/// How old (or how far ahead) a signed request's timestamp may be: Slack's own recommendation.
pub const MAX_REQUEST_AGE_SECONDS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackAuthError {
    #[error("the request has no Slack signature headers")]
    Unsigned,
    #[error("the request's timestamp is not a number")]
    BadTimestamp,
    #[error("the request is {0} seconds from now: older than five minutes, or replayed")]
    Stale(i64),
    #[error("the request's signature does not match: not sent by Slack, or altered")]
    BadSignature,
}

/// Checks `X-Slack-Signature` (`v0=<hex HMAC-SHA256>`) over `v0:{X-Slack-Request-Timestamp}:{raw body}`: the age
/// first (cheap, and a replay is refused whatever its signature), then the MAC in constant time.
pub fn verify_request(
    signing_secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SlackAuthError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SlackAuthError::Unsigned);
    };
    if timestamp.is_empty() || timestamp.len() > 12 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlackAuthError::BadTimestamp);
    }
    let sent: i64 = timestamp.parse().map_err(|_| SlackAuthError::BadTimestamp)?;
    if (now_unix - sent).abs() > MAX_REQUEST_AGE_SECONDS {
        return Err(SlackAuthError::Stale(now_unix - sent));
    }
    let given = signature
        .strip_prefix("v0=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SlackAuthError::BadSignature)?;
    request_mac(signing_secret, timestamp, body).verify_slice(&given).map_err(|_| SlackAuthError::BadSignature)
}

/// The signature Slack sends for `body` at `timestamp` (`v0=<hex>`): what a local stand-in for Slack signs with.
pub fn sign_request(signing_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(request_mac(signing_secret, timestamp, body).finalize().into_bytes()))
}

fn request_mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// One button click (a `block_actions` interaction), as far as a decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The Slack user who clicked: the approver of record, if the approval's audience names them.
    pub user_id: String,
    pub user_name: String,
    /// The workspace, channel and message clicked: only a click on the approval's own message (the workspace,
    /// channel and ts the request step recorded when it posted it) decides it.
    pub team_id: String,
    pub channel_id: String,
    pub message_ts: String,
    pub action_id: String,
    /// The button's value: the signed link of its one decision.
    pub link: ApprovalLink,
}

impl Interaction {
    /// How the approver is named in the record, the task output and the instance's tags.
    pub fn approver(&self) -> String {
        slack_approver(&self.user_id, &self.user_name)
    }
}

/// How a Slack decider is named on a record: `slack:<user id>/<name>`.
pub fn slack_approver(user_id: &str, user_name: &str) -> String {
    format!("slack:{user_id}/{user_name}")
}

/// The Slack user id of a record's approver, if a click decided.
pub fn slack_user_of(approver: &str) -> Option<&str> {
    approver.strip_prefix("slack:")?.split('/').next().filter(|u| is_slack_id(u))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InteractionError {
    #[error("the body is not a Slack interaction (a form with one `payload`)")]
    NotAPayload,
    #[error("the interaction is not valid JSON: {0}")]
    BadJson(String),
    #[error("only button clicks (`block_actions`) are answered, not {0:?}")]
    UnsupportedType(String),
    #[error("the interaction has no {0}")]
    Missing(&'static str),
    #[error("one click carries one action, not {0}")]
    ActionCount(usize),
    #[error("the button's value is not an approval link: {0}")]
    BadLink(LinkError),
    #[error("the button {action_id:?} carries a link for {link}")]
    ActionMismatch { action_id: String, link: ApprovalAction },
    #[error("the button's link was not made for a Slack button")]
    NotASlackButton,
}

/// Parses a `application/x-www-form-urlencoded` body of one `payload` field holding a `block_actions` interaction
/// with exactly one action whose id is a decision and whose value is that decision's signed link
/// (`/approvals/<id>?action=...`). Anything else is refused; the link's signature is checked by the caller.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, InteractionError> {
    let mut fields = url::form_urlencoded::parse(body);
    let payload = match (fields.next(), fields.next()) {
        (Some((k, v)), None) if k == "payload" => v.into_owned(),
        _ => return Err(InteractionError::NotAPayload),
    };
    let v: Value = serde_json::from_str(&payload).map_err(|e| InteractionError::BadJson(e.to_string()))?;
    let text = |v: &Value, ptr: &str| v.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
    let kind = text(&v, "/type").ok_or(InteractionError::Missing("type"))?;
    if kind != "block_actions" {
        return Err(InteractionError::UnsupportedType(kind));
    }
    let user_id = text(&v, "/user/id").filter(|u| is_slack_id(u)).ok_or(InteractionError::Missing("user id"))?;
    let user_name = text(&v, "/user/username")
        .or_else(|| text(&v, "/user/name"))
        .map(|n| crate::untrusted::display(&n, 80))
        .unwrap_or_default();
    let team_id = text(&v, "/team/id").filter(|t| is_slack_id(t)).ok_or(InteractionError::Missing("team"))?;
    let channel_id = text(&v, "/channel/id")
        .or_else(|| text(&v, "/container/channel_id"))
        .filter(|c| is_slack_id(c))
        .ok_or(InteractionError::Missing("channel"))?;
    let message_ts = text(&v, "/container/message_ts")
        .or_else(|| text(&v, "/message/ts"))
        .filter(|ts| is_message_ts(ts))
        .ok_or(InteractionError::Missing("message ts"))?;
    let actions = v.get("actions").and_then(Value::as_array).ok_or(InteractionError::Missing("actions"))?;
    let [action] = actions.as_slice() else { return Err(InteractionError::ActionCount(actions.len())) };
    let action_id = text(action, "/action_id").ok_or(InteractionError::Missing("action id"))?;
    let value = text(action, "/value").ok_or(InteractionError::Missing("button value"))?;
    let (path, query) = value.split_once('?').unwrap_or((&value, ""));
    let link = ApprovalLink::parse(path, query).map_err(InteractionError::BadLink)?;
    if ApprovalAction::parse(&action_id) != Some(link.action)
        || !ApprovalAction::APPROVER_DECISIONS.contains(&link.action)
    {
        return Err(InteractionError::ActionMismatch { action_id, link: link.action });
    }
    if link.recipient != SLACK_RECIPIENT {
        // An email's link pasted into a button decides nothing here: its recipient is a mailbox, not a Slack user.
        return Err(InteractionError::NotASlackButton);
    }
    Ok(Interaction { user_id, user_name, team_id, channel_id, message_ts, action_id, link })
}

/// A message's timestamp as Slack writes it (`1700000000.000100`): digits, one dot, digits.
pub fn is_message_ts(s: &str) -> bool {
    let Some((secs, frac)) = s.split_once('.') else { return false };
    (1..=12).contains(&secs.len())
        && (1..=9).contains(&frac.len())
        && secs.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
}

/// Slack's user, channel and team ids: upper-case letters and digits.
pub fn is_slack_id(s: &str) -> bool {
    (2..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// The button value for a decision: its signed link without the host (`/approvals/<id>?action=...&exp=...&sig=...`).
pub fn button_value(link: &ApprovalLink) -> String {
    link.url("")
}

/// Untrusted text as Slack shows data: the usual cleaning ([`crate::untrusted::display`]), then Slack's three control
/// characters escaped, so `<!channel>`, `<https://...|click>` or a user mention cannot be written by a tag, and
/// backticks made plain, so a quote cannot be closed.
pub fn quoted(text: &str, max: usize) -> String {
    crate::untrusted::display(text, max)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
}

/// What the approvers' channel gets: the proposal's evidence, saving and justification, a compact chart of the days,
/// and one button per decision (each carrying its signed link).
pub struct AskMessage<'a> {
    pub proposal: &'a Proposal,
    pub approve: &'a ApprovalLink,
    pub deny: &'a ApprovalLink,
    pub snooze: &'a ApprovalLink,
    pub snooze_days: i64,
    pub expires_at_utc: &'a str,
    /// The day chart as text (one bar a day), when the proposal has days.
    pub chart: Option<String>,
}

fn headline(p: &Proposal) -> String {
    let name = p.name.as_deref().map(|n| format!(" {}", quoted(n, 60))).unwrap_or_default();
    format!("{} {}{} ({})", p.action.verb(), p.action.resource_label().to_lowercase(), name, p.resource_id)
}

fn saving(p: &Proposal) -> String {
    p.monthly_saving_usd.map_or_else(|| "unknown".into(), |s| format!("${s:.2}/month"))
}

fn facts(p: &Proposal) -> Value {
    let mut fields = vec![
        format!("*{}*\n`{}` in {}", p.action.resource_label(), p.resource_id, p.region),
        format!("*Type*\n{}", quoted(&p.resource_type, 80)),
        format!("*Saving*\n{} ({})", saving(p), quoted(&p.price_source, 60)),
        format!("*Owner*\n{}", p.owner.as_deref().map_or_else(|| "(not tagged)".into(), |o| quoted(o, 80))),
    ];
    if let Some(account) = &p.account {
        fields.push(format!("*Account*\n{} ({})", account.id, quoted(&account.name, 60)));
    }
    json!({"type": "section", "fields": fields.into_iter().map(|t| text_object(&t)).collect::<Vec<_>>()})
}

/// A mrkdwn text object with `verbatim: true`: Slack links, mentions and channel names only what the text marks up
/// itself (already escaped out of untrusted text by [`quoted`]), never a URL or `@here` that a tag spelled out.
fn text_object(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": text, "verbatim": true})
}

fn mrkdwn(text: String) -> Value {
    // Block Kit refuses a section text over 3,000 characters.
    let text: String = text.chars().take(2_900).collect();
    json!({"type": "section", "text": text_object(&text)})
}

/// The message that asks: `{text, blocks}` for `chat.postMessage` (text is the notification's fallback).
pub fn ask_message(m: &AskMessage<'_>) -> Value {
    let p = m.proposal;
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("finops: {}?", headline(p)).chars().take(150).collect::<String>()}}),
        mrkdwn(format!(
            "finops-agent proposes to {} {}. Nothing happens unless someone here approves.",
            p.action.verb(),
            p.action.subject()
        )),
        facts(p),
    ];
    let mut evidence: String = p.evidence.iter().map(|e| format!("• {}\n", quoted(e, 300))).collect();
    if let Some(chart) = &m.chart {
        evidence.push_str(&format!("```{chart}```"));
    }
    blocks.push(mrkdwn(format!("*Evidence (CloudWatch)*\n{evidence}")));
    blocks.push(mrkdwn(match p.action {
        ProposedAction::SnapshotAndStop => format!(
            "*Why the agent recommends it* ({}; confidence {:.2}; quoted as written, not an instruction)\n>{}",
            quoted(&p.backend, 60),
            p.confidence,
            quoted(&p.justification, 500)
        ),
        _ => format!("Proposed by {}.", quoted(&p.backend, 120)),
    }));
    let button = |text: &str, link: &ApprovalLink, style: Option<&str>| {
        let mut b = json!({
            "type": "button",
            "action_id": link.action.as_str(),
            "text": {"type": "plain_text", "text": text},
            "value": button_value(link),
        });
        if let Some(style) = style {
            b["style"] = json!(style);
        }
        b
    };
    let mut approve = button(&format!("Approve: {}", p.action.approve_steps()), m.approve, Some("primary"));
    approve["text"]["text"] =
        json!(approve["text"]["text"].as_str().unwrap_or("Approve").chars().take(75).collect::<String>());
    approve["confirm"] = json!({
        "title": {"type": "plain_text", "text": "Approve?"},
        "text": {"type": "plain_text", "text": format!("{} {}: the workflow acts after this.", p.action.verb(), p.resource_id)},
        "confirm": {"type": "plain_text", "text": "Approve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    });
    blocks.push(json!({"type": "actions", "block_id": "finops-decision", "elements": [
        approve,
        button("Deny", m.deny, Some("danger")),
        button(&format!("Snooze {} days", m.snooze_days), m.snooze, None),
    ]}));
    blocks.push(json!({"type": "context", "elements": [text_object(&format!(
        "The buttons expire at {}; no answer means no action. Only the approvers this deployment names for it decide \
         here; each approver's email has their own links to the same approval.",
        m.expires_at_utc
    ))]}));
    json!({"text": format!("finops: {}? saves {}", headline(p), saving(p)), "blocks": blocks})
}

/// The same message once decided: the buttons replaced by who decided what, when.
pub fn decided_message(p: &Proposal, action: ApprovalAction, approver: &str, at: &str) -> Value {
    let said = match action {
        ApprovalAction::Approve => "Approved",
        ApprovalAction::Deny => "Denied",
        ApprovalAction::Snooze => "Snoozed",
        ApprovalAction::OwnerSnooze => "Snoozed by its owner",
        ApprovalAction::Undo => "Undo started",
    };
    let line = format!("{said} by {} at {at}.", quoted(approver, 120));
    json!({"text": format!("finops: {}: {line}", headline(p)), "blocks": [
        json!({"type": "header", "text": {"type": "plain_text", "text": format!("finops: {}", headline(p)).chars().take(150).collect::<String>()}}),
        facts(p),
        mrkdwn(format!("*{line}*")),
    ]})
}

/// The decided message with what came of it (snapshotted and stopped, failed and why), after the run acted.
pub fn outcome_message(p: &Proposal, decided: &str, outcome: &str) -> Value {
    let mut m = decided_message(p, ApprovalAction::Approve, "", "");
    m["text"] = json!(format!("finops: {}: {}", headline(p), quoted(outcome, 300)));
    m["blocks"][2] = mrkdwn(format!("*{}*\nOutcome: {}", quoted(decided, 300), quoted(outcome, 1_000)));
    m
}

/// A run's outcome of one approval (`outcome` and `operation` as the workflow records them) in words.
pub fn outcome_words(outcome: &str, operation: &str) -> &'static str {
    match (outcome, operation) {
        ("done" | "already_done", "stop") => "snapshotted and stopped",
        ("done" | "already_done", "tag") => "snoozed: tagged and left alone until the snooze ends",
        ("done" | "already_done", "delete_volume") => "snapshotted and deleted (the snapshot is kept)",
        ("done" | "already_done", "release_address") => "released",
        ("done" | "already_done", "delete_instance_volumes") => "volumes snapshotted, detached and deleted",
        ("done" | "already_done", _) => "done",
        ("denied", _) => "denied: nothing was done",
        ("no_answer", _) => "no answer in time: nothing was done",
        ("refused", _) => "not done: the live re-check refused it",
        ("snapshot_failed", _) => "the snapshot failed: nothing was stopped or deleted",
        ("failed", _) => "failed",
        ("pending", _) => "still waiting for its snapshots",
        _ => "outcome unknown: check the resource",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn slacks_documented_example_verifies() {
        // The example of Slack's "Verifying requests from Slack" guide.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign_request(SECRET, "1531420618", body), signature);
        assert_eq!(verify_request(SECRET, Some("1531420618"), Some(signature), body, 1_531_420_618 + 10), Ok(()));
    }

    #[test]
    fn stale_unsigned_and_altered_requests_are_refused() {
        let body = b"payload=%7B%7D";
        let now = 1_800_000_000;
        let ts = now.to_string();
        let sig = sign_request(SECRET, &ts, body);
        assert_eq!(verify_request(SECRET, Some(&ts), Some(&sig), body, now + 300), Ok(()));
        assert_eq!(verify_request(SECRET, Some(&ts), Some(&sig), body, now + 301), Err(SlackAuthError::Stale(301)));
        assert_eq!(verify_request(SECRET, Some(&ts), Some(&sig), body, now - 301), Err(SlackAuthError::Stale(-301)));
        assert_eq!(verify_request(SECRET, None, Some(&sig), body, now), Err(SlackAuthError::Unsigned));
        assert_eq!(verify_request(SECRET, Some("1e9"), Some(&sig), body, now), Err(SlackAuthError::BadTimestamp));
        assert_eq!(
            verify_request(SECRET, Some(&ts), Some(&sig), b"payload=%7B%7D ", now),
            Err(SlackAuthError::BadSignature)
        );
        assert_eq!(
            verify_request(b"another secret", Some(&ts), Some(&sig), body, now),
            Err(SlackAuthError::BadSignature)
        );
        let later = (now + 1).to_string();
        assert_eq!(verify_request(SECRET, Some(&later), Some(&sig), body, now), Err(SlackAuthError::BadSignature));
        assert_eq!(verify_request(SECRET, Some(&ts), Some(&sig[3..]), body, now), Err(SlackAuthError::BadSignature));
    }

    fn click(action_id: &str, value: &str) -> Vec<u8> {
        let payload = json!({
            "type": "block_actions",
            "team": {"id": "T0FINOPS", "domain": "finops"},
            "user": {"id": "U024BE7LH", "username": "alice"},
            "channel": {"id": "C0FINOPS1"},
            "container": {"type": "message", "channel_id": "C0FINOPS1", "message_ts": "1700000000.000100"},
            "actions": [{"action_id": action_id, "value": value, "type": "button"}],
        });
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    const ID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn a_click_carries_its_decisions_signed_link_and_nothing_else() {
        let link = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000_000_000, SLACK_RECIPIENT);
        let i = parse_interaction(&click("deny", &button_value(&link))).unwrap();
        assert_eq!((i.user_id.as_str(), i.channel_id.as_str(), &i.link), ("U024BE7LH", "C0FINOPS1", &link));
        assert_eq!((i.team_id.as_str(), i.message_ts.as_str()), ("T0FINOPS", "1700000000.000100"));
        assert_eq!(i.approver(), "slack:U024BE7LH/alice");
        assert!(i.link.verify(KEY, 1_900_000_000).is_ok());
        // The approve button's id with the deny link (or the reverse) decides nothing.
        assert!(matches!(
            parse_interaction(&click("approve", &button_value(&link))),
            Err(InteractionError::ActionMismatch { .. })
        ));
        assert!(matches!(
            parse_interaction(&click("deny", "/approvals/xyz?action=deny")),
            Err(InteractionError::BadLink(_))
        ));
        // Neither an undo nor an owner's snooze is ever a button.
        for action in [ApprovalAction::Undo, ApprovalAction::OwnerSnooze] {
            let link = ApprovalLink::sign(KEY, ID, action, 2_000_000_000, SLACK_RECIPIENT);
            assert!(matches!(
                parse_interaction(&click(action.as_str(), &button_value(&link))),
                Err(InteractionError::ActionMismatch { .. })
            ));
        }
        // An email's link (signed for its recipient) in a button decides nothing in Slack.
        let emailed = ApprovalLink::sign(KEY, ID, ApprovalAction::Deny, 2_000_000_000, "ana@example.com");
        assert_eq!(parse_interaction(&click("deny", &button_value(&emailed))), Err(InteractionError::NotASlackButton));
        // Without its workspace or its message's ts, a click cannot be tied to the message it was made on.
        let strip = |pointer: &str| {
            let mut payload: Value = serde_json::from_str(
                &url::form_urlencoded::parse(&click("deny", &button_value(&link))).next().unwrap().1,
            )
            .unwrap();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            payload.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key);
            url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish()
        };
        assert_eq!(parse_interaction(strip("/team/id").as_bytes()), Err(InteractionError::Missing("team")));
        assert_eq!(
            parse_interaction(strip("/container/message_ts").as_bytes()),
            Err(InteractionError::Missing("message ts"))
        );
        assert!(is_message_ts("1700000000.000100") && !is_message_ts("1700000000") && !is_message_ts("1.2.3"));
        assert_eq!(parse_interaction(b"token=x"), Err(InteractionError::NotAPayload));
        assert_eq!(parse_interaction(b"payload=%7B%7D&payload=%7B%7D"), Err(InteractionError::NotAPayload));
        let mut two = click("deny", &button_value(&link));
        two.extend_from_slice(b"&x=1");
        assert_eq!(parse_interaction(&two), Err(InteractionError::NotAPayload));
        let view = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", r#"{"type":"view_submission"}"#)
            .finish();
        assert_eq!(
            parse_interaction(view.as_bytes()),
            Err(InteractionError::UnsupportedType("view_submission".into()))
        );
    }

    fn proposal() -> Proposal {
        serde_json::from_value(json!({
            "resourceId": "i-0abc", "region": "eu-west-1", "resourceType": "m5.large",
            "name": "qa <!channel> rig", "owner": "dev@example.com", "action": "snapshot-and-stop",
            "confidence": 0.9, "justification": "idle ``` <https://evil.example|approve now> & more",
            "backend": "deterministic", "monthlySavingUsd": 70.08, "priceSource": "embedded",
            "evidence": ["peak CPU 2.5 % over 14 days"], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_ask_has_three_signed_buttons_and_quotes_tags_and_the_model_as_data() {
        let p = proposal();
        let sign = |a| ApprovalLink::sign(KEY, ID, a, 2_000_000_000, SLACK_RECIPIENT);
        let (approve, deny, snooze) =
            (sign(ApprovalAction::Approve), sign(ApprovalAction::Deny), sign(ApprovalAction::Snooze));
        let m = ask_message(&AskMessage {
            proposal: &p,
            approve: &approve,
            deny: &deny,
            snooze: &snooze,
            snooze_days: 7,
            expires_at_utc: "2026-12-01T00:00:00Z",
            chart: Some("▁▁▂ (limit 5 %)".into()),
        });
        let buttons = m.pointer("/blocks/5/elements").and_then(Value::as_array).unwrap();
        let ids: Vec<&str> = buttons.iter().map(|b| b["action_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["approve", "deny", "snooze"]);
        for b in buttons {
            let value = b["value"].as_str().unwrap();
            let (path, query) = value.split_once('?').unwrap();
            let link = ApprovalLink::parse(path, query).unwrap();
            assert_eq!(link.action.as_str(), b["action_id"]);
            assert!(link.verify(KEY, 1_900_000_000).is_ok());
            assert_eq!(link.recipient, SLACK_RECIPIENT, "a button's link decides in Slack only");
        }
        assert!(buttons[0].get("confirm").is_some(), "approving asks once more");
        // Every text object is verbatim: Slack links or mentions nothing the text did not mark up itself.
        fn texts(v: &Value, out: &mut Vec<Value>) {
            match v {
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("mrkdwn") => out.push(v.clone()),
                Value::Object(o) => o.values().for_each(|v| texts(v, out)),
                Value::Array(a) => a.iter().for_each(|v| texts(v, out)),
                _ => {}
            }
        }
        let mut mrkdwn = Vec::new();
        texts(&m, &mut mrkdwn);
        assert!(mrkdwn.len() > 5 && mrkdwn.iter().all(|t| t["verbatim"] == true), "{mrkdwn:?}");
        assert!(!m.to_string().contains("open the page"), "no page link in the channel: every email has its own");
        let text = m.to_string();
        assert!(!text.contains("<!channel>") && !text.contains("<https://evil"), "{text}");
        assert!(text.contains("&lt;!channel&gt;") && text.contains("$70.08/month") && text.contains("▁▁▂"));
        assert!(!m["blocks"][4]["text"]["text"].as_str().unwrap().contains("```"), "a model cannot close the quote");
    }

    #[test]
    fn the_decided_message_has_no_buttons_and_names_the_approver() {
        let m = decided_message(&proposal(), ApprovalAction::Approve, "slack:U024BE7LH/alice", "2026-11-30T10:00:00Z");
        assert!(!m.to_string().contains("\"actions\""));
        assert!(m.to_string().contains("Approved by slack:U024BE7LH/alice at 2026-11-30T10:00:00Z"));
        let o = outcome_message(&proposal(), "Approved by alice", "snapshotted and stopped");
        assert!(o.to_string().contains("Outcome: snapshotted and stopped"));
    }
}
