//! Lambda `finops-merge-scans`: every item's scan into one run's detection.
#![recursion_limit = "256"]

use finops_core::DetectionConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let config = &DetectionConfig::from_env()?;
    let store = &finops_aws::S3RunStore::new(&sdk, config.required_run_bucket()?);
    finops_aws::lambda::run(|event, now| finops_fanout::merge(event, store, config, now)).await
}
