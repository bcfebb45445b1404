//! Redis and Sentinel client for probes and runbook steps (`redis` crate).
//!
//! One multiplexed connection per server, with the caller's connect and reply timeouts (the
//! crate's own default reply timeout is 500 ms, shorter than a busy server's honest answer).
//! Connections are named `opsdeck` (`CLIENT SETNAME`) so operators can tell them apart in
//! `CLIENT LIST`.
//!
//! As in [`crate::clients::mysql`], masking happens here at the client boundary, on the raw
//! reply: every string in every reply is masked as bytes ([`mask_value`]) before anything
//! parses, formats or escapes it, so a password holding `"` or `\\` cannot slip through as its
//! escaped form (`CONFIG GET requirepass` shows `********`). Errors are masked too.
//!
//! Replies shown to a person are bounded ([`format_reply`]): at most
//! [`REPLY_MAX_BYTES`] of text and [`REPLY_MAX_ELEMENTS`] elements, the rest replaced by a
//! `[opsdeck: ... omitted]` mark, so a `GET` of a huge value or an `LRANGE 0 -1` of a long
//! list cannot flood a screen or a journal.
//!
//! A client built from an address keeps talking to that address. After a Sentinel failover the
//! old master is gone or demoted: callers re-resolve with [`resolve_master`] after an error.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, Value};
use serde::Serialize;

use crate::inventory::{Host, RedisService, TlsSettings, Via};
use crate::secret::{Secret, mask, masker};
use crate::transport::Connections;

/// Most text a formatted reply holds; a longer string keeps its head and tail.
pub const REPLY_MAX_BYTES: usize = 1024 * 1024;
/// Most elements of an array, set or map a formatted reply lists.
pub const REPLY_MAX_ELEMENTS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{what} on {target} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        target: String,
        what: String,
        after: Duration,
    },
    #[error("{target} refused the login: {message} (check the password file)")]
    Auth { target: String, message: String },
    #[error("{target} answered {what} with an error: {message}")]
    Server {
        target: String,
        what: String,
        message: String,
    },
    #[error("{target} sent an unexpected reply to {what}: {reason}")]
    Protocol {
        target: String,
        what: String,
        reason: String,
    },
}

impl RedisError {
    /// Classifies a crate error; every text is masked on the way in.
    fn from_redis(target: &str, what: &str, after: Duration, e: &redis::RedisError) -> Self {
        let target = target.to_owned();
        let what = mask(what).into_owned();
        let text = mask(&e.to_string()).into_owned();
        if e.is_timeout() {
            return RedisError::Timeout {
                target,
                what,
                after,
            };
        }
        let code = e.code().unwrap_or_default();
        if e.kind() == ErrorKind::AuthenticationFailed || code == "WRONGPASS" || code == "NOAUTH" {
            return RedisError::Auth {
                target,
                message: text,
            };
        }
        match e.kind() {
            ErrorKind::Io => RedisError::Connect {
                target,
                reason: text,
            },
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => RedisError::Protocol {
                target,
                what,
                reason: text,
            },
            _ => RedisError::Server {
                target,
                what,
                message: text,
            },
        }
    }

    fn protocol(target: &str, what: &str, reason: impl Into<String>) -> Self {
        RedisError::Protocol {
            target: target.to_owned(),
            what: mask(what).into_owned(),
            reason: mask(&reason.into()).into_owned(),
        }
    }
}

/// How to log in: ACL user and password, database, TLS. `server` is the name the
/// certificate is checked against when `tls.server_name` does not say (the service's address
/// as the inventory writes it, not a tunnel's loopback end).
#[derive(Debug, Clone, Copy, Default)]
pub struct Login<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub db: i64,
    pub tls: Option<&'a TlsSettings>,
    pub server: &'a str,
}

impl<'a> Login<'a> {
    /// The `default` user with `password`, database 0, no TLS.
    pub fn password(password: Option<&'a Secret>) -> Self {
        Login {
            password,
            ..Login::default()
        }
    }

    /// What an inventory service says.
    pub fn of(svc: &'a RedisService) -> Self {
        Login {
            username: svc.username.as_deref(),
            password: svc.password.as_ref().map(|p| &p.value),
            db: svc.db,
            tls: svc.tls.as_ref(),
            server: &svc.address,
        }
    }
}

/// Opens a named multiplexed connection with explicit connect and reply timeouts: TCP (and
/// TLS) dialled here, then handed to the crate, which logs in (`AUTH [user] password`,
/// `SELECT db`).
async fn open(
    target: &str,
    addr: SocketAddr,
    login: &Login<'_>,
    timeout: Duration,
) -> Result<MultiplexedConnection, RedisError> {
    let mut settings = RedisConnectionInfo::default()
        .set_skip_set_lib_name()
        .set_db(login.db);
    if let Some(pw) = login.password {
        settings = settings.set_password(pw.expose());
    }
    if let Some(user) = login.username {
        settings = settings.set_username(user);
    }
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| RedisError::Connect {
                target: target.to_owned(),
                reason: mask(&e.to_string()).into_owned(),
            })?;
        let _ = tcp.set_nodelay(true);
        let made = match login.tls {
            Some(tls) => {
                let server = if login.server.is_empty() {
                    addr.ip().to_string()
                } else {
                    login.server.to_owned()
                };
                let stream = crate::transport::tls::connect(tcp, tls, &server)
                    .await
                    .map_err(|e| RedisError::Connect {
                        target: target.to_owned(),
                        reason: mask(&e.to_string()).into_owned(),
                    })?;
                MultiplexedConnection::new_with_config(&settings, stream, config)
                    .await
                    .map(|(conn, driver)| {
                        tokio::spawn(driver);
                        conn
                    })
            }
            None => MultiplexedConnection::new_with_config(&settings, tcp, config)
                .await
                .map(|(conn, driver)| {
                    tokio::spawn(driver);
                    conn
                }),
        };
        made.map_err(
            |e| match RedisError::from_redis(target, "logging in", timeout, &e) {
                RedisError::Server { message, .. } => RedisError::Connect {
                    target: target.to_owned(),
                    reason: message,
                },
                RedisError::Connect { target, reason } => RedisError::Connect {
                    target,
                    reason: crate::transport::tls::with_alert_hint(reason, login.tls),
                },
                other => other,
            },
        )
    };
    let mut conn = match tokio::time::timeout(timeout * 2, connect).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(RedisError::Timeout {
                target: target.to_owned(),
                what: "connecting".to_owned(),
                after: timeout,
            });
        }
    };
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("opsdeck")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| RedisError::from_redis(target, "CLIENT SETNAME", timeout, &e))?;
    Ok(conn)
}

/// `db1 redis 127.0.0.1:6380 (via ssh, tls, user ops, db 2)`.
fn service_target(kind: &str, host: &Host, svc: &RedisService) -> String {
    let mut target = format!("{} {kind} {}:{}", host.name, svc.address, svc.port);
    let mut notes = Vec::new();
    if svc.via == Via::Ssh {
        notes.push("via ssh".to_owned());
    }
    if svc.tls.is_some() {
        notes.push("tls".to_owned());
    }
    if let Some(u) = &svc.username {
        notes.push(format!("user {u}"));
    }
    if svc.db != 0 {
        notes.push(format!("db {}", svc.db));
    }
    if !notes.is_empty() {
        let _ = write!(target, " ({})", notes.join(", "));
    }
    target
}

/// A connection to one Redis server.
#[derive(Clone)]
pub struct RedisClient {
    conn: MultiplexedConnection,
    target: String,
    timeout: Duration,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClient")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `INFO`, parsed: every `field:value` line of every section, flat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedisInfo {
    pub fields: BTreeMap<String, String>,
}

/// One replica line of a master's `INFO replication` (`slave0:ip=...,port=...,offset=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InfoReplica {
    pub ip: String,
    pub port: u16,
    pub state: String,
    pub offset: u64,
    pub lag: Option<u64>,
}

impl RedisInfo {
    pub fn parse(text: &str) -> RedisInfo {
        let fields = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        RedisInfo { fields }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    fn number(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }

    /// `master` or `slave`.
    pub fn role(&self) -> Option<&str> {
        self.get("role")
    }
    pub fn connected_clients(&self) -> Option<u64> {
        self.number("connected_clients")
    }
    pub fn rejected_connections(&self) -> Option<u64> {
        self.number("rejected_connections")
    }
    pub fn used_memory(&self) -> Option<u64> {
        self.number("used_memory")
    }
    /// 0 means no limit.
    pub fn maxmemory(&self) -> Option<u64> {
        self.number("maxmemory")
    }
    pub fn evicted_keys(&self) -> Option<u64> {
        self.number("evicted_keys")
    }
    pub fn keyspace_hits(&self) -> Option<u64> {
        self.number("keyspace_hits")
    }
    pub fn keyspace_misses(&self) -> Option<u64> {
        self.number("keyspace_misses")
    }
    /// On a replica: `up` or `down`.
    pub fn master_link_status(&self) -> Option<&str> {
        self.get("master_link_status")
    }
    pub fn master_repl_offset(&self) -> Option<u64> {
        self.number("master_repl_offset")
    }
    /// On a replica, the offset it has processed.
    pub fn slave_repl_offset(&self) -> Option<u64> {
        self.number("slave_repl_offset")
    }

    /// On a master, its connected replicas (`slaveN:` lines), in order.
    pub fn replicas(&self) -> Vec<InfoReplica> {
        let mut out: Vec<(u32, InfoReplica)> = self
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let n: u32 = k.strip_prefix("slave")?.parse().ok()?;
                let kv = parse_kv_list(v, ',');
                Some((
                    n,
                    InfoReplica {
                        ip: kv.get("ip")?.clone(),
                        port: kv.get("port")?.parse().ok()?,
                        state: kv.get("state").cloned().unwrap_or_default(),
                        offset: kv.get("offset").and_then(|o| o.parse().ok()).unwrap_or(0),
                        lag: kv.get("lag").and_then(|l| l.parse().ok()),
                    },
                ))
            })
            .collect();
        out.sort_by_key(|(n, _)| *n);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

/// `a=1,b=2` (or space-separated for `CLIENT LIST`) as a map.
fn parse_kv_list(text: &str, sep: char) -> BTreeMap<String, String> {
    text.split(sep)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `ROLE`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    Master {
        offset: u64,
        /// `(ip, port, acknowledged offset)` per replica.
        replicas: Vec<(String, u16, u64)>,
    },
    Replica {
        master_host: String,
        master_port: u16,
        /// `connect`, `connecting`, `sync` or `connected`.
        state: String,
        offset: i64,
    },
    Sentinel {
        masters: Vec<String>,
    },
}

impl RedisClient {
    /// Connects to `addr` and logs in, within `timeout`; each later reply may take up to
    /// `timeout` too.
    pub async fn connect(
        addr: SocketAddr,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<RedisClient, RedisError> {
        Self::connect_with(addr, &Login::password(password), timeout).await
    }

    /// Connects to `addr` with an ACL user, a database index and TLS as `login` says.
    pub async fn connect_with(
        addr: SocketAddr,
        login: &Login<'_>,
        timeout: Duration,
    ) -> Result<RedisClient, RedisError> {
        let target = format!("redis {addr}");
        let conn = open(&target, addr, login, timeout).await?;
        Ok(RedisClient {
            conn,
            target,
            timeout,
        })
    }

    /// The same server and login on another database (`SELECT` is per connection, so this is
    /// a second connection): for a runbook step that names its database.
    pub async fn connect_service_db(
        conns: &Connections,
        host: &Host,
        svc: &RedisService,
        db: i64,
        timeout: Duration,
    ) -> Result<RedisClient, RedisError> {
        let svc = RedisService { db, ..svc.clone() };
        Self::connect_service(conns, host, &svc, timeout).await
    }

    /// Connects to a service from the inventory, directly or through the host's SSH connection.
    pub async fn connect_service(
        conns: &Connections,
        host: &Host,
        svc: &RedisService,
        timeout: Duration,
    ) -> Result<RedisClient, RedisError> {
        let target = service_target("redis", host, svc);
        let addr = service_addr(
            conns,
            host,
            &target,
            &svc.address,
            svc.port,
            svc.via,
            timeout,
        )
        .await?;
        let conn = open(&target, addr, &Login::of(svc), timeout).await?;
        Ok(RedisClient {
            conn,
            target,
            timeout,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends `cmd`; the reply is masked before it is read as a `T`.
    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        let v: Value = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| RedisError::from_redis(&self.target, what, self.timeout, &e))?;
        T::from_redis_value(mask_value(v))
            .map_err(|e| RedisError::protocol(&self.target, what, e.to_string()))
    }

    /// Round-trip time of a `PING`.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let reply: String = self.query("PING", &redis::cmd("PING")).await?;
        if reply != "PONG" {
            return Err(RedisError::protocol(&self.target, "PING", reply));
        }
        Ok(started.elapsed())
    }

    /// `INFO` (all default sections), parsed and masked.
    pub async fn info(&self) -> Result<RedisInfo, RedisError> {
        let text: String = self.query("INFO", &redis::cmd("INFO")).await?;
        Ok(RedisInfo::parse(&mask(&text)))
    }

    /// `ROLE`, parsed.
    pub async fn role(&self) -> Result<Role, RedisError> {
        let v: Value = self.query("ROLE", &redis::cmd("ROLE")).await?;
        parse_role(&v).ok_or_else(|| {
            RedisError::protocol(
                &self.target,
                "ROLE",
                format!("cannot read {}", format_reply(&v)),
            )
        })
    }

    /// `CLIENT LIST`: one map per connection (`id`, `addr`, `name`, `age`, `cmd`, ...).
    pub async fn client_list(&self) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
        let text: String = self
            .query("CLIENT LIST", redis::cmd("CLIENT").arg("LIST"))
            .await?;
        Ok(mask(&text)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_kv_list(l.trim(), ' '))
            .collect())
    }

    /// The server's id for this client's connection (`CLIENT ID`).
    pub async fn client_id(&self) -> Result<u64, RedisError> {
        self.query("CLIENT ID", redis::cmd("CLIENT").arg("ID"))
            .await
    }

    /// `CONFIG GET pattern` as name → value (masked: `requirepass` comes back as `********`).
    pub async fn config_get(&self, pattern: &str) -> Result<BTreeMap<String, String>, RedisError> {
        let what = format!("CONFIG GET {pattern}");
        let v: Value = self
            .query(&what, redis::cmd("CONFIG").arg("GET").arg(pattern))
            .await?;
        let pairs =
            pairs(&v).ok_or_else(|| RedisError::protocol(&self.target, &what, format_reply(&v)))?;
        Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, mask(&v).into_owned()))
            .collect())
    }

    /// Length of a list (0 if the key does not exist).
    pub async fn llen(&self, key: &str) -> Result<u64, RedisError> {
        self.query(&format!("LLEN {key}"), redis::cmd("LLEN").arg(key))
            .await
    }

    /// Any command (`args[0]` is its name), with the reply masked, then formatted as
    /// `redis-cli` would and bounded (see [`format_reply`]). For runbook steps.
    pub async fn command(&self, args: &[String]) -> Result<String, RedisError> {
        let Some((name, rest)) = args.split_first() else {
            return Err(RedisError::protocol(
                &self.target,
                "command",
                "no command given",
            ));
        };
        let mut cmd = redis::cmd(name);
        for a in rest {
            cmd.arg(a);
        }
        let v: Value = self.query(&args.join(" "), &cmd).await?;
        Ok(format_reply(&v))
    }
}

#[allow(clippy::too_many_arguments)]
async fn service_addr(
    conns: &Connections,
    host: &Host,
    target: &str,
    address: &str,
    port: u16,
    via: Via,
    timeout: Duration,
) -> Result<SocketAddr, RedisError> {
    tokio::time::timeout(timeout, conns.service_addr(host, address, port, via))
        .await
        .map_err(|_| RedisError::Timeout {
            target: target.to_owned(),
            what: "reaching the service".to_owned(),
            after: timeout,
        })?
        .map_err(|e| RedisError::Connect {
            target: target.to_owned(),
            reason: e.masked(),
        })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// Name/value pairs from a RESP2 flat array (`k1 v1 k2 v2`) or a RESP3 map.
fn pairs(v: &Value) -> Option<Vec<(String, String)>> {
    match v {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| Some((text(k)?, text(v).unwrap_or_default())))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|c| Some((text(&c[0])?, text(&c[1]).unwrap_or_default())))
            .collect(),
        _ => None,
    }
}

fn parse_role(v: &Value) -> Option<Role> {
    let Value::Array(items) = v else { return None };
    let kind = text(items.first()?)?;
    match kind.as_str() {
        "master" => {
            let offset = int(items.get(1)?)?;
            let replicas = match items.get(2) {
                Some(Value::Array(rs)) => rs
                    .iter()
                    .filter_map(|r| {
                        let Value::Array(f) = r else { return None };
                        Some((
                            text(f.first()?)?,
                            u16::try_from(int(f.get(1)?)?).ok()?,
                            u64::try_from(int(f.get(2)?)?).ok()?,
                        ))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(Role::Master {
                offset: u64::try_from(offset).ok()?,
                replicas,
            })
        }
        "slave" | "replica" => Some(Role::Replica {
            master_host: text(items.get(1)?)?,
            master_port: u16::try_from(int(items.get(2)?)?).ok()?,
            state: text(items.get(3)?)?,
            offset: int(items.get(4)?)?,
        }),
        "sentinel" => {
            let masters = match items.get(1) {
                Some(Value::Array(ms)) => ms.iter().filter_map(text).collect(),
                _ => Vec::new(),
            };
            Some(Role::Sentinel { masters })
        }
        _ => None,
    }
}

/// Masks every string of a reply, as raw bytes, before anything reads or formats it.
pub fn mask_value(v: Value) -> Value {
    let m = masker();
    let text = |s: String| match m.mask(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(masked) => masked,
    };
    let pairs = |items: Vec<(Value, Value)>| {
        items
            .into_iter()
            .map(|(k, v)| (mask_value(k), mask_value(v)))
            .collect()
    };
    match v {
        Value::BulkString(b) => match m.mask_bytes(&b) {
            std::borrow::Cow::Borrowed(_) => Value::BulkString(b),
            std::borrow::Cow::Owned(masked) => Value::BulkString(masked),
        },
        Value::SimpleString(s) => Value::SimpleString(text(s)),
        Value::VerbatimString { format, text: t } => Value::VerbatimString {
            format,
            text: text(t),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(mask_value).collect()),
        Value::Set(items) => Value::Set(items.into_iter().map(mask_value).collect()),
        Value::Push { kind, data } => Value::Push {
            kind,
            data: data.into_iter().map(mask_value).collect(),
        },
        Value::Map(items) => Value::Map(pairs(items)),
        Value::Attribute { data, attributes } => Value::Attribute {
            data: Box::new(mask_value(*data)),
            attributes: pairs(attributes),
        },
        other => other,
    }
}

/// The mark that replaces what a bounded output leaves out.
fn omitted(n: usize, what: &str) -> String {
    format!("[opsdeck: {n} more {what} omitted]")
}

/// `text` cut to at most `max` bytes: head and tail on character boundaries with a mark
/// between.
fn head_tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n{}\n{}",
        &text[..head],
        omitted(tail - head, "bytes"),
        &text[tail..]
    )
}

/// A reply as `redis-cli` shows it: `(integer) 3`, `(nil)`, numbered array items, quoted
/// strings inside arrays, a top-level string as is (so `INFO` stays readable). Bounded: at
/// most [`REPLY_MAX_BYTES`] of text (a long string keeps its head and tail) and
/// [`REPLY_MAX_ELEMENTS`] elements per array, with a `[opsdeck: N more ... omitted]` mark for
/// the rest. Pass a masked value (every reply of this module is).
pub fn format_reply(v: &Value) -> String {
    match v {
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => {
            head_tail(&text(v).unwrap_or_default(), REPLY_MAX_BYTES)
        }
        _ => {
            let mut out = String::new();
            format_nested(v, 0, &mut out, REPLY_MAX_BYTES);
            out
        }
    }
}

/// A string inside an array: quoted and escaped like `redis-cli`, cut to `budget` bytes.
fn quoted(s: &str, out: &mut String, budget: usize) {
    let escaped = format!("{s:?}");
    if escaped.len() <= budget {
        out.push_str(&escaped);
    } else {
        out.push_str(&head_tail(&escaped, budget.max(64)));
    }
}

/// Appends `v` to `out`; stops adding elements once `out` reaches `limit` bytes.
fn format_nested(v: &Value, indent: usize, out: &mut String, limit: usize) {
    let budget = limit.saturating_sub(out.len());
    match v {
        Value::Nil => out.push_str("(nil)"),
        Value::Int(n) => {
            let _ = write!(out, "(integer) {n}");
        }
        Value::Double(d) => {
            let _ = write!(out, "(double) {d}");
        }
        Value::Boolean(b) => {
            let _ = write!(out, "({b})");
        }
        Value::Okay => out.push_str("OK"),
        Value::SimpleString(s) => out.push_str(&head_tail(s, budget.max(64))),
        Value::BulkString(b) => quoted(&String::from_utf8_lossy(b), out, budget),
        Value::VerbatimString { text, .. } => quoted(text, out, budget),
        Value::BigNumber(n) => {
            let _ = write!(out, "(big number) {n:?}");
        }
        Value::ServerError(e) => {
            let _ = write!(out, "(error) {}", mask(&e.to_string()));
        }
        Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
            if items.is_empty() {
                out.push_str("(empty array)");
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                    out.push_str(&" ".repeat(indent));
                    if out.len() >= limit || i >= REPLY_MAX_ELEMENTS {
                        out.push_str(&omitted(items.len() - i, "elements"));
                        break;
                    }
                }
                let label = format!("{}) ", i + 1);
                out.push_str(&label);
                format_nested(item, indent + label.len(), out, limit);
            }
        }
        Value::Map(entries) => {
            if entries.is_empty() {
                out.push_str("(empty map)");
            }
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                    out.push_str(&" ".repeat(indent));
                    if out.len() >= limit || i >= REPLY_MAX_ELEMENTS {
                        out.push_str(&omitted(entries.len() - i, "entries"));
                        break;
                    }
                }
                let label = format!("{}# ", i + 1);
                out.push_str(&label);
                format_nested(k, indent + label.len(), out, limit);
                out.push_str(" => ");
                format_nested(val, indent + label.len() + 4, out, limit);
            }
        }
        Value::Attribute { data, .. } => format_nested(data, indent, out, limit),
        _ => {
            let _ = write!(out, "{}", mask(&format!("{v:?}")));
        }
    }
}

/// A connection to one Sentinel.
#[derive(Clone)]
pub struct SentinelClient {
    conn: MultiplexedConnection,
    target: String,
    timeout: Duration,
}

impl fmt::Debug for SentinelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelClient")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SentinelClient {
    /// Connects to one Sentinel. `password` is the Sentinel's own `requirepass`, if it has one
    /// (not the monitored master's).
    pub async fn connect(
        addr: SocketAddr,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<SentinelClient, RedisError> {
        let target = format!("sentinel {addr}");
        let conn = open(&target, addr, &Login::password(password), timeout).await?;
        Ok(SentinelClient {
            conn,
            target,
            timeout,
        })
    }

    /// Connects to a Sentinel from the inventory (directly or through the host's SSH
    /// connection), with its ACL user and TLS.
    pub async fn connect_service(
        conns: &Connections,
        host: &Host,
        svc: &RedisService,
        timeout: Duration,
    ) -> Result<SentinelClient, RedisError> {
        let target = service_target("sentinel", host, svc);
        let addr = service_addr(
            conns,
            host,
            &target,
            &svc.address,
            svc.port,
            svc.via,
            timeout,
        )
        .await?;
        // A Sentinel has no databases.
        let login = Login {
            db: 0,
            ..Login::of(svc)
        };
        let conn = open(&target, addr, &login, timeout).await?;
        Ok(SentinelClient {
            conn,
            target,
            timeout,
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    async fn sentinel(&self, args: &[&str]) -> Result<Value, RedisError> {
        let what = format!("SENTINEL {}", args.join(" "));
        let mut cmd = redis::cmd("SENTINEL");
        for a in args {
            cmd.arg(*a);
        }
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map(mask_value)
            .map_err(|e| RedisError::from_redis(&self.target, &what, self.timeout, &e))
    }

    /// The master's address as this Sentinel knows it; `None` if it monitors no such master.
    pub async fn get_master_addr_by_name(
        &self,
        name: &str,
    ) -> Result<Option<(String, u16)>, RedisError> {
        let v = self.sentinel(&["get-master-addr-by-name", name]).await?;
        match &v {
            Value::Nil => Ok(None),
            Value::Array(items) if items.len() == 2 => {
                let host = text(&items[0]);
                let port = int(&items[1]).and_then(|p| u16::try_from(p).ok());
                match (host, port) {
                    (Some(h), Some(p)) => Ok(Some((h, p))),
                    _ => Err(RedisError::protocol(
                        &self.target,
                        "SENTINEL get-master-addr-by-name",
                        format_reply(&v),
                    )),
                }
            }
            _ => Err(RedisError::protocol(
                &self.target,
                "SENTINEL get-master-addr-by-name",
                format_reply(&v),
            )),
        }
    }

    /// `SENTINEL CKQUORUM`: `Ok(Ok(message))` when the Sentinels can agree on a failover,
    /// `Ok(Err(message))` when they cannot (that is an answer, not a failure to ask).
    pub async fn ckquorum(&self, name: &str) -> Result<Result<String, String>, RedisError> {
        match self.sentinel(&["ckquorum", name]).await {
            Ok(v) => Ok(Ok(mask(&format_reply(&v)).into_owned())),
            Err(RedisError::Server { message, .. }) => Ok(Err(message)),
            Err(e) => Err(e),
        }
    }

    /// `SENTINEL MASTERS`: one map per monitored master.
    pub async fn masters(&self) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
        let v = self.sentinel(&["masters"]).await?;
        self.maps("SENTINEL MASTERS", &v)
    }

    /// `SENTINEL REPLICAS name`.
    pub async fn replicas(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
        let v = self.sentinel(&["replicas", name]).await?;
        self.maps("SENTINEL REPLICAS", &v)
    }

    /// `SENTINEL SENTINELS name`: the other Sentinels watching that master.
    pub async fn sentinels(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
        let v = self.sentinel(&["sentinels", name]).await?;
        self.maps("SENTINEL SENTINELS", &v)
    }

    /// `SENTINEL FAILOVER name`: forces a failover without asking the other Sentinels.
    pub async fn failover(&self, name: &str) -> Result<(), RedisError> {
        self.sentinel(&["failover", name]).await.map(|_| ())
    }

    fn maps(&self, what: &str, v: &Value) -> Result<Vec<BTreeMap<String, String>>, RedisError> {
        let Value::Array(items) = v else {
            return Err(RedisError::protocol(&self.target, what, format_reply(v)));
        };
        items
            .iter()
            .map(|item| {
                pairs(item)
                    .map(|p| {
                        p.into_iter()
                            .map(|(k, v)| (k, mask(&v).into_owned()))
                            .collect()
                    })
                    .ok_or_else(|| RedisError::protocol(&self.target, what, format_reply(item)))
            })
            .collect()
    }
}

/// Asks each Sentinel in turn for the current address of master `name` and returns the first
/// answer. Call it again after an error on the master's connection: a failover moves it.
pub async fn resolve_master(
    sentinels: &[SocketAddr],
    password: Option<&Secret>,
    name: &str,
    timeout: Duration,
) -> Result<SocketAddr, RedisError> {
    let mut failures = Vec::new();
    for addr in sentinels {
        let answer = async {
            let s = SentinelClient::connect(*addr, password, timeout).await?;
            s.get_master_addr_by_name(name).await
        }
        .await;
        match answer {
            Ok(Some((host, port))) => match host.parse::<IpAddr>() {
                Ok(ip) => return Ok(SocketAddr::new(ip, port)),
                Err(_) => failures.push(format!(
                    "{addr}: master address {host:?} is not an IP address"
                )),
            },
            Ok(None) => failures.push(format!("{addr}: does not monitor {name:?}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let target = format!("sentinels for {name:?}");
    if sentinels.is_empty() {
        failures.push("no sentinel addresses given".to_owned());
    }
    Err(RedisError::Connect {
        target,
        reason: mask(&format!(
            "no sentinel named the master: {}",
            failures.join("; ")
        ))
        .into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_parses_fields_and_replica_lines() {
        let info = RedisInfo::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
             slave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\n\
             master_repl_offset:42\r\n# Clients\r\nconnected_clients:3\r\n",
        );
        assert_eq!(info.role(), Some("master"));
        assert_eq!(info.connected_clients(), Some(3));
        assert_eq!(info.master_repl_offset(), Some(42));
        let r = info.replicas();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].port, r[0].offset, r[0].lag), (6380, 42, Some(0)));
    }

    #[test]
    fn role_of_a_replica_is_read() {
        let v = Value::Array(vec![
            Value::BulkString(b"slave".to_vec()),
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(6379),
            Value::BulkString(b"connected".to_vec()),
            Value::Int(100),
        ]);
        assert_eq!(
            parse_role(&v),
            Some(Role::Replica {
                master_host: "127.0.0.1".into(),
                master_port: 6379,
                state: "connected".into(),
                offset: 100
            })
        );
    }

    #[test]
    fn replies_format_like_redis_cli() {
        let v = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Int(2),
            Value::Nil,
        ]);
        assert_eq!(format_reply(&v), "1) \"a\"\n2) (integer) 2\n3) (nil)");
        assert_eq!(format_reply(&Value::Okay), "OK");
    }

    #[test]
    fn a_reply_is_masked_as_bytes_before_it_is_escaped() {
        let pw = "rv-canary-a\"b\\c'%d \u{fc}";
        let _s = Secret::new(pw);
        let v = mask_value(Value::Array(vec![
            Value::BulkString(b"requirepass".to_vec()),
            Value::BulkString(pw.as_bytes().to_vec()),
        ]));
        let text = format_reply(&v);
        assert_eq!(
            text,
            format!("1) \"requirepass\"\n2) \"{}\"", crate::secret::MASK)
        );
    }

    #[test]
    fn long_replies_keep_head_tail_and_a_mark() {
        let big = "x".repeat(REPLY_MAX_BYTES * 3);
        let text = format_reply(&Value::BulkString(big.into_bytes()));
        assert!(text.len() <= REPLY_MAX_BYTES + 100, "{}", text.len());
        assert!(text.contains(&format!(
            "[opsdeck: {} more bytes omitted]",
            REPLY_MAX_BYTES * 2
        )));
        let many = Value::Array((0..REPLY_MAX_ELEMENTS as i64 + 5).map(Value::Int).collect());
        let text = format_reply(&many);
        assert!(
            text.ends_with("[opsdeck: 5 more elements omitted]"),
            "{}",
            &text[text.len() - 80..]
        );
    }
}
