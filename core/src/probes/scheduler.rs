//! The scheduler: runs every target's probe on its interval, with bounded concurrency, a
//! timeout per run, backoff for targets that do not answer, and results sent as owned
//! [`ProbeResult`]s over a bounded channel.
//!
//! Each target has one task that owns its [`Runner`] and runs it sequentially, so two runs of
//! the same probe on the same target can never overlap: a run that outlasts its interval
//! delays the next one (coalescing the missed ticks into one) instead of stacking up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::collect::Runner;
use super::model::{Outcome, ProbeResult};
use super::plan::ProbeSpec;
use crate::transport::Connections;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Probe runs in flight at once, over all targets.
    pub concurrency: usize,
    /// Limit for one run (connect + measure).
    pub timeout: Duration,
    /// Upper bound of the backoff for a target that keeps failing.
    pub max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            concurrency: 128,
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The delay before the next run: the interval while healthy; after `failures` failed runs
/// in a row, the interval doubled per failure beyond the first, capped at `max` (never
/// below the interval).
pub fn next_delay(interval: Duration, failures: u32, max: Duration) -> Duration {
    if failures <= 1 {
        return interval;
    }
    let factor = 1u32 << (failures - 1).min(16);
    interval.saturating_mul(factor).min(max.max(interval))
}

/// One run of every probe (a sweep), at most `concurrency` at a time. Results come back in
/// `specs` order.
pub async fn sweep(
    conns: &Arc<Connections>,
    specs: &[ProbeSpec],
    cfg: &SchedulerConfig,
) -> Vec<ProbeResult> {
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let futs = specs.iter().map(|spec| {
        let sem = Arc::clone(&sem);
        let mut runner = Runner::new(spec.clone(), Arc::clone(conns), cfg.timeout);
        async move {
            let _permit = sem.acquire_owned().await.ok();
            runner.run().await
        }
    });
    futures::future::join_all(futs).await
}

/// Runs every probe on its interval until `cancel`, sending results into `tx`. Returns when
/// cancelled or when the receiver is gone.
pub async fn run(
    conns: Arc<Connections>,
    specs: Vec<ProbeSpec>,
    cfg: SchedulerConfig,
    tx: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
) {
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for spec in specs {
        let mut runner = Runner::new(spec, Arc::clone(&conns), cfg.timeout);
        let sem = Arc::clone(&sem);
        let tx = tx.clone();
        let cancel = cancel.clone();
        let max_backoff = cfg.max_backoff;
        tasks.spawn(async move {
            let interval = runner.spec.meta.interval;
            let mut failures = 0u32;
            loop {
                let started = tokio::time::Instant::now();
                let result = {
                    let permit = tokio::select! {
                        p = Arc::clone(&sem).acquire_owned() => p,
                        () = cancel.cancelled() => return,
                    };
                    let r = tokio::select! {
                        r = runner.run() => r,
                        () = cancel.cancelled() => return,
                    };
                    drop(permit);
                    r
                };
                failures = match result.outcome {
                    Outcome::Down { .. } => failures.saturating_add(1),
                    _ => 0,
                };
                tokio::select! {
                    sent = tx.send(result) => if sent.is_err() { return },
                    () = cancel.cancelled() => return,
                }
                let next = started + next_delay(interval, failures, max_backoff);
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = cancel.cancelled() => return,
                }
            }
        });
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_secs(5);
        let max = Duration::from_secs(30);
        assert_eq!(next_delay(i, 0, max), i);
        assert_eq!(
            next_delay(i, 1, max),
            i,
            "the first failure retries on schedule"
        );
        assert_eq!(next_delay(i, 2, max), Duration::from_secs(10));
        assert_eq!(next_delay(i, 3, max), Duration::from_secs(20));
        assert_eq!(next_delay(i, 4, max), max);
        assert_eq!(next_delay(i, 1000, max), max);
        assert_eq!(
            next_delay(Duration::from_secs(60), 5, max),
            Duration::from_secs(60),
            "never below the interval"
        );
    }
}
