//! The journal: past runs and their timelines.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::theme::Theme;
use super::widgets::{fit, styled};
use crate::app::App;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let j = &app.journal;
    let w = usize::from(left.width.saturating_sub(2));
    let mut lines = Vec::new();
    for (i, r) in j.runs.iter().enumerate() {
        let st = if i == j.selected {
            theme.selection()
        } else {
            theme.base()
        };
        let outcome = r.outcome.clone().unwrap_or_else(|| "unfinished".to_owned());
        let text = format!(
            "{} {} {} ({outcome})",
            r.started.get(..16).unwrap_or(&r.started),
            r.runbook,
            r.operator
        );
        lines.push(Line::from(styled(fit(&text, w), st)));
    }
    if lines.is_empty() {
        lines.push(Line::from(styled("no runs recorded yet", theme.dim())));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(format!(" Runs ({}) ", j.runs.len()), theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), left);
    let (title, body) = match &j.timeline {
        Some((run, md)) => (format!(" Timeline {run} "), md.clone()),
        None => (" Timeline ".to_owned(), String::new()),
    };
    let lines: Vec<Line> = body
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                Line::from(styled(
                    l.trim_start_matches('#').trim().to_owned(),
                    theme.title(),
                ))
            } else {
                Line::from(styled(l.to_owned(), theme.base()))
            }
        })
        .collect();
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(title, theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((j.scroll, 0)),
        right,
    );
}
