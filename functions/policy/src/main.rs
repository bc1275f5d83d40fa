//! Lambda `finops-policy`: wires the run store and calls [`finops_policy::handle`].

use finops_aws::{load_sdk_config, AwsSettings, FinopsError, S3RunStore};
use finops_core::policy::PolicyConfig;
use finops_policy::handle;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let policy = PolicyConfig::from_vars(std::env::vars())?;
    let bucket = std::env::var("FINOPS_RUN_BUCKET")
        .map_err(|_| FinopsError::Configuration("FINOPS_RUN_BUCKET is not set".into()))?;
    let store = S3RunStore::new(&config, bucket);
    let (store, policy) = (&store, &policy);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, store, policy, chrono::Utc::now()).await
    }))
    .await
}
