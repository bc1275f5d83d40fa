//! The approval request, invoked by the state machine with `lambda:invoke.waitForTaskToken`. It stores the task
//! token under a random 128-bit approval id in DynamoDB and emails the approvers three signed links. The execution
//! then waits until the approval callback reports a decision, or until its TimeoutSeconds (no action).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use finops_approvals::email::{execution_console_url, render, trace_console_url, EmailLinks};
use finops_approvals::{ApprovalRecord, ApprovalRecords, ApprovalState, Notifier, SigningKey};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::approval::{approval_id, ApprovalAction, ApprovalLink};
use finops_core::policy::Proposal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq)]
pub struct RequestConfig {
    /// Where the approval callback's Function URL is (the links point there).
    pub base_url: String,
    /// How long links stay valid; the state machine's TimeoutSeconds should be the same.
    pub window_seconds: i64,
    pub snooze_days: i64,
}

impl RequestConfig {
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
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
            window_seconds: number("FINOPS_APPROVAL_WINDOW_SECONDS", 3 * 86_400, 60, 365 * 86_400)?,
            snooze_days: number("FINOPS_SNOOZE_DAYS", 7, 1, 365)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestEvent {
    pub task_token: String,
    pub proposal: Proposal,
    pub run_id: String,
    pub execution_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestOutput {
    pub approval_id: String,
    pub expires_at: i64,
    pub message_id: String,
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
    if event.task_token.trim().is_empty() {
        return Err(FinopsError::InvalidInput("taskToken is empty".into()));
    }
    let key = key.key().await?;
    let id = approval_id(random);
    let expires_at = (now + Duration::seconds(config.window_seconds)).timestamp();
    let record = ApprovalRecord {
        approval_id: id.clone(),
        task_token: event.task_token,
        proposal: event.proposal,
        run_id: event.run_id,
        execution_arn: event.execution_arn,
        created_at: now.timestamp(),
        expires_at,
        state: ApprovalState::Pending,
        decision: None,
        approver: None,
        decided_at: None,
    };
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
