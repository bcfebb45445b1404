//! The host probe over SFTP: one long-lived `sftp` subsystem session per SSH host reads
//! `/proc` and filesystem statistics without starting a remote process per poll.
//!
//! The session is opened on first use and kept with the host's connection (an
//! [`SshHost::attachment`]); it holds one of the host's `max_sessions` slots for its life.
//! The four `/proc` files stay open: each poll reads them again from offset 0 (procfs
//! regenerates a file's text when it is read from the start) until EOF, since procfs reports
//! a size of 0. Disks come from the `statvfs@openssh.com` extension. A poll therefore costs
//! nine small requests in two round trips (one per mount added), all answered by the one
//! process sshd started for the session (`internal-sftp` or `sftp-server`).
//!
//! A session that failed, was cancelled mid-read, or whose connection dropped is replaced on
//! the next poll (which reconnects the host if needed). A host without an sftp subsystem, or
//! whose sftp cannot see `/proc` (a chrooted sftp), or with `max_sessions = 1` (the session
//! would hold the only slot), is read with one `exec` per poll instead
//! ([`ExecReader`]); the reason is logged once per host and kept in [`SftpHost::fallback`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, try_join_all};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tracing::{debug, warn};

use super::host::{CPU_BASELINE_GAP, ExecReader, HostRaw, HostReader};
use crate::probes::parse::Statvfs;
use crate::transport::ssh::{SessionSlot, SshHost};

/// The `/proc` files a poll reads, in [`Session::files`] order.
const PROC_FILES: [&str; 4] = [
    "/proc/stat",
    "/proc/loadavg",
    "/proc/meminfo",
    "/proc/uptime",
];
/// Bytes asked per SFTP read (the server may answer fewer).
const READ_CHUNK: u32 = 64 * 1024;
/// A `/proc` file larger than this is refused rather than read forever.
const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Per-host state of the SFTP reader, kept with the host's SSH connection.
#[derive(Default)]
pub struct SftpHost {
    state: tokio::sync::Mutex<State>,
    fallback: std::sync::Mutex<Option<String>>,
}

impl SftpHost {
    /// Why this host is read with `exec` instead of SFTP, once that was decided.
    pub fn fallback(&self) -> Option<String> {
        self.fallback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// True while a session is open (for tests and diagnostics).
    pub async fn is_open(&self) -> bool {
        matches!(&*self.state.lock().await, State::Open(_))
    }
}

#[derive(Default)]
enum State {
    #[default]
    Closed,
    Open(Session),
    /// SFTP cannot serve this host; read it with `exec`.
    Exec,
}

struct Session {
    sftp: RawSftpSession,
    /// Open handles of [`PROC_FILES`], same order.
    files: Vec<String>,
    statvfs: bool,
    /// Set while a poll runs; still set at the next poll when that one was cancelled (the
    /// probe timed out), so the session is not trusted again.
    busy: bool,
    /// Dropped after `sftp` (field order), which closes the channel first.
    slot: SessionSlot,
}

/// What went wrong, and whether the session is to blame.
enum Failure {
    /// The session or its connection failed: reopen it.
    Session(String),
    /// This host cannot be read over SFTP at all: use `exec`.
    Unsupported(String),
    /// A real answer that is an error (a mount that does not exist is not one: it is
    /// reported per mount).
    Read(String),
}

/// Reads an SSH host's `/proc` over its long-lived SFTP session.
pub struct SftpReader<'h> {
    pub host: &'h SshHost,
    /// The probe's limit; one SFTP request gets half of it (whole seconds, at least 1), so
    /// a session that stopped answering is replaced within the same poll.
    pub timeout: Duration,
}

impl HostReader for SftpReader<'_> {
    fn read<'a>(
        &'a self,
        mounts: &'a [String],
        baseline: bool,
    ) -> BoxFuture<'a, Result<HostRaw, String>> {
        Box::pin(self.read_host(mounts, baseline))
    }
}

impl SftpReader<'_> {
    async fn read_host(&self, mounts: &[String], baseline: bool) -> Result<HostRaw, String> {
        let host = self.host.attachment::<SftpHost>();
        let mut state = host.state.lock().await;
        let mut reopened = false;
        loop {
            let usable = match &*state {
                State::Exec => {
                    drop(state);
                    return ExecReader {
                        transport: self.host,
                        timeout: self.timeout,
                    }
                    .read(mounts, baseline)
                    .await;
                }
                State::Open(s) => !s.busy && s.slot.connection_alive(),
                State::Closed => false,
            };
            if !usable {
                // Drop the old session (closing its channel) before opening the next.
                *state = State::Closed;
                if self.host.spec().max_sessions < 2 {
                    // The session would hold the only slot for good, starving commands.
                    self.use_exec(
                        &host,
                        "max_sessions = 1 leaves no session for commands while an sftp \
                         session is open",
                    );
                    *state = State::Exec;
                    continue;
                }
                match open(self.host, self.timeout).await {
                    Ok(s) => *state = State::Open(s),
                    Err(Failure::Unsupported(reason)) => {
                        self.use_exec(&host, &reason);
                        *state = State::Exec;
                        continue;
                    }
                    Err(Failure::Session(e) | Failure::Read(e)) => return Err(e),
                }
                reopened = true;
            }
            let State::Open(session) = &mut *state else {
                continue;
            };
            session.busy = true;
            match read_all(session, mounts, baseline).await {
                Ok(raw) => {
                    session.busy = false;
                    return Ok(raw);
                }
                Err(Failure::Session(e)) => {
                    debug!(target = %self.host.spec().display(), "sftp session failed: {e}");
                    *state = State::Closed;
                    // A session that served earlier polls may simply have outlived its
                    // connection: try a fresh one once.
                    if reopened {
                        return Err(format!("reading /proc over sftp failed: {e}"));
                    }
                }
                Err(Failure::Unsupported(reason)) => {
                    self.use_exec(&host, &reason);
                    *state = State::Exec;
                }
                Err(Failure::Read(e)) => {
                    session.busy = false;
                    return Err(e);
                }
            }
        }
    }

    fn use_exec(&self, host: &SftpHost, reason: &str) {
        let mut fallback = host
            .fallback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fallback.is_none() {
            warn!(
                target = %self.host.spec().display(),
                "host probe reads /proc with one command per poll: {reason}"
            );
            *fallback = Some(reason.to_owned());
        }
    }
}

async fn open(host: &SshHost, timeout: Duration) -> Result<Session, Failure> {
    let target = host.spec().display();
    let Some(sub) = host
        .open_subsystem("sftp")
        .await
        .map_err(|e| Failure::Session(e.masked()))?
    else {
        return Err(Failure::Unsupported(format!(
            "{target} has no sftp subsystem (add `Subsystem sftp internal-sftp` to its \
             sshd_config to poll without starting a process each time)"
        )));
    };
    let sftp = RawSftpSession::new(sub.channel.into_stream());
    sftp.set_timeout((timeout.as_secs() / 2).max(1));
    let version = sftp
        .init()
        .await
        .map_err(|e| Failure::Session(format!("sftp init with {target} failed: {e}")))?;
    let statvfs = version
        .extensions
        .get(russh_sftp::extensions::STATVFS)
        .is_some_and(|v| v == "2");
    let opens = PROC_FILES.iter().map(|path| {
        let (sftp, target) = (&sftp, &target);
        async move {
            sftp.open(*path, OpenFlags::READ, FileAttributes::empty())
                .await
                .map(|h| h.handle)
                .map_err(|e| match e {
                    SftpError::Status(s) => Failure::Unsupported(format!(
                        "sftp on {target} cannot open {path} ({}: {}); a chrooted or \
                         non-Linux sftp server cannot serve the host probe",
                        s.status_code, s.error_message
                    )),
                    other => Failure::Session(format!("opening {path} over sftp: {other}")),
                })
        }
    });
    let files = try_join_all(opens).await?;
    debug!(target = %target, statvfs, "sftp session open");
    Ok(Session {
        sftp,
        files,
        statvfs,
        busy: false,
        slot: sub.slot,
    })
}

fn session_failure(what: &str, e: SftpError) -> Failure {
    Failure::Session(format!("{what}: {e}"))
}

/// Reads one open file from offset 0 until EOF.
async fn read_to_end(sftp: &RawSftpSession, handle: &str, path: &str) -> Result<String, Failure> {
    let mut buf = Vec::new();
    loop {
        match sftp.read(handle, buf.len() as u64, READ_CHUNK).await {
            Ok(d) if d.data.is_empty() => break,
            Ok(d) => buf.extend_from_slice(&d.data),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break,
            Err(SftpError::Status(s)) => {
                return Err(Failure::Read(format!(
                    "reading {path} over sftp failed: {}: {}",
                    s.status_code, s.error_message
                )));
            }
            Err(e) => return Err(session_failure(&format!("reading {path}"), e)),
        }
        if buf.len() > MAX_FILE_BYTES {
            return Err(Failure::Read(format!(
                "{path} is larger than {MAX_FILE_BYTES} bytes; not a procfs file?"
            )));
        }
    }
    String::from_utf8(buf).map_err(|_| Failure::Read(format!("{path} is not UTF-8 text")))
}

async fn statvfs(sftp: &RawSftpSession, supported: bool, path: &str) -> Result<Statvfs, Failure> {
    if !supported {
        return Err(Failure::Read(
            "the host's sftp server lacks the statvfs@openssh.com extension".to_owned(),
        ));
    }
    match sftp.statvfs(path).await {
        Ok(v) => Ok(Statvfs {
            block_size: v.fragment_size,
            blocks: v.blocks,
            blocks_free: v.blocks_free,
            blocks_avail: v.blocks_avail,
            files: v.inodes,
            files_free: v.inodes_free,
        }),
        Err(SftpError::Status(s)) => Err(Failure::Read(format!(
            "{}: {}",
            s.status_code,
            if s.error_message.is_empty() {
                "cannot read filesystem statistics"
            } else {
                &s.error_message
            }
        ))),
        Err(e) => Err(session_failure(&format!("statvfs {path}"), e)),
    }
}

async fn read_all(s: &Session, mounts: &[String], baseline: bool) -> Result<HostRaw, Failure> {
    let sftp = &s.sftp;
    let file = |i: usize| read_to_end(sftp, &s.files[i], PROC_FILES[i]);
    let stat_baseline = if baseline {
        let b = file(0).await?;
        tokio::time::sleep(CPU_BASELINE_GAP).await;
        Some(b)
    } else {
        None
    };
    let disks = try_join_all(mounts.iter().map(|m| async move {
        match statvfs(sftp, s.statvfs, m).await {
            Ok(v) => Ok((m.clone(), Ok(v))),
            Err(Failure::Read(e)) => Ok((m.clone(), Err(e))),
            Err(other) => Err(other),
        }
    }));
    let (stat, loadavg, meminfo, uptime, mounts) =
        futures::try_join!(file(0), file(1), file(2), file(3), disks)?;
    Ok(HostRaw {
        stat_baseline,
        stat,
        loadavg,
        meminfo,
        uptime,
        mounts,
    })
}

/// The reader for `host`'s state, for tests and diagnostics.
pub fn state_of(host: &SshHost) -> Arc<SftpHost> {
    host.attachment::<SftpHost>()
}
