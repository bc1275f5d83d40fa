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

use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{
    get_json, put_json, validate_run_id, AccountDirectory, FinopsError, MemberSessions, PriceBook, PriceListApi,
    RunStore,
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
use finops_inventory::{collect_inventory, Ec2Inventory, InventorySource};
use finops_metrics::{analyse, store_utilisation, Analysis, CloudWatchMetrics, Detected, MetricsApi};

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
    type Inventory: InventorySource;
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

/// The instances of one account in one region, with their analysis; the account on every record.
pub async fn scan_item<C: MemberClients, P: PriceListApi>(
    clients: &C,
    prices: &PriceBook<P>,
    item: &WorkItem,
    config: &DetectionConfig,
    as_of: DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<(Vec<finops_core::InstanceRecord>, Analysis), FinopsError> {
    let (source, metrics) = clients.for_account(&item.account).await?;
    let mut instances = collect_inventory(&source, std::slice::from_ref(&item.region), progress).await?;
    for instance in &mut instances {
        instance.account = Some(item.account.clone());
    }
    let analysis =
        analyse(&metrics, prices, &instances, &config.criteria, config.metric_stages, as_of, progress).await?;
    Ok((instances, analysis))
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
        Ok((instances, analysis)) => ScanItemDocument {
            run_id: request.run_id.clone(),
            item,
            unreachable: None,
            window: analysis.window,
            instances,
            summaries: analysis.summaries,
            get_metric_data_calls: analysis.get_metric_data_calls,
            metrics_requested: analysis.metrics_requested,
            price_list_calls: prices.api_calls() - price_calls_before,
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
    let config = config
        .clone()
        .with_run_overrides(request.lookback_days, request.criteria.as_deref())
        .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
    let items: Vec<ScanItemRequest> = get_json(store, &request.items).await?;
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
        analysis.absorb(Analysis {
            window,
            summaries: document.summaries,
            get_metric_data_calls: document.get_metric_data_calls,
            metrics_requested: document.metrics_requested,
        });
    }
    let inventory = InventoryDocument { run_id: request.run_id.clone(), regions, collected_at: now, instances };
    let inventory_ref = put_json(store, &format!("runs/{}/inventory.json", request.run_id), &inventory).await?;
    let detected = Detected { inventory_ref, inventory: &inventory, analysis, price_list_calls };
    let mut output = store_utilisation(store, &request.run_id, detected, &config).await?;
    let unreachable_count = unreachable.len();
    output.organization = Some(OrganizationSummary {
        accounts: accounts.len(),
        items: items.len(),
        items_scanned: items.len() - unreachable_count,
        unreachable: unreachable.into_iter().take(LISTED_IN_STATE).collect(),
        unreachable_count,
        skipped: request.skipped,
        skipped_count: request.skipped_count,
    });
    Ok(output)
}
