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
use opsdeck::probes::state::HealthStore;
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
    let mut health = HealthStore::new(&specs, Default::default(), History::new(120));
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

/// Every built-in theme: the dashboard is snapshot-tested in each.
const ALL_THEMES: [&str; 4] = ["dark", "light", "high-contrast", "colorblind"];

/// The demo console (`ui::demo_state`: the lab's topology with every service, two minutes of
/// an incident fed through `app::update`) plus one run found in the journal.
fn demo_app() -> App {
    use opsdeck::runbook::journal::RunSummary;
    let inv = opsdeck::ui::demo_state::lab_inventory().expect("lab inventory");
    let mut app = opsdeck::ui::demo_state::app(inv, Vec::new());
    app::update(
        &mut app,
        Event::JournalListed(vec![RunSummary {
            run: "20261122T030230Z-redis-sentinel-failover-77".into(),
            runbook: "redis-sentinel-failover".into(),
            operator: "oncall@ops1".into(),
            started: "2026-11-22T03:02:30Z".into(),
            outcome: Some("succeeded".into()),
        }]),
    );
    app
}

/// The line of a host's row on the dashboard (not its tier's heading, not a feed entry):
/// the state symbol (and label), then the name.
fn host_row(t: &str, name: &str) -> usize {
    t.lines()
        .position(|l| {
            l.starts_with(' ')
                && !l.contains('│')
                && !l[1..].starts_with(|c: char| c.is_ascii_digit())
                && l.split_whitespace().take(3).any(|w| w == name)
        })
        .unwrap_or_else(|| panic!("no row for {name}:\n{t}"))
}

/// The cell where `needle` starts on line `y`.
fn at(buf: &Buffer, y: usize, needle: &str) -> (u16, u16) {
    let t = text(buf);
    let line = t.lines().nth(y).unwrap_or_default();
    let byte = line
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on line {y}: {line}"));
    (line[..byte].chars().count() as u16, y as u16)
}

fn fg(buf: &Buffer, (x, y): (u16, u16)) -> ratatui::style::Color {
    buf[(x, y)].fg
}

#[test]
fn dashboard_is_a_stack_map_with_an_event_feed_in_every_theme() {
    for theme_name in ALL_THEMES {
        let theme = Theme::builtin(theme_name).expect("theme");
        for (w, h) in SIZES {
            let app = demo_app();
            let buf = draw(&app, &theme, w, h);
            let t = text(&buf);
            insta::assert_snapshot!(format!("dashboard_{theme_name}_{w}x{h}"), t);
            let ctx = format!("{theme_name} {w}x{h}");
            // Traffic order: lb above app above cache above db above worker.
            let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("{s} missing:\n{t}"));
            assert!(
                pos("▶ LB") < pos("↓ APP")
                    && pos("↓ APP") < pos("↓ CACHE")
                    && pos("↓ CACHE") < pos("↓ DB")
                    && pos("↓ DB") < pos("↓ WORKER"),
                "{t}"
            );
            // State pills: each host's symbol in its state's colour.
            for (host, st) in [
                ("db1", &theme.critical),
                ("cache1", &theme.down),
                ("app1", &theme.warning),
                ("app2", &theme.ok),
            ] {
                let y = host_row(&t, host);
                assert_eq!(fg(&buf, at(&buf, y, &st.symbol)), st.color, "{ctx} {host}");
                if theme.always_label {
                    // State is never told by colour alone.
                    assert!(t.lines().nth(y).is_some_and(|l| l.contains(&st.label)));
                }
            }
            // Key figures: the full database in the critical colour, on its row and its
            // tier's heading; a healthy figure in the plain text colour.
            let db1 = host_row(&t, "db1");
            let conn = if w >= 120 {
                "connections 98%"
            } else {
                "conn 98%"
            };
            assert_eq!(fg(&buf, at(&buf, db1, conn)), theme.critical.color, "{ctx}");
            let tier = t
                .lines()
                .position(|l| l.starts_with("↓ DB"))
                .expect("db tier");
            assert!(
                t.lines()
                    .nth(tier)
                    .is_some_and(|l| l.contains("primary db1")),
                "{t}"
            );
            assert_eq!(
                fg(&buf, at(&buf, tier, "98%")),
                theme.critical.color,
                "{ctx}"
            );
            let db2 = host_row(&t, "db2");
            assert_eq!(
                fg(&buf, at(&buf, db2, "7%")),
                theme.fg,
                "{ctx} db2 ok figure"
            );
            // app1's CPU is a warning: its figure and its sparkline in the warning colour.
            let app1 = host_row(&t, "app1");
            assert_eq!(fg(&buf, at(&buf, app1, "cpu  86%")), theme.warning.color);
            let (x, y) = at(&buf, app1, "86%");
            assert_eq!(
                fg(&buf, (x + 4, y)),
                theme.warning.color,
                "{ctx} cpu sparkline"
            );
            // cache1 is unreachable: the reason, in the down colour, where its figures go.
            let cache1 = host_row(&t, "cache1");
            assert_eq!(
                fg(&buf, at(&buf, cache1, "host.reachable: ssh")),
                theme.down.color
            );
            // The selected host is shown as selected.
            let lb = host_row(&t, "lb");
            let (x, y) = at(&buf, lb, " lb ");
            assert_eq!(buf[(x + 1, y)].bg, theme.selection_bg, "{ctx} selection");

            // The feed: newest first, time, symbol and new state in its colour, the cause.
            let feed = t
                .lines()
                .position(|l| l.starts_with("── events"))
                .unwrap_or_else(|| panic!("no feed:\n{t}"));
            let entry = t
                .lines()
                .position(|l| l.contains("db1 mysql.connections warning → critical"))
                .unwrap_or_else(|| panic!("no db1 entry:\n{t}"));
            assert_eq!(entry, feed + 1, "the newest entry first:\n{t}");
            assert!(
                t.lines()
                    .nth(entry)
                    .is_some_and(|l| l.starts_with(" 03:03:54 ") && l.contains(": conn")),
                "time and cause:\n{t}"
            );
            assert_eq!(fg(&buf, at(&buf, entry, "03:03:54")), theme.dim);
            assert_eq!(
                fg(&buf, at(&buf, entry, &theme.critical.symbol)),
                theme.critical.color
            );
            assert_eq!(fg(&buf, at(&buf, entry, "warning →")), theme.warning.color);
            assert_eq!(fg(&buf, at(&buf, entry, "critical:")), theme.critical.color);
            let cache = t
                .lines()
                .position(|l| l.contains("cache1 host.reachable new → down"))
                .unwrap_or_else(|| panic!("no cache1 entry:\n{t}"));
            assert_eq!(fg(&buf, at(&buf, cache, "down:")), theme.down.color);
            if h >= 50 {
                // The run found in the journal, at its start time, in the ok colour.
                let run = t
                    .lines()
                    .position(|l| l.contains("run redis-sentinel-failover succeeded"))
                    .unwrap_or_else(|| panic!("no run entry:\n{t}"));
                assert_eq!(
                    fg(&buf, at(&buf, run, "run redis-sentinel-failover succeeded")),
                    theme.ok.color
                );
                assert!(
                    t.contains("03:02:30 ")
                        && t.contains(
                            "run redis-sentinel-failover succeeded: started here by oncall@ops1"
                        ),
                    "{t}"
                );
            }
            // The header names the inventory and the overall (worst) state.
            assert!(
                t.lines().next().is_some_and(|l| l.contains("opsdeck-lab")
                    && l.contains(&theme.down.symbol)
                    && l.contains("03:04:05")),
                "{t}"
            );
        }
    }
}

#[test]
fn dashboard_tiers_show_their_services_key_figures() {
    let theme = Theme::dark();
    let app = demo_app();
    let t = text(&draw(&app, &theme, 200, 50));
    let line = |prefix: &str| {
        t.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}:\n{t}"))
            .to_owned()
    };
    // LB: upstreams up/total and p95; app: php-fpm busy/total and the listen queue; db:
    // which node is primary, connections used, replication lag; cache: the master Sentinel
    // names, quorum, memory; worker: queue length and workers up.
    let lb = line("▶ LB");
    assert!(
        lb.contains("upstreams 2/2 up") && lb.contains("p95 "),
        "{lb}"
    );
    let app_tier = line("↓ APP");
    assert!(
        app_tier.contains("php-fpm 8/20 busy") && app_tier.contains("listen queue 0"),
        "{app_tier}"
    );
    let db = line("↓ DB");
    assert!(
        db.contains("primary db1")
            && db.contains("connections 98% used")
            && db.contains("replication lag 0 s"),
        "{db}"
    );
    let cache = line("↓ CACHE");
    assert!(
        cache.contains("master cache1")
            && cache.contains("quorum ok (3 sentinels)")
            && cache.contains("memory"),
        "{cache}"
    );
    let worker = line("↓ WORKER");
    assert!(
        worker.contains("jobs queued") && worker.contains("workers up on 1/1 hosts"),
        "{worker}"
    );
    // Each host row: the role the servers report.
    let db2 = t
        .lines()
        .nth(host_row(&t, "db2"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        db2.contains("replica") && db2.contains("replication lag 0 s"),
        "{db2}"
    );
    // Sparklines line up: CPU and trend columns start at the same x on every host row.
    let spark_x = |host: &str| {
        let l = t.lines().nth(host_row(&t, host)).unwrap_or_default();
        let b = l.find(|c: char| ('▁'..='█').contains(&c)).unwrap_or(0);
        l[..b].chars().count()
    };
    let x = spark_x("lb");
    for h in ["app1", "app2", "cache2", "db1", "db2", "worker1"] {
        assert_eq!(spark_x(h), x, "{h}'s sparkline column:\n{t}");
    }
    // At 80×24 every tier and host still fits, with the feed below.
    let small = text(&draw(&app, &theme, 80, 24));
    for h in [
        "lb", "app1", "app2", "cache1", "cache2", "db1", "db2", "worker1",
    ] {
        host_row(&small, h);
    }
    assert!(small.contains("── events"), "{small}");
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
fn keys_move_through_hosts_and_tiers_and_views() {
    let mut app = fixture_app();
    let name = |app: &App| app.selected_host().map(|h| h.name.clone());
    assert_eq!(name(&app).as_deref(), Some("lb1"));
    key(&mut app, 'j');
    assert_eq!(name(&app).as_deref(), Some("app1"));
    key(&mut app, 'j');
    assert_eq!(
        name(&app).as_deref(),
        Some("app2"),
        "down: the next host row"
    );
    key(&mut app, 'l');
    assert_eq!(
        name(&app).as_deref(),
        Some("cache1"),
        "right: the next tier"
    );
    key(&mut app, 'h');
    assert_eq!(
        name(&app).as_deref(),
        Some("app1"),
        "left goes to the first host of the previous tier"
    );
    key(&mut app, 'k');
    assert_eq!(name(&app).as_deref(), Some("lb1"));
    key(&mut app, 'G');
    assert_eq!(name(&app).as_deref(), Some("worker1"));
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
            assert!(t.contains("runbook 1 of 12"), "{t}");
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

/// A console over the fixture inventory that has heard nothing yet, and its probe plan.
fn empty_app() -> (App, Vec<opsdeck::probes::plan::ProbeSpec>, Instant) {
    let path = format!(
        "{}/tests/inventories/console.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let inv = Arc::new(opsdeck::inventory::load(Some(Path::new(&path))).expect("fixture loads"));
    let hosts: Vec<_> = inv.hosts.iter().collect();
    let specs = plan::plan(&inv, &hosts, &Intervals::default());
    let health = HealthStore::new(&specs, Default::default(), History::new(120));
    let t0 = Instant::now();
    let app = App::new(inv, health, Keymap::defaults(), t0, wall_at(0));
    (app, specs, t0)
}

fn wall_at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 22, 12, 3, 0)
        .single()
        .expect("time")
        + chrono::Duration::seconds(secs)
}

/// One poll: db1 with `connections` of 30 in use, every other target of the plan ignored.
fn db1_poll(
    specs: &[opsdeck::probes::plan::ProbeSpec],
    t0: Instant,
    secs: u64,
    connections: u64,
) -> Event {
    let spec = specs
        .iter()
        .find(|s| s.key.host == "db1" && s.key.kind == ProbeKind::Mysql)
        .expect("db1 mysql probe");
    Event::Probes(vec![ProbeResult {
        target: spec.key.clone(),
        at: t0 + Duration::from_secs(secs),
        at_utc: wall_at(secs as i64),
        took: Duration::from_millis(2),
        outcome: Outcome::Ok(Sample::Mysql(MysqlSample::Status(MysqlStatus {
            connections,
            max_connections: 30,
            ..MysqlStatus::default()
        }))),
    }])
}

#[test]
fn a_probe_batch_that_changes_a_state_adds_a_feed_entry_with_its_cause() {
    use opsdeck::app::feed::FeedKind;
    let (mut app, specs, t0) = empty_app();
    // A healthy first sample is not news.
    app::update(&mut app, db1_poll(&specs, t0, 1, 5));
    assert_eq!(
        app.feed.len(),
        0,
        "{:?}",
        app.feed.newest().collect::<Vec<_>>()
    );
    // 29 of 30 connections used: critical, with the reason as the cause, at the sample's time.
    app::update(&mut app, db1_poll(&specs, t0, 6, 29));
    assert_eq!(app.feed.len(), 1);
    let e = app.feed.newest().next().expect("entry");
    assert_eq!(e.at, wall_at(6));
    match &e.kind {
        FeedKind::Check {
            host,
            check,
            from,
            to,
            cause,
            ..
        } => {
            assert_eq!(
                (host.as_str(), check.as_str()),
                ("db1", "mysql.connections")
            );
            assert_eq!((*from, *to), (Some(State::Ok), State::Critical));
            assert!(cause.starts_with("connections 29/30 (97 %)"), "{cause}");
        }
        other => panic!("not a check change: {other:?}"),
    }
    assert_eq!(
        e.text(),
        "db1 mysql.connections ok → critical: connections 29/30 (97 %) (critical above 95 %)"
    );
}

#[test]
fn unchanged_states_add_no_feed_entry() {
    let (mut app, specs, t0) = empty_app();
    app::update(&mut app, db1_poll(&specs, t0, 1, 29));
    let first = app.feed.len();
    assert_eq!(first, 1, "a check failing on its first sample is news");
    for (i, n) in [29, 30, 29].iter().enumerate() {
        app::update(&mut app, db1_poll(&specs, t0, 6 + 5 * i as u64, *n));
        app::update(
            &mut app,
            Event::Tick {
                now: t0 + Duration::from_secs(7 + 5 * i as u64),
                wall: wall_at(7 + 5 * i as i64),
            },
        );
    }
    assert_eq!(app.feed.len(), first, "still critical: nothing new");
    // Recovery is a change again.
    app::update(&mut app, db1_poll(&specs, t0, 30, 3));
    assert_eq!(app.feed.len(), first + 1);
    assert!(
        app.feed
            .newest()
            .next()
            .is_some_and(|e| e.text().starts_with("db1 mysql.connections critical → ok")),
        "{:?}",
        app.feed.newest().next()
    );
}

/// A runbook paired with the connection-exhaustion drill.
const DRILL_RUNBOOK: &str = r#"
id = "db-connection-exhaustion"
title = "Database connections exhausted"
summary = "Kill the idle connections."
severity = "critical"
rto = "5m"
tiers = ["db"]
drill = "connection-exhaustion"
triggers = [{ check = "mysql.connections", state = "warning" }]

[[steps]]
id = "usage"
title = "Connections in use"
kind = "diagnose"
target = { selector = "db:primary", pick = "one" }
sql = "SELECT 1 AS used"
explain = "Counts the connections. Nothing changes."
"#;

fn drill_app() -> (App, Instant) {
    let (app, _, t0) = empty_app();
    let (rb, _) = opsdeck::runbook::load_str(
        DRILL_RUNBOOK,
        Path::new("db-connection-exhaustion.toml"),
        Some(&app.inventory),
    )
    .expect("runbook loads");
    (app.with_runbooks(vec![Arc::new(rb)]), t0)
}

fn tick(app: &mut App, t0: Instant, secs: u64) -> Vec<opsdeck::app::Command> {
    app::update(
        app,
        Event::Tick {
            now: t0 + Duration::from_secs(secs),
            wall: wall_at(secs as i64),
        },
    )
}

fn checked(app: &mut App, present: Result<bool, String>) -> Vec<opsdeck::app::Command> {
    app::update(
        app,
        Event::DrillChecked {
            drill: "connection-exhaustion".into(),
            present,
        },
    )
}

/// Opens the drills page and starts the first drill; returns what the app asked for.
fn start_first_drill(app: &mut App) -> Vec<opsdeck::app::Command> {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    key(app, '5');
    for _ in 0..=app.runbooks.len() {
        key(app, 'l');
    }
    app::update(
        app,
        Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    )
}

#[test]
fn learn_offers_every_drill_with_the_runbook_that_fixes_it() {
    let (mut app, _) = drill_app();
    key(&mut app, '5');
    for _ in 0..3 {
        key(&mut app, 'l');
    }
    let t = text(&draw(&app, &Theme::dark(), 160, 40));
    for (name, _) in opsdeck::lab::drill::DRILLS {
        assert!(t.contains(name), "drill {name} offered:\n{t}");
    }
    let line = t
        .lines()
        .find(|l| l.contains("connection-exhaustion"))
        .unwrap_or_default();
    assert!(
        line.contains("db-connection-exhaustion · RTO 5:00"),
        "paired from the runbook's `drill`:\n{t}"
    );
}

#[test]
fn the_learn_clock_starts_only_when_the_fault_is_confirmed_on_the_servers() {
    use opsdeck::app::Command;
    let (mut app, t0) = drill_app();
    let cmds = start_first_drill(&mut app);
    assert!(
        matches!(cmds.as_slice(), [Command::InjectDrill(d)] if d == "connection-exhaustion"),
        "{cmds:?}"
    );
    // Until the injection has returned, the servers are not even asked.
    assert!(
        !tick(&mut app, t0, 1)
            .iter()
            .any(|c| matches!(c, Command::CheckDrill(_)))
    );
    let cmds = app::update(&mut app, Event::DrillInjected(Ok("filled db1".into())));
    assert!(
        matches!(cmds.as_slice(), [Command::CheckDrill(_)]),
        "{cmds:?}"
    );
    // The fault is not (yet) on the servers: nothing is resolved, the clock has not started.
    tick(&mut app, t0, 2);
    assert!(checked(&mut app, Ok(false)).is_empty());
    assert!(app.learn.result.is_none(), "no \"resolved in 0:00\"");
    let d = app.learn.drill.clone().expect("drill on");
    assert!(d.confirmed.is_none());
    assert_eq!(d.elapsed(app.now), Duration::ZERO);
    // A check that cannot reach the servers neither starts nor stops the clock.
    tick(&mut app, t0, 20);
    assert!(checked(&mut app, Err("no Sentinel answers".into())).is_empty());
    assert!(
        app.learn
            .drill
            .as_ref()
            .is_some_and(|d| d.confirmed.is_none())
    );
    // Confirmed at 30 s: the clock starts there.
    tick(&mut app, t0, 30);
    assert!(checked(&mut app, Ok(true)).is_empty());
    assert_eq!(
        app.learn
            .drill
            .as_ref()
            .and_then(|d| d.confirmed)
            .map(|c| c.1),
        Some(wall_at(30))
    );
    let line = text(&draw(&app, &Theme::dark(), 160, 40));
    assert!(
        line.contains("drill connection-exhaustion 0:00 / RTO 5:00"),
        "{line}"
    );
    // A hint, counted.
    tick(&mut app, t0, 60);
    key(&mut app, 'H');
    assert!(
        app.flash
            .as_deref()
            .is_some_and(|f| f.starts_with("hint 1/3: Look at the db tier")),
        "{:?}",
        app.flash
    );
    // Gone at 120 s: resolved in 1:30 (from the confirmation, not the injection), saved.
    tick(&mut app, t0, 120);
    let cmds = checked(&mut app, Ok(false));
    let [Command::SaveScore(score)] = cmds.as_slice() else {
        panic!("{cmds:?}");
    };
    assert_eq!(score.drill, "connection-exhaustion");
    assert_eq!(score.runbook.as_deref(), Some("db-connection-exhaustion"));
    assert_eq!(score.resolved_s, 90);
    assert_eq!(score.rto_s, Some(300));
    assert_eq!(score.within_rto(), Some(true));
    assert_eq!(score.hints, 1);
    assert_eq!(score.started, wall_at(30));
    assert!(app.learn.drill.is_none());
    assert!(
        app.feed.newest().next().is_some_and(
            |e| e.text() == "drill connection-exhaustion: resolved in 1:30 (within the RTO)"
        ),
        "{:?}",
        app.feed.newest().next()
    );
}

#[test]
fn a_run_started_during_a_drill_is_marked_as_the_drill_s() {
    use opsdeck::app::Command;
    let (mut app, t0) = drill_app();
    start_first_drill(&mut app);
    app::update(&mut app, Event::DrillInjected(Ok("filled db1".into())));
    tick(&mut app, t0, 5);
    checked(&mut app, Ok(true));
    key(&mut app, '2');
    let cmds = app::update(
        &mut app,
        Event::Key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Enter,
            crossterm::event::KeyModifiers::NONE,
        )),
    );
    let spec = cmds
        .iter()
        .find_map(|c| match c {
            Command::OpenRun(spec) => Some(spec),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{cmds:?}"));
    assert_eq!(spec.drill.as_deref(), Some("connection-exhaustion"));
    assert!(!spec.dry_run);
}
