//! The unprivileged account the lab's hosts are reached as, and its sudo rule.
//!
//! Real stacks do not let root log in over SSH (the seeds harden SSH), so neither does the lab:
//! its sshd instances refuse root and accept only [`LAB_USER`], with the lab's client key. The
//! runbooks escalate the way the inventory says (`become = "sudo"`), which the engine runs as
//! `sudo -n -- sh -c '…'`: the rule in [`SUDOERS`] lets the account run exactly that, without a
//! password. The probes need no privilege: they read `/proc` and `statvfs` over SFTP.
//!
//! `lab up` creates the account (idempotently; it is marked as the lab's by its comment) and
//! writes the rule, checked with `visudo -cf` before it is put in place. `lab down` removes
//! both, since the rule amounts to root for whoever holds the lab's key. An account of that name
//! that the lab did not create is never used or removed: `lab up` stops and says so.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::layout::{LabError, Result};
use super::process::find_program;

/// The login every lab host accepts.
pub const LAB_USER: &str = "opsdeck";
/// The account's comment (GECOS): how the lab recognises an account it created.
pub const COMMENT: &str = "opsdeck lab (created by opsdeck lab up; removed by lab down)";
/// The sudo rule the lab writes.
pub const SUDOERS: &str = "/etc/sudoers.d/opsdeck-lab";

/// `getent passwd NAME` fields, if the account exists.
fn passwd(name: &str) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some(line.split(':').map(str::to_owned).collect())
}

/// True when the account exists and is the lab's own.
pub fn exists_as_ours() -> bool {
    passwd(LAB_USER).is_some_and(|f| f.get(4).map(String::as_str) == Some(COMMENT))
}

fn program(name: &str, package: &str) -> Result<std::path::PathBuf> {
    find_program(name).ok_or_else(|| LabError::MissingPackages {
        programs: name.to_owned(),
        packages: package.to_owned(),
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(LabError::io(what.to_owned()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Failed(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The rule: the account may run `sh` as root without a password — what `sudo -n -- sh -c`
/// asks for. `sudo` finds `sh` through its `secure_path` (`/usr/bin/sh` on a merged-/usr
/// system, `/bin/sh` elsewhere), so both are named.
pub fn sudoers_rule() -> String {
    format!(
        "# Written by `opsdeck lab up`; `opsdeck lab down` removes it.\n\
         # The lab's runbooks escalate as `sudo -n -- sh -c '...'` (inventory: become = \"sudo\").\n\
         {LAB_USER} ALL=(root) NOPASSWD: /bin/sh, /usr/bin/sh\n"
    )
}

/// Creates the account unless it exists as the lab's, and (re)writes its sudo rule. Returns
/// whether the account was created now.
pub fn ensure() -> Result<bool> {
    let created = match passwd(LAB_USER) {
        Some(f) if f.get(4).map(String::as_str) == Some(COMMENT) => {
            // Unlocked, as created (see below), whatever happened to it since.
            let usermod = program("usermod", "passwd")?;
            run(
                Command::new(usermod).args(["--password", "*", LAB_USER]),
                &format!("unlocking the lab account {LAB_USER}"),
            )?;
            false
        }
        Some(_) => {
            return Err(LabError::Failed(format!(
                "an account named {LAB_USER:?} exists and was not created by the lab: the lab \
                 will not give it a sudo rule or log in as it\n  check who uses it; remove it \
                 (userdel {LAB_USER}) if it is a leftover"
            )));
        }
        None => {
            let useradd = program("useradd", "passwd")?;
            run(
                Command::new(useradd).args([
                    "--system",
                    "--create-home",
                    "--shell",
                    "/bin/sh",
                    "--comment",
                    COMMENT,
                    // No password at all (`*`), rather than a locked one (`!`): sshd refuses
                    // key logins to locked accounts when it does not use PAM.
                    "--password",
                    "*",
                    LAB_USER,
                ]),
                &format!("creating the lab account {LAB_USER}"),
            )?;
            true
        }
    };
    write_sudoers(Path::new(SUDOERS))?;
    Ok(created)
}

/// Writes the rule next to `path` under a name sudo ignores (it holds a `.`), checks it with
/// `visudo -cf`, then renames it into place, mode 0440.
fn write_sudoers(path: &Path) -> Result<()> {
    let visudo = program("visudo", "sudo")?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(LabError::io(format!(
            "writing {} (the lab needs root)",
            tmp.display()
        )))?;
        f.write_all(sudoers_rule().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(LabError::io(format!("writing {}", tmp.display())))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440))
        .map_err(LabError::io(format!("chmod {}", tmp.display())))?;
    let checked = run(
        Command::new(visudo).arg("-cf").arg(&tmp),
        &format!("visudo -cf {}", tmp.display()),
    );
    if let Err(e) = checked {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(LabError::io(format!("installing {}", path.display())))
}

/// Removes the sudo rule, and the account with its home if the lab created it. Returns what
/// was done, for `lab down` to print.
pub fn remove() -> Result<Vec<String>> {
    let mut done = Vec::new();
    if Path::new(SUDOERS).exists() {
        fs::remove_file(SUDOERS).map_err(LabError::io(format!("removing {SUDOERS}")))?;
        done.push(format!("removed {SUDOERS}"));
    }
    if exists_as_ours() {
        let userdel = program("userdel", "passwd")?;
        // --force: a session the lab's sshd left behind must not keep the account alive.
        run(
            Command::new(userdel).args(["--force", "--remove", LAB_USER]),
            &format!("removing the lab account {LAB_USER}"),
        )?;
        done.push(format!("removed the account {LAB_USER}"));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_only_sh_for_the_lab_account() {
        let rule = sudoers_rule();
        let lines: Vec<&str> = rule.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            ["opsdeck ALL=(root) NOPASSWD: /bin/sh, /usr/bin/sh"],
            "{rule}"
        );
    }

    #[test]
    fn the_rule_passes_visudo() {
        let visudo = find_program("visudo").expect("visudo (Debian package sudo) is installed");
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("rule");
        fs::write(&p, sudoers_rule()).expect("write");
        let out = Command::new(visudo)
            .arg("-cf")
            .arg(&p)
            .output()
            .expect("visudo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
