//! Driving the console without a terminal: the real app, engine and executor, fed key events,
//! executor results, probe results and clock ticks the way the terminal loop feeds them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsdeck::app::keymap::Keymap;
use opsdeck::app::{App, Event};
use opsdeck::inventory::Inventory;
use opsdeck::probes::history::History;
use opsdeck::probes::model::ProbeResult;
use opsdeck::probes::state::HealthStore;
use opsdeck::runbook::Runbook;
use opsdeck::transport::Connections;
use opsdeck::tui::{Executor, dispatch};
use opsdeck::ui::{self, theme::Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

pub struct Console {
    pub app: App,
    pub exec: Executor,
    events: mpsc::Receiver<Event>,
    probes: Option<mpsc::Receiver<ProbeResult>>,
}

impl Console {
    /// A console over `inv` with `runbooks`, journaling into `journal_dir`; `health` and
    /// `probes` come from a real scheduler when the test runs one.
    pub fn new(
        inv: &Arc<Inventory>,
        runbooks: Vec<Arc<Runbook>>,
        journal_dir: std::path::PathBuf,
        conns: Arc<Connections>,
        health: Option<(HealthStore, mpsc::Receiver<ProbeResult>)>,
    ) -> Console {
        let (health, probes) = match health {
            Some((h, rx)) => (h, Some(rx)),
            None => (
                HealthStore::new(&[], std::collections::BTreeMap::default(), History::new(10)),
                None,
            ),
        };
        let app = App::new(
            Arc::clone(inv),
            health,
            Keymap::defaults(),
            Instant::now(),
            chrono::Utc::now(),
        )
        .with_runbooks(runbooks);
        let (tx, events) = mpsc::channel(256);
        let exec = Executor::new(Arc::clone(inv), conns, journal_dir, tx);
        Console {
            app,
            exec,
            events,
            probes,
        }
    }

    pub fn key(&mut self, code: KeyCode) {
        dispatch(
            &mut self.app,
            &mut self.exec,
            Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        );
    }

    pub fn typed(&mut self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// Delivers probe results, executor events and clock ticks until `done` holds.
    pub async fn pump(&mut self, what: &str, secs: u64, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(&self.app) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                self.screen()
            );
            self.step().await;
        }
    }

    /// Delivers what arrived (a probe result or an executor event, waiting up to 100 ms),
    /// then a clock tick.
    pub async fn step(&mut self) {
        let probe = async {
            match self.probes.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(r) = probe => dispatch(&mut self.app, &mut self.exec, Event::Probe(Box::new(r))),
            Some(e) = self.events.recv() => dispatch(&mut self.app, &mut self.exec, e),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        dispatch(
            &mut self.app,
            &mut self.exec,
            Event::Tick {
                now: Instant::now(),
                wall: chrono::Utc::now(),
            },
        );
    }

    /// The screen as text, as a 160×45 terminal would show it.
    pub fn screen(&self) -> String {
        let mut t = Terminal::new(TestBackend::new(160, 45)).expect("terminal");
        t.draw(|f| ui::render(&self.app, &Theme::dark(), f))
            .expect("draw");
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }
}
