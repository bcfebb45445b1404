//! Live topology, pure: roles observed from probe samples decide what `db:primary` and
//! `cache:master` select; a changing step whose hosts nobody could confirm asks in the console
//! and is refused headless unless named.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsdeck::inventory::{self, Inventory, Selector};
use opsdeck::probes::model::{
    MysqlSample, MysqlStatus, Outcome, ProbeKind, ProbeResult, RedisSample, ReplicationSample,
    Sample, TargetKey,
};
use opsdeck::probes::topology::Topology;
use opsdeck::runbook::engine::{
    DecisionKind, Engine, Event, ExecResult, Input, Options, Outcome as RunOutcome, Output, Plan,
};
use opsdeck::runbook::{Vars, load_str};

fn inv() -> Inventory {
    let p = format!(
        "{}/tests/inventories/lab-shaped.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    inventory::load(Some(Path::new(&p))).expect("inventory")
}

fn mysql_instance(inv: &Inventory, host: &str) -> String {
    let m = &inv.host(host).expect("host").services.mysql[0];
    format!("{}:{}", m.address, m.port)
}

fn mysql(inv: &Inventory, host: &str, read_only: bool, replicates: bool) -> ProbeResult {
    ProbeResult::now(
        TargetKey::new(host, ProbeKind::Mysql, mysql_instance(inv, host)),
        Duration::from_millis(3),
        Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
            max_connections: 100,
            read_only,
            replication: replicates.then_some(ReplicationSample {
                io_running: true,
                sql_running: true,
                lag_s: Some(0),
                last_error: None,
            }),
            ..MysqlStatus::default()
        }))),
    )
}

fn down(inv: &Inventory, host: &str) -> ProbeResult {
    ProbeResult::now(
        TargetKey::new(host, ProbeKind::Mysql, mysql_instance(inv, host)),
        Duration::from_millis(3),
        Outcome::Down {
            reason: "connection refused".into(),
        },
    )
}

fn redis(inv: &Inventory, host: &str, role: &str) -> ProbeResult {
    let r = inv
        .host(host)
        .expect("host")
        .services
        .redis
        .iter()
        .find(|r| r.role != inventory::RedisRole::Sentinel)
        .expect("redis");
    ProbeResult::now(
        TargetKey::new(host, ProbeKind::Redis, format!("{}:{}", r.address, r.port)),
        Duration::from_millis(1),
        Outcome::Ok(Sample::Redis(RedisSample {
            role: role.into(),
            ..RedisSample::default()
        })),
    )
}

fn topology(inv: &Inventory, results: Vec<ProbeResult>) -> Topology {
    let th = opsdeck::probes::thresholds::resolve(inv).expect("thresholds");
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs =
        opsdeck::probes::plan::plan(inv, &hosts, &opsdeck::probes::plan::Intervals::default());
    let history = opsdeck::probes::history::History::covering(
        Duration::from_secs(60),
        Duration::from_secs(5),
    );
    let mut state = opsdeck::probes::state::HealthStore::new(&specs, th, history);
    for r in results {
        state.update(r);
    }
    Topology::observe(inv, &state, Instant::now(), Duration::from_secs(30))
}

fn select(inv: &Inventory, t: &Topology, sel: &str) -> (Vec<String>, Vec<String>) {
    let s: Selector = sel.parse().expect("selector");
    let live = |h: &str| t.roles_of(h).map(<[String]>::to_vec);
    let r = s.resolve_live(inv, &live).expect("resolves");
    (r.hosts.iter().map(|h| h.name.clone()).collect(), r.doubts)
}

#[test]
fn after_a_failover_the_selectors_follow_the_servers_not_the_inventory() {
    let inv = inv();
    // db2 was promoted, db1 fenced read-only; Sentinel moved the master to cache2.
    let t = topology(
        &inv,
        vec![
            mysql(&inv, "db1", true, false),
            mysql(&inv, "db2", false, false),
            redis(&inv, "cache1", "slave"),
            redis(&inv, "cache2", "master"),
        ],
    );
    assert_eq!(select(&inv, &t, "db:primary").0, vec!["db2"]);
    assert_eq!(select(&inv, &t, "cache:master").0, vec!["cache2"]);
    assert_eq!(select(&inv, &t, "cache:replica").0, vec!["cache1"]);
    let d = t.disagreements(&inv);
    assert!(
        d.iter()
            .any(|d| d.host == "db1" && d.declared == ["primary"] && d.observed.is_empty())
    );
    assert!(
        d.iter()
            .any(|d| d.host == "db2" && d.observed == ["primary"])
    );
}

#[test]
fn a_full_or_dead_primary_beside_an_answering_replica_is_corroborated() {
    let inv = inv();
    let t = topology(
        &inv,
        vec![down(&inv, "db1"), mysql(&inv, "db2", true, true)],
    );
    let (hosts, doubts) = select(&inv, &t, "db:primary");
    assert_eq!(hosts, vec!["db1"]);
    assert!(doubts.is_empty(), "{doubts:?}");
}

#[test]
fn nobody_observed_or_two_primaries_are_doubts() {
    let inv = inv();
    let t = topology(&inv, vec![down(&inv, "db1"), down(&inv, "db2")]);
    let (hosts, doubts) = select(&inv, &t, "db:primary");
    assert_eq!(hosts, vec!["db1"], "the inventory's word");
    assert!(
        doubts[0].contains("no db host could be asked"),
        "{doubts:?}"
    );

    let t = topology(
        &inv,
        vec![
            mysql(&inv, "db1", false, false),
            mysql(&inv, "db2", false, false),
        ],
    );
    let (hosts, doubts) = select(&inv, &t, "db:primary");
    assert_eq!(hosts, vec!["db1", "db2"]);
    assert!(doubts[0].contains("split brain"), "{doubts:?}");
}

const FENCE: &str = r#"
id = "t"
title = "act on the primary"
[[steps]]
id = "fence"
title = "make the primary read-only"
kind = "action"
target = { selector = "db:primary" }
sql = "SET GLOBAL read_only = ON"
confirm = "yes"
"#;

fn engine(t: &Topology, opts: Options) -> Engine {
    let inv = inv();
    let (rb, _) = load_str(FENCE, Path::new("t.toml"), Some(&inv)).expect("runbook");
    let rb = Arc::new(rb);
    let plan = Plan::resolve_live(&rb, &inv, None, Some(t)).expect("plan");
    Engine::new(rb, Vars::new(), plan, opts)
}

fn start(e: &mut Engine) -> Vec<Event> {
    e.update(Duration::ZERO, Input::Start)
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(ev) => Some(ev),
            Output::Exec(_) => None,
        })
        .collect()
}

#[test]
fn a_changing_step_on_unconfirmed_hosts_asks_with_the_reason_and_headless_needs_its_name() {
    let inv = inv();
    let t = topology(&inv, vec![down(&inv, "db1"), down(&inv, "db2")]);
    // Console: the confirmation says why to look twice.
    let mut e = engine(&t, Options::default());
    let events = start(&mut e);
    assert!(events.iter().any(|e| matches!(e,
        Event::AwaitingDecision { kind: DecisionKind::Confirm, reason: Some(r), .. }
            if r.contains("no db host could be asked"))));
    // Headless --approve all: refused, nothing requested.
    let mut e = engine(
        &t,
        Options {
            approve: "all".parse().expect("policy"),
            ..Options::default()
        },
    );
    let out = e.update(Duration::ZERO, Input::Start);
    assert!(out.iter().all(|o| !matches!(o, Output::Exec(_))));
    assert_eq!(e.outcome(), Some(RunOutcome::Refused));
    // Named explicitly: it runs.
    let mut e = engine(
        &t,
        Options {
            approve: "fence".parse().expect("policy"),
            ..Options::default()
        },
    );
    let out = e.update(Duration::ZERO, Input::Start);
    let req = out
        .iter()
        .find_map(|o| match o {
            Output::Exec(r) => Some(r.clone()),
            Output::Event(_) => None,
        })
        .expect("the named step runs");
    assert_eq!(req.host.map(|h| h.name).as_deref(), Some("db1"));
    let _ = e.update(
        Duration::from_secs(1),
        Input::Result {
            seq: req.seq,
            result: ExecResult::ok(""),
        },
    );
    assert_eq!(e.outcome(), Some(RunOutcome::Succeeded));
}
