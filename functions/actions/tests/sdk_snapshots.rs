//! Snapshot states moto cannot produce (pending, error), through `aws-smithy-mocks`.

use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::types::{
    Instance, InstanceState, InstanceStateName, Reservation, Snapshot, SnapshotState, Tag, Volume, VolumeAttachment,
};
use aws_sdk_ec2::Client;
use chrono::Utc;
use finops_actions::{handle, ActionsConfig, Outcome, SdkEc2Actions};
use finops_testkit::{aws_sdk_ec2, mock, mock_client, RuleMode};
use serde_json::json;

fn snapshot(state: SnapshotState) -> Snapshot {
    Snapshot::builder()
        .snapshot_id("snap-1")
        .volume_id("vol-1")
        .state(state)
        .progress("40%")
        .tags(Tag::builder().key("finops:run-id").value("run-1").build())
        .tags(Tag::builder().key("finops:instance-id").value("i-1").build())
        .build()
}

async fn stop_with(state: SnapshotState) -> finops_actions::ActionOutcome {
    let instance = mock!(Client::describe_instances).then_output(|| {
        DescribeInstancesOutput::builder()
            .reservations(
                Reservation::builder()
                    .instances(
                        Instance::builder()
                            .instance_id("i-1")
                            .state(InstanceState::builder().name(InstanceStateName::Running).build())
                            .launch_time(finops_testkit::aws_smithy_types::DateTime::from_secs(1_700_000_000))
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let volumes = mock!(Client::describe_volumes).then_output(|| {
        DescribeVolumesOutput::builder()
            .volumes(
                Volume::builder()
                    .volume_id("vol-1")
                    .size(8)
                    .attachments(VolumeAttachment::builder().instance_id("i-1").build())
                    .build(),
            )
            .build()
    });
    let shown = state.clone();
    let snaps = mock!(Client::describe_snapshots)
        .then_output(move || DescribeSnapshotsOutput::builder().snapshots(snapshot(shown.clone())).build());
    let stop = mock!(Client::stop_instances)
        .then_output(|| aws_sdk_ec2::operation::stop_instances::StopInstancesOutput::builder().build());
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&instance, &volumes, &snaps, &stop]);
    let out = handle(
        json!({"operation": "stop", "runId": "run-1", "proposal": {"instanceId": "i-1", "region": "us-east-1"}, "snapshotIds": ["snap-1"], "decision": {"decision": "approve"}}),
        &SdkEc2Actions::from_client(client),
        &ActionsConfig::from_vars(Vec::new()).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(stop.num_calls(), 0, "StopInstances must not be called with {state:?} snapshots");
    out
}

#[tokio::test]
async fn a_pending_snapshot_blocks_the_stop() {
    let out = stop_with(SnapshotState::Pending).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(out.detail.contains("in progress: snap-1 40%"), "{}", out.detail);
}

#[tokio::test]
async fn a_failed_snapshot_blocks_the_stop() {
    let out = stop_with(SnapshotState::Error).await;
    assert_eq!(out.outcome, Outcome::Refused);
    assert!(out.detail.contains("failed"), "{}", out.detail);
}
