//! Onboarding: the topology with what each tier does, each runbook in training mode, then a
//! drill on the lab resolved in the console and timed against the RTO.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::browser::{kind_label, severity_label};
use super::theme::Theme;
use super::widgets::styled;
use crate::app::App;
use crate::app::state::{learn_drill, mmss};

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
        title = format!(" Learn {}: a drill ", n + 2);
        match learn_drill(app) {
            Some((drill, rb)) => {
                lines.push(Line::from(styled(
                    format!("The drill injects a real fault on the lab: {drill}."),
                    theme.title(),
                )));
                lines.push(Line::from(styled(format!("Find it on the dashboard, open the suggested runbook ({rb}) and resolve it. The clock runs from the injection until the fault is gone on the real servers."), theme.base())));
                match (&app.learn.drill, app.learn.result) {
                    (Some((_, _, started)), _) => lines.push(Line::from(styled(
                        format!(
                            "drill running for {} …",
                            mmss(app.now.saturating_duration_since(*started))
                        ),
                        theme.accent(),
                    ))),
                    (None, Some((took, rto))) => lines.push(Line::from(styled(
                        format!(
                            "resolved in {}{}",
                            mmss(took),
                            rto.map(|r| format!(
                                " (RTO {}: {})",
                                mmss(r),
                                if took <= r { "within" } else { "over" }
                            ))
                            .unwrap_or_default()
                        ),
                        theme.accent(),
                    ))),
                    (None, None) => lines.push(Line::from(styled(
                        "enter: inject the fault and start the clock",
                        theme.dim(),
                    ))),
                }
            }
            None => lines.push(Line::from(styled(
                "No drill fits the runbooks loaded.",
                theme.dim(),
            ))),
        }
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
