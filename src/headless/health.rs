//! `opsdeck health`: one sweep (or a watch) of every selected host's probes, reported as a
//! table grouped by tier, one JSON document, or JSON Lines (one document per sweep).
//!
//! Exit status (see [`exit_code`]): 0 ok, 3 warning, 4 unknown, 5 critical, 6 down — the
//! worst state of any check; 2 is a configuration error, 1 an internal failure.
//!
//! A check's reason quotes what a server said (an error, a value), and a server can say a
//! password: every report is masked when it is built ([`Report::new`]), before anything
//! formats or escapes it, and its JSON is masked again string by string
//! ([`crate::secret::to_masked_json`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::exit;
use super::table::{Colors, Table, Tone, cell};
use crate::inventory::{Host, Inventory};
use crate::probes::check::{self, Check, State};
use crate::probes::plan::Intervals;
use crate::probes::thresholds::ThresholdErrors;
use crate::secret::{mask, to_masked_json};
use crate::transport::Connections;

/// The exit status for a worst state.
pub fn exit_code(worst: State) -> i32 {
    match worst {
        State::Ok => exit::OK,
        State::Warning => exit::WARNING,
        State::Unknown => exit::UNKNOWN,
        State::Critical => exit::CRITICAL,
        State::Down => exit::DOWN,
    }
}

/// How health is probed: the interval thresholds are judged against, the per-probe timeout,
/// probes in flight at once.
pub use crate::probes::sweep::SweepOptions as Options;
pub use crate::probes::sweep::SweepProgress;

/// One health report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub inventory: String,
    pub at: DateTime<Utc>,
    pub worst: State,
    /// Number of checks in each state.
    pub counts: BTreeMap<State, usize>,
    pub checks: Vec<Check>,
}

impl Report {
    /// A report of `checks`, with every text in them masked.
    pub fn new(inventory: &str, mut checks: Vec<Check>) -> Self {
        for c in &mut checks {
            for text in [
                &mut c.host,
                &mut c.tier,
                &mut c.id,
                &mut c.instance,
                &mut c.reason,
            ] {
                if let std::borrow::Cow::Owned(m) = mask(text) {
                    *text = m;
                }
            }
        }
        let mut counts = BTreeMap::new();
        for c in &checks {
            *counts.entry(c.state).or_insert(0) += 1;
        }
        Report {
            inventory: mask(inventory).into_owned(),
            at: Utc::now(),
            worst: check::worst(&checks),
            counts,
            checks,
        }
    }
}

/// One sweep over `hosts`.
pub async fn once(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &Options,
) -> Result<Report, ThresholdErrors> {
    once_with(conns, inv, hosts, opts, &mut |_| {}).await
}

/// [`once`], calling `progress` each time a probe answers (the progress line on a terminal).
pub async fn once_with(
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &Options,
    progress: &mut (dyn FnMut(SweepProgress) + Send),
) -> Result<Report, ThresholdErrors> {
    let sweep = crate::probes::sweep::sweep_with(conns, inv, hosts, opts, progress).await?;
    Ok(Report::new(&inv.name, sweep.checks))
}

/// Watches `hosts`, writing one JSON line per interval to `out`, until Ctrl-C or `count`
/// lines. Returns the worst state of the last line.
pub async fn watch(
    conns: Arc<Connections>,
    inv: &Inventory,
    hosts: &[&Host],
    opts: &Options,
    count: Option<u64>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<State> {
    let pipeline = crate::probes::driver::start(
        conns,
        inv,
        hosts,
        &Intervals::uniform(opts.interval),
        opts.scheduler(),
    )?;
    let (mut state, mut rx, stopper) = pipeline.into_parts();
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lines = 0u64;
    let mut worst = State::Ok;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            Some(r) = rx.recv() => state.update(r),
            _ = ticker.tick() => {
                let report = Report::new(&inv.name, state.checks(Instant::now()));
                worst = report.worst;
                out.write_all(to_json(&report, false)?.as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()?;
                lines += 1;
                if count.is_some_and(|c| lines >= c) {
                    break;
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    stopper.stop().await;
    Ok(worst)
}

/// The report as one JSON document (`pretty`) or one line, every string masked.
pub fn to_json(report: &Report, pretty: bool) -> serde_json::Result<String> {
    to_masked_json(report, pretty)
}

/// The table: one block per tier (inventory order), a row per check; masked; plain.
pub fn render_text(inv: &Inventory, report: &Report) -> String {
    render_text_colored(inv, report, Colors(false))
}

/// [`render_text`], states coloured when `colors` says so. Columns align by display width
/// across every tier's block.
pub fn render_text_colored(inv: &Inventory, report: &Report, colors: Colors) -> String {
    mask(&table(inv, report, colors)).into_owned()
}

fn table(inv: &Inventory, report: &Report, colors: Colors) -> String {
    let label = |c: &Check| {
        if c.instance.is_empty() || c.id.contains(&c.instance) {
            c.id.clone()
        } else {
            format!("{} [{}]", c.id, c.instance)
        }
    };
    // One table for every block, so the columns line up across tiers.
    let mut all = Table::new();
    all.min_widths = vec![4, 5, 8];
    for c in &report.checks {
        all.row(vec![
            c.host.clone().into(),
            label(c).into(),
            c.state.as_str().into(),
        ]);
    }
    let widths = all.widths();
    let mut tiers: Vec<&str> = inv.tiers.iter().map(|t| t.name.as_str()).collect();
    for c in &report.checks {
        if !tiers.contains(&c.tier.as_str()) {
            tiers.push(&c.tier);
        }
    }
    let mut out = String::new();
    for tier in tiers {
        let rows: Vec<&Check> = report.checks.iter().filter(|c| c.tier == tier).collect();
        if rows.is_empty() {
            continue;
        }
        let worst = check::worst(rows.iter().copied());
        let _ = writeln!(
            out,
            "{} ({})",
            colors.paint(Tone::Strong, tier),
            colors.paint(Tone::of(worst), worst.as_str())
        );
        let mut t = Table::new();
        t.indent = "  ".to_owned();
        t.min_widths.clone_from(&widths);
        for c in rows {
            t.row(vec![
                c.host.clone().into(),
                label(c).into(),
                cell(c.state.as_str(), Tone::of(c.state)),
                c.reason.clone().into(),
            ]);
        }
        out.push_str(&t.render(colors));
    }
    let counts: Vec<String> = report
        .counts
        .iter()
        .rev()
        .map(|(s, n)| colors.paint(Tone::of(*s), &format!("{n} {s}")))
        .collect();
    let _ = writeln!(
        out,
        "worst: {} ({})",
        colors.paint(Tone::of(report.worst), report.worst.as_str()),
        counts.join(", ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_do_not_collide_with_config_errors() {
        assert_eq!(exit_code(State::Ok), 0);
        let codes: Vec<i32> = [State::Warning, State::Unknown, State::Critical, State::Down]
            .into_iter()
            .map(exit_code)
            .collect();
        assert_eq!(codes, vec![3, 4, 5, 6]);
        assert!(!codes.contains(&exit::CONFIG) && !codes.contains(&exit::FAILED));
    }

    #[test]
    fn table_groups_by_tier_in_inventory_order() {
        let inv = crate::inventory::load_str(
            "[tiers.lb]\n[tiers.db]\n[hosts.db-1]\ntier = \"db\"\nlocal = {}\n[hosts.lb-1]\ntier = \"lb\"\nlocal = {}\n",
            std::path::Path::new("t.toml"),
        )
        .expect("inventory");
        let c = |host: &str, tier: &str, id: &str, state: State, reason: &str| Check {
            host: host.to_owned(),
            tier: tier.to_owned(),
            id: id.to_owned(),
            instance: String::new(),
            state,
            reason: reason.to_owned(),
            value: None,
            at: None,
        };
        let report = Report::new(
            "t",
            vec![
                c(
                    "db-1",
                    "db",
                    "mysql.connections",
                    State::Critical,
                    "connections 148/150 (99 %)",
                ),
                c("lb-1", "lb", "host.cpu", State::Ok, "cpu 3 % busy"),
            ],
        );
        let text = render_text(&inv, &report);
        let lb = text.find("lb (ok)").expect("lb block");
        let db = text.find("db (critical)").expect("db block");
        assert!(lb < db, "{text}");
        assert!(
            text.contains("db-1  mysql.connections  critical  connections 148/150 (99 %)"),
            "{text}"
        );
        assert!(
            text.ends_with("worst: critical (1 critical, 1 ok)\n"),
            "{text}"
        );
    }
}
