//! Slack, where it is optional: the app's two secrets from Secrets Manager, and the Web API methods the approvals
//! use (`chat.postMessage`, `chat.update`, `chat.postEphemeral`, and `auth.test` once for the workspace's id) behind
//! one narrow trait, with an in-memory Slack beside the real one. The messages themselves are plain data ([`finops_core::slack`]).

use std::future::Future;
use std::sync::Mutex;

use aws_config::SdkConfig;
use finops_aws::FinopsError;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Where a posted message is: what `chat.update` needs, and where a click must come from to decide (the workspace,
/// the channel and the message itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackMessageRef {
    pub team: String,
    pub channel: String,
    pub ts: String,
}

/// What a deployment with Slack sets: `FINOPS_SLACK_SECRET_ID` (a secret of JSON `{"signingSecret", "botToken"}`) and
/// `FINOPS_SLACK_API_URL` (Slack's Web API; a local stand-in in tests). Where approvals are asked is the routing's
/// (request-approval's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackConfig {
    pub secret_id: String,
    pub api_url: String,
}

pub const SLACK_API_URL: &str = "https://slack.com/api";

impl SlackConfig {
    /// None: Slack is not set up (no `FINOPS_SLACK_SECRET_ID`).
    pub fn from_vars(vars: &[(String, String)]) -> Result<Option<Self>, FinopsError> {
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
        let Some(secret_id) = get("FINOPS_SLACK_SECRET_ID") else {
            return Ok(None);
        };
        let api_url = get("FINOPS_SLACK_API_URL").unwrap_or(SLACK_API_URL).trim_end_matches('/').to_owned();
        let local = api_url.starts_with("http://127.0.0.1:") || api_url.starts_with("http://localhost:");
        if !api_url.starts_with("https://") && !local {
            return Err(FinopsError::Configuration(format!("FINOPS_SLACK_API_URL {api_url:?} must be https://")));
        }
        Ok(Some(Self { secret_id: secret_id.to_owned(), api_url }))
    }
}

/// The Slack app's secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackCredentials {
    /// Verifies the interactions Slack sends (its "Signing Secret").
    pub signing_secret: String,
    /// Posts and updates the messages (`xoxb-...`, scope `chat:write`).
    pub bot_token: String,
}

impl std::fmt::Debug for SlackCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlackCredentials { .. }")
    }
}

pub trait SlackSecrets: Send + Sync {
    fn credentials(&self) -> impl Future<Output = Result<SlackCredentials, FinopsError>> + Send;
}

/// The secrets from Secrets Manager, read once per container.
pub struct SecretsManagerSlack {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: tokio::sync::OnceCell<SlackCredentials>,
}

impl SecretsManagerSlack {
    pub fn new(config: &SdkConfig, secret_id: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
            secret_id: secret_id.into(),
            cached: tokio::sync::OnceCell::new(),
        }
    }
}

impl SlackSecrets for SecretsManagerSlack {
    async fn credentials(&self) -> Result<SlackCredentials, FinopsError> {
        self.cached
            .get_or_try_init(|| async {
                let out = crate::key::secret_value(&self.client, &self.secret_id).await?;
                let bad = |why: &str| {
                    FinopsError::Configuration(format!(
                        "Slack secret {}: {why} (expected JSON {{\"signingSecret\": ..., \"botToken\": \"xoxb-...\"}})",
                        self.secret_id
                    ))
                };
                let creds: SlackCredentials =
                    serde_json::from_str(out.secret_string().unwrap_or_default()).map_err(|_| bad("not valid"))?;
                if creds.signing_secret.len() < 16 {
                    return Err(bad("the signing secret is too short"));
                }
                if !creds.bot_token.starts_with("xoxb-") {
                    return Err(bad("the bot token is not a bot token"));
                }
                Ok(creds)
            })
            .await
            .cloned()
    }
}

/// Fixed secrets (tests, the local run).
pub struct StaticSlackSecrets(pub SlackCredentials);

impl SlackSecrets for StaticSlackSecrets {
    async fn credentials(&self) -> Result<SlackCredentials, FinopsError> {
        Ok(self.0.clone())
    }
}

/// The Web API methods the approvals use. `message`: `{text, blocks}`.
pub trait SlackApi: Send + Sync {
    fn post(&self, channel: &str, message: &Value)
        -> impl Future<Output = Result<SlackMessageRef, FinopsError>> + Send;
    fn update(&self, at: &SlackMessageRef, message: &Value) -> impl Future<Output = Result<(), FinopsError>> + Send;
    /// A note only `user` sees (why a click changed nothing).
    fn tell(&self, channel: &str, user: &str, text: &str) -> impl Future<Output = Result<(), FinopsError>> + Send;
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// Slack's Web API over HTTPS with the bot token. The client (and the system's TLS roots it loads) is built on the
/// first call, not at the function's cold start: most invocations of the callback are pages, not Slack.
pub struct SlackWebApi<S> {
    api_url: String,
    secrets: S,
    client: tokio::sync::OnceCell<HttpsClient>,
    /// The bot's workspace (`auth.test`'s `team_id`), asked once per container.
    team: tokio::sync::OnceCell<String>,
}

impl<S: SlackSecrets> SlackWebApi<S> {
    pub fn new(api_url: impl Into<String>, secrets: S) -> Self {
        Self {
            api_url: api_url.into(),
            secrets,
            client: tokio::sync::OnceCell::new(),
            team: tokio::sync::OnceCell::new(),
        }
    }

    /// The workspace the bot token belongs to: where every message is posted, and where a click must come from.
    async fn team(&self) -> Result<String, FinopsError> {
        self.team
            .get_or_try_init(|| async {
                let answer = self.call("auth.test", json!({})).await?;
                answer
                    .get("team_id")
                    .and_then(Value::as_str)
                    .filter(|t| finops_core::slack::is_slack_id(t))
                    .map(str::to_owned)
                    .ok_or_else(|| FinopsError::Transient {
                        service: "Slack",
                        operation: "auth.test",
                        message: "the answer names no workspace".into(),
                    })
            })
            .await
            .cloned()
    }

    async fn client(&self) -> Result<&HttpsClient, FinopsError> {
        self.client
            .get_or_try_init(|| async {
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_native_roots()
                    .map_err(|e| FinopsError::Configuration(format!("no TLS root certificates for Slack: {e}")))?
                    .https_or_http()
                    .enable_http1()
                    .build();
                Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
            })
            .await
    }

    pub fn secrets(&self) -> &S {
        &self.secrets
    }

    async fn call(&self, method: &'static str, body: Value) -> Result<Value, FinopsError> {
        let token = self.secrets.credentials().await?.bot_token;
        let failed = |message: String| FinopsError::Transient { service: "Slack", operation: method, message };
        let request = hyper::Request::post(format!("{}/{method}", self.api_url))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| failed(e.to_string()))?;
        let client = self.client().await?;
        let response = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(request))
            .await
            .map_err(|_| failed("no answer within 5 s".into()))?
            .map_err(|e| failed(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| failed(e.to_string()))?.to_bytes();
        if status == 429 {
            return Err(FinopsError::Throttled { service: "Slack", operation: method, message: "HTTP 429".into() });
        }
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|_| failed(format!("HTTP {status}, not a Slack answer")))?;
        match answer.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(answer),
            _ => {
                let error = answer.get("error").and_then(Value::as_str).unwrap_or("unknown").to_owned();
                Err(match error.as_str() {
                    "ratelimited" => FinopsError::Throttled { service: "Slack", operation: method, message: error },
                    "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "missing_scope"
                    | "channel_not_found" | "not_in_channel" => FinopsError::Configuration(format!(
                        "Slack {method} refused: {error} (check the bot token, its chat:write scope and that the app \
                         is in the channel)"
                    )),
                    _ => FinopsError::Aws { service: "Slack", operation: method, code: error.clone(), message: error },
                })
            }
        }
    }
}

impl<S: SlackSecrets> SlackApi for SlackWebApi<S> {
    async fn post(&self, channel: &str, message: &Value) -> Result<SlackMessageRef, FinopsError> {
        let mut body = message.clone();
        body["channel"] = json!(channel);
        body["unfurl_links"] = json!(false);
        let team = self.team().await?;
        let answer = self.call("chat.postMessage", body).await?;
        let text = |k: &str| answer.get(k).and_then(Value::as_str).map(str::to_owned);
        match (text("channel"), text("ts")) {
            (Some(channel), Some(ts)) => Ok(SlackMessageRef { team, channel, ts }),
            _ => Err(FinopsError::Transient {
                service: "Slack",
                operation: "chat.postMessage",
                message: "the answer names no message".into(),
            }),
        }
    }

    async fn update(&self, at: &SlackMessageRef, message: &Value) -> Result<(), FinopsError> {
        let mut body = message.clone();
        body["channel"] = json!(at.channel);
        body["ts"] = json!(at.ts);
        self.call("chat.update", body).await.map(drop)
    }

    async fn tell(&self, channel: &str, user: &str, text: &str) -> Result<(), FinopsError> {
        self.call("chat.postEphemeral", json!({"channel": channel, "user": user, "text": text})).await.map(drop)
    }
}

/// The workspace of [`MemorySlack`]'s messages.
pub const MEMORY_TEAM: &str = "T0MEMORY";

/// Slack in memory: every message as last posted or updated, and every note.
#[derive(Default)]
pub struct MemorySlack {
    pub messages: Mutex<Vec<(SlackMessageRef, Value)>>,
    pub notes: Mutex<Vec<(String, String, String)>>,
    /// Answers the next post with this error (then posts).
    pub refuse_next_post: Mutex<Option<FinopsError>>,
}

impl MemorySlack {
    pub fn message(&self, at: &SlackMessageRef) -> Option<Value> {
        self.messages.lock().unwrap().iter().find(|(r, _)| r == at).map(|(_, m)| m.clone())
    }
}

impl SlackApi for MemorySlack {
    async fn post(&self, channel: &str, message: &Value) -> Result<SlackMessageRef, FinopsError> {
        if let Some(e) = self.refuse_next_post.lock().unwrap().take() {
            return Err(e);
        }
        let mut messages = self.messages.lock().unwrap();
        let at = SlackMessageRef {
            team: MEMORY_TEAM.to_owned(),
            channel: channel.to_owned(),
            ts: format!("1700000000.{:06}", messages.len() + 1),
        };
        messages.push((at.clone(), message.clone()));
        Ok(at)
    }

    async fn update(&self, at: &SlackMessageRef, message: &Value) -> Result<(), FinopsError> {
        let mut messages = self.messages.lock().unwrap();
        let Some(slot) = messages.iter_mut().find(|(r, _)| r == at) else {
            return Err(FinopsError::Aws {
                service: "Slack",
                operation: "chat.update",
                code: "message_not_found".into(),
                message: "message_not_found".into(),
            });
        };
        slot.1 = message.clone();
        Ok(())
    }

    async fn tell(&self, channel: &str, user: &str, text: &str) -> Result<(), FinopsError> {
        self.notes.lock().unwrap().push((channel.to_owned(), user.to_owned(), text.to_owned()));
        Ok(())
    }
}

/// No Slack in this deployment: nothing is posted or updated, and a click finds no secret to verify it with.
pub struct NoSlack;

impl SlackApi for NoSlack {
    async fn post(&self, _: &str, _: &Value) -> Result<SlackMessageRef, FinopsError> {
        Err(FinopsError::Configuration("Slack is not set up in this deployment".into()))
    }
    async fn update(&self, _: &SlackMessageRef, _: &Value) -> Result<(), FinopsError> {
        Ok(())
    }
    async fn tell(&self, _: &str, _: &str, _: &str) -> Result<(), FinopsError> {
        Ok(())
    }
}

impl SlackSecrets for NoSlack {
    async fn credentials(&self) -> Result<SlackCredentials, FinopsError> {
        Err(FinopsError::Configuration("Slack is not set up in this deployment".into()))
    }
}

/// A deployment's Slack: the Web API (with its secrets) where set up.
impl<S: SlackSecrets> SlackSecrets for Option<SlackWebApi<S>> {
    async fn credentials(&self) -> Result<SlackCredentials, FinopsError> {
        match self {
            Some(slack) => slack.secrets.credentials().await,
            None => NoSlack.credentials().await,
        }
    }
}

/// No Slack in this deployment: nothing is posted (and a click finds nothing to verify against).
impl<T: SlackApi> SlackApi for Option<T> {
    async fn post(&self, channel: &str, message: &Value) -> Result<SlackMessageRef, FinopsError> {
        match self {
            Some(slack) => slack.post(channel, message).await,
            None => Err(FinopsError::Configuration("Slack is not set up in this deployment".into())),
        }
    }
    async fn update(&self, at: &SlackMessageRef, message: &Value) -> Result<(), FinopsError> {
        match self {
            Some(slack) => slack.update(at, message).await,
            None => Ok(()),
        }
    }
    async fn tell(&self, channel: &str, user: &str, text: &str) -> Result<(), FinopsError> {
        match self {
            Some(slack) => slack.tell(channel, user, text).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn slack_is_off_without_a_secret_and_refuses_a_plain_http_api() {
        assert_eq!(SlackConfig::from_vars(&vars(&[("FINOPS_SLACK_API_URL", SLACK_API_URL)])).unwrap(), None);
        let on = SlackConfig::from_vars(&vars(&[("FINOPS_SLACK_SECRET_ID", "finops/slack")])).unwrap().unwrap();
        assert_eq!(on.api_url, SLACK_API_URL);
        let bad = |pairs: &[(&str, &str)]| {
            let mut all = vars(&[("FINOPS_SLACK_SECRET_ID", "finops/slack")]);
            all.extend(vars(pairs));
            SlackConfig::from_vars(&all).unwrap_err().to_string()
        };
        assert!(bad(&[("FINOPS_SLACK_API_URL", "http://slack.example")]).contains("must be https://"));
    }
}
