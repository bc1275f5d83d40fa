//! Lambda `finops-run-cost`: the run's own cost, from its execution history.

use finops_run_cost::{CostConfig, RunCostStep};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &RunCostStep::new(&sdk, CostConfig::from_env()?);
    finops_aws::lambda::run(|event, _now| step.handle(event)).await
}
