//! Test support for the finops crates.
//!
//! - [`moto`]: one real moto server per test binary (moto in server mode from the workspace's `.venv`, which
//!   `make test` creates), reset before each test, tests that use it serialised.
//! - [`seed`]: fleets and CloudWatch series written through the real SDK, as a user's account would hold them.
//! - re-exports of `aws-smithy-mocks` for SDK-level failure tests (throttling, access denied, pagination).

pub mod moto;
pub mod seed;

pub use aws_smithy_mocks::{mock, mock_client, RuleMode};
pub use moto::{moto, MotoSession};

/// Wall-clock-independent process CPU time, for benchmarks.
pub fn process_cpu_time() -> std::time::Duration {
    // /proc/self/stat fields 14 and 15 are utime and stime in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the command name, field 14 (utime) is index 11 and field 15 (stime) index 12.
    std::time::Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Peak resident set size of this process, bytes (VmHWM).
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

// Crates the tests of other members need without declaring them (keeps every member's dependency set, and so the
// SDK's feature set, identical between `cargo build` and `cargo test`).
pub use {
    aws_sdk_cloudwatch, aws_sdk_ec2, aws_sdk_pricing, aws_sdk_s3, aws_smithy_mocks, aws_smithy_runtime_api,
    aws_smithy_types,
};
