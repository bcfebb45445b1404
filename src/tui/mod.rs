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

use crate::app::{self, App, Event};
use crate::probes::model::ProbeResult;
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
