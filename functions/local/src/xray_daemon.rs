//! A local X-Ray daemon: a UDP listener on the address the functions send their segments to
//! (`AWS_XRAY_DAEMON_ADDRESS`), keeping every segment document it receives, so a local run can show its audit trail
//! as X-Ray would: per execution one trace, per instance the decision subsegments with their annotations.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use finops_aws::xray::{ANNOTATION_AGENT, ANNOTATION_DECISION, ANNOTATION_RESOURCE, ANNOTATION_RUN, DAEMON_HEADER};
use serde::Serialize;
use serde_json::Value;

pub struct XrayDaemon {
    addr: SocketAddr,
    documents: Arc<Mutex<Vec<Value>>>,
    /// Datagrams that were not `header\ndocument` (counted, not kept).
    malformed: Arc<Mutex<usize>>,
}

/// One decision subsegment, as the run report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The subsegment's name (`finops.reasoning`, `finops.policy`, `finops.action`, ...).
    pub step: String,
    pub agent: String,
    pub decision: String,
    pub run_id: String,
    pub trace_id: String,
    /// The function segment it hangs under (`finops-policy`, ...), if that segment arrived.
    pub function: Option<String>,
}

/// An execution's audit trail: its trace ids (one, when all is well) and each instance's decisions in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditTrail {
    pub trace_ids: Vec<String>,
    pub function_segments: usize,
    pub decisions: BTreeMap<String, Vec<DecisionRecord>>,
}

impl XrayDaemon {
    /// Listens on 127.0.0.1 (port chosen by the system) until the process ends.
    pub async fn start() -> std::io::Result<Self> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let documents: Arc<Mutex<Vec<Value>>> = Arc::default();
        let malformed: Arc<Mutex<usize>> = Arc::default();
        let (kept, bad) = (documents.clone(), malformed.clone());
        tokio::spawn(async move {
            // The daemon's limit: a segment document fits one datagram of at most 64 KB.
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf).await {
                match parse_datagram(&buf[..n]) {
                    Some(document) => kept.lock().unwrap_or_else(|p| p.into_inner()).push(document),
                    None => *bad.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                }
            }
        });
        Ok(Self { addr, documents, malformed })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn documents(&self) -> Vec<Value> {
        self.documents.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn malformed(&self) -> usize {
        *self.malformed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The audit trail of the run `run_id` (its execution name).
    pub fn trail(&self, run_id: &str) -> AuditTrail {
        audit_trail(&self.documents(), run_id)
    }
}

fn parse_datagram(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (header, body) = text.split_once('\n')?;
    let header: Value = serde_json::from_str(header).ok()?;
    if header != serde_json::from_str::<Value>(DAEMON_HEADER).ok()? {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// The decisions annotated with `run_id`, per resource, with the trace ids they were sent under.
pub fn audit_trail(documents: &[Value], run_id: &str) -> AuditTrail {
    let text = |d: &Value, key: &str| d[key].as_str().unwrap_or_default().to_owned();
    let functions: BTreeMap<String, String> = documents
        .iter()
        .filter(|d| d.get("type").is_none() && d["annotations"][ANNOTATION_RUN] == run_id)
        .map(|d| (text(d, "id"), text(d, "name")))
        .collect();
    let mut trail = AuditTrail { function_segments: functions.len(), ..AuditTrail::default() };
    for d in documents.iter().filter(|d| d["type"] == "subsegment" && d["annotations"][ANNOTATION_RUN] == run_id) {
        let a = &d["annotations"];
        let trace_id = text(d, "trace_id");
        if !trail.trace_ids.contains(&trace_id) {
            trail.trace_ids.push(trace_id.clone());
        }
        trail.decisions.entry(text(a, ANNOTATION_RESOURCE)).or_default().push(DecisionRecord {
            step: text(d, "name"),
            agent: text(a, ANNOTATION_AGENT),
            decision: text(a, ANNOTATION_DECISION),
            run_id: text(a, ANNOTATION_RUN),
            trace_id,
            function: functions.get(&text(d, "parent_id")).cloned(),
        });
    }
    trail
}

#[cfg(test)]
mod tests {
    use super::*;
    use finops_aws::xray::{record_decision, traced, TraceContext};

    #[tokio::test]
    async fn decisions_sent_to_the_daemon_come_back_per_resource_under_their_function() {
        let daemon = XrayDaemon::start().await.unwrap();
        let header = "Root=1-67a0b1c2-0123456789abcdef01234567;Parent=00000000000000aa;Sampled=1".to_owned();
        let context = TraceContext { header, daemon: daemon.addr() };
        traced(context, async {
            record_decision("finops.policy", "converse", "i-1", "PROPOSED", "run-7");
            record_decision("finops.policy", "rules", "i-2", "DENIED", "run-7");
            record_decision("finops.policy", "rules", "i-3", "DENIED", "another-run");
        })
        .await;
        let segment = finops_aws::xray::FunctionSegment {
            function: "finops-policy",
            segment_id: "00000000000000aa",
            trace_id: "1-67a0b1c2-0123456789abcdef01234567",
            run_id: "run-7",
            error: false,
        };
        finops_aws::xray::send_function_segment(daemon.addr(), &segment, chrono::Utc::now(), chrono::Utc::now());
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(b"not a segment", daemon.addr()).unwrap();
        let mut trail = AuditTrail::default();
        for _ in 0..100 {
            trail = daemon.trail("run-7");
            if trail.function_segments == 1 && trail.decisions.len() == 2 && daemon.malformed() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(trail.trace_ids, ["1-67a0b1c2-0123456789abcdef01234567"]);
        let first = &trail.decisions["i-1"][0];
        assert_eq!(
            (first.step.as_str(), first.agent.as_str(), first.decision.as_str()),
            ("finops.policy", "converse", "PROPOSED")
        );
        assert_eq!(first.function.as_deref(), Some("finops-policy"));
        assert!(!trail.decisions.contains_key("i-3"), "another run's decision");
        assert_eq!(daemon.malformed(), 1);
    }
}
