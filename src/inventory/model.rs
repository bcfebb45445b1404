//! The inventory file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error with a position instead of a
//! silently ignored setting. Values that later checks must point at are `Spanned`.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Shown in the console header and in reports.
    pub name: Option<String>,
    #[serde(default)]
    pub defaults: Defaults,
    /// Tiers in traffic order (lb, app, cache, db, worker, ...).
    #[serde(default)]
    pub tiers: IndexMap<String, TierDef>,
    #[serde(default)]
    pub hosts: IndexMap<String, Spanned<HostDef>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub ssh: SshDef,
    /// Threshold overrides for every host (see `probes::thresholds`).
    pub thresholds: Option<toml::Table>,
    /// Privilege escalation for every host's runbook commands: `"sudo"` (or `"none"`).
    pub r#become: Option<Spanned<String>>,
    /// Run escalated commands as this account (default root).
    pub become_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierDef {
    pub description: Option<String>,
    /// Refuse every changing runbook step on this tier's hosts.
    #[serde(default)]
    pub read_only: bool,
    pub thresholds: Option<toml::Table>,
    /// Privilege escalation for this tier's hosts: `"sudo"` or `"none"`.
    pub r#become: Option<Spanned<String>>,
    pub become_user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    pub tier: Spanned<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub read_only: bool,

    // Exactly one transport.
    pub ssh: Option<Spanned<SshDef>>,
    pub docker: Option<Spanned<DockerDef>>,
    pub local: Option<Spanned<LocalDef>>,

    // Services.
    #[serde(default)]
    pub mysql: Vec<Spanned<MysqlDef>>,
    #[serde(default)]
    pub redis: Vec<Spanned<RedisDef>>,
    #[serde(default)]
    pub http: Vec<HttpDef>,
    pub nginx: Option<NginxDef>,
    pub php_fpm: Option<PhpFpmDef>,
    /// Mount points whose disk and inode usage is watched.
    #[serde(default)]
    pub mounts: Vec<String>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    /// Process names that must be running (e.g. a queue worker).
    #[serde(default)]
    pub processes: Vec<String>,
    pub thresholds: Option<toml::Table>,
    /// Privilege escalation for this host's runbook commands: `"sudo"` or `"none"`.
    pub r#become: Option<Spanned<String>>,
    pub become_user: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshDef {
    /// Address, DNS name or `~/.ssh/config` alias.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    #[serde(default)]
    pub identity_files: Vec<String>,
    /// Also offer the keys held by `ssh-agent` (`SSH_AUTH_SOCK`).
    pub agent: Option<bool>,
    pub known_hosts: Option<String>,
    pub host_key_policy: Option<HostKeyPolicy>,
    /// OpenSSH user certificates to offer (like ssh_config's `CertificateFile`).
    #[serde(default)]
    pub certificate_files: Vec<String>,
    /// Offer only `identity_files` (and their certificates), even when the agent holds more
    /// keys (like ssh_config's `IdentitiesOnly`).
    pub identities_only: Option<bool>,
    /// The host(s) to jump through, like ssh's `ProxyJump`: an inventory host (with ssh
    /// transport), an ssh_config alias or `[user@]host[:port]`; a comma list is a chain, the
    /// first dialled first; `"none"` turns off a jump ssh_config would add.
    pub jump: Option<Spanned<String>>,
    /// A command whose stdin/stdout carry the connection, like ssh's `ProxyCommand` (`%h`,
    /// `%p`, `%r`, `%n`, `%%` expanded); run with `sh -c`.
    pub proxy_command: Option<Spanned<String>>,
    #[serde(default, with = "opt_duration")]
    pub connect_timeout: Option<std::time::Duration>,
    #[serde(default, with = "opt_duration")]
    pub keepalive: Option<std::time::Duration>,
    /// Concurrent channels opened on the one connection (sshd's `MaxSessions`, 10 by default).
    pub max_sessions: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown hosts and changed keys (the default).
    Strict,
    /// Record an unknown host's key once; still refuse a changed key.
    AcceptNew,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerDef {
    /// `unix:///path/docker.sock` or `tcp://127.0.0.1:2375`; default `DOCKER_HOST` or the local
    /// socket.
    pub endpoint: Option<String>,
    pub container: Option<String>,
    pub project: Option<String>,
    pub service: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDef {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MysqlRole {
    Primary,
    Replica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisRole {
    Master,
    Replica,
    Sentinel,
}

/// How a service port is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Connect straight to `address:port`.
    #[default]
    Direct,
    /// Through a direct-tcpip tunnel over the host's SSH connection (for services that listen
    /// only on the host's loopback).
    Ssh,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlDef {
    pub role: MysqlRole,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    #[serde(default)]
    pub via: Via,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_cmd: Option<Spanned<String>>,
    /// Database the application uses (for runbooks that check writes).
    pub database: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisDef {
    pub role: RedisRole,
    pub address: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub via: Via,
    /// For sentinels (and to re-resolve a master): the monitored master's name.
    pub master_name: Option<String>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_cmd: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDef {
    /// e.g. `http://127.0.10.1/health`
    pub url: String,
    /// Parse the body as the application's health JSON (database / redis / queue fields).
    #[serde(default)]
    pub app_health: bool,
    #[serde(default)]
    pub via: Via,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NginxDef {
    /// `stub_status` URL, if enabled.
    pub status_url: Option<String>,
    /// Upstream servers this load balancer balances over (`host:port`).
    #[serde(default)]
    pub upstreams: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhpFpmDef {
    /// The pool's `pm.status_path`, reached over HTTP (e.g. `http://127.0.0.1/fpm-status`).
    pub status_url: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Redis list name.
    pub name: String,
    /// Inventory host holding the Redis that stores the list; default: the first Redis master.
    pub redis_host: Option<String>,
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: {e} (write e.g. \"5s\", \"500ms\", \"2m\")"
            ))
        })
    }
}
