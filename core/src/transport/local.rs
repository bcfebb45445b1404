//! The local transport: commands run through `sh -c` on this machine, each in its own process
//! group.
//!
//! A command owns its process group for its whole life, and the group ends with it: when the
//! shell exits, whatever it left running in the group (`sleep 300 &`, a backgrounded daemon)
//! is sent SIGTERM and, if still there after [`GRACE`], SIGKILL. A timeout or a cancel does the
//! same while the shell still runs. A process that must outlive its step has to leave the group
//! itself (`setsid`, or the service manager).
//!
//! The shell is not reaped until the group has been signalled: its pid, which is the group's
//! id, stays reserved, so the signals can never reach a stranger that was given the number.
//! Output readers are given [`DRAIN`] after that; a pipe held open by a process that escaped
//! the group (`setsid cmd &`) is abandoned, never waited for.

use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ExitStatus, OutputChunk, OutputSink, Transport, TransportError};

pub struct LocalHost;

const TARGET: &str = "local";

/// Time the group has to end after SIGTERM before it is sent SIGKILL.
pub const GRACE: Duration = Duration::from_millis(500);

/// Time output readers have to reach the end of the pipes once the group is gone.
pub const DRAIN: Duration = Duration::from_millis(200);

async fn pump<R: AsyncReadExt + Unpin>(mut r: R, sink: Option<OutputSink>, stderr: bool) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut sink = sink;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(s) = &sink {
                    let b = buf[..n].to_vec();
                    let chunk = if stderr {
                        OutputChunk::Stderr(b)
                    } else {
                        OutputChunk::Stdout(b)
                    };
                    if s.send(chunk).await.is_err() {
                        // Nobody listens any more; keep draining so the command never blocks.
                        sink = None;
                    }
                }
            }
        }
    }
}

/// Reader tasks, aborted when dropped (a future dropped mid-command leaves none behind).
struct Readers(Vec<JoinHandle<()>>);

impl Readers {
    /// Waits up to `bound` for the readers to reach end of file, then abandons them.
    async fn drain(mut self, bound: Duration) {
        let all = futures::future::join_all(self.0.iter_mut());
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::debug!(
                "output pipes still open {bound:?} after the command's group ended; abandoned"
            );
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Kills the group with SIGKILL if the command's future is dropped before it could end it.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Transport for LocalHost {
    fn label(&self) -> String {
        TARGET.to_owned()
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(TransportError::Cancelled {
                    target: TARGET.to_owned(),
                    started: false,
                });
            }
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .process_group(0)
                .spawn()
                .map_err(|e| TransportError::Other {
                    target: TARGET.to_owned(),
                    reason: format!("cannot start sh: {e}"),
                })?;
            let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
                return Err(lost("the shell has no process id"));
            };
            let pgid = Pid::from_raw(pid);
            let mut guard = GroupGuard(Some(pgid));
            let mut readers = Vec::new();
            if let Some(o) = child.stdout.take() {
                readers.push(tokio::spawn(pump(o, sink.clone(), false)));
            }
            if let Some(e) = child.stderr.take() {
                readers.push(tokio::spawn(pump(e, sink, true)));
            }
            let readers = Readers(readers);

            let exited = tokio::task::spawn_blocking(move || wait_exit_keep_zombie(pgid));
            let cancelled = tokio::select! {
                r = exited => {
                    if let Ok(Err(e)) = r {
                        tracing::debug!("waiting for the shell without reaping failed: {e}");
                    }
                    false
                }
                () = cancel.cancelled() => true,
            };
            end_group(pgid).await;
            let status = child.wait().await;
            guard.0 = None;
            readers.drain(DRAIN).await;
            if cancelled {
                return Err(TransportError::Cancelled {
                    target: TARGET.to_owned(),
                    started: true,
                });
            }
            let status = status.map_err(|e| lost(&format!("waiting for the shell: {e}")))?;
            Ok(match status.code() {
                Some(c) => ExitStatus::Code(c),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let sig = status.signal().unwrap_or(0);
                    ExitStatus::Signal(Signal::try_from(sig).map_or_else(
                        |_| sig.to_string(),
                        |s| s.as_str().trim_start_matches("SIG").to_owned(),
                    ))
                }
            })
        })
    }
}

fn lost(reason: &str) -> TransportError {
    TransportError::Lost {
        target: TARGET.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Blocks until the shell `pid` has exited, leaving it unreaped (a zombie keeps its pid, and
/// so the group id, reserved until `Child::wait` reaps it).
fn wait_exit_keep_zombie(pid: Pid) -> nix::Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
            Ok(_) => return Ok(()),
        }
    }
}

/// Ends every process of the group: SIGTERM, then SIGKILL to whatever still lives after
/// [`GRACE`]. Must be called while the group leader (the shell) is not yet reaped.
pub(crate) async fn end_group(pgid: Pid) {
    if killpg(pgid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + GRACE;
    let mut pause = Duration::from_millis(2);
    loop {
        if !group_has_live_members(pgid) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = killpg(pgid, Signal::SIGKILL);
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// True if a process of group `pgid` is still alive (zombies do not count). Without `/proc`
/// the answer is yes, so the caller waits the grace out and kills.
fn group_has_live_members(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    let want = pgid.as_raw().to_string();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).unwrap_or("");
        if pgrp == want && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}
