//! Lambda `finops-agent-tools`: wires the read-only clients and the approval starter, calls the action-group handler.
// The handler future nests inventory, metrics and pricing futures deeply enough to need a higher limit.
#![recursion_limit = "256"]

use finops_agent_tools::{SfnStarter, ToolClients, Tools};
use finops_aws::{load_sdk_config, AwsSettings, FinopsError};
use finops_core::config::PricingMode;
use finops_core::policy::PolicyConfig;
use finops_core::regions::parse_region_list;
use finops_core::DeploymentMode;
use finops_core::DetectionConfig;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let detection = DetectionConfig::from_env()?;
    let regions = parse_region_list(&std::env::var("FINOPS_REGIONS").unwrap_or_default())
        .map_err(|e| FinopsError::Configuration(format!("FINOPS_REGIONS: {e}")))?;
    let state_machine = std::env::var("FINOPS_STATE_MACHINE_ARN")
        .map_err(|_| FinopsError::Configuration("FINOPS_STATE_MACHINE_ARN is not set".into()))?;
    let clients = ToolClients::new(&config, detection.pricing == PricingMode::Api);
    let starter = SfnStarter::new(&config, state_machine);
    let tools = Tools {
        read: clients.read_tools(regions, detection.criteria),
        starter: &starter,
        policy: PolicyConfig::from_vars(std::env::vars())?,
        mode: DeploymentMode::from_vars(std::env::vars())?,
    };
    let tools = &tools;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, FinopsError>(tools.handle(event.payload, chrono::Utc::now()).await)
    }))
    .await
}
