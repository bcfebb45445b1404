//! Docker via bollard: exec in a container and container lifecycle.
//!
//! A container is named directly or found by the labels docker compose puts on a service's
//! containers. Every model field the engine returns is treated as optional: bollard 0.21.1
//! talks to the engine without an API version prefix, so older engines answer in their own
//! shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerStatsResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RestartContainerOptionsBuilder, StartContainerOptions, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::ssh::SshHost;
use super::{ExitStatus, OutputChunk, OutputSink, Transport, TransportError};
use crate::inventory::{ContainerTarget, DockerSpec, SshSpec};
use crate::secret;

pub mod endpoint;
mod remote;

pub use endpoint::{DEFAULT_SOCKET, Endpoint, Resolved, Source};

/// Bounds every engine request until its response headers (followed streams are not cut).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the engine to mark an exec finished once its output has ended.
const EXEC_SETTLE: Duration = Duration::from_secs(5);

const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// One bollard client per engine endpoint, shared by every container host on it.
/// Cloning shares the cache.
#[derive(Default, Clone)]
pub struct DockerClients {
    clients: Arc<Mutex<HashMap<String, Docker>>>,
    /// SSH connections to `ssh://` engines' hosts, one per SSH target.
    ssh: Arc<Mutex<HashMap<String, Arc<SshHost>>>>,
}

impl DockerClients {
    /// The client for `spec`'s engine (see [`endpoint::resolve`]), created on first use, and
    /// where it points. A failed creation (say, the socket does not exist yet) is not cached.
    pub fn client(&self, spec: &DockerSpec) -> Result<(Docker, Resolved), TransportError> {
        let resolved = resolve_spec(spec)?;
        let ssh_key = spec.ssh.as_ref().map(SshSpec::display).unwrap_or_default();
        let key = format!("{resolved:?} {ssh_key}");
        let mut map = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = map.get(&key) {
            return Ok((d.clone(), resolved));
        }
        let docker = self.connect(&resolved, spec)?;
        map.insert(key, docker.clone());
        Ok((docker, resolved))
    }

    fn connect(&self, resolved: &Resolved, spec: &DockerSpec) -> Result<Docker, TransportError> {
        let secs = REQUEST_TIMEOUT.as_secs();
        let fail = |reason: String| TransportError::Docker {
            target: resolved.label(),
            reason,
        };
        let result = match &resolved.endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(
                &format!("unix://{}", path.display()),
                secs,
                API_DEFAULT_VERSION,
            ),
            Endpoint::Tcp {
                host,
                port,
                tls: None,
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Docker::connect_with_http(
                    &format!("tcp://{host}:{port}"),
                    secs,
                    API_DEFAULT_VERSION,
                )
            }
            Endpoint::Tcp {
                host,
                port,
                tls: Some(settings),
            } => {
                // Fail now on unreadable files rather than on every request.
                super::tls::client_config(settings).map_err(|e| fail(e.to_string()))?;
                Docker::connect_with_custom_transport(
                    remote::tls_transport(host.clone(), *port, settings.clone()),
                    Some("https://docker"),
                    secs,
                    API_DEFAULT_VERSION,
                )
            }
            Endpoint::Ssh { socket, .. } => {
                let ssh_spec = spec.ssh.clone().ok_or_else(|| {
                    fail(
                        "an ssh:// engine needs its SSH settings resolved from the inventory \
                         (load the inventory, or give DockerSpec::ssh)"
                            .to_owned(),
                    )
                })?;
                let host = self
                    .ssh
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(ssh_spec.display())
                    .or_insert_with(|| Arc::new(SshHost::new(ssh_spec)))
                    .clone();
                Docker::connect_with_custom_transport(
                    remote::ssh_transport(host, socket.clone()),
                    Some("http://docker"),
                    secs,
                    API_DEFAULT_VERSION,
                )
            }
        };
        result
            .map(|d| d.with_timeout(REQUEST_TIMEOUT))
            .map_err(|e| fail(format!("{e}; is dockerd running?")))
    }
}

/// Where `spec` points, or why that cannot be told.
fn resolve_spec(spec: &DockerSpec) -> Result<Resolved, TransportError> {
    endpoint::resolve(
        spec.endpoint.as_deref(),
        spec.context.as_deref(),
        spec.tls.as_ref(),
        &endpoint::process_env,
    )
    .map_err(|reason| TransportError::Docker {
        target: spec
            .endpoint
            .clone()
            .or_else(|| spec.context.clone())
            .unwrap_or_else(|| "docker".to_owned()),
        reason,
    })
}

/// What the user would see as the engine address (see [`Resolved::label`]).
fn endpoint_label(spec: &DockerSpec) -> String {
    match resolve_spec(spec) {
        Ok(r) => r.label(),
        Err(_) => spec
            .endpoint
            .clone()
            .or_else(|| spec.context.clone())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_owned()),
    }
}

/// A container's state as `docker inspect` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    /// `running`, `exited`, `paused`, `restarting`, `created`, `dead`, ...
    pub state: String,
    pub running: bool,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    pub restart_count: Option<i64>,
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
}

/// One resource sample, computed as `docker stats` does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerStats {
    /// Percent of one CPU (can exceed 100 on several CPUs).
    pub cpu_percent: Option<f64>,
    /// Memory in use without the page cache.
    pub mem_used_bytes: Option<u64>,
    pub mem_limit_bytes: Option<u64>,
}

pub struct DockerHost {
    spec: Box<DockerSpec>,
    clients: DockerClients,
}

impl DockerHost {
    pub fn new(spec: DockerSpec, clients: &DockerClients) -> Self {
        DockerHost {
            spec: Box::new(spec),
            clients: clients.clone(),
        }
    }

    pub fn spec(&self) -> &DockerSpec {
        &self.spec
    }

    fn docker(&self) -> Result<Docker, TransportError> {
        self.clients.client(&self.spec).map(|(d, _)| d)
    }

    /// Where this host's engine is, for messages.
    pub fn endpoint_label(&self) -> String {
        endpoint_label(&self.spec)
    }

    /// What to check when the engine cannot be reached, given what failed (`detail`).
    fn reach_hint(&self, detail: &str) -> String {
        let resolved = resolve_spec(&self.spec);
        let label = self.endpoint_label();
        let Ok(resolved) = resolved else {
            return format!("is dockerd running? ({label})");
        };
        match &resolved.endpoint {
            // The SSH leg says itself what failed (connect, host key, login, the socket).
            Endpoint::Ssh { .. } => format!("({label})"),
            Endpoint::Tcp { tls: Some(_), .. } if detail.contains("TLS") => format!("({label})"),
            Endpoint::Tcp { tls: None, .. } => format!(
                "is dockerd listening there, and without TLS? For a TLS engine set \
                 DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (or use a docker context) ({label})"
            ),
            _ => format!("is dockerd running? ({label})"),
        }
    }

    /// A TLS message names the inventory's settings; for an engine found through the
    /// environment or a context, name where its files are instead.
    fn tls_words(&self, text: String) -> String {
        let Ok(r) = resolve_spec(&self.spec) else {
            return text;
        };
        let (ca, client) = match r.source {
            Source::DockerHost => (
                "the ca.pem in DOCKER_CERT_PATH",
                "cert.pem and key.pem in DOCKER_CERT_PATH",
            ),
            Source::Context(_) => (
                "the context's ca.pem (docker context inspect)",
                "the context's cert.pem and key.pem",
            ),
            _ => return text,
        };
        text.replace("point tls.ca_file at", "make")
            .replace("set tls.ca_file to", "make")
            .replace("tls.client_cert and tls.client_key", client)
            .replace(
                "the CA that signed it",
                &format!("{ca} the CA that signed it"),
            )
    }

    fn err(&self, reason: impl Into<String>) -> TransportError {
        TransportError::Docker {
            target: self.label(),
            reason: reason.into(),
        }
    }

    /// Turns an engine error into a message that says what to check.
    fn engine_err(&self, what: &str, e: &BollardError) -> TransportError {
        let reason = match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => format!(
                "{what}: {message}; check the container name with `docker ps -a` on {}",
                self.endpoint_label()
            ),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => format!("{what}: engine answered {status_code}: {message}"),
            BollardError::SocketNotFoundError(path) => format!(
                "{what}: engine socket {path} does not exist; {}",
                self.reach_hint("")
            ),
            BollardError::RequestTimeoutError => format!(
                "{what}: the engine did not answer within {}s; {}",
                REQUEST_TIMEOUT.as_secs(),
                self.reach_hint("")
            ),
            BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::HyperResponseError { .. } => {
                let detail = self.tls_words(error_chain(e));
                let hint = self.reach_hint(&detail);
                let sep = if hint.starts_with('(') { " " } else { "; " };
                format!("{what}: cannot reach the engine: {detail}{sep}{hint}")
            }
            other => format!("{what}: {other}"),
        };
        self.err(secret::mask(&reason).into_owned())
    }

    /// The id (or name) of the container this host means, preferring a running one among
    /// a compose service's containers.
    pub async fn resolve(&self) -> Result<String, TransportError> {
        let (project, service) = match &self.spec.target {
            ContainerTarget::Name(n) => return Ok(n.clone()),
            ContainerTarget::Compose { project, service } => (project, service),
        };
        let docker = self.docker()?;
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{COMPOSE_PROJECT}={project}"),
                format!("{COMPOSE_SERVICE}={service}"),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let found = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.engine_err("listing containers", &e))?;
        let running = found
            .iter()
            .find(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING));
        match running.or(found.first()) {
            Some(c) => c
                .id
                .clone()
                .ok_or_else(|| self.err("the engine listed a container without an id".to_owned())),
            None => Err(self.err(format!(
                "no container of compose project {project:?} service {service:?} on {}; \
                 check `docker ps -a --filter label={COMPOSE_PROJECT}={project} \
                 --filter label={COMPOSE_SERVICE}={service}` and the names in the inventory",
                self.endpoint_label()
            ))),
        }
    }

    /// `docker inspect`: state, health, restarts.
    pub async fn inspect(&self) -> Result<ContainerStatus, TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let info = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.engine_err("inspecting the container", &e))?;
        let state = info.state.unwrap_or_default();
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none");
        Ok(ContainerStatus {
            id: info.id.unwrap_or(id),
            name: info
                .name
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            state: state
                .status
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
            running: state.running.unwrap_or(false),
            health,
            restart_count: info.restart_count,
            started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
            exit_code: state.exit_code,
        })
    }

    pub async fn start(&self) -> Result<(), TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        match docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            // 304: already running; starting a running container is not a failure.
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.engine_err("starting the container", &e)),
        }
    }

    /// Stops the container: SIGTERM, then SIGKILL after `timeout`.
    pub async fn stop(&self, timeout: Duration) -> Result<(), TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let opts = StopContainerOptionsBuilder::default()
            .t(secs_i32(timeout))
            .build();
        match docker.stop_container(&id, Some(opts)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.engine_err("stopping the container", &e)),
        }
    }

    /// Restarts the container, killing it after `timeout` if it does not stop.
    pub async fn restart(&self, timeout: Duration) -> Result<(), TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let opts = RestartContainerOptionsBuilder::default()
            .t(secs_i32(timeout))
            .build();
        docker
            .restart_container(&id, Some(opts))
            .await
            .map_err(|e| self.engine_err("restarting the container", &e))
    }

    /// The last `lines` lines of the container's output (stdout and stderr interleaved as
    /// the engine stored them), secrets masked.
    pub async fn logs_tail(&self, lines: usize) -> Result<String, TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .tail(&lines.to_string())
            .build();
        let mut stream = docker.logs(&id, Some(opts));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let item = item.map_err(|e| self.engine_err("reading the container's logs", &e))?;
            out.extend_from_slice(item.as_ref());
        }
        Ok(secret::mask(&String::from_utf8_lossy(&out)).into_owned())
    }

    /// One resource sample (the engine takes about a second to measure the CPU delta).
    pub async fn stats_once(&self) -> Result<ContainerStats, TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let opts = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(false)
            .build();
        let mut stream = docker.stats(&id, Some(opts));
        let sample = match stream.next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(self.engine_err("reading the container's stats", &e)),
            None => return Err(self.err("the engine returned no stats sample")),
        };
        Ok(compute_stats(&sample))
    }

    /// `started` is set once the engine was asked to start the exec: from then on the
    /// command may run, and failures are [`TransportError::Lost`].
    async fn exec_inner(
        &self,
        command: &str,
        sink: Option<OutputSink>,
        started: &std::sync::atomic::AtomicBool,
    ) -> Result<ExitStatus, TransportError> {
        let docker = self.docker()?;
        let id = self.resolve().await?;
        let config = CreateExecOptions {
            cmd: Some(vec!["sh", "-c", command]),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        let created = match docker.create_exec(&id, config).await {
            Ok(c) => c,
            Err(BollardError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => {
                let state = match self.inspect().await {
                    Ok(s) => format!(
                        "its state is {:?}{}",
                        s.state,
                        s.exit_code
                            .map(|c| format!(" (exit code {c})"))
                            .unwrap_or_default()
                    ),
                    Err(_) => message,
                };
                return Err(self.err(format!(
                    "container is not running: {state}; start it (or check why it stopped \
                     with `docker logs`)"
                )));
            }
            Err(e) => return Err(self.engine_err("creating the exec", &e)),
        };
        started.store(true, std::sync::atomic::Ordering::Release);
        let lost = |e: TransportError| match e {
            TransportError::Docker { target, reason } => TransportError::Lost { target, reason },
            other => other,
        };
        let attached = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| lost(self.engine_err("starting the exec", &e)))?;
        let StartExecResults::Attached { mut output, .. } = attached else {
            return Err(lost(
                self.err("the engine detached the exec instead of attaching"),
            ));
        };
        let mut sink = sink;
        while let Some(item) = output.next().await {
            let chunk = match item.map_err(|e| lost(self.engine_err("reading exec output", &e)))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    OutputChunk::Stdout(message.to_vec())
                }
                LogOutput::StdErr { message } => OutputChunk::Stderr(message.to_vec()),
                LogOutput::StdIn { .. } => continue,
            };
            if let Some(s) = &sink
                && s.send(chunk).await.is_err()
            {
                // Nobody reads any more: keep draining so the command can finish.
                sink = None;
            }
        }
        drop(sink);
        self.exit_code(&docker, &created.id).await.map_err(lost)
    }

    /// The exec's exit code, polling briefly: the engine can report the stream's end a moment
    /// before it marks the exec finished.
    async fn exit_code(
        &self,
        docker: &Docker,
        exec_id: &str,
    ) -> Result<ExitStatus, TransportError> {
        let deadline = tokio::time::Instant::now() + EXEC_SETTLE;
        let mut pause = Duration::from_millis(2);
        loop {
            let info = docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| self.engine_err("reading the exec's exit code", &e))?;
            if info.running != Some(true) {
                return match info.exit_code {
                    Some(code) => Ok(ExitStatus::Code(
                        i32::try_from(code).unwrap_or(if code < 0 { i32::MIN } else { i32::MAX }),
                    )),
                    None => Err(self.err("the engine reported no exit code for the exec")),
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.err(format!(
                    "the exec's output ended but it still runs after {}s",
                    EXEC_SETTLE.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// An error and its causes ("client error (SendRequest): connection closed before message
/// completed"), without repeating what the outer text already says.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

fn secs_i32(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// CPU and memory as `docker stats` computes them: CPU from the deltas between this sample
/// and the previous one the engine took; memory without the page cache.
pub fn compute_stats(s: &ContainerStatsResponse) -> ContainerStats {
    let cpu_percent = (|| {
        let cpu = s.cpu_stats.as_ref()?;
        let pre = s.precpu_stats.as_ref()?;
        let total = cpu.cpu_usage.as_ref()?.total_usage?;
        let pre_total = pre.cpu_usage.as_ref()?.total_usage?;
        let system = cpu.system_cpu_usage?;
        let pre_system = pre.system_cpu_usage?;
        let online = cpu
            .online_cpus
            .filter(|n| *n > 0)
            .map(u64::from)
            .or_else(|| {
                cpu.cpu_usage
                    .as_ref()?
                    .percpu_usage
                    .as_ref()
                    .map(|v| v.len() as u64)
            })?;
        let cpu_delta = total.checked_sub(pre_total)?;
        let system_delta = system.checked_sub(pre_system)?;
        if system_delta == 0 {
            return None;
        }
        Some(cpu_delta as f64 / system_delta as f64 * online as f64 * 100.0)
    })();
    let mem = s.memory_stats.as_ref();
    let mem_used_bytes = mem.and_then(|m| {
        let usage = m.usage?;
        // cgroup v1 reports the cache as `total_inactive_file`/`cache`, v2 as `inactive_file`.
        let cache = m.stats.as_ref().and_then(|st| {
            st.get("total_inactive_file")
                .or_else(|| st.get("inactive_file"))
                .or_else(|| st.get("cache"))
                .copied()
        });
        Some(usage.saturating_sub(cache.unwrap_or(0)))
    });
    ContainerStats {
        cpu_percent,
        mem_used_bytes,
        mem_limit_bytes: mem.and_then(|m| m.limit),
    }
}

impl Transport for DockerHost {
    fn label(&self) -> String {
        match &self.spec.target {
            ContainerTarget::Name(n) => format!("docker {n}"),
            ContainerTarget::Compose { project, service } => format!("docker {project}/{service}"),
        }
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>> {
        Box::pin(async move {
            // The engine has no way to stop an exec: a cancelled one runs on in the container.
            let started = std::sync::atomic::AtomicBool::new(false);
            tokio::select! {
                r = self.exec_inner(command, sink, &started) => r,
                () = cancel.cancelled() => Err(TransportError::Cancelled {
                    target: self.label(),
                    started: started.load(std::sync::atomic::Ordering::Acquire),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(json: &str) -> ContainerStatsResponse {
        serde_json::from_str(json).expect("stats fixture")
    }

    #[test]
    fn cpu_and_memory_are_computed_as_docker_stats_does() {
        // 2 CPUs; the container used 0.5 s of CPU while the system used 4 s: 25 % of one CPU.
        let s = sample(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":1500000000},"system_cpu_usage":9000000000,"online_cpus":2},
                "precpu_stats":{"cpu_usage":{"total_usage":1000000000},"system_cpu_usage":5000000000},
                "memory_stats":{"usage":10485760,"limit":1073741824,"stats":{"total_inactive_file":2097152}}}"#,
        );
        let st = compute_stats(&s);
        assert_eq!(st.cpu_percent, Some(25.0));
        assert_eq!(st.mem_used_bytes, Some(8 * 1024 * 1024));
        assert_eq!(st.mem_limit_bytes, Some(1024 * 1024 * 1024));
    }

    #[test]
    fn missing_fields_give_no_figure_rather_than_a_wrong_one() {
        let st = compute_stats(&sample(r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}}}"#));
        assert_eq!(
            st,
            ContainerStats {
                cpu_percent: None,
                mem_used_bytes: None,
                mem_limit_bytes: None
            }
        );
        // Without online_cpus the per-CPU list gives the count (older engines).
        let st = compute_stats(&sample(
            r#"{"cpu_stats":{"cpu_usage":{"total_usage":300,"percpu_usage":[1,2,3,4]},"system_cpu_usage":1400},
                "precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":600}}"#,
        ));
        assert_eq!(st.cpu_percent, Some(100.0));
    }
}
