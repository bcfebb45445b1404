//! Health to runbooks: which runbooks the current checks call for, and on which hosts.
//!
//! One copy for both front ends: the console's banner and run narrowing, and `opsdeck run`'s
//! target from health (no `--target`) and `opsdeck runbooks`' suggestions.

use std::sync::Arc;

use super::{Runbook, Severity};
use crate::inventory::{Host, Inventory};
use crate::probes::check::{self, Check, State};
use crate::probes::topology::{Topology, declared_live};

/// A runbook health suggests, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Index into the runbook list it was computed from.
    pub runbook: usize,
    pub state: State,
    /// `check on host: reason` for each matching check.
    pub because: Vec<String>,
    /// Where the run acts: see [`fired_hosts`].
    pub hosts: Vec<String>,
}

/// The checks that call for `rb`: not ok, on one of its tiers, matching one of its triggers.
pub fn hits<'a>(rb: &Runbook, checks: &'a [Check]) -> Vec<&'a Check> {
    checks
        .iter()
        .filter(|c| {
            // A runbook for some tiers is not suggested by a check on another tier (a cache
            // host down does not call for the database failover).
            c.state != State::Ok
                && (rb.tiers.is_empty() || rb.tiers.contains(&c.tier))
                && rb.triggered_by(&c.id, c.state)
        })
        .collect()
}

/// The hosts a run of `rb` treats when no operator named them: the hosts whose checks call
/// for it and, for a load balancer among them whose HTTP checks do, the upstream servers the
/// inventory says it balances over (`upstreams` of its nginx or haproxy) — a slow or failing load balancer is
/// slow or failing because of what is behind it, and the remedy acts there — and, for a
/// replica among them whose Redis or MySQL checks do, the master (primary) of its tier: a
/// replica mirrors its master (a full replica is a full master), and a remedy that changes
/// data acts on the master. Live roles come from `topology` where the servers were asked,
/// else from the inventory.
pub fn fired_hosts(
    rb: &Runbook,
    inv: &Inventory,
    checks: &[Check],
    topology: Option<&Topology>,
) -> Vec<String> {
    let hits = hits(rb, checks);
    let mut hosts: Vec<String> = Vec::new();
    let mut add = |h: &str| {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_owned());
        }
    };
    for c in &hits {
        add(&c.host);
    }
    for c in &hits {
        if !c.id.starts_with("http.") {
            continue;
        }
        let Some(lb) = inv.hosts.iter().find(|h| h.name == c.host) else {
            continue;
        };
        let nginx = lb.services.nginx.iter().flat_map(|n| &n.upstreams);
        let haproxy = lb.services.haproxy.iter().flat_map(|h| &h.upstreams);
        for up in nginx.chain(haproxy) {
            for h in inv.hosts.iter().filter(|h| serves(h, up)) {
                add(&h.name);
            }
        }
    }
    let live = |h: &Host| -> Vec<String> {
        topology
            .and_then(|t| t.roles_of(&h.name))
            .map_or_else(|| declared_live(h), <[String]>::to_vec)
    };
    for c in &hits {
        let source = if c.id.starts_with("redis.") {
            "master"
        } else if c.id.starts_with("mysql.") {
            "primary"
        } else {
            continue;
        };
        let Some(replica) = inv.hosts.iter().find(|h| h.name == c.host) else {
            continue;
        };
        if !live(replica).iter().any(|r| r == "replica") {
            continue;
        }
        for h in inv
            .hosts
            .iter()
            .filter(|h| h.tier == replica.tier && live(h).iter().any(|r| r == source))
        {
            add(&h.name);
        }
    }
    hosts
}

/// Every runbook the checks call for, the worst state first, then the most severe runbook.
pub fn suggest(
    runbooks: &[Arc<Runbook>],
    inv: &Inventory,
    checks: &[Check],
    topology: Option<&Topology>,
) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = Vec::new();
    for (i, rb) in runbooks.iter().enumerate() {
        let hits = hits(rb, checks);
        if hits.is_empty() {
            continue;
        }
        out.push(Suggestion {
            runbook: i,
            state: check::worst(hits.iter().copied()),
            because: hits
                .iter()
                .map(|c| format!("{} on {}: {}", c.id, c.host, c.reason))
                .collect(),
            hosts: fired_hosts(rb, inv, checks, topology),
        });
    }
    out.sort_by(|a, b| {
        b.state.cmp(&a.state).then(
            severity_rank(runbooks[b.runbook].severity)
                .cmp(&severity_rank(runbooks[a.runbook].severity)),
        )
    });
    out
}

fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Low => 0,
        Severity::Medium => 1,
        Severity::High => 2,
        Severity::Critical => 3,
    }
}

/// Whether `host` is the server behind the upstream `addr` (`host:port` or `host`): one of
/// its HTTP endpoints, or its SSH address, names that host (and port, for HTTP).
fn serves(host: &Host, upstream: &str) -> bool {
    let (up_host, up_port) = split_host_port(upstream);
    let http = host.services.http.iter().any(|d| {
        let Some((scheme, rest)) = d.url.split_once("://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (h, p) = split_host_port(authority);
        let default = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        h.eq_ignore_ascii_case(up_host) && p.unwrap_or(default) == up_port.unwrap_or(80)
    });
    let ssh = match &host.transport {
        crate::inventory::TransportSpec::Ssh(s) => s.address.eq_ignore_ascii_case(up_host),
        _ => false,
    };
    http || ssh
}

/// `host:port`, `[v6]:port`, `host` → (host, port).
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let text = r#"
name = "t"

[tiers.lb]
[tiers.app]

[hosts.lb]
local = {}
tier = "lb"
nginx = { upstreams = ["10.0.0.11:8080", "[fd00::12]:80"] }
http = [{ url = "http://10.0.0.1/health" }]

[hosts.app1]
local = {}
tier = "app"
http = [{ url = "http://10.0.0.11:8080/health" }]

[hosts.app2]
local = {}
tier = "app"
http = [{ url = "http://[fd00::12]/health" }]

[hosts.app3]
local = {}
tier = "app"
http = [{ url = "http://10.0.0.11:9090/health" }]
"#;
        crate::inventory::load_str(text, std::path::Path::new("t.toml")).expect("inventory")
    }

    fn check(host: &str, tier: &str, id: &str, state: State) -> Check {
        Check {
            host: host.to_owned(),
            tier: tier.to_owned(),
            id: id.to_owned(),
            instance: String::new(),
            state,
            reason: "slow".to_owned(),
            value: None,
            at: None,
        }
    }

    fn runbook() -> Runbook {
        let text = r#"
id = "latency"
title = "Latency"
summary = "s"
severity = "medium"
tiers = ["lb", "app"]
triggers = [{ check = "http.latency", state = "warning" }]

[[steps]]
id = "restart"
title = "Restart"
kind = "action"
target = { selector = "app", pick = "all" }
shell = "true"
confirm = "yes"
"#;
        crate::runbook::load_str(text, std::path::Path::new("latency.toml"), None)
            .expect("runbook")
            .0
    }

    #[test]
    fn a_slow_load_balancer_implicates_the_upstreams_it_balances_over() {
        let inv = inventory();
        let rb = runbook();
        let checks = [check("lb", "lb", "http.latency", State::Warning)];
        // app3 answers on another port than the upstream names: not behind this balancer.
        assert_eq!(
            fired_hosts(&rb, &inv, &checks, None),
            ["lb", "app1", "app2"]
        );
    }

    #[test]
    fn only_checks_that_call_for_the_runbook_count() {
        let inv = inventory();
        let rb = runbook();
        let checks = [
            check("lb", "lb", "http.latency", State::Ok),
            check("app3", "app", "http.latency", State::Critical),
            check("lb", "db", "http.latency", State::Critical),
            check("app1", "app", "disk./", State::Critical),
        ];
        assert_eq!(fired_hosts(&rb, &inv, &checks, None), ["app3"]);
        let s = suggest(&[Arc::new(rb)], &inv, &checks, None);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].state, State::Critical);
        assert_eq!(s[0].because, ["http.latency on app3: slow"]);
    }

    #[test]
    fn a_full_replica_implicates_the_master_of_its_tier() {
        let text = r#"
name = "t"
[tiers.cache]
[tiers.sessions]

[hosts.cache1]
tier = "cache"
roles = ["master"]
local = {}

[hosts.cache2]
tier = "cache"
roles = ["replica"]
local = {}

[hosts.sessions1]
tier = "sessions"
roles = ["master"]
local = {}
"#;
        let inv = crate::inventory::load_str(text, std::path::Path::new("t.toml")).expect("inv");
        let rb = crate::runbook::load_str(
            r#"
id = "flush"
title = "Flush"
summary = "s"
severity = "high"
tiers = ["cache"]
triggers = [{ check = "redis.memory", state = "warning" }]

[[steps]]
id = "flush"
title = "Flush"
kind = "action"
target = { selector = "cache:master", pick = "first" }
redis = ["FLUSHDB"]
confirm = "typed"
"#,
            std::path::Path::new("flush.toml"),
            None,
        )
        .expect("runbook")
        .0;
        let checks = [check("cache2", "cache", "redis.memory", State::Critical)];
        // The master of its own tier, not another tier's.
        assert_eq!(fired_hosts(&rb, &inv, &checks, None), ["cache2", "cache1"]);
        // After a failover the servers say cache2 is the master: nothing else is implicated.
        let mut live = Topology::default();
        for (h, r) in [("cache1", "replica"), ("cache2", "master")] {
            live.hosts.insert(
                h.to_owned(),
                crate::probes::topology::Observed {
                    roles: vec![r.to_owned()],
                    evidence: Vec::new(),
                    at: None,
                    stale: false,
                },
            );
        }
        assert_eq!(fired_hosts(&rb, &inv, &checks, Some(&live)), ["cache2"]);
    }

    #[test]
    fn upstream_addresses_split_like_urls() {
        assert_eq!(split_host_port("10.0.0.1:80"), ("10.0.0.1", Some(80)));
        assert_eq!(split_host_port("[fd00::1]:8080"), ("fd00::1", Some(8080)));
        assert_eq!(split_host_port("fd00::1"), ("fd00::1", None));
        assert_eq!(split_host_port("app.example"), ("app.example", None));
        assert_eq!(split_host_port("app:x"), ("app:x", None));
    }
}
