//! The approval record: one proposal's approval (or one undo), who may decide it, and the decision once made. Only the
//! request step creates records (with their audience); only the callback writes a decision; the acting steps read.

use finops_core::approval::{normalized_address, ApprovalAction};
use finops_core::organization::Audience;
use finops_core::policy::Proposal;
use serde::{Deserialize, Serialize};

use crate::slack::SlackMessageRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Decided,
    /// Step Functions no longer waits for it (timed out); kept for the audit trail.
    Expired,
}

impl ApprovalState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Decided => "decided",
            Self::Expired => "expired",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Decided, Self::Expired].into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub approval_id: String,
    /// The task token the approval map's wait attached (none until then: a decision waits for it). Never leaves this
    /// record: not in an email, a URL or a page.
    pub task_token: Option<String>,
    pub proposal: Proposal,
    pub run_id: String,
    pub execution_arn: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub state: ApprovalState,
    pub decision: Option<ApprovalAction>,
    /// Who decided: the recipient of the link that was followed (an address), or `slack:<user id>/<name>` for a
    /// click; the only identity that leaves this table (EC2 tags, the task output).
    pub approver: Option<String>,
    pub decided_at: Option<String>,
    /// Where the decision came from, for the audit trail only: never shown on a page, never written to a tag.
    #[serde(default)]
    pub source_ip: Option<String>,
    /// How the decision was made: [`DECIDED_VIA_POST`] or [`DECIDED_VIA_SLACK`]. The acting step requires one.
    #[serde(default)]
    pub decided_via: Option<String>,
    /// A decision that arrived after the workflow stopped waiting: kept for the audit trail, never a decision.
    #[serde(default)]
    pub late_answer: Option<String>,
    /// Who was asked and who may decide, as the deployment's configuration and the account's live facts said when
    /// the request step created the record. Nothing else writes it.
    pub audience: Audience,
    /// Set on an undo record only: what was done, which the record's one decision ([`ApprovalAction::Undo`]) undoes.
    /// An undo record never authorises the action itself, and a proposal's approval never an undo.
    #[serde(default)]
    pub undo: Option<UndoOf>,
    /// Where the approval was also asked in Slack (the workspace, channel and message): a click decides only there.
    #[serde(default)]
    pub slack: Option<SlackMessageRef>,
    /// Which notice its owner got (`asked`, then `told`), where the resource's owner tag is an address.
    #[serde(default)]
    pub owner_notice: Option<String>,
}

/// What an undo record offers to undo: the action its proposal's approval authorised, and when it was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UndoOf {
    /// The approval that authorised the action.
    pub approval_id: String,
    pub approved_by: Option<String>,
    /// RFC 3339.
    pub acted_at: String,
    /// A stop's: how it left the instance. An undo starts it only while it is still so (none: no start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_as: Option<finops_core::undo::StoppedAs>,
}

/// The task token of an undo record: nothing waits on an undo (a confirmed undo starts its own execution).
pub const NO_TASK: &str = "none: an undo record";

/// A decision made by POST on the confirmation page of the link that was followed (the link's recipient decides).
pub const DECIDED_VIA_POST: &str = "POST";

/// A decision made by a click on the approval's own Slack message (its workspace, channel and ts), by a Slack user
/// the audience names, with Slack's signature verified and the button's signed link checked.
pub const DECIDED_VIA_SLACK: &str = "slack-signed-click";

/// A decision as the callback records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'a> {
    pub action: ApprovalAction,
    pub approver: &'a str,
    pub source_ip: Option<&'a str>,
    pub decided_at: &'a str,
    pub via: &'a str,
}

/// Where a Slack click was made and by whom, as Slack signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlackClick<'a> {
    pub team: &'a str,
    pub channel: &'a str,
    pub message_ts: &'a str,
    pub user: &'a str,
}

use finops_core::slack::slack_user_of;

impl ApprovalRecord {
    /// "approve by ana@example.com at 2026-12-02T09:00:00Z": who decided what and when, for pages, Slack and the late
    /// answer an expired record keeps. None while undecided.
    pub fn decision_summary(&self) -> Option<String> {
        self.decision.map(|d| {
            format!(
                "{d} by {} at {}",
                self.approver.as_deref().unwrap_or("someone"),
                self.decided_at.as_deref().unwrap_or("?")
            )
        })
    }

    /// A record waiting for its audience's decision, as the request step creates it (the wait's task token comes
    /// later).
    pub fn pending(
        approval_id: impl Into<String>,
        proposal: Proposal,
        run_id: impl Into<String>,
        execution_arn: impl Into<String>,
        audience: Audience,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        Self {
            approval_id: approval_id.into(),
            task_token: None,
            proposal,
            run_id: run_id.into(),
            execution_arn: execution_arn.into(),
            created_at,
            expires_at,
            state: ApprovalState::Pending,
            decision: None,
            approver: None,
            decided_at: None,
            source_ip: None,
            decided_via: None,
            late_answer: None,
            audience,
            undo: None,
            slack: None,
            owner_notice: None,
        }
    }

    /// The same record with the wait's task token (a test's setup; the table attaches it with
    /// [`crate::ApprovalRecords::attach_task`]).
    pub fn waiting_on(mut self, task_token: impl Into<String>) -> Self {
        self.task_token = Some(task_token.into());
        self
    }

    /// The undo record of what `approval` authorised and the actions step did at `acted_at`: the same proposal, run
    /// and audience, pending its one decision until `expires_at`.
    pub fn undo_of(
        approval: &ApprovalRecord,
        undo_id: impl Into<String>,
        acted_at: impl Into<String>,
        stopped_as: Option<finops_core::undo::StoppedAs>,
        created_at: i64,
        expires_at: i64,
    ) -> Self {
        let mut record = Self::pending(
            undo_id,
            approval.proposal.clone(),
            approval.run_id.clone(),
            approval.execution_arn.clone(),
            approval.audience.clone(),
            created_at,
            expires_at,
        )
        .waiting_on(NO_TASK);
        record.undo = Some(UndoOf {
            approval_id: approval.approval_id.clone(),
            approved_by: approval.approver.clone(),
            acted_at: acted_at.into(),
            stopped_as,
        });
        record
    }

    /// The same record once a person decided (what [`crate::ApprovalRecords::decide`] stores).
    pub fn decided(mut self, decision: &Decision<'_>) -> Self {
        self.state = ApprovalState::Decided;
        self.decision = Some(decision.action);
        self.approver = Some(decision.approver.to_owned());
        self.decided_at = Some(decision.decided_at.to_owned());
        self.source_ip = Some(decision.source_ip.unwrap_or("unknown").to_owned());
        self.decided_via = Some(decision.via.to_owned());
        self
    }

    /// The resource owner's address, where its owner tag is one (normalized).
    pub fn owner_address(&self) -> Option<String> {
        let owner = self.proposal.owner.as_deref()?;
        finops_core::approval::is_email_address(owner).then(|| normalized_address(owner))
    }

    /// Whether the recipient of a link may make `action` on this record by POST on the link's page: an approver of
    /// its audience for an approver's decision (or an undo, on an undo record), and the owner the notice went to
    /// for an owner's snooze (nothing else). `Err` says why not, for the page and the audit.
    pub fn may_decide(&self, action: ApprovalAction, recipient: &str) -> Result<(), String> {
        let recipient = normalized_address(recipient);
        let who = &self.audience.because;
        match action {
            ApprovalAction::Undo if self.undo.is_none() => Err("a proposal's approval is never undone".into()),
            ApprovalAction::Approve | ApprovalAction::Deny | ApprovalAction::Snooze | ApprovalAction::OwnerSnooze
                if self.undo.is_some() =>
            {
                Err("an undo record takes its undo only".into())
            }
            ApprovalAction::OwnerSnooze => match (self.owner_address(), &self.owner_notice) {
                (Some(owner), Some(_)) if owner == recipient => Ok(()),
                _ => Err(format!("{recipient} was not sent this resource's owner notice")),
            },
            _ if self.audience.allows(&recipient) => Ok(()),
            _ => Err(format!("{recipient} is not an approver of this resource ({who})")),
        }
    }

    /// Whether a Slack click may make `action` here: an approver's decision, on the approval's own message (the
    /// workspace, channel and ts recorded when it was posted), in its audience's channel, by a Slack user the
    /// audience names. `Err` says why not, for the clicker.
    pub fn may_decide_in_slack(&self, action: ApprovalAction, click: &SlackClick<'_>) -> Result<(), String> {
        let Some(asked) = &self.slack else { return Err("This approval was not asked in Slack.".into()) };
        if self.undo.is_some() || !ApprovalAction::APPROVER_DECISIONS.contains(&action) {
            return Err("Only an approver's approve, deny or snooze is decided in Slack.".into());
        }
        if asked.team != click.team || asked.channel != click.channel || asked.ts != click.message_ts {
            return Err("This is not the message this approval was asked in.".into());
        }
        if self.audience.slack_ask_channel() != Some(click.channel) {
            return Err(format!("Only the approvers of {} decide this approval.", self.audience.because));
        }
        if !self.audience.allows_slack_user(click.user) {
            return Err(format!(
                "You are not one of the approvers of {} named for Slack; nothing was changed.",
                self.audience.because
            ));
        }
        Ok(())
    }

    /// Whether the decision on record was made as the deployment allows: by POST on the page of a link sent to
    /// someone who may make it ([`ApprovalRecord::may_decide`]), or by a signed click on its own Slack message by a
    /// Slack user its audience names. The acting steps check it for themselves: `Err` says why not.
    pub fn decision_is_authentic(&self) -> Result<(), String> {
        let id = &self.approval_id;
        let approver = self.approver.as_deref().unwrap_or_default();
        let Some(decision) = self.decision else { return Err(format!("approval {id} has no decision")) };
        match self.decided_via.as_deref() {
            Some(DECIDED_VIA_POST) => {
                self.may_decide(decision, approver).map_err(|why| format!("approval {id}: {why}"))
            }
            Some(DECIDED_VIA_SLACK) => {
                let Some(asked) = &self.slack else {
                    return Err(format!("approval {id} was decided in Slack but never asked there"));
                };
                if !ApprovalAction::APPROVER_DECISIONS.contains(&decision) || self.undo.is_some() {
                    return Err(format!("approval {id}: a {decision} is never made in Slack"));
                }
                if self.audience.slack_ask_channel() != Some(asked.channel.as_str()) {
                    return Err(format!(
                        "approval {id} was decided in Slack channel {}, not the channel of its audience ({})",
                        asked.channel, self.audience.because
                    ));
                }
                match slack_user_of(approver) {
                    Some(user) if self.audience.allows_slack_user(user) => Ok(()),
                    _ => Err(format!(
                        "approval {id} was decided in Slack by {approver:?}, whom its audience does not name ({})",
                        self.audience.because
                    )),
                }
            }
            _ => Err(format!("approval {id} was not decided by POST on its confirmation page or a signed Slack click")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Proposal {
        serde_json::from_value(serde_json::json!({
            "resourceId": "i-0abc", "region": "eu-west-1", "resourceType": "t3.large", "action": "snapshot-and-stop",
            "confidence": 0.9, "justification": "idle", "backend": "rules", "priceSource": "embedded",
            "evidence": [], "volumeIds": [], "measuredUntil": "2026-11-28T00:00:00Z", "owner": "Raj@Example.com"
        }))
        .unwrap()
    }

    fn audience(slack_users: &[&str]) -> Audience {
        Audience {
            approvers: vec!["data@example.com".into(), "ops@example.com".into()],
            because: "account 111111111111".into(),
            slack_channel: Some("C0DATATEAM".into()),
            slack_users: slack_users.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn record() -> ApprovalRecord {
        ApprovalRecord::pending("a", proposal(), "run-1", "arn", audience(&["U0ALICE"]), 0, 10)
    }

    fn decided(record: ApprovalRecord, action: ApprovalAction, via: &str, approver: &str) -> ApprovalRecord {
        record.decided(&Decision { action, approver, source_ip: None, decided_at: "2026-11-30T10:00:00Z", via })
    }

    /// The words the table holds (its `state` attribute, which conditional writes compare) and the summary pages and
    /// Slack show (found by the mutation run: only other crates' tests read them).
    #[test]
    fn states_are_stored_as_their_words_and_a_decision_is_summarised_as_who_what_when() {
        for (state, word) in [
            (ApprovalState::Pending, "pending"),
            (ApprovalState::Decided, "decided"),
            (ApprovalState::Expired, "expired"),
        ] {
            assert_eq!(state.as_str(), word);
            assert_eq!(ApprovalState::parse(word), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), word, "the record's JSON says the same");
        }
        assert_eq!(ApprovalState::parse("Decided"), None);
        assert_eq!(record().decision_summary(), None, "undecided");
        let r = decided(record(), ApprovalAction::Deny, "POST", "data@example.com");
        assert_eq!(r.decision_summary().as_deref(), Some("deny by data@example.com at 2026-11-30T10:00:00Z"));
    }

    #[test]
    fn only_the_audience_decides_by_its_links_and_the_owner_snoozes_only_once_told() {
        let r = record();
        for action in ApprovalAction::APPROVER_DECISIONS {
            assert_eq!(r.may_decide(action, "DATA@example.com"), Ok(()), "{action}");
            assert!(r.may_decide(action, "mallory@example.com").is_err(), "{action}");
            assert!(r.may_decide(action, "raj@example.com").is_err(), "the owner is no approver: {action}");
        }
        assert!(r.may_decide(ApprovalAction::Undo, "data@example.com").is_err(), "a proposal is never undone");
        assert!(r.may_decide(ApprovalAction::OwnerSnooze, "raj@example.com").is_err(), "not told yet");
        let mut told = r.clone();
        told.owner_notice = Some("asked".into());
        assert_eq!(told.may_decide(ApprovalAction::OwnerSnooze, "raj@example.com"), Ok(()));
        assert!(told.may_decide(ApprovalAction::OwnerSnooze, "data@example.com").is_err(), "the owner's link only");
        // An undo record takes an undo by its audience, and nothing else.
        let undo = ApprovalRecord::undo_of(
            &decided(r, ApprovalAction::Approve, DECIDED_VIA_POST, "ops@example.com"),
            "u",
            "t",
            None,
            0,
            10,
        );
        assert_eq!(undo.may_decide(ApprovalAction::Undo, "ops@example.com"), Ok(()));
        assert!(undo.may_decide(ApprovalAction::Undo, "mallory@example.com").is_err());
        assert!(undo.may_decide(ApprovalAction::Approve, "ops@example.com").is_err());
    }

    #[test]
    fn a_decision_is_authentic_only_as_the_deployment_allows_it() {
        let r = record();
        assert_eq!(
            decided(r.clone(), ApprovalAction::Approve, DECIDED_VIA_POST, "ops@example.com").decision_is_authentic(),
            Ok(())
        );
        assert!(decided(r.clone(), ApprovalAction::Approve, "GET", "ops@example.com").decision_is_authentic().is_err());
        // A record that says someone else approved, however it got there, is not authentic.
        for (action, who) in [
            (ApprovalAction::Approve, "mallory@example.com"),
            (ApprovalAction::Approve, "raj@example.com"),
            (ApprovalAction::OwnerSnooze, "raj@example.com"),
            (ApprovalAction::Undo, "ops@example.com"),
        ] {
            let forged = decided(r.clone(), action, DECIDED_VIA_POST, who);
            assert!(forged.decision_is_authentic().is_err(), "{action} by {who}");
        }
        let mut told = r.clone();
        told.owner_notice = Some("asked".into());
        assert_eq!(
            decided(told.clone(), ApprovalAction::OwnerSnooze, DECIDED_VIA_POST, "raj@example.com")
                .decision_is_authentic(),
            Ok(())
        );
        assert!(decided(told, ApprovalAction::Approve, DECIDED_VIA_POST, "raj@example.com")
            .decision_is_authentic()
            .is_err());
        // Slack: asked there, in the audience's channel, by a user it names.
        let alice = finops_core::slack::slack_approver("U0ALICE", "alice");
        let mut slack = decided(r.clone(), ApprovalAction::Approve, DECIDED_VIA_SLACK, &alice);
        assert!(slack.decision_is_authentic().unwrap_err().contains("never asked there"));
        slack.slack = Some(SlackMessageRef { team: "T0FINOPS".into(), channel: "C0DATATEAM".into(), ts: "1.2".into() });
        assert_eq!(slack.decision_is_authentic(), Ok(()));
        let mut elsewhere = slack.clone();
        elsewhere.slack.as_mut().unwrap().channel = "C0OTHER".into();
        assert!(elsewhere.decision_is_authentic().unwrap_err().contains("not the channel of its audience"));
        let mut mallory = slack.clone();
        mallory.approver = Some(finops_core::slack::slack_approver("U0MALLORY", "alice"));
        assert!(mallory.decision_is_authentic().unwrap_err().contains("does not name"));
        let mut snooze_by_owner = slack;
        snooze_by_owner.decision = Some(ApprovalAction::OwnerSnooze);
        assert!(snooze_by_owner.decision_is_authentic().is_err());
    }

    #[test]
    fn a_slack_click_decides_only_on_its_own_message_by_a_named_user() {
        let mut r = record();
        let click =
            SlackClick { team: "T0FINOPS", channel: "C0DATATEAM", message_ts: "1700000000.000001", user: "U0ALICE" };
        assert!(r.may_decide_in_slack(ApprovalAction::Approve, &click).is_err(), "not asked in Slack");
        r.slack = Some(SlackMessageRef {
            team: "T0FINOPS".into(),
            channel: "C0DATATEAM".into(),
            ts: "1700000000.000001".into(),
        });
        assert_eq!(r.may_decide_in_slack(ApprovalAction::Approve, &click), Ok(()));
        for (what, other) in [
            ("another workspace", SlackClick { team: "T0EVIL", ..click }),
            ("another channel", SlackClick { channel: "C0OTHER", ..click }),
            ("a made-up message", SlackClick { message_ts: "1700000000.999999", ..click }),
            ("a member nobody named", SlackClick { user: "U0MALLORY", ..click }),
        ] {
            assert!(r.may_decide_in_slack(ApprovalAction::Approve, &other).is_err(), "{what}");
        }
        assert!(r.may_decide_in_slack(ApprovalAction::OwnerSnooze, &click).is_err());
        assert!(r.may_decide_in_slack(ApprovalAction::Undo, &click).is_err());
        assert_eq!(slack_user_of("slack:U0ALICE/alice"), Some("U0ALICE"));
        assert_eq!(slack_user_of("ops@example.com"), None);
    }
}
