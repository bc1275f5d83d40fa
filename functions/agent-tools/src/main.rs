//! Lambda `finops-agent-tools`: the Bedrock action group, built from the environment.
// The handler future nests inventory, metrics and pricing futures deeply enough to need a higher limit.
#![recursion_limit = "256"]

use finops_agent_tools::{SdkTools, ToolsConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let tools = &SdkTools::new(&sdk, ToolsConfig::from_env()?);
    finops_aws::lambda::run(
        |event, now| async move { Ok::<_, finops_aws::FinopsError>(tools.handle(event, now).await) },
    )
    .await
}
