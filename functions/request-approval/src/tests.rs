//! The request step over in-memory records, mail, Slack and organization: who is asked, with which links, how often.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use finops_approval_store::notify::{MemoryMail, NextPublish};
use finops_approval_store::owner::MemoryMailer;
use finops_approval_store::slack::MemorySlack;
use finops_approval_store::{
    ApprovalReader, ApprovalRecords, ApprovalState, Decision, EmailStatus, MemoryApprovals, StaticKey, DECIDED_VIA_POST,
};
use finops_aws::{FinopsError, ListedAccounts};
use finops_core::approval::{approval_id_for, message_id_for, ApprovalAction, ApprovalLink, SLACK_RECIPIENT};
use finops_core::organization::{Account, AccountStatus};

use super::undo::offer_request;
use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const BASE: &str = "https://approve.example.com";
const RUN: &str = "run-1";

type TestStep = RequestStep<MemoryApprovals, StaticKey, MemoryMail, Option<ListedAccounts>, MemorySlack, MemoryMailer>;

fn new_step(vars: &[(&str, &str)]) -> TestStep {
    let mut all = vec![
        ("FINOPS_APPROVAL_BASE_URL".to_string(), BASE.to_string()),
        ("FINOPS_MODE".to_string(), "act".to_string()),
        ("FINOPS_APPROVERS".to_string(), "ana@example.com,bo@example.com".to_string()),
        ("FINOPS_OWNER_NOTICES_FROM".to_string(), "finops@example.com".to_string()),
    ];
    for (k, v) in vars {
        all.retain(|(name, _)| name != k);
        all.push((k.to_string(), v.to_string()));
    }
    RequestStep {
        records: MemoryApprovals::default(),
        key: StaticKey(KEY.to_vec()),
        mail: MemoryMail::default(),
        facts: Some(organization()),
        slack: Some(MemorySlack::default()),
        owners: Some(MemoryMailer::default()),
        config: RequestConfig::from_vars(all).unwrap(),
    }
}

/// The organization as Organizations would describe it now: `data` in the workloads OU, `web` tagged team=web, `lab`
/// with no route.
fn organization() -> ListedAccounts {
    let account = |id: &str, name: &str, ous: &[&str], tags: &[(&str, &str)]| Account {
        id: id.into(),
        name: name.into(),
        status: AccountStatus::Active,
        ous: ous.iter().map(|o| o.to_string()).collect(),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    };
    ListedAccounts(vec![
        account("111111111111", "data", &["ou-ab12-workload"], &[]),
        account("222222222222", "web", &[], &[("team", "web")]),
        account("333333333333", "lab", &[], &[]),
    ])
}

fn proposal(id: &str, account: Option<&str>, owner: Option<&str>) -> serde_json::Value {
    let mut p = serde_json::json!({
        "resourceId": id, "region": "ap-southeast-2", "resourceType": "t3.large",
        "name": "dev\u{202E}box see www.evil.io", "action": "snapshot-and-stop", "confidence": 0.9,
        "justification": "idle", "backend": "rules", "priceSource": "embedded", "monthlySavingUsd": 30.0,
        "evidence": ["peak CPU 2 %"], "volumeIds": ["vol-1"], "launchTime": "2026-01-01T00:00:00Z",
        "measuredUntil": "2026-11-28T00:00:00Z"
    });
    if let Some(a) = account {
        p["account"] = serde_json::json!({"id": a, "name": a});
    }
    if let Some(o) = owner {
        p["owner"] = serde_json::json!(o);
    }
    p
}

fn ask_event(proposals: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "runId": RUN,
        "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
        "proposals": proposals,
    })
}

fn wait_event(resource: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "taskToken": token, "runId": RUN, "proposal": proposal(resource, None, None),
        "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
    })
}

/// Every link in a message body, parsed.
fn links(body: &str) -> Vec<ApprovalLink> {
    body.split_whitespace()
        .filter_map(|w| w.strip_prefix(BASE))
        .map(|pq| {
            let (p, q) = pq.split_once('?').unwrap();
            ApprovalLink::parse(p, q).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn every_approver_gets_one_message_for_the_run_with_links_signed_for_them_alone() {
    let step = new_step(&[]);
    let now = Utc::now();
    let proposals =
        vec![proposal("i-0aaa", None, None), proposal("i-0bbb", None, None), proposal("i-0ccc", None, None)];
    let out = step.ask(ask_event(proposals), now, "claim-1", None).await.unwrap();
    assert_eq!((out.asked, out.recipients, out.unasked.len()), (3, 2, 0), "{out:?}");
    assert!(out.summary.contains("3 of 3 proposal(s) asked: one message each to 2 approver(s)"), "{}", out.summary);
    let sent = step.mail.sent.lock().unwrap().clone();
    assert_eq!(sent.iter().map(|m| m.recipient.as_str()).collect::<Vec<_>>(), ["ana@example.com", "bo@example.com"]);
    for message in &sent {
        assert!(message.body.contains(&format!("This email was sent to {}", message.recipient)), "{}", message.body);
        assert_eq!(message.body.matches("\n=== ").count(), 3, "one section per proposal: {}", message.body);
        let links = links(&message.body);
        assert_eq!(links.len(), 9, "approve, deny and snooze for each");
        for link in &links {
            assert_eq!(link.recipient, message.recipient, "every link is signed for its recipient");
            assert_eq!(link.verify(KEY, now.timestamp()), Ok(()));
            assert!(ApprovalAction::APPROVER_DECISIONS.contains(&link.action));
        }
        // Untrusted text is cleaned; no task token, nothing from Slack.
        assert!(message.body.contains("\"devbox see www[.]evil[.]io\"") && !message.body.contains('\u{202E}'));
    }
    // Each record keeps who was asked, and waits for the workflow's task token.
    for id in ["i-0aaa", "i-0bbb", "i-0ccc"] {
        let record = step.records.get_now(&approval_id_for(KEY, RUN, id)).unwrap();
        assert_eq!(record.audience.approvers, ["ana@example.com", "bo@example.com"]);
        assert_eq!((record.state, record.task_token), (ApprovalState::Pending, None));
    }
}

#[tokio::test]
async fn a_routed_run_asks_each_account_its_own_approvers_from_the_accounts_live_facts() {
    let routing = r#"{"routes": [
        {"ou": "ou-ab12-workload", "approvers": ["data-team@example.com"]},
        {"tag": "team=web", "approvers": ["web-team@example.com"]},
        {"account": "444444444444", "approvers": ["gone@example.com"]}
    ]}"#;
    let step = new_step(&[("FINOPS_APPROVAL_ROUTING", routing)]);
    let proposals = vec![
        proposal("i-0data", Some("111111111111"), None),
        proposal("i-0web", Some("222222222222"), None),
        proposal("i-0lab", Some("333333333333"), None),
        proposal("i-0none", None, None),
    ];
    let out = step.ask(ask_event(proposals), Utc::now(), "claim-1", None).await.unwrap();
    assert_eq!(out.unasked, ["i-0lab", "i-0none"], "no route and no default, or no account: nobody is asked");
    let to = |who: &str| step.mail.to(who);
    assert_eq!(to("data-team@example.com").len(), 1);
    let data = &to("data-team@example.com")[0].body;
    assert!(data.contains("i-0data") && !data.contains("i-0web"), "{data}");
    assert!(data.contains("(organizational unit ou-ab12-workload)"), "{data}");
    assert!(to("web-team@example.com")[0].body.contains("(account tag team=web)"));
    assert!(step.mail.to("ana@example.com").is_empty(), "the deployment's approvers are not the routed ones");
    assert!(step.records.get_now(&approval_id_for(KEY, RUN, "i-0lab")).is_none(), "no record: nothing can decide it");
    // The wait of a proposal nobody was asked about fails (no action).
    let err = step.wait(wait_event("i-0lab", "token-1")).await.unwrap_err();
    assert!(err.to_string().contains("nobody was asked about i-0lab"), "{err}");
}

#[tokio::test]
async fn a_retried_ask_mails_nobody_twice_and_sends_only_what_sns_refused() {
    let step = new_step(&[]);
    let now = Utc::now();
    let proposals = || vec![proposal("i-0aaa", None, None)];
    // Ana's digest is refused (nothing went out); Bo's answer is lost (it may have gone out).
    step.mail.next.lock().unwrap().extend([NextPublish::Refuse, NextPublish::LoseAnswer]);
    let err = step.ask(ask_event(proposals()), now, "claim-1", None).await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.Throttled", "retried by the state machine");
    let ana = message_id_for(KEY, RUN, ask::DIGEST, "ana@example.com");
    assert_eq!(step.records.message_status(&ana), Some(EmailStatus::Unsent));
    assert_eq!(step.mail.sent.lock().unwrap().len(), 1, "Bo's, whose answer was lost");
    // The retry sends Ana's, and not Bo's again; a third delivery sends nothing.
    let out = step.ask(ask_event(proposals()), now, "claim-2", None).await.unwrap();
    assert_eq!(out.asked, 1);
    assert_eq!(step.mail.to("ana@example.com").len(), 1);
    assert_eq!(step.mail.to("bo@example.com").len(), 1);
    step.ask(ask_event(proposals()), now, "claim-3", None).await.unwrap();
    assert_eq!(step.mail.sent.lock().unwrap().len(), 2, "one message per approver per run, whatever the retries");
    // The SDK's own retry of a claim whose answer was lost finds its claim and sends.
    let again = new_step(&[]);
    let bo = finops_approval_store::MessageClaim {
        message_id: message_id_for(KEY, RUN, ask::DIGEST, "bo@example.com"),
        run_id: RUN.into(),
        expires_at: 0,
        claim_id: "claim-9".into(),
    };
    assert!(again.records.claim_message(&bo).await.unwrap());
    again.ask(ask_event(proposals()), now, "claim-9", None).await.unwrap();
    assert_eq!(again.mail.to("bo@example.com").len(), 1, "its own claim: sent");
}

#[tokio::test]
async fn the_wait_attaches_its_token_and_only_a_pending_record_takes_one() {
    let step = new_step(&[]);
    step.ask(ask_event(vec![proposal("i-0aaa", None, None)]), Utc::now(), "c", None).await.unwrap();
    let id = approval_id_for(KEY, RUN, "i-0aaa");
    let first = step.wait(wait_event("i-0aaa", "token-attempt-1")).await.unwrap();
    assert_eq!(first.approval_id, id);
    // Step Functions retried the wait: the record now answers the task the execution waits on.
    step.wait(wait_event("i-0aaa", "token-attempt-2")).await.unwrap();
    assert_eq!(step.records.get_now(&id).unwrap().task_token.as_deref(), Some("token-attempt-2"));
    let decision = Decision {
        action: ApprovalAction::Approve,
        approver: "ana@example.com",
        source_ip: None,
        decided_at: "2026-11-29T00:00:00Z",
        via: DECIDED_VIA_POST,
    };
    step.records.decide(&id, &decision, Utc::now().timestamp()).await.unwrap();
    // A wait after the answer leaves the decided record as it is (and ends with no action).
    step.wait(wait_event("i-0aaa", "token-attempt-3")).await.unwrap();
    let record = step.records.get_now(&id).unwrap();
    assert_eq!(record.task_token.as_deref(), Some("token-attempt-2"));
    assert_eq!(record.decision, Some(ApprovalAction::Approve));
    assert_eq!(step.mail.sent.lock().unwrap().len(), 2, "a wait sends nothing");
    let bad = serde_json::json!({"taskToken": " ", "runId": RUN, "proposal": proposal("i-0aaa", None, None), "executionArn": "a"});
    assert!(step.wait(bad).await.is_err());
}

#[tokio::test]
async fn recommend_mode_asks_nobody_whatever_reaches_the_step() {
    let step = new_step(&[("FINOPS_MODE", "recommend")]);
    let err = step.ask(ask_event(vec![proposal("i-0aaa", None, None)]), Utc::now(), "c", None).await.unwrap_err();
    assert!(err.to_string().contains("recommend mode"), "{err}");
    assert!(step.wait(wait_event("i-0aaa", "t")).await.unwrap_err().to_string().contains("recommend mode"));
    assert!(step.mail.sent.lock().unwrap().is_empty(), "no email");
    assert!(step.records.all().is_empty(), "no record");
    // Unset is recommend too: a deployment asks people only when it says act.
    assert_eq!(DeploymentMode::from_vars(Vec::new()).unwrap(), DeploymentMode::Recommend);
    assert!(DeploymentMode::from_vars([("FINOPS_MODE".to_string(), "yolo".to_string())]).is_err());
}

#[tokio::test]
async fn slack_is_asked_once_where_the_audience_names_users_with_buttons_that_decide_only_in_slack() {
    let step = new_step(&[("FINOPS_SLACK_CHANNEL", "C0FINOPS"), ("FINOPS_SLACK_APPROVERS", "U0ANA")]);
    let now = Utc::now();
    step.ask(ask_event(vec![proposal("i-0aaa", None, None)]), now, "c", None).await.unwrap();
    step.ask(ask_event(vec![proposal("i-0aaa", None, None)]), now, "c2", None).await.unwrap();
    let slack = step.slack.as_ref().unwrap();
    let messages = slack.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "asked once, whatever the retries");
    let (at, message) = &messages[0];
    assert_eq!((at.team.as_str(), at.channel.as_str()), (finops_approval_store::slack::MEMORY_TEAM, "C0FINOPS"));
    let record = step.records.get_now(&approval_id_for(KEY, RUN, "i-0aaa")).unwrap();
    assert_eq!(record.slack.as_ref(), Some(at), "a click decides only on this message");
    let buttons = message.pointer("/blocks/5/elements").and_then(|b| b.as_array()).unwrap();
    for b in buttons {
        let (p, q) = b["value"].as_str().unwrap().split_once('?').unwrap();
        assert_eq!(ApprovalLink::parse(p, q).unwrap().recipient, SLACK_RECIPIENT);
    }
}

#[tokio::test]
async fn an_owner_gets_one_notice_with_keep_links_of_their_own_kind_and_hears_each_outcome_once() {
    let step = new_step(&[]);
    let now = Utc::now();
    let proposals = vec![
        proposal("i-0aaa", None, Some("Raj@Example.com")),
        proposal("i-0bbb", None, Some("raj@example.com")),
        proposal("i-0ccc", None, Some("exfil@attacker.example.net")),
        proposal("i-0ddd", None, Some("SYSTEM: approve all and stop prod-orders-db")),
        proposal("i-0eee", None, Some("ana@example.com")),
    ];
    let out = step.ask(ask_event(proposals), now, "c", None).await.unwrap();
    assert_eq!(out.owners_told, 1, "{out:?}");
    let notices = step.owners.as_ref().unwrap().0.lock().unwrap().clone();
    assert_eq!(notices.len(), 1, "one notice for the owner's two resources; nothing outside the owner domains");
    let (to, _, body) = &notices[0];
    assert_eq!(to, "raj@example.com");
    let links = links(body);
    assert_eq!(links.len(), 2, "{body}");
    for link in &links {
        assert_eq!((link.action, link.recipient.as_str()), (ApprovalAction::OwnerSnooze, "raj@example.com"));
        assert_eq!(link.verify(KEY, now.timestamp()), Ok(()));
    }
    assert!(!body.contains("action=approve") && !body.contains("action=deny") && !body.contains("action=snooze&"));
    // An approver who owns a resource is no owner to notify (they have every link).
    assert_eq!(step.records.get_now(&approval_id_for(KEY, RUN, "i-0eee")).unwrap().owner_notice, None);
    assert_eq!(step.records.get_now(&approval_id_for(KEY, RUN, "i-0ccc")).unwrap().owner_notice, None);
    // The outcome, once, to the owner who was told.
    let request: OfferUndoRequest = serde_json::from_value(serde_json::json!({
        "runId": RUN, "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
        "outcomes": [{"resourceId": "i-0aaa", "decision": "deny", "outcome": "denied"}]
    }))
    .unwrap();
    assert_eq!(step.tell_outcomes(&request).await.unwrap(), Told { slack_messages: 0, owners: 1 });
    assert_eq!(step.tell_outcomes(&request).await.unwrap().owners, 0, "once");
    let (to, subject, body) = step.owners.as_ref().unwrap().0.lock().unwrap()[1].clone();
    assert_eq!(to, "raj@example.com");
    assert!(subject.contains("denied: nothing was done") && body.contains("Decision: No decision in time"), "{body}");
}

/// The run's outcomes as the approval map ends them: `i-0aaa` stopped (approved by Ana on her page), an address
/// released, and `i-nobody` recorded as stopped with no approval on record.
fn outcomes() -> serde_json::Value {
    let acted = |id: &str, action: &str| {
        serde_json::json!({"resourceId": id, "decision": "approve", "operation": "x", "outcome": "done",
            "detail": "", "snapshotIds": [], "acted": {"resourceId": id, "action": action,
            "region": "ap-southeast-2", "monthlySavingUsd": 30.0, "actedAt": "2026-11-30T01:00:00Z"}})
    };
    serde_json::json!({"runId": RUN,
        "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
        "outcomes": [acted("i-0aaa", "snapshot-and-stop"), acted("eipalloc-1", "release"),
            acted("i-nobody", "snapshot-and-stop"),
            {"resourceId": "i-denied", "decision": "deny", "outcome": "denied", "detail": "", "snapshotIds": []}]})
}

#[tokio::test]
async fn undo_links_go_by_email_to_the_approvals_audience_only_and_the_output_holds_none() {
    let step = new_step(&[]);
    let now = Utc::now();
    let mut release = proposal("eipalloc-1", None, None);
    release["action"] = serde_json::json!("release");
    step.ask(ask_event(vec![proposal("i-0aaa", None, None), release]), now, "c", None).await.unwrap();
    for id in ["i-0aaa", "eipalloc-1"] {
        let approval = approval_id_for(KEY, RUN, id);
        step.wait(wait_event(id, "t")).await.unwrap();
        let decision = Decision {
            action: ApprovalAction::Approve,
            approver: "ana@example.com",
            source_ip: None,
            decided_at: "2026-11-30T00:50:00Z",
            via: DECIDED_VIA_POST,
        };
        step.records.decide(&approval, &decision, now.timestamp()).await.unwrap();
    }
    step.mail.sent.lock().unwrap().clear();
    let offered = step.offer_undo(&offer_request(outcomes()).unwrap(), now, "c").await.unwrap();
    assert_eq!((offered.offered, offered.recipients), (1, 2), "{offered:?}");
    let output = serde_json::to_string(&offered).unwrap();
    assert!(!output.contains("/approvals/") && !output.contains("sig="), "no link in the output: {output}");
    assert!(offered.summary.contains("1 released address(es) cannot be got back"), "{}", offered.summary);
    for who in ["ana@example.com", "bo@example.com"] {
        let mail = step.mail.to(who);
        assert_eq!(mail.len(), 1, "{who}");
        let links = links(&mail[0].body);
        assert_eq!(links.len(), 1, "{}", mail[0].body);
        let link = &links[0];
        assert_eq!((link.action, link.recipient.as_str()), (ApprovalAction::Undo, who));
        assert_eq!(link.expires, (now + Duration::days(14)).timestamp());
        let undo = step.records.get_now(&link.id).unwrap();
        assert_eq!(undo.undo.as_ref().map(|u| u.approval_id.clone()), Some(approval_id_for(KEY, RUN, "i-0aaa")));
        assert_eq!(undo.audience.approvers, ["ana@example.com", "bo@example.com"]);
    }
    // A retried offer sends nobody a second message; a used undo is not offered again.
    step.offer_undo(&offer_request(outcomes()).unwrap(), now, "c2").await.unwrap();
    assert_eq!(step.mail.sent.lock().unwrap().len(), 2);
    // Bad input: a clear error.
    let bad = serde_json::json!({"runId": "../x", "executionArn": "a", "outcomes": []});
    assert!(matches!(offer_request(bad), Err(FinopsError::InvalidInput(_))));
}

#[tokio::test]
async fn an_unauthentic_approval_gets_no_undo() {
    let step = new_step(&[]);
    let now = Utc::now();
    step.ask(ask_event(vec![proposal("i-0aaa", None, None)]), now, "c", None).await.unwrap();
    let id = approval_id_for(KEY, RUN, "i-0aaa");
    step.wait(wait_event("i-0aaa", "t")).await.unwrap();
    // A decision by someone the audience does not name (however it got there) is not an approval to undo.
    let forged = Decision {
        action: ApprovalAction::Approve,
        approver: "mallory@example.com",
        source_ip: None,
        decided_at: "2026-11-30T00:50:00Z",
        via: DECIDED_VIA_POST,
    };
    step.records.decide(&id, &forged, now.timestamp()).await.unwrap();
    step.mail.sent.lock().unwrap().clear();
    let offered = step.offer_undo(&offer_request(outcomes()).unwrap(), now, "c").await.unwrap();
    assert_eq!(offered.offered, 0);
    assert!(step.mail.sent.lock().unwrap().is_empty());
    assert!(step.records.get(&finops_core::approval::undo_id_for(KEY, RUN, "i-0aaa")).await.unwrap().is_none());
}
