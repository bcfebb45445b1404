//! The runbook engine: a pure state machine that decides what runs next.
//!
//! `Engine::update(now, input)` takes one happening (start, an executor's result, an
//! operator's decision, a health snapshot, a clock tick) and returns what follows: events to
//! report and journal, and [`ExecRequest`]s for the async side to carry out. It never does
//! I/O and has no clock of its own (`now` is time since the run started), so every path —
//! approval, read-only refusal, dry run, guards, retries, budgets, resume — is tested with
//! plain `#[test]`s.
//!
//! A step runs as *units*: one per target host and `foreach` item. Every unit passes the same
//! gates, whatever led to it (first attempt, retry, a resumed run's retry, the next item):
//! the step's `when`, read-only mode, dry run, approval, then its guards on every attempt.
//! A changing unit whose outcome is unknown (it timed out, its connection dropped, the run
//! died while it ran) is never run again unless a person decides so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cond::{Cond, Health, HealthState};
use super::template::{Quoting, Value, Vars};
use super::{
    CaptureSource, Confirm, DockerAction, Executor, ExpectCheck, GuardCheck, OnFailure, Pick,
    Runbook, Step, StepKind,
};
use crate::inventory::{Host, Inventory, Selector, TransportSpec};

/// Most step starts in one run (goto loops end here instead of running forever).
const MAX_STEP_STARTS: usize = 200;

/// A resolved target host, with the builtin variables its steps can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    pub name: String,
    pub tier: String,
    /// Read-only in the inventory (host or tier): changing steps are refused on it.
    pub read_only: bool,
    /// How shell commands are escalated there (`sudo`), if they are.
    pub r#become: Option<String>,
    #[serde(skip)]
    pub vars: Vars,
}

impl HostInfo {
    pub fn from_inventory(inv: &Inventory, h: &Host) -> HostInfo {
        let mut vars = Vars::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_owned(), Value::Str(v));
        };
        set("host", h.name.clone());
        set("host.name", h.name.clone());
        set("host.tier", h.tier.clone());
        let address = match &h.transport {
            TransportSpec::Ssh(s) => s.address.clone(),
            _ => h
                .services
                .mysql
                .first()
                .map(|m| m.address.clone())
                .or_else(|| h.services.redis.first().map(|r| r.address.clone()))
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
        };
        set("host.address", address);
        if let Some(m) = h.services.mysql.first() {
            set("mysql.address", m.address.clone());
            set("mysql.port", m.port.to_string());
            set("mysql.database", m.database.clone().unwrap_or_default());
            set(
                "mysql.defaults_file",
                m.defaults_file.clone().unwrap_or_default(),
            );
        }
        if let Some(r) = h.services.redis.first() {
            set("redis.address", r.address.clone());
            set("redis.port", r.port.to_string());
            set(
                "redis.master_name",
                h.services
                    .redis
                    .iter()
                    .find_map(|r| r.master_name.clone())
                    .unwrap_or_default(),
            );
        }
        // The host's own Redis server (not its Sentinel): how it is restarted, empty when
        // the inventory does not say (the runbook then asks the service manager).
        set(
            "redis.restart",
            h.services
                .redis
                .iter()
                .find(|r| r.role != crate::inventory::RedisRole::Sentinel)
                .and_then(|r| r.restart.clone())
                .unwrap_or_default(),
        );
        // What the inventory declares about the host's other services, for runbooks that
        // act where health points (empty when not declared).
        // Defined on every host (empty where absent), so one step can run on hosts that
        // have the service and hosts that do not.
        let fpm = h.services.php_fpm.as_ref();
        set(
            "php_fpm.status_url",
            fpm.map(|p| p.status_url.clone()).unwrap_or_default(),
        );
        set(
            "php_fpm.restart",
            fpm.and_then(|p| p.restart.clone()).unwrap_or_default(),
        );
        let nginx = h.services.nginx.as_ref();
        set(
            "nginx.reload",
            nginx.and_then(|n| n.reload.clone()).unwrap_or_default(),
        );
        set(
            "nginx.upstream_file",
            nginx
                .and_then(|n| n.upstream_file.clone())
                .unwrap_or_default(),
        );
        set(
            "app.env",
            h.services
                .app
                .as_ref()
                .and_then(|a| a.env.clone())
                .unwrap_or_default(),
        );
        let hp = h.services.haproxy.as_ref();
        set(
            "haproxy.socket",
            hp.and_then(|x| x.socket.clone()).unwrap_or_default(),
        );
        set(
            "haproxy.stats_url",
            hp.map(|x| x.stats_url.clone()).unwrap_or_default(),
        );
        let queue = h.services.queues.first();
        set(
            "queue.name",
            queue.map(|q| q.name.clone()).unwrap_or_default(),
        );
        set(
            "queue.redis_host",
            queue.and_then(|q| q.redis_host.clone()).unwrap_or_default(),
        );
        set(
            "process.restart",
            h.services
                .process_restarts
                .first()
                .map(|(_, c)| c.clone())
                .unwrap_or_default(),
        );
        for (k, v) in [
            ("host.mounts", h.services.mounts.clone()),
            (
                "queues",
                h.services.queues.iter().map(|q| q.name.clone()).collect(),
            ),
            ("processes", h.services.processes.clone()),
        ] {
            vars.insert(k.to_owned(), Value::List(v));
        }
        HostInfo {
            name: h.name.clone(),
            tier: h.tier.clone(),
            read_only: h.read_only || inv.tier(&h.tier).is_some_and(|t| t.read_only),
            r#become: h.r#become.as_ref().map(crate::inventory::Become::label),
            vars,
        }
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The runbook, the target or the inventory do not fit together (a usage error).
    #[error("{0}")]
    Invalid(String),
    /// The plan would act outside what the operator pointed at: refused.
    #[error("{0}")]
    Refused(String),
}

/// The hosts each step (and each guard with its own target) runs on, resolved up front.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Vec<HostInfo>>,
    pub guards: BTreeMap<(usize, usize), Vec<HostInfo>>,
    /// The hosts `--target` named, resolved (empty: no target given).
    pub target: Vec<String>,
    /// Every host of the inventory, for conditions that name one (`health.db2.mysql.up`).
    pub inventory_hosts: Vec<String>,
    /// Per step: why its hosts may be the wrong ones (a live role the servers could not
    /// confirm, two hosts claiming to be primary). A changing step with doubts asks in the
    /// console and is refused headless unless named in `--approve`.
    pub doubts: BTreeMap<usize, Vec<String>>,
    /// Steps that need a second person's approval (the step says so, or it changes a host
    /// of a tier the team's policy names).
    pub second_person: std::collections::BTreeSet<usize>,
}

impl Plan {
    /// Resolves every target against the inventory.
    ///
    /// With a `target` (from `--target`, or the hosts health flagged), the target is resolved
    /// exactly like an `exec` selector — a term that matches no host is an error — and each
    /// step acts on its own hosts *within* the target. A changing step none of whose hosts is
    /// in the target is refused, never widened to hosts the operator did not name. A
    /// read-only step (and a guard) outside the target keeps its own hosts: it only looks.
    pub fn resolve(
        rb: &Runbook,
        inv: &Inventory,
        target: Option<&Selector>,
    ) -> Result<Plan, PlanError> {
        Plan::resolve_live(rb, inv, target, None)
    }

    /// [`Plan::resolve`] against the live topology: live roles (`db:primary`) are what the
    /// servers report; where they could not be asked, the inventory's word is used and the
    /// step carries a doubt.
    pub fn resolve_live(
        rb: &Runbook,
        inv: &Inventory,
        target: Option<&Selector>,
        topology: Option<&crate::probes::topology::Topology>,
    ) -> Result<Plan, PlanError> {
        let target_hosts: Option<Vec<&Host>> = match target {
            Some(sel) => Some(
                inv.select(sel)
                    .map_err(|e| PlanError::Invalid(format!("--target {sel}: {e}")))?,
            ),
            None => None,
        };
        let doubts = std::cell::RefCell::new(Vec::<String>::new());
        let pick = |sel: &Selector,
                    pick: Pick,
                    what: &str,
                    changes: bool|
         -> Result<Vec<HostInfo>, PlanError> {
            let mut hosts = match topology {
                Some(t) => {
                    let live = |h: &str| t.roles_of(h).map(<[String]>::to_vec);
                    let sel = sel
                        .resolve_live(inv, &live)
                        .map_err(|e| PlanError::Invalid(format!("{what}: {e}")))?;
                    if changes {
                        doubts.borrow_mut().extend(sel.doubts);
                    }
                    sel.hosts
                }
                None => sel
                    .resolve(inv)
                    .map_err(|e| PlanError::Invalid(format!("{what}: {e}")))?,
            };
            if let Some(t) = &target_hosts {
                let within: Vec<&Host> = hosts
                    .iter()
                    .copied()
                    .filter(|h| t.iter().any(|x| x.name == h.name))
                    .collect();
                if within.is_empty() && changes {
                    return Err(PlanError::Refused(format!(
                        "refused: {what} changes {sel} ({}), and none of those hosts is in the target ({})",
                        names(&hosts),
                        names(t)
                    )));
                }
                if !within.is_empty() {
                    hosts = within;
                }
            }
            if hosts.is_empty() {
                return Err(PlanError::Invalid(format!(
                    "{what}: target {sel} selects no host"
                )));
            }
            if pick == Pick::One && hosts.len() > 1 {
                return Err(PlanError::Invalid(format!(
                    "{what}: target {sel} must select one host but selects {} ({}); name one with --target",
                    hosts.len(),
                    names(&hosts)
                )));
            }
            if pick != Pick::All {
                hosts.truncate(1);
            }
            Ok(hosts
                .into_iter()
                .map(|h| HostInfo::from_inventory(inv, h))
                .collect())
        };
        let mut plan = Plan {
            inventory_hosts: inv.hosts.iter().map(|h| h.name.clone()).collect(),
            target: target_hosts
                .as_ref()
                .map(|t| t.iter().map(|h| h.name.clone()).collect())
                .unwrap_or_default(),
            ..Plan::default()
        };
        for (i, s) in rb.steps.iter().enumerate() {
            doubts.borrow_mut().clear();
            let hosts = match &s.target {
                Some(t) => pick(
                    &t.selector,
                    t.pick,
                    &format!("step `{}`", s.id),
                    s.changes() || s.kind == StepKind::Manual,
                )?,
                None => Vec::new(),
            };
            let step_doubts = std::mem::take(&mut *doubts.borrow_mut());
            if !step_doubts.is_empty() {
                plan.doubts.insert(i, step_doubts);
            }
            let policy_tiers = inv
                .team
                .as_ref()
                .map(|t| t.second_person.as_slice())
                .unwrap_or(&[]);
            if s.second_person
                || ((s.changes() || s.kind == StepKind::Manual)
                    && hosts.iter().any(|h| policy_tiers.contains(&h.tier)))
            {
                plan.second_person.insert(i);
            }
            for (g, guard) in s.guards.iter().enumerate() {
                if let Some(t) = &guard.target {
                    let gh = pick(
                        &t.selector,
                        t.pick,
                        &format!("step `{}` guard {}", s.id, g + 1),
                        false,
                    )?;
                    plan.guards.insert((i, g), gh);
                }
            }
            plan.steps.push(hosts);
        }
        Ok(plan)
    }

    /// Every host a changing (or manual) step of `rb` acts on: what a run must lock.
    pub fn changed_hosts(&self, rb: &Runbook) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (i, s) in rb.steps.iter().enumerate() {
            if s.changes() || s.kind == StepKind::Manual {
                for h in self.steps.get(i).into_iter().flatten() {
                    if !out.contains(&h.name) {
                        out.push(h.name.clone());
                    }
                }
            }
        }
        out
    }

    /// Every host any step or guard of the plan touches.
    pub fn all_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for h in self.steps.iter().chain(self.guards.values()).flatten() {
            if !out.contains(&h.name) {
                out.push(h.name.clone());
            }
        }
        out
    }
}

fn names(hosts: &[&Host]) -> String {
    hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which steps may run without a person confirming them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovePolicy {
    /// Interactive: ask the operator (the console).
    Ask,
    /// Headless: nothing runs; the run stops at the first step.
    None,
    /// Headless: read-only steps run; the run stops before the first changing or manual step.
    Diagnose,
    /// Headless: every changing step runs. Manual steps still stop the run: only a person
    /// can do them (name the step id to say it was done).
    All,
    /// Headless: read-only steps and the named changing/manual steps run (`all` among the
    /// names: every changing step, plus the named manual ones).
    Steps(Vec<String>),
}

impl std::str::FromStr for ApprovePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ask" => ApprovePolicy::Ask,
            "none" => ApprovePolicy::None,
            "diagnose" => ApprovePolicy::Diagnose,
            "all" => ApprovePolicy::All,
            ids => {
                let ids: Vec<String> = ids
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if ids.is_empty() {
                    return Err("use none, diagnose, all or step ids (a,b,c)".to_owned());
                }
                ApprovePolicy::Steps(ids)
            }
        })
    }
}

/// What to do with a unit whose outcome is unknown, decided ahead (`--resolve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The operator checked: it happened.
    Verified,
    Retry,
    Skip,
}

impl std::str::FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "verify" | "verified" | "done" => Ok(Resolution::Verified),
            "retry" => Ok(Resolution::Retry),
            "skip" => Ok(Resolution::Skip),
            _ => Err("use verify, retry or skip".to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // one per switch of a run
pub struct Options {
    pub approve: ApprovePolicy,
    pub read_only: bool,
    pub dry_run: bool,
    pub run_diagnose_in_dry_run: bool,
    /// Headless answer for a unit found with an unknown outcome on resume.
    pub resolve_unknown: Option<Resolution>,
    /// Who answers decisions in the console (`account@machine`), recorded with each one.
    pub operator: String,
    /// At the end, re-probe the runbook's triggers on the target: the run succeeds only if
    /// they are back to ok (else it ends "not resolved").
    pub verify: bool,
    /// How long the end check keeps re-probing before it says "not resolved".
    pub verify_timeout: Duration,
    /// Team mode is on (a second person can be asked).
    pub team: bool,
    /// Changing steps are refused for this reason (team mode with etcd unreachable).
    pub changes_refused: Option<String>,
}

/// How long the end check's triggers must stay ok (two probes this far apart) before the run
/// is called resolved.
pub const VERIFY_SETTLE: Duration = Duration::from_secs(3);

impl Default for Options {
    fn default() -> Self {
        Options {
            approve: ApprovePolicy::Ask,
            read_only: false,
            dry_run: false,
            run_diagnose_in_dry_run: false,
            resolve_unknown: None,
            operator: "operator".to_owned(),
            verify: false,
            verify_timeout: Duration::from_secs(90),
            team: false,
            changes_refused: None,
        }
    }
}

/// One unit of a step: a host (none for host-less steps) and a `foreach` item.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnitKey {
    pub host: Option<String>,
    pub item: Option<String>,
}

impl std::fmt::Display for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.host, &self.item) {
            (Some(h), Some(i)) => write!(f, "{h} (item {i:?})"),
            (Some(h), None) => f.write_str(h),
            (None, Some(i)) => write!(f, "item {i:?}"),
            (None, None) => f.write_str("-"),
        }
    }
}

/// Where a resumed run picks up (see `journal::resume_point`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeFrom {
    /// Index of the first step that did not finish.
    pub step: usize,
    /// Variables captured before the interruption.
    pub vars: Vars,
    /// Units of that step that finished (succeeded, verified or skipped): not run again.
    pub done: Vec<UnitKey>,
    /// The unit that was executing a changing command when the run stopped: its outcome is
    /// unknown until a person decides.
    pub unknown: Option<UnitKey>,
}

/// An operator's (or the headless policy's) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", content = "text", rename_all = "snake_case")]
pub enum Decision {
    Confirm,
    TypedConfirm(String),
    Skip,
    Retry,
    Abort,
    MarkDone,
    AddNote(String),
    /// The value of the input asked for.
    SetInput {
        name: String,
        value: String,
    },
    /// After a failure or an empty result: give an input a new value and go back to the
    /// first step that reads it.
    ChangeInput {
        name: String,
        value: String,
    },
    /// A second person (another account, `account@machine`) approved.
    SecondApproval {
        by: String,
    },
}

/// What the engine waits for a person to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionKind {
    /// Confirm, Skip or Abort.
    Confirm,
    /// Type `expected` (the target host's name), Skip or Abort.
    TypedConfirm { expected: String },
    /// A manual step: MarkDone, Skip or Abort.
    MarkDone,
    /// A failed step (interactive): Retry, Skip or Abort.
    Failed,
    /// A unit's outcome is unknown: MarkDone (verified), Retry, Skip or Abort.
    ResolveUnknown,
    /// An input is needed now: SetInput (the default computed from the diagnosis is
    /// offered), or Abort.
    Input {
        name: String,
        default: Option<String>,
        /// How the default was computed (`percentile(idle_times, 20) of 28 values`).
        computed: Option<String>,
        description: String,
    },
    /// A `foreach` list came back empty: change an input the diagnosis used (and go back to
    /// that step), Skip, or Abort.
    NothingToDo { list: String, inputs: Vec<String> },
    /// Confirmed by the operator; another account must approve too: SecondApproval (from
    /// another operator), Skip or Abort.
    SecondPerson { requested_by: String },
}

/// One unit a confirmation covers, with its exact command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    pub host: Option<String>,
    pub item: Option<String>,
    pub command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
    Unknown,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// A step failed and its on_failure said abort.
    Failed,
    /// A step needed approval, a person or a decision the headless policy did not give;
    /// nothing of that step ran (or, for an unknown outcome, nothing more).
    NeedsApproval,
    /// The operator aborted.
    Aborted,
    /// A changing step was refused in read-only mode before anything connected.
    Refused,
    /// Every step ran, but the health checks that triggered the runbook are not back to ok
    /// on the target: the fault is still there.
    NotResolved,
}

/// The command an [`ExecRequest`] carries, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Rendered {
    Shell {
        command: String,
    },
    /// `query` holds one `?` per value; `params` are sent bound, never spliced into the text.
    /// `display` shows the values inline, quoted, for people.
    Sql {
        query: String,
        params: Vec<String>,
        display: String,
    },
    Redis {
        args: Vec<String>,
        /// The database `SELECT`ed before the command (`None`: 0).
        #[serde(skip_serializing_if = "Option::is_none")]
        db: Option<u32>,
    },
    Docker {
        action: DockerAction,
        command: Option<String>,
        tail: u32,
    },
    Http {
        method: String,
        url: String,
        expect_status: Option<u16>,
    },
    ReplicaSqlRunning,
    ReplicaLagBelow {
        seconds: u64,
    },
    SentinelCkquorum,
    /// Probe these hosts and report every check's state.
    Health {
        hosts: Vec<String>,
    },
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendered::Shell { command } => write!(f, "$ {command}"),
            Rendered::Sql { display, .. } => write!(f, "sql> {display}"),
            Rendered::Redis { args, db } => write!(
                f,
                "redis{}> {}",
                db.map(|n| format!(" db {n}")).unwrap_or_default(),
                args.iter()
                    .map(|a| super::template::quote(a, Quoting::Shell))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Rendered::Docker {
                action, command, ..
            } => match command {
                Some(c) => write!(f, "docker exec: {c}"),
                None => write!(f, "docker {}", format!("{action:?}").to_lowercase()),
            },
            Rendered::Http { method, url, .. } => write!(f, "{method} {url}"),
            Rendered::ReplicaSqlRunning => f.write_str("guard: replica SQL thread running"),
            Rendered::ReplicaLagBelow { seconds } => {
                write!(f, "guard: replica lag below {seconds}s")
            }
            Rendered::SentinelCkquorum => f.write_str("guard: SENTINEL CKQUORUM"),
            Rendered::Health { hosts } => write!(f, "probe health of {}", hosts.join(", ")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Step,
    Guard(usize),
    Rollback,
    /// Fresh health for a step's `when`, a wait step's `until`, or the end check.
    Health(HealthUse),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthUse {
    When,
    Until,
    Verify,
}

/// One check on one host, as the probes judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthFact {
    pub host: String,
    pub check: String,
    pub state: HealthState,
    pub reason: String,
}

/// Run this on that host and feed the result back with the same `seq`.
#[derive(Debug, Clone, Serialize)]
pub struct ExecRequest {
    pub seq: u64,
    pub step: String,
    pub host: Option<HostInfo>,
    /// The `foreach` item this unit runs for.
    pub item: Option<String>,
    pub purpose: Purpose,
    pub command: Rendered,
    pub timeout: Duration,
    /// Changes something: the intent is journaled and synced before it runs.
    pub changes: bool,
    /// Wait this long before running (retries, wait-step polling).
    pub delay: Duration,
    pub attempt: u32,
    /// Shell commands escalate where the host does (`become`); `false` when the step says not.
    pub r#become: bool,
}

impl ExecRequest {
    pub fn unit(&self) -> UnitKey {
        UnitKey {
            host: self.host.as_ref().map(|h| h.name.clone()),
            item: self.item.clone(),
        }
    }
}

/// What came back from running an [`ExecRequest`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecResult {
    /// Could not run or finish (connect, auth, timeout, server error): the reason.
    pub error: Option<String>,
    /// The command may have run and its outcome is unknown (timed out, connection lost
    /// after it was sent). Never set when it certainly did not start.
    pub unknown: bool,
    pub exit: Option<i32>,
    /// Text output (secrets masked and bounded by the executor).
    pub output: String,
    /// SQL result rows, by column name.
    pub rows: Vec<BTreeMap<String, String>>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Health facts (for a `Rendered::Health` request).
    pub health: Vec<HealthFact>,
}

impl ExecResult {
    pub fn ok(output: &str) -> Self {
        ExecResult {
            exit: Some(0),
            output: output.to_owned(),
            ..Default::default()
        }
    }
    pub fn exit(code: i32, output: &str) -> Self {
        ExecResult {
            exit: Some(code),
            output: output.to_owned(),
            ..Default::default()
        }
    }
    /// It did not run (or certainly failed): the reason.
    pub fn error(reason: &str) -> Self {
        ExecResult {
            error: Some(reason.to_owned()),
            ..Default::default()
        }
    }
    /// It may have run; nobody knows what it did.
    pub fn unknown(reason: &str) -> Self {
        ExecResult {
            error: Some(reason.to_owned()),
            unknown: true,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub enum Input {
    Start,
    Result {
        seq: u64,
        result: ExecResult,
    },
    Decision(Decision),
    /// What the probes currently say (replaces what the engine knew about those checks).
    Health(Vec<HealthFact>),
    /// Nothing happened; lets the engine notice budgets and the RTO running out.
    Tick,
}

/// Everything the engine reports. Serialised as one JSON object per line (`--json`) and
/// into the journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        runbook: String,
        title: String,
        hash: String,
        dry_run: bool,
        read_only: bool,
        resumed_at: Option<String>,
    },
    StepStarted {
        step: String,
        title: String,
        kind: StepKind,
        hosts: Vec<String>,
        /// Continued from an interrupted run: units it finished are not run again.
        #[serde(default)]
        resumed: bool,
    },
    /// Dry run: exactly what would run, per host.
    WouldRun {
        step: String,
        host: Option<String>,
        command: String,
        changes: bool,
    },
    Output {
        step: String,
        host: Option<String>,
        text: String,
    },
    Captured {
        step: String,
        var: String,
        value: Value,
    },
    /// An input got its value when first needed (or was changed by the operator).
    InputSet {
        step: String,
        name: String,
        /// The value; the mask for a secret input.
        value: String,
        /// `default`, `computed` or the operator.
        by: String,
        /// How a computed default was reached.
        how: Option<String>,
    },
    Guard {
        step: String,
        host: Option<String>,
        guard: String,
        passed: bool,
        message: String,
    },
    AwaitingDecision {
        step: String,
        host: Option<String>,
        kind: DecisionKind,
        /// Every unit the decision covers, with its exact command.
        covers: Vec<Cover>,
        /// Why a decision is needed (a failure, an unknown outcome), when there is a why.
        reason: Option<String>,
    },
    Decided {
        step: String,
        host: Option<String>,
        decision: Decision,
        /// `policy` or the operator (`account@machine`).
        by: String,
        /// Every unit this decision covered.
        covers: Vec<Cover>,
    },
    Attempt {
        step: String,
        host: Option<String>,
        attempt: u32,
        message: String,
    },
    Rollback {
        step: String,
        host: Option<String>,
        ok: bool,
        message: String,
    },
    /// One unit (host × item) is over: what resume reads to never run it twice.
    UnitFinished {
        step: String,
        host: Option<String>,
        item: Option<String>,
        status: StepStatus,
        message: String,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        message: String,
    },
    BudgetExceeded {
        step: String,
        budget_s: f64,
        elapsed_s: f64,
    },
    RtoExceeded {
        rto_s: f64,
        elapsed_s: f64,
    },
    Note {
        step: Option<String>,
        text: String,
    },
    /// Health at the start of the run and at its end: every check not ok (for the postmortem).
    Health {
        /// `start` or `end`.
        when: String,
        checks: Vec<HealthFact>,
    },
    RunFinished {
        outcome: Outcome,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub enum Output {
    Event(Event),
    Exec(ExecRequest),
}

#[derive(Debug, Clone)]
struct Unit {
    host: Option<HostInfo>,
    item: Option<String>,
    /// Finished before (resume) or during this run.
    done: bool,
}

impl Unit {
    fn key(&self) -> UnitKey {
        UnitKey {
            host: self.host.as_ref().map(|h| h.name.clone()),
            item: self.item.clone(),
        }
    }
    fn host_name(&self) -> Option<String> {
        self.host.as_ref().map(|h| h.name.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    NotStarted,
    /// Waiting for a decision about the current unit.
    Awaiting(DecisionKind),
    /// Waiting for the result of `seq`.
    Running {
        seq: u64,
        purpose: Purpose,
    },
    Finished(Outcome),
}

/// What the current step's approval covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Approval {
    None,
    /// Every unit of the step.
    Step,
    /// The units on one host (typed confirmations name each host).
    Host(Option<String>),
}

#[allow(clippy::struct_excessive_bools)] // independent facts of one run in flight
pub struct Engine {
    rb: Arc<Runbook>,
    plan: Plan,
    opts: Options,
    vars: Vars,
    health: BTreeMap<(String, String), HealthFact>,
    /// Health was refreshed for the gate or attempt at hand.
    health_fresh: bool,
    /// When the end check started (it re-probes until `verify_timeout`).
    verify_started: Option<Duration>,
    /// Since when the end check has seen the triggers ok, probe after probe.
    verify_ok_since: Option<Duration>,
    phase: Phase,
    now: Duration,
    cursor: usize,
    units: Vec<Unit>,
    unit: usize,
    attempt: u32,
    approval: Approval,
    step_started: Duration,
    budget_reported: bool,
    rto_reported: bool,
    step_starts: usize,
    seq: u64,
    /// Where to resume; consumed when that step starts.
    resume: Option<ResumeFrom>,
    /// A unit of the current step whose outcome is unknown (from resume).
    unknown: Option<UnitKey>,
    /// Inputs nobody gave yet: settled when the first step that reads them is reached.
    unsettled: Vec<String>,
    /// The current step's second-person approval was given.
    second_approved: bool,
    out: Vec<Output>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("runbook", &self.rb.id)
            .field("cursor", &self.cursor)
            .field("unit", &self.unit)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(rb: Arc<Runbook>, inputs: Vars, plan: Plan, opts: Options) -> Engine {
        let mut vars = inputs;
        vars.insert("runbook.id".to_owned(), Value::Str(rb.id.clone()));
        vars.insert("operator".to_owned(), Value::Str(opts.operator.clone()));
        let unsettled = rb
            .inputs
            .iter()
            .filter(|i| !vars.contains_key(&i.name))
            .map(|i| i.name.clone())
            .collect();
        Engine {
            unsettled,
            second_approved: false,
            rb,
            plan,
            opts,
            vars,
            health: BTreeMap::new(),
            health_fresh: false,
            verify_started: None,
            verify_ok_since: None,
            phase: Phase::NotStarted,
            now: Duration::ZERO,
            cursor: 0,
            units: Vec::new(),
            unit: 0,
            attempt: 0,
            approval: Approval::None,
            step_started: Duration::ZERO,
            budget_reported: false,
            rto_reported: false,
            step_starts: 0,
            seq: 0,
            resume: None,
            unknown: None,
            out: Vec::new(),
        }
    }

    /// A run continued from its journal: starts at `from.step` with the captured variables,
    /// skipping the units that finished.
    pub fn resume(
        rb: Arc<Runbook>,
        inputs: Vars,
        plan: Plan,
        opts: Options,
        from: ResumeFrom,
    ) -> Engine {
        let mut e = Engine::new(rb, inputs, plan, opts);
        e.vars.extend(from.vars.clone());
        e.unsettled.retain(|n| !from.vars.contains_key(n));
        e.resume = Some(from);
        e
    }

    /// Team mode: whether a second person can be asked, and whether changing steps are
    /// refused (etcd unreachable).
    pub fn set_team(&mut self, team: bool, changes_refused: Option<String>) {
        self.opts.team = team;
        self.opts.changes_refused = changes_refused;
    }

    pub fn set_health(&mut self, facts: Vec<HealthFact>) {
        for f in facts {
            self.health.insert((f.host.clone(), f.check.clone()), f);
        }
    }

    /// What `health.NAME` means for a condition evaluated on `host`: `health.CHECK` is that
    /// host's check (or, with no host, the worst over every host), `health.HOST.CHECK` names
    /// the host.
    fn health_view(&self, host: Option<&str>) -> Health {
        let mut view = Health::new();
        for ((h, check), f) in &self.health {
            view.insert(format!("{h}.{check}"), f.state);
            let mine = host.is_none_or(|me| me == h);
            if mine {
                view.entry(check.clone())
                    .and_modify(|s| {
                        if worse(f.state, *s) {
                            *s = f.state;
                        }
                    })
                    .or_insert(f.state);
            }
        }
        view
    }

    /// The hosts a condition's health must come from: `on` plus every host it names.
    fn health_hosts(&self, cond: &Cond, on: &[String]) -> Vec<String> {
        let mut hosts: Vec<String> = on.to_vec();
        for ident in cond.idents() {
            if let Some(rest) = ident.strip_prefix("health.")
                && let Some((h, _)) = rest.split_once('.')
                && self.plan.inventory_hosts.iter().any(|x| x == h)
                && !hosts.iter().any(|x| x == h)
            {
                hosts.push(h.to_owned());
            }
        }
        if hosts.is_empty() {
            hosts.clone_from(&self.plan.inventory_hosts);
        }
        hosts
    }

    pub fn vars(&self) -> &Vars {
        &self.vars
    }

    pub fn runbook(&self) -> &Arc<Runbook> {
        &self.rb
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn outcome(&self) -> Option<Outcome> {
        match self.phase {
            Phase::Finished(o) => Some(o),
            _ => None,
        }
    }

    /// While a decision is awaited: the host and the exact command the current unit would
    /// run, variables resolved.
    pub fn pending(&self) -> Option<(Option<String>, Rendered)> {
        if !matches!(self.phase, Phase::Awaiting(_)) {
            return None;
        }
        let step = self.rb.steps.get(self.cursor)?;
        let unit = self.units.get(self.unit)?;
        let exec = step.exec.as_ref()?;
        Some((unit.host_name(), self.render_display(exec, unit)))
    }

    /// Index of the step the run is on.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn current_step(&self) -> Option<&Step> {
        self.rb.steps.get(self.cursor)
    }

    pub fn update(&mut self, now: Duration, input: Input) -> Vec<Output> {
        self.now = self.now.max(now);
        match input {
            Input::Start => {
                if self.phase == Phase::NotStarted {
                    self.start();
                }
            }
            Input::Result { seq, result } => self.on_result(seq, result),
            Input::Decision(d) => self.on_decision(d),
            Input::Health(facts) => self.set_health(facts),
            Input::Tick => {}
        }
        self.check_clock();
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, e: Event) {
        self.out.push(Output::Event(e));
    }

    fn step(&self) -> Step {
        self.rb.steps[self.cursor].clone()
    }

    fn host_name(&self) -> Option<String> {
        self.units.get(self.unit).and_then(Unit::host_name)
    }

    fn check_clock(&mut self) {
        if matches!(self.phase, Phase::Finished(_) | Phase::NotStarted) {
            return;
        }
        if let Some(rto) = self.rb.rto
            && !self.rto_reported
            && self.now > rto
        {
            self.rto_reported = true;
            let e = Event::RtoExceeded {
                rto_s: rto.as_secs_f64(),
                elapsed_s: self.now.as_secs_f64(),
            };
            self.emit(e);
        }
        if let Some(step) = self.rb.steps.get(self.cursor)
            && let Some(b) = step.budget
            && !self.budget_reported
            && self.now.saturating_sub(self.step_started) > b
        {
            self.budget_reported = true;
            let e = Event::BudgetExceeded {
                step: step.id.clone(),
                budget_s: b.as_secs_f64(),
                elapsed_s: self.now.saturating_sub(self.step_started).as_secs_f64(),
            };
            self.emit(e);
        }
    }

    fn start(&mut self) {
        let resumed_at = self
            .resume
            .as_ref()
            .and_then(|r| self.rb.steps.get(r.step).map(|s| s.id.clone()));
        let e = Event::RunStarted {
            runbook: self.rb.id.clone(),
            title: self.rb.title.clone(),
            hash: self.rb.hash.clone(),
            dry_run: self.opts.dry_run,
            read_only: self.opts.read_only,
            resumed_at,
        };
        self.emit(e);
        let failing = self.failing(None);
        if !failing.is_empty() {
            self.emit(Event::Health {
                when: "start".to_owned(),
                checks: failing,
            });
        }
        if let Some(r) = &self.resume {
            self.cursor = r.step;
        }
        self.begin_step();
    }

    /// Checks not ok, on `hosts` (all when `None`), in a stable order.
    fn failing(&self, hosts: Option<&[String]>) -> Vec<HealthFact> {
        self.health
            .values()
            .filter(|f| f.state != HealthState::Ok)
            .filter(|f| hosts.is_none_or(|hs| hs.contains(&f.host)))
            .cloned()
            .collect()
    }

    fn finish(&mut self, outcome: Outcome, message: String) {
        self.phase = Phase::Finished(outcome);
        self.emit(Event::RunFinished { outcome, message });
    }

    fn finish_step(&mut self, status: StepStatus, message: String) {
        let step = self.rb.steps[self.cursor].id.clone();
        self.emit(Event::StepFinished {
            step,
            status,
            message,
        });
    }

    fn unit_finished(&mut self, status: StepStatus, message: String) {
        let step = self.rb.steps[self.cursor].id.clone();
        let Some(u) = self.units.get_mut(self.unit) else {
            return;
        };
        if matches!(status, StepStatus::Succeeded | StepStatus::Skipped) {
            u.done = true;
        }
        let (host, item) = (u.host_name(), u.item.clone());
        self.emit(Event::UnitFinished {
            step,
            host,
            item,
            status,
            message,
        });
    }

    fn advance(&mut self) {
        self.cursor += 1;
        self.begin_step();
    }

    /// Starts the step at the cursor: its units, then the step-wide gates (`when`, nothing
    /// to do, read-only, dry run), then its first unit.
    fn begin_step(&mut self) {
        if self.cursor >= self.rb.steps.len() {
            if self.opts.dry_run {
                return self.finish(Outcome::Succeeded, "dry run: nothing was changed".into());
            }
            if self.opts.verify && !self.rb.triggers.is_empty() {
                self.verify_started = Some(self.now);
                self.verify_ok_since = None;
                return self.request_health(HealthUse::Verify, self.verify_hosts(), Duration::ZERO);
            }
            self.finish(Outcome::Succeeded, "all steps done".to_owned());
            return;
        }
        if self.step_starts >= MAX_STEP_STARTS {
            self.finish(
                Outcome::Failed,
                format!("stopped after {MAX_STEP_STARTS} step starts: an on_failure goto loops"),
            );
            return;
        }
        let resumed = self.resume.take_if(|r| r.step == self.cursor);
        self.begin_step_header(resumed.is_some());
        let step = self.step();
        if let Some(r) = resumed {
            let mut skipped = Vec::new();
            for u in &mut self.units {
                if r.done.contains(&u.key()) {
                    u.done = true;
                    skipped.push(u.key().to_string());
                }
            }
            if !skipped.is_empty() {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: format!(
                        "finished before the interruption, not run again: {}",
                        skipped.join(", ")
                    ),
                });
            }
            self.unknown = r
                .unknown
                .filter(|k| self.units.iter().any(|u| u.key() == *k));
        }
        self.health_fresh = false;
        self.gate_step();
    }

    /// The step-wide gates, in order: `when` (with fresh health when it names health),
    /// nothing to do, read-only, dry run; then the first unit.
    fn gate_step(&mut self) {
        let step = self.step();
        if !self.settle_inputs(&step) {
            return;
        }
        if let Some((src, cond)) = &step.when {
            let hosts = self.step_hosts();
            if names_health(cond) && !self.health_fresh {
                let hosts = self.health_hosts(cond, &hosts);
                return self.request_health(HealthUse::When, hosts, Duration::ZERO);
            }
            let view = self.health_view(match hosts.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            });
            match cond.eval(&self.vars, &view) {
                Ok(true) => {}
                Ok(false) => {
                    self.finish_step(StepStatus::Skipped, format!("condition `{src}` is false"));
                    return self.advance();
                }
                Err(e) if self.opts.dry_run => {
                    let m = format!("dry run: condition `{src}` decided at run time ({e})");
                    self.emit(Event::Note {
                        step: Some(step.id.clone()),
                        text: m,
                    });
                }
                // A condition on something no step captured (that step failed and went on)
                // is false: the step is skipped, with the reason.
                Err(e) => {
                    self.finish_step(
                        StepStatus::Skipped,
                        format!("condition `{src}` is false: {e}"),
                    );
                    return self.advance();
                }
            }
        }
        if self.units.is_empty() {
            let list = step.foreach.clone().unwrap_or_default();
            let inputs = self.inputs_behind(&list);
            if self.opts.approve == ApprovePolicy::Ask && !self.opts.dry_run {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: format!(
                        "nothing to do: the diagnosis found nothing for `{list}`{}",
                        if inputs.is_empty() {
                            String::new()
                        } else {
                            format!(" (with {})", self.describe_inputs(&inputs))
                        }
                    ),
                });
                return self.await_decision(
                    DecisionKind::NothingToDo {
                        list: list.clone(),
                        inputs,
                    },
                    Some(format!(
                        "`{list}` is empty: nothing for this step to act on"
                    )),
                );
            }
            self.finish_step(
                StepStatus::Skipped,
                format!(
                    "nothing to do: `{list}` is empty{}",
                    if inputs.is_empty() {
                        String::new()
                    } else {
                        format!(" (with {})", self.describe_inputs(&inputs))
                    }
                ),
            );
            return self.advance();
        }
        if self.units.iter().all(|u| u.done) {
            self.finish_step(
                StepStatus::Succeeded,
                "every unit finished before the interruption".to_owned(),
            );
            return self.advance();
        }
        // Read-only: refuse before anything connects.
        if step.changes() {
            let ro_host = self.units.iter().find_map(|u| {
                u.host
                    .as_ref()
                    .filter(|h| h.read_only)
                    .map(|h| h.name.clone())
            });
            if self.opts.read_only || ro_host.is_some() || self.opts.changes_refused.is_some() {
                let why = match (&self.opts.changes_refused, ro_host) {
                    (Some(r), _) => r.clone(),
                    (None, Some(h)) => format!("host {h} is read-only in the inventory"),
                    (None, None) => "read-only mode (--read-only)".to_owned(),
                };
                let msg = format!("refused: step `{}` changes something and {why}", step.id);
                self.finish_step(StepStatus::Refused, msg.clone());
                return self.finish(Outcome::Refused, msg);
            }
        }
        if self.opts.dry_run {
            let runs = !step.changes()
                && step.kind != StepKind::Manual
                && self.opts.run_diagnose_in_dry_run;
            if !runs {
                for u in self.units.clone().into_iter().filter(|u| !u.done) {
                    let command = match &step.exec {
                        Some(x) => self.render_display(x, &u).to_string(),
                        None => format!("manual: {}", step.title),
                    };
                    self.emit(Event::WouldRun {
                        step: step.id.clone(),
                        host: u.host_name(),
                        command,
                        changes: step.changes(),
                    });
                }
                self.finish_step(StepStatus::Skipped, "dry run".to_owned());
                return self.advance();
            }
        }
        self.begin_unit();
    }

    fn begin_step_header(&mut self, resumed: bool) {
        let step = self.step();
        self.step_starts += 1;
        self.step_started = self.now;
        self.budget_reported = false;
        self.unit = 0;
        self.attempt = 0;
        self.approval = Approval::None;
        self.second_approved = false;
        self.unknown = None;
        let hosts = self
            .plan
            .steps
            .get(self.cursor)
            .cloned()
            .unwrap_or_default();
        self.emit(Event::StepStarted {
            step: step.id.clone(),
            title: step.title.clone(),
            kind: step.kind,
            hosts: hosts.iter().map(|h| h.name.clone()).collect(),
            resumed,
        });
        // Units: hosts x foreach items.
        let items: Vec<Option<String>> = match &step.foreach {
            Some(var) => match self.vars.get(var) {
                Some(Value::List(l)) => l.iter().cloned().map(Some).collect(),
                Some(Value::Str(s)) if !s.is_empty() => vec![Some(s.clone())],
                _ => Vec::new(),
            },
            None => vec![None],
        };
        let host_list: Vec<Option<HostInfo>> = if step.target.is_some() {
            hosts.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        self.units = host_list
            .iter()
            .flat_map(|h| {
                items.iter().map(move |i| Unit {
                    host: h.clone(),
                    item: i.clone(),
                    done: false,
                })
            })
            .collect();
    }

    /// Gives every input the step reads a value before anything of it runs: the operator's
    /// (asked now, with the default computed from the diagnosis), else the default. `false`
    /// when waiting for a person or when the run had to stop.
    fn settle_inputs(&mut self, step: &Step) -> bool {
        let reads = step.reads();
        let needed: Vec<String> = self
            .unsettled
            .iter()
            .filter(|n| reads.contains(n))
            .cloned()
            .collect();
        for name in needed {
            let Some(input) = self.rb.inputs.iter().find(|i| i.name == name).cloned() else {
                continue;
            };
            let computed = input
                .default_from
                .as_ref()
                .and_then(|f| f.eval(&self.vars).map(|v| (v, f)));
            let how = computed.as_ref().map(|(_, f)| self.describe_default(f));
            let default = computed
                .as_ref()
                .map(|(v, _)| v.clone())
                .or_else(|| input.default.clone());
            if self.opts.approve == ApprovePolicy::Ask && !self.opts.dry_run {
                self.await_decision(
                    DecisionKind::Input {
                        name: name.clone(),
                        default,
                        computed: how,
                        description: input.description.clone(),
                    },
                    None,
                );
                return false;
            }
            match default {
                Some(v) => {
                    let by = if computed.is_some() {
                        "computed"
                    } else {
                        "default"
                    };
                    self.set_input(&step.id, &name, v, by, how);
                }
                None if input.required => {
                    let msg = format!(
                        "input `{name}` has no value and no default: rerun with --var {name}=... ({})",
                        input.description
                    );
                    self.finish_step(StepStatus::Refused, msg.clone());
                    self.finish(Outcome::NeedsApproval, msg);
                    return false;
                }
                None => self.unsettled.retain(|n| *n != name),
            }
        }
        true
    }

    fn set_input(&mut self, step: &str, name: &str, value: String, by: &str, how: Option<String>) {
        let secret = self.rb.inputs.iter().any(|i| i.name == name && i.secret);
        if secret {
            drop(crate::secret::Secret::new(value.clone()));
        }
        self.unsettled.retain(|n| n != name);
        self.vars.insert(name.to_owned(), Value::Str(value.clone()));
        self.emit(Event::InputSet {
            step: step.to_owned(),
            name: name.to_owned(),
            value: if secret {
                crate::secret::MASK.to_owned()
            } else {
                value
            },
            by: by.to_owned(),
            how,
        });
    }

    fn describe_default(&self, f: &super::DefaultFrom) -> String {
        let n = match self.vars.get(f.var()) {
            Some(Value::List(l)) => l.len(),
            Some(Value::Str(_)) => 1,
            None => 0,
        };
        let what = match f {
            super::DefaultFrom::Var(v) => v.clone(),
            super::DefaultFrom::Min(v) => format!("min({v})"),
            super::DefaultFrom::Max(v) => format!("max({v})"),
            super::DefaultFrom::Count(v) => format!("count({v})"),
            super::DefaultFrom::Percentile(v, p) => format!("percentile({v}, {p})"),
        };
        format!("{what} of {n} value{}", if n == 1 { "" } else { "s" })
    }

    /// Inputs read by the step that captured `var` (what to change when it found nothing).
    fn inputs_behind(&self, var: &str) -> Vec<String> {
        let Some(capturer) = self
            .rb
            .steps
            .iter()
            .rev()
            .find(|s| s.capture.as_ref().is_some_and(|c| c.var == var))
        else {
            return Vec::new();
        };
        let reads = capturer.reads();
        self.rb
            .inputs
            .iter()
            .filter(|i| reads.contains(&i.name))
            .map(|i| i.name.clone())
            .collect()
    }

    fn describe_inputs(&self, names: &[String]) -> String {
        names
            .iter()
            .map(|n| {
                let v = self
                    .vars
                    .get(n)
                    .map_or_else(|| "unset".to_owned(), Value::as_text);
                format!("{n} = {v}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first step that reads input `name` (where a changed value takes effect).
    fn first_reader(&self, name: &str) -> Option<usize> {
        self.rb
            .steps
            .iter()
            .position(|s| s.reads().iter().any(|r| r == name))
    }

    /// Inputs worth changing when the current step failed: those it reads, or those behind
    /// the lists it reads.
    pub fn inputs_for_change(&self) -> Vec<String> {
        let Some(step) = self.rb.steps.get(self.cursor) else {
            return Vec::new();
        };
        let reads = step.reads();
        let mut out: Vec<String> = self
            .rb
            .inputs
            .iter()
            .filter(|i| reads.contains(&i.name))
            .map(|i| i.name.clone())
            .collect();
        for r in &reads {
            for i in self.inputs_behind(r) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        out
    }

    /// The current value of a variable, as text.
    pub fn value_of(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(Value::as_text)
    }

    /// The hosts of the current step's units, each once.
    fn step_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for h in self.units.iter().filter_map(Unit::host_name) {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        out
    }

    /// Whether the current unit needs a person (or the policy) to say yes first.
    fn needs_approval(&self, step: &Step) -> bool {
        if step.kind == StepKind::Manual {
            return true;
        }
        if step.changes() {
            return match step.confirm {
                Some(Confirm::Typed) => self.approval != Approval::Host(self.host_name()),
                _ => self.approval != Approval::Step,
            };
        }
        self.opts.approve == ApprovePolicy::None && self.approval != Approval::Step
    }

    fn policy_allows(&self, step: &Step) -> bool {
        let named = |ids: &[String]| ids.contains(&step.id);
        let looks = !step.changes() && step.kind != StepKind::Manual;
        match &self.opts.approve {
            ApprovePolicy::Ask | ApprovePolicy::None => false,
            // A manual step is done by a person; `all` cannot say it was.
            ApprovePolicy::All => step.kind != StepKind::Manual,
            ApprovePolicy::Diagnose => looks,
            // `all,ID`: every changing step, and the named manual ones.
            ApprovePolicy::Steps(ids) => {
                looks
                    || named(ids)
                    || (ids.iter().any(|i| i == "all") && step.kind != StepKind::Manual)
            }
        }
    }

    /// The units a decision about the current unit covers, with their exact commands: the
    /// rest of the step, or (typed confirmations, unknown outcomes) the current host's or
    /// unit's share of it.
    fn covers(&self, kind: &DecisionKind) -> Vec<Cover> {
        let step = &self.rb.steps[self.cursor];
        let here = self.host_name();
        self.units
            .iter()
            .enumerate()
            .skip(self.unit)
            .filter(|(_, u)| !u.done)
            .filter(|(i, u)| match kind {
                DecisionKind::TypedConfirm { .. } => u.host_name() == here,
                DecisionKind::ResolveUnknown | DecisionKind::Failed => *i == self.unit,
                _ => true,
            })
            .map(|(_, u)| Cover {
                host: u.host_name(),
                item: u.item.clone(),
                command: format!(
                    "{}{}",
                    // Escalated commands say so: the operator confirms what runs as root.
                    u.host
                        .as_ref()
                        .and_then(|h| h.r#become.as_ref())
                        .filter(|_| step.r#become && matches!(step.exec, Some(Executor::Shell(_))))
                        .map(|b| format!("[{b}] "))
                        .unwrap_or_default(),
                    match (&step.exec, &step.rollback) {
                        (Some(x), Some(rb)) if step.changes() => format!(
                            "{}\n  if it fails, rollback: {}",
                            self.render_display(x, u),
                            self.render_display(rb, u)
                        ),
                        (Some(x), _) => self.render_display(x, u).to_string(),
                        (None, _) => format!("manual: {}", step.title),
                    }
                ),
            })
            .collect()
    }

    fn await_decision(&mut self, kind: DecisionKind, reason: Option<String>) {
        let step = self.rb.steps[self.cursor].id.clone();
        let host = self.host_name();
        let covers = self.covers(&kind);
        self.phase = Phase::Awaiting(kind.clone());
        self.emit(Event::AwaitingDecision {
            step,
            host,
            kind,
            covers,
            reason,
        });
    }

    /// The next unit that has not finished, through every gate: an unknown outcome is
    /// resolved first, then approval, then guards and the command.
    fn begin_unit(&mut self) {
        while self.units.get(self.unit).is_some_and(|u| u.done) {
            self.unit += 1;
        }
        if self.unit >= self.units.len() {
            self.finish_step(StepStatus::Succeeded, String::new());
            return self.advance();
        }
        let step = self.step();
        self.attempt = 0;
        let key = self.units[self.unit].key();
        if self.unknown.as_ref() == Some(&key) {
            self.unknown = None;
            let why = format!(
                "step `{}` on {key} was running a changing command when the run stopped: its outcome is unknown",
                step.id
            );
            match self.opts.resolve_unknown {
                Some(res) => {
                    let d = match res {
                        Resolution::Verified => Decision::MarkDone,
                        Resolution::Retry => Decision::Retry,
                        Resolution::Skip => Decision::Skip,
                    };
                    self.phase = Phase::Awaiting(DecisionKind::ResolveUnknown);
                    return self.decide(d, "policy (--resolve)");
                }
                None if self.opts.approve == ApprovePolicy::Ask => {
                    return self.await_decision(DecisionKind::ResolveUnknown, Some(why));
                }
                None => {
                    let msg = format!(
                        "{why}. Check it on the host, then resume with --resolve verify|retry|skip"
                    );
                    self.finish_step(StepStatus::Unknown, msg.clone());
                    return self.finish(Outcome::NeedsApproval, msg);
                }
            }
        }
        if self.needs_approval(&step) {
            let kind = match (step.kind, step.confirm) {
                (StepKind::Manual, _) => DecisionKind::MarkDone,
                (_, Some(Confirm::Typed)) => DecisionKind::TypedConfirm {
                    expected: self.host_name().unwrap_or_else(|| step.id.clone()),
                },
                _ => DecisionKind::Confirm,
            };
            let doubts = self
                .plan
                .doubts
                .get(&self.cursor)
                .cloned()
                .unwrap_or_default();
            if self.opts.approve == ApprovePolicy::Ask {
                let reason = (!doubts.is_empty())
                    .then(|| format!("check the hosts before confirming: {}", doubts.join("; ")));
                return self.await_decision(kind, reason);
            }
            // Headless, a step whose hosts may be the wrong ones runs only when named.
            let named =
                matches!(&self.opts.approve, ApprovePolicy::Steps(ids) if ids.contains(&step.id));
            if step.changes() && !doubts.is_empty() && !named {
                let msg = format!(
                    "refused: step `{}` would act on hosts nobody could confirm: {}. Check them, then name the step to act anyway: --approve {}",
                    step.id,
                    doubts.join("; "),
                    step.id
                );
                self.finish_step(StepStatus::Refused, msg.clone());
                return self.finish(Outcome::Refused, msg);
            }
            if !self.policy_allows(&step) {
                let msg = if step.kind == StepKind::Manual {
                    format!(
                        "step `{}` needs a person: {} — do it, then rerun with --approve {} to record it done",
                        step.id, step.title, step.id
                    )
                } else {
                    format!(
                        "step `{}` ({}) needs approval: rerun with --approve all or --approve {}",
                        step.id,
                        step.kind.as_str(),
                        step.id
                    )
                };
                self.finish_step(StepStatus::Refused, msg.clone());
                return self.finish(Outcome::NeedsApproval, msg);
            }
            let decision = if kind == DecisionKind::MarkDone {
                Decision::MarkDone
            } else {
                Decision::Confirm
            };
            let covers = self.covers(&kind);
            let host = self.host_name();
            self.emit(Event::Decided {
                step: step.id.clone(),
                host,
                decision,
                by: "policy".to_owned(),
                covers,
            });
            if kind == DecisionKind::MarkDone {
                self.finish_step(
                    StepStatus::Succeeded,
                    format!("recorded done by --approve {}", step.id),
                );
                return self.advance();
            }
            self.approval = match kind {
                DecisionKind::TypedConfirm { .. } => Approval::Host(self.host_name()),
                _ => Approval::Step,
            };
        }
        if self.plan.second_person.contains(&self.cursor) && !self.second_approved {
            if !self.opts.team {
                let msg = format!(
                    "step `{}` needs a second person's approval, and team mode is off ([team] in the inventory)",
                    step.id
                );
                self.finish_step(StepStatus::Refused, msg.clone());
                return self.finish(Outcome::Refused, msg);
            }
            return self.await_decision(
                DecisionKind::SecondPerson {
                    requested_by: self.opts.operator.clone(),
                },
                Some(format!(
                    "waiting for a second person: `opsdeck approve {{run}} {}` from another account",
                    step.id
                )),
            );
        }
        self.run_guard_or_main(0);
    }

    /// The decision the run waits for, if any (what a front end must get answered).
    pub fn awaiting(&self) -> Option<&DecisionKind> {
        match &self.phase {
            Phase::Awaiting(k) => Some(k),
            _ => None,
        }
    }

    /// What the current decision covers (the commands a second person approves).
    pub fn awaiting_covers(&self) -> Vec<Cover> {
        match &self.phase {
            Phase::Awaiting(k) => self.covers(k),
            _ => Vec::new(),
        }
    }

    /// Guards first (every attempt of a changing step re-checks them all), then the command.
    fn run_guard_or_main(&mut self, g: usize) {
        let step = self.step();
        let unit = self.units[self.unit].clone();
        if step.changes() && g < step.guards.len() {
            let guard = &step.guards[g];
            let host = match self.plan.guards.get(&(self.cursor, g)) {
                Some(hosts) => hosts.first().cloned(),
                None => unit.host.clone(),
            };
            let command = match &guard.check {
                GuardCheck::Exec { exec, .. } => match self.render(exec, &unit) {
                    Ok(c) => c,
                    Err(var) => {
                        let msg = format!(
                            "guard {}: variable `{var}` is not defined: the guard cannot check",
                            g + 1
                        );
                        self.unit_finished(StepStatus::Refused, msg.clone());
                        self.finish_step(StepStatus::Refused, msg);
                        return self.apply_on_failure(&step);
                    }
                },
                GuardCheck::ReplicaSqlRunning => Rendered::ReplicaSqlRunning,
                GuardCheck::ReplicaLagBelow(d) => Rendered::ReplicaLagBelow {
                    seconds: d.as_secs(),
                },
                GuardCheck::SentinelCkquorum => Rendered::SentinelCkquorum,
            };
            return self.request(&step, host, unit.item, Purpose::Guard(g), command, false);
        }
        if step.kind == StepKind::Wait
            && let Some((_, cond)) = &step.until
            && names_health(cond)
        {
            if !self.health_fresh {
                let on: Vec<String> = unit.host_name().into_iter().collect();
                let hosts = self.health_hosts(cond, &on);
                let delay = if self.attempt > 0 {
                    step.interval
                } else {
                    Duration::ZERO
                };
                return self.request_health(HealthUse::Until, hosts, delay);
            }
            // This attempt uses the health just fetched; the next fetches again.
            self.health_fresh = false;
        }
        match &step.exec {
            Some(x) => match self.render(x, &unit) {
                Ok(command) => {
                    self.request(
                        &step,
                        unit.host,
                        unit.item,
                        Purpose::Step,
                        command,
                        step.changes(),
                    );
                }
                // Nothing ran: an undefined value must never reach a command.
                Err(var) => {
                    let msg = format!(
                        "variable `{var}` is not defined (no input or earlier capture set it): nothing was run"
                    );
                    self.unit_finished(StepStatus::Failed, msg.clone());
                    self.step_failed(msg);
                }
            },
            // A wait step on health alone: re-evaluated when health arrives.
            None => self.unit_result(ExecResult::ok("")),
        }
    }

    fn request(
        &mut self,
        step: &Step,
        host: Option<HostInfo>,
        item: Option<String>,
        purpose: Purpose,
        command: Rendered,
        changes: bool,
    ) {
        self.seq += 1;
        let seq = self.seq;
        self.phase = Phase::Running { seq, purpose };
        // A retry or poll waits its interval — for a wait on health, the health request
        // before it did the waiting.
        let waits_on_health = step.kind == StepKind::Wait
            && step.until.as_ref().is_some_and(|(_, c)| names_health(c));
        let delay = if purpose == Purpose::Step && self.attempt > 0 && !waits_on_health {
            step.interval
        } else {
            Duration::ZERO
        };
        self.out.push(Output::Exec(ExecRequest {
            seq,
            step: step.id.clone(),
            host,
            item,
            purpose,
            command,
            timeout: step.timeout,
            changes,
            delay,
            attempt: self.attempt + 1,
            r#become: step.r#become,
        }));
    }

    fn unit_vars(&self, unit: &Unit) -> Vars {
        let mut v = self.vars.clone();
        if let Some(h) = &unit.host {
            v.extend(h.vars.clone());
        }
        if let Some(i) = &unit.item {
            v.insert("item".to_owned(), Value::Str(i.clone()));
        }
        v
    }

    /// What a person is shown: every value quoted inline, an undefined one as `<name>`.
    fn render_display(&self, x: &Executor, unit: &Unit) -> Rendered {
        let v = self.unit_vars(unit);
        if let Executor::Sql(t) = x {
            let display = t.render_sql_display(&v);
            return Rendered::Sql {
                query: display.clone(),
                params: Vec::new(),
                display,
            };
        }
        match Self::render_with(x, &|t, q| Ok(t.render_lenient(q, &v))) {
            Ok(r) => r,
            // Lenient rendering has no error to give.
            Err(e) => Rendered::Shell { command: e },
        }
    }

    /// What runs: `Err(name)` when a variable is undefined (nothing may run then).
    fn render(&self, x: &Executor, unit: &Unit) -> Result<Rendered, String> {
        let v = self.unit_vars(unit);
        if let Executor::Sql(t) = x {
            let (query, params) = t.render_sql_params(&v)?;
            return Ok(Rendered::Sql {
                query,
                params,
                display: t.render_sql_display(&v),
            });
        }
        Self::render_with(x, &|t, q| t.render(q, &v))
    }

    fn render_with(
        x: &Executor,
        r: &dyn Fn(&super::Template, Quoting) -> Result<String, String>,
    ) -> Result<Rendered, String> {
        Ok(match x {
            Executor::Shell(t) => Rendered::Shell {
                command: r(t, Quoting::Shell)?,
            },
            Executor::Sql(t) => {
                let q = r(t, Quoting::Sql)?;
                Rendered::Sql {
                    query: q.clone(),
                    params: Vec::new(),
                    display: q,
                }
            }
            Executor::Redis { args, db } => Rendered::Redis {
                db: *db,
                args: args
                    .iter()
                    .map(|a| r(a, Quoting::Arg))
                    .collect::<Result<_, _>>()?,
            },
            Executor::Docker {
                action,
                command,
                tail,
            } => Rendered::Docker {
                action: *action,
                command: command.as_ref().map(|c| r(c, Quoting::Shell)).transpose()?,
                tail: *tail,
            },
            Executor::Http {
                method,
                url,
                expect_status,
            } => Rendered::Http {
                method: method.clone(),
                url: r(url, Quoting::Url)?,
                expect_status: *expect_status,
            },
        })
    }

    fn on_result(&mut self, seq: u64, result: ExecResult) {
        let Phase::Running { seq: want, purpose } = self.phase.clone() else {
            return;
        };
        if seq != want {
            return;
        }
        // Health answers carry facts, not output (and the end check has no step).
        if let Purpose::Health(usage) = purpose {
            return self.health_result(usage, result);
        }
        let step = self.step();
        let host = self.host_name();
        if !result.output.is_empty() || result.error.is_some() {
            let text = match &result.error {
                Some(e) if result.output.is_empty() => format!("error: {e}"),
                Some(e) => format!("{}\nerror: {e}", result.output),
                None => result.output.clone(),
            };
            self.emit(Event::Output {
                step: step.id.clone(),
                host: host.clone(),
                text,
            });
        }
        match purpose {
            Purpose::Guard(g) => {
                let guard = &step.guards[g];
                let (passed, why) = guard_passed(&guard.check, &result);
                let message = if passed {
                    why
                } else {
                    guard
                        .message
                        .clone()
                        .map_or(why.clone(), |m| format!("{m} ({why})"))
                };
                self.emit(Event::Guard {
                    step: step.id.clone(),
                    host,
                    guard: guard.check.describe(),
                    passed,
                    message: message.clone(),
                });
                if passed {
                    self.run_guard_or_main(g + 1);
                } else {
                    let msg = format!("guard refused: {message}");
                    self.unit_finished(StepStatus::Refused, msg.clone());
                    self.finish_step(StepStatus::Refused, msg);
                    self.apply_on_failure(&step);
                }
            }
            Purpose::Rollback => {
                let ok = result.error.is_none() && result.exit.is_none_or(|c| c == 0);
                let message = result.error.clone().unwrap_or_default();
                self.emit(Event::Rollback {
                    step: step.id.clone(),
                    host,
                    ok,
                    message,
                });
                if result.unknown {
                    return self
                        .outcome_unknown(&step, "its rollback's outcome is unknown".to_owned());
                }
                self.unit_finished(StepStatus::Failed, "failed; rollback ran".to_owned());
                self.finish_step(StepStatus::Failed, "failed; rollback ran".to_owned());
                self.apply_on_failure(&step);
            }
            Purpose::Step => self.unit_result(result),
            Purpose::Health(_) => {}
        }
    }

    fn request_health(&mut self, usage: HealthUse, hosts: Vec<String>, delay: Duration) {
        self.seq += 1;
        let seq = self.seq;
        let purpose = Purpose::Health(usage);
        self.phase = Phase::Running { seq, purpose };
        let step = self
            .rb
            .steps
            .get(self.cursor)
            .map_or_else(|| "end".to_owned(), |s| s.id.clone());
        self.out.push(Output::Exec(ExecRequest {
            seq,
            step,
            host: None,
            item: None,
            purpose,
            command: Rendered::Health { hosts },
            timeout: Duration::from_secs(15),
            changes: false,
            delay,
            attempt: self.attempt + 1,
            r#become: false,
        }));
    }

    fn health_result(&mut self, usage: HealthUse, result: ExecResult) {
        self.set_health(result.health.clone());
        match usage {
            HealthUse::When => {
                self.health_fresh = true;
                self.gate_step();
            }
            HealthUse::Until => {
                self.health_fresh = true;
                self.run_guard_or_main(self.step().guards.len());
            }
            HealthUse::Verify => self.verify_result(&result),
        }
    }

    /// Where the end check looks: the target, else every host the plan touches.
    fn verify_hosts(&self) -> Vec<String> {
        if self.plan.target.is_empty() {
            self.plan.all_hosts()
        } else {
            self.plan.target.clone()
        }
    }

    /// The runbook's triggers that still fire on the verified hosts (an unknown check counts:
    /// the fault cannot be said to be gone).
    fn still_failing(&self) -> Vec<HealthFact> {
        let hosts = self.verify_hosts();
        self.health
            .values()
            .filter(|f| hosts.contains(&f.host))
            .filter(|f| {
                self.rb.triggers.iter().any(|t| {
                    t.matches(&f.check)
                        && (f.state.at_least(t.state) || f.state == HealthState::Unknown)
                })
            })
            .cloned()
            .collect()
    }

    fn verify_result(&mut self, result: &ExecResult) {
        let failing = self.still_failing();
        let started = self.verify_started.unwrap_or(self.now);
        let out_of_time = self.now.saturating_sub(started) >= self.opts.verify_timeout;
        let probe_failed = result.error.clone();
        let ok_now = failing.is_empty() && probe_failed.is_none();
        if !ok_now {
            self.verify_ok_since = None;
        }
        // Ok once is not enough: a fault that comes back by itself (a leak reopening what was
        // killed, a crash-looping service) is ok for a moment. The triggers must still be ok
        // on a second probe VERIFY_SETTLE later.
        if ok_now {
            let since = *self.verify_ok_since.get_or_insert(self.now);
            let settled = self.now.saturating_sub(since);
            if settled < VERIFY_SETTLE {
                return self.request_health(
                    HealthUse::Verify,
                    self.verify_hosts(),
                    VERIFY_SETTLE.saturating_sub(settled),
                );
            }
        }
        if ok_now {
            let end = self.failing(Some(&self.verify_hosts()));
            self.emit(Event::Health {
                when: "end".to_owned(),
                checks: end,
            });
            return self.finish(
                Outcome::Succeeded,
                format!(
                    "all steps done; the checks that triggered {} are back to ok on {}",
                    self.rb.id,
                    self.verify_hosts().join(", ")
                ),
            );
        }
        if !out_of_time {
            return self.request_health(
                HealthUse::Verify,
                self.verify_hosts(),
                Duration::from_secs(3),
            );
        }
        let end = self.failing(Some(&self.verify_hosts()));
        self.emit(Event::Health {
            when: "end".to_owned(),
            checks: end,
        });
        let why = match probe_failed {
            Some(e) if failing.is_empty() => format!("health could not be probed: {e}"),
            _ => failing
                .iter()
                .map(|f| {
                    format!(
                        "{} {} on {} ({})",
                        f.check,
                        f.state.as_str(),
                        f.host,
                        f.reason
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        self.finish(
            Outcome::NotResolved,
            format!(
                "every step ran, but the fault is still there after {}: {why}",
                humantime::format_duration(self.opts.verify_timeout)
            ),
        );
    }

    /// A changing unit may have run and nobody knows what it did: stop and ask. Never a
    /// retry, never a rollback, without a person.
    fn outcome_unknown(&mut self, step: &Step, why: String) {
        let key = self.units[self.unit].key();
        let msg = format!(
            "step `{}` on {key}: {why}; it may or may not have changed the host",
            step.id
        );
        self.unit_finished(StepStatus::Unknown, msg.clone());
        if self.opts.approve == ApprovePolicy::Ask {
            return self.await_decision(DecisionKind::ResolveUnknown, Some(msg));
        }
        let msg = format!(
            "{msg}. It needs a decision: check the host, then resume with --resolve verify|retry|skip"
        );
        self.finish_step(StepStatus::Unknown, msg.clone());
        self.finish(Outcome::NeedsApproval, msg);
    }

    fn unit_result(&mut self, result: ExecResult) {
        let step = self.step();
        if result.unknown && step.changes() {
            let why = result
                .error
                .clone()
                .unwrap_or_else(|| "its outcome is unknown".to_owned());
            return self.outcome_unknown(&step, why);
        }
        match self.judge(&step, &result) {
            Ok(()) => {
                self.unit_finished(StepStatus::Succeeded, String::new());
                self.unit += 1;
                self.begin_unit();
            }
            Err(msg) => {
                let host = self.host_name();
                // A wait step keeps polling through errors too: a server coming back refuses
                // connections until it is up, which is exactly what is being waited for.
                let waiting = step.kind == StepKind::Wait
                    && self.now.saturating_sub(self.step_started) + step.interval <= step.timeout;
                if waiting || self.attempt < step.retries {
                    if waiting {
                        self.attempt = self.attempt.max(1);
                    } else {
                        self.attempt += 1;
                    }
                    self.emit(Event::Attempt {
                        step: step.id.clone(),
                        host,
                        attempt: self.attempt,
                        message: msg,
                    });
                    // Every attempt passes the guards again.
                    self.run_guard_or_main(0);
                    return;
                }
                let msg = if step.kind == StepKind::Wait {
                    format!(
                        "{msg} (gave up after {})",
                        humantime::format_duration(step.timeout)
                    )
                } else {
                    msg
                };
                if step.changes()
                    && let Some(rb) = &step.rollback
                {
                    let unit = self.units[self.unit].clone();
                    match self.render(rb, &unit) {
                        Ok(command) => {
                            self.emit(Event::Note {
                                step: Some(step.id.clone()),
                                text: format!("step failed: {msg}; running rollback"),
                            });
                            self.request(
                                &step,
                                unit.host,
                                unit.item,
                                Purpose::Rollback,
                                command,
                                true,
                            );
                            return;
                        }
                        Err(var) => {
                            self.emit(Event::Note {
                                step: Some(step.id.clone()),
                                text: format!(
                                    "step failed: {msg}; its rollback cannot run: variable `{var}` is not defined"
                                ),
                            });
                        }
                    }
                }
                self.unit_finished(StepStatus::Failed, msg.clone());
                self.step_failed(msg);
            }
        }
    }

    fn step_failed(&mut self, msg: String) {
        let step = self.step();
        // A person decides after a failure, unless the runbook already did (`on_failure =
        // "continue"` / `"goto:…"`: a failure there is an answer, e.g. "Redis is down").
        if self.opts.approve == ApprovePolicy::Ask && matches!(step.on_failure, OnFailure::Abort) {
            self.emit(Event::Note {
                step: Some(step.id.clone()),
                text: format!("failed: {msg}"),
            });
            return self.await_decision(DecisionKind::Failed, Some(msg));
        }
        self.finish_step(StepStatus::Failed, msg);
        self.apply_on_failure(&step);
    }

    fn apply_on_failure(&mut self, step: &Step) {
        match &step.on_failure {
            OnFailure::Abort => self.finish(
                Outcome::Failed,
                format!("step `{}` failed (on_failure = abort)", step.id),
            ),
            OnFailure::Continue => self.advance(),
            OnFailure::Goto(id) => match self.rb.step_index(id) {
                Some(i) => {
                    self.cursor = i;
                    self.begin_step();
                }
                None => self.finish(Outcome::Failed, format!("goto unknown step `{id}`")),
            },
        }
    }

    /// Captures, then checks the expectation. `Err` says why the attempt failed.
    fn judge(&mut self, step: &Step, r: &ExecResult) -> Result<(), String> {
        if let Some(e) = &r.error {
            return Err(e.clone());
        }
        if let Some(c) = &step.capture {
            let value = match &c.source {
                CaptureSource::Regex(re) => {
                    let mut found = Vec::new();
                    for line in r.output.lines() {
                        if let Some(m) = re.captures(line) {
                            let g = m.get(1).or_else(|| m.get(0)).map_or("", |g| g.as_str());
                            found.push(g.to_owned());
                            if !c.list {
                                break;
                            }
                        }
                    }
                    if c.list {
                        Some(Value::List(found))
                    } else {
                        found.into_iter().next().map(Value::Str)
                    }
                }
                CaptureSource::Column(col) => {
                    let vals: Vec<String> = r
                        .rows
                        .iter()
                        .filter_map(|row| row.get(col).cloned())
                        .collect();
                    if c.list {
                        Some(Value::List(vals))
                    } else {
                        vals.into_iter().next().map(Value::Str)
                    }
                }
            };
            match value {
                Some(v) => {
                    // Steps over several hosts accumulate lists.
                    let v = match (self.vars.get(&c.var), &v, self.unit > 0) {
                        (Some(Value::List(prev)), Value::List(new), true) => {
                            Value::List(prev.iter().chain(new).cloned().collect())
                        }
                        _ => v,
                    };
                    self.vars.insert(c.var.clone(), v.clone());
                    self.emit(Event::Captured {
                        step: step.id.clone(),
                        var: c.var.clone(),
                        value: v,
                    });
                }
                None => {
                    self.vars.remove(&c.var);
                    if step.kind != StepKind::Wait {
                        return Err(format!(
                            "capture `{}`: nothing in the output matched",
                            c.var
                        ));
                    }
                }
            }
        }
        if step.kind == StepKind::Wait
            && let Some((src, cond)) = &step.until
        {
            let view = self.health_view(self.host_name().as_deref());
            return match cond.eval(&self.vars, &view) {
                Ok(true) => Ok(()),
                // Say what was seen, not only what was wanted: `used_pct_after = 93`.
                Ok(false) => {
                    let seen: Vec<String> = cond
                        .idents()
                        .iter()
                        .filter_map(|i| {
                            let v = match i.strip_prefix("health.") {
                                Some(check) => view.get(check).map(|s| s.as_str().to_owned()),
                                None => self.vars.get(i).map(Value::as_text),
                            }?;
                            Some(format!("{i} = {v}"))
                        })
                        .collect();
                    Err(if seen.is_empty() {
                        format!("`{src}` does not hold yet")
                    } else {
                        format!("`{src}` does not hold yet: {}", seen.join(", "))
                    })
                }
                Err(e) => Err(format!("`{src}`: {e}")),
            };
        }
        match &step.expect {
            Some(e) => {
                let (ok, why) = expect_holds(&e.check, r, &self.vars);
                if ok {
                    Ok(())
                } else {
                    Err(e
                        .message
                        .clone()
                        .map_or(why.clone(), |m| format!("{m} ({why})")))
                }
            }
            None => default_success(step.exec.as_ref(), r),
        }
    }

    fn on_decision(&mut self, d: Decision) {
        if let Decision::AddNote(text) = &d {
            let step = self.rb.steps.get(self.cursor).map(|s| s.id.clone());
            self.emit(Event::Note {
                step,
                text: text.clone(),
            });
            return;
        }
        if matches!(self.phase, Phase::Awaiting(_)) {
            let by = self.opts.operator.clone();
            self.decide(d, &by);
        }
    }

    fn decide(&mut self, d: Decision, by: &str) {
        let Phase::Awaiting(kind) = self.phase.clone() else {
            return;
        };
        let step = self.step();
        let host = self.host_name();
        // A typed confirmation must match; anything else keeps waiting.
        if let DecisionKind::TypedConfirm { expected } = &kind
            && matches!(d, Decision::TypedConfirm(_) | Decision::Confirm)
        {
            let typed = match &d {
                Decision::TypedConfirm(t) => t.trim(),
                _ => "",
            };
            if typed != expected {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: format!(
                        "typed confirmation {typed:?} does not match {expected:?}; not run"
                    ),
                });
                return self.await_decision(kind, None);
            }
        }
        // An input: it must match its pattern; the value is recorded (masked if secret).
        if let (DecisionKind::Input { name, .. }, Decision::SetInput { name: n, value }) =
            (&kind, &d)
            && n == name
        {
            if let Some(msg) = self.invalid_input(name, value) {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: msg,
                });
                return self.await_decision(kind, None);
            }
            let (name, value) = (name.clone(), value.clone());
            let shown = if self.rb.inputs.iter().any(|i| i.name == name && i.secret) {
                crate::secret::MASK.to_owned()
            } else {
                value.clone()
            };
            self.emit(Event::Decided {
                step: step.id.clone(),
                host,
                decision: Decision::SetInput {
                    name: name.clone(),
                    value: shown,
                },
                by: by.to_owned(),
                covers: Vec::new(),
            });
            self.set_input(&step.id, &name, value, by, None);
            return self.gate_step();
        }
        if let (
            DecisionKind::Failed | DecisionKind::NothingToDo { .. },
            Decision::ChangeInput { name, value },
        ) = (&kind, &d)
        {
            if let Some(msg) = self.invalid_input(name, value) {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: msg,
                });
                return self.await_decision(kind, None);
            }
            let Some(back) = self.first_reader(name) else {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: format!("no step reads `{name}`; still waiting"),
                });
                return self.await_decision(kind, None);
            };
            let (name, value) = (name.clone(), value.clone());
            let shown = if self.rb.inputs.iter().any(|i| i.name == name && i.secret) {
                crate::secret::MASK.to_owned()
            } else {
                value.clone()
            };
            self.emit(Event::Decided {
                step: step.id.clone(),
                host,
                decision: Decision::ChangeInput {
                    name: name.clone(),
                    value: shown,
                },
                by: by.to_owned(),
                covers: Vec::new(),
            });
            self.set_input(&step.id, &name, value, by, None);
            self.finish_step(
                StepStatus::Skipped,
                format!(
                    "{name} changed by {by}: going back to step `{}`",
                    self.rb.steps[back].id
                ),
            );
            self.cursor = back;
            return self.begin_step();
        }
        if let (
            DecisionKind::SecondPerson { requested_by },
            Decision::SecondApproval { by: approver },
        ) = (&kind, &d)
        {
            let account = |s: &str| s.rsplit_once('@').map_or(s, |(a, _)| a).to_owned();
            if account(approver) == account(requested_by) {
                self.emit(Event::Note {
                    step: Some(step.id.clone()),
                    text: format!(
                        "{approver} asked for this step: a second person must approve it; still waiting"
                    ),
                });
                return self.await_decision(kind, None);
            }
            let covers = self.covers(&kind);
            self.emit(Event::Decided {
                step: step.id.clone(),
                host,
                decision: d.clone(),
                by: approver.clone(),
                covers,
            });
            self.second_approved = true;
            return self.begin_unit();
        }
        let allowed = matches!(
            (&kind, &d),
            (_, Decision::Abort | Decision::Skip)
                | (DecisionKind::Confirm, Decision::Confirm)
                | (DecisionKind::TypedConfirm { .. }, Decision::TypedConfirm(_))
                | (
                    DecisionKind::MarkDone | DecisionKind::ResolveUnknown,
                    Decision::MarkDone
                )
                | (
                    DecisionKind::Failed | DecisionKind::ResolveUnknown,
                    Decision::Retry
                )
        );
        if !allowed {
            self.emit(Event::Note {
                step: Some(step.id.clone()),
                text: format!("{d:?} does not answer {kind:?}; still waiting"),
            });
            return self.await_decision(kind, None);
        }
        let covers = self.covers(&kind);
        self.emit(Event::Decided {
            step: step.id.clone(),
            host,
            decision: d.clone(),
            by: by.to_owned(),
            covers,
        });
        match (d, &kind) {
            (Decision::Abort, _) => {
                self.finish_step(StepStatus::Skipped, format!("aborted by {by}"));
                self.finish(Outcome::Aborted, format!("aborted at step `{}`", step.id));
            }
            // An unknown unit: skip or verify that unit only; the step goes on.
            (Decision::Skip, DecisionKind::ResolveUnknown) => {
                self.unit_finished(StepStatus::Skipped, format!("skipped by {by}"));
                self.unit += 1;
                self.begin_unit();
            }
            (Decision::MarkDone, DecisionKind::ResolveUnknown) => {
                self.unit_finished(StepStatus::Succeeded, format!("outcome verified by {by}"));
                self.unit += 1;
                self.begin_unit();
            }
            // Runs it again through every gate: approval (unless given in this run) and
            // the guards.
            (Decision::Retry, DecisionKind::ResolveUnknown) => {
                if self.needs_approval(&step) && self.opts.approve == ApprovePolicy::Ask {
                    let kind = match step.confirm {
                        Some(Confirm::Typed) => DecisionKind::TypedConfirm {
                            expected: self.host_name().unwrap_or_else(|| step.id.clone()),
                        },
                        _ => DecisionKind::Confirm,
                    };
                    return self.await_decision(kind, None);
                }
                self.begin_unit_after_resolution();
            }
            (Decision::Skip, _) => {
                self.finish_step(StepStatus::Skipped, format!("skipped by {by}"));
                self.advance();
            }
            (Decision::MarkDone, _) => {
                self.finish_step(StepStatus::Succeeded, format!("marked done by {by}"));
                self.advance();
            }
            (Decision::Retry, _) => {
                self.attempt = 0;
                self.run_guard_or_main(0);
            }
            (Decision::Confirm | Decision::TypedConfirm(_), _) => {
                self.approval = match kind {
                    DecisionKind::TypedConfirm { .. } => Approval::Host(self.host_name()),
                    _ => Approval::Step,
                };
                self.begin_unit();
            }
            (
                Decision::AddNote(_)
                | Decision::SetInput { .. }
                | Decision::ChangeInput { .. }
                | Decision::SecondApproval { .. },
                _,
            ) => {}
        }
    }

    /// Why `value` cannot be input `name` (its pattern), if it cannot.
    fn invalid_input(&self, name: &str, value: &str) -> Option<String> {
        let input = self.rb.inputs.iter().find(|i| i.name == name)?;
        if input.required && value.is_empty() {
            return Some(format!("{name} is required: {}", input.description));
        }
        let p = input.pattern.as_ref()?;
        (!p.is_match(value)).then(|| format!("{name} must match {}; still waiting", p.as_str()))
    }

    /// After a headless `--resolve retry` or a console "retry" of an unknown unit: the unit
    /// goes through approval and guards like any other.
    fn begin_unit_after_resolution(&mut self) {
        self.unknown = None;
        self.begin_unit();
    }
}

/// True if the condition reads health (`health.…`).
fn names_health(cond: &Cond) -> bool {
    cond.idents().iter().any(|i| i.starts_with("health."))
}

/// `a` is a worse state than `b` (unknown ranks between ok and warning: worse than a good
/// sample, better than a bad one).
fn worse(a: HealthState, b: HealthState) -> bool {
    let rank = |s: HealthState| match s {
        HealthState::Ok => 0,
        HealthState::Unknown => 1,
        HealthState::Warning => 2,
        HealthState::Critical => 3,
        HealthState::Down => 4,
    };
    rank(a) > rank(b)
}

fn default_success(x: Option<&Executor>, r: &ExecResult) -> Result<(), String> {
    match x {
        Some(Executor::Http { expect_status, .. }) => {
            let s = r.status.unwrap_or(0);
            let ok = expect_status.map_or((200..300).contains(&s), |e| e == s);
            if ok {
                Ok(())
            } else {
                Err(format!("HTTP status {s}"))
            }
        }
        _ => match r.exit {
            None | Some(0) => Ok(()),
            Some(c) => Err(format!("exit status {c}")),
        },
    }
}

fn expect_holds(check: &ExpectCheck, r: &ExecResult, vars: &Vars) -> (bool, String) {
    match check {
        ExpectCheck::Exit(want) => {
            let got = r.exit.unwrap_or(0);
            (got == *want, format!("exit status {got}, expected {want}"))
        }
        ExpectCheck::Regex(re) => (
            re.is_match(&r.output),
            format!("output does not match /{}/", re.as_str()),
        ),
        ExpectCheck::NotRegex(re) => (
            !re.is_match(&r.output),
            format!("output matches /{}/", re.as_str()),
        ),
        ExpectCheck::Compare { var, op, value } => {
            let cond = super::cond::Cond::Cmp(
                super::cond::Operand::Ident(var.clone()),
                *op,
                super::cond::Operand::Num(*value),
            );
            let shown = super::template::lookup(vars, var)
                .map_or_else(|| "nothing".to_owned(), |v| v.as_text());
            match cond.eval(vars, &Health::new()) {
                Ok(true) => (true, String::new()),
                Ok(false) => (false, format!("{var} = {shown}, expected {op:?} {value}")),
                Err(e) => (false, e),
            }
        }
    }
}

fn guard_passed(check: &GuardCheck, r: &ExecResult) -> (bool, String) {
    if let Some(e) = &r.error {
        return (false, format!("could not check: {e}"));
    }
    match check {
        GuardCheck::Exec { expect, exec } => match expect {
            Some(e) => {
                let (ok, why) = expect_holds(&e.check, r, &Vars::new());
                (ok, if ok { "passed".to_owned() } else { why })
            }
            None => match default_success(Some(exec), r) {
                Ok(()) => (true, "passed".to_owned()),
                Err(e) => (false, e),
            },
        },
        // Built-in guards: the executor answers with exit 0 (holds) or 1 and an explanation.
        _ => (
            r.exit == Some(0),
            if r.output.is_empty() {
                format!("exit {:?}", r.exit)
            } else {
                r.output.trim().to_owned()
            },
        ),
    }
}
