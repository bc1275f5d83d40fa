//! Lambda `finops-plan-scans`: the organization's (account, region) items for the Distributed Map.
#![recursion_limit = "256"]

use finops_core::organization::OrganizationConfig;
use finops_core::DetectionConfig;
use finops_fanout::PlanStep;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let organization = OrganizationConfig::from_vars(std::env::vars())?;
    let step = &PlanStep::new(&sdk, &DetectionConfig::from_env()?, organization)?;
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
