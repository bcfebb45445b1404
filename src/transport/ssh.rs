//! SSH via russh: one authenticated connection per host, shared by many channels.
//!
//! The connection is made on first use. Concurrent first users wait for one connect attempt
//! (and share its failure); a dropped connection is noticed by the next user, which
//! reconnects. Commands run on session channels bounded by the host's `MaxSessions`; tunnels
//! (`forward_local`, jump hosts) use direct-tcpip channels on the same connection.
//!
//! Trust is decided before authentication, against the inventory's `known_hosts` file: an
//! unknown host or a changed key is refused with the fingerprints and what to do; under
//! `accept-new` an unknown host's key is recorded once, under a process-wide lock and an
//! `flock` on the file.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::fcntl::{Flock, FlockArg};
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelStream, ChannelWriteHalf, Sig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{ExitStatus, OutputChunk, OutputSink, Transport, TransportError};
use crate::inventory::{HostKeyPolicy, SshSpec};

/// How often a refused session channel is retried (about 2 s in all).
const SESSION_OPEN_RETRIES: u32 = 25;

/// A stream tunnelled to `host:port` as seen from the SSH host.
pub type TunnelStream = ChannelStream<client::Msg>;

/// One host reached over SSH.
pub struct SshHost {
    inner: Arc<Inner>,
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

struct Inner {
    spec: SshSpec,
    /// The shared connection. Held across a connect attempt so concurrent first users wait
    /// for that one attempt instead of starting their own.
    slot: Mutex<Slot>,
    /// Counts finished connect attempts, so a caller that waited for someone else's failed
    /// attempt gets that failure instead of trying again at once.
    attempts: AtomicU64,
    sessions: Arc<Semaphore>,
    forwards: Mutex<HashMap<(String, u16), SocketAddr>>,
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
    pub fn new(spec: SshSpec) -> Self {
        let sessions = Arc::new(Semaphore::new(spec.max_sessions.max(1)));
        SshHost {
            inner: Arc::new(Inner {
                spec,
                slot: Mutex::new(Slot::default()),
                attempts: AtomicU64::new(0),
                sessions,
                forwards: Mutex::new(HashMap::new()),
            }),
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

    /// Binds a loopback listener that forwards each accepted connection to
    /// `address:port` as seen from the host (direct-tcpip). One listener per
    /// `(address, port)`, kept for the life of this `SshHost`.
    pub async fn forward_local(
        &self,
        address: &str,
        port: u16,
    ) -> Result<SocketAddr, TransportError> {
        let mut forwards = self.inner.forwards.lock().await;
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
            return Err(duplicate(e));
        }
        let outcome = connect(&self.spec).await;
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
                slot.last_failure = Some(duplicate(&e));
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
                        return Err(self.disconnected(&e));
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
        let cancelled = || TransportError::Cancelled {
            target: self.target(),
        };
        let _permit = tokio::select! {
            p = self.sessions.clone().acquire_owned() => p.map_err(|_| cancelled())?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let (conn, channel) = tokio::select! {
            r = self.open_session() => r?,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        let (mut reader, writer) = channel.split();
        // Closes the channel if this future is dropped or cancelled before the command ends.
        let mut guard = ChannelGuard(Some(writer));
        if let Some(w) = &guard.0
            && let Err(e) = w.exec(true, command).await
        {
            conn.mark_dead();
            return Err(self.disconnected(&e));
        }
        let mut status = None;
        loop {
            let msg = tokio::select! {
                m = reader.wait() => m,
                () = cancel.cancelled() => {
                    guard.close().await;
                    return Err(cancelled());
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
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    status = Some(ExitStatus::Signal(signal_text(&signal_name)));
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

/// `TransportError` is not `Clone` (it need not be elsewhere); waiters on a shared connect
/// attempt each get their own copy of its failure.
fn duplicate(e: &TransportError) -> TransportError {
    use TransportError as E;
    match e {
        E::Connect { target, reason } => E::Connect {
            target: target.clone(),
            reason: reason.clone(),
        },
        E::ConnectTimeout { target, after } => E::ConnectTimeout {
            target: target.clone(),
            after: *after,
        },
        E::HostKey(m) => E::HostKey(m.clone()),
        E::Auth { target, reason } => E::Auth {
            target: target.clone(),
            reason: reason.clone(),
        },
        E::Timeout { target, after } => E::Timeout {
            target: target.clone(),
            after: *after,
        },
        E::Cancelled { target } => E::Cancelled {
            target: target.clone(),
        },
        E::Disconnected { target, reason } => E::Disconnected {
            target: target.clone(),
            reason: reason.clone(),
        },
        E::Docker { target, reason } => E::Docker {
            target: target.clone(),
            reason: reason.clone(),
        },
        E::Other { target, reason } => E::Other {
            target: target.clone(),
            reason: reason.clone(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Connecting

fn client_config(spec: &SshSpec) -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: (!spec.keepalive.is_zero()).then_some(spec.keepalive),
        keepalive_max: 3,
        // Idle connections are kept: probes come back to them. Keepalives find dead peers.
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    })
}

/// Connects, verifies the host key and authenticates, all within `connect_timeout`.
fn connect(spec: &SshSpec) -> BoxFuture<'_, Result<Conn, TransportError>> {
    Box::pin(async move {
        let target = spec.display();
        match tokio::time::timeout(spec.connect_timeout, connect_inner(spec)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::ConnectTimeout {
                target,
                after: spec.connect_timeout,
            }),
        }
    })
}

async fn connect_inner(spec: &SshSpec) -> Result<Conn, TransportError> {
    let target = spec.display();
    let refusal = Arc::new(std::sync::Mutex::new(None));
    let handler = Client {
        host: spec.address.clone(),
        port: spec.port,
        known_hosts: spec.known_hosts.clone(),
        policy: spec.host_key_policy,
        refusal: refusal.clone(),
    };
    let config = client_config(spec);
    let (handshake, jump) = match &spec.jump {
        None => {
            let tcp = TcpStream::connect((spec.address.as_str(), spec.port))
                .await
                .map_err(|e| TransportError::Connect {
                    target: target.clone(),
                    reason: format!(
                        "TCP connect to {}:{} failed: {e}; is sshd running there and the port \
                         right?",
                        spec.address, spec.port
                    ),
                })?;
            let _ = tcp.set_nodelay(true);
            (client::connect_stream(config, tcp, handler).await, None)
        }
        Some(jump_spec) => {
            let jump = Arc::new(
                connect(jump_spec)
                    .await
                    .map_err(|e| TransportError::Connect {
                        target: target.clone(),
                        reason: format!("via jump host {}: {e}", jump_spec.display()),
                    })?,
            );
            let channel = jump
                .handle
                .channel_open_direct_tcpip(
                    spec.address.as_str(),
                    u32::from(spec.port),
                    "127.0.0.1",
                    0,
                )
                .await
                .map_err(|e| TransportError::Connect {
                    target: target.clone(),
                    reason: format!(
                        "jump host {} could not reach {}:{}: {e}",
                        jump_spec.display(),
                        spec.address,
                        spec.port
                    ),
                })?;
            (
                client::connect_stream(config, channel.into_stream(), handler).await,
                Some(jump),
            )
        }
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
                (ClientError::Ssh(e), None) => TransportError::Connect {
                    target,
                    reason: format!("SSH handshake failed: {e}"),
                },
            });
        }
    };
    authenticate(spec, &mut handle).await?;
    debug!(target = %target, "ssh connected and authenticated");
    Ok(Conn {
        handle,
        dead: AtomicBool::new(false),
        _jump: jump,
    })
}

async fn authenticate(spec: &SshSpec, handle: &mut Handle<Client>) -> Result<(), TransportError> {
    let target = spec.display();
    let lost = |e: &dyn std::fmt::Display| TransportError::Connect {
        target: target.clone(),
        reason: format!("connection lost during authentication: {e}"),
    };
    let mut tried = Vec::new();
    for path in &spec.identity_files {
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(e) => {
                tried.push(format!("{} (cannot load: {e})", path.display()));
                continue;
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| lost(&e))?
                .flatten()
        } else {
            None
        };
        let result = handle
            .authenticate_publickey(&spec.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| lost(&e))?;
        if result.success() {
            debug!(target = %target, "authenticated with {}", path.display());
            return Ok(());
        }
        tried.push(format!("{} (rejected)", path.display()));
    }
    if spec.agent {
        match russh::keys::agent::client::AgentClient::connect_env().await {
            Err(e) => tried.push(format!("ssh-agent (not reachable via SSH_AUTH_SOCK: {e})")),
            Ok(mut agent) => match agent.request_identities().await {
                Err(e) => tried.push(format!("ssh-agent (cannot list keys: {e})")),
                Ok(ids) if ids.is_empty() => tried.push("ssh-agent (holds no keys)".to_owned()),
                Ok(ids) => {
                    let count = ids.len();
                    for id in ids {
                        let key = id.public_key().into_owned();
                        let hash = if key.algorithm().is_rsa() {
                            handle
                                .best_supported_rsa_hash()
                                .await
                                .map_err(|e| lost(&e))?
                                .flatten()
                        } else {
                            None
                        };
                        match handle
                            .authenticate_publickey_with(&spec.user, key, hash, &mut agent)
                            .await
                        {
                            Ok(r) if r.success() => {
                                debug!(target = %target, "authenticated with an ssh-agent key");
                                return Ok(());
                            }
                            Ok(_) => {}
                            Err(e) => debug!(target = %target, "ssh-agent key not usable: {e}"),
                        }
                    }
                    tried.push(format!("ssh-agent ({count} keys, all rejected)"));
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
            "{tried}; add the public key to ~{}/.ssh/authorized_keys on the host, or fix \
             identity_files",
            spec.user
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Host keys

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    HostKey(String),
}

struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
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
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Without CA support, a certificate is trusted exactly like its plain key.
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let (host, port, path, policy) = (
            self.host.clone(),
            self.port,
            self.known_hosts.clone(),
            self.policy,
        );
        let verdict =
            tokio::task::spawn_blocking(move || verify_host_key(&host, port, &key, &path, policy))
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

/// `Ok` if `key` is trusted for `host:port` (recording it first under `accept-new` if the host
/// is unknown); otherwise the message to show.
fn verify_host_key(
    host: &str,
    port: u16,
    key: &PublicKey,
    path: &Path,
    policy: HostKeyPolicy,
) -> Result<(), String> {
    match lookup(host, port, key, path)? {
        Known::Trusted => return Ok(()),
        Known::Unknown => {}
    }
    if policy == HostKeyPolicy::Strict {
        return Err(format!(
            "host key of {host}:{port} is unknown: known_hosts file {} has no entry for {} \
             (host_key_policy = \"strict\"). The host offered {} key {}. Verify that \
             fingerprint out of band, then add the key (e.g. `ssh-keyscan -p {port} {host} >> \
             {}`) or set host_key_policy = \"accept-new\" to record it on first connect.",
            path.display(),
            host_pattern(host, port),
            key.algorithm(),
            key.fingerprint(HashAlg::Sha256),
            path.display(),
        ));
    }
    let _guard = KNOWN_HOSTS_WRITE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let cannot = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot record the host key of {host}:{port}: {what} known_hosts file {}: {e}",
            path.display()
        )
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| cannot("creating the directory of", &e))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| cannot("opening", &e))?;
    let mut file = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| cannot("locking", &errno))?;
    // Another connection (or process) may have recorded it while this one waited.
    match lookup(host, port, key, path)? {
        Known::Trusted => return Ok(()),
        Known::Unknown => {}
    }
    let line = format!(
        "{} {}",
        host_pattern(host, port),
        key.to_openssh()
            .map_err(|e| cannot("encoding the key for", &e))?
    );
    append_line(&mut file, &line).map_err(|e| cannot("writing", &e))?;
    warn!(
        "recorded new host key of {host}:{port} ({}) in {}",
        key.fingerprint(HashAlg::Sha256),
        path.display()
    );
    Ok(())
}

enum Known {
    Trusted,
    Unknown,
}

fn lookup(host: &str, port: u16, key: &PublicKey, path: &Path) -> Result<Known, String> {
    match russh::keys::check_known_hosts_path(host, port, key, path) {
        Ok(true) => Ok(Known::Trusted),
        Ok(false) => Ok(Known::Unknown),
        Err(russh::keys::Error::KeyChanged { line }) => {
            Err(changed_message(host, port, key, path, line))
        }
        Err(e) => Err(format!(
            "cannot check the host key of {host}:{port} against known_hosts file {}: {e}; fix \
             or remove the unreadable line",
            path.display()
        )),
    }
}

fn changed_message(
    host: &str,
    port: u16,
    key: &PublicKey,
    path: &Path,
    russh_line: usize,
) -> String {
    let recorded = russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .ok()
        .and_then(|keys| keys.into_iter().find(|(l, _)| *l == russh_line))
        .map_or_else(
            || "a different key".to_owned(),
            |(_, k)| format!("{} key {}", k.algorithm(), k.fingerprint(HashAlg::Sha256)),
        );
    let line = file_line(path, russh_line);
    format!(
        "host key of {host}:{port} has CHANGED: the host offered {} key {}, but known_hosts \
         file {} line {line} records {recorded}. Someone may be intercepting the connection, \
         or the host was reinstalled. Nothing was sent to the host. Verify the new key out of \
         band, then remove line {line} with `ssh-keygen -R '{}' -f {}` and connect again.",
        key.algorithm(),
        key.fingerprint(HashAlg::Sha256),
        path.display(),
        host_pattern(host, port),
        path.display(),
    )
}

/// russh numbers `known_hosts` lines without counting `#` comment lines; this is the line
/// number an editor shows.
fn file_line(path: &Path, russh_line: usize) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return russh_line;
    };
    let mut counted = 0;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with('#') {
            continue;
        }
        counted += 1;
        if counted == russh_line {
            return i + 1;
        }
    }
    russh_line
}

/// How `known_hosts` names a host: `127.0.0.2` for port 22, `[127.0.0.2]:2222` otherwise.
fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

fn append_line(file: &mut File, line: &str) -> std::io::Result<()> {
    let mut needs_newline = false;
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        needs_newline = last[0] != b'\n';
    }
    let mut text = String::new();
    if needs_newline {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    // Opened in append mode: one write lands at the end.
    file.write_all(text.as_bytes())?;
    file.sync_data()
}
