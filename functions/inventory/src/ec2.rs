//! The EC2 adapter: DescribeInstances (running, paginated) and DescribeVolumes for the attached volumes.

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Instance, InstanceLifecycleType, PlatformValues, Volume};
use chrono::{DateTime, Utc};
use finops_aws::sdk::RegionalClient;
use finops_aws::FinopsError;
use finops_core::{ClusterMembership, InstanceRecord, Lifecycle, RootDeviceType, VolumeRecord};

use crate::InventorySource;

/// DescribeInstances page size (the API's maximum).
pub const INSTANCES_PAGE_SIZE: i32 = 1000;
/// Values per DescribeVolumes filter (the API accepts up to 200).
const VOLUME_FILTER_CHUNK: usize = 200;

/// EC2 clients per region from one SDK configuration.
pub struct Ec2Inventory {
    clients: RegionalClient<aws_sdk_ec2::Client>,
}

impl Ec2Inventory {
    pub fn new(config: SdkConfig) -> Self {
        Self { clients: RegionalClient::new(config, aws_sdk_ec2::Client::new) }
    }
}

impl InventorySource for Ec2Inventory {
    async fn running_instances(&self, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
        describe_region(&self.clients.for_region(region), region).await
    }
}

/// Running instances of one region with their volumes, following every NextToken.
pub async fn describe_region(client: &aws_sdk_ec2::Client, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
    let mut instances = Vec::new();
    let mut pages = client
        .describe_instances()
        .max_results(INSTANCES_PAGE_SIZE)
        .filters(Filter::builder().name("instance-state-name").values("running").build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeInstances", e))?;
        for reservation in page.reservations() {
            instances.extend(reservation.instances().iter().cloned());
        }
    }
    let ids: Vec<String> = instances.iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
    let volumes = attached_volumes(client, &ids).await?;
    Ok(instances.iter().filter_map(|i| to_record(i, region, &volumes)).collect())
}

/// Volumes attached to the given instances, by instance id.
pub async fn attached_volumes(
    client: &aws_sdk_ec2::Client,
    instance_ids: &[String],
) -> Result<HashMap<String, Vec<VolumeRecord>>, FinopsError> {
    let mut by_instance: HashMap<String, Vec<VolumeRecord>> = HashMap::new();
    for chunk in instance_ids.chunks(VOLUME_FILTER_CHUNK) {
        let mut pages = client
            .describe_volumes()
            .max_results(500)
            .filters(Filter::builder().name("attachment.instance-id").set_values(Some(chunk.to_vec())).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeVolumes", e))?;
            for volume in page.volumes() {
                for (instance_id, record) in volume_records(volume) {
                    by_instance.entry(instance_id).or_default().push(record);
                }
            }
        }
    }
    Ok(by_instance)
}

fn volume_records(volume: &Volume) -> Vec<(String, VolumeRecord)> {
    let Some(volume_id) = volume.volume_id() else { return Vec::new() };
    volume
        .attachments()
        .iter()
        .filter_map(|a| {
            let instance_id = a.instance_id()?.to_owned();
            Some((
                instance_id,
                VolumeRecord {
                    volume_id: volume_id.to_owned(),
                    device_name: a.device().map(str::to_owned),
                    size_gib: volume.size().unwrap_or(0).max(0) as u32,
                    volume_type: volume
                        .volume_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".into()),
                    iops: volume.iops().map(|i| i.max(0) as u32),
                    delete_on_termination: a.delete_on_termination().unwrap_or(false),
                },
            ))
        })
        .collect()
}

/// Maps one EC2 instance; `None` only for an instance without an id (never seen from EC2, but not worth a panic).
pub fn to_record(i: &Instance, region: &str, volumes: &HashMap<String, Vec<VolumeRecord>>) -> Option<InstanceRecord> {
    let instance_id = i.instance_id()?.to_owned();
    let tags: BTreeMap<String, String> =
        i.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect();
    let launch_time = i
        .launch_time()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_else(|| {
            // Unknown age counts as new: the criteria then give InsufficientData, never Idle.
            tracing::warn!(instance_id, "instance without LaunchTime; treated as just launched");
            Utc::now()
        });
    let lifecycle = match i.instance_lifecycle() {
        None => Lifecycle::OnDemand,
        Some(InstanceLifecycleType::Spot) => Lifecycle::Spot,
        Some(_) => Lifecycle::Other,
    };
    let platform = match i.platform() {
        Some(PlatformValues::Windows) => "windows".to_owned(),
        _ => i.platform_details().unwrap_or("Linux/UNIX").to_owned(),
    };
    let root_device_type = match i.root_device_type().map(|r| r.as_str()) {
        Some("instance-store") => RootDeviceType::InstanceStore,
        _ => RootDeviceType::Ebs,
    };
    let mut attached = volumes.get(&instance_id).cloned().unwrap_or_default();
    attached.sort_by(|a, b| a.device_name.cmp(&b.device_name).then_with(|| a.volume_id.cmp(&b.volume_id)));
    Some(InstanceRecord {
        region: region.to_owned(),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_else(|| "unknown".into()),
        state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_else(|| "unknown".into()),
        launch_time,
        lifecycle,
        platform,
        root_device_type,
        membership: ClusterMembership::from_tags(&tags),
        tags,
        volumes: attached,
        instance_id,
    })
}
