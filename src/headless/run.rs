//! `opsdeck run`, `opsdeck runbooks`, `opsdeck journal` and the runbook part of `opsdeck check`:
//! reporters (human text, JSON Lines) and exit statuses. No terminal crates.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::exit;
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
    pub dir: std::path::PathBuf,
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
    let path = runbook::find(&args.dir, &args.runbook);
    let (rb, warnings) = runbook::load_file(&path, Some(inv))?;
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
            let mut fired: Vec<String> = Vec::new();
            for c in &checks {
                if rb.triggered_by(&c.id, crate::probes::check::runbook_state(c.state))
                    && !fired.contains(&c.host)
                {
                    if !args.json {
                        eprintln!(
                            "health: {} {} on {} ({})",
                            c.id,
                            c.state.as_str(),
                            c.host,
                            secret::mask(&c.reason)
                        );
                    }
                    fired.push(c.host.clone());
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
                state: crate::probes::check::runbook_state(c.state),
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

/// `opsdeck runbooks`.
/// `opsdeck runbooks`: what is here, what each treats, and — given current `checks` — which
/// ones health suggests now, most severe first.
pub fn list(
    dir: &Path,
    json: bool,
    checks: Option<&[crate::probes::check::Check]>,
) -> anyhow::Result<i32> {
    // Listed whatever the inventory: `opsdeck check` says which cannot run on it.
    let loaded = runbook::load_dir(dir, None)?;
    let mut rows = Vec::new();
    let mut bad = 0;
    for (path, r) in loaded {
        match r {
            Ok((rb, _)) => rows.push(rb),
            Err(e) => {
                bad += 1;
                eprintln!("opsdeck: {}: {e}", path.display());
            }
        }
    }
    let arcs: Vec<std::sync::Arc<runbook::Runbook>> =
        rows.iter().cloned().map(std::sync::Arc::new).collect();
    let suggestions = checks
        .map(|c| crate::app::state::suggest(&arcs, c))
        .unwrap_or_default();
    let suggested = |i: usize| suggestions.iter().find(|s| s.runbook == i);
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, rb)| {
                let sg = suggested(i);
                serde_json::json!({
                    "id": rb.id, "title": rb.title, "summary": rb.summary, "severity": rb.severity,
                    "rto_s": rb.rto.map(|d| d.as_secs()), "tiers": rb.tiers, "tags": rb.tags,
                    "triggers": rb.triggers, "steps": rb.steps.len(),
                    "suggested": sg.map(|s| serde_json::json!({"state": s.state, "hosts": s.hosts, "because": s.because})),
                })
            })
            .collect();
        println!("{}", secret::mask(&serde_json::to_string_pretty(&v)?));
    } else {
        if checks.is_some() {
            if suggestions.is_empty() {
                println!("current health suggests no runbook\n");
            } else {
                println!("current health suggests, most severe first:");
                for s in &suggestions {
                    println!(
                        "  {:<9} {:<28} {}",
                        s.state.as_str(),
                        rows[s.runbook].id,
                        secret::mask(s.because.first().map_or("", String::as_str))
                    );
                }
                println!();
            }
        }
        for rb in &rows {
            let triggers: Vec<String> = rb
                .triggers
                .iter()
                .map(|t| format!("{}>={}", t.check, t.state.as_str()))
                .collect();
            println!(
                "{:<28} {:<8} {}",
                rb.id,
                format!("{:?}", rb.severity).to_lowercase(),
                rb.title
            );
            if !triggers.is_empty() {
                println!("{:<28} treats {}", "", triggers.join(", "));
            }
        }
    }
    Ok(if bad > 0 { exit::CONFIG } else { exit::OK })
}

/// The runbook part of `opsdeck check`: every file in `dir` against the inventory.
/// `Ok(None)` when there is no runbook directory.
pub fn check(dir: &Path, inv: &Inventory) -> anyhow::Result<Option<(usize, Vec<String>)>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut ok = 0;
    let mut problems = Vec::new();
    let re = regex::Regex::new(r#"target "([^"]+)" cannot be satisfied"#)?;
    // A broken runbook is an error; a sound one whose targets this inventory lacks (no
    // replica, no Sentinel) is reported but does not fail the check: it cannot run here.
    for (path, r) in runbook::load_dir(dir, None)? {
        match r {
            Ok((_, warnings)) => {
                ok += 1;
                for w in warnings {
                    eprintln!("{w}");
                }
                if let Err(RunbookError::Invalid(d)) = runbook::load_file(&path, Some(inv)) {
                    // One line per runbook: which targets this inventory cannot satisfy.
                    let mut targets: Vec<String> = Vec::new();
                    for x in &d {
                        let text = x.to_string();
                        match re.captures(&text) {
                            Some(c) => {
                                let t = c[1].to_owned();
                                if !targets.contains(&t) {
                                    targets.push(t);
                                }
                            }
                            None => eprintln!("{text} (inventory {:?})", inv.name),
                        }
                    }
                    if !targets.is_empty() {
                        eprintln!(
                            "{}: cannot run on inventory {:?}: no host matches {}",
                            path.display(),
                            inv.name,
                            targets.join(", ")
                        );
                    }
                }
            }
            Err(RunbookError::Invalid(d)) => problems.extend(d.iter().map(ToString::to_string)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(Some((ok, problems)))
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
            crate::cli::JournalCommand::Show { run }
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
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                for r in runs {
                    println!(
                        "{}  {}  {}  {}",
                        r.run,
                        r.operator,
                        r.started,
                        r.outcome.as_deref().unwrap_or("unfinished")
                    );
                }
            }
        }
        crate::cli::JournalCommand::Show { run } => {
            for l in journal::read(&dir, run)? {
                println!("{l}");
            }
        }
        crate::cli::JournalCommand::Export { run, .. } => {
            print!("{}", journal::markdown(&journal::read(&dir, run)?));
        }
    }
    Ok(exit::OK)
}
