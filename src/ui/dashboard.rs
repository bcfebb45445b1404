//! The dashboard: the stack as its traffic flows (tiers in inventory order), every host a
//! status pill with its key figure and a sparkline.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::theme::{StateKind, Theme};
use super::widgets::{fit, pad, spark, state_span, styled};
use crate::app::App;
use crate::probes::state::metric_name;

/// Width of one host pill, including its trailing gap.
pub const PILL_WIDTH: u16 = 38;

/// One drawn line of the dashboard: a tier heading, or a row of host indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Tier {
        name: String,
        description: Option<String>,
        first: bool,
    },
    Hosts(Vec<usize>),
}

/// The dashboard's rows for a body of `width` columns.
pub fn rows(app: &App, width: u16) -> Vec<Row> {
    let per_line = usize::from((width.saturating_sub(2) / PILL_WIDTH).max(1));
    let mut out = Vec::new();
    for (ti, tier) in app.inventory.tiers.iter().enumerate() {
        let hosts: Vec<usize> = app
            .inventory
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.tier == tier.name)
            .map(|(i, _)| i)
            .collect();
        if hosts.is_empty() {
            continue;
        }
        out.push(Row::Tier {
            name: tier.name.clone(),
            description: tier.description.clone(),
            first: ti == 0,
        });
        for chunk in hosts.chunks(per_line) {
            out.push(Row::Hosts(chunk.to_vec()));
        }
    }
    out
}

/// The first row drawn so that the selected host is visible in `height` rows.
pub fn scroll_offset(rows: &[Row], selected: usize, height: usize) -> usize {
    let line = rows
        .iter()
        .position(|r| matches!(r, Row::Hosts(h) if h.contains(&selected)))
        .unwrap_or(0);
    if line < height { 0 } else { line + 1 - height }
}

/// Where each visible host pill is: (host index, x, y, width), for mouse hit-testing.
pub fn pill_boxes(app: &App, area: Rect) -> Vec<(usize, u16, u16, u16)> {
    let rows = rows(app, area.width);
    let off = scroll_offset(&rows, app.dashboard.selected, usize::from(area.height));
    let mut out = Vec::new();
    for (y, row) in rows
        .iter()
        .skip(off)
        .take(usize::from(area.height))
        .enumerate()
    {
        if let Row::Hosts(hosts) = row {
            for (k, &i) in hosts.iter().enumerate() {
                out.push((
                    i,
                    area.x + 1 + k as u16 * PILL_WIDTH,
                    area.y + y as u16,
                    PILL_WIDTH - 1,
                ));
            }
        }
    }
    out
}

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let rows = rows(app, area.width);
    let height = usize::from(area.height);
    let off = scroll_offset(&rows, app.dashboard.selected, height);
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    for row in rows.iter().skip(off).take(height) {
        match row {
            Row::Tier {
                name,
                description,
                first,
            } => {
                let arrow = if *first { "▶ " } else { "↓ " };
                let mut spans = vec![
                    styled(arrow, theme.dim()),
                    styled(name.to_uppercase(), theme.title()),
                ];
                if let Some(d) = description {
                    spans.push(styled(format!("  {d}"), theme.dim()));
                }
                lines.push(Line::from(spans));
            }
            Row::Hosts(hosts) => {
                let mut spans = vec![Span::raw(" ")];
                for &i in hosts {
                    spans.extend(pill(app, theme, i));
                    spans.push(Span::raw(" "));
                }
                lines.push(Line::from(spans));
            }
        }
    }
    if rows.is_empty() {
        lines.push(Line::from(styled(
            "The inventory has no hosts.",
            theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(lines).style(theme.base()), area);
}

/// One host: `● app1     cpu 12% ▂▃▅▆` in `PILL_WIDTH - 1` columns.
fn pill(app: &App, theme: &Theme, i: usize) -> Vec<Span<'static>> {
    let host = &app.inventory.hosts[i];
    let state = app.host_state(&host.name);
    let selected = i == app.dashboard.selected;
    let inner = usize::from(PILL_WIDTH) - 1;
    let sym = state_span(theme, state, false);
    let sym_w = sym.content.chars().count();
    let name_w = 8usize;
    let checks = app.host_checks(&host.name);
    // The figure: the worst failing check's reason, else the CPU figure, else the count of
    // checks.
    let worst = checks.first().filter(|c| c.state != StateKind::Ok);
    let cpu = checks.iter().find(|c| c.id == "host.cpu").copied();
    let figure = match (worst, cpu) {
        (Some(c), _) => c.reason.clone(),
        (None, Some(c)) => c
            .value
            .map_or_else(|| c.reason.clone(), |v| format!("cpu {v:.0}%")),
        (None, None) if checks.is_empty() => "no data".to_owned(),
        (None, None) => format!("{} checks ok", checks.len()),
    };
    let series: Vec<f64> = app
        .health
        .history()
        .series(&host.name, &metric_name("host.cpu", ""))
        .map(|r| r.iter().map(|p| p.value).collect())
        .unwrap_or_default();
    // A failing host shows its reason at full width; a healthy one its CPU trend.
    let spark_w = if series.is_empty() || state != StateKind::Ok {
        0
    } else {
        6
    };
    let fig_w = inner.saturating_sub(sym_w + 1 + name_w + 1 + spark_w + usize::from(spark_w > 0));
    let name_style = if selected {
        theme.selection().add_modifier(Modifier::BOLD)
    } else {
        theme.base().add_modifier(Modifier::BOLD)
    };
    let fig_style = if state == StateKind::Ok {
        theme.dim()
    } else {
        theme.state_style(state)
    };
    let mut spans = vec![
        sym,
        Span::raw(" "),
        styled(pad(&host.name, name_w), name_style),
        Span::raw(" "),
        styled(pad(&fit(&figure, fig_w), fig_w), fig_style),
    ];
    if spark_w > 0 {
        spans.push(Span::raw(" "));
        spans.push(styled(spark(&series, spark_w, 100.0), theme.accent()));
    }
    spans
}
