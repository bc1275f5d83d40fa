//! EC2 in memory, beside the SDK adapter: instances that can be looked up, snapshotted, tagged and stopped, volumes
//! and addresses that can be snapshotted, deleted and released, with every change counted. For the handler's tests
//! and for fault-injection runs that need no emulator.

use std::collections::HashMap;
use std::sync::Mutex;

use finops_aws::FinopsError;
use finops_core::resources::ElasticAddress;
use finops_core::InstanceRecord;
use finops_inventory::{InstanceLookup, LiveVolume, ResourceLookup};

use crate::{
    Ec2Actions, RecreatedBy, RecreatedVolume, SnapshotInfo, SnapshotOf, StartConfiguration, TAG_ACTION, TAG_RUN_ID,
    TAG_UNDO_ID, TAG_VOLUME_ID,
};

#[derive(Default)]
pub struct MemoryEc2 {
    pub instances: Mutex<HashMap<String, InstanceRecord>>,
    pub snapshots: Mutex<Vec<SnapshotInfo>>,
    /// Instance ids in the order StopInstances was called for them.
    pub stopped: Mutex<Vec<String>>,
    /// The state new snapshots get (`completed` by default; `pending` or `error` to test the wait).
    pub new_snapshot_state: Mutex<Option<String>>,
    /// Volumes by id, in any state.
    pub volumes: Mutex<HashMap<String, LiveVolume>>,
    /// Elastic IPs by allocation id.
    pub addresses: Mutex<HashMap<String, ElasticAddress>>,
    /// Volume and allocation ids in the order DeleteVolume and ReleaseAddress were called for them. An instance's
    /// volume is listed in `volumes` (state `in-use`) when a test wants its own tags read; DetachVolume adds it
    /// otherwise.
    pub deleted: Mutex<Vec<String>>,
    /// Instance ids in the order StartInstances was called for them.
    pub started: Mutex<Vec<String>>,
    /// Volumes CreateVolume made from snapshots (also in `volumes`), in order, with their client token.
    pub recreated: Mutex<Vec<(String, String)>>,
    /// User data (base64) by instance id: what a person may change while an instance is stopped.
    pub user_data: Mutex<HashMap<String, String>>,
    /// EC2's clock for when a stop happened (None: the wall clock), for tests that run at a fixed time.
    pub clock: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryEc2 {
    pub fn with(instances: impl IntoIterator<Item = InstanceRecord>) -> Self {
        let me = Self::default();
        me.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(instances.into_iter().map(|i| (i.instance_id.clone(), i)));
        me
    }

    pub fn instance(&self, id: &str) -> Option<InstanceRecord> {
        self.instances.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    pub fn stops(&self) -> Vec<String> {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An unattached volume and an unassociated address to act on (beside any instances).
    pub fn with_resources(self, volumes: Vec<LiveVolume>, addresses: Vec<ElasticAddress>) -> Self {
        lock(&self.volumes).extend(volumes.into_iter().map(|v| (v.record.volume_id.clone(), v)));
        lock(&self.addresses).extend(addresses.into_iter().map(|a| (a.allocation_id.clone(), a)));
        self
    }

    /// What DeleteVolume and ReleaseAddress were called for, in order.
    pub fn deletions(&self) -> Vec<String> {
        lock(&self.deleted).clone()
    }

    pub fn snapshot_count(&self) -> usize {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl InstanceLookup for MemoryEc2 {
    async fn describe_instance(&self, region: &str, instance_id: &str) -> Result<Option<InstanceRecord>, FinopsError> {
        Ok(self.instance(instance_id).filter(|i| i.region == region))
    }
}

impl ResourceLookup for MemoryEc2 {
    async fn describe_volume(&self, region: &str, volume_id: &str) -> Result<Option<LiveVolume>, FinopsError> {
        if let Some(v) = lock(&self.volumes).get(volume_id).filter(|v| v.record.region == region) {
            return Ok(Some(v.clone()));
        }
        // A volume attached to an instance, as EC2 describes it: `in-use`, without tags of its own.
        let instances = lock(&self.instances);
        Ok(instances.values().filter(|i| i.region == region).find_map(|i| {
            let record = i.volumes.iter().find(|v| v.volume_id == volume_id)?;
            Some(LiveVolume {
                record: finops_core::resources::UnattachedVolume {
                    volume_id: volume_id.to_owned(),
                    region: region.to_owned(),
                    volume_type: record.volume_type.clone(),
                    size_gib: record.size_gib,
                    create_time: i.launch_time,
                    tags: Default::default(),
                    account: None,
                },
                state: "in-use".into(),
                attached_to: vec![i.instance_id.clone()],
                availability_zone: format!("{region}a"),
            })
        }))
    }

    async fn describe_address(&self, region: &str, allocation_id: &str) -> Result<Option<ElasticAddress>, FinopsError> {
        Ok(lock(&self.addresses).get(allocation_id).filter(|a| a.region == region).cloned())
    }
}

impl Ec2Actions for MemoryEc2 {
    async fn run_snapshots(&self, _: &str, run_id: &str, of: SnapshotOf<'_>) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let (key, id) = of.tag();
        let snaps = lock(&self.snapshots);
        Ok(snaps
            .iter()
            .filter(|s| {
                s.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
                    && s.tags.get(key).map(String::as_str) == Some(id)
            })
            .cloned()
            .collect())
    }

    async fn create_volume_snapshot(
        &self,
        _: &str,
        volume_id: &str,
        tags: &[(String, String)],
    ) -> Result<SnapshotInfo, FinopsError> {
        if !lock(&self.volumes).contains_key(volume_id) {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "CreateSnapshot",
                code: "InvalidVolume.NotFound".into(),
                message: volume_id.into(),
            });
        }
        let state = lock(&self.new_snapshot_state).clone();
        let mut snaps = lock(&self.snapshots);
        let created = SnapshotInfo {
            snapshot_id: format!("snap-{:04}v", snaps.len()),
            volume_id: volume_id.to_owned(),
            state: state.unwrap_or_else(|| "completed".into()),
            progress: "100%".into(),
            tags: tags.iter().cloned().collect(),
        };
        snaps.push(created.clone());
        Ok(created)
    }

    async fn delete_volume(&self, _: &str, volume_id: &str) -> Result<(), FinopsError> {
        let removed = lock(&self.volumes).remove(volume_id);
        let Some(volume) = removed else {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "DeleteVolume",
                code: "InvalidVolume.NotFound".into(),
                message: volume_id.into(),
            });
        };
        if volume.state != "available" {
            lock(&self.volumes).insert(volume_id.to_owned(), volume);
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "DeleteVolume",
                code: "VolumeInUse".into(),
                message: volume_id.into(),
            });
        }
        lock(&self.deleted).push(volume_id.to_owned());
        Ok(())
    }

    async fn release_address(&self, _: &str, allocation_id: &str) -> Result<(), FinopsError> {
        if lock(&self.addresses).remove(allocation_id).is_none() {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "ReleaseAddress",
                code: "InvalidAllocationID.NotFound".into(),
                message: allocation_id.into(),
            });
        }
        lock(&self.deleted).push(allocation_id.to_owned());
        Ok(())
    }

    async fn create_snapshots(
        &self,
        _: &str,
        instance_id: &str,
        tags: &[(String, String)],
    ) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let Some(instance) = self.instance(instance_id) else {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "CreateSnapshots",
                code: "InvalidInstanceID.NotFound".into(),
                message: instance_id.into(),
            });
        };
        let state = self.new_snapshot_state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        let created: Vec<SnapshotInfo> = instance
            .volumes
            .iter()
            .enumerate()
            .map(|(n, v)| SnapshotInfo {
                snapshot_id: format!("snap-{:04}{n}", snaps.len()),
                volume_id: v.volume_id.clone(),
                state: state.clone().unwrap_or_else(|| "completed".into()),
                progress: "100%".into(),
                tags: tags.iter().cloned().collect(),
            })
            .collect();
        snaps.extend(created.iter().cloned());
        Ok(created)
    }

    async fn describe_snapshots(&self, _: &str, ids: &[String]) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ids.iter().filter_map(|id| snaps.iter().find(|s| &s.snapshot_id == id).cloned()).collect())
    }

    async fn tag_resource(&self, _: &str, resource_id: &str, tags: &[(String, String)]) -> Result<(), FinopsError> {
        if let Some(i) = lock(&self.instances).get_mut(resource_id) {
            i.tags.extend(tags.iter().cloned());
        }
        if let Some(v) = lock(&self.volumes).get_mut(resource_id) {
            v.record.tags.extend(tags.iter().cloned());
        }
        if let Some(a) = lock(&self.addresses).get_mut(resource_id) {
            a.tags.extend(tags.iter().cloned());
        }
        if let Some(s) = lock(&self.snapshots).iter_mut().find(|s| s.snapshot_id == resource_id) {
            s.tags.extend(tags.iter().cloned());
        }
        Ok(())
    }

    async fn stop(&self, _: &str, instance_id: &str) -> Result<(), FinopsError> {
        if let Some(i) = self.instances.lock().unwrap_or_else(|p| p.into_inner()).get_mut(instance_id) {
            i.state = "stopped".into();
            // EC2's StateTransitionReason says when, to the second.
            let now = lock(&self.clock).unwrap_or_else(chrono::Utc::now);
            i.stopped_since = chrono::DateTime::from_timestamp(now.timestamp(), 0);
        }
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).push(instance_id.to_owned());
        Ok(())
    }

    async fn detach_volume(&self, region: &str, volume_id: &str, instance_id: &str) -> Result<(), FinopsError> {
        // The instance's record loses the volume; the volume is then `available`, attached to nothing.
        let mut instances = lock(&self.instances);
        let Some(instance) = instances.get_mut(instance_id) else {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "DetachVolume",
                code: "InvalidInstanceID.NotFound".into(),
                message: instance_id.into(),
            });
        };
        let Some(at) = instance.volumes.iter().position(|v| v.volume_id == volume_id) else {
            return Err(FinopsError::Aws {
                service: "EC2",
                operation: "DetachVolume",
                code: "IncorrectState".into(),
                message: format!("{volume_id} is not attached to {instance_id}"),
            });
        };
        let record = instance.volumes.remove(at);
        let mut volumes = lock(&self.volumes);
        let volume = volumes.entry(volume_id.to_owned()).or_insert_with(|| LiveVolume {
            record: finops_core::resources::UnattachedVolume {
                volume_id: volume_id.to_owned(),
                region: region.to_owned(),
                volume_type: record.volume_type.clone(),
                size_gib: record.size_gib,
                create_time: chrono::Utc::now(),
                tags: Default::default(),
                account: None,
            },
            state: "in-use".into(),
            attached_to: vec![instance_id.to_owned()],
            availability_zone: format!("{region}a"),
        });
        volume.state = "available".into();
        volume.attached_to.clear();
        Ok(())
    }

    async fn start(&self, _: &str, instance_id: &str) -> Result<(), FinopsError> {
        if let Some(i) = lock(&self.instances).get_mut(instance_id) {
            i.state = "pending".into();
            i.stopped_since = None;
        }
        lock(&self.started).push(instance_id.to_owned());
        Ok(())
    }

    async fn start_configuration(&self, _: &str, instance_id: &str) -> Result<Option<StartConfiguration>, FinopsError> {
        let user_data = lock(&self.user_data).get(instance_id).cloned();
        Ok(lock(&self.instances).get(instance_id).map(|i| {
            let disks = i
                .volumes
                .iter()
                .map(|v| format!("{} {}", v.device_name.as_deref().unwrap_or("?"), v.volume_id))
                .collect();
            StartConfiguration::new(&i.instance_type, user_data.as_deref(), None, vec![], disks, "")
        }))
    }

    async fn recreated_volumes(&self, _: &str, volume_id: &str) -> Result<Vec<RecreatedBy>, FinopsError> {
        Ok(lock(&self.volumes)
            .values()
            .filter(|v| {
                v.record.tags.get(TAG_VOLUME_ID).map(String::as_str) == Some(volume_id)
                    && v.record.tags.get(TAG_ACTION).map(String::as_str) == Some(crate::RECREATED_VOLUME)
            })
            .map(|v| RecreatedBy {
                volume_id: v.record.volume_id.clone(),
                undo_id: v.record.tags.get(TAG_UNDO_ID).cloned(),
            })
            .collect())
    }

    async fn create_volume_from_snapshot(
        &self,
        region: &str,
        recreated: &RecreatedVolume,
        tags: &[(String, String)],
        client_token: &str,
    ) -> Result<String, FinopsError> {
        // EC2's idempotency: the same client token returns the volume it created.
        let mut made = lock(&self.recreated);
        if let Some((id, _)) = made.iter().find(|(_, token)| token == client_token) {
            return Ok(id.clone());
        }
        let id = format!("vol-recreated{:04}", made.len());
        let volume = LiveVolume {
            record: finops_core::resources::UnattachedVolume {
                volume_id: id.clone(),
                region: region.to_owned(),
                volume_type: recreated.volume_type.clone(),
                size_gib: 0,
                create_time: chrono::Utc::now(),
                tags: tags.iter().cloned().collect(),
                account: None,
            },
            state: "creating".into(),
            attached_to: vec![],
            availability_zone: recreated.availability_zone.clone(),
        };
        lock(&self.volumes).insert(id.clone(), volume);
        made.push((id.clone(), client_token.to_owned()));
        Ok(id)
    }
}
