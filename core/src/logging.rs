//! Logs go to a file (never stdout: the console owns the terminal), with every loaded secret
//! masked on the way out.
//!
//! The file is private (0600 in a 0700 directory, whatever the umask: it holds hosts,
//! commands and output from an incident) and bounded: past [`MAX_LOG_BYTES`] it is rotated to
//! `opsdeck.log.1`, `.2`, and the oldest beyond [`LOG_FILES`] is deleted.
//!
//! The level comes from `OPSDECK_LOG`, else `RUST_LOG` (both `EnvFilter` syntax), else
//! `info,russh=warn`; `-v`/`-q` raise or lower it by one step each.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::private_fs;
use crate::secret::MaskingWriter;

/// Size at which the log file is rotated.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Files kept: the current one and the rotated ones (`opsdeck.log`, `.1`, `.2`).
pub const LOG_FILES: usize = 3;
/// The log file's name in [`log_dir`].
pub const LOG_FILE: &str = "opsdeck.log";

const DEFAULT_FILTER: &str = "info,russh=warn";
/// The levels `-v`/`-q` step through.
const STEPS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `$OPSDECK_LOG_DIR`, else the platform state/cache dir, else `$TMPDIR/opsdeck-UID` (a
/// directory of this user's own, never a shared one).
pub fn log_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSDECK_LOG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("", "", "opsdeck")
        .map(|d| d.state_dir().unwrap_or_else(|| d.cache_dir()).to_path_buf())
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("opsdeck-{}", nix::unistd::getuid().as_raw()))
        })
}

/// An append-only file rotated by size: `path` is written until it would pass `max_bytes`,
/// then renamed to `path.1` (older ones shift up, the oldest beyond `files` is removed) and a
/// new private `path` is started. Several processes may share one log: each re-checks the
/// real size before rotating, so a file another process rotated is just reopened.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    files: usize,
    file: Option<File>,
    written: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, files: usize) -> io::Result<RotatingFile> {
        let file = private_fs::open_append(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            files: files.max(1),
            file: Some(file),
            written,
        })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Rotates if the file on disk (not just our count of it) is full.
    fn rotate_if_full(&mut self, incoming: u64) -> io::Result<()> {
        let on_disk = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let ours_is_current = match (&self.file, std::fs::metadata(&self.path)) {
            (Some(f), Ok(m)) => {
                let fm = f.metadata()?;
                std::os::unix::fs::MetadataExt::ino(&fm) == std::os::unix::fs::MetadataExt::ino(&m)
            }
            _ => false,
        };
        if on_disk > 0 && on_disk + incoming > self.max_bytes {
            self.file = None;
            if self.files > 1 {
                let _ = std::fs::remove_file(self.rotated(self.files - 1));
                for n in (1..self.files - 1).rev() {
                    let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
                }
                std::fs::rename(&self.path, self.rotated(1))?;
            } else {
                std::fs::remove_file(&self.path)?;
            }
        } else if ours_is_current {
            self.written = on_disk;
            return Ok(());
        }
        // Rotated just now, or by another process: continue in the current file.
        let file = private_fs::open_append(&self.path)?;
        self.written = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let incoming = buf.len() as u64;
        if self.file.is_none() || self.written + incoming > self.max_bytes {
            self.rotate_if_full(incoming)?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("log file not open"));
        };
        f.write_all(buf)?;
        self.written += incoming;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

struct MaskingMakeWriter(tracing_appender::non_blocking::NonBlocking);

impl<'a> MakeWriter<'a> for MaskingMakeWriter {
    type Writer = MaskingWriter<tracing_appender::non_blocking::NonBlocking>;
    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(self.0.clone())
    }
}

/// The filter: `OPSDECK_LOG`, else `RUST_LOG`, else the default; `verbosity` (`-v` minus `-q`
/// counts) moves the overall level that many steps up (towards trace) or down (towards off).
pub fn filter(verbosity: i16) -> EnvFilter {
    let from_env = ["OPSDECK_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.trim().is_empty());
    let base = from_env.and_then(|v| EnvFilter::try_new(v).ok());
    if verbosity == 0 {
        return base.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    }
    let current = base
        .as_ref()
        .and_then(EnvFilter::max_level_hint)
        .map_or(3, |hint| match hint.into_level() {
            None => 0,
            Some(Level::ERROR) => 1,
            Some(Level::WARN) => 2,
            Some(Level::INFO) => 3,
            Some(Level::DEBUG) => 4,
            Some(Level::TRACE) => 5,
        });
    let step = (current + i64::from(verbosity)).clamp(0, 5);
    let level = STEPS[usize::try_from(step).unwrap_or(3)];
    // russh logs every packet at debug and trace: only -vv (trace) lets it through.
    if level == "trace" {
        EnvFilter::new("trace")
    } else {
        EnvFilter::new(format!("{level},russh=warn"))
    }
}

/// Refuses a log directory that is a symlink before anything narrows its mode (which would
/// follow the link): in a shared `$TMPDIR` someone else may have planted it.
fn not_a_symlink(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::other(format!(
            "{} is a symlink: refusing to use it",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Installs the file logger. Keep the guard alive for the program's life (it flushes on drop).
/// `verbosity` is `-v` count minus `-q` count. A log that cannot be opened privately is
/// reported once on stderr; opsdeck then runs without one.
pub fn init(verbosity: i16) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = log_dir();
    let opened = not_a_symlink(&dir)
        .and_then(|()| private_fs::ensure_owned_private_dir(&dir))
        .and_then(|()| RotatingFile::open(&dir.join(LOG_FILE), MAX_LOG_BYTES, LOG_FILES));
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            eprintln!("opsdeck: not logging: {e} (set OPSDECK_LOG_DIR to a directory of your own)");
            return None;
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(file);
    tracing_subscriber::fmt()
        .with_env_filter(filter(verbosity))
        .with_ansi(false)
        .with_writer(MaskingMakeWriter(writer))
        .try_init()
        .ok()?;
    Some(guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_log_rotates_by_size_and_keeps_a_bounded_number_of_private_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let path = t.path().join("x.log");
        let mut f = RotatingFile::open(&path, 100, 3).expect("open");
        // One write per line, as the logger does.
        for i in 0..50 {
            f.write_all(format!("line {i:03} ........\n").as_bytes())
                .expect("write");
        }
        f.flush().expect("flush");
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["x.log", "x.log.1", "x.log.2"]);
        for n in &names {
            let meta = std::fs::metadata(t.path().join(n)).expect("stat");
            assert!(meta.len() <= 100, "{n} is {} bytes", meta.len());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{n}");
        }
        let newest = std::fs::read_to_string(&path).expect("read");
        assert!(newest.contains("line 049"), "{newest}");
        let oldest = std::fs::read_to_string(t.path().join("x.log.2")).expect("read");
        assert!(
            !oldest.contains("line 000"),
            "the oldest lines were dropped"
        );
    }
}
