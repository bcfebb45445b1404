//! The Debian packages the lab needs, and installing them for `opsdeck demo`.
//!
//! Every requirement names the Debian package that provides it, and the install list is built
//! from those packages. Whether a requirement is met never depends on another requirement: a
//! PHP extension counts as missing on a machine without PHP (its package goes into the list
//! with PHP's own), rather than being checked only once `php` exists.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::layout::{LabError, Result};
use super::process::find_program;

/// What the lab looks for to tell that a requirement is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provides {
    /// A program in PATH or in the sbin directories.
    Program(&'static str),
    /// A PHP extension: met when its package is installed or the installed `php` loads it.
    PhpExtension(&'static str),
}

impl Provides {
    /// How a missing requirement is named to the user.
    pub fn label(self) -> String {
        match self {
            Provides::Program(p) => p.to_owned(),
            Provides::PhpExtension(e) => format!("php extension {e}"),
        }
    }
}

/// One thing the lab needs and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub provides: Provides,
    pub package: &'static str,
}

const fn program(name: &'static str, package: &'static str) -> Need {
    Need {
        provides: Provides::Program(name),
        package,
    }
}

const fn php_extension(name: &'static str, package: &'static str) -> Need {
    Need {
        provides: Provides::PhpExtension(name),
        package,
    }
}

/// Everything the lab runs, on a minimal Debian (`debootstrap --variant=minbase`) included.
pub const REQUIRED: &[Need] = &[
    program("sshd", "openssh-server"),
    program("ssh-keygen", "openssh-client"),
    program("nginx", "nginx"),
    program("php-fpm8.2", "php8.2-fpm"),
    program("php", "php8.2-cli"),
    // The app's /health and the worker: mysqli for MariaDB, Redis and RedisSentinel classes.
    php_extension("mysqli", "php8.2-mysql"),
    php_extension("redis", "php-redis"),
    program("mariadbd", "mariadb-server"),
    program("mariadb-install-db", "mariadb-server"),
    program("mariadb", "mariadb-client"),
    program("redis-server", "redis-server"),
    program("redis-cli", "redis-tools"),
    // The lab's disks; the process checks (pgrep) and the top view (ps) on every lab host.
    program("mount", "mount"),
    program("pgrep", "procps"),
    program("ps", "procps"),
    // The shipped runbooks' shell steps on the lab's hosts (api-latency-degradation,
    // blue-green-switch; backup-verify's dump; haproxy-drain-enable's runtime API).
    program("curl", "curl"),
    program("mariadb-dump", "mariadb-client"),
    program("socat", "socat"),
    // HAProxy, the load balancer of seed 001's phase 3 (lb2).
    program("haproxy", "haproxy"),
    // The lab account the hosts are reached as, and the sudo its runbooks escalate with.
    program("useradd", "passwd"),
    program("sudo", "sudo"),
    program("visudo", "sudo"),
];

/// Optional: the docker tier is left out without them.
pub const OPTIONAL: &[Need] = &[
    program("dockerd", "docker.io"),
    program("docker", "docker.io"),
    program("busybox", "busybox-static"),
];

/// True when dpkg lists `package` as installed.
fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).ends_with(" installed")
        })
}

fn php_loads(ext: &str) -> bool {
    find_program("php").is_some_and(|php| {
        Command::new(php)
            .args(["-r", &format!("exit(extension_loaded('{ext}') ? 0 : 1);")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether one requirement is met on this machine.
fn present(need: &Need) -> bool {
    match need.provides {
        Provides::Program(p) => find_program(p).is_some(),
        Provides::PhpExtension(e) => package_installed(need.package) || php_loads(e),
    }
}

/// The requirements among `needs` that `present` says are not met, as (label, package).
fn unmet(needs: &[Need], present: &dyn Fn(&Need) -> bool) -> Vec<(String, &'static str)> {
    needs
        .iter()
        .filter(|n| !present(n))
        .map(|n| (n.provides.label(), n.package))
        .collect()
}

/// Missing requirements (with their packages), PHP extensions included.
pub fn missing() -> Vec<(String, &'static str)> {
    unmet(REQUIRED, &present)
}

fn packages_of(m: &[(String, &'static str)]) -> Vec<&'static str> {
    let mut pkgs: Vec<&'static str> = m.iter().map(|(_, p)| *p).collect();
    pkgs.sort_unstable();
    pkgs.dedup();
    pkgs
}

/// What `install_missing` hands to apt-get: the missing required packages, and with them the
/// optional ones not yet installed (one apt-get run instead of two).
fn install_list(
    required: &[(String, &'static str)],
    optional: &[(String, &'static str)],
) -> Vec<&'static str> {
    let mut pkgs = packages_of(required);
    for p in packages_of(optional) {
        if !pkgs.contains(&p) {
            pkgs.push(p);
        }
    }
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

/// While it lives, Debian's maintainer scripts do not start the servers they install: the
/// system's own nginx on 0.0.0.0:80 or sshd on 0.0.0.0:22 would take the ports the lab binds on
/// 127.0.10.x. An existing `policy-rc.d` (the administrator's) is left as it is.
struct NoServiceStarts {
    path: Option<PathBuf>,
}

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn new() -> NoServiceStarts {
        let path = PathBuf::from(Self::PATH);
        if path.exists() {
            return NoServiceStarts { path: None };
        }
        let written = fs::write(
            &path,
            "#!/bin/sh\n# Written by `opsdeck demo` while it runs apt-get: the lab runs its own \
             servers.\n# Safe to delete if it was left behind.\nexit 101\n",
        )
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)));
        NoServiceStarts {
            path: written.is_ok().then_some(path),
        }
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

/// Installs every missing package (and the optional Docker ones) with apt-get; root only.
pub fn install_missing(out: &mut dyn std::io::Write) -> Result<()> {
    let m = missing();
    if m.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return check_required();
    }
    let pkgs = install_list(&m, &unmet(OPTIONAL, &present));
    let _ = writeln!(
        out,
        "the lab needs: {}\nrunning: apt-get update && apt-get install -y --no-install-recommends {}\n\
         (the packages' own services are not started: the lab runs its own on 127.0.10.x)",
        m.iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        pkgs.join(" ")
    );
    let _ = out.flush();
    let ok = {
        let _no_starts = NoServiceStarts::new();
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("apt-get")
                .args(["-q", "install", "-y", "--no-install-recommends"])
                .args(&pkgs)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if !ok {
        return Err(LabError::Failed(format!(
            "apt-get could not install {}; run it yourself: apt-get update && apt-get install -y {}",
            pkgs.join(" "),
            pkgs.join(" ")
        )));
    }
    check_required()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &[(String, &'static str)]) -> Vec<String> {
        m.iter().map(|(p, _)| p.clone()).collect()
    }

    #[test]
    fn a_machine_without_php_gets_the_php_extensions_too() {
        let m = unmet(REQUIRED, &|_| false);
        let names = names(&m);
        assert!(
            names.contains(&"php extension mysqli".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"php extension redis".to_owned()),
            "{names:?}"
        );
        let pkgs = install_list(&m, &unmet(OPTIONAL, &|_| false));
        for p in [
            "php8.2-cli",
            "php8.2-fpm",
            "php8.2-mysql",
            "php-redis",
            "procps",
            "haproxy",
            "socat",
            "sudo",
            "docker.io",
            "busybox-static",
        ] {
            assert!(pkgs.contains(&p), "{p} not in {pkgs:?}");
        }
        let mut sorted = pkgs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), pkgs.len(), "a package twice: {pkgs:?}");
    }

    #[test]
    fn only_what_is_missing_is_installed() {
        let m = unmet(REQUIRED, &|n| n.package != "php-redis");
        assert_eq!(m, vec![("php extension redis".to_owned(), "php-redis")]);
        assert_eq!(install_list(&m, &[]), vec!["php-redis"]);
        assert!(unmet(REQUIRED, &|_| true).is_empty());
    }
}
