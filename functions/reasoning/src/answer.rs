//! Turning a model's answer into recommendations. Nothing a model writes can crash the step: prose, partial
//! JSON, unknown fields, ids outside the shortlist, out-of-range values and oversized answers are caught, and every
//! shortlisted instance without a valid answer gets the rules backend's recommendation, marked with why.

use std::collections::{HashMap, HashSet};

use finops_core::policy::{Recommendation, RecommendedAction};
pub use finops_core::steps::Discarded;
use finops_core::UtilisationSummary;
use serde::Deserialize;

use crate::rules;

/// Longest answer accepted at all (a 200-instance shortlist needs about 150 KB).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;
pub const MAX_JUSTIFICATION_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelAnswer {
    recommendations: Vec<ModelRecommendation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ModelRecommendation {
    instance_id: String,
    action: RecommendedAction,
    confidence: f64,
    justification: String,
    #[serde(default)]
    evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub recommendations: Vec<Recommendation>,
    pub discarded: Vec<Discarded>,
    pub fallbacks: usize,
}

/// The JSON object in an answer: the whole answer, or one fenced ```json block (models add fences even when asked
/// not to). Anything else is prose.
fn json_body(text: &str) -> Option<&str> {
    let t = text.trim();
    if t.starts_with('{') {
        return Some(t);
    }
    let inner = t.strip_prefix("```json").or_else(|| t.strip_prefix("```"))?;
    inner.trim_end().strip_suffix("```").map(str::trim)
}

/// Validates `answer` against the shortlist (`summaries`, in order); `backend` names the model backend.
pub fn validate(answer: &str, summaries: &[&UtilisationSummary], backend: &str, trace_id: Option<&str>) -> Validated {
    let whole_answer_problem = if answer.len() > MAX_ANSWER_BYTES {
        Some(format!("answer of {} bytes exceeds {MAX_ANSWER_BYTES}", answer.len()))
    } else {
        match json_body(answer).map(serde_json::from_str::<ModelAnswer>) {
            None => Some("answer is not JSON".to_string()),
            Some(Err(e)) => Some(format!("answer does not match the schema: {e}")),
            Some(Ok(_)) => None,
        }
    };
    let parsed: Vec<ModelRecommendation> = match whole_answer_problem {
        Some(_) => Vec::new(),
        None => json_body(answer)
            .and_then(|b| serde_json::from_str::<ModelAnswer>(b).ok())
            .map(|a| a.recommendations)
            .unwrap_or_default(),
    };

    let shortlisted: HashSet<&str> = summaries.iter().map(|s| s.instance_id.as_str()).collect();
    let mut accepted: HashMap<String, Recommendation> = HashMap::new();
    let mut problems: HashMap<String, String> = HashMap::new();
    let mut discarded = Vec::new();
    for r in parsed {
        if !shortlisted.contains(r.instance_id.as_str()) {
            discarded.push(Discarded { instance_id: r.instance_id, reason: "not in the shortlist".into() });
            continue;
        }
        if accepted.contains_key(&r.instance_id) || problems.contains_key(&r.instance_id) {
            discarded
                .push(Discarded { instance_id: r.instance_id, reason: "second answer for the same instance".into() });
            continue;
        }
        let problem = if !r.confidence.is_finite() || !(0.0..=1.0).contains(&r.confidence) {
            Some(format!("confidence {} outside 0..1", r.confidence))
        } else if r.justification.chars().count() > MAX_JUSTIFICATION_CHARS {
            Some(format!("justification longer than {MAX_JUSTIFICATION_CHARS} characters"))
        } else if r.justification.trim().is_empty() {
            Some("empty justification".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => {
                problems.insert(r.instance_id, p);
            }
            None => {
                accepted.insert(
                    r.instance_id.clone(),
                    Recommendation {
                        instance_id: r.instance_id,
                        action: r.action,
                        confidence: r.confidence,
                        justification: r.justification,
                        backend: backend.to_owned(),
                        evidence: r.evidence.into_iter().take(10).map(|e| e.chars().take(200).collect()).collect(),
                        trace_id: trace_id.map(str::to_owned),
                    },
                );
            }
        }
    }

    let mut fallbacks = 0;
    let recommendations = summaries
        .iter()
        .map(|s| match accepted.remove(&s.instance_id) {
            Some(r) => r,
            None => {
                fallbacks += 1;
                let why = whole_answer_problem
                    .clone()
                    .or_else(|| problems.get(&s.instance_id).cloned())
                    .unwrap_or_else(|| "no answer for this instance".into());
                let mut r = rules::recommend(s);
                r.backend = format!("rules (fallback: {why})");
                r.trace_id = trace_id.map(str::to_owned);
                r
            }
        })
        .collect();
    Validated { recommendations, discarded, fallbacks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use finops_core::criteria::{CriteriaPreset, IdleCriteria};
    use finops_core::{CostEstimate, DailyUtilisation, IdleVerdict, InstanceRecord, LookbackWindow};

    fn summary(id: &str, idle: bool) -> UtilisationSummary {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        let w = LookbackWindow::ending_before(now, 14);
        let days: Vec<DailyUtilisation> = w
            .days_iter()
            .map(|day| DailyUtilisation {
                day,
                cpu_avg_percent: Some(if idle { 0.5 } else { 50.0 }),
                cpu_max_percent: Some(if idle { 1.0 } else { 90.0 }),
                network_bytes: Some(1000.0),
                disk_ops: None,
                mem_used_percent: None,
            })
            .collect();
        let instance: InstanceRecord = serde_json::from_value(serde_json::json!({
            "instanceId": id, "region": "us-east-1", "instanceType": "t3.micro", "state": "running",
            "launchTime": "2025-01-01T00:00:00Z", "lifecycle": "on-demand", "platform": "Linux/UNIX", "rootDeviceType": "ebs"
        }))
        .unwrap();
        let assessment =
            IdleCriteria::preset(CriteriaPreset::TrustedAdvisor, 14).assess(&w, instance.launch_time, &days);
        UtilisationSummary {
            instance_id: id.into(),
            region: "us-east-1".into(),
            stats: Default::default(),
            cost: CostEstimate::new(&instance, assessment.verdict, None, &[]),
            assessment,
            days,
        }
    }

    fn two() -> (UtilisationSummary, UtilisationSummary) {
        (summary("i-a", true), summary("i-b", false))
    }

    fn answer_for(entries: &str) -> String {
        format!("{{\"recommendations\": [{entries}]}}")
    }

    const GOOD_A: &str = r#"{"instanceId": "i-a", "action": "snapshot_and_stop", "confidence": 0.9, "justification": "idle 14 days", "evidence": ["peak CPU 1%"]}"#;
    const GOOD_B: &str = r#"{"instanceId": "i-b", "action": "keep", "confidence": 0.7, "justification": "busy"}"#;

    #[test]
    fn a_valid_answer_is_used_as_is() {
        let (a, b) = two();
        let v = validate(&answer_for(&format!("{GOOD_A},{GOOD_B}")), &[&a, &b], "agent", Some("sess-1"));
        assert_eq!(v.fallbacks, 0);
        assert_eq!(v.recommendations[0].backend, "agent");
        assert_eq!(v.recommendations[0].action, RecommendedAction::SnapshotAndStop);
        assert_eq!(v.recommendations[0].evidence, ["peak CPU 1%"]);
        assert_eq!(v.recommendations[0].trace_id.as_deref(), Some("sess-1"));
        assert_eq!(v.recommendations[1].action, RecommendedAction::Keep);
    }

    #[test]
    fn fenced_json_is_accepted() {
        let (a, b) = two();
        let v =
            validate(&format!("```json\n{}\n```", answer_for(&format!("{GOOD_A},{GOOD_B}"))), &[&a, &b], "agent", None);
        assert_eq!(v.fallbacks, 0);
    }

    #[test]
    fn unusable_answers_fall_back_to_rules_for_everyone_with_the_reason() {
        let (a, b) = two();
        let big = answer_for(&format!("{GOOD_A},{}", GOOD_B.replace("busy", &"x".repeat(MAX_ANSWER_BYTES))));
        for (text, why) in [
            ("Sure! I recommend stopping i-a because it is idle.", "not JSON"),
            (r#"{"recommendations": [{"instanceId": "i-a", "action": "snapsh"#, "schema"),
            (
                &*answer_for(
                    r#"{"instanceId": "i-a", "action": "stop", "confidence": 1, "justification": "x", "override": true}"#,
                ),
                "schema",
            ),
            (
                &*answer_for(
                    r#"{"instanceId": "i-a", "action": "shutdown_everything", "confidence": 1, "justification": "x"}"#,
                ),
                "schema",
            ),
            (r#"{"recs": []}"#, "schema"),
            ("", "not JSON"),
            (&*big, "exceeds"),
        ] {
            let v = validate(text, &[&a, &b], "agent", None);
            assert_eq!(v.fallbacks, 2, "{text:.80}");
            assert!(
                v.recommendations.iter().all(|r| r.backend.starts_with("rules (fallback: ") && r.backend.contains(why)),
                "{:?}",
                v.recommendations[0].backend
            );
            assert_eq!(
                v.recommendations[0].action,
                RecommendedAction::SnapshotAndStop,
                "rules: Idle -> snapshot_and_stop"
            );
            assert_eq!(v.recommendations[1].action, RecommendedAction::Keep);
        }
    }

    #[test]
    fn per_instance_problems_fall_back_only_that_instance() {
        let (a, b) = two();
        let bad_confidence = GOOD_B.replace("0.7", "7");
        let v = validate(&answer_for(&format!("{GOOD_A},{bad_confidence}")), &[&a, &b], "agent", None);
        assert_eq!(v.fallbacks, 1);
        assert_eq!(v.recommendations[0].backend, "agent");
        assert!(v.recommendations[1].backend.contains("confidence 7 outside 0..1"));
        let long = GOOD_B.replace("busy", &"y".repeat(501));
        let v = validate(&answer_for(&format!("{GOOD_A},{long}")), &[&a, &b], "agent", None);
        assert!(v.recommendations[1].backend.contains("longer than 500"));
        let v = validate(&answer_for(GOOD_A), &[&a, &b], "agent", None);
        assert!(v.recommendations[1].backend.contains("no answer for this instance"));
    }

    #[test]
    fn ids_outside_the_shortlist_and_duplicates_are_discarded() {
        let (a, b) = two();
        let hallucinated = GOOD_A.replace("i-a", "i-prod-db-001");
        let second_a = GOOD_A.replace("snapshot_and_stop", "keep");
        let v =
            validate(&answer_for(&format!("{GOOD_A},{hallucinated},{second_a},{GOOD_B}")), &[&a, &b], "agent", None);
        assert_eq!(v.recommendations.len(), 2, "only shortlisted instances come out");
        assert_eq!(v.recommendations[0].action, RecommendedAction::SnapshotAndStop, "the first answer counts");
        let reasons: Vec<(&str, &str)> =
            v.discarded.iter().map(|d| (d.instance_id.as_str(), d.reason.as_str())).collect();
        assert_eq!(
            reasons,
            [("i-prod-db-001", "not in the shortlist"), ("i-a", "second answer for the same instance")]
        );
        let _ = IdleVerdict::Idle;
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Pieces a model's answer is made of, right and wrong: real and hallucinated ids, valid and invalid
        /// actions, confidences in and out of range, long, hostile and non-ASCII text, extra fields.
        fn entry() -> impl Strategy<Value = String> {
            let id = prop_oneof![Just("i-a".to_string()), Just("i-b".to_string()), "i-[0-9a-f]{1,17}", ".{0,20}"];
            let action = prop_oneof![
                Just("snapshot_and_stop".to_string()),
                Just("keep".to_string()),
                Just("rightsize".to_string()),
                "[a-z_]{0,20}"
            ];
            let confidence = prop_oneof![
                (0.0f64..=1.0).prop_map(|c| c.to_string()),
                any::<f64>().prop_map(|c| format!("{c:?}")),
                Just("\"0.9\"".to_string()),
                Just("1e999".to_string()),
                Just("null".to_string())
            ];
            let text = prop_oneof![".{0,80}", "[\\u{0}-\\u{ffff}]{0,40}", Just("x".repeat(600))];
            (id, action, confidence, text, any::<bool>()).prop_map(|(id, action, confidence, text, extra)| {
                let mut e = serde_json::json!({"instanceId": id, "action": action, "justification": text});
                let mut s = e.to_string();
                s.insert_str(s.len() - 1, &format!(",\"confidence\":{confidence}"));
                if extra {
                    e["override"] = true.into();
                    s.insert_str(s.len() - 1, ",\"override\":true");
                }
                s
            })
        }

        /// An answer: prose, a JSON answer built from pieces, or a valid answer cut or spliced at random.
        fn answer() -> impl Strategy<Value = String> {
            let built = || prop::collection::vec(entry(), 0..6).prop_map(|es| answer_for(&es.join(",")));
            let mangled = (0usize..200, 0usize..40, ".{0,10}").prop_map(|(at, cut, insert)| {
                let good = answer_for(&format!("{GOOD_A},{GOOD_B}"));
                let at = good.char_indices().map(|(i, _)| i).nth(at % good.chars().count()).unwrap_or(0);
                let end = good[at..].char_indices().map(|(i, _)| at + i).nth(cut).unwrap_or(good.len());
                format!("{}{insert}{}", &good[..at], &good[end..])
            });
            let fenced = built().prop_map(|a| format!("```json\n{a}\n```"));
            prop_oneof![".{0,300}", built(), mangled, fenced]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: finops_core::fuzz_cases(), failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever the model writes: no panic, one recommendation per shortlisted instance in shortlist order,
            /// never an id from outside it, confidences within 0..=1, justifications within the limit.
            #[test]
            fn any_answer_gives_one_bounded_recommendation_per_shortlisted_instance(text in answer()) {
                let (a, b) = two();
                let v = validate(&text, &[&a, &b], "agent", None);
                let ids: Vec<&str> = v.recommendations.iter().map(|r| r.instance_id.as_str()).collect();
                prop_assert_eq!(ids, ["i-a", "i-b"]);
                prop_assert!(v.fallbacks <= 2);
                for r in &v.recommendations {
                    prop_assert!((0.0..=1.0).contains(&r.confidence), "{}", r.confidence);
                    prop_assert!(r.justification.chars().count() <= MAX_JUSTIFICATION_CHARS + 200);
                }
                prop_assert!(v.discarded.len() <= 6);
            }
        }
    }
}
