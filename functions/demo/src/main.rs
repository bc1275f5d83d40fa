//! `make demo`: the whole workflow locally on emulated AWS. Starts moto (Step Functions interpreter on, its Lambda
//! calls pointed at the local Lambda endpoint that runs the Rust handlers), creates the table, topics, secret,
//! bucket and the state machine from `statemachine/finops.asl.json`, seeds a sample fleet, starts an execution as the
//! schedule would, prints progress and each approval email, serves the approval page on localhost, and ends with the
//! run report. Stops everything it started.
#![recursion_limit = "256"]

use std::collections::HashSet;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use finops_approval_callback::ApprovalCallback;
use finops_core::LookbackWindow;
use finops_local::xray_daemon::XrayDaemon;
use finops_local::{approval_page, serve, LocalFunctions};
use finops_testkit::moto::{http, sdk_config, MotoServer};
use finops_testkit::scripted_model;
use finops_testkit::seed::{sample_fleet, sample_resources};
use finops_testkit::slack::{click_payload, post_signed, LocalSlack, SIGNING_SECRET};
use finops_testkit::workflow::{set_var, WorkflowEnv, WorkflowTimings, RUN_BUCKET};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "finops-demo", about = "Run the finops-agent workflow locally against emulated AWS (moto).")]
struct Args {
    /// Use this running moto instead of starting one. Its MOTO_PORT must be --lambda-port (moto's Step Functions
    /// interpreter sends Lambda calls to localhost:$MOTO_PORT).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Port of the local Lambda endpoint (default: a free port; required with --endpoint-url).
    #[arg(long)]
    lambda_port: Option<u16>,
    /// Do not seed the sample fleet (the endpoint already holds a fleet).
    #[arg(long)]
    no_seed: bool,
    /// Answer approvals for scripts: approve, deny, or none (wait for a person; default when run in a terminal).
    #[arg(long)]
    auto: Option<String>,
    /// Port of the local approval page.
    #[arg(long, default_value_t = 8787)]
    approval_port: u16,
    /// Seconds an approval waits before the run takes the no-action path.
    #[arg(long, default_value_t = 300)]
    approval_timeout: u32,
    /// Mode of the run: act (ask approvers, then act) or recommend (report only).
    #[arg(long, default_value = "act")]
    mode: String,
    /// Write the run report as JSON to this file.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Regions to scan.
    #[arg(long, default_value = "ap-southeast-2,us-east-1")]
    regions: String,
    /// The reasoning backend: converse (the deployment's default, here against a scripted local model that speaks
    /// Bedrock's Converse protocol) or rules (no model).
    #[arg(long, default_value = "converse", value_parser = ["converse", "rules"])]
    reasoner: String,
    /// Accounts of the run: 1 (this account only), or 2 to 6 for an AWS Organization on moto: the hub with the
    /// sample fleet, and members (each with its own fleet and a production trap, in every region) scanned by the
    /// Distributed Map through their read-only role, approvals routed to two approver groups, a report per account.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=6))]
    accounts: u8,
}

/// The members' names, in the order they are created.
const MEMBER_NAMES: [&str; 5] = ["data-dev", "web-staging", "ml-sandbox", "analytics", "batch"];
/// The two approver groups of an organization demo: the workloads OU's accounts, and everyone else (the hub).
const WORKLOADS_APPROVERS: &str = "workloads@example.com";
const PLATFORM_APPROVERS: &str = "platform@example.com";
/// The approvers of the single-account demo: each gets one digest a run, with links signed for them. The scripted
/// answers are the first one's.
const DEMO_APPROVERS: [&str; 2] = [finops_testkit::workflow::APPROVER, "finops-lead@example.com"];
/// The approvers' Slack channel of the single-account demo, and who may click there.
const DEMO_SLACK_CHANNEL: &str = "C0FINOPSDEMO";
const DEMO_SLACK_USER: &str = "U0DEMO";

/// The organization the demo builds: the members' ids and names, and the approver groups' mailboxes.
struct DemoOrganization {
    members: Vec<(String, &'static str)>,
    workloads_ou: String,
    /// (address, mailbox queue URL)
    mailboxes: Vec<(&'static str, String)>,
}

/// Everything the approvers' mailboxes received, as (recipient, message).
async fn read_mail(env: &WorkflowEnv, mailboxes: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut mail = Vec::new();
    for (address, mailbox) in mailboxes {
        for message in env.plumbing.drain(mailbox, Duration::ZERO).await {
            mail.push((*address, message));
        }
    }
    mail
}

fn say(line: impl AsRef<str>) {
    eprintln!("demo: {}", line.as_ref());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let auto =
        args.auto
            .clone()
            .unwrap_or_else(|| if std::io::stdin().is_terminal() { "none".into() } else { "approve".into() });
    if !["approve", "deny", "none"].contains(&auto.as_str()) {
        eprintln!("finops-demo: --auto must be approve, deny or none");
        std::process::exit(2);
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.lambda_port.unwrap_or(0)))
        .await
        .expect("bind the Lambda endpoint");
    let lambda_port = listener.local_addr().unwrap().port();
    let (moto, endpoint) = match &args.endpoint_url {
        Some(url) => {
            if args.lambda_port.is_none() {
                eprintln!("finops-demo: --endpoint-url needs --lambda-port, the MOTO_PORT that moto was started with");
                std::process::exit(2);
            }
            (None, url.trim_end_matches('/').to_owned())
        }
        None => {
            say("starting moto (emulated AWS) on 127.0.0.1 ...");
            let server = MotoServer::start_with_env(&[("MOTO_PORT", lambda_port.to_string())]).await;
            let endpoint = server.endpoint.clone();
            say(format!("moto is up at {endpoint}; its Lambda calls go to the local endpoint on port {lambda_port}"));
            (Some(server), endpoint)
        }
    };
    let moto_port: u16 = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("endpoint port");
    let config = sdk_config(&endpoint, "ap-southeast-2").await;
    let timings = WorkflowTimings {
        approval_timeout_seconds: args.approval_timeout,
        snapshot_poll_seconds: 2,
        max_snapshot_checks: 30,
        // Every proposal fits: the sample fleet's 10 instances, its unattached volume and spare Elastic IP, and in the
        // organization demo each member region's instance and volume.
        max_proposals: if args.accounts > 1 { 30 } else { 12 },
        deployment_mode: "act",
        fan_out: args.accounts > 1,
    };
    let env = WorkflowEnv::create(moto_port, &config, &timings).await;
    say(format!(
        "created the run bucket, approval table, ledger, topics, signing secret and the state machine {}",
        env.state_machine_arn
    ));

    let base_url = format!("http://127.0.0.1:{}", args.approval_port);
    let regions: Vec<&str> = args.regions.split(',').map(str::trim).collect();
    let organization = match args.accounts {
        1 => None,
        n => Some(build_organization(&config, &env, usize::from(n) - 1, &regions, !args.no_seed).await),
    };
    // The functions' environment, as the CDK app sets it: every step is built from it by the Lambdas' constructors.
    let mut vars = env.function_vars(&base_url);
    // Each approver's mailbox: a queue subscribed with the filter policy the CDK app gives their address.
    let mailboxes: Vec<(&'static str, String)> = match &organization {
        Some(org) => org.mailboxes.clone(),
        None => {
            set_var(&mut vars, "FINOPS_APPROVERS", &DEMO_APPROVERS.join(","));
            let sns = finops_testkit::aws_sdk_sns::Client::new(&config);
            let mut mailboxes = Vec::new();
            for address in DEMO_APPROVERS {
                mailboxes.push((address, env.plumbing.subscribe_approver(&sns, address).await));
            }
            say(format!(
                "approvers: {} (each gets one digest a run, with links of their own)",
                DEMO_APPROVERS.join(", ")
            ));
            mailboxes
        }
    };
    if let Some(org) = &organization {
        let routing = json!({
            "routes": [{"ou": org.workloads_ou, "approvers": [WORKLOADS_APPROVERS]}],
            "default": [PLATFORM_APPROVERS]
        });
        set_var(&mut vars, "FINOPS_APPROVAL_ROUTING", &routing.to_string());
        say(format!(
            "approvals routed: the workloads OU ({}) -> {WORKLOADS_APPROVERS}; everything else -> {PLATFORM_APPROVERS}",
            org.workloads_ou
        ));
    }
    set_var(&mut vars, "FINOPS_REASONER", &args.reasoner);
    // Slack, played locally: the approvers' channel gets every approval as a message with buttons (and, where the
    // demo answers by script, one approval is decided there by a signed click, by the one Slack user the deployment
    // names, instead of the email's link).
    let slack = match organization {
        None => {
            let slack = LocalSlack::start().await;
            for (name, value) in slack.deploy(&config, "finops/slack", DEMO_SLACK_CHANNEL, &[DEMO_SLACK_USER]).await {
                set_var(&mut vars, &name, &value);
            }
            say(format!(
                "Slack (played locally at {}): approvals also go to channel {DEMO_SLACK_CHANNEL}",
                slack.api_url
            ));
            Some(slack)
        }
        Some(_) => None,
    };
    // The audit trail: the functions send their X-Ray segments to a local daemon, as Lambda's would.
    let xray = XrayDaemon::start().await.expect("the local X-Ray daemon");
    set_var(&mut vars, "AWS_XRAY_DAEMON_ADDRESS", &xray.addr().to_string());
    say(format!("X-Ray daemon (a local UDP listener) at {}: decisions are traced per execution", xray.addr()));
    let functions = match LocalFunctions::new(&config, &vars) {
        Ok(f) => Arc::new(f),
        Err(e) => {
            eprintln!("finops-demo: {e}");
            std::process::exit(2);
        }
    };
    match args.reasoner.as_str() {
        "converse" => say(format!(
            "reasoning: Bedrock Converse with tool use, answered by a {} at {}",
            scripted_model::LABEL,
            env.model.endpoint
        )),
        _ => say("reasoning: the deterministic rules backend (no model)"),
    }
    tokio::spawn(serve(listener, functions.clone(), ([127, 0, 0, 1], moto_port).into()));
    let callback = ApprovalCallback::from_vars(&config, &vars).expect("approval callback settings");
    let approval_page = approval_page::start(args.approval_port, callback).await.unwrap_or_else(|e| {
        eprintln!("finops-demo: cannot serve the approval page on port {}: {e}", args.approval_port);
        std::process::exit(2);
    });
    say(format!("approval page served at {base_url}/approvals/..."));

    if !args.no_seed {
        let use1 = sdk_config(&endpoint, "us-east-1").await;
        let window = LookbackWindow::ending_before(chrono::Utc::now(), 14);
        let fleet = sample_fleet(&config, &use1, &window).await;
        say(format!("seeded {} instances with 14 days of CloudWatch metrics:", fleet.len()));
        for i in &fleet {
            eprintln!("    {:<20} {:<15} {:<42} {}", i.instance_id, i.region, truncate(&i.name, 40), i.role);
        }
        let resources = sample_resources(&config, &use1, &window).await;
        say(format!(
            "seeded {} other resources (unattached EBS volumes, Elastic IPs, stopped instances, NAT gateways, load \
             balancers):",
            resources.len()
        ));
        for r in &resources {
            eprintln!("    {:<26} {:<15} {:<36} {}", r.instance_id, r.region, truncate(&r.name, 34), r.role);
        }
    }

    let run_id = format!("demo-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
    let execution = env.start(&run_id, &regions, &args.mode).await;
    say(format!("started execution {run_id} ({} mode) as the schedule would: {{\"regions\": {regions:?}, \"mode\": \"{}\", \"lookbackDays\": 14}}", args.mode, args.mode));
    if auto == "none" && args.mode == "act" {
        say(format!(
            "open the approve links below in a browser; unanswered approvals time out after {} s (no action)",
            args.approval_timeout
        ));
    }

    let mut shown = 0usize;
    // Scripted answers the page refused (an approval asked of another group, say): the demo fails.
    let mut refused: Vec<String> = Vec::new();
    // The approval decided in Slack: its message (channel, ts) and how long the callback took to answer the click.
    let mut slack_click: Option<(String, String, u128)> = None;
    // Digests received, by recipient; approvals answered (by approval id); answers waiting for the workflow to wait.
    let mut digests: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut answered: HashSet<String> = HashSet::new();
    let mut waiting: Vec<(&str, finops_testkit::mail::Offer)> = Vec::new();
    // The undo offers that arrive before the run ends (Offer Undo comes before the report): read after it.
    let mut undo_mail: Vec<(&str, String)> = Vec::new();
    let (status, output) = loop {
        let history = env.plumbing.sfn.get_execution_history().execution_arn(&execution).send().await.expect("history");
        let entered: Vec<String> = history
            .events()
            .iter()
            .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
            .collect();
        for name in entered.iter().skip(shown) {
            eprintln!("  -> {name}");
        }
        shown = entered.len();
        for (approver, digest) in read_mail(&env, &mailboxes).await {
            if !finops_testkit::mail::undo_offers(&digest).is_empty() {
                undo_mail.push((approver, digest));
                continue;
            }
            println!("\n----- the run's digest for {approver} -----\n{digest}--------------------------");
            *digests.entry(approver).or_default() += 1;
            // Each approval is answered once, by the first of its approvers whose digest arrives (in the
            // single-account demo, the first approver: the second one's digest is shown, not answered).
            for offer in finops_testkit::mail::offers(&digest) {
                if answered.insert(offer.approval_id.clone()) {
                    waiting.push((approver, offer));
                }
            }
        }
        let mut still_waiting = Vec::new();
        for (approver, offer) in waiting.drain(..) {
            // The first approval is answered in Slack instead: its message's button, clicked by the named Slack user.
            if let (Some(slack), "approve", None) = (&slack, auto.as_str(), &slack_click) {
                if let Some((channel, ts, message)) =
                    slack.wait_for_message(&offer.resource_id, Duration::from_secs(5)).await
                {
                    let click = click_payload(&channel, &ts, &message, "approve", DEMO_SLACK_USER);
                    let clicked = Instant::now();
                    let url = format!("{base_url}/slack/interactions");
                    let (status, body) =
                        post_signed(&url, &click, SIGNING_SECRET, chrono::Utc::now().timestamp()).await;
                    let took = clicked.elapsed().as_millis();
                    if status == 200 && body.contains("not waiting for this yet") {
                        still_waiting.push((approver, offer));
                        continue;
                    }
                    say(format!(
                        "slack: {DEMO_SLACK_USER} clicked Approve in {channel} (a signed interaction) -> HTTP {status} in {took} ms"
                    ));
                    if status != 200 {
                        refused.push(format!("the Slack click -> HTTP {status}"));
                    }
                    slack_click = Some((channel, ts, took));
                    continue;
                }
            }
            if auto == "none" {
                continue;
            }
            let url = if auto == "approve" { &offer.approve } else { &offer.deny };
            let path = finops_testkit::mail::path_and_query(url);
            let (status, _) =
                http(args.approval_port, "POST", path, &format!("decision={auto}")).await.expect("approval page");
            match status {
                // The approval map's wait had not attached its task token yet: the same link, a moment later.
                503 => still_waiting.push((approver, offer)),
                200 => say(format!("--auto {auto}: {approver} decided {} -> HTTP 200", offer.resource_id)),
                other => refused.push(format!("{approver}: POST {path} -> HTTP {other}")),
            }
        }
        waiting = still_waiting;
        let d = env.plumbing.sfn.describe_execution().execution_arn(&execution).send().await.expect("describe");
        if d.status().as_str() != "RUNNING" {
            let output: Value = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
            break (d.status().as_str().to_owned(), output);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    };
    say(format!(
        "digests: {} (one per approver: {})",
        digests.values().sum::<usize>(),
        digests.iter().map(|(a, n)| format!("{a} {n}")).collect::<Vec<_>>().join(", ")
    ));
    if args.mode == "act" && digests.values().any(|n| *n != 1) {
        refused.push(format!("an approver got other than one digest: {digests:?}"));
    }

    let mut report = run_report(&run_id, &execution, &status, &output);
    report["digests"] = json!(digests);
    if let Some(slack) = &slack {
        let messages = slack.messages();
        let clicked = slack_click.as_ref().and_then(|(c, t, _)| messages.iter().find(|(mc, mt, _)| mc == c && mt == t));
        let told = clicked.map(|(_, _, m)| m["text"].as_str().unwrap_or_default().to_owned());
        if let Some(told) = &told {
            say(format!("slack: the clicked message now reads: {told}"));
        }
        if auto == "approve"
            && status == "SUCCEEDED"
            && !told.as_deref().is_some_and(|t| ["snapshotted and", "released"].iter().any(|done| t.contains(done)))
        {
            refused.push(format!("the Slack message was not updated with the outcome: {told:?}"));
        }
        report["slack"] = json!({
            "channel": DEMO_SLACK_CHANNEL,
            "messagesPosted": messages.len(),
            "decidedInSlackBy": slack_click.as_ref().map(|_| DEMO_SLACK_USER),
            "clickAnsweredInMs": slack_click.as_ref().map(|(_, _, ms)| *ms),
            "clickedMessageNow": told,
        });
    }
    if let Some(org) = &organization {
        report["accounts"] = per_account(&output, &config, org).await;
    }
    // Why each instance was denied: the policy step stores every denial with the run.
    if let Ok(location) = serde_json::from_value::<finops_core::ObjectRef>(output["policy"]["policy"].clone()) {
        let store = finops_aws::S3RunStore::new(&config, RUN_BUCKET);
        if let Ok(document) = finops_aws::get_json::<_, Value>(&store, &location).await {
            report["denials"] = document["denials"].clone();
        }
    }
    // UDP is not awaited: give the last datagrams a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let trail = xray.trail(&run_id);
    report["auditTrail"] = json!({
        "xrayTraceIds": trail.trace_ids,
        "functionSegments": trail.function_segments,
        "decisionSubsegments": trail.decisions.values().map(Vec::len).sum::<usize>(),
        "decisions": trail.decisions.iter().map(|(resource, chain)| {
            let lines: Vec<String> = chain
                .iter()
                .map(|d| format!("{} ({}): {} [agent {}, run {}]", d.step, d.function.as_deref().unwrap_or("?"), d.decision, d.agent, d.run_id))
                .collect();
            (resource.clone(), json!(lines))
        }).collect::<serde_json::Map<String, Value>>(),
    });
    println!("\n===== run report =====\n{}", serde_json::to_string_pretty(&report).unwrap());
    if let Some(summary) = env.next_report(Duration::from_secs(5)).await {
        println!("\n----- report published to SNS -----\n{}", summary.replace(" | ", "\n"));
    }
    // One-click undo: each approver was mailed their own links (Start it again, Recreate from snapshot); the run's
    // report says only how many. The demo's approver changes their mind about one stopped instance and the deleted
    // volume: the page, its button, then the undo execution.
    if args.mode == "act" && auto == "approve" && status == "SUCCEEDED" {
        let mut offers: Vec<(&str, finops_testkit::mail::UndoOffer)> = Vec::new();
        undo_mail.extend(read_mail(&env, &mailboxes).await);
        for (approver, message) in undo_mail {
            println!("\n----- the run's undo offer for {approver} -----\n{message}--------------------------");
            offers.extend(finops_testkit::mail::undo_offers(&message).into_iter().map(|o| (approver, o)));
        }
        let account_of = |resource: &str| {
            output["policy"]["proposals"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["resourceId"] == resource)
                .and_then(|p| p["account"]["id"].as_str())
                .map(str::to_owned)
        };
        // A member account's, where there is one (the undo then acts through that member's actions role); the
        // scripted approver's own links (each approver has their own).
        let first = |prefix: &str| {
            let kind = |(who, o): &&(&str, finops_testkit::mail::UndoOffer)| {
                o.resource_id.starts_with(prefix) && (organization.is_some() || *who == DEMO_APPROVERS[0])
            };
            let in_member = |(_, o): &&(&str, finops_testkit::mail::UndoOffer)| {
                let account = account_of(&o.resource_id).unwrap_or_default();
                organization.as_ref().is_some_and(|org| org.members.iter().any(|(m, _)| *m == account))
            };
            offers.iter().filter(kind).find(in_member).or_else(|| offers.iter().find(kind)).cloned()
        };
        let (instance, volume) = (first("i-"), first("vol-"));
        let mut undone = Vec::new();
        for (approver, link) in [instance, volume].into_iter().flatten() {
            let resource = link.resource_id.as_str();
            let (page, execution) = env.follow_undo_link(args.approval_port, &link.url).await;
            let account = account_of(resource).map_or_else(String::new, |a| format!(" in account {a}"));
            say(format!("undo: {}{account}, by {approver}'s link: POST -> HTTP {page}", link.label));
            let Some((undo_status, undo_output)) = execution else {
                refused.push(format!("undo of {resource}: the page answered HTTP {page}"));
                continue;
            };
            let outcome = &undo_output["undone"];
            say(format!(
                "undo of {resource}: execution {undo_status}, {}: {}",
                outcome["outcome"].as_str().unwrap_or("?"),
                outcome["detail"].as_str().unwrap_or("?")
            ));
            if undo_status != "SUCCEEDED" || outcome["outcome"] != "done" {
                refused.push(format!("undo of {resource}: {undo_status} {outcome} {}", undo_output["undoError"]));
            }
            undone.push(json!({"resourceId": resource, "label": link.label, "by": approver, "status": undo_status, "undone": outcome}));
        }
        if offers.is_empty() {
            refused.push("the run offered no undo link".into());
        }
        report["undoOffered"] = output["undo"].clone();
        report["undoLinksMailed"] = json!(offers.len());
        report["undone"] = json!(undone);
    }
    // The next scheduled run proves what this one did: every stop, deletion and release checked against the live
    // resources (a recommend run, so it asks nobody).
    if args.mode == "act" && status == "SUCCEEDED" {
        let next_run = format!("{run_id}-next");
        let next = env.start(&next_run, &regions, "recommend").await;
        say(format!("started {next_run} (recommend mode), as the next schedule would: it proves what {run_id} did"));
        let proven = loop {
            let d = env.plumbing.sfn.describe_execution().execution_arn(&next).send().await.expect("describe");
            if d.status().as_str() != "RUNNING" {
                let output: Value = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
                break output["savings"]["output"].clone();
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        };
        say(format!("{next_run}: realized savings: {}", proven["summary"].as_str().unwrap_or("(not checked)")));
        report["nextRunRealizedSavings"] = proven;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report).unwrap()).expect("write report");
        say(format!("report written to {}", path.display()));
    }
    say(format!(
        "execution history: aws stepfunctions get-execution-history --endpoint-url {endpoint} --region ap-southeast-2 --execution-arn {execution}"
    ));
    drop(approval_page);
    drop(moto);
    say(format!("finished in {:.1} s; every process the demo started is stopped.", started.elapsed().as_secs_f64()));
    if !refused.is_empty() {
        eprintln!("finops-demo: scripted answers or undos did not go through:\n  {}", refused.join("\n  "));
        std::process::exit(1);
    }
    if status != "SUCCEEDED" {
        std::process::exit(1);
    }
}

/// What was found, proposed, approved, snapshotted, stopped and denied, from the execution's output (one outcome
/// record per proposal: decision, outcome, detail, snapshots).
fn run_report(run_id: &str, execution: &str, status: &str, output: &Value) -> Value {
    let outcomes = output["outcomes"].as_array().cloned().unwrap_or_default();
    let proposals = output["policy"]["proposals"].as_array().cloned().unwrap_or_default();
    let saving_of = |id: &Value| -> f64 {
        proposals.iter().find(|p| p["resourceId"] == *id).and_then(|p| p["monthlySavingUsd"].as_f64()).unwrap_or(0.0)
    };
    let stopped: Vec<&Value> = outcomes
        .iter()
        .filter(|o| o["operation"] == "stop" && matches!(o["outcome"].as_str(), Some("done" | "already_done")))
        .collect();
    let saving: f64 = stopped.iter().map(|o| saving_of(&o["resourceId"])).sum();
    // Unattached volumes deleted (their snapshots kept) and Elastic IPs released.
    let cleaned: Vec<&Value> = outcomes
        .iter()
        .filter(|o| {
            matches!(o["operation"].as_str(), Some("delete_volume" | "release_address"))
                && matches!(o["outcome"].as_str(), Some("done" | "already_done"))
        })
        .collect();
    let cleaned_saving: f64 = cleaned.iter().map(|o| saving_of(&o["resourceId"])).sum();
    let not_acted: Vec<Value> = outcomes
        .iter()
        .filter(|o| o["decision"] == "approve" && !stopped.contains(o) && !cleaned.contains(o))
        .map(|o| json!({"resourceId": o["resourceId"], "outcome": o["outcome"], "why": o["detail"]}))
        .collect();
    json!({
        "runId": run_id,
        "executionArn": execution,
        "status": status,
        "mode": output["mode"],
        "reasoning": {
            "backend": output["reasoning"]["output"]["backend"],
            "fallbacksToRules": output["reasoning"]["output"]["fallbacks"],
        },
        "found": output["detection"]["instanceCount"],
        "proposed": output["policy"]["proposalCount"],
        "proposedMonthlySavingUsd": output["policy"]["proposedMonthlySavingUsd"],
        "approved": outcomes.iter().filter(|o| o["decision"] == "approve").count(),
        "deniedByApprover": outcomes.iter().filter(|o| o["outcome"] == "denied").count(),
        "snoozed": outcomes.iter().filter(|o| o["decision"] == "snooze").count(),
        "unanswered": outcomes.iter().filter(|o| o["outcome"] == "no_answer").count(),
        "snapshotted": outcomes.iter().filter(|o| o["snapshotIds"].as_array().is_some_and(|a| !a.is_empty())).count(),
        "stopped": stopped.iter().map(|o| o["resourceId"].clone()).collect::<Vec<_>>(),
        "stoppedMonthlySavingUsd": (saving * 100.0).round() / 100.0,
        "cleanedUp": cleaned.iter().map(|o| json!({
            "resourceId": o["resourceId"], "operation": o["operation"], "detail": o["detail"],
            "keptSnapshots": o["snapshotIds"],
        })).collect::<Vec<_>>(),
        "cleanedUpMonthlySavingUsd": (cleaned_saving * 100.0).round() / 100.0,
        "approvedButNotActedOn": not_acted,
        "deniedByPolicy": output["policy"]["denialCounts"],
        // Unattached volumes and Elastic IPs: found, idle, what can be acted on and what the policy blocks.
        "otherResources": output["policy"]["resources"],
        "policyDocument": output["policy"]["policy"],
        // What earlier runs on this emulator did, checked against the live resources (a fresh demo has none yet).
        "realizedSavings": output["savings"]["output"],
        // What the run itself cost (the emulated run's timings are a debug build's against moto: an upper bound).
        "runCost": output["cost"]["output"],
    })
}

/// The organization on moto: the demo's hub creates it, an OU `workloads` with the members, each member gets the
/// roles the StackSet deploys and its own fleet, and each approver group a mailbox (a queue subscribed with the
/// filter policy the CDK app gives its address).
async fn build_organization(
    hub: &aws_config::SdkConfig,
    env: &WorkflowEnv,
    members: usize,
    regions: &[&str],
    seed: bool,
) -> DemoOrganization {
    use finops_core::organization::{ACTIONS_ROLE_NAME, DETECTION_ROLE_NAME};
    use finops_testkit::organization::{create_member_role, create_organization, member_admin, seed_member_fleet};
    let org = create_organization(hub).await;
    let hub_account = finops_aws::caller_account(hub).await.expect("the hub's account");
    let workloads_ou = org.create_ou("workloads").await;
    let window = LookbackWindow::ending_before(chrono::Utc::now(), 14);
    let mut created = Vec::new();
    for name in MEMBER_NAMES.iter().take(members) {
        let id = org.create_account(name, Some(&workloads_ou)).await;
        let admin = member_admin(hub, &id).await;
        // What the member StackSet deploys: the read-only detection role and the guarded actions role.
        create_member_role(&admin, DETECTION_ROLE_NAME, &hub_account).await;
        create_member_role(&admin, ACTIONS_ROLE_NAME, &hub_account).await;
        say(format!("member account {name} ({id}) in OU workloads, with the roles {DETECTION_ROLE_NAME} and {ACTIONS_ROLE_NAME}"));
        if seed {
            for i in seed_member_fleet(&admin, name, regions, &window).await {
                eprintln!("    {:<20} {:<15} {:<42} {}", i.instance_id, i.region, truncate(&i.name, 40), i.role);
            }
        }
        created.push((id, *name));
    }
    let sns = finops_testkit::aws_sdk_sns::Client::new(hub);
    let mut mailboxes = Vec::new();
    for address in [WORKLOADS_APPROVERS, PLATFORM_APPROVERS] {
        mailboxes.push((address, env.plumbing.subscribe_approver(&sns, address).await));
    }
    say(format!("organization on moto: the hub {hub_account} (management account) and {} members", created.len()));
    DemoOrganization { members: created, workloads_ou, mailboxes }
}

/// The run per account: what was found, proposed and stopped, and the saving, from the run's documents and output.
async fn per_account(output: &Value, config: &aws_config::SdkConfig, org: &DemoOrganization) -> Value {
    let store = finops_aws::S3RunStore::new(config, RUN_BUCKET);
    let inventory: Value =
        match serde_json::from_value::<finops_core::ObjectRef>(output["metrics"]["output"]["inventory"].clone()) {
            Ok(location) => finops_aws::get_json(&store, &location).await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
    let proposals = output["policy"]["proposals"].as_array().cloned().unwrap_or_default();
    let outcomes = output["outcomes"].as_array().cloned().unwrap_or_default();
    let account_of = |p: &Value| p["account"]["id"].as_str().map(str::to_owned);
    let mut accounts: Vec<(String, String)> = vec![];
    for i in inventory["instances"].as_array().into_iter().flatten() {
        if let (Some(id), Some(name)) = (i["account"]["id"].as_str(), i["account"]["name"].as_str()) {
            if !accounts.iter().any(|(a, _)| a == id) {
                accounts.push((id.to_owned(), name.to_owned()));
            }
        }
    }
    let mut lines = Vec::new();
    let mut table = serde_json::Map::new();
    for (id, name) in &accounts {
        let found = inventory["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["account"]["id"] == id.as_str())
            .count();
        let mine: Vec<&Value> = proposals.iter().filter(|p| account_of(p).as_deref() == Some(id)).collect();
        // Stops, and the unattached volumes deleted and addresses released.
        let acted: Vec<&Value> = outcomes
            .iter()
            .filter(|o| matches!(o["outcome"].as_str(), Some("done" | "already_done")))
            .filter(|o| mine.iter().any(|p| p["resourceId"] == o["resourceId"]))
            .collect();
        let stopped: Vec<&&Value> = acted.iter().filter(|o| o["operation"] == "stop").collect();
        let cleaned = acted.len() - stopped.len();
        let saving: f64 = mine
            .iter()
            .filter(|p| acted.iter().any(|o| o["resourceId"] == p["resourceId"]))
            .filter_map(|p| p["monthlySavingUsd"].as_f64())
            .sum();
        let approvers = if org.members.iter().any(|(m, _)| m == id) { WORKLOADS_APPROVERS } else { PLATFORM_APPROVERS };
        lines.push(format!(
            "    {name:<14} {id}  found {found:>2}  proposed {:>2}  stopped {:>2}  cleaned up {cleaned}  saving ${saving:>7.2}/month  approvers {approvers}",
            mine.len(),
            stopped.len()
        ));
        table.insert(
            id.clone(),
            json!({"name": name, "found": found, "proposed": mine.len(), "stopped": stopped.len(),
                   "cleanedUp": cleaned, "monthlySavingUsd": (saving * 100.0).round() / 100.0, "approvers": approvers}),
        );
    }
    say(format!(
        "per account ({}):\n{}",
        output["metrics"]["output"]["accountsSummary"].as_str().unwrap_or("?"),
        lines.join("\n")
    ));
    Value::Object(table)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
