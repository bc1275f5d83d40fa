//! What the request step reads from its environment, all of it set by the CDK app and read-only to every function:
//! where the links point, the windows, the mode, who may decide what (the routing table, or the deployment's
//! approvers), and where owners may be mailed.

use finops_approval_store::{owner, required_var, slack::SlackConfig, StoreConfig};
use finops_aws::FinopsError;
use finops_core::organization::ApprovalRouting;
use finops_core::DeploymentMode;

#[derive(Debug, Clone, PartialEq)]
pub struct RequestConfig {
    /// Where the approval callback's Function URL is (the links point there).
    pub base_url: String,
    /// How long links stay valid; the state machine's TimeoutSeconds should be the same.
    pub window_seconds: i64,
    pub snooze_days: i64,
    pub mode: DeploymentMode,
    /// Who is asked and who may decide: `FINOPS_APPROVAL_ROUTING` (by account, OU or account tag), or the
    /// deployment's approvers for everything (`FINOPS_APPROVERS`, with `FINOPS_SLACK_CHANNEL` and
    /// `FINOPS_SLACK_APPROVERS` in Slack). None only in recommend mode, where nobody is asked anything.
    pub routing: Option<ApprovalRouting>,
    /// How long an undo link stays valid (`FINOPS_UNDO_WINDOW_DAYS`, default 14).
    pub undo_window_days: i64,
    /// Where owner notices may go ([`owner::allowed_domains`]); empty: nowhere.
    pub owner_domains: Vec<String>,
}

fn list(vars: &std::collections::HashMap<String, String>, key: &str) -> Vec<String> {
    vars.get(key)
        .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
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
        let table = vars.get("FINOPS_APPROVAL_ROUTING").map(|v| v.trim()).filter(|v| !v.is_empty());
        let routing = match table {
            Some(table) => Some(
                ApprovalRouting::parse(table)
                    .map_err(|e| FinopsError::Configuration(format!("FINOPS_APPROVAL_ROUTING: {e}")))?,
            ),
            None => {
                let approvers = list(&vars, "FINOPS_APPROVERS");
                let channel = vars.get("FINOPS_SLACK_CHANNEL").map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
                match (approvers.is_empty(), mode) {
                    (true, DeploymentMode::Recommend) => None,
                    (true, DeploymentMode::Act) => {
                        return Err(FinopsError::Configuration(
                            "FINOPS_APPROVERS names nobody: an act deployment needs its approvers (or \
                             FINOPS_APPROVAL_ROUTING)"
                                .into(),
                        ))
                    }
                    (false, _) => Some(
                        ApprovalRouting::everyone(approvers, channel, list(&vars, "FINOPS_SLACK_APPROVERS"))
                            .map_err(|e| FinopsError::Configuration(format!("FINOPS_APPROVERS: {e}")))?,
                    ),
                }
            }
        };
        Ok(Self {
            base_url,
            window_seconds: number("FINOPS_APPROVAL_WINDOW_SECONDS", 3 * 86_400, 1, 365 * 86_400)?,
            snooze_days: number("FINOPS_SNOOZE_DAYS", 7, 1, 365)?,
            undo_window_days: number("FINOPS_UNDO_WINDOW_DAYS", 14, 1, 90)?,
            owner_domains: owner::allowed_domains(
                &vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>(),
            )?,
            mode,
            routing,
        })
    }
}

/// Everything the request step reads from its environment: its behaviour ([`RequestConfig`]), where the records and
/// the signing key are, and the approvals topic (`FINOPS_APPROVAL_TOPIC_ARN`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestApprovalConfig {
    pub request: RequestConfig,
    pub store: StoreConfig,
    pub topic_arn: String,
    /// Slack, where set up (`FINOPS_SLACK_*`).
    pub slack: Option<SlackConfig>,
    /// Where owner notices come from (`FINOPS_OWNER_NOTICES_FROM`, an SES-verified address); None: no notices.
    pub owner_notices_from: Option<String>,
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
            slack: SlackConfig::from_vars(&vars)?,
            owner_notices_from: owner::from_address(&vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), "act".to_string()),
        ];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    #[test]
    fn who_may_decide_is_the_deployments_and_a_bad_setting_is_refused() {
        let everyone = RequestConfig::from_vars(vars(&[
            ("FINOPS_APPROVERS", "ops@example.com, finops@example.com"),
            ("FINOPS_SLACK_CHANNEL", "C0FINOPS"),
            ("FINOPS_SLACK_APPROVERS", "U0OPS"),
        ]))
        .unwrap();
        let routing = everyone.routing.unwrap();
        assert!(routing.routes.is_empty());
        assert_eq!(routing.default, ["ops@example.com", "finops@example.com"]);
        assert_eq!(
            (routing.default_slack_channel.as_deref(), routing.default_slack_users.len()),
            (Some("C0FINOPS"), 1)
        );
        let routed = RequestConfig::from_vars(vars(&[(
            "FINOPS_APPROVAL_ROUTING",
            r#"{"routes": [{"account": "111111111111", "approvers": ["data@example.com"]}]}"#,
        )]))
        .unwrap();
        assert_eq!(routed.routing.unwrap().routes.len(), 1);
        for (pairs, why) in [
            (vec![], "names nobody"),
            (vec![("FINOPS_APPROVERS", "not an address")], "FINOPS_APPROVERS"),
            (vec![("FINOPS_APPROVERS", "ops@example.com"), ("FINOPS_SLACK_APPROVERS", "ops")], "Slack user id"),
            (vec![("FINOPS_APPROVERS", "ops@example.com"), ("FINOPS_SLACK_CHANNEL", "#finops")], "channel id"),
            // A channel where nobody is named to click would be asked in vain.
            (vec![("FINOPS_APPROVERS", "ops@example.com"), ("FINOPS_SLACK_CHANNEL", "C0FINOPS")], "user ids"),
            (vec![("FINOPS_APPROVAL_ROUTING", r#"{"routes": []}"#)], "FINOPS_APPROVAL_ROUTING"),
        ] {
            let err = RequestConfig::from_vars(vars(&pairs)).unwrap_err().to_string();
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
        // Recommend mode asks nobody: no approver is needed.
        let recommend = RequestConfig::from_vars(vec![
            ("FINOPS_APPROVAL_BASE_URL".to_string(), "https://approve.example.com".to_string()),
            ("FINOPS_MODE".to_string(), "recommend".to_string()),
        ])
        .unwrap();
        assert_eq!(recommend.routing, None);
    }
}
