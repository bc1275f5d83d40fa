//! The policy step. Loads this run's inventory and utilisation documents, applies
//! [`finops_core::policy::evaluate`] to the reasoning step's recommendations, judges the other resources' findings
//! (volumes and addresses it lets through are proposed too, under the same caps), stores the full outcome and returns
//! the proposals (bounded by the per-run cap) and a bounded list of denials with counts by reason.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use finops_aws::{get_json, put_json, validate_run_id, FinopsError, RunStore};
use finops_core::policy::{evaluate_with_resources, Denial, PolicyConfig, Proposal, Recommendation};
use finops_core::resources::{ResourceFinding, ResourcesSummary};
use finops_core::steps::{InventoryDocument, UtilisationDocument};
pub use finops_core::steps::{PolicyOutput, PolicyRequest};
use serde::Serialize;

/// Denials listed in the state output; the rest are counted and stored with the run.
pub const DENIALS_IN_OUTPUT: usize = 50;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyDocument<'a> {
    run_id: &'a str,
    config: &'a PolicyConfig,
    recommendations: &'a [Recommendation],
    proposals: &'a [Proposal],
    denials: &'a [Denial],
    /// The run's resources beyond instances, each with what the policy says of it.
    resources: &'a [ResourceFinding],
}

pub async fn handle<R: RunStore>(
    event: serde_json::Value,
    store: &R,
    config: &PolicyConfig,
    now: DateTime<Utc>,
) -> Result<PolicyOutput, FinopsError> {
    let request: PolicyRequest = serde_json::from_value(event).map_err(|e| {
        FinopsError::InvalidInput(format!("policy expects {{runId, inventory, utilisation, recommendations}}: {e}"))
    })?;
    validate_run_id(&request.run_id)?;
    let recommendations: Vec<Recommendation> = match (request.recommendations, &request.recommendations_ref) {
        (Some(list), None) => list,
        (None, Some(r)) => get_json(store, r).await?,
        _ => return Err(FinopsError::InvalidInput("exactly one of recommendations and recommendationsRef".into())),
    };
    let inventory: InventoryDocument = get_json(store, &request.inventory).await?;
    let utilisation: UtilisationDocument = get_json(store, &request.utilisation).await?;
    for (what, run) in [("inventory", &inventory.run_id), ("utilisation", &utilisation.run_id)] {
        if *run != request.run_id {
            return Err(FinopsError::InvalidInput(format!(
                "{what} document belongs to run {run:?}, not {:?}",
                request.run_id
            )));
        }
    }
    let by_id: HashMap<&str, _> = utilisation.summaries.iter().map(|s| (s.instance_id.as_str(), s)).collect();
    let resources =
        finops_core::resources::judge(config, &inventory.other_resources, utilisation.resources.clone(), now);
    let resources_summary = ResourcesSummary::of(&resources);
    // Volumes and addresses the policy lets through are asked about as instances are, under the same caps.
    let resource_proposals =
        finops_core::resources::proposals(config, &inventory.other_resources, &resources, utilisation.window.end());
    let mut outcome =
        evaluate_with_resources(config, &inventory.instances, &by_id, &recommendations, resource_proposals, now);
    // Each proposed instance's days as the idle rule read them, with its limits: the approval page draws them.
    let rule = utilisation.criteria.idle.clone().unwrap_or_else(finops_core::criteria::DailyRule::strict_idle);
    for p in outcome.proposals.iter_mut().filter(|p| p.action == finops_core::policy::ProposedAction::SnapshotAndStop) {
        p.daily =
            by_id.get(p.resource_id.as_str()).and_then(|s| finops_core::policy::DailyEvidence::of(&s.days, &rule));
    }

    let policy = put_json(
        store,
        &format!("runs/{}/policy.json", request.run_id),
        &PolicyDocument {
            run_id: &request.run_id,
            config,
            recommendations: &recommendations,
            proposals: &outcome.proposals,
            denials: &outcome.denials,
            resources: &resources,
        },
    )
    .await?;
    let backend_of: HashMap<&str, &str> =
        recommendations.iter().rev().map(|r| (r.instance_id.as_str(), r.backend.as_str())).collect();
    let mut denial_counts: BTreeMap<String, usize> = BTreeMap::new();
    for d in &outcome.denials {
        *denial_counts.entry(d.reason.as_str().to_owned()).or_default() += 1;
        let agent = backend_of.get(d.resource_id.as_str()).copied().unwrap_or("rules");
        finops_aws::xray::record_decision("finops.policy", agent, &d.resource_id, "DENIED", &request.run_id);
        tracing::info!(
            run_id = request.run_id,
            resource_id = d.resource_id,
            reason = d.reason.as_str(),
            decision = "DENIED",
            detail = d.detail,
            "denied"
        );
    }
    for p in &outcome.proposals {
        let account = p.account.as_ref().map(|a| a.id.as_str());
        finops_aws::xray::record_decision_in(
            "finops.policy",
            &p.backend,
            &p.resource_id,
            "PROPOSED",
            &request.run_id,
            account,
        );
        tracing::info!(
            run_id = request.run_id,
            resource_id = p.resource_id,
            action = p.action.as_str(),
            decision = "PROPOSED",
            saving = p.monthly_saving_usd,
            "proposed"
        );
    }
    let denials_omitted = outcome.denials.len().saturating_sub(DENIALS_IN_OUTPUT);
    let proposed_monthly_saving_usd =
        (outcome.proposals.iter().filter_map(|p| p.monthly_saving_usd).sum::<f64>() * 100.0).round() / 100.0;
    Ok(PolicyOutput {
        run_id: request.run_id,
        proposal_count: outcome.proposals.len(),
        proposed_monthly_saving_usd,
        proposals: outcome.proposals,
        denials: outcome.denials.into_iter().take(DENIALS_IN_OUTPUT).collect(),
        denial_counts,
        denials_omitted,
        recommendation_count: recommendations.len(),
        policy,
        resources: resources_summary,
    })
}

/// What the policy step reads from its environment: the run bucket and the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStepConfig {
    pub run_bucket: String,
    pub policy: PolicyConfig,
}

impl PolicyStepConfig {
    pub fn from_env() -> Result<Self, finops_core::ConfigError> {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Self, finops_core::ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let run_bucket = finops_core::config::required_var(&vars, "FINOPS_RUN_BUCKET")?;
        Ok(Self { run_bucket, policy: PolicyConfig::from_vars(vars)? })
    }
}

/// The policy step as the Lambda and the local runner build it.
pub struct PolicyStep {
    store: finops_aws::S3RunStore,
    policy: PolicyConfig,
}

impl PolicyStep {
    pub fn new(sdk: &aws_config::SdkConfig, config: PolicyStepConfig) -> Self {
        Self { store: finops_aws::S3RunStore::new(sdk, config.run_bucket), policy: config.policy }
    }

    pub async fn handle(&self, event: serde_json::Value, now: DateTime<Utc>) -> Result<PolicyOutput, FinopsError> {
        let out = handle(event, &self.store, &self.policy, now).await?;
        finops_aws::metrics::emit(&finops_core::metrics::policy_metrics(&out));
        Ok(out)
    }
}
