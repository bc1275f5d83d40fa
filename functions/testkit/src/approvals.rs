//! The approval plumbing on moto: table, topic with an SQS subscription (raw delivery) to read the emails, the
//! signing secret, and a state machine that really waits on a task token.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

use crate::moto::MotoSession;

pub const TABLE: &str = "finops-approvals";
pub const SECRET: &str = "finops/approval-signing-key";
pub const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef0123456789";

pub struct ApprovalPlumbing {
    pub topic_arn: String,
    pub email_queue_url: String,
    pub token_queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub sfn: aws_sdk_sfn::Client,
}

pub async fn approval_plumbing(moto: &MotoSession, config: &SdkConfig) -> ApprovalPlumbing {
    approval_plumbing_on(moto.port, config).await
}

/// [`approval_plumbing`] for any moto server, by port.
pub async fn approval_plumbing_on(moto_port: u16, config: &SdkConfig) -> ApprovalPlumbing {
    // The interpreter must be on before state machines are created.
    let (status, body) = crate::moto::http(
        moto_port,
        "POST",
        "/moto-api/config",
        r#"{"stepfunctions": {"execute_state_machine": true}}"#,
    )
    .await
    .expect("moto config");
    assert!((200..300).contains(&status), "{status}: {body}");
    let ddb = aws_sdk_dynamodb::Client::new(config);
    ddb.create_table()
        .table_name(TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("approvalId")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("approvalId").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    let sns = aws_sdk_sns::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let topic_arn = sns.create_topic().name("finops-approvals").send().await.unwrap().topic_arn().unwrap().to_owned();
    let email_queue_url =
        sqs.create_queue().queue_name("approval-emails").send().await.unwrap().queue_url().unwrap().to_owned();
    let email_queue_arn = queue_arn(&sqs, &email_queue_url).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(email_queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    let token_queue_url =
        sqs.create_queue().queue_name("task-tokens").send().await.unwrap().queue_url().unwrap().to_owned();
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(SECRET)
        .secret_string(SIGNING_KEY)
        .send()
        .await
        .unwrap();
    ApprovalPlumbing { topic_arn, email_queue_url, token_queue_url, sqs, sfn: aws_sdk_sfn::Client::new(config) }
}

impl ApprovalPlumbing {
    /// A state machine whose one task waits on a task token delivered through SQS (moto's interpreter runs it for
    /// real), then branches on the decision the approval callback sends; a timeout means no action.
    pub async fn waiting_state_machine(&self, name: &str, timeout_seconds: u32) -> String {
        let definition = serde_json::json!({
            "StartAt": "RequestApproval",
            "States": {
                "RequestApproval": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": self.token_queue_url, "MessageBody": {"taskToken.$": "$$.Task.Token", "executionArn.$": "$$.Execution.Id"}},
                    "TimeoutSeconds": timeout_seconds,
                    "ResultPath": "$.approval",
                    "Catch": [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.timeout", "Next": "NoAction"}],
                    "Next": "Decide"
                },
                "Decide": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.approval.decision", "StringEquals": "approve", "Next": "Approved"},
                        {"Variable": "$.approval.decision", "StringEquals": "snooze", "Next": "Snoozed"}
                    ],
                    "Default": "Denied"
                },
                "Approved": {"Type": "Pass", "End": true},
                "Snoozed": {"Type": "Pass", "End": true},
                "Denied": {"Type": "Pass", "End": true},
                "NoAction": {"Type": "Pass", "End": true}
            }
        });
        self.sfn
            .create_state_machine()
            .name(name)
            .definition(definition.to_string())
            .role_arn("arn:aws:iam::123456789012:role/finops-states")
            .send()
            .await
            .expect("create state machine")
            .state_machine_arn()
            .to_owned()
    }

    /// Starts an execution and returns (execution ARN, the task token it waits on).
    pub async fn start_waiting(&self, state_machine_arn: &str, name: &str) -> (String, String) {
        let execution_arn = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input("{}")
            .send()
            .await
            .unwrap()
            .execution_arn()
            .to_owned();
        for _ in 0..100 {
            let out =
                self.sqs.receive_message().queue_url(&self.token_queue_url).wait_time_seconds(1).send().await.unwrap();
            if let Some(m) = out.messages().first() {
                let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
                self.sqs
                    .delete_message()
                    .queue_url(&self.token_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                return (execution_arn, body["taskToken"].as_str().unwrap().to_owned());
            }
        }
        panic!("no task token arrived for {name}");
    }

    /// Waits for the execution to leave RUNNING; returns (status, the names of the states it entered).
    pub async fn finished(&self, execution_arn: &str) -> (String, Vec<String>) {
        for _ in 0..120 {
            let d = self.sfn.describe_execution().execution_arn(execution_arn).send().await.unwrap();
            if d.status().as_str() != "RUNNING" {
                return (d.status().as_str().to_owned(), self.entered_states(execution_arn).await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{execution_arn} still running");
    }

    pub async fn status(&self, execution_arn: &str) -> String {
        self.sfn.describe_execution().execution_arn(execution_arn).send().await.unwrap().status().as_str().to_owned()
    }

    pub async fn entered_states(&self, execution_arn: &str) -> Vec<String> {
        // Every page of the history: a count of them is compared with what a run says it entered.
        let mut entered = Vec::new();
        let mut pages = self.sfn.get_execution_history().execution_arn(execution_arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap();
            entered.extend(
                page.events().iter().filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned())),
            );
        }
        entered
    }

    /// The next approval email from the topic's SQS subscription.
    pub async fn next_email(&self) -> String {
        for _ in 0..30 {
            let out =
                self.sqs.receive_message().queue_url(&self.email_queue_url).wait_time_seconds(1).send().await.unwrap();
            if let Some(m) = out.messages().first() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.email_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                return m.body().unwrap().to_owned();
            }
        }
        panic!("no approval email arrived");
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let attribute = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let out = sqs.get_queue_attributes().queue_url(url).attribute_names(attribute.clone()).send().await.unwrap();
    out.attributes().unwrap()[&attribute].clone()
}

impl ApprovalPlumbing {
    /// One approver's mailbox: a queue subscribed to the approvals topic with the filter policy the CDK app gives that
    /// address's email subscription (`{"recipient": [address]}`), so it gets that person's messages only. Its URL.
    pub async fn subscribe_approver(&self, sns: &aws_sdk_sns::Client, address: &str) -> String {
        let name = format!("mailbox-{}", address.replace(['@', '.'], "-"));
        let url = self.sqs.create_queue().queue_name(&name).send().await.unwrap().queue_url().unwrap().to_owned();
        let arn = queue_arn(&self.sqs, &url).await;
        sns.subscribe()
            .topic_arn(&self.topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true")
            .attributes("FilterPolicy", serde_json::json!({"recipient": [address.to_ascii_lowercase()]}).to_string())
            .send()
            .await
            .unwrap();
        url
    }

    /// Every email waiting in a mailbox queue (waits up to `wait` for the first), removed from it.
    pub async fn drain(&self, queue_url: &str, wait: std::time::Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + wait;
        let mut emails = Vec::new();
        loop {
            let out = self.sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await.unwrap();
            for m in out.messages() {
                self.sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
                emails.push(m.body().unwrap_or_default().to_owned());
            }
            if out.messages().is_empty() && (!emails.is_empty() || std::time::Instant::now() >= deadline) {
                return emails;
            }
            if out.messages().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }

    /// The next approval email if one is waiting (no long poll).
    pub async fn try_next_email(&self) -> Option<String> {
        let out = self.sqs.receive_message().queue_url(&self.email_queue_url).send().await.ok()?;
        let m = out.messages().first()?;
        self.sqs
            .delete_message()
            .queue_url(&self.email_queue_url)
            .receipt_handle(m.receipt_handle()?)
            .send()
            .await
            .ok()?;
        m.body().map(str::to_owned)
    }
}
