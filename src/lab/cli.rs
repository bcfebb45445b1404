//! The `lab`, `drill` and `demo` commands: thin wrappers that print and pick exit codes.

use std::io::Write as _;

use crate::cli::{LabAction, LabDir};
use crate::headless::exit;

use super::layout::{Lab, LabError, Result};
use super::{drill, packages, service, stack};

fn lab_of(d: &LabDir) -> Lab {
    Lab::new(d.dir.as_deref())
}

/// The lab directory, checked before anything is read from it (`up` and `down` check too).
fn trusted_lab(d: &LabDir) -> Result<Lab> {
    let lab = lab_of(d);
    lab.check_trusted()?;
    Ok(lab)
}

pub fn lab(action: &LabAction) -> Result<i32> {
    let mut out = std::io::stdout();
    match action {
        LabAction::Up { dir } => {
            let lab = lab_of(dir);
            let report = stack::up(&lab, &mut out)?;
            print!("{}", stack::usage_text(&lab, &report));
        }
        LabAction::Status { dir, .. } => {
            let lab = trusted_lab(dir)?;
            print!("{}", stack::status_text(&lab)?);
            if !stack::is_running(&lab) {
                return Ok(exit::FAILED);
            }
        }
        LabAction::Down { dir } => stack::down(&lab_of(dir), &mut out)?,
        LabAction::Service { action, name, dir } => {
            let lab = trusted_lab(dir)?;
            let action: service::Action = action.parse().map_err(LabError::Failed)?;
            println!("{}", service::run(&lab, action, name)?);
        }
    }
    let _ = out.flush();
    Ok(exit::OK)
}

pub fn drill(name: &str, check: bool, dir: &LabDir) -> Result<i32> {
    let lab = if name == "list" {
        lab_of(dir)
    } else {
        trusted_lab(dir)?
    };
    match (name, check) {
        ("list", false) => print!("{}", drill::list_text()),
        ("reset", false) => {
            for line in drill::reset(&lab)? {
                println!("{line}");
            }
            println!("drill reset: the lab is healthy");
        }
        (name, true) => {
            let o = drill::check(&lab, name)?;
            println!(
                "{name}: {} ({})",
                if o.present {
                    "fault present"
                } else {
                    "fault absent"
                },
                o.detail
            );
            return Ok(if o.present { exit::OK } else { exit::FAILED });
        }
        (name, false) => println!("{}", drill::inject(&lab, name)?),
    }
    Ok(exit::OK)
}

/// Brings the lab up unless it runs (installing missing packages first when root); returns it.
pub fn demo(dir: &LabDir) -> Result<Lab> {
    // Its inventory is loaded next (as root, usually): only from a directory of ours.
    let lab = trusted_lab(dir)?;
    let mut out = std::io::stdout();
    if stack::is_running(&lab) {
        println!("the lab in {} is running", lab.dir.display());
    } else {
        packages::install_missing(&mut out)?;
        let report = stack::up(&lab, &mut out)?;
        print!("{}", stack::usage_text(&lab, &report));
    }
    println!("\ninventory {}:\n", lab.inventory().display());
    Ok(lab)
}
