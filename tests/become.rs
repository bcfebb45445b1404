//! Privilege escalation against a real sshd and sudo: the login is an unprivileged account,
//! the runbook's commands run as root through `sudo -n`; an account whose sudo wants a
//! password gets a clear error and nothing changes. Needs root (to create the accounts and
//! their sudoers rules); CI runs as root.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use support::sshd::SshHosts;

const NOPW: &str = "opsdeck-t-sudo";
const PW: &str = "opsdeck-t-nosudo";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Creates `user` (if missing) with a sudoers rule.
fn account(user: &str, rule: &str) {
    if Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", user])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "useradd {user}");
    }
    // A new account is locked ("!" in shadow), and sshd refuses locked accounts even for
    // keys: "*" means no password can ever match, without locking.
    let _ = Command::new("usermod").args(["-p", "*", user]).status();
    let file = format!("/etc/sudoers.d/{user}");
    std::fs::write(&file, format!("{user} {rule}\n")).expect("sudoers rule");
    let _ = Command::new("chmod").args(["0440", &file]).status();
}

fn sudo_installed() -> bool {
    Path::new("/usr/bin/sudo").exists()
}

#[test]
fn an_unprivileged_login_escalates_with_sudo_and_a_password_prompt_is_a_clear_error() {
    if !is_root() || !sudo_installed() {
        assert!(
            std::env::var_os("OPSDECK_REQUIRE_ROOT_TESTS").is_none(),
            "this test must run (root and sudo are required)"
        );
        eprintln!("SKIPPED: needs root and sudo");
        return;
    }
    account(NOPW, "ALL=(ALL) NOPASSWD: ALL");
    account(PW, "ALL=(ALL) ALL");
    let hosts = SshHosts::start(2);
    // sshd reads AuthorizedKeysFile as the logging-in user: let the accounts reach it.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let open = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        open(hosts.dir.path(), 0o711);
        open(&hosts.authorized_keys, 0o644);
    }
    let work = tempfile::tempdir().expect("tempdir");
    // Only root may write here.
    let root_only = work.path().join("root-only");
    std::fs::create_dir(&root_only).expect("mkdir");
    let mut text = String::from("name = \"become\"\n[tiers.app]\n");
    for (i, user) in [NOPW, PW].iter().enumerate() {
        let table = hosts
            .ssh_table(i, "")
            .replace("user = \"root\"", &format!("user = \"{user}\""));
        let _ = write!(
            text,
            "\n[hosts.h{}]\ntier = \"app\"\nbecome = \"sudo\"\nssh = {table}\n",
            i + 1
        );
    }
    let inv = work.path().join("inv.toml");
    std::fs::write(&inv, text).expect("inventory");
    let runbooks = work.path().join("runbooks");
    std::fs::create_dir(&runbooks).expect("mkdir");
    std::fs::write(
        runbooks.join("as-root.toml"),
        format!(
            r#"id = "as-root"
title = "write where only root may"
[[steps]]
id = "who"
title = "who am I, unescalated"
kind = "diagnose"
target = {{ selector = "app" }}
shell = "id -un"
read_only = true
become = false
[[steps]]
id = "write"
title = "write as root"
kind = "action"
confirm = "yes"
target = {{ selector = "app" }}
shell = "id -un > {dir}/written-on-{{{{host}}}}"
"#,
            dir = root_only.display()
        ),
    )
    .expect("runbook");
    let run = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_opsdeck"))
            .env_remove("OPSDECK_INVENTORY")
            .env("OPSDECK_JOURNAL_DIR", work.path().join("journal"))
            .env("OPSDECK_RUNBOOKS", &runbooks)
            .env("OPSDECK_LOG_DIR", work.path().join("logs"))
            .args(["-i", &inv.display().to_string()])
            .args(["run", "as-root", "--approve", "all", "--target", target])
            .output()
            .expect("opsdeck runs")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // The login is unprivileged; the action ran as root.
    let o = run("h1");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o), hosts.log(0));
    assert!(
        text(&o).contains(NOPW),
        "the diagnosis ran as the login: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("[sudo] $ id -un >"),
        "the confirmation said sudo: {}",
        text(&o)
    );
    let written: Vec<String> = std::fs::read_dir(&root_only)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert_eq!(written, vec!["root\n".to_owned()], "written by root");

    // sudo wants a password: a clear error, and nothing changed.
    let o = run("h2");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("wants a password, and opsdeck never types one: nothing ran"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_dir(&root_only).expect("dir").count(),
        1,
        "nothing was written on h2"
    );
}
