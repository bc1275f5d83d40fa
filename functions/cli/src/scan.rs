//! `finops scan`: inventory and metrics in-process, a table or JSON on stdout, progress on stderr.

use std::io::Write;

use aws_config::SdkConfig;
use chrono::Utc;
use clap::Args;
use finops_aws::{load_sdk_config, AwsSettings, MemberSessions, PriceBook, SdkOrganization, SdkPriceList};
use finops_core::organization::{
    parse_account_list, parse_ou_id, plan_work_items, select_accounts, AccountRef, AccountScope, AccountSelection,
    SkippedAccount, UnreachableItem,
};
use finops_core::regions::parse_region_list;
use finops_core::resources::ResourceFinding;
use finops_core::{DetectionConfig, InstanceRecord, LookbackWindow, ProgressEvent, ProgressSink};
use finops_fanout::{read_directory, ScannedItem, SdkMemberClients};
use finops_inventory::{collect_inventory, collect_resources, Ec2Inventory};
use finops_metrics::{analyse, Analysis, CloudWatchMetrics};

use crate::render::{render_json, render_table, ScanReport};
use crate::CliError;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Regions to scan, comma-separated (ap-southeast-2,us-east-1).
    #[arg(long, value_delimiter = ',', required = true)]
    pub regions: Vec<String>,
    /// Days of CloudWatch history to judge by.
    #[arg(long, default_value_t = 14)]
    pub lookback_days: u32,
    /// Idle criteria preset: `idle` (strict, stop candidates) or `trusted-advisor` (adds underutilised).
    #[arg(long, default_value = "trusted-advisor")]
    pub criteria: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// AWS profile to use (default: the standard credential chain).
    #[arg(long)]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (moto, LocalStack). AWS_ENDPOINT_URL works too.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Use only the embedded price table, never the Price List API.
    #[arg(long)]
    pub offline_prices: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Scan these member accounts (comma-separated ids) by assuming --role-name in each.
    #[arg(long, value_delimiter = ',', conflicts_with = "organization")]
    pub accounts: Vec<String>,
    /// Scan every active account of the AWS Organization (and this one), by assuming --role-name in each.
    #[arg(long)]
    pub organization: bool,
    /// With --organization: only the accounts under these organizational units (any depth).
    #[arg(long, value_delimiter = ',', requires = "organization")]
    pub ous: Vec<String>,
    /// Never scan these accounts.
    #[arg(long, value_delimiter = ',')]
    pub exclude_accounts: Vec<String>,
    /// The read-only role the member StackSet deploys in each account.
    #[arg(long, default_value = finops_core::organization::DETECTION_ROLE_NAME)]
    pub role_name: String,
}

/// Progress lines on stderr, so stdout stays clean for the table or JSON.
struct StderrProgress;

impl ProgressSink for StderrProgress {
    fn report(&self, event: ProgressEvent) {
        let line = match event {
            ProgressEvent::InventoryRegion { region, instances } => {
                format!("inventory: {region}: {instances} running instances")
            }
            ProgressEvent::MetricsBatch { region, batch, batches, queries } => {
                format!("metrics:   {region}: GetMetricData batch {batch}/{batches} ({queries} queries)")
            }
            ProgressEvent::Priced { instances } => format!("pricing:   {instances} instances priced"),
        };
        eprintln!("{line}");
    }
}

pub async fn run(args: ScanArgs, out: &mut impl Write) -> Result<(), CliError> {
    let regions = parse_region_list(&args.regions.join(",")).map_err(CliError::Usage)?;
    let config = DetectionConfig::default()
        .with_run_overrides(Some(args.lookback_days), Some(&args.criteria))
        .map_err(|e| CliError::Usage(format!("--{}: {}", flag_name(&e.key), e.message)))?;
    // The deployment's policy settings (FINOPS_PROTECTED_TAG_KEYS, FINOPS_STOPPED_VOLUMES, ...), as the workflow reads
    // them: what the scan says it would propose is what the workflow would.
    let policy =
        finops_core::policy::PolicyConfig::from_vars(std::env::vars()).map_err(|e| CliError::Usage(e.to_string()))?;
    let selection = account_selection(&args)?;
    let settings = AwsSettings {
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        region: Some(regions[0].clone()),
    };
    let sdk = load_sdk_config(&settings).await;
    let progress: &dyn ProgressSink = if args.quiet { &finops_core::Silent } else { &StderrProgress };
    let prices = PriceBook::new((!args.offline_prices).then(|| SdkPriceList::new(&sdk)));
    let now = Utc::now();

    let fleet = match &selection {
        None => {
            let mut fleet = Fleet::new(LookbackWindow::ending_before(now, config.criteria.lookback_days));
            for region in &regions {
                fleet.add(scan_region(&sdk, region, &prices, &config, now, progress).await?, &policy, now);
            }
            fleet
        }
        Some(selection) => {
            scan_accounts(&sdk, selection, &args, &regions, &prices, &config, &policy, now, progress).await?
        }
    };
    let price_note = prices.api_unavailable_reason().filter(|_| !args.offline_prices);
    if let (Some(reason), false) = (&price_note, args.quiet) {
        eprintln!("pricing:   Price List API not used ({reason}); estimates use the embedded table");
    }
    let mut report = ScanReport::new(&regions, &config.criteria, &fleet.instances, &fleet.analysis, &policy, now);
    if selection.is_some() {
        report = report.with_accounts(&fleet.accounts, &fleet.skipped, &fleet.unreachable);
    }
    report = report.with_resources(&fleet.resources);
    if args.json {
        render_json(&report, out)?;
    } else {
        render_table(&report, out)?;
    }
    if selection.is_some() && fleet.accounts.is_empty() {
        return Err(CliError::Usage("no account could be scanned (see above)".into()));
    }
    if selection.is_some() && fleet.reached_items == 0 {
        return Err(CliError::Aws(finops_aws::FinopsError::AccessDenied {
            service: "sts",
            operation: "AssumeRole",
            message: format!("no account could be reached with role {}", args.role_name),
        }));
    }
    Ok(())
}

/// What the command line asks for beyond the caller's own account (None: just that account, as before).
fn account_selection(args: &ScanArgs) -> Result<Option<AccountSelection>, CliError> {
    let usage = |e: finops_core::organization::OrganizationError| CliError::Usage(e.to_string());
    let exclude = parse_account_list(&args.exclude_accounts.join(",")).map_err(usage)?.into_iter().collect();
    if args.organization {
        let ous = args.ous.iter().map(|ou| parse_ou_id(ou)).collect::<Result<Vec<_>, _>>().map_err(usage)?;
        return Ok(Some(AccountSelection { scope: AccountScope::Organization { ous }, exclude, include_hub: true }));
    }
    if args.accounts.is_empty() {
        return Ok(None);
    }
    let ids = parse_account_list(&args.accounts.join(",")).map_err(usage)?;
    // Named accounts are exactly what was asked for: the caller's own account only if it is in the list.
    Ok(Some(AccountSelection { scope: AccountScope::Listed(ids), exclude, include_hub: false }))
}

/// The fleet of a scan, put together item by item.
struct Fleet {
    instances: Vec<InstanceRecord>,
    analysis: Analysis,
    accounts: Vec<AccountRef>,
    skipped: Vec<SkippedAccount>,
    unreachable: Vec<UnreachableItem>,
    reached_items: usize,
    resources: Vec<ResourceFinding>,
}

impl Fleet {
    fn new(window: LookbackWindow) -> Self {
        Self {
            instances: Vec::new(),
            analysis: Analysis::empty(window),
            accounts: Vec::new(),
            skipped: Vec::new(),
            unreachable: Vec::new(),
            reached_items: 0,
            resources: Vec::new(),
        }
    }

    /// One scanned account-region; its other resources judged by the deployment's policy.
    fn add(&mut self, item: ScannedItem, policy: &finops_core::policy::PolicyConfig, now: chrono::DateTime<Utc>) {
        self.instances.extend(item.instances);
        self.analysis.absorb(item.analysis);
        self.analysis.get_metric_data_calls += item.resources.get_metric_data_calls;
        self.analysis.metrics_requested += item.resources.metrics_requested;
        self.resources.extend(finops_core::resources::judge(
            policy,
            &item.other_resources,
            item.resources.findings,
            now,
        ));
        self.reached_items += 1;
    }
}

/// The caller's own account in one region: its running instances with their verdicts and costs, and its resources
/// beyond instances (unattached volumes with their CloudWatch I/O, Elastic IPs).
async fn scan_region(
    sdk: &SdkConfig,
    region: &str,
    prices: &PriceBook<SdkPriceList>,
    config: &DetectionConfig,
    now: chrono::DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<ScannedItem, finops_aws::FinopsError> {
    let inventory = Ec2Inventory::new(sdk.clone());
    let regions = [region.to_owned()];
    let instances = collect_inventory(&inventory, &regions, progress).await?;
    let metrics = CloudWatchMetrics::new(sdk.clone());
    let analysis = analyse(&metrics, prices, &instances, &config.criteria, config.metric_stages, now, progress).await?;
    let other_resources = collect_resources(&inventory, &regions).await?;
    let resources = finops_metrics::assess_resources(
        &metrics,
        prices,
        &other_resources,
        &analysis.window,
        config.stopped_days,
        now,
    )
    .await?;
    Ok(ScannedItem { instances, analysis, other_resources, resources })
}

/// The organization fan-out from a laptop: each (account, region) item with the member's read-only role. An item
/// that cannot be reached (role missing, SCP denial, region not enabled) is reported and the scan goes on.
#[allow(clippy::too_many_arguments)]
async fn scan_accounts(
    sdk: &SdkConfig,
    selection: &AccountSelection,
    args: &ScanArgs,
    regions: &[String],
    prices: &PriceBook<SdkPriceList>,
    config: &DetectionConfig,
    policy: &finops_core::policy::PolicyConfig,
    now: chrono::DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<Fleet, CliError> {
    let sessions =
        MemberSessions::new(sdk, &args.role_name, &format!("finops-scan-{}", now.format("%Y%m%dT%H%M%S"))).await?;
    let hub = AccountRef::new(sessions.hub_account(), sessions.hub_account());
    let directory = read_directory(&SdkOrganization::new(sdk), &selection.scope).await?;
    if directory.is_none() && !args.quiet {
        eprintln!("accounts:  Organizations not readable; accounts are named by id");
    }
    let selected = select_accounts(selection, directory.as_deref(), &hub);
    let mut fleet = Fleet::new(LookbackWindow::ending_before(now, config.criteria.lookback_days));
    fleet.skipped = selected.skipped;
    let clients = SdkMemberClients { sessions };
    for item in plan_work_items(&selected.accounts, regions) {
        match finops_fanout::scan_item(&clients, prices, &item, config, now, progress).await {
            Ok(scanned) => fleet.add(scanned, policy, now),
            Err(e) => {
                if !args.quiet {
                    eprintln!("accounts:  {} {}: not scanned: {e}", item.account, item.region);
                }
                fleet.unreachable.push(UnreachableItem { item, reason: e.to_string() });
            }
        }
    }
    fleet.accounts = selected.accounts;
    Ok(fleet)
}

fn flag_name(key: &str) -> &str {
    match key {
        "lookbackDays" => "lookback-days",
        other => other,
    }
}
