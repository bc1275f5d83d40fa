//! Lambda `finops-request-approval`: the request step (and the undo offer after the approvals), built from the
//! environment.
#![recursion_limit = "256"]

use finops_request_approval::{RequestApprovalConfig, RequestApprovalStep};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    finops_aws::init_logging();
    let sdk = finops_aws::load_sdk_config(&finops_aws::AwsSettings::default()).await;
    let step = &RequestApprovalStep::new(&sdk, RequestApprovalConfig::from_env()?)?;
    finops_aws::lambda::run(|event, now| async move {
        // Lambda sets the trace header per invocation.
        let trace = std::env::var("_X_AMZN_TRACE_ID").ok();
        step.invoke(event, now, trace.as_deref()).await
    })
    .await
}
