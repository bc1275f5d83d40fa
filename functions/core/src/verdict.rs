//! The verdict the criteria give an instance, and the evidence behind it.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IdleVerdict {
    Idle,
    Underutilised,
    Active,
    InsufficientData,
}

impl IdleVerdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Underutilised => "Underutilised",
            Self::Active => "Active",
            Self::InsufficientData => "InsufficientData",
        }
    }
}

impl fmt::Display for IdleVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    pub verdict: IdleVerdict,
    /// The rule that gave the verdict (`idle` or `trusted-advisor`), for `Idle` and `Underutilised`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub qualifying_days: u32,
    /// Days with CPU and network data; for an `Active` settled by CPU alone ([`crate::IdleCriteria::screen`]),
    /// days with that CPU statistic.
    pub days_with_data: u32,
    pub lookback_days: u32,
    pub reasons: Vec<String>,
}

impl Assessment {
    pub(crate) fn new(
        verdict: IdleVerdict,
        rule: Option<&str>,
        qualifying_days: u32,
        days_with_data: u32,
        lookback_days: u32,
        reasons: Vec<String>,
    ) -> Self {
        Self { verdict, rule: rule.map(str::to_owned), qualifying_days, days_with_data, lookback_days, reasons }
    }
}
