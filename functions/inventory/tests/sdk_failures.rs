//! EC2 failures through `aws-smithy-mocks`: what moto cannot be made to do (throttle, deny) and exact page splits.

use std::time::Duration;

use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::operation::describe_instance_types::DescribeInstanceTypesOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDevice, Instance, InstanceBlockDeviceMapping, InstanceState, InstanceStateName,
    InstanceStorageInfo, InstanceTypeInfo, Reservation,
};
use aws_sdk_ec2::Client;
use finops_core::InstanceStorage;
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

/// t3.micro without instance storage, as DescribeInstanceTypes describes it.
fn types() -> finops_testkit::aws_smithy_mocks::Rule {
    mock!(Client::describe_instance_types).then_output(|| {
        DescribeInstanceTypesOutput::builder()
            .instance_types(
                InstanceTypeInfo::builder().instance_type("t3.micro".into()).instance_storage_supported(false).build(),
            )
            .instance_types(
                InstanceTypeInfo::builder()
                    .instance_type("m5d.large".into())
                    .instance_storage_supported(true)
                    .instance_storage_info(InstanceStorageInfo::builder().total_size_in_gb(75).build())
                    .build(),
            )
            .build()
    })
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
    let (volumes, types) = (no_volumes(), types());
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&flaky, &volumes, &types], |c| c
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
    let (volumes, types) = (no_volumes(), types());
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&page1, &page2, &volumes, &types]);
    let found = describe_region(&client, "eu-west-1").await.unwrap();
    let ids: Vec<&str> = found.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2", "i-3"]);
    assert_eq!(page1.num_calls(), 1);
    assert_eq!(page2.num_calls(), 1);
    assert!(found.iter().all(|i| i.region == "eu-west-1" && i.tags.is_empty()));
}

#[tokio::test]
async fn instance_storage_comes_from_the_type_and_the_block_device_mappings() {
    let with_type = |id: &str, t: &str| Instance::builder().instance_type(t.into()).instance_id(id).build();
    let instances = mock!(Client::describe_instances).then_output(move || {
        let ephemeral = Instance::builder()
            .instance_id("i-ephemeral")
            .instance_type("t3.micro".into())
            .block_device_mappings(
                InstanceBlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(EbsInstanceBlockDevice::builder().volume_id("vol-1").build())
                    .build(),
            )
            .block_device_mappings(InstanceBlockDeviceMapping::builder().device_name("/dev/sdb").build())
            .build();
        DescribeInstancesOutput::builder()
            .reservations(
                Reservation::builder()
                    .instances(with_type("i-plain", "t3.micro"))
                    .instances(with_type("i-nvme", "m5d.large"))
                    .instances(with_type("i-new-type", "zz9.large"))
                    .instances(ephemeral)
                    .build(),
            )
            .build()
    });
    let (volumes, types) = (no_volumes(), types());
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&instances, &volumes, &types]);
    let found = describe_region(&client, "us-east-1").await.unwrap();
    let storage = |id: &str| found.iter().find(|i| i.instance_id == id).unwrap().instance_storage;
    assert_eq!(storage("i-plain"), InstanceStorage::None);
    assert_eq!(storage("i-nvme"), InstanceStorage::Present { total_gib: 75 });
    assert_eq!(storage("i-ephemeral"), InstanceStorage::Present { total_gib: 0 }, "a mapping without EBS");
    assert_eq!(storage("i-new-type"), InstanceStorage::Unknown, "a type EC2 did not describe");
    assert_eq!(types.num_calls(), 1, "one DescribeInstanceTypes call for the region's types");
}

#[tokio::test]
async fn a_type_ec2_will_not_describe_leaves_its_instances_unknown() {
    let instances = mock!(Client::describe_instances).then_output(|| {
        DescribeInstancesOutput::builder()
            .reservations(Reservation::builder().instances(running("i-1")).build())
            .build()
    });
    let invalid = mock!(Client::describe_instance_types).then_http_response(|| ec2_error(400, "InvalidInstanceType"));
    let volumes = no_volumes();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&instances, &volumes, &invalid], |c| c
        .retry_config(RetryConfig::disabled()));
    let found = describe_region(&client, "us-east-1").await.unwrap();
    assert_eq!(found[0].instance_storage, InstanceStorage::Unknown);
}

#[tokio::test]
async fn a_server_fault_under_a_service_specific_code_is_transient() {
    let broken = mock!(Client::describe_instances)
        .sequence()
        .http_response(|| ec2_error(500, "InternalServiceFault"))
        .times(3)
        .build();
    let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&broken], |c| c
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1))));
    let err = describe_region(&client, "us-east-1").await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.Transient", "a 5xx is retried by the state machine: {err}");
}
