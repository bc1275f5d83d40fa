//! `finops scan --organization | --accounts` against an AWS Organization on a real moto server: each member scanned
//! through its read-only role, an account without the role reported (not a failed scan), a suspended account
//! skipped with its reason, every row naming its account, nothing changed anywhere.

use std::process::{Command, Output};

use chrono::Utc;
use finops_core::organization::DETECTION_ROLE_NAME;
use finops_core::LookbackWindow;
use finops_testkit::organization::{create_member_role, create_organization, member_admin};
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_ec2, moto};

const HUB: &str = "123456789012";
const REGION: &str = "ap-southeast-2";

fn finops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_finops"))
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run finops")
}

/// One instance per profile in the account `config` acts in; returns their ids.
async fn fleet(config: &aws_config::SdkConfig, specs: &[(&str, bool)]) -> Vec<String> {
    let ec2 = aws_sdk_ec2::Client::new(config);
    let cw = aws_sdk_cloudwatch::Client::new(config);
    let ami = linux_image_id(&ec2).await;
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    let mut ids = Vec::new();
    for (name, idle) in specs {
        let id = launch(&ec2, &ami, &InstanceSpec::new(name, "t3.large"), 1).await[0].clone();
        let profile = if *idle { DayProfile::idle() } else { DayProfile::busy() };
        put_daily_metrics(&cw, &id, &window, |_| Some(profile)).await;
        ids.push(id);
    }
    ids
}

fn row<'a>(stdout: &'a str, id: &str) -> &'a str {
    stdout.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("no row for {id}:\n{stdout}"))
}

#[tokio::test]
async fn an_organization_scan_covers_every_reachable_account_and_reports_the_rest() {
    let moto = moto().await;
    let hub = moto.sdk_config(REGION).await;
    let org = create_organization(&hub).await;
    let workloads = org.create_ou("workloads").await;
    let data = org.create_account("data-dev", Some(&workloads)).await;
    let web = org.create_account("web-dev", Some(&workloads)).await;
    let legacy = org.create_account("legacy", Some(&workloads)).await;
    let sandbox = org.create_account("sandbox", None).await;
    let closed = org.create_account("closed-project", None).await;
    org.close_account(&closed).await;

    let hub_ids = fleet(&hub, &[("hub-idle", true)]).await;
    let mut data_ids = Vec::new();
    for (account, specs) in [(&data, &[("etl-idle", true), ("etl-busy", false)][..]), (&web, &[("web-idle", true)])] {
        let admin = member_admin(&hub, account).await;
        create_member_role(&admin, DETECTION_ROLE_NAME, HUB).await;
        let ids = fleet(&admin, specs).await;
        if account == &data {
            data_ids = ids;
        }
    }
    // The sandbox has the role; legacy never got it (the StackSet failed there, say) but runs an instance.
    create_member_role(&member_admin(&hub, &sandbox).await, DETECTION_ROLE_NAME, HUB).await;
    let legacy_ids = fleet(&member_admin(&hub, &legacy).await, &[("legacy-idle", true)]).await;

    let scan = finops(&["scan", "--regions", REGION, "--organization", "--endpoint-url", &moto.endpoint]);
    let stdout = String::from_utf8_lossy(&scan.stdout);
    let stderr = String::from_utf8_lossy(&scan.stderr);
    assert!(scan.status.success(), "an unreachable account does not fail the scan: {stderr}\n{stdout}");
    assert!(stdout.lines().next().unwrap().contains("ACCOUNT"), "{stdout}");
    let etl = row(&stdout, &data_ids[0]);
    assert!(etl.contains("data-dev") && etl.contains("Idle"), "{etl}");
    assert!(row(&stdout, &data_ids[1]).contains("Active"));
    assert!(row(&stdout, &hub_ids[0]).contains("Idle"), "the hub's own account is scanned too");
    assert!(!stdout.contains(&legacy_ids[0]), "legacy was not readable, so nothing of it is listed");
    assert!(stdout.contains(&format!("data-dev ({data}): 2 instances, 1 idle")), "{stdout}");
    assert!(stdout.contains(&format!("web-dev ({web}): 1 instances, 1 idle")), "{stdout}");
    let web_line = stdout.lines().find(|l| l.contains(&format!("web-dev ({web}):"))).unwrap();
    assert!(web_line.contains("can be proposed") && !web_line.contains("possible saving"), "{web_line}");
    assert!(stdout.contains(&format!("sandbox ({sandbox}): 0 instances")), "{stdout}");
    assert!(stdout.contains(&format!("closed-project ({closed}): not scanned, suspended")), "{stdout}");
    assert!(stdout.contains("Not scanned (1 of the run's account-region items)"), "{stdout}");
    let unreachable = stdout.lines().find(|l| l.contains(&format!("legacy ({legacy}) {REGION}:"))).expect("legacy");
    assert!(
        unreachable.contains(&format!("arn:aws:iam::{legacy}:role/{DETECTION_ROLE_NAME} cannot be assumed")),
        "{unreachable}"
    );
    assert!(stdout.contains(&format!("legacy ({legacy}): not reachable in any region")), "{stdout}");
    assert!(stdout.contains("4 instances in 5 accounts, ap-southeast-2 over 14 days"), "{stdout}");
    assert!(stdout.contains("3 idle, 0 underutilised, 1 active"), "{stdout}");

    // Only the workloads OU (and the hub), as JSON; the record of every instance names its account.
    let json = finops(&[
        "scan",
        "--regions",
        REGION,
        "--organization",
        "--ous",
        &workloads,
        "--exclude-accounts",
        &web,
        "--json",
        "--quiet",
        "--endpoint-url",
        &moto.endpoint,
    ]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let accounts: Vec<&str> = report["organization"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, [data.as_str(), legacy.as_str(), HUB], "workloads minus web-dev, plus the hub");
    let skipped = &report["organization"]["skipped"];
    assert_eq!(skipped[0]["account"]["id"], web.as_str());
    assert_eq!(skipped[0]["reason"], "excluded by configuration");
    assert_eq!(report["organization"]["unreachable"][0]["item"]["account"]["name"], "legacy");
    for row in report["instances"].as_array().unwrap() {
        let account = &row["instance"]["account"];
        assert!(account["id"] == data.as_str() || account["id"] == HUB, "{row}");
    }

    // Nothing was changed in any account.
    for config in [hub.clone(), member_admin(&hub, &data).await, member_admin(&hub, &web).await] {
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let described = ec2.describe_instances().send().await.unwrap();
        for i in described.reservations().iter().flat_map(|r| r.instances()) {
            assert_eq!(i.state().unwrap().name().unwrap().as_str(), "running");
            assert!(i.tags().iter().all(|t| !t.key().unwrap().starts_with("finops:")));
        }
    }
}

#[tokio::test]
async fn listed_accounts_that_cannot_be_reached_fail_the_scan_with_the_reason() {
    let moto = moto().await;
    let hub = moto.sdk_config(REGION).await;
    let org = create_organization(&hub).await;
    let legacy = org.create_account("legacy", None).await;
    let scan = finops(&["scan", "--regions", REGION, "--accounts", &legacy, "--endpoint-url", &moto.endpoint]);
    assert_eq!(scan.status.code(), Some(1), "{}", String::from_utf8_lossy(&scan.stdout));
    let stderr = String::from_utf8_lossy(&scan.stderr);
    assert!(stderr.contains(&format!("legacy ({legacy}) {REGION}: not scanned")), "{stderr}");
    assert!(stderr.contains("no account could be reached with role finops-agent-read-only"), "{stderr}");
}

#[test]
fn bad_account_arguments_fail_with_usage_errors() {
    let short = finops(&["scan", "--regions", REGION, "--accounts", "12345"]);
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("\"12345\" is not an AWS account id"));
    let ou = finops(&["scan", "--regions", REGION, "--organization", "--ous", "workloads"]);
    assert_eq!(ou.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ou.stderr).contains("not an organizational unit id"));
    let both = finops(&["scan", "--regions", REGION, "--organization", "--accounts", "111111111111"]);
    assert_eq!(both.status.code(), Some(2), "--accounts and --organization exclude each other");
    let ous_alone = finops(&["scan", "--regions", REGION, "--ous", "ou-ab12-cd34ef56"]);
    assert_eq!(ous_alone.status.code(), Some(2), "--ous needs --organization");
}
