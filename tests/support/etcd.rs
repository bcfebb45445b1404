//! A real 3-member etcd cluster on loopback (Debian's `etcd-server`), free ports, a temp dir;
//! members can be killed, paused (SIGSTOP: a partition as the others see it) and resumed.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsdeck::lab::process::free_port;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub child: Option<Child>,
    paused: bool,
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

pub fn available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl EtcdCluster {
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("opsdeck-etcd-")
            .tempdir()
            .expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| {
                (
                    free_port(LOOPBACK).expect("port"),
                    free_port(LOOPBACK).expect("port"),
                )
            })
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).expect("log");
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--heartbeat-interval",
                    "100",
                    "--election-timeout",
                    "1000",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd starts (Debian package etcd-server)");
            members.push(Member {
                name,
                client_port: *client,
                child: Some(child),
                paused: false,
            });
        }
        let c = EtcdCluster { dir, members };
        c.wait_healthy(Duration::from_secs(30));
        c
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The `[team]` table for an inventory.
    pub fn team_toml(&self, lease_ttl: &str, extra: &str) -> String {
        let eps: Vec<String> = self.endpoints().iter().map(|e| format!("{e:?}")).collect();
        format!(
            "[team]\nendpoints = [{}]\nlease_ttl = \"{lease_ttl}\"\nprefix = \"/opsdeck-test\"\n{extra}\n",
            eps.join(", ")
        )
    }

    /// Waits until a write through the first live member succeeds.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            for m in self
                .members
                .iter()
                .filter(|m| m.child.is_some() && !m.paused)
            {
                let ok = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &format!("http://127.0.0.1:{}", m.client_port),
                        "--command-timeout=2s",
                        "put",
                        "/opsdeck-test-health",
                        "ok",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd cluster not healthy; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&mut self, i: usize, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.members[i].child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid")),
                sig,
            );
        }
    }

    /// Freezes member `i`: to the others and to clients it is gone, until `resume`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGSTOP);
        self.members[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, nix::sys::signal::Signal::SIGCONT);
        self.members[i].paused = false;
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
