//! Issue 12 items 3 and 5, headless, against the lab: every shipped runbook fixes its drill as a
//! newcomer runs it — `opsdeck run RUNBOOK --approve all`, no `--var`, no `--target` (the target
//! comes from health) — and the fault is gone when the real servers are asked. When the remedy
//! is made to fail, the run ends "not resolved" (exit 13) however many steps passed. The new
//! operations (cache flush, blue/green, backup, HAProxy) do what they say on the servers.
//!
//! Along the way: runs without approval, read-only or dry change nothing; a second run on the
//! same target is refused naming the holder; the failovers lose no acknowledged write; the lab
//! logs in as an unprivileged account and escalates with sudo; its random passwords (the
//! canaries) never appear in any output, journal or export.
//!
//! One lab for all of it (fixed 127.0.10.x addresses), under the same file lock as tests/lab.rs.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;

struct Lab {
    dir: PathBuf,
    journal: PathBuf,
    /// Everything opsdeck printed, for the canary check at the end.
    printed: Mutex<String>,
}

impl Lab {
    fn opsdeck(&self) -> Command {
        let mut c = Command::cargo_bin("opsdeck").expect("binary");
        c.env("OPSDECK_LAB_DIR", &self.dir)
            .env("OPSDECK_JOURNAL_DIR", &self.journal)
            .env(
                "OPSDECK_RUNBOOKS",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
            )
            .env("USER", "tester")
            .env_remove("OPSDECK_INVENTORY")
            .arg("-i")
            .arg(self.dir.join("inventory.toml"));
        c
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = self.opsdeck().args(args).output().expect("run opsdeck");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        self.printed.lock().expect("lock").push_str(&text);
        (out.status.code().unwrap_or(-1), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, text) = self.run(args);
        assert_eq!(code, 0, "opsdeck {args:?} failed:\n{}", tail(&text));
        text
    }

    /// `opsdeck run RUNBOOK --approve all` as a newcomer runs it: no --var, no --target.
    fn fixes(&self, runbook: &str) -> String {
        let text = self.ok(&["run", runbook, "--approve", "all"]);
        assert!(
            text.contains("== Succeeded") && text.contains("back to ok"),
            "{runbook} did not end resolved:\n{}",
            tail(&text)
        );
        text
    }

    /// The same run when its remedy cannot work: every step runs, the end check finds the
    /// fault still there.
    fn not_resolved(&self, runbook: &str) -> String {
        let (code, text) =
            self.run(&["run", runbook, "--approve", "all", "--verify-timeout", "5s"]);
        assert_eq!(
            code,
            13,
            "{runbook} with a failing remedy must end not resolved (13):\n{}",
            tail(&text)
        );
        assert!(
            text.contains("== NotResolved") && text.contains("the fault is still there"),
            "{}",
            tail(&text)
        );
        text
    }

    fn drill(&self, name: &str) -> String {
        self.ok(&["drill", name])
    }

    fn present(&self, name: &str) -> bool {
        let (code, text) = self.run(&["drill", name, "--check"]);
        assert!(code == 0 || code == 1, "drill {name} --check: {text}");
        code == 0
    }

    fn reset(&self) {
        self.ok(&["drill", "reset"]);
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.p(&format!("secrets/{name}")))
            .expect("lab secret")
            .trim()
            .to_owned()
    }

    fn mariadb(&self, cnf: &str, sql: &str) -> Result<String, String> {
        let out = StdCommand::new("mariadb")
            .arg(format!(
                "--defaults-file={}",
                self.p(&format!("secrets/{cnf}.cnf")).display()
            ))
            .args(["-N", "-B", "-e", sql])
            .output()
            .expect("mariadb client");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn redis(&self, addr: &str, args: &[&str]) -> String {
        redis_cli(&self.secret("redis"), addr, 6379, args)
    }
}

/// The end of a long output, for assertion messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..]
        .iter()
        .map(|l| l.chars().take(220).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn redis_cli(pw: &str, addr: &str, port: u16, args: &[&str]) -> String {
    let out = StdCommand::new("redis-cli")
        .env("REDISCLI_AUTH", pw)
        .args(["-h", addr, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    (String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
        .trim()
        .to_owned()
}

fn sentinel_master(sentinel: &str) -> String {
    let out = StdCommand::new("redis-cli")
        .args(["-h", sentinel, "-p", "26379"])
        .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

const SENTINELS: [&str; 3] = ["127.0.10.31", "127.0.10.32", "127.0.10.51"];

/// Every Sentinel names `addr` as the master.
fn sentinels_agree_on(addr: &str) -> bool {
    SENTINELS.iter().all(|s| sentinel_master(s) == addr)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

fn pidfile(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

fn http(addr: &str, path: &str) -> (u16, String) {
    let out = StdCommand::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn disk_used(path: &Path) -> u32 {
    let out = StdCommand::new("df")
        .arg("--output=pcent")
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .expect("df line")
        .trim()
        .trim_end_matches('%')
        .parse()
        .expect("a percentage")
}

/// A child the test started and kills (by its id) when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Without approval, by default (diagnose only), read-only and dry: the documented exit
/// statuses, and `fault_still_there` (asked of the servers) holds after each.
fn runs_that_change_nothing(
    lab: &Lab,
    runbook: &str,
    fault_still_there: &dyn Fn() -> Result<(), String>,
) {
    let cases: [(&[&str], i32, &str); 4] = [
        (&["--approve", "none"], 10, "needs approval"),
        (&[], 10, "needs approval"),
        (&["--approve", "all", "--read-only"], 12, "read-only"),
        (&["--approve", "all", "--dry-run"], 0, "dry run"),
    ];
    for (flags, want, says) in cases {
        let mut args = vec!["run", runbook];
        args.extend_from_slice(flags);
        let (code, text) = lab.run(&args);
        assert_eq!(code, want, "opsdeck {args:?}:\n{}", tail(&text));
        assert!(
            text.contains(says),
            "opsdeck {args:?} does not say {says:?}:\n{}",
            tail(&text)
        );
        if let Err(e) = fault_still_there() {
            panic!("opsdeck {args:?} changed the servers: {e}\n{}", tail(&text));
        }
    }
}

/// A writer: appends numbered writes through `write` until stopped, keeping the numbers that
/// were acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(write: impl Fn(u64) -> bool + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                if write(n) {
                    a.lock().expect("lock").push(n);
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().expect("lock").len()
    }

    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread");
        }
        self.acked.lock().expect("lock").clone()
    }
}

/// Takes the lab down at the end, also when an assertion failed.
struct DownOnDrop<'a>(&'a Path);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new(assert_cmd::cargo::cargo_bin("opsdeck"))
                .env("OPSDECK_LAB_DIR", self.0)
                .args(["lab", "down"])
                .output();
        }
    }
}

/// Every drill is paired with exactly one shipped runbook (`drill = "NAME"`), and every pairing
/// names a drill that exists: `opsdeck learn` offers them all from the files.
fn drills_are_paired(lab: &Lab) {
    let list = lab.ok(&["drill", "list"]);
    let drills: BTreeSet<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut paired: Vec<String> = Vec::new();
    for (path, r) in opsdeck::runbook::load_dir(&dir, None).expect("runbooks") {
        let (rb, _) = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(d) = rb.drill {
            assert!(
                drills.contains(&d),
                "{} pairs with drill {d:?}, which `drill list` does not have",
                rb.id
            );
            paired.push(d);
        }
    }
    let unique: BTreeSet<String> = paired.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        paired.len(),
        "a drill paired twice: {paired:?}"
    );
    assert_eq!(unique, drills, "drills without a runbook");
}

/// The lab is reached as an unprivileged account; its runbooks' commands run through sudo.
fn lab_logs_in_unprivileged(lab: &Lab) {
    let inv = std::fs::read_to_string(lab.p("inventory.toml")).expect("inventory");
    assert!(inv.contains("user = \"opsdeck\""), "{inv}");
    assert!(inv.contains("become = \"sudo\""), "{inv}");
    let text = lab.ok(&["exec", "app1", "--", "id -un; sudo -n -- sh -c 'id -un'"]);
    assert!(text.contains("opsdeck") && text.contains("root"), "{text}");
}

fn connection_exhaustion(lab: &Lab) {
    lab.drill("connection-exhaustion");
    let sleeper = pidfile(&lab.p("drills/sleepers-db1.pid"));
    let exhausted = || -> Result<(), String> {
        match lab.mariadb("app@db1", "SELECT 1") {
            Err(e) if e.contains("1040") && pid_alive(sleeper) => Ok(()),
            Err(e) => Err(format!("db1 refuses, but not with 1040: {e}")),
            Ok(_) => Err("db1 accepts new connections again".to_owned()),
        }
    };
    exhausted().expect("the drill exhausts db1's connections");
    runs_that_change_nothing(lab, "db-connection-exhaustion", &exhausted);

    // Two concurrent runs: the first waits (it may kill nobody's connections, so usage stays
    // high), the second is refused, naming the holder.
    let mut first = StdCommand::new(assert_cmd::cargo::cargo_bin("opsdeck"));
    first
        .env("OPSDECK_JOURNAL_DIR", &lab.journal)
        .env(
            "OPSDECK_RUNBOOKS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks"),
        )
        .env("USER", "tester")
        .arg("-i")
        .arg(lab.p("inventory.toml"))
        .args([
            "run",
            "db-connection-exhaustion",
            "--approve",
            "all",
            "--var",
            "user_like=nobody",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut first = first.spawn().expect("spawn the first run");
    let holder = first.id();
    let lock_dir = lab.journal.join("locks");
    wait_until(
        "the first run holds its lock",
        Duration::from_secs(20),
        || {
            std::fs::read_dir(&lock_dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&holder.to_string()))
                })
        },
    );
    let (code, text) = lab.run(&["run", "db-connection-exhaustion", "--approve", "all"]);
    assert_eq!(code, 12, "the second run was not refused:\n{text}");
    assert!(
        text.contains("is locked by")
            && text.contains(&opsdeck::identity::current().to_string())
            && text.contains(&format!("pid {holder}")),
        "the refusal does not name the holder (pid {holder}):\n{text}"
    );
    first.kill().expect("kill the first run");
    let out = first.wait_with_output().expect("wait");
    lab.printed
        .lock()
        .expect("lock")
        .push_str(&String::from_utf8_lossy(&out.stdout));
    exhausted().expect("the waiting run changed nothing");
    lab.reset();

    // As the issue asks: injected 5 s before the runbook starts, fixed on the first run, with
    // the defaults (the idle threshold comes from what the diagnosis finds).
    lab.drill("connection-exhaustion");
    std::thread::sleep(Duration::from_secs(5));
    let text = lab.fixes("db-connection-exhaustion");
    assert!(
        text.contains("input min_idle_seconds =") && text.contains("percentile(idle_times, 20)"),
        "{}",
        tail(&text)
    );
    assert_eq!(
        lab.mariadb("app@db1", "SELECT 1").as_deref(),
        Ok("1"),
        "db1 still refuses the app"
    );
    lab.reset();

    // The remedy fails: the leak reopens whatever is killed.
    let mut leak = StdCommand::new("php");
    leak.arg(lab.p("app/sleeper.php"))
        .env("LAB_CONFIG", lab.p("app/config.json"))
        .env("LAB_RECONNECT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut leak = Owned(leak.spawn().expect("php sleeper"));
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(leak.0.stdout.as_mut().expect("stdout")),
        &mut first_line,
    )
    .expect("sleeper output");
    assert!(first_line.starts_with("holding"), "{first_line}");
    std::thread::sleep(Duration::from_secs(2));
    lab.not_resolved("db-connection-exhaustion");
    assert!(
        lab.mariadb("app@db1", "SELECT 1").is_err(),
        "the leak should still hold db1"
    );
    drop(leak);
    lab.reset();
}

fn redis_connection_failure(lab: &Lab) {
    lab.drill("redis-down");
    assert!(lab.present("redis-down"));
    let text = lab.fixes("redis-connection-failure");
    assert!(
        text.contains("lab service restart redis-cache1"),
        "{}",
        tail(&text)
    );
    assert_eq!(lab.redis("127.0.10.31", &["PING"]), "PONG");
    lab.reset();

    // The remedy fails: something else holds the port, so Redis cannot come back.
    lab.drill("redis-down");
    let squatter = TcpListener::bind("127.0.10.31:6379").expect("bind the Redis port");
    squatter.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            // Accept and hang up: not Redis.
            let _ = squatter.accept();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    lab.not_resolved("redis-connection-failure");
    stop.store(true, Ordering::Relaxed);
    t.join().expect("squatter");
    lab.reset();
}

fn disk_space_critical(lab: &Lab) {
    let disk = lab.p("hosts/app1");
    // A live log the cleanup must never touch.
    let live = disk.join("logs/laravel.log");
    std::fs::write(&live, "live log line\n").expect("write live log");
    lab.drill("disk-full");
    assert!(disk_used(&disk) > 95);
    lab.fixes("disk-space-critical");
    let used = disk_used(&disk);
    assert!(used < 85, "app1's disk is still {used} % used");
    assert_eq!(
        std::fs::read_to_string(&live).ok().as_deref(),
        Some("live log line\n"),
        "the live log was touched"
    );
    lab.reset();

    // The remedy fails: what fills the disk is a live log, not a rotated one.
    let big = disk.join("logs/laravel-today.log");
    let mut f = File::create(&big).expect("create");
    let chunk = vec![b'x'; 1 << 20];
    while disk_used(&disk) <= 95 {
        if f.write_all(&chunk).is_err() {
            break;
        }
        let _ = f.flush();
    }
    drop(f);
    lab.not_resolved("disk-space-critical");
    assert!(big.is_file(), "a live log was deleted");
    std::fs::remove_file(&big).expect("remove");
    lab.reset();
}

fn redis_sentinel_failover(lab: &Lab) {
    let pw = lab.secret("redis");
    lab.drill("sentinel-failover");
    assert!(
        sentinels_agree_on("127.0.10.32"),
        "the drill did not move the master to cache2"
    );
    // A failover back needs cache1 to be a synced replica, as Sentinel sees it.
    wait_until("cache1 follows cache2", Duration::from_secs(40), || {
        lab.redis("127.0.10.31", &["INFO", "replication"])
            .contains("master_link_status:up")
    });

    // A write counts when the master took it and one replica has it (WAIT 1).
    let writer = Writer::start(move |n| {
        // Sentinel answers the master's IP (the port is the lab's 6379 on every host).
        let host = sentinel_master("127.0.10.51");
        if host.is_empty() {
            return false;
        }
        let mut child = StdCommand::new("redis-cli")
            .env("REDISCLI_AUTH", &pw)
            .args(["-h", &host, "-p", "6379"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli");
        let _ = writeln!(
            child.stdin.take().expect("stdin"),
            "RPUSH drill:writes {n}\nWAIT 1 1000"
        );
        let out = child.wait_with_output().expect("redis-cli");
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        lines.len() == 2
            && lines[0].parse::<u64>().is_ok()
            && lines[1].parse::<u64>().is_ok_and(|r| r >= 1)
    });
    wait_until(
        "writes acknowledged before the failover",
        Duration::from_secs(30),
        || writer.count() >= 20,
    );
    let text = lab.fixes("redis-sentinel-failover");
    assert!(text.contains("new-master"), "{}", tail(&text));
    wait_until(
        "every Sentinel names cache1",
        Duration::from_secs(30),
        || sentinels_agree_on("127.0.10.31"),
    );
    let at_failover = writer.count();
    wait_until(
        "writes acknowledged by the new master",
        Duration::from_secs(30),
        || writer.count() >= at_failover + 20,
    );
    let acked = writer.finish();
    let stored: BTreeSet<u64> = lab
        .redis("127.0.10.31", &["LRANGE", "drill:writes", "0", "-1"])
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    lab.redis("127.0.10.31", &["DEL", "drill:writes"]);
    lab.reset();

    // The remedy fails: the inventory's master may not be promoted (replica-priority 0).
    lab.drill("sentinel-failover");
    wait_until("cache1 follows cache2", Duration::from_secs(40), || {
        lab.redis("127.0.10.31", &["INFO", "replication"])
            .contains("master_link_status:up")
    });
    lab.redis("127.0.10.31", &["CONFIG", "SET", "replica-priority", "0"]);
    wait_until(
        "Sentinel sees cache1's priority 0",
        Duration::from_secs(30),
        || {
            let out = StdCommand::new("redis-cli")
                .args(["-h", "127.0.10.31", "-p", "26379"])
                .args(["SENTINEL", "replicas", "mymaster"])
                .output()
                .expect("redis-cli");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            lines
                .windows(2)
                .any(|w| w[0] == "slave-priority" && w[1] == "0")
        },
    );
    lab.not_resolved("redis-sentinel-failover");
    assert!(sentinels_agree_on("127.0.10.32"), "the master moved anyway");
    lab.redis("127.0.10.31", &["CONFIG", "SET", "replica-priority", "100"]);
    lab.reset();
}

/// The high-cpu drill is judged by host.cpu, which reads the whole machine: wait for it to be
/// quiet first (the lab's CPU is the machine's).
fn machine_quiet() {
    let busy = || {
        let read = || -> (u64, u64) {
            let s = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
            let f: Vec<u64> = s
                .lines()
                .next()
                .expect("cpu line")
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let idle = f[3] + f.get(4).copied().unwrap_or(0);
            (f.iter().sum(), idle)
        };
        let (t0, i0) = read();
        std::thread::sleep(Duration::from_secs(2));
        let (t1, i1) = read();
        100.0 * (1.0 - (i1 - i0) as f64 / (t1 - t0).max(1) as f64)
    };
    wait_until(
        "the machine to be quiet enough (under 60 % CPU) for a CPU drill: other work is running",
        Duration::from_secs(180),
        || busy() < 60.0,
    );
}

fn high_cpu(lab: &Lab) {
    machine_quiet();
    lab.drill("high-cpu");
    assert!(lab.present("high-cpu"));
    let text = lab.fixes("high-cpu");
    assert!(text.contains("restarting queue:work"), "{}", tail(&text));
    // No command ran on a load balancer (a command is printed `HOST: $ …`, its output
    // `HOST| …`); health at the start may well list their CPU: the lab's hosts share one.
    let on_lb = text.lines().map(str::trim_start).find(|l| {
        ["lb:", "lb|", "lb2:", "lb2|"]
            .iter()
            .any(|p| l.starts_with(p))
    });
    assert!(
        on_lb.is_none(),
        "high-cpu acted on a load balancer: {on_lb:?}\n{}",
        tail(&text)
    );
    assert!(!lab.present("high-cpu"));
    lab.reset();

    // The remedy fails: what burns the CPU is nothing the inventory declares.
    machine_quiet();
    let burners: Vec<Owned> = (0..2)
        .map(|_| {
            Owned(
                StdCommand::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .spawn()
                    .expect("sh"),
            )
        })
        .collect();
    let text = lab.not_resolved("high-cpu");
    assert!(
        text.contains("nothing of this host burns a CPU"),
        "{}",
        tail(&text)
    );
    drop(burners);
    lab.reset();
}

fn api_latency(lab: &Lab) {
    lab.drill("slow-api");
    assert!(lab.present("slow-api"));
    let text = lab.fixes("api-latency-degradation");
    assert!(
        text.contains("lab service restart fpm-app1"),
        "{}",
        tail(&text)
    );
    assert!(!lab.present("slow-api"), "the API is still slow");
    lab.reset();

    // The remedy fails: the application itself is slow (a bad release), not php-fpm.
    std::fs::write(lab.p("drills/slow-api"), "all\n").expect("flag");
    lab.not_resolved("api-latency-degradation");
    assert!(lab.present("slow-api"));
    lab.reset();
}

fn queue_backlog(lab: &Lab) {
    lab.drill("queue-backlog");
    assert!(lab.present("queue-backlog"));
    let text = lab.fixes("queue-backlog");
    assert!(
        text.contains("queue_names = queues:default"),
        "{}",
        tail(&text)
    );
    assert_eq!(lab.redis("127.0.10.31", &["LLEN", "queues:default"]), "0");
    assert!(!lab.present("queue-backlog"));
    lab.reset();

    // The remedy fails: the jobs at the head of the queue crash every worker that takes one.
    lab.drill("queue-backlog");
    let crash = r#"{"job":"ResizeImage","crash":true}"#;
    let mut args = vec!["RPUSH", "queues:default"];
    args.extend(std::iter::repeat_n(crash, 1500));
    lab.redis("127.0.10.31", &args);
    lab.not_resolved("queue-backlog");
    lab.redis("127.0.10.31", &["DEL", "queues:default"]);
    lab.reset();
}

fn session_keys(lab: &Lab) -> BTreeSet<String> {
    lab.redis(
        "127.0.10.31",
        &[
            "-n",
            "0",
            "--scan",
            "--pattern",
            "marg_database_laravel_session:*",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn cache_flush(lab: &Lab) {
    let sessions = session_keys(lab);
    assert!(sessions.len() >= 40, "{sessions:?}");
    lab.drill("cache-full");
    assert!(lab.present("cache-full"));
    let text = lab.fixes("cache-flush");
    assert!(text.contains("redis db 2> FLUSHDB"), "{}", tail(&text));
    assert_eq!(session_keys(lab), sessions, "sessions were lost");
    assert!(
        lab.redis("127.0.10.31", &["-n", "2", "DBSIZE"])
            .parse::<u64>()
            .expect("dbsize")
            < 5,
        "the page cache was not flushed"
    );
    assert!(!lab.present("cache-full"));
    lab.reset();
}

fn live_color(lab: &Lab) -> &'static str {
    let live = std::fs::read(lab.p("run/lb-upstream.conf")).expect("live upstream");
    ["blue", "green"]
        .into_iter()
        .find(|c| {
            std::fs::read(lab.p(&format!("run/lb-upstream.{c}.conf"))).ok() == Some(live.clone())
        })
        .unwrap_or("unknown")
}

fn blue_green(lab: &Lab) {
    lab.drill("bad-release");
    assert_eq!(live_color(lab), "green");
    assert!(http("127.0.10.1", "/health").0 >= 500);
    lab.fixes("blue-green-switch");
    assert_eq!(live_color(lab), "blue", "traffic did not switch");
    let (code, body) = http("127.0.10.1", "/health");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"color\":\"blue\""), "{body}");
    lab.reset();

    // Neither colour serves: it switches, sees the new one fail, and switches back.
    lab.drill("bad-release");
    std::fs::write(lab.p("drills/bad-release"), "green blue\n").expect("flag");
    let text = lab.not_resolved("blue-green-switch");
    assert!(
        text.contains("-> [action] switch: ") && text.contains("-> [action] switch-back: "),
        "{}",
        tail(&text)
    );
    assert!(
        !text.contains("skipped: condition `status_after != 200`"),
        "{}",
        tail(&text)
    );
    assert_eq!(live_color(lab), "green", "it did not switch back");
    lab.reset();
    assert_eq!(live_color(lab), "blue");
}

fn haproxy_servers() -> Vec<(String, String)> {
    let (_, csv) = http("127.0.10.2:8404", "/stats;csv");
    csv.lines()
        .filter(|l| l.starts_with("http_back,") && !l.starts_with("http_back,BACKEND"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[17].to_owned())
        })
        .collect()
}

fn haproxy(lab: &Lab) {
    lab.drill("haproxy-maint");
    assert!(
        haproxy_servers().contains(&("app2".to_owned(), "MAINT".to_owned())),
        "{:?}",
        haproxy_servers()
    );
    let text = lab.fixes("haproxy-drain-enable");
    // What HAProxy said at each step: drained, then serving.
    assert!(text.contains("http_back,app2,DRAIN"), "{}", tail(&text));
    assert!(text.contains("http_back,app2,UP"), "{}", tail(&text));
    wait_until(
        "app2 up in HAProxy's stats",
        Duration::from_secs(10),
        || haproxy_servers().iter().all(|(_, st)| st == "UP"),
    );
    lab.reset();
}

fn backup_verify(lab: &Lab) {
    let text = lab.ok(&["run", "backup-verify", "--approve", "all"]);
    assert!(text.contains("tables 2 mismatched 0"), "{}", tail(&text));
    let dir = lab.p("hosts/db1/backups/mysql");
    let dumps: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("backup directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".sql.gz"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let sql = StdCommand::new("gunzip")
        .arg("-c")
        .arg(&dumps[0])
        .output()
        .expect("gunzip");
    let sql = String::from_utf8_lossy(&sql.stdout);
    assert!(
        sql.contains("CREATE TABLE `orders`") && sql.contains("INSERT INTO `users`"),
        "not a dump of marg"
    );
    assert_eq!(
        lab.mariadb("root@db1", "SHOW DATABASES LIKE 'marg_restore_check'")
            .as_deref(),
        Ok(""),
        "the scratch database was left"
    );
    assert_eq!(
        lab.mariadb("root@db2", "SHOW DATABASES LIKE 'marg_restore_check'")
            .as_deref(),
        Ok(""),
        "the scratch database reached the replica"
    );
}

fn db_failover(lab: &Lab) {
    lab.mariadb(
        "root@db1",
        "CREATE TABLE IF NOT EXISTS marg.drill_writes (n BIGINT PRIMARY KEY)",
    )
    .expect("create table");
    wait_until("the table reaches db2", Duration::from_secs(30), || {
        lab.mariadb("root@db2", "SELECT COUNT(*) FROM marg.drill_writes")
            .is_ok()
    });
    let cnf = |h: &str| lab.p(&format!("secrets/app@{h}.cnf"));
    let (c1, c2) = (cnf("db1"), cnf("db2"));
    // A write counts when a server committed it; the app writes wherever it is allowed to.
    let writer = Writer::start(move |n| {
        [&c1, &c2].iter().any(|c| {
            StdCommand::new("mariadb")
                .arg(format!("--defaults-file={}", c.display()))
                .args([
                    "--connect-timeout=2",
                    "-e",
                    &format!("INSERT INTO marg.drill_writes (n) VALUES ({n})"),
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    });
    wait_until(
        "writes acknowledged by db1",
        Duration::from_secs(30),
        || writer.count() >= 20,
    );
    lab.drill("primary-down");
    assert!(http("127.0.10.1", "/health").0 >= 500);
    let at_failover = writer.count();
    // The run acts on the database and application tiers, beyond where its trigger
    // (app.database) fires: until the driver widens a target derived from health, it is named.
    let text = lab.ok(&[
        "run",
        "db-failover",
        "--approve",
        "all",
        "--target",
        "db,app,lb",
    ]);
    assert!(
        text.contains("promote") && text.contains("repoint-app") && text.contains("back to ok"),
        "{}",
        tail(&text)
    );
    assert_eq!(
        lab.mariadb("root@db2", "SELECT @@read_only").as_deref(),
        Ok("0")
    );
    for app in ["app1", "app2"] {
        let env = std::fs::read_to_string(lab.p(&format!("hosts/{app}/app.env"))).expect("env");
        assert!(env.contains("DB_HOST=127.0.10.22"), "{app}: {env}");
    }
    let (code, body) = http("127.0.10.1", "/health");
    assert_eq!(
        code, 200,
        "the application does not reach the new primary: {body}"
    );
    wait_until(
        "writes land on the promoted db2",
        Duration::from_secs(30),
        || writer.count() >= at_failover + 20,
    );
    let acked = writer.finish();
    let stored: BTreeSet<u64> = lab
        .mariadb("root@db2", "SELECT n FROM marg.drill_writes")
        .expect("read back")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
}

/// A promotion cannot be undone by `drill reset`: a fresh lab, then the failover whose remedy
/// cannot work (the promoted server refuses the application's account).
fn db_failover_not_resolved(lab: &Lab) {
    lab.ok(&["lab", "down"]);
    lab.ok(&["lab", "up"]);
    lab.mariadb(
        "root@db2",
        "SET sql_log_bin = 0; ALTER USER 'app'@'%' ACCOUNT LOCK",
    )
    .expect("lock the app account on db2");
    lab.drill("primary-down");
    let (code, text) = lab.run(&[
        "run",
        "db-failover",
        "--approve",
        "all",
        "--target",
        "db,app,lb",
        "--verify-timeout",
        "5s",
    ]);
    assert_eq!(code, 13, "{}", tail(&text));
    assert!(text.contains("app.database critical"), "{}", tail(&text));
}

/// A runbook's headless proof: its name and the test of it.
type Case = (&'static str, fn(&Lab));

/// The canaries (every password the lab generated) appear in no output, journal or export.
fn canaries_absent(lab: &Lab, min_runs: usize) {
    let canaries: Vec<String> = ["mysql", "mysql-app", "mysql-repl", "redis"]
        .iter()
        .map(|s| lab.secret(s))
        .collect();
    let mut haystack = lab.printed.lock().expect("lock").clone();
    let list = lab.ok(&["journal", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&list).expect("journal list JSON");
    let runs = runs.as_array().expect("runs");
    assert!(
        runs.len() >= min_runs,
        "expected every run in the journal: {list}"
    );
    for r in runs {
        let id = r["run"].as_str().expect("run id");
        haystack.push_str(&lab.ok(&["journal", "export", id, "--markdown"]));
        haystack.push_str(&lab.ok(&["journal", "show", id]));
    }
    for e in std::fs::read_dir(&lab.journal)
        .expect("journal dir")
        .flatten()
    {
        haystack.push_str(&String::from_utf8_lossy(
            &std::fs::read(e.path()).unwrap_or_default(),
        ));
    }
    assert!(haystack.contains("FAILED"), "no failing step was exercised");
    for c in &canaries {
        assert!(c.len() >= 16);
        assert!(
            !haystack.contains(c.as_str()),
            "a lab password appears in opsdeck's output or journal"
        );
    }
}

#[test]
fn every_runbook_fixes_its_drill_headless_with_its_defaults() {
    let lock =
        File::create(std::env::temp_dir().join("opsdeck-lab-tests.lock")).expect("test setup");
    let _lock =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("test setup");
    let tmp = tempfile::tempdir().expect("test setup");
    let lab = Lab {
        dir: tmp.path().join("lab"),
        journal: tmp.path().join("journal"),
        printed: Mutex::new(String::new()),
    };
    let _guard = DownOnDrop(&lab.dir);
    lab.ok(&["lab", "up"]);
    drills_are_paired(&lab);
    lab_logs_in_unprivileged(&lab);

    let cases: [Case; 12] = [
        ("db-connection-exhaustion", connection_exhaustion),
        ("redis-connection-failure", redis_connection_failure),
        ("disk-space-critical", disk_space_critical),
        ("redis-sentinel-failover", redis_sentinel_failover),
        ("api-latency-degradation", api_latency),
        ("queue-backlog", queue_backlog),
        ("cache-flush", cache_flush),
        ("blue-green-switch", blue_green),
        ("haproxy-drain-enable", haproxy),
        ("backup-verify", backup_verify),
        ("high-cpu", high_cpu),
        // Last: `drill reset` cannot undo a promotion.
        ("db-failover", db_failover),
    ];
    // OPSDECK_ONLY_CASE=a,b runs only those cases (when chasing one failure).
    let only = std::env::var("OPSDECK_ONLY_CASE").ok();
    for (name, case) in cases {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|o| o == name))
        {
            continue;
        }
        let t = Instant::now();
        case(&lab);
        eprintln!("{name}: {:.0?}", t.elapsed());
    }
    canaries_absent(&lab, if only.is_some() { 1 } else { 20 });
    if only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|o| o == "db-failover-not-resolved"))
    {
        let t = Instant::now();
        db_failover_not_resolved(&lab);
        eprintln!("db-failover, not resolved: {:.0?}", t.elapsed());
    }
}
