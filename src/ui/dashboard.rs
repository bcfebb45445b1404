//! The dashboard: the stack as a map, tiers in traffic order, each with the figures on-call
//! reads first and one row per host (its state, role, key figures, CPU and its service's
//! trend, sparklines aligned in columns); below it the event feed — what changed, when and
//! why — filling the rest of the screen. Pure drawing of `app.stack` and `app.feed`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::theme::{StateKind, Theme};
use super::widgets::{fit, pad, spark, state_span, styled};
use crate::app::App;
use crate::app::feed::{FeedEntry, FeedKind};
use crate::app::layout::{Row, rows, split};
use crate::app::stack::{Figure, HostRow, TierRow};
use crate::probes::state::metric_name;

/// Column positions of the host rows, shared by every row so sparklines line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub sym: usize,
    pub name: usize,
    pub role: usize,
    pub figures: usize,
    pub figure: usize,
    /// Figures in their long form (where it fits): wide screens.
    pub long: bool,
    pub cpu_spark: usize,
    pub trend_spark: usize,
}

const CPU_TEXT: usize = 8;

impl Columns {
    /// Column widths for a map `width` columns wide.
    pub fn for_width(app: &App, theme: &Theme, width: u16) -> Columns {
        let width = usize::from(width);
        let sym = [
            StateKind::Ok,
            StateKind::Warning,
            StateKind::Critical,
            StateKind::Down,
            StateKind::Unknown,
        ]
        .iter()
        .map(|s| state_span(theme, *s, false).content.chars().count())
        .max()
        .unwrap_or(1);
        let name = app
            .stack
            .iter()
            .flat_map(|t| t.hosts.iter().map(|h| h.name.chars().count()))
            .max()
            .unwrap_or(6)
            .clamp(6, 16);
        let role = if app
            .stack
            .iter()
            .any(|t| t.hosts.iter().any(|h| h.role.is_some()))
        {
            9
        } else {
            0
        };
        let wide = width >= 120;
        let figures = if wide { 3 } else { 2 };
        // indent, symbol, name, role, each figure with its gap, cpu text, two sparklines.
        let fixed = 1 + sym + 1 + name + 1 + role + (CPU_TEXT + 1) + 1;
        let avail = width.saturating_sub(fixed + 1);
        let (figure, spark_room) = if wide {
            let figure = (avail * 11 / 20 / figures).clamp(12, 30);
            (figure, avail.saturating_sub(figures * (figure + 1)))
        } else {
            let figure = (avail.saturating_sub(12) / figures).clamp(8, 14);
            (figure, avail.saturating_sub(figures * (figure + 1)))
        };
        let spark = (spark_room.saturating_sub(1) / 2).clamp(0, 40);
        Columns {
            sym,
            name,
            role,
            figures,
            figure,
            long: wide,
            cpu_spark: spark,
            trend_spark: spark,
        }
    }

    /// Where the CPU column starts.
    fn cpu_x(&self) -> usize {
        1 + self.sym + 1 + self.name + 1 + self.role + self.figures * (self.figure + 1)
    }

    /// Where the CPU sparkline starts.
    fn cpu_spark_x(&self) -> usize {
        self.cpu_x() + CPU_TEXT + 1
    }

    /// Where the trend sparkline starts.
    fn trend_x(&self) -> usize {
        self.cpu_spark_x() + self.cpu_spark + 1
    }
}

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (map, feed, offset) = split(app, area);
    let cols = Columns::for_width(app, theme, area.width);
    let mut lines: Vec<Line> = Vec::with_capacity(usize::from(map.height));
    for row in rows(app).iter().skip(offset).take(usize::from(map.height)) {
        lines.push(match row {
            Row::Tier(t) => tier_line(theme, &app.stack[*t], *t == 0, &cols, map.width),
            Row::Host(t, i) => host_line(app, theme, &app.stack[*t].hosts[*i], &cols),
        });
    }
    if app.stack.is_empty() {
        lines.push(Line::from(styled(
            "The inventory has no hosts.",
            theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(lines).style(theme.base()), map);
    render_feed(app, theme, frame, feed);
}

fn figure_span(theme: &Theme, f: &Figure, text: String) -> Span<'static> {
    let st = if f.state == StateKind::Ok {
        theme.base()
    } else {
        theme.state_style(f.state)
    };
    styled(text, st)
}

/// `▶ DB  primary db1 · connections 96% used · lag 0 s   description      cpu   conn %`
fn tier_line(
    theme: &Theme,
    tier: &TierRow,
    first: bool,
    cols: &Columns,
    width: u16,
) -> Line<'static> {
    let mut spans = vec![
        styled(if first { "▶ " } else { "↓ " }, theme.dim()),
        styled(tier.name.to_uppercase(), theme.title()),
        Span::raw("  "),
    ];
    let mut used = 2 + tier.name.chars().count() + 2;
    // Figures up to the CPU column; long forms where all of them fit.
    let room = cols.cpu_x().saturating_sub(used + 1);
    let long: usize = tier
        .figures
        .iter()
        .map(|f| f.long.chars().count() + 3)
        .sum();
    let use_long = cols.long && long <= room;
    let mut left = room;
    for (k, f) in tier.figures.iter().enumerate() {
        let text = if use_long { &f.long } else { &f.short };
        let sep = if k == 0 { 0 } else { 3 };
        if left < sep + 4 {
            break;
        }
        if k > 0 {
            spans.push(styled(" · ", theme.dim()));
        }
        let t = fit(text, left - sep);
        left -= sep + t.chars().count();
        used += sep + t.chars().count();
        spans.push(figure_span(theme, f, t));
    }
    // The description where it fits whole.
    if let Some(d) = &tier.description
        && used + 3 + d.chars().count() <= cols.cpu_x()
    {
        used += 2 + d.chars().count();
        spans.push(styled(format!("  {d}"), theme.dim()));
    }
    // Over the sparklines, what they draw: this tier's column labels.
    if cols.cpu_spark >= 5 {
        spans.push(Span::raw(
            " ".repeat(cols.cpu_spark_x().saturating_sub(used)),
        ));
        used = used.max(cols.cpu_spark_x());
        spans.push(styled("cpu %", theme.dim()));
        used += 5;
        if let Some(trend) = tier.hosts.iter().find_map(|h| h.trend.as_ref()) {
            let x = cols.trend_x();
            let label = fit(trend.label, cols.trend_spark);
            if x + label.chars().count() <= usize::from(width) {
                spans.push(Span::raw(" ".repeat(x.saturating_sub(used))));
                spans.push(styled(label, theme.dim()));
            }
        }
    }
    Line::from(spans)
}

/// ` ● db1      primary  conn 96%      lag 0 s       cpu  12% ▂▂▃▃▂ conn %  ▃▅▆▇█`
fn host_line(app: &App, theme: &Theme, h: &HostRow, cols: &Columns) -> Line<'static> {
    let selected = h.index == app.dashboard.selected;
    let mut spans = vec![Span::raw(" ")];
    let sym = state_span(theme, h.state, false);
    let sym_w = sym.content.chars().count();
    spans.push(sym);
    spans.push(Span::raw(" ".repeat(cols.sym - sym_w + 1)));
    let name_style = if selected {
        theme.selection().add_modifier(Modifier::BOLD)
    } else {
        theme.base().add_modifier(Modifier::BOLD)
    };
    spans.push(styled(pad(&h.name, cols.name), name_style));
    spans.push(Span::raw(" "));
    if cols.role > 0 {
        match &h.role {
            Some(r) => {
                let st = if r.state == StateKind::Ok {
                    theme.dim()
                } else {
                    theme.state_style(r.state)
                };
                spans.push(styled(pad(&r.short, cols.role - 1), st));
            }
            None => spans.push(Span::raw(" ".repeat(cols.role - 1))),
        }
        spans.push(Span::raw(" "));
    }
    // A failing check no figure tells (a host or service down) takes the whole figure area:
    // its reason is what the operator needs.
    let mut area = cols.figures * (cols.figure + 1);
    let untold = h.figures.first().filter(|f| f.alone);
    if let Some(f) = untold {
        // A host with no CPU figure (unreachable) lends its sparkline columns to the reason.
        if h.cpu.is_none() {
            area = cols.trend_x() + cols.trend_spark - (cols.cpu_x() - area);
        }
        let t = pad(&fit(&f.long, area - 1), area - 1);
        spans.push(figure_span(theme, f, t));
        spans.push(Span::raw(" "));
        if h.cpu.is_none() {
            return Line::from(spans);
        }
    } else {
        for k in 0..cols.figures {
            match h.figures.get(k) {
                Some(f) => {
                    let text = if cols.long {
                        f.fitting(cols.figure)
                    } else {
                        &f.short
                    };
                    let t = pad(text, cols.figure);
                    spans.push(figure_span(theme, f, t));
                }
                None => spans.push(Span::raw(" ".repeat(cols.figure))),
            }
            spans.push(Span::raw(" "));
        }
    }
    match &h.cpu {
        Some(c) => spans.push(figure_span(theme, c, pad(&c.short, CPU_TEXT))),
        None => spans.push(Span::raw(" ".repeat(CPU_TEXT))),
    }
    spans.push(Span::raw(" "));
    let history = app.health.history();
    let series = |metric: &str| -> Vec<f64> {
        history
            .series(&h.name, metric)
            .map(|r| r.iter().map(|p| p.value).collect())
            .unwrap_or_default()
    };
    if cols.cpu_spark > 0 {
        let cpu = series(&metric_name("host.cpu", ""));
        let st = h
            .cpu
            .as_ref()
            .filter(|c| c.state != StateKind::Ok)
            .map_or_else(|| theme.accent(), |c| theme.state_style(c.state));
        spans.push(styled(spark(&cpu, cols.cpu_spark, 100.0), st));
        spans.push(Span::raw(" "));
    }
    if let Some(t) = &h.trend
        && cols.trend_spark > 0
    {
        spans.push(styled(
            spark(&series(&t.metric), cols.trend_spark, t.floor),
            theme.accent(),
        ));
    }
    Line::from(spans)
}

/// The feed: newest first, each entry with its time, its state's symbol and colour.
fn render_feed(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let w = usize::from(area.width);
    let title = format!("── events ({}) · newest first ", app.feed.len());
    let mut lines = vec![Line::from(vec![styled(
        format!(
            "{}{}",
            fit(&title, w),
            "─".repeat(w.saturating_sub(title.chars().count()))
        ),
        theme.border(),
    )])];
    if app.feed.is_empty() {
        lines.push(Line::from(styled(
            " nothing has changed since the console started",
            theme.dim(),
        )));
    }
    for e in app
        .feed
        .newest()
        .take(usize::from(area.height).saturating_sub(1))
    {
        lines.push(feed_line(theme, e, w));
    }
    frame.render_widget(Paragraph::new(lines).style(theme.base()), area);
}

/// Spans cut to a line's width as they are added.
struct Fitted {
    spans: Vec<Span<'static>>,
    room: usize,
}

impl Fitted {
    fn push(&mut self, text: &str, st: ratatui::style::Style) {
        let t = fit(text, self.room);
        self.room -= t.chars().count();
        if !t.is_empty() {
            self.spans.push(styled(t, st));
        }
    }
}

fn feed_line(theme: &Theme, e: &FeedEntry, width: usize) -> Line<'static> {
    let mut l = Fitted {
        spans: Vec::new(),
        room: width,
    };
    l.push(&e.at.format(" %H:%M:%S ").to_string(), theme.dim());
    match &e.kind {
        FeedKind::Check {
            host,
            check,
            from,
            to,
            cause,
            ..
        } => {
            let sym = state_span(theme, *to, false);
            l.push(&sym.content, sym.style);
            l.push(
                &format!(" {host} "),
                theme.base().add_modifier(Modifier::BOLD),
            );
            l.push(&format!("{check} "), theme.base());
            match from {
                Some(f) => l.push(f.as_str(), theme.state_style(*f)),
                None => l.push("new", theme.dim()),
            }
            l.push(" → ", theme.dim());
            l.push(to.as_str(), theme.state_style(*to));
            l.push(&format!(": {cause}"), theme.dim());
        }
        FeedKind::RunStarted { .. } | FeedKind::Drill { .. } => {
            let sym = if matches!(e.kind, FeedKind::Drill { .. }) {
                "◆"
            } else {
                "▶"
            };
            l.push(&format!("{sym} {}", e.text()), theme.accent());
        }
        FeedKind::RunFinished { .. } => {
            let st = e.state().unwrap_or(StateKind::Ok);
            let sym = state_span(theme, st, false);
            l.push(&sym.content, sym.style);
            l.push(&format!(" {}", e.text()), theme.state_style(st));
        }
    }
    Line::from(l.spans)
}
