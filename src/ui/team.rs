//! Team mode on screen: the header's "who runs what" and the overlay where a second person
//! approves another operator's step, seeing everything it covers first.

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::theme::Theme;
use super::widgets::styled;
use crate::app::App;
use crate::app::keymap::{Action, Context};
use crate::probes::check::State;
use crate::team::approvals::account;

/// The header's team span: etcd unreachable (changes refused), who runs what, approvals
/// waiting for this operator. `None` when working alone.
pub fn header_span(app: &App, theme: &Theme) -> Option<Span<'static>> {
    let team = app.team.as_ref()?;
    let Ok(snap) = &team.state else {
        return Some(styled(
            "│ team: etcd unreachable, changes refused ".to_owned(),
            theme.state_style(State::Critical),
        ));
    };
    let mut text = match snap.active.as_slice() {
        [] => "│ team: no runs ".to_owned(),
        [first, rest @ ..] => {
            let more = if rest.is_empty() {
                String::new()
            } else {
                format!(" +{}", rest.len())
            };
            format!(
                "│ team: {} runs {} on {}{more} ",
                account(&first.operator),
                first.runbook,
                first.target.join(",")
            )
        }
    };
    let waiting = team.approvable().len();
    if waiting > 0 {
        let _ = write!(
            text,
            "· {waiting} approval{} waiting ({}) ",
            if waiting == 1 { "" } else { "s" },
            app.keymap.hint(Context::Global, Action::Approve)
        );
        return Some(styled(text, theme.state_style(State::Warning)));
    }
    Some(styled(text, theme.accent()))
}

/// The approval overlay: whose run, which step, every host and command it covers.
pub fn render_approval(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(req) = &app.approving else {
        return;
    };
    let mut lines = vec![
        Line::from(styled(
            format!(
                "{} asks a second person to approve step {} of run {}",
                req.requested_by, req.step, req.run
            ),
            theme.title(),
        )),
        Line::from(styled(
            format!(
                "it covers {} command{}:",
                req.covers.len(),
                if req.covers.len() == 1 { "" } else { "s" }
            ),
            theme.dim(),
        )),
    ];
    for c in &req.covers {
        let host = c.host.as_deref().unwrap_or("local");
        let item = c
            .item
            .as_deref()
            .map(|i| format!(" [{i}]"))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            styled(format!("  {host}{item}: "), theme.accent()),
            Span::raw(crate::secret::mask(&c.command).into_owned()),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(styled(
        format!(
            "{} approve as {}    {} / {} cancel",
            app.keymap.hint(Context::Run, Action::Confirm),
            app.team.as_ref().map_or("?", |t| t.me.as_str()),
            app.keymap.hint(Context::Run, Action::Deny),
            app.keymap.hint(Context::Global, Action::Back),
        ),
        theme.dim(),
    )));
    let width = area.width.saturating_sub(4).clamp(20, 110);
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    let r = super::run::popup(area, width, height);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Approve (team) ")
                .style(theme.base()),
        ),
        r,
    );
}
