//! The Cost Explorer adapter against moto's Cost Explorer (its results queued through moto's API, as moto documents:
//! it tracks no cost itself): the request it makes, and the daily costs it reads back.

use chrono::NaiveDate;
use finops_savings::{CostHistory, SdkCostExplorer};
use finops_testkit::moto::{http, moto};

#[tokio::test]
async fn daily_costs_are_read_from_get_cost_and_usage() {
    let moto = moto().await;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let results = serde_json::json!({"results": [{
        "ResultsByTime": (1..=4).map(|d| serde_json::json!({
            "TimePeriod": {"Start": day(d).to_string(), "End": day(d + 1).to_string()},
            "Total": {"UnblendedCost": {"Amount": format!("{}.25", 10 + d), "Unit": "USD"}},
            "Groups": [], "Estimated": false
        })).collect::<Vec<_>>()
    }]});
    let (status, body) = http(moto.port, "POST", "/moto-api/static/ce/cost-and-usage-results", &results.to_string())
        .await
        .expect("moto's API");
    assert_eq!(status, 201, "{body}");
    let config = moto.sdk_config("ap-southeast-2").await;
    let daily = SdkCostExplorer::new(&config).daily_cost(day(1), day(5)).await.expect("GetCostAndUsage");
    assert_eq!(daily, vec![(day(1), 11.25), (day(2), 12.25), (day(3), 13.25), (day(4), 14.25)]);
}
