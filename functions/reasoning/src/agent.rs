//! The `agent` backend: Bedrock InvokeAgent on an agent alias (the agent has the `openapi-schema.yaml` action
//! group). One session per run (session id = run id), trace enabled, the event stream consumed to the end: chunks
//! make the answer, trace events record the rationale and tool calls, an error mid-stream fails the attempt.
//! Throttling (before or during the stream) is retried with backoff; the whole call has a time limit.

use std::time::Duration;

use aws_sdk_bedrockagentruntime::types::{OrchestrationTrace, ResponseStream, Trace};
use aws_sdk_bedrockagentruntime::Client;

use crate::retry::Retry;
use crate::{Model, ModelReply, ReasonerError, TokenUsage};

pub struct BedrockAgent {
    client: Client,
    agent_id: String,
    alias_id: String,
    pub time_limit: Duration,
    pub retry: Retry,
}

impl BedrockAgent {
    pub fn new(client: Client, agent_id: impl Into<String>, alias_id: impl Into<String>) -> Self {
        Self {
            client,
            agent_id: agent_id.into(),
            alias_id: alias_id.into(),
            time_limit: Duration::from_secs(240),
            retry: Retry::default(),
        }
    }

    async fn once(
        &self,
        session_id: &str,
        prompt: &str,
        on_event: &(dyn Fn(StreamEvent<'_>) + Sync),
    ) -> Result<ModelReply, ReasonerError> {
        let mut out = self
            .client
            .invoke_agent()
            .agent_id(&self.agent_id)
            .agent_alias_id(&self.alias_id)
            .session_id(session_id)
            .input_text(prompt)
            .enable_trace(true)
            .send()
            .await
            .map_err(|e| classify(e.as_service_error().map(|s| s.is_throttling_exception()).unwrap_or(false), &e))?;
        let mut text = String::new();
        let mut trace = Vec::new();
        let mut usage = TokenUsage::default();
        loop {
            match out.completion.recv().await {
                Ok(Some(ResponseStream::Chunk(part))) => {
                    if let Some(bytes) = part.bytes() {
                        let piece = String::from_utf8_lossy(bytes.as_ref());
                        on_event(StreamEvent::Chunk(&piece));
                        text.push_str(&piece);
                    }
                }
                Ok(Some(ResponseStream::Trace(part))) => {
                    if let Some(used) = part.trace().and_then(tokens_of) {
                        usage.add(used);
                    }
                    if let Some(line) = part.trace().and_then(describe_trace) {
                        on_event(StreamEvent::Trace(&line));
                        trace.push(line);
                    }
                }
                Ok(Some(ResponseStream::ReturnControl(_))) => {
                    return Err(ReasonerError::Failed(
                        "the agent asked to return control; its action group must be a Lambda".into(),
                    ))
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let throttled = e.as_service_error().map(|s| s.is_throttling_exception()).unwrap_or(false);
                    return Err(classify(throttled, &e));
                }
            }
        }
        Ok(ModelReply { text, trace_id: Some(session_id.to_owned()), trace, usage })
    }
}

/// The tokens one orchestration model call used (its trace's `modelInvocationOutput.metadata.usage`).
fn tokens_of(trace: &Trace) -> Option<TokenUsage> {
    let Trace::OrchestrationTrace(OrchestrationTrace::ModelInvocationOutput(output)) = trace else { return None };
    let usage = output.metadata()?.usage()?;
    let count = |n: Option<i32>| n.map_or(0, |n| u64::try_from(n).unwrap_or(0));
    Some(TokenUsage { input_tokens: count(usage.input_tokens()), output_tokens: count(usage.output_tokens()) })
}

fn classify<E: std::error::Error>(throttled: bool, e: &E) -> ReasonerError {
    let message = aws_smithy_types::error::display::DisplayErrorContext(e).to_string().chars().take(300).collect();
    if throttled {
        ReasonerError::Throttled(message)
    } else {
        ReasonerError::Failed(message)
    }
}

/// A line per trace event worth keeping: the agent's rationale and the tools it called.
fn describe_trace(trace: &Trace) -> Option<String> {
    let Trace::OrchestrationTrace(o) = trace else { return None };
    match o {
        OrchestrationTrace::Rationale(r) => r.text().map(|t| format!("rationale: {t}")),
        OrchestrationTrace::InvocationInput(i) => i.action_group_invocation_input().map(|a| {
            format!("tool call: {} {}", a.verb().unwrap_or("GET"), a.api_path().or(a.function()).unwrap_or("?"))
        }),
        OrchestrationTrace::Observation(o) => {
            o.action_group_invocation_output().map(|a| format!("tool result: {}", a.text().unwrap_or("")))
        }
        _ => None,
    }
}

/// What arrives on the stream, as it arrives (for `finops ask`).
#[derive(Debug, Clone, Copy)]
pub enum StreamEvent<'a> {
    Chunk(&'a str),
    Trace(&'a str),
    /// A throttled attempt is being retried; anything shown from it is void.
    Retry(u32),
}

impl Model for BedrockAgent {
    fn name(&self) -> &str {
        "agent"
    }

    async fn ask(&self, session_id: &str, prompt: &str) -> Result<ModelReply, ReasonerError> {
        self.ask_streaming(session_id, prompt, &|_| {}).await
    }
}

impl BedrockAgent {
    /// [`Model::ask`], reporting chunks and trace lines as they arrive.
    pub async fn ask_streaming(
        &self,
        session_id: &str,
        prompt: &str,
        on_event: &(dyn Fn(StreamEvent<'_>) + Sync),
    ) -> Result<ModelReply, ReasonerError> {
        let deadline = tokio::time::Instant::now() + self.time_limit;
        let on_retry = |n: u32| on_event(StreamEvent::Retry(n));
        self.retry.run(deadline, self.time_limit, || self.once(session_id, prompt, on_event), &on_retry).await
    }
}
