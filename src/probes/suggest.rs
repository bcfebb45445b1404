//! Symptoms to runbooks, as data: a runbook declares the health conditions it treats as
//! [`Trigger`]s (in its TOML file), and [`suggest`] returns the runbooks whose triggers match
//! the current checks, most severe first.
//!
//! ```toml
//! [[triggers]]
//! check = "mysql.connections"
//! state = "critical"
//!
//! [[triggers]]
//! check = "disk.*"      # `*` matches any run of characters
//! ```

use serde::Deserialize;

use super::check::{Check, State};

fn default_state() -> State {
    State::Warning
}

/// One condition: a check id pattern and the least severe state that counts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Check id, exact or with `*` wildcards (`disk.*`, `mysql.replication*`).
    pub check: String,
    /// Minimum state (default `warning`); `ok` is not allowed.
    #[serde(default = "default_state")]
    pub state: State,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "trigger check pattern is empty\n  hint: write a check id such as \"mysql.connections\" or \"disk.*\""
    )]
    Empty,
    #[error(
        "trigger {check:?} has state \"ok\": it would match a healthy stack\n  hint: use warning, unknown, critical or down"
    )]
    OkState { check: String },
}

impl Trigger {
    pub fn validate(&self) -> Result<(), TriggerError> {
        if self.check.trim().is_empty() {
            return Err(TriggerError::Empty);
        }
        if self.state == State::Ok {
            return Err(TriggerError::OkState {
                check: self.check.clone(),
            });
        }
        Ok(())
    }

    pub fn matches(&self, c: &Check) -> bool {
        c.state >= self.state && glob(&self.check, &c.id)
    }
}

/// `*` matches any run of characters (including none); everything else literally.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A runbook's declared triggers.
#[derive(Debug, Clone)]
pub struct RunbookTriggers {
    pub runbook: String,
    pub triggers: Vec<Trigger>,
}

/// A runbook that applies now, with the checks that made it apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub runbook: String,
    /// The worst state among `checks`.
    pub severity: State,
    pub checks: Vec<Check>,
}

/// Runbooks whose triggers match `checks`: most severe first, then the one matching more
/// checks, then by id.
pub fn suggest(checks: &[Check], runbooks: &[RunbookTriggers]) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = runbooks
        .iter()
        .filter_map(|rb| {
            let matched: Vec<Check> = checks
                .iter()
                .filter(|c| rb.triggers.iter().any(|t| t.matches(c)))
                .cloned()
                .collect();
            let severity = matched.iter().map(|c| c.state).max()?;
            Some(Suggestion {
                runbook: rb.runbook.clone(),
                severity,
                checks: matched,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.checks.len().cmp(&a.checks.len()))
            .then(a.runbook.cmp(&b.runbook))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str, id: &str, state: State) -> Check {
        Check {
            host: host.to_owned(),
            tier: "t".to_owned(),
            id: id.to_owned(),
            instance: String::new(),
            state,
            reason: String::new(),
            value: None,
            at: None,
        }
    }

    fn rb(id: &str, toml_text: &str) -> RunbookTriggers {
        #[derive(Deserialize)]
        struct F {
            triggers: Vec<Trigger>,
        }
        let f: F = toml::from_str(toml_text).expect("triggers parse");
        for t in &f.triggers {
            t.validate().expect("valid");
        }
        RunbookTriggers {
            runbook: id.to_owned(),
            triggers: f.triggers,
        }
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("disk.*", "disk./var/log"));
        assert!(glob("mysql.replication*", "mysql.replication_lag"));
        assert!(glob("mysql.replication*", "mysql.replication"));
        assert!(glob("*.ping", "redis.ping"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(!glob("disk.*", "inodes./"));
        assert!(glob("host.cpu", "host.cpu"));
        assert!(!glob("host.cpu", "host.cpu2"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn suggestions_most_severe_first_with_their_checks() {
        let runbooks = [
            rb("disk-full", "[[triggers]]\ncheck = \"disk.*\"\n"),
            rb(
                "db-connections",
                "[[triggers]]\ncheck = \"mysql.connections\"\nstate = \"critical\"\n",
            ),
            rb("high-cpu", "[[triggers]]\ncheck = \"host.cpu\"\n"),
            rb(
                "redis-down",
                "[[triggers]]\ncheck = \"redis.ping\"\nstate = \"down\"\n",
            ),
        ];
        let checks = [
            check("web-1", "disk./", State::Warning),
            check("db-1", "disk./var/lib/mysql", State::Warning),
            check("db-1", "mysql.connections", State::Critical),
            check("app-1", "host.cpu", State::Ok),
            check("cache-1", "redis.ping", State::Critical),
        ];
        let s = suggest(&checks, &runbooks);
        let ids: Vec<&str> = s.iter().map(|s| s.runbook.as_str()).collect();
        assert_eq!(ids, vec!["db-connections", "disk-full"]);
        assert_eq!(s[0].severity, State::Critical);
        assert_eq!(s[1].checks.len(), 2);
        assert!(suggest(&[], &runbooks).is_empty());
    }

    #[test]
    fn triggers_are_validated_and_strict() {
        let t = Trigger {
            check: "host.cpu".to_owned(),
            state: State::Ok,
        };
        assert!(
            t.validate()
                .expect_err("ok state")
                .to_string()
                .contains("use warning")
        );
        let e = toml::from_str::<Trigger>("check = \"x\"\nstat = \"down\"\n");
        assert!(e.is_err(), "unknown fields are errors");
        let e = toml::from_str::<Trigger>("check = \"x\"\nstate = \"bad\"\n");
        assert!(e.is_err());
        let t: Trigger = toml::from_str("check = \"x\"\n").expect("default state");
        assert_eq!(t.state, State::Warning);
    }
}
