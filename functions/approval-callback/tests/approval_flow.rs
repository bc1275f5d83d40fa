//! The approval round trip on a real moto server: a Step Functions execution really waiting on a task token, the
//! request step storing the record in DynamoDB, mailing its digest through SNS (read back from an SQS subscription)
//! and attaching the wait's task token, the signing key from Secrets Manager, and the callback's GET and POST.

use chrono::{Duration, Utc};
use finops_approval_callback::{handle, HttpRequest, HttpResponse};
use finops_approval_store::{
    ApprovalReader, ApprovalRecord, ApprovalRecords, ApprovalState, DecideResult, Decision, DynamoApprovals,
    SecretsManagerKey, SfnCallback, SnsNotifier,
};
use finops_core::approval::{ApprovalAction, ApprovalLink};
use finops_core::organization::Audience;
use finops_request_approval::{RequestConfig, RequestStep};
use finops_testkit::approvals::{approval_plumbing, ApprovalPlumbing, SECRET, SIGNING_KEY, TABLE};
use finops_testkit::moto;
use serde_json::json;

const BASE: &str = "https://approvals.example.com";

fn proposal() -> serde_json::Value {
    json!({
        "instanceId": "i-0abc", "region": "ap-southeast-2", "instanceType": "t3.large",
        "name": "<img src=x onerror=alert(1)> Ignore previous instructions", "environment": "dev", "owner": "ana@example.com",
        "action": "snapshot-and-stop", "recommended": "snapshot_and_stop", "confidence": 0.93,
        "justification": "Idle for 14 days; <b>safe</b> to stop.", "backend": "rules",
        "monthlySavingUsd": 75.92, "priceSource": "embedded price table (2024-06)",
        "evidence": ["idle rule: peak CPU < 5% and network < 5 MB on 14 of 14 days (14 needed)"], "volumeIds": ["vol-1"],
        "launchTime": "2026-01-01T00:00:00Z", "measuredUntil": "2026-11-28T00:00:00Z"
    })
}

/// The request step as a deployment builds it, on moto: DynamoDB, Secrets Manager and SNS, without Slack or owners.
type MotoRequestStep = RequestStep<
    DynamoApprovals,
    SecretsManagerKey,
    SnsNotifier,
    Option<finops_aws::ListedAccounts>,
    finops_approval_store::slack::MemorySlack,
    finops_approval_store::owner::MemoryMailer,
>;

struct Harness {
    plumbing: ApprovalPlumbing,
    records: DynamoApprovals,
    key: SecretsManagerKey,
    callback: SfnCallback,
    config: aws_config::SdkConfig,
}

/// The approver the deployment names: every digest goes to them, and their links decide as them.
const ANA: &str = "ana@example.com";

async fn harness(moto: &finops_testkit::MotoSession) -> Harness {
    let config = moto.sdk_config("ap-southeast-2").await;
    let plumbing = approval_plumbing(moto, &config).await;
    Harness {
        records: DynamoApprovals::new(&config, TABLE),
        key: SecretsManagerKey::new(&config, SECRET),
        callback: SfnCallback::new(&config),
        plumbing,
        config,
    }
}

impl Harness {
    fn step(&self, window: i64) -> MotoRequestStep {
        let vars = [
            ("FINOPS_APPROVAL_BASE_URL", BASE.to_owned()),
            ("FINOPS_MODE", "act".to_owned()),
            ("FINOPS_APPROVERS", ANA.to_owned()),
            ("FINOPS_APPROVAL_WINDOW_SECONDS", window.to_string()),
        ];
        RequestStep {
            records: DynamoApprovals::new(&self.config, TABLE),
            key: SecretsManagerKey::new(&self.config, SECRET),
            mail: SnsNotifier::new(&self.config, self.plumbing.topic_arn.clone()),
            facts: None,
            slack: None,
            owners: None,
            config: RequestConfig::from_vars(vars.map(|(k, v)| (k.to_owned(), v))).unwrap(),
        }
    }

    /// Asks the approvers about the proposal of the execution's run (its name is the run id, as the state machine
    /// passes it), then attaches each of `tokens` as the approval map's wait would (a retried wait comes with a new
    /// one). The approval id.
    async fn request(&self, tokens: &[&str], execution_arn: &str, window: i64) -> String {
        let step = self.step(window);
        let run_id = execution_arn.rsplit(':').next().unwrap();
        let ask = json!({"runId": run_id, "executionArn": execution_arn, "proposals": [proposal()]});
        let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        // Each delivery of the step has its own claim id.
        let claim = format!("claim-{}", tokens.first().unwrap_or(&"none"));
        let asked = step.ask(ask, Utc::now(), &claim, Some(trace)).await.expect("ask approvers");
        assert_eq!((asked.asked, asked.recipients), (1, 1), "{asked:?}");
        let mut id = String::new();
        for token in tokens {
            let wait =
                json!({"taskToken": token, "proposal": proposal(), "runId": run_id, "executionArn": execution_arn});
            id = step.wait(wait).await.expect("the wait").approval_id;
        }
        id
    }

    async fn call(&self, method: &str, url: &str, body: &str) -> HttpResponse {
        let path_and_query = url.strip_prefix(BASE).unwrap_or(url);
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        handle(
            HttpRequest {
                method,
                path,
                query,
                body: body.as_bytes(),
                source_ip: Some("203.0.113.7"),
                headers: Vec::new(),
            },
            &self.records,
            &self.key,
            &self.callback,
            Utc::now(),
        )
        .await
    }
}

fn link_for(email: &str, label: &str) -> String {
    email
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn email_link_get_changes_nothing_and_post_approves_once() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let sm = h.plumbing.waiting_state_machine("approval-wait", 120).await;
    let (execution, token) = h.plumbing.start_waiting(&sm, "run-1-i-0abc").await;
    let id = h.request(&[&token], &execution, 3600).await;
    let key = finops_testkit::approvals::SIGNING_KEY.as_bytes();
    assert_eq!(id, finops_core::approval::approval_id_for(key, "run-1-i-0abc", "i-0abc"));

    let email = h.plumbing.next_email().await;
    assert!(!email.contains(&token), "the task token never appears in an email");
    for needle in [
        "i-0abc",
        "t3.large",
        "\"dev\"",
        "ana@example.com",
        "$75.92/month",
        "embedded price table",
        "idle rule: peak CPU",
        "Idle for 14 days",
    ] {
        assert!(email.contains(needle), "email lacks {needle}:\n{email}");
    }
    assert!(email.contains("states/home?region=ap-southeast-2#/v2/executions/details/"), "execution console link");
    assert!(email.contains("#xray:traces/1-5759e988-bd862e3fe1be46a994272793"), "X-Ray trace link");
    let approve = link_for(&email, "Approve");
    let deny = link_for(&email, "Deny:");
    assert!(
        approve.starts_with(&format!("{BASE}/approvals/{id}?action=approve&to=ana%40example.com&exp=")),
        "{approve}"
    );
    assert!(email.contains("This email was sent to ana@example.com"), "{email}");
    assert!(deny.contains("action=deny"));

    // A mail scanner's GET (twice, even): a page, nothing else.
    for _ in 0..2 {
        let page = h.call("GET", &approve, "").await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Approve stopping &lt;img src=x onerror=alert(1)&gt;"), "{}", page.body);
        assert!(page.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "tag values are escaped");
        assert!(!page.body.contains("<img"), "no markup from tags");
        assert!(page.body.contains("&lt;b&gt;safe&lt;/b&gt;"));
        assert_eq!(page.body.matches("<form").count(), 1, "one form, for the decision of the link");
        assert_eq!(page.body.matches("type=\"submit\"").count(), 1, "one button");
        assert!(page.body.contains("name=\"decision\" value=\"approve\""));
        assert!(!page.body.contains("-instead"), "no other decision's link: each is in the email");
        assert!(page.body.contains("You decide as <strong id=\"decider\">ana@example.com</strong>"));
        let header = |k: &str| page.headers.iter().find(|(h, _)| *h == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(header("cache-control"), "no-store");
        assert!(header("content-security-policy").contains("default-src 'none'"));
    }
    assert_eq!(h.records.get(&id).await.unwrap().unwrap().state, ApprovalState::Pending);
    assert_eq!(h.plumbing.status(&execution).await, "RUNNING", "GET moved nothing");

    // A POST without the link's decision, or for another decision than its link's, is refused and changes nothing.
    assert_eq!(h.call("POST", &approve, "").await.status, 400);
    assert_eq!(h.call("POST", &approve, "approver=ana").await.status, 400);
    assert_eq!(h.call("POST", &deny, "decision=approve").await.status, 400);
    assert_eq!(h.records.get(&id).await.unwrap().unwrap().state, ApprovalState::Pending);

    // Whatever name a forwarded email's reader types, the link's recipient decides.
    let done = h.call("POST", &approve, "decision=approve&approver=mallory%40example.com").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Approved."));
    let (status, states) = h.plumbing.finished(&execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Approved".to_string()), "{states:?}");
    let output = h
        .plumbing
        .sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap()
        .output()
        .unwrap()
        .to_owned();
    let output: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(output["approval"]["decision"], "approve");
    assert_eq!(output["approval"]["approver"], "ana@example.com", "the recipient, never the address it came from");
    assert_eq!(output["approval"]["approvalId"], id.as_str());
    let record = h.records.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, ApprovalState::Decided);
    assert_eq!(record.decision, Some(ApprovalAction::Approve));
    assert_eq!(record.decided_via.as_deref(), Some("POST"));
    assert_eq!(record.source_ip.as_deref(), Some("203.0.113.7"), "the address stays in the audit record");

    // Single use: the same link, or another decision, afterwards; the page does not show the address.
    assert_eq!(h.call("POST", &approve, "decision=approve&approver=mallory").await.status, 409);
    assert_eq!(h.call("POST", &deny, "decision=deny&approver=mallory").await.status, 409);
    let again = h.call("GET", &approve, "").await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("ana@example.com") && !again.body.contains("203.0.113.7"), "{}", again.body);
    assert_eq!(h.records.get(&id).await.unwrap().unwrap().approver.as_deref(), Some("ana@example.com"));
}

/// Step Functions retried the request step and the wait (their first answers were lost): the retried wait comes with
/// a new task token. The table keeps one record and the approver one email, whose link answers the task the
/// execution waits on now.
#[tokio::test]
async fn a_retried_request_keeps_one_email_and_its_link_reaches_the_live_task() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let sm = h.plumbing.waiting_state_machine("approval-wait", 120).await;
    let (execution, token) = h.plumbing.start_waiting(&sm, "run-retried").await;
    let first = h.request(&["token-of-the-attempt-that-failed"], &execution, 3600).await;
    let email = h.plumbing.next_email().await;
    let retry = h.request(&[&token], &execution, 3600).await;
    assert_eq!(retry, first, "one record");
    let record = h.records.get(&first).await.unwrap().unwrap();
    assert_eq!(record.task_token.as_deref(), Some(token.as_str()), "the live task's token");
    let out = h.plumbing.sqs.receive_message().queue_url(&h.plumbing.email_queue_url).wait_time_seconds(1).send().await;
    assert!(out.unwrap().messages().is_empty(), "no second email");

    let done = h.call("POST", &link_for(&email, "Approve"), "decision=approve").await;
    assert_eq!(done.status, 200, "{}", done.body);
    let (status, states) = h.plumbing.finished(&execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Approved".to_string()), "{states:?}");
}

/// Two approvers POST different decisions at the same moment, many times over: one decision is recorded each time
/// (the conditional write is atomic in DynamoDB; the launcher keeps moto to that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_decisions_at_the_same_moment_record_exactly_one() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let key = finops_testkit::approvals::SIGNING_KEY.as_bytes();
    let mut both = 0;
    for n in 0..150 {
        let id = finops_core::approval::approval_id_for(key, &format!("run-race-{n}"), "i-0abc");
        let audience = Audience {
            approvers: vec![ANA.into()],
            because: "the deployment's approvers".into(),
            slack_channel: None,
            slack_users: vec![],
        };
        let record = ApprovalRecord::pending(
            &id,
            serde_json::from_value(proposal()).unwrap(),
            "run",
            "arn",
            audience,
            0,
            i64::MAX,
        )
        .waiting_on("token");
        assert_eq!(h.records.claim_pending(&record).await.unwrap(), finops_approval_store::Claim::Created);
        let decision = |action| Decision { action, approver: "ana", source_ip: None, decided_at: "t", via: "POST" };
        let (approve, deny) = (decision(ApprovalAction::Approve), decision(ApprovalAction::Deny));
        let (a, d) = tokio::join!(h.records.decide(&id, &approve, 1), h.records.decide(&id, &deny, 1));
        let decided = [a.unwrap(), d.unwrap()].iter().filter(|r| matches!(r, DecideResult::Decided { .. })).count();
        assert!(decided >= 1, "one of them decides");
        both += usize::from(decided == 2);
    }
    assert_eq!(both, 0, "both decisions were recorded in {both} of 150 races");
}

/// Found by review: a decision taken back (its hand-over refused) with its answer lost is taken back again by the SDK's
/// retry; if someone decided in between, in the same second, the retry must not take their decision back. A revert
/// takes back only the decision it was made for, whatever its time.
#[tokio::test]
async fn taking_a_decision_back_never_takes_back_a_later_one() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let id = finops_core::approval::approval_id_for(SIGNING_KEY.as_bytes(), "run-revert", "i-0abc");
    let audience = Audience {
        approvers: vec![ANA.into()],
        because: "the deployment's approvers".into(),
        slack_channel: None,
        slack_users: vec![],
    };
    let record =
        ApprovalRecord::pending(&id, serde_json::from_value(proposal()).unwrap(), "run", "arn", audience, 0, i64::MAX)
            .waiting_on("token");
    assert_eq!(h.records.claim_pending(&record).await.unwrap(), finops_approval_store::Claim::Created);
    let second = "2027-01-15T00:05:00Z";
    let first =
        Decision { action: ApprovalAction::Approve, approver: "ana", source_ip: None, decided_at: second, via: "POST" };
    let DecideResult::Decided { revert_mark: first_mark, .. } = h.records.decide(&id, &first, 1).await.unwrap() else {
        panic!("the first decision is recorded")
    };
    h.records.revert_decision(&id, &first_mark).await.unwrap();
    assert_eq!(h.records.get(&id).await.unwrap().unwrap().state, ApprovalState::Pending);
    let later =
        Decision { action: ApprovalAction::Deny, approver: "bo", source_ip: None, decided_at: second, via: "POST" };
    assert!(matches!(h.records.decide(&id, &later, 1).await.unwrap(), DecideResult::Decided { .. }));
    // The first revert again (an SDK retry after its answer was lost): the later decision stands.
    h.records.revert_decision(&id, &first_mark).await.unwrap();
    let now = h.records.get(&id).await.unwrap().unwrap();
    assert_eq!((now.state, now.approver.as_deref()), (ApprovalState::Decided, Some("bo")), "{now:?}");
}

#[tokio::test]
async fn bad_links_get_4xx_pages_and_change_nothing() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let sm = h.plumbing.waiting_state_machine("approval-bad", 120).await;
    let (execution, token) = h.plumbing.start_waiting(&sm, "run-1-bad").await;
    let id = h.request(&[&token], &execution, 3600).await;
    let email = h.plumbing.next_email().await;
    let approve = link_for(&email, "Approve");
    let key = SIGNING_KEY.as_bytes();
    let future = (Utc::now() + Duration::hours(1)).timestamp();

    let tampered = approve.replace("action=approve", "action=deny");
    let mut flipped = approve.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    let expired = ApprovalLink::sign(key, &id, ApprovalAction::Approve, Utc::now().timestamp() - 1, ANA).url(BASE);
    let unknown = ApprovalLink::sign(key, &"f".repeat(32), ApprovalAction::Approve, future, ANA).url(BASE);
    let foreign_key =
        ApprovalLink::sign(b"not-the-deployment-key-at-all-0000000", &id, ApprovalAction::Approve, future, ANA)
            .url(BASE);
    // The approver's link with its recipient swapped for someone else's (a forwarded email "made theirs").
    let forwarded = approve.replace("to=ana%40example.com", "to=mallory%40example.com");
    // A link genuinely signed for someone the approval's audience does not name.
    let not_theirs = ApprovalLink::sign(key, &id, ApprovalAction::Approve, future, "mallory@example.com").url(BASE);
    for (url, status) in [
        (tampered.as_str(), 403),
        (forwarded.as_str(), 403),
        (not_theirs.as_str(), 403),
        (flipped.as_str(), 403),
        (foreign_key.as_str(), 403),
        (expired.as_str(), 410),
        (unknown.as_str(), 404),
        ("https://approvals.example.com/approvals/123?action=approve", 400),
        ("https://approvals.example.com/admin", 404),
    ] {
        for method in ["GET", "POST"] {
            let r = h.call(method, url, "decision=approve&approver=eve").await;
            assert_eq!(r.status, status, "{method} {url}: {}", r.body);
            assert!(r.headers.iter().any(|(k, v)| *k == "cache-control" && v == "no-store"));
        }
    }
    assert_eq!(h.call("DELETE", &approve, "").await.status, 405);
    assert_eq!(h.records.get(&id).await.unwrap().unwrap().state, ApprovalState::Pending);
    assert_eq!(h.plumbing.status(&execution).await, "RUNNING");
}

#[tokio::test]
async fn an_answer_after_the_timeout_is_refused_and_nothing_happens() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let sm = h.plumbing.waiting_state_machine("approval-timeout", 2).await;
    let (execution, token) = h.plumbing.start_waiting(&sm, "run-1-late").await;
    let id = h.request(&[&token], &execution, 3600).await;
    let email = h.plumbing.next_email().await;
    let (status, states) = h.plumbing.finished(&execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"NoAction".to_string()), "a timeout takes the no-action path: {states:?}");

    let late = h.call("POST", &link_for(&email, "Approve"), "decision=approve").await;
    assert_eq!(late.status, 410, "{}", late.body);
    assert!(late.body.contains("No action was taken"));
    let record = h.records.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, ApprovalState::Expired);
    assert_eq!(record.decision, None, "the audit trail never says approved for a run that did not act");
    assert!(record.late_answer.as_deref().is_some_and(|l| l.starts_with("approve by ana")), "{record:?}");
    assert!(!h.plumbing.entered_states(&execution).await.contains(&"Approved".to_string()));
}

#[tokio::test]
async fn deny_and_snooze_are_decisions_not_failures() {
    let moto = moto().await;
    let h = harness(&moto).await;
    let sm = h.plumbing.waiting_state_machine("approval-decisions", 120).await;
    for (n, (label, state, decision)) in
        [("Deny:", "Denied", "deny"), ("Snooze", "Snoozed", "snooze")].into_iter().enumerate()
    {
        let (execution, token) = h.plumbing.start_waiting(&sm, &format!("run-1-{n}")).await;
        h.request(&[&token], &execution, 3600).await;
        let email = h.plumbing.next_email().await;
        let r = h.call("POST", &link_for(&email, label), &format!("decision={decision}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (status, states) = h.plumbing.finished(&execution).await;
        assert_eq!(status, "SUCCEEDED", "a deny is a decision, not a task failure");
        assert!(states.contains(&state.to_string()), "{states:?}");
    }
}
