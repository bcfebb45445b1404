//! Runbooks: codified procedures run as guided, confirmable step sequences.
//!
//! - [`model`]: the TOML file as written; [`validate`] turns it into a checked [`Runbook`].
//! - [`engine`]: a pure state machine that decides what runs next (no I/O, no clock of its own).
//! - [`executor`]: carries out the engine's commands over transports and clients.
//! - [`journal`]: the JSON Lines record of every run, resume and per-target locks.

pub mod cond;
pub mod drills;
pub mod driver;
pub mod engine;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod model;
pub mod read_only;
pub mod suggest;
pub mod template;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

pub use cond::{Cond, Health, HealthState};
pub use model::{Confirm, DockerAction, Pick, Severity, StepKind};
pub use template::{Quoting, Template, Value, Vars};
pub use validate::{Diagnostic, Loaded, RunbookError, load_dir, load_file, load_str};

use crate::inventory::{Inventory, Selector};

/// A checked runbook, ready for the engine.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub id: String,
    pub title: String,
    pub summary: String,
    pub severity: Severity,
    pub rto: Option<Duration>,
    pub tiers: Vec<String>,
    pub tags: Vec<String>,
    pub symptoms: Vec<String>,
    pub triggers: Vec<Trigger>,
    pub inputs: Vec<Input>,
    pub steps: Vec<Step>,
    /// Names locked while a run is open, beside the hosts it changes.
    pub locks: Vec<String>,
    /// The lab drill this runbook treats (`drill = "connection-exhaustion"`), if any.
    pub drill: Option<String>,
    /// The file it came from.
    pub source: Option<PathBuf>,
    /// sha256 of the file's bytes (hex), recorded in every journal.
    pub hash: String,
}

impl Runbook {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// True if a health state of `check` means this runbook applies.
    pub fn triggered_by(&self, check: &str, state: HealthState) -> bool {
        self.triggers
            .iter()
            .any(|t| t.matches(check) && state.at_least(t.state))
    }
}

/// A health condition a runbook treats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    /// A check id, or a prefix ending in `*` (`disk.*`).
    pub check: String,
    /// The least severe state that triggers.
    pub state: HealthState,
}

impl Trigger {
    pub fn matches(&self, check: &str) -> bool {
        match self.check.strip_suffix('*') {
            Some(prefix) => check.starts_with(prefix),
            None => self.check == check,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub default: Option<String>,
    /// A default computed from the diagnosis when the input is first needed.
    pub default_from: Option<DefaultFrom>,
    pub description: String,
    pub pattern: Option<Regex>,
    pub required: bool,
    /// Masked wherever it is shown or recorded (`secret = true` in the file).
    pub secret: bool,
}

/// How an input's default is computed from a captured value.
#[derive(Debug, Clone, PartialEq)]
pub enum DefaultFrom {
    /// The value as captured (a list's first item).
    Var(String),
    Min(String),
    Max(String),
    Count(String),
    /// The value with `p` % (0–100) of a numeric list below it.
    Percentile(String, f64),
}

impl DefaultFrom {
    /// Parses `VAR`, `min(VAR)`, `max(VAR)`, `count(VAR)`, `percentile(VAR, P)`.
    pub fn parse(text: &str) -> Result<DefaultFrom, String> {
        let t = text.trim();
        let Some((f, rest)) = t.split_once('(') else {
            return if template::valid_name(t) {
                Ok(DefaultFrom::Var(t.to_owned()))
            } else {
                Err(format!("{t:?} is not a variable name"))
            };
        };
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("{t:?}: missing `)`"))?;
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        let var = |a: &str| {
            if template::valid_name(a) {
                Ok(a.to_owned())
            } else {
                Err(format!("{a:?} is not a variable name"))
            }
        };
        match (f.trim(), args.as_slice()) {
            ("min", [v]) => Ok(DefaultFrom::Min(var(v)?)),
            ("max", [v]) => Ok(DefaultFrom::Max(var(v)?)),
            ("count", [v]) => Ok(DefaultFrom::Count(var(v)?)),
            ("percentile", [v, p]) => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=100.0).contains(p))
                    .ok_or_else(|| format!("percentile {p:?}: write a number from 0 to 100"))?;
                Ok(DefaultFrom::Percentile(var(v)?, p))
            }
            (f, _) => Err(format!(
                "{f}(…) is not known: use VAR, min(VAR), max(VAR), count(VAR) or percentile(VAR, P)"
            )),
        }
    }

    /// The variable it reads.
    pub fn var(&self) -> &str {
        match self {
            DefaultFrom::Var(v)
            | DefaultFrom::Min(v)
            | DefaultFrom::Max(v)
            | DefaultFrom::Count(v)
            | DefaultFrom::Percentile(v, _) => v,
        }
    }

    /// The computed default, or `None` when the variable is missing or the list is empty
    /// (or not numeric where a number is needed).
    pub fn eval(&self, vars: &Vars) -> Option<String> {
        let v = vars.get(self.var())?;
        let items: Vec<String> = match v {
            Value::Str(s) if s.is_empty() => Vec::new(),
            Value::Str(s) => vec![s.clone()],
            Value::List(l) => l.clone(),
        };
        let nums = || -> Option<Vec<f64>> {
            let mut n: Vec<f64> = items
                .iter()
                .map(|i| i.trim().parse::<f64>().ok())
                .collect::<Option<_>>()?;
            n.sort_by(f64::total_cmp);
            (!n.is_empty()).then_some(n)
        };
        let show = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{x:.0}")
            } else {
                x.to_string()
            }
        };
        match self {
            DefaultFrom::Var(_) => items.into_iter().next(),
            DefaultFrom::Count(_) => Some(items.len().to_string()),
            DefaultFrom::Min(_) => nums().and_then(|n| n.first().copied()).map(show),
            DefaultFrom::Max(_) => nums().and_then(|n| n.last().copied()).map(show),
            // The value with P % of the list below it: percentile(idle, 20) is the idle time
            // of the oldest 80 %.
            DefaultFrom::Percentile(_, p) => nums().map(|n| {
                let at = ((p / 100.0) * n.len() as f64).floor() as usize;
                show(n[at.min(n.len() - 1)])
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub kind: StepKind,
    pub target: Option<Target>,
    pub exec: Option<Executor>,
    /// Per attempt; for `wait` steps the deadline for the condition.
    pub timeout: Duration,
    pub retries: u32,
    pub budget: Option<Duration>,
    pub interval: Duration,
    pub explain: String,
    pub expect: Option<Expect>,
    pub capture: Option<Capture>,
    pub foreach: Option<String>,
    pub when: Option<(String, Cond)>,
    pub until: Option<(String, Cond)>,
    pub on_failure: OnFailure,
    pub confirm: Option<Confirm>,
    /// Escalate shell commands where the host escalates (default); `false` never.
    pub r#become: bool,
    /// Another account must approve it too (team mode).
    pub second_person: bool,
    pub rollback: Option<Executor>,
    pub guards: Vec<Guard>,
    /// `read_only = true`: the author vouches that the step's shell command only reads.
    pub read_only: bool,
}

impl Step {
    /// Every variable the step reads: its commands (and rollback and guards), its
    /// conditions, its list and its expectation.
    pub fn reads(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |n: String| {
            if !out.contains(&n) {
                out.push(n);
            }
        };
        let execs =
            self.exec
                .iter()
                .chain(self.rollback.iter())
                .chain(self.guards.iter().filter_map(|g| match &g.check {
                    GuardCheck::Exec { exec, .. } => Some(exec),
                    _ => None,
                }));
        for x in execs {
            for t in x.templates() {
                for v in t.vars() {
                    add(v.name);
                }
            }
        }
        for (_, c) in self.when.iter().chain(self.until.iter()) {
            for i in c.idents() {
                add(i);
            }
        }
        if let Some(f) = &self.foreach {
            add(f.clone());
        }
        if let Some(Expect {
            check: ExpectCheck::Compare { var, .. },
            ..
        }) = &self.expect
        {
            add(var.clone());
        }
        out
    }

    /// Steps that change something: they need approval and are refused in read-only mode.
    ///
    /// Every action changes something. A diagnose, check or wait step changes something
    /// unless its command is read-only by the allowlist ([`read_only`]): SQL and Redis by
    /// the statement or command, Docker `logs`, HTTP `GET`/`HEAD`; a shell or docker exec
    /// command only when the runbook vouches for it with `read_only = true`. Manual steps
    /// run nothing.
    pub fn changes(&self) -> bool {
        match self.kind {
            StepKind::Action => true,
            StepKind::Manual => false,
            StepKind::Diagnose | StepKind::Check | StepKind::Wait => {
                self.exec.as_ref().is_some_and(|x| {
                    read_only::executor(x, self.read_only) != read_only::Verdict::ReadOnly
                })
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub selector: Selector,
    pub pick: Pick,
}

#[derive(Debug, Clone)]
pub enum Executor {
    Shell(Template),
    Sql(Template),
    /// A Redis command, in database `db` (`None`: the connection's default, 0).
    Redis {
        args: Vec<Template>,
        db: Option<u32>,
    },
    Docker {
        action: DockerAction,
        command: Option<Template>,
        tail: u32,
    },
    Http {
        method: String,
        url: Template,
        expect_status: Option<u16>,
    },
}

impl Executor {
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::Shell(_) => "shell",
            Executor::Sql(_) => "sql",
            Executor::Redis { .. } => "redis",
            Executor::Docker { .. } => "docker",
            Executor::Http { .. } => "http",
        }
    }

    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Executor::Shell(t) | Executor::Sql(t) => vec![t],
            Executor::Redis { args, .. } => args.iter().collect(),
            Executor::Docker { command, .. } => command.iter().collect(),
            Executor::Http { url, .. } => vec![url],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub check: ExpectCheck,
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ExpectCheck {
    Exit(i32),
    Regex(Regex),
    NotRegex(Regex),
    Compare {
        var: String,
        op: cond::Op,
        value: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub var: String,
    pub source: CaptureSource,
    pub list: bool,
}

#[derive(Debug, Clone)]
pub enum CaptureSource {
    Regex(Regex),
    Column(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Abort,
    Continue,
    Goto(String),
}

#[derive(Debug, Clone)]
pub struct Guard {
    pub target: Option<Target>,
    pub check: GuardCheck,
    pub message: Option<String>,
    /// `read_only = true`: the author vouches that the guard's shell command only reads.
    pub read_only: bool,
}

impl Guard {
    /// True unless the guard's command is read-only by the allowlist or vouched for
    /// (built-in guards only read).
    pub fn changes(&self) -> bool {
        match &self.check {
            GuardCheck::Exec { exec, .. } => {
                read_only::executor(exec, self.read_only) != read_only::Verdict::ReadOnly
            }
            GuardCheck::ReplicaSqlRunning
            | GuardCheck::ReplicaLagBelow(_)
            | GuardCheck::SentinelCkquorum => false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum GuardCheck {
    Exec {
        exec: Executor,
        expect: Option<Expect>,
    },
    ReplicaSqlRunning,
    ReplicaLagBelow(Duration),
    SentinelCkquorum,
}

impl GuardCheck {
    pub fn describe(&self) -> String {
        match self {
            GuardCheck::Exec { exec, .. } => format!("{} guard", exec.kind()),
            GuardCheck::ReplicaSqlRunning => "replica SQL thread running".to_owned(),
            GuardCheck::ReplicaLagBelow(d) => {
                format!("replica lag below {}", humantime::format_duration(*d))
            }
            GuardCheck::SentinelCkquorum => "Sentinel CKQUORUM".to_owned(),
        }
    }
}

/// The shipped runbooks, compiled in (`build.rs` lists every `runbooks/*.toml`).
pub mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_runbooks.rs"));

    /// The text of the built-in runbook `id`.
    pub fn text(id: &str) -> Option<&'static str> {
        BUILTIN
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, t)| *t)
    }

    /// The path a built-in runbook's diagnostics and journal name: `built-in:runbooks/FILE`.
    pub fn path(file: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("{}{file}", super::BUILTIN_PREFIX))
    }
}

/// How a built-in runbook's path starts (its diagnostics say `built-in:runbooks/x.toml:3:1`).
pub const BUILTIN_PREFIX: &str = "built-in:runbooks/";

/// Why a runbook directory is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirKind {
    /// `--runbooks DIR`.
    Flag,
    /// `$OPSDECK_RUNBOOKS`.
    Env,
    /// `./runbooks` in the working directory.
    WorkDir,
    /// `runbook_dirs` in config.toml.
    Config,
    /// `runbooks/` in the user's config directory (`~/.config/opsdeck/runbooks`).
    User,
}

impl DirKind {
    pub fn label(self) -> &'static str {
        match self {
            DirKind::Flag => "--runbooks",
            DirKind::Env => "$OPSDECK_RUNBOOKS",
            DirKind::WorkDir => "./runbooks",
            DirKind::Config => "config.toml runbook_dirs",
            DirKind::User => "user config dir",
        }
    }

    /// Named by the user (a flag, the environment, the config): it must exist. The implicit
    /// ones are searched only when present.
    pub fn explicit(self) -> bool {
        matches!(self, DirKind::Flag | DirKind::Env | DirKind::Config)
    }
}

/// A runbook directory in the search order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceDir {
    pub path: PathBuf,
    pub kind: DirKind,
}

/// Where a loaded runbook came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file in one of the user's directories.
    File { path: PathBuf, kind: DirKind },
    /// Compiled in.
    BuiltIn,
}

impl Origin {
    /// `built-in`, or the file's path.
    pub fn describe(&self) -> String {
        match self {
            Origin::File { path, .. } => path.display().to_string(),
            Origin::BuiltIn => "built-in".to_owned(),
        }
    }
}

/// One runbook id in [`Sources::load_all`]: the file that wins, and what it overrides.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub origin: Origin,
    /// The path diagnostics name (a built-in's is `built-in:runbooks/ID.toml`).
    pub path: PathBuf,
    pub result: Result<Loaded, RunbookError>,
    /// Lower in the search order with the same id: hidden by this one.
    pub overrides: Vec<Origin>,
}

impl Entry {
    /// Loads this entry's file again, checked against `inv` (targets that must exist there).
    pub fn reload(&self, inv: Option<&Inventory>) -> Result<Loaded, RunbookError> {
        match &self.origin {
            Origin::File { path, .. } => load_file(path, inv),
            Origin::BuiltIn => match builtin::text(&self.id) {
                Some(text) => load_str(text, &self.path, inv),
                None => Err(RunbookError::NotFound {
                    name: self.id.clone(),
                    searched: "the built-in runbooks".to_owned(),
                }),
            },
        }
    }
}

/// Where runbooks are looked for, in order; the first file with an id wins, and the
/// compiled-in runbooks come last. Every front end (console, `run`, `runbooks`, `check`,
/// `learn`) loads through this one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub dirs: Vec<SourceDir>,
    /// Whether the compiled-in runbooks are offered (always, except in tests that want one
    /// directory alone).
    pub builtin: bool,
}

impl Sources {
    /// The standard search order: `--runbooks DIR` (else `$OPSDECK_RUNBOOKS`), `./runbooks`
    /// if present, the config's `runbook_dirs`, `~/.config/opsdeck/runbooks` if present, then
    /// the built-in runbooks.
    pub fn standard(flag: Option<&Path>, config_dirs: &[PathBuf]) -> Sources {
        let mut dirs = Vec::new();
        if let Some(f) = flag {
            dirs.push(SourceDir {
                path: f.to_path_buf(),
                kind: DirKind::Flag,
            });
        } else if let Some(e) = std::env::var_os("OPSDECK_RUNBOOKS").filter(|e| !e.is_empty()) {
            dirs.push(SourceDir {
                path: PathBuf::from(e),
                kind: DirKind::Env,
            });
        }
        dirs.push(SourceDir {
            path: PathBuf::from("runbooks"),
            kind: DirKind::WorkDir,
        });
        for d in config_dirs {
            dirs.push(SourceDir {
                path: d.clone(),
                kind: DirKind::Config,
            });
        }
        if let Some(d) = crate::config::dir() {
            dirs.push(SourceDir {
                path: d.join("runbooks"),
                kind: DirKind::User,
            });
        }
        let mut s = Sources {
            dirs,
            builtin: true,
        };
        s.dedup();
        s
    }

    /// One directory alone, without the built-in runbooks.
    pub fn only(dir: &Path) -> Sources {
        Sources {
            dirs: vec![SourceDir {
                path: dir.to_path_buf(),
                kind: DirKind::Flag,
            }],
            builtin: false,
        }
    }

    /// The same directory named twice (`$OPSDECK_RUNBOOKS=./runbooks`) is searched once, under
    /// its first name.
    fn dedup(&mut self) {
        let mut seen: Vec<PathBuf> = Vec::new();
        self.dirs.retain(|d| {
            let key = std::fs::canonicalize(&d.path).unwrap_or_else(|_| d.path.clone());
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        });
    }

    /// The directories searched now: the explicit ones, and the implicit ones that exist.
    /// An explicit directory that cannot be read is an error (a typo must not silently fall
    /// back to the built-in runbooks).
    pub fn present_dirs(&self) -> Result<Vec<&SourceDir>, RunbookError> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if d.path.is_dir() {
                out.push(d);
            } else if d.kind.explicit() {
                return Err(RunbookError::Dir {
                    path: d.path.clone(),
                    kind: d.kind,
                });
            }
        }
        Ok(out)
    }

    /// Loads runbook `name`: a path (it has an extension or a directory part), else the id
    /// looked up in the search order, the built-in one last.
    pub fn find(&self, name: &str, inv: Option<&Inventory>) -> Result<Loaded, RunbookError> {
        let p = Path::new(name);
        if p.extension().is_some() || p.components().count() > 1 {
            return load_file(p, inv);
        }
        for d in self.present_dirs()? {
            let path = d.path.join(format!("{name}.toml"));
            if path.is_file() {
                return load_file(&path, inv);
            }
        }
        if self.builtin
            && let Some((_, file, text)) = builtin::BUILTIN.iter().find(|(i, _, _)| *i == name)
        {
            return load_str(text, &builtin::path(file), inv);
        }
        Err(RunbookError::NotFound {
            name: name.to_owned(),
            searched: self.describe_search(),
        })
    }

    /// Where [`Sources::find`] looks, for error messages.
    pub fn describe_search(&self) -> String {
        let mut parts: Vec<String> = self
            .dirs
            .iter()
            .map(|d| format!("{} ({})", d.path.display(), d.kind.label()))
            .collect();
        if self.builtin {
            parts.push("the built-in runbooks".to_owned());
        }
        parts.join(", ")
    }

    /// Every runbook, one entry per id, sorted by id: the first file in the search order wins
    /// and names what it overrides.
    pub fn load_all(&self, inv: Option<&Inventory>) -> Result<Vec<Entry>, RunbookError> {
        let mut found: Vec<(String, Origin, PathBuf)> = Vec::new();
        for d in self.present_dirs()? {
            let entries = std::fs::read_dir(&d.path).map_err(|source| RunbookError::Read {
                path: d.path.clone(),
                source,
            })?;
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                let id = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                found.push((
                    id,
                    Origin::File {
                        path: p.clone(),
                        kind: d.kind,
                    },
                    p,
                ));
            }
        }
        if self.builtin {
            for (id, file, _) in builtin::BUILTIN {
                found.push(((*id).to_owned(), Origin::BuiltIn, builtin::path(file)));
            }
        }
        let mut entries: Vec<Entry> = Vec::new();
        for (id, origin, path) in found {
            if let Some(e) = entries.iter_mut().find(|e| e.id == id) {
                e.overrides.push(origin);
                continue;
            }
            let result = match &origin {
                Origin::File { path, .. } => load_file(path, inv),
                Origin::BuiltIn => match builtin::text(&id) {
                    Some(text) => load_str(text, &path, inv),
                    None => continue,
                },
            };
            entries.push(Entry {
                id,
                origin,
                path,
                result,
                overrides: Vec::new(),
            });
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(entries)
    }

    /// The runbooks that load (the console offers these; `check` reports the others).
    pub fn load_ok(&self, inv: Option<&Inventory>) -> Result<Vec<Runbook>, RunbookError> {
        Ok(self
            .load_all(inv)?
            .into_iter()
            .filter_map(|e| e.result.ok().map(|(rb, _)| rb))
            .collect())
    }
}

/// Finds a runbook by id (file stem) or path in one directory.
pub fn find(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some() || p.components().count() > 1 {
        p.to_path_buf()
    } else {
        dir.join(format!("{name}.toml"))
    }
}
