//! A scripted language model behind the Bedrock Runtime Converse wire protocol (`POST /model/{modelId}/converse`,
//! REST-JSON), on 127.0.0.1, so the reasoning step's real Converse backend (the AWS SDK client, the tool loop, the
//! answer validation) runs end to end without Bedrock. It is not a model and says so in every justification.
//!
//! The script, per conversation: the first turn asks for one tool (`get_utilisation` of the first instance in the
//! prompt's DATA block; in an organization run one call per instance, up to five, each with its `account_id`); once
//! the tools' results come back, it answers with one recommendation per instance in DATA, from the facts given (Idle:
//! snapshot_and_stop, Underutilised: rightsize, otherwise keep). It can also be told to misbehave, as a model backend
//! does: throttle, fail, or answer with something that is not the asked-for JSON.
//!
//! It holds requests to what the current Claude models on Bedrock take: every answer starts with a reasoning block
//! (their thinking is always on, and the client must carry it back in the conversation), a request with a
//! `temperature` is refused as theirs is (thinking refuses one), and a request without a system prompt is refused
//! (the backend's standing instruction, functions/reasoning/src/agent-instruction.txt, must reach the model).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

/// What the scripted model does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The script above.
    Script,
    /// HTTP 429 ThrottlingException, as Bedrock answers when over quota.
    Throttle,
    /// HTTP 500 InternalServerException.
    Fail,
    /// A final answer that is prose, not the JSON object asked for.
    Garbage,
}

/// Labels the justifications, the demo output and the emails: the answers are scripted, not a model's.
pub const LABEL: &str = "scripted local model, not Bedrock";

struct State {
    behaviour: Mutex<Behaviour>,
    requests: AtomicUsize,
    tool_calls: AtomicUsize,
}

/// The running endpoint; it stops when dropped.
pub struct ScriptedModel {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedModel {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the scripted model");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            behaviour: Mutex::new(Behaviour::Script),
            requests: AtomicUsize::new(0),
            tool_calls: AtomicUsize::new(0),
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let (status, headers, body) = answer(&state, &path, &body);
                            let mut r =
                                hyper::Response::builder().status(status).header("content-type", "application/json");
                            for (k, v) in headers {
                                r = r.header(k, v);
                            }
                            Ok::<_, std::convert::Infallible>(r.body(Full::new(Bytes::from(body))).expect("response"))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { endpoint: format!("http://{addr}"), state, task }
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    /// Converse requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Tool calls the script has asked for so far.
    pub fn tool_calls(&self) -> usize {
        self.state.tool_calls.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: u16, kind: &str, message: &str) -> (u16, Vec<(&'static str, String)>, String) {
    (status, vec![("x-amzn-errortype", kind.to_owned())], json!({ "message": message }).to_string())
}

fn reply(content: Value, stop_reason: &str) -> (u16, Vec<(&'static str, String)>, String) {
    let mut blocks = vec![json!({"reasoningContent": {"reasoningText": {
        "text": format!("Scripted thinking ({LABEL})."), "signature": "scripted-signature"
    }}})];
    blocks.extend(content.as_array().cloned().unwrap_or_default());
    let content = Value::Array(blocks);
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 1000, "outputTokens": 200, "totalTokens": 1200},
        "metrics": {"latencyMs": 1}
    });
    (200, Vec::new(), body.to_string())
}

/// The facts lines of the prompt's DATA block.
fn data_lines(prompt: &str) -> Vec<Value> {
    let Some(data) = prompt.split("<DATA>").nth(1).and_then(|d| d.split("</DATA>").next()) else {
        return Vec::new();
    };
    data.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).collect()
}

fn answer(state: &State, path: &str, body: &[u8]) -> (u16, Vec<(&'static str, String)>, String) {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if !(path.starts_with("/model/") && path.ends_with("/converse")) {
        return error(
            404,
            "UnknownOperationException",
            &format!("the scripted model serves Converse only, not {path}"),
        );
    }
    let behaviour = *state.behaviour.lock().unwrap_or_else(|p| p.into_inner());
    match behaviour {
        Behaviour::Throttle => return error(429, "ThrottlingException", "Too many requests (scripted)"),
        Behaviour::Fail => return error(500, "InternalServerException", "The model failed (scripted)"),
        Behaviour::Script | Behaviour::Garbage => {}
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(400, "ValidationException", "the request body is not JSON");
    };
    if request["inferenceConfig"].get("temperature").is_some() {
        return error(400, "ValidationException", "temperature may not be set while thinking is on (scripted)");
    }
    if request["system"].as_array().is_none_or(|s| s.iter().all(|b| b["text"].as_str().is_none_or(str::is_empty))) {
        return error(400, "ValidationException", "no system prompt: the standing instruction did not reach the model");
    }
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    // A client that drops the thinking of the previous turn breaks the conversation on the real models.
    let thinking_kept = messages
        .iter()
        .filter(|m| m["role"] == "assistant")
        .all(|m| m["content"].as_array().is_some_and(|c| c.iter().any(|b| b.get("reasoningContent").is_some())));
    if !thinking_kept {
        return error(400, "ValidationException", "an assistant turn came back without its reasoning block");
    }
    let prompt = messages
        .first()
        .and_then(|m| m["content"].as_array())
        .and_then(|c| c.iter().find_map(|b| b["text"].as_str()))
        .unwrap_or_default()
        .to_owned();
    let facts = data_lines(&prompt);
    let tool_result = messages
        .last()
        .and_then(|m| m["content"].as_array())
        .and_then(|c| c.iter().find_map(|b| b.get("toolResult")).cloned());
    let Some(result) = tool_result else {
        // First turn: look one instance up with a tool, as a model would before answering; in an organization run
        // every instance (up to five), each in the account its line names, so the tools' routing is exercised.
        let in_accounts: Vec<&Value> = facts.iter().filter(|f| f["account"].is_string()).take(5).collect();
        let chosen: Vec<&Value> = if in_accounts.is_empty() { facts.iter().take(1).collect() } else { in_accounts };
        if chosen.is_empty() {
            return reply(json!([{"text": json!({"recommendations": []}).to_string()}]), "end_turn");
        }
        let mut content =
            vec![json!({"text": format!("Checking {} instance(s) with get_utilisation ({LABEL}).", chosen.len())})];
        for (n, fact) in chosen.iter().enumerate() {
            let mut input = json!({"instance_id": fact["id"].as_str().unwrap_or_default()});
            if let Some(account) = fact["account"].as_str() {
                input["account_id"] = json!(account);
            }
            state.tool_calls.fetch_add(1, Ordering::SeqCst);
            content.push(json!({"toolUse": {"toolUseId": format!("scripted-tool-{}", n + 1), "name": "get_utilisation", "input": input}}));
        }
        return reply(Value::Array(content), "tool_use");
    };
    if behaviour == Behaviour::Garbage {
        return reply(json!([{"text": "I think you should stop all of them, trust me."}]), "end_turn");
    }
    let looked_up = result["content"]
        .as_array()
        .and_then(|c| c.iter().find_map(|b| b.get("json")))
        .and_then(|j| j["utilisation"]["assessment"]["verdict"].as_str())
        .map(str::to_owned);
    let recommendations: Vec<Value> = facts
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let verdict = f["verdict"].as_str().unwrap_or("");
            let (action, confidence) = match verdict {
                "Idle" => ("snapshot_and_stop", 0.85),
                "Underutilised" => ("rightsize", 0.6),
                _ => ("keep", 0.9),
            };
            let checked = match (&looked_up, n) {
                (Some(v), 0) => format!("; get_utilisation confirmed {v}"),
                _ => String::new(),
            };
            json!({
                "instanceId": f["id"],
                "action": action,
                "confidence": confidence,
                "justification": format!(
                    "{verdict}: average CPU {}%, peak {}%, {} MB network a day over {} days{checked} ({LABEL}).",
                    f["cpuAvgPct"], f["cpuPeakPct"], f["netMbPerDay"], f["daysWithData"]
                ),
                "evidence": [format!("verdict {verdict}"), format!("peak CPU {}%", f["cpuPeakPct"])]
            })
        })
        .collect();
    reply(json!([{"text": json!({"recommendations": recommendations}).to_string()}]), "end_turn")
}
