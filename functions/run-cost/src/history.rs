//! The Step Functions adapter: GetExecutionHistory, every page.

use aws_sdk_sfn::types::HistoryEvent as SdkEvent;
use finops_aws::FinopsError;

use crate::{ExecutionHistory, HistoryEvent};

pub struct SdkExecutionHistory {
    client: aws_sdk_sfn::Client,
}

impl SdkExecutionHistory {
    pub fn new(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }
}

impl ExecutionHistory for SdkExecutionHistory {
    async fn events(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>, FinopsError> {
        let mut events = Vec::new();
        let mut pages = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .include_execution_data(false)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("StepFunctions", "GetExecutionHistory", e))?;
            events.extend(page.events().iter().map(from_sdk));
        }
        Ok(events)
    }
}

fn from_sdk(e: &SdkEvent) -> HistoryEvent {
    let scheduled = e.task_scheduled_event_details();
    let function = scheduled
        .filter(|d| d.resource_type() == "lambda")
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d.parameters()).ok())
        .and_then(|p| p.get("FunctionName").and_then(|f| f.as_str()).map(str::to_owned));
    HistoryEvent {
        id: e.id(),
        previous_id: e.previous_event_id(),
        kind: e.r#type().as_str().to_owned(),
        timestamp_ms: e.timestamp().to_millis().unwrap_or(0),
        resource: scheduled.map(|d| d.resource().to_owned()),
        function,
        lambda: scheduled.is_some_and(|d| d.resource_type() == "lambda"),
        state: e.state_entered_event_details().map(|d| d.name().to_owned()),
    }
}
