//! Rendering the console, measured three ways:
//!
//! - `dashboard_200_hosts`: one frame of the dashboard for 200 hosts into a 200×50
//!   `TestBackend` (target: p99 ≤ 2 ms).
//! - `key_to_frame_100_hosts_polling`: a key press through `app::update` plus the redraw, with
//!   a poll of probe results for 100 hosts folded in before every frame (target ≤ 16 ms);
//!   the poll's own cost is measured as `poll_100_hosts`.
//! - `first_frame_100_unreachable`: the `launch` path — inventory, thresholds, probe plan,
//!   `HealthStore`, the scheduler spawned over 100 SSH hosts at 127.0.0.1:1 (nothing listens:
//!   every probe fails), runbooks loaded, `App` built — until the first draw returns
//!   (target ≤ 100 ms).
//!
//! `cargo bench --bench render`. Besides criterion's estimates, each measurement prints its
//! own p50/p99 over a fixed number of runs, since criterion reports means, not tails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsdeck::app::keymap::Keymap;
use opsdeck::app::{self, App, Event};
use opsdeck::probes::history::History;
use opsdeck::probes::plan::{self, Intervals};
use opsdeck::probes::scheduler::{self, SchedulerConfig};
use opsdeck::probes::state::HealthStore;
use opsdeck::transport::Connections;
use opsdeck::ui::demo_state::{self, POLL};
use opsdeck::ui::{self, theme::Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn runbook_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks")
}

fn fleet_app(hosts: usize) -> (App, demo_state::Story) {
    let inv = demo_state::fleet_inventory(hosts, 1).expect("fleet inventory");
    let rbs = demo_state::load_runbooks(&runbook_dir(), &inv);
    demo_state::app_and_story(inv, rbs)
}

/// p50 and p99 of `runs` timings of `f`, printed.
fn tails(name: &str, runs: usize, mut f: impl FnMut() -> Duration) {
    // `cargo test --benches` runs each benchmark once to see it works; the tail
    // measurement is for `cargo bench` (which passes `--bench`) only.
    let runs = if std::env::args().any(|a| a == "--bench") {
        runs
    } else {
        1
    };
    let mut t: Vec<Duration> = (0..runs).map(|_| f()).collect();
    t.sort();
    let mean = t.iter().sum::<Duration>() / runs as u32;
    let p = |q: f64| t[((runs as f64 * q).ceil() as usize).min(runs) - 1];
    println!(
        "{name}: {runs} runs, mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        mean.as_secs_f64() * 1e3,
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        t[runs - 1].as_secs_f64() * 1e3
    );
}

fn dashboard_200_hosts(c: &mut Criterion) {
    let (app, _) = fleet_app(200);
    let theme = Theme::dark();
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    c.bench_function("dashboard_200_hosts", |b| {
        b.iter(|| {
            term.draw(|f| ui::render(black_box(&app), &theme, f))
                .unwrap();
        });
    });
    tails("dashboard_200_hosts", 2000, || {
        let t = Instant::now();
        term.draw(|f| ui::render(&app, &theme, f)).unwrap();
        t.elapsed()
    });
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn key_to_frame_100_hosts_polling(c: &mut Criterion) {
    let (mut app, mut story) = fleet_app(100);
    let theme = Theme::dark();
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let mut n = 0u64;
    // One frame: the key goes through update, then the screen is redrawn. Between frames a
    // poll of every probe arrives (not timed here; `poll_100_hosts` times it).
    let mut frame = |app: &mut App, story: &mut demo_state::Story| {
        story.advance(app, POLL);
        n += 1;
        let t = Instant::now();
        app::update(app, key(if n.is_multiple_of(2) { 'l' } else { 'h' }));
        term.draw(|f| ui::render(app, &theme, f)).unwrap();
        t.elapsed()
    };
    c.bench_function("key_to_frame_100_hosts_polling", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| frame(&mut app, &mut story)).sum());
    });
    tails("key_to_frame_100_hosts_polling", 1000, || {
        frame(&mut app, &mut story)
    });
    c.bench_function("poll_100_hosts", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    story.advance(&mut app, POLL);
                    t.elapsed()
                })
                .sum()
        });
    });
    tails("poll_100_hosts", 300, || {
        let t = Instant::now();
        story.advance(&mut app, POLL);
        t.elapsed()
    });
}

/// The `tui::launch` path up to the first frame, as a real launch does it.
async fn first_frame(inv_text: &str, term: &mut Terminal<TestBackend>) -> Duration {
    let t = Instant::now();
    let inv = opsdeck::inventory::load_str(inv_text, Path::new("fleet.toml")).unwrap();
    let thresholds = opsdeck::probes::thresholds::resolve(&inv).unwrap();
    let inv = Arc::new(inv);
    let intervals = Intervals::default();
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs = plan::plan(&inv, &hosts, &intervals);
    let history = History::covering(Duration::from_secs(600), intervals.default);
    let health = HealthStore::new(&specs, thresholds, history);
    let conns = Arc::new(Connections::new());
    let (tx, _rx) = tokio::sync::mpsc::channel(1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let sched = tokio::spawn(scheduler::run(
        conns,
        specs,
        SchedulerConfig::default(),
        tx,
        cancel.clone(),
    ));
    let runbooks = demo_state::load_runbooks(&runbook_dir(), &inv);
    let mut app = App::new(
        Arc::clone(&inv),
        health,
        Keymap::defaults(),
        Instant::now(),
        chrono::Utc::now(),
    )
    .with_runbooks(runbooks);
    app::update(&mut app, Event::Resize(200, 50));
    let theme = Theme::dark();
    term.draw(|f| ui::render(&app, &theme, f)).unwrap();
    let took = t.elapsed();
    cancel.cancel();
    sched.abort();
    let _ = sched.await;
    took
}

fn first_frame_100_unreachable(c: &mut Criterion) {
    // Nothing listens on 127.0.0.1:1, so every SSH connect is refused at once.
    let inv = demo_state::fleet_inventory(100, 1).unwrap();
    assert_eq!(inv.hosts.len(), 100);
    let text = fleet_text(100);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    let mut group = c.benchmark_group("startup");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("first_frame_100_unreachable", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(first_frame(&text, &mut term)))
                .sum()
        });
    });
    group.finish();
    tails("first_frame_100_unreachable", 100, || {
        rt.block_on(first_frame(&text, &mut term))
    });
}

/// The fleet inventory's text (the same `demo_state::fleet_inventory` parses).
fn fleet_text(hosts: usize) -> String {
    demo_state::fleet_inventory_text(hosts, 1)
}

criterion_group!(
    benches,
    dashboard_200_hosts,
    key_to_frame_100_hosts_polling,
    first_frame_100_unreachable
);
criterion_main!(benches);
