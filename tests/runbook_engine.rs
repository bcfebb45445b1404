//! The runbook engine as a pure state machine: approval, read-only, dry run, guards, retries,
//! captures and foreach, decisions, budgets and resume. No network: a scripted "world" answers
//! each execution request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsdeck::inventory;
use opsdeck::runbook::engine::{
    ApprovePolicy, Decision, DecisionKind, Engine, Event, ExecRequest, ExecResult, Input, Options,
    Outcome, Output, Plan, Rendered, Resolution, ResumeFrom, StepStatus, UnitKey,
};
use opsdeck::runbook::{Runbook, Value, Vars, load_str};

fn inv() -> inventory::Inventory {
    let p = format!(
        "{}/tests/inventories/lab-shaped.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    inventory::load(Some(Path::new(&p))).expect("lab-shaped inventory loads")
}

fn rb(text: &str) -> Arc<Runbook> {
    let (rb, _) = load_str(text, Path::new("t.toml"), Some(&inv())).expect("runbook is valid");
    Arc::new(rb)
}

const KILL_IDLE: &str = r#"
id = "t"
title = "kill idle"
rto = "5m"
[inputs.min_idle]
default = "60"
pattern = "[0-9]+"

[[steps]]
id = "list"
title = "idle connections"
kind = "diagnose"
target = { selector = "db:primary" }
sql = "SELECT Id FROM information_schema.PROCESSLIST WHERE Command = 'Sleep' AND Time > {{min_idle}}"
capture = { var = "ids", column = "Id", list = true }

[[steps]]
id = "kill"
title = "kill them"
kind = "action"
target = { selector = "db:primary" }
foreach = "ids"
sql = "KILL {{item}}"
confirm = "yes"

[[steps]]
id = "verify"
title = "connections below limit"
kind = "check"
target = { selector = "db:primary" }
shell = "echo used=12"
read_only = true
capture = { var = "used", regex = "used=([0-9]+)" }
expect = { capture = "used", op = "<", value = 80 }
"#;

fn engine(text: &str, opts: Options) -> Engine {
    let rb = rb(text);
    let plan = Plan::resolve(&rb, &inv(), None).expect("plan resolves");
    let mut inputs = Vars::new();
    for i in &rb.inputs {
        if let Some(d) = &i.default {
            inputs.insert(i.name.clone(), Value::Str(d.clone()));
        }
    }
    Engine::new(rb, inputs, plan, opts)
}

fn headless(approve: &str) -> Options {
    Options {
        approve: approve.parse().expect("policy"),
        ..Options::default()
    }
}

/// Runs until the engine finishes or waits for a decision; every request is answered by
/// `world`. Returns events and the requests that were made.
struct Run {
    events: Vec<Event>,
    execs: Vec<ExecRequest>,
    now: Duration,
}

fn pump(
    e: &mut Engine,
    first: Input,
    run: &mut Run,
    world: &mut dyn FnMut(&ExecRequest) -> ExecResult,
) {
    let mut queue = e.update(run.now, first);
    while !queue.is_empty() {
        let mut next = Vec::new();
        for o in queue {
            match o {
                Output::Event(ev) => run.events.push(ev),
                Output::Exec(req) => {
                    run.now += req.delay + Duration::from_secs(1);
                    let result = world(&req);
                    run.execs.push(req.clone());
                    next.extend(e.update(
                        run.now,
                        Input::Result {
                            seq: req.seq,
                            result,
                        },
                    ));
                }
            }
        }
        queue = next;
    }
}

fn run_with(e: &mut Engine, world: &mut dyn FnMut(&ExecRequest) -> ExecResult) -> Run {
    let mut run = Run {
        events: Vec::new(),
        execs: Vec::new(),
        now: Duration::ZERO,
    };
    pump(e, Input::Start, &mut run, world);
    run
}

fn lab_world(req: &ExecRequest) -> ExecResult {
    match &req.command {
        Rendered::Sql { query, .. } if query.starts_with("SELECT Id") => ExecResult {
            rows: vec![
                [("Id".to_owned(), "5".to_owned())].into(),
                [("Id".to_owned(), "7".to_owned())].into(),
            ],
            ..ExecResult::ok("")
        },
        Rendered::Shell { command } if command.starts_with("echo ") => {
            ExecResult::ok(&command["echo ".len()..])
        }
        _ => ExecResult::ok(""),
    }
}

fn finished(run: &Run) -> Option<Outcome> {
    run.events.iter().find_map(|e| match e {
        Event::RunFinished { outcome, .. } => Some(*outcome),
        _ => None,
    })
}

fn status_of(run: &Run, step: &str) -> Option<StepStatus> {
    run.events.iter().rev().find_map(|e| match e {
        Event::StepFinished {
            step: s, status, ..
        } if s == step => Some(*status),
        _ => None,
    })
}

fn commands(run: &Run) -> Vec<String> {
    run.execs.iter().map(|r| r.command.to_string()).collect()
}

#[test]
fn approve_all_runs_diagnosis_action_per_captured_item_and_verification() {
    let mut e = engine(KILL_IDLE, headless("all"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(
        finished(&run),
        Some(Outcome::Succeeded),
        "{:#?}",
        run.events
    );
    assert_eq!(
        commands(&run),
        vec![
            "sql> SELECT Id FROM information_schema.PROCESSLIST WHERE Command = 'Sleep' AND Time > '60'",
            "sql> KILL '5'",
            "sql> KILL '7'",
            "$ echo used=12",
        ]
    );
    // Only the kills are changes (their intent is journaled before they run).
    let changes: Vec<bool> = run.execs.iter().map(|r| r.changes).collect();
    assert_eq!(changes, vec![false, true, true, false]);
    assert!(
        run.execs
            .iter()
            .all(|r| r.host.as_ref().is_some_and(|h| h.name == "db1"))
    );
}

#[test]
fn approve_diagnose_stops_before_the_first_action_with_nothing_changed() {
    let mut e = engine(KILL_IDLE, headless("diagnose"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::NeedsApproval));
    assert!(run.execs.iter().all(|r| !r.changes), "{:?}", commands(&run));
    assert_eq!(run.execs.len(), 1, "only the diagnosis ran");
    assert_eq!(status_of(&run, "kill"), Some(StepStatus::Refused));
}

#[test]
fn approve_none_runs_nothing_and_named_steps_approve_only_those() {
    let mut e = engine(KILL_IDLE, headless("none"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::NeedsApproval));
    assert!(run.execs.is_empty());

    let mut e = engine(KILL_IDLE, headless("kill"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
}

#[test]
fn read_only_refuses_the_changing_step_before_any_request_for_it() {
    let mut e = engine(
        KILL_IDLE,
        Options {
            read_only: true,
            ..headless("all")
        },
    );
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::Refused));
    assert!(run.execs.iter().all(|r| !r.changes));
    assert_eq!(status_of(&run, "kill"), Some(StepStatus::Refused));
}

#[test]
fn dry_run_shows_every_resolved_command_and_requests_nothing() {
    let mut e = engine(
        KILL_IDLE,
        Options {
            dry_run: true,
            ..headless("all")
        },
    );
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
    assert!(
        run.execs.is_empty(),
        "dry run requested {:?}",
        commands(&run)
    );
    let would: Vec<(String, String)> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::WouldRun { host, command, .. } => {
                Some((host.clone().unwrap_or_default(), command.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(would[0].0, "db1");
    assert!(would[0].1.ends_with("Time > '60'"), "{would:?}");
    // With diagnosis allowed, the capture feeds the rendered action.
    let mut e = engine(
        KILL_IDLE,
        Options {
            dry_run: true,
            run_diagnose_in_dry_run: true,
            ..headless("all")
        },
    );
    let run = run_with(&mut e, &mut lab_world);
    assert!(run.execs.iter().all(|r| !r.changes));
    let kills: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::WouldRun {
                command,
                changes: true,
                ..
            } => Some(command.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(kills, vec!["sql> KILL '5'", "sql> KILL '7'"]);
}

const PROMOTE: &str = r#"
id = "t"
title = "promote"
[[steps]]
id = "promote"
title = "promote the replica"
kind = "action"
target = { selector = "db:replica", pick = "one" }
sql = "STOP SLAVE"
confirm = "typed"
guards = [{ replica_sql_running = true }, { replica_lag_below = "5s" }]
rollback = { sql = "START SLAVE" }
"#;

#[test]
fn a_failing_guard_refuses_the_action_and_it_never_runs() {
    let mut e = engine(PROMOTE, headless("all"));
    let run = run_with(&mut e, &mut |req| match req.command {
        Rendered::ReplicaLagBelow { .. } => ExecResult::exit(1, "Seconds_Behind_Master = 40"),
        _ => ExecResult::ok(""),
    });
    assert_eq!(finished(&run), Some(Outcome::Failed));
    assert_eq!(status_of(&run, "promote"), Some(StepStatus::Refused));
    assert!(run.execs.iter().all(|r| !r.changes), "{:?}", commands(&run));
    assert_eq!(run.execs.len(), 2, "both guards were asked, in order");
}

#[test]
fn a_failed_action_runs_its_rollback() {
    let mut e = engine(PROMOTE, headless("all"));
    let run = run_with(&mut e, &mut |req| match &req.command {
        Rendered::Sql { query, .. } if query == "STOP SLAVE" => ExecResult::error("ERROR 1198"),
        _ => ExecResult::ok(""),
    });
    assert_eq!(finished(&run), Some(Outcome::Failed));
    assert_eq!(
        commands(&run).last().map(String::as_str),
        Some("sql> START SLAVE")
    );
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Rollback { ok: true, .. }))
    );
}

#[test]
fn interactive_typed_confirmation_must_name_the_host() {
    let mut e = engine(PROMOTE, Options::default());
    let mut run = run_with(&mut e, &mut lab_world);
    assert!(matches!(
        run.events.last(),
        Some(Event::AwaitingDecision { kind: DecisionKind::TypedConfirm { expected }, .. }) if expected == "db2"
    ));
    assert!(run.execs.is_empty());
    pump(
        &mut e,
        Input::Decision(Decision::TypedConfirm("db1".into())),
        &mut run,
        &mut lab_world,
    );
    assert!(run.execs.is_empty(), "a wrong name runs nothing");
    pump(
        &mut e,
        Input::Decision(Decision::Confirm),
        &mut run,
        &mut lab_world,
    );
    assert!(
        run.execs.is_empty(),
        "a plain yes is not a typed confirmation"
    );
    pump(
        &mut e,
        Input::Decision(Decision::TypedConfirm("db2".into())),
        &mut run,
        &mut |_| ExecResult::ok(""),
    );
    assert_eq!(
        commands(&run).last().map(String::as_str),
        Some("sql> STOP SLAVE")
    );
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
}

const FLAKY: &str = r#"
id = "t"
title = "flaky"
rto = "10s"
[[steps]]
id = "ping"
title = "ping"
kind = "check"
target = { selector = "cache:master" }
redis = ["PING"]
expect = { regex = "PONG" }
retries = 2
budget = "2s"
on_failure = "goto:note"
[[steps]]
id = "skipped"
title = "not reached when ping fails"
kind = "diagnose"
target = { selector = "app" }
shell = "true"
when = "health.app.never_checked >= warning"
[[steps]]
id = "note"
title = "write it down"
kind = "manual"
"#;

#[test]
fn retries_then_goto_budget_and_rto_events_and_manual_needs_approval() {
    let mut e = engine(
        &FLAKY.replace("when = \"health.app.never_checked >= warning\"", ""),
        headless("diagnose"),
    );
    let mut attempts = 0;
    let run = run_with(&mut e, &mut |_| {
        attempts += 1;
        ExecResult::ok("LOADING")
    });
    assert_eq!(attempts, 3, "one try plus two retries");
    assert_eq!(status_of(&run, "ping"), Some(StepStatus::Failed));
    assert_eq!(status_of(&run, "skipped"), None, "goto jumped over it");
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::BudgetExceeded { step, .. } if step == "ping"))
    );
    assert_eq!(
        finished(&run),
        Some(Outcome::NeedsApproval),
        "manual step needs a person"
    );

    // `all` approves every changing step but never says a person did a manual one.
    let mut e = engine(
        &FLAKY.replace("when = \"health.app.never_checked >= warning\"", ""),
        headless("all"),
    );
    let run = run_with(&mut e, &mut |_| ExecResult::ok("PONG"));
    assert_eq!(finished(&run), Some(Outcome::NeedsApproval));
    assert_eq!(status_of(&run, "note"), Some(StepStatus::Refused));
    // Naming the manual step records it done.
    let mut e = engine(
        &FLAKY.replace("when = \"health.app.never_checked >= warning\"", ""),
        headless("all,note"),
    );
    let mut run = run_with(&mut e, &mut |_| ExecResult::ok("PONG"));
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e, Event::RtoExceeded { .. }))
    );
    let out = e.update(Duration::from_secs(60), Input::Tick);
    assert!(out.is_empty(), "a finished run reports nothing more");
    run.events.clear();
}

#[test]
fn rto_exceeded_is_reported_once_while_running() {
    let mut e = engine(FLAKY, Options::default());
    let mut run = run_with(&mut e, &mut |_| ExecResult::ok("PONG"));
    // Waiting for the manual step.
    assert!(matches!(
        run.events.last(),
        Some(Event::AwaitingDecision {
            kind: DecisionKind::MarkDone,
            ..
        })
    ));
    pump(&mut e, Input::Tick, &mut run, &mut lab_world);
    run.now = Duration::from_secs(11);
    pump(&mut e, Input::Tick, &mut run, &mut lab_world);
    run.now = Duration::from_secs(12);
    pump(&mut e, Input::Tick, &mut run, &mut lab_world);
    let n = run
        .events
        .iter()
        .filter(|e| matches!(e, Event::RtoExceeded { .. }))
        .count();
    assert_eq!(n, 1);
    pump(
        &mut e,
        Input::Decision(Decision::AddNote("paged DBA".into())),
        &mut run,
        &mut lab_world,
    );
    pump(
        &mut e,
        Input::Decision(Decision::MarkDone),
        &mut run,
        &mut lab_world,
    );
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
    assert!(
        run.events
            .iter()
            .any(|e| matches!(e, Event::Note { text, .. } if text == "paged DBA"))
    );
    assert_eq!(
        status_of(&run, "skipped"),
        Some(StepStatus::Skipped),
        "when was false"
    );
}

#[test]
fn resume_with_an_unknown_action_never_reruns_it_silently() {
    let from = ResumeFrom {
        step: 1,
        vars: [("ids".to_owned(), Value::List(vec!["9".into()]))].into(),
        done: Vec::new(),
        unknown: Some(UnitKey {
            host: Some("db1".into()),
            item: Some("9".into()),
        }),
    };
    let make = |opts: Options| {
        let rb = rb(KILL_IDLE);
        let plan = Plan::resolve(&rb, &inv(), None).expect("plan");
        let inputs: Vars = [("min_idle".to_owned(), Value::Str("60".into()))].into();
        Engine::resume(rb, inputs, plan, opts, from.clone())
    };
    // Headless without a resolution: stops, nothing runs.
    let mut e = make(headless("all"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(finished(&run), Some(Outcome::NeedsApproval));
    assert!(run.execs.is_empty());
    assert_eq!(status_of(&run, "kill"), Some(StepStatus::Unknown));
    // Verified: continues after it without running it.
    let mut e = make(Options {
        resolve_unknown: Some(Resolution::Verified),
        ..headless("all")
    });
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(commands(&run), vec!["$ echo used=12"]);
    // Retry: runs it again with the captured ids, then the rest.
    let mut e = make(Options {
        resolve_unknown: Some(Resolution::Retry),
        ..headless("all")
    });
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(commands(&run), vec!["sql> KILL '9'", "$ echo used=12"]);
    // Interactive: asks.
    let mut e = make(Options::default());
    let run = run_with(&mut e, &mut lab_world);
    assert!(matches!(
        run.events.last(),
        Some(Event::AwaitingDecision {
            kind: DecisionKind::ResolveUnknown,
            ..
        })
    ));
}

#[test]
fn wait_step_polls_until_its_condition_holds() {
    let text = r#"
id = "t"
title = "wait"
[[steps]]
id = "disk"
title = "disk below 90%"
kind = "wait"
target = { selector = "app1" }
shell = "df --output=pcent / | tail -1"
capture = { var = "used", regex = "([0-9]+)%" }
until = "used < 90"
interval = "5s"
timeout = "1m"
"#;
    let mut e = engine(text, headless("all"));
    let mut readings = vec!["97%", "93%", "85%"].into_iter();
    let run = run_with(&mut e, &mut |_| {
        ExecResult::ok(readings.next().unwrap_or("99%"))
    });
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
    assert_eq!(run.execs.len(), 3);
    assert_eq!(run.execs[1].delay, Duration::from_secs(5));

    let mut e = engine(text, headless("all"));
    let run = run_with(&mut e, &mut |_| ExecResult::ok("99%"));
    assert_eq!(finished(&run), Some(Outcome::Failed));
    assert!(run.execs.len() < 15, "gave up at the deadline");
}

#[test]
fn inputs_are_quoted_into_shell_commands() {
    let text = r#"
id = "t"
title = "q"
[inputs.dir]
default = "/var/log"
[[steps]]
id = "du"
title = "du"
kind = "diagnose"
target = { selector = "app", pick = "all" }
shell = "du -sh {{dir}}"
"#;
    let rb = rb(text);
    let plan = Plan::resolve(&rb, &inv(), None).expect("plan");
    let inputs: Vars = [("dir".to_owned(), Value::Str("/tmp; touch /pwned".into()))].into();
    let mut e = Engine::new(rb, inputs, plan, headless("all"));
    let run = run_with(&mut e, &mut lab_world);
    assert_eq!(
        commands(&run),
        vec![
            "$ du -sh '/tmp; touch /pwned'",
            "$ du -sh '/tmp; touch /pwned'"
        ]
    );
    let hosts: Vec<String> = run
        .execs
        .iter()
        .filter_map(|r| r.host.as_ref().map(|h| h.name.clone()))
        .collect();
    assert_eq!(hosts, vec!["app1", "app2"]);
    // --target narrows.
    let rb2 = self::rb(text);
    let sel = "app2".parse().expect("selector");
    let plan = Plan::resolve(&rb2, &inv(), Some(&sel)).expect("plan");
    assert_eq!(plan.steps[0].len(), 1);
    assert_eq!(plan.steps[0][0].name, "app2");
    let _ = ApprovePolicy::All;
}

const RETRYING: &str = r#"
id = "t"
title = "retrying action with a guard"
[[steps]]
id = "stop"
title = "stop the replica thread"
kind = "action"
target = { selector = "db:replica" }
sql = "STOP SLAVE"
confirm = "yes"
retries = 2
guards = [{ replica_sql_running = true }]
"#;

#[test]
fn every_retry_of_an_action_passes_its_guards_again() {
    let mut e = engine(RETRYING, headless("all"));
    let mut guard_answers = vec![
        ExecResult::exit(0, "running"),
        ExecResult::exit(0, "running"),
        ExecResult::exit(1, "SQL thread stopped"),
    ]
    .into_iter();
    let run = run_with(&mut e, &mut |req| match req.command {
        Rendered::ReplicaSqlRunning => guard_answers.next().expect("a guard answer"),
        // A definite failure (the server said no): retried, guards first.
        _ => ExecResult::exit(1, "ERROR 1198"),
    });
    let kinds: Vec<&str> = run
        .execs
        .iter()
        .map(|r| match r.command {
            Rendered::ReplicaSqlRunning => "guard",
            _ => "action",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["guard", "action", "guard", "action", "guard"],
        "the third attempt's guard refused it"
    );
    assert_eq!(status_of(&run, "stop"), Some(StepStatus::Refused));
}

#[test]
fn an_action_whose_outcome_is_unknown_is_never_retried_without_a_person() {
    // Headless: stops with a decision needed, retries notwithstanding.
    let mut e = engine(RETRYING, headless("all"));
    let run = run_with(&mut e, &mut |req| match req.command {
        Rendered::ReplicaSqlRunning => ExecResult::exit(0, "running"),
        _ => ExecResult::unknown("query on db2 timed out after 30s"),
    });
    let actions = run.execs.iter().filter(|r| r.changes).count();
    assert_eq!(actions, 1, "{:?}", commands(&run));
    assert_eq!(finished(&run), Some(Outcome::NeedsApproval));
    assert_eq!(status_of(&run, "stop"), Some(StepStatus::Unknown));

    // The console asks; "run again" goes through the guards again, and only then runs.
    let mut e = engine(RETRYING, Options::default());
    let mut run = run_with(&mut e, &mut |_| ExecResult::ok(""));
    pump(
        &mut e,
        Input::Decision(Decision::Confirm),
        &mut run,
        &mut |req| match req.command {
            Rendered::ReplicaSqlRunning => ExecResult::exit(0, "running"),
            _ => ExecResult::unknown("connection to db2 dropped"),
        },
    );
    let Some(Event::AwaitingDecision {
        kind: DecisionKind::ResolveUnknown,
        reason: Some(reason),
        covers,
        ..
    }) = run.events.last()
    else {
        panic!("asks about the unknown outcome: {:?}", run.events.last());
    };
    assert!(reason.contains("connection to db2 dropped"), "{reason}");
    assert_eq!(covers.len(), 1);
    let before = run.execs.len();
    pump(
        &mut e,
        Input::Decision(Decision::Retry),
        &mut run,
        &mut |_| ExecResult::ok(""),
    );
    let again: Vec<String> = run.execs[before..]
        .iter()
        .map(|r| r.command.to_string())
        .collect();
    assert_eq!(
        again,
        vec!["guard: replica SQL thread running", "sql> STOP SLAVE"]
    );
    assert_eq!(finished(&run), Some(Outcome::Succeeded));
}

#[test]
fn a_resumed_unknown_step_whose_condition_is_now_false_runs_nothing() {
    let text = r#"
id = "t"
title = "conditional"
[inputs.go]
default = "no"
[[steps]]
id = "act"
title = "act only when asked"
kind = "action"
target = { selector = "app1" }
shell = "echo changed"
confirm = "yes"
when = "go == 'yes'"
"#;
    let rb = rb(text);
    let plan = Plan::resolve(&rb, &inv(), None).expect("plan");
    let inputs: Vars = [("go".to_owned(), Value::Str("no".into()))].into();
    let from = ResumeFrom {
        step: 0,
        vars: Vars::new(),
        done: Vec::new(),
        unknown: Some(UnitKey {
            host: Some("app1".into()),
            item: None,
        }),
    };
    let mut e = Engine::resume(
        rb,
        inputs,
        plan,
        Options {
            resolve_unknown: Some(Resolution::Retry),
            ..headless("all")
        },
        from,
    );
    let run = run_with(&mut e, &mut |_| ExecResult::ok(""));
    assert!(run.execs.is_empty(), "{:?}", commands(&run));
    assert_eq!(status_of(&run, "act"), Some(StepStatus::Skipped));
}

#[test]
fn an_undefined_variable_fails_the_step_before_anything_runs() {
    let text = r#"
id = "t"
title = "capture then act"
[[steps]]
id = "find"
title = "find the path"
kind = "diagnose"
target = { selector = "app1" }
shell = "echo nothing here"
read_only = true
capture = { var = "path", regex = "path=(.+)" }
on_failure = "continue"
[[steps]]
id = "remove"
title = "remove it"
kind = "action"
target = { selector = "app1" }
shell = "rm -rf {{path}}/cache"
confirm = "yes"
"#;
    let mut e = engine(text, headless("all"));
    let run = run_with(&mut e, &mut |req| match &req.command {
        Rendered::Shell { command } if command.starts_with("echo") => {
            ExecResult::ok("nothing here")
        }
        _ => ExecResult::ok(""),
    });
    assert!(
        run.execs.iter().all(|r| !r.changes),
        "the rm never ran: {:?}",
        commands(&run)
    );
    assert_eq!(status_of(&run, "remove"), Some(StepStatus::Failed));
    assert!(run.events.iter().any(|e| matches!(e,
        Event::UnitFinished { message, .. } if message.contains("`path` is not defined"))));
}

#[test]
fn one_confirmation_covers_and_lists_every_unit_of_a_foreach() {
    let mut e = engine(KILL_IDLE, Options::default());
    let mut run = run_with(&mut e, &mut |req| match &req.command {
        Rendered::Sql { query, .. } if query.starts_with("SELECT Id") => ExecResult {
            rows: (1..=28)
                .map(|i| [("Id".to_owned(), i.to_string())].into())
                .collect(),
            ..ExecResult::ok("")
        },
        _ => ExecResult::ok(""),
    });
    let Some(Event::AwaitingDecision { covers, .. }) = run.events.last().cloned() else {
        panic!("awaiting the confirmation");
    };
    assert_eq!(covers.len(), 28);
    // Values are bound parameters (strings), and shown as the server receives them.
    assert_eq!(covers[27].command, "sql> KILL '28'");
    assert_eq!(covers[27].item.as_deref(), Some("28"));
    pump(
        &mut e,
        Input::Decision(Decision::Confirm),
        &mut run,
        &mut lab_world,
    );
    let decided = run
        .events
        .iter()
        .find_map(|e| match e {
            Event::Decided { covers, .. } => Some(covers.len()),
            _ => None,
        })
        .expect("decided");
    assert_eq!(decided, 28, "the journal records every covered command");
    let kills = run.execs.iter().filter(|r| r.changes).count();
    assert_eq!(kills, 28, "one confirmation, 28 commands, no more asks");
}

#[test]
fn conditions_read_the_target_hosts_own_health_fetched_when_needed() {
    use opsdeck::runbook::HealthState;
    use opsdeck::runbook::engine::HealthFact;
    let text = r#"
id = "t"
title = "per-host health"
[[steps]]
id = "only-if-db1-is-full"
title = "act when this host's connections are critical"
kind = "diagnose"
target = { selector = "db:primary" }
shell = "echo acting"
read_only = true
when = "health.mysql.connections >= critical"
[[steps]]
id = "only-if-db2-is-down"
title = "named host"
kind = "diagnose"
target = { selector = "db:primary" }
shell = "echo also"
read_only = true
when = "health.db2.mysql.up == down"
"#;
    let fact = |host: &str, check: &str, state| HealthFact {
        host: host.into(),
        check: check.into(),
        state,
        reason: String::new(),
    };
    let mut e = engine(text, headless("all"));
    let mut asked = Vec::new();
    let run = run_with(&mut e, &mut |req| match &req.command {
        Rendered::Health { hosts } => {
            asked.push(hosts.clone());
            ExecResult {
                health: vec![
                    // db2 is critical but the step's host, db1, is fine.
                    fact("db1", "mysql.connections", HealthState::Ok),
                    fact("db2", "mysql.connections", HealthState::Critical),
                    fact("db2", "mysql.up", HealthState::Down),
                ],
                ..ExecResult::ok("")
            }
        }
        _ => ExecResult::ok("ran"),
    });
    assert_eq!(
        asked[0],
        vec!["db1".to_owned()],
        "health of the step's own host"
    );
    assert!(
        asked[1].contains(&"db2".to_owned()),
        "and of the host it names"
    );
    assert_eq!(
        status_of(&run, "only-if-db1-is-full"),
        Some(StepStatus::Skipped),
        "db2's state does not count for db1"
    );
    assert_eq!(
        status_of(&run, "only-if-db2-is-down"),
        Some(StepStatus::Succeeded)
    );
}

/// Sleeping connections with their idle times; the input's default comes from them.
const POINT_OF_NEED: &str = r#"
id = "t"
title = "kill what the diagnosis found"
[inputs.min_idle]
default = "60"
default_from = "percentile(idle, 20)"
pattern = "[0-9]+"
description = "kill connections idle at least this long"
[[steps]]
id = "idle"
title = "idle times"
kind = "diagnose"
target = { selector = "db:primary" }
sql = "SELECT Time FROM information_schema.PROCESSLIST WHERE Command = 'Sleep'"
capture = { var = "idle", column = "Time", list = true }
[[steps]]
id = "list"
title = "old enough"
kind = "diagnose"
target = { selector = "db:primary" }
sql = "SELECT Id FROM information_schema.PROCESSLIST WHERE Command = 'Sleep' AND Time >= {{min_idle}}"
capture = { var = "ids", column = "Id", list = true }
[[steps]]
id = "kill"
title = "kill them"
kind = "action"
target = { selector = "db:primary" }
foreach = "ids"
sql = "KILL {{item}}"
confirm = "yes"
"#;

fn rows(col: &str, vals: &[&str]) -> Vec<std::collections::BTreeMap<String, String>> {
    vals.iter()
        .map(|v| [(col.to_owned(), (*v).to_owned())].into())
        .collect()
}

#[test]
fn an_input_is_asked_when_first_needed_with_a_default_computed_from_the_diagnosis() {
    let world = |req: &ExecRequest| match &req.command {
        Rendered::Sql { query, params, .. } if query.starts_with("SELECT Time") => {
            let _ = params;
            ExecResult {
                rows: rows("Time", &["20", "21", "19", "22", "18"]),
                ..ExecResult::ok("")
            }
        }
        Rendered::Sql { query, params, .. } if query.starts_with("SELECT Id") => ExecResult {
            rows: if params == &["19"] {
                rows("Id", &["2", "3", "4", "5"])
            } else {
                Vec::new()
            },
            ..ExecResult::ok("")
        },
        _ => ExecResult::ok(""),
    };
    // Headless: the computed default (p20 of 18..22 = 19) is used, and journaled with how.
    let mut e = Engine::new(
        rb(POINT_OF_NEED),
        Vars::new(),
        Plan::resolve(&rb(POINT_OF_NEED), &inv(), None).expect("plan"),
        headless("all"),
    );
    let run = run_with(&mut e, &mut |r| world(r));
    assert!(run.events.iter().any(|e| matches!(e,
        Event::InputSet { name, value, by, how: Some(how), .. }
            if name == "min_idle" && value == "19" && by == "computed" && how.contains("percentile(idle, 20) of 5 values"))),
        "{:#?}", run.events);
    assert_eq!(
        run.execs.iter().filter(|r| r.changes).count(),
        4,
        "the sleepers the diagnosis found were killed"
    );

    // Console: asked only after the diagnosis ran, offering the computed value.
    let mut e = Engine::new(
        rb(POINT_OF_NEED),
        Vars::new(),
        Plan::resolve(&rb(POINT_OF_NEED), &inv(), None).expect("plan"),
        Options::default(),
    );
    let mut run = run_with(&mut e, &mut |r| world(r));
    assert_eq!(run.execs.len(), 1, "the diagnosis ran before the question");
    let Some(Event::AwaitingDecision {
        kind:
            DecisionKind::Input {
                name,
                default,
                computed,
                ..
            },
        ..
    }) = run.events.last().cloned()
    else {
        panic!("asks for the input: {:?}", run.events.last());
    };
    assert_eq!(name, "min_idle");
    assert_eq!(default.as_deref(), Some("19"));
    assert!(computed.is_some_and(|c| c.contains("percentile")));
    // A value outside the pattern is refused; the question stays.
    pump(
        &mut e,
        Input::Decision(Decision::SetInput {
            name: "min_idle".into(),
            value: "1; DROP".into(),
        }),
        &mut run,
        &mut |r| world(r),
    );
    assert!(matches!(
        run.events.last(),
        Some(Event::AwaitingDecision {
            kind: DecisionKind::Input { .. },
            ..
        })
    ));
    // A value that finds nothing: the step says so and offers to change the input.
    pump(
        &mut e,
        Input::Decision(Decision::SetInput {
            name: "min_idle".into(),
            value: "600".into(),
        }),
        &mut run,
        &mut |r| world(r),
    );
    let Some(Event::AwaitingDecision {
        kind: DecisionKind::NothingToDo { list, inputs },
        ..
    }) = run.events.last().cloned()
    else {
        panic!(
            "nothing to do is a question, not a silent skip: {:?}",
            run.events.last()
        );
    };
    assert_eq!(list, "ids");
    assert_eq!(inputs, vec!["min_idle".to_owned()]);
    // Changing it goes back to the step that reads it, and the kill then runs.
    pump(
        &mut e,
        Input::Decision(Decision::ChangeInput {
            name: "min_idle".into(),
            value: "19".into(),
        }),
        &mut run,
        &mut |r| world(r),
    );
    assert!(matches!(
        run.events.last(),
        Some(Event::AwaitingDecision {
            kind: DecisionKind::Confirm,
            covers,
            ..
        }) if covers.len() == 4
    ));
}
