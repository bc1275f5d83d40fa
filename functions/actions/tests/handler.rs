//! The actions handler over in-memory EC2, approval records and CloudWatch: what it takes to stop an instance, and
//! everything that makes it refuse. Each refusal is checked to change nothing.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use finops_actions::memory::MemoryEc2;
use finops_actions::{ActionOutcome, Actions, ActionsConfig, Outcome, StoppedAs};
use finops_approval_store::{
    ApprovalReader, ApprovalRecord, ApprovalState, Decision, MemoryApprovals, DECIDED_VIA_POST,
};
use finops_aws::FinopsError;
use finops_core::approval::ApprovalAction;
use finops_core::{InstanceRecord, InstanceStorage, LookbackWindow};
use finops_metrics::{MetricDataPage, MetricKind, MetricQuery, MetricSeries, MetricsApi};
use serde_json::{json, Value};

const ID: &str = "i-0123456789abcdef0";
const APPROVAL: &str = "aaaabbbbccccddddeeeeffff00001111";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, 9, 30, 0).unwrap()
}

fn launched() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap()
}

/// An idle dev box as the scan saw it (the fixture's EBS root volume, no instance storage).
fn instance() -> InstanceRecord {
    let mut i = finops_testkit::fixtures::instance(ID, "t3.large", &[("Name", "dev-box"), ("Environment", "dev")]);
    i.launch_time = launched();
    i
}

fn proposal() -> Value {
    json!({
        "instanceId": ID, "region": "ap-southeast-2", "instanceType": "t3.large", "action": "snapshot-and-stop",
        "recommended": "snapshot_and_stop", "confidence": 0.9, "justification": "idle 14 days", "backend": "rules",
        "priceSource": "embedded", "evidence": [], "volumeIds": ["vol-0123456789abcdef0"],
        "launchTime": launched().to_rfc3339(), "measuredUntil": "2026-11-28T00:00:00Z"
    })
}

/// An approval record as the callback writes it after a POST.
fn decided(decision: ApprovalAction) -> ApprovalRecord {
    ApprovalRecord::pending(
        APPROVAL,
        serde_json::from_value(proposal()).unwrap(),
        "run-1",
        "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
        finops_testkit::fixtures::audience(&["ana@example.com", "bo@example.com"]),
        now().timestamp() - 86_400 * 4,
        now().timestamp() + 3_600,
    )
    .waiting_on("token")
    .decided(&Decision {
        action: decision,
        approver: "ana@example.com",
        source_ip: Some("203.0.113.7"),
        decided_at: "2026-12-02T09:00:00Z",
        via: DECIDED_VIA_POST,
    })
}

/// CloudWatch since the scan: the same value every day for every instance.
struct Constant {
    cpu_max: f64,
    network_bytes: f64,
}

impl MetricsApi for Constant {
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
                let value = match q.kind {
                    MetricKind::CpuMaximum => self.cpu_max,
                    MetricKind::CpuAverage => self.cpu_max / 4.0,
                    MetricKind::NetworkIn | MetricKind::NetworkOut => self.network_bytes / 2.0,
                    _ => 100.0,
                };
                MetricSeries {
                    id: q.id.clone(),
                    timestamps: (0..window.days).map(|d| window.start().timestamp() + i64::from(d) * 86_400).collect(),
                    values: vec![value; window.days as usize],
                }
            })
            .collect();
        Ok(MetricDataPage { series, next_token: None })
    }
}

const IDLE: Constant = Constant { cpu_max: 2.0, network_bytes: 200_000.0 };

struct World {
    ec2: MemoryEc2,
    approvals: MemoryApprovals,
    metrics: Constant,
    config: ActionsConfig,
    /// How the last stop left the instance, as its outcome said (what the offer keeps in the undo record): `call`
    /// keeps it.
    stopped_as: std::sync::Mutex<Option<StoppedAs>>,
}

impl World {
    fn new(instance: InstanceRecord, metrics: Constant) -> Self {
        let ec2 = MemoryEc2::with([instance]);
        // EC2 stops seconds after the step's clock reads.
        *ec2.clock.lock().unwrap() = Some(now() + chrono::Duration::seconds(3));
        Self {
            stopped_as: Default::default(),
            ec2,
            approvals: MemoryApprovals::default(),
            metrics,
            config: ActionsConfig::from_vars([
                ("FINOPS_APPROVALS_TABLE".to_string(), "approvals".to_string()),
                ("FINOPS_MODE".to_string(), "act".to_string()),
            ])
            .unwrap(),
        }
    }

    async fn call(&self, event: Value) -> Result<ActionOutcome, FinopsError> {
        let actions = Actions {
            live: &self.ec2,
            ec2: &self.ec2,
            approvals: &self.approvals,
            metrics: &self.metrics,
            config: &self.config,
        };
        let out = actions.handle(event, now()).await;
        if let Some(stopped_as) = out.as_ref().ok().and_then(|o| o.acted.as_ref()).and_then(|a| a.stopped_as.clone()) {
            *self.stopped_as.lock().unwrap() = Some(stopped_as);
        }
        out
    }

    async fn snapshot(&self, decision: Value) -> ActionOutcome {
        self.call(json!({"operation": "snapshot", "runId": "run-1", "proposal": proposal(), "decision": decision}))
            .await
            .unwrap()
    }

    async fn stop(&self, snapshot_ids: &[String], decision: Value) -> ActionOutcome {
        self.call(json!({"operation": "stop", "runId": "run-1", "proposal": proposal(), "snapshotIds": snapshot_ids, "decision": decision}))
            .await
            .unwrap()
    }

    /// The undo record the offer writes for the last approved stop (with how it left the instance), decided
    /// `decision` by POST.
    fn undo_decided(&self, decision: ApprovalAction) -> ApprovalRecord {
        undo_record(decision, self.stopped_as.lock().unwrap().clone())
    }

    /// Snapshots made under a genuine approval, for the stop tests.
    async fn snapshotted(&self) -> Vec<String> {
        self.approvals.insert(decided(ApprovalAction::Approve));
        let out = self.snapshot(json!({"approvalId": APPROVAL})).await;
        assert_eq!(out.outcome, Outcome::Done, "{}", out.detail);
        out.snapshot_ids
    }
}

fn approval() -> Value {
    json!({"decision": "approve", "approver": "someone-else", "approvalId": APPROVAL})
}

#[tokio::test]
async fn a_hand_written_payload_snapshots_and_stops_nothing() {
    let w = World::new(instance(), IDLE);
    let claims = [
        json!(null),
        json!({"decision": "approve", "approver": "ana@example.com", "decidedAt": "2026-12-02T09:00:00Z"}),
        json!({"decision": "approve", "approvalId": "not-an-id"}),
        approval(),
    ];
    for decision in &claims {
        let snap = w.snapshot(decision.clone()).await;
        assert_eq!(snap.outcome, Outcome::Refused, "{decision}: {}", snap.detail);
        let stop = w.stop(&["snap-1".to_string()], decision.clone()).await;
        assert_eq!(stop.outcome, Outcome::Refused, "{decision}: {}", stop.detail);
    }
    // Records that exist but do not authorise this stop.
    let mut pending = decided(ApprovalAction::Approve);
    (pending.state, pending.decision, pending.decided_via) = (ApprovalState::Pending, None, None);
    let mut expired = decided(ApprovalAction::Approve);
    expired.state = ApprovalState::Expired;
    let mut other_run = decided(ApprovalAction::Approve);
    other_run.run_id = "run-0".into();
    let mut other_instance = decided(ApprovalAction::Approve);
    other_instance.proposal.resource_id = "i-0fffffffffffffff0".into();
    let mut not_post = decided(ApprovalAction::Approve);
    not_post.decided_via = None;
    // Approved for the same instance id in another account: not this stop (the account acted in is the approved one).
    // Asked of the data team, decided by someone else (the page refuses that; the acting step checks again).
    let mut not_routed = decided(ApprovalAction::Approve);
    not_routed.audience.approvers = vec!["data-team@example.com".into()];
    not_routed.audience.because = "account 111111111111".into();
    let mut other_account = decided(ApprovalAction::Approve);
    other_account.proposal.account = Some(finops_core::organization::AccountRef::new("111111111111", "data-dev"));
    for (record, needle) in [
        (pending, "not decided"),
        (expired, "not decided"),
        (decided(ApprovalAction::Deny), "not [Approve]"),
        (decided(ApprovalAction::Snooze), "not [Approve]"),
        (other_run, "belongs to run"),
        (other_instance, "is for i-0fffffffffffffff0"),
        (not_post, "not decided by POST"),
        (not_routed, "ana@example.com is not an approver of this resource (account 111111111111)"),
        (other_account, "is for a resource in account 111111111111, not in account this one"),
    ] {
        w.approvals.insert(record);
        let stop = w.stop(&["snap-1".to_string()], approval()).await;
        assert_eq!(stop.outcome, Outcome::Refused);
        assert!(stop.detail.contains(needle), "{needle}: {}", stop.detail);
        assert_eq!(w.snapshot(approval()).await.outcome, Outcome::Refused);
    }
    assert!(w.ec2.stops().is_empty(), "nothing stopped");
    assert_eq!(w.ec2.snapshot_count(), 0, "nothing snapshotted");
    assert!(!w.ec2.instance(ID).unwrap().tags.contains_key("finops:run-id"), "nothing tagged");
}

#[tokio::test]
async fn a_verified_approval_stops_once_and_names_the_recorded_approver() {
    let w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    let first = w.stop(&snaps, approval()).await;
    assert_eq!(first.outcome, Outcome::Done, "{}", first.detail);
    let again = w.stop(&snaps, approval()).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.detail);
    assert_eq!(w.ec2.stops(), [ID]);
    let tags = w.ec2.instance(ID).unwrap().tags;
    assert_eq!(tags["finops:approved-by"], "ana@example.com", "from the approval record, not the payload");
    assert!(tags.values().all(|v| !v.contains("203.0.113.7")), "the approver's address is not a tag");
    // Terminate is not an operation.
    let err = w
        .call(json!({"operation": "terminate", "runId": "run-1", "proposal": proposal(), "snapshotIds": snaps}))
        .await
        .unwrap_err();
    assert_eq!(err.error_name(), "Finops.InvalidInput");
}

/// After the stop step failed (its retries spent), the state machine asks what happened: the answer reads the
/// instance, changes nothing, and says "stopped by this run" only when it was.
#[tokio::test]
async fn the_stop_status_says_what_the_failed_stop_did_and_changes_nothing() {
    let w = World::new(instance(), IDLE);
    let status = || w.call(json!({"operation": "stop_status", "runId": "run-1", "proposal": proposal()}));
    let before = status().await.unwrap();
    assert_eq!((before.operation.as_str(), before.outcome), ("stop", Outcome::Failed), "{}", before.detail);
    assert!(before.detail.contains("the instance is running"), "{}", before.detail);
    assert!(w.ec2.stops().is_empty(), "reading changes nothing");
    let snaps = w.snapshotted().await;
    assert_eq!(w.stop(&snaps, approval()).await.outcome, Outcome::Done);
    let after = status().await.unwrap();
    assert_eq!(after.outcome, Outcome::AlreadyDone, "{}", after.detail);
    assert!(after.detail.contains("by this run"), "{}", after.detail);
    let other_run =
        w.call(json!({"operation": "stop_status", "runId": "run-2", "proposal": proposal()})).await.unwrap();
    assert_eq!(other_run.outcome, Outcome::Failed, "stopped, but not by that run: {}", other_run.detail);
    assert_eq!(w.ec2.stops(), [ID]);
}

#[tokio::test]
async fn an_instance_that_became_busy_since_the_scan_is_not_stopped() {
    for (metrics, needle) in [
        (Constant { cpu_max: 80.0, network_bytes: 200_000.0 }, "peak CPU 80%"),
        (Constant { cpu_max: 2.0, network_bytes: 9e9 }, "network"),
    ] {
        let w = World::new(instance(), metrics);
        let snaps = w.snapshotted().await;
        let out = w.stop(&snaps, approval()).await;
        assert_eq!(out.outcome, Outcome::Refused);
        assert!(out.detail.contains("no longer idle since the scan") && out.detail.contains(needle), "{}", out.detail);
        assert!(w.ec2.stops().is_empty());
    }
}

#[tokio::test]
async fn an_instance_restarted_since_the_scan_is_not_stopped() {
    let mut restarted = instance();
    restarted.launch_time = Utc.with_ymd_and_hms(2026, 12, 1, 7, 0, 0).unwrap();
    let w = World::new(restarted, IDLE);
    let snaps = w.snapshotted().await;
    let out = w.stop(&snaps, approval()).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(out.detail.contains("restarted since the scan"), "{}", out.detail);
    assert!(w.ec2.stops().is_empty());
}

#[tokio::test]
async fn instance_storage_and_missing_volumes_are_checked_on_the_live_instance() {
    let mut nvme = instance();
    nvme.instance_storage = InstanceStorage::Present { total_gib: 75 };
    let mut unknown = instance();
    unknown.instance_storage = InstanceStorage::Unknown;
    for (live, needle) in [(nvme, "75 GiB of instance-store disks"), (unknown, "could not be established")] {
        let w = World::new(instance(), IDLE);
        let snaps = w.snapshotted().await;
        // What the scan did not see: the live instance has local disks (resized to an m5d, say).
        w.ec2.instances.lock().unwrap().insert(ID.into(), live);
        let out = w.stop(&snaps, approval()).await;
        assert_eq!(out.outcome, Outcome::Refused);
        assert!(out.detail.contains("instance-storage") && out.detail.contains(needle), "{}", out.detail);
        assert!(w.ec2.stops().is_empty());
    }
    let mut bare = instance();
    bare.volumes.clear();
    let w = World::new(bare, IDLE);
    w.approvals.insert(decided(ApprovalAction::Approve));
    let out = w.stop(&[], approval()).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(out.detail.contains("no-volumes"), "{}", out.detail);
    assert!(w.ec2.stops().is_empty());
}

#[tokio::test]
async fn pending_or_failed_snapshots_block_the_stop() {
    for (state, needle) in [("pending", "in progress"), ("error", "failed")] {
        let w = World::new(instance(), IDLE);
        *w.ec2.new_snapshot_state.lock().unwrap() = Some(state.into());
        let snaps = w.snapshotted().await;
        let out = w.stop(&snaps, approval()).await;
        assert_eq!(out.outcome, Outcome::Refused);
        assert!(out.detail.contains(needle), "{}", out.detail);
        assert!(w.ec2.stops().is_empty());
    }
}

#[tokio::test]
async fn a_snooze_is_tagged_from_the_recorded_decision() {
    let w = World::new(instance(), IDLE);
    w.approvals.insert(decided(ApprovalAction::Snooze));
    let out = w
        .call(json!({"operation": "tag", "runId": "run-1", "proposal": proposal(), "decision": {"decision": "approve", "approvalId": APPROVAL}}))
        .await
        .unwrap();
    assert_eq!(out.outcome, Outcome::Done, "{}", out.detail);
    let tags = w.ec2.instance(ID).unwrap().tags;
    assert_eq!(tags["finops:decision"], "snooze", "the record's decision, not the payload's");
    assert!(tags.contains_key("finops:snooze-until"));
    assert!(w.ec2.stops().is_empty());
    assert_eq!(w.approvals.get(APPROVAL).await.unwrap().unwrap().decision, Some(ApprovalAction::Snooze));
}

const UNDO: &str = "0000111122223333444455556666777a";

/// The undo record of the approved stop, as it left the instance (`stopped_as`), decided `decision` by POST.
fn undo_record(decision: ApprovalAction, stopped_as: Option<StoppedAs>) -> ApprovalRecord {
    let approval = decided(ApprovalAction::Approve);
    ApprovalRecord::undo_of(
        &approval,
        UNDO,
        "2026-12-02T09:20:00Z",
        stopped_as,
        now().timestamp(),
        now().timestamp() + 14 * 86_400,
    )
    .decided(&Decision {
        action: decision,
        approver: "bo@example.com",
        source_ip: None,
        decided_at: "2026-12-03T10:00:00Z",
        via: DECIDED_VIA_POST,
    })
}

impl World {
    async fn undo(&self, id: &str) -> ActionOutcome {
        self.call(
            json!({"operation": "undo", "runId": "run-1", "proposal": proposal(), "decision": {"approvalId": id}}),
        )
        .await
        .unwrap()
    }
}

/// One-click undo: a stop is undone only with the undo record's own decision, once, and only while the instance is
/// still stopped as that run left it.
#[tokio::test]
async fn an_undo_starts_the_instance_this_run_stopped_once_and_nothing_else() {
    let w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    assert_eq!(w.stop(&snaps, approval()).await.outcome, Outcome::Done);

    // The stop's own approval is not an undo, and an undo record not yet decided (or decided otherwise) is nothing.
    let refused = w.undo(APPROVAL).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    let pending = w.undo_decided(ApprovalAction::Undo);
    w.approvals.insert(ApprovalRecord { state: finops_approval_store::ApprovalState::Pending, ..pending });
    assert_eq!(w.undo(UNDO).await.outcome, Outcome::Refused);
    assert!(w.ec2.started.lock().unwrap().is_empty());
    // An undo record can never stop anything either.
    w.approvals.insert(w.undo_decided(ApprovalAction::Undo));
    let stop_with_undo = w.stop(&snaps, json!({"approvalId": UNDO})).await;
    assert_eq!(stop_with_undo.outcome, Outcome::Refused, "{}", stop_with_undo.detail);

    let undone = w.undo(UNDO).await;
    assert_eq!((undone.operation.as_str(), undone.outcome), ("undo", Outcome::Done), "{}", undone.detail);
    assert!(undone.acted.is_none(), "an undo saves nothing");
    let again = w.undo(UNDO).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.detail);
    assert_eq!(*w.ec2.started.lock().unwrap(), [ID], "started exactly once");
    let tags = w.ec2.instance(ID).unwrap().tags;
    assert_eq!(
        (tags["finops:undone-by"].as_str(), tags["finops:action"].as_str()),
        ("bo@example.com", "started-again")
    );
}

#[tokio::test]
async fn an_undo_leaves_an_instance_stopped_since_by_someone_else() {
    let w = World::new(instance(), IDLE);
    w.approvals.insert(w.undo_decided(ApprovalAction::Undo));
    // Stopped, but not by run-1 (by hand, or another run): not this undo's to start.
    {
        let mut instances = w.ec2.instances.lock().unwrap();
        let i = instances.get_mut(ID).unwrap();
        i.state = "stopped".into();
        i.tags.insert("finops:run-id".into(), "run-0".into());
        i.tags.insert("finops:action".into(), "stopped".into());
    }
    let refused = w.undo(UNDO).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    assert!(refused.detail.contains("another run or by hand"), "{}", refused.detail);
    assert!(w.ec2.started.lock().unwrap().is_empty());
}

/// Finding 4 of the "who decides" review: an undo started an instance a person had started and stopped again since,
/// and one retagged production or protected since. The undo acts only on the stop it undoes, and the live policy wins.
/// The attacker's review after it: an undo started an instance whose type and boot code were changed while it was
/// stopped (someone who may modify but not start it ran their code with the undo's start). Changed: not started.
#[tokio::test]
async fn an_undo_leaves_an_instance_a_person_changed_since_the_stop() {
    let stopped_world = || async {
        let w = World::new(instance(), IDLE);
        let snaps = w.snapshotted().await;
        assert_eq!(w.stop(&snaps, approval()).await.outcome, Outcome::Done);
        w.approvals.insert(w.undo_decided(ApprovalAction::Undo));
        w
    };
    type Change = (&'static str, fn(&mut InstanceRecord));
    let changes: [Change; 7] = [
        ("started since the stop", |i| i.launch_time = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap()),
        ("stopped at", |i| i.stopped_since = Some(Utc.with_ymd_and_hms(2026, 12, 2, 14, 0, 0).unwrap())),
        ("production instance", |i| {
            i.tags.insert("Environment".into(), "production".into());
        }),
        ("finops:protect", |i| {
            i.tags.insert("finops:protect".into(), "true".into());
        }),
        ("snoozed until", |i| {
            i.tags.insert("finops:snooze-until".into(), "2027-01-01T00:00:00Z".into());
        }),
        ("then, m5.24xlarge now", |i| i.instance_type = "m5.24xlarge".into()),
        ("changed while stopped (disks", |i| i.volumes.clear()),
    ];
    for (why, change) in changes {
        let w = stopped_world().await;
        change(w.ec2.instances.lock().unwrap().get_mut(ID).unwrap());
        let refused = w.undo(UNDO).await;
        assert_eq!(refused.outcome, Outcome::Refused, "{why}: {}", refused.detail);
        assert!(refused.detail.contains(why), "{why}: {}", refused.detail);
        assert!(w.ec2.started.lock().unwrap().is_empty(), "{why}: nothing started");
    }
    // New boot code while stopped (ModifyInstanceAttribute UserData): not started.
    let w = stopped_world().await;
    w.ec2.user_data.lock().unwrap().insert(ID.into(), "I2Nsb3VkLWJvb3Rob29rCmN1cmwgZXZpbC5leGFtcGxl".into());
    let refused = w.undo(UNDO).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    assert!(refused.detail.contains("user data (boot code) changed"), "{}", refused.detail);
    // Stopped when the stop it undoes stopped it, nothing changed since: started.
    let w = stopped_world().await;
    assert_eq!(w.undo(UNDO).await.outcome, Outcome::Done);
    // An undo record without how the stop left it (the stop never said: its step failed), is not known to be the stop
    // this undoes: no start.
    let w = stopped_world().await;
    w.approvals.insert(undo_record(ApprovalAction::Undo, None));
    let refused = w.undo(UNDO).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    assert!(refused.detail.contains("not known to be the stop this undoes"), "{}", refused.detail);
    assert!(w.ec2.started.lock().unwrap().is_empty());
}

/// Chaos seed 7007: how the stop left the instance was a best-effort tag, so an undo without it started an instance
/// a person had restarted and stopped since. Then the second attacker's review: a retry said it again from the live
/// instance, so tags forged by someone who stopped and changed it ("stopped by this run") made their change the
/// baseline. Now only the stop's own first answer says it (configuration read before StopInstances, EC2's time of
/// the stop within the request's span); a retry, forged tags or another stop time say nothing, and no undo starts it.
#[tokio::test]
async fn only_the_stops_own_answer_says_how_it_left_the_instance() {
    let w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    let first = w.stop(&snaps, approval()).await;
    let stopped_as = first.acted.and_then(|a| a.stopped_as).expect("the stop says how it left the instance");
    assert_eq!(stopped_as.stopped_at, now() + chrono::Duration::seconds(3), "EC2's time of the stop");
    assert_eq!(stopped_as.configuration.instance_type, instance().instance_type);
    let retry = w.stop(&snaps, approval()).await;
    assert_eq!(retry.outcome, Outcome::AlreadyDone);
    assert_eq!(retry.acted.and_then(|a| a.stopped_as), None, "a retry says nothing of how");

    // Someone stopped it, made it bigger and tagged it as this run's stop before the step ran: reported as already
    // stopped, with nothing an undo could start it by.
    let w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    {
        let mut instances = w.ec2.instances.lock().unwrap();
        let i = instances.get_mut(ID).unwrap();
        i.state = "stopped".into();
        i.stopped_since = Some(now());
        i.instance_type = "m5.24xlarge".into();
        for (k, v) in [("finops:run-id", "run-1"), ("finops:action", "stopped")] {
            i.tags.insert(k.into(), v.into());
        }
        i.tags.insert("finops:acted-at".into(), now().to_rfc3339());
    }
    let forged = w.stop(&snaps, approval()).await;
    assert_eq!(forged.outcome, Outcome::AlreadyDone, "{}", forged.detail);
    assert_eq!(forged.acted.and_then(|a| a.stopped_as), None);
    w.approvals.insert(undo_record(ApprovalAction::Undo, None));
    let refused = w.undo(UNDO).await;
    assert_eq!(refused.outcome, Outcome::Refused, "{}", refused.detail);
    assert!(w.ec2.started.lock().unwrap().is_empty());

    // EC2 says the stop happened an hour from this request: not known to be it.
    let w = World::new(instance(), IDLE);
    *w.ec2.clock.lock().unwrap() = Some(now() + chrono::Duration::hours(1));
    let snaps = w.snapshotted().await;
    let late = w.stop(&snaps, approval()).await;
    assert_eq!(late.outcome, Outcome::Done, "{}", late.detail);
    assert_eq!(late.acted.and_then(|a| a.stopped_as), None);
}

/// Finding 7: an acting operation takes its target from the approval record, never from the payload. A payload
/// that names the approved instance but another action, launch time or measurement window changes nothing of what is
/// checked.
#[tokio::test]
async fn an_acting_operation_takes_its_target_from_the_approval_record() {
    let w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    let mut forged = proposal();
    // A launch time that matches nothing (the stop would refuse "restarted since" if it read it), and a window that
    // ends today (so no re-measurement would happen).
    forged["launchTime"] = json!("2020-01-01T00:00:00Z");
    forged["measuredUntil"] = json!(now().to_rfc3339());
    forged["justification"] = json!("payload text");
    let out = w
        .call(json!({"operation": "stop", "runId": "run-1", "proposal": forged, "snapshotIds": snaps, "decision": approval()}))
        .await
        .unwrap();
    assert_eq!(out.outcome, Outcome::Done, "the record's launch time holds: {}", out.detail);
    assert_eq!(w.ec2.instance(ID).unwrap().tags["finops:reason"], "idle 14 days", "the record's justification");
    // An undo payload that says "recreate a volume" for a stop's undo undoes the stop.
    w.approvals.insert(w.undo_decided(ApprovalAction::Undo));
    let mut other_action = proposal();
    other_action["action"] = json!("snapshot-and-delete");
    let undone = w
        .call(
            json!({"operation": "undo", "runId": "run-1", "proposal": other_action, "decision": {"approvalId": UNDO}}),
        )
        .await
        .unwrap();
    assert_eq!(undone.outcome, Outcome::Done, "{}", undone.detail);
    assert_eq!(*w.ec2.started.lock().unwrap(), [ID]);
}

/// The kill switch: a recommend deployment changes nothing, an undo included, whatever reaches the step.
#[tokio::test]
async fn a_recommend_deployment_changes_nothing_undo_included() {
    let mut w = World::new(instance(), IDLE);
    let snaps = w.snapshotted().await;
    assert_eq!(w.stop(&snaps, approval()).await.outcome, Outcome::Done);
    w.approvals.insert(w.undo_decided(ApprovalAction::Undo));
    w.config = ActionsConfig::from_vars([("FINOPS_APPROVALS_TABLE".to_string(), "approvals".to_string())]).unwrap();
    let refused = w.undo(UNDO).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    assert!(refused.detail.contains("recommend mode"), "{}", refused.detail);
    assert!(w.ec2.started.lock().unwrap().is_empty());
    let before = w.ec2.snapshot_count();
    assert_eq!(w.snapshot(json!({"approvalId": APPROVAL})).await.outcome, Outcome::Refused);
    assert_eq!(w.ec2.snapshot_count(), before);
}

/// The long-stopped dev box, as the inventory lists it, proposed for deleting its volumes.
fn stopped_proposal() -> Value {
    let mut p = proposal();
    p["action"] = json!("snapshot-and-delete-volumes");
    p["recommended"] = Value::Null;
    p
}

const VOLUMES_APPROVAL: &str = "aaaabbbbccccddddeeeeffff00002222";

/// A world with the dev box stopped long ago, the deletion of stopped instances' volumes `on` or not, and the
/// deletion approved by POST.
fn stopped_world(on: bool) -> World {
    let mut i = instance();
    i.state = "stopped".into();
    let mut w = World::new(i, IDLE);
    let mut vars = vec![
        ("FINOPS_APPROVALS_TABLE".to_string(), "approvals".to_string()),
        ("FINOPS_MODE".to_string(), "act".to_string()),
    ];
    if on {
        vars.push(("FINOPS_STOPPED_VOLUMES".to_string(), "delete".to_string()));
    }
    w.config = ActionsConfig::from_vars(vars).unwrap();
    let mut record = decided(ApprovalAction::Approve);
    record.approval_id = VOLUMES_APPROVAL.into();
    record.proposal = serde_json::from_value(stopped_proposal()).unwrap();
    w.approvals.insert(record);
    w
}

impl World {
    async fn delete_volumes_of(&self, snapshot_ids: &[String], approval: &str) -> ActionOutcome {
        self.call(json!({"operation": "delete_instance_volumes", "runId": "run-1", "proposal": stopped_proposal(),
            "snapshotIds": snapshot_ids, "decision": {"approvalId": approval}}))
            .await
            .unwrap()
    }

    async fn snapshot_volumes_of(&self) -> ActionOutcome {
        self.call(json!({"operation": "snapshot", "runId": "run-1", "proposal": stopped_proposal(),
            "decision": {"approvalId": VOLUMES_APPROVAL}}))
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_long_stopped_instances_volumes_are_snapshotted_then_detached_and_deleted_once() {
    let w = stopped_world(true);
    let snap = w.snapshot_volumes_of().await;
    assert_eq!(snap.outcome, Outcome::Done, "{}", snap.detail);
    let kept = w.ec2.snapshots.lock().unwrap()[0].clone();
    assert_eq!(kept.tags["finops:device"], "/dev/xvda", "where it was attached, to attach it again");
    let done = w.delete_volumes_of(&snap.snapshot_ids, VOLUMES_APPROVAL).await;
    assert_eq!((done.operation.as_str(), done.outcome), ("delete_instance_volumes", Outcome::Done), "{}", done.detail);
    assert!(done.acted.is_some(), "recorded for the savings proof");
    assert_eq!(w.ec2.deletions(), ["vol-0123456789abcdef0"]);
    let again = w.delete_volumes_of(&snap.snapshot_ids, VOLUMES_APPROVAL).await;
    assert_eq!(again.outcome, Outcome::AlreadyDone, "{}", again.detail);
    assert_eq!(w.ec2.deletions().len(), 1, "deleted once");
    let live = w.ec2.instance(ID).unwrap();
    assert!(live.volumes.is_empty() && live.state == "stopped", "the instance stays, stopped");
    assert_eq!(live.tags["finops:action"], "volumes-deleted");
    assert_eq!(w.ec2.snapshot_count(), 1, "the snapshot is kept");
}

#[tokio::test]
async fn a_stopped_instances_volumes_are_kept_unless_everything_still_says_delete() {
    // Off in this deployment: whatever was approved.
    let off = stopped_world(false);
    let snaps = off.snapshot_volumes_of().await.snapshot_ids;
    let refused = off.delete_volumes_of(&snaps, VOLUMES_APPROVAL).await;
    assert_eq!(refused.outcome, Outcome::Refused);
    assert!(refused.detail.contains("FINOPS_STOPPED_VOLUMES"), "{}", refused.detail);
    // A stop's approval never deletes volumes.
    let w = stopped_world(true);
    let snaps = w.snapshot_volumes_of().await.snapshot_ids;
    w.approvals.insert(decided(ApprovalAction::Approve));
    assert_eq!(w.delete_volumes_of(&snaps, APPROVAL).await.outcome, Outcome::Refused);
    // Started since the scan (another launch time), or tagged production since: kept.
    w.ec2.instances.lock().unwrap().get_mut(ID).unwrap().launch_time = now();
    let started = w.delete_volumes_of(&snaps, VOLUMES_APPROVAL).await;
    assert!(started.outcome == Outcome::Refused && started.detail.contains("started since"), "{}", started.detail);
    w.ec2.instances.lock().unwrap().get_mut(ID).unwrap().launch_time = launched();
    w.ec2.instances.lock().unwrap().get_mut(ID).unwrap().tags.insert("Environment".into(), "production".into());
    let production = w.delete_volumes_of(&snaps, VOLUMES_APPROVAL).await;
    assert_eq!(production.outcome, Outcome::Refused, "{}", production.detail);
    // A volume tagged production by itself (the instance is dev): every volume is kept.
    let tagged = stopped_world(true);
    let snaps = tagged.snapshot_volumes_of().await.snapshot_ids;
    let mut volume =
        finops_inventory::ResourceLookup::describe_volume(&tagged.ec2, "ap-southeast-2", "vol-0123456789abcdef0")
            .await
            .unwrap()
            .unwrap();
    volume.record.tags.insert("env".into(), "prod".into());
    tagged.ec2.volumes.lock().unwrap().insert(volume.record.volume_id.clone(), volume);
    let refused = tagged.delete_volumes_of(&snaps, VOLUMES_APPROVAL).await;
    assert!(
        refused.outcome == Outcome::Refused && refused.detail.contains("vol-0123456789abcdef0"),
        "{}",
        refused.detail
    );
    assert!(tagged.ec2.deletions().is_empty() && tagged.ec2.instance(ID).unwrap().volumes.len() == 1);
    // Running again: kept.
    let running = stopped_world(true);
    let snaps = running.snapshot_volumes_of().await.snapshot_ids;
    running.ec2.instances.lock().unwrap().get_mut(ID).unwrap().state = "running".into();
    assert_eq!(running.delete_volumes_of(&snaps, VOLUMES_APPROVAL).await.outcome, Outcome::Refused);
    for world in [&off, &w, &running] {
        assert!(world.ec2.deletions().is_empty(), "nothing deleted");
        assert_eq!(world.ec2.instance(ID).unwrap().volumes.len(), 1, "nothing detached");
    }
}

/// Finding 7: a snooze of a long-stopped instance's volumes was refused by the tag step, so it was proposed again next
/// run. Every kind of proposal can be snoozed, by an approver or by its owner.
#[tokio::test]
async fn a_snooze_of_a_stopped_instances_volumes_is_tagged_like_any_other() {
    for (decision, approver) in
        [(ApprovalAction::Snooze, "ana@example.com"), (ApprovalAction::OwnerSnooze, "raj@example.com")]
    {
        let w = stopped_world(true);
        let mut record = w.approvals.get(VOLUMES_APPROVAL).await.unwrap().unwrap();
        record.proposal.owner = Some("raj@example.com".into());
        record.owner_notice = Some("asked".into());
        (record.decision, record.approver) = (Some(decision), Some(approver.into()));
        w.approvals.insert(record);
        let out = w
            .call(json!({"operation": "tag", "runId": "run-1", "proposal": stopped_proposal(), "decision": {"approvalId": VOLUMES_APPROVAL}}))
            .await
            .unwrap();
        assert_eq!(out.outcome, Outcome::Done, "{decision}: {}", out.detail);
        let tags = w.ec2.instance(ID).unwrap().tags;
        assert!(tags.contains_key("finops:snooze-until"), "{decision}: {tags:?}");
        assert_eq!(tags["finops:decided-by"], approver);
        assert!(w.ec2.deletions().is_empty(), "a snooze deletes nothing");
    }
}
