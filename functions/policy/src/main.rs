//! Lambda `finops-policy`: the policy step, built from the environment.
// Step futures nest the SDK's deeply enough to need a higher limit.
#![recursion_limit = "256"]

use finops_policy::{PolicyStep, PolicyStepConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &PolicyStep::new(&sdk, PolicyStepConfig::from_env()?);
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
