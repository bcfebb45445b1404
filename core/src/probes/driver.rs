//! The health driver: the one place a continuous health pipeline is started — thresholds
//! resolved, probes planned, the scheduler spawned over the shared connections, a state to fold
//! results into. The console and `opsdeck check --watch` both start it here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::history::History;
use super::model::ProbeResult;
use super::plan::{self, Intervals};
use super::scheduler::{self, SchedulerConfig};
use super::state::HealthStore;
use super::thresholds::{self, ThresholdErrors};
use crate::inventory::{Host, Inventory};
use crate::transport::Connections;

/// How much history the state keeps (sparklines, trends, the p95 window).
pub const HISTORY: Duration = Duration::from_secs(600);

/// A running pipeline. Results arrive on `results`; fold them into `state` (or hand both to
/// the console's app). [`Pipeline::stop`] ends the scheduler.
pub struct Pipeline {
    pub state: HealthStore,
    pub results: mpsc::Receiver<ProbeResult>,
    cancel: CancellationToken,
    scheduler: JoinHandle<()>,
}

/// Starts probing `hosts` of `inv` on `intervals`.
pub fn start(
    conns: Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    intervals: &Intervals,
    config: SchedulerConfig,
) -> Result<Pipeline, ThresholdErrors> {
    let th = thresholds::resolve(inv)?;
    let specs = plan::plan(inv, hosts, intervals);
    let state = HealthStore::new(&specs, th, History::covering(HISTORY, intervals.default));
    let (tx, results) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let scheduler = tokio::spawn(scheduler::run(conns, specs, config, tx, cancel.clone()));
    Ok(Pipeline {
        state,
        results,
        cancel,
        scheduler,
    })
}

/// What stops a pipeline whose state and receiver were handed elsewhere.
pub struct Stopper {
    cancel: CancellationToken,
    scheduler: JoinHandle<()>,
}

impl Pipeline {
    /// Splits the pipeline into its state, its results and what stops it.
    pub fn into_parts(self) -> (HealthStore, mpsc::Receiver<ProbeResult>, Stopper) {
        (
            self.state,
            self.results,
            Stopper {
                cancel: self.cancel,
                scheduler: self.scheduler,
            },
        )
    }
}

impl Stopper {
    /// Cancels the scheduler and waits for its probes to wind down.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.scheduler.await;
    }

    /// Cancels the scheduler without waiting: probes in flight on slow hosts do not hold up
    /// the caller (the console's exit).
    pub fn abort(self) {
        self.cancel.cancel();
        self.scheduler.abort();
    }
}
