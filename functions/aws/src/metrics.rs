//! Where the Embedded Metric Format lines go ([`finops_core::metrics`]): standard output in Lambda, where CloudWatch
//! Logs extracts the metrics (no API call, no client). Outside Lambda nothing is printed; a test or the local runner
//! can keep the lines instead ([`capture`]) to see what a run emitted.

use std::sync::Mutex;

use finops_core::metrics::Emf;

static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Emits one record, stamped now.
pub fn emit(emf: &Emf) {
    let line = emf.to_line(chrono::Utc::now().timestamp_millis());
    if let Some(lines) = CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        lines.push(line.clone());
    }
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        // One line per record: Lambda sends each line of standard output to CloudWatch Logs as one event.
        println!("{line}");
    }
}

/// From now on, this process keeps every line it emits (for [`captured`]).
pub fn capture() {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Vec::new);
}

/// Every line emitted since [`capture`].
pub fn captured() -> Vec<String> {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
}
