//! The event feed: what changed, when and why — check state changes with their cause, runs
//! started and finished, drills. Built in `update` when probe results are folded in (and
//! when the clock turns a sample stale), never while drawing.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

use crate::probes::check::{Check, State};

/// Entries kept; older ones are dropped (the journal keeps runs for good).
pub const CAPACITY: usize = 1000;

/// One line of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub at: DateTime<Utc>,
    pub kind: FeedKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FeedKind {
    /// A check changed state. `from` is `None` for a check seen failing on its first sample.
    Check {
        host: String,
        check: String,
        /// Which service instance (`127.0.0.1:3306`, a URL); empty for host checks.
        instance: String,
        from: Option<State>,
        to: State,
        /// The check's reason at the change: what a person reads to act.
        cause: String,
    },
    /// A run started (in this console) or was found in the journal.
    RunStarted {
        run: String,
        runbook: String,
        /// Who started it (the journal's operator), when known.
        by: Option<String>,
        drill: Option<String>,
    },
    RunFinished {
        run: String,
        runbook: String,
        /// The engine's outcome as the journal writes it (`succeeded`, `not_resolved`, ...).
        outcome: String,
        message: String,
    },
    /// A learn-mode drill: injected, confirmed on the servers, resolved.
    Drill { drill: String, text: String },
}

impl FeedEntry {
    /// The state whose colour the entry carries: a check's new state, a run's outcome.
    pub fn state(&self) -> Option<State> {
        match &self.kind {
            FeedKind::Check { to, .. } => Some(*to),
            FeedKind::RunFinished { outcome, .. } => Some(outcome_state(outcome)),
            FeedKind::RunStarted { .. } | FeedKind::Drill { .. } => None,
        }
    }

    /// The entry as one line of text (without its time), as the feed draws it.
    pub fn text(&self) -> String {
        match &self.kind {
            FeedKind::Check {
                host,
                check,
                from,
                to,
                cause,
                ..
            } => {
                let from = from.map_or_else(|| "new".to_owned(), |f| f.as_str().to_owned());
                format!("{host} {check} {from} → {to}: {cause}")
            }
            FeedKind::RunStarted {
                runbook, by, drill, ..
            } => {
                let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
                let drill = drill
                    .as_ref()
                    .map(|d| format!(" (drill {d})"))
                    .unwrap_or_default();
                format!("run {runbook} started{by}{drill}")
            }
            FeedKind::RunFinished {
                runbook,
                outcome,
                message,
                ..
            } => {
                let outcome = outcome.replace('_', " ");
                if message.is_empty() {
                    format!("run {runbook} {outcome}")
                } else {
                    format!("run {runbook} {outcome}: {message}")
                }
            }
            FeedKind::Drill { drill, text } => format!("drill {drill}: {text}"),
        }
    }
}

/// How a run's outcome reads on the dashboard: succeeded is ok, an abort or a stop for a
/// person a warning, anything that leaves the fault in place critical.
pub fn outcome_state(outcome: &str) -> State {
    match outcome {
        "succeeded" => State::Ok,
        "aborted" | "needs_approval" | "refused" => State::Warning,
        _ => State::Critical,
    }
}

#[derive(Debug, Clone, Default)]
pub struct Feed {
    /// Oldest first, kept in time order.
    entries: VecDeque<FeedEntry>,
    /// The last state seen of every check (`host␟id␟instance`), kept when a check disappears
    /// (its target went down) so its return is told against what it was.
    last: HashMap<String, State>,
    /// Runs already in the feed (so the journal listing does not repeat them).
    runs: HashSet<String>,
    /// Reused key buffer: observing a steady fleet allocates nothing.
    key: String,
}

impl Feed {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Newest first.
    pub fn newest(&self) -> impl Iterator<Item = &FeedEntry> {
        self.entries.iter().rev()
    }

    /// Adds an entry in time order (entries from the journal may be older than the latest).
    pub fn push(&mut self, entry: FeedEntry) {
        let pos = self.entries.partition_point(|e| e.at <= entry.at);
        self.entries.insert(pos, entry);
        while self.entries.len() > CAPACITY {
            self.entries.pop_front();
        }
    }

    /// Compares `checks` with the states last seen and adds an entry for every change; returns
    /// how many were added. A check's first sample adds one only when it is not ok (nothing
    /// to tell about a healthy start); a target never heard from (no sample time) is not a
    /// change at all. `wall` is the time of the observation: a change with a newer sample
    /// time is dated by its sample, a change made by the clock (staleness) by `wall`.
    pub fn observe(&mut self, checks: &[Check], wall: DateTime<Utc>) -> usize {
        let mut added = Vec::new();
        for c in checks {
            if c.at.is_none() && c.state == State::Unknown {
                continue;
            }
            self.key.clear();
            self.key.push_str(&c.host);
            self.key.push('\u{1f}');
            self.key.push_str(&c.id);
            self.key.push('\u{1f}');
            self.key.push_str(&c.instance);
            let before = self.last.get(self.key.as_str()).copied();
            if before == Some(c.state) {
                continue;
            }
            match self.last.get_mut(self.key.as_str()) {
                Some(v) => *v = c.state,
                None => {
                    self.last.insert(self.key.clone(), c.state);
                }
            }
            if before.is_none() && c.state == State::Ok {
                continue;
            }
            added.push(FeedEntry {
                at: c.at.map_or(wall, |a| a.max(wall)),
                kind: FeedKind::Check {
                    host: c.host.clone(),
                    check: c.id.clone(),
                    instance: c.instance.clone(),
                    from: before,
                    to: c.state,
                    cause: c.reason.clone(),
                },
            });
        }
        let n = added.len();
        for e in added {
            self.push(e);
        }
        n
    }

    /// A run started in this console.
    pub fn run_started(
        &mut self,
        at: DateTime<Utc>,
        run: &str,
        runbook: &str,
        by: Option<String>,
        drill: Option<String>,
    ) {
        self.runs.insert(run.to_owned());
        self.push(FeedEntry {
            at,
            kind: FeedKind::RunStarted {
                run: run.to_owned(),
                runbook: runbook.to_owned(),
                by,
                drill,
            },
        });
    }

    pub fn run_finished(
        &mut self,
        at: DateTime<Utc>,
        run: &str,
        runbook: &str,
        outcome: &str,
        message: &str,
    ) {
        self.runs.insert(run.to_owned());
        self.push(FeedEntry {
            at,
            kind: FeedKind::RunFinished {
                run: run.to_owned(),
                runbook: runbook.to_owned(),
                outcome: outcome.to_owned(),
                message: message.to_owned(),
            },
        });
    }

    /// Runs found in the journal that the feed does not know yet and that started after
    /// `since`, one entry each at its start time (the listing has no end time): its outcome,
    /// or that it is unfinished.
    pub fn journal_runs(
        &mut self,
        runs: &[crate::runbook::journal::RunSummary],
        since: DateTime<Utc>,
    ) {
        for r in runs {
            if self.runs.contains(&r.run) {
                continue;
            }
            let Ok(at) = DateTime::parse_from_rfc3339(&r.started) else {
                continue;
            };
            let at = at.with_timezone(&Utc);
            if at < since {
                continue;
            }
            let by = if r.operator.is_empty() {
                String::new()
            } else {
                format!(" by {}", r.operator)
            };
            match &r.outcome {
                Some(outcome) => self.run_finished(
                    at,
                    &r.run,
                    &r.runbook,
                    outcome,
                    &format!("started here{by} (journal)"),
                ),
                None => self.run_started(
                    at,
                    &r.run,
                    &r.runbook,
                    Some(format!(
                        "{} — unfinished: resume it from the journal",
                        r.operator
                    )),
                    None,
                ),
            }
        }
    }

    pub fn drill(&mut self, at: DateTime<Utc>, drill: &str, text: impl Into<String>) {
        self.push(FeedEntry {
            at,
            kind: FeedKind::Drill {
                drill: drill.to_owned(),
                text: text.into(),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn check(host: &str, id: &str, state: State, reason: &str, at: u32) -> Check {
        Check {
            host: host.to_owned(),
            tier: "db".to_owned(),
            id: id.to_owned(),
            instance: String::new(),
            state,
            reason: reason.to_owned(),
            value: None,
            at: Some(t(at)),
        }
    }

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 3, s)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn a_change_is_told_once_with_its_cause_and_a_healthy_start_is_quiet() {
        let mut f = Feed::default();
        assert_eq!(
            f.observe(
                &[check("db1", "mysql.connections", State::Ok, "5/30", 0)],
                t(0)
            ),
            0
        );
        let critical = check(
            "db1",
            "mysql.connections",
            State::Critical,
            "29/30 used",
            41,
        );
        assert_eq!(f.observe(std::slice::from_ref(&critical), t(40)), 1);
        assert_eq!(f.observe(&[critical], t(42)), 0, "unchanged adds nothing");
        let e = f.newest().next().expect("entry");
        assert_eq!(e.at, t(41), "dated by the sample");
        assert_eq!(e.text(), "db1 mysql.connections ok → critical: 29/30 used");
    }

    #[test]
    fn a_check_that_disappears_and_returns_is_told_against_its_last_state() {
        let mut f = Feed::default();
        f.observe(
            &[check("c1", "redis.memory", State::Warning, "90 %", 0)],
            t(0),
        );
        f.observe(
            &[check("c1", "redis.ping", State::Down, "refused", 5)],
            t(5),
        );
        f.observe(&[check("c1", "redis.memory", State::Ok, "10 %", 9)], t(9));
        let texts: Vec<String> = f.newest().map(FeedEntry::text).collect();
        assert_eq!(
            texts,
            [
                "c1 redis.memory warning → ok: 10 %",
                "c1 redis.ping new → down: refused",
                "c1 redis.memory new → warning: 90 %",
            ]
        );
    }

    #[test]
    fn journal_runs_are_placed_in_time_and_not_repeated() {
        let mut f = Feed::default();
        f.observe(
            &[check("db1", "mysql.up", State::Down, "refused", 30)],
            t(30),
        );
        let run = crate::runbook::journal::RunSummary {
            run: "r1".to_owned(),
            runbook: "db-failover".to_owned(),
            operator: "oncall@box".to_owned(),
            started: "2026-11-22T12:03:10Z".to_owned(),
            outcome: Some("succeeded".to_owned()),
        };
        f.journal_runs(std::slice::from_ref(&run), t(0));
        f.journal_runs(std::slice::from_ref(&run), t(0));
        let mut old = Feed::default();
        old.journal_runs(&[run], t(11));
        assert!(
            old.is_empty(),
            "runs before `since` are left to the journal view"
        );
        assert_eq!(f.len(), 2);
        let last = f.newest().last().expect("oldest");
        assert_eq!(
            last.text(),
            "run db-failover succeeded: started here by oncall@box (journal)"
        );
        assert_eq!(
            f.newest().next().map(FeedEntry::state),
            Some(Some(State::Down))
        );
    }
}
