//! `make bench`: the metrics handler over 10,000 instances x 14 days, fed by a synthetic CloudWatch (moto is far
//! too slow at this scale). Prints handler CPU time, peak RSS and the number of GetMetricData calls, which must be
//! ceil(N*M/500) for N instances and M queries per instance.

use std::sync::atomic::Ordering;

use chrono::Utc;
use finops_aws::{put_json, MemoryRunStore, PriceBook, SdkPriceList};
use finops_core::steps::InventoryDocument;
use finops_core::{DetectionConfig, InstanceRecord};
use finops_metrics::synthetic::SyntheticMetrics;
use finops_metrics::{handle, MetricKind, MAX_QUERIES_PER_CALL};
use finops_testkit::{peak_rss_bytes, process_cpu_time};

const TYPES: &[&str] = &["t3.micro", "t3.large", "m5.large", "m5.xlarge", "c5.large", "r5.large", "m6i.2xlarge"];

fn fleet(n: usize) -> Vec<InstanceRecord> {
    let now = Utc::now();
    (0..n)
        .map(|i| {
            let id = format!("i-{i:017x}");
            let mut record = InstanceRecord::ordinary(
                &id,
                "ap-southeast-2",
                TYPES[i % TYPES.len()],
                now - chrono::Duration::days(90),
                50,
            )
            .with_tags([("Name".to_string(), format!("host-{i}")), ("Environment".to_string(), "dev".to_string())]);
            record.volumes[0].iops = Some(3000);
            record
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = MemoryRunStore::new("bench-runs");
        let document = InventoryDocument {
            run_id: "bench".into(),
            regions: vec!["ap-southeast-2".into()],
            collected_at: Utc::now(),
            instances: fleet(n),
        };
        let inventory = put_json(&store, "runs/bench/inventory.json", &document).await.expect("store inventory");
        drop(document);
        let event = serde_json::json!({"runId": "bench", "inventory": inventory});
        let api = SyntheticMetrics::default();
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let config = DetectionConfig::default();

        let rss_before = peak_rss_bytes();
        let cpu_before = process_cpu_time();
        let wall = std::time::Instant::now();
        let out = handle(event, &api, &prices, &store, &config, Utc::now()).await.expect("handler");
        let wall = wall.elapsed();
        let cpu = process_cpu_time() - cpu_before;
        let rss = peak_rss_bytes();

        let per_instance = MetricKind::STANDARD.len();
        let expected_calls = (n * per_instance).div_ceil(MAX_QUERIES_PER_CALL);
        let calls = api.calls.load(Ordering::Relaxed);
        let output_bytes = serde_json::to_vec(&out).expect("output").len();
        println!(
            "finops-bench: metrics handler, {n} instances x {} days x {per_instance} queries per instance",
            out.window.days
        );
        println!(
            "  GetMetricData calls      {calls} (ceil({n}*{per_instance}/{MAX_QUERIES_PER_CALL}) = {expected_calls})"
        );
        println!("  handler CPU time         {} ms (target < 100 ms)", cpu.as_millis());
        println!("  handler wall time        {} ms", wall.as_millis());
        println!(
            "  peak RSS                 {:.1} MB (before the handler: {:.1} MB; target < 64 MB)",
            rss as f64 / 1048576.0,
            rss_before as f64 / 1048576.0
        );
        println!("  inventory document       {:.1} MB in the run store", inventory.bytes as f64 / 1048576.0);
        println!("  utilisation document     {:.1} MB in the run store", out.utilisation.bytes as f64 / 1048576.0);
        println!(
            "  state output             {output_bytes} bytes ({} shortlisted, {} more in the document)",
            out.shortlist.len(),
            out.shortlist_omitted
        );
        println!("  verdicts                 {:?}", out.verdicts);
        if std::env::var("FINOPS_BENCH_DUMP").is_ok() {
            let body = finops_aws::RunStore::get(&store, &out.utilisation).await.unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            println!("{}\n{}", doc["summaries"][0], doc["summaries"][1]);
        }
        assert_eq!(calls, expected_calls, "GetMetricData calls must be ceil(N*M/500)");
    });
}
