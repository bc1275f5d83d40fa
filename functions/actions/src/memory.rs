//! EC2 in memory, beside the SDK adapter: instances that can be looked up, snapshotted, tagged and stopped, with
//! every change counted. For the handler's tests and for fault-injection runs that need no emulator.

use std::collections::HashMap;
use std::sync::Mutex;

use finops_aws::FinopsError;
use finops_core::InstanceRecord;
use finops_inventory::InstanceLookup;

use crate::{Ec2Actions, SnapshotInfo, TAG_INSTANCE_ID, TAG_RUN_ID};

#[derive(Default)]
pub struct MemoryEc2 {
    pub instances: Mutex<HashMap<String, InstanceRecord>>,
    pub snapshots: Mutex<Vec<SnapshotInfo>>,
    /// Instance ids in the order StopInstances was called for them.
    pub stopped: Mutex<Vec<String>>,
    /// The state new snapshots get (`completed` by default; `pending` or `error` to test the wait).
    pub new_snapshot_state: Mutex<Option<String>>,
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

    pub fn snapshot_count(&self) -> usize {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl InstanceLookup for MemoryEc2 {
    async fn describe_instance(&self, region: &str, instance_id: &str) -> Result<Option<InstanceRecord>, FinopsError> {
        Ok(self.instance(instance_id).filter(|i| i.region == region))
    }
}

impl Ec2Actions for MemoryEc2 {
    async fn run_snapshots(&self, _: &str, run_id: &str, instance_id: &str) -> Result<Vec<SnapshotInfo>, FinopsError> {
        let snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        Ok(snaps
            .iter()
            .filter(|s| {
                s.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id)
                    && s.tags.get(TAG_INSTANCE_ID).map(String::as_str) == Some(instance_id)
            })
            .cloned()
            .collect())
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

    async fn tag_instance(&self, _: &str, instance_id: &str, tags: &[(String, String)]) -> Result<(), FinopsError> {
        if let Some(i) = self.instances.lock().unwrap_or_else(|p| p.into_inner()).get_mut(instance_id) {
            i.tags.extend(tags.iter().cloned());
        }
        Ok(())
    }

    async fn stop(&self, _: &str, instance_id: &str) -> Result<(), FinopsError> {
        if let Some(i) = self.instances.lock().unwrap_or_else(|p| p.into_inner()).get_mut(instance_id) {
            i.state = "stopped".into();
        }
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).push(instance_id.to_owned());
        Ok(())
    }
}
