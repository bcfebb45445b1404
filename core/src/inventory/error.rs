use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem at a place in a file: `file:line:col: message`, then a hint saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Located {
    /// Locates a byte span of `text` (1-based line and column, columns counted in characters).
    pub fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let (line, col) = span.map_or((1, 1), |s| line_col(text, s.start));
        Located {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            hint: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// 1-based (line, column) of a byte offset; offsets past the end clamp to the end.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {}: {source}\n  hint: check the path given with --inventory / OPSDECK_INVENTORY", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// One or more problems, each with its position; all are reported, not just the first.
    #[error("{}", join(.0))]
    Invalid(Vec<Located>),
}

fn join(errors: &[Located]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_and_handles_multibyte() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 3)); // after "bé"
        assert_eq!(line_col(t, 999), (3, 1));
        assert_eq!(line_col(t, 8), (2, 2)); // inside "é": clamps back
    }
}
