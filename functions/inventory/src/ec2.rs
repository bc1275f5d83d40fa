//! The EC2 adapter: DescribeInstances (running, paginated), DescribeVolumes for the attached volumes and
//! DescribeInstanceTypes for instance storage; for the other resources DescribeVolumes (available),
//! DescribeAddresses, DescribeInstances (stopped), DescribeNatGateways and ELBv2's DescribeLoadBalancers, DescribeTags,
//! DescribeTargetGroups and DescribeTargetHealth. Read-only: nothing here can change an instance.

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, Instance, InstanceLifecycleType, InstanceType, PlatformValues, Volume};
use chrono::{DateTime, Utc};
use finops_aws::sdk::RegionalClient;
use finops_aws::FinopsError;
use finops_core::{ClusterMembership, InstanceRecord, InstanceStorage, Lifecycle, RootDeviceType, VolumeRecord};

use crate::{InstanceLookup, InventorySource, LiveVolume, ResourceLookup};

/// DescribeInstances page size (the API's maximum).
pub const INSTANCES_PAGE_SIZE: i32 = 1000;
/// Values per DescribeVolumes filter (the API accepts up to 200).
const VOLUME_FILTER_CHUNK: usize = 200;
/// Instance types per DescribeInstanceTypes call (the API's maximum).
const INSTANCE_TYPES_CHUNK: usize = 100;

/// EC2 clients per region from one SDK configuration (and Elastic Load Balancing's, for the load balancers among
/// the other resources).
pub struct Ec2Inventory {
    clients: RegionalClient<aws_sdk_ec2::Client>,
    elb: RegionalClient<aws_sdk_elasticloadbalancingv2::Client>,
}

impl Ec2Inventory {
    pub fn new(config: SdkConfig) -> Self {
        Self {
            clients: RegionalClient::new(config.clone(), aws_sdk_ec2::Client::new),
            elb: RegionalClient::new(config, aws_sdk_elasticloadbalancingv2::Client::new),
        }
    }
}

impl InventorySource for Ec2Inventory {
    async fn running_instances(&self, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
        describe_region(&self.clients.for_region(region), region).await
    }
}

impl InstanceLookup for Ec2Inventory {
    async fn describe_instance(&self, region: &str, instance_id: &str) -> Result<Option<InstanceRecord>, FinopsError> {
        describe_one(&self.clients.for_region(region), region, instance_id).await
    }
}

impl crate::ResourceInventory for Ec2Inventory {
    async fn other_resources(&self, region: &str) -> Result<finops_core::resources::OtherResources, FinopsError> {
        Ok(finops_core::resources::OtherResources {
            volumes: self.unattached_volumes(region).await?,
            addresses: self.elastic_addresses(region).await?,
            stopped_instances: self.stopped_instances(region).await?,
            nat_gateways: self.nat_gateways(region).await?,
            load_balancers: self.load_balancers(region).await?,
        })
    }
}

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

fn utc(t: &aws_sdk_ec2::primitives::DateTime) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(t.secs(), 0).unwrap_or_default()
}

impl Ec2Inventory {
    /// Instances in state `stopped`, with their attached volumes and when they were stopped.
    pub async fn stopped_instances(
        &self,
        region: &str,
    ) -> Result<Vec<finops_core::resources::StoppedInstance>, FinopsError> {
        let client = self.clients.for_region(region);
        let instances = describe_in_state(&client, "stopped").await?;
        let ids: Vec<String> = instances.iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
        let mut volumes = attached_volumes(&client, &ids).await?;
        Ok(instances
            .iter()
            .filter_map(|i| {
                let instance_id = i.instance_id()?.to_owned();
                Some(finops_core::resources::StoppedInstance {
                    region: region.to_owned(),
                    instance_type: i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                    stopped_since: i.state_transition_reason().and_then(finops_core::resources::stopped_since),
                    launch_time: i.launch_time().map(utc),
                    volumes: volumes.remove(&instance_id).unwrap_or_default(),
                    tags: tag_map(i.tags()),
                    instance_id,
                    account: None,
                })
            })
            .collect())
    }

    /// Load balancers (ELBv2) in state `active`, with their tags (DescribeTags, 20 to a call) and their healthy
    /// targets now (DescribeTargetGroups, DescribeTargetHealth).
    pub async fn load_balancers(&self, region: &str) -> Result<Vec<finops_core::resources::LoadBalancer>, FinopsError> {
        let elb = self.elb.for_region(region);
        let mut found = Vec::new();
        let mut pages = elb.describe_load_balancers().page_size(400).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("ElasticLoadBalancing", "DescribeLoadBalancers", e))?;
            for lb in page.load_balancers() {
                // Provisioning and active ones bill; a failed one does not.
                let active = lb.state().and_then(|s| s.code()).is_none_or(|c| c.as_str() != "failed");
                let (Some(arn), Some(created), true) = (lb.load_balancer_arn(), lb.created_time(), active) else {
                    continue;
                };
                found.push(finops_core::resources::LoadBalancer {
                    arn: arn.to_owned(),
                    name: lb.load_balancer_name().unwrap_or_default().to_owned(),
                    region: region.to_owned(),
                    lb_type: lb.r#type().map(|t| t.as_str().to_owned()).unwrap_or_else(|| "application".into()),
                    create_time: DateTime::<Utc>::from_timestamp(created.secs(), 0).unwrap_or_default(),
                    healthy_targets: 0,
                    tags: BTreeMap::new(),
                    account: None,
                });
            }
        }
        for chunk in found.chunks_mut(20) {
            let arns: Vec<String> = chunk.iter().map(|l| l.arn.clone()).collect();
            let out = elb
                .describe_tags()
                .set_resource_arns(Some(arns))
                .send()
                .await
                .map_err(|e| FinopsError::from_sdk("ElasticLoadBalancing", "DescribeTags", e))?;
            for description in out.tag_descriptions() {
                let Some(lb) = chunk.iter_mut().find(|l| Some(l.arn.as_str()) == description.resource_arn()) else {
                    continue;
                };
                lb.tags = description
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
            }
        }
        for lb in &mut found {
            let groups = elb
                .describe_target_groups()
                .load_balancer_arn(&lb.arn)
                .send()
                .await
                .map_err(|e| FinopsError::from_sdk("ElasticLoadBalancing", "DescribeTargetGroups", e))?;
            for group in groups.target_groups() {
                let Some(group_arn) = group.target_group_arn() else { continue };
                let health = elb
                    .describe_target_health()
                    .target_group_arn(group_arn)
                    .send()
                    .await
                    .map_err(|e| FinopsError::from_sdk("ElasticLoadBalancing", "DescribeTargetHealth", e))?;
                let healthy = health
                    .target_health_descriptions()
                    .iter()
                    .filter(|d| d.target_health().and_then(|h| h.state()).is_some_and(|s| s.as_str() == "healthy"))
                    .count();
                lb.healthy_targets += u32::try_from(healthy).unwrap_or(u32::MAX);
            }
        }
        Ok(found)
    }

    /// NAT gateways in state `available` (the ones that bill).
    pub async fn nat_gateways(&self, region: &str) -> Result<Vec<finops_core::resources::NatGateway>, FinopsError> {
        let client = self.clients.for_region(region);
        let mut found = Vec::new();
        let mut pages = client
            .describe_nat_gateways()
            .filter(Filter::builder().name("state").values("available").build())
            .max_results(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeNatGateways", e))?;
            for n in page.nat_gateways() {
                let (Some(id), Some(created)) = (n.nat_gateway_id(), n.create_time()) else { continue };
                found.push(finops_core::resources::NatGateway {
                    nat_gateway_id: id.to_owned(),
                    region: region.to_owned(),
                    vpc_id: n.vpc_id().unwrap_or_default().to_owned(),
                    create_time: utc(created),
                    tags: tag_map(n.tags()),
                    account: None,
                });
            }
        }
        Ok(found)
    }

    /// EBS volumes in state `available`.
    pub async fn unattached_volumes(
        &self,
        region: &str,
    ) -> Result<Vec<finops_core::resources::UnattachedVolume>, FinopsError> {
        let client = self.clients.for_region(region);
        let mut found = Vec::new();
        let mut pages = client
            .describe_volumes()
            .filters(Filter::builder().name("status").values("available").build())
            .max_results(500)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeVolumes", e))?;
            found.extend(page.volumes().iter().filter_map(|v| volume_record(v, region)));
        }
        Ok(found)
    }

    /// Elastic IP addresses, associated or not.
    pub async fn elastic_addresses(
        &self,
        region: &str,
    ) -> Result<Vec<finops_core::resources::ElasticAddress>, FinopsError> {
        // DescribeAddresses is not paginated: a region holds at most a few hundred addresses.
        let out = self
            .clients
            .for_region(region)
            .describe_addresses()
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DescribeAddresses", e))?;
        Ok(out.addresses().iter().filter_map(|a| address_record(a, region)).collect())
    }
}

/// A volume as the inventory records it (its state aside).
fn volume_record(v: &Volume, region: &str) -> Option<finops_core::resources::UnattachedVolume> {
    Some(finops_core::resources::UnattachedVolume {
        volume_id: v.volume_id()?.to_owned(),
        region: region.to_owned(),
        volume_type: v.volume_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        size_gib: v.size().and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
        create_time: utc(v.create_time()?),
        tags: tag_map(v.tags()),
        account: None,
    })
}

fn address_record(a: &aws_sdk_ec2::types::Address, region: &str) -> Option<finops_core::resources::ElasticAddress> {
    Some(finops_core::resources::ElasticAddress {
        allocation_id: a.allocation_id()?.to_owned(),
        public_ip: a.public_ip().unwrap_or_default().to_owned(),
        region: region.to_owned(),
        association_id: a
            .association_id()
            .or(a.instance_id())
            .or(a.network_interface_id())
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        tags: tag_map(a.tags()),
        account: None,
    })
}

/// EC2's "no such id" answers, which a lookup reports as None.
fn not_found(e: &FinopsError) -> bool {
    matches!(e, FinopsError::Aws { code, .. } if code.ends_with(".NotFound"))
}

impl ResourceLookup for Ec2Inventory {
    async fn describe_volume(&self, region: &str, volume_id: &str) -> Result<Option<LiveVolume>, FinopsError> {
        let answer = self.clients.for_region(region).describe_volumes().volume_ids(volume_id).send().await;
        let out = match answer.map_err(|e| FinopsError::from_sdk("EC2", "DescribeVolumes", e)) {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out.volumes().iter().find(|v| v.volume_id() == Some(volume_id)).and_then(|v| {
            Some(LiveVolume {
                record: volume_record(v, region)?,
                state: v.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                attached_to: v.attachments().iter().filter_map(|a| a.instance_id().map(str::to_owned)).collect(),
                availability_zone: v.availability_zone().unwrap_or_default().to_owned(),
            })
        }))
    }

    async fn describe_address(
        &self,
        region: &str,
        allocation_id: &str,
    ) -> Result<Option<finops_core::resources::ElasticAddress>, FinopsError> {
        let answer = self.clients.for_region(region).describe_addresses().allocation_ids(allocation_id).send().await;
        let out = match answer.map_err(|e| FinopsError::from_sdk("EC2", "DescribeAddresses", e)) {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .addresses()
            .iter()
            .find(|a| a.allocation_id() == Some(allocation_id))
            .and_then(|a| address_record(a, region)))
    }
}

/// One instance in any state, recorded as the inventory records running ones (so the actions step re-checks the
/// live instance with the same rules); `None` when EC2 does not know the id.
pub async fn describe_one(
    client: &aws_sdk_ec2::Client,
    region: &str,
    instance_id: &str,
) -> Result<Option<InstanceRecord>, FinopsError> {
    let out = match client.describe_instances().instance_ids(instance_id).send().await {
        Ok(out) => out,
        Err(e) => {
            let err = FinopsError::from_sdk("EC2", "DescribeInstances", e);
            return match &err {
                FinopsError::Aws { code, .. } if code.starts_with("InvalidInstanceID") => Ok(None),
                _ => Err(err),
            };
        }
    };
    let Some(instance) = out.reservations().iter().flat_map(|r| r.instances()).next().cloned() else {
        return Ok(None);
    };
    let volumes = attached_volumes(client, &[instance_id.to_owned()]).await?;
    let types: Vec<String> = instance.instance_type().map(|t| t.as_str().to_owned()).into_iter().collect();
    let storage = instance_storage_by_type(client, &types).await?;
    Ok(to_record(&instance, region, &volumes, &storage))
}

/// Instance storage of each instance type (DescribeInstanceTypes, 100 types per call). A type EC2 will not
/// describe is left out, which the records read as [`InstanceStorage::Unknown`] (treated as present).
pub async fn instance_storage_by_type(
    client: &aws_sdk_ec2::Client,
    types: &[String],
) -> Result<HashMap<String, InstanceStorage>, FinopsError> {
    let mut unique: Vec<String> = types.iter().filter(|t| !t.is_empty() && *t != "unknown").cloned().collect();
    unique.sort_unstable();
    unique.dedup();
    let mut found = HashMap::new();
    for chunk in unique.chunks(INSTANCE_TYPES_CHUNK) {
        let mut pages = client
            .describe_instance_types()
            .set_instance_types(Some(chunk.iter().map(|t| InstanceType::from(t.as_str())).collect()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let err = FinopsError::from_sdk("EC2", "DescribeInstanceTypes", e);
                    // A type this region does not describe: its instances stay Unknown, so they are never stopped.
                    if matches!(&err, FinopsError::Aws { code, .. } if code == "InvalidInstanceType") {
                        tracing::warn!(error = %err, "instance types not described; their storage counts as present");
                        break;
                    }
                    return Err(err);
                }
            };
            for info in page.instance_types() {
                let Some(name) = info.instance_type() else { continue };
                let storage = match (info.instance_storage_supported(), info.instance_storage_info()) {
                    (Some(true), Some(storage)) => {
                        InstanceStorage::Present { total_gib: storage.total_size_in_gb().unwrap_or(0).max(0) as u64 }
                    }
                    (Some(true), None) => InstanceStorage::Present { total_gib: 0 },
                    (Some(false), _) => InstanceStorage::None,
                    (None, _) => InstanceStorage::Unknown,
                };
                found.insert(name.as_str().to_owned(), storage);
            }
        }
    }
    Ok(found)
}

/// The instances of one region in `state`, following every NextToken.
async fn describe_in_state(client: &aws_sdk_ec2::Client, state: &str) -> Result<Vec<Instance>, FinopsError> {
    let mut instances = Vec::new();
    let mut pages = client
        .describe_instances()
        .max_results(INSTANCES_PAGE_SIZE)
        .filters(Filter::builder().name("instance-state-name").values(state).build())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeInstances", e))?;
        for reservation in page.reservations() {
            instances.extend(reservation.instances().iter().cloned());
        }
    }
    Ok(instances)
}

/// Running instances of one region with their volumes, following every NextToken.
pub async fn describe_region(client: &aws_sdk_ec2::Client, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
    let instances = describe_in_state(client, "running").await?;
    let ids: Vec<String> = instances.iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
    let volumes = attached_volumes(client, &ids).await?;
    let types: Vec<String> =
        instances.iter().filter_map(|i| i.instance_type().map(|t| t.as_str().to_owned())).collect();
    let storage = instance_storage_by_type(client, &types).await?;
    Ok(instances.iter().filter_map(|i| to_record(i, region, &volumes, &storage)).collect())
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
/// `storage` is the instance storage by type; a block-device mapping without EBS also counts as instance storage.
pub fn to_record(
    i: &Instance,
    region: &str,
    volumes: &HashMap<String, Vec<VolumeRecord>>,
    storage: &HashMap<String, InstanceStorage>,
) -> Option<InstanceRecord> {
    let instance_id = i.instance_id()?.to_owned();
    let tags = tag_map(i.tags());
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
    let instance_type = i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_else(|| "unknown".into());
    let ephemeral_mapping = i.block_device_mappings().iter().any(|m| m.ebs().is_none());
    let instance_storage = match storage.get(&instance_type).copied().unwrap_or_default() {
        InstanceStorage::None if ephemeral_mapping => InstanceStorage::Present { total_gib: 0 },
        known => known,
    };
    let mut attached = volumes.get(&instance_id).cloned().unwrap_or_default();
    attached.sort_by(|a, b| a.device_name.cmp(&b.device_name).then_with(|| a.volume_id.cmp(&b.volume_id)));
    let state = i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_else(|| "unknown".into());
    // A stop's transition reason says when it began, from "stopping" on.
    let stopped_since = ["stopping", "stopped"]
        .contains(&state.as_str())
        .then(|| i.state_transition_reason().and_then(finops_core::resources::stopped_since))
        .flatten();
    Some(InstanceRecord {
        region: region.to_owned(),
        instance_type,
        state,
        stopped_since,
        launch_time,
        lifecycle,
        platform,
        root_device_type,
        membership: ClusterMembership::from_tags(&tags),
        tags,
        volumes: attached,
        instance_storage,
        instance_id,
        account: None,
    })
}
