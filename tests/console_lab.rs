//! The console end to end against the real lab: a drill is injected, the dashboard shows it,
//! the suggested runbook is opened from the host, its steps are confirmed with key presses,
//! and the fault is gone on the real servers.

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use crossterm::event::KeyCode;
use opsdeck::app::{App, View};
use opsdeck::probes::check::State;
use opsdeck::probes::history::History;
use opsdeck::probes::plan::{self, Intervals};
use opsdeck::probes::scheduler::{self, SchedulerConfig};
use opsdeck::probes::state::HealthState;
use opsdeck::runbook::engine::{DecisionKind, Outcome};
use opsdeck::transport::Connections;
use support::console::Console;
use tokio::sync::mpsc;

fn opsdeck(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary");
    c.env("OPSDECK_LAB_DIR", dir)
        .env_remove("OPSDECK_INVENTORY");
    c
}

struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = opsdeck(&self.0).args(["lab", "down"]).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_is_seen_diagnosed_and_resolved_from_the_console() {
    let lock =
        File::create(std::env::temp_dir().join("opsdeck-lab-tests.lock")).expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("lock");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let _down = Down(dir.clone());
    let up = opsdeck(&dir)
        .args(["lab", "up", "--dir"])
        .arg(&dir)
        .output()
        .expect("lab up");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // The console, as `opsdeck -i DIR/inventory.toml` builds it: probes over every host.
    let inv = Arc::new(
        opsdeck::inventory::load(Some(&dir.join("inventory.toml"))).expect("lab inventory"),
    );
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let intervals = Intervals::uniform(Duration::from_secs(1));
    let specs = plan::plan(&inv, &hosts, &intervals);
    let thresholds = opsdeck::probes::thresholds::resolve(&inv).expect("thresholds");
    let health = HealthState::new(&specs, thresholds, History::new(600));
    let conns = Arc::new(Connections::new());
    let (ptx, probes) = mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let sched = tokio::spawn(scheduler::run(
        Arc::clone(&conns),
        specs,
        SchedulerConfig::default(),
        ptx,
        cancel.clone(),
    ));
    let rb_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let runbooks = opsdeck::runbook::load_dir(&rb_dir, Some(&inv))
        .expect("runbooks")
        .into_iter()
        .filter_map(|(_, r)| r.ok().map(|(rb, _)| Arc::new(rb)))
        .collect();
    let mut c = Console::new(
        &inv,
        runbooks,
        tmp.path().join("journal"),
        Arc::clone(&conns),
        Some((health, probes)),
    );

    let db1_connections = |a: &App| {
        a.checks
            .iter()
            .find(|k| k.host == "db1" && k.id == "mysql.connections")
            .map(|k| k.state)
    };
    c.pump("db1's first healthy sample", 60, |a| {
        db1_connections(a) == Some(State::Ok)
    })
    .await;

    // The fault, injected on the real servers.
    let drill = opsdeck(&dir)
        .args(["drill", "connection-exhaustion"])
        .output()
        .expect("drill");
    assert!(
        drill.status.success(),
        "{}",
        String::from_utf8_lossy(&drill.stderr)
    );

    // The dashboard shows it, and health suggests the runbook.
    c.pump("the dashboard to show the exhaustion", 60, |a| {
        db1_connections(a).is_some_and(|s| s >= State::Critical)
            && a.suggestions
                .iter()
                .any(|s| a.runbooks[s.runbook].id == "db-connection-exhaustion")
    })
    .await;
    let s = c.screen();
    let db1_line = s
        .lines()
        .find(|l| l.contains("db1"))
        .expect("db1 on the dashboard");
    assert!(db1_line.contains("connections"), "{s}");
    assert!(
        s.contains("Database connections exhausted"),
        "the banner names the runbook:\n{s}"
    );

    // Select db1, open its detail, open the runbook that fits, start it.
    let db1 = c
        .app
        .inventory
        .hosts
        .iter()
        .position(|h| h.name == "db1")
        .expect("db1");
    while c.app.dashboard.selected != db1 {
        let before = c.app.dashboard.selected;
        c.key(if before < db1 {
            KeyCode::Char('l')
        } else {
            KeyCode::Char('h')
        });
        assert_ne!(c.app.dashboard.selected, before, "cursor moves");
    }
    c.key(KeyCode::Enter);
    assert_eq!(c.app.view, View::Detail);
    c.key(KeyCode::Enter);
    assert_eq!(c.app.view, View::Runbooks);
    assert_eq!(
        c.app.selected_runbook().map(|r| r.id.as_str()),
        Some("db-connection-exhaustion")
    );
    c.key(KeyCode::Enter);
    // Inputs: any idle application connection (the drill opened them a moment ago).
    let mut answered = 0;
    while let Some(opsdeck::app::run::Typing::Input { index, .. }) =
        c.app.run.as_ref().and_then(|r| r.typing.clone())
    {
        let name = c
            .app
            .run
            .as_ref()
            .map(|r| r.runbook.inputs[index].name.clone())
            .unwrap_or_default();
        let value = match name.as_str() {
            "min_idle_seconds" => Some("0"),
            "user_like" => Some("app%"),
            _ => None,
        };
        if let Some(v) = value {
            for _ in 0..40 {
                c.key(KeyCode::Backspace);
            }
            c.typed(v);
        }
        c.key(KeyCode::Enter);
        answered += 1;
        assert!(answered < 10, "input loop");
    }

    // Confirm every action as an operator would, until the run ends.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        c.pump("a decision or the end", 120, |a| {
            a.run
                .as_ref()
                .is_some_and(|r| r.finished.is_some() || r.ask.is_some())
        })
        .await;
        let run = c.app.run.as_ref().expect("run");
        if run.finished.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        let ask = run.ask.clone().expect("ask");
        match ask.kind {
            DecisionKind::Confirm => {
                let shown = c.screen();
                assert!(
                    shown.contains("Run this on db1?") || shown.contains("commands on db1?"),
                    "{shown}"
                );
                c.key(KeyCode::Char('y'));
            }
            DecisionKind::TypedConfirm { expected } => {
                c.key(KeyCode::Char('y'));
                c.typed(&expected);
                c.key(KeyCode::Enter);
            }
            DecisionKind::MarkDone => c.key(KeyCode::Char('d')),
            // Inputs are asked when first needed: a newcomer accepts the offered default.
            DecisionKind::Input { .. } => {
                if run.typing.is_none() {
                    c.key(KeyCode::Char('y'));
                }
                c.key(KeyCode::Enter);
            }
            other => {
                let log: Vec<String> = run
                    .log
                    .iter()
                    .map(|l| format!("[{}] {}", l.step, l.text))
                    .collect();
                panic!(
                    "unexpected decision {other:?}:\n{}\n{}",
                    c.screen(),
                    log.join("\n")
                )
            }
        }
    }
    let run = c.app.run.as_ref().expect("run");
    assert_eq!(
        run.finished.as_ref().map(|f| f.0),
        Some(Outcome::Succeeded),
        "{:?}\n{}",
        run.finished,
        c.screen()
    );

    // Gone on the real servers: the drill's own check (a new connection is accepted, judged
    // by connecting) says the fault is absent.
    let check = opsdeck(&dir)
        .args(["drill", "connection-exhaustion", "--check"])
        .output()
        .expect("check");
    assert_eq!(
        check.status.code(),
        Some(1),
        "fault still present: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    // And the dashboard sees db1 recover.
    c.pump("db1 to recover on the dashboard", 60, |a| {
        db1_connections(a) == Some(State::Ok)
    })
    .await;

    cancel.cancel();
    sched.abort();
    let _ = opsdeck(&dir).args(["drill", "reset"]).output();
}
