//! Typed errors of the finops steps and the Step Functions error names they are reported under.
//!
//! A Lambda that fails reports `errorType` = [`FinopsError::error_name`]; the state machine's Retry and Catch match
//! those names, so they are part of the contract with `statemachine/finops.asl.json` and must not change casually.

use std::fmt::Debug;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Stable names matched by the state machine's Retry/Catch.
pub struct ErrorName;

impl ErrorName {
    pub const INVALID_INPUT: &'static str = "Finops.InvalidInput";
    pub const THROTTLED: &'static str = "Finops.Throttled";
    pub const ACCESS_DENIED: &'static str = "Finops.AccessDenied";
    pub const TRANSIENT: &'static str = "Finops.Transient";
    pub const AWS_ERROR: &'static str = "Finops.AwsError";
    pub const CONFIGURATION: &'static str = "Finops.Configuration";
}

#[derive(Debug, thiserror::Error)]
pub enum FinopsError {
    /// The event or a value in it is not what the step accepts. Retrying cannot help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The function's own configuration (environment) is wrong. Retrying cannot help.
    #[error("configuration: {0}")]
    Configuration(String),
    /// AWS asked us to slow down even after the SDK's own retries.
    #[error("{service} {operation} throttled: {message}")]
    Throttled { service: &'static str, operation: &'static str, message: String },
    /// Credentials or IAM policy refuse the call (or the region is not enabled for the account).
    #[error("{service} {operation} access denied: {message}")]
    AccessDenied { service: &'static str, operation: &'static str, message: String },
    /// Timeouts, connection failures and 5xx answers: worth retrying later.
    #[error("{service} {operation} unavailable: {message}")]
    Transient { service: &'static str, operation: &'static str, message: String },
    /// Any other AWS error.
    #[error("{service} {operation} failed ({code}): {message}")]
    Aws { service: &'static str, operation: &'static str, code: String, message: String },
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceededException",
];

const ACCESS_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "OptInRequired",
];

const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServerException",
    "InternalServiceFault",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
];

impl FinopsError {
    /// Whether the call may have been carried out although it failed: a timeout, a dropped connection or a 5xx can
    /// come after AWS did the work (the answer was lost). Throttling, access denied and the other AWS errors are
    /// refusals: nothing was done.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    pub fn error_name(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => ErrorName::INVALID_INPUT,
            Self::Configuration(_) => ErrorName::CONFIGURATION,
            Self::Throttled { .. } => ErrorName::THROTTLED,
            Self::AccessDenied { .. } => ErrorName::ACCESS_DENIED,
            Self::Transient { .. } => ErrorName::TRANSIENT,
            Self::Aws { .. } => ErrorName::AWS_ERROR,
        }
    }

    /// Classifies an SDK failure by its error code (and HTTP status where there is no code).
    pub fn from_sdk<E>(service: &'static str, operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let message = DisplayErrorContext(&err).to_string();
        let message = message.chars().take(500).collect::<String>();
        match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                Self::Transient { service, operation, message }
            }
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or_default().to_owned();
                let status = se.raw().status().as_u16();
                // Without a modelled message (an HTML error page, say), the status says enough; the full context
                // of such a response is pages of body text.
                let message = se.err().message().map(str::to_owned).unwrap_or_else(|| format!("HTTP {status}"));
                if THROTTLING_CODES.contains(&code.as_str()) || status == 429 {
                    Self::Throttled { service, operation, message }
                } else if ACCESS_CODES.contains(&code.as_str()) || (code.is_empty() && status == 403) {
                    Self::AccessDenied { service, operation, message }
                // Any 5xx is the service's fault, whatever its code (CloudWatch answers InternalServiceFault, found
                // by `make chaos`: a run failed where a retry would have done).
                } else if TRANSIENT_CODES.contains(&code.as_str()) || status >= 500 {
                    Self::Transient { service, operation, message }
                } else {
                    let code = if code.is_empty() { format!("HTTP {status}") } else { code };
                    Self::Aws { service, operation, code, message }
                }
            }
            _ => Self::Aws { service, operation, code: "Unknown".into(), message },
        }
    }
}

impl From<FinopsError> for lambda_runtime::Diagnostic {
    fn from(e: FinopsError) -> Self {
        lambda_runtime::Diagnostic { error_type: e.error_name().to_owned(), error_message: e.to_string() }
    }
}

impl From<finops_core::ConfigError> for FinopsError {
    fn from(e: finops_core::ConfigError) -> Self {
        Self::Configuration(e.to_string())
    }
}
