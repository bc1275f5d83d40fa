//! The CloudWatch adapter: GetMetricData and ListMetrics through the SDK.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use finops_aws::sdk::RegionalClient;
use finops_aws::FinopsError;
use finops_core::LookbackWindow;

use crate::{MetricDataPage, MetricQuery, MetricSeries, MetricsApi};

/// CloudWatch clients per region from one SDK configuration (or one given client, for tests).
pub struct CloudWatchMetrics {
    clients: RegionalClient<aws_sdk_cloudwatch::Client>,
}

impl CloudWatchMetrics {
    pub fn new(config: SdkConfig) -> Self {
        Self { clients: RegionalClient::new(config, aws_sdk_cloudwatch::Client::new) }
    }

    /// Uses one client whatever the region (mocked clients in tests).
    pub fn from_client(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { clients: RegionalClient::fixed(client, aws_sdk_cloudwatch::Client::new) }
    }

    fn client(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        self.clients.for_region(region)
    }
}

impl MetricsApi for CloudWatchMetrics {
    async fn memory_dimensions(&self, region: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        let client = self.client(region);
        let mut found = HashMap::new();
        let mut pages =
            client.list_metrics().namespace("CWAgent").metric_name("mem_used_percent").into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| FinopsError::from_sdk("CloudWatch", "ListMetrics", e))?;
            for metric in page.metrics() {
                let dims: Vec<(String, String)> = metric
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                    .collect();
                if let Some((_, id)) = dims.iter().find(|(n, _)| n == "InstanceId") {
                    // Several dimension sets per instance are possible (agent reconfigured); the first is kept.
                    found.entry(id.clone()).or_insert(dims);
                }
            }
        }
        Ok(found)
    }

    async fn get_metric_data(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        next_token: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        let queries: Vec<MetricDataQuery> = queries.iter().map(to_sdk_query).collect();
        let out = self
            .client(region)
            .get_metric_data()
            .set_metric_data_queries(Some(queries))
            .start_time(AwsDateTime::from_secs(window.start().timestamp()))
            .end_time(AwsDateTime::from_secs(window.end().timestamp()))
            .scan_by(ScanBy::TimestampAscending)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("CloudWatch", "GetMetricData", e))?;
        let series = out
            .metric_data_results()
            .iter()
            .map(|r| MetricSeries {
                id: r.id().unwrap_or_default().to_owned(),
                timestamps: r.timestamps().iter().map(|t| t.secs()).collect(),
                values: r.values().to_vec(),
            })
            .collect();
        Ok(MetricDataPage { series, next_token: out.next_token().map(str::to_owned) })
    }
}

fn to_sdk_query(q: &MetricQuery) -> MetricDataQuery {
    let dimensions: Vec<Dimension> =
        q.dimensions.iter().map(|(n, v)| Dimension::builder().name(n).value(v).build()).collect();
    MetricDataQuery::builder()
        .id(&q.id)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(q.kind.namespace())
                        .metric_name(q.kind.metric_name())
                        .set_dimensions(Some(dimensions))
                        .build(),
                )
                .period(q.period_secs)
                .stat(q.kind.stat())
                .build(),
        )
        .return_data(true)
        .build()
}
