//! A real etcd cluster on loopback (Debian's `etcd-server`) for team mode: free ports, its
//! own directory; members can be killed, paused (SIGSTOP: a partition as the others see it)
//! and resumed. Used by the team-mode tests and benchmark.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::free_port;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub child: Option<Child>,
    paused: bool,
}

pub struct EtcdCluster {
    pub dir: PathBuf,
    pub members: Vec<Member>,
}

pub fn available() -> bool {
    Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl EtcdCluster {
    /// Starts `n` members with their data and logs under `dir` and waits for a quorum.
    pub fn start(dir: &std::path::Path, n: usize) -> std::io::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.to_path_buf();
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| Ok((free_port(LOOPBACK)?, free_port(LOOPBACK)?)))
            .collect::<std::io::Result<_>>()?;
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=http://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(&name))
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
                .spawn()?;
            members.push(Member {
                name,
                client_port: *client,
                child: Some(child),
                paused: false,
            });
        }
        let c = EtcdCluster { dir, members };
        if c.wait_healthy(Duration::from_secs(30)) {
            Ok(c)
        } else {
            Err(std::io::Error::other(format!(
                "the etcd cluster did not reach a quorum; logs in {}",
                c.dir.display()
            )))
        }
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

    /// Waits until a write through a live member succeeds; `false` if none did in time.
    pub fn wait_healthy(&self, within: Duration) -> bool {
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
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
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
        self.dir.join(format!("{}.log", self.members[i].name))
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
