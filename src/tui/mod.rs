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

use crate::app::keymap::Keymap;
use crate::app::{self, App, Event};
use crate::inventory::Inventory;
use crate::probes::history::History;
use crate::probes::model::ProbeResult;
use crate::probes::plan::{self, Intervals};
use crate::probes::scheduler::{self, SchedulerConfig};
use crate::probes::state::HealthState;
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

/// Runs the console until the user quits. Probe results arrive on `probes` as owned data; the
/// loop never waits on a host.
pub async fn run(
    mut app: App,
    theme: Theme,
    mut probes: mpsc::Receiver<ProbeResult>,
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
                    app::update(&mut app, Event::Key(k));
                    dirty = true;
                }
                Some(Ok(TermEvent::Mouse(m))) => {
                    app::update(&mut app, Event::Mouse(m));
                    dirty = true;
                }
                Some(Ok(TermEvent::Resize(w, h))) => {
                    app::update(&mut app, Event::Resize(w, h));
                    terminal.autoresize()?;
                    dirty = true;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => break,
            },
            r = probes.recv(), if probes_open => match r {
                Some(r) => {
                    app::update(&mut app, Event::Probe(Box::new(r)));
                    // Fold everything already waiting before the next draw.
                    while let Ok(r) = probes.try_recv() {
                        app::update(&mut app, Event::Probe(Box::new(r)));
                    }
                    dirty = true;
                }
                None => probes_open = false,
            },
            _ = clock.tick() => {
                app::update(&mut app, Event::Tick { now: Instant::now(), wall: chrono::Utc::now() });
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
pub async fn launch(inv: Inventory, theme: Theme, keymap: Keymap) -> anyhow::Result<()> {
    let thresholds = crate::probes::thresholds::resolve(&inv)?;
    let inv = std::sync::Arc::new(inv);
    let intervals = Intervals::default();
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs = plan::plan(&inv, &hosts, &intervals);
    let history = History::covering(Duration::from_secs(600), intervals.default);
    let health = HealthState::new(&specs, thresholds, history);
    let conns = std::sync::Arc::new(Connections::new());
    let (tx, rx) = mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let sched = tokio::spawn(scheduler::run(
        conns,
        specs,
        SchedulerConfig::default(),
        tx,
        cancel.clone(),
    ));
    let app = App::new(
        std::sync::Arc::clone(&inv),
        health,
        keymap,
        Instant::now(),
        chrono::Utc::now(),
    );
    let result = run(app, theme, rx).await;
    cancel.cancel();
    // Probes in flight may be waiting on slow hosts: do not hold the exit for them.
    sched.abort();
    Ok(result?)
}
