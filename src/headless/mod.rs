//! The headless front end: text and JSON reporters and exit codes. No terminal crates here.

pub mod exec;
pub mod inventory;

/// Exit statuses shared by the headless commands.
pub mod exit {
    /// Everything succeeded.
    pub const OK: i32 = 0;
    /// At least one host or step failed.
    pub const FAILED: i32 = 1;
    /// Usage or configuration error (bad flags, inventory, selector).
    pub const CONFIG: i32 = 2;
}
