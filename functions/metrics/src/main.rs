//! Lambda `finops-metrics`: wires the clients and calls [`finops_metrics::handle`].

use finops_aws::{load_sdk_config, AwsSettings, FinopsError, PriceBook, S3RunStore, SdkPriceList};
use finops_core::config::PricingMode;
use finops_core::DetectionConfig;
use finops_metrics::{handle, CloudWatchMetrics};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let detection = DetectionConfig::from_env()?;
    let bucket =
        detection.run_bucket.clone().ok_or(FinopsError::Configuration("FINOPS_RUN_BUCKET is not set".into()))?;
    let store = S3RunStore::new(&config, bucket);
    // Lives as long as the container: prices fetched once serve every later run.
    let prices = PriceBook::new((detection.pricing == PricingMode::Api).then(|| SdkPriceList::new(&config)));
    let metrics = CloudWatchMetrics::new(config);
    let (metrics, prices, store, detection) = (&metrics, &prices, &store, &detection);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, metrics, prices, store, detection, chrono::Utc::now()).await
    }))
    .await
}
