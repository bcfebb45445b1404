//! `opsdeck health` as a user runs it: the default local inventory, real Redis and MariaDB on
//! loopback, a stopped server, and a broken threshold, through the real binary.

mod support;

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::mariadb::TestMariadb;
use support::redis::RedisLab;

fn opsdeck() -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY").env(
        "OPSDECK_LOG_DIR",
        std::env::temp_dir().join("opsdeck-test-logs"),
    );
    c
}

/// Runs `health --json`, returning (exit code, document).
fn health_json(args: &[&str]) -> (i32, Value) {
    let out = opsdeck()
        .args(args)
        .args(["health", "--json", "--timeout", "3s"])
        .output()
        .expect("runs");
    let code = out.status.code().expect("exit code");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, doc)
}

fn check<'a>(doc: &'a Value, host: &str, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["host"] == host && c["id"] == id)
        .unwrap_or_else(|| panic!("no check {host} {id} in {doc:#}"))
}

fn expected_exit(worst: &str) -> i32 {
    match worst {
        "ok" => 0,
        "warning" => 3,
        "unknown" => 4,
        "critical" => 5,
        "down" => 6,
        other => panic!("unknown state {other}"),
    }
}

#[test]
fn default_inventory_reports_this_machine_like_df() {
    let (code, doc) = health_json(&[]);
    assert_eq!(code, expected_exit(doc["worst"].as_str().expect("worst")));
    let host = doc["checks"][0]["host"].as_str().expect("host").to_owned();
    assert_eq!(check(&doc, &host, "host.reachable")["state"], "ok");
    let cpu = check(&doc, &host, "host.cpu")["value"]
        .as_f64()
        .expect("cpu % measured in a single sweep");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    // The disk figure agrees with df.
    let df = std::process::Command::new("df")
        .args(["--output=pcent", "/"])
        .output()
        .expect("df runs");
    let df_pct: f64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .expect("df line")
        .trim()
        .trim_end_matches('%')
        .parse()
        .expect("df percent");
    let ours = check(&doc, &host, "disk./")["value"]
        .as_f64()
        .expect("disk value");
    assert!((ours - df_pct).abs() <= 1.5, "ours {ours} vs df {df_pct}");
}

#[test]
fn table_output_is_grouped_by_tier_and_exit_matches() {
    let out = opsdeck()
        .args(["health", "--timeout", "3s"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("local ("), "{text}");
    let last = text.lines().last().expect("summary line");
    let worst = last
        .strip_prefix("worst: ")
        .and_then(|s| s.split_whitespace().next())
        .expect("worst line");
    assert_eq!(out.status.code(), Some(expected_exit(worst)), "{text}");
}

#[test]
fn broken_threshold_is_a_configuration_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[defaults.thresholds]\ncpu_warn = 70\n\n[hosts.h]\ntier = \"t\"\nlocal = {}\n",
    )
    .expect("write");
    let out = opsdeck()
        .args(["-i", inv.to_str().expect("utf8"), "health"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[defaults.thresholds] cpu_warn: unknown threshold"),
        "{err}"
    );
    assert!(err.contains("did you mean `cpu_warning`?"), "{err}");
}

fn write_inventory(dir: &Path, redis_port: u16, db_port: u16, pw_file: &Path) -> String {
    let path = dir.join("inv.toml");
    // CPU thresholds out of reach: the machine's own load is not what this test is about.
    let text = format!(
        r#"name = "health-test"

[defaults.thresholds]
cpu_warning = 100
cpu_critical = 100

[tiers.cache]
[tiers.db]

[hosts.cache-1]
tier = "cache"
local = {{}}
redis = [{{ role = "master", address = "127.0.0.1", port = {redis_port} }}]
queues = [{{ name = "jobs" }}]

[hosts.db-1]
tier = "db"
local = {{}}
mysql = [{{ role = "primary", address = "127.0.0.1", port = {db_port}, user = "monitor", password_file = "{}" }}]
"#,
        pw_file.display()
    );
    std::fs::write(&path, text).expect("write inventory");
    path.to_str().expect("utf8").to_owned()
}

#[test]
fn real_redis_and_mariadb_then_redis_dies() {
    let db = TestMariadb::start("health-db", |o| o.max_connections = 20);
    db.create_user("monitor", "s3cret-monitor", "PROCESS, SLAVE MONITOR");
    let lab = RedisLab::new();
    let mut redis = lab.redis("health-r", None, None);
    let dir = tempfile::tempdir().expect("tmp");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-monitor\n").expect("pw");
    // A backlog above the seed's 1000-job threshold.
    let mut push = std::process::Command::new("redis-cli");
    push.args(["-p", &redis.addr.port().to_string(), "RPUSH", "jobs"]);
    for i in 0..1500 {
        push.arg(i.to_string());
    }
    assert!(push.output().expect("redis-cli").status.success());
    let inv = write_inventory(dir.path(), redis.addr.port(), db.addr().port(), &pw);

    let (code, doc) = health_json(&["-i", &inv]);
    assert_eq!(
        check(&doc, "cache-1", "redis.ping")["state"],
        "ok",
        "{doc:#}"
    );
    let q = check(&doc, "cache-1", "queue.jobs");
    assert_eq!(q["state"], "warning");
    assert_eq!(q["value"], 1500.0);
    assert_eq!(
        q["reason"],
        "1500 jobs waiting in jobs (warning above 1000)"
    );
    let conn = check(&doc, "db-1", "mysql.connections");
    assert_eq!(conn["state"], "ok", "{doc:#}");
    let reason = conn["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("connections ") && reason.contains("/20 ("),
        "{reason}"
    );
    assert_eq!(check(&doc, "db-1", "mysql.up")["state"], "ok");
    assert_eq!(doc["worst"], "warning", "{doc:#}");
    assert_eq!(code, 3);
    assert!(
        !doc.to_string().contains("s3cret-monitor"),
        "password leaked"
    );

    redis.kill();
    let (code, doc) = health_json(&["-i", &inv]);
    assert_eq!(check(&doc, "cache-1", "redis.ping")["state"], "down");
    assert_eq!(check(&doc, "cache-1", "queue.jobs")["state"], "down");
    assert_eq!(check(&doc, "db-1", "mysql.connections")["state"], "ok");
    assert_eq!(code, 6);
}

#[test]
fn watch_prints_one_json_line_per_interval() {
    let out = opsdeck()
        .args(["health", "--watch", "--interval", "1s", "--count", "2"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line not JSON ({e}): {l}")))
        .collect();
    assert_eq!(docs.len(), 2, "{text}");
    let host = docs[1]["checks"][0]["host"].as_str().expect("host");
    // By the second line the host has answered: its state is measured, not "no sample yet".
    assert_eq!(
        check(&docs[1], host, "host.reachable")["state"],
        "ok",
        "{text}"
    );
    let worst = docs[1]["worst"].as_str().expect("worst");
    assert_eq!(out.status.code(), Some(expected_exit(worst)));
}

#[test]
fn check_command_validates_thresholds_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[hosts.h]\ntier = \"t\"\nlocal = {}\nthresholds = { disk_warning = 97 }\n",
    )
    .expect("write");
    let out = opsdeck()
        .args(["-i", inv.to_str().expect("utf8"), "check"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disk_warning: 97 is above disk_critical = 95"),
        "{err}"
    );
}
