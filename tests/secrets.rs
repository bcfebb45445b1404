//! Canary secrets against real servers, through the `opsdeck` binary: a password built to
//! break naive escaping (`"`, `\`, `'`, `%`, a space, non-ASCII) is the Redis `requirepass`
//! and a MariaDB user's password. opsdeck must log in with it, and it must never appear raw,
//! JSON-escaped, Debug-escaped or percent-encoded in any output or in the trace-level log.

mod support;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::mariadb::TestMariadb;
use support::redis::RedisLab;
use support::sshd::{SshHosts, toml_str};

/// Unique per test: one test's masking must not hide another's leak.
fn canary(tag: &str) -> String {
    format!("cn-{tag}-a\"b\\c'%d \u{fc}")
}

/// The forms a leak would take: raw, JSON-escaped, Debug-escaped, percent-encoded (upper and
/// lower hex), and a Debug-printed byte list.
fn leaked_forms(canary: &str) -> Vec<String> {
    let json = serde_json::to_string(canary).expect("json");
    let debug = format!("{canary:?}");
    let percent = |upper: bool| -> String {
        canary
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let bytes = format!("{:?}", canary.as_bytes());
    vec![
        canary.to_owned(),
        json[1..json.len() - 1].to_owned(),
        debug[1..debug.len() - 1].to_owned(),
        percent(true),
        percent(false),
        bytes[1..bytes.len() - 1].to_owned(),
    ]
}

fn assert_no_leak(canary: &str, what: &str, text: &str) {
    for form in leaked_forms(canary) {
        assert!(
            !text.contains(&form),
            "{what} shows the canary as {form:?}:\n{text}"
        );
    }
}

fn opsdeck(logs: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY")
        .env_remove("RUST_LOG")
        .env("OPSDECK_LOG_DIR", logs)
        .env("OPSDECK_LOG", "trace")
        .timeout(std::time::Duration::from_secs(120));
    c
}

/// stdout and stderr of one run, with its exit code.
fn run(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn all_logs(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir).expect("log dir exists") {
        let p = e.expect("entry").path();
        text.push_str(&String::from_utf8_lossy(
            &std::fs::read(&p).expect("read log"),
        ));
    }
    text
}

fn check_state<'a>(doc: &'a Value, host: &str, prefix: &str) -> Vec<&'a str> {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["host"] == host && c["id"].as_str().is_some_and(|i| i.starts_with(prefix)))
        .map(|c| c["state"].as_str().expect("state"))
        .collect()
}

#[test]
fn a_hostile_canary_password_never_leaks_from_health_inventory_exec_or_the_trace_log() {
    let pw = canary("e2e");
    let ssh = SshHosts::start(1);
    let redis_lab = RedisLab::new();
    let redis = redis_lab.redis("canary", Some(&pw), None);
    let db = TestMariadb::start("canary", |_| {});
    db.create_user("canary", &pw, "PROCESS, SLAVE MONITOR");

    // h1 over ssh (so russh's packet trace is in the log) with the two services; the canary
    // also names a process that must run, so health has to print something holding it.
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.toml");
    let text = format!(
        "name = \"canary\"\n[tiers.db]\n\
         [hosts.h1]\ntier = \"db\"\nssh = {ssh}\nprocesses = [{proc}]\n\
         [[hosts.h1.mysql]]\nrole = \"primary\"\naddress = \"127.0.0.1\"\nport = {mport}\n\
         user = \"canary\"\npassword_env = \"OPSDECK_TEST_CANARY\"\n\
         [[hosts.h1.redis]]\nrole = \"master\"\naddress = \"127.0.0.1\"\nport = {rport}\n\
         password_cmd = \"printf '%s' \\\"$OPSDECK_TEST_CANARY\\\"\"\n\
         [hosts.local1]\ntier = \"db\"\nlocal = {{}}\n",
        ssh = ssh.ssh_table(0, ""),
        proc = toml_str(&pw),
        mport = db.addr().port(),
        rport = redis.addr.port(),
    );
    std::fs::write(&inv, text).expect("inventory");
    let inv = inv.to_str().expect("utf8").to_owned();
    let logs = dir.path().join("logs");

    // health --json: the services answer (the hostile password works) and nothing leaks.
    let (code, out, err) = run(opsdeck(&logs).env("OPSDECK_TEST_CANARY", &pw).args([
        "-i",
        &inv,
        "health",
        "--json",
        "--timeout",
        "10s",
    ]));
    assert_no_leak(&pw, "health --json", &format!("{out}{err}"));
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("health --json ({code:?}) is not JSON ({e}): {out}{err}"));
    let redis_states = check_state(&doc, "h1", "redis.");
    let mysql_states = check_state(&doc, "h1", "mysql.");
    assert!(
        !redis_states.is_empty() && redis_states.iter().all(|s| *s != "down"),
        "redis with the canary password: {doc:#}"
    );
    assert!(
        !mysql_states.is_empty() && mysql_states.iter().all(|s| *s != "down"),
        "mysql with the canary password: {doc:#}"
    );
    assert!(
        out.contains("********"),
        "the process name is masked: {out}"
    );

    // The table.
    let (_, out, err) = run(opsdeck(&logs).env("OPSDECK_TEST_CANARY", &pw).args([
        "-i",
        &inv,
        "health",
        "--timeout",
        "10s",
    ]));
    assert_no_leak(&pw, "health", &format!("{out}{err}"));
    assert!(out.contains("********"), "{out}");

    // inventory, with and without running the password_cmd.
    for resolve in [false, true] {
        let mut cmd = opsdeck(&logs);
        cmd.env("OPSDECK_TEST_CANARY", &pw)
            .args(["-i", &inv, "inventory", "--json"]);
        if resolve {
            cmd.arg("--resolve-secrets");
        }
        let (code, out, err) = run(&mut cmd);
        assert_eq!(code, Some(0), "{out}{err}");
        assert_no_leak(&pw, "inventory --json", &format!("{out}{err}"));
        serde_json::from_str::<Value>(&out).expect("inventory JSON");
        let (_, out, err) =
            run(opsdeck(&logs)
                .env("OPSDECK_TEST_CANARY", &pw)
                .args(["-i", &inv, "inventory"]));
        assert_no_leak(&pw, "inventory", &format!("{out}{err}"));
    }

    // exec: a command that carries the canary (shell-quoted) and prints it back, raw and
    // encoded, on both hosts, as text and as JSON.
    let quoted = shlex::try_quote(&pw).expect("quotable").into_owned();
    let command = format!("X={quoted}; printf '%s\\n' \"$X\"; printf 'err:%s\\n' \"$X\" >&2");
    for json in [false, true] {
        let mut cmd = opsdeck(&logs);
        cmd.env("OPSDECK_TEST_CANARY", &pw)
            .args(["-i", &inv, "exec", "all", "--timeout", "20s"]);
        if json {
            cmd.arg("--json");
        }
        let (code, out, err) = run(cmd.arg("--").arg(&command));
        assert_eq!(code, Some(0), "{out}{err}");
        assert_no_leak(&pw, "exec", &format!("{out}{err}"));
        assert!(
            out.contains("********"),
            "output is masked, not dropped: {out}"
        );
    }

    // The log, at trace level (russh logs every packet there).
    let log = all_logs(&logs);
    assert!(
        log.contains("TRACE"),
        "the log holds trace lines: {}",
        &log[..log.len().min(2000)]
    );
    assert_no_leak(&pw, "the trace log", &log);
    assert!(
        log.contains("russh") && log.contains("stdout=********"),
        "russh's trace and the masked output are logged"
    );
}
