//! `opsdeck approve` and `opsdeck team`: the headless side of team mode.

use std::io::{BufRead as _, Write as _};

use anyhow::bail;

use super::exit;
use crate::inventory::Inventory;
use crate::secret;
use crate::team::{Team, approvals};

fn team(inv: &Inventory) -> anyhow::Result<Team> {
    match &inv.team {
        Some(cfg) => Ok(Team::new(cfg)),
        None => bail!(
            "inventory {} has no [team]: team mode is off\n  hint: add [team] with endpoints = [\"http://ETCD:2379\"] to share locks, the journal and approvals",
            inv.name
        ),
    }
}

/// Approves (run, step) as this operator, after showing what it covers.
pub async fn approve(inv: &Inventory, run: &str, step: &str, yes: bool) -> anyhow::Result<i32> {
    let team = team(inv)?;
    let me = crate::runbook::journal::operator();
    let Some(req) = team.approval_request(run, step).await? else {
        eprintln!(
            "opsdeck: run {run} is not waiting for a second person on step {step:?} (or its request expired)"
        );
        return Ok(exit::CONFIG);
    };
    println!(
        "run {} ({}) asks a second person to approve step `{}`{}",
        req.run,
        req.runbook,
        req.step,
        if req.title.is_empty() {
            String::new()
        } else {
            format!(": {}", req.title)
        }
    );
    println!("asked by {} at {}; it covers:", req.requested_by, req.at);
    for c in &req.covers {
        println!(
            "  {}{}: {}",
            c.host.as_deref().unwrap_or("-"),
            c.item
                .as_ref()
                .map(|i| format!(" [{i}]"))
                .unwrap_or_default(),
            secret::mask(&c.command)
        );
    }
    if approvals::account(&me) == approvals::account(&req.requested_by) {
        eprintln!(
            "opsdeck: you ({me}) asked for this approval: a second person, from another account, must give it"
        );
        return Ok(exit::REFUSED);
    }
    if !yes {
        print!("approve as {me}? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("not approved");
            return Ok(exit::ABORTED);
        }
    }
    team.grant_approval(&req, &me).await?;
    println!(
        "approved by {me} (valid {})",
        humantime::format_duration(approvals::GRANT_TTL)
    );
    Ok(exit::OK)
}

/// Who runs what right now, and whether etcd answers.
pub async fn status(inv: &Inventory, json: bool) -> anyhow::Result<i32> {
    let team = team(inv)?;
    match team.active_runs().await {
        Ok(runs) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"etcd": "ok", "endpoints": team.client.endpoints(), "active": runs})
                );
            } else {
                println!("etcd: ok ({})", team.client.endpoints().join(", "));
                if runs.is_empty() {
                    println!("no run holds a lock right now");
                }
                for r in runs {
                    println!(
                        "{}  {}  by {} on {} since {}",
                        r.run,
                        r.runbook,
                        r.operator,
                        r.target.join(","),
                        r.since
                    );
                }
            }
            Ok(exit::OK)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"etcd": "unreachable", "error": secret::mask(&e.to_string())})
                );
            } else {
                eprintln!("opsdeck: {}", secret::mask(&e.to_string()));
            }
            Ok(exit::FAILED)
        }
    }
}
