//! Idle resources beyond running instances, split the way Cloud Custodian splits them: each kind has its inventory
//! record, its idle rule with reasons, its saving estimate, its policy rules and its action. The rules here are pure
//! (records, measurements and prices in, a finding out); the adapters that read EC2 and CloudWatch live in
//! `finops-inventory` and `finops-metrics`.
//!
//! Every kind is held to the same tags as instances ([`PolicyConfig::tags_block`]: protected, production, not on the
//! allow-list, snoozed) and has its own rules on top (an Elastic IP named by a DNS record is never released).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::daily::LookbackWindow;
use crate::organization::AccountRef;
use crate::policy::{DenialReason, PolicyConfig};
use crate::pricing::{PriceSource, Quote, HOURS_PER_MONTH};
use crate::tags;

/// What AWS bills for every public IPv4 address, attached or not, since 2024-02-01 (VPC pricing page).
pub const PUBLIC_IPV4_USD_HOURLY: f64 = 0.005;
/// When [`PUBLIC_IPV4_USD_HOURLY`] was last checked.
pub const PUBLIC_IPV4_PRICE_AS_OF: &str = "2024-02";
/// EBS snapshot storage (standard tier), us-east-1, USD per GB-month: what the snapshot kept before a delete costs.
pub const SNAPSHOT_USD_GB_MONTH: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    EbsVolume,
    ElasticIp,
    /// An instance stopped for longer than the deployment's threshold: its EBS volumes still bill.
    StoppedInstance,
    NatGateway,
    LoadBalancer,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EbsVolume => "ebs-volume",
            Self::ElasticIp => "elastic-ip",
            Self::StoppedInstance => "stopped-instance",
            Self::NatGateway => "nat-gateway",
            Self::LoadBalancer => "load-balancer",
        }
    }

    /// How a person calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::EbsVolume => "EBS volume",
            Self::ElasticIp => "Elastic IP",
            Self::StoppedInstance => "stopped instance",
            Self::NatGateway => "NAT gateway",
            Self::LoadBalancer => "load balancer",
        }
    }

    /// The label for `count` of them ("1 EBS volume", "3 Elastic IPs").
    pub fn label_plural(self, count: usize) -> String {
        if count == 1 {
            self.label().to_owned()
        } else {
            format!("{}s", self.label())
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An EBS volume in state `available`: attached to nothing, billed for its size all the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnattachedVolume {
    pub volume_id: String,
    pub region: String,
    pub volume_type: String,
    pub size_gib: u32,
    pub create_time: DateTime<Utc>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
}

/// An Elastic IP address, associated or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElasticAddress {
    pub allocation_id: String,
    pub public_ip: String,
    pub region: String,
    /// What it is associated with (an instance or a network interface), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
}

/// An instance in state `stopped`: no compute charge, but its EBS volumes bill as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoppedInstance {
    pub instance_id: String,
    pub region: String,
    pub instance_type: String,
    /// When it was stopped, from EC2's StateTransitionReason ("User initiated (2026-10-01 12:00:00 GMT)"); None when
    /// EC2 does not say (then it is not judged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_since: Option<DateTime<Utc>>,
    /// Its last launch (EC2's LaunchTime): another one at the acting step means it was started since the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<DateTime<Utc>>,
    pub volumes: Vec<crate::inventory::VolumeRecord>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
}

/// When an instance was stopped, from its StateTransitionReason: the date in brackets, as EC2 writes it
/// ("User initiated (2026-10-01 12:00:00 GMT)"; the emulator writes "UTC").
pub fn stopped_since(state_transition_reason: &str) -> Option<DateTime<Utc>> {
    let inner = state_transition_reason.rsplit_once('(')?.1.split_once(')')?.0;
    let stamp = inner.get(..19)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").ok().map(|t| t.and_utc())
}

/// A NAT gateway (state `available`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NatGateway {
    pub nat_gateway_id: String,
    pub region: String,
    #[serde(default)]
    pub vpc_id: String,
    pub create_time: DateTime<Utc>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
}

/// An Application, Network or Gateway Load Balancer (Elastic Load Balancing v2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub region: String,
    /// `application`, `network` or `gateway`.
    pub lb_type: String,
    pub create_time: DateTime<Utc>,
    /// Healthy targets across its target groups now (DescribeTargetHealth).
    pub healthy_targets: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
}

impl LoadBalancer {
    /// The CloudWatch `LoadBalancer` dimension: the ARN's part after `loadbalancer/` ("app/web/50dc6c495c0c9188").
    pub fn metric_dimension(&self) -> Option<&str> {
        self.arn.split_once(":loadbalancer/").map(|(_, d)| d)
    }
}

/// What CloudWatch shows of a volume's I/O over the lookback (VolumeReadOps/VolumeWriteOps). EBS publishes them only
/// while a volume is attached, so a day with a datapoint is a day it was attached: the evidence that needs no
/// CloudTrail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeActivity {
    pub days_with_io: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_io_day: Option<NaiveDate>,
}

/// What would be proposed for an idle resource of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceAction {
    /// Snapshot the volume (kept, named in the report, so it can be recreated), then delete it.
    SnapshotThenDelete,
    /// Release the address back to AWS.
    Release,
    /// Snapshot a long-stopped instance's volumes (kept), then detach and delete them: only where the deployment
    /// turned it on ([`PolicyConfig::delete_stopped_instance_volumes`]).
    SnapshotThenDeleteVolumes,
}

impl ResourceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SnapshotThenDelete => "snapshot-then-delete",
            Self::Release => "release",
            Self::SnapshotThenDeleteVolumes => "snapshot-then-delete-volumes",
        }
    }
}

/// Why a finding is not acted on, as the policy says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    pub reason: DenialReason,
    pub detail: String,
}

/// One resource as a run judges it: idle or not and why, what it costs and what acting would save, and what
/// would be proposed, or why the policy blocks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceFinding {
    pub kind: ResourceKind,
    pub resource_id: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
    pub idle: bool,
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost_usd: Option<f64>,
    /// What the action would save per month, when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving_usd: Option<f64>,
    pub saving_basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<PriceSource>,
    /// What would be proposed (idle and not blocked), or was considered (idle and blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ResourceAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
}

impl ResourceFinding {
    /// Idle, with an action, and nothing in the policy against it.
    pub fn would_propose(&self) -> bool {
        self.idle && self.action.is_some() && self.blocked.is_none()
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The unattached volume's verdict. Idle: `available` and older than the lookback, with no I/O datapoint in it (it
/// was not attached at any time of the lookback). `gb_month`: the volume type's storage price in its region. What
/// the policy says of it is [`ResourceFinding::held_to`]'s business (the policy step's, in the workflow).
pub fn assess_volume(
    volume: &UnattachedVolume,
    activity: &VolumeActivity,
    window: &LookbackWindow,
    gb_month: Option<Quote>,
    now: DateTime<Utc>,
) -> ResourceFinding {
    let age_days = (now - volume.create_time).num_days();
    let (idle, reason) = if volume.create_time > window.start() {
        (false, format!("created {age_days} day(s) ago, within the {}-day lookback", window.days))
    } else if activity.days_with_io > 0 {
        let last = activity.last_io_day.map_or_else(String::new, |d| format!(", last on {d}"));
        (
            false,
            format!("attached within the lookback: CloudWatch has its I/O on {} day(s){last}", activity.days_with_io),
        )
    } else {
        (
            true,
            format!(
                "unattached for the whole {}-day lookback: state available, no I/O datapoint in CloudWatch, created \
                 {age_days} days ago",
                window.days
            ),
        )
    };
    let monthly_cost = gb_month.as_ref().map(|q| round2(q.usd * f64::from(volume.size_gib)));
    let snapshot =
        crate::pricing::embedded_snapshot_gb_month(&volume.region).map(|usd| usd * f64::from(volume.size_gib));
    let saving = match (idle, monthly_cost) {
        (true, Some(cost)) => Some(round2((cost - snapshot.unwrap_or(0.0)).max(0.0))),
        _ => None,
    };
    ResourceFinding {
        kind: ResourceKind::EbsVolume,
        resource_id: volume.volume_id.clone(),
        region: volume.region.clone(),
        name: volume.tags.get("Name").cloned(),
        account: volume.account.clone(),
        idle,
        reasons: vec![reason, format!("{} GiB {}", volume.size_gib, volume.volume_type)],
        monthly_cost_usd: monthly_cost,
        monthly_saving_usd: saving,
        saving_basis: format!(
            "snapshot, then delete: the volume's storage ({} GiB x its GB-month price) stops billing, less the \
             snapshot kept to recreate it (at most {} GiB x ${SNAPSHOT_USD_GB_MONTH}/GB-month; snapshots are \
             incremental, so usually less)",
            volume.size_gib, volume.size_gib
        ),
        price_source: gb_month.map(|q| q.source),
        action: idle.then_some(ResourceAction::SnapshotThenDelete),
        blocked: None,
    }
}

/// The Elastic IP's verdict. Idle: associated with nothing (billed by the hour for nothing).
pub fn assess_address(address: &ElasticAddress) -> ResourceFinding {
    let monthly = round2(PUBLIC_IPV4_USD_HOURLY * HOURS_PER_MONTH);
    let (idle, reason) = match &address.association_id {
        Some(association) => (false, format!("associated ({association})")),
        None => (true, "not associated with any instance or network interface".to_owned()),
    };
    ResourceFinding {
        kind: ResourceKind::ElasticIp,
        resource_id: address.allocation_id.clone(),
        region: address.region.clone(),
        name: address.tags.get("Name").cloned().or_else(|| Some(address.public_ip.clone())),
        account: address.account.clone(),
        idle,
        reasons: vec![reason, format!("public IPv4 {}", address.public_ip)],
        monthly_cost_usd: Some(monthly),
        monthly_saving_usd: idle.then_some(monthly),
        saving_basis: format!(
            "release: AWS bills every public IPv4 address ${PUBLIC_IPV4_USD_HOURLY}/hour x {HOURS_PER_MONTH} hours"
        ),
        price_source: Some(PriceSource::EmbeddedTable { as_of: PUBLIC_IPV4_PRICE_AS_OF.into(), approximate: false }),
        action: idle.then_some(ResourceAction::Release),
        blocked: None,
    }
}

/// The stopped instance's verdict. Idle: stopped for at least `min_days_stopped`. Its cost is its volumes' storage;
/// the saving (their storage less the snapshots kept) is reported only: deleting a stopped instance's volumes is not
/// something this deployment does (`storage_monthly`: each volume's monthly price, None where unknown).
pub fn assess_stopped_instance(
    instance: &StoppedInstance,
    storage_monthly: &[Option<f64>],
    min_days_stopped: u32,
    now: DateTime<Utc>,
) -> ResourceFinding {
    let gib: u32 = instance.volumes.iter().map(|v| v.size_gib).sum();
    let (idle, reason) = match instance.stopped_since {
        None => (false, "stopped, since when EC2 does not say: not judged".to_owned()),
        Some(since) => {
            let days = (now - since).num_days();
            if days >= i64::from(min_days_stopped) {
                (true, format!("stopped for {days} days (since {}), at least {min_days_stopped}", since.date_naive()))
            } else {
                (false, format!("stopped {days} day(s) ago, fewer than {min_days_stopped}"))
            }
        }
    };
    let priced = storage_monthly.iter().all(Option::is_some) && !storage_monthly.is_empty();
    let monthly_cost = priced.then(|| round2(storage_monthly.iter().flatten().sum::<f64>()));
    let snapshot = crate::pricing::embedded_snapshot_gb_month(&instance.region).map(|usd| usd * f64::from(gib));
    ResourceFinding {
        kind: ResourceKind::StoppedInstance,
        resource_id: instance.instance_id.clone(),
        region: instance.region.clone(),
        name: instance.tags.get("Name").cloned(),
        account: instance.account.clone(),
        idle,
        reasons: vec![
            reason,
            format!("{} EBS volume(s), {gib} GiB, still billed; {STOPPED_REPORT_ONLY}", instance.volumes.len()),
        ],
        monthly_cost_usd: monthly_cost,
        monthly_saving_usd: match (idle, monthly_cost) {
            (true, Some(cost)) => Some(round2((cost - snapshot.unwrap_or(0.0)).max(0.0))),
            _ => None,
        },
        saving_basis: format!(
            "snapshot, then delete the volumes: their storage ({gib} GiB) stops billing, less the snapshots kept (at \
             most {gib} GiB x ${SNAPSHOT_USD_GB_MONTH}/GB-month)"
        ),
        price_source: None,
        action: None,
        blocked: None,
    }
}

/// The NAT gateway's verdict. Idle: older than the lookback and no byte sent to a destination in it
/// (BytesOutToDestination, summed; no datapoint at all counts as none). Report only: deleting a NAT gateway breaks
/// the routes that name it. `hourly`: its hourly price in its region.
pub fn assess_nat_gateway(
    nat: &NatGateway,
    bytes_out: Option<f64>,
    window: &LookbackWindow,
    hourly: Option<Quote>,
    now: DateTime<Utc>,
) -> ResourceFinding {
    let age_days = (now - nat.create_time).num_days();
    let (idle, reason) = if nat.create_time > window.start() {
        (false, format!("created {age_days} day(s) ago, within the {}-day lookback", window.days))
    } else {
        match bytes_out {
            Some(bytes) if bytes > 0.0 => {
                (false, format!("sent {:.1} MB to destinations over the {}-day lookback", bytes / 1e6, window.days))
            }
            _ => (true, format!("no byte sent to any destination over the {}-day lookback", window.days)),
        }
    };
    let monthly = hourly.as_ref().map(|q| round2(q.usd * HOURS_PER_MONTH));
    ResourceFinding {
        kind: ResourceKind::NatGateway,
        resource_id: nat.nat_gateway_id.clone(),
        region: nat.region.clone(),
        name: nat.tags.get("Name").cloned(),
        account: nat.account.clone(),
        idle,
        reasons: vec![reason, format!("in {}; report only: delete it yourself once no route needs it", nat.vpc_id)],
        monthly_cost_usd: monthly,
        monthly_saving_usd: if idle { monthly } else { None },
        saving_basis: format!(
            "delete: the gateway's hourly charge x {HOURS_PER_MONTH} hours (data processing stops with the traffic)"
        ),
        price_source: hourly.map(|q| q.source),
        action: None,
        blocked: None,
    }
}

/// The load balancer's verdict. Idle: older than the lookback, and no request (ALB RequestCount; NLB NewFlowCount)
/// over it, or no healthy target behind it. Report only: deleting one breaks every name that points at it.
/// `requests`: the lookback's sum (None: no datapoint); `hourly`: its hourly price in its region.
pub fn assess_load_balancer(
    lb: &LoadBalancer,
    requests: Option<f64>,
    window: &LookbackWindow,
    hourly: Option<Quote>,
    now: DateTime<Utc>,
) -> ResourceFinding {
    let age_days = (now - lb.create_time).num_days();
    let unit = if lb.lb_type == "application" { "request" } else { "new flow" };
    let (idle, reason) = if lb.create_time > window.start() {
        (false, format!("created {age_days} day(s) ago, within the {}-day lookback", window.days))
    } else if requests.unwrap_or(0.0) <= 0.0 {
        (true, format!("no {unit} over the {}-day lookback", window.days))
    } else if lb.healthy_targets == 0 {
        (
            true,
            format!(
                "no healthy target behind it ({:.0} {unit}s over the lookback went nowhere)",
                requests.unwrap_or(0.0)
            ),
        )
    } else {
        (
            false,
            format!(
                "{:.0} {unit}s over the {}-day lookback, {} healthy target(s)",
                requests.unwrap_or(0.0),
                window.days,
                lb.healthy_targets
            ),
        )
    };
    let monthly = hourly.as_ref().map(|q| round2(q.usd * HOURS_PER_MONTH));
    ResourceFinding {
        kind: ResourceKind::LoadBalancer,
        resource_id: lb.arn.clone(),
        region: lb.region.clone(),
        name: Some(lb.name.clone()),
        account: lb.account.clone(),
        idle,
        reasons: vec![
            reason,
            format!("{} load balancer; report only: delete it yourself once no name points at it", lb.lb_type),
        ],
        monthly_cost_usd: monthly,
        monthly_saving_usd: if idle { monthly } else { None },
        saving_basis: format!(
            "delete: the load balancer's hourly charge x {HOURS_PER_MONTH} hours (LCUs stop with the traffic)"
        ),
        price_source: hourly.map(|q| q.source),
        action: None,
        blocked: None,
    }
}

/// Why the policy never acts on a resource of `kind` with these tags: the tags every kind is held to (protected,
/// production, not on the allow-list, snoozed), then the kind's own rules (an Elastic IP a DNS record names is never
/// released: the name would break).
pub fn resource_block(
    kind: ResourceKind,
    resource_tags: &BTreeMap<String, String>,
    policy: &PolicyConfig,
    now: DateTime<Utc>,
) -> Option<Blocked> {
    let kind_rule = || match kind {
        ResourceKind::EbsVolume
        | ResourceKind::StoppedInstance
        | ResourceKind::NatGateway
        | ResourceKind::LoadBalancer => None,
        ResourceKind::ElasticIp => dns_reference(resource_tags).map(|(k, v)| {
            (
                DenialReason::DnsReferenced,
                format!("tag {k}={v:?} names a DNS record: releasing the address would break that name"),
            )
        }),
    };
    policy.tags_block(resource_tags, now).or_else(kind_rule).map(|(reason, detail)| Blocked { reason, detail })
}

impl ResourceFinding {
    /// The finding as the policy judges it, from the resource's tags (see [`resource_block`]).
    pub fn held_to(
        mut self,
        resource_tags: &BTreeMap<String, String>,
        policy: &PolicyConfig,
        now: DateTime<Utc>,
    ) -> Self {
        self.blocked = resource_block(self.kind, resource_tags, policy, now);
        self
    }
}

/// The reason line of a long-stopped instance's finding while deleting its volumes is off.
const STOPPED_REPORT_ONLY: &str = "report only: deleting them is off";

/// Findings as the policy judges them, by the tags the inventory read (`volumes`, `addresses`). A finding the
/// inventory does not list (a document tampered with, or mixed up) is blocked: nothing is known of its tags. A
/// long-stopped instance's volumes get an action only where the deployment turned their deletion on.
pub fn judge(
    policy: &PolicyConfig,
    listed: &OtherResources,
    findings: Vec<ResourceFinding>,
    now: DateTime<Utc>,
) -> Vec<ResourceFinding> {
    let mut tags_of: std::collections::HashMap<(ResourceKind, &str), &BTreeMap<String, String>> =
        std::collections::HashMap::new();
    for v in &listed.volumes {
        tags_of.insert((ResourceKind::EbsVolume, v.volume_id.as_str()), &v.tags);
    }
    for a in &listed.addresses {
        tags_of.insert((ResourceKind::ElasticIp, a.allocation_id.as_str()), &a.tags);
    }
    for i in &listed.stopped_instances {
        tags_of.insert((ResourceKind::StoppedInstance, i.instance_id.as_str()), &i.tags);
    }
    for n in &listed.nat_gateways {
        tags_of.insert((ResourceKind::NatGateway, n.nat_gateway_id.as_str()), &n.tags);
    }
    for l in &listed.load_balancers {
        tags_of.insert((ResourceKind::LoadBalancer, l.arn.as_str()), &l.tags);
    }
    findings
        .into_iter()
        .map(|f| match tags_of.get(&(f.kind, f.resource_id.as_str())).copied() {
            Some(resource_tags)
                if f.kind == ResourceKind::StoppedInstance && f.idle && policy.delete_stopped_instance_volumes =>
            {
                let reasons = f
                    .reasons
                    .iter()
                    .map(|r| r.replace(STOPPED_REPORT_ONLY, "snapshot, then delete them (on in this deployment)"))
                    .collect();
                ResourceFinding { action: Some(ResourceAction::SnapshotThenDeleteVolumes), reasons, ..f }.held_to(
                    resource_tags,
                    policy,
                    now,
                )
            }
            Some(resource_tags) => f.held_to(resource_tags, policy, now),
            None => {
                let detail = format!("{} {} is not in this run's inventory", f.kind.label(), f.resource_id);
                ResourceFinding { blocked: Some(Blocked { reason: DenialReason::UnknownInstance, detail }), ..f }
            }
        })
        .collect()
}

/// The proposals for findings the policy let through ([`ResourceFinding::would_propose`], after [`judge`]), for a
/// person to approve as they approve an instance's stop: a volume's snapshot-then-delete, an address's release.
/// Built from the inventory's record (tags, size, address), never from the finding alone; a finding whose record is
/// not listed, or whose kind has no action, is not proposed. `measured_until`: where the run's measurements end (the
/// actions step measures a volume again from there).
pub fn proposals(
    policy: &PolicyConfig,
    listed: &OtherResources,
    judged: &[ResourceFinding],
    measured_until: DateTime<Utc>,
) -> Vec<crate::policy::Proposal> {
    use crate::policy::{Proposal, ProposedAction};
    let proposal = |f: &ResourceFinding,
                    action: ProposedAction,
                    resource_type: String,
                    resource_tags: &BTreeMap<String, String>,
                    volume_ids: Vec<String>| Proposal {
        resource_id: f.resource_id.clone(),
        region: f.region.clone(),
        resource_type,
        name: resource_tags.get("Name").cloned(),
        environment: resource_tags.iter().find(|(k, _)| policy.is_environment_key(k)).map(|(_, v)| v.clone()),
        owner: policy.owner_of(resource_tags.iter()),
        account: f.account.clone(),
        action,
        recommended: None,
        confidence: 1.0,
        justification: f.reasons.join("; "),
        backend: format!("rules ({}: {})", f.kind.label(), f.saving_basis),
        monthly_saving_usd: f.monthly_saving_usd,
        price_source: f.price_source.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string),
        evidence: f.reasons.clone(),
        daily: None,
        volume_ids,
        launch_time: None,
        measured_until,
    };
    judged
        .iter()
        .filter(|f| f.would_propose())
        .filter_map(|f| match (f.kind, f.action) {
            (ResourceKind::EbsVolume, Some(ResourceAction::SnapshotThenDelete)) => {
                listed.volumes.iter().find(|v| v.volume_id == f.resource_id && v.region == f.region).map(|v| {
                    let what = format!("{} volume, {} GiB", v.volume_type, v.size_gib);
                    proposal(f, ProposedAction::SnapshotAndDelete, what, &v.tags, vec![v.volume_id.clone()])
                })
            }
            (ResourceKind::ElasticIp, Some(ResourceAction::Release)) => {
                listed.addresses.iter().find(|a| a.allocation_id == f.resource_id && a.region == f.region).map(|a| {
                    proposal(f, ProposedAction::Release, format!("public IPv4 {}", a.public_ip), &a.tags, vec![])
                })
            }
            // Only where the policy let the deletion on (judge), and only of the volumes the inventory listed.
            (ResourceKind::StoppedInstance, Some(ResourceAction::SnapshotThenDeleteVolumes))
                if policy.delete_stopped_instance_volumes =>
            {
                listed.stopped_instances.iter().find(|i| i.instance_id == f.resource_id && i.region == f.region).map(
                    |i| {
                        let gib: u32 = i.volumes.iter().map(|v| v.size_gib).sum();
                        let what = format!("{} (stopped), {} volume(s), {gib} GiB", i.instance_type, i.volumes.len());
                        let volumes = i.volumes.iter().map(|v| v.volume_id.clone()).collect();
                        Proposal {
                            launch_time: i.launch_time,
                            ..proposal(f, ProposedAction::SnapshotAndDeleteVolumes, what, &i.tags, volumes)
                        }
                    },
                )
            }
            _ => None,
        })
        .collect()
}

/// What an inventory lists beyond running instances, every kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtherResources {
    #[serde(default)]
    pub volumes: Vec<UnattachedVolume>,
    #[serde(default)]
    pub addresses: Vec<ElasticAddress>,
    #[serde(default)]
    pub stopped_instances: Vec<StoppedInstance>,
    #[serde(default)]
    pub nat_gateways: Vec<NatGateway>,
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
}

impl OtherResources {
    pub fn len(&self) -> usize {
        self.volumes.len()
            + self.addresses.len()
            + self.stopped_instances.len()
            + self.nat_gateways.len()
            + self.load_balancers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, other: OtherResources) {
        self.volumes.extend(other.volumes);
        self.addresses.extend(other.addresses);
        self.stopped_instances.extend(other.stopped_instances);
        self.nat_gateways.extend(other.nat_gateways);
        self.load_balancers.extend(other.load_balancers);
    }

    /// Every record says which account it is in (an organization item's).
    pub fn in_account(mut self, account: &AccountRef) -> Self {
        self.volumes.iter_mut().for_each(|v| v.account = Some(account.clone()));
        self.addresses.iter_mut().for_each(|a| a.account = Some(account.clone()));
        self.stopped_instances.iter_mut().for_each(|i| i.account = Some(account.clone()));
        self.nat_gateways.iter_mut().for_each(|n| n.account = Some(account.clone()));
        self.load_balancers.iter_mut().for_each(|l| l.account = Some(account.clone()));
        self
    }
}

/// One kind's figures in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindFigures {
    pub found: usize,
    pub idle: usize,
    /// Idle, with an action, and nothing in the policy against it: what would be proposed.
    pub actionable: usize,
    pub actionable_monthly_saving_usd: f64,
    /// Idle but blocked by the policy (production, protected, a DNS name...): its saving is not counted.
    pub blocked: usize,
    pub blocked_monthly_saving_usd: f64,
    /// Idle, of a kind this project reports but does not act on (NAT gateways, stopped instances' volumes).
    #[serde(default)]
    pub report_only: usize,
    #[serde(default)]
    pub report_only_monthly_saving_usd: f64,
}

impl KindFigures {
    fn add(&mut self, f: &ResourceFinding) {
        self.found += 1;
        if !f.idle {
            return;
        }
        self.idle += 1;
        let saving = f.monthly_saving_usd.unwrap_or(0.0);
        if f.would_propose() {
            self.actionable += 1;
            self.actionable_monthly_saving_usd = round2(self.actionable_monthly_saving_usd + saving);
        } else if f.blocked.is_some() {
            self.blocked += 1;
            self.blocked_monthly_saving_usd = round2(self.blocked_monthly_saving_usd + saving);
        } else if f.action.is_none() {
            self.report_only += 1;
            self.report_only_monthly_saving_usd = round2(self.report_only_monthly_saving_usd + saving);
        }
    }
}

/// What a run found beyond running instances, all kinds together and per kind, with a sentence for the report and
/// the ledger. What can be acted on and what the policy blocks are kept apart: a production volume's saving is not
/// money the run can save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSummary {
    #[serde(flatten)]
    pub total: KindFigures,
    pub by_kind: BTreeMap<ResourceKind, KindFigures>,
    pub summary: String,
}

impl Default for ResourcesSummary {
    fn default() -> Self {
        Self::of(&[])
    }
}

impl ResourcesSummary {
    pub fn of(findings: &[ResourceFinding]) -> Self {
        let mut total = KindFigures::default();
        let mut by_kind: BTreeMap<ResourceKind, KindFigures> = BTreeMap::new();
        for f in findings {
            total.add(f);
            by_kind.entry(f.kind).or_default().add(f);
        }
        let summary = if by_kind.is_empty() {
            "none found".to_owned()
        } else {
            let kinds: Vec<String> = by_kind
                .iter()
                .map(|(kind, k)| {
                    let mut line = format!("{} {}: {} idle", k.found, kind.label_plural(k.found), k.idle);
                    if k.actionable > 0 {
                        line +=
                            &format!(", {} actionable (${:.2}/month)", k.actionable, k.actionable_monthly_saving_usd);
                    }
                    if k.report_only > 0 {
                        line += &format!(
                            ", {} report only (${:.2}/month)",
                            k.report_only, k.report_only_monthly_saving_usd
                        );
                    }
                    if k.blocked > 0 {
                        line += &format!(
                            ", {} blocked by policy (${:.2}/month, not counted)",
                            k.blocked, k.blocked_monthly_saving_usd
                        );
                    }
                    line
                })
                .collect();
            format!("${:.2}/month actionable; {}", total.actionable_monthly_saving_usd, kinds.join("; "))
        };
        Self { total, by_kind, summary }
    }
}

/// Tag key words that say "a DNS record points here".
const DNS_KEY_WORDS: &[&str] = &["dns", "route53", "hostname", "fqdn", "domain", "record"];

/// A tag that names a DNS record, if any: a key that says so, or a value that is a host name (`api.example.com`).
pub fn dns_reference(resource_tags: &BTreeMap<String, String>) -> Option<(String, String)> {
    resource_tags
        .iter()
        .find(|(k, v)| {
            let key = tags::normalise(k);
            DNS_KEY_WORDS.iter().any(|w| key.contains(w)) || looks_like_host_name(v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
}

fn looks_like_host_name(value: &str) -> bool {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = v.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    fn volume(days_old: i64, tags: &[(&str, &str)]) -> UnattachedVolume {
        UnattachedVolume {
            volume_id: "vol-1".into(),
            region: "us-east-1".into(),
            volume_type: "gp3".into(),
            size_gib: 100,
            create_time: now() - chrono::Duration::days(days_old),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            account: None,
        }
    }

    fn gp3() -> Option<Quote> {
        crate::pricing::embedded_ebs_gb_month("gp3", "us-east-1")
    }

    #[test]
    fn a_volume_unattached_for_the_whole_lookback_is_idle_and_saves_its_storage_less_the_snapshot() {
        let window = LookbackWindow::ending_before(now(), 14);
        let policy = PolicyConfig::default();
        let idle =
            assess_volume(&volume(90, &[("Name", "old-data")]), &VolumeActivity::default(), &window, gp3(), now())
                .held_to(&BTreeMap::new(), &policy, now());
        assert!(idle.idle && idle.would_propose(), "{idle:?}");
        assert_eq!(idle.action, Some(ResourceAction::SnapshotThenDelete));
        assert_eq!(idle.monthly_cost_usd, Some(8.0), "100 GiB x $0.08");
        assert_eq!(idle.monthly_saving_usd, Some(3.0), "less the full-size snapshot at $0.05");
        assert!(idle.reasons[0].contains("unattached for the whole 14-day lookback"), "{:?}", idle.reasons);
        assert_eq!(idle.name.as_deref(), Some("old-data"));

        // Attached yesterday: CloudWatch has its I/O; not idle, whatever its state now.
        let yesterday = VolumeActivity { days_with_io: 1, last_io_day: Some(window.day(13)) };
        let recent = assess_volume(&volume(90, &[]), &yesterday, &window, gp3(), now());
        assert!(!recent.idle && !recent.would_propose() && recent.monthly_saving_usd.is_none());
        assert!(recent.reasons[0].contains("attached within the lookback"), "{:?}", recent.reasons);
        // Created inside the lookback: too young to judge.
        let young = assess_volume(&volume(3, &[]), &VolumeActivity::default(), &window, gp3(), now());
        assert!(!young.idle && young.reasons[0].contains("within the 14-day lookback"));
        // Unknown volume type: idle, but no saving is claimed.
        let unpriced = assess_volume(&volume(90, &[]), &VolumeActivity::default(), &window, None, now());
        assert!(unpriced.idle && unpriced.monthly_saving_usd.is_none());
    }

    #[test]
    fn a_volume_is_held_to_the_same_tags_as_an_instance() {
        let window = LookbackWindow::ending_before(now(), 14);
        let policy = PolicyConfig::default();
        for (tags, reason) in [
            (vec![("Environment", "production")], DenialReason::Production),
            (vec![("finops:protect", "true")], DenialReason::Protected),
            (vec![("finops:snooze-until", "2027-01-01")], DenialReason::Snoozed),
        ] {
            let v = volume(90, &tags);
            let f =
                assess_volume(&v, &VolumeActivity::default(), &window, gp3(), now()).held_to(&v.tags, &policy, now());
            assert!(f.idle && !f.would_propose(), "{tags:?}");
            assert_eq!(f.blocked.unwrap().reason, reason, "{tags:?}");
        }
    }

    fn address(association: Option<&str>, tags: &[(&str, &str)]) -> ElasticAddress {
        ElasticAddress {
            allocation_id: "eipalloc-1".into(),
            public_ip: "198.51.100.7".into(),
            region: "us-east-1".into(),
            association_id: association.map(str::to_owned),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            account: None,
        }
    }

    #[test]
    fn an_unassociated_address_is_released_unless_protected_or_named_by_dns() {
        let policy = PolicyConfig::default();
        let judged = |a: ElasticAddress| assess_address(&a).held_to(&a.tags, &policy, now());
        let idle = judged(address(None, &[]));
        assert!(idle.would_propose());
        assert_eq!((idle.action, idle.monthly_saving_usd), (Some(ResourceAction::Release), Some(3.65)));
        let used = judged(address(Some("eipassoc-1"), &[]));
        assert!(!used.idle && used.monthly_saving_usd.is_none() && used.monthly_cost_usd == Some(3.65));
        for (tags, reason) in [
            (vec![("finops:protect", "yes")], DenialReason::Protected),
            (vec![("DnsRecord", "legacy")], DenialReason::DnsReferenced),
            (vec![("Route53-Zone", "Z123")], DenialReason::DnsReferenced),
            (vec![("Name", "vpn.corp.example.com")], DenialReason::DnsReferenced),
            (vec![("Environment", "prod")], DenialReason::Production),
        ] {
            let f = judged(address(None, &tags));
            assert!(f.idle && !f.would_propose(), "{tags:?}");
            assert_eq!(f.blocked.unwrap().reason, reason, "{tags:?}");
        }
        // A name that is not a host name does not block.
        assert!(judged(address(None, &[("Name", "spare-ip-2")])).would_propose());
        assert!(!looks_like_host_name("198.51.100.7") && looks_like_host_name("API.Example.com."));
    }

    #[test]
    fn the_summary_keeps_what_can_be_acted_on_apart_from_what_the_policy_blocks() {
        let policy = PolicyConfig::default();
        let window = LookbackWindow::ending_before(now(), 14);
        let judged = |a: ElasticAddress| assess_address(&a).held_to(&a.tags, &policy, now());
        let prod = volume(90, &[("Environment", "production")]);
        let findings = vec![
            judged(address(None, &[])),
            judged(address(None, &[("finops:protect", "true")])),
            judged(address(Some("eipassoc-1"), &[])),
            assess_volume(&volume(90, &[]), &VolumeActivity::default(), &window, gp3(), now()).held_to(
                &BTreeMap::new(),
                &policy,
                now(),
            ),
            assess_volume(&prod, &VolumeActivity::default(), &window, gp3(), now()).held_to(&prod.tags, &policy, now()),
        ];
        let summary = ResourcesSummary::of(&findings);
        assert_eq!((summary.total.found, summary.total.idle), (5, 4));
        assert_eq!((summary.total.actionable, summary.total.actionable_monthly_saving_usd), (2, 6.65), "3.65 + 3.00");
        assert_eq!((summary.total.blocked, summary.total.blocked_monthly_saving_usd), (2, 6.65));
        let eips = &summary.by_kind[&ResourceKind::ElasticIp];
        assert_eq!((eips.found, eips.idle, eips.actionable, eips.blocked), (3, 2, 1, 1));
        assert_eq!(
            summary.summary,
            "$6.65/month actionable; 2 EBS volumes: 2 idle, 1 actionable ($3.00/month), 1 blocked by policy ($3.00/month, \
             not counted); 3 Elastic IPs: 2 idle, 1 actionable ($3.65/month), 1 blocked by policy ($3.65/month, not \
             counted)"
        );
        assert_eq!(ResourcesSummary::default().summary, "none found");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["actionableMonthlySavingUsd"], 6.65, "totals flattened: {json}");
        assert_eq!(json["byKind"]["elastic-ip"]["blocked"], 1, "{json}");
    }

    #[test]
    fn a_stopped_instance_is_reported_after_the_threshold_by_the_date_ec2_gives() {
        assert_eq!(
            stopped_since("User initiated (2026-10-01 12:00:00 GMT)"),
            Some(Utc.with_ymd_and_hms(2026, 10, 1, 12, 0, 0).unwrap())
        );
        assert_eq!(stopped_since("Server.ScheduledStop: Stopped due to scheduled retirement"), None);
        assert_eq!(stopped_since("User initiated (yesterday)"), None);
        let volume = |gib| crate::inventory::VolumeRecord {
            volume_id: "vol-1".into(),
            device_name: Some("/dev/xvda".into()),
            size_gib: gib,
            volume_type: "gp3".into(),
            iops: None,
            delete_on_termination: true,
        };
        let stopped = |days: Option<i64>| StoppedInstance {
            instance_id: "i-1".into(),
            region: "us-east-1".into(),
            instance_type: "t3.large".into(),
            stopped_since: days.map(|d| now() - chrono::Duration::days(d)),
            launch_time: None,
            volumes: vec![volume(100)],
            tags: BTreeMap::new(),
            account: None,
        };
        let old = assess_stopped_instance(&stopped(Some(45)), &[Some(8.0)], 30, now());
        assert!(old.idle && old.action.is_none() && !old.would_propose(), "report only: {old:?}");
        assert_eq!((old.monthly_cost_usd, old.monthly_saving_usd), (Some(8.0), Some(3.0)), "less the $5.00 snapshot");
        assert!(old.reasons[0].starts_with("stopped for 45 days"), "{:?}", old.reasons);
        assert!(!assess_stopped_instance(&stopped(Some(2)), &[Some(8.0)], 30, now()).idle);
        assert!(!assess_stopped_instance(&stopped(None), &[Some(8.0)], 30, now()).idle, "no date, no verdict");
        let unpriced = assess_stopped_instance(&stopped(Some(45)), &[None], 30, now());
        assert!(unpriced.idle && unpriced.monthly_saving_usd.is_none(), "an unknown price claims no saving");
    }

    #[test]
    fn nat_gateways_and_load_balancers_are_idle_without_traffic_and_reported_only() {
        let window = LookbackWindow::ending_before(now(), 14);
        let nat = NatGateway {
            nat_gateway_id: "nat-1".into(),
            region: "us-east-1".into(),
            vpc_id: "vpc-1".into(),
            create_time: now() - chrono::Duration::days(90),
            tags: BTreeMap::new(),
            account: None,
        };
        let hourly = crate::pricing::embedded_nat_gateway_hourly("us-east-1");
        let silent = assess_nat_gateway(&nat, None, &window, hourly.clone(), now());
        assert!(silent.idle && silent.action.is_none());
        assert_eq!(silent.monthly_saving_usd, Some(32.85), "0.045 x 730");
        assert!(!assess_nat_gateway(&nat, Some(5e9), &window, hourly.clone(), now()).idle);
        let young = NatGateway { create_time: now() - chrono::Duration::days(3), ..nat };
        assert!(!assess_nat_gateway(&young, None, &window, hourly, now()).idle, "too young to judge");

        let lb = |healthy| LoadBalancer {
            arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188".into(),
            name: "web".into(),
            region: "us-east-1".into(),
            lb_type: "application".into(),
            create_time: now() - chrono::Duration::days(90),
            healthy_targets: healthy,
            tags: BTreeMap::new(),
            account: None,
        };
        assert_eq!(lb(1).metric_dimension(), Some("app/web/50dc6c495c0c9188"));
        let price =
            crate::pricing::embedded_load_balancer_hourly(crate::pricing::LoadBalancerType::Application, "us-east-1");
        let quiet = assess_load_balancer(&lb(1), None, &window, price.clone(), now());
        assert!(quiet.idle && quiet.reasons[0].contains("no request"), "{:?}", quiet.reasons);
        assert_eq!(quiet.monthly_saving_usd, Some(16.43), "0.0225 x 730");
        let orphan = assess_load_balancer(&lb(0), Some(300.0), &window, price.clone(), now());
        assert!(orphan.idle && orphan.reasons[0].contains("no healthy target"), "{:?}", orphan.reasons);
        assert!(!assess_load_balancer(&lb(2), Some(12_000.0), &window, price, now()).idle);
    }

    #[test]
    fn the_policy_judges_a_finding_by_the_tags_the_inventory_read_and_blocks_one_it_never_listed() {
        let policy = PolicyConfig::default();
        let listed = OtherResources {
            addresses: vec![address(None, &[("finops:protect", "true")])],
            ..OtherResources::default()
        };
        // The finding itself carries no tags: whatever a document says, the inventory's tags decide.
        let findings = vec![assess_address(&address(None, &[])), {
            let mut other = assess_address(&address(None, &[]));
            other.resource_id = "eipalloc-never-listed".into();
            other
        }];
        let judged = judge(&policy, &listed, findings, now());
        assert_eq!(judged[0].blocked.as_ref().unwrap().reason, DenialReason::Protected);
        let unknown = judged[1].blocked.as_ref().unwrap();
        assert_eq!(unknown.reason, DenialReason::UnknownInstance);
        assert!(unknown.detail.contains("not in this run's inventory"), "{unknown:?}");
    }

    #[test]
    fn only_what_the_policy_lets_through_is_proposed_built_from_the_inventorys_record_and_under_the_runs_caps() {
        use crate::policy::{evaluate_with_resources, ProposedAction};
        let policy = PolicyConfig::default();
        let window = LookbackWindow::ending_before(now(), 14);
        let silent = VolumeActivity::default();
        let mut production = volume(90, &[("Environment", "production")]);
        production.volume_id = "vol-prod".into();
        let listed = OtherResources {
            volumes: vec![volume(90, &[("Name", "old-data"), ("Owner", "ana@example.com")]), production.clone()],
            addresses: vec![address(None, &[])],
            ..OtherResources::default()
        };
        let mut forged = assess_volume(&volume(90, &[]), &silent, &window, gp3(), now());
        forged.resource_id = "vol-never-listed".into();
        let findings = vec![
            assess_volume(&listed.volumes[0], &silent, &window, gp3(), now()),
            assess_volume(&production, &silent, &window, gp3(), now()),
            assess_address(&listed.addresses[0]),
            forged,
        ];
        let judged = judge(&policy, &listed, findings, now());
        let proposed = proposals(&policy, &listed, &judged, window.end());
        let ids: Vec<(&str, ProposedAction)> = proposed.iter().map(|p| (p.resource_id.as_str(), p.action)).collect();
        assert_eq!(ids, [("vol-1", ProposedAction::SnapshotAndDelete), ("eipalloc-1", ProposedAction::Release)]);
        let volume = &proposed[0];
        assert_eq!(
            (volume.resource_type.as_str(), volume.volume_ids.as_slice()),
            ("gp3 volume, 100 GiB", &["vol-1".to_owned()][..])
        );
        assert_eq!((volume.name.as_deref(), volume.owner.as_deref()), (Some("old-data"), Some("ana@example.com")));
        assert_eq!((volume.recommended, volume.launch_time, volume.measured_until), (None, None, window.end()));
        assert_eq!(volume.monthly_saving_usd, judged[0].monthly_saving_usd);

        // One run asks about at most `max_proposals` of any kind: the largest saving wins the last place.
        let capped = PolicyConfig { max_proposals: 1, ..PolicyConfig::default() };
        let outcome = evaluate_with_resources(&capped, &[], &Default::default(), &[], proposed, now());
        assert_eq!(outcome.proposals.len(), 1);
        // us-east-1: the volume saves $8.00 less its $5.00 snapshot, the address $3.65.
        assert_eq!(outcome.proposals[0].resource_id, "eipalloc-1", "$3.65 before $3.00");
        assert_eq!(outcome.denials.len(), 1);
        assert_eq!(
            (outcome.denials[0].resource_id.as_str(), outcome.denials[0].reason),
            ("vol-1", DenialReason::CountCap)
        );
    }

    #[test]
    fn a_long_stopped_instances_volumes_are_proposed_only_where_the_deployment_turned_their_deletion_on() {
        use crate::policy::ProposedAction;
        let volume = crate::inventory::VolumeRecord {
            volume_id: "vol-root".into(),
            device_name: Some("/dev/xvda".into()),
            size_gib: 100,
            volume_type: "gp3".into(),
            iops: None,
            delete_on_termination: true,
        };
        let stopped = |id: &str, tags: &[(&str, &str)]| StoppedInstance {
            instance_id: id.into(),
            region: "us-east-1".into(),
            instance_type: "t3.large".into(),
            stopped_since: Some(now() - chrono::Duration::days(60)),
            launch_time: Some(now() - chrono::Duration::days(90)),
            volumes: vec![volume.clone()],
            tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            account: None,
        };
        let listed = OtherResources {
            stopped_instances: vec![stopped("i-old", &[("Name", "old-build")]), stopped("i-prod", &[("env", "prod")])],
            ..OtherResources::default()
        };
        let findings =
            || listed.stopped_instances.iter().map(|i| assess_stopped_instance(i, &[Some(8.0)], 30, now())).collect();
        let off = PolicyConfig::default();
        let judged = judge(&off, &listed, findings(), now());
        assert!(judged.iter().all(|f| f.action.is_none()), "off by default: report only");
        assert!(proposals(&off, &listed, &judged, now()).is_empty());

        let on = PolicyConfig { delete_stopped_instance_volumes: true, ..PolicyConfig::default() };
        let judged = judge(&on, &listed, findings(), now());
        assert!(judged[0].would_propose(), "{:?}", judged[0]);
        assert!(judged[0].reasons[1].contains("snapshot, then delete them"), "{:?}", judged[0].reasons);
        assert_eq!(judged[1].blocked.as_ref().map(|b| b.reason), Some(DenialReason::Production));
        let proposed = proposals(&on, &listed, &judged, now());
        assert_eq!(proposed.len(), 1, "never the production one");
        let p = &proposed[0];
        assert_eq!((p.resource_id.as_str(), p.action), ("i-old", ProposedAction::SnapshotAndDeleteVolumes));
        assert_eq!(
            (p.volume_ids.as_slice(), p.launch_time),
            (&["vol-root".to_owned()][..], listed.stopped_instances[0].launch_time)
        );
        // A document's finding with an action, under a policy that has it off, proposes nothing.
        assert!(proposals(&off, &listed, &judged, now()).is_empty());
        assert!(PolicyConfig::from_vars([("FINOPS_STOPPED_VOLUMES".to_owned(), "delete".to_owned())])
            .is_ok_and(|c| c.delete_stopped_instance_volumes));
        assert!(PolicyConfig::from_vars([("FINOPS_STOPPED_VOLUMES".to_owned(), "yes".to_owned())]).is_err());
    }
}
