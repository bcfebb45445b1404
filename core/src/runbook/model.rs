//! A runbook file as written: serde structs that mirror the TOML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error with a position instead of a
//! silently ignored setting. Values the validator must point at are `Spanned`. The checked,
//! resolved form every other part uses is [`super::Runbook`].

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookFile {
    pub id: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub severity: Severity,
    /// Recovery time objective, e.g. `"5m"`: the run's clock starts with the run.
    pub rto: Option<Spanned<String>>,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a person notices (prose, one item per symptom).
    #[serde(default)]
    pub symptoms: Vec<String>,
    /// Health conditions this runbook treats; the health engine suggests it when one holds.
    #[serde(default)]
    pub triggers: Vec<Spanned<TriggerDef>>,
    #[serde(default)]
    pub inputs: IndexMap<String, Spanned<InputDef>>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepDef>>,
    /// Names locked while a run is open, beside the hosts it changes (e.g. `db-topology`:
    /// two failover runbooks on different hosts of one cluster exclude each other).
    #[serde(default)]
    pub locks: Vec<String>,
    /// The lab drill this runbook treats (`opsdeck drill NAME`): learn mode and the drill
    /// tests pair them through it.
    pub drill: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// A health check id (`mysql.connections`) or a prefix pattern ending in `*` (`disk.*`).
    pub check: Spanned<String>,
    /// The least severe state that triggers: `warning`, `critical`, `down` (or `unknown`).
    pub state: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    pub default: Option<String>,
    /// A default computed from what the diagnosis found, when the input is first needed:
    /// `VAR`, `min(VAR)`, `max(VAR)`, `count(VAR)` or `percentile(VAR, P)` of a captured
    /// list. Falls back to `default` when the list is empty.
    pub default_from: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
    /// A regex the whole value must match.
    pub pattern: Option<Spanned<String>>,
    #[serde(default)]
    pub required: bool,
    /// A password or token: masked in every output, the journal header included.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Read-only; runs without asking.
    Diagnose,
    /// Changes something; asks first.
    Action,
    /// An instruction a person carries out and marks done.
    Manual,
    /// Repeats its executor until `until` holds, within `timeout`.
    Wait,
    /// Asserts an expectation: pass or fail with a message.
    Check,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Diagnose => "diagnose",
            StepKind::Action => "action",
            StepKind::Manual => "manual",
            StepKind::Wait => "wait",
            StepKind::Check => "check",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub id: Spanned<String>,
    pub title: String,
    pub kind: StepKind,
    pub target: Option<Spanned<TargetDef>>,

    // Exactly one executor (none for manual steps).
    pub shell: Option<Spanned<String>>,
    pub sql: Option<Spanned<String>>,
    pub redis: Option<Spanned<Vec<String>>>,
    pub docker: Option<Spanned<DockerActionDef>>,
    pub http: Option<Spanned<HttpActionDef>>,
    /// For a `redis` step: the database index the command runs in (`SELECT`ed first; default
    /// 0). Seed 000 keeps sessions in 0, the cache in 1 and the page cache in 2.
    pub db: Option<Spanned<u32>>,

    /// Per attempt, e.g. `"30s"`; for `wait` steps the deadline.
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: u32,
    /// Time budget for the whole step; running over is reported, not fatal.
    pub budget: Option<Spanned<String>>,
    /// `wait` steps: pause between attempts (default 2s).
    pub interval: Option<Spanned<String>>,
    /// Why this step exists, for learners.
    #[serde(default)]
    pub explain: String,
    pub expect: Option<Spanned<ExpectDef>>,
    pub capture: Option<Spanned<CaptureDef>>,
    /// A list variable: the step runs once per item, the item in `{{item}}`.
    pub foreach: Option<Spanned<String>>,
    /// Run only if this condition holds.
    pub when: Option<Spanned<String>>,
    /// `wait` steps: the condition to wait for.
    pub until: Option<Spanned<String>>,
    /// `abort` (default), `continue` or `goto:STEP`.
    pub on_failure: Option<Spanned<String>>,
    pub confirm: Option<Confirm>,
    /// `"second-person"`: besides the operator's confirmation, another account must approve
    /// (team mode, `opsdeck approve RUN STEP`).
    pub approval: Option<Spanned<String>>,
    /// `false`: run this step's shell commands as the login user even where the host
    /// escalates (`become = "sudo"` in the inventory). Default: escalate where the host does.
    pub r#become: Option<bool>,
    pub rollback: Option<Spanned<ExecDef>>,
    #[serde(default)]
    pub guards: Vec<Spanned<GuardDef>>,
    /// The author vouches that this diagnose/check/wait step's shell (or docker exec)
    /// command only reads. Without it such a step counts as a change: it needs approval and
    /// is refused under --read-only. SQL and Redis are judged by the allowlist instead.
    pub read_only: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDef {
    /// An inventory selector: `db:primary`, `cache`, `app1`, `all`, ...
    pub selector: String,
    #[serde(default)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// Exactly one host must match.
    One,
    /// The first matching host, in inventory order.
    #[default]
    First,
    /// Every matching host, one after the other.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confirm {
    /// Ask yes/no.
    Yes,
    /// The operator types the target host's name.
    Typed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerAction {
    Restart,
    Stop,
    Start,
    Logs,
    Exec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerActionDef {
    pub action: DockerAction,
    /// For `exec`: the shell command run in the container.
    pub command: Option<Spanned<String>>,
    /// For `logs`: how many lines (default 100).
    pub tail: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionDef {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    pub expect_status: Option<u16>,
}

fn default_method() -> String {
    "GET".to_owned()
}

/// An executor on its own (rollbacks and guards).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecDef {
    pub shell: Option<Spanned<String>>,
    pub sql: Option<Spanned<String>>,
    pub redis: Option<Spanned<Vec<String>>>,
    pub docker: Option<Spanned<DockerActionDef>>,
    pub http: Option<Spanned<HttpActionDef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDef {
    /// The command's exit status (shell, docker exec).
    pub exit: Option<i32>,
    /// The output must match.
    pub regex: Option<Spanned<String>>,
    /// The output must not match.
    pub not_regex: Option<Spanned<String>>,
    /// A numeric comparison on a captured variable: `capture`, `op`, `value`.
    pub capture: Option<Spanned<String>>,
    pub op: Option<Spanned<String>>,
    pub value: Option<f64>,
    /// Shown when the expectation fails.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureDef {
    pub var: Spanned<String>,
    /// First capture group (or the whole match) of the first matching line of output.
    pub regex: Option<Spanned<String>>,
    /// A column of an SQL result (first row, or every row with `list = true`).
    pub column: Option<String>,
    /// Collect every match / row instead of the first.
    #[serde(default)]
    pub list: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardDef {
    /// Where to check; default: the step's own target host.
    pub target: Option<Spanned<TargetDef>>,
    pub shell: Option<Spanned<String>>,
    pub sql: Option<Spanned<String>>,
    pub redis: Option<Spanned<Vec<String>>>,
    pub expect: Option<Spanned<ExpectDef>>,
    /// Built-in: the replica's SQL thread is running (`SHOW SLAVE STATUS`).
    pub replica_sql_running: Option<bool>,
    /// Built-in: the replica lags less than this (`Seconds_Behind_Master`).
    pub replica_lag_below: Option<Spanned<String>>,
    /// Built-in: Sentinel `CKQUORUM` succeeds (target: a sentinel host).
    pub sentinel_ckquorum: Option<bool>,
    /// Shown when the guard refuses.
    pub message: Option<String>,
    /// The author vouches that this shell guard only reads (see `StepDef::read_only`).
    pub read_only: Option<Spanned<bool>>,
}
