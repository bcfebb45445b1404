//! One sweep of the probes over some hosts, judged against the thresholds: what `opsdeck
//! health` prints once, and what a run asks for when a condition names health or when it
//! checks at the end that its fault is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::check::Check;
use super::history::History;
use super::plan::{self, Intervals};
use super::scheduler::{self, SchedulerConfig};
use super::state::HealthState;
use super::thresholds::{self, ThresholdErrors};
use super::topology::Topology;
use crate::inventory::{Host, Inventory};
use crate::transport::Connections;

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The interval the thresholds' staleness is judged against.
    pub interval: Duration,
    /// Per probe.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub concurrency: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            concurrency: 128,
        }
    }
}

/// What one sweep found: every check, judged, and the live topology the samples show.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub checks: Vec<Check>,
    pub topology: Topology,
}

/// Probes `hosts` once and returns every check, judged.
pub async fn once(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &SweepOptions,
) -> Result<Vec<Check>, ThresholdErrors> {
    Ok(sweep(conns, inv, hosts, opts).await?.checks)
}

/// Probes `hosts` once: the checks and the topology.
pub async fn sweep(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &SweepOptions,
) -> Result<Sweep, ThresholdErrors> {
    let th = thresholds::resolve(inv)?;
    let specs = plan::plan(inv, hosts, &Intervals::uniform(opts.interval));
    let history = History::covering(Duration::from_secs(600), opts.interval);
    let mut state = HealthState::new(&specs, th, history);
    let cfg = SchedulerConfig {
        concurrency: opts.concurrency,
        timeout: opts.timeout,
        ..SchedulerConfig::default()
    };
    for r in scheduler::sweep(conns, &specs, &cfg).await {
        state.update(r);
    }
    let now = Instant::now();
    Ok(Sweep {
        checks: state.checks(now),
        topology: Topology::observe(inv, &state, now, opts.interval * 3),
    })
}
