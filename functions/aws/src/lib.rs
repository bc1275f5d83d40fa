//! Thin AWS adapters shared by the finops Lambdas and the CLI: SDK configuration with one HTTPS client, the
//! mapping of SDK failures to typed errors with stable Step Functions error names, the run store (S3), the price
//! book (AWS Price List Query API with the embedded fallback), and logging setup.

pub mod error;
pub mod lambda;
pub mod metrics;
pub mod organization;
pub mod pricing;
pub mod sdk;
pub mod store;
pub mod xray;

pub use error::{ErrorName, FinopsError};
pub use organization::{
    caller_account, AccountDirectory, AccountFacts, ListedAccounts, MemberSessions, SdkOrganization,
};
pub use pricing::{HourlyProduct, PriceBook, PriceListApi, SdkPriceList};
pub use sdk::{init_logging, load_sdk_config, AwsSettings};
pub use store::{get_json, put_json, put_json_sized, validate_run_id, MemoryRunStore, RunStore, S3RunStore};
