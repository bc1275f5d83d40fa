//! Lambda `finops-actions`: wires the EC2 adapter and calls [`finops_actions::handle`].

use finops_actions::{handle, ActionsConfig, SdkEc2Actions};
use finops_aws::{load_sdk_config, AwsSettings};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let config = load_sdk_config(&AwsSettings::default()).await;
    let actions_config = ActionsConfig::from_env()?;
    let ec2 = SdkEc2Actions::new(config);
    let (ec2, actions_config) = (&ec2, &actions_config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        handle(event.payload, ec2, actions_config, chrono::Utc::now()).await
    }))
    .await
}
