//! A local stand-in for Slack, both sides of it: the Web API the functions call (`chat.postMessage`, `chat.update`,
//! `chat.postEphemeral`, checked for the bot token as Slack checks it) and the person in the channel, whose click is
//! posted to the approval callback as Slack posts an interaction: form-encoded `payload`, signed with the app's
//! signing secret over `v0:{timestamp}:{body}`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

pub const SIGNING_SECRET: &str = "local-slack-signing-secret-0123456789";
pub const BOT_TOKEN: &str = "xoxb-local-0000-finops";
/// The workspace of the local Slack (`auth.test`'s `team_id`, and every click's `team`).
pub const TEAM: &str = "T0LOCAL";

/// Every message as last posted or updated (channel, ts, message), and the notes only one user saw.
#[derive(Default)]
pub struct SlackState {
    pub messages: Vec<(String, String, Value)>,
    pub notes: Vec<(String, String, String)>,
    /// Every Web API call, in order: (method, authorised).
    pub calls: Vec<(String, bool)>,
}

pub struct LocalSlack {
    /// What `FINOPS_SLACK_API_URL` is set to.
    pub api_url: String,
    pub state: Arc<Mutex<SlackState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(v: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())))
        .expect("response")
}

fn web_api(state: &Mutex<SlackState>, method: &str, authorised: bool, body: &[u8]) -> Value {
    let mut s = state.lock().unwrap();
    s.calls.push((method.to_owned(), authorised));
    if !authorised {
        return json!({"ok": false, "error": "invalid_auth"});
    }
    let Ok(mut m) = serde_json::from_slice::<Value>(body) else {
        return json!({"ok": false, "error": "invalid_json"});
    };
    let text = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let channel = text(&m, "channel");
    match method {
        "chat.postMessage" => {
            if channel.is_empty() || m.get("blocks").is_none() {
                return json!({"ok": false, "error": "invalid_arguments"});
            }
            let ts = format!("1700000000.{:06}", s.messages.len() + 1);
            m.as_object_mut().map(|o| o.remove("channel"));
            s.messages.push((channel.clone(), ts.clone(), m));
            json!({"ok": true, "channel": channel, "ts": ts})
        }
        "chat.update" => {
            let ts = text(&m, "ts");
            match s.messages.iter_mut().find(|(c, t, _)| *c == channel && *t == ts) {
                Some(slot) => {
                    slot.2 = m;
                    json!({"ok": true, "channel": channel, "ts": ts})
                }
                None => json!({"ok": false, "error": "message_not_found"}),
            }
        }
        "auth.test" => json!({"ok": true, "team_id": TEAM, "user_id": "U0FINOPSBOT"}),
        "chat.postEphemeral" => {
            let note = (channel, text(&m, "user"), text(&m, "text"));
            s.notes.push(note);
            json!({"ok": true})
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    }
}

impl LocalSlack {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the local Slack");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(SlackState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let method = parts.uri.path().trim_start_matches("/api/").to_owned();
                            let authorised = parts
                                .headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v == format!("Bearer {BOT_TOKEN}"));
                            Ok::<_, Infallible>(answer(web_api(&state, &method, authorised, &body)))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { api_url: format!("http://127.0.0.1:{port}/api"), state, task }
    }

    /// The secret the deployment keeps in Secrets Manager (`FINOPS_SLACK_SECRET_ID`).
    pub fn secret_string() -> String {
        json!({"signingSecret": SIGNING_SECRET, "botToken": BOT_TOKEN}).to_string()
    }

    /// Stores the app's secret as `name` and returns the functions' Slack settings (`FINOPS_SLACK_*`) for `channel`,
    /// where the Slack users `approvers` decide.
    pub async fn deploy(
        &self,
        config: &aws_config::SdkConfig,
        name: &str,
        channel: &str,
        approvers: &[&str],
    ) -> Vec<(String, String)> {
        aws_sdk_secretsmanager::Client::new(config)
            .create_secret()
            .name(name)
            .secret_string(Self::secret_string())
            .send()
            .await
            .expect("the Slack app's secret");
        let approvers = approvers.join(",");
        [
            ("FINOPS_SLACK_SECRET_ID", name),
            ("FINOPS_SLACK_CHANNEL", channel),
            ("FINOPS_SLACK_API_URL", &self.api_url),
            ("FINOPS_SLACK_APPROVERS", &approvers),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The messages posted so far: (channel, ts, message).
    pub fn messages(&self) -> Vec<(String, String, Value)> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn notes(&self) -> Vec<String> {
        self.state.lock().unwrap().notes.iter().map(|(_, _, t)| t.clone()).collect()
    }

    /// Waits up to `wait` for a message whose text contains `needle`.
    pub async fn wait_for_message(&self, needle: &str, wait: std::time::Duration) -> Option<(String, String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if let Some(m) = self.messages().into_iter().find(|(_, _, m)| m.to_string().contains(needle)) {
                return Some(m);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        None
    }
}

/// The button `action_id` of `message`, if it still shows one (an answered or expired approval's message has none).
fn button(message: &Value, action_id: &str) -> Option<Value> {
    message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
        .find(|e| e["action_id"] == action_id)
}

/// Whether `message` still shows the button `action_id`.
pub fn has_button(message: &Value, action_id: &str) -> bool {
    button(message, action_id).is_some()
}

/// The interaction Slack posts when `user` clicks the button `action_id` of `message` (as posted in `channel`).
pub fn click_payload(channel: &str, ts: &str, message: &Value, action_id: &str, user: &str) -> String {
    let button = button(message, action_id).unwrap_or_else(|| panic!("no {action_id} button in {message}"));
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": TEAM},
        "team": {"id": TEAM},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "response_url": "https://hooks.slack.com/actions/T0LOCAL/1/local",
        "actions": [{"type": "button", "action_id": action_id, "block_id": "finops-decision",
                     "value": button["value"], "action_ts": ts}],
    });
    url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish()
}

/// Posts `body` to `url` as Slack does, signed at `signed_at` (unix seconds) with `secret`: (status, body), status 0
/// when nothing answered.
pub async fn post_signed(url: &str, body: &str, secret: &str, signed_at: i64) -> (u16, String) {
    let ts = signed_at.to_string();
    let signature = finops_core::slack::sign_request(secret.as_bytes(), &ts, body.as_bytes());
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    // No answer at all (the server gone, a connection reset): status 0, as `moto::http` says it.
    let Ok(response) = client.request(request).await else { return (0, String::new()) };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}
