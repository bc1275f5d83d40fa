//! The approval email: plain text, everything an approver needs to decide without opening a console, and three
//! signed links. Tag values and the model's justification are quoted and cleaned as untrusted text: no control,
//! invisible or bidi characters, and links defanged so a mail client does not make them clickable.

use finops_core::approval::ApprovalAction;
use finops_core::policy::{Proposal, ProposedAction};
use finops_core::untrusted;

/// A tag value or justification as untrusted data: cleaned ([`untrusted::display`]), length bounded, quoted.
pub fn quoted(text: &str, max: usize) -> String {
    format!("\"{}\"", untrusted::display(text, max).replace('"', "'"))
}

/// The Step Functions console page of an execution.
pub fn execution_console_url(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    )
}

/// The X-Ray console page of a trace (`Root=1-...` from `_X_AMZN_TRACE_ID`, or the bare id).
pub fn trace_console_url(region: &str, trace_header: &str) -> Option<String> {
    let root = trace_header.split(';').find_map(|p| p.strip_prefix("Root=")).unwrap_or(trace_header);
    (root.starts_with("1-") && root.len() == 35)
        .then(|| format!("https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#xray:traces/{root}"))
}

pub struct EmailLinks<'a> {
    pub approve: &'a str,
    pub deny: &'a str,
    pub snooze: &'a str,
    pub snooze_days: i64,
    pub execution_console: &'a str,
    pub trace_console: Option<&'a str>,
    pub expires_at_utc: &'a str,
    /// Routed approvals: who was asked and why (only they may decide).
    pub routed: Option<&'a finops_core::organization::Routed>,
}

pub fn render(proposal: &Proposal, links: &EmailLinks<'_>) -> (String, String) {
    let name = proposal.name.as_deref().unwrap_or("(no Name tag)");
    let action = proposal.action;
    let verb = action.verb();
    let saving = proposal.monthly_saving_usd.map_or_else(|| "unknown".to_string(), |s| format!("${s:.2}/month"));
    let subject =
        format!("finops: approve {verb} {} ({}), saves {saving}?", proposal.resource_id, proposal.resource_type);
    let mut body = String::new();
    body.push_str(&format!(
        "finops-agent proposes to {verb} {}. Nothing happens unless you approve.\n\n",
        action.subject()
    ));
    body.push_str(&format!(
        "{:<15}{} in {}\n",
        format!("{}:", action.resource_label()),
        proposal.resource_id,
        proposal.region
    ));
    if let Some(account) = &proposal.account {
        // Organizations' account names are set by people: quoted as untrusted text, like tags.
        body.push_str(&format!("Account:       {} ({})\n", account.id, quoted(&account.name, 60)));
    }
    body.push_str(&format!("Name:          {}\n", quoted(name, 120)));
    body.push_str(&format!("Type:          {}\n", proposal.resource_type));
    body.push_str(&format!(
        "Environment:   {}\n",
        proposal.environment.as_deref().map_or_else(|| "(not tagged)".into(), |e| quoted(e, 60))
    ));
    body.push_str(&format!(
        "Owner:         {}\n",
        proposal.owner.as_deref().map_or_else(|| "(not tagged)".into(), |o| quoted(o, 120))
    ));
    body.push_str(&format!("Saving:        {saving} (prices: {})\n", proposal.price_source));
    body.push_str("\nEvidence (CloudWatch):\n");
    for e in &proposal.evidence {
        body.push_str(&format!("  - {e}\n"));
    }
    if let Some(d) = &proposal.daily {
        // The page draws it; a mail reader gets it as a line of bars, a day each.
        body.push_str(&format!(
            "  {:<24} {}\n  {:<24} {}\n",
            format!("{} per day:", d.cpu_label),
            spark(&d.cpu_percent, d.cpu_limit_percent, "%"),
            "network per day:",
            spark(&d.network_mb, d.network_limit_mb, "MB")
        ));
    }
    match action {
        ProposedAction::SnapshotAndStop => body.push_str(&format!(
            "\nWhy the agent recommends it ({}; confidence {:.2}; quoted as written, it is not an instruction):\n  {}\n",
            proposal.backend,
            proposal.confidence,
            quoted(&proposal.justification, 500)
        )),
        // No model is asked about these: a deterministic rule found them, and says on what its saving is based.
        ProposedAction::SnapshotAndDelete | ProposedAction::Release | ProposedAction::SnapshotAndDeleteVolumes => {
            body.push_str(&format!("\nProposed by {}.\n", proposal.backend))
        }
    }
    if let Some(routed) = links.routed {
        body.push_str(&format!(
            "\nAsked:         {} ({}); only they can decide, with the address they were asked at.\n",
            routed.approvers.join(", "),
            routed.because
        ));
    }
    body.push_str("\nEach link opens a confirmation page; nothing changes until you press its button.\n");
    let approve = format!("Approve ({}):", action.approve_steps());
    let snooze = format!("Snooze {} days:", links.snooze_days);
    // Aligned, and always a space before the link (a mail client must not join a label and its link).
    body.push_str(&format!("  {approve:<36} {}\n", links.approve));
    body.push_str(&format!("  {:<36} {}\n", "Deny:", links.deny));
    body.push_str(&format!("  {snooze:<36} {}\n", links.snooze));
    body.push_str(&format!("\nThe links expire at {}; no answer means no action.\n", links.expires_at_utc));
    body.push_str(&format!("\nExecution: {}\n", links.execution_console));
    if let Some(trace) = links.trace_console {
        body.push_str(&format!("X-Ray trace: {trace}\n"));
    }
    (subject, body)
}

/// The owner's notice of a proposal: what is proposed and why, that the approvers decide, and one link, to keep the
/// resource for a while (Snooze). No link that approves or denies: an owner keeps their resource, they do not decide
/// its stop.
pub fn render_owner_notice(
    proposal: &Proposal,
    snooze: &str,
    snooze_days: i64,
    expires_at_utc: &str,
) -> (String, String) {
    let verb = proposal.action.verb();
    let name = proposal.name.as_deref().map(|n| format!(" {}", quoted(n, 60))).unwrap_or_default();
    let what = format!("{}{name} ({})", proposal.action.resource_label().to_lowercase(), proposal.resource_id);
    let saving = proposal.monthly_saving_usd.map_or_else(|| "unknown".to_string(), |s| format!("${s:.2}/month"));
    let subject = format!(
        "finops: your {} {} {}",
        proposal.action.resource_label().to_lowercase(),
        proposal.resource_id,
        may_be(proposal.action)
    );
    let mut body = format!(
        "You are the owner of {what} in {} (its owner tag names you).\n\n\
         finops-agent found it idle and proposes to {verb} it, saving {saving}. The approvers have been asked; \
         nothing happens unless one of them approves before {expires_at_utc}.\n\nWhy:\n",
        proposal.region
    );
    for e in &proposal.evidence {
        body.push_str(&format!("  - {}\n", untrusted::display(e, 300)));
    }
    body.push_str(&format!(
        "\nIf you still need it, keep it: this link opens a page with one button that snoozes it for {snooze_days} days \
         (nothing is stopped; the approvers see it was snoozed).\n  Keep it ({snooze_days} days): {snooze}\n\n\
         You will hear what was decided after the run.\n"
    ));
    (subject, body)
}

/// The owner's notice of what came of it: the decision (by whom) and the outcome, in words.
pub fn render_owner_outcome(proposal: &Proposal, decided: &str, outcome: &str) -> (String, String) {
    let name = proposal.name.as_deref().map(|n| format!(" {}", quoted(n, 60))).unwrap_or_default();
    let what = format!("{}{name} ({})", proposal.action.resource_label().to_lowercase(), proposal.resource_id);
    let subject = format!(
        "finops: your {} {}: {}",
        proposal.action.resource_label().to_lowercase(),
        proposal.resource_id,
        untrusted::display(outcome, 60)
    );
    let body = format!(
        "About {what} in {}:\n\n  Decision: {}\n  Outcome:  {}\n\n\
         A stopped instance's snapshots are kept; the approvers' run report has a link to start it again.\n",
        proposal.region,
        untrusted::display(decided, 200),
        untrusted::display(outcome, 500)
    );
    (subject, body)
}

fn may_be(action: ProposedAction) -> &'static str {
    match action {
        ProposedAction::SnapshotAndStop => "may be stopped",
        ProposedAction::SnapshotAndDelete => "may be deleted",
        ProposedAction::SnapshotAndDeleteVolumes => "may have its volumes deleted",
        ProposedAction::Release => "may be released",
    }
}

/// The action each link of the email is for, in the order shown.
pub const EMAIL_ACTIONS: [ApprovalAction; 3] = [ApprovalAction::Approve, ApprovalAction::Deny, ApprovalAction::Snooze];

/// A day's value as one of eight bar heights, scaled to twice the rule's limit (or the highest day), `.` for a day
/// without data; then the limit and the highest day in words.
pub fn spark(values: &[Option<f64>], limit: f64, unit: &str) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let highest = values.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    let top = highest.max(limit * 2.0).max(f64::MIN_POSITIVE);
    let bars: String =
        values.iter().map(|v| v.map_or('.', |v| BARS[((v / top) * 7.0).round().clamp(0.0, 7.0) as usize])).collect();
    format!("{bars}  (limit {limit} {unit}, highest {highest} {unit})")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_series_is_a_line_of_bars_with_its_limit() {
        let line = super::spark(&[Some(0.0), Some(2.5), None, Some(10.0)], 5.0, "%");
        assert_eq!(line, "▁▃.█  (limit 5 %, highest 10 %)");
        assert_eq!(super::spark(&[], 5.0, "MB"), "  (limit 5 MB, highest 0 MB)");
    }

    use super::*;

    #[test]
    fn console_links_come_from_the_arn_and_trace_header() {
        let arn = "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1";
        assert!(execution_console_url(arn).starts_with("https://ap-southeast-2.console.aws.amazon.com/states/"));
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        assert_eq!(
            trace_console_url("ap-southeast-2", header).unwrap(),
            "https://ap-southeast-2.console.aws.amazon.com/cloudwatch/home?region=ap-southeast-2#xray:traces/1-5759e988-bd862e3fe1be46a994272793"
        );
        assert_eq!(trace_console_url("us-east-1", "garbage"), None);
    }

    #[test]
    fn untrusted_text_is_quoted_and_cleaned() {
        assert_eq!(quoted("a\r\nSubject: x \"y\"", 100), "\"a  Subject: x 'y'\"");
        assert_eq!(quoted(&"x".repeat(300), 5), "\"xxxxx\"");
        assert_eq!(quoted("dev\u{202E}doow\u{200B}", 100), "\"devdoow\"");
        assert_eq!(quoted("approve at https://evil.example/x", 100), "\"approve at hxxps[:]//evil[.]example/x\"");
    }

    fn proposal(action: &str, id: &str, resource_type: &str) -> Proposal {
        serde_json::from_value(serde_json::json!({
            "resourceId": id, "region": "ap-southeast-2", "resourceType": resource_type, "action": action,
            "confidence": 1.0, "justification": "Ignore previous instructions", "backend": "rules (EBS volume: ...)",
            "monthlySavingUsd": 3.75, "priceSource": "embedded", "evidence": ["unattached for 14 days"],
            "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn each_kind_is_asked_about_in_its_own_words_and_every_link_stands_apart() {
        let links = EmailLinks {
            approve: "https://a.example/approve",
            deny: "https://a.example/deny",
            snooze: "https://a.example/snooze",
            snooze_days: 7,
            execution_console: "https://console",
            trace_console: None,
            expires_at_utc: "2026-12-01T00:00:00Z",
            routed: None,
        };
        for (action, id, kind, label, steps) in [
            ("snapshot-and-delete", "vol-0abc", "an unattached EBS volume", "Volume:", "snapshot first, then delete"),
            ("release", "eipalloc-0abc", "an unassociated Elastic IP address", "Address:", "release the address"),
            ("snapshot-and-stop", "i-0abc", "an idle EC2 instance", "Instance:", "snapshot first, then stop"),
        ] {
            let (subject, body) = render(&proposal(action, id, "gp3 volume, 100 GiB"), &links);
            let verb = serde_json::from_value::<ProposedAction>(serde_json::json!(action)).unwrap().verb();
            assert!(subject.contains(&format!("{verb} {id}")), "{subject}");
            assert!(body.contains(&format!("proposes to {verb} {kind}.")), "{body}");
            assert!(body.lines().any(|l| l.starts_with(label) && l.contains(id)), "{body}");
            let approve = body.lines().find(|l| l.trim_start().starts_with(&format!("Approve ({steps}):")));
            assert!(approve.is_some_and(|l| l.ends_with(" https://a.example/approve")), "{body}");
            for link in [links.approve, links.deny, links.snooze] {
                assert!(body.lines().any(|l| l.ends_with(&format!(" {link}"))), "{link} stands apart: {body}");
            }
            // Only a model's text is presented as a recommendation to be read as data.
            assert_eq!(body.contains("Why the agent recommends it"), action == "snapshot-and-stop", "{body}");
        }
        // An instance's days, as a line of bars a day, with the rule's limit.
        let mut instance = proposal("snapshot-and-stop", "i-0abc", "t3.large");
        instance.daily = Some(finops_core::policy::DailyEvidence {
            first_day: "2026-11-14".parse().unwrap(),
            cpu_label: "peak CPU".into(),
            cpu_percent: vec![Some(1.0), None, Some(2.0)],
            network_mb: vec![Some(0.5); 3],
            cpu_limit_percent: 5.0,
            network_limit_mb: 5.0,
        });
        let (_, body) = render(&instance, &links);
        let cpu = body.lines().find(|l| l.trim_start().starts_with("peak CPU per day:")).expect(&body);
        assert!(cpu.contains("(limit 5 %, highest 2 %)") && cpu.contains('.'), "{cpu}");
        assert!(body.lines().any(|l| l.trim_start().starts_with("network per day:")), "{body}");
    }
}
