//! The run journal: one JSON Lines file per run, appended as the run goes.
//!
//! Every line is one object with `ts` (UTC), `run` and `type` (`header`, `event`, `intent`,
//! `done`). The intent to run a changing command is written and synced to disk *before* it
//! runs, its outcome after, so a run killed at any point leaves a journal that says what may
//! have happened. Every line passes through the secret masker. A torn last line (the process
//! died mid-write) is skipped on read.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::Runbook;
use super::engine::{Event, ExecRequest, ExecResult, ResumeFrom, UnitKey};
use super::template::{Value, Vars};
use crate::{identity, private_fs, secret};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {source}\n  hint: set OPSDECK_JOURNAL_DIR to a writable directory", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no run {0:?} in the journal directory\n  hint: `opsdeck journal list` shows the runs")]
    NoRun(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$OPSDECK_JOURNAL_DIR`, else config.toml's `journal_dir`, else the platform data dir
/// (`~/.local/share/opsdeck/journal`).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSDECK_JOURNAL_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = crate::config::journal_dir() {
        return d;
    }
    directories::ProjectDirs::from("", "", "opsdeck").map_or_else(
        || {
            // No home directory: a private directory of this user's, never a shared one.
            std::env::temp_dir().join(format!("opsdeck-journal-{}", identity::current().uid))
        },
        |p| p.data_dir().join("journal"),
    )
}

/// Who is acting, as recorded: `account@machine` from the OS account, never `$USER`.
pub fn operator() -> String {
    identity::current().to_string()
}

/// What the journal header records about a run.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub runbook: &'a Runbook,
    /// Inputs as given; secret ones are recorded masked.
    pub inputs: &'a Vars,
    /// `--target` as typed, and the hosts it resolved to.
    pub target: Option<&'a str>,
    pub target_hosts: &'a [String],
    pub dry_run: bool,
    /// A dry run of resuming this run (it never writes into that run's journal).
    pub resume_of: Option<&'a str>,
    /// A drill's name when the run treats a drill's fault (learn mode).
    pub drill: Option<&'a str>,
}

/// An open journal being appended to.
pub struct Journal {
    pub run: String,
    pub path: PathBuf,
    file: File,
    /// Team mode: every line also goes to the team's etcd (after the local write).
    publisher: Option<crate::team::Publisher>,
}

/// A fresh run id: UTC time, runbook, pid and a random suffix, so two runs started in the
/// same second by two processes never share a file.
pub fn new_run_id(runbook: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}-{}-{}-{:04x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        runbook,
        std::process::id(),
        nanos & 0xffff
    )
}

impl Journal {
    /// Starts a new run's journal (0600 in a 0700 directory) and writes its header.
    pub fn create(dir: &Path, run: &str, new: &NewRun<'_>) -> Result<Journal, JournalError> {
        private_fs::private_dir(dir).map_err(io(dir))?;
        let path = dir.join(format!("{run}.jsonl"));
        let file = private_fs::create_new(&path).map_err(io(&path))?;
        let mut j = Journal {
            run: run.to_owned(),
            path,
            file,
            publisher: None,
        };
        let secret_inputs: Vec<&str> = new
            .runbook
            .inputs
            .iter()
            .filter(|i| i.secret)
            .map(|i| i.name.as_str())
            .collect();
        let inputs: serde_json::Map<String, Json> = new
            .inputs
            .iter()
            .map(|(k, v)| {
                let v = if secret_inputs.contains(&k.as_str()) {
                    json!(secret::MASK)
                } else {
                    serde_json::to_value(v).unwrap_or(Json::Null)
                };
                (k.clone(), v)
            })
            .collect();
        let me = identity::current();
        j.write(
            "header",
            json!({
                "runbook": new.runbook.id,
                "title": new.runbook.title,
                "hash": new.runbook.hash,
                "source": new.runbook.source,
                "account": me.account,
                "uid": me.uid,
                "hostname": me.host,
                "inputs": inputs,
                "secret_inputs": secret_inputs,
                "target": new.target,
                "target_hosts": new.target_hosts,
                "dry_run": new.dry_run,
                "resume_of": new.resume_of,
                "drill": new.drill,
            }),
            true,
        )?;
        Ok(j)
    }

    /// Reopens an existing run's journal to append to it (resume). Call it only while
    /// holding the run's lock.
    pub fn reopen(dir: &Path, run: &str) -> Result<Journal, JournalError> {
        let path = run_path(dir, run)?;
        let file = private_fs::open_append(&path).map_err(io(&path))?;
        let mut j = Journal {
            run: run.to_owned(),
            path,
            file,
            publisher: None,
        };
        // A torn last line would glue onto the next record: start on a fresh line.
        j.file.write_all(b"\n").map_err(io(&j.path))?;
        j.write("event", json!({"event": "resumed"}), true)?;
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
            m.insert("operator".into(), json!(operator()));
        }
        secret::mask_json(&mut body);
        let line = body.to_string();
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(io(&self.path))?;
        if sync {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        if let Some(p) = &self.publisher {
            p.publish(&line);
        }
        Ok(())
    }

    /// Team mode: publish every line from now on.
    pub fn attach(&mut self, publisher: crate::team::Publisher) {
        self.publisher = Some(publisher);
    }

    /// Publishes what the file holds so far (a new run's header).
    pub fn publish_written(&self, publisher: &crate::team::Publisher) {
        if let Ok(text) = std::fs::read_to_string(&self.path) {
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                publisher.publish(l);
            }
        }
    }

    /// A note about the run itself (team mode degraded, …), synced.
    pub fn note(&mut self, text: &str) -> Result<(), JournalError> {
        self.write(
            "event",
            json!({"event": "note", "step": null, "text": text}),
            true,
        )
    }

    pub fn event(&mut self, e: &Event) -> Result<(), JournalError> {
        let body = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
        // Step and unit boundaries and decisions are synced: they are what resume reads.
        let sync = matches!(
            e,
            Event::StepStarted { .. }
                | Event::StepFinished { .. }
                | Event::UnitFinished { .. }
                | Event::Decided { .. }
                | Event::RunFinished { .. }
                | Event::Captured { .. }
        );
        self.write("event", body, sync)
    }

    /// Written (and synced, for changing commands) before the command runs; in team mode
    /// with the lock's fencing token (the etcd revision it was taken at).
    pub fn intent(
        &mut self,
        r: &ExecRequest,
        fencing_token: Option<i64>,
    ) -> Result<(), JournalError> {
        self.write(
            "intent",
            json!({
                "seq": r.seq,
                "step": r.step,
                "host": r.host.as_ref().map(|h| h.name.clone()),
                "item": r.item,
                "purpose": r.purpose,
                "command": r.command.to_string(),
                "changes": r.changes,
                "attempt": r.attempt,
                "fencing_token": fencing_token,
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
                "item": r.item,
                "exit": res.exit,
                "status": res.status,
                "error": res.error,
                "unknown": res.unknown,
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
    /// `account@machine`.
    pub operator: String,
    /// Inputs as recorded; secret ones hold the mask, not the value.
    pub inputs: Vars,
    pub secret_inputs: Vec<String>,
    pub target: Option<String>,
    pub target_hosts: Vec<String>,
    pub dry_run: bool,
    pub ts: String,
}

pub fn header(lines: &[Json]) -> Option<Header> {
    let h = lines.iter().find(|l| s(l, "type") == "header")?;
    let strings = |k: &str| -> Vec<String> {
        h.get(k)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    };
    Some(Header {
        runbook: s(h, "runbook").to_owned(),
        hash: s(h, "hash").to_owned(),
        operator: s(h, "operator").to_owned(),
        inputs: h
            .get("inputs")
            .and_then(|i| serde_json::from_value(i.clone()).ok())
            .unwrap_or_default(),
        secret_inputs: strings("secret_inputs"),
        target: h.get("target").and_then(Json::as_str).map(str::to_owned),
        target_hosts: strings("target_hosts"),
        dry_run: h.get("dry_run").and_then(Json::as_bool) == Some(true),
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

fn unit_of(l: &Json) -> UnitKey {
    let opt = |k: &str| l.get(k).and_then(Json::as_str).map(str::to_owned);
    UnitKey {
        host: opt("host"),
        item: opt("item"),
    }
}

/// Where an interrupted run continues: the first step that did not finish, the variables
/// captured so far, the units of that step that finished (never run again), and the unit
/// whose changing command was in flight or ended with an unknown outcome. `None` if the run
/// succeeded.
pub fn resume_point(rb: &Runbook, lines: &[Json]) -> Option<ResumeFrom> {
    // Only a run that succeeded is over; one that stopped for approval, failed, was refused
    // or aborted continues at the step that did not finish.
    if outcome(lines).as_deref() == Some("succeeded") {
        return None;
    }
    let mut vars = Vars::new();
    let mut current: Option<String> = None;
    let mut finished_last: Option<String> = None;
    // For the current step: units done, and the unit whose outcome is unknown.
    let mut done: Vec<UnitKey> = Vec::new();
    let mut unknown: Option<UnitKey> = None;
    let mut open_intents: Vec<(u64, String, UnitKey)> = Vec::new();
    for l in lines {
        if event_is(l, "captured") {
            if let Some(v) = l
                .get("value")
                .and_then(|v| serde_json::from_value::<Value>(v.clone()).ok())
            {
                vars.insert(s(l, "var").to_owned(), v);
            }
        } else if event_is(l, "input_set") {
            // A secret input is recorded as the mask: it must be given again.
            if s(l, "value") != secret::MASK {
                vars.insert(
                    s(l, "name").to_owned(),
                    Value::Str(s(l, "value").to_owned()),
                );
            }
        } else if event_is(l, "step_started") {
            // A resumed step keeps what its earlier start finished; a fresh start (the run
            // reaching it again through a goto) begins anew.
            let resumed = l.get("resumed").and_then(Json::as_bool) == Some(true);
            if !resumed || current.as_deref() != Some(s(l, "step")) {
                done.clear();
                unknown = None;
            }
            current = Some(s(l, "step").to_owned());
        } else if event_is(l, "unit_finished") && current.as_deref() == Some(s(l, "step")) {
            let key = unit_of(l);
            // Whatever was in flight for this unit has an outcome now.
            open_intents.retain(|(_, st, k)| !(st == s(l, "step") && *k == key));
            match s(l, "status") {
                "succeeded" | "skipped" => {
                    if unknown.as_ref() == Some(&key) {
                        unknown = None;
                    }
                    if !done.contains(&key) {
                        done.push(key);
                    }
                }
                "unknown" => unknown = Some(key),
                _ => {
                    if unknown.as_ref() == Some(&key) {
                        unknown = None;
                    }
                }
            }
        } else if event_is(l, "step_finished") && matches!(s(l, "status"), "succeeded" | "skipped")
        {
            if current.as_deref() == Some(s(l, "step")) {
                current = None;
                done.clear();
                unknown = None;
            }
            finished_last = Some(s(l, "step").to_owned());
        } else if s(l, "type") == "intent" && l.get("changes").and_then(Json::as_bool) == Some(true)
        {
            open_intents.push((
                l.get("seq").and_then(Json::as_u64).unwrap_or(0),
                s(l, "step").to_owned(),
                unit_of(l),
            ));
        } else if s(l, "type") == "done" {
            let seq = l.get("seq").and_then(Json::as_u64).unwrap_or(0);
            open_intents.retain(|(q, _, _)| *q != seq);
        }
    }
    if let Some(step) = current {
        let idx = rb.step_index(&step)?;
        // A changing command with an intent and no outcome: the run died while it ran.
        if let Some((_, _, key)) = open_intents.iter().rev().find(|(_, st, _)| *st == step) {
            unknown = Some(key.clone());
        }
        return Some(ResumeFrom {
            step: idx,
            vars,
            done,
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
        done: Vec::new(),
        unknown: None,
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

/// What a decision covered, for the timeline: `covering app1, app2 (3 commands)`.
fn covered(l: &Json) -> String {
    let Some(c) = l.get("covers").and_then(Json::as_array) else {
        return String::new();
    };
    if c.is_empty() {
        return String::new();
    }
    let mut hosts: Vec<&str> = Vec::new();
    for x in c {
        let h = x.get("host").and_then(Json::as_str).unwrap_or("-");
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    let n = c.len();
    let s = if n == 1 { "" } else { "s" };
    format!(", covering {} ({n} command{s})", hosts.join(", "))
}

/// Most lines of a step's output the postmortem quotes (the journal keeps the bounded whole).
const KEY_OUTPUT_LINES: usize = 12;

/// The postmortem document of a run: who, what, where; health at its start and end; the
/// decisions and who made them; each step's key output; the timeline.
pub fn markdown(lines: &[Json]) -> String {
    let mut out = String::new();
    let h = lines.iter().find(|l| s(l, "type") == "header");
    let title = h.map_or("", |h| s(h, "title"));
    let drill = h.map_or("", |h| s(h, "drill"));
    if drill.is_empty() {
        let _ = writeln!(out, "# Incident: {title}\n");
    } else {
        let _ = writeln!(out, "# Drill ({drill}): {title}\n");
        let _ = writeln!(
            out,
            "> This was a drill on the local lab: the fault was injected on purpose.\n"
        );
    }
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
            "- Operator: {} (uid {})",
            s(h, "operator"),
            h.get("uid").map(Json::to_string).unwrap_or_default()
        );
        let _ = writeln!(out, "- Started: {}", s(h, "ts"));
        if let Some(t) = h.get("target").and_then(Json::as_str) {
            let hosts = h
                .get("target_hosts")
                .and_then(Json::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let _ = writeln!(out, "- Target: `{t}` ({hosts})");
        }
        if h.get("dry_run").and_then(Json::as_bool) == Some(true) {
            let _ = writeln!(out, "- Dry run: nothing was changed");
        }
    }
    let finished = lines.iter().rev().find(|l| event_is(l, "run_finished"));
    let _ = writeln!(
        out,
        "- Outcome: **{}**{}",
        finished.map_or("unfinished", |l| s(l, "outcome")),
        finished
            .map(|l| format!(" — {}", s(l, "message")))
            .unwrap_or_default()
    );
    if let (Some(h), Some(f)) = (h, finished)
        && let (Ok(a), Ok(b)) = (
            DateTime::parse_from_rfc3339(s(h, "ts")),
            DateTime::parse_from_rfc3339(s(f, "ts")),
        )
    {
        let secs = (b - a).num_seconds().max(0);
        let _ = writeln!(out, "- Duration: {}m{:02}s", secs / 60, secs % 60);
    }

    // Health at the start and at the end: what was failing, with its values.
    let _ = writeln!(out, "\n## Health\n");
    let mut any_health = false;
    for l in lines.iter().filter(|l| event_is(l, "health")) {
        any_health = true;
        let checks = l.get("checks").and_then(Json::as_array);
        let _ = writeln!(out, "At the {}:\n", s(l, "when"));
        match checks {
            Some(c) if !c.is_empty() => {
                for c in c {
                    let _ = writeln!(
                        out,
                        "- `{}` **{}** on {}: {}",
                        s(c, "check"),
                        s(c, "state"),
                        s(c, "host"),
                        s(c, "reason")
                    );
                }
            }
            _ => {
                let _ = writeln!(out, "- every check ok");
            }
        }
        let _ = writeln!(out);
    }
    if !any_health {
        let _ = writeln!(out, "No health was recorded for this run.\n");
    }

    // Decisions: who approved, confirmed, skipped or resolved what.
    let decisions: Vec<&Json> = lines.iter().filter(|l| event_is(l, "decided")).collect();
    if !decisions.is_empty() {
        let _ = writeln!(out, "## Decisions\n");
        for l in decisions {
            let _ = writeln!(
                out,
                "- {} step `{}`: **{}** by {}{}",
                time_of(l),
                s(l, "step"),
                l.get("decision")
                    .and_then(|d| d.get("decision"))
                    .and_then(Json::as_str)
                    .unwrap_or(""),
                s(l, "by"),
                covered(l)
            );
        }
        let _ = writeln!(out);
    }

    // Each step's key output, bounded.
    let _ = writeln!(out, "## Steps and key output\n");
    let mut seen: Vec<String> = Vec::new();
    for l in lines.iter().filter(|l| event_is(l, "step_started")) {
        let step = s(l, "step").to_owned();
        if seen.contains(&step) {
            continue;
        }
        seen.push(step.clone());
        let status = lines
            .iter()
            .rev()
            .find(|x| event_is(x, "step_finished") && s(x, "step") == step)
            .map_or("unfinished", |x| s(x, "status"));
        let _ = writeln!(out, "### `{step}` — {} ({status})\n", s(l, "title"));
        let outputs: Vec<String> = lines
            .iter()
            .filter(|x| event_is(x, "output") && s(x, "step") == step)
            .map(|x| {
                let host = s(x, "host");
                s(x, "text")
                    .lines()
                    .map(|t| {
                        if host.is_empty() {
                            t.to_owned()
                        } else {
                            format!("{host}| {t}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let all = outputs.join("\n");
        let shown: Vec<&str> = all.lines().take(KEY_OUTPUT_LINES).collect();
        if !shown.is_empty() {
            let _ = writeln!(out, "```\n{}", shown.join("\n"));
            let more = all.lines().count().saturating_sub(KEY_OUTPUT_LINES);
            if more > 0 {
                let _ = writeln!(out, "… {more} more lines in the journal");
            }
            let _ = writeln!(out, "```\n");
        }
    }

    let _ = writeln!(out, "## Timeline\n");
    let _ = writeln!(out, "| Time (UTC) | Step | What | Detail |");
    let _ = writeln!(out, "|---|---|---|---|");
    let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ⏎ ");
    for l in lines {
        let time = time_of(l);
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
                    "{} by {}{}",
                    l.get("decision")
                        .and_then(|d| d.get("decision"))
                        .and_then(Json::as_str)
                        .unwrap_or(""),
                    s(l, "by"),
                    covered(l)
                ),
            ),
            ("event", "guard") => (
                "guard".to_owned(),
                format!("{}: {}", s(l, "guard"), s(l, "message")),
            ),
            ("event", "step_finished") => (s(l, "status").to_owned(), s(l, "message").to_owned()),
            ("event", "unit_finished")
                if s(l, "status") != "succeeded" || !s(l, "message").is_empty() =>
            {
                (
                    format!("{} on {}", s(l, "status"), unit_of(l)),
                    s(l, "message").to_owned(),
                )
            }
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

fn time_of(l: &Json) -> String {
    DateTime::parse_from_rfc3339(s(l, "ts"))
        .map(|t| t.with_timezone(&Utc).format("%H:%M:%S").to_string())
        .unwrap_or_default()
}
