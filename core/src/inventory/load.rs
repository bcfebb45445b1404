//! Reading, checking and resolving an inventory file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{InventoryError, Located};
use super::model::{self, HostDef, InventoryFile, SshDef};
use super::ssh_config::{
    JumpHop, Query, TokenSet, Tokens, UserSshConfig, home_dir, parse_proxy_jump,
};
use super::{
    ContainerTarget, DockerSpec, Host, HostKeyPolicy, Inventory, MysqlService, Origin, Password,
    RedisService, Services, SshSpec, Tier, TlsSettings, TransportSpec, Via,
};
use crate::secret::Secret;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// sshd's default `MaxSessions`.
pub const DEFAULT_MAX_SESSIONS: usize = 10;

const FORMAT_HINT: &str = "the inventory format is documented in README.md (\"Inventory\")";

/// How long a `password_cmd` may run before its process group is killed.
pub const PASSWORD_CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a `password_cmd`'s output read at most (a password is a line).
const PASSWORD_CMD_MAX_OUTPUT: u64 = 64 * 1024;

/// How an inventory is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Run every `password_cmd` now. Off for commands that only read the inventory
    /// (`check`, `inventory`): linting a file must never run the commands it names. An
    /// unresolved password has an empty value and `resolved = false`.
    pub run_password_cmds: bool,
    /// Limit for each `password_cmd`.
    pub password_cmd_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            run_password_cmds: true,
            password_cmd_timeout: PASSWORD_CMD_TIMEOUT,
        }
    }
}

impl LoadOptions {
    /// Reads the file without running any `password_cmd`.
    pub fn without_password_cmds() -> Self {
        LoadOptions {
            run_password_cmds: false,
            ..LoadOptions::default()
        }
    }
}

/// Loads an inventory file, or the embedded default when `path` is `None`, running every
/// `password_cmd` (see [`load_with`]).
pub fn load(path: Option<&Path>) -> Result<Inventory, InventoryError> {
    load_with(path, &LoadOptions::default())
}

/// Loads an inventory file, or the embedded default when `path` is `None`.
pub fn load_with(path: Option<&Path>, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    match path {
        None => Ok(super::defaults::local_default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| InventoryError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            load_str_with(&text, p, opts)
        }
    }
}

/// Parses and resolves inventory text; `path` names it in errors and anchors relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    load_str_with(text, path, &LoadOptions::default())
}

/// [`load_str`] with options.
pub fn load_str_with(
    text: &str,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Inventory, InventoryError> {
    let file: InventoryFile = toml::from_str(text).map_err(|e| {
        let loc = Located::at(path, text, e.span(), e.message().trim_end().to_owned());
        InventoryError::Invalid(vec![loc.hint(toml_hint(e.message()))])
    })?;
    Resolver {
        path,
        text,
        base: base_dir(path),
        errors: Vec::new(),
        ssh_config: None,
        opts: *opts,
    }
    .resolve(file)
}

fn toml_hint(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("remove or correct the field; {FORMAT_HINT}")
    } else if message.contains("unknown variant") {
        "use one of the values listed above".to_owned()
    } else {
        format!("fix the TOML at this position; {FORMAT_HINT}")
    }
}

fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

struct Resolver<'a> {
    path: &'a Path,
    text: &'a str,
    base: PathBuf,
    errors: Vec<Located>,
    ssh_config: Option<UserSshConfig>,
    opts: LoadOptions,
}

impl Resolver<'_> {
    fn err(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let loc = Located::at(self.path, self.text, span, message).hint(hint);
        self.errors.push(loc);
    }

    fn ssh_config(&mut self) -> &UserSshConfig {
        self.ssh_config.get_or_insert_with(UserSshConfig::load)
    }

    /// `~/x` → home; relative → next to the inventory file.
    fn path_of(&self, p: &str) -> PathBuf {
        if let Some(rest) = p.strip_prefix("~/")
            && let Some(h) = home_dir()
        {
            return h.join(rest);
        }
        let pb = PathBuf::from(p);
        if pb.is_absolute() {
            pb
        } else {
            self.base.join(pb)
        }
    }

    fn resolve(mut self, file: InventoryFile) -> Result<Inventory, InventoryError> {
        let mut tiers: Vec<Tier> = file
            .tiers
            .iter()
            .map(|(name, t)| Tier {
                name: name.clone(),
                description: t.description.clone(),
                read_only: t.read_only,
                thresholds: t.thresholds.clone(),
            })
            .collect();
        let declared_tiers = !tiers.is_empty();

        // Ask ssh_config about every SSH host at once (a few `ssh -G` in parallel).
        let queries: Vec<Query> = file
            .hosts
            .iter()
            .filter_map(|(name, def)| {
                let ssh = def.get_ref().ssh.as_ref()?.get_ref();
                Some(Query {
                    alias: ssh
                        .host
                        .clone()
                        .or_else(|| file.defaults.ssh.host.clone())
                        .unwrap_or_else(|| name.clone()),
                    user: ssh.user.clone(),
                    port: ssh.port,
                })
            })
            .collect();
        if !queries.is_empty() {
            self.ssh_config().prefetch(&queries);
        }

        let mut hosts = Vec::new();
        for (name, def) in &file.hosts {
            let span = def.span();
            let def = def.get_ref();
            let tier = def.tier.get_ref().clone();
            if tiers.iter().all(|t| t.name != tier) {
                if declared_tiers {
                    let known: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
                    self.err(
                        Some(def.tier.span()),
                        format!("host {name:?} names unknown tier {tier:?}"),
                        format!("declare [tiers.{tier}] or use one of: {}", known.join(", ")),
                    );
                } else {
                    tiers.push(Tier {
                        name: tier.clone(),
                        description: None,
                        read_only: false,
                        thresholds: None,
                    });
                }
            }
            if let Some(h) = self.host(name, span, def, &file) {
                hosts.push(h);
            }
        }
        self.check_queue_hosts(&hosts, &file);

        if !self.errors.is_empty() {
            return Err(InventoryError::Invalid(self.errors));
        }
        let name = file.name.clone().unwrap_or_else(|| {
            self.path.file_stem().map_or_else(
                || "inventory".to_owned(),
                |s| s.to_string_lossy().into_owned(),
            )
        });
        let team = file.team.as_ref().and_then(|t| self.team(t, &name, &tiers));
        Ok(Inventory {
            name,
            source: Some(self.path.to_path_buf()),
            tiers,
            hosts,
            thresholds: file.defaults.thresholds.clone(),
            team,
        })
    }

    fn team(
        &mut self,
        def: &Spanned<model::TeamDef>,
        inventory: &str,
        tiers: &[Tier],
    ) -> Option<super::TeamConfig> {
        let span = def.span();
        let t = def.get_ref();
        if t.endpoints.is_empty() {
            self.err(
                Some(span.clone()),
                "[team] has no endpoints".to_owned(),
                "list the etcd members: endpoints = [\"http://10.0.0.5:2379\", ...]".to_owned(),
            );
            return None;
        }
        for e in &t.endpoints {
            if !e.starts_with("http://") && !e.starts_with("https://") {
                self.err(
                    Some(span.clone()),
                    format!("[team] endpoint {e:?} is not an http:// or https:// URL"),
                    "use https://HOST:PORT (with tls = { ca_file = ... } for a private CA) or http://HOST:PORT".to_owned(),
                );
                return None;
            }
        }
        let local_fallback = match t
            .on_unreachable
            .as_ref()
            .map(|o| (o.get_ref().as_str(), o.span()))
        {
            None | Some(("refuse", _)) => false,
            Some(("local", _)) => true,
            Some((other, sp)) => {
                self.err(
                    Some(sp),
                    format!("[team] on_unreachable = {other:?} is not known"),
                    "use \"refuse\" (changing steps refused while etcd is unreachable) or \"local\" (fall back to local locks, loudly)".to_owned(),
                );
                return None;
            }
        };
        for tier in &t.second_person {
            if tiers.iter().all(|x| x.name != *tier) {
                self.err(
                    Some(span.clone()),
                    format!("[team] second_person names unknown tier {tier:?}"),
                    format!(
                        "use one of: {}",
                        tiers
                            .iter()
                            .map(|x| x.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let password = if t.user.is_some() {
            self.password(
                "[team]",
                "etcd",
                span.clone(),
                &t.password,
                &t.password_env,
                &t.password_file,
                &t.password_cmd,
            )
            .map(|p| p.value)
        } else {
            None
        };
        let safe: String = inventory
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let tls = self.tls("[team]", "etcd", &span, t.tls.as_ref());
        Some(super::TeamConfig {
            endpoints: t.endpoints.clone(),
            tls,
            user: t.user.clone(),
            password,
            lease_ttl: t.lease_ttl.unwrap_or(std::time::Duration::from_secs(10)),
            local_fallback,
            second_person: t.second_person.clone(),
            prefix: t
                .prefix
                .clone()
                .unwrap_or_else(|| format!("/opsdeck/{safe}")),
        })
    }

    fn check_queue_hosts(&mut self, hosts: &[Host], file: &InventoryFile) {
        for (name, def) in &file.hosts {
            for q in &def.get_ref().queues {
                if let Some(rh) = &q.redis_host
                    && !hosts
                        .iter()
                        .any(|h| h.name == *rh && !h.services.redis.is_empty())
                {
                    self.err(
                        Some(def.span()),
                        format!("queue {:?} of host {name:?} names redis_host {rh:?}, which is not a host with a redis service", q.name),
                        "name an inventory host that lists a [[hosts.NAME.redis]] service",
                    );
                }
            }
        }
    }

    fn host(
        &mut self,
        name: &str,
        span: Range<usize>,
        def: &HostDef,
        file: &InventoryFile,
    ) -> Option<Host> {
        let transports = [def.ssh.is_some(), def.docker.is_some(), def.local.is_some()];
        let transport = match transports.iter().filter(|t| **t).count() {
            1 => {
                if let Some(ssh) = &def.ssh {
                    let ssh_span = ssh.span();
                    TransportSpec::Ssh(self.ssh_spec(
                        name,
                        ssh.get_ref(),
                        ssh_span,
                        file,
                        0,
                        None,
                        false,
                    )?)
                } else if let Some(d) = &def.docker {
                    TransportSpec::Docker(self.docker_spec(name, d, file)?)
                } else {
                    TransportSpec::Local
                }
            }
            n => {
                self.err(
                    Some(span),
                    format!("host {name:?} has {n} transports; it needs exactly one"),
                    "give the host one of `ssh = {...}`, `docker = {...}` or `local = {}`",
                );
                return None;
            }
        };

        let mut roles = def.roles.clone();
        let mut http = def.http.clone();
        for h in &mut http {
            h.tls = self.tls(name, "http", &span, h.tls.as_ref());
        }
        let mut services = Services {
            http,
            nginx: def.nginx.clone(),
            php_fpm: def.php_fpm.clone(),
            app: def.app.clone(),
            haproxy: def.haproxy.clone(),
            mounts: def.mounts.clone(),
            queues: def.queues.clone(),
            processes: def.processes.iter().map(|p| p.name().to_owned()).collect(),
            process_restarts: def
                .processes
                .iter()
                .filter_map(|p| p.restart().map(|r| (p.name().to_owned(), r.to_owned())))
                .collect(),
            ..Services::default()
        };
        let default_addr = match &transport {
            TransportSpec::Ssh(s) => s.address.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let service_addr = |addr: &Option<String>, via: Via| {
            addr.clone().unwrap_or_else(|| {
                if via == Via::Ssh {
                    "127.0.0.1".to_owned()
                } else {
                    default_addr.clone()
                }
            })
        };
        for m in &def.mysql {
            let m_span = m.span();
            let m = m.get_ref();
            if m.via == Via::Ssh && !matches!(transport, TransportSpec::Ssh(_)) {
                self.err(
                    Some(m_span.clone()),
                    format!("host {name:?}: mysql via = \"ssh\" needs an ssh transport"),
                    "use via = \"direct\" or give the host `ssh = {...}`",
                );
            }
            let tls = self.tls(name, "mysql", &m_span, m.tls.as_ref());
            if tls
                .as_ref()
                .is_some_and(|t| t.verify == super::TlsVerify::Ca)
            {
                self.err(
                    Some(m_span.clone()),
                    format!("host {name:?}: {}", crate::clients::mysql::MYSQL_VERIFY_CA),
                    "set server_name to the name in the server's certificate",
                );
            }
            let password = self.password(
                name,
                "mysql",
                m_span,
                &m.password,
                &m.password_env,
                &m.password_file,
                &m.password_cmd,
            );
            push_role(
                &mut roles,
                match m.role {
                    model::MysqlRole::Primary => "primary",
                    model::MysqlRole::Replica => "replica",
                },
            );
            services.mysql.push(MysqlService {
                role: m.role,
                address: service_addr(&m.address, m.via),
                port: m.port.unwrap_or(3306),
                user: m.user.clone().unwrap_or_else(|| "root".to_owned()),
                via: m.via,
                password,
                database: m.database.clone(),
                tls,
                defaults_file: m.defaults_file.clone(),
            });
        }
        for r in &def.redis {
            let r_span = r.span();
            let r = r.get_ref();
            if r.via == Via::Ssh && !matches!(transport, TransportSpec::Ssh(_)) {
                self.err(
                    Some(r_span.clone()),
                    format!("host {name:?}: redis via = \"ssh\" needs an ssh transport"),
                    "use via = \"direct\" or give the host `ssh = {...}`",
                );
            }
            if r.role == model::RedisRole::Sentinel && r.master_name.is_none() {
                self.err(
                    Some(r_span.clone()),
                    format!("host {name:?}: a sentinel needs master_name"),
                    "add master_name = \"mymaster\" (the name in `sentinel monitor`)",
                );
            }
            let tls = self.tls(name, "redis", &r_span, r.tls.as_ref());
            let db = match &r.db {
                Some(db) if *db.get_ref() < 0 => {
                    self.err(
                        Some(db.span()),
                        format!("host {name:?}: redis db = {} is negative", db.get_ref()),
                        "databases are numbered from 0 (`SELECT 0`, `SELECT 1`, ...)",
                    );
                    0
                }
                Some(db) => *db.get_ref(),
                None => 0,
            };
            let password = self.password(
                name,
                "redis",
                r_span,
                &r.password,
                &r.password_env,
                &r.password_file,
                &r.password_cmd,
            );
            push_role(
                &mut roles,
                match r.role {
                    model::RedisRole::Master => "master",
                    model::RedisRole::Replica => "replica",
                    model::RedisRole::Sentinel => "sentinel",
                },
            );
            let default_port = if r.role == model::RedisRole::Sentinel {
                26379
            } else {
                6379
            };
            services.redis.push(RedisService {
                role: r.role,
                address: service_addr(&r.address, r.via),
                port: r.port.unwrap_or(default_port),
                via: r.via,
                master_name: r.master_name.clone(),
                password,
                username: r.username.clone(),
                db,
                tls,
                restart: r.restart.clone(),
            });
        }
        let tier_ro = file
            .tiers
            .get(def.tier.get_ref())
            .is_some_and(|t| t.read_only);
        let tier_def = file.tiers.get(def.tier.get_ref());
        // Host, then tier, then defaults.
        let become_def = def
            .r#become
            .as_ref()
            .map(|b| (b, def.become_user.clone()))
            .or_else(|| {
                tier_def.and_then(|t| t.r#become.as_ref().map(|b| (b, t.become_user.clone())))
            })
            .or_else(|| {
                file.defaults
                    .r#become
                    .as_ref()
                    .map(|b| (b, file.defaults.become_user.clone()))
            });
        let r#become = match become_def {
            Some((b, user)) => match b.get_ref().as_str() {
                "sudo" => Some(super::Become {
                    method: "sudo".to_owned(),
                    user,
                }),
                "none" => None,
                other => {
                    self.err(
                        Some(b.span()),
                        format!("host {name:?}: become = {other:?} is not supported"),
                        "use become = \"sudo\" (or \"none\")".to_owned(),
                    );
                    None
                }
            },
            None => None,
        };
        Some(Host {
            r#become,
            name: name.to_owned(),
            tier: def.tier.get_ref().clone(),
            roles,
            description: def.description.clone(),
            read_only: def.read_only || tier_ro,
            transport,
            services,
            thresholds: def.thresholds.clone(),
        })
    }

    /// TLS settings with their files anchored next to the inventory and checked readable.
    fn tls(
        &mut self,
        host: &str,
        service: &str,
        span: &Range<usize>,
        tls: Option<&TlsSettings>,
    ) -> Option<TlsSettings> {
        let mut t = tls?.clone();
        for (what, file) in [
            ("ca_file", &mut t.ca_file),
            ("client_cert", &mut t.client_cert),
            ("client_key", &mut t.client_key),
        ] {
            let Some(p) = file.as_ref() else { continue };
            let anchored = self.path_of(&p.to_string_lossy());
            if let Err(e) = std::fs::File::open(&anchored) {
                self.err(
                    Some(span.clone()),
                    format!(
                        "host {host:?}: {service} tls.{what} {} cannot be read: {e}",
                        anchored.display()
                    ),
                    "fix the path; relative paths are relative to the inventory file",
                );
            }
            *file = Some(anchored);
        }
        if t.client_cert.is_some() != t.client_key.is_some() {
            self.err(
                Some(span.clone()),
                format!("host {host:?}: {service} tls has only one of client_cert and client_key"),
                "give both (the certificate and its private key) or neither",
            );
        }
        Some(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn password(
        &mut self,
        host: &str,
        service: &str,
        span: Range<usize>,
        plain: &Option<Spanned<toml::Value>>,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        cmd: &Option<Spanned<String>>,
    ) -> Option<Password> {
        if let Some(p) = plain {
            // Say where, never what: the value itself is not echoed.
            self.err(
                Some(p.span()),
                format!("host {host:?}: {service} password written in plain text"),
                "passwords never sit in the inventory: use password_env = \"VAR\", password_file = \"path\" or password_cmd = \"command\"",
            );
            return None;
        }
        let given = [env.is_some(), file.is_some(), cmd.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if given > 1 {
            self.err(Some(span), format!("host {host:?}: {service} has more than one of password_env, password_file, password_cmd"), "keep exactly one");
            return None;
        }
        if let Some(var) = env {
            return match std::env::var(var.get_ref()) {
                Ok(v) => Some(Password {
                    source: format!("env:{}", var.get_ref()),
                    value: Secret::new(v),
                    resolved: true,
                }),
                Err(_) => {
                    self.err(
                        Some(var.span()),
                        format!("host {host:?}: environment variable {:?} for the {service} password is not set", var.get_ref()),
                        format!("export {}=... before starting opsdeck, or use password_file", var.get_ref()),
                    );
                    None
                }
            };
        }
        if let Some(f) = file {
            let p = self.path_of(f.get_ref());
            return match std::fs::read_to_string(&p) {
                Ok(v) => Some(Password {
                    source: format!("file:{}", p.display()),
                    value: Secret::new(v.trim_end_matches(['\r', '\n'])),
                    resolved: true,
                }),
                Err(e) => {
                    self.err(Some(f.span()), format!("host {host:?}: cannot read {service} password file {}: {e}", p.display()), "create the file (mode 0600) or fix the path; relative paths are relative to the inventory file");
                    None
                }
            };
        }
        if let Some(c) = cmd {
            let source = format!("cmd:{}", c.get_ref());
            if !self.opts.run_password_cmds {
                return Some(Password {
                    source,
                    value: Secret::new(String::new()),
                    resolved: false,
                });
            }
            let timeout = self.opts.password_cmd_timeout;
            return match run_password_cmd(c.get_ref(), &self.base, timeout) {
                Ok(v) => Some(Password {
                    source,
                    value: Secret::new(v.trim_end_matches(['\r', '\n'])),
                    resolved: true,
                }),
                Err(CmdFailure::TimedOut) => {
                    self.err(
                        Some(c.span()),
                        format!(
                            "host {host:?}: {service} password_cmd did not finish within {} and was killed",
                            humantime::format_duration(timeout)
                        ),
                        "password_cmd runs without a terminal and with stdin closed: it must not prompt (unlock the agent or keyring first, e.g. run `pass` once by hand)",
                    );
                    None
                }
                Err(CmdFailure::Exited(status, stderr)) => {
                    let said = if stderr.is_empty() {
                        String::new()
                    } else {
                        format!(": {stderr}")
                    };
                    self.err(
                        Some(c.span()),
                        format!("host {host:?}: {service} password_cmd exited with {status}{said}"),
                        "run the command by hand to see why; it must print the password on stdout",
                    );
                    None
                }
                Err(CmdFailure::Spawn(e)) => {
                    self.err(
                        Some(c.span()),
                        format!("host {host:?}: cannot run {service} password_cmd: {e}"),
                        "check that `sh` and the command exist",
                    );
                    None
                }
            };
        }
        None
    }

    fn docker_spec(
        &mut self,
        name: &str,
        d: &Spanned<model::DockerDef>,
        file: &InventoryFile,
    ) -> Option<DockerSpec> {
        let span = d.span();
        let d = d.get_ref();
        if d.endpoint.is_some() && d.context.is_some() {
            self.err(
                Some(span.clone()),
                format!("host {name:?}: docker has both endpoint and context"),
                "keep one: the context names an endpoint of its own",
            );
            return None;
        }
        let tls = self.tls(name, "docker", &span, d.tls.as_ref());
        // Where the engine is, decided now as it will be at run time; only what the inventory
        // itself names (endpoint, context) can be wrong here, the environment is checked when
        // the engine is used.
        let resolved = crate::transport::docker::endpoint::resolve(
            d.endpoint.as_deref(),
            d.context.as_deref(),
            tls.as_ref(),
            &crate::transport::docker::endpoint::process_env,
        );
        let ssh = match resolved {
            Ok(r) => match r.endpoint {
                crate::transport::docker::Endpoint::Ssh {
                    user, host, port, ..
                } => {
                    // Reached like an inventory host: [defaults.ssh], ~/.ssh/config.
                    let def = SshDef {
                        host: Some(host),
                        user,
                        port,
                        ..SshDef::default()
                    };
                    Some(self.ssh_spec(name, &def, span.clone(), file, 0, None, false)?)
                }
                _ => None,
            },
            Err(e) if d.endpoint.is_some() || d.context.is_some() => {
                self.err(
                    Some(span.clone()),
                    format!("host {name:?}: {e}"),
                    "fix endpoint or context in the docker table",
                );
                return None;
            }
            Err(_) => None,
        };
        let target = match (&d.container, &d.project, &d.service) {
            (Some(c), None, None) => ContainerTarget::Name(c.clone()),
            (None, Some(p), Some(s)) => ContainerTarget::Compose {
                project: p.clone(),
                service: s.clone(),
            },
            _ => {
                self.err(Some(span), format!("host {name:?}: docker needs either container, or project and service"), "write docker = { container = \"name\" } or docker = { project = \"p\", service = \"s\" }");
                return None;
            }
        };
        Some(DockerSpec {
            endpoint: d.endpoint.clone(),
            context: d.context.clone(),
            tls,
            ssh,
            target,
        })
    }

    /// Resolves a host's SSH settings. Precedence, field by field: the host's own table, then
    /// ssh_config (as `ssh -G` evaluates it for the alias, with the table's user and port as
    /// ssh's `-l`/`-p`), then `[defaults.ssh]`, then the built-in default.
    ///
    /// `chain`: set when this host is a hop inside a `ProxyJump` list: its own jump is then the
    /// hops before it (as `ssh -J` passes them on), whatever its own settings say.
    #[allow(clippy::too_many_arguments)]
    fn ssh_spec(
        &mut self,
        name: &str,
        def: &SshDef,
        span: Range<usize>,
        file: &InventoryFile,
        depth: u8,
        chain: Option<(&[JumpHop], Origin)>,
        inherited: bool,
    ) -> Option<SshSpec> {
        let d = &file.defaults.ssh;
        let mut origin: BTreeMap<&'static str, Origin> = BTreeMap::new();
        let alias = def
            .host
            .clone()
            .or_else(|| d.host.clone())
            .unwrap_or_else(|| name.to_owned());
        let query = Query {
            alias: alias.clone(),
            user: def.user.clone(),
            port: def.port,
        };
        let cfg = match self.ssh_config().query(&query) {
            Ok(c) => c,
            Err(e) => {
                self.err(
                    Some(span),
                    format!("host {name:?}: ssh_config: {e}"),
                    "fix the ssh_config line named above (`ssh -G ALIAS` shows what ssh makes of \
                     it), or set OPSDECK_SSH_CONFIG=/dev/null to ignore ssh_config",
                );
                return None;
            }
        };
        let pick = |origin: &mut BTreeMap<&'static str, Origin>,
                    field: &'static str,
                    inv: Option<Origin>,
                    cfg: bool,
                    dflt: bool| {
            let o = if let Some(o) = inv {
                o
            } else if cfg {
                Origin::SshConfig
            } else if dflt {
                Origin::Defaults
            } else {
                Origin::Builtin
            };
            origin.insert(field, o);
            o
        };
        let inv = |set: bool| set.then_some(Origin::Inventory);

        let address = cfg
            .host_name
            .clone()
            .or_else(|| cfg.connect_to.clone())
            .unwrap_or_else(|| alias.clone());
        origin.insert(
            "address",
            if cfg.host_name.is_some() {
                Origin::SshConfig
            } else if def.host.is_none() && d.host.is_some() {
                Origin::Defaults
            } else {
                Origin::Inventory
            },
        );
        let user = match pick(
            &mut origin,
            "user",
            inv(def.user.is_some()),
            cfg.user.is_some(),
            d.user.is_some(),
        ) {
            Origin::Inventory => def.user.clone(),
            Origin::SshConfig => cfg.user.clone(),
            Origin::Defaults => d.user.clone(),
            Origin::Builtin => None,
        }
        .unwrap_or_else(|| crate::identity::current().account.clone());
        let port = match pick(
            &mut origin,
            "port",
            inv(def.port.is_some()),
            cfg.port.is_some(),
            d.port.is_some(),
        ) {
            Origin::Inventory => def.port,
            Origin::SshConfig => cfg.port,
            Origin::Defaults => d.port,
            Origin::Builtin => None,
        }
        .unwrap_or(22);
        let tokens = Tokens {
            host: address.clone(),
            original: alias.clone(),
            port,
            remote_user: user.clone(),
            host_key_alias: cfg.host_key_alias.clone(),
            jump: cfg.proxy_jump.clone(),
        };
        let mut bad_token = None;
        let mut expand = |value: &str, set: TokenSet| match tokens.expand(value, set) {
            Ok(v) => v,
            Err(e) => {
                bad_token.get_or_insert(e);
                value.to_owned()
            }
        };

        let identity_files: Vec<PathBuf> = match pick(
            &mut origin,
            "identity_files",
            inv(!def.identity_files.is_empty()),
            !cfg.identity_files.is_empty(),
            !d.identity_files.is_empty(),
        ) {
            Origin::Inventory => def.identity_files.iter().map(|p| self.path_of(p)).collect(),
            Origin::SshConfig => cfg
                .identity_files
                .iter()
                .map(|p| PathBuf::from(expand(p, TokenSet::Files)))
                .collect(),
            Origin::Defaults => d.identity_files.iter().map(|p| self.path_of(p)).collect(),
            Origin::Builtin => home_dir()
                .map(|h| {
                    ["id_ed25519", "id_ecdsa", "id_rsa"]
                        .iter()
                        .map(|f| h.join(".ssh").join(f))
                        .filter(|p| p.exists())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let certificate_files: Vec<PathBuf> = match pick(
            &mut origin,
            "certificate_files",
            inv(!def.certificate_files.is_empty()),
            !cfg.certificate_files.is_empty(),
            !d.certificate_files.is_empty(),
        ) {
            Origin::Inventory => def
                .certificate_files
                .iter()
                .map(|p| self.path_of(p))
                .collect(),
            Origin::SshConfig => cfg
                .certificate_files
                .iter()
                .map(|p| PathBuf::from(expand(p, TokenSet::Files)))
                .collect(),
            Origin::Defaults => d
                .certificate_files
                .iter()
                .map(|p| self.path_of(p))
                .collect(),
            Origin::Builtin => Vec::new(),
        };
        if certificate_files.is_empty() {
            origin.remove("certificate_files");
        }
        let identities_only = match pick(
            &mut origin,
            "identities_only",
            inv(def.identities_only.is_some()),
            cfg.identities_only.is_some(),
            d.identities_only.is_some(),
        ) {
            Origin::Inventory => def.identities_only,
            Origin::SshConfig => cfg.identities_only,
            Origin::Defaults => d.identities_only,
            Origin::Builtin => None,
        }
        .unwrap_or(false);
        // IdentityAgent: `none`, `SSH_AUTH_SOCK`, `$VAR` or a socket path.
        let cfg_agent: Option<(bool, Option<PathBuf>)> =
            cfg.identity_agent.as_deref().map(|a| match a {
                "none" => (false, None),
                "SSH_AUTH_SOCK" => (true, None),
                var if var.starts_with('$') => match std::env::var_os(&var[1..]) {
                    Some(v) => (true, Some(PathBuf::from(v))),
                    None => (false, None),
                },
                path => (true, Some(PathBuf::from(expand(path, TokenSet::Files)))),
            });
        let agent_socket = cfg_agent.as_ref().and_then(|(_, s)| s.clone());
        let agent = match pick(
            &mut origin,
            "agent",
            inv(def.agent.is_some()),
            cfg_agent.is_some(),
            d.agent.is_some(),
        ) {
            Origin::Inventory => def.agent,
            Origin::SshConfig => cfg_agent.map(|(on, _)| on),
            Origin::Defaults => d.agent,
            Origin::Builtin => None,
        }
        .unwrap_or_else(|| std::env::var_os("SSH_AUTH_SOCK").is_some());
        if identity_files.is_empty() && certificate_files.is_empty() && !agent {
            self.err(Some(span.clone()), format!("host {name:?}: no identity file and no ssh-agent to authenticate with"), "set identity_files = [\"~/.ssh/id_ed25519\"] or agent = true with SSH_AUTH_SOCK set");
        }

        // The files that would hold the host key without the inventory's own setting.
        let fallback_known_hosts: Vec<PathBuf> = if !cfg.user_known_hosts.is_empty() {
            cfg.user_known_hosts.clone()
        } else if let Some(k) = &d.known_hosts {
            vec![self.path_of(k)]
        } else {
            vec![
                home_dir()
                    .unwrap_or_default()
                    .join(".ssh")
                    .join("known_hosts"),
            ]
        };
        let (known_hosts, also_known_hosts) = match pick(
            &mut origin,
            "known_hosts",
            inv(def.known_hosts.is_some()),
            !cfg.user_known_hosts.is_empty(),
            d.known_hosts.is_some(),
        ) {
            Origin::Inventory => {
                let own = self.path_of(def.known_hosts.as_deref().unwrap_or_default());
                // A jump host met in ssh_config is checked against the inventory's file of
                // the host behind it, and against its own.
                let also = if inherited {
                    fallback_known_hosts
                        .into_iter()
                        .filter(|p| *p != own)
                        .collect()
                } else {
                    Vec::new()
                };
                (own, also)
            }
            _ => {
                let mut files = fallback_known_hosts.into_iter();
                let first = files.next().unwrap_or_default();
                (first, files.collect())
            }
        };
        if cfg.host_key_alias.is_some() {
            origin.insert("host_key_alias", Origin::SshConfig);
        }
        let cfg_policy = cfg
            .strict_host_key_checking
            .as_deref()
            .and_then(|v| match v {
                "true" | "yes" => Some(HostKeyPolicy::Strict),
                // `no` would connect despite a changed key: opsdeck never does; it records
                // unknown keys, as `no` does, and still refuses changed ones.
                "accept-new" | "false" | "no" | "off" => Some(HostKeyPolicy::AcceptNew),
                _ => None,
            });
        let host_key_policy = match pick(
            &mut origin,
            "host_key_policy",
            inv(def.host_key_policy.is_some()),
            cfg_policy.is_some(),
            d.host_key_policy.is_some(),
        ) {
            Origin::Inventory => def.host_key_policy,
            Origin::SshConfig => cfg_policy,
            Origin::Defaults => d.host_key_policy,
            Origin::Builtin => None,
        }
        .unwrap_or(HostKeyPolicy::Strict);
        let connect_timeout = match pick(
            &mut origin,
            "connect_timeout",
            inv(def.connect_timeout.is_some()),
            cfg.connect_timeout.is_some(),
            d.connect_timeout.is_some(),
        ) {
            Origin::Inventory => def.connect_timeout,
            Origin::SshConfig => cfg.connect_timeout,
            Origin::Defaults => d.connect_timeout,
            Origin::Builtin => None,
        }
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let keepalive = match pick(
            &mut origin,
            "keepalive",
            inv(def.keepalive.is_some()),
            cfg.server_alive_interval.is_some(),
            d.keepalive.is_some(),
        ) {
            Origin::Inventory => def.keepalive,
            Origin::SshConfig => cfg.server_alive_interval,
            Origin::Defaults => d.keepalive,
            Origin::Builtin => None,
        }
        .unwrap_or(DEFAULT_KEEPALIVE);
        let max_sessions = match pick(
            &mut origin,
            "max_sessions",
            inv(def.max_sessions.is_some()),
            false,
            d.max_sessions.is_some(),
        ) {
            Origin::Inventory => def.max_sessions,
            Origin::Defaults => d.max_sessions,
            _ => None,
        }
        .unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            self.err(
                Some(span),
                format!("host {name:?}: max_sessions must be at least 1"),
                "sshd allows 10 by default (MaxSessions)",
            );
            return None;
        }

        // How the connection is carried: a jump chain, a proxy command, or plain TCP.
        if def.jump.is_some() && def.proxy_command.is_some() {
            self.err(
                Some(span),
                format!("host {name:?}: both jump and proxy_command are set"),
                "keep one: jump (ProxyJump) or proxy_command (ProxyCommand)",
            );
            return None;
        }
        let own_name_in = |list: &str| {
            parse_proxy_jump(list).is_ok_and(|hops| {
                hops.iter()
                    .any(|h| h.host == name || h.host == alias || h.host == address)
            })
        };
        let carrier: Carrier = if let Some((hops, o)) = chain {
            Carrier::Jump(hops.to_vec(), o, None)
        } else if let Some(j) = &def.jump {
            match parse_proxy_jump(j.get_ref()) {
                Ok(hops) => Carrier::Jump(hops, Origin::Inventory, Some(j.span())),
                Err(e) => {
                    self.err(
                        Some(j.span()),
                        format!("host {name:?}: jump: {e}"),
                        "write an inventory host, [user@]host[:port], a comma list of them, or \"none\"",
                    );
                    return None;
                }
            }
        } else if let Some(c) = &def.proxy_command {
            Carrier::Proxy(c.get_ref().clone(), Origin::Inventory)
        } else if let Some(j) = &cfg.proxy_jump {
            match parse_proxy_jump(j) {
                Ok(hops) => Carrier::Jump(hops, Origin::SshConfig, None),
                Err(e) => {
                    self.err(
                        Some(span),
                        format!("host {name:?}: ssh_config ProxyJump: {e}"),
                        "fix ProxyJump in ssh_config",
                    );
                    return None;
                }
            }
        } else if let Some(c) = &cfg.proxy_command {
            if cfg.proxy_use_fdpass {
                self.err(
                    Some(span),
                    format!("host {name:?}: ssh_config sets ProxyUseFdpass, which opsdeck does not support"),
                    "use a ProxyCommand that relays the connection on its stdin/stdout",
                );
                return None;
            }
            Carrier::Proxy(c.clone(), Origin::SshConfig)
        } else if let Some(j) = d.jump.as_ref().filter(|j| !own_name_in(j.get_ref())) {
            match parse_proxy_jump(j.get_ref()) {
                Ok(hops) => Carrier::Jump(hops, Origin::Defaults, Some(j.span())),
                Err(e) => {
                    self.err(
                        Some(j.span()),
                        format!("[defaults.ssh] jump: {e}"),
                        "write an inventory host, [user@]host[:port], a comma list of them, or \"none\"",
                    );
                    return None;
                }
            }
        } else if let Some(c) = &d.proxy_command {
            Carrier::Proxy(c.get_ref().clone(), Origin::Defaults)
        } else {
            Carrier::Tcp
        };
        let (jump, proxy_command) = match carrier {
            Carrier::Tcp => (None, None),
            Carrier::Proxy(c, o) => {
                origin.insert("proxy_command", o);
                (None, Some(expand(&c, TokenSet::ProxyCommand)))
            }
            Carrier::Jump(hops, o, jspan) => {
                if !hops.is_empty() {
                    origin.insert("jump", o);
                }
                let jspan = jspan.unwrap_or_else(|| span.clone());
                let jump = self
                    .jump_chain(name, def, &hops, o, jspan, file, depth)
                    .ok()?;
                (jump, None)
            }
        };
        if let Some(e) = bad_token {
            self.err(
                Some(span),
                format!("host {name:?}: ssh_config: {e}"),
                "use the tokens OpenSSH documents for the keyword (ssh_config(5), TOKENS)",
            );
            return None;
        }
        Some(SshSpec {
            alias,
            address,
            port,
            user,
            identity_files,
            certificate_files,
            identities_only,
            agent,
            agent_socket,
            known_hosts,
            also_known_hosts,
            host_key_alias: cfg.host_key_alias.clone(),
            host_key_policy,
            jump,
            proxy_command,
            connect_timeout,
            keepalive,
            max_sessions,
            origin,
        })
    }

    /// The spec of the last hop of `hops` (the one that reaches the host), whose own jump is
    /// the hops before it. `Ok(None)` for an empty list (`ProxyJump none`); `Err` when an error
    /// was recorded.
    #[allow(clippy::too_many_arguments)]
    fn jump_chain(
        &mut self,
        name: &str,
        naming: &SshDef,
        hops: &[JumpHop],
        origin: Origin,
        span: Range<usize>,
        file: &InventoryFile,
        depth: u8,
    ) -> Result<Option<Box<SshSpec>>, Reported> {
        let Some((last, before)) = hops.split_last() else {
            return Ok(None);
        };
        if depth >= MAX_JUMP_DEPTH {
            self.err(
                Some(span),
                format!("host {name:?}: jump hosts nest more than {MAX_JUMP_DEPTH} deep (a loop?)"),
                "check the jump settings (and ssh_config ProxyJump) of these hosts",
            );
            return Err(Reported);
        }
        // `ssh -J a,b` reaches b with `-J a`: b's own ProxyJump no longer counts. A single hop
        // keeps its own.
        let chain = (!before.is_empty()).then_some((before, origin));
        let inventory_host = (last.user.is_none() && last.port.is_none())
            .then(|| file.hosts.get(&last.host))
            .flatten();
        let spec = if let Some(jh) = inventory_host {
            let Some(jssh) = &jh.get_ref().ssh else {
                self.err(
                    Some(span),
                    format!(
                        "host {name:?}: jump host {:?} has no ssh transport",
                        last.host
                    ),
                    "a jump host must be reached over ssh",
                );
                return Err(Reported);
            };
            self.ssh_spec(
                &last.host,
                jssh.get_ref(),
                jssh.span(),
                file,
                depth + 1,
                chain,
                false,
            )
            .ok_or(Reported)?
        } else {
            // A jump host known only to ssh_config (or written inline) is trusted the way
            // the host behind it is: its known_hosts, policy, agent use and connect timeout.
            let jdef = SshDef {
                host: Some(last.host.clone()),
                user: last.user.clone(),
                port: last.port,
                known_hosts: naming.known_hosts.clone(),
                host_key_policy: naming.host_key_policy,
                agent: naming.agent,
                connect_timeout: naming.connect_timeout,
                ..SshDef::default()
            };
            let inherited = jdef.known_hosts.is_some();
            let mut spec = self
                .ssh_spec(&last.host, &jdef, span, file, depth + 1, chain, inherited)
                .ok_or(Reported)?;
            // Host, user and port written in the jump setting come from where it was written.
            for field in ["address", "user", "port"] {
                if let Some(o) = spec.origin.get_mut(field)
                    && *o == Origin::Inventory
                {
                    *o = origin;
                }
            }
            spec
        };
        Ok(Some(Box::new(spec)))
    }
}

/// An error was recorded in the resolver's list; the caller stops resolving this host.
struct Reported;

/// How a host's connection is carried.
enum Carrier {
    Tcp,
    /// Hops in dialling order, where the setting came from, and its span in the inventory.
    Jump(Vec<JumpHop>, Origin, Option<Range<usize>>),
    Proxy(String, Origin),
}

/// Jump chains longer than this are taken for a loop.
const MAX_JUMP_DEPTH: u8 = 8;

/// Why a `password_cmd` gave no password.
enum CmdFailure {
    TimedOut,
    /// Exit status and the first line of stderr (masked).
    Exited(std::process::ExitStatus, String),
    Spawn(std::io::Error),
}

/// Runs `sh -c cmd` in `dir` in its own process group, stdin closed, for at most `timeout`;
/// on timeout the whole group is killed (a prompting `pass` or a `sleep` cannot hang cron).
/// Returns stdout (at most [`PASSWORD_CMD_MAX_OUTPUT`] bytes).
fn run_password_cmd(cmd: &str, dir: &Path, timeout: Duration) -> Result<String, CmdFailure> {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let deadline = std::time::Instant::now() + timeout;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(CmdFailure::Spawn)?;
    let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill_group = || {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    };
    // Readers on threads, so a full pipe never blocks the child and a grandchild holding the
    // pipe open cannot block us past the deadline.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    let pipes: [(bool, Option<Box<dyn std::io::Read + Send>>); 2] = [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
    ];
    for (is_stdout, pipe) in pipes {
        let tx = tx.clone();
        if let Some(pipe) = pipe {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.take(PASSWORD_CMD_MAX_OUTPUT).read_to_end(&mut buf);
                let _ = tx.send((is_stdout, buf));
            });
        }
    }
    drop(tx);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                kill_group();
                let _ = child.wait();
                return Err(CmdFailure::TimedOut);
            }
        }
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, b)) => stdout = b,
            Ok((false, b)) => stderr = b,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Something it started still holds the output open.
                kill_group();
                return Err(CmdFailure::TimedOut);
            }
        }
    }
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let first: String = first.chars().take(200).collect();
        return Err(CmdFailure::Exited(
            status,
            crate::secret::mask(first.trim()).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

fn push_role(roles: &mut Vec<String>, role: &str) {
    if !roles.iter().any(|r| r == role) {
        roles.push(role.to_owned());
    }
}
