//! Lambda `finops-reasoning`: wires the run store and the configured reasoner, calls the handler.
//! `FINOPS_REASONER`: `agent` (Bedrock InvokeAgent; `FINOPS_AGENT_ID`, `FINOPS_AGENT_ALIAS_ID`) or `rules`.

use finops_aws::{load_sdk_config, AwsSettings, FinopsError, S3RunStore};
use finops_reasoning::agent::BedrockAgent;
use finops_reasoning::handle;
use lambda_runtime::{service_fn, LambdaEvent};

fn required(name: &str) -> Result<String, FinopsError> {
    std::env::var(name).map_err(|_| FinopsError::Configuration(format!("{name} is not set")))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let reasoner = match std::env::var("FINOPS_REASONER").as_deref().unwrap_or("rules") {
        "rules" => None,
        "agent" => Some(BedrockAgent::new(
            aws_sdk_bedrockagentruntime::Client::new(&config),
            required("FINOPS_AGENT_ID")?,
            required("FINOPS_AGENT_ALIAS_ID")?,
        )),
        // The Converse backend is not in this build yet: refuse rather than pretend.
        other => {
            return Err(FinopsError::Configuration(format!(
                "FINOPS_REASONER={other} is not available in this build (agent, rules)"
            ))
            .into())
        }
    };
    let store = S3RunStore::new(&config, required("FINOPS_RUN_BUCKET")?);
    let (store, reasoner) = (&store, reasoner.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, store, reasoner, chrono::Utc::now()).await
    }))
    .await
}
