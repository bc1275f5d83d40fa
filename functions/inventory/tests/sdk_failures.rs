//! EC2 failures through `aws-smithy-mocks`: what moto cannot be made to do (throttle, deny) and exact page splits.

use std::time::Duration;

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::types::{Instance, InstanceState, InstanceStateName, Reservation};
use aws_sdk_ec2::Client;
use finops_inventory::ec2::describe_region;
use finops_testkit::aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use finops_testkit::aws_smithy_runtime_api::http::StatusCode;
use finops_testkit::aws_smithy_types::body::SdkBody;
use finops_testkit::{mock, mock_client, RuleMode};

fn ec2_error(status: u16, code: &str) -> HttpResponse {
    let body = format!(
        "<Response><Errors><Error><Code>{code}</Code><Message>{code} from the mock</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
    );
    HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
}

fn running(id: &str) -> Instance {
    Instance::builder()
        .instance_id(id)
        .instance_type("t3.micro".into())
        .state(InstanceState::builder().name(InstanceStateName::Running).build())
        .launch_time(finops_testkit::aws_smithy_types::DateTime::from_secs(1_700_000_000))
        .build()
}

fn no_volumes() -> finops_testkit::aws_smithy_mocks::Rule {
    mock!(Client::describe_volumes).then_output(|| DescribeVolumesOutput::builder().build())
}

#[tokio::test]
async fn throttling_that_outlasts_retries_is_finops_throttled() {
    let throttled = mock!(Client::describe_instances)
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&throttled], |c| c
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1))));
    let err = describe_region(&client, "us-east-1").await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.Throttled", "{err}");
    assert_eq!(throttled.num_calls(), 3, "the SDK retried before giving up");
}

#[tokio::test]
async fn a_throttle_within_the_retry_budget_is_absorbed() {
    let flaky = mock!(Client::describe_instances)
        .sequence()
        .http_response(|| ec2_error(503, "RequestLimitExceeded"))
        .output(|| {
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(running("i-1")).build())
                .build()
        })
        .build();
    let volumes = no_volumes();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&flaky, &volumes], |c| c
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1))));
    let found = describe_region(&client, "us-east-1").await.expect("retried past one throttle");
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn access_denied_is_finops_access_denied() {
    let denied = mock!(Client::describe_instances).then_http_response(|| ec2_error(403, "UnauthorizedOperation"));
    let client =
        mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&denied], |c| c.retry_config(RetryConfig::disabled()));
    let err = describe_region(&client, "us-east-1").await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.AccessDenied");
    assert!(err.to_string().contains("UnauthorizedOperation from the mock"), "{err}");
}

#[tokio::test]
async fn unknown_ec2_error_is_finops_aws_error_with_its_code() {
    let broken = mock!(Client::describe_instances).then_http_response(|| ec2_error(400, "InvalidParameterValue"));
    let client =
        mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&broken], |c| c.retry_config(RetryConfig::disabled()));
    let err = describe_region(&client, "us-east-1").await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.AwsError");
    assert!(err.to_string().contains("InvalidParameterValue"), "{err}");
}

#[tokio::test]
async fn pages_are_joined_in_order_following_next_token() {
    let page1 = mock!(Client::describe_instances)
        .match_requests(|r| r.next_token().is_none() && r.max_results() == Some(1000))
        .then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(running("i-1")).instances(running("i-2")).build())
                .next_token("page-2")
                .build()
        });
    let page2 =
        mock!(Client::describe_instances).match_requests(|r| r.next_token() == Some("page-2")).then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(running("i-3")).build())
                .build()
        });
    let volumes = no_volumes();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&page1, &page2, &volumes]);
    let found = describe_region(&client, "eu-west-1").await.unwrap();
    let ids: Vec<&str> = found.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2", "i-3"]);
    assert_eq!(page1.num_calls(), 1);
    assert_eq!(page2.num_calls(), 1);
    assert!(found.iter().all(|i| i.region == "eu-west-1" && i.tags.is_empty()));
}
