//! Real OpenSSH `sshd` instances on loopback, one per pretend host.
//!
//! Every address in 127.0.0.0/8 reaches `lo`, so sshd on 127.0.0.2, 127.0.0.3, ... act as
//! separate hosts without any network setup. Used by the integration tests, the benchmarks and
//! the lab.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::process::{Daemon, find_program};

/// What to start.
#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Directory for the host key, config, log and pid file (created if missing).
    pub dir: PathBuf,
    /// Names the files in `dir` (`NAME_host_ed25519_key`, `NAME_sshd_config`, `NAME.log`).
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    /// Absolute path of the `authorized_keys` file every user logs in with.
    pub authorized_keys: PathBuf,
    /// sshd's `MaxSessions` (channels per connection); sshd's default 10 when `None`.
    pub max_sessions: Option<u32>,
}

/// A running sshd.
#[derive(Debug)]
pub struct Sshd {
    pub daemon: Daemon,
    pub addr: IpAddr,
    pub port: u16,
    /// `ssh-ed25519 AAAA...` (no comment).
    pub host_public_key: String,
}

impl Sshd {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// Stops sshd like a host going down: every connection it forked is killed too (sshd's
    /// per-connection processes start their own session, so stopping the listener's process
    /// group leaves them, and their users' commands, running).
    pub fn crash(&mut self) {
        let descendants = descendants_of(self.daemon.pid);
        let _ = self.daemon.signal(Signal::SIGSTOP);
        for pid in descendants_of(self.daemon.pid)
            .into_iter()
            .chain(descendants)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid.cast_signed()), Signal::SIGKILL);
        }
        let _ = self.daemon.signal(Signal::SIGKILL);
        self.daemon.stop(Duration::from_millis(500));
    }

    /// The `known_hosts` line that trusts this server.
    pub fn known_hosts_line(&self) -> String {
        known_hosts_line(self.addr, self.port, &self.host_public_key)
    }
}

/// Starts sshd in the foreground of its own process group and waits until it accepts
/// connections. The host key is created on first start and kept, so a restart with the same
/// options presents the same key.
pub fn start(opts: &SshdOptions) -> io::Result<Sshd> {
    start_with(opts, &[])
}

/// [`start`], with `extra` configuration lines ahead of the defaults (sshd takes the first
/// value it reads for a keyword, so these win): the lab's `PermitRootLogin no`, `AllowUsers`.
pub fn start_with(opts: &SshdOptions, extra: &[String]) -> io::Result<Sshd> {
    fs::create_dir_all(&opts.dir)?;
    let dir = absolute(&opts.dir)?;
    let host_key = dir.join(format!("{}_host_ed25519_key", opts.name));
    if !host_key.is_file() {
        keygen(&host_key, &format!("opsdeck-lab-{}", opts.name))?;
    }
    let host_public_key = read_public_key(&pub_path(&host_key))?;

    let authorized_keys = absolute(&opts.authorized_keys)?;
    let mut config = String::new();
    let listen = match opts.addr {
        IpAddr::V4(a) => format!("{a}:{}", opts.port),
        IpAddr::V6(a) => format!("[{a}]:{}", opts.port),
    };
    // Writing to a String cannot fail.
    for line in extra {
        let _ = writeln!(config, "{line}");
    }
    let _ = writeln!(config, "ListenAddress {listen}");
    let _ = writeln!(config, "HostKey {}", host_key.display());
    let _ = writeln!(config, "PidFile none");
    let _ = writeln!(config, "AuthorizedKeysFile {}", authorized_keys.display());
    for line in [
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "LogLevel VERBOSE",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        // Many clients connect at once in tests and benchmarks: never drop a startup.
        "MaxStartups 200",
        "Subsystem sftp internal-sftp",
        // bash sources ~/.bashrc for commands run by sshd only when it believes it is the
        // first shell level; the pretend hosts share this machine's root account, whose rc
        // files are the developer's (pyenv, ...), not a server's. SHLVL=1 skips them.
        "SetEnv SHLVL=1",
    ] {
        let _ = writeln!(config, "{line}");
    }
    if let Some(n) = opts.max_sessions {
        let _ = writeln!(config, "MaxSessions {n}");
    }
    let config_path = dir.join(format!("{}_sshd_config", opts.name));
    fs::write(&config_path, config)?;

    // sshd refuses to start without its privilege separation directory.
    fs::create_dir_all("/run/sshd")?;

    let sshd = find_program("sshd").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "sshd not found in PATH or /usr/sbin: install openssh-server",
        )
    })?;
    // sshd re-executes itself and needs an absolute path for that.
    let sshd = absolute(&sshd)?;
    let mut cmd = Command::new(&sshd);
    cmd.arg("-D").arg("-e").arg("-f").arg(&config_path);
    let mut daemon = Daemon::spawn(&opts.name, &mut cmd, &dir)?;

    let addr = SocketAddr::new(opts.addr, opts.port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if !daemon.is_alive() {
            let tail = daemon.log_tail(10);
            daemon.stop(Duration::from_millis(100));
            return Err(io::Error::other(format!(
                "sshd {} on {addr} exited at start; its log says:\n{tail}",
                opts.name
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            let tail = daemon.log_tail(10);
            daemon.stop(Duration::from_millis(500));
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "sshd {} does not listen on {addr} after 10s; its log says:\n{tail}",
                    opts.name
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Sshd {
        daemon,
        addr: opts.addr,
        port: opts.port,
        host_public_key,
    })
}

/// Creates an ed25519 key pair without passphrase at `path` (and `path.pub`) unless both exist,
/// and returns the public key line (`ssh-ed25519 AAAA... comment`).
pub fn generate_client_key(path: &Path) -> io::Result<String> {
    let public = pub_path(path);
    if !(path.is_file() && public.is_file()) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let _ = fs::remove_file(path);
        let _ = fs::remove_file(&public);
        keygen(path, "opsdeck-client")?;
    }
    Ok(fs::read_to_string(&public)?.trim().to_owned())
}

/// A `known_hosts` line for a server: `[127.0.0.2]:2222 ssh-ed25519 AAAA...`, or the plain
/// address when the port is 22.
pub fn known_hosts_line(addr: IpAddr, port: u16, host_public_key: &str) -> String {
    let key = host_public_key.trim();
    if port == 22 {
        format!("{addr} {key}")
    } else {
        format!("[{addr}]:{port} {key}")
    }
}

fn keygen(path: &Path, comment: &str) -> io::Result<()> {
    let keygen = find_program("ssh-keygen").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "ssh-keygen not found: install openssh-client",
        )
    })?;
    let out = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen could not create {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `key` -> `key.pub` (appending, so a name with dots keeps them).
fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// `ssh-ed25519 AAAA...` from a `.pub` file (the comment dropped).
fn read_public_key(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    let mut fields = text.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(blob)) => Ok(format!("{kind} {blob}")),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds no public key", path.display()),
        )),
    }
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// Every process below `root` in the process tree (children, grandchildren, ...).
fn descendants_of(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}
