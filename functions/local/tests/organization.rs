//! An organization run on moto: the real ASL's Distributed Map (ItemReader from S3, ResultWriter to S3) in moto's
//! interpreter, each (account, region) item scanned by the real fan-out handler through the member's read-only role
//! (STS AssumeRole switches moto's account), an account without the role reported, and the merged detection going
//! on to reasoning and policy as one run.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use finops_core::organization::{ACTIONS_ROLE_NAME, DETECTION_ROLE_NAME};
use finops_core::LookbackWindow;
use finops_local::xray_daemon::XrayDaemon;
use finops_local::{serve, LocalFunctions};
use finops_testkit::moto::{sdk_config, MotoServer};
use finops_testkit::organization::{create_member_role, create_organization, member_admin};
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::workflow::{set_var, WorkflowEnv, WorkflowTimings};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_ec2};
use serde_json::{json, Value};

const HUB: &str = "123456789012";
const REGIONS: [&str; 2] = ["ap-southeast-2", "us-east-1"];

/// Instances in the account `config` acts in, in its region, each idle or busy for the whole lookback.
async fn seed(config: &aws_config::SdkConfig, specs: &[(InstanceSpec, bool)]) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let cw = aws_sdk_cloudwatch::Client::new(config);
    let ami = linux_image_id(&ec2).await;
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    let mut ids = Vec::new();
    for (spec, idle) in specs {
        let id = launch(&ec2, &ami, spec, 1).await[0].clone();
        let profile = if *idle { DayProfile::idle() } else { DayProfile::busy() };
        put_daily_metrics(&cw, &id, &window, |_| Some(profile)).await;
        ids.push(id);
    }
    ids
}

/// A deployment over an organization on one moto: the hub (with one idle dev instance), data-dev (the StackSet's
/// roles; an idle dev instance, an idle production database, a busy one), legacy (no role; an idle instance) and a
/// closed account.
struct Organization {
    _moto: MotoServer,
    env: WorkflowEnv,
    functions: Arc<LocalFunctions>,
    hub: aws_config::SdkConfig,
    data: String,
    legacy: String,
    closed: String,
    data_ids: Vec<String>,
    legacy_ids: Vec<String>,
    hub_ids: Vec<String>,
    xray: XrayDaemon,
    /// The mailboxes of the two approver groups the routing table names: data-dev's, and everyone else's.
    data_team_mailbox: String,
    platform_mailbox: String,
}

const DATA_TEAM: &str = "data-team@example.com";
const PLATFORM: &str = "platform@example.com";

async fn organization(mode: &'static str, approval_timeout: u32, approval_base_url: &str) -> Organization {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_port = listener.local_addr().unwrap().port();
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", router_port.to_string())]).await;
    let hub = sdk_config(&moto.endpoint, REGIONS[0]).await;
    let timings = WorkflowTimings {
        approval_timeout_seconds: approval_timeout,
        snapshot_poll_seconds: 1,
        max_snapshot_checks: 5,
        max_proposals: 10,
        deployment_mode: mode,
        fan_out: true,
    };
    let env = WorkflowEnv::create(moto.port, &hub, &timings).await;

    let org = create_organization(&hub).await;
    let workloads = org.create_ou("workloads").await;
    let data = org.create_account("data-dev", Some(&workloads)).await;
    let legacy = org.create_account("legacy", Some(&workloads)).await;
    let closed = org.create_account("closed-project", None).await;
    org.close_account(&closed).await;
    let data_admin = member_admin(&hub, &data).await;
    create_member_role(&data_admin, DETECTION_ROLE_NAME, HUB).await;
    create_member_role(&data_admin, ACTIONS_ROLE_NAME, HUB).await;
    let data_ids = seed(
        &data_admin,
        &[
            (InstanceSpec::new("etl-idle", "m5.large").tag("Environment", "dev").launched_days_ago(60.0), true),
            (InstanceSpec::new("orders-db", "m5.large").tag("Environment", "production").launched_days_ago(60.0), true),
            (InstanceSpec::new("etl-busy", "m5.large").launched_days_ago(60.0), false),
        ],
    )
    .await;
    let data_ec2 = aws_sdk_ec2::Client::new(&data_admin);
    finops_testkit::seed::old_unattached_volume(&data_ec2, REGIONS[0], "data-old-volume").await;
    // legacy never got the roles (its StackSet instance failed, say), yet runs an idle instance.
    let legacy_ids = seed(
        &member_admin(&hub, &legacy).await,
        &[(InstanceSpec::new("legacy-idle", "m5.large").launched_days_ago(60.0), true)],
    )
    .await;
    let hub_ids = seed(
        &hub,
        &[(InstanceSpec::new("hub-idle", "t3.large").tag("Environment", "dev").launched_days_ago(60.0), true)],
    )
    .await;

    let xray = XrayDaemon::start().await.expect("the local X-Ray daemon");
    let mut vars = env.function_vars(approval_base_url);
    set_var(&mut vars, "AWS_XRAY_DAEMON_ADDRESS", &xray.addr().to_string());
    // Approvals routed by the account's tag in Organizations (read live by the request step): data-dev's approvers,
    // and the platform team for every other account.
    org.tag_account(&data, "team", "data").await;
    let routing =
        serde_json::json!({"routes": [{"tag": "team=data", "approvers": [DATA_TEAM]}], "default": [PLATFORM]});
    set_var(&mut vars, "FINOPS_APPROVAL_ROUTING", &routing.to_string());
    let sns = finops_testkit::aws_sdk_sns::Client::new(&hub);
    let data_team_mailbox = env.plumbing.subscribe_approver(&sns, DATA_TEAM).await;
    let platform_mailbox = env.plumbing.subscribe_approver(&sns, PLATFORM).await;
    let functions = Arc::new(LocalFunctions::new(&hub, &vars).expect("the functions' environment"));
    tokio::spawn(serve(listener, functions.clone(), ([127, 0, 0, 1], moto.port).into()));
    Organization {
        _moto: moto,
        env,
        functions,
        hub,
        data,
        legacy,
        closed,
        data_ids,
        legacy_ids,
        hub_ids,
        xray,
        data_team_mailbox,
        platform_mailbox,
    }
}

async fn finished(env: &WorkflowEnv, execution: &str) -> (String, Value) {
    loop {
        let d = env.plumbing.sfn.describe_execution().execution_arn(execution).send().await.unwrap();
        if d.status().as_str() != "RUNNING" {
            let output = d.output().and_then(|o| serde_json::from_str::<Value>(o).ok()).unwrap_or(Value::Null);
            return (d.status().as_str().to_owned(), output);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_run_scans_every_reachable_account_and_reports_the_rest() {
    let o = organization("recommend", 60, "http://127.0.0.1:9").await;
    let Organization { env, functions, legacy, closed, data_ids, legacy_ids, hub_ids, .. } = &o;
    let execution = env.start("org-run", &REGIONS, "recommend").await;
    let (status, output) = finished(env, &execution).await;
    let states = env.plumbing.entered_states(&execution).await;
    assert_eq!(status, "SUCCEEDED", "{states:?}\n{output}");
    for s in ["Plan Account Scans", "Scan Accounts", "Merge Account Scans", "Reason About Shortlist", "Check Policy"] {
        assert!(states.contains(&s.to_string()), "{s} missing from {states:?}");
    }
    assert!(!states.iter().any(|s| s == "Find Running Instances"), "the fan-out replaces the one-account scan");

    // Three accounts in scope (the hub, data-dev, legacy; closed-project suspended), two regions each.
    let scans = functions.invocations.lock().unwrap().iter().filter(|f| *f == "finops-scan-account").count();
    assert_eq!(scans, 6, "one item scan per account and region");
    let organization = &output["metrics"]["output"]["organization"];
    assert_eq!(organization["accounts"], 3, "{organization}");
    assert_eq!((organization["items"].as_u64(), organization["itemsScanned"].as_u64()), (Some(6), Some(4)));
    assert_eq!(organization["unreachableCount"], 2);
    // The parent's history does not grow with the items: they run in child executions.
    let history =
        env.plumbing.sfn.get_execution_history().execution_arn(&execution).max_results(1000).send().await.unwrap();
    let in_parent: Vec<&str> =
        history.events().iter().filter_map(|e| e.state_entered_event_details()).map(|d| d.name()).collect();
    assert!(!in_parent.contains(&"Scan Account Region"), "no item's state is in the parent's history: {in_parent:?}");
    assert!(history.events().len() < 100, "{} events", history.events().len());
    assert!(organization["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["item"]["account"]["id"] == legacy.as_str()));
    assert_eq!(organization["skipped"][0]["account"]["name"], "closed-project");
    assert_eq!(output["metrics"]["output"]["instanceCount"], 4, "data-dev's three and the hub's one");
    assert!(!output.to_string().contains(&legacy_ids[0]), "nothing of legacy was read");

    // The merged run goes on as one: the idle dev instances of both accounts proposed, production denied.
    let proposed: Vec<&str> =
        output["policy"]["proposals"].as_array().unwrap().iter().map(|p| p["resourceId"].as_str().unwrap()).collect();
    assert!(proposed.contains(&data_ids[0].as_str()) && proposed.contains(&hub_ids[0].as_str()), "{proposed:?}");
    assert!(!proposed.contains(&data_ids[1].as_str()), "production in a member account is denied too");
    assert_eq!(output["policy"]["denialCounts"]["production"], 1);
    // The other resources of every reached account go through the same policy: data-dev's old volume (read with its
    // read-only role) is one of them; nothing of legacy's.
    let resources = &output["policy"]["resources"]["byKind"]["ebs-volume"];
    assert_eq!((resources["found"].as_u64(), resources["actionable"].as_u64()), (Some(1), Some(1)), "{resources}");

    let report = env.next_report(Duration::from_secs(20)).await.expect("run report");
    assert!(
        report.contains(&format!(
            "Accounts: 3 accounts, 4 of 6 account-regions scanned; not scanned: legacy ({legacy}) ap-southeast-2:"
        )),
        "{report}"
    );
    assert!(report.contains(&format!("skipped: closed-project ({closed}): suspended")), "{report}");
    let ledger = env.ledger("org-run").await;
    assert!(ledger["accounts"].as_s().unwrap().starts_with("3 accounts, 4 of 6"), "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_proposal_in_a_member_account_is_snapshotted_and_stopped_there() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let o = organization("act", 20, &base).await;
    let callback = finops_approval_callback::ApprovalCallback::from_vars(&o.hub, &o.env.function_vars(&base))
        .expect("callback settings");
    let _page = finops_local::approval_page::start(port, callback).await.expect("the approval page");
    let execution = o.env.start("org-act", &REGIONS, "act").await;
    // data-dev's etl-idle and its old unattached volume go to the data team, in one digest; the hub's hub-idle (and
    // anything else of the hub's) to the platform team, in one digest. Approve the member's two; leave the hub's
    // unanswered.
    let wait = Duration::from_secs(10);
    let data_team = o.env.plumbing.drain(&o.data_team_mailbox, wait).await;
    let platform = o.env.plumbing.drain(&o.platform_mailbox, wait).await;
    assert_eq!((data_team.len(), platform.len()), (1, 1), "one digest per approver: {data_team:?} {platform:?}");
    let (data_digest, platform_digest) = (&data_team[0], &platform[0]);
    assert!(data_digest.contains(&format!("Account:       {} (\"data-dev\")", o.data)), "{data_digest}");
    assert!(data_digest.contains(&format!("Asked:         {DATA_TEAM} (account tag team=data)")), "{data_digest}");
    let data_offers = finops_testkit::mail::offers(data_digest);
    assert_eq!(data_offers.len(), 2, "{data_digest}");
    let idle = data_offers.iter().find(|o2| o2.resource_id == o.data_ids[0]).expect("data-dev's idle instance");
    let volume = data_offers.iter().find(|o2| o2.resource_id.starts_with("vol-")).expect("data-dev's volume");
    let volume_id = volume.resource_id.clone();
    let platform_offers = finops_testkit::mail::offers(platform_digest);
    assert!(platform_offers.iter().any(|o2| o2.resource_id == o.hub_ids[0]), "{platform_digest}");
    assert!(!platform_digest.contains(&o.data), "the platform team is asked nothing of data-dev: {platform_digest}");
    let path = |url: &str| url.strip_prefix(&base).unwrap().to_owned();
    // A data-team link "made" the platform approver's (its recipient swapped) is refused: the signature covers it.
    let swapped = path(&idle.approve).replace("to=data-team%40example.com", "to=platform%40example.com");
    let (status, page) = finops_testkit::moto::http(port, "POST", &swapped, "decision=approve").await.unwrap();
    assert_eq!(status, 403, "{page}");
    for url in [&idle.approve, &volume.approve] {
        let mut status = 503;
        for _ in 0..100 {
            // A name typed in the form is nobody's identity: the data team's link decides as the data team.
            let body = "decision=approve&approver=platform%40example.com";
            status = finops_testkit::moto::http(port, "POST", &path(url), body).await.unwrap().0;
            if status != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200);
    }
    let (status, output) = finished(&o.env, &execution).await;
    assert_eq!(status, "SUCCEEDED", "{output}");

    // Stopped in data-dev, with its snapshot there; the hub's unanswered proposal did nothing.
    let member = aws_sdk_ec2::Client::new(&member_admin(&o.hub, &o.data).await);
    let described = member.describe_instances().instance_ids(&o.data_ids[0]).send().await.unwrap();
    let instance = &described.reservations()[0].instances()[0];
    assert_eq!(instance.state().unwrap().name().unwrap().as_str(), "stopped");
    let snapshots = member.describe_snapshots().owner_ids("self").send().await.unwrap();
    assert!(
        snapshots.snapshots().iter().any(|s| s.tags().iter().any(|t| t.value() == Some("org-act"))),
        "the snapshot is in the member account, tagged with the run"
    );
    let production = member.describe_instances().instance_ids(&o.data_ids[1]).send().await.unwrap();
    assert_eq!(production.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str(), "running");
    let hub = aws_sdk_ec2::Client::new(&o.hub);
    let hub_instance = hub.describe_instances().instance_ids(&o.hub_ids[0]).send().await.unwrap();
    assert_eq!(hub_instance.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str(), "running");
    // The member's volume: snapshotted and deleted there, through its actions role; the snapshot stays there.
    assert_eq!(finops_testkit::seed::volume_state(&member, &volume_id).await, Ok(None), "{volume_id} deleted");
    assert!(
        snapshots
            .snapshots()
            .iter()
            .any(|s| s.tags().iter().any(|t| t.key() == Some("finops:volume-id") && t.value() == Some(&volume_id))),
        "the volume's snapshot is kept in the member account"
    );
    let outcomes = output["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), data_offers.len() + platform_offers.len(), "{outcomes:?}");
    let approved = finops_approval_store::DynamoApprovals::new(&o.hub, finops_testkit::approvals::TABLE);
    let record = finops_approval_store::ApprovalReader::get(&approved, &idle.approval_id).await.unwrap().unwrap();
    assert_eq!(record.approver.as_deref(), Some(DATA_TEAM), "the link's recipient decided");
    let deleted = outcomes.iter().find(|o| o["resourceId"] == volume_id.as_str()).unwrap();
    assert_eq!((&deleted["operation"], &deleted["outcome"]), (&json!("delete_volume"), &json!("done")), "{deleted}");
    // The audit trail names the account of what was proposed and done, the hub's own included.
    let annotations: Vec<Value> = o
        .xray
        .documents()
        .iter()
        .filter(|d| d["annotations"]["run_id"] == "org-act" && d["annotations"]["decision"].is_string())
        .map(|d| d["annotations"].clone())
        .collect();
    let about = |id: &str| annotations.iter().filter(|a| a["resource_id"] == id).cloned().collect::<Vec<_>>();
    let member = about(&o.data_ids[0]);
    assert!(member.iter().any(|a| a["decision"] == "PROPOSED"), "{annotations:?}");
    assert!(member.iter().any(|a| a["decision"].as_str().unwrap().starts_with("stop:")), "{annotations:?}");
    assert!(member.iter().all(|a| a["account_id"] == o.data.as_str()), "{member:?}");
    // The model's tool call about the member's instance was answered there (through the read-only role), not
    // looked for in the hub, where that instance does not exist.
    assert!(member.iter().any(|a| a["agent"] == "converse" && a["decision"] == "HTTP 200"), "{member:?}");
    let hub = about(&o.hub_ids[0]);
    assert!(!hub.is_empty() && hub.iter().all(|a| a["account_id"] == HUB), "{hub:?}");
}
