//! What CloudWatch said about one instance, day by day, and the whole UTC days a scan looks at. Plain data: the
//! criteria judge it ([`crate::criteria`]), the summaries keep it ([`crate::utilisation`]).

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub const SECONDS_PER_DAY: i64 = 86_400;

/// The whole UTC days a scan looks at: `days` days ending at the start of today (today is partial, so it is left
/// out; a half-day of data would look idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookbackWindow {
    pub first_day: NaiveDate,
    pub days: u32,
}

impl LookbackWindow {
    pub fn ending_before(now: DateTime<Utc>, days: u32) -> Self {
        let today = now.date_naive();
        let first_day = today.checked_sub_days(Days::new(u64::from(days))).expect("lookback within calendar range");
        Self { first_day, days }
    }

    /// Start of the first day, UTC.
    pub fn start(&self) -> DateTime<Utc> {
        self.first_day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    }

    /// Start of the day after the last day (exclusive end).
    pub fn end(&self) -> DateTime<Utc> {
        self.start() + chrono::Duration::days(i64::from(self.days))
    }

    pub fn day(&self, index: u32) -> NaiveDate {
        self.first_day + chrono::Duration::days(i64::from(index))
    }

    /// Index of the day a datapoint timestamp (seconds) falls in, if inside the window.
    pub fn day_index(&self, timestamp_secs: i64) -> Option<u32> {
        let offset = timestamp_secs - self.start().timestamp();
        if offset < 0 {
            return None;
        }
        let index = offset / SECONDS_PER_DAY;
        (index < i64::from(self.days)).then_some(index as u32)
    }

    pub fn days_iter(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        (0..self.days).map(|i| self.day(i))
    }
}

/// One UTC day of one instance. `None` means CloudWatch returned no datapoint for that day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyUtilisation {
    pub day: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_avg_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max_percent: Option<f64>,
    /// NetworkIn + NetworkOut, in bytes (CloudWatch reports both in bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_bytes: Option<f64>,
    /// EBSReadOps + EBSWriteOps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_ops: Option<f64>,
    /// CWAgent mem_used_percent (daily average), only where the agent publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_percent: Option<f64>,
}

impl DailyUtilisation {
    pub fn empty(day: NaiveDate) -> Self {
        Self { day, ..Self::default() }
    }

    /// A day counts as observed when both the CPU statistic and the network total are there; the other metrics
    /// are optional (EBS metrics are not published for every instance type, memory needs the agent).
    pub fn has_core_data(&self) -> bool {
        (self.cpu_avg_percent.is_some() || self.cpu_max_percent.is_some()) && self.network_bytes.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_ends_at_start_of_today_and_excludes_partial_day() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 16, 40, 0).unwrap();
        let w = LookbackWindow::ending_before(now, 14);
        assert_eq!(w.first_day, NaiveDate::from_ymd_opt(2026, 11, 14).unwrap());
        assert_eq!(w.end(), Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap());
        assert_eq!(w.days_iter().count(), 14);
        assert_eq!(w.day_index(w.start().timestamp()), Some(0));
        assert_eq!(w.day_index(w.end().timestamp() - 1), Some(13));
        assert_eq!(w.day_index(w.end().timestamp()), None, "today is not part of the window");
        assert_eq!(w.day_index(w.start().timestamp() - 1), None);
    }
}
