//! Guided execution: the step list with marks, the current step's explanation and exact
//! command per host, live output per host, and the confirmation dialog.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::browser::kind_label;
use super::theme::{StateKind, Theme};
use super::widgets::{fit, styled};
use crate::app::App;
use crate::app::keymap::{Action, Context};
use crate::app::run::{Mark, Typing};
use crate::app::state::mmss;
use crate::runbook::engine::{DecisionKind, Outcome, StepStatus};

fn mark_span(theme: &Theme, m: Mark) -> Span<'static> {
    let (sym, st) = match m {
        Mark::Pending => ("·", theme.dim()),
        Mark::Running => ("▶", theme.accent().add_modifier(Modifier::BOLD)),
        Mark::Waiting => ("?", theme.state_style(StateKind::Warning)),
        Mark::Done(StepStatus::Succeeded) => ("✔", theme.state_style(StateKind::Ok)),
        Mark::Done(StepStatus::Failed) => ("✖", theme.state_style(StateKind::Critical)),
        Mark::Done(StepStatus::Skipped) => ("↷", theme.dim()),
        Mark::Done(StepStatus::Unknown) => ("?", theme.state_style(StateKind::Unknown)),
        Mark::Done(StepStatus::Refused) => ("⊘", theme.state_style(StateKind::Critical)),
    };
    styled(sym, st)
}

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(run) = &app.run else {
        let hint = app.keymap.hint(Context::Global, Action::Runbooks);
        frame.render_widget(
            Paragraph::new(format!(
                " No run in progress. Press {hint} to pick a runbook."
            ))
            .style(theme.dim()),
            area,
        );
        return;
    };
    let rb = &run.runbook;
    let [top, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    // The run's header: title, RTO clock, journal.
    let elapsed = if run.engine.is_some() {
        run.elapsed(app.now)
    } else {
        std::time::Duration::ZERO
    };
    let clock = match rb.rto {
        Some(rto) => {
            let over = elapsed > rto;
            let st = if over {
                theme.state_style(StateKind::Critical)
            } else {
                theme.accent()
            };
            styled(format!(" {} / RTO {} ", mmss(elapsed), mmss(rto)), st)
        }
        None => styled(format!(" {} ", mmss(elapsed)), theme.accent()),
    };
    let mode = if run.training {
        " [training: dry run]"
    } else if run.dry_run {
        " [dry run]"
    } else {
        ""
    };
    let mode = match &run.narrow {
        Some(t) => format!("{mode} on {t}"),
        None => mode.to_owned(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            styled(format!(" {}{mode}", rb.title), theme.title()),
            clock,
            styled(
                run.run_id
                    .as_deref()
                    .map(|r| format!(" run {r}"))
                    .unwrap_or_default(),
                theme.dim(),
            ),
        ])),
        top,
    );
    let [steps_area, right] = Layout::horizontal([
        Constraint::Length((area.width / 3).clamp(24, 56)),
        Constraint::Min(10),
    ])
    .areas(body);

    let shown = run.shown_step();
    let mut lines = Vec::new();
    let w = usize::from(steps_area.width.saturating_sub(6));
    for (i, st) in rb.steps.iter().enumerate() {
        let style = if i == shown {
            theme.selection()
        } else {
            theme.base()
        };
        lines.push(Line::from(vec![
            mark_span(theme, run.marks[i]),
            Span::raw(" "),
            styled(fit(&st.title, w), style),
        ]));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(" Steps ", theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), steps_area);

    let [detail, output] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);
    let step = &rb.steps[shown.min(rb.steps.len().saturating_sub(1))];
    let mut d = vec![Line::from(vec![
        styled(format!("{} ", kind_label(step.kind)), theme.accent()),
        styled(step.title.clone(), theme.title()),
    ])];
    if let Some(t) = &step.target {
        d.push(Line::from(styled(
            format!("targets: {} ({:?})", t.selector, t.pick).to_lowercase(),
            theme.dim(),
        )));
    }
    if !step.explain.is_empty() {
        d.push(Line::from(styled(
            step.explain.trim().to_owned(),
            theme.base(),
        )));
    }
    if let Some(ask) = run.ask.as_ref().filter(|a| a.step == step.id)
        && let Some(c) = &ask.command
    {
        d.push(Line::from(vec![
            styled(
                format!("on {}: ", ask.host.as_deref().unwrap_or("-")),
                theme.dim(),
            ),
            styled(c.to_string(), theme.accent()),
        ]));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(" Step ", theme.title()));
    frame.render_widget(
        Paragraph::new(d).block(block).wrap(Wrap { trim: false }),
        detail,
    );

    // Output of the shown step, one host at a time.
    let hosts = run.hosts_of(&step.id);
    let tab = run.host_tab.min(hosts.len().saturating_sub(1));
    let host = hosts.get(tab).cloned().flatten();
    let tabs: Vec<Span> = hosts
        .iter()
        .enumerate()
        .flat_map(|(i, h)| {
            let name = h.clone().unwrap_or_else(|| "run".to_owned());
            let st = if i == tab {
                theme.selection()
            } else {
                theme.dim()
            };
            [styled(format!(" {name} "), st), Span::raw(" ")]
        })
        .collect();
    let out: Vec<Line> = run
        .log
        .iter()
        .filter(|l| l.step == step.id && (hosts.is_empty() || l.host == host))
        .map(|l| Line::from(styled(l.text.clone(), theme.base())))
        .collect();
    let height = usize::from(output.height.saturating_sub(2));
    let skip = out.len().saturating_sub(height + usize::from(run.scroll));
    let out: Vec<Line> = out.into_iter().skip(skip).take(height).collect();
    let mut title = vec![styled(" Output ", theme.title())];
    title.extend(tabs);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Line::from(title));
    frame.render_widget(Paragraph::new(out).block(block), output);

    if let Some(t) = &run.typing {
        typing_dialog(app, theme, frame, area, t);
    } else if let Some(ask) = &run.ask {
        decision_dialog(app, theme, frame, area, ask);
    } else if let Some((outcome, message)) = &run.finished {
        summary(app, theme, frame, area, *outcome, message);
    }
}

pub(crate) fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

fn key(app: &App, a: Action) -> String {
    let ctx = if matches!(a, Action::Open | Action::Back) {
        Context::Global
    } else {
        Context::Run
    };
    app.keymap.hint(ctx, a)
}

fn decision_dialog(
    app: &App,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    ask: &crate::app::run::Ask,
) {
    let host = ask.host.as_deref().unwrap_or("-");
    let hosts: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for c in &ask.covers {
            let h = c.host.as_deref().unwrap_or("-");
            if !v.contains(&h) {
                v.push(h);
            }
        }
        v
    };
    let on = match hosts.len() {
        0 | 1 => host.to_owned(),
        n => format!("{n} hosts"),
    };
    let count = ask.covers.len();
    let (title, choices) = match &ask.kind {
        DecisionKind::Confirm => (
            if count > 1 {
                format!(" Run these {count} commands on {on}? ")
            } else {
                format!(" Run this on {on}? ")
            },
            vec![
                (key(app, Action::Confirm), "run all listed"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::TypedConfirm { expected } => (
            format!(" Destructive ({count} on {host}): type {expected} to confirm "),
            vec![
                (key(app, Action::Confirm), "type the name"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::MarkDone => (
            " Manual step ".to_owned(),
            vec![
                (key(app, Action::MarkDone), "mark done"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::Failed => (
            " Step failed ".to_owned(),
            vec![
                (key(app, Action::Retry), "retry"),
                (key(app, Action::ChangeInput), "change an input, go back"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::Input { name, .. } => (
            format!(" Input {name} needed "),
            vec![
                (key(app, Action::Confirm), "enter it"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::SecondPerson { .. } => (
            " Waiting for a second person's approval ".to_owned(),
            vec![
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::NothingToDo { list, .. } => (
            format!(" Nothing to do: {list} is empty "),
            vec![
                (key(app, Action::ChangeInput), "change an input, go back"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
        DecisionKind::ResolveUnknown => (
            format!(" Outcome unknown on {host}: check the server "),
            vec![
                (key(app, Action::MarkDone), "it happened"),
                (key(app, Action::Retry), "run again"),
                (key(app, Action::Skip), "skip"),
                (key(app, Action::Abort), "abort"),
            ],
        ),
    };
    // Room for every covered command that fits; the rest scroll (up/down), with a count.
    let width = area.width.saturating_sub(4).clamp(20, 110);
    let fixed: u16 = 5 + u16::from(ask.reason.is_some()) * 2;
    let room = area.height.saturating_sub(fixed + 2).max(1);
    let listed = u16::try_from(count.max(1)).unwrap_or(u16::MAX).min(room);
    let more = u16::from(count > usize::from(listed));
    let r = popup(area, width, fixed + listed + more);
    frame.render_widget(Clear, r);
    let mut lines = vec![Line::from(styled(
        format!("step {}", ask.step),
        theme.dim(),
    ))];
    if let Some(why) = &ask.reason {
        lines.push(Line::from(styled(
            why.clone(),
            theme.state_style(StateKind::Critical),
        )));
        lines.push(Line::default());
    }
    if ask.covers.is_empty() {
        if let Some(c) = &ask.command {
            lines.push(Line::from(styled(
                c.to_string(),
                theme.accent().add_modifier(Modifier::BOLD),
            )));
        }
    } else {
        let start = usize::from(ask.scroll).min(count.saturating_sub(1));
        let shown = usize::from(listed);
        for c in ask.covers.iter().skip(start).take(shown) {
            let label = match (&c.host, &c.item) {
                (Some(h), Some(i)) => format!("{h} [{i}] "),
                (Some(h), None) => format!("{h} "),
                (None, Some(i)) => format!("[{i}] "),
                (None, None) => String::new(),
            };
            let command = c.command.lines().collect::<Vec<_>>().join(" ⏎ ");
            lines.push(Line::from(vec![
                styled(label, theme.dim()),
                styled(command, theme.accent().add_modifier(Modifier::BOLD)),
            ]));
        }
        if count > shown {
            lines.push(Line::from(styled(
                format!(
                    "{}–{} of {count} · ↑/↓ to see them all; the answer covers every one",
                    start + 1,
                    (start + shown).min(count)
                ),
                theme.dim(),
            )));
        }
    }
    lines.push(Line::default());
    let mut spans = Vec::new();
    for (k, what) in choices {
        spans.push(styled(format!(" {k} "), theme.selection()));
        spans.push(styled(format!(" {what}   "), theme.base()));
    }
    lines.push(Line::from(spans));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.state_style(StateKind::Warning))
        .title(styled(title, theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), r);
}

fn typing_dialog(app: &App, theme: &Theme, frame: &mut Frame, area: Rect, t: &Typing) {
    let r = popup(area, 64, 7);
    frame.render_widget(Clear, r);
    let run = app.run.as_ref();
    let (title, help, value) = match t {
        Typing::Input { index, value } => {
            let input = run.and_then(|r| r.runbook.inputs.get(*index));
            // Where the offered default came from (the diagnosis on screen behind).
            let how = run
                .and_then(|r| r.ask.as_ref())
                .and_then(|a| match &a.kind {
                    DecisionKind::Input { computed, .. } => computed.clone(),
                    _ => None,
                })
                .map(|c| format!(" — default from {c}"))
                .unwrap_or_default();
            (
                format!(" Input {} ", input.map_or("", |i| i.name.as_str())),
                format!(
                    "{}{how}",
                    input.map(|i| i.description.clone()).unwrap_or_default()
                ),
                value,
            )
        }
        Typing::Change { names, at, value } => (
            format!(
                " Change {} (tab: next input) ",
                names.get(*at).map_or("", String::as_str)
            ),
            "the run goes back to the first step that reads it".to_owned(),
            value,
        ),
        Typing::Note(v) => (
            " Note for the journal ".to_owned(),
            "what you saw or did".to_owned(),
            v,
        ),
        Typing::Typed(v) => {
            let expected = run
                .and_then(|r| r.ask.as_ref())
                .and_then(|a| match &a.kind {
                    DecisionKind::TypedConfirm { expected } => Some(expected.clone()),
                    _ => None,
                });
            (
                " Type the target's name to confirm ".to_owned(),
                format!("expected: {}", expected.unwrap_or_default()),
                v,
            )
        }
    };
    let lines = vec![
        Line::from(styled(help, theme.dim())),
        Line::default(),
        Line::from(vec![
            styled("> ", theme.accent()),
            styled(
                format!("{value}▏"),
                theme.base().add_modifier(Modifier::BOLD),
            ),
        ]),
        Line::from(styled("enter accept · esc cancel", theme.dim())),
    ];
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.accent())
        .title(styled(title, theme.title()));
    frame.render_widget(Paragraph::new(lines).block(block), r);
}

fn summary(
    app: &App,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    outcome: Outcome,
    message: &str,
) {
    let Some(run) = &app.run else { return };
    let r = popup(area, 72, 12);
    frame.render_widget(Clear, r);
    let (label, st) = match outcome {
        Outcome::Succeeded => ("succeeded", theme.state_style(StateKind::Ok)),
        Outcome::Failed => ("failed", theme.state_style(StateKind::Critical)),
        Outcome::NeedsApproval => ("needs approval", theme.state_style(StateKind::Warning)),
        Outcome::Aborted => ("aborted", theme.state_style(StateKind::Warning)),
        Outcome::Refused => ("refused", theme.state_style(StateKind::Critical)),
        Outcome::NotResolved => ("NOT RESOLVED", theme.state_style(StateKind::Critical)),
    };
    let count = |s: StepStatus| run.marks.iter().filter(|m| **m == Mark::Done(s)).count();
    let mut lines = vec![
        Line::from(vec![
            styled(format!("{} ", run.runbook.title), theme.title()),
            styled(label, st),
        ]),
        Line::from(styled(message.to_owned(), theme.base())),
        Line::default(),
        Line::from(styled(
            format!(
                "{} succeeded · {} failed · {} skipped · {} unknown · took {}",
                count(StepStatus::Succeeded),
                count(StepStatus::Failed),
                count(StepStatus::Skipped),
                count(StepStatus::Unknown),
                mmss(run.elapsed(app.now))
            ),
            theme.base(),
        )),
    ];
    for o in &run.overruns {
        lines.push(Line::from(styled(
            o.clone(),
            theme.state_style(StateKind::Warning),
        )));
    }
    if let Some(score) = app
        .learn
        .result
        .as_ref()
        .filter(|s| run.run_id.as_ref().is_some_and(|id| s.runs.contains(id)))
    {
        let took = crate::lab::scores::clock(score.resolved_s);
        let verdict = match score.rto_s {
            Some(rto) if score.resolved_s <= rto => format!(
                "drill {} resolved in {took} — within the RTO of {}",
                score.drill,
                crate::lab::scores::clock(rto)
            ),
            Some(rto) => format!(
                "drill {} resolved in {took} — over the RTO of {}",
                score.drill,
                crate::lab::scores::clock(rto)
            ),
            None => format!("drill {} resolved in {took}", score.drill),
        };
        lines.push(Line::from(styled(verdict, theme.accent())));
    }
    if let Some(p) = &run.journal_path {
        lines.push(Line::from(styled(format!("journal: {p}"), theme.dim())));
    }
    if let Some(p) = &run.exported {
        lines.push(Line::from(styled(format!("timeline: {p}"), theme.dim())));
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        styled(format!(" {} ", key(app, Action::Export)), theme.selection()),
        styled(" export Markdown timeline   ", theme.base()),
        styled(format!(" {} ", key(app, Action::Back)), theme.selection()),
        styled(" close", theme.base()),
    ]));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(st)
        .title(styled(" Run finished ", theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        r,
    );
}
