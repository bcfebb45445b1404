//! The console's state and its pure `update`: every outside happening arrives as an [`Event`];
//! `update` changes the state and returns [`Command`]s for the executor to carry out. Nothing
//! here touches the terminal, the network or the clock.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};

use super::keymap::{Action, Context, Key, Keymap};
use crate::inventory::Inventory;
use crate::probes::check::{self, Check, State};
use crate::probes::model::ProbeResult;
use crate::probes::state::HealthState;

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
    pub health: HealthState,
    /// Checks as of the last tick or sample, so drawing never evaluates anything.
    pub checks: Vec<Check>,
    pub now: Instant,
    pub wall: DateTime<Utc>,
    pub view: View,
    pub help: bool,
    pub keymap: Keymap,
    pub dashboard: DashboardState,
    pub detail: DetailState,
    /// A transient message for the footer (what a key did, an error).
    pub flash: Option<String>,
    pub quit: bool,
    /// Terminal size at the last draw, for mouse hit-testing and paging.
    pub size: (u16, u16),
}

#[derive(Debug, Clone, Default)]
pub struct DashboardState {
    /// Index into `inventory.hosts`.
    pub selected: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DetailState {
    /// Index into the selected host's checks.
    pub selected: usize,
    pub scroll: u16,
}

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
}

/// Something for the executor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
}

impl App {
    pub fn new(
        inventory: Arc<Inventory>,
        health: HealthState,
        keymap: Keymap,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> App {
        let checks = health.checks(now);
        App {
            inventory,
            health,
            checks,
            now,
            wall,
            view: View::Dashboard,
            help: false,
            keymap,
            dashboard: DashboardState::default(),
            detail: DetailState::default(),
            flash: None,
            quit: false,
            size: (80, 24),
        }
    }

    /// The host under the dashboard cursor.
    pub fn selected_host(&self) -> Option<&crate::inventory::Host> {
        self.inventory.hosts.get(self.dashboard.selected)
    }

    /// Checks of one host, worst first, then by id.
    pub fn host_checks(&self, host: &str) -> Vec<&Check> {
        let mut v: Vec<&Check> = self.checks.iter().filter(|c| c.host == host).collect();
        v.sort_by(|a, b| b.state.cmp(&a.state).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// A host's worst state (unknown when nothing is known yet).
    pub fn host_state(&self, host: &str) -> State {
        let mut it = self.checks.iter().filter(|c| c.host == host).peekable();
        if it.peek().is_none() {
            return State::Unknown;
        }
        check::worst(it)
    }

    pub fn overall(&self) -> State {
        if self.checks.is_empty() {
            return State::Unknown;
        }
        check::worst(&self.checks)
    }

    fn context(&self) -> Context {
        match self.view {
            View::Run => Context::Run,
            View::Runbooks => Context::Browser,
            _ => Context::Global,
        }
    }

    fn refresh_checks(&mut self) {
        self.checks = self.health.checks(self.now);
    }
}

/// The one place state changes.
pub fn update(app: &mut App, event: Event) -> Vec<Command> {
    match event {
        Event::Tick { now, wall } => {
            app.now = now;
            app.wall = wall;
            app.refresh_checks();
            Vec::new()
        }
        Event::Probe(result) => {
            app.health.update(*result);
            app.refresh_checks();
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
        // The help overlay takes every key; these close it.
        if matches!(action, Action::Help | Action::Back | Action::Quit) {
            app.help = false;
        }
        return Vec::new();
    }
    app.flash = None;
    match action {
        Action::Quit => {
            app.quit = true;
            return vec![Command::Quit];
        }
        Action::Help => app.help = true,
        Action::Dashboard => app.view = View::Dashboard,
        Action::Runbooks => app.view = View::Runbooks,
        Action::Run => app.view = View::Run,
        Action::Journal => app.view = View::Journal,
        Action::Learn => app.view = View::Learn,
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
            View::Detail => detail_action(app, action),
            _ => {}
        },
    }
    Vec::new()
}

fn dashboard_action(app: &mut App, action: Action) {
    let n = app.inventory.hosts.len();
    if n == 0 {
        return;
    }
    let sel = app.dashboard.selected.min(n - 1);
    let tier_of = |i: usize| app.inventory.hosts[i].tier.clone();
    app.dashboard.selected = match action {
        Action::Right => (sel + 1).min(n - 1),
        Action::Left => sel.saturating_sub(1),
        // Down / up move to the first host of the next / previous tier (traffic order).
        Action::Down | Action::PageDown => {
            let t = tier_of(sel);
            (sel..n).find(|&i| tier_of(i) != t).unwrap_or(sel)
        }
        Action::Up | Action::PageUp => {
            let t = tier_of(sel);
            match (0..sel).rev().find(|&i| tier_of(i) != t) {
                Some(prev_last) => {
                    let pt = tier_of(prev_last);
                    (0..=prev_last)
                        .find(|&i| tier_of(i) == pt)
                        .unwrap_or(prev_last)
                }
                None => sel,
            }
        }
        Action::Top => 0,
        Action::Bottom => n - 1,
        Action::Open => {
            app.view = View::Detail;
            app.detail = DetailState::default();
            sel
        }
        _ => sel,
    };
}

fn detail_action(app: &mut App, action: Action) {
    let count = app
        .selected_host()
        .map_or(0, |h| app.host_checks(&h.name).len());
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
}

fn on_mouse(app: &mut App, m: MouseEvent) {
    match (app.view, m.kind) {
        (View::Dashboard, MouseEventKind::Down(MouseButton::Left)) => {
            // Hit-test against the same layout the dashboard draws.
            let boxes = crate::ui::dashboard::pill_boxes(app, crate::ui::body_area(app.size));
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
        (View::Detail, MouseEventKind::ScrollDown) => detail_action(app, Action::Down),
        (View::Detail, MouseEventKind::ScrollUp) => detail_action(app, Action::Up),
        _ => {}
    }
}
