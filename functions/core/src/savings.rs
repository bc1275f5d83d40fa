//! Savings proven after the fact. Every action the actions step took is recorded with its estimate ([`ActedOn`], in
//! the run's outcomes and so in the ledger); each later run checks that what was stopped, deleted or released is
//! still so ([`StillHolds`]) and accrues the realized saving: the days it has held since it was done, times the
//! estimate's daily rate. A resource found changed (restarted, say) stops accruing at the last run that saw it hold.
//! Pure: the savings step reads the ledger and the resources' live state, and hands them here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::organization::AccountRef;
use crate::policy::ProposedAction;

/// Days in an average month: a monthly estimate accrues at 1/30.44 a day.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// What the actions step did to one resource, and what it was estimated to save: recorded with the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActedOn {
    pub resource_id: String,
    pub action: ProposedAction,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountRef>,
    /// The proposal's estimate; none when the price was unknown (then nothing accrues).
    #[serde(default)]
    pub monthly_saving_usd: Option<f64>,
    pub acted_at: DateTime<Utc>,
    /// A stop's: how it left the instance, which an undo of it checks before starting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_as: Option<crate::undo::StoppedAs>,
}

impl ActedOn {
    /// The kind, as the report groups it.
    pub fn kind(&self) -> &'static str {
        match self.action {
            ProposedAction::SnapshotAndStop => "instance",
            ProposedAction::SnapshotAndDelete => "ebs-volume",
            ProposedAction::Release => "elastic-ip",
            ProposedAction::SnapshotAndDeleteVolumes => "stopped-instance",
        }
    }

    /// The account, as the report groups it.
    pub fn account_label(&self) -> String {
        self.account.as_ref().map_or_else(|| "this account".to_owned(), ToString::to_string)
    }
}

/// Whether what was done still holds now, as the live resource says.
#[derive(Debug, Clone, PartialEq)]
pub enum StillHolds {
    /// Still stopped by that run, still deleted, still released.
    Yes,
    /// Changed since: why (started again, ...). It no longer saves.
    No(String),
    /// Could not be read (an account not reachable, say): nothing accrues this time, and nothing is concluded.
    Unknown(String),
    /// A person undid it with its undo link at this moment: it saved until then, and nothing since.
    Undone(DateTime<Utc>),
}

/// One acted-on resource as this run finds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Realized {
    /// The run that acted.
    pub run_id: String,
    #[serde(flatten)]
    pub acted: ActedOn,
    pub holds: bool,
    pub detail: String,
    /// The last moment a run saw it hold (now, when it holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_until: Option<DateTime<Utc>>,
    /// Days from the action to `confirmed_until`.
    pub days: f64,
    pub realized_usd: f64,
    /// Undone by its undo link.
    #[serde(default)]
    pub undone: bool,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The realized saving of `acted` (by run `run_id`): held until now if it still holds, else until the last moment an
/// earlier run saw it hold (`previously_confirmed`), else nothing.
pub fn accrue(
    run_id: &str,
    acted: &ActedOn,
    state: &StillHolds,
    previously_confirmed: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Realized {
    let (holds, detail, confirmed_until) = match state {
        StillHolds::Yes => (true, "still holds".to_owned(), Some(now)),
        StillHolds::No(why) => (false, format!("no longer saving: {why}"), previously_confirmed),
        StillHolds::Unknown(why) => (false, format!("not checked: {why}"), previously_confirmed),
        StillHolds::Undone(at) => (
            false,
            format!("undone at {} (its undo link)", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            Some(*at),
        ),
    };
    let days = confirmed_until.map_or(0.0, |until| ((until - acted.acted_at).num_seconds().max(0) as f64) / 86_400.0);
    let realized_usd = round2(acted.monthly_saving_usd.unwrap_or(0.0) * days / DAYS_PER_MONTH);
    Realized {
        run_id: run_id.to_owned(),
        acted: acted.clone(),
        holds,
        detail,
        confirmed_until,
        days: (days * 100.0).round() / 100.0,
        realized_usd,
        undone: matches!(state, StillHolds::Undone(_)),
    }
}

/// Counts and money of a group: what was acted on, what still holds, the estimate per month of what holds, and the
/// saving realized to date.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsFigures {
    pub acted: usize,
    pub holding: usize,
    /// The estimate of what still holds, per month.
    pub estimated_monthly_usd: f64,
    /// Realized to date, over everything acted on.
    pub realized_usd: f64,
    /// Undone by a person with its undo link (no longer saving).
    #[serde(default)]
    pub undone: usize,
}

impl SavingsFigures {
    fn add(&mut self, r: &Realized) {
        self.acted += 1;
        if r.holds {
            self.holding += 1;
            self.estimated_monthly_usd = round2(self.estimated_monthly_usd + r.acted.monthly_saving_usd.unwrap_or(0.0));
        }
        self.realized_usd = round2(self.realized_usd + r.realized_usd);
        self.undone += usize::from(r.undone);
    }
}

/// Every acted-on resource of the ledger as this run finds it, with the totals per kind and per account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavingsReport {
    #[serde(flatten)]
    pub total: SavingsFigures,
    pub by_kind: BTreeMap<String, SavingsFigures>,
    pub by_account: BTreeMap<String, SavingsFigures>,
    /// One line for the run report.
    pub summary: String,
    pub entries: Vec<Realized>,
}

impl SavingsReport {
    pub fn of(entries: Vec<Realized>) -> Self {
        let mut report = Self::default();
        for r in &entries {
            report.total.add(r);
            report.by_kind.entry(r.acted.kind().to_owned()).or_default().add(r);
            report.by_account.entry(r.acted.account_label()).or_default().add(r);
        }
        report.summary = if entries.is_empty() {
            "nothing acted on yet".to_owned()
        } else {
            let kinds: Vec<String> = report
                .by_kind
                .iter()
                .map(|(kind, f)| {
                    format!("{kind} {} of {} holding, ${:.2} realized", f.holding, f.acted, f.realized_usd)
                })
                .collect();
            let undone = match report.total.undone {
                0 => String::new(),
                n => format!(", {n} undone"),
            };
            format!(
                "${:.2} realized to date; {} of {} actions still hold{undone}, estimated ${:.2}/month ({})",
                report.total.realized_usd,
                report.total.holding,
                report.total.acted,
                report.total.estimated_monthly_usd,
                kinds.join("; ")
            )
        };
        report.entries = entries;
        report
    }
}

/// The services whose cost the actions lower, as Cost Explorer names them: instance hours, EBS volumes and
/// snapshots ("EC2 - Other"), public IPv4 addresses (billed under VPC since 2024).
pub const COST_EXPLORER_SERVICES: [&str; 3] =
    ["Amazon Elastic Compute Cloud - Compute", "EC2 - Other", "Amazon Virtual Private Cloud"];

/// The optional check against the bill: Cost Explorer's daily cost of [`COST_EXPLORER_SERVICES`] before the first
/// action the ledger records and since, beside what the estimates of the actions that hold say it should save.
/// Other changes to the account (new instances, price changes) move the bill too: it is a cross-check, not proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostComparison {
    pub first_action: chrono::NaiveDate,
    /// Whole days with a cost before the first action's day, and since (after it, before today: both incomplete).
    pub days_before: usize,
    pub days_since: usize,
    pub before_daily_usd: Option<f64>,
    pub since_daily_usd: Option<f64>,
    /// Before minus since (positive: the bill went down), when both are known.
    pub change_daily_usd: Option<f64>,
    /// What the estimates of the actions that still hold add up to, per day.
    pub estimated_daily_usd: f64,
    pub summary: String,
}

/// Compares the daily costs before `first_action`'s day with those after it and before `today`.
pub fn compare_costs(
    daily: &[(chrono::NaiveDate, f64)],
    first_action: chrono::NaiveDate,
    today: chrono::NaiveDate,
    estimated_monthly_usd: f64,
) -> CostComparison {
    let mean = |days: &[f64]| (!days.is_empty()).then(|| round2(days.iter().sum::<f64>() / days.len() as f64));
    let before: Vec<f64> = daily.iter().filter(|(d, _)| *d < first_action).map(|(_, c)| *c).collect();
    let since: Vec<f64> = daily.iter().filter(|(d, _)| *d > first_action && *d < today).map(|(_, c)| *c).collect();
    let (before_daily_usd, since_daily_usd) = (mean(&before), mean(&since));
    let change_daily_usd = before_daily_usd.zip(since_daily_usd).map(|(b, s)| round2(b - s));
    let estimated_daily_usd = round2(estimated_monthly_usd / DAYS_PER_MONTH);
    let summary = match (before_daily_usd, since_daily_usd, change_daily_usd) {
        (Some(b), Some(s), Some(change)) => format!(
            "EC2, EBS and public IPv4 ${b:.2}/day over {} day(s) before {first_action}, ${s:.2}/day over {} day(s) since \
             ({} ${:.2}/day; the actions that hold estimate ${estimated_daily_usd:.2}/day)",
            before.len(),
            since.len(),
            if change >= 0.0 { "down" } else { "up" },
            change.abs()
        ),
        _ => format!(
            "not enough whole days yet ({} before {first_action}, {} since): compared once both have one",
            before.len(),
            since.len()
        ),
    };
    CostComparison {
        first_action,
        days_before: before.len(),
        days_since: since.len(),
        before_daily_usd,
        since_daily_usd,
        change_daily_usd,
        estimated_daily_usd,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
    }

    fn acted(id: &str, action: ProposedAction, monthly: Option<f64>, day: u32) -> ActedOn {
        ActedOn {
            resource_id: id.into(),
            action,
            region: "ap-southeast-2".into(),
            account: None,
            monthly_saving_usd: monthly,
            acted_at: at(day),
            stopped_as: None,
        }
    }

    #[test]
    fn a_saving_accrues_by_the_day_while_it_holds_and_stops_at_the_last_run_that_saw_it() {
        let stop = acted("i-1", ProposedAction::SnapshotAndStop, Some(DAYS_PER_MONTH * 2.0), 1);
        // $2 a day; held 10 days at this run.
        let holds = accrue("run-1", &stop, &StillHolds::Yes, None, at(11));
        assert_eq!((holds.holds, holds.days, holds.realized_usd), (true, 10.0, 20.0));
        assert_eq!(holds.confirmed_until, Some(at(11)));
        // Started again since; the last run saw it stopped on day 11: 10 days count, no more.
        let restarted = accrue("run-1", &stop, &StillHolds::No("running now".into()), Some(at(11)), at(20));
        assert_eq!((restarted.holds, restarted.realized_usd), (false, 20.0));
        assert!(restarted.detail.contains("running now"), "{}", restarted.detail);
        // Never seen holding after the action: nothing realized. Unknown concludes nothing either.
        assert_eq!(accrue("run-1", &stop, &StillHolds::No("x".into()), None, at(20)).realized_usd, 0.0);
        let unknown = accrue("run-1", &stop, &StillHolds::Unknown("unreachable".into()), Some(at(5)), at(20));
        assert_eq!((unknown.holds, unknown.realized_usd), (false, 8.0));
        // No estimate, nothing to accrue; a clock behind the action never accrues a negative saving.
        let unpriced = acted("vol-1", ProposedAction::SnapshotAndDelete, None, 1);
        assert_eq!(accrue("run-1", &unpriced, &StillHolds::Yes, None, at(30)).realized_usd, 0.0);
        assert_eq!(accrue("run-1", &stop, &StillHolds::Yes, None, at(1) - chrono::Duration::days(1)).realized_usd, 0.0);
        // Undone with its link on day 4: 3 days count, whatever a later run saw.
        let undone = accrue("run-1", &stop, &StillHolds::Undone(at(4)), Some(at(11)), at(20));
        assert_eq!((undone.holds, undone.undone, undone.realized_usd), (false, true, 6.0));
        assert!(SavingsReport::of(vec![undone]).summary.contains("0 of 1 actions still hold, 1 undone"));
    }

    #[test]
    fn the_bill_before_and_since_the_first_action_is_compared_on_whole_days_only() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let daily: Vec<(chrono::NaiveDate, f64)> = (1..=20)
            .map(|d| {
                (
                    day(d),
                    if d < 10 {
                        100.0
                    } else if d == 10 {
                        90.0
                    } else {
                        60.0
                    },
                )
            })
            .collect();
        let c = compare_costs(&daily, day(10), day(20), 30.44 * 35.0);
        assert_eq!((c.days_before, c.days_since), (9, 9), "the action's day and today are partial");
        assert_eq!((c.before_daily_usd, c.since_daily_usd, c.change_daily_usd), (Some(100.0), Some(60.0), Some(40.0)));
        assert_eq!(c.estimated_daily_usd, 35.0);
        assert!(c.summary.contains("down $40.00/day") && c.summary.contains("estimate $35.00/day"), "{}", c.summary);
        // An action today: no whole day since yet.
        let early = compare_costs(&daily, day(20), day(20), 0.0);
        assert_eq!((early.since_daily_usd, early.change_daily_usd), (None, None));
        assert!(early.summary.starts_with("not enough whole days yet"), "{}", early.summary);
        let up = compare_costs(&[(day(1), 10.0), (day(3), 12.5)], day(2), day(5), 0.0);
        assert!(up.summary.contains("up $2.50/day"), "{}", up.summary);
    }

    #[test]
    fn the_report_totals_per_kind_and_account_and_counts_only_what_holds_in_the_monthly_estimate() {
        let mut member = acted("vol-2", ProposedAction::SnapshotAndDelete, Some(3.75), 1);
        member.account = Some(AccountRef::new("111111111111", "data-dev"));
        let entries = vec![
            accrue(
                "run-1",
                &acted("i-1", ProposedAction::SnapshotAndStop, Some(100.0), 1),
                &StillHolds::Yes,
                None,
                at(11),
            ),
            accrue(
                "run-1",
                &acted("i-2", ProposedAction::SnapshotAndStop, Some(50.0), 1),
                &StillHolds::No("running".into()),
                None,
                at(11),
            ),
            accrue("run-1", &member, &StillHolds::Yes, None, at(11)),
            accrue(
                "run-1",
                &acted("eipalloc-1", ProposedAction::Release, Some(3.65), 1),
                &StillHolds::Yes,
                None,
                at(11),
            ),
        ];
        let report = SavingsReport::of(entries);
        assert_eq!((report.total.acted, report.total.holding), (4, 3));
        assert_eq!(report.total.estimated_monthly_usd, 107.4, "the restarted instance's $50 is not counted");
        let realized: f64 = report.entries.iter().map(|e| e.realized_usd).sum();
        assert!((report.total.realized_usd - realized).abs() < 0.011);
        assert_eq!(report.by_kind["instance"].acted, 2);
        assert_eq!(report.by_kind["ebs-volume"].holding, 1);
        assert_eq!(report.by_account["data-dev (111111111111)"].acted, 1, "{:?}", report.by_account.keys());
        assert_eq!(report.by_account["this account"].acted, 3);
        assert!(report.summary.contains("3 of 4 actions still hold"), "{}", report.summary);
        assert_eq!(SavingsReport::of(vec![]).summary, "nothing acted on yet");
    }
}
