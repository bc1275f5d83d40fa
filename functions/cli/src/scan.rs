//! `finops scan`: inventory and metrics in-process, a table or JSON on stdout, progress on stderr.

use std::io::Write;

use chrono::Utc;
use clap::Args;
use finops_aws::{load_sdk_config, AwsSettings, PriceBook, SdkPriceList};
use finops_core::regions::parse_region_list;
use finops_core::{DetectionConfig, ProgressEvent, ProgressSink};
use finops_inventory::{collect_inventory, Ec2Inventory};
use finops_metrics::{analyse, CloudWatchMetrics};

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
    let settings = AwsSettings {
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        region: Some(regions[0].clone()),
    };
    let sdk = load_sdk_config(&settings).await;
    let progress: &dyn ProgressSink = if args.quiet { &finops_core::Silent } else { &StderrProgress };

    let instances = collect_inventory(&Ec2Inventory::new(sdk.clone()), &regions, progress).await?;
    let prices = PriceBook::new((!args.offline_prices).then(|| SdkPriceList::new(&sdk)));
    let analysis = analyse(
        &CloudWatchMetrics::new(sdk),
        &prices,
        &instances,
        &config.criteria,
        config.metric_stages,
        Utc::now(),
        progress,
    )
    .await?;
    let price_note = prices.api_unavailable_reason().filter(|_| !args.offline_prices);
    if let (Some(reason), false) = (&price_note, args.quiet) {
        eprintln!("pricing:   Price List API not used ({reason}); estimates use the embedded table");
    }
    let report = ScanReport::new(&regions, &config.criteria, &instances, &analysis);
    if args.json {
        render_json(&report, out)?;
    } else {
        render_table(&report, out)?;
    }
    Ok(())
}

fn flag_name(key: &str) -> &str {
    match key {
        "lookbackDays" => "lookback-days",
        other => other,
    }
}
