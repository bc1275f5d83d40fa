//! The whole state machine on moto: the real ASL with substitutions, run by moto's interpreter, whose Lambda tasks
//! reach the real Rust handlers through the local Lambda endpoint.
#![recursion_limit = "256"]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use finops_approval_callback::ApprovalCallback;
use finops_core::LookbackWindow;
use finops_local::xray_daemon::XrayDaemon;
use finops_local::{approval_page, serve, LocalFunctions};
use finops_testkit::approvals::{SECRET, TABLE};
use finops_testkit::moto::{sdk_config, MotoServer};
use finops_testkit::seed::{
    launch, linux_image_id, put_daily_metrics, sample_fleet, DayProfile, InstanceSpec, SeededInstance,
};
use finops_testkit::workflow::{set_var, WorkflowEnv, WorkflowTimings, APPROVER};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_ec2};
use serde_json::Value;

struct Workflow {
    _moto: MotoServer,
    env: WorkflowEnv,
    functions: Arc<LocalFunctions>,
    config: aws_config::SdkConfig,
    fleet: Vec<SeededInstance>,
    /// The functions' environment, as a deployment sets it.
    vars: Vec<(String, String)>,
    /// The X-Ray daemon the functions send their segments to.
    xray: XrayDaemon,
}

async fn workflow(approval_timeout: u32) -> Workflow {
    workflow_with(approval_timeout, "http://127.0.0.1:9").await
}

async fn workflow_with(approval_timeout: u32, approval_base_url: &str) -> Workflow {
    deployment(approval_timeout, approval_base_url, 10, "act").await
}

/// A deployment with its per-run cap and mode, set as the CDK app sets them (the cap is also the approval map's
/// concurrency).
async fn deployment(
    approval_timeout: u32,
    approval_base_url: &str,
    max_proposals: u32,
    mode: &'static str,
) -> Workflow {
    deployment_with(approval_timeout, approval_base_url, max_proposals, mode, &[]).await
}

/// [`deployment`] with more of the functions' settings (`FINOPS_*`, as the CDK app would set them).
async fn deployment_with(
    approval_timeout: u32,
    approval_base_url: &str,
    max_proposals: u32,
    mode: &'static str,
    settings: &[(&str, &str)],
) -> Workflow {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_port = listener.local_addr().unwrap().port();
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", router_port.to_string())]).await;
    let config = sdk_config(&moto.endpoint, "ap-southeast-2").await;
    let timings = WorkflowTimings {
        approval_timeout_seconds: approval_timeout,
        snapshot_poll_seconds: 1,
        max_snapshot_checks: 5,
        max_proposals,
        deployment_mode: mode,
        fan_out: false,
    };
    let env = WorkflowEnv::create(moto.port, &config, &timings).await;
    let xray = XrayDaemon::start().await.expect("the local X-Ray daemon");
    let mut vars = env.function_vars(approval_base_url);
    // As Lambda sets it for a traced function.
    set_var(&mut vars, "AWS_XRAY_DAEMON_ADDRESS", &xray.addr().to_string());
    for (name, value) in settings {
        set_var(&mut vars, name, value);
    }
    let functions = Arc::new(LocalFunctions::new(&config, &vars).expect("the functions' environment"));
    tokio::spawn(serve(listener, functions.clone(), ([127, 0, 0, 1], moto.port).into()));
    let use1 = sdk_config(&moto.endpoint, "us-east-1").await;
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    let fleet = sample_fleet(&config, &use1, &window).await;
    finops_testkit::seed::sample_resources(&config, &use1, &window).await;
    Workflow { _moto: moto, env, functions, config, fleet, vars, xray }
}

impl Workflow {
    async fn start(&self, name: &str, mode: &str) -> String {
        self.env.start(name, &["ap-southeast-2", "us-east-1"], mode).await
    }

    async fn report(&self) -> String {
        self.env.next_report(Duration::from_secs(20)).await.expect("run report")
    }

    async fn ledger(&self, run_id: &str) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.env.ledger(run_id).await
    }
}

async fn finished(w: &Workflow, execution: &str) -> (String, Vec<String>, Value) {
    for _ in 0..240 {
        let d = w.env.plumbing.sfn.describe_execution().execution_arn(execution).send().await.unwrap();
        if d.status().as_str() != "RUNNING" {
            let output = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
            return (d.status().as_str().to_owned(), w.env.plumbing.entered_states(execution).await, output);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{execution} still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommend_mode_reports_and_does_nothing() {
    let w = workflow(60).await;
    let started = std::time::Instant::now();
    let execution = w.start("run-recommend", "recommend").await;
    let (status, states, output) = finished(&w, &execution).await;
    eprintln!("recommend run: {:?}, {} states", started.elapsed(), states.len());
    if status != "SUCCEEDED" {
        let history = w.env.plumbing.sfn.get_execution_history().execution_arn(&execution).send().await.unwrap();
        for e in history.events() {
            if let Some(f) = e.task_failed_event_details() {
                eprintln!("task failed: {:?} {:?}", f.error(), f.cause());
            }
        }
    }
    assert_eq!(status, "SUCCEEDED", "{states:?} {output}");
    for s in [
        "Find Running Instances",
        "Measure Utilisation",
        "Reason About Shortlist",
        "Check Policy",
        "Nothing To Act On",
        "Report Run",
        "Record Run In Ledger",
    ] {
        assert!(states.contains(&s.to_string()), "{s} missing from {states:?}");
    }
    assert!(!states.iter().any(|s| s == "Ask Approvers" || s == "Wait For Decision"), "recommend mode asks nobody");
    assert_eq!(output["policy"]["proposalCount"], 10);
    assert_eq!(output["policy"]["denialCounts"]["instance-storage"], 1, "dev-nvme-scratch: {output}");
    assert_eq!(output["policy"]["denialCounts"]["production"], 3, "prod-orders-db, legacy-reporting, billing-replica");
    let report = w.report().await;
    assert!(
        report.contains("finops run run-recommend (recommend mode)") && report.contains("Proposed: 10"),
        "{report}"
    );
    let ledger = w.ledger("run-recommend").await;
    assert_eq!(ledger["proposalCount"].as_n().unwrap(), "10");
    assert_eq!(ledger["status"].as_s().unwrap(), "completed");
    // The other resources (seed::sample_resources): the old volume and the spare address can be acted on; the
    // production volume, the protected address and the DNS-named one are blocked; the volume with I/O yesterday is
    // not idle; the instance stopped 45 days ago, the NAT gateway that sent nothing, the load balancer without a
    // request and the one without a healthy target are reported only; the instance stopped 2 days ago, the NAT
    // gateway that sent 5 GB and the load balancer serving a healthy target are not idle.
    let resources = &output["policy"]["resources"];
    assert_eq!((resources["found"].as_u64(), resources["idle"].as_u64()), (Some(13), Some(9)), "{resources}");
    assert_eq!((resources["actionable"].as_u64(), resources["blocked"].as_u64()), (Some(2), Some(3)), "{resources}");
    assert_eq!(resources["reportOnly"], 4, "{resources}");
    assert_eq!(resources["byKind"]["load-balancer"]["idle"], 2, "{resources}");
    assert_eq!(resources["byKind"]["stopped-instance"]["idle"], 1, "{resources}");
    assert_eq!(resources["byKind"]["nat-gateway"]["idle"], 1, "{resources}");
    assert_eq!(resources["byKind"]["elastic-ip"]["blocked"], 2, "{resources}");
    assert_eq!(resources["byKind"]["ebs-volume"]["blocked"], 1, "{resources}");
    let actionable = resources["actionableMonthlySavingUsd"].as_f64().unwrap();
    assert!(actionable > 3.65, "the spare address and the old volume: {resources}");
    assert!(
        report.contains(&format!("Other resources: ${actionable:.2}/month actionable; 3 EBS volumes: 2 idle")),
        "{report}"
    );
    let recorded: Value = serde_json::from_str(ledger["otherResources"].as_s().unwrap()).unwrap();
    assert_eq!(&recorded, resources, "the ledger keeps the figures the report gave");
    let invoked = w.functions.invocations.lock().unwrap().clone();
    assert_eq!(
        invoked,
        [
            "finops-inventory",
            "finops-metrics",
            "finops-reasoning",
            "finops-policy",
            "finops-run-cost",
            "finops-savings"
        ]
    );
    // The run's own cost, from its history on moto's interpreter: every step's Lambda time, the transitions, the
    // metrics the metrics step requested, the model's tokens (two Converse turns of the scripted model).
    let cost = &output["cost"]["output"];
    let functions: Vec<&str> =
        cost["usage"]["functions"].as_array().unwrap().iter().map(|f| f["function"].as_str().unwrap()).collect();
    assert_eq!(functions, ["finops-inventory", "finops-metrics", "finops-policy", "finops-reasoning"], "{cost}");
    // Its transitions are counted before the run ends, the last few added as a constant: the finished execution's
    // history says how many states it really entered.
    assert_eq!(cost["usage"]["stateTransitions"].as_u64(), Some(states.len() as u64), "{cost} {states:?}");
    assert_eq!(cost["usage"]["metricsRequested"], output["metrics"]["output"]["metricsRequested"]);
    assert_eq!(
        (cost["usage"]["modelInputTokens"].as_u64(), cost["usage"]["modelOutputTokens"].as_u64()),
        (Some(2000), Some(400))
    );
    assert!(cost["totalUsd"].as_f64().unwrap() > 0.0 && cost["modelUsd"].as_f64().unwrap() == 0.012, "{cost}");
    assert!(report.contains("Run cost: ") && report.contains(" USD per 1,000 instances"), "{report}");
    let recorded: serde_json::Value = serde_json::from_str(ledger["runCost"].as_s().unwrap()).unwrap();
    assert_eq!(&recorded, cost, "the ledger keeps what the report said");
    // The model path, as a deployment runs it: Converse, one tool call round trip, an answer that validated.
    assert_eq!(output["reasoning"]["output"]["backend"], "converse");
    assert_eq!(output["reasoning"]["output"]["fallbacks"], 0);
    assert_eq!((w.env.model.requests(), w.env.model.tool_calls()), (2, 1), "one tool call, then the answer");
    // Nothing changed in EC2.
    let ec2 = aws_sdk_ec2::Client::new(&w.config);
    let out = ec2.describe_instances().send().await.unwrap();
    assert!(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| i.state().unwrap().name().unwrap().as_str() == "running"));
    assert_eq!(w.fleet.len(), 28);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_takes_the_catch_path_and_acts_on_nothing() {
    let w = workflow(60).await;
    w.functions.failing.lock().unwrap().insert("finops-policy".into());
    let execution = w.start("run-broken", "act").await;
    let (status, states, _) = finished(&w, &execution).await;
    assert_eq!(status, "FAILED");
    assert!(states.contains(&"Report Failure".to_string()), "{states:?}");
    assert!(!states.iter().any(|s| s == "Await Decisions And Act"));
    let report = w.report().await;
    assert!(
        report.contains("stopped before acting. Nothing was stopped.") && report.contains("Finops.InjectedFailure"),
        "{report}"
    );
    // The ledger holds every run, a failed one with its error.
    let ledger = w.ledger("run-broken").await;
    assert_eq!(ledger["status"].as_s().unwrap(), "failed", "{ledger:?}");
    assert!(ledger["error"].as_s().unwrap().contains("Finops.InjectedFailure"), "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_cost_cannot_be_read_still_reports_and_records_it() {
    let w = workflow(60).await;
    w.functions.failing.lock().unwrap().insert("finops-run-cost".into());
    let execution = w.start("run-uncosted", "recommend").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"Cost Not Estimated".to_string()), "{states:?}");
    assert!(output["costError"]["Error"].as_str().unwrap().contains("Finops.InjectedFailure"), "{output}");
    let report = w.report().await;
    assert!(report.contains("Run cost: not estimated (the run-cost step failed"), "{report}");
    let ledger = w.ledger("run-uncosted").await;
    assert_eq!(ledger["status"].as_s().unwrap(), "completed");
    assert!(ledger["runCost"].as_s().unwrap().contains("not estimated"), "{ledger:?}");
}

/// POSTs a decision to its link's page through the real callback handler, as the person the link was sent to; asks
/// again while the workflow does not wait for it yet (the moment between the digest and the approval map's wait).
async fn post_decision(w: &Workflow, url: &str, decision: &str) -> finops_approval_callback::HttpResponse {
    let records = finops_approval_store::DynamoApprovals::new(&w.config, TABLE);
    let key = finops_approval_store::SecretsManagerKey::new(&w.config, SECRET);
    let callback = finops_approval_store::SfnCallback::new(&w.config);
    let (path, query) = finops_testkit::mail::path_and_query(url).split_once('?').unwrap();
    let body = format!("decision={decision}");
    for _ in 0..100 {
        let request = finops_approval_callback::HttpRequest {
            method: "POST",
            path,
            query,
            body: body.as_bytes(),
            source_ip: Some("127.0.0.1"),
            headers: Vec::new(),
        };
        let response = finops_approval_callback::handle(request, &records, &key, &callback, Utc::now()).await;
        if response.status != 503 {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the workflow never waited for {url}");
}

/// Answers the run's digest as its approver: `decide` picks each proposal's decision. The local deployment names one
/// approver ([`APPROVER`]), so a run mails one digest, with a section per proposal.
async fn answer_emails(
    w: &Workflow,
    count: usize,
    decide: impl Fn(&str) -> &'static str,
) -> Vec<(String, &'static str)> {
    let digest = w.env.plumbing.next_email().await;
    assert_eq!(finops_testkit::mail::recipient(&digest).as_deref(), Some(APPROVER), "{digest}");
    let offers = finops_testkit::mail::offers(&digest);
    assert_eq!(offers.len(), count, "one digest with every proposal: {digest}");
    let mut answered = Vec::new();
    for offer in offers {
        // Instances are answered under their Name tag; a volume or an address under its id.
        let resource = offer.resource_id.clone();
        let name = w.fleet.iter().find(|i| i.instance_id == resource).map_or(resource, |i| i.name.clone());
        let choice = decide(&name);
        let link = match choice {
            "approve" => &offer.approve,
            "deny" => &offer.deny,
            _ => &offer.snooze,
        };
        let response = post_decision(w, link, choice).await;
        assert_eq!(response.status, 200, "{name}: {}", response.body);
        answered.push((name, choice));
    }
    answered
}

fn by_name<'a>(w: &'a Workflow, name: &str) -> &'a SeededInstance {
    w.fleet.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("{name} not seeded"))
}

async fn instance_state(w: &Workflow, i: &SeededInstance) -> (String, HashMap<String, String>) {
    let config = sdk_config(w.config.endpoint_url().unwrap(), &i.region).await;
    let out = aws_sdk_ec2::Client::new(&config).describe_instances().instance_ids(&i.instance_id).send().await.unwrap();
    let inst = out.reservations()[0].instances()[0].clone();
    let tags = inst.tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect();
    (inst.state().unwrap().name().unwrap().as_str().to_owned(), tags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn act_mode_snapshots_and_stops_only_what_humans_approved() {
    // A cap of 12: the 10 idle instances, the old unattached volume and the spare Elastic IP are all asked about.
    let w = deployment(120, "http://127.0.0.1:9", 12, "act").await;
    finops_aws::metrics::capture();
    let started = std::time::Instant::now();
    let execution = w.start("run-act", "act").await;
    let mut answered = answer_emails(&w, 12, |name| match name {
        "dev-old-jenkins" => "deny",
        "dev-us-demo" => "snooze",
        _ => "approve",
    })
    .await;
    let (status, states, output) = finished(&w, &execution).await;
    eprintln!("act run with 12 approvals: {:?}", started.elapsed());
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert_eq!(output["outcomes"].as_array().unwrap().len(), 12);
    // Every metric of the catalogue (what the CDK app's dashboard may name) was emitted by this run's functions as
    // Embedded Metric Format, with the decisions and the outcome the run had.
    let emitted: Vec<(String, Option<(String, String)>)> =
        finops_aws::metrics::captured().iter().flat_map(|l| finops_core::metrics::names_in_line(l)).collect();
    for metric in finops_core::metrics::CATALOGUE {
        assert!(emitted.iter().any(|(name, _)| name == metric.name), "{} was not emitted: {emitted:?}", metric.name);
    }
    for decision in ["approve", "deny", "snooze"] {
        let seen =
            emitted.iter().any(|(n, d)| n == "ApprovalDecisions" && d.as_ref().is_some_and(|(_, v)| v == decision));
        assert!(seen, "ApprovalDecisions {decision}");
    }
    assert!(emitted.iter().any(|(n, d)| n == "Actions" && d.as_ref().is_some_and(|(_, v)| v == "done")));
    for s in ["Delete Volume", "Release Address", "Record Cleanup"] {
        assert!(states.contains(&s.to_string()), "{s} missing");
    }
    // The volume and the address, approved: the volume snapshotted (the snapshot kept) then deleted, the address
    // released; their outcomes say so.
    let resources: Vec<(String, &str)> =
        answered.extract_if(.., |(name, _)| name.starts_with("vol-") || name.starts_with("eipalloc-")).collect();
    assert_eq!(resources.len(), 2, "{resources:?}");
    let syd = aws_sdk_ec2::Client::new(&w.config);
    let use1 = aws_sdk_ec2::Client::new(&sdk_config(w.config.endpoint_url().unwrap(), "us-east-1").await);
    for (id, choice) in &resources {
        assert_eq!(*choice, "approve");
        let outcome = output["outcomes"].as_array().unwrap().iter().find(|o| o["resourceId"] == id.as_str()).unwrap();
        assert_eq!(outcome["outcome"], "done", "{outcome}");
        if id.starts_with("vol-") {
            assert_eq!(outcome["operation"], "delete_volume", "{outcome}");
            let gone = syd.describe_volumes().volume_ids(id).send().await;
            assert!(gone.is_err(), "{id} was deleted");
            let kept = outcome["snapshotIds"][0].as_str().unwrap();
            let snap = syd.describe_snapshots().snapshot_ids(kept).send().await.unwrap();
            let tags: HashMap<&str, &str> =
                snap.snapshots()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            assert_eq!((tags["finops:volume-id"], tags["finops:approved-by"]), (id.as_str(), "ops@example.com"));
        } else {
            assert_eq!(outcome["operation"], "release_address", "{outcome}");
            assert!(use1.describe_addresses().allocation_ids(id).send().await.is_err(), "{id} was released");
        }
    }
    // The production volume and the protected and DNS-named addresses were never asked about, and are all there.
    let proposed: Vec<&str> =
        output["policy"]["proposals"].as_array().unwrap().iter().filter_map(|p| p["resourceId"].as_str()).collect();
    let volumes = syd.describe_volumes().send().await.unwrap();
    let addresses = use1.describe_addresses().send().await.unwrap();
    assert!(volumes.volumes().iter().any(|v| v.tags().iter().any(|t| t.value() == Some("production"))));
    assert_eq!(addresses.addresses().len(), 2, "the protected and the DNS-named addresses stay");
    assert!(addresses.addresses().iter().all(|a| !proposed.contains(&a.allocation_id().unwrap())));
    for s in [
        "Ask Approvers",
        "Wait For Decision",
        "Decide",
        "Snapshot Volumes",
        "Wait For Snapshots",
        "Check Snapshots",
        "Stop Instance",
        "Tag Snooze",
        "Record Denial",
    ] {
        assert!(states.contains(&s.to_string()), "{s} missing");
    }

    let ec2 = aws_sdk_ec2::Client::new(&w.config);
    for (name, choice) in &answered {
        let i = by_name(&w, name);
        let (state, tags) = instance_state(&w, i).await;
        match *choice {
            "approve" => {
                assert_eq!(state, "stopped", "{name}");
                assert_eq!(tags["finops:action"], "stopped");
                assert_eq!(tags["finops:approved-by"], "ops@example.com", "the name, not the address it came from");
                let region_config = sdk_config(w.config.endpoint_url().unwrap(), &i.region).await;
                let snaps = aws_sdk_ec2::Client::new(&region_config)
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("tag:finops:instance-id")
                            .values(&i.instance_id)
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
                assert_eq!(snaps.snapshots().len(), 1, "{name}: one snapshot per volume, before the stop");
                assert!(snaps.snapshots().iter().all(|s| s.state().unwrap().as_str() == "completed"));
            }
            "deny" => assert_eq!(state, "running", "{name}"),
            _ => {
                assert_eq!(state, "running", "{name}");
                assert!(tags.contains_key("finops:snooze-until"), "{name}");
            }
        }
    }
    for untouchable in [
        "prod-orders-db",
        "web-asg-node",
        "eks-node",
        "dev-keep-me",
        "batch-etl",
        "legacy-reporting",
        "dev-nvme-scratch",
        "billing-replica",
    ] {
        assert_eq!(instance_state(&w, by_name(&w, untouchable)).await.0, "running", "{untouchable}");
    }
    let _ = ec2;

    // The audit trail, as X-Ray receives it: every decision of the run under the execution's one trace, per instance
    // the chain reasoning -> policy -> (approved) snapshot -> stop, each under the function segment that made it.
    let mut trail = w.xray.trail("run-act");
    for _ in 0..50 {
        if answered.iter().all(|(name, _)| trail.decisions.contains_key(&by_name(&w, name).instance_id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        trail = w.xray.trail("run-act");
    }
    assert_eq!(trail.trace_ids, [w.functions.trace_id("run-act").expect("the execution's trace")]);
    assert_eq!(w.xray.malformed(), 0);
    // The model's tool calls (the scripted model makes one round trip) are subsegments of the reasoning function.
    let tools: Vec<_> = trail.decisions.values().flatten().filter(|d| d.step.starts_with("finops.tool")).collect();
    assert!(!tools.is_empty());
    assert!(
        tools.iter().all(|d| d.agent == "converse" && d.function.as_deref() == Some("finops-reasoning")),
        "{tools:?}"
    );
    for (name, choice) in &answered {
        let chain: Vec<_> = trail.decisions[&by_name(&w, name).instance_id]
            .iter()
            .filter(|d| !d.step.starts_with("finops.tool"))
            .cloned()
            .collect();
        let steps: Vec<(&str, &str)> = chain.iter().map(|d| (d.step.as_str(), d.decision.as_str())).collect();
        assert_eq!(steps[0], ("finops.reasoning", "snapshot_and_stop"), "{name}: {steps:?}");
        assert_eq!(chain[0].agent, "converse", "{name}: the deployment's reasoner");
        assert_eq!(steps[1], ("finops.policy", "PROPOSED"), "{name}");
        let position = |decision: &str| steps.iter().position(|s| *s == ("finops.action", decision));
        if *choice == "approve" {
            let (snapshot, stop) = (position("snapshot:Done"), position("stop:Done"));
            assert!(snapshot.is_some() && stop.is_some() && snapshot < stop, "{name}: {steps:?}");
        } else {
            assert_eq!(position("stop:Done"), None, "{name}: {steps:?}");
        }
        for d in &chain {
            let function = d.function.as_deref().unwrap_or_else(|| panic!("{name}: {d:?} has no function segment"));
            assert_eq!(
                function.trim_start_matches("finops-"),
                d.step.trim_start_matches("finops.").replace("action", "actions")
            );
            assert_eq!(d.run_id, "run-act");
        }
    }
    let prod = &trail.decisions[&by_name(&w, "prod-orders-db").instance_id];
    assert!(prod.iter().any(|d| d.step == "finops.policy" && d.decision == "DENIED"), "{prod:?}");
    assert!(!prod.iter().any(|d| d.step == "finops.action"), "{prod:?}");

    // The next run skips the snoozed instance (and no longer sees the stopped ones).
    // Someone starts one of the stopped instances again before the next run.
    let (restarted, _) = answered.iter().find(|(_, choice)| *choice == "approve").unwrap();
    let restarted = by_name(&w, restarted);
    let region_config = sdk_config(w.config.endpoint_url().unwrap(), &restarted.region).await;
    aws_sdk_ec2::Client::new(&region_config)
        .start_instances()
        .instance_ids(&restarted.instance_id)
        .send()
        .await
        .unwrap();
    let act_report = w.report().await;
    assert!(act_report.contains("Realized savings: nothing acted on yet"), "the first acting run: {act_report}");
    // One-click undo: each stop and the deletion got a link (the release cannot be undone), mailed to the approval's
    // approver only: the report says how many, and no link is in the execution's history or the report. An
    // approver changes their mind about another stopped instance: the page changes nothing, its button starts the
    // undo execution once, and the instance runs again.
    assert!(act_report.contains("Undo: offered for 9 action(s) to 1 approver(s), by email only"), "{act_report}");
    assert!(act_report.contains("1 released address(es) cannot be got back"), "{act_report}");
    assert!(!act_report.contains("/approvals/"), "no link in the report: {act_report}");
    let history = w.env.plumbing.sfn.get_execution_history().execution_arn(&execution).max_results(1000).send().await;
    let history = format!("{:?}", history.unwrap().events());
    assert!(!history.contains("/approvals/"), "no link in the execution's history");
    let offer = w.env.plumbing.next_email().await;
    assert_eq!(finops_testkit::mail::recipient(&offer).as_deref(), Some(APPROVER), "{offer}");
    let links = finops_testkit::mail::undo_offers(&offer);
    assert_eq!(links.len(), 9, "{offer}");
    let changed_mind = answered.iter().find(|(name, choice)| {
        *choice == "approve" && *name != restarted.name && w.fleet.iter().any(|i| i.name == *name)
    });
    let (changed_mind, _) = changed_mind.unwrap();
    let changed_mind = by_name(&w, changed_mind);
    let link = links.iter().find(|l| l.resource_id == changed_mind.instance_id).expect("its undo link");
    let (path, query) = finops_testkit::mail::path_and_query(&link.url).split_once('?').unwrap();
    let records = finops_approval_store::DynamoApprovals::new(&w.config, TABLE);
    let key = finops_approval_store::SecretsManagerKey::new(&w.config, SECRET);
    let callback = finops_approval_store::SfnCallback::new(&w.config);
    let page = |method: &'static str| {
        let request = finops_approval_callback::HttpRequest {
            method,
            path,
            query,
            body: b"decision=undo",
            source_ip: Some("127.0.0.1"),
            headers: Vec::new(),
        };
        finops_approval_callback::handle(request, &records, &key, &callback, Utc::now())
    };
    let shown = page("GET").await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains(&format!("Start {} ({}) again?", changed_mind.name, changed_mind.instance_id)));
    assert_eq!(instance_state(&w, changed_mind).await.0, "stopped", "GET changes nothing");
    assert_eq!(page("POST").await.status, 200);
    assert_eq!(page("POST").await.status, 409, "single use");
    let undo_id = path.trim_start_matches("/approvals/");
    let undo_execution =
        format!("{}:undo-{undo_id}", w.env.state_machine_arn.replacen(":stateMachine:", ":execution:", 1));
    let (status, states, undo_output) = finished(&w, &undo_execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert_eq!(undo_output["undone"]["outcome"], "done", "{undo_output}");
    for never in ["Find Running Instances", "Await Decisions And Act", "Stop Instance"] {
        assert!(!states.contains(&never.to_string()), "an undo runs {never}");
    }
    let (state, tags) = instance_state(&w, changed_mind).await;
    assert!(["pending", "running"].contains(&state.as_str()), "{state}");
    assert_eq!(tags["finops:undone-by"], "ops@example.com");
    let undo_report = w.report().await;
    assert!(undo_report.contains(&changed_mind.instance_id) && undo_report.contains("done"), "{undo_report}");
    let undo_ledger = w.ledger(&format!("undo-{undo_id}")).await;
    assert_eq!(undo_ledger["undoOfRun"].as_s().unwrap(), "run-act");
    let again = w.start("run-after", "recommend").await;
    let (status, _, output) = finished(&w, &again).await;
    assert_eq!(status, "SUCCEEDED");
    assert_eq!(output["policy"]["denialCounts"]["snoozed"], 2, "dev-snoozed and the newly snoozed dev-us-demo");
    // The next run proves what the acting run did: 8 stops, the volume's deletion and the address's release, all
    // holding but the restarted instance and the undone one; the report, the state and the ledger say the same.
    let savings = &output["savings"]["output"];
    assert_eq!((savings["acted"].as_u64(), savings["holding"].as_u64()), (Some(10), Some(8)), "{savings}");
    assert_eq!(savings["undone"], 1, "{savings}");
    assert_eq!(savings["byKind"]["instance"]["holding"], 6, "{savings}");
    assert_eq!(savings["byKind"]["ebs-volume"]["holding"], 1, "{savings}");
    assert_eq!(savings["byKind"]["elastic-ip"]["holding"], 1, "{savings}");
    assert_eq!(savings["confirmed"].as_array().unwrap().len(), 9, "the undone one until its undo");
    let report = w.report().await;
    assert!(
        report.contains("Realized savings: $") && report.contains("8 of 10 actions still hold, 1 undone"),
        "{report}"
    );
    let ledger = w.ledger("run-after").await;
    let recorded: Value = serde_json::from_str(ledger["realizedSavings"].as_s().unwrap()).unwrap();
    assert_eq!(&recorded, savings);
    assert!(ledger["recordedAt"].as_s().is_ok_and(|at| at.starts_with("20")), "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_turned_on_a_long_stopped_instances_volumes_are_snapshotted_then_deleted_after_approval() {
    // A cap of 13: the 12 of the act test and old-build-box, stopped 45 days ago ($3.00/month of storage).
    let w = deployment_with(120, "http://127.0.0.1:9", 13, "act", &[("FINOPS_STOPPED_VOLUMES", "delete")]).await;
    let execution = w.start("run-stopped", "act").await;
    answer_emails(&w, 13, |_| "approve").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"Delete Instance Volumes".to_string()), "{states:?}");
    let use1 = sdk_config(w.config.endpoint_url().unwrap(), "us-east-1").await;
    let ec2 = aws_sdk_ec2::Client::new(&use1);
    let named = |name: &'static str| {
        let ec2 = ec2.clone();
        async move {
            let filter = aws_sdk_ec2::types::Filter::builder().name("tag:Name").values(name).build();
            let out = ec2.describe_instances().filters(filter).send().await.unwrap();
            out.reservations()[0].instances()[0].clone()
        }
    };
    let old = named("old-build-box").await;
    let outcome = output["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["resourceId"] == old.instance_id().unwrap())
        .expect("old-build-box was asked about")
        .clone();
    assert_eq!(
        (outcome["operation"].as_str(), outcome["outcome"].as_str()),
        (Some("delete_instance_volumes"), Some("done")),
        "{outcome}"
    );
    assert_eq!(outcome["acted"]["action"], "snapshot-and-delete-volumes");
    assert!(old.block_device_mappings().is_empty(), "its volumes are deleted");
    assert_eq!(old.state().unwrap().name().unwrap().as_str(), "stopped", "the instance stays");
    let kept = outcome["snapshotIds"].as_array().unwrap();
    assert_eq!(kept.len(), 1, "{outcome}");
    let snapshot = ec2.describe_snapshots().snapshot_ids(kept[0].as_str().unwrap()).send().await.unwrap();
    assert_eq!(snapshot.snapshots().len(), 1, "the snapshot is kept");
    // The one stopped two days ago is not asked about; the undo summary says how to get the volumes back.
    let recent = named("paused-yesterday").await;
    assert!(!output["outcomes"].as_array().unwrap().iter().any(|o| o["resourceId"] == recent.instance_id().unwrap()));
    assert_eq!(recent.block_device_mappings().len(), 1);
    assert!(
        output["undo"]["summary"].as_str().unwrap().contains("1 stopped instance(s)' deleted volumes"),
        "{}",
        output["undo"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_times_out_to_no_action() {
    let w = workflow(2).await;
    let execution = w.start("run-quiet", "act").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"No Answer, No Action".to_string()), "{states:?}");
    assert!(!states.iter().any(|s| s == "Stop Instance" || s == "Snapshot Volumes"));
    assert!(output["outcomes"].as_array().unwrap().iter().all(|o| o["outcome"] == "no_answer"));
    for i in &w.fleet {
        assert_eq!(instance_state(&w, i).await.0, "running", "{}", i.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_tools_single_instance_entry_keeps_the_policy_check() {
    let w = workflow(120).await;
    let single = |id: &str| {
        serde_json::json!({
            "entry": "single-instance", "mode": "act", "regions": ["ap-southeast-2"], "lookbackDays": 14,
            "instanceId": id, "requestedAction": "snapshot_and_stop", "requestedBy": "agent",
            "justification": "The user asked the agent to stop it."
        })
    };
    // A production database: the policy denies it, nobody is asked, nothing happens.
    let prod = by_name(&w, "prod-orders-db");
    let execution = w.env.start_with("agent-prod", &single(&prod.instance_id)).await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    // One entry path: only the normalising state differs from a scheduled run; the request stands in for the model.
    assert!(
        states.contains(&"Scope To Requested Instance".to_string()) && !states.contains(&"Scope To Fleet".to_string())
    );
    assert!(states.contains(&"Reason About Shortlist".to_string()));
    assert_eq!(output["reasoning"]["output"]["backend"], finops_reasoning::REQUESTED_BACKEND);
    assert_eq!(output["policy"]["proposalCount"], 0);
    assert_eq!(output["policy"]["denialCounts"]["production"], 1);
    assert_eq!(output["detection"]["instanceCount"], 1, "only the requested instance is inventoried");
    assert!(!states.contains(&"Wait For Decision".to_string()));

    // An idle dev box: one approval email; approved, it is snapshotted and stopped.
    let dev = by_name(&w, "dev-ana-workstation");
    let execution = w.env.start_with("agent-dev", &single(&dev.instance_id)).await;
    let answered = answer_emails(&w, 1, |_| "approve").await;
    assert_eq!(answered[0].0, "dev-ana-workstation");
    let (status, states, _) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Stop Instance".to_string()), "{states:?}");
    assert_eq!(instance_state(&w, dev).await.0, "stopped");
    assert_eq!(instance_state(&w, prod).await.0, "running");
}

impl Workflow {
    /// The approval page on 127.0.0.1:`port`, served by the callback the Lambda runs.
    async fn approval_page(&self, port: u16) -> approval_page::ServerHandle {
        let callback = ApprovalCallback::from_vars(&self.config, &self.vars).expect("approval callback settings");
        approval_page::start(port, callback).await.expect("serve the approval page")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_follows_the_emailed_link_in_chromium_during_a_full_run() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let w = workflow_with(120, &base).await;
    let _server = w.approval_page(port).await;
    let dev = by_name(&w, "dev-raj-sandbox");
    let input = serde_json::json!({
        "entry": "single-instance", "mode": "act", "regions": ["ap-southeast-2"], "lookbackDays": 14,
        "instanceId": dev.instance_id, "requestedAction": "snapshot_and_stop", "requestedBy": "agent", "justification": "idle"
    });
    let execution = w.env.start_with("browser-run", &input).await;
    let email = w.env.plumbing.next_email().await;
    let offers = finops_testkit::mail::offers(&email);
    assert_eq!(offers.len(), 1, "{email}");
    let approve = offers[0].approve.clone();
    assert!(approve.starts_with(&base));
    // The approval map's wait attaches its task token right after the digest went out.
    for _ in 0..100 {
        if w.env.plumbing.entered_states(&execution).await.iter().any(|s| s == "Wait For Decision") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let browser = finops_testkit::browser::Browser::start().await;
    browser.goto(&approve).await;
    browser.wait_for("Approve stopping dev-raj-sandbox").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.env.plumbing.status(&execution).await, "RUNNING", "the page alone decided nothing");
    assert_eq!(instance_state(&w, dev).await.0, "running");
    let page = browser.source().await;
    assert!(page.contains("t3.xlarge") && page.contains("per month"), "the evidence and the saving are on the page");
    // The lookback as a picture, as Chromium renders it: 14 days of each series and the rule's limits.
    assert_eq!(page.matches("<svg").count(), 2, "the chart is on the page");
    assert!(page.matches("class=\"day\"").count() + page.matches("class=\"no-data\"").count() >= 28, "{page}");
    // Who decides is the link's recipient, named on the page; nothing to type, and no link to another decision.
    assert!(page.contains(&format!("<strong id=\"decider\">{APPROVER}</strong>")), "{page}");
    assert!(!page.contains("id=\"approver\"") && !page.contains("<a "), "{page}");
    browser.click("#approve").await;
    browser.wait_for("Decision recorded").await;
    let (status, states, _) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Stop Instance".to_string()), "{states:?}");
    assert_eq!(instance_state(&w, dev).await.0, "stopped");
    // Back and reload: the page now says it was decided, with a 4xx, and nothing more happens.
    browser.goto(&approve).await;
    browser.wait_for("Already decided").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_slack_click_approves_an_instance_and_its_message_and_its_owner_hear_the_outcome() {
    use finops_testkit::slack::{click_payload, post_signed, LocalSlack, SIGNING_SECRET};
    let slack = LocalSlack::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let settings = [
        ("FINOPS_SLACK_SECRET_ID", "finops/slack"),
        ("FINOPS_SLACK_CHANNEL", "C0FINOPS"),
        ("FINOPS_SLACK_API_URL", slack.api_url.as_str()),
        ("FINOPS_SLACK_APPROVERS", "U0RAJ"),
        ("FINOPS_OWNER_NOTICES_FROM", "finops@example.com"),
    ];
    let w = deployment_with(120, &base, 10, "act", &settings).await;
    // Owner notices come from an address SES has verified (moto refuses any other sender, as SES does).
    let ses = finops_testkit::aws_sdk_sesv2::Client::new(&w.config);
    ses.create_email_identity().email_identity("finops@example.com").send().await.expect("verified sender");
    // The app's secret, as the functions' settings above name it.
    let deployed = slack.deploy(&w.config, "finops/slack", "C0FINOPS", &["U0RAJ"]).await;
    assert!(deployed.iter().all(|(k, v)| settings.iter().any(|(n, s)| n == k && s == v)), "{deployed:?}");
    let _server = w.approval_page(port).await;
    let dev = by_name(&w, "dev-raj-sandbox");
    let input = serde_json::json!({
        "entry": "single-instance", "mode": "act", "regions": ["ap-southeast-2"], "lookbackDays": 14,
        "instanceId": dev.instance_id, "requestedAction": "snapshot_and_stop", "requestedBy": "agent", "justification": "idle"
    });
    let execution = w.env.start_with("slack-run", &input).await;
    let email = w.env.plumbing.next_email().await;
    let (channel, ts, message) =
        slack.wait_for_message(&dev.instance_id, Duration::from_secs(30)).await.expect("asked in Slack");
    assert_eq!(channel, "C0FINOPS");
    assert!(message.to_string().contains("dev-raj-sandbox") && message.to_string().contains("/month"));

    // Someone replays a click signed six minutes ago, and someone else posts one signed with another secret: both
    // refused before anything is read.
    let interactions = format!("{base}/slack/interactions");
    let click = click_payload(&channel, &ts, &message, "approve", "U0RAJ");
    let now = Utc::now().timestamp();
    assert_eq!(post_signed(&interactions, &click, SIGNING_SECRET, now - 360).await.0, 401);
    assert_eq!(post_signed(&interactions, &click, "not-the-apps-secret-0123456789", now).await.0, 401);
    // Finding 6: any channel member decided. A member the deployment does not name, and a click on a message ts
    // that is not the ask's, are refused (and told so); nothing changes.
    let mallory = click_payload(&channel, &ts, &message, "approve", "U0MALLORY");
    assert_eq!(post_signed(&interactions, &mallory, SIGNING_SECRET, now).await.0, 403);
    assert!(slack.notes().iter().any(|n| n.contains("not one of the approvers")), "{:?}", slack.notes());
    let elsewhere = click_payload(&channel, "1700000000.999999", &message, "approve", "U0RAJ");
    assert_eq!(post_signed(&interactions, &elsewhere, SIGNING_SECRET, now).await.0, 403);
    assert_eq!(w.env.plumbing.status(&execution).await, "RUNNING");

    // Raj clicks Approve in the channel.
    let clicked = std::time::Instant::now();
    let (status, body) = post_signed(&interactions, &click, SIGNING_SECRET, Utc::now().timestamp()).await;
    let answered_in = clicked.elapsed();
    assert_eq!(status, 200, "{body}");
    eprintln!("the Slack click was answered in {} ms (Slack waits 3,000)", answered_in.as_millis());
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"Stop Instance".to_string()), "{states:?}");
    let (state, tags) = instance_state(&w, dev).await;
    assert_eq!(state, "stopped");
    assert_eq!(tags.get("finops:approved-by").map(String::as_str), Some("slack:U0RAJ/u0raj"), "{tags:?}");
    let outcome = &output["outcomes"][0];
    assert_eq!((outcome["operation"].as_str(), outcome["outcome"].as_str()), (Some("stop"), Some("done")), "{outcome}");

    // The email's link now says it was decided in Slack; the message says who and what came of it, buttons gone.
    let offer = finops_testkit::mail::offers(&email).pop().expect("the digest's one proposal");
    let approve = offer.approve.as_str();
    let (path, query) = approve.strip_prefix(base.as_str()).unwrap().split_once('?').unwrap();
    let records = finops_approval_store::DynamoApprovals::new(&w.config, TABLE);
    let key = finops_approval_store::SecretsManagerKey::new(&w.config, SECRET);
    let callback = finops_approval_store::SfnCallback::new(&w.config);
    let request = finops_approval_callback::HttpRequest {
        method: "GET",
        path,
        query,
        body: b"",
        source_ip: None,
        headers: Vec::new(),
    };
    let page = finops_approval_callback::handle(request, &records, &key, &callback, Utc::now()).await;
    assert_eq!(page.status, 409);
    assert!(page.body.contains("approve by slack:U0RAJ/u0raj"), "{}", page.body);
    let told = slack.messages().into_iter().find(|(c, t, _)| *c == channel && *t == ts).unwrap().2.to_string();
    assert!(
        told.contains("approve by slack:U0RAJ/u0raj") && told.contains("Outcome: snapshotted and stopped"),
        "{told}"
    );
    assert!(!told.contains("\"actions\""), "no buttons left: {told}");
    // The same click again: nothing changes, and only the clicker is told why.
    let (status, _) = post_signed(&interactions, &click, SIGNING_SECRET, Utc::now().timestamp()).await;
    assert_eq!(status, 200);
    assert!(slack.notes().iter().any(|n| n.starts_with("Already decided")), "{:?}", slack.notes());
    // Every Web API call carried the bot token from Secrets Manager.
    assert!(slack.state.lock().unwrap().calls.iter().all(|(_, authorised)| *authorised));

    // Its owner (Owner tag raj@example.com) heard of the proposal with the Snooze link only, then of the outcome.
    let moto_port: u16 = w.config.endpoint_url().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let to_raj: Vec<_> =
        finops_testkit::moto::ses_sent(moto_port).await.into_iter().filter(|m| m.to == ["raj@example.com"]).collect();
    assert_eq!(to_raj.len(), 2, "{to_raj:?}");
    assert!(to_raj.iter().all(|m| m.source == "finops@example.com"));
    // The owner's link is their own kind (an owner's keep-it, signed for them), never an approver's link.
    let keep = finops_testkit::mail::keep_links(&to_raj[0].body);
    assert_eq!(keep.len(), 1, "{:?}", to_raj[0]);
    assert!(keep[0].1.contains("action=owner-snooze&to=raj%40example.com"), "{keep:?}");
    assert!(to_raj[0].subject.contains("may be stopped"), "{:?}", to_raj[0]);
    assert!(!to_raj[0].body.contains(&offer.snooze) && !to_raj[0].body.contains(approve), "{:?}", to_raj[0]);
    assert!(!to_raj[0].body.contains("action=approve") && !to_raj[0].body.contains("action=snooze&"));
    assert!(
        to_raj[1].body.contains("approve by slack:U0RAJ/u0raj") && to_raj[1].body.contains("snapshotted and stopped"),
        "{:?}",
        to_raj[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recommend_deployment_asks_nobody_even_when_the_run_says_act() {
    let w = deployment(60, "http://127.0.0.1:9", 10, "recommend").await;
    let execution = w.start("run-says-act", "act").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"Recommend Only".to_string()), "{states:?}");
    assert!(!states.iter().any(|s| s == "Ask Approvers" || s == "Await Decisions And Act"), "{states:?}");
    assert_eq!(output["mode"], "recommend");
    assert!(output["policy"]["proposalCount"].as_u64().unwrap() > 0, "there was something to propose");
    assert!(w.env.plumbing.try_next_email().await.is_none(), "no approval email");
    assert!(w.report().await.contains("(recommend mode)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_digest_asks_for_every_proposal_at_once_and_twelve_unanswered_end_in_no_action() {
    let timeout = 6;
    let w = deployment(timeout, "http://127.0.0.1:9", 12, "act").await;
    // Two more idle dev boxes: 12 proposals with the sample fleet's 10.
    let ec2 = aws_sdk_ec2::Client::new(&w.config);
    let image = linux_image_id(&ec2).await;
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    for name in ["dev-extra-1", "dev-extra-2"] {
        let id =
            launch(&ec2, &image, &InstanceSpec::new(name, "t3.large").tag("Environment", "dev"), 1).await.remove(0);
        put_daily_metrics(&aws_sdk_cloudwatch::Client::new(&w.config), &id, &window, |_| Some(DayProfile::idle()))
            .await;
    }
    let execution = w.start("run-twelve", "act").await;
    // When the first approval times out, every one of the twelve must already have been waited for.
    let asked_when_first_timed_out = loop {
        let states = w.env.plumbing.entered_states(&execution).await;
        if states.iter().any(|s| s == "No Answer, No Action") {
            break states.iter().filter(|s| *s == "Wait For Decision").count();
        }
        assert_eq!(w.env.plumbing.status(&execution).await, "RUNNING", "{states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(asked_when_first_timed_out, 12, "every approval was requested at the start of the window");
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    let outcomes = output["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 12);
    assert!(outcomes.iter().all(|o| o["outcome"] == "no_answer"), "{outcomes:?}");
    // One message for the approver, with every proposal: approvers get one mail a run, whatever the fleet.
    let mut emails = Vec::new();
    while let Some(email) = w.env.plumbing.try_next_email().await {
        emails.push(email);
    }
    assert_eq!(emails.len(), 1, "one digest per approver per run");
    assert_eq!(finops_testkit::mail::offers(&emails[0]).len(), 12, "{}", emails[0]);
    let report = w.report().await;
    assert!(report.contains("Proposed: 12") && report.contains("no_answer"), "{report}");
    let ledger = w.ledger("run-twelve").await;
    assert_eq!(ledger["proposalCount"].as_n().unwrap(), "12");
    assert_eq!(ledger["outcomes"].as_s().unwrap().matches("no_answer").count(), 12);
    for i in &w.fleet {
        assert_eq!(instance_state(&w, i).await.0, "running", "{}", i.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actions_function_invoked_by_hand_stops_nothing() {
    let w = workflow(60).await;
    let dev = by_name(&w, "dev-ana-workstation");
    let proposal = serde_json::json!({
        "instanceId": dev.instance_id, "region": dev.region, "instanceType": "t3.large", "action": "snapshot-and-stop",
        "launchTime": "2026-01-01T00:00:00Z", "measuredUntil": "2026-11-28T00:00:00Z"
    });
    let forged = serde_json::json!({"decision": "approve", "approver": "mallory", "approvalId": "0123456789abcdef0123456789abcdef"});
    for event in [
        serde_json::json!({"operation": "snapshot", "runId": "run-forged", "proposal": proposal}),
        serde_json::json!({"operation": "snapshot", "runId": "run-forged", "proposal": proposal, "decision": forged}),
        serde_json::json!({"operation": "stop", "runId": "run-forged", "proposal": proposal, "snapshotIds": []}),
        serde_json::json!({"operation": "stop", "runId": "run-forged", "proposal": proposal, "snapshotIds": [], "decision": {"decision": "approve"}}),
        serde_json::json!({"operation": "stop", "runId": "run-forged", "proposal": proposal, "snapshotIds": [], "decision": forged}),
    ] {
        let out = w.functions.invoke("finops-actions", event.clone()).await.expect("a refusal, not an error");
        assert_eq!(out["outcome"], "refused", "{event}: {out}");
    }
    assert_eq!(instance_state(&w, dev).await.0, "running");
    let snaps = ec2_snapshots(&w, dev).await;
    assert_eq!(snaps, 0, "nothing snapshotted");
}

async fn ec2_snapshots(w: &Workflow, i: &SeededInstance) -> usize {
    let config = sdk_config(w.config.endpoint_url().unwrap(), &i.region).await;
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag:finops:instance-id").values(&i.instance_id).build();
    aws_sdk_ec2::Client::new(&config)
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter)
        .send()
        .await
        .unwrap()
        .snapshots()
        .len()
}

/// The stop step fails through all its retries: the read-only check after it says what happened, and the outcome
/// carries that, never "nothing stopped" by assumption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_keeps_failing_is_followed_by_a_check_that_says_what_happened() {
    let w = workflow(60).await;
    w.functions.failing.lock().unwrap().insert("finops-actions:stop".into());
    let dev = by_name(&w, "qa-perf-rig");
    let input = serde_json::json!({
        "entry": "single-instance", "mode": "act", "regions": ["us-east-1"], "lookbackDays": 14,
        "instanceId": dev.instance_id, "requestedAction": "snapshot_and_stop", "requestedBy": "agent", "justification": "idle"
    });
    let execution = w.env.start_with("stop-fails", &input).await;
    answer_emails(&w, 1, |_| "approve").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}");
    assert!(states.contains(&"Confirm Stop After Failure".to_string()), "{states:?}");
    let outcome = &output["outcomes"][0];
    assert_eq!(outcome["operation"], "stop", "{outcome}");
    assert_eq!(outcome["outcome"], "failed", "{outcome}");
    assert!(outcome["detail"].as_str().unwrap().contains("the stop step failed; the instance is running"), "{outcome}");
    assert_eq!(instance_state(&w, dev).await.0, "running");
    let ledger = w.ledger("stop-fails").await;
    assert!(ledger["outcomes"].as_s().unwrap().contains("the stop step failed; the instance is running"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_enter_on_the_deny_page_denies() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let w = workflow_with(120, &base).await;
    let _server = w.approval_page(port).await;
    let dev = by_name(&w, "qa-perf-rig");
    let input = serde_json::json!({
        "entry": "single-instance", "mode": "act", "regions": ["us-east-1"], "lookbackDays": 14,
        "instanceId": dev.instance_id, "requestedAction": "snapshot_and_stop", "requestedBy": "agent", "justification": "idle"
    });
    let execution = w.env.start_with("enter-run", &input).await;
    let email = w.env.plumbing.next_email().await;
    let deny = finops_testkit::mail::offers(&email).pop().expect("the digest's one proposal").deny;
    for _ in 0..100 {
        if w.env.plumbing.entered_states(&execution).await.iter().any(|s| s == "Wait For Decision") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The page's one button is its own decision: Enter on it denies, as the person the link was sent to.
    let browser = finops_testkit::browser::Browser::start().await;
    browser.goto(&deny).await;
    browser.wait_for("Deny stopping qa-perf-rig").await;
    browser.press_enter("#deny").await;
    browser.wait_for("Decision recorded").await;
    let (status, states, output) = finished(&w, &execution).await;
    assert_eq!(status, "SUCCEEDED");
    assert!(states.contains(&"Record Denial".to_string()), "{states:?}");
    assert!(!states.iter().any(|s| s == "Snapshot Volumes" || s == "Stop Instance"), "{states:?}");
    assert_eq!(output["outcomes"][0]["outcome"], "denied", "{output}");
    assert_eq!(instance_state(&w, dev).await.0, "running");
    assert_eq!(ec2_snapshots(&w, dev).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_answers_garbage_or_is_throttled_leaves_the_rules_in_charge_and_says_so() {
    use finops_testkit::scripted_model::Behaviour;
    let w = workflow(60).await;
    for (n, behaviour) in [Behaviour::Garbage, Behaviour::Throttle].into_iter().enumerate() {
        w.env.model.set_behaviour(behaviour);
        let execution = w.start(&format!("run-model-{n}"), "recommend").await;
        let (status, states, output) = finished(&w, &execution).await;
        assert_eq!(status, "SUCCEEDED", "{behaviour:?}: {states:?}");
        let reasoning = &output["reasoning"]["output"];
        let count = reasoning["recommendationCount"].as_u64().unwrap();
        assert!(count > 0);
        assert_eq!(reasoning["fallbacks"].as_u64().unwrap(), count, "{behaviour:?}: every instance from the rules");
        let recs = reasoning["recommendations"].as_array().unwrap();
        assert!(
            recs.iter().all(|r| r["backend"].as_str().unwrap().starts_with("rules (fallback:")),
            "{behaviour:?}: {recs:?}"
        );
        assert_eq!(output["policy"]["proposalCount"], 10, "the rules still find the idle boxes");
        // The report and the ledger say so, not only the execution's output.
        let report = w.report().await;
        let said = format!("{count} of the shortlist decided by the rules instead of the model");
        assert!(report.contains(&said), "{behaviour:?}: {report}");
        let ledger = w.ledger(&format!("run-model-{n}")).await;
        assert_eq!(ledger["ruleFallbacks"].as_n().unwrap(), &count.to_string());
    }
}
