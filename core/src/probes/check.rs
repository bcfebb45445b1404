//! Evaluation: from samples to checks, each ok / warning / unknown / critical / down with a
//! reason a person can act on ("connections 148/150 (99 %)").
//!
//! Pure functions only. [`super::state::HealthStore`] calls them when a sample arrives and
//! applies staleness when asked for the current checks.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{
    DockerSample, HostSample, HttpSample, MysqlSample, NginxSample, PhpFpmSample, ProbeKind,
    ProcessSample, QueueSample, RedisSample, Sample, SentinelSample, TargetKey,
};
use super::thresholds::Thresholds;

/// A check's state, ordered from best to worst: a lost view (unknown) ranks above a warning,
/// a known failure (critical) above that, an unreachable target (down) worst of all.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Ok,
    Warning,
    Unknown,
    Critical,
    Down,
}

impl State {
    /// `ok`, `warning`, `unknown`, `critical` or `down`; anything else is `None`.
    pub fn parse(s: &str) -> Option<State> {
        s.parse().ok()
    }

    /// Severity rank for comparisons in runbook conditions (`health.X >= warning`);
    /// `unknown` has none: it is neither better nor worse than a known state.
    pub fn rank(self) -> Option<u8> {
        match self {
            State::Ok => Some(0),
            State::Warning => Some(1),
            State::Critical => Some(2),
            State::Down => Some(3),
            State::Unknown => None,
        }
    }

    /// True if `self` is at least as bad as `min` (for triggers); `unknown` only matches
    /// `unknown`.
    pub fn at_least(self, min: State) -> bool {
        match (self.rank(), min.rank()) {
            (Some(a), Some(b)) => a >= b,
            _ => self == min,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Unknown => "unknown",
            State::Critical => "critical",
            State::Down => "down",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(State::Ok),
            "warning" => Ok(State::Warning),
            "unknown" => Ok(State::Unknown),
            "critical" => Ok(State::Critical),
            "down" => Ok(State::Down),
            other => Err(format!(
                "unknown state {other:?}; write one of ok, warning, unknown, critical, down"
            )),
        }
    }
}

/// One evaluated condition on one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub host: String,
    pub tier: String,
    /// Stable id, e.g. `mysql.connections`, `disk./var/log`, `redis.ping`.
    pub id: String,
    /// Which service instance on the host (`127.0.0.1:3306`, a URL); empty for host checks.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance: String,
    pub state: State,
    pub reason: String,
    /// The measured number behind the state (a percentage, milliseconds, a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// When the sample behind this check was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

/// The worst state among checks; `Ok` for none.
pub fn worst<'a>(checks: impl IntoIterator<Item = &'a Check>) -> State {
    checks
        .into_iter()
        .map(|c| c.state)
        .max()
        .unwrap_or(State::Ok)
}

/// What evaluation knows about a target besides its sample.
#[derive(Debug, Clone, Default)]
pub struct TargetMeta {
    pub tier: String,
    /// The role the inventory declares (`primary`, `replica`, `master`, `sentinel`).
    pub role: Option<String>,
    pub interval: Duration,
    /// For a Sentinel: the `address:port` of the master the inventory declares for its
    /// master name, when exactly one is declared.
    pub expected_master: Option<String>,
}

/// The previous good sample of the same target and how long before this one it was taken.
pub struct Previous<'a> {
    pub sample: &'a Sample,
    pub elapsed: Duration,
}

/// Extra inputs computed from history by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// p95 of the HTTP latency over the recent window (including this sample).
    pub http_p95: Option<Duration>,
    pub http_p50: Option<Duration>,
}

struct Out<'a> {
    key: &'a TargetKey,
    meta: &'a TargetMeta,
    at: Option<DateTime<Utc>>,
    checks: Vec<Check>,
}

impl<'a> Out<'a> {
    fn new(key: &'a TargetKey, meta: &'a TargetMeta, at: Option<DateTime<Utc>>) -> Self {
        Out {
            key,
            meta,
            at,
            checks: Vec::new(),
        }
    }

    fn push(&mut self, id: impl Into<String>, state: State, reason: String, value: Option<f64>) {
        self.checks.push(Check {
            host: self.key.host.clone(),
            tier: self.meta.tier.clone(),
            id: id.into(),
            instance: self.key.instance.clone(),
            state,
            reason,
            value,
            at: self.at,
        });
    }
}

/// Above critical → critical, above warning → warning, else ok.
pub fn level(value: f64, warning: f64, critical: f64) -> State {
    if value > critical {
        State::Critical
    } else if value > warning {
        State::Warning
    } else {
        State::Ok
    }
}

/// " (warning above 80 %)" style suffix for a non-ok level.
fn limit_note(state: State, warning: f64, critical: f64, unit: &str) -> String {
    match state {
        State::Warning => format!(" (warning above {}{unit})", num(warning)),
        State::Critical => format!(" (critical above {}{unit})", num(critical)),
        _ => String::new(),
    }
}

fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn pct_of(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn duration_words(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86400),
    }
}

/// The check that says whether a target answers at all, by probe kind.
pub fn availability_id(key: &TargetKey) -> String {
    match key.kind {
        ProbeKind::Host => "host.reachable".to_owned(),
        ProbeKind::Http => "http.status".to_owned(),
        ProbeKind::Nginx => "nginx.status".to_owned(),
        ProbeKind::PhpFpm => "php_fpm.status".to_owned(),
        ProbeKind::Mysql => "mysql.up".to_owned(),
        ProbeKind::Redis => "redis.ping".to_owned(),
        ProbeKind::Sentinel => "sentinel.ping".to_owned(),
        ProbeKind::Queue => format!("queue.{}", key.instance),
        ProbeKind::Process => format!("process.{}", key.instance),
        ProbeKind::Docker => "docker.state".to_owned(),
        ProbeKind::Haproxy => "haproxy.up".to_owned(),
    }
}

/// A target that did not answer: its availability check is down.
pub fn down_checks(
    key: &TargetKey,
    meta: &TargetMeta,
    reason: &str,
    at: Option<DateTime<Utc>>,
) -> Vec<Check> {
    availability(key, meta, State::Down, reason, at)
}

/// A target that has not answered yet, or whose probe cannot run: unknown, never ok.
pub fn unknown_checks(
    key: &TargetKey,
    meta: &TargetMeta,
    reason: &str,
    at: Option<DateTime<Utc>>,
) -> Vec<Check> {
    availability(key, meta, State::Unknown, reason, at)
}

/// The target's one availability check, in `state` for `reason`.
fn availability(
    key: &TargetKey,
    meta: &TargetMeta,
    state: State,
    reason: &str,
    at: Option<DateTime<Utc>>,
) -> Vec<Check> {
    let mut out = Out::new(key, meta, at);
    out.push(availability_id(key), state, reason.to_owned(), None);
    out.checks
}

/// Turns the checks of a sample older than `limit` unknown: a stale value is never shown as
/// ok (nor as a warning that may have cleared). Down checks stay down.
pub fn apply_staleness(checks: &mut [Check], age: Duration, limit: Duration) {
    if age <= limit {
        return;
    }
    for c in checks {
        if c.state == State::Down {
            continue;
        }
        c.reason = format!(
            "no fresh sample for {} (last: {} {})",
            duration_words(age.as_secs_f64()),
            c.state,
            c.reason
        );
        c.state = State::Unknown;
    }
}

/// Every check a fresh sample yields.
pub fn evaluate_sample(
    key: &TargetKey,
    meta: &TargetMeta,
    sample: &Sample,
    prev: Option<&Previous<'_>>,
    window: Window,
    t: &Thresholds,
    at: Option<DateTime<Utc>>,
) -> Vec<Check> {
    let mut out = Out::new(key, meta, at);
    match sample {
        Sample::Host(s) => host(&mut out, s, t),
        Sample::Http(s) => http(&mut out, s, window, t),
        Sample::Nginx(s) => nginx(&mut out, s),
        Sample::PhpFpm(s) => {
            let prev = prev.and_then(|p| match p.sample {
                Sample::PhpFpm(p) => Some(p),
                _ => None,
            });
            php_fpm(&mut out, s, prev, t);
        }
        Sample::Mysql(s) => {
            let prev = prev.and_then(|p| match p.sample {
                Sample::Mysql(MysqlSample::Status(ps)) => Some((ps, p.elapsed)),
                _ => None,
            });
            mysql(&mut out, s, prev, t);
        }
        Sample::Redis(s) => {
            let prev = prev.and_then(|p| match p.sample {
                Sample::Redis(ps) => Some((ps, p.elapsed)),
                _ => None,
            });
            redis(&mut out, s, prev, t);
        }
        Sample::Sentinel(s) => {
            let expected = out.meta.expected_master.clone();
            sentinel(&mut out, s, expected.as_deref());
        }
        Sample::Queue(s) => queue(&mut out, s, t),
        Sample::Process(s) => process(&mut out, s),
        Sample::Haproxy(s) => {
            for (id, state, reason, value) in super::haproxy::evaluate(s) {
                out.push(id, state, reason, value);
            }
        }
        Sample::Docker(s) => {
            let prev = prev.and_then(|p| match p.sample {
                Sample::Docker(ps) => Some(ps),
                _ => None,
            });
            docker(&mut out, s, prev, t);
        }
    }
    out.checks
}

fn host(out: &mut Out<'_>, s: &HostSample, t: &Thresholds) {
    out.push(
        "host.reachable",
        State::Ok,
        format!(
            "up {}, load {:.2} {:.2} {:.2} on {} cpus",
            duration_words(s.uptime_s),
            s.load1,
            s.load5,
            s.load15,
            s.cpus
        ),
        Some(s.load1),
    );
    match s.cpu_percent {
        Some(cpu) => {
            let st = level(cpu, t.cpu_warning, t.cpu_critical);
            out.push(
                "host.cpu",
                st,
                format!(
                    "cpu {cpu:.0} % busy{}{}",
                    limit_note(st, t.cpu_warning, t.cpu_critical, " %"),
                    match (&s.top_process, st) {
                        (Some(p), s) if s != State::Ok => format!("; top: {p}"),
                        _ => String::new(),
                    }
                ),
                Some(cpu),
            );
        }
        None => out.push(
            "host.cpu",
            State::Unknown,
            "cpu: no earlier reading to compare with yet".to_owned(),
            None,
        ),
    }
    let st = level(s.mem_used_percent, t.memory_warning, t.memory_critical);
    out.push(
        "host.memory",
        st,
        format!(
            "memory {:.0} % used of {}{}",
            s.mem_used_percent,
            bytes(s.mem_total_bytes),
            limit_note(st, t.memory_warning, t.memory_critical, " %")
        ),
        Some(s.mem_used_percent),
    );
    if let Some(swap) = s.swap_used_percent {
        let st = level(swap, t.swap_warning, t.swap_critical);
        out.push(
            "host.swap",
            st,
            format!(
                "swap {swap:.0} % used{}",
                limit_note(st, t.swap_warning, t.swap_critical, " %")
            ),
            Some(swap),
        );
    }
    for m in &s.mounts {
        let id = format!("disk.{}", m.path);
        if let Some(e) = &m.error {
            out.push(
                id,
                State::Unknown,
                format!("cannot read {}: {e}", m.path),
                None,
            );
            continue;
        }
        let st = level(m.used_percent, t.disk_warning, t.disk_critical);
        out.push(
            id,
            st,
            format!(
                "{} {:.0} % used, {} free of {}{}",
                m.path,
                m.used_percent,
                bytes(m.avail_bytes),
                bytes(m.size_bytes),
                limit_note(st, t.disk_warning, t.disk_critical, " %")
            ),
            Some(m.used_percent),
        );
        if let Some(ino) = m.inodes_used_percent {
            let st = level(ino, t.inodes_warning, t.inodes_critical);
            out.push(
                format!("inodes.{}", m.path),
                st,
                format!(
                    "{} inodes {ino:.0} % used{}",
                    m.path,
                    limit_note(st, t.inodes_warning, t.inodes_critical, " %")
                ),
                Some(ino),
            );
        }
    }
}

fn app_field_state(value: &str) -> State {
    match value.to_ascii_lowercase().as_str() {
        "ok" | "healthy" | "connected" | "up" | "pass" | "true" => State::Ok,
        "backlog" | "degraded" | "warn" | "warning" | "slow" => State::Warning,
        _ => State::Critical,
    }
}

fn http(out: &mut Out<'_>, s: &HttpSample, w: Window, t: &Thresholds) {
    let st = if (200..400).contains(&s.status) {
        State::Ok
    } else {
        State::Critical
    };
    out.push(
        "http.status",
        st,
        format!("HTTP {} in {:.0} ms", s.status, ms(s.latency)),
        Some(f64::from(s.status)),
    );
    let p95 = w.http_p95.unwrap_or(s.latency);
    let p50 = w.http_p50.unwrap_or(s.latency);
    let st = level(ms(p95), t.http_p95_warning_ms, t.http_p95_critical_ms);
    out.push(
        "http.latency",
        st,
        format!(
            "p95 {:.0} ms, p50 {:.0} ms{}",
            ms(p95),
            ms(p50),
            limit_note(st, t.http_p95_warning_ms, t.http_p95_critical_ms, " ms")
        ),
        Some(ms(p95)),
    );
    if let Some(app) = &s.app {
        for (name, v) in [
            ("status", &app.status),
            ("database", &app.database),
            ("redis", &app.redis),
            ("queue", &app.queue),
        ] {
            if let Some(v) = v {
                out.push(
                    format!("app.{name}"),
                    app_field_state(v),
                    format!("application reports {name}: {v}"),
                    None,
                );
            }
        }
    }
}

fn nginx(out: &mut Out<'_>, s: &NginxSample) {
    out.push(
        "nginx.status",
        State::Ok,
        format!(
            "{} active connections (reading {}, writing {}, waiting {})",
            s.active, s.reading, s.writing, s.waiting
        ),
        Some(s.active as f64),
    );
    for u in &s.upstreams {
        let (st, reason) = if u.up {
            (
                State::Ok,
                format!("upstream {} accepts connections", u.address),
            )
        } else {
            (
                State::Critical,
                format!(
                    "upstream {} refuses connections: {}",
                    u.address,
                    u.error.as_deref().unwrap_or("no answer")
                ),
            )
        };
        out.push(format!("nginx.upstream.{}", u.address), st, reason, None);
    }
}

fn php_fpm(out: &mut Out<'_>, s: &PhpFpmSample, prev: Option<&PhpFpmSample>, t: &Thresholds) {
    out.push(
        "php_fpm.status",
        State::Ok,
        format!(
            "pool {}: {} active, {} idle, {} total",
            s.pool, s.active_processes, s.idle_processes, s.total_processes
        ),
        Some(s.active_processes as f64),
    );
    let q = s.listen_queue as f64;
    let st = level(
        q,
        t.php_fpm_listen_queue_warning,
        t.php_fpm_listen_queue_critical,
    );
    out.push(
        "php_fpm.listen_queue",
        st,
        format!(
            "{} requests waiting for a worker{}",
            s.listen_queue,
            limit_note(
                st,
                t.php_fpm_listen_queue_warning,
                t.php_fpm_listen_queue_critical,
                ""
            )
        ),
        Some(q),
    );
    let newly = prev.map(|p| {
        s.max_children_reached
            .saturating_sub(p.max_children_reached)
    });
    let saturated = s.total_processes > 0 && s.idle_processes == 0;
    let (st, reason) = match newly {
        Some(n) if n > 0 => (
            State::Warning,
            format!("pm.max_children reached {n} more time(s) since the last sample"),
        ),
        _ if saturated => (
            State::Warning,
            format!("all {} workers busy, none idle", s.total_processes),
        ),
        _ => (
            State::Ok,
            format!(
                "{} idle workers (max_children reached {} times since start)",
                s.idle_processes, s.max_children_reached
            ),
        ),
    };
    out.push("php_fpm.workers", st, reason, Some(s.idle_processes as f64));
}

fn mysql(
    out: &mut Out<'_>,
    s: &MysqlSample,
    prev: Option<(&super::model::MysqlStatus, Duration)>,
    t: &Thresholds,
) {
    let s = match s {
        MysqlSample::TooManyConnections { message } => {
            out.push(
                "mysql.connections",
                State::Critical,
                format!("server refused a new connection: {message} (error 1040)"),
                Some(100.0),
            );
            return;
        }
        MysqlSample::Status(s) => s,
    };
    let mut up = format!(
        "up {}, read_only {}, {} threads running, answered in {:.0} ms",
        duration_words(s.uptime_s as f64),
        if s.read_only { "ON" } else { "OFF" },
        s.threads_running,
        ms(s.latency)
    );
    if let Some((p, elapsed)) = prev {
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 && s.questions >= p.questions {
            let qps = (s.questions - p.questions) as f64 / secs;
            let slow = s.slow_queries.saturating_sub(p.slow_queries) as f64 / secs;
            let aborted = s.aborted_connects.saturating_sub(p.aborted_connects);
            let _ = write!(
                up,
                ", {qps:.1} queries/s, {slow:.2} slow/s, {aborted} aborted connects"
            );
        }
    }
    out.push("mysql.up", State::Ok, up, Some(s.threads_running as f64));
    let pct = pct_of(s.connections, s.max_connections);
    let st = level(
        pct,
        t.mysql_connections_warning,
        t.mysql_connections_critical,
    );
    out.push(
        "mysql.connections",
        st,
        format!(
            "connections {}/{} ({pct:.0} %){}",
            s.connections,
            s.max_connections,
            limit_note(
                st,
                t.mysql_connections_warning,
                t.mysql_connections_critical,
                " %"
            )
        ),
        Some(pct),
    );
    let role = out.meta.role.clone();
    match role.as_deref() {
        Some("primary") if s.read_only => out.push(
            "mysql.read_only",
            State::Warning,
            "the primary is read_only: writes fail".to_owned(),
            Some(1.0),
        ),
        Some("replica") if !s.read_only => out.push(
            "mysql.read_only",
            State::Warning,
            "the replica is writable (read_only OFF): writes here diverge".to_owned(),
            Some(0.0),
        ),
        _ => {}
    }
    if let Some(r) = &s.replication {
        let (st, reason) = match (r.io_running, r.sql_running) {
            (true, true) => (State::Ok, "IO and SQL threads running".to_owned()),
            (io, sql) => {
                let stopped: Vec<&str> = [(!io, "IO"), (!sql, "SQL")]
                    .iter()
                    .filter(|(s, _)| *s)
                    .map(|(_, n)| *n)
                    .collect();
                let mut reason = format!("replication {} thread stopped", stopped.join(" and "));
                if let Some(e) = r.last_error.as_deref().filter(|e| !e.is_empty()) {
                    let _ = write!(reason, ": {e}");
                }
                (State::Critical, reason)
            }
        };
        out.push("mysql.replication", st, reason, None);
        match r.lag_s {
            Some(lag) => {
                let st = level(
                    lag as f64,
                    t.replication_lag_warning_s,
                    t.replication_lag_critical_s,
                );
                out.push(
                    "mysql.replication_lag",
                    st,
                    format!(
                        "replica {lag} s behind the primary{}",
                        limit_note(
                            st,
                            t.replication_lag_warning_s,
                            t.replication_lag_critical_s,
                            " s"
                        )
                    ),
                    Some(lag as f64),
                );
            }
            None => out.push(
                "mysql.replication_lag",
                State::Unknown,
                "lag unknown (Seconds_Behind_Master is NULL)".to_owned(),
                None,
            ),
        }
    } else if role.as_deref() == Some("replica") {
        out.push(
            "mysql.replication",
            State::Critical,
            "declared a replica but replication is not configured (no slave status)".to_owned(),
            None,
        );
    }
}

fn redis(
    out: &mut Out<'_>,
    s: &RedisSample,
    prev: Option<(&RedisSample, Duration)>,
    t: &Thresholds,
) {
    let ping = ms(s.ping);
    let st = level(ping, t.redis_ping_warning_ms, t.redis_ping_critical_ms);
    let role = if s.role == "slave" {
        "replica"
    } else {
        s.role.as_str()
    };
    out.push(
        "redis.ping",
        st,
        format!(
            "PONG in {ping:.1} ms, role {role}{}",
            limit_note(st, t.redis_ping_warning_ms, t.redis_ping_critical_ms, " ms")
        ),
        Some(ping),
    );
    let declared = out.meta.role.clone();
    match (declared.as_deref(), role) {
        (Some("master"), "replica") | (Some("replica"), "master") => out.push(
            "redis.role",
            State::Warning,
            format!(
                "inventory says {}, server reports {role} (after a failover?)",
                declared.as_deref().unwrap_or_default()
            ),
            None,
        ),
        _ => {}
    }
    if s.maxmemory > 0 {
        let pct = pct_of(s.used_memory, s.maxmemory);
        let st = level(pct, t.redis_memory_warning, t.redis_memory_critical);
        out.push(
            "redis.memory",
            st,
            format!(
                "used_memory {} of maxmemory {} ({pct:.0} %){}",
                bytes(s.used_memory),
                bytes(s.maxmemory),
                limit_note(st, t.redis_memory_warning, t.redis_memory_critical, " %")
            ),
            Some(pct),
        );
    } else {
        out.push(
            "redis.memory",
            State::Ok,
            format!("used_memory {} (no maxmemory)", bytes(s.used_memory)),
            None,
        );
    }
    if s.maxclients > 0 {
        let pct = pct_of(s.connected_clients, s.maxclients);
        let st = level(pct, t.redis_clients_warning, t.redis_clients_critical);
        out.push(
            "redis.clients",
            st,
            format!(
                "clients {}/{} ({pct:.0} %){}",
                s.connected_clients,
                s.maxclients,
                limit_note(st, t.redis_clients_warning, t.redis_clients_critical, " %")
            ),
            Some(pct),
        );
    }
    if let Some((p, elapsed)) = prev {
        let rejected = s
            .rejected_connections
            .saturating_sub(p.rejected_connections);
        let (st, reason) = if rejected > 0 {
            (
                State::Critical,
                format!(
                    "{rejected} connections rejected in the last {} (maxclients {})",
                    duration_words(elapsed.as_secs_f64()),
                    s.maxclients
                ),
            )
        } else {
            (State::Ok, "no connections rejected".to_owned())
        };
        out.push("redis.rejected", st, reason, Some(rejected as f64));
        let evicted = s.evicted_keys.saturating_sub(p.evicted_keys);
        let hit = s
            .hit_ratio()
            .map_or_else(String::new, |h| format!(", hit ratio {h:.0} %"));
        let (st, reason) = if evicted > 0 {
            (
                State::Warning,
                format!(
                    "{evicted} keys evicted in the last {}{hit}",
                    duration_words(elapsed.as_secs_f64())
                ),
            )
        } else {
            (State::Ok, format!("no evictions{hit}"))
        };
        out.push("redis.evictions", st, reason, Some(evicted as f64));
    }
    if role == "replica" {
        let link_up = s.master_link_status.as_deref() == Some("up");
        let mut reason = format!(
            "master link {}",
            s.master_link_status.as_deref().unwrap_or("unknown")
        );
        if let Some(io) = s.master_last_io_s {
            let _ = write!(reason, ", last I/O {io} s ago");
        }
        if let Some(lag) = s.replica_lag_bytes {
            let _ = write!(reason, ", {} behind", bytes(lag.max(0) as u64));
        }
        out.push(
            "redis.master_link",
            if link_up { State::Ok } else { State::Critical },
            reason,
            s.replica_lag_bytes.map(|l| l as f64),
        );
    }
}

fn sentinel(out: &mut Out<'_>, s: &SentinelSample, expected: Option<&str>) {
    match &s.master_addr {
        // Applications follow Sentinel, so a moved master still works; but the inventory (and
        // every runbook that targets its master) is now wrong, and something made it move.
        Some(addr) if expected.is_some_and(|e| e != addr) => out.push(
            "sentinel.master",
            State::Warning,
            format!(
                "master {} at {addr}, but the inventory says {} (failed over?), {} replicas, {} other sentinels",
                s.master_name,
                expected.unwrap_or_default(),
                s.replicas,
                s.sentinels
            ),
            None,
        ),
        Some(addr) => out.push(
            "sentinel.master",
            State::Ok,
            format!(
                "master {} at {addr}, {} replicas, {} other sentinels",
                s.master_name, s.replicas, s.sentinels
            ),
            None,
        ),
        None => out.push(
            "sentinel.master",
            State::Critical,
            format!("sentinel does not know a master named {:?}", s.master_name),
            None,
        ),
    }
    out.push(
        "sentinel.ckquorum",
        if s.ckquorum_ok {
            State::Ok
        } else {
            State::Critical
        },
        format!("CKQUORUM {}: {}", s.master_name, s.ckquorum_message),
        None,
    );
}

fn queue(out: &mut Out<'_>, s: &QueueSample, t: &Thresholds) {
    let len = s.length as f64;
    let st = level(len, t.queue_warning, t.queue_critical);
    out.push(
        format!("queue.{}", s.name),
        st,
        format!(
            "{} jobs waiting in {}{}",
            s.length,
            s.name,
            limit_note(st, t.queue_warning, t.queue_critical, "")
        ),
        Some(len),
    );
}

fn process(out: &mut Out<'_>, s: &ProcessSample) {
    let (st, reason) = if s.present {
        (
            State::Ok,
            format!("{} process(es) named {}", s.count, s.name),
        )
    } else {
        (
            State::Critical,
            format!("no process named {} is running", s.name),
        )
    };
    out.push(
        format!("process.{}", s.name),
        st,
        reason,
        Some(f64::from(s.count)),
    );
}

fn docker(out: &mut Out<'_>, s: &DockerSample, prev: Option<&DockerSample>, t: &Thresholds) {
    let st = match s.state.as_str() {
        "running" => State::Ok,
        "restarting" | "paused" | "created" => State::Warning,
        _ => State::Critical,
    };
    out.push(
        "docker.state",
        st,
        format!("container {} {}", s.container, s.state),
        None,
    );
    if let Some(h) = &s.health {
        let st = match h.as_str() {
            "healthy" => State::Ok,
            "starting" => State::Warning,
            _ => State::Critical,
        };
        out.push("docker.health", st, format!("health check: {h}"), None);
    }
    let new_restarts = prev.map(|p| s.restart_count.saturating_sub(p.restart_count));
    let (st, reason) = match new_restarts {
        Some(n) if n > 0 => (
            State::Warning,
            format!(
                "restarted {n} time(s) since the last sample ({} in all)",
                s.restart_count
            ),
        ),
        _ if s.restart_count as f64 > t.docker_restarts_warning => (
            State::Warning,
            format!(
                "restarted {} times (warning above {})",
                s.restart_count,
                num(t.docker_restarts_warning)
            ),
        ),
        _ => (State::Ok, format!("restarted {} times", s.restart_count)),
    };
    out.push("docker.restarts", st, reason, Some(s.restart_count as f64));
    if let (Some(used), Some(limit)) = (s.mem_used_bytes, s.mem_limit_bytes.filter(|l| *l > 0)) {
        let pct = pct_of(used, limit);
        let st = level(pct, t.docker_memory_warning, t.docker_memory_critical);
        out.push(
            "docker.memory",
            st,
            format!(
                "memory {} of {} ({pct:.0} %){}",
                bytes(used),
                bytes(limit),
                limit_note(st, t.docker_memory_warning, t.docker_memory_critical, " %")
            ),
            Some(pct),
        );
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // values compared are set exactly
mod tests {
    use super::super::model::{
        AppHealth, MountSample, MysqlStatus, ReplicationSample, UpstreamSample,
    };
    use super::*;

    fn meta(role: Option<&str>) -> TargetMeta {
        TargetMeta {
            tier: "db".to_owned(),
            role: role.map(str::to_owned),
            interval: Duration::from_secs(5),
            expected_master: None,
        }
    }

    fn eval(kind: ProbeKind, sample: &Sample, role: Option<&str>) -> Vec<Check> {
        let key = TargetKey::new("db-1", kind, "127.0.0.1:3306");
        evaluate_sample(
            &key,
            &meta(role),
            sample,
            None,
            Window::default(),
            &Thresholds::default(),
            None,
        )
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
    }

    fn mysql_status(connections: u64, max: u64) -> MysqlStatus {
        MysqlStatus {
            connections,
            max_connections: max,
            uptime_s: 3600,
            ..MysqlStatus::default()
        }
    }

    #[test]
    fn state_order_is_worst_last() {
        assert!(State::Ok < State::Warning);
        assert!(State::Warning < State::Unknown);
        assert!(State::Unknown < State::Critical);
        assert!(State::Critical < State::Down);
        assert_eq!("critical".parse::<State>(), Ok(State::Critical));
        assert!("bad".parse::<State>().is_err());
    }

    #[test]
    fn level_is_strictly_above() {
        assert_eq!(level(80.0, 80.0, 95.0), State::Ok);
        assert_eq!(level(80.1, 80.0, 95.0), State::Warning);
        assert_eq!(level(95.0, 80.0, 95.0), State::Warning);
        assert_eq!(level(96.0, 80.0, 95.0), State::Critical);
    }

    #[test]
    fn mysql_connections_reason_names_the_numbers() {
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(mysql_status(148, 150))),
            Some("primary"),
        );
        let conn = find(&c, "mysql.connections");
        assert_eq!(conn.state, State::Critical);
        assert_eq!(
            conn.reason,
            "connections 148/150 (99 %) (critical above 95 %)"
        );
        assert_eq!(conn.instance, "127.0.0.1:3306");
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(mysql_status(125, 150))),
            Some("primary"),
        );
        assert_eq!(find(&c, "mysql.connections").state, State::Warning);
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(mysql_status(10, 150))),
            Some("primary"),
        );
        assert_eq!(find(&c, "mysql.connections").state, State::Ok);
        assert_eq!(find(&c, "mysql.up").state, State::Ok);
    }

    #[test]
    fn mysql_1040_is_critical_connections() {
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::TooManyConnections {
                message: "Too many connections".to_owned(),
            }),
            Some("primary"),
        );
        let conn = find(&c, "mysql.connections");
        assert_eq!(conn.state, State::Critical);
        assert!(conn.reason.contains("1040"), "{}", conn.reason);
    }

    #[test]
    fn replication_threads_and_lag() {
        let mut s = mysql_status(5, 150);
        s.read_only = true;
        s.replication = Some(ReplicationSample {
            io_running: false,
            sql_running: true,
            lag_s: None,
            last_error: Some("error connecting to master".to_owned()),
        });
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(s.clone())),
            Some("replica"),
        );
        let r = find(&c, "mysql.replication");
        assert_eq!(r.state, State::Critical);
        assert_eq!(
            r.reason,
            "replication IO thread stopped: error connecting to master"
        );
        assert_eq!(find(&c, "mysql.replication_lag").state, State::Unknown);

        s.replication = Some(ReplicationSample {
            io_running: true,
            sql_running: true,
            lag_s: Some(75),
            last_error: None,
        });
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(s.clone())),
            Some("replica"),
        );
        assert_eq!(find(&c, "mysql.replication").state, State::Ok);
        let lag = find(&c, "mysql.replication_lag");
        assert_eq!(lag.state, State::Critical);
        assert_eq!(lag.value, Some(75.0));
        assert!(
            !c.iter().any(|c| c.id == "mysql.read_only"),
            "replica is read_only: fine"
        );

        s.read_only = false;
        s.replication = None;
        let c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(s)),
            Some("replica"),
        );
        assert_eq!(find(&c, "mysql.replication").state, State::Critical);
        assert_eq!(find(&c, "mysql.read_only").state, State::Warning);
    }

    #[test]
    fn mysql_rates_from_previous_sample() {
        let key = TargetKey::new("db-1", ProbeKind::Mysql, "x");
        let mut a = mysql_status(5, 100);
        a.questions = 1000;
        let mut b = a.clone();
        b.questions = 1500;
        b.slow_queries = 10;
        let prev_sample = Sample::Mysql(MysqlSample::Status(a));
        let prev = Previous {
            sample: &prev_sample,
            elapsed: Duration::from_secs(10),
        };
        let c = evaluate_sample(
            &key,
            &meta(None),
            &Sample::Mysql(MysqlSample::Status(b)),
            Some(&prev),
            Window::default(),
            &Thresholds::default(),
            None,
        );
        let up = find(&c, "mysql.up");
        assert!(up.reason.contains("50.0 queries/s"), "{}", up.reason);
        assert!(up.reason.contains("1.00 slow/s"), "{}", up.reason);
    }

    #[test]
    fn host_disk_inodes_cpu_memory() {
        let s = HostSample {
            cpu_percent: Some(85.0),
            cpu_counters: super::super::model::CpuCounters::default(),
            cpus: 2,
            load1: 1.0,
            load5: 0.5,
            load15: 0.2,
            mem_total_bytes: 8 << 30,
            mem_used_percent: 50.0,
            swap_used_percent: None,
            mounts: vec![
                MountSample {
                    path: "/var/log".to_owned(),
                    size_bytes: 100 << 30,
                    avail_bytes: 3 << 30,
                    used_percent: 97.0,
                    inodes_used_percent: Some(10.0),
                    error: None,
                },
                MountSample {
                    path: "/data".to_owned(),
                    size_bytes: 0,
                    avail_bytes: 0,
                    used_percent: 0.0,
                    inodes_used_percent: None,
                    error: Some("No such file or directory".to_owned()),
                },
            ],
            uptime_s: 90000.0,
            top_process: None,
        };
        let c = eval(ProbeKind::Host, &Sample::Host(s), None);
        assert_eq!(find(&c, "host.cpu").state, State::Warning);
        assert_eq!(
            find(&c, "host.cpu").reason,
            "cpu 85 % busy (warning above 80 %)"
        );
        assert_eq!(find(&c, "host.memory").state, State::Ok);
        let d = find(&c, "disk./var/log");
        assert_eq!(d.state, State::Critical);
        assert_eq!(
            d.reason,
            "/var/log 97 % used, 3.0 GiB free of 100.0 GiB (critical above 95 %)"
        );
        assert_eq!(find(&c, "inodes./var/log").state, State::Ok);
        assert_eq!(find(&c, "disk./data").state, State::Unknown);
        assert!(!c.iter().any(|c| c.id == "host.swap"));
        assert!(!c.iter().any(|c| c.id == "inodes./data"));
    }

    #[test]
    fn http_status_latency_and_app_fields() {
        let s = HttpSample {
            url: "http://127.0.0.1/health".to_owned(),
            status: 200,
            latency: Duration::from_millis(30),
            app: Some(AppHealth {
                status: Some("healthy".to_owned()),
                database: Some("disconnected".to_owned()),
                redis: Some("connected".to_owned()),
                queue: Some("backlog".to_owned()),
            }),
        };
        let key = TargetKey::new("app-1", ProbeKind::Http, "http://127.0.0.1/health");
        let w = Window {
            http_p95: Some(Duration::from_millis(250)),
            http_p50: Some(Duration::from_millis(40)),
        };
        let c = evaluate_sample(
            &key,
            &meta(None),
            &Sample::Http(s.clone()),
            None,
            w,
            &Thresholds::default(),
            None,
        );
        assert_eq!(find(&c, "http.status").state, State::Ok);
        let lat = find(&c, "http.latency");
        assert_eq!(lat.state, State::Warning);
        assert_eq!(lat.reason, "p95 250 ms, p50 40 ms (warning above 200 ms)");
        assert_eq!(find(&c, "app.database").state, State::Critical);
        assert_eq!(find(&c, "app.redis").state, State::Ok);
        assert_eq!(find(&c, "app.queue").state, State::Warning);
        let mut bad = s;
        bad.status = 503;
        bad.app = None;
        let c = evaluate_sample(
            &key,
            &meta(None),
            &Sample::Http(bad),
            None,
            Window::default(),
            &Thresholds::default(),
            None,
        );
        assert_eq!(find(&c, "http.status").state, State::Critical);
        assert_eq!(find(&c, "http.latency").state, State::Ok);
    }

    #[test]
    fn redis_memory_clients_rejections_role_and_link() {
        let prev = RedisSample {
            role: "slave".to_owned(),
            maxclients: 100,
            connected_clients: 10,
            rejected_connections: 5,
            ..RedisSample::default()
        };
        let now = RedisSample {
            ping: Duration::from_micros(400),
            role: "slave".to_owned(),
            connected_clients: 100,
            maxclients: 100,
            rejected_connections: 9,
            used_memory: 490 << 20,
            maxmemory: 512 << 20,
            evicted_keys: 3,
            master_link_status: Some("down".to_owned()),
            master_last_io_s: Some(23),
            ..RedisSample::default()
        };
        let key = TargetKey::new("cache-1", ProbeKind::Redis, "127.0.0.1:6379");
        let ps = Sample::Redis(prev);
        let p = Previous {
            sample: &ps,
            elapsed: Duration::from_secs(5),
        };
        let c = evaluate_sample(
            &key,
            &meta(Some("master")),
            &Sample::Redis(now),
            Some(&p),
            Window::default(),
            &Thresholds::default(),
            None,
        );
        assert_eq!(find(&c, "redis.ping").state, State::Ok);
        assert_eq!(find(&c, "redis.memory").state, State::Warning);
        assert_eq!(find(&c, "redis.clients").state, State::Critical);
        assert_eq!(
            find(&c, "redis.clients").reason,
            "clients 100/100 (100 %) (critical above 95 %)"
        );
        let rej = find(&c, "redis.rejected");
        assert_eq!(rej.state, State::Critical);
        assert_eq!(
            rej.reason,
            "4 connections rejected in the last 5 s (maxclients 100)"
        );
        assert_eq!(find(&c, "redis.evictions").state, State::Warning);
        assert_eq!(find(&c, "redis.role").state, State::Warning);
        let link = find(&c, "redis.master_link");
        assert_eq!(link.state, State::Critical);
        assert_eq!(link.reason, "master link down, last I/O 23 s ago");
    }

    #[test]
    fn sentinel_queue_process_docker_nginx_fpm() {
        let c = eval(
            ProbeKind::Sentinel,
            &Sample::Sentinel(SentinelSample {
                master_name: "mymaster".to_owned(),
                master_addr: Some("127.0.0.1:6379".to_owned()),
                ckquorum_ok: false,
                ckquorum_message: "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master".to_owned(),
                sentinels: 0,
                replicas: 1,
            }),
            None,
        );
        assert_eq!(find(&c, "sentinel.master").state, State::Ok);
        assert_eq!(find(&c, "sentinel.ckquorum").state, State::Critical);

        // The inventory's master is elsewhere: Sentinel failed over; the check says where to.
        let key = TargetKey::new("cache-2", ProbeKind::Sentinel, "127.0.0.2:26379");
        let mut m = meta(Some("sentinel"));
        for (expected, state) in [
            ("127.0.0.1:6379", State::Ok),
            ("127.0.0.9:6379", State::Warning),
        ] {
            m.expected_master = Some(expected.to_owned());
            let sample = Sample::Sentinel(SentinelSample {
                master_name: "mymaster".to_owned(),
                master_addr: Some("127.0.0.1:6379".to_owned()),
                ckquorum_ok: true,
                ckquorum_message: "OK 3 usable Sentinels".to_owned(),
                sentinels: 2,
                replicas: 1,
            });
            let c = evaluate_sample(
                &key,
                &m,
                &sample,
                None,
                Window::default(),
                &Thresholds::default(),
                None,
            );
            let master = find(&c, "sentinel.master");
            assert_eq!(master.state, state, "{}", master.reason);
            if state == State::Warning {
                assert!(
                    master
                        .reason
                        .contains("at 127.0.0.1:6379, but the inventory says 127.0.0.9:6379"),
                    "{}",
                    master.reason
                );
            }
        }

        let c = eval(
            ProbeKind::Queue,
            &Sample::Queue(QueueSample {
                name: "default".to_owned(),
                length: 1532,
            }),
            None,
        );
        assert_eq!(find(&c, "queue.default").state, State::Warning);
        assert_eq!(
            find(&c, "queue.default").reason,
            "1532 jobs waiting in default (warning above 1000)"
        );

        let c = eval(
            ProbeKind::Process,
            &Sample::Process(ProcessSample {
                name: "php".to_owned(),
                present: false,
                count: 0,
            }),
            None,
        );
        assert_eq!(find(&c, "process.php").state, State::Critical);

        let c = eval(
            ProbeKind::Docker,
            &Sample::Docker(DockerSample {
                container: "redis-1".to_owned(),
                state: "running".to_owned(),
                health: Some("unhealthy".to_owned()),
                restart_count: 5,
                mem_used_bytes: Some(96),
                mem_limit_bytes: Some(100),
                cpu_percent: None,
            }),
            None,
        );
        assert_eq!(find(&c, "docker.state").state, State::Ok);
        assert_eq!(find(&c, "docker.health").state, State::Critical);
        assert_eq!(find(&c, "docker.restarts").state, State::Warning);
        assert_eq!(find(&c, "docker.memory").state, State::Critical);

        let c = eval(
            ProbeKind::Nginx,
            &Sample::Nginx(NginxSample {
                active: 3,
                accepts: 10,
                handled: 10,
                requests: 20,
                reading: 0,
                writing: 1,
                waiting: 2,
                upstreams: vec![UpstreamSample {
                    address: "127.0.0.1:9000".to_owned(),
                    up: false,
                    error: Some("connection refused".to_owned()),
                }],
            }),
            None,
        );
        assert_eq!(
            find(&c, "nginx.upstream.127.0.0.1:9000").state,
            State::Critical
        );

        let c = eval(
            ProbeKind::PhpFpm,
            &Sample::PhpFpm(PhpFpmSample {
                pool: "www".to_owned(),
                listen_queue: 3,
                total_processes: 5,
                active_processes: 5,
                ..PhpFpmSample::default()
            }),
            None,
        );
        assert_eq!(find(&c, "php_fpm.listen_queue").state, State::Warning);
        assert_eq!(find(&c, "php_fpm.workers").state, State::Warning);
    }

    #[test]
    fn staleness_turns_everything_but_down_unknown() {
        let key = TargetKey::new("db-1", ProbeKind::Mysql, "x");
        let mut c = eval(
            ProbeKind::Mysql,
            &Sample::Mysql(MysqlSample::Status(mysql_status(10, 150))),
            Some("primary"),
        );
        c.extend(down_checks(&key, &meta(None), "connection refused", None));
        let limit = Duration::from_secs(15);
        let mut fresh = c.clone();
        apply_staleness(&mut fresh, Duration::from_secs(15), limit);
        assert_eq!(fresh, c, "at the limit nothing changes");
        apply_staleness(&mut c, Duration::from_secs(17), limit);
        let conn = find(&c, "mysql.connections");
        assert_eq!(conn.state, State::Unknown);
        assert_eq!(
            conn.reason,
            "no fresh sample for 17 s (last: ok connections 10/150 (7 %))"
        );
        assert!(
            c.iter()
                .filter(|c| c.state != State::Down)
                .all(|c| c.state == State::Unknown)
        );
        assert_eq!(c.iter().filter(|c| c.state == State::Down).count(), 1);
        assert_eq!(worst(&c), State::Down);
        assert_eq!(worst(&[]), State::Ok);
    }

    #[test]
    fn availability_ids_per_kind() {
        let k = TargetKey::new("h", ProbeKind::Queue, "default");
        assert_eq!(availability_id(&k), "queue.default");
        let k = TargetKey::new("h", ProbeKind::Host, "");
        let c = down_checks(&k, &meta(None), "ssh: connection refused", None);
        assert_eq!(c[0].id, "host.reachable");
        assert_eq!(c[0].state, State::Down);
        let c = unknown_checks(&k, &meta(None), "no sample yet", None);
        assert_eq!(c[0].state, State::Unknown);
    }
}
