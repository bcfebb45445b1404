//! A drill resolved in learn mode is saved by the console's executor to a private JSON Lines
//! file in the data directory, and `opsdeck drill scores [--json]` lists it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use chrono::TimeZone;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use opsdeck::app::keymap::Keymap;
use opsdeck::app::{self, App, Event};
use opsdeck::probes::history::History;
use opsdeck::probes::state::HealthStore;
use opsdeck::transport::Connections;
use opsdeck::tui::Executor;

const RUNBOOK: &str = r#"
id = "redis-connection-failure"
title = "Redis connection failure"
summary = "Bring the master back."
severity = "high"
rto = "2m"
tiers = ["cache"]
drill = "redis-down"
triggers = [{ check = "redis.ping", state = "down" }]

[[steps]]
id = "ping"
title = "Does the master answer?"
kind = "diagnose"
target = { selector = "cache1" }
shell = "true"
read_only = true
"#;

fn wall(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 22, 3, 4, 5)
        .single()
        .expect("time")
        + chrono::Duration::seconds(secs)
}

fn opsdeck(data: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary");
    c.env("OPSDECK_DATA_DIR", data)
        .env("OPSDECK_LOG_DIR", data.join("logs"))
        .env_remove("OPSDECK_INVENTORY");
    c
}

#[tokio::test]
async fn a_resolved_drill_is_saved_privately_and_listed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");

    // Nothing yet.
    let out = opsdeck(&data)
        .args(["drill", "scores"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drill scores yet"));

    // The console: the drill started from learn mode, confirmed on the servers at 10 s, gone
    // at 85 s. The injection and the checks are answered here (no lab is touched); the save
    // goes through the real executor.
    let inv_path = format!(
        "{}/tests/inventories/console.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let inv = Arc::new(opsdeck::inventory::load(Some(Path::new(&inv_path))).expect("inventory"));
    let (rb, _) = opsdeck::runbook::load_str(
        RUNBOOK,
        Path::new("redis-connection-failure.toml"),
        Some(&inv),
    )
    .expect("runbook");
    let t0 = Instant::now();
    let health = HealthStore::new(&[], Default::default(), History::new(10));
    let mut a = App::new(Arc::clone(&inv), health, Keymap::defaults(), t0, wall(0))
        .with_runbooks(vec![Arc::new(rb)]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let scores = data.join("drill-scores.jsonl");
    let mut exec = Executor::new(
        Arc::clone(&inv),
        Arc::new(Connections::new()),
        tmp.path().join("journal"),
        tx,
    )
    .with_scores_file(scores.clone());
    let key = |a: &mut App, code: KeyCode| {
        app::update(a, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    };
    key(&mut a, KeyCode::Char('5'));
    for _ in 0..2 {
        key(&mut a, KeyCode::Char('l'));
    }
    // redis-down is the second drill.
    key(&mut a, KeyCode::Char('j'));
    let cmds = key(&mut a, KeyCode::Enter);
    assert!(
        matches!(cmds.as_slice(), [app::Command::InjectDrill(d)] if d == "redis-down"),
        "{cmds:?}"
    );
    app::update(&mut a, Event::DrillInjected(Ok("killed redis".into())));
    let at = |a: &mut App, secs: u64| {
        app::update(
            a,
            Event::Tick {
                now: t0 + Duration::from_secs(secs),
                wall: wall(secs as i64),
            },
        );
    };
    let checked = |a: &mut App, present: bool| {
        app::update(
            a,
            Event::DrillChecked {
                drill: "redis-down".into(),
                present: Ok(present),
            },
        )
    };
    at(&mut a, 10);
    checked(&mut a, true);
    at(&mut a, 40);
    key(&mut a, KeyCode::Char('H'));
    key(&mut a, KeyCode::Char('H'));
    at(&mut a, 85);
    let cmds = checked(&mut a, false);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    for c in cmds {
        exec.handle(c);
    }
    let saved = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the executor answers")
        .expect("an event");
    let Event::ScoreSaved(Ok(path)) = &saved else {
        panic!("{saved:?}");
    };
    assert_eq!(Path::new(path), scores);
    app::update(&mut a, saved);
    assert!(
        a.flash
            .as_deref()
            .is_some_and(|f| f.contains("opsdeck drill scores")),
        "{:?}",
        a.flash
    );

    // Private: the file 0600, its directory 0700.
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&scores), 0o600);
    assert_eq!(mode(&data), 0o700);

    // Listed, as a table and as JSON.
    let out = opsdeck(&data)
        .args(["drill", "scores"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains("redis-down"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("redis-connection-failure")
            && row.contains("1:15")
            && row.contains("2:00")
            && row.contains("within")
            && row.starts_with("2026-11-22 03:04"),
        "{row}"
    );
    let out = opsdeck(&data)
        .args(["drill", "scores", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let s = &v[0];
    assert_eq!(s["drill"], "redis-down");
    assert_eq!(s["runbook"], "redis-connection-failure");
    assert_eq!(s["resolved_s"], 75);
    assert_eq!(s["rto_s"], 120);
    assert_eq!(s["within_rto"], true);
    assert_eq!(s["hints"], 2);
    assert_eq!(s["steps"], 0);
    assert_eq!(s["started"], "2026-11-22T03:04:15Z");
    assert!(
        s["operator"].as_str().is_some_and(|o| o.contains('@')),
        "the OS account that resolved it: {s}"
    );
    assert_eq!(v.as_array().map(Vec::len), Some(1));
}

#[test]
fn a_runbook_naming_an_unknown_drill_is_refused_at_its_position() {
    let text = RUNBOOK.replace("drill = \"redis-down\"", "drill = \"redis-gone\"");
    let err = opsdeck::runbook::load_str(&text, Path::new("redis-connection-failure.toml"), None)
        .expect_err("unknown drill");
    let msg = err.to_string();
    assert!(
        msg.starts_with("redis-connection-failure.toml:8:9: ")
            && msg.contains(
                "unknown drill \"redis-gone\"; the drills are: connection-exhaustion, redis-down"
            ),
        "{msg}"
    );
    let (rb, _) =
        opsdeck::runbook::load_str(RUNBOOK, Path::new("redis-connection-failure.toml"), None)
            .expect("a known drill loads");
    assert_eq!(rb.drill.as_deref(), Some("redis-down"));
}
