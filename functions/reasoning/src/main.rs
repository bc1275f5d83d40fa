//! Lambda `finops-reasoning`: wires the run store and the configured reasoner, calls the handler.

use finops_aws::{load_sdk_config, AwsSettings, FinopsError, S3RunStore};
use finops_reasoning::{handle, ModelReply, Reasoner, ReasonerError};
use lambda_runtime::{service_fn, LambdaEvent};

/// The rules backend needs no model; this type only fills the generic parameter.
struct NoModel;

impl Reasoner for NoModel {
    fn name(&self) -> &str {
        "rules"
    }
    async fn ask(&self, _session_id: &str, _prompt: &str) -> Result<ModelReply, ReasonerError> {
        Err(ReasonerError::Failed("no model configured".into()))
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let backend = std::env::var("FINOPS_REASONER").unwrap_or_else(|_| "rules".into());
    if backend != "rules" {
        // The Bedrock backends (agent, converse) are not in this build yet: refuse rather than pretend.
        return Err(FinopsError::Configuration(format!(
            "FINOPS_REASONER={backend} is not available in this build; use rules"
        ))
        .into());
    }
    let bucket = std::env::var("FINOPS_RUN_BUCKET")
        .map_err(|_| FinopsError::Configuration("FINOPS_RUN_BUCKET is not set".into()))?;
    let store = S3RunStore::new(&config, bucket);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle::<NoModel, _>(event.payload, store, None, chrono::Utc::now()).await
    }))
    .await
}
