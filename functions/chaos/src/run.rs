//! One chaos run: moto reset, the workflow's AWS created as `make demo` creates it, a random fleet, the run's fault
//! plan armed, an execution started as the schedule would, approvers answering, and then the evidence gathered from
//! moto and checked against the invariants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use finops_approval_callback::ApprovalCallback;
use finops_core::LookbackWindow;
use finops_local::{approval_page, LocalFunctions};
use finops_testkit::approvals::TABLE;
use finops_testkit::moto::http;
use finops_testkit::scripted_model::Behaviour as ModelBehaviour;
use finops_testkit::workflow::{substituted_definition, WorkflowEnv, WorkflowTimings};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_ec2};
use serde_json::{json, Value};

use crate::approver::Approvers;
use crate::fleet::{self, ChaosInstance};
use crate::functions::ChaosFunctions;
use crate::invariants::{self, Record, Recreated, RunEvidence, Snapshot, UndoPost, Violation};
use crate::plan::FaultPlan;
use crate::proxy::{FaultProxy, Outage};
use crate::rng::Rng;

/// What every run shares: one moto, the proxy in front of it, the Lambda endpoint's functions.
/// The approvers' Slack channel in every chaos run.
pub const CHAOS_SLACK_CHANNEL: &str = "C0CHAOS";
/// The verified sender of owner notices (its domain is the owner domain).
const OWNER_NOTICES_FROM: &str = "finops@example.com";

pub struct Harness {
    pub moto_port: u16,
    /// Straight to moto: setting up and gathering evidence, never faulted.
    pub direct: SdkConfig,
    /// Through the fault proxy: what the functions and the approval page use.
    pub faulty: SdkConfig,
    pub proxy: FaultProxy,
    pub functions: Arc<ChaosFunctions>,
    pub timings: WorkflowTimings,
    /// Longest an execution may take before it counts as stuck (and is stopped).
    pub deadline: Duration,
    /// Longest a whole run may take (setup, execution, undo links, evidence) before the watchdog ends it as a hang
    /// of the harness: see [`run_watched`].
    pub budget: Duration,
    /// No faults (a [`FaultPlan::calm`] run) when set: the harness's own tests.
    pub calm: bool,
    /// How likely an undo link the approvers were mailed is followed (a third in the batches).
    pub undo_chance: f64,
}

/// A task that ends with its owner: a run the watchdog gave up on takes its approval page with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The status of a run the watchdog ended.
pub const HUNG: &str = "HUNG";
/// The status of a run whose harness panicked (an unexpected answer it could not read, say): like a hang, a harness
/// failure of that seed, not the end of the batch.
pub const PANICKED: &str = "PANICKED";

/// [`run_one`] under a watchdog: a run past the harness's budget is dropped (its page and answers with it), and a run
/// whose harness panics is caught; either is reported as a harness failure with its seed, so that a batch goes on
/// instead of waiting for ever or ending at the first panic.
pub async fn run_watched(h: &Harness, seed: u64, image_id: &mut Option<String>) -> RunResult {
    use futures_util::FutureExt;
    let started = Instant::now();
    let run = std::panic::AssertUnwindSafe(run_one(h, seed, image_id)).catch_unwind();
    let (status, why) = match tokio::time::timeout(h.budget, run).await {
        Ok(Ok(result)) => return result,
        Ok(Err(panic)) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            (PANICKED, format!("the run's harness panicked: {}", message.chars().take(300).collect::<String>()))
        }
        Err(_) => (HUNG, format!("the run did not end within its budget of {} s", h.budget.as_secs())),
    };
    RunResult {
        seed,
        seconds: started.elapsed().as_secs_f64(),
        status: status.to_owned(),
        failure: Some(format!("harness failure: {why} (replay with CHAOS_SEED={seed} CHAOS_RUNS=1)")),
        ..RunResult::default()
    }
}

impl RunResult {
    /// A run the harness could not finish ([`HUNG`], [`PANICKED`]): its seed fails the batch, which goes on.
    pub fn is_harness_failure(&self) -> bool {
        self.status == HUNG || self.status == PANICKED
    }
}

/// What one run did and broke.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub seed: u64,
    pub plan: String,
    pub seconds: f64,
    /// Reset, the workflow's AWS and the fleet.
    pub setup_seconds: f64,
    /// From StartExecution to its end.
    pub execution_seconds: f64,
    pub status: String,
    pub fleet: usize,
    pub proposed: usize,
    pub approved: usize,
    pub stopped: usize,
    /// Unattached volumes deleted (after their snapshot).
    pub deleted: usize,
    /// Stops and deletions undone with their undo link.
    pub undone: usize,
    /// Outcome of each proposal ("done", "refused", "no_answer", "denied", ...), counted.
    pub outcomes: BTreeMap<String, u32>,
    pub faults: BTreeMap<String, u32>,
    pub behaviours: BTreeMap<&'static str, u32>,
    pub violations: Vec<Violation>,
    /// A failed run's failure notice (the report topic's message), to say why it failed.
    pub failure: Option<String>,
}

/// The state machine as `make demo` runs it, with every retry's first wait cut to one second (the same attempts
/// and backoff): the faults make Step Functions retry often, and runs must stay short.
fn quick_retries(definition: &str) -> String {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(retries)) = map.get_mut("Retry") {
                    for r in retries {
                        r["IntervalSeconds"] = json!(1);
                    }
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(definition).expect("the definition is JSON");
    walk(&mut v);
    v.to_string()
}

pub async fn run_one(h: &Harness, seed: u64, image_id: &mut Option<String>) -> RunResult {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let (mut fleet_rng, mut plan_rng, approver_rng) = (rng.fork(1), rng.fork(2), rng.fork(3));
    let mut undo_rng = rng.fork(4);
    let plan = if h.calm { FaultPlan::calm(4 + plan_rng.below(5) as usize) } else { FaultPlan::draw(&mut plan_rng) };
    let (status, body) = http(h.moto_port, "POST", "/moto-api/reset", "").await.expect("reset moto");
    assert_eq!(status, 200, "moto reset: {body}");

    let env = WorkflowEnv::create(h.moto_port, &h.direct, &h.timings).await;
    env.plumbing
        .sfn
        .update_state_machine()
        .state_machine_arn(&env.state_machine_arn)
        .definition(quick_retries(&substituted_definition(&env.report_topic_arn, &h.timings)))
        .send()
        .await
        .expect("update the state machine");
    env.model.set_behaviour(plan.model);

    // A fresh approval page per run, as a cold Lambda: it reads the signing secret again.
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the approval page");
    let page_port = page.local_addr().expect("address").port();
    let base_url = format!("http://127.0.0.1:{page_port}");
    let mut vars = env.function_vars(&base_url);
    // Slack, played locally, beside the email: some approvers answer there (its secret is read through the faults).
    let slack = finops_testkit::slack::LocalSlack::start().await;
    let slack_users = [crate::approver::CHAOS_SLACK_USER];
    vars.extend(slack.deploy(&h.direct, &format!("finops/slack-{seed:016x}"), CHAOS_SLACK_CHANNEL, &slack_users).await);
    // Owners named by an owner tag in the deployment's domain hear of their resources, with a keep-it link.
    vars.push(("FINOPS_OWNER_NOTICES_FROM".into(), OWNER_NOTICES_FROM.into()));
    finops_testkit::aws_sdk_sesv2::Client::new(&h.direct)
        .create_email_identity()
        .email_identity(OWNER_NOTICES_FROM)
        .send()
        .await
        .expect("the verified sender of owner notices");
    let callback = ApprovalCallback::from_vars(&h.faulty, &vars).expect("callback settings");
    let page_task = AbortOnDrop(tokio::spawn(approval_page::serve(page, Arc::new(callback))));
    let functions = LocalFunctions::new(&h.faulty, &vars).expect("the functions' environment");
    h.functions.install(functions, plan.steps.clone(), seed ^ 0x5EED);

    let ec2 = aws_sdk_ec2::Client::new(&h.direct);
    let cw = aws_sdk_cloudwatch::Client::new(&h.direct);
    if image_id.is_none() {
        *image_id = Some(finops_testkit::seed::linux_image_id(&ec2).await);
    }
    let window = LookbackWindow::ending_before(chrono::Utc::now(), 14);
    let mut fleet =
        fleet::seed(&mut fleet_rng, plan.fleet_size, &ec2, &cw, image_id.as_deref().unwrap_or(""), &window).await;
    let volumes = fleet::seed_volumes(&mut fleet_rng, &ec2, fleet.len()).await;
    fleet.extend(volumes);

    let outages = plan
        .secret_outage
        .map(|(from, len)| {
            let start = Instant::now() + Duration::from_secs_f64(from);
            vec![Outage { operation: "GetSecretValue", from: start, until: start + Duration::from_secs_f64(len) }]
        })
        .unwrap_or_default();
    h.proxy.set_plan(plan.api.clone(), outages, seed ^ 0xFA17);

    let setup_seconds = started.elapsed().as_secs_f64();
    let run_id = format!("chaos-{seed:016x}");
    let execution = env.start_with(&run_id, &json!({"regions": plan.regions, "mode": "act", "lookbackDays": 14})).await;
    let timeout = Duration::from_secs(u64::from(h.timings.approval_timeout_seconds));
    let clients =
        crate::approver::Clients { ec2: ec2.clone(), cw: cw.clone(), ddb: aws_sdk_dynamodb::Client::new(&h.direct) };
    let mut approvers = Approvers::new(page_port, h.moto_port, timeout, approver_rng, clients, Arc::new(slack));
    let deadline = Instant::now() + h.deadline;
    // The approver's mail: the run's digest (answered as it comes), then the undo offer (followed after the run).
    let mut undo_offers = Vec::new();
    let (status, output) = loop {
        while let Some(email) = env.plumbing.try_next_email().await {
            match finops_testkit::mail::undo_offers(&email) {
                offers if !offers.is_empty() => undo_offers.extend(offers),
                _ => approvers.on_digest(&email).await,
            }
        }
        let d = env.plumbing.sfn.describe_execution().execution_arn(&execution).send().await.expect("describe");
        if d.status().as_str() != "RUNNING" {
            break (d.status().as_str().to_owned(), d.output().and_then(|o| serde_json::from_str(o).ok()));
        }
        if Instant::now() > deadline {
            let _ = env.plumbing.sfn.stop_execution().execution_arn(&execution).send().await;
            break ("STUCK".to_owned(), None);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    let execution_seconds = started.elapsed().as_secs_f64() - setup_seconds;
    // Someone changes their mind, under the same faults: undo links of the report, followed and replayed.
    while let Some(email) = env.plumbing.try_next_email().await {
        undo_offers.extend(finops_testkit::mail::undo_offers(&email));
    }
    let undo_posts = match &status[..] {
        "SUCCEEDED" => follow_undo_links(&env, &ec2, page_port, &undo_offers, h.undo_chance, &mut undo_rng).await,
        _ => Vec::new(),
    };
    h.proxy.calm();
    approvers.after_run().await;
    // Anything still on its way: an email sent late, a stop after the end (neither should happen).
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(email) = env.plumbing.try_next_email().await {
        approvers.on_digest(&email).await;
    }
    approvers.after_run().await;
    drop(page_task);

    let output = output.unwrap_or(Value::Null);
    let mut evidence = gather(h, &env, &run_id, &fleet, &output).await;
    evidence.status = status.clone();
    evidence.posts = approvers.posts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    evidence.emails = approvers.emails.clone();
    evidence.made_production = approvers.made_production.clone();
    evidence.made_busy = approvers.made_busy.clone();
    evidence.unreadable_emails = approvers.unreadable_emails;
    evidence.scanner_changes = approvers.scanner_changes.clone();
    evidence.model_broken = plan.model != ModelBehaviour::Script;
    evidence.undo_posts = undo_posts;
    let violations = invariants::check(&evidence);

    let mut faults = h.proxy.injected();
    faults.extend(h.functions.injected());
    if plan.model != ModelBehaviour::Script {
        faults.insert(format!("model {:?}", plan.model), 1);
    }
    if plan.secret_outage.is_some() {
        faults.insert("secret unreadable for a while".into(), 1);
    }
    let mut outcomes = BTreeMap::new();
    for o in &evidence.outcomes {
        *outcomes.entry(o["outcome"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
    }
    RunResult {
        seed,
        plan: plan.describe(),
        seconds: started.elapsed().as_secs_f64(),
        setup_seconds,
        execution_seconds,
        status,
        fleet: fleet.len(),
        proposed: evidence.proposed.len(),
        approved: evidence.posts.iter().filter(|p| p.decision == "approve" && p.status == 200).count(),
        stopped: evidence.stops.iter().filter(|s| s.changed_state() && s.current_state != "deleted").count(),
        deleted: evidence.stops.iter().filter(|s| s.changed_state() && s.current_state == "deleted").count(),
        undone: evidence
            .undo_posts
            .iter()
            .filter(|p| p.execution.as_ref().is_some_and(|(_, outcome)| outcome == "done" || outcome == "already_done"))
            .count(),
        outcomes,
        faults,
        behaviours: {
            let mut behaviours = approvers.behaviours.clone();
            // The undo links followed (a POST and its replay each), and what a person changed before some.
            for p in evidence.undo_posts.iter().step_by(2) {
                let label = match p.changed_since {
                    Some(invariants::CHANGED_SINCE_RESTARTED) => "undo after a person restarted and stopped it",
                    Some(_) => "undo after a person tagged it production",
                    None => "undo",
                };
                *behaviours.entry(label).or_default() += 1;
            }
            behaviours
        },
        failure: (evidence.status != "SUCCEEDED").then(|| evidence.reports.join(" / ")),
        violations,
    }
}

/// Each undo link the approver was mailed, followed with a chance of one in three (a person's GET, then the button's
/// POST, then the same POST again, as a double click or a replayed request would), and each undo execution waited
/// for. Before some, a person changed the stopped instance since finops stopped it: started and stopped it again,
/// or tagged it production; such an undo must start nothing.
async fn follow_undo_links(
    env: &WorkflowEnv,
    ec2: &aws_sdk_ec2::Client,
    page_port: u16,
    offers: &[finops_testkit::mail::UndoOffer],
    chance: f64,
    rng: &mut Rng,
) -> Vec<UndoPost> {
    let mut posts = Vec::new();
    for offer in offers {
        if !rng.chance(chance) {
            continue;
        }
        let path = finops_testkit::mail::path_and_query(&offer.url).to_owned();
        let Some(undo_id) = finops_testkit::mail::approval_id(&offer.url) else { continue };
        let changed = match (offer.resource_id.starts_with("i-"), rng.below(4)) {
            (true, 0) => {
                // A second later (as EC2 counts), someone starts it and stops it again.
                tokio::time::sleep(Duration::from_millis(1_100)).await;
                let started = ec2.start_instances().instance_ids(&offer.resource_id).send().await;
                let stopped = ec2.stop_instances().instance_ids(&offer.resource_id).send().await;
                (started.is_ok() && stopped.is_ok()).then_some(invariants::CHANGED_SINCE_RESTARTED)
            }
            (true, 1) => {
                let tag = aws_sdk_ec2::types::Tag::builder().key("Environment").value("production").build();
                let tagged = ec2.create_tags().resources(&offer.resource_id).tags(tag).send().await;
                tagged.is_ok().then_some(invariants::CHANGED_SINCE_PRODUCTION)
            }
            _ => None,
        };
        let _ = http(page_port, "GET", &path, "").await;
        for _ in 0..2 {
            let status = http(page_port, "POST", &path, "decision=undo").await.map_or(0, |r| r.0);
            posts.push(UndoPost {
                resource_id: offer.resource_id.clone(),
                undo_id: undo_id.clone(),
                status,
                execution: None,
                changed_since: changed,
            });
        }
    }
    for post in posts.iter_mut().filter(|p| p.status == 200 || p.status == 202) {
        let arn =
            format!("{}:undo-{}", env.state_machine_arn.replacen(":stateMachine:", ":execution:", 1), post.undo_id);
        // 202: the page could not confirm the start; whether it happened is for moto to say.
        if post.status == 202 {
            let described = env.plumbing.sfn.describe_execution().execution_arn(&arn).send().await;
            if described.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_execution_does_not_exist())) {
                continue;
            }
        }
        let (status, output) = env.finished(&arn, Duration::from_secs(60)).await;
        post.execution = Some((status, output["undone"]["outcome"].as_str().unwrap_or("?").to_owned()));
    }
    posts
}

/// The report topic's messages (its SQS subscription): waits up to 3 s for the first, then takes what is there.
async fn drain_reports(config: &SdkConfig, queue_url: &str) -> Vec<String> {
    let sqs = finops_testkit::aws_sdk_sqs::Client::new(config);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reports = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await;
        let messages = out.map(|o| o.messages().to_vec()).unwrap_or_default();
        if messages.is_empty() && (!reports.is_empty() || Instant::now() > deadline) {
            return reports;
        }
        for m in messages {
            reports.push(m.body().unwrap_or_default().to_owned());
            let _ = sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await;
        }
        if reports.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Everything the invariants read, from moto and the proxy's log, with no faults in the way.
async fn gather(h: &Harness, env: &WorkflowEnv, run_id: &str, fleet: &[ChaosInstance], output: &Value) -> RunEvidence {
    let ec2 = aws_sdk_ec2::Client::new(&h.direct);
    let mut final_states = BTreeMap::new();
    let described = ec2.describe_instances().send().await.expect("describe instances");
    for i in described.reservations().iter().flat_map(|r| r.instances()) {
        let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_default();
        final_states.insert(i.instance_id().unwrap_or_default().to_owned(), state);
    }
    // The fleet's unattached volumes: their state, or `deleted` when EC2 says it knows no such volume
    // (InvalidVolume.NotFound, as its API reference documents); any other error is no evidence of a deletion.
    for volume in fleet.iter().filter(|i| i.instance_id.starts_with("vol-")) {
        let state = finops_testkit::seed::volume_state(&ec2, &volume.instance_id).await.expect("no faults here");
        final_states.insert(volume.instance_id.clone(), state.unwrap_or_else(|| "deleted".into()));
    }
    let snapshots = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await
        .expect("describe snapshots")
        .snapshots()
        .iter()
        .map(|s| {
            let tag = |k: &str| s.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_owned);
            Snapshot {
                snapshot_id: s.snapshot_id().unwrap_or_default().to_owned(),
                volume_id: s.volume_id().unwrap_or_default().to_owned(),
                run_id: tag("finops:run-id"),
                instance_id: tag("finops:instance-id"),
                state: s.state().map(|st| st.as_str().to_owned()).unwrap_or_default(),
            }
        })
        .collect();
    let ddb = aws_sdk_dynamodb::Client::new(&h.direct);
    let items = ddb.scan().table_name(TABLE).send().await.expect("scan approvals").items().to_vec();
    let text = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, k: &str| {
        item.get(k).and_then(|v| v.as_s().ok()).cloned()
    };
    let records = items
        .iter()
        .map(|item| Record {
            approval_id: text(item, "approvalId").unwrap_or_default(),
            run_id: text(item, "runId").unwrap_or_default(),
            instance_id: text(item, "resourceId").unwrap_or_default(),
            state: text(item, "state").unwrap_or_default(),
            decision: text(item, "decision"),
            via: text(item, "decidedVia"),
            approver: text(item, "approver"),
            decided_at: text(item, "decidedAt").and_then(|t| t.parse().ok()),
            undo: item.contains_key("undoOf"),
        })
        .collect();
    let reports = drain_reports(&h.direct, &env.report_queue_url).await;
    // The volumes undos created (tagged with the undo's id and the volume they recreate).
    let undo_tag = aws_sdk_ec2::types::Filter::builder().name("tag-key").values("finops:undo-id").build();
    let recreated = ec2
        .describe_volumes()
        .filters(undo_tag)
        .send()
        .await
        .expect("describe volumes")
        .volumes()
        .iter()
        .map(|v| {
            let tag =
                |k: &str| v.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap_or_default();
            Recreated {
                volume_id: v.volume_id().unwrap_or_default().to_owned(),
                undo_id: tag("finops:undo-id").to_owned(),
                of_volume: tag("finops:volume-id").to_owned(),
            }
        })
        .collect();
    let ledger = env.ledger(run_id).await;
    let (ledger_outcomes, ledger_unreadable) = match ledger.get("outcomes").and_then(|v| v.as_s().ok()) {
        Some(text) => match serde_json::from_str::<Vec<Value>>(text) {
            Ok(outcomes) => (Some(outcomes), None),
            Err(_) => (Some(Vec::new()), Some(text.clone())),
        },
        None => ((!ledger.is_empty()).then(Vec::new), None),
    };
    let proposed = output["policy"]["proposals"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["resourceId"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    RunEvidence {
        run_id: run_id.to_owned(),
        fleet: fleet.to_vec(),
        final_states,
        snapshots,
        stops: h.proxy.stops(),
        starts: h.proxy.starts(),
        snapshots_seen_completed: h.proxy.snapshots_seen_completed(),
        ledger_unreadable,
        recommendation_count: output["reasoning"]["output"]["recommendationCount"].as_u64(),
        recreated,
        records,
        proposed,
        outcomes: output["outcomes"].as_array().cloned().unwrap_or_default(),
        reports,
        ledger_outcomes,
        ledger_status: ledger.get("status").and_then(|v| v.as_s().ok()).cloned(),
        reasoning: (
            output["reasoning"]["output"]["backend"].as_str().map(str::to_owned),
            output["reasoning"]["output"]["fallbacks"].as_u64(),
        ),
        // Who the chaos deployment allows to decide: its one approver by their links, its one Slack user by a click.
        allowed_deciders: vec![
            finops_testkit::workflow::APPROVER.to_owned(),
            format!("slack:{}/", crate::approver::CHAOS_SLACK_USER),
        ],
        ..RunEvidence::default()
    }
}
