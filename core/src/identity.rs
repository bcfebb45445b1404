//! Who is acting: the operator's OS account (from the real uid, not `$USER`, which is unset
//! under cron and can be anything) and the machine they act from. Recorded in every journal
//! line, lock and export.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// An operator: OS account and machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// The account name the uid maps to (`uid:1234` when it maps to none).
    pub account: String,
    pub uid: u32,
    /// This machine's host name.
    pub host: String,
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.account, self.host)
    }
}

/// The operator running this process (looked up once).
pub fn current() -> &'static Operator {
    static ME: OnceLock<Operator> = OnceLock::new();
    ME.get_or_init(|| {
        let uid = nix::unistd::getuid();
        let account = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid:{uid}"), |u| u.name);
        Operator {
            account,
            uid: uid.as_raw(),
            host: hostname(),
        }
    })
}

/// This machine's host name (`unknown` if it has none).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The kernel's boot id: with a pid, it names a process across reboots (a pid alone is
/// reused after a reboot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_uid_not_the_environment() {
        let me = current();
        let uid = nix::unistd::getuid();
        assert_eq!(me.uid, uid.as_raw());
        let expected = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name);
        if let Some(name) = expected {
            assert_eq!(me.account, name);
        }
        assert!(!me.host.is_empty());
        assert_eq!(me.to_string(), format!("{}@{}", me.account, me.host));
    }
}
