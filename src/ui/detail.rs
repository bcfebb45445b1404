//! A host's detail: every check with its state and reason, the selected metric's history as a
//! chart, and its recent errors.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap};

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

    // The selected check's history, on a value axis with its unit and a time axis.
    let [chart, errors] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let sel = checks.get(app.detail.selected.min(checks.len().saturating_sub(1)));
    render_chart(app, theme, frame, chart, &host.name, sel.copied());

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

/// The unit a check's value is in, and the least top its value axis gets (so a quiet series
/// is not drawn as if it were alarming).
pub fn unit_of(id: &str) -> (&'static str, f64) {
    let pct = [
        "host.cpu",
        "host.memory",
        "host.swap",
        "mysql.connections",
        "redis.memory",
        "redis.clients",
        "docker.memory",
    ];
    if pct.contains(&id) || id.starts_with("disk.") || id.starts_with("inodes.") {
        ("%", 100.0)
    } else if id == "http.latency" || id == "redis.ping" {
        ("ms", 10.0)
    } else if id == "mysql.replication_lag" {
        ("s", 10.0)
    } else if id.starts_with("queue.") {
        ("jobs", 10.0)
    } else if id.starts_with("process.") || id.starts_with("php_fpm.") {
        ("procs", 5.0)
    } else if id == "host.reachable" {
        ("load", 1.0)
    } else if id == "nginx.status" {
        ("conns", 10.0)
    } else {
        ("", 1.0)
    }
}

/// A round axis top at or above `v`: 1, 2 or 5 times a power of ten.
fn nice_top(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn axis_number(v: f64) -> String {
    if v >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn render_chart(
    app: &App,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    host: &str,
    sel: Option<&crate::probes::check::Check>,
) {
    let metric = sel.map(|c| metric_name(&c.id, &c.instance));
    let ring = metric
        .as_ref()
        .and_then(|m| app.health.history().series(host, m));
    let (unit, floor) = sel.map_or(("", 1.0), |c| unit_of(&c.id));
    let data: Vec<(f64, f64)> = ring
        .map(|r| {
            r.iter()
                .map(|p| {
                    (
                        -app.now.saturating_duration_since(p.at).as_secs_f64(),
                        p.value,
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let span = data.first().map_or(60.0, |(x, _)| (-x).max(60.0)).ceil();
    let max = data.iter().map(|(_, y)| *y).fold(0.0, f64::max);
    let top = nice_top(max.max(floor));
    let last = sel
        .and_then(|c| c.value)
        .map(|v| format!(" now {} {unit} ", axis_number(v)))
        .unwrap_or_default();
    let style = sel
        .filter(|c| c.state != StateKind::Ok)
        .map_or_else(|| theme.accent(), |c| theme.state_style(c.state));
    let name = metric.unwrap_or_else(|| "no history".to_owned());
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Line::from(vec![
            styled(format!(" {name} "), theme.title()),
            styled(last, style),
        ]));
    if data.is_empty() {
        frame.render_widget(
            Paragraph::new(styled("no history yet for this check", theme.dim())).block(block),
            area,
        );
        return;
    }
    let at = |secs_ago: f64| {
        let d = chrono::Duration::milliseconds((secs_ago * 1000.0) as i64);
        (app.wall - d).format("%H:%M:%S").to_string()
    };
    // Three times where they fit, else the start and now.
    let x_labels = if area.width >= 48 {
        vec![
            styled(at(span), theme.dim()),
            styled(at(span / 2.0), theme.dim()),
            styled("now", theme.dim()),
        ]
    } else {
        vec![styled(at(span), theme.dim()), styled("now", theme.dim())]
    };
    let y_labels = vec![
        styled("0", theme.dim()),
        styled(axis_number(top / 2.0), theme.dim()),
        styled(format!("{} {unit}", axis_number(top)), theme.dim()),
    ];
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(style)
        .data(&data);
    let chart = Chart::new(vec![dataset])
        .block(block)
        .style(theme.base())
        .x_axis(
            Axis::default()
                .title(if area.width >= 60 {
                    styled("time (UTC)", theme.dim())
                } else {
                    styled("", theme.dim())
                })
                .style(theme.border())
                .bounds([-span, 0.0])
                .labels(x_labels),
        )
        .y_axis(
            Axis::default()
                .style(theme.border())
                .bounds([0.0, top])
                .labels(y_labels),
        );
    frame.render_widget(chart, area);
}
