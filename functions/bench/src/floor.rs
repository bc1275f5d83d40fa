//! The metrics handler's CPU against a floor measured on the same data, so that the figure means the same on any
//! machine: the handler is fed GetMetricData answers as CloudWatch sends them (JSON, recorded once from the
//! synthetic fleet), and the floor is the CPU of only reading those same answers into the step's types. The handler
//! cannot do less than read its input; the ratio says how much more it does (target: at most 2x). A second floor
//! adds the rest of the step's input and output (reading the inventory document, writing the utilisation document):
//! against it, the ratio is the handler's own work.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use finops_aws::FinopsError;
use finops_core::steps::{InventoryDocument, UtilisationDocument};
use finops_core::LookbackWindow;
use finops_metrics::synthetic::SyntheticMetrics;
use finops_metrics::{MetricDataPage, MetricQuery, MetricSeries, MetricsApi};
use finops_testkit::process_cpu_time;
use serde::{Deserialize, Serialize};

/// GetMetricData's answer in CloudWatch's JSON protocol (the fields the step reads; timestamps in epoch seconds).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    metric_data_results: Vec<AnswerSeries>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnswerSeries {
    id: String,
    label: String,
    timestamps: Vec<f64>,
    values: Vec<f64>,
    status_code: String,
}

/// One call's key: its region, page token, how many queries and the first and last of them (id, metric,
/// dimensions). Not the order of calls (they run concurrently), nor the ids alone (each stage numbers its queries
/// from q0 again). Cheap, since the replay's lookups count in the handler's CPU; the recorder refuses two calls with
/// one key.
fn key(region: &str, queries: &[MetricQuery], next_token: &Option<String>) -> String {
    let mut key = format!("{region}|{}|{}", next_token.as_deref().unwrap_or_default(), queries.len());
    for q in queries.first().into_iter().chain(queries.last()) {
        key.push_str(&format!("|{}:{:?}", q.id, q.kind));
        for (name, value) in q.dimensions.iter() {
            key.push_str(&format!(":{name}={value}"));
        }
    }
    key
}

/// Reads one recorded answer into the step's types: what any CloudWatch client must do at the least.
fn read(bytes: &[u8]) -> MetricDataPage {
    let answer: Answer = serde_json::from_slice(bytes).expect("a recorded GetMetricData answer");
    MetricDataPage {
        series: answer
            .metric_data_results
            .into_iter()
            .map(|s| MetricSeries {
                id: s.id,
                timestamps: s.timestamps.into_iter().map(|t| t as i64).collect(),
                values: s.values,
            })
            .collect(),
        next_token: answer.next_token,
    }
}

/// ListMetrics' memory dimensions by region, then by instance id, as the handler was told them.
type MemoryByRegion = HashMap<String, HashMap<String, Vec<(String, String)>>>;

/// The synthetic CloudWatch, with every answer it gives written down as CloudWatch would send it.
pub struct Recorder {
    pub inner: SyntheticMetrics,
    answers: Mutex<HashMap<String, Vec<u8>>>,
    memory: Mutex<MemoryByRegion>,
}

impl Recorder {
    pub fn new(inner: SyntheticMetrics) -> Self {
        Self { inner, answers: Mutex::default(), memory: Mutex::default() }
    }

    pub fn into_replay(self) -> Replay {
        Replay {
            answers: self.answers.into_inner().unwrap_or_else(|p| p.into_inner()),
            memory: self.memory.into_inner().unwrap_or_else(|p| p.into_inner()),
        }
    }
}

impl MetricsApi for Recorder {
    async fn memory_dimensions(&self, region: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        let found = self.inner.memory_dimensions(region).await?;
        self.memory.lock().unwrap_or_else(|p| p.into_inner()).insert(region.to_owned(), found.clone());
        Ok(found)
    }

    async fn get_metric_data(
        &self,
        region: &str,
        queries: &[MetricQuery],
        window: &LookbackWindow,
        next_token: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        let k = key(region, queries, &next_token);
        let page = self.inner.get_metric_data(region, queries, window, next_token).await?;
        let answer = Answer {
            metric_data_results: page
                .series
                .iter()
                .map(|s| AnswerSeries {
                    id: s.id.clone(),
                    label: s.id.clone(),
                    timestamps: s.timestamps.iter().map(|&t| t as f64).collect(),
                    values: s.values.clone(),
                    status_code: "Complete".into(),
                })
                .collect(),
            next_token: page.next_token.clone(),
        };
        let bytes = serde_json::to_vec(&answer).expect("an answer");
        let earlier = self.answers.lock().unwrap_or_else(|p| p.into_inner()).insert(k, bytes);
        assert!(earlier.is_none(), "two calls with one key: the replay could not tell them apart");
        Ok(page)
    }
}

/// A CloudWatch that answers each call with its recorded bytes, read as a client reads them.
pub struct Replay {
    answers: HashMap<String, Vec<u8>>,
    memory: MemoryByRegion,
}

impl Replay {
    /// The answers' size, bytes, and how many.
    pub fn size(&self) -> (usize, usize) {
        (self.answers.values().map(Vec::len).sum(), self.answers.len())
    }

    /// The floor: the least CPU reading every recorded answer takes, over `rounds` rounds.
    pub fn floor(&self, rounds: usize) -> Duration {
        least_of(rounds, || {
            for bytes in self.answers.values() {
                std::hint::black_box(read(bytes));
            }
        })
    }

    /// The rest of the step's input and output, to add to [`Replay::floor`]: reading the inventory document and
    /// writing the utilisation document the handler wrote (the same bytes), over `rounds` rounds.
    pub fn documents_floor(inventory: &[u8], utilisation: &[u8], rounds: usize) -> Duration {
        let document: UtilisationDocument = serde_json::from_slice(utilisation).expect("the utilisation document");
        least_of(rounds, || {
            std::hint::black_box(serde_json::from_slice::<InventoryDocument>(inventory).expect("the inventory"));
            let mut written = Vec::with_capacity(utilisation.len());
            serde_json::to_writer(&mut written, &document).expect("a document");
            std::hint::black_box(written);
        })
    }
}

/// The least CPU `work` takes over `rounds` rounds (noise only adds).
fn least_of(rounds: usize, mut work: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let before = process_cpu_time();
            work();
            process_cpu_time() - before
        })
        .min()
        .unwrap_or_default()
}

impl MetricsApi for Replay {
    async fn memory_dimensions(&self, region: &str) -> Result<HashMap<String, Vec<(String, String)>>, FinopsError> {
        Ok(self.memory.get(region).cloned().unwrap_or_default())
    }

    async fn get_metric_data(
        &self,
        region: &str,
        queries: &[MetricQuery],
        _window: &LookbackWindow,
        next_token: Option<String>,
    ) -> Result<MetricDataPage, FinopsError> {
        let bytes = self.answers.get(&key(region, queries, &next_token)).unwrap_or_else(|| {
            panic!(
                "no recorded answer for a call of {} queries: the handler asked what it did not ask before",
                queries.len()
            )
        });
        Ok(read(bytes))
    }
}
