//! `finops-bench organization [accounts] [regions] [instances per item]` (default 100 x 4 x 250 = 100,000
//! instances): the organization's detection path with synthetic clients, as the state machine runs it: the planning
//! step, one item step per (account, region) (the Distributed Map's children), the merge. Prints GetMetricData calls
//! against the sum over items of their formula, every state payload's size (the largest of each kind, under Step
//! Functions' 256 KB), the planning and merge times, and the peak memory of one item's handler, measured in a process
//! of its own (`organization-item`), as a Lambda container runs one item.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;
use finops_aws::{get_json, ListedAccounts, MemoryRunStore, PriceBook, SdkPriceList};
use finops_core::organization::{Account, AccountRef, AccountStatus, OrganizationConfig};
use finops_core::steps::ScanItemRequest;
use finops_core::DetectionConfig;
use finops_fanout::synthetic::SyntheticOrganization;
use finops_fanout::{merge, plan, scan_account};
use finops_metrics::{MetricKind, MAX_QUERIES_PER_CALL};
use finops_testkit::peak_rss_bytes;

/// Idle or underutilised share, as in the single-account benchmark: instance numbers n with n mod 100 below it (so 30
/// of an item's 250, 12 %; the benchmark prints the share it got).
const CANDIDATE_PERCENT: u64 = 10;
const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
/// Step Functions' limit on a state's input or output.
const STATE_LIMIT: usize = 256 * 1024;

fn numbers(args: &[String]) -> (usize, usize, usize) {
    let at = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    (at(0, 100), at(1, 4).min(REGIONS.len()), at(2, 250))
}

fn directory(accounts: usize) -> ListedAccounts {
    ListedAccounts(
        (0..accounts)
            .map(|i| Account {
                id: format!("{:012}", 100_000_000_000u64 + i as u64),
                name: format!("team-{i:03}"),
                status: AccountStatus::Active,
                ous: vec![],
                tags: Default::default(),
            })
            .collect(),
    )
}

fn kb(bytes: usize) -> String {
    format!("{:.1} KB", bytes as f64 / 1024.0)
}

pub fn run(args: &[String]) {
    let (accounts, regions, per_item) = numbers(args);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = MemoryRunStore::new("bench-runs");
        let organization = OrganizationConfig::whole_organization();
        let directory = directory(accounts);
        let hub = AccountRef::new(&directory.0[0].id, &directory.0[0].name);
        let regions: Vec<&str> = REGIONS[..regions].to_vec();
        let started = Instant::now();
        let event = serde_json::json!({"runId": "bench-org", "regions": regions, "lookbackDays": 14});
        let planned = plan(event, &directory, &hub, &organization, &store, Utc::now()).await.expect("plan");
        let plan_time = started.elapsed();
        let plan_bytes = serde_json::to_vec(&planned).unwrap().len();
        let items: Vec<ScanItemRequest> = get_json(&store, &planned.items).await.expect("items");

        let org = SyntheticOrganization::new(per_item, CANDIDATE_PERCENT);
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let config = DetectionConfig::default();
        let (mut largest_input, mut largest_output, mut expected_calls, mut candidates) = (0, 0, 0, 0);
        let started = Instant::now();
        for item in &items {
            let input = serde_json::to_value(item).unwrap();
            largest_input = largest_input.max(input.to_string().len());
            let output = scan_account(input, &org, &prices, &store, &config).await.expect("item");
            largest_output = largest_output.max(serde_json::to_vec(&output).unwrap().len());
            candidates += output.candidates;
            // Two stages: one CPU query per instance, then the other five metrics of the candidates.
            expected_calls += output.instance_count.div_ceil(MAX_QUERIES_PER_CALL)
                + (output.candidates * (MetricKind::STANDARD.len() - 1)).div_ceil(MAX_QUERIES_PER_CALL);
        }
        let items_time = started.elapsed();
        let calls = org.metrics.calls.load(Ordering::Relaxed);

        let started = Instant::now();
        let merged = merge(serde_json::to_value(&planned).unwrap(), &store, &config, Utc::now()).await.expect("merge");
        let merge_time = started.elapsed();
        let merge_bytes = serde_json::to_vec(&merged).unwrap().len();
        // What the Map state itself returns with a ResultWriter: where the results went.
        let map_result = serde_json::json!({"MapRunArn": format!("arn:aws:states:us-east-1:{}:mapRun:finops-agent/Scan-Accounts:0f3b2c4e-9d1a-4b6c-8e2f-5a7d9c1b3e4f", hub.id),
            "ResultWriterDetails": {"Bucket": "finops-runs-bucket-0123456789ab", "Key": "map-results/0f3b2c4e-9d1a-4b6c-8e2f-5a7d9c1b3e4f/manifest.json"}});
        let map_bytes = map_result.to_string().len();
        let item_rss = one_item_in_its_own_process(per_item);

        let instances = items.len() * per_item;
        println!(
            "finops-bench: organization, {accounts} accounts x {} regions x {per_item} instances = {instances} instances, {candidates} ({:.1} %) idle or underutilised",
            regions.len(),
            candidates as f64 * 100.0 / instances as f64
        );
        println!("  work items               {} (one child execution each)", items.len());
        println!(
            "  GetMetricData calls      {calls} (the sum over items of ceil(n/500) + ceil(candidates x 5/500) = {expected_calls}; one stage would be ceil(n x 6/500) each = {})",
            items.len() * (per_item * MetricKind::STANDARD.len()).div_ceil(MAX_QUERIES_PER_CALL)
        );
        println!("  metrics requested        {} ({:.2} per instance)", merged.metrics_requested, merged.metrics_requested as f64 / instances as f64);
        println!("  planning step            {} ms, output {}", plan_time.as_millis(), kb(plan_bytes));
        println!("  item steps               {} ms for all {} in one process ({:.1} ms each)", items_time.as_millis(), items.len(), items_time.as_secs_f64() * 1000.0 / items.len() as f64);
        println!("  one item's handler       peak RSS {:.1} MB in a process of its own (target < 128 MB)", item_rss as f64 / 1048576.0);
        println!("  merge step               {} ms, output {} ({} shortlisted, {} more in the document)", merge_time.as_millis(), kb(merge_bytes), merged.shortlist.len(), merged.shortlist_omitted);
        println!("  state payloads           largest: plan {}, item input {}, item output {}, map result {}, merge {} (limit 256 KB)", kb(plan_bytes), kb(largest_input), kb(largest_output), kb(map_bytes), kb(merge_bytes));
        println!("  verdicts                 {:?}", merged.verdicts);
        println!("  process peak RSS         {:.1} MB (the in-memory run store holds every item's document)", peak_rss_bytes() as f64 / 1048576.0);
        assert_eq!(calls, expected_calls, "GetMetricData calls: the sum over items of the two-stage formula");
        assert_eq!(merged.instance_count, instances);
        for (what, bytes) in [("plan", plan_bytes), ("item input", largest_input), ("item output", largest_output), ("map", map_bytes), ("merge", merge_bytes)] {
            assert!(bytes < STATE_LIMIT, "{what}: {bytes} bytes is over Step Functions' 256 KB");
        }
    });
}

/// Runs `organization-item <instances>` in a new process and reads the peak RSS it prints.
fn one_item_in_its_own_process(per_item: usize) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().expect("this benchmark"))
        .args(["organization-item", &per_item.to_string()])
        .output()
        .expect("the item process");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("peak RSS in bytes")
}

/// One item's handler, alone in this process; prints its peak RSS in bytes.
pub fn one_item(args: &[String]) {
    let per_item: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(250);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let store = MemoryRunStore::new("bench-runs");
        let org = SyntheticOrganization::new(per_item, CANDIDATE_PERCENT);
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let item = serde_json::json!({"runId": "bench-org", "account": {"id": "100000000001", "name": "team-001"},
            "region": "us-east-1", "asOf": Utc::now(), "lookbackDays": 14});
        scan_account(item, &org, &prices, &store, &DetectionConfig::default()).await.expect("item");
    });
    println!("{}", peak_rss_bytes());
}
