//! The EC2 adapter of the actions step: the one type in the workspace that can snapshot, tag and stop, delete a
//! volume and release an address, and undo a stop or a deletion (start again, recreate from the snapshot).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_ec2::types::{Filter, InstanceSpecification, ResourceType, Snapshot, Tag, TagSpecification};
use finops_aws::sdk::RegionalClient;
use finops_aws::FinopsError;

use crate::{
    Ec2Actions, RecreatedBy, RecreatedVolume, SnapshotInfo, SnapshotOf, StartConfiguration, TAG_ACTION, TAG_RUN_ID,
    TAG_UNDO_ID, TAG_VOLUME_ID,
};

pub struct SdkEc2Actions {
    clients: RegionalClient<aws_sdk_ec2::Client>,
}

impl SdkEc2Actions {
    pub fn new(config: SdkConfig) -> Self {
        Self { clients: RegionalClient::new(config, aws_sdk_ec2::Client::new) }
    }

    /// One client whatever the region (mocked clients in tests).
    pub fn from_client(client: aws_sdk_ec2::Client) -> Self {
        Self { clients: RegionalClient::fixed(client, aws_sdk_ec2::Client::new) }
    }

    fn client(&self, region: &str) -> aws_sdk_ec2::Client {
        self.clients.for_region(region)
    }
}

fn info(s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        snapshot_id: s.snapshot_id().unwrap_or_default().to_owned(),
        volume_id: s.volume_id().unwrap_or_default().to_owned(),
        state: s.state().map(|st| st.as_str().to_owned()).unwrap_or_else(|| "unknown".into()),
        progress: s.progress().unwrap_or_default().to_owned(),
        tags: s
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
            .collect(),
    }
}

fn tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

impl Ec2Actions for SdkEc2Actions {
    async fn run_snapshots(
        &self,
        region: &str,
        run_id: &str,
        of: SnapshotOf<'_>,
    ) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let (key, id) = of.tag();
        let mut pages = self
            .client(region)
            .describe_snapshots()
            .owner_ids("self")
            .filters(Filter::builder().name(format!("tag:{TAG_RUN_ID}")).values(run_id).build())
            .filters(Filter::builder().name(format!("tag:{key}")).values(id).build())
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("EC2", "DescribeSnapshots", e))?;
            found.extend(page.snapshots().iter().map(info));
        }
        Ok(found)
    }

    async fn create_snapshots(
        &self,
        region: &str,
        instance_id: &str,
        snapshot_tags: &[(String, String)],
    ) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let out = self
            .client(region)
            .create_snapshots()
            .instance_specification(
                InstanceSpecification::builder().instance_id(instance_id).exclude_boot_volume(false).build(),
            )
            .description(format!("finops: before stopping {instance_id}"))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(tags(snapshot_tags)))
                    .build(),
            )
            .copy_tags_from_source(aws_sdk_ec2::types::CopyTagsFromSource::Volume)
            // Never retried by the SDK: a CreateSnapshots whose answer was lost (a timeout, a 5xx after EC2 took it)
            // has made its snapshots, and a blind retry makes a second set (found by `make chaos`). The step fails
            // instead; its retry finds this run's snapshots by their tags (`run_snapshots`) before creating any.
            .customize()
            .config_override(
                aws_sdk_ec2::config::Builder::default()
                    .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "CreateSnapshots", e))?;
        Ok(out
            .snapshots()
            .iter()
            .map(|s| SnapshotInfo {
                snapshot_id: s.snapshot_id().unwrap_or_default().to_owned(),
                volume_id: s.volume_id().unwrap_or_default().to_owned(),
                state: s.state().map(|st| st.as_str().to_owned()).unwrap_or_else(|| "pending".into()),
                progress: s.progress().unwrap_or_default().to_owned(),
                tags: snapshot_tags.iter().cloned().collect(),
            })
            .collect())
    }

    async fn create_volume_snapshot(
        &self,
        region: &str,
        volume_id: &str,
        snapshot_tags: &[(String, String)],
    ) -> Result<SnapshotInfo, FinopsError> {
        let out = self
            .client(region)
            .create_snapshot()
            .volume_id(volume_id)
            .description(format!("finops: before deleting {volume_id}"))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .set_tags(Some(tags(snapshot_tags)))
                    .build(),
            )
            // Not retried by the SDK, for the reason CreateSnapshots is not: the step's retry finds the snapshot by
            // its tags instead of making a second one.
            .customize()
            .config_override(
                aws_sdk_ec2::config::Builder::default()
                    .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "CreateSnapshot", e))?;
        Ok(SnapshotInfo {
            snapshot_id: out.snapshot_id().unwrap_or_default().to_owned(),
            volume_id: out.volume_id().unwrap_or(volume_id).to_owned(),
            state: out.state().map(|st| st.as_str().to_owned()).unwrap_or_else(|| "pending".into()),
            progress: out.progress().unwrap_or_default().to_owned(),
            tags: snapshot_tags.iter().cloned().collect(),
        })
    }

    async fn delete_volume(&self, region: &str, volume_id: &str) -> Result<(), FinopsError> {
        self.client(region)
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DeleteVolume", e))?;
        Ok(())
    }

    async fn release_address(&self, region: &str, allocation_id: &str) -> Result<(), FinopsError> {
        self.client(region)
            .release_address()
            .allocation_id(allocation_id)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "ReleaseAddress", e))?;
        Ok(())
    }

    async fn describe_snapshots(
        &self,
        region: &str,
        snapshot_ids: &[String],
    ) -> Result<Vec<SnapshotInfo>, FinopsError> {
        if snapshot_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client(region)
            .describe_snapshots()
            .set_snapshot_ids(Some(snapshot_ids.to_vec()))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DescribeSnapshots", e))?;
        let by_id: HashMap<String, SnapshotInfo> =
            out.snapshots().iter().map(info).map(|s| (s.snapshot_id.clone(), s)).collect();
        Ok(snapshot_ids.iter().filter_map(|id| by_id.get(id).cloned()).collect())
    }

    async fn tag_resource(
        &self,
        region: &str,
        resource_id: &str,
        pairs: &[(String, String)],
    ) -> Result<(), FinopsError> {
        self.client(region)
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(tags(pairs)))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "CreateTags", e))?;
        Ok(())
    }

    async fn stop(&self, region: &str, instance_id: &str) -> Result<(), FinopsError> {
        self.client(region)
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "StopInstances", e))?;
        Ok(())
    }

    async fn detach_volume(&self, region: &str, volume_id: &str, instance_id: &str) -> Result<(), FinopsError> {
        self.client(region)
            .detach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DetachVolume", e))?;
        Ok(())
    }

    async fn start(&self, region: &str, instance_id: &str) -> Result<(), FinopsError> {
        self.client(region)
            .start_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "StartInstances", e))?;
        Ok(())
    }

    async fn start_configuration(
        &self,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<StartConfiguration>, FinopsError> {
        let client = self.client(region);
        let described = match client.describe_instances().instance_ids(instance_id).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().and_then(|se| se.meta().code()) == Some("InvalidInstanceID.NotFound") => {
                return Ok(None)
            }
            Err(e) => return Err(FinopsError::from_sdk("EC2", "DescribeInstances", e)),
        };
        let Some(instance) = described.reservations().iter().flat_map(|r| r.instances()).next() else {
            return Ok(None);
        };
        let user_data = client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DescribeInstanceAttribute", e))?;
        let network = instance
            .network_interfaces()
            .iter()
            .map(|eni| {
                let groups: Vec<&str> = eni.groups().iter().filter_map(|g| g.group_id()).collect();
                let check = eni.source_dest_check().map_or("?".into(), |c| c.to_string());
                format!("{} {} check={check}", eni.network_interface_id().unwrap_or("?"), groups.join(","))
            })
            .collect();
        let disks = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                let attached = ebs.attach_time().map_or("?".into(), |t| t.to_string());
                Some(format!("{} {} {attached}", m.device_name().unwrap_or("?"), ebs.volume_id()?))
            })
            .collect();
        let metadata = instance.metadata_options().map_or(String::new(), |m| {
            format!(
                "tokens={} endpoint={} hops={}",
                m.http_tokens().map_or("?", |t| t.as_str()),
                m.http_endpoint().map_or("?", |e| e.as_str()),
                m.http_put_response_hop_limit().unwrap_or_default()
            )
        });
        Ok(Some(StartConfiguration::new(
            instance.instance_type().map(|t| t.as_str()).unwrap_or_default(),
            user_data.user_data().and_then(|u| u.value()),
            instance.iam_instance_profile().and_then(|p| p.id()).map(str::to_owned),
            network,
            disks,
            metadata,
        )))
    }

    async fn recreated_volumes(&self, region: &str, volume_id: &str) -> Result<Vec<RecreatedBy>, FinopsError> {
        let out = self
            .client(region)
            .describe_volumes()
            .filters(Filter::builder().name(format!("tag:{TAG_VOLUME_ID}")).values(volume_id).build())
            .filters(Filter::builder().name(format!("tag:{TAG_ACTION}")).values(crate::RECREATED_VOLUME).build())
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "DescribeVolumes", e))?;
        Ok(out
            .volumes()
            .iter()
            .filter_map(|v| {
                let undo_id = v.tags().iter().find(|t| t.key() == Some(TAG_UNDO_ID)).and_then(|t| t.value());
                Some(RecreatedBy { volume_id: v.volume_id()?.to_owned(), undo_id: undo_id.map(str::to_owned) })
            })
            .collect())
    }

    async fn create_volume_from_snapshot(
        &self,
        region: &str,
        recreated: &RecreatedVolume,
        volume_tags: &[(String, String)],
        client_token: &str,
    ) -> Result<String, FinopsError> {
        let out = self
            .client(region)
            .create_volume()
            .snapshot_id(&recreated.snapshot_id)
            .availability_zone(&recreated.availability_zone)
            .volume_type(recreated.volume_type.as_str().into())
            .client_token(client_token)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags(volume_tags)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("EC2", "CreateVolume", e))?;
        out.volume_id().map(str::to_owned).ok_or_else(|| FinopsError::Aws {
            service: "EC2",
            operation: "CreateVolume",
            code: "NoVolumeId".into(),
            message: "CreateVolume answered without a volume id".into(),
        })
    }
}
