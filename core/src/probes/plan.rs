//! What to probe: the inventory's hosts and services turned into probe specs, one per
//! (host, kind, instance), each with its interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::check::TargetMeta;
use super::model::{ProbeKind, TargetKey};
use crate::inventory::model::{HaproxyDef, HttpDef, NginxDef, PhpFpmDef};
use crate::inventory::{Host, Inventory, MysqlService, RedisRole, RedisService, TransportSpec};

/// Default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Intervals per probe kind; kinds not listed use `default`.
#[derive(Debug, Clone)]
pub struct Intervals {
    pub default: Duration,
    pub per_kind: BTreeMap<ProbeKind, Duration>,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals::uniform(DEFAULT_INTERVAL)
    }
}

impl Intervals {
    /// The same interval for every probe except the slower-moving process and Docker probes,
    /// which run at three times it.
    pub fn uniform(every: Duration) -> Self {
        let mut per_kind = BTreeMap::new();
        per_kind.insert(ProbeKind::Process, every * 3);
        per_kind.insert(ProbeKind::Docker, every * 3);
        Intervals {
            default: every,
            per_kind,
        }
    }

    pub fn of(&self, kind: ProbeKind) -> Duration {
        self.per_kind.get(&kind).copied().unwrap_or(self.default)
    }
}

/// What one probe asks.
#[derive(Debug, Clone)]
pub enum What {
    Host {
        mounts: Vec<String>,
    },
    Http(HttpDef),
    Nginx(NginxDef),
    PhpFpm(PhpFpmDef),
    Mysql(MysqlService),
    Redis(RedisService),
    Sentinel(RedisService),
    /// `LLEN name` on a Redis that lives on `redis_host`.
    Queue {
        name: String,
        redis_host: Arc<Host>,
        service: RedisService,
    },
    Process(String),
    Docker,
    Haproxy(HaproxyDef),
    /// Cannot be probed as configured; shown as unknown with this reason.
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub key: TargetKey,
    pub meta: TargetMeta,
    pub host: Arc<Host>,
    pub what: What,
}

pub fn service_instance(address: &str, port: u16) -> String {
    format!("{address}:{port}")
}

/// The master the inventory declares for a Sentinel master name: the one Redis service with
/// role `master` and that name (or no name), anywhere in the inventory. `None` when there is
/// not exactly one, so nothing is compared.
fn expected_master(inv: &Inventory, name: Option<&str>) -> Option<String> {
    let masters = || {
        inv.hosts
            .iter()
            .flat_map(|h| &h.services.redis)
            .filter(|r| r.role == RedisRole::Master)
    };
    let one = |mut it: Box<dyn Iterator<Item = &RedisService> + '_>| {
        let first = it.next()?;
        it.next()
            .is_none()
            .then(|| service_instance(&first.address, first.port))
    };
    let named: Vec<&RedisService> = masters()
        .filter(|r| name.is_some() && r.master_name.as_deref() == name)
        .collect();
    if named.is_empty() {
        one(Box::new(masters().filter(|r| r.master_name.is_none())))
    } else {
        one(Box::new(named.into_iter()))
    }
}

/// Every probe for `hosts`, in inventory order. What cannot be probed as configured (a queue
/// without any Redis to read it from) is still planned, as [`What::Unavailable`].
pub fn plan(inv: &Inventory, hosts: &[&Host], intervals: &Intervals) -> Vec<ProbeSpec> {
    let mut out = Vec::new();
    for host in hosts {
        let h = Arc::new((*host).clone());
        let mut add = |kind: ProbeKind, instance: String, role: Option<String>, what: What| {
            let expected_master = match &what {
                What::Sentinel(r) => expected_master(inv, r.master_name.as_deref()),
                _ => None,
            };
            out.push(ProbeSpec {
                key: TargetKey::new(&host.name, kind, instance),
                meta: TargetMeta {
                    tier: host.tier.clone(),
                    role,
                    interval: intervals.of(kind),
                    expected_master,
                },
                host: Arc::clone(&h),
                what,
            });
        };
        match &host.transport {
            TransportSpec::Docker(_) => add(ProbeKind::Docker, String::new(), None, What::Docker),
            TransportSpec::Ssh(_) | TransportSpec::Local => add(
                ProbeKind::Host,
                String::new(),
                None,
                What::Host {
                    mounts: if host.services.mounts.is_empty() {
                        vec!["/".to_owned()]
                    } else {
                        host.services.mounts.clone()
                    },
                },
            ),
        }
        let s = &host.services;
        for http in &s.http {
            add(
                ProbeKind::Http,
                http.url.clone(),
                None,
                What::Http(http.clone()),
            );
        }
        if let Some(n) = &s.nginx
            && (n.status_url.is_some() || !n.upstreams.is_empty())
        {
            add(
                ProbeKind::Nginx,
                n.status_url.clone().unwrap_or_default(),
                None,
                What::Nginx(n.clone()),
            );
        }
        if let Some(hp) = &s.haproxy {
            add(
                ProbeKind::Haproxy,
                hp.stats_url.clone(),
                None,
                What::Haproxy(hp.clone()),
            );
        }
        if let Some(f) = &s.php_fpm {
            add(
                ProbeKind::PhpFpm,
                f.status_url.clone(),
                None,
                What::PhpFpm(f.clone()),
            );
        }
        for m in &s.mysql {
            let role = match m.role {
                crate::inventory::MysqlRole::Primary => "primary",
                crate::inventory::MysqlRole::Replica => "replica",
            };
            add(
                ProbeKind::Mysql,
                service_instance(&m.address, m.port),
                Some(role.to_owned()),
                What::Mysql(m.clone()),
            );
        }
        for r in &s.redis {
            let inst = service_instance(&r.address, r.port);
            match r.role {
                RedisRole::Sentinel => add(
                    ProbeKind::Sentinel,
                    inst,
                    Some("sentinel".to_owned()),
                    What::Sentinel(r.clone()),
                ),
                RedisRole::Master => {
                    add(
                        ProbeKind::Redis,
                        inst,
                        Some("master".to_owned()),
                        What::Redis(r.clone()),
                    );
                }
                RedisRole::Replica => {
                    add(
                        ProbeKind::Redis,
                        inst,
                        Some("replica".to_owned()),
                        What::Redis(r.clone()),
                    );
                }
            }
        }
        for q in &s.queues {
            let holder = match &q.redis_host {
                Some(name) => inv.host(name),
                None => inv
                    .hosts
                    .iter()
                    .find(|h| h.services.redis.iter().any(|r| r.role == RedisRole::Master)),
            };
            let service = holder.and_then(|h| {
                h.services
                    .redis
                    .iter()
                    .find(|r| r.role == RedisRole::Master)
                    .or_else(|| {
                        h.services
                            .redis
                            .iter()
                            .find(|r| r.role != RedisRole::Sentinel)
                    })
                    .map(|r| (Arc::new(h.clone()), r.clone()))
            });
            if let Some((redis_host, service)) = service {
                add(
                    ProbeKind::Queue,
                    q.name.clone(),
                    None,
                    What::Queue {
                        name: q.name.clone(),
                        redis_host,
                        service,
                    },
                );
            } else {
                // Still planned so it shows as unknown with the reason, never silently dropped.
                add(
                    ProbeKind::Queue,
                    q.name.clone(),
                    None,
                    What::Process(String::new()),
                );
            }
        }
        for p in &s.processes {
            add(
                ProbeKind::Process,
                p.clone(),
                None,
                What::Process(p.clone()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_every_service_in_inventory_order() {
        let inv = crate::inventory::load_str(
            r#"
[hosts.lb-1]
tier = "lb"
local = {}
nginx = { status_url = "http://127.0.0.1/nginx_status" }
http = [{ url = "http://127.0.0.1/health", app_health = true }]

[hosts.db-1]
tier = "db"
local = {}
mounts = ["/", "/var/lib/mysql"]
mysql = [{ role = "primary", port = 3307 }]

[hosts.cache-1]
tier = "cache"
local = {}
redis = [{ role = "master", port = 6380 }, { role = "sentinel", port = 26380, master_name = "mymaster" }]

[hosts.worker-1]
tier = "worker"
local = {}
queues = [{ name = "default" }]
processes = ["php"]
"#,
            std::path::Path::new("t.toml"),
        )
        .expect("inventory");
        let hosts: Vec<&Host> = inv.hosts.iter().collect();
        let p = plan(&inv, &hosts, &Intervals::uniform(Duration::from_secs(2)));
        let keys: Vec<String> = p.iter().map(|s| s.key.to_string()).collect();
        assert_eq!(
            keys,
            vec![
                "lb-1 host",
                "lb-1 http http://127.0.0.1/health",
                "lb-1 nginx http://127.0.0.1/nginx_status",
                "db-1 host",
                "db-1 mysql 127.0.0.1:3307",
                "cache-1 host",
                "cache-1 redis 127.0.0.1:6380",
                "cache-1 sentinel 127.0.0.1:26380",
                "worker-1 host",
                "worker-1 queue default",
                "worker-1 process php",
            ]
        );
        let q = p
            .iter()
            .find(|s| s.key.kind == ProbeKind::Queue)
            .expect("queue");
        match &q.what {
            What::Queue {
                redis_host,
                service,
                ..
            } => {
                assert_eq!(redis_host.name, "cache-1");
                assert_eq!(service.port, 6380);
            }
            other => panic!("{other:?}"),
        }
        let db = p.iter().find(|s| s.key.host == "db-1").expect("db");
        match &db.what {
            What::Host { mounts } => {
                assert_eq!(mounts, &vec!["/".to_owned(), "/var/lib/mysql".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        let proc_ = p
            .iter()
            .find(|s| s.key.kind == ProbeKind::Process)
            .expect("process");
        assert_eq!(proc_.meta.interval, Duration::from_secs(6));
        assert_eq!(db.meta.interval, Duration::from_secs(2));
    }
}
