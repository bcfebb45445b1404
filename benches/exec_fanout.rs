//! Fan-out of one command to 100 real sshd hosts on loopback (127.0.1.1 .. 127.0.1.100):
//! opsdeck cold (the release binary) and warm (in-process, connections reused) against
//! OpenSSH in a parallel loop, cold and with `ControlMaster` connections already open.
//!
//! `cargo bench --bench exec_fanout` (HOSTS=N to change the fleet size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use opsdeck::lab::process::free_port;
use opsdeck::lab::sshd::{self, Sshd, SshdOptions};
use opsdeck::transport::Connections;

const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 5;

struct Fleet {
    dir: tempfile::TempDir,
    key: PathBuf,
    known_hosts: PathBuf,
    inventory: PathBuf,
    hosts: Vec<Sshd>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.daemon.stop(Duration::from_secs(2));
        }
    }
}

fn start_fleet(n: usize) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let public = sshd::generate_client_key(&key).unwrap();
    let authorized_keys = dir.path().join("authorized_keys");
    std::fs::write(&authorized_keys, format!("{public}\n")).unwrap();

    // Start in parallel: sshd start is mostly waiting (key generation, exec, bind).
    let opts: Vec<SshdOptions> = (1..=n)
        .map(|i| {
            let addr: IpAddr = format!("127.0.{}.{}", 1 + (i - 1) / 250, 1 + (i - 1) % 250)
                .parse()
                .unwrap();
            SshdOptions {
                dir: dir.path().join("sshd"),
                name: format!("web{i:03}"),
                addr,
                port: free_port(addr).unwrap(),
                authorized_keys: authorized_keys.clone(),
                max_sessions: None,
            }
        })
        .collect();
    let mut hosts: Vec<Sshd> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = opts
            .chunks(10)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|o| sshd::start(o).expect("sshd starts"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            hosts.extend(h.join().expect("starter thread"));
        }
    });

    let known_hosts = dir.path().join("known_hosts");
    let mut kh = String::new();
    let mut inv = String::from("name = \"fanout bench\"\n\n[tiers.web]\n");
    for (i, h) in hosts.iter().enumerate() {
        let _ = writeln!(kh, "{}", h.known_hosts_line());
        let _ = write!(
            inv,
            "\n[hosts.web{:03}]\ntier = \"web\"\nssh = {{ host = \"{}\", port = {}, user = \"root\", \
             identity_files = [{}], known_hosts = {}, agent = false }}\n",
            i + 1,
            h.addr,
            h.port,
            toml::Value::String(key.display().to_string()),
            toml::Value::String(known_hosts.display().to_string()),
        );
    }
    std::fs::write(&known_hosts, kh).unwrap();
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, inv).unwrap();
    Fleet {
        dir,
        key,
        known_hosts,
        inventory,
        hosts,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn opsdeck_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opsdeck"))
}

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

fn ssh_base(fleet: &Fleet, h: &Sshd) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(&fleet.key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.known_hosts.display()
        ))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
        ])
        .arg(h.port.to_string())
        .arg(format!("root@{}", h.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn control_path(fleet: &Fleet, i: usize) -> PathBuf {
    fleet.dir.path().join(format!("cm-{i}"))
}

fn wait_all(children: Vec<Child>, what: &str) {
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
    let masters: Vec<Child> = fleet
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            ssh_base(fleet, h)
                .args([
                    "-o",
                    "ControlMaster=yes",
                    "-o",
                    "ControlPersist=120",
                    "-f",
                    "-N",
                ])
                .arg("-S")
                .arg(control_path(fleet, i))
                .spawn()
                .unwrap()
        })
        .collect();
    wait_all(masters, "ssh master");
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
    for (i, h) in fleet.hosts.iter().enumerate() {
        let _ = ssh_base(fleet, h)
            .arg("-S")
            .arg(control_path(fleet, i))
            .args(["-O", "exit"])
            .output();
    }
    runs
}

fn raise_open_files(want: u64) {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < want
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn row(out: &mut String, what: &str, runs: &[Duration]) {
    let min = runs.iter().min().copied().unwrap_or_default();
    let _ = writeln!(
        out,
        "| {what:<52} | {:>9} | {:>9} | {:>4} |",
        ms(median(runs.to_vec())),
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
    let fleet = start_fleet(n);
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
