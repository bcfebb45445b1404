//! The safety promises of `opsdeck run`, attacked through the real binary on this machine
//! (local transport: each "host" runs commands here, and side effects are counted in files):
//! exact targets, the lock under concurrency, kill -9 and resume at unit granularity, unknown
//! outcomes, dry-run and read-only resumes, and confirmations that name every unit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
}

/// A tier `edge` with one host, a tier `app` with three, all local.
const INVENTORY: &str = r#"name = "trust"
[tiers.edge]
[tiers.app]
[hosts.edge1]
tier = "edge"
local = {}
[hosts.h1]
tier = "app"
local = {}
[hosts.h2]
tier = "app"
local = {}
[hosts.h3]
tier = "app"
local = {}
"#;

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("runbooks")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("work")).expect("mkdir");
        std::fs::write(dir.path().join("inv.toml"), INVENTORY).expect("write inventory");
        Fixture { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where commands leave their side effects.
    fn work(&self) -> String {
        self.p("work").display().to_string()
    }

    fn runbook(&self, id: &str, body: &str) {
        let text = format!(
            "id = \"{id}\"\ntitle = \"{id}\"\n[inputs.work]\ndefault = \"{}\"\n{body}",
            self.work()
        );
        std::fs::write(self.p(&format!("runbooks/{id}.toml")), text).expect("write runbook");
    }

    fn command(&self, args: &[&str]) -> StdCommand {
        let mut c = StdCommand::new(env!("CARGO_BIN_EXE_opsdeck"));
        c.env_remove("OPSDECK_INVENTORY")
            .env("OPSDECK_JOURNAL_DIR", self.p("journal"))
            .env("OPSDECK_RUNBOOKS", self.p("runbooks"))
            .env("OPSDECK_LOG_DIR", self.p("logs"))
            .arg("-i")
            .arg(self.p("inv.toml"))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("opsdeck runs")
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.p(&format!("work/{name}")))
            .map(|t| t.lines().map(str::to_owned).collect())
            .unwrap_or_default()
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

    fn only_run(&self) -> String {
        let j = self.journals();
        assert_eq!(j.len(), 1, "one journal: {j:?}");
        run_id(&j[0])
    }
}

fn run_id(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .expect("stem")
        .to_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn kill_9(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let _ = child.wait();
}

#[test]
fn a_target_that_names_no_host_is_an_error_and_one_outside_a_changing_step_is_refused() {
    let f = Fixture::new();
    f.runbook(
        "clean",
        r#"
[[steps]]
id = "clean"
title = "clean up"
kind = "action"
confirm = "yes"
target = { selector = "app", pick = "first" }
shell = "echo {{host}} >> {{work}}/ran"
"#,
    );
    // No host app11: exit 2 and nothing ran anywhere (before, the step's first host ran it).
    let o = f.run(&["run", "clean", "--target", "app11", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("app11"), "{}", text(&o));
    assert!(f.lines("ran").is_empty(), "nothing may run");
    assert!(f.journals().is_empty(), "not even a journal was started");

    // edge1 exists but the changing step acts on `app`: refused, not widened.
    let o = f.run(&["run", "clean", "--target", "edge1", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(text(&o).contains("refused"), "{}", text(&o));
    assert!(f.lines("ran").is_empty(), "nothing may run");

    // A target inside the selector narrows the step to it.
    let o = f.run(&["run", "clean", "--target", "h2", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(f.lines("ran"), vec!["h2"]);
}

const SLOW_ACTION: &str = r#"
[[steps]]
id = "act"
title = "count, then take a while"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo x >> {{work}}/count; touch {{work}}/started; sleep 30"
timeout = "60s"
[[steps]]
id = "after"
title = "after"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo x >> {{work}}/after"
"#;

#[test]
fn a_killed_action_resumed_with_retry_under_dry_run_or_read_only_changes_nothing() {
    let f = Fixture::new();
    f.runbook("slow", SLOW_ACTION);
    let mut child = f.spawn(&["run", "slow", "--approve", "all"]);
    wait_for("the action to start", || f.p("work/started").exists());
    kill_9(&mut child);
    let run = f.only_run();
    assert_eq!(f.lines("count").len(), 1);

    // Dry run of a resume with retry: shows, changes nothing, and leaves the run's own
    // journal untouched (it writes a journal of its own).
    let before = std::fs::read_to_string(f.p(&format!("journal/{run}.jsonl"))).expect("read");
    let o = f.run(&[
        "run",
        "slow",
        "--approve",
        "all",
        "--resume",
        &run,
        "--resolve",
        "retry",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("would change on edge1"), "{}", text(&o));
    assert_eq!(f.lines("count").len(), 1, "a dry run ran nothing");
    assert!(f.lines("after").is_empty());
    let after = std::fs::read_to_string(f.p(&format!("journal/{run}.jsonl"))).expect("read");
    assert_eq!(before, after, "the previewed run's journal is unchanged");

    // Read-only: refused before anything connects.
    let o = f.run(&[
        "run",
        "slow",
        "--approve",
        "all",
        "--resume",
        &run,
        "--resolve",
        "retry",
        "--read-only",
    ]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert_eq!(f.lines("count").len(), 1, "read-only ran nothing");
    assert!(f.lines("after").is_empty());

    // Without approval the retry is not run either.
    let o = f.run(&[
        "run",
        "slow",
        "--approve",
        "none",
        "--resume",
        &run,
        "--resolve",
        "retry",
    ]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert_eq!(f.lines("count").len(), 1, "no approval, no retry");

    // The person says it happened: the run goes on after it, never running it again.
    let o = f.run(&[
        "run",
        "slow",
        "--approve",
        "all",
        "--resume",
        &run,
        "--resolve",
        "verify",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(f.lines("count").len(), 1, "verified, not re-run");
    assert_eq!(f.lines("after").len(), 1);
}

#[test]
fn a_multi_host_action_killed_on_its_second_host_resumes_at_the_third() {
    let f = Fixture::new();
    f.runbook(
        "spread",
        r#"
[[steps]]
id = "act"
title = "on every app host"
kind = "action"
confirm = "yes"
target = { selector = "app", pick = "all" }
shell = "echo x >> {{work}}/count-{{host}}; if [ {{host}} = h2 ]; then touch {{work}}/started; sleep 30; fi"
timeout = "60s"
"#,
    );
    let mut child = f.spawn(&["run", "spread", "--approve", "all"]);
    wait_for("host 2 to run", || f.p("work/started").exists());
    kill_9(&mut child);
    let run = f.only_run();

    // Without a decision on h2, nothing runs.
    let o = f.run(&["run", "spread", "--approve", "all", "--resume", &run]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("outcome is unknown"), "{}", text(&o));
    assert!(text(&o).contains("h2"), "{}", text(&o));
    assert!(f.lines("count-h3").is_empty());

    let o = f.run(&[
        "run",
        "spread",
        "--approve",
        "all",
        "--resume",
        &run,
        "--resolve",
        "verify",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for h in ["h1", "h2", "h3"] {
        assert_eq!(
            f.lines(&format!("count-{h}")).len(),
            1,
            "{h} ran exactly once\n{}",
            text(&o)
        );
    }
}

#[test]
fn a_foreach_action_killed_mid_list_never_repeats_an_item_and_its_confirmation_lists_all() {
    let f = Fixture::new();
    f.runbook(
        "items",
        r#"
[[steps]]
id = "find"
title = "find the items"
kind = "diagnose"
target = { selector = "edge1" }
shell = "seq 1 28"
capture = { var = "ids", regex = "^([0-9]+)$", list = true }
[[steps]]
id = "each"
title = "act on each"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
foreach = "ids"
shell = "echo {{item}} >> {{work}}/done; if [ {{item}} = 5 ]; then touch {{work}}/started; sleep 30; fi"
timeout = "60s"
"#,
    );
    let mut child = f.spawn(&["run", "items", "--approve", "all", "--json"]);
    wait_for("item 5", || f.p("work/started").exists());
    kill_9(&mut child);
    let run = f.only_run();
    let journal = std::fs::read_to_string(f.p(&format!("journal/{run}.jsonl"))).expect("read");
    // The approval recorded every one of the 28 commands it covered.
    let decided: serde_json::Value = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["event"] == "decided" && l["step"] == "each")
        .expect("the decision is journaled");
    let covers = decided["covers"].as_array().expect("covers");
    assert_eq!(covers.len(), 28, "{decided}");
    assert!(covers.iter().any(|c| {
        c["item"] == "28"
            && c["command"]
                .as_str()
                .is_some_and(|s| s.contains("echo 28 >>"))
    }));

    let o = f.run(&[
        "run",
        "items",
        "--approve",
        "all",
        "--resume",
        &run,
        "--resolve",
        "verify",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut done = f.lines("done");
    done.sort_by_key(|s| s.parse::<u32>().unwrap_or(0));
    let expected: Vec<String> = (1..=28).map(|i| i.to_string()).collect();
    assert_eq!(done, expected, "every item exactly once");
}

#[test]
fn an_action_that_times_out_is_not_retried_and_needs_a_decision() {
    let f = Fixture::new();
    f.runbook(
        "flaky",
        r#"
[[steps]]
id = "append"
title = "append, then hang"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo x >> {{work}}/f; sleep 10"
timeout = "2s"
retries = 2
"#,
    );
    let o = f.run(&["run", "flaky", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("needs a decision"), "{}", text(&o));
    // Give a wrongly retried attempt time to show up before counting.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        f.lines("f").len(),
        1,
        "one attempt only: its outcome is unknown"
    );
}

#[test]
fn twenty_concurrent_runs_on_one_host_named_three_ways_run_the_action_once() {
    let f = Fixture::new();
    f.runbook(
        "edge-fix",
        r#"
[[steps]]
id = "act"
title = "change the edge"
kind = "action"
confirm = "yes"
target = { selector = "edge" }
shell = "echo x >> {{work}}/count; sleep 8"
timeout = "30s"
"#,
    );
    let children: Vec<Child> = (0..20)
        .map(|i| match i % 3 {
            0 => f.spawn(&["run", "edge-fix", "--approve", "all", "--target", "edge1"]),
            1 => f.spawn(&["run", "edge-fix", "--approve", "all", "--target", "edge"]),
            _ => f.spawn(&["run", "edge-fix", "--approve", "all"]),
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let ok = outputs
        .iter()
        .filter(|o| o.status.code() == Some(0))
        .count();
    let refused: Vec<&Output> = outputs
        .iter()
        .filter(|o| o.status.code() == Some(12))
        .collect();
    assert_eq!(ok, 1, "exactly one run acted");
    assert_eq!(refused.len(), 19, "the others were refused");
    for o in refused {
        let t = text(o);
        assert!(t.contains("locked by") && t.contains("pid"), "{t}");
    }
    assert_eq!(f.lines("count").len(), 1, "the action ran once");

    // A dry run takes the lock too: while a run holds it, a dry run is refused.
    let mut holder = f.spawn(&["run", "edge-fix", "--approve", "all"]);
    wait_for("the holder to act", || f.lines("count").len() == 2);
    let o = f.run(&["run", "edge-fix", "--dry-run", "--target", "edge1"]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    kill_9(&mut holder);
    // The kernel released the dead holder's lock: no stale lock to clean up.
    let o = f.run(&["run", "edge-fix", "--dry-run", "--target", "edge1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_resume_keeps_the_recorded_target_and_refuses_another() {
    let f = Fixture::new();
    f.runbook("slow", SLOW_ACTION);
    let mut child = f.spawn(&["run", "slow", "--approve", "all", "--target", "edge1"]);
    wait_for("the action to start", || f.p("work/started").exists());
    kill_9(&mut child);
    let run = f.only_run();
    let o = f.run(&[
        "run",
        "slow",
        "--approve",
        "all",
        "--resume",
        &run,
        "--target",
        "edge",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("same hosts"), "{}", text(&o));
    assert_eq!(f.lines("count").len(), 1);
}

#[test]
fn journal_and_lock_files_are_private_under_a_permissive_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    f.runbook(
        "quick",
        r#"
[[steps]]
id = "act"
title = "act"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "true"
"#,
    );
    // Run under a 022 umask, as a login shell would have it.
    let o = StdCommand::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_opsdeck"))
        .args(["-i", &f.p("inv.toml").display().to_string()])
        .args(["run", "quick", "--approve", "all"])
        .env_remove("OPSDECK_INVENTORY")
        .env("OPSDECK_JOURNAL_DIR", f.p("journal"))
        .env("OPSDECK_RUNBOOKS", f.p("runbooks"))
        .env("OPSDECK_LOG_DIR", f.p("logs"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&f.p("journal")), 0o700);
    for j in f.journals() {
        assert_eq!(mode(&j), 0o600, "{}", j.display());
    }
    let locks = f.p("journal/locks");
    assert_eq!(mode(&locks), 0o700);
    for l in std::fs::read_dir(&locks)
        .expect("locks")
        .filter_map(Result::ok)
    {
        assert_eq!(mode(&l.path()), 0o600, "{}", l.path().display());
    }
}
