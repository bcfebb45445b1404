//! The lab end to end, through the `opsdeck` binary, judged from the real servers.
//!
//! The lab uses fixed 127.0.10.x addresses, so everything runs in one test function (and a file
//! lock keeps a second `cargo test` process from bringing up another lab at the same time).
#![allow(clippy::unwrap_used)] // tests may unwrap; the lint guards non-test code

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::Duration;

use assert_cmd::Command;

fn opsdeck(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary");
    c.env("OPSDECK_LAB_DIR", dir)
        .env_remove("OPSDECK_INVENTORY");
    c
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = opsdeck(dir).args(args).output().expect("run opsdeck");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, text) = run(dir, args);
    assert_eq!(code, 0, "opsdeck {args:?} failed:\n{text}");
    text
}

fn mariadb(cnf: &Path, sql: &str) -> Result<String, String> {
    let out = StdCommand::new("mariadb")
        .arg(format!("--defaults-file={}", cnf.display()))
        .args(["-B", "-e", sql])
        .output()
        .expect("mariadb client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn redis_cli(dir: &Path, addr: &str, port: u16, args: &[&str]) -> String {
    let pw = std::fs::read_to_string(dir.join("secrets/redis")).expect("redis secret");
    let out = StdCommand::new("redis-cli")
        .env("REDISCLI_AUTH", pw.trim())
        .args(["-h", addr, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn sentinel_cli(addr: &str, args: &[&str]) -> String {
    let out = StdCommand::new("redis-cli")
        .args(["-h", addr, "-p", "26379"])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect((addr, 80)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn banner(addr: &str, port: u16) -> String {
    let sa: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn pids_in(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for sub in ["run", "drills"] {
        for e in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "pid")
                && let Ok(p) = std::fs::read_to_string(e.path())
            {
                pids.extend(p.trim().parse::<u32>().ok());
            }
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .filter(|m| m.starts_with(&*dir.to_string_lossy()))
        .collect()
}

/// Down leaves nothing: no process from the pid files, no mount, no directory.
fn down_and_assert_clean(dir: &Path) {
    let pids = pids_in(dir);
    assert!(
        pids.len() >= 20,
        "expected the lab's pid files, found {pids:?}"
    );
    ok(dir, &["lab", "down"]);
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after lab down: {left:?}");
    assert!(
        mounts_under(dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(dir)
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
}

fn assert_stack_healthy(dir: &Path) {
    // sshd on every host.
    for a in [
        "127.0.10.1",
        "127.0.10.11",
        "127.0.10.12",
        "127.0.10.21",
        "127.0.10.22",
        "127.0.10.31",
        "127.0.10.32",
        "127.0.10.51",
    ] {
        assert!(
            banner(a, 22).starts_with("SSH-2.0-"),
            "no sshd banner on {a}"
        );
    }
    // MariaDB: both servers answer as the monitoring user; the replica runs with zero lag.
    for h in ["db1", "db2"] {
        let out = mariadb(
            &dir.join(format!("secrets/opsdeck@{h}.cnf")),
            "SELECT @@server_id, @@read_only",
        )
        .unwrap();
        assert!(
            out.contains(if h == "db1" { "1\t0" } else { "2\t1" }),
            "{h}: {out}"
        );
    }
    mariadb(
        &dir.join("secrets/app@db1.cnf"),
        "INSERT INTO marg.users (email) VALUES ('test@marg.test') ON DUPLICATE KEY UPDATE email = email",
    )
    .unwrap();
    let mut status = String::new();
    for _ in 0..50 {
        status = mariadb(&dir.join("secrets/root@db2.cnf"), "SHOW SLAVE STATUS\\G").unwrap();
        if status.contains("Seconds_Behind_Master: 0")
            && mariadb(
                &dir.join("secrets/root@db2.cnf"),
                "SELECT COUNT(*) FROM marg.users WHERE email = 'test@marg.test'",
            )
            .unwrap()
            .contains('1')
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status.contains("Slave_IO_Running: Yes"), "{status}");
    assert!(status.contains("Slave_SQL_Running: Yes"), "{status}");
    assert!(status.contains("Using_Gtid: Slave_Pos"), "{status}");
    assert!(status.contains("Seconds_Behind_Master: 0"), "{status}");
    // Redis with its password; the replica follows the master; Sentinels agree with quorum.
    assert!(redis_cli(dir, "127.0.10.31", 6379, &["PING"]).contains("PONG"));
    assert!(redis_cli(dir, "127.0.10.31", 6379, &["INFO", "replication"]).contains("role:master"));
    let rep = redis_cli(dir, "127.0.10.32", 6379, &["INFO", "replication"]);
    assert!(
        rep.contains("master_host:127.0.10.31") && rep.contains("master_link_status:up"),
        "{rep}"
    );
    for s in ["127.0.10.31", "127.0.10.32", "127.0.10.51"] {
        assert!(
            sentinel_cli(s, &["SENTINEL", "CKQUORUM", "mymaster"]).starts_with("OK"),
            "sentinel {s}"
        );
        assert!(
            sentinel_cli(s, &["SENTINEL", "get-master-addr-by-name", "mymaster"])
                .contains("127.0.10.31")
        );
    }
    // nginx: stub_status on the LB, fpm status on an app server, /health through the LB.
    assert!(
        http("127.0.10.1", "/nginx_status")
            .1
            .contains("Active connections")
    );
    assert!(http("127.0.10.11", "/fpm-status").1.contains("pool:"));
    let (code, body) = http("127.0.10.1", "/health");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok", "{body}");
    assert_eq!(v["database"], "ok", "{body}");
    assert_eq!(v["redis"], "ok", "{body}");
    assert!(v["queue"]["default"].is_u64(), "{body}");
    // The inventory it wrote passes `check`.
    let inv = dir.join("inventory.toml");
    let out = opsdeck(dir)
        .arg("-i")
        .arg(&inv)
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every process is running.
    let status = ok(dir, &["lab", "status"]);
    assert!(!status.contains(" stopped  "), "{status}");
    assert!(
        status.contains("22 processes running, 0 stopped"),
        "{status}"
    );
}

/// A drill's fault as the servers see it, independent of `--check`.
fn fault_seen(dir: &Path, drill: &str) -> bool {
    match drill {
        "connection-exhaustion" => {
            mariadb(&dir.join("secrets/app@db1.cnf"), "SELECT 1").is_err_and(|e| e.contains("1040"))
        }
        "redis-down" => !redis_cli(dir, "127.0.10.31", 6379, &["PING"]).contains("PONG"),
        "disk-full" => {
            let out = StdCommand::new("df")
                .arg("--output=pcent")
                .arg(dir.join("hosts/app1"))
                .output()
                .unwrap();
            let pct: u32 = String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .unwrap()
                .trim()
                .trim_end_matches('%')
                .parse()
                .unwrap();
            pct > 95
        }
        "primary-down" => mariadb(&dir.join("secrets/opsdeck@db1.cnf"), "SELECT 1").is_err(),
        "sentinel-failover" => !sentinel_cli(
            "127.0.10.51",
            &["SENTINEL", "get-master-addr-by-name", "mymaster"],
        )
        .contains("127.0.10.31"),
        "high-cpu" => StdCommand::new("pgrep")
            .args(["-f", "opsdeck-lab-app1-burn"])
            .status()
            .unwrap()
            .success(),
        "slow-api" => {
            let t = std::time::Instant::now();
            http("127.0.10.1", "/health");
            t.elapsed() > Duration::from_millis(200)
        }
        "queue-backlog" => {
            let len: i64 = redis_cli(dir, "127.0.10.31", 6379, &["LLEN", "queues:default"])
                .trim()
                .parse()
                .unwrap_or(0);
            len > 1000
                && !StdCommand::new("pgrep")
                    .args(["-f", "queue:work"])
                    .status()
                    .unwrap()
                    .success()
        }
        other => panic!("no assertion for drill {other}"),
    }
}

/// Takes the lab down if a failed assertion leaves it up.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = run(self.0, &["lab", "down"]);
        }
    }
}

/// The lab directory and what it holds that names or opens something (secrets, inventory,
/// pid files, keys) are private: 0700 directories, 0600 files.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [
        dir.to_path_buf(),
        dir.join("secrets"),
        dir.join("run"),
        dir.join("ssh"),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let mut files = vec![dir.join("inventory.toml"), dir.join("ssh/known_hosts")];
    for e in std::fs::read_dir(dir.join("secrets")).unwrap() {
        files.push(e.unwrap().path());
    }
    // The pid and start files opsdeck writes (servers' own pid files, like nginx's, are theirs).
    for c in opsdeck::lab::layout::components() {
        files.push(dir.join(format!("run/{}.pid", c.name)));
        files.push(dir.join(format!("run/{}.start", c.name)));
    }
    assert!(files.len() > 20, "{files:?}");
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[test]
fn lab_up_drills_and_down_twice() {
    let lock = File::create(std::env::temp_dir().join("opsdeck-lab-tests.lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let _guard = DownOnDrop(&dir);

    // First round: up, idempotent up, every service, every drill, down.
    ok(&dir, &["lab", "up"]);
    assert_private(&dir);
    let pids_before = pids_in(&dir);
    let again = ok(&dir, &["lab", "up"]);
    assert!(again.contains("0 started"), "{again}");
    assert_eq!(
        pids_in(&dir),
        pids_before,
        "a second lab up changed the processes"
    );
    assert_stack_healthy(&dir);
    // `lab status --json`: the same processes as one document, every one running.
    let out = opsdeck(&dir)
        .args(["lab", "status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["running"], true, "{status}");
    let procs = status["processes"].as_array().unwrap();
    assert!(procs.len() >= 22, "{status}");
    assert!(procs.iter().all(|p| p["state"] == "running"), "{status}");

    let list = ok(&dir, &["drill", "list"]);
    let drills: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(drills.len(), 8, "{list}");
    for d in &drills {
        let (code, text) = run(&dir, &["drill", d, "--check"]);
        assert_eq!(code, 1, "{d} present before injection: {text}");
        ok(&dir, &["drill", d]);
        assert!(
            fault_seen(&dir, d),
            "drill {d}: the servers do not show the fault"
        );
        let (code, text) = run(&dir, &["drill", d, "--check"]);
        assert_eq!(code, 0, "{d} --check missed the fault: {text}");
        let out = opsdeck(&dir)
            .args(["drill", d, "--check", "--json"])
            .output()
            .unwrap();
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (out.status.code(), &seen["present"]),
            (Some(0), &serde_json::Value::Bool(true)),
            "{seen}"
        );
        ok(&dir, &["drill", "reset"]);
        assert!(
            !fault_seen(&dir, d),
            "drill {d}: fault still there after reset"
        );
        let (code, text) = run(&dir, &["drill", d, "--check"]);
        assert_eq!(code, 1, "{d} --check after reset: {text}");
    }
    assert_stack_healthy(&dir);
    down_and_assert_clean(&dir);

    // Second round: a fresh lab in the same place comes up and goes away cleanly again.
    ok(&dir, &["lab", "up"]);
    let (code, body) = http("127.0.10.1", "/health");
    assert_eq!(code, 200, "{body}");
    down_and_assert_clean(&dir);
}
