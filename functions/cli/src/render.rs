//! Turning a scan into a table for people or JSON for scripts.

use std::io::Write;

use finops_core::organization::{AccountRef, SkippedAccount, UnreachableItem};
use finops_core::policy::PolicyConfig;
use finops_core::resources::{Blocked, ResourceFinding};
use finops_core::steps::VerdictCounts;
use finops_core::utilisation::UtilisationStats;
use finops_core::{IdleCriteria, IdleVerdict, InstanceRecord, LookbackWindow, UtilisationSummary};
use finops_metrics::Analysis;
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport<'a> {
    pub regions: &'a [String],
    pub criteria: &'a IdleCriteria,
    pub window: LookbackWindow,
    pub verdicts: VerdictCounts,
    pub monthly_cost_usd: f64,
    /// Every idle and underutilised instance's saving, blocked or not (what `actionable` and `blocked` split).
    pub monthly_saving_usd: f64,
    /// What the workflow could propose (nothing in the policy against it) and what the policy blocks, apart: a
    /// production database's saving is never added to what can be saved.
    pub actionable_monthly_saving_usd: f64,
    pub actionable: usize,
    pub blocked_monthly_saving_usd: f64,
    /// Blocked idle and underutilised instances, by the policy's reason.
    pub blocked_by_reason: std::collections::BTreeMap<String, usize>,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
    pub instances: Vec<ScannedInstance<'a>>,
    /// A scan of several accounts: what each account holds, and what was not scanned and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<OrganizationScan<'a>>,
    /// Resources beyond instances (unattached volumes, Elastic IPs): what would be proposed first, then by saving.
    pub resources: Vec<&'a ResourceFinding>,
    /// What the resources that would be proposed save per month, and what the policy blocks (production,
    /// protected, DNS-named, ...): never added together.
    pub resources_monthly_saving_usd: f64,
    pub resources_blocked_monthly_saving_usd: f64,
    #[serde(skip)]
    pub resources_actionable: usize,
    #[serde(skip)]
    pub resources_blocked: usize,
    #[serde(skip)]
    pub resources_report_only: usize,
    /// Idle resources of kinds finops reports but does not act on (NAT gateways, stopped instances' volumes).
    pub resources_report_only_monthly_saving_usd: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationScan<'a> {
    pub accounts: Vec<AccountLine>,
    pub skipped: &'a [SkippedAccount],
    pub unreachable: &'a [UnreachableItem],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountLine {
    pub account: AccountRef,
    pub instances: usize,
    pub verdicts: VerdictCounts,
    /// What the workflow could propose in the account, per month; what the policy blocks is kept apart.
    pub monthly_saving_usd: f64,
    pub blocked_monthly_saving_usd: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannedInstance<'a> {
    pub instance: &'a InstanceRecord,
    pub summary: &'a UtilisationSummary,
    /// What the workflow would do with it: propose it (idle or underutilised, and nothing in the policy against it),
    /// or why the policy blocks it. Neither for an active instance.
    pub would_propose: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Blocked>,
}

impl<'a> ScanReport<'a> {
    /// `policy`: the deployment's (its `FINOPS_*` settings), which says what the workflow would propose.
    pub fn new(
        regions: &'a [String],
        criteria: &'a IdleCriteria,
        instances: &'a [InstanceRecord],
        analysis: &'a Analysis,
        policy: &PolicyConfig,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let mut verdicts = VerdictCounts::default();
        let mut rows: Vec<ScannedInstance<'a>> = instances
            .iter()
            .zip(&analysis.summaries)
            .map(|(instance, summary)| {
                verdicts.add(summary.verdict());
                let candidate = matches!(summary.verdict(), IdleVerdict::Idle | IdleVerdict::Underutilised);
                let blocked = candidate
                    .then(|| policy.instance_block(instance, now))
                    .flatten()
                    .map(|(reason, detail)| Blocked { reason, detail });
                ScannedInstance { instance, summary, would_propose: candidate && blocked.is_none(), blocked }
            })
            .collect();
        // Worth acting on first, then by saving.
        rows.sort_by(|a, b| {
            a.summary
                .verdict()
                .cmp(&b.summary.verdict())
                .then_with(|| saving(b).total_cmp(&saving(a)))
                .then_with(|| a.instance.instance_id.cmp(&b.instance.instance_id))
        });
        let monthly_cost_usd = rows.iter().filter_map(|r| r.summary.cost.monthly_cost_usd).sum();
        let monthly_saving_usd = rows.iter().map(saving).sum();
        let actionable_monthly_saving_usd = rows.iter().filter(|r| r.would_propose).map(saving).sum();
        let blocked_monthly_saving_usd = rows.iter().filter(|r| r.blocked.is_some()).map(saving).sum();
        let mut blocked_by_reason = std::collections::BTreeMap::new();
        for b in rows.iter().filter_map(|r| r.blocked.as_ref()) {
            *blocked_by_reason.entry(b.reason.to_string()).or_default() += 1;
        }
        Self {
            actionable_monthly_saving_usd,
            actionable: rows.iter().filter(|r| r.would_propose).count(),
            blocked_monthly_saving_usd,
            blocked_by_reason,
            regions,
            criteria,
            window: analysis.window,
            verdicts,
            monthly_cost_usd,
            monthly_saving_usd,
            get_metric_data_calls: analysis.get_metric_data_calls,
            metrics_requested: analysis.metrics_requested,
            instances: rows,
            organization: None,
            resources: Vec::new(),
            resources_monthly_saving_usd: 0.0,
            resources_blocked_monthly_saving_usd: 0.0,
            resources_actionable: 0,
            resources_blocked: 0,
            resources_report_only: 0,
            resources_report_only_monthly_saving_usd: 0.0,
        }
    }

    /// The same report with the resources beyond instances.
    pub fn with_resources(mut self, findings: &'a [ResourceFinding]) -> Self {
        let mut rows: Vec<&ResourceFinding> = findings.iter().collect();
        rows.sort_by(|a, b| {
            b.would_propose()
                .cmp(&a.would_propose())
                .then_with(|| b.idle.cmp(&a.idle))
                .then_with(|| b.monthly_saving_usd.unwrap_or(0.0).total_cmp(&a.monthly_saving_usd.unwrap_or(0.0)))
                .then_with(|| a.resource_id.cmp(&b.resource_id))
        });
        let figures = finops_core::resources::ResourcesSummary::of(findings).total;
        self.resources_monthly_saving_usd = figures.actionable_monthly_saving_usd;
        self.resources_blocked_monthly_saving_usd = figures.blocked_monthly_saving_usd;
        self.resources_actionable = figures.actionable;
        self.resources_blocked = figures.blocked;
        self.resources_report_only = figures.report_only;
        self.resources_report_only_monthly_saving_usd = figures.report_only_monthly_saving_usd;
        self.resources = rows;
        self
    }

    /// The same report with a line per account, and the accounts and items that were not scanned.
    pub fn with_accounts(
        mut self,
        accounts: &[AccountRef],
        skipped: &'a [SkippedAccount],
        unreachable: &'a [UnreachableItem],
    ) -> Self {
        let lines = accounts
            .iter()
            .map(|account| {
                let mut line = AccountLine {
                    account: account.clone(),
                    instances: 0,
                    verdicts: VerdictCounts::default(),
                    monthly_saving_usd: 0.0,
                    blocked_monthly_saving_usd: 0.0,
                };
                for row in self.instances.iter().filter(|r| r.instance.account.as_ref() == Some(account)) {
                    line.instances += 1;
                    line.verdicts.add(row.summary.verdict());
                    if row.would_propose {
                        line.monthly_saving_usd += saving(row);
                    } else if row.blocked.is_some() {
                        line.blocked_monthly_saving_usd += saving(row);
                    }
                }
                line
            })
            .collect();
        self.organization = Some(OrganizationScan { accounts: lines, skipped, unreachable });
        self
    }
}

fn saving(row: &ScannedInstance<'_>) -> f64 {
    match row.summary.verdict() {
        IdleVerdict::Idle | IdleVerdict::Underutilised => row.summary.cost.monthly_saving_usd.unwrap_or(0.0),
        _ => 0.0,
    }
}

pub fn render_json(report: &ScanReport<'_>, out: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)
}

/// Tag values are whatever anyone typed: control characters (terminal escapes) are replaced and long values cut.
pub fn printable(text: &str, width: usize) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    if clean.chars().count() <= width {
        clean
    } else {
        let cut: String = clean.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}%"))
}

fn megabytes(stats: &UtilisationStats) -> String {
    match stats.avg_daily_network_bytes {
        None => "-".into(),
        Some(b) if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        Some(b) => format!("{:.1} MB", b / 1e6),
    }
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("${v:.2}"))
}

pub fn render_table(report: &ScanReport<'_>, out: &mut impl Write) -> std::io::Result<()> {
    let by_account = report.organization.is_some();
    let mut header = vec![
        "INSTANCE",
        "NAME",
        "TYPE",
        "REGION",
        "VERDICT",
        "AVG CPU",
        "PEAK CPU",
        "NET/DAY",
        "COST/MO",
        "SAVING/MO",
        "WHAT FINOPS WOULD DO",
    ];
    if by_account {
        header.insert(1, "ACCOUNT");
    }
    // Columns from here to the last (text) are figures, right-aligned.
    let first_figure = if by_account { 6 } else { 5 };
    let last = header.len() - 1;
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|r| {
            let s = &r.summary.stats;
            let mut row = vec![
                r.instance.instance_id.clone(),
                printable(r.instance.name().unwrap_or("-"), 28),
                r.instance.instance_type.clone(),
                r.instance.region.clone(),
                r.summary.verdict().to_string(),
                pct(s.avg_cpu_percent),
                pct(s.peak_cpu_percent),
                megabytes(s),
                usd(r.summary.cost.monthly_cost_usd),
                match r.summary.verdict() {
                    IdleVerdict::Idle | IdleVerdict::Underutilised => usd(r.summary.cost.monthly_saving_usd),
                    _ => "-".into(),
                },
                match (&r.blocked, r.would_propose) {
                    (Some(b), _) => format!("blocked: {}", b.reason),
                    (None, true) => "would propose".into(),
                    (None, false) => "-".into(),
                },
            ];
            if by_account {
                row.insert(1, r.instance.account.as_ref().map_or_else(|| "-".into(), |a| printable(&a.name, 24)));
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i >= first_figure && i < last { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect::<Vec<_>>()
            .join("  ")
            // The last column is text: no padding at the line's end.
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>()))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let v = &report.verdicts;
    writeln!(out)?;
    let accounts =
        report.organization.as_ref().map_or_else(String::new, |o| format!("{} accounts, ", o.accounts.len()));
    writeln!(
        out,
        "{} instances in {accounts}{} over {} days ({} to {}), criteria {}: {} idle, {} underutilised, {} active, {} insufficient data",
        report.instances.len(),
        report.regions.join(", "),
        report.window.days,
        report.window.first_day,
        report.window.day(report.window.days.saturating_sub(1)),
        report.criteria.preset.as_str(),
        v.idle,
        v.underutilised,
        v.active,
        v.insufficient_data
    )?;
    let blocked = match report.blocked_by_reason.values().sum::<usize>() {
        0 => String::new(),
        n => format!(
            "; ${:.2}/month idle but blocked by policy ({n}: {}), not counted",
            report.blocked_monthly_saving_usd,
            report.blocked_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        ),
    };
    writeln!(
        out,
        "Estimated monthly cost ${:.2}; saving ${:.2}/month can be proposed ({}: stop idle, rightsize underutilised){blocked}. {} GetMetricData calls, {} metrics requested.",
        report.monthly_cost_usd,
        report.actionable_monthly_saving_usd,
        report.actionable,
        report.get_metric_data_calls,
        report.metrics_requested
    )?;
    let sources: std::collections::BTreeSet<String> =
        report.instances.iter().map(|r| r.summary.cost.price_source.to_string()).collect();
    if !sources.is_empty() {
        writeln!(out, "Prices: {}.", sources.into_iter().collect::<Vec<_>>().join("; "))?;
    }
    if let Some(org) = &report.organization {
        render_accounts(org, report.regions.len(), out)?;
    }
    let explained: Vec<&ScannedInstance<'_>> =
        report.instances.iter().filter(|r| r.summary.verdict() != IdleVerdict::Active).collect();
    if !explained.is_empty() {
        writeln!(out, "\nWhy:")?;
        for r in explained {
            let reason = r.summary.assessment.reasons.first().map(String::as_str).unwrap_or("");
            writeln!(out, "  {} {}: {}", r.instance.instance_id, r.summary.verdict(), printable(reason, 220))?;
        }
    }
    render_resources(report, out)?;
    writeln!(out, "\nNothing was changed. Stopping needs the deployed workflow and a human approval.")
}

/// What a resource finding comes to, in a few words: what would be proposed, why not, or that it is in use.
fn resource_state(r: &ResourceFinding) -> String {
    match (&r.blocked, r.action) {
        (_, _) if !r.idle => "in use".into(),
        (Some(b), _) => format!("blocked: {}", b.reason),
        (None, Some(action)) => format!("would propose {}", action.as_str()),
        (None, None) => "idle: report only".into(),
    }
}

fn render_resources(report: &ScanReport<'_>, out: &mut impl Write) -> std::io::Result<()> {
    if report.resources.is_empty() {
        return Ok(());
    }
    let header = ["KIND", "ID", "NAME", "REGION", "WHAT FINOPS WOULD DO", "COST/MO", "SAVING/MO"];
    let rows: Vec<[String; 7]> = report
        .resources
        .iter()
        .map(|r| {
            [
                r.kind.as_str().to_owned(),
                r.resource_id.clone(),
                printable(r.name.as_deref().unwrap_or("-"), 28),
                r.region.clone(),
                resource_state(r),
                usd(r.monthly_cost_usd),
                if r.idle { usd(r.monthly_saving_usd) } else { "-".into() },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| if i >= 5 { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "\nOther resources:")?;
    writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect()))?;
    for row in rows {
        writeln!(out, "{}", line(row.to_vec()))?;
    }
    writeln!(
        out,
        "Other resources: ${:.2}/month can be acted on ({}); ${:.2}/month idle but blocked by policy ({}), not counted; \
         ${:.2}/month idle, report only ({}).",
        report.resources_monthly_saving_usd,
        report.resources_actionable,
        report.resources_blocked_monthly_saving_usd,
        report.resources_blocked,
        report.resources_report_only_monthly_saving_usd,
        report.resources_report_only,
    )?;
    for r in report.resources.iter().filter(|r| r.idle) {
        let why =
            r.blocked.as_ref().map_or_else(|| r.reasons[0].clone(), |b| format!("{}; {}", r.reasons[0], b.detail));
        writeln!(out, "  {} {}: {}", r.kind.label(), r.resource_id, printable(&why, 220))?;
    }
    Ok(())
}

fn render_accounts(org: &OrganizationScan<'_>, regions: usize, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "\nAccounts:")?;
    for line in &org.accounts {
        let unreachable = org.unreachable.iter().filter(|u| u.item.account == line.account).count();
        if unreachable == regions {
            writeln!(out, "  {}: not reachable in any region", printable(&line.account.to_string(), 60))?;
            continue;
        }
        let mut note = if unreachable > 0 { format!("; {unreachable} region(s) not scanned") } else { String::new() };
        if line.blocked_monthly_saving_usd > 0.0 {
            note.insert_str(
                0,
                &format!("; ${:.2}/month blocked by policy, not counted", line.blocked_monthly_saving_usd),
            );
        }
        writeln!(
            out,
            "  {}: {} instances, {} idle, {} underutilised; saving ${:.2}/month can be proposed{note}",
            printable(&line.account.to_string(), 60),
            line.instances,
            line.verdicts.idle,
            line.verdicts.underutilised,
            line.monthly_saving_usd
        )?;
    }
    for skipped in org.skipped {
        writeln!(out, "  {}: not scanned, {}", printable(&skipped.account.to_string(), 60), skipped.reason)?;
    }
    if !org.unreachable.is_empty() {
        writeln!(out, "\nNot scanned ({} of the run's account-region items):", org.unreachable.len())?;
        for u in org.unreachable {
            writeln!(
                out,
                "  {} {}: {}",
                printable(&u.item.account.to_string(), 60),
                u.item.region,
                printable(&u.reason, 300)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_strips_terminal_escapes_and_cuts() {
        assert_eq!(printable("web\u{1b}[2Jprod", 40), "web?[2Jprod");
        assert_eq!(printable("abcdefghij", 5), "abcd…");
        assert_eq!(printable("ok", 5), "ok");
    }
}
