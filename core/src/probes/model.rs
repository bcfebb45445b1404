//! Typed samples: what one probe run measured, as owned data that crosses a channel.
//!
//! A probe run yields a [`ProbeResult`]: which target, when, and either a sample or
//! `Down { reason }`. A failed probe is state to show, never an error that ends a loop.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a probe measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Host,
    Http,
    Nginx,
    PhpFpm,
    Mysql,
    Redis,
    Sentinel,
    Queue,
    Process,
    Docker,
    Haproxy,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Host => "host",
            ProbeKind::Http => "http",
            ProbeKind::Nginx => "nginx",
            ProbeKind::PhpFpm => "php_fpm",
            ProbeKind::Mysql => "mysql",
            ProbeKind::Redis => "redis",
            ProbeKind::Sentinel => "sentinel",
            ProbeKind::Queue => "queue",
            ProbeKind::Process => "process",
            ProbeKind::Docker => "docker",
            ProbeKind::Haproxy => "haproxy",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One probe on one host: the unit the scheduler runs and the state keeps.
/// `instance` tells apart several probes of a kind on one host (a URL, `127.0.0.1:3306`,
/// a queue name); it is empty for the host probe.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TargetKey {
    pub host: String,
    pub kind: ProbeKind,
    pub instance: String,
}

impl TargetKey {
    pub fn new(host: impl Into<String>, kind: ProbeKind, instance: impl Into<String>) -> Self {
        TargetKey {
            host: host.into(),
            kind,
            instance: instance.into(),
        }
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.instance.is_empty() {
            write!(f, "{} {}", self.host, self.kind)
        } else {
            write!(f, "{} {} {}", self.host, self.kind, self.instance)
        }
    }
}

/// The owned result of one probe run.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub target: TargetKey,
    /// Monotonic time the run finished (for staleness and rates).
    pub at: Instant,
    /// Wall-clock time, for reports.
    pub at_utc: DateTime<Utc>,
    /// How long the run took.
    pub took: Duration,
    pub outcome: Outcome,
}

impl ProbeResult {
    pub fn now(target: TargetKey, took: Duration, outcome: Outcome) -> Self {
        ProbeResult {
            target,
            at: Instant::now(),
            at_utc: Utc::now(),
            took,
            outcome,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok(Sample),
    /// The target did not answer, or answered with an error that means "not serving".
    Down {
        reason: String,
    },
    /// The probe cannot run in this build or setup (shown as unknown, never as ok).
    Unsupported {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sample {
    Host(HostSample),
    Http(HttpSample),
    Nginx(NginxSample),
    PhpFpm(PhpFpmSample),
    Mysql(MysqlSample),
    Redis(RedisSample),
    Sentinel(SentinelSample),
    Queue(QueueSample),
    Process(ProcessSample),
    Docker(DockerSample),
    Haproxy(super::haproxy::HaproxySample),
}

/// Cumulative CPU time counters from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuCounters {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuCounters {
    /// Idle time (idle + iowait).
    pub fn idle_all(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }

    pub fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Busy percentage between an earlier reading and this one; `None` when no time passed
    /// or the counters went backwards (a reboot).
    pub fn busy_percent_since(&self, earlier: &CpuCounters) -> Option<f64> {
        let total = self.total().checked_sub(earlier.total())?;
        let idle = self.idle_all().checked_sub(earlier.idle_all())?;
        if total == 0 || idle > total {
            return None;
        }
        Some((total - idle) as f64 * 100.0 / total as f64)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostSample {
    /// Busy CPU % since the previous reading of this host (`None` before there is one).
    pub cpu_percent: Option<f64>,
    #[serde(skip)]
    pub cpu_counters: CpuCounters,
    pub cpus: u32,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub mem_total_bytes: u64,
    pub mem_used_percent: f64,
    /// `None` when the host has no swap.
    pub swap_used_percent: Option<f64>,
    pub mounts: Vec<MountSample>,
    pub uptime_s: f64,
    /// When the CPU is busy past its warning level: the busiest process, so the check can name
    /// the cause (`sh -c ... (pid 4242, 99 % cpu)`). Fetched only then: it forks a `ps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_process: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MountSample {
    pub path: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
    pub used_percent: f64,
    /// `None` for filesystems without inode accounting (btrfs, some overlays).
    pub inodes_used_percent: Option<f64>,
    /// Set when this mount could not be read; the other fields are then zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpSample {
    pub url: String,
    pub status: u16,
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
    /// The application's `/health` JSON, when the endpoint is declared `app_health`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppHealth>,
}

/// The `/health` document of seed 001: `status`, `database`, `redis`, `queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppHealth {
    pub status: Option<String>,
    pub database: Option<String>,
    pub redis: Option<String>,
    pub queue: Option<String>,
}

/// nginx `stub_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NginxSample {
    pub active: u64,
    pub accepts: u64,
    pub handled: u64,
    pub requests: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
    /// Upstreams (`host:port`) and whether a TCP connect succeeded.
    pub upstreams: Vec<UpstreamSample>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamSample {
    pub address: String,
    pub up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// php-fpm `pm.status_path`, plain-text form.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PhpFpmSample {
    pub pool: String,
    pub process_manager: String,
    pub accepted_conn: u64,
    pub listen_queue: u64,
    pub max_listen_queue: u64,
    pub listen_queue_len: u64,
    pub idle_processes: u64,
    pub active_processes: u64,
    pub total_processes: u64,
    pub max_active_processes: u64,
    pub max_children_reached: u64,
    pub slow_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MysqlSample {
    Status(MysqlStatus),
    /// The server refused us with error 1040: every slot is taken.
    TooManyConnections {
        message: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MysqlStatus {
    /// `Threads_connected`.
    pub connections: u64,
    pub max_connections: u64,
    pub threads_running: u64,
    pub aborted_connects: u64,
    pub slow_queries: u64,
    /// `Questions`, for queries per second from deltas.
    pub questions: u64,
    pub uptime_s: u64,
    pub read_only: bool,
    pub replication: Option<ReplicationSample>,
    #[serde(serialize_with = "ser_ms")]
    pub latency: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplicationSample {
    pub io_running: bool,
    pub sql_running: bool,
    /// `Seconds_Behind_Master` / `Seconds_Behind_Source`; `None` when NULL (a thread stopped).
    pub lag_s: Option<u64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RedisSample {
    #[serde(serialize_with = "ser_ms")]
    pub ping: Duration,
    /// `master` or `slave`.
    pub role: String,
    pub connected_clients: u64,
    pub maxclients: u64,
    pub rejected_connections: u64,
    pub used_memory: u64,
    /// 0 = no limit.
    pub maxmemory: u64,
    pub evicted_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// Replicas only: `up` / `down`.
    pub master_link_status: Option<String>,
    /// Replicas only: master offset minus ours, in bytes, when known.
    pub replica_lag_bytes: Option<i64>,
    /// Replicas only: seconds since the last interaction with the master.
    pub master_last_io_s: Option<u64>,
}

impl RedisSample {
    /// Keyspace hit ratio in %, when there were any lookups.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.keyspace_hits.saturating_add(self.keyspace_misses);
        (total > 0).then(|| self.keyspace_hits as f64 * 100.0 / total as f64)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SentinelSample {
    pub master_name: String,
    /// `ip:port` the sentinel names as master, `None` if it does not know the name.
    pub master_addr: Option<String>,
    pub ckquorum_ok: bool,
    pub ckquorum_message: String,
    pub sentinels: u32,
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueSample {
    pub name: String,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    pub name: String,
    pub present: bool,
    pub count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DockerSample {
    pub container: String,
    /// `running`, `exited`, `restarting`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`; `None` without a HEALTHCHECK.
    pub health: Option<String>,
    pub restart_count: u64,
    pub cpu_percent: Option<f64>,
    pub mem_used_bytes: Option<u64>,
    pub mem_limit_bytes: Option<u64>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // values compared are set exactly from integers
mod tests {
    use super::*;

    #[test]
    fn cpu_busy_percent_from_deltas() {
        let a = CpuCounters {
            user: 100,
            system: 50,
            idle: 800,
            iowait: 50,
            ..CpuCounters::default()
        };
        let b = CpuCounters {
            user: 160,
            system: 70,
            idle: 810,
            iowait: 60,
            ..CpuCounters::default()
        };
        // 100 ticks passed, 20 of them idle.
        assert_eq!(b.busy_percent_since(&a), Some(80.0));
        // No time passed, or a reboot: no figure rather than a wrong one.
        assert_eq!(a.busy_percent_since(&a), None);
        assert_eq!(a.busy_percent_since(&b), None);
    }

    #[test]
    fn redis_hit_ratio() {
        let s = RedisSample {
            keyspace_hits: 90,
            keyspace_misses: 10,
            ..RedisSample::default()
        };
        assert_eq!(s.hit_ratio(), Some(90.0));
        assert_eq!(RedisSample::default().hit_ratio(), None);
    }
}
