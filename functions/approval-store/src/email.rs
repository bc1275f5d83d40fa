//! The approval email: plain text, everything an approver needs to decide without opening a console, and three
//! signed links. Tag values and the model's justification are quoted and cleaned as untrusted text: no control,
//! invisible or bidi characters, and links defanged so a mail client does not make them clickable.

use finops_core::approval::ApprovalAction;
use finops_core::organization::Audience;
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

/// One proposal of a digest, with the links signed for the digest's recipient.
pub struct DigestItem<'a> {
    pub proposal: &'a Proposal,
    pub audience: &'a Audience,
    pub approve: String,
    pub deny: String,
    pub snooze: String,
}

/// One approver's message of a run: every proposal they are asked about, each with its own links, evidence and
/// saving. One message per recipient per run: an approver gets one mail a day whatever the fleet, and nobody nears
/// SNS's email delivery rate.
pub struct Digest<'a> {
    pub recipient: &'a str,
    pub run_id: &'a str,
    pub items: Vec<DigestItem<'a>>,
    pub snooze_days: i64,
    pub execution_console: &'a str,
    pub trace_console: Option<&'a str>,
    pub expires_at_utc: &'a str,
}

/// The heading that starts each proposal's section of a digest: `=== 2 of 5: stop instance i-0abc ===`.
pub fn section_heading(n: usize, of: usize, proposal: &Proposal) -> String {
    format!("=== {n} of {of}: {} {} ===", proposal.action.verb(), proposal.resource_id)
}

fn saving_of(proposal: &Proposal) -> String {
    proposal.monthly_saving_usd.map_or_else(|| "unknown".to_string(), |s| format!("${s:.2}/month"))
}

/// What a proposal is, as a section of a message: the resource, its facts (untrusted text quoted), the evidence and
/// why it is proposed.
fn proposal_facts(proposal: &Proposal, body: &mut String) {
    let name = proposal.name.as_deref().unwrap_or("(no Name tag)");
    let action = proposal.action;
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
    body.push_str(&format!("Saving:        {} (prices: {})\n", saving_of(proposal), proposal.price_source));
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
}

/// The digest: (subject, body).
pub fn render_digest(d: &Digest<'_>) -> (String, String) {
    let total: f64 = d.items.iter().filter_map(|i| i.proposal.monthly_saving_usd).sum();
    let count = d.items.len();
    let subject =
        format!("finops: {count} proposal{} to decide, saves ${total:.2}/month", if count == 1 { "" } else { "s" });
    let mut body = format!(
        "finops-agent's run {} proposes {count} change{} that you may decide. Nothing happens unless an approver \
         approves.\n\n\
         This email was sent to {}. Its links are yours: each opens a page that records your decision as {} \
         (a forwarded email still decides as you, and the audit trail says so). Each link records only its own \
         decision.\n\n",
        d.run_id,
        if count == 1 { "" } else { "s" },
        d.recipient,
        d.recipient
    );
    body.push_str(&format!("Proposed ({count}, ${total:.2}/month in all):\n"));
    for (i, item) in d.items.iter().enumerate() {
        let p = item.proposal;
        let name = p.name.as_deref().map(|n| format!(" {}", quoted(n, 40))).unwrap_or_default();
        body.push_str(&format!(
            "  {}. {} {}{name} ({}) in {}, saves {}\n",
            i + 1,
            p.action.verb(),
            p.action.resource_label().to_lowercase(),
            p.resource_id,
            p.region,
            saving_of(p)
        ));
    }
    for (i, item) in d.items.iter().enumerate() {
        let p = item.proposal;
        body.push_str(&format!("\n{}\n", section_heading(i + 1, count, p)));
        body.push_str(&format!(
            "finops-agent proposes to {} {}. Nothing happens unless one of its approvers approves.\n\n",
            p.action.verb(),
            p.action.subject()
        ));
        proposal_facts(p, &mut body);
        body.push_str(&format!(
            "\nAsked:         {} ({}); only they decide, each with their own links.\n",
            item.audience.approvers.join(", "),
            item.audience.because
        ));
        body.push_str("Each link opens a confirmation page; nothing changes until you press its button.\n");
        let approve = format!("Approve ({}):", p.action.approve_steps());
        let snooze = format!("Snooze {} days:", d.snooze_days);
        // Aligned, and always a space before the link (a mail client must not join a label and its link).
        body.push_str(&format!("  {approve:<36} {}\n", item.approve));
        body.push_str(&format!("  {:<36} {}\n", "Deny:", item.deny));
        body.push_str(&format!("  {snooze:<36} {}\n", item.snooze));
    }
    body.push_str(&format!("\nThe links expire at {}; no answer means no action.\n", d.expires_at_utc));
    body.push_str(&format!("\nExecution: {}\n", d.execution_console));
    if let Some(trace) = d.trace_console {
        body.push_str(&format!("X-Ray trace: {trace}\n"));
    }
    (subject, body)
}

/// One resource of an owner's notice, with its owner-snooze link (signed for the owner).
pub struct OwnerItem<'a> {
    pub proposal: &'a Proposal,
    pub keep: String,
}

/// The owner's notice of a run's proposals about their resources: what is proposed and why, that the approvers
/// decide, and one link each, to keep the resource for a while (an owner's snooze, a link of its own kind). No link
/// that approves or denies: an owner keeps their resource, they do not decide its stop.
pub fn render_owner_notice(
    owner: &str,
    items: &[OwnerItem<'_>],
    snooze_days: i64,
    expires_at_utc: &str,
) -> (String, String) {
    let subject = match items {
        [one] => format!(
            "finops: your {} {} {}",
            one.proposal.action.resource_label().to_lowercase(),
            one.proposal.resource_id,
            may_be(one.proposal.action)
        ),
        many => format!("finops: {} of your resources may be stopped or cleaned up", many.len()),
    };
    let mut body = format!(
        "This email was sent to {owner}: the owner tag of these resources names you.\n\n\
         finops-agent found them idle. The approvers have been asked; nothing happens unless one of them approves \
         before {expires_at_utc}. If you still need one, keep it: its link opens a page with one button that snoozes \
         it for {snooze_days} days (nothing is stopped; the approvers see it was kept by its owner).\n"
    );
    for item in items {
        let p = item.proposal;
        let name = p.name.as_deref().map(|n| format!(" {}", quoted(n, 60))).unwrap_or_default();
        let what = format!("{}{name} ({})", p.action.resource_label().to_lowercase(), p.resource_id);
        body.push_str(&format!(
            "\n--- {what} in {}: proposed to {} it, saving {} ---\nWhy:\n",
            p.region,
            p.action.verb(),
            saving_of(p)
        ));
        for e in &p.evidence {
            body.push_str(&format!("  - {}\n", untrusted::display(e, 300)));
        }
        body.push_str(&format!("  Keep it ({snooze_days} days): {}\n", item.keep));
    }
    body.push_str("\nYou will hear what was decided after the run.\n");
    (subject, body)
}

/// One undo a run offers a recipient.
pub struct UndoItem<'a> {
    pub proposal: &'a Proposal,
    /// "Start it again", "Recreate from snapshot".
    pub label: &'a str,
    pub url: String,
    pub approved_by: &'a str,
}

/// What a run did that the recipient may undo, with one single-use link each (signed for them), valid for the undo
/// window. Sent only to the approval's own audience: undo links never go to the run report, the execution's
/// history or a log.
pub fn render_undo_offer(recipient: &str, run_id: &str, items: &[UndoItem<'_>], window_days: i64) -> (String, String) {
    let subject = format!("finops: run {run_id} acted on {} resource(s); undo links inside", items.len());
    let mut body = format!(
        "finops-agent's run {run_id} did what was approved. This email was sent to {recipient}; each link below is \
         yours, single use and valid {window_days} days, and opens a page whose button undoes that one action as \
         {recipient}. An undo acts only if the resource is still as finops-agent left it.\n"
    );
    for item in items {
        let p = item.proposal;
        let name = p.name.as_deref().map(|n| format!(" {}", quoted(n, 60))).unwrap_or_default();
        body.push_str(&format!(
            "\n- {} {}{name} ({}) in {}, approved by {}\n  {}: {}\n",
            p.action.verb(),
            p.action.resource_label().to_lowercase(),
            p.resource_id,
            p.region,
            untrusted::display(item.approved_by, 120),
            item.label,
            item.url
        ));
    }
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
         A stopped instance's snapshots are kept; its approvers were sent a link to start it again.\n",
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

    fn audience() -> Audience {
        Audience {
            approvers: vec!["ana@example.com".into(), "bo@example.com".into()],
            because: "account 111111111111".into(),
            slack_channel: None,
            slack_users: vec![],
        }
    }

    fn digest<'a>(items: Vec<DigestItem<'a>>) -> Digest<'a> {
        Digest {
            recipient: "ana@example.com",
            run_id: "run-1",
            items,
            snooze_days: 7,
            execution_console: "https://console",
            trace_console: None,
            expires_at_utc: "2026-12-01T00:00:00Z",
        }
    }

    fn item<'a>(proposal: &'a Proposal, audience: &'a Audience, tag: &str) -> DigestItem<'a> {
        DigestItem {
            proposal,
            audience,
            approve: format!("https://a.example/approve-{tag}"),
            deny: format!("https://a.example/deny-{tag}"),
            snooze: format!("https://a.example/snooze-{tag}"),
        }
    }

    #[test]
    fn each_kind_is_asked_about_in_its_own_words_and_every_link_stands_apart() {
        let audience = audience();
        for (action, id, kind, label, steps) in [
            ("snapshot-and-delete", "vol-0abc", "an unattached EBS volume", "Volume:", "snapshot first, then delete"),
            ("release", "eipalloc-0abc", "an unassociated Elastic IP address", "Address:", "release the address"),
            ("snapshot-and-stop", "i-0abc", "an idle EC2 instance", "Instance:", "snapshot first, then stop"),
        ] {
            let p = proposal(action, id, "gp3 volume, 100 GiB");
            let (subject, body) = render_digest(&digest(vec![item(&p, &audience, "x")]));
            let verb = serde_json::from_value::<ProposedAction>(serde_json::json!(action)).unwrap().verb();
            assert_eq!(subject, "finops: 1 proposal to decide, saves $3.75/month");
            assert!(body.contains(&format!("=== 1 of 1: {verb} {id} ===")), "{body}");
            assert!(body.contains(&format!("proposes to {verb} {kind}.")), "{body}");
            assert!(body.lines().any(|l| l.starts_with(label) && l.contains(id)), "{body}");
            let approve = body.lines().find(|l| l.trim_start().starts_with(&format!("Approve ({steps}):")));
            assert!(approve.is_some_and(|l| l.ends_with(" https://a.example/approve-x")), "{body}");
            for link in ["approve-x", "deny-x", "snooze-x"] {
                assert!(body.lines().any(|l| l.ends_with(&format!(" https://a.example/{link}"))), "{link}: {body}");
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
        let (_, body) = render_digest(&digest(vec![item(&instance, &audience, "x")]));
        let cpu = body.lines().find(|l| l.trim_start().starts_with("peak CPU per day:")).expect(&body);
        assert!(cpu.contains("(limit 5 %, highest 2 %)") && cpu.contains('.'), "{cpu}");
        assert!(body.lines().any(|l| l.trim_start().starts_with("network per day:")), "{body}");
    }

    #[test]
    fn a_digest_names_its_recipient_and_keeps_each_proposals_links_in_its_own_section() {
        let audience = audience();
        let (a, b) = (proposal("snapshot-and-stop", "i-0aaa", "t3.large"), proposal("release", "eipalloc-0bbb", "ip"));
        let (subject, body) = render_digest(&digest(vec![item(&a, &audience, "a"), item(&b, &audience, "b")]));
        assert_eq!(subject, "finops: 2 proposals to decide, saves $7.50/month");
        assert!(body.contains("This email was sent to ana@example.com"), "{body}");
        assert!(body.contains("records your decision as ana@example.com"), "{body}");
        assert!(body.contains("Asked:         ana@example.com, bo@example.com (account 111111111111)"), "{body}");
        let sections: Vec<&str> = body.split("\n=== ").skip(1).collect();
        assert_eq!(sections.len(), 2, "{body}");
        assert!(sections[0].starts_with("1 of 2: snapshot and stop i-0aaa ===") && sections[0].contains("approve-a"));
        assert!(!sections[0].contains("approve-b") && sections[1].contains("approve-b"), "{body}");
    }

    #[test]
    fn an_owner_gets_only_keep_links_and_undo_links_go_only_in_their_own_message() {
        let (a, b) =
            (proposal("snapshot-and-stop", "i-0aaa", "t3.large"), proposal("snapshot-and-delete", "vol-0b", "gp3"));
        let items = [OwnerItem { proposal: &a, keep: "https://a.example/keep-a".into() }];
        let (subject, body) = render_owner_notice("raj@example.com", &items, 7, "2026-12-01T00:00:00Z");
        assert_eq!(subject, "finops: your instance i-0aaa may be stopped");
        assert!(
            body.contains("sent to raj@example.com") && body.contains("Keep it (7 days): https://a.example/keep-a")
        );
        assert!(!body.contains("Approve") && !body.contains("Deny"), "{body}");
        let both = [
            OwnerItem { proposal: &a, keep: "https://a.example/keep-a".into() },
            OwnerItem { proposal: &b, keep: "https://a.example/keep-b".into() },
        ];
        assert_eq!(
            render_owner_notice("raj@example.com", &both, 7, "x").0,
            "finops: 2 of your resources may be stopped or cleaned up"
        );
        let undo = [UndoItem {
            proposal: &a,
            label: "Start it again",
            url: "https://a.example/undo-a".into(),
            approved_by: "ana@example.com",
        }];
        let (subject, body) = render_undo_offer("ana@example.com", "run-1", &undo, 14);
        assert!(subject.contains("run run-1 acted on 1 resource(s)"), "{subject}");
        assert!(body.contains("Start it again: https://a.example/undo-a") && body.contains("valid 14 days"), "{body}");
        assert!(body.contains("sent to ana@example.com"), "{body}");
    }
}
