//! Every shipped runbook loads and validates against a lab-shaped inventory; broken runbooks
//! give located errors naming the step; the loader never panics.

use std::path::Path;

use opsdeck::inventory;
use opsdeck::runbook::{HealthState, RunbookError, load_dir, load_str};
use proptest::prelude::*;

fn inv() -> inventory::Inventory {
    let p = format!(
        "{}/tests/inventories/lab-shaped.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    inventory::load(Some(Path::new(&p))).expect("lab-shaped inventory loads")
}

#[test]
fn every_shipped_runbook_validates_against_the_lab_shaped_inventory() {
    let dir = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    let inv = inv();
    let loaded = load_dir(Path::new(&dir), Some(&inv)).expect("runbooks dir readable");
    let mut ids = Vec::new();
    for (path, r) in loaded {
        let (rb, _warnings) = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!rb.steps.is_empty(), "{}", rb.id);
        assert!(
            !rb.triggers.is_empty(),
            "{} names the health checks it treats",
            rb.id
        );
        assert!(rb.rto.is_some(), "{} has an RTO", rb.id);
        for s in &rb.steps {
            if s.changes() {
                assert!(s.confirm.is_some(), "{}/{}", rb.id, s.id);
            }
        }
        ids.push(rb.id);
    }
    for want in [
        "db-connection-exhaustion",
        "redis-connection-failure",
        "disk-space-critical",
        "db-failover",
        "redis-sentinel-failover",
        "api-latency-degradation",
        "high-cpu",
        "queue-backlog",
    ] {
        assert!(ids.iter().any(|i| i == want), "missing {want}: {ids:?}");
    }
}

#[test]
fn triggers_match_probe_check_ids() {
    let dir = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    let loaded = load_dir(Path::new(&dir), None).expect("dir");
    let rbs: Vec<_> = loaded
        .into_iter()
        .filter_map(|(_, r)| r.ok())
        .map(|(rb, _)| rb)
        .collect();
    let suggested = |check: &str, state| -> Vec<String> {
        rbs.iter()
            .filter(|rb| rb.triggered_by(check, state))
            .map(|rb| rb.id.clone())
            .collect()
    };
    assert_eq!(
        suggested("disk./var/log", HealthState::Critical),
        vec!["disk-space-critical"]
    );
    assert!(suggested("disk./var/log", HealthState::Ok).is_empty());
    assert!(
        suggested("mysql.connections", HealthState::Critical)
            .contains(&"db-connection-exhaustion".to_owned())
    );
    assert!(
        suggested("redis.ping", HealthState::Warning).is_empty(),
        "warning is below the trigger"
    );
}

fn errors(text: &str) -> Vec<String> {
    match load_str(text, Path::new("rb/t.toml"), Some(&inv())) {
        Ok(_) => Vec::new(),
        Err(RunbookError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(e) => vec![e.to_string()],
    }
}

const HEAD: &str = "id = \"t\"\ntitle = \"t\"\n";

#[test]
fn broken_runbooks_point_at_the_line_column_and_step() {
    // Unknown field.
    let e = errors(&format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"diagnose\"\nshel = \"ls\"\n"
    ));
    assert!(
        e[0].starts_with("rb/t.toml:7:1: unknown field `shel`"),
        "{e:?}"
    );
    // Unknown kind.
    let e = errors(&format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"fix\"\n"
    ));
    assert!(
        e[0].starts_with("rb/t.toml:6:8: unknown variant `fix`"),
        "{e:?}"
    );
    // Action without confirm, undefined variable, bad selector, unsatisfiable target,
    // bad regex, goto to nowhere, duplicate id — all reported at once, each with its step.
    let text = format!(
        r#"{HEAD}
[[steps]]
id = "a"
title = "a"
kind = "action"
target = {{ selector = "db:primary" }}
shell = "echo {{{{nope}}}}"

[[steps]]
id = "b"
title = "b"
kind = "diagnose"
target = {{ selector = "db:primary:x" }}
shell = "ls"

[[steps]]
id = "c"
title = "c"
kind = "diagnose"
target = {{ selector = "db:sentinel" }}
shell = "ls"
capture = {{ var = "x", regex = "(unclosed" }}
on_failure = "goto:zzz"

[[steps]]
id = "a"
title = "again"
kind = "manual"
"#
    );
    let e = errors(&text);
    let all = e.join("\n");
    assert!(
        !all.contains("but no target"),
        "no follow-on error for a bad selector:\n{all}"
    );
    for want in [
        "rb/t.toml:4:1: step `a`: action step without `confirm`",
        "rb/t.toml:9:9: step `a`: undefined variable `{{nope}}`",
        "rb/t.toml:15:10: step `b`: bad target selector",
        "rb/t.toml:22:10: step `c`: target \"db:sentinel\" cannot be satisfied",
        "step `c`: invalid regex \"(unclosed\"",
        "step `c`: goto names unknown step \"zzz\"",
        "rb/t.toml:28:6: step `a`: duplicate step id \"a\"",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn diagnose_steps_that_change_things_and_sql_on_hosts_without_mysql_are_refused() {
    let e = errors(&format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"diagnose\"\ntarget = {{ selector = \"cache:master\" }}\nredis = [\"FLUSHALL\"]\n"
    ));
    assert!(
        e.iter()
            .any(|x| x.contains("diagnose step runs Redis `FLUSHALL`")),
        "{e:?}"
    );
    let e = errors(&format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"diagnose\"\ntarget = {{ selector = \"app\" }}\nsql = \"SELECT 1\"\n"
    ));
    assert!(
        e.iter().any(|x| x.contains("without a mysql service")),
        "{e:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn the_loader_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
        let _ = load_str(&s, Path::new("x.toml"), None);
    }

    #[test]
    fn the_loader_never_panics_on_mangled_runbooks(cut in 0usize..4000, junk in "[\\[\\]{}=\"a-z.{} \n]{0,20}") {
        let text = std::fs::read_to_string(format!("{}/runbooks/db-failover.toml", env!("CARGO_MANIFEST_DIR"))).expect("read");
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) { cut -= 1; }
        let mangled = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        let _ = load_str(&mangled, Path::new("db-failover.toml"), Some(&inv()));
    }
}
