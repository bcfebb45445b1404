//! The host probe over SFTP against real sshd on loopback: the figures match what `cat` and
//! `df` say on the (same) machine, polls reuse one `sftp` subsystem session instead of
//! starting a command each time, the reader comes back after sshd restarts, and a host
//! without an sftp subsystem is still read (with one command per poll).

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use opsdeck::inventory::Host;
use opsdeck::probes::collect::sftp;
use opsdeck::probes::model::{HostSample, Outcome, Sample};
use opsdeck::probes::plan::{self, Intervals, ProbeSpec, What};
use opsdeck::probes::scheduler::{self, SchedulerConfig};
use opsdeck::transport::ssh::SshHost;
use opsdeck::transport::{Connections, HostConn};
use support::sshd::SshHosts;

const SFTP_SESSION: &str = "Starting session: subsystem 'sftp'";
const COMMAND_SESSION: &str = "Starting session: command";

struct Probe {
    conns: Arc<Connections>,
    specs: Vec<ProbeSpec>,
    host: Arc<Host>,
}

impl Probe {
    fn new(lab: &SshHosts) -> Probe {
        Probe::with_inventory(&lab.inventory())
    }

    fn with_inventory(path: &std::path::Path) -> Probe {
        let inv = opsdeck::inventory::load(Some(path)).expect("inventory");
        let hosts: Vec<_> = inv.hosts.iter().collect();
        let specs: Vec<ProbeSpec> = plan::plan(&inv, &hosts, &Intervals::default())
            .into_iter()
            .filter(|s| matches!(s.what, What::Host { .. }))
            .collect();
        assert_eq!(specs.len(), 1, "one host probe");
        let host = specs[0].host.clone();
        Probe {
            conns: Arc::new(Connections::new()),
            specs,
            host,
        }
    }

    /// One sweep (new probe runners, the same connections), as `opsdeck health` runs it.
    async fn sweep(&self) -> Result<HostSample, String> {
        let cfg = SchedulerConfig {
            timeout: Duration::from_secs(10),
            ..SchedulerConfig::default()
        };
        let mut results = scheduler::sweep(&self.conns, &self.specs, &cfg).await;
        match results.pop().map(|r| r.outcome) {
            Some(Outcome::Ok(Sample::Host(s))) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    }

    fn ssh(&self) -> Arc<SshHost> {
        match &*self.conns.host(&self.host) {
            HostConn::Ssh(s) => s.clone(),
            _ => panic!("an ssh host"),
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(out.status.success(), "{cmd}: {out:?}");
    String::from_utf8(out.stdout).expect("utf8")
}

fn mem_total_kib() -> u64 {
    sh("awk '/^MemTotal:/ {print $2}' /proc/meminfo")
        .trim()
        .parse()
        .expect("MemTotal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_figures_match_cat_and_df_with_one_session_for_all_polls() {
    let lab = SshHosts::start(1);
    let probe = Probe::new(&lab);

    // A single sweep measures CPU too (two reads of /proc/stat).
    let first = probe.sweep().await.expect("first sweep");
    let cpu = first.cpu_percent.expect("CPU % from one sweep");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");

    // The sshd hosts run on this machine: compare with what `cat` and `df` say here.
    let loadavg = sh("cat /proc/loadavg");
    let load1: f64 = loadavg
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("load1");
    let s = probe.sweep().await.expect("second sweep");
    assert!(
        (s.load1 - load1).abs() <= 1.0 + load1 * 0.25,
        "load1 over sftp {} vs cat /proc/loadavg {loadavg}",
        s.load1
    );
    assert_eq!(s.mem_total_bytes, mem_total_kib() * 1024);
    assert!((0.0..=100.0).contains(&s.mem_used_percent));
    let uptime: f64 = sh("cut -d' ' -f1 /proc/uptime")
        .trim()
        .parse()
        .expect("uptime");
    assert!(
        (s.uptime_s - uptime).abs() < 30.0,
        "{} vs {uptime}",
        s.uptime_s
    );
    assert!(s.cpus >= 1);

    // `df -P /`: 1024-blocks, used, available, capacity.
    let df = sh("df -P / | tail -n1");
    let f: Vec<&str> = df.split_whitespace().collect();
    let size_kib: u64 = f[1].parse().expect("size");
    let avail_kib: u64 = f[3].parse().expect("avail");
    let capacity: f64 = f[4].trim_end_matches('%').parse().expect("capacity");
    let root = s
        .mounts
        .iter()
        .find(|m| m.path == "/")
        .expect("/ is watched");
    assert!(root.error.is_none(), "{root:?}");
    assert_eq!(root.size_bytes / 1024, size_kib, "{root:?} vs df {df}");
    // Other helpers write to this disk meanwhile: allow a little drift.
    let drift = (root.avail_bytes / 1024).abs_diff(avail_kib);
    assert!(drift < 512 * 1024, "{root:?} vs df {df}");
    assert!(
        (root.used_percent - capacity).abs() <= 2.0,
        "{} vs df {capacity}% ({df})",
        root.used_percent
    );

    // More polls: still the one sftp session; no command ever started.
    for _ in 0..5 {
        probe.sweep().await.expect("poll");
    }
    assert!(sftp::state_of(&probe.ssh()).is_open().await);
    assert!(sftp::state_of(&probe.ssh()).fallback().is_none());
    let log = lab.log(0);
    assert_eq!(log.matches(SFTP_SESSION).count(), 1, "sshd log:\n{log}");
    assert_eq!(log.matches(COMMAND_SESSION).count(), 0, "sshd log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_reader_comes_back_after_sshd_restarts() {
    let mut lab = SshHosts::start(1);
    let probe = Probe::new(&lab);
    probe.sweep().await.expect("before the restart");
    let before = lab.log(0).matches(SFTP_SESSION).count();
    assert_eq!(before, 1);

    // sshd goes down with every connection, then comes back: the next poll opens a new
    // connection and session.
    lab.crash(0);
    lab.restart(0);
    let s = probe.sweep().await.expect("after the crash and restart");
    assert_eq!(s.mem_total_bytes, mem_total_kib() * 1024);
    assert!(sftp::state_of(&probe.ssh()).is_open().await);
    assert_eq!(lab.log(0).matches(SFTP_SESSION).count(), 2);

    // Restarting only the listener leaves established connections (and their sessions)
    // running, as on a real server: the session carries on.
    lab.restart(0);
    probe
        .sweep()
        .await
        .expect("after a restart of the listener");
    let log = lab.log(0);
    assert_eq!(log.matches(SFTP_SESSION).count(), 2, "sshd log:\n{log}");
    assert_eq!(log.matches(COMMAND_SESSION).count(), 0, "sshd log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_without_sftp_subsystem_is_read_with_a_command() {
    let mut lab = SshHosts::start(1);
    // Start h1 again from its own config without the `Subsystem sftp` line.
    lab.stop(0);
    let opts = &lab.options[0];
    let config = opts.dir.join(format!("{}_sshd_config", opts.name));
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(text.contains("Subsystem sftp"));
    let text: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("Subsystem"))
        .collect();
    let text = text.join("\n") + "\n";
    std::fs::write(&config, text).expect("config");
    let sshd = opsdeck::lab::process::find_program("sshd").expect("sshd");
    let mut cmd = Command::new(sshd);
    cmd.arg("-D").arg("-e").arg("-f").arg(&config);
    lab.hosts[0].daemon =
        opsdeck::lab::process::Daemon::spawn(&opts.name, &mut cmd, &opts.dir).expect("sshd");
    opsdeck::lab::process::wait_for_tcp(lab.hosts[0].socket_addr(), Duration::from_secs(10))
        .expect("sshd listens");

    let probe = Probe::new(&lab);
    let s = probe.sweep().await.expect("read with exec");
    assert!(s.cpu_percent.is_some());
    assert_eq!(s.mem_total_bytes, mem_total_kib() * 1024);
    let reason = sftp::state_of(&probe.ssh())
        .fallback()
        .expect("the fallback is recorded");
    assert!(reason.contains("no sftp subsystem"), "{reason}");
    probe.sweep().await.expect("second read with exec");
    let log = lab.log(0);
    assert_eq!(log.matches(COMMAND_SESSION).count(), 2, "sshd log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_one_keeps_the_only_slot_free_for_commands() {
    let lab = SshHosts::start(1);
    let inv = lab.write_inventory(
        "one-session.toml",
        &[("h1".to_owned(), lab.ssh_table(0, ", max_sessions = 1"))],
    );
    let probe = Probe::with_inventory(&inv);
    probe.sweep().await.expect("read with exec");
    let reason = sftp::state_of(&probe.ssh())
        .fallback()
        .expect("the fallback is recorded");
    assert!(reason.contains("max_sessions = 1"), "{reason}");
    // The slot is free: a command runs.
    let out = opsdeck::transport::run(
        probe.ssh().as_ref(),
        "echo free",
        Duration::from_secs(10),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("command runs");
    assert_eq!(out.stdout.trim(), "free");
    let log = lab.log(0);
    assert_eq!(log.matches(SFTP_SESSION).count(), 0, "sshd log:\n{log}");
}
