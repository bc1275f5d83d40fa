//! What an undo checks before it starts an instance again: that it is still as the stop it undoes left it. The stop
//! step reads it right after stopping ([`StoppedAs`]); it travels with the outcome into the undo record, which only
//! the request step writes (never a tag, which anyone who may tag the instance could line up with their own change).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What starting an instance runs: a change to any of it while the instance is stopped (a bigger type, new boot code,
/// another role, other network access, disks or metadata rules) is someone else's, and an undo does not start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartConfiguration {
    pub instance_type: String,
    /// SHA-256 (hex) of the user data as EC2 returns it (base64), or "" for none: boot code is compared, never kept.
    pub user_data_sha256: String,
    /// The instance profile's id (a profile deleted and made again under its name has another), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Each network interface with its security groups and source/destination check, sorted
    /// (`eni-1 sg-a,sg-b check=true`).
    #[serde(default)]
    pub network: Vec<String>,
    /// Each attached volume with its device and when it was attached, sorted (`/dev/xvda vol-1 2026-12-02T09:00:00Z`):
    /// a volume detached and attached again (its contents changed elsewhere) is a change.
    #[serde(default)]
    pub disks: Vec<String>,
    /// The instance metadata service's rules (`tokens=required endpoint=enabled hops=2`).
    #[serde(default)]
    pub metadata: String,
}

impl StartConfiguration {
    /// The configuration from EC2's answers: lists sorted, user data hashed.
    pub fn new(
        instance_type: impl Into<String>,
        user_data_base64: Option<&str>,
        instance_profile: Option<String>,
        mut network: Vec<String>,
        mut disks: Vec<String>,
        metadata: impl Into<String>,
    ) -> Self {
        network.sort();
        disks.sort();
        let user_data_sha256 = match user_data_base64.filter(|u| !u.is_empty()) {
            Some(data) => hex::encode(Sha256::digest(data.as_bytes())),
            None => String::new(),
        };
        Self {
            instance_type: instance_type.into(),
            user_data_sha256,
            instance_profile,
            network,
            disks,
            metadata: metadata.into(),
        }
    }

    /// What differs from `then` (empty: nothing), each said for the report.
    pub fn changes_since(&self, then: &StartConfiguration) -> Vec<String> {
        let mut changes = Vec::new();
        if self.instance_type != then.instance_type {
            changes.push(format!("instance type {} then, {} now", then.instance_type, self.instance_type));
        }
        if self.user_data_sha256 != then.user_data_sha256 {
            changes.push("its user data (boot code) changed".into());
        }
        if self.instance_profile != then.instance_profile {
            let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
            changes.push(format!(
                "instance profile {} then, {} now",
                show(&then.instance_profile),
                show(&self.instance_profile)
            ));
        }
        if self.network != then.network {
            changes.push(format!("network {:?} then, {:?} now", then.network, self.network));
        }
        if self.disks != then.disks {
            changes.push(format!("disks {:?} then, {:?} now", then.disks, self.disks));
        }
        if self.metadata != then.metadata {
            changes.push(format!("metadata rules {:?} then, {:?} now", then.metadata, self.metadata));
        }
        changes
    }
}

/// How the stop an undo undoes left the instance: when EC2 says it stopped, and what starting it would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedAs {
    pub stopped_at: DateTime<Utc>,
    pub configuration: StartConfiguration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped() -> StartConfiguration {
        StartConfiguration::new(
            "t3.medium",
            Some("IyEvYmluL3NoCmVjaG8gaGk="),
            Some("AIPAEXAMPLEWEB".into()),
            vec!["eni-2 sg-2 check=true".into(), "eni-1 sg-1 check=true".into()],
            vec!["/dev/xvdb vol-b 2026-12-01T00:00:00Z".into(), "/dev/xvda vol-a 2026-12-01T00:00:00Z".into()],
            "tokens=required endpoint=enabled hops=1",
        )
    }

    #[test]
    fn the_same_configuration_in_another_order_is_unchanged() {
        let again = StartConfiguration::new(
            "t3.medium",
            Some("IyEvYmluL3NoCmVjaG8gaGk="),
            Some("AIPAEXAMPLEWEB".into()),
            vec!["eni-1 sg-1 check=true".into(), "eni-2 sg-2 check=true".into()],
            vec!["/dev/xvda vol-a 2026-12-01T00:00:00Z".into(), "/dev/xvdb vol-b 2026-12-01T00:00:00Z".into()],
            "tokens=required endpoint=enabled hops=1",
        );
        assert!(again.changes_since(&stopped()).is_empty());
        // `echo -n 'IyEvYmluL3NoCmVjaG8gaGk=' | sha256sum`
        assert_eq!(stopped().user_data_sha256, "d43cf15327b189fa1b5fbb6027af50e93ca9ff0d377eb34dc72eff22de11161b");
        assert_eq!(StartConfiguration::new("t3.medium", Some(""), None, vec![], vec![], "").user_data_sha256, "");
    }

    #[test]
    fn each_change_a_person_can_make_to_a_stopped_instance_is_said() {
        let then = stopped();
        type Change = (&'static str, fn(&mut StartConfiguration));
        let cases: [Change; 6] = [
            ("instance type t3.medium then, m5.24xlarge now", |c| c.instance_type = "m5.24xlarge".into()),
            ("user data (boot code) changed", |c| c.user_data_sha256 = "00".into()),
            ("instance profile AIPAEXAMPLEWEB then, none now", |c| c.instance_profile = None),
            ("network", |c| c.network[0] = "eni-1 sg-open check=true".into()),
            ("disks", |c| c.disks[0] = "/dev/xvda vol-a 2026-12-03T00:00:00Z".into()),
            ("metadata rules", |c| c.metadata = "tokens=optional endpoint=enabled hops=1".into()),
        ];
        for (said, change) in cases {
            let mut now = then.clone();
            change(&mut now);
            let changes = now.changes_since(&then);
            assert_eq!(changes.len(), 1, "{said}: {changes:?}");
            assert!(changes[0].contains(said), "{said}: {changes:?}");
        }
    }
}
