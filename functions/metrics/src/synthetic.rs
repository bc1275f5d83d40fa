//! A synthetic CloudWatch for benchmarks and tests at fleet sizes moto cannot serve: every query gets a full,
//! deterministic daily series, and every call is counted and checked against the API's 500-query limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use finops_aws::FinopsError;
use finops_core::LookbackWindow;

use crate::{MetricDataPage, MetricKind, MetricQuery, MetricSeries, MetricsApi, MAX_QUERIES_PER_CALL};

pub struct SyntheticMetrics {
    pub calls: AtomicUsize,
    pub largest_call: AtomicUsize,
    /// The share of instances that look idle, in percent.
    idle_percent: u64,
}

impl Default for SyntheticMetrics {
    /// Half the fleet idle.
    fn default() -> Self {
        Self::with_idle_percent(50)
    }
}

impl SyntheticMetrics {
    pub fn with_idle_percent(idle_percent: u64) -> Self {
        Self { calls: AtomicUsize::new(0), largest_call: AtomicUsize::new(0), idle_percent }
    }

    /// Whether an instance looks idle. Numbered ids (`i-<hex number>`, as the benchmark's fleet has) are idle when the
    /// number modulo 100 is below the share, so the share is exact; other ids by a hash (FNV-1a) below it.
    pub fn looks_idle(idle_percent: u64, instance_id: &str) -> bool {
        let number = instance_id.strip_prefix("i-").and_then(|hex| u64::from_str_radix(hex, 16).ok());
        let spread = number.unwrap_or_else(|| {
            instance_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        });
        spread % 100 < idle_percent
    }

    /// The value of one day: idle instances are quiet, the others busy.
    fn value(&self, instance_id: &str, kind: MetricKind, day: u32) -> f64 {
        let idle = Self::looks_idle(self.idle_percent, instance_id);
        let wobble = f64::from(day % 3) * 0.1;
        match (idle, kind) {
            (true, MetricKind::CpuAverage) => 0.5 + wobble,
            (true, MetricKind::CpuMaximum) => 2.0 + wobble,
            (true, MetricKind::NetworkIn | MetricKind::NetworkOut) => 200_000.0,
            (true, MetricKind::DiskReadOps | MetricKind::DiskWriteOps) => 5_000.0,
            (false, MetricKind::CpuAverage) => 35.0 + wobble,
            (false, MetricKind::CpuMaximum) => 90.0,
            (false, MetricKind::NetworkIn | MetricKind::NetworkOut) => 3e9,
            (false, MetricKind::DiskReadOps | MetricKind::DiskWriteOps) => 5e5,
            (_, MetricKind::MemUsedAverage) => 30.0,
            (
                _,
                MetricKind::VolumeReadOps
                | MetricKind::VolumeWriteOps
                | MetricKind::NatBytesOut
                | MetricKind::AlbRequests
                | MetricKind::NlbNewFlows
                | MetricKind::GwlbNewFlows,
            ) => 0.0,
        }
    }
}

impl MetricsApi for SyntheticMetrics {
    async fn memory_dimensions(&self, _region: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        Ok(HashMap::new())
    }

    async fn get_metric_data(
        &self,
        _region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        _next_token: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.largest_call.fetch_max(queries.len(), Ordering::Relaxed);
        Ok(answer(queries, window, |instance_id, kind, day| Some(self.value(instance_id, kind, day))))
    }
}

/// A CloudWatch that answers from a table: each (instance, metric) has its own daily values, `None` where no
/// datapoint exists, and memory only for instances listed with the agent. For comparing evaluations on fleets
/// with every shape of data.
#[derive(Default)]
pub struct TableMetrics {
    /// Daily values by instance id and metric, indexed by day of the window.
    pub values: HashMap<(String, MetricKind), Vec<Option<f64>>>,
    /// Instances whose CloudWatch agent publishes memory.
    pub agents: Vec<String>,
    pub metrics_requested: AtomicUsize,
}

impl MetricsApi for TableMetrics {
    async fn memory_dimensions(&self, _region: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        Ok(self
            .agents
            .iter()
            .map(|id| (id.clone(), vec![("InstanceId".to_owned(), id.clone()), ("ImageId".to_owned(), "ami-1".into())]))
            .collect())
    }

    async fn get_metric_data(
        &self,
        _region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        _next_token: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        self.metrics_requested.fetch_add(queries.len(), Ordering::Relaxed);
        Ok(answer(queries, window, |instance_id, kind, day| {
            self.values.get(&(instance_id.to_owned(), kind)).and_then(|days| days.get(day as usize).copied().flatten())
        }))
    }
}

/// One GetMetricData answer: a daily series per query from `value(instance id, metric, day)`, a day without a value
/// left out as CloudWatch leaves out a missing datapoint. Checks the API's 500-query limit.
fn answer(
    queries: &[MetricQuery],
    window: &LookbackWindow,
    value: impl Fn(&str, MetricKind, u32) -> Option<f64>,
) -> MetricDataPage {
    assert!(queries.len() <= MAX_QUERIES_PER_CALL, "{} queries in one call", queries.len());
    let start = window.start().timestamp();
    let series = queries
        .iter()
        .map(|q| {
            let instance_id = q.dimensions.iter().find(|(n, _)| n == "InstanceId").map_or("", |(_, v)| v.as_str());
            let (timestamps, values) = (0..window.days)
                .filter_map(|d| value(instance_id, q.kind, d).map(|v| (start + i64::from(d) * 86_400, v)))
                .unzip();
            MetricSeries { id: q.id.clone(), timestamps, values }
        })
        .collect();
    MetricDataPage { series, next_token: None }
}
