//! What "read-only" means for diagnose, check and wait steps and for guards: an allowlist per
//! executor, never a denylist. Anything not known to leave the server as it was counts as a
//! change.
//!
//! - **SQL** and **Redis**: the protocol allowlists in [`crate::clients::read_only`].
//! - **Docker**: `logs` is read-only; `restart`/`stop`/`start` change; `exec` runs a shell
//!   command nobody can verify.
//! - **Shell** (and docker exec): cannot be verified. The runbook author may vouch for a step
//!   or guard with `read_only = true`; otherwise it counts as a change.
//! - **HTTP**: `GET` and `HEAD`.
//!
//! Template placeholders are values: `{{x}}` is one bound SQL parameter or one Redis argument.
//! `{{raw x}}` inserts text nobody can check, so a statement holding one is not read-only, and
//! neither is a Redis command whose name or subcommand comes from a variable.

use super::{DockerAction, Executor};
pub use crate::clients::read_only::{NotReadOnly, REDIS_READ_ONLY, SQL_FUNCTIONS, redis, sql};

/// What can be said about an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Known by the allowlist to change nothing.
    ReadOnly,
    /// A shell command (or docker exec): only its author can say.
    Unverifiable,
    /// Changes something, or is not known not to.
    Changes(NotReadOnly),
}

/// Classifies an executor. `vouched` is the runbook's `read_only = true`, which only counts
/// for commands nobody can verify (shell, docker exec).
pub fn executor(x: &Executor, vouched: bool) -> Verdict {
    // A vouch covers the command as written, not text inserted by `{{raw x}}` at run time.
    let unverifiable = |t: Option<&super::Template>| {
        if vouched && t.is_none_or(|t| t.vars().iter().all(|v| !v.raw)) {
            Verdict::ReadOnly
        } else {
            Verdict::Unverifiable
        }
    };
    match x {
        Executor::Shell(t) => unverifiable(Some(t)),
        Executor::Docker {
            action: DockerAction::Exec,
            command,
            ..
        } => unverifiable(command.as_ref()),
        Executor::Sql(t) => match sql(&t.source) {
            Ok(()) => Verdict::ReadOnly,
            Err(e) => Verdict::Changes(e),
        },
        Executor::Redis { args, .. } => {
            let args: Vec<&str> = args.iter().map(|a| a.source.as_str()).collect();
            match redis(&args) {
                Ok(()) => Verdict::ReadOnly,
                Err(e) => Verdict::Changes(e),
            }
        }
        Executor::Docker { action, .. } => match action {
            DockerAction::Logs => Verdict::ReadOnly,
            a => Verdict::Changes(NotReadOnly {
                offset: 0,
                reason: format!("docker {a:?}").to_lowercase(),
            }),
        },
        Executor::Http { method, .. } => {
            if method == "GET" || method == "HEAD" {
                Verdict::ReadOnly
            } else {
                Verdict::Changes(NotReadOnly {
                    offset: 0,
                    reason: format!("HTTP {method}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vouch_covers_shell_as_written_never_raw_text() {
        let shell = |src: &str| Executor::Shell(super::super::Template::parse(src).expect("t"));
        assert_eq!(
            executor(&shell("df -P {{m}}"), false),
            Verdict::Unverifiable
        );
        assert_eq!(executor(&shell("df -P {{m}}"), true), Verdict::ReadOnly);
        assert_eq!(
            executor(&shell("df -P {{raw m}}"), true),
            Verdict::Unverifiable
        );
    }
}
