//! The run driver: the one way a run is opened, resumed and carried out, for the console and
//! `opsdeck run` alike.
//!
//! Opening a run, in this order and nowhere else:
//! 1. a resumed run's journal header is read: runbook id and hash, the recorded target and
//!    inputs (a resume never changes what the run acts on);
//! 2. the target is resolved exactly against the inventory (a term that matches no host is an
//!    error) and the plan made (a changing step outside the target is refused);
//! 3. inputs are checked (names, patterns, required; secret ones registered for masking);
//! 4. the lock is taken on the resolved hosts (and the runbook's named locks, and the run id)
//!    *before* the journal is touched;
//! 5. the journal is created, or reopened and re-read under the lock for the resume point;
//! 6. the engine is built.
//!
//! Then [`Session`] journals every event, every command's intent (synced before it runs) and
//! its outcome. The headless front end drives the engine with [`drive`]; the console holds the
//! engine in its pure state and hands the session's I/O to its executor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::engine::{
    ApprovePolicy, Decision, DecisionKind, Engine, Event, ExecRequest, ExecResult, Input, Options,
    Outcome, Output, Plan, PlanError, Purpose, Resolution, ResumeFrom,
};
use super::journal::{self, Journal, JournalError, NewRun};
use super::lock::{self, LockError, LockKey, RunLock};
use super::{Runbook, Value, Vars};
use crate::inventory::{Inventory, Selector};
use crate::secret::Secret;
use crate::team::{ActiveRun, Team, TeamError, TeamLock};
use crate::transport::Connections;

/// What the operator asked for.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // one per command-line switch
pub struct RunSpec {
    pub runbook: Arc<Runbook>,
    /// `--target` as typed (a selector); `None`: each step's own hosts.
    pub target: Option<String>,
    /// Inputs the operator gave (`--var`, the console's prompts).
    pub inputs: Vec<(String, String)>,
    pub approve: ApprovePolicy,
    pub read_only: bool,
    pub dry_run: bool,
    pub run_diagnose: bool,
    /// Continue this run from its journal.
    pub resume: Option<String>,
    /// Headless answer for a unit whose outcome is unknown.
    pub resolve: Option<Resolution>,
    /// Resume although the runbook file changed since the run started.
    pub accept_changed: bool,
    /// How long the end check re-probes the triggers (default: the engine's).
    pub verify_timeout: Option<std::time::Duration>,
    /// The drill this run treats (learn mode): the journal and export say it was a drill.
    pub drill: Option<String>,
    /// What the servers report about live roles (`db:primary`): selectors resolve against
    /// it. `None`: the inventory's roles, as declared.
    pub topology: Option<crate::probes::topology::Topology>,
    /// Headless: how long to wait for a second person's approval (team mode).
    pub approval_wait: std::time::Duration,
}

impl RunSpec {
    pub fn new(runbook: Arc<Runbook>) -> RunSpec {
        RunSpec {
            runbook,
            target: None,
            inputs: Vec::new(),
            approve: ApprovePolicy::Ask,
            read_only: false,
            dry_run: false,
            run_diagnose: false,
            resume: None,
            resolve: None,
            accept_changed: false,
            verify_timeout: None,
            drill: None,
            topology: None,
            approval_wait: std::time::Duration::from_secs(900),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The request does not fit the runbook, the inventory or the journal: nothing happened.
    #[error("{0}")]
    Invalid(String),
    /// It would act outside what the operator named, or on a read-only resource.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// An open run's I/O: its journal and its lock (released when the session is dropped).
pub struct Session {
    journal: Journal,
    lock: RunLock,
    /// The resolved hosts the run was pointed at (empty: no target).
    pub target_hosts: Vec<String>,
    team: Option<Team>,
    team_lock: Option<TeamLock>,
    /// Said once when the run opened (team mode degraded, …): for the operator's eyes.
    pub notes: Vec<String>,
    /// How long a headless run waits for a second person's approval.
    pub approval_wait: std::time::Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("run", &self.journal.run)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn run(&self) -> &str {
        &self.journal.run
    }

    pub fn path(&self) -> &Path {
        &self.journal.path
    }

    pub fn locked(&self) -> Vec<LockKey> {
        self.lock.keys()
    }

    pub fn record(&mut self, e: &Event) -> Result<(), JournalError> {
        self.journal.event(e)
    }

    /// On disk (synced, for changing commands) before the command may run, with the team
    /// lock's fencing token. Health probes are not commands: what they found is journaled as
    /// the run's health events.
    pub fn intent(&mut self, req: &ExecRequest) -> Result<(), JournalError> {
        if matches!(req.purpose, Purpose::Health(_)) {
            return Ok(());
        }
        self.journal
            .intent(req, self.team_lock.as_ref().map(|l| l.token))
    }

    /// The team lock a changing command must prove before it runs (`TeamLock::check`).
    pub fn fence(&self) -> Option<TeamLock> {
        self.team_lock.clone()
    }

    /// The team's etcd, in team mode.
    pub fn team(&self) -> Option<&Team> {
        self.team.as_ref()
    }

    /// Lets go of the team lock now (the local locks go when the session is dropped). A
    /// process that ends without this leaves its lease to expire.
    pub async fn release(&self) {
        if let Some(l) = &self.team_lock {
            l.release().await;
        }
    }

    pub fn outcome(&mut self, req: &ExecRequest, res: &ExecResult) -> Result<(), JournalError> {
        if matches!(req.purpose, Purpose::Health(_)) {
            return Ok(());
        }
        self.journal.done(req, res)
    }
}

/// A run ready to go: its engine (not started) and its session.
#[derive(Debug)]
pub struct Opened {
    pub engine: Engine,
    pub session: Session,
}

/// Opens (or resumes) a run. See the module doc for the order of things.
pub async fn open(
    spec: &RunSpec,
    inv: &Inventory,
    journal_dir: &Path,
) -> Result<Opened, OpenError> {
    let rb = &spec.runbook;

    // A run another operator started: its journal comes from the team's etcd.
    if let (Some(run), Some(cfg)) = (&spec.resume, &inv.team) {
        let _ = Team::new(cfg).import_run(journal_dir, run).await;
    }
    // 1. What a resumed run recorded.
    let recorded = match &spec.resume {
        Some(run) => Some(recorded_run(spec, journal_dir, run)?),
        None => None,
    };
    // 2, 3. Target, plan, inputs.
    let prepared = prepare(spec, inv, recorded.as_ref())?;

    // 4. The lock, before the journal is touched.
    let run_id = match (&spec.resume, spec.dry_run) {
        (Some(run), false) => run.clone(),
        _ => journal::new_run_id(&rb.id),
    };
    let plan = &prepared.plan;
    let mut keys: Vec<LockKey> = plan
        .changed_hosts(rb)
        .into_iter()
        .map(LockKey::Host)
        .collect();
    if keys.is_empty() {
        keys = plan.all_hosts().into_iter().map(LockKey::Host).collect();
    }
    keys.extend(rb.locks.iter().cloned().map(LockKey::Named));
    keys.push(LockKey::Run(run_id.clone()));
    if let Some(run) = &spec.resume {
        keys.push(LockKey::Run(run.clone()));
    }
    let lock = RunLock::acquire(&lock::dir_for(journal_dir), &keys, &run_id, &rb.id)?;
    // Team mode: the same keys in etcd, under a lease, for every operator of the inventory.
    let mut notes = Vec::new();
    let (team, team_lock, changes_refused) = match &inv.team {
        None => (None, None, None),
        Some(cfg) => {
            let team = Team::new(cfg);
            let holder = lock::holder(&run_id, &rb.id);
            let active = ActiveRun {
                run: run_id.clone(),
                runbook: rb.id.clone(),
                operator: journal::operator(),
                target: plan.changed_hosts(rb),
                since: holder.since.clone(),
            };
            match team.acquire(&keys, &holder, &active).await {
                Ok(l) => (Some(team), Some(l), None),
                Err(e @ TeamError::Held { .. }) => {
                    return Err(OpenError::Refused(
                        crate::secret::mask(&e.to_string()).into_owned(),
                    ));
                }
                Err(e) if cfg.local_fallback => {
                    notes.push(format!(
                        "TEAM MODE DEGRADED: {e}; this run holds LOCAL locks only: another operator's opsdeck cannot see it"
                    ));
                    (None, None, None)
                }
                Err(e) => (
                    None,
                    None,
                    Some(format!(
                        "team mode: {e}; changing steps are refused until etcd answers (read-only steps run)"
                    )),
                ),
            }
        }
    };

    // 5. The journal; a resume re-reads it under the lock (another process may have written
    // to it until a moment ago).
    let new_run = |dry_run: bool, resume_of: Option<&str>| {
        Journal::create(
            journal_dir,
            &run_id,
            &NewRun {
                runbook: rb,
                inputs: &prepared.vars,
                target: prepared.target.as_deref(),
                target_hosts: &plan.target,
                dry_run,
                resume_of,
                drill: spec.drill.as_deref(),
            },
        )
    };
    let (journal, resume_from) = match (&spec.resume, spec.dry_run) {
        (Some(run), false) => {
            let lines = journal::read(journal_dir, run)?;
            let Some(from) = journal::resume_point(rb, &lines) else {
                return Err(OpenError::Invalid(format!(
                    "run {run} already finished ({}); nothing to resume",
                    journal::outcome(&lines).unwrap_or_default()
                )));
            };
            (Journal::reopen(journal_dir, run)?, Some(from))
        }
        // A dry run of a resume writes its own journal, never into the run it previews.
        (Some(run), true) => {
            let lines = journal::read(journal_dir, run)?;
            (new_run(true, Some(run))?, journal::resume_point(rb, &lines))
        }
        (None, dry_run) => (new_run(dry_run, None)?, None),
    };

    let mut journal = journal;
    if let Some(team) = &team {
        let publisher = team.publisher(journal.run.as_str());
        // A new run's header goes out too (a resumed run's lines are there already).
        if spec.resume.is_none() || spec.dry_run {
            journal.publish_written(&publisher);
        }
        journal.attach(publisher);
    }
    for n in &notes {
        journal.note(n)?;
    }

    // 6. The engine.
    let target_hosts = prepared.plan.target.clone();
    let mut engine = engine(spec, prepared, resume_from);
    engine.set_team(team_lock.is_some(), changes_refused);
    Ok(Opened {
        engine,
        session: Session {
            journal,
            lock,
            target_hosts,
            team,
            team_lock,
            notes,
            approval_wait: spec.approval_wait,
        },
    })
}

/// The engine of a new run, without a journal or lock: what `open` builds, for tests and
/// screenshots that drive the console without disk.
pub fn new_engine(spec: &RunSpec, inv: &Inventory) -> Result<Engine, OpenError> {
    let prepared = prepare(spec, inv, None)?;
    Ok(engine(spec, prepared, None))
}

struct Prepared {
    plan: Plan,
    vars: Vars,
    /// The target selector in force (the recorded one for a resume).
    target: Option<String>,
}

/// Steps 2 and 3: the exact target, the plan and the inputs. Pure.
fn prepare(
    spec: &RunSpec,
    inv: &Inventory,
    recorded: Option<&Recorded>,
) -> Result<Prepared, OpenError> {
    let rb = &spec.runbook;
    let target = match recorded {
        Some(r) => r.header.target.clone(),
        None => spec.target.clone(),
    };
    let selector: Option<Selector> = target
        .as_deref()
        .map(|t| {
            t.parse()
                .map_err(|e| OpenError::Invalid(format!("--target {t:?}: {e}")))
        })
        .transpose()?;
    let plan = Plan::resolve_live(rb, inv, selector.as_ref(), spec.topology.as_ref()).map_err(
        |e| match e {
            PlanError::Invalid(m) => OpenError::Invalid(m),
            PlanError::Refused(m) => OpenError::Refused(m),
        },
    )?;
    if let Some(r) = recorded
        && !r.header.target_hosts.is_empty()
        && r.header.target_hosts != plan.target
    {
        return Err(OpenError::Refused(format!(
            "run {} was started on {} but its target {:?} now resolves to {}: the inventory changed; start a new run",
            r.run,
            r.header.target_hosts.join(", "),
            target.as_deref().unwrap_or(""),
            plan.target.join(", ")
        )));
    }
    let ask = spec.approve == ApprovePolicy::Ask;
    let vars = inputs(rb, recorded.map(|r| &r.header), &spec.inputs, ask)?;
    Ok(Prepared { plan, vars, target })
}

/// Step 6.
fn engine(spec: &RunSpec, prepared: Prepared, resume_from: Option<ResumeFrom>) -> Engine {
    let opts = Options {
        approve: spec.approve.clone(),
        read_only: spec.read_only,
        dry_run: spec.dry_run,
        run_diagnose_in_dry_run: spec.run_diagnose,
        resolve_unknown: spec.resolve,
        operator: journal::operator(),
        verify: !spec.dry_run,
        verify_timeout: spec
            .verify_timeout
            .unwrap_or(Options::default().verify_timeout),
        team: false,
        changes_refused: None,
    };
    let rb = Arc::clone(&spec.runbook);
    match resume_from {
        Some(from) => Engine::resume(rb, prepared.vars, prepared.plan, opts, from),
        None => Engine::new(rb, prepared.vars, prepared.plan, opts),
    }
}

struct Recorded {
    run: String,
    header: journal::Header,
}

/// Reads and checks a resumed run's header (before any lock: it only reads).
fn recorded_run(spec: &RunSpec, dir: &Path, run: &str) -> Result<Recorded, OpenError> {
    let rb = &spec.runbook;
    let lines = journal::read(dir, run)?;
    let Some(header) = journal::header(&lines) else {
        return Err(OpenError::Invalid(format!(
            "run {run}: its journal has no header line; it cannot be resumed"
        )));
    };
    if header.runbook != rb.id {
        return Err(OpenError::Invalid(format!(
            "run {run} is of runbook {:?}, not {:?}",
            header.runbook, rb.id
        )));
    }
    if header.dry_run {
        return Err(OpenError::Invalid(format!(
            "run {run} was a dry run: nothing changed, so there is nothing to resume; start a new run"
        )));
    }
    if header.hash != rb.hash && !spec.accept_changed {
        return Err(OpenError::Invalid(format!(
            "runbook {} changed since run {run} started (sha256 {} then, {} now): its steps may have moved\n  hint: review the change; resume anyway with --accept-changed, or start a new run",
            rb.id,
            short(&header.hash),
            short(&rb.hash)
        )));
    }
    if let Some(t) = &spec.target
        && Some(t) != header.target.as_ref()
    {
        return Err(OpenError::Invalid(format!(
            "run {run} was started with --target {}; a resume acts on the same hosts (drop --target)",
            header
                .target
                .as_deref()
                .unwrap_or("(none: each step's own hosts)")
        )));
    }
    if journal::outcome(&lines).as_deref() == Some("succeeded") {
        return Err(OpenError::Invalid(format!(
            "run {run} already finished (succeeded); nothing to resume"
        )));
    }
    Ok(Recorded {
        run: run.to_owned(),
        header,
    })
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The run's inputs: recorded ones (resume), then defaults, then what was given; every name,
/// pattern and requirement checked. Secret values are registered with the masker.
fn inputs(
    rb: &Runbook,
    recorded: Option<&journal::Header>,
    given: &[(String, String)],
    ask: bool,
) -> Result<Vars, OpenError> {
    let invalid = |m: String| OpenError::Invalid(m);
    let mut vars = Vars::new();
    if let Some(h) = recorded {
        for (k, v) in &h.inputs {
            if !h.secret_inputs.contains(k) {
                vars.insert(k.clone(), v.clone());
            }
        }
    }
    let mut named: Vec<&str> = Vec::new();
    for (k, v) in given {
        let Some(input) = rb.inputs.iter().find(|i| i.name == *k) else {
            let known: Vec<&str> = rb.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(invalid(format!(
                "--var {k}: runbook {} has no input {k:?} (inputs: {})",
                rb.id,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        if input.secret {
            drop(Secret::new(v.clone()));
        }
        if let Some(h) = recorded
            && !input.secret
            && let Some(old) = h.inputs.get(k)
            && old != &Value::Str(v.clone())
        {
            return Err(invalid(format!(
                "--var {k}: run was started with {k} = {:?}; a resume keeps its inputs",
                old.as_text()
            )));
        }
        if let Some(p) = &input.pattern
            && !p.is_match(v)
        {
            let shown = if input.secret {
                crate::secret::MASK.to_owned()
            } else {
                format!("{v:?}")
            };
            return Err(invalid(format!(
                "--var {k}={shown} does not match the input's pattern {}",
                p.as_str()
            )));
        }
        vars.insert(k.clone(), Value::Str(v.clone()));
        named.push(k);
    }
    // Inputs nobody gave get their value when the first step that reads them is reached
    // (asked in the console, with a default computed from the diagnosis where the runbook
    // says how; the default headless). Only what can never get a value is refused now.
    for i in &rb.inputs {
        if vars.contains_key(&i.name) {
            continue;
        }
        if recorded.is_some_and(|h| h.secret_inputs.contains(&i.name)) {
            return Err(invalid(format!(
                "input {} is secret and was not recorded: give it again with --var {}=...",
                i.name, i.name
            )));
        }
        if i.required && i.default.is_none() && i.default_from.is_none() && !ask {
            return Err(invalid(format!(
                "runbook {} needs --var {}=... ({})",
                rb.id, i.name, i.description
            )));
        }
    }
    Ok(vars)
}

/// Drives an opened run to its end (or to a decision only a person can make), journaling
/// every event, intent and outcome, and passing each event to `report`. The headless front
/// end's loop; the console runs the same engine and session through its own event loop.
pub async fn drive(
    opened: &mut Opened,
    inv: &Inventory,
    conns: &Arc<Connections>,
    report: &mut dyn FnMut(&Event),
) -> Result<Option<Outcome>, JournalError> {
    let Opened { engine, session } = opened;
    let started = Instant::now();
    let mut queue: std::collections::VecDeque<Output> =
        engine.update(started.elapsed(), Input::Start).into();
    loop {
        while let Some(o) = queue.pop_front() {
            match o {
                Output::Event(e) => {
                    session.record(&e)?;
                    report(&e);
                }
                Output::Exec(req) => {
                    if !req.delay.is_zero() {
                        tokio::time::sleep(req.delay).await;
                        queue.extend(engine.update(started.elapsed(), Input::Tick));
                    }
                    // Team mode: the lock must provably be ours, or nothing is even intended.
                    // Then the intent is on disk before anything that changes a server runs;
                    // if it cannot be written, nothing runs.
                    let result = match fenced(session, &req).await {
                        Ok(()) => {
                            session.intent(&req)?;
                            let r = super::executor::execute(&req, inv, conns).await;
                            session.outcome(&req, &r)?;
                            r
                        }
                        Err(why) => ExecResult::error(&why),
                    };
                    queue.extend(engine.update(
                        started.elapsed(),
                        Input::Result {
                            seq: req.seq,
                            result,
                        },
                    ));
                }
            }
        }
        // A second person's approval is waited for here (headless): the request goes to the
        // team, and a grant from another account answers it.
        let Some(DecisionKind::SecondPerson { requested_by }) = engine.awaiting().cloned() else {
            break;
        };
        let Some(team) = session.team().cloned() else {
            break;
        };
        let step = engine
            .current_step()
            .map(|s| (s.id.clone(), s.title.clone()));
        let Some((step, title)) = step else { break };
        let request = crate::team::approvals::Request {
            run: session.run().to_owned(),
            runbook: engine.runbook().id.clone(),
            step: step.clone(),
            title,
            requested_by: requested_by.clone(),
            covers: engine.awaiting_covers(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let wait = session.approval_wait;
        let granted = match team.request_approval(&request).await {
            Ok(()) => {
                let e = Event::Note {
                    step: Some(step.clone()),
                    text: format!(
                        "waiting up to {} for a second person: opsdeck approve {} {step}",
                        humantime::format_duration(wait),
                        session.run()
                    ),
                };
                session.record(&e)?;
                report(&e);
                team.wait_for_grant(session.run(), &step, &requested_by, wait)
                    .await
                    .ok()
                    .flatten()
            }
            Err(_) => None,
        };
        match granted {
            Some(g) => queue.extend(engine.update(
                started.elapsed(),
                Input::Decision(Decision::SecondApproval { by: g.by }),
            )),
            None => break,
        }
    }
    Ok(engine.outcome())
}

/// Before a changing command in team mode: the lock must provably still be ours.
async fn fenced(session: &Session, req: &ExecRequest) -> Result<(), String> {
    if !req.changes {
        return Ok(());
    }
    match session.fence() {
        Some(lock) => lock.check().await.map_err(|e| format!("not run: {e}")),
        None => Ok(()),
    }
}

/// The journal directory runs use unless told otherwise.
pub fn journal_dir() -> PathBuf {
    journal::default_dir()
}
