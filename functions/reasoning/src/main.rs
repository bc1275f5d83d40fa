//! Lambda `finops-reasoning`: wires the run store and the configured reasoner, calls the handler.
//! `FINOPS_REASONER`: `agent` (InvokeAgent: `FINOPS_AGENT_ID`, `FINOPS_AGENT_ALIAS_ID`), `converse` (Converse with
//! tool use: `FINOPS_MODEL_ID`, `FINOPS_REGIONS`) or `rules`.
#![recursion_limit = "256"]

use finops_agent_tools::ToolClients;
use finops_aws::{load_sdk_config, AwsSettings, FinopsError, S3RunStore};
use finops_core::config::PricingMode;
use finops_core::regions::parse_region_list;
use finops_core::DetectionConfig;
use finops_reasoning::agent::BedrockAgent;
use finops_reasoning::converse::BedrockConverse;
use finops_reasoning::{handle, Reasoner};
use lambda_runtime::{service_fn, LambdaEvent};

fn required(name: &str) -> Result<String, FinopsError> {
    std::env::var(name).map_err(|_| FinopsError::Configuration(format!("{name} is not set")))
}

async fn serve<R: Reasoner>(store: &S3RunStore, reasoner: Option<&R>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, store, reasoner, chrono::Utc::now()).await
    }))
    .await
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let store = S3RunStore::new(&config, required("FINOPS_RUN_BUCKET")?);
    match std::env::var("FINOPS_REASONER").as_deref().unwrap_or("agent") {
        "rules" => serve::<BedrockAgent>(&store, None).await,
        "agent" => {
            let agent = BedrockAgent::new(
                aws_sdk_bedrockagentruntime::Client::new(&config),
                required("FINOPS_AGENT_ID")?,
                required("FINOPS_AGENT_ALIAS_ID")?,
            );
            serve(&store, Some(&agent)).await
        }
        "converse" => {
            let detection = DetectionConfig::from_env()?;
            let regions = parse_region_list(&required("FINOPS_REGIONS")?)
                .map_err(|e| FinopsError::Configuration(format!("FINOPS_REGIONS: {e}")))?;
            // Converse gets the read-only tools only: nothing it can call asks for approval or changes an instance.
            let clients = ToolClients::new(&config, detection.pricing == PricingMode::Api);
            let tools = clients.read_tools(regions, detection.criteria);
            let converse =
                BedrockConverse::new(aws_sdk_bedrockruntime::Client::new(&config), required("FINOPS_MODEL_ID")?, tools)
                    .map_err(FinopsError::Configuration)?;
            serve(&store, Some(&converse)).await
        }
        other => {
            Err(FinopsError::Configuration(format!("FINOPS_REASONER={other:?}: allowed are agent, converse, rules"))
                .into())
        }
    }
}
