//! The reasoning step: asks a reasoner about the shortlist only, and hands validated recommendations to the policy
//! step. The reasoner only recommends.
//!
//! Every backend is a [`Reasoner`]: the deterministic [`Rules`], and a language model ([`Model`]: Bedrock
//! InvokeAgent or Converse) asked with a compact, bounded prompt whose answer is validated ([`Prompted`]). The rules
//! are also the fallback for every instance a model answer does not validate for, and for a model that fails
//! outright. [`ReasoningStep`] is the step as the Lambda and the local runner build it from the environment.

pub mod agent;
pub mod answer;
pub mod converse;
pub mod prompt;
pub mod retry;
pub mod rules;

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use finops_aws::{get_json, put_json, validate_run_id, FinopsError, RunStore};
use finops_core::policy::Recommendation;
use finops_core::steps::{InventoryDocument, UtilisationDocument};
use finops_core::{InstanceRecord, UtilisationSummary};

pub use finops_core::steps::{Discarded, PromptSize, ReasoningOutput, ReasoningRequest, RequestedAction, TokenUsage};

/// Recommendations inline in the state output up to this size; larger lists go by reference.
pub const INLINE_RECOMMENDATIONS_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelReply {
    pub text: String,
    /// Agent session / trace id for the audit trail.
    pub trace_id: Option<String>,
    /// The agent's rationale and tool calls, a line each.
    pub trace: Vec<String>,
    /// Tokens the model's responses reported (every turn of a conversation).
    pub usage: TokenUsage,
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

/// A language model: a prompt in, text out (Bedrock InvokeAgent, Converse, or a stand-in in tests).
pub trait Model: Send + Sync {
    /// The label recommendations carry (`agent`, `converse`).
    fn name(&self) -> &str;
    fn ask(&self, session_id: &str, prompt: &str) -> impl Future<Output = Result<ModelReply, ReasonerError>> + Send;
}

/// What a reasoner says about a shortlist: one recommendation per candidate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reasoned {
    pub recommendations: Vec<Recommendation>,
    /// Candidates a model did not answer validly for, which got the rules' recommendation.
    pub fallbacks: usize,
    pub discarded: Vec<Discarded>,
    pub prompt: PromptSize,
    pub model_usage: TokenUsage,
}

/// Anything that recommends an action for each shortlisted instance.
pub trait Reasoner: Send + Sync {
    /// The backend's name for the step output (`rules`, `agent`, `converse`).
    fn name(&self) -> &str;
    fn recommend(
        &self,
        run_id: &str,
        candidates: &[(&InstanceRecord, &UtilisationSummary)],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Reasoned> + Send;
}

/// The deterministic reasoner ([`rules::recommend`]): no model, no network.
pub struct Rules;

impl Reasoner for Rules {
    fn name(&self) -> &str {
        "rules"
    }

    async fn recommend(
        &self,
        _run_id: &str,
        candidates: &[(&InstanceRecord, &UtilisationSummary)],
        _now: DateTime<Utc>,
    ) -> Reasoned {
        Reasoned {
            recommendations: candidates.iter().map(|(_, s)| rules::recommend(s)).collect(),
            ..Reasoned::default()
        }
    }
}

/// A model asked with the bounded prompt; its answer validated, the rules filling in for whatever does not validate.
pub struct Prompted<M>(pub M);

impl<M: Model> Reasoner for Prompted<M> {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn recommend(
        &self,
        run_id: &str,
        candidates: &[(&InstanceRecord, &UtilisationSummary)],
        now: DateTime<Utc>,
    ) -> Reasoned {
        if candidates.is_empty() {
            return Reasoned::default();
        }
        let shortlist: Vec<&UtilisationSummary> = candidates.iter().map(|(_, s)| *s).collect();
        let prompt = prompt::build(candidates, now);
        let size = PromptSize {
            instances: candidates.len(),
            total_tokens: prompt::estimate_tokens(&prompt.text),
            max_instance_tokens: prompt.instance_tokens.iter().copied().max().unwrap_or(0),
        };
        let model = &self.0;
        let mut model_usage = TokenUsage::default();
        let validated = match model.ask(run_id, &prompt.text).await {
            Ok(reply) => {
                model_usage = reply.usage;
                answer::validate(&reply.text, &shortlist, model.name(), reply.trace_id.as_deref())
            }
            Err(e) => {
                tracing::warn!(run_id, error = %e, "model failed; rules for the whole shortlist");
                answer::validate("", &shortlist, model.name(), None)
                    .with_reason(&format!("{} failed: {e}", model.name()))
            }
        };
        Reasoned {
            recommendations: validated.recommendations,
            fallbacks: validated.fallbacks,
            discarded: validated.discarded,
            prompt: size,
            model_usage,
        }
    }
}

/// The step's logic over any reasoner and run store.
pub async fn handle<R: Reasoner, S: RunStore>(
    event: serde_json::Value,
    store: &S,
    reasoner: &R,
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
    let (reasoned, backend) = match &request.request {
        // The single-instance entry: the agent's request stands in for the reasoner (no model is asked about what an
        // agent already asked for); the policy step still decides, on the measured instance.
        Some(asked) => (requested(asked, &instances, &mut discarded), REQUESTED_BACKEND.to_owned()),
        None => {
            let reasoned = reasoner.recommend(&request.run_id, &candidates, now).await;
            let backend =
                if candidates.is_empty() { "none (empty shortlist)".to_owned() } else { reasoner.name().to_owned() };
            (reasoned, backend)
        }
    };
    discarded.extend(reasoned.discarded);
    let recommendations = reasoned.recommendations;
    for r in &recommendations {
        let account = instances.get(r.instance_id.as_str()).and_then(|i| i.account.as_ref()).map(|a| a.id.as_str());
        finops_aws::xray::record_decision_in(
            "finops.reasoning",
            &r.backend,
            &r.instance_id,
            r.action.as_str(),
            &request.run_id,
            account,
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
        fallbacks: reasoned.fallbacks,
        discarded: discarded.into_iter().take(20).collect(),
        prompt: reasoned.prompt,
        model_usage: reasoned.model_usage,
    })
}

/// The backend label of a recommendation the agent tools asked for.
pub const REQUESTED_BACKEND: &str = "agent-tools request";

/// The agent tools' request as the one recommendation, if the run's inventory has the instance.
fn requested(
    asked: &RequestedAction,
    instances: &HashMap<&str, &InstanceRecord>,
    discarded: &mut Vec<Discarded>,
) -> Reasoned {
    if !instances.contains_key(asked.instance_id.as_str()) {
        discarded.push(Discarded {
            instance_id: asked.instance_id.clone(),
            reason: "requested, but not a running instance of this run's inventory".into(),
        });
        return Reasoned::default();
    }
    Reasoned {
        recommendations: vec![Recommendation {
            instance_id: asked.instance_id.clone(),
            action: asked.action,
            confidence: 1.0,
            justification: asked.justification.chars().take(500).collect(),
            backend: REQUESTED_BACKEND.into(),
            evidence: Vec::new(),
            trace_id: None,
        }],
        ..Reasoned::default()
    }
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

/// Which reasoner a deployment runs (`FINOPS_REASONER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonerChoice {
    Rules,
    /// Bedrock InvokeAgent on an agent alias (`FINOPS_AGENT_ID`, `FINOPS_AGENT_ALIAS_ID`).
    Agent {
        agent_id: String,
        alias_id: String,
    },
    /// Bedrock Converse with the read-only tools (`FINOPS_MODEL_ID`: a model or inference profile id).
    Converse {
        model_id: String,
    },
}

/// What the reasoning step reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasoningConfig {
    pub run_bucket: String,
    pub reasoner: ReasonerChoice,
    /// Regions the Converse tools may look at (`FINOPS_REGIONS`).
    pub regions: Vec<String>,
    /// Criteria, lookback and pricing of the Converse tools.
    pub detection: finops_core::DetectionConfig,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`: where Converse is answered, when not Bedrock itself (the local demo's
    /// scripted model). Read here because a shared endpoint (a local moto) would otherwise win over it.
    pub converse_endpoint: Option<String>,
    /// In a deployment over several accounts (`FINOPS_ACCOUNTS`), the member accounts' read-only detection role
    /// (`FINOPS_MEMBER_READ_ROLE`): the Converse tools read a member's instance in its own account.
    pub member_read_role: Option<String>,
}

impl ReasoningConfig {
    pub fn from_env() -> Result<Self, finops_core::ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// `FINOPS_REASONER` is `converse` (the default: Bedrock Agents closed to new customers on 2026-07-30), `agent`
    /// or `rules`; each names the variables it needs when they are missing.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, finops_core::ConfigError> {
        use finops_core::ConfigError;
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let get =
            |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_owned()).filter(|v| !v.is_empty());
        let required = |k: &str, why: &str| get(k).ok_or_else(|| ConfigError::new(k, format!("is not set ({why})")));
        let detection = finops_core::DetectionConfig::from_vars(vars.clone())?;
        let run_bucket =
            detection.run_bucket.clone().ok_or_else(|| ConfigError::new("FINOPS_RUN_BUCKET", "is not set"))?;
        let reasoner = match get("FINOPS_REASONER").as_deref().unwrap_or("converse") {
            "rules" => ReasonerChoice::Rules,
            "agent" => ReasonerChoice::Agent {
                agent_id: required("FINOPS_AGENT_ID", "FINOPS_REASONER=agent")?,
                alias_id: required("FINOPS_AGENT_ALIAS_ID", "FINOPS_REASONER=agent")?,
            },
            "converse" => {
                ReasonerChoice::Converse { model_id: required("FINOPS_MODEL_ID", "FINOPS_REASONER=converse")? }
            }
            other => {
                return Err(ConfigError::new(
                    "FINOPS_REASONER",
                    format!("{other:?}: allowed are converse, agent, rules"),
                ))
            }
        };
        let regions = match &reasoner {
            ReasonerChoice::Converse { .. } => {
                finops_core::regions::parse_region_list(&get("FINOPS_REGIONS").unwrap_or_default())
                    .map_err(|e| ConfigError::new("FINOPS_REGIONS", e))?
            }
            _ => Vec::new(),
        };
        let member_read_role = finops_core::organization::OrganizationConfig::from_vars(vars.clone())
            .map_err(|e| ConfigError::new("FINOPS_ACCOUNTS", e.to_string()))?
            .map(|o| o.read_role);
        Ok(Self {
            run_bucket,
            reasoner,
            regions,
            detection,
            converse_endpoint: get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"),
            member_read_role,
        })
    }
}

/// The configured backend: the one reasoner type the step holds, whichever was chosen.
pub enum Backend {
    Rules(Rules),
    Agent(Prompted<agent::BedrockAgent>),
    // Boxed: the tools' clients make it large, and there is one per container.
    Converse(Box<Prompted<converse::BedrockConverse<finops_agent_tools::SdkAccountReadTools>>>),
}

impl Reasoner for Backend {
    fn name(&self) -> &str {
        match self {
            Self::Rules(r) => r.name(),
            Self::Agent(r) => r.name(),
            Self::Converse(r) => r.name(),
        }
    }

    async fn recommend(
        &self,
        run_id: &str,
        candidates: &[(&InstanceRecord, &UtilisationSummary)],
        now: DateTime<Utc>,
    ) -> Reasoned {
        match self {
            Self::Rules(r) => r.recommend(run_id, candidates, now).await,
            Self::Agent(r) => r.recommend(run_id, candidates, now).await,
            Self::Converse(r) => r.recommend(run_id, candidates, now).await,
        }
    }
}

impl Backend {
    pub fn new(sdk: &aws_config::SdkConfig, config: &ReasoningConfig) -> Result<Self, FinopsError> {
        Ok(match &config.reasoner {
            ReasonerChoice::Rules => Self::Rules(Rules),
            ReasonerChoice::Agent { agent_id, alias_id } => Self::Agent(Prompted(agent::BedrockAgent::new(
                aws_sdk_bedrockagentruntime::Client::new(sdk),
                agent_id,
                alias_id,
            ))),
            ReasonerChoice::Converse { model_id } => {
                let mut bedrock = aws_sdk_bedrockruntime::config::Builder::from(sdk);
                if let Some(url) = &config.converse_endpoint {
                    bedrock = bedrock.endpoint_url(url);
                }
                let price_list_api = config.detection.pricing == finops_core::config::PricingMode::Api;
                let hub = finops_agent_tools::SdkReadTools::from_sdk(
                    sdk,
                    price_list_api,
                    config.regions.clone(),
                    config.detection.criteria.clone(),
                );
                let members = config.member_read_role.as_deref().map(|role| {
                    finops_agent_tools::SdkMemberReadTools::new(
                        sdk,
                        role,
                        price_list_api,
                        config.regions.clone(),
                        config.detection.criteria.clone(),
                    )
                });
                let tools = finops_agent_tools::AccountReadTools { hub, members };
                let converse = converse::BedrockConverse::new(
                    aws_sdk_bedrockruntime::Client::from_conf(bedrock.build()),
                    model_id,
                    tools,
                )
                .map_err(FinopsError::Configuration)?;
                Self::Converse(Box::new(Prompted(converse)))
            }
        })
    }
}

/// The reasoning step as the Lambda and the local runner build it.
pub struct ReasoningStep {
    store: finops_aws::S3RunStore,
    backend: Backend,
}

impl ReasoningStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: ReasoningConfig) -> Result<Self, FinopsError> {
        Ok(Self {
            store: finops_aws::S3RunStore::new(sdk, config.run_bucket.clone()),
            backend: Backend::new(sdk, &config)?,
        })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<ReasoningOutput, FinopsError> {
        handle(event, &self.store, &self.backend, now).await
    }
}
