//! Lambda `finops-actions`: wires the instance lookup, the EC2 adapter, the approvals table (read) and CloudWatch,
//! and calls [`finops_actions::Actions::handle`].

use finops_actions::{Actions, ActionsConfig, SdkEc2Actions};
use finops_approval_store::DynamoApprovals;
use finops_aws::{load_sdk_config, AwsSettings, FinopsError};
use finops_inventory::Ec2Inventory;
use finops_metrics::CloudWatchMetrics;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let actions_config = ActionsConfig::from_env()?;
    let table = std::env::var("FINOPS_APPROVALS_TABLE")
        .map_err(|_| FinopsError::Configuration("FINOPS_APPROVALS_TABLE is not set".into()))?;
    let (instances, ec2) = (Ec2Inventory::new(config.clone()), SdkEc2Actions::new(config.clone()));
    let (approvals, metrics) = (DynamoApprovals::new(&config, table), CloudWatchMetrics::new(config));
    let actions =
        Actions { instances: &instances, ec2: &ec2, approvals: &approvals, metrics: &metrics, config: &actions_config };
    let actions = &actions;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        actions.handle(event.payload, chrono::Utc::now()).await
    }))
    .await
}
