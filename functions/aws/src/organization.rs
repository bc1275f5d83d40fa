//! The organization's accounts (AWS Organizations) and a session in each member account (STS AssumeRole into the
//! role the StackSet put there). Read-only: listing accounts and assuming a role change nothing.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use finops_core::organization::{Account, AccountRef, AccountStatus};

use crate::FinopsError;

/// Where the organization's accounts come from: Organizations in deployments, a list in tests and benchmarks.
pub trait AccountDirectory: Send + Sync {
    /// Every account of the organization, with the OUs above it and its tags.
    fn accounts(&self) -> impl Future<Output = Result<Vec<Account>, FinopsError>> + Send;
}

/// AWS Organizations, read from the management account or a delegated administrator.
pub struct SdkOrganization {
    client: aws_sdk_organizations::Client,
}

impl SdkOrganization {
    pub fn new(config: &SdkConfig) -> Self {
        // Organizations is a global service whose endpoint lives in us-east-1 (aws partition).
        let config = crate::sdk::for_region(config, "us-east-1");
        Self { client: aws_sdk_organizations::Client::new(&config) }
    }
}

fn status_of(account: &aws_sdk_organizations::types::Account) -> AccountStatus {
    use aws_sdk_organizations::types::{AccountState, AccountStatus as Status};
    // `State` replaces the deprecated `Status`; older answers (and moto) carry only the latter.
    match (account.state(), account.status()) {
        (Some(AccountState::Active), _) => AccountStatus::Active,
        (Some(AccountState::Suspended), _) => AccountStatus::Suspended,
        (Some(AccountState::PendingActivation), _) => AccountStatus::PendingActivation,
        (Some(AccountState::PendingClosure), _) => AccountStatus::PendingClosure,
        (Some(AccountState::Closed), _) => AccountStatus::Closed,
        (_, Some(Status::Active)) => AccountStatus::Active,
        (_, Some(Status::PendingClosure)) => AccountStatus::PendingClosure,
        // Anything unknown is not scanned: an account the run cannot place is not one it should act in.
        _ => AccountStatus::Suspended,
    }
}

impl AccountDirectory for SdkOrganization {
    async fn accounts(&self) -> Result<Vec<Account>, FinopsError> {
        let roots = self
            .client
            .list_roots()
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("organizations", "ListRoots", e))?;
        // Walk the OU tree from each root, so every account knows the OUs above it (routing and OU scopes need
        // them; ListAccounts does not say).
        let mut parents: Vec<(String, Vec<String>)> =
            roots.roots().iter().filter_map(|r| r.id()).map(|id| (id.to_owned(), Vec::new())).collect();
        let mut accounts = Vec::new();
        while let Some((parent, path)) = parents.pop() {
            let mut pages = self.client.list_accounts_for_parent().parent_id(&parent).into_paginator().send();
            while let Some(page) = pages.next().await {
                for a in
                    page.map_err(|e| FinopsError::from_sdk("organizations", "ListAccountsForParent", e))?.accounts()
                {
                    let Some(id) = a.id() else { continue };
                    accounts.push(Account {
                        id: id.to_owned(),
                        name: a.name().unwrap_or(id).to_owned(),
                        status: status_of(a),
                        ous: path.clone(),
                        tags: BTreeMap::new(),
                    });
                }
            }
            let mut units =
                self.client.list_organizational_units_for_parent().parent_id(&parent).into_paginator().send();
            while let Some(page) = units.next().await {
                for ou in page
                    .map_err(|e| FinopsError::from_sdk("organizations", "ListOrganizationalUnitsForParent", e))?
                    .organizational_units()
                {
                    if let Some(id) = ou.id() {
                        let mut below = path.clone();
                        below.push(id.to_owned());
                        parents.push((id.to_owned(), below));
                    }
                }
            }
        }
        for account in &mut accounts {
            let mut pages = self.client.list_tags_for_resource().resource_id(&account.id).into_paginator().send();
            while let Some(page) = pages.next().await {
                for tag in page.map_err(|e| FinopsError::from_sdk("organizations", "ListTagsForResource", e))?.tags() {
                    account.tags.insert(tag.key().to_owned(), tag.value().to_owned());
                }
            }
        }
        accounts.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(accounts)
    }
}

/// One account's place in the organization as it is now: what an approval's audience is computed from (the OUs above
/// it and its tags, for OU and tag routes). Read live by the request step, never from a file a run wrote.
pub trait AccountFacts: Send + Sync {
    /// The account with its OUs (outermost first) and tags; None: not a member of the organization.
    fn account(&self, account_id: &str) -> impl Future<Output = Result<Option<Account>, FinopsError>> + Send;
}

/// A deployment whose routes need no account facts: none are read.
impl<T: AccountFacts> AccountFacts for Option<T> {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, FinopsError> {
        match self {
            Some(facts) => facts.account(account_id).await,
            None => Ok(None),
        }
    }
}

/// OUs nest at most five deep under a root; a longer walk means something is wrong.
const MAX_OU_DEPTH: usize = 8;

impl AccountFacts for SdkOrganization {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, FinopsError> {
        let described = match self.client.describe_account().account_id(account_id).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_account_not_found_exception()) => return Ok(None),
            Err(e) => return Err(FinopsError::from_sdk("organizations", "DescribeAccount", e)),
        };
        let Some(a) = described.account() else { return Ok(None) };
        let mut ous = Vec::new();
        let mut child = account_id.to_owned();
        for _ in 0..MAX_OU_DEPTH {
            let parents = self
                .client
                .list_parents()
                .child_id(&child)
                .send()
                .await
                .map_err(|e| FinopsError::from_sdk("organizations", "ListParents", e))?;
            let Some(parent) = parents.parents().first() else { break };
            let (Some(id), Some(kind)) = (parent.id(), parent.r#type()) else { break };
            if *kind != aws_sdk_organizations::types::ParentType::OrganizationalUnit {
                break;
            }
            ous.push(id.to_owned());
            child = id.to_owned();
        }
        ous.reverse();
        let mut tags = BTreeMap::new();
        let mut pages = self.client.list_tags_for_resource().resource_id(account_id).into_paginator().send();
        while let Some(page) = pages.next().await {
            for tag in page.map_err(|e| FinopsError::from_sdk("organizations", "ListTagsForResource", e))?.tags() {
                tags.insert(tag.key().to_owned(), tag.value().to_owned());
            }
        }
        Ok(Some(Account {
            id: account_id.to_owned(),
            name: a.name().unwrap_or(account_id).to_owned(),
            status: status_of(a),
            ous,
            tags,
        }))
    }
}

/// The account list of a run that does not read Organizations, or of a test.
pub struct ListedAccounts(pub Vec<Account>);

impl AccountDirectory for ListedAccounts {
    async fn accounts(&self) -> Result<Vec<Account>, FinopsError> {
        Ok(self.0.clone())
    }
}

impl AccountFacts for ListedAccounts {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, FinopsError> {
        Ok(self.0.iter().find(|a| a.id == account_id).cloned())
    }
}

/// Re-assume a member role this long before its credentials expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// An SDK configuration per member account, from STS AssumeRole into `role_name` there; the hub's own account
/// uses the hub's own credentials. Sessions are cached for the run (one AssumeRole per account, not per call) and
/// renewed shortly before they expire.
pub struct MemberSessions {
    base: SdkConfig,
    sts: aws_sdk_sts::Client,
    hub: String,
    partition: String,
    role_name: String,
    session_name: String,
    cache: Mutex<HashMap<String, (SdkConfig, SystemTime)>>,
}

impl MemberSessions {
    /// Asks STS who the hub is (GetCallerIdentity). `session_name` appears in the member's CloudTrail: the run id.
    pub async fn new(base: &SdkConfig, role_name: &str, session_name: &str) -> Result<Self, FinopsError> {
        let sts = aws_sdk_sts::Client::new(base);
        let (hub, partition) = caller(&sts).await?;
        Ok(Self {
            base: base.clone(),
            sts,
            hub,
            partition,
            role_name: role_name.to_owned(),
            session_name: session_label(session_name),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn hub_account(&self) -> &str {
        &self.hub
    }

    pub fn role_arn(&self, account_id: &str) -> String {
        format!("arn:{}:iam::{account_id}:role/{}", self.partition, self.role_name)
    }

    /// The configuration that acts as `role_name` in `account`. A role that is missing or does not trust the hub
    /// is `AccessDenied`, naming the role.
    pub async fn config_for(&self, account: &AccountRef) -> Result<SdkConfig, FinopsError> {
        if account.id == self.hub {
            return Ok(self.base.clone());
        }
        if let Some((config, expires)) = self.cache.lock().expect("session cache").get(&account.id) {
            if SystemTime::now() + REFRESH_BEFORE_EXPIRY < *expires {
                return Ok(config.clone());
            }
        }
        let role_arn = self.role_arn(&account.id);
        let assumed =
            self.sts.assume_role().role_arn(&role_arn).role_session_name(&self.session_name).send().await.map_err(
                |e| match FinopsError::from_sdk("sts", "AssumeRole", e) {
                    FinopsError::AccessDenied { service, operation, message } => FinopsError::AccessDenied {
                        service,
                        operation,
                        message: format!(
                            "role {role_arn} cannot be assumed (missing, or it does not trust this hub): {message}"
                        ),
                    },
                    other => other,
                },
            )?;
        let Some(c) = assumed.credentials() else {
            return Err(FinopsError::Aws {
                service: "sts",
                operation: "AssumeRole",
                code: "NoCredentials".into(),
                message: format!("AssumeRole of {role_arn} answered without credentials"),
            });
        };
        let expires =
            SystemTime::try_from(*c.expiration()).unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(expires),
            "finops-member-role",
        );
        let config = self.base.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build();
        self.cache.lock().expect("session cache").insert(account.id.clone(), (config.clone(), expires));
        Ok(config)
    }
}

/// The account these credentials belong to (STS GetCallerIdentity): the hub, for a deployment's functions.
pub async fn caller_account(config: &SdkConfig) -> Result<String, FinopsError> {
    Ok(caller(&aws_sdk_sts::Client::new(config)).await?.0)
}

async fn caller(sts: &aws_sdk_sts::Client) -> Result<(String, String), FinopsError> {
    let me =
        sts.get_caller_identity().send().await.map_err(|e| FinopsError::from_sdk("sts", "GetCallerIdentity", e))?;
    let account = me.account().unwrap_or_default().to_owned();
    let partition = me.arn().and_then(|arn| arn.split(':').nth(1)).unwrap_or("aws").to_owned();
    Ok((account, partition))
}

/// STS session names allow 2 to 64 of `[\w+=,.@-]`.
fn session_label(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    if clean.len() < 2 {
        "finops".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(session_label("finops-run-20261129T101500Z"), "finops-run-20261129T101500Z");
        assert_eq!(session_label("a b/c"), "a-b-c");
        assert_eq!(session_label("x"), "finops");
        assert_eq!(session_label(&"r".repeat(100)).len(), 64);
    }
}
