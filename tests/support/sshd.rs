//! Real sshd hosts on loopback for the tests: one sshd per address (127.0.0.2, 127.0.0.3,
//! ...), one client key, a `known_hosts` that trusts them, and an inventory file naming them.
//! Every sshd is stopped when the `SshHosts` is dropped.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opsdeck::inventory::{HostKeyPolicy, SshSpec};
use opsdeck::lab::process::{Daemon, free_port};
use opsdeck::lab::sshd::{self, Sshd, SshdOptions};

pub struct SshHosts {
    pub dir: tempfile::TempDir,
    /// Private key of the client (`key.pub` next to it).
    pub key: PathBuf,
    pub authorized_keys: PathBuf,
    /// Trusts every host started (one line per host, in order).
    pub known_hosts: PathBuf,
    pub hosts: Vec<Sshd>,
    pub options: Vec<SshdOptions>,
}

impl SshHosts {
    /// `n` hosts named h1..hN on 127.0.0.2, 127.0.0.3, ... with free ports.
    pub fn start(n: usize) -> SshHosts {
        Self::start_with(n, None)
    }

    pub fn start_with(n: usize, max_sessions: Option<u32>) -> SshHosts {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("id_ed25519");
        let public = sshd::generate_client_key(&key).expect("client key");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, format!("{public}\n")).expect("authorized_keys");
        let known_hosts = dir.path().join("known_hosts");
        let mut lab = SshHosts {
            dir,
            key,
            authorized_keys,
            known_hosts,
            hosts: Vec::new(),
            options: Vec::new(),
        };
        let mut trusted = String::new();
        for i in 0..n {
            let addr: IpAddr = format!("127.0.0.{}", i + 2).parse().expect("ip");
            let opts = SshdOptions {
                dir: lab.dir.path().join("sshd"),
                name: format!("h{}", i + 1),
                addr,
                port: free_port(addr).expect("free port"),
                authorized_keys: lab.authorized_keys.clone(),
                max_sessions,
            };
            let s = sshd::start(&opts).expect("sshd starts");
            let _ = writeln!(trusted, "{}", s.known_hosts_line());
            lab.hosts.push(s);
            lab.options.push(opts);
        }
        std::fs::write(&lab.known_hosts, trusted).expect("known_hosts");
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Host `i` (0-based) as the library sees it, trusted through `known_hosts`.
    pub fn spec(&self, i: usize) -> SshSpec {
        SshSpec {
            identity_files: vec![self.key.clone()],
            known_hosts: self.known_hosts.clone(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            max_sessions: 10,
            ..SshSpec::new(self.hosts[i].addr.to_string(), self.hosts[i].port, "root")
        }
    }

    /// The inline `ssh = { ... }` table for host `i`; `extra` is appended inside the braces
    /// (e.g. `, host_key_policy = "accept-new"`).
    pub fn ssh_table(&self, i: usize, extra: &str) -> String {
        ssh_table(
            &self.hosts[i].addr.to_string(),
            self.hosts[i].port,
            &self.key,
            &self.known_hosts,
            extra,
        )
    }

    /// Writes an inventory with every host (h1..hN, tier `app`) and returns its path.
    pub fn inventory(&self) -> PathBuf {
        let hosts: Vec<(String, String)> = (0..self.hosts.len())
            .map(|i| (format!("h{}", i + 1), self.ssh_table(i, "")))
            .collect();
        self.write_inventory("inventory.toml", &hosts)
    }

    /// Writes an inventory of `(name, ssh table)` hosts in tier `app`.
    pub fn write_inventory(&self, file: &str, hosts: &[(String, String)]) -> PathBuf {
        let mut text = String::from("name = \"ssh test\"\n\n[tiers.app]\n");
        for (name, table) in hosts {
            let _ = write!(text, "\n[hosts.{name}]\ntier = \"app\"\nssh = {table}\n");
        }
        let path = self.path(file);
        std::fs::write(&path, text).expect("inventory");
        path
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.hosts[i].daemon.log).unwrap_or_default()
    }

    /// How many logins host `i`'s sshd accepted (one per SSH connection).
    pub fn logins(&self, i: usize) -> usize {
        self.log(i).matches("Accepted publickey").count()
    }

    /// Stops host `i`'s sshd (the whole process group, with its connections).
    pub fn stop(&mut self, i: usize) {
        self.hosts[i].daemon.stop(Duration::from_secs(2));
    }

    /// Kills host `i`'s sshd and every connection it serves (the host going down).
    pub fn crash(&mut self, i: usize) {
        self.hosts[i].crash();
    }

    /// Starts host `i`'s sshd again: same address, port and host key.
    pub fn restart(&mut self, i: usize) {
        self.hosts[i].daemon.stop(Duration::from_secs(2));
        self.hosts[i] = sshd::start(&self.options[i]).expect("sshd restarts");
    }

    /// Restarts host `i`'s sshd with its `HostKey` line replaced by `host_config` (e.g.
    /// `HostKey /path/rsa_key` alone, or with `HostCertificate /path/key-cert.pub`). Same
    /// address and port; everything else as `opsdeck::lab::sshd` configures it. The log
    /// starts empty.
    pub fn reconfigure(&mut self, i: usize, host_config: &[String]) {
        self.reconfigure_with(i, &["HostKey ", "HostCertificate "], host_config);
    }

    /// Restarts host `i`'s sshd with the lines of its configuration that start with one of
    /// `drop` removed and `extra` appended (e.g. drop `AuthorizedKeysFile ` and add
    /// `TrustedUserCAKeys /path/ca.pub`: certificates only). Same address, port and host key;
    /// the log starts empty.
    pub fn reconfigure_with(&mut self, i: usize, drop: &[&str], extra: &[String]) {
        self.hosts[i].daemon.stop(Duration::from_secs(2));
        let dir = self.dir.path().join("sshd");
        let name = &self.options[i].name;
        let config_path = dir.join(format!("{name}_sshd_config"));
        let old = std::fs::read_to_string(&config_path).expect("sshd config");
        let mut text = String::new();
        for l in old
            .lines()
            .filter(|l| !drop.iter().any(|d| l.starts_with(d)))
        {
            let _ = writeln!(text, "{l}");
        }
        for l in extra {
            let _ = writeln!(text, "{l}");
        }
        let config_path = dir.join(format!("{name}_custom_sshd_config"));
        std::fs::write(&config_path, text).expect("write sshd config");
        let sshd = opsdeck::lab::process::find_program("sshd").expect("sshd installed");
        // A fresh log per configuration: `log(i)` then shows this sshd's connections only.
        let _ = std::fs::remove_file(dir.join(format!("{name}-custom.log")));
        let mut cmd = std::process::Command::new(sshd);
        cmd.arg("-D").arg("-e").arg("-f").arg(&config_path);
        let daemon = Daemon::spawn(&format!("{name}-custom"), &mut cmd, &dir).expect("sshd starts");
        let addr = self.hosts[i].socket_addr();
        opsdeck::lab::process::wait_for_tcp(addr, Duration::from_secs(10)).unwrap_or_else(|e| {
            panic!(
                "custom sshd on {addr} does not listen: {e}; log:\n{}",
                daemon.log_tail(20)
            )
        });
        self.hosts[i].daemon = daemon;
    }

    /// Waits until host `i`'s log contains `needle` (panics after 10 s).
    pub fn wait_for_log(&self, i: usize, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log(i).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "sshd h{} never logged {needle:?}; log:\n{}",
                i + 1,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            h.daemon.stop(Duration::from_secs(2));
        }
    }
}

/// An inline TOML `ssh = { ... }` table (strict host keys, no agent).
pub fn ssh_table(addr: &str, port: u16, key: &Path, known_hosts: &Path, extra: &str) -> String {
    format!(
        "{{ host = {}, port = {port}, user = \"root\", identity_files = [{}], known_hosts = {}, \
         agent = false{extra} }}",
        toml_str(addr),
        toml_str(&key.to_string_lossy()),
        toml_str(&known_hosts.to_string_lossy()),
    )
}

pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Runs `ssh-keygen` with `args`, panicking with its output if it fails.
pub fn keygen(args: &[&str]) {
    let out = std::process::Command::new("ssh-keygen")
        .args(args)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "ssh-keygen {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a key pair at `path` (`path.pub` next to it): `kind` is `ed25519`, `rsa`, `ecdsa`.
/// Returns the public key as `type base64` (no comment).
pub fn new_key(path: &Path, kind: &str) -> String {
    let p = path.to_string_lossy().into_owned();
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(format!("{p}.pub"));
    let mut args = vec!["-q", "-t", kind, "-N", "", "-C", "test", "-f", &p];
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    keygen(&args);
    let text = std::fs::read_to_string(format!("{p}.pub")).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ssh-ed25519 AAAA...` of a freshly made key that no server uses.
pub fn stranger_key(dir: &Path) -> String {
    let path = dir.join(format!(
        "stranger-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let line = sshd::generate_client_key(&path).expect("stranger key");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}
