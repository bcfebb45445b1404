//! The local transport: commands run through `sh -c` on this machine.

use std::process::Stdio;

use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{ExitStatus, OutputChunk, OutputSink, Transport, TransportError};

pub struct LocalHost;

const TARGET: &str = "local";

async fn pump<R: AsyncReadExt + Unpin>(mut r: R, sink: Option<OutputSink>, stderr: bool) {
    let mut buf = vec![0u8; 16 * 1024];
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
                        // Nobody listens any more; keep draining so the child never blocks.
                    }
                }
            }
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
            let out = child
                .stdout
                .take()
                .map(|o| tokio::spawn(pump(o, sink.clone(), false)));
            let err = child
                .stderr
                .take()
                .map(|e| tokio::spawn(pump(e, sink, true)));
            let status = tokio::select! {
                s = child.wait() => s.map_err(|e| TransportError::Other { target: TARGET.to_owned(), reason: e.to_string() })?,
                () = cancel.cancelled() => {
                    kill_group(&child);
                    let _ = child.kill().await;
                    return Err(TransportError::Cancelled { target: TARGET.to_owned() });
                }
            };
            for h in [out, err].into_iter().flatten() {
                let _ = h.await;
            }
            Ok(match status.code() {
                Some(c) => ExitStatus::Code(c),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let sig = status.signal().unwrap_or(0);
                    ExitStatus::Signal(nix::sys::signal::Signal::try_from(sig).map_or_else(
                        |_| sig.to_string(),
                        |s| s.as_str().trim_start_matches("SIG").to_owned(),
                    ))
                }
            })
        })
    }
}

/// The shell may have started children of its own: stop the whole process group.
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
