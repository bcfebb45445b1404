//! One full host-probe sweep (load, CPU, memory, disk) over N real sshd hosts on loopback
//! (127.0.1.1 ..), opsdeck side by side with its peers in the same run:
//!
//! - opsdeck cold: new `Connections`, one `probes::scheduler::sweep` of every host probe
//!   (connect, authenticate, open the SFTP session, two reads of `/proc/stat` 200 ms apart for
//!   CPU %, memory, load, uptime, statvfs of `/`);
//! - opsdeck warm: the same connections, the probe runners kept as the watch loop keeps them
//!   (CPU % from the previous poll), and a one-shot sweep on the warm connections;
//! - OpenSSH: 100 parallel `ssh host 'cat /proc/...; df -P /'`, cold (default kex and
//!   curve25519) and over `ControlMaster` connections opened beforehand;
//! - parallel-ssh (`-p N`), Ansible ad-hoc `-m raw` and `-m shell` (`-f N`, its default
//!   ControlPersist, cold control directory per run);
//! - the CPU the sshd side spends per sweep (utime+stime of every sshd listener and its
//!   descendants, reaped children included), the CPU this side spends (this process or its
//!   children), and the peak RSS of `opsdeck health --watch` over all hosts.
//!
//! `cargo bench --bench sweep` (release build). Environment: `SWEEP_HOSTS=N` (100),
//! `SWEEP_QUICK=1` (one run per cold row), `SWEEP_WARM_RUNS=N` (20), `SWEEP_ANSIBLE=0` (skip
//! Ansible), `SWEEP_PEERS=0` (opsdeck rows only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Fleet, close_masters, control_path, median, ms, open_masters, opsdeck_binary, raise_open_files,
    ssh_base, ssh_options, start_fleet, wait_all,
};
use nix::sys::resource::{UsageWho, getrusage};
use opsdeck::probes::collect::Runner;
use opsdeck::probes::model::{Outcome, ProbeResult, Sample};
use opsdeck::probes::plan::{self, Intervals, ProbeSpec, What};
use opsdeck::probes::scheduler::{self, SchedulerConfig};
use opsdeck::transport::Connections;

/// What the peers run: the same figures the host probe reads.
const REMOTE_CMD: &str = "cat /proc/loadavg /proc/stat /proc/meminfo /proc/uptime; df -P /";
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

struct Settings {
    hosts: usize,
    cold_runs: usize,
    warm_runs: usize,
    ansible: bool,
    peers: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let flag = |k: &str, d: bool| std::env::var(k).map(|v| v != "0").unwrap_or(d);
        let quick = flag("SWEEP_QUICK", false);
        Settings {
            hosts: num("SWEEP_HOSTS", 100).max(1),
            cold_runs: if quick { 1 } else { 3 },
            warm_runs: num("SWEEP_WARM_RUNS", 20).max(1),
            ansible: flag("SWEEP_ANSIBLE", true),
            peers: flag("SWEEP_PEERS", true),
        }
    }
}

// -------------------------------------------------------------------------------------------
// CPU accounting

/// Clock ticks per second of `/proc/PID/stat` times.
fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

/// CPU (ms) of every sshd of the fleet and every process below them, with reaped children
/// (so commands that ran and exited, and connections that ended, are counted).
fn sshd_cpu_ms(fleet: &Fleet) -> f64 {
    let mut procs: Vec<(u32, u32, u64)> = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After `)`: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        procs.push((pid, n(1) as u32, n(11) + n(12) + n(13) + n(14)));
    }
    let mut set: Vec<u32> = fleet.hosts.iter().map(|h| h.daemon.pid).collect();
    let mut i = 0;
    while i < set.len() {
        let p = set[i];
        for (pid, ppid, _) in &procs {
            if *ppid == p && !set.contains(pid) {
                set.push(*pid);
            }
        }
        i += 1;
    }
    let ticks: u64 = procs
        .iter()
        .filter(|(pid, _, _)| set.contains(pid))
        .map(|(_, _, t)| t)
        .sum();
    ticks as f64 * 1000.0 / clk_tck()
}

/// CPU (ms) of this process and of its reaped children.
fn own_cpu_ms() -> f64 {
    let total = |who| {
        getrusage(who).map_or(0.0, |u| {
            let t = |tv: nix::sys::time::TimeVal| {
                tv.tv_sec() as f64 * 1000.0 + tv.tv_usec() as f64 / 1000.0
            };
            t(u.user_time()) + t(u.system_time())
        })
    };
    total(UsageWho::RUSAGE_SELF) + total(UsageWho::RUSAGE_CHILDREN)
}

struct Row {
    what: String,
    runs: Vec<Duration>,
    client_cpu_ms: f64,
    server_cpu_ms: f64,
}

/// Runs `run` `n` times, timing each; CPU on both sides is averaged per run.
fn measure(fleet: &Fleet, what: &str, n: usize, mut run: impl FnMut() -> Duration) -> Row {
    eprintln!("  {what} ...");
    let (c0, s0) = (own_cpu_ms(), sshd_cpu_ms(fleet));
    let runs: Vec<Duration> = (0..n).map(|_| run()).collect();
    // Let ended connections be reaped so their CPU is counted.
    std::thread::sleep(Duration::from_millis(300));
    let (c1, s1) = (own_cpu_ms(), sshd_cpu_ms(fleet));
    Row {
        what: what.to_owned(),
        runs,
        client_cpu_ms: (c1 - c0) / n as f64,
        server_cpu_ms: (s1 - s0) / n as f64,
    }
}

// -------------------------------------------------------------------------------------------
// opsdeck

fn host_specs(fleet: &Fleet) -> Vec<ProbeSpec> {
    let inv = opsdeck::inventory::load(Some(&fleet.inventory)).unwrap();
    let hosts: Vec<_> = inv.hosts.iter().collect();
    plan::plan(&inv, &hosts, &Intervals::default())
        .into_iter()
        .filter(|s| matches!(s.what, What::Host { .. }))
        .collect()
}

fn check(results: &[ProbeResult], n: usize, cpu: bool) {
    assert_eq!(results.len(), n);
    for r in results {
        match &r.outcome {
            Outcome::Ok(Sample::Host(s)) => {
                assert!(s.mem_total_bytes > 0 && !s.mounts.is_empty());
                assert!(s.mounts.iter().all(|m| m.error.is_none()), "{s:?}");
                if cpu {
                    assert!(s.cpu_percent.is_some(), "no CPU % for {}", r.target.host);
                }
            }
            other => panic!("{}: {other:?}", r.target.host),
        }
    }
}

fn sweep_cfg(n: usize) -> SchedulerConfig {
    SchedulerConfig {
        concurrency: n.max(1),
        timeout: PROBE_TIMEOUT,
        ..SchedulerConfig::default()
    }
}

/// Runs every runner once, all at a time, as the watch loop's per-target tasks do.
async fn poll_all(runners: &mut [Runner]) -> Vec<ProbeResult> {
    futures::future::join_all(runners.iter_mut().map(Runner::run)).await
}

fn opsdeck_rows(fleet: &Fleet, s: &Settings, rows: &mut Vec<Row>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let specs = host_specs(fleet);
    let n = specs.len();
    let cfg = sweep_cfg(n);

    rows.push(measure(
        fleet,
        "opsdeck cold: connect + sweep (SFTP, CPU over 200 ms)",
        s.cold_runs,
        || {
            let conns = Arc::new(Connections::new());
            let t = Instant::now();
            let results = rt.block_on(scheduler::sweep(&conns, &specs, &cfg));
            let took = t.elapsed();
            check(&results, n, true);
            rt.block_on(async { drop(conns) });
            took
        },
    ));

    // Warm: one set of connections; runners kept between polls like the watch loop.
    let conns = Arc::new(Connections::new());
    let mut runners: Vec<Runner> = specs
        .iter()
        .map(|sp| Runner::new(sp.clone(), Arc::clone(&conns), PROBE_TIMEOUT))
        .collect();
    check(&rt.block_on(poll_all(&mut runners)), n, true);
    rows.push(measure(
        fleet,
        "opsdeck warm: poll every host (watch loop)",
        s.warm_runs,
        || {
            let t = Instant::now();
            let results = rt.block_on(poll_all(&mut runners));
            let took = t.elapsed();
            // Back-to-back polls: /proc/stat may not have ticked in between (no CPU % then).
            check(&results, n, false);
            took
        },
    ));
    rows.push(measure(
        fleet,
        "opsdeck one-shot sweep on warm connections (CPU 200 ms)",
        s.cold_runs,
        || {
            let t = Instant::now();
            let results = rt.block_on(scheduler::sweep(&conns, &specs, &cfg));
            let took = t.elapsed();
            check(&results, n, true);
            took
        },
    ));
    drop(runners);
    rt.block_on(async { drop(conns) });
}

/// Peak RSS (kB) of `opsdeck health --watch` over the fleet, from `/usr/bin/time -v`.
fn opsdeck_watch_rss(fleet: &Fleet, n: usize) -> Option<u64> {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(opsdeck_binary())
        .arg("-i")
        .arg(&fleet.inventory)
        .args([
            "health",
            "--watch",
            "--json",
            "--interval",
            "1s",
            "--count",
            "10",
            "--timeout",
            "10s",
        ])
        .env("OPSDECK_LOG_DIR", fleet.dir.path().join("logs"))
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let doc: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    let ok = doc["checks"].as_array().map_or(0, |c| {
        c.iter()
            .filter(|c| c["id"] == "host.reachable" && c["state"] == "ok")
            .count()
    });
    assert_eq!(
        ok,
        n,
        "opsdeck health --watch: {} lines, last line:\n{last}\n{stderr}",
        stdout.lines().count()
    );
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
}

// -------------------------------------------------------------------------------------------
// Peers

fn check_outputs(outs: &[String], what: &str) {
    for o in outs {
        assert!(o.contains("MemTotal") && o.contains("cpu "), "{what}: {o}");
    }
}

fn openssh_cold(fleet: &Fleet, extra: &[&str]) -> Duration {
    let t = Instant::now();
    let children: Vec<Child> = fleet
        .hosts
        .iter()
        .map(|h| {
            ssh_base(fleet, h)
                .args(extra)
                .arg(REMOTE_CMD)
                .spawn()
                .unwrap()
        })
        .collect();
    let outs = wait_all(children, "ssh");
    let took = t.elapsed();
    check_outputs(&outs, "ssh");
    took
}

fn openssh_master(fleet: &Fleet) -> Duration {
    let t = Instant::now();
    let children: Vec<Child> = fleet
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            ssh_base(fleet, h)
                .args(["-o", "ControlMaster=no", "-S"])
                .arg(control_path(fleet, i))
                .arg(REMOTE_CMD)
                .spawn()
                .unwrap()
        })
        .collect();
    let outs = wait_all(children, "ssh via master");
    let took = t.elapsed();
    check_outputs(&outs, "ssh via master");
    took
}

fn parallel_ssh(fleet: &Fleet, hosts_file: &Path) -> Duration {
    let n = fleet.hosts.len().to_string();
    let t = Instant::now();
    let out = Command::new("parallel-ssh")
        .arg("-h")
        .arg(hosts_file)
        .args(["-p", &n, "-t", "120", "-x"])
        .arg(ssh_options(fleet).join(" "))
        .arg("-i")
        .arg(REMOTE_CMD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "parallel-ssh failed: {}\n{}",
        stdout
            .lines()
            .filter(|l| l.contains("FAILURE"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("MemTotal").count(), fleet.hosts.len());
    took
}

fn ansible(fleet: &Fleet, inventory: &Path, module: &str, run: usize) -> Duration {
    let control = fleet.dir.path().join(format!("ansible-cp-{module}-{run}"));
    std::fs::create_dir_all(&control).unwrap();
    let cfg = fleet.dir.path().join("ansible.cfg");
    std::fs::write(&cfg, "[defaults]\n").unwrap();
    let n = fleet.hosts.len().to_string();
    let t = Instant::now();
    let out = Command::new("ansible")
        .args(["all", "-i"])
        .arg(inventory)
        .args(["-f", &n, "-m", module, "-a", REMOTE_CMD])
        .env("ANSIBLE_CONFIG", &cfg)
        // The inventory's ssh args name our known_hosts and demand a match.
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &control)
        .env("ANSIBLE_LOCAL_TEMP", fleet.dir.path().join("ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "False")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ansible -m {module} failed: {}\n{}",
        stdout
            .lines()
            .filter(|l| l.contains("UNREACHABLE") || l.contains("FAILED"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("MemTotal").count(), fleet.hosts.len());
    // Ansible's ControlPersist masters outlive the run: end them so the next row starts cold.
    for e in std::fs::read_dir(&control).unwrap().flatten() {
        let _ = Command::new("ssh")
            .args(["-F", "/dev/null", "-S"])
            .arg(e.path())
            .args(["-O", "exit", "x"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    took
}

fn peer_rows(fleet: &Fleet, s: &Settings, rows: &mut Vec<Row>) {
    rows.push(measure(
        fleet,
        "OpenSSH: parallel ssh, cold (default kex)",
        s.cold_runs,
        || openssh_cold(fleet, &[]),
    ));
    rows.push(measure(
        fleet,
        "OpenSSH: parallel ssh, cold, KexAlgorithms=curve25519",
        s.cold_runs,
        || openssh_cold(fleet, &["-o", "KexAlgorithms=curve25519-sha256"]),
    ));
    open_masters(fleet);
    rows.push(measure(
        fleet,
        "OpenSSH: parallel ssh over ControlMaster (warm)",
        s.warm_runs.min(10),
        || openssh_master(fleet),
    ));
    close_masters(fleet);

    let hosts_file = fleet.dir.path().join("pssh-hosts");
    let mut text = String::new();
    for h in &fleet.hosts {
        let _ = writeln!(text, "root@{}:{}", h.addr, h.port);
    }
    std::fs::write(&hosts_file, text).unwrap();
    rows.push(measure(
        fleet,
        "parallel-ssh -p N, cold",
        s.cold_runs,
        || parallel_ssh(fleet, &hosts_file),
    ));

    if s.ansible {
        let inv = fleet.dir.path().join("ansible-hosts.ini");
        let mut text = String::from("[fleet]\n");
        for (i, h) in fleet.hosts.iter().enumerate() {
            let _ = writeln!(
                text,
                "host{:03} ansible_host={} ansible_port={}",
                i + 1,
                h.addr,
                h.port
            );
        }
        let _ = write!(
            text,
            "\n[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n\
             ansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes \
             -o IdentitiesOnly=yes'\n",
            fleet.key.display(),
            fleet.known_hosts.display()
        );
        std::fs::write(&inv, text).unwrap();
        for module in ["raw", "shell"] {
            let mut run = 0;
            rows.push(measure(
                fleet,
                &format!("Ansible ad-hoc -m {module} -f N, cold"),
                1,
                || {
                    run += 1;
                    ansible(fleet, &inv, module, run)
                },
            ));
        }
    }
}

// -------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this too: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sweep: run with `cargo bench --bench sweep`");
        return;
    }
    let s = Settings::from_env();
    let n = s.hosts;
    raise_open_files(16384);
    let t = Instant::now();
    let fleet = start_fleet(n, "host");
    eprintln!("started {n} sshd in {} ms", ms(t.elapsed()));

    let mut rows = Vec::new();
    opsdeck_rows(&fleet, &s, &mut rows);
    eprintln!("  opsdeck health --watch (RSS) ...");
    let rss_kb = opsdeck_watch_rss(&fleet, n);
    if s.peers {
        peer_rows(&fleet, &s, &mut rows);
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nOne host-probe sweep (load, CPU, memory, disk /) over {n} sshd hosts on loopback, \
         {} CPUs\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let _ = writeln!(
        out,
        "| {:<56} | {:>10} | {:>10} | {:>4} | {:>14} | {:>14} |",
        "method", "median ms", "min ms", "runs", "client CPU ms", "sshd CPU ms"
    );
    let _ = writeln!(
        out,
        "|{:-<58}|{:->12}|{:->12}|{:->6}|{:->16}|{:->16}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        let min = r.runs.iter().min().copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {:<56} | {:>10} | {:>10} | {:>4} | {:>14.1} | {:>14.1} |",
            r.what,
            ms(median(&r.runs)),
            ms(min),
            r.runs.len(),
            r.client_cpu_ms,
            r.server_cpu_ms
        );
    }
    let _ = writeln!(
        out,
        "\nCPU columns are per sweep: client = this process and its reaped children (ssh, \
         parallel-ssh, ansible; not the detached ControlMaster processes); sshd = every sshd \
         of the fleet and its descendants."
    );
    match rss_kb {
        Some(kb) => {
            let _ = writeln!(
                out,
                "opsdeck health --watch --interval 1s --count 10 over {n} hosts: max RSS {:.1} MB",
                kb as f64 / 1024.0
            );
        }
        None => {
            let _ = writeln!(out, "opsdeck health --watch: max RSS not measured");
        }
    }
    let find = |p: &str| rows.iter().find(|r| r.what.starts_with(p));
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some(cold) = find("opsdeck cold") {
        let m = median(&cold.runs);
        let _ = writeln!(
            out,
            "target cold sweep <= 2500 ms: {} ({} ms)",
            verdict(m <= Duration::from_millis(2500)),
            ms(m)
        );
    }
    if let Some(warm) = find("opsdeck warm") {
        let m = median(&warm.runs);
        let _ = writeln!(
            out,
            "target warm sweep <= 100 ms: {} ({} ms; sshd CPU {:.1} ms per sweep)",
            verdict(m <= Duration::from_millis(100)),
            ms(m),
            warm.server_cpu_ms
        );
    }
    if let Some(kb) = rss_kb {
        let _ = writeln!(
            out,
            "target RSS <= 60 MB: {} ({:.1} MB)",
            verdict(kb <= 60 * 1024),
            kb as f64 / 1024.0
        );
    }
    println!("{out}");
    drop(fleet);
}
