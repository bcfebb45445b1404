//! A runbook run as the console holds it: the pure engine, what it reported, and what the
//! operator is being asked. The journal, the lock and the commands themselves live with the
//! executor in `tui`; this side only decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runbook::engine::{
    self, Cover, DecisionKind, Engine, Event as RunEvent, ExecRequest, Input, Outcome, Output,
    Rendered, StepStatus,
};
use crate::runbook::{Runbook, Vars};

/// A step's mark in the step list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Pending,
    Running,
    Waiting,
    Done(StepStatus),
}

#[derive(Debug, Clone)]
pub struct LogLine {
    pub step: String,
    pub host: Option<String>,
    pub text: String,
}

/// What the operator is asked right now.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub step: String,
    pub host: Option<String>,
    pub kind: DecisionKind,
    /// The exact command, variables resolved (for action steps).
    pub command: Option<Rendered>,
    /// Every unit (host × item) the answer covers, each with its exact command.
    pub covers: Vec<Cover>,
    /// Why a decision is needed (the failure, the unknown outcome).
    pub reason: Option<String>,
    /// Scroll of the covered list.
    pub scroll: u16,
}

/// An input the operator is typing into (runbook inputs before the start, notes, typed
/// confirmations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typing {
    /// Runbook input `index` of the runbook's inputs, asked when a step first needs it.
    Input {
        index: usize,
        value: String,
    },
    /// A new value for one of `names` (after a failure or an empty result); tab picks which.
    Change {
        names: Vec<String>,
        at: usize,
        value: String,
    },
    Note(String),
    Typed(String),
}

pub struct RunState {
    pub runbook: Arc<Runbook>,
    pub engine: Option<Engine>,
    /// Set once the executor opened the journal (and took the lock).
    pub run_id: Option<String>,
    pub journal_path: Option<String>,
    pub inputs: Vars,
    pub marks: Vec<Mark>,
    pub log: Vec<LogLine>,
    pub events: Vec<RunEvent>,
    pub ask: Option<Ask>,
    pub typing: Option<Typing>,
    pub started: Instant,
    pub finished: Option<(Outcome, String)>,
    /// Output pane: which host's output, and scroll from the bottom.
    pub host_tab: usize,
    pub scroll: u16,
    /// Step whose detail is shown (defaults to the current one).
    pub viewing: Option<usize>,
    pub dry_run: bool,
    /// Hosts health flagged when the run was started from a suggestion: each step's targets
    /// narrow to them where they overlap (as `opsdeck run --target`).
    pub narrow: Option<String>,
    /// Training mode (onboarding): a dry run with every step's explanation.
    pub training: bool,
    pub exported: Option<String>,
    /// Budget/RTO warnings seen.
    pub overruns: Vec<String>,
}

impl RunState {
    pub fn new(runbook: Arc<Runbook>, now: Instant) -> RunState {
        let n = runbook.steps.len();
        RunState {
            runbook,
            engine: None,
            run_id: None,
            journal_path: None,
            inputs: Vars::new(),
            marks: vec![Mark::Pending; n],
            log: Vec::new(),
            events: Vec::new(),
            ask: None,
            typing: None,
            started: now,
            finished: None,
            host_tab: 0,
            scroll: 0,
            viewing: None,
            dry_run: false,
            narrow: None,
            training: false,
            exported: None,
            overruns: Vec::new(),
        }
    }

    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Index of the step the engine is on, or the last one that ran.
    pub fn current(&self) -> usize {
        self.engine
            .as_ref()
            .map_or(0, Engine::cursor)
            .min(self.runbook.steps.len().saturating_sub(1))
    }

    pub fn shown_step(&self) -> usize {
        self.viewing.unwrap_or_else(|| self.current())
    }

    /// Hosts that produced output for a step, in first-seen order.
    pub fn hosts_of(&self, step: &str) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = Vec::new();
        for l in self.log.iter().filter(|l| l.step == step) {
            if !out.contains(&l.host) {
                out.push(l.host.clone());
            }
        }
        out
    }

    fn index_of(&self, step: &str) -> Option<usize> {
        self.runbook.step_index(step)
    }

    /// Feeds an input to the engine and folds what it says into the view. Returns the exec
    /// requests and the events, for the executor (to run and to journal).
    pub fn feed(&mut self, now: Instant, input: Input) -> (Vec<ExecRequest>, Vec<RunEvent>) {
        let elapsed = self.elapsed(now);
        let Some(engine) = self.engine.as_mut() else {
            return (Vec::new(), Vec::new());
        };
        let outputs = engine.update(elapsed, input);
        let pending = engine.pending();
        let mut execs = Vec::new();
        let mut events = Vec::new();
        for o in outputs {
            match o {
                Output::Exec(r) => {
                    if let Some(i) = self.index_of(&r.step) {
                        self.marks[i] = Mark::Running;
                    }
                    self.log.push(LogLine {
                        step: r.step.clone(),
                        host: r.host.as_ref().map(|h| h.name.clone()),
                        text: format!("{}", r.command),
                    });
                    execs.push(r);
                }
                Output::Event(e) => {
                    self.fold(&e, pending.clone());
                    events.push(e);
                }
            }
        }
        (execs, events)
    }

    fn fold(&mut self, e: &RunEvent, pending: Option<(Option<String>, Rendered)>) {
        match e {
            RunEvent::StepStarted { step, .. } => {
                if let Some(i) = self.index_of(step) {
                    self.marks[i] = Mark::Running;
                }
                self.viewing = None;
                self.host_tab = 0;
                self.scroll = 0;
            }
            RunEvent::Output { step, host, text } => {
                for line in text.lines() {
                    self.log.push(LogLine {
                        step: step.clone(),
                        host: host.clone(),
                        text: line.to_owned(),
                    });
                }
            }
            RunEvent::WouldRun {
                step,
                host,
                command,
                changes,
            } => {
                let tag = if *changes { " (changes)" } else { "" };
                self.log.push(LogLine {
                    step: step.clone(),
                    host: host.clone(),
                    text: format!("would run{tag}: {command}"),
                });
            }
            RunEvent::InputSet {
                step,
                name,
                value,
                by,
                how,
            } => {
                let how = how.as_ref().map(|h| format!(", {h}")).unwrap_or_default();
                self.log.push(LogLine {
                    step: step.clone(),
                    host: None,
                    text: format!("input {name} = {value} ({by}{how})"),
                });
            }
            RunEvent::Captured { step, var, value } => {
                self.log.push(LogLine {
                    step: step.clone(),
                    host: None,
                    text: format!("captured {var} = {}", value.as_text()),
                });
            }
            RunEvent::Guard {
                step,
                host,
                guard,
                passed,
                message,
            } => {
                let verdict = if *passed { "passed" } else { "FAILED" };
                self.log.push(LogLine {
                    step: step.clone(),
                    host: host.clone(),
                    text: format!("guard {guard} {verdict}: {message}"),
                });
            }
            RunEvent::AwaitingDecision {
                step,
                host,
                kind,
                covers,
                reason,
            } => {
                if let Some(i) = self.index_of(step) {
                    self.marks[i] = Mark::Waiting;
                }
                let command = pending.filter(|(h, _)| h == host).map(|(_, c)| c);
                self.ask = Some(Ask {
                    step: step.clone(),
                    host: host.clone(),
                    kind: kind.clone(),
                    command,
                    covers: covers.clone(),
                    reason: reason.clone(),
                    scroll: 0,
                });
                match kind {
                    DecisionKind::TypedConfirm { .. } => {
                        self.typing = Some(Typing::Typed(String::new()));
                    }
                    DecisionKind::Input { name, default, .. } => {
                        if let Some(index) =
                            self.runbook.inputs.iter().position(|i| i.name == *name)
                        {
                            self.typing = Some(Typing::Input {
                                index,
                                value: default.clone().unwrap_or_default(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            RunEvent::Decided {
                step,
                host,
                decision,
                by,
                covers,
            } => {
                self.ask = None;
                let covering = if covers.len() > 1 {
                    format!(" (covering {} commands)", covers.len())
                } else {
                    String::new()
                };
                self.log.push(LogLine {
                    step: step.clone(),
                    host: host.clone(),
                    text: format!("decision: {decision:?} by {by}{covering}"),
                });
            }
            RunEvent::Attempt {
                step,
                host,
                message,
                ..
            }
            | RunEvent::Rollback {
                step,
                host,
                message,
                ..
            } => {
                self.log.push(LogLine {
                    step: step.clone(),
                    host: host.clone(),
                    text: message.clone(),
                });
            }
            RunEvent::StepFinished {
                step,
                status,
                message,
            } => {
                if let Some(i) = self.index_of(step) {
                    self.marks[i] = Mark::Done(*status);
                }
                if !message.is_empty() {
                    self.log.push(LogLine {
                        step: step.clone(),
                        host: None,
                        text: message.clone(),
                    });
                }
            }
            RunEvent::BudgetExceeded {
                step,
                budget_s,
                elapsed_s,
            } => {
                self.overruns.push(format!(
                    "step {step} over its {budget_s:.0} s budget ({elapsed_s:.0} s)"
                ));
            }
            RunEvent::RtoExceeded { rto_s, elapsed_s } => {
                self.overruns
                    .push(format!("RTO of {rto_s:.0} s exceeded ({elapsed_s:.0} s)"));
            }
            RunEvent::Note { step, text } => {
                self.log.push(LogLine {
                    step: step.clone().unwrap_or_default(),
                    host: None,
                    text: format!("note: {text}"),
                });
            }
            RunEvent::RunFinished { outcome, message } => {
                self.ask = None;
                self.typing = None;
                self.finished = Some((*outcome, message.clone()));
            }
            RunEvent::UnitFinished {
                step,
                host,
                item,
                status,
                message,
            } => {
                if *status != StepStatus::Succeeded || !message.is_empty() {
                    let item = item.as_ref().map(|i| format!(" [{i}]")).unwrap_or_default();
                    self.log.push(LogLine {
                        step: step.clone(),
                        host: host.clone(),
                        text: format!("{status:?}{item}: {message}").to_lowercase(),
                    });
                }
            }
            RunEvent::Health { when, checks } => {
                let list = if checks.is_empty() {
                    "every check ok".to_owned()
                } else {
                    checks
                        .iter()
                        .map(|c| format!("{} {} on {}", c.check, c.state.as_str(), c.host))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                self.log.push(LogLine {
                    step: String::new(),
                    host: None,
                    text: format!("health at {when}: {list}"),
                });
            }
            RunEvent::RunStarted { .. } => {}
        }
        self.events.push(e.clone());
    }

    /// Health for the engine's conditions and end check: every check on every host, as the
    /// dashboard shows it.
    pub fn health_input(checks: &[crate::probes::check::Check]) -> engine::Input {
        Input::Health(health_facts(checks, None))
    }
}

/// The console's checks as the engine's health facts (only `hosts`, when given).
pub fn health_facts(
    checks: &[crate::probes::check::Check],
    hosts: Option<&[String]>,
) -> Vec<engine::HealthFact> {
    checks
        .iter()
        .filter(|c| hosts.is_none_or(|h| h.contains(&c.host)))
        .map(|c| engine::HealthFact {
            host: c.host.clone(),
            check: c.id.clone(),
            state: c.state,
            reason: c.reason.clone(),
        })
        .collect()
}
