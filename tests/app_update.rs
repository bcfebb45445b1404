//! `app::update` on its own: plain `#[test]`s, no runtime, no executor, no terminal. Each
//! test plays the executor's part by hand — it opens the run the app asked for with the
//! engine `driver::new_engine` builds, and answers each `Command::Exec` with a result — and
//! checks what the app asks the executor to do next after each key: nothing that changes a
//! host runs before `y`, a declined or skipped step never runs, an abort runs nothing more.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsdeck::app::keymap::Keymap;
use opsdeck::app::{App, Command, Event, View, update};
use opsdeck::probes::history::History;
use opsdeck::probes::state::HealthStore;
use opsdeck::runbook::driver::new_engine;
use opsdeck::runbook::engine::{DecisionKind, ExecRequest, ExecResult, Outcome};

const RUNBOOK: &str = r#"
id = "restart-web"
title = "Restart the web server"
summary = "Look, restart after confirmation, check."
severity = "low"
rto = "5m"
tiers = ["app"]

[[steps]]
id = "look"
title = "Is it running?"
kind = "diagnose"
target = { selector = "app", pick = "first" }
shell = "pgrep -a nginx || true"
read_only = true

[[steps]]
id = "restart"
title = "Restart nginx"
kind = "action"
confirm = "yes"
target = { selector = "app", pick = "first" }
shell = "systemctl restart nginx"

[[steps]]
id = "verify"
title = "It answers"
kind = "check"
target = { selector = "app", pick = "first" }
shell = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/"
read_only = true
expect = { regex = "200" }
"#;

struct Harness {
    app: App,
    inv: Arc<opsdeck::inventory::Inventory>,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let inv = Arc::new(
            opsdeck::inventory::load_str(
                "[tiers.app]\n[hosts.web1]\ntier = \"app\"\nlocal = {}\n",
                Path::new("inv.toml"),
            )
            .expect("inventory"),
        );
        let (rb, _) =
            opsdeck::runbook::load_str(RUNBOOK, Path::new("restart-web.toml"), Some(&inv))
                .expect("runbook");
        let now = Instant::now();
        let health = HealthStore::new(&[], BTreeMap::new(), History::default());
        let app = App::new(
            Arc::clone(&inv),
            health,
            Keymap::defaults(),
            now,
            chrono::Utc::now(),
        )
        .with_runbooks(vec![Arc::new(rb)]);
        Harness { app, inv, now }
    }

    fn send(&mut self, ev: Event) -> Vec<Command> {
        update(&mut self.app, ev)
    }

    fn key(&mut self, c: char) -> Vec<Command> {
        self.send(Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::NONE,
        )))
    }

    /// Starts the runbook from the runbook list and opens the run as the executor would.
    fn start(&mut self) -> Vec<Command> {
        self.app.view = View::Runbooks;
        let cmds = self.send(Event::Key(KeyEvent::new(
            KeyCode::Enter,
            KeyModifiers::NONE,
        )));
        let spec = cmds
            .into_iter()
            .find_map(|c| match c {
                Command::OpenRun(spec) => Some(spec),
                _ => None,
            })
            .expect("Enter on a runbook asks to open a run");
        let engine = new_engine(&spec, &self.inv).expect("engine");
        self.send(Event::RunOpened {
            run_id: "test-run".to_owned(),
            journal_path: "/nonexistent/test-run.jsonl".to_owned(),
            engine: Box::new(engine),
        })
    }

    /// Answers one executed command, after its delay, as the executor would.
    fn done(&mut self, req: &ExecRequest, result: ExecResult) -> Vec<Command> {
        self.now += req.delay + Duration::from_millis(10);
        let now = self.now;
        self.send(Event::Tick {
            now,
            wall: chrono::Utc::now(),
        });
        self.send(Event::ExecDone {
            seq: req.seq,
            result,
        })
    }

    fn ask(&self) -> Option<DecisionKind> {
        self.app
            .run
            .as_ref()
            .and_then(|r| r.ask.as_ref())
            .map(|a| a.kind.clone())
    }

    fn outcome(&self) -> Option<Outcome> {
        self.app
            .run
            .as_ref()
            .and_then(|r| r.finished.as_ref())
            .map(|f| f.0)
    }
}

/// The executor requests among `cmds`, by step.
fn execs(cmds: &[Command]) -> Vec<ExecRequest> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Exec(r) => Some((**r).clone()),
            _ => None,
        })
        .collect()
}

fn steps(reqs: &[ExecRequest]) -> Vec<&str> {
    reqs.iter().map(|r| r.step.as_str()).collect()
}

/// Runs the read-only diagnosis and stops at the restart's confirmation.
fn up_to_the_confirmation(h: &mut Harness) {
    let cmds = h.start();
    let look = execs(&cmds);
    assert_eq!(
        steps(&look),
        ["look"],
        "the read-only step runs without asking"
    );
    let cmds = h.done(&look[0], ExecResult::ok("123 nginx: master process"));
    assert!(
        execs(&cmds).is_empty(),
        "the restart does not run before a person confirms: {:?}",
        steps(&execs(&cmds))
    );
    assert_eq!(h.ask(), Some(DecisionKind::Confirm));
}

#[test]
fn a_changing_step_runs_only_after_y_and_the_run_succeeds() {
    let mut h = Harness::new();
    up_to_the_confirmation(&mut h);
    let cmds = h.key('y');
    let restart = execs(&cmds);
    assert_eq!(steps(&restart), ["restart"]);
    assert!(restart[0].changes, "the restart is journaled as a change");
    let cmds = h.done(&restart[0], ExecResult::ok(""));
    let verify = execs(&cmds);
    assert_eq!(steps(&verify), ["verify"]);
    let cmds = h.done(&verify[0], ExecResult::ok("200"));
    assert!(execs(&cmds).is_empty());
    assert_eq!(h.outcome(), Some(Outcome::Succeeded));
    assert!(
        cmds.iter().any(|c| matches!(c, Command::CloseRun)),
        "the finished run releases its lock"
    );
}

#[test]
fn declining_or_skipping_never_runs_the_step_and_goes_on() {
    for key in ['n', 's'] {
        let mut h = Harness::new();
        up_to_the_confirmation(&mut h);
        let cmds = h.key(key);
        let next = execs(&cmds);
        assert_eq!(
            steps(&next),
            ["verify"],
            "`{key}` moves on; the restart is never requested"
        );
        let cmds = h.done(&next[0], ExecResult::ok("200"));
        assert!(execs(&cmds).is_empty());
        assert!(h.outcome().is_some(), "the run ends after its last step");
    }
}

#[test]
fn abort_runs_nothing_more_and_ends_the_run() {
    let mut h = Harness::new();
    up_to_the_confirmation(&mut h);
    let cmds = h.key('A');
    assert!(execs(&cmds).is_empty(), "{:?}", steps(&execs(&cmds)));
    assert_eq!(h.outcome(), Some(Outcome::Aborted));
    assert!(cmds.iter().any(|c| matches!(c, Command::CloseRun)));
    // Keys after the end run nothing.
    assert!(execs(&h.key('y')).is_empty());
}

#[test]
fn a_failed_check_asks_and_retry_runs_it_again_only_when_chosen() {
    let mut h = Harness::new();
    up_to_the_confirmation(&mut h);
    let cmds = h.key('y');
    let restart = execs(&cmds);
    let cmds = h.done(&restart[0], ExecResult::ok(""));
    let verify = execs(&cmds);
    let cmds = h.done(&verify[0], ExecResult::ok("502"));
    assert!(
        execs(&cmds).is_empty(),
        "a failed check is not retried by itself"
    );
    assert_eq!(h.ask(), Some(DecisionKind::Failed));
    let cmds = h.key('r');
    assert_eq!(steps(&execs(&cmds)), ["verify"], "r runs it once more");
}
