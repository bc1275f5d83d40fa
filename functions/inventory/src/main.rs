//! Lambda `finops-inventory`: the inventory step, built from the environment.
// Step futures nest the SDK's deeply enough to need a higher limit.
#![recursion_limit = "256"]

use finops_core::DetectionConfig;
use finops_inventory::InventoryStep;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &InventoryStep::new(&sdk, &DetectionConfig::from_env()?)?;
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
