//! The inventory: the stack's tiers, hosts, transports and services.
//!
//! `model` is the file as written; this module is the resolved form every other part uses:
//! defaults applied, `~/.ssh/config` consulted, secrets loaded into [`Secret`]s, references
//! checked. Loading is the only place that reads inventory files.

mod defaults;
mod error;
mod load;
pub mod model;
mod selector;
mod ssh_config;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use error::{InventoryError, Located};
pub use load::{LoadOptions, PASSWORD_CMD_TIMEOUT, load, load_str, load_str_with, load_with};
pub use model::{HostKeyPolicy, MysqlRole, RedisRole, TlsSettings, TlsVerify, Via};
pub use selector::{Selector, SelectorError};

use crate::secret::Secret;

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub name: String,
    /// The file it came from; `None` for the embedded default.
    pub source: Option<PathBuf>,
    pub tiers: Vec<Tier>,
    pub hosts: Vec<Host>,
    /// Threshold overrides for every host, as written (interpreted by the probes).
    #[serde(skip)]
    pub thresholds: Option<toml::Table>,
    /// Team mode (`[team]`): `None` works alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamConfig>,
}

/// Team mode settings, resolved.
#[derive(Debug, Clone, Serialize)]
pub struct TeamConfig {
    pub endpoints: Vec<String>,
    /// For `https://` endpoints (`None`: system CAs, full verification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    pub user: Option<String>,
    #[serde(skip)]
    pub password: Option<crate::secret::Secret>,
    #[serde(with = "humantime_serde_compat")]
    pub lease_ttl: std::time::Duration,
    /// Fall back to local locks when etcd is unreachable (else changing steps are refused).
    pub local_fallback: bool,
    pub second_person: Vec<String>,
    pub prefix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    pub name: String,
    pub description: Option<String>,
    pub read_only: bool,
    #[serde(skip)]
    pub thresholds: Option<toml::Table>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub tier: String,
    /// Explicit roles plus those implied by services (`primary`, `replica`, `master`,
    /// `sentinel`, ...).
    pub roles: Vec<String>,
    pub description: Option<String>,
    pub read_only: bool,
    pub transport: TransportSpec,
    pub services: Services,
    #[serde(skip)]
    pub thresholds: Option<toml::Table>,
    /// How runbook shell commands are escalated on this host (the login is unprivileged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#become: Option<Become>,
}

/// Privilege escalation: `sudo -n` (never prompts; a sudo that wants a password is an error
/// that changes nothing), optionally as another account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Become {
    pub method: String,
    pub user: Option<String>,
}

impl Become {
    /// `sudo -n -- sh -c 'COMMAND'` (with `-u USER` when set): one shell word for the command,
    /// so nothing of it is re-parsed by sudo.
    pub fn wrap(&self, command: &str) -> String {
        let quoted =
            shlex::try_quote(command).map_or_else(|_| "''".into(), std::borrow::Cow::into_owned);
        match &self.user {
            Some(u) => {
                let u =
                    shlex::try_quote(u).map_or_else(|_| "''".into(), std::borrow::Cow::into_owned);
                format!("sudo -n -u {u} -- sh -c {quoted}")
            }
            None => format!("sudo -n -- sh -c {quoted}"),
        }
    }

    /// What a person reads in front of a command (`sudo`, `sudo -u mysql`).
    pub fn label(&self) -> String {
        match &self.user {
            Some(u) => format!("sudo -u {u}"),
            None => "sudo".to_owned(),
        }
    }
}

impl Host {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

// One per host, built once at load: the size of the SSH variant costs nothing worth a Box
// (which every `match` on a host's transport would then see).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TransportSpec {
    Ssh(SshSpec),
    Docker(DockerSpec),
    Local,
}

impl TransportSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            TransportSpec::Ssh(_) => "ssh",
            TransportSpec::Docker(_) => "docker",
            TransportSpec::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshSpec {
    /// The name resolved through ssh_config: the inventory's `host` (or the host's name), or
    /// the `ProxyJump` entry for a jump host.
    pub alias: String,
    /// Where to connect (address or DNS name; ssh_config's `HostName`).
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// OpenSSH user certificates to offer (`CertificateFile`); a `KEY-cert.pub` next to an
    /// identity file is offered too, as ssh does.
    pub certificate_files: Vec<PathBuf>,
    /// Only the configured identities (and their certificates), even if the agent holds more.
    pub identities_only: bool,
    pub agent: bool,
    /// The agent's socket (`IdentityAgent`); `None`: `SSH_AUTH_SOCK` when connecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_socket: Option<PathBuf>,
    /// Checked first, and the file `accept-new` records keys in.
    pub known_hosts: PathBuf,
    /// Further files the host key is checked against, never written (the rest of
    /// `UserKnownHostsFile`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_known_hosts: Vec<PathBuf>,
    /// The name looked up in known_hosts instead of the address (`HostKeyAlias`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_alias: Option<String>,
    pub host_key_policy: HostKeyPolicy,
    /// The host this one is reached through; its own `jump` is the hop before it.
    pub jump: Option<Box<SshSpec>>,
    /// A command whose stdin/stdout carry the connection (`ProxyCommand`), tokens expanded;
    /// run with `sh -c`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_command: Option<String>,
    #[serde(with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub keepalive: Duration,
    pub max_sessions: usize,
    /// Where each resolved value came from, by field name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub origin: BTreeMap<&'static str, Origin>,
}

/// Where a resolved SSH setting came from. Precedence: the host's own inventory settings,
/// then ssh_config, then `[defaults.ssh]`, then the built-in default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The host's `ssh = { ... }` table (for a jump host met in ssh_config: the table of the
    /// host behind it).
    Inventory,
    /// The user's ssh_config, as `ssh -G` evaluates it.
    SshConfig,
    /// The inventory's `[defaults.ssh]`.
    Defaults,
    /// opsdeck's (or OpenSSH's) own default.
    Builtin,
}

impl SshSpec {
    /// A spec with the built-in defaults: key files and known_hosts under `~/.ssh`, strict
    /// host keys, no agent, no jump host.
    pub fn new(address: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        let address = address.into();
        let ssh_dir = ssh_config::home_dir().unwrap_or_default().join(".ssh");
        SshSpec {
            alias: address.clone(),
            address,
            port,
            user: user.into(),
            identity_files: Vec::new(),
            certificate_files: Vec::new(),
            identities_only: false,
            agent: false,
            agent_socket: None,
            known_hosts: ssh_dir.join("known_hosts"),
            also_known_hosts: Vec::new(),
            host_key_alias: None,
            host_key_policy: HostKeyPolicy::Strict,
            jump: None,
            proxy_command: None,
            connect_timeout: load::DEFAULT_CONNECT_TIMEOUT,
            keepalive: load::DEFAULT_KEEPALIVE,
            max_sessions: load::DEFAULT_MAX_SESSIONS,
            origin: BTreeMap::new(),
        }
    }

    /// `user@address:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.address, self.port)
    }

    /// The jump hosts in the order they are dialled (the first is reached directly).
    pub fn jump_chain(&self) -> Vec<&SshSpec> {
        let mut chain = Vec::new();
        let mut next = self.jump.as_deref();
        while let Some(j) = next {
            chain.push(j);
            next = j.jump.as_deref();
        }
        chain.reverse();
        chain
    }

    /// Identifies the connection this spec makes: equal keys can share one connection
    /// (provenance aside, everything that decides where and how to connect).
    pub fn connection_key(&self) -> String {
        let bare = SshSpec {
            origin: BTreeMap::new(),
            jump: None,
            ..self.clone()
        };
        match &self.jump {
            Some(j) => format!("{bare:?} via {}", j.connection_key()),
            None => format!("{bare:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DockerSpec {
    /// `unix://`, `tcp://` or `ssh://user@host`; `None`: `DOCKER_HOST`, `DOCKER_CONTEXT`, the
    /// current `docker context`, else the local socket (see `transport::docker::Endpoint`).
    pub endpoint: Option<String>,
    /// A `docker context` by name (used when `endpoint` is `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// TLS for a `tcp://` endpoint given in the inventory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// How the SSH host of an `ssh://` engine is reached (keys, known_hosts, jump), resolved
    /// like an inventory host's; `None`: from the URL with the usual defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,
    pub target: ContainerTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerTarget {
    Name(String),
    Compose { project: String, service: String },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Services {
    pub mysql: Vec<MysqlService>,
    pub redis: Vec<RedisService>,
    pub http: Vec<model::HttpDef>,
    pub nginx: Option<model::NginxDef>,
    pub php_fpm: Option<model::PhpFpmDef>,
    pub app: Option<model::AppDef>,
    pub haproxy: Option<model::HaproxyDef>,
    pub mounts: Vec<String>,
    pub queues: Vec<model::QueueDef>,
    pub processes: Vec<String>,
    /// Restart commands declared for processes: (process name, command).
    pub process_restarts: Vec<(String, String)>,
}

impl Services {
    pub fn is_empty(&self) -> bool {
        self.mysql.is_empty()
            && self.redis.is_empty()
            && self.http.is_empty()
            && self.nginx.is_none()
            && self.php_fpm.is_none()
            && self.haproxy.is_none()
            && self.mounts.is_empty()
            && self.queues.is_empty()
            && self.processes.is_empty()
    }
}

/// A password as configured: where it comes from (shown) and the value (never shown).
#[derive(Debug, Clone, Serialize)]
pub struct Password {
    /// `env:NAME`, `file:PATH` or `cmd:...`.
    pub source: String,
    #[serde(skip)]
    pub value: Secret,
    /// False when the value was not fetched (a `password_cmd` not run because the command
    /// only reads the inventory): `value` is then empty.
    pub resolved: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MysqlService {
    pub role: MysqlRole,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub via: Via,
    pub password: Option<Password>,
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// The client option file runbooks' shell steps use on the host, if declared.
    pub defaults_file: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisService {
    pub role: RedisRole,
    pub address: String,
    pub port: u16,
    pub via: Via,
    pub master_name: Option<String>,
    pub password: Option<Password>,
    /// ACL user; `None`: the `default` user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Database index (`SELECT`), 0 by default.
    pub db: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// How runbooks restart it, if declared.
    pub restart: Option<String>,
}

impl Inventory {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// Hosts of a tier, in inventory order.
    pub fn hosts_in<'a>(&'a self, tier: &'a str) -> impl Iterator<Item = &'a Host> + 'a {
        self.hosts.iter().filter(move |h| h.tier == tier)
    }

    /// Resolve a selector to hosts, in inventory order, without duplicates.
    pub fn select(&self, selector: &Selector) -> Result<Vec<&Host>, SelectorError> {
        selector.resolve(self)
    }
}

mod humantime_serde_compat {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}
