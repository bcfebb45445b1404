//! The headless front end: text and JSON reporters and exit codes. No terminal crates here.

pub mod exec;
pub mod health;
pub mod inventory;
pub mod lab;
pub mod progress;
pub mod run;
pub mod table;
pub mod team;

/// Exit statuses shared by the headless commands.
pub mod exit {
    /// Everything succeeded.
    pub const OK: i32 = 0;
    /// At least one host or step failed.
    pub const FAILED: i32 = 1;
    /// Usage or configuration error (bad flags, inventory, selector).
    pub const CONFIG: i32 = 2;
    /// `health`: the worst check is a warning.
    pub const WARNING: i32 = 3;
    /// `health`: the worst check is unknown (no fresh sample, probe cannot run).
    pub const UNKNOWN: i32 = 4;
    /// `health`: the worst check is critical.
    pub const CRITICAL: i32 = 5;
    /// `health`: a host or service does not answer at all.
    pub const DOWN: i32 = 6;
    /// `opsdeck run`: a step needed approval (or a decision) that was not given; nothing of
    /// that step ran.
    pub const NEEDS_APPROVAL: i32 = 10;
    /// `opsdeck run`: aborted by the operator.
    pub const ABORTED: i32 = 11;
    /// `opsdeck run`: refused: a changing step in read-only mode, or the runbook already
    /// runs on this target (the holder is named).
    pub const REFUSED: i32 = 12;
    /// `opsdeck run`: every step ran, but the checks that triggered the runbook are still
    /// failing on the target: the fault is not resolved.
    pub const NOT_RESOLVED: i32 = 13;
}
