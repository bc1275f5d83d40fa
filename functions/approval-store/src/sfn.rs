//! Step Functions as the approvals meet it: handing a decision to the waiting task (SendTaskSuccess), and starting
//! the execution that undoes an action once a person confirmed its undo.

use std::future::Future;

use aws_config::SdkConfig;
use finops_aws::FinopsError;

use crate::ApprovalRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    Accepted,
    /// The waiting task timed out: the workflow already took the "no action" path.
    TimedOut,
    /// Unknown or already completed task.
    Invalid,
}

/// Hands a decision to the waiting task. `Err(FinopsError::Throttled)` means Step Functions refused the call, so the
/// task did not get it; any other error means it may have (an answer lost after Step Functions took it).
pub trait TaskCallback: Send + Sync {
    fn send_success(
        &self,
        task_token: &str,
        output: &str,
    ) -> impl Future<Output = Result<CallbackResult, FinopsError>> + Send;
}

pub struct SfnCallback {
    client: aws_sdk_sfn::Client,
}

/// Attempts of a throttled SendTaskSuccess (refused, so trying again cannot deliver it twice).
const CALLBACK_ATTEMPTS: u32 = 4;

impl SfnCallback {
    /// SendTaskSuccess is not retried by the SDK: after an answer lost once Step Functions took the decision, the
    /// retry meets a task that no longer waits and reads as "timed out", and the callback would then undo a
    /// decision the workflow acted on (found by `make chaos`). Only a throttled call is tried again, here.
    pub fn new(config: &SdkConfig) -> Self {
        let conf = aws_sdk_sfn::config::Builder::from(config)
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
            .build();
        Self { client: aws_sdk_sfn::Client::from_conf(conf) }
    }
}

impl TaskCallback for SfnCallback {
    async fn send_success(&self, task_token: &str, output: &str) -> Result<CallbackResult, FinopsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.client.send_task_success().task_token(task_token).output(output).send().await {
                Ok(_) => Ok(CallbackResult::Accepted),
                Err(e) => match e.as_service_error() {
                    Some(se) if se.is_task_timed_out() => Ok(CallbackResult::TimedOut),
                    Some(se) if se.is_task_does_not_exist() || se.is_invalid_token() => Ok(CallbackResult::Invalid),
                    _ => Err(FinopsError::from_sdk("StepFunctions", "SendTaskSuccess", e)),
                },
            };
            match result {
                Err(FinopsError::Throttled { .. }) if attempt < CALLBACK_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// Starts the undo of a decided undo record: an execution of the state machine that ran the action, with the
/// undo entry. Its name is the undo id's, so a second start of the same undo starts nothing.
pub trait UndoStarter: Send + Sync {
    /// The execution's ARN. An error that is not [`FinopsError::outcome_unknown`] (throttled, access denied, any
    /// other refusal) means it was not started; an unknown outcome may have started it.
    fn start_undo(&self, record: &ApprovalRecord) -> impl Future<Output = Result<String, FinopsError>> + Send;
}

/// The state machine of an execution (`...:execution:<machine>:<name>` is `...:stateMachine:<machine>`).
pub fn state_machine_of(execution_arn: &str) -> Result<String, FinopsError> {
    let bad = || FinopsError::InvalidInput(format!("{execution_arn:?} is not a Step Functions execution ARN"));
    let (machine, _name) = execution_arn.rsplit_once(':').ok_or_else(bad)?;
    let (prefix, machine_name) = machine.split_once(":execution:").ok_or_else(bad)?;
    if !prefix.starts_with("arn:") || machine_name.is_empty() || machine_name.contains(':') {
        return Err(bad());
    }
    Ok(format!("{prefix}:stateMachine:{machine_name}"))
}

/// The name of the execution that undoes `undo_id` (one per undo record).
pub fn undo_execution_name(undo_id: &str) -> String {
    format!("undo-{undo_id}")
}

/// The undo execution's input for a decided undo record.
pub fn undo_input(record: &ApprovalRecord) -> finops_core::steps::UndoExecutionInput {
    finops_core::steps::UndoExecutionInput {
        entry: "undo".into(),
        undo: finops_core::steps::UndoOrder {
            undo_id: record.approval_id.clone(),
            run_id: record.run_id.clone(),
            proposal: finops_core::steps::Target::of(&record.proposal),
        },
    }
}

impl UndoStarter for SfnCallback {
    async fn start_undo(&self, record: &ApprovalRecord) -> Result<String, FinopsError> {
        let machine = state_machine_of(&record.execution_arn)?;
        let name = undo_execution_name(&record.approval_id);
        let input = serde_json::to_string(&undo_input(record)).expect("plain data serialises");
        match self.client.start_execution().state_machine_arn(&machine).name(&name).input(input).send().await {
            Ok(out) => Ok(out.execution_arn().to_owned()),
            // Started before (a retried POST after a lost answer): the one undo execution is running or done.
            Err(e) if e.as_service_error().is_some_and(|se| se.is_execution_already_exists()) => {
                Ok(format!("{}:{name}", machine.replacen(":stateMachine:", ":execution:", 1)))
            }
            Err(e) => Err(FinopsError::from_sdk("StepFunctions", "StartExecution", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ApprovalRecord {
        let proposal = serde_json::from_value(serde_json::json!({
            "resourceId": "i-1", "region": "ap-southeast-2", "resourceType": "t3.large", "action": "snapshot-and-stop",
            "confidence": 1.0, "justification": "idle", "backend": "rules", "priceSource": "embedded",
            "evidence": [], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z"
        }))
        .unwrap();
        let audience = finops_core::organization::Audience {
            approvers: vec!["ops@example.com".into()],
            because: "the deployment's approvers".into(),
            slack_channel: None,
            slack_users: vec![],
        };
        ApprovalRecord::pending("a", proposal, "run-1", "arn", audience, 0, 1)
    }

    #[test]
    fn an_undo_starts_an_execution_of_the_machine_that_acted() {
        let arn = "arn:aws:states:us-east-1:123456789012:execution:finops-workflow:run-2026-11-30";
        assert_eq!(
            state_machine_of(arn).unwrap(),
            "arn:aws:states:us-east-1:123456789012:stateMachine:finops-workflow"
        );
        for bad in ["", "run-1", "arn:aws:states:us-east-1:1:stateMachine:m", "arn:aws:states:us-east-1:1:execution::x"]
        {
            assert!(matches!(state_machine_of(bad), Err(FinopsError::InvalidInput(_))), "{bad}");
        }
        assert_eq!(undo_execution_name("00112233445566778899aabbccddeeff").len(), 37);
    }

    #[test]
    fn an_undo_input_of_the_hubs_own_resource_names_no_account() {
        // Found by `make demo`: `"account": null` is refused by the actions step, which reads a present account
        // strictly.
        let input = serde_json::to_value(undo_input(&record())).unwrap();
        assert!(input["undo"]["proposal"].get("account").is_none(), "{input}");
        assert_eq!(input["entry"], "undo");
    }
}
