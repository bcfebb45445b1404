//! The terminal front end's lifecycle: raw mode and the alternate screen on the way in,
//! restored on the way out — on return, on error and on panic — an event stream, and frame
//! pacing (at most one draw per frame interval, only of the latest state).

use std::io;
use std::time::{Duration, Instant};

use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event as TermEvent, EventStream, KeyEventKind,
};
use crossterm::execute;
use futures::StreamExt;
use tokio::sync::mpsc;

use std::path::PathBuf;
use std::sync::Arc;

use crate::app::keymap::Keymap;
use crate::app::{self, App, Command, Event};
use crate::inventory::Inventory;
use crate::probes::model::ProbeResult;
use crate::probes::plan::Intervals;
use crate::probes::scheduler::SchedulerConfig;
use crate::runbook::driver::{self, RunSpec, Session};
use crate::runbook::engine::{ExecRequest, ExecResult};
use crate::transport::Connections;
use crate::ui::{self, theme::Theme};

/// Default pacing: at most ~60 frames a second.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(16);

/// Puts the terminal back however the console ends (drop runs on return, error and unwind;
/// `ratatui::init` also installs a panic hook that restores before the message prints).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), DisableMouseCapture);
        ratatui::restore();
    }
}

/// Carries out the app's commands: journal and lock for a run, the run's commands (spawned,
/// results come back as events), journal listing and export, lab drills for learn mode. The
/// only place the console does I/O besides the terminal and the probes.
pub struct Executor {
    inv: Arc<Inventory>,
    conns: Arc<Connections>,
    journal_dir: PathBuf,
    /// The open run's journal and lock (the engine itself lives in the app's state).
    session: Option<Session>,
    events: mpsc::Sender<Event>,
    lab: crate::lab::layout::Lab,
    /// A drill check already in flight (checks are not stacked up).
    checking: bool,
    /// Where resolved drills' scores go (`lab::scores::default_path()`).
    scores: PathBuf,
}

impl Executor {
    pub fn new(
        inv: Arc<Inventory>,
        conns: Arc<Connections>,
        journal_dir: PathBuf,
        events: mpsc::Sender<Event>,
    ) -> Executor {
        // A lab's inventory lives in the lab's directory: drills act on that lab.
        let lab_dir = inv
            .source
            .as_ref()
            .and_then(|p| p.parent())
            .filter(|d| d.join(".opsdeck-lab").exists())
            .map(std::path::Path::to_path_buf);
        Executor {
            inv,
            conns,
            journal_dir,
            session: None,
            events,
            lab: crate::lab::layout::Lab::new(lab_dir.as_deref()),
            checking: false,
            scores: crate::lab::scores::default_path(),
        }
    }

    /// Saves drill scores to `path` instead of the data directory's file.
    #[must_use]
    pub fn with_scores_file(mut self, path: PathBuf) -> Executor {
        self.scores = path;
        self
    }

    fn send(&self, e: Event) {
        let tx = self.events.clone();
        tokio::spawn(async move {
            let _ = tx.send(e).await;
        });
    }

    pub fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Quit => {}
            Command::OpenRun(spec) => self.open_run(&spec),
            Command::Journal(events) => {
                if let Some(session) = self.session.as_mut() {
                    for e in &events {
                        if let Err(err) = session.record(e) {
                            tracing::error!("journal write failed: {err}");
                        }
                    }
                }
                for e in &events {
                    if let crate::runbook::engine::Event::AwaitingDecision {
                        step,
                        kind: crate::runbook::engine::DecisionKind::SecondPerson { requested_by },
                        covers,
                        ..
                    } = e
                    {
                        self.ask_second_person(step, requested_by, covers);
                    }
                }
            }
            Command::Exec(req) => {
                // The intent is on disk (synced) before anything that changes a server runs;
                // without a journal, nothing runs.
                let recorded = match self.session.as_mut() {
                    Some(session) => session.intent(&req).map_err(|e| e.to_string()),
                    None => Err("no open run".to_owned()),
                };
                if let Err(err) = recorded {
                    tracing::error!("journal intent failed: {err}");
                    let seq = req.seq;
                    return self.send(Event::ExecDone {
                        seq,
                        result: ExecResult::error(&format!(
                            "not run: the journal cannot record it ({err})"
                        )),
                    });
                }
                let inv = Arc::clone(&self.inv);
                let conns = Arc::clone(&self.conns);
                let tx = self.events.clone();
                let fence = self
                    .session
                    .as_ref()
                    .and_then(Session::fence)
                    .filter(|_| req.changes);
                tokio::spawn(async move {
                    if !req.delay.is_zero() {
                        tokio::time::sleep(req.delay).await;
                    }
                    // Team mode: the lock must provably still be ours before a change.
                    if let Some(lock) = fence
                        && let Err(e) = lock.check().await
                    {
                        let result = ExecResult::error(&format!("not run: {e}"));
                        let _ = tx.send(Event::ExecDoneFor { req, result }).await;
                        return;
                    }
                    // Health comes from the console's own state, which the app holds.
                    if matches!(req.purpose, crate::runbook::engine::Purpose::Health(_)) {
                        let _ = tx.send(Event::HealthDue(req)).await;
                        return;
                    }
                    let result = crate::runbook::executor::execute(&req, &inv, &conns).await;
                    let _ = tx.send(Event::ExecDoneFor { req, result }).await;
                });
            }
            Command::CloseRun => {
                self.session = None;
            }
            Command::ListJournal => {
                let runs = crate::runbook::journal::list(&self.journal_dir).unwrap_or_default();
                self.send(Event::JournalListed(runs));
            }
            Command::LoadJournal(run) => {
                let md = crate::runbook::journal::read(&self.journal_dir, &run)
                    .map(|l| crate::runbook::journal::markdown(&l))
                    .unwrap_or_else(|e| format!("cannot read run {run}: {e}"));
                self.send(Event::JournalLoaded { run, markdown: md });
            }
            Command::Export(run) => {
                let r = crate::runbook::journal::read(&self.journal_dir, &run)
                    .map_err(|e| e.to_string())
                    .and_then(|lines| {
                        let path = self.journal_dir.join(format!("{run}.md"));
                        crate::private_fs::write_atomic(
                            &path,
                            crate::secret::mask(&crate::runbook::journal::markdown(&lines))
                                .as_bytes(),
                        )
                        .map_err(|e| e.to_string())?;
                        Ok(path.display().to_string())
                    });
                self.send(Event::Exported(r));
            }
            Command::TopProcesses(host) => {
                let Some(h) = self.inv.host(&host).cloned() else {
                    return;
                };
                let conns = Arc::clone(&self.conns);
                let tx = self.events.clone();
                tokio::spawn(async move {
                    let result =
                        crate::probes::top::top_processes(&conns, &h, Duration::from_secs(10))
                            .await;
                    let _ = tx.send(Event::TopProcesses { host, result }).await;
                });
            }
            Command::InjectDrill(name) => {
                let lab = crate::lab::layout::Lab::new(Some(&self.lab.dir));
                let tx = self.events.clone();
                tokio::task::spawn_blocking(move || {
                    let r = crate::lab::drill::inject(&lab, &name).map_err(|e| e.to_string());
                    let _ = tx.blocking_send(Event::DrillInjected(r));
                });
            }
            Command::CheckDrill(name) => {
                if self.checking {
                    return;
                }
                self.checking = true;
                let lab = crate::lab::layout::Lab::new(Some(&self.lab.dir));
                let tx = self.events.clone();
                tokio::task::spawn_blocking(move || {
                    // A check that cannot ask the servers is neither a start nor an end.
                    let present = crate::lab::drill::check(&lab, &name)
                        .map(|o| o.present)
                        .map_err(|e| e.to_string());
                    let _ = tx.blocking_send(Event::DrillChecked {
                        drill: name,
                        present,
                    });
                });
            }
            Command::GrantApproval(req) => {
                let Some(cfg) = self.inv.team.as_ref() else {
                    return;
                };
                let team = crate::team::Team::new(cfg);
                let tx = self.events.clone();
                tokio::spawn(async move {
                    let me = crate::identity::current().to_string();
                    let r = team
                        .grant_approval(&req, &me)
                        .await
                        .map(|()| (req.run.clone(), req.step.clone()))
                        .map_err(|e| crate::secret::mask(&e.to_string()).into_owned());
                    let _ = tx.send(Event::ApprovalGiven(r)).await;
                });
            }
            Command::SaveScore(mut score) => {
                score.operator = crate::identity::current().to_string();
                let path = self.scores.clone();
                let r = crate::lab::scores::append(&path, &score)
                    .map(|()| path.display().to_string())
                    .map_err(|e| e.to_string());
                self.send(Event::ScoreSaved(r));
            }
        }
    }

    /// Opens (or resumes) a run through the run driver — the same one `opsdeck run` uses —
    /// and hands its engine to the app.
    fn open_run(&mut self, spec: &RunSpec) {
        // Opening may ask the team's etcd: off the draw loop; the session comes back through
        // `dispatch` (`SessionOpened`), the engine goes on to the app.
        let spec = spec.clone();
        let inv = Arc::clone(&self.inv);
        let dir = self.journal_dir.clone();
        let tx = self.events.clone();
        tokio::spawn(async move {
            let ev = match driver::open(&spec, &inv, &dir).await {
                Ok(opened) => Event::SessionOpened(Box::new(opened)),
                Err(e) => Event::RunRefused(crate::secret::mask(&e.to_string()).into_owned()),
            };
            let _ = tx.send(ev).await;
        });
    }

    /// Team mode: publishes the request for a second person's approval and waits for a grant
    /// from another account; the grant comes back to the app as `SecondApproved`.
    fn ask_second_person(
        &self,
        step: &str,
        requested_by: &str,
        covers: &[crate::runbook::engine::Cover],
    ) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let Some(team) = session.team().cloned() else {
            return;
        };
        let run = session.run().to_owned();
        let request = crate::team::approvals::Request {
            run: run.clone(),
            runbook: String::new(),
            step: step.to_owned(),
            title: String::new(),
            requested_by: requested_by.to_owned(),
            covers: covers.to_vec(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let tx = self.events.clone();
        let requested_by = requested_by.to_owned();
        let step = step.to_owned();
        tokio::spawn(async move {
            if team.request_approval(&request).await.is_err() {
                return;
            }
            if let Ok(Some(g)) = team
                .wait_for_grant(
                    &run,
                    &step,
                    &requested_by,
                    crate::team::approvals::GRANT_TTL,
                )
                .await
            {
                let _ = tx.send(Event::SecondApproved { by: g.by }).await;
            }
        });
    }

    /// Keeps the opened run's session; its engine goes to the app.
    fn opened(&mut self, opened: driver::Opened) -> Event {
        let driver::Opened { engine, session } = opened;
        let ev = Event::RunOpened {
            run_id: session.run().to_owned(),
            journal_path: session.path().display().to_string(),
            engine: Box::new(engine),
        };
        self.session = Some(session);
        ev
    }

    /// Journals a finished command's outcome; the event then goes to the app.
    fn finished(&mut self, req: &ExecRequest, result: &ExecResult) {
        if let Some(session) = self.session.as_mut()
            && let Err(err) = session.outcome(req, result)
        {
            tracing::error!("journal outcome failed: {err}");
        }
    }
}

/// Feeds one event to the app and hands the commands it returns to the executor. The loop
/// and the end-to-end tests both drive the console through this.
pub fn dispatch(app: &mut App, exec: &mut Executor, ev: Event) {
    let ev = match ev {
        Event::ExecDoneFor { req, result } => {
            exec.finished(&req, &result);
            Event::ExecDone {
                seq: req.seq,
                result,
            }
        }
        Event::DrillChecked { drill, present } => {
            exec.checking = false;
            Event::DrillChecked { drill, present }
        }
        Event::SessionOpened(opened) => exec.opened(*opened),
        other => other,
    };
    for cmd in app::update(app, ev) {
        exec.handle(cmd);
    }
}

/// Runs the console until the user quits. Probe results arrive on `probes` as owned data; the
/// loop never waits on a host.
pub async fn run(
    mut app: App,
    theme: Theme,
    mut probes: mpsc::Receiver<ProbeResult>,
    mut exec: Executor,
    mut results: mpsc::Receiver<Event>,
) -> io::Result<()> {
    let mut terminal = ratatui::init();
    let _guard = TerminalGuard;
    execute!(io::stdout(), EnableMouseCapture)?;
    let size = terminal.size()?;
    app::update(&mut app, Event::Resize(size.width, size.height));

    let mut events = EventStream::new();
    let mut clock = tokio::time::interval(Duration::from_millis(500));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_draw = Instant::now()
        .checked_sub(FRAME_INTERVAL)
        .unwrap_or_else(Instant::now);
    let mut probes_open = true;
    let apply = dispatch;

    loop {
        if dirty && last_draw.elapsed() >= FRAME_INTERVAL {
            terminal.draw(|f| ui::render(&app, &theme, f))?;
            last_draw = Instant::now();
            dirty = false;
        }
        let next_draw = tokio::time::Instant::from_std(last_draw + FRAME_INTERVAL);
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(TermEvent::Key(k))) if k.kind == KeyEventKind::Press => {
                    apply(&mut app, &mut exec, Event::Key(k));
                    dirty = true;
                }
                Some(Ok(TermEvent::Mouse(m))) => {
                    apply(&mut app, &mut exec, Event::Mouse(m));
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(w, h))) => {
                    apply(&mut app, &mut exec, Event::Resize(w, h));
                    terminal.autoresize()?;
                    dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            },
            r = probes.recv(), if probes_open => match r {
                Some(r) => {
                    // Fold everything already waiting before the next draw, evaluating the
                    // checks once for the batch (probes finish in bursts).
                    let mut batch = vec![r];
                    while let Ok(r) = probes.try_recv() {
                        batch.push(r);
                    }
                    apply(&mut app, &mut exec, Event::Probes(batch));
                    dirty = true;
                }
                None => probes_open = false,
            },
            Some(ev) = results.recv() => {
                apply(&mut app, &mut exec, ev);
                dirty = true;
            }
            _ = clock.tick() => {
                apply(&mut app, &mut exec, Event::Tick { now: Instant::now(), wall: chrono::Utc::now() });
                dirty = true;
            }
            () = tokio::time::sleep_until(next_draw), if dirty => {}
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

/// The theme to draw with: `name` (built in or from the user's theme dir), stripped of colour
/// when `NO_COLOR` is set to anything non-empty.
pub fn theme_from_env(name: &str) -> Result<Theme, crate::ui::theme::ThemeError> {
    let theme = Theme::load(name)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    Ok(if no_color { theme.monochrome() } else { theme })
}

/// Opens the console on `inv`: starts the probe scheduler over every host and runs the
/// terminal loop until the user quits. The first frame is drawn before any probe answers.
pub async fn launch(
    inv: Inventory,
    theme: Theme,
    keymap: Keymap,
    runbooks: &crate::runbook::Sources,
    view: app::View,
) -> anyhow::Result<()> {
    let inv = std::sync::Arc::new(inv);
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let conns = std::sync::Arc::new(Connections::new());
    let (health, rx, probes) = crate::probes::driver::start(
        Arc::clone(&conns),
        &inv,
        &hosts,
        &Intervals::default(),
        SchedulerConfig::default(),
    )?
    .into_parts();
    let conns_for_exec = conns;
    // The console offers what loads (the user's runbooks over the built-in ones); a broken
    // runbook file is reported by `opsdeck check`.
    let runbooks: Vec<Arc<crate::runbook::Runbook>> = runbooks
        .load_ok(Some(&inv))?
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut app = App::new(
        Arc::clone(&inv),
        health,
        keymap,
        Instant::now(),
        chrono::Utc::now(),
    )
    .with_runbooks(runbooks);
    app.view = view;
    let (etx, erx) = mpsc::channel(256);
    let exec = Executor::new(
        Arc::clone(&inv),
        conns_for_exec,
        crate::runbook::journal::default_dir(),
        etx,
    );
    // Offer unfinished runs from the journal (shown in the header, resumed from the journal view).
    let mut exec = exec;
    exec.handle(Command::ListJournal);
    let watcher = inv.team.as_ref().map(|cfg| {
        tokio::spawn(watch_team(
            crate::team::Team::new(cfg),
            crate::runbook::journal::default_dir(),
            exec.events.clone(),
        ))
    });
    let result = run(app, theme, rx, exec, erx).await;
    if let Some(w) = watcher {
        w.abort();
    }
    // Probes in flight may be waiting on slow hosts: do not hold the exit for them.
    probes.abort();
    Ok(result?)
}

/// Team mode: keeps the console's view of the team current. Reads the team's state (runs
/// holding locks, approvals waiting) and copies other operators' runs into the journal
/// directory, then waits on an etcd watch for the next change (at most a few seconds, so a
/// lost etcd shows as soon as it is lost). Everything it learns goes to the app as events.
async fn watch_team(team: crate::team::Team, dir: PathBuf, tx: mpsc::Sender<Event>) {
    let me = crate::identity::current().to_string();
    loop {
        let revision = match team.snapshot().await {
            Ok(snap) => {
                let revision = snap.revision;
                let view = app::TeamView {
                    me: me.clone(),
                    state: Ok(snap),
                };
                if tx.send(Event::Team(view)).await.is_err() {
                    return;
                }
                if matches!(team.sync_runs(&dir).await, Ok(n) if n > 0)
                    && tx.send(Event::JournalSynced).await.is_err()
                {
                    return;
                }
                Some(revision)
            }
            Err(e) => {
                let view = app::TeamView {
                    me: me.clone(),
                    state: Err(crate::secret::mask(&e.to_string()).into_owned()),
                };
                if tx.send(Event::Team(view)).await.is_err() {
                    return;
                }
                None
            }
        };
        match revision {
            Some(rev) => {
                if team
                    .changed_since(rev, Duration::from_secs(3))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    // Changes come in bursts (a step's journal lines): take them together.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            None => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}
