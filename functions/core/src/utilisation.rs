//! Daily utilisation series and their summary, as the metrics step stores them.

use serde::{Deserialize, Serialize};

use crate::daily::DailyUtilisation;
use crate::pricing::CostEstimate;
use crate::verdict::{Assessment, IdleVerdict};

/// Aggregates over the lookback, for tables, prompts and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilisationStats {
    pub days_with_data: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_cpu_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_daily_network_bytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily_network_bytes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_daily_disk_ops: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_mem_used_percent: Option<f64>,
}

impl UtilisationStats {
    pub fn from_days(days: &[DailyUtilisation]) -> Self {
        fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
            let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / f64::from(n))
        }
        fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
            values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        }
        Self {
            days_with_data: days.iter().filter(|d| d.has_core_data()).count() as u32,
            avg_cpu_percent: mean(days.iter().filter_map(|d| d.cpu_avg_percent)),
            peak_cpu_percent: max(days.iter().filter_map(|d| d.cpu_max_percent.or(d.cpu_avg_percent))),
            avg_daily_network_bytes: mean(days.iter().filter_map(|d| d.network_bytes)),
            max_daily_network_bytes: max(days.iter().filter_map(|d| d.network_bytes)),
            avg_daily_disk_ops: mean(days.iter().filter_map(|d| d.disk_ops)),
            avg_mem_used_percent: mean(days.iter().filter_map(|d| d.mem_used_percent)),
        }
    }
}

/// Everything the metrics step concluded about one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UtilisationSummary {
    pub instance_id: String,
    pub region: String,
    /// Stored as columns (one array per metric), which keeps a 10,000-instance document a third of the size.
    #[serde(with = "columns")]
    pub days: Vec<DailyUtilisation>,
    pub stats: UtilisationStats,
    pub assessment: Assessment,
    pub cost: CostEstimate,
}

impl UtilisationSummary {
    pub fn verdict(&self) -> IdleVerdict {
        self.assessment.verdict
    }
}

/// Daily series as one array per metric, starting at `firstDay`, values rounded to 4 decimals.
mod columns {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::DailyUtilisation;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Columns<V> {
        first_day: Option<NaiveDate>,
        cpu_avg_percent: Vec<V>,
        cpu_max_percent: Vec<V>,
        network_bytes: Vec<V>,
        disk_ops: Vec<V>,
        #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
        mem_used_percent: Vec<V>,
    }

    /// A value rounded to 4 decimals, written as an integer when it is one (byte and op counts usually are):
    /// shorter and cheaper to write than `400000.0`.
    struct Compact(Option<f64>);

    impl Serialize for Compact {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0.map(|v| (v * 1e4).round() / 1e4) {
                None => s.serialize_none(),
                Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(v as i64),
                Some(v) => s.serialize_f64(v),
            }
        }
    }

    pub fn serialize<S: Serializer>(days: &[DailyUtilisation], s: S) -> Result<S::Ok, S::Error> {
        let column = |f: fn(&DailyUtilisation) -> Option<f64>| days.iter().map(|d| Compact(f(d))).collect::<Vec<_>>();
        let mem =
            if days.iter().any(|d| d.mem_used_percent.is_some()) { column(|d| d.mem_used_percent) } else { Vec::new() };
        Columns {
            first_day: days.first().map(|d| d.day),
            cpu_avg_percent: column(|d| d.cpu_avg_percent),
            cpu_max_percent: column(|d| d.cpu_max_percent),
            network_bytes: column(|d| d.network_bytes),
            disk_ops: column(|d| d.disk_ops),
            mem_used_percent: mem,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DailyUtilisation>, D::Error> {
        let c = Columns::<Option<f64>>::deserialize(d)?;
        let Some(first) = c.first_day else { return Ok(Vec::new()) };
        let at = |col: &[Option<f64>], i: usize| col.get(i).copied().flatten();
        Ok((0..c.cpu_avg_percent.len())
            .map(|i| DailyUtilisation {
                day: first + chrono::Duration::days(i as i64),
                cpu_avg_percent: at(&c.cpu_avg_percent, i),
                cpu_max_percent: at(&c.cpu_max_percent, i),
                network_bytes: at(&c.network_bytes, i),
                disk_ops: at(&c.disk_ops, i),
                mem_used_percent: at(&c.mem_used_percent, i),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daily::LookbackWindow;
    use chrono::{NaiveDate, TimeZone, Utc};

    #[test]
    fn stats_ignore_missing_days_and_use_max_for_peak() {
        let d0 = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let days = vec![
            DailyUtilisation {
                day: d0,
                cpu_avg_percent: Some(2.0),
                cpu_max_percent: Some(9.0),
                network_bytes: Some(1000.0),
                ..Default::default()
            },
            DailyUtilisation::empty(d0.succ_opt().unwrap()),
            DailyUtilisation {
                day: d0,
                cpu_avg_percent: Some(4.0),
                cpu_max_percent: Some(3.0),
                network_bytes: Some(3000.0),
                ..Default::default()
            },
        ];
        let s = UtilisationStats::from_days(&days);
        assert_eq!(s.days_with_data, 2);
        assert_eq!(s.avg_cpu_percent, Some(3.0));
        assert_eq!(s.peak_cpu_percent, Some(9.0));
        assert_eq!(s.avg_daily_network_bytes, Some(2000.0));
        assert_eq!(s.avg_mem_used_percent, None);
    }

    #[test]
    fn summaries_store_days_as_columns_and_read_back() {
        use crate::criteria::{CriteriaPreset, IdleCriteria};
        use crate::inventory::InstanceRecord;
        let w = LookbackWindow::ending_before(Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap(), 3);
        let days: Vec<DailyUtilisation> = w
            .days_iter()
            .enumerate()
            .map(|(i, day)| DailyUtilisation {
                day,
                cpu_avg_percent: Some(0.1 + 0.2),
                cpu_max_percent: (i != 1).then_some(3.0),
                network_bytes: Some(1e6),
                disk_ops: None,
                mem_used_percent: None,
            })
            .collect();
        let instance: InstanceRecord = serde_json::from_value(serde_json::json!({
            "instanceId": "i-1", "region": "us-east-1", "instanceType": "t3.micro", "state": "running",
            "launchTime": "2025-01-01T00:00:00Z", "lifecycle": "on-demand", "platform": "Linux/UNIX",
            "rootDeviceType": "ebs"
        }))
        .unwrap();
        let assessment = IdleCriteria::preset(CriteriaPreset::Idle, 3).assess(&w, instance.launch_time, &days);
        let summary = UtilisationSummary {
            instance_id: "i-1".into(),
            region: "us-east-1".into(),
            stats: UtilisationStats::from_days(&days),
            cost: CostEstimate::new(&instance, assessment.verdict, None, &[]),
            assessment,
            days: days.clone(),
        };
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["days"]["firstDay"], "2026-11-25");
        assert_eq!(json["days"]["cpuAvgPercent"], serde_json::json!([0.3, 0.3, 0.3]), "rounded");
        assert_eq!(json["days"]["cpuMaxPercent"].to_string(), "[3,null,3]", "integral values as integers");
        assert!(json["days"].get("memUsedPercent").is_none(), "no agent, no column");
        let back: UtilisationSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back.days.len(), 3);
        assert_eq!(back.days[2].day, days[2].day);
        assert_eq!(back.days[1].cpu_max_percent, None);
        assert_eq!(back.days[0].cpu_avg_percent, Some(0.3));
    }

    #[test]
    fn stats_of_empty_series_are_empty() {
        assert_eq!(UtilisationStats::from_days(&[]), UtilisationStats::default());
    }
}
