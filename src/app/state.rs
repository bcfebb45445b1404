//! The console's state and its pure `update`: every outside happening arrives as an [`Event`];
//! `update` changes the state and returns [`Command`]s for the executor to carry out. Nothing
//! here touches the terminal, the network or the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};

use super::browser::{self, BrowserState};
use super::feed::Feed;
use super::keymap::{Action, Context, Key, Keymap};
use super::run::{RunState, Typing};
use super::stack::{self, TierRow};
use crate::inventory::Inventory;
use crate::probes::check::{self, Check, State};
use crate::probes::model::{ProbeResult, TargetKey};
use crate::probes::state::HealthStore;
use crate::runbook::driver::RunSpec;
use crate::runbook::engine::{
    self as rengine, Decision, DecisionKind, ExecRequest, ExecResult, Input as RunInput,
};
use crate::runbook::journal::RunSummary;
pub use crate::runbook::suggest::{Suggestion, suggest};
use crate::runbook::{Runbook, Severity};

/// The top-level views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Detail,
    Runbooks,
    Run,
    Journal,
    Learn,
}

impl View {
    pub fn title(self) -> &'static str {
        match self {
            View::Dashboard => "Dashboard",
            View::Detail => "Host",
            View::Runbooks => "Runbooks",
            View::Run => "Run",
            View::Journal => "Journal",
            View::Learn => "Learn",
        }
    }
}

/// Everything the console shows. Rendering is a pure function of this.
pub struct App {
    pub inventory: Arc<Inventory>,
    pub health: HealthStore,
    /// Checks as of the last tick or sample, so drawing never evaluates anything.
    pub checks: Vec<Check>,
    /// Per host: its worst state and its checks (indexes into `checks`), worst first, then
    /// by id. Rebuilt with `checks`, so drawing a fleet is linear in its size.
    by_host: HashMap<String, (State, Vec<usize>)>,
    /// Every host's probe targets (the plan does not change while the console runs).
    targets: HashMap<String, Vec<TargetKey>>,
    /// The stack map the dashboard draws: rebuilt with `checks`.
    pub stack: Vec<TierRow>,
    /// What changed, when and why: check state changes, runs, drills.
    pub feed: Feed,
    /// The lab's drills (name, what it does), as learn mode offers them.
    pub drills: Vec<(String, String)>,
    pub now: Instant,
    pub wall: DateTime<Utc>,
    pub view: View,
    pub help: bool,
    /// Lines the help overlay is scrolled by (short terminals).
    pub help_scroll: u16,
    pub keymap: Keymap,
    pub dashboard: DashboardState,
    pub detail: DetailState,
    pub runbooks: Vec<Arc<Runbook>>,
    /// Runbooks health suggests now, most severe first.
    pub suggestions: Vec<Suggestion>,
    pub browser: BrowserState,
    pub run: Option<RunState>,
    pub journal: JournalState,
    pub learn: LearnState,
    /// Team mode (`[team]` in the inventory): what the team's etcd last said, or why it
    /// could not be read. `None` when working alone or before the first answer.
    pub team: Option<TeamView>,
    /// A step of another operator's run this operator is asked to approve (the overlay).
    pub approving: Option<crate::team::approvals::Request>,
    /// A transient message for the footer (what a key did, an error).
    pub flash: Option<String>,
    pub quit: bool,
    /// Terminal size at the last draw, for mouse hit-testing and paging.
    pub size: (u16, u16),
}

/// The team as the console last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamView {
    /// This console's operator (`account@machine`).
    pub me: String,
    /// The team's state, or why etcd could not be read (changing steps are then refused).
    pub state: Result<crate::team::Snapshot, String>,
}

impl TeamView {
    /// Steps waiting for a second person that this operator may approve (asked by others).
    pub fn approvable(&self) -> Vec<&crate::team::approvals::Request> {
        let me = crate::team::approvals::account(&self.me);
        match &self.state {
            Ok(s) => s
                .pending
                .iter()
                .filter(|r| crate::team::approvals::account(&r.requested_by) != me)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DashboardState {
    /// Index into `inventory.hosts`.
    pub selected: usize,
}

#[derive(Debug, Clone, Default)]
pub struct JournalState {
    pub runs: Vec<RunSummary>,
    pub selected: usize,
    /// The selected run's timeline (Markdown), once loaded.
    pub timeline: Option<(String, String)>,
    pub scroll: u16,
}

/// The onboarding walkthrough: the topology, each runbook in training mode, then the drills.
#[derive(Debug, Clone, Default)]
pub struct LearnState {
    pub page: usize,
    /// The drill selected on the drills page (index into `App::drills`).
    pub selected: usize,
    /// The drill the trainee is resolving.
    pub drill: Option<DrillRun>,
    /// The last drill resolved, as saved.
    pub result: Option<crate::lab::scores::Score>,
}

/// A learn-mode drill in progress. Its clock starts only when the servers are seen with the
/// fault (`confirmed`), never at the injection: a fault still settling is not yet a fault to
/// resolve, and "resolved in 0:00" before it is in place would teach nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillRun {
    pub drill: String,
    /// The runbook paired with it (`drill = "…"` in the runbook file), and its RTO.
    pub runbook: Option<String>,
    pub rto: Option<std::time::Duration>,
    /// The injection reported success.
    pub injected: bool,
    /// When the servers first showed the fault: the clock's start.
    pub confirmed: Option<(Instant, DateTime<Utc>)>,
    /// Checks that found the fault not (yet) in place before it was confirmed.
    pub pending_checks: u32,
    pub hints: u32,
    /// Steps that ran in the runs started during the drill.
    pub steps: u32,
    /// Runs started during the drill.
    pub runs: Vec<String>,
}

impl DrillRun {
    /// Time on the drill's clock (zero until the fault is confirmed).
    pub fn elapsed(&self, now: Instant) -> std::time::Duration {
        self.confirmed
            .map(|(at, _)| now.saturating_duration_since(at))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default)]
pub struct DetailState {
    /// Top processes fetched on demand: (host, rows or the reason it failed).
    pub top: Option<(String, Result<Vec<crate::probes::top::ProcessRow>, String>)>,
    /// Index into the selected host's checks.
    pub selected: usize,
    pub scroll: u16,
}

/// A role observation older than this is stale: the host's role is then the inventory's word.
pub const TOPOLOGY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The clock moved (the loop sends one per frame interval at most).
    Tick {
        now: Instant,
        wall: DateTime<Utc>,
    },
    Probe(Box<ProbeResult>),
    /// Several probe results that arrived together: folded in, then checks are evaluated once.
    Probes(Vec<ProbeResult>),
    /// The run driver opened the run (target resolved, lock taken, journal written): its
    /// engine, ready to start (a resumed run's engine knows where to continue).
    RunOpened {
        run_id: String,
        journal_path: String,
        engine: Box<rengine::Engine>,
    },
    /// Team mode: what the team's etcd says now (runs, approvals waiting), or why it could
    /// not be read; sent on every change the console's watch sees.
    Team(TeamView),
    /// Team mode: the journal directory now holds newer copies of other operators' runs.
    JournalSynced,
    /// Team mode: this operator's approval was recorded (the run and step), or why not.
    ApprovalGiven(Result<(String, String), String>),
    /// Team mode: another account approved the step waiting for a second person.
    SecondApproved {
        by: String,
    },
    /// From the executor's task: the run driver opened the run (the executor keeps the
    /// session, the app gets `RunOpened`).
    SessionOpened(Box<crate::runbook::driver::Opened>),
    /// The run could not start (lock held, journal not writable): the message says why.
    RunRefused(String),
    /// A command of the run finished.
    ExecDone {
        seq: u64,
        result: ExecResult,
    },
    /// A run's health request whose wait is over: answered from the console's health.
    HealthDue(Box<ExecRequest>),
    /// From the executor's task: a command finished (journaled by the loop, then `ExecDone`).
    ExecDoneFor {
        req: Box<ExecRequest>,
        result: ExecResult,
    },
    JournalListed(Vec<RunSummary>),
    JournalLoaded {
        run: String,
        markdown: String,
    },
    Exported(Result<String, String>),
    /// A learn-mode drill was injected (or failed to be).
    DrillInjected(Result<String, String>),
    /// Whether drill `drill`'s fault is present, judged on the real servers (or why it could
    /// not be judged).
    DrillChecked {
        drill: String,
        present: Result<bool, String>,
    },
    /// A drill's score was saved (the file) or not (why).
    ScoreSaved(Result<String, String>),
    TopProcesses {
        host: String,
        result: Result<Vec<crate::probes::top::ProcessRow>, String>,
    },
}

/// Something for the executor to do.
#[derive(Debug, Clone)]
pub enum Command {
    Quit,
    /// Open (or resume) a run through the run driver, then report `RunOpened` or
    /// `RunRefused`.
    OpenRun(Box<RunSpec>),
    /// Run this (after journaling the intent) and report `ExecDone`.
    Exec(Box<ExecRequest>),
    /// Append these events to the run's journal.
    Journal(Vec<rengine::Event>),
    /// The run ended: release its lock.
    CloseRun,
    ListJournal,
    LoadJournal(String),
    Export(String),
    InjectDrill(String),
    /// Fetch a host's busiest processes now.
    TopProcesses(String),
    CheckDrill(String),
    /// Team mode: approve another operator's step as this console's operator.
    GrantApproval(Box<crate::team::approvals::Request>),
    /// Append a resolved drill's score to the scores file (the executor adds the operator).
    SaveScore(Box<crate::lab::scores::Score>),
}

impl App {
    pub fn new(
        inventory: Arc<Inventory>,
        health: HealthStore,
        keymap: Keymap,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> App {
        let checks = health.checks(now);
        let by_host = index_by_host(&checks);
        let targets = stack::targets_by_host(&health);
        let mut app = App {
            inventory,
            health,
            checks,
            by_host,
            targets,
            stack: Vec::new(),
            feed: Feed::default(),
            drills: crate::lab::drill::DRILLS
                .iter()
                .map(|(n, d)| ((*n).to_owned(), (*d).to_owned()))
                .collect(),
            now,
            wall,
            view: View::Dashboard,
            help: false,
            help_scroll: 0,
            keymap,
            dashboard: DashboardState::default(),
            detail: DetailState::default(),
            runbooks: Vec::new(),
            suggestions: Vec::new(),
            browser: BrowserState {
                suggested_first: true,
                ..BrowserState::default()
            },
            run: None,
            journal: JournalState::default(),
            team: None,
            approving: None,
            learn: LearnState::default(),
            flash: None,
            quit: false,
            size: (80, 24),
        };
        app.feed.observe(&app.checks, wall);
        app.rebuild_stack();
        app
    }

    fn rebuild_stack(&mut self) {
        self.stack = stack::build(
            &self.inventory,
            &self.health,
            &self.targets,
            &self.checks,
            &self.by_host,
        );
    }

    /// Hosts in the order the dashboard lists them (tier by tier), as indexes into
    /// `inventory.hosts`.
    pub fn dashboard_order(&self) -> Vec<usize> {
        self.stack
            .iter()
            .flat_map(|t| t.hosts.iter().map(|h| h.index))
            .collect()
    }

    /// The runbook paired with a drill (`drill = "…"` in its file).
    pub fn drill_runbook(&self, drill: &str) -> Option<&Arc<Runbook>> {
        self.runbooks
            .iter()
            .find(|r| r.drill.as_deref() == Some(drill))
    }

    /// The host under the dashboard cursor.
    /// What the servers report about live roles right now (from the latest samples).
    pub fn topology(&self) -> crate::probes::topology::Topology {
        crate::probes::topology::Topology::observe(
            &self.inventory,
            &self.health,
            self.now,
            TOPOLOGY_MAX_AGE,
        )
    }

    pub fn selected_host(&self) -> Option<&crate::inventory::Host> {
        self.inventory.hosts.get(self.dashboard.selected)
    }

    /// Checks of one host, worst first, then by id.
    pub fn host_checks(&self, host: &str) -> Vec<&Check> {
        self.by_host
            .get(host)
            .map(|(_, idx)| idx.iter().map(|&i| &self.checks[i]).collect())
            .unwrap_or_default()
    }

    /// A host's worst state (unknown when nothing is known yet).
    pub fn host_state(&self, host: &str) -> State {
        self.by_host.get(host).map_or(State::Unknown, |(s, _)| *s)
    }

    pub fn overall(&self) -> State {
        if self.checks.is_empty() {
            return State::Unknown;
        }
        check::worst(&self.checks)
    }

    fn context(&self) -> Context {
        if self.approving.is_some() {
            // The approval overlay answers like a confirmation: y / n.
            return Context::Run;
        }
        match self.view {
            View::Run => Context::Run,
            View::Runbooks => Context::Browser,
            _ => Context::Global,
        }
    }

    /// Loads the runbooks the console offers (a separate step so tests and `launch` share `new`).
    #[must_use]
    pub fn with_runbooks(mut self, runbooks: Vec<Arc<Runbook>>) -> App {
        self.runbooks = runbooks;
        self.refresh_checks();
        self
    }

    fn refresh_checks(&mut self) {
        self.checks = self.health.checks(self.now);
        self.by_host = index_by_host(&self.checks);
        let topology = self.topology();
        self.suggestions = suggest(
            &self.runbooks,
            &self.inventory,
            &self.checks,
            Some(&topology),
        );
        self.feed.observe(&self.checks, self.wall);
        self.rebuild_stack();
    }

    /// Visible runbooks in the browser, as indexes into `runbooks`.
    pub fn browser_list(&self) -> Vec<usize> {
        let suggested: Vec<usize> = self.suggestions.iter().map(|s| s.runbook).collect();
        browser::visible(&self.browser, &self.runbooks, &suggested)
    }

    pub fn selected_runbook(&self) -> Option<&Arc<Runbook>> {
        let list = self.browser_list();
        list.get(self.browser.selected.min(list.len().saturating_sub(1)))
            .map(|i| &self.runbooks[*i])
    }

    /// Suggestions that concern one host.
    pub fn host_suggestions(&self, host: &str) -> Vec<&Suggestion> {
        self.suggestions
            .iter()
            .filter(|s| s.hosts.iter().any(|h| h == host))
            .collect()
    }
}

/// Each host's worst state and its checks, worst first, then by id.
fn index_by_host(checks: &[Check]) -> HashMap<String, (State, Vec<usize>)> {
    let mut by: HashMap<String, (State, Vec<usize>)> = HashMap::new();
    for (i, c) in checks.iter().enumerate() {
        by.entry(c.host.clone())
            .or_insert_with(|| (c.state, Vec::new()))
            .1
            .push(i);
    }
    for (state, idx) in by.values_mut() {
        idx.sort_by(|&a, &b| {
            let (a, b) = (&checks[a], &checks[b]);
            b.state.cmp(&a.state).then_with(|| a.id.cmp(&b.id))
        });
        *state = check::worst(idx.iter().map(|&i| &checks[i]));
    }
    by
}

/// The one place state changes.
pub fn update(app: &mut App, event: Event) -> Vec<Command> {
    match event {
        Event::Tick { now, wall } => {
            app.now = now;
            app.wall = wall;
            app.refresh_checks();
            let mut cmds = Vec::new();
            if app
                .run
                .as_ref()
                .is_some_and(|r| r.engine.is_some() && r.finished.is_none())
            {
                let health = super::run::RunState::health_input(&app.checks);
                cmds.extend(feed(app, health));
                cmds.extend(feed(app, RunInput::Tick));
            }
            if let Some(d) = app.learn.drill.as_ref().filter(|d| d.injected) {
                cmds.push(Command::CheckDrill(d.drill.clone()));
            }
            cmds
        }
        Event::Probe(result) => {
            app.health.update(*result);
            app.refresh_checks();
            Vec::new()
        }
        Event::Probes(results) => {
            for r in results {
                app.health.update(r);
            }
            app.refresh_checks();
            Vec::new()
        }
        Event::RunOpened {
            run_id,
            journal_path,
            engine,
        } => on_run_opened(app, run_id, journal_path, *engine),
        Event::RunRefused(msg) => {
            app.run = None;
            app.flash = Some(msg);
            Vec::new()
        }
        // The executor unpacks it before the app sees it (`tui::dispatch`); a stray one is
        // closed, never half-opened.
        Event::SessionOpened(_) => vec![Command::CloseRun],
        Event::SecondApproved { by } => decide(app, Decision::SecondApproval { by }),
        Event::Team(view) => {
            app.team = Some(view);
            // A request that went away (granted elsewhere, expired) closes its overlay.
            if let Some(r) = &app.approving
                && !app.team.as_ref().is_some_and(|t| {
                    t.approvable()
                        .iter()
                        .any(|p| p.run == r.run && p.step == r.step)
                })
            {
                app.approving = None;
            }
            Vec::new()
        }
        Event::JournalSynced => {
            if app.view == View::Journal {
                vec![Command::ListJournal]
            } else {
                Vec::new()
            }
        }
        Event::ApprovalGiven(r) => {
            app.flash = Some(match r {
                Ok((run, step)) => format!("approved step {step} of run {run}"),
                Err(e) => format!("approval not recorded: {e}"),
            });
            Vec::new()
        }
        Event::ExecDone { seq, result } => feed(app, RunInput::Result { seq, result }),
        Event::HealthDue(req) => answer_health(app, &req),
        Event::ExecDoneFor { req, result } => feed(
            app,
            RunInput::Result {
                seq: req.seq,
                result,
            },
        ),
        Event::JournalListed(runs) => {
            // The feed tells the last day; older runs are in the journal view.
            app.feed
                .journal_runs(&runs, app.wall - chrono::Duration::hours(24));
            // A relisting (another operator's run changed) keeps the run the operator is on.
            let was = app
                .journal
                .runs
                .get(app.journal.selected)
                .map(|r| r.run.clone());
            app.journal.runs = runs;
            app.journal.runs.reverse();
            app.journal.selected = was
                .and_then(|w| app.journal.runs.iter().position(|r| r.run == w))
                .unwrap_or(0);
            app.journal
                .runs
                .get(app.journal.selected)
                .map(|r| vec![Command::LoadJournal(r.run.clone())])
                .unwrap_or_default()
        }
        Event::JournalLoaded { run, markdown } => {
            // The same run reloaded (it grew) keeps its scroll.
            if app.journal.timeline.as_ref().is_none_or(|(r, _)| *r != run) {
                app.journal.scroll = 0;
            }
            app.journal.timeline = Some((run, markdown));
            Vec::new()
        }
        Event::Exported(r) => {
            match r {
                Ok(path) => {
                    if let Some(run) = app.run.as_mut() {
                        run.exported = Some(path.clone());
                    }
                    app.flash = Some(format!("incident timeline written to {path}"));
                }
                Err(e) => app.flash = Some(format!("export failed: {e}")),
            }
            Vec::new()
        }
        Event::DrillInjected(r) => on_drill_injected(app, r),
        Event::DrillChecked { drill, present } => on_drill_checked(app, &drill, present),
        Event::ScoreSaved(r) => {
            app.flash = Some(match r {
                Ok(path) => format!("drill score saved to {path} (opsdeck drill scores)"),
                Err(e) => format!("drill score not saved: {e}"),
            });
            Vec::new()
        }
        Event::TopProcesses { host, result } => {
            app.detail.top = Some((host, result));
            Vec::new()
        }
        Event::Resize(w, h) => {
            app.size = (w, h);
            Vec::new()
        }
        Event::Mouse(m) => {
            on_mouse(app, m);
            Vec::new()
        }
        Event::Key(k) => {
            // Text entry (inputs, notes, typed confirmations, the browser search) takes keys
            // before the keymap does.
            if let Some(cmds) = typing_key(app, &k) {
                return cmds;
            }
            if app.view == View::Runbooks && app.browser.searching && !app.help {
                return browser_search_key(app, &k);
            }
            let Some(key) = Key::from_event(&k) else {
                return Vec::new();
            };
            match app.keymap.action(app.context(), key) {
                Some(action) => on_action(app, action),
                None => Vec::new(),
            }
        }
    }
}

fn on_action(app: &mut App, action: Action) -> Vec<Command> {
    if app.help {
        // The help overlay takes every key: these close it, the movement keys scroll it.
        match action {
            Action::Help | Action::Back | Action::Quit => {
                app.help = false;
                app.help_scroll = 0;
            }
            Action::Down | Action::PageDown => {
                app.help_scroll =
                    app.help_scroll
                        .saturating_add(if action == Action::Down { 1 } else { 10 });
            }
            Action::Up | Action::PageUp => {
                app.help_scroll =
                    app.help_scroll
                        .saturating_sub(if action == Action::Up { 1 } else { 10 });
            }
            _ => {}
        }
        return Vec::new();
    }
    app.flash = None;
    if let Some(req) = app.approving.clone() {
        // The approval overlay takes every key: y approves, n or esc closes it.
        match action {
            Action::Confirm => {
                app.approving = None;
                return vec![Command::GrantApproval(Box::new(req))];
            }
            Action::Deny | Action::Back | Action::Approve => app.approving = None,
            Action::Quit => {
                app.quit = true;
                return vec![Command::Quit];
            }
            _ => {}
        }
        return Vec::new();
    }
    match action {
        Action::Approve => {
            let first = app
                .team
                .as_ref()
                .and_then(|t| t.approvable().first().map(|r| (*r).clone()));
            match first {
                Some(r) => app.approving = Some(r),
                None => {
                    app.flash = Some(if app.team.is_some() {
                        "no step of another operator waits for an approval".to_owned()
                    } else {
                        "approvals need team mode ([team] in the inventory)".to_owned()
                    });
                }
            }
        }
        Action::Quit => {
            app.quit = true;
            return vec![Command::Quit];
        }
        Action::Help => app.help = true,
        Action::Dashboard => app.view = View::Dashboard,
        Action::Runbooks => app.view = View::Runbooks,
        Action::Run => app.view = View::Run,
        Action::Journal => {
            app.view = View::Journal;
            return vec![Command::ListJournal];
        }
        Action::Learn => app.view = View::Learn,
        Action::Hint => hint(app),
        Action::NextView | Action::PrevView => {
            const ORDER: [View; 5] = [
                View::Dashboard,
                View::Runbooks,
                View::Run,
                View::Journal,
                View::Learn,
            ];
            let i = ORDER.iter().position(|v| *v == app.view).unwrap_or(0);
            let n = ORDER.len();
            let j = if action == Action::NextView {
                (i + 1) % n
            } else {
                (i + n - 1) % n
            };
            app.view = ORDER[j];
        }
        _ => match app.view {
            View::Dashboard => dashboard_action(app, action),
            View::Detail => return detail_action(app, action),
            View::Runbooks => return browser_action(app, action),
            View::Run => return run_action(app, action),
            View::Journal => return journal_action(app, action),
            View::Learn => return learn_action(app, action),
        },
    }
    Vec::new()
}

fn dashboard_action(app: &mut App, action: Action) {
    // Moves follow the map as drawn: hosts tier by tier, one per row.
    let order = app.dashboard_order();
    if order.is_empty() {
        return;
    }
    let n = order.len();
    let at = order
        .iter()
        .position(|&i| i == app.dashboard.selected)
        .unwrap_or(0);
    let tier_of = |pos: usize| app.inventory.hosts[order[pos]].tier.as_str();
    let page = usize::from(app.size.1.saturating_sub(4) / 2).max(1);
    let to = match action {
        Action::Down => (at + 1).min(n - 1),
        Action::Up => at.saturating_sub(1),
        Action::PageDown => (at + page).min(n - 1),
        Action::PageUp => at.saturating_sub(page),
        // Right / left jump to the first host of the next / previous tier.
        Action::Right => (at..n).find(|&p| tier_of(p) != tier_of(at)).unwrap_or(at),
        Action::Left => match (0..at).rev().find(|&p| tier_of(p) != tier_of(at)) {
            Some(prev_last) => {
                let t = tier_of(prev_last);
                (0..=prev_last)
                    .find(|&p| tier_of(p) == t)
                    .unwrap_or(prev_last)
            }
            None => 0,
        },
        Action::Top => 0,
        Action::Bottom => n - 1,
        Action::Open => {
            app.view = View::Detail;
            app.detail = DetailState::default();
            at
        }
        _ => at,
    };
    app.dashboard.selected = order[to];
}

fn detail_action(app: &mut App, action: Action) -> Vec<Command> {
    let count = app
        .selected_host()
        .map_or(0, |h| app.host_checks(&h.name).len());
    if action == Action::TopProcesses {
        let Some(name) = app.selected_host().map(|h| h.name.clone()) else {
            return Vec::new();
        };
        app.flash = Some(format!("fetching top processes on {name}…"));
        return vec![Command::TopProcesses(name)];
    }
    if action == Action::Open {
        // Enter on a host with a problem opens the runbook that fits it.
        let top = app
            .selected_host()
            .and_then(|h| app.host_suggestions(&h.name).first().map(|s| s.runbook));
        if let Some(rb) = top {
            focus_runbook(app, rb);
        }
        return Vec::new();
    }
    let d = &mut app.detail;
    match action {
        Action::Back => app.view = View::Dashboard,
        Action::Down => d.selected = (d.selected + 1).min(count.saturating_sub(1)),
        Action::Up => d.selected = d.selected.saturating_sub(1),
        Action::Top => d.selected = 0,
        Action::Bottom => d.selected = count.saturating_sub(1),
        Action::PageDown => d.scroll = d.scroll.saturating_add(10),
        Action::PageUp => d.scroll = d.scroll.saturating_sub(10),
        _ => {}
    }
    Vec::new()
}

fn on_mouse(app: &mut App, m: MouseEvent) {
    match (app.view, m.kind) {
        (View::Dashboard, MouseEventKind::Down(MouseButton::Left)) => {
            // Hit-test against the same layout the dashboard draws.
            let boxes = super::layout::host_boxes(app, super::layout::body_area(app, app.size));
            if let Some(&(i, ..)) = boxes
                .iter()
                .find(|(_, x, y, w)| m.row == *y && m.column >= *x && m.column < x + w)
            {
                if app.dashboard.selected == i {
                    app.view = View::Detail;
                    app.detail = DetailState::default();
                }
                app.dashboard.selected = i;
            }
        }
        (View::Dashboard, MouseEventKind::ScrollDown) => dashboard_action(app, Action::Down),
        (View::Dashboard, MouseEventKind::ScrollUp) => dashboard_action(app, Action::Up),
        (View::Detail, MouseEventKind::ScrollDown) => {
            detail_action(app, Action::Down);
        }
        (View::Detail, MouseEventKind::ScrollUp) => {
            detail_action(app, Action::Up);
        }
        _ => {}
    }
}

/// `m:ss` for clocks.
pub fn mmss(d: std::time::Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// Which runbooks the checks call for, most severe first (then by runbook severity).
/// Shows runbook `index` selected in the browser.
fn focus_runbook(app: &mut App, index: usize) {
    app.browser.query.clear();
    app.browser.tier = None;
    app.browser.severity = None;
    app.view = View::Runbooks;
    if let Some(pos) = app.browser_list().iter().position(|i| *i == index) {
        app.browser.selected = pos;
    }
}

/// Starts the selected runbook: prompts for its inputs first, if it has any.
fn start_runbook(app: &mut App, rb: Arc<Runbook>, dry_run: bool, training: bool) -> Vec<Command> {
    if app
        .run
        .as_ref()
        .is_some_and(|r| r.finished.is_none() && r.engine.is_some())
    {
        app.flash = Some("a run is in progress: finish or abort it first".to_owned());
        app.view = View::Run;
        return Vec::new();
    }
    let mut run = RunState::new(Arc::clone(&rb), app.now);
    run.dry_run = dry_run;
    run.training = training;
    if !training {
        run.narrow = app
            .suggestions
            .iter()
            .find(|s| Arc::ptr_eq(&app.runbooks[s.runbook], &rb))
            .map(|s| s.hosts.join(","));
    }
    // Inputs are asked when the first step that needs them is reached, after the
    // diagnosis before it is on screen. A real run while a drill is on is the drill's run:
    // its journal and export say so.
    let drill = app
        .learn
        .drill
        .as_ref()
        .filter(|_| !dry_run)
        .map(|d| d.drill.clone());
    let cmd = open_command(&run, app.topology(), drill);
    app.run = Some(run);
    app.view = View::Run;
    vec![cmd]
}

/// What the run driver is asked to open for `run` (inputs as typed, the narrowing target).
fn open_command(
    run: &RunState,
    topology: crate::probes::topology::Topology,
    drill: Option<String>,
) -> Command {
    let mut spec = RunSpec::new(Arc::clone(&run.runbook));
    spec.topology = Some(topology);
    spec.drill = drill;
    spec.inputs = run
        .inputs
        .iter()
        .map(|(k, v)| (k.clone(), v.as_text()))
        .collect();
    spec.dry_run = run.dry_run;
    spec.target.clone_from(&run.narrow);
    Command::OpenRun(Box::new(spec))
}

fn on_run_opened(
    app: &mut App,
    run_id: String,
    journal_path: String,
    engine: rengine::Engine,
) -> Vec<Command> {
    let now = app.now;
    let Some(run) = app.run.as_mut() else {
        return vec![Command::CloseRun];
    };
    run.inputs = engine.vars().clone();
    run.engine = Some(engine);
    run.run_id = Some(run_id);
    run.journal_path = Some(journal_path);
    run.started = now;
    let health = super::run::RunState::health_input(&app.checks);
    let mut cmds = feed(app, health);
    cmds.extend(feed(app, RunInput::Start));
    cmds
}

/// Feeds the run's engine and turns what it says into commands for the executor.
fn feed(app: &mut App, input: RunInput) -> Vec<Command> {
    let now = app.now;
    let Some(run) = app.run.as_mut() else {
        return Vec::new();
    };
    let (execs, events) = run.feed(now, input);
    let run_id = run.run_id.clone().unwrap_or_default();
    let runbook = run.runbook.id.clone();
    let dry = run.dry_run;
    for e in &events {
        note_run_event(app, &run_id, &runbook, dry, e);
    }
    let mut cmds = Vec::new();
    let finished = events
        .iter()
        .any(|e| matches!(e, rengine::Event::RunFinished { .. }));
    if !events.is_empty() {
        cmds.push(Command::Journal(events));
    }
    let mut answers = Vec::new();
    for r in execs {
        // The run reads the same health the dashboard shows: answered here, at once, or
        // (after a wait) when the executor hands the request back.
        if matches!(r.purpose, rengine::Purpose::Health(_)) && r.delay.is_zero() {
            answers.push(r);
        } else {
            cmds.push(Command::Exec(Box::new(r)));
        }
    }
    if finished {
        cmds.push(Command::CloseRun);
    }
    for r in answers {
        cmds.extend(answer_health(app, &r));
    }
    cmds
}

/// What the dashboard's feed and a running drill learn from a run's events (display only).
fn note_run_event(app: &mut App, run_id: &str, runbook: &str, dry_run: bool, e: &rengine::Event) {
    if dry_run {
        return;
    }
    let drill = app.learn.drill.as_mut();
    match e {
        rengine::Event::RunStarted { .. } => {
            let name = drill.map(|d| {
                if !d.runs.iter().any(|r| r == run_id) {
                    d.runs.push(run_id.to_owned());
                }
                d.drill.clone()
            });
            app.feed.run_started(app.wall, run_id, runbook, None, name);
        }
        rengine::Event::RunFinished { outcome, message } => {
            let outcome = serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            app.feed
                .run_finished(app.wall, run_id, runbook, &outcome, message);
        }
        rengine::Event::StepFinished { status, .. } => {
            if let Some(d) = drill.filter(|d| d.runs.iter().any(|r| r == run_id))
                && *status != rengine::StepStatus::Skipped
            {
                d.steps = d.steps.saturating_add(1);
            }
        }
        _ => {}
    }
}

/// Answers a run's health request from the console's own health state.
fn answer_health(app: &mut App, req: &rengine::ExecRequest) -> Vec<Command> {
    let hosts = match &req.command {
        rengine::Rendered::Health { hosts } => hosts.clone(),
        _ => Vec::new(),
    };
    let result = ExecResult {
        health: super::run::health_facts(&app.checks, Some(&hosts)),
        ..ExecResult::ok("")
    };
    feed(
        app,
        RunInput::Result {
            seq: req.seq,
            result,
        },
    )
}

fn decide(app: &mut App, d: Decision) -> Vec<Command> {
    feed(app, RunInput::Decision(d))
}

/// Keys while text is being entered (runbook inputs, notes, typed confirmations). `None`
/// when nothing is being typed.
fn typing_key(app: &mut App, k: &KeyEvent) -> Option<Vec<Command>> {
    use crossterm::event::KeyCode;
    if app.view != View::Run || app.help {
        return None;
    }
    let run = app.run.as_mut()?;
    // Tab picks the next input to change, showing its current value.
    if k.code == KeyCode::Tab
        && let Some(Typing::Change { names, at, value }) = run.typing.as_mut()
    {
        *at = (*at + 1) % names.len().max(1);
        *value = run
            .engine
            .as_ref()
            .and_then(|e| names.get(*at).and_then(|n| e.value_of(n)))
            .unwrap_or_default();
        return Some(Vec::new());
    }
    let typing = run.typing.as_mut()?;
    let buf = match typing {
        Typing::Input { value, .. }
        | Typing::Change { value, .. }
        | Typing::Note(value)
        | Typing::Typed(value) => value,
    };
    match k.code {
        KeyCode::Char(c)
            if !k
                .modifiers
                .contains(crossterm::event::KeyModifiers::CONTROL) =>
        {
            buf.push(c);
            Some(Vec::new())
        }
        KeyCode::Backspace => {
            buf.pop();
            Some(Vec::new())
        }
        KeyCode::Esc => {
            let t = run.typing.take();
            let cancel_start = matches!(t, Some(Typing::Input { .. })) && run.engine.is_none();
            if matches!(t, Some(Typing::Typed(_))) {
                app.flash = Some(
                    "not confirmed: y to type the name again, s to skip, A to abort".to_owned(),
                );
            }
            if cancel_start {
                app.run = None;
                app.view = View::Runbooks;
            }
            Some(Vec::new())
        }
        KeyCode::Enter => Some(submit_typing(app)),
        _ => Some(Vec::new()),
    }
}

fn submit_typing(app: &mut App) -> Vec<Command> {
    let Some(run) = app.run.as_mut() else {
        return Vec::new();
    };
    match run.typing.take() {
        Some(Typing::Input { index, value }) => {
            let input = &run.runbook.inputs[index];
            if input.required && value.is_empty() {
                app.flash = Some(format!("{} is required: {}", input.name, input.description));
                run.typing = Some(Typing::Input { index, value });
                return Vec::new();
            }
            if let Some(re) = &input.pattern
                && !re.is_match(&value)
            {
                app.flash = Some(format!("{} must match {}", input.name, re.as_str()));
                run.typing = Some(Typing::Input { index, value });
                return Vec::new();
            }
            let name = input.name.clone();
            decide(app, Decision::SetInput { name, value })
        }
        Some(Typing::Change { names, at, value }) => match names.get(at) {
            Some(name) => {
                let name = name.clone();
                decide(app, Decision::ChangeInput { name, value })
            }
            None => Vec::new(),
        },
        Some(Typing::Note(text)) => {
            if text.trim().is_empty() {
                return Vec::new();
            }
            decide(app, Decision::AddNote(text))
        }
        Some(Typing::Typed(text)) => decide(app, Decision::TypedConfirm(text)),
        None => Vec::new(),
    }
}

fn browser_search_key(app: &mut App, k: &KeyEvent) -> Vec<Command> {
    use crossterm::event::KeyCode;
    match k.code {
        KeyCode::Char(c) => app.browser.query.push(c),
        KeyCode::Backspace => {
            app.browser.query.pop();
        }
        KeyCode::Esc => {
            app.browser.searching = false;
            app.browser.query.clear();
        }
        KeyCode::Enter | KeyCode::Down | KeyCode::Up => app.browser.searching = false,
        _ => {}
    }
    app.browser.selected = 0;
    Vec::new()
}

fn browser_action(app: &mut App, action: Action) -> Vec<Command> {
    let n = app.browser_list().len();
    let b = &mut app.browser;
    match action {
        Action::Down => b.selected = (b.selected + 1).min(n.saturating_sub(1)),
        Action::Up => b.selected = b.selected.saturating_sub(1),
        Action::Top => b.selected = 0,
        Action::Bottom => b.selected = n.saturating_sub(1),
        Action::PageDown => b.scroll = b.scroll.saturating_add(10),
        Action::PageUp => b.scroll = b.scroll.saturating_sub(10),
        Action::Search => {
            b.searching = true;
            b.query.clear();
        }
        Action::Back => {
            if b.query.is_empty() && b.tier.is_none() && b.severity.is_none() {
                app.view = View::Dashboard;
            }
            let b = &mut app.browser;
            b.query.clear();
            b.tier = None;
            b.severity = None;
            b.selected = 0;
        }
        Action::FilterTier => {
            let tiers: Vec<String> = app.inventory.tiers.iter().map(|t| t.name.clone()).collect();
            let next = match &app.browser.tier {
                None => tiers.first().cloned(),
                Some(t) => tiers
                    .iter()
                    .position(|x| x == t)
                    .and_then(|i| tiers.get(i + 1))
                    .cloned(),
            };
            app.browser.tier = next;
            app.browser.selected = 0;
        }
        Action::FilterSeverity => {
            b.severity = match b.severity {
                None => Some(Severity::Critical),
                Some(Severity::Critical) => Some(Severity::High),
                Some(Severity::High) => Some(Severity::Medium),
                Some(Severity::Medium) => Some(Severity::Low),
                Some(Severity::Low) => None,
            };
            b.selected = 0;
        }
        Action::SuggestedFirst => b.suggested_first = !b.suggested_first,
        Action::Open => {
            if let Some(rb) = app.selected_runbook().cloned() {
                return start_runbook(app, rb, false, false);
            }
        }
        _ => {}
    }
    Vec::new()
}

fn run_action(app: &mut App, action: Action) -> Vec<Command> {
    let Some(run) = app.run.as_mut() else {
        if action == Action::Back {
            app.view = View::Runbooks;
        }
        return Vec::new();
    };
    let ask = run.ask.as_ref().map(|a| a.kind.clone());
    match (action, ask) {
        (Action::Confirm, Some(DecisionKind::Confirm)) => return decide(app, Decision::Confirm),
        (Action::Deny | Action::Skip, Some(_)) => return decide(app, Decision::Skip),
        (Action::MarkDone, Some(DecisionKind::MarkDone | DecisionKind::ResolveUnknown)) => {
            return decide(app, Decision::MarkDone);
        }
        (Action::Retry, Some(DecisionKind::Failed | DecisionKind::ResolveUnknown)) => {
            return decide(app, Decision::Retry);
        }
        (Action::Abort, _) if run.finished.is_none() && run.engine.is_some() => {
            return decide(app, Decision::Abort);
        }
        (Action::Note, _) if run.finished.is_none() && run.engine.is_some() => {
            run.typing = Some(Typing::Note(String::new()));
        }
        (Action::NextHost, _) => run.host_tab = run.host_tab.saturating_add(1),
        (Action::PrevHost, _) => run.host_tab = run.host_tab.saturating_sub(1),
        // While a decision is open, up/down scroll the list of what it covers.
        (Action::Down, Some(_)) => {
            if let Some(a) = run.ask.as_mut() {
                let last = u16::try_from(a.covers.len().saturating_sub(1)).unwrap_or(u16::MAX);
                a.scroll = a.scroll.saturating_add(1).min(last);
            }
        }
        (Action::Up, Some(_)) => {
            if let Some(a) = run.ask.as_mut() {
                a.scroll = a.scroll.saturating_sub(1);
            }
        }
        (Action::Down, _) => {
            let n = run.runbook.steps.len();
            run.viewing = Some((run.shown_step() + 1).min(n.saturating_sub(1)));
            run.host_tab = 0;
        }
        (Action::Up, _) => {
            run.viewing = Some(run.shown_step().saturating_sub(1));
            run.host_tab = 0;
        }
        (Action::PageUp, _) => run.scroll = run.scroll.saturating_add(10),
        (Action::PageDown, _) => run.scroll = run.scroll.saturating_sub(10),
        (Action::Export, _) if run.finished.is_some() => {
            if let Some(id) = run.run_id.clone() {
                return vec![Command::Export(id)];
            }
        }
        (Action::Back, _) if run.finished.is_some() => {
            app.run = None;
            app.view = View::Dashboard;
        }
        (Action::Confirm, Some(DecisionKind::TypedConfirm { .. })) => {
            run.typing = Some(Typing::Typed(String::new()));
        }
        (Action::Confirm | Action::Open, Some(DecisionKind::Input { name, default, .. })) => {
            if let Some(index) = run.runbook.inputs.iter().position(|i| i.name == name) {
                run.typing = Some(Typing::Input {
                    index,
                    value: default.unwrap_or_default(),
                });
            }
        }
        (Action::ChangeInput, Some(DecisionKind::Failed | DecisionKind::NothingToDo { .. })) => {
            let names = run
                .engine
                .as_ref()
                .map(rengine::Engine::inputs_for_change)
                .unwrap_or_default();
            if names.is_empty() {
                app.flash = Some("this step reads no input that could change it".to_owned());
            } else {
                let value = run
                    .engine
                    .as_ref()
                    .and_then(|e| e.value_of(&names[0]))
                    .unwrap_or_default();
                run.typing = Some(Typing::Change {
                    names,
                    at: 0,
                    value,
                });
            }
        }
        _ => {}
    }
    Vec::new()
}

fn journal_action(app: &mut App, action: Action) -> Vec<Command> {
    let n = app.journal.runs.len();
    let j = &mut app.journal;
    let before = j.selected;
    match action {
        Action::Down => j.selected = (j.selected + 1).min(n.saturating_sub(1)),
        Action::Up => j.selected = j.selected.saturating_sub(1),
        Action::PageDown => j.scroll = j.scroll.saturating_add(10),
        Action::PageUp => j.scroll = j.scroll.saturating_sub(10),
        Action::Export => {
            if let Some(r) = j.runs.get(j.selected) {
                return vec![Command::Export(r.run.clone())];
            }
        }
        Action::Back => app.view = View::Dashboard,
        Action::Open => return resume_selected(app),
        _ => {}
    }
    if app.journal.selected != before
        && let Some(r) = app.journal.runs.get(app.journal.selected)
    {
        return vec![Command::LoadJournal(r.run.clone())];
    }
    Vec::new()
}

/// Enter on an unfinished run in the journal resumes it at its first unfinished step; a step
/// whose outcome is unknown is put to the operator (verify, retry, skip), never re-run.
fn resume_selected(app: &mut App) -> Vec<Command> {
    let Some(summary) = app.journal.runs.get(app.journal.selected).cloned() else {
        return Vec::new();
    };
    if summary.outcome.as_deref() == Some("succeeded") {
        app.flash = Some(format!("run {} already finished", summary.run));
        return Vec::new();
    }
    let Some(rb) = app
        .runbooks
        .iter()
        .find(|r| r.id == summary.runbook)
        .cloned()
    else {
        app.flash = Some(format!(
            "runbook {} is not loaded: cannot resume",
            summary.runbook
        ));
        return Vec::new();
    };
    if app
        .run
        .as_ref()
        .is_some_and(|r| r.finished.is_none() && r.engine.is_some())
    {
        app.flash = Some("a run is in progress: finish or abort it first".to_owned());
        return Vec::new();
    }
    app.run = Some(RunState::new(Arc::clone(&rb), app.now));
    app.view = View::Run;
    // The driver restores the run's recorded target and inputs.
    let mut spec = RunSpec::new(rb);
    spec.topology = Some(app.topology());
    spec.resume = Some(summary.run);
    spec.drill = app.learn.drill.as_ref().map(|d| d.drill.clone());
    vec![Command::OpenRun(Box::new(spec))]
}

/// Learn pages: 0 the topology, 1..=N each runbook in training mode, N+1 the drills.
fn learn_action(app: &mut App, action: Action) -> Vec<Command> {
    let pages = app.runbooks.len() + 2;
    let drills_page = app.learn.page == pages - 1;
    match action {
        // On the drills page, up and down pick a drill; elsewhere they turn pages too.
        Action::Down if drills_page => {
            app.learn.selected = (app.learn.selected + 1).min(app.drills.len().saturating_sub(1));
        }
        Action::Up if drills_page => app.learn.selected = app.learn.selected.saturating_sub(1),
        Action::Right | Action::Down => app.learn.page = (app.learn.page + 1).min(pages - 1),
        Action::Left | Action::Up => app.learn.page = app.learn.page.saturating_sub(1),
        Action::Back => app.view = View::Dashboard,
        Action::Open => {
            let p = app.learn.page;
            if (1..=app.runbooks.len()).contains(&p) {
                let rb = Arc::clone(&app.runbooks[p - 1]);
                return start_runbook(app, rb, true, true);
            }
            if drills_page {
                return start_drill(app);
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Injects the selected drill; its clock waits for the servers to show the fault.
fn start_drill(app: &mut App) -> Vec<Command> {
    if let Some(d) = &app.learn.drill {
        app.flash = Some(format!(
            "drill {} is on: resolve it first (or `opsdeck drill reset`)",
            d.drill
        ));
        return Vec::new();
    }
    let Some((drill, _)) = app.drills.get(app.learn.selected).cloned() else {
        app.flash = Some("no drill to start".to_owned());
        return Vec::new();
    };
    let rb = app.drill_runbook(&drill);
    app.learn.drill = Some(DrillRun {
        runbook: rb.map(|r| r.id.clone()),
        rto: rb.and_then(|r| r.rto),
        drill: drill.clone(),
        injected: false,
        confirmed: None,
        pending_checks: 0,
        hints: 0,
        steps: 0,
        runs: Vec::new(),
    });
    app.learn.result = None;
    app.flash = Some(format!("injecting drill {drill} on the lab…"));
    vec![Command::InjectDrill(drill)]
}

fn on_drill_injected(app: &mut App, r: Result<String, String>) -> Vec<Command> {
    let Some(d) = app.learn.drill.as_mut() else {
        return Vec::new();
    };
    match r {
        Ok(msg) => {
            d.injected = true;
            let name = d.drill.clone();
            app.flash = Some(format!(
                "{msg} — the clock starts when the servers show the fault"
            ));
            app.feed.drill(app.wall, &name, format!("injected: {msg}"));
            // Look at once: the clock should start as soon as the fault is there.
            vec![Command::CheckDrill(name)]
        }
        Err(e) => {
            app.learn.drill = None;
            app.flash = Some(format!("drill failed: {e}"));
            Vec::new()
        }
    }
}

fn on_drill_checked(app: &mut App, drill: &str, present: Result<bool, String>) -> Vec<Command> {
    let now = app.now;
    let wall = app.wall;
    let Some(d) = app.learn.drill.as_mut().filter(|d| d.drill == drill) else {
        return Vec::new();
    };
    match (present, d.confirmed) {
        // The servers could not be asked: neither a start nor an end.
        (Err(e), _) => {
            app.flash = Some(format!("cannot check drill {drill} on the lab: {e}"));
            Vec::new()
        }
        (Ok(true), None) => {
            d.confirmed = Some((now, wall));
            app.flash = Some(format!(
                "drill {drill}: the fault is on the servers — the clock runs; find it on the dashboard"
            ));
            app.feed.drill(
                wall,
                drill,
                "fault confirmed on the servers: the clock starts",
            );
            Vec::new()
        }
        (Ok(true), Some(_)) => Vec::new(),
        // Not (yet) in place: nothing is resolved that was never broken.
        (Ok(false), None) => {
            d.pending_checks = d.pending_checks.saturating_add(1);
            Vec::new()
        }
        (Ok(false), Some((at, started))) => {
            let took = now.saturating_duration_since(at);
            let score = crate::lab::scores::Score {
                drill: d.drill.clone(),
                runbook: d.runbook.clone(),
                started,
                resolved_s: took.as_secs(),
                rto_s: d.rto.map(|r| r.as_secs()),
                steps: d.steps,
                hints: d.hints,
                runs: d.runs.clone(),
                operator: String::new(),
            };
            app.learn.drill = None;
            let verdict = match score.within_rto() {
                Some(true) => " (within the RTO)",
                Some(false) => " (over the RTO)",
                None => "",
            };
            let text = format!("resolved in {}{verdict}", mmss(took));
            app.flash = Some(format!("drill {drill} {text}"));
            app.feed.drill(wall, drill, text);
            app.learn.result = Some(score.clone());
            vec![Command::SaveScore(Box::new(score))]
        }
    }
}

/// Hints for a drill, from its runbook: where to look, which runbook, its first step.
pub fn drill_hints(app: &App, drill: &str) -> Vec<String> {
    let Some(rb) = app.drill_runbook(drill) else {
        let what = app
            .drills
            .iter()
            .find(|(n, _)| n == drill)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        return vec![format!(
            "No runbook is paired with this drill yet. What it broke: {what}."
        )];
    };
    let mut hints = Vec::new();
    let triggers: Vec<String> = rb
        .triggers
        .iter()
        .map(|t| format!("{} {}", t.check, t.state.as_str()))
        .collect();
    let tiers = if rb.tiers.is_empty() {
        "the dashboard".to_owned()
    } else {
        format!("the {} tier", rb.tiers.join(" / "))
    };
    hints.push(format!(
        "Look at {tiers} and the event feed: watch for {}.",
        if triggers.is_empty() {
            "a check that turned red".to_owned()
        } else {
            triggers.join(" or ")
        }
    ));
    hints.push(format!(
        "Select the host whose check fired, enter for its detail, enter again: the runbook is “{}”.",
        rb.title
    ));
    if let Some(st) = rb.steps.first() {
        let explain = st.explain.split(". ").next().unwrap_or_default().trim();
        hints.push(format!(
            "Its first step, “{}”, only looks{}",
            st.title,
            if explain.is_empty() {
                ".".to_owned()
            } else {
                format!(": {explain}")
            }
        ));
    }
    hints
}

fn hint(app: &mut App) {
    let Some(name) = app.learn.drill.as_ref().map(|d| d.drill.clone()) else {
        app.flash = Some("hints are for drills: start one on the last Learn page".to_owned());
        return;
    };
    let hints = drill_hints(app, &name);
    if let Some(d) = app.learn.drill.as_mut() {
        let i = (d.hints as usize).min(hints.len().saturating_sub(1));
        if (d.hints as usize) < hints.len() {
            d.hints += 1;
        }
        app.flash = hints
            .get(i)
            .map(|h| format!("hint {}/{}: {h}", i + 1, hints.len()));
    }
}
