//! A host's detail: every check with its state and reason, the selected metric's history as a
//! chart, and its recent errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};

use super::theme::{StateKind, Theme};
use super::widgets::{fit, pad, state_span, styled};
use crate::app::App;
use crate::probes::state::metric_name;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(host) = app.selected_host() else {
        frame.render_widget(Paragraph::new("no host selected").style(theme.dim()), area);
        return;
    };
    let checks = app.host_checks(&host.name);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);

    let transport = match &host.transport {
        crate::inventory::TransportSpec::Ssh(s) => format!("ssh {}", s.display()),
        crate::inventory::TransportSpec::Docker(_) => "docker".to_owned(),
        crate::inventory::TransportSpec::Local => "local".to_owned(),
    };
    let title = Line::from(vec![
        state_span(theme, app.host_state(&host.name), true),
        styled(format!(" {} ", host.name), theme.title()),
        styled(format!("{} · {transport} ", host.tier), theme.dim()),
    ]);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(title);
    let inner_w = usize::from(left.width.saturating_sub(2));
    let mut lines = Vec::new();
    // The runbooks that fit this host's symptoms, the first one a keypress away.
    for (n, sg) in app.host_suggestions(&host.name).iter().enumerate() {
        let rb = &app.runbooks[sg.runbook];
        let why = sg
            .because
            .iter()
            .find(|b| b.contains(&format!(" on {}:", host.name)))
            .cloned()
            .unwrap_or_default();
        let key = if n == 0 {
            format!(
                "{} → ",
                app.keymap.hint(
                    crate::app::keymap::Context::Global,
                    crate::app::keymap::Action::Open
                )
            )
        } else {
            String::new()
        };
        let title_w = rb.title.chars().count() + key.chars().count() + 4;
        lines.push(Line::from(vec![
            state_span(theme, sg.state, false),
            styled(format!(" {key}"), theme.accent()),
            styled(rb.title.clone(), theme.title()),
            styled(
                format!(" — {}", fit(&why, inner_w.saturating_sub(title_w + 2))),
                theme.state_style(sg.state),
            ),
        ]));
    }
    if !lines.is_empty() {
        lines.push(Line::default());
    }
    let header_lines = lines.len();
    if checks.is_empty() {
        lines.push(Line::from(styled(
            "no checks yet: waiting for the first samples",
            theme.dim(),
        )));
    }
    for (i, c) in checks.iter().enumerate() {
        let id = if c.instance.is_empty() {
            c.id.clone()
        } else {
            format!("{} {}", c.id, c.instance)
        };
        let sym = state_span(theme, c.state, false);
        let sym_w = sym.content.chars().count();
        let id_w = 22.min(inner_w / 2);
        let reason_w = inner_w.saturating_sub(sym_w + 1 + id_w + 1);
        let id_style = if i == app.detail.selected {
            theme.selection()
        } else {
            theme.base()
        };
        let reason_style = if c.state == StateKind::Ok {
            theme.dim()
        } else {
            theme.state_style(c.state)
        };
        lines.push(Line::from(vec![
            sym,
            Span::raw(" "),
            styled(pad(&id, id_w), id_style),
            Span::raw(" "),
            styled(fit(&c.reason, reason_w), reason_style),
        ]));
    }
    let visible = usize::from(left.height.saturating_sub(2));
    let skip = (app.detail.selected + header_lines).saturating_sub(visible.saturating_sub(1));
    let lines: Vec<Line> = lines.into_iter().skip(skip).collect();
    frame.render_widget(Paragraph::new(lines).block(block).style(theme.base()), left);

    // The selected check's history.
    let [chart, errors] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let sel = checks.get(app.detail.selected.min(checks.len().saturating_sub(1)));
    let (name, data): (String, Vec<u64>) = sel
        .and_then(|c| {
            let metric = metric_name(&c.id, &c.instance);
            let ring = app.health.history().series(&host.name, &metric)?;
            Some((
                metric,
                ring.iter()
                    .map(|p| (p.value.max(0.0) * 10.0) as u64)
                    .collect(),
            ))
        })
        .unwrap_or_else(|| ("no history".to_owned(), Vec::new()));
    let last = sel
        .and_then(|c| c.value)
        .map(|v| format!(" now {v:.1} "))
        .unwrap_or_default();
    let chart_block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Line::from(vec![
            styled(format!(" {name} "), theme.title()),
            styled(last, theme.accent()),
        ]));
    let width = usize::from(chart.width.saturating_sub(2));
    let tail = &data[data.len().saturating_sub(width)..];
    frame.render_widget(
        Sparkline::default()
            .block(chart_block)
            .data(tail)
            .style(theme.accent()),
        chart,
    );

    let mut err_lines: Vec<Line> = checks
        .iter()
        .filter(|c| matches!(c.state, StateKind::Down | StateKind::Critical))
        .map(|c| {
            let at =
                c.at.map(|t| t.format("%H:%M:%S ").to_string())
                    .unwrap_or_default();
            Line::from(vec![
                styled(at, theme.dim()),
                state_span(theme, c.state, false),
                Span::raw(" "),
                styled(c.reason.clone(), theme.base()),
            ])
        })
        .collect();
    if err_lines.is_empty() {
        err_lines.push(Line::from(styled("no recent errors", theme.dim())));
    }
    let mut title = " recent errors ".to_owned();
    // Top processes, when the operator asked for them on this host.
    if let Some((h, result)) = &app.detail.top
        && *h == host.name
    {
        title = format!(" top processes on {h} · recent errors ");
        let mut top = match result {
            Ok(rows) => rows
                .iter()
                .take(8)
                .map(|r| {
                    Line::from(styled(
                        format!(
                            "{:>7} {:>5.1}% {:>4.1}% {}",
                            r.pid, r.cpu_percent, r.mem_percent, r.command
                        ),
                        theme.base(),
                    ))
                })
                .collect(),
            Err(e) => vec![Line::from(styled(
                format!("top: {e}"),
                theme.state_style(StateKind::Down),
            ))],
        };
        top.push(Line::default());
        top.append(&mut err_lines);
        err_lines = top;
    }
    let err_block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(title, theme.title()));
    frame.render_widget(
        Paragraph::new(err_lines)
            .block(err_block)
            .wrap(Wrap { trim: true }),
        errors,
    );
}
