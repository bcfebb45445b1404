//! The runbook browser: fuzzy search, filters (tier, severity), suggested first.

use crate::runbook::{Runbook, Severity};

#[derive(Debug, Clone, Default)]
pub struct BrowserState {
    pub query: String,
    /// Typing into the search box.
    pub searching: bool,
    pub tier: Option<String>,
    pub severity: Option<Severity>,
    pub suggested_first: bool,
    /// Index into the visible list.
    pub selected: usize,
    pub scroll: u16,
}

/// Subsequence match of `query` in `text` (case-insensitive); higher is better, `None` when
/// not every query character appears in order. Consecutive and word-start hits score more.
pub fn fuzzy_score(query: &str, text: &str) -> Option<i32> {
    if query.is_empty() {
        return Some(0);
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let mut score = 0;
    let mut ti = 0;
    let mut last: Option<usize> = None;
    for qc in query.to_lowercase().chars().filter(|c| !c.is_whitespace()) {
        let found = (ti..t.len()).find(|&i| t[i] == qc)?;
        score += 1;
        if last.is_some_and(|l| l + 1 == found) {
            score += 3;
        }
        if found == 0 || !t[found - 1].is_alphanumeric() {
            score += 2;
        }
        last = Some(found);
        ti = found + 1;
    }
    Some(score - i32::try_from(t.len() / 20).unwrap_or(0))
}

/// The runbooks to list, as indexes into `runbooks`, in display order. `suggested` holds the
/// indexes health currently suggests, most severe first.
pub fn visible(
    state: &BrowserState,
    runbooks: &[std::sync::Arc<Runbook>],
    suggested: &[usize],
) -> Vec<usize> {
    let mut scored: Vec<(usize, i32)> = runbooks
        .iter()
        .enumerate()
        .filter(|(_, rb)| {
            state
                .tier
                .as_ref()
                .is_none_or(|t| rb.tiers.iter().any(|x| x == t))
        })
        .filter(|(_, rb)| state.severity.is_none_or(|s| rb.severity == s))
        .filter_map(|(i, rb)| {
            let hay = format!(
                "{} {} {} {}",
                rb.id,
                rb.title,
                rb.tags.join(" "),
                rb.summary
            );
            fuzzy_score(&state.query, &hay).map(|s| (i, s))
        })
        .collect();
    scored.sort_by(|a, b| {
        let sa = suggested.iter().position(|x| *x == a.0);
        let sb = suggested.iter().position(|x| *x == b.0);
        let by_suggestion = if state.suggested_first {
            match (sa, sb) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        } else {
            std::cmp::Ordering::Equal
        };
        by_suggestion
            .then(b.1.cmp(&a.1))
            .then_with(|| runbooks[a.0].id.cmp(&runbooks[b.0].id))
    });
    scored.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::fuzzy_score;

    #[test]
    fn fuzzy_prefers_word_starts_and_runs() {
        assert!(fuzzy_score("dbconn", "db-connection-exhaustion").is_some());
        assert!(fuzzy_score("xyz", "db-connection-exhaustion").is_none());
        let a = fuzzy_score("redis", "redis-connection-failure").unwrap_or(0);
        let b = fuzzy_score("redis", "rolled every disk status").unwrap_or(0);
        assert!(a > b, "{a} {b}");
    }
}
