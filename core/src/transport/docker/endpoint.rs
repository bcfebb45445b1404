//! Which Docker engine a container host means, decided the way the `docker` CLI decides it:
//! the inventory's `endpoint`, else its `context`, else `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY`/`DOCKER_TLS` and `DOCKER_CERT_PATH`), else `DOCKER_CONTEXT`, else the
//! current context of `~/.docker/config.json` (`DOCKER_CONFIG` moves that directory), else the
//! local socket.
//!
//! A context is read from `contexts/meta/<sha256 of its name>/meta.json` and its TLS files from
//! `contexts/tls/<same>/docker/{ca,cert,key}.pem`, as `docker context create` writes them.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::inventory::{TlsSettings, TlsVerify};

/// The socket dockerd listens on by default, also the remote one behind `ssh://`.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A Docker engine address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A local Unix socket.
    Unix(PathBuf),
    /// TCP, plain or with TLS.
    Tcp {
        host: String,
        port: u16,
        tls: Option<TlsSettings>,
    },
    /// The engine's Unix socket on an SSH host, reached over opsdeck's own SSH connection.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// The socket on the remote host (`ssh://h/run/docker.sock`; default
        /// [`DEFAULT_SOCKET`]).
        socket: String,
    },
}

/// Where the endpoint was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    Inventory,
    Context(String),
    DockerHost,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Inventory => f.write_str("inventory"),
            Source::Context(n) => write!(f, "docker context {n:?}"),
            Source::DockerHost => f.write_str("DOCKER_HOST"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// An endpoint and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolved {
    pub endpoint: Endpoint,
    pub source: Source,
}

impl Resolved {
    /// `unix:///var/run/docker.sock`, `tcp://h:2376 (TLS)`, `ssh://root@h`, with the source
    /// when it is not the inventory: what a person compares with `docker context ls`.
    pub fn label(&self) -> String {
        let url = self.endpoint.url();
        match &self.source {
            Source::Inventory => url,
            s => format!("{url} ({s})"),
        }
    }
}

impl Endpoint {
    /// The endpoint as a URL.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp { host, port, tls } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let tls = match tls {
                    None => "",
                    Some(t) if t.verify == TlsVerify::None => " (TLS, not verified)",
                    Some(_) => " (TLS)",
                };
                format!("tcp://{host}:{port}{tls}")
            }
            Endpoint::Ssh {
                user,
                host,
                port,
                socket,
            } => {
                let user = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let socket = if socket == DEFAULT_SOCKET {
                    String::new()
                } else {
                    socket.clone()
                };
                format!("ssh://{user}{host}{port}{socket}")
            }
        }
    }

    /// Parses `unix:///path`, `/path`, `tcp://host:port`, `http://…`, `https://…` or
    /// `ssh://[user@]host[:port][/socket]`. `tls` applies to `tcp://` (and is implied by
    /// `https://`).
    pub fn parse(url: &str, tls: Option<TlsSettings>) -> Result<Endpoint, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?}: a unix socket needs an absolute path (unix:///var/run/docker.sock)"
                ));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if url.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(url)));
        }
        let tcp = |rest: &str, tls: Option<TlsSettings>| -> Result<Endpoint, String> {
            let rest = rest.trim_end_matches('/');
            let (host, port) = split_host_port(rest)
                .ok_or_else(|| format!("{url:?}: cannot read host and port"))?;
            let port = match port {
                Some(p) => p,
                None if tls.is_some() => 2376,
                None => 2375,
            };
            Ok(Endpoint::Tcp { host, port, tls })
        };
        if let Some(rest) = url.strip_prefix("tcp://") {
            return tcp(rest, tls);
        }
        if let Some(rest) = url.strip_prefix("http://") {
            return tcp(rest, None);
        }
        if let Some(rest) = url.strip_prefix("https://") {
            return tcp(rest, Some(tls.unwrap_or_default()));
        }
        if let Some(rest) = url.strip_prefix("ssh://") {
            let (authority, socket) = match rest.find('/') {
                Some(i) if i + 1 < rest.len() => (&rest[..i], rest[i..].to_owned()),
                Some(i) => (&rest[..i], DEFAULT_SOCKET.to_owned()),
                None => (rest, DEFAULT_SOCKET.to_owned()),
            };
            let (user, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
                Some((_, h)) => (None, h),
                None => (None, authority),
            };
            let (host, port) = split_host_port(hostport)
                .ok_or_else(|| format!("{url:?}: cannot read the SSH host and port"))?;
            return Ok(Endpoint::Ssh {
                user,
                host,
                port,
                socket,
            });
        }
        Err(format!(
            "{url:?} is not a Docker endpoint opsdeck can use: write unix:///path/docker.sock, \
             tcp://HOST:PORT (TLS with DOCKER_TLS_VERIFY or tls = {{ ... }}) or \
             ssh://USER@HOST"
        ))
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; `None` for an empty host or a bad port.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return (!host.is_empty()).then(|| (host.to_owned(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (s, None),
    };
    (!host.is_empty() && !host.contains(':')).then(|| (host.to_owned(), port))
}

/// Reads environment variables (a closure, so tests need not change the process's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, empty values counted as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolves a container host's engine (see the module comment for the order).
pub fn resolve(
    endpoint: Option<&str>,
    context: Option<&str>,
    tls: Option<&TlsSettings>,
    env: Env<'_>,
) -> Result<Resolved, String> {
    if let Some(url) = endpoint {
        return Ok(Resolved {
            endpoint: Endpoint::parse(url, tls.cloned())?,
            source: Source::Inventory,
        });
    }
    if let Some(name) = context {
        return from_context(name, env);
    }
    if let Some(host) = env("DOCKER_HOST") {
        let endpoint =
            Endpoint::parse(&host, env_tls(env)).map_err(|e| format!("DOCKER_HOST: {e}"))?;
        return Ok(Resolved {
            endpoint,
            source: Source::DockerHost,
        });
    }
    let current = env("DOCKER_CONTEXT").or_else(|| current_context(env));
    match current {
        Some(name) if name != "default" => from_context(&name, env),
        _ => Ok(Resolved {
            endpoint: Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)),
            source: Source::Default,
        }),
    }
}

/// TLS as the docker CLI takes it from the environment: `DOCKER_TLS_VERIFY` (verify against
/// `DOCKER_CERT_PATH/ca.pem`, else the system CAs) or `DOCKER_TLS` (encrypt, do not verify);
/// `cert.pem` and `key.pem` there as the client certificate when both exist.
fn env_tls(env: Env<'_>) -> Option<TlsSettings> {
    let verify = if env("DOCKER_TLS_VERIFY").is_some() {
        TlsVerify::Full
    } else if env("DOCKER_TLS").is_some() {
        TlsVerify::None
    } else {
        return None;
    };
    let dir = env("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| config_dir(env))
        .unwrap_or_default();
    Some(tls_from_dir(&dir, verify))
}

fn tls_from_dir(dir: &Path, verify: TlsVerify) -> TlsSettings {
    let file = |n: &str| Some(dir.join(n)).filter(|p| p.is_file());
    let (cert, key) = match (file("cert.pem"), file("key.pem")) {
        (Some(c), Some(k)) => (Some(c), Some(k)),
        _ => (None, None),
    };
    TlsSettings {
        ca_file: file("ca.pem"),
        client_cert: cert,
        client_key: key,
        verify,
        server_name: None,
    }
}

/// `DOCKER_CONFIG`, else `~/.docker`.
fn config_dir(env: Env<'_>) -> Option<PathBuf> {
    env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// `currentContext` of `config.json`, if any.
fn current_context(env: Env<'_>) -> Option<String> {
    let text = std::fs::read_to_string(config_dir(env)?.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("currentContext")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The directory name docker uses for a context: the SHA-256 of its name, in hex.
pub fn context_id(name: &str) -> String {
    sha2::Sha256::digest(name.as_bytes())
        .iter()
        .fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn from_context(name: &str, env: Env<'_>) -> Result<Resolved, String> {
    let dir = config_dir(env)
        .ok_or_else(|| format!("docker context {name:?}: neither DOCKER_CONFIG nor HOME is set"))?;
    let meta_dir = dir.join("contexts").join("meta");
    let id = context_id(name);
    let path = meta_dir.join(&id).join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "docker context {name:?} not found ({}: {e}); list contexts with `docker context \
             ls`, create one with `docker context create {name} --docker host=…`",
            path.display()
        )
    })?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "docker context {name:?}: {} is not JSON: {e}",
            path.display()
        )
    })?;
    let docker = meta.get("Endpoints").and_then(|e| e.get("docker"));
    let host = docker
        .and_then(|d| d.get("Host"))
        .and_then(serde_json::Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            format!(
                "docker context {name:?}: {} has no Endpoints.docker.Host",
                path.display()
            )
        })?;
    let skip_verify = docker
        .and_then(|d| d.get("SkipTLSVerify"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let tls_dir = dir.join("contexts").join("tls").join(&id).join("docker");
    let tls = if tls_dir.is_dir() || skip_verify {
        Some(tls_from_dir(
            &tls_dir,
            if skip_verify {
                TlsVerify::None
            } else {
                TlsVerify::Full
            },
        ))
    } else {
        None
    };
    let endpoint =
        Endpoint::parse(host, tls).map_err(|e| format!("docker context {name:?}: {e}"))?;
    Ok(Resolved {
        endpoint,
        source: Source::Context(name.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn urls_of_every_kind_parse() {
        assert_eq!(
            Endpoint::parse("unix:///run/docker.sock", None),
            Ok(Endpoint::Unix("/run/docker.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("tcp://10.1.2.3", None),
            Ok(Endpoint::Tcp {
                host: "10.1.2.3".into(),
                port: 2375,
                tls: None
            })
        );
        assert_eq!(
            Endpoint::parse("ssh://deploy@db1:2222", None),
            Ok(Endpoint::Ssh {
                user: Some("deploy".into()),
                host: "db1".into(),
                port: Some(2222),
                socket: DEFAULT_SOCKET.into()
            })
        );
        assert_eq!(
            Endpoint::parse("ssh://[::1]/run/user/1000/docker.sock", None),
            Ok(Endpoint::Ssh {
                user: None,
                host: "::1".into(),
                port: None,
                socket: "/run/user/1000/docker.sock".into()
            })
        );
        let e = Endpoint::parse("npipe:////./pipe/docker_engine", None).expect_err("npipe");
        assert!(e.contains("ssh://USER@HOST"), "{e}");
        assert!(Endpoint::parse("tcp://h:notaport", None).is_err());
        assert!(Endpoint::parse("unix://relative.sock", None).is_err());
    }

    #[test]
    fn docker_host_with_tls_verify_reads_the_cert_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "x").expect("write");
        }
        let path = dir.path().to_string_lossy().into_owned();
        let env = env_of(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &path),
        ]);
        let r = resolve(None, None, None, &env).expect("resolves");
        assert_eq!(r.source, Source::DockerHost);
        let Endpoint::Tcp { tls: Some(tls), .. } = &r.endpoint else {
            panic!("{r:?}");
        };
        assert_eq!(tls.verify, TlsVerify::Full);
        assert_eq!(tls.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(tls.client_key, Some(dir.path().join("key.pem")));
        // Without DOCKER_TLS_VERIFY the same host is plain TCP, as for the docker CLI.
        let env = env_of(&[("DOCKER_HOST", "tcp://127.0.0.1:2375")]);
        let r = resolve(None, None, None, &env).expect("resolves");
        assert!(matches!(r.endpoint, Endpoint::Tcp { tls: None, .. }));
    }

    #[test]
    fn contexts_are_found_by_name_and_docker_host_wins_over_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = context_id("remote");
        let meta = dir.path().join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).expect("mkdir");
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"remote","Metadata":{},"Endpoints":{"docker":{"Host":"ssh://ops@10.0.0.9","SkipTLSVerify":false}}}"#,
        )
        .expect("meta");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"remote"}"#,
        )
        .expect("config");
        let cfg = dir.path().to_string_lossy().into_owned();
        let env = env_of(&[("DOCKER_CONFIG", &cfg)]);
        let r = resolve(None, None, None, &env).expect("current context");
        assert_eq!(r.source, Source::Context("remote".into()));
        assert_eq!(r.endpoint.url(), "ssh://ops@10.0.0.9");
        assert_eq!(r.label(), "ssh://ops@10.0.0.9 (docker context \"remote\")");
        let r = resolve(None, Some("remote"), None, &env).expect("by name");
        assert_eq!(r.source, Source::Context("remote".into()));
        let env = env_of(&[("DOCKER_CONFIG", &cfg), ("DOCKER_HOST", "unix:///x.sock")]);
        let r = resolve(None, None, None, &env).expect("DOCKER_HOST");
        assert_eq!(r.endpoint, Endpoint::Unix("/x.sock".into()));
        let e = resolve(None, Some("nope"), None, &env).expect_err("unknown");
        assert!(e.contains("docker context \"nope\" not found"), "{e}");
    }

    #[test]
    fn the_context_id_is_the_sha256_docker_uses() {
        // `docker context create test` makes contexts/meta/9f86d08…/meta.json.
        assert_eq!(
            context_id("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
