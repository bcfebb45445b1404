//! Text tables for the headless commands: columns aligned by display width (a host named
//! `Ödön-db` or a reason with `…` or CJK text does not shift the columns after it), colour
//! only where it helps a person and never in a pipe.
//!
//! Colour is decided once per stream by [`Colors::for_stdout`] / [`Colors::for_stderr`]: on
//! when the stream is a terminal, off when it is piped or redirected, when `NO_COLOR` is set
//! (to anything non-empty, <https://no-color.org>), or when `TERM=dumb`.

use std::io::IsTerminal as _;

use unicode_width::UnicodeWidthStr as _;

use crate::probes::check::State;

/// What a cell's colour says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Ok,
    Warning,
    Critical,
    Down,
    Unknown,
    /// Headers and secondary text.
    Dim,
    /// Names a person looks for first (ids).
    Strong,
}

impl Tone {
    pub fn of(state: State) -> Tone {
        match state {
            State::Ok => Tone::Ok,
            State::Warning => Tone::Warning,
            State::Unknown => Tone::Unknown,
            State::Critical => Tone::Critical,
            State::Down => Tone::Down,
        }
    }

    fn sgr(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Ok => Some("32"),
            Tone::Warning => Some("33"),
            Tone::Critical => Some("31"),
            Tone::Down => Some("1;31"),
            Tone::Unknown => Some("35"),
            Tone::Dim => Some("2"),
            Tone::Strong => Some("1"),
        }
    }
}

/// Whether to colour one output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colors(pub bool);

impl Colors {
    /// Colour when `is_tty` and the environment allows it.
    pub fn decide(is_tty: bool) -> Colors {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Colors(is_tty && !no_color && !dumb)
    }

    pub fn for_stdout() -> Colors {
        Colors::decide(std::io::stdout().is_terminal())
    }

    pub fn for_stderr() -> Colors {
        Colors::decide(std::io::stderr().is_terminal())
    }

    /// `text` in `tone` (as is without colour).
    pub fn paint(self, tone: Tone, text: &str) -> String {
        match (self.0, tone.sgr()) {
            (true, Some(code)) if !text.is_empty() => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }
}

/// The width a terminal gives `text`.
pub fn width(text: &str) -> usize {
    text.width()
}

/// `text` padded with spaces to `w` columns (display width).
pub fn pad(text: &str, w: usize) -> String {
    let mut s = text.to_owned();
    s.extend(std::iter::repeat_n(' ', w.saturating_sub(width(text))));
    s
}

/// One cell: text and tone.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(t: T) -> Cell {
        Cell {
            text: t.into(),
            tone: Tone::Plain,
        }
    }
}

pub fn cell(text: impl Into<String>, tone: Tone) -> Cell {
    Cell {
        text: text.into(),
        tone,
    }
}

/// Rows of cells rendered with every column but the last padded to its widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Written before every row.
    pub indent: String,
    /// Between columns.
    pub gap: String,
    /// Least width per column (a column is never narrower).
    pub min_widths: Vec<usize>,
    /// Right-aligned columns.
    pub right: Vec<usize>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            indent: String::new(),
            gap: "  ".to_owned(),
            ..Table::default()
        }
    }

    /// A header row, dimmed on a terminal.
    pub fn header(&mut self, titles: &[&str]) -> &mut Table {
        self.rows
            .push(titles.iter().map(|t| cell(*t, Tone::Dim)).collect());
        self
    }

    pub fn row(&mut self, cells: Vec<Cell>) -> &mut Table {
        self.rows.push(cells);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Column widths (display width), at least `min_widths`.
    pub fn widths(&self) -> Vec<usize> {
        let n = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        (0..n)
            .map(|i| {
                let data = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| width(&c.text))
                    .max()
                    .unwrap_or(0);
                data.max(self.min_widths.get(i).copied().unwrap_or(0))
            })
            .collect()
    }

    /// The table, one line per row; trailing spaces never end a line.
    pub fn render(&self, colors: Colors) -> String {
        let widths = self.widths();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = self.indent.clone();
            let last = row.len().saturating_sub(1);
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(&self.gap);
                }
                let w = widths.get(i).copied().unwrap_or(0);
                let fill = w.saturating_sub(width(&c.text));
                let painted = colors.paint(c.tone, &c.text);
                if self.right.contains(&i) {
                    line.extend(std::iter::repeat_n(' ', fill));
                    line.push_str(&painted);
                } else {
                    line.push_str(&painted);
                    if i < last {
                        line.extend(std::iter::repeat_n(' ', fill));
                    }
                }
            }
            let trimmed = line.trim_end_matches(' ');
            out.push_str(trimmed);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_display_width_not_bytes() {
        let mut t = Table::new();
        t.row(vec!["Ödön-db".into(), "ok".into(), "x".into()]);
        t.row(vec!["日本-1".into(), "critical".into(), "y".into()]);
        t.row(vec!["web-1".into(), "…".into(), "z".into()]);
        let text = t.render(Colors(false));
        let cols: Vec<usize> = text
            .lines()
            .map(|l| {
                // The display column where the last cell starts.
                let at = l.rfind(' ').expect("gap") + 1;
                width(&l[..at])
            })
            .collect();
        assert_eq!(cols, vec![cols[0]; 3], "{text}");
        assert_eq!(cols[0], 7 + 2 + 8 + 2, "{text}");
    }

    #[test]
    fn colour_wraps_the_text_and_keeps_the_alignment() {
        let mut t = Table::new();
        t.row(vec![cell("ok", Tone::Ok), "a".into()]);
        t.row(vec![cell("critical", Tone::Critical), "b".into()]);
        let plain = t.render(Colors(false));
        let coloured = t.render(Colors(true));
        assert!(!plain.contains('\x1b'));
        assert!(coloured.contains("\x1b[32mok\x1b[0m"), "{coloured:?}");
        let strip = regex::Regex::new("\x1b\\[[0-9;]*m").expect("re");
        assert_eq!(strip.replace_all(&coloured, ""), plain);
    }

    #[test]
    fn no_trailing_spaces_and_right_alignment() {
        let mut t = Table::new();
        t.right = vec![1];
        t.row(vec!["a".into(), "1".into(), String::new().into()]);
        t.row(vec!["bb".into(), "100".into(), "x".into()]);
        assert_eq!(t.render(Colors(false)), "a     1\nbb  100  x\n");
    }
}
