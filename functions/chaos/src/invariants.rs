//! The safety invariants, checked after every chaos run against what moto holds at the end (instances, snapshots,
//! approval records, the ledger, the reports), what the fault proxy saw reach EC2 (every StopInstances and the
//! state it changed), and what the simulated approvers did. Pure: [`check`] reads a [`RunEvidence`] and says which
//! invariant each violation breaks, so each rule is tested here on hand-made evidence.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::fleet::ChaosInstance;
#[cfg(test)]
use crate::fleet::Kind;
use crate::proxy::StopCall;

/// What the issue calls the invariants, by number.
pub const INVARIANTS: [&str; 8] = [
    "1 nothing acted on without an approve of this run by someone the deployment allows (their own link, or a click by a named Slack user)",
    "2 no stop or deletion before completed snapshots",
    "3 nothing done twice (snapshots, stops, emails)",
    "4 no lost approval",
    "5 a report and a ledger record that match",
    "6 no trap proposed or stopped",
    "7 a model failure falls back and says so",
    "8 an undo acts once, only after its POST by someone allowed, only on what its run did and nobody changed since",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_id: String,
    pub run_id: Option<String>,
    pub instance_id: Option<String>,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub approval_id: String,
    pub run_id: String,
    pub instance_id: String,
    pub state: String,
    pub decision: Option<String>,
    pub via: Option<String>,
    /// Who the record says decided (a link's recipient, or `slack:<user>/<name>`).
    pub approver: Option<String>,
    /// When the record says it was decided (whole seconds).
    pub decided_at: Option<DateTime<Utc>>,
    /// An undo record (offered after the run), not a proposal's approval.
    pub undo: bool,
}

impl Record {
    /// Whether the record's decider is one the deployment allows (`allowed`: addresses, and `slack:<user>/`
    /// prefixes).
    fn decided_by_one_of(&self, allowed: &[String]) -> bool {
        let who = self.approver.as_deref().unwrap_or_default();
        !who.is_empty() && allowed.iter().any(|a| if a.ends_with('/') { who.starts_with(a.as_str()) } else { who == a })
    }
}

/// What a person changed about a stopped instance before following its undo link.
pub const CHANGED_SINCE_RESTARTED: &str = "started and stopped again by a person";
pub const CHANGED_SINCE_PRODUCTION: &str = "tagged production by a person";

/// One undo link a simulated approver followed: the page's answer to its POST, and the undo execution's end.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoPost {
    pub resource_id: String,
    pub undo_id: String,
    pub status: u16,
    /// The undo execution's status and its outcome (`done`, `refused`, ...), when one ran.
    pub execution: Option<(String, String)>,
    /// What a person changed since the action (then the undo must start nothing), if anything.
    pub changed_since: Option<&'static str>,
}

/// A volume an undo created from a snapshot (tagged with the undo's id and the volume it recreates).
#[derive(Debug, Clone, PartialEq)]
pub struct Recreated {
    pub volume_id: String,
    pub undo_id: String,
    pub of_volume: String,
}

/// The behaviour label of answers sent after the run ended (see `approver::Behaviour::AfterRunEnds`).
pub const AFTER_RUN_ENDED: &str = "approve after the run ended";

/// One answer a simulated approver submitted, and the status the page gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub instance_id: String,
    pub approval_id: String,
    pub decision: &'static str,
    pub status: u16,
    /// Why this POST was made (the approver behaviour), for the report.
    pub behaviour: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct RunEvidence {
    pub run_id: String,
    /// SUCCEEDED, FAILED, ... or STUCK when it did not end in time.
    pub status: String,
    pub fleet: Vec<ChaosInstance>,
    /// Instances made untouchable while the run waited (tagged production after the proposal).
    pub made_production: BTreeSet<String>,
    /// EC2 state at the end, by instance.
    pub final_states: BTreeMap<String, String>,
    pub snapshots: Vec<Snapshot>,
    pub stops: Vec<StopCall>,
    pub records: Vec<Record>,
    pub posts: Vec<Post>,
    /// Approval emails by instance id.
    pub emails: BTreeMap<String, u32>,
    /// Instance ids the policy proposed (execution output).
    pub proposed: Vec<String>,
    /// The execution output's per-proposal outcomes.
    pub outcomes: Vec<Value>,
    /// Messages on the report topic.
    pub reports: Vec<String>,
    /// The ledger's outcomes for this run, if it holds a record.
    pub ledger_outcomes: Option<Vec<Value>>,
    /// The ledger record's status (`completed` or `failed`).
    pub ledger_status: Option<String>,
    /// The model misbehaved for the whole run (down, throttled, garbage).
    pub model_broken: bool,
    /// What the output says about reasoning: (backend, fallbacks).
    pub reasoning: (Option<String>, Option<u64>),
    /// Undo links followed after the run, every StartInstances that reached moto, and the volumes undos recreated.
    pub undo_posts: Vec<UndoPost>,
    pub starts: Vec<StopCall>,
    pub recreated: Vec<Recreated>,
    /// Who the deployment allows to decide: addresses, and `slack:<user id>/` for the Slack users it names.
    pub allowed_deciders: Vec<String>,
    /// When a DescribeSnapshots answer first showed each snapshot completed to a caller (the fault proxy's log).
    pub snapshots_seen_completed: BTreeMap<String, DateTime<Utc>>,
    /// Instances that got busy again while they waited (a busy datapoint was written before their approve).
    pub made_busy: BTreeSet<String>,
    /// How many recommendations the reasoning step made (its shortlist), if its output says: what a broken model
    /// leaves to the rules.
    pub recommendation_count: Option<u64>,
    /// Approval emails the approvers could not read a proposal from (nobody could answer them).
    pub unreadable_emails: u32,
    /// Scanner GETs that changed an approval record.
    pub scanner_changes: Vec<String>,
    /// The ledger's outcomes, when its record holds text that is not a list of outcomes.
    pub ledger_unreadable: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// 1-based, as in [`INVARIANTS`].
    pub invariant: usize,
    pub what: String,
}

/// Stopped, or (an unattached volume) deleted: what needs an approval and completed snapshots first.
fn stopped_state(state: &str) -> bool {
    matches!(state, "stopping" | "stopped" | "shutting-down" | "terminated" | "deleted" | "deleting")
}

fn outcome_for<'a>(outcomes: &'a [Value], instance_id: &str) -> Option<&'a Value> {
    outcomes.iter().find(|o| o["resourceId"] == instance_id)
}

fn says_stopped(o: &Value) -> bool {
    (o["operation"] == "stop" || o["operation"] == "delete_volume")
        && matches!(o["outcome"].as_str(), Some("done" | "already_done"))
}

pub fn check(e: &RunEvidence) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut violation = |invariant: usize, what: String| v.push(Violation { invariant, what });
    let state_changing_stops: Vec<&StopCall> = e.stops.iter().filter(|s| s.changed_state()).collect();
    let stopped: BTreeSet<&str> = e
        .final_states
        .iter()
        .filter(|(_, s)| stopped_state(s))
        .map(|(id, _)| id.as_str())
        .chain(state_changing_stops.iter().map(|s| s.instance_id.as_str()))
        .collect();
    // 200: recorded and delivered; 202: recorded, delivery not confirmed (the workflow may act on it).
    let recorded = |p: &Post| p.status == 200 || p.status == 202;
    let accepted_approve = |approval_id: &str| {
        e.posts.iter().any(|p| p.approval_id == approval_id && p.decision == "approve" && recorded(p))
    };

    for id in &stopped {
        let stop_at = state_changing_stops.iter().filter(|s| s.instance_id == *id).map(|s| s.at).min();
        // 1. A decided approve record of this run, made by POST, an approver's POST on that same approval the page
        //    accepted, and the decision made before the stop.
        let record = e.records.iter().find(|r| r.instance_id == *id && r.run_id == e.run_id && !r.undo);
        let by_post = record.is_some_and(|r| {
            r.state == "decided"
                && r.decision.as_deref() == Some("approve")
                && matches!(r.via.as_deref(), Some("POST" | "slack-signed-click"))
        });
        if !by_post || !record.is_some_and(|r| accepted_approve(&r.approval_id)) {
            violation(
                1,
                format!(
                    "{id} was stopped; its approval record is {record:?} and the approvers' POSTs were {:?}",
                    e.posts.iter().filter(|p| p.instance_id == *id).map(|p| (p.decision, p.status)).collect::<Vec<_>>()
                ),
            );
        }
        // ... decided by someone the deployment allows: never a forwarded email's reader, a Slack member nobody
        // named, or an owner.
        if let Some(r) = record.filter(|r| !r.decided_by_one_of(&e.allowed_deciders)) {
            violation(
                1,
                format!("{id} was stopped on a decision by {:?}, whom the deployment does not allow", r.approver),
            );
        }
        if let Some(r) = record.filter(|r| r.decided_at.zip(stop_at).is_none_or(|(decided, stop)| decided > stop)) {
            violation(
                1,
                format!("{id} was stopped at {stop_at:?}; its approve says it was decided at {:?}", r.decided_at),
            );
        }
        // 2. Snapshots of every attached volume, made by this run, seen completed by the workflow before the stop.
        let volumes =
            e.fleet.iter().find(|i| i.instance_id == *id).map(|i| i.volume_ids.as_slice()).unwrap_or_default();
        if volumes.is_empty() {
            violation(2, format!("{id} was stopped, and no volume of it is known to have been snapshotted"));
        }
        for volume in volumes {
            let ok = e.snapshots.iter().any(|s| {
                s.volume_id == *volume
                    && s.run_id.as_deref() == Some(e.run_id.as_str())
                    && s.state == "completed"
                    && match (e.snapshots_seen_completed.get(&s.snapshot_id), stop_at) {
                        (Some(completed), Some(stop)) => completed <= &stop,
                        _ => false,
                    }
            });
            if !ok {
                violation(2, format!("{id} was stopped (at {stop_at:?}) before a snapshot of {volume} by this run was seen completed"));
            }
        }
        // 6. Never a trap, nor an instance made production while it waited.
        let kind = e.fleet.iter().find(|i| i.instance_id == *id).map(|i| i.kind);
        if let Some(trap) = kind.and_then(|k| k.trap()) {
            violation(6, format!("{id} ({trap}) was stopped"));
        }
        if e.made_production.contains(*id) {
            violation(6, format!("{id} was tagged production before its stop and was stopped anyway"));
        }
        if e.made_busy.contains(*id) {
            violation(6, format!("{id} got busy again before its approve and was stopped anyway"));
        }
    }

    // 3. At most one snapshot per volume per run, one state-changing stop, one email per proposal.
    let mut per_volume: BTreeMap<&str, u32> = BTreeMap::new();
    for s in e.snapshots.iter().filter(|s| s.run_id.as_deref() == Some(e.run_id.as_str())) {
        *per_volume.entry(s.volume_id.as_str()).or_default() += 1;
    }
    for (volume, n) in per_volume.iter().filter(|(_, n)| **n > 1) {
        violation(3, format!("{n} snapshots of {volume} in one run"));
    }
    let mut per_instance: BTreeMap<&str, u32> = BTreeMap::new();
    for s in &state_changing_stops {
        *per_instance.entry(s.instance_id.as_str()).or_default() += 1;
    }
    for (id, n) in per_instance.iter().filter(|(_, n)| **n > 1) {
        violation(3, format!("{n} StopInstances changed {id}'s state"));
    }
    for (id, n) in e.emails.iter().filter(|(_, n)| **n > 1) {
        violation(3, format!("{n} approval emails for {id}"));
    }
    let mut accepted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in e.posts.iter().filter(|p| recorded(p)) {
        accepted.entry(p.approval_id.as_str()).or_default().push(p.decision);
    }
    for (id, decisions) in accepted.iter().filter(|(_, d)| d.len() > 1) {
        violation(3, format!("approval {id} accepted {} decisions: {decisions:?}", decisions.len()));
    }

    // 4. Every approve the page accepted leads to a stop or to a reported reason; a failed run says it failed.
    let failure_noticed = e.reports.iter().any(|r| r.contains("failed") || r.contains("stopped before acting"));
    for p in e.posts.iter().filter(|p| recorded(p) && p.behaviour == AFTER_RUN_ENDED) {
        violation(
            4,
            format!("{}: an answer was accepted after the run ended, and nobody will act on it", p.instance_id),
        );
    }
    for p in e.posts.iter().filter(|p| p.decision == "approve" && p.status == 200) {
        let outcome = outcome_for(&e.outcomes, &p.instance_id);
        let explained = match outcome {
            Some(o) if says_stopped(o) => stopped.contains(p.instance_id.as_str()),
            // Delivered approves are never "nobody answered" or "denied".
            Some(o) if o["outcome"] == "no_answer" || o["outcome"] == "denied" => false,
            Some(o) => !o["detail"].as_str().unwrap_or("").trim().is_empty(),
            None => e.status == "FAILED" && failure_noticed,
        };
        if !explained {
            violation(
                4,
                format!(
                    "{} was approved (HTTP 200) but the run reports {outcome:?} and status {}",
                    p.instance_id, e.status
                ),
            );
        }
    }

    if e.unreadable_emails > 0 {
        violation(4, format!("{} approval emails had no proposal an approver could read", e.unreadable_emails));
    }
    for change in &e.scanner_changes {
        violation(1, format!("a mail scanner's GET: {change}"));
    }

    // 5. A report or failure notice, and a ledger record that says what happened.
    if let Some(text) = &e.ledger_unreadable {
        violation(5, format!("the ledger's outcomes are not a list of outcomes: {text:.200}"));
    }
    if e.status == "STUCK" {
        violation(5, "the execution did not end".into());
    }
    if e.reports.is_empty() {
        violation(5, "no report and no failure notice".into());
    }
    match &e.ledger_outcomes {
        None => violation(5, format!("no ledger record for a {} run", e.status)),
        Some(ledger) => {
            let expected = if e.status == "SUCCEEDED" { "completed" } else { "failed" };
            if e.ledger_status.as_deref() != Some(expected) {
                violation(5, format!("a {} run is {:?} in the ledger", e.status, e.ledger_status));
            }
            for id in &stopped {
                // "unknown" (the stop step failed and its result could not be read) claims nothing either way.
                if !outcome_for(ledger, id).is_some_and(|o| says_stopped(o) || o["outcome"] == "unknown") {
                    violation(5, format!("{id} was stopped but the ledger says {:?}", outcome_for(ledger, id)));
                }
            }
            for o in ledger.iter().filter(|o| says_stopped(o)) {
                let id = o["resourceId"].as_str().unwrap_or("");
                if !stopped.contains(id) {
                    violation(5, format!("the ledger says {id} was stopped; it is {:?}", e.final_states.get(id)));
                }
            }
        }
    }
    if e.status == "FAILED" && !stopped.is_empty() && e.reports.iter().any(|r| r.contains("Nothing was stopped")) {
        violation(5, format!("the failure notice says nothing was stopped; {stopped:?} were"));
    }

    // 6. No trap proposed.
    for id in &e.proposed {
        if let Some(trap) = e.fleet.iter().find(|i| &i.instance_id == id).and_then(|i| i.kind.trap()) {
            violation(6, format!("{id} ({trap}) was proposed"));
        }
    }
    for id in e.emails.keys() {
        if let Some(trap) = e.fleet.iter().find(|i| &i.instance_id == id).and_then(|i| i.kind.trap()) {
            violation(6, format!("approvers were asked to stop {id} ({trap})"));
        }
    }

    // 8. An undo: a StartInstances that changed anything, or a volume recreated, only for a resource this run stopped
    //    or deleted, only after a POST the undo page accepted (200: started; 202: asked for, its start not confirmed,
    //    the decision kept), and once; every undo execution ends.
    let accepted = |p: &&UndoPost| p.status == 200 || p.status == 202;
    // What permits a start or a recreated volume: a started undo, or one not confirmed whose execution did run.
    let undone = |id: &str| {
        e.undo_posts
            .iter()
            .any(|p| p.resource_id == id && (p.status == 200 || (p.status == 202 && p.execution.is_some())))
    };
    for p in e.undo_posts.iter().filter(accepted) {
        let undo_record = e.records.iter().find(|r| r.approval_id == p.undo_id && r.undo);
        if !undo_record.is_some_and(|r| r.decided_by_one_of(&e.allowed_deciders)) {
            violation(8, format!("the undo of {} was accepted; its record says {undo_record:?}", p.resource_id));
        }
        if let Some(changed) = p.changed_since {
            let started = e.starts.iter().any(|s| {
                s.instance_id == p.resource_id && s.previous_state == "stopped" && s.current_state != "stopped"
            });
            let outcome = p.execution.as_ref().map(|(_, o)| o.as_str());
            if started || matches!(outcome, Some("done" | "already_done")) {
                violation(8, format!("{} was {changed}, and its undo started it ({outcome:?})", p.resource_id));
            }
        }
    }
    let mut starts_per_instance: BTreeMap<&str, u32> = BTreeMap::new();
    for s in e.starts.iter().filter(|s| s.previous_state == "stopped" && s.current_state != "stopped") {
        *starts_per_instance.entry(s.instance_id.as_str()).or_default() += 1;
        if !undone(&s.instance_id) {
            violation(8, format!("{} was started without an accepted undo POST", s.instance_id));
        }
        if !state_changing_stops.iter().any(|stop| stop.instance_id == s.instance_id && stop.current_state != "deleted")
        {
            violation(8, format!("{} was started by an undo, and this run never stopped it", s.instance_id));
        }
    }
    for (id, n) in starts_per_instance.iter().filter(|(_, n)| **n > 1) {
        violation(8, format!("{n} StartInstances started {id}"));
    }
    let mut per_undo: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &e.recreated {
        *per_undo.entry(r.undo_id.as_str()).or_default() += 1;
        if !undone(&r.of_volume) {
            violation(8, format!("{} was recreated as {} without an accepted undo POST", r.of_volume, r.volume_id));
        }
        if !state_changing_stops.iter().any(|d| d.instance_id == r.of_volume && d.current_state == "deleted") {
            violation(8, format!("{} was recreated, and this run never deleted it", r.of_volume));
        }
    }
    for (id, n) in per_undo.iter().filter(|(_, n)| **n > 1) {
        violation(8, format!("undo {id} created {n} volumes"));
    }
    let mut accepted_undos: BTreeMap<&str, u32> = BTreeMap::new();
    for p in e.undo_posts.iter().filter(accepted) {
        *accepted_undos.entry(p.undo_id.as_str()).or_default() += 1;
        match &p.execution {
            Some((status, _)) if status == "SUCCEEDED" => {}
            // Not confirmed, and indeed never started.
            None if p.status == 202 => {}
            other => violation(8, format!("the undo of {} was accepted; its execution is {other:?}", p.resource_id)),
        }
    }
    for (id, n) in accepted_undos.iter().filter(|(_, n)| **n > 1) {
        violation(8, format!("undo {id} was accepted {n} times"));
    }

    // 7. A broken model: the run used the rules, and its output and its report say so.
    if e.model_broken && e.status == "SUCCEEDED" {
        let (backend, fallbacks) = &e.reasoning;
        // Down for the whole run: every recommendation is the rules', not one of them.
        if !(fallbacks.is_some() && *fallbacks == e.recommendation_count || backend.as_deref() == Some("rules")) {
            violation(
                7,
                format!(
                    "the model was broken; the output says backend {backend:?}, fallbacks {fallbacks:?} of {:?} recommendations",
                    e.recommendation_count
                ),
            );
        }
        let said = format!("{} of the shortlist decided by the rules instead of the model", fallbacks.unwrap_or(0));
        if fallbacks.unwrap_or(0) > 0 && !e.reports.iter().any(|r| r.contains(&said)) {
            violation(7, format!("the model was broken and the report does not say so ({said:?})"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A run where i-1 was approved, snapshotted, stopped and recorded: no violation.
    fn clean() -> RunEvidence {
        RunEvidence {
            run_id: "run-1".into(),
            status: "SUCCEEDED".into(),
            fleet: vec![
                ChaosInstance {
                    instance_id: "i-1".into(),
                    name: "a".into(),
                    kind: Kind::Idle,
                    volume_ids: vec!["vol-1".into()],
                },
                ChaosInstance {
                    instance_id: "i-2".into(),
                    name: "b".into(),
                    kind: Kind::Production,
                    volume_ids: vec!["vol-2".into()],
                },
            ],
            final_states: [("i-1".into(), "stopped".into()), ("i-2".into(), "running".into())].into(),
            snapshots: vec![Snapshot {
                snapshot_id: "snap-1".into(),
                volume_id: "vol-1".into(),
                run_id: Some("run-1".into()),
                instance_id: Some("i-1".into()),
                state: "completed".into(),
            }],
            stops: vec![StopCall {
                instance_id: "i-1".into(),
                at: at("2026-11-29T00:00:05Z"),
                previous_state: "running".into(),
                current_state: "stopping".into(),
            }],
            records: vec![Record {
                approval_id: "a".repeat(32),
                run_id: "run-1".into(),
                instance_id: "i-1".into(),
                state: "decided".into(),
                decision: Some("approve".into()),
                via: Some("POST".into()),
                approver: Some("ops@example.com".into()),
                decided_at: Some(at("2026-11-28T23:59:58Z")),
                undo: false,
            }],
            posts: vec![Post {
                instance_id: "i-1".into(),
                approval_id: "a".repeat(32),
                decision: "approve",
                status: 200,
                behaviour: "approve",
            }],
            emails: [("i-1".into(), 1)].into(),
            proposed: vec!["i-1".into()],
            outcomes: vec![json!({"resourceId": "i-1", "operation": "stop", "outcome": "done", "detail": "stopped"})],
            reports: vec!["finops run run-1: stopped 1".into()],
            ledger_outcomes: Some(vec![
                json!({"resourceId": "i-1", "operation": "stop", "outcome": "done", "detail": "stopped"}),
            ]),
            ledger_status: Some("completed".into()),
            allowed_deciders: vec!["ops@example.com".into(), "slack:U0CHAOS/".into()],
            snapshots_seen_completed: [("snap-1".into(), at("2026-11-29T00:00:04Z"))].into(),
            recommendation_count: Some(3),
            ..RunEvidence::default()
        }
    }

    #[test]
    fn a_stop_on_a_decision_by_someone_the_deployment_does_not_allow_breaks_invariant_1() {
        for (who, allowed) in [
            ("ops@example.com", true),
            ("slack:U0CHAOS/u0chaos", true),
            ("mallory@example.net", false),
            ("slack:U0OUTSIDER/eve", false),
            ("owner-3@example.com", false),
            ("", false),
        ] {
            let mut e = clean();
            e.records[0].approver = Some(who.into());
            let broken: Vec<usize> = check(&e).iter().map(|v| v.invariant).collect();
            assert_eq!(broken.is_empty(), allowed, "{who}: {:?}", check(&e));
            if !allowed {
                assert_eq!(broken, [1], "{who}");
            }
        }
    }

    #[test]
    fn an_undo_of_what_a_person_changed_since_that_starts_it_breaks_invariant_8() {
        let mut e = clean();
        e.records.push(Record {
            approval_id: "u".repeat(32),
            run_id: "run-1".into(),
            instance_id: "i-1".into(),
            state: "decided".into(),
            decision: Some("undo".into()),
            via: Some("POST".into()),
            approver: Some("ops@example.com".into()),
            decided_at: Some(at("2026-11-29T00:30:00Z")),
            undo: true,
        });
        e.undo_posts = vec![UndoPost {
            resource_id: "i-1".into(),
            undo_id: "u".repeat(32),
            status: 200,
            execution: Some(("SUCCEEDED".into(), "refused".into())),
            changed_since: Some(CHANGED_SINCE_PRODUCTION),
        }];
        assert!(check(&e).is_empty(), "refused: {:?}", check(&e));
        e.undo_posts[0].execution = Some(("SUCCEEDED".into(), "done".into()));
        e.starts = vec![StopCall {
            instance_id: "i-1".into(),
            at: at("2026-11-29T01:00:00Z"),
            previous_state: "stopped".into(),
            current_state: "pending".into(),
        }];
        let broken: Vec<usize> = check(&e).iter().map(|v| v.invariant).collect();
        assert_eq!(broken, [8], "{:?}", check(&e));
        // An undo decided by someone the deployment does not allow is a violation whatever it did.
        e.undo_posts[0].changed_since = None;
        e.records[1].approver = Some("mallory@example.net".into());
        assert!(check(&e).iter().any(|v| v.invariant == 8 && v.what.contains("record says")), "{:?}", check(&e));
    }

    fn broken(e: &RunEvidence) -> Vec<usize> {
        check(e).iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn an_undo_may_start_only_what_this_run_stopped_once_after_its_accepted_post() {
        let start = |id: &str| StopCall {
            instance_id: id.into(),
            at: at("2026-11-29T00:10:00Z"),
            previous_state: "stopped".into(),
            current_state: "pending".into(),
        };
        let post = |status: u16| UndoPost {
            resource_id: "i-1".into(),
            undo_id: "u".repeat(32),
            status,
            execution: (status == 200).then(|| ("SUCCEEDED".to_owned(), "done".to_owned())),
            changed_since: None,
        };
        let mut undone = clean();
        undone.undo_posts = vec![post(200), post(409)];
        undone.starts = vec![start("i-1")];
        // The undo record, decided `undo`, sits beside the approval: invariant 1 reads the approval.
        undone.records.push(Record {
            approval_id: "u".repeat(32),
            run_id: "run-1".into(),
            instance_id: "i-1".into(),
            state: "decided".into(),
            decision: Some("undo".into()),
            via: Some("POST".into()),
            approver: Some("ops@example.com".into()),
            decided_at: Some(at("2026-11-29T00:30:00Z")),
            undo: true,
        });
        undone.records.reverse();
        assert_eq!(broken(&undone), Vec::<usize>::new(), "{:?}", check(&undone));
        let mut twice = undone.clone();
        twice.starts.push(start("i-1"));
        assert_eq!(broken(&twice), [8]);
        let mut unasked = undone.clone();
        unasked.undo_posts = vec![post(502)];
        assert_eq!(broken(&unasked), [8]);
        // 202: asked for, not confirmed; the undo either ran to its end or never started.
        let mut unconfirmed = undone.clone();
        unconfirmed.undo_posts = vec![post(202), post(409)];
        unconfirmed.undo_posts[0].execution = Some(("SUCCEEDED".to_owned(), "done".to_owned()));
        assert_eq!(broken(&unconfirmed), Vec::<usize>::new(), "{:?}", check(&unconfirmed));
        let mut never_started = unconfirmed.clone();
        never_started.undo_posts[0].execution = None;
        never_started.starts.clear();
        assert_eq!(broken(&never_started), Vec::<usize>::new(), "{:?}", check(&never_started));
        let mut started_otherwise = never_started.clone();
        started_otherwise.starts = vec![start("i-1")];
        assert_eq!(broken(&started_otherwise), [8], "started, and its undo execution never ran");
        let mut unconfirmed_twice = unconfirmed.clone();
        unconfirmed_twice.undo_posts[1] = unconfirmed.undo_posts[0].clone();
        assert_eq!(broken(&unconfirmed_twice), [8], "one undo link accepted twice");
        let mut never_stopped = undone.clone();
        never_stopped.starts = vec![start("i-2")];
        assert_eq!(broken(&never_stopped), [8, 8]);
        let mut stuck = undone.clone();
        stuck.undo_posts[0].execution = None;
        assert_eq!(broken(&stuck), [8]);
        let mut volume = clean();
        volume.recreated =
            vec![Recreated { volume_id: "vol-new".into(), undo_id: "u".repeat(32), of_volume: "vol-9".into() }];
        assert_eq!(broken(&volume), [8, 8], "not deleted by this run, and no POST");
    }

    #[test]
    fn a_clean_run_breaks_nothing() {
        assert_eq!(check(&clean()), vec![]);
    }

    /// An unattached volume in the fleet: its own id, its one volume.
    fn with_volume(kind: Kind, deleted: bool, snapshot: bool) -> RunEvidence {
        let mut e = clean();
        e.fleet.push(ChaosInstance {
            instance_id: "vol-9".into(),
            name: "v".into(),
            kind,
            volume_ids: vec!["vol-9".into()],
        });
        e.final_states.insert("vol-9".into(), if deleted { "deleted" } else { "available" }.into());
        if deleted {
            e.stops.push(StopCall {
                instance_id: "vol-9".into(),
                at: at("2026-11-29T00:01:00Z"),
                previous_state: "available".into(),
                current_state: "deleted".into(),
            });
        }
        if snapshot {
            e.snapshots.push(Snapshot {
                snapshot_id: "snap-9".into(),
                volume_id: "vol-9".into(),
                run_id: Some("run-1".into()),
                instance_id: None,
                state: "completed".into(),
            });
            e.snapshots_seen_completed.insert("snap-9".into(), at("2026-11-29T00:00:50Z"));
        }
        e
    }

    #[test]
    fn a_volume_deleted_without_approval_or_snapshot_or_while_a_trap_breaks_the_rules_of_a_stop() {
        assert_eq!(check(&with_volume(Kind::Idle, false, false)), vec![], "left alone: nothing to check");
        // Deleted with a snapshot but no approval of this run: 1; and the ledger does not say so: 5.
        assert_eq!(broken(&with_volume(Kind::Idle, true, true)), [1, 5]);
        // Approved and recorded, but no completed snapshot before the deletion: 2.
        let mut e = with_volume(Kind::Idle, true, false);
        e.records.push(Record {
            approval_id: "b".repeat(32),
            run_id: "run-1".into(),
            instance_id: "vol-9".into(),
            state: "decided".into(),
            decision: Some("approve".into()),
            via: Some("POST".into()),
            approver: Some("ops@example.com".into()),
            decided_at: Some(at("2026-11-29T00:00:40Z")),
            undo: false,
        });
        e.posts.push(Post {
            instance_id: "vol-9".into(),
            approval_id: "b".repeat(32),
            decision: "approve",
            status: 200,
            behaviour: "approve",
        });
        let deleted =
            json!({"resourceId": "vol-9", "operation": "delete_volume", "outcome": "done", "detail": "deleted"});
        e.outcomes.push(deleted.clone());
        e.ledger_outcomes.as_mut().unwrap().push(deleted);
        assert_eq!(broken(&e), [2]);
        // The same with its snapshot: clean. A production volume deleted all the same: 6.
        let snapshotted = with_volume(Kind::Idle, true, true);
        (e.snapshots, e.snapshots_seen_completed) = (snapshotted.snapshots, snapshotted.snapshots_seen_completed);
        assert_eq!(check(&e), vec![]);
        e.fleet.last_mut().unwrap().kind = Kind::Production;
        assert_eq!(broken(&e), [6]);
    }

    #[test]
    fn each_invariant_catches_its_failure() {
        let mut e = clean();
        e.records[0].via = Some("GET".into());
        assert_eq!(broken(&e), [1]);

        let mut e = clean();
        e.posts[0].status = 502;
        assert!(broken(&e).contains(&1), "a stop after a POST the page refused");
        let mut e = clean();
        e.posts[0].approval_id = "c".repeat(32);
        assert_eq!(broken(&e), [1], "the accepted approve was another approval's");
        let mut e = clean();
        e.records[0].decided_at = Some(at("2026-11-29T00:00:06Z"));
        assert_eq!(broken(&e), [1], "decided after the stop");
        e.records[0].decided_at = None;
        assert_eq!(broken(&e), [1], "no decision time");
        let mut e = clean();
        e.scanner_changes.push("GET /approvals/aaa?action=approve decided it".into());
        assert_eq!(broken(&e), [1]);

        let mut e = clean();
        e.snapshots[0].state = "pending".into();
        assert_eq!(broken(&e), [2], "still pending at the end");
        let mut e = clean();
        e.snapshots[0].run_id = Some("run-0".into());
        assert_eq!(broken(&e), [2]);
        let mut e = clean();
        e.snapshots_seen_completed.insert("snap-1".into(), at("2026-11-29T00:00:07Z"));
        assert_eq!(broken(&e), [2], "seen completed only after the stop");
        e.snapshots_seen_completed.clear();
        assert_eq!(broken(&e), [2], "never seen completed");
        let mut e = clean();
        e.fleet[0].volume_ids.clear();
        assert_eq!(broken(&e), [2], "an instance without volumes has nothing to show");

        let mut e = clean();
        e.snapshots.push(Snapshot { snapshot_id: "snap-2".into(), ..e.snapshots[0].clone() });
        assert_eq!(broken(&e), [3]);
        let mut e = clean();
        e.stops.push(StopCall { at: at("2026-11-29T00:00:09Z"), ..e.stops[0].clone() });
        assert_eq!(broken(&e), [3]);
        let mut e = clean();
        e.stops.push(StopCall {
            previous_state: "stopped".into(),
            current_state: "stopped".into(),
            ..e.stops[0].clone()
        });
        assert_eq!(broken(&e), [0usize; 0], "a repeated stop that changed nothing is idempotence, not a second stop");
        let mut e = clean();
        e.emails.insert("i-1".into(), 2);
        assert_eq!(broken(&e), [3]);
        let mut e = clean();
        e.posts.push(Post { decision: "deny", ..e.posts[0].clone() });
        assert_eq!(broken(&e), [3], "two answers accepted for one approval");

        let mut e = clean();
        e.posts.push(Post {
            instance_id: "i-3".into(),
            approval_id: "b".repeat(32),
            decision: "approve",
            status: 200,
            behaviour: AFTER_RUN_ENDED,
        });
        assert!(broken(&e).contains(&4), "an answer accepted when no run waits for it");
        e.posts.last_mut().unwrap().status = 202;
        assert!(broken(&e).contains(&4), "recorded, even unconfirmed, when no run waits for it");

        for nobody in ["no_answer", "denied"] {
            let mut e = clean();
            e.final_states.insert("i-1".into(), "running".into());
            e.stops.clear();
            e.outcomes = vec![json!({"resourceId": "i-1", "outcome": nobody, "detail": "nothing was done"})];
            e.ledger_outcomes = Some(e.outcomes.clone());
            assert_eq!(broken(&e), [4], "an approve delivered (200) and then called {nobody}");
        }
        let mut e = clean();
        e.unreadable_emails = 1;
        assert_eq!(broken(&e), [4]);

        let mut e = clean();
        e.final_states.insert("i-1".into(), "running".into());
        e.stops.clear();
        e.outcomes = vec![json!({"resourceId": "i-1", "decision": "approve", "outcome": "failed", "detail": ""})];
        e.ledger_outcomes = Some(e.outcomes.clone());
        assert_eq!(broken(&e), [4], "an approval that vanished without a reason");

        let mut e = clean();
        e.ledger_outcomes = None;
        assert_eq!(broken(&e), [5]);
        let mut e = clean();
        e.ledger_unreadable = Some("not json".into());
        assert_eq!(broken(&e), [5]);
        let mut e = clean();
        e.ledger_outcomes = Some(vec![json!({"resourceId": "i-1", "operation": "stop", "outcome": "failed"})]);
        assert_eq!(broken(&e), [5], "the ledger must say what happened");
        let mut e = clean();
        e.reports.clear();
        assert_eq!(broken(&e), [5]);
        let mut e = clean();
        e.status = "FAILED".into();
        e.final_states.insert("i-1".into(), "running".into());
        e.stops.clear();
        e.posts.clear();
        e.ledger_outcomes = Some(vec![]);
        assert_eq!(broken(&e), [5], "a failed run recorded as completed");

        let mut e = clean();
        e.proposed.push("i-2".into());
        assert_eq!(broken(&e), [6]);
        let mut e = clean();
        e.made_production.insert("i-1".into());
        assert_eq!(broken(&e), [6]);
        let mut e = clean();
        e.made_busy.insert("i-1".into());
        assert_eq!(broken(&e), [6], "busy again before its approve, stopped all the same");
        let mut e = clean();
        e.fleet[0].kind = Kind::Busy;
        assert_eq!(broken(&e), [6, 6, 6], "a busy instance stopped, proposed and asked about");

        let mut e = clean();
        e.model_broken = true;
        e.reasoning = (Some("converse".into()), Some(0));
        assert_eq!(broken(&e), [7]);
        e.reasoning = (Some("converse".into()), Some(3));
        assert_eq!(broken(&e), [7], "the report does not say so");
        e.reports.push("Reasoning: converse, 3 of the shortlist decided by the rules instead of the model".into());
        assert_eq!(broken(&e), [0usize; 0]);
        e.reasoning = (Some("converse".into()), Some(1));
        e.reports.push("Reasoning: converse, 1 of the shortlist decided by the rules instead of the model".into());
        assert_eq!(broken(&e), [7], "the model down for the whole run, and two of three recommendations its own");
        e.reasoning = (None, None);
        e.recommendation_count = None;
        assert_eq!(broken(&e), [7], "no reasoning output to say what decided");
    }

    #[test]
    fn a_stop_nobody_approved_breaks_the_first_invariant_even_when_moto_shows_it_running_again() {
        let mut e = clean();
        e.records.clear();
        e.posts.clear();
        e.final_states.insert("i-1".into(), "running".into());
        assert!(broken(&e).contains(&1));
    }
}
