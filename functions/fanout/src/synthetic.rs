//! A synthetic organization for the benchmark and the tests: every (account, region) item runs the same number of
//! instances, numbered so that exactly `idle_percent` of each item looks idle to the synthetic CloudWatch, and the
//! accounts listed as unreachable refuse the role, as STS does when the StackSet has not reached them.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use finops_aws::FinopsError;
use finops_core::organization::AccountRef;
use finops_core::InstanceRecord;
use finops_inventory::InventorySource;
use finops_metrics::synthetic::SyntheticMetrics;

use crate::MemberClients;

const TYPES: &[&str] = &["t3.micro", "t3.large", "m5.large", "m5.xlarge", "c5.large", "r5.large", "m6i.2xlarge"];

pub struct SyntheticOrganization {
    pub instances_per_item: usize,
    pub unreachable: BTreeSet<String>,
    /// One CloudWatch for every account, so its call counts cover the whole run.
    pub metrics: Arc<SyntheticMetrics>,
    pub launched: DateTime<Utc>,
}

impl SyntheticOrganization {
    pub fn new(instances_per_item: usize, idle_percent: u64) -> Self {
        Self {
            instances_per_item,
            unreachable: BTreeSet::new(),
            metrics: Arc::new(SyntheticMetrics::with_idle_percent(idle_percent)),
            launched: Utc::now() - chrono::Duration::days(90),
        }
    }
}

/// One account's instances in any region.
pub struct SyntheticFleet {
    account: u64,
    count: usize,
    launched: DateTime<Utc>,
}

impl SyntheticFleet {
    /// Ids are `i-` and a number: account x 10^7 + region x 10^5 + n, so every id is unique and n (mod 100) alone
    /// decides whether it looks idle.
    fn id(&self, region: &str, n: usize) -> String {
        let region = finops_core::regions::KNOWN_REGIONS.iter().position(|r| *r == region).unwrap_or(99) as u64;
        format!("i-{:017x}", self.account * 10_000_000 + region * 100_000 + n as u64)
    }
}

impl InventorySource for SyntheticFleet {
    async fn running_instances(&self, region: &str) -> Result<Vec<InstanceRecord>, FinopsError> {
        Ok((0..self.count)
            .map(|n| {
                InstanceRecord::ordinary(&self.id(region, n), region, TYPES[n % TYPES.len()], self.launched, 50)
                    .with_tags([("Name".to_string(), format!("host-{n}")), ("Environment".to_string(), "dev".into())])
            })
            .collect())
    }
}

/// The benchmark sizes instance fleets: a synthetic account has no unattached volume and no Elastic IP.
impl finops_inventory::ResourceInventory for SyntheticFleet {
    async fn other_resources(&self, _region: &str) -> Result<finops_core::resources::OtherResources, FinopsError> {
        Ok(Default::default())
    }
}

impl MemberClients for SyntheticOrganization {
    type Inventory = SyntheticFleet;
    type Metrics = Arc<SyntheticMetrics>;

    async fn for_account(&self, account: &AccountRef) -> Result<(SyntheticFleet, Arc<SyntheticMetrics>), FinopsError> {
        if self.unreachable.contains(&account.id) {
            return Err(FinopsError::AccessDenied {
                service: "sts",
                operation: "AssumeRole",
                message: format!("role arn:aws:iam::{}:role/finops-agent-read-only cannot be assumed", account.id),
            });
        }
        let number = account.id.parse::<u64>().map_err(|_| FinopsError::InvalidInput(account.id.clone()))? % 100_000;
        let fleet = SyntheticFleet { account: number, count: self.instances_per_item, launched: self.launched };
        Ok((fleet, Arc::clone(&self.metrics)))
    }
}
