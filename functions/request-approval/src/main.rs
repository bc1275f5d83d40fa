//! Lambda `finops-request-approval`: wires DynamoDB, Secrets Manager and SNS and calls the handler.

use finops_approval_store::{DynamoApprovals, SecretsManagerKey, SnsNotifier};
use finops_aws::{load_sdk_config, AwsSettings, FinopsError};
use finops_request_approval::{handle, RequestConfig};
use lambda_runtime::{service_fn, LambdaEvent};

fn required(name: &str) -> Result<String, FinopsError> {
    std::env::var(name).map_err(|_| FinopsError::Configuration(format!("{name} is not set")))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let request_config = RequestConfig::from_vars(std::env::vars())?;
    let records = DynamoApprovals::new(&config, required("FINOPS_APPROVALS_TABLE")?);
    let key = SecretsManagerKey::new(&config, required("FINOPS_SIGNING_SECRET_ID")?);
    let notifier = SnsNotifier::new(&config, required("FINOPS_APPROVAL_TOPIC_ARN")?);
    let (records, key, notifier, request_config) = (&records, &key, &notifier, &request_config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| FinopsError::Configuration(format!("no randomness: {e}")))?;
        let trace = std::env::var("_X_AMZN_TRACE_ID").ok();
        handle(event.payload, records, key, notifier, request_config, chrono::Utc::now(), random, trace.as_deref())
            .await
    }))
    .await
}
