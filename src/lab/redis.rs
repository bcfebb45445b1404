//! Launching Redis servers and Sentinels for the lab and the tests.
//!
//! Each server gets a config file `DIR/NAME.conf` (mode 0600: it may hold the lab's password,
//! as any Redis config does; opsdeck's own inventory only ever references passwords by file)
//! and logs to `DIR/NAME.log` through [`Daemon::spawn`]. Nothing is persisted unless asked
//! (`persist`: an append-only file, as the lab's session Redis keeps); never RDB
//! snapshots (`save ""`).

#![allow(
    clippy::doc_markdown,
    reason = "product names (MariaDB, InnoDB) are prose here, not code"
)]

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::lab::mariadb::wait_until_listening;
use crate::lab::process::{Daemon, find_program};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for one Redis server.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub dir: PathBuf,
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    /// `requirepass` and `masterauth` (replicas of a protected master need the same).
    pub password: Option<String>,
    pub replica_of: Option<(IpAddr, u16)>,
    pub maxclients: Option<u32>,
    /// Keep the data across a restart in an append-only file (fsynced every second), as seed
    /// 001's session Redis does (`appendonly yes`). Without it a master killed and started
    /// again comes back empty, and its replicas resync to empty: every session is lost.
    pub persist: bool,
}

impl RedisOptions {
    pub fn new(dir: impl Into<PathBuf>, name: &str, addr: IpAddr, port: u16) -> Self {
        RedisOptions {
            dir: dir.into(),
            name: name.to_owned(),
            addr,
            port,
            password: None,
            replica_of: None,
            maxclients: None,
            persist: false,
        }
    }
}

/// Options for one Sentinel watching one master.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    pub dir: PathBuf,
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub master_name: String,
    pub master: (IpAddr, u16),
    pub quorum: u32,
    /// The master's (and replicas') `requirepass`.
    pub password: Option<String>,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
}

/// Writes `DIR/NAME.conf`, starts `redis-server` on it and waits for the port.
pub fn start_redis(opts: &RedisOptions) -> io::Result<Daemon> {
    let mut conf = String::new();
    common_conf(&mut conf, opts.addr, opts.port, &opts.dir);
    // Replicas connect from 127.0.0.1 whatever address they bind: announce the bound one, or
    // the master (and so Sentinel) lists every replica as 127.0.0.1:6379. It belongs in the
    // file: set with CONFIG SET after the start, it can land in the middle of the replication
    // handshake, and Redis 7.0 then waits for a reply the master never sends (the replica's
    // link stays down until repl-timeout, 60 s).
    if !opts.addr.is_unspecified() {
        let _ = writeln!(conf, "replica-announce-ip {}", opts.addr);
    }
    let _ = writeln!(conf, "save \"\"");
    if opts.persist {
        let _ = writeln!(conf, "appendonly yes");
        let _ = writeln!(conf, "appendfsync everysec");
        let _ = writeln!(
            conf,
            "appenddirname {}",
            quote(&format!("{}.aof", opts.name))
        );
    } else {
        let _ = writeln!(conf, "appendonly no");
    }
    let _ = writeln!(conf, "dbfilename {}", quote(&format!("{}.rdb", opts.name)));
    // DEBUG (SLEEP, for slow-reply drills) only from loopback clients.
    let _ = writeln!(conf, "enable-debug-command local");
    if let Some(pw) = &opts.password {
        let _ = writeln!(conf, "requirepass {}", quote(pw));
        let _ = writeln!(conf, "masterauth {}", quote(pw));
    }
    if let Some((ip, port)) = opts.replica_of {
        let _ = writeln!(conf, "replicaof {ip} {port}");
    }
    if let Some(n) = opts.maxclients {
        let _ = writeln!(conf, "maxclients {n}");
    }
    let path = write_conf(&opts.dir, &opts.name, &conf)?;
    spawn(
        &opts.name,
        &opts.dir,
        &path,
        false,
        SocketAddr::new(opts.addr, opts.port),
    )
}

/// Writes a (Sentinel-rewritable) `DIR/NAME.conf` and starts `redis-server CONF --sentinel`.
pub fn start_sentinel(opts: &SentinelOptions) -> io::Result<Daemon> {
    let mut conf = String::new();
    common_conf(&mut conf, opts.addr, opts.port, &opts.dir);
    let name = &opts.master_name;
    let _ = writeln!(conf, "sentinel resolve-hostnames no");
    let (mip, mport) = opts.master;
    let _ = writeln!(
        conf,
        "sentinel monitor {name} {mip} {mport} {}",
        opts.quorum
    );
    if let Some(pw) = &opts.password {
        let _ = writeln!(conf, "sentinel auth-pass {name} {}", quote(pw));
    }
    let _ = writeln!(
        conf,
        "sentinel down-after-milliseconds {name} {}",
        opts.down_after_ms
    );
    let _ = writeln!(
        conf,
        "sentinel failover-timeout {name} {}",
        opts.failover_timeout_ms
    );
    let _ = writeln!(conf, "sentinel parallel-syncs {name} 1");
    let path = write_conf(&opts.dir, &opts.name, &conf)?;
    spawn(
        &opts.name,
        &opts.dir,
        &path,
        true,
        SocketAddr::new(opts.addr, opts.port),
    )
}

fn common_conf(conf: &mut String, addr: IpAddr, port: u16, dir: &Path) {
    let _ = writeln!(conf, "bind {addr}");
    let _ = writeln!(conf, "port {port}");
    let _ = writeln!(conf, "daemonize no");
    let _ = writeln!(conf, "protected-mode no");
    let _ = writeln!(conf, "dir {}", quote(&dir.display().to_string()));
    let _ = writeln!(conf, "logfile \"\"");
}

fn write_conf(dir: &Path, name: &str, conf: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.conf"));
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(conf.as_bytes())?;
    Ok(path)
}

fn spawn(
    name: &str,
    dir: &Path,
    conf: &Path,
    sentinel: bool,
    addr: SocketAddr,
) -> io::Result<Daemon> {
    let program = find_program("redis-server").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "redis-server not found: install redis-server",
        )
    })?;
    let mut cmd = Command::new(program);
    cmd.arg(conf);
    if sentinel {
        cmd.arg("--sentinel");
    }
    let mut daemon = Daemon::spawn(name, &mut cmd, dir)?;
    if let Err(e) = wait_until_listening(&mut daemon, addr, START_TIMEOUT) {
        daemon.stop(Duration::from_secs(3));
        return Err(e);
    }
    Ok(daemon)
}

/// A Redis config string: double-quoted, with backslash and quote escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::process::free_port;
    use crate::lab::wire;

    /// A persisted server killed outright (as the redis-down drill kills the master) comes
    /// back with its data: a master restarted empty would wipe its replicas on resync.
    #[test]
    fn a_persisted_server_killed_and_started_again_keeps_its_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = [127, 0, 0, 1].into();
        let opts = RedisOptions {
            persist: true,
            ..RedisOptions::new(dir.path(), "kept", ip, free_port(ip).expect("free port"))
        };
        let addr = SocketAddr::new(ip, opts.port);
        let mut first = start_redis(&opts).expect("starts");
        wire::redis1(addr, None, &["SET", "session:1", "alice"]).expect("SET");
        // appendfsync everysec: on disk within a second.
        std::thread::sleep(Duration::from_millis(1500));
        first
            .signal(nix::sys::signal::Signal::SIGKILL)
            .expect("SIGKILL");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while first.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut again = start_redis(&opts).expect("starts again");
        let got = wire::redis1(addr, None, &["GET", "session:1"]).map(|r| r.text());
        again.stop(Duration::from_secs(2));
        assert_eq!(got.ok().as_deref(), Some("alice"));
    }

    /// A replica is listed by its master at the address it binds, from its first handshake on
    /// (so nothing has to change its announce address while it syncs).
    #[test]
    fn a_replica_announces_the_address_it_binds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (m_ip, r_ip): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [127, 0, 0, 3].into());
        let opts = |name: &str, ip: IpAddr| RedisOptions {
            password: Some("pw".into()),
            ..RedisOptions::new(dir.path(), name, ip, free_port(ip).expect("free port"))
        };
        let master = opts("master", m_ip);
        let mut m = start_redis(&master).expect("master starts");
        let mut r = start_redis(&RedisOptions {
            replica_of: Some((m_ip, master.port)),
            ..opts("replica", r_ip)
        })
        .expect("replica starts");
        let addr = SocketAddr::new(m_ip, master.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut info = String::new();
        while std::time::Instant::now() < deadline {
            info = wire::redis1(addr, Some("pw"), &["INFO", "replication"])
                .map(|r| r.text())
                .unwrap_or_default();
            if info.contains("state=online") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        r.stop(Duration::from_secs(3));
        m.stop(Duration::from_secs(3));
        assert!(
            info.contains(&format!("slave0:ip={r_ip},")) && info.contains("state=online"),
            "{info}"
        );
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote(""), "\"\"");
    }
}
