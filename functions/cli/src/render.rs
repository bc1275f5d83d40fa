//! Turning a scan into a table for people or JSON for scripts.

use std::io::Write;

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
    pub monthly_saving_usd: f64,
    pub get_metric_data_calls: usize,
    pub metrics_requested: usize,
    pub instances: Vec<ScannedInstance<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannedInstance<'a> {
    pub instance: &'a InstanceRecord,
    pub summary: &'a UtilisationSummary,
}

impl<'a> ScanReport<'a> {
    pub fn new(
        regions: &'a [String],
        criteria: &'a IdleCriteria,
        instances: &'a [InstanceRecord],
        analysis: &'a Analysis,
    ) -> Self {
        let mut verdicts = VerdictCounts::default();
        let mut rows: Vec<ScannedInstance<'a>> = instances
            .iter()
            .zip(&analysis.summaries)
            .map(|(instance, summary)| {
                verdicts.add(summary.verdict());
                ScannedInstance { instance, summary }
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
        Self {
            regions,
            criteria,
            window: analysis.window,
            verdicts,
            monthly_cost_usd,
            monthly_saving_usd,
            get_metric_data_calls: analysis.get_metric_data_calls,
            metrics_requested: analysis.metrics_requested,
            instances: rows,
        }
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
    let header =
        ["INSTANCE", "NAME", "TYPE", "REGION", "VERDICT", "AVG CPU", "PEAK CPU", "NET/DAY", "COST/MO", "SAVING/MO"];
    let rows: Vec<[String; 10]> = report
        .instances
        .iter()
        .map(|r| {
            let s = &r.summary.stats;
            [
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
            ]
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
            .map(|(i, (c, w))| if i >= 5 { format!("{c:>w$}") } else { format!("{c:<w$}") })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(&header.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    let v = &report.verdicts;
    writeln!(out)?;
    writeln!(
        out,
        "{} instances in {} over {} days ({} to {}), criteria {}: {} idle, {} underutilised, {} active, {} insufficient data",
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
    writeln!(
        out,
        "Estimated monthly cost ${:.2}; possible saving ${:.2}/month (stop idle, rightsize underutilised). {} GetMetricData calls, {} metrics requested.",
        report.monthly_cost_usd, report.monthly_saving_usd, report.get_metric_data_calls, report.metrics_requested
    )?;
    let sources: std::collections::BTreeSet<String> =
        report.instances.iter().map(|r| r.summary.cost.price_source.to_string()).collect();
    if !sources.is_empty() {
        writeln!(out, "Prices: {}.", sources.into_iter().collect::<Vec<_>>().join("; "))?;
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
    writeln!(out, "\nNothing was changed. Stopping needs the deployed workflow and a human approval.")
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
