//! The HTML pages. Every value from the proposal is escaped, and tag values and the agent's justification are
//! shown as untrusted text (no invisible or bidi characters, links defanged).

use finops_approval_store::ApprovalRecord;
use finops_core::approval::ApprovalAction;
use finops_core::policy::{DailyEvidence, ProposedAction};
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

/// The confirmation page of one link: it can only record the decision of the link that was followed, as the
/// person the link was sent to. Its one button submits that decision; it shows no other decision's link (each person
/// has their own in their email), and asks for no name (the link says who decides). `post_to` is the followed link's
/// own path and query.
pub fn confirmation(record: &ApprovalRecord, chosen: ApprovalAction, post_to: &str, recipient: &str) -> String {
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
        ApprovalAction::OwnerSnooze => (
            format!("Keep {who}?"),
            "As its owner, you can keep it: it will be tagged and left alone until the snooze ends, and the \
             approvers see that its owner kept it. Nothing has happened yet.",
            "Keep it: snooze it for now".to_owned(),
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
    let body = format!(
        "<h1>{question}</h1>\
         <p>{explain}</p>\
         <table>{rows}</table>\
         <h2>Evidence</h2><ul class=\"evidence\">{evidence}</ul>{chart}{why}\
         <form method=\"post\" action=\"{post_to}\"><input type=\"hidden\" name=\"decision\" value=\"{decision}\">\
         <p class=\"decider\">You decide as <strong id=\"decider\">{recipient}</strong>: this link was sent to that \
         address, and the audit trail records the decision as theirs (a forwarded email still decides as its \
         recipient). It records this one decision only.</p>\
         <p><button type=\"submit\" id=\"{decision}\" class=\"primary\">{button}</button></p></form>",
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
        chart = p.daily.as_ref().map_or_else(String::new, chart),
        post_to = esc(post_to),
        decision = chosen.as_str(),
        recipient = esc(recipient),
    );
    layout(&question, &body)
}

/// One series as a small bar chart: a bar per day (red above the limit, green below), a missing day as a grey tick,
/// the rule's limit as a dashed line, the first and last day under it.
fn bars(title: &str, unit: &str, values: &[Option<f64>], limit: f64, first: &str, last: &str) -> String {
    let (width, height, left, top, plot_h) = (300.0_f64, 140.0_f64, 34.0_f64, 18.0_f64, 92.0_f64);
    let plot_w = width - left - 8.0;
    let top_value = values.iter().flatten().fold(limit * 2.0, |m, v| m.max(*v)).max(f64::MIN_POSITIVE) * 1.1;
    let y = |v: f64| top + plot_h - (v / top_value * plot_h).min(plot_h);
    let slot = plot_w / values.len().max(1) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title>\
         <text x=\"{left}\" y=\"12\" font-size=\"11\" fill=\"#333\">{t}</text>\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#999\"/>",
        t = esc(title),
        base = top + plot_h,
        right = left + plot_w,
    );
    for (i, v) in values.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        out.push_str(&match v {
            Some(v) => format!(
                "<rect class=\"day\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v} {}</title></rect>",
                y(*v),
                (top + plot_h - y(*v)).max(0.5),
                if *v >= limit { "#c62828" } else { "#2e7d32" },
                esc(unit)
            ),
            None => format!(
                "<rect class=\"no-data\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"2\" fill=\"#bbb\"><title>no data</title></rect>",
                top + plot_h - 2.0
            ),
        });
    }
    out.push_str(&format!(
        "<line class=\"limit\" x1=\"{left}\" y1=\"{ly:.1}\" x2=\"{right}\" y2=\"{ly:.1}\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>\
         <text x=\"2\" y=\"{ty:.1}\" font-size=\"10\" fill=\"#555\">{limit}</text>\
         <text x=\"{left}\" y=\"{dy}\" font-size=\"10\" fill=\"#555\">{}</text>\
         <text x=\"{right}\" y=\"{dy}\" font-size=\"10\" fill=\"#555\" text-anchor=\"end\">{}</text></svg>",
        esc(first),
        esc(last),
        ly = y(limit),
        ty = y(limit) + 3.0,
        right = left + plot_w,
        dy = top + plot_h + 14.0,
    ));
    out
}

/// The lookback as a picture beside the words: the CPU statistic the idle rule reads and the network per day, each
/// with the rule's limit. Inline SVG: no script and nothing fetched, so the page's content security policy holds.
pub fn chart(d: &DailyEvidence) -> String {
    let n = d.cpu_percent.len().max(d.network_mb.len());
    let last = d.first_day + chrono::Duration::days(n.saturating_sub(1) as i64);
    let (first, last) = (d.first_day.to_string(), last.to_string());
    format!(
        "<h2>The lookback, day by day</h2><p class=\"chart\">{}{}</p>\
         <p>Dashed: the idle rule's limit ({} % {}, {} MB network a day). Red: a day above it.</p>",
        bars(&format!("{} per day (%)", d.cpu_label), "%", &d.cpu_percent, d.cpu_limit_percent, &first, &last),
        bars("network in + out per day (MB)", "MB", &d.network_mb, d.network_limit_mb, &first, &last),
        d.cpu_limit_percent,
        esc(&d.cpu_label),
        d.network_limit_mb
    )
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn the_chart_draws_a_bar_per_day_the_limit_and_no_script() {
        let d = super::DailyEvidence {
            first_day: chrono::NaiveDate::from_ymd_opt(2026, 11, 14).unwrap(),
            cpu_label: "peak CPU".into(),
            cpu_percent: (0..14)
                .map(|i| {
                    if i == 3 {
                        None
                    } else if i == 9 {
                        Some(40.0)
                    } else {
                        Some(2.0)
                    }
                })
                .collect(),
            network_mb: vec![Some(1.0); 14],
            cpu_limit_percent: 5.0,
            network_limit_mb: 5.0,
        };
        let svg = super::chart(&d);
        assert_eq!(svg.matches("<svg").count(), 2);
        assert_eq!(svg.matches("class=\"day\"").count(), 13 + 14);
        assert_eq!(svg.matches("class=\"no-data\"").count(), 1);
        assert_eq!(svg.matches("class=\"limit\"").count(), 2);
        assert_eq!(svg.matches("#c62828").count(), 1, "one day above the limit");
        assert!(svg.contains("2026-11-14") && svg.contains("2026-11-27"), "first and last day");
        for forbidden in ["<script", "href", "javascript:", "<image", "<foreignObject"] {
            assert!(!svg.contains(forbidden), "{forbidden}");
        }
    }

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\n"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot; "
        );
    }
}
