//! The inventory step: every running EC2 instance of the configured regions, with tags, attached EBS volumes,
//! lifecycle, platform, root device type, instance storage and Auto Scaling / EKS / EMR membership; and the other
//! resource kinds that cost money idle (unattached volumes, Elastic IPs, stopped instances, NAT gateways, load
//! balancers).
//!
//! [`handle`] is the Lambda handler, generic over where instances and other resources come from
//! ([`InventorySource`], [`ResourceInventory`]) and where the document goes ([`RunStore`]); [`Ec2Inventory`] is
//! the SDK adapter. The fleet goes to the run bucket; the state
//! output carries a reference and counts only.

pub mod ec2;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{put_json, validate_run_id, FinopsError, RunStore};
use finops_core::resources::OtherResources;
use finops_core::steps::{InventoryDocument, InventoryOutput};
pub use finops_core::steps::{InventoryRequest, Regions};
use finops_core::{InstanceRecord, ProgressEvent, ProgressSink};

pub use ec2::Ec2Inventory;

/// Where running instances come from: EC2 in deployments, a fake in benchmarks.
pub trait InventorySource: Send + Sync {
    fn running_instances(&self, region: &str) -> impl Future<Output = Result<Vec<InstanceRecord>, FinopsError>> + Send;
}

/// One instance as the inventory records it, in any state: what the agent tools look up and what the actions step
/// re-checks right before it acts. A read capability: the types that implement it cannot change an instance.
pub trait InstanceLookup: Send + Sync {
    fn describe_instance(
        &self,
        region: &str,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<InstanceRecord>, FinopsError>> + Send;
}

/// Resources beyond running instances ([`finops_core::resources`]): EBS volumes attached to nothing, Elastic IP
/// addresses, stopped instances, NAT gateways and load balancers of one region. Reads only.
pub trait ResourceInventory: Send + Sync {
    fn other_resources(&self, region: &str) -> impl Future<Output = Result<OtherResources, FinopsError>> + Send;
}

/// An EBS volume as EC2 says it is now, in any state: what the actions step re-checks right before it deletes one.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveVolume {
    pub record: finops_core::resources::UnattachedVolume,
    /// EC2's VolumeState: `available`, `in-use`, `creating`, `deleting`, ...
    pub state: String,
    /// The instances it is attached to (none when `available`).
    pub attached_to: Vec<String>,
    /// Where it is: a volume recreated from its snapshot goes back there.
    pub availability_zone: String,
}

/// One volume or Elastic IP as EC2 says it is now (None: EC2 does not know the id). A read capability, for the
/// actions step's re-check before it deletes or releases: the types that implement it cannot change either.
pub trait ResourceLookup: Send + Sync {
    fn describe_volume(
        &self,
        region: &str,
        volume_id: &str,
    ) -> impl Future<Output = Result<Option<LiveVolume>, FinopsError>> + Send;
    fn describe_address(
        &self,
        region: &str,
        allocation_id: &str,
    ) -> impl Future<Output = Result<Option<finops_core::resources::ElasticAddress>, FinopsError>> + Send;
}

/// Reads the step's input, naming what is wrong with it.
pub fn parse_request(event: &serde_json::Value) -> Result<InventoryRequest, FinopsError> {
    let request: InventoryRequest = serde_json::from_value(event.clone()).map_err(|e| {
        FinopsError::InvalidInput(format!(
            "inventory expects {{\"regions\": [\"ap-southeast-2\", ...], \"runId\": \"...\"}}: {e}"
        ))
    })?;
    Ok(request)
}

/// A run id for runs started without one (a schedule passes the execution name).
pub fn default_run_id(now: DateTime<Utc>) -> String {
    format!("run-{}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Lists running instances in each region, in order.
pub async fn collect_inventory<S: InventorySource>(
    source: &S,
    regions: &[String],
    progress: &dyn ProgressSink,
) -> Result<Vec<InstanceRecord>, FinopsError> {
    let mut all = Vec::new();
    for region in regions {
        let found = source.running_instances(region).await?;
        progress.report(ProgressEvent::InventoryRegion { region: region.clone(), instances: found.len() });
        all.extend(found);
    }
    Ok(all)
}

/// The other resources of each region, in order.
pub async fn collect_resources<S: ResourceInventory>(
    source: &S,
    regions: &[String],
) -> Result<OtherResources, FinopsError> {
    let mut all = OtherResources::default();
    for region in regions {
        all.extend(source.other_resources(region).await?);
    }
    Ok(all)
}

/// The Lambda handler. A run scoped to named instances (the single-instance entry) lists no other resources.
pub async fn handle<S: InventorySource + ResourceInventory, R: RunStore>(
    event: serde_json::Value,
    source: &S,
    store: &R,
    now: DateTime<Utc>,
) -> Result<InventoryOutput, FinopsError> {
    let request = parse_request(&event)?;
    let regions = request.regions().map_err(FinopsError::InvalidInput)?;
    let run_id = request.run_id.clone().unwrap_or_else(|| default_run_id(now));
    validate_run_id(&run_id)?;

    let mut instances = collect_inventory(source, &regions, &finops_core::Silent).await?;
    if let Some(wanted) = &request.instance_ids {
        instances.retain(|i| wanted.contains(&i.instance_id));
    }
    let mut instances_by_region: BTreeMap<String, usize> = regions.iter().map(|r| (r.clone(), 0)).collect();
    for i in &instances {
        *instances_by_region.entry(i.region.clone()).or_default() += 1;
    }
    let instance_count = instances.len();
    let other_resources = match &request.instance_ids {
        Some(_) => OtherResources::default(),
        None => collect_resources(source, &regions).await?,
    };
    let other_count = other_resources.len();
    let document = InventoryDocument {
        run_id: run_id.clone(),
        regions: regions.clone(),
        collected_at: now,
        instances,
        other_resources,
    };
    let inventory = put_json(store, &format!("runs/{run_id}/inventory.json"), &document).await?;
    tracing::info!(run_id, instance_count, other_count, bytes = inventory.bytes, "inventory stored");
    Ok(InventoryOutput { run_id, regions, inventory, instance_count, instances_by_region })
}

/// The inventory step as the Lambda and the local runner build it: EC2 per region, documents to the run bucket.
pub struct InventoryStep {
    source: Ec2Inventory,
    store: finops_aws::S3RunStore,
}

impl InventoryStep {
    /// Needs `FINOPS_RUN_BUCKET` (in `config`).
    pub fn new(sdk: &aws_config::SdkConfig, config: &finops_core::DetectionConfig) -> Result<Self, FinopsError> {
        let bucket = config.required_run_bucket()?;
        Ok(Self { source: Ec2Inventory::new(sdk.clone()), store: finops_aws::S3RunStore::new(sdk, bucket) })
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<InventoryOutput, FinopsError> {
        handle(event, &self.source, &self.store, now).await
    }
}
