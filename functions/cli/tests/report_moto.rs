//! `finops report` as a user runs it: the real binary over a ledger table in a real moto server, its items written
//! as the state machine writes them ("Record Run In Ledger", "Record Undo In Ledger").

use std::process::Command;

use chrono::{Duration, SecondsFormat, Utc};
use finops_testkit::aws_sdk_dynamodb::types::AttributeValue;
use finops_testkit::{aws_sdk_dynamodb, moto};
use serde_json::json;

#[tokio::test]
async fn the_report_sums_the_ledger_over_the_period_as_a_table_and_as_json() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    finops_testkit::workflow::create_ledger_table(&config).await;
    let ledger = finops_testkit::workflow::LEDGER_TABLE;
    let ago = |days: i64| (Utc::now() - Duration::days(days)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let stop = json!({"resourceId": "i-1", "decision": "approve", "operation": "stop", "outcome": "done",
        "detail": "", "snapshotIds": [], "acted": {"resourceId": "i-1", "action": "snapshot-and-stop",
        "region": "ap-southeast-2", "monthlySavingUsd": 75.92, "actedAt": ago(3)}});
    let denied = json!({"resourceId": "i-2", "decision": "deny", "outcome": "denied", "detail": "", "snapshotIds": []});
    for (run, days, outcomes, realized) in [
        ("run-old", 60, json!([stop.clone()]), json!({"summary": "", "realizedUsd": 99.0, "estimatedMonthlyUsd": 1.0})),
        ("run-1", 3, json!([stop, denied]), json!({"summary": "", "realizedUsd": 0.0, "estimatedMonthlyUsd": 0.0})),
        ("run-2", 1, json!([]), json!({"summary": "", "realizedUsd": 4.99, "estimatedMonthlyUsd": 75.92})),
    ] {
        ddb.put_item()
            .table_name(ledger)
            .item("runId", s(run))
            .item("status", s("completed"))
            .item("proposalCount", AttributeValue::N(outcomes.as_array().unwrap().len().to_string()))
            .item("outcomes", s(&outcomes.to_string()))
            .item("realizedSavings", s(&realized.to_string()))
            .item("recordedAt", s(&ago(days)))
            .send()
            .await
            .unwrap();
    }
    ddb.put_item()
        .table_name(ledger)
        .item("runId", s("undo-0011"))
        .item("status", s("undo"))
        .item("undoOfRun", s("run-1"))
        .item("resourceId", s("i-1"))
        .item("undoOutcome", s("done"))
        .item("recordedAt", s(&ago(0)))
        .send()
        .await
        .unwrap();

    let finops = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_finops"))
            .args(["report", "--region", "ap-southeast-2", "--endpoint-url", &moto.endpoint])
            .args(args)
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run finops")
    };
    let table = finops(&["--ledger-table", ledger, "--since", "30d"]);
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));
    let total = stdout.lines().find(|l| l.starts_with("total")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(total.contains("$75.92") && total.contains("$4.99"), "the 60-day-old run is outside 30d: {total}");
    assert!(stdout.contains("Decisions: approve 1, deny 1") && stdout.contains("Actions: stop done 1"), "{stdout}");

    let json_out = finops(&["--ledger-table", ledger, "--since", "90d", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    assert_eq!((report["total"]["runs"].as_u64(), report["total"]["undone"].as_u64()), (Some(3), Some(1)));
    assert_eq!(report["total"]["actedMonthlyUsd"].as_f64(), Some(151.84));
    assert_eq!(report["total"]["realizedToDateUsd"].as_f64(), Some(4.99), "the period's last check");

    let bad = finops(&["--ledger-table", ledger, "--since", "30 days"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let missing = finops(&["--ledger-table", "nope"]);
    assert_eq!(missing.status.code(), Some(1), "an unknown table is an AWS error");
}
