//! `~/.ssh/config`, consulted for what the inventory leaves unsaid (alias → HostName, User,
//! Port, IdentityFile, ProxyJump), the way `ssh` itself would.

use std::path::PathBuf;
use std::time::Duration;

use ssh2_config::{ParseRule, SshConfig};

/// What `ssh_config` says about one host alias.
#[derive(Debug, Default, Clone)]
pub struct SshConfigEntry {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
    pub connect_timeout: Option<Duration>,
}

/// The user's ssh config: `OPSDECK_SSH_CONFIG` if set (tests use it), else `~/.ssh/config`.
/// A missing or unreadable file means "nothing configured", as for `ssh`.
pub struct UserSshConfig(Option<SshConfig>);

impl UserSshConfig {
    pub fn load() -> Self {
        let path = std::env::var_os("OPSDECK_SSH_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home_dir().map(|h| h.join(".ssh").join("config")));
        let Some(path) = path else {
            return UserSshConfig(None);
        };
        let Ok(file) = std::fs::File::open(&path) else {
            return UserSshConfig(None);
        };
        let mut reader = std::io::BufReader::new(file);
        let rules = ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS;
        match SshConfig::default().parse(&mut reader, rules) {
            Ok(cfg) => UserSshConfig(Some(cfg)),
            Err(e) => {
                tracing::warn!("ignoring unparsable ssh config {}: {e}", path.display());
                UserSshConfig(None)
            }
        }
    }

    pub fn query(&self, alias: &str) -> SshConfigEntry {
        let Some(cfg) = &self.0 else {
            return SshConfigEntry::default();
        };
        let p = cfg.query(alias);
        SshConfigEntry {
            host_name: p.host_name,
            user: p.user,
            port: p.port,
            identity_files: p.identity_file.unwrap_or_default(),
            proxy_jump: p.proxy_jump.and_then(|j| j.into_iter().next()),
            connect_timeout: p.connect_timeout,
        }
    }
}

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}
