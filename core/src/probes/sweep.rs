//! One sweep of the probes over some hosts, judged against the thresholds: what `opsdeck
//! health` prints once, and what a run asks for when a condition names health or when it
//! checks at the end that its fault is gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::check::Check;
use super::history::History;
use super::plan::{self, Intervals};
use super::scheduler::{self, SchedulerConfig};
use super::state::HealthStore;
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

impl SweepOptions {
    /// The scheduler's settings for these options.
    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig {
            concurrency: self.concurrency,
            timeout: self.timeout,
            ..SchedulerConfig::default()
        }
    }
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
    sweep_with(conns, inv, hosts, opts, &mut |_| {}).await
}

/// How far a sweep is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepProgress {
    pub probes_done: usize,
    pub probes: usize,
    /// Hosts whose every probe has answered.
    pub hosts_done: usize,
    pub hosts: usize,
}

/// [`sweep`], calling `progress` each time a probe answers (the progress line on a
/// terminal). At most `opts.concurrency` probes run at once.
pub async fn sweep_with(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &SweepOptions,
    progress: &mut (dyn FnMut(SweepProgress) + Send),
) -> Result<Sweep, ThresholdErrors> {
    use futures::StreamExt as _;
    let th = thresholds::resolve(inv)?;
    let specs = plan::plan(inv, hosts, &Intervals::uniform(opts.interval));
    let history = History::covering(Duration::from_secs(600), opts.interval);
    let mut state = HealthStore::new(&specs, th, history);
    let cfg = opts.scheduler();
    let sem = tokio::sync::Semaphore::new(opts.concurrency.max(1));
    // Probes left per host, to say when a host is done.
    let mut left: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &specs {
        *left.entry(s.key.host.as_str()).or_insert(0) += 1;
    }
    let mut p = SweepProgress {
        probes_done: 0,
        probes: specs.len(),
        hosts_done: 0,
        hosts: left.len(),
    };
    progress(p);
    let mut running: futures::stream::FuturesUnordered<_> = specs
        .iter()
        .map(|spec| {
            let sem = &sem;
            let cfg = &cfg;
            async move {
                let _permit = sem.acquire().await.ok();
                (
                    spec.key.host.as_str(),
                    scheduler::sweep(conns, std::slice::from_ref(spec), cfg).await,
                )
            }
        })
        .collect();
    while let Some((host, results)) = running.next().await {
        for r in results {
            state.update(r);
        }
        p.probes_done += 1;
        if let Some(n) = left.get_mut(host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.hosts_done += 1;
            }
        }
        progress(p);
    }
    let now = Instant::now();
    Ok(Sweep {
        checks: state.checks(now),
        topology: Topology::observe(inv, &state, now, opts.interval * 3),
    })
}
