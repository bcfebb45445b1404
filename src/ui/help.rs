//! The help overlay, generated from the live keymap.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::theme::Theme;
use super::widgets::{pad, styled};
use crate::app::App;
use crate::app::keymap::Context;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let rows = app.keymap.help_rows();
    let mut lines = Vec::new();
    let mut last = None;
    for (ctx, keys, what) in &rows {
        if last != Some(*ctx) {
            let heading = match ctx {
                Context::Global => "Everywhere",
                Context::Run => "Running a runbook",
                Context::Browser => "Runbook browser",
            };
            if last.is_some() {
                lines.push(Line::default());
            }
            lines.push(Line::from(styled(heading, theme.title())));
            last = Some(*ctx);
        }
        lines.push(Line::from(vec![
            styled(format!("  {}", pad(keys, 16)), theme.accent()),
            styled(*what, theme.base()),
        ]));
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 62.min(area.width);
    let [popup] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(popup);
    frame.render_widget(Clear, popup);
    let close = app
        .keymap
        .hint(Context::Global, crate::app::keymap::Action::Help);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(styled(" Help — keys ", theme.title()))
        .title_bottom(styled(
            format!(" {close} or esc closes · ↓↑ scroll "),
            theme.dim(),
        ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .style(theme.base())
            .scroll((app.help_scroll, 0)),
        popup,
    );
}
