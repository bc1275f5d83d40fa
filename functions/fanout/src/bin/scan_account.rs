//! Lambda `finops-scan-account`: one (account, region) item of the Distributed Map, through the member's read-only
//! role.
#![recursion_limit = "256"]

use finops_aws::{MemberSessions, PriceBook, SdkPriceList};
use finops_core::config::PricingMode;
use finops_core::organization::{OrganizationConfig, DETECTION_ROLE_NAME};
use finops_core::DetectionConfig;
use finops_fanout::SdkMemberClients;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let config = &DetectionConfig::from_env()?;
    let store = &finops_aws::S3RunStore::new(&sdk, config.required_run_bucket()?);
    let read_role = OrganizationConfig::from_vars(std::env::vars())?
        .map_or_else(|| DETECTION_ROLE_NAME.to_owned(), |organization| organization.read_role);
    // One session name per container: CloudTrail in the member shows which function read it.
    let sessions = MemberSessions::new(&sdk, &read_role, "finops-scan-account").await?;
    let clients = &SdkMemberClients { sessions };
    let prices = &PriceBook::new((config.pricing == PricingMode::Api).then(|| SdkPriceList::new(&sdk)));
    finops_aws::lambda::run(|event, _now| finops_fanout::scan_account(event, clients, prices, store, config)).await
}
