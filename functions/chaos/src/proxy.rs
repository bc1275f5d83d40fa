//! A fault-injecting HTTP proxy in front of moto. The functions' and the approval page's AWS clients point here; the
//! proxy names each request's operation (from `X-Amz-Target`, the query protocol's `Action`, or the RPCv2 CBOR path)
//! and, by the run's plan, answers it with the error AWS gives when it throttles or fails, in that protocol's own
//! wire format, so the real SDK classifies and retries it as it would in AWS. A third kind forwards the request
//! and then loses the answer: the work is done in moto but the caller sees a 500, as after a timeout.
//!
//! It also keeps a log of every StopInstances that reached moto, with the instance's state before and after, which
//! the invariants need ("at most one StopInstances that changed state").

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiFaultKind {
    /// The service's throttling error (DynamoDB ThrottlingException, EC2 RequestLimitExceeded, SNS Throttling, ...).
    Throttle,
    /// A 5xx before the work is done.
    ServerError,
    /// The work is done, then the answer is lost: a 500 after moto answered.
    LostResponse,
}

impl ApiFaultKind {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::ServerError => "5xx",
            Self::LostResponse => "lost answer",
        }
    }
}

/// One rule of a run's plan: `operation` fails this way with this probability.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFault {
    pub operation: &'static str,
    pub kind: ApiFaultKind,
    pub probability: f64,
}

/// A window in which one operation always fails (the signing secret cannot be read for a while).
#[derive(Debug, Clone)]
pub struct Outage {
    pub operation: &'static str,
    pub from: Instant,
    pub until: Instant,
}

/// A StopInstances that reached moto (which instance, when, and whether it changed the instance's state), or a
/// DeleteVolume that moto carried out (the volume, `available` to `deleted`).
#[derive(Debug, Clone, PartialEq)]
pub struct StopCall {
    pub instance_id: String,
    pub at: DateTime<Utc>,
    pub previous_state: String,
    pub current_state: String,
}

impl StopCall {
    pub fn changed_state(&self) -> bool {
        self.previous_state != self.current_state
            && matches!(self.previous_state.as_str(), "running" | "pending" | "available")
    }
}

/// The volume of a DeleteVolume request (EC2's query protocol, form-encoded).
pub fn deleted_volume(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| pair.strip_prefix("VolumeId=")).map(str::to_owned)
}

#[derive(Default)]
struct Plan {
    faults: Vec<ApiFault>,
    outages: Vec<Outage>,
}

struct State {
    moto: SocketAddr,
    plan: Mutex<Plan>,
    rng: Mutex<Rng>,
    injected: Mutex<BTreeMap<String, u32>>,
    stops: Mutex<Vec<StopCall>>,
    /// Every StartInstances that reached moto (an undo's), as StopCalls: the instance, its state before and after.
    starts: Mutex<Vec<StopCall>>,
    /// When a DescribeSnapshots answer delivered to a caller first showed each snapshot completed.
    seen_completed: Mutex<BTreeMap<String, DateTime<Utc>>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<State>,
}

/// How the operation's service speaks, which decides how its errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson 1.0/1.1 (DynamoDB, Step Functions, Secrets Manager, SQS).
    Json,
    /// The EC2 query protocol.
    Ec2Query,
    /// The AWS query protocol (SNS).
    AwsQuery,
    /// Smithy RPCv2 CBOR (CloudWatch).
    Cbor,
    /// REST-XML (S3).
    RestXml,
}

/// The operation a request calls, and its protocol.
pub fn operation(target: Option<&str>, path: &str, method: &str, body: &[u8]) -> (Protocol, String) {
    if let Some(target) = target {
        return (Protocol::Json, target.rsplit('.').next().unwrap_or(target).to_owned());
    }
    if let Some((_, op)) = path.rsplit_once("/operation/") {
        return (Protocol::Cbor, op.to_owned());
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if let Some(action) = form.get("Action") {
        let protocol = if form.get("Version").map(String::as_str) == Some("2016-11-15") {
            Protocol::Ec2Query
        } else {
            Protocol::AwsQuery
        };
        return (protocol, action.clone());
    }
    (Protocol::RestXml, format!("S3 {method}"))
}

/// The error AWS answers for `kind` in `protocol`'s wire format: (status, headers, body).
pub fn error_response(protocol: Protocol, kind: ApiFaultKind) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let throttle = kind == ApiFaultKind::Throttle;
    let message = "injected by finops-chaos";
    match protocol {
        Protocol::Json => {
            let code = if throttle { "ThrottlingException" } else { "InternalServerError" };
            (
                if throttle { 400 } else { 500 },
                vec![("content-type", "application/x-amz-json-1.0".into()), ("x-amzn-errortype", code.into())],
                format!(r#"{{"__type":"{code}","message":"{message}"}}"#).into_bytes(),
            )
        }
        Protocol::Ec2Query => {
            let code = if throttle { "RequestLimitExceeded" } else { "InternalError" };
            (
                if throttle { 503 } else { 500 },
                vec![("content-type", "text/xml".into())],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
                     <Message>{message}</Message></Error></Errors><RequestID>chaos</RequestID></Response>"
                )
                .into_bytes(),
            )
        }
        Protocol::AwsQuery => {
            let (code, kind) = if throttle { ("Throttling", "Sender") } else { ("InternalError", "Receiver") };
            (
                if throttle { 400 } else { 500 },
                vec![("content-type", "text/xml".into())],
                format!(
                    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                     <RequestId>chaos</RequestId></ErrorResponse>"
                )
                .into_bytes(),
            )
        }
        Protocol::Cbor => {
            let code = if throttle { "ThrottlingException" } else { "InternalServiceFault" };
            (
                if throttle { 400 } else { 500 },
                vec![("content-type", "application/cbor".into()), ("smithy-protocol", "rpc-v2-cbor".into())],
                cbor_text_map(&[("__type", code), ("message", message)]),
            )
        }
        Protocol::RestXml => {
            let code = if throttle { "SlowDown" } else { "InternalError" };
            (
                if throttle { 503 } else { 500 },
                vec![("content-type", "application/xml".into())],
                format!("<Error><Code>{code}</Code><Message>{message}</Message><RequestId>chaos</RequestId></Error>")
                    .into_bytes(),
            )
        }
    }
}

/// A CBOR map of short text keys to text values (RFC 8949 major types 5 and 3), all an error body needs.
fn cbor_text_map(entries: &[(&str, &str)]) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        match s.len() {
            n @ 0..=23 => out.push(0x60 | n as u8),
            n @ 24..=255 => out.extend([0x78, n as u8]),
            n => {
                out.push(0x79);
                out.extend((n as u16).to_be_bytes());
            }
        }
        out.extend(s.as_bytes());
    }
    let mut out = vec![0xA0 | entries.len() as u8];
    for (k, v) in entries {
        text(&mut out, k);
        text(&mut out, v);
    }
    out
}

/// The snapshots a DescribeSnapshots answer shows completed (EC2's XML: each `snapshotId`, then its `status`).
pub fn completed_snapshots(xml: &str) -> Vec<String> {
    xml.split("<snapshotId>")
        .skip(1)
        .filter_map(|item| {
            let id = item.split("</snapshotId>").next()?;
            let status = item.split("<status>").nth(1)?.split("</status>").next()?;
            (status == "completed").then(|| id.to_owned())
        })
        .collect()
}

/// The instances of a StopInstances answer, with their state before and after (EC2's XML).
pub fn stop_transitions(xml: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for item in xml.split("<item>").skip(1) {
        let field = |outer: &str| -> Option<String> {
            let block = item.split(&format!("<{outer}>")).nth(1)?.split(&format!("</{outer}>")).next()?;
            Some(block.split("<name>").nth(1)?.split("</name>").next()?.to_owned())
        };
        let id = item.split("<instanceId>").nth(1).and_then(|s| s.split("</instanceId>").next());
        if let (Some(id), Some(previous), Some(current)) = (id, field("previousState"), field("currentState")) {
            out.push((id.to_owned(), previous, current));
        }
    }
    out
}

impl FaultProxy {
    pub async fn start(moto: SocketAddr, seed: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(State {
            moto,
            plan: Mutex::default(),
            rng: Mutex::new(Rng::new(seed)),
            injected: Mutex::default(),
            stops: Mutex::default(),
            starts: Mutex::default(),
            seen_completed: Mutex::default(),
        });
        let served = state.clone();
        tokio::spawn(async move {
            let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (state, client) = (served.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| forward(req, state.clone(), client.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { endpoint, state }
    }

    /// The next run's plan, with a fresh generator and fresh counts.
    pub fn set_plan(&self, faults: Vec<ApiFault>, outages: Vec<Outage>, seed: u64) {
        *lock(&self.state.plan) = Plan { faults, outages };
        *lock(&self.state.rng) = Rng::new(seed);
        lock(&self.state.injected).clear();
        lock(&self.state.stops).clear();
        lock(&self.state.starts).clear();
        lock(&self.state.seen_completed).clear();
    }

    /// No more faults (checking the run's evidence goes straight through).
    pub fn calm(&self) {
        *lock(&self.state.plan) = Plan::default();
    }

    /// Faults injected since the plan was set, by "kind operation".
    pub fn injected(&self) -> BTreeMap<String, u32> {
        lock(&self.state.injected).clone()
    }

    pub fn stops(&self) -> Vec<StopCall> {
        lock(&self.state.stops).clone()
    }

    pub fn starts(&self) -> Vec<StopCall> {
        lock(&self.state.starts).clone()
    }

    pub fn snapshots_seen_completed(&self) -> BTreeMap<String, DateTime<Utc>> {
        lock(&self.state.seen_completed).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn reply(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.body(Full::new(Bytes::from(body))).expect("response")
}

/// The fault this request gets, if any (and counts it).
fn draw(state: &State, op: &str) -> Option<ApiFaultKind> {
    let now = Instant::now();
    let plan = lock(&state.plan);
    let fault = if plan.outages.iter().any(|o| o.operation == op && o.from <= now && now < o.until) {
        Some(ApiFaultKind::ServerError)
    } else {
        let mut rng = lock(&state.rng);
        plan.faults.iter().filter(|f| f.operation == op).find(|f| rng.chance(f.probability)).map(|f| f.kind)
    };
    if let Some(kind) = fault {
        *lock(&state.injected).entry(format!("{} {op}", kind.label())).or_default() += 1;
    }
    fault
}

async fn forward(
    req: Request<Incoming>,
    state: Arc<State>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let (protocol, op) = operation(target, parts.uri.path(), parts.method.as_str(), &body);
    let volume = if op == "DeleteVolume" { deleted_volume(&body) } else { None };
    let fault = draw(&state, &op);
    if let Some(kind @ (ApiFaultKind::Throttle | ApiFaultKind::ServerError)) = fault {
        let (status, headers, body) = error_response(protocol, kind);
        return Ok(reply(status, headers, body));
    }
    let uri = format!("http://{}{}", state.moto, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut request = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        request = request.header(k, v);
    }
    let at = Utc::now();
    let response = match client.request(request.body(Full::new(body)).expect("request")).await {
        Ok(r) => r,
        Err(e) => return Ok(reply(502, Vec::new(), format!("moto unreachable: {e}").into_bytes())),
    };
    let (head, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Some(volume) = volume.filter(|_| head.status.is_success()) {
        lock(&state.stops).push(StopCall {
            instance_id: volume,
            at,
            previous_state: "available".into(),
            current_state: "deleted".into(),
        });
    }
    if (op == "StopInstances" || op == "StartInstances") && head.status.is_success() {
        // StartInstancesResponse lists its instances as StopInstancesResponse does.
        let answer = String::from_utf8_lossy(&body);
        let mut log = lock(if op == "StopInstances" { &state.stops } else { &state.starts });
        for (instance_id, previous_state, current_state) in stop_transitions(&answer) {
            log.push(StopCall { instance_id, at, previous_state, current_state });
        }
    }
    if fault == Some(ApiFaultKind::LostResponse) {
        let (status, headers, body) = error_response(protocol, ApiFaultKind::ServerError);
        return Ok(reply(status, headers, body));
    }
    // Only an answer the caller gets counts as its having seen a snapshot completed.
    if op == "DescribeSnapshots" && head.status.is_success() {
        let seen = Utc::now();
        let mut log = lock(&state.seen_completed);
        for id in completed_snapshots(&String::from_utf8_lossy(&body)) {
            log.entry(id).or_insert(seen);
        }
    }
    let mut r = Response::builder().status(head.status);
    for (k, v) in &head.headers {
        r = r.header(k, v);
    }
    Ok(r.body(Full::new(body)).expect("response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_from_every_protocol() {
        assert_eq!(
            operation(Some("DynamoDB_20120810.UpdateItem"), "/", "POST", b""),
            (Protocol::Json, "UpdateItem".into())
        );
        assert_eq!(
            operation(None, "/service/GraniteServiceVersion20100801/operation/GetMetricData", "POST", b""),
            (Protocol::Cbor, "GetMetricData".into())
        );
        assert_eq!(
            operation(None, "/", "POST", b"Action=StopInstances&Version=2016-11-15&InstanceId.1=i-1"),
            (Protocol::Ec2Query, "StopInstances".into())
        );
        assert_eq!(
            operation(None, "/", "POST", b"Action=Publish&Version=2010-03-31"),
            (Protocol::AwsQuery, "Publish".into())
        );
        assert_eq!(operation(None, "/finops-runs/key", "PUT", b"{}"), (Protocol::RestXml, "S3 PUT".into()));
    }

    #[test]
    fn cbor_error_bodies_are_well_formed() {
        let body = cbor_text_map(&[("__type", "ThrottlingException"), ("message", "m")]);
        assert_eq!(body[0], 0xA2);
        assert_eq!(body[1], 0x66);
        assert_eq!(&body[2..8], b"__type");
        assert_eq!(body[8], 0x73, "a 19-byte text string");
    }

    #[test]
    fn snapshot_answers_give_the_completed_ones() {
        // As EC2 writes DescribeSnapshots (the tag set comes before the id, the status after it).
        let xml = "<DescribeSnapshotsResponse><snapshotSet>\
                   <item><tagSet><item><key>finops:run-id</key><value>r</value></item></tagSet>\
                   <snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId><status>completed</status></item>\
                   <item><snapshotId>snap-2</snapshotId><volumeId>vol-2</volumeId><status>pending</status></item>\
                   <item><snapshotId>snap-3</snapshotId><status>completed</status></item>\
                   </snapshotSet></DescribeSnapshotsResponse>";
        assert_eq!(completed_snapshots(xml), ["snap-1", "snap-3"]);
        assert!(completed_snapshots("<DescribeSnapshotsResponse/>").is_empty());
    }

    #[test]
    fn stop_answers_give_each_instances_transition() {
        let xml =
            "<StopInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><currentState><code>64</code>\
                   <name>stopping</name></currentState><previousState><code>16</code><name>running</name>\
                   </previousState></item><item><instanceId>i-2</instanceId><currentState><code>80</code><name>stopped\
                   </name></currentState><previousState><code>80</code><name>stopped</name></previousState></item>\
                   </instancesSet></StopInstancesResponse>";
        let t = stop_transitions(xml);
        assert_eq!(t[0], ("i-1".into(), "running".into(), "stopping".into()));
        assert_eq!(t.len(), 2);
        let call = |p: &str, c: &str| StopCall {
            instance_id: "i".into(),
            at: Utc::now(),
            previous_state: p.into(),
            current_state: c.into(),
        };
        assert!(call("running", "stopping").changed_state());
        assert!(!call("stopped", "stopped").changed_state());
    }
}
