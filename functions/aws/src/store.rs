//! The run store: where steps keep fleet-sized documents (inventory, utilisation) so that state payloads carry
//! only references. S3 in deployments; memory for the CLI, which runs every step in one process.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_sdk_s3::primitives::ByteStream;
use finops_core::ObjectRef;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::FinopsError;

pub trait RunStore: Send + Sync {
    /// The bucket documents go to; references to any other bucket are refused.
    fn bucket(&self) -> &str;
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<ObjectRef, FinopsError>> + Send;
    fn get(&self, location: &ObjectRef) -> impl Future<Output = Result<Vec<u8>, FinopsError>> + Send;
}

/// Run ids become S3 key segments and execution names: 1-80 characters of letters, digits, `-` and `_`, as Step
/// Functions allows for execution names. Anything else (slashes, dots) could escape the run's prefix.
pub fn validate_run_id(run_id: &str) -> Result<(), FinopsError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 80
        && run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(FinopsError::InvalidInput(format!(
            "runId {run_id:?} must be 1-80 characters of letters, digits, '-' and '_'"
        )))
    }
}

pub async fn put_json<S: RunStore, T: Serialize>(store: &S, key: &str, value: &T) -> Result<ObjectRef, FinopsError> {
    put_json_sized(store, key, value, 0).await
}

/// Like [`put_json`], with the expected size: a fleet-sized document then grows its buffer once instead of
/// doubling (and briefly holding two copies) on the way to tens of megabytes.
pub async fn put_json_sized<S: RunStore, T: Serialize>(
    store: &S,
    key: &str,
    value: &T,
    expected_bytes: usize,
) -> Result<ObjectRef, FinopsError> {
    let mut body = Vec::with_capacity(expected_bytes);
    serde_json::to_writer(&mut body, value)
        .map_err(|e| FinopsError::InvalidInput(format!("cannot encode {key}: {e}")))?;
    store.put(key, body).await
}

pub async fn get_json<S: RunStore, T: DeserializeOwned>(store: &S, location: &ObjectRef) -> Result<T, FinopsError> {
    if location.bucket != store.bucket() {
        return Err(FinopsError::InvalidInput(format!(
            "reference to bucket {:?}, expected the run bucket {:?}",
            location.bucket,
            store.bucket()
        )));
    }
    let body = store.get(location).await?;
    serde_json::from_slice(&body).map_err(|e| {
        FinopsError::InvalidInput(format!(
            "s3://{}/{} is not the expected document: {e}",
            location.bucket, location.key
        ))
    })
}

pub struct S3RunStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3RunStore {
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        // Path-style addressing for custom endpoints (moto, LocalStack): `bucket.127.0.0.1` does not resolve.
        let s3_config =
            aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some()).build();
        Self { client: aws_sdk_s3::Client::from_conf(s3_config), bucket: bucket.into() }
    }
}

impl RunStore for S3RunStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<ObjectRef, FinopsError> {
        let bytes = body.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("S3", "PutObject", e))?;
        Ok(ObjectRef { bucket: self.bucket.clone(), key: key.to_owned(), bytes })
    }

    async fn get(&self, location: &ObjectRef) -> Result<Vec<u8>, FinopsError> {
        let out = self
            .client
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .send()
            .await
            .map_err(|e| FinopsError::from_sdk("S3", "GetObject", e))?;
        let body = out.body.collect().await.map_err(|e| FinopsError::Transient {
            service: "S3",
            operation: "GetObject",
            message: format!("reading body: {e}"),
        })?;
        Ok(body.into_bytes().to_vec())
    }
}

/// In-process store for the CLI and tests.
pub struct MemoryRunStore {
    bucket: String,
    objects: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryRunStore {
    pub fn new(bucket: impl Into<String>) -> Self {
        Self { bucket: bucket.into(), objects: Mutex::default() }
    }

    /// Every key stored, sorted: what a test checks was (not) written.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.objects.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl RunStore for MemoryRunStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<ObjectRef, FinopsError> {
        let bytes = body.len() as u64;
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), body);
        Ok(ObjectRef { bucket: self.bucket.clone(), key: key.to_owned(), bytes })
    }

    async fn get(&self, location: &ObjectRef) -> Result<Vec<u8>, FinopsError> {
        self.objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&location.key)
            .cloned()
            .ok_or_else(|| FinopsError::InvalidInput(format!("no document at {}", location.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_that_could_escape_the_prefix_are_refused() {
        assert!(validate_run_id("finops-2026-11-28T10-00").is_ok());
        for bad in ["", "../etc", "a/b", "a.b", &"x".repeat(81), "run id"] {
            assert!(matches!(validate_run_id(bad), Err(FinopsError::InvalidInput(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn references_to_other_buckets_are_refused() {
        let store = MemoryRunStore::new("runs");
        let r = put_json(&store, "runs/a/x.json", &serde_json::json!({"a": 1})).await.unwrap();
        let v: serde_json::Value = get_json(&store, &r).await.unwrap();
        assert_eq!(v["a"], 1);
        let foreign = ObjectRef { bucket: "someone-elses".into(), ..r };
        let err = get_json::<_, serde_json::Value>(&store, &foreign).await.unwrap_err();
        assert_eq!(err.error_name(), "Finops.InvalidInput");
    }
}
