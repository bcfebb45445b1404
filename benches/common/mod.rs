//! Shared by the benchmarks: a fleet of real sshd on loopback (127.0.1.1, 127.0.1.2, ...), one
//! client key, a `known_hosts` that trusts them, an opsdeck inventory naming them, and helpers
//! to run OpenSSH against them. Every sshd, and every connection it serves, is stopped when
//! the [`Fleet`] is dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use opsdeck::lab::process::free_port;
use opsdeck::lab::sshd::{self, Sshd, SshdOptions};

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub inventory: PathBuf,
    pub hosts: Vec<Sshd>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // `crash` also kills the per-connection processes (ControlPersist masters' peers).
        for h in &mut self.hosts {
            h.crash();
        }
    }
}

/// The address of host `i` (1-based): 127.0.1.1 .. 127.0.1.250, then 127.0.2.x.
pub fn host_addr(i: usize) -> IpAddr {
    format!("127.0.{}.{}", 1 + (i - 1) / 250, 1 + (i - 1) % 250)
        .parse()
        .unwrap()
}

/// Starts `n` sshd (named `{prefix}001`, ...) and writes the key, `known_hosts` and inventory.
pub fn start_fleet(n: usize, prefix: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let public = sshd::generate_client_key(&key).unwrap();
    let authorized_keys = dir.path().join("authorized_keys");
    std::fs::write(&authorized_keys, format!("{public}\n")).unwrap();

    // Start in parallel: sshd start is mostly waiting (key generation, exec, bind).
    let opts: Vec<SshdOptions> = (1..=n)
        .map(|i| {
            let addr = host_addr(i);
            SshdOptions {
                dir: dir.path().join("sshd"),
                name: format!("{prefix}{i:03}"),
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
    let mut inv = format!("name = \"{prefix} bench\"\n\n[tiers.{prefix}]\n");
    for (i, h) in hosts.iter().enumerate() {
        let _ = writeln!(kh, "{}", h.known_hosts_line());
        let _ = write!(
            inv,
            "\n[hosts.{prefix}{:03}]\ntier = \"{prefix}\"\nssh = {{ host = \"{}\", port = {}, \
             user = \"root\", identity_files = [{}], known_hosts = {}, agent = false }}\n",
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

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub fn opsdeck_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_opsdeck"))
}

/// The OpenSSH options every peer uses: our key and `known_hosts`, strict, no config file.
pub fn ssh_options(fleet: &Fleet) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        fleet.key.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", fleet.known_hosts.display()),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
    ]
}

/// `ssh [options] -p PORT root@ADDR` (command still to add); stdout piped, stderr piped.
pub fn ssh_base(fleet: &Fleet, h: &Sshd) -> Command {
    let mut c = Command::new("ssh");
    c.args(ssh_options(fleet))
        .arg("-p")
        .arg(h.port.to_string())
        .arg(format!("root@{}", h.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn control_path(fleet: &Fleet, i: usize) -> PathBuf {
    fleet.dir.path().join(format!("cm-{i}"))
}

/// Waits for every child; panics with its stderr if one failed. Returns their stdout.
pub fn wait_all(children: Vec<Child>, what: &str) -> Vec<String> {
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// Opens a `ControlMaster` connection per host (kept 120 s or until [`close_masters`]).
pub fn open_masters(fleet: &Fleet) {
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
                // `-f` forks a master that keeps the pipes open: don't wait for them.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut m in masters {
        assert!(m.wait().unwrap().success(), "ssh master failed to start");
    }
}

pub fn close_masters(fleet: &Fleet) {
    for (i, h) in fleet.hosts.iter().enumerate() {
        let _ = ssh_base(fleet, h)
            .arg("-S")
            .arg(control_path(fleet, i))
            .args(["-O", "exit"])
            .output();
    }
}

pub fn raise_open_files(want: u64) {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < want
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
    }
}
