//! The policy check: deterministic, independent of the LLM. Every recommendation ends in exactly one of
//! `proposals` (may be put to a human) or `denials` (with a reason a person can read).
//!
//! Tag values are untrusted input. They are only ever compared against configured keys and values, never
//! interpreted: a Name tag that says "ignore previous instructions" is a string like any other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::inventory::{InstanceRecord, RootDeviceType};
use crate::tags;
use crate::utilisation::UtilisationSummary;
use crate::verdict::IdleVerdict;

/// What the reasoning step recommends for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendedAction {
    Keep,
    Stop,
    SnapshotAndStop,
    Rightsize,
    Review,
    Terminate,
}

impl RecommendedAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Stop => "stop",
            Self::SnapshotAndStop => "snapshot_and_stop",
            Self::Rightsize => "rightsize",
            Self::Review => "review",
            Self::Terminate => "terminate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub instance_id: String,
    pub action: RecommendedAction,
    #[serde(default)]
    pub confidence: f64,
    #[serde(default)]
    pub justification: String,
    /// Which reasoner produced it (`agent`, `converse`, `rules`, `rules (fallback: ...)`).
    #[serde(default)]
    pub backend: String,
    /// What the reasoner says it based the recommendation on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// The agent session or trace the recommendation came from, for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// What a human is asked to approve, one per resource kind that can be acted on. An instance is only ever
/// snapshotted and stopped (a model that recommends termination is reported and denied); an unattached volume is
/// snapshotted (the snapshot kept, so it can be recreated) and then deleted; an unassociated Elastic IP is released.
/// Every email, page and step says what it does from here, so none can say one thing and do another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposedAction {
    SnapshotAndStop,
    SnapshotAndDelete,
    Release,
    /// A long-stopped instance's EBS volumes: snapshotted (kept), then detached and deleted. Only in a deployment
    /// that turned it on (`FINOPS_STOPPED_VOLUMES=delete`); the instance is kept, and cannot start until volumes
    /// are recreated from the snapshots and attached again.
    SnapshotAndDeleteVolumes,
}

impl ProposedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => "snapshot-and-stop",
            Self::SnapshotAndDelete => "snapshot-and-delete",
            Self::Release => "release",
            Self::SnapshotAndDeleteVolumes => "snapshot-and-delete-volumes",
        }
    }

    /// "finops-agent proposes to {verb} ..."
    pub fn verb(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => "snapshot and stop",
            Self::SnapshotAndDelete => "snapshot and delete",
            Self::Release => "release",
            Self::SnapshotAndDeleteVolumes => "snapshot and delete the volumes of",
        }
    }

    /// "Deny {gerund} qa-perf-rig?"
    pub fn gerund(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => "stopping",
            Self::SnapshotAndDelete => "deleting",
            Self::Release => "releasing",
            Self::SnapshotAndDeleteVolumes => "deleting the volumes of",
        }
    }

    /// What the resource is, for a sentence ("an idle EC2 instance").
    pub fn subject(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => "an idle EC2 instance",
            Self::SnapshotAndDelete => "an unattached EBS volume",
            Self::Release => "an unassociated Elastic IP address",
            Self::SnapshotAndDeleteVolumes => "a long-stopped EC2 instance's EBS volumes",
        }
    }

    /// The row label of the resource's id.
    pub fn resource_label(self) -> &'static str {
        match self {
            Self::SnapshotAndStop | Self::SnapshotAndDeleteVolumes => "Instance",
            Self::SnapshotAndDelete => "Volume",
            Self::Release => "Address",
        }
    }

    /// What approving does, step by step, for the Approve link and button.
    pub fn approve_steps(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => "snapshot first, then stop",
            Self::SnapshotAndDelete => "snapshot first, then delete",
            Self::Release => "release the address",
            Self::SnapshotAndDeleteVolumes => "snapshot every volume first, then delete them",
        }
    }

    /// What approving does, in full, for the confirmation page.
    pub fn approve_explained(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => {
                "finops-agent will snapshot every EBS volume of this instance, measure it again, and stop it once the \
                 snapshots complete. Nothing has happened yet."
            }
            Self::SnapshotAndDelete => {
                "finops-agent will snapshot this volume, check again that it is attached to nothing and unused, and \
                 delete it once the snapshot completes. The snapshot is kept, so the volume can be recreated. Nothing \
                 has happened yet."
            }
            Self::Release => {
                "finops-agent will check again that this address is associated with nothing and release it back to \
                 AWS. A released address may not be recoverable. Nothing has happened yet."
            }
            Self::SnapshotAndDeleteVolumes => {
                "finops-agent will snapshot every EBS volume of this stopped instance, check again that it is still \
                 stopped and untouched, then detach and delete the volumes once the snapshots complete. The \
                 snapshots are kept; the instance stays, and cannot start until volumes are recreated from them and \
                 attached. Nothing has happened yet."
            }
        }
    }

    /// The undo of the action once done, for its link and page ("Start it again"); None: it cannot be undone (a
    /// released address goes back to AWS's pool, and another allocation gets another address).
    pub fn undo_label(self) -> Option<&'static str> {
        match self {
            Self::SnapshotAndStop => Some("Start it again"),
            Self::SnapshotAndDelete => Some("Recreate from snapshot"),
            Self::Release | Self::SnapshotAndDeleteVolumes => None,
        }
    }

    /// What undoing does, in full, for the undo page.
    pub fn undo_explained(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => {
                "finops-agent will start this instance again, if it is still stopped as finops-agent left it. Its \
                 snapshots are kept. Nothing has happened yet."
            }
            Self::SnapshotAndDelete => {
                "finops-agent will create a new volume from the snapshot taken before the deletion, in the same \
                 availability zone, with the same type and tags. It gets a new volume id and is attached to nothing. \
                 Nothing has happened yet."
            }
            Self::Release => "A released address cannot be got back: nothing to undo.",
            Self::SnapshotAndDeleteVolumes => {
                "A stopped instance's deleted volumes are recreated from the kept snapshots by hand (CreateVolume, \
                 AttachVolume at the same device): no link does it."
            }
        }
    }

    /// What denying leaves, for the confirmation page.
    pub fn deny_explained(self) -> &'static str {
        match self {
            Self::SnapshotAndStop => {
                "The instance will be left running and untouched in this run. Nothing has happened yet."
            }
            Self::SnapshotAndDelete => "The volume will be left as it is in this run. Nothing has happened yet.",
            Self::Release => "The address will stay allocated in this run. Nothing has happened yet.",
            Self::SnapshotAndDeleteVolumes => {
                "The instance and its volumes will be left as they are in this run. Nothing has happened yet."
            }
        }
    }
}

/// An instance's lookback, day by day, as the idle rule read it: the CPU statistic the rule uses (the day's peak,
/// by default) and network in + out, with the rule's limits. What the approval page draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyEvidence {
    pub first_day: chrono::NaiveDate,
    /// "peak CPU" or "average CPU".
    pub cpu_label: String,
    pub cpu_percent: Vec<Option<f64>>,
    pub network_mb: Vec<Option<f64>>,
    pub cpu_limit_percent: f64,
    pub network_limit_mb: f64,
}

impl DailyEvidence {
    /// The series of `days` as `rule` reads them (values rounded to 0.01).
    pub fn of(days: &[crate::daily::DailyUtilisation], rule: &crate::criteria::DailyRule) -> Option<Self> {
        let first_day = days.first()?.day;
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let (cpu_label, cpu_percent) = match rule.cpu_statistic {
            crate::criteria::CpuStatistic::Maximum => {
                ("peak CPU", days.iter().map(|d| d.cpu_max_percent.map(round)).collect())
            }
            crate::criteria::CpuStatistic::Average => {
                ("average CPU", days.iter().map(|d| d.cpu_avg_percent.map(round)).collect())
            }
        };
        Some(Self {
            first_day,
            cpu_label: cpu_label.to_owned(),
            cpu_percent,
            network_mb: days.iter().map(|d| d.network_bytes.map(|b| round(b / 1e6))).collect(),
            cpu_limit_percent: rule.cpu_percent.limit,
            network_limit_mb: round(rule.network_bytes.limit / 1e6),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Proposal {
    /// The instance, volume (`vol-`) or Elastic IP allocation (`eipalloc-`) the action is for.
    #[serde(alias = "instanceId")]
    pub resource_id: String,
    pub region: String,
    /// The instance type, or what the resource is ("gp3 volume, 100 GiB", "public IPv4 203.0.113.10").
    #[serde(alias = "instanceType")]
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The account the instance runs in, in an organization run (absent: the hub's own): the actions step acts there
    /// through the member's actions role, and the email names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<crate::organization::AccountRef>,
    pub action: ProposedAction,
    /// What the model recommended; none for a resource a deterministic rule proposes (no model is asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<RecommendedAction>,
    pub confidence: f64,
    pub justification: String,
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving_usd: Option<f64>,
    pub price_source: String,
    /// The metric evidence behind the verdict (the assessment's reasons).
    pub evidence: Vec<String>,
    /// The same evidence as daily series, for the approval page's chart (an instance's; none for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailyEvidence>,
    pub volume_ids: Vec<String>,
    /// When the instance was launched or last started, as the scan saw it: another time at stop time means it was
    /// restarted since, and it is left alone. None for resources other than instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<DateTime<Utc>>,
    /// The end of the measured days: the actions step measures again from here to the moment before it stops.
    pub measured_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenialReason {
    Duplicate,
    UnknownInstance,
    NoActionNeeded,
    TerminateUnsupported,
    Protected,
    Production,
    NotAllowListed,
    Managed,
    InstanceStoreRoot,
    InstanceStorage,
    NoVolumes,
    NotRunning,
    Snoozed,
    NotIdle,
    CountCap,
    SavingsCap,
    /// An Elastic IP a DNS record names (by its tags): releasing it would break the name.
    DnsReferenced,
}

impl DenialReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::UnknownInstance => "unknown-instance",
            Self::NoActionNeeded => "no-action-needed",
            Self::TerminateUnsupported => "terminate-unsupported",
            Self::Protected => "protected",
            Self::Production => "production",
            Self::NotAllowListed => "not-allow-listed",
            Self::Managed => "managed",
            Self::InstanceStoreRoot => "instance-store-root",
            Self::InstanceStorage => "instance-storage",
            Self::NoVolumes => "no-volumes",
            Self::NotRunning => "not-running",
            Self::Snoozed => "snoozed",
            Self::NotIdle => "not-idle",
            Self::CountCap => "count-cap",
            Self::SavingsCap => "savings-cap",
            Self::DnsReferenced => "dns-referenced",
        }
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    #[serde(alias = "instanceId")]
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<RecommendedAction>,
    pub reason: DenialReason,
    /// A sentence for the report and the email.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    /// Tag keys that name an environment (compared as [`tags::normalise`] reads them).
    pub environment_tag_keys: Vec<String>,
    /// Words that mean production: an environment value containing one is production (`prod1`, `eu-prod`,
    /// ` PROD `), except the exact non-production spellings of [`NON_PRODUCTION_PREFIXES`] (`non-prod`, `preprod`).
    pub production_values: Vec<String>,
    pub protect_tag_key: String,
    pub snooze_tag_key: String,
    pub max_proposals: usize,
    pub max_monthly_usd: f64,
    /// In an organization run, the same caps per account (largest savings first within each): one account's many
    /// idle instances cannot take the whole run's cap. None: only the run's caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_proposals_per_account: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_monthly_usd_per_account: Option<f64>,
    /// Allow-list mode: when set, only instances with an environment tag whose value is one of these (exactly, in
    /// any case) may be proposed; untagged instances never are. IAM's Allow carries the same condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_only_on_environments: Option<Vec<String>>,
    /// Whether a long-stopped instance's volumes may be proposed for deletion (`FINOPS_STOPPED_VOLUMES=delete`);
    /// off by default: they are reported only.
    #[serde(default)]
    pub delete_stopped_instance_volumes: bool,
    /// The tag whose value names a resource's owner (`FINOPS_OWNER_TAG_KEY`, default `Owner`, any case): an email
    /// address there gets the owner's notices.
    #[serde(default = "default_owner_tag_key")]
    pub owner_tag_key: String,
}

fn default_owner_tag_key() -> String {
    "Owner".into()
}

/// A production word right after one of these, with at most one character between, and nothing else in the
/// value, names a non-production environment: `non-prod`, `nonprod`, `Pre Production`. Anything longer that
/// contains a production word (`pre-prod-eu`, `prod-and-non-prod`) is production.
pub const NON_PRODUCTION_PREFIXES: [&str; 2] = ["non", "pre"];

/// The values of the protect tag that do not protect, in any case and nothing else (` false`, with a stray
/// space, still protects: IAM compares the same way).
pub const UNPROTECT_VALUES: [&str; 4] = ["false", "no", "0", "off"];

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            environment_tag_keys: vec!["Environment".into(), "env".into(), "stage".into()],
            production_values: vec!["prod".into(), "production".into(), "prd".into(), "live".into()],
            protect_tag_key: "finops:protect".into(),
            snooze_tag_key: "finops:snooze-until".into(),
            max_proposals: 10,
            max_monthly_usd: 2_000.0,
            max_proposals_per_account: None,
            max_monthly_usd_per_account: None,
            act_only_on_environments: None,
            delete_stopped_instance_volumes: false,
            owner_tag_key: default_owner_tag_key(),
        }
    }
}

impl PolicyConfig {
    /// Reads `FINOPS_PROTECTED_TAG_KEYS`, `FINOPS_PRODUCTION_VALUES`, `FINOPS_ACT_ONLY_ON_ENVIRONMENTS`
    /// (comma-separated), `FINOPS_MAX_PROPOSALS` and `FINOPS_MAX_MONTHLY_USD`; unset keeps the default.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, crate::ConfigError> {
        use crate::ConfigError;
        let vars: HashMap<String, String> = vars.into_iter().filter(|(k, _)| k.starts_with("FINOPS_")).collect();
        let mut c = Self::default();
        let list = |k: &str| -> Result<Option<Vec<String>>, ConfigError> {
            let Some(v) = vars.get(k) else { return Ok(None) };
            let items: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
            if items.is_empty() {
                return Err(ConfigError::new(k, "needs at least one value: an empty list would protect nothing"));
            }
            if let Some(bad) = items.iter().find(|i| tags::normalise(i).is_empty() || tags::has_invisible(i)) {
                return Err(ConfigError::new(k, format!("{bad:?} is not a usable value")));
            }
            Ok(Some(items))
        };
        if let Some(keys) = list("FINOPS_PROTECTED_TAG_KEYS")? {
            c.environment_tag_keys = keys;
        }
        if let Some(values) = list("FINOPS_PRODUCTION_VALUES")? {
            c.production_values = values;
        }
        if vars.get("FINOPS_ACT_ONLY_ON_ENVIRONMENTS").is_some_and(|v| !v.trim().is_empty()) {
            c.act_only_on_environments = list("FINOPS_ACT_ONLY_ON_ENVIRONMENTS")?;
        }
        if let Some(v) = vars.get("FINOPS_MAX_PROPOSALS") {
            c.max_proposals = v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new("FINOPS_MAX_PROPOSALS", format!("{v:?} is not a count")))?;
        }
        if let Some(v) = vars.get("FINOPS_MAX_MONTHLY_USD") {
            c.max_monthly_usd =
                v.trim().parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).ok_or_else(|| {
                    ConfigError::new("FINOPS_MAX_MONTHLY_USD", format!("{v:?} is not a dollar amount"))
                })?;
        }
        if let Some(v) = vars.get("FINOPS_MAX_PROPOSALS_PER_ACCOUNT") {
            c.max_proposals_per_account =
                Some(v.trim().parse().map_err(|_| {
                    ConfigError::new("FINOPS_MAX_PROPOSALS_PER_ACCOUNT", format!("{v:?} is not a count"))
                })?);
        }
        if let Some(v) = vars.get("FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT") {
            c.max_monthly_usd_per_account =
                Some(v.trim().parse::<f64>().ok().filter(|d| d.is_finite() && *d >= 0.0).ok_or_else(|| {
                    ConfigError::new("FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT", format!("{v:?} is not a dollar amount"))
                })?);
        }
        match vars.get("FINOPS_STOPPED_VOLUMES").map(|v| v.trim()) {
            None | Some("" | "report") => {}
            Some("delete") => c.delete_stopped_instance_volumes = true,
            Some(other) => {
                return Err(ConfigError::new("FINOPS_STOPPED_VOLUMES", format!("{other:?} is not report or delete")))
            }
        }
        if let Some(key) = vars.get("FINOPS_OWNER_TAG_KEY").map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if tags::has_invisible(key) {
                return Err(ConfigError::new("FINOPS_OWNER_TAG_KEY", format!("{key:?} is not a usable tag key")));
            }
            c.owner_tag_key = key.to_owned();
        }
        // A setting that used to exist: refuse it loudly rather than let someone believe terminate is on.
        if vars.get("FINOPS_TERMINATE_ENABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Err(ConfigError::new(
                "FINOPS_TERMINATE_ENABLED",
                "finops never terminates instances (it snapshots and stops them); remove this setting",
            ));
        }
        Ok(c)
    }

    /// The owner a resource's tags name (the owner tag key, compared as [`tags::normalise`] reads keys).
    pub fn owner_of<'a, I: IntoIterator<Item = (&'a String, &'a String)>>(&self, tags: I) -> Option<String> {
        let key = tags::normalise(&self.owner_tag_key);
        tags.into_iter().find(|(k, _)| tags::normalise(k) == key).map(|(_, v)| v.clone())
    }

    fn production_words(&self) -> Vec<String> {
        self.production_values.iter().map(|v| tags::normalise(v)).filter(|v| !v.is_empty()).collect()
    }

    /// Whether a tag key is one of the environment keys.
    pub fn is_environment_key(&self, key: &str) -> bool {
        let key = tags::normalise(key);
        self.environment_tag_keys.iter().any(|k| tags::normalise(k) == key)
    }

    /// Why an environment tag value reads as production, if it does. A value with invisible characters is
    /// production whatever it spells: someone hid something in it.
    pub fn production_value(&self, raw: &str) -> Option<String> {
        if tags::has_invisible(raw) {
            return Some("it contains invisible characters".into());
        }
        let value = tags::normalise(raw);
        let words = self.production_words();
        let negated = NON_PRODUCTION_PREFIXES.iter().any(|prefix| {
            words.iter().any(|w| {
                value
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(w.as_str()))
                    .is_some_and(|between| between.chars().count() <= 1)
            })
        });
        if negated {
            return None;
        }
        words.iter().find(|w| value.contains(w.as_str())).map(|w| format!("it contains {w:?}"))
    }

    /// The production environment tag of an instance, if any: (key, value, why). Every environment tag counts, so
    /// `Environment=dev` does not cancel `environment=prod`.
    pub fn production_tag(&self, instance: &InstanceRecord) -> Option<(String, String, String)> {
        self.production_tag_in(&instance.tags)
    }

    /// [`Self::production_tag`] of any resource's tags.
    pub fn production_tag_in(&self, tags: &BTreeMap<String, String>) -> Option<(String, String, String)> {
        tags.iter().find_map(|(k, v)| {
            if !self.is_environment_key(k) {
                return None;
            }
            self.production_value(v).map(|why| (k.clone(), v.clone(), why))
        })
    }

    /// The protect tag's value if it protects: any value but exactly `false`, `no`, `0` or `off` (any case).
    /// Every key that reads as the protect key counts: `Finops:protect=false` does not cancel
    /// `finops:protect=true`.
    pub fn protect_tag(&self, instance: &InstanceRecord) -> Option<String> {
        self.protect_tag_in(&instance.tags)
    }

    /// [`Self::protect_tag`] of any resource's tags.
    pub fn protect_tag_in(&self, resource_tags: &BTreeMap<String, String>) -> Option<String> {
        let key = tags::normalise(&self.protect_tag_key);
        resource_tags
            .iter()
            .filter(|(k, _)| tags::normalise(k) == key)
            .find(|(_, v)| !UNPROTECT_VALUES.iter().any(|no| v.to_lowercase() == *no))
            .map(|(_, v)| v.clone())
    }

    /// In allow-list mode, why the instance is not on the list. The comparison is the one IAM makes: the tag key
    /// and the value as written, ignoring case only.
    pub fn not_allow_listed(&self, instance: &InstanceRecord) -> Option<String> {
        self.not_allow_listed_in(&instance.tags)
    }

    /// [`Self::not_allow_listed`] of any resource's tags.
    pub fn not_allow_listed_in(&self, tags: &BTreeMap<String, String>) -> Option<String> {
        let allowed = self.act_only_on_environments.as_ref()?;
        let listed = tags.iter().any(|(k, v)| {
            self.environment_tag_keys.iter().any(|ek| ek.to_lowercase() == k.to_lowercase())
                && allowed.iter().any(|a| a.to_lowercase() == v.to_lowercase())
        });
        (!listed).then(|| {
            format!(
                "allow-list mode: only instances whose {} tag is exactly one of {} are acted on",
                self.environment_tag_keys.join(" / "),
                allowed.join(", ")
            )
        })
    }

    /// When the instance is snoozed until, if that is in the future. An unreadable value counts as snoozed for
    /// ever: a person meant to protect the instance.
    pub fn snoozed_until(&self, instance: &InstanceRecord, now: DateTime<Utc>) -> Option<String> {
        self.snoozed_until_in(&instance.tags, now)
    }

    /// [`Self::snoozed_until`] of any resource's tags.
    pub fn snoozed_until_in(&self, resource_tags: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<String> {
        let key = tags::normalise(&self.snooze_tag_key);
        resource_tags.iter().filter(|(k, _)| tags::normalise(k) == key).find_map(|(_, raw)| {
            let value = raw.trim();
            let until = DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
                NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            });
            match until {
                Some(t) if t > now => Some(t.to_rfc3339()),
                Some(_) => None,
                None => Some(format!("unreadable value {value:?}, treated as snoozed")),
            }
        })
    }

    /// Why a resource of any kind may not be acted on, from its tags alone: protected, production, not on the
    /// allow-list, snoozed. Every kind is held to these, as instances are.
    pub fn tags_block(&self, tags: &BTreeMap<String, String>, now: DateTime<Utc>) -> Option<(DenialReason, String)> {
        self.tag_guard(tags, "production").or_else(|| {
            self.snoozed_until_in(tags, now).map(|until| (DenialReason::Snoozed, format!("snoozed until {until}")))
        })
    }

    /// Whether these tags make a resource protected or production (the rules IAM's guard enforces on every kind,
    /// whatever the allow-list says).
    pub fn production_or_protected(&self, tags: &BTreeMap<String, String>) -> Option<(DenialReason, String)> {
        if let Some(v) = self.protect_tag_in(tags) {
            return Some((DenialReason::Protected, format!("tagged {}={v:?}", self.protect_tag_key)));
        }
        self.production_tag_in(tags).map(|(k, v, why)| (DenialReason::Production, format!("tag {k}={v:?}: {why}")))
    }

    /// The tag rules IAM enforces again (protected, production, allow-list), in that order; `production` names the
    /// thing in the production denial ("production instance", "production").
    fn tag_guard(&self, tags: &BTreeMap<String, String>, production: &str) -> Option<(DenialReason, String)> {
        if let Some(v) = self.protect_tag_in(tags) {
            return Some((DenialReason::Protected, format!("tagged {}={v:?}", self.protect_tag_key)));
        }
        if let Some((k, v, why)) = self.production_tag_in(tags) {
            return Some((DenialReason::Production, format!("{production} (tag {k}={v:?}: {why})")));
        }
        self.not_allow_listed_in(tags).map(|why| (DenialReason::NotAllowListed, why))
    }

    /// Why a stopped instance may not be started again by an undo, from its live tags and membership: protected,
    /// production, not on the allow-list, snoozed since, or managed by a cluster (which starts and stops its own).
    /// What a person changed since the stop wins over the undo link.
    pub fn start_block(&self, instance: &InstanceRecord, now: DateTime<Utc>) -> Option<(DenialReason, String)> {
        self.tag_guard(&instance.tags, "production instance")
            .or_else(|| {
                self.snoozed_until(instance, now).map(|until| (DenialReason::Snoozed, format!("snoozed until {until}")))
            })
            .or_else(|| {
                instance
                    .membership
                    .describe()
                    .map(|what| (DenialReason::Managed, format!("{what}: its cluster starts and stops it")))
            })
    }

    /// Why this instance may not be stopped right now, from its own state and tags: the check the actions step
    /// repeats on the live instance right before it stops anything.
    pub fn instance_block(&self, instance: &InstanceRecord, now: DateTime<Utc>) -> Option<(DenialReason, String)> {
        if let Some(blocked) = self.tag_guard(&instance.tags, "production instance") {
            return Some(blocked);
        }
        if let Some(what) = instance.membership.describe() {
            return Some((
                DenialReason::Managed,
                format!("{what}: stopping it gets it replaced or breaks the cluster"),
            ));
        }
        if instance.root_device_type == RootDeviceType::InstanceStore {
            return Some((
                DenialReason::InstanceStoreRoot,
                "instance-store root volume: stopping it loses the root disk".into(),
            ));
        }
        if let Some(what) = instance.instance_storage.describe() {
            return Some((
                DenialReason::InstanceStorage,
                format!("{what}: stopping erases them and snapshots cannot cover them"),
            ));
        }
        if instance.volumes.is_empty() {
            return Some((
                DenialReason::NoVolumes,
                "EBS-root instance reports no volumes: there would be nothing to snapshot before the stop".into(),
            ));
        }
        if instance.state != "running" {
            return Some((DenialReason::NotRunning, format!("instance is {}, not running", instance.state)));
        }
        if let Some(until) = self.snoozed_until(instance, now) {
            return Some((DenialReason::Snoozed, format!("snoozed until {until}")));
        }
        None
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub proposals: Vec<Proposal>,
    pub denials: Vec<Denial>,
}

/// Decides. `utilisation` holds this run's summaries by instance id; recommendations for instances the metrics did
/// not find idle are denied whatever the agent says.
pub fn evaluate(
    config: &PolicyConfig,
    inventory: &[InstanceRecord],
    utilisation: &HashMap<&str, &UtilisationSummary>,
    recommendations: &[Recommendation],
    now: DateTime<Utc>,
) -> PolicyOutcome {
    let by_id: HashMap<&str, &InstanceRecord> = inventory.iter().map(|i| (i.instance_id.as_str(), i)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut denials = Vec::new();
    let mut eligible: Vec<Proposal> = Vec::new();
    let deny = |r: &Recommendation, reason: DenialReason, detail: String| Denial {
        resource_id: r.instance_id.clone(),
        recommended: Some(r.action),
        reason,
        detail,
    };

    for rec in recommendations {
        if !seen.insert(rec.instance_id.as_str()) {
            denials.push(deny(rec, DenialReason::Duplicate, "a second recommendation for the same instance".into()));
            continue;
        }
        let Some(instance) = by_id.get(rec.instance_id.as_str()) else {
            denials.push(deny(rec, DenialReason::UnknownInstance, "not in this run's inventory".into()));
            continue;
        };
        let action = match rec.action {
            RecommendedAction::Stop | RecommendedAction::SnapshotAndStop => ProposedAction::SnapshotAndStop,
            RecommendedAction::Terminate => {
                denials.push(deny(
                    rec,
                    DenialReason::TerminateUnsupported,
                    "finops never terminates instances; it only snapshots and stops them".into(),
                ));
                continue;
            }
            other => {
                denials.push(deny(
                    rec,
                    DenialReason::NoActionNeeded,
                    format!("{} is reported, not automated", other.as_str()),
                ));
                continue;
            }
        };
        if let Some((reason, detail)) = config.instance_block(instance, now) {
            denials.push(deny(rec, reason, detail));
            continue;
        }
        let summary = utilisation.get(rec.instance_id.as_str());
        match summary.map(|s| s.verdict()) {
            Some(IdleVerdict::Idle) => {}
            Some(v) => {
                denials.push(deny(
                    rec,
                    DenialReason::NotIdle,
                    format!("metrics say {v}, only Idle instances are stopped"),
                ));
                continue;
            }
            None => {
                denials.push(deny(rec, DenialReason::NotIdle, "no utilisation summary for this instance".into()));
                continue;
            }
        }
        let summary = summary.expect("checked above");
        let env = instance.tags.iter().find(|(k, _)| config.is_environment_key(k)).map(|(_, v)| v.clone());
        // The measured days end where the actions step starts measuring again.
        let measured_until = summary
            .days
            .last()
            .and_then(|d| d.day.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(now, |t| t.and_utc());
        eligible.push(Proposal {
            resource_id: instance.instance_id.clone(),
            region: instance.region.clone(),
            resource_type: instance.instance_type.clone(),
            name: instance.name().map(str::to_owned),
            environment: env,
            owner: config.owner_of(instance.tags.iter()),
            account: instance.account.clone(),
            action,
            recommended: Some(rec.action),
            confidence: rec.confidence.clamp(0.0, 1.0),
            justification: rec.justification.chars().take(500).collect(),
            backend: rec.backend.clone(),
            monthly_saving_usd: summary.cost.monthly_saving_usd,
            price_source: summary.cost.price_source.to_string(),
            evidence: summary.assessment.reasons.clone(),
            daily: None,
            volume_ids: instance.volumes.iter().map(|v| v.volume_id.clone()).collect(),
            launch_time: Some(instance.launch_time),
            measured_until,
        });
    }

    let (proposals, capped) = cap(config, eligible);
    denials.extend(capped);
    PolicyOutcome { proposals, denials }
}

/// [`evaluate`], with proposals for resources beyond instances (see [`crate::resources::proposals`]) held to the same
/// caps: one run asks about at most `max_proposals` of any kind, largest savings first.
pub fn evaluate_with_resources(
    config: &PolicyConfig,
    inventory: &[InstanceRecord],
    utilisation: &HashMap<&str, &UtilisationSummary>,
    recommendations: &[Recommendation],
    resource_proposals: Vec<Proposal>,
    now: DateTime<Utc>,
) -> PolicyOutcome {
    let PolicyOutcome { proposals, mut denials } = evaluate(config, inventory, utilisation, recommendations, now);
    let (proposals, capped) = cap(config, proposals.into_iter().chain(resource_proposals).collect());
    denials.extend(capped);
    PolicyOutcome { proposals, denials }
}

/// The caps of a run (count and monthly saving, in all and per account): the largest savings first, so a cap keeps
/// the proposals that matter most; the rest are denied with the cap they are beyond.
fn cap(config: &PolicyConfig, mut eligible: Vec<Proposal>) -> (Vec<Proposal>, Vec<Denial>) {
    let mut denials = Vec::new();
    eligible.sort_by(|a, b| {
        b.monthly_saving_usd
            .unwrap_or(0.0)
            .total_cmp(&a.monthly_saving_usd.unwrap_or(0.0))
            .then_with(|| a.resource_id.cmp(&b.resource_id))
    });
    let mut proposals = Vec::new();
    let mut total = 0.0;
    // Per account (the hub's own instances under "this account"): proposals taken and their savings.
    let mut by_account: HashMap<String, (usize, f64)> = HashMap::new();
    for p in eligible {
        let saving = p.monthly_saving_usd.unwrap_or(0.0);
        let account = p.account.as_ref().map_or_else(|| "this account".to_owned(), |a| a.to_string());
        let (taken, account_total) = by_account.get(&account).copied().unwrap_or_default();
        let capped = if proposals.len() >= config.max_proposals {
            Some((DenialReason::CountCap, format!("beyond the cap of {} proposals per run", config.max_proposals)))
        } else if config.max_proposals_per_account.is_some_and(|cap| taken >= cap) {
            let cap = config.max_proposals_per_account.unwrap_or_default();
            Some((DenialReason::CountCap, format!("beyond the cap of {cap} proposals per account in {account}")))
        } else if total + saving > config.max_monthly_usd {
            Some((
                DenialReason::SavingsCap,
                format!("beyond the cap of ${:.2}/month of actions per run", config.max_monthly_usd),
            ))
        } else if config.max_monthly_usd_per_account.is_some_and(|cap| account_total + saving > cap) {
            let cap = config.max_monthly_usd_per_account.unwrap_or_default();
            Some((
                DenialReason::SavingsCap,
                format!("beyond the cap of ${cap:.2}/month of actions per account in {account}"),
            ))
        } else {
            None
        };
        match capped {
            Some((reason, detail)) => {
                denials.push(Denial { resource_id: p.resource_id, recommended: p.recommended, reason, detail })
            }
            None => {
                total += saving;
                by_account.insert(account, (taken + 1, account_total + saving));
                proposals.push(p);
            }
        }
    }
    (proposals, denials)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every email, page and Slack message says of each action, written out here as approvers read it: an
    /// approval must never say one thing and do another (found by the mutation run: only other crates read them).
    #[test]
    fn each_proposed_action_says_what_it_does() {
        let table = [
            (
                ProposedAction::SnapshotAndStop,
                "snapshot-and-stop",
                "snapshot and stop",
                "stopping",
                "an idle EC2 instance",
                "Instance",
                "snapshot first, then stop",
            ),
            (
                ProposedAction::SnapshotAndDelete,
                "snapshot-and-delete",
                "snapshot and delete",
                "deleting",
                "an unattached EBS volume",
                "Volume",
                "snapshot first, then delete",
            ),
            (
                ProposedAction::Release,
                "release",
                "release",
                "releasing",
                "an unassociated Elastic IP address",
                "Address",
                "release the address",
            ),
            (
                ProposedAction::SnapshotAndDeleteVolumes,
                "snapshot-and-delete-volumes",
                "snapshot and delete the volumes of",
                "deleting the volumes of",
                "a long-stopped EC2 instance's EBS volumes",
                "Instance",
                "snapshot every volume first, then delete them",
            ),
        ];
        for (action, word, verb, gerund, subject, label, steps) in table {
            assert_eq!(
                (action.as_str(), action.verb(), action.gerund(), action.subject(), action.resource_label()),
                (word, verb, gerund, subject, label)
            );
            assert_eq!(action.approve_steps(), steps);
            assert_eq!(serde_json::to_value(action).unwrap(), word, "the step documents say the same");
            assert!(action.approve_explained().ends_with("Nothing has happened yet."), "{word}");
            assert!(action.deny_explained().ends_with("Nothing has happened yet."), "{word}");
        }
        // What can be undone, and what its page says before anything happens.
        assert_eq!(ProposedAction::SnapshotAndStop.undo_label(), Some("Start it again"));
        assert_eq!(ProposedAction::SnapshotAndDelete.undo_label(), Some("Recreate from snapshot"));
        for action in [ProposedAction::SnapshotAndStop, ProposedAction::SnapshotAndDelete] {
            assert!(action.undo_explained().ends_with("Nothing has happened yet."), "{action:?}");
        }
        for action in [ProposedAction::Release, ProposedAction::SnapshotAndDeleteVolumes] {
            assert_eq!(action.undo_label(), None, "{action:?} cannot be undone by a link");
            assert!(!action.undo_explained().contains("will"), "{action:?} promises nothing");
        }
        assert!(ProposedAction::Release.undo_explained().contains("cannot be got back"));
        assert!(ProposedAction::SnapshotAndDeleteVolumes.undo_explained().contains("by hand"));
        assert!(ProposedAction::SnapshotAndStop.undo_explained().contains("if it is still stopped"));
        assert!(ProposedAction::SnapshotAndDelete.undo_explained().contains("new volume id"));
        assert!(ProposedAction::SnapshotAndStop.deny_explained().contains("left running"));
        assert!(ProposedAction::SnapshotAndStop.approve_explained().contains("snapshot every EBS volume"));
        assert!(ProposedAction::SnapshotAndDelete.approve_explained().contains("snapshot is kept"));
        assert!(ProposedAction::Release.approve_explained().contains("may not be recoverable"));
        for (action, word) in [
            (RecommendedAction::Keep, "keep"),
            (RecommendedAction::Stop, "stop"),
            (RecommendedAction::SnapshotAndStop, "snapshot_and_stop"),
            (RecommendedAction::Rightsize, "rightsize"),
            (RecommendedAction::Review, "review"),
            (RecommendedAction::Terminate, "terminate"),
        ] {
            assert_eq!(action.as_str(), word);
            assert_eq!(serde_json::to_value(action).unwrap(), word);
        }
    }

    /// What an undo reads from a kept snapshot's tags before recreating a volume (found by the mutation run: only the
    /// actions step's tests reached it).
    #[test]
    fn production_or_protected_tags_are_named_whatever_else_is_set() {
        let config = PolicyConfig::default();
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let reason = |pairs: &[(&str, &str)]| config.production_or_protected(&tags(pairs)).map(|(r, _)| r);
        assert_eq!(reason(&[("Environment", " PROD ")]), Some(DenialReason::Production));
        assert_eq!(reason(&[("finops:protect", "yes"), ("Environment", "prod")]), Some(DenialReason::Protected));
        assert_eq!(reason(&[("Environment", "dev"), ("finops:protect", "false")]), None);
        assert_eq!(reason(&[]), None);
    }

    /// What an undo checks before it starts an instance again: what a person changed since wins over the link.
    #[test]
    fn an_undo_starts_nothing_made_production_snoozed_or_managed_since() {
        let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 28, 12, 0, 0).unwrap();
        let instance = |tags: &[(&str, &str)]| {
            crate::InstanceRecord::ordinary("i-1", "eu-west-1", "t3.large", now - chrono::Duration::days(90), 8)
                .with_tags(tags.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        let config = PolicyConfig::default();
        let reason = |tags: &[(&str, &str)]| config.start_block(&instance(tags), now).map(|(r, _)| r);
        assert_eq!(reason(&[("Environment", "dev")]), None);
        assert_eq!(reason(&[("Environment", "production")]), Some(DenialReason::Production));
        assert_eq!(reason(&[("finops:snooze-until", "2026-12-05")]), Some(DenialReason::Snoozed));
        assert_eq!(reason(&[("finops:snooze-until", "2026-01-01T00:00:00Z")]), None, "a snooze that ended");
        assert_eq!(reason(&[("aws:autoscaling:groupName", "web")]), Some(DenialReason::Managed));
    }

    /// Denial reasons are written as the words the report's counts and the ledger use.
    #[test]
    fn denial_reasons_are_written_as_their_words() {
        for (reason, word) in [
            (DenialReason::Production, "production"),
            (DenialReason::Protected, "protected"),
            (DenialReason::UnknownInstance, "unknown-instance"),
            (DenialReason::TerminateUnsupported, "terminate-unsupported"),
        ] {
            assert_eq!((reason.to_string().as_str(), reason.as_str()), (word, word));
        }
    }

    /// What the approval page draws, worked out by hand: CPU to 0.01 %, network in MB (10^6 bytes) to 0.01, and the
    /// rule's limits beside them.
    #[test]
    fn the_daily_evidence_is_the_rules_statistic_rounded_and_network_in_megabytes() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
        let days = [
            crate::daily::DailyUtilisation {
                day,
                cpu_avg_percent: Some(1.234),
                cpu_max_percent: Some(12.345_6),
                network_bytes: Some(1_234_567.0),
                disk_ops: None,
                mem_used_percent: None,
            },
            crate::daily::DailyUtilisation {
                day: day.succ_opt().unwrap(),
                ..crate::daily::DailyUtilisation::empty(day)
            },
        ];
        let mut rule = crate::criteria::DailyRule {
            cpu_statistic: crate::criteria::CpuStatistic::Maximum,
            cpu_percent: crate::criteria::Threshold::below(5.0),
            network_bytes: crate::criteria::Threshold::below(5_250_000.0),
            disk_ops: None,
            mem_used_percent: None,
            qualifying: crate::criteria::Qualifying::EveryDay,
        };
        let peak = DailyEvidence::of(&days, &rule).expect("two days");
        assert_eq!((peak.first_day, peak.cpu_label.as_str()), (day, "peak CPU"));
        assert_eq!(peak.cpu_percent, [Some(12.35), None]);
        assert_eq!(peak.network_mb, [Some(1.23), None]);
        assert_eq!((peak.cpu_limit_percent, peak.network_limit_mb), (5.0, 5.25));
        rule.cpu_statistic = crate::criteria::CpuStatistic::Average;
        let average = DailyEvidence::of(&days, &rule).unwrap();
        assert_eq!((average.cpu_label.as_str(), average.cpu_percent), ("average CPU", vec![Some(1.23), None]));
        assert_eq!(DailyEvidence::of(&[], &rule), None, "no days, nothing to draw");
    }

    /// Settings that would weaken the guard are refused, not read as something else.
    #[test]
    fn unusable_guard_settings_are_refused() {
        let config = |k: &str, v: &str| PolicyConfig::from_vars([(k.to_owned(), v.to_owned())]);
        for v in ["pr\u{200B}od", "\"\"", "prod, ' '"] {
            assert!(config("FINOPS_PRODUCTION_VALUES", v).is_err(), "{v:?}");
        }
        for v in ["-5", "inf", "NaN", "lots"] {
            assert!(config("FINOPS_MAX_MONTHLY_USD", v).is_err(), "{v:?}");
            assert!(config("FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT", v).is_err(), "{v:?}");
        }
        assert_eq!(config("FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT", "40").unwrap().max_monthly_usd_per_account, Some(40.0));
        for (v, usd) in [("0", 0.0), (" 12.5 ", 12.5)] {
            assert_eq!(config("FINOPS_MAX_MONTHLY_USD", v).unwrap().max_monthly_usd, usd);
        }
    }

    #[test]
    fn the_owner_tag_key_is_configurable_and_read_in_any_case() {
        let tags: BTreeMap<String, String> = [
            ("owner".to_owned(), "ana@example.com".to_owned()),
            ("Team-Owner".to_owned(), "data@example.com".to_owned()),
        ]
        .into_iter()
        .collect();
        assert_eq!(PolicyConfig::default().owner_of(tags.iter()).as_deref(), Some("ana@example.com"));
        let team = PolicyConfig::from_vars([("FINOPS_OWNER_TAG_KEY".to_owned(), "team-owner".to_owned())]).unwrap();
        assert_eq!(team.owner_of(tags.iter()).as_deref(), Some("data@example.com"));
    }
    use crate::criteria::{CriteriaPreset, IdleCriteria};
    use crate::daily::{DailyUtilisation, LookbackWindow};
    use crate::inventory::InstanceStorage;
    use crate::pricing::{embedded_hourly, CostEstimate};

    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn instance(id: &str, tags: &[(&str, &str)]) -> InstanceRecord {
        let mut i = InstanceRecord::ordinary(
            id,
            "us-east-1",
            "m5.large",
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            20,
        )
        .with_tags(tags.iter().copied());
        i.volumes[0].volume_id = format!("vol-{id}");
        i
    }

    fn summary(i: &InstanceRecord, busy: bool) -> UtilisationSummary {
        let w = LookbackWindow::ending_before(now(), 14);
        let days: Vec<DailyUtilisation> = w
            .days_iter()
            .map(|day| DailyUtilisation {
                day,
                cpu_avg_percent: Some(if busy { 50.0 } else { 0.5 }),
                cpu_max_percent: Some(if busy { 90.0 } else { 1.0 }),
                network_bytes: Some(1000.0),
                disk_ops: None,
                mem_used_percent: None,
            })
            .collect();
        let assessment = IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14).assess(&w, i.launch_time, &days);
        UtilisationSummary {
            instance_id: i.instance_id.clone(),
            region: i.region.clone(),
            stats: Default::default(),
            cost: CostEstimate::new(i, assessment.verdict, embedded_hourly(&i.instance_type, &i.region, false), &[]),
            assessment,
            days,
        }
    }

    fn rec(id: &str, action: RecommendedAction) -> Recommendation {
        Recommendation {
            instance_id: id.into(),
            action,
            confidence: 0.9,
            justification: "idle 14 days".into(),
            backend: "rules".into(),
            evidence: vec![],
            trace_id: None,
        }
    }

    fn run(config: &PolicyConfig, fleet: &[InstanceRecord], busy: &[&str], recs: &[Recommendation]) -> PolicyOutcome {
        let sums: Vec<UtilisationSummary> =
            fleet.iter().map(|i| summary(i, busy.contains(&i.instance_id.as_str()))).collect();
        let by_id = sums.iter().map(|s| (s.instance_id.as_str(), s)).collect();
        evaluate(config, fleet, &by_id, recs, now())
    }

    fn reason_for(o: &PolicyOutcome, id: &str) -> Option<DenialReason> {
        o.denials.iter().find(|d| d.resource_id == id).map(|d| d.reason)
    }

    #[test]
    fn each_kind_of_instance_gets_its_reason() {
        let fleet = vec![
            instance("i-dev", &[("Environment", "dev"), ("Owner", "ana")]),
            instance("i-prod-db-001", &[("Environment", "  Production ")]),
            instance("i-env", &[("ENV", "PRD")]),
            instance("i-stage", &[("stage", "live")]),
            instance("i-keep", &[("finops:protect", "true")]),
            instance("i-asg", &[("aws:autoscaling:groupName", "web")]),
            instance("i-snoozed", &[("finops:snooze-until", "2026-12-01T00:00:00Z")]),
            instance("i-snooze-over", &[("finops:snooze-until", "2026-11-01")]),
            instance("i-busy", &[]),
        ];
        let mut stopped = instance("i-stopped", &[]);
        stopped.state = "stopped".into();
        let mut store = instance("i-store", &[]);
        store.root_device_type = RootDeviceType::InstanceStore;
        let mut nvme = instance("i-nvme", &[]);
        nvme.instance_type = "m5d.large".into();
        nvme.instance_storage = InstanceStorage::Present { total_gib: 75 };
        let mut unknown_storage = instance("i-unknown-storage", &[]);
        unknown_storage.instance_storage = InstanceStorage::Unknown;
        let mut no_volumes = instance("i-no-volumes", &[]);
        no_volumes.volumes.clear();
        let fleet: Vec<InstanceRecord> =
            fleet.into_iter().chain([stopped, store, nvme, unknown_storage, no_volumes]).collect();
        let recs: Vec<Recommendation> = fleet
            .iter()
            .map(|i| rec(&i.instance_id, RecommendedAction::SnapshotAndStop))
            .chain([
                rec("i-hallucinated", RecommendedAction::Stop),
                rec("i-dev", RecommendedAction::Stop),
                rec("i-dev", RecommendedAction::Terminate),
            ])
            .collect();
        let o = run(&PolicyConfig::default(), &fleet, &["i-busy"], &recs);
        let proposed: Vec<&str> = o.proposals.iter().map(|p| p.resource_id.as_str()).collect();
        assert_eq!(proposed, ["i-dev", "i-snooze-over"]);
        assert_eq!(o.proposals[0].owner.as_deref(), Some("ana"));
        assert_eq!(o.proposals[0].environment.as_deref(), Some("dev"));
        assert_eq!(o.proposals[0].action, ProposedAction::SnapshotAndStop);
        assert_eq!(reason_for(&o, "i-prod-db-001"), Some(DenialReason::Production));
        assert!(o.denials.iter().any(|d| d.resource_id == "i-prod-db-001" && d.detail.contains("Environment")));
        assert_eq!(reason_for(&o, "i-env"), Some(DenialReason::Production));
        assert_eq!(reason_for(&o, "i-stage"), Some(DenialReason::Production));
        assert_eq!(reason_for(&o, "i-keep"), Some(DenialReason::Protected));
        assert_eq!(reason_for(&o, "i-asg"), Some(DenialReason::Managed));
        assert_eq!(reason_for(&o, "i-snoozed"), Some(DenialReason::Snoozed));
        assert_eq!(reason_for(&o, "i-busy"), Some(DenialReason::NotIdle));
        assert_eq!(reason_for(&o, "i-stopped"), Some(DenialReason::NotRunning));
        assert_eq!(reason_for(&o, "i-store"), Some(DenialReason::InstanceStoreRoot));
        assert_eq!(reason_for(&o, "i-nvme"), Some(DenialReason::InstanceStorage));
        assert!(o.denials.iter().any(|d| d.resource_id == "i-nvme" && d.detail.contains("75 GiB")));
        assert_eq!(reason_for(&o, "i-unknown-storage"), Some(DenialReason::InstanceStorage));
        assert_eq!(reason_for(&o, "i-no-volumes"), Some(DenialReason::NoVolumes));
        assert_eq!(reason_for(&o, "i-hallucinated"), Some(DenialReason::UnknownInstance));
        assert_eq!(o.denials.iter().filter(|d| d.reason == DenialReason::Duplicate).count(), 2);
        assert_eq!(o.proposals.len() + o.denials.len(), recs.len());
    }

    #[test]
    fn keep_review_rightsize_are_reported_not_proposed() {
        let fleet = vec![instance("i-1", &[])];
        for action in [RecommendedAction::Keep, RecommendedAction::Review, RecommendedAction::Rightsize] {
            let o = run(&PolicyConfig::default(), &fleet, &[], &[rec("i-1", action)]);
            assert!(o.proposals.is_empty());
            assert_eq!(o.denials[0].reason, DenialReason::NoActionNeeded);
        }
    }

    #[test]
    fn terminate_is_never_proposed_and_the_old_switch_is_refused() {
        let fleet = vec![instance("i-1", &[])];
        let o = run(&PolicyConfig::default(), &fleet, &[], &[rec("i-1", RecommendedAction::Terminate)]);
        assert!(o.proposals.is_empty());
        assert_eq!(o.denials[0].reason, DenialReason::TerminateUnsupported);
        let vars = [("FINOPS_TERMINATE_ENABLED".to_string(), "true".to_string())];
        let err = PolicyConfig::from_vars(vars).unwrap_err();
        assert!(err.to_string().contains("never terminates"), "{err}");
    }

    #[test]
    fn a_proposal_carries_what_the_actions_step_measures_again_from() {
        let fleet = vec![instance("i-1", &[])];
        let o = run(&PolicyConfig::default(), &fleet, &[], &[rec("i-1", RecommendedAction::Stop)]);
        let p = &o.proposals[0];
        assert_eq!(p.launch_time, Some(fleet[0].launch_time));
        // 14 whole days ending before 2026-11-28: measured until its midnight.
        assert_eq!(p.measured_until, Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap());
    }

    #[test]
    fn caps_keep_the_largest_savings() {
        let mut fleet = vec![instance("i-small", &[]), instance("i-big", &[]), instance("i-mid", &[])];
        fleet[1].instance_type = "m5.4xlarge".into();
        fleet[2].instance_type = "m5.xlarge".into();
        let recs: Vec<Recommendation> = fleet.iter().map(|i| rec(&i.instance_id, RecommendedAction::Stop)).collect();
        let count = run(&PolicyConfig { max_proposals: 2, ..PolicyConfig::default() }, &fleet, &[], &recs);
        let ids: Vec<&str> = count.proposals.iter().map(|p| p.resource_id.as_str()).collect();
        assert_eq!(ids, ["i-big", "i-mid"]);
        assert_eq!(reason_for(&count, "i-small"), Some(DenialReason::CountCap));
        // m5.4xlarge = $560.64/month; a $500 cap skips it and still takes the smaller ones.
        let dollars = run(&PolicyConfig { max_monthly_usd: 500.0, ..PolicyConfig::default() }, &fleet, &[], &recs);
        assert_eq!(reason_for(&dollars, "i-big"), Some(DenialReason::SavingsCap));
        assert_eq!(dollars.proposals.len(), 2);
    }

    #[test]
    fn per_account_caps_spread_the_run_over_the_accounts_largest_savings_first() {
        let in_account = |id: &str, account: &str, instance_type: &str| {
            let mut i = instance(id, &[]);
            i.instance_type = instance_type.into();
            i.account = Some(crate::organization::AccountRef::new(account, format!("team-{account}")));
            i
        };
        let fleet = vec![
            in_account("i-a1", "111111111111", "m5.4xlarge"),
            in_account("i-a2", "111111111111", "m5.2xlarge"),
            in_account("i-a3", "111111111111", "m5.xlarge"),
            in_account("i-b1", "222222222222", "m5.large"),
            instance("i-hub", &[]),
        ];
        let recs: Vec<Recommendation> = fleet.iter().map(|i| rec(&i.instance_id, RecommendedAction::Stop)).collect();
        let config = PolicyConfig { max_proposals: 4, max_proposals_per_account: Some(2), ..PolicyConfig::default() };
        let o = run(&config, &fleet, &[], &recs);
        let mut ids: Vec<&str> = o.proposals.iter().map(|p| p.resource_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["i-a1", "i-a2", "i-b1", "i-hub"], "account 1's smallest is left for the others");
        let denial = o.denials.iter().find(|d| d.resource_id == "i-a3").unwrap();
        assert_eq!(denial.reason, DenialReason::CountCap);
        assert!(
            denial.detail.contains("2 proposals per account in team-111111111111 (111111111111)"),
            "{}",
            denial.detail
        );
        // Dollars per account: m5.4xlarge alone is over $500/month, so account 1 keeps the two it can afford.
        let dollars = PolicyConfig { max_monthly_usd_per_account: Some(500.0), ..PolicyConfig::default() };
        let o = run(&dollars, &fleet, &[], &recs);
        assert_eq!(reason_for(&o, "i-a1"), Some(DenialReason::SavingsCap));
        assert!(
            o.proposals.iter().any(|p| p.resource_id == "i-a2") && o.proposals.iter().any(|p| p.resource_id == "i-b1")
        );
        let vars = [
            ("FINOPS_MAX_PROPOSALS_PER_ACCOUNT".to_string(), "3".to_string()),
            ("FINOPS_MAX_MONTHLY_USD_PER_ACCOUNT".to_string(), "250.5".to_string()),
        ];
        let read = PolicyConfig::from_vars(vars).unwrap();
        assert_eq!((read.max_proposals_per_account, read.max_monthly_usd_per_account), (Some(3), Some(250.5)));
        assert!(PolicyConfig::from_vars([("FINOPS_MAX_PROPOSALS_PER_ACCOUNT".to_string(), "-1".to_string())]).is_err());
    }

    #[test]
    fn protect_tag_fails_closed_and_only_an_exact_no_unprotects() {
        let c = PolicyConfig::default();
        for v in ["true", "yes", "", "please", "TRUE ", "on", " No ", "false ", "fa\u{200B}lse", "ＦＡＬＳＥ"] {
            assert!(c.protect_tag(&instance("i", &[("finops:protect", v)])).is_some(), "{v:?}");
        }
        for v in ["false", "No", "0", "OFF"] {
            assert!(c.protect_tag(&instance("i", &[("finops:protect", v)])).is_none(), "{v:?}");
        }
        for key in ["FinOps:Protect", " finops:protect", "finops:\u{200B}protect", "ＦＩＮＯＰＳ:ＰＲＯＴＥＣＴ"]
        {
            assert!(c.protect_tag(&instance("i", &[(key, "true")])).is_some(), "{key:?}");
        }
        // Two keys that differ only in case: the one that protects wins, whichever order they come in.
        assert!(c.protect_tag(&instance("i", &[("Finops:protect", "false"), ("finops:protect", "true")])).is_some());
        assert!(c.protect_tag(&instance("i", &[("Finops:protect", "true"), ("finops:protect", "false")])).is_some());
    }

    #[test]
    fn any_environment_value_containing_a_production_word_is_production() {
        let c = PolicyConfig::default();
        for v in [
            "prod",
            "PROD",
            " Production ",
            "\"prod\"",
            "prod-eu",
            "eu-prod",
            "us-east-1-prod",
            "prod1",
            "live_2",
            "prd (db)",
            "prodigy",
            "pre-prod-eu",
            "prod-and-non-prod",
            "ＰＲＯＤ",
            "pr\u{200B}od",
            "d\u{200B}ev",
        ] {
            assert!(c.production_tag(&instance("i", &[("Environment", v)])).is_some(), "{v:?}");
        }
        for v in
            ["dev", "staging", "non-prod", "Non-Prod", "nonprod", "pre-prod", "PreProd", "Pre Production", "qa", ""]
        {
            assert!(c.production_tag(&instance("i", &[("Environment", v)])).is_none(), "{v:?}");
        }
        // Every environment key counts, spelled any way; a Name that says prod is just a name.
        assert!(c.production_tag(&instance("i", &[("Environment", "dev"), ("environment", "prod")])).is_some());
        assert!(c.production_tag(&instance("i", &[(" ENV ", "prod")])).is_some());
        assert!(c.production_tag(&instance("i", &[("Name", "prod")])).is_none());
    }

    #[test]
    fn allow_list_mode_acts_only_on_exactly_listed_environments() {
        let c = PolicyConfig {
            act_only_on_environments: Some(vec!["dev".into(), "sandbox".into()]),
            ..PolicyConfig::default()
        };
        assert!(c.not_allow_listed(&instance("i", &[("Environment", "dev")])).is_none());
        assert!(c.not_allow_listed(&instance("i", &[("env", "SANDBOX")])).is_none());
        for tags in [&[][..], &[("Environment", "staging")], &[("Environment", " dev")], &[("Name", "dev")]] {
            assert!(c.not_allow_listed(&instance("i", tags)).is_some(), "{tags:?}");
        }
        let o = run(&c, &[instance("i-untagged", &[])], &[], &[rec("i-untagged", RecommendedAction::Stop)]);
        assert_eq!(o.denials[0].reason, DenialReason::NotAllowListed);
        // Off by default.
        assert!(PolicyConfig::default().not_allow_listed(&instance("i", &[])).is_none());
        let vars = [("FINOPS_ACT_ONLY_ON_ENVIRONMENTS".to_string(), "dev, qa".to_string())];
        assert_eq!(
            PolicyConfig::from_vars(vars).unwrap().act_only_on_environments,
            Some(vec!["dev".into(), "qa".into()])
        );
    }
}
