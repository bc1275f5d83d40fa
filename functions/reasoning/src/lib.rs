//! The reasoning step: asks a reasoner about the shortlist only, with a compact, bounded prompt, and turns its
//! answer into validated recommendations for the policy step. The reasoner only recommends.
//!
//! Backends sit behind [`Reasoner`]. The deterministic rules backend ([`rules`]) needs no model; it is also the
//! fallback for every instance a model answer does not validate for, and for a model that fails outright.

pub mod agent;
pub mod answer;
pub mod converse;
pub mod prompt;
pub mod rules;

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{get_json, put_json, validate_run_id, FinopsError, RunStore};
use finops_core::policy::Recommendation;
use finops_core::steps::{InventoryDocument, ShortlistEntry, UtilisationDocument};
use finops_core::ObjectRef;
use serde::{Deserialize, Serialize};

pub use answer::Discarded;

/// Recommendations inline in the state output up to this size; larger lists go by reference.
pub const INLINE_RECOMMENDATIONS_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub text: String,
    /// Agent session / trace id for the audit trail.
    pub trace_id: Option<String>,
    /// The agent's rationale and tool calls, a line each.
    pub trace: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReasonerError {
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("timed out after {0} s")]
    TimedOut(u64),
    #[error("{0}")]
    Failed(String),
}

/// A model backend (Bedrock InvokeAgent, Converse).
pub trait Reasoner: Send + Sync {
    /// The label recommendations carry (`agent`, `converse`).
    fn name(&self) -> &str;
    fn ask(&self, session_id: &str, prompt: &str) -> impl Future<Output = Result<ModelReply, ReasonerError>> + Send;
}

/// What the state machine passes: the metrics step's output (extra fields ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningRequest {
    pub run_id: String,
    pub inventory: ObjectRef,
    pub utilisation: ObjectRef,
    pub shortlist: Vec<ShortlistEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptSize {
    pub instances: usize,
    pub total_tokens: usize,
    pub max_instance_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningOutput {
    pub run_id: String,
    pub inventory: ObjectRef,
    pub utilisation: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<Vec<Recommendation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendations_ref: Option<ObjectRef>,
    pub recommendation_count: usize,
    pub backend: String,
    pub fallbacks: usize,
    pub discarded: Vec<Discarded>,
    pub prompt: PromptSize,
}

/// The Lambda handler. `reasoner: None` is the rules backend.
pub async fn handle<R: Reasoner, S: RunStore>(
    event: serde_json::Value,
    store: &S,
    reasoner: Option<&R>,
    now: DateTime<Utc>,
) -> Result<ReasoningOutput, FinopsError> {
    let request: ReasoningRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!(
            "reasoning expects the metrics step's output ({{runId, inventory, utilisation, shortlist}}): {e}"
        ))
    })?;
    validate_run_id(&request.run_id)?;
    let inventory: InventoryDocument = get_json(store, &request.inventory).await?;
    let utilisation: UtilisationDocument = get_json(store, &request.utilisation).await?;
    let instances: HashMap<&str, _> = inventory.instances.iter().map(|i| (i.instance_id.as_str(), i)).collect();
    let summaries: HashMap<&str, _> = utilisation.summaries.iter().map(|s| (s.instance_id.as_str(), s)).collect();
    let mut discarded = Vec::new();
    let mut candidates = Vec::new();
    for entry in &request.shortlist {
        match (instances.get(entry.instance_id.as_str()), summaries.get(entry.instance_id.as_str())) {
            (Some(i), Some(s)) => candidates.push((*i, *s)),
            _ => discarded.push(Discarded {
                instance_id: entry.instance_id.clone(),
                reason: "shortlisted but not in this run's documents".into(),
            }),
        }
    }
    let shortlist: Vec<_> = candidates.iter().map(|(_, s)| *s).collect();

    let (recommendations, backend, fallbacks, prompt_size) = match reasoner {
        None => (
            shortlist.iter().map(|s| rules::recommend(s)).collect::<Vec<_>>(),
            "rules".to_string(),
            0,
            PromptSize::default(),
        ),
        Some(_) if candidates.is_empty() => {
            (Vec::new(), "none (empty shortlist)".to_string(), 0, PromptSize::default())
        }
        Some(model) => {
            let prompt = prompt::build(&candidates, now);
            let size = PromptSize {
                instances: candidates.len(),
                total_tokens: prompt::estimate_tokens(&prompt.text),
                max_instance_tokens: prompt.instance_tokens.iter().copied().max().unwrap_or(0),
            };
            let validated = match model.ask(&request.run_id, &prompt.text).await {
                Ok(reply) => answer::validate(&reply.text, &shortlist, model.name(), reply.trace_id.as_deref()),
                Err(e) => {
                    tracing::warn!(run_id = request.run_id, error = %e, "reasoner failed; rules for the whole shortlist");
                    answer::validate("", &shortlist, model.name(), None)
                        .with_reason(&format!("{} failed: {e}", model.name()))
                }
            };
            discarded.extend(validated.discarded);
            (validated.recommendations, model.name().to_owned(), validated.fallbacks, size)
        }
    };
    for r in &recommendations {
        finops_aws::xray::record_decision(
            "finops.reasoning",
            &r.backend,
            &r.instance_id,
            r.action.as_str(),
            &request.run_id,
        );
        tracing::info!(
            run_id = request.run_id,
            instance_id = r.instance_id,
            agent = r.backend,
            decision = r.action.as_str(),
            "recommendation"
        );
    }
    let stored = put_json(store, &format!("runs/{}/recommendations.json", request.run_id), &recommendations).await?;
    let inline =
        serde_json::to_vec(&recommendations).map(|b| b.len()).unwrap_or(usize::MAX) <= INLINE_RECOMMENDATIONS_BYTES;
    Ok(ReasoningOutput {
        run_id: request.run_id,
        inventory: request.inventory,
        utilisation: request.utilisation,
        recommendation_count: recommendations.len(),
        recommendations: inline.then_some(recommendations),
        recommendations_ref: (!inline).then_some(stored),
        backend,
        fallbacks,
        discarded: discarded.into_iter().take(20).collect(),
        prompt: prompt_size,
    })
}

impl answer::Validated {
    /// Replaces the fallback reason (a model that failed outright rather than answered badly).
    fn with_reason(mut self, why: &str) -> Self {
        for r in &mut self.recommendations {
            r.backend = format!("rules (fallback: {why})");
        }
        self
    }
}
