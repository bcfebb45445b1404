//! Process hygiene, through the `opsdeck` binary: a closed pipe ends it quietly, the files it
//! writes are private whatever the umask, the log level follows `OPSDECK_LOG`, `RUST_LOG` and
//! `-v`/`-q`, the lab refuses a directory someone else prepared (and never kills what a
//! planted pid file names), and a panic message is masked.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin;

fn opsdeck(logs: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY")
        .env_remove("OPSDECK_LOG")
        .env_remove("RUST_LOG")
        .env("OPSDECK_LOG_DIR", logs)
        .timeout(std::time::Duration::from_secs(60));
    c
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// An inventory of `n` local hosts: enough JSON to fill a pipe several times over.
fn big_inventory(dir: &Path, n: usize) -> PathBuf {
    let mut text = String::from("[tiers.app]\n");
    for i in 0..n {
        let _ = write!(
            text,
            "[hosts.app{i}]\ntier = \"app\"\ndescription = \"application server number {i}\"\nlocal = {{}}\nmounts = [\"/\", \"/var\"]\nprocesses = [\"php-fpm\", \"nginx\"]\n"
        );
    }
    let p = dir.join("big.toml");
    std::fs::write(&p, text).expect("inventory");
    p
}

/// The shipped runbooks, copied `copies` times under new ids: more JSON than a pipe holds.
fn many_runbooks(dir: &Path, copies: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let out = dir.join("runbooks");
    std::fs::create_dir_all(&out).expect("mkdir");
    for e in std::fs::read_dir(&src).expect("runbooks") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("read");
            for i in 0..copies {
                // The id is the file name.
                let copy = text.replacen(
                    &format!("id = \"{stem}\""),
                    &format!("id = \"{stem}-{i}\""),
                    1,
                );
                std::fs::write(out.join(format!("{stem}-{i}.toml")), copy).expect("copy");
            }
        }
    }
    out
}

#[test]
fn a_closed_pipe_ends_opsdeck_quietly_every_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = big_inventory(dir.path(), 400);
    let runbooks = many_runbooks(dir.path(), 20);
    let bin = cargo_bin("opsdeck");
    let errors = dir.path().join("stderr.txt");
    let statuses = dir.path().join("status.txt");
    // One shell loop, 200 rounds of each pipeline; opsdeck's stderr and exit status collected.
    let script = format!(
        "for i in $(seq 1 200); do \
           {bin} runbooks --json --no-health --runbooks {rb} 2>>{err} | head -c 100 >/dev/null; \
           echo \"runbooks ${{PIPESTATUS[0]}}\" >>{st}; \
           {bin} -i {inv} inventory --json 2>>{err} | head -c 10 >/dev/null; \
           echo \"inventory ${{PIPESTATUS[0]}}\" >>{st}; \
         done",
        bin = shlex::try_quote(&bin.to_string_lossy()).expect("quote"),
        rb = shlex::try_quote(&runbooks.to_string_lossy()).expect("quote"),
        inv = shlex::try_quote(&inv.to_string_lossy()).expect("quote"),
        err = shlex::try_quote(&errors.to_string_lossy()).expect("quote"),
        st = shlex::try_quote(&statuses.to_string_lossy()).expect("quote"),
    );
    let out = StdCommand::new("bash")
        .arg("-c")
        .arg(&script)
        .env("OPSDECK_LOG_DIR", dir.path().join("logs"))
        .env_remove("OPSDECK_INVENTORY")
        .output()
        .expect("bash");
    assert!(out.status.success(), "{out:?}");
    let stderr = std::fs::read_to_string(&errors).unwrap_or_default();
    assert!(
        !stderr.contains("panicked") && stderr.trim().is_empty(),
        "opsdeck wrote to stderr:\n{}",
        &stderr[..stderr.len().min(3000)]
    );
    let statuses = std::fs::read_to_string(&statuses).expect("statuses");
    assert_eq!(statuses.lines().count(), 400);
    for line in statuses.lines() {
        let code = line.rsplit(' ').next().unwrap_or_default();
        assert!(code == "0" || code == "141", "exit status {line}");
    }
    // Both outputs were big enough that the pipe did close under them.
    assert!(statuses.contains("inventory 141"), "{statuses}");
    assert!(statuses.contains("runbooks 141"), "{statuses}");
}

#[test]
fn the_log_is_private_under_umask_022() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("state/opsdeck");
    let bin = cargo_bin("opsdeck");
    let mut cmd = StdCommand::new(&bin);
    cmd.env_remove("OPSDECK_INVENTORY")
        .env("OPSDECK_LOG_DIR", &logs)
        .env("OPSDECK_LOG", "debug")
        .args(["exec", "all", "--", "true"]);
    // umask 022, as a login shell has it.
    let out = umask_022(cmd).output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    let log = logs.join("opsdeck.log");
    assert_eq!(mode(&logs), 0o700, "log directory");
    assert_eq!(mode(&log), 0o600, "log file");
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("exec finished")
    );

    // A log left world-readable (by an older version) is narrowed on the next run.
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut cmd = StdCommand::new(&bin);
    cmd.env_remove("OPSDECK_INVENTORY")
        .env("OPSDECK_LOG_DIR", &logs)
        .args(["exec", "all", "--", "true"]);
    assert!(umask_022(cmd).output().expect("runs").status.success());
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&log), 0o600);
}

/// Runs `cmd` with umask 022 (set in the child only).
fn umask_022(cmd: StdCommand) -> StdCommand {
    // `pre_exec` would need unsafe code: let a shell set the umask, then exec the program.
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut sh = StdCommand::new("sh");
    sh.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(program);
    sh.args(args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh
}

#[test]
fn the_lab_writes_its_secrets_and_inventory_private() {
    // The lab's own writers, without starting servers.
    let dir = tempfile::tempdir().expect("tempdir");
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let lab = opsdeck::lab::layout::Lab::new(Some(&dir.path().join("lab")));
    lab.create_or_check().expect("lab dir");
    let pw = lab.secret("redis").expect("secret");
    opsdeck::lab::invfile::write(&lab, false).expect("inventory");
    nix::sys::stat::umask(old);
    assert!(pw.len() >= 16);
    assert_eq!(mode(&lab.dir), 0o700);
    assert_eq!(mode(&lab.secrets()), 0o700);
    assert_eq!(mode(&lab.secrets().join("redis")), 0o600);
    assert_eq!(mode(&lab.inventory()), 0o600);
}

fn log_text(logs: &Path) -> String {
    std::fs::read_to_string(logs.join("opsdeck.log")).unwrap_or_default()
}

#[test]
fn the_log_level_follows_opsdeck_log_then_rust_log_and_v_q_move_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `exec` logs "exec finished" at info and the output at trace.
    let case = |name: &str, env: &[(&str, &str)], flags: &[&str]| -> String {
        let logs = dir.path().join(name);
        let mut cmd = opsdeck(&logs);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(flags)
            .args(["exec", "all", "--", "echo marker-output"])
            .assert()
            .success();
        log_text(&logs)
    };
    let default = case("default", &[], &[]);
    assert!(default.contains("exec finished") && !default.contains("marker-output"));
    let rust_warn = case("rust-warn", &[("RUST_LOG", "warn")], &[]);
    assert!(
        !rust_warn.contains("exec finished"),
        "RUST_LOG=warn: {rust_warn}"
    );
    let rust_trace = case("rust-trace", &[("RUST_LOG", "trace")], &[]);
    assert!(rust_trace.contains("marker-output"), "RUST_LOG=trace");
    let both = case(
        "both",
        &[("RUST_LOG", "warn"), ("OPSDECK_LOG", "info")],
        &[],
    );
    assert!(both.contains("exec finished"), "OPSDECK_LOG wins: {both}");
    let quiet = case("quiet", &[], &["-q"]);
    assert!(!quiet.contains("exec finished"), "-q: {quiet}");
    let raised = case("raised", &[("RUST_LOG", "warn")], &["-v"]);
    assert!(raised.contains("exec finished"), "-v raises warn to info");
    let very = case("very", &[], &["-vv"]);
    assert!(very.contains("marker-output"), "-vv is trace");
}

/// A directory that looks like a lab, owned by `uid`, with a pid file naming `victim`.
fn planted_lab(parent: &Path, uid: u32, victim: u32) -> PathBuf {
    let d = parent.join("lab");
    std::fs::create_dir_all(d.join("run")).expect("mkdir");
    std::fs::write(d.join(".opsdeck-lab"), "opsdeck lab directory\n").expect("marker");
    let start = opsdeck::lab::process::start_time(victim).expect("start time");
    std::fs::write(d.join("run/sshd-lb.pid"), format!("{victim}\n")).expect("pid");
    std::fs::write(d.join("run/sshd-lb.start"), format!("{start}\n")).expect("start");
    std::fs::write(
        d.join("inventory.toml"),
        "[hosts.x]\ntier = \"t\"\nlocal = {}\n",
    )
    .expect("inventory");
    for p in [
        d.clone(),
        d.join("run"),
        d.join("run/sshd-lb.pid"),
        d.join("run/sshd-lb.start"),
        d.join(".opsdeck-lab"),
    ] {
        nix::unistd::chown(&p, Some(nix::unistd::Uid::from_raw(uid)), None).expect("chown");
    }
    d
}

#[test]
fn the_lab_refuses_a_directory_someone_else_prepared_and_kills_nothing_it_names() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to hand a directory to another user");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // The victim: a process group leader, as every lab server is.
    let mut victim = StdCommand::new("sleep")
        .arg("300")
        .process_group(0)
        .spawn()
        .expect("sleep");
    let logs = tmp.path().join("logs");
    let nobody = 65534;

    // Owned by another user.
    let foreign = planted_lab(&tmp.path().join("a"), nobody, victim.id());
    std::fs::set_permissions(tmp.path().join("a"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    // Ours, but writable by everyone (anyone could have planted the pid file).
    let open = planted_lab(&tmp.path().join("b"), 0, victim.id());
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // A symlink to a directory of ours.
    let link = tmp.path().join("c");
    std::os::unix::fs::symlink(tmp.path().join("b"), &link).expect("symlink");

    for (dir, why) in [
        (&foreign, "owned by uid 65534"),
        (&open, "other users can write it"),
        (&link, "not a directory"),
    ] {
        let d = dir.to_str().expect("utf8");
        for args in [
            vec!["lab", "down", "--dir", d],
            vec!["lab", "up", "--dir", d],
            vec!["lab", "status", "--dir", d],
            vec!["drill", "reset", "--dir", d],
        ] {
            let out = opsdeck(&logs).args(&args).output().expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("refusing to use the lab directory") && err.contains(why),
                "{args:?}: {err}"
            );
            assert!(
                opsdeck::lab::process::pid_alive(victim.id()),
                "{args:?} killed the process a planted pid file named"
            );
        }
    }
    // A directory of ours that holds someone's files but no lab marker is not taken over.
    let other = tmp.path().join("d");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(other.join("notes.txt"), "mine").expect("write");
    let out = opsdeck(&logs)
        .args(["lab", "up", "--dir", other.to_str().expect("utf8")])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a lab directory"), "{err}");
    assert!(!other.join("run").exists() && !other.join("secrets").exists());

    let _ = victim.kill();
    let _ = victim.wait();
}

/// Run as a child of the test below (see there): installs the binary's panic hook, a
/// console-style hook over it, and panics with a secret in the message.
#[test]
fn panic_child() {
    let Ok(secret) = std::env::var("OPSDECK_PANIC_CHILD") else {
        return;
    };
    opsdeck::hygiene::install_panic_hook();
    let _s = opsdeck::secret::Secret::new(secret.clone());
    // What `ratatui::init` does: wrap the current hook, restore the terminal first.
    let inner = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("[terminal restored]");
        inner(info);
    }));
    panic!("cannot parse {secret:?} from {secret}");
}

#[test]
fn a_panic_message_is_masked_and_the_console_hook_still_runs_first() {
    let canary = "pn-a\"b\\c'%d \u{fc}";
    let out = StdCommand::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "panic_child", "--nocapture", "--test-threads=1"])
        .env("OPSDECK_PANIC_CHILD", canary)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child panicked: {err}");
    let debug = format!("{canary:?}");
    for form in [canary, &debug[1..debug.len() - 1]] {
        assert!(!err.contains(form), "panic output shows {form:?}:\n{err}");
    }
    let restored = err.find("[terminal restored]").expect("console hook ran");
    let report = err
        .find("opsdeck: internal error (panic")
        .unwrap_or_else(|| panic!("masked report printed:\n{err}"));
    assert!(
        restored < report,
        "the terminal is restored before the report"
    );
    // Masked, not dropped (the quoted form may be masked quotes and all).
    assert!(
        err.contains("cannot parse \"********\" from ********")
            || err.contains("cannot parse ******** from ********"),
        "{err}"
    );
}
