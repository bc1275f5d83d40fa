//! X-Ray: a UDP listener at AWS_XRAY_DAEMON_ADDRESS receives the policy step's decision subsegments from one
//! handler invocation under a `_X_AMZN_TRACE_ID`, with their names, annotations and parent ids.

use std::net::UdpSocket;
use std::time::Duration;

use finops_aws::{put_json, MemoryRunStore};
use finops_core::policy::PolicyConfig;
use finops_core::steps::{InventoryDocument, UtilisationDocument};
use finops_core::{CriteriaPreset, IdleCriteria, LookbackWindow};
use finops_testkit::fixtures::{instance, now, summary};
use serde_json::{json, Value};

const ROOT: &str = "1-65dfb5a1-0123456789abcdef01234567";
const PARENT: &str = "53995c3f42cd8ad8";

#[tokio::test]
async fn every_decision_is_an_annotated_subsegment_of_the_invocation() {
    let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    // This test binary holds only this test: the environment is the Lambda runtime's per-invocation contract.
    std::env::set_var("AWS_XRAY_DAEMON_ADDRESS", daemon.local_addr().unwrap().to_string());
    std::env::set_var("_X_AMZN_TRACE_ID", format!("Root={ROOT};Parent={PARENT};Sampled=1"));

    let dev = instance("i-0000000000000dev0", "t3.large", &[("Environment", "dev")]);
    let prod = instance("i-000000000000prod0", "r5.large", &[("Environment", "prod")]);
    let store = MemoryRunStore::new("runs");
    let inventory = put_json(
        &store,
        "runs/r-x/inventory.json",
        &InventoryDocument {
            run_id: "r-x".into(),
            regions: vec!["ap-southeast-2".into()],
            collected_at: now(),
            instances: vec![dev.clone(), prod.clone()],
            other_resources: Default::default(),
        },
    )
    .await
    .unwrap();
    let utilisation = put_json(
        &store,
        "runs/r-x/utilisation.json",
        &UtilisationDocument {
            run_id: "r-x".into(),
            window: LookbackWindow::ending_before(now(), 14),
            criteria: IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
            summaries: vec![summary(&dev, true), summary(&prod, true)],
            resources: vec![],
        },
    )
    .await
    .unwrap();
    let recommendation = |id: &str| json!({"instanceId": id, "action": "snapshot_and_stop", "confidence": 0.9, "justification": "idle", "backend": "agent"});
    let event = json!({
        "runId": "r-x", "inventory": inventory, "utilisation": utilisation,
        "recommendations": [recommendation(&dev.instance_id), recommendation(&prod.instance_id), recommendation("i-prod-db-001")]
    });
    let out = finops_policy::handle(event, &store, &PolicyConfig::default(), now()).await.unwrap();
    assert_eq!(out.proposal_count, 1);

    let mut finished: Vec<Value> = Vec::new();
    let mut buffer = [0u8; 65_536];
    while let Ok(n) = daemon.recv(&mut buffer) {
        let packet = std::str::from_utf8(&buffer[..n]).unwrap();
        let (header, document) = packet.split_once('\n').expect("header line, then the document");
        assert_eq!(header, r#"{"format": "json", "version": 1}"#);
        let segment: Value = serde_json::from_str(document).unwrap();
        if segment["in_progress"] != json!(true) {
            finished.push(segment);
        }
    }
    let mut decisions: Vec<(String, String)> = finished
        .iter()
        .map(|s| {
            assert_eq!(s["name"], "finops.policy");
            assert_eq!(s["type"], "subsegment");
            assert_eq!(s["trace_id"], ROOT);
            assert_eq!(s["parent_id"], PARENT, "a child of the invocation's segment");
            assert_eq!(s["annotations"]["run_id"], "r-x");
            assert_eq!(s["annotations"]["agent"], "agent");
            (
                s["annotations"]["resource_id"].as_str().unwrap().to_owned(),
                s["annotations"]["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    decisions.sort();
    assert_eq!(
        decisions,
        [
            ("i-0000000000000dev0".to_string(), "PROPOSED".to_string()),
            ("i-000000000000prod0".to_string(), "DENIED".to_string()),
            ("i-prod-db-001".to_string(), "DENIED".to_string()),
        ],
        "annotation.decision = \"DENIED\" finds both refusals"
    );
}
