//! X-Ray subsegments for decisions, through the X-Ray daemon protocol of the `xray-lite` crate.
//!
//! Each tool execution and each decision becomes a subsegment of the Lambda invocation's trace, with the
//! annotations `agent`, `resource_id`, `decision` and `run_id` (so `annotation.decision = "DENIED"` finds every
//! refusal). Outside Lambda (no `_X_AMZN_TRACE_ID`, no `AWS_XRAY_DAEMON_ADDRESS`) nothing is sent. AWS SDK calls
//! already carry the trace header: the SDK's recursion-detection interceptor copies `_X_AMZN_TRACE_ID` into
//! `X-Amzn-Trace-Id` on every request made inside a Lambda function.

use std::collections::HashMap;

use xray_lite::{Annotation, Context, DaemonClient, Namespace, Subsegment, SubsegmentContext};

/// Names of the indexed annotations.
pub const ANNOTATION_AGENT: &str = "agent";
pub const ANNOTATION_RESOURCE: &str = "resource_id";
pub const ANNOTATION_DECISION: &str = "decision";
pub const ANNOTATION_RUN: &str = "run_id";

struct DecisionNamespace {
    name: String,
    annotations: HashMap<String, Annotation>,
}

impl Namespace for DecisionNamespace {
    fn name(&self, _prefix: &str) -> String {
        self.name.clone()
    }

    fn update_subsegment(&self, subsegment: &mut Subsegment) {
        let mut annotations = HashMap::new();
        for (k, v) in &self.annotations {
            let value = match v {
                Annotation::String(s) => Annotation::String(s.clone()),
                Annotation::Number(n) => Annotation::Number(*n),
                Annotation::Bool(b) => Annotation::Bool(*b),
            };
            annotations.insert(k.clone(), value);
        }
        subsegment.annotations = Some(annotations);
    }
}

/// X-Ray annotation values: at most 1,000 characters of letters, digits, spaces and `_ . : / % & # = + \ - @`.
fn annotation_value(v: &str) -> String {
    v.chars().filter(|c| c.is_alphanumeric() || " _.:/%&#=+\\-@".contains(*c)).take(1000).collect()
}

/// Records one decision (or tool execution) as a subsegment named `name` under the current invocation's trace.
/// Returns whether it was sent.
pub fn record_decision(name: &str, agent: &str, resource_id: &str, decision: &str, run_id: &str) -> bool {
    if std::env::var_os("_X_AMZN_TRACE_ID").is_none() || std::env::var_os("AWS_XRAY_DAEMON_ADDRESS").is_none() {
        return false;
    }
    let Ok(client) = DaemonClient::from_lambda_env() else { return false };
    // The trace header changes with every invocation, so the context is made per decision.
    let Ok(context) = SubsegmentContext::from_lambda_env(client) else { return false };
    let annotations = [
        (ANNOTATION_AGENT, agent),
        (ANNOTATION_RESOURCE, resource_id),
        (ANNOTATION_DECISION, decision),
        (ANNOTATION_RUN, run_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Annotation::String(annotation_value(v))))
    .collect();
    let session = context.enter_subsegment(DecisionNamespace { name: name.to_owned(), annotations });
    let sent = session.x_amzn_trace_id().is_some();
    drop(session); // ends the subsegment and sends it
    sent
}
