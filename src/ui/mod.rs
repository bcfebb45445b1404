//! Views and widgets: pure drawing from a state snapshot. No I/O, no locks, no awaits.

pub mod browser;
pub mod dashboard;
pub mod demo_state;
pub mod detail;
pub mod help;
pub mod journal;
pub mod learn;
pub mod run;
pub mod svg;
pub mod team;
pub mod theme;
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::keymap::{Action, Context};
use crate::app::{App, View};
use crate::probes::check::State;
use theme::Theme;
use widgets::{state_span, styled};

/// Draws the whole screen for `app`.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame) {
    let area = frame.area();
    frame.render_widget(Paragraph::new("").style(theme.base()), area);
    let banner = banner_line(app, theme);
    let [header, banner_area, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, theme, frame, header);
    if let Some(b) = banner {
        frame.render_widget(Paragraph::new(b), banner_area);
    }
    match app.view {
        View::Dashboard => dashboard::render(app, theme, frame, body),
        View::Detail => detail::render(app, theme, frame, body),
        View::Runbooks => browser::render(app, theme, frame, body),
        View::Run => run::render(app, theme, frame, body),
        View::Journal => journal::render(app, theme, frame, body),
        View::Learn => learn::render(app, theme, frame, body),
    }
    render_footer(app, theme, frame, footer);
    team::render_approval(app, theme, frame, area);
    if app.help {
        help::render(app, theme, frame, area);
    }
}

pub use crate::app::layout::body_area;

/// The suggestion banner on the dashboard: the most severe runbook health calls for.
fn banner_line(app: &App, theme: &Theme) -> Option<Line<'static>> {
    if app.view != View::Dashboard {
        return None;
    }
    let s = app.suggestions.first()?;
    let rb = &app.runbooks[s.runbook];
    let more = if app.suggestions.len() > 1 {
        format!(" (+{} more)", app.suggestions.len() - 1)
    } else {
        String::new()
    };
    let why = s.because.first().cloned().unwrap_or_default();
    Some(Line::from(vec![
        state_span(theme, s.state, true),
        styled(format!(" {why} → "), theme.state_style(s.state)),
        styled(format!("runbook: {}", rb.title), theme.title()),
        styled(
            format!(
                "{more}  ({} runbooks, enter on the host)",
                app.keymap.hint(Context::Global, Action::Runbooks)
            ),
            theme.dim(),
        ),
    ]))
}

fn render_header(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    // The whole header where it fits; on a narrow terminal the clock's zone (always UTC),
    // then the view's name, then the counts' labels (their symbols stay) give way, so the
    // clock is never cut.
    let width = usize::from(area.width);
    let mut chosen = Vec::new();
    for (view, labels, zone) in [
        (true, true, true),
        (true, true, false),
        (false, true, false),
        (false, false, false),
    ] {
        let (spans, clock) = header_spans(app, theme, view, labels, zone);
        let used: usize = spans
            .iter()
            .chain(std::iter::once(&clock))
            .map(|s| s.content.chars().count())
            .sum();
        chosen = spans;
        let fits = used <= width;
        chosen.push(Span::raw(" ".repeat(width.saturating_sub(used))));
        chosen.push(clock);
        if fits {
            break;
        }
    }
    frame.render_widget(
        Paragraph::new(Line::from(chosen)).style(theme.header()),
        area,
    );
}

/// The header's spans (without the gap) and its clock.
fn header_spans(
    app: &App,
    theme: &Theme,
    view: bool,
    labels: bool,
    zone: bool,
) -> (Vec<Span<'static>>, Span<'static>) {
    let overall = app.overall();
    let count = |s: State| {
        app.inventory
            .hosts
            .iter()
            .filter(|h| app.host_state(&h.name) == s)
            .count()
    };
    let mut spans = vec![
        styled(" opsdeck ", theme.title()),
        styled("│ ", theme.dim()),
        styled(format!("{} ", app.inventory.name), theme.header()),
        styled("│ ", theme.dim()),
        state_span(theme, overall, true),
        styled(" │ ", theme.dim()),
    ];
    for s in [State::Down, State::Critical, State::Warning, State::Unknown] {
        let n = count(s);
        if n > 0 {
            if labels {
                spans.push(state_span(theme, s, false));
            } else {
                spans.push(styled(theme.state(s).symbol.clone(), theme.state_style(s)));
            }
            spans.push(styled(format!(" {n}  "), theme.header()));
        }
    }
    spans.push(styled(
        format!(
            "{}/{} hosts ok ",
            count(State::Ok),
            app.inventory.hosts.len()
        ),
        theme.header(),
    ));
    if view {
        spans.push(styled("│ ", theme.dim()));
        spans.push(styled(format!("{} ", app.view.title()), theme.accent()));
    }
    if let Some(run) = app
        .run
        .as_ref()
        .filter(|r| r.engine.is_some() && r.finished.is_none())
    {
        // The incident clock against the RTO while a runbook runs.
        let elapsed = run.elapsed(app.now);
        let text = match run.runbook.rto {
            Some(rto) => format!(
                "│ run {} {} / RTO {} ",
                run.runbook.id,
                crate::app::state::mmss(elapsed),
                crate::app::state::mmss(rto)
            ),
            None => format!(
                "│ run {} {} ",
                run.runbook.id,
                crate::app::state::mmss(elapsed)
            ),
        };
        let over = run.runbook.rto.is_some_and(|r| elapsed > r);
        spans.push(styled(
            text,
            if over {
                theme.state_style(State::Critical)
            } else {
                theme.accent()
            },
        ));
    }
    if let Some(d) = &app.learn.drill {
        let (text, over) = match d.confirmed {
            Some(_) => {
                let took = d.elapsed(app.now);
                let rto = d
                    .rto
                    .map(|r| format!(" / RTO {}", crate::app::state::mmss(r)))
                    .unwrap_or_default();
                (
                    format!(
                        "│ drill {} {}{rto} ",
                        d.drill,
                        crate::app::state::mmss(took)
                    ),
                    d.rto.is_some_and(|r| took > r),
                )
            }
            None => (
                format!("│ drill {}: waiting for the fault ", d.drill),
                false,
            ),
        };
        spans.push(styled(
            text,
            if over {
                theme.state_style(State::Critical)
            } else {
                theme.accent()
            },
        ));
    }
    if let Some(t) = team::header_span(app, theme) {
        spans.push(t);
    }
    let unfinished = app
        .journal
        .runs
        .iter()
        .filter(|r| r.outcome.is_none())
        .count();
    if unfinished > 0 && app.run.is_none() {
        spans.push(styled(
            format!(
                "│ ⟳ {unfinished} unfinished run{} (journal: resume) ",
                if unfinished == 1 { "" } else { "s" }
            ),
            theme.state_style(State::Warning),
        ));
    }
    let clock = styled(
        app.wall
            .format(if zone { "%H:%M:%S UTC " } else { "%H:%M:%S " })
            .to_string(),
        theme.header(),
    );
    (spans, clock)
}

fn render_footer(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    if let Some(f) = &app.flash {
        frame.render_widget(
            Paragraph::new(styled(format!(" {f}"), theme.accent())),
            area,
        );
        return;
    }
    let k = |a: Action| app.keymap.hint(Context::Global, a);
    let hints: Vec<(String, &str)> = match app.view {
        View::Dashboard => vec![
            (k(Action::Open), "details"),
            (format!("{}/{}", k(Action::Down), k(Action::Up)), "host"),
            (format!("{}/{}", k(Action::Left), k(Action::Right)), "tier"),
        ],
        View::Detail => {
            let mut v = vec![
                (k(Action::Back), "back"),
                (format!("{}/{}", k(Action::Down), k(Action::Up)), "check"),
            ];
            if app
                .selected_host()
                .is_some_and(|h| !app.host_suggestions(&h.name).is_empty())
            {
                v.push((k(Action::Open), "suggested runbook"));
            }
            v
        }
        View::Runbooks => {
            let b = |a: Action| app.keymap.hint(Context::Browser, a);
            vec![
                (k(Action::Open), "start"),
                (k(Action::Search), "search"),
                (b(Action::FilterTier), "tier"),
                (b(Action::FilterSeverity), "severity"),
                (k(Action::Dashboard), "dashboard"),
            ]
        }
        View::Run => {
            let r = |a: Action| app.keymap.hint(Context::Run, a);
            vec![
                (r(Action::Confirm), "confirm"),
                (r(Action::Skip), "skip"),
                (r(Action::Note), "note"),
                (r(Action::Abort), "abort"),
                (
                    format!("{}/{}", r(Action::PrevHost), r(Action::NextHost)),
                    "host",
                ),
                (format!("{}/{}", k(Action::Down), k(Action::Up)), "step"),
            ]
        }
        View::Journal => vec![
            (format!("{}/{}", k(Action::Down), k(Action::Up)), "run"),
            (k(Action::Back), "back"),
        ],
        View::Learn => vec![
            (format!("{}/{}", k(Action::Left), k(Action::Right)), "page"),
            (k(Action::Open), "start"),
            (k(Action::Back), "back"),
        ],
    };
    let mut spans = Vec::new();
    let mut hints = hints;
    if app.learn.drill.is_some() {
        hints.push((k(Action::Hint), "drill hint"));
    }
    let tail = [(k(Action::Help), "help"), (k(Action::Quit), "quit")];
    for (keys, what) in hints.iter().chain(tail.iter()) {
        spans.push(styled(format!(" {keys}"), theme.accent()));
        spans.push(styled(format!(" {what} "), theme.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(theme.base()), area);
}
