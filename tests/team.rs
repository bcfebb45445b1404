//! Team mode against a real 3-member etcd cluster on loopback, with opsdeck run as two
//! different OS accounts (`setpriv`): one lock across accounts and names, a killed holder's
//! lock freeing itself and its run resumed by the other operator, a holder cut off from etcd
//! stopping before its next change (fencing tokens in order), a dead member, and two-person
//! approval. Needs root (accounts) and etcd; CI runs as root.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::etcd::TestEtcd;

const A: &str = "opsdeck-t-alice";
const B: &str = "opsdeck-t-bob";

fn runnable() -> bool {
    let ok = nix::unistd::geteuid().is_root()
        && support::etcd::available()
        && Path::new("/usr/bin/setpriv").exists();
    if !ok {
        assert!(
            std::env::var_os("OPSDECK_REQUIRE_ROOT_TESTS").is_none(),
            "this test must run (root, etcd and setpriv are required)"
        );
        eprintln!("SKIPPED: needs root, etcd and setpriv");
    }
    ok
}

fn account(user: &str) {
    if Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", user])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "useradd {user}");
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(p: &Path, user: &str) {
    let ok = Command::new("chown")
        .args(["-R", user])
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown");
}

struct Team {
    dir: tempfile::TempDir,
    etcd: TestEtcd,
}

impl Team {
    fn new(lease_ttl: &str) -> Team {
        account(A);
        account(B);
        let etcd = support::etcd::start(3);
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        for sub in ["runbooks", "work"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        chmod(&dir.path().join("work"), 0o777);
        // Files both accounts append to.
        for f in ["count", "f"] {
            let p = dir.path().join("work").join(f);
            std::fs::write(&p, "").expect("file");
            chmod(&p, 0o666);
        }
        for user in [A, B] {
            let home = dir.path().join(user);
            std::fs::create_dir(&home).expect("mkdir");
            chown(&home, user);
        }
        std::fs::write(
            dir.path().join("inv.toml"),
            format!(
                "name = \"team\"\n[tiers.edge]\n[tiers.db]\n[hosts.edge1]\ntier = \"edge\"\nlocal = {{}}\n[hosts.db9]\ntier = \"db\"\nlocal = {{}}\n{}",
                etcd.team_toml(lease_ttl, "second_person = [\"db\"]")
            ),
        )
        .expect("inventory");
        Team { dir, etcd }
    }

    fn p(&self, rest: &str) -> PathBuf {
        self.dir.path().join(rest)
    }

    fn runbook(&self, id: &str, body: &str) {
        let path = self.p(&format!("runbooks/{id}.toml"));
        std::fs::write(
            &path,
            format!(
                "id = \"{id}\"\ntitle = \"{id}\"\n[inputs.work]\ndefault = \"{}\"\n{body}",
                self.p("work").display()
            ),
        )
        .expect("runbook");
        chmod(&path, 0o644);
    }

    fn command(&self, user: &str, args: &[&str]) -> Command {
        let home = self.p(user);
        // setpriv execs (runuser forks and waits: a kill -9 would hit runuser, not opsdeck).
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_opsdeck"))
        .env_remove("OPSDECK_INVENTORY")
        .env("HOME", &home)
        .env("OPSDECK_JOURNAL_DIR", home.join("journal"))
        .env("OPSDECK_RUNBOOKS", self.p("runbooks"))
        .env("OPSDECK_LOG_DIR", home.join("logs"))
        .arg("-i")
        .arg(self.p("inv.toml"))
        .args(args);
        c
    }

    fn run(&self, user: &str, args: &[&str]) -> Output {
        self.command(user, args).output().expect("opsdeck runs")
    }

    fn spawn(&self, user: &str, args: &[&str]) -> Child {
        self.command(user, args)
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

    fn journal(&self, user: &str) -> (String, Vec<serde_json::Value>) {
        let dir = self.p(&format!("{user}/journal"));
        let path = std::fs::read_dir(&dir)
            .expect("journal dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .expect("a journal");
        let run = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .expect("stem");
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (run, lines)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_9(c: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = c.wait();
}

const SLOW: &str = r#"
[[steps]]
id = "act"
title = "change the edge, slowly"
kind = "action"
confirm = "yes"
target = { selector = "edge" }
shell = "echo x >> {{work}}/count; touch {{work}}/started; sleep 30"
timeout = "60s"
"#;

#[test]
fn two_accounts_one_host_named_two_ways_one_runs_the_other_is_refused_then_a_kill_frees_it() {
    if !runnable() {
        return;
    }
    let t = Team::new("2s");
    t.runbook("slow", SLOW);
    let mut a = t.spawn(A, &["run", "slow", "--approve", "all", "--target", "edge1"]);
    wait_for("alice's action", Duration::from_secs(20), || {
        t.p("work/started").exists()
    });
    // Different account, different machine-local lock directory, other name for the host:
    // only the team lock can refuse it.
    let o = t.run(B, &["run", "slow", "--approve", "all", "--target", "edge"]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("locked by {A}@")) && text(&o).contains("team lock"),
        "{}",
        text(&o)
    );
    assert_eq!(t.lines("count").len(), 1);
    let status = t.run(B, &["team", "--json"]);
    assert!(
        text(&status).contains("\"runbook\":\"slow\""),
        "{}",
        text(&status)
    );

    // kill -9: the lease is no longer renewed, and the lock frees itself within its TTL.
    kill_9(&mut a);
    let killed = Instant::now();
    wait_for(
        "the dead holder's lease to expire",
        Duration::from_secs(10),
        || !text(&t.run(B, &["team", "--json"])).contains("\"runbook\":\"slow\""),
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2 + 4),
        "freed within the lease TTL"
    );

    // Bob resumes Alice's dead run from the shared journal: the unknown action is marked and
    // nothing is re-run without a decision.
    let (run, _) = t.journal(A);
    let o = t.run(B, &["run", "slow", "--approve", "all", "--resume", &run]);
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("outcome is unknown"), "{}", text(&o));
    assert_eq!(t.lines("count").len(), 1);
    let o = t.run(
        B,
        &[
            "run",
            "slow",
            "--approve",
            "all",
            "--resume",
            &run,
            "--resolve",
            "verify",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(t.lines("count").len(), 1, "verified, never re-run");
}

#[test]
fn a_holder_cut_off_from_etcd_stops_before_its_next_change_and_tokens_prove_the_order() {
    if !runnable() {
        return;
    }
    let mut t = Team::new("2s");
    t.runbook(
        "two-changes",
        r#"
[[steps]]
id = "first"
title = "first change"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo first >> {{work}}/f; sleep 5"
timeout = "30s"
[[steps]]
id = "second"
title = "second change"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo second >> {{work}}/f"
"#,
    );
    let a = t.spawn(A, &["run", "two-changes", "--approve", "all"]);
    wait_for("the first change", Duration::from_secs(20), || {
        !t.lines("f").is_empty()
    });
    // Two of three members frozen: no quorum, Alice cannot renew her lease.
    t.etcd.pause(1);
    t.etcd.pause(2);
    let out = a.wait_with_output().expect("alice ends");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("team lock was lost"), "{}", text(&out));
    assert_eq!(t.lines("f"), vec!["first"], "the second change never ran");
    t.etcd.resume(1);
    t.etcd.resume(2);
    assert!(
        t.etcd.wait_healthy(Duration::from_secs(30)),
        "etcd healthy again"
    );

    // Bob takes over once Alice's lease is gone; his token is later than hers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let o = loop {
        let o = t.run(B, &["run", "two-changes", "--approve", "all"]);
        if o.status.code() != Some(12) || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let token = |user: &str| -> Vec<i64> {
        t.journal(user)
            .1
            .iter()
            .filter(|l| l["type"] == "intent" && l["changes"] == true)
            .filter_map(|l| l["fencing_token"].as_i64())
            .collect()
    };
    let (ta, tb) = (token(A), token(B));
    assert_eq!(ta.len(), 1, "alice intended one change only: {ta:?}");
    assert!(!tb.is_empty());
    assert!(tb.iter().all(|b| *b > ta[0]), "alice {ta:?} < bob {tb:?}");
}

#[test]
fn one_member_down_of_three_and_the_run_goes_on() {
    if !runnable() {
        return;
    }
    let mut t = Team::new("3s");
    t.runbook(
        "quick",
        r#"
[[steps]]
id = "act"
title = "act"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo x >> {{work}}/count; sleep 2"
[[steps]]
id = "again"
title = "again"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo y >> {{work}}/count"
"#,
    );
    // Dead before the run (the first endpoint opsdeck tries) …
    t.etcd.kill(0);
    let o = t.run(A, &["run", "quick", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(t.lines("count"), vec!["x", "y"]);
    // … and another killed during a run: two of three is a quorum, the run goes on.
    let mut t = Team::new("3s");
    t.runbook(
        "quick",
        r#"
[[steps]]
id = "act"
title = "act"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo x >> {{work}}/count; sleep 2"
[[steps]]
id = "again"
title = "again"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo y >> {{work}}/count"
"#,
    );
    let a = t.spawn(A, &["run", "quick", "--approve", "all"]);
    wait_for("the first change", Duration::from_secs(20), || {
        !t.lines("count").is_empty()
    });
    t.etcd.kill(0);
    let out = a.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(t.lines("count"), vec!["x", "y"]);
}

#[test]
fn a_second_person_must_approve_and_cannot_be_the_first() {
    if !runnable() {
        return;
    }
    let t = Team::new("5s");
    t.runbook(
        "risky",
        r#"
[[steps]]
id = "drop"
title = "the risky change"
kind = "action"
confirm = "yes"
target = { selector = "db9" }
shell = "echo done >> {{work}}/risky"
"#,
    );
    let a = t.spawn(
        A,
        &["run", "risky", "--approve", "all", "--approval-wait", "60s"],
    );
    // The request appears; Alice cannot approve her own step.
    let run = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(rd) = std::fs::read_dir(t.p(&format!("{A}/journal")))
                && let Some(p) = rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                if text.contains("second_person") {
                    break p
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .expect("run");
                }
            }
            assert!(Instant::now() < deadline, "no approval request");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut approved = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while approved.is_none() {
        let o = t.run(A, &["approve", &run, "drop", "--yes"]);
        if o.status.code() == Some(12) {
            assert!(text(&o).contains("a second person"), "{}", text(&o));
            approved = Some(());
        }
        assert!(Instant::now() < deadline, "{}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(t.lines("risky").is_empty(), "nothing ran yet");
    let o = t.run(B, &["approve", &run, "drop", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("echo done >>"),
        "bob saw the command: {}",
        text(&o)
    );
    let out = a.wait_with_output().expect("alice ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(t.lines("risky"), vec!["done"]);
    let (_, lines) = t.journal(A);
    let decided: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["event"] == "decided" && l["step"] == "drop")
        .map(|l| {
            (
                l["decision"]["decision"].as_str().unwrap_or("").to_owned(),
                l["by"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        decided
            .iter()
            .any(|(d, by)| d == "confirm" && by == "policy"),
        "{decided:?}"
    );
    assert!(
        decided
            .iter()
            .any(|(d, by)| d == "second_approval" && by.starts_with(&format!("{B}@"))),
        "{decided:?}"
    );
}

#[test]
fn etcd_unreachable_refuses_changes_runs_reads_or_falls_back_loudly_when_allowed() {
    if !runnable() {
        return;
    }
    let mut t = Team::new("3s");
    t.runbook(
        "look-then-act",
        r#"
[[steps]]
id = "look"
title = "look"
kind = "diagnose"
target = { selector = "edge1" }
shell = "echo looked >> {{work}}/f"
read_only = true
[[steps]]
id = "act"
title = "act"
kind = "action"
confirm = "yes"
target = { selector = "edge1" }
shell = "echo acted >> {{work}}/count"
"#,
    );
    for i in 0..3 {
        t.etcd.kill(i);
    }
    let o = t.run(A, &["run", "look-then-act", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(text(&o).contains("etcd is unreachable"), "{}", text(&o));
    assert_eq!(t.lines("f"), vec!["looked"], "read-only work goes on");
    assert!(
        t.lines("count").is_empty(),
        "no change without the team lock"
    );

    // Allowed to fall back: it runs on local locks, says so loudly, and journals it.
    let inv = std::fs::read_to_string(t.p("inv.toml")).expect("inventory");
    std::fs::write(
        t.p("inv.toml"),
        inv.replace("[team]\n", "[team]\non_unreachable = \"local\"\n"),
    )
    .expect("inventory");
    let o = t.run(B, &["run", "look-then-act", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("WARNING: TEAM MODE DEGRADED"),
        "{}",
        text(&o)
    );
    assert_eq!(t.lines("count"), vec!["acted"]);
    let (_, lines) = t.journal(B);
    assert!(lines.iter().any(|l| {
        l["event"] == "note"
            && l["text"]
                .as_str()
                .is_some_and(|s| s.contains("LOCAL locks only"))
    }));
}

/// A console in tmux, as `user`, on the team's inventory.
struct TmuxConsole {
    socket: String,
}

impl TmuxConsole {
    fn start(t: &Team, user: &str) -> TmuxConsole {
        let socket = format!("opsdeck-team-{user}-{}", std::process::id());
        let home = t.p(user);
        let cmd = format!(
            "env -u OPSDECK_INVENTORY HOME={home} OPSDECK_JOURNAL_DIR={home}/journal OPSDECK_RUNBOOKS={rb} OPSDECK_LOG_DIR={home}/logs setpriv --reuid={user} --regid={user} --init-groups -- {bin} -i {inv}",
            home = home.display(),
            rb = t.p("runbooks").display(),
            bin = env!("CARGO_BIN_EXE_opsdeck"),
            inv = t.p("inv.toml").display(),
        );
        let c = TmuxConsole { socket };
        c.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "c",
            "-x",
            "200",
            "-y",
            "50",
            &cmd,
        ]);
        c
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "c"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "c", keys]);
    }

    /// Waits until the screen shows `what`; returns how long it took.
    fn wait_for(&self, what: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "timed out waiting for {what:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TmuxConsole {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The run of `runbook` in `user`'s journal directory (which also holds copies of other
/// operators' runs, synced by the console).
fn run_id(t: &Team, user: &str, runbook: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(rd) = std::fs::read_dir(t.p(&format!("{user}/journal")))
            && let Some(p) = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .find(|p| {
                    std::fs::read_to_string(p)
                        .ok()
                        .and_then(|t| {
                            t.lines()
                                .next()
                                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        })
                        .is_some_and(|h| h["runbook"] == runbook)
                })
        {
            return p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .expect("run");
        }
        assert!(Instant::now() < deadline, "no run in {user}'s journal");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_consoles_see_each_others_runs_and_a_second_person_approves_from_the_console() {
    if !runnable() || Command::new("tmux").arg("-V").output().is_err() {
        return;
    }
    let mut t = Team::new("5s");
    t.runbook(
        "risky",
        r#"
[[steps]]
id = "drop"
title = "the risky change"
kind = "action"
confirm = "yes"
target = { selector = "db9" }
shell = "echo done >> {{work}}/risky"
"#,
    );
    t.runbook(
        "peek",
        r#"
[[steps]]
id = "look"
title = "look"
kind = "diagnose"
target = { selector = "edge1" }
shell = "echo looked"
"#,
    );
    let alice = TmuxConsole::start(&t, A);
    let bob = TmuxConsole::start(&t, B);
    for c in [&alice, &bob] {
        c.wait_for("team: no runs", Duration::from_secs(30));
        c.keys("4");
        c.wait_for("Journal", Duration::from_secs(10));
    }

    // Alice's run waits for a second person: Bob's console lists it, live, and says who runs
    // what and that an approval waits for him.
    let a = t.spawn(
        A,
        &["run", "risky", "--approve", "all", "--approval-wait", "60s"],
    );
    let run = run_id(&t, A, "risky", Duration::from_secs(20));
    let seen = bob.wait_for(&format!("risky {A}@"), Duration::from_secs(5));
    eprintln!("bob's journal view showed alice's run {seen:?} after her journal had it");
    assert!(seen < Duration::from_secs(2), "took {seen:?}");
    bob.wait_for(
        &format!("team: {A} runs risky on db9"),
        Duration::from_secs(5),
    );
    bob.wait_for("1 approval waiting (a)", Duration::from_secs(10));
    // Alice cannot approve her own step from her console.
    alice.keys("a");
    alice.wait_for(
        "no step of another operator waits for an approval",
        Duration::from_secs(5),
    );
    assert!(t.lines("risky").is_empty(), "nothing ran yet");

    // Bob sees exactly what he approves, then approves.
    bob.keys("a");
    bob.wait_for(
        "asks a second person to approve step drop",
        Duration::from_secs(5),
    );
    let s = bob.screen();
    assert!(
        s.contains("db9: $ echo done >>"),
        "the command and host:\n{s}"
    );
    bob.keys("y");
    bob.wait_for(
        &format!("approved step drop of run {run}"),
        Duration::from_secs(10),
    );
    let out = a.wait_with_output().expect("alice ends");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(t.lines("risky"), vec!["done"]);

    // And the other way: Bob's run shows in Alice's journal view.
    let o = t.run(B, &["run", "peek", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    run_id(&t, B, "peek", Duration::from_secs(5));
    alice.wait_for(&format!("peek {B}@"), Duration::from_secs(5));

    // etcd gone: both consoles say so.
    for i in 0..3 {
        t.etcd.kill(i);
    }
    for c in [&alice, &bob] {
        c.wait_for(
            "team: etcd unreachable, changes refused",
            Duration::from_secs(20),
        );
    }
}

/// One etcd member serving clients over TLS only, requiring a client certificate.
struct TlsEtcd {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        kill_9(&mut self.child);
    }
}

fn tls_etcd(pki: &support::tls::Pki) -> TlsEtcd {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    };
    let (port, peer) = (free(), free());
    let data = tempfile::tempdir().expect("tempdir");
    let child = Command::new("etcd")
        .args(["--name", "t1", "--data-dir"])
        .arg(data.path().join("t1"))
        .args([
            "--listen-client-urls",
            &format!("https://127.0.0.1:{port}"),
            "--advertise-client-urls",
            &format!("https://127.0.0.1:{port}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("t1=http://127.0.0.1:{peer}"),
            "--client-cert-auth",
        ])
        .arg("--trusted-ca-file")
        .arg(&pki.ca.cert)
        .arg("--cert-file")
        .arg(&pki.server.cert)
        .arg("--key-file")
        .arg(&pki.server.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    TlsEtcd {
        child,
        port,
        _data: data,
    }
}

#[test]
fn etcd_over_tls_with_a_client_certificate_and_a_wrong_ca_is_a_clear_refusal() {
    if !support::etcd::available() {
        assert!(
            std::env::var_os("OPSDECK_REQUIRE_ROOT_TESTS").is_none(),
            "etcd is required"
        );
        return;
    }
    let pki = support::tls::Pki::new();
    let etcd = tls_etcd(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = dir.path().join("runbooks");
    std::fs::create_dir(&rb).expect("mkdir");
    std::fs::write(
        rb.join("touch.toml"),
        format!(
            "id = \"touch\"\ntitle = \"touch\"\n[[steps]]\nid = \"t\"\ntitle = \"t\"\nkind = \"action\"\nconfirm = \"yes\"\ntarget = {{ selector = \"edge1\" }}\nshell = \"echo t >> {}/touched\"\n",
            dir.path().display()
        ),
    )
    .expect("runbook");
    let inventory = |name: &str, tls: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "name = \"tls\"\n[tiers.edge]\n[hosts.edge1]\ntier = \"edge\"\nlocal = {{}}\n[team]\nendpoints = [\"https://127.0.0.1:{}\"]\nprefix = \"/opsdeck-tls\"\ntls = {tls}\n",
                etcd.port
            ),
        )
        .expect("inventory");
        p
    };
    let good = inventory(
        "good.toml",
        &format!(
            "{{ ca_file = {:?}, client_cert = {:?}, client_key = {:?} }}",
            pki.ca.cert, pki.client.cert, pki.client.key
        ),
    );
    let wrong_ca = inventory(
        "wrong-ca.toml",
        &format!(
            "{{ ca_file = {:?}, client_cert = {:?}, client_key = {:?} }}",
            pki.other_ca.cert, pki.client.cert, pki.client.key
        ),
    );
    let no_cert = inventory(
        "no-cert.toml",
        &format!("{{ ca_file = {:?} }}", pki.ca.cert),
    );
    let opsdeck = |inv: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_opsdeck"))
            .env_remove("OPSDECK_INVENTORY")
            .env("OPSDECK_JOURNAL_DIR", dir.path().join("journal"))
            .env("OPSDECK_RUNBOOKS", &rb)
            .env("OPSDECK_LOG_DIR", dir.path().join("logs"))
            .arg("-i")
            .arg(inv)
            .args(args)
            .output()
            .expect("opsdeck runs")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = opsdeck(&good, &["team"]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "etcd over TLS: {}", text(&o));
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = opsdeck(&good, &["team"]);
    assert!(
        text(&o).contains("etcd: ok (https://127.0.0.1:"),
        "{}",
        text(&o)
    );
    let o = opsdeck(&good, &["run", "touch", "--approve", "all"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("touched")).unwrap_or_default(),
        "t\n"
    );

    // A CA that did not sign the server: a certificate error, and nothing changes.
    let o = opsdeck(&wrong_ca, &["team"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).to_lowercase().contains("certificate"),
        "{}",
        text(&o)
    );
    let o = opsdeck(&wrong_ca, &["run", "touch", "--approve", "all"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    // Without a client certificate etcd refuses the connection.
    let o = opsdeck(&no_cert, &["team"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("touched")).unwrap_or_default(),
        "t\n",
        "refused runs changed nothing"
    );
}
