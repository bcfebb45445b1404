//! A realistic console state with no servers behind it: a lab-shaped inventory (or a fleet of
//! any size shaped the same way), the real probe plan, and a `HealthStore` fed typed probe
//! results that tell one incident — the database primary running out of connections, a cache
//! host gone, an app server's CPU climbing. The screenshots, the render benchmarks and the docs
//! draw this through the real `ui::render`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::app::App;
use crate::app::keymap::Keymap;
use crate::inventory::{Inventory, InventoryError};
use crate::probes::history::History;
use crate::probes::model::{
    AppHealth, HostSample, HttpSample, MountSample, MysqlSample, MysqlStatus, NginxSample, Outcome,
    PhpFpmSample, ProbeKind, ProbeResult, ProcessSample, QueueSample, RedisSample,
    ReplicationSample, Sample, SentinelSample, UpstreamSample,
};
use crate::probes::plan::{self, Intervals, ProbeSpec};
use crate::probes::state::HealthStore;
use crate::runbook::Runbook;

/// Seconds between two polls of the story.
pub const POLL: Duration = Duration::from_secs(5);

/// Polls of history the demo state holds (two minutes).
pub const POLLS: u64 = 24;

/// The wall clock the demo shows (fixed, so pictures are reproducible).
pub fn wall() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 4, 5)
        .single()
        .unwrap_or_default()
}

/// The lab's topology (`opsdeck lab up`): nginx in front of two PHP app servers, MariaDB
/// primary/replica, Redis master/replica with Sentinels, one queue worker; SSH to 127.0.10.x.
pub const LAB_INVENTORY: &str = r#"name = "opsdeck-lab"

[defaults.ssh]
user = "root"
port = 22
identity_files = ["ssh/id_ed25519"]
known_hosts = "ssh/known_hosts"
connect_timeout = "5s"

[tiers.lb]
description = "nginx load balancer"
[tiers.app]
description = "nginx + php-fpm application servers"
[tiers.cache]
description = "Redis master, replica and Sentinels"
[tiers.db]
description = "MariaDB primary and replica (GTID replication)"
[tiers.worker]
description = "queue workers (queue:work)"

[hosts.lb]
tier = "lb"
ssh = { host = "127.0.10.1" }
nginx = { status_url = "http://127.0.10.1/nginx_status", upstreams = ["127.0.10.11:80", "127.0.10.12:80"] }
http = [{ url = "http://127.0.10.1/health", app_health = true }]

[hosts.app1]
tier = "app"
ssh = { host = "127.0.10.11" }
nginx = { status_url = "http://127.0.10.11/nginx_status" }
php_fpm = { status_url = "http://127.0.10.11/fpm-status" }
http = [{ url = "http://127.0.10.11/health", app_health = true }]

[hosts.app2]
tier = "app"
ssh = { host = "127.0.10.12" }
nginx = { status_url = "http://127.0.10.12/nginx_status" }
php_fpm = { status_url = "http://127.0.10.12/fpm-status" }
http = [{ url = "http://127.0.10.12/health", app_health = true }]

[hosts.cache1]
tier = "cache"
roles = ["master"]
ssh = { host = "127.0.10.31" }
redis = [
    { role = "master", address = "127.0.10.31", port = 6379, master_name = "mymaster" },
    { role = "sentinel", address = "127.0.10.31", port = 26379, master_name = "mymaster" },
]

[hosts.cache2]
tier = "cache"
roles = ["replica"]
ssh = { host = "127.0.10.32" }
redis = [
    { role = "replica", address = "127.0.10.32", port = 6379, master_name = "mymaster" },
    { role = "sentinel", address = "127.0.10.32", port = 26379, master_name = "mymaster" },
]

[hosts.db1]
tier = "db"
roles = ["primary"]
ssh = { host = "127.0.10.21" }
mysql = [{ role = "primary", address = "127.0.10.21", port = 3306, user = "opsdeck", database = "marg" }]

[hosts.db2]
tier = "db"
roles = ["replica"]
ssh = { host = "127.0.10.22" }
mysql = [{ role = "replica", address = "127.0.10.22", port = 3306, user = "opsdeck", database = "marg" }]

[hosts.worker1]
tier = "worker"
ssh = { host = "127.0.10.51" }
processes = ["queue:work"]
queues = [{ name = "queues:default", redis_host = "cache1" }]
"#;

/// The lab-shaped inventory.
pub fn lab_inventory() -> Result<Inventory, InventoryError> {
    crate::inventory::load_str(LAB_INVENTORY, Path::new("demo/inventory.toml"))
}

/// A fleet of `hosts` SSH hosts shaped like the lab (a tenth load balancers, half app
/// servers, the rest cache, database and worker hosts), every one at `127.0.0.1:ssh_port`.
/// With a port nothing listens on, every host is unreachable.
pub fn fleet_inventory(hosts: usize, ssh_port: u16) -> Result<Inventory, InventoryError> {
    crate::inventory::load_str(
        &fleet_inventory_text(hosts, ssh_port),
        Path::new("demo/fleet.toml"),
    )
}

/// The text of [`fleet_inventory`].
pub fn fleet_inventory_text(hosts: usize, ssh_port: u16) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "name = \"fleet-{hosts}\"\n\n[defaults.ssh]\nuser = \"root\"\nport = {ssh_port}\nidentity_files = [\"ssh/id_ed25519\"]\nknown_hosts = \"ssh/known_hosts\"\nconnect_timeout = \"2s\"\n\n"
    );
    for t in ["lb", "app", "cache", "db", "worker"] {
        let _ = writeln!(s, "[tiers.{t}]");
    }
    let lb = (hosts / 10).max(1);
    let app = hosts / 2;
    let rest = hosts.saturating_sub(lb + app);
    let cache = rest / 3;
    let db = rest / 3;
    let worker = rest - cache - db;
    let mut add = |tier: &str, n: usize, extra: &dyn Fn(usize) -> String| {
        for i in 1..=n {
            let _ = writeln!(
                s,
                "\n[hosts.{tier}{i}]\ntier = \"{tier}\"\nssh = {{ host = \"127.0.0.1\" }}\n{}",
                extra(i)
            );
        }
    };
    add("lb", lb, &|_| String::new());
    add("app", app, &|_| String::new());
    add("cache", cache, &|i| {
        let role = if i == 1 { "master" } else { "replica" };
        format!("redis = [{{ role = \"{role}\", address = \"127.0.0.1\", port = 1 }}]")
    });
    add("db", db, &|i| {
        let role = if i == 1 { "primary" } else { "replica" };
        format!(
            "mysql = [{{ role = \"{role}\", address = \"127.0.0.1\", port = 1, user = \"opsdeck\" }}]"
        )
    });
    add("worker", worker, &|_| {
        "processes = [\"queue:work\"]".to_owned()
    });
    s
}

/// Every runbook in `dir` that loads (as the console offers them).
pub fn load_runbooks(dir: &Path, inv: &Inventory) -> Vec<Arc<Runbook>> {
    crate::runbook::load_dir(dir, Some(inv))
        .map(|v| {
            v.into_iter()
                .filter_map(|(_, r)| r.ok().map(|(rb, _)| Arc::new(rb)))
                .collect()
        })
        .unwrap_or_default()
}

/// The probe plan for every host of `inv`.
pub fn probe_plan(inv: &Inventory) -> Vec<ProbeSpec> {
    let hosts: Vec<_> = inv.hosts.iter().collect();
    plan::plan(inv, &hosts, &Intervals::default())
}

/// What probe `spec` measures at poll `step` of the story: `db1` fills its connections,
/// `cache1` is gone, `app1`'s CPU climbs into warning, every other host is healthy.
pub fn outcome(spec: &ProbeSpec, step: u64) -> Outcome {
    outcome_with(spec, step, false)
}

/// [`outcome`], with db1's idle connections killed (`db1_fixed`): its connections back to a
/// handful.
pub fn outcome_with(spec: &ProbeSpec, step: u64, db1_fixed: bool) -> Outcome {
    let host = spec.key.host.as_str();
    let addr = match &spec.host.transport {
        crate::inventory::TransportSpec::Ssh(s) => format!("{}:{}", s.address, s.port),
        _ => "local".to_owned(),
    };
    if host == "cache1" {
        return Outcome::Down {
            reason: match spec.key.kind {
                ProbeKind::Host => format!("ssh {addr}: connection refused"),
                _ => format!("connect {}: connection refused", spec.key.instance),
            },
        };
    }
    // A stable per-host wobble, so healthy hosts do not all draw the same line.
    let seed = host
        .bytes()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    let wobble = ((seed.wrapping_add(step * 7)) % 9) as f64;
    let sample = match spec.key.kind {
        ProbeKind::Host => {
            let cpu = if host == "app1" {
                (38.0 + 2.2 * step as f64).min(86.0)
            } else {
                14.0 + wobble * 4.0
            };
            Sample::Host(HostSample {
                cpu_percent: Some(cpu),
                cpu_counters: crate::probes::model::CpuCounters::default(),
                cpus: 4,
                load1: cpu / 25.0,
                load5: cpu / 30.0,
                load15: cpu / 40.0,
                mem_total_bytes: 8 << 30,
                mem_used_percent: 41.0 + wobble,
                swap_used_percent: Some(0.0),
                mounts: vec![MountSample {
                    path: "/".into(),
                    size_bytes: 40 << 30,
                    avail_bytes: 22 << 30,
                    used_percent: 45.0,
                    inodes_used_percent: Some(8.0),
                    error: None,
                }],
                uptime_s: 86_400.0 * 12.0,
                top_process: (cpu >= 80.0)
                    .then(|| "php-fpm: pool app (pid 2314, 61 % cpu)".to_owned()),
            })
        }
        ProbeKind::Mysql => {
            let primary = spec.meta.role.as_deref() != Some("replica");
            let connections = if host == "db1" && db1_fixed {
                12 + step % 5
            } else if host == "db1" {
                (60 + 4 * step).min(147)
            } else {
                8 + step % 3
            };
            Sample::Mysql(MysqlSample::Status(MysqlStatus {
                connections,
                max_connections: 150,
                threads_running: 3,
                questions: 10_000 + 420 * step,
                uptime_s: 3600 * 24 * 12,
                read_only: !primary,
                replication: (!primary).then_some(ReplicationSample {
                    io_running: true,
                    sql_running: true,
                    lag_s: Some(0),
                    last_error: None,
                }),
                latency: Duration::from_millis(2),
                ..MysqlStatus::default()
            }))
        }
        ProbeKind::Redis => Sample::Redis(RedisSample {
            ping: Duration::from_micros(300),
            role: if spec.meta.role.as_deref() == Some("replica") {
                "slave".into()
            } else {
                "master".into()
            },
            master_link_status: (spec.meta.role.as_deref() == Some("replica"))
                .then(|| "up".to_owned()),
            replica_lag_bytes: (spec.meta.role.as_deref() == Some("replica")).then_some(0),
            master_last_io_s: (spec.meta.role.as_deref() == Some("replica")).then_some(1),
            connected_clients: 14,
            maxclients: 10_000,
            used_memory: 48 << 20,
            keyspace_hits: 9_000 + 100 * step,
            keyspace_misses: 400,
            ..RedisSample::default()
        }),
        ProbeKind::Sentinel => Sample::Sentinel(SentinelSample {
            master_name: "mymaster".into(),
            master_addr: Some("127.0.10.31:6379".into()),
            ckquorum_ok: true,
            ckquorum_message:
                "OK 2 usable Sentinels. Quorum and failover authorization can be reached".into(),
            sentinels: 2,
            replicas: 1,
        }),
        ProbeKind::Http => Sample::Http(HttpSample {
            url: spec.key.instance.clone(),
            status: 200,
            latency: Duration::from_millis(35 + 3 * wobble as u64),
            app: Some(AppHealth {
                status: Some("ok".into()),
                database: Some("ok".into()),
                redis: Some("ok".into()),
                queue: Some("ok".into()),
            }),
        }),
        // Only the load balancer has upstreams to check.
        ProbeKind::Nginx => Sample::Nginx(NginxSample {
            active: 40 + step,
            accepts: 1000 * step,
            handled: 1000 * step,
            requests: 4000 * step,
            reading: 0,
            writing: 3,
            waiting: 37,
            upstreams: if host == "lb" {
                vec![
                    UpstreamSample {
                        address: "127.0.10.11:80".into(),
                        up: true,
                        error: None,
                    },
                    UpstreamSample {
                        address: "127.0.10.12:80".into(),
                        up: true,
                        error: None,
                    },
                ]
            } else {
                Vec::new()
            },
        }),
        ProbeKind::PhpFpm => Sample::PhpFpm(PhpFpmSample {
            pool: "www".into(),
            process_manager: "dynamic".into(),
            accepted_conn: 5000 * step,
            idle_processes: 6,
            active_processes: 4,
            total_processes: 10,
            max_active_processes: 8,
            ..PhpFpmSample::default()
        }),
        ProbeKind::Queue => Sample::Queue(QueueSample {
            name: spec.key.instance.clone(),
            length: 3 + step % 4,
        }),
        ProbeKind::Process => Sample::Process(ProcessSample {
            name: spec.key.instance.clone(),
            present: true,
            count: 2,
        }),
        ProbeKind::Docker => {
            return Outcome::Unsupported {
                reason: "no Docker host in the demo".into(),
            };
        }
        ProbeKind::Haproxy => {
            return Outcome::Unsupported {
                reason: "no HAProxy in the demo".into(),
            };
        }
    };
    Outcome::Ok(sample)
}

/// The story's clock and probe plan: poll `step` happens at `t0 + step × POLL`.
pub struct Story {
    pub t0: Instant,
    pub specs: Vec<ProbeSpec>,
    /// The next poll to produce.
    pub step: u64,
    /// db1's idle connections were killed: later polls see it recovered.
    pub db1_fixed: bool,
}

impl Story {
    pub fn new(inv: &Inventory, t0: Instant) -> Story {
        Story {
            t0,
            specs: probe_plan(inv),
            step: 0,
            db1_fixed: false,
        }
    }

    /// When poll `step` happens.
    pub fn at(&self, step: u64) -> Instant {
        self.t0 + POLL * step as u32
    }

    /// The wall clock at `at` ([`wall`] is the end of the first [`POLLS`] polls).
    pub fn wall_at(&self, at: Instant) -> DateTime<Utc> {
        let end = self.at(POLLS - 1) + Duration::from_secs(1);
        let delta = if at >= end {
            chrono::Duration::from_std(at - end).unwrap_or_default()
        } else {
            -chrono::Duration::from_std(end - at).unwrap_or_default()
        };
        wall() + delta
    }

    /// The results of the next poll, one per probe.
    pub fn next_poll(&mut self) -> Vec<ProbeResult> {
        let step = self.step;
        self.step += 1;
        let at = self.at(step);
        let at_utc = self.wall_at(at);
        self.specs
            .iter()
            .map(|spec| ProbeResult {
                target: spec.key.clone(),
                at,
                at_utc,
                took: Duration::from_millis(4),
                outcome: outcome_with(spec, step, self.db1_fixed),
            })
            .collect()
    }

    /// Moves `app` forward by `by`: every poll due in that time arrives as probe events, then
    /// the clock ticks.
    pub fn advance(&mut self, app: &mut App, by: Duration) {
        let until = app.now + by;
        while self.at(self.step) <= until {
            let poll = self.next_poll();
            crate::app::update(app, crate::app::Event::Probes(poll));
        }
        let wall = self.wall_at(until);
        crate::app::update(app, crate::app::Event::Tick { now: until, wall });
    }
}

/// A console on `inv` after [`POLLS`] polls of the story, offering `runbooks`.
pub fn app(inv: Inventory, runbooks: Vec<Arc<Runbook>>) -> App {
    app_and_story(inv, runbooks).0
}

/// [`app`] and the story that goes on from it. The polls go through `app::update`, as the
/// console receives them, so the event feed tells the story too.
pub fn app_and_story(inv: Inventory, runbooks: Vec<Arc<Runbook>>) -> (App, Story) {
    let mut story = Story::new(&inv, Instant::now());
    let history = History::covering(Duration::from_secs(600), POLL);
    let health = HealthStore::new(&story.specs, std::collections::BTreeMap::default(), history);
    let start = story.at(0);
    let mut app = App::new(
        Arc::new(inv),
        health,
        Keymap::defaults(),
        start,
        story.wall_at(start),
    )
    .with_runbooks(runbooks);
    for step in 0..POLLS {
        let poll = story.next_poll();
        crate::app::update(&mut app, crate::app::Event::Probes(poll));
        let now = story.at(step) + Duration::from_secs(1);
        let wall = story.wall_at(now);
        crate::app::update(&mut app, crate::app::Event::Tick { now, wall });
    }
    (app, story)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::check::State;

    #[test]
    fn the_story_flags_db1_critical_cache1_down_and_app1_warning() {
        let inv = lab_inventory().expect("lab inventory parses");
        let rbs = load_runbooks(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
            &inv,
        );
        assert!(!rbs.is_empty(), "the shipped runbooks load");
        let app = app(inv, rbs);
        assert_eq!(app.host_state("db1"), State::Critical);
        assert_eq!(app.host_state("cache1"), State::Down);
        assert_eq!(app.host_state("app1"), State::Warning);
        assert_eq!(app.host_state("app2"), State::Ok);
        assert!(
            app.suggestions
                .iter()
                .any(|s| app.runbooks[s.runbook].id == "db-connection-exhaustion"),
            "health suggests the connection runbook"
        );
    }

    #[test]
    fn fleet_has_the_asked_number_of_hosts_in_every_tier() {
        let inv = fleet_inventory(200, 1).expect("fleet parses");
        assert_eq!(inv.hosts.len(), 200);
        for t in ["lb", "app", "cache", "db", "worker"] {
            assert!(inv.hosts_in(t).count() > 0, "tier {t} has hosts");
        }
    }
}
