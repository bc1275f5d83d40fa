//! The inventory handler against a real moto server: EC2 and S3 as a user's account would hold them.

use chrono::Utc;
use finops_aws::get_json;
use finops_core::steps::InventoryDocument;
use finops_core::{InstanceStorage, Lifecycle, RootDeviceType};
use finops_inventory::{handle, Ec2Inventory, InstanceLookup};
use finops_testkit::moto;
use finops_testkit::seed::{launch, linux_image_id, run_bucket, InstanceSpec};
use serde_json::json;

const BUCKET: &str = "finops-runs";

#[tokio::test]
async fn records_tags_volumes_lifecycle_and_membership_across_two_regions() {
    let moto = moto().await;
    let syd = moto.sdk_config("ap-southeast-2").await;
    let use1 = moto.sdk_config("us-east-1").await;
    let ec2_syd = aws_sdk_ec2::Client::new(&syd);
    let ec2_use1 = aws_sdk_ec2::Client::new(&use1);
    let ami_syd = linux_image_id(&ec2_syd).await;
    let ami_use1 = linux_image_id(&ec2_use1).await;

    let dev = launch(
        &ec2_syd,
        &ami_syd,
        &InstanceSpec::new("dev-box", "t3.large").tag("Environment", "dev").tag("Owner", "ana"),
        2,
    )
    .await;
    let asg = launch(
        &ec2_syd,
        &ami_syd,
        &InstanceSpec::new("web", "m5.large").tag("aws:autoscaling:groupName", "web-asg"),
        1,
    )
    .await;
    let eks = launch(
        &ec2_use1,
        &ami_use1,
        &InstanceSpec::new("node", "m5.xlarge").tag("kubernetes.io/cluster/prod", "owned"),
        1,
    )
    .await;
    let spot = launch(&ec2_use1, &ami_use1, &InstanceSpec::new("batch", "c5.large").spot(), 1).await;
    let nvme =
        launch(&ec2_syd, &ami_syd, &InstanceSpec::new("scratch", "m5d.large").tag("Environment", "dev"), 1).await;
    let untagged = launch(&ec2_use1, &ami_use1, &InstanceSpec::new("", "t3.micro").untagged(), 1).await;
    let stopped = launch(&ec2_use1, &ami_use1, &InstanceSpec::new("off", "t3.micro"), 1).await;
    ec2_use1.stop_instances().instance_ids(&stopped[0]).send().await.unwrap();

    let store = run_bucket(&syd, BUCKET).await;
    let source = Ec2Inventory::new(syd.clone());
    let out =
        handle(json!({"runId": "run-1", "regions": ["ap-southeast-2", "us-east-1"]}), &source, &store, Utc::now())
            .await
            .expect("inventory");

    assert_eq!(out.run_id, "run-1");
    assert_eq!(out.instance_count, 7, "stopped instance excluded");
    assert_eq!(out.instances_by_region["ap-southeast-2"], 4);
    assert_eq!(out.instances_by_region["us-east-1"], 3);
    assert_eq!(out.inventory.key, "runs/run-1/inventory.json");

    let doc: InventoryDocument = get_json(&store, &out.inventory).await.expect("document in S3");
    assert_eq!(doc.instances.len(), 7);
    let find = |id: &str| doc.instances.iter().find(|i| i.instance_id == id).unwrap_or_else(|| panic!("{id} missing"));

    let d = find(&dev[0]);
    assert_eq!(d.region, "ap-southeast-2");
    assert_eq!(d.instance_type, "t3.large");
    assert_eq!(d.state, "running");
    assert_eq!(d.tags["Environment"], "dev");
    assert_eq!(d.name(), Some("dev-box"));
    assert_eq!(d.lifecycle, Lifecycle::OnDemand);
    assert_eq!(d.root_device_type, RootDeviceType::Ebs);
    assert!(!d.membership.is_managed());
    assert_eq!(d.volumes.len(), 1);
    assert_eq!(d.volumes[0].size_gib, 20);
    assert_eq!(d.volumes[0].volume_type, "gp3");
    assert!(d.launch_time < Utc::now() - chrono::Duration::days(59), "backdated launch time: {}", d.launch_time);

    assert_eq!(find(&asg[0]).membership.auto_scaling_group.as_deref(), Some("web-asg"));
    assert_eq!(find(&eks[0]).membership.eks_cluster.as_deref(), Some("prod"));
    assert_eq!(find(&eks[0]).region, "us-east-1");
    assert_eq!(find(&spot[0]).lifecycle, Lifecycle::Spot);
    let bare = find(&untagged[0]);
    assert_eq!(bare.name(), None);
    assert!(!bare.membership.is_managed());
    assert!(doc.instances.iter().all(|i| i.instance_id != stopped[0]));

    // Instance storage from DescribeInstanceTypes: m5d.large has a 75 GB NVMe disk that a stop would erase.
    assert_eq!(d.instance_storage, InstanceStorage::None);
    assert_eq!(find(&nvme[0]).instance_storage, InstanceStorage::Present { total_gib: 75 });

    // The lookup the actions step and the agent tools use: any state, same record; unknown ids are None.
    let lookup = Ec2Inventory::new(use1.clone());
    let off = lookup.describe_instance("us-east-1", &stopped[0]).await.unwrap().expect("stopped instance");
    assert_eq!(off.state, "stopped");
    assert_eq!(off.instance_storage, InstanceStorage::None);
    let again = lookup.describe_instance("ap-southeast-2", &nvme[0]).await.unwrap().expect("nvme instance");
    assert_eq!(again, *find(&nvme[0]), "the lookup records an instance exactly as the inventory does");
    assert_eq!(lookup.describe_instance("us-east-1", "i-0123456789abcdef0").await.unwrap(), None);
}

/// moto pages DescribeInstances by reservation: more than 1,000 reservations need a second page.
#[tokio::test]
async fn follows_next_token_past_a_thousand_reservations() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&ec2).await;
    const RESERVATIONS: usize = 1_010;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let spec = InstanceSpec::new("fleet", "t3.micro");
    for _ in 0..RESERVATIONS {
        let (ec2, ami, spec) = (ec2.clone(), ami.clone(), spec.clone());
        tasks.spawn(async move { launch(&ec2, &ami, &spec, 1).await });
        if tasks.len() >= 8 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eprintln!("seeded {RESERVATIONS} reservations in {:?}", started.elapsed());

    let store = run_bucket(&config, BUCKET).await;
    let out = handle(
        json!({"runId": "big", "regions": "ap-southeast-2"}),
        &Ec2Inventory::new(config.clone()),
        &store,
        Utc::now(),
    )
    .await
    .expect("inventory");
    assert_eq!(out.instance_count, RESERVATIONS);
    let doc: InventoryDocument = get_json(&store, &out.inventory).await.unwrap();
    let mut ids: Vec<&str> = doc.instances.iter().map(|i| i.instance_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RESERVATIONS, "no instance twice, none lost across pages");
    assert!(doc.instances.iter().all(|i| i.volumes.len() == 1), "volumes found for every instance (chunked filter)");
    // The state output is a reference and counts, not the fleet.
    let output_bytes = serde_json::to_vec(&out).unwrap().len();
    assert!(output_bytes < 1_000, "state output is {output_bytes} bytes");
    assert!(out.inventory.bytes > 100_000, "the fleet went to S3 ({} bytes)", out.inventory.bytes);
}

#[tokio::test]
async fn bad_events_are_typed_invalid_input() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let store = run_bucket(&config, BUCKET).await;
    let source = Ec2Inventory::new(config.clone());
    for (event, needle) in [
        (json!("not an object"), "inventory expects"),
        (json!({"region": "ap-southeast-2"}), "regions"),
        (json!({"regions": 42}), "inventory expects"),
        (json!({"regions": ["ap-southest-2"]}), "ap-southest-2"),
        (json!({"regions": []}), "empty"),
        (json!({"regions": ["us-east-1"], "runId": "../../etc"}), "runId"),
    ] {
        let err = handle(event.clone(), &source, &store, Utc::now()).await.expect_err(&event.to_string());
        assert_eq!(err.error_name(), "Finops.InvalidInput", "{event}");
        assert!(err.to_string().contains(needle), "{event}: {err}");
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "Finops.InvalidInput");
    }
}
