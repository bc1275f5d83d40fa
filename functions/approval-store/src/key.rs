//! The HMAC key of approval links, from Secrets Manager (read once per container), and a fixed one for tests.

use std::future::Future;

use aws_config::SdkConfig;
use finops_aws::FinopsError;

pub trait SigningKey: Send + Sync {
    fn key(&self) -> impl Future<Output = Result<Vec<u8>, FinopsError>> + Send;
}

/// The key from Secrets Manager, fetched once per container.
pub struct SecretsManagerKey {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    cached: tokio::sync::OnceCell<Vec<u8>>,
}

impl SecretsManagerKey {
    pub fn new(config: &SdkConfig, secret_id: impl Into<String>) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(config),
            secret_id: secret_id.into(),
            cached: tokio::sync::OnceCell::new(),
        }
    }
}

/// Keys shorter than this are refused: a guessable key makes every link forgeable.
pub const MIN_KEY_BYTES: usize = 32;

/// One secret's current value (the link-signing key, the Slack app's secrets).
pub async fn secret_value(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput, FinopsError> {
    client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| FinopsError::from_sdk("SecretsManager", "GetSecretValue", e))
}

impl SigningKey for SecretsManagerKey {
    async fn key(&self) -> Result<Vec<u8>, FinopsError> {
        self.cached
            .get_or_try_init(|| async {
                let out = secret_value(&self.client, &self.secret_id).await?;
                let key = out
                    .secret_string()
                    .map(|s| s.as_bytes().to_vec())
                    .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
                    .unwrap_or_default();
                if key.len() < MIN_KEY_BYTES {
                    return Err(FinopsError::Configuration(format!(
                        "signing secret {} is shorter than {MIN_KEY_BYTES} bytes",
                        self.secret_id
                    )));
                }
                Ok(key)
            })
            .await
            .cloned()
    }
}

/// A fixed key (tests, the local demo).
pub struct StaticKey(pub Vec<u8>);

impl SigningKey for StaticKey {
    async fn key(&self) -> Result<Vec<u8>, FinopsError> {
        Ok(self.0.clone())
    }
}
