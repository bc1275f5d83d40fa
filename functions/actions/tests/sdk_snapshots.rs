//! Snapshot states moto cannot produce (pending, error), through `aws-smithy-mocks`: the adapter reports them as
//! they are, and the handler (tests/handler.rs) refuses to stop on either.

use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::types::{Snapshot, SnapshotState, Tag};
use aws_sdk_ec2::Client;
use finops_actions::{Ec2Actions, SdkEc2Actions};
use finops_testkit::aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use finops_testkit::aws_smithy_runtime_api::http::StatusCode;
use finops_testkit::aws_smithy_types::body::SdkBody;
use finops_testkit::{aws_sdk_ec2, mock, mock_client, RuleMode};

fn snapshot(id: &str, state: SnapshotState) -> Snapshot {
    Snapshot::builder()
        .snapshot_id(id)
        .volume_id("vol-1")
        .state(state)
        .progress("40%")
        .tags(Tag::builder().key("finops:run-id").value("run-1").build())
        .tags(Tag::builder().key("finops:instance-id").value("i-1").build())
        .build()
}

#[tokio::test]
async fn pending_and_failed_snapshots_are_reported_as_they_are_in_the_order_asked() {
    let snaps = mock!(Client::describe_snapshots).then_output(|| {
        DescribeSnapshotsOutput::builder()
            .snapshots(snapshot("snap-2", SnapshotState::Error))
            .snapshots(snapshot("snap-1", SnapshotState::Pending))
            .build()
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&snaps]);
    let ec2 = SdkEc2Actions::from_client(client);
    let ids = ["snap-1".to_string(), "snap-2".to_string(), "snap-gone".to_string()];
    let found = ec2.describe_snapshots("us-east-1", &ids).await.unwrap();
    let seen: Vec<(&str, &str, &str)> =
        found.iter().map(|s| (s.snapshot_id.as_str(), s.state.as_str(), s.progress.as_str())).collect();
    assert_eq!(seen, [("snap-1", "pending", "40%"), ("snap-2", "error", "40%")], "a missing id is left out");
    assert_eq!(found[0].tags["finops:run-id"], "run-1");
    assert!(ec2.describe_snapshots("us-east-1", &[]).await.unwrap().is_empty());
    assert_eq!(snaps.num_calls(), 1, "no call for an empty list");
}

/// A CreateSnapshots answered with a 500 may have made its snapshots: the SDK must not send it again (a second set
/// of snapshots); the step fails and its retry looks for this run's snapshots first.
#[tokio::test]
async fn a_create_snapshots_without_an_answer_is_not_sent_again() {
    let lost = mock!(Client::create_snapshots).sequence().http_response(|| {
        let body =
            "<Response><Errors><Error><Code>InternalError</Code><Message>lost</Message></Error></Errors></Response>";
        HttpResponse::new(StatusCode::try_from(500).unwrap(), SdkBody::from(body))
    });
    let lost = lost.times(3).build();
    let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&lost], |c| c.retry_config(
        aws_sdk_ec2::config::retry::RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(std::time::Duration::from_millis(1))
    ));
    let ec2 = SdkEc2Actions::from_client(client);
    let err = ec2.create_snapshots("us-east-1", "i-1", &[("finops:run-id".into(), "run-1".into())]).await.unwrap_err();
    assert_eq!(err.error_name(), "Finops.Transient", "{err}");
    assert_eq!(lost.num_calls(), 1, "one CreateSnapshots, whatever the client's retry settings");
}
