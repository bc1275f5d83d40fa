//! The savings step ("Prove Savings"): savings proven after the fact. Every stop, volume deletion and address release
//! the ledger records (each run's outcomes carry what was done, when, and its estimate) is checked against the live
//! resource: still stopped by that run, still deleted, still released. What holds accrues its estimate by the day
//! ([`finops_core::savings::accrue`]); what changed stops accruing at the last run that saw it hold (the ledger keeps
//! each run's confirmations). Reads only: the ledger, and EC2 in the account where each action was taken (a member
//! account through its read-only role).
//!
//! Optionally (`FINOPS_COST_EXPLORER=on`; off by default, as each request is billed at $0.01), one Cost Explorer
//! request compares the bill of EC2, EBS and public IPv4 before the first action and since
//! ([`finops_core::savings::compare_costs`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{validate_run_id, FinopsError};
use finops_core::organization::AccountRef;
use finops_core::policy::ProposedAction;
use finops_core::savings::{accrue, ActedOn, SavingsReport, StillHolds};
pub use finops_core::steps::{Confirmation, CostExplorerCheck, SavingsOutput, SavingsRequest};
use finops_inventory::{InstanceLookup, ResourceLookup};

/// The tag the actions step puts on an instance it stops (`finops_actions::TAG_RUN_ID`): which run stopped it.
const TAG_RUN_ID: &str = "finops:run-id";

/// One run's ledger item, as much of it as the savings step reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerItem {
    pub run_id: String,
    /// The run's outcomes (JSON), each acted-on one with its `acted` record.
    pub outcomes: Option<String>,
    /// The run's own savings check (JSON [`SavingsOutput`]), with its confirmations.
    pub realized: Option<String>,
    /// An undo execution's item: what it undid.
    pub undo: Option<UndoEntry>,
}

/// An undo as the ledger records it ("Record Undo In Ledger").
#[derive(Debug, Clone, PartialEq)]
pub struct UndoEntry {
    /// The run whose action was undone.
    pub of_run: String,
    pub resource_id: String,
    /// The undo step's outcome: only `done` and `already_done` undid anything.
    pub outcome: String,
    /// When it was recorded (RFC 3339).
    pub at: String,
}

/// What the ledger says was done, and until when each action was last seen holding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// (the run that acted, what it did), one per run and resource.
    pub acted: Vec<(String, ActedOn)>,
    pub confirmed: HashMap<(String, String), DateTime<Utc>>,
    /// (the run that acted, the resource) -> when a person's undo undid it.
    pub undone: HashMap<(String, String), DateTime<Utc>>,
    pub unreadable: usize,
}

impl History {
    /// Reads the items of a ledger. An item whose outcomes are not JSON is skipped and counted: the rest is still
    /// proven.
    pub fn from_items(items: impl IntoIterator<Item = LedgerItem>) -> Self {
        let mut history = Self::default();
        let mut seen = std::collections::HashSet::new();
        for item in items {
            if let Some(undo) = &item.undo {
                if ["done", "already_done"].contains(&undo.outcome.as_str()) {
                    match DateTime::parse_from_rfc3339(&undo.at) {
                        Ok(at) => {
                            let key = (undo.of_run.clone(), undo.resource_id.clone());
                            let first = history.undone.entry(key).or_insert(at.with_timezone(&Utc));
                            *first = (*first).min(at.with_timezone(&Utc));
                        }
                        Err(_) => history.unreadable += 1,
                    }
                }
            }
            if let Some(text) = &item.outcomes {
                match serde_json::from_str::<Vec<serde_json::Value>>(text) {
                    Ok(outcomes) => {
                        for outcome in outcomes {
                            let Some(acted) = outcome.get("acted").filter(|a| a.is_object()) else { continue };
                            match serde_json::from_value::<ActedOn>(acted.clone()) {
                                Ok(acted) if seen.insert((item.run_id.clone(), acted.resource_id.clone())) => {
                                    history.acted.push((item.run_id.clone(), acted));
                                }
                                Ok(_) => {}
                                Err(_) => history.unreadable += 1,
                            }
                        }
                    }
                    Err(_) => history.unreadable += 1,
                }
            }
            let confirmed = item
                .realized
                .as_deref()
                .and_then(|text| serde_json::from_str::<SavingsOutput>(text).ok())
                .map(|o| o.confirmed)
                .unwrap_or_default();
            for c in confirmed {
                let at = history.confirmed.entry((c.run_id, c.resource_id)).or_insert(c.confirmed_until);
                *at = (*at).max(c.confirmed_until);
            }
        }
        history
            .acted
            .sort_by(|a, b| a.1.acted_at.cmp(&b.1.acted_at).then_with(|| a.1.resource_id.cmp(&b.1.resource_id)));
        history
    }
}

/// The ledger, narrowed to what the savings step reads.
pub trait LedgerHistory: Send + Sync {
    fn history(&self) -> impl Future<Output = Result<History, FinopsError>> + Send;
}

/// EC2 as it is now in one account: the hub's own, or a member's through its read-only role.
pub trait Accounts: Send + Sync {
    type Live: InstanceLookup + ResourceLookup;
    fn live_in(&self, account: Option<&AccountRef>) -> impl Future<Output = Result<Self::Live, FinopsError>> + Send;
}

/// The bill, narrowed to what the optional check reads: the daily cost of the services the actions save on.
pub trait CostHistory: Send + Sync {
    /// Daily cost of [`finops_core::savings::COST_EXPLORER_SERVICES`] from `start` to `end` (exclusive).
    fn daily_cost(
        &self,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> impl Future<Output = Result<Vec<(chrono::NaiveDate, f64)>, FinopsError>> + Send;
}

/// Days of the bill before the first action the check compares with.
pub const COST_BASELINE_DAYS: i64 = 14;

/// The Cost Explorer check: one request over the baseline before the first action and every day since.
async fn check_costs<C: CostHistory>(
    costs: &C,
    report: &SavingsReport,
    now: DateTime<Utc>,
) -> Option<CostExplorerCheck> {
    let first = report.entries.iter().map(|e| e.acted.acted_at).min()?;
    let (first_day, today) = (first.date_naive(), now.date_naive());
    let start = first_day - chrono::Duration::days(COST_BASELINE_DAYS);
    Some(match costs.daily_cost(start, today.max(start + chrono::Duration::days(1))).await {
        Ok(daily) => {
            let comparison =
                finops_core::savings::compare_costs(&daily, first_day, today, report.total.estimated_monthly_usd);
            CostExplorerCheck { summary: comparison.summary.clone(), comparison: Some(comparison) }
        }
        Err(e) => CostExplorerCheck { summary: format!("not checked: {e}"), comparison: None },
    })
}

/// Whether what `run_id` did to the resource still holds, as the live resource says.
pub async fn still_holds<L: InstanceLookup + ResourceLookup>(live: &L, run_id: &str, acted: &ActedOn) -> StillHolds {
    let (region, id) = (acted.region.as_str(), acted.resource_id.as_str());
    let read = match acted.action {
        ProposedAction::SnapshotAndStop => live.describe_instance(region, id).await.map(|found| match found {
            Some(i) if ["stopping", "stopped"].contains(&i.state.as_str()) => {
                if i.tags.get(TAG_RUN_ID).map(String::as_str) == Some(run_id) {
                    StillHolds::Yes
                } else {
                    // Started and stopped again since, by another run (which counts it) or by hand.
                    StillHolds::No("stopped again since, not by this action".into())
                }
            }
            Some(i) => StillHolds::No(format!("{} now", i.state)),
            None => StillHolds::No("the instance no longer exists".into()),
        }),
        ProposedAction::SnapshotAndDelete => live.describe_volume(region, id).await.map(|found| match found {
            None => StillHolds::Yes,
            Some(v) => StillHolds::No(format!("the volume exists ({})", v.state)),
        }),
        ProposedAction::Release => live.describe_address(region, id).await.map(|found| match found {
            None => StillHolds::Yes,
            Some(_) => StillHolds::No("the address is allocated".into()),
        }),
        ProposedAction::SnapshotAndDeleteVolumes => live.describe_instance(region, id).await.map(|found| match found {
            None => StillHolds::Yes,
            Some(i) if i.volumes.is_empty() => StillHolds::Yes,
            Some(i) => StillHolds::No(format!("{} volume(s) attached again", i.volumes.len())),
        }),
    };
    read.unwrap_or_else(|e| StillHolds::Unknown(e.to_string()))
}

/// The Lambda handler.
/// `costs`: the Cost Explorer check, when the deployment turned it on.
pub async fn handle<H: LedgerHistory, A: Accounts, C: CostHistory>(
    event: serde_json::Value,
    ledger: &H,
    accounts: &A,
    costs: Option<&C>,
    now: DateTime<Utc>,
) -> Result<SavingsOutput, FinopsError> {
    let request: SavingsRequest = serde_json::from_value(event)
        .map_err(|e| FinopsError::InvalidInput(format!("savings expects {{\"runId\": \"...\"}}: {e}")))?;
    validate_run_id(&request.run_id)?;
    let history = ledger.history().await?;
    // One session per account, each action checked where it was taken.
    let mut by_account: BTreeMap<Option<String>, Vec<&(String, ActedOn)>> = BTreeMap::new();
    for entry in &history.acted {
        by_account.entry(entry.1.account.as_ref().map(|a| a.id.clone())).or_default().push(entry);
    }
    let mut entries = Vec::with_capacity(history.acted.len());
    for actions in by_account.values() {
        let account = actions[0].1.account.as_ref();
        let live = accounts.live_in(account).await;
        for (run_id, acted) in actions.iter().map(|e| (&e.0, &e.1)) {
            let key = (run_id.clone(), acted.resource_id.clone());
            if let Some(undone_at) = history.undone.get(&key) {
                // A person undid it with its undo link: it saved until that moment, and nothing since.
                entries.push(accrue(run_id, acted, &StillHolds::Undone(*undone_at), None, now));
                continue;
            }
            let state = match &live {
                Ok(live) => still_holds(live, run_id, acted).await,
                Err(e) => StillHolds::Unknown(format!("account not readable: {e}")),
            };
            let before = history.confirmed.get(&key).copied();
            entries.push(accrue(run_id, acted, &state, before, now));
        }
    }
    let report = SavingsReport::of(entries);
    for e in &report.entries {
        let decision = if e.holds { "HOLDS" } else { "CHANGED" };
        finops_aws::xray::record_decision_in(
            "finops.savings",
            "savings",
            &e.acted.resource_id,
            decision,
            &request.run_id,
            e.acted.account.as_ref().map(|a| a.id.as_str()),
        );
        tracing::info!(
            run_id = request.run_id,
            acted_by = e.run_id,
            resource_id = e.acted.resource_id,
            decision,
            realized_usd = e.realized_usd,
            detail = e.detail,
            "savings"
        );
    }
    let confirmed = report
        .entries
        .iter()
        .filter_map(|e| {
            Some(Confirmation {
                run_id: e.run_id.clone(),
                resource_id: e.acted.resource_id.clone(),
                confirmed_until: e.confirmed_until?,
            })
        })
        .collect();
    let cost_explorer = match costs {
        Some(costs) => check_costs(costs, &report, now).await,
        None => None,
    };
    let summary = match &cost_explorer {
        Some(check) => format!("{}; Cost Explorer: {}", report.summary, check.summary),
        None => report.summary,
    };
    Ok(SavingsOutput {
        summary,
        total: report.total,
        by_kind: report.by_kind,
        by_account: report.by_account,
        confirmed,
        unreadable_ledger_items: history.unreadable,
        cost_explorer,
    })
}

/// The ledger in DynamoDB: one Scan over its items (one per run), reading only the outcomes and confirmations.
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self { client: aws_sdk_dynamodb::Client::new(sdk), table: table.into() }
    }
}

impl LedgerHistory for DynamoLedger {
    async fn history(&self) -> Result<History, FinopsError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("runId, outcomes, realizedSavings, undoOfRun, resourceId, undoOutcome, recordedAt")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("DynamoDB", "Scan", e))?;
            let text = |item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>, key: &str| {
                item.get(key).and_then(|v| v.as_s().ok()).cloned()
            };
            items.extend(page.items().iter().map(|item| LedgerItem {
                run_id: text(item, "runId").unwrap_or_default(),
                outcomes: text(item, "outcomes"),
                realized: text(item, "realizedSavings"),
                undo: text(item, "undoOfRun").map(|of_run| UndoEntry {
                    of_run,
                    resource_id: text(item, "resourceId").unwrap_or_default(),
                    outcome: text(item, "undoOutcome").unwrap_or_default(),
                    at: text(item, "recordedAt").unwrap_or_default(),
                }),
            }));
        }
        Ok(History::from_items(items))
    }
}

/// What the savings step reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct SavingsConfig {
    /// The ledger (`FINOPS_LEDGER_TABLE`, read only).
    pub ledger_table: String,
    /// The member accounts' read-only role (`FINOPS_MEMBER_READ_ROLE`), when the deployment covers an organization.
    pub member_read_role: Option<String>,
    /// The Cost Explorer check (`FINOPS_COST_EXPLORER`: `on` or `off`, default off).
    pub cost_explorer: bool,
}

impl SavingsConfig {
    pub fn from_env() -> Result<Self, FinopsError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, FinopsError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let ledger_table = finops_core::config::required_var(&vars, "FINOPS_LEDGER_TABLE")?;
        let cost_explorer = match vars.iter().find(|(k, _)| k == "FINOPS_COST_EXPLORER").map(|(_, v)| v.trim()) {
            None | Some("" | "off") => false,
            Some("on") => true,
            Some(other) => {
                return Err(FinopsError::Configuration(format!("FINOPS_COST_EXPLORER {other:?} is not on or off")))
            }
        };
        let member_read_role = finops_core::organization::OrganizationConfig::from_vars(vars)
            .map_err(|e| FinopsError::Configuration(e.to_string()))?
            .map(|organization| organization.read_role);
        Ok(Self { ledger_table, member_read_role, cost_explorer })
    }
}

/// EC2 in the hub, and in a member account through its read-only role.
pub struct SdkAccounts {
    sdk: aws_config::SdkConfig,
    member_read_role: Option<String>,
    members: tokio::sync::OnceCell<finops_aws::MemberSessions>,
}

impl Accounts for SdkAccounts {
    type Live = finops_inventory::Ec2Inventory;

    async fn live_in(&self, account: Option<&AccountRef>) -> Result<Self::Live, FinopsError> {
        let Some(account) = account else { return Ok(finops_inventory::Ec2Inventory::new(self.sdk.clone())) };
        let Some(role) = &self.member_read_role else {
            return Err(FinopsError::Configuration(format!(
                "an action in account {account}, and this deployment reads its own account only"
            )));
        };
        let sessions =
            self.members.get_or_try_init(|| finops_aws::MemberSessions::new(&self.sdk, role, "finops-savings")).await?;
        if account.id == sessions.hub_account() {
            return Ok(finops_inventory::Ec2Inventory::new(self.sdk.clone()));
        }
        Ok(finops_inventory::Ec2Inventory::new(sessions.config_for(account).await?))
    }
}

/// Cost Explorer (its one endpoint, in us-east-1).
pub struct SdkCostExplorer {
    client: aws_sdk_costexplorer::Client,
}

impl SdkCostExplorer {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let conf =
            aws_sdk_costexplorer::config::Builder::from(sdk).region(aws_config::Region::new("us-east-1")).build();
        Self { client: aws_sdk_costexplorer::Client::from_conf(conf) }
    }
}

impl CostHistory for SdkCostExplorer {
    async fn daily_cost(
        &self,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    ) -> Result<Vec<(chrono::NaiveDate, f64)>, FinopsError> {
        use aws_sdk_costexplorer::types::{DateInterval, Dimension, DimensionValues, Expression, Granularity};
        let services = DimensionValues::builder()
            .key(Dimension::Service)
            .set_values(Some(finops_core::savings::COST_EXPLORER_SERVICES.iter().map(|s| (*s).to_owned()).collect()))
            .build();
        let period = DateInterval::builder()
            .start(start.to_string())
            .end(end.to_string())
            .build()
            .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
        let (mut daily, mut token) = (Vec::new(), None);
        loop {
            let out = self
                .client
                .get_cost_and_usage()
                .time_period(period.clone())
                .granularity(Granularity::Daily)
                .metrics("UnblendedCost")
                .filter(Expression::builder().dimensions(services.clone()).build())
                .set_next_page_token(token)
                .send()
                .await
                .map_err(|e| FinopsError::from_sdk("CostExplorer", "GetCostAndUsage", e))?;
            for day in out.results_by_time() {
                let date =
                    day.time_period().and_then(|p| chrono::NaiveDate::parse_from_str(p.start(), "%Y-%m-%d").ok());
                let cost =
                    day.total().and_then(|t| t.get("UnblendedCost")).and_then(|m| m.amount()?.parse::<f64>().ok());
                if let (Some(date), Some(cost)) = (date, cost) {
                    daily.push((date, cost));
                }
            }
            token = out.next_page_token().map(str::to_owned);
            if token.is_none() {
                return Ok(daily);
            }
        }
    }
}

/// The savings step as the Lambda and the local runner build it.
pub struct SavingsStep {
    ledger: DynamoLedger,
    accounts: SdkAccounts,
    costs: Option<SdkCostExplorer>,
}

impl SavingsStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: SavingsConfig) -> Self {
        Self {
            ledger: DynamoLedger::new(sdk, config.ledger_table),
            accounts: SdkAccounts {
                sdk: sdk.clone(),
                member_read_role: config.member_read_role,
                members: tokio::sync::OnceCell::new(),
            },
            costs: config.cost_explorer.then(|| SdkCostExplorer::new(sdk)),
        }
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<SavingsOutput, FinopsError> {
        let out = handle(event, &self.ledger, &self.accounts, self.costs.as_ref(), now).await?;
        finops_aws::metrics::emit(&finops_core::metrics::savings_metrics(&out));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use finops_core::resources::{ElasticAddress, UnattachedVolume};
    use finops_core::InstanceRecord;
    use finops_inventory::LiveVolume;
    use serde_json::json;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    /// EC2 now: instances by id, the volumes and addresses that exist.
    #[derive(Clone, Default)]
    struct Now {
        instances: HashMap<String, InstanceRecord>,
        volumes: Vec<String>,
        addresses: Vec<String>,
        unreadable: bool,
    }

    impl InstanceLookup for Now {
        async fn describe_instance(&self, _: &str, id: &str) -> Result<Option<InstanceRecord>, FinopsError> {
            Ok(self.instances.get(id).cloned())
        }
    }

    impl ResourceLookup for Now {
        async fn describe_volume(&self, region: &str, id: &str) -> Result<Option<LiveVolume>, FinopsError> {
            Ok(self.volumes.iter().any(|v| v == id).then(|| LiveVolume {
                record: UnattachedVolume {
                    volume_id: id.into(),
                    region: region.into(),
                    volume_type: "gp3".into(),
                    size_gib: 10,
                    create_time: at(1),
                    tags: Default::default(),
                    account: None,
                },
                state: "available".into(),
                attached_to: vec![],
                availability_zone: format!("{region}a"),
            }))
        }

        async fn describe_address(&self, region: &str, id: &str) -> Result<Option<ElasticAddress>, FinopsError> {
            Ok(self.addresses.iter().any(|a| a == id).then(|| ElasticAddress {
                allocation_id: id.into(),
                public_ip: "203.0.113.1".into(),
                region: region.into(),
                association_id: None,
                tags: Default::default(),
                account: None,
            }))
        }
    }

    /// The hub reads `Now`; a member account's read-only role is refused when `unreadable`.
    impl Accounts for Now {
        type Live = Now;
        async fn live_in(&self, account: Option<&AccountRef>) -> Result<Now, FinopsError> {
            match account {
                Some(a) if self.unreadable => Err(FinopsError::Configuration(format!("cannot assume a role in {a}"))),
                _ => Ok(self.clone()),
            }
        }
    }

    struct Ledger(Vec<LedgerItem>);

    /// The bill: one cost a day, or Cost Explorer refusing.
    struct Bill(Result<Vec<(chrono::NaiveDate, f64)>, ()>);

    impl CostHistory for Bill {
        async fn daily_cost(
            &self,
            start: chrono::NaiveDate,
            end: chrono::NaiveDate,
        ) -> Result<Vec<(chrono::NaiveDate, f64)>, FinopsError> {
            match &self.0 {
                Ok(days) => Ok(days.iter().filter(|(d, _)| *d >= start && *d < end).copied().collect()),
                Err(()) => Err(FinopsError::Aws {
                    service: "CostExplorer",
                    operation: "GetCostAndUsage",
                    code: "AccessDeniedException".into(),
                    message: "not enabled".into(),
                }),
            }
        }
    }

    const NO_COSTS: Option<&Bill> = None;

    impl LedgerHistory for Ledger {
        async fn history(&self) -> Result<History, FinopsError> {
            Ok(History::from_items(self.0.clone()))
        }
    }

    fn outcome(id: &str, action: &str, monthly: f64, day: u32, account: Option<&str>) -> serde_json::Value {
        let mut acted = json!({"resourceId": id, "action": action, "region": "ap-southeast-2",
            "monthlySavingUsd": monthly, "actedAt": at(day)});
        if let Some(account) = account {
            acted["account"] = json!({"id": account, "name": "data-dev"});
        }
        json!({"resourceId": id, "decision": "approve", "operation": "x", "outcome": "done", "detail": "",
            "snapshotIds": [], "acted": acted})
    }

    fn stopped_by(id: &str, run: &str, state: &str) -> InstanceRecord {
        let mut i =
            InstanceRecord::ordinary(id, "ap-southeast-2", "m5.large", at(1), 20).with_tags([("finops:run-id", run)]);
        i.state = state.into();
        i
    }

    #[tokio::test]
    async fn each_action_the_ledger_records_is_checked_where_it_was_taken_and_accrues_while_it_holds() {
        let day = finops_core::savings::DAYS_PER_MONTH;
        let ledger = Ledger(vec![
            LedgerItem {
                run_id: "run-1".into(),
                outcomes: Some(
                    json!([
                        outcome("i-still", "snapshot-and-stop", day * 3.0, 1, None),
                        outcome("i-restarted", "snapshot-and-stop", day * 10.0, 1, None),
                        outcome("vol-gone", "snapshot-and-delete", day, 1, None),
                        outcome("eipalloc-back", "release", day, 1, None),
                        outcome("i-member", "snapshot-and-stop", day, 1, Some("111111111111")),
                        {"resourceId": "i-denied", "decision": "deny", "outcome": "denied", "detail": "", "snapshotIds": []},
                    ])
                    .to_string(),
                ),
                realized: None,
                undo: None,
            },
            // A later run saw i-restarted still stopped on day 5; its own outcomes are not JSON.
            LedgerItem {
                run_id: "run-2".into(),
                outcomes: Some("not json".into()),
                realized: Some(
                    json!({"summary": "", "acted": 0, "holding": 0, "estimatedMonthlyUsd": 0.0, "realizedUsd": 0.0,
                        "byKind": {}, "byAccount": {},
                        "confirmed": [{"runId": "run-1", "resourceId": "i-restarted", "confirmedUntil": at(5)}]})
                    .to_string(),
                ),
                undo: None,
            },
            // i-still's stop was undone on day 3 with its link... by an undo that failed: nothing changes.
            LedgerItem {
                run_id: "undo-1".into(),
                undo: Some(UndoEntry {
                    of_run: "run-1".into(),
                    resource_id: "i-still".into(),
                    outcome: "refused".into(),
                    at: at(3).to_rfc3339(),
                }),
                ..LedgerItem::default()
            },
        ]);
        let now = Now {
            instances: [
                ("i-still".to_owned(), stopped_by("i-still", "run-1", "stopped")),
                ("i-restarted".to_owned(), stopped_by("i-restarted", "run-1", "running")),
            ]
            .into(),
            volumes: vec![],
            addresses: vec!["eipalloc-back".into()],
            unreadable: true,
        };
        let out = handle(json!({"runId": "run-3"}), &ledger, &now, NO_COSTS, at(11)).await.unwrap();
        assert_eq!((out.total.acted, out.total.holding, out.unreadable_ledger_items), (5, 2, 1), "{out:?}");
        // i-still: 10 days x $3; i-restarted: 4 days (day 1 to the day-5 confirmation) x $10; vol-gone: 10 x $1.
        assert_eq!(out.by_kind["instance"].realized_usd, 70.0, "{:?}", out.by_kind);
        assert_eq!(out.by_kind["ebs-volume"].realized_usd, 10.0);
        assert_eq!(out.by_kind["elastic-ip"].realized_usd, 0.0, "allocated again, never confirmed");
        assert_eq!(out.by_account["data-dev (111111111111)"].holding, 0, "not readable: nothing concluded");
        assert_eq!(out.total.realized_usd, 80.0);
        assert!(out.summary.contains("2 of 5 actions still hold"), "{}", out.summary);
        // What the next run continues from: the holding ones now, the restarted one at its last confirmation.
        let confirmed: HashMap<&str, DateTime<Utc>> =
            out.confirmed.iter().map(|c| (c.resource_id.as_str(), c.confirmed_until)).collect();
        assert_eq!(confirmed["i-still"], at(11));
        assert_eq!(confirmed["i-restarted"], at(5));
        assert!(!confirmed.contains_key("eipalloc-back"));
        assert!(
            handle(json!({"runId": "../x"}), &ledger, &now, NO_COSTS, at(11)).await.is_err(),
            "bad input: a clear error"
        );
    }

    #[tokio::test]
    async fn an_instance_stopped_again_by_another_run_counts_for_that_run_only() {
        let ledger = Ledger(vec![LedgerItem {
            run_id: "run-1".into(),
            outcomes: Some(json!([outcome("i-1", "snapshot-and-stop", 30.0, 1, None)]).to_string()),
            ..LedgerItem::default()
        }]);
        let now =
            Now { instances: [("i-1".to_owned(), stopped_by("i-1", "run-9", "stopped"))].into(), ..Now::default() };
        let out = handle(json!({"runId": "run-10"}), &ledger, &now, NO_COSTS, at(11)).await.unwrap();
        assert_eq!((out.total.acted, out.total.holding, out.total.realized_usd), (1, 0, 0.0), "{out:?}");
    }

    #[tokio::test]
    async fn an_undone_action_stops_accruing_when_its_undo_was_recorded_whatever_the_instance_says_now() {
        let day = finops_core::savings::DAYS_PER_MONTH;
        let ledger = Ledger(vec![
            LedgerItem {
                run_id: "run-1".into(),
                outcomes: Some(json!([outcome("i-1", "snapshot-and-stop", day * 2.0, 1, None)]).to_string()),
                ..LedgerItem::default()
            },
            LedgerItem {
                run_id: "undo-00112233".into(),
                undo: Some(UndoEntry {
                    of_run: "run-1".into(),
                    resource_id: "i-1".into(),
                    outcome: "done".into(),
                    at: at(4).to_rfc3339(),
                }),
                ..LedgerItem::default()
            },
        ]);
        // Stopped again by hand since the undo (still carrying run-1's tag): the undo still ends the saving.
        let now =
            Now { instances: [("i-1".to_owned(), stopped_by("i-1", "run-1", "stopped"))].into(), ..Now::default() };
        let out = handle(json!({"runId": "run-10"}), &ledger, &now, NO_COSTS, at(11)).await.unwrap();
        assert_eq!((out.total.acted, out.total.holding, out.total.undone), (1, 0, 1), "{out:?}");
        assert_eq!(out.total.realized_usd, 6.0, "3 days at $2, until the undo");
        assert!(out.summary.contains("1 undone"), "{}", out.summary);
    }

    #[tokio::test]
    async fn the_optional_cost_explorer_check_compares_the_bill_and_never_fails_the_step() {
        let ledger = Ledger(vec![LedgerItem {
            run_id: "run-1".into(),
            outcomes: Some(json!([outcome("i-1", "snapshot-and-stop", 30.44 * 5.0, 5, None)]).to_string()),
            ..LedgerItem::default()
        }]);
        let now =
            Now { instances: [("i-1".to_owned(), stopped_by("i-1", "run-1", "stopped"))].into(), ..Now::default() };
        let day = |d: u32| at(d).date_naive();
        let bill = Bill(Ok((1..=11).map(|d| (day(d), if d < 5 { 20.0 } else { 15.0 })).collect()));
        let out = handle(json!({"runId": "run-2"}), &ledger, &now, Some(&bill), at(11)).await.unwrap();
        let check = out.cost_explorer.expect("the check ran");
        let c = check.comparison.unwrap();
        assert_eq!((c.days_before, c.days_since), (4, 5), "{c:?}");
        assert_eq!((c.change_daily_usd, c.estimated_daily_usd), (Some(5.0), 5.0));
        assert!(out.summary.contains("; Cost Explorer: EC2, EBS and public IPv4 $20.00/day"), "{}", out.summary);
        // Refused (not enabled, no permission): said, and the rest of the proof stands.
        let refused = handle(json!({"runId": "run-2"}), &ledger, &now, Some(&Bill(Err(()))), at(11)).await.unwrap();
        assert!(refused.summary.contains("Cost Explorer: not checked"), "{}", refused.summary);
        assert_eq!(refused.total.holding, 1);
        // Off (the default): no request, nothing said.
        let off = handle(json!({"runId": "run-2"}), &ledger, &now, NO_COSTS, at(11)).await.unwrap();
        assert!(off.cost_explorer.is_none() && !off.summary.contains("Cost Explorer"));
        assert!(SavingsConfig::from_vars([("FINOPS_LEDGER_TABLE".into(), "l".into())]).is_ok_and(|c| !c.cost_explorer));
        let bad = [("FINOPS_LEDGER_TABLE".to_string(), "l".to_string()), ("FINOPS_COST_EXPLORER".into(), "yes".into())];
        assert!(SavingsConfig::from_vars(bad).is_err());
    }
}
