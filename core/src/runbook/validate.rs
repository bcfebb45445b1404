//! Loading and checking runbook files: every problem is reported with file:line:col and the
//! step it belongs to, all at once, never a panic.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::cond::{Cond, HealthState, Op};
use super::model::{
    self, CaptureDef, DockerAction, ExecDef, ExpectDef, RunbookFile, StepDef, StepKind, TargetDef,
};
use super::read_only::{self, Verdict};
use super::template::{Quoting, Template, valid_name};
use super::{
    Capture, CaptureSource, Executor, Expect, ExpectCheck, Guard, GuardCheck, Input, OnFailure,
    Runbook, Step, Target, Trigger,
};
use crate::inventory::{Inventory, Located, Selector};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Variables every step can use without defining them.
pub const BUILTINS: &[&str] = &[
    "host",
    "host.name",
    "host.tier",
    "host.address",
    "mysql.address",
    "mysql.port",
    "mysql.database",
    "mysql.defaults_file",
    "redis.address",
    "redis.port",
    "redis.master_name",
    "redis.restart",
    "host.mounts",
    "php_fpm.status_url",
    "php_fpm.restart",
    "nginx.reload",
    "nginx.upstream_file",
    "app.env",
    "haproxy.socket",
    "haproxy.stats_url",
    "queues",
    "queue.name",
    "queue.redis_host",
    "processes",
    "process.restart",
    "run.id",
    "runbook.id",
    "operator",
];

const FORMAT_HINT: &str = "the runbook format is documented in runbooks/README.md";

/// One problem (or, with `warning`, a risk) in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub warning: bool,
    pub step: Option<String>,
    pub located: Located,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.located;
        write!(f, "{}:{}:{}: ", l.file.display(), l.line, l.col)?;
        if self.warning {
            f.write_str("warning: ")?;
        }
        if let Some(s) = &self.step {
            write!(f, "step `{s}`: ")?;
        }
        f.write_str(&l.message)?;
        if let Some(h) = &l.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("cannot read runbook {}: {source}\n  hint: check the path, or list runbooks with `opsdeck runbooks`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    #[error("runbook directory {} (from {}) is not a directory\n  hint: create it, or correct {}", path.display(), kind.label(), kind.label())]
    Dir { path: PathBuf, kind: super::DirKind },
    #[error(
        "no runbook {name:?}: looked in {searched}\n  hint: `opsdeck runbooks` lists the runbooks; give a path to run a file elsewhere"
    )]
    NotFound { name: String, searched: String },
}

/// A loaded runbook and the warnings it raised.
pub type Loaded = (Runbook, Vec<Diagnostic>);

pub fn load_file(path: &Path, inv: Option<&Inventory>) -> Result<Loaded, RunbookError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunbookError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, inv)
}

/// One file's result in [`load_dir`].
pub type LoadedFile = (PathBuf, Result<Loaded, RunbookError>);

/// Every `*.toml` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path, inv: Option<&Inventory>) -> Result<Vec<LoadedFile>, RunbookError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RunbookError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let r = load_file(&p, inv);
            (p, r)
        })
        .collect())
}

/// Parses and checks runbook text. With an inventory, targets are also checked against it.
pub fn load_str(text: &str, path: &Path, inv: Option<&Inventory>) -> Result<Loaded, RunbookError> {
    let file: RunbookFile = toml::from_str(text).map_err(|e| {
        let hint = if e.message().starts_with("unknown field") {
            format!("remove or correct the field; {FORMAT_HINT}")
        } else if e.message().contains("unknown variant") {
            "use one of the values listed above".to_owned()
        } else {
            format!("fix the TOML at this position; {FORMAT_HINT}")
        };
        RunbookError::Invalid(vec![Diagnostic {
            warning: false,
            step: None,
            located: Located::at(path, text, e.span(), e.message().trim_end().to_owned())
                .hint(hint),
        }])
    })?;
    let hash = format!("{:x}", Sha256::digest(text.as_bytes()));
    let mut v = Validator {
        path,
        text,
        inv,
        diags: Vec::new(),
        step: None,
    };
    let rb = v.runbook(file, hash);
    if v.diags.iter().any(|d| !d.warning) {
        return Err(RunbookError::Invalid(
            v.diags.into_iter().filter(|d| !d.warning).collect(),
        ));
    }
    let mut rb = rb;
    rb.source = Some(path.to_path_buf());
    Ok((rb, v.diags))
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    inv: Option<&'a Inventory>,
    diags: Vec<Diagnostic>,
    step: Option<String>,
}

impl Validator<'_> {
    fn push(&mut self, warning: bool, span: Range<usize>, msg: String, hint: Option<&str>) {
        let mut located = Located::at(self.path, self.text, Some(span), msg);
        if let Some(h) = hint {
            located = located.hint(h);
        }
        self.diags.push(Diagnostic {
            warning,
            step: self.step.clone(),
            located,
        });
    }

    fn err(&mut self, span: Range<usize>, msg: impl Into<String>, hint: Option<&str>) {
        self.push(false, span, msg.into(), hint);
    }

    fn warn(&mut self, span: Range<usize>, msg: impl Into<String>, hint: Option<&str>) {
        self.push(true, span, msg.into(), hint);
    }

    fn duration(&mut self, d: &Option<Spanned<String>>, field: &str) -> Option<Duration> {
        let d = d.as_ref()?;
        match humantime::parse_duration(d.get_ref()) {
            Ok(x) => Some(x),
            Err(e) => {
                self.err(
                    d.span(),
                    format!("invalid {field} duration {:?}: {e}", d.get_ref()),
                    Some("write e.g. \"30s\", \"500ms\", \"5m\""),
                );
                None
            }
        }
    }

    fn regex(&mut self, r: &Spanned<String>) -> Option<Regex> {
        match Regex::new(r.get_ref()) {
            Ok(x) => Some(x),
            Err(e) => {
                let msg = e.to_string().lines().last().unwrap_or("").to_owned();
                self.err(
                    r.span(),
                    format!("invalid regex {:?}: {msg}", r.get_ref()),
                    Some("regex syntax: https://docs.rs/regex/latest/regex/#syntax"),
                );
                None
            }
        }
    }

    fn runbook(&mut self, f: RunbookFile, hash: String) -> Runbook {
        let id = f.id.get_ref().clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            self.err(
                f.id.span(),
                format!("runbook id {id:?} must be lowercase letters, digits and `-`"),
                Some("use the file name without .toml, e.g. \"db-failover\""),
            );
        } else if let Some(stem) = self.path.file_stem().and_then(|s| s.to_str())
            && stem != id
        {
            self.err(
                f.id.span(),
                format!("runbook id {id:?} differs from its file name {stem:?}"),
                Some("`opsdeck run NAME` finds runbooks by file name: make them equal"),
            );
        }
        let rto = self.duration(&f.rto, "rto");
        if let Some(d) = &f.drill
            && !super::drills::DRILLS.iter().any(|(n, _)| n == d.get_ref())
        {
            self.err(
                d.span(),
                format!(
                    "unknown drill {:?}; the drills are: {}",
                    d.get_ref(),
                    super::drills::DRILLS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("name the drill whose fault this runbook fixes (`opsdeck drill list`)"),
            );
        }
        let mut triggers = Vec::new();
        for t in &f.triggers {
            let tr = t.get_ref();
            let check = tr.check.get_ref();
            match HealthState::parse(tr.state.get_ref()) {
                Some(state) if state != HealthState::Ok => triggers.push(Trigger {
                    check: check.clone(),
                    state,
                }),
                _ => self.err(
                    tr.state.span(),
                    format!(
                        "trigger state {:?} is not one of warning, critical, down, unknown",
                        tr.state.get_ref()
                    ),
                    None,
                ),
            }
            // Only a last `*` is a pattern (char-wise: the check may hold any text).
            let body = check.strip_suffix('*').unwrap_or(check);
            if check.is_empty() || body.contains('*') {
                self.err(
                    tr.check.span(),
                    format!("trigger check {check:?}: use a check id, or a prefix ending in `*`"),
                    None,
                );
            }
        }
        let mut defined: HashSet<String> = super::validate::BUILTINS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        defined.insert("runbook.id".to_owned());
        let mut inputs = Vec::new();
        // (span, input, variable) of computed defaults, checked once every capture is known.
        let mut computed_defaults = Vec::new();
        for (name, def) in &f.inputs {
            let d = def.get_ref();
            if !valid_name(name) || name.contains('.') {
                self.err(
                    def.span(),
                    format!("input name {name:?} must be letters, digits and `_`"),
                    None,
                );
            }
            let pattern = d.pattern.as_ref().and_then(|p| {
                // Anchored: the whole value must match.
                let anchored = Spanned::new(p.span(), format!("^(?:{})$", p.get_ref()));
                self.regex(&anchored)
            });
            if let (Some(p), Some(default)) = (&pattern, &d.default)
                && !p.is_match(default)
            {
                self.err(
                    def.span(),
                    format!("input `{name}`: default {default:?} does not match its pattern"),
                    None,
                );
            }
            if d.secret
                && let Some(default) = &d.default
                && !default.is_empty()
            {
                self.warn(
                    def.span(),
                    format!("secret input `{name}` has a default: it sits in the runbook file in clear"),
                    Some("leave the default out and pass it with --var, or prompt for it in the console"),
                );
            }
            let default_from = d.default_from.as_ref().and_then(|t| {
                match super::DefaultFrom::parse(t.get_ref()) {
                    Ok(f) => Some((t.span(), f)),
                    Err(e) => {
                        self.err(
                            t.span(),
                            format!("input `{name}`: default_from {e}"),
                            Some("e.g. default_from = \"percentile(idle_times, 20)\" over a list a step captures"),
                        );
                        None
                    }
                }
            });
            if let Some((span, f)) = &default_from {
                computed_defaults.push((span.clone(), name.clone(), f.var().to_owned()));
            }
            defined.insert(name.clone());
            inputs.push(Input {
                name: name.clone(),
                default_from: default_from.map(|(_, f)| f),
                default: d.default.clone(),
                description: d.description.clone(),
                pattern,
                required: d.required,
                secret: d.secret,
            });
        }
        if f.steps.is_empty() {
            self.err(
                0..0,
                "the runbook has no steps",
                Some("add [[steps]] tables"),
            );
        }
        let ids: Vec<String> = f
            .steps
            .iter()
            .map(|s| s.get_ref().id.get_ref().clone())
            .collect();
        let mut seen = HashSet::new();
        let mut steps = Vec::new();
        for s in &f.steps {
            let sid = s.get_ref().id.get_ref().clone();
            self.step = Some(sid.clone());
            if !seen.insert(sid.clone()) {
                self.err(
                    s.get_ref().id.span(),
                    format!("duplicate step id {sid:?}"),
                    Some("step ids must be unique: goto and journals refer to them"),
                );
            }
            if let Some(step) = self.step_def(s, &ids, &mut defined) {
                steps.push(step);
            }
            self.step = None;
        }
        let drill = f.drill.as_ref().map(|d| d.get_ref().clone());
        for (span, input, var) in computed_defaults {
            if !defined.contains(&var) {
                self.err(
                    span,
                    format!("input `{input}`: default_from reads `{var}`, which no step captures"),
                    Some("capture it in a diagnose step before the first step that uses the input"),
                );
            }
        }
        Runbook {
            id,
            locks: f.locks,
            drill,
            title: f.title,
            summary: f.summary,
            severity: f.severity,
            rto,
            tiers: f.tiers,
            tags: f.tags,
            symptoms: f.symptoms,
            triggers,
            inputs,
            steps,
            source: None,
            hash,
        }
    }

    fn target(&mut self, t: &Spanned<TargetDef>) -> Option<Target> {
        let def = t.get_ref();
        let selector: Selector = match def.selector.parse() {
            Ok(s) => s,
            Err(e) => {
                self.err(t.span(), format!("bad target selector: {e}"), None);
                return None;
            }
        };
        if let Some(inv) = self.inv {
            match selector.resolve(inv) {
                Ok(hosts) if hosts.is_empty() => self.err(
                    t.span(),
                    format!(
                        "target {:?} selects no host in inventory {:?}",
                        def.selector, inv.name
                    ),
                    Some("`opsdeck inventory` lists tiers, roles and hosts"),
                ),
                Ok(hosts) if def.pick == model::Pick::One && hosts.len() > 1 => self.err(
                    t.span(),
                    format!(
                        "target {:?} with pick = \"one\" selects {} hosts in inventory {:?}",
                        def.selector,
                        hosts.len(),
                        inv.name
                    ),
                    Some("narrow the selector, or use pick = \"first\" or \"all\""),
                ),
                Ok(_) => {}
                Err(e) => self.err(
                    t.span(),
                    format!("target {:?} cannot be satisfied: {e}", def.selector),
                    None,
                ),
            }
        }
        Some(Target {
            selector,
            pick: def.pick,
        })
    }

    /// Parses a template given as the TOML string at `span`; `q` says where its values go, so
    /// that a placeholder written where quoting cannot protect it is refused at its position.
    fn template(
        &mut self,
        span: &Range<usize>,
        src: &str,
        defined: &HashSet<String>,
        q: Quoting,
    ) -> Option<Template> {
        match Template::parse(src) {
            Ok(t) => {
                for m in t.misplaced(q) {
                    let at = self.string_pos(span, src, m.offset);
                    let hint = match q {
                        Quoting::Sql => format!(
                            "write {{{{{0}}}}} bare, without quotes: opsdeck sends it as a bound parameter, never as SQL text (inside a pattern: CONCAT('%', {{{{{0}}}}}, '%'))",
                            m.name
                        ),
                        _ => format!(
                            "write {{{{{}}}}} bare: opsdeck quotes it as one shell word",
                            m.name
                        ),
                    };
                    self.err(
                        at,
                        format!(
                            "`{{{{{}}}}}` is written {}: a value could break out of the quoting and run as code",
                            m.name, m.place
                        ),
                        Some(&hint),
                    );
                }
                for u in t.vars() {
                    let known = defined.contains(&u.name)
                        || u.name
                            .strip_suffix(".count")
                            .is_some_and(|b| defined.contains(b));
                    if !known {
                        self.err(
                            span.clone(),
                            format!("undefined variable `{{{{{}}}}}`", u.name),
                            Some("define it under [inputs], capture it in an earlier step, or use a builtin (host, host.address, mysql.port, redis.port, item, ...)"),
                        );
                    }
                    if u.raw {
                        self.warn(
                            span.clone(),
                            format!("`{{{{raw {}}}}}` is inserted unquoted", u.name),
                            Some("only use raw for values you fully control"),
                        );
                    }
                }
                Some(t)
            }
            Err(e) => {
                let at = self.string_pos(span, src, e.offset);
                self.err(at, format!("bad template: {e}"), None);
                None
            }
        }
    }

    /// Exactly one executor among the given optional fields.
    #[allow(clippy::too_many_arguments)] // one per executor field, as the file has them
    fn executor(
        &mut self,
        span: &Range<usize>,
        shell: &Option<Spanned<String>>,
        sql: &Option<Spanned<String>>,
        redis: &Option<Spanned<Vec<String>>>,
        docker: &Option<Spanned<model::DockerActionDef>>,
        http: &Option<Spanned<model::HttpActionDef>>,
        defined: &HashSet<String>,
    ) -> Result<Option<Executor>, ()> {
        let count = usize::from(shell.is_some())
            + usize::from(sql.is_some())
            + usize::from(redis.is_some())
            + usize::from(docker.is_some())
            + usize::from(http.is_some());
        if count > 1 {
            self.err(
                span.clone(),
                "more than one executor: use exactly one of shell, sql, redis, docker, http",
                Some("split it into two steps"),
            );
            return Err(());
        }
        if let Some(s) = shell {
            return self
                .template(&s.span(), s.get_ref(), defined, Quoting::Shell)
                .map(|t| Some(Executor::Shell(t)))
                .ok_or(());
        }
        if let Some(s) = sql {
            return self
                .template(&s.span(), s.get_ref(), defined, Quoting::Sql)
                .map(|t| Some(Executor::Sql(t)))
                .ok_or(());
        }
        if let Some(r) = redis {
            if r.get_ref().is_empty() {
                self.err(
                    r.span(),
                    "empty redis command",
                    Some("e.g. redis = [\"PING\"]"),
                );
                return Err(());
            }
            let mut args = Vec::new();
            for a in r.get_ref() {
                args.push(
                    self.template(&r.span(), a, defined, Quoting::Arg)
                        .ok_or(())?,
                );
            }
            return Ok(Some(Executor::Redis { args, db: None }));
        }
        if let Some(d) = docker {
            let def = d.get_ref();
            let command = match (&def.command, def.action) {
                (Some(c), DockerAction::Exec) => Some(
                    self.template(&c.span(), c.get_ref(), defined, Quoting::Shell)
                        .ok_or(())?,
                ),
                (None, DockerAction::Exec) => {
                    self.err(d.span(), "docker exec needs a `command`", None);
                    return Err(());
                }
                (Some(_), _) => {
                    self.err(d.span(), "`command` is only for action = \"exec\"", None);
                    return Err(());
                }
                (None, _) => None,
            };
            return Ok(Some(Executor::Docker {
                action: def.action,
                command,
                tail: def.tail.unwrap_or(100),
            }));
        }
        if let Some(h) = http {
            let def = h.get_ref();
            let method = def.method.to_ascii_uppercase();
            if !["GET", "HEAD", "POST", "PUT", "DELETE"].contains(&method.as_str()) {
                self.err(
                    h.span(),
                    format!("http method {:?} is not supported", def.method),
                    Some("use GET, HEAD, POST, PUT or DELETE"),
                );
            }
            let url = self
                .template(&h.span(), &def.url, defined, Quoting::Url)
                .ok_or(())?;
            if !def.url.starts_with("http://")
                && !def.url.starts_with("https://")
                && !def.url.starts_with("{{")
            {
                self.err(
                    h.span(),
                    format!("url {:?} must start with http:// or https://", def.url),
                    None,
                );
            }
            return Ok(Some(Executor::Http {
                method,
                url,
                expect_status: def.expect_status,
            }));
        }
        Ok(None)
    }

    fn expect(&mut self, e: &Spanned<ExpectDef>, defined: &HashSet<String>) -> Option<Expect> {
        let d = e.get_ref();
        let count = usize::from(d.exit.is_some())
            + usize::from(d.regex.is_some())
            + usize::from(d.not_regex.is_some())
            + usize::from(d.capture.is_some());
        if count != 1 {
            self.err(
                e.span(),
                "expect needs exactly one of exit, regex, not_regex, or capture + op + value",
                Some(
                    "e.g. expect = { exit = 0 } or { capture = \"used\", op = \"<\", value = 90 }",
                ),
            );
            return None;
        }
        let check = if let Some(x) = d.exit {
            ExpectCheck::Exit(x)
        } else if let Some(r) = &d.regex {
            ExpectCheck::Regex(self.regex(r)?)
        } else if let Some(r) = &d.not_regex {
            ExpectCheck::NotRegex(self.regex(r)?)
        } else {
            let var = d.capture.as_ref()?;
            if !defined.contains(var.get_ref()) {
                self.err(
                    var.span(),
                    format!(
                        "expect compares `{}`, which no earlier step or this step captures",
                        var.get_ref()
                    ),
                    None,
                );
            }
            let op = match d.op.as_ref().map(|o| (o, Op::parse(o.get_ref()))) {
                Some((_, Some(op))) => op,
                Some((o, None)) => {
                    self.err(
                        o.span(),
                        format!("{:?} is not an operator", o.get_ref()),
                        Some("use < <= > >= == !="),
                    );
                    return None;
                }
                None => {
                    self.err(e.span(), "a capture comparison needs `op`", None);
                    return None;
                }
            };
            let Some(value) = d.value else {
                self.err(
                    e.span(),
                    "a capture comparison needs a numeric `value`",
                    None,
                );
                return None;
            };
            ExpectCheck::Compare {
                var: var.get_ref().clone(),
                op,
                value,
            }
        };
        if d.op.is_some() && d.capture.is_none() {
            self.err(e.span(), "`op` only goes with `capture`", None);
        }
        Some(Expect {
            check,
            message: d.message.clone(),
        })
    }

    fn capture(&mut self, c: &Spanned<CaptureDef>, exec: Option<&Executor>) -> Option<Capture> {
        let d = c.get_ref();
        let var = d.var.get_ref();
        if !valid_name(var) || var.contains('.') {
            self.err(
                d.var.span(),
                format!("capture variable {var:?} must be letters, digits and `_`"),
                None,
            );
        }
        if BUILTINS.contains(&var.as_str()) || var == "item" {
            self.err(
                d.var.span(),
                format!("capture variable {var:?} would hide a builtin"),
                None,
            );
        }
        let source = match (&d.regex, &d.column) {
            (Some(r), None) => CaptureSource::Regex(self.regex(r)?),
            (None, Some(col)) => {
                if !matches!(exec, Some(Executor::Sql(_))) {
                    self.err(
                        c.span(),
                        "`column` captures only work on sql steps",
                        Some("use `regex` for other output"),
                    );
                }
                CaptureSource::Column(col.clone())
            }
            _ => {
                self.err(
                    c.span(),
                    "capture needs exactly one of `regex` or `column`",
                    None,
                );
                return None;
            }
        };
        Some(Capture {
            var: var.clone(),
            source,
            list: d.list,
        })
    }

    /// `approval = "second-person"`, on changing steps only.
    fn approval(&mut self, d: &StepDef) -> bool {
        let Some(a) = &d.approval else {
            return false;
        };
        if a.get_ref() != "second-person" {
            self.err(
                a.span(),
                format!("approval = {:?} is not known", a.get_ref()),
                Some("use approval = \"second-person\" (another account approves, team mode)"),
            );
            return false;
        }
        if !matches!(d.kind, StepKind::Action | StepKind::Manual) {
            self.err(
                a.span(),
                "a second person approves changes: only action and manual steps take approval",
                Some("remove it, or make the step an action"),
            );
            return false;
        }
        true
    }

    fn cond(&mut self, c: &Spanned<String>, defined: &HashSet<String>) -> Option<(String, Cond)> {
        match Cond::parse(c.get_ref()) {
            Ok(cond) => {
                for id in cond.idents() {
                    let ok = id.starts_with("health.")
                        || HealthState::parse(&id).is_some()
                        || defined.contains(&id)
                        || id
                            .strip_suffix(".count")
                            .is_some_and(|b| defined.contains(b));
                    if !ok {
                        self.err(
                            c.span(),
                            format!("condition {:?} uses `{id}`, which is not defined", c.get_ref()),
                            Some("use an input, a variable captured by an earlier step, health.CHECK_ID, or quote a string"),
                        );
                    }
                }
                Some((c.get_ref().clone(), cond))
            }
            Err(e) => {
                let span = self.string_pos(&c.span(), c.get_ref(), e.offset);
                self.err(
                    span,
                    format!("bad condition {:?}: {e}", c.get_ref()),
                    Some("e.g. `used_pct > 90`, `health.mysql.connections >= warning`, `ids.count == 0`"),
                );
                None
            }
        }
    }

    #[allow(clippy::many_single_char_names)]
    fn step_def(
        &mut self,
        s: &Spanned<StepDef>,
        ids: &[String],
        defined: &mut HashSet<String>,
    ) -> Option<Step> {
        let span = s.span();
        let d = s.get_ref();
        let id = d.id.get_ref().clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.err(
                d.id.span(),
                format!("step id {id:?} must be letters, digits, `-` and `_`"),
                None,
            );
        }
        let target = d.target.as_ref().and_then(|t| self.target(t));
        // `item` exists only inside a foreach step.
        let mut scope = defined.clone();
        if let Some(fe) = &d.foreach {
            if defined.contains(fe.get_ref()) {
                scope.insert("item".to_owned());
            } else {
                self.err(
                    fe.span(),
                    format!("foreach names `{}`, which no earlier step captures", fe.get_ref()),
                    Some("capture a list first: capture = { var = \"ids\", column = \"Id\", list = true }"),
                );
            }
        }
        let mut exec = self
            .executor(
                &span, &d.shell, &d.sql, &d.redis, &d.docker, &d.http, &scope,
            )
            .ok()?;
        if let Some(n) = &d.db {
            match &mut exec {
                Some(Executor::Redis { db, .. }) if *n.get_ref() <= 255 => *db = Some(*n.get_ref()),
                Some(Executor::Redis { .. }) => self.err(
                    n.span(),
                    format!(
                        "db = {}: Redis database indexes go from 0 to 255",
                        n.get_ref()
                    ),
                    None,
                ),
                _ => self.err(
                    n.span(),
                    "`db` selects a Redis database: it needs a `redis` command on the step",
                    Some("e.g. redis = [\"FLUSHDB\"] with db = 2"),
                ),
            }
        }
        let when = d.when.as_ref().and_then(|c| self.cond(c, &scope));
        let capture = d
            .capture
            .as_ref()
            .and_then(|c| self.capture(c, exec.as_ref()));
        if let Some(c) = &capture {
            scope.insert(c.var.clone());
        }
        let expect = d.expect.as_ref().and_then(|e| self.expect(e, &scope));
        let until = d.until.as_ref().and_then(|c| self.cond(c, &scope));
        let timeout = self.duration(&d.timeout, "timeout");
        let budget = self.duration(&d.budget, "budget");
        let interval = self.duration(&d.interval, "interval");
        let on_failure = match d.on_failure.as_ref() {
            None => OnFailure::Abort,
            Some(o) => match o.get_ref().as_str() {
                "abort" => OnFailure::Abort,
                "continue" => OnFailure::Continue,
                g => match g.strip_prefix("goto:") {
                    Some(t) if ids.iter().any(|i| i == t.trim()) => {
                        OnFailure::Goto(t.trim().to_owned())
                    }
                    Some(t) => {
                        self.err(
                            o.span(),
                            format!("goto names unknown step {:?}", t.trim()),
                            Some(&format!("steps: {}", ids.join(", "))),
                        );
                        OnFailure::Abort
                    }
                    None => {
                        self.err(
                            o.span(),
                            format!("on_failure {g:?} is not abort, continue or goto:STEP"),
                            None,
                        );
                        OnFailure::Abort
                    }
                },
            },
        };
        let rollback = match &d.rollback {
            Some(r) => {
                let ExecDef {
                    shell,
                    sql,
                    redis,
                    docker,
                    http,
                } = r.get_ref();
                match self.executor(&r.span(), shell, sql, redis, docker, http, &scope) {
                    Ok(Some(x)) => Some(x),
                    Ok(None) => {
                        self.err(
                            r.span(),
                            "rollback needs an executor (shell, sql, redis, docker or http)",
                            None,
                        );
                        None
                    }
                    Err(()) => None,
                }
            }
            None => None,
        };
        let mut guards = Vec::new();
        for g in &d.guards {
            if let Some(guard) = self.guard(g, &scope) {
                guards.push(guard);
            }
        }

        // Rules by kind.
        match d.kind {
            StepKind::Action => {
                if d.confirm.is_none() {
                    self.err(
                        span.clone(),
                        "action step without `confirm`",
                        Some("add confirm = \"yes\", or confirm = \"typed\" for destructive steps (the operator types the host name)"),
                    );
                }
                if exec.is_none() {
                    self.err(
                        span.clone(),
                        "action step without an executor",
                        Some("use shell, sql, redis, docker or http; or kind = \"manual\""),
                    );
                }
            }
            StepKind::Manual => {
                if exec.is_some() {
                    self.err(
                        span.clone(),
                        "manual steps have no executor: a person carries them out",
                        Some("make it an action step, or remove the executor"),
                    );
                }
            }
            StepKind::Wait => {
                // Waiting on health alone needs nothing to run: the probes measure.
                let on_health = until
                    .as_ref()
                    .is_some_and(|(_, c)| c.idents().iter().any(|i| i.starts_with("health.")));
                if exec.is_none() && !on_health {
                    self.err(span.clone(), "wait step without an executor to measure with", Some("e.g. shell = \"df --output=pcent / | tail -1\" with a capture and until = \"used < 90\", or wait on health: until = \"health.redis.ping == ok\""));
                }
                if until.is_none() {
                    self.err(
                        span.clone(),
                        "wait step without `until`",
                        Some(
                            "e.g. until = \"health.redis.ping == ok\" or until = \"used_pct < 90\"",
                        ),
                    );
                }
            }
            StepKind::Check => {
                let http_status = matches!(
                    exec,
                    Some(Executor::Http {
                        expect_status: Some(_),
                        ..
                    })
                );
                if expect.is_none() && exec.is_some() && !http_status {
                    self.err(
                        span.clone(),
                        "check step without `expect`",
                        Some("e.g. expect = { exit = 0 }"),
                    );
                }
            }
            StepKind::Diagnose => {}
        }
        if d.kind != StepKind::Action {
            if d.confirm.is_some() && d.kind != StepKind::Manual {
                self.warn(span.clone(), "`confirm` only applies to action steps", None);
            }
            if rollback.is_some() {
                self.err(
                    span.clone(),
                    "`rollback` only applies to action steps",
                    None,
                );
            }
            if !guards.is_empty() {
                self.err(span.clone(), "`guards` only apply to action steps", None);
            }
            if let Some(x) = &exec
                && d.kind != StepKind::Manual
            {
                let what = format!("{} step", d.kind.as_str());
                let at = ExecAt {
                    span: exec_span(
                        &span,
                        &[
                            d.shell.as_ref().map(Spanned::span),
                            d.sql.as_ref().map(Spanned::span),
                            d.redis.as_ref().map(Spanned::span),
                            d.docker.as_ref().map(Spanned::span),
                            d.http.as_ref().map(Spanned::span),
                        ],
                    ),
                    sql: d.sql.as_ref(),
                };
                self.read_only_check(&what, &at, x, d.read_only.as_ref());
            }
        }
        if let Some(v) = &d.read_only
            && exec.is_none()
            && matches!(
                d.kind,
                StepKind::Diagnose | StepKind::Check | StepKind::Wait
            )
        {
            self.err(
                v.span(),
                "`read_only` vouches for a shell command, and this step runs none",
                Some("remove `read_only`"),
            );
        }
        if let Some(v) = &d.read_only
            && matches!(d.kind, StepKind::Action | StepKind::Manual)
        {
            self.err(
                v.span(),
                format!(
                    "`read_only` only applies to diagnose, check and wait steps; an {} step {}",
                    d.kind.as_str(),
                    if d.kind == StepKind::Action {
                        "changes something by definition"
                    } else {
                        "runs nothing"
                    }
                ),
                Some("remove `read_only`"),
            );
        }
        if exec.is_some() && d.target.is_none() && !matches!(exec, Some(Executor::Http { .. })) {
            self.err(
                span.clone(),
                "step has an executor but no target",
                Some("add target = { selector = \"db:primary\" }"),
            );
        }
        if let (Some(t), Some(x), Some(inv)) = (&target, &exec, self.inv) {
            self.service_check(&span, t, x, inv);
        }
        if let Some(c) = &capture {
            defined.insert(c.var.clone());
        }
        Some(Step {
            id,
            title: d.title.clone(),
            kind: d.kind,
            target,
            exec,
            timeout: timeout.unwrap_or(if d.kind == StepKind::Wait {
                DEFAULT_WAIT_TIMEOUT
            } else {
                DEFAULT_TIMEOUT
            }),
            retries: d.retries,
            budget,
            interval: interval.unwrap_or(DEFAULT_INTERVAL),
            explain: d.explain.clone(),
            expect,
            capture,
            foreach: d.foreach.as_ref().map(|f| f.get_ref().clone()),
            when,
            until,
            on_failure,
            confirm: d.confirm,
            r#become: d.r#become.unwrap_or(true),
            second_person: self.approval(d),
            rollback,
            guards,
            read_only: d.read_only.as_ref().is_some_and(|v| *v.get_ref()),
        })
    }

    /// Diagnose, check and wait steps and guards may only read: SQL and Redis by the
    /// allowlist, shell only when the author vouches for it (`read_only = true`), else a
    /// warning (the step then counts as a change).
    fn read_only_check(
        &mut self,
        what: &str,
        at: &ExecAt<'_>,
        x: &Executor,
        vouch: Option<&Spanned<bool>>,
    ) {
        let vouched = vouch.is_some_and(|v| *v.get_ref());
        let unverifiable = matches!(
            x,
            Executor::Shell(_)
                | Executor::Docker {
                    action: DockerAction::Exec,
                    ..
                }
        );
        if let Some(v) = vouch
            && !unverifiable
        {
            self.err(
                v.span(),
                format!(
                    "`read_only` vouches only for shell and docker exec commands; {} is checked against the read-only allowlist",
                    x.kind()
                ),
                Some("remove `read_only`"),
            );
        }
        if let Some(v) = vouch
            && vouched
            && let Some(raw) = x.templates().iter().flat_map(|t| t.vars()).find(|u| u.raw)
        {
            self.err(
                v.span(),
                format!(
                    "`read_only = true` cannot vouch for `{{{{raw {}}}}}`: its text comes at run time",
                    raw.name
                ),
                Some("write the value bare ({{x}}), or make the step an action"),
            );
        }
        let guard = what == "guard";
        match read_only::executor(x, vouched) {
            Verdict::ReadOnly => {}
            Verdict::Unverifiable => self.warn(
                at.span.clone(),
                format!(
                    "{what} runs a {} command, which cannot be verified read-only: {}",
                    if matches!(x, Executor::Shell(_)) {
                        "shell"
                    } else {
                        "docker exec"
                    },
                    if guard {
                        "review that it only reads"
                    } else {
                        "it counts as a change (asks for approval, refused under --read-only)"
                    }
                ),
                Some("if it only reads, say so with `read_only = true`; if it changes something, make it an action"),
            ),
            Verdict::Changes(e) => {
                let (span, cmd) = match x {
                    Executor::Sql(_) => (
                        at.sql.map_or_else(
                            || at.span.clone(),
                            |s| self.string_pos(&s.span(), s.get_ref(), e.offset),
                        ),
                        "SQL",
                    ),
                    Executor::Redis { .. } => (at.span.clone(), "a Redis command"),
                    Executor::Docker { .. } => (at.span.clone(), "a docker action"),
                    Executor::Http { .. } => (at.span.clone(), "an HTTP request"),
                    Executor::Shell(_) => (at.span.clone(), "a shell command"),
                };
                let hint = if guard {
                    "guards must only read: use SELECT/SHOW, a read-only Redis command (runbooks/README.md lists them), or a built-in guard"
                } else {
                    "make it kind = \"action\" with a confirm policy; read-only are SELECT/SHOW/EXPLAIN and the Redis commands listed in runbooks/README.md"
                };
                self.err(
                    span,
                    format!("{what} runs {cmd} that is not read-only: {}", e.reason),
                    Some(hint),
                );
            }
        }
    }

    /// The file position of byte `offset` of the TOML string `value` written at `span`.
    fn string_pos(&self, span: &Range<usize>, value: &str, offset: usize) -> Range<usize> {
        string_pos(self.text, span, value, offset)
    }

    fn service_check(&mut self, span: &Range<usize>, t: &Target, x: &Executor, inv: &Inventory) {
        let Ok(hosts) = t.selector.resolve(inv) else {
            return;
        };
        let (needs, ok) = match x {
            Executor::Sql(_) => (
                "a mysql service",
                hosts.iter().all(|h| !h.services.mysql.is_empty()),
            ),
            Executor::Redis { .. } => (
                "a redis service",
                hosts.iter().all(|h| !h.services.redis.is_empty()),
            ),
            _ => return,
        };
        if !ok {
            self.err(
                span.clone(),
                format!(
                    "{} step targets hosts without {needs} in inventory {:?}",
                    x.kind(),
                    inv.name
                ),
                Some("target a host that declares the service, e.g. db:primary or cache:master"),
            );
        }
    }

    fn guard(&mut self, g: &Spanned<model::GuardDef>, scope: &HashSet<String>) -> Option<Guard> {
        let d = g.get_ref();
        let target = d.target.as_ref().and_then(|t| self.target(t));
        let builtins = usize::from(d.replica_sql_running.is_some())
            + usize::from(d.replica_lag_below.is_some())
            + usize::from(d.sentinel_ckquorum.is_some());
        let execs = usize::from(d.shell.is_some())
            + usize::from(d.sql.is_some())
            + usize::from(d.redis.is_some());
        if builtins + execs != 1 {
            self.err(
                g.span(),
                "a guard needs exactly one of shell, sql, redis, replica_sql_running, replica_lag_below, sentinel_ckquorum",
                None,
            );
            return None;
        }
        let check = if d.replica_sql_running == Some(true) {
            GuardCheck::ReplicaSqlRunning
        } else if d.sentinel_ckquorum == Some(true) {
            GuardCheck::SentinelCkquorum
        } else if d.replica_lag_below.is_some() {
            GuardCheck::ReplicaLagBelow(self.duration(&d.replica_lag_below, "replica_lag_below")?)
        } else if builtins == 1 {
            self.err(
                g.span(),
                "a built-in guard is switched on with `true`",
                None,
            );
            return None;
        } else {
            let exec = self
                .executor(&g.span(), &d.shell, &d.sql, &d.redis, &None, &None, scope)
                .ok()??;
            let expect = d.expect.as_ref().and_then(|e| self.expect(e, scope));
            if expect.is_none() && !matches!(exec, Executor::Shell(_)) {
                self.err(g.span(), "sql and redis guards need an `expect`", None);
            }
            let at = ExecAt {
                span: exec_span(
                    &g.span(),
                    &[
                        d.shell.as_ref().map(Spanned::span),
                        d.sql.as_ref().map(Spanned::span),
                        d.redis.as_ref().map(Spanned::span),
                    ],
                ),
                sql: d.sql.as_ref(),
            };
            self.read_only_check("guard", &at, &exec, d.read_only.as_ref());
            GuardCheck::Exec { exec, expect }
        };
        if d.expect.is_some() && !matches!(check, GuardCheck::Exec { .. }) {
            self.err(
                g.span(),
                "`expect` only goes with shell, sql or redis guards",
                None,
            );
        }
        if let Some(v) = &d.read_only
            && !matches!(check, GuardCheck::Exec { .. })
        {
            self.err(
                v.span(),
                "`read_only` vouches only for shell guards; built-in guards only read",
                Some("remove `read_only`"),
            );
        }
        Some(Guard {
            target,
            check,
            message: d.message.clone(),
            read_only: d.read_only.as_ref().is_some_and(|v| *v.get_ref()),
        })
    }
}

/// Where an executor is written, to point at what is wrong: its field's value, and for SQL
/// the string (to point inside it).
struct ExecAt<'a> {
    span: Range<usize>,
    sql: Option<&'a Spanned<String>>,
}

/// The span of the executor field that is set, else `fallback` (the step or guard).
fn exec_span(fallback: &Range<usize>, fields: &[Option<Range<usize>>]) -> Range<usize> {
    fields
        .iter()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_else(|| fallback.clone())
}

/// The file range of byte `offset` of a TOML string's `value`, the string written at `span`
/// (quotes included). Walks escapes, multi-line strings and line-ending backslashes, so the
/// position is exact; anything unexpected (the token does not decode to `value`) falls back
/// to the start of the string.
pub(crate) fn string_pos(
    text: &str,
    span: &Range<usize>,
    value: &str,
    offset: usize,
) -> Range<usize> {
    let fallback = span.start..span.start;
    let Some(raw) = text.get(span.clone()) else {
        return fallback;
    };
    let Some((decoded, map)) = decode_toml_string(raw) else {
        return fallback;
    };
    if decoded != value {
        return fallback;
    }
    match map.binary_search_by_key(&offset, |(d, _)| *d) {
        Ok(i) => {
            let r = span.start + map[i].1;
            r..r
        }
        // The end of the value: just before the closing quote(s).
        Err(i) if i == map.len() => {
            let close = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
                3
            } else {
                1
            };
            let r = span.end.saturating_sub(close);
            r..r
        }
        Err(_) => fallback,
    }
}

/// Decodes a TOML string token (basic, literal, multi-line of either), returning the value
/// and for each decoded character (decoded byte offset, byte offset in the token).
fn decode_toml_string(raw: &str) -> Option<(String, Vec<(usize, usize)>)> {
    let (basic, delim) = if raw.starts_with("\"\"\"") {
        (true, 3)
    } else if raw.starts_with("'''") {
        (false, 3)
    } else if raw.starts_with('"') {
        (true, 1)
    } else if raw.starts_with('\'') {
        (false, 1)
    } else {
        return None;
    };
    if raw.len() < 2 * delim {
        return None;
    }
    let body = raw.get(delim..raw.len() - delim)?;
    let mut out = String::new();
    let mut map = Vec::new();
    let mut chars = body.char_indices().peekable();
    // A newline right after the opening delimiter of a multi-line string is trimmed.
    if delim == 3 {
        if body.starts_with("\r\n") {
            chars.next();
            chars.next();
        } else if body.starts_with('\n') {
            chars.next();
        }
    }
    while let Some((i, c)) = chars.next() {
        let at = delim + i;
        if !(basic && c == '\\') {
            map.push((out.len(), at));
            out.push(c);
            continue;
        }
        let (_, e) = chars.next()?;
        let decoded = match e {
            'b' => '\u{8}',
            't' => '\t',
            'n' => '\n',
            'f' => '\u{c}',
            'r' => '\r',
            'e' => '\u{1b}',
            '"' => '"',
            '\\' => '\\',
            'u' | 'U' | 'x' => {
                let n = match e {
                    'u' => 4,
                    'U' => 8,
                    _ => 2,
                };
                let mut hex = String::new();
                for _ in 0..n {
                    hex.push(chars.next()?.1);
                }
                char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
            }
            w if delim == 3 && w.is_whitespace() => {
                // A line-ending backslash: the newline and the whitespace after it vanish.
                while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                    chars.next();
                }
                continue;
            }
            _ => return None,
        };
        map.push((out.len(), at));
        out.push(decoded);
    }
    Some((out, map))
}
