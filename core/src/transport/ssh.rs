//! SSH via russh: one authenticated connection per host, shared by many channels.
//!
//! The connection is made on first use. Concurrent first users wait for one connect attempt
//! (and share its failure); a dropped connection is noticed by the next user, which
//! reconnects. Commands run on session channels bounded by the host's `MaxSessions`; tunnels
//! (`forward_local`, jump hosts) use direct-tcpip channels on the same connection.
//!
//! Trust is decided before authentication, the way OpenSSH decides it (see [`known_hosts`]),
//! against the inventory's `known_hosts` file and the global ones: a revoked key, a changed key
//! (any key of any type recorded for the host and none matching) and, under `strict`, an
//! unknown host are refused with the fingerprints and what to do. Host certificates signed by a
//! `@cert-authority` trusted for the host are accepted. Under `accept-new` a host with nothing
//! recorded has its key appended to the inventory's file once: under an `flock` on the file,
//! after checking again under the lock, so racing processes record one line.
//!
//! Commands end with their process group: a timeout or cancel sends SIGTERM, then SIGKILL, over
//! the channel (sshd signals the session's process group), and a command that exits leaves
//! nothing running in its group (see [`wrap_command`]).

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::fcntl::{Flock, FlockArg};
use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{
    Algorithm, Certificate, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, ChannelReadHalf, ChannelStream, ChannelWriteHalf, Preferred, Sig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::known_hosts::{self, KnownHosts, Marker, Verdict};
use super::{ExitStatus, OutputChunk, OutputSink, Transport, TransportError};
use crate::inventory::{HostKeyPolicy, SshSpec};

/// How often a refused session channel is retried (about 2 s in all).
const SESSION_OPEN_RETRIES: u32 = 25;

/// A stream tunnelled to `host:port` as seen from the SSH host.
pub type TunnelStream = ChannelStream<client::Msg>;

/// One host reached over SSH.
pub struct SshHost {
    inner: Arc<Inner>,
    /// `forward_local` listeners by target, kept for the life of this `SshHost`.
    forwards: Mutex<HashMap<(String, u16), SocketAddr>>,
    /// Accept loops of `forward_local` listeners, stopped when the host is dropped.
    forward_tasks: std::sync::Mutex<Vec<AbortHandle>>,
    /// Per-host state of this host's users, one value per type (see [`SshHost::attachment`]).
    attachments: std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

/// A session channel running a subsystem (`sftp`), with the session slot it occupies.
pub struct SubsystemChannel {
    pub channel: russh::Channel<client::Msg>,
    pub slot: SessionSlot,
}

/// One of the host's `max_sessions` slots, held by a long-lived channel for its whole life
/// (sshd counts a subsystem channel against `MaxSessions` like a running command). Dropping it
/// frees the slot; drop it together with the channel.
pub struct SessionSlot {
    _permit: OwnedSemaphorePermit,
    conn: Arc<Conn>,
}

impl SessionSlot {
    /// False once the connection that carries the channel is closed or was seen failing:
    /// the channel is gone with it, open a new one.
    pub fn connection_alive(&self) -> bool {
        self.conn.alive()
    }
}

/// Connections shared by every user of the same resolved host: the hosts of an inventory
/// and the jump hosts they are reached through. A bastion in front of many targets is
/// connected to once, and that one connection carries every target's tunnel; a host that is
/// both an inventory host and a jump host is one connection too.
///
/// Holds its entries weakly: a connection lives as long as a host that uses it (directly or
/// as its jump host).
#[derive(Default)]
pub struct SshPool {
    entries: std::sync::Mutex<HashMap<String, Weak<Inner>>>,
}

impl SshPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared connection state for `spec` (and, first, for its jump hosts).
    fn inner(&self, spec: &SshSpec) -> Arc<Inner> {
        let jump = spec.jump.as_deref().map(|j| self.inner(j));
        let key = spec.connection_key();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(inner) = entries.get(&key).and_then(Weak::upgrade) {
            return inner;
        }
        entries.retain(|_, w| w.strong_count() > 0);
        let inner = Arc::new(Inner::new(spec.clone(), jump));
        entries.insert(key, Arc::downgrade(&inner));
        inner
    }

    /// How many distinct connections (hosts and jump hosts) are in use.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Inner {
    spec: SshSpec,
    /// The jump host's shared connection state (`spec.jump`), if any.
    jump: Option<Arc<Inner>>,
    /// The shared connection. Held across a connect attempt so concurrent first users wait
    /// for that one attempt instead of starting their own.
    slot: Mutex<Slot>,
    /// Counts finished connect attempts, so a caller that waited for someone else's failed
    /// attempt gets that failure instead of trying again at once.
    attempts: AtomicU64,
    sessions: Arc<Semaphore>,
}

impl Inner {
    fn new(spec: SshSpec, jump: Option<Arc<Inner>>) -> Self {
        let sessions = Arc::new(Semaphore::new(spec.max_sessions.max(1)));
        Inner {
            spec,
            jump,
            slot: Mutex::new(Slot::default()),
            attempts: AtomicU64::new(0),
            sessions,
        }
    }
}

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Conn>>,
    last_failure: Option<TransportError>,
}

struct Conn {
    handle: Handle<Client>,
    /// Set when a user saw the connection fail; the next user reconnects.
    dead: AtomicBool,
    /// The jump host's connection carrying this one (kept alive as long as this one).
    _jump: Option<Arc<Conn>>,
    /// The `ProxyCommand` carrying this connection, stopped with it.
    _proxy: Option<ProxyChild>,
}

impl Conn {
    fn alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire) && !self.handle.is_closed()
    }

    fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
    }
}

impl SshHost {
    /// A host with connections of its own (its jump hosts included): nothing is shared with
    /// other `SshHost`s. See [`SshHost::in_pool`].
    pub fn new(spec: SshSpec) -> Self {
        Self::in_pool(spec, &SshPool::new())
    }

    /// A host whose connection, and those of its jump hosts, are shared with every host of
    /// `pool` that resolves to the same connection.
    pub fn in_pool(spec: SshSpec, pool: &SshPool) -> Self {
        SshHost {
            inner: pool.inner(&spec),
            forwards: Mutex::new(HashMap::new()),
            forward_tasks: std::sync::Mutex::new(Vec::new()),
            attachments: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The value of type `T` attached to this host, created with `T::default()` on first use
    /// and kept as long as this `SshHost`. Lets a user keep per-host state next to the
    /// connection (the host probe keeps its long-lived SFTP session here) without this module
    /// knowing its type.
    pub fn attachment<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self
            .attachments
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match Arc::clone(entry).downcast::<T>() {
            Ok(v) => v,
            // Unreachable: the key is T's own TypeId. Replace rather than panic.
            Err(_) => {
                let v = Arc::new(T::default());
                *entry = v.clone();
                v
            }
        }
    }

    /// Opens a session channel on the shared connection and starts subsystem `name` on it
    /// (`sftp`). `Ok(None)` when the host refuses that subsystem (sshd has no `Subsystem`
    /// line for it). The channel holds one of the host's `max_sessions` slots until its
    /// [`SessionSlot`] is dropped; this waits while all slots are busy.
    pub async fn open_subsystem(
        &self,
        name: &str,
    ) -> Result<Option<SubsystemChannel>, TransportError> {
        // Runs as its own task: a caller that gives up (a probe timeout) must not leave a
        // half-started channel open on the server, where it would count against MaxSessions
        // while our semaphore believes the slot free. The task closes what nobody took.
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let r = inner.open_subsystem(&name).await;
            if let Err(Ok(Some(unwanted))) = tx.send(r) {
                let _ = unwanted.channel.close().await;
            }
        });
        rx.await.map_err(|_| TransportError::Cancelled {
            target: self.inner.target(),
            started: false,
        })?
    }

    pub fn spec(&self) -> &SshSpec {
        &self.inner.spec
    }

    /// True while an authenticated connection is open (never connects).
    pub async fn is_connected(&self) -> bool {
        self.inner
            .slot
            .lock()
            .await
            .conn
            .as_ref()
            .is_some_and(|c| c.alive())
    }

    /// Connects now if not connected (otherwise connections are made on first use).
    pub async fn connect(&self) -> Result<(), TransportError> {
        self.inner.connection().await.map(|_| ())
    }

    /// A stream to `host:port` as seen from the SSH host (direct-tcpip), over the shared
    /// connection.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TunnelStream, TransportError> {
        self.inner.open_direct_tcpip(host, port).await
    }

    /// A stream to the Unix socket `path` on the SSH host (`direct-streamlocal@openssh.com`,
    /// as `ssh -L local:/path` uses), over the shared connection: how opsdeck reaches a remote
    /// `/var/run/docker.sock` without a second SSH client. A connection found dead before the
    /// channel opened is replaced once.
    pub async fn open_direct_streamlocal(
        &self,
        path: &str,
    ) -> Result<TunnelStream, TransportError> {
        let mut reconnected = false;
        loop {
            let conn = self.inner.connection().await?;
            match conn.handle.channel_open_direct_streamlocal(path).await {
                Ok(ch) => return Ok(ch.into_stream()),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    return Err(TransportError::Other {
                        target: self.inner.target(),
                        reason: format!(
                            "the host refused a channel to the socket {path} ({reason:?}); does \
                             the socket exist there, may {} open it, and does sshd allow \
                             AllowStreamLocalForwarding?",
                            self.inner.spec.user
                        ),
                    });
                }
                Err(e) => {
                    conn.mark_dead();
                    if reconnected {
                        return Err(self.inner.disconnected(&e));
                    }
                    reconnected = true;
                }
            }
        }
    }

    /// Binds a loopback listener that forwards each accepted connection to
    /// `address:port` as seen from the host (direct-tcpip). One listener per
    /// `(address, port)`, kept for the life of this `SshHost`.
    pub async fn forward_local(
        &self,
        address: &str,
        port: u16,
    ) -> Result<SocketAddr, TransportError> {
        let mut forwards = self.forwards.lock().await;
        if let Some(addr) = forwards.get(&(address.to_owned(), port)) {
            return Ok(*addr);
        }
        // Connect now so a bad host fails here, not in the client dialling the listener.
        self.inner.connection().await?;
        let listener =
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|e| TransportError::Other {
                    target: self.inner.target(),
                    reason: format!("cannot bind a loopback listener for {address}:{port}: {e}"),
                })?;
        let local = listener.local_addr().map_err(|e| TransportError::Other {
            target: self.inner.target(),
            reason: format!("loopback listener for {address}:{port} has no address: {e}"),
        })?;
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::downgrade(&self.inner),
            address.to_owned(),
            port,
        ));
        self.forward_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task.abort_handle());
        debug!(target = %self.inner.target(), %local, "forwarding to {address}:{port}");
        forwards.insert((address.to_owned(), port), local);
        Ok(local)
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        for task in self
            .forward_tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Weak<Inner>, address: String, port: u16) {
    loop {
        let (mut tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!("forward to {address}:{port}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let address = address.clone();
        tokio::spawn(async move {
            match inner.open_direct_tcpip(&address, port).await {
                Ok(mut stream) => {
                    if let Err(e) = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await {
                        debug!(target = %inner.target(), %peer, "tunnel to {address}:{port} ended: {e}");
                    }
                }
                Err(e) => warn!("tunnel for {peer} to {address}:{port}: {e}"),
            }
        });
    }
}

impl Inner {
    fn target(&self) -> String {
        self.spec.display()
    }

    /// The live connection, connecting if there is none.
    async fn connection(&self) -> Result<Arc<Conn>, TransportError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut slot = self.slot.lock().await;
        if let Some(conn) = &slot.conn {
            if conn.alive() {
                return Ok(conn.clone());
            }
            debug!(target = %self.target(), "connection lost; reconnecting");
            slot.conn = None;
        }
        // Someone else tried while this caller waited for the lock, and failed: share that.
        if self.attempts.load(Ordering::Acquire) != seen
            && let Some(e) = &slot.last_failure
        {
            return Err(e.clone());
        }
        let outcome = connect(&self.spec, self.jump.as_ref()).await;
        // Counted when the attempt ends: everyone who queued behind it shares its outcome.
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(conn) => {
                let conn = Arc::new(conn);
                slot.conn = Some(conn.clone());
                slot.last_failure = None;
                Ok(conn)
            }
            Err(e) => {
                warn!(target = %self.target(), "ssh connect failed: {e}");
                slot.last_failure = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<TunnelStream, TransportError> {
        let mut reconnected = false;
        loop {
            let conn = self.connection().await?;
            match conn
                .handle
                .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
                .await
            {
                Ok(ch) => return Ok(ch.into_stream()),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    return Err(TransportError::Other {
                        target: self.target(),
                        reason: format!(
                            "the host refused a tunnel to {host}:{port} ({reason:?}); is \
                             something listening there, and does sshd allow TCP forwarding?"
                        ),
                    });
                }
                Err(e) => {
                    conn.mark_dead();
                    if reconnected {
                        return Err(self.disconnected(&e));
                    }
                    reconnected = true;
                }
            }
        }
    }

    /// Opens a session channel; a connection found dead before anything ran is replaced once.
    ///
    /// sshd frees a session slot only after the closed channel is garbage-collected, a moment
    /// after it answered our close; an open that arrives in between is refused although we
    /// stay within `MaxSessions`. Such refusals are retried with a short backoff.
    async fn open_session(
        &self,
    ) -> Result<(Arc<Conn>, russh::Channel<client::Msg>), TransportError> {
        let mut reconnected = false;
        let mut backoff = Duration::from_millis(2);
        let mut refusals = 0;
        loop {
            let conn = self.connection().await?;
            match conn.handle.channel_open_session().await {
                Ok(ch) => return Ok((conn, ch)),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    refusals += 1;
                    if refusals > SESSION_OPEN_RETRIES {
                        return Err(TransportError::Other {
                            target: self.target(),
                            reason: format!(
                                "the host refused a session channel {refusals} times \
                                 ({reason:?}); is max_sessions ({}) above sshd's MaxSessions, \
                                 or does another client share this connection?",
                                self.spec.max_sessions
                            ),
                        });
                    }
                    debug!(target = %self.target(), "session channel refused ({reason:?}); retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) => {
                    conn.mark_dead();
                    if reconnected {
                        // Nothing was sent on it: the channel never opened.
                        return Err(TransportError::Connect {
                            target: self.target(),
                            reason: format!(
                                "the connection was lost before a session channel opened: {e}"
                            ),
                        });
                    }
                    reconnected = true;
                }
            }
        }
    }

    async fn open_subsystem(&self, name: &str) -> Result<Option<SubsystemChannel>, TransportError> {
        let permit =
            self.sessions
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| TransportError::Cancelled {
                    target: self.target(),
                    started: false,
                })?;
        let (conn, mut channel) = self.open_session().await?;
        if let Err(e) = channel.request_subsystem(true, name).await {
            conn.mark_dead();
            return Err(self.disconnected(&e));
        }
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    let _ = channel.close().await;
                    return Ok(None);
                }
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                    // sshd closes the channel when starting the subsystem fails.
                    if conn.handle.is_closed() {
                        conn.mark_dead();
                        return Err(self.disconnected(&"connection closed"));
                    }
                    return Ok(None);
                }
                Some(_) => {}
            }
        }
        debug!(target = %self.target(), "subsystem {name} started");
        Ok(Some(SubsystemChannel {
            channel,
            slot: SessionSlot {
                _permit: permit,
                conn,
            },
        }))
    }

    fn disconnected(&self, e: &dyn std::fmt::Display) -> TransportError {
        TransportError::Disconnected {
            target: self.target(),
            reason: e.to_string(),
        }
    }

    async fn exec(
        &self,
        command: &str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, TransportError> {
        let not_started = || TransportError::Cancelled {
            target: self.target(),
            started: false,
        };
        let _permit = tokio::select! {
            p = self.sessions.clone().acquire_owned() => p.map_err(|_| not_started())?,
            () = cancel.cancelled() => return Err(not_started()),
        };
        let (conn, channel) = tokio::select! {
            r = self.open_session() => r?,
            () = cancel.cancelled() => return Err(not_started()),
        };
        let (mut reader, writer) = channel.split();
        // Closes the channel if this future is dropped before the command ends.
        let mut guard = ChannelGuard(Some(writer));
        if let Some(w) = &guard.0
            && let Err(e) = w.exec(true, wrap_command(command)).await
        {
            // The request never left: the session is gone, nothing ran.
            conn.mark_dead();
            return Err(TransportError::Connect {
                target: self.target(),
                reason: format!("the connection was lost before the command was sent: {e}"),
            });
        }
        let mut status = None;
        // Armed once the exit status is in: output may still follow, but a pipe held open by
        // a process that left the command's group must not hold us forever.
        let mut after_exit: Option<Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            let msg = tokio::select! {
                m = reader.wait() => m,
                () = cancel.cancelled(), if status.is_none() => {
                    self.stop(&mut guard, &mut reader, sink.as_ref()).await;
                    return Err(TransportError::Cancelled { target: self.target(), started: true });
                }
                () = fire(&mut after_exit) => {
                    warn!(
                        target = %self.target(),
                        "the command exited but its output stayed open for {}s (a background \
                         process that left its process group?); closing the channel",
                        EXIT_DRAIN.as_secs()
                    );
                    guard.close().await;
                    break;
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    send(sink.as_ref(), OutputChunk::Stdout(data.to_vec())).await;
                }
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    send(sink.as_ref(), OutputChunk::Stderr(data.to_vec())).await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    status = Some(ExitStatus::Code(
                        i32::try_from(exit_status).unwrap_or(i32::MAX),
                    ));
                    after_exit = Some(Box::pin(tokio::time::sleep(EXIT_DRAIN)));
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(ExitStatus::Signal(signal_text(&signal_name)));
                    after_exit = Some(Box::pin(tokio::time::sleep(EXIT_DRAIN)));
                }
                Some(ChannelMsg::Failure) if status.is_none() => {
                    guard.close().await;
                    return Err(TransportError::Other {
                        target: self.target(),
                        reason: "sshd refused to run the command (exec request failed)".to_owned(),
                    });
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        guard.0 = None;
        if let Some(s) = status {
            return Ok(s);
        }
        // No exit status: the connection went away (or sshd ended the session). Either way
        // this connection is suspect; the next user gets a fresh one.
        conn.mark_dead();
        Err(TransportError::Disconnected {
            target: self.target(),
            reason: if conn.handle.is_closed() {
                "the connection closed while the command was running; its outcome is unknown"
            } else {
                "the channel closed before the command reported an exit status; its outcome \
                 is unknown"
            }
            .to_owned(),
        })
    }

    /// Stops a running command: EOF on its stdin (the wrapper's watcher then sends SIGTERM to
    /// the command's process group, SIGKILL a second later; see [`wrap_command`]) and the same
    /// signals as `signal` requests (honoured by sshd for sessions under privilege
    /// separation), then waits for the channel to close: every process holding its output is
    /// gone. Output that arrives meanwhile still goes to `sink`.
    async fn stop(
        &self,
        guard: &mut ChannelGuard,
        reader: &mut ChannelReadHalf,
        sink: Option<&OutputSink>,
    ) {
        let Some(w) = &guard.0 else { return };
        let _ = w.eof().await;
        let _ = w.signal(Sig::TERM).await;
        let started = tokio::time::Instant::now();
        let mut killed = false;
        let closed = tokio::time::timeout(STOP_WAIT, async {
            loop {
                let msg = if killed {
                    reader.wait().await
                } else {
                    let kill_at = started + super::local::GRACE;
                    match tokio::time::timeout_at(kill_at, reader.wait()).await {
                        Ok(m) => m,
                        Err(_) => {
                            killed = true;
                            if let Some(w) = &guard.0 {
                                let _ = w.signal(Sig::KILL).await;
                            }
                            continue;
                        }
                    }
                };
                match msg {
                    Some(ChannelMsg::Data { data }) => {
                        send(sink, OutputChunk::Stdout(data.to_vec())).await;
                    }
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        send(sink, OutputChunk::Stderr(data.to_vec())).await;
                    }
                    Some(ChannelMsg::Close) | None => return,
                    Some(_) => {}
                }
            }
        })
        .await;
        if closed.is_err() {
            warn!(
                target = %self.target(),
                "the stopped command's output stayed open for {}s (a process that left its \
                 process group?); closing the channel",
                STOP_WAIT.as_secs()
            );
        }
        guard.close().await;
    }
}

/// How long a stopped command has to let go of its channel: past the watcher's SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// How long output may keep the channel open after the command's exit status arrived.
const EXIT_DRAIN: Duration = Duration::from_secs(2);

/// The command as sent to the host's shell.
///
/// The command runs in a background subshell (stdin `/dev/null`) that the session's shell
/// waits for; a watcher in the same process group reads the channel's stdin, which opsdeck
/// never writes. When opsdeck sends EOF (timeout, cancel), closes the channel or loses the
/// connection, sshd closes that stdin and the watcher ends the whole group: SIGTERM, and
/// SIGKILL a second later. This is what stops a remote command on sshd that refuses `signal`
/// requests (OpenSSH does for root logins, which run without privilege separation:
/// "session signalling requires privilege separation"). When the command ends by itself, the
/// shell sends SIGTERM to whatever it left running in the group (`sleep 300 &`), so it leaves
/// nothing behind and its channel closes when it ends. sshd makes each session its own process
/// group, so none of this reaches anything else.
///
/// Exit status: the command's; a command killed by signal N shows as exit code 128 + N,
/// except that a signal to the session's shell itself (`kill -TERM $$`) is still reported as
/// that signal.
fn wrap_command(command: &str) -> String {
    format!(
        "exec 3<&0\n\
         (\n:\n{command}\n) </dev/null 3<&- &\n\
         __opsdeck_cmd=$!\n\
         {{ while read -r __opsdeck_in; do :; done; trap '' TERM; kill -TERM 0; sleep 1; \
         kill -KILL 0; }} <&3 >/dev/null 2>&1 3<&- &\n\
         exec 3<&-\n\
         wait \"$__opsdeck_cmd\"\n\
         __opsdeck_rc=$?\n\
         trap '' TERM\n\
         kill -TERM 0 2>/dev/null\n\
         exit $__opsdeck_rc\n"
    )
}

/// Waits for an armed timer; never fires when there is none.
async fn fire(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn send(sink: Option<&OutputSink>, chunk: OutputChunk) {
    if let Some(sink) = sink {
        // A receiver that went away no longer wants output; the command still runs to its end.
        let _ = sink.send(chunk).await;
    }
}

fn signal_text(sig: &Sig) -> String {
    match sig {
        Sig::Custom(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

struct ChannelGuard(Option<ChannelWriteHalf<client::Msg>>);

impl ChannelGuard {
    async fn close(&mut self) {
        if let Some(ch) = self.0.take() {
            let _ = ch.close().await;
        }
    }
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if let Some(ch) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = ch.close().await;
            });
        }
    }
}

impl Transport for SshHost {
    fn label(&self) -> String {
        format!("ssh {}", self.inner.spec.display())
    }

    fn exec<'a>(
        &'a self,
        command: &'a str,
        sink: Option<OutputSink>,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ExitStatus, TransportError>> {
        Box::pin(self.inner.exec(command, sink, cancel))
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting

fn client_config(spec: &SshSpec, known: &KnownHosts) -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: (!spec.keepalive.is_zero()).then_some(spec.keepalive),
        keepalive_max: 3,
        // Idle connections are kept: probes come back to them. Keepalives find dead peers.
        inactivity_timeout: None,
        nodelay: true,
        preferred: preferred_algorithms(spec, known),
        ..client::Config::default()
    })
}

/// Host key algorithms as OpenSSH orders them: the types recorded for the host first (a host
/// with several keys then proves itself with the one that is recorded), and host
/// certificates asked for only when a CA is trusted for the host.
fn preferred_algorithms(spec: &SshSpec, known: &KnownHosts) -> Preferred {
    let mut preferred = Preferred::default();
    let (key_host, key_port) = key_lookup(spec);
    let recorded = known.recorded_algorithms(&key_host, key_port);
    let same = |a: &Algorithm, b: &Algorithm| {
        a == b || (matches!(a, Algorithm::Rsa { .. }) && matches!(b, Algorithm::Rsa { .. }))
    };
    let mut keys: Vec<Algorithm> = Vec::new();
    for r in &recorded {
        keys.extend(
            preferred
                .key
                .iter()
                .filter(|a| same(a, r) && !keys.contains(a))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    keys.extend(
        preferred
            .key
            .iter()
            .filter(|a| !keys.contains(a))
            .cloned()
            .collect::<Vec<_>>(),
    );
    if known.has_authority_for(&key_host, key_port) {
        preferred.host_key_certificates = Cow::Owned(keys.clone());
    }
    preferred.key = Cow::Owned(keys);
    preferred
}

/// Connects, verifies the host key and authenticates, all within `connect_timeout`. A host
/// behind a jump host is reached through the jump host's shared connection (connected first if
/// it is not).
fn connect<'a>(
    spec: &'a SshSpec,
    jump: Option<&'a Arc<Inner>>,
) -> BoxFuture<'a, Result<Conn, TransportError>> {
    Box::pin(async move {
        let target = spec.display();
        match tokio::time::timeout(spec.connect_timeout, connect_inner(spec, jump)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::ConnectTimeout {
                target,
                after: spec.connect_timeout,
            }),
        }
    })
}

async fn connect_inner(spec: &SshSpec, jump: Option<&Arc<Inner>>) -> Result<Conn, TransportError> {
    let target = spec.display();
    let refusal = Arc::new(std::sync::Mutex::new(None));
    let files = TrustFiles::for_spec(spec);
    let known = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || files.load())
            .await
            .unwrap_or_default()
    };
    let config = client_config(spec, &known);
    let (key_host, key_port) = key_lookup(spec);
    let handler = Client {
        host: key_host,
        port: key_port,
        files,
        policy: spec.host_key_policy,
        refusal: refusal.clone(),
    };
    let connect_error = |reason: String| TransportError::Connect {
        target: target.clone(),
        reason,
    };
    let mut proxy = None;
    let (handshake, jump_conn) = if let Some(jump) = jump {
        let jump_spec = &jump.spec;
        let jump_conn = jump
            .connection()
            .await
            .map_err(|e| connect_error(format!("via jump host {}: {e}", jump_spec.display())))?;
        let channel = match jump_conn
            .handle
            .channel_open_direct_tcpip(spec.address.as_str(), u32::from(spec.port), "127.0.0.1", 0)
            .await
        {
            Ok(ch) => ch,
            Err(russh::Error::ChannelOpenFailure(reason)) => {
                return Err(connect_error(format!(
                    "jump host {} refused a tunnel to {}:{} ({reason:?}); is sshd listening                      there, and does the jump host's sshd allow TCP forwarding                      (AllowTcpForwarding)?",
                    jump_spec.display(),
                    spec.address,
                    spec.port
                )));
            }
            Err(e) => {
                jump_conn.mark_dead();
                return Err(connect_error(format!(
                    "the connection to jump host {} was lost: {e}",
                    jump_spec.display()
                )));
            }
        };
        debug!(target = %target, "tunnelled through {}", jump_spec.display());
        (
            client::connect_stream(config, channel.into_stream(), handler).await,
            Some(jump_conn),
        )
    } else if let Some(command) = &spec.proxy_command {
        let (child, stream) = ProxyChild::spawn(command)
            .map_err(|e| connect_error(format!("cannot run ProxyCommand `{command}`: {e}")))?;
        debug!(target = %target, "connecting through ProxyCommand `{command}`");
        let handshake = client::connect_stream(config, stream, handler).await;
        if handshake.is_err() {
            // Let the command say why it ended (its stderr is read in the background).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let said = child.stderr_text();
        let handshake = handshake.map_err(|e| match e {
            ClientError::Ssh(e) if !said.is_empty() => ClientError::Proxy(format!(
                "SSH handshake through ProxyCommand `{command}` failed: {e}; the command said:                  {said}"
            )),
            ClientError::Ssh(e) => ClientError::Proxy(format!(
                "SSH handshake through ProxyCommand `{command}` failed: {e} (the command                  printed nothing on stderr; run it by hand to check that it connects)"
            )),
            other => other,
        });
        proxy = Some(child);
        (handshake, None)
    } else {
        let tcp = TcpStream::connect((spec.address.as_str(), spec.port))
            .await
            .map_err(|e| {
                connect_error(format!(
                    "TCP connect to {}:{} failed: {e}; is sshd running there and the port right?",
                    spec.address, spec.port
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        (client::connect_stream(config, tcp, handler).await, None)
    };
    let mut handle = match handshake {
        Ok(h) => h,
        Err(e) => {
            let recorded = refusal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            return Err(match (e, recorded) {
                (ClientError::HostKey(m), _) | (_, Some(m)) => TransportError::HostKey(m),
                (ClientError::Proxy(m), None) => connect_error(m),
                (ClientError::Ssh(e), None) => connect_error(format!("SSH handshake failed: {e}")),
            });
        }
    };
    authenticate(spec, &mut handle).await?;
    debug!(target = %target, "ssh connected and authenticated");
    Ok(Conn {
        handle,
        dead: AtomicBool::new(false),
        _jump: jump_conn,
        _proxy: proxy,
    })
}

/// The name and port a host's key is looked up under: `HostKeyAlias` (without a port, as ssh
/// does) or the address.
fn key_lookup(spec: &SshSpec) -> (String, u16) {
    match &spec.host_key_alias {
        Some(alias) => (alias.clone(), 22),
        None => (spec.address.clone(), spec.port),
    }
}

/// A running `ProxyCommand`. Its stdin and stdout carry the SSH connection; its stderr is kept
/// (the last few KiB) to explain a failed handshake. Stopped with its process group when the
/// connection is dropped.
struct ProxyChild {
    child: tokio::process::Child,
    stderr: Arc<std::sync::Mutex<Vec<u8>>>,
}

/// Bytes of a `ProxyCommand`'s stderr kept.
const PROXY_STDERR_KEEP: usize = 4096;

impl ProxyChild {
    fn spawn(
        command: &str,
    ) -> std::io::Result<(
        ProxyChild,
        tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    )> {
        use std::process::Stdio;
        // As ssh runs it: `exec` through the shell, so the command itself is the child.
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let missing = || std::io::Error::other("the command's pipes were not set up");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let kept = stderr.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let mut buf = [0u8; 1024];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut kept = kept
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    kept.extend_from_slice(&buf[..n]);
                    let excess = kept.len().saturating_sub(PROXY_STDERR_KEEP);
                    kept.drain(..excess);
                }
            });
        }
        Ok((ProxyChild { child, stderr }, tokio::io::join(stdout, stdin)))
    }

    /// What the command wrote to stderr, on one line (secrets masked).
    fn stderr_text(&self) -> String {
        let kept = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let text = String::from_utf8_lossy(&kept);
        let line = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" / ");
        crate::secret::mask(&line).into_owned()
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        // The whole group: whatever the command started goes with it.
        if let Some(pid) = self.child.id() {
            let pgid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.start_kill();
    }
}

/// Authenticates as ssh does with public keys: each identity file (its certificates first:
/// those from `certificate_files` that certify it, then `KEY-cert.pub` next to it), then the
/// agent's identities (certificates it holds, and its keys with any configured certificate
/// for them). Under `identities_only`, agent identities count only when they belong to a
/// configured identity or certificate.
async fn authenticate(spec: &SshSpec, handle: &mut Handle<Client>) -> Result<(), TransportError> {
    let target = spec.display();
    let lost = |e: &dyn std::fmt::Display| TransportError::Connect {
        target: target.clone(),
        reason: format!("connection lost during authentication: {e}"),
    };
    let mut tried = Vec::new();
    let now = now_unix();
    let mut certificates: Vec<(PathBuf, Certificate)> = Vec::new();
    for path in &spec.certificate_files {
        match russh::keys::load_openssh_certificate(path) {
            Ok(c) => certificates.push((path.clone(), c)),
            Err(e) => tried.push(format!("certificate {} (cannot load: {e})", path.display())),
        }
    }
    // The public halves of what is configured, to pair agent keys with.
    let mut configured: Vec<KeyData> = certificates
        .iter()
        .map(|(_, c)| c.public_key().clone())
        .collect();
    for path in &spec.identity_files {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                // The agent may hold it (a key with a passphrase): its `.pub` names it.
                if let Ok(public) = russh::keys::load_public_key(with_suffix(path, ".pub")) {
                    configured.push(public.key_data().clone());
                }
                tried.push(format!("{} (cannot load: {e})", path.display()));
                continue;
            }
        };
        let public = key.public_key().key_data().clone();
        configured.push(public.clone());
        let mut certs: Vec<(PathBuf, Certificate)> = certificates
            .iter()
            .filter(|(_, c)| *c.public_key() == public)
            .cloned()
            .collect();
        let beside = with_suffix(path, "-cert.pub");
        if certs.iter().all(|(p, _)| *p != beside)
            && beside.is_file()
            && let Ok(c) = russh::keys::load_openssh_certificate(&beside)
            && *c.public_key() == public
        {
            certs.push((beside, c));
        }
        for (cert_path, cert) in certs {
            let problem = certificate_problem(&cert, &spec.user, now);
            let result = handle
                .authenticate_openssh_cert(&spec.user, key.clone(), cert)
                .await
                .map_err(|e| lost(&e))?;
            if result.success() {
                debug!(target = %target, "authenticated with certificate {}", cert_path.display());
                return Ok(());
            }
            tried.push(format!(
                "{} with certificate {} (rejected{problem})",
                path.display(),
                cert_path.display()
            ));
        }
        let hash = rsa_hash(handle, key.algorithm())
            .await
            .map_err(|e| lost(&e))?;
        let result = handle
            .authenticate_publickey(&spec.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .map_err(|e| lost(&e))?;
        if result.success() {
            debug!(target = %target, "authenticated with {}", path.display());
            return Ok(());
        }
        tried.push(format!("{} (rejected)", path.display()));
    }
    if spec.agent {
        let (agent, named) = match &spec.agent_socket {
            Some(sock) => (
                AgentClient::connect_uds(sock).await,
                format!("ssh-agent at {}", sock.display()),
            ),
            None => (AgentClient::connect_env().await, "ssh-agent".to_owned()),
        };
        match agent {
            Err(e) if spec.agent_socket.is_some() => {
                tried.push(format!("{named} (not reachable: {e})"));
            }
            Err(e) => tried.push(format!("{named} (not reachable via SSH_AUTH_SOCK: {e})")),
            Ok(mut agent) => match agent.request_identities().await {
                Err(e) => tried.push(format!("{named} (cannot list keys: {e})")),
                Ok(ids) if ids.is_empty() => tried.push(format!("{named} (holds no keys)")),
                Ok(ids) => {
                    let mut offered = 0;
                    for id in ids {
                        if spec.identities_only
                            && !configured.iter().any(|k| *k == *id.public_key().key_data())
                        {
                            continue;
                        }
                        offered += 1;
                        match id {
                            AgentIdentity::Certificate { certificate, .. } => {
                                if agent_certificate(
                                    handle,
                                    spec,
                                    certificate,
                                    &mut agent,
                                    &mut tried,
                                    now,
                                )
                                .await?
                                {
                                    return Ok(());
                                }
                            }
                            AgentIdentity::PublicKey { key, .. } => {
                                let paired: Vec<Certificate> = certificates
                                    .iter()
                                    .filter(|(_, c)| c.public_key() == key.key_data())
                                    .map(|(_, c)| c.clone())
                                    .collect();
                                for cert in paired {
                                    // The agent knows the key, not the certificate: it signs
                                    // with the key.
                                    let mut signer = PlainKeySigner {
                                        agent: &mut agent,
                                        key: key.clone(),
                                    };
                                    if agent_certificate(
                                        handle,
                                        spec,
                                        cert,
                                        &mut signer,
                                        &mut tried,
                                        now,
                                    )
                                    .await?
                                    {
                                        return Ok(());
                                    }
                                }
                                let hash = rsa_hash(handle, key.algorithm())
                                    .await
                                    .map_err(|e| lost(&e))?;
                                match handle
                                    .authenticate_publickey_with(&spec.user, key, hash, &mut agent)
                                    .await
                                {
                                    Ok(r) if r.success() => {
                                        debug!(target = %target, "authenticated with an ssh-agent key");
                                        return Ok(());
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        debug!(target = %target, "ssh-agent key not usable: {e}");
                                    }
                                }
                            }
                        }
                    }
                    if offered == 0 {
                        tried.push(format!(
                            "{named} (none of its keys belongs to identity_files or \
                             certificate_files, and identities_only is set)"
                        ));
                    } else {
                        tried.push(format!("{named} ({offered} identities, all rejected)"));
                    }
                }
            },
        }
    }
    let tried = if tried.is_empty() {
        "no identity_files are configured and agent = false".to_owned()
    } else {
        format!("tried {}", tried.join(", "))
    };
    Err(TransportError::Auth {
        target,
        reason: format!(
            "{tried}; add the public key to ~{}/.ssh/authorized_keys on the host (or sign it \
             with a CA the host trusts, TrustedUserCAKeys), or fix identity_files",
            spec.user
        ),
    })
}

/// Offers a certificate whose key the agent holds; `Ok(true)` when accepted.
async fn agent_certificate<S: russh::Signer>(
    handle: &mut Handle<Client>,
    spec: &SshSpec,
    cert: Certificate,
    agent: &mut S,
    tried: &mut Vec<String>,
    now: u64,
) -> Result<bool, TransportError>
where
    S::Error: std::fmt::Display,
{
    let target = spec.display();
    let problem = certificate_problem(&cert, &spec.user, now);
    let key_id = cert.key_id().to_owned();
    let hash = rsa_hash(handle, cert.algorithm())
        .await
        .map_err(|e| TransportError::Connect {
            target: target.clone(),
            reason: format!("connection lost during authentication: {e}"),
        })?;
    match handle
        .authenticate_certificate_with(&spec.user, cert, hash, agent)
        .await
    {
        Ok(r) if r.success() => {
            debug!(target = %target, "authenticated with ssh-agent certificate {key_id:?}");
            Ok(true)
        }
        Ok(_) => {
            tried.push(format!(
                "ssh-agent certificate {key_id:?} (rejected{problem})"
            ));
            Ok(false)
        }
        Err(e) => {
            tried.push(format!(
                "ssh-agent certificate {key_id:?} (not usable: {e})"
            ));
            Ok(false)
        }
    }
}

/// Signs for a certificate with the plain key an agent holds. Asked to sign with a
/// certificate it was never given, OpenSSH's agent refuses; the signature of the key is what
/// the server checks either way.
struct PlainKeySigner<'a, R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> {
    agent: &'a mut AgentClient<R>,
    key: PublicKey,
}

impl<R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> russh::Signer
    for PlainKeySigner<'_, R>
{
    type Error = russh::AgentAuthError;

    fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let identity = AgentIdentity::PublicKey {
            key: self.key.clone(),
            comment: String::new(),
        };
        async move {
            self.agent
                .sign_request(&identity, hash_alg, to_sign)
                .await
                .map_err(Into::into)
        }
    }
}

/// The RSA signature hash the server prefers, for RSA keys (`None` for other kinds).
async fn rsa_hash(
    handle: &Handle<Client>,
    algorithm: Algorithm,
) -> Result<Option<HashAlg>, russh::Error> {
    if algorithm.is_rsa() {
        Ok(handle.best_supported_rsa_hash().await?.flatten())
    } else {
        Ok(None)
    }
}

/// Why a server may refuse a user certificate, when that can be seen from here: `": it
/// expired ..."`, or empty.
fn certificate_problem(cert: &Certificate, user: &str, now: u64) -> String {
    if cert.cert_type() != russh::keys::ssh_key::certificate::CertType::User {
        return ": it is a host certificate, not a user certificate".to_owned();
    }
    if cert.valid_before() <= now {
        return format!(
            ": it expired {}",
            chrono::DateTime::from_timestamp(
                i64::try_from(cert.valid_before()).unwrap_or(i64::MAX),
                0
            )
            .map_or_else(
                || "long ago".to_owned(),
                |t| format!("at {}", t.format("%Y-%m-%d %H:%M UTC"))
            )
        );
    }
    if cert.valid_after() > now {
        return ": it is not valid yet".to_owned();
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == user) {
        return format!(
            ": its principals ({}) do not include {user:?}",
            principals.join(", ")
        );
    }
    String::new()
}

/// `path` with `suffix` appended to its file name (`id_ed25519` → `id_ed25519-cert.pub`).
fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------------
// Host keys

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    HostKey(String),
    /// The handshake over a `ProxyCommand` failed; the message says what the command said.
    #[error("{0}")]
    Proxy(String),
}

/// What the server proved it holds: a plain host key or a host certificate.
#[derive(Debug, Clone)]
enum Offered {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

impl Offered {
    fn plain(&self) -> PublicKey {
        match self {
            Offered::Key(k) => k.clone(),
            Offered::Certificate(c) => PublicKey::new(c.public_key().clone(), ""),
        }
    }

    /// `ssh-ed25519 key SHA256:...` or `ssh-ed25519 certificate "id" (key SHA256:...)`.
    fn describe(&self) -> String {
        match self {
            Offered::Key(k) => format!("{} key {}", k.algorithm(), k.fingerprint(HashAlg::Sha256)),
            Offered::Certificate(c) => format!(
                "{} host certificate {:?} (key {}, signed by CA {})",
                c.algorithm(),
                c.key_id(),
                c.public_key().fingerprint(HashAlg::Sha256),
                c.signature_key().fingerprint(HashAlg::Sha256),
            ),
        }
    }
}

/// The files a host's key is checked against: the inventory's (or ssh_config's) `known_hosts`,
/// which `accept-new` writes to, then the global files (see [`known_hosts::global_files`]).
#[derive(Debug, Clone)]
struct TrustFiles {
    user: PathBuf,
    global: Vec<PathBuf>,
}

impl TrustFiles {
    fn for_spec(spec: &SshSpec) -> Self {
        TrustFiles {
            user: spec.known_hosts.clone(),
            global: spec
                .also_known_hosts
                .iter()
                .cloned()
                .chain(known_hosts::global_files())
                .collect(),
        }
    }

    fn all(&self) -> Vec<PathBuf> {
        std::iter::once(self.user.clone())
            .chain(self.global.iter().cloned())
            .collect()
    }

    fn load(&self) -> KnownHosts {
        KnownHosts::load(&self.all())
    }

    /// "known_hosts file A has no entry", or "no known_hosts file (A, B, C) has an entry".
    fn none_has_an_entry(&self) -> String {
        let all = self.all();
        if all.len() == 1 {
            return format!("known_hosts file {} has no entry", all[0].display());
        }
        let names: Vec<String> = all.iter().map(|p| p.display().to_string()).collect();
        format!("no known_hosts file ({}) has an entry", names.join(", "))
    }
}

struct Client {
    host: String,
    port: u16,
    files: TrustFiles,
    policy: HostKeyPolicy,
    /// The refusal, in case russh reports it as a plain handshake error.
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let offered = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Offered::Key(key.clone()),
            PublicKeyOrCertificate::Certificate(cert) => {
                Offered::Certificate(Box::new(cert.clone()))
            }
        };
        let (host, port, files, policy) = (
            self.host.clone(),
            self.port,
            self.files.clone(),
            self.policy,
        );
        let verdict = tokio::task::spawn_blocking(move || {
            verify_host_key(&host, port, &offered, &files, policy)
        })
        .await
        .unwrap_or_else(|e| Err(format!("host key check did not finish: {e}")));
        match verdict {
            Ok(()) => Ok(true),
            Err(message) => {
                warn!("refusing {}:{}: host key not trusted", self.host, self.port);
                *self
                    .refusal
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.clone());
                Err(ClientError::HostKey(message))
            }
        }
    }
}

/// Serialises `accept-new` writers inside this process (the `flock` covers other processes).
static KNOWN_HOSTS_WRITE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn judge(kh: &KnownHosts, host: &str, port: u16, offered: &Offered) -> Verdict {
    match offered {
        Offered::Key(k) => kh.check_key(host, port, k),
        Offered::Certificate(c) => kh.check_certificate(host, port, c, now_unix()),
    }
}

/// `Ok` if what the host offered is trusted for `host:port` (under `accept-new` recording its
/// key first if nothing at all is recorded for the host); otherwise the message to show.
fn verify_host_key(
    host: &str,
    port: u16,
    offered: &Offered,
    files: &TrustFiles,
    policy: HostKeyPolicy,
) -> Result<(), String> {
    match judge(&files.load(), host, port, offered) {
        Verdict::Unknown => {}
        other => return verdict_result(host, port, offered, other),
    }
    if policy == HostKeyPolicy::Strict {
        return Err(unknown_message(host, port, offered, files));
    }
    let _guard = KNOWN_HOSTS_WRITE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = &files.user;
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot record the host key of {host}:{port}: {what} known_hosts file {}: {e}",
            path.display()
        )
    };
    let file = known_hosts::open_for_append(path).map_err(|e| cannot("opening", &e))?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| cannot("locking", &errno))?;
    // Another connection (or process) may have recorded something while this one waited.
    match judge(&files.load(), host, port, offered) {
        Verdict::Unknown => {}
        other => return verdict_result(host, port, offered, other),
    }
    let key = offered.plain();
    let line = known_hosts::line_for(host, port, &key).map_err(|e| cannot("writing", &e))?;
    known_hosts::append_line(&mut file, &line).map_err(|e| cannot("writing", &e))?;
    warn!(
        "recorded new host key of {host}:{port} ({} {}) in {}",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256),
        path.display()
    );
    Ok(())
}

fn verdict_result(
    host: &str,
    port: u16,
    offered: &Offered,
    verdict: Verdict,
) -> Result<(), String> {
    let pattern = known_hosts::lookup_name(host, port);
    match verdict {
        Verdict::Trusted(at) => {
            debug!("host key of {host}:{port} matches {at}");
            Ok(())
        }
        Verdict::TrustedCertificate { ca, key_id } => {
            debug!("host certificate {key_id:?} of {host}:{port} is signed by the CA of {ca}");
            Ok(())
        }
        Verdict::Revoked(at) => Err(format!(
            "host key of {host}:{port} is REVOKED: the host offered {}, and {at} marks it \
             @revoked. Nothing was sent to the host. The host needs a new key (recorded in \
             known_hosts) before opsdeck will connect to it.",
            offered.describe()
        )),
        Verdict::BadCertificate { ca, reason } => Err(format!(
            "host certificate of {host}:{port} is refused: {ca} trusts its CA for this host, but \
             {reason}. The host offered {}. Nothing was sent to the host. Renew the host \
             certificate (`ssh-keygen -s CA_KEY -h -n {host} HOST_KEY.pub`) and set it as sshd's \
             HostCertificate.",
            offered.describe()
        )),
        Verdict::Changed(recorded) => {
            let first = &recorded[0];
            let more = match recorded.len() {
                1 => String::new(),
                n => format!(" (and {} more entries for it)", n - 1),
            };
            let (what, todo) = match first.marker {
                Marker::CertAuthority => (
                    format!(
                        "trusts only host certificates signed by the CA key {} for it",
                        first.key.fingerprint(HashAlg::Sha256)
                    ),
                    "Check that the host presents a certificate from that CA (sshd's \
                     HostCertificate) before trusting anything else for it."
                        .to_owned(),
                ),
                _ => (
                    format!(
                        "records {} key {}",
                        first.key.algorithm(),
                        first.key.fingerprint(HashAlg::Sha256)
                    ),
                    format!(
                        "Verify the new key out of band, then remove line {} (e.g. \
                         `ssh-keygen -R '{pattern}' -f {}`) and connect again.",
                        first.at.line,
                        first.at.file.display(),
                    ),
                ),
            };
            Err(format!(
                "host key of {host}:{port} has CHANGED: the host offered {}, but {} {what}{more}. \
                 Someone may be intercepting the connection, or the host was reinstalled. \
                 Nothing was sent to the host. {todo}",
                offered.describe(),
                first.at,
            ))
        }
        Verdict::Unknown => Err(format!("host key of {host}:{port} is unknown")),
    }
}

fn unknown_message(host: &str, port: u16, offered: &Offered, files: &TrustFiles) -> String {
    format!(
        "host key of {host}:{port} is unknown: {} for {} (host_key_policy = \"strict\"). \
         The host offered {}. Verify that fingerprint out of band, then add the key (e.g. \
         `ssh-keyscan -p {port} {host} >> {}`) or set host_key_policy = \"accept-new\" to \
         record it on first connect.",
        files.none_has_an_entry(),
        known_hosts::lookup_name(host, port),
        offered.describe(),
        files.user.display(),
    )
}
