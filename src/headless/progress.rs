//! A progress line on stderr for the commands that wait on many hosts (`exec`, `health`,
//! `lab up`): one line rewritten in place, shown only when stderr is a terminal, so pipes,
//! logs and CI output never see it; cleared before the result is printed.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// How often the line is redrawn at most (the last state is always drawn).
const REDRAW: Duration = Duration::from_millis(80);

/// One progress line.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    enabled: bool,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A line for `total` items, shown when stderr is a terminal and `total >= min_total`.
    pub fn new(label: &str, total: usize, min_total: usize) -> Progress {
        Progress::with_enabled(
            label,
            total,
            total >= min_total && std::io::stderr().is_terminal(),
        )
    }

    pub fn with_enabled(label: &str, total: usize, enabled: bool) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            enabled,
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The text for `done` of the total, with `detail` after it.
    pub fn line(&self, done: usize, detail: &str) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(", {detail}")
        };
        format!(
            "{}: {done}/{} done{detail} ({secs:.1}s)",
            self.label, self.total
        )
    }

    /// Redraws the line (at most every 80 ms, except when everything is done).
    pub fn update(&mut self, done: usize, detail: &str) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if done < self.total && self.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        self.draw(&self.line(done, detail));
    }

    /// Draws `text` as the line, whatever it says.
    pub fn draw(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line so what follows starts on a clean one.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_and_a_disabled_one_draws_nothing() {
        let mut p = Progress::with_enabled("exec", 40, false);
        assert!(
            p.line(3, "1 failed")
                .starts_with("exec: 3/40 done, 1 failed (")
        );
        assert!(p.line(0, "").starts_with("exec: 0/40 done ("));
        p.update(40, "");
        assert!(!p.drawn);
    }
}
