//! The organization fan-out, three Lambda steps around a Step Functions Distributed Map:
//!
//! - [`plan`] (`finops-plan-scans`): the accounts in scope (Organizations, or a list), one work item per (account,
//!   region), written to the run bucket as the JSON array the Map's ItemReader reads.
//! - [`scan_account`] (`finops-scan-account`): one item in a child execution: inventory and metrics in that
//!   account and region through its read-only role, stored as one document per item. An account that cannot be
//!   reached (role missing, SCP denial, region not enabled) is a document that says so, never a failed item.
//! - [`merge`] (`finops-merge-scans`): every item's document into one run's inventory and utilisation documents and
//!   the metrics step's output, so reasoning, policy and approvals go on as for one account.
//!
//! State payloads carry references and counts only; the documents hold the fleet.

#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{
    caller_account, get_json, put_json, validate_run_id, AccountDirectory, FinopsError, MemberSessions, PriceBook,
    PriceListApi, RunStore, S3RunStore, SdkOrganization, SdkPriceList,
};
use finops_core::organization::{
    plan_work_items, select_accounts, Account, AccountRef, AccountScope, OrganizationConfig, SelectedAccounts,
    UnreachableItem, WorkItem,
};
use finops_core::steps::{
    InventoryDocument, InventoryRequest, MergeRequest, MetricsOutput, OrganizationSummary, PlanOutput, PlanRequest,
    ScanItemDocument, ScanItemOutput, ScanItemRequest, LISTED_IN_STATE,
};
use finops_core::{DetectionConfig, IdleVerdict, LookbackWindow, ObjectRef, ProgressSink};
use finops_inventory::{collect_inventory, collect_resources, Ec2Inventory, InventorySource, ResourceInventory};
use finops_metrics::{
    analyse, assess_resources, store_utilisation, Analysis, CloudWatchMetrics, Detected, MetricsApi, ResourceAssessment,
};

// ---- the steps as the Lambdas and the local runner build them ----

/// The planning step: Organizations and the run bucket from the hub's own credentials. The hub's account id is
/// asked of STS on the first run and kept for the container's life.
pub struct PlanStep {
    sdk: aws_config::SdkConfig,
    store: S3RunStore,
    directory: SdkOrganization,
    organization: Option<OrganizationConfig>,
    hub: tokio::sync::OnceCell<AccountRef>,
}

impl PlanStep {
    /// Needs `FINOPS_RUN_BUCKET`; without `FINOPS_ACCOUNTS` (`organization`) every run refuses with a
    /// configuration error naming it, as this deployment has nothing to fan out over.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        config: &DetectionConfig,
        organization: Option<OrganizationConfig>,
    ) -> Result<Self, FinopsError> {
        Ok(Self {
            sdk: sdk.clone(),
            store: S3RunStore::new(sdk, config.required_run_bucket()?),
            directory: SdkOrganization::new(sdk),
            organization,
            hub: tokio::sync::OnceCell::new(),
        })
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<PlanOutput, FinopsError> {
        let organization = self.organization.as_ref().ok_or_else(|| {
            FinopsError::Configuration("FINOPS_ACCOUNTS is not set: this deployment covers its own account only".into())
        })?;
        let hub = self
            .hub
            .get_or_try_init(|| async { caller_account(&self.sdk).await.map(|id| AccountRef::new(&id, &id)) })
            .await?;
        plan(event, &self.directory, hub, organization, &self.store, now).await
    }
}

/// The item step: the member's read-only role (the session is set up on the first item, sessions cached per
/// account), prices from the hub.
pub struct ScanAccountStep {
    sdk: aws_config::SdkConfig,
    read_role: String,
    store: S3RunStore,
    prices: PriceBook<SdkPriceList>,
    config: DetectionConfig,
    clients: tokio::sync::OnceCell<SdkMemberClients>,
}

impl ScanAccountStep {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        config: DetectionConfig,
        organization: Option<OrganizationConfig>,
    ) -> Result<Self, FinopsError> {
        let api_prices = config.pricing == finops_core::config::PricingMode::Api;
        Ok(Self {
            sdk: sdk.clone(),
            read_role: organization
                .map_or_else(|| finops_core::organization::DETECTION_ROLE_NAME.to_owned(), |o| o.read_role),
            store: S3RunStore::new(sdk, config.required_run_bucket()?),
            prices: PriceBook::new(api_prices.then(|| SdkPriceList::new(sdk))),
            config,
            clients: tokio::sync::OnceCell::new(),
        })
    }

    pub async fn handle(&self, event: serde_json::Value) -> Result<ScanItemOutput, FinopsError> {
        let clients = self
            .clients
            .get_or_try_init(|| async {
                let sessions = MemberSessions::new(&self.sdk, &self.read_role, "finops-scan-account").await?;
                Ok::<_, FinopsError>(SdkMemberClients { sessions })
            })
            .await?;
        scan_account(event, clients, &self.prices, &self.store, &self.config).await
    }
}

/// The merge step: the run bucket only.
pub struct MergeStep {
    store: S3RunStore,
    config: DetectionConfig,
}

impl MergeStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: DetectionConfig) -> Result<Self, FinopsError> {
        Ok(Self { store: S3RunStore::new(sdk, config.required_run_bucket()?), config })
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<MetricsOutput, FinopsError> {
        merge(event, &self.store, &self.config, now).await
    }
}

// ---- plan ----

/// The organization's accounts, read as the scope needs them: an organization scope cannot do without
/// Organizations; a listed scope works without it (from a member account, say), its accounts then named by id.
pub async fn read_directory<D: AccountDirectory>(
    directory: &D,
    scope: &AccountScope,
) -> Result<Option<Vec<Account>>, FinopsError> {
    match (directory.accounts().await, scope) {
        (Ok(accounts), _) => Ok(Some(accounts)),
        (Err(e), AccountScope::Organization { .. }) => Err(e),
        (Err(e), AccountScope::Listed(_)) => {
            tracing::warn!(error = %e, "Organizations not readable; listed accounts are named by id");
            Ok(None)
        }
    }
}

/// The planning step: which accounts, and the (account, region) items for the Map.
pub async fn plan<D: AccountDirectory, R: RunStore>(
    event: serde_json::Value,
    directory: &D,
    hub: &AccountRef,
    organization: &OrganizationConfig,
    store: &R,
    now: DateTime<Utc>,
) -> Result<PlanOutput, FinopsError> {
    let request: PlanRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("plan expects {{\"runId\": \"...\", \"regions\": [...]}}: {e}"))
    })?;
    validate_run_id(&request.run_id)?;
    let regions = InventoryRequest { run_id: None, regions: request.regions.clone(), instance_ids: None }
        .regions()
        .map_err(FinopsError::InvalidInput)?;
    let known = read_directory(directory, &organization.selection.scope).await?;
    let SelectedAccounts { accounts, skipped } = select_accounts(&organization.selection, known.as_deref(), hub);
    let items: Vec<ScanItemRequest> = plan_work_items(&accounts, &regions)
        .into_iter()
        .map(|WorkItem { account, region }| ScanItemRequest {
            run_id: request.run_id.clone(),
            account,
            region,
            as_of: now,
            lookback_days: request.lookback_days,
            criteria: request.criteria.clone(),
        })
        .collect();
    let stored = put_json(store, &format!("runs/{}/items.json", request.run_id), &items).await?;
    if let Some(routing) = &organization.approval_routing {
        // Who approves is the request step's to work out, from the deployment's routing and each account as it is
        // then; nothing the run writes takes part. Said here too, so an operator sees it at the start of the run.
        let unrouted: Vec<&str> = accounts
            .iter()
            .filter(|a| {
                let found = known.as_deref().and_then(|k| k.iter().find(|k| k.id == a.id));
                routing.audience_for(&found.cloned().unwrap_or_else(|| Account::bare(&a.id))).is_none()
            })
            .map(|a| a.id.as_str())
            .collect();
        if !unrouted.is_empty() {
            tracing::warn!(
                run_id = request.run_id,
                ?unrouted,
                "no approver is routed for these accounts: nobody is asked about them"
            );
        }
    }
    tracing::info!(
        run_id = request.run_id,
        accounts = accounts.len(),
        items = items.len(),
        skipped = skipped.len(),
        "planned"
    );
    Ok(PlanOutput {
        run_id: request.run_id,
        regions,
        items: stored,
        item_count: items.len(),
        account_count: accounts.len(),
        skipped_count: skipped.len(),
        skipped: skipped.into_iter().take(LISTED_IN_STATE).collect(),
    })
}

// ---- scan one item ----

/// The clients that read one member account: EC2 and CloudWatch through its read-only role in deployments,
/// synthetic ones in the benchmark.
pub trait MemberClients: Send + Sync {
    type Inventory: InventorySource + ResourceInventory;
    type Metrics: MetricsApi;
    fn for_account(
        &self,
        account: &AccountRef,
    ) -> impl Future<Output = Result<(Self::Inventory, Self::Metrics), FinopsError>> + Send;
}

/// EC2 and CloudWatch as the member's read-only role.
pub struct SdkMemberClients {
    pub sessions: MemberSessions,
}

impl MemberClients for SdkMemberClients {
    type Inventory = Ec2Inventory;
    type Metrics = CloudWatchMetrics;

    async fn for_account(&self, account: &AccountRef) -> Result<(Ec2Inventory, CloudWatchMetrics), FinopsError> {
        let config = self.sessions.config_for(account).await?;
        Ok((Ec2Inventory::new(config.clone()), CloudWatchMetrics::new(config)))
    }
}

/// Whether an error means "this account (or region) cannot be read", which is reported, rather than a failure
/// worth the Map's retry: denials (a missing role, an SCP, a region not enabled, which EC2 answers as
/// AuthFailure/OptInRequired) and errors AWS will answer the same way again.
fn unreachable_reason(error: &FinopsError) -> Option<String> {
    match error {
        FinopsError::AccessDenied { .. } | FinopsError::Aws { .. } => Some(error.to_string()),
        _ => None,
    }
}

/// One account in one region as scanned: its instances with their analysis, and its other resources (unattached
/// volumes, Elastic IPs) measured and priced; the account on every record.
pub struct ScannedItem {
    pub instances: Vec<finops_core::InstanceRecord>,
    pub analysis: Analysis,
    pub other_resources: finops_core::resources::OtherResources,
    pub resources: ResourceAssessment,
}

pub async fn scan_item<C: MemberClients, P: PriceListApi>(
    clients: &C,
    prices: &PriceBook<P>,
    item: &WorkItem,
    config: &DetectionConfig,
    as_of: DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<ScannedItem, FinopsError> {
    let (source, metrics) = clients.for_account(&item.account).await?;
    let region = std::slice::from_ref(&item.region);
    let mut instances = collect_inventory(&source, region, progress).await?;
    for instance in &mut instances {
        instance.account = Some(item.account.clone());
    }
    let analysis =
        analyse(&metrics, prices, &instances, &config.criteria, config.metric_stages, as_of, progress).await?;
    let other_resources = collect_resources(&source, region).await?.in_account(&item.account);
    let resources =
        assess_resources(&metrics, prices, &other_resources, &analysis.window, config.stopped_days, as_of).await?;
    Ok(ScannedItem { instances, analysis, other_resources, resources })
}

/// The Distributed Map's item step.
pub async fn scan_account<C: MemberClients, P: PriceListApi, R: RunStore>(
    event: serde_json::Value,
    clients: &C,
    prices: &PriceBook<P>,
    store: &R,
    config: &DetectionConfig,
) -> Result<ScanItemOutput, FinopsError> {
    let request: ScanItemRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("scan expects one item of the plan ({{runId, account, region, asOf}}): {e}"))
    })?;
    validate_run_id(&request.run_id)?;
    finops_core::organization::parse_account_id(&request.account.id)
        .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
    finops_core::regions::validate_region(&request.region).map_err(FinopsError::InvalidInput)?;
    let config = config
        .clone()
        .with_run_overrides(request.lookback_days, request.criteria.as_deref())
        .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
    let item = WorkItem { account: request.account.clone(), region: request.region.clone() };
    let window = LookbackWindow::ending_before(request.as_of, config.criteria.lookback_days);
    let price_calls_before = prices.api_calls();
    let document = match scan_item(clients, prices, &item, &config, request.as_of, &finops_core::Silent).await {
        Ok(ScannedItem { instances, analysis, other_resources, resources }) => ScanItemDocument {
            run_id: request.run_id.clone(),
            item,
            unreachable: None,
            window: analysis.window,
            instances,
            summaries: analysis.summaries,
            get_metric_data_calls: analysis.get_metric_data_calls + resources.get_metric_data_calls,
            metrics_requested: analysis.metrics_requested + resources.metrics_requested,
            price_list_calls: prices.api_calls() - price_calls_before,
            other_resources,
            resources: resources.findings,
        },
        Err(e) => match unreachable_reason(&e) {
            Some(reason) => {
                tracing::warn!(account = item.account.id, region = item.region, reason, "not reachable");
                ScanItemDocument {
                    run_id: request.run_id.clone(),
                    item,
                    unreachable: Some(reason),
                    window,
                    instances: Vec::new(),
                    summaries: Vec::new(),
                    get_metric_data_calls: 0,
                    metrics_requested: 0,
                    price_list_calls: 0,
                    other_resources: Default::default(),
                    resources: Vec::new(),
                }
            }
            None => return Err(e),
        },
    };
    let stored = put_json(store, &ScanItemDocument::key(&request.run_id, &document.item), &document).await?;
    Ok(ScanItemOutput {
        account_id: document.item.account.id.clone(),
        region: document.item.region.clone(),
        reached: document.unreachable.is_none(),
        instance_count: document.instances.len(),
        candidates: document
            .summaries
            .iter()
            .filter(|s| matches!(s.verdict(), IdleVerdict::Idle | IdleVerdict::Underutilised))
            .count(),
        get_metric_data_calls: document.get_metric_data_calls,
        metrics_requested: document.metrics_requested,
        document: stored,
    })
}

// ---- merge ----

/// The merge step: every planned item's document into the run's detection. An item without a document (its child
/// failed, within the Map's tolerated failures) is reported as not scanned, like an unreachable account.
pub async fn merge<R: RunStore>(
    event: serde_json::Value,
    store: &R,
    config: &DetectionConfig,
    now: DateTime<Utc>,
) -> Result<MetricsOutput, FinopsError> {
    let request: MergeRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("merge expects the plan's output ({{runId, items, ...}}): {e}"))
    })?;
    validate_run_id(&request.run_id)?;
    let items: Vec<ScanItemRequest> = get_json(store, &request.items).await?;
    // The plan put the run's overrides in every item; the merge judges by the same ones.
    let planned = items.first();
    let lookback_days = request.lookback_days.or(planned.and_then(|i| i.lookback_days));
    let criteria = request.criteria.clone().or(planned.and_then(|i| i.criteria.clone()));
    let config = config
        .clone()
        .with_run_overrides(lookback_days, criteria.as_deref())
        .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
    if items.iter().any(|i| i.run_id != request.run_id) {
        return Err(FinopsError::InvalidInput(format!(
            "the items at {} are not run {}",
            request.items.key, request.run_id
        )));
    }
    let window = items.first().map_or_else(
        || LookbackWindow::ending_before(now, config.criteria.lookback_days),
        |i| LookbackWindow::ending_before(i.as_of, config.criteria.lookback_days),
    );
    let mut regions: Vec<String> = Vec::new();
    let mut accounts: Vec<AccountRef> = Vec::new();
    let mut instances = Vec::new();
    let (mut other_resources, mut resources) = (finops_core::resources::OtherResources::default(), Vec::new());
    let mut analysis = Analysis::empty(window);
    let mut unreachable: Vec<UnreachableItem> = Vec::new();
    let mut price_list_calls = 0;
    for planned in &items {
        let item = WorkItem { account: planned.account.clone(), region: planned.region.clone() };
        if !regions.contains(&item.region) {
            regions.push(item.region.clone());
        }
        if !accounts.contains(&item.account) {
            accounts.push(item.account.clone());
        }
        let location = ObjectRef {
            bucket: store.bucket().to_owned(),
            key: ScanItemDocument::key(&request.run_id, &item),
            bytes: 0,
        };
        let document: ScanItemDocument = match get_json(store, &location).await {
            Ok(document) => document,
            Err(e) => {
                tracing::warn!(account = item.account.id, region = item.region, error = %e, "item has no result");
                unreachable
                    .push(UnreachableItem { item, reason: "its scan failed (see the Map run's failed items)".into() });
                continue;
            }
        };
        if document.item != item || document.run_id != request.run_id {
            return Err(FinopsError::InvalidInput(format!("{} does not describe its own item", location.key)));
        }
        if let Some(reason) = document.unreachable {
            unreachable.push(UnreachableItem { item, reason });
            continue;
        }
        if document.window != window {
            return Err(FinopsError::InvalidInput(format!("{} was judged over another window", location.key)));
        }
        price_list_calls += document.price_list_calls;
        instances.extend(document.instances);
        other_resources.extend(document.other_resources);
        resources.extend(document.resources);
        analysis.absorb(Analysis {
            window,
            summaries: document.summaries,
            get_metric_data_calls: document.get_metric_data_calls,
            metrics_requested: document.metrics_requested,
        });
    }
    let inventory =
        InventoryDocument { run_id: request.run_id.clone(), regions, collected_at: now, instances, other_resources };
    let inventory_ref = put_json(store, &format!("runs/{}/inventory.json", request.run_id), &inventory).await?;
    let detected = Detected { inventory_ref, inventory: &inventory, analysis, resources, price_list_calls };
    let mut output = store_utilisation(store, &request.run_id, detected, &config).await?;
    let unreachable_count = unreachable.len();
    let summary = OrganizationSummary {
        accounts: accounts.len(),
        items: items.len(),
        items_scanned: items.len() - unreachable_count,
        unreachable: unreachable.into_iter().take(LISTED_IN_STATE).collect(),
        unreachable_count,
        skipped: request.skipped,
        skipped_count: request.skipped_count,
    };
    output.accounts_summary = summary.describe();
    output.organization = Some(summary);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SyntheticOrganization;
    use finops_aws::{ListedAccounts, MemoryRunStore, SdkPriceList};
    use finops_core::organization::AccountStatus;
    use serde_json::json;

    const HUB: &str = "999999999999";
    const DATA: &str = "111111111111";
    const WEB: &str = "222222222222";
    const LEGACY: &str = "333333333333";
    const CLOSED: &str = "444444444444";

    fn account(id: &str, name: &str, status: AccountStatus) -> Account {
        Account { id: id.into(), name: name.into(), status, ous: vec![], tags: Default::default() }
    }

    fn directory() -> ListedAccounts {
        ListedAccounts(vec![
            account(HUB, "hub", AccountStatus::Active),
            account(DATA, "data-dev", AccountStatus::Active),
            account(WEB, "web-dev", AccountStatus::Active),
            account(LEGACY, "legacy", AccountStatus::Active),
            account(CLOSED, "closed", AccountStatus::Suspended),
        ])
    }

    struct Run {
        store: MemoryRunStore,
        plan: PlanOutput,
        outputs: Vec<ScanItemOutput>,
        items: Vec<ScanItemRequest>,
    }

    /// Plans the run, then scans every item as the Map would (legacy has no role).
    async fn run_items(per_item: usize) -> Run {
        let store = MemoryRunStore::new("runs-bucket");
        let hub = AccountRef::new(HUB, HUB);
        let now = Utc::now();
        let event = json!({"runId": "r1", "regions": "us-east-1, eu-west-1", "lookbackDays": 7});
        let plan =
            plan(event, &directory(), &hub, &OrganizationConfig::whole_organization(), &store, now).await.unwrap();
        let items: Vec<ScanItemRequest> = get_json(&store, &plan.items).await.unwrap();
        let mut org = SyntheticOrganization::new(per_item, 10);
        org.unreachable.insert(LEGACY.into());
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let mut outputs = Vec::new();
        for item in &items {
            let event = serde_json::to_value(item).unwrap();
            outputs.push(scan_account(event, &org, &prices, &store, &DetectionConfig::default()).await.unwrap());
        }
        Run { store, plan, outputs, items }
    }

    #[tokio::test]
    async fn the_plan_has_one_item_per_account_and_region_and_names_what_it_left_out() {
        let run = run_items(20).await;
        assert_eq!((run.plan.account_count, run.plan.item_count), (4, 8));
        assert_eq!(run.plan.skipped.len(), 1);
        assert_eq!(
            (run.plan.skipped[0].account.id.as_str(), run.plan.skipped[0].reason.as_str()),
            (CLOSED, "suspended")
        );
        let pairs: Vec<(&str, &str)> = run.items.iter().map(|i| (i.account.name.as_str(), i.region.as_str())).collect();
        assert_eq!(
            &pairs[..4],
            [("hub", "us-east-1"), ("hub", "eu-west-1"), ("data-dev", "us-east-1"), ("data-dev", "eu-west-1")]
        );
        assert!(run.items.iter().all(|i| i.as_of == run.items[0].as_of && i.lookback_days == Some(7)));
    }

    #[tokio::test]
    async fn each_item_stores_its_account_or_why_it_could_not_be_read() {
        let run = run_items(100).await;
        for output in &run.outputs {
            if output.account_id == LEGACY {
                assert!(!output.reached && output.instance_count == 0);
            } else {
                assert!(output.reached, "{output:?}");
                assert_eq!((output.instance_count, output.candidates), (100, 10), "exactly 10 % idle");
            }
        }
        let legacy = run.items.iter().find(|i| i.account.id == LEGACY).unwrap();
        let item = WorkItem { account: legacy.account.clone(), region: legacy.region.clone() };
        let location = ObjectRef { bucket: "runs-bucket".into(), key: ScanItemDocument::key("r1", &item), bytes: 0 };
        let document: ScanItemDocument = get_json(&run.store, &location).await.unwrap();
        assert!(document.unreachable.unwrap().contains("role arn:aws:iam::333333333333:role/finops-agent-read-only"));
    }

    #[tokio::test]
    async fn the_merge_is_one_run_detection_with_every_record_naming_its_account() {
        let run = run_items(100).await;
        let event = serde_json::to_value(&run.plan).unwrap();
        let merged = merge(event, &run.store, &DetectionConfig::default(), Utc::now()).await.unwrap();
        assert_eq!(merged.instance_count, 6 * 100, "three reachable accounts x two regions");
        assert_eq!(merged.verdicts.idle, 60);
        assert_eq!(merged.window.days, 7, "the plan's lookback");
        let calls: usize = run.outputs.iter().map(|o| o.get_metric_data_calls).sum();
        assert_eq!(merged.get_metric_data_calls, calls);
        assert_eq!(merged.regions, ["us-east-1", "eu-west-1"]);
        let org = merged.organization.as_ref().unwrap();
        assert_eq!((org.accounts, org.items, org.items_scanned, org.unreachable_count), (4, 8, 6, 2));
        assert!(org.unreachable.iter().all(|u| u.item.account.id == LEGACY));
        assert_eq!(org.skipped_count, 1);
        assert!(
            merged.accounts_summary.starts_with("4 accounts, 6 of 8 account-regions scanned; not scanned: legacy (333333333333) us-east-1: sts AssumeRole access denied"),
            "{}",
            merged.accounts_summary
        );
        assert!(
            merged.accounts_summary.ends_with("; skipped: closed (444444444444): suspended"),
            "{}",
            merged.accounts_summary
        );
        let inventory: InventoryDocument = get_json(&run.store, &merged.inventory).await.unwrap();
        assert!(inventory.instances.iter().all(|i| i.account.as_ref().is_some_and(|a| a.id != LEGACY)));
        let shortlisted: Vec<&str> = merged.shortlist.iter().map(|s| s.instance_id.as_str()).collect();
        assert_eq!(shortlisted.len() + merged.shortlist_omitted, 60);
        assert!(inventory
            .instances
            .iter()
            .filter(|i| shortlisted.contains(&i.instance_id.as_str()))
            .all(|i| i.account.is_some()));
    }

    #[tokio::test]
    async fn an_item_without_a_result_is_reported_not_silently_dropped() {
        let run = run_items(5).await;
        // The planned items include one whose child never wrote its document (it failed within tolerance).
        let mut items: Vec<ScanItemRequest> = get_json(&run.store, &run.plan.items).await.unwrap();
        let mut lost = items[0].clone();
        lost.region = "ap-southeast-2".into();
        items.push(lost);
        let stored = put_json(&run.store, "runs/r1/items.json", &items).await.unwrap();
        let event = json!({"runId": "r1", "items": stored});
        let merged = merge(event, &run.store, &DetectionConfig::default(), Utc::now()).await.unwrap();
        let org = merged.organization.unwrap();
        assert_eq!(org.unreachable_count, 3);
        let failed = org.unreachable.iter().find(|u| u.item.region == "ap-southeast-2").unwrap();
        assert!(failed.reason.contains("its scan failed"), "{failed:?}");
    }

    #[tokio::test]
    async fn bad_items_are_refused_and_change_nothing() {
        let store = MemoryRunStore::new("runs-bucket");
        let org = SyntheticOrganization::new(5, 10);
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let config = DetectionConfig::default();
        let good = json!({"runId": "r1", "account": {"id": DATA, "name": "d"}, "region": "us-east-1", "asOf": "2026-11-28T00:00:00Z"});
        let mut cases = Vec::new();
        for (field, value) in [("runId", json!("../x")), ("region", json!("us-east-9")), ("extra", json!(1))] {
            let mut bad = good.clone();
            bad[field] = value;
            cases.push(bad);
        }
        let mut bad_account = good.clone();
        bad_account["account"]["id"] = json!("1111");
        cases.push(bad_account);
        for bad in cases {
            let err = scan_account(bad.clone(), &org, &prices, &store, &config).await.unwrap_err();
            assert!(matches!(err, FinopsError::InvalidInput(_)), "{bad}: {err}");
        }
        assert!(store.keys().is_empty(), "nothing stored");
        assert!(scan_account(good, &org, &prices, &store, &config).await.is_ok());
    }

    #[test]
    fn denials_are_reported_and_transient_failures_retried() {
        let denied =
            FinopsError::AccessDenied { service: "ec2", operation: "DescribeInstances", message: "SCP".into() };
        assert!(unreachable_reason(&denied).unwrap().contains("SCP"));
        let busy = FinopsError::Throttled { service: "ec2", operation: "DescribeInstances", message: "slow".into() };
        assert_eq!(unreachable_reason(&busy), None);
        let down = FinopsError::Transient { service: "sts", operation: "AssumeRole", message: "503".into() };
        assert_eq!(unreachable_reason(&down), None);
    }
}
