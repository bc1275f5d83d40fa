//! The InvokeAgent backend against recorded-style event streams (aws-smithy-mocks): chunks, a trace event, an
//! error mid-stream, throttling.

use std::time::Duration;

use aws_sdk_bedrockagentruntime::config::retry::RetryConfig;
use aws_sdk_bedrockagentruntime::Client;
use finops_reasoning::agent::BedrockAgent;
use finops_reasoning::{Model, ReasonerError};
use finops_testkit::eventstream::{chunk, event, exception, stream_response};
use finops_testkit::{aws_sdk_bedrockagentruntime, mock, mock_client, RuleMode};
use serde_json::json;

const ANSWER: &str = r#"{"recommendations":[{"instanceId":"i-a","action":"snapshot_and_stop","confidence":0.9,"justification":"idle"}]}"#;

fn agent(client: Client) -> BedrockAgent {
    let mut a = BedrockAgent::new(client, "AGENT123", "ALIAS456");
    a.retry.first_backoff = Duration::from_millis(1);
    a.time_limit = Duration::from_secs(10);
    a
}

fn rationale(text: &str) -> Vec<u8> {
    event(
        "trace",
        &json!({"agentId": "AGENT123", "sessionId": "run-1", "trace": {"orchestrationTrace": {"rationale": {"text": text}}}}),
    )
}

fn tool_call() -> Vec<u8> {
    event(
        "trace",
        &json!({"agentId": "AGENT123", "sessionId": "run-1", "trace": {"orchestrationTrace": {"invocationInput": {
            "invocationType": "ACTION_GROUP",
            "actionGroupInvocationInput": {"actionGroupName": "finops", "apiPath": "/instances/{instance_id}/utilisation", "verb": "get"}}}}}),
    )
}

#[tokio::test]
async fn chunks_are_joined_and_the_trace_is_kept() {
    let (a, b) = ANSWER.split_at(40);
    let frames = vec![rationale("Checking utilisation first."), tool_call(), chunk(a), chunk(b)];
    let rule = mock!(Client::invoke_agent)
        .match_requests(|r| {
            r.session_id() == Some("run-1") && r.enable_trace() == Some(true) && r.agent_alias_id() == Some("ALIAS456")
        })
        .then_http_response(move || stream_response(&frames));
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&rule]);
    let reply = agent(client).ask("run-1", "prompt").await.expect("reply");
    assert_eq!(reply.text, ANSWER);
    assert_eq!(reply.trace_id.as_deref(), Some("run-1"));
    assert_eq!(
        reply.trace,
        ["rationale: Checking utilisation first.", "tool call: get /instances/{instance_id}/utilisation"]
    );
}

#[tokio::test]
async fn a_throttle_mid_stream_is_retried_from_the_start() {
    let broken = vec![chunk("{\"recommend"), exception("throttlingException", "Rate exceeded")];
    let whole = vec![chunk(ANSWER)];
    let rule = mock!(Client::invoke_agent)
        .sequence()
        .http_response(move || stream_response(&broken))
        .http_response(move || stream_response(&whole))
        .build();
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&rule]);
    let reply = agent(client).ask("run-1", "prompt").await.expect("second attempt");
    assert_eq!(reply.text, ANSWER, "no half answer from the first attempt");
    assert_eq!(rule.num_calls(), 2);
}

#[tokio::test]
async fn persistent_throttling_and_other_errors_are_reasoner_errors() {
    let frames = vec![exception("throttlingException", "Rate exceeded")];
    let rule = mock!(Client::invoke_agent).sequence().http_response(move || stream_response(&frames)).times(3).build();
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&rule]);
    let err = agent(client).ask("run-1", "prompt").await.unwrap_err();
    assert!(matches!(err, ReasonerError::Throttled(_)), "{err}");
    assert_eq!(rule.num_calls(), 3);

    let frames = vec![chunk("partial"), exception("internalServerException", "boom")];
    let rule = mock!(Client::invoke_agent).then_http_response(move || stream_response(&frames));
    let client = mock_client!(aws_sdk_bedrockagentruntime, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::disabled()));
    let err = agent(client).ask("run-1", "prompt").await.unwrap_err();
    assert!(matches!(err, ReasonerError::Failed(_)), "{err}");
    assert_eq!(rule.num_calls(), 1, "only throttling is retried");
}
