//! Plain domain types and rules of finops-agent.
//!
//! Nothing in this crate talks to AWS: the Lambdas and the CLI turn SDK responses into these types, and every rule
//! (idle criteria, savings, configuration) is a pure function over them, tested without any network.

pub mod approval;
pub mod config;
pub mod criteria;
pub mod daily;
pub mod inventory;
pub mod metrics;
pub mod organization;
pub mod policy;
pub mod pricing;
pub mod progress;
pub mod regions;
pub mod resources;
pub mod run_cost;
pub mod savings;
pub mod slack;
pub mod steps;
pub mod tags;
pub mod undo;
pub mod untrusted;
pub mod utilisation;
pub mod verdict;

pub use config::{ConfigError, DeploymentMode, DetectionConfig, MetricStages};
pub use criteria::{CpuStatistic, CriteriaPreset, DailyRule, IdleCriteria, Qualifying, Threshold};
pub use daily::{DailyUtilisation, LookbackWindow};
pub use inventory::{ClusterMembership, InstanceRecord, InstanceStorage, Lifecycle, RootDeviceType, VolumeRecord};
pub use pricing::{CostEstimate, PriceSource, SavingBasis, HOURS_PER_MONTH};
pub use progress::{ProgressEvent, ProgressSink, Silent};
pub use steps::ObjectRef;
pub use utilisation::{UtilisationStats, UtilisationSummary};
pub use verdict::{Assessment, IdleVerdict};

/// Cases each fuzz test runs (the property tests over every parser of untrusted input: approval links and pages,
/// model answers, action-group events): `FINOPS_FUZZ_CASES`, default 2,000 in `make test`; `make chaos` runs more.
pub fn fuzz_cases() -> u32 {
    std::env::var("FINOPS_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(2_000)
}
