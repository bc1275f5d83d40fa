//! The approvers' mail: SNS, one message per recipient. The approvals topic's email subscriptions each filter on
//! their own address (`{"recipient": ["<address>"]}`, set by the CDK app, and only configured approvers may
//! subscribe), so a message published with one `recipient` reaches that person only, with links signed for them.

use std::future::Future;

use aws_config::SdkConfig;
use finops_aws::FinopsError;

/// Sends one message to one recipient. `Err(FinopsError::Throttled)` means nothing was sent (the service refused
/// the request); any other error means it may have been (an answer lost after the service took the message).
pub trait Notifier: Send + Sync {
    fn publish(
        &self,
        recipient: &str,
        subject: &str,
        body: &str,
    ) -> impl Future<Output = Result<(), FinopsError>> + Send;
}

/// The message attribute the approval topic's subscriptions filter on: the one address a message is for, matched by
/// that address's filter policy `{"recipient": ["<address>"]}`.
pub const RECIPIENT_ATTRIBUTE: &str = "recipient";

pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

/// Attempts of a throttled publish (SNS refused it, so trying again cannot send it twice).
const PUBLISH_ATTEMPTS: u32 = 4;

impl SnsNotifier {
    /// Each message goes out at most once: the SDK's own retries would publish again after an answer that was lost (a
    /// timeout or a 5xx after SNS took the message: two emails, found by `make chaos`), so they are off, and only a
    /// throttled publish is tried again, by [`Notifier::publish`].
    pub fn new(config: &SdkConfig, topic_arn: impl Into<String>) -> Self {
        let conf = aws_sdk_sns::config::Builder::from(config)
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
            .build();
        Self { client: aws_sdk_sns::Client::from_conf(conf), topic_arn: topic_arn.into() }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, recipient: &str, subject: &str, body: &str) -> Result<(), FinopsError> {
        let recipient = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(finops_core::approval::normalized_address(recipient))
            .build()
            .expect("data type is set");
        // SNS subjects: ASCII, no newlines, at most 100 characters.
        let subject: String =
            subject.chars().map(|c| if c.is_ascii() && !c.is_control() { c } else { '?' }).take(100).collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(&subject)
                .message(body)
                .message_attributes(RECIPIENT_ATTRIBUTE, recipient.clone())
                .send()
                .await;
            match sent.map_err(|e| FinopsError::from_sdk("SNS", "Publish", e)) {
                Ok(_) => return Ok(()),
                Err(FinopsError::Throttled { .. }) if attempt < PUBLISH_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Mail in memory: every message with its recipient (tests of the steps that send).
#[derive(Default)]
pub struct MemoryMail {
    pub sent: std::sync::Mutex<Vec<SentMessage>>,
    /// What the next publishes do, in order (then they send).
    pub next: std::sync::Mutex<Vec<NextPublish>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

/// What a scripted publish does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextPublish {
    /// SNS refuses it (throttled after the retries): nothing is sent.
    Refuse,
    /// SNS takes it and the answer is lost (a timeout, a 5xx after the fact).
    LoseAnswer,
}

impl MemoryMail {
    /// The messages `recipient` got.
    pub fn to(&self, recipient: &str) -> Vec<SentMessage> {
        self.sent.lock().unwrap().iter().filter(|m| m.recipient == recipient).cloned().collect()
    }
}

impl Notifier for MemoryMail {
    async fn publish(&self, recipient: &str, subject: &str, body: &str) -> Result<(), FinopsError> {
        let next = {
            let mut next = self.next.lock().unwrap();
            (!next.is_empty()).then(|| next.remove(0))
        };
        if next == Some(NextPublish::Refuse) {
            return Err(FinopsError::Throttled { service: "SNS", operation: "Publish", message: "slow down".into() });
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push(SentMessage { recipient: recipient.to_owned(), subject: subject.to_owned(), body: body.to_owned() });
        if next == Some(NextPublish::LoseAnswer) {
            return Err(FinopsError::Transient { service: "SNS", operation: "Publish", message: "timeout".into() });
        }
        Ok(())
    }
}
