//! The stack map: every tier with the figures on-call reads first (LB: upstreams up and p95;
//! app: php-fpm workers and listen queue; db: which node is primary, connections used,
//! replication lag; cache: master, Sentinel quorum, memory; worker: queue length, workers up),
//! and every host with its own. Computed from the checks and the latest samples whenever they
//! change (in `update`), so drawing only reads it.

use std::collections::HashMap;

use crate::inventory::{Inventory, RedisRole};
use crate::probes::check::{self, Check, State};
use crate::probes::history::History;
use crate::probes::model::{MysqlSample, Outcome, ProbeKind, Sample, TargetKey};
use crate::probes::state::{HealthStore, metric_name};

/// A figure with the state it is drawn in. `long` is shown where there is room, else `short`.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub short: String,
    pub long: String,
    pub state: State,
    /// A failing check no other figure tells (a service down): drawn alone, across the
    /// figure columns, with its reason.
    pub alone: bool,
}

impl Figure {
    fn new(short: impl Into<String>, long: impl Into<String>, state: State) -> Figure {
        Figure {
            short: short.into(),
            long: long.into(),
            state,
            alone: false,
        }
    }

    /// The text that fits `width` columns: the long form, else the short one.
    pub fn fitting(&self, width: usize) -> &str {
        if self.long.chars().count() <= width {
            &self.long
        } else {
            &self.short
        }
    }
}

/// The series a host's trend sparkline draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// History metric name (`mysql.connections@127.0.0.1:3306`).
    pub metric: String,
    /// What it measures, in a few characters (`conn %`).
    pub label: &'static str,
    /// The sparkline's scale never goes below this (a warning threshold, 100 for percents),
    /// so a quiet series does not look alarming.
    pub floor: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostRow {
    /// Index into `inventory.hosts`.
    pub index: usize,
    pub name: String,
    pub state: State,
    /// The role the servers report (primary, replica, master), not the declared one.
    pub role: Option<Figure>,
    pub figures: Vec<Figure>,
    pub cpu: Option<Figure>,
    pub trend: Option<Trend>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierRow {
    pub name: String,
    pub description: Option<String>,
    pub state: State,
    pub figures: Vec<Figure>,
    pub hosts: Vec<HostRow>,
}

/// What one host's checks and samples say, before it is worded.
#[derive(Debug, Default)]
struct Facts {
    upstreams: Option<(usize, usize, State)>,
    p95_ms: Option<(f64, State)>,
    http_failing: Option<(String, State)>,
    fpm: Option<(u64, u64, State)>,
    listen_queue: Option<(u64, State)>,
    db_role: Option<(&'static str, State)>,
    connections: Option<(f64, State)>,
    lag: Option<(Option<f64>, State)>,
    redis_role: Option<(&'static str, State)>,
    redis_memory: Option<(String, State)>,
    sentinel_master: Option<(String, State)>,
    quorum: Option<(bool, u32, State)>,
    queue: Option<(u64, State)>,
    workers: Option<(u32, State)>,
    cpu: Option<(f64, State)>,
    /// Check ids the figures above already tell.
    told: Vec<String>,
}

/// The target keys of every host, once (the plan does not change while the console runs).
pub fn targets_by_host(health: &HealthStore) -> HashMap<String, Vec<TargetKey>> {
    let mut out: HashMap<String, Vec<TargetKey>> = HashMap::new();
    for k in health.targets() {
        out.entry(k.host.clone()).or_default().push(k.clone());
    }
    out
}

/// The whole map, tiers in inventory (traffic) order, hosts in inventory order.
pub fn build<S1: std::hash::BuildHasher, S2: std::hash::BuildHasher>(
    inv: &Inventory,
    health: &HealthStore,
    targets: &HashMap<String, Vec<TargetKey>, S1>,
    checks: &[Check],
    by_host: &HashMap<String, (State, Vec<usize>), S2>,
) -> Vec<TierRow> {
    let mut tiers = Vec::new();
    for tier in &inv.tiers {
        let mut hosts = Vec::new();
        let mut facts = Vec::new();
        for (index, host) in inv.hosts.iter().enumerate() {
            if host.tier != tier.name {
                continue;
            }
            let (state, checks): (State, Vec<&Check>) = by_host
                .get(&host.name)
                .map_or((State::Unknown, Vec::new()), |(s, idx)| {
                    (*s, idx.iter().map(|&i| &checks[i]).collect())
                });
            let keys = targets.get(&host.name).map_or(&[][..], Vec::as_slice);
            let f = host_facts(inv, health, keys, &checks);
            hosts.push(host_row(
                index,
                &host.name,
                state,
                &f,
                &checks,
                keys,
                health.history(),
            ));
            facts.push((host.name.clone(), f));
        }
        if hosts.is_empty() {
            continue;
        }
        let state = hosts.iter().map(|h| h.state).max().unwrap_or(State::Ok);
        tiers.push(TierRow {
            name: tier.name.clone(),
            description: tier.description.clone(),
            state,
            figures: tier_figures(&facts),
            hosts,
        });
    }
    tiers
}

fn find<'a>(checks: &[&'a Check], id: &str) -> Option<&'a Check> {
    checks.iter().copied().find(|c| c.id == id)
}

fn latest_sample<'a>(health: &'a HealthStore, key: &TargetKey) -> Option<&'a Sample> {
    match &health.latest(key)?.outcome {
        Outcome::Ok(s) => Some(s),
        _ => None,
    }
}

/// `address:port` of a Redis server → the host that declares it.
fn redis_host(inv: &Inventory, addr: &str) -> Option<String> {
    inv.hosts
        .iter()
        .find(|h| {
            h.services.redis.iter().any(|r| {
                r.role != RedisRole::Sentinel && format!("{}:{}", r.address, r.port) == addr
            })
        })
        .map(|h| h.name.clone())
}

fn host_facts(
    inv: &Inventory,
    health: &HealthStore,
    keys: &[TargetKey],
    checks: &[&Check],
) -> Facts {
    let mut f = Facts::default();
    let tell = |f: &mut Facts, c: &Check| f.told.push(c.id.clone());

    let ups: Vec<&Check> = checks
        .iter()
        .copied()
        .filter(|c| c.id.starts_with("nginx.upstream."))
        .collect();
    if !ups.is_empty() {
        let up = ups.iter().filter(|c| c.state == State::Ok).count();
        f.upstreams = Some((up, ups.len(), check::worst(ups.iter().copied())));
        for c in &ups {
            tell(&mut f, c);
        }
    }
    for c in checks.iter().filter(|c| c.id == "http.latency") {
        if let Some(v) = c.value
            && f.p95_ms.is_none_or(|(p, _)| v > p)
        {
            f.p95_ms = Some((v, c.state));
        }
        tell(&mut f, c);
    }
    if let Some(c) = checks
        .iter()
        .filter(|c| c.id == "http.status" && c.state != State::Ok)
        .max_by_key(|c| c.state)
    {
        let text = match c.value {
            Some(code) => format!("HTTP {code:.0}"),
            None => format!("http {}", c.state),
        };
        f.http_failing = Some((text, c.state));
        tell(&mut f, c);
    }
    for key in keys {
        let Some(sample) = latest_sample(health, key) else {
            continue;
        };
        match (key.kind, sample) {
            (ProbeKind::PhpFpm, Sample::PhpFpm(s)) => {
                let st = find(checks, "php_fpm.workers").map_or(State::Unknown, |c| c.state);
                f.fpm = Some((s.active_processes, s.total_processes, st));
                if let Some(c) = find(checks, "php_fpm.listen_queue") {
                    f.listen_queue = Some((s.listen_queue, c.state));
                    tell(&mut f, c);
                }
                for id in ["php_fpm.workers", "php_fpm.status"] {
                    if let Some(c) = find(checks, id) {
                        tell(&mut f, c);
                    }
                }
            }
            (ProbeKind::Mysql, Sample::Mysql(MysqlSample::Status(s))) => {
                let role = if s.replication.is_some() {
                    "replica"
                } else if s.read_only {
                    "read-only"
                } else {
                    "primary"
                };
                let st = check::worst(
                    checks
                        .iter()
                        .copied()
                        .filter(|c| c.id == "mysql.read_only" || c.id == "mysql.replication"),
                );
                f.db_role = Some((role, st));
                for id in ["mysql.read_only", "mysql.replication", "mysql.up"] {
                    if let Some(c) = find(checks, id) {
                        tell(&mut f, c);
                    }
                }
            }
            (ProbeKind::Redis, Sample::Redis(s)) => {
                let role = if s.role == "slave" {
                    "replica"
                } else {
                    "master"
                };
                let st = check::worst(checks.iter().copied().filter(|c| {
                    c.id == "redis.role" || c.id == "redis.master_link" || c.id == "redis.ping"
                }));
                f.redis_role = Some((role, st));
                let mem = if s.maxmemory > 0 {
                    format!("{:.0}%", s.used_memory as f64 * 100.0 / s.maxmemory as f64)
                } else {
                    short_bytes(s.used_memory)
                };
                let st = find(checks, "redis.memory").map_or(State::Unknown, |c| c.state);
                f.redis_memory = Some((mem, st));
                for id in [
                    "redis.role",
                    "redis.master_link",
                    "redis.ping",
                    "redis.memory",
                ] {
                    if let Some(c) = find(checks, id) {
                        tell(&mut f, c);
                    }
                }
            }
            (ProbeKind::Sentinel, Sample::Sentinel(s)) => {
                if let Some(c) = find(checks, "sentinel.master") {
                    let master = s.master_addr.as_deref().map_or_else(
                        || "none".to_owned(),
                        |a| redis_host(inv, a).unwrap_or_else(|| a.to_owned()),
                    );
                    f.sentinel_master = Some((master, c.state));
                    tell(&mut f, c);
                }
                if let Some(c) = find(checks, "sentinel.ckquorum") {
                    f.quorum = Some((s.ckquorum_ok, s.sentinels + 1, c.state));
                    tell(&mut f, c);
                }
            }
            _ => {}
        }
    }
    if let Some(c) = find(checks, "mysql.connections") {
        f.connections = Some((c.value.unwrap_or(0.0), c.state));
        tell(&mut f, c);
    }
    if let Some(c) = find(checks, "mysql.replication_lag") {
        f.lag = Some((c.value, c.state));
        tell(&mut f, c);
    }
    // Queues and worker processes: their availability checks carry the length and the count.
    for key in keys {
        let id = check::availability_id(key);
        let Some(c) = find(checks, &id) else {
            continue;
        };
        match key.kind {
            ProbeKind::Queue => {
                let (n, st) = f.queue.unwrap_or((0, State::Ok));
                f.queue = Some((n + c.value.unwrap_or(0.0) as u64, st.max(c.state)));
                tell(&mut f, c);
            }
            ProbeKind::Process => {
                let (n, st) = f.workers.unwrap_or((0, State::Ok));
                f.workers = Some((n + c.value.unwrap_or(0.0) as u32, st.max(c.state)));
                tell(&mut f, c);
            }
            _ => {}
        }
    }
    if let Some(c) = find(checks, "host.cpu") {
        if let Some(v) = c.value {
            f.cpu = Some((v, c.state));
        }
        tell(&mut f, c);
    }
    f
}

fn short_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.0}{}", UNITS[u])
}

fn ms(v: f64) -> String {
    format!("{v:.0} ms")
}

fn host_row(
    index: usize,
    name: &str,
    state: State,
    f: &Facts,
    checks: &[&Check],
    keys: &[TargetKey],
    history: &History,
) -> HostRow {
    let mut figures = Vec::new();
    let role = f
        .db_role
        .or(f.redis_role)
        .map(|(r, st)| Figure::new(r, r, st));
    if let Some((up, total, st)) = f.upstreams {
        figures.push(Figure::new(
            format!("up {up}/{total}"),
            format!("upstreams {up}/{total} up"),
            st,
        ));
    }
    if let Some((text, st)) = &f.http_failing {
        figures.push(Figure::new(text.clone(), text.clone(), *st));
    } else if let Some((p95, st)) = f.p95_ms {
        figures.push(Figure::new(
            format!("p95 {}", ms(p95)),
            format!("p95 {}", ms(p95)),
            st,
        ));
    }
    if let Some((active, total, st)) = f.fpm {
        figures.push(Figure::new(
            format!("fpm {active}/{total}"),
            format!("php-fpm {active}/{total} busy"),
            st,
        ));
    }
    if let Some((q, st)) = f.listen_queue {
        figures.push(Figure::new(
            format!("queue {q}"),
            format!("listen queue {q}"),
            st,
        ));
    }
    if let Some((pct, st)) = f.connections {
        figures.push(Figure::new(
            format!("conn {pct:.0}%"),
            format!("connections {pct:.0}%"),
            st,
        ));
    }
    if let Some((lag, st)) = f.lag {
        let v = lag.map_or_else(|| "?".to_owned(), |l| format!("{l:.0} s"));
        figures.push(Figure::new(
            format!("lag {v}"),
            format!("replication lag {v}"),
            st,
        ));
    }
    if let Some((mem, st)) = &f.redis_memory {
        figures.push(Figure::new(
            format!("mem {mem}"),
            format!("memory {mem}"),
            *st,
        ));
    }
    if let Some((master, st)) = &f.sentinel_master {
        figures.push(Figure::new(
            format!("→ {master}"),
            format!("sentinel → {master}"),
            *st,
        ));
    }
    if let Some((ok, n, st)) = f.quorum {
        let (short, long) = if ok {
            ("quorum ok".to_owned(), format!("quorum ok ({n} sentinels)"))
        } else {
            ("NOQUORUM".to_owned(), format!("NOQUORUM ({n} sentinels)"))
        };
        figures.push(Figure::new(short, long, st));
    }
    if let Some((n, st)) = f.queue {
        figures.push(Figure::new(
            format!("jobs {n}"),
            format!("{n} jobs queued"),
            st,
        ));
    }
    if let Some((n, st)) = f.workers {
        figures.push(Figure::new(
            format!("workers {n}"),
            format!("{n} workers running"),
            st,
        ));
    }
    // What is failing and not told above comes first: a problem never hides behind a
    // healthy figure.
    let mut untold: Vec<Figure> = checks
        .iter()
        .filter(|c| c.state != State::Ok && !f.told.contains(&c.id))
        .map(|c| Figure {
            alone: true,
            ..Figure::new(c.id.clone(), format!("{}: {}", c.id, c.reason), c.state)
        })
        .collect();
    untold.append(&mut figures);
    let cpu = f.cpu.map(|(v, st)| {
        let pct = format!("cpu {v:>3.0}%");
        Figure::new(pct.clone(), pct, st)
    });
    HostRow {
        index,
        name: name.to_owned(),
        state,
        role,
        figures: untold,
        cpu,
        trend: trend(name, keys, history),
    }
}

/// The series that best tells a host's service load, in order of what matters most.
fn trend(host: &str, keys: &[TargetKey], history: &History) -> Option<Trend> {
    let has = |m: &str| history.series(host, m).is_some_and(|r| !r.is_empty());
    let mut candidates: Vec<Trend> = Vec::new();
    for k in keys {
        let t = match k.kind {
            ProbeKind::Mysql => Trend {
                metric: metric_name("mysql.connections", &k.instance),
                label: "conn %",
                floor: 100.0,
            },
            ProbeKind::Queue => Trend {
                metric: metric_name(&check::availability_id(k), &k.instance),
                label: "jobs",
                floor: 100.0,
            },
            ProbeKind::PhpFpm => Trend {
                metric: metric_name("php_fpm.status", &k.instance),
                label: "fpm busy",
                floor: 5.0,
            },
            ProbeKind::Http => Trend {
                metric: metric_name("http.latency_ms", &k.instance),
                label: "ms",
                floor: 200.0,
            },
            ProbeKind::Redis => Trend {
                metric: metric_name("redis.ping", &k.instance),
                label: "ping ms",
                floor: 5.0,
            },
            _ => continue,
        };
        candidates.push(t);
    }
    let rank = |t: &Trend| match t.label {
        "conn %" => 0,
        "jobs" => 1,
        "ms" => 2,
        "fpm busy" => 3,
        _ => 4,
    };
    candidates.sort_by_key(rank);
    candidates.into_iter().find(|t| has(&t.metric))
}

fn tier_figures(hosts: &[(String, Facts)]) -> Vec<Figure> {
    let mut out = Vec::new();
    let worst = |a: State, b: State| a.max(b);
    // Load balancers: upstreams up of all, the worst p95.
    let ups: Vec<(usize, usize, State)> = hosts.iter().filter_map(|(_, f)| f.upstreams).collect();
    if !ups.is_empty() {
        let (up, total, st) = ups.iter().fold((0, 0, State::Ok), |(a, b, s), (u, t, st)| {
            (a + u, b + t, worst(s, *st))
        });
        out.push(Figure::new(
            format!("up {up}/{total}"),
            format!("upstreams {up}/{total} up"),
            st,
        ));
    }
    let p95 = hosts
        .iter()
        .filter_map(|(_, f)| f.p95_ms)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let p95_figure =
        |(v, st): (f64, State)| Figure::new(format!("p95 {}", ms(v)), format!("p95 {}", ms(v)), st);
    if !ups.is_empty()
        && let Some(p) = p95
    {
        out.push(p95_figure(p));
    }
    // App servers: php-fpm busy of all workers, requests waiting.
    let fpm: Vec<(u64, u64, State)> = hosts.iter().filter_map(|(_, f)| f.fpm).collect();
    if !fpm.is_empty() {
        let (a, t, st) = fpm.iter().fold((0, 0, State::Ok), |(a, t, s), (x, y, st)| {
            (a + x, t + y, worst(s, *st))
        });
        out.push(Figure::new(
            format!("fpm {a}/{t}"),
            format!("php-fpm {a}/{t} busy"),
            st,
        ));
        let (q, st) = hosts
            .iter()
            .filter_map(|(_, f)| f.listen_queue)
            .fold((0, State::Ok), |(q, s), (x, st)| (q + x, worst(s, st)));
        out.push(Figure::new(
            format!("queue {q}"),
            format!("listen queue {q}"),
            st,
        ));
        if ups.is_empty()
            && let Some(p) = p95
        {
            out.push(p95_figure(p));
        }
    }
    // Databases: which node is primary (exactly one), its connections, the worst lag.
    let dbs: Vec<&(String, Facts)> = hosts.iter().filter(|(_, f)| f.db_role.is_some()).collect();
    let db_tier = hosts
        .iter()
        .any(|(_, f)| f.db_role.is_some() || f.connections.is_some());
    if db_tier {
        let primaries: Vec<&str> = dbs
            .iter()
            .filter(|(_, f)| f.db_role.is_some_and(|(r, _)| r == "primary"))
            .map(|(h, _)| h.as_str())
            .collect();
        out.push(match primaries.as_slice() {
            [one] => Figure::new(
                format!("primary {one}"),
                format!("primary {one}"),
                State::Ok,
            ),
            [] => Figure::new("no primary", "no writable primary", State::Critical),
            many => Figure::new(
                format!("{} primaries", many.len()),
                format!("{} writable primaries: {}", many.len(), many.join(", ")),
                State::Critical,
            ),
        });
        let conn = hosts
            .iter()
            .find(|(h, _)| primaries.first().is_some_and(|p| p == h))
            .and_then(|(_, f)| f.connections)
            .or_else(|| {
                hosts
                    .iter()
                    .filter_map(|(_, f)| f.connections)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            });
        if let Some((pct, st)) = conn {
            out.push(Figure::new(
                format!("conn {pct:.0}%"),
                format!("connections {pct:.0}% used"),
                st,
            ));
        }
        let lags: Vec<(Option<f64>, State)> = hosts.iter().filter_map(|(_, f)| f.lag).collect();
        if !lags.is_empty() {
            let st = lags.iter().map(|l| l.1).max().unwrap_or(State::Ok);
            let v = if lags.iter().any(|l| l.0.is_none()) {
                "?".to_owned()
            } else {
                let max = lags.iter().filter_map(|l| l.0).fold(0.0, f64::max);
                format!("{max:.0} s")
            };
            out.push(Figure::new(
                format!("lag {v}"),
                format!("replication lag {v}"),
                st,
            ));
        }
    }
    // Cache: the master as Sentinel names it (or as the servers say), quorum, its memory.
    let masters: Vec<(&str, State)> = hosts
        .iter()
        .filter_map(|(_, f)| f.sentinel_master.as_ref().map(|(m, s)| (m.as_str(), *s)))
        .collect();
    let redis_masters: Vec<&str> = hosts
        .iter()
        .filter(|(_, f)| f.redis_role.is_some_and(|(r, _)| r == "master"))
        .map(|(h, _)| h.as_str())
        .collect();
    let cache_tier = !masters.is_empty() || hosts.iter().any(|(_, f)| f.redis_role.is_some());
    if cache_tier {
        let named = masters.first().map(|(m, _)| *m);
        let agree = masters.iter().all(|(m, _)| Some(*m) == named);
        let st = masters.iter().map(|m| m.1).max().unwrap_or(State::Ok);
        out.push(match (named, agree) {
            (Some(m), true) => Figure::new(format!("master {m}"), format!("master {m}"), st),
            (Some(_), false) => Figure::new(
                "masters differ",
                "sentinels name different masters",
                State::Critical,
            ),
            (None, _) => match redis_masters.as_slice() {
                [one] => Figure::new(format!("master {one}"), format!("master {one}"), State::Ok),
                [] => Figure::new("no master", "no master answers", State::Critical),
                many => Figure::new(
                    format!("{} masters", many.len()),
                    format!("{} masters: {}", many.len(), many.join(", ")),
                    State::Critical,
                ),
            },
        });
        let quorums: Vec<(bool, u32, State)> = hosts.iter().filter_map(|(_, f)| f.quorum).collect();
        if !quorums.is_empty() {
            let ok = quorums.iter().all(|q| q.0);
            let n = quorums.iter().map(|q| q.1).max().unwrap_or(0);
            let st = quorums.iter().map(|q| q.2).max().unwrap_or(State::Ok);
            out.push(if ok {
                Figure::new("quorum ok", format!("quorum ok ({n} sentinels)"), st)
            } else {
                Figure::new("NOQUORUM", format!("NOQUORUM ({n} sentinels)"), st)
            });
        }
        let master_host = named.or_else(|| redis_masters.first().copied());
        // The master's memory; unknown while the master does not answer.
        let (mem, st) = hosts
            .iter()
            .find(|(h, _)| Some(h.as_str()) == master_host)
            .and_then(|(_, f)| f.redis_memory.clone())
            .unwrap_or_else(|| ("?".to_owned(), State::Unknown));
        out.push(Figure::new(
            format!("mem {mem}"),
            format!("memory {mem}"),
            st,
        ));
    }
    // Workers: jobs waiting, workers running.
    let queues: Vec<(u64, State)> = hosts.iter().filter_map(|(_, f)| f.queue).collect();
    if !queues.is_empty() {
        let (n, st) = queues
            .iter()
            .fold((0, State::Ok), |(n, s), (x, st)| (n + x, worst(s, *st)));
        out.push(Figure::new(
            format!("jobs {n}"),
            format!("{n} jobs queued"),
            st,
        ));
    }
    let workers: Vec<(u32, State)> = hosts.iter().filter_map(|(_, f)| f.workers).collect();
    if !workers.is_empty() {
        let up = workers.iter().filter(|w| w.1 == State::Ok).count();
        let n: u32 = workers.iter().map(|w| w.0).sum();
        let st = workers.iter().map(|w| w.1).max().unwrap_or(State::Ok);
        out.push(Figure::new(
            format!("workers {up}/{}", workers.len()),
            format!("workers up on {up}/{} hosts ({n} processes)", workers.len()),
            st,
        ));
    }
    out
}
