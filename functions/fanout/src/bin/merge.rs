//! Lambda `finops-merge-scans`: every item's scan into one run's detection.
#![recursion_limit = "256"]

use finops_core::DetectionConfig;
use finops_fanout::MergeStep;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &MergeStep::new(&sdk, DetectionConfig::from_env()?)?;
    finops_aws::lambda::run(|event, now| step.handle(event, now)).await
}
