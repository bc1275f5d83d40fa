//! Monthly cost and savings estimates, and the embedded fallback price table.
//!
//! Prices come from the AWS Price List Query API when it answers (see `finops-aws::pricing`); this table is the
//! fallback for offline runs, emulated AWS and API failures. Every estimate names the source it used.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::inventory::{InstanceRecord, Lifecycle};
use crate::verdict::IdleVerdict;

/// AWS bills a month as 730 hours in its calculators and Cost Explorer projections.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Where the embedded prices come from. They are list prices of the families below, which AWS has not changed
/// since they were captured; a region other than us-east-1 is scaled by an approximate factor, so estimates there
/// are rough and say so.
pub const EMBEDDED_PRICES_SOURCE: &str =
    "embedded table: AWS EC2 On-Demand pricing page, us-east-1 Linux/UNIX shared tenancy and EBS pricing page, captured 2024-06; other regions scaled by approximate regional factors";
pub const EMBEDDED_PRICES_AS_OF: &str = "2024-06";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum PriceSource {
    /// AWS Price List Query API (GetProducts), queried at run time.
    PriceListApi,
    /// The embedded table; `approximate` when a regional factor was applied.
    EmbeddedTable { as_of: String, approximate: bool },
    /// No price known (an unusual type, Windows offline): no saving is claimed.
    Unknown { reason: String },
}

impl PriceSource {
    pub fn embedded(region: &str) -> Self {
        Self::EmbeddedTable { as_of: EMBEDDED_PRICES_AS_OF.into(), approximate: region_factor(region) != Some(1.0) }
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PriceListApi => f.write_str("AWS Price List API"),
            Self::EmbeddedTable { as_of, approximate: false } => write!(f, "embedded price table ({as_of})"),
            Self::EmbeddedTable { as_of, approximate: true } => {
                write!(f, "embedded price table ({as_of}, regional factor, approximate)")
            }
            Self::Unknown { reason } => write!(f, "unknown ({reason})"),
        }
    }
}

/// A price with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    pub usd: f64,
    pub source: PriceSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_monthly_usd: Option<f64>,
    pub storage_monthly_usd: f64,
    /// Compute + attached EBS storage; `None` when the instance price is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cost_usd: Option<f64>,
    /// What acting on the verdict would save per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_saving_usd: Option<f64>,
    pub saving_basis: SavingBasis,
    /// What the estimate leaves out or gets wrong, in words (spot pricing, unpriced volumes); usually empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    pub price_source: PriceSource,
}

/// How the saving was worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavingBasis {
    /// Stopping: compute stops billing; EBS storage continues while the volumes exist.
    Stop,
    /// Rightsizing one size down in the same family, which halves the on-demand price.
    RightsizeOneSizeDown,
    /// Nothing is proposed for the instance.
    NoAction,
    /// The instance price is unknown: no saving is claimed.
    PriceUnknown,
}

impl fmt::Display for SavingBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stop => "stop: compute stops billing; EBS storage continues while the volumes exist",
            Self::RightsizeOneSizeDown => {
                "rightsize one size down in the same family, which halves the on-demand price"
            }
            Self::NoAction => "no action proposed",
            Self::PriceUnknown => "instance price unknown, no saving claimed",
        })
    }
}

impl CostEstimate {
    /// Prices an instance: `hourly` is its on-demand price, `storage` the monthly price of each attached volume
    /// (unknown volume types are left out and said so).
    pub fn new(
        instance: &InstanceRecord,
        verdict: IdleVerdict,
        hourly: Option<Quote>,
        storage: &[Option<f64>],
    ) -> Self {
        let storage_monthly_usd: f64 = storage.iter().flatten().sum();
        let unpriced_volumes = storage.iter().filter(|s| s.is_none()).count();
        let (hourly_usd, price_source) = match hourly {
            Some(q) => (Some(q.usd), q.source),
            None => (
                None,
                PriceSource::Unknown {
                    reason: format!(
                        "no on-demand price for {} {} in {}",
                        instance.instance_type, instance.platform, instance.region
                    ),
                },
            ),
        };
        let compute_monthly_usd = hourly_usd.map(|h| round_cents(h * HOURS_PER_MONTH));
        let monthly_cost_usd = compute_monthly_usd.map(|c| round_cents(c + storage_monthly_usd));
        let (monthly_saving_usd, saving_basis) = match (verdict, compute_monthly_usd) {
            (_, None) => (None, SavingBasis::PriceUnknown),
            (IdleVerdict::Idle, Some(c)) => (Some(c), SavingBasis::Stop),
            (IdleVerdict::Underutilised, Some(c)) => (Some(round_cents(c / 2.0)), SavingBasis::RightsizeOneSizeDown),
            (IdleVerdict::Active | IdleVerdict::InsufficientData, Some(_)) => (Some(0.0), SavingBasis::NoAction),
        };
        let mut caveats = Vec::new();
        if instance.lifecycle == Lifecycle::Spot {
            caveats.push("spot instance: priced on-demand, actual spend is lower".to_string());
        }
        if unpriced_volumes > 0 {
            caveats.push(format!("{unpriced_volumes} volume(s) of unknown type not priced"));
        }
        Self {
            hourly_usd,
            compute_monthly_usd,
            storage_monthly_usd: round_cents(storage_monthly_usd),
            monthly_cost_usd,
            monthly_saving_usd,
            saving_basis,
            caveats,
            price_source,
        }
    }
}

fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// us-east-1 Linux on-demand price of the `large` size of each family; the other sizes scale linearly with vCPUs,
/// as AWS prices these families.
const FAMILY_LARGE_USD_HOURLY: &[(&str, f64)] = &[
    ("t2", 0.0928),
    ("t3", 0.0832),
    ("t3a", 0.0752),
    ("t4g", 0.0672),
    ("m5", 0.096),
    ("m5a", 0.086),
    ("m6i", 0.096),
    ("m6a", 0.0864),
    ("m6g", 0.077),
    ("m7i", 0.1008),
    ("m7g", 0.0816),
    ("c5", 0.085),
    ("c5a", 0.077),
    ("c6i", 0.085),
    ("c6g", 0.068),
    ("c7i", 0.08925),
    ("c7g", 0.0725),
    ("r5", 0.126),
    ("r6i", 0.126),
    ("r6g", 0.1008),
    ("r7i", 0.1323),
    ("r7g", 0.1071),
];

/// Size name to multiple of `large`.
const SIZE_FACTORS: &[(&str, f64)] = &[
    ("nano", 0.0625),
    ("micro", 0.125),
    ("small", 0.25),
    ("medium", 0.5),
    ("large", 1.0),
    ("xlarge", 2.0),
    ("2xlarge", 4.0),
    ("4xlarge", 8.0),
    ("8xlarge", 16.0),
    ("12xlarge", 24.0),
    ("16xlarge", 32.0),
    ("24xlarge", 48.0),
];

/// Approximate on-demand price level of a region relative to us-east-1 (Linux, general purpose).
const REGION_FACTORS: &[(&str, f64)] = &[
    ("us-east-1", 1.0),
    ("us-east-2", 1.0),
    ("us-west-2", 1.0),
    ("us-west-1", 1.17),
    ("ca-central-1", 1.1),
    ("eu-west-1", 1.11),
    ("eu-west-2", 1.16),
    ("eu-west-3", 1.17),
    ("eu-central-1", 1.19),
    ("eu-north-1", 1.06),
    ("ap-south-1", 1.05),
    ("ap-southeast-1", 1.25),
    ("ap-southeast-2", 1.25),
    ("ap-northeast-1", 1.29),
    ("ap-northeast-2", 1.2),
    ("sa-east-1", 1.59),
];

/// us-east-1 EBS storage, USD per GB-month (IOPS and throughput charges of io1/io2/gp3 above baseline not included).
const EBS_USD_GB_MONTH: &[(&str, f64)] =
    &[("gp3", 0.08), ("gp2", 0.10), ("io1", 0.125), ("io2", 0.125), ("st1", 0.045), ("sc1", 0.015), ("standard", 0.05)];

fn region_factor(region: &str) -> Option<f64> {
    REGION_FACTORS.iter().find(|(r, _)| *r == region).map(|(_, f)| *f)
}

/// The embedded on-demand price of a Linux instance type in a region, if the table covers both.
pub fn embedded_hourly(instance_type: &str, region: &str, windows: bool) -> Option<Quote> {
    if windows {
        return None; // Windows prices include a licence that does not scale like the table.
    }
    let (family, size) = instance_type.split_once('.')?;
    let large = FAMILY_LARGE_USD_HOURLY.iter().find(|(f, _)| *f == family)?.1;
    let factor = SIZE_FACTORS.iter().find(|(s, _)| *s == size)?.1;
    let usd = large * factor * region_factor(region)?;
    Some(Quote { usd: (usd * 1e6).round() / 1e6, source: PriceSource::embedded(region) })
}

/// The embedded EBS snapshot storage price (standard tier) per GB-month in a region.
pub fn embedded_snapshot_gb_month(region: &str) -> Option<f64> {
    Some(((crate::resources::SNAPSHOT_USD_GB_MONTH * region_factor(region)?) * 1e6).round() / 1e6)
}

/// A NAT gateway's hourly charge in us-east-1 (data processed, $0.045/GB, comes on top and stops with the traffic).
pub const NAT_GATEWAY_USD_HOURLY: f64 = 0.045;

/// The embedded NAT gateway hourly price in a region (the VPC pricing page's; the Price List is not asked for it).
pub fn embedded_nat_gateway_hourly(region: &str) -> Option<Quote> {
    embedded_scaled(NAT_GATEWAY_USD_HOURLY, region)
}

/// The kinds of Elastic Load Balancing v2 load balancer, as their hourly charge differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadBalancerType {
    Application,
    Network,
    Gateway,
}

impl LoadBalancerType {
    /// ELBv2's `Type` (`application`, `network`, `gateway`); None for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "application" => Some(Self::Application),
            "network" => Some(Self::Network),
            "gateway" => Some(Self::Gateway),
            _ => None,
        }
    }
}

/// The embedded hourly charge of a load balancer in a region (the ELB pricing page's us-east-1 prices of 2024,
/// scaled; LCUs, which follow the traffic, come on top).
pub fn embedded_load_balancer_hourly(lb_type: LoadBalancerType, region: &str) -> Option<Quote> {
    let usd = match lb_type {
        LoadBalancerType::Application | LoadBalancerType::Network => 0.0225,
        LoadBalancerType::Gateway => 0.0125,
    };
    embedded_scaled(usd, region)
}

/// A us-east-1 list price scaled to `region` by the table's regional factor, with its source.
pub fn embedded_scaled(us_east_1_usd: f64, region: &str) -> Option<Quote> {
    let usd = us_east_1_usd * region_factor(region)?;
    Some(Quote { usd: (usd * 1e6).round() / 1e6, source: PriceSource::embedded(region) })
}

/// The embedded EBS storage price per GB-month of a volume type in a region.
pub fn embedded_ebs_gb_month(volume_type: &str, region: &str) -> Option<Quote> {
    let base = EBS_USD_GB_MONTH.iter().find(|(t, _)| *t == volume_type)?.1;
    let usd = base * region_factor(region)?;
    Some(Quote { usd: (usd * 1e6).round() / 1e6, source: PriceSource::embedded(region) })
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::Utc;

    fn instance(t: &str, lifecycle: Lifecycle) -> InstanceRecord {
        InstanceRecord { lifecycle, ..InstanceRecord::ordinary("i-1", "us-east-1", t, Utc::now(), 0) }
    }

    #[test]
    fn embedded_prices_match_list_prices() {
        assert_eq!(embedded_hourly("t3.micro", "us-east-1", false).unwrap().usd, 0.0104);
        assert_eq!(embedded_hourly("m5.2xlarge", "us-east-1", false).unwrap().usd, 0.384);
        assert_eq!(embedded_hourly("r5.large", "us-east-1", false).unwrap().usd, 0.126);
        let syd = embedded_hourly("m5.large", "ap-southeast-2", false).unwrap();
        assert_eq!(syd.usd, 0.12);
        assert_eq!(syd.source, PriceSource::EmbeddedTable { as_of: "2024-06".into(), approximate: true });
    }

    #[test]
    fn unknown_types_regions_and_windows_have_no_embedded_price() {
        assert!(embedded_hourly("x9z.large", "us-east-1", false).is_none());
        assert!(embedded_hourly("m5.large", "me-south-1", false).is_none());
        assert!(embedded_hourly("m5.large", "us-east-1", true).is_none());
        assert!(embedded_hourly("m5", "us-east-1", false).is_none());
    }

    #[test]
    fn idle_saving_is_compute_at_730_hours_and_storage_is_reported() {
        let i = instance("m5.large", Lifecycle::OnDemand);
        let hourly = embedded_hourly("m5.large", "us-east-1", false);
        let gp3 = embedded_ebs_gb_month("gp3", "us-east-1").unwrap().usd;
        let e = CostEstimate::new(&i, IdleVerdict::Idle, hourly, &[Some(100.0 * gp3)]);
        assert_eq!(e.compute_monthly_usd, Some(70.08)); // 0.096 * 730
        assert_eq!(e.storage_monthly_usd, 8.0);
        assert_eq!(e.monthly_cost_usd, Some(78.08));
        assert_eq!(e.monthly_saving_usd, Some(70.08));
        assert_eq!(e.saving_basis, SavingBasis::Stop);
        assert!(e.saving_basis.to_string().contains("EBS storage continues"));
    }

    #[test]
    fn underutilised_saving_is_half_and_active_is_zero() {
        let i = instance("m5.large", Lifecycle::OnDemand);
        let q = || embedded_hourly("m5.large", "us-east-1", false);
        assert_eq!(CostEstimate::new(&i, IdleVerdict::Underutilised, q(), &[]).monthly_saving_usd, Some(35.04));
        assert_eq!(CostEstimate::new(&i, IdleVerdict::Active, q(), &[]).monthly_saving_usd, Some(0.0));
    }

    #[test]
    fn unknown_price_claims_no_saving_and_says_why() {
        let i = instance("x9z.large", Lifecycle::Spot);
        let e = CostEstimate::new(&i, IdleVerdict::Idle, None, &[None]);
        assert_eq!(e.monthly_saving_usd, None);
        assert_eq!(e.monthly_cost_usd, None);
        assert!(matches!(e.price_source, PriceSource::Unknown { .. }));
        assert_eq!(e.saving_basis, SavingBasis::PriceUnknown);
        assert!(e.caveats[0].contains("spot"));
        assert!(e.caveats[1].contains("1 volume(s) of unknown type"));
    }
}
