//! The Lambda runtime loop every step's `main.rs` ends with: each event goes to the step's handler with the time
//! it arrived; a [`FinopsError`] is reported under its Step Functions error name.

use std::future::Future;

use chrono::{DateTime, Utc};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;

use crate::FinopsError;

pub async fn run<F, Fut, O>(handler: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(serde_json::Value, DateTime<Utc>) -> Fut,
    Fut: Future<Output = Result<O, FinopsError>>,
    O: Serialize,
{
    let handler = &handler;
    // The invocation's own trace (not the process-wide `_X_AMZN_TRACE_ID`, which concurrent invocations share).
    let daemon = std::env::var("AWS_XRAY_DAEMON_ADDRESS").ok().and_then(|a| a.parse().ok());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        match (event.context.xray_trace_id.clone(), daemon) {
            (Some(header), Some(daemon)) => {
                crate::xray::traced(crate::xray::TraceContext { header, daemon }, handler(event.payload, Utc::now()))
                    .await
            }
            _ => handler(event.payload, Utc::now()).await,
        }
    }))
    .await
}
