//! The Lambda side of the faults: the local Lambda endpoint runs every invocation through [`ChaosFunctions`], which
//! runs the real handlers ([`LocalFunctions`]) and, by the run's plan, makes an invocation fail before it runs, lose
//! its answer after its side effect (Step Functions retries it), run twice with the same input (at-least-once
//! delivery), or time out after doing its work.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use finops_local::{Invoke, LocalFunctions};
use serde_json::Value;

use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepFaultKind {
    /// Lambda refuses the invocation (throttled): nothing ran. Retried.
    Refused,
    /// The handler did its work, then the answer was lost (`Lambda.SdkClientException`). Retried: the retry must
    /// find what was done.
    LostAnswer,
    /// The same input delivered twice (at-least-once); the second answer is the one returned.
    Twice,
    /// The handler did its work and the function then timed out (`Sandbox.Timedout`).
    Timeout,
}

impl StepFaultKind {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Refused => "invoke refused",
            Self::LostAnswer => "lost answer",
            Self::Twice => "delivered twice",
            Self::Timeout => "timed out",
        }
    }
}

/// `step` is a function name, or `finops-actions:<operation>` for one operation of the actions step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFault {
    pub step: &'static str,
    pub kind: StepFaultKind,
    pub probability: f64,
}

/// The step an invocation is, as [`StepFault::step`] names it.
pub fn step_of(function: &str, payload: &Value) -> String {
    match payload["operation"].as_str() {
        Some(op) if function == "finops-actions" => format!("{function}:{op}"),
        _ => function.to_owned(),
    }
}

#[derive(Default)]
pub struct ChaosFunctions {
    current: RwLock<Option<Arc<LocalFunctions>>>,
    plan: Mutex<(Vec<StepFault>, Option<Rng>)>,
    injected: Mutex<BTreeMap<String, u32>>,
    /// Every invocation by step, for the run's line.
    pub invocations: Mutex<BTreeMap<String, u32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChaosFunctions {
    /// The next run's functions (built from its environment) and its faults.
    pub fn install(&self, functions: LocalFunctions, faults: Vec<StepFault>, seed: u64) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(functions));
        *lock(&self.plan) = (faults, Some(Rng::new(seed)));
        lock(&self.injected).clear();
        lock(&self.invocations).clear();
    }

    pub fn injected(&self) -> BTreeMap<String, u32> {
        lock(&self.injected).clone()
    }

    fn draw(&self, step: &str) -> Option<StepFaultKind> {
        let mut plan = lock(&self.plan);
        let (faults, rng) = &mut *plan;
        let rng = rng.as_mut()?;
        let kind = faults.iter().filter(|f| f.step == step).find(|f| rng.chance(f.probability)).map(|f| f.kind)?;
        *lock(&self.injected).entry(format!("{} {step}", kind.label())).or_default() += 1;
        Some(kind)
    }
}

impl Invoke for ChaosFunctions {
    async fn invoke(&self, function: &str, payload: Value) -> Result<Value, (String, String)> {
        let functions = self.current.read().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(|| {
            ("Lambda.ServiceException".to_owned(), "no functions are installed for this run".to_owned())
        })?;
        let step = step_of(function, &payload);
        *lock(&self.invocations).entry(step.clone()).or_default() += 1;
        match self.draw(&step) {
            None => functions.invoke(function, payload).await,
            Some(StepFaultKind::Refused) => Err((
                "Lambda.TooManyRequestsException".into(),
                format!("{step}: rate exceeded (injected; the handler did not run)"),
            )),
            Some(StepFaultKind::LostAnswer) => {
                let _done = functions.invoke(function, payload).await;
                Err((
                    "Lambda.SdkClientException".into(),
                    format!("{step}: the connection closed before the answer (injected after the handler ran)"),
                ))
            }
            Some(StepFaultKind::Twice) => {
                let _first = functions.invoke(function, payload.clone()).await;
                functions.invoke(function, payload).await
            }
            Some(StepFaultKind::Timeout) => {
                let _done = functions.invoke(function, payload).await;
                Err((
                    "Sandbox.Timedout".into(),
                    format!("{step}: Task timed out after 30.00 seconds (injected after the handler ran)"),
                ))
            }
        }
    }
}
