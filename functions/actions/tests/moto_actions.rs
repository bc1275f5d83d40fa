//! The actions handler against a real moto server: snapshots, stop, tags, and what a retry does.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use finops_actions::{handle, ActionOutcome, ActionsConfig, Ec2Actions, Outcome, SdkEc2Actions, SnapshotInfo};
use finops_aws::FinopsError;
use finops_core::InstanceRecord;
use finops_testkit::seed::{launch, linux_image_id, InstanceSpec};
use finops_testkit::{aws_sdk_ec2, moto};
use serde_json::{json, Value};

/// The real adapter, counting the calls that change things.
struct Counting {
    inner: SdkEc2Actions,
    stops: AtomicUsize,
    snapshot_calls: AtomicUsize,
}

impl Ec2Actions for Counting {
    async fn describe_instance(&self, r: &str, id: &str) -> Result<Option<InstanceRecord>, FinopsError> {
        self.inner.describe_instance(r, id).await
    }
    async fn run_snapshots(&self, r: &str, run: &str, id: &str) -> Result<Vec<SnapshotInfo>, FinopsError> {
        self.inner.run_snapshots(r, run, id).await
    }
    async fn create_snapshots(
        &self,
        r: &str,
        id: &str,
        t: &[(String, String)],
    ) -> Result<Vec<SnapshotInfo>, FinopsError> {
        self.snapshot_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.create_snapshots(r, id, t).await
    }
    async fn describe_snapshots(&self, r: &str, ids: &[String]) -> Result<Vec<SnapshotInfo>, FinopsError> {
        self.inner.describe_snapshots(r, ids).await
    }
    async fn tag_instance(&self, r: &str, id: &str, t: &[(String, String)]) -> Result<(), FinopsError> {
        self.inner.tag_instance(r, id, t).await
    }
    async fn stop(&self, r: &str, id: &str) -> Result<(), FinopsError> {
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.inner.stop(r, id).await
    }
    async fn terminate(&self, r: &str, id: &str) -> Result<(), FinopsError> {
        self.inner.terminate(r, id).await
    }
}

fn proposal(id: &str) -> Value {
    json!({"instanceId": id, "region": "ap-southeast-2", "action": "snapshot-and-stop", "justification": "idle for 14 days <script>", "instanceType": "t3.large"})
}

fn approved() -> Value {
    json!({"decision": "approve", "approver": "ana@example.com", "decidedAt": "2026-11-28T10:00:00Z"})
}

async fn run(ec2: &Counting, event: Value) -> ActionOutcome {
    let config = ActionsConfig::from_vars(Vec::new()).unwrap();
    handle(event, ec2, &config, Utc::now()).await.expect("action")
}

async fn state_and_tags(ec2: &aws_sdk_ec2::Client, id: &str) -> (String, std::collections::HashMap<String, String>) {
    let out = ec2.describe_instances().instance_ids(id).send().await.unwrap();
    let i = out.reservations()[0].instances()[0].clone();
    let tags = i.tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect();
    (i.state().unwrap().name().unwrap().as_str().to_owned(), tags)
}

#[tokio::test]
async fn snapshot_then_stop_once_even_when_every_step_is_invoked_twice() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let client = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&client).await;
    let id =
        launch(&client, &ami, &InstanceSpec::new("dev-idle", "t3.large").tag("Environment", "dev"), 1).await.remove(0);
    let ec2 = Counting {
        inner: SdkEc2Actions::new(config.clone()),
        stops: AtomicUsize::new(0),
        snapshot_calls: AtomicUsize::new(0),
    };

    let first = run(&ec2, json!({"operation": "snapshot", "runId": "run-1", "proposal": proposal(&id)})).await;
    assert_eq!(first.outcome, Outcome::Done);
    assert_eq!(first.snapshot_ids.len(), 1, "one per attached volume");
    let again = run(&ec2, json!({"operation": "snapshot", "runId": "run-1", "proposal": proposal(&id)})).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone);
    assert_eq!(again.snapshot_ids, first.snapshot_ids);
    assert_eq!(ec2.snapshot_calls.load(Ordering::SeqCst), 1, "a retried snapshot step makes no second set");

    let snaps = client.describe_snapshots().snapshot_ids(&first.snapshot_ids[0]).send().await.unwrap();
    let tags: std::collections::HashMap<&str, &str> =
        snaps.snapshots()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!(tags["finops:run-id"], "run-1");
    assert_eq!(tags["finops:instance-id"], id.as_str());
    assert_eq!(tags["finops:reason"], "finops idle stop: idle for 14 days  script", "tag value sanitised");

    let status = run(&ec2, json!({"operation": "snapshot_status", "runId": "run-1", "proposal": proposal(&id), "snapshotIds": first.snapshot_ids})).await;
    assert_eq!(status.outcome, Outcome::Done, "{}", status.detail);

    let stop = json!({"operation": "stop", "runId": "run-1", "proposal": proposal(&id), "snapshotIds": first.snapshot_ids, "decision": approved()});
    assert_eq!(run(&ec2, stop.clone()).await.outcome, Outcome::Done);
    let second = run(&ec2, stop).await;
    assert_eq!(second.outcome, Outcome::AlreadyDone, "{}", second.detail);
    assert_eq!(ec2.stops.load(Ordering::SeqCst), 1);
    let (state, tags) = state_and_tags(&client, &id).await;
    assert_eq!(state, "stopped");
    assert_eq!(tags["finops:action"], "stopped");
    assert_eq!(tags["finops:approved-by"], "ana@example.com");
    assert_eq!(tags["finops:run-id"], "run-1");
}

#[tokio::test]
async fn the_live_instance_is_rechecked_right_before_stopping() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let client = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&client).await;
    let ids = launch(&client, &ami, &InstanceSpec::new("dev", "t3.large").tag("Environment", "dev"), 3).await;
    let ec2 = Counting {
        inner: SdkEc2Actions::new(config.clone()),
        stops: AtomicUsize::new(0),
        snapshot_calls: AtomicUsize::new(0),
    };
    let mut snapshot_ids = Vec::new();
    for id in &ids {
        snapshot_ids.push(
            run(&ec2, json!({"operation": "snapshot", "runId": "run-2", "proposal": proposal(id)})).await.snapshot_ids,
        );
    }

    // Someone marks the first one production after the scan; the second gets finops:protect.
    client
        .create_tags()
        .resources(&ids[0])
        .tags(aws_sdk_ec2::types::Tag::builder().key("env").value(" PROD ").build())
        .send()
        .await
        .unwrap();
    client
        .create_tags()
        .resources(&ids[1])
        .tags(aws_sdk_ec2::types::Tag::builder().key("finops:protect").value("yes").build())
        .send()
        .await
        .unwrap();
    for (i, needle) in [(0, "production"), (1, "protected")] {
        let out = run(&ec2, json!({"operation": "stop", "runId": "run-2", "proposal": proposal(&ids[i]), "snapshotIds": snapshot_ids[i], "decision": approved()})).await;
        assert_eq!(out.outcome, Outcome::Refused);
        assert!(out.detail.contains(needle), "{}", out.detail);
    }
    // Snapshots of another instance, or none, do not let a stop through.
    let foreign = run(&ec2, json!({"operation": "stop", "runId": "run-2", "proposal": proposal(&ids[2]), "snapshotIds": snapshot_ids[0], "decision": approved()})).await;
    assert_eq!(foreign.outcome, Outcome::Refused, "{}", foreign.detail);
    let none = run(&ec2, json!({"operation": "stop", "runId": "run-2", "proposal": proposal(&ids[2]), "snapshotIds": [], "decision": approved()})).await;
    assert_eq!(none.outcome, Outcome::Refused);
    assert!(none.detail.contains("no snapshot from this run"), "{}", none.detail);
    // A deny decision never stops; terminate is off by default.
    let denied = run(&ec2, json!({"operation": "stop", "runId": "run-2", "proposal": proposal(&ids[2]), "snapshotIds": snapshot_ids[2], "decision": {"decision": "deny"}})).await;
    assert_eq!(denied.outcome, Outcome::Refused);
    let terminate = run(&ec2, json!({"operation": "terminate", "runId": "run-2", "proposal": proposal(&ids[2]), "snapshotIds": snapshot_ids[2], "decision": approved()})).await;
    assert_eq!(terminate.outcome, Outcome::Refused);
    assert!(terminate.detail.contains("terminate is not enabled"));

    assert_eq!(ec2.stops.load(Ordering::SeqCst), 0);
    for id in &ids {
        assert_eq!(state_and_tags(&client, id).await.0, "running");
    }
}

#[tokio::test]
async fn snooze_is_tagged_for_the_configured_days() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let client = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&client).await;
    let id = launch(&client, &ami, &InstanceSpec::new("dev", "t3.large"), 1).await.remove(0);
    let ec2 = Counting {
        inner: SdkEc2Actions::new(config.clone()),
        stops: AtomicUsize::new(0),
        snapshot_calls: AtomicUsize::new(0),
    };
    let actions = ActionsConfig::from_vars(vec![("FINOPS_SNOOZE_DAYS".into(), "10".into())]).unwrap();
    let now = Utc::now();
    let out = handle(
        json!({"operation": "tag", "runId": "run-3", "proposal": proposal(&id), "decision": {"decision": "snooze", "approver": "raj@example.com"}}),
        &ec2,
        &actions,
        now,
    )
    .await
    .unwrap();
    assert_eq!(out.outcome, Outcome::Done);
    let (state, tags) = state_and_tags(&client, &id).await;
    assert_eq!(state, "running");
    let until = chrono::DateTime::parse_from_rfc3339(&tags["finops:snooze-until"]).unwrap();
    assert_eq!((until.with_timezone(&Utc) - now).num_days(), 9, "10 days less the seconds rounded off");
    assert_eq!(tags["finops:decided-by"], "raj@example.com");
    // The policy now sees it as snoozed.
    let live = ec2.describe_instance("ap-southeast-2", &id).await.unwrap().unwrap();
    assert!(actions.policy.snoozed_until(&live, now).is_some());
}

#[tokio::test]
async fn malformed_requests_are_invalid_input() {
    let ec2 = Counting {
        inner: SdkEc2Actions::new(moto().await.sdk_config("us-east-1").await),
        stops: AtomicUsize::new(0),
        snapshot_calls: AtomicUsize::new(0),
    };
    let config = ActionsConfig::from_vars(Vec::new()).unwrap();
    for event in [
        json!({}),
        json!({"operation": "reboot", "runId": "r", "proposal": proposal("i-1")}),
        json!({"operation": "stop", "runId": "r", "proposal": proposal("i-1")}),
        json!({"operation": "snapshot", "runId": "../x", "proposal": proposal("i-1")}),
    ] {
        let err = handle(event.clone(), &ec2, &config, Utc::now()).await.expect_err(&event.to_string());
        assert_eq!(err.error_name(), "Finops.InvalidInput", "{event}");
    }
}
