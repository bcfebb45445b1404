//! The lab's Docker engine and images: starts a local dockerd when none answers, and builds
//! tiny images with `docker import` from this machine's own binaries (no registry needed).
//!
//! Containers in the lab use host networking only, so dockerd's bridge and iptables rules are
//! not needed; when they fail (no iptables, no bridge module) dockerd is started without them.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::process::{Daemon, find_program, pid_alive};

/// The engine socket the lab uses.
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long dockerd may take to answer after being started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// Something already answered on the socket; nothing was started.
    AlreadyRunning,
    /// This call started dockerd (it keeps running after the caller exits).
    Started,
}

#[derive(Debug, thiserror::Error)]
pub enum LabDockerError {
    #[error("{program} not found: apt-get install docker.io")]
    NotInstalled { program: &'static str },
    #[error("cannot start dockerd (log {}): {reason}", log.display())]
    Start { log: PathBuf, reason: String },
    #[error(
        "dockerd (pid {pid}) did not answer on {DOCKER_SOCKET} within {}s; last log lines ({}):\n{tail}",
        START_TIMEOUT.as_secs(),
        log.display()
    )]
    NoAnswer {
        pid: u32,
        log: PathBuf,
        tail: String,
    },
    #[error("building image {tag:?}: {reason}")]
    Image { tag: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabDockerError {
    let what = what.into();
    move |source| LabDockerError::Io { what, source }
}

/// `Some(why)` when this process runs in a chroot (its `/` is not pid 1's `/`). A Docker engine
/// there would change the host's network and cgroups, and the host's engine would resolve the
/// lab's bind mounts against the wrong root; the lab leaves its docker tier out instead.
pub fn chroot_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let chrooted = match (fs::metadata("/"), fs::metadata("/proc/1/root")) {
        (Ok(own), Ok(init)) => own.dev() != init.dev() || own.ino() != init.ino(),
        // Some machines deny even root a look at pid 1's root; then the mount table decides:
        // outside a chroot something is always mounted at `/`, inside one (its root a plain
        // directory) nothing is.
        _ => fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|m| !m.lines().any(|l| l.split(' ').nth(4) == Some("/"))),
    };
    chrooted.then(|| {
        "this runs in a chroot (/ is not the root of pid 1), where a Docker engine cannot run"
            .to_owned()
    })
}

/// True when the engine socket answers `GET /_ping` with `200 OK`.
pub fn engine_answers() -> bool {
    ping(Path::new(DOCKER_SOCKET)).unwrap_or(false)
}

fn ping(socket: &Path) -> io::Result<bool> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(reply.starts_with("HTTP/1.") && reply.lines().next().is_some_and(|l| l.contains(" 200")))
}

/// Starts dockerd when [`DOCKER_SOCKET`] does not answer, and waits until it does.
///
/// dockerd runs in its own process group with its log in `state_dir/dockerd.log` and is left
/// running (detached) so it outlives the caller. Several processes may call this at once: a lock
/// file serialises the start so only one dockerd is launched.
pub fn ensure_dockerd(state_dir: &Path) -> Result<EngineState, LabDockerError> {
    if engine_answers() {
        return Ok(EngineState::AlreadyRunning);
    }
    let dockerd =
        find_program("dockerd").ok_or(LabDockerError::NotInstalled { program: "dockerd" })?;
    let lock_path = std::env::temp_dir().join("opsdeck-dockerd.lock");
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(format!("opening lock file {}", lock_path.display())))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
        LabDockerError::Io {
            what: format!("locking {}", lock_path.display()),
            source: io::Error::from(errno),
        }
    })?;
    // Another caller may have started it while this one waited for the lock.
    if engine_answers() {
        return Ok(EngineState::AlreadyRunning);
    }
    fs::create_dir_all(state_dir).map_err(io_err(format!("creating {}", state_dir.display())))?;
    remove_stale_pidfile();

    let base = [
        "--storage-driver=vfs".to_owned(),
        format!("--host=unix://{DOCKER_SOCKET}"),
    ];
    match start_and_wait(&dockerd, &base, &[], state_dir) {
        Ok(()) => Ok(EngineState::Started),
        Err(StartFailure::Exited { log, tail })
            if tail.contains("iptables") || tail.contains("bridge") =>
        {
            tracing::warn!("dockerd failed on iptables/bridge; retrying without them");
            remove_stale_pidfile();
            start_and_wait(
                &dockerd,
                &base,
                &["--iptables=false", "--bridge=none"],
                state_dir,
            )
            .map(|()| EngineState::Started)
            .map_err(|e| match e.into_error() {
                LabDockerError::Start { reason, .. } => LabDockerError::Start {
                    log,
                    reason: format!("{reason}\n(first attempt failed on iptables/bridge:\n{tail})"),
                },
                other => other,
            })
        }
        Err(e) => Err(e.into_error()),
    }
}

enum StartFailure {
    Spawn(LabDockerError),
    Exited {
        log: PathBuf,
        tail: String,
    },
    Timeout {
        pid: u32,
        log: PathBuf,
        tail: String,
    },
}

impl StartFailure {
    fn into_error(self) -> LabDockerError {
        match self {
            StartFailure::Spawn(e) => e,
            StartFailure::Exited { log, tail } => LabDockerError::Start {
                log,
                reason: format!("dockerd exited; last log lines:\n{tail}"),
            },
            StartFailure::Timeout { pid, log, tail } => LabDockerError::NoAnswer { pid, log, tail },
        }
    }
}

fn start_and_wait(
    dockerd: &Path,
    base: &[String],
    extra: &[&str],
    state_dir: &Path,
) -> Result<(), StartFailure> {
    let mut cmd = Command::new(dockerd);
    cmd.args(base).args(extra);
    let mut daemon = Daemon::spawn("dockerd", &mut cmd, state_dir).map_err(|e| {
        StartFailure::Spawn(LabDockerError::Start {
            log: state_dir.join("dockerd.log"),
            reason: e.to_string(),
        })
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if engine_answers() {
            daemon.detach();
            return Ok(());
        }
        if !daemon.is_alive() {
            let tail = daemon.log_tail(15);
            daemon.stop(Duration::from_secs(1));
            return Err(StartFailure::Exited {
                log: daemon.log.clone(),
                tail,
            });
        }
        if Instant::now() >= deadline {
            let tail = daemon.log_tail(15);
            let (pid, log) = (daemon.pid, daemon.log.clone());
            daemon.stop(Duration::from_secs(5));
            return Err(StartFailure::Timeout { pid, log, tail });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// dockerd refuses to start while `/var/run/docker.pid` names a live process; a pid file left by
/// a dead one is removed.
fn remove_stale_pidfile() {
    let pidfile = Path::new("/var/run/docker.pid");
    if let Ok(text) = fs::read_to_string(pidfile)
        && let Ok(pid) = text.trim().parse::<u32>()
        && !pid_alive(pid)
    {
        let _ = fs::remove_file(pidfile);
    }
}

fn docker_cli() -> Result<PathBuf, LabDockerError> {
    find_program("docker").ok_or(LabDockerError::NotInstalled { program: "docker" })
}

/// True if the engine has an image with this tag.
pub fn image_exists(tag: &str) -> Result<bool, LabDockerError> {
    let status = Command::new(docker_cli()?)
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(io_err("running docker image inspect"))?;
    Ok(status.success())
}

/// Builds a tiny image `tag` with `docker import` (skipped when the tag exists): busybox (static)
/// as `/bin/busybox` with one symlink per applet (`sh`, `sleep`, `cat`, ...), plus each of
/// `extra_binaries` at its own path with every library `ldd` lists and the dynamic loader.
/// The image's command is `/bin/sh`.
///
/// Safe to run from several processes at once: each builds in its own temporary directory and
/// imports under the final tag; identical content makes a concurrent import harmless.
pub fn build_image(tag: &str, extra_binaries: &[&Path]) -> Result<(), LabDockerError> {
    if image_exists(tag)? {
        return Ok(());
    }
    let docker = docker_cli()?;
    let work = unique_temp_dir("opsdeck-image")?;
    let result = build_in(&work, &docker, tag, extra_binaries);
    let _ = fs::remove_dir_all(&work);
    match result {
        Err(e) if image_exists(tag).unwrap_or(false) => {
            // Another process imported the same tag meanwhile.
            tracing::debug!("import of {tag} failed but the tag exists now: {e}");
            Ok(())
        }
        other => other,
    }
}

fn build_in(
    work: &Path,
    docker: &Path,
    tag: &str,
    extra_binaries: &[&Path],
) -> Result<(), LabDockerError> {
    let image_err = |reason: String| LabDockerError::Image {
        tag: tag.to_owned(),
        reason,
    };
    let root = work.join("rootfs");
    for dir in ["bin", "tmp", "etc", "proc", "sys", "dev", "var/run", "data"] {
        fs::create_dir_all(root.join(dir))
            .map_err(io_err(format!("creating {}", root.join(dir).display())))?;
    }
    let busybox = find_program("busybox").ok_or(LabDockerError::NotInstalled {
        program: "busybox (apt-get install busybox-static)",
    })?;
    copy_into(&busybox, &root, Path::new("/bin/busybox"))?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(io_err("running busybox --list"))?;
    if !list.status.success() {
        return Err(image_err(format!(
            "{} --list failed: {}",
            busybox.display(),
            String::from_utf8_lossy(&list.stderr).trim()
        )));
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)
                .map_err(io_err(format!("linking {}", link.display())))?;
        }
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(io_err("writing etc/passwd"))?;
    fs::write(root.join("etc/group"), "root:x:0:\n").map_err(io_err("writing etc/group"))?;

    for bin in extra_binaries {
        if !bin.is_absolute() {
            return Err(image_err(format!(
                "extra binary {} must be an absolute path",
                bin.display()
            )));
        }
        copy_into(bin, &root, bin)?;
        for lib in shared_libraries(bin).map_err(image_err)? {
            copy_into(&lib, &root, &lib)?;
        }
    }

    let tar = work.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .map_err(io_err("running tar"))?;
    if !out.status.success() {
        return Err(image_err(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let out = Command::new(docker)
        .args(["import", "--change", r#"CMD ["/bin/sh"]"#])
        .arg(&tar)
        .arg(tag)
        .output()
        .map_err(io_err("running docker import"))?;
    if !out.status.success() {
        return Err(image_err(format!(
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Copies `src` (following symlinks, keeping the mode) to `root` + `dest`.
fn copy_into(src: &Path, root: &Path, dest: &Path) -> Result<(), LabDockerError> {
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    let target = root.join(rel);
    if target.exists() {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    }
    fs::copy(src, &target).map_err(io_err(format!(
        "copying {} to {}",
        src.display(),
        target.display()
    )))?;
    Ok(())
}

/// The absolute paths of every library `ldd` lists for `bin`, the dynamic loader included.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("running ldd {}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // A static binary: ldd says "not a dynamic executable" and fails; nothing to copy.
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(format!("ldd {}: library missing: {line}", bin.display()));
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path
            && p.starts_with('/')
        {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn unique_temp_dir(prefix: &str) -> Result<PathBuf, LabDockerError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}
