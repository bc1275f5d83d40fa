//! Lambda `finops-reasoning`: the reasoning step with the backend its environment names (`FINOPS_REASONER`).
#![recursion_limit = "256"]

use finops_reasoning::{ReasoningConfig, ReasoningStep};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &ReasoningStep::new(&sdk, ReasoningConfig::from_env()?)?;
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
