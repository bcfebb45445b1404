//! Logs go to a file (never stdout: the console owns the terminal), with every loaded secret
//! masked on the way out.

use std::path::PathBuf;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::secret::MaskingWriter;

/// `$OPSDECK_LOG_DIR`, else the platform state/cache dir, else `/tmp/opsdeck`.
pub fn log_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSDECK_LOG_DIR") {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("", "", "opsdeck")
        .map(|d| d.state_dir().unwrap_or_else(|| d.cache_dir()).to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("opsdeck"))
}

struct MaskingMakeWriter(tracing_appender::non_blocking::NonBlocking);

impl<'a> MakeWriter<'a> for MaskingMakeWriter {
    type Writer = MaskingWriter<tracing_appender::non_blocking::NonBlocking>;
    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter(self.0.clone())
    }
}

/// Installs the file logger. Keep the guard alive for the program's life (it flushes on drop).
/// Level from `OPSDECK_LOG` (default `info`).
pub fn init() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir = log_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::never(&dir, "opsdeck.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("OPSDECK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,russh=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(MaskingMakeWriter(writer))
        .try_init()
        .ok()?;
    Some(guard)
}
