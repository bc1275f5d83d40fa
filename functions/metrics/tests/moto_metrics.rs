//! The metrics handler against a real moto server: instances in EC2, 14 days of metrics put with PutMetricData,
//! documents in S3.

use chrono::Utc;
use finops_aws::{get_json, PriceBook, SdkPriceList};
use finops_core::steps::UtilisationDocument;
use finops_core::{DetectionConfig, IdleVerdict, LookbackWindow, MetricStages};
use finops_metrics::{handle, CloudWatchMetrics};
use finops_testkit::seed::{
    launch, linux_image_id, put_daily_metrics, put_memory_metrics, run_bucket, DayProfile, InstanceSpec,
};
use finops_testkit::{aws_sdk_ec2, moto};
use serde_json::json;

const BUCKET: &str = "finops-runs";

fn embedded_prices() -> PriceBook<SdkPriceList> {
    PriceBook::new(None)
}

#[tokio::test]
async fn seeded_fleet_gets_verdicts_reasons_costs_and_a_small_output() {
    let moto = moto().await;
    let syd = moto.sdk_config("ap-southeast-2").await;
    let use1 = moto.sdk_config("us-east-1").await;
    let (ec2_syd, ec2_use1) = (aws_sdk_ec2::Client::new(&syd), aws_sdk_ec2::Client::new(&use1));
    let (cw_syd, cw_use1) = (aws_sdk_cloudwatch::Client::new(&syd), aws_sdk_cloudwatch::Client::new(&use1));
    let (ami_syd, ami_use1) = (linux_image_id(&ec2_syd).await, linux_image_id(&ec2_use1).await);
    let now = Utc::now();
    let window = LookbackWindow::ending_before(now, 14);

    let idle = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("dev-idle", "t3.large").tag("Environment", "dev"), 1)
        .await[0]
        .clone();
    let busy = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("api", "m5.large"), 1).await[0].clone();
    let io = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("batch-io", "c5.large"), 1).await[0].clone();
    let spiky = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("cron", "t3.medium"), 1).await[0].clone();
    let fresh =
        launch(&ec2_syd, &ami_syd, &InstanceSpec::new("new", "t3.micro").launched_days_ago(2.0), 1).await[0].clone();
    let gappy = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("gappy", "t3.micro"), 1).await[0].clone();
    let agent = launch(&ec2_syd, &ami_syd, &InstanceSpec::new("with-agent", "t3.small"), 1).await[0].clone();
    let far = launch(&ec2_use1, &ami_use1, &InstanceSpec::new("far-idle", "m5.xlarge"), 1).await[0].clone();

    put_daily_metrics(&cw_syd, &idle, &window, |_| Some(DayProfile::idle())).await;
    put_daily_metrics(&cw_syd, &busy, &window, |_| Some(DayProfile::busy())).await;
    put_daily_metrics(&cw_syd, &io, &window, |_| Some(DayProfile::io_bound())).await;
    put_daily_metrics(&cw_syd, &spiky, &window, |_| Some(DayProfile::spiky())).await;
    put_daily_metrics(&cw_syd, &fresh, &window, |d| (d >= 12).then(DayProfile::idle)).await;
    put_daily_metrics(&cw_syd, &gappy, &window, |d| (d % 4 != 0).then(DayProfile::idle)).await;
    put_daily_metrics(&cw_syd, &agent, &window, |_| Some(DayProfile::idle())).await;
    put_memory_metrics(&cw_syd, &agent, &window, 12.5).await;
    put_daily_metrics(&cw_use1, &far, &window, |_| Some(DayProfile::idle())).await;

    let store = run_bucket(&syd, BUCKET).await;
    let inventory = finops_inventory::handle(
        json!({"runId": "run-7", "regions": ["ap-southeast-2", "us-east-1"]}),
        &finops_inventory::Ec2Inventory::new(syd.clone()),
        &store,
        now,
    )
    .await
    .unwrap();

    let metrics_api = CloudWatchMetrics::new(syd.clone());
    let event = serde_json::to_value(&inventory).unwrap();
    let out = handle(event, &metrics_api, &embedded_prices(), &store, &DetectionConfig::default(), now)
        .await
        .expect("metrics");

    assert_eq!(out.instance_count, 8);
    // Two stages (the default): one CPU average per instance that can be judged (7 of 8: one is 2 days old), then
    // the other five metrics (and memory, where the agent reports it) of the 6 that CPU leaves open: two calls per
    // region, 38 metrics where one stage asks 49.
    assert_eq!((out.get_metric_data_calls, out.metrics_requested), (4, 38));
    let doc: UtilisationDocument = get_json(&store, &out.utilisation).await.unwrap();
    let one_stage = DetectionConfig { metric_stages: MetricStages::One, ..DetectionConfig::default() };
    let event = serde_json::to_value(&inventory).unwrap();
    let out_one = handle(event, &metrics_api, &embedded_prices(), &store, &one_stage, now).await.expect("metrics");
    assert_eq!((out_one.get_metric_data_calls, out_one.metrics_requested), (2, 49), "one call per region");
    let doc_one: UtilisationDocument = get_json(&store, &out_one.utilisation).await.unwrap();
    for (two, one) in doc.summaries.iter().zip(&doc_one.summaries) {
        assert_eq!(two.assessment, one.assessment, "same verdict and reasons either way");
    }
    assert_eq!((&out_one.verdicts, &out_one.shortlist), (&out.verdicts, &out.shortlist));
    let verdict = |id: &str| doc.summaries.iter().find(|s| s.instance_id == id).unwrap();

    assert_eq!(verdict(&idle).verdict(), IdleVerdict::Idle, "{:?}", verdict(&idle).assessment.reasons);
    assert_eq!(verdict(&far).verdict(), IdleVerdict::Idle);
    assert_eq!(verdict(&agent).verdict(), IdleVerdict::Idle);
    assert_eq!(verdict(&busy).verdict(), IdleVerdict::Active);
    assert_eq!(verdict(&spiky).verdict(), IdleVerdict::Underutilised, "{:?}", verdict(&spiky).assessment.reasons);
    assert_eq!(verdict(&io).verdict(), IdleVerdict::Underutilised, "disk keeps it from Idle");
    assert!(verdict(&io).assessment.reasons.iter().any(|r| r.contains("disk ops")));
    assert_eq!(verdict(&fresh).verdict(), IdleVerdict::InsufficientData);
    assert!(verdict(&fresh).assessment.reasons[0].contains("launched"));
    assert_eq!(verdict(&gappy).verdict(), IdleVerdict::InsufficientData);
    assert!(
        verdict(&gappy).assessment.reasons[0].contains("10 of 14 days"),
        "{:?}",
        verdict(&gappy).assessment.reasons
    );

    // Daily values as CloudWatch aggregated them: network is in + out, in bytes.
    let idle_days = &verdict(&idle).days;
    assert_eq!(idle_days.len(), 14);
    assert!(idle_days.iter().all(|d| d.network_bytes == Some(1_000_000.0) && d.cpu_max_percent == Some(2.5)));
    assert!(idle_days.iter().all(|d| (d.cpu_avg_percent.unwrap() - 0.8).abs() < 1e-9));
    assert!(verdict(&agent).days.iter().all(|d| d.mem_used_percent == Some(12.5)), "memory via the agent's dimensions");
    assert!(idle_days.iter().all(|d| d.mem_used_percent.is_none()));

    // Costs: t3.large in Sydney from the embedded table, 730 hours, plus 20 GiB gp3.
    let cost = &verdict(&idle).cost;
    assert_eq!(cost.compute_monthly_usd, Some(75.92));
    assert_eq!(cost.storage_monthly_usd, 2.0);
    assert_eq!(cost.monthly_saving_usd, Some(75.92));
    assert!(cost.price_source.to_string().contains("embedded"));

    assert_eq!(out.verdicts.idle, 3);
    assert_eq!(out.verdicts.underutilised, 2);
    assert_eq!(out.verdicts.active, 1);
    assert_eq!(out.verdicts.insufficient_data, 2);
    let short: Vec<&str> = out.shortlist.iter().map(|s| s.instance_id.as_str()).collect();
    assert_eq!(short.len(), 5);
    assert_eq!(short[0], far, "largest saving first (m5.xlarge)");
    assert!(!short.contains(&busy.as_str()) && !short.contains(&fresh.as_str()));
    assert!(serde_json::to_vec(&out).unwrap().len() < 4_000);
}

#[tokio::test]
async fn bad_references_are_invalid_input() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let store = run_bucket(&config, BUCKET).await;
    let api = CloudWatchMetrics::new(config.clone());
    let prices = embedded_prices();
    let detection = DetectionConfig::default();
    let inventory = finops_inventory::handle(
        json!({"runId": "r1", "regions": ["ap-southeast-2"]}),
        &finops_inventory::Ec2Inventory::new(config.clone()),
        &store,
        Utc::now(),
    )
    .await
    .unwrap();
    let good = serde_json::to_value(&inventory).unwrap();
    let mut other_bucket = good.clone();
    other_bucket["inventory"]["bucket"] = json!("attacker-bucket");
    let mut other_run = good.clone();
    other_run["runId"] = json!("r2");
    let mut bad_lookback = good.clone();
    bad_lookback["lookbackDays"] = json!(0);
    for (event, needle) in [
        (json!({}), "metrics expects"),
        (json!({"runId": "r1", "inventory": "s3://x"}), "metrics expects"),
        (other_bucket, "attacker-bucket"),
        (other_run, "belongs to run"),
        (bad_lookback, "lookbackDays"),
    ] {
        let err =
            handle(event.clone(), &api, &prices, &store, &detection, Utc::now()).await.expect_err(&event.to_string());
        assert_eq!(err.error_name(), "Finops.InvalidInput", "{event}: {err}");
        assert!(err.to_string().contains(needle), "{event}: {err}");
    }
    // An empty region is a valid, empty result.
    let out = handle(good, &api, &prices, &store, &detection, Utc::now()).await.unwrap();
    assert_eq!(out.instance_count, 0);
    assert!(out.shortlist.is_empty());
}
