//! Starting and stopping server processes the lab and the tests own.
//!
//! Every server runs in the foreground of its own process group (sshd `-D`, nginx
//! `daemon off`, php-fpm `-F`, mariadbd, redis-server, dockerd), with its output in a log file
//! and its pid in a pid file, so a later `opsdeck lab down` (another process) can stop it.
//!
//! A pid file is a promise someone else can break: the process may be gone and its pid reused,
//! or the file may have been written by someone else. Next to `NAME.pid` (the plain pid, as
//! other tools read it) the process's start time (`/proc/PID/stat`, field 22) is recorded in
//! `NAME.start`, and [`Daemon::from_pidfile`] only believes private files of ours whose
//! process still has that start time, so `stop` never signals (or `killpg`s) a process the
//! lab did not start. Log, pid and start files are 0600.

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
        close_inherited_fds();
        crate::private_fs::private_dir(dir)?;
        let log = dir.join(format!("{name}.log"));
        let out: File = crate::private_fs::open_append(&log)?;
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
        if let Some(t) = start_time(pid) {
            crate::private_fs::write_atomic(&start_file(&pidfile), format!("{t}\n").as_bytes())?;
        }
        crate::private_fs::write_atomic(&pidfile, format!("{pid}\n").as_bytes())?;
        Ok(Daemon {
            name: name.to_owned(),
            pid,
            pidfile,
            log,
            child: Some(child),
        })
    }

    /// A daemon another process started, known by its pid file; `None` unless the pid file
    /// can be trusted (see [`trusted_pid`]).
    pub fn from_pidfile(name: &str, pidfile: &Path) -> Option<Daemon> {
        let pid = trusted_pid(pidfile).ok()?;
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
        let _ = fs::remove_file(start_file(&self.pidfile));
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

/// Closes the descriptors this process inherited without close-on-exec (the lock of
/// a `flock LOCK cargo test` around it, a shell's extra descriptors). Servers started here
/// outlive this process (dockerd outlives `lab down` too); one holding the descriptor of
/// `flock`'s lock file would hold the lock, and keep every later `flock` waiting, until it
/// exits. Everything Rust opens is close-on-exec already, so only inherited ones are closed.
///
/// Calls are serialized, and each descriptor's flags are read right before it is closed, so a
/// descriptor number freed by one call and reused by a new (close-on-exec) file is left alone.
pub fn close_inherited_fds() {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(dir) = fs::read_dir("/proc/self/fdinfo") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        let Ok(info) = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
        // O_CLOEXEC as /proc reports it (octal 02000000).
        if flags.is_some_and(|f| f & 0o2_000_000 == 0) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Where the start time of the process a pid file names is kept: `NAME.start` next to
/// `NAME.pid`.
pub fn start_file(pidfile: &Path) -> PathBuf {
    pidfile.with_extension("start")
}

/// Reads a file only if it can be trusted: a regular file (not a symlink) owned by this user
/// and writable by no one else.
fn read_private(path: &Path) -> io::Result<(String, fs::Metadata)> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = fs::symlink_metadata(path)?;
    let untrusted = |why: String| io::Error::other(format!("{}: {why}", path.display()));
    if !meta.is_file() {
        return Err(untrusted("not a regular file".to_owned()));
    }
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        return Err(untrusted(format!("owned by uid {}, not {me}", meta.uid())));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(untrusted("others can write it".to_owned()));
    }
    Ok((fs::read_to_string(path)?, meta))
}

/// The pid a pid file names, if it can be trusted: the pid file (and its `NAME.start`) are
/// private files of ours (see [`read_private`]) and the live process `PID` has the recorded
/// start time; a pid file without a start file (written by an older opsdeck) must name a
/// process that started before the file was written. Anything else (a stale file whose pid
/// was reused, a file another user could write) is an error saying why.
pub fn trusted_pid(pidfile: &Path) -> io::Result<u32> {
    let untrusted = |why: String| {
        io::Error::other(format!(
            "not trusting pid file {}: {why}",
            pidfile.display()
        ))
    };
    let (text, meta) = read_private(pidfile).map_err(|e| untrusted(e.to_string()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| untrusted("no pid in it".to_owned()))?;
    let Some(started) = start_time(pid) else {
        return Err(untrusted(format!("process {pid} is gone")));
    };
    match read_private(&start_file(pidfile)) {
        Ok((recorded, _)) if recorded.trim().parse::<u64>().ok() == Some(started) => Ok(pid),
        Ok(_) => Err(untrusted(format!(
            "process {pid} is not the one it recorded (pid reused)"
        ))),
        // Written by an older opsdeck, without the start time: the process must be older than
        // the file (a reused pid belongs to a process started after it).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let file_age = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .map_or(f64::MAX, |d| d.as_secs_f64());
            match process_age(pid) {
                Some(age) if age + 2.0 >= file_age => Ok(pid),
                _ => Err(untrusted(format!(
                    "process {pid} started after the file was written (pid reused)"
                ))),
            }
        }
        Err(e) => Err(untrusted(e.to_string())),
    }
}

/// Clock ticks per second in `/proc` (`USER_HZ`: 100 on every Linux architecture's ABI).
const USER_HZ: f64 = 100.0;

/// Seconds since `pid` started.
fn process_age(pid: u32) -> Option<f64> {
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(uptime - start_time(pid)? as f64 / USER_HZ)
}

/// A process's start time in clock ticks after boot (`/proc/PID/stat` field 22): with the
/// pid, it names one process (a pid alone is reused).
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces): state is field 3,
    // so the start time (field 22) is the 20th.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_started_server_does_not_inherit_descriptors_without_close_on_exec() {
        use std::os::fd::IntoRawFd as _;
        let t = tempfile::tempdir().expect("tempdir");
        let lock = File::create(t.path().join("held.lock")).expect("create");
        // dup() gives a descriptor without close-on-exec, like the one `flock(1)` passes on.
        let inherited = nix::unistd::dup(&lock).expect("dup").into_raw_fd();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("ls -l /proc/$$/fd > fds.txt")
            .current_dir(t.path());
        let mut d = Daemon::spawn("fds", &mut cmd, t.path()).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        d.stop(Duration::from_secs(1));
        let fds = fs::read_to_string(t.path().join("fds.txt")).expect("fds");
        assert!(!fds.contains("held.lock"), "{fds}");
        assert!(
            !fs::read_dir("/proc/self/fd")
                .expect("fds")
                .flatten()
                .any(|e| e.file_name().to_str() == Some(&inherited.to_string())
                    && fs::read_link(e.path()).is_ok_and(|l| l.ends_with("held.lock"))),
            "closed here too"
        );
    }

    #[test]
    fn only_a_private_pid_file_naming_the_process_it_recorded_is_trusted() {
        let t = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut d = Daemon::spawn("sleeper", &mut cmd, t.path()).expect("spawn");
        let pidfile = t.path().join("sleeper.pid");
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&pidfile), 0o600);
        assert_eq!(trusted_pid(&pidfile).expect("trusted"), d.pid);

        assert_eq!(
            fs::read_to_string(&pidfile).expect("read"),
            format!("{}\n", d.pid)
        );
        let start_path = start_file(&pidfile);
        assert_eq!(mode(&start_path), 0o600);

        // A file from an older version (no start file) names the process that ran when it
        // was written; one written before the process started names a reused pid.
        let planted = t.path().join("planted.pid");
        fs::write(&planted, format!("{}\n", d.pid)).expect("write");
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(trusted_pid(&planted).expect("legacy file"), d.pid);
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&planted)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("set mtime");
        assert!(Daemon::from_pidfile("planted", &planted).is_none());
        // A wrong start time, a start file others can write, a pid file others can write, a
        // symlink.
        let start = start_time(d.pid).expect("start time");
        let planted_start = start_file(&planted);
        fs::write(&planted_start, format!("{}\n", start + 1)).expect("write");
        fs::set_permissions(&planted_start, fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = trusted_pid(&planted).expect_err("pid reused");
        assert!(e.to_string().contains("pid reused"), "{e}");
        fs::write(&planted_start, format!("{start}\n")).expect("write");
        assert_eq!(trusted_pid(&planted).expect("matching start"), d.pid);
        fs::set_permissions(&planted_start, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(trusted_pid(&planted).is_err());
        fs::set_permissions(&planted_start, fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(trusted_pid(&planted).is_err());
        std::os::unix::fs::symlink(&pidfile, t.path().join("link.pid")).expect("symlink");
        assert!(trusted_pid(&t.path().join("link.pid")).is_err());

        d.stop(Duration::from_secs(2));
        assert!(!pid_alive(d.pid));
        assert!(!pidfile.exists() && !start_path.exists());
    }
}
