//! An organization run on moto: the real ASL's Distributed Map (ItemReader from S3, ResultWriter to S3) in moto's
//! interpreter, each (account, region) item scanned by the real fan-out handler through the member's read-only role
//! (STS AssumeRole switches moto's account), an account without the role reported, and the merged detection going
//! on to reasoning and policy as one run.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use finops_core::organization::DETECTION_ROLE_NAME;
use finops_core::LookbackWindow;
use finops_local::{serve, LocalFunctions};
use finops_testkit::moto::{sdk_config, MotoServer};
use finops_testkit::organization::{create_member_role, create_organization, member_admin};
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::workflow::{WorkflowEnv, WorkflowTimings};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_ec2};
use serde_json::Value;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_run_scans_every_reachable_account_and_reports_the_rest() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router_port = listener.local_addr().unwrap().port();
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", router_port.to_string())]);
    let hub = sdk_config(&moto.endpoint, REGIONS[0]).await;
    let timings = WorkflowTimings {
        approval_timeout_seconds: 60,
        snapshot_poll_seconds: 1,
        max_snapshot_checks: 5,
        max_proposals: 10,
        deployment_mode: "recommend",
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
    let data_ids = seed(
        &data_admin,
        &[
            (InstanceSpec::new("etl-idle", "m5.large").tag("Environment", "dev").launched_days_ago(60.0), true),
            (InstanceSpec::new("orders-db", "m5.large").tag("Environment", "production").launched_days_ago(60.0), true),
            (InstanceSpec::new("etl-busy", "m5.large").launched_days_ago(60.0), false),
        ],
    )
    .await;
    // legacy never got the role (its StackSet instance failed, say), yet runs an idle instance.
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

    let vars = env.function_vars("http://127.0.0.1:9");
    let functions = Arc::new(LocalFunctions::new(&hub, &vars).expect("the functions' environment"));
    tokio::spawn(serve(listener, functions.clone(), ([127, 0, 0, 1], moto.port).into()));

    let execution = env.start("org-run", &REGIONS, "recommend").await;
    let (status, output) = loop {
        let d = env.plumbing.sfn.describe_execution().execution_arn(&execution).send().await.unwrap();
        if d.status().as_str() != "RUNNING" {
            let output = d.output().and_then(|o| serde_json::from_str::<Value>(o).ok()).unwrap_or(Value::Null);
            break (d.status().as_str().to_owned(), output);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
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
        output["policy"]["proposals"].as_array().unwrap().iter().map(|p| p["instanceId"].as_str().unwrap()).collect();
    assert!(proposed.contains(&data_ids[0].as_str()) && proposed.contains(&hub_ids[0].as_str()), "{proposed:?}");
    assert!(!proposed.contains(&data_ids[1].as_str()), "production in a member account is denied too");
    assert_eq!(output["policy"]["denialCounts"]["production"], 1);

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
