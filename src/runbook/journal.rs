//! The run journal: one JSON Lines file per run, appended as the run goes.
//!
//! Every line is one object with `ts` (UTC), `run` and `type` (`header`, `event`, `intent`,
//! `done`). The intent to run a changing command is written and synced to disk *before* it
//! runs, its outcome after, so a run killed at any point leaves a journal that says what may
//! have happened. Every line passes through the secret masker. A torn last line (the process
//! died mid-write) is skipped on read.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::Runbook;
use super::engine::{Event, ExecRequest, ExecResult, ResumeFrom};
use super::template::{Value, Vars};
use crate::secret;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {source}\n  hint: set OPSDECK_JOURNAL_DIR to a writable directory", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no run {0:?} in the journal directory\n  hint: `opsdeck journal list` shows the runs")]
    NoRun(String),
    #[error(
        "runbook {runbook} is already running on {target}: held by {user} (pid {pid}) since {started}\n  hint: wait for it, or if that process is gone remove {}", path.display()
    )]
    Locked {
        runbook: String,
        target: String,
        user: String,
        pid: u32,
        started: String,
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$OPSDECK_JOURNAL_DIR`, else the platform data dir (`~/.local/share/opsdeck/journal`).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSDECK_JOURNAL_DIR") {
        return PathBuf::from(d);
    }
    directories::ProjectDirs::from("", "", "opsdeck").map_or_else(
        || std::env::temp_dir().join("opsdeck-journal"),
        |p| p.data_dir().join("journal"),
    )
}

pub fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// An open journal being appended to.
pub struct Journal {
    pub run: String,
    pub path: PathBuf,
    file: File,
}

impl Journal {
    /// Starts a new run's journal and writes its header.
    pub fn create(
        dir: &Path,
        rb: &Runbook,
        inputs: &Vars,
        target: Option<&str>,
        dry_run: bool,
    ) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let run = format!(
            "{}-{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            rb.id,
            std::process::id()
        );
        let path = dir.join(format!("{run}.jsonl"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut j = Journal { run, path, file };
        j.write(
            "header",
            json!({
                "runbook": rb.id,
                "title": rb.title,
                "hash": rb.hash,
                "source": rb.source,
                "operator": operator(),
                "hostname": hostname(),
                "inputs": inputs,
                "target": target,
                "dry_run": dry_run,
            }),
            true,
        )?;
        Ok(j)
    }

    /// Reopens an existing run's journal to append to it (resume).
    pub fn reopen(dir: &Path, run: &str) -> Result<Journal, JournalError> {
        let path = run_path(dir, run)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut j = Journal {
            run: run.to_owned(),
            path,
            file,
        };
        // A torn last line would glue onto the next record: start on a fresh line.
        j.file.write_all(b"\n").map_err(io(&j.path))?;
        j.write(
            "event",
            json!({"event": "resumed", "operator": operator()}),
            true,
        )?;
        Ok(j)
    }

    fn write(&mut self, kind: &str, mut body: Json, sync: bool) -> Result<(), JournalError> {
        if let Json::Object(m) = &mut body {
            m.insert(
                "ts".into(),
                json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
            m.insert("run".into(), json!(self.run));
            m.insert("type".into(), json!(kind));
        }
        let line = secret::mask(&body.to_string()).into_owned();
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io(&self.path))?;
        if sync {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        Ok(())
    }

    pub fn event(&mut self, e: &Event) -> Result<(), JournalError> {
        let body = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
        // Step boundaries and decisions are synced: they are what resume reads.
        let sync = matches!(
            e,
            Event::StepFinished { .. }
                | Event::Decided { .. }
                | Event::RunFinished { .. }
                | Event::Captured { .. }
        );
        self.write("event", body, sync)
    }

    /// Written (and synced, for changing commands) before the command runs.
    pub fn intent(&mut self, r: &ExecRequest) -> Result<(), JournalError> {
        self.write(
            "intent",
            json!({
                "seq": r.seq,
                "step": r.step,
                "host": r.host.as_ref().map(|h| h.name.clone()),
                "purpose": r.purpose,
                "command": r.command.to_string(),
                "changes": r.changes,
                "attempt": r.attempt,
            }),
            r.changes,
        )
    }

    pub fn done(&mut self, r: &ExecRequest, res: &ExecResult) -> Result<(), JournalError> {
        self.write(
            "done",
            json!({
                "seq": r.seq,
                "step": r.step,
                "host": r.host.as_ref().map(|h| h.name.clone()),
                "exit": res.exit,
                "status": res.status,
                "error": res.error,
                "output": res.output,
            }),
            r.changes,
        )
    }
}

fn run_path(dir: &Path, run: &str) -> Result<PathBuf, JournalError> {
    let p = dir.join(format!("{run}.jsonl"));
    if p.is_file() && !run.contains('/') {
        Ok(p)
    } else {
        Err(JournalError::NoRun(run.to_owned()))
    }
}

/// Every parseable line of a run's journal; a torn or garbled line is skipped.
pub fn read(dir: &Path, run: &str) -> Result<Vec<Json>, JournalError> {
    let path = run_path(dir, run)?;
    let text = std::fs::read(&path).map_err(io(&path))?;
    Ok(parse_lines(&String::from_utf8_lossy(&text)))
}

pub fn parse_lines(text: &str) -> Vec<Json> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(Json::is_object)
        .collect()
}

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v.get(k).and_then(Json::as_str).unwrap_or("")
}

fn event_is(v: &Json, name: &str) -> bool {
    s(v, "type") == "event" && s(v, "event") == name
}

/// The header: runbook id, hash, inputs, target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub runbook: String,
    pub hash: String,
    pub operator: String,
    pub inputs: Vars,
    pub target: Option<String>,
    pub ts: String,
}

pub fn header(lines: &[Json]) -> Option<Header> {
    let h = lines.iter().find(|l| s(l, "type") == "header")?;
    Some(Header {
        runbook: s(h, "runbook").to_owned(),
        hash: s(h, "hash").to_owned(),
        operator: s(h, "operator").to_owned(),
        inputs: h
            .get("inputs")
            .and_then(|i| serde_json::from_value(i.clone()).ok())
            .unwrap_or_default(),
        target: h.get("target").and_then(Json::as_str).map(str::to_owned),
        ts: s(h, "ts").to_owned(),
    })
}

/// The outcome if the run finished.
pub fn outcome(lines: &[Json]) -> Option<String> {
    lines
        .iter()
        .rev()
        .find(|l| event_is(l, "run_finished"))
        .map(|l| s(l, "outcome").to_owned())
}

/// Where an interrupted run continues: the first step that did not finish, the variables
/// captured so far, and whether a changing command was in flight (intent without outcome).
/// `None` if the run succeeded.
pub fn resume_point(rb: &Runbook, lines: &[Json]) -> Option<ResumeFrom> {
    // Only a run that succeeded is over; one that stopped for approval, failed, was refused
    // or aborted continues at the step that did not finish.
    if outcome(lines).as_deref() == Some("succeeded") {
        return None;
    }
    let mut vars = Vars::new();
    let mut current: Option<String> = None;
    let mut finished_last: Option<String> = None;
    let mut open_intents: Vec<(u64, String)> = Vec::new();
    for l in lines {
        if event_is(l, "captured") {
            if let Some(v) = l
                .get("value")
                .and_then(|v| serde_json::from_value::<Value>(v.clone()).ok())
            {
                vars.insert(s(l, "var").to_owned(), v);
            }
        } else if event_is(l, "step_started") {
            current = Some(s(l, "step").to_owned());
        } else if event_is(l, "step_finished") && matches!(s(l, "status"), "succeeded" | "skipped")
        {
            if current.as_deref() == Some(s(l, "step")) {
                current = None;
            }
            finished_last = Some(s(l, "step").to_owned());
        } else if s(l, "type") == "intent" && l.get("changes").and_then(Json::as_bool) == Some(true)
        {
            open_intents.push((
                l.get("seq").and_then(Json::as_u64).unwrap_or(0),
                s(l, "step").to_owned(),
            ));
        } else if s(l, "type") == "done" {
            let seq = l.get("seq").and_then(Json::as_u64).unwrap_or(0);
            open_intents.retain(|(q, _)| *q != seq);
        }
    }
    if let Some(step) = current {
        let idx = rb.step_index(&step)?;
        let unknown = open_intents.iter().any(|(_, s)| *s == step);
        return Some(ResumeFrom {
            step: idx,
            vars,
            unknown,
        });
    }
    let next = match finished_last {
        Some(step) => rb.step_index(&step)? + 1,
        None => 0,
    };
    Some(ResumeFrom {
        step: next,
        vars,
        unknown: false,
    })
}

/// One run, for `journal list`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run: String,
    pub runbook: String,
    pub operator: String,
    pub started: String,
    pub outcome: Option<String>,
}

pub fn list(dir: &Path) -> Result<Vec<RunSummary>, JournalError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let Some(run) = p.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let lines = read(dir, &run)?;
        let h = header(&lines);
        out.push(RunSummary {
            runbook: h.as_ref().map(|h| h.runbook.clone()).unwrap_or_default(),
            operator: h.as_ref().map(|h| h.operator.clone()).unwrap_or_default(),
            started: h.map(|h| h.ts).unwrap_or_default(),
            outcome: outcome(&lines),
            run,
        });
    }
    out.sort_by(|a, b| a.run.cmp(&b.run));
    Ok(out)
}

/// An incident timeline for a postmortem.
pub fn markdown(lines: &[Json]) -> String {
    let mut out = String::new();
    let h = lines.iter().find(|l| s(l, "type") == "header");
    let title = h.map_or("", |h| s(h, "title"));
    let _ = writeln!(out, "# Incident timeline: {title}\n");
    if let Some(h) = h {
        let _ = writeln!(out, "- Run: `{}`", s(h, "run"));
        let _ = writeln!(
            out,
            "- Runbook: `{}` (sha256 `{}`)",
            s(h, "runbook"),
            s(h, "hash")
        );
        let _ = writeln!(
            out,
            "- Operator: {} on {}",
            s(h, "operator"),
            s(h, "hostname")
        );
        let _ = writeln!(out, "- Started: {}", s(h, "ts"));
        if let Some(t) = h.get("target").and_then(Json::as_str) {
            let _ = writeln!(out, "- Target: `{t}`");
        }
        if h.get("dry_run").and_then(Json::as_bool) == Some(true) {
            let _ = writeln!(out, "- Dry run: nothing was changed");
        }
    }
    for l in lines.iter().filter(|l| event_is(l, "health")) {
        let _ = writeln!(
            out,
            "- Health ({}): {}",
            s(l, "when"),
            l.get("checks").map(Json::to_string).unwrap_or_default()
        );
    }
    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| Time (UTC) | Step | What | Detail |");
    let _ = writeln!(out, "|---|---|---|---|");
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ⏎ ");
    for l in lines {
        let ts = s(l, "ts");
        let time = DateTime::parse_from_rfc3339(ts)
            .map(|t| t.with_timezone(&Utc).format("%H:%M:%S").to_string())
            .unwrap_or_default();
        let step = s(l, "step");
        let (what, detail) = match (s(l, "type"), s(l, "event")) {
            ("event", "step_started") => ("started".to_owned(), s(l, "title").to_owned()),
            ("intent", _) if l.get("changes").and_then(Json::as_bool) == Some(true) => (
                "about to change".to_owned(),
                format!("`{}` on {}", s(l, "command"), s(l, "host")),
            ),
            ("done", _) if l.get("error").is_some_and(|e| !e.is_null()) => {
                ("error".to_owned(), s(l, "error").to_owned())
            }
            ("event", "decided") => (
                "decision".to_owned(),
                format!(
                    "{} by {}",
                    l.get("decision")
                        .and_then(|d| d.get("decision"))
                        .and_then(Json::as_str)
                        .unwrap_or(""),
                    s(l, "by")
                ),
            ),
            ("event", "guard") => (
                "guard".to_owned(),
                format!("{}: {}", s(l, "guard"), s(l, "message")),
            ),
            ("event", "step_finished") => (s(l, "status").to_owned(), s(l, "message").to_owned()),
            ("event", "note") => ("note".to_owned(), s(l, "text").to_owned()),
            ("event", "budget_exceeded") => ("over budget".to_owned(), String::new()),
            ("event", "rto_exceeded") => ("RTO exceeded".to_owned(), String::new()),
            ("event", "resumed") => (format!("resumed by {}", s(l, "operator")), String::new()),
            ("event", "would_run") => (
                "would run".to_owned(),
                format!("`{}` on {}", s(l, "command"), s(l, "host")),
            ),
            ("event", "run_finished") => (
                format!("run {}", s(l, "outcome")),
                s(l, "message").to_owned(),
            ),
            _ => continue,
        };
        let _ = writeln!(
            out,
            "| {time} | {} | {} | {} |",
            cell(step),
            cell(&what),
            cell(&detail)
        );
    }
    let skipped: Vec<&str> = lines
        .iter()
        .filter(|l| event_is(l, "step_finished") && s(l, "status") == "skipped")
        .map(|l| s(l, "step"))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "\n## Skipped\n");
        for st in skipped {
            let _ = writeln!(out, "- `{st}`");
        }
    }
    let _ = writeln!(
        out,
        "\n## Outcome\n\n{}",
        outcome(lines)
            .unwrap_or_else(|| "unfinished (resume with `opsdeck run --resume RUN`)".to_owned())
    );
    secret::mask(&out).into_owned()
}

/// Who holds a run lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    user: String,
    pid: u32,
    started: String,
    run: String,
}

/// A held lock on (runbook, target); released on drop.
pub struct RunLock {
    path: PathBuf,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn pid_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

impl RunLock {
    /// Takes the lock for `runbook` on `target`, or names who holds it. A lock whose process
    /// is gone is stale and taken over.
    pub fn acquire(
        dir: &Path,
        runbook: &str,
        target: &str,
        run: &str,
    ) -> Result<RunLock, JournalError> {
        let locks = dir.join("locks");
        std::fs::create_dir_all(&locks).map_err(io(&locks))?;
        let safe: String = format!("{runbook}@{target}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = locks.join(format!("{safe}.lock"));
        let info = LockInfo {
            user: operator(),
            pid: std::process::id(),
            started: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            run: run.to_owned(),
        };
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let body = serde_json::to_string(&info).unwrap_or_default();
                    f.write_all(body.as_bytes()).map_err(io(&path))?;
                    f.sync_all().map_err(io(&path))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held: Option<LockInfo> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str(&t).ok());
                    match held {
                        Some(h) if pid_alive(h.pid) && h.pid != std::process::id() => {
                            return Err(JournalError::Locked {
                                runbook: runbook.to_owned(),
                                target: target.to_owned(),
                                user: h.user,
                                pid: h.pid,
                                started: h.started,
                                path,
                            });
                        }
                        // Stale (dead holder), our own, or unreadable (torn write): take over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(io(&path)(std::io::Error::other(
            "lock file keeps reappearing",
        )))
    }
}
