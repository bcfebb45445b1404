//! Draws every console view from real state and writes them as SVG to `screenshots/`.
//!
//!     cargo run --example screenshots [-- OUT_DIR]
//!
//! The state is `ui::demo_state`: the lab-shaped inventory, the real probe plan and
//! `HealthState` fed typed probe results (db1 out of connections, cache1 gone, app1's CPU
//! climbing), the runbooks in `runbooks/`. Keys go through `app::update` like in the console.
//! The run is the real engine on `runbooks/db-connection-exhaustion.toml`; its commands are
//! not sent anywhere: each `ExecRequest` gets a typed `ExecResult` made up here, and the run is
//! journaled with the real `Journal` in a temporary directory, which the journal view then
//! reads. This makes pictures; it tests nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsdeck::app::{self, App, Command, Event, View};
use opsdeck::runbook::driver::{self, Session};
use opsdeck::runbook::engine::{DecisionKind, ExecRequest, ExecResult, Purpose};
use opsdeck::runbook::journal;
use opsdeck::ui::demo_state::{self, Story};
use opsdeck::ui::svg::{Palette, buffer_to_svg_with};
use opsdeck::ui::{self, theme::Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const W: u16 = 120;
const H: u16 = 36;
/// The dashboard's size: a large terminal, where the stack map and the feed use the space.
const WIDE: (u16, u16) = (160, 45);

/// Carries out the app's commands the way `tui::Executor` does, minus the servers.
struct Shots {
    out: PathBuf,
    journal_dir: PathBuf,
    journal: Option<Session>,
    /// Events to feed back to the app (what the executor would send).
    pending: VecDeque<Event>,
    written: Vec<String>,
    /// The Markdown export of the run, once made.
    exported: Option<PathBuf>,
    /// Health requests of the run, answered from the console's state after the next advance.
    waiting: Vec<ExecRequest>,
    /// The kill ran: the story's db1 recovers.
    db1_fixed: bool,
}

impl Shots {
    fn key(&mut self, app: &mut App, code: KeyCode) -> Result<()> {
        let cmds = app::update(app, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
        self.handle(app, cmds)
    }

    fn char(&mut self, app: &mut App, c: char) -> Result<()> {
        self.key(app, KeyCode::Char(c))
    }

    fn handle(&mut self, app: &mut App, cmds: Vec<Command>) -> Result<()> {
        let mut cmds: VecDeque<Command> = cmds.into();
        // The app and this executor answer each other; a runaway exchange is a bug to report,
        // not a loop to sit in.
        let mut turns = 0;
        loop {
            turns += 1;
            if turns > 10_000 {
                bail!(
                    "the app and the screenshot executor did not settle: last {:?}",
                    self.pending.front()
                );
            }
            while let Some(cmd) = cmds.pop_front() {
                self.command(app, cmd)?;
            }
            let Some(ev) = self.pending.pop_front() else {
                return Ok(());
            };
            cmds.extend(app::update(app, ev));
        }
    }

    fn command(&mut self, app: &App, cmd: Command) -> Result<()> {
        match cmd {
            Command::OpenRun(spec) => {
                let opened = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(driver::open(&spec, &app.inventory, &self.journal_dir))?;
                let run = opened.session.run().to_owned();
                self.pending.push_back(Event::RunOpened {
                    journal_path: format!("~/.local/state/opsdeck/journal/{run}.jsonl"),
                    run_id: run,
                    engine: Box::new(opened.engine),
                });
                self.journal = Some(opened.session);
            }
            Command::Journal(events) => {
                if let Some(j) = self.journal.as_mut() {
                    for e in &events {
                        j.record(e)?;
                    }
                }
            }
            // Health the run waits for comes back once time has moved (see `due`).
            Command::Exec(req) if matches!(req.purpose, Purpose::Health(_)) => {
                if let Some(j) = self.journal.as_mut() {
                    j.intent(&req)?;
                }
                self.waiting.push(*req);
            }
            Command::Exec(req) => {
                if req.step == "kill-idle" {
                    self.db1_fixed = true;
                }
                let result = fake_result(&req, app);
                if let Some(j) = self.journal.as_mut() {
                    j.intent(&req)?;
                    j.outcome(&req, &result)?;
                }
                self.pending.push_back(Event::ExecDone {
                    seq: req.seq,
                    result,
                });
            }
            Command::ListJournal => {
                let runs = journal::list(&self.journal_dir)?;
                self.pending.push_back(Event::JournalListed(runs));
            }
            Command::LoadJournal(run) => {
                let lines = journal::read(&self.journal_dir, &run)?;
                self.pending.push_back(Event::JournalLoaded {
                    run,
                    markdown: journal::markdown(&lines),
                });
            }
            Command::Export(run) => {
                let lines = journal::read(&self.journal_dir, &run)?;
                let path = self.journal_dir.join(format!("{run}.md"));
                std::fs::write(&path, journal::markdown(&lines))?;
                self.exported = Some(path.clone());
                self.pending.push_back(Event::Exported(Ok(format!(
                    "~/.local/share/opsdeck/journal/{run}.md"
                ))));
            }
            Command::InjectDrill(name) => self.pending.push_back(Event::DrillInjected(Ok(
                format!("{name}: process 4242 (php sleeper.php) on db1 is holding 30 connections"),
            ))),
            Command::CheckDrill(name) => self.pending.push_back(Event::DrillChecked {
                drill: name,
                present: Ok(true),
            }),
            Command::CloseRun | Command::Quit => {}
            other => bail!("the screenshot script does not expect {other:?}"),
        }
        Ok(())
    }

    /// Moves the story on by `by` and hands the run the health it was waiting for.
    fn advance(&mut self, app: &mut App, story: &mut Story, by: Duration) -> Result<()> {
        story.db1_fixed |= self.db1_fixed;
        story.advance(app, by);
        for req in std::mem::take(&mut self.waiting) {
            self.pending.push_back(Event::HealthDue(Box::new(req)));
        }
        self.handle(app, Vec::new())
    }

    fn shot(&mut self, app: &App, theme: &Theme, name: &str) -> Result<()> {
        self.shot_sized(app, theme, name, (W, H))
    }

    fn shot_sized(
        &mut self,
        app: &App,
        theme: &Theme,
        name: &str,
        (w, h): (u16, u16),
    ) -> Result<()> {
        let mut term = Terminal::new(TestBackend::new(w, h))?;
        term.draw(|f| ui::render(app, theme, f))?;
        let svg = buffer_to_svg_with(term.backend().buffer(), Palette::for_theme(theme));
        let path = self.out.join(format!("{name}.svg"));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        self.written.push(path.display().to_string());
        Ok(())
    }
}

fn rows(cols: &[&str], rows: &[&[&str]]) -> ExecResult {
    let mut output = cols.join("\t");
    let mut out_rows = Vec::new();
    for r in rows {
        output.push('\n');
        output.push_str(&r.join("\t"));
        out_rows.push(
            cols.iter()
                .zip(r.iter())
                .map(|(c, v)| ((*c).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    ExecResult {
        output,
        rows: out_rows,
        ..ExecResult::default()
    }
}

/// What MariaDB would have answered during the incident.
fn fake_result(req: &ExecRequest, _app: &App) -> ExecResult {
    match req.step.as_str() {
        "usage" => rows(&["used_pct", "max_connections"], &[&["98", "150"]]),
        "processlist" => rows(
            &["Id", "User", "Host", "db", "Command", "Time", "State"],
            &[
                &[
                    "4711",
                    "app",
                    "127.0.10.11:51234",
                    "marg",
                    "Sleep",
                    "912",
                    "",
                ],
                &[
                    "4712",
                    "app",
                    "127.0.10.11:51240",
                    "marg",
                    "Sleep",
                    "905",
                    "",
                ],
                &[
                    "4716",
                    "app",
                    "127.0.10.11:51302",
                    "marg",
                    "Sleep",
                    "874",
                    "",
                ],
                &[
                    "4733",
                    "app",
                    "127.0.10.12:40112",
                    "marg",
                    "Sleep",
                    "611",
                    "",
                ],
                &[
                    "5120",
                    "app",
                    "127.0.10.12:40998",
                    "marg",
                    "Query",
                    "2",
                    "Sending data",
                ],
                &[
                    "5121",
                    "opsdeck",
                    "127.0.10.1:36002",
                    "marg",
                    "Query",
                    "0",
                    "Filling schema table",
                ],
            ],
        ),
        "sleepers" => rows(
            &["Id", "User", "Host", "Time"],
            &[
                &["4711", "app", "127.0.10.11:51234", "912"],
                &["4712", "app", "127.0.10.11:51240", "905"],
                &["4716", "app", "127.0.10.11:51302", "874"],
                &["4733", "app", "127.0.10.12:40112", "611"],
            ],
        ),
        "idle" => rows(
            &["Id", "User", "Time"],
            &[
                &["4711", "app", "912"],
                &["4712", "app", "905"],
                &["4716", "app", "874"],
                &["4733", "app", "611"],
            ],
        ),
        "kill-idle" => ExecResult {
            output: "0 rows affected".to_owned(),
            ..ExecResult::default()
        },
        "verify-usage" => rows(&["used_pct_after"], &[&["41"]]),
        "new-connection" => rows(&["accepted"], &[&["1"]]),
        other => ExecResult::error(&format!("no made-up answer for step {other}")),
    }
}

fn awaiting_confirm(app: &App) -> bool {
    app.run
        .as_ref()
        .and_then(|r| r.ask.as_ref())
        .is_some_and(|a| a.kind == DecisionKind::Confirm)
}

fn theme(name: &str) -> Result<Theme> {
    Theme::builtin(name).with_context(|| format!("no built-in theme {name:?}"))
}

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| root.join("screenshots"), PathBuf::from);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let tmp = tempfile::tempdir()?;

    let inv = demo_state::lab_inventory()?;
    let mut runbooks = demo_state::load_runbooks(&root.join("runbooks"), &inv);
    // The run's runbook is loaded as a file, as `opsdeck run FILE` does.
    let (db_rb, _) = opsdeck::runbook::load_file(
        &root.join("runbooks/db-connection-exhaustion.toml"),
        Some(&inv),
    )?;
    runbooks.retain(|r| r.id != db_rb.id);
    runbooks.push(Arc::new(db_rb));
    let (mut app, mut story): (App, Story) = demo_state::app_and_story(inv, runbooks);
    app::update(&mut app, Event::Resize(W, H));

    let dark = theme("dark")?;
    let mut s = Shots {
        out,
        journal_dir: tmp.path().join("journal"),
        journal: None,
        pending: VecDeque::new(),
        written: Vec::new(),
        exported: None,
        waiting: Vec::new(),
        db1_fixed: false,
    };

    // A run found in the journal, as the console lists it at start: the feed shows it.
    app::update(
        &mut app,
        Event::JournalListed(vec![journal::RunSummary {
            run: "20261122T030230Z-redis-sentinel-failover-77".into(),
            runbook: "redis-sentinel-failover".into(),
            operator: "oncall@ops1".into(),
            started: "2026-11-22T03:02:30Z".into(),
            outcome: Some("succeeded".into()),
        }]),
    );

    // Dashboard, in every built-in theme, wide; and compact at 80×24.
    s.shot_sized(&app, &dark, "dashboard", WIDE)?;
    for name in ["light", "high-contrast", "colorblind"] {
        s.shot_sized(&app, &theme(name)?, &format!("dashboard-{name}"), WIDE)?;
    }
    s.shot_sized(&app, &dark, "dashboard-80x24", (80, 24))?;

    // The help overlay, generated from the keymap.
    s.char(&mut app, '?')?;
    s.shot(&app, &dark, "help")?;
    s.char(&mut app, '?')?;

    // Host detail of db1: down to the db tier, then enter.
    while app.selected_host().is_some_and(|h| h.tier != "db") {
        s.char(&mut app, 'j')?;
    }
    s.key(&mut app, KeyCode::Enter)?;
    if app.view != View::Detail {
        bail!("enter on db1 did not open its detail");
    }
    s.shot(&app, &dark, "detail")?;

    // Enter again opens the runbook health suggests for db1, selected in the browser.
    s.key(&mut app, KeyCode::Enter)?;
    if app.selected_runbook().map(|r| r.id.as_str()) != Some("db-connection-exhaustion") {
        bail!("the browser did not select the suggested runbook for db1");
    }
    s.shot(&app, &dark, "runbooks")?;

    // Start it: the diagnosis runs; each input is asked when the first step that reads it
    // is reached, its default computed from what the diagnosis found.
    s.key(&mut app, KeyCode::Enter)?;
    let mut input_shot = false;
    for _ in 0..40 {
        if awaiting_confirm(&app) {
            break;
        }
        if app.run.as_ref().is_some_and(|r| r.typing.is_some()) {
            if !input_shot {
                s.advance(&mut app, &mut story, Duration::from_secs(2))?;
                s.shot(&app, &dark, "run-input")?;
                input_shot = true;
            }
            s.key(&mut app, KeyCode::Enter)?;
            continue;
        }
        s.advance(&mut app, &mut story, Duration::from_secs(3))?;
    }
    if !awaiting_confirm(&app) {
        let log: Vec<String> = app
            .run
            .as_ref()
            .map(|r| {
                r.log
                    .iter()
                    .map(|l| format!("[{}] {}", l.step, l.text))
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "the run never asked for a confirmation (asked: {:?}):\n{}",
            app.run
                .as_ref()
                .and_then(|r| r.ask.as_ref())
                .map(|a| a.kind.clone()),
            log.join("\n")
        );
    }
    s.advance(&mut app, &mut story, Duration::from_secs(14))?;
    // Show the processlist the operator just read... the current step is the kill.
    s.shot(&app, &dark, "run-confirm")?;

    // Confirm each kill, then let the wait and the check finish.
    for _ in 0..40 {
        if app.run.as_ref().is_none_or(|r| r.finished.is_some()) {
            break;
        }
        if awaiting_confirm(&app) {
            s.char(&mut app, 'y')?;
        }
        s.advance(&mut app, &mut story, Duration::from_secs(3))?;
    }
    if app.run.as_ref().is_none_or(|r| r.finished.is_none()) {
        bail!("the run did not finish");
    }
    s.shot(&app, &dark, "run-summary")?;

    // The postmortem: the run exported as Markdown.
    s.char(&mut app, 'e')?;
    s.shot(&app, &dark, "run-exported")?;
    if s.exported.is_none() {
        bail!("the export did not happen");
    }

    // Back on the dashboard: db1 recovered, the run in the event feed.
    s.key(&mut app, KeyCode::Esc)?;
    s.advance(&mut app, &mut story, Duration::from_secs(5))?;
    if app.view != View::Dashboard {
        bail!("esc after the run did not return to the dashboard");
    }
    s.shot_sized(&app, &dark, "dashboard-after", WIDE)?;

    // The journal of that run, with its timeline.
    s.char(&mut app, '4')?;
    s.shot(&app, &dark, "journal")?;

    // The onboarding walkthrough: the stack.
    s.char(&mut app, '5')?;
    s.shot(&app, &dark, "learn")?;

    // Its last page: every drill, one started; the clock runs once the servers show it.
    while app.learn.page < app.runbooks.len() + 1 {
        s.char(&mut app, 'l')?;
    }
    s.key(&mut app, KeyCode::Enter)?;
    // The executor's checks are answered "present" at once; 47 s later, a hint asked.
    s.advance(&mut app, &mut story, Duration::from_secs(47))?;
    s.char(&mut app, 'H')?;
    s.shot(&app, &dark, "learn-drill")?;

    for p in &s.written {
        println!("{p}");
    }
    Ok(())
}
