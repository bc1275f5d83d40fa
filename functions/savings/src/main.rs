//! Lambda `finops-savings`: what earlier runs stopped, deleted or released, checked against the live resources.
#![recursion_limit = "256"]

use finops_savings::{SavingsConfig, SavingsStep};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &SavingsStep::new(&sdk, SavingsConfig::from_env()?);
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
