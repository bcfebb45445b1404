//! Starting and stopping server processes the lab and the tests own.
//!
//! Every server runs in the foreground of its own process group (sshd `-D`, nginx
//! `daemon off`, php-fpm `-F`, mariadbd, redis-server, dockerd), with its output in a log file
//! and its pid in a pid file, so a later `opsdeck lab down` (another process) can stop it.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A running server process.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    pub pid: u32,
    pub pidfile: PathBuf,
    pub log: PathBuf,
    /// Present when this process started it (so it can be reaped, never left a zombie).
    child: Option<Child>,
}

impl Daemon {
    /// Spawns `cmd` in its own process group with stdout and stderr appended to
    /// `dir/NAME.log`, and writes `dir/NAME.pid`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> io::Result<Daemon> {
        fs::create_dir_all(dir)?;
        let log = dir.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {name} ({:?}): {e}", cmd.get_program()),
                )
            })?;
        let pid = child.id();
        let pidfile = dir.join(format!("{name}.pid"));
        fs::write(&pidfile, format!("{pid}\n"))?;
        Ok(Daemon {
            name: name.to_owned(),
            pid,
            pidfile,
            log,
            child: Some(child),
        })
    }

    /// A daemon another process started, known by its pid file.
    pub fn from_pidfile(name: &str, pidfile: &Path) -> Option<Daemon> {
        let pid = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        Some(Daemon {
            name: name.to_owned(),
            pid,
            pidfile: pidfile.to_path_buf(),
            log: pidfile.with_extension("log"),
            child: None,
        })
    }

    pub fn is_alive(&mut self) -> bool {
        if let Some(c) = &mut self.child {
            return matches!(c.try_wait(), Ok(None));
        }
        pid_alive(self.pid)
    }

    /// SIGTERM to the process group, SIGKILL after `grace`; removes the pid file.
    pub fn stop(&mut self, grace: Duration) {
        let pgid = Pid::from_raw(self.pid as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_alive() {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(pgid, Signal::SIGKILL);
        }
        if let Some(c) = &mut self.child {
            let _ = c.wait();
        } else {
            let deadline = Instant::now() + Duration::from_secs(2);
            while pid_alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(&self.pidfile);
    }

    /// Sends a signal to the process (not the group).
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid as i32), sig)
    }

    /// Lets the process outlive this handle (the lab's servers outlive `opsdeck lab up`).
    pub fn detach(mut self) {
        self.child = None;
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// True if a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing listens on {addr} after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A free TCP port on `ip` (bound then released; good enough for tests and the lab).
pub fn free_port(ip: std::net::IpAddr) -> io::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0))?;
    Ok(l.local_addr()?.port())
}

/// Finds a program in PATH or the sbin directories Debian puts servers in.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
