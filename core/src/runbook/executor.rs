//! The async side of a run: carries out one [`ExecRequest`] over the host's transport
//! (shell), the MySQL and Redis clients (SQL, Redis commands, built-in guards), Docker
//! (container actions) and HTTP, and says what happened — including whether a command that
//! failed may nonetheless have run (its outcome is then unknown).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::DockerAction;
use super::engine::{ExecRequest, ExecResult, Rendered};
use crate::clients::mysql::{MysqlClient, MysqlError};
use crate::clients::redis::{RedisClient, SentinelClient};
use crate::inventory::{Host, Inventory, RedisRole};
use crate::secret;
use crate::transport::{self, Connections, HostConn};

/// Why a command failed, and whether it may have run anyway.
struct Failure {
    reason: String,
    may_have_run: bool,
}

impl Failure {
    fn not_run(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            may_have_run: false,
        }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::not_run(reason)
    }
}

impl From<MysqlError> for Failure {
    fn from(e: MysqlError) -> Self {
        // Once a statement was sent, a timeout or a broken connection leaves its effect
        // unknown; a server error is a definite answer.
        let may_have_run = matches!(
            e,
            MysqlError::Timeout { .. } | MysqlError::Connection { .. }
        );
        Failure {
            reason: e.to_string(),
            may_have_run,
        }
    }
}

/// Runs one request; never panics, every failure is a result with a reason (masked).
pub async fn execute(req: &ExecRequest, inv: &Inventory, conns: &Arc<Connections>) -> ExecResult {
    let host = req.host.as_ref().and_then(|h| inv.host(&h.name));
    let read_only = !req.changes;
    let r: Result<ExecResult, Failure> = match (&req.command, host) {
        (Rendered::Http { method, url, .. }, h) => http(conns, h, method, url, req.timeout).await,
        (Rendered::Health { hosts }, _) => health(conns, inv, hosts).await.map_err(Failure::from),
        (_, None) => Err(Failure::not_run(format!(
            "step `{}` has no target host",
            req.step
        ))),
        (Rendered::Shell { command }, Some(h)) => {
            let escalate = h.r#become.as_ref().filter(|_| req.r#become);
            match escalate {
                Some(b) => sudo_shell(conns, h, b, command, req.timeout).await,
                None => shell(conns, h, command, req.timeout).await,
            }
        }
        (Rendered::Sql { query, params, .. }, Some(h)) => {
            sql(conns, h, query, params, read_only, req.timeout).await
        }
        (Rendered::Redis { args, db }, Some(h)) => redis(conns, h, args, *db, req.timeout)
            .await
            .map_err(Failure::from),
        (
            Rendered::Docker {
                action,
                command,
                tail,
            },
            Some(h),
        ) => docker(conns, h, *action, command.as_deref(), *tail, req.timeout).await,
        (Rendered::ReplicaSqlRunning, Some(h)) => replica(conns, h, None, req.timeout)
            .await
            .map_err(Failure::from),
        (Rendered::ReplicaLagBelow { seconds }, Some(h)) => {
            replica(conns, h, Some(*seconds), req.timeout)
                .await
                .map_err(Failure::from)
        }
        (Rendered::SentinelCkquorum, Some(h)) => {
            ckquorum(conns, h, req.timeout).await.map_err(Failure::from)
        }
    };
    match r {
        Ok(mut res) => {
            res.output = secret::mask(&res.output).into_owned();
            res
        }
        Err(f) if f.may_have_run => ExecResult::unknown(&secret::mask(&f.reason)),
        Err(f) => ExecResult::error(&secret::mask(&f.reason)),
    }
}

/// Probes `hosts` once; every check comes back as a health fact.
async fn health(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[String],
) -> Result<ExecResult, String> {
    let selected: Vec<&Host> = hosts.iter().filter_map(|h| inv.host(h)).collect();
    let checks = crate::probes::sweep::once(
        conns,
        inv,
        &selected,
        &crate::probes::sweep::SweepOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(ExecResult {
        health: checks
            .iter()
            .map(|c| super::engine::HealthFact {
                host: c.host.clone(),
                check: c.id.clone(),
                state: c.state,
                reason: secret::mask(&c.reason).into_owned(),
            })
            .collect(),
        ..ExecResult::ok("")
    })
}

/// A shell command through `sudo -n`. sudo never prompts: if it wants a password, the command
/// did not run, and the error says what to change.
async fn sudo_shell(
    conns: &Arc<Connections>,
    h: &Host,
    b: &crate::inventory::Become,
    command: &str,
    timeout: Duration,
) -> Result<ExecResult, Failure> {
    let r = shell(conns, h, &b.wrap(command), timeout).await?;
    if r.exit == Some(1)
        && (r.output.contains("sudo: a password is required")
            || r.output.contains("sudo: a terminal is required"))
    {
        return Err(Failure::not_run(format!(
            "{} on {} wants a password, and opsdeck never types one: nothing ran. Allow the login user to run it without a password (a NOPASSWD sudoers rule for what the runbooks need), or run this step on a host whose login may",
            b.label(),
            h.name
        )));
    }
    if r.exit == Some(1) && r.output.contains("is not in the sudoers file") {
        return Err(Failure::not_run(format!(
            "{} on {}: the login user may not use sudo ({}): nothing ran",
            b.label(),
            h.name,
            r.output.trim()
        )));
    }
    Ok(r)
}

async fn shell(
    conns: &Arc<Connections>,
    h: &Host,
    command: &str,
    timeout: Duration,
) -> Result<ExecResult, Failure> {
    let conn = conns.host(h);
    let out = transport::run(conn.transport(), command, timeout, CancellationToken::new())
        .await
        .map_err(|e| Failure {
            reason: e.masked(),
            may_have_run: e.may_have_run(),
        })?;
    let mut text = out.stdout;
    if !out.stderr.is_empty() {
        text.push_str(&out.stderr);
    }
    Ok(ExecResult {
        exit: Some(match out.status {
            transport::ExitStatus::Code(c) => c,
            transport::ExitStatus::Signal(_) => 128,
        }),
        output: text,
        ..ExecResult::default()
    })
}

async fn sql(
    conns: &Arc<Connections>,
    h: &Host,
    query: &str,
    params: &[String],
    read_only: bool,
    timeout: Duration,
) -> Result<ExecResult, Failure> {
    let svc = h
        .services
        .mysql
        .first()
        .ok_or_else(|| format!("host {} has no mysql service in the inventory", h.name))?;
    let client = MysqlClient::connect_service(conns, h, svc, timeout)
        .await
        .map_err(|e| Failure::not_run(e.to_string()))?;
    let r = if read_only {
        client.query_read_only(query, params).await
    } else {
        client.query_params(query, params).await
    };
    let _ = client.disconnect().await;
    let r = r?;
    let rows = r
        .rows
        .iter()
        .map(|row| {
            r.columns
                .iter()
                .cloned()
                .zip(
                    row.iter()
                        .map(|c| c.clone().unwrap_or_else(|| "NULL".to_owned())),
                )
                .collect()
        })
        .collect();
    let mut output = r.to_text();
    if r.columns.is_empty() {
        output = format!("{} rows affected", r.affected_rows);
    }
    Ok(ExecResult {
        output,
        rows,
        ..ExecResult::default()
    })
}

async fn redis(
    conns: &Arc<Connections>,
    h: &Host,
    args: &[String],
    db: Option<u32>,
    timeout: Duration,
) -> Result<ExecResult, String> {
    let sentinel = args
        .first()
        .is_some_and(|a| a.eq_ignore_ascii_case("sentinel"));
    let svc = h
        .services
        .redis
        .iter()
        .find(|r| (r.role == RedisRole::Sentinel) == sentinel)
        .ok_or_else(|| {
            format!(
                "host {} has no {} service in the inventory",
                h.name,
                if sentinel { "sentinel" } else { "redis" }
            )
        })?;
    let client = RedisClient::connect_service(conns, h, svc, timeout)
        .await
        .map_err(|e| e.to_string())?;
    // One connection: the command runs in the database just selected.
    if let Some(n) = db {
        client
            .command(&["SELECT".to_owned(), n.to_string()])
            .await
            .map_err(|e| format!("SELECT {n}: {e}"))?;
    }
    let out = client.command(args).await.map_err(|e| e.to_string())?;
    Ok(ExecResult::ok(&out))
}

async fn docker(
    conns: &Arc<Connections>,
    h: &Host,
    action: DockerAction,
    command: Option<&str>,
    tail: u32,
    timeout: Duration,
) -> Result<ExecResult, Failure> {
    let conn = conns.host(h);
    let HostConn::Docker(d) = &*conn else {
        return Err(Failure::not_run(format!(
            "host {} is not a docker container in the inventory",
            h.name
        )));
    };
    let stop = Duration::from_secs(10);
    let run = async {
        match action {
            DockerAction::Restart => d.restart(stop).await.map(|()| "restarted".to_owned()),
            DockerAction::Stop => d.stop(stop).await.map(|()| "stopped".to_owned()),
            DockerAction::Start => d.start().await.map(|()| "started".to_owned()),
            DockerAction::Logs => d.logs_tail(tail as usize).await,
            DockerAction::Exec => return Err(String::new()),
        }
        .map_err(|e| e.masked())
    };
    if action == DockerAction::Exec {
        return shell(conns, h, command.unwrap_or("true"), timeout).await;
    }
    // A lifecycle call that timed out or failed mid-way may have been carried out.
    let changes = !matches!(action, DockerAction::Logs);
    tokio::time::timeout(timeout + stop, run)
        .await
        .map_err(|_| Failure {
            reason: format!("docker {action:?} on {} timed out", h.name),
            may_have_run: changes,
        })?
        .map(|out| ExecResult::ok(&out))
        .map_err(|reason| Failure {
            reason,
            may_have_run: changes,
        })
}

/// Built-in replica guards: exit 0 when the replica's SQL thread runs (and lags less than
/// `max_lag` seconds), else exit 1 with what was found.
async fn replica(
    conns: &Arc<Connections>,
    h: &Host,
    max_lag: Option<u64>,
    timeout: Duration,
) -> Result<ExecResult, String> {
    let svc = h
        .services
        .mysql
        .first()
        .ok_or_else(|| format!("host {} has no mysql service", h.name))?;
    let client = MysqlClient::connect_service(conns, h, svc, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let st = client
        .replication_status()
        .await
        .map_err(|e| e.to_string())?;
    let _ = client.disconnect().await;
    let Some(st) = st else {
        return Ok(ExecResult::exit(
            1,
            &format!("{} is not a replica (no replication status)", h.name),
        ));
    };
    let (ok, msg) = match max_lag {
        None => (
            st.sql_running,
            format!("SQL thread {} on {}", st.sql_state, h.name),
        ),
        Some(max) => match st.seconds_behind {
            Some(s) => (s < max, format!("{} lags {s}s (limit {max}s)", h.name)),
            None => (
                false,
                format!("{} lag unknown (a replication thread is stopped)", h.name),
            ),
        },
    };
    Ok(ExecResult::exit(i32::from(!ok), &msg))
}

async fn ckquorum(
    conns: &Arc<Connections>,
    h: &Host,
    timeout: Duration,
) -> Result<ExecResult, String> {
    let svc = h
        .services
        .redis
        .iter()
        .find(|r| r.role == RedisRole::Sentinel)
        .ok_or_else(|| format!("host {} has no sentinel service", h.name))?;
    let name = svc
        .master_name
        .clone()
        .ok_or_else(|| format!("sentinel on {} has no master_name", h.name))?;
    let client = SentinelClient::connect_service(conns, h, svc, timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok(
        match client.ckquorum(&name).await.map_err(|e| e.to_string())? {
            Ok(m) => ExecResult::exit(0, &m),
            Err(m) => ExecResult::exit(1, &m),
        },
    )
}

/// Body bytes an HTTP step keeps (the rest is cut, with a mark).
const HTTP_STEP_MAX_BODY: usize = 1024 * 1024;

/// An HTTP(S) request through the one client ([`crate::transport::http`]); the status and
/// body come back. With a target host, the host's HTTP service for the same origin decides
/// the route (`via = "ssh"`) and TLS (`tls = { ... }`). A changing request (POST, PUT,
/// DELETE) that was sent and then lost its answer may have taken effect.
async fn http(
    conns: &Arc<Connections>,
    host: Option<&Host>,
    method: &str,
    url: &str,
    timeout: Duration,
) -> Result<ExecResult, Failure> {
    let (via, tls) = host.map_or((crate::inventory::Via::Direct, None), |h| {
        transport::http::route(h, url)
    });
    let req = transport::http::Request {
        method,
        via,
        tls,
        max_body: HTTP_STEP_MAX_BODY,
        ..transport::http::Request::get(url, timeout)
    };
    let resp = transport::http::request(conns, host, &req)
        .await
        .map_err(|e| Failure {
            may_have_run: e.sent && !matches!(method, "GET" | "HEAD"),
            reason: e.to_string(),
        })?;
    let mut output = format!("HTTP {}\n{}", resp.status, resp.body);
    if resp.truncated {
        output = format!(
            "{output}\n[opsdeck: body cut at {} KiB]",
            HTTP_STEP_MAX_BODY / 1024
        );
    }
    Ok(ExecResult {
        status: Some(resp.status),
        output,
        ..ExecResult::default()
    })
}
