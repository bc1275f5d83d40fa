//! `finops report --since 30d`: what the workflow did over a period, from the ledger (one DynamoDB Scan, read-only):
//! runs, proposals, decisions, actions by outcome, and the estimated and realized savings, per month and in total.
//! The same figures as the dashboard, in a terminal, as a table or JSON.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Duration, Utc};
use clap::Args;
use finops_aws::{load_sdk_config, AwsSettings};
use serde::Serialize;
use serde_json::Value;

use crate::CliError;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// How far back: a number and a unit, h (hours), d (days) or w (weeks): 30d, 12h, 2w.
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// The ledger table (the stack's output), or FINOPS_LEDGER_TABLE.
    #[arg(long, env = "FINOPS_LEDGER_TABLE")]
    pub ledger_table: String,
    /// The ledger's region (default: the profile's).
    #[arg(long)]
    pub region: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// AWS profile to use (default: the standard credential chain).
    #[arg(long)]
    pub profile: Option<String>,
    /// Send every AWS call to this endpoint (moto). AWS_ENDPOINT_URL works too.
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

/// `30d` as a duration; anything else is a usage error.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number
        .parse()
        .ok()
        .filter(|n| (1..=100_000).contains(n))
        .ok_or_else(|| format!("--since {text:?}: a number and a unit, h, d or w (30d, 12h, 2w)"))?;
    match unit {
        "h" => Ok(Duration::hours(n)),
        "d" => Ok(Duration::days(n)),
        "w" => Ok(Duration::weeks(n)),
        _ => Err(format!("--since {text:?}: the unit is h, d or w (30d, 12h, 2w)")),
    }
}

/// One ledger item, as much as the report reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerEntry {
    pub run_id: String,
    /// `completed`, `failed` or `undo`.
    pub status: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub proposals: u64,
    /// The run's outcomes (JSON), each with its decision, operation and outcome.
    pub outcomes: Vec<Value>,
    /// The run's savings check: realized to date, and what still holds per month.
    pub realized_usd: Option<f64>,
    pub holding_monthly_usd: Option<f64>,
    /// An undo's outcome.
    pub undo_outcome: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub runs: u64,
    pub failed_runs: u64,
    pub proposals: u64,
    /// approve, deny, snooze, none.
    pub decisions: BTreeMap<String, u64>,
    /// "stop done", "delete_volume refused", ...
    pub actions: BTreeMap<String, u64>,
    pub undone: u64,
    /// The estimate of what was stopped, deleted or released (done), per month.
    pub acted_monthly_usd: f64,
    /// The last savings check of the period: realized to date, and what still holds per month.
    pub realized_to_date_usd: Option<f64>,
    pub holding_monthly_usd: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerReport {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub total: Figures,
    pub by_month: BTreeMap<String, Figures>,
    /// Items without a date (never written by a run that finished): not counted.
    pub undated: u64,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Figures {
    fn add(&mut self, e: &LedgerEntry) {
        if e.status == "undo" {
            self.undone += u64::from(matches!(e.undo_outcome.as_deref(), Some("done" | "already_done")));
            return;
        }
        self.runs += 1;
        self.failed_runs += u64::from(e.status == "failed");
        self.proposals += e.proposals;
        for o in &e.outcomes {
            *self.decisions.entry(o["decision"].as_str().unwrap_or("none").to_owned()).or_default() += 1;
            if let Some(operation) = o["operation"].as_str() {
                let outcome = o["outcome"].as_str().unwrap_or("?");
                *self.actions.entry(format!("{operation} {outcome}")).or_default() += 1;
            }
            if o["acted"].is_object() {
                self.acted_monthly_usd =
                    round2(self.acted_monthly_usd + o["acted"]["monthlySavingUsd"].as_f64().unwrap_or(0.0));
            }
        }
        // Entries come in time order: the last check of the period says where it stands.
        if e.realized_usd.is_some() {
            self.realized_to_date_usd = e.realized_usd;
            self.holding_monthly_usd = e.holding_monthly_usd;
        }
    }
}

/// The report of the entries recorded from `since` to `now`, in total and per month (UTC).
pub fn summarize(mut entries: Vec<LedgerEntry>, since: DateTime<Utc>, now: DateTime<Utc>) -> LedgerReport {
    entries.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at).then_with(|| a.run_id.cmp(&b.run_id)));
    let mut report = LedgerReport { since, until: now, ..LedgerReport::default() };
    for e in &entries {
        let Some(at) = e.recorded_at else {
            report.undated += 1;
            continue;
        };
        if at < since || at > now {
            continue;
        }
        report.total.add(e);
        report.by_month.entry(at.format("%Y-%m").to_string()).or_default().add(e);
    }
    report
}

/// A ledger item as DynamoDB returns it.
pub fn entry_of(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> LedgerEntry {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<f64>().ok());
    let realized: Option<Value> = text("realizedSavings").and_then(|s| serde_json::from_str(&s).ok());
    LedgerEntry {
        run_id: text("runId").unwrap_or_default(),
        status: text("status").unwrap_or_default(),
        recorded_at: text("recordedAt")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        proposals: number("proposalCount").map_or(0, |n| n as u64),
        outcomes: text("outcomes").and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
        realized_usd: realized.as_ref().and_then(|r| r["realizedUsd"].as_f64()),
        holding_monthly_usd: realized.as_ref().and_then(|r| r["estimatedMonthlyUsd"].as_f64()),
        undo_outcome: text("undoOutcome"),
    }
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("${v:.2}"))
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    match map.is_empty() {
        true => "-".into(),
        false => map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
    }
}

pub fn render_table(report: &LedgerReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "finops report, {} to {} (UTC)",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M")
    )?;
    let header = ["MONTH", "RUNS", "FAILED", "PROPOSED", "ACTED $/MO", "UNDONE", "REALIZED TO DATE", "HOLDING $/MO"];
    let rows: Vec<[String; 8]> = report
        .by_month
        .iter()
        .map(|(m, f)| (m.as_str(), f))
        .chain(std::iter::once(("total", &report.total)))
        .map(|(m, f)| {
            [
                m.to_owned(),
                f.runs.to_string(),
                f.failed_runs.to_string(),
                f.proposals.to_string(),
                format!("${:.2}", f.acted_monthly_usd),
                f.undone.to_string(),
                usd(f.realized_to_date_usd),
                usd(f.holding_monthly_usd),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect()))?;
    for row in rows {
        writeln!(out, "{}", line(row.to_vec()))?;
    }
    writeln!(out, "Decisions: {}", counts(&report.total.decisions))?;
    writeln!(out, "Actions: {}", counts(&report.total.actions))?;
    if report.undated > 0 {
        writeln!(out, "{} ledger item(s) without a date were not counted.", report.undated)?;
    }
    Ok(())
}

pub async fn run(args: ReportArgs, out: &mut impl Write) -> Result<(), CliError> {
    let since = parse_since(&args.since).map_err(CliError::Usage)?;
    if args.ledger_table.trim().is_empty() {
        return Err(CliError::Usage("--ledger-table (or FINOPS_LEDGER_TABLE) is empty".into()));
    }
    let settings = AwsSettings {
        profile: args.profile.clone(),
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
    };
    let sdk = load_sdk_config(&settings).await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let mut pages = client.scan().table_name(&args.ledger_table).into_paginator().send();
    let mut entries = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| finops_aws::FinopsError::from_sdk("DynamoDB", "Scan", e))?;
        entries.extend(page.items().iter().map(entry_of));
    }
    let now = Utc::now();
    let report = summarize(entries, now - since, now);
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        render_table(&report, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(day: u32, month: u32) -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, month, day, 12, 0, 0).unwrap()
    }

    #[test]
    fn since_reads_a_number_and_a_unit_and_nothing_else() {
        assert_eq!(parse_since("30d"), Ok(Duration::days(30)));
        assert_eq!(parse_since("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_since("2w"), Ok(Duration::weeks(2)));
        for bad in ["", "30", "d", "-3d", "30 days", "0d", "3m"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_period_is_summed_per_month_with_the_last_savings_check_and_undos() {
        let run = |id: &str, when, status: &str, outcomes: Value, realized: Option<f64>| LedgerEntry {
            run_id: id.into(),
            status: status.into(),
            recorded_at: Some(when),
            proposals: outcomes.as_array().map_or(0, |o| o.len() as u64),
            outcomes: outcomes.as_array().cloned().unwrap_or_default(),
            realized_usd: realized,
            holding_monthly_usd: realized.map(|_| 100.0),
            undo_outcome: None,
        };
        let stop =
            json!({"decision": "approve", "operation": "stop", "outcome": "done", "acted": {"monthlySavingUsd": 60.0}});
        let denied = json!({"decision": "deny", "outcome": "denied"});
        let entries = vec![
            run("old", at(1, 9), "completed", json!([stop.clone()]), None),
            run("a", at(20, 10), "completed", json!([stop.clone(), denied]), None),
            run("b", at(3, 11), "completed", json!([stop]), Some(12.5)),
            run("c", at(4, 11), "failed", json!([]), None),
            LedgerEntry {
                run_id: "undo-1".into(),
                status: "undo".into(),
                recorded_at: Some(at(5, 11)),
                undo_outcome: Some("done".into()),
                ..LedgerEntry::default()
            },
            LedgerEntry { run_id: "x".into(), status: "completed".into(), ..LedgerEntry::default() },
        ];
        let r = summarize(entries, at(15, 10), at(10, 11));
        assert_eq!((r.total.runs, r.total.failed_runs, r.total.proposals, r.total.undone, r.undated), (3, 1, 3, 1, 1));
        assert_eq!(r.total.acted_monthly_usd, 120.0, "two stops in the period, not the September one");
        assert_eq!((r.total.realized_to_date_usd, r.total.holding_monthly_usd), (Some(12.5), Some(100.0)));
        assert_eq!(r.total.decisions["approve"], 2);
        assert_eq!(r.total.actions["stop done"], 2);
        assert_eq!(r.by_month.keys().collect::<Vec<_>>(), ["2026-10", "2026-11"]);
        let mut table = Vec::new();
        render_table(&r, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("Actions: stop done 2"), "{table}");
        assert!(
            table.lines().any(|l| l.starts_with("total") && l.contains("$120.00") && l.contains("$12.50")),
            "{table}"
        );
    }
}
