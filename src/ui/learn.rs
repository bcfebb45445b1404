//! Onboarding: the topology with what each tier does, each runbook in training mode, then a
//! drill on the lab resolved in the console and timed against the RTO.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::browser::{kind_label, severity_label};
use super::theme::Theme;
use super::widgets::{fit, pad, styled};
use crate::app::App;
use crate::app::state::{drill_hints, mmss};

/// What each tier of the seeds' stack does, for newcomers.
pub fn tier_role(tier: &str) -> &'static str {
    match tier {
        "lb" => {
            "The load balancer (nginx) takes every request and spreads it over the app servers; it health-checks them and stops sending traffic to one that fails."
        }
        "app" => {
            "Application servers: nginx hands requests to PHP-FPM workers running the app. They read and write MySQL, cache and keep sessions in Redis, and push slow work onto queues."
        }
        "db" => {
            "MySQL/MariaDB: the primary takes every write; the replica follows it through GTID replication and can be promoted if the primary dies."
        }
        "cache" => {
            "Redis holds sessions, cache and queues. Sentinel watches the master and, with a quorum of 2, promotes the replica when it fails."
        }
        "worker" => {
            "Queue workers (`queue:work`) take jobs from Redis lists and process them; if they stop, jobs pile up."
        }
        "docker" => "Services running as containers, managed through the Docker engine.",
        _ => "",
    }
}

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let n = app.runbooks.len();
    let page = app.learn.page.min(n + 1);
    let mut lines = Vec::new();
    let title;
    if page == 0 {
        title = " Learn 1: the stack ".to_owned();
        lines.push(Line::from(styled(
            format!("{} — traffic flows top to bottom.", app.inventory.name),
            theme.title(),
        )));
        for tier in &app.inventory.tiers {
            let hosts: Vec<&str> = app
                .inventory
                .hosts_in(&tier.name)
                .map(|h| h.name.as_str())
                .collect();
            lines.push(Line::default());
            lines.push(Line::from(styled(
                format!("{} ({})", tier.name.to_uppercase(), hosts.join(", ")),
                theme.accent(),
            )));
            let role = tier_role(&tier.name);
            let desc = if role.is_empty() {
                tier.description.clone().unwrap_or_default()
            } else {
                role.to_owned()
            };
            lines.push(Line::from(styled(desc, theme.base())));
        }
    } else if page <= n {
        let rb = &app.runbooks[page - 1];
        title = format!(" Learn {}: runbook {} of {n} ", page + 1, page);
        lines.push(Line::from(styled(rb.title.clone(), theme.title())));
        lines.push(Line::from(styled(
            format!(
                "severity {} · RTO {}",
                severity_label(rb.severity),
                rb.rto.map_or_else(|| "-".to_owned(), mmss)
            ),
            theme.dim(),
        )));
        lines.push(Line::from(styled(rb.summary.clone(), theme.base())));
        for (i, st) in rb.steps.iter().enumerate() {
            lines.push(Line::default());
            lines.push(Line::from(styled(
                format!("{}. [{}] {}", i + 1, kind_label(st.kind), st.title),
                theme.accent(),
            )));
            if !st.explain.is_empty() {
                lines.push(Line::from(styled(
                    st.explain.trim().to_owned(),
                    theme.base(),
                )));
            }
        }
        lines.push(Line::default());
        lines.push(Line::from(styled(
            "enter: walk through it as a dry run (nothing changes)",
            theme.dim(),
        )));
    } else {
        title = format!(" Learn {}: drills ", n + 2);
        drills_page(
            app,
            theme,
            &mut lines,
            usize::from(area.width.saturating_sub(2)),
        );
    }
    lines.push(Line::default());
    lines.push(Line::from(styled("← → pages · esc back", theme.dim())));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(styled(title, theme.title()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// Every drill with the runbook that fixes it, the one running with its clock, the last result.
fn drills_page(app: &App, theme: &Theme, lines: &mut Vec<Line<'static>>, width: usize) {
    lines.push(Line::from(styled(
        "Each drill injects a real fault on the lab. Find it on the dashboard and fix it from the console.",
        theme.title(),
    )));
    lines.push(Line::from(styled(
        "The clock starts when the servers show the fault and stops when they no longer do; the result is saved (opsdeck drill scores).",
        theme.base(),
    )));
    lines.push(Line::default());
    let name_w = app
        .drills
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(10);
    for (i, (name, what)) in app.drills.iter().enumerate() {
        let selected = i == app.learn.selected;
        let pairing = match app.drill_runbook(name) {
            Some(rb) => format!(
                "{} · RTO {}",
                rb.id,
                rb.rto.map_or_else(|| "-".to_owned(), mmss)
            ),
            None => "no runbook paired yet".to_owned(),
        };
        let marker = if selected { "› " } else { "  " };
        let pairing = format!("  {}", pad(&pairing, 38));
        let what = fit(&format!(" {what}"), width.saturating_sub(2 + name_w + 40));
        lines.push(Line::from(vec![
            styled(marker, theme.accent()),
            styled(
                pad(name, name_w),
                if selected {
                    theme.selection()
                } else {
                    theme.base()
                },
            ),
            styled(pairing, theme.accent()),
            styled(what, theme.dim()),
        ]));
    }
    lines.push(Line::default());
    match (&app.learn.drill, &app.learn.result) {
        (Some(d), _) => {
            let status = match d.confirmed {
                None if !d.injected => format!("injecting {} …", d.drill),
                None => format!(
                    "{} injected: waiting for the servers to show the fault (looked {} times); the clock has not started",
                    d.drill, d.pending_checks
                ),
                Some((_, at)) => format!(
                    "{}: the fault is on the servers since {} — clock {}{} · steps {} · hints {}",
                    d.drill,
                    at.format("%H:%M:%S"),
                    mmss(d.elapsed(app.now)),
                    d.rto
                        .map(|r| format!(" / RTO {}", mmss(r)))
                        .unwrap_or_default(),
                    d.steps,
                    d.hints
                ),
            };
            lines.push(Line::from(styled(status, theme.accent())));
            let key = app.keymap.hint(
                crate::app::keymap::Context::Global,
                crate::app::keymap::Action::Hint,
            );
            let hints = drill_hints(app, &d.drill);
            for h in hints.iter().take(d.hints as usize) {
                lines.push(Line::from(styled(format!("hint: {h}"), theme.base())));
            }
            if (d.hints as usize) < hints.len() {
                lines.push(Line::from(styled(
                    format!("{key}: a hint (counted in the score)"),
                    theme.dim(),
                )));
            }
        }
        (None, Some(s)) => {
            let verdict = match s.within_rto() {
                Some(true) => " — within the RTO",
                Some(false) => " — over the RTO",
                None => "",
            };
            lines.push(Line::from(styled(
                format!(
                    "last: {} resolved in {}{}{verdict} · {} steps · {} hints",
                    s.drill,
                    crate::lab::scores::clock(s.resolved_s),
                    s.rto_s
                        .map(|r| format!(" (RTO {})", crate::lab::scores::clock(r)))
                        .unwrap_or_default(),
                    s.steps,
                    s.hints
                ),
                theme.accent(),
            )));
            lines.push(Line::from(styled(
                "enter: start the selected drill",
                theme.dim(),
            )));
        }
        (None, None) => lines.push(Line::from(styled(
            "↑ ↓ pick a drill · enter: inject it (the clock starts when the servers show it)",
            theme.dim(),
        ))),
    }
}
