//! X-Ray subsegments for decisions, sent to the X-Ray daemon over UDP as the daemon protocol says (a JSON header
//! line, then one segment document).
//!
//! Each tool execution and each decision becomes a subsegment of the invocation's trace, with the annotations
//! `agent`, `resource_id`, `decision` and `run_id` (so `annotation.decision = "DENIED"` finds every refusal).
//!
//! Which trace: the one of the current invocation. In Lambda that is `_X_AMZN_TRACE_ID` (the runtime sets it per
//! invocation; Step Functions' tracing puts every Task of an execution under the execution's trace) and the daemon
//! is `AWS_XRAY_DAEMON_ADDRESS`. Where several invocations run in one process (the local runner), each runs inside
//! [`traced`] with its own [`TraceContext`], which takes precedence over the environment. With neither, nothing is
//! sent. AWS SDK calls already carry the trace header in Lambda: the SDK's recursion-detection interceptor copies
//! `_X_AMZN_TRACE_ID` into `X-Amzn-Trace-Id` on every request.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::OnceLock;

use serde_json::json;

/// Names of the indexed annotations.
pub const ANNOTATION_AGENT: &str = "agent";
pub const ANNOTATION_RESOURCE: &str = "resource_id";
pub const ANNOTATION_DECISION: &str = "decision";
pub const ANNOTATION_RUN: &str = "run_id";
/// The member account a decision is about, in an organization run (`annotation.account_id = "111111111111"`).
pub const ANNOTATION_ACCOUNT: &str = "account_id";

/// The first line of every datagram to the daemon.
pub const DAEMON_HEADER: &str = r#"{"format": "json", "version": 1}"#;

/// Where decisions of the current invocation go: its trace header and the daemon's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `Root=1-...;Parent=...;Sampled=1`, as in `_X_AMZN_TRACE_ID`.
    pub header: String,
    pub daemon: SocketAddr,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `work` with `context` as its trace: every [`record_decision`] inside it goes there.
pub async fn traced<F: Future>(context: TraceContext, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

fn current() -> Option<TraceContext> {
    if let Ok(context) = CURRENT.try_with(Clone::clone) {
        return Some(context);
    }
    let header = std::env::var("_X_AMZN_TRACE_ID").ok()?;
    let daemon = std::env::var("AWS_XRAY_DAEMON_ADDRESS").ok()?.parse().ok()?;
    Some(TraceContext { header, daemon })
}

/// The parts of a trace header: root trace id, parent segment id, sampled.
pub fn parse_header(header: &str) -> Option<(String, Option<String>, bool)> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = true;
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", v)) => root = Some(v.to_owned()),
            Some(("Parent", v)) => parent = Some(v.to_owned()),
            Some(("Sampled", v)) => sampled = v != "0",
            _ => {}
        }
    }
    Some((root?, parent, sampled))
}

/// A new trace id (`1-<epoch seconds, hex>-<96 random bits, hex>`).
pub fn new_trace_id() -> String {
    let seconds = chrono::Utc::now().timestamp();
    format!("1-{seconds:08x}-{}", random_hex(12))
}

/// A new segment id (64 random bits, hex).
pub fn new_segment_id() -> String {
    random_hex(8)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Ids only need to be unique; the OS source does not fail in practice, and a zero id still parses.
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// X-Ray annotation values: at most 1,000 characters of letters, digits, spaces and `_ . : / % & # = + \ - @`.
fn annotation_value(v: &str) -> String {
    v.chars().filter(|c| c.is_alphanumeric() || " _.:/%&#=+\\-@".contains(*c)).take(1000).collect()
}

/// Sends one segment document to the daemon. Best effort, as the X-Ray SDKs are: tracing never fails a step. One
/// socket per process: a run records a decision per instance, and a socket per decision would cost a bind each.
pub fn send(daemon: SocketAddr, document: &serde_json::Value) -> bool {
    static SOCKET: OnceLock<Option<UdpSocket>> = OnceLock::new();
    static SOCKET_V6: OnceLock<Option<UdpSocket>> = OnceLock::new();
    let (cell, any) = if daemon.is_ipv6() { (&SOCKET_V6, "[::]:0") } else { (&SOCKET, "0.0.0.0:0") };
    let Some(socket) = cell.get_or_init(|| UdpSocket::bind(any).ok()) else { return false };
    let datagram = format!("{DAEMON_HEADER}\n{document}");
    socket.send_to(datagram.as_bytes(), daemon).is_ok()
}

/// Seconds since the epoch, as segment documents give times.
pub fn seconds(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}

/// Sends the segment of one function invocation (what Lambda itself sends for a traced function), which decision
/// subsegments name as their parent. For the local runner, where no Lambda service does it.
pub fn send_function_segment(
    daemon: SocketAddr,
    segment: &FunctionSegment<'_>,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> bool {
    let document = json!({
        "name": segment.function, "id": segment.segment_id, "trace_id": segment.trace_id,
        "origin": "AWS::Lambda::Function", "start_time": seconds(start), "end_time": seconds(end),
        "error": segment.error, "annotations": {ANNOTATION_RUN: annotation_value(segment.run_id)},
    });
    send(daemon, &document)
}

/// What identifies a function invocation's segment.
pub struct FunctionSegment<'a> {
    pub function: &'a str,
    pub segment_id: &'a str,
    pub trace_id: &'a str,
    pub run_id: &'a str,
    pub error: bool,
}

/// Records one decision (or tool execution) as a subsegment named `name` under the current invocation's trace.
/// Returns whether it was sent.
pub fn record_decision(name: &str, agent: &str, resource_id: &str, decision: &str, run_id: &str) -> bool {
    record_decision_in(name, agent, resource_id, decision, run_id, None)
}

/// [`record_decision`] about a resource in a member account, annotated with the account id.
pub fn record_decision_in(
    name: &str,
    agent: &str,
    resource_id: &str,
    decision: &str,
    run_id: &str,
    account_id: Option<&str>,
) -> bool {
    let Some(context) = current() else { return false };
    let Some((trace_id, Some(parent_id), true)) = parse_header(&context.header) else { return false };
    let at = seconds(chrono::Utc::now());
    let annotations: serde_json::Map<String, serde_json::Value> = [
        (ANNOTATION_AGENT, agent),
        (ANNOTATION_RESOURCE, resource_id),
        (ANNOTATION_DECISION, decision),
        (ANNOTATION_RUN, run_id),
    ]
    .into_iter()
    .chain(account_id.map(|a| (ANNOTATION_ACCOUNT, a)))
    .map(|(k, v)| (k.to_owned(), json!(annotation_value(v))))
    .collect();
    let document = json!({
        "type": "subsegment",
        "name": name,
        "id": new_segment_id(),
        "trace_id": trace_id,
        "parent_id": parent_id,
        "start_time": at,
        "end_time": at,
        "annotations": annotations,
    });
    send(context.daemon, &document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_decision_goes_to_the_daemon_of_its_invocation_with_its_annotations() {
        let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let trace = new_trace_id();
        let context = TraceContext {
            header: format!("Root={trace};Parent=0123456789abcdef;Sampled=1"),
            daemon: daemon.local_addr().unwrap(),
        };
        assert!(!record_decision("finops.policy", "rules", "i-1", "DENIED", "run-1"), "outside an invocation");
        let sent =
            traced(context, async { record_decision("finops.policy", "rules", "i-1", "DENIED", "run<1>") }).await;
        assert!(sent);
        let mut buf = [0u8; 4096];
        let n = daemon.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        assert_eq!(header, DAEMON_HEADER);
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["trace_id"], trace.as_str());
        assert_eq!(doc["parent_id"], "0123456789abcdef");
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["annotations"]["decision"], "DENIED");
        assert_eq!(doc["annotations"]["run_id"], "run1", "annotation values are cleaned");
        assert!(doc["annotations"].get("account_id").is_none(), "no account: the hub's own");
        let member = TraceContext {
            header: format!("Root={trace};Parent=0123456789abcdef;Sampled=1"),
            daemon: daemon.local_addr().unwrap(),
        };
        let sent = traced(member, async {
            record_decision_in("finops.action", "actions", "i-2", "stop:Done", "run-1", Some("111111111111"))
        })
        .await;
        assert!(sent);
        let n = daemon.recv(&mut buf).unwrap();
        let (_, body) = std::str::from_utf8(&buf[..n]).unwrap().split_once('\n').unwrap();
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(doc["annotations"]["account_id"], "111111111111");
    }

    #[test]
    fn headers_parse_and_unsampled_traces_send_nothing() {
        assert_eq!(
            parse_header("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
            Some(("1-5759e988-bd862e3fe1be46a994272793".into(), Some("53995c3f42cd8ad8".into()), true))
        );
        assert_eq!(parse_header("Root=1-a-b;Sampled=0").map(|h| h.2), Some(false));
        assert_eq!(parse_header("Parent=1"), None);
        assert!(new_trace_id().starts_with("1-") && new_trace_id().len() == 35);
    }
}
