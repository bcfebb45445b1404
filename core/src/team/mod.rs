//! Team mode: one incident, many terminals, coordinated through etcd (`[team]` in the
//! inventory). Without it, opsdeck works alone exactly as before.
//!
//! - **Locks** ([`TeamLock`]): the run's lock keys (hosts, named locks, the run) are etcd keys
//!   created in one transaction under a lease the holder keeps alive; a crashed holder's lease
//!   expires and its keys vanish — no stale-lock guessing. The transaction's revision is the
//!   **fencing token** every changing command's journal intent carries, and before each
//!   changing command the holder proves its lease is alive: a holder cut off from etcd stops
//!   before its next change, and never acts after its lease could have expired.
//! - **Shared journal** ([`Publisher`]): every journal line (written to the local file first,
//!   the durable copy) is also put under `PREFIX/runs/RUN/`, bounded; the runs of every
//!   operator can be listed and followed live.
//! - **Active runs**: `PREFIX/active/RUN` (under the lock's lease): who runs what, right now.
//! - **Two-person approval** ([`approvals`]): a step that needs it waits until another account
//!   grants it (`opsdeck approve RUN STEP`); the grant expires.

pub mod approvals;
pub mod etcd;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::inventory::TeamConfig;
use crate::runbook::lock::{Holder, LockKey};
use etcd::{Client, Compare, EtcdError, Op};

/// Most journal lines one run publishes (the local journal keeps them all).
pub const MAX_PUBLISHED_LINES: u64 = 5000;

/// A connection to the team's etcd.
#[derive(Debug, Clone)]
pub struct Team {
    pub client: Client,
    pub cfg: TeamConfig,
}

impl Team {
    pub fn new(cfg: &TeamConfig) -> Team {
        let credentials = match (&cfg.user, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Team {
            client: Client::new(
                cfg.endpoints.clone(),
                Duration::from_secs(3),
                credentials,
                cfg.tls.clone(),
            ),
            cfg: cfg.clone(),
        }
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cfg.prefix.trim_end_matches('/'))
    }

    fn lock_key(&self, k: &LockKey) -> String {
        match k {
            LockKey::Host(h) => self.key(&format!("locks/host/{h}")),
            LockKey::Named(n) => self.key(&format!("locks/named/{n}")),
            LockKey::Run(r) => self.key(&format!("locks/run/{r}")),
        }
    }

    /// Takes every key or none, under a new lease; names the holder of the first key held.
    pub async fn acquire(
        &self,
        keys: &[LockKey],
        holder: &Holder,
        active: &ActiveRun,
    ) -> Result<TeamLock, TeamError> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let lease = self.client.grant(self.cfg.lease_ttl).await?;
        let body = serde_json::to_vec(holder).unwrap_or_default();
        let names: Vec<String> = keys.iter().map(|k| self.lock_key(k)).collect();
        let mut then: Vec<Op> = names
            .iter()
            .map(|k| Op::Put {
                key: k.clone(),
                value: body.clone(),
                lease: Some(lease),
            })
            .collect();
        then.push(Op::Put {
            key: self.key(&format!("active/{}", holder.run)),
            value: serde_json::to_vec(active).unwrap_or_default(),
            lease: Some(lease),
        });
        let compares: Vec<Compare> = names.iter().cloned().map(Compare::Absent).collect();
        let otherwise: Vec<Op> = names.iter().cloned().map(Op::Get).collect();
        let r = self.client.txn(&compares, &then, &otherwise).await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = self.client.revoke(lease).await;
                return Err(e.into());
            }
        };
        if !r.succeeded {
            let _ = self.client.revoke(lease).await;
            let held = r.kvs.first();
            let what = held
                .and_then(|kv| {
                    keys.iter()
                        .zip(&names)
                        .find(|(_, n)| **n == kv.key)
                        .map(|(k, _)| k.describe())
                })
                .unwrap_or_else(|| "a lock".to_owned());
            let holder = held.and_then(|kv| serde_json::from_slice::<Holder>(&kv.value).ok());
            return Err(TeamError::Held {
                what,
                holder: holder.map(Box::new),
            });
        }
        let lock = TeamLock {
            client: self.client.clone(),
            lease,
            token: r.revision,
            ttl: self.cfg.lease_ttl,
            renewed: Arc::new(Mutex::new(Instant::now())),
            lost: Arc::new(AtomicBool::new(false)),
            released: Arc::new(AtomicBool::new(false)),
        };
        lock.spawn_keepalive();
        Ok(lock)
    }

    /// Runs holding locks right now, every operator's.
    pub async fn active_runs(&self) -> Result<Vec<ActiveRun>, TeamError> {
        Ok(self
            .client
            .list(&self.key("active/"), 0)
            .await?
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// A publisher for one run's journal lines.
    pub fn publisher(&self, run: &str) -> Publisher {
        Publisher::start(self.clone(), run.to_owned())
    }

    /// Every published run: (run id, its header line), oldest first.
    pub async fn runs(&self) -> Result<Vec<(String, serde_json::Value)>, TeamError> {
        let prefix = self.key("runs/");
        let mut out = Vec::new();
        for kv in self.client.list(&prefix, 0).await? {
            let rest = kv.key.strip_prefix(&prefix).unwrap_or(&kv.key);
            if let Some(run) = rest.strip_suffix("/header")
                && let Ok(v) = serde_json::from_slice(&kv.value)
            {
                out.push((run.to_owned(), v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Copies every shared run this machine's journal directory lacks into it (0600), so
    /// list, show, export and resume work on another operator's runs. Returns how many.
    pub async fn import_runs(&self, dir: &std::path::Path) -> Result<usize, TeamError> {
        let mut n = 0;
        for (run, _) in self.runs().await? {
            if self.import_run(dir, &run).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Copies one shared run into `dir` unless it is there; `true` if it copied.
    pub async fn import_run(&self, dir: &std::path::Path, run: &str) -> Result<bool, TeamError> {
        if run.contains('/') || run.contains("..") {
            return Ok(false);
        }
        let path = dir.join(format!("{run}.jsonl"));
        if path.exists() {
            return Ok(false);
        }
        let lines = self.lines(run).await?;
        if lines.is_empty() {
            return Ok(false);
        }
        let text = lines.join("\n") + "\n";
        let _ = crate::private_fs::private_dir(dir);
        crate::private_fs::write_atomic(&path, text.as_bytes())
            .map_err(|e| TeamError::Lost(format!("cannot write {}: {e}", path.display())))?;
        Ok(true)
    }

    /// What a console shows of the team: the runs holding locks and the steps waiting for a
    /// second person, with the etcd revision they were read at (to watch from).
    pub async fn snapshot(&self) -> Result<Snapshot, TeamError> {
        let revision = self.client.revision().await?;
        let active = self.active_runs().await?;
        let prefix = self.key("approvals/");
        let kvs = self.client.list(&prefix, 0).await?;
        let granted: std::collections::HashSet<&str> = kvs
            .iter()
            .filter_map(|kv| kv.key.strip_suffix("/grant"))
            .collect();
        let mut pending: Vec<approvals::Request> = kvs
            .iter()
            .filter(|kv| {
                kv.key
                    .strip_suffix("/request")
                    .is_some_and(|k| !granted.contains(k))
            })
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect();
        pending.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(Snapshot {
            revision,
            active,
            pending,
        })
    }

    /// Waits (up to `wait`) for anything under the team's prefix to change after `revision`:
    /// `true` if something did.
    pub async fn changed_since(&self, revision: i64, wait: Duration) -> Result<bool, TeamError> {
        Ok(self
            .client
            .watch_once(&self.key(""), revision, wait)
            .await?
            .is_some())
    }

    /// Brings this machine's copies of every shared run up to date: a run missing here is
    /// copied; a copy that is a strict prefix of the shared lines (another operator's run
    /// still going) is replaced by the longer one. A file with lines the team does not have
    /// (this machine's own run: its local journal is written first) is never touched.
    /// Returns how many files changed.
    pub async fn sync_runs(&self, dir: &std::path::Path) -> Result<usize, TeamError> {
        let mut n = 0;
        for (run, _) in self.runs().await? {
            if run.contains('/') || run.contains("..") || run.is_empty() {
                continue;
            }
            let path = dir.join(format!("{run}.jsonl"));
            let shared = self.lines(&run).await?;
            if shared.is_empty() {
                continue;
            }
            if let Ok(local) = std::fs::read_to_string(&path) {
                let local: Vec<&str> = local.lines().collect();
                let is_prefix = local.len() < shared.len()
                    && local.iter().zip(&shared).all(|(a, b)| *a == b.as_str());
                if !is_prefix {
                    continue;
                }
            }
            let text = shared.join("\n") + "\n";
            let _ = crate::private_fs::private_dir(dir);
            crate::private_fs::write_atomic(&path, text.as_bytes())
                .map_err(|e| TeamError::Lost(format!("cannot write {}: {e}", path.display())))?;
            n += 1;
        }
        Ok(n)
    }

    /// A run's published journal lines, in order.
    pub async fn lines(&self, run: &str) -> Result<Vec<String>, TeamError> {
        let kvs = self
            .client
            .list(&self.key(&format!("runs/{run}/lines/")), 0)
            .await?;
        Ok(kvs
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect())
    }
}

/// The team as one console sees it (`Team::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: i64,
    /// Runs holding locks now, every operator's.
    pub active: Vec<ActiveRun>,
    /// Steps waiting for a second person, oldest first.
    pub pending: Vec<approvals::Request>,
}

/// A run as the team sees it while it holds its locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveRun {
    pub run: String,
    pub runbook: String,
    pub operator: String,
    pub target: Vec<String>,
    pub since: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TeamError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(
        "{what} is locked by {} (team lock)\n  hint: wait for that run to finish; if its holder died, its lock frees itself within the lease",
        holder.as_ref().map_or_else(|| "another operator".to_owned(), ToString::to_string)
    )]
    Held {
        what: String,
        holder: Option<Box<Holder>>,
    },
    /// The lease could not be kept alive: another run may hold the lock by now.
    #[error("the team lock was lost ({0}): nothing more is changed by this run")]
    Lost(String),
}

/// A held team lock: a lease kept alive in the background; dropping it (or calling
/// [`TeamLock::release`]) revokes the lease and frees every key.
#[derive(Debug, Clone)]
pub struct TeamLock {
    client: Client,
    lease: i64,
    /// The revision the lock was taken at: every changing command's intent carries it.
    pub token: i64,
    ttl: Duration,
    renewed: Arc<Mutex<Instant>>,
    lost: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

impl TeamLock {
    pub fn lease(&self) -> i64 {
        self.lease
    }

    fn spawn_keepalive(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let every = (me.ttl / 3).max(Duration::from_millis(500));
            loop {
                tokio::time::sleep(every).await;
                if me.released.load(Ordering::SeqCst) || me.lost.load(Ordering::SeqCst) {
                    return;
                }
                match me.client.keep_alive(me.lease).await {
                    Ok(true) => *me.renewed.lock().await = Instant::now(),
                    Ok(false) => {
                        me.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Unreachable: keep trying; `check` refuses once it is too long.
                    Err(_) => {}
                }
            }
        });
    }

    /// Proves the lock still holds before a changing command: the lease must have been
    /// renewed recently, and is renewed now. Refuses once it could have expired.
    pub async fn check(&self) -> Result<(), TeamError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(TeamError::Lost("its lease expired".to_owned()));
        }
        let since = self.renewed.lock().await.elapsed();
        // Renewed within the TTL, and renewed again now: the keys are ours until at least
        // the next TTL (the margin covers the round trip).
        if since >= self.ttl {
            self.lost.store(true, Ordering::SeqCst);
            return Err(TeamError::Lost(format!(
                "not renewed for {} (lease {})",
                humantime::format_duration(Duration::from_secs(since.as_secs())),
                humantime::format_duration(self.ttl)
            )));
        }
        match self.client.keep_alive(self.lease).await {
            Ok(true) => {
                *self.renewed.lock().await = Instant::now();
                Ok(())
            }
            Ok(false) => {
                self.lost.store(true, Ordering::SeqCst);
                Err(TeamError::Lost("its lease expired".to_owned()))
            }
            Err(e) => Err(TeamError::Lost(e.to_string())),
        }
    }

    pub async fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            let _ = self.client.revoke(self.lease).await;
        }
    }
}

impl Drop for TeamLock {
    fn drop(&mut self) {
        // The last clone revokes the lease (a kill -9 leaves it to expire).
        if Arc::strong_count(&self.released) == 1 && !self.released.swap(true, Ordering::SeqCst) {
            let client = self.client.clone();
            let lease = self.lease;
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    let _ = client.revoke(lease).await;
                });
            }
        }
    }
}

/// Publishes one run's journal lines to etcd in order, in the background, bounded: the
/// local journal is the durable copy and is written first.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: tokio::sync::mpsc::Sender<String>,
    dropped: Arc<AtomicI64>,
}

impl Publisher {
    fn start(team: Team, run: String) -> Publisher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
        let dropped = Arc::new(AtomicI64::new(0));
        // Keys sort by when this publisher started, then by line: a resumed run's lines
        // follow its earlier ones.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        tokio::spawn(async move {
            let mut seq: u64 = 0;
            while let Some(line) = rx.recv().await {
                if seq >= MAX_PUBLISHED_LINES {
                    continue;
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["type"] == "header"
                {
                    let _ = team
                        .client
                        .put(
                            &team.key(&format!("runs/{run}/header")),
                            line.as_bytes(),
                            None,
                        )
                        .await;
                }
                let key = team.key(&format!("runs/{run}/lines/{epoch:024}-{seq:08}"));
                // One retry: a member failing over; then the line stays local only.
                if team.client.put(&key, line.as_bytes(), None).await.is_err() {
                    let _ = team.client.put(&key, line.as_bytes(), None).await;
                }
                seq += 1;
            }
        });
        Publisher { tx, dropped }
    }

    /// Queues a line (never blocks the run; a full queue drops it from the shared copy).
    pub fn publish(&self, line: &str) {
        if self.tx.try_send(line.to_owned()).is_err() {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}
