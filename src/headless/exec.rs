//! `opsdeck exec`: one command on many hosts at once, a result per host.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::table::{Colors, Tone};
use crate::inventory::Host;
use crate::transport::{self, Connections, ExecOutcome, ExitStatus};

/// One host's result. `error` is set when the command could not run or finish (connect,
/// host key, auth, timeout); then `status` is absent.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub host: String,
    pub transport: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ExitStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// True when the error leaves the command's outcome unknown (it may have run: timeout,
    /// cancel, connection lost after sending); absent without an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub may_have_run: Option<bool>,
    /// The head and tail of the output (see `transport::OutputLimit`), a mark in between
    /// when the middle was dropped.
    pub stdout: String,
    pub stderr: String,
    /// Bytes written, kept or not.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// True when the middle of stdout or stderr was dropped.
    pub truncated: bool,
    pub duration_ms: f64,
}

impl HostResult {
    pub fn ok(&self) -> bool {
        self.status.as_ref().is_some_and(ExitStatus::success)
    }
}

/// Runs `command` on every host concurrently; results come back in `hosts` order. The
/// timeout covers connecting and running, per host.
pub async fn exec_all(
    conns: &Arc<Connections>,
    hosts: &[&Host],
    command: &str,
    timeout: Duration,
) -> Vec<HostResult> {
    exec_each(conns, hosts, command, timeout, &mut |_| {}).await
}

/// [`exec_all`], calling `on_done` with each host's result the moment that host finishes
/// (`exec --json` prints it then, the progress line counts it); the returned results are in
/// `hosts` order.
pub async fn exec_each(
    conns: &Arc<Connections>,
    hosts: &[&Host],
    command: &str,
    timeout: Duration,
    on_done: &mut dyn FnMut(&HostResult),
) -> Vec<HostResult> {
    use futures::StreamExt as _;
    let cancel = CancellationToken::new();
    let mut running: futures::stream::FuturesUnordered<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let conn = conns.host(h);
            let cancel = cancel.clone();
            let name = h.name.clone();
            async move {
                let started = Instant::now();
                let t = conn.transport();
                let r = transport::run(t, command, timeout, cancel).await;
                let result = to_result(name, t.label(), r, started.elapsed());
                // The log writer masks secrets too; output is only logged at trace level.
                tracing::info!(host = %result.host, status = ?result.status, error = ?result.error, ms = result.duration_ms, "exec finished");
                tracing::trace!(host = %result.host, stdout = %result.stdout, stderr = %result.stderr, "exec output");
                (i, result)
            }
        })
        .collect();
    let mut results: Vec<Option<HostResult>> = vec![None; hosts.len()];
    while let Some((i, result)) = running.next().await {
        on_done(&result);
        results[i] = Some(result);
    }
    results.into_iter().flatten().collect()
}

fn to_result(
    host: String,
    transport: String,
    r: Result<ExecOutcome, transport::TransportError>,
    elapsed: Duration,
) -> HostResult {
    match r {
        Ok(o) => HostResult {
            host,
            transport,
            status: Some(o.status),
            error: None,
            may_have_run: None,
            stdout: o.stdout,
            stderr: o.stderr,
            stdout_bytes: o.stdout_bytes,
            stderr_bytes: o.stderr_bytes,
            truncated: o.truncated,
            duration_ms: ms(o.duration),
        },
        Err(e) => HostResult {
            host,
            transport,
            status: None,
            error: Some(e.masked()),
            may_have_run: Some(e.may_have_run()),
            stdout: String::new(),
            stderr: String::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            duration_ms: ms(elapsed),
        },
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Every host's block (header, stdout, stderr) in `results` order, then a summary line;
/// the status is coloured when `colors` says so.
pub fn render_text(results: &[HostResult], colors: Colors) -> String {
    let mut out = String::new();
    for r in results {
        let head = match (&r.status, &r.error) {
            (Some(s), _) => s.to_string(),
            (None, Some(e)) => format!("FAILED: {e}"),
            (None, None) => "unknown".to_owned(),
        };
        let tone = if r.ok() { Tone::Ok } else { Tone::Critical };
        let _ = write!(
            out,
            "== {} ({}) {} in {:.1} ms",
            colors.paint(Tone::Strong, &r.host),
            r.transport,
            colors.paint(tone, &head),
            r.duration_ms
        );
        if r.truncated {
            let _ = write!(
                out,
                " (output truncated: {} bytes on stdout, {} on stderr; the middle is omitted)",
                r.stdout_bytes, r.stderr_bytes
            );
        }
        out.push('\n');
        if !r.stdout.is_empty() {
            out.push_str(&r.stdout);
            if !r.stdout.ends_with('\n') {
                out.push('\n');
            }
        }
        if !r.stderr.is_empty() {
            let _ = writeln!(out, "-- stderr");
            out.push_str(&r.stderr);
            if !r.stderr.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    let failed = results.iter().filter(|r| !r.ok()).count();
    let failed_text = format!("{failed} failed");
    let _ = writeln!(
        out,
        "{} hosts, {} ok, {}",
        results.len(),
        results.len() - failed,
        if failed > 0 {
            colors.paint(Tone::Critical, &failed_text)
        } else {
            failed_text
        }
    );
    out
}
