//! Every shipped runbook loads and validates against a lab-shaped inventory; broken runbooks
//! give located errors naming the step; the loader never panics.

use std::path::Path;

use opsdeck::inventory;
use opsdeck::runbook::{HealthState, RunbookError, StepKind, load_dir, load_str};
use proptest::prelude::*;

fn inv() -> inventory::Inventory {
    let p = format!(
        "{}/tests/inventories/lab-shaped.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    inventory::load(Some(Path::new(&p))).expect("lab-shaped inventory loads")
}

/// The inventory `opsdeck lab up` writes, rendered (nothing is started): the shipped
/// runbooks must fit the lab they are drilled on exactly.
fn lab_inventory() -> (tempfile::TempDir, inventory::Inventory) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = opsdeck::lab::layout::Lab::new(Some(tmp.path()));
    let text = opsdeck::lab::invfile::render(&lab, true);
    // The secrets it names by file (made at `lab up`): any value will do to validate.
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    for name in [
        opsdeck::lab::invfile::MYSQL_SECRET,
        opsdeck::lab::invfile::REDIS_SECRET,
    ] {
        let f = secrets.join(name);
        std::fs::write(&f, "not-a-real-password\n").expect("secret");
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("0600");
    }
    let path = tmp.path().join("inventory.toml");
    std::fs::write(&path, &text).expect("inventory");
    let inv = inventory::load_str(&text, &path).expect("the lab's inventory loads");
    (tmp, inv)
}

#[test]
fn every_shipped_runbook_validates_against_the_labs_inventory() {
    let dir = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    let (_tmp, inv) = lab_inventory();
    let loaded = load_dir(Path::new(&dir), Some(&inv)).expect("runbooks dir readable");
    let mut ids = Vec::new();
    for (path, r) in loaded {
        let (rb, warnings) = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!rb.steps.is_empty(), "{}", rb.id);
        // A runbook for a fault names the health checks that show it (so health suggests it
        // and its end check can tell the fault is gone); one without triggers is a routine
        // procedure (a verified backup), which no drill can stand for.
        assert!(
            !rb.triggers.is_empty() || rb.drill.is_none(),
            "{} treats a drilled fault but names no health check that shows it",
            rb.id
        );
        assert!(rb.rto.is_some(), "{} has an RTO", rb.id);
        for s in &rb.steps {
            // Every diagnose, check and wait step is read-only: by the allowlist, or reviewed
            // and marked `read_only = true` (shell). Only actions change things.
            assert_eq!(
                s.changes(),
                s.kind == StepKind::Action,
                "{}/{}: only actions change things",
                rb.id,
                s.id
            );
            if s.changes() {
                assert!(s.confirm.is_some(), "{}/{}", rb.id, s.id);
            }
        }
        assert!(
            warnings
                .iter()
                .all(|w| !w.to_string().contains("cannot be verified read-only")),
            "{}: {warnings:?}",
            rb.id
        );
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
        e.iter().any(|x| x.starts_with(
            "rb/t.toml:8:9: step `a`: diagnose step runs a Redis command that is not read-only: \
             Redis `FLUSHALL` is not on the read-only command list"
        )),
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

/// A runbook with input `x` and one step; its executor is on line 11 for actions (they carry
/// `confirm`), line 10 otherwise.
fn step(kind: &str, target: &str, exec: &str) -> String {
    format!(
        "{HEAD}[inputs.x]\ndefault = \"1\"\n[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"{kind}\"\n{}target = {{ selector = \"{target}\" }}\n{exec}\n",
        if kind == "action" {
            "confirm = \"yes\"\n"
        } else {
            ""
        }
    )
}

#[test]
fn placeholders_inside_quotes_are_refused_at_their_own_position() {
    for (target, exec, col, place) in [
        (
            "app1",
            "shell = \"echo '{{x}}'\"",
            16,
            "inside single quotes",
        ),
        (
            "app1",
            "shell = \"echo \\\"{{x}}\\\"\"",
            17,
            "inside double quotes",
        ),
        (
            "app1",
            "shell = 'echo \"$(cat {{x}})\" `cat {{x}}`'",
            35,
            "inside `…` backticks",
        ),
        // An escaped quote: the column counts the escape's six characters.
        (
            "app1",
            "shell = \"echo \\u0027{{x}}\\u0027\"",
            21,
            "inside single quotes",
        ),
        (
            "app1",
            "shell = \"df {{x}} # {{x}}\"",
            21,
            "inside a # comment",
        ),
        (
            "db1",
            "sql = \"SELECT Id FROM t WHERE user LIKE '{{x}}'\"",
            42,
            "inside a '…' string literal",
        ),
        (
            "db1",
            "sql = \"SELECT `{{x}}` FROM t\"",
            16,
            "inside a `…` identifier",
        ),
        (
            "app1",
            "docker = { action = \"exec\", command = \"sh -c '{{x}}'\" }",
            47,
            "inside single quotes",
        ),
    ] {
        let e = errors(&step("action", target, exec)).join("\n");
        let want = format!(
            "rb/t.toml:11:{col}: step `a`: `{{{{x}}}}` is written {place}: a value could break out"
        );
        assert!(e.contains(&want), "{exec}\nwant {want}\ngot:\n{e}");
        assert!(
            e.contains("hint: write {{x}} bare"),
            "{exec}: the hint says what to do:\n{e}"
        );
    }
    // A multi-line basic string with an escape and a line-ending backslash: the exact line
    // and column in the file.
    let e = errors(&step(
        "action",
        "app1",
        "shell = \"\"\"\nset -e\necho start \\\n   && printf '%s\\n' '{{x}}'\"\"\"",
    ))
    .join("\n");
    assert!(
        e.contains("rb/t.toml:14:22: step `a`: `{{x}}` is written inside single quotes"),
        "{e}"
    );
    // A multi-line literal string.
    let e = errors(&step(
        "action",
        "db1",
        "sql = '''\nSELECT 1\nFROM t WHERE a = \"{{x}}\"'''",
    ))
    .join("\n");
    assert!(
        e.contains("rb/t.toml:13:19: step `a`: `{{x}}` is written inside a \"…\" string literal"),
        "{e}"
    );
    // Bare placeholders, and raw ones (which only warn), pass.
    for (target, exec) in [
        (
            "app1",
            "shell = \"echo {{x}} '{{raw x}}' \\\"$(cat {{x}})\\\"\"",
        ),
        (
            "db1",
            "sql = \"SELECT Id FROM t WHERE user LIKE {{x}} AND a IN ({{x}}) -- '{{raw x}}'\"",
        ),
    ] {
        assert_eq!(
            errors(&step("action", target, exec)),
            Vec::<String>::new(),
            "{exec}"
        );
    }
}

#[test]
fn diagnose_steps_and_guards_must_be_read_only_by_the_allowlist() {
    for (kind, exec, col, why) in [
        (
            "diagnose",
            "sql = \"SELECT 1; DROP TABLE t\"",
            18,
            "more than one statement",
        ),
        (
            "diagnose",
            "sql = \"/**/KILL 1\"",
            12,
            "`KILL` is not a read-only statement",
        ),
        (
            "diagnose",
            "sql = \"/*!KILL 1*/\"",
            11,
            "`KILL` is not a read-only statement",
        ),
        (
            "check",
            "sql = \"CALL p()\"",
            8,
            "`CALL` is not a read-only statement",
        ),
        (
            "wait",
            "sql = \"SELECT * INTO OUTFILE '/tmp/x' FROM t\"",
            17,
            "`INTO` writes",
        ),
        (
            "diagnose",
            "sql = \"SELECT GET_LOCK('x', 1)\"",
            15,
            "`GET_LOCK()` takes a named lock",
        ),
        (
            "diagnose",
            "redis = [\"EVAL\", \"return 1\", \"0\"]",
            9,
            "Redis `EVAL` is not on the read-only command list",
        ),
        (
            "diagnose",
            "redis = [\"ACL\", \"SETUSER\", \"x\"]",
            9,
            "Redis `ACL` is not on the read-only command list",
        ),
        (
            "diagnose",
            "redis = [\"INCR\", \"k\"]",
            9,
            "Redis `INCR` is not on the read-only command list",
        ),
        (
            "diagnose",
            "redis = [\"CONFIG\", \"SET\", \"maxmemory\", \"1\"]",
            9,
            "Redis `CONFIG SET` is not on the read-only command list",
        ),
    ] {
        let target = if exec.starts_with("redis") {
            "cache:master"
        } else {
            "db1"
        };
        let e = errors(&step(kind, target, exec)).join("\n");
        assert!(
            e.contains(&format!("rb/t.toml:10:{col}: step `a`: {kind} step runs ")),
            "{exec}: position\n{e}"
        );
        assert!(e.contains(why), "{exec}: reason {why:?}\n{e}");
        assert!(e.contains("hint: make it kind = \"action\""), "{exec}\n{e}");
    }
    // A guard that writes is refused too.
    let e = errors(&step(
        "action",
        "db1",
        "sql = \"STOP SLAVE\"\nguards = [{ sql = \"SELECT 1; DROP TABLE t\", expect = { regex = \"1\" } }]",
    ))
    .join("\n");
    assert!(
        e.contains(
            "rb/t.toml:12:30: step `a`: guard runs SQL that is not read-only: more than one statement"
        ),
        "{e}"
    );
}

#[test]
fn shell_diagnose_steps_count_as_changes_unless_the_author_vouches() {
    let load = |text: &str| load_str(text, Path::new("rb/t.toml"), Some(&inv()));
    let text = step("diagnose", "app1", "shell = \"uptime\"");
    let (rb, warnings) = load(&text).expect("valid, with a warning");
    assert!(rb.steps[0].changes(), "unverified shell counts as a change");
    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with(
            "rb/t.toml:10:9: warning: step `a`: diagnose step runs a shell command, which cannot be verified read-only"
        )),
        "{w:?}"
    );
    let vouched = step("diagnose", "app1", "shell = \"uptime\"\nread_only = true");
    let (rb, warnings) = load(&vouched).expect("valid");
    assert!(!rb.steps[0].changes());
    assert!(warnings.is_empty(), "{warnings:?}");
    // SQL is judged by the allowlist: the author cannot vouch for it; actions cannot be marked.
    let e = errors(&step(
        "diagnose",
        "db1",
        "sql = \"SELECT 1\"\nread_only = true",
    ))
    .join("\n");
    assert!(
        e.contains(
            "rb/t.toml:11:13: step `a`: `read_only` vouches only for shell and docker exec commands"
        ),
        "{e}"
    );
    let e = errors(&step(
        "action",
        "app1",
        "shell = \"true\"\nread_only = true",
    ))
    .join("\n");
    assert!(
        e.contains("`read_only` only applies to diagnose, check and wait steps"),
        "{e}"
    );
    // A vouch covers what is written, not `{{raw x}}` text that comes at run time.
    let text = step(
        "diagnose",
        "app1",
        "shell = \"echo {{raw x}}\"\nread_only = true",
    );
    let e = errors(&text).join("\n");
    assert!(
        e.contains("rb/t.toml:11:13: step `a`: `read_only = true` cannot vouch for `{{raw x}}`"),
        "{e}"
    );
    // Read-only SQL and Redis need no mark.
    let (rb, _) = load(&step("diagnose", "db1", "sql = \"SHOW SLAVE STATUS\"")).expect("valid");
    assert!(!rb.steps[0].changes());
    let (rb, _) = load(&step(
        "check",
        "cache:master",
        "redis = [\"PING\"]\nexpect = { regex = \"PONG\" }",
    ))
    .expect("valid");
    assert!(!rb.steps[0].changes());
}

#[test]
fn non_ascii_text_anywhere_is_an_error_or_fine_never_a_panic() {
    // `disk.é` used to panic slicing inside "é" (and stopped the console from starting).
    for check in ["disk.é", "é", "*é", "é*", "disk.*é", "€*"] {
        let text = format!(
            "{HEAD}rto = \"5m\"\ntriggers = [{{ check = \"{check}\", state = \"warning\" }}]\n[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"manual\"\n"
        );
        let _ = errors(&text);
    }
    let e = errors(&format!(
        "{HEAD}triggers = [{{ check = \"dé*sk*é\", state = \"warning\" }}]\n[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"manual\"\n"
    ));
    assert!(
        e.iter()
            .any(|x| x.starts_with("rb/t.toml:3:23: trigger check \"dé*sk*é\"")),
        "{e:?}"
    );
    // A bad condition in a string with an escape points at the character.
    let e = errors(&format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"manual\"\nwhen = \"a == '\\u00e9' ~ 1\"\n"
    ));
    assert!(
        e.iter()
            .any(|x| x.starts_with("rb/t.toml:7:23: step `a`: bad condition")),
        "{e:?}"
    );
}

#[test]
fn secret_inputs_are_marked_and_a_default_in_clear_is_a_warning() {
    let text = format!(
        "{HEAD}[inputs.pw]\nsecret = true\n[inputs.token]\nsecret = true\ndefault = \"hunter2\"\n[inputs.dir]\ndefault = \"/\"\n[[steps]]\nid = \"a\"\ntitle = \"a\"\nkind = \"manual\"\n"
    );
    let (rb, warnings) = load_str(&text, Path::new("rb/t.toml"), None).expect("valid");
    let secret: Vec<(&str, bool)> = rb
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.secret))
        .collect();
    assert_eq!(secret, vec![("pw", true), ("token", true), ("dir", false)]);
    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("rb/t.toml:5:1: warning: secret input `token` has a default"),
        "{w:?}"
    );
}
