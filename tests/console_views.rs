//! Every console view rendered from real state through `TestBackend`, in two themes and two
//! terminal sizes, snapshot-tested, with the colours that carry meaning asserted cell by cell.
#![allow(clippy::unwrap_used)] // tests may unwrap; the lint guards non-test code

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use opsdeck::app::keymap::Keymap;
use opsdeck::app::{self, App, Event, View};
use opsdeck::probes::check::State;
use opsdeck::probes::history::History;
use opsdeck::probes::model::{
    HostSample, MountSample, MysqlSample, MysqlStatus, Outcome, ProbeKind, ProbeResult, Sample,
};
use opsdeck::probes::plan::{self, Intervals};
use opsdeck::probes::state::HealthState;
use opsdeck::ui::{self, theme::Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

fn fixture_app() -> App {
    let path = format!(
        "{}/tests/inventories/console.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let inv = Arc::new(opsdeck::inventory::load(Some(Path::new(&path))).expect("fixture loads"));
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs = plan::plan(&inv, &hosts, &Intervals::default());
    let mut health = HealthState::new(&specs, Default::default(), History::new(120));
    let t0 = Instant::now();
    let wall = chrono::Utc
        .with_ymd_and_hms(2026, 11, 22, 3, 4, 5)
        .single()
        .expect("time");
    // Twelve polls of history: app1's CPU climbs, db1's connections fill up, cache1 dies.
    for step in 0..12u64 {
        let at = t0 + Duration::from_secs(5 * step);
        for spec in &specs {
            let outcome = match (spec.key.host.as_str(), spec.key.kind) {
                (host, ProbeKind::Host) => {
                    let cpu = if host == "app1" {
                        40.0 + 5.0 * step as f64
                    } else {
                        10.0 + (step % 3) as f64
                    };
                    Outcome::Ok(Sample::Host(HostSample {
                        cpu_percent: Some(cpu),
                        cpus: 2,
                        load1: 0.5,
                        load5: 0.4,
                        load15: 0.3,
                        mem_total_bytes: 4 << 30,
                        mem_used_percent: 42.0,
                        mounts: vec![MountSample {
                            path: "/".into(),
                            size_bytes: 10 << 30,
                            avail_bytes: 5 << 30,
                            used_percent: 50.0,
                            inodes_used_percent: Some(10.0),
                            error: None,
                        }],
                        uptime_s: 1000.0,
                        cpu_counters: Default::default(),
                        swap_used_percent: None,
                        top_process: None,
                    }))
                }
                ("db1", ProbeKind::Mysql) => {
                    Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
                        connections: 100 + 4 * step,
                        max_connections: 150,
                        ..MysqlStatus::default()
                    })))
                }
                ("db2", ProbeKind::Mysql) => {
                    Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
                        connections: 3,
                        max_connections: 150,
                        read_only: true,
                        ..MysqlStatus::default()
                    })))
                }
                ("cache1", ProbeKind::Redis) => Outcome::Down {
                    reason: "connection refused (127.0.0.1:6379)".into(),
                },
                _ => continue,
            };
            health.update(ProbeResult {
                target: spec.key.clone(),
                at,
                at_utc: wall,
                took: Duration::from_millis(3),
                outcome,
            });
        }
    }
    App::new(
        inv,
        health,
        Keymap::defaults(),
        t0 + Duration::from_secs(56),
        wall,
    )
}

fn draw(app: &App, theme: &Theme, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| ui::render(app, theme, f)).expect("draw");
    term.backend().buffer().clone()
}

fn text(buf: &Buffer) -> String {
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

/// The cell where `needle` starts on the first line containing `line_has`.
fn find(buf: &Buffer, line_has: &str, needle: &str) -> (u16, u16) {
    let t = text(buf);
    for (y, line) in t.lines().enumerate() {
        if line.contains(line_has)
            && let Some(byte) = line.find(needle)
        {
            let x = line[..byte].chars().count();
            return (x as u16, y as u16);
        }
    }
    panic!("{needle:?} not found on a line with {line_has:?}:\n{t}")
}

const SIZES: [(u16, u16); 2] = [(80, 24), (200, 50)];
const THEMES: [&str; 2] = ["dark", "colorblind"];

fn key(app: &mut App, c: char) {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    app::update(
        app,
        Event::Key(KeyEvent::new(
            if c == '\n' {
                KeyCode::Enter
            } else {
                KeyCode::Char(c)
            },
            KeyModifiers::NONE,
        )),
    );
}

#[test]
fn dashboard_shows_every_tier_in_traffic_order_with_state_colours() {
    for theme_name in THEMES {
        let theme = Theme::builtin(theme_name).expect("theme");
        for (w, h) in SIZES {
            let app = fixture_app();
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("dashboard_{theme_name}_{w}x{h}"), t);
            // Traffic order: lb above app above cache above db above worker.
            let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("{s} missing:\n{t}"));
            assert!(
                pos("LB") < pos("APP")
                    && pos("APP") < pos("CACHE")
                    && pos("CACHE") < pos("DB")
                    && pos("DB") < pos("WORKER")
            );
            // db1 is critical (connections 144/150): its symbol is drawn in the critical colour.
            let (x, y) = find(&buf, "db1", &theme.critical.symbol);
            assert_eq!(
                buf[(x, y)].fg,
                theme.critical.color,
                "{theme_name} {w}x{h} db1 symbol colour"
            );
            assert!(t.contains("connections 144/150"), "{t}");
            // cache1 is down, drawn in the down colour; app2 is ok in the ok colour.
            let (x, y) = find(&buf, "cache1", &theme.down.symbol);
            assert_eq!(buf[(x, y)].fg, theme.down.color);
            let (x, y) = find(&buf, "app2", &theme.ok.symbol);
            assert_eq!(buf[(x, y)].fg, theme.ok.color);
            // The header names the inventory and the overall (worst) state.
            assert!(
                t.lines()
                    .next()
                    .is_some_and(|l| l.contains("lab") && l.contains(&theme.down.symbol)),
                "{t}"
            );
            if theme_name == "colorblind" {
                // State is never told by colour alone: the label is in the text.
                assert!(t.contains("DOWN"), "{t}");
            }
        }
    }
}

#[test]
fn detail_lists_checks_worst_first_with_history_and_errors() {
    for theme_name in THEMES {
        let theme = Theme::builtin(theme_name).expect("theme");
        for (w, h) in SIZES {
            let mut app = fixture_app();
            app.dashboard.selected = app
                .inventory
                .hosts
                .iter()
                .position(|h| h.name == "db1")
                .expect("db1");
            key(&mut app, '\n');
            assert_eq!(app.view, View::Detail);
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("detail_{theme_name}_{w}x{h}"), t);
            let (x, y) = find(&buf, "mysql.connections", &theme.critical.symbol);
            assert_eq!(buf[(x, y)].fg, theme.critical.color);
            assert!(t.contains("recent errors"));
            let checks = app.host_checks("db1");
            assert_eq!(checks[0].state, State::Critical, "worst first");
        }
    }
}

#[test]
fn help_overlay_is_generated_from_the_live_keymap() {
    let theme = Theme::dark();
    for (w, h) in SIZES {
        let mut app = fixture_app();
        app.keymap
            .apply(
                "[global]\nquit = [\"ctrl-q\"]\n",
                Path::new("user-keys.toml"),
            )
            .expect("override");
        key(&mut app, '?');
        assert!(app.help);
        let buf = draw(&app, &theme, w, h);
        let t = text(&buf);
        insta::assert_snapshot!(format!("help_dark_{w}x{h}"), t);
        assert!(
            t.contains("ctrl-q") && t.contains("quit opsdeck"),
            "user binding shown:\n{t}"
        );
        // On a short terminal the overlay scrolls; the keys it shows stay the live ones.
        key(&mut app, 'j');
        assert_eq!(app.help_scroll, 1);
        let scrolled = text(&draw(&app, &theme, w, h));
        assert_ne!(scrolled, t, "scrolling moves the overlay's text");
        key(&mut app, '?');
        assert!(!app.help);
        assert_eq!(app.help_scroll, 0, "closing resets the scroll");
    }
}

#[test]
fn keys_move_through_tiers_and_views() {
    let mut app = fixture_app();
    assert_eq!(app.selected_host().map(|h| h.name.as_str()), Some("lb1"));
    key(&mut app, 'j');
    assert_eq!(app.selected_host().map(|h| h.name.as_str()), Some("app1"));
    key(&mut app, 'l');
    assert_eq!(app.selected_host().map(|h| h.name.as_str()), Some("app2"));
    key(&mut app, 'j');
    assert_eq!(app.selected_host().map(|h| h.name.as_str()), Some("cache1"));
    key(&mut app, 'k');
    assert_eq!(
        app.selected_host().map(|h| h.name.as_str()),
        Some("app1"),
        "up goes to the first host of the previous tier"
    );
    key(&mut app, 'q');
    assert!(app.quit);
}

#[test]
fn no_colour_theme_keeps_symbols_and_labels() {
    let theme = Theme::dark().monochrome();
    let app = fixture_app();
    let buf = draw(&app, &theme, 80, 24);
    let t = text(&buf);
    assert!(
        t.contains(&theme.critical.symbol) && t.contains("crit"),
        "{t}"
    );
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            assert_eq!(
                buf[(x, y)].fg,
                ratatui::style::Color::Reset,
                "no colour at {x},{y}"
            );
        }
    }
}

/// The shipped runbooks, loaded as the console loads them.
fn with_runbooks(app: App) -> App {
    let dir = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    let runbooks = opsdeck::runbook::load_dir(Path::new(&dir), None)
        .expect("runbooks dir")
        .into_iter()
        .map(|(p, r)| Arc::new(r.unwrap_or_else(|e| panic!("{}: {e}", p.display())).0))
        .collect();
    app.with_runbooks(runbooks)
}

/// Drives db-connection-exhaustion through the real engine up to its confirmation, answering
/// its queries with the rows a full server would give.
fn app_awaiting_confirmation() -> App {
    use opsdeck::app::Command;
    use opsdeck::runbook::engine::ExecResult;
    let mut app = with_runbooks(fixture_app());
    key(&mut app, '2');
    // Health suggests the down Redis first, then the full database.
    let order: Vec<String> = app
        .browser_list()
        .iter()
        .map(|i| app.runbooks[*i].id.clone())
        .collect();
    assert_eq!(
        order[..2],
        ["redis-connection-failure", "db-connection-exhaustion"],
        "{order:?}"
    );
    for c in "/dbconn\n".chars() {
        key(&mut app, c);
    }
    assert_eq!(
        app.selected_runbook().map(|r| r.id.as_str()),
        Some("db-connection-exhaustion")
    );
    let mut pending: Vec<Command> = Vec::new();
    let k = |app: &mut App, c: char| {
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let code = if c == '\n' {
            KeyCode::Enter
        } else {
            KeyCode::Char(c)
        };
        app::update(app, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    };
    pending.extend(k(&mut app, '\n'));
    for _ in 0..50 {
        // Inputs are asked when a step first needs them: accept each offered default.
        if app.run.as_ref().is_some_and(|r| r.typing.is_some()) {
            pending.extend(k(&mut app, '\n'));
            continue;
        }
        let Some(cmd) = pending.pop() else { break };
        match cmd {
            Command::OpenRun(spec) => {
                let engine = opsdeck::runbook::driver::new_engine(&spec, &app.inventory)
                    .expect("the run opens");
                pending.extend(app::update(&mut app, Event::RunOpened { run_id: "20261122T030405Z-db-connection-exhaustion-4242".into(), journal_path: "/var/lib/opsdeck/journal/20261122T030405Z-db-connection-exhaustion-4242.jsonl".into(), engine: Box::new(engine) }));
            }
            Command::Exec(req) => {
                let row = |pairs: &[(&str, &str)]| {
                    pairs
                        .iter()
                        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                        .collect()
                };
                let rows = match req.step.as_str() {
                    "usage" => vec![row(&[("used_pct", "96"), ("max_connections", "150")])],
                    "processlist" => vec![
                        row(&[
                            ("Id", "41"),
                            ("User", "app"),
                            ("Command", "Sleep"),
                            ("Time", "812"),
                        ]),
                        row(&[
                            ("Id", "42"),
                            ("User", "app"),
                            ("Command", "Sleep"),
                            ("Time", "790"),
                        ]),
                    ],
                    "idle" => vec![row(&[("Id", "41")]), row(&[("Id", "42")])],
                    _ => Vec::new(),
                };
                let result = ExecResult {
                    exit: Some(0),
                    output: rows.len().to_string() + " rows",
                    rows,
                    ..ExecResult::default()
                };
                pending.extend(app::update(
                    &mut app,
                    Event::ExecDone {
                        seq: req.seq,
                        result,
                    },
                ));
            }
            _ => {}
        }
    }
    assert!(
        app.run.as_ref().is_some_and(|r| r.ask.is_some()),
        "awaiting the confirmation"
    );
    app
}

#[test]
fn every_other_view_renders_in_two_themes_and_two_sizes() {
    use opsdeck::runbook::journal::RunSummary;
    for theme_name in THEMES {
        let theme = Theme::builtin(theme_name).expect("theme");
        for (w, h) in SIZES {
            // Runbook browser: the suggested runbook first, marked with its state.
            let mut app = with_runbooks(fixture_app());
            key(&mut app, '2');
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("browser_{theme_name}_{w}x{h}"), t);
            let (x, y) = find(&buf, "Database connecti", &theme.critical.symbol);
            assert_eq!(
                buf[(x, y)].fg,
                theme.critical.color,
                "suggested runbook carries the state colour"
            );

            // Guided execution, awaiting the confirmation of the KILL.
            let app = app_awaiting_confirmation();
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("run_confirm_{theme_name}_{w}x{h}"), t);
            assert!(
                t.contains("KILL CONNECTION '41'"),
                "the exact command:\n{t}"
            );
            assert!(
                t.contains("KILL CONNECTION '42'"),
                "every command the confirmation covers:\n{t}"
            );
            let (x, y) = find(&buf, "Connections in use", "✔");
            assert_eq!(
                buf[(x, y)].fg,
                theme.ok.color,
                "finished step marked in the ok colour"
            );

            // The run's end after an abort.
            let mut app = app_awaiting_confirmation();
            key(&mut app, 'A');
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("run_summary_{theme_name}_{w}x{h}"), t);
            assert!(
                t.contains("aborted") && t.contains("export Markdown timeline"),
                "{t}"
            );

            // Journal.
            let mut app = fixture_app();
            app.view = View::Journal;
            app::update(
                &mut app,
                Event::JournalListed(vec![RunSummary {
                    run: "20261122T030405Z-redis-connection-failure-77".into(),
                    runbook: "redis-connection-failure".into(),
                    operator: "oncall".into(),
                    started: "2026-11-22T03:04:05Z".into(),
                    outcome: Some("succeeded".into()),
                }]),
            );
            app::update(&mut app, Event::JournalLoaded { run: "20261122T030405Z-redis-connection-failure-77".into(), markdown: "# Redis connection failure\n\n- 03:04:05 run started by oncall\n- 03:04:07 ping: failed (connection refused)\n- 03:05:12 restart confirmed by oncall\n- 03:05:20 verify: succeeded\n".into() });
            let t = text(&draw(&app, &theme, w, h));
            insta::assert_snapshot!(format!("journal_{theme_name}_{w}x{h}"), t);
            assert!(t.contains("restart confirmed by oncall"));

            // Learn: the topology page, then a runbook in training mode.
            let mut app = with_runbooks(fixture_app());
            key(&mut app, '5');
            let t = text(&draw(&app, &theme, w, h));
            insta::assert_snapshot!(format!("learn_{theme_name}_{w}x{h}"), t);
            assert!(t.contains("Sentinel"), "what the cache tier does:\n{t}");
            key(&mut app, 'l');
            let t = text(&draw(&app, &theme, w, h));
            assert!(t.contains("runbook 1 of 8"), "{t}");
        }
    }
}

#[test]
fn host_detail_names_the_runbook_that_fits_and_enter_opens_it() {
    let theme = Theme::dark();
    let mut app = with_runbooks(fixture_app());
    app.dashboard.selected = app
        .inventory
        .hosts
        .iter()
        .position(|h| h.name == "cache1")
        .expect("cache1");
    key(&mut app, '\n');
    let buf = draw(&app, &theme, 120, 30);
    let t = text(&buf);
    let line = t
        .lines()
        .find(|l| l.contains("Redis connection failure"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        line.contains("redis.ping on cache1") && line.contains("enter → Redis connection failure"),
        "{line}"
    );
    let (x, y) = find(&buf, "Redis connection failure", &theme.down.symbol);
    assert_eq!(buf[(x, y)].fg, theme.down.color);
    key(&mut app, '\n');
    assert_eq!(app.view, View::Runbooks);
    assert_eq!(
        app.selected_runbook().map(|r| r.id.as_str()),
        Some("redis-connection-failure")
    );
}
