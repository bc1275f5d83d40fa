//! Test support for the finops crates.
//!
//! - [`moto`]: one real moto server per test binary (moto in server mode from the workspace's `.venv`, which
//!   `make test` creates), reset before each test, tests that use it serialised.
//! - [`seed`]: fleets and CloudWatch series written through the real SDK, as a user's account would hold them.
//! - re-exports of `aws-smithy-mocks` for SDK-level failure tests (throttling, access denied, pagination).

pub mod approvals;
pub mod browser;
pub mod eventstream;
pub mod fixtures;
pub mod mail;
pub mod moto;
pub mod organization;
pub mod scripted_model;
pub mod seed;
pub mod slack;
pub mod workflow;

pub use aws_smithy_mocks::{mock, mock_client, RuleMode};
pub use moto::{moto, MotoSession};

/// CPU time (user + system) of this process so far, at microsecond resolution (getrusage).
pub fn process_cpu_time() -> std::time::Duration {
    let usage = rusage();
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of this process so far, bytes (VmHWM: getrusage's ru_maxrss survives execve, so under
/// `cargo run` it would report cargo's own peak).
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage only writes the struct it is given; zeroed is a valid initial value for it.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

// Crates the tests of other members need without declaring them (keeps every member's dependency set, and so the
// SDK's feature set, identical between `cargo build` and `cargo test`).
pub use {
    aws_sdk_bedrockagentruntime, aws_sdk_bedrockruntime, aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_ec2,
    aws_sdk_organizations, aws_sdk_pricing, aws_sdk_s3, aws_sdk_secretsmanager, aws_sdk_sesv2, aws_sdk_sfn,
    aws_sdk_sns, aws_sdk_sqs, aws_smithy_eventstream, aws_smithy_mocks, aws_smithy_runtime_api, aws_smithy_types,
};
