//! The `converse` backend: Bedrock Converse with tool use, for accounts that cannot create Bedrock Agents (closed
//! to new customers on 2026-07-30). The tools are generated from the same `openapi-schema.yaml` operations as the
//! agent's action group, only the read-only ones, and executed in-process through the action-group handler; the
//! conversation has a bounded number of turns and a time limit.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, StopReason, SystemContentBlock, Tool,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use serde_json::{json, Map, Value};

use crate::retry::Retry;
use crate::{Model, ModelReply, ReasonerError, TokenUsage};

/// Output tokens per turn, thinking included (the answer itself is about 120 tokens per instance).
const MAX_TOKENS: i32 = 16_000;

/// The action group's schema, compiled in: tools and routes come from the same file the agent uses.
pub const OPENAPI: &str = include_str!("../../../openapi-schema.yaml");

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the tool's input object.
    pub schema: Value,
    pub method: String,
    pub path: String,
}

/// Tool definitions from an OpenAPI document; `read_only` keeps only GET operations.
pub fn tool_defs(openapi_yaml: &str, read_only: bool) -> Result<Vec<ToolDef>, String> {
    let doc: Value = serde_yaml::from_str(openapi_yaml).map_err(|e| format!("openapi schema: {e}"))?;
    let mut defs = Vec::new();
    for (path, methods) in doc["paths"].as_object().ok_or("openapi schema: no paths")? {
        for (method, op) in methods.as_object().ok_or("openapi schema: bad path item")? {
            if read_only && method != "get" {
                continue;
            }
            let mut properties = Map::new();
            let mut required = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().ok_or("parameter without name")?.to_owned();
                let mut schema = p["schema"].clone();
                schema["description"] = p["description"].clone();
                if p["required"].as_bool().unwrap_or(false) {
                    required.push(Value::String(name.clone()));
                }
                properties.insert(name, schema);
            }
            if let Some(body) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
                for (k, v) in body.get("properties").and_then(Value::as_object).into_iter().flatten() {
                    properties.insert(k.clone(), v.clone());
                }
                required.extend(body.get("required").and_then(Value::as_array).cloned().unwrap_or_default());
            }
            defs.push(ToolDef {
                name: op["operationId"].as_str().ok_or("operation without operationId")?.to_owned(),
                description: op["description"]
                    .as_str()
                    .or(op["summary"].as_str())
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                schema: json!({"type": "object", "properties": properties, "required": required}),
                method: method.to_uppercase(),
                path: path.clone(),
            });
        }
    }
    Ok(defs)
}

pub fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Document::Number(Number::PosInt(u)),
            (None, Some(i)) => Document::Number(Number::NegInt(i)),
            _ => Document::Number(Number::Float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect::<HashMap<_, _>>())
        }
    }
}

pub fn from_document(d: &Document) -> Value {
    match d {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => json!(u),
        Document::Number(Number::NegInt(i)) => json!(i),
        Document::Number(Number::Float(f)) => json!(f),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(from_document).collect()),
        Document::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), from_document(v))).collect()),
    }
}

/// Runs one tool (in-process) and returns its JSON answer.
pub trait ToolRunner: Send + Sync {
    fn run(&self, tool: &ToolDef, input: &Value, session_id: &str) -> impl Future<Output = Value> + Send;
}

pub struct BedrockConverse<T> {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    tools: Vec<ToolDef>,
    runner: T,
    pub max_turns: usize,
    pub time_limit: Duration,
    pub retry: Retry,
}

impl<T: ToolRunner> BedrockConverse<T> {
    pub fn new(client: aws_sdk_bedrockruntime::Client, model_id: impl Into<String>, runner: T) -> Result<Self, String> {
        Ok(Self {
            client,
            model_id: model_id.into(),
            tools: tool_defs(OPENAPI, true)?,
            runner,
            max_turns: 8,
            time_limit: Duration::from_secs(240),
            retry: Retry::default(),
        })
    }

    pub fn tools(&self) -> &[ToolDef] {
        &self.tools
    }

    fn tool_config(&self) -> Result<ToolConfiguration, ReasonerError> {
        let tools = self
            .tools
            .iter()
            .map(|t| {
                ToolSpecification::builder()
                    .name(&t.name)
                    .description(&t.description)
                    .input_schema(ToolInputSchema::Json(to_document(&t.schema)))
                    .build()
                    .map(Tool::ToolSpec)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReasonerError::Failed(format!("tool spec: {e}")))?;
        ToolConfiguration::builder()
            .set_tools(Some(tools))
            .build()
            .map_err(|e| ReasonerError::Failed(format!("tool config: {e}")))
    }

    /// One Converse call: the assistant's message and why it stopped.
    async fn converse_once(
        &self,
        messages: &[Message],
        tools: &ToolConfiguration,
    ) -> Result<(Message, StopReason, TokenUsage), ReasonerError> {
        let result = self
            .client
            .converse()
            .model_id(&self.model_id)
            .set_messages(Some(messages.to_vec()))
            .system(SystemContentBlock::Text(crate::prompt::AGENT_INSTRUCTION.trim().to_owned()))
            .tool_config(tools.clone())
            // No temperature: current Claude models think before they answer, and thinking refuses a temperature.
            // The budget covers the thinking as well as the answer; the policy step decides whatever this says.
            .inference_config(InferenceConfiguration::builder().max_tokens(MAX_TOKENS).build())
            .send()
            .await;
        match result {
            Ok(out) => {
                let message = out
                    .output()
                    .and_then(|o| o.as_message().ok())
                    .cloned()
                    .ok_or_else(|| ReasonerError::Failed("Converse returned no message".into()))?;
                let usage = out.usage().map_or(TokenUsage::default(), |u| TokenUsage {
                    input_tokens: u64::try_from(u.input_tokens()).unwrap_or(0),
                    output_tokens: u64::try_from(u.output_tokens()).unwrap_or(0),
                });
                Ok((message, out.stop_reason().clone(), usage))
            }
            Err(e) => {
                let throttled = e.as_service_error().map(|s| s.is_throttling_exception()).unwrap_or(false);
                let message: String =
                    aws_smithy_types::error::display::DisplayErrorContext(&e).to_string().chars().take(300).collect();
                Err(if throttled { ReasonerError::Throttled(message) } else { ReasonerError::Failed(message) })
            }
        }
    }

    async fn conversation(&self, session_id: &str, prompt: &str) -> Result<ModelReply, ReasonerError> {
        let tools = self.tool_config()?;
        let user = |content: Vec<ContentBlock>| {
            Message::builder()
                .role(ConversationRole::User)
                .set_content(Some(content))
                .build()
                .map_err(|e| ReasonerError::Failed(e.to_string()))
        };
        let mut messages = vec![user(vec![ContentBlock::Text(prompt.to_owned())])?];
        let mut trace = Vec::new();
        let mut usage = TokenUsage::default();
        // The conversation's time limit is enforced around it (`ask`); each turn retries throttling within it.
        let deadline = tokio::time::Instant::now() + self.time_limit;
        for _ in 0..self.max_turns {
            let (message, stop, used) =
                self.retry.run(deadline, self.time_limit, || self.converse_once(&messages, &tools), &|_| {}).await?;
            usage.add(used);
            let tool_uses: Vec<_> = message.content().iter().filter_map(|c| c.as_tool_use().ok()).cloned().collect();
            messages.push(message.clone());
            if stop != StopReason::ToolUse || tool_uses.is_empty() {
                let text: String =
                    message.content().iter().filter_map(|c| c.as_text().ok()).map(String::as_str).collect();
                return Ok(ModelReply { text, trace_id: Some(session_id.to_owned()), trace, usage });
            }
            let mut results = Vec::new();
            for use_block in tool_uses {
                let input = from_document(use_block.input());
                trace.push(format!("tool call: {} {}", use_block.name(), input));
                let (answer, status) = match self.tools.iter().find(|t| t.name == use_block.name()) {
                    Some(tool) => (self.runner.run(tool, &input, session_id).await, ToolResultStatus::Success),
                    None => (json!({"error": format!("no such tool {}", use_block.name())}), ToolResultStatus::Error),
                };
                results.push(ContentBlock::ToolResult(
                    ToolResultBlock::builder()
                        .tool_use_id(use_block.tool_use_id())
                        .content(ToolResultContentBlock::Json(to_document(&answer)))
                        .status(status)
                        .build()
                        .map_err(|e| ReasonerError::Failed(e.to_string()))?,
                ));
            }
            messages.push(user(results)?);
        }
        Err(ReasonerError::Failed(format!("no final answer after {} turns", self.max_turns)))
    }
}

impl<T: ToolRunner> Model for BedrockConverse<T> {
    fn name(&self) -> &str {
        "converse"
    }

    async fn ask(&self, session_id: &str, prompt: &str) -> Result<ModelReply, ReasonerError> {
        tokio::time::timeout(self.time_limit, self.conversation(session_id, prompt))
            .await
            .unwrap_or(Err(ReasonerError::TimedOut(self.time_limit.as_secs())))
    }
}

/// The read-only tools of the action group as the tool runner: the same code answers the agent and the Converse
/// loop, and the loop cannot reach anything that asks for approval or changes an instance.
impl<S, M, P> ToolRunner for finops_agent_tools::ReadTools<S, M, P>
where
    S: finops_inventory::InventorySource + finops_inventory::InstanceLookup,
    M: finops_metrics::MetricsApi,
    P: finops_aws::PriceListApi,
{
    async fn run(&self, tool: &ToolDef, input: &Value, session_id: &str) -> Value {
        tool_answer(&self.handle(tool_event(tool, input, session_id), chrono::Utc::now()).await)
    }
}

/// The read-only tools of every account the run covers (an organization run): an instance is read in the account
/// its `account_id` names.
impl<S, M, P, F> ToolRunner for finops_agent_tools::AccountReadTools<S, M, P, F>
where
    S: finops_inventory::InventorySource + finops_inventory::InstanceLookup,
    M: finops_metrics::MetricsApi,
    P: finops_aws::PriceListApi,
    F: finops_agent_tools::MemberReadTools<Tools = finops_agent_tools::ReadTools<S, M, P>>,
{
    async fn run(&self, tool: &ToolDef, input: &Value, session_id: &str) -> Value {
        tool_answer(&self.handle(tool_event(tool, input, session_id), chrono::Utc::now()).await)
    }
}

/// A tool call as the action-group event the tools take (every parameter as a string, as Bedrock sends them).
fn tool_event(tool: &ToolDef, input: &Value, session_id: &str) -> Value {
    let parameters: Vec<Value> = input
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| json!({"name": k, "type": "string", "value": v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())}))
        .collect();
    json!({
        "messageVersion": "1.0", "actionGroup": "converse", "apiPath": tool.path, "httpMethod": tool.method,
        "parameters": parameters, "sessionId": session_id
    })
}

/// The JSON body of the tools' action-group response.
fn tool_answer(response: &Value) -> Value {
    let body = response["response"]["responseBody"]["application/json"]["body"].as_str().unwrap_or("{}");
    serde_json::from_str(body).unwrap_or_else(|_| json!({"error": "tool answered with something that is not JSON"}))
}
