//! Runbooks: codified procedures run as guided, confirmable step sequences.
//!
//! - [`model`]: the TOML file as written; [`validate`] turns it into a checked [`Runbook`].
//! - [`engine`]: a pure state machine that decides what runs next (no I/O, no clock of its own).
//! - [`executor`]: carries out the engine's commands over transports and clients.
//! - [`journal`]: the JSON Lines record of every run, resume and per-target locks.

pub mod cond;
pub mod driver;
pub mod engine;
pub mod executor;
pub mod journal;
pub mod lock;
pub mod model;
pub mod read_only;
pub mod template;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

pub use cond::{Cond, Health, HealthState};
pub use model::{Confirm, DockerAction, Pick, Severity, StepKind};
pub use template::{Quoting, Template, Value, Vars};
pub use validate::{Diagnostic, RunbookError, load_dir, load_file, load_str};

use crate::inventory::Selector;

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
    /// The lab drill whose fault this runbook fixes (learn mode pairs them).
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
    Redis(Vec<Template>),
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
            Executor::Redis(_) => "redis",
            Executor::Docker { .. } => "docker",
            Executor::Http { .. } => "http",
        }
    }

    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Executor::Shell(t) | Executor::Sql(t) => vec![t],
            Executor::Redis(args) => args.iter().collect(),
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

/// The default runbook directory: `$OPSDECK_RUNBOOKS`, else `./runbooks`.
pub fn default_dir() -> PathBuf {
    std::env::var_os("OPSDECK_RUNBOOKS").map_or_else(|| PathBuf::from("runbooks"), PathBuf::from)
}

/// Finds a runbook by id (file stem) or path.
pub fn find(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some() || p.components().count() > 1 {
        p.to_path_buf()
    } else {
        dir.join(format!("{name}.toml"))
    }
}
