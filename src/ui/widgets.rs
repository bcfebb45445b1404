//! Small drawing helpers shared by the views.

use ratatui::style::Style;
use ratatui::text::Span;

use super::theme::{StateKind, Theme};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A text sparkline of the last `width` values, scaled from 0 to `max(values, floor)`.
pub fn spark(values: &[f64], width: usize, floor: f64) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(floor, f64::max);
    let mut s: String = tail
        .iter()
        .map(|v| {
            if max <= 0.0 || !v.is_finite() {
                BARS[0]
            } else {
                let i = ((v / max) * 7.0).round().clamp(0.0, 7.0) as usize;
                BARS[i]
            }
        })
        .collect();
    while s.chars().count() < width {
        s.insert(0, ' ');
    }
    s
}

/// The state as symbol (and label when the theme asks, or always for colour-blind safety).
pub fn state_span(theme: &Theme, state: StateKind, with_label: bool) -> Span<'static> {
    let st = theme.state(state);
    let text = if with_label || theme.always_label {
        format!("{} {}", st.symbol, st.label)
    } else {
        st.symbol.clone()
    };
    Span::styled(text, theme.state_style(state))
}

/// Cuts `s` to at most `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

pub fn pad(s: &str, width: usize) -> String {
    let f = fit(s, width);
    let n = f.chars().count();
    format!("{f}{}", " ".repeat(width - n))
}

pub fn styled(s: impl Into<String>, st: Style) -> Span<'static> {
    Span::styled(s.into(), st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_scales_and_pads() {
        assert_eq!(spark(&[0.0, 50.0, 100.0], 3, 100.0), "▁▅█");
        assert_eq!(spark(&[10.0], 3, 100.0), "  ▂");
        assert_eq!(spark(&[], 2, 1.0), "  ");
    }

    #[test]
    fn fit_marks_the_cut() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(pad("ab", 4), "ab  ");
    }
}
