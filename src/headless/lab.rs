//! The lab commands' machine-readable output (`lab status --json`, `drill ... --json`) and
//! the progress line of `lab up`. The text output stays with the lab (`lab::cli`).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::exit;
use crate::cli::{LabAction, LabDir};
use crate::lab::layout::{self, Lab, Result};
use crate::lab::{cli, drill, stack, web, wire};
use crate::secret;

fn trusted(dir: &LabDir) -> Result<Lab> {
    let lab = Lab::new(dir.dir.as_deref());
    lab.check_trusted()?;
    Ok(lab)
}

/// `lab status --json`: every process and disk as one JSON document; exit 1 when something
/// is stopped (as the text form).
pub fn status_json(dir: &LabDir) -> Result<(String, i32)> {
    let lab = trusted(dir)?;
    if !lab.exists() {
        return Err(layout::LabError::NotRunning {
            dir: lab.dir.display().to_string(),
        });
    }
    let procs: Vec<serde_json::Value> = stack::process_status(&lab)
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name, "host": p.host, "kind": p.kind, "pid": p.pid,
                "state": if p.running { "running" } else { "stopped" },
                "address": p.listen,
            })
        })
        .collect();
    let disks: Vec<serde_json::Value> = layout::HOSTS
        .iter()
        .map(|h| {
            let point = lab.disk(h.name);
            let mounted = web::is_mounted(&point);
            let used = mounted
                .then(|| wire::disk_used_percent(&point).ok())
                .flatten();
            json!({
                "host": h.name, "mount": point, "mounted": mounted,
                "used_percent": used, "size_mb": layout::DISK_MB,
            })
        })
        .collect();
    let running = stack::is_running(&lab);
    let doc = json!({
        "dir": lab.dir, "inventory": lab.inventory(), "running": running,
        "processes": procs, "disks": disks,
    });
    let text = secret::to_masked_json(&doc, true).map_err(|e| {
        layout::LabError::Failed(format!("cannot write the lab status as JSON: {e}"))
    })?;
    Ok((text, if running { exit::OK } else { exit::FAILED }))
}

/// `drill NAME --json` in every form: `list`, `reset`, `NAME --check`, `NAME`.
pub fn drill_json(name: &str, check: bool, dir: &LabDir) -> Result<(String, i32)> {
    let (doc, code) = match (name, check) {
        ("list", false) => {
            let list: Vec<serde_json::Value> = drill::DRILLS
                .iter()
                .map(|(n, d)| json!({"name": n, "description": d}))
                .collect();
            (json!(list), exit::OK)
        }
        ("reset", false) => {
            let lab = trusted(dir)?;
            (json!({"reset": drill::reset(&lab)?}), exit::OK)
        }
        (name, true) => {
            let lab = trusted(dir)?;
            let o = drill::check(&lab, name)?;
            (
                json!({"drill": name, "present": o.present, "detail": o.detail}),
                if o.present { exit::OK } else { exit::FAILED },
            )
        }
        (name, false) => {
            let lab = trusted(dir)?;
            (
                json!({"drill": name, "injected": drill::inject(&lab, name)?}),
                exit::OK,
            )
        }
    };
    let text = secret::to_masked_json(&doc, true)
        .map_err(|e| layout::LabError::Failed(format!("cannot write JSON: {e}")))?;
    Ok((text, code))
}

/// `lab up` (and the other lab actions), with progress lines on a terminal's stderr while
/// the servers start: how many of the lab's processes run so far, a line each time the
/// count changes (whole lines, so they never tangle with what `lab up` prints itself).
pub fn lab_with_progress(action: &LabAction) -> Result<i32> {
    let LabAction::Up { dir } = action else {
        return cli::lab(action);
    };
    if !std::io::stderr().is_terminal() {
        return cli::lab(action);
    }
    let lab = Lab::new(dir.dir.as_deref());
    let total = layout::components().len();
    let started = Instant::now();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut shown = None;
            let mut ticks = 0u32;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                ticks += 1;
                if !ticks.is_multiple_of(5) {
                    continue;
                }
                let running = if lab.check_trusted().is_ok() && lab.exists() {
                    layout::components()
                        .iter()
                        .filter(|c| web::running(&lab, &c.name))
                        .count()
                } else {
                    0
                };
                if shown != Some(running) && !done.load(Ordering::Acquire) {
                    shown = Some(running);
                    eprintln!(
                        "lab up: {running}/{total} processes running ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        });
        let r = cli::lab(action);
        done.store(true, Ordering::Release);
        r
    })
}
