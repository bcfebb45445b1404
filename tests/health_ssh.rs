//! Host probes over real sshd on loopback: values measured through the shared SSH connection,
//! a host whose sshd dies turns down (never a stale ok) while the others keep updating.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use opsdeck::probes::check::State;
use opsdeck::probes::history::History;
use opsdeck::probes::model::ProbeKind;
use opsdeck::probes::plan::{self, Intervals};
use opsdeck::probes::scheduler::{self, SchedulerConfig};
use opsdeck::probes::state::HealthStore;
use opsdeck::probes::thresholds;
use opsdeck::transport::Connections;
use serde_json::Value;
use support::sshd::SshHosts;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn opsdeck() -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY").env(
        "OPSDECK_LOG_DIR",
        std::env::temp_dir().join("opsdeck-test-logs"),
    );
    c
}

fn state_of(doc: &Value, host: &str, id: &str) -> String {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["host"] == host && c["id"] == id)
        .unwrap_or_else(|| panic!("no {host} {id} in {doc:#}"))["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

#[test]
fn one_sweep_over_ssh_then_a_stopped_sshd_is_down() {
    let mut lab = SshHosts::start(2);
    let inv = lab.inventory();
    let run = || {
        let out = opsdeck()
            .args(["-i", inv.to_str().expect("utf8"), "health", "--json"])
            .args(["--timeout", "5s"])
            .output()
            .expect("runs");
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().expect("code"), doc)
    };
    let (_, doc) = run();
    for h in ["h1", "h2"] {
        assert_eq!(state_of(&doc, h, "host.reachable"), "ok", "{doc:#}");
        assert_ne!(
            state_of(&doc, h, "host.cpu"),
            "unknown",
            "cpu measured in one sweep"
        );
        assert_ne!(state_of(&doc, h, "disk./"), "unknown");
    }
    lab.stop(1);
    let (code, doc) = run();
    assert_eq!(state_of(&doc, "h1", "host.reachable"), "ok");
    assert_eq!(state_of(&doc, "h2", "host.reachable"), "down", "{doc:#}");
    assert_eq!(code, 6);
}

async fn next(
    rx: &mut mpsc::Receiver<opsdeck::probes::model::ProbeResult>,
    deadline: tokio::time::Instant,
) -> opsdeck::probes::model::ProbeResult {
    tokio::time::timeout_at(deadline, rx.recv())
        .await
        .expect("results keep coming")
        .expect("scheduler running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_host_goes_down_while_the_other_keeps_updating() {
    let mut lab = SshHosts::start(2);
    let inv = opsdeck::inventory::load(Some(&lab.inventory())).expect("inventory");
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs = plan::plan(
        &inv,
        &hosts,
        &Intervals::uniform(Duration::from_millis(500)),
    );
    let mut state = HealthStore::new(
        &specs,
        thresholds::resolve(&inv).expect("thresholds"),
        History::default(),
    );
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let sched = tokio::spawn(scheduler::run(
        Arc::new(Connections::new()),
        specs,
        SchedulerConfig {
            timeout: Duration::from_secs(3),
            ..SchedulerConfig::default()
        },
        tx,
        cancel.clone(),
    ));
    // Safety net against a hang, not a timing assertion.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reachable = |state: &HealthStore, host: &str| {
        state
            .checks(Instant::now())
            .into_iter()
            .find(|c| c.host == host && c.id == "host.reachable")
            .expect("check")
            .state
    };
    while reachable(&state, "h1") != State::Ok || reachable(&state, "h2") != State::Ok {
        let r = next(&mut rx, deadline).await;
        state.update(r);
    }
    lab.crash(1);
    while reachable(&state, "h2") != State::Down {
        let r = next(&mut rx, deadline).await;
        assert_eq!(r.target.kind, ProbeKind::Host);
        state.update(r);
    }
    // h2 is down; h1 keeps delivering fresh, ok samples.
    let mut h1_after = 0;
    while h1_after < 3 {
        let r = next(&mut rx, deadline).await;
        if r.target.host == "h1" {
            assert!(
                matches!(r.outcome, opsdeck::probes::model::Outcome::Ok(_)),
                "{:?}",
                r.outcome
            );
            h1_after += 1;
        }
        state.update(r);
    }
    assert_eq!(reachable(&state, "h1"), State::Ok);
    assert_eq!(reachable(&state, "h2"), State::Down);
    let h2: Vec<_> = state
        .checks(Instant::now())
        .into_iter()
        .filter(|c| c.host == "h2")
        .collect();
    assert!(
        h2.iter().all(|c| c.state != State::Ok),
        "no stale ok for the dead host: {h2:#?}"
    );
    cancel.cancel();
    sched.await.expect("scheduler ends");
}
