//! A person's view: headless Chromium opens the emailed approve link served by the real `finops-approval-callback` binary
//! (local HTTP mode) over moto, sees the confirmation page, and clicks Approve; the waiting execution moves on.

use chrono::Utc;
use finops_approval_store::{ApprovalReader, ApprovalState, DynamoApprovals, SecretsManagerKey, SnsNotifier};
use finops_request_approval::{DeploymentMode, RequestConfig};
use finops_testkit::approvals::{approval_plumbing, ApprovalServer, SECRET, TABLE};
use finops_testkit::browser::Browser;
use finops_testkit::moto;
use serde_json::json;

fn serve_callback(endpoint: &str) -> (ApprovalServer, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server =
        ApprovalServer::start(std::path::Path::new(env!("CARGO_BIN_EXE_finops-approval-callback")), endpoint, port);
    (server, format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn a_person_opens_the_emailed_link_and_clicks_approve() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let plumbing = approval_plumbing(&moto, &config).await;
    let sm = plumbing.waiting_state_machine("approval-browser", 300).await;
    let (execution, token) = plumbing.start_waiting(&sm, "run-b-i-0abc").await;
    let (_server, base_url) = serve_callback(&moto.endpoint);

    let records = DynamoApprovals::new(&config, TABLE);
    let proposal = json!({
        "instanceId": "i-0abc", "region": "ap-southeast-2", "instanceType": "t3.large", "name": "dev-ana-workstation",
        "environment": "dev", "owner": "ana@example.com", "action": "snapshot-and-stop", "recommended": "snapshot_and_stop",
        "confidence": 0.9, "justification": "Idle for 14 days.", "backend": "rules", "monthlySavingUsd": 75.92,
        "priceSource": "embedded price table (2024-06)", "evidence": ["idle rule met on 14 of 14 days"], "volumeIds": ["vol-1"],
        "launchTime": "2026-01-01T00:00:00Z", "measuredUntil": "2026-11-28T00:00:00Z"
    });
    let out = finops_request_approval::handle(
        json!({"taskToken": token, "proposal": proposal, "runId": "run-b", "executionArn": execution}),
        &records,
        &SecretsManagerKey::new(&config, SECRET),
        &SnsNotifier::new(&config, plumbing.topic_arn.clone()),
        &RequestConfig { base_url: base_url.clone(), window_seconds: 3600, snooze_days: 7, mode: DeploymentMode::Act },
        Utc::now(),
        [0x5a; 16],
        None,
    )
    .await
    .unwrap();
    let email = plumbing.next_email().await;
    let approve = email
        .lines()
        .find(|l| l.trim_start().starts_with("Approve"))
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert!(approve.starts_with(&base_url));

    let browser = Browser::start();
    browser.goto(&approve);
    let page = browser.wait_for("Approve stopping dev-ana-workstation (i-0abc)?");
    assert!(page.contains("dev-ana-workstation") && page.contains("$75.92 per month"));
    // Opening the link decided nothing.
    assert_eq!(records.get(&out.approval_id).await.unwrap().unwrap().state, ApprovalState::Pending);
    assert_eq!(plumbing.status(&execution).await, "RUNNING");

    browser.type_into("#approver", "ana@example.com");
    browser.click("#approve");
    browser.wait_for("Decision recorded");
    let (status, states) = plumbing.finished(&execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Approved".to_string()), "{states:?}");
    let record = records.get(&out.approval_id).await.unwrap().unwrap();
    assert_eq!(record.state, ApprovalState::Decided);
    assert_eq!(record.approver.as_deref(), Some("ana@example.com"));
    assert_eq!(record.source_ip.as_deref(), Some("127.0.0.1"));

    // Back and reload: the page now says it was decided, with a 4xx, and nothing more happens.
    browser.goto(&approve);
    browser.wait_for("Already decided");
}
