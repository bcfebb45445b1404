//! Live topology: which node the servers say is the MySQL/MariaDB primary and the Redis
//! master, observed from the latest probe samples, beside what the inventory declares.
//!
//! The inventory's roles are where a fresh start begins; after a failover they are wrong, and
//! acting on them would act on the demoted (or dead) node. So selectors that name a live role
//! (`db:primary`, `db:replica`, `cache:master`, `cache:replica`) resolve against what the
//! servers report when that is known and fresh, and say when it is not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{MysqlSample, Outcome, ProbeKind, Sample, TargetKey};
use super::state::HealthStore;
use crate::inventory::{Host, Inventory, RedisRole};

/// Roles the servers decide, not the inventory.
pub const LIVE_ROLES: &[&str] = &["primary", "replica", "master"];

/// What one host's servers report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Live roles now: `primary` (MySQL, writable, not replicating), `replica` (MySQL or
    /// Redis replicating), `master` (Redis); a read-only MySQL that replicates from nobody
    /// (fenced) has none.
    pub roles: Vec<String>,
    /// What it is based on (`read_only=OFF, no replication`, `ROLE master`, …).
    pub evidence: Vec<String>,
    /// When the samples were taken.
    pub at: Option<DateTime<Utc>>,
    /// No fresh sample: the host is down, unreachable, or not probed lately.
    pub stale: bool,
}

/// Every host's observed live roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub hosts: BTreeMap<String, Observed>,
}

/// A difference between the inventory and the servers, shown on the dashboard and in
/// `opsdeck inventory --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub host: String,
    pub declared: Vec<String>,
    pub observed: Vec<String>,
}

impl Topology {
    /// Derives the topology from the latest samples in `state`; a sample older than
    /// `max_age` (or a probe that failed) makes the host's observation stale.
    pub fn observe(
        inv: &Inventory,
        state: &HealthStore,
        now: Instant,
        max_age: Duration,
    ) -> Topology {
        let mut t = Topology::default();
        for h in &inv.hosts {
            let mut o = Observed {
                roles: Vec::new(),
                evidence: Vec::new(),
                at: None,
                stale: false,
            };
            let mut live_service = false;
            for m in &h.services.mysql {
                live_service = true;
                let key = TargetKey::new(
                    &h.name,
                    ProbeKind::Mysql,
                    super::plan::service_instance(&m.address, m.port),
                );
                match state.latest(&key) {
                    Some(r) if now.saturating_duration_since(r.at) <= max_age => {
                        o.at = Some(r.at_utc);
                        match &r.outcome {
                            Outcome::Ok(Sample::Mysql(MysqlSample::Status(s))) => {
                                match (&s.replication, s.read_only) {
                                    (Some(_), _) => {
                                        o.roles.push("replica".into());
                                        o.evidence.push("MySQL replicates".into());
                                    }
                                    (None, false) => {
                                        o.roles.push("primary".into());
                                        o.evidence.push("MySQL writable, not replicating".into());
                                    }
                                    (None, true) => {
                                        o.evidence.push("MySQL read-only, not replicating".into());
                                    }
                                }
                            }
                            // Full but alive: its role cannot be read now.
                            _ => o.stale = true,
                        }
                    }
                    _ => o.stale = true,
                }
            }
            for r in h
                .services
                .redis
                .iter()
                .filter(|r| r.role != RedisRole::Sentinel)
            {
                live_service = true;
                let key = TargetKey::new(
                    &h.name,
                    ProbeKind::Redis,
                    super::plan::service_instance(&r.address, r.port),
                );
                match state.latest(&key) {
                    Some(res) if now.saturating_duration_since(res.at) <= max_age => {
                        o.at = Some(res.at_utc);
                        match &res.outcome {
                            Outcome::Ok(Sample::Redis(s)) => {
                                let role = if s.role == "master" {
                                    "master"
                                } else {
                                    "replica"
                                };
                                if !o.roles.iter().any(|x| x == role) {
                                    o.roles.push(role.into());
                                }
                                o.evidence.push(format!("Redis ROLE {}", s.role));
                            }
                            _ => o.stale = true,
                        }
                    }
                    _ => o.stale = true,
                }
            }
            if live_service {
                t.hosts.insert(h.name.clone(), o);
            }
        }
        t
    }

    /// The live roles of `host` if they were observed fresh.
    pub fn roles_of(&self, host: &str) -> Option<&[String]> {
        self.hosts
            .get(host)
            .filter(|o| !o.stale)
            .map(|o| o.roles.as_slice())
    }

    /// Hosts whose declared live roles differ from what their servers report.
    pub fn disagreements(&self, inv: &Inventory) -> Vec<Disagreement> {
        let mut out = Vec::new();
        for h in &inv.hosts {
            let Some(observed) = self.roles_of(&h.name) else {
                continue;
            };
            let declared = declared_live(h);
            let mut a = declared.clone();
            let mut b = observed.to_vec();
            a.sort();
            b.sort();
            if a != b {
                out.push(Disagreement {
                    host: h.name.clone(),
                    declared,
                    observed: observed.to_vec(),
                });
            }
        }
        out
    }
}

/// The live roles the inventory declares for `h`.
pub fn declared_live(h: &Host) -> Vec<String> {
    h.roles
        .iter()
        .filter(|r| LIVE_ROLES.contains(&r.as_str()))
        .cloned()
        .collect()
}
