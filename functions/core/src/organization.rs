//! An AWS Organization as the run sees it: which accounts it covers, the (account, region) work items it fans out
//! over, and who approves what is proposed in each account. Pure: the AWS adapters turn Organizations' answers into
//! [`Account`]s, and every choice made from them is here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The read-only role the member StackSet puts in every account (describe, list and get metrics): named for this
/// tool and what it may do, so it clashes with no other tool's role.
pub const DETECTION_ROLE_NAME: &str = "finops-agent-read-only";
/// The member role that snapshots, tags and stops, under the same production Deny as the hub's actions role.
pub const ACTIONS_ROLE_NAME: &str = "finops-agent-actions";

/// The account a record, proposal or report line belongs to: what every output names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    pub id: String,
    pub name: String,
}

impl AccountRef {
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self { id: id.into(), name: name.into() }
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() || self.name == self.id {
            write!(f, "{}", self.id)
        } else {
            write!(f, "{} ({})", self.name, self.id)
        }
    }
}

/// Organizations' account status. Only active accounts are scanned: a suspended account's API calls fail, and it is
/// on its way out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    Active,
    Suspended,
    PendingActivation,
    PendingClosure,
    Closed,
}

impl AccountStatus {
    /// Why an account in this status is not scanned (None: it is).
    pub fn skip_reason(&self) -> Option<&'static str> {
        match self {
            Self::Active => None,
            Self::Suspended => Some("suspended"),
            Self::PendingActivation => Some("not yet active"),
            Self::PendingClosure => Some("pending closure"),
            Self::Closed => Some("closed"),
        }
    }
}

/// A member of the organization as ListAccounts and the OU tree describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub name: String,
    pub status: AccountStatus,
    /// The organizational units above the account, outermost first (the root not included): an account under
    /// `ou-a/ou-b` is in both.
    #[serde(default)]
    pub ous: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Account {
    pub fn reference(&self) -> AccountRef {
        AccountRef::new(&self.id, &self.name)
    }

    /// An account known by its id alone (no OUs or tags known: only account routes and the default apply).
    pub fn bare(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: id.to_owned(),
            status: AccountStatus::Active,
            ous: vec![],
            tags: BTreeMap::new(),
        }
    }
}

/// Which accounts a run covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountScope {
    /// Every active account of the organization, or only those under these OUs (at any depth).
    Organization { ous: Vec<String> },
    /// These accounts, whether or not Organizations can be read (their names then are their ids).
    Listed(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSelection {
    pub scope: AccountScope,
    /// Never scanned, whatever the scope says.
    pub exclude: BTreeSet<String>,
    /// The deploying (hub) account is covered unless this is false or it is excluded.
    pub include_hub: bool,
}

/// An account the selection names but the run does not scan, and why: reported, never silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedAccount {
    pub account: AccountRef,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedAccounts {
    pub accounts: Vec<AccountRef>,
    pub skipped: Vec<SkippedAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("{0:?} is not an AWS account id (12 digits)")]
    BadAccountId(String),
    #[error("{0:?} is not an organizational unit id (ou-xxxx-xxxxxxxx) or root id (r-xxxx)")]
    BadOuId(String),
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    #[error("approval routing: {0}")]
    BadRouting(String),
    #[error("organization configuration: {0}")]
    BadConfig(String),
}

pub fn parse_account_id(text: &str) -> Result<String, OrganizationError> {
    let id = text.trim();
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_owned())
    } else {
        Err(OrganizationError::BadAccountId(text.to_owned()))
    }
}

/// Parses a comma-separated account list, dropping duplicates but keeping order.
pub fn parse_account_list(list: &str) -> Result<Vec<String>, OrganizationError> {
    let mut ids: Vec<String> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let id = parse_account_id(part)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// `ou-` + 4 to 32 lowercase letters or digits + `-` + 8 to 32 more (Organizations' pattern), or a root `r-xxxx`.
pub fn parse_ou_id(text: &str) -> Result<String, OrganizationError> {
    let id = text.trim();
    let lower_alnum = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = match id.strip_prefix("ou-").map(|rest| rest.split_once('-')) {
        Some(Some((root, unit))) => {
            (4..=32).contains(&root.len()) && (8..=32).contains(&unit.len()) && lower_alnum(root) && lower_alnum(unit)
        }
        Some(None) => false,
        None => id.strip_prefix("r-").is_some_and(|r| (4..=32).contains(&r.len()) && lower_alnum(r)),
    };
    if ok {
        Ok(id.to_owned())
    } else {
        Err(OrganizationError::BadOuId(text.to_owned()))
    }
}

/// The accounts a run covers: active members in scope, minus exclusions, plus the hub. `directory` is what
/// Organizations lists (None when it cannot be read: only a listed scope works then).
pub fn select_accounts(
    selection: &AccountSelection,
    directory: Option<&[Account]>,
    hub: &AccountRef,
) -> SelectedAccounts {
    let mut selected = SelectedAccounts::default();
    let take = |account: AccountRef, status: Option<&AccountStatus>, selected: &mut SelectedAccounts| {
        if selected.accounts.iter().chain(selected.skipped.iter().map(|s| &s.account)).any(|a| a.id == account.id) {
            return;
        }
        let reason = if selection.exclude.contains(&account.id) {
            Some("excluded by configuration".to_owned())
        } else {
            status.and_then(AccountStatus::skip_reason).map(str::to_owned)
        };
        match reason {
            Some(reason) => selected.skipped.push(SkippedAccount { account, reason }),
            None => selected.accounts.push(account),
        }
    };
    let known = |id: &str| directory.and_then(|d| d.iter().find(|a| a.id == id));
    match &selection.scope {
        AccountScope::Organization { ous } => {
            for account in directory.unwrap_or_default() {
                let in_scope = ous.is_empty() || account.ous.iter().any(|ou| ous.contains(ou));
                if in_scope {
                    take(account.reference(), Some(&account.status), &mut selected);
                }
            }
        }
        AccountScope::Listed(ids) => {
            for id in ids {
                match (directory, known(id)) {
                    (_, Some(account)) => take(account.reference(), Some(&account.status), &mut selected),
                    (None, None) => take(AccountRef::new(id, id), None, &mut selected),
                    (Some(_), None) => selected.skipped.push(SkippedAccount {
                        account: AccountRef::new(id, id),
                        reason: "not a member of the organization".into(),
                    }),
                }
            }
        }
    }
    if selection.include_hub && !selected.accounts.iter().any(|a| a.id == hub.id) {
        let status = known(&hub.id).map(|a| &a.status);
        let hub = known(&hub.id).map_or_else(|| hub.clone(), Account::reference);
        take(hub, status, &mut selected);
    }
    selected
}

/// A deployment that covers an organization: which accounts, and the member roles' names. Read from the
/// environment the CDK app sets: `FINOPS_ACCOUNTS` (`organization`, or a comma-separated list of ids; unset means
/// this account only), `FINOPS_ORGANIZATION_OUS`, `FINOPS_EXCLUDE_ACCOUNTS`, `FINOPS_INCLUDE_HUB` (default true),
/// `FINOPS_MEMBER_READ_ROLE`, `FINOPS_MEMBER_ACTIONS_ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationConfig {
    pub selection: AccountSelection,
    pub read_role: String,
    pub actions_role: String,
    /// Who approves what (`FINOPS_APPROVAL_ROUTING`); none: every approver of the deployment sees every proposal.
    pub approval_routing: Option<ApprovalRouting>,
}

impl OrganizationConfig {
    /// Every active account of the organization, the hub included, through the default role names: what
    /// `FINOPS_ACCOUNTS=organization` alone means.
    pub fn whole_organization() -> Self {
        Self {
            selection: AccountSelection {
                scope: AccountScope::Organization { ous: vec![] },
                exclude: BTreeSet::new(),
                include_hub: true,
            },
            read_role: DETECTION_ROLE_NAME.into(),
            actions_role: ACTIONS_ROLE_NAME.into(),
            approval_routing: None,
        }
    }

    /// None for a single-account deployment. Every value is checked: a typo in an id or OU is an error, not an
    /// account silently left out.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Option<Self>, OrganizationError> {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let Some(accounts) = get("FINOPS_ACCOUNTS") else { return Ok(None) };
        let ous = get("FINOPS_ORGANIZATION_OUS")
            .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_ou_id).collect())
            .transpose()?
            .unwrap_or_default();
        let scope = if accounts.eq_ignore_ascii_case("organization") {
            AccountScope::Organization { ous }
        } else {
            if !ous.is_empty() {
                return Err(OrganizationError::BadConfig(
                    "FINOPS_ORGANIZATION_OUS applies to FINOPS_ACCOUNTS=organization only".into(),
                ));
            }
            AccountScope::Listed(parse_account_list(accounts)?)
        };
        let exclude = parse_account_list(get("FINOPS_EXCLUDE_ACCOUNTS").unwrap_or_default())?.into_iter().collect();
        let include_hub = match get("FINOPS_INCLUDE_HUB").map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(OrganizationError::BadConfig(format!(
                    "FINOPS_INCLUDE_HUB must be true or false, not {other:?}"
                )))
            }
        };
        let role = |key: &str, default: &str| -> Result<String, OrganizationError> {
            let name = get(key).unwrap_or(default);
            // IAM role names: 1-64 of [\w+=,.@-].
            let ok = name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
            if ok {
                Ok(name.to_owned())
            } else {
                Err(OrganizationError::BadConfig(format!("{key}: {name:?} is not an IAM role name")))
            }
        };
        Ok(Some(Self {
            selection: AccountSelection { scope, exclude, include_hub },
            read_role: role("FINOPS_MEMBER_READ_ROLE", DETECTION_ROLE_NAME)?,
            actions_role: role("FINOPS_MEMBER_ACTIONS_ROLE", ACTIONS_ROLE_NAME)?,
            approval_routing: get("FINOPS_APPROVAL_ROUTING").map(ApprovalRouting::parse).transpose()?,
        }))
    }
}

/// One unit of the fan-out: one account in one region. Small on purpose: thousands of them go to S3 and a
/// Distributed Map hands each to a child execution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkItem {
    pub account: AccountRef,
    pub region: String,
}

/// Every (account, region) pair, accounts in selection order, regions in configured order.
pub fn plan_work_items(accounts: &[AccountRef], regions: &[String]) -> Vec<WorkItem> {
    accounts
        .iter()
        .flat_map(|a| regions.iter().map(move |r| WorkItem { account: a.clone(), region: r.clone() }))
        .collect()
}

/// What a work item that could not be scanned reports: the run goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreachableItem {
    pub item: WorkItem,
    /// What AWS said, in a sentence: "role finops-detection cannot be assumed: AccessDenied ...".
    pub reason: String,
}

/// Who is asked to approve what is proposed in an account, and who may decide it: the deployment's configuration,
/// written by the CDK app into the request step's environment (`FINOPS_APPROVAL_ROUTING`) and read-only to every
/// function. The request step applies it to the account's live facts (its OUs and tags in Organizations) for each
/// proposal; nothing a detection step writes takes part.
///
/// Written as JSON (CDK context `approvalRouting`, env `FINOPS_APPROVAL_ROUTING`):
/// `{"routes": [{"account": "111111111111", "approvers": ["a@example.com"], "slackChannel": "C0DATA",
/// "slackUsers": ["U0ANA"]}, {"ou": "ou-ab12-cd34ef56", "approvers": [...]}, {"tag": "team=data", "approvers": [...]}],
/// "default": ["finops@example.com"]}`. The most specific route wins: the account's own, then its innermost OU's, then
/// the first matching tag route, then the default. An account no route and no default covers has no approver, and
/// nothing in it is proposed. A deployment that does not route has one audience for everything
/// ([`ApprovalRouting::everyone`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalRouting {
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub default: Vec<String>,
    /// The default approvers' Slack channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_slack_channel: Option<String>,
    /// The Slack users (`U...`) whose clicks decide for the default approvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_slack_users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ou: Option<String>,
    /// `key=value`, matched exactly against the account's tags in Organizations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub approvers: Vec<String>,
    /// The Slack channel of this group of approvers (`C...`), where the deployment asks in Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// The Slack users (`U...`) of this group: only their clicks decide (anyone else in the channel is told no).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_users: Vec<String>,
}

/// Who is asked about one proposal and who may decide it, and the route that chose them: stored on the approval
/// record when it is created (only the request step writes it) and checked by the page, the Slack callback and the
/// acting step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audience {
    /// Each gets their own message with links signed for them; a link decides as its recipient.
    pub approvers: Vec<String>,
    pub because: String,
    /// The group's Slack channel, where the deployment asks in Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// The Slack users whose click in that channel decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_users: Vec<String>,
}

impl Audience {
    /// Whether `address` (a link's recipient) is one of these approvers: addresses compare without case.
    pub fn allows(&self, address: &str) -> bool {
        let who = address.trim();
        !who.is_empty() && self.approvers.iter().any(|a| a.trim().eq_ignore_ascii_case(who))
    }

    /// Whether a click by Slack user `user_id` decides for this audience.
    pub fn allows_slack_user(&self, user_id: &str) -> bool {
        self.slack_users.iter().any(|u| u == user_id)
    }

    /// The channel to ask in: only where someone there may decide (a channel without allowed users is asked by
    /// email only).
    pub fn slack_ask_channel(&self) -> Option<&str> {
        self.slack_channel.as_deref().filter(|_| !self.slack_users.is_empty())
    }
}

fn check_email(address: &str) -> Result<(), OrganizationError> {
    if crate::approval::is_email_address(address) {
        Ok(())
    } else {
        Err(OrganizationError::BadEmail(address.to_owned()))
    }
}

fn check_slack_users(users: &[String], what: &str) -> Result<(), OrganizationError> {
    match users.iter().find(|u| !crate::slack::is_slack_id(u) || !u.starts_with(['U', 'W'])) {
        Some(u) => Err(OrganizationError::BadRouting(format!("{what}: {u:?} is not a Slack user id (like U0123ABCD)"))),
        None => Ok(()),
    }
}

/// A channel must be an id, and name who decides there: a channel where nobody may click would be asked in vain.
fn check_slack_channel(channel: Option<&str>, users: &[String], what: &str) -> Result<(), OrganizationError> {
    match channel {
        Some(c) if !crate::slack::is_slack_id(c) => {
            Err(OrganizationError::BadRouting(format!("{what} {c:?} is not a Slack channel id (like C0123ABCD)")))
        }
        Some(_) if users.is_empty() => {
            Err(OrganizationError::BadRouting(format!("{what} needs the Slack user ids whose clicks decide there")))
        }
        _ => Ok(()),
    }
}

impl ApprovalRouting {
    /// Parses and checks a routing table: each route matches on exactly one of account, OU or tag, names at least
    /// one approver, and every address and id is well formed. Unknown fields are refused (a typo such as `acount`
    /// would otherwise silently route nothing).
    pub fn parse(json: &str) -> Result<Self, OrganizationError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| OrganizationError::BadRouting(format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            // serde would read a struct from an array by position; a table is an object.
            return Err(OrganizationError::BadRouting(
                "expected a JSON object {\"routes\": [...], \"default\": [...]}".into(),
            ));
        }
        let routing: Self = serde_json::from_value(value).map_err(|e| OrganizationError::BadRouting(e.to_string()))?;
        if routing.routes.is_empty() && routing.default.is_empty() {
            return Err(OrganizationError::BadRouting("it names no approver at all".into()));
        }
        routing.validate()?;
        Ok(routing)
    }

    /// A deployment that does not route: everyone it names approves everything (`FINOPS_APPROVERS`, and in Slack
    /// `FINOPS_SLACK_CHANNEL` with `FINOPS_SLACK_APPROVERS`).
    pub fn everyone(
        approvers: Vec<String>,
        slack_channel: Option<String>,
        slack_users: Vec<String>,
    ) -> Result<Self, OrganizationError> {
        if approvers.is_empty() {
            return Err(OrganizationError::BadRouting("it names no approver at all".into()));
        }
        let routing = Self {
            routes: vec![],
            default: approvers,
            default_slack_channel: slack_channel,
            default_slack_users: slack_users,
        };
        routing.validate()?;
        Ok(routing)
    }

    pub fn validate(&self) -> Result<(), OrganizationError> {
        for (i, route) in self.routes.iter().enumerate() {
            let n = i + 1;
            let matchers = [route.account.is_some(), route.ou.is_some(), route.tag.is_some()];
            if matchers.iter().filter(|m| **m).count() != 1 {
                return Err(OrganizationError::BadRouting(format!(
                    "route {n} must match on exactly one of account, ou or tag"
                )));
            }
            if let Some(id) = &route.account {
                parse_account_id(id)?;
            }
            if let Some(ou) = &route.ou {
                parse_ou_id(ou)?;
            }
            if let Some(tag) = &route.tag {
                match tag.split_once('=') {
                    Some((k, _)) if !k.trim().is_empty() => {}
                    _ => return Err(OrganizationError::BadRouting(format!("route {n}: tag must be key=value"))),
                }
            }
            if route.approvers.is_empty() {
                return Err(OrganizationError::BadRouting(format!("route {n} names no approver")));
            }
            route.approvers.iter().try_for_each(|a| check_email(a))?;
            check_slack_channel(
                route.slack_channel.as_deref(),
                &route.slack_users,
                &format!("route {n}: slackChannel"),
            )?;
            check_slack_users(&route.slack_users, &format!("route {n}: slackUsers"))?;
        }
        check_slack_channel(self.default_slack_channel.as_deref(), &self.default_slack_users, "defaultSlackChannel")?;
        check_slack_users(&self.default_slack_users, "defaultSlackUsers")?;
        self.default.iter().try_for_each(|a| check_email(a))
    }

    /// The audience of a proposal in `account` (None: nobody may approve anything there).
    pub fn audience_for(&self, account: &Account) -> Option<Audience> {
        let routed = |route: &Route, because: String| Audience {
            approvers: route.approvers.clone(),
            because,
            slack_channel: route.slack_channel.clone(),
            slack_users: route.slack_users.clone(),
        };
        if let Some(route) = self.routes.iter().find(|r| r.account.as_deref() == Some(account.id.as_str())) {
            return Some(routed(route, format!("account {}", account.id)));
        }
        for ou in account.ous.iter().rev() {
            if let Some(route) = self.routes.iter().find(|r| r.ou.as_deref() == Some(ou.as_str())) {
                return Some(routed(route, format!("organizational unit {ou}")));
            }
        }
        let tag_route = self.routes.iter().find(|r| {
            r.tag
                .as_deref()
                .and_then(|t| t.split_once('='))
                .is_some_and(|(k, v)| account.tags.get(k.trim()).map(String::as_str) == Some(v.trim()))
        });
        if let Some(route) = tag_route {
            return Some(routed(route, format!("account tag {}", route.tag.as_deref().unwrap_or_default())));
        }
        (!self.default.is_empty()).then(|| Audience {
            approvers: self.default.clone(),
            because: if self.routes.is_empty() { "the deployment's approvers" } else { "default approvers" }.into(),
            slack_channel: self.default_slack_channel.clone(),
            slack_users: self.default_slack_users.clone(),
        })
    }

    /// Whether any route needs the account's place in the organization (an OU or tag route): only then is
    /// Organizations read.
    pub fn needs_account_facts(&self) -> bool {
        self.routes.iter().any(|r| r.ou.is_some() || r.tag.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_may_name_its_groups_slack_channel() {
        let routing = ApprovalRouting::parse(
            r#"{"routes": [{"account": "111111111111", "approvers": ["a@example.com"], "slackChannel": "C0DATA",
                "slackUsers": ["U0DATA"]}], "default": ["b@example.com"], "defaultSlackChannel": "C0FINOPS",
                "defaultSlackUsers": ["U0OPS"]}"#,
        )
        .unwrap();
        let data = routing.audience_for(&account("111111111111", "data", &[])).unwrap();
        assert_eq!(data.slack_channel.as_deref(), Some("C0DATA"));
        let other = routing.audience_for(&account("222222222222", "web", &[])).unwrap();
        assert_eq!(other.slack_channel.as_deref(), Some("C0FINOPS"));
        let named = r##"{"routes": [], "default": ["b@example.com"], "defaultSlackChannel": "#finops",
            "defaultSlackUsers": ["U0OPS"]}"##;
        assert!(ApprovalRouting::parse(named).unwrap_err().to_string().contains("not a Slack channel id"));
    }

    fn account(id: &str, name: &str, ous: &[&str]) -> Account {
        Account {
            id: id.into(),
            name: name.into(),
            status: AccountStatus::Active,
            ous: ous.iter().map(|s| s.to_string()).collect(),
            tags: BTreeMap::new(),
        }
    }

    const HUB: &str = "999999999999";
    const WORKLOADS: &str = "ou-ab12-workload";
    const SANDBOX: &str = "ou-ab12-sandboxx";

    fn organization() -> Vec<Account> {
        let mut suspended = account("333333333333", "old-project", &[WORKLOADS]);
        suspended.status = AccountStatus::Suspended;
        vec![
            account(HUB, "finops-hub", &[]),
            account("111111111111", "data-dev", &[WORKLOADS, "ou-ab12-dataaaaa"]),
            account("222222222222", "web-dev", &[WORKLOADS]),
            suspended,
            account("444444444444", "alice-sandbox", &[SANDBOX]),
        ]
    }

    fn hub() -> AccountRef {
        AccountRef::new(HUB, "finops-hub")
    }

    fn ids(accounts: &[AccountRef]) -> Vec<&str> {
        accounts.iter().map(|a| a.id.as_str()).collect()
    }

    fn whole(exclude: &[&str], include_hub: bool) -> AccountSelection {
        AccountSelection {
            scope: AccountScope::Organization { ous: vec![] },
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            include_hub,
        }
    }

    #[test]
    fn the_whole_organization_skips_suspended_accounts_and_says_so() {
        let org = organization();
        let selected = select_accounts(&whole(&[], true), Some(&org), &hub());
        assert_eq!(ids(&selected.accounts), [HUB, "111111111111", "222222222222", "444444444444"]);
        assert_eq!(selected.skipped.len(), 1);
        assert_eq!(selected.skipped[0].account.name, "old-project");
        assert_eq!(selected.skipped[0].reason, "suspended");
    }

    #[test]
    fn ous_select_accounts_at_any_depth_and_the_hub_is_added() {
        let org = organization();
        let selection = AccountSelection {
            scope: AccountScope::Organization { ous: vec![WORKLOADS.into()] },
            exclude: BTreeSet::new(),
            include_hub: true,
        };
        let selected = select_accounts(&selection, Some(&org), &hub());
        assert_eq!(ids(&selected.accounts), ["111111111111", "222222222222", HUB]);
        assert_eq!(selected.accounts[2].name, "finops-hub", "the hub's name comes from the directory");
    }

    #[test]
    fn exclusions_win_over_scope_and_hub() {
        let org = organization();
        let selected = select_accounts(&whole(&[HUB, "222222222222"], true), Some(&org), &hub());
        assert_eq!(ids(&selected.accounts), ["111111111111", "444444444444"]);
        let excluded: Vec<&str> =
            selected.skipped.iter().filter(|s| s.reason.contains("excluded")).map(|s| s.account.id.as_str()).collect();
        assert_eq!(excluded, [HUB, "222222222222"]);
        let without_hub = select_accounts(
            &AccountSelection {
                scope: AccountScope::Listed(vec!["111111111111".into()]),
                exclude: BTreeSet::new(),
                include_hub: false,
            },
            Some(&org),
            &hub(),
        );
        assert_eq!(ids(&without_hub.accounts), ["111111111111"]);
    }

    #[test]
    fn a_listed_scope_works_without_organizations_and_checks_membership_with_it() {
        let listed = AccountSelection {
            scope: AccountScope::Listed(vec!["222222222222".into(), "555555555555".into(), "333333333333".into()]),
            exclude: BTreeSet::new(),
            include_hub: true,
        };
        let blind = select_accounts(&listed, None, &hub());
        assert_eq!(ids(&blind.accounts), ["222222222222", "555555555555", "333333333333", HUB]);
        assert_eq!(blind.accounts[1].name, "555555555555", "no directory: the name is the id");
        let org = organization();
        let checked = select_accounts(&listed, Some(&org), &hub());
        assert_eq!(ids(&checked.accounts), ["222222222222", HUB]);
        let reasons: Vec<(&str, &str)> =
            checked.skipped.iter().map(|s| (s.account.id.as_str(), s.reason.as_str())).collect();
        assert_eq!(reasons, [("555555555555", "not a member of the organization"), ("333333333333", "suspended")]);
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_organization_configuration_is_read_and_checked() {
        assert_eq!(OrganizationConfig::from_vars(vars(&[("FINOPS_REGIONS", "us-east-1")])).unwrap(), None);
        let whole = OrganizationConfig::from_vars(vars(&[
            ("FINOPS_ACCOUNTS", "organization"),
            ("FINOPS_ORGANIZATION_OUS", "ou-ab12-cd34ef56, ou-ab12-zz34ef56"),
            ("FINOPS_EXCLUDE_ACCOUNTS", "111111111111"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            whole.selection.scope,
            AccountScope::Organization { ous: vec!["ou-ab12-cd34ef56".into(), "ou-ab12-zz34ef56".into()] }
        );
        assert!(whole.selection.exclude.contains("111111111111") && whole.selection.include_hub);
        assert_eq!((whole.read_role.as_str(), whole.actions_role.as_str()), (DETECTION_ROLE_NAME, ACTIONS_ROLE_NAME));
        let alone = OrganizationConfig::from_vars(vars(&[("FINOPS_ACCOUNTS", "organization")])).unwrap().unwrap();
        assert_eq!(alone, OrganizationConfig::whole_organization());
        let listed = OrganizationConfig::from_vars(vars(&[
            ("FINOPS_ACCOUNTS", "222222222222,333333333333"),
            ("FINOPS_INCLUDE_HUB", "false"),
            ("FINOPS_MEMBER_READ_ROLE", "acme-finops-read"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(listed.selection.scope, AccountScope::Listed(vec!["222222222222".into(), "333333333333".into()]));
        assert!(!listed.selection.include_hub);
        assert_eq!(listed.read_role, "acme-finops-read");
        for bad in [
            vec![("FINOPS_ACCOUNTS", "organisation")],
            vec![("FINOPS_ACCOUNTS", "organization"), ("FINOPS_ORGANIZATION_OUS", "workloads")],
            vec![("FINOPS_ACCOUNTS", "222222222222"), ("FINOPS_ORGANIZATION_OUS", "ou-ab12-cd34ef56")],
            vec![("FINOPS_ACCOUNTS", "organization"), ("FINOPS_INCLUDE_HUB", "yes")],
            vec![("FINOPS_ACCOUNTS", "organization"), ("FINOPS_MEMBER_READ_ROLE", "role/with/slashes")],
            vec![("FINOPS_ACCOUNTS", "organization"), ("FINOPS_EXCLUDE_ACCOUNTS", "12")],
        ] {
            assert!(OrganizationConfig::from_vars(vars(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn work_items_cover_every_account_and_region_once() {
        let accounts = [AccountRef::new("111111111111", "a"), AccountRef::new("222222222222", "b")];
        let regions = ["us-east-1".to_string(), "eu-west-1".to_string()];
        let items = plan_work_items(&accounts, &regions);
        let pairs: Vec<(&str, &str)> = items.iter().map(|i| (i.account.id.as_str(), i.region.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("111111111111", "us-east-1"),
                ("111111111111", "eu-west-1"),
                ("222222222222", "us-east-1"),
                ("222222222222", "eu-west-1")
            ]
        );
        assert!(plan_work_items(&[], &regions).is_empty());
    }

    #[test]
    fn ids_are_checked() {
        assert_eq!(parse_account_list(" 111111111111, 222222222222,111111111111").unwrap().len(), 2);
        assert!(matches!(parse_account_list("11111111111"), Err(OrganizationError::BadAccountId(_))));
        assert!(matches!(parse_account_list("11111111111a"), Err(OrganizationError::BadAccountId(_))));
        assert!(parse_ou_id("ou-ab12-cd34ef56").is_ok());
        assert!(parse_ou_id("r-ab12").is_ok());
        for bad in ["ou-ab12", "ou-AB12-cd34ef56", "ou-ab1-cd34ef56", "ou-ab12-cd34", "111111111111", "r-a"] {
            assert!(parse_ou_id(bad).is_err(), "{bad}");
        }
    }

    fn routing() -> ApprovalRouting {
        ApprovalRouting::parse(
            r#"{"routes": [
                {"tag": "team=data", "approvers": ["data-leads@example.com"]},
                {"ou": "ou-ab12-workload", "approvers": ["workloads@example.com"]},
                {"ou": "ou-ab12-dataaaaa", "approvers": ["data-platform@example.com"]},
                {"account": "222222222222", "approvers": ["web@example.com", "web-oncall@example.com"]}
            ], "default": ["finops@example.com"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_most_specific_route_wins() {
        let routing = routing();
        let org = organization();
        let by_id = |id: &str| org.iter().find(|a| a.id == id).unwrap().clone();
        let web = routing.audience_for(&by_id("222222222222")).unwrap();
        assert_eq!(web.approvers, ["web@example.com", "web-oncall@example.com"]);
        assert_eq!(web.because, "account 222222222222");
        let data = routing.audience_for(&by_id("111111111111")).unwrap();
        assert_eq!(data.approvers, ["data-platform@example.com"], "the innermost OU beats the outer one");
        let mut tagged = by_id("444444444444");
        tagged.tags.insert("team".into(), "data".into());
        assert_eq!(routing.audience_for(&tagged).unwrap().because, "account tag team=data");
        tagged.tags.insert("team".into(), "data-science".into());
        assert_eq!(routing.audience_for(&tagged).unwrap().because, "default approvers", "tags match exactly");
        let nobody = ApprovalRouting::default();
        assert_eq!(nobody.audience_for(&tagged), None);
    }

    #[test]
    fn only_the_audience_may_decide_and_slack_only_where_someone_may_click() {
        let only_web =
            ApprovalRouting::parse(r#"{"routes": [{"account": "222222222222", "approvers": ["web@example.com"]}]}"#)
                .unwrap();
        // A channel where nobody is named to click is a setting error, and an audience stored without its users (an
        // older record) is not asked in Slack.
        let no_users =
            r#"{"routes": [{"account": "222222222222", "approvers": ["w@example.com"], "slackChannel": "C0WEB"}]}"#;
        assert!(ApprovalRouting::parse(no_users).unwrap_err().to_string().contains("Slack user ids"));
        let stored = Audience { slack_channel: Some("C0WEB".into()), ..Audience::default() };
        assert_eq!(stored.slack_ask_channel(), None, "a channel where nobody may click is not asked");
        let org = organization();
        assert_eq!(only_web.audience_for(&org[0]), None, "no route, no default: nobody");
        let web = only_web.audience_for(org.iter().find(|a| a.id == "222222222222").unwrap()).unwrap();
        assert!(web.allows(" WEB@example.com ") && !web.allows("finops@example.com") && !web.allows(""));
        assert!(!web.allows("web@example.com.evil.io"));
        assert!(!web.allows_slack_user("U0ANYONE"));
        let with_users = ApprovalRouting::parse(
            r#"{"routes": [{"account": "222222222222", "approvers": ["web@example.com"], "slackChannel": "C0WEB",
                "slackUsers": ["U0ANA", "W0BOB"]}]}"#,
        )
        .unwrap()
        .audience_for(org.iter().find(|a| a.id == "222222222222").unwrap())
        .unwrap();
        assert_eq!(with_users.slack_ask_channel(), Some("C0WEB"));
        assert!(with_users.allows_slack_user("U0ANA") && with_users.allows_slack_user("W0BOB"));
        assert!(!with_users.allows_slack_user("U0MALLORY") && !with_users.allows_slack_user("u0ana"));
        // The OU routes need the organization's tree: only they make the request step read Organizations.
        assert!(routing().needs_account_facts() && !only_web.needs_account_facts());
    }

    #[test]
    fn a_deployment_that_does_not_route_has_one_audience() {
        let everyone = ApprovalRouting::everyone(
            vec!["ops@example.com".into(), "finops@example.com".into()],
            Some("C0FINOPS".into()),
            vec!["U0OPS".into()],
        )
        .unwrap();
        let audience = everyone.audience_for(&organization()[0]).unwrap();
        assert_eq!(audience.approvers, ["ops@example.com", "finops@example.com"]);
        assert_eq!(audience.because, "the deployment's approvers");
        assert_eq!((audience.slack_ask_channel(), audience.allows_slack_user("U0OPS")), (Some("C0FINOPS"), true));
        assert!(ApprovalRouting::everyone(vec![], None, vec![]).is_err());
        assert!(ApprovalRouting::everyone(vec!["not an address".into()], None, vec![]).is_err());
        let bad_user = ApprovalRouting::everyone(vec!["ops@example.com".into()], None, vec!["C0CHANNEL".into()]);
        assert!(bad_user.unwrap_err().to_string().contains("not a Slack user id"));
    }

    #[test]
    fn the_routing_table_comes_from_the_environment_and_a_bad_one_is_refused() {
        let table = r#"{"routes": [], "default": ["finops@example.com"]}"#;
        let config = OrganizationConfig::from_vars(vars(&[
            ("FINOPS_ACCOUNTS", "organization"),
            ("FINOPS_APPROVAL_ROUTING", table),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(config.approval_routing.unwrap().default, ["finops@example.com"]);
        let bad = OrganizationConfig::from_vars(vars(&[
            ("FINOPS_ACCOUNTS", "organization"),
            ("FINOPS_APPROVAL_ROUTING", r#"{"default": ["not an address"]}"#),
        ]));
        assert!(matches!(bad, Err(OrganizationError::BadEmail(_))), "{bad:?}");
    }

    #[test]
    fn a_bad_routing_table_is_refused_with_the_reason() {
        let cases = [
            (r#"{"routes": [{"acount": "111111111111", "approvers": ["a@example.com"]}]}"#, "unknown field"),
            (r#"{"routes": [{"approvers": ["a@example.com"]}]}"#, "exactly one"),
            (
                r#"{"routes": [{"account": "111111111111", "ou": "ou-ab12-cd34ef56", "approvers": ["a@b.io"]}]}"#,
                "exactly one",
            ),
            (r#"{"routes": [{"account": "1111", "approvers": ["a@example.com"]}]}"#, "12 digits"),
            (r#"{"routes": [{"ou": "ou-1", "approvers": ["a@example.com"]}]}"#, "organizational unit"),
            (r#"{"routes": [{"tag": "=x", "approvers": ["a@example.com"]}]}"#, "key=value"),
            (r#"{"routes": [{"account": "111111111111", "approvers": []}]}"#, "no approver"),
            (r#"{"routes": [], "default": ["not-an-address"]}"#, "email"),
            (r#"{"routes": [], "default": ["a@example.com, b@example.com"]}"#, "email"),
            (r#"{"routes": [], "default": ["a@example.com"], "defaultSlackUsers": ["alice"]}"#, "Slack user id"),
            ("[]", "JSON object"),
            ("{", "not valid JSON"),
            (r#"{"routes": []}"#, "no approver at all"),
        ];
        for (json, expected) in cases {
            let err = ApprovalRouting::parse(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }
}
