//! Issue 4's drill table, end to end through the binary: for each lab drill, the right check on
//! the right host turns the right state within two poll intervals of `opsdeck health --watch`
//! and its reason names the cause; after `opsdeck drill reset` the same check is ok again.
//!
//! The lab lives on fixed 127.0.10.x addresses: one test function, and the same file lock as
//! tests/lab.rs so two labs never run at once.

use std::fs::File;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

fn opsdeck(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary");
    c.env("OPSDECK_LAB_DIR", dir)
        .env_remove("OPSDECK_INVENTORY");
    c
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = opsdeck(dir).args(args).output().expect("run opsdeck");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "opsdeck {args:?} failed:\n{out}{err}");
    out + &err
}

/// Two poll intervals of `health --watch`; the exit status and the checks of the last line.
fn health(dir: &Path) -> (i32, Vec<Value>) {
    let inv = dir.join("inventory.toml");
    let inv = inv.to_str().expect("utf-8 path");
    let (code, out, err) = run(
        dir,
        &[
            "-i",
            inv,
            "health",
            "--json",
            "--watch",
            "--interval",
            "2s",
            "--count",
            "2",
        ],
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "two JSON lines expected:\n{out}\n{err}");
    let last: Value = serde_json::from_str(lines[1]).expect("a JSON line");
    let checks = last["checks"].as_array().expect("checks").clone();
    (code, checks)
}

fn find<'a>(checks: &'a [Value], host: &str, id: &str, instance: Option<&str>) -> &'a Value {
    checks
        .iter()
        .find(|c| {
            c["host"] == host
                && c["id"] == id
                && instance.is_none_or(|i| c["instance"].as_str() == Some(i))
        })
        .unwrap_or_else(|| panic!("no check {id} ({instance:?}) on {host} in {checks:#?}"))
}

fn state(c: &Value) -> &str {
    c["state"].as_str().unwrap_or("?")
}

fn reason(c: &Value) -> &str {
    c["reason"].as_str().unwrap_or("")
}

/// One expected check: host, id, instance, the states that count, words the reason must hold.
struct Expect {
    host: &'static str,
    id: String,
    instance: Option<&'static str>,
    states: &'static [&'static str],
    reason_has: Vec<String>,
}

fn expect(
    host: &'static str,
    id: impl Into<String>,
    instance: Option<&'static str>,
    states: &'static [&'static str],
    reason_has: &[&str],
) -> Expect {
    Expect {
        host,
        id: id.into(),
        instance,
        states,
        reason_has: reason_has.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn expectations(dir: &Path, drill: &str) -> Vec<Expect> {
    let app1_disk = format!("disk.{}", dir.join("hosts/app1").display());
    let warn_or_crit: &[&str] = &["warning", "critical"];
    match drill {
        "connection-exhaustion" => vec![expect(
            "db1",
            "mysql.connections",
            None,
            &["critical"],
            &["connections ", "/30"],
        )],
        "redis-down" => vec![expect(
            "cache1",
            "redis.ping",
            None,
            &["down"],
            &["127.0.10.31:6379", "Connection refused"],
        )],
        "disk-full" => vec![expect(
            "app1",
            app1_disk,
            None,
            &["critical"],
            &["% used", "critical above 95 %"],
        )],
        "primary-down" => vec![expect(
            "db1",
            "mysql.up",
            None,
            &["down"],
            &["127.0.10.21:3306", "Connection refused"],
        )],
        "sentinel-failover" => ["cache1", "cache2", "worker1"]
            .into_iter()
            .map(|h| {
                expect(
                    h,
                    "sentinel.master",
                    None,
                    warn_or_crit,
                    &["at 127.0.10.32:6379", "inventory says 127.0.10.31:6379"],
                )
            })
            .collect(),
        // The lab's hosts share one machine: the runaway workers show on each host's CPU.
        "high-cpu" => vec![expect(
            "worker1",
            "host.cpu",
            None,
            warn_or_crit,
            &["% busy", "; top: "],
        )],
        "slow-api" => vec![
            expect(
                "lb",
                "http.latency",
                Some("http://127.0.10.1/health"),
                &["warning"],
                &["p95 4", "warning above 200 ms"],
            ),
            expect(
                "app1",
                "http.latency",
                Some("http://127.0.10.11/health"),
                &["warning"],
                &["p95 4", "warning above 200 ms"],
            ),
            expect(
                "app2",
                "http.latency",
                Some("http://127.0.10.12/health"),
                &["warning"],
                &["p95 4", "warning above 200 ms"],
            ),
        ],
        "queue-backlog" => vec![
            expect(
                "worker1",
                "queue.queues:default",
                None,
                &["warning"],
                &["1500 jobs waiting in queues:default", "warning above 1000"],
            ),
            expect(
                "worker1",
                "process.queue:work",
                None,
                &["critical", "down"],
                &["queue:work"],
            ),
        ],
        "bad-release" => vec![expect(
            "lb",
            "http.status",
            Some("http://127.0.10.1/health"),
            &["critical"],
            &["HTTP 500"],
        )],
        "cache-full" => vec![expect(
            "cache1",
            "redis.memory",
            None,
            &["critical"],
            &["of maxmemory 32.0 MiB", "critical above 98 %"],
        )],
        "haproxy-maint" => vec![expect(
            "lb2",
            "haproxy.backend.http_back",
            None,
            &["warning"],
            &["1/2 servers in rotation", "app2 MAINT"],
        )],
        other => panic!("no expectation for drill {other}"),
    }
}

/// A queue worker runs a runaway job: runnable at every look over half a second.
fn burners_running() -> bool {
    let out = StdCommand::new("pgrep")
        .args(["-f", "queue:work"])
        .output()
        .expect("pgrep");
    let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for _ in 0..5 {
        pids.retain(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('R'))
            })
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    !pids.is_empty()
}

/// Takes the lab down at the end, also when an assertion failed.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = run(self.0, &["lab", "down"]);
        }
    }
}

#[test]
fn every_drill_turns_its_check_and_reset_clears_it() {
    let lock =
        File::create(std::env::temp_dir().join("opsdeck-lab-tests.lock")).expect("test setup");
    let _lock =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("test setup");
    let tmp = tempfile::tempdir().expect("test setup");
    let dir = tmp.path().join("lab");
    let _guard = DownOnDrop(&dir);
    ok(&dir, &["lab", "up"]);

    let list = ok(&dir, &["drill", "list"]);
    let drills: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        drills,
        [
            "connection-exhaustion",
            "redis-down",
            "disk-full",
            "primary-down",
            "sentinel-failover",
            "high-cpu",
            "slow-api",
            "queue-backlog",
            "bad-release",
            "cache-full",
            "haproxy-maint",
        ],
        "{list}"
    );

    // Healthy first: every check a drill will break is ok now (host.cpu excepted: this machine
    // is shared and may be busy for real).
    let (_, before) = health(&dir);
    for d in &drills {
        for e in expectations(&dir, d) {
            if e.id == "host.cpu" {
                continue;
            }
            let c = find(&before, e.host, &e.id, e.instance);
            assert_eq!(state(c), "ok", "before {d}: {c}");
        }
    }

    for d in &drills {
        let injected = ok(&dir, &["drill", d]);
        let (code, checks) = health(&dir);
        for e in expectations(&dir, d) {
            let c = find(&checks, e.host, &e.id, e.instance);
            assert!(
                e.states.contains(&state(c)),
                "drill {d} ({injected}): {} on {} is {}, expected one of {:?}: {c}",
                e.id,
                e.host,
                state(c),
                e.states
            );
            for w in &e.reason_has {
                assert!(
                    reason(c).contains(w.as_str()),
                    "drill {d}: {} on {}: reason {:?} does not say {w:?}",
                    e.id,
                    e.host,
                    reason(c)
                );
            }
            if e.states.contains(&"down") && !e.states.contains(&"critical") {
                assert_eq!(code, 6, "drill {d}: a down check makes exit status 6");
            }
        }
        match *d {
            "disk-full" => {
                let c = find(
                    &checks,
                    "app1",
                    &format!("disk.{}", dir.join("hosts/app1").display()),
                    None,
                );
                assert!(c["value"].as_f64().is_some_and(|v| v > 95.0), "{c}");
            }
            "queue-backlog" => {
                let c = find(&checks, "worker1", "queue.queues:default", None);
                assert!(c["value"].as_f64().is_some_and(|v| v > 1000.0), "{c}");
            }
            "high-cpu" => assert!(burners_running(), "the burners are not running"),
            _ => {}
        }

        ok(&dir, &["drill", "reset"]);
        let (_, after) = health(&dir);
        for e in expectations(&dir, d) {
            if e.id == "host.cpu" {
                // The machine may be busy with other work: the cause is gone, not the load.
                assert!(
                    !burners_running(),
                    "drill reset left the CPU burners running"
                );
                continue;
            }
            let c = find(&after, e.host, &e.id, e.instance);
            assert_eq!(state(c), "ok", "after {d} and drill reset: {c}");
        }
    }
}
