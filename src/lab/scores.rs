//! Drill scores: each learn-mode drill resolved — which drill, the time from the fault being
//! confirmed on the servers to it being gone, the RTO it is judged against, steps taken and
//! hints used — appended to a private JSON Lines file in the data directory and listed by
//! `opsdeck drill scores [--json]`.

use std::fmt::Write as _;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The scores file's name in the data directory.
pub const FILE: &str = "drill-scores.jsonl";

/// One resolved drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub drill: String,
    /// The runbook paired with the drill, when one is.
    pub runbook: Option<String>,
    /// When the fault was confirmed present on the servers: the clock's start.
    pub started: DateTime<Utc>,
    /// Seconds from `started` until the servers no longer showed the fault.
    pub resolved_s: u64,
    pub rto_s: Option<u64>,
    /// Steps of the drill's runs that ran (skipped ones not counted).
    pub steps: u32,
    pub hints: u32,
    /// The runs started while the drill was on (their journals say it was a drill).
    #[serde(default)]
    pub runs: Vec<String>,
    /// Who resolved it (`account@machine`), filled in when saved.
    #[serde(default)]
    pub operator: String,
}

impl Score {
    /// Whether the time to resolve is within the RTO (`None` without an RTO).
    pub fn within_rto(&self) -> Option<bool> {
        self.rto_s.map(|r| self.resolved_s <= r)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScoresError {
    #[error("cannot use {}: {source}\n  hint: set OPSDECK_DATA_DIR to a directory of yours", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `$OPSDECK_DATA_DIR`, else the platform data dir (`~/.local/share/opsdeck`).
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSDECK_DATA_DIR") {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("", "", "opsdeck").map_or_else(
        || std::env::temp_dir().join(format!("opsdeck-data-{}", crate::identity::current().uid)),
        |p| p.data_dir().to_path_buf(),
    )
}

/// The scores file in the default data directory.
pub fn default_path() -> PathBuf {
    data_dir().join(FILE)
}

/// Appends a score as one JSON line to `path` (0600, in a 0700 directory of this user's).
pub fn append(path: &Path, score: &Score) -> Result<(), ScoresError> {
    let io = |source| ScoresError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::ensure_owned_private_dir(dir).map_err(|source| ScoresError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut line = serde_json::to_string(score).map_err(|e| io(std::io::Error::other(e)))?;
    line.push('\n');
    let mut f = crate::private_fs::open_append(path).map_err(io)?;
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Every score in `path`, oldest first, and a warning (`file:line:col: what`) for each line
/// that is not one. A missing file holds no scores.
pub fn read(path: &Path) -> Result<(Vec<Score>, Vec<String>), ScoresError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => {
            return Err(ScoresError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut scores = Vec::new();
    let mut warnings = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| ScoresError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Score>(&line) {
            Ok(s) => scores.push(s),
            Err(e) => warnings.push(format!(
                "{}:{}:{}: not a drill score ({e}); the line is left out\n  hint: the file is written by `opsdeck learn`; remove the line or restore the file",
                path.display(),
                n + 1,
                e.column()
            )),
        }
    }
    Ok((scores, warnings))
}

/// `m:ss` (or `h:mm:ss`) for a number of seconds.
pub fn clock(s: u64) -> String {
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The scores as a table for people, newest last.
pub fn table(scores: &[Score]) -> String {
    if scores.is_empty() {
        return "no drill scores yet: resolve a drill in `opsdeck learn` (its last page)\n"
            .to_owned();
    }
    let mut out = format!(
        "{:<17} {:<22} {:<26} {:>8} {:>6} {:<7} {:>5} {:>5}  {}\n",
        "when (UTC)", "drill", "runbook", "resolved", "RTO", "", "steps", "hints", "by"
    );
    for s in scores {
        let verdict = match s.within_rto() {
            Some(true) => "within",
            Some(false) => "OVER",
            None => "",
        };
        let _ = writeln!(
            out,
            "{:<17} {:<22} {:<26} {:>8} {:>6} {:<7} {:>5} {:>5}  {}",
            s.started.format("%Y-%m-%d %H:%M"),
            s.drill,
            s.runbook.as_deref().unwrap_or("-"),
            clock(s.resolved_s),
            s.rto_s.map_or_else(|| "-".to_owned(), clock),
            verdict,
            s.steps,
            s.hints,
            s.operator
        );
    }
    out
}

/// The scores as one JSON document (an array, oldest first), `within_rto` included.
pub fn json(scores: &[Score]) -> String {
    let v: Vec<serde_json::Value> = scores
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("within_rto".to_owned(), serde_json::json!(s.within_rto()));
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(drill: &str, resolved_s: u64) -> Score {
        Score {
            drill: drill.to_owned(),
            runbook: Some("db-connection-exhaustion".to_owned()),
            started: DateTime::parse_from_rfc3339("2026-11-22T03:04:05Z")
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
            resolved_s,
            rto_s: Some(300),
            steps: 5,
            hints: 1,
            runs: vec!["r1".to_owned()],
            operator: "oncall@box".to_owned(),
        }
    }

    #[test]
    fn append_then_read_keeps_order_and_points_at_a_bad_line() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("data").join(FILE);
        append(&path, &score("connection-exhaustion", 130)).expect("append");
        append(&path, &score("redis-down", 400)).expect("append");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"drill\": 3}\n"))
            .expect("corrupt");
        let (scores, warnings) = read(&path).expect("read");
        assert_eq!(scores.len(), 2);
        assert_eq!(scores[1].within_rto(), Some(false));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(&format!("{}:3:", path.display())),
            "{}",
            warnings[0]
        );
        let t = table(&scores);
        assert!(
            t.contains("2:10") && t.contains("within") && t.contains("OVER"),
            "{t}"
        );
    }
}
