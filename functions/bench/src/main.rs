//! `make bench`: the organization fan-out (see `organization.rs`), then the metrics handler over 10,000 instances x 14 days, fed by a synthetic CloudWatch (moto is far
//! too slow at this scale) in which 10 % of the fleet is idle. Prints, for two stages (the default) and one, the
//! metrics requested per instance and their CloudWatch price, GetMetricData calls (one stage: ceil(N*M/500) for N
//! instances and M queries per instance), handler CPU time and peak RSS, and the detection part of a run's cost.
//! Then the handler's CPU as a multiple of a floor measured on the same data (`floor.rs`), the figure that holds
//! across machines.

use std::sync::atomic::Ordering;

use chrono::Utc;
use finops_aws::{put_json, MemoryRunStore, PriceBook, RunStore, SdkPriceList};
use finops_core::run_cost::{Architecture, FunctionUsage, ListPrices, RunCost, RunUsage, PRICES_AS_OF};
use finops_core::steps::InventoryDocument;
use finops_core::{DetectionConfig, InstanceRecord, MetricStages};
use finops_metrics::synthetic::SyntheticMetrics;
use finops_metrics::{handle, MetricKind, MetricsApi, MAX_QUERIES_PER_CALL};
use finops_testkit::{peak_rss_bytes, process_cpu_time};

mod floor;
mod organization;

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

/// The share of the synthetic fleet that is idle or underutilised: a fleet worth scanning daily has a few idle
/// instances, not half of them.
const CANDIDATE_PERCENT: u64 = 10;
/// The metrics function's memory in the CDK app (cdk/lib/functions.ts), for its GB-seconds.
const METRICS_MEMORY_MB: u32 = 1024;

struct Measured {
    out: finops_core::steps::MetricsOutput,
    cpu: std::time::Duration,
    wall: std::time::Duration,
    calls: usize,
}

/// One line of the comparison table.
fn row(label: &str, two: String, one: String) {
    println!("  {label:<25}{two:<28}{one}");
}

async fn measure(store: &MemoryRunStore, event: &serde_json::Value, stages: MetricStages) -> Measured {
    let api = SyntheticMetrics::with_idle_percent(CANDIDATE_PERCENT);
    let (out, cpu, wall) = run_handler(store, event, stages, &api).await;
    Measured { out, cpu, wall, calls: api.calls.load(Ordering::Relaxed) }
}

/// One run of the metrics handler against `api`: its output, CPU and wall time.
async fn run_handler<M: MetricsApi>(
    store: &MemoryRunStore,
    event: &serde_json::Value,
    stages: MetricStages,
    api: &M,
) -> (finops_core::steps::MetricsOutput, std::time::Duration, std::time::Duration) {
    let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
    let config = DetectionConfig { metric_stages: stages, ..DetectionConfig::default() };
    let cpu_before = process_cpu_time();
    let wall = std::time::Instant::now();
    let out = handle(event.clone(), api, &prices, store, &config, Utc::now()).await.expect("handler");
    (out, process_cpu_time() - cpu_before, wall.elapsed())
}

/// How many times each CPU figure against the floor is measured; the least is kept (noise only adds). More with
/// `FINOPS_BENCH_ROUNDS`, for a profiler to see the handler rather than the setup.
fn rounds() -> usize {
    std::env::var("FINOPS_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// The handler's CPU on recorded CloudWatch answers, the floor on the same answers, and the ratio, for `stages`.
async fn against_floor(
    store: &MemoryRunStore,
    event: &serde_json::Value,
    stages: MetricStages,
    rounds: usize,
) -> [String; 5] {
    let recorder = floor::Recorder::new(SyntheticMetrics::with_idle_percent(CANDIDATE_PERCENT));
    let recorded = run_handler(store, event, stages, &recorder).await.0;
    let replay = recorder.into_replay();
    let mut handler_cpu = std::time::Duration::MAX;
    for _ in 0..rounds {
        let (out, cpu, _) = run_handler(store, event, stages, &replay).await;
        // The same answers must give the same verdicts and shortlist, or the figure measures other work.
        assert_eq!((&out.verdicts, &out.shortlist), (&recorded.verdicts, &recorded.shortlist), "the replay differs");
        handler_cpu = handler_cpu.min(cpu);
    }
    let floor = replay.floor(rounds);
    let (bytes, answers) = replay.size();
    let inventory = store.get(&serde_json::from_value(event["inventory"].clone()).expect("a reference")).await;
    let utilisation = store.get(&recorded.utilisation).await;
    let (inventory, utilisation) = (inventory.expect("the inventory"), utilisation.expect("the utilisation"));
    let io_floor = floor + floor::Replay::documents_floor(&inventory, &utilisation, rounds);
    let ratio = |floor: std::time::Duration| handler_cpu.as_secs_f64() / floor.as_secs_f64().max(1e-9);
    [
        format!("{} ms", handler_cpu.as_millis()),
        format!("{} ms ({answers} answers, {:.1} MB of JSON)", floor.as_millis(), bytes as f64 / 1048576.0),
        format!("{:.2}x", ratio(floor)),
        format!(
            "{} ms (+ {:.1} MB read, {:.1} MB written)",
            io_floor.as_millis(),
            inventory.len() as f64 / 1048576.0,
            utilisation.len() as f64 / 1048576.0
        ),
        format!("{:.2}x", ratio(io_floor)),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("organization") => return organization::run(&args[2..]),
        Some("organization-item") => return organization::one_item(&args[2..]),
        _ => {}
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = MemoryRunStore::new("bench-runs");
        let document = InventoryDocument {
            run_id: "bench".into(),
            regions: vec!["ap-southeast-2".into()],
            collected_at: Utc::now(),
            instances: fleet(n),
            other_resources: Default::default(),
        };
        let inventory = put_json(&store, "runs/bench/inventory.json", &document).await.expect("store inventory");
        let candidates =
            document.instances.iter().filter(|i| SyntheticMetrics::looks_idle(CANDIDATE_PERCENT, &i.instance_id)).count();
        drop(document);
        let event = serde_json::json!({"runId": "bench", "inventory": inventory});

        // The default (two stages) is measured first, in a fresh process, so its peak RSS is its own.
        let rss_before = peak_rss_bytes();
        let two = measure(&store, &event, MetricStages::Two).await;
        let rss = peak_rss_bytes();
        let one = measure(&store, &event, MetricStages::One).await;

        let per_instance = MetricKind::STANDARD.len();
        let expected_one = (n * per_instance).div_ceil(MAX_QUERIES_PER_CALL);
        let expected_two = n.div_ceil(MAX_QUERIES_PER_CALL) + (candidates * (per_instance - 1)).div_ceil(MAX_QUERIES_PER_CALL);
        let output_bytes = serde_json::to_vec(&two.out).expect("output").len();
        let price = |m: usize| m as f64 * ListPrices::LIST.metric_requested;
        println!(
            "finops-bench: metrics handler, {n} instances x {} days, {candidates} of them ({CANDIDATE_PERCENT} %) idle or underutilised",
            two.out.window.days
        );
        row("", "two stages (default)".into(), "one stage (FINOPS_METRIC_STAGES=one)".into());
        let per = |m: usize| format!("{m} ({:.2} per instance)", m as f64 / n as f64);
        row("metrics requested", per(two.out.metrics_requested), per(one.out.metrics_requested));
        row(
            "CloudWatch per run",
            format!("{:.4} USD", price(two.out.metrics_requested)),
            format!("{:.4} USD (0.01 USD per 1,000 metrics, list price of {PRICES_AS_OF})", price(one.out.metrics_requested)),
        );
        row(
            "GetMetricData calls",
            format!("{} (expected {expected_two})", two.calls),
            format!("{} (ceil({n}*{per_instance}/{MAX_QUERIES_PER_CALL}) = {expected_one})", one.calls),
        );
        row(
            "handler CPU time",
            format!("{} ms", two.cpu.as_millis()),
            format!("{} ms (target < 100 ms)", one.cpu.as_millis()),
        );
        row("handler wall time", format!("{} ms", two.wall.as_millis()), format!("{} ms", one.wall.as_millis()));
        println!(
            "  peak RSS                 {:.1} MB (before the handler: {:.1} MB; target < 64 MB)",
            rss as f64 / 1048576.0,
            rss_before as f64 / 1048576.0
        );
        println!("  inventory document       {:.1} MB in the run store", inventory.bytes as f64 / 1048576.0);
        println!("  utilisation document     {:.1} MB in the run store", two.out.utilisation.bytes as f64 / 1048576.0);
        println!(
            "  state output             {output_bytes} bytes ({} shortlisted, {} more in the document)",
            two.out.shortlist.len(),
            two.out.shortlist_omitted
        );
        println!("  verdicts                 {:?}", two.out.verdicts);
        // The detection part of a run's cost at this size: the metrics function's GB-seconds at its measured wall
        // time (the Lambda's duration; inventory, reasoning and policy add less) and the metrics requested.
        let usage = RunUsage {
            functions: vec![FunctionUsage {
                function: "metrics".into(),
                invocations: 1,
                duration_ms: two.wall.as_millis() as u64 + 1,
                memory_mb: METRICS_MEMORY_MB,
            }],
            metrics_requested: two.out.metrics_requested as u64,
            price_list_calls: two.out.price_list_calls as u64,
            ..RunUsage::default()
        };
        let cost = RunCost::of(&usage, Architecture::Arm64, n, &ListPrices::LIST);
        println!("  detection cost per run   {}", cost.summary(&usage));
        // Machines differ; the handler's CPU as a multiple of only reading its input does not (much).
        let rounds = rounds();
        let [two_cpu, two_floor, two_ratio, two_io, two_io_ratio] =
            against_floor(&store, &event, MetricStages::Two, rounds).await;
        let [one_cpu, one_floor, one_ratio, one_io, one_io_ratio] =
            against_floor(&store, &event, MetricStages::One, rounds).await;
        println!("\n  against a floor: the handler fed CloudWatch's JSON answers, and only reading them (least of {rounds} runs)");
        row("", "two stages (default)".into(), "one stage".into());
        row("handler CPU", two_cpu, one_cpu);
        row("floor: reading answers", two_floor, one_floor);
        row("handler / floor", format!("{two_ratio} (target <= 2x)"), one_ratio);
        row("floor with all its I/O", two_io, one_io);
        row("handler / that floor", two_io_ratio, one_io_ratio);
        assert_eq!(one.calls, expected_one, "one stage: GetMetricData calls must be ceil(N*M/500)");
        assert_eq!(two.calls, expected_two, "two stages: ceil(N/500) + ceil(candidates*(M-1)/500)");
        assert_eq!(two.out.verdicts, one.out.verdicts, "two stages give the verdicts of one");
    });
}
