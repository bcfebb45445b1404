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
/// Root cannot log in; the lab's account can, with the lab's key, and escalates with sudo
/// exactly as the engine does (`sudo -n -- sh -c`), without a password.
fn assert_unprivileged_login(dir: &Path) {
    let passwd = StdCommand::new("getent")
        .args(["passwd", "opsdeck"])
        .output()
        .unwrap();
    let passwd = String::from_utf8_lossy(&passwd.stdout);
    assert!(
        passwd.contains("opsdeck lab (created by opsdeck lab up"),
        "{passwd}"
    );
    let check = StdCommand::new("visudo")
        .args(["-cf", "/etc/sudoers.d/opsdeck-lab"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let ssh = |user: &str, cmd: &str| {
        StdCommand::new("ssh")
            .arg("-i")
            .arg(dir.join("ssh/id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                dir.join("ssh/known_hosts").display()
            ))
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg(format!("{user}@127.0.10.11"))
            .arg(cmd)
            .output()
            .unwrap()
    };
    let root = ssh("root", "true");
    assert!(!root.status.success(), "root logged in: {root:?}");
    let me = ssh("opsdeck", "id -un; sudo -n -- sh -c 'id -un'");
    assert!(me.status.success(), "{me:?}");
    assert_eq!(String::from_utf8_lossy(&me.stdout), "opsdeck\nroot\n");
}

/// `lab down` removed what `lab up` created outside the lab directory: the account and its
/// sudo rule.
fn assert_account_gone() {
    let passwd = StdCommand::new("getent")
        .args(["passwd", "opsdeck"])
        .output()
        .unwrap();
    assert!(!passwd.status.success(), "the lab account is still there");
    assert!(!Path::new("/etc/sudoers.d/opsdeck-lab").exists());
}

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
    assert_account_gone();
}

fn assert_stack_healthy(dir: &Path) {
    // sshd on every host.
    for a in [
        "127.0.10.1",
        "127.0.10.2",
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
    // Blue is live; green answers on its own port of every app server.
    assert_eq!(v["color"], "blue", "{body}");
    let mut s = TcpStream::connect(("127.0.10.11", 8080)).unwrap();
    write!(s, "GET /health HTTP/1.0\r\nHost: app1\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.contains("\"color\":\"green\""), "{raw}");
    // HAProxy (lb2) balances over both app servers, both up; /health through it too.
    let (code, body) = http("127.0.10.2", "/health");
    assert_eq!(code, 200, "{body}");
    let mut s = TcpStream::connect(("127.0.10.2", 8404)).unwrap();
    write!(s, "GET /stats;csv HTTP/1.0\r\nHost: lb2\r\n\r\n").unwrap();
    let mut csv = String::new();
    s.read_to_string(&mut csv).unwrap();
    for app in ["app1", "app2"] {
        assert!(csv.contains(&format!("http_back,{app},")), "{csv}");
    }
    assert!(!csv.contains(",DOWN,") && !csv.contains(",MAINT,"), "{csv}");
    // Seed 000's Redis: sessions in db 0, the default cache in db 1; a memory cap.
    assert!(redis_cli(dir, "127.0.10.31", 6379, &["INFO", "keyspace"]).contains("db0:keys="));
    assert!(
        redis_cli(
            dir,
            "127.0.10.31",
            6379,
            &["CONFIG", "GET", "maxmemory-policy"]
        )
        .contains("noeviction")
    );
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
        status.contains("24 processes running, 0 stopped"),
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
        // A queue worker runs a runaway job: runnable at every look over half a second.
        "high-cpu" => {
            let out = StdCommand::new("pgrep")
                .args(["-f", "queue:work"])
                .output()
                .unwrap();
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
        "bad-release" => http("127.0.10.1", "/health").0 == 500,
        "cache-full" => {
            let info = redis_cli(dir, "127.0.10.31", 6379, &["INFO", "memory"]);
            let field = |f: &str| -> f64 {
                info.lines()
                    .find_map(|l| l.strip_prefix(&format!("{f}:")))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0.0)
            };
            field("used_memory") >= 0.9 * field("maxmemory")
        }
        "haproxy-maint" => {
            let mut s = TcpStream::connect(("127.0.10.2", 8404)).unwrap();
            write!(s, "GET /stats;csv HTTP/1.0\r\nHost: lb2\r\n\r\n").unwrap();
            let mut csv = String::new();
            s.read_to_string(&mut csv).unwrap();
            csv.contains("http_back,app2,")
                && csv
                    .lines()
                    .any(|l| l.starts_with("http_back,app2,") && l.contains(",MAINT,"))
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
/// pid files, keys) are private: 0700 directories, 0600 files. The lab account may only
/// traverse the directory and `ssh/` (0711) to its public key list (0644) and the hosts' disks.
fn assert_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [dir.join("secrets"), dir.join("run")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for d in [dir.to_path_buf(), dir.join("ssh")] {
        assert_eq!(mode(&d), 0o711, "{}", d.display());
    }
    assert_eq!(mode(&dir.join("ssh/authorized_keys")), 0o644);
    assert_eq!(mode(&dir.join("ssh/id_ed25519")), 0o600);
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
    assert_unprivileged_login(&dir);
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
    assert_eq!(drills.len(), 11, "{list}");
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
