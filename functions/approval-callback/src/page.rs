//! The HTML pages. Every value from the proposal is escaped, and tag values and the agent's justification are
//! shown as untrusted text (no invisible or bidi characters, links defanged).

use finops_approval_store::ApprovalRecord;
use finops_core::approval::ApprovalAction;
use finops_core::policy::ProposedAction;
use finops_core::untrusted;

pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
table{border-collapse:collapse}td{padding:.2rem .8rem .2rem 0;vertical-align:top}\
button{font-size:1rem;padding:.5rem 1rem;margin-right:.5rem;cursor:pointer}.primary{font-weight:bold}\
.evidence li{margin:.2rem 0}blockquote{border-left:3px solid #aaa;margin:0;padding-left:.8rem;color:#444}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

pub fn notice(title: &str, message: &str) -> String {
    layout(title, &format!("<h1>{}</h1><p id=\"message\">{}</p>", esc(title), esc(message)))
}

/// The confirmation page of one link: it can only record the decision of the link that was followed. Its one button
/// submits that decision (so Enter in the name field does too); the other decisions are plain links to their own
/// pages. `post_to` is the followed link's own path and query.
pub fn confirmation(
    record: &ApprovalRecord,
    chosen: ApprovalAction,
    post_to: &str,
    others: &[(ApprovalAction, String)],
) -> String {
    let p = &record.proposal;
    let saving = p.monthly_saving_usd.map_or_else(|| "unknown".into(), |s| format!("${s:.2} per month"));
    let row = |k: &str, v: &str| format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&untrusted::display(v, 300)));
    let evidence: String = p.evidence.iter().map(|e| format!("<li>{}</li>", esc(e))).collect();
    let who = p
        .name
        .as_deref()
        .map_or_else(|| p.resource_id.clone(), |n| format!("{} ({})", untrusted::display(n, 80), p.resource_id));
    let action = p.action;
    let (question, explain, button) = match chosen {
        ApprovalAction::Approve => (
            format!("Approve {} {who}?", action.gerund()),
            action.approve_explained(),
            format!("Approve: {}", action.approve_steps()),
        ),
        ApprovalAction::Deny => (
            format!("Deny {} {who}?", action.gerund()),
            action.deny_explained(),
            match action {
                ProposedAction::SnapshotAndStop => "Deny: leave it running".to_owned(),
                ProposedAction::SnapshotAndDelete
                | ProposedAction::Release
                | ProposedAction::SnapshotAndDeleteVolumes => "Deny: leave it as it is".to_owned(),
            },
        ),
        ApprovalAction::Snooze => (
            format!("Snooze {who}?"),
            "It will be tagged and left alone until the snooze ends. Nothing has happened yet.",
            "Snooze: leave it alone for now".to_owned(),
        ),
        ApprovalAction::Undo => (
            match action {
                ProposedAction::SnapshotAndStop => format!("Start {who} again?"),
                ProposedAction::SnapshotAndDelete => format!("Recreate {who} from its snapshot?"),
                ProposedAction::Release | ProposedAction::SnapshotAndDeleteVolumes => {
                    format!("Undo {} {who}?", action.gerund())
                }
            },
            action.undo_explained(),
            format!("Undo: {}", action.undo_label().unwrap_or("nothing to undo").to_lowercase()),
        ),
    };
    let why = match (chosen, action) {
        (ApprovalAction::Undo, _) => {
            let done = record.undo.as_ref();
            format!(
                "<h2>What was done</h2><p>{} {} at {}, approved by {}.</p>",
                esc(action.verb()),
                esc(&p.resource_id),
                esc(done.map_or("?", |u| u.acted_at.as_str())),
                esc(&untrusted::display(done.and_then(|u| u.approved_by.as_deref()).unwrap_or("someone"), 200))
            )
        }
        (_, action) => match action {
            ProposedAction::SnapshotAndStop => format!(
                "<h2>Why the agent recommends stopping it</h2><blockquote>{}</blockquote>\
             <p>Recommended by {} with confidence {:.2}. The recommendation is data, not an instruction.</p>",
                esc(&untrusted::display(&p.justification, 500)),
                esc(&p.backend),
                p.confidence
            ),
            // No model is asked about these: a deterministic rule found them, and says on what its saving is based.
            ProposedAction::SnapshotAndDelete | ProposedAction::Release | ProposedAction::SnapshotAndDeleteVolumes => {
                format!("<h2>Why it is proposed</h2><p>Proposed by {}.</p>", esc(&p.backend))
            }
        },
    };
    let other_links: String = others
        .iter()
        .filter(|(a, _)| *a != chosen)
        .map(|(a, href)| format!("<a id=\"{0}-instead\" href=\"{1}\">{0} instead</a>", a.as_str(), esc(href)))
        .collect::<Vec<_>>()
        .join(" · ");
    let body = format!(
        "<h1>{question}</h1>\
         <p>{explain}</p>\
         <table>{rows}</table>\
         <h2>Evidence</h2><ul class=\"evidence\">{evidence}</ul>{why}\
         <form method=\"post\" action=\"{post_to}\"><input type=\"hidden\" name=\"decision\" value=\"{decision}\">\
         {routed}<p><label>Your name or email (for the audit trail) \
         <input name=\"approver\" id=\"approver\" required maxlength=\"200\" autocomplete=\"email\"></label></p>\
         <p><button type=\"submit\" id=\"{decision}\" class=\"primary\">{button}</button></p></form>\
         {others}",
        rows = [
            row(action.resource_label(), &format!("{} ({})", p.resource_id, p.region)),
            p.account.as_ref().map_or_else(String::new, |a| row("Account", &format!("{} ({})", a.id, a.name))),
            row("Name", p.name.as_deref().unwrap_or("(no Name tag)")),
            row("Type", &p.resource_type),
            row("Environment", p.environment.as_deref().unwrap_or("(not tagged)")),
            row("Owner", p.owner.as_deref().unwrap_or("(not tagged)")),
            row("Estimated saving", &format!("{saving} ({})", p.price_source)),
        ]
        .concat(),
        question = esc(&question),
        post_to = esc(post_to),
        decision = chosen.as_str(),
        others = if other_links.is_empty() {
            String::new()
        } else {
            format!("<p class=\"others\">Not what you meant? {other_links}</p>")
        },
        routed = record.routed.as_ref().map_or_else(String::new, |r| format!(
            "<p class=\"routed\">Only the approvers of this account decide ({}): {}. Enter the address this email \
             was sent to.</p>",
            esc(&r.because),
            esc(&r.approvers.join(", "))
        )),
    );
    layout(&question, &body)
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot; "
        );
    }
}
