//! Shell completion: `opsdeck completions bash|zsh|fish` prints a script that asks the
//! binary itself for candidates (clap_complete's dynamic engine, through the
//! `OPSDECK_COMPLETE` variable), so host, tier and runbook names come from the inventory and
//! runbook directories in force when Tab is pressed, never from a stale list.
//!
//! The completers below read the inventory named on the command line being completed
//! (`-i FILE`, `--inventory FILE`), else `$OPSDECK_INVENTORY`, else config.toml's; they never
//! run a `password_cmd` or connect anywhere, and any error just means no candidates.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap_complete::CompletionCandidate;
use clap_complete::env::EnvCompleter;

use crate::config::Config;
use crate::inventory::{self, Inventory, LoadOptions};

/// The variable that switches the binary into completion mode.
pub const ENV_VAR: &str = "OPSDECK_COMPLETE";

/// Shells `opsdeck completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Answers a completion request and exits, when the shell script called us for one (the
/// first thing `main` does; a normal run returns at once).
pub fn answer_if_asked() {
    use clap::CommandFactory as _;
    if std::env::var_os(ENV_VAR).is_some_and(|v| !v.is_empty()) {
        // The completers read the user's defaults (inventory, runbook dirs, journal dir);
        // a broken config just means fewer candidates.
        crate::config::install(Config::load().unwrap_or_default());
    }
    clap_complete::CompleteEnv::with_factory(crate::cli::Cli::command)
        .var(ENV_VAR)
        .complete();
}

/// The registration script for `shell`: it calls `completer` (this binary) with
/// `OPSDECK_COMPLETE=SHELL` on every Tab.
pub fn script(shell: Shell, completer: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let c: &dyn EnvCompleter = match shell {
        Shell::Bash => &clap_complete::env::Bash,
        Shell::Zsh => &clap_complete::env::Zsh,
        Shell::Fish => &clap_complete::env::Fish,
    };
    c.write_registration(ENV_VAR, "opsdeck", "opsdeck", completer, &mut buf)?;
    Ok(buf)
}

/// How the script should call this binary: its path as invoked, made absolute when it was
/// run by a relative path, else the name on `$PATH`.
pub fn completer_path() -> String {
    let arg0 = std::env::args_os()
        .next()
        .map_or_else(|| PathBuf::from("opsdeck"), PathBuf::from);
    if arg0.components().count() > 1 {
        if arg0.is_absolute() {
            return arg0.display().to_string();
        }
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(arg0).display().to_string();
        }
    }
    arg0.display().to_string()
}

/// The words of the command line being completed (after the `--` the script passes).
fn words() -> Vec<OsString> {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.iter().position(|a| a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => args,
    }
}

/// The value of `-X VALUE`, `-XVALUE`, `--long VALUE` or `--long=VALUE` on the line.
fn option_value(words: &[OsString], short: Option<char>, long: &str) -> Option<PathBuf> {
    let mut it = words.iter().map(|w| w.to_string_lossy().into_owned());
    // No short form: a flag no word can equal.
    let short_flag = short.map_or_else(|| "\u{0}".to_owned(), |c| format!("-{c}"));
    let long_flag = format!("--{long}");
    while let Some(w) = it.next() {
        if w == "--" {
            break;
        }
        if w == short_flag || w == long_flag {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = w.strip_prefix(&format!("{long_flag}=")) {
            return Some(PathBuf::from(v));
        }
        if let Some(v) = w.strip_prefix(&short_flag)
            && !v.is_empty()
            && !w.starts_with("--")
        {
            return Some(PathBuf::from(v));
        }
    }
    None
}

fn config() -> Config {
    crate::config::current().cloned().unwrap_or_default()
}

/// The inventory in force for the line being completed (no secrets resolved).
fn inventory_for_line() -> Option<Inventory> {
    let words = words();
    let path = option_value(&words, Some('i'), "inventory")
        .or_else(|| std::env::var_os("OPSDECK_INVENTORY").map(PathBuf::from))
        .or_else(|| config().inventory);
    inventory::load_with(path.as_deref(), &LoadOptions::without_password_cmds()).ok()
}

/// Selector terms: `all`, every host, tier and `tier:role`, with help text.
pub fn selector_terms(inv: &Inventory) -> Vec<(String, String)> {
    let mut out = vec![("all".to_owned(), "every host".to_owned())];
    for t in &inv.tiers {
        out.push((
            t.name.clone(),
            format!("tier, {} hosts", inv.hosts_in(&t.name).count()),
        ));
        let mut roles: Vec<&str> = inv
            .hosts_in(&t.name)
            .flat_map(|h| h.roles.iter().map(String::as_str))
            .collect();
        roles.sort_unstable();
        roles.dedup();
        for r in roles {
            out.push((
                format!("{}:{r}", t.name),
                format!("{r} hosts of tier {}", t.name),
            ));
        }
    }
    for h in &inv.hosts {
        out.push((h.name.clone(), format!("host in tier {}", h.tier)));
    }
    out
}

/// Candidates for `current` from `terms`; the part before the last comma is kept, so
/// `web-1,db<Tab>` completes the second term.
fn complete_list(current: &OsStr, terms: &[(String, String)]) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let (done, partial) = match current.rfind(',') {
        Some(i) => (&current[..=i], &current[i + 1..]),
        None => ("", current.as_ref()),
    };
    let already: Vec<&str> = done.split(',').filter(|t| !t.is_empty()).collect();
    terms
        .iter()
        .filter(|(t, _)| t.starts_with(partial) && !already.contains(&t.as_str()))
        .map(|(t, help)| {
            CompletionCandidate::new(format!("{done}{t}")).help(Some(help.clone().into()))
        })
        .collect()
}

/// A selector (`exec`, `health`, `run --target`): hosts, tiers, `tier:role`, `all`.
pub fn selector(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(inv) = inventory_for_line() else {
        return Vec::new();
    };
    complete_list(current, &selector_terms(&inv))
}

/// A runbook id from the runbook directories in force and the built-in runbooks.
pub fn runbook(current: &OsStr) -> Vec<CompletionCandidate> {
    let words = words();
    let flag = option_value(&words, None, "runbooks");
    let sources = crate::runbook::Sources::standard(flag.as_deref(), &config().runbook_dirs);
    let Ok(entries) = sources.load_all(None) else {
        return Vec::new();
    };
    let current = current.to_string_lossy();
    entries
        .into_iter()
        .filter(|e| e.id.starts_with(current.as_ref()))
        .map(|e| {
            let help = match &e.result {
                Ok((rb, _)) => rb.title.clone(),
                Err(_) => "does not load: see `opsdeck check`".to_owned(),
            };
            CompletionCandidate::new(e.id).help(Some(help.into()))
        })
        .collect()
}

/// A drill name, `list` or `reset`.
pub fn drill(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut terms = vec![
        ("list", "the drills and what each breaks"),
        ("reset", "undo every drill"),
    ];
    terms.extend(crate::lab::drill::DRILLS.iter().copied());
    terms
        .into_iter()
        .filter(|(n, _)| n.starts_with(current.as_ref()))
        .map(|(n, d)| CompletionCandidate::new(n).help(Some(d.to_owned().into())))
        .collect()
}

/// A theme: the built-in ones and the user's theme files.
pub fn theme(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut names: Vec<String> = crate::ui::theme::BUILTIN
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    if let Some(d) = crate::ui::theme::user_dir()
        && let Ok(entries) = std::fs::read_dir(d)
    {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml")
                && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                && !names.iter().any(|n| n == stem)
            {
                names.push(stem.to_owned());
            }
        }
    }
    names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// A recorded run id (`journal show`, `journal export`, `run --resume`), newest first.
pub fn run_id(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let Ok(mut runs) = crate::runbook::journal::list(&crate::runbook::journal::default_dir())
    else {
        return Vec::new();
    };
    runs.reverse();
    runs.into_iter()
        .filter(|r| r.run.starts_with(current.as_ref()))
        .map(|r| {
            let help = format!(
                "{} by {}, {}",
                r.runbook,
                r.operator,
                r.outcome.as_deref().unwrap_or("unfinished")
            );
            CompletionCandidate::new(r.run).help(Some(help.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_inventory_is_found_in_every_spelling() {
        for line in [
            &["opsdeck", "-i", "a.toml", "exec", ""][..],
            &["opsdeck", "exec", "--inventory", "a.toml", ""],
            &["opsdeck", "--inventory=a.toml", "exec", ""],
            &["opsdeck", "-ia.toml", "exec", ""],
        ] {
            assert_eq!(
                option_value(&w(line), Some('i'), "inventory"),
                Some(PathBuf::from("a.toml")),
                "{line:?}"
            );
        }
        assert_eq!(
            option_value(
                &w(&["opsdeck", "exec", "all", "--", "-i", "x"]),
                Some('i'),
                "inventory"
            ),
            None
        );
    }

    #[test]
    fn a_list_completes_its_last_term() {
        let terms = vec![
            ("web-1".to_owned(), String::new()),
            ("web-2".to_owned(), String::new()),
            ("db-1".to_owned(), String::new()),
        ];
        let got: Vec<String> = complete_list(OsStr::new("web-1,w"), &terms)
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, vec!["web-1,web-2"]);
    }
}
