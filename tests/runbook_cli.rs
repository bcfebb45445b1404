//! `opsdeck run`, `journal` and the lock through the real binary, on this machine (local
//! transport): exit statuses, nothing changed without approval / read-only / dry run, the
//! journal's intent-before-outcome, kill -9 and resume without re-running an action, a second
//! run refused naming the holder, and a canary secret that never appears anywhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;

const CANARY: &str = "c4n4ry-runbook-7f3e9";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("runbooks")).expect("mkdir");
        std::fs::write(
            dir.path().join("inv.toml"),
            r#"name = "here"
[tiers.app]
[hosts.here]
tier = "app"
local = {}
[[hosts.here.mysql]]
role = "primary"
address = "127.0.0.1"
port = 1
user = "nobody"
password_env = "OPSDECK_TEST_CANARY"
"#,
        )
        .expect("write inventory");
        Fixture { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runbook(&self, id: &str, steps: &str) {
        let text = format!("id = \"{id}\"\ntitle = \"{id}\"\ntriggers = []\n{steps}");
        std::fs::write(self.p(&format!("runbooks/{id}.toml")), text).expect("write runbook");
    }

    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("opsdeck").expect("binary");
        self.env(c.env_remove("OPSDECK_INVENTORY"));
        c
    }

    fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("OPSDECK_TEST_CANARY", CANARY)
            .env("OPSDECK_JOURNAL_DIR", self.p("journal"))
            .env("OPSDECK_RUNBOOKS", self.p("runbooks"))
            .env("OPSDECK_LOG_DIR", self.p("logs"))
            .env("USER", "tester")
            .arg("-i")
            .arg(self.p("inv.toml"))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        StdCommand::new(assert_cmd::cargo::cargo_bin("opsdeck"))
            .env("OPSDECK_TEST_CANARY", CANARY)
            .env("OPSDECK_JOURNAL_DIR", self.p("journal"))
            .env("OPSDECK_RUNBOOKS", self.p("runbooks"))
            .env("OPSDECK_LOG_DIR", self.p("logs"))
            .env("USER", "tester")
            .arg("-i")
            .arg(self.p("inv.toml"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    }

    fn journals(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.p("journal"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn journal_text(&self) -> String {
        self.journals()
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("read journal"))
            .collect()
    }
}

fn run_id(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .expect("stem")
        .to_owned()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// diagnose (echoes the canary) -> action (touches a marker) -> check (marker exists).
fn marker_runbook(f: &Fixture) -> PathBuf {
    let marker = f.p("marker");
    f.runbook(
        "touch-marker",
        &format!(
            r#"
[inputs.marker]
default = "{}"
[[steps]]
id = "look"
title = "look"
kind = "diagnose"
target = {{ selector = "here" }}
shell = "echo secret is $OPSDECK_TEST_CANARY; echo used 42%"
read_only = true
capture = {{ var = "used", regex = "used ([0-9]+)%" }}
[[steps]]
id = "touch"
title = "touch the marker"
kind = "action"
target = {{ selector = "here" }}
shell = "touch {{{{marker}}}}; echo $OPSDECK_TEST_CANARY >&2; exit 0"
confirm = "yes"
[[steps]]
id = "verify"
title = "marker exists"
kind = "check"
target = {{ selector = "here" }}
shell = "test -e {{{{marker}}}}"
read_only = true
expect = {{ exit = 0 }}
"#,
            marker.display()
        ),
    );
    marker
}

#[test]
fn without_approval_read_only_or_dry_run_nothing_changes_and_exit_statuses_say_why() {
    let f = Fixture::new();
    let marker = marker_runbook(&f);

    let o = f
        .cmd()
        .args(["run", "touch-marker"])
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(10),
        "default --approve diagnose: {}",
        out(&o)
    );
    assert!(!marker.exists());
    assert!(out(&o).contains("needs approval"), "{}", out(&o));

    let o = f
        .cmd()
        .args(["run", "touch-marker", "--approve", "all", "--read-only"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(12), "{}", out(&o));
    assert!(!marker.exists());

    let o = f
        .cmd()
        .args(["run", "touch-marker", "--approve", "all", "--dry-run"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(!marker.exists());
    assert!(
        out(&o).contains(&format!(
            "would change on here: $ touch {}",
            marker.display()
        )),
        "{}",
        out(&o)
    );

    let o = f
        .cmd()
        .args(["run", "touch-marker", "--var", "nope=1"])
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown input is a configuration error"
    );

    let o = f
        .cmd()
        .args(["run", "touch-marker", "--approve", "all", "--json"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(marker.exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("every --json line is JSON");
        assert!(v.get("event").is_some(), "{line}");
    }
    assert!(stdout.contains("\"used\""), "capture reported: {stdout}");

    // The canary never appears: not in output, journal or export.
    let all = format!("{}{}", out(&o), f.journal_text());
    assert!(!all.contains(CANARY), "canary leaked");
    assert!(
        all.contains("********"),
        "the echoed secret was masked, not dropped"
    );
    let last = f.journals().pop().expect("a journal");
    let md = f
        .cmd()
        .args(["journal", "export", &run_id(&last), "--markdown"])
        .output()
        .expect("runs");
    let md = String::from_utf8_lossy(&md.stdout).into_owned();
    assert!(!md.contains(CANARY));
    assert!(
        md.contains("| touch | decision | confirm by policy, covering here (1 command) |"),
        "{md}"
    );
    assert!(md.contains("succeeded"), "{md}");
}

#[test]
fn journal_writes_intent_before_outcome_and_list_shows_runs() {
    let f = Fixture::new();
    marker_runbook(&f);
    let o = f
        .cmd()
        .args(["run", "touch-marker", "--approve", "all"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = f.journal_text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines[0]["type"], "header");
    // The OS account (from the uid), not $USER (the test sets USER=tester).
    let me = opsdeck::identity::current().to_string();
    assert_eq!(lines[0]["operator"], me.as_str());
    assert!(
        lines.iter().all(|l| l["operator"] == me.as_str()),
        "every record names the operator"
    );
    assert_eq!(lines[0]["hash"].as_str().map(str::len), Some(64));
    let intent = lines
        .iter()
        .position(|l| l["type"] == "intent" && l["step"] == "touch")
        .expect("intent");
    let done = lines
        .iter()
        .position(|l| l["type"] == "done" && l["step"] == "touch")
        .expect("done");
    assert!(intent < done);
    assert!(
        lines[intent]["command"]
            .as_str()
            .is_some_and(|c| c.contains("touch "))
    );
    let list = f.cmd().args(["journal", "list"]).output().expect("runs");
    assert!(String::from_utf8_lossy(&list.stdout).contains("succeeded"));
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn second_run_is_refused_naming_the_holder_and_kill_9_resumes_without_rerunning_the_action() {
    let f = Fixture::new();
    let started = f.p("started");
    let count = f.p("count");
    f.runbook(
        "slow",
        &format!(
            r#"
[[steps]]
id = "first"
title = "first"
kind = "diagnose"
target = {{ selector = "here" }}
shell = "echo ok"
read_only = true
[[steps]]
id = "slow-action"
title = "slow action"
kind = "action"
target = {{ selector = "here" }}
shell = "echo x >> {count}; touch {started}; sleep 30"
timeout = "60s"
confirm = "yes"
[[steps]]
id = "after"
title = "after"
kind = "diagnose"
target = {{ selector = "here" }}
shell = "echo after"
read_only = true
"#,
            count = count.display(),
            started = started.display()
        ),
    );
    let mut child = f.spawn(&["run", "slow", "--approve", "all"]);
    wait_for("the action to start", || started.exists());

    let o = f
        .cmd()
        .args(["run", "slow", "--approve", "all"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(12), "{}", out(&o));
    let msg = out(&o);
    assert!(
        msg.contains(&format!("locked by {}", opsdeck::identity::current()))
            && msg.contains(&format!("pid {}", child.id())),
        "{msg}"
    );

    // kill -9 in the middle of the action.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let _ = child.wait();
    let journal = f.journals().into_iter().next().expect("journal");
    let run = run_id(&journal);
    let text = std::fs::read_to_string(&journal).expect("read");
    for l in text.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("the journal still parses");
    }
    // A torn last line is tolerated.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .and_then(|mut fh| std::io::Write::write_all(&mut fh, b"{\"type\":\"ev"))
        .expect("tear");

    // Resume without a decision: unknown, nothing re-run, exit 10.
    let o = f
        .cmd()
        .args(["run", "slow", "--approve", "all", "--resume", &run])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(10), "{}", out(&o));
    assert!(out(&o).contains("outcome is unknown"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(&count)
            .expect("count")
            .lines()
            .count(),
        1,
        "not re-run"
    );

    // The operator checked: verified. The run continues after it (stale lock taken over).
    let o = f
        .cmd()
        .args([
            "run",
            "slow",
            "--approve",
            "all",
            "--resume",
            &run,
            "--resolve",
            "verify",
        ])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let shown = out(&o);
    assert!(
        shown.contains("resumed at slow-action") && shown.contains("after"),
        "{shown}"
    );
    assert!(
        !shown.contains("-> [diagnose] first"),
        "finished steps are not repeated: {shown}"
    );
    assert_eq!(
        std::fs::read_to_string(&count)
            .expect("count")
            .lines()
            .count(),
        1,
        "no action ran twice"
    );

    let o = f
        .cmd()
        .args(["run", "slow", "--resume", &run])
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(2),
        "a finished run cannot be resumed: {}",
        out(&o)
    );
}

#[test]
fn check_fails_on_a_broken_runbook_with_its_position_and_step() {
    let f = Fixture::new();
    marker_runbook(&f);
    let o = f.cmd().arg("check").output().expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (1 runbooks)"));
    f.runbook(
        "broken",
        "[[steps]]\nid = \"x\"\ntitle = \"x\"\nkind = \"action\"\ntarget = { selector = \"here\" }\nshell = \"rm -rf {{dir}}\"\n",
    );
    let o = f.cmd().arg("check").output().expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("broken.toml:4:1: step `x`: action step without `confirm`"),
        "{err}"
    );
    assert!(
        err.contains("broken.toml:9:9: step `x`: undefined variable `{{dir}}`"),
        "{err}"
    );
}

/// Opens every gate when dropped, so shells orphaned by a kill always finish.
struct OpenGates(Vec<PathBuf>);

impl Drop for OpenGates {
    fn drop(&mut self) {
        for g in &self.0 {
            let _ = std::fs::write(g, "");
        }
    }
}

/// `kill -9` at several points of one run — during a diagnose step, after an action while the
/// next step runs, in the middle of a second action — resuming each time: the journal parses,
/// the run picks up at the right step, the interrupted action is unknown until decided, and no
/// action runs twice. Each step waits for a gate file the test creates, so the kill points are
/// exact.
#[test]
fn kill_9_at_several_points_then_resume_each_time_runs_every_action_exactly_once() {
    let f = Fixture::new();
    let log = f.p("actions.log");
    let started = |n: u8| f.p(&format!("started-{n}"));
    let go = |n: u8| f.p(&format!("go-{n}"));
    let wait_gate = |n: u8| {
        format!(
            "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
            started(n).display(),
            go(n).display()
        )
    };
    f.runbook(
        "points",
        &format!(
            r#"
[[steps]]
id = "diag-a"
title = "a diagnosis"
kind = "diagnose"
target = {{ selector = "here" }}
shell = "{w1}"
read_only = true
timeout = "120s"
[[steps]]
id = "act-one"
title = "first action"
kind = "action"
target = {{ selector = "here" }}
shell = "echo one >> {log}"
confirm = "yes"
[[steps]]
id = "diag-b"
title = "after the first action"
kind = "diagnose"
target = {{ selector = "here" }}
shell = "{w2}"
read_only = true
timeout = "120s"
[[steps]]
id = "act-two"
title = "second action"
kind = "action"
target = {{ selector = "here" }}
shell = "echo two >> {log}; {w3}"
timeout = "120s"
confirm = "yes"
[[steps]]
id = "done"
title = "both actions ran once"
kind = "check"
target = {{ selector = "here" }}
shell = "cat {log}"
read_only = true
expect = {{ regex = "^one\ntwo\n?$" }}
"#,
            w1 = wait_gate(1),
            w2 = wait_gate(2),
            w3 = wait_gate(3),
            log = log.display()
        ),
    );
    let kill = |mut child: Child| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let _ = child.wait();
    };
    let journal_parses = |f: &Fixture| {
        let text = f.journal_text();
        // (A resume starts on a fresh line, so a torn last line can never glue onto the next
        // record: blank lines are separators, not records.)
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("journal line does not parse ({e}): {l:?}\n{text}"));
        }
    };
    let actions = || std::fs::read_to_string(&log).unwrap_or_default();
    // Shells orphaned by a kill wait on their gate: open every gate at the end.
    let _gates = OpenGates(vec![go(1), go(2), go(3)]);

    // A: killed during the first, read-only step.
    let child = f.spawn(&["run", "points", "--approve", "all"]);
    wait_for("diag-a", || started(1).exists());
    kill(child);
    journal_parses(&f);
    let run = run_id(&f.journals()[0]);
    assert_eq!(actions(), "");

    // Resume: the read-only step runs again; let it finish; the first action runs; kill while
    // the next diagnosis runs (B: between an action and the next step).
    std::fs::remove_file(started(1)).expect("rm");
    let child = f.spawn(&["run", "points", "--approve", "all", "--resume", &run]);
    wait_for("diag-a again", || started(1).exists());
    std::fs::write(go(1), "").expect("gate");
    wait_for("diag-b", || started(2).exists());
    kill(child);
    journal_parses(&f);
    assert_eq!(actions(), "one\n", "the first action ran once");

    // Resume at diag-b; the second action starts and is killed in the middle (C).
    let child = f.spawn(&["run", "points", "--approve", "all", "--resume", &run]);
    std::fs::write(go(2), "").expect("gate");
    wait_for("act-two", || started(3).exists());
    kill(child);
    journal_parses(&f);
    assert_eq!(actions(), "one\ntwo\n");

    // Resume without a decision: act-two's outcome is unknown; nothing runs; exit 10.
    let o = f
        .cmd()
        .args(["run", "points", "--approve", "all", "--resume", &run])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(10), "{}", out(&o));
    assert!(out(&o).contains("outcome is unknown"), "{}", out(&o));
    assert_eq!(actions(), "one\ntwo\n", "not re-run without a decision");

    // The operator verified it happened: the run finishes; no action ran twice.
    let o = f
        .cmd()
        .args([
            "run",
            "points",
            "--approve",
            "all",
            "--resume",
            &run,
            "--resolve",
            "verify",
        ])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(actions(), "one\ntwo\n", "every action exactly once");
    journal_parses(&f);
}
