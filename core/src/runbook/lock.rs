//! Run locks: while a run is open, no other run may act on the same hosts.
//!
//! A lock is keyed on what the run acts on — the resolved host names (never the text the
//! operator typed: `--target edge` and `--target edge1` are the same host), names a runbook
//! declares (`locks = ["db-topology"]`) and the run id (so one journal has one writer). Each
//! key is a file under the lock directory held with `flock(LOCK_EX | LOCK_NB)`. The kernel
//! releases a flock when its holder dies, however it dies, so there is no stale lock to guess
//! about and no remove-then-create race: lock files are never removed. The holder writes who
//! it is (account, machine, boot id, pid, run) into the file after taking it, for the message
//! the next operator sees.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::identity;
use crate::private_fs;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub account: String,
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    pub run: String,
    pub runbook: String,
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, run {} of {}, since {})",
            self.account, self.host, self.pid, self.run, self.runbook, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is locked by {}\n  hint: wait for that run to finish, or resume it with `opsdeck run --resume {}` once it has stopped",
        holder.as_ref().map_or_else(|| "another opsdeck run (it is still writing its name)".to_owned(), ToString::to_string),
        holder.as_ref().map_or("RUN", |h| h.run.as_str())
    )]
    Held {
        /// The key that could not be taken (`host app1`, `run R`, `lock db-topology`).
        what: String,
        holder: Option<Box<Holder>>,
    },
    #[error("lock {}: {source}\n  hint: set OPSDECK_JOURNAL_DIR to a writable directory", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run locks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockKey {
    Host(String),
    Named(String),
    Run(String),
}

impl LockKey {
    pub fn describe(&self) -> String {
        match self {
            LockKey::Host(h) => format!("host {h}"),
            LockKey::Named(n) => format!("lock {n:?}"),
            LockKey::Run(r) => format!("run {r}"),
        }
    }

    /// A file name that cannot escape the lock directory whatever the key holds.
    fn file_name(&self) -> String {
        let (kind, name) = match self {
            LockKey::Host(h) => ("host", h),
            LockKey::Named(n) => ("named", n),
            LockKey::Run(r) => ("run", r),
        };
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        // Two names that sanitise alike must not share a lock file by accident.
        let digest = {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(name.as_bytes());
            d.iter().take(6).fold(String::new(), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        format!("{kind}-{safe}-{digest}.lock")
    }
}

/// This process as the holder of a run's locks.
pub fn holder(run: &str, runbook: &str) -> Holder {
    let me = identity::current();
    Holder {
        account: me.account.clone(),
        host: me.host.clone(),
        boot_id: identity::boot_id(),
        pid: std::process::id(),
        run: run.to_owned(),
        runbook: runbook.to_owned(),
        since: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// Held locks; released when dropped (or when the process dies, by the kernel).
pub struct RunLock {
    held: Vec<(LockKey, Flock<File>)>,
}

impl std::fmt::Debug for RunLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLock")
            .field("keys", &self.keys())
            .finish()
    }
}

impl RunLock {
    pub fn keys(&self) -> Vec<LockKey> {
        self.held.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Takes every key, or none: on the first key held elsewhere, releases what it took and
    /// names the holder. Keys are taken in sorted order and never waited for, so two runs
    /// cannot deadlock.
    pub fn acquire(
        dir: &Path,
        keys: &[LockKey],
        run: &str,
        runbook: &str,
    ) -> Result<RunLock, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        private_fs::private_dir(dir).map_err(io(dir))?;
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let holder = holder(run, runbook);
        let body = serde_json::to_string(&holder).unwrap_or_default();
        let mut held = Vec::new();
        for key in keys {
            let path = dir.join(key.file_name());
            let file = private_fs::open_rw(&path).map_err(io(&path))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(LockError::Held {
                        what: key.describe(),
                        holder: read_holder(&mut file).map(Box::new),
                    });
                }
                Err((_, e)) => return Err(io(&path)(std::io::Error::from(e))),
            };
            // Ours now: say who we are (readers that catch us mid-write see no holder yet).
            lock.set_len(0).map_err(io(&path))?;
            lock.rewind().map_err(io(&path))?;
            lock.write_all(body.as_bytes()).map_err(io(&path))?;
            lock.sync_data().map_err(io(&path))?;
            held.push((key, lock));
        }
        Ok(RunLock { held })
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The lock directory: `locks/` under the journal directory.
pub fn dir_for(journal_dir: &Path) -> PathBuf {
    journal_dir.join("locks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_and_named_until_the_first_lets_go() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keys = [LockKey::Host("app1".into()), LockKey::Run("r1".into())];
        let first = RunLock::acquire(tmp.path(), &keys, "r1", "disk").expect("first");
        let err = RunLock::acquire(tmp.path(), &[LockKey::Host("app1".into())], "r2", "cpu")
            .expect_err("second is refused");
        match &err {
            LockError::Held { what, holder } => {
                assert_eq!(what, "host app1");
                let h = holder.as_ref().expect("holder named");
                assert_eq!(h.run, "r1");
                assert_eq!(h.pid, std::process::id());
            }
            LockError::Io { .. } => panic!("{err}"),
        }
        // A different host is free.
        let other = RunLock::acquire(tmp.path(), &[LockKey::Host("app2".into())], "r3", "cpu");
        assert!(other.is_ok());
        drop(first);
        RunLock::acquire(tmp.path(), &[LockKey::Host("app1".into())], "r2", "cpu")
            .expect("free again once released");
    }

    #[test]
    fn all_or_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let _b = RunLock::acquire(tmp.path(), &[LockKey::Host("b".into())], "r1", "x").expect("b");
        let keys = [LockKey::Host("a".into()), LockKey::Host("b".into())];
        assert!(RunLock::acquire(tmp.path(), &keys, "r2", "x").is_err());
        // `a` was released when taking `b` failed.
        RunLock::acquire(tmp.path(), &[LockKey::Host("a".into())], "r3", "x").expect("a free");
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        let k = LockKey::Host("../../etc/passwd\n".into());
        let name = k.file_name();
        assert!(!name.contains('/'), "{name}");
        assert_ne!(
            LockKey::Host("a/b".into()).file_name(),
            LockKey::Host("a_b".into()).file_name()
        );
    }
}
