//! The workflow on a laptop: moto's Step Functions interpreter invokes Lambda tasks at `http://localhost:$MOTO_PORT`,
//! so moto is started with MOTO_PORT pointing here. This endpoint runs `POST /2015-03-31/functions/{name}/invocations`
//! through the real Rust handlers in-process and forwards everything else to moto. A handler error comes back as
//! HTTP 200 with `X-Amz-Function-Error: Unhandled` and `{errorType, errorMessage}`, as real Lambda answers, so the
//! state machine's Retry and Catch see `Finops.*` error names.

pub mod approval_page;
pub mod xray_daemon;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use finops_actions::{ActionsConfig, ActionsStep};
use finops_aws::xray::{self, FunctionSegment, TraceContext};
use finops_aws::FinopsError;
use finops_core::organization::OrganizationConfig;
use finops_core::DetectionConfig;
use finops_fanout::{MergeStep, PlanStep, ScanAccountStep};
use finops_inventory::InventoryStep;
use finops_metrics::MetricsStep;
use finops_policy::{PolicyStep, PolicyStepConfig};
use finops_reasoning::{ReasoningConfig, ReasoningStep};
use finops_request_approval::{RequestApprovalConfig, RequestApprovalStep};
use finops_run_cost::{CostConfig, RunCostStep};
use finops_savings::{SavingsConfig, SavingsStep};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

pub const FUNCTIONS: [&str; 11] = [
    "finops-inventory",
    "finops-metrics",
    "finops-reasoning",
    "finops-policy",
    "finops-request-approval",
    "finops-actions",
    "finops-run-cost",
    "finops-savings",
    "finops-plan-scans",
    "finops-scan-account",
    "finops-merge-scans",
];

/// Every step, built by the constructors the Lambdas use from the variables a deployment sets (`FINOPS_*`, as the
/// CDK app sets them): a setting behaves the same here and in AWS.
pub struct LocalFunctions {
    inventory: InventoryStep,
    metrics: MetricsStep,
    reasoning: ReasoningStep,
    policy: PolicyStep,
    request_approval: RequestApprovalStep,
    actions: ActionsStep,
    run_cost: RunCostStep,
    savings: SavingsStep,
    plan_scans: PlanStep,
    scan_account: ScanAccountStep,
    merge_scans: MergeStep,
    /// Functions that fail on purpose (failure-injection tests and demos): a function name, or
    /// `finops-actions:<operation>` for one operation of the actions step.
    pub failing: Mutex<HashSet<String>>,
    /// Every invocation, in order, for tests and progress output.
    pub invocations: Mutex<Vec<String>>,
    /// The X-Ray daemon (`AWS_XRAY_DAEMON_ADDRESS` in the functions' environment, as Lambda sets it), if any.
    xray_daemon: Option<SocketAddr>,
    /// One trace per execution, by run id, as Step Functions' tracing gives every Task of an execution its trace.
    traces: Mutex<HashMap<String, String>>,
}

impl LocalFunctions {
    /// `vars`: the functions' environment. A bad or missing variable fails here with its name, as a Lambda's cold
    /// start would.
    pub fn new(sdk: &SdkConfig, vars: &[(String, String)]) -> Result<Self, FinopsError> {
        let vars = || vars.iter().cloned();
        Ok(Self {
            inventory: InventoryStep::new(sdk, &DetectionConfig::from_vars(vars())?)?,
            metrics: MetricsStep::new(sdk, DetectionConfig::from_vars(vars())?)?,
            reasoning: ReasoningStep::new(sdk, ReasoningConfig::from_vars(vars())?)?,
            policy: PolicyStep::new(sdk, PolicyStepConfig::from_vars(vars())?),
            request_approval: RequestApprovalStep::new(sdk, RequestApprovalConfig::from_vars(vars())?)?,
            actions: ActionsStep::new(sdk, ActionsConfig::from_vars(vars())?),
            run_cost: RunCostStep::new(sdk, CostConfig::from_vars(vars())?),
            savings: SavingsStep::new(sdk, SavingsConfig::from_vars(vars())?),
            plan_scans: PlanStep::new(sdk, &DetectionConfig::from_vars(vars())?, organization(vars())?)?,
            scan_account: ScanAccountStep::new(sdk, DetectionConfig::from_vars(vars())?, organization(vars())?)?,
            merge_scans: MergeStep::new(sdk, DetectionConfig::from_vars(vars())?)?,
            failing: Mutex::default(),
            invocations: Mutex::default(),
            xray_daemon: match vars().find(|(k, _)| k == "AWS_XRAY_DAEMON_ADDRESS") {
                Some((_, addr)) => Some(addr.parse().map_err(|e| {
                    FinopsError::Configuration(format!("AWS_XRAY_DAEMON_ADDRESS={addr} is not host:port: {e}"))
                })?),
                None => None,
            },
            traces: Mutex::default(),
        })
    }

    /// The trace id of the execution with this run id (execution name), once one of its Tasks ran.
    pub fn trace_id(&self, run_id: &str) -> Option<String> {
        self.traces.lock().unwrap_or_else(|p| p.into_inner()).get(run_id).cloned()
    }

    /// Runs one function as traced Lambda would: a function segment under the execution's trace (moto's interpreter
    /// sends no trace header, so the execution's trace is kept here by run id), and the handler's decisions as its
    /// subsegments.
    pub async fn invoke(&self, function: &str, payload: Value) -> Result<Value, (String, String)> {
        let run_id = payload["runId"].as_str().map(str::to_owned);
        let (Some(daemon), Some(run_id)) = (self.xray_daemon, run_id) else {
            return self.invoke_untraced(function, payload).await;
        };
        let trace_id = self
            .traces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(run_id.clone())
            .or_insert_with(xray::new_trace_id)
            .clone();
        let segment_id = xray::new_segment_id();
        let header = format!("Root={trace_id};Parent={segment_id};Sampled=1");
        let start = chrono::Utc::now();
        let result = xray::traced(TraceContext { header, daemon }, self.invoke_untraced(function, payload)).await;
        let segment = FunctionSegment {
            function,
            segment_id: &segment_id,
            trace_id: &trace_id,
            run_id: &run_id,
            error: result.is_err(),
        };
        xray::send_function_segment(daemon, &segment, start, chrono::Utc::now());
        result
    }

    /// Runs one function; `Err((errorType, errorMessage))` as Lambda reports a function error.
    async fn invoke_untraced(&self, function: &str, payload: Value) -> Result<Value, (String, String)> {
        self.invocations.lock().unwrap_or_else(|p| p.into_inner()).push(function.to_owned());
        let operation = payload["operation"].as_str().map(|op| format!("{function}:{op}"));
        let fails = {
            let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            failing.contains(function) || operation.is_some_and(|op| failing.contains(&op))
        };
        if fails {
            return Err(("Finops.InjectedFailure".into(), format!("{function} failed on purpose")));
        }
        let now = chrono::Utc::now();
        let to_json = |r: Result<Value, FinopsError>| r.map_err(|e| (e.error_name().to_owned(), e.to_string()));
        match function {
            "finops-inventory" => to_json(self.inventory.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-metrics" => to_json(self.metrics.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-reasoning" => to_json(self.reasoning.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-policy" => to_json(self.policy.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-request-approval" => to_json(self.request_approval.invoke(payload, now, None).await),
            "finops-actions" => to_json(self.actions.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-run-cost" => to_json(self.run_cost.handle(payload).await.map(|o| json_of(&o))),
            "finops-savings" => to_json(self.savings.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-plan-scans" => to_json(self.plan_scans.handle(payload, now).await.map(|o| json_of(&o))),
            "finops-scan-account" => to_json(self.scan_account.handle(payload).await.map(|o| json_of(&o))),
            "finops-merge-scans" => to_json(self.merge_scans.handle(payload, now).await.map(|o| json_of(&o))),
            other => Err(("ResourceNotFoundException".into(), format!("Function not found: {other}"))),
        }
    }
}

/// The deployment's organization settings (`FINOPS_ACCOUNTS`, ...), checked as the fan-out Lambdas check them.
fn organization(vars: impl Iterator<Item = (String, String)>) -> Result<Option<OrganizationConfig>, FinopsError> {
    OrganizationConfig::from_vars(vars).map_err(|e| FinopsError::Configuration(e.to_string()))
}

/// What the local Lambda endpoint runs an invocation with: [`LocalFunctions`], or a wrapper that adds faults (the
/// chaos runner's at-least-once deliveries, lost answers and timeouts).
pub trait Invoke: Send + Sync + 'static {
    /// Runs `function`; `Err((errorType, errorMessage))` as Lambda reports a function error.
    fn invoke(&self, function: &str, payload: Value) -> impl Future<Output = Result<Value, (String, String)>> + Send;
}

impl Invoke for LocalFunctions {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, (String, String)> {
        LocalFunctions::invoke(self, function, payload).await
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

async fn route<F: Invoke>(
    req: Request<Incoming>,
    functions: Arc<F>,
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
pub async fn serve<F: Invoke>(listener: tokio::net::TcpListener, functions: Arc<F>, moto: SocketAddr) {
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
