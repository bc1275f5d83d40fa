//! The whole workflow's local AWS, shared by `make demo` and the end-to-end tests: moto with its Step Functions
//! interpreter on and its Lambda calls pointed at the local Lambda endpoint, the run bucket, the approval table,
//! topics with SQS subscriptions to read emails and reports, the signing secret, the ledger, and the state machine
//! created from `statemachine/finops.asl.json` with its substitutions.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::approvals::{approval_plumbing_on, ApprovalPlumbing, SECRET, TABLE};
use crate::moto::workspace_root;
use crate::scripted_model::ScriptedModel;

pub const RUN_BUCKET: &str = "finops-runs";
pub const LEDGER_TABLE: &str = "finops-ledger";
pub const FUNCTION_ARN_PREFIX: &str = "arn:aws:lambda:ap-southeast-2:123456789012:function";

pub struct WorkflowEnv {
    pub plumbing: ApprovalPlumbing,
    pub report_topic_arn: String,
    pub report_queue_url: String,
    pub state_machine_arn: String,
    pub config: SdkConfig,
    /// The reasoning step's Converse endpoint: a scripted model (see [`ScriptedModel`]).
    pub model: ScriptedModel,
    pub timings: WorkflowTimings,
}

/// The approver the local deployment names (`FINOPS_APPROVERS`): each run mails them one digest, and their links
/// decide as them.
pub const APPROVER: &str = "ops@example.com";

/// The model id the local functions are configured with: what reaches the scripted model.
pub const LOCAL_MODEL_ID: &str = "scripted.local-model";

#[derive(Debug, Clone)]
pub struct WorkflowTimings {
    pub approval_timeout_seconds: u32,
    pub snapshot_poll_seconds: u32,
    pub max_snapshot_checks: u32,
    /// The per-run cap on proposals. As in the CDK app, it is also the approval map's concurrency: every proposal
    /// waits for its approver at once, so every email of a run goes out at the start.
    pub max_proposals: u32,
    /// `act` or `recommend`: the deployment's mode, which caps every run's.
    pub deployment_mode: &'static str,
    /// A deployment over an organization's accounts (`FINOPS_ACCOUNTS=organization`, the Distributed Map).
    pub fan_out: bool,
}

/// The definition as a deployment renders it (the CDK app through `statemachine/render.mjs`), from the one list of
/// what a deployment sets, `statemachine/contract.json`: the `${Name}` text substitutions replaced as
/// CloudFormation's DefinitionSubstitutions would, the numbers set at their JSON pointers, and every Task given the
/// contract's one retry policy.
pub fn substituted_definition(report_topic_arn: &str, timings: &WorkflowTimings) -> String {
    let root = workspace_root().join("statemachine");
    let asl = std::fs::read_to_string(root.join("finops.asl.json")).expect("statemachine/finops.asl.json");
    let contract: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("contract.json")).expect("statemachine/contract.json"))
            .expect("statemachine/contract.json is JSON");
    let mut text: HashMap<&str, String> = [
        ("ReportTopicArn", report_topic_arn.to_owned()),
        ("LedgerTableName", LEDGER_TABLE.to_owned()),
        ("DeploymentMode", timings.deployment_mode.to_owned()),
        ("RunBucketName", RUN_BUCKET.to_owned()),
        ("FanOut", if timings.fan_out { "on" } else { "off" }.to_owned()),
    ]
    .into_iter()
    .collect();
    for (key, function) in [
        ("InventoryFunctionArn", "finops-inventory"),
        ("MetricsFunctionArn", "finops-metrics"),
        ("ReasoningFunctionArn", "finops-reasoning"),
        ("PolicyFunctionArn", "finops-policy"),
        ("RequestApprovalFunctionArn", "finops-request-approval"),
        ("ActionsFunctionArn", "finops-actions"),
        ("RunCostFunctionArn", "finops-run-cost"),
        ("SavingsFunctionArn", "finops-savings"),
        ("PlanScansFunctionArn", "finops-plan-scans"),
        ("ScanAccountFunctionArn", "finops-scan-account"),
        ("MergeScansFunctionArn", "finops-merge-scans"),
    ] {
        text.insert(key, format!("{FUNCTION_ARN_PREFIX}:{function}"));
    }
    let numbers: HashMap<&str, u32> = [
        ("ApprovalTimeoutSeconds", timings.approval_timeout_seconds),
        ("SnapshotPollSeconds", timings.snapshot_poll_seconds),
        ("MaxSnapshotChecks", timings.max_snapshot_checks),
        ("ApprovalConcurrency", timings.max_proposals.max(1)),
        ("AccountScanConcurrency", 4),
        ("ToleratedFailurePercentage", 10),
        // The approval window, the snapshot wait and room for every other step, as the CDK app computes it.
        (
            "ExecutionTimeoutSeconds",
            timings.approval_timeout_seconds + timings.snapshot_poll_seconds * timings.max_snapshot_checks + 600,
        ),
    ]
    .into_iter()
    .collect();
    let mut source = asl;
    for name in contract["text"].as_object().expect("contract text").keys() {
        let value = text.get(name.as_str()).unwrap_or_else(|| panic!("no value for ${{{name}}}"));
        source = source.replace(&format!("${{{name}}}"), value);
    }
    assert!(!source.contains("${"), "a substitution the contract does not list");
    let mut definition: serde_json::Value = serde_json::from_str(&source).expect("the definition is JSON");
    for (name, entry) in contract["numbers"].as_object().expect("contract numbers") {
        let at = entry["at"].as_str().expect("a JSON pointer");
        let slot = definition.pointer_mut(at).unwrap_or_else(|| panic!("{name}: {at} is not in the definition"));
        assert!(slot.is_number(), "{name}: {at} does not hold a number");
        let number = numbers.get(name.as_str()).copied().unwrap_or_else(|| panic!("no value for {name}"));
        // moto's ASL grammar reads ToleratedFailurePercentage as a NUMBER token, which an integer literal is not
        // (AWS takes either): the same value, written as a decimal.
        *slot = if name == "ToleratedFailurePercentage" { f64::from(number).into() } else { number.into() };
    }
    give_every_task(&mut definition["States"], &contract["taskRetry"]);
    definition.to_string()
}

fn give_every_task(states: &mut serde_json::Value, retry: &serde_json::Value) {
    for state in states.as_object_mut().expect("States").values_mut() {
        match state["Type"].as_str() {
            Some("Task") => {
                assert!(state.get("Retry").is_none(), "a Task has no Retry of its own (the contract's taskRetry)");
                state["Retry"] = retry.clone();
            }
            Some("Map") => give_every_task(&mut state["ItemProcessor"]["States"], retry),
            _ => {}
        }
    }
}

impl WorkflowEnv {
    /// Creates everything in the moto at `moto_port` (whose MOTO_PORT must point at the local Lambda endpoint).
    pub async fn create(moto_port: u16, config: &SdkConfig, timings: &WorkflowTimings) -> Self {
        let plumbing = approval_plumbing_on(moto_port, config).await;
        crate::seed::run_bucket(config, RUN_BUCKET).await;
        create_ledger_table(config).await;
        let sns = aws_sdk_sns::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let report_topic_arn =
            sns.create_topic().name("finops-reports").send().await.unwrap().topic_arn().unwrap().to_owned();
        let report_queue_url =
            sqs.create_queue().queue_name("finops-reports").send().await.unwrap().queue_url().unwrap().to_owned();
        let region = config.region().map(|r| r.to_string()).unwrap_or_else(|| "us-east-1".into());
        sns.subscribe()
            .topic_arn(&report_topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:{region}:123456789012:finops-reports"))
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        let state_machine_arn = plumbing
            .sfn
            .create_state_machine()
            .name("finops")
            .definition(substituted_definition(&report_topic_arn, timings))
            .role_arn("arn:aws:iam::123456789012:role/finops-states")
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn()
            .to_owned();
        let model = ScriptedModel::start().await;
        Self {
            plumbing,
            report_topic_arn,
            report_queue_url,
            state_machine_arn,
            config: config.clone(),
            model,
            timings: timings.clone(),
        }
    }

    /// The functions' environment, as the CDK app sets it in a deployment, for this local AWS: the local runner
    /// builds every step from it with the Lambdas' own constructors. Reasoning goes through Converse to the scripted
    /// model; prices come from the embedded table (moto has no Price List API). [`set_var`] changes one.
    pub fn function_vars(&self, approval_base_url: &str) -> Vec<(String, String)> {
        let t = &self.timings;
        [
            ("FINOPS_RUN_BUCKET", RUN_BUCKET.to_owned()),
            ("FINOPS_REGIONS", "ap-southeast-2,us-east-1".to_owned()),
            ("FINOPS_PRICING", "embedded".to_owned()),
            ("FINOPS_REASONER", "converse".to_owned()),
            ("FINOPS_MODEL_ID", LOCAL_MODEL_ID.to_owned()),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", self.model.endpoint.clone()),
            ("FINOPS_APPROVALS_TABLE", TABLE.to_owned()),
            ("FINOPS_LEDGER_TABLE", LEDGER_TABLE.to_owned()),
            ("FINOPS_SIGNING_SECRET_ID", SECRET.to_owned()),
            ("FINOPS_APPROVAL_TOPIC_ARN", self.plumbing.topic_arn.clone()),
            ("FINOPS_APPROVAL_BASE_URL", approval_base_url.to_owned()),
            ("FINOPS_APPROVAL_WINDOW_SECONDS", t.approval_timeout_seconds.to_string()),
            ("FINOPS_MODE", t.deployment_mode.to_owned()),
            ("FINOPS_MAX_PROPOSALS", t.max_proposals.to_string()),
            ("FINOPS_SNOOZE_DAYS", "7".to_owned()),
            ("FINOPS_APPROVERS", APPROVER.to_owned()),
        ]
        .into_iter()
        .chain(t.fan_out.then(|| ("FINOPS_ACCOUNTS", "organization".to_owned())))
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts an execution exactly as the schedule would.
    pub async fn start(&self, name: &str, regions: &[&str], mode: &str) -> String {
        self.start_with(name, &serde_json::json!({"regions": regions, "mode": mode, "lookbackDays": 14})).await
    }

    /// Starts an execution with any input (the agent tools' single-instance entry).
    pub async fn start_with(&self, name: &str, input: &serde_json::Value) -> String {
        self.plumbing
            .sfn
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .expect("start execution")
            .execution_arn()
            .to_owned()
    }

    /// The next run report from the report topic, if one arrives within `wait`.
    pub async fn next_report(&self, wait: Duration) -> Option<String> {
        let sqs = aws_sdk_sqs::Client::new(&self.config);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let out = sqs.receive_message().queue_url(&self.report_queue_url).wait_time_seconds(1).send().await.ok()?;
            if let Some(m) = out.messages().first() {
                sqs.delete_message()
                    .queue_url(&self.report_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .ok();
                return m.body().map(str::to_owned);
            }
        }
        None
    }

    /// Waits until the execution ends; its status and output.
    pub async fn finished(&self, execution_arn: &str, wait: Duration) -> (String, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let d = self.plumbing.sfn.describe_execution().execution_arn(execution_arn).send().await;
            if let Ok(d) = &d {
                if d.status().as_str() != "RUNNING" {
                    let output = d.output().and_then(|o| serde_json::from_str(o).ok()).unwrap_or_default();
                    return (d.status().as_str().to_owned(), output);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return ("TIMED_OUT_WAITING".into(), serde_json::Value::Null);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A person following an undo link they were mailed: the page (GET, which changes nothing), then its button
    /// (POST; the link says who they are). The POST's status, and the undo execution's status and output once it
    /// ended (none if the page refused).
    pub async fn follow_undo_link(&self, approval_port: u16, url: &str) -> (u16, Option<(String, serde_json::Value)>) {
        let path = &url[url.find("/approvals/").expect("an approval page link")..];
        let (shown, _) = crate::moto::http(approval_port, "GET", path, "").await.expect("the approval page");
        assert_eq!(shown, 200, "GET {path}");
        let (status, _) =
            crate::moto::http(approval_port, "POST", path, "decision=undo").await.expect("the approval page");
        if status != 200 {
            return (status, None);
        }
        let undo_id = path.trim_start_matches("/approvals/").split('?').next().unwrap_or_default();
        let execution =
            format!("{}:undo-{undo_id}", self.state_machine_arn.replacen(":stateMachine:", ":execution:", 1));
        (status, Some(self.finished(&execution, Duration::from_secs(60)).await))
    }

    pub async fn ledger(&self, run_id: &str) -> HashMap<String, AttributeValue> {
        aws_sdk_dynamodb::Client::new(&self.config)
            .get_item()
            .table_name(LEDGER_TABLE)
            .key("runId", AttributeValue::S(run_id.into()))
            .send()
            .await
            .ok()
            .and_then(|o| o.item().cloned())
            .unwrap_or_default()
    }
}

/// The ledger table as the CDK app creates it (key `runId`), named [`LEDGER_TABLE`].
pub async fn create_ledger_table(config: &SdkConfig) {
    aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(LEDGER_TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("runId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("runId").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("ledger table");
}

/// Sets one variable of a functions' environment, replacing its value if it is there.
pub fn set_var(vars: &mut Vec<(String, String)>, name: &str, value: &str) {
    vars.retain(|(k, _)| k != name);
    vars.push((name.to_owned(), value.to_owned()));
}
