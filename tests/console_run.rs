//! Guided execution in the console, driven by key events through the real app, engine and
//! executor (commands run for real on the local transport), without a terminal.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossterm::event::KeyCode;
use opsdeck::app::View;
use opsdeck::runbook::engine::{DecisionKind, Outcome};
use opsdeck::transport::Connections;
use support::console::Console;

const RUNBOOK: &str = r#"
id = "touch-marker"
title = "Create the marker file"
summary = "Checks for a marker, creates it after confirmation, verifies it."
severity = "low"
rto = "5m"
tiers = ["app"]

[inputs.marker]
default = "/tmp/opsdeck-MARKER"
description = "Path of the marker file"
pattern = "/[A-Za-z0-9_./-]+"

[[steps]]
id = "look"
title = "Is the marker there?"
kind = "diagnose"
target = { selector = "app", pick = "first" }
shell = "ls -l {{marker}} 2>&1 || true"
read_only = true
explain = "Read-only: runs without asking."

[[steps]]
id = "create"
title = "Create the marker"
kind = "action"
confirm = "yes"
target = { selector = "app", pick = "first" }
shell = "touch {{marker}}"
explain = "Changes the host: asks first."

[[steps]]
id = "verify"
title = "The marker exists"
kind = "check"
target = { selector = "app", pick = "first" }
shell = "test -f {{marker}} && echo present"
read_only = true
expect = { regex = "present" }
"#;

/// A local host, the runbook above, and a console over them journaling into `DIR/journal`.
fn setup(dir: &Path) -> (Console, PathBuf) {
    let rb_dir = dir.join("runbooks");
    std::fs::create_dir_all(&rb_dir).expect("dir");
    std::fs::write(rb_dir.join("touch-marker.toml"), RUNBOOK).expect("runbook");
    let inv_path = dir.join("inv.toml");
    std::fs::write(
        &inv_path,
        "[tiers.app]\n[hosts.local1]\ntier = \"app\"\nlocal = {}\n",
    )
    .expect("inventory");
    let inv = Arc::new(opsdeck::inventory::load(Some(&inv_path)).expect("inventory"));
    let (rb, _) = opsdeck::runbook::load_file(&rb_dir.join("touch-marker.toml"), Some(&inv))
        .expect("runbook");
    let journal = dir.join("journal");
    (
        Console::new(
            &inv,
            vec![Arc::new(rb)],
            journal.clone(),
            Arc::new(Connections::new()),
            None,
        ),
        journal,
    )
}

/// Browser → the runbook → its input (asked when the first step needs it), answered with
/// `marker`.
async fn start(c: &mut Console, marker: &Path) {
    c.key(KeyCode::Char('2'));
    c.key(KeyCode::Enter);
    c.pump("the input to be asked", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.typing.is_some())
    })
    .await;
    for _ in 0.."/tmp/opsdeck-MARKER".len() {
        c.key(KeyCode::Backspace);
    }
    c.typed(marker.to_str().expect("utf8"));
    c.key(KeyCode::Enter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_runs_from_the_console_with_confirmation_and_a_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let (mut c, journal_dir) = setup(dir.path());

    // Browser → the runbook → its input, asked when the first step that reads it is
    // reached, pre-filled with the default.
    c.key(KeyCode::Char('2'));
    assert_eq!(c.app.view, View::Runbooks);
    let s = c.screen();
    assert!(s.contains("Create the marker file"), "{s}");
    c.key(KeyCode::Enter);
    assert_eq!(c.app.view, View::Run);
    c.pump("the input to be asked", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.typing.is_some())
    })
    .await;
    assert!(c.screen().contains("Input marker"), "{}", c.screen());
    assert!(c.screen().contains("/tmp/opsdeck-MARKER"), "{}", c.screen());
    // A value that fails the input's pattern is refused with the reason.
    for _ in 0.."/tmp/opsdeck-MARKER".len() {
        c.key(KeyCode::Backspace);
    }
    c.typed("not absolute");
    c.key(KeyCode::Enter);
    assert!(
        c.app
            .flash
            .as_deref()
            .is_some_and(|f| f.contains("must match")),
        "{:?}\n{}",
        c.app.flash,
        c.screen()
    );
    for _ in 0.."not absolute".len() {
        c.key(KeyCode::Backspace);
    }
    c.typed(marker.to_str().expect("utf8"));
    c.key(KeyCode::Enter);

    // The diagnose step runs by itself; the action waits for a confirmation that shows the
    // exact command, variables resolved, and the host.
    c.pump("the confirmation", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.ask.is_some())
    })
    .await;
    let ask = c.app.run.as_ref().and_then(|r| r.ask.clone()).expect("ask");
    assert_eq!(ask.kind, DecisionKind::Confirm);
    assert_eq!(ask.step, "create");
    assert_eq!(ask.host.as_deref(), Some("local1"));
    let screen = c.screen();
    assert!(screen.contains("Run this on local1?"), "{screen}");
    assert!(
        screen.contains(&format!("touch {}", marker.display())),
        "{screen}"
    );
    assert!(!marker.exists(), "nothing changed before the confirmation");
    // The diagnose step's real output is in the log.
    assert!(c.app.run.as_ref().is_some_and(|r| {
        r.log
            .iter()
            .any(|l| l.step == "look" && l.text.contains("No such file"))
    }));

    c.key(KeyCode::Char('y'));
    c.pump("the run to finish", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.finished.is_some())
    })
    .await;
    let run = c.app.run.as_ref().expect("run");
    assert_eq!(
        run.finished.as_ref().map(|f| f.0),
        Some(Outcome::Succeeded),
        "{:?}",
        run.finished
    );
    assert!(marker.exists(), "the confirmed action ran on the host");
    assert!(c.screen().contains("Run finished"));

    // The journal has the intent of the action synced before its outcome, and the decision.
    let run_id = run.run_id.clone().expect("run id");
    let text =
        std::fs::read_to_string(journal_dir.join(format!("{run_id}.jsonl"))).expect("journal");
    let intent = text
        .lines()
        .position(|l| l.contains("\"intent\"") && l.contains("touch"))
        .expect("intent line");
    let done = text
        .lines()
        .position(|l| l.contains("\"done\"") && l.contains("create"))
        .expect("outcome line");
    assert!(intent < done, "intent before outcome:\n{text}");
    // The decision is recorded as the OS account on this machine, not a placeholder.
    let me = opsdeck::identity::current().to_string();
    assert!(text.contains(&format!("\"by\":\"{me}\"")), "{text}");

    // Export the incident timeline from the summary.
    c.key(KeyCode::Char('e'));
    c.pump("the export", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.exported.is_some())
    })
    .await;
    let md = std::fs::read_to_string(
        c.app
            .run
            .as_ref()
            .and_then(|r| r.exported.clone())
            .expect("path"),
    )
    .expect("markdown");
    assert!(md.contains("Create the marker file"), "{md}");

    // The journal view lists the run.
    c.key(KeyCode::Esc);
    c.key(KeyCode::Char('4'));
    c.pump("the journal list", 20, |a| {
        !a.journal.runs.is_empty() && a.journal.timeline.is_some()
    })
    .await;
    assert_eq!(c.app.journal.runs[0].runbook, "touch-marker");
    assert!(c.screen().contains("touch-marker"));
    let _ = Path::new("");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_skips_the_action_and_abort_stops_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    let (mut c, _) = setup(dir.path());
    start(&mut c, &marker).await;
    c.pump("the confirmation", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.ask.is_some())
    })
    .await;
    // n declines: the action is skipped, and the check that follows fails (nothing created).
    c.key(KeyCode::Char('n'));
    c.pump("the check's failure", 20, |a| {
        a.run.as_ref().is_some_and(|r| {
            r.finished.is_some()
                || r.ask
                    .as_ref()
                    .is_some_and(|x| x.kind == DecisionKind::Failed)
        })
    })
    .await;
    assert!(!marker.exists(), "a declined action never runs");
    if c.app.run.as_ref().is_some_and(|r| r.finished.is_none()) {
        c.key(KeyCode::Char('A'));
        c.pump("the abort", 20, |a| {
            a.run.as_ref().is_some_and(|r| r.finished.is_some())
        })
        .await;
        assert_eq!(
            c.app
                .run
                .as_ref()
                .and_then(|r| r.finished.as_ref().map(|f| f.0)),
            Some(Outcome::Aborted)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_offered_and_resumed_from_the_journal_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("marker");
    // First console: start, answer the input, stop at the confirmation — then it goes away
    // (a crash, a closed laptop) without finishing.
    let (mut c, _) = setup(dir.path());
    start(&mut c, &marker).await;
    c.pump("the confirmation", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.ask.is_some())
    })
    .await;
    let first_run = c
        .app
        .run
        .as_ref()
        .and_then(|r| r.run_id.clone())
        .expect("run id");
    drop(c);

    // Second console: the journal view lists the unfinished run; enter resumes it at the
    // action, with the recorded input, without re-running the diagnosis.
    let (mut c, _) = setup(dir.path());
    c.key(KeyCode::Char('4'));
    c.pump("the journal list", 20, |a| {
        a.journal.runs.iter().any(|r| r.run == first_run)
    })
    .await;
    let pos = c
        .app
        .journal
        .runs
        .iter()
        .position(|r| r.run == first_run)
        .expect("listed");
    assert!(c.app.journal.runs[pos].outcome.is_none(), "unfinished");
    c.app.journal.selected = pos;
    c.key(KeyCode::Enter);
    c.pump("the resumed confirmation", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.ask.is_some())
    })
    .await;
    let ask = c.app.run.as_ref().and_then(|r| r.ask.clone()).expect("ask");
    assert_eq!(ask.step, "create", "resumes at the first unfinished step");
    let cmd = ask.command.map(|c| c.to_string()).unwrap_or_default();
    assert!(
        cmd.contains(marker.to_str().expect("utf8")),
        "the recorded input is used: {cmd}"
    );
    assert!(
        !c.app
            .run
            .as_ref()
            .is_some_and(|r| r.log.iter().any(|l| l.step == "look")),
        "the diagnosis is not re-run"
    );
    c.key(KeyCode::Char('y'));
    c.pump("the run to finish", 20, |a| {
        a.run.as_ref().is_some_and(|r| r.finished.is_some())
    })
    .await;
    assert_eq!(
        c.app
            .run
            .as_ref()
            .and_then(|r| r.finished.as_ref().map(|f| f.0)),
        Some(Outcome::Succeeded)
    );
    assert!(marker.exists());
}
