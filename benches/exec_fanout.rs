//! Fan-out of one command to 100 real sshd hosts on loopback (127.0.1.1 .. 127.0.1.100):
//! opsdeck cold (the release binary) and warm (in-process, connections reused) against
//! OpenSSH in a parallel loop, cold and with `ControlMaster` connections already open.
//!
//! `cargo bench --bench exec_fanout` (HOSTS=N to change the fleet size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Fleet, close_masters, control_path, median, ms, open_masters, opsdeck_binary, raise_open_files,
    ssh_base, start_fleet, wait_all,
};
use opsdeck::transport::Connections;

const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 5;

/// (1) `opsdeck exec all -- true`, a fresh process each time.
fn opsdeck_cold(fleet: &Fleet) -> Vec<Duration> {
    (0..COLD_RUNS)
        .map(|_| {
            let t = Instant::now();
            let out = Command::new(opsdeck_binary())
                .arg("-i")
                .arg(&fleet.inventory)
                .args(["exec", "all", "--json", "--", "true"])
                .output()
                .unwrap();
            let took = t.elapsed();
            assert!(
                out.status.success(),
                "opsdeck exec failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect()
}

/// (2) In-process: one `Connections`, connected by a first run, then timed warm runs.
fn opsdeck_warm(fleet: &Fleet) -> (Duration, Vec<Duration>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inv = opsdeck::inventory::load(Some(&fleet.inventory)).unwrap();
    let hosts = inv.select(&"all".parse().unwrap()).unwrap();
    let conns = Arc::new(Connections::new());
    let run = || {
        let t = Instant::now();
        let results = rt.block_on(opsdeck::headless::exec::exec_all(
            &conns,
            &hosts,
            "true",
            Duration::from_secs(60),
        ));
        let took = t.elapsed();
        let failed: Vec<_> = results.iter().filter(|r| !r.ok()).collect();
        assert!(failed.is_empty(), "failed: {failed:?}");
        took
    };
    let first = run();
    let warm = (0..WARM_RUNS).map(|_| run()).collect();
    (first, warm)
}

/// (3) 100 `ssh ... true` processes at once, each with its own connection.
fn openssh_cold(fleet: &Fleet) -> Vec<Duration> {
    (0..COLD_RUNS)
        .map(|_| {
            let t = Instant::now();
            let children: Vec<Child> = fleet
                .hosts
                .iter()
                .map(|h| ssh_base(fleet, h).arg("true").spawn().unwrap())
                .collect();
            wait_all(children, "ssh");
            t.elapsed()
        })
        .collect()
}

/// (4) `ControlMaster` connections opened first; then 100 `ssh ... true` over them.
fn openssh_control_master(fleet: &Fleet) -> Vec<Duration> {
    open_masters(fleet);
    let runs = (0..WARM_RUNS)
        .map(|_| {
            let t = Instant::now();
            let children: Vec<Child> = fleet
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    ssh_base(fleet, h)
                        .args(["-o", "ControlMaster=no", "-S"])
                        .arg(control_path(fleet, i))
                        .arg("true")
                        .spawn()
                        .unwrap()
                })
                .collect();
            wait_all(children, "ssh via master");
            t.elapsed()
        })
        .collect();
    close_masters(fleet);
    runs
}

fn row(out: &mut String, what: &str, runs: &[Duration]) {
    let min = runs.iter().min().copied().unwrap_or_default();
    let _ = writeln!(
        out,
        "| {what:<52} | {:>9} | {:>9} | {:>4} |",
        ms(median(runs)),
        ms(min),
        runs.len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would run this too: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("exec_fanout: run with `cargo bench --bench exec_fanout`");
        return;
    }
    let n: usize = std::env::var("HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    raise_open_files(8192);
    let t = Instant::now();
    let fleet = start_fleet(n, "web");
    println!("started {n} sshd in {} ms", ms(t.elapsed()));

    let cold = opsdeck_cold(&fleet);
    let (first, warm) = opsdeck_warm(&fleet);
    let ssh_cold = openssh_cold(&fleet);
    let ssh_cm = openssh_control_master(&fleet);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nexec `true` on {n} sshd hosts on loopback (wall time, ms)\n"
    );
    let _ = writeln!(
        out,
        "| {:<52} | {:>9} | {:>9} | {:>4} |",
        "method", "median", "min", "runs"
    );
    let _ = writeln!(out, "|{:-<54}|{:-<11}|{:-<11}|{:-<6}|", "", "", "", "");
    row(
        &mut out,
        "opsdeck exec all (new process, cold connections)",
        &cold,
    );
    row(
        &mut out,
        "opsdeck in-process, first run (connects)",
        &[first],
    );
    row(
        &mut out,
        "opsdeck in-process, warm (connections reused)",
        &warm,
    );
    row(
        &mut out,
        "OpenSSH: parallel `ssh host true`, cold",
        &ssh_cold,
    );
    row(
        &mut out,
        "OpenSSH: parallel `ssh host true`, ControlMaster warm",
        &ssh_cm,
    );
    println!("{out}");
    drop(fleet);
}
