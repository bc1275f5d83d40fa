//! The contract between `statemachine/finops.asl.json` and the step types of `finops_core::steps`: a small
//! interpreter walks every path of the state machine (each Choice branch, each Catch, both entries), evaluates each
//! Task's Parameters and each ResultSelector over typed sample outputs of the steps before it, and checks that
//! - every path a Parameters, ResultSelector or ItemSelector reads exists;
//! - each Lambda's payload deserialises into that step's input type, and has no field the type does not know (a
//!   misspelt optional field would otherwise be dropped in silence);
//! - each item of the approval map ends in a [`ProposalOutcome`].
//!
//! It runs without AWS; the end-to-end tests (functions/local) run the same file in moto's interpreter.

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use finops_core::approval::ApprovalAction;
use finops_core::organization::{AccountRef, SkippedAccount};
use finops_core::policy::{Proposal, ProposedAction, Recommendation, RecommendedAction};
use finops_core::steps::*;
use finops_core::{IdleVerdict, LookbackWindow, ObjectRef};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

fn asl() -> Value {
    asl_for("off")
}

/// `fan_out`: `on` for a deployment over an organization (the Distributed Map), `off` for its own account.
fn asl_for(fan_out: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../statemachine/finops.asl.json");
    let raw = std::fs::read_to_string(path).expect("the ASL file");
    serde_json::from_str::<Value>(&raw).expect("the ASL file is JSON as it is");
    // An act deployment (a recommend one never reaches the approval map); the function names stay `${...}`, which
    // says which step each Task invokes.
    serde_json::from_str(&raw.replace("${DeploymentMode}", "act").replace("${FanOut}", fan_out)).expect("still JSON")
}

// ---- the JSONPath and intrinsics subset the definition uses ----

fn resolve(path: &str, input: &Value, context: &Value) -> Result<Value, String> {
    let (root, rest) = if let Some(rest) = path.strip_prefix("$$") {
        (context, rest)
    } else if let Some(rest) = path.strip_prefix('$') {
        (input, rest)
    } else {
        return Err(format!("{path} is not a path"));
    };
    let mut node = root;
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        node = node.get(part).ok_or_else(|| format!("{path}: no `{part}` in {}", brief(node)))?;
    }
    Ok(node.clone())
}

fn brief(v: &Value) -> String {
    match v {
        Value::Object(m) => format!("{{{}}}", m.keys().cloned().collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// Splits an intrinsic's arguments at top-level commas.
fn arguments(text: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut out) = (0, false, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out
}

fn expression(expr: &str, input: &Value, context: &Value) -> Result<Value, String> {
    if let Some(literal) = expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')) {
        return Ok(json!(literal));
    }
    if let Ok(number) = expr.parse::<f64>() {
        return Ok(json!(number));
    }
    let Some((name, rest)) = expr.split_once('(') else { return resolve(expr, input, context) };
    let args = rest.strip_suffix(')').ok_or_else(|| format!("{expr}: unbalanced"))?;
    let values =
        arguments(args).into_iter().map(|a| expression(a, input, context)).collect::<Result<Vec<_>, String>>()?;
    match name {
        "States.Array" => Ok(Value::Array(values)),
        "States.Format" => Ok(json!(format!("{values:?}"))),
        "States.JsonToString" => Ok(json!(values[0].to_string())),
        "States.MathAdd" => {
            let sum = values
                .iter()
                .map(|v| v.as_f64().ok_or_else(|| format!("{expr}: {v} is not a number")))
                .sum::<Result<f64, String>>()?;
            Ok(json!(sum as i64))
        }
        other => Err(format!("{other} is not an intrinsic this test knows")),
    }
}

/// Evaluates a Parameters / ResultSelector / ItemSelector template.
fn template(tpl: &Value, input: &Value, context: &Value) -> Result<Value, String> {
    match tpl {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match key.strip_suffix(".$") {
                    Some(key) => {
                        let expr = value.as_str().ok_or_else(|| format!("{key}.$ is not a string"))?;
                        out.insert(key.to_owned(), expression(expr, input, context)?);
                    }
                    None => {
                        out.insert(key.clone(), template(value, input, context)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            items.iter().map(|i| template(i, input, context)).collect::<Result<_, _>>().map(Value::Array)
        }
        other => Ok(other.clone()),
    }
}

/// A Choice rule over the input (the comparisons the definition uses).
fn matches(rule: &Value, input: &Value) -> bool {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        return all.iter().all(|r| matches(r, input));
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        return any.iter().any(|r| matches(r, input));
    }
    let value = resolve(rule["Variable"].as_str().unwrap(), input, &json!({})).ok();
    let number = value.as_ref().and_then(Value::as_f64);
    if let Some(present) = rule.get("IsPresent").and_then(Value::as_bool) {
        return value.is_some() == present;
    }
    if let Some(expected) = rule.get("StringEquals") {
        return value.as_ref() == Some(expected);
    }
    if let Some(bound) = rule.get("NumericGreaterThan").and_then(Value::as_f64) {
        return number.is_some_and(|n| n > bound);
    }
    if let Some(bound) = rule.get("NumericLessThan").and_then(Value::as_f64) {
        return number.is_some_and(|n| n < bound);
    }
    panic!("a Choice rule this test does not know: {rule}")
}

fn with_result(input: &Value, state: &Value, result: Value) -> Value {
    match state.get("ResultPath") {
        Some(Value::Null) => input.clone(),
        None => result,
        Some(Value::String(path)) if path == "$" => result,
        Some(Value::String(path)) => {
            let mut out = input.clone();
            let parts: Vec<&str> = path.trim_start_matches("$.").split('.').collect();
            let mut node = &mut out;
            for part in &parts[..parts.len() - 1] {
                node = node.as_object_mut().unwrap().entry(*part).or_insert_with(|| json!({}));
            }
            node.as_object_mut().expect("ResultPath into an object").insert(parts[parts.len() - 1].to_owned(), result);
            out
        }
        Some(other) => panic!("ResultPath {other}"),
    }
}

// ---- typed samples of what each step returns ----

fn object(key: &str) -> ObjectRef {
    ObjectRef { bucket: "finops-runs".into(), key: key.into(), bytes: 1234 }
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("serialises")
}

/// One proposal of each action: an instance's stop, a volume's snapshot-then-delete, an address's release.
fn proposals() -> Vec<Proposal> {
    let volume = Proposal {
        resource_id: "vol-0123456789abcdef0".into(),
        resource_type: "gp3 volume, 100 GiB".into(),
        action: ProposedAction::SnapshotAndDelete,
        recommended: None,
        backend: "rules".into(),
        volume_ids: vec!["vol-0123456789abcdef0".into()],
        launch_time: None,
        ..proposal()
    };
    let address = Proposal {
        resource_id: "eipalloc-0123456789abcdef0".into(),
        resource_type: "public IPv4 203.0.113.10".into(),
        action: ProposedAction::Release,
        recommended: None,
        backend: "rules".into(),
        volume_ids: vec![],
        launch_time: None,
        ..proposal()
    };
    let stopped = Proposal {
        resource_id: "i-0stopped0000000000".into(),
        resource_type: "t3.large (stopped), 1 volume(s), 100 GiB".into(),
        action: ProposedAction::SnapshotAndDeleteVolumes,
        recommended: None,
        backend: "rules".into(),
        volume_ids: vec!["vol-0root0000000000000".into()],
        ..proposal()
    };
    vec![proposal(), volume, address, stopped]
}

fn proposal() -> Proposal {
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    Proposal {
        resource_id: "i-0123456789abcdef0".into(),
        region: "ap-southeast-2".into(),
        resource_type: "m5.large".into(),
        name: Some("dev box".into()),
        environment: Some("dev".into()),
        owner: None,
        account: None,
        action: ProposedAction::SnapshotAndStop,
        recommended: Some(RecommendedAction::SnapshotAndStop),
        confidence: 0.9,
        justification: "idle for 14 days".into(),
        backend: "converse".into(),
        monthly_saving_usd: Some(70.08),
        price_source: "price list".into(),
        evidence: vec!["CPU max 2 %".into()],
        daily: None,
        volume_ids: vec!["vol-1".into()],
        launch_time: Some(at),
        measured_until: at,
    }
}

/// The output a step returns for `payload` (already checked against its input type).
fn step_output(function: &str, payload: &Value, snapshots: Outcome) -> Value {
    let run_id = payload["runId"].as_str().unwrap_or("run-1").to_owned();
    let window = LookbackWindow::ending_before(Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap(), 14);
    match function {
        "InventoryFunctionArn" => to_value(InventoryOutput {
            run_id,
            regions: vec!["ap-southeast-2".into()],
            inventory: object("inventory.json"),
            instance_count: 3,
            instances_by_region: [("ap-southeast-2".to_owned(), 3)].into(),
        }),
        "PlanScansFunctionArn" => to_value(PlanOutput {
            run_id,
            regions: vec!["ap-southeast-2".into()],
            items: object("runs/run-1/items.json"),
            item_count: 2,
            account_count: 2,
            skipped: vec![SkippedAccount {
                account: AccountRef::new("444444444444", "closed"),
                reason: "suspended".into(),
            }],
            skipped_count: 1,
        }),
        "ScanAccountFunctionArn" => to_value(ScanItemOutput {
            account_id: payload["account"]["id"].as_str().unwrap().to_owned(),
            region: payload["region"].as_str().unwrap().to_owned(),
            reached: true,
            instance_count: 3,
            candidates: 1,
            get_metric_data_calls: 2,
            metrics_requested: 8,
            document: object("runs/run-1/items/111111111111/ap-southeast-2.json"),
        }),
        "MetricsFunctionArn" | "MergeScansFunctionArn" => to_value(MetricsOutput {
            run_id,
            regions: vec!["ap-southeast-2".into()],
            inventory: object("inventory.json"),
            utilisation: object("utilisation.json"),
            window,
            criteria: "default".into(),
            instance_count: 3,
            verdicts: VerdictCounts::default(),
            shortlist: vec![ShortlistEntry {
                instance_id: "i-0123456789abcdef0".into(),
                region: "ap-southeast-2".into(),
                instance_type: "m5.large".into(),
                verdict: IdleVerdict::Idle,
                monthly_saving_usd: Some(70.08),
            }],
            shortlist_omitted: 0,
            estimated_monthly_saving_usd: 70.08,
            get_metric_data_calls: 1,
            metrics_requested: 4,
            price_list_calls: 2,
            organization: None,
            accounts_summary: finops_core::steps::THIS_ACCOUNT_ONLY.into(),
        }),
        "ReasoningFunctionArn" => to_value(ReasoningOutput {
            run_id,
            inventory: object("inventory.json"),
            utilisation: object("utilisation.json"),
            recommendations: Some(vec![Recommendation {
                instance_id: "i-0123456789abcdef0".into(),
                action: RecommendedAction::SnapshotAndStop,
                confidence: 0.9,
                justification: "idle".into(),
                backend: "converse".into(),
                evidence: vec![],
                trace_id: None,
            }]),
            recommendations_ref: None,
            recommendation_count: 1,
            backend: "converse".into(),
            fallbacks: 0,
            discarded: vec![],
            prompt: PromptSize::default(),
            model_usage: TokenUsage { input_tokens: 2000, output_tokens: 400 },
        }),
        "PolicyFunctionArn" => to_value(PolicyOutput {
            run_id,
            proposals: proposals(),
            proposal_count: 3,
            proposed_monthly_saving_usd: 70.08,
            denials: vec![],
            denial_counts: [("production".to_owned(), 1)].into(),
            denials_omitted: 0,
            recommendation_count: 1,
            policy: object("policy.json"),
            resources: Default::default(),
        }),
        "RequestApprovalFunctionArn" if payload.get("outcomes").is_some() => to_value(OfferUndoOutput {
            summary: "offered for 1 action(s) to 2 approver(s), by email only".into(),
            offered: 1,
            recipients: 2,
        }),
        "RequestApprovalFunctionArn" if payload.get("proposals").is_some() => to_value(AskApproversOutput {
            asked: 3,
            unasked: vec![],
            recipients: 2,
            slack_messages: 0,
            owners_told: 0,
            summary: "3 of 3 proposal(s) asked: one message each to 2 approver(s)".into(),
        }),
        "RequestApprovalFunctionArn" => to_value(ApprovalRequestOutput { approval_id: "a".repeat(32), expires_at: 0 }),
        "ActionsFunctionArn" => {
            let operation = payload["operation"].as_str().unwrap().to_owned();
            let proposal: Target = serde_json::from_value(payload["proposal"].clone()).unwrap();
            // The acting operations say what they did, when and its estimate; the others say nothing.
            let acted = [
                "stop",
                "stop_status",
                "delete_volume",
                "delete_instance_volumes",
                "release_address",
                "cleanup_status",
            ]
            .contains(&operation.as_str())
            .then(|| finops_core::savings::ActedOn {
                resource_id: proposal.resource_id.clone(),
                action: proposal.action,
                region: proposal.region.clone(),
                account: proposal.account.clone(),
                monthly_saving_usd: proposal.monthly_saving_usd,
                acted_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
                stopped_as: None,
            });
            to_value(ActionOutcome {
                resource_id: proposal.resource_id,
                outcome: if operation == "snapshot_status" { snapshots } else { Outcome::Done },
                detail: format!("{operation}: {snapshots:?}"),
                snapshot_ids: vec!["snap-1".into()],
                operation,
                acted,
            })
        }
        "SavingsFunctionArn" => to_value(finops_core::steps::SavingsOutput {
            summary: "$12.00 realized to date".into(),
            ..Default::default()
        }),
        "RunCostFunctionArn" => {
            let usage = finops_core::run_cost::RunUsage { state_transitions: 40, ..Default::default() };
            let cost = finops_core::run_cost::RunCost::of(
                &usage,
                finops_core::run_cost::Architecture::Arm64,
                3,
                &finops_core::run_cost::ListPrices::LIST,
            );
            let summary = cost.summary(&usage);
            to_value(RunCostOutput { cost, usage, summary })
        }
        other => panic!("no sample output for {other}"),
    }
}

/// Deserialises `payload` into `T` and, for a payload the ASL lists field by field (`listed`), checks that `T` knows
/// every field it sets. (A payload passed whole, `Payload.$`, is another step's typed output.)
fn accepts<T: DeserializeOwned + Serialize>(payload: &Value, listed: bool) -> Result<(), String> {
    let typed: T = serde_json::from_value(payload.clone()).map_err(|e| format!("{e} in {payload}"))?;
    if !listed {
        return Ok(());
    }
    let known = to_value(&typed);
    for key in payload.as_object().ok_or("the payload is not an object")?.keys() {
        if known.get(key).is_none() {
            return Err(format!("`{key}` is not a field of {}", std::any::type_name::<T>()));
        }
    }
    Ok(())
}

fn check_payload(function: &str, payload: &Value, listed: bool) -> Result<(), String> {
    match function {
        "InventoryFunctionArn" => accepts::<InventoryRequest>(payload, listed),
        "MetricsFunctionArn" => accepts::<MetricsRequest>(payload, listed),
        "ReasoningFunctionArn" => accepts::<ReasoningRequest>(payload, listed),
        "PolicyFunctionArn" => accepts::<PolicyRequest>(payload, listed),
        "RequestApprovalFunctionArn" if payload.get("outcomes").is_some() => {
            accepts::<OfferUndoRequest>(payload, listed)
        }
        "RequestApprovalFunctionArn" if payload.get("proposals").is_some() => {
            accepts::<AskApproversRequest>(payload, listed)
        }
        "RequestApprovalFunctionArn" => accepts::<ApprovalRequestEvent>(payload, listed),
        "ActionsFunctionArn" => accepts::<ActionRequest>(payload, listed),
        "RunCostFunctionArn" => accepts::<RunCostRequest>(payload, listed),
        "SavingsFunctionArn" => accepts::<finops_core::steps::SavingsRequest>(payload, listed),
        "PlanScansFunctionArn" => accepts::<PlanRequest>(payload, listed),
        "ScanAccountFunctionArn" => accepts::<ScanItemRequest>(payload, listed),
        "MergeScansFunctionArn" => accepts::<MergeRequest>(payload, listed),
        other => Err(format!("no input type for {other}")),
    }
}

// ---- the walk ----

struct Walk {
    /// What the approver decides and what the snapshot check finds, in the item being walked.
    decision: ApprovalAction,
    snapshots: Outcome,
    failures: Vec<String>,
    /// Visits per state, to end loops (the snapshot wait) and bound the branches.
    visits: HashMap<String, usize>,
    /// Lambda payloads checked, per function.
    checked: HashMap<String, usize>,
    /// Every Lambda payload, in the order walked.
    payloads: Vec<(String, Value)>,
    /// The results of the approval map's items.
    item_results: Vec<Value>,
}

impl Walk {
    fn run(&mut self, states: &Map<String, Value>, name: &str, input: Value, context: &Value, scope: &str) {
        let key = format!("{scope}{name}");
        let visits = self.visits.entry(key.clone()).or_default();
        *visits += 1;
        if *visits > 6 {
            return;
        }
        let state = &states[name];
        let fail = |w: &mut Self, e: String| w.failures.push(format!("{key}: {e}"));
        let next = |w: &mut Self, output: Value| match state.get("Next").and_then(Value::as_str) {
            Some(next) => w.run(states, next, output, context, scope),
            None if scope.is_empty() => {}
            None => w.item_results.push(output),
        };
        match state["Type"].as_str().unwrap() {
            "Pass" => {
                let result = match (state.get("Parameters"), state.get("Result")) {
                    (Some(p), _) => template(p, &input, context),
                    (None, Some(r)) => Ok(r.clone()),
                    (None, None) => Ok(input.clone()),
                };
                match result {
                    Ok(result) => next(self, with_result(&input, state, result)),
                    Err(e) => fail(self, e),
                }
            }
            "Choice" => {
                let chosen = state["Choices"].as_array().unwrap().iter().find(|rule| matches(rule, &input));
                match chosen.and_then(|c| c["Next"].as_str()).or_else(|| state["Default"].as_str()) {
                    Some(target) => self.run(states, target, input, context, scope),
                    None => fail(self, "no rule matched and no Default".into()),
                }
            }
            "Wait" => next(self, input),
            "Fail" | "Succeed" => {}
            "Task" => {
                for catch in state.get("Catch").and_then(Value::as_array).into_iter().flatten() {
                    let error = json!({"Error": catch["ErrorEquals"][0], "Cause": "injected"});
                    let caught = with_result(&input, catch, error);
                    self.run(states, catch["Next"].as_str().unwrap(), caught, context, scope);
                }
                let mut task_context = context.clone();
                task_context["Task"] = json!({"Token": "token-1"});
                let parameters = match template(&state["Parameters"], &input, &task_context) {
                    Ok(p) => p,
                    Err(e) => return fail(self, e),
                };
                let resource = state["Resource"].as_str().unwrap();
                let result = if resource.starts_with("arn:aws:states:::lambda:invoke") {
                    let function = state["Parameters"]["FunctionName"].as_str().unwrap();
                    let function = function.trim_start_matches("${").trim_end_matches('}');
                    let payload = &parameters["Payload"];
                    let listed = state["Parameters"].get("Payload").is_some();
                    if let Err(e) = check_payload(function, payload, listed) {
                        return fail(self, e);
                    }
                    *self.checked.entry(function.to_owned()).or_default() += 1;
                    self.payloads.push((function.to_owned(), payload.clone()));
                    if resource.ends_with(".waitForTaskToken") {
                        // The task ends with what the approval callback sends, not with the function's output.
                        to_value(ApprovalTaskResult {
                            decision: self.decision,
                            decided_at: "2026-11-28T00:00:00Z".into(),
                            approver: "ana@example.com".into(),
                            approval_id: "a".repeat(32),
                        })
                    } else {
                        json!({"Payload": step_output(function, payload, self.snapshots), "StatusCode": 200})
                    }
                } else {
                    json!({"MessageId": "m-1"})
                };
                let result = match state.get("ResultSelector") {
                    Some(selector) => match template(selector, &result, context) {
                        Ok(r) => r,
                        Err(e) => return fail(self, format!("ResultSelector: {e}")),
                    },
                    None => result,
                };
                next(self, with_result(&input, state, result));
            }
            "Map" if state.get("ItemReader").is_some() => {
                // A Distributed Map: the items come from the plan's document in S3 (the JSON array of
                // ScanItemRequest the plan writes), each item whole as its child's input; with a ResultWriter the
                // state's result is where the results went, not the results.
                let reader = &state["ItemReader"];
                if let Err(e) = template(&reader["Parameters"], &input, context) {
                    return fail(self, format!("ItemReader: {e}"));
                }
                let item = to_value(ScanItemRequest {
                    run_id: "run-1".into(),
                    account: AccountRef::new("111111111111", "data-dev"),
                    region: "ap-southeast-2".into(),
                    as_of: Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap(),
                    lookback_days: Some(14),
                    criteria: None,
                });
                let processor = state["ItemProcessor"]["States"].as_object().unwrap();
                let start = state["ItemProcessor"]["StartAt"].as_str().unwrap();
                self.run(processor, start, item, context, &format!("{key} > "));
                if state.get("ResultWriter").is_none() {
                    return fail(
                        self,
                        "a Distributed Map without a ResultWriter returns every result to the state".into(),
                    );
                }
                let written = json!({"MapRunArn": "arn:aws:states:::mapRun/1", "ResultWriterDetails": {"Bucket": "finops-runs", "Key": "map-results/1/manifest.json"}});
                next(self, with_result(&input, state, written));
            }
            "Map" => {
                let items = match resolve(state["ItemsPath"].as_str().unwrap(), &input, context) {
                    Ok(Value::Array(items)) if !items.is_empty() => items,
                    Ok(other) => return fail(self, format!("ItemsPath is not a non-empty array: {other}")),
                    Err(e) => return fail(self, e),
                };
                let processor = state["ItemProcessor"]["States"].as_object().unwrap();
                let start = state["ItemProcessor"]["StartAt"].as_str().unwrap();
                let before = self.item_results.len();
                // Every item (a proposal of each kind), every decision, and every answer of the snapshot check, each
                // walked as an item of its own.
                for (index, value) in items.iter().enumerate() {
                    let mut item_context = context.clone();
                    item_context["Map"] = json!({"Item": {"Value": value, "Index": index}});
                    let item = match template(&state["ItemSelector"], &input, &item_context) {
                        Ok(item) => item,
                        Err(e) => return fail(self, format!("ItemSelector: {e}")),
                    };
                    for decision in ApprovalAction::APPROVER_DECISIONS {
                        for snapshots in [Outcome::Done, Outcome::Pending, Outcome::Failed, Outcome::Refused] {
                            (self.decision, self.snapshots) = (decision, snapshots);
                            let scope = format!("{key} [item {index}, {decision}, snapshots {snapshots:?}] > ");
                            self.run(processor, start, item.clone(), &item_context, &scope);
                        }
                    }
                }
                let results: Vec<Value> = self.item_results[before..].to_vec();
                next(self, with_result(&input, state, Value::Array(results)));
            }
            other => fail(self, format!("a {other} state this test does not know")),
        }
    }
}

fn walk(input: Value) -> Walk {
    walk_definition(asl(), input)
}

fn walk_definition(definition: Value, input: Value) -> Walk {
    let states = definition["States"].as_object().unwrap();
    let context = json!({"Execution": {"Name": "run-1", "Id": "arn:aws:states:ap-southeast-2:123456789012:execution:finops-agent:run-1"},
        "State": {"EnteredTime": "2026-12-01T00:00:00.000Z"}});
    let mut walk = Walk {
        decision: ApprovalAction::Approve,
        snapshots: Outcome::Done,
        failures: Vec::new(),
        visits: HashMap::new(),
        checked: HashMap::new(),
        payloads: Vec::new(),
        item_results: Vec::new(),
    };
    walk.run(states, definition["StartAt"].as_str().unwrap(), input, &context, "");
    walk
}

fn scheduled() -> Value {
    // What the EventBridge schedule sends (cdk/lib/schedule-and-alarms.ts).
    json!({"regions": ["ap-southeast-2"], "mode": "act", "lookbackDays": 14})
}

fn single_instance() -> Value {
    // What the agent tools start (functions/agent-tools: stop_resource).
    json!({"entry": "single-instance", "mode": "act", "runId": "agent-1", "regions": ["ap-southeast-2"],
        "lookbackDays": 14, "instanceId": "i-0123456789abcdef0", "requestedAction": "snapshot_and_stop",
        "requestedBy": "agent", "justification": "asked by a person"})
}

#[test]
fn every_task_of_both_entries_gets_a_payload_its_step_accepts() {
    for (entry, input) in [("scheduled", scheduled()), ("single-instance", single_instance())] {
        let walk = walk(input);
        assert!(walk.failures.is_empty(), "{entry}:\n{}", walk.failures.join("\n"));
        for function in [
            "InventoryFunctionArn",
            "MetricsFunctionArn",
            "ReasoningFunctionArn",
            "PolicyFunctionArn",
            "RequestApprovalFunctionArn",
            "ActionsFunctionArn",
            "RunCostFunctionArn",
            "SavingsFunctionArn",
        ] {
            assert!(walk.checked.get(function).copied().unwrap_or(0) > 0, "{entry}: {function} never reached");
        }
    }
}

#[test]
fn an_organization_run_fans_out_and_goes_on_as_one_run() {
    let walk = walk_definition(asl_for("on"), scheduled());
    assert!(walk.failures.is_empty(), "{}", walk.failures.join("\n"));
    for function in [
        "PlanScansFunctionArn",
        "ScanAccountFunctionArn",
        "MergeScansFunctionArn",
        "ReasoningFunctionArn",
        "ActionsFunctionArn",
    ] {
        assert!(walk.checked.get(function).copied().unwrap_or(0) > 0, "{function} never reached");
    }
    for function in ["InventoryFunctionArn", "MetricsFunctionArn"] {
        assert_eq!(walk.checked.get(function), None, "{function}: the fan-out replaces the single-account steps");
    }
    // Only the fan-out's item step reads member accounts, and its input is the plan's item, whole.
    let (_, item) = walk.payloads.iter().find(|(f, _)| f == "ScanAccountFunctionArn").unwrap();
    assert_eq!(item["account"]["id"], "111111111111");
    let one_account = walk_definition(asl_for("off"), scheduled());
    assert_eq!(one_account.checked.get("PlanScansFunctionArn"), None, "no fan-out for one account");
}

#[test]
fn every_approval_item_ends_in_a_proposal_outcome() {
    let walk = walk(scheduled());
    // Approve, snooze, deny, no answer, snapshot refused or failed, stop, and the failure paths.
    assert!(walk.item_results.len() >= 7, "{} item results", walk.item_results.len());
    for result in &walk.item_results {
        let outcome: ProposalOutcome =
            serde_json::from_value(result.clone()).unwrap_or_else(|e| panic!("{e}: {result}"));
        assert!(proposals().iter().any(|p| p.resource_id == outcome.resource_id), "{result}");
    }
    // Every stop, deletion and release that was done reaches the run's outcomes with what was done (the ledger
    // keeps it, and later runs prove it).
    let acted: Vec<&Value> = walk.item_results.iter().filter(|r| r["acted"].is_object()).collect();
    for operation in ["stop", "delete_volume", "delete_instance_volumes", "release_address"] {
        assert!(
            walk.item_results
                .iter()
                .filter(|r| r["operation"] == operation && r["outcome"] == "done")
                .all(|r| r["acted"].is_object()),
            "{operation}: {acted:?}"
        );
        assert!(acted.iter().any(|r| r["operation"] == operation), "{operation}");
    }
    // Each kind reaches its own acting operation, and no other kind reaches it.
    for (operation, resource) in [
        ("stop", "i-0123456789abcdef0"),
        ("delete_volume", "vol-0123456789abcdef0"),
        ("release_address", "eipalloc-0123456789abcdef0"),
        ("delete_instance_volumes", "i-0stopped0000000000"),
    ] {
        let acted: HashSet<&str> = walk
            .payloads
            .iter()
            .filter(|(f, p)| f == "ActionsFunctionArn" && p["operation"] == operation)
            .map(|(_, p)| p["proposal"]["resourceId"].as_str().unwrap())
            .collect();
        assert_eq!(acted, HashSet::from([resource]), "{operation}");
    }
}

/// What the approval callback starts once a person confirmed an undo link by POST.
fn undo_entry() -> Value {
    let proposal = proposals().into_iter().next().unwrap();
    to_value(UndoExecutionInput {
        entry: "undo".into(),
        undo: UndoOrder { undo_id: "b".repeat(32), run_id: "run-1".into(), proposal: Target::of(&proposal) },
    })
}

#[test]
fn the_undo_entry_only_asks_the_actions_step_to_undo_and_records_it() {
    let walk = walk(undo_entry());
    assert!(walk.failures.is_empty(), "{}", walk.failures.join("\n"));
    let functions: Vec<(&str, &str)> =
        walk.payloads.iter().map(|(f, p)| (f.as_str(), p["operation"].as_str().unwrap_or(""))).collect();
    assert_eq!(functions, [("ActionsFunctionArn", "undo")], "nothing is scanned, proposed, asked or stopped");
    let (_, payload) = &walk.payloads[0];
    assert_eq!(payload["decision"]["approvalId"], "b".repeat(32));
    assert_eq!(payload["runId"], "run-1", "the run whose action is undone");
}

#[test]
fn every_run_asks_its_approvers_once_before_the_waits_and_offers_undo_after() {
    let walk = walk(scheduled());
    let requests: Vec<&str> = walk
        .payloads
        .iter()
        .filter(|(f, _)| f == "RequestApprovalFunctionArn")
        .map(|(_, p)| match (p.get("proposals"), p.get("taskToken"), p.get("outcomes")) {
            (Some(_), None, None) => "ask",
            (None, Some(_), None) => "wait",
            (None, None, Some(_)) => "offer undo",
            _ => "unknown",
        })
        .collect();
    assert_eq!(requests.first(), Some(&"ask"), "one ask before any wait: {requests:?}");
    assert_eq!(requests.iter().filter(|r| **r == "ask").count(), 1, "{requests:?}");
    assert!(requests.contains(&"wait") && requests.last() == Some(&"offer undo"), "{requests:?}");
    assert!(!requests.contains(&"unknown"), "{requests:?}");
}

/// Finding 7: a recommend deployment (the kill switch) ran undo executions. Now its undo entry calls no step: the
/// undo is reported and recorded as refused.
#[test]
fn a_recommend_deployment_undoes_nothing() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../statemachine/finops.asl.json");
    let raw = std::fs::read_to_string(path).unwrap();
    let recommend: Value =
        serde_json::from_str(&raw.replace("${DeploymentMode}", "recommend").replace("${FanOut}", "off")).unwrap();
    let walk = walk_definition(recommend, undo_entry());
    assert!(walk.failures.is_empty(), "{}", walk.failures.join("\n"));
    assert!(walk.payloads.is_empty(), "no step is invoked: {:?}", walk.payloads);
    assert!(walk.visits.contains_key("Undo Refused In Recommend Mode"), "{:?}", walk.visits.keys());
    assert!(walk.visits.contains_key("Record Undo In Ledger"), "and it says so");
}

/// Finding 5: undo links were in the execution's output and history. Nothing the run keeps holds one: the undo
/// offer's output is counts, and the report says how many were offered to how many approvers.
#[test]
fn no_undo_link_reaches_the_execution_or_the_report() {
    let definition = asl();
    let offer = &definition["States"]["Offer Undo"]["ResultSelector"];
    let selected: HashSet<&str> = offer.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(selected, HashSet::from(["summary.$", "offered.$", "recipients.$"]), "{offer}");
    let typed = serde_json::to_value(OfferUndoOutput::default()).unwrap();
    let fields: HashSet<&str> = typed.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, HashSet::from(["summary", "offered", "recipients"]), "no link field in the step's output");
}

#[test]
fn the_single_instance_request_reaches_the_reasoning_step_typed() {
    let definition = asl();
    let scope = &definition["States"]["Scope To Requested Instance"];
    let request = template(&scope["Parameters"]["request"], &single_instance(), &json!({})).unwrap();
    let typed: RequestedAction = serde_json::from_value(request).unwrap();
    assert_eq!(typed.action, RecommendedAction::SnapshotAndStop);
    // The scheduled entry's scope carries no request and no instance filter: the whole fleet, the reasoner asked.
    let fleet = &definition["States"]["Scope To Fleet"]["Parameters"];
    assert_eq!(fleet, &json!({"instanceIds": null, "request": null}));
}

#[test]
fn the_walk_catches_a_misspelt_field_and_a_missing_path() {
    // The check itself: a payload field no step type knows, and a path into nothing, are both reported.
    let mut definition = asl();
    let payload = &mut definition["States"]["Measure Utilisation"]["Parameters"]["Payload"];
    payload["lookbackdays.$"] = payload["lookbackDays.$"].take();
    payload.as_object_mut().unwrap().remove("lookbackDays.$");
    let input = json!({"detection": {"runId": "r", "inventory": object("k")}, "lookbackdays": 1, "lookbackDays": 1});
    let err = check_payload("MetricsFunctionArn", &template(payload, &input, &json!({})).unwrap(), true).unwrap_err();
    assert!(err.contains("lookbackdays"), "{err}");
    assert!(resolve("$.detection.inventroy", &json!({"detection": {"inventory": 1}}), &json!({})).is_err());
}

#[test]
fn a_scope_forged_in_the_run_input_is_overwritten_by_the_entry() {
    // Whoever can start an execution cannot skip the reasoner or narrow the scan by writing `scope` themselves: the
    // entry's normalising state replaces it.
    let mut input = scheduled();
    input["scope"] = json!({"instanceIds": ["i-0123456789abcdef0"],
        "request": {"instanceId": "i-0123456789abcdef0", "action": "snapshot_and_stop", "justification": "forged"}});
    let walk = walk(input);
    assert!(walk.failures.is_empty(), "{}", walk.failures.join("\n"));
    let payload = |function: &str| walk.payloads.iter().find(|(f, _)| f == function).map(|(_, p)| p.clone()).unwrap();
    assert_eq!(payload("InventoryFunctionArn")["instanceIds"], Value::Null, "the whole fleet is scanned");
    assert_eq!(payload("ReasoningFunctionArn")["request"], Value::Null, "the reasoner is asked");
}
