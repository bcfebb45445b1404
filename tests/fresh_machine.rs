//! The README's first command on a fresh Debian machine (issue 12).
//!
//! A minimal Debian root is made with `debootstrap --variant=minbase bookworm`, the built
//! `opsdeck` is copied in, and `opsdeck demo` runs in it with `chroot` as root, its stdout not a
//! terminal. It must install what the lab needs with apt-get, bring the lab up, and print one
//! health sweep with every check ok (exit 0). No Docker engine runs in a chroot: the lab leaves
//! its docker tier out and says so, and the sweep covers what it brought up.
//!
//! Needs root and debootstrap; without them it says loudly that it skipped, and fails instead
//! when `OPSDECK_FRESH_MACHINE_TEST=1` (CI sets it). The debootstrapped base is cached as a
//! tarball per day in `/var/cache/opsdeck-test` (`OPSDECK_TEST_CACHE` overrides), and every run
//! extracts a fresh copy, so the packages the demo installs are never in it.
//!
//! The lab in the chroot binds the same 127.0.10.x addresses as every other lab: the test holds
//! the lab lock for its whole run, and tears down everything it started even when it fails.
#![allow(clippy::unwrap_used)] // tests may unwrap; the lint guards non-test code

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

const SUITE: &str = "bookworm";
const WORK: &str = "/var/tmp/opsdeck-fresh-machine";
const LAB_LOCK: &str = "/tmp/opsdeck-lab.lock";
const OPSDECK_IN_ROOT: &str = "/usr/local/bin/opsdeck";
const LAB_HOSTS: [&str; 8] = [
    "lb", "app1", "app2", "db1", "db2", "cache1", "cache2", "worker1",
];
/// Packages the demo must install: PHP's extensions (the bug), the tools a minbase root lacks,
/// and the optional Docker ones.
const INSTALLED_BY_DEMO: [&str; 9] = [
    "php8.2-cli",
    "php8.2-fpm",
    "php8.2-mysql",
    "php-redis",
    "nginx",
    "mariadb-server",
    "procps",
    "docker.io",
    "busybox-static",
];

fn skip(why: &str) {
    assert!(
        std::env::var("OPSDECK_FRESH_MACHINE_TEST").as_deref() != Ok("1"),
        "OPSDECK_FRESH_MACHINE_TEST=1 but the fresh-machine test cannot run: {why}"
    );
    eprintln!(
        "\n*** SKIPPED fresh_machine: {why}.\n*** The README's first command was NOT tested on a \
         fresh Debian root; run this test as root with debootstrap installed \
         (OPSDECK_FRESH_MACHINE_TEST=1 turns this skip into a failure). ***\n"
    );
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs a command to completion; `Err` with its output when it fails.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}):\n{text}", out.status))
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---- the lab lock ----------------------------------------------------------------------------

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// True when a process that holds a flock on `path` is this process's ancestor: the test runs
/// under `flock /tmp/opsdeck-lab.lock cargo test ...`, which already keeps other labs out (and
/// taking the lock again here would wait for ever).
fn ancestor_holds(path: &Path) -> bool {
    let Ok(ino) = fs::metadata(path).map(|m| m.ino()) else {
        return false;
    };
    let locks = fs::read_to_string("/proc/locks").unwrap_or_default();
    let holders: Vec<u32> = locks
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let file_ino = f.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (f.get(1) == Some(&"FLOCK") && file_ino == ino).then(|| f.get(4)?.parse().ok())?
        })
        .collect();
    let mut pid = std::process::id();
    while let Some(p) = parent_of(pid).filter(|p| *p > 1) {
        if holders.contains(&p) {
            return true;
        }
        pid = p;
    }
    false
}

fn lock(path: &Path) -> Option<Flock<File>> {
    if ancestor_holds(path) {
        eprintln!(
            "fresh_machine: {} is held by this test's caller",
            path.display()
        );
        return None;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => return Some(l),
        Err((f, _)) => f,
    };
    eprintln!(
        "fresh_machine: waiting for {} (another lab test runs)",
        path.display()
    );
    Some(
        Flock::lock(f, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("locking {}: {e}", path.display())),
    )
}

// ---- the base root ---------------------------------------------------------------------------

/// The Debian mirror this machine uses (deb822 sources first, then `sources.list`).
fn mirror() -> String {
    if let Ok(m) = std::env::var("OPSDECK_DEBIAN_MIRROR") {
        return m;
    }
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    for stanza in deb822.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let suites = field("Suites").unwrap_or_default();
        if field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
            && suites.split_whitespace().any(|s| s == SUITE)
            && let Some(uri) = field("URIs").and_then(|u| u.split_whitespace().next())
        {
            return uri.to_owned();
        }
    }
    let list = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for l in list.lines() {
        let words: Vec<&str> = l
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        if words.first() == Some(&"deb") && words.get(2) == Some(&SUITE) {
            return words[1].to_owned();
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The cached tarball of a fresh `debootstrap --variant=minbase` root, made when today's is
/// missing. Returns it and how long making it took (zero when cached).
fn base_tarball() -> (PathBuf, Duration) {
    let cache = std::env::var("OPSDECK_TEST_CACHE")
        .map_or_else(|_| PathBuf::from("/var/cache/opsdeck-test"), PathBuf::from);
    let cache = if fs::create_dir_all(&cache).is_ok() {
        cache
    } else {
        PathBuf::from(WORK).with_extension("cache")
    };
    fs::create_dir_all(&cache).unwrap();
    let name = format!(
        "{SUITE}-minbase-{}.tar",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let tarball = cache.join(&name);
    if tarball.is_file() {
        return (tarball, Duration::ZERO);
    }
    let t0 = Instant::now();
    let build = cache.join("build");
    // A half-made root from an interrupted run has no mounts (debootstrap's own are gone with
    // it), but check before deleting anything.
    teardown(&build).unwrap();
    let mirror = mirror();
    eprintln!("fresh_machine: debootstrap --variant=minbase {SUITE} from {mirror}");
    if let Err(e) = run(Command::new("debootstrap").args([
        "--variant=minbase",
        SUITE,
        &build.display().to_string(),
        &mirror,
    ])) {
        let log = fs::read_to_string(build.join("debootstrap/debootstrap.log")).unwrap_or_default();
        teardown(&build).unwrap();
        panic!(
            "debootstrap failed: {}\ndebootstrap.log:\n{}",
            tail(&e, 20),
            tail(&log, 30)
        );
    }
    teardown_mounts(&build).unwrap();
    let tmp = cache.join(format!("{name}.tmp"));
    run(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&build)
        .arg("-cf")
        .arg(&tmp)
        .arg("."))
    .unwrap();
    fs::rename(&tmp, &tarball).unwrap();
    teardown(&build).unwrap();
    // One base per day is kept: older ones are of no use.
    for e in fs::read_dir(&cache).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!("{SUITE}-minbase-")) && n != name {
            let _ = fs::remove_file(e.path());
        }
    }
    (tarball, t0.elapsed())
}

// ---- mounts, processes and teardown ----------------------------------------------------------

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Pids of processes whose root directory is `dir` or below it (started in the chroot).
fn processes_in(dir: &Path) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.starts_with(dir)))
        .collect()
}

fn teardown_mounts(dir: &Path) -> Result<(), String> {
    for m in mounts_under(dir) {
        if run(Command::new("umount").arg(&m)).is_err() {
            run(Command::new("umount").arg("-l").arg(&m))?;
        }
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("still mounted: {left:?}"))
    }
}

/// Stops the lab in the root (`opsdeck lab down` inside it), kills anything still running in
/// it, unmounts everything under it and deletes it. Never deletes while something is mounted.
fn teardown(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        return Ok(());
    }
    let mut notes = Vec::new();
    let lab = dir.join("var/tmp/opsdeck-lab");
    if lab.exists() && dir.join("proc/self").exists() && dir.join(&OPSDECK_IN_ROOT[1..]).exists() {
        let (code, out) = chroot_run(dir, &["lab", "down"], Duration::from_secs(120));
        if code != Some(0) {
            notes.push(format!("lab down in the root exited {code:?}:\n{out}"));
        }
    }
    let mut left = processes_in(dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !left.is_empty() {
        if Instant::now() >= deadline {
            return Err(format!(
                "processes still running in {}: {left:?}",
                dir.display()
            ));
        }
        notes.push(format!("killed leftover processes {left:?}"));
        for pid in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        left = processes_in(dir);
    }
    teardown_mounts(dir)?;
    // --one-file-system: a second guard against deleting through a mount.
    run(Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(dir))?;
    if !notes.is_empty() {
        eprintln!(
            "fresh_machine: teardown of {}: {}",
            dir.display(),
            notes.join("; ")
        );
    }
    Ok(())
}

/// A fresh copy of the base root with `/proc`, `/sys`, `/dev` and a tmpfs `/run` mounted, like
/// a booted machine; dropped, it tears everything down.
struct FreshRoot {
    dir: PathBuf,
    closed: bool,
}

impl FreshRoot {
    fn create(base: &Path) -> FreshRoot {
        let dir = PathBuf::from(WORK).join("root");
        // A root left by a killed run: stop and unmount it first.
        teardown(&dir).unwrap();
        fs::create_dir_all(&dir).unwrap();
        let root = FreshRoot { dir, closed: false };
        run(Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&root.dir)
            .arg("-xf")
            .arg(base))
        .unwrap();
        let d = |p: &str| root.dir.join(p).display().to_string();
        let (proc_, sys, dev, pts, shm, run_) = (
            d("proc"),
            d("sys"),
            d("dev"),
            d("dev/pts"),
            d("dev/shm"),
            d("run"),
        );
        for args in [
            &["-t", "proc", "proc", &proc_][..],
            &["--bind", "/sys", &sys],
            &["--bind", "/dev", &dev],
            // Mounts below the bound /dev must not reach the machine's own /dev.
            &["--make-private", &dev],
            &[
                "-t",
                "devpts",
                "-o",
                "newinstance,ptmxmode=0666",
                "devpts",
                &pts,
            ],
            &["-t", "tmpfs", "-o", "mode=1777", "tmpfs", &shm],
            &["-t", "tmpfs", "-o", "mode=755", "tmpfs", &run_],
        ] {
            run(Command::new("mount").args(args)).unwrap();
        }
        if let Ok(r) = fs::read("/etc/resolv.conf") {
            fs::write(root.dir.join("etc/resolv.conf"), r).unwrap();
        }
        let bin = root.dir.join(&OPSDECK_IN_ROOT[1..]);
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::copy(env!("CARGO_BIN_EXE_opsdeck"), &bin).unwrap();
        root
    }

    /// Tears down now and reports what could not be cleaned.
    fn close(mut self) -> Result<(), String> {
        self.closed = true;
        teardown(&self.dir)
    }
}

impl Drop for FreshRoot {
    fn drop(&mut self) {
        if !self.closed
            && let Err(e) = teardown(&self.dir)
        {
            eprintln!(
                "\n*** fresh_machine: could not clean up {}: {e}\n*** clean it by hand: \
                 chroot {0} {OPSDECK_IN_ROOT} lab down; umount what is mounted under it; \
                 rm -rf --one-file-system {0} ***\n",
                self.dir.display()
            );
        }
    }
}

/// `chroot DIR opsdeck ARGS`, stdout and stderr piped (not a terminal), with a clean
/// environment like a root login; killed at `timeout`. Returns the exit code and the output.
fn chroot_run(dir: &Path, args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let mut child = Command::new("chroot")
        .arg(dir)
        .arg(OPSDECK_IN_ROOT)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("chroot {}: {e}", dir.display()));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() >= deadline {
            let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !stderr.is_empty() {
        text.push_str("\n[stderr]\n");
        text.push_str(&stderr);
    }
    if code.is_none() {
        let _ = write!(text, "\n[killed after {}]\n", secs(timeout));
    }
    (code, text)
}

fn chroot_sh(dir: &Path, script: &str) -> Result<String, String> {
    run(Command::new("chroot")
        .arg(dir)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
}

fn installed_packages(dir: &Path, pkgs: &[&str]) -> Vec<String> {
    let out = chroot_sh(
        dir,
        &format!(
            "dpkg-query -W -f='${{Package}} ${{Status}}\\n' {} 2>/dev/null; true",
            pkgs.join(" ")
        ),
    )
    .unwrap();
    out.lines()
        .filter(|l| l.ends_with(" installed"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Copies the lab's server logs out of the root (to `WORK/lab-logs`), so a failure can be read
/// after the teardown.
fn save_lab_logs(dir: &Path) -> PathBuf {
    let to = PathBuf::from(WORK).join("lab-logs");
    let _ = fs::remove_dir_all(&to);
    fs::create_dir_all(&to).unwrap();
    for e in fs::read_dir(dir.join("var/tmp/opsdeck-lab/run"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "log") {
            let _ = fs::copy(&p, to.join(e.file_name()));
        }
    }
    to
}

// ---- reading the sweep -----------------------------------------------------------------------

/// One line of the health sweep: host, check (with its instance), state.
#[derive(Debug)]
struct CheckLine {
    host: String,
    check: String,
    state: String,
    line: String,
}

/// The check lines of the sweep `opsdeck demo` prints after "inventory PATH:".
fn sweep(output: &str) -> (Vec<CheckLine>, Option<String>) {
    let start = output.rfind("\ninventory ").unwrap_or(0);
    let mut checks = Vec::new();
    let mut worst = None;
    for line in output[start..].lines() {
        if let Some(w) = line.strip_prefix("worst: ") {
            worst = Some(w.to_owned());
        }
        let Some(rest) = line.strip_prefix("  ") else {
            continue;
        };
        // Columns are separated by at least two spaces; host and check never contain two.
        let parts: Vec<&str> = rest
            .split("  ")
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() >= 3 && ["ok", "warning", "unknown", "critical", "down"].contains(&parts[2])
        {
            checks.push(CheckLine {
                host: parts[0].to_owned(),
                check: parts[1].to_owned(),
                state: parts[2].to_owned(),
                line: line.to_owned(),
            });
        }
    }
    (checks, worst)
}

/// Checks that measure the whole machine's load rather than the lab: on a machine shared with
/// builds they may be busy for a moment, and only they justify sweeping again.
fn load_dependent(check: &str) -> bool {
    check.starts_with("host.cpu") || check.starts_with("php_fpm.workers")
}

// ---- the test --------------------------------------------------------------------------------

#[test]
fn the_readme_first_command_works_on_a_fresh_debian_root() {
    if !nix::unistd::geteuid().is_root() {
        return skip("not root (debootstrap, chroot and mount need root)");
    }
    if run(Command::new("sh").args(["-c", "command -v debootstrap"])).is_err() {
        return skip("debootstrap is not installed (apt-get install -y debootstrap)");
    }
    let t0 = Instant::now();
    let _lab_lock = lock(Path::new(LAB_LOCK));
    let _tests_lock = lock(&std::env::temp_dir().join("opsdeck-lab-tests.lock"));
    let lb = SocketAddr::from(([127, 0, 10, 1], 80));
    assert!(
        TcpStream::connect_timeout(&lb, Duration::from_millis(500)).is_err(),
        "something already listens on {lb}: a lab runs on this machine; stop it with \
         `opsdeck lab down` before this test"
    );

    let (base, made_in) = base_tarball();
    let t_extract = Instant::now();
    let root = FreshRoot::create(&base);
    let extracted_in = t_extract.elapsed();
    let preinstalled = installed_packages(&root.dir, &INSTALLED_BY_DEMO);
    assert!(
        preinstalled.is_empty(),
        "the base root {} is not fresh: it already has {preinstalled:?}; delete it",
        base.display()
    );

    // The README's first command, as a newcomer runs it (here without a terminal).
    let t_demo = Instant::now();
    let (code, first) = chroot_run(&root.dir, &["demo"], Duration::from_secs(25 * 60));
    let demo_in = t_demo.elapsed();
    let log = PathBuf::from(WORK).join("demo.log");
    let _ = fs::write(&log, &first);
    let logs = save_lab_logs(&root.dir);
    let context = |text: &str| {
        format!(
            "\n--- last lines (full output in {}, the lab's logs in {}):\n{}",
            log.display(),
            logs.display(),
            tail(text, 60)
        )
    };

    assert!(
        first.contains("the lab needs:")
            && first.contains("php extension mysqli")
            && first.contains("php extension redis"),
        "demo did not install the lab's packages (PHP extensions included):{}",
        context(&first)
    );
    assert!(
        first.contains("\nlab up in "),
        "the lab did not come up:{}",
        context(&first)
    );
    assert!(
        first.contains("left out: docker tier: this runs in a chroot"),
        "the lab did not say it left the docker tier out:{}",
        context(&first)
    );
    let installed = installed_packages(&root.dir, &INSTALLED_BY_DEMO);
    let not_installed: Vec<&&str> = INSTALLED_BY_DEMO
        .iter()
        .filter(|p| !installed.iter().any(|i| i == *p))
        .collect();
    assert!(
        not_installed.is_empty(),
        "demo did not install {not_installed:?}:{}",
        context(&first)
    );

    // Every check of the sweep ok. A check of the machine's own load (shared with builds) may
    // be busy for a moment: only then sweep again, as a user would, by running demo again.
    let (mut code, mut output) = (code, first.clone());
    let mut sweeps = 1;
    for attempt in 1..=5 {
        let (checks, _) = sweep(&output);
        let bad: Vec<&CheckLine> = checks.iter().filter(|c| c.state != "ok").collect();
        if code == Some(0) || bad.is_empty() || !bad.iter().all(|c| load_dependent(&c.check)) {
            break;
        }
        eprintln!(
            "fresh_machine: sweep {attempt}: only the machine's load is not ok, sweeping again:\n{}",
            bad.iter()
                .map(|c| c.line.chars().take(160).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_secs(10));
        (code, output) = chroot_run(&root.dir, &["demo"], Duration::from_secs(180));
        sweeps += 1;
        assert!(
            output.contains("is running"),
            "demo did not find the lab running:{}",
            context(&output)
        );
    }
    save_lab_logs(&root.dir);
    let (checks, worst) = sweep(&output);
    let bad: Vec<&str> = checks
        .iter()
        .filter(|c| c.state != "ok")
        .map(|c| c.line.as_str())
        .collect();
    assert!(
        bad.is_empty(),
        "not every check is ok:\n{}{}",
        bad.join("\n"),
        context(&output)
    );
    assert_eq!(code, Some(0), "demo's exit status:{}", context(&output));
    assert!(
        worst.as_deref().is_some_and(|w| w.starts_with("ok (")),
        "worst: {worst:?}{}",
        context(&output)
    );
    for h in LAB_HOSTS {
        assert!(
            checks.iter().any(|c| c.host == h),
            "no check of {h} in the sweep:{}",
            context(&output)
        );
    }
    assert!(
        checks.len() >= 60,
        "only {} checks in the sweep:{}",
        checks.len(),
        context(&output)
    );
    assert!(
        !checks.iter().any(|c| c.host == "sessions1"),
        "the sweep probes the docker tier that was left out:{}",
        context(&output)
    );

    let t_down = Instant::now();
    let dir = root.dir.clone();
    root.close().unwrap();
    assert!(mounts_under(&dir).is_empty() && processes_in(&dir).is_empty() && !dir.exists());
    eprintln!(
        "fresh_machine: base root {}; extract + mount {}; first demo {}; {} checks ok after \
         {sweeps} sweep(s); teardown {}; total {}",
        if made_in.is_zero() {
            format!("cached ({})", base.display())
        } else {
            format!("debootstrapped and cached in {}", secs(made_in))
        },
        secs(extracted_in),
        secs(demo_in),
        checks.len(),
        secs(t_down.elapsed()),
        secs(t0.elapsed())
    );
}
