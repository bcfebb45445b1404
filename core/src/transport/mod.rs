//! Transports: how a command reaches a host. SSH (russh, one pooled connection per host),
//! Docker (bollard exec) and local (`tokio::process`) behind one [`Transport`] trait.
//!
//! This module owns every connection opsdeck makes to a host. Probes and runbook steps ask a
//! [`Connections`] for a host's transport and never dial anything themselves.

pub mod docker;
pub mod http;
pub mod known_hosts;
pub mod local;
pub mod output;
pub mod ssh;
pub mod tls;

pub use output::{DEFAULT_OUTPUT_LIMIT, OutputLimit};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::inventory::{Host, TransportSpec, Via};
use crate::secret;
use output::BoundedStream;

/// A piece of a running command's output, as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Where streamed output goes. Bounded: a slow reader slows the command, it does not grow
/// memory without limit.
pub type OutputSink = mpsc::Sender<OutputChunk>;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal (name as the remote side reported it, e.g. `KILL`).
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("connection to {target} timed out after {}", humantime::format_duration(*.after))]
    ConnectTimeout { target: String, after: Duration },
    /// Host key not trusted: nothing was authenticated or run.
    #[error("{0}")]
    HostKey(String),
    #[error("authentication to {target} failed: {reason}")]
    Auth { target: String, reason: String },
    /// The time allowed ran out. `started`: the command had been handed to the host; it was
    /// then stopped with its whole process group (see [`Transport::exec`]).
    #[error("{}", timeout_text(target, *.after, *.started))]
    Timeout {
        target: String,
        after: Duration,
        started: bool,
    },
    #[error("{}", cancelled_text(target, *.started))]
    Cancelled { target: String, started: bool },
    /// The connection went away after the command was sent: its outcome is unknown.
    #[error("connection to {target} dropped: {reason}")]
    Disconnected { target: String, reason: String },
    /// The command was started but opsdeck lost track of it: its outcome is unknown.
    #[error("lost track of the command on {target}: {reason}; its outcome is unknown")]
    Lost { target: String, reason: String },
    /// The engine refused before the command started.
    #[error("docker ({target}): {reason}")]
    Docker { target: String, reason: String },
    /// Refused before the command started (cannot start a shell, channel or exec refused).
    #[error("{target}: {reason}")]
    Other { target: String, reason: String },
}

fn timeout_text(target: &str, after: Duration, started: bool) -> String {
    let after = humantime::format_duration(after);
    if started {
        format!(
            "command on {target} timed out after {after}; it was stopped (SIGTERM, then SIGKILL \
             to what remained) and its outcome is unknown"
        )
    } else {
        format!("timed out after {after} before the command was started on {target}; nothing ran")
    }
}

fn cancelled_text(target: &str, started: bool) -> String {
    if started {
        format!(
            "command on {target} was cancelled and stopped (SIGTERM, then SIGKILL to what \
             remained); its outcome is unknown"
        )
    } else {
        format!("command on {target} was cancelled before it started; nothing ran")
    }
}

impl TransportError {
    /// The message with every loaded secret masked (server text can echo what it was sent).
    pub fn masked(&self) -> String {
        secret::mask(&self.to_string()).into_owned()
    }

    /// True when the command may have started on the host and its outcome is unknown
    /// (timeout, cancel, connection lost after the command was sent); false when it certainly
    /// did not start (connect failure or timeout, host key refused, authentication failed,
    /// channel or exec refused). A changing action whose outcome is unknown must never be
    /// retried without an operator's decision.
    pub fn may_have_run(&self) -> bool {
        match self {
            TransportError::Timeout { started, .. } | TransportError::Cancelled { started, .. } => {
                *started
            }
            TransportError::Disconnected { .. } | TransportError::Lost { .. } => true,
            TransportError::Connect { .. }
            | TransportError::ConnectTimeout { .. }
            | TransportError::HostKey(_)
            | TransportError::Auth { .. }
            | TransportError::Docker { .. }
            | TransportError::Other { .. } => false,
        }
    }
}

/// One way of running commands on one host.
pub trait Transport: Send + Sync {
    /// `ssh user@127.0.0.2:22`, `docker redis-1`, `local`.
    fn label(&self) -> String;

    /// Runs `command` through the host's shell, streaming output into `sink` if given.
    ///
    /// Cancelling `cancel` stops the command and everything it started in its process group
    /// (SIGTERM, then SIGKILL after a short grace: locally by signalling the group, over SSH
    /// through the command's wrapper and `signal` requests, see `ssh::wrap_command`) and
    /// returns [`TransportError::Cancelled`] once it is stopped. Dropping the future stops it
    /// too, as far as that can be done without waiting. A command that ends by itself takes
    /// what it left running in its group with it (SIGTERM): a process that must outlive its
    /// command has to leave the group (`setsid`, or the service manager). Docker cannot stop
    /// an exec: a cancelled one runs on in its container.
    fn exec<'a>(
        &'a self,
        command: &'a str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>>;
}

/// A finished command: status, output (bounded, secrets masked) and wall time.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    pub status: ExitStatus,
    /// The head and tail of stdout; a truncation mark in between when the middle was dropped.
    pub stdout: String,
    pub stderr: String,
    /// Bytes the command wrote to stdout (all of them, kept or not).
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// True when the middle of stdout or stderr was dropped (see [`OutputLimit`]).
    pub truncated: bool,
    #[serde(serialize_with = "ser_ms")]
    pub duration: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Waits for an armed timer; never fires when there is none.
async fn fire(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// How long a timed-out command may take to stop before `run` gives up waiting for it.
const STOP_BOUND: Duration = Duration::from_secs(3);

/// How long output may keep arriving after the command reported its end.
const DRAIN_BOUND: Duration = Duration::from_secs(1);

/// Runs a command to completion, collecting its output, bounded by `timeout` (which covers
/// connecting too) and by [`OutputLimit::DEFAULT`].
pub async fn run(
    transport: &dyn Transport,
    command: &str,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<ExecOutcome, TransportError> {
    run_limited(transport, command, timeout, OutputLimit::DEFAULT, cancel).await
}

/// [`run`] with the output limit chosen by the caller.
///
/// When `timeout` fires the command is stopped (see [`Transport::exec`]) and this returns
/// [`TransportError::Timeout`] once it is, within a few seconds at most.
pub async fn run_limited(
    transport: &dyn Transport,
    command: &str,
    timeout: Duration,
    limit: OutputLimit,
    cancel: CancellationToken,
) -> Result<ExecOutcome, TransportError> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let (mut out, mut err) = (BoundedStream::new(limit), BoundedStream::new(limit));
    let child_cancel = cancel.child_token();
    let exec = transport.exec(command, Some(tx), child_cancel.clone());
    tokio::pin!(exec);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // Armed when the timeout fired (the command is being stopped), and when the command ended
    // with output still arriving.
    let mut stopping: Option<Pin<Box<Sleep>>> = None;
    let mut draining: Option<Pin<Box<Sleep>>> = None;
    let mut result: Option<Result<ExitStatus, TransportError>> = None;
    let mut receiving = true;
    while receiving || result.is_none() {
        tokio::select! {
            chunk = rx.recv(), if receiving => match chunk {
                Some(OutputChunk::Stdout(b)) => out.push(&b),
                Some(OutputChunk::Stderr(b)) => err.push(&b),
                None => receiving = false,
            },
            r = &mut exec, if result.is_none() => {
                result = Some(match r {
                    Err(TransportError::Cancelled { started, .. }) if stopping.is_some() => {
                        Err(TransportError::Timeout { target: transport.label(), after: timeout, started })
                    }
                    r => r,
                });
                draining = Some(Box::pin(tokio::time::sleep(DRAIN_BOUND)));
            }
            () = &mut deadline, if result.is_none() && stopping.is_none() => {
                child_cancel.cancel();
                stopping = Some(Box::pin(tokio::time::sleep(STOP_BOUND)));
            }
            () = fire(&mut stopping), if result.is_none() => {
                tracing::warn!(
                    target = %transport.label(),
                    "the timed-out command did not stop within {}s; no longer waiting for it",
                    STOP_BOUND.as_secs()
                );
                result = Some(Err(TransportError::Timeout {
                    target: transport.label(),
                    after: timeout,
                    started: true,
                }));
            }
            () = fire(&mut draining), if receiving => {
                tracing::warn!(
                    target = %transport.label(),
                    "output still arriving {}s after the command ended; the rest is dropped",
                    DRAIN_BOUND.as_secs()
                );
                receiving = false;
            }
        }
    }
    let status = result.unwrap_or_else(|| {
        Err(TransportError::Lost {
            target: transport.label(),
            reason: "no result".to_owned(),
        })
    })?;
    let (out, err) = (out.finish(), err.finish());
    Ok(ExecOutcome {
        status,
        truncated: out.truncated || err.truncated,
        stdout: out.text,
        stderr: err.text,
        stdout_bytes: out.total_bytes,
        stderr_bytes: err.total_bytes,
        duration: started.elapsed(),
    })
}

/// Every host's transport, created on first use and shared afterwards: one SSH connection per
/// host serves all probes and steps; one Docker client per engine endpoint.
#[derive(Default)]
pub struct Connections {
    hosts: Mutex<HashMap<String, Arc<HostConn>>>,
    /// SSH connections shared across hosts: one per bastion, whatever is behind it.
    ssh: ssh::SshPool,
    docker: docker::DockerClients,
}

/// A host's live transport.
pub enum HostConn {
    Ssh(Arc<ssh::SshHost>),
    Docker(docker::DockerHost),
    Local(local::LocalHost),
}

impl HostConn {
    pub fn transport(&self) -> &dyn Transport {
        match self {
            HostConn::Ssh(s) => s.as_ref(),
            HostConn::Docker(d) => d,
            HostConn::Local(l) => l,
        }
    }
}

impl Connections {
    pub fn new() -> Self {
        Self::default()
    }

    /// The host's transport (created, not yet connected, on first call).
    pub fn host(&self, host: &Host) -> Arc<HostConn> {
        let mut map = self
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(host.name.clone())
            .or_insert_with(|| {
                Arc::new(match &host.transport {
                    TransportSpec::Ssh(spec) => {
                        HostConn::Ssh(Arc::new(ssh::SshHost::in_pool(spec.clone(), &self.ssh)))
                    }
                    TransportSpec::Docker(spec) => {
                        HostConn::Docker(docker::DockerHost::new(spec.clone(), &self.docker))
                    }
                    TransportSpec::Local => HostConn::Local(local::LocalHost),
                })
            })
            .clone()
    }

    /// The socket address a client should dial for a service on `host`: the address itself
    /// for `via = "direct"`, or a local forward over the host's SSH connection for `via = "ssh"`.
    pub async fn service_addr(
        &self,
        host: &Host,
        address: &str,
        port: u16,
        via: Via,
    ) -> Result<SocketAddr, TransportError> {
        match via {
            Via::Direct => tokio::net::lookup_host((address, port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| TransportError::Connect {
                    target: format!("{address}:{port}"),
                    reason: "address does not resolve".to_owned(),
                }),
            Via::Ssh => match &*self.host(host) {
                HostConn::Ssh(s) => s.forward_local(address, port).await,
                _ => Err(TransportError::Other {
                    target: host.name.clone(),
                    reason: "via = \"ssh\" needs an ssh transport".to_owned(),
                }),
            },
        }
    }
}
