//! `make chaos`: runs `CHAOS_RUNS` complete workflows (default 50) on one moto, through the real state machine and
//! the real handlers, each with a random fleet and a random fault plan drawn from its seed, and checks the safety
//! invariants after every run, on `CHAOS_WORKERS` workers (default 2), each with its own moto. Prints each run's seed (replay one with `CHAOS_SEED=<seed> CHAOS_RUNS=1`), then a
//! table of faults injected, outcomes and every invariant's violations, and exits non-zero on any violation.

mod approver;
mod fleet;
mod functions;
mod invariants;
mod plan;
mod proxy;
mod rng;
mod run;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use finops_local::serve;
use finops_testkit::moto::{sdk_config, MotoServer};
use finops_testkit::workflow::WorkflowTimings;

use crate::functions::ChaosFunctions;
use crate::invariants::INVARIANTS;
use crate::proxy::FaultProxy;
use crate::run::{run_watched, Harness, RunResult};

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = value.trim().parse::<u64>().ok().or_else(|| {
        u64::from_str_radix(value.trim().trim_start_matches("0x"), 16).ok().filter(|_| value.starts_with("0x"))
    });
    match parsed {
        Some(n) => Some(n),
        None => {
            eprintln!("finops-chaos: {name}={value:?} is not a number");
            std::process::exit(2);
        }
    }
}

/// One worker's AWS: a moto whose Step Functions interpreter calls this worker's Lambda endpoint, the fault proxy in
/// front of it, and the functions that endpoint runs.
async fn harness(proxy_seed: u64) -> (Harness, MotoServer) {
    // An execution is stopped past 150 s; setup, undo links and the evidence take well under a minute more.
    let deadline = Duration::from_secs(150);
    let lambda = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the Lambda endpoint");
    let lambda_port = lambda.local_addr().expect("address").port();
    let moto = MotoServer::start_with_env(&[("MOTO_PORT", lambda_port.to_string())]).await;
    let moto_addr = ([127, 0, 0, 1], moto.port).into();
    let proxy = FaultProxy::start(moto_addr, proxy_seed).await;
    let functions = Arc::new(ChaosFunctions::default());
    tokio::spawn(serve(lambda, functions.clone(), moto_addr));
    let harness = Harness {
        moto_port: moto.port,
        direct: sdk_config(&moto.endpoint, "ap-southeast-2").await,
        faulty: sdk_config(&proxy.endpoint, "ap-southeast-2").await,
        proxy,
        functions,
        timings: WorkflowTimings {
            // Long enough for the approval map to start waiting after the digest, under faults.
            approval_timeout_seconds: 5,
            snapshot_poll_seconds: 1,
            max_snapshot_checks: 5,
            max_proposals: 10,
            deployment_mode: "act",
            fan_out: false,
        },
        deadline,
        budget: deadline * 2,
        calm: false,
        undo_chance: 1.0 / 3.0,
    };
    (harness, moto)
}

/// One worker: its harness (rebuilt after a hang), how its harness is set, and the image its fleets boot.
struct Worker {
    proxy_seed: u64,
    configure: fn(&mut Harness),
    harness: Harness,
    _moto: MotoServer,
    image_id: Option<String>,
}

impl Worker {
    async fn start(proxy_seed: u64, configure: fn(&mut Harness)) -> Self {
        let (mut harness, moto) = harness(proxy_seed).await;
        configure(&mut harness);
        Self { proxy_seed, configure, harness, _moto: moto, image_id: None }
    }

    /// One run under the watchdog. After a hang or a panic, what the abandoned run left going (its execution in moto,
    /// calling this worker's Lambda endpoint; the proxy's faults) must not reach the next run's evidence: a new moto,
    /// proxy and endpoint.
    async fn run(&mut self, seed: u64) -> RunResult {
        let result = run_watched(&self.harness, seed, &mut self.image_id).await;
        if result.is_harness_failure() {
            let budget = self.harness.budget;
            let fresh = Worker::start(self.proxy_seed ^ seed, self.configure).await;
            *self = fresh;
            self.harness.budget = budget;
        }
        result
    }
}

/// The run each worker is on, for a watchdog outside the runtime: the runtime's own timeout (`run_watched`) cannot
/// fire if something blocks both of its threads, so a plain thread ends the batch then, naming the run.
#[derive(Clone, Default)]
struct Running(Arc<std::sync::Mutex<BTreeMap<u64, RunStarted>>>);

/// A worker's current run: its seed, when it started, its budget.
type RunStarted = (u64, Instant, Duration);

impl Running {
    fn started(&self, worker: u64, seed: u64, budget: Duration) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(worker, (seed, Instant::now(), budget));
    }

    fn watch_from_outside(&self) {
        let running = self.0.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            let runs = running.lock().unwrap_or_else(|p| p.into_inner()).clone();
            // A minute past the budget: the runtime's watchdog had its chance.
            if let Some((seed, _, _)) =
                runs.values().find(|(_, at, budget)| at.elapsed() > *budget + Duration::from_secs(60))
            {
                eprintln!(
                    "chaos: harness failure: the run of seed {seed} is past its budget and the runtime did not end it (its threads are blocked); replay with CHAOS_SEED={seed} CHAOS_RUNS=1"
                );
                std::process::exit(3);
            }
        });
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_number("CHAOS_RUNS").unwrap_or(50);
    let first_seed = env_number("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });

    // Runs mostly wait (approval windows, retry intervals): workers, each with its own moto, share the cores. A run
    // takes about 3.5 s of CPU and 11 s of wall time (measured on 2 cores), so four workers per core keep them busy.
    let cores = std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(2);
    let workers = env_number("CHAOS_WORKERS").unwrap_or(cores * 4).clamp(1, 8).min(runs.max(1));
    eprintln!("chaos: {runs} runs on {workers} workers from seed {first_seed} (run n uses seed {first_seed} + n - 1; replay one with CHAOS_SEED=<its seed> CHAOS_RUNS=1)");
    let started = Instant::now();
    let running = Running::default();
    running.watch_from_outside();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let running = running.clone();
        tasks.push(tokio::spawn(async move {
            let mut chaos = Worker::start(first_seed ^ worker, |_| {}).await;
            let mut results = Vec::new();
            for n in (worker..runs).step_by(workers as usize) {
                let seed = first_seed.wrapping_add(n);
                running.started(worker, seed, chaos.harness.budget);
                let r = chaos.run(seed).await;
                eprintln!(
                    "run {:>4} seed {seed}: {:>5.1}s (setup {:.1}s, execution {:.1}s) {:<9} fleet {} proposed {} approved {} stopped {} undone {} {:?}{} | {}",
                    n + 1,
                    r.seconds,
                    r.setup_seconds,
                    r.execution_seconds,
                    r.status,
                    r.fleet,
                    r.proposed,
                    r.approved,
                    r.stopped,
                    r.undone,
                    r.outcomes,
                    if r.violations.is_empty() { String::new() } else { format!(" VIOLATIONS {}", r.violations.len()) },
                    r.plan
                );
                if let Some(failure) = &r.failure {
                    eprintln!("     failure notice: {}", failure.chars().take(400).collect::<String>());
                }
                for v in &r.violations {
                    eprintln!("     invariant {}: {}", INVARIANTS[v.invariant - 1], v.what);
                }
                results.push((n, r));
            }
            drop(chaos);
            results
        }));
    }
    let mut results: Vec<(u64, RunResult)> = Vec::new();
    for task in tasks {
        results.extend(task.await.expect("a chaos worker panicked"));
    }
    results.sort_by_key(|(n, _)| *n);
    let results: Vec<RunResult> = results.into_iter().map(|(_, r)| r).collect();
    let total = started.elapsed().as_secs_f64();
    print_table(&results, total, first_seed, workers);
    let harness_failures: Vec<u64> = results.iter().filter(|r| r.is_harness_failure()).map(|r| r.seed).collect();
    if !harness_failures.is_empty() {
        println!("\nharness failures: runs that hung past their budget or whose harness panicked (replay with CHAOS_SEED=<seed> CHAOS_RUNS=1): {harness_failures:?}");
    }
    let vacuous = vacuous(&results);
    if let Some(why) = &vacuous {
        println!("\nthe batch tested nothing: {why}");
    }
    if results.iter().any(|r| !r.violations.is_empty()) || !harness_failures.is_empty() || vacuous.is_some() {
        std::process::exit(1);
    }
}

/// Batches this long or longer must have approved and stopped something.
const FLOOR_RUNS: usize = 10;

/// Why a batch of at least [`FLOOR_RUNS`] runs tested nothing, if it did: no approve accepted, or nothing stopped
/// or deleted, and every invariant about them held only because there was nothing to check.
fn vacuous(results: &[RunResult]) -> Option<String> {
    if results.len() < FLOOR_RUNS {
        return None;
    }
    let approved: usize = results.iter().map(|r| r.approved).sum();
    let acted: usize = results.iter().map(|r| r.stopped + r.deleted).sum();
    (approved == 0 || acted == 0)
        .then(|| format!("{} runs, {approved} approvals accepted, {acted} stops and deletions", results.len()))
}

fn print_table(results: &[RunResult], seconds: f64, first_seed: u64, workers: u64) {
    let runs = results.len().max(1);
    let run_seconds: f64 = results.iter().map(|r| r.seconds).sum();
    println!(
        "\n===== finops chaos: {} runs in {seconds:.0} s on {workers} workers ({:.1} s of wall time a run; a run takes {:.1} s), seeds {first_seed}..{} =====",
        results.len(),
        seconds / runs as f64,
        run_seconds / runs as f64,
        first_seed.wrapping_add(results.len().saturating_sub(1) as u64)
    );
    let mut faults: BTreeMap<String, u32> = BTreeMap::new();
    let mut behaviours: BTreeMap<&str, u32> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut statuses: BTreeMap<&str, u32> = BTreeMap::new();
    for r in results {
        for (k, v) in &r.faults {
            *faults.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &r.behaviours {
            *behaviours.entry(k).or_default() += v;
        }
        for (k, v) in &r.outcomes {
            *outcomes.entry(k.clone()).or_default() += v;
        }
        *statuses.entry(r.status.as_str()).or_default() += 1;
    }
    println!("\nfaults injected ({} in all)", faults.values().sum::<u32>());
    for (k, v) in &faults {
        println!("  {k:<52} {v:>6}");
    }
    println!("\napprover behaviours (one per approval email)");
    for (k, v) in &behaviours {
        println!("  {k:<52} {v:>6}");
    }
    println!("\noutcomes");
    for (k, v) in &statuses {
        println!("  runs {k:<47} {v:>6}");
    }
    let sum = |f: fn(&RunResult) -> usize| results.iter().map(f).sum::<usize>();
    println!("  {:<52} {:>6}", "instances and volumes in the fleets", sum(|r| r.fleet));
    println!("  {:<52} {:>6}", "proposals", sum(|r| r.proposed));
    println!("  {:<52} {:>6}", "approvals accepted by the page (HTTP 200)", sum(|r| r.approved));
    println!("  {:<52} {:>6}", "instances stopped", sum(|r| r.stopped));
    println!("  {:<52} {:>6}", "unattached volumes deleted", sum(|r| r.deleted));
    println!("  {:<52} {:>6}", "stops and deletions undone with their link", sum(|r| r.undone));
    for (k, v) in &outcomes {
        println!("  proposal outcome {k:<35} {v:>6}");
    }
    println!("\ninvariants                                             violations");
    for (i, name) in INVARIANTS.iter().enumerate() {
        let n: usize = results.iter().map(|r| r.violations.iter().filter(|v| v.invariant == i + 1).count()).sum();
        println!("  {name:<52} {n:>6}");
    }
    let failing: Vec<u64> = results.iter().filter(|r| !r.violations.is_empty()).map(|r| r.seed).collect();
    if !failing.is_empty() {
        println!("\nruns with violations (replay with CHAOS_SEED=<seed> CHAOS_RUNS=1): {failing:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_batch_that_approved_or_stopped_nothing_fails() {
        let run = |approved: usize, stopped: usize| RunResult { approved, stopped, ..RunResult::default() };
        assert_eq!(vacuous(&vec![run(0, 0); FLOOR_RUNS - 1]), None, "too short to say");
        assert!(vacuous(&vec![run(0, 0); FLOOR_RUNS]).is_some());
        let mut some = vec![run(0, 0); FLOOR_RUNS];
        some[3] = run(2, 0);
        assert!(vacuous(&some).is_some(), "approved, nothing stopped");
        some[5] = run(0, 1);
        assert_eq!(vacuous(&some), None);
    }

    /// No faults, every undo link mailed followed, and an approval window long enough that approvers answer in time
    /// on a loaded machine (the test binaries run side by side).
    fn calm(harness: &mut Harness) {
        harness.calm = true;
        harness.undo_chance = 1.0;
        harness.timings.approval_timeout_seconds = 15;
    }

    /// How a test run is set up.
    enum Trial {
        /// Calm, under a budget it has time for.
        Calm(u64),
        /// Under a budget far too short for any run.
        PastBudget(u64),
        /// On a harness whose moto does not answer: its first call panics.
        MotoGone(u64),
    }

    /// One calm worker: its runs' results, in order, each under the watchdog.
    async fn calm_worker(proxy_seed: u64, trials: Vec<Trial>) -> Vec<RunResult> {
        let mut worker = Worker::start(proxy_seed, calm).await;
        let mut results = Vec::new();
        for trial in trials {
            worker.harness.budget = Duration::from_secs(240);
            let seed = match trial {
                Trial::Calm(seed) => seed,
                Trial::PastBudget(seed) => {
                    worker.harness.budget = Duration::from_millis(200);
                    seed
                }
                Trial::MotoGone(seed) => {
                    // Port 1: nothing listens there.
                    worker.harness.moto_port = 1;
                    seed
                }
            };
            results.push(worker.run(seed).await);
        }
        results
    }

    /// Two runs at once on the two worker threads this 2-core machine gives a runtime, each following every undo link
    /// it was mailed: approval pages, approvers and undo posts share the one runtime, and neither run may wait on the
    /// other (a blocking HTTP client here once held both threads while the page it waited for needed one: a batch
    /// hung). Then a run past its budget and a run whose harness panics: each reported as a harness failure with its
    /// seed, and the worker goes on, on a new harness.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runs_at_once_follow_their_undo_links_and_a_hang_or_a_panic_is_a_harness_failure() {
        use Trial::{Calm, MotoGone, PastBudget};
        let first = tokio::spawn(calm_worker(1, vec![Calm(11)]));
        let second = tokio::spawn(calm_worker(2, vec![Calm(12), PastBudget(13), MotoGone(15), Calm(14)]));
        let (first, second) = (first.await.expect("worker 1"), second.await.expect("worker 2"));
        for r in [&first[0], &second[0], &second[3]] {
            assert_eq!(r.status, "SUCCEEDED", "seed {}: {:?}", r.seed, r.failure);
            assert!(r.violations.is_empty(), "seed {}: {:?}", r.seed, r.violations);
        }
        for r in [&first[0], &second[0]] {
            assert!(r.undone > 0, "seed {}: no undo link was followed to its end ({} stopped)", r.seed, r.stopped);
        }
        let (hung, panicked) = (&second[1], &second[2]);
        assert_eq!(hung.status, run::HUNG);
        assert!(hung.failure.as_deref().is_some_and(|f| f.contains("CHAOS_SEED=13")), "{:?}", hung.failure);
        assert_eq!(panicked.status, run::PANICKED);
        assert!(
            panicked.failure.as_deref().is_some_and(|f| f.contains("reset moto") && f.contains("CHAOS_SEED=15")),
            "{:?}",
            panicked.failure
        );
    }
}
