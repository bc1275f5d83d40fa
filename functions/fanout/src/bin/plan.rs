//! Lambda `finops-plan-scans`: the organization's (account, region) items for the Distributed Map.

use finops_aws::{caller_account, SdkOrganization};
use finops_core::organization::{AccountRef, OrganizationConfig};
use finops_core::DetectionConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let config = DetectionConfig::from_env()?;
    let store = &finops_aws::S3RunStore::new(&sdk, config.required_run_bucket()?);
    let organization = &OrganizationConfig::from_vars(std::env::vars())?
        .ok_or("FINOPS_ACCOUNTS is not set: this deployment covers one account and has no fan-out to plan")?;
    let hub_id = caller_account(&sdk).await?;
    let hub = &AccountRef::new(&hub_id, &hub_id);
    let directory = &SdkOrganization::new(&sdk);
    finops_aws::lambda::run(|event, now| finops_fanout::plan(event, directory, hub, organization, store, now)).await
}
