//! The Converse backend: tools generated from openapi-schema.yaml, a tool-use request executed in-process against
//! moto, the tool result going back, the final JSON; and a model that never stops calling tools.
#![recursion_limit = "256"]

use std::time::Duration;

use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseMetrics, ConverseOutput as ConverseOutputType, Message, StopReason,
    TokenUsage, ToolResultContentBlock, ToolUseBlock,
};
use aws_sdk_bedrockruntime::Client;
use chrono::Utc;
use finops_agent_tools::ReadTools;
use finops_core::criteria::{CriteriaPreset, IdleCriteria};
use finops_core::LookbackWindow;
use finops_reasoning::converse::{from_document, to_document, tool_defs, BedrockConverse, OPENAPI};
use finops_reasoning::{Model, ReasonerError};
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::{aws_sdk_bedrockruntime, aws_sdk_cloudwatch, aws_sdk_ec2, mock, mock_client, moto, RuleMode};
use serde_json::json;

fn reply(content: Vec<ContentBlock>, stop: StopReason) -> ConverseOutput {
    ConverseOutput::builder()
        .output(ConverseOutputType::Message(
            Message::builder().role(ConversationRole::Assistant).set_content(Some(content)).build().unwrap(),
        ))
        .stop_reason(stop)
        .usage(TokenUsage::builder().input_tokens(100).output_tokens(20).total_tokens(120).build().unwrap())
        .metrics(ConverseMetrics::builder().latency_ms(5).build().unwrap())
        .build()
        .unwrap()
}

fn tool_use(id: &str) -> ContentBlock {
    ContentBlock::ToolUse(
        ToolUseBlock::builder()
            .tool_use_id("tool-1")
            .name("get_utilisation")
            .input(to_document(&json!({"instance_id": id, "days": 14})))
            .build()
            .unwrap(),
    )
}

#[test]
fn tools_come_from_the_read_only_operations_of_the_schema() {
    let defs = tool_defs(OPENAPI, true).unwrap();
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["analyse_underutilised_resources", "estimate_savings", "get_instance_details", "get_utilisation"]
    );
    let utilisation = defs.iter().find(|d| d.name == "get_utilisation").unwrap();
    assert_eq!(utilisation.path, "/instances/{instance_id}/utilisation");
    assert_eq!(utilisation.schema["required"], json!(["instance_id"]));
    assert_eq!(utilisation.schema["properties"]["days"]["type"], "integer");
    let all = tool_defs(OPENAPI, false).unwrap();
    assert_eq!(all.len(), 6, "stop_resource and request_termination_approval exist but are not given to Converse");
    let v = json!({"a": [1, -2, 2.5, "x", null, true]});
    assert_eq!(from_document(&to_document(&v)), v);
}

#[tokio::test]
async fn a_tool_call_runs_in_process_and_its_result_goes_back() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let ec2_client = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&ec2_client).await;
    let id = launch(&ec2_client, &ami, &InstanceSpec::new("dev-idle", "t3.large"), 1).await.remove(0);
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    put_daily_metrics(&aws_sdk_cloudwatch::Client::new(&config), &id, &window, |_| Some(DayProfile::idle())).await;

    let tools = ReadTools::from_sdk(
        &config,
        false,
        vec!["ap-southeast-2".into()],
        IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
    );

    let final_answer = format!(
        r#"{{"recommendations":[{{"instanceId":"{id}","action":"snapshot_and_stop","confidence":0.9,"justification":"idle"}}]}}"#
    );
    let first_id = id.clone();
    let first = mock!(Client::converse)
        .match_requests(|r| {
            r.messages().len() == 1
                && r.tool_config().is_some_and(|t| t.tools().len() == 4)
                && r.model_id() == Some("anthropic.claude-test")
        })
        .then_output(move || {
            reply(vec![ContentBlock::Text("Let me check.".into()), tool_use(&first_id)], StopReason::ToolUse)
        });
    let answer = final_answer.clone();
    let second = mock!(Client::converse)
        .match_requests(|r| {
            // The tool's real answer (from moto, through the action-group handler) is in the last message.
            r.messages().len() == 3
                && r.messages()[2].content().iter().any(|c| {
                    c.as_tool_result().is_ok_and(|t| {
                        t.tool_use_id() == "tool-1"
                            && t.content().iter().any(|b| matches!(b, ToolResultContentBlock::Json(d) if from_document(d)["utilisation"]["assessment"]["verdict"] == "Idle"))
                    })
                })
        })
        .then_output(move || reply(vec![ContentBlock::Text(answer.clone())], StopReason::EndTurn));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&first, &second]);
    let converse = BedrockConverse::new(client, "anthropic.claude-test", tools).unwrap();
    let reply = converse.ask("run-c", "prompt").await.expect("final answer");
    assert_eq!(reply.text, final_answer);
    assert_eq!(first.num_calls(), 1);
    assert_eq!(second.num_calls(), 1);
    assert!(reply.trace[0].starts_with("tool call: get_utilisation"), "{:?}", reply.trace);
}

#[tokio::test]
async fn a_model_that_never_stops_calling_tools_is_cut_off() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let tools = ReadTools::from_sdk(
        &config,
        false,
        vec!["ap-southeast-2".into()],
        IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
    );
    let looping =
        mock!(Client::converse).then_output(|| reply(vec![tool_use("i-0000000000000000a")], StopReason::ToolUse));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&looping]);
    let mut converse = BedrockConverse::new(client, "m", tools).unwrap();
    converse.max_turns = 3;
    converse.time_limit = Duration::from_secs(30);
    let err = converse.ask("run-c", "prompt").await.unwrap_err();
    assert!(matches!(err, ReasonerError::Failed(ref m) if m.contains("after 3 turns")), "{err}");
    assert_eq!(looping.num_calls(), 3);
}
