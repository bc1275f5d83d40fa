//! Two stages give the verdicts and reasons of one: a property over random fleets of every shape (busy, idle,
//! spiky, partially idle, missing data, memory agent present or not, launched inside the window), random criteria
//! and lookbacks.

use std::sync::atomic::Ordering;

use chrono::{Duration, TimeZone, Utc};
use finops_aws::{PriceBook, SdkPriceList};
use finops_core::{CriteriaPreset, IdleCriteria, InstanceRecord, LookbackWindow, MetricStages, Threshold};
use proptest::prelude::*;

use crate::synthetic::TableMetrics;
use crate::{analyse, MetricKind};

/// A small deterministic generator: the fleet's shape comes from proptest's seed.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// A value in [lo, hi), sometimes exactly on a threshold the presets use.
    fn value(&mut self, lo: f64, hi: f64, edges: &[f64]) -> f64 {
        if !edges.is_empty() && self.chance(10) {
            return edges[self.below(edges.len() as u64) as usize];
        }
        lo + (hi - lo) * (self.below(10_000) as f64 / 10_000.0)
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Busy,
    Idle,
    /// Quiet on average, busy peaks.
    Spiky,
    /// Idle on some days, busy on the others.
    PartlyIdle,
}

fn build(seed: u64, instances: usize, lookback: u32) -> (Vec<InstanceRecord>, TableMetrics) {
    let mut mix = Mix(seed);
    let mut table = TableMetrics::default();
    let now = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap();
    let mut fleet = Vec::new();
    for n in 0..instances {
        let id = format!("i-{n:017x}");
        let launched = if mix.chance(10) {
            now - Duration::hours(mix.below(24 * i64::from(lookback) as u64) as i64)
        } else {
            now - Duration::days(200)
        };
        let region = ["us-east-1", "eu-west-1"][mix.below(2) as usize];
        fleet.push(InstanceRecord::ordinary(&id, region, "m5.large", launched, 20));
        let shape = [Shape::Busy, Shape::Idle, Shape::Spiky, Shape::PartlyIdle][mix.below(4) as usize];
        let quiet_days = mix.below(u64::from(lookback) + 1);
        let missing_percent = if mix.chance(25) { mix.below(30) } else { 0 };
        let mut columns: Vec<(MetricKind, Vec<Option<f64>>)> =
            MetricKind::STANDARD.iter().map(|k| (*k, Vec::new())).collect();
        for day in 0..lookback {
            let quiet = match shape {
                Shape::Busy => mix.chance(5),
                Shape::Idle => !mix.chance(5),
                Shape::Spiky => true,
                Shape::PartlyIdle => u64::from(day) < quiet_days,
            };
            let avg =
                if quiet { mix.value(0.0, 12.0, &[4.99, 5.0, 10.0, 10.01]) } else { mix.value(8.0, 90.0, &[10.0]) };
            let max = match shape {
                Shape::Spiky => mix.value(avg.max(20.0), 100.0, &[]),
                _ if quiet => mix.value(avg, avg + 6.0, &[5.0]).max(avg),
                _ => mix.value(avg, 100.0, &[]),
            };
            let net = if quiet { mix.value(0.0, 6e6, &[5e6]) } else { mix.value(1e6, 1e10, &[]) } / 2.0;
            let ops = if quiet { mix.value(0.0, 1.2e6, &[1e6]) } else { mix.value(1e5, 1e8, &[]) } / 2.0;
            for (kind, column) in &mut columns {
                let v = match kind {
                    MetricKind::CpuAverage => avg,
                    MetricKind::CpuMaximum => max,
                    MetricKind::NetworkIn | MetricKind::NetworkOut => net,
                    _ => ops,
                };
                column.push((!mix.chance(missing_percent)).then_some(v));
            }
        }
        if mix.chance(30) {
            table.agents.push(id.clone());
            let mem = (0..lookback).map(|_| (!mix.chance(missing_percent)).then(|| mix.value(0.0, 60.0, &[20.0])));
            table.values.insert((id.clone(), MetricKind::MemUsedAverage), mem.collect());
        }
        for (kind, column) in columns {
            table.values.insert((id.clone(), kind), column);
        }
    }
    (fleet, table)
}

fn criteria(mix: &mut Mix, lookback: u32) -> IdleCriteria {
    let preset = if mix.chance(50) { CriteriaPreset::TrustedAdvisor } else { CriteriaPreset::Idle };
    let mut c = IdleCriteria::preset(preset, lookback);
    if mix.chance(20) {
        c.idle.as_mut().unwrap().mem_used_percent = Some(Threshold::below(20.0));
    }
    if mix.chance(20) {
        c.min_days_with_data = 1 + mix.below(u64::from(lookback)) as u32;
    }
    if mix.chance(15) {
        c.idle.as_mut().unwrap().cpu_statistic = finops_core::CpuStatistic::Average;
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn two_stages_give_the_verdicts_and_reasons_of_one(seed in any::<u64>(), instances in 1usize..40, lookback in 3u32..21) {
        let (fleet, table) = build(seed, instances, lookback);
        let criteria = criteria(&mut Mix(seed ^ 0x5eed), lookback);
        let prices: PriceBook<SdkPriceList> = PriceBook::new(None);
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (one, two) = runtime.block_on(async {
            let one = analyse(&table, &prices, &fleet, &criteria, MetricStages::One, now, &finops_core::Silent).await.unwrap();
            let two = analyse(&table, &prices, &fleet, &criteria, MetricStages::Two, now, &finops_core::Silent).await.unwrap();
            (one, two)
        });
        // One summary per instance of the fleet, in its order, from both: a missing or extra one is a difference.
        let ids = |a: &crate::Analysis| a.summaries.iter().map(|s| s.instance_id.clone()).collect::<Vec<_>>();
        let fleet_ids: Vec<String> = fleet.iter().map(|i| i.instance_id.clone()).collect();
        prop_assert_eq!(&ids(&one), &fleet_ids);
        prop_assert_eq!(&ids(&two), &fleet_ids);
        for (a, b) in one.summaries.iter().zip(&two.summaries) {
            prop_assert_eq!(&a.assessment, &b.assessment, "{}: criteria {:?}", &a.instance_id, &criteria);
            prop_assert_eq!(&a.cost, &b.cost);
        }
        prop_assert!(two.metrics_requested <= one.metrics_requested, "{} > {}", two.metrics_requested, one.metrics_requested);
        prop_assert_eq!(one.metrics_requested + two.metrics_requested, table.metrics_requested.load(Ordering::Relaxed));
        let _ = LookbackWindow::ending_before(now, lookback);
    }
}
