//! CloudWatch failures and page splits through `aws-smithy-mocks`.

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataError, GetMetricDataOutput};
use aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput;
use aws_sdk_cloudwatch::types::MetricDataResult;
use aws_sdk_cloudwatch::Client;
use chrono::{TimeZone, Utc};
use finops_core::{InstanceRecord, LookbackWindow};
use finops_metrics::{collect_daily, CloudWatchMetrics};
use finops_testkit::aws_smithy_types::error::ErrorMetadata;
use finops_testkit::aws_smithy_types::DateTime as AwsDateTime;
use finops_testkit::{mock, mock_client, RuleMode};

fn window() -> LookbackWindow {
    LookbackWindow::ending_before(Utc.with_ymd_and_hms(2026, 11, 28, 9, 0, 0).unwrap(), 14)
}

fn instance(id: &str) -> InstanceRecord {
    InstanceRecord::ordinary(id, "us-east-1", "t3.micro", Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(), 0)
}

fn series(id: &str, days: std::ops::Range<u32>, value: f64) -> MetricDataResult {
    let start = window().start().timestamp();
    let mut b = MetricDataResult::builder().id(id);
    for d in days {
        b = b.timestamps(AwsDateTime::from_secs(start + i64::from(d) * 86_400)).values(value);
    }
    b.build()
}

fn no_agent() -> aws_smithy_mocks::Rule {
    mock!(Client::list_metrics).then_output(|| ListMetricsOutput::builder().build())
}

use finops_testkit::aws_smithy_mocks;

#[tokio::test]
async fn a_series_split_across_next_token_pages_is_joined() {
    // Page 1 carries the first 9 days of CPU average and the token; page 2 the rest and the other metrics.
    let page1 = mock!(Client::get_metric_data).match_requests(|r| r.next_token().is_none()).then_output(|| {
        GetMetricDataOutput::builder().metric_data_results(series("q0", 0..9, 1.0)).next_token("more").build()
    });
    let page2 = mock!(Client::get_metric_data).match_requests(|r| r.next_token() == Some("more")).then_output(|| {
        GetMetricDataOutput::builder()
            .metric_data_results(series("q0", 9..14, 1.0))
            .metric_data_results(series("q1", 0..14, 2.0))
            .metric_data_results(series("q2", 0..14, 100.0))
            .metric_data_results(series("q3", 0..14, 50.0))
            .build()
    });
    let agent = no_agent();
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&page1, &page2, &agent]);
    let (daily, calls) =
        collect_daily(&CloudWatchMetrics::from_client(client), &[instance("i-1")], &window(), &finops_core::Silent)
            .await
            .unwrap();
    assert_eq!(calls, 2);
    assert_eq!(page1.num_calls(), 1);
    assert_eq!(page2.num_calls(), 1);
    assert!(daily[0].iter().all(|d| d.cpu_avg_percent == Some(1.0) && d.cpu_max_percent == Some(2.0)));
    assert!(daily[0].iter().all(|d| d.network_bytes == Some(150.0)), "in + out");
    assert!(daily[0].iter().all(|d| d.disk_ops.is_none()), "no EBS series: no disk data");
}

#[tokio::test]
async fn throttling_is_finops_throttled() {
    let throttled = mock!(Client::get_metric_data).then_error(|| {
        GetMetricDataError::generic(ErrorMetadata::builder().code("Throttling").message("Rate exceeded").build())
    });
    let agent = no_agent();
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&throttled, &agent], |c| c
        .retry_config(RetryConfig::disabled()));
    let err =
        collect_daily(&CloudWatchMetrics::from_client(client), &[instance("i-1")], &window(), &finops_core::Silent)
            .await
            .unwrap_err();
    assert_eq!(err.error_name(), "Finops.Throttled");
    assert!(err.to_string().contains("GetMetricData"));
}

#[tokio::test]
async fn access_denied_on_list_metrics_is_finops_access_denied() {
    let denied = mock!(Client::list_metrics).then_error(|| {
        aws_sdk_cloudwatch::operation::list_metrics::ListMetricsError::generic(
            ErrorMetadata::builder().code("AccessDenied").message("not authorized: cloudwatch:ListMetrics").build(),
        )
    });
    let client =
        mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&denied], |c| c.retry_config(RetryConfig::disabled()));
    let err =
        collect_daily(&CloudWatchMetrics::from_client(client), &[instance("i-1")], &window(), &finops_core::Silent)
            .await
            .unwrap_err();
    assert_eq!(err.error_name(), "Finops.AccessDenied");
    assert!(err.to_string().contains("cloudwatch:ListMetrics"));
}
