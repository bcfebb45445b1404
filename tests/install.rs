//! opsdeck installed like a real tool, through the binary: the shipped runbooks are built in
//! and a user's file overrides one by id; config.toml supplies defaults below flags and the
//! environment; `completions bash` sourced in bash completes host names from the inventory;
//! `man` renders; `exec --json` streams a line per host as it finishes; tables are coloured
//! on a terminal only; `--json` on `check`, `journal show` and `drill`.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A temp working directory without `runbooks/`, an empty config dir and private journal
/// and log dirs; no opsdeck variable leaks in from the caller's environment.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["work", "config", "journal", "logs"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(
            dir.path().join("work/inv.toml"),
            "name = \"install-test\"\n[tiers.web]\n[tiers.db]\n\
             [hosts.web-alpha]\ntier = \"web\"\nlocal = {}\n\
             [hosts.web-beta]\ntier = \"web\"\nlocal = {}\n\
             [hosts.db-main]\ntier = \"db\"\nroles = [\"primary\"]\nlocal = {}\n",
        )
        .expect("inventory");
        Env { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.p(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    /// `opsdeck` in `work/`, with this environment's config, journal and log dirs.
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_opsdeck"));
        c.current_dir(self.p("work"))
            .env("OPSDECK_CONFIG_DIR", self.p("config"))
            .env("OPSDECK_JOURNAL_DIR", self.p("journal"))
            .env("OPSDECK_LOG_DIR", self.p("logs"))
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("OPSDECK_RUNBOOKS")
            .env_remove("OPSDECK_INVENTORY")
            .env_remove("OPSDECK_THEME")
            .env_remove("NO_COLOR")
            .env_remove("OPSDECK_COMPLETE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("opsdeck runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let o = self.run(args);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("opsdeck {args:?}: no JSON ({e}):\n{}", text(&o));
        })
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The ids of the runbooks shipped in `runbooks/` (what must be built in).
fn shipped_ids() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .expect("runbooks/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// A small valid runbook `id` whose one read-only step prints `marker` on host `here`.
fn marker_runbook(id: &str, title: &str, marker: &str) -> String {
    format!(
        "id = \"{id}\"\ntitle = \"{title}\"\ntriggers = []\n[[steps]]\nid = \"look\"\ntitle = \"look\"\n\
         kind = \"diagnose\"\ntarget = {{ selector = \"web-alpha\" }}\nshell = \"echo {marker}\"\nread_only = true\n"
    )
}

fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

#[test]
fn the_builtin_runbooks_are_listed_from_a_directory_without_runbooks() {
    let env = Env::new();
    assert!(!env.p("work/runbooks").exists());
    let list = env.json(&["-i", "inv.toml", "runbooks", "--no-health", "--json"]);
    let mut ids: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, shipped_ids(), "every shipped runbook is built in");
    for r in list.as_array().expect("list") {
        assert_eq!(r["source"], "built-in", "{r}");
        assert_eq!(r["overrides"], serde_json::json!([]), "{r}");
    }
    // The table says where each comes from.
    let o = env.run(&["-i", "inv.toml", "runbooks", "--no-health"]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("ID "), "{table}");
    for id in shipped_ids() {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{id} missing:\n{table}"));
        assert!(line.ends_with("built-in"), "{line}");
    }
    // `check` validates them (against this inventory too) and passes.
    let o = env.run(&["-i", "inv.toml", "check"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "runbooks built-in: ok ({} runbooks)",
            shipped_ids().len()
        )),
        "{out}"
    );
}

#[test]
fn a_users_file_with_the_same_id_overrides_the_builtin_one() {
    let env = Env::new();
    let ids = shipped_ids();
    let id = ids.first().expect("a shipped runbook").clone();
    // In the user's config dir: overrides the built-in one.
    let user = env.write(
        &format!("config/runbooks/{id}.toml"),
        &marker_runbook(&id, "Ours from the config dir", "marker-user"),
    );
    let list = env.json(&["-i", "inv.toml", "runbooks", "--no-health", "--json"]);
    let r = by_id(&list, &id);
    assert_eq!(r["title"], "Ours from the config dir", "{r}");
    assert_eq!(r["source"], user.display().to_string(), "{r}");
    assert_eq!(r["origin"], "user config dir", "{r}");
    assert_eq!(r["overrides"], serde_json::json!(["built-in"]), "{r}");
    for other in ids.iter().skip(1) {
        assert_eq!(by_id(&list, other)["source"], "built-in");
    }
    assert_eq!(
        list.as_array().expect("list").len(),
        ids.len(),
        "no duplicate"
    );
    let o = env.run(&["-i", "inv.toml", "runbooks", "--no-health"]);
    let table = String::from_utf8_lossy(&o.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .expect("listed");
    assert!(
        line.ends_with(&format!("{} (overrides built-in)", user.display())),
        "{line}"
    );

    // ./runbooks comes before the config dir: it wins over both, and `run` uses it.
    let local = env.write(
        &format!("work/runbooks/{id}.toml"),
        &marker_runbook(&id, "Ours from ./runbooks", "marker-local"),
    );
    let list = env.json(&["-i", "inv.toml", "runbooks", "--no-health", "--json"]);
    let r = by_id(&list, &id);
    assert_eq!(r["title"], "Ours from ./runbooks", "{r}");
    assert_eq!(r["source"], "runbooks/".to_owned() + &format!("{id}.toml"));
    assert_eq!(
        r["overrides"],
        serde_json::json!([user.display().to_string(), "built-in"]),
        "{r}"
    );
    assert!(local.is_file());
    let o = env.run(&["-i", "inv.toml", "run", &id, "--target", "web-alpha"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("marker-local"), "{}", text(&o));
    assert!(!text(&o).contains("marker-user"), "{}", text(&o));

    // $OPSDECK_RUNBOOKS comes first of all.
    env.write(
        &format!("env-runbooks/{id}.toml"),
        &marker_runbook(&id, "Ours from the environment", "marker-env"),
    );
    let o = env
        .cmd()
        .env("OPSDECK_RUNBOOKS", env.p("env-runbooks"))
        .args(["-i", "inv.toml", "run", &id, "--target", "web-alpha"])
        .output()
        .expect("runs");
    assert!(text(&o).contains("marker-env"), "{}", text(&o));
}

#[test]
fn a_named_runbook_directory_that_is_missing_is_an_error_not_a_fallback() {
    let env = Env::new();
    let o = env
        .cmd()
        .env("OPSDECK_RUNBOOKS", env.p("no-such-dir"))
        .args(["-i", "inv.toml", "runbooks", "--no-health"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-dir (from $OPSDECK_RUNBOOKS) is not a directory"),
        "{err}"
    );
    // An id found nowhere names where it looked.
    let o = env.run(&["-i", "inv.toml", "run", "no-such-runbook"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no runbook \"no-such-runbook\": looked in runbooks (./runbooks)"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("the built-in runbooks"), "{}", text(&o));
}

#[test]
fn config_gives_defaults_below_the_environment_and_the_flags() {
    let env = Env::new();
    for (file, name) in [
        ("config/cfg-inv.toml", "from-config"),
        ("work/env-inv.toml", "from-env"),
        ("work/flag-inv.toml", "from-flag"),
    ] {
        env.write(
            file,
            &format!(
                "name = \"{name}\"\n[tiers.web]\n[hosts.web-alpha]\ntier = \"web\"\nlocal = {{}}\n"
            ),
        );
    }
    env.write(
        "config/config.toml",
        "# relative paths are relative to this file\ninventory = \"cfg-inv.toml\"\n\
         runbook_dirs = [\"more-runbooks\"]\njournal_dir = \"journal-from-config\"\ntheme = \"light\"\n",
    );
    env.write(
        "config/more-runbooks/cfg-only.toml",
        &marker_runbook("cfg-only", "From the config's runbook dir", "marker-cfg"),
    );
    let name = |c: &mut Command| -> String {
        let o = c.args(["inventory", "--json"]).output().expect("runs");
        let v: Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
        v["name"].as_str().expect("name").to_owned()
    };
    assert_eq!(name(&mut env.cmd()), "from-config");
    assert_eq!(
        name(env.cmd().env("OPSDECK_INVENTORY", "env-inv.toml")),
        "from-env"
    );
    assert_eq!(
        name(
            env.cmd()
                .env("OPSDECK_INVENTORY", "env-inv.toml")
                .args(["-i", "flag-inv.toml"])
        ),
        "from-flag"
    );

    // The config's runbook dir is searched, and says so.
    let list = env.json(&["runbooks", "--no-health", "--json"]);
    let r = by_id(&list, "cfg-only");
    assert_eq!(r["origin"], "config.toml runbook_dirs", "{r}");

    // The config's journal dir holds runs unless $OPSDECK_JOURNAL_DIR says otherwise.
    let o = env
        .cmd()
        .env_remove("OPSDECK_JOURNAL_DIR")
        .args(["run", "cfg-only", "--target", "web-alpha"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("marker-cfg"), "{}", text(&o));
    let journals = |dir: &Path| -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(
        journals(&env.p("config/journal-from-config")),
        1,
        "the config's journal dir was used: {}",
        text(&o)
    );
    let runs = env
        .cmd()
        .env_remove("OPSDECK_JOURNAL_DIR")
        .args(["journal", "list", "--json"])
        .output()
        .expect("runs");
    let runs: Value = serde_json::from_slice(&runs.stdout).expect("json");
    assert_eq!(runs.as_array().expect("runs").len(), 1, "{runs}");
    let o = env.run(&["run", "cfg-only", "--target", "web-alpha"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        journals(&env.p("journal")),
        1,
        "$OPSDECK_JOURNAL_DIR beats the config"
    );
    assert_eq!(journals(&env.p("config/journal-from-config")), 1);
    // `check` names the config it read.
    let o = env.run(&["check"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!(
            "config {}: ok",
            env.p("config/config.toml").display()
        )),
        "{}",
        text(&o)
    );
}

#[test]
fn a_malformed_config_is_located_and_stops_every_command() {
    let env = Env::new();
    env.write(
        "config/config.toml",
        "theme = \"dark\"\ninventroy = \"inv.toml\"\n",
    );
    for args in [&["check"][..], &["inventory"], &["runbooks", "--no-health"]] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "{}:2:1: unknown field `inventroy`",
                env.p("config/config.toml").display()
            )),
            "{err}"
        );
        assert!(err.contains("config.toml knows: inventory"), "{err}");
    }
    // What does not need it still works: completions and the man page.
    assert!(env.run(&["completions", "bash"]).status.success());
    assert!(env.run(&["man"]).status.success());
}

/// Completion candidates bash gets for `line` (the last word is the one completed), from the
/// script `opsdeck completions bash` prints, sourced in a non-interactive bash.
fn bash_complete(env: &Env, line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line
        .iter()
        .map(|w| shlex::try_quote(w).expect("quotable").into_owned())
        .collect();
    let script = format!(
        r#"source <("$OPSDECK_BIN" completions bash) || exit 9
spec=$(complete -p opsdeck) || exit 8
fn=$(printf '%s' "$spec" | sed -E 's/.* -F ([^ ]+) .*/\1/')
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
"$fn" opsdeck "${{COMP_WORDS[$COMP_CWORD]}}" "${{COMP_WORDS[$COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = words.join(" ")
    );
    let mut c = Command::new("bash");
    c.args(["--norc", "--noprofile", "-c", &script])
        .current_dir(env.p("work"))
        .env("OPSDECK_BIN", env!("CARGO_BIN_EXE_opsdeck"))
        .env("OPSDECK_CONFIG_DIR", env.p("config"))
        .env("OPSDECK_JOURNAL_DIR", env.p("journal"))
        .env("OPSDECK_LOG_DIR", env.p("logs"))
        .env("HOME", env.dir.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("OPSDECK_INVENTORY")
        .env_remove("OPSDECK_RUNBOOKS");
    let o = c.output().expect("bash runs");
    assert!(o.status.success(), "bash: {}", text(&o));
    let mut got: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    got.sort();
    got
}

#[test]
fn bash_completion_completes_host_tier_and_runbook_names_from_the_inventory() {
    let env = Env::new();
    assert_eq!(
        bash_complete(&env, &["opsdeck", "-i", "inv.toml", "exec", "web-"]),
        vec!["web-alpha", "web-beta"]
    );
    assert_eq!(
        bash_complete(&env, &["opsdeck", "-i", "inv.toml", "health", "db"]),
        vec!["db", "db-main", "db:primary"]
    );
    // A comma-separated selector completes its last term.
    assert_eq!(
        bash_complete(
            &env,
            &["opsdeck", "-i", "inv.toml", "exec", "web-alpha,web-"]
        ),
        vec!["web-alpha,web-beta"]
    );
    // Subcommands, and runbook ids (built in) for `run`.
    assert_eq!(bash_complete(&env, &["opsdeck", "jou"]), vec!["journal"]);
    let ids = shipped_ids();
    let first = &ids[0];
    let prefix = &first[..3];
    let want: Vec<String> = ids
        .iter()
        .filter(|i| i.starts_with(prefix))
        .cloned()
        .collect();
    assert_eq!(bash_complete(&env, &["opsdeck", "run", prefix]), want);
    // The config's inventory when none is on the line.
    env.write("config/config.toml", "inventory = \"../work/inv.toml\"\n");
    assert_eq!(
        bash_complete(&env, &["opsdeck", "exec", "web-b"]),
        vec!["web-beta"]
    );

    // zsh and fish get their own scripts, calling the same binary.
    for shell in ["zsh", "fish"] {
        let o = env.run(&["completions", shell]);
        assert!(o.status.success(), "{}", text(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(script.contains("OPSDECK_COMPLETE"), "{script}");
        assert!(script.contains(env!("CARGO_BIN_EXE_opsdeck")), "{script}");
    }
}

#[test]
fn man_renders_one_page_or_one_per_command() {
    let env = Env::new();
    let o = env.run(&["man"]);
    assert!(o.status.success(), "{}", text(&o));
    let page = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(page.contains(".TH opsdeck 1"), "{page}");
    for sub in [
        "check",
        "inventory",
        "exec",
        "health",
        "lab",
        "drill",
        "run",
        "runbooks",
        "journal",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("opsdeck\\-{sub}(1)")),
            "{sub} in\n{page}"
        );
    }
    let written = env.run(&["man", "--dir", "man1"]);
    assert!(written.status.success(), "{}", text(&written));
    for f in [
        "opsdeck.1",
        "opsdeck-exec.1",
        "opsdeck-run.1",
        "opsdeck-lab-up.1",
    ] {
        assert!(env.p("work/man1").join(f).is_file(), "{f}");
    }
    // Rendered by groff (when installed) without a warning, as `man` would.
    let groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    match groff {
        Ok(mut child) => {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(page.as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("groff");
            assert!(out.status.success());
            assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
            let shown = String::from_utf8_lossy(&out.stdout);
            let plain = regex::Regex::new(".\x08")
                .expect("re")
                .replace_all(&shown, "");
            let words = plain.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                words.contains("opsdeck - Terminal operations console"),
                "{plain}"
            );
            assert!(plain.contains("completions"), "{plain}");
        }
        Err(e) => eprintln!("groff not installed ({e}): the page was checked as text only"),
    }
}

/// If the test fails before opsdeck ended: releases the waiting host (so its shell ends
/// too), then kills opsdeck.
struct KillOnDrop(std::process::Child, PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.1, "");
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_json_prints_a_host_s_line_before_a_slow_host_finishes() {
    let env = Env::new();
    // Both hosts run the same command; whichever takes the lock first finishes at once, the
    // other waits until this test releases it — after it has read the first line.
    let gate = env.p("gate");
    std::fs::create_dir_all(&gate).expect("gate");
    let command = format!(
        // The wait is bounded (60 s) so nothing is left behind if this test fails.
        "if mkdir {g}/first 2>/dev/null; then echo fast; else for i in $(seq 1200); do [ -e {g}/release ] && break; sleep 0.05; done; echo slow; fi",
        g = gate.display()
    );
    let mut child = KillOnDrop(
        env.cmd()
            .args([
                "-i",
                "inv.toml",
                "exec",
                "web",
                "--json",
                "--timeout",
                "60s",
                "--",
            ])
            .arg(&command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        gate.join("release"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.expect("utf8")).is_err() {
                break;
            }
        }
    });
    // A deadline only so a broken build fails instead of hanging: the slow host cannot
    // finish before the release below, whatever the machine's speed.
    let first = rx.recv_timeout(Duration::from_secs(30));
    std::fs::write(gate.join("release"), "").expect("release");
    let first = first.expect("a line arrived while the slow host was still running");
    let first: Value = serde_json::from_str(&first).expect("one JSON object per line");
    assert_eq!(first["stdout"], "fast\n", "{first}");
    assert_eq!(first["status"]["code"], 0, "{first}");
    let second: Value = serde_json::from_str(
        &rx.recv_timeout(Duration::from_secs(30))
            .expect("second line"),
    )
    .expect("json");
    assert_eq!(second["stdout"], "slow\n", "{second}");
    let mut hosts = vec![
        first["host"].as_str().expect("host").to_owned(),
        second["host"].as_str().expect("host").to_owned(),
    ];
    hosts.sort();
    assert_eq!(hosts, vec!["web-alpha", "web-beta"]);
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_err(),
        "one line per host"
    );
    assert!(child.0.wait().expect("exit").success());

    // --json-all keeps the one document, in selector order.
    std::fs::remove_dir_all(&gate).expect("reset gate");
    std::fs::create_dir_all(&gate).expect("gate");
    std::fs::write(gate.join("release"), "").expect("release");
    let doc = env.json(&[
        "-i",
        "inv.toml",
        "exec",
        "web",
        "--json-all",
        "--",
        &command,
    ]);
    let hosts: Vec<&str> = doc
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts, vec!["web-alpha", "web-beta"]);
}

/// Runs `args` under a pseudo-terminal (`script`), returning everything it wrote.
fn on_a_terminal(env: &Env, args: &str, extra_env: &[(&str, &str)]) -> String {
    let line = format!("{} {args}", env!("CARGO_BIN_EXE_opsdeck"));
    let mut s = Command::new("script");
    s.args(["-qec", &line, "/dev/null"])
        .current_dir(env.p("work"))
        .env("OPSDECK_CONFIG_DIR", env.p("config"))
        .env("OPSDECK_JOURNAL_DIR", env.p("journal"))
        .env("OPSDECK_LOG_DIR", env.p("logs"))
        .env("HOME", env.dir.path())
        .env("TERM", "xterm")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("OPSDECK_RUNBOOKS")
        .env_remove("NO_COLOR")
        .env_remove("OPSDECK_INVENTORY")
        .stdin(Stdio::null());
    for (k, v) in extra_env {
        s.env(k, v);
    }
    let o = s.output().expect("script runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tables_are_coloured_on_a_terminal_and_plain_when_piped_or_under_no_color() {
    let env = Env::new();
    let sgr = regex::Regex::new("\x1b\\[[0-9;]*m").expect("re");
    let tty = on_a_terminal(&env, "-i inv.toml health", &[]);
    assert!(sgr.is_match(&tty), "no colour on a terminal: {tty:?}");
    assert!(
        tty.contains("\x1b[32mok\x1b[0m") || tty.contains("\x1b[31m"),
        "{tty:?}"
    );
    // Three hosts: a progress line on the terminal's stderr, cleared before the table.
    assert!(tty.contains("health: "), "no progress line: {tty:?}");
    let no_color = on_a_terminal(&env, "-i inv.toml health", &[("NO_COLOR", "1")]);
    assert!(
        !sgr.is_match(&no_color),
        "colour despite NO_COLOR: {no_color:?}"
    );
    let piped = env.run(&["-i", "inv.toml", "health"]);
    let all = text(&piped);
    assert!(!all.contains('\x1b'), "escapes in a pipe: {all:?}");
    assert!(!all.contains("health: "), "progress in a pipe: {all:?}");
    // The same table, colour stripped, on the terminal and in the pipe (times aside).
    // On the terminal the progress line was cleared (`\r`, erase line) before the table.
    let strip = |s: &str| -> Vec<String> {
        sgr.replace_all(s, "")
            .lines()
            .map(|l| l.rsplit("\x1b[2K").next().unwrap_or(l))
            .filter(|l| l.starts_with("web") || l.starts_with("db") || l.starts_with("  "))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        strip(&String::from_utf8_lossy(&piped.stdout)),
        strip(&no_color.replace("\r\n", "\n"))
    );

    let runbooks = on_a_terminal(&env, "-i inv.toml runbooks --no-health", &[]);
    assert!(sgr.is_match(&runbooks), "{runbooks:?}");
}

#[test]
fn check_journal_show_and_drill_print_json() {
    let env = Env::new();
    let doc = env.json(&["-i", "inv.toml", "check", "--json"]);
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["inventory"]["name"], "install-test", "{doc}");
    assert_eq!(doc["inventory"]["hosts"], 3, "{doc}");
    let runbooks = doc["runbooks"].as_array().expect("runbooks");
    assert_eq!(runbooks.len(), shipped_ids().len(), "{doc}");
    assert!(
        runbooks
            .iter()
            .all(|r| r["ok"] == true && r["source"] == "built-in")
    );
    assert_eq!(doc["themes"]["ok"], true, "{doc}");
    assert_eq!(doc["keys"]["ok"], true, "{doc}");

    // A broken user runbook: not ok, its error located, exit 2.
    env.write("work/runbooks/broken.toml", "id = \"broken\"\ntitle = 3\n");
    let o = env.run(&["-i", "inv.toml", "check", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(doc["ok"], false);
    let broken = by_id(&doc["runbooks"], "broken");
    assert_eq!(broken["ok"], false, "{broken}");
    assert!(
        broken["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("runbooks/broken.toml:2:9: ")),
        "{broken}"
    );
    std::fs::remove_file(env.p("work/runbooks/broken.toml")).expect("rm");

    // journal show: a line per record as text, the records as JSON.
    env.write(
        "work/runbooks/say.toml",
        &marker_runbook("say", "say", "hello-journal"),
    );
    let o = env.run(&["-i", "inv.toml", "run", "say", "--target", "web-alpha"]);
    assert!(o.status.success(), "{}", text(&o));
    let runs = env.json(&["journal", "list", "--json"]);
    let run = runs[0]["run"].as_str().expect("run id").to_owned();
    let records = env.json(&["journal", "show", &run, "--json"]);
    let records = records.as_array().expect("records");
    assert_eq!(records[0]["type"], "header", "{records:?}");
    assert_eq!(records[0]["runbook"], "say");
    let o = env.run(&["journal", "show", &run]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert_eq!(shown.lines().count(), records.len(), "{shown}");
    assert!(!shown.starts_with('{'), "text, not JSON: {shown}");
    assert!(
        shown
            .lines()
            .next()
            .is_some_and(|l| l.contains("header") && l.contains("runbook=say")),
        "{shown}"
    );
    assert!(shown.contains("hello-journal"), "{shown}");

    // drill list as JSON needs no lab.
    let drills = env.json(&["drill", "list", "--json"]);
    let drills = drills.as_array().expect("drills");
    assert!(!drills.is_empty());
    assert!(
        drills
            .iter()
            .all(|d| d["name"].is_string() && d["description"].is_string())
    );
}
