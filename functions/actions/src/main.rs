//! Lambda `finops-actions`: the actions step, built from the environment.
#![recursion_limit = "256"]

use finops_actions::{ActionsConfig, ActionsStep};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &ActionsStep::new(&sdk, ActionsConfig::from_env()?);
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
