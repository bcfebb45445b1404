//! The Debian packages the lab needs, and installing them for `opsdeck demo`.

use std::process::Command;

use super::layout::{LabError, Result};
use super::process::find_program;

/// Program → the Debian package that provides it.
const REQUIRED: &[(&str, &str)] = &[
    ("sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("nginx", "nginx"),
    ("php-fpm8.2", "php8.2-fpm"),
    ("php", "php8.2-cli"),
    ("mariadbd", "mariadb-server"),
    ("mariadb-install-db", "mariadb-server"),
    ("mariadb", "mariadb-client"),
    ("redis-server", "redis-server"),
    ("mount", "mount"),
];

/// Optional: the docker tier is left out without them.
pub const OPTIONAL: &[(&str, &str)] = &[
    ("dockerd", "docker.io"),
    ("docker", "docker.io"),
    ("busybox", "busybox-static"),
];

/// Missing programs (with their packages), PHP extensions included.
pub fn missing() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = REQUIRED
        .iter()
        .filter(|(p, _)| find_program(p).is_none())
        .map(|(p, pkg)| ((*p).to_owned(), *pkg))
        .collect();
    if find_program("php").is_some() {
        for (ext, pkg) in [("mysqli", "php-mysql"), ("redis", "php-redis")] {
            let loaded = Command::new("php")
                .args(["-r", &format!("exit(extension_loaded('{ext}') ? 0 : 1);")])
                .status()
                .is_ok_and(|s| s.success());
            if !loaded {
                out.push((format!("php extension {ext}"), pkg));
            }
        }
    }
    out
}

fn packages_of(m: &[(String, &'static str)]) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = m.iter().map(|(_, p)| *p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    pkgs
}

/// `Err` naming what is missing and the apt-get command that installs it.
pub fn check_required() -> Result<()> {
    let m = missing();
    if m.is_empty() {
        return Ok(());
    }
    Err(LabError::MissingPackages {
        programs: m
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages_of(&m).join(" "),
    })
}

/// Installs every missing package (and the optional Docker ones) with apt-get; root only.
pub fn install_missing(out: &mut dyn std::io::Write) -> Result<()> {
    let m = missing();
    if m.is_empty() {
        return Ok(());
    }
    let mut pkgs = packages_of(&m);
    for (p, pkg) in OPTIONAL {
        if find_program(p).is_none() && !pkgs.contains(pkg) {
            pkgs.push(pkg);
        }
    }
    if !nix::unistd::geteuid().is_root() {
        return check_required();
    }
    let _ = writeln!(
        out,
        "the lab needs: {}\nrunning: apt-get update && apt-get install -y {}",
        m.iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        pkgs.join(" ")
    );
    let ok = Command::new("apt-get")
        .arg("update")
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("apt-get")
            .args(["install", "-y"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        return Err(LabError::Failed(format!(
            "apt-get could not install {}; run it yourself: apt-get update && apt-get install -y {}",
            pkgs.join(" "),
            pkgs.join(" ")
        )));
    }
    check_required()
}
