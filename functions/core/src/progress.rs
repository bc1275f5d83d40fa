//! Progress of long scans, reported by the detection code and shown by the CLI on stderr (the Lambdas ignore it).

#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    InventoryRegion { region: String, instances: usize },
    MetricsBatch { region: String, batch: usize, batches: usize, queries: usize },
    Priced { instances: usize },
}

pub trait ProgressSink: Send + Sync {
    fn report(&self, event: ProgressEvent);
}

/// Reports nowhere.
pub struct Silent;

impl ProgressSink for Silent {
    fn report(&self, _event: ProgressEvent) {}
}
