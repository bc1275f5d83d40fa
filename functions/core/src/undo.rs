//! What an undo checks before it starts an instance again: that it is still as the stop it undoes left it. The stop
//! step reads it right after stopping ([`StoppedAs`]); it travels with the outcome into the undo record, which only
//! the request step writes (never a tag, which anyone who may tag the instance could line up with their own change).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What starting an instance runs: a change to any of it while the instance is stopped (a bigger type, new boot code,
/// another role, other firewall rules or disks) is someone else's, and an undo does not start it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartConfiguration {
    pub instance_type: String,
    /// SHA-256 (hex) of the user data as EC2 returns it (base64), or "" for none: boot code is compared, never kept.
    pub user_data_sha256: String,
    /// The instance profile's ARN, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    /// Sorted.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The attached volumes' ids, sorted.
    #[serde(default)]
    pub volumes: Vec<String>,
}

impl StartConfiguration {
    /// The configuration from EC2's answers: ids sorted, user data hashed.
    pub fn new(
        instance_type: impl Into<String>,
        user_data_base64: Option<&str>,
        instance_profile: Option<String>,
        mut security_groups: Vec<String>,
        mut volumes: Vec<String>,
    ) -> Self {
        security_groups.sort();
        volumes.sort();
        let user_data_sha256 = match user_data_base64.filter(|u| !u.is_empty()) {
            Some(data) => hex::encode(Sha256::digest(data.as_bytes())),
            None => String::new(),
        };
        Self { instance_type: instance_type.into(), user_data_sha256, instance_profile, security_groups, volumes }
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
        if self.security_groups != then.security_groups {
            changes.push(format!("security groups {:?} then, {:?} now", then.security_groups, self.security_groups));
        }
        if self.volumes != then.volumes {
            changes.push(format!("volumes {:?} then, {:?} now", then.volumes, self.volumes));
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
            Some("arn:aws:iam::123456789012:instance-profile/web".into()),
            vec!["sg-2".into(), "sg-1".into()],
            vec!["vol-b".into(), "vol-a".into()],
        )
    }

    #[test]
    fn the_same_configuration_in_another_order_is_unchanged() {
        let again = StartConfiguration::new(
            "t3.medium",
            Some("IyEvYmluL3NoCmVjaG8gaGk="),
            Some("arn:aws:iam::123456789012:instance-profile/web".into()),
            vec!["sg-1".into(), "sg-2".into()],
            vec!["vol-a".into(), "vol-b".into()],
        );
        assert!(again.changes_since(&stopped()).is_empty());
        // `echo -n 'IyEvYmluL3NoCmVjaG8gaGk=' | sha256sum`
        assert_eq!(stopped().user_data_sha256, "d43cf15327b189fa1b5fbb6027af50e93ca9ff0d377eb34dc72eff22de11161b");
        assert_eq!(StartConfiguration::new("t3.medium", Some(""), None, vec![], vec![]).user_data_sha256, "");
    }

    #[test]
    fn each_change_a_person_can_make_to_a_stopped_instance_is_said() {
        let then = stopped();
        type Change = (&'static str, fn(&mut StartConfiguration));
        let cases: [Change; 5] = [
            ("instance type t3.medium then, m5.24xlarge now", |c| c.instance_type = "m5.24xlarge".into()),
            ("user data (boot code) changed", |c| c.user_data_sha256 = "00".into()),
            ("instance profile arn:aws:iam::123456789012:instance-profile/web then, none now", |c| {
                c.instance_profile = None
            }),
            ("security groups", |c| c.security_groups.push("sg-open".into())),
            ("volumes", |c| c.volumes.truncate(1)),
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
