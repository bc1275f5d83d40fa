//! The workflow on a laptop: moto's Step Functions interpreter invokes Lambda tasks at `http://localhost:$MOTO_PORT`,
//! so moto is started with MOTO_PORT pointing here. This endpoint runs `POST /2015-03-31/functions/{name}/invocations`
//! through the real Rust handlers in-process and forwards everything else to moto. A handler error comes back as
//! HTTP 200 with `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}`, as real Lambda answers, so the
//! state machine's Retry and Catch see `Finops.*` error names.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use finops_actions::{Actions, ActionsConfig, SdkEc2Actions};
use finops_approval_store::{DynamoApprovals, SecretsManagerKey, SnsNotifier};
use finops_aws::{FinopsError, PriceBook, S3RunStore, SdkPriceList};
use finops_core::policy::PolicyConfig;
use finops_core::DetectionConfig;
use finops_inventory::Ec2Inventory;
use finops_metrics::CloudWatchMetrics;
use finops_reasoning::agent::BedrockAgent;
use finops_request_approval::{DeploymentMode, RequestConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

pub const FUNCTIONS: [&str; 6] = [
    "finops-inventory",
    "finops-metrics",
    "finops-reasoning",
    "finops-policy",
    "finops-request-approval",
    "finops-actions",
];

pub struct LocalSettings {
    pub bucket: String,
    pub approvals_table: String,
    pub signing_secret_id: String,
    pub approval_topic_arn: String,
    pub approval_base_url: String,
    pub approval_window_seconds: i64,
    /// The policy of the policy and actions steps (the per-run cap is also the approval map's concurrency).
    pub policy: PolicyConfig,
    /// The deployment's mode, as the approval request step reads it.
    pub mode: DeploymentMode,
}

/// Every step's handler with its clients, as the deployed Lambdas would build them.
pub struct LocalFunctions {
    store: S3RunStore,
    inventory: Ec2Inventory,
    metrics: CloudWatchMetrics,
    prices: PriceBook<SdkPriceList>,
    detection: DetectionConfig,
    policy: PolicyConfig,
    records: DynamoApprovals,
    key: SecretsManagerKey,
    notifier: SnsNotifier,
    request: RequestConfig,
    ec2: SdkEc2Actions,
    actions: ActionsConfig,
    /// Functions that fail on purpose (failure-injection tests and demos).
    pub failing: Mutex<HashSet<String>>,
    /// Every invocation, in order, for tests and progress output.
    pub invocations: Mutex<Vec<String>>,
}

impl LocalFunctions {
    pub fn new(config: &SdkConfig, settings: &LocalSettings) -> Self {
        Self {
            store: S3RunStore::new(config, settings.bucket.clone()),
            inventory: Ec2Inventory::new(config.clone()),
            metrics: CloudWatchMetrics::new(config.clone()),
            prices: PriceBook::new(None),
            detection: DetectionConfig { run_bucket: Some(settings.bucket.clone()), ..DetectionConfig::default() },
            policy: settings.policy.clone(),
            records: DynamoApprovals::new(config, settings.approvals_table.clone()),
            key: SecretsManagerKey::new(config, settings.signing_secret_id.clone()),
            notifier: SnsNotifier::new(config, settings.approval_topic_arn.clone()),
            request: RequestConfig {
                base_url: settings.approval_base_url.clone(),
                window_seconds: settings.approval_window_seconds,
                snooze_days: 7,
                mode: settings.mode,
            },
            ec2: SdkEc2Actions::new(config.clone()),
            actions: ActionsConfig {
                policy: settings.policy.clone(),
                ..ActionsConfig::from_vars(Vec::new()).expect("defaults are valid")
            },
            failing: Mutex::default(),
            invocations: Mutex::default(),
        }
    }

    /// Runs one function; `Err((errorType, errorMessage))` as Lambda reports a function error.
    pub async fn invoke(&self, function: &str, payload: Value) -> Result<Value, (String, String)> {
        self.invocations.lock().unwrap_or_else(|p| p.into_inner()).push(function.to_owned());
        if self.failing.lock().unwrap_or_else(|p| p.into_inner()).contains(function) {
            return Err(("Finops.InjectedFailure".into(), format!("{function} failed on purpose")));
        }
        let now = chrono::Utc::now();
        let to_json = |r: Result<Value, FinopsError>| r.map_err(|e| (e.error_name().to_owned(), e.to_string()));
        match function {
            "finops-inventory" => {
                to_json(finops_inventory::handle(payload, &self.inventory, &self.store, now).await.map(|o| json_of(&o)))
            }
            "finops-metrics" => to_json(
                finops_metrics::handle(payload, &self.metrics, &self.prices, &self.store, &self.detection, now)
                    .await
                    .map(|o| json_of(&o)),
            ),
            "finops-reasoning" => to_json(
                finops_reasoning::handle::<BedrockAgent, _>(payload, &self.store, None, now).await.map(|o| json_of(&o)),
            ),
            "finops-policy" => {
                to_json(finops_policy::handle(payload, &self.store, &self.policy, now).await.map(|o| json_of(&o)))
            }
            "finops-request-approval" => {
                let mut random = [0u8; 16];
                getrandom::fill(&mut random).map_err(|e| ("Finops.Configuration".to_string(), e.to_string()))?;
                to_json(
                    finops_request_approval::handle(
                        payload,
                        &self.records,
                        &self.key,
                        &self.notifier,
                        &self.request,
                        now,
                        random,
                        None,
                    )
                    .await
                    .map(|o| json_of(&o)),
                )
            }
            "finops-actions" => {
                let actions = Actions {
                    instances: &self.inventory,
                    ec2: &self.ec2,
                    approvals: &self.records,
                    metrics: &self.metrics,
                    config: &self.actions,
                };
                to_json(actions.handle(payload, now).await.map(|o| json_of(&o)))
            }
            other => Err(("ResourceNotFoundException".into(), format!("Function not found: {other}"))),
        }
    }
}

fn json_of<T: serde::Serialize>(output: &T) -> Value {
    serde_json::to_value(output).unwrap_or(Value::Null)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The function name in an invoke path (`/2015-03-31/functions/{name or ARN}/invocations`).
pub fn function_name(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?.strip_suffix("/invocations")?;
    let name = percent_decode(rest);
    Some(name.rsplit(':').find(|p| p.starts_with("finops-")).map(str::to_owned).unwrap_or(name))
}

fn reply(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body))).expect("response")
}

async fn route(
    req: Request<Incoming>,
    functions: Arc<LocalFunctions>,
    moto: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if parts.method == hyper::Method::POST {
        if let Some(function) = function_name(parts.uri.path()) {
            let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Ok(match functions.invoke(&function, payload).await {
                Ok(out) => reply(
                    200,
                    &[("content-type", "application/json"), ("x-amz-executed-version", "$LATEST")],
                    out.to_string().into_bytes(),
                ),
                Err((error_type, message)) => reply(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("x-amz-function-error", "Unhandled"),
                        ("x-amz-executed-version", "$LATEST"),
                    ],
                    json!({"errorType": error_type, "errorMessage": message}).to_string().into_bytes(),
                ),
            });
        }
    }
    let uri = format!("http://{moto}{}", parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut forward = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        forward = forward.header(k, v);
    }
    let forward = forward.body(Full::new(body)).expect("request");
    Ok(match client.request(forward).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut r = Response::builder().status(parts.status);
            for (k, v) in &parts.headers {
                r = r.header(k, v);
            }
            r.body(Full::new(body)).expect("response")
        }
        Err(e) => reply(502, &[], format!("moto unreachable: {e}").into_bytes()),
    })
}

/// Serves the Lambda endpoint on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, functions: Arc<LocalFunctions>, moto: SocketAddr) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (functions, client) = (functions.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| route(req, functions.clone(), moto, client.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn function_names_from_names_and_arns() {
        assert_eq!(function_name("/2015-03-31/functions/finops-policy/invocations").as_deref(), Some("finops-policy"));
        assert_eq!(
            function_name("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aap-southeast-2%3A123456789012%3Afunction%3Afinops-actions/invocations").as_deref(),
            Some("finops-actions")
        );
        assert_eq!(
            function_name("/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:finops-metrics:live/invocations")
                .as_deref(),
            Some("finops-metrics")
        );
        assert_eq!(function_name("/other"), None);
    }
}
