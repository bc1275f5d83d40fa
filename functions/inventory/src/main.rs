//! Lambda `finops-inventory`: wires the clients and calls [`finops_inventory::handle`].

use finops_aws::{load_sdk_config, AwsSettings, FinopsError, S3RunStore};
use finops_core::DetectionConfig;
use finops_inventory::{handle, Ec2Inventory};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let detection = DetectionConfig::from_env()?;
    let bucket = detection.run_bucket.ok_or(FinopsError::Configuration("FINOPS_RUN_BUCKET is not set".into()))?;
    let store = S3RunStore::new(&config, bucket);
    let source = Ec2Inventory::new(config);
    let (source, store) = (&source, &store);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, source, store, chrono::Utc::now()).await
    }))
    .await
}
