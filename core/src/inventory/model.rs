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
    /// Team mode: locks, the shared journal and two-person approval on etcd.
    pub team: Option<Spanned<TeamDef>>,
}

/// `[team]`: an etcd cluster the operators of this inventory share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamDef {
    /// `http://host:port` of each member (more than one: a dead member is skipped).
    pub endpoints: Vec<String>,
    /// etcd user (role-based auth), with one of the password sources.
    pub user: Option<String>,
    pub password: Option<Spanned<toml::Value>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub password_cmd: Option<Spanned<String>>,
    /// How long a lock outlives a holder that stopped renewing it (default 10s).
    #[serde(default, with = "opt_duration")]
    pub lease_ttl: Option<std::time::Duration>,
    /// etcd unreachable: `refuse` changing steps (default) or fall back to `local` locks
    /// with a loud warning and a journal record.
    pub on_unreachable: Option<Spanned<String>>,
    /// Tiers whose changing steps need a second person's approval.
    #[serde(default)]
    pub second_person: Vec<String>,
    /// Key prefix (default `/opsdeck/<inventory name>`).
    pub prefix: Option<String>,
    /// TLS to `https://` endpoints: `tls = true` (system CAs) or `tls = { ca_file = "...",
    /// client_cert = "...", client_key = "..." }` (etcd's `--client-cert-auth`).
    #[serde(default, deserialize_with = "tls_setting")]
    pub tls: Option<TlsSettings>,
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
    /// The application deployed on the host (for runbooks that change its configuration).
    pub app: Option<AppDef>,
    /// HAProxy as a load balancer: its stats page (probed) and runtime API socket.
    pub haproxy: Option<HaproxyDef>,
    /// Mount points whose disk and inode usage is watched.
    #[serde(default)]
    pub mounts: Vec<String>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    /// Processes that must be running (e.g. a queue worker): a name, or
    /// `{ name = "queue:work", restart = "supervisorctl restart 'laravel-worker:*'" }`.
    #[serde(default)]
    pub processes: Vec<ProcessDef>,
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
    /// A `docker context` by name (its endpoint and TLS files), instead of `endpoint`.
    pub context: Option<String>,
    /// For a `tcp://` endpoint: TLS with these files (as `DOCKER_CERT_PATH` gives them).
    #[serde(default, deserialize_with = "tls_setting")]
    pub tls: Option<TlsSettings>,
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
    /// TLS to the server: `tls = true` (system CAs) or `tls = { ca_file = "...", ... }`.
    #[serde(default, deserialize_with = "tls_setting")]
    pub tls: Option<TlsSettings>,
    /// An option file for the command-line clients on the database host, used by runbook
    /// shell steps (`mariadb-dump --defaults-file={{mysql.defaults_file}}`); Debian keeps one
    /// in /etc/mysql/debian.cnf.
    pub defaults_file: Option<String>,
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
    /// ACL user (`AUTH username password`); without it the password is the `default` user's.
    pub username: Option<String>,
    /// Database index selected after login (`SELECT n`); default 0.
    pub db: Option<Spanned<i64>>,
    /// TLS to the server (`tls-port`): `tls = true` or `tls = { ca_file = "...", ... }`.
    #[serde(default, deserialize_with = "tls_setting")]
    pub tls: Option<TlsSettings>,
    /// How runbooks restart this server on its host where no service manager does it
    /// (`{{redis.restart}}`); default: the runbook detects systemd or `service`.
    pub restart: Option<String>,
}

/// A process that must be running, by name (matched against command lines), and how
/// runbooks restart it (`{{process.restart}}`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ProcessDef {
    Name(String),
    Full {
        name: String,
        restart: Option<String>,
    },
}

impl ProcessDef {
    pub fn name(&self) -> &str {
        match self {
            ProcessDef::Name(n) | ProcessDef::Full { name: n, .. } => n,
        }
    }

    pub fn restart(&self) -> Option<&str> {
        match self {
            ProcessDef::Name(_) => None,
            ProcessDef::Full { restart, .. } => restart.as_deref(),
        }
    }
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
    /// For `https://` URLs: the CA to trust, a client certificate, how strictly to verify.
    #[serde(
        default,
        deserialize_with = "tls_setting",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls: Option<TlsSettings>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NginxDef {
    /// `stub_status` URL, if enabled.
    pub status_url: Option<String>,
    /// Upstream servers this load balancer balances over (`host:port`).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// How runbooks make nginx re-read its configuration (`{{nginx.reload}}`); default: the
    /// runbook uses `nginx -s reload`.
    pub reload: Option<String>,
    /// The file holding the `server` lines of the balanced upstream, which a blue/green
    /// switch rewrites (`{{nginx.upstream_file}}`).
    pub upstream_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PhpFpmDef {
    /// The pool's `pm.status_path`, reached over HTTP (e.g. `http://127.0.0.1/fpm-status`).
    pub status_url: String,
    /// How runbooks restart php-fpm on this host where no service manager does it
    /// (`{{php_fpm.restart}}`).
    pub restart: Option<String>,
}

/// HAProxy on a load balancer.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyDef {
    /// The stats page in CSV (`stats uri /stats` → `http://HOST:PORT/stats;csv`).
    pub stats_url: String,
    /// The runtime API socket (`stats socket ... level admin`) runbooks drain and enable
    /// servers through (`{{haproxy.socket}}`).
    pub socket: Option<String>,
    /// The servers it balances over (`host:port`), as for nginx: a load balancer's HTTP
    /// symptom implicates them when a runbook's target comes from health.
    #[serde(default)]
    pub upstreams: Vec<String>,
}

/// The application on an app server.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppDef {
    /// Its environment file (`DB_HOST=...`, as the seeds' Laravel `.env`): what a failover
    /// repoints (`{{app.env}}`).
    pub env: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// Redis list name.
    pub name: String,
    /// Inventory host holding the Redis that stores the list; default: the first Redis master.
    pub redis_host: Option<String>,
}

/// How a TLS client checks the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsVerify {
    /// The chain up to a trusted CA, and the name (the default).
    #[default]
    Full,
    /// The chain only: any name the trusted CA signed is accepted.
    Ca,
    /// Nothing: encrypted, but anyone in between can read it. For tests only.
    None,
}

/// TLS settings of a service connection (MySQL, Redis, HTTPS, a Docker engine).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificates to trust instead of the system bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (chain), for servers that ask for one; needs `client_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<std::path::PathBuf>,
    #[serde(default)]
    pub verify: TlsVerify,
    /// The name the certificate must carry (and the SNI sent), when it differs from the
    /// address dialled (a service reached by IP address or through `via = "ssh"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `tls = true` (defaults), `tls = false` (none) or a `{ ... }` table of [`TlsSettings`].
fn tls_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<TlsSettings>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<TlsSettings>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true, false or a table such as { ca_file = \"ca.pem\" }")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.then(TlsSettings::default))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            TlsSettings::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
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
