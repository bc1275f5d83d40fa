//! Lambda `finops-scan-account`: one (account, region) item of the Distributed Map, through the member's read-only
//! role.
#![recursion_limit = "256"]

use finops_core::organization::OrganizationConfig;
use finops_core::DetectionConfig;
use finops_fanout::ScanAccountStep;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let organization = OrganizationConfig::from_vars(std::env::vars())?;
    let step = &ScanAccountStep::new(&sdk, DetectionConfig::from_env()?, organization)?;
    finops_aws::lambda::run(|event, _now| step.handle(event)).await
}
