//! What the inventory step records about each running instance.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Tag that Auto Scaling puts on every instance it launches.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";
/// Tags that EMR puts on cluster nodes.
pub const EMR_TAGS: &[&str] = &["aws:elasticmapreduce:job-flow-id", "aws:elasticmapreduce:instance-group-role"];
/// Tags that EKS managed node groups, eksctl and Karpenter put on worker nodes. `kubernetes.io/cluster/<name>` is
/// matched by prefix because the cluster name is part of the key.
pub const EKS_TAGS: &[&str] = &["eks:cluster-name", "aws:eks:cluster-name", "alpha.eksctl.io/cluster-name"];
pub const EKS_TAG_PREFIX: &str = "kubernetes.io/cluster/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    OnDemand,
    Spot,
    /// Scheduled instances and capacity blocks: billed differently, reported but priced as on-demand.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootDeviceType {
    Ebs,
    /// Stopping an instance-store-backed instance loses its root volume, so later steps never stop one.
    InstanceStore,
}

/// Membership of a group that replaces or needs the instance: stopping such an instance gets it replaced (Auto
/// Scaling) or breaks a cluster (EKS, EMR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks_cluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emr_cluster: Option<String>,
}

impl ClusterMembership {
    /// Reads membership from the well-known tags the managing services put on their instances.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Self {
        let auto_scaling_group = tags.get(ASG_TAG).cloned();
        let emr_cluster = EMR_TAGS
            .iter()
            .find_map(|k| tags.get(*k))
            .map(|v| tags.get("aws:elasticmapreduce:job-flow-id").cloned().unwrap_or_else(|| v.clone()));
        let eks_cluster = EKS_TAGS.iter().find_map(|k| tags.get(*k).cloned()).or_else(|| {
            tags.keys().find_map(|k| k.strip_prefix(EKS_TAG_PREFIX).filter(|name| !name.is_empty()).map(str::to_owned))
        });
        Self { auto_scaling_group, eks_cluster, emr_cluster }
    }

    pub fn is_managed(&self) -> bool {
        self.auto_scaling_group.is_some() || self.eks_cluster.is_some() || self.emr_cluster.is_some()
    }

    /// A sentence a person can read, for denials and reports.
    pub fn describe(&self) -> Option<String> {
        if let Some(g) = &self.auto_scaling_group {
            return Some(format!("member of Auto Scaling group {g}"));
        }
        if let Some(c) = &self.eks_cluster {
            return Some(format!("node of EKS cluster {c}"));
        }
        self.emr_cluster.as_ref().map(|c| format!("node of EMR cluster {c}"))
    }
}

/// Local instance-store (ephemeral) disks. Stopping the instance erases them, and EBS snapshots do not cover them,
/// so an instance with any is never stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum InstanceStorage {
    /// Its type has no instance storage (DescribeInstanceTypes) and no block-device mapping is ephemeral.
    None,
    /// Instance-store disks of this total size (0 when only a block-device mapping showed them).
    #[serde(rename_all = "camelCase")]
    Present { total_gib: u64 },
    /// Not established (the type was not described, or a record from before this field): treated as present.
    #[default]
    Unknown,
}

impl InstanceStorage {
    /// What a denial says, when the instance has (or may have) instance storage.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Present { total_gib: 0 } => Some("has instance-store volumes".into()),
            Self::Present { total_gib } => Some(format!("has {total_gib} GiB of instance-store disks")),
            Self::Unknown => Some("instance storage could not be established".into()),
        }
    }
}

/// An attached EBS volume: later steps snapshot it, and its storage is part of the instance's monthly cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    pub volume_id: String,
    pub device_name: Option<String>,
    pub size_gib: u32,
    pub volume_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u32>,
    #[serde(default)]
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub instance_id: String,
    pub region: String,
    pub instance_type: String,
    pub state: String,
    pub launch_time: DateTime<Utc>,
    pub lifecycle: Lifecycle,
    /// `Linux/UNIX` unless EC2 reports a platform (`windows`); it decides which price applies.
    pub platform: String,
    pub root_device_type: RootDeviceType,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub membership: ClusterMembership,
    #[serde(default)]
    pub volumes: Vec<VolumeRecord>,
    /// Missing from a document means not established, which the policy treats as present.
    #[serde(default)]
    pub instance_storage: InstanceStorage,
    /// The account it runs in, when the run covers more than its own account (absent: the run's own account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::organization::AccountRef>,
    /// When a stopped instance was stopped (EC2's StateTransitionReason), where EC2 says: an undo checks that it is
    /// still the stop it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_since: Option<DateTime<Utc>>,
}

impl InstanceRecord {
    /// An ordinary instance: running, on-demand, Linux, EBS-backed with one gp3 root volume (`vol-` and the id's
    /// digits) of `root_gib` GiB (none when 0), no instance storage, no tags. The one starting point of every test
    /// fixture and of the benchmark's fleet; the inventory builds records from EC2 instead.
    pub fn ordinary(id: &str, region: &str, instance_type: &str, launch_time: DateTime<Utc>, root_gib: u32) -> Self {
        let volumes = (root_gib > 0)
            .then(|| VolumeRecord {
                volume_id: format!("vol-{}", id.trim_start_matches("i-")),
                device_name: Some("/dev/xvda".into()),
                size_gib: root_gib,
                volume_type: "gp3".into(),
                iops: None,
                delete_on_termination: true,
            })
            .into_iter()
            .collect();
        Self {
            instance_id: id.into(),
            region: region.into(),
            instance_type: instance_type.into(),
            state: "running".into(),
            launch_time,
            lifecycle: Lifecycle::OnDemand,
            platform: "Linux/UNIX".into(),
            root_device_type: RootDeviceType::Ebs,
            tags: BTreeMap::new(),
            membership: ClusterMembership::default(),
            volumes,
            instance_storage: InstanceStorage::None,
            account: None,
            stopped_since: None,
        }
    }

    /// The same record with these tags (and the cluster membership they imply, as the inventory derives it).
    pub fn with_tags<K: Into<String>, V: Into<String>>(mut self, tags: impl IntoIterator<Item = (K, V)>) -> Self {
        self.tags = tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.membership = ClusterMembership::from_tags(&self.tags);
        self
    }

    pub fn name(&self) -> Option<&str> {
        self.tags.get("Name").map(String::as_str)
    }

    pub fn is_windows(&self) -> bool {
        self.platform.eq_ignore_ascii_case("windows")
    }

    pub fn attached_storage_gib(&self) -> u64 {
        self.volumes.iter().map(|v| u64::from(v.size_gib)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_tags_means_not_managed() {
        let m = ClusterMembership::from_tags(&BTreeMap::new());
        assert!(!m.is_managed());
        assert_eq!(m.describe(), None);
    }

    #[test]
    fn auto_scaling_group_tag_marks_membership() {
        let m = ClusterMembership::from_tags(&tags(&[(ASG_TAG, "web-asg")]));
        assert_eq!(m.auto_scaling_group.as_deref(), Some("web-asg"));
        assert_eq!(m.describe().unwrap(), "member of Auto Scaling group web-asg");
    }

    #[test]
    fn eks_membership_from_named_or_prefixed_tags() {
        let named = ClusterMembership::from_tags(&tags(&[("eks:cluster-name", "prod-eks")]));
        assert_eq!(named.eks_cluster.as_deref(), Some("prod-eks"));
        let prefixed = ClusterMembership::from_tags(&tags(&[("kubernetes.io/cluster/analytics", "owned")]));
        assert_eq!(prefixed.eks_cluster.as_deref(), Some("analytics"));
        // A bare prefix names no cluster and is not treated as membership.
        let bare = ClusterMembership::from_tags(&tags(&[("kubernetes.io/cluster/", "owned")]));
        assert!(!bare.is_managed());
    }

    #[test]
    fn emr_membership_prefers_job_flow_id() {
        let m = ClusterMembership::from_tags(&tags(&[
            ("aws:elasticmapreduce:instance-group-role", "CORE"),
            ("aws:elasticmapreduce:job-flow-id", "j-ABC"),
        ]));
        assert_eq!(m.emr_cluster.as_deref(), Some("j-ABC"));
    }

    #[test]
    fn tag_keys_are_case_sensitive_like_ec2() {
        let m = ClusterMembership::from_tags(&tags(&[("AWS:AUTOSCALING:GROUPNAME", "x")]));
        assert!(!m.is_managed());
    }
}
