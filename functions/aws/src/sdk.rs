//! SDK configuration shared by every client: one rustls (ring) HTTPS client, which also serves plain-http
//! endpoints such as a local moto server, and the usual credential/endpoint chain (`AWS_PROFILE`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, ...).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls;

/// Overrides from the command line; `None` leaves the standard chain in charge.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
}

pub async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        // Clients are created per scanned region anyway; a default keeps the S3 and pricing clients usable.
        return config.into_builder().region(Region::from_static("us-east-1")).build();
    }
    config
}

/// The same configuration for another region.
pub fn for_region(config: &SdkConfig, region: &str) -> SdkConfig {
    config.to_builder().region(Region::new(region.to_owned())).build()
}

/// JSON logs for Lambda (CloudWatch Logs Insights can query the fields); `RUST_LOG` sets the level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .try_init();
}

/// An SDK client per region from one configuration, or one fixed client whatever the region (a mocked client in
/// tests). Adapters that work across regions hold one of these.
pub struct RegionalClient<C> {
    config: Option<SdkConfig>,
    fixed: Option<C>,
    make: fn(&SdkConfig) -> C,
}

impl<C: Clone> RegionalClient<C> {
    pub fn new(config: SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        Self { config: Some(config), fixed: None, make }
    }

    pub fn fixed(client: C, make: fn(&SdkConfig) -> C) -> Self {
        Self { config: None, fixed: Some(client), make }
    }

    pub fn for_region(&self, region: &str) -> C {
        match (&self.fixed, &self.config) {
            (Some(c), _) => c.clone(),
            (None, Some(config)) => (self.make)(&for_region(config, region)),
            (None, None) => unreachable!("constructed with a config or a client"),
        }
    }
}
