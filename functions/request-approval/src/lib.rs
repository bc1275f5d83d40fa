//! The approval request, invoked by the state machine with `lambda:invoke.waitForTaskToken`. It stores the task
//! token under a random 128-bit approval id in DynamoDB and emails the approvers three signed links. The execution
//! then waits until the approval callback reports a decision, or until its TimeoutSeconds (no action).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use finops_approval_store::email::{execution_console_url, render, trace_console_url, EmailLinks};
use finops_approval_store::{
    required_var, ApprovalRecord, ApprovalRecords, DynamoApprovals, Notifier, SecretsManagerKey, SigningKey,
    SnsNotifier, StoreConfig,
};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::approval::{approval_id, ApprovalAction, ApprovalLink};
pub use finops_core::steps::{ApprovalRequestEvent, ApprovalRequestOutput};
pub use finops_core::DeploymentMode;

#[derive(Debug, Clone, PartialEq)]
pub struct RequestConfig {
    /// Where the approval callback's Function URL is (the links point there).
    pub base_url: String,
    /// How long links stay valid; the state machine's TimeoutSeconds should be the same.
    pub window_seconds: i64,
    pub snooze_days: i64,
    pub mode: DeploymentMode,
}

impl RequestConfig {
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let mode = DeploymentMode::from_vars(vars.clone())?;
        let base_url = vars
            .get("FINOPS_APPROVAL_BASE_URL")
            .map(|v| v.trim().trim_end_matches('/').to_owned())
            .filter(|v| {
                v.starts_with("https://") || v.starts_with("http://127.0.0.1") || v.starts_with("http://localhost")
            })
            .ok_or_else(|| FinopsError::Configuration("FINOPS_APPROVAL_BASE_URL must be an https:// URL".into()))?;
        let number = |k: &str, default: i64, min: i64, max: i64| -> Result<i64, FinopsError> {
            match vars.get(k) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| FinopsError::Configuration(format!("{k} {v:?} is not within {min}..={max}"))),
            }
        };
        Ok(Self {
            base_url,
            window_seconds: number("FINOPS_APPROVAL_WINDOW_SECONDS", 3 * 86_400, 1, 365 * 86_400)?,
            snooze_days: number("FINOPS_SNOOZE_DAYS", 7, 1, 365)?,
            mode,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn handle<R: ApprovalRecords, K: SigningKey, N: Notifier>(
    event: serde_json::Value,
    records: &R,
    key: &K,
    notifier: &N,
    config: &RequestConfig,
    now: DateTime<Utc>,
    random: [u8; 16],
    trace_header: Option<&str>,
) -> Result<ApprovalRequestOutput, FinopsError> {
    let event: ApprovalRequestEvent = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("approval request expects {{taskToken, proposal, runId, executionArn}}: {e}"))
    })?;
    validate_run_id(&event.run_id)?;
    if config.mode == DeploymentMode::Recommend {
        // The state machine never gets here in recommend mode; this step refuses anyway, so nothing that reaches it
        // (a hand-made execution, a future path) can ask a person to approve a stop.
        return Err(FinopsError::InvalidInput(
            "this deployment is in recommend mode: nobody is asked to approve anything".into(),
        ));
    }
    if event.task_token.trim().is_empty() {
        return Err(FinopsError::InvalidInput("taskToken is empty".into()));
    }
    let key = key.key().await?;
    let id = approval_id(random);
    let expires_at = (now + Duration::seconds(config.window_seconds)).timestamp();
    let record = ApprovalRecord::pending(
        id.clone(),
        event.task_token,
        event.proposal,
        event.run_id,
        event.execution_arn,
        now.timestamp(),
        expires_at,
    );
    records.put_pending(&record).await?;

    let url = |action: ApprovalAction| ApprovalLink::sign(&key, &id, action, expires_at).url(&config.base_url);
    let (approve, deny, snooze) =
        (url(ApprovalAction::Approve), url(ApprovalAction::Deny), url(ApprovalAction::Snooze));
    let console = execution_console_url(&record.execution_arn);
    let trace = trace_header.and_then(|h| trace_console_url(&record.proposal.region, h));
    let expires_utc =
        DateTime::<Utc>::from_timestamp(expires_at, 0).unwrap_or(now).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (subject, body) = render(
        &record.proposal,
        &EmailLinks {
            approve: &approve,
            deny: &deny,
            snooze: &snooze,
            snooze_days: config.snooze_days,
            execution_console: &console,
            trace_console: trace.as_deref(),
            expires_at_utc: &expires_utc,
        },
    );
    let message_id = notifier.publish(&subject, &body).await?;
    tracing::info!(
        run_id = record.run_id,
        instance_id = record.proposal.instance_id,
        approval_id = id,
        decision = "APPROVAL_REQUESTED",
        "approval requested"
    );
    Ok(ApprovalRequestOutput { approval_id: id, expires_at, message_id })
}

/// What the request step reads from its environment: its behaviour ([`RequestConfig`]), where the records and the
/// signing key are, and the approvals topic (`FINOPS_APPROVAL_TOPIC_ARN`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestApprovalConfig {
    pub request: RequestConfig,
    pub store: StoreConfig,
    pub topic_arn: String,
}

impl RequestApprovalConfig {
    pub fn from_env() -> Result<Self, FinopsError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        Ok(Self {
            request: RequestConfig::from_vars(vars.clone())?,
            store: StoreConfig::from_vars(vars.clone())?,
            topic_arn: required_var(&vars, "FINOPS_APPROVAL_TOPIC_ARN")?,
        })
    }
}

/// The request step as the Lambda and the local runner build it.
pub struct RequestApprovalStep {
    records: DynamoApprovals,
    key: SecretsManagerKey,
    notifier: SnsNotifier,
    config: RequestConfig,
}

impl RequestApprovalStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: RequestApprovalConfig) -> Self {
        Self {
            records: DynamoApprovals::new(sdk, config.store.approvals_table),
            key: SecretsManagerKey::new(sdk, config.store.signing_secret_id),
            notifier: SnsNotifier::new(sdk, config.topic_arn),
            config: config.request,
        }
    }

    /// `trace_header`: the invocation's X-Ray trace header, for the email's trace link.
    pub async fn handle(
        &self,
        event: serde_json::Value,
        now: DateTime<Utc>,
        trace_header: Option<&str>,
    ) -> Result<ApprovalRequestOutput, FinopsError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| FinopsError::Configuration(format!("no randomness: {e}")))?;
        handle(event, &self.records, &self.key, &self.notifier, &self.config, now, random, trace_header).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use finops_approval_store::{ApprovalReader, MemoryApprovals, StaticKey};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Outbox(Mutex<Vec<(String, String)>>);

    impl Notifier for Outbox {
        async fn publish(&self, subject: &str, body: &str) -> Result<String, FinopsError> {
            self.0.lock().unwrap().push((subject.to_owned(), body.to_owned()));
            Ok("m-1".into())
        }
    }

    fn event() -> serde_json::Value {
        serde_json::json!({
            "taskToken": "token-1", "runId": "run-1",
            "executionArn": "arn:aws:states:ap-southeast-2:123456789012:execution:finops:run-1",
            "proposal": {
                "instanceId": "i-0abc", "region": "ap-southeast-2", "instanceType": "t3.large",
                "name": "dev\u{202E}box see www.evil.io", "action": "snapshot-and-stop", "recommended": "snapshot_and_stop",
                "confidence": 0.9, "justification": "idle", "backend": "rules", "priceSource": "embedded",
                "evidence": [], "volumeIds": ["vol-1"], "launchTime": "2026-01-01T00:00:00Z",
                "measuredUntil": "2026-11-28T00:00:00Z"
            }
        })
    }

    async fn request(mode: &str) -> (Result<ApprovalRequestOutput, FinopsError>, MemoryApprovals, Outbox) {
        let vars = [
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), mode.to_string()),
        ];
        let config = RequestConfig::from_vars(vars).unwrap();
        let (records, outbox) = (MemoryApprovals::default(), Outbox::default());
        let key = StaticKey(b"0123456789abcdef0123456789abcdef".to_vec());
        let result = handle(event(), &records, &key, &outbox, &config, Utc::now(), [7; 16], None).await;
        (result, records, outbox)
    }

    #[tokio::test]
    async fn recommend_mode_asks_nobody_whatever_reaches_the_step() {
        let (result, records, outbox) = request("recommend").await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains("recommend mode"), "{err}");
        assert!(outbox.0.lock().unwrap().is_empty(), "no email");
        assert!(records.get(&"07".repeat(16)).await.unwrap().is_none(), "no record");
        // Unset is recommend too: a deployment asks people only when it says act.
        assert_eq!(DeploymentMode::from_vars(Vec::new()).unwrap(), DeploymentMode::Recommend);
        assert!(DeploymentMode::from_vars([("FINOPS_MODE".to_string(), "yolo".to_string())]).is_err());
    }

    #[tokio::test]
    async fn act_mode_emails_cleaned_untrusted_text_and_links() {
        let (result, records, outbox) = request("act").await;
        let out = result.unwrap();
        assert!(records.get(&out.approval_id).await.unwrap().is_some());
        let (_, body) = outbox.0.lock().unwrap()[0].clone();
        assert!(body.contains("\"devbox see www[.]evil[.]io\""), "{body}");
        assert!(!body.contains('\u{202E}') && !body.contains("token-1"));
    }
}
