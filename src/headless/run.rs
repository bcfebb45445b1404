//! `opsdeck run`, `opsdeck runbooks`, `opsdeck journal` and the runbook part of `opsdeck check`:
//! reporters (human text, JSON Lines) and exit statuses. No terminal crates.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::exit;
use super::table::{Colors, Table, Tone, cell};
use crate::hygiene::print;
use crate::inventory::Inventory;
use crate::runbook::driver::{self, OpenError, RunSpec};
use crate::runbook::engine::{ApprovePolicy, Event, Outcome, Resolution, StepStatus};
use crate::runbook::journal;
use crate::runbook::lock::LockError;
use crate::runbook::{self, RunbookError};
use crate::secret;
use crate::transport::Connections;

/// Flags of `opsdeck run`, parsed.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // one per command-line switch
pub struct RunArgs {
    pub runbook: String,
    pub vars: Vec<String>,
    pub target: Option<String>,
    pub approve: String,
    pub read_only: bool,
    pub dry_run: bool,
    pub run_diagnose: bool,
    pub json: bool,
    pub resume: Option<String>,
    pub resolve: Option<String>,
    pub accept_changed: bool,
    pub verify_timeout: std::time::Duration,
    pub approval_wait: std::time::Duration,
    /// Where the runbook is looked up.
    pub sources: runbook::Sources,
}

pub fn exit_code(o: Outcome) -> i32 {
    match o {
        Outcome::Succeeded => exit::OK,
        Outcome::Failed => exit::FAILED,
        Outcome::NeedsApproval => exit::NEEDS_APPROVAL,
        Outcome::Aborted => exit::ABORTED,
        Outcome::Refused => exit::REFUSED,
        Outcome::NotResolved => exit::NOT_RESOLVED,
    }
}

/// `--var name=value` pairs.
fn parse_vars(given: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    given
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("--var {kv:?}: write --var name=value"),
        })
        .collect()
}

pub fn run(args: &RunArgs, inv: &Inventory) -> anyhow::Result<i32> {
    let (rb, warnings) = args.sources.find(&args.runbook, Some(inv))?;
    for w in &warnings {
        eprintln!("{w}");
    }
    let rb = Arc::new(rb);
    let approve: ApprovePolicy = args.approve.parse().map_err(anyhow::Error::msg)?;
    if approve == ApprovePolicy::Ask {
        bail!("--approve ask needs the console; headless use none, diagnose, all or step ids");
    }
    if let ApprovePolicy::Steps(ids) = &approve {
        for id in ids.iter().filter(|i| *i != "all") {
            if rb.step_index(id).is_none() {
                bail!("--approve {id}: runbook {} has no step {id:?}", rb.id);
            }
        }
    }
    let resolve: Option<Resolution> = args
        .resolve
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let conns = Arc::new(Connections::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Without --target, a runbook that treats a symptom acts where health shows it: the
    // hosts whose checks trigger it — never "the first host" of a broad selector.
    let mut target = args.target.clone();
    let mut start_health = Vec::new();
    let mut topology = None;
    // Health is asked first when the run acts where the fault is (no --target) or when its
    // steps name live roles (`db:primary` is whoever the servers say is primary now).
    let treats = target.is_none() && args.resume.is_none() && !rb.triggers.is_empty();
    let live_roles = rb.steps.iter().any(|s| {
        s.target.iter().any(|t| t.selector.names_live_role())
            || s.guards
                .iter()
                .any(|g| g.target.iter().any(|t| t.selector.names_live_role()))
    });
    if treats || live_roles {
        let hosts: Vec<&crate::inventory::Host> = inv.hosts.iter().collect();
        let sweep = rt
            .block_on(crate::probes::sweep::sweep(
                &conns,
                inv,
                &hosts,
                &crate::probes::sweep::SweepOptions::default(),
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for d in sweep.topology.disagreements(inv) {
            if !args.json {
                eprintln!(
                    "topology: {} is {} by its servers, {} in the inventory",
                    d.host,
                    if d.observed.is_empty() {
                        "nothing live".to_owned()
                    } else {
                        d.observed.join("+")
                    },
                    if d.declared.is_empty() {
                        "nothing live".to_owned()
                    } else {
                        d.declared.join("+")
                    }
                );
            }
        }
        topology = Some(sweep.topology);
        let checks = sweep.checks;
        if treats {
            let fired = crate::runbook::suggest::fired_hosts(&rb, inv, &checks, topology.as_ref());
            if !args.json {
                for c in crate::runbook::suggest::hits(&rb, &checks) {
                    eprintln!(
                        "health: {} {} on {} ({})",
                        c.id,
                        c.state.as_str(),
                        c.host,
                        secret::mask(&c.reason)
                    );
                }
            }
            if fired.is_empty() {
                eprintln!(
                    "opsdeck: health shows none of {}'s triggers ({}) on any host: nothing to treat\n  hint: name the hosts with --target to run it anyway",
                    rb.id,
                    rb.triggers
                        .iter()
                        .map(|t| format!("{}>={}", t.check, t.state.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Ok(exit::OK);
            }
            if !args.json {
                eprintln!("target (from health): {}", fired.join(", "));
            }
            target = Some(fired.join(","));
        }
        start_health = checks
            .iter()
            .map(|c| crate::runbook::engine::HealthFact {
                host: c.host.clone(),
                check: c.id.clone(),
                state: c.state,
                reason: c.reason.clone(),
            })
            .collect();
    }
    let spec = RunSpec {
        runbook: Arc::clone(&rb),
        target,
        inputs: parse_vars(&args.vars)?,
        approve,
        read_only: args.read_only,
        dry_run: args.dry_run,
        run_diagnose: args.run_diagnose,
        resume: args.resume.clone(),
        resolve,
        accept_changed: args.accept_changed,
        verify_timeout: Some(args.verify_timeout),
        drill: None,
        topology,
        approval_wait: args.approval_wait,
    };
    let mut opened = match rt.block_on(driver::open(&spec, inv, &driver::journal_dir())) {
        Ok(o) => o,
        Err(e @ (OpenError::Refused(_) | OpenError::Lock(LockError::Held { .. }))) => {
            eprintln!("opsdeck: {}", secret::mask(&e.to_string()));
            return Ok(exit::REFUSED);
        }
        Err(e @ OpenError::Invalid(_)) => {
            eprintln!("opsdeck: {}", secret::mask(&e.to_string()));
            return Ok(exit::CONFIG);
        }
        Err(e) => return Err(e.into()),
    };
    if !args.json {
        eprintln!(
            "journal: {} (run {})",
            opened.session.path().display(),
            opened.session.run()
        );
    }
    for n in &opened.session.notes {
        eprintln!("opsdeck: WARNING: {}", secret::mask(n));
    }
    opened.engine.set_health(start_health);
    let json = args.json;
    let run_id = opened.session.run().to_owned();
    let mut report = |e: &Event| {
        if json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("run".into(), serde_json::Value::String(run_id.clone()));
            }
            secret::mask_json(&mut v);
            println!("{v}");
        } else {
            print!("{}", secret::mask(&human(e)));
        }
    };
    let driven = rt.block_on(async {
        let r = driver::drive(&mut opened, inv, &conns, &mut report).await;
        opened.session.release().await;
        r
    });
    match driven {
        Ok(outcome) => Ok(outcome.map_or(exit::NEEDS_APPROVAL, exit_code)),
        // Nothing runs that the journal cannot record: the run stops at the first write
        // that fails, before the command it was for.
        Err(e) => {
            eprintln!("opsdeck: the run stopped: {}", secret::mask(&e.to_string()));
            Ok(exit::FAILED)
        }
    }
}

/// One event as human progress text.
pub fn human(e: &Event) -> String {
    let mut o = String::new();
    match e {
        Event::RunStarted {
            runbook,
            title,
            dry_run,
            read_only,
            resumed_at,
            ..
        } => {
            let mut flags = Vec::new();
            if *dry_run {
                flags.push("dry run".to_owned());
            }
            if *read_only {
                flags.push("read-only".to_owned());
            }
            if let Some(s) = resumed_at {
                flags.push(format!("resumed at {s}"));
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" ({})", flags.join(", "))
            };
            let _ = writeln!(o, "== {runbook}: {title}{flags}");
        }
        Event::StepStarted {
            step,
            title,
            kind,
            hosts,
            ..
        } => {
            let on = if hosts.is_empty() {
                String::new()
            } else {
                format!(" on {}", hosts.join(", "))
            };
            let _ = writeln!(o, "-> [{}] {step}: {title}{on}", kind.as_str());
        }
        Event::WouldRun {
            host,
            command,
            changes,
            ..
        } => {
            let tag = if *changes {
                "would change"
            } else {
                "would run"
            };
            let _ = writeln!(
                o,
                "   {tag} on {}: {command}",
                host.as_deref().unwrap_or("-")
            );
        }
        Event::Output { host, text, .. } => {
            for line in text.lines().take(40) {
                let _ = writeln!(o, "   {}| {line}", host.as_deref().unwrap_or(""));
            }
        }
        Event::Captured { var, value, .. } => {
            let _ = writeln!(o, "   {var} = {}", value.as_text());
        }
        Event::InputSet {
            name,
            value,
            by,
            how,
            ..
        } => {
            let how = how.as_ref().map(|h| format!(", {h}")).unwrap_or_default();
            let _ = writeln!(o, "   input {name} = {value} ({by}{how})");
        }
        Event::Guard {
            guard,
            passed,
            message,
            host,
            ..
        } => {
            let verdict = if *passed { "ok" } else { "REFUSED" };
            let _ = writeln!(
                o,
                "   guard {guard} on {}: {verdict} {message}",
                host.as_deref().unwrap_or("-")
            );
        }
        Event::AwaitingDecision { step, kind, .. } => {
            let _ = writeln!(o, "   waiting for a decision on {step}: {kind:?}");
        }
        Event::Decided {
            decision,
            by,
            covers,
            ..
        } => {
            let _ = writeln!(o, "   {decision:?} by {by}, covering:");
            for c in covers {
                let _ = writeln!(
                    o,
                    "     {}{}: {}",
                    c.host.as_deref().unwrap_or("-"),
                    c.item
                        .as_ref()
                        .map(|i| format!(" [{i}]"))
                        .unwrap_or_default(),
                    c.command
                );
            }
        }
        Event::UnitFinished {
            host,
            item,
            status,
            message,
            ..
        } if *status != StepStatus::Succeeded || !message.is_empty() => {
            let _ = writeln!(
                o,
                "   {} {}{}{}",
                format!("{status:?}").to_lowercase(),
                host.as_deref().unwrap_or("-"),
                item.as_ref().map(|i| format!(" [{i}]")).unwrap_or_default(),
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            );
        }
        Event::UnitFinished { .. } => {}
        Event::Attempt {
            attempt, message, ..
        } => {
            let _ = writeln!(o, "   attempt {attempt}: {message}; trying again");
        }
        Event::Rollback { ok, message, .. } => {
            let _ = writeln!(
                o,
                "   rollback {} {message}",
                if *ok { "done" } else { "FAILED" }
            );
        }
        Event::StepFinished {
            status, message, ..
        } => {
            let s = match status {
                StepStatus::Succeeded => "ok",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
                StepStatus::Unknown => "UNKNOWN",
                StepStatus::Refused => "REFUSED",
            };
            let _ = writeln!(
                o,
                "   {s}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            );
        }
        Event::BudgetExceeded {
            step,
            budget_s,
            elapsed_s,
        } => {
            let _ = writeln!(
                o,
                "!! step {step} is over its {budget_s:.0}s budget ({elapsed_s:.0}s)"
            );
        }
        Event::RtoExceeded { rto_s, elapsed_s } => {
            let _ = writeln!(
                o,
                "!! RTO of {rto_s:.0}s exceeded ({elapsed_s:.0}s since start)"
            );
        }
        Event::Note { text, .. } => {
            let _ = writeln!(o, "   note: {text}");
        }
        Event::Health { when, checks } => {
            if checks.is_empty() {
                let _ = writeln!(o, "   health at {when}: every check ok");
            } else {
                let _ = writeln!(o, "   health at {when}:");
                for c in checks {
                    let _ = writeln!(
                        o,
                        "     {} {} on {}: {}",
                        c.check,
                        c.state.as_str(),
                        c.host,
                        c.reason
                    );
                }
            }
        }
        Event::RunFinished { outcome, message } => {
            let _ = writeln!(o, "== {outcome:?}: {message}");
        }
    }
    o
}

/// `opsdeck runbooks`: what is here, where each comes from, what each treats, and — given
/// current `checks` — which ones health suggests now, most severe first.
pub fn list(
    sources: &runbook::Sources,
    json: bool,
    checks: Option<(&crate::inventory::Inventory, &[crate::probes::check::Check])>,
) -> anyhow::Result<i32> {
    // Listed whatever the inventory: `opsdeck check` says which cannot run on it.
    let mut rows = Vec::new();
    let mut bad = 0;
    for e in sources.load_all(None)? {
        match e.result {
            Ok((rb, _)) => rows.push((rb, e.origin, e.overrides)),
            Err(err) => {
                bad += 1;
                eprintln!("opsdeck: {}: {err}", e.path.display());
            }
        }
    }
    let arcs: Vec<std::sync::Arc<runbook::Runbook>> = rows
        .iter()
        .map(|(rb, _, _)| std::sync::Arc::new(rb.clone()))
        .collect();
    let suggestions = checks
        .map(|(inv, c)| crate::runbook::suggest::suggest(&arcs, inv, c, None))
        .unwrap_or_default();
    let suggested = |i: usize| suggestions.iter().find(|s| s.runbook == i);
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, (rb, origin, overrides))| {
                let sg = suggested(i);
                serde_json::json!({
                    "id": rb.id, "title": rb.title, "summary": rb.summary, "severity": rb.severity,
                    "rto_s": rb.rto.map(|d| d.as_secs()), "tiers": rb.tiers, "tags": rb.tags,
                    "triggers": rb.triggers, "steps": rb.steps.len(),
                    "source": origin.describe(),
                    "origin": origin_label(origin),
                    "overrides": overrides.iter().map(runbook::Origin::describe).collect::<Vec<_>>(),
                    "suggested": sg.map(|s| serde_json::json!({"state": s.state, "hosts": s.hosts, "because": s.because})),
                })
            })
            .collect();
        print(&format!(
            "{}\n",
            secret::mask(&serde_json::to_string_pretty(&v)?)
        ))?;
    } else {
        let colors = Colors::for_stdout();
        let mut out = String::new();
        if checks.is_some() {
            if suggestions.is_empty() {
                out.push_str("current health suggests no runbook\n\n");
            } else {
                out.push_str("current health suggests, most severe first:\n");
                let mut t = Table::new();
                t.indent = "  ".to_owned();
                t.gap = " ".to_owned();
                t.min_widths = vec![9, 28];
                for s in &suggestions {
                    t.row(vec![
                        cell(s.state.as_str(), Tone::of(s.state)),
                        cell(rows[s.runbook].0.id.as_str(), Tone::Strong),
                        s.because.first().cloned().unwrap_or_default().into(),
                    ]);
                }
                out.push_str(&t.render(colors));
                out.push('\n');
            }
        }
        let mut t = Table::new();
        t.header(&["ID", "SEVERITY", "TITLE", "FROM"]);
        let mut treats: Vec<Option<String>> = vec![None];
        for (rb, origin, overrides) in &rows {
            let from = if overrides.is_empty() {
                origin.describe()
            } else {
                format!(
                    "{} (overrides {})",
                    origin.describe(),
                    overrides
                        .iter()
                        .map(runbook::Origin::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            t.row(vec![
                cell(rb.id.as_str(), Tone::Strong),
                cell(
                    format!("{:?}", rb.severity).to_lowercase(),
                    severity_tone(rb.severity),
                ),
                rb.title.clone().into(),
                cell(from, Tone::Dim),
            ]);
            let triggers: Vec<String> = rb
                .triggers
                .iter()
                .map(|t| format!("{}>={}", t.check, t.state.as_str()))
                .collect();
            treats.push((!triggers.is_empty()).then(|| triggers.join(", ")));
        }
        // Each row, then what it treats under its title.
        let indent = t.widths().first().copied().unwrap_or(0) + 2;
        for (line, treat) in t.render(colors).lines().zip(treats) {
            out.push_str(line);
            out.push('\n');
            if let Some(tr) = treat {
                let _ = writeln!(out, "{}treats {tr}", " ".repeat(indent));
            }
        }
        print(&secret::mask(&out))?;
    }
    Ok(if bad > 0 { exit::CONFIG } else { exit::OK })
}

fn origin_label(o: &runbook::Origin) -> &'static str {
    match o {
        runbook::Origin::BuiltIn => "built-in",
        runbook::Origin::File { kind, .. } => kind.label(),
    }
}

fn severity_tone(s: runbook::Severity) -> Tone {
    match s {
        runbook::Severity::Critical => Tone::Critical,
        runbook::Severity::High => Tone::Warning,
        runbook::Severity::Medium | runbook::Severity::Low => Tone::Plain,
    }
}

/// One runbook's result in `opsdeck check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunbookCheck {
    pub id: String,
    /// `built-in` or the file's path.
    pub source: String,
    /// Why its directory is searched (`$OPSDECK_RUNBOOKS`, `./runbooks`, ...) or `built-in`.
    pub origin: &'static str,
    /// What it hides: files later in the search order and the built-in runbook of its id.
    pub overrides: Vec<String>,
    /// Loads and validates (whatever the inventory).
    pub ok: bool,
    /// Located errors (file:line:col: ...), when not ok.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Problems against this inventory: targets no host matches (it cannot run here; not an
    /// error) and anything else the inventory check found.
    pub inventory: Vec<String>,
}

/// The runbook part of `opsdeck check`: every runbook in force, validated on its own and
/// against the inventory.
pub fn check(sources: &runbook::Sources, inv: &Inventory) -> anyhow::Result<Vec<RunbookCheck>> {
    let re = regex::Regex::new(r#"target "([^"]+)" cannot be satisfied"#)?;
    let mut out = Vec::new();
    // A broken runbook is an error; a sound one whose targets this inventory lacks (no
    // replica, no Sentinel) is reported but does not fail the check: it cannot run here.
    for e in sources.load_all(None)? {
        let mut c = RunbookCheck {
            id: e.id.clone(),
            source: e.origin.describe(),
            origin: origin_label(&e.origin),
            overrides: e.overrides.iter().map(runbook::Origin::describe).collect(),
            ok: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            inventory: Vec::new(),
        };
        match &e.result {
            Ok((_, warnings)) => {
                c.ok = true;
                c.warnings = warnings.iter().map(ToString::to_string).collect();
                if let Err(RunbookError::Invalid(d)) = e.reload(Some(inv)) {
                    let mut targets: Vec<String> = Vec::new();
                    for x in &d {
                        let text = x.to_string();
                        match re.captures(&text) {
                            Some(m) => {
                                let t = m[1].to_owned();
                                if !targets.contains(&t) {
                                    targets.push(t);
                                }
                            }
                            None => c
                                .inventory
                                .push(format!("{text} (inventory {:?})", inv.name)),
                        }
                    }
                    if !targets.is_empty() {
                        c.inventory.push(format!(
                            "{}: cannot run on inventory {:?}: no host matches {}",
                            e.path.display(),
                            inv.name,
                            targets.join(", ")
                        ));
                    }
                }
            }
            Err(RunbookError::Invalid(d)) => {
                c.errors = d.iter().map(ToString::to_string).collect();
            }
            Err(err) => c.errors.push(err.to_string()),
        }
        out.push(c);
    }
    Ok(out)
}

/// `check`'s runbook lines: problems and notes on stderr, one ok line per source on stdout;
/// true when every runbook loads.
pub fn print_check(sources: &runbook::Sources, results: &[RunbookCheck]) -> anyhow::Result<bool> {
    let colors = Colors::for_stdout();
    for c in results {
        // A built-in runbook's warnings are the project's to fix, not the user's: they are
        // in `check --json`, not repeated on every check.
        let warnings = if c.origin == "built-in" {
            &[][..]
        } else {
            &c.warnings[..]
        };
        for w in warnings.iter().chain(&c.inventory) {
            eprintln!("{}", secret::mask(w));
        }
        if !c.errors.is_empty() {
            eprintln!("opsdeck: {}", secret::mask(&c.errors.join("\n")));
        }
    }
    let mut groups: Vec<(String, &'static str)> = sources
        .present_dirs()?
        .iter()
        .map(|d| (d.path.display().to_string(), d.kind.label()))
        .collect();
    if sources.builtin {
        groups.push(("built-in".to_owned(), "built-in"));
    }
    for (name, label) in groups {
        // How the line names the source: `./runbooks`, `DIR ($OPSDECK_RUNBOOKS)`, `built-in`.
        let shown = match label {
            "built-in" | "./runbooks" => label.to_owned(),
            _ => format!("{name} ({label})"),
        };
        let in_group = |c: &&RunbookCheck| {
            if label == "built-in" {
                c.origin == "built-in"
            } else {
                c.origin == label && Path::new(&c.source).parent() == Some(Path::new(&name))
            }
        };
        let n = results.iter().filter(in_group).count();
        let broken = results.iter().filter(in_group).filter(|c| !c.ok).count();
        let hidden = if label == "built-in" {
            runbook::builtin::BUILTIN.len().saturating_sub(n)
        } else {
            0
        };
        let state = if broken == 0 {
            colors.paint(Tone::Ok, "ok")
        } else {
            colors.paint(Tone::Critical, &format!("{broken} broken"))
        };
        let more = if hidden > 0 {
            format!(", {hidden} overridden")
        } else {
            String::new()
        };
        print(&format!("runbooks {shown}: {state} ({n} runbooks{more})\n"))?;
    }
    Ok(results.iter().all(|c| c.ok))
}

/// `opsdeck journal ...`. In team mode, every operator's runs are listed (copied from the
/// team's etcd into this machine's journal directory first).
pub fn journal_cmd(
    cmd: &crate::cli::JournalCommand,
    inv: Option<&Inventory>,
) -> anyhow::Result<i32> {
    let dir = journal::default_dir();
    if let Some(cfg) = inv.and_then(|i| i.team.as_ref()) {
        let team = crate::team::Team::new(cfg);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let imported = match cmd {
            crate::cli::JournalCommand::List { .. } => rt.block_on(team.import_runs(&dir)),
            crate::cli::JournalCommand::Show { run, .. }
            | crate::cli::JournalCommand::Export { run, .. } => {
                rt.block_on(team.import_run(&dir, run)).map(usize::from)
            }
        };
        if let Err(e) = imported {
            eprintln!(
                "opsdeck: warning: the team's shared journal is not reachable ({}); showing this machine's runs",
                secret::mask(&e.to_string())
            );
        }
    }
    match cmd {
        crate::cli::JournalCommand::List { json } => {
            let runs = journal::list(&dir)?;
            if *json {
                print(&format!("{}\n", serde_json::to_string_pretty(&runs)?))?;
            } else {
                let colors = Colors::for_stdout();
                let mut t = Table::new();
                t.header(&["RUN", "RUNBOOK", "OPERATOR", "STARTED", "OUTCOME"]);
                for r in runs {
                    let outcome = r.outcome.as_deref().unwrap_or("unfinished");
                    let tone = match outcome {
                        "succeeded" | "Succeeded" => Tone::Ok,
                        "unfinished" => Tone::Warning,
                        o if o.eq_ignore_ascii_case("failed")
                            || o.eq_ignore_ascii_case("notresolved")
                            || o.eq_ignore_ascii_case("not_resolved") =>
                        {
                            Tone::Critical
                        }
                        _ => Tone::Plain,
                    };
                    t.row(vec![
                        cell(r.run, Tone::Strong),
                        r.runbook.into(),
                        r.operator.into(),
                        r.started.into(),
                        cell(outcome, tone),
                    ]);
                }
                print(&secret::mask(&t.render(colors)))?;
            }
        }
        crate::cli::JournalCommand::Show { run, json } => {
            let records = journal::read(&dir, run)?;
            if *json {
                let mut v = serde_json::Value::Array(records);
                secret::mask_json(&mut v);
                print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
            } else {
                let text: String = records.iter().map(record_line).collect();
                print(&secret::mask(&text))?;
            }
        }
        crate::cli::JournalCommand::Export { run, .. } => {
            print(&journal::markdown(&journal::read(&dir, run)?))?;
        }
    }
    Ok(exit::OK)
}

/// One journal record as a line: time, what (the event's name or the record type), then its
/// fields as `key=value` (long values cut, newlines shown as `⏎`).
fn record_line(v: &serde_json::Value) -> String {
    const SKIP: [&str; 5] = ["ts", "run", "type", "operator", "event"];
    const MAX: usize = 160;
    let s = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
    let time = s("ts").split_once('T').map_or(s("ts"), |(_, t)| t);
    let time = time.trim_end_matches('Z');
    let what = if s("type") == "event" && !s("event").is_empty() {
        s("event")
    } else {
        s("type")
    };
    let mut line = format!("{time:<12}  {what:<16}");
    if let Some(m) = v.as_object() {
        for (k, val) in m.iter().filter(|(k, _)| !SKIP.contains(&k.as_str())) {
            let text = match val {
                serde_json::Value::Null => continue,
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let mut text = text.replace('\n', "⏎");
            if text.chars().count() > MAX {
                text = text.chars().take(MAX).collect::<String>() + "…";
            }
            let _ = write!(line, " {k}={text}");
        }
    }
    line.push('\n');
    line
}
