//! Transports: how a command reaches a host. SSH (russh, one pooled connection per host),
//! Docker (bollard exec) and local (`tokio::process`) behind one [`Transport`] trait.
//!
//! This module owns every connection opsdeck makes to a host. Probes and runbook steps ask a
//! [`Connections`] for a host's transport and never dial anything themselves.

pub mod docker;
pub mod local;
pub mod ssh;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::inventory::{Host, TransportSpec, Via};
use crate::secret;

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

#[derive(Debug, thiserror::Error)]
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
    #[error("command on {target} timed out after {}", humantime::format_duration(*.after))]
    Timeout { target: String, after: Duration },
    #[error("command on {target} was cancelled")]
    Cancelled { target: String },
    #[error("connection to {target} dropped: {reason}")]
    Disconnected { target: String, reason: String },
    #[error("docker ({target}): {reason}")]
    Docker { target: String, reason: String },
    #[error("{target}: {reason}")]
    Other { target: String, reason: String },
}

impl TransportError {
    /// The message with every loaded secret masked (server text can echo what it was sent).
    pub fn masked(&self) -> String {
        secret::mask(&self.to_string()).into_owned()
    }

    /// True when the command may have started on the host and its outcome is unknown;
    /// false when it certainly did not start.
    pub fn may_have_run(&self) -> bool {
        matches!(
            self,
            TransportError::Timeout { .. }
                | TransportError::Cancelled { .. }
                | TransportError::Disconnected { .. }
        )
    }
}

/// One way of running commands on one host.
pub trait Transport: Send + Sync {
    /// `ssh user@127.0.0.2:22`, `docker redis-1`, `local`.
    fn label(&self) -> String;

    /// Runs `command` through the host's shell, streaming output into `sink` if given.
    /// Dropping the future or cancelling `cancel` stops waiting and closes the channel.
    fn exec<'a>(
        &'a self,
        command: &'a str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>>;
}

/// A finished command: status, output (secrets masked) and wall time.
#[derive(Debug, Clone, Serialize)]
pub struct ExecOutcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    #[serde(serialize_with = "ser_ms")]
    pub duration: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Runs a command to completion, collecting its output, bounded by `timeout`.
pub async fn run(
    transport: &dyn Transport,
    command: &str,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<ExecOutcome, TransportError> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let collect = async move {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(chunk) = rx.recv().await {
            match chunk {
                OutputChunk::Stdout(b) => out.extend_from_slice(&b),
                OutputChunk::Stderr(b) => err.extend_from_slice(&b),
            }
        }
        (out, err)
    };
    let child_cancel = cancel.child_token();
    let exec = transport.exec(command, Some(tx), child_cancel.clone());
    let timed = async {
        match tokio::time::timeout(timeout, exec).await {
            Ok(r) => r,
            Err(_) => {
                child_cancel.cancel();
                Err(TransportError::Timeout {
                    target: transport.label(),
                    after: timeout,
                })
            }
        }
    };
    let (status, (out, err)) = tokio::join!(timed, collect);
    let status = status?;
    Ok(ExecOutcome {
        status,
        stdout: secret::mask(&String::from_utf8_lossy(&out)).into_owned(),
        stderr: secret::mask(&String::from_utf8_lossy(&err)).into_owned(),
        duration: started.elapsed(),
    })
}

/// Every host's transport, created on first use and shared afterwards: one SSH connection per
/// host serves all probes and steps; one Docker client per engine endpoint.
#[derive(Default)]
pub struct Connections {
    hosts: Mutex<HashMap<String, Arc<HostConn>>>,
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
                        HostConn::Ssh(Arc::new(ssh::SshHost::new(spec.clone())))
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
