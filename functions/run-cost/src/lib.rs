//! The run-cost step: what this run spent, priced at list prices ([`finops_core::run_cost`]).
//!
//! Lambda time and state transitions come from the execution's own history (GetExecutionHistory, read-only): each
//! Lambda task's time from TaskStarted to its end, at the function's configured memory; each state entered is a
//! transition. CloudWatch metrics requested, Price List calls and model tokens come from the steps that spent them.
//! The step runs just before the report, so the transitions after it (report, ledger) are added as a constant.

use std::collections::HashMap;
use std::future::Future;

use finops_aws::FinopsError;
use finops_core::run_cost::{Architecture, FunctionUsage, ListPrices, RunCost, RunUsage};
use finops_core::steps::{RunCostOutput, RunCostRequest};
use finops_core::ConfigError;

pub mod history;

pub use history::SdkExecutionHistory;

/// States entered after this step on a completed run: "Prove Savings", "Report Run" and "Record Run In Ledger"
/// (a test walks `statemachine/finops.asl.json` from "Cost The Run" to the end to keep this true).
pub const STATES_AFTER_COSTING: u64 = 3;
/// Memory assumed for a function the configuration does not list (the largest the CDK app gives any step).
pub const UNLISTED_FUNCTION_MEMORY_MB: u32 = 1024;
/// A `.waitForTaskToken` task's Lambda returns at once and the wait is not billed; without a TaskSubmitted event
/// marking the return, its invocation is counted as this long.
pub const WAIT_TASK_INVOKE_MS: u64 = 1_000;

/// One event of an execution's history, free of SDK types.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub id: i64,
    pub previous_id: i64,
    pub kind: String,
    pub timestamp_ms: i64,
    /// TaskScheduled: the integration (`lambda:invoke`, `lambda:invoke.waitForTaskToken`, `sns:publish`, ...).
    pub resource: Option<String>,
    /// TaskScheduled of a Lambda: the function's name or ARN, from the task's parameters when the history has them.
    pub function: Option<String>,
    /// TaskScheduled: whether the integration is Lambda's.
    pub lambda: bool,
    /// A state's entered event: the state's name.
    pub state: Option<String>,
}

/// Step Functions, narrowed to reading one execution's history.
pub trait ExecutionHistory: Send + Sync {
    fn events(&self, execution_arn: &str) -> impl Future<Output = Result<Vec<HistoryEvent>, FinopsError>> + Send;
}

/// Memory per function and the functions' architecture (`FINOPS_FUNCTION_MEMORY`, `FINOPS_LAMBDA_ARCHITECTURE`).
#[derive(Debug, Clone, PartialEq)]
pub struct CostConfig {
    /// Memory in MB by function name (an ARN's last part is its name).
    pub memory_mb: HashMap<String, u32>,
    pub architecture: Architecture,
}

impl CostConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// `FINOPS_FUNCTION_MEMORY`: a JSON object of function name to MB (the CDK app writes it), plus this function's
    /// own from Lambda's `AWS_LAMBDA_FUNCTION_NAME` and `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`;
    /// `FINOPS_LAMBDA_ARCHITECTURE`: `arm64` (default) or `x86_64`.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let memory_mb = match vars.get("FINOPS_FUNCTION_MEMORY").filter(|v| !v.trim().is_empty()) {
            Some(v) => serde_json::from_str(v).map_err(|e| {
                ConfigError::new("FINOPS_FUNCTION_MEMORY", format!("not a JSON object of function name to MB: {e}"))
            })?,
            None => HashMap::new(),
        };
        let mut memory_mb: HashMap<String, u32> = memory_mb;
        // Lambda tells a function its own name and memory; the deployment's list cannot name this function (a cycle).
        if let (Some(name), Some(mb)) = (
            vars.get("AWS_LAMBDA_FUNCTION_NAME"),
            vars.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.parse().ok()),
        ) {
            memory_mb.entry(name.clone()).or_insert(mb);
        }
        let architecture = match vars.get("FINOPS_LAMBDA_ARCHITECTURE").filter(|v| !v.trim().is_empty()) {
            Some(v) => Architecture::parse(v).map_err(|m| ConfigError::new("FINOPS_LAMBDA_ARCHITECTURE", m))?,
            None => Architecture::Arm64,
        };
        Ok(Self { memory_mb, architecture })
    }

    fn memory_of(&self, function: &str) -> u32 {
        let name = function_name(function);
        self.memory_mb.get(name).copied().unwrap_or(UNLISTED_FUNCTION_MEMORY_MB)
    }
}

/// `arn:aws:lambda:region:account:function:name[:qualifier]` or a bare name, to the name.
pub fn function_name(function: &str) -> &str {
    match function.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        _ => function,
    }
}

/// Lambda usage per function and state transitions, from an execution's history.
pub fn usage_from_history(events: &[HistoryEvent], config: &CostConfig) -> (Vec<FunctionUsage>, u64) {
    let by_id: HashMap<i64, &HistoryEvent> = events.iter().map(|e| (e.id, e)).collect();
    let transitions = events.iter().filter(|e| e.kind.ends_with("StateEntered")).count() as u64;
    let mut functions: Vec<FunctionUsage> = Vec::new();
    for end in events.iter().filter(|e| matches!(e.kind.as_str(), "TaskSucceeded" | "TaskFailed" | "TaskTimedOut")) {
        // TaskScheduled -> TaskStarted [-> TaskSubmitted] -> end, each naming the one before.
        let mut started = by_id.get(&end.previous_id).copied();
        let mut submitted = None;
        if let Some(s) = started.filter(|s| s.kind == "TaskSubmitted") {
            submitted = Some(s);
            started = by_id.get(&s.previous_id).copied();
        }
        let Some(started) = started.filter(|s| s.kind == "TaskStarted") else { continue };
        let Some(scheduled) = by_id.get(&started.previous_id).filter(|s| s.kind == "TaskScheduled") else { continue };
        if !scheduled.lambda {
            continue;
        }
        // Without the task's parameters (a history read without execution data may leave them out), the task is
        // named after its state and priced at the largest memory: an estimate that errs high.
        let name = match scheduled.function.as_deref() {
            Some(function) => function_name(function).to_owned(),
            None => format!("state {}", entered_state(scheduled, &by_id).unwrap_or("?")),
        };
        let waits = scheduled.resource.as_deref().is_some_and(|r| r.ends_with(".waitForTaskToken"));
        let duration_ms = match (waits, submitted) {
            (true, Some(s)) => (s.timestamp_ms - started.timestamp_ms).max(1) as u64,
            (true, None) => WAIT_TASK_INVOKE_MS,
            (false, _) => (end.timestamp_ms - started.timestamp_ms).max(1) as u64,
        };
        match functions.iter_mut().find(|f| f.function == name) {
            Some(f) => {
                f.invocations += 1;
                f.duration_ms += duration_ms;
            }
            None => functions.push(FunctionUsage {
                memory_mb: config.memory_of(&name),
                function: name,
                invocations: 1,
                duration_ms,
            }),
        }
    }
    functions.sort_by(|a, b| a.function.cmp(&b.function));
    (functions, transitions + STATES_AFTER_COSTING)
}

/// The name of the state a task event belongs to: its chain of previous events leads back to the state's entry.
fn entered_state<'a>(event: &'a HistoryEvent, by_id: &HashMap<i64, &'a HistoryEvent>) -> Option<&'a str> {
    let mut at = event;
    for _ in 0..64 {
        if at.kind.ends_with("StateEntered") {
            return at.state.as_deref();
        }
        at = by_id.get(&at.previous_id)?;
    }
    None
}

/// The handler.
pub async fn handle<H: ExecutionHistory>(
    event: serde_json::Value,
    history: &H,
    config: &CostConfig,
) -> Result<RunCostOutput, FinopsError> {
    let request: RunCostRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!(
            "run-cost expects {{runId, executionArn, instanceCount, metricsRequested, priceListCalls, modelUsage}}: {e}"
        ))
    })?;
    if !request.execution_arn.starts_with("arn:") || !request.execution_arn.contains(":execution:") {
        return Err(FinopsError::InvalidInput(format!("{:?} is not an execution ARN", request.execution_arn)));
    }
    let events = history.events(&request.execution_arn).await?;
    let (functions, state_transitions) = usage_from_history(&events, config);
    let usage = RunUsage {
        functions,
        state_transitions,
        metrics_requested: request.metrics_requested,
        price_list_calls: request.price_list_calls,
        model_input_tokens: request.model_usage.input_tokens,
        model_output_tokens: request.model_usage.output_tokens,
    };
    let cost = RunCost::of(&usage, config.architecture, request.instance_count, &ListPrices::LIST);
    let summary = cost.summary(&usage);
    tracing::info!(run_id = request.run_id, total_usd = cost.total_usd, "run costed");
    Ok(RunCostOutput { cost, usage, summary })
}

/// The step as the Lambda and the local runner build it.
pub struct RunCostStep {
    history: SdkExecutionHistory,
    config: CostConfig,
}

impl RunCostStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: CostConfig) -> Self {
        Self { history: SdkExecutionHistory::new(aws_sdk_sfn::Client::new(sdk)), config }
    }

    pub async fn handle(&self, event: serde_json::Value) -> Result<RunCostOutput, FinopsError> {
        handle(event, &self.history, &self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, previous_id: i64, kind: &str, at: i64) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_id,
            kind: kind.into(),
            timestamp_ms: at,
            resource: None,
            function: None,
            lambda: false,
            state: None,
        }
    }

    fn scheduled(id: i64, previous_id: i64, resource: &str, function: &str, at: i64) -> HistoryEvent {
        HistoryEvent {
            resource: Some(resource.into()),
            function: Some(function.into()),
            lambda: true,
            ..event(id, previous_id, "TaskScheduled", at)
        }
    }

    /// The constant's oracle is the state machine, not this crate: the states a completed run enters after "Cost The
    /// Run", following each state's `Next` (the success path) until the one that ends the execution.
    #[test]
    fn the_states_after_costing_are_those_the_state_machine_enters_after_it() {
        let asl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../statemachine/finops.asl.json");
        let asl: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(asl).unwrap()).unwrap();
        let states = &asl["States"];
        assert!(states["Cost The Run"].is_object(), "the state machine has no \"Cost The Run\"");
        let mut after = Vec::new();
        let mut state = &states["Cost The Run"];
        while state["End"] != serde_json::Value::Bool(true) {
            let next = state["Next"].as_str().expect("a state that does not end has a Next");
            after.push(next.to_owned());
            assert!(after.len() < 50, "a loop after costing: {after:?}");
            state = &states[next];
        }
        assert_eq!(after, ["Prove Savings", "Report Run", "Record Run In Ledger"]);
        assert_eq!(STATES_AFTER_COSTING, after.len() as u64);
    }
    fn config() -> CostConfig {
        CostConfig::from_vars([(
            "FINOPS_FUNCTION_MEMORY".to_owned(),
            r#"{"finops-metrics": 1024, "finops-request-approval": 256}"#.to_owned(),
        )])
        .unwrap()
    }

    const METRICS: &str = "arn:aws:lambda:us-east-1:123456789012:function:finops-metrics";

    #[test]
    fn lambda_time_is_started_to_end_at_the_functions_memory() {
        let events = vec![
            event(1, 0, "ExecutionStarted", 0),
            event(2, 1, "TaskStateEntered", 10),
            scheduled(3, 2, "invoke", METRICS, 11),
            event(4, 3, "TaskStarted", 20),
            event(5, 4, "TaskFailed", 520),
            // The retry.
            scheduled(6, 5, "invoke", METRICS, 1_600),
            event(7, 6, "TaskStarted", 1_610),
            event(8, 7, "TaskSucceeded", 3_110),
            event(9, 8, "TaskStateExited", 3_111),
            event(10, 9, "PassStateEntered", 3_112),
            // An SNS publish: not a Lambda, not counted.
            HistoryEvent { resource: Some("publish".into()), ..event(11, 10, "TaskScheduled", 3_200) },
            event(12, 11, "TaskStarted", 3_210),
            event(13, 12, "TaskSucceeded", 3_400),
        ];
        let (functions, transitions) = usage_from_history(&events, &config());
        assert_eq!(
            functions,
            vec![FunctionUsage {
                function: "finops-metrics".into(),
                invocations: 2,
                duration_ms: 2_000,
                memory_mb: 1024
            }]
        );
        // Two states entered in the history, and the three after costing (Prove Savings, Report Run, the ledger).
        assert_eq!(transitions, 5);
    }

    #[test]
    fn a_lambda_task_without_parameters_is_named_after_its_state_at_the_largest_memory() {
        let entered = HistoryEvent { state: Some("Check Policy".into()), ..event(1, 0, "TaskStateEntered", 0) };
        let mut first = scheduled(2, 1, "invoke", METRICS, 1);
        first.function = None;
        let mut retry = scheduled(5, 4, "invoke", METRICS, 1);
        retry.function = None;
        let events = vec![
            entered,
            first,
            event(3, 2, "TaskStarted", 10),
            event(4, 3, "TaskFailed", 110),
            retry,
            event(6, 5, "TaskStarted", 200),
            event(7, 6, "TaskSucceeded", 300),
        ];
        let (functions, _) = usage_from_history(&events, &config());
        assert_eq!(
            functions,
            vec![FunctionUsage {
                function: "state Check Policy".into(),
                invocations: 2,
                duration_ms: 200,
                memory_mb: UNLISTED_FUNCTION_MEMORY_MB
            }]
        );
    }

    #[test]
    fn an_approval_wait_is_not_lambda_time() {
        let function = "arn:aws:lambda:us-east-1:123456789012:function:finops-request-approval:live";
        let events = vec![
            scheduled(1, 0, "invoke.waitForTaskToken", function, 0),
            event(2, 1, "TaskStarted", 10),
            event(3, 2, "TaskSucceeded", 86_400_000),
            scheduled(4, 0, "invoke.waitForTaskToken", function, 0),
            event(5, 4, "TaskStarted", 10),
            event(6, 5, "TaskSubmitted", 310),
            event(7, 6, "TaskSucceeded", 3_600_000),
        ];
        let (functions, _) = usage_from_history(&events, &config());
        assert_eq!(functions.len(), 1);
        assert_eq!(functions[0].function, "finops-request-approval");
        assert_eq!((functions[0].invocations, functions[0].duration_ms), (2, WAIT_TASK_INVOKE_MS + 300));
        assert_eq!(functions[0].memory_mb, 256);
    }

    #[test]
    fn unlisted_functions_get_the_largest_memory_and_bad_configuration_is_named() {
        let events = vec![
            scheduled(1, 0, "invoke", "finops-other", 0),
            event(2, 1, "TaskStarted", 0),
            event(3, 2, "TaskSucceeded", 5),
        ];
        assert_eq!(usage_from_history(&events, &config()).0[0].memory_mb, UNLISTED_FUNCTION_MEMORY_MB);
        let e = CostConfig::from_vars([("FINOPS_FUNCTION_MEMORY".to_owned(), "metrics=1024".to_owned())]).unwrap_err();
        assert_eq!(e.key, "FINOPS_FUNCTION_MEMORY");
        let e = CostConfig::from_vars([("FINOPS_LAMBDA_ARCHITECTURE".to_owned(), "mips".to_owned())]).unwrap_err();
        assert_eq!(e.key, "FINOPS_LAMBDA_ARCHITECTURE");
        assert_eq!(CostConfig::from_vars([]).unwrap().architecture, Architecture::Arm64);
        let own = CostConfig::from_vars([
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), "finops-run-cost".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(), "256".to_owned()),
        ])
        .unwrap();
        assert_eq!(own.memory_of("arn:aws:lambda:us-east-1:1:function:finops-run-cost"), 256);
    }

    struct Fixed(Vec<HistoryEvent>);
    impl ExecutionHistory for Fixed {
        async fn events(&self, _execution_arn: &str) -> Result<Vec<HistoryEvent>, FinopsError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn the_handler_prices_the_run_and_refuses_bad_input() {
        let history = Fixed(vec![
            scheduled(1, 0, "invoke", METRICS, 0),
            event(2, 1, "TaskStarted", 0),
            event(3, 2, "TaskSucceeded", 2_000),
        ]);
        let good = serde_json::json!({
            "runId": "run-1",
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:finops:run-1",
            "instanceCount": 1000, "metricsRequested": 1500, "priceListCalls": 3,
            "modelUsage": {"inputTokens": 2000, "outputTokens": 400}
        });
        let out = handle(good.clone(), &history, &config()).await.unwrap();
        assert_eq!(out.usage.metrics_requested, 1500);
        assert_eq!(out.cost.cloudwatch_usd, 0.015);
        assert_eq!(out.cost.lambda_gb_seconds, 2.0);
        assert_eq!(out.usage.state_transitions, 3, "no state entered in this history, and the three after costing");
        assert!(out.summary.contains("2000 in, 400 out"), "{}", out.summary);
        let json = serde_json::to_value(&out).unwrap();
        assert!(json["totalUsd"].is_number() && json["summary"].is_string(), "{json}");
        let mut not_arn = good.clone();
        not_arn["executionArn"] = "run-1".into();
        let mut extra = good.clone();
        extra["shell"] = "rm -rf".into();
        for bad in [not_arn, extra, serde_json::json!({})] {
            let e = handle(bad, &history, &config()).await.unwrap_err();
            assert_eq!(e.error_name(), "Finops.InvalidInput");
        }
    }
}
