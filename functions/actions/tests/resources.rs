//! The actions handler on resources beyond instances, over in-memory EC2, approval records and CloudWatch: what it
//! takes to snapshot and delete an unattached volume and to release an unassociated Elastic IP, and everything that
//! makes it refuse. Each refusal is checked to change nothing.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use finops_actions::memory::MemoryEc2;
use finops_actions::{ActionOutcome, Actions, ActionsConfig, Outcome};
use finops_approval_store::{ApprovalRecord, Decision, MemoryApprovals, DECIDED_VIA_POST};
use finops_aws::FinopsError;
use finops_core::approval::ApprovalAction;
use finops_core::resources::{ElasticAddress, UnattachedVolume};
use finops_core::LookbackWindow;
use finops_inventory::LiveVolume;
use finops_metrics::{MetricDataPage, MetricKind, MetricQuery, MetricSeries, MetricsApi};
use serde_json::{json, Value};

const VOLUME: &str = "vol-0aaaabbbbccccdddd0";
const ADDRESS: &str = "eipalloc-0aaaabbbbccccdddd";
const REGION: &str = "ap-southeast-2";
const VOLUME_APPROVAL: &str = "11112222333344445555666677778888";
const ADDRESS_APPROVAL: &str = "99990000aaaabbbbccccddddeeeeffff";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 30, 0).unwrap()
}

fn volume(state: &str, tags: &[(&str, &str)]) -> LiveVolume {
    LiveVolume {
        record: UnattachedVolume {
            volume_id: VOLUME.into(),
            region: REGION.into(),
            volume_type: "gp3".into(),
            size_gib: 100,
            create_time: Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            account: None,
        },
        state: state.into(),
        attached_to: if state == "in-use" { vec!["i-0123456789abcdef0".into()] } else { vec![] },
        availability_zone: format!("{REGION}a"),
    }
}

fn address(association: Option<&str>, tags: &[(&str, &str)]) -> ElasticAddress {
    ElasticAddress {
        allocation_id: ADDRESS.into(),
        public_ip: "203.0.113.10".into(),
        region: REGION.into(),
        association_id: association.map(str::to_owned),
        tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        account: None,
    }
}

/// The proposals as the policy step makes them (`finops_core::resources::proposals`).
fn volume_proposal() -> Value {
    json!({
        "resourceId": VOLUME, "region": REGION, "resourceType": "gp3 volume, 100 GiB", "action": "snapshot-and-delete",
        "confidence": 1.0, "justification": "unattached for the whole 14-day lookback", "backend": "rules",
        "priceSource": "embedded", "evidence": [], "volumeIds": [VOLUME], "measuredUntil": "2026-11-28T00:00:00Z"
    })
}

fn address_proposal() -> Value {
    json!({
        "resourceId": ADDRESS, "region": REGION, "resourceType": "public IPv4 203.0.113.10", "action": "release",
        "confidence": 1.0, "justification": "not associated", "backend": "rules", "priceSource": "embedded",
        "evidence": [], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
    })
}

/// An approval record as the callback writes it after a POST on the page of `proposal`.
fn decided(id: &str, proposal: Value, decision: ApprovalAction) -> ApprovalRecord {
    ApprovalRecord::pending(
        id,
        serde_json::from_value(proposal).unwrap(),
        "run-1",
        "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
        finops_testkit::fixtures::audience(&["ana@example.com", "bo@example.com"]),
        now().timestamp() - 86_400,
        now().timestamp() + 3_600,
    )
    .waiting_on("token")
    .decided(&Decision {
        action: decision,
        approver: "ana@example.com",
        source_ip: None,
        decided_at: "2026-12-02T09:00:00Z",
        via: DECIDED_VIA_POST,
    })
}

/// CloudWatch since the scan: a volume with I/O every day (`used`), or no datapoint at all.
struct VolumeIo {
    used: bool,
}

impl MetricsApi for VolumeIo {
    async fn memory_dimensions(&self, _: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        Ok(HashMap::new())
    }

    async fn get_metric_data(
        &self,
        _: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        _: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        let series = queries
            .iter()
            .map(|q| {
                let io = self.used && matches!(q.kind, MetricKind::VolumeReadOps | MetricKind::VolumeWriteOps);
                let days = if io { window.days } else { 0 };
                MetricSeries {
                    id: q.id.clone(),
                    timestamps: (0..days).map(|d| window.start().timestamp() + i64::from(d) * 86_400).collect(),
                    values: vec![40.0; days as usize],
                }
            })
            .collect();
        Ok(MetricDataPage { series, next_token: None })
    }
}

struct World {
    ec2: MemoryEc2,
    approvals: MemoryApprovals,
    metrics: VolumeIo,
    config: ActionsConfig,
}

impl World {
    fn new(volume: LiveVolume, address: ElasticAddress) -> Self {
        Self {
            ec2: MemoryEc2::default().with_resources(vec![volume], vec![address]),
            approvals: MemoryApprovals::default(),
            metrics: VolumeIo { used: false },
            config: ActionsConfig::from_vars([
                ("FINOPS_APPROVALS_TABLE".to_string(), "approvals".to_string()),
                ("FINOPS_MODE".to_string(), "act".to_string()),
            ])
            .unwrap(),
        }
    }

    fn approved() -> Self {
        let w = Self::new(volume("available", &[("Name", "old-scratch")]), address(None, &[]));
        w.approvals.insert(decided(VOLUME_APPROVAL, volume_proposal(), ApprovalAction::Approve));
        w.approvals.insert(decided(ADDRESS_APPROVAL, address_proposal(), ApprovalAction::Approve));
        w
    }

    async fn call(&self, event: Value) -> ActionOutcome {
        let actions = Actions {
            live: &self.ec2,
            ec2: &self.ec2,
            approvals: &self.approvals,
            metrics: &self.metrics,
            config: &self.config,
        };
        actions.handle(event, now()).await.unwrap()
    }

    async fn snapshot(&self, approval: &str) -> ActionOutcome {
        self.call(json!({"operation": "snapshot", "runId": "run-1", "proposal": volume_proposal(),
            "decision": {"approvalId": approval}}))
            .await
    }

    async fn delete(&self, snapshot_ids: &[String], approval: &str) -> ActionOutcome {
        self.call(json!({"operation": "delete_volume", "runId": "run-1", "proposal": volume_proposal(),
            "snapshotIds": snapshot_ids, "decision": {"approvalId": approval}}))
            .await
    }

    async fn release(&self, proposal: Value, approval: &str) -> ActionOutcome {
        self.call(json!({"operation": "release_address", "runId": "run-1", "proposal": proposal,
            "decision": {"approvalId": approval}}))
            .await
    }

    fn volume_tags(&self) -> BTreeMap<String, String> {
        self.ec2.volumes.lock().unwrap()[VOLUME].record.tags.clone()
    }
}

#[tokio::test]
async fn an_approved_volume_is_snapshotted_then_deleted_once_and_its_snapshot_is_kept() {
    let w = World::approved();
    let snap = w.snapshot(VOLUME_APPROVAL).await;
    assert_eq!(snap.outcome, Outcome::Done, "{}", snap.detail);
    assert_eq!(snap.snapshot_ids.len(), 1);
    let again = w.snapshot(VOLUME_APPROVAL).await;
    assert_eq!((again.outcome, &again.snapshot_ids), (Outcome::AlreadyDone, &snap.snapshot_ids), "no second snapshot");

    let deleted = w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await;
    assert_eq!((deleted.operation.as_str(), deleted.outcome), ("delete_volume", Outcome::Done), "{}", deleted.detail);
    assert!(deleted.detail.contains(&snap.snapshot_ids[0]), "the kept snapshot is named: {}", deleted.detail);
    let retried = w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await;
    assert_eq!(retried.outcome, Outcome::AlreadyDone, "{}", retried.detail);
    assert_eq!(w.ec2.deletions(), [VOLUME], "deleted exactly once");
    // A retry that finds it still being deleted (EC2 shows `deleting` for a while) does not call it refused.
    w.ec2.volumes.lock().unwrap().insert(VOLUME.into(), volume("deleting", &[]));
    let deleting = w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await;
    assert_eq!(deleting.outcome, Outcome::AlreadyDone, "{}", deleting.detail);
    assert_eq!(w.ec2.deletions(), [VOLUME]);

    let snapshots = w.ec2.snapshots.lock().unwrap().clone();
    assert_eq!(snapshots.len(), 1, "the snapshot outlives the volume");
    let tags = &snapshots[0].tags;
    assert_eq!((tags["finops:volume-id"].as_str(), tags["finops:run-id"].as_str()), (VOLUME, "run-1"));
    assert_eq!(tags["finops:approved-by"], "ana@example.com", "from the approval record");
    assert_eq!(tags["finops:action"], "deleted-volume");
}

#[tokio::test]
async fn a_volume_attached_tagged_or_used_since_the_scan_is_not_deleted() {
    for (live, used, needle) in [
        (volume("in-use", &[]), false, "in-use now"),
        (volume("available", &[("Environment", "production")]), false, "policy re-check on the live volume"),
        (volume("available", &[("finops:protect", "true")]), false, "policy re-check on the live volume"),
        (volume("available", &[]), true, "used since the scan"),
    ] {
        // Snapshotted while it still qualified; then it changed.
        let mut w = World::approved();
        let snap = w.snapshot(VOLUME_APPROVAL).await;
        assert_eq!(snap.outcome, Outcome::Done, "{}", snap.detail);
        w.ec2.volumes.lock().unwrap().insert(VOLUME.into(), live.clone());
        w.metrics = VolumeIo { used };
        let out = w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await;
        assert_eq!(out.outcome, Outcome::Refused, "{needle}: {}", out.detail);
        assert!(out.detail.contains(needle), "{needle}: {}", out.detail);
        assert!(w.ec2.deletions().is_empty(), "{needle}: nothing deleted");
        // And a volume that no longer qualifies is not snapshotted either, in another run's approval.
        let fresh = World::new(live, address(None, &[]));
        fresh.approvals.insert(decided(VOLUME_APPROVAL, volume_proposal(), ApprovalAction::Approve));
        if !used {
            let refused = fresh.snapshot(VOLUME_APPROVAL).await;
            assert_eq!(refused.outcome, Outcome::Refused, "{needle}: {}", refused.detail);
            assert_eq!(fresh.ec2.snapshot_count(), 0);
        }
    }
}

#[tokio::test]
async fn a_volume_is_deleted_only_with_this_runs_completed_snapshot_of_it() {
    let w = World::approved();
    let pending = World::approved();
    *pending.ec2.new_snapshot_state.lock().unwrap() = Some("pending".into());
    let pending_snap = pending.snapshot(VOLUME_APPROVAL).await.snapshot_ids;
    let out = pending.delete(&pending_snap, VOLUME_APPROVAL).await;
    assert_eq!(out.outcome, Outcome::Refused, "{}", out.detail);
    assert!(out.detail.contains("snapshots not complete"), "{}", out.detail);

    // No snapshot named, or one this run did not make of this volume.
    assert!(w.delete(&[], VOLUME_APPROVAL).await.detail.contains("no snapshots were made"));
    w.ec2.snapshots.lock().unwrap().push(finops_actions::SnapshotInfo {
        snapshot_id: "snap-foreign".into(),
        volume_id: VOLUME.into(),
        state: "completed".into(),
        progress: "100%".into(),
        tags: [("finops:run-id".to_owned(), "run-0".to_owned())].into(),
    });
    let foreign = w.delete(&["snap-foreign".to_string()], VOLUME_APPROVAL).await;
    assert_eq!(foreign.outcome, Outcome::Refused, "{}", foreign.detail);
    assert!(foreign.detail.contains("not made by this run"), "{}", foreign.detail);
    assert!(w.ec2.deletions().is_empty() && pending.ec2.deletions().is_empty());
}

#[tokio::test]
async fn an_approval_acts_only_on_the_kind_and_resource_it_was_given_for() {
    let w = World::approved();
    // The address's approval presented for the volume, and the volume's for the address.
    let snap = w.snapshot(ADDRESS_APPROVAL).await;
    assert_eq!(snap.outcome, Outcome::Refused, "{}", snap.detail);
    let crossed = w.delete(&["snap-1".to_string()], ADDRESS_APPROVAL).await;
    assert_eq!(crossed.outcome, Outcome::Refused, "{}", crossed.detail);
    let released = w.release(address_proposal(), VOLUME_APPROVAL).await;
    assert_eq!(released.outcome, Outcome::Refused, "{}", released.detail);
    // A payload that calls the volume an address (same id, other action) is refused by the record's action.
    let mut as_address = volume_proposal();
    as_address["action"] = json!("release");
    let renamed = w.release(as_address, VOLUME_APPROVAL).await;
    assert!(renamed.detail.contains("not for this operation"), "{}", renamed.detail);
    // An approved volume cannot be stopped as an instance.
    let stop = w
        .call(json!({"operation": "stop", "runId": "run-1", "proposal": volume_proposal(), "snapshotIds": ["snap-1"],
            "decision": {"approvalId": VOLUME_APPROVAL}}))
        .await;
    assert_eq!(stop.outcome, Outcome::Refused, "{}", stop.detail);
    // Deny and snooze decisions do not delete or release.
    let denied = World::new(volume("available", &[]), address(None, &[]));
    denied.approvals.insert(decided(VOLUME_APPROVAL, volume_proposal(), ApprovalAction::Deny));
    denied.approvals.insert(decided(ADDRESS_APPROVAL, address_proposal(), ApprovalAction::Snooze));
    assert_eq!(denied.snapshot(VOLUME_APPROVAL).await.outcome, Outcome::Refused);
    assert_eq!(denied.release(address_proposal(), ADDRESS_APPROVAL).await.outcome, Outcome::Refused);
    assert!(w.ec2.deletions().is_empty() && denied.ec2.deletions().is_empty(), "nothing deleted or released");
    assert_eq!(w.ec2.snapshot_count() + denied.ec2.snapshot_count(), 0, "nothing snapshotted");
}

#[tokio::test]
async fn an_approved_address_is_released_once_unless_it_was_associated_or_named_since() {
    let w = World::approved();
    let out = w.release(address_proposal(), ADDRESS_APPROVAL).await;
    assert_eq!((out.operation.as_str(), out.outcome), ("release_address", Outcome::Done), "{}", out.detail);
    let again = w.release(address_proposal(), ADDRESS_APPROVAL).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.detail);
    assert_eq!(w.ec2.deletions(), [ADDRESS]);

    for (live, needle) in [
        (address(Some("eipassoc-0abc"), &[]), "associated now"),
        (address(None, &[("dns-name", "api.example.com")]), "DNS record"),
        (address(None, &[("Environment", "prod")]), "policy re-check on the live address"),
    ] {
        let w = World::new(volume("available", &[]), live);
        w.approvals.insert(decided(ADDRESS_APPROVAL, address_proposal(), ApprovalAction::Approve));
        let out = w.release(address_proposal(), ADDRESS_APPROVAL).await;
        assert_eq!(out.outcome, Outcome::Refused, "{needle}: {}", out.detail);
        assert!(out.detail.contains(needle), "{needle}: {}", out.detail);
        assert!(w.ec2.deletions().is_empty(), "{needle}: not released");
    }
}

#[tokio::test]
async fn a_snooze_on_a_volume_is_a_tag_on_the_volume() {
    let w = World::new(volume("available", &[]), address(None, &[]));
    w.approvals.insert(decided(VOLUME_APPROVAL, volume_proposal(), ApprovalAction::Snooze));
    let out = w
        .call(json!({"operation": "tag", "runId": "run-1", "proposal": volume_proposal(),
            "decision": {"approvalId": VOLUME_APPROVAL}}))
        .await;
    assert_eq!(out.outcome, Outcome::Done, "{}", out.detail);
    assert!(w.volume_tags().contains_key("finops:snooze-until"), "{:?}", w.volume_tags());
    assert!(w.ec2.deletions().is_empty());
}

/// After the delete or release step failed (its retries spent), the state machine asks what happened: the answer
/// reads the volume or address, changes nothing, and says "deleted" only with this run's completed snapshot kept.
#[tokio::test]
async fn the_cleanup_status_says_what_a_failed_delete_or_release_did_and_changes_nothing() {
    let w = World::approved();
    let status =
        |proposal: Value| w.call(json!({"operation": "cleanup_status", "runId": "run-1", "proposal": proposal}));
    let before = status(volume_proposal()).await;
    assert_eq!((before.operation.as_str(), before.outcome), ("delete_volume", Outcome::Failed), "{}", before.detail);
    let snap = w.snapshot(VOLUME_APPROVAL).await;
    let snapshotted = status(volume_proposal()).await;
    assert_eq!(snapshotted.outcome, Outcome::Failed, "still there: {}", snapshotted.detail);
    assert!(snapshotted.detail.contains("the volume is available"), "{}", snapshotted.detail);
    assert_eq!(w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await.outcome, Outcome::Done);
    let after = status(volume_proposal()).await;
    assert_eq!((after.outcome, &after.snapshot_ids), (Outcome::AlreadyDone, &snap.snapshot_ids), "{}", after.detail);
    assert!(after.acted.is_some(), "a deletion found afterwards is recorded as done");

    let address = status(address_proposal()).await;
    assert_eq!((address.operation.as_str(), address.outcome), ("release_address", Outcome::Failed));
    assert_eq!(w.release(address_proposal(), ADDRESS_APPROVAL).await.outcome, Outcome::Done);
    assert_eq!(status(address_proposal()).await.outcome, Outcome::AlreadyDone);
    assert_eq!(w.ec2.deletions(), [VOLUME, ADDRESS], "reading changed nothing");
}

const VOLUME_UNDO: &str = "0000111122223333444455556666777b";

#[tokio::test]
async fn an_undo_recreates_a_deleted_volume_from_its_snapshot_once_in_its_zone() {
    let w = World::approved();
    let snap = w.snapshot(VOLUME_APPROVAL).await;
    assert_eq!(w.delete(&snap.snapshot_ids, VOLUME_APPROVAL).await.outcome, Outcome::Done);
    let approval = decided(VOLUME_APPROVAL, volume_proposal(), ApprovalAction::Approve);
    let undo =
        ApprovalRecord::undo_of(&approval, VOLUME_UNDO, "2026-12-02T09:30:00Z", None, 0, now().timestamp() + 86_400);
    let undo_call = |id: &'static str| json!({"operation": "undo", "runId": "run-1", "proposal": volume_proposal(), "decision": {"approvalId": id}});
    w.approvals.insert(undo.clone());
    assert_eq!(w.call(undo_call(VOLUME_UNDO)).await.outcome, Outcome::Refused, "not decided yet");
    w.approvals.insert(undo.decided(&Decision {
        action: ApprovalAction::Undo,
        approver: "bo@example.com",
        source_ip: None,
        decided_at: "2026-12-02T10:00:00Z",
        via: DECIDED_VIA_POST,
    }));
    let done = w.call(undo_call(VOLUME_UNDO)).await;
    assert_eq!(done.outcome, Outcome::Done, "{}", done.detail);
    assert_eq!(done.snapshot_ids, snap.snapshot_ids, "from the snapshot taken before the deletion");
    let again = w.call(undo_call(VOLUME_UNDO)).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.detail);
    let made = w.ec2.recreated.lock().unwrap().clone();
    assert_eq!(made.len(), 1, "recreated exactly once");
    let volume = w.ec2.volumes.lock().unwrap()[&made[0].0].clone();
    assert_eq!(volume.availability_zone, format!("{REGION}a"), "in the zone the volume was in");
    assert_eq!(volume.record.volume_type, "gp3");
    assert_eq!(volume.record.tags["Name"], "old-scratch", "its Name comes back");
    assert_eq!(volume.record.tags["finops:volume-id"], VOLUME);
    // The deletion's approval is no undo.
    assert_eq!(w.call(undo_call(VOLUME_APPROVAL)).await.outcome, Outcome::Refused);
}
