//! Snapshot states moto cannot produce (pending, error), through `aws-smithy-mocks`: the adapter reports them as
//! they are, and the handler (tests/handler.rs) refuses to stop on either.

use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::types::{Snapshot, SnapshotState, Tag};
use aws_sdk_ec2::Client;
use finops_actions::{Ec2Actions, SdkEc2Actions};
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
