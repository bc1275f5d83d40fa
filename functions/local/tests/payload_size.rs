//! Step Functions limits a state's input and output to 256 KB. A run over 5,000 instances (synthetic CloudWatch;
//! moto is too slow at that size) goes through the real handlers, and the state the ASL accumulates stays small.

use chrono::Utc;
use finops_aws::{FinopsError, MemoryRunStore, PriceBook, SdkPriceList};
use finops_core::policy::PolicyConfig;
use finops_core::resources::{ElasticAddress, OtherResources, UnattachedVolume};
use finops_core::{DetectionConfig, InstanceRecord};
use finops_inventory::{InventorySource, ResourceInventory};
use finops_metrics::synthetic::SyntheticMetrics;
use finops_testkit::fixtures::instance;
use serde_json::{json, Value};

const LIMIT: usize = 256 * 1024;

struct FakeFleet(Vec<InstanceRecord>);

impl InventorySource for FakeFleet {
    async fn running_instances(&self, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
        Ok(self.0.iter().filter(|i| i.region == region).cloned().collect())
    }
}

/// As many unattached volumes and Elastic IPs as a careless account collects: 1,000 of each.
impl ResourceInventory for FakeFleet {
    async fn other_resources(&self, region: &str) -> Result<OtherResources, FinopsError> {
        let volumes = (0..1_000)
            .map(|n| UnattachedVolume {
                volume_id: format!("vol-{n:017x}"),
                region: region.to_owned(),
                volume_type: "gp3".into(),
                size_gib: 100,
                create_time: Utc::now() - chrono::Duration::days(90),
                tags: [("Name".to_owned(), format!("old-data-{n}"))].into(),
                account: None,
            })
            .collect();
        let addresses = (0..1_000)
            .map(|n| ElasticAddress {
                allocation_id: format!("eipalloc-{n:017x}"),
                public_ip: format!("198.51.{}.{}", n / 250, n % 250),
                region: region.to_owned(),
                association_id: None,
                tags: Default::default(),
                account: None,
            })
            .collect();
        Ok(OtherResources { volumes, addresses, ..Default::default() })
    }
}

fn size(v: &Value) -> usize {
    serde_json::to_vec(v).unwrap().len()
}

#[tokio::test]
async fn the_largest_state_of_a_5000_instance_run_stays_under_256_kb() {
    let fleet: Vec<InstanceRecord> = (0..5_000)
        .map(|n| {
            let mut i = instance(
                &format!("i-{n:017x}"),
                "m5.large",
                &[("Environment", "dev"), ("Name", &format!("build-agent-{n}")), ("Owner", "platform@example.com")],
            );
            i.launch_time = Utc::now() - chrono::Duration::days(90);
            i
        })
        .collect();
    let idle = fleet.iter().filter(|i| SyntheticMetrics::looks_idle(50, &i.instance_id)).count();
    assert_eq!(idle, 2_500, "half the fleet idle");
    let store = MemoryRunStore::new("finops-runs");
    let detection = DetectionConfig { run_bucket: Some("finops-runs".into()), ..DetectionConfig::default() };
    let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
    let now = Utc::now();

    let input = json!({"regions": ["ap-southeast-2"], "mode": "act", "lookbackDays": 14});
    let inventory = serde_json::to_value(
        finops_inventory::handle(
            json!({"runId": "big", "regions": ["ap-southeast-2"]}),
            &FakeFleet(fleet),
            &store,
            now,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let metrics_event = json!({"runId": "big", "inventory": inventory["inventory"], "lookbackDays": 14});
    let metrics = serde_json::to_value(
        finops_metrics::handle(metrics_event, &SyntheticMetrics::default(), &prices, &store, &detection, now)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["verdicts"]["idle"], idle);
    let reasoning = serde_json::to_value(
        finops_reasoning::handle(metrics.clone(), &store, &finops_reasoning::Rules, now).await.unwrap(),
    )
    .unwrap();
    let policy = serde_json::to_value(
        finops_policy::handle(reasoning.clone(), &store, &PolicyConfig::default(), now).await.unwrap(),
    )
    .unwrap();

    // The state as the ASL builds it before the approval map: ResultSelectors keep references and counts.
    let state = json!({
        "regions": input["regions"], "mode": input["mode"], "lookbackDays": 14,
        "detection": {"runId": inventory["runId"], "inventory": inventory["inventory"], "instanceCount": inventory["instanceCount"]},
        "metrics": {"output": metrics},
        "reasoning": {"output": reasoning},
        "policy": {
            "proposals": policy["proposals"], "proposalCount": policy["proposalCount"], "denialCounts": policy["denialCounts"],
            "proposedMonthlySavingUsd": policy["proposedMonthlySavingUsd"], "policy": policy["policy"],
            "resources": policy["resources"]
        }
    });
    let sizes = [
        ("inventory output", size(&inventory)),
        ("metrics output", size(&state["metrics"]["output"])),
        ("reasoning output", size(&state["reasoning"]["output"])),
        ("policy output", size(&policy)),
        ("state before the approval map", size(&state)),
    ];
    for (what, bytes) in sizes {
        eprintln!("{what}: {bytes} bytes");
        assert!(bytes < LIMIT, "{what} is {bytes} bytes");
    }
    assert_eq!(state["policy"]["proposalCount"], 10, "the per-run cap bounds the map");
    assert_eq!(
        state["policy"]["resources"]["found"], 2_000,
        "the other resources are counted, not listed, in the state"
    );
    assert!(
        state["reasoning"]["output"]["recommendationsRef"].is_object()
            || state["reasoning"]["output"]["recommendations"].is_array()
    );
}
