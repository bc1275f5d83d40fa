//! The HTML pages. Every value from the proposal is escaped: tag values and the agent's justification are
//! untrusted text.

use finops_approvals::ApprovalRecord;
use finops_core::approval::ApprovalAction;

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

pub fn confirmation(record: &ApprovalRecord, chosen: ApprovalAction, buttons: &[(ApprovalAction, String)]) -> String {
    let p = &record.proposal;
    let saving = p.monthly_saving_usd.map_or_else(|| "unknown".into(), |s| format!("${s:.2} per month"));
    let row = |k: &str, v: &str| format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    let evidence: String = p.evidence.iter().map(|e| format!("<li>{}</li>", esc(e))).collect();
    let form_buttons: String = buttons
        .iter()
        .map(|(action, href)| {
            let label = match action {
                ApprovalAction::Approve => "Approve: snapshot, then stop",
                ApprovalAction::Deny => "Deny",
                ApprovalAction::Snooze => "Snooze",
            };
            let class = if *action == chosen { " class=\"primary\"" } else { "" };
            format!("<button type=\"submit\" name=\"decision\" value=\"{0}\" id=\"{0}\" formaction=\"{1}\"{class}>{2}</button>", action.as_str(), esc(href), label)
        })
        .collect();
    let body = format!(
        "<h1>Stop idle instance {id}?</h1>\
         <p>finops-agent proposes to snapshot every EBS volume of this instance and then stop it. \
         Nothing has happened yet; nothing happens unless you press a button.</p>\
         <table>{rows}</table>\
         <h2>Evidence</h2><ul class=\"evidence\">{evidence}</ul>\
         <h2>Why the agent recommends it</h2><blockquote>{justification}</blockquote>\
         <p>Recommended by {backend} with confidence {confidence:.2}. The link you followed was for <strong>{chosen}</strong>.</p>\
         <form method=\"post\"><p><label>Your name or email (for the audit trail) \
         <input name=\"approver\" id=\"approver\" required maxlength=\"200\" autocomplete=\"email\"></label></p>\
         <p>{form_buttons}</p></form>",
        id = esc(&p.instance_id),
        rows = [
            row("Instance", &format!("{} ({})", p.instance_id, p.region)),
            row("Name", p.name.as_deref().unwrap_or("(no Name tag)")),
            row("Type", &p.instance_type),
            row("Environment", p.environment.as_deref().unwrap_or("(not tagged)")),
            row("Owner", p.owner.as_deref().unwrap_or("(not tagged)")),
            row("Estimated saving", &format!("{saving} ({})", p.price_source)),
        ]
        .concat(),
        justification = esc(&p.justification),
        backend = esc(&p.backend),
        confidence = p.confidence,
        chosen = chosen.as_str(),
    );
    layout(&format!("Approve stopping {}?", p.instance_id), &body)
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
