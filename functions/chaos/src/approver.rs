//! Simulated approvers: each proposal of the run's digest gets a behaviour drawn from the run's seed, and every
//! answer goes to the real approval page over HTTP (GET shows, POST decides), as a person's browser would send it. A
//! person whose POST gets "something went wrong, try again" (or "not ready yet") tries again a few times. Some are
//! not who the deployment allows: someone the digest was forwarded to, a Slack member nobody named, an owner trying
//! to turn their keep-it link into an approval.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime as AwsDateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use finops_testkit::approvals::TABLE;
use finops_testkit::moto::http;
use finops_testkit::slack::{click_payload, has_button, post_signed, LocalSlack, SIGNING_SECRET};
use finops_testkit::{aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_ec2};

use crate::invariants::Post;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    Approve,
    Deny,
    Snooze,
    NoAnswer,
    /// A mail scanner GETs every link first; then the person approves.
    ScannerThenApprove,
    /// Approve, twice (a double click).
    DoubleClick,
    /// Two approvers POST approve and deny at the same moment.
    RaceApproveDeny,
    /// Approve just around the moment the approval times out.
    AtTimeout,
    /// Approve after the run has ended.
    AfterRunEnds,
    /// Someone tags the instance production while it waits; then it is approved.
    ProductionThenApprove,
    /// The instance gets busy again while it waits; then it is approved.
    BusyThenApprove,
    /// Approve with the Slack message's button (a signed interaction).
    SlackApprove,
    /// Approve in Slack and deny by the email's link at the same moment: one decision wins, everywhere.
    SlackRaceEmailDeny,
    /// A click forged with another signing secret (refused), then a replay of a real click signed six minutes ago
    /// (refused); nobody answers after that.
    SlackForgedAndStale,
    /// The digest was forwarded: someone else types their own name and approves (it counts as the recipient's), and
    /// tries the link made out to themselves (refused: the signature covers the recipient).
    Forwarded,
    /// A channel member the deployment does not name clicks Approve (refused, and told); then the approver approves
    /// by email.
    SlackOutsiderThenApprove,
    /// The resource's owner tries to approve with their keep-it link (its action changed: refused; another decision
    /// posted to its page: refused), then keeps it. Without an owner, an approve.
    OwnerTriesToApprove,
}

impl Behaviour {
    const WEIGHTED: [(Behaviour, u32); 17] = [
        (Behaviour::Approve, 30),
        (Behaviour::Deny, 6),
        (Behaviour::Snooze, 6),
        (Behaviour::NoAnswer, 6),
        (Behaviour::ScannerThenApprove, 8),
        (Behaviour::DoubleClick, 8),
        (Behaviour::RaceApproveDeny, 8),
        (Behaviour::AtTimeout, 8),
        (Behaviour::AfterRunEnds, 6),
        (Behaviour::ProductionThenApprove, 7),
        (Behaviour::BusyThenApprove, 7),
        (Behaviour::SlackApprove, 8),
        (Behaviour::SlackRaceEmailDeny, 6),
        (Behaviour::SlackForgedAndStale, 4),
        (Behaviour::Forwarded, 6),
        (Behaviour::SlackOutsiderThenApprove, 5),
        (Behaviour::OwnerTriesToApprove, 6),
    ];

    pub fn draw(rng: &mut Rng) -> Self {
        let total: u32 = Self::WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut n = rng.below(u64::from(total)) as u32;
        for (b, w) in Self::WEIGHTED {
            if n < w {
                return b;
            }
            n -= w;
        }
        Behaviour::Approve
    }

    pub fn label(&self) -> &'static str {
        match self {
            Behaviour::Approve => "approve",
            Behaviour::Deny => "deny",
            Behaviour::Snooze => "snooze",
            Behaviour::NoAnswer => "no answer",
            Behaviour::ScannerThenApprove => "scanner GET, then approve",
            Behaviour::DoubleClick => "approve twice",
            Behaviour::RaceApproveDeny => "approve and deny at once",
            Behaviour::AtTimeout => "approve as it times out",
            Behaviour::AfterRunEnds => crate::invariants::AFTER_RUN_ENDED,
            Behaviour::ProductionThenApprove => "tagged production, then approve",
            Behaviour::BusyThenApprove => "busy again, then approve",
            Behaviour::SlackApprove => "approve in Slack",
            Behaviour::SlackRaceEmailDeny => "approve in Slack and deny by email at once",
            Behaviour::SlackForgedAndStale => "forged and stale Slack clicks",
            Behaviour::Forwarded => "forwarded: someone else approves",
            Behaviour::SlackOutsiderThenApprove => "a Slack member nobody named clicks, then approve",
            Behaviour::OwnerTriesToApprove => "the owner tries to approve with the keep-it link",
        }
    }
}

/// One proposal of the approver's digest: the resource, its approval, and the paths (with query) of its approve,
/// deny and snooze links on the approval page.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub instance_id: String,
    pub approval_id: String,
    pub approve: String,
    pub deny: String,
    pub snooze: String,
}

impl Email {
    /// An answer to this proposal, as the evidence records it.
    fn answer(&self, decision: &'static str, status: u16, behaviour: Behaviour) -> Post {
        Post {
            instance_id: self.instance_id.clone(),
            approval_id: self.approval_id.clone(),
            decision,
            status,
            behaviour: behaviour.label(),
        }
    }
}

/// The proposals of a digest, as its recipient's mail client shows them.
pub fn parse_digest(digest: &str) -> Vec<Email> {
    finops_testkit::mail::offers(digest)
        .into_iter()
        .map(|o| Email {
            instance_id: o.resource_id,
            approval_id: o.approval_id,
            approve: finops_testkit::mail::path_and_query(&o.approve).to_owned(),
            deny: finops_testkit::mail::path_and_query(&o.deny).to_owned(),
            snooze: finops_testkit::mail::path_and_query(&o.snooze).to_owned(),
        })
        .collect()
}

/// The approvers of one run.
pub struct Approvers {
    page_port: u16,
    moto_port: u16,
    timeout: Duration,
    rng: Rng,
    ec2: aws_sdk_ec2::Client,
    cw: aws_sdk_cloudwatch::Client,
    /// The approval records, read straight from moto (no faults): what a scanner's GETs may not change.
    ddb: aws_sdk_dynamodb::Client,
    pub posts: Arc<Mutex<Vec<Post>>>,
    pub emails: BTreeMap<String, u32>,
    pub behaviours: BTreeMap<&'static str, u32>,
    pub made_production: BTreeSet<String>,
    /// Instances a busy datapoint was written for before their approve.
    pub made_busy: BTreeSet<String>,
    /// Digests with no proposal the approvers could read.
    pub unreadable_emails: u32,
    /// Scanner GETs that changed a record (must stay empty).
    pub scanner_changes: Vec<String>,
    later: Vec<tokio::task::JoinHandle<()>>,
    after_end: Vec<Email>,
    slack: Arc<LocalSlack>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// POSTs one decision as the page's form does (the link says who decides); retries a few times on "try again"
/// (502) as a person would, and on "not ready yet" (503: the workflow does not wait for it yet).
async fn post(port: u16, path: String, decision: &'static str) -> u16 {
    post_as(port, path, format!("decision={decision}")).await
}

/// [`post`] with any form body (a forwarded email's reader may type a name).
async fn post_as(port: u16, path: String, body: String) -> u16 {
    for attempt in 0..12 {
        let status = http(port, "POST", &path, &body).await.map_or(0, |(s, _)| s);
        match status {
            503 if attempt < 11 => tokio::time::sleep(Duration::from_millis(250)).await,
            502 | 0 if attempt < 3 => tokio::time::sleep(Duration::from_millis(400)).await,
            502 | 0 => return 502,
            other => return other,
        }
    }
    503
}

/// The Slack user the chaos deployment names: the only one whose click decides.
pub const CHAOS_SLACK_USER: &str = "U0CHAOS";

/// The interaction of a click on Approve in the approval's Slack message by `user` (waits a moment for the message).
/// None when there is no message, or it no longer has the button (on a loaded machine the approval can time out
/// before the approver gets to it: the message then says so, and a person has nothing to click).
async fn slack_click(slack: &LocalSlack, email: &Email, user: &str) -> Option<String> {
    let (channel, ts, message) = slack.wait_for_message(&email.instance_id, Duration::from_secs(3)).await?;
    has_button(&message, "approve").then(|| click_payload(&channel, &ts, &message, "approve", user))
}

/// Posts a signed click to the callback as Slack does; its answer as the page's status would say it (Slack is
/// always answered 200: what happened is in the body), so the invariants read both the same way. Retries on 502.
async fn click_in_slack(port: u16, click: &str) -> u16 {
    let url = format!("http://127.0.0.1:{port}/slack/interactions");
    for _ in 0..4 {
        let (status, body) = post_signed(&url, click, SIGNING_SECRET, chrono::Utc::now().timestamp()).await;
        match (status, body.as_str()) {
            (200, "") => return 200,
            (200, b) if b.starts_with("Your decision is recorded") => return 202,
            (200, b) if b.contains("already decided") || b.starts_with("Someone answered") => return 409,
            (200, b) if b.contains("expired") || b.contains("timed out") => return 410,
            (200, b) if b.contains("not waiting for this yet") => tokio::time::sleep(Duration::from_millis(250)).await,
            (200, _) => return 400,
            (502 | 0, _) => tokio::time::sleep(Duration::from_millis(400)).await,
            (other, _) => return other,
        }
    }
    502
}

async fn get(port: u16, path: String) -> u16 {
    http(port, "GET", &path, "").await.map_or(0, |(s, _)| s)
}

impl Drop for Approvers {
    /// Answers still waiting for their moment end with the run (one the watchdog gave up on included).
    fn drop(&mut self) {
        self.later.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// The clients the approvers use beside the page: EC2 (a person tags an instance), CloudWatch (it gets busy), and
/// DynamoDB (to see what a scanner's GETs did to a record).
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub cw: aws_sdk_cloudwatch::Client,
    pub ddb: aws_sdk_dynamodb::Client,
}

impl Approvers {
    pub fn new(
        page_port: u16,
        moto_port: u16,
        timeout: Duration,
        rng: Rng,
        clients: Clients,
        slack: Arc<LocalSlack>,
    ) -> Self {
        let Clients { ec2, cw, ddb } = clients;
        Self {
            page_port,
            moto_port,
            timeout,
            rng,
            ec2,
            cw,
            ddb,
            posts: Arc::default(),
            emails: BTreeMap::new(),
            behaviours: BTreeMap::new(),
            made_production: BTreeSet::new(),
            made_busy: BTreeSet::new(),
            unreadable_emails: 0,
            scanner_changes: Vec::new(),
            later: Vec::new(),
            after_end: Vec::new(),
            slack,
        }
    }

    /// Counts the digest's proposals and answers each (some answers run on their own task: races, answers at the
    /// timeout).
    pub async fn on_digest(&mut self, digest: &str) {
        let proposals = parse_digest(digest);
        if proposals.is_empty() {
            self.unreadable_emails += 1;
            return;
        }
        for email in proposals {
            self.on_proposal(email).await;
        }
    }

    async fn on_proposal(&mut self, email: Email) {
        *self.emails.entry(email.instance_id.clone()).or_default() += 1;
        let behaviour = Behaviour::draw(&mut self.rng);
        *self.behaviours.entry(behaviour.label()).or_default() += 1;
        let (port, posts) = (self.page_port, self.posts.clone());
        let answered = email.clone();
        let record = move |posts: &Arc<Mutex<Vec<Post>>>, decision: &'static str, status: u16| {
            lock(posts).push(answered.answer(decision, status, behaviour))
        };
        let approve = email.approve.clone();
        match behaviour {
            Behaviour::NoAnswer => {}
            Behaviour::AfterRunEnds => self.after_end.push(email.clone()),
            Behaviour::Approve => record(&posts, "approve", post(port, approve, "approve").await),
            Behaviour::Deny => record(&posts, "deny", post(port, email.deny.clone(), "deny").await),
            Behaviour::Snooze => record(&posts, "snooze", post(port, email.snooze.clone(), "snooze").await),
            Behaviour::ScannerThenApprove => {
                let before = self.decision_of(&email.approval_id).await;
                for path in [&email.approve, &email.deny, &email.snooze] {
                    get(port, path.clone()).await;
                }
                let after = self.decision_of(&email.approval_id).await;
                if after != before {
                    self.scanner_changes.push(format!(
                        "GETs of {}'s links changed its record's decision from {before:?} to {after:?}",
                        email.instance_id
                    ));
                }
                record(&posts, "approve", post(port, approve, "approve").await);
            }
            Behaviour::DoubleClick => {
                record(&posts, "approve", post(port, approve.clone(), "approve").await);
                record(&posts, "approve", post(port, approve, "approve").await);
            }
            Behaviour::RaceApproveDeny => {
                let (a, d) = tokio::join!(post(port, approve, "approve"), post(port, email.deny.clone(), "deny"));
                record(&posts, "approve", a);
                record(&posts, "deny", d);
            }
            Behaviour::AtTimeout => {
                let wait = self.timeout.as_secs_f64() - 0.4 + self.rng.unit() * 0.8;
                self.later.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
                    let status = post(port, approve, "approve").await;
                    record(&posts, "approve", status);
                }));
            }
            Behaviour::ProductionThenApprove => {
                let tagged = self
                    .ec2
                    .create_tags()
                    .resources(&email.instance_id)
                    .tags(aws_sdk_ec2::types::Tag::builder().key("Environment").value("production").build())
                    .send()
                    .await;
                if tagged.is_ok() {
                    self.made_production.insert(email.instance_id.clone());
                }
                record(&posts, "approve", post(port, approve, "approve").await);
            }
            Behaviour::BusyThenApprove => {
                if busy_now(&self.cw, &email.instance_id).await {
                    self.made_busy.insert(email.instance_id.clone());
                }
                record(&posts, "approve", post(port, approve, "approve").await);
            }
            Behaviour::Forwarded => {
                // Someone the digest was forwarded to: their own link would be another signature (refused), and the
                // name they type is nobody's identity (the decision is the recipient's, as the record must say).
                let theirs = approve.replace("to=ops%40example.com", "to=mallory%40example.net");
                record(&posts, "approve", post(port, theirs, "approve").await);
                let body = "decision=approve&approver=mallory%40example.net".to_owned();
                record(&posts, "approve", post_as(port, approve, body).await);
            }
            Behaviour::SlackOutsiderThenApprove => {
                if let Some(click) = slack_click(&self.slack, &email, "U0OUTSIDER").await {
                    record(&posts, "approve", click_in_slack(port, &click).await);
                }
                record(&posts, "approve", post(port, approve, "approve").await);
            }
            Behaviour::OwnerTriesToApprove => {
                let Some(keep) = owner_keep_link(self.moto_port, &email.instance_id).await else {
                    *self.behaviours.entry("(no owner told: approved)").or_default() += 1;
                    record(&posts, "approve", post(port, approve, "approve").await);
                    return;
                };
                // The keep-it link made into an approval, then another decision posted to its page: both refused.
                let made_approve = keep.replace("action=owner-snooze", "action=approve");
                record(&posts, "approve", post(port, made_approve, "approve").await);
                record(&posts, "approve", post(port, keep.clone(), "approve").await);
                // What the link is for: keep it (a snooze, recorded as the owner's).
                record(&posts, "owner-snooze", post(port, keep, "owner-snooze").await);
            }
            Behaviour::SlackApprove | Behaviour::SlackRaceEmailDeny | Behaviour::SlackForgedAndStale => {
                // Posted by the same step as the digest; under faults it may never be (email only).
                let Some(click) = slack_click(&self.slack, &email, CHAOS_SLACK_USER).await else {
                    *self.behaviours.entry("(no Slack button to click: approved by email)").or_default() += 1;
                    record(&posts, "approve", post(port, approve, "approve").await);
                    return;
                };
                match behaviour {
                    Behaviour::SlackApprove => record(&posts, "approve", click_in_slack(port, &click).await),
                    Behaviour::SlackRaceEmailDeny => {
                        let (a, d) = tokio::join!(click_in_slack(port, &click), post(port, email.deny.clone(), "deny"));
                        record(&posts, "approve", a);
                        record(&posts, "deny", d);
                    }
                    _ => {
                        let url = format!("http://127.0.0.1:{port}/slack/interactions");
                        let now = chrono::Utc::now().timestamp();
                        let (forged, _) = post_signed(&url, &click, "not-the-apps-signing-secret-0123", now).await;
                        record(&posts, "approve", forged);
                        let (stale, _) = post_signed(&url, &click, SIGNING_SECRET, now - 360).await;
                        record(&posts, "approve", stale);
                    }
                }
            }
        }
    }

    /// What an approval record says was decided, by whom and when (none of it before anyone POSTs).
    async fn decision_of(&self, approval_id: &str) -> [Option<String>; 3] {
        let key = aws_sdk_dynamodb::types::AttributeValue::S(approval_id.to_owned());
        let item = self.ddb.get_item().table_name(TABLE).key("approvalId", key).send().await;
        let item = item.expect("read an approval record from moto").item.unwrap_or_default();
        ["decision", "approver", "decidedAt"].map(|k| item.get(k).and_then(|v| v.as_s().ok()).cloned())
    }

    /// Waits for the answers still on their way, then sends the ones meant for after the run.
    pub async fn after_run(&mut self) {
        for task in self.later.drain(..) {
            let _ = task.await;
        }
        for email in self.after_end.drain(..) {
            let status = post(self.page_port, email.approve.clone(), "approve").await;
            lock(&self.posts).push(email.answer("approve", status, Behaviour::AfterRunEnds));
        }
    }
}

/// The keep-it link the owner of `resource_id` was mailed (SES, as moto kept it), if an owner was told: its path and
/// query.
async fn owner_keep_link(moto_port: u16, resource_id: &str) -> Option<String> {
    // Unreadable (moto's data endpoint failing): as if no owner was told; the behaviour then approves by email.
    let sent = finops_testkit::moto::try_ses_sent(moto_port).await.ok()?;
    sent.iter()
        .flat_map(|m| finops_testkit::mail::keep_links(&m.body))
        .find(|(id, _)| id == resource_id)
        .map(|(_, url)| finops_testkit::mail::path_and_query(&url).to_owned())
}

/// A busy datapoint from a few minutes ago, today (the actions step measures again from the start of the day the
/// scan's window ended): what its re-measure must see before a stop (CPU), or before a volume's deletion (its I/O:
/// it was attached and used again). Whether CloudWatch took it.
async fn busy_now(cw: &aws_sdk_cloudwatch::Client, resource_id: &str) -> bool {
    let now = chrono::Utc::now().timestamp();
    let at = AwsDateTime::from_secs((now - 180).max(now - now.rem_euclid(86_400)));
    let (namespace, metric, dimension) = if resource_id.starts_with("vol-") {
        ("AWS/EBS", "VolumeReadOps", "VolumeId")
    } else {
        ("AWS/EC2", "CPUUtilization", "InstanceId")
    };
    cw.put_metric_data()
        .namespace(namespace)
        .metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(Dimension::builder().name(dimension).value(resource_id).build())
                .timestamp(at)
                .unit(StandardUnit::Percent)
                .statistic_values(
                    StatisticSet::builder().sample_count(1.0).sum(95.0).minimum(95.0).maximum(95.0).build(),
                )
                .build(),
        )
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_gives_each_proposal_and_its_three_links() {
        let digest = "This email was sent to ops@example.com.\n\n=== 1 of 1: snapshot and stop i-0abc ===\n\
                     Instance:      i-0abc in ap-southeast-2\n\
                     \x20 Approve (snapshot first, then stop): http://127.0.0.1:9/approvals/0123?action=approve&to=x&exp=1&sig=a\n\
                     \x20 Deny:                                http://127.0.0.1:9/approvals/0123?action=deny&to=x&exp=1&sig=b\n\
                     \x20 Snooze 7 days:                       http://127.0.0.1:9/approvals/0123?action=snooze&to=x&exp=1&sig=c\n";
        let proposals = parse_digest(digest);
        assert_eq!(proposals.len(), 1);
        let e = &proposals[0];
        assert_eq!((e.instance_id.as_str(), e.approval_id.as_str()), ("i-0abc", "0123"));
        assert_eq!(e.deny, "/approvals/0123?action=deny&to=x&exp=1&sig=b");
        assert!(parse_digest("no links here").is_empty());
    }

    #[test]
    fn every_behaviour_is_drawn() {
        let mut rng = Rng::new(7);
        let drawn: BTreeSet<Behaviour> = (0..2_000).map(|_| Behaviour::draw(&mut rng)).collect();
        assert_eq!(drawn.len(), Behaviour::WEIGHTED.len());
    }
}
