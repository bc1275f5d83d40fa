//! A synthetic CloudWatch for benchmarks and tests at fleet sizes moto cannot serve: every query gets a full,
//! deterministic daily series, and every call is counted and checked against the API's 500-query limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use finops_aws::FinopsError;
use finops_core::LookbackWindow;

use crate::{MetricDataPage, MetricKind, MetricQuery, MetricSeries, MetricsApi, MAX_QUERIES_PER_CALL};

#[derive(Default)]
pub struct SyntheticMetrics {
    pub calls: AtomicUsize,
    pub largest_call: AtomicUsize,
}

impl SyntheticMetrics {
    /// The value of one day: instances whose id ends in an even hex digit look idle, the others busy.
    fn value(instance_id: &str, kind: MetricKind, day: u32) -> f64 {
        let idle = instance_id.bytes().last().is_some_and(|b| (b as char).to_digit(16).unwrap_or(1).is_multiple_of(2));
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
        assert!(queries.len() <= MAX_QUERIES_PER_CALL, "{} queries in one call", queries.len());
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.largest_call.fetch_max(queries.len(), Ordering::Relaxed);
        let start = window.start().timestamp();
        let series = queries
            .iter()
            .map(|q| {
                let instance_id = q.dimensions.iter().find(|(n, _)| n == "InstanceId").map_or("", |(_, v)| v.as_str());
                MetricSeries {
                    id: q.id.clone(),
                    timestamps: (0..window.days).map(|d| start + i64::from(d) * 86_400).collect(),
                    values: (0..window.days).map(|d| Self::value(instance_id, q.kind, d)).collect(),
                }
            })
            .collect();
        Ok(MetricDataPage { series, next_token: None })
    }
}
