//! The health state: latest samples, recent history and the checks they yield, folded from
//! owned [`ProbeResult`]s. Pure: no clocks read inside (the caller passes `now`), no I/O.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::check::{self, Check, Previous, TargetMeta, Window};
use super::history::{self, History};
use super::model::{Outcome, ProbeResult, Sample, TargetKey};
use super::plan::ProbeSpec;
use super::thresholds::Thresholds;

/// The window over which HTTP latency percentiles are taken: a minute, so that a fix (a
/// restarted php-fpm) shows as ok within a minute instead of the slow samples holding p95 up
/// for as long as a longer window remembers them.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct TargetState {
    meta: TargetMeta,
    last: Option<ProbeResult>,
    last_ok: Option<(Instant, Sample)>,
    checks: Vec<Check>,
    failures: u32,
}

/// Every planned probe target's latest sample, failures and history: what the checks are
/// judged from. (A check's state is [`super::check::State`].)
#[derive(Debug, Clone)]
pub struct HealthStore {
    targets: IndexMap<TargetKey, TargetState>,
    thresholds: BTreeMap<String, Thresholds>,
    history: History,
}

/// Folds one result into the state (the `update` of the health loop).
pub fn update(state: &mut HealthStore, result: ProbeResult) {
    state.update(result);
}

impl HealthStore {
    /// A state expecting `specs` (in display order); hosts missing from `thresholds` use the
    /// defaults.
    pub fn new(
        specs: &[ProbeSpec],
        thresholds: BTreeMap<String, Thresholds>,
        history: History,
    ) -> Self {
        let targets = specs
            .iter()
            .map(|s| {
                (
                    s.key.clone(),
                    TargetState {
                        meta: s.meta.clone(),
                        last: None,
                        last_ok: None,
                        checks: Vec::new(),
                        failures: 0,
                    },
                )
            })
            .collect();
        HealthStore {
            targets,
            thresholds,
            history,
        }
    }

    fn thresholds_for(&self, host: &str) -> Thresholds {
        self.thresholds.get(host).cloned().unwrap_or_default()
    }

    pub fn update(&mut self, r: ProbeResult) {
        let t = self.thresholds_for(&r.target.host);
        let Some(target) = self.targets.get_mut(&r.target) else {
            // A result for a target no longer planned (inventory reloaded): ignore it.
            return;
        };
        let at_utc = Some(r.at_utc);
        match &r.outcome {
            Outcome::Ok(sample) => {
                target.failures = 0;
                let mut window = Window::default();
                if let Sample::Http(h) = sample {
                    let metric = metric_name("http.latency_ms", &r.target.instance);
                    self.history.push(
                        &r.target.host,
                        &metric,
                        r.at,
                        h.latency.as_secs_f64() * 1000.0,
                    );
                    if let Some(ring) = self.history.series(&r.target.host, &metric) {
                        let v = ring.window(r.at, LATENCY_WINDOW);
                        let to_d = |ms: f64| Duration::from_secs_f64(ms / 1000.0);
                        window.http_p95 = history::quantile(&v, 0.95).map(to_d);
                        window.http_p50 = history::quantile(&v, 0.5).map(to_d);
                    }
                }
                let prev = target.last_ok.as_ref().map(|(at, s)| Previous {
                    sample: s,
                    elapsed: r.at.saturating_duration_since(*at),
                });
                let checks = check::evaluate_sample(
                    &r.target,
                    &target.meta,
                    sample,
                    prev.as_ref(),
                    window,
                    &t,
                    at_utc,
                );
                for c in &checks {
                    if let Some(v) = c.value {
                        self.history
                            .push(&c.host, &metric_name(&c.id, &c.instance), r.at, v);
                    }
                }
                target.checks = checks;
                target.last_ok = Some((r.at, sample.clone()));
            }
            Outcome::Down { reason } => {
                target.failures = target.failures.saturating_add(1);
                let reason = if target.failures > 1 {
                    format!("{reason} ({} failures in a row)", target.failures)
                } else {
                    reason.clone()
                };
                target.checks = check::down_checks(&r.target, &target.meta, &reason, at_utc);
            }
            Outcome::Unsupported { reason } => {
                target.checks = check::unknown_checks(&r.target, &target.meta, reason, at_utc);
            }
        }
        target.last = Some(r);
    }

    /// Every check now, in plan order: checks of a sample older than `stale_intervals`
    /// intervals turn unknown; a target never heard from is unknown.
    pub fn checks(&self, now: Instant) -> Vec<Check> {
        let mut out = Vec::new();
        for (key, target) in &self.targets {
            let Some(last) = &target.last else {
                out.extend(check::unknown_checks(
                    key,
                    &target.meta,
                    "no sample yet",
                    None,
                ));
                continue;
            };
            let mut checks = target.checks.clone();
            let stale = self.thresholds_for(&key.host).stale_intervals;
            let limit = target.meta.interval.mul_f64(stale.max(1.0));
            check::apply_staleness(&mut checks, now.saturating_duration_since(last.at), limit);
            out.extend(checks);
        }
        out
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn latest(&self, key: &TargetKey) -> Option<&ProbeResult> {
        self.targets.get(key)?.last.as_ref()
    }

    /// Consecutive failed runs of a target (0 after a success).
    pub fn failures(&self, key: &TargetKey) -> u32 {
        self.targets.get(key).map_or(0, |t| t.failures)
    }

    pub fn targets(&self) -> impl Iterator<Item = &TargetKey> {
        self.targets.keys()
    }
}

/// History series name of a check: its id, plus `@instance` when there is one.
pub fn metric_name(id: &str, instance: &str) -> String {
    if instance.is_empty() {
        id.to_owned()
    } else {
        format!("{id}@{instance}")
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::super::check::State;
    use super::super::model::{HttpSample, MysqlSample, MysqlStatus, ProbeKind, RedisSample};
    use super::super::plan::What;
    use super::*;

    fn spec(host: &str, kind: ProbeKind, instance: &str) -> ProbeSpec {
        let inv = crate::inventory::load(None).expect("default inventory");
        let h = Arc::new(inv.hosts[0].clone());
        ProbeSpec {
            key: TargetKey::new(host, kind, instance),
            meta: TargetMeta {
                tier: "db".to_owned(),
                role: None,
                interval: Duration::from_secs(5),
                expected_master: None,
            },
            host: h,
            what: What::Unavailable(String::new()),
        }
    }

    fn result(key: &TargetKey, at: Instant, outcome: Outcome) -> ProbeResult {
        ProbeResult {
            target: key.clone(),
            at,
            at_utc: Utc::now(),
            took: Duration::from_millis(1),
            outcome,
        }
    }

    fn mysql(connections: u64) -> Outcome {
        Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
            connections,
            max_connections: 150,
            ..MysqlStatus::default()
        })))
    }

    fn state_of<'a>(checks: &'a [Check], host: &str, id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.host == host && c.id == id)
            .unwrap_or_else(|| panic!("no {host} {id} in {checks:#?}"))
    }

    #[test]
    fn never_heard_from_is_unknown_not_ok() {
        let s = HealthStore::new(
            &[spec("db-1", ProbeKind::Mysql, "x")],
            BTreeMap::new(),
            History::default(),
        );
        let c = s.checks(Instant::now());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].id, "mysql.up");
        assert_eq!(c[0].state, State::Unknown);
        assert_eq!(c[0].reason, "no sample yet");
    }

    #[test]
    fn fresh_then_stale_then_down_then_recovered() {
        let a = spec("db-1", ProbeKind::Mysql, "x");
        let b = spec("db-2", ProbeKind::Mysql, "x");
        let mut s = HealthStore::new(&[a.clone(), b.clone()], BTreeMap::new(), History::default());
        let t0 = Instant::now();
        update(&mut s, result(&a.key, t0, mysql(148)));
        update(&mut s, result(&b.key, t0, mysql(10)));
        let c = s.checks(t0 + Duration::from_secs(1));
        assert_eq!(
            state_of(&c, "db-1", "mysql.connections").state,
            State::Critical
        );
        assert_eq!(state_of(&c, "db-2", "mysql.connections").state, State::Ok);

        // db-1 stops answering, db-2 keeps updating: at 16 s (> 3 × 5 s) db-1's old values
        // are unknown, db-2's fresh ones still ok.
        update(
            &mut s,
            result(&b.key, t0 + Duration::from_secs(15), mysql(11)),
        );
        let c = s.checks(t0 + Duration::from_secs(16));
        let stale = state_of(&c, "db-1", "mysql.connections");
        assert_eq!(stale.state, State::Unknown);
        assert!(
            stale.reason.starts_with("no fresh sample for 16 s"),
            "{}",
            stale.reason
        );
        assert_eq!(state_of(&c, "db-2", "mysql.connections").state, State::Ok);

        // A failed run is down, and says how often it failed.
        let down = |r: &str| Outcome::Down {
            reason: r.to_owned(),
        };
        update(
            &mut s,
            result(
                &a.key,
                t0 + Duration::from_secs(17),
                down("connection refused"),
            ),
        );
        update(
            &mut s,
            result(
                &a.key,
                t0 + Duration::from_secs(27),
                down("connection refused"),
            ),
        );
        assert_eq!(s.failures(&a.key), 2);
        let c = s.checks(t0 + Duration::from_secs(60));
        let up = state_of(&c, "db-1", "mysql.up");
        assert_eq!(up.state, State::Down, "down stays down however old");
        assert_eq!(up.reason, "connection refused (2 failures in a row)");
        assert!(
            !c.iter()
                .any(|c| c.host == "db-1" && c.id == "mysql.connections")
        );

        update(
            &mut s,
            result(&a.key, t0 + Duration::from_secs(61), mysql(5)),
        );
        let c = s.checks(t0 + Duration::from_secs(61));
        assert_eq!(state_of(&c, "db-1", "mysql.connections").state, State::Ok);
        assert_eq!(s.failures(&a.key), 0);
    }

    #[test]
    fn history_records_check_values() {
        let a = spec("db-1", ProbeKind::Mysql, "x");
        let mut s = HealthStore::new(std::slice::from_ref(&a), BTreeMap::new(), History::new(3));
        let t0 = Instant::now();
        for i in 0..5u64 {
            update(
                &mut s,
                result(&a.key, t0 + Duration::from_secs(i * 5), mysql(15 * i)),
            );
        }
        let ring = s
            .history()
            .series("db-1", "mysql.connections@x")
            .expect("series");
        let v: Vec<f64> = ring.iter().map(|p| p.value).collect();
        assert_eq!(v, vec![20.0, 30.0, 40.0]);
    }

    #[test]
    fn http_p95_over_the_window() {
        let a = spec("lb-1", ProbeKind::Http, "http://127.0.0.1/");
        let mut s = HealthStore::new(
            std::slice::from_ref(&a),
            BTreeMap::new(),
            History::default(),
        );
        let t0 = Instant::now();
        for i in 0..20u64 {
            let ms = if i == 19 {
                900
            } else if i >= 17 {
                400
            } else {
                20
            };
            update(
                &mut s,
                result(
                    &a.key,
                    t0 + Duration::from_secs(i),
                    Outcome::Ok(Sample::Http(HttpSample {
                        url: "http://127.0.0.1/".to_owned(),
                        status: 200,
                        latency: Duration::from_millis(ms),
                        app: None,
                    })),
                ),
            );
        }
        let c = s.checks(t0 + Duration::from_secs(19));
        let lat = state_of(&c, "lb-1", "http.latency");
        // 20 points: nearest-rank p95 is the 19th smallest = 400 ms.
        assert_eq!(lat.value, Some(400.0));
        assert_eq!(lat.state, State::Warning);
    }

    #[test]
    fn a_fixed_latency_is_ok_once_the_slow_samples_leave_the_window() {
        let a = spec("lb-1", ProbeKind::Http, "http://127.0.0.1/");
        let mut s = HealthStore::new(
            std::slice::from_ref(&a),
            BTreeMap::new(),
            History::default(),
        );
        let t0 = Instant::now();
        let sample = |ms| {
            Outcome::Ok(Sample::Http(HttpSample {
                url: "http://127.0.0.1/".to_owned(),
                status: 200,
                latency: Duration::from_millis(ms),
                app: None,
            }))
        };
        // Two minutes slow (one sample a second), then fixed.
        for i in 0..120u64 {
            update(
                &mut s,
                result(&a.key, t0 + Duration::from_secs(i), sample(450)),
            );
        }
        let slow = s.checks(t0 + Duration::from_secs(119));
        assert_eq!(
            state_of(&slow, "lb-1", "http.latency").state,
            State::Warning
        );
        for i in 120..190u64 {
            update(
                &mut s,
                result(&a.key, t0 + Duration::from_secs(i), sample(20)),
            );
        }
        let c = s.checks(t0 + Duration::from_secs(189));
        let lat = state_of(&c, "lb-1", "http.latency");
        assert_eq!(lat.state, State::Ok, "{}", lat.reason);
        assert_eq!(lat.value, Some(20.0));
    }

    #[test]
    fn rates_use_the_previous_good_sample() {
        let a = spec("cache-1", ProbeKind::Redis, "x");
        let mut s = HealthStore::new(
            std::slice::from_ref(&a),
            BTreeMap::new(),
            History::default(),
        );
        let t0 = Instant::now();
        let redis = |rejected: u64| {
            Outcome::Ok(Sample::Redis(RedisSample {
                role: "master".to_owned(),
                maxclients: 10,
                rejected_connections: rejected,
                ..RedisSample::default()
            }))
        };
        update(&mut s, result(&a.key, t0, redis(0)));
        let c = s.checks(t0);
        assert!(
            !c.iter().any(|c| c.id == "redis.rejected"),
            "no rate from one sample"
        );
        update(
            &mut s,
            result(&a.key, t0 + Duration::from_secs(5), redis(7)),
        );
        let c = s.checks(t0 + Duration::from_secs(5));
        assert_eq!(
            state_of(&c, "cache-1", "redis.rejected").state,
            State::Critical
        );
    }

    #[test]
    fn unplanned_results_are_ignored_and_thresholds_apply_per_host() {
        let a = spec("db-1", ProbeKind::Mysql, "x");
        let mut th = BTreeMap::new();
        th.insert(
            "db-1".to_owned(),
            Thresholds {
                mysql_connections_critical: 99.5,
                ..Thresholds::default()
            },
        );
        let mut s = HealthStore::new(std::slice::from_ref(&a), th, History::default());
        let t0 = Instant::now();
        update(
            &mut s,
            result(&TargetKey::new("gone", ProbeKind::Host, ""), t0, mysql(1)),
        );
        update(&mut s, result(&a.key, t0, mysql(148)));
        let c = s.checks(t0);
        assert_eq!(c.len(), 2);
        assert_eq!(
            state_of(&c, "db-1", "mysql.connections").state,
            State::Warning
        );
    }
}
