//! Bedrock action-group events (messageVersion 1.0) for each operation, against a real moto server: EC2,
//! CloudWatch, and Step Functions for the approval-started path.
#![recursion_limit = "256"]

use chrono::Utc;
use finops_agent_tools::{AccountReadTools, ReadTools, SfnStarter, Tools};
use finops_core::criteria::{CriteriaPreset, IdleCriteria};
use finops_core::policy::PolicyConfig;
use finops_core::DeploymentMode;
use finops_core::LookbackWindow;
use finops_testkit::seed::{launch, linux_image_id, put_daily_metrics, DayProfile, InstanceSpec};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_ec2, aws_sdk_sfn, moto};
use serde_json::{json, Value};

fn event(method: &str, api_path: &str, parameters: Value, body: Option<Value>) -> Value {
    let mut e = json!({
        "messageVersion": "1.0",
        "agent": {"name": "finops-agent", "id": "AGENT123", "alias": "ALIAS456", "version": "1"},
        "inputText": "Find underutilised instances in ap-southeast-2",
        "sessionId": "run-1",
        "actionGroup": "finops-tools",
        "apiPath": api_path,
        "httpMethod": method,
        "parameters": parameters,
        "sessionAttributes": {"team": "platform"},
        "promptSessionAttributes": {}
    });
    if let Some(props) = body {
        e["requestBody"] = json!({"content": {"application/json": {"properties": props}}});
    }
    e
}

fn p(name: &str, value: &str) -> Value {
    json!({"name": name, "type": "string", "value": value})
}

/// The `(status, body)` of a Bedrock action-group response, checking its envelope.
fn unwrap(response: &Value, api_path: &str) -> (u64, Value) {
    assert_eq!(response["messageVersion"], "1.0");
    let r = &response["response"];
    assert_eq!(r["actionGroup"], "finops-tools");
    assert_eq!(r["apiPath"], api_path);
    let body: Value = serde_json::from_str(r["responseBody"]["application/json"]["body"].as_str().unwrap()).unwrap();
    (r["httpStatusCode"].as_u64().unwrap(), body)
}

/// A state machine that does nothing: the tools only start executions of it, which the tests count.
async fn noop_state_machine(sfn: &aws_sdk_sfn::Client) -> String {
    sfn.create_state_machine()
        .name("finops")
        .definition(r#"{"StartAt":"Noop","States":{"Noop":{"Type":"Pass","End":true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/finops")
        .send()
        .await
        .unwrap()
        .state_machine_arn()
        .to_owned()
}

#[tokio::test]
async fn every_operation_answers_in_bedrocks_format() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let ec2_client = aws_sdk_ec2::Client::new(&config);
    let cw = aws_sdk_cloudwatch::Client::new(&config);
    let ami = linux_image_id(&ec2_client).await;
    let window = LookbackWindow::ending_before(Utc::now(), 14);
    let dev = launch(&ec2_client, &ami, &InstanceSpec::new("dev-idle", "t3.large").tag("Environment", "dev"), 1)
        .await
        .remove(0);
    let prod = launch(&ec2_client, &ami, &InstanceSpec::new("prod-db", "r5.large").tag("Environment", "Production"), 1)
        .await
        .remove(0);
    let asg =
        launch(&ec2_client, &ami, &InstanceSpec::new("web", "t3.medium").tag("aws:autoscaling:groupName", "web"), 1)
            .await
            .remove(0);
    for id in [&dev, &prod, &asg] {
        put_daily_metrics(&cw, id, &window, |_| Some(DayProfile::idle())).await;
    }
    let sfn = aws_sdk_sfn::Client::new(&config);
    let state_machine = noop_state_machine(&sfn).await;

    let starter_arn = state_machine.clone();
    // An act deployment whose lookback is 21 days: the tools and the executions they start use it.
    let tools = Tools {
        read: AccountReadTools::own_account(ReadTools::from_sdk(
            &config,
            false,
            vec!["ap-southeast-2".into()],
            IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 21),
        )),
        starter: SfnStarter::new(&config, starter_arn),
        policy: PolicyConfig::default(),
        mode: DeploymentMode::Act,
    };
    let call = |e: Value| tools.handle(e, Utc::now());

    let r = call(event(
        "GET",
        "/underutilised-resources",
        json!([p("region", "ap-southeast-2"), p("lookback_days", "14")]),
        None,
    ))
    .await;
    let (status, body) = unwrap(&r, "/underutilised-resources");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["found"], 3);
    assert_eq!(body["lookbackDays"], 14, "the agent's parameter wins when it gives one");
    let r = call(event("GET", "/underutilised-resources", json!([p("region", "ap-southeast-2")]), None)).await;
    assert_eq!(unwrap(&r, "/underutilised-resources").1["lookbackDays"], 21, "else the deployment's lookback");
    assert_eq!(body["instances"][0]["instanceId"], prod.as_str(), "largest saving first (r5.large)");
    assert_eq!(r["sessionAttributes"]["team"], "platform", "session attributes are handed back");

    let (status, body) = unwrap(
        &call(event("GET", "/instances/{instance_id}", json!([p("instance_id", &dev)]), None)).await,
        "/instances/{instance_id}",
    );
    assert_eq!(status, 200);
    assert_eq!(body["instance"]["tags"]["Environment"], "dev");

    let (status, body) = unwrap(
        &call(event(
            "GET",
            "/instances/{instance_id}/utilisation",
            json!([p("instance_id", &dev), p("days", "7")]),
            None,
        ))
        .await,
        "/instances/{instance_id}/utilisation",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["utilisation"]["assessment"]["verdict"], "Idle");
    assert_eq!(body["utilisation"]["assessment"]["lookbackDays"], 7);

    let (status, body) = unwrap(
        &call(event(
            "GET",
            "/savings-estimate",
            json!([p("instance_type", "t3.large"), p("region", "ap-southeast-2")]),
            None,
        ))
        .await,
        "/savings-estimate",
    );
    assert_eq!(status, 200);
    assert_eq!(body["monthlyUsd"], 75.92);

    // The seed's case: the agent asks to stop a production database, one that does not exist, a cluster member.
    for (id, needle) in
        [(prod.as_str(), "production"), ("i-prod-db-001", "not a known instance"), (asg.as_str(), "managed")]
    {
        let (status, body) = unwrap(
            &call(event("POST", "/resources/{resource_id}/stop", json!([p("resource_id", id)]), None)).await,
            "/resources/{resource_id}/stop",
        );
        assert_eq!(status, 200);
        assert_eq!(body["status"], "DENIED", "{id}");
        assert!(body["reason"].as_str().unwrap().contains(needle), "{id}: {body}");
    }
    let executions = sfn.list_executions().state_machine_arn(&state_machine).send().await.unwrap();
    assert!(executions.executions().is_empty(), "no workflow for denied requests");

    // An idle dev box: an approval workflow starts; nothing is stopped.
    let (status, body) = unwrap(
        &call(event("POST", "/resources/{resource_id}/stop", json!([p("resource_id", &dev)]), None)).await,
        "/resources/{resource_id}/stop",
    );
    assert_eq!(status, 200);
    assert_eq!(body["status"], "approval_requested");
    let execution_arn = body["executionArn"].as_str().unwrap();
    let described = sfn.describe_execution().execution_arn(execution_arn).send().await.unwrap();
    let input: Value = serde_json::from_str(described.input().unwrap()).unwrap();
    assert_eq!(input["entry"], "single-instance");
    assert_eq!(input["instanceId"], dev.as_str());
    assert_eq!(input["requestedAction"], "snapshot_and_stop");
    assert_eq!(input["lookbackDays"], 21, "the deployment's lookback, not a constant");
    assert_eq!(input["mode"], "act");
    let state = ec2_client.describe_instances().instance_ids(&dev).send().await.unwrap().reservations()[0].instances()
        [0]
    .state()
    .unwrap()
    .name()
    .unwrap()
    .as_str()
    .to_owned();
    assert_eq!(state, "running");

    // finops never terminates: the tool always says so.
    let (status, body) = unwrap(
        &call(event(
            "POST",
            "/instances/{instance_id}/termination-approval",
            json!([p("instance_id", &dev)]),
            Some(json!([p("justification", "unused for months")])),
        ))
        .await,
        "/instances/{instance_id}/termination-approval",
    );
    assert_eq!(status, 200);
    assert_eq!(body["status"], "DENIED");
    assert!(body["reason"].as_str().unwrap().contains("never terminates"));
    assert_eq!(sfn.list_executions().state_machine_arn(&state_machine).send().await.unwrap().executions().len(), 1);
}

#[tokio::test]
async fn in_recommend_mode_a_stop_request_says_what_would_happen_and_starts_nothing() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let ec2_client = aws_sdk_ec2::Client::new(&config);
    let ami = linux_image_id(&ec2_client).await;
    let dev = launch(&ec2_client, &ami, &InstanceSpec::new("dev-idle", "t3.large").tag("Environment", "dev"), 1)
        .await
        .remove(0);
    let prod =
        launch(&ec2_client, &ami, &InstanceSpec::new("prod-db", "r5.large").tag("env", "prod-eu"), 1).await.remove(0);
    let sfn = aws_sdk_sfn::Client::new(&config);
    let state_machine = noop_state_machine(&sfn).await;
    let starter_arn = state_machine.clone();
    let vars = [("FINOPS_MODE".to_string(), "recommend".to_string())];
    let tools = Tools {
        read: AccountReadTools::own_account(ReadTools::from_sdk(
            &config,
            false,
            vec!["ap-southeast-2".into()],
            IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
        )),
        starter: SfnStarter::new(&config, starter_arn),
        policy: PolicyConfig::default(),
        mode: DeploymentMode::from_vars(vars).unwrap(),
    };
    let path = "/resources/{resource_id}/stop";
    let (status, body) =
        unwrap(&tools.handle(event("POST", path, json!([p("resource_id", &dev)]), None), Utc::now()).await, path);
    assert_eq!(status, 200);
    assert_eq!(body["status"], "recommend_only", "{body}");
    assert!(body["note"].as_str().unwrap().contains("nobody is asked"));
    let (_, body) =
        unwrap(&tools.handle(event("POST", path, json!([p("resource_id", &prod)]), None), Utc::now()).await, path);
    assert_eq!(body["status"], "DENIED", "the policy still answers for production");
    let path = "/instances/{instance_id}/termination-approval";
    let (_, body) = unwrap(
        &tools
            .handle(
                event("POST", path, json!([p("instance_id", &dev)]), Some(json!([p("justification", "old")]))),
                Utc::now(),
            )
            .await,
        path,
    );
    assert_eq!(body["status"], "DENIED");
    let executions = sfn.list_executions().state_machine_arn(&state_machine).send().await.unwrap();
    assert!(executions.executions().is_empty(), "recommend mode starts no approval execution");
    assert_eq!(DeploymentMode::from_vars(Vec::new()).unwrap(), DeploymentMode::Recommend, "unset is recommend");
}

#[tokio::test]
async fn unknown_operations_and_malformed_events_get_well_formed_errors() {
    let moto = moto().await;
    let config = moto.sdk_config("ap-southeast-2").await;
    let starter_arn = "arn:aws:states:ap-southeast-2:123456789012:stateMachine:none";
    let tools = Tools {
        read: AccountReadTools::own_account(ReadTools::from_sdk(
            &config,
            false,
            vec!["ap-southeast-2".into()],
            IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
        )),
        starter: SfnStarter::new(&config, starter_arn),
        policy: PolicyConfig::default(),
        mode: DeploymentMode::Act,
    };
    let (status, body) =
        unwrap(&tools.handle(event("DELETE", "/everything", json!([]), None), Utc::now()).await, "/everything");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no operation DELETE /everything"));
    let (status, _) = unwrap(
        &tools
            .handle(event("GET", "/underutilised-resources", json!([p("region", "mars-north-1")]), None), Utc::now())
            .await,
        "/underutilised-resources",
    );
    assert_eq!(status, 400);
    let (status, _) = unwrap(
        &tools
            .handle(
                event(
                    "GET",
                    "/instances/{instance_id}/utilisation",
                    json!([p("instance_id", "i-1"), p("days", "400")]),
                    None,
                ),
                Utc::now(),
            )
            .await,
        "/instances/{instance_id}/utilisation",
    );
    assert_eq!(status, 400);
    // The read-only tools (what Converse and `finops ask` hold) have no stop operation at all.
    let read_only = ReadTools::from_sdk(
        &config,
        false,
        vec!["ap-southeast-2".into()],
        IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14),
    );
    let path = "/resources/{resource_id}/stop";
    let (status, body) = unwrap(
        &read_only
            .handle(event("POST", path, json!([p("resource_id", "i-0123456789abcdef0")]), None), Utc::now())
            .await,
        path,
    );
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no read-only operation"), "{body}");
    let mut old = event("GET", "/savings-estimate", json!([]), None);
    old["messageVersion"] = json!("0.9");
    assert_eq!(unwrap(&tools.handle(old, Utc::now()).await, "/savings-estimate").0, 400);
    let garbage =
        tools.handle(json!({"actionGroup": "finops-tools", "apiPath": "/x", "parameters": "nope"}), Utc::now()).await;
    let (status, body) = unwrap(&garbage, "/x");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("malformed"));
}
