//! The runbook browser: a filtered, searchable list and a preview.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::theme::Theme;
use super::widgets::{fit, pad, state_span, styled};
use crate::app::App;
use crate::runbook::{Severity, StepKind};

pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

pub fn kind_label(k: StepKind) -> &'static str {
    match k {
        StepKind::Diagnose => "diagnose",
        StepKind::Action => "ACTION",
        StepKind::Manual => "manual",
        StepKind::Wait => "wait",
        StepKind::Check => "check",
    }
}

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let list = app.browser_list();
    let b = &app.browser;
    let filters = format!(
        " search: {}{}  tier: {}  severity: {}  {}",
        b.query,
        if b.searching { "▏" } else { "" },
        b.tier.as_deref().unwrap_or("all"),
        b.severity.map_or("all", severity_label),
        if b.suggested_first {
            "suggested first"
        } else {
            ""
        }
    );
    let mut lines = vec![Line::from(styled(filters, theme.dim())), Line::default()];
    let inner_w = usize::from(left.width.saturating_sub(2));
    for (pos, &i) in list.iter().enumerate() {
        let rb = &app.runbooks[i];
        let sugg = app.suggestions.iter().find(|s| s.runbook == i);
        let mark = match sugg {
            Some(s) => state_span(theme, s.state, false),
            None => Span::raw(" "),
        };
        let mark_w = mark.content.chars().count();
        let sev = format!("{:>8} ", severity_label(rb.severity));
        let title_w = inner_w.saturating_sub(mark_w + 1 + sev.len());
        let st = if pos == b.selected.min(list.len().saturating_sub(1)) {
            theme.selection()
        } else {
            theme.base()
        };
        lines.push(Line::from(vec![
            mark,
            Span::raw(" "),
            styled(sev, theme.dim()),
            styled(pad(&rb.title, title_w), st),
        ]));
    }
    if list.is_empty() {
        lines.push(Line::from(styled("no runbook matches", theme.dim())));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(
            format!(" Runbooks ({}) ", list.len()),
            theme.title(),
        ));
    frame.render_widget(Paragraph::new(lines).block(block).style(theme.base()), left);

    let mut p = Vec::new();
    if let Some(rb) = app.selected_runbook() {
        let idx = app
            .runbooks
            .iter()
            .position(|r| std::sync::Arc::ptr_eq(r, rb));
        p.push(Line::from(vec![
            styled(rb.title.clone(), theme.title()),
            styled(format!("  {}", rb.id), theme.dim()),
        ]));
        let rto = rb
            .rto
            .map(|d| format!("RTO {}", crate::app::state::mmss(d)))
            .unwrap_or_else(|| "no RTO".to_owned());
        p.push(Line::from(styled(
            format!(
                "severity {} · {rto} · tiers {} · tags {}",
                severity_label(rb.severity),
                rb.tiers.join(", "),
                rb.tags.join(", ")
            ),
            theme.dim(),
        )));
        p.push(Line::default());
        p.push(Line::from(styled(rb.summary.clone(), theme.base())));
        if let Some(s) = idx.and_then(|i| app.suggestions.iter().find(|s| s.runbook == i)) {
            p.push(Line::default());
            p.push(Line::from(vec![
                state_span(theme, s.state, true),
                styled(" suggested by current health:", theme.title()),
            ]));
            for why in s.because.iter().take(4) {
                p.push(Line::from(styled(
                    format!("  {why}"),
                    theme.state_style(s.state),
                )));
            }
        }
        if !rb.symptoms.is_empty() {
            p.push(Line::default());
            p.push(Line::from(styled("Symptoms", theme.title())));
            for sy in &rb.symptoms {
                p.push(Line::from(styled(format!("  • {sy}"), theme.base())));
            }
        }
        p.push(Line::default());
        p.push(Line::from(styled("Steps", theme.title())));
        let w = usize::from(right.width.saturating_sub(16));
        for (n, st) in rb.steps.iter().enumerate() {
            let kind_style = if st.kind == StepKind::Action {
                theme.state_style(crate::probes::check::State::Warning)
            } else {
                theme.accent()
            };
            p.push(Line::from(vec![
                styled(format!("{:>3}. ", n + 1), theme.dim()),
                styled(format!("{:<9}", kind_label(st.kind)), kind_style),
                styled(fit(&st.title, w), theme.base()),
            ]));
        }
        p.push(Line::default());
        p.push(Line::from(styled(
            format!(
                "{} start · / search · t tier · v severity",
                app.keymap.hint(
                    crate::app::keymap::Context::Global,
                    crate::app::keymap::Action::Open
                )
            ),
            theme.dim(),
        )));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(" Preview ", theme.title()));
    frame.render_widget(
        Paragraph::new(p)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((b.scroll, 0)),
        right,
    );
}
