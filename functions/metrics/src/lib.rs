//! The metrics step: daily CloudWatch utilisation for every inventoried instance, the idle verdict with its
//! reasons, and the cost and saving estimate.
//!
//! GetMetricData is called once per 500 metric queries (never once per instance); [`MetricsApi`] is the narrow
//! seam between this logic and CloudWatch ([`cloudwatch::CloudWatchMetrics`] in deployments, fakes in tests and
//! benchmarks). The fleet-sized result goes to the run bucket; the state output carries the shortlist.

pub mod cloudwatch;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use finops_aws::{get_json, put_json_sized, validate_run_id, FinopsError, PriceBook, PriceListApi, RunStore};
use finops_core::steps::{
    shortlist, InventoryDocument, MetricsOutput, ShortlistEntry, UtilisationDocument, VerdictCounts,
};
use finops_core::utilisation::UtilisationStats;
use finops_core::{
    CostEstimate, CpuStatistic, DailyUtilisation, DetectionConfig, IdleCriteria, InstanceRecord, LookbackWindow,
    MetricStages, ObjectRef, ProgressEvent, ProgressSink, UtilisationSummary,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

pub use cloudwatch::CloudWatchMetrics;
pub use finops_core::steps::MetricsRequest;

/// GetMetricData accepts at most 500 MetricDataQuery structures per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;
/// GetMetricData calls in flight at once per region (the API allows 50 TPS per account and region).
pub const CONCURRENT_CALLS: usize = 4;
pub const DAY_SECONDS: i32 = 86_400;

/// Which daily statistic a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    CpuAverage,
    CpuMaximum,
    NetworkIn,
    NetworkOut,
    DiskReadOps,
    DiskWriteOps,
    MemUsedAverage,
    /// An EBS volume's I/O (published only while it is attached): the evidence of an unattached volume.
    VolumeReadOps,
    VolumeWriteOps,
    /// A NAT gateway's bytes sent to destinations (AWS/NATGateway): none over the lookback means idle.
    NatBytesOut,
    /// A load balancer's traffic: an ALB's requests, an NLB's or a GWLB's new flows.
    AlbRequests,
    NlbNewFlows,
    GwlbNewFlows,
}

impl MetricKind {
    /// The per-instance queries every instance gets (memory only where the CloudWatch agent publishes it).
    pub const STANDARD: [MetricKind; 6] =
        [Self::CpuAverage, Self::CpuMaximum, Self::NetworkIn, Self::NetworkOut, Self::DiskReadOps, Self::DiskWriteOps];

    pub fn namespace(self) -> &'static str {
        match self {
            Self::MemUsedAverage => "CWAgent",
            Self::VolumeReadOps | Self::VolumeWriteOps => "AWS/EBS",
            Self::NatBytesOut => "AWS/NATGateway",
            Self::AlbRequests => "AWS/ApplicationELB",
            Self::NlbNewFlows => "AWS/NetworkELB",
            Self::GwlbNewFlows => "AWS/GatewayELB",
            _ => "AWS/EC2",
        }
    }
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::CpuAverage | Self::CpuMaximum => "CPUUtilization",
            Self::NetworkIn => "NetworkIn",
            Self::NetworkOut => "NetworkOut",
            Self::DiskReadOps => "EBSReadOps",
            Self::DiskWriteOps => "EBSWriteOps",
            Self::MemUsedAverage => "mem_used_percent",
            Self::VolumeReadOps => "VolumeReadOps",
            Self::VolumeWriteOps => "VolumeWriteOps",
            Self::NatBytesOut => "BytesOutToDestination",
            Self::AlbRequests => "RequestCount",
            Self::NlbNewFlows | Self::GwlbNewFlows => "NewFlowCount",
        }
    }
    pub fn stat(self) -> &'static str {
        match self {
            Self::CpuAverage | Self::MemUsedAverage => "Average",
            Self::CpuMaximum => "Maximum",
            _ => "Sum",
        }
    }
}

/// One MetricDataQuery (a MetricStat over one metric), free of SDK types.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub id: String,
    pub kind: MetricKind,
    /// Shared by an instance's queries (six or seven per instance), so planning a fleet does not copy them.
    pub dimensions: std::sync::Arc<[(String, String)]>,
    pub period_secs: i32,
}

/// One result series: timestamps in Unix seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSeries {
    pub id: String,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricDataPage {
    pub series: Vec<MetricSeries>,
    pub next_token: Option<String>,
}

/// CloudWatch, narrowed to what the metrics step asks.
pub trait MetricsApi: Send + Sync {
    /// Dimension sets of CWAgent `mem_used_percent` by instance id (ListMetrics), so memory queries match the
    /// agent's exact dimensions (it adds ImageId, InstanceType, ...).
    fn memory_dimensions(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<HashMap<String, Vec<(String, String)>>, FinopsError>> + Send;

    /// One GetMetricData call.
    fn get_metric_data(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<MetricDataPage, FinopsError>> + Send;
}

/// One CloudWatch shared by many callers (the items of a fan-out in one process).
impl<T: MetricsApi> MetricsApi for std::sync::Arc<T> {
    fn memory_dimensions(
        &self,
        region: &str,
    ) -> impl Future<Output = Result<HashMap<String, Vec<(String, String)>>, FinopsError>> + Send {
        T::memory_dimensions(self, region)
    }

    fn get_metric_data(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        next_token: Option<String>,
    ) -> impl Future<Output = Result<MetricDataPage, FinopsError>> + Send {
        T::get_metric_data(self, region, queries, window, next_token)
    }
}

/// Which instance and metric a query id stands for.
#[derive(Debug, Clone, Copy)]
struct QueryTarget {
    instance: usize,
    kind: MetricKind,
}

/// Builds the queries for `instances` (each with its index in the fleet): one per kind, plus memory where the agent
/// reports it (`memory`). Returns the queries and, for each, the fleet index and kind it stands for.
pub fn plan_queries(
    instances: &[(usize, &InstanceRecord)],
    kinds: &[MetricKind],
    memory: &HashMap<String, Vec<(String, String)>>,
) -> (Vec<MetricQuery>, Vec<(usize, MetricKind)>) {
    let mut queries = Vec::with_capacity(instances.len() * kinds.len());
    let mut targets = Vec::with_capacity(queries.capacity());
    for &(index, instance) in instances {
        let instance_dims: std::sync::Arc<[(String, String)]> =
            std::sync::Arc::from([("InstanceId".to_owned(), instance.instance_id.clone())]);
        for &kind in kinds {
            targets.push((index, kind));
            queries.push(MetricQuery {
                id: format!("q{}", queries.len()),
                kind,
                dimensions: instance_dims.clone(),
                period_secs: DAY_SECONDS,
            });
        }
        if let Some(dims) = memory.get(&instance.instance_id) {
            targets.push((index, MetricKind::MemUsedAverage));
            queries.push(MetricQuery {
                id: format!("q{}", queries.len()),
                kind: MetricKind::MemUsedAverage,
                dimensions: std::sync::Arc::from(dims.as_slice()),
                period_secs: DAY_SECONDS,
            });
        }
    }
    (queries, targets)
}

/// The daily series of a fleet as the series arrive. Network in and out (and EBS read and write) arrive as separate
/// series; they are added up per day at the end.
struct DailySeries {
    daily: Vec<Vec<DailyUtilisation>>,
    network: Vec<Vec<(Option<f64>, Option<f64>)>>,
    disk: Vec<Vec<(Option<f64>, Option<f64>)>>,
}

impl DailySeries {
    fn new(instances: usize, window: &LookbackWindow) -> Self {
        let days: Vec<DailyUtilisation> = window.days_iter().map(DailyUtilisation::empty).collect();
        let pairs = vec![(None, None); window.days as usize];
        Self { daily: vec![days; instances], network: vec![pairs.clone(); instances], disk: vec![pairs; instances] }
    }

    fn record(&mut self, target: QueryTarget, day: usize, value: f64) {
        let i = target.instance;
        let slot = &mut self.daily[i][day];
        match target.kind {
            MetricKind::CpuAverage => slot.cpu_avg_percent = Some(value),
            MetricKind::CpuMaximum => slot.cpu_max_percent = Some(value),
            MetricKind::MemUsedAverage => slot.mem_used_percent = Some(value),
            MetricKind::NetworkIn => self.network[i][day].0 = Some(value),
            MetricKind::NetworkOut => self.network[i][day].1 = Some(value),
            MetricKind::DiskReadOps => self.disk[i][day].0 = Some(value),
            MetricKind::DiskWriteOps => self.disk[i][day].1 = Some(value),
            // Other resources' series are never asked about an instance (see [`assess_resources`]).
            MetricKind::VolumeReadOps
            | MetricKind::VolumeWriteOps
            | MetricKind::NatBytesOut
            | MetricKind::AlbRequests
            | MetricKind::NlbNewFlows
            | MetricKind::GwlbNewFlows => {}
        }
    }

    fn finish(mut self) -> Vec<Vec<DailyUtilisation>> {
        let add = |(a, b): (Option<f64>, Option<f64>)| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        for (i, days) in self.daily.iter_mut().enumerate() {
            for (d, day) in days.iter_mut().enumerate() {
                day.network_bytes = add(self.network[i][d]);
                day.disk_ops = add(self.disk[i][d]);
            }
        }
        self.daily
    }
}

/// What the fetching cost: GetMetricData calls and metrics requested (CloudWatch bills per metric requested).
#[derive(Debug, Default)]
pub(crate) struct Requests {
    calls: AtomicUsize,
    metrics: AtomicUsize,
}

/// Every metric of every instance, day by day (same order as `instances`), and the number of GetMetricData calls:
/// what a re-measurement before acting needs.
pub async fn collect_daily<M: MetricsApi>(
    api: &M,
    instances: &[InstanceRecord],
    window: &LookbackWindow,
    progress: &dyn ProgressSink,
) -> Result<(Vec<Vec<DailyUtilisation>>, usize), FinopsError> {
    let collected = collect_staged(api, instances, Asked::Everything, window, progress).await?;
    Ok((collected.daily, collected.get_metric_data_calls))
}

/// What the metrics step asks CloudWatch for.
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// Every metric of every instance, in one stage.
    Everything,
    /// What these criteria need to judge each instance: one CPU statistic of every instance the window can judge,
    /// then the other metrics of those it leaves open ([`IdleCriteria::screen`]).
    WhatTheVerdictNeeds(&'a IdleCriteria),
}

impl<'a> Asked<'a> {
    pub fn for_stages(stages: MetricStages, criteria: &'a IdleCriteria) -> Self {
        match stages {
            MetricStages::One => Self::Everything,
            MetricStages::Two => Self::WhatTheVerdictNeeds(criteria),
        }
    }
}

/// Daily series per instance (same order as `instances`), and what was requested to get them.
pub async fn collect_staged<M: MetricsApi>(
    api: &M,
    instances: &[InstanceRecord],
    asked: Asked<'_>,
    window: &LookbackWindow,
    progress: &dyn ProgressSink,
) -> Result<Collected, FinopsError> {
    let requests = Requests::default();
    let mut series = DailySeries::new(instances.len(), window);
    let mut regions: Vec<&str> = instances.iter().map(|i| i.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        let members = (0..instances.len()).filter(|&i| instances[i].region == region);
        match asked {
            Asked::Everything => {
                let members: Vec<(usize, &InstanceRecord)> = members.map(|i| (i, &instances[i])).collect();
                let memory = api.memory_dimensions(region).await?;
                let (queries, targets) = plan_queries(&members, &MetricKind::STANDARD, &memory);
                fetch(api, region, &queries, &targets, window, &requests, progress, &mut series).await?;
            }
            Asked::WhatTheVerdictNeeds(criteria) => {
                let judged: Vec<(usize, &InstanceRecord)> = members
                    .filter(|&i| IdleCriteria::can_judge(window, instances[i].launch_time))
                    .map(|i| (i, &instances[i]))
                    .collect();
                let first = match criteria.screening_statistic() {
                    CpuStatistic::Average => MetricKind::CpuAverage,
                    CpuStatistic::Maximum => MetricKind::CpuMaximum,
                };
                let (queries, targets) = plan_queries(&judged, &[first], &HashMap::new());
                fetch(api, region, &queries, &targets, window, &requests, progress, &mut series).await?;
                let open: Vec<(usize, &InstanceRecord)> =
                    judged.into_iter().filter(|&(i, _)| criteria.screen(window, &series.daily[i]).is_none()).collect();
                if open.is_empty() {
                    continue;
                }
                let rest: Vec<MetricKind> = MetricKind::STANDARD.into_iter().filter(|k| *k != first).collect();
                let memory = api.memory_dimensions(region).await?;
                let (queries, targets) = plan_queries(&open, &rest, &memory);
                fetch(api, region, &queries, &targets, window, &requests, progress, &mut series).await?;
            }
        }
    }
    Ok(Collected {
        daily: series.finish(),
        get_metric_data_calls: requests.calls.into_inner(),
        metrics_requested: requests.metrics.into_inner(),
    })
}

/// The daily series of a fleet and what CloudWatch was asked for them.
pub struct Collected {
    pub daily: Vec<Vec<DailyUtilisation>>,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
}

/// The findings of the resources beyond instances ([`finops_core::resources`]): each unattached volume judged with
/// its CloudWatch I/O and its storage price, each Elastic IP by its association, each stopped instance by how long
/// it has been stopped (`stopped_days`) and its volumes' price, each NAT gateway by the bytes it sent. What the
/// policy says of them is the policy step's business.
pub async fn assess_resources<M: MetricsApi, P: finops_aws::PriceListApi>(
    api: &M,
    prices: &finops_aws::PriceBook<P>,
    listed: &finops_core::resources::OtherResources,
    window: &LookbackWindow,
    stopped_days: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ResourceAssessment, FinopsError> {
    use finops_core::resources::{
        assess_address, assess_nat_gateway, assess_stopped_instance, assess_volume, VolumeActivity,
    };
    let requests = Requests::default();
    let mut targets: Vec<SeriesTarget> = Vec::new();
    for v in &listed.volumes {
        let kinds = &[MetricKind::VolumeReadOps, MetricKind::VolumeWriteOps][..];
        targets.push(SeriesTarget::new(&v.region, "VolumeId", &v.volume_id, kinds));
    }
    for n in &listed.nat_gateways {
        targets.push(SeriesTarget::new(&n.region, "NatGatewayId", &n.nat_gateway_id, &[MetricKind::NatBytesOut]));
    }
    // A load balancer without an ARN dimension (never seen) gets no query and counts as silent.
    let mut measured_lbs = Vec::new();
    for lb in &listed.load_balancers {
        let kind = match lb.lb_type.as_str() {
            "network" => MetricKind::NlbNewFlows,
            "gateway" => MetricKind::GwlbNewFlows,
            _ => MetricKind::AlbRequests,
        };
        if let Some(dimension) = lb.metric_dimension() {
            targets.push(SeriesTarget::new(&lb.region, "LoadBalancer", dimension, &[kind]));
            measured_lbs.push(lb);
        }
    }
    let daily = daily_sums(api, &targets, window, &requests).await?;
    let (volume_days, rest) = daily.split_at(listed.volumes.len());
    let (nat_days, lb_days) = rest.split_at(listed.nat_gateways.len());

    let mut findings = Vec::with_capacity(listed.len());
    for (v, days) in listed.volumes.iter().zip(volume_days) {
        let quote = prices.ebs_gb_month(&v.region, &v.volume_type).await;
        let seen = VolumeActivity {
            days_with_io: u32::try_from(days.len()).unwrap_or(u32::MAX),
            last_io_day: days.keys().next_back().map(|&i| window.day(i)),
        };
        findings.push(assess_volume(v, &seen, window, quote, now));
    }
    findings.extend(listed.addresses.iter().map(assess_address));
    for i in &listed.stopped_instances {
        let mut storage = Vec::with_capacity(i.volumes.len());
        for v in &i.volumes {
            storage.push(prices.volume_monthly(&i.region, v).await);
        }
        findings.push(assess_stopped_instance(i, &storage, stopped_days, now));
    }
    for (n, days) in listed.nat_gateways.iter().zip(nat_days) {
        let bytes = (!days.is_empty()).then(|| days.values().sum::<f64>());
        let hourly = prices.hourly(&n.region, finops_aws::HourlyProduct::NatGateway).await;
        findings.push(assess_nat_gateway(n, bytes, window, hourly, now));
    }
    for (lb, days) in measured_lbs.into_iter().zip(lb_days) {
        let requests = (!days.is_empty()).then(|| days.values().sum::<f64>());
        let hourly = match finops_core::pricing::LoadBalancerType::parse(&lb.lb_type) {
            Some(t) => prices.hourly(&lb.region, finops_aws::HourlyProduct::LoadBalancer(t)).await,
            None => None,
        };
        findings.push(finops_core::resources::assess_load_balancer(lb, requests, window, hourly, now));
    }
    Ok(ResourceAssessment {
        findings,
        get_metric_data_calls: requests.calls.load(Ordering::Relaxed),
        metrics_requested: requests.metrics.load(Ordering::Relaxed),
    })
}

/// One volume's I/O in `window`, day by day: what the actions step measures again before deleting an unattached
/// volume (a day with a VolumeReadOps or VolumeWriteOps datapoint: it was attached and used since the scan).
pub async fn volume_activity<M: MetricsApi>(
    api: &M,
    region: &str,
    volume_id: &str,
    window: &LookbackWindow,
) -> Result<finops_core::resources::VolumeActivity, FinopsError> {
    let kinds = &[MetricKind::VolumeReadOps, MetricKind::VolumeWriteOps][..];
    let target = SeriesTarget::new(region, "VolumeId", volume_id, kinds);
    let daily = daily_sums(api, std::slice::from_ref(&target), window, &Requests::default()).await?;
    let days = daily.into_iter().next().unwrap_or_default();
    Ok(finops_core::resources::VolumeActivity {
        days_with_io: u32::try_from(days.len()).unwrap_or(u32::MAX),
        last_io_day: days.keys().next_back().map(|&i| window.day(i)),
    })
}

/// The resources beyond instances, measured and priced, and what CloudWatch was asked for them (the run's cost
/// counts it).
#[derive(Debug, Clone, Default)]
pub struct ResourceAssessment {
    pub findings: Vec<finops_core::resources::ResourceFinding>,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
}

/// One resource's metrics: its region, its one dimension, and which daily sums to add up.
struct SeriesTarget {
    region: String,
    dimensions: std::sync::Arc<[(String, String)]>,
    kinds: Vec<MetricKind>,
}

impl SeriesTarget {
    fn new(region: &str, dimension: &str, id: &str, kinds: &[MetricKind]) -> Self {
        Self {
            region: region.to_owned(),
            dimensions: std::sync::Arc::new([(dimension.to_owned(), id.to_owned())]),
            kinds: kinds.to_vec(),
        }
    }
}

/// Each target's daily values over the lookback, its kinds added up per day (day index -> value); a day without
/// any datapoint is absent. Per region, batched 500 queries to a call.
async fn daily_sums<M: MetricsApi>(
    api: &M,
    targets: &[SeriesTarget],
    window: &LookbackWindow,
    requests: &Requests,
) -> Result<Vec<std::collections::BTreeMap<u32, f64>>, FinopsError> {
    let mut days: Vec<std::collections::BTreeMap<u32, f64>> = vec![Default::default(); targets.len()];
    let mut regions: Vec<&str> = targets.iter().map(|t| t.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        let mut queries = Vec::new();
        for (n, target) in targets.iter().enumerate().filter(|(_, t)| t.region == region) {
            for (k, &kind) in target.kinds.iter().enumerate() {
                queries.push(MetricQuery {
                    id: format!("r{n}k{k}"),
                    kind,
                    dimensions: target.dimensions.clone(),
                    period_secs: DAY_SECONDS,
                });
            }
        }
        let batch_count = queries.len().div_ceil(MAX_QUERIES_PER_CALL);
        for (b, batch) in queries.chunks(MAX_QUERIES_PER_CALL).enumerate() {
            for one in fetch_batch(api, region, batch, window, requests, &finops_core::Silent, b, batch_count).await? {
                let Some(target) =
                    one.id.strip_prefix('r').and_then(|r| r.split_once('k')).and_then(|(t, _)| t.parse::<usize>().ok())
                else {
                    continue;
                };
                for (&ts, &value) in one.timestamps.iter().zip(&one.values) {
                    if let (Some(day), Some(slot)) = (window.day_index(ts), days.get_mut(target)) {
                        *slot.entry(day).or_default() += value;
                    }
                }
            }
        }
    }
    Ok(days)
}

/// Sends `queries` in batches of at most 500, a few calls in flight, merging pages into `series` as they arrive
/// (a large region never holds all its series at once).
#[allow(clippy::too_many_arguments)]
async fn fetch<M: MetricsApi>(
    api: &M,
    region: &str,
    queries: &[MetricQuery],
    targets: &[(usize, MetricKind)],
    window: &LookbackWindow,
    requests: &Requests,
    progress: &dyn ProgressSink,
    series: &mut DailySeries,
) -> Result<(), FinopsError> {
    let targets: HashMap<&str, QueryTarget> = queries
        .iter()
        .zip(targets)
        .map(|(q, &(instance, kind))| (q.id.as_str(), QueryTarget { instance, kind }))
        .collect();
    let batch_count = queries.len().div_ceil(MAX_QUERIES_PER_CALL);
    // The stream is over batch numbers, not slices: a closure taking a borrowed slice defeats the compiler's Send
    // proof for callers that need a Send future (the Converse tool runner).
    let mut pages = std::pin::pin!(stream::iter(0..batch_count)
        .map(move |n| {
            let batch = &queries[n * MAX_QUERIES_PER_CALL..((n + 1) * MAX_QUERIES_PER_CALL).min(queries.len())];
            fetch_batch(api, region, batch, window, requests, progress, n, batch_count)
        })
        .buffer_unordered(CONCURRENT_CALLS));
    while let Some(batch_series) = pages.try_next().await? {
        for one in batch_series {
            let Some(&target) = targets.get(one.id.as_str()) else { continue };
            for (&ts, &value) in one.timestamps.iter().zip(&one.values) {
                if let Some(day) = window.day_index(ts) {
                    series.record(target, day as usize, value);
                }
            }
        }
    }
    Ok(())
}

/// One batch of at most 500 queries: GetMetricData, following NextToken.
#[allow(clippy::too_many_arguments)]
async fn fetch_batch<M: MetricsApi>(
    api: &M,
    region: &str,
    batch: &[MetricQuery],
    window: &LookbackWindow,
    requests: &Requests,
    progress: &dyn ProgressSink,
    n: usize,
    batch_count: usize,
) -> Result<Vec<MetricSeries>, FinopsError> {
    let mut series = Vec::new();
    let mut token = None;
    loop {
        requests.calls.fetch_add(1, Ordering::Relaxed);
        requests.metrics.fetch_add(batch.len(), Ordering::Relaxed);
        let page = api.get_metric_data(region, batch, window, token).await?;
        series.extend(page.series);
        match page.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    progress.report(ProgressEvent::MetricsBatch {
        region: region.to_owned(),
        batch: n + 1,
        batches: batch_count,
        queries: batch.len(),
    });
    Ok(series)
}

/// Verdicts and costs of a fleet: what both the Lambda and `finops scan` compute.
pub struct Analysis {
    pub window: LookbackWindow,
    pub summaries: Vec<UtilisationSummary>,
    pub get_metric_data_calls: usize,
    /// Metric queries sent (CloudWatch bills GetMetricData per metric requested).
    pub metrics_requested: usize,
}

impl Analysis {
    /// Nothing analysed yet, over `window`: what a fan-out starts from before it absorbs each item's analysis.
    pub fn empty(window: LookbackWindow) -> Self {
        Self { window, summaries: Vec::new(), get_metric_data_calls: 0, metrics_requested: 0 }
    }

    /// Adds another part of the fleet, analysed over the same window (another account or region).
    pub fn absorb(&mut self, other: Analysis) {
        debug_assert_eq!(self.window, other.window, "parts of one run share its window");
        self.summaries.extend(other.summaries);
        self.get_metric_data_calls += other.get_metric_data_calls;
        self.metrics_requested += other.metrics_requested;
    }
}

pub async fn analyse<M: MetricsApi, P: PriceListApi>(
    api: &M,
    prices: &PriceBook<P>,
    instances: &[InstanceRecord],
    criteria: &IdleCriteria,
    stages: MetricStages,
    now: DateTime<Utc>,
    progress: &dyn ProgressSink,
) -> Result<Analysis, FinopsError> {
    let window = LookbackWindow::ending_before(now, criteria.lookback_days);
    let collected = collect_staged(api, instances, Asked::for_stages(stages, criteria), &window, progress).await?;
    let mut summaries = Vec::with_capacity(instances.len());
    for (instance, days) in instances.iter().zip(collected.daily) {
        let assessment = criteria.assess(&window, instance.launch_time, &days);
        let hourly = prices.instance_hourly(&instance.region, &instance.instance_type, instance.is_windows()).await;
        let mut storage = Vec::with_capacity(instance.volumes.len());
        for v in &instance.volumes {
            storage.push(prices.volume_monthly(&instance.region, v).await);
        }
        let cost = CostEstimate::new(instance, assessment.verdict, hourly, &storage);
        summaries.push(UtilisationSummary {
            instance_id: instance.instance_id.clone(),
            region: instance.region.clone(),
            stats: UtilisationStats::from_days(&days),
            days,
            assessment,
            cost,
        });
    }
    progress.report(ProgressEvent::Priced { instances: summaries.len() });
    Ok(Analysis {
        window,
        summaries,
        get_metric_data_calls: collected.get_metric_data_calls,
        metrics_requested: collected.metrics_requested,
    })
}

/// The Lambda handler.
pub async fn handle<M: MetricsApi, P: PriceListApi, R: RunStore>(
    event: serde_json::Value,
    api: &M,
    prices: &PriceBook<P>,
    store: &R,
    config: &DetectionConfig,
    now: DateTime<Utc>,
) -> Result<MetricsOutput, FinopsError> {
    let request: MetricsRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("metrics expects the inventory step's output ({{runId, inventory}}): {e}"))
    })?;
    validate_run_id(&request.run_id)?;
    let config = config
        .clone()
        .with_run_overrides(request.lookback_days, request.criteria.as_deref())
        .map_err(|e| FinopsError::InvalidInput(e.to_string()))?;
    let inventory: InventoryDocument = get_json(store, &request.inventory).await?;
    if inventory.run_id != request.run_id {
        return Err(FinopsError::InvalidInput(format!(
            "inventory document belongs to run {:?}, not {:?}",
            inventory.run_id, request.run_id
        )));
    }
    let price_calls_before = prices.api_calls();
    let mut analysis =
        analyse(api, prices, &inventory.instances, &config.criteria, config.metric_stages, now, &finops_core::Silent)
            .await?;
    let resources =
        assess_resources(api, prices, &inventory.other_resources, &analysis.window, config.stopped_days, now).await?;
    analysis.get_metric_data_calls += resources.get_metric_data_calls;
    analysis.metrics_requested += resources.metrics_requested;
    let price_list_calls = prices.api_calls() - price_calls_before;
    let detected = Detected {
        inventory_ref: request.inventory,
        inventory: &inventory,
        analysis,
        resources: resources.findings,
        price_list_calls,
    };
    store_utilisation(store, &request.run_id, detected, &config).await
}

/// What detection found for a run: its inventory and the analysis of every instance in it.
pub struct Detected<'a> {
    pub inventory_ref: ObjectRef,
    pub inventory: &'a InventoryDocument,
    pub analysis: Analysis,
    /// The inventory's other resources, measured and priced ([`assess_resources`]).
    pub resources: Vec<finops_core::resources::ResourceFinding>,
    pub price_list_calls: usize,
}

/// Stores the run's utilisation document and builds the step output (verdicts, shortlist, saving): the end of the
/// metrics step, and of the organization's merge, which builds one run's detection from many accounts'.
pub async fn store_utilisation<R: RunStore>(
    store: &R,
    run_id: &str,
    detected: Detected<'_>,
    config: &DetectionConfig,
) -> Result<MetricsOutput, FinopsError> {
    let Detected { inventory_ref, inventory, analysis, resources, price_list_calls } = detected;
    let mut verdicts = VerdictCounts::default();
    for s in &analysis.summaries {
        verdicts.add(s.verdict());
    }
    let types: HashMap<&str, &str> =
        inventory.instances.iter().map(|i| (i.instance_id.as_str(), i.instance_type.as_str())).collect();
    let candidates = analysis
        .summaries
        .iter()
        .map(|s| ShortlistEntry::from_summary(s, types.get(s.instance_id.as_str()).copied().unwrap_or("unknown")));
    let (shortlist, shortlist_omitted) = shortlist(candidates, config.shortlist_limit);
    let estimated_monthly_saving_usd = analysis
        .summaries
        .iter()
        .filter(|s| matches!(s.verdict(), finops_core::IdleVerdict::Idle | finops_core::IdleVerdict::Underutilised))
        .filter_map(|s| s.cost.monthly_saving_usd)
        .sum::<f64>();

    let document = UtilisationDocument {
        run_id: run_id.to_owned(),
        window: analysis.window,
        criteria: config.criteria.clone(),
        summaries: analysis.summaries,
        resources,
    };
    // About 1.2 KB per instance (14 days of five columns, verdict, reasons, cost).
    let expected_bytes = 4096
        + document.summaries.len() * (1_024 + 24 * document.window.days as usize)
        + document.resources.len() * 1_024;
    let utilisation =
        put_json_sized(store, &format!("runs/{run_id}/utilisation.json"), &document, expected_bytes).await?;
    tracing::info!(
        run_id,
        instances = inventory.instances.len(),
        idle = verdicts.idle,
        underutilised = verdicts.underutilised,
        calls = analysis.get_metric_data_calls,
        metrics = analysis.metrics_requested,
        "utilisation stored"
    );
    Ok(MetricsOutput {
        run_id: run_id.to_owned(),
        regions: inventory.regions.clone(),
        inventory: inventory_ref,
        utilisation,
        window: analysis.window,
        criteria: config.criteria.preset.as_str().to_owned(),
        instance_count: inventory.instances.len(),
        verdicts,
        shortlist,
        shortlist_omitted,
        estimated_monthly_saving_usd: (estimated_monthly_saving_usd * 100.0).round() / 100.0,
        get_metric_data_calls: analysis.get_metric_data_calls,
        metrics_requested: analysis.metrics_requested,
        price_list_calls,
        organization: None,
        accounts_summary: finops_core::steps::THIS_ACCOUNT_ONLY.to_owned(),
    })
}

/// The metrics step as the Lambda and the local runner build it: CloudWatch, the price book (which lives as long
/// as the container, so prices fetched once serve every later run) and the run bucket.
pub struct MetricsStep {
    api: CloudWatchMetrics,
    prices: PriceBook<finops_aws::SdkPriceList>,
    store: finops_aws::S3RunStore,
    config: DetectionConfig,
}

impl MetricsStep {
    /// Needs `FINOPS_RUN_BUCKET` (in `config`); `FINOPS_PRICING=embedded` keeps prices offline.
    pub fn new(sdk: &aws_config::SdkConfig, config: DetectionConfig) -> Result<Self, FinopsError> {
        let store = finops_aws::S3RunStore::new(sdk, config.required_run_bucket()?);
        let api_prices = config.pricing == finops_core::config::PricingMode::Api;
        Ok(Self {
            api: CloudWatchMetrics::new(sdk.clone()),
            prices: PriceBook::new(api_prices.then(|| finops_aws::SdkPriceList::new(sdk))),
            store,
            config,
        })
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<MetricsOutput, FinopsError> {
        handle(event, &self.api, &self.prices, &self.store, &self.config, now).await
    }
}

#[cfg(test)]
mod stage_equivalence;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SyntheticMetrics;
    use finops_aws::SdkPriceList;
    use finops_core::{CriteriaPreset, IdleVerdict};

    fn fleet(n: usize, regions: &[&str]) -> Vec<InstanceRecord> {
        (0..n)
            .map(|i| {
                let launched = Utc::now() - chrono::Duration::days(100);
                InstanceRecord::ordinary(&format!("i-{i:016x}"), regions[i % regions.len()], "m5.large", launched, 0)
            })
            .collect()
    }

    #[tokio::test]
    async fn one_call_per_500_queries_never_one_per_instance() {
        for (n, regions) in [(1, vec!["us-east-1"]), (84, vec!["us-east-1"]), (1_000, vec!["us-east-1", "eu-west-1"])] {
            let api = SyntheticMetrics::default();
            let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
            let criteria = IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14);
            let fleet = fleet(n, &regions);
            let a = analyse(&api, &prices, &fleet, &criteria, MetricStages::One, Utc::now(), &finops_core::Silent)
                .await
                .unwrap();
            let per_region = n.div_ceil(regions.len());
            let expected = regions.len() * (per_region * 6).div_ceil(MAX_QUERIES_PER_CALL);
            assert_eq!(a.get_metric_data_calls, expected, "{n} instances");
            assert_eq!(a.metrics_requested, n * 6);
            assert_eq!(api.calls.load(Ordering::Relaxed), expected);
            assert!(api.largest_call.load(Ordering::Relaxed) <= MAX_QUERIES_PER_CALL);
            let idle = a.summaries.iter().filter(|s| s.verdict() == IdleVerdict::Idle).count();
            let active = a.summaries.iter().filter(|s| s.verdict() == IdleVerdict::Active).count();
            assert_eq!(idle + active, n, "every instance judged on a full series");
        }
    }

    #[tokio::test]
    async fn two_stages_ask_the_other_metrics_only_of_what_cpu_leaves_open() {
        // A tenth of the fleet idle: stage one asks 1,000 CPU averages (2 calls), stage two the other five metrics
        // of the 100 idle ones (1 call).
        let api = SyntheticMetrics::with_idle_percent(10);
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let criteria = IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14);
        let fleet = fleet(1_000, &["us-east-1"]);
        let idle_count = fleet.iter().filter(|i| SyntheticMetrics::looks_idle(10, &i.instance_id)).count();
        assert_eq!(idle_count, 100, "a tenth of 1,000 numbered instances");
        let a = analyse(&api, &prices, &fleet, &criteria, MetricStages::Two, Utc::now(), &finops_core::Silent)
            .await
            .unwrap();
        assert_eq!(a.metrics_requested, 1_000 + idle_count * 5);
        assert_eq!(a.get_metric_data_calls, 2 + (idle_count * 5).div_ceil(MAX_QUERIES_PER_CALL));
        let idle = a.summaries.iter().filter(|s| s.verdict() == IdleVerdict::Idle).count();
        assert_eq!(idle, idle_count);
        // A fresh instance cannot be judged over the window: no query at all.
        let mut fresh = fleet[..1].to_vec();
        fresh[0].launch_time = Utc::now() - chrono::Duration::days(2);
        let a = analyse(&api, &prices, &fresh, &criteria, MetricStages::Two, Utc::now(), &finops_core::Silent)
            .await
            .unwrap();
        assert_eq!((a.metrics_requested, a.get_metric_data_calls), (0, 0));
        assert_eq!(a.summaries[0].verdict(), IdleVerdict::InsufficientData);
    }

    #[test]
    fn memory_query_only_where_the_agent_reports() {
        let fleet = fleet(3, &["us-east-1"]);
        let refs: Vec<(usize, &InstanceRecord)> = fleet.iter().enumerate().collect();
        let memory = HashMap::from([(
            fleet[1].instance_id.clone(),
            vec![("InstanceId".to_owned(), fleet[1].instance_id.clone()), ("ImageId".to_owned(), "ami-1".to_owned())],
        )]);
        let (queries, targets) = plan_queries(&refs, &MetricKind::STANDARD, &memory);
        assert_eq!(queries.len(), 19);
        let mem: Vec<&MetricQuery> = queries.iter().filter(|q| q.kind == MetricKind::MemUsedAverage).collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].dimensions.len(), 2, "the agent's own dimension set");
        assert_eq!(targets.iter().filter(|(i, _)| *i == 1).count(), 7);
        let ids: std::collections::HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids.len(), queries.len(), "query ids are unique");
        assert!(queries.iter().all(|q| q.id.starts_with('q') && q.id[1..].chars().all(|c| c.is_ascii_digit())));
    }
}
