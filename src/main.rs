//! The `opsdeck` binary: parse the command line, set up logging and the panic hook, dispatch.
//!
//! Everything printed here is masked, and printed through [`hygiene::print`], so a closed
//! pipe (`opsdeck inventory --json | head -c 10`) ends the process quietly.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use opsdeck::cli::{Cli, Command};
use opsdeck::headless::{self, exit};
use opsdeck::hygiene::{self, print, println};
use opsdeck::inventory::{self, Inventory, LoadOptions, Selector};
use opsdeck::secret;
use opsdeck::transport::Connections;

fn main() -> ExitCode {
    hygiene::install_panic_hook();
    let cli = Cli::parse();
    let _log = opsdeck::logging::init(cli.verbosity());
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) if hygiene::is_broken_pipe(&e) => hygiene::BROKEN_PIPE_EXIT,
        Err(e) => {
            // The one place errors become text for a person; masked like everything else.
            eprintln!("opsdeck: {}", secret::mask(&format!("{e:#}")));
            exit::CONFIG
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn load_inventory(cli: &Cli) -> anyhow::Result<Inventory> {
    Ok(inventory::load(cli.inventory.as_deref())?)
}

/// For commands that only read the inventory: `password_cmd`s run only when asked.
fn read_inventory(cli: &Cli, resolve_secrets: bool) -> anyhow::Result<Inventory> {
    let opts = if resolve_secrets {
        LoadOptions::default()
    } else {
        LoadOptions::without_password_cmds()
    };
    Ok(inventory::load_with(cli.inventory.as_deref(), &opts)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the console on `inv`, starting in `view`.
fn console(cli: &Cli, inv: Inventory, view: opsdeck::app::View) -> anyhow::Result<i32> {
    let theme = opsdeck::tui::theme_from_env(&cli.theme)?;
    let keymap = opsdeck::app::keymap::Keymap::load()?;
    let runbooks = std::env::var_os("OPSDECK_RUNBOOKS").map_or_else(
        || std::path::PathBuf::from("runbooks"),
        std::path::PathBuf::from,
    );
    runtime()?.block_on(opsdeck::tui::launch(inv, theme, keymap, &runbooks, view))?;
    Ok(exit::OK)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let Some(command) = &cli.command else {
        let inv = load_inventory(&cli)?;
        return console(&cli, inv, opsdeck::app::View::Dashboard);
    };
    match command {
        Command::Check {
            resolve_secrets,
            dir,
        } => {
            let inv = read_inventory(&cli, *resolve_secrets)?;
            opsdeck::probes::thresholds::resolve(&inv)?;
            println(&secret::mask(&format!(
                "inventory {}: ok ({} tiers, {} hosts)",
                inv.name,
                inv.tiers.len(),
                inv.hosts.len()
            )))?;
            let mut code = match headless::run::check(&dir.dir, &inv)? {
                None => exit::OK,
                Some((ok, problems)) if problems.is_empty() => {
                    println(&format!(
                        "runbooks {}: ok ({ok} runbooks)",
                        dir.dir.display()
                    ))?;
                    exit::OK
                }
                Some((_, problems)) => {
                    eprintln!("opsdeck: {}", secret::mask(&problems.join("\n")));
                    exit::CONFIG
                }
            };
            // Themes (built in and the user's) and the user's key bindings.
            match opsdeck::ui::theme::check_all() {
                Ok(names) => println(&format!("themes: ok ({})", names.join(", ")))?,
                Err(errors) => {
                    for e in errors {
                        eprintln!("opsdeck: {e}");
                    }
                    code = exit::CONFIG;
                }
            }
            match opsdeck::app::keymap::Keymap::load() {
                Ok(_) => println("keys: ok")?,
                Err(e) => {
                    eprintln!("opsdeck: {e}");
                    code = exit::CONFIG;
                }
            }
            Ok(code)
        }
        Command::Run {
            runbook,
            vars,
            target,
            approve,
            read_only,
            dry_run,
            run_diagnose,
            json,
            resume,
            resolve,
            accept_changed,
            verify_timeout,
            dir,
        } => {
            let inv = load_inventory(&cli)?;
            let args = headless::run::RunArgs {
                runbook: runbook.clone(),
                vars: vars.clone(),
                target: target.clone(),
                approve: approve.clone(),
                read_only: *read_only,
                dry_run: *dry_run,
                run_diagnose: *run_diagnose,
                json: *json,
                resume: resume.clone(),
                resolve: resolve.clone(),
                accept_changed: *accept_changed,
                verify_timeout: *verify_timeout,
                dir: dir.dir.clone(),
            };
            headless::run::run(&args, &inv)
        }
        Command::Runbooks {
            json,
            no_health,
            dir,
        } => {
            // Without the sweep nothing connects: no password_cmd needs to run.
            let inv = read_inventory(&cli, !no_health).ok();
            // One health sweep, so the list can say what the current state calls for.
            let checks = match (&inv, no_health) {
                (Some(inv), false) => {
                    let hosts: Vec<_> = inv.hosts.iter().collect();
                    let conns = Arc::new(Connections::new());
                    let opts = headless::health::Options::default();
                    runtime()?
                        .block_on(headless::health::once(&conns, inv, &hosts, &opts))
                        .map(|r| r.checks)
                        .ok()
                }
                _ => None,
            };
            headless::run::list(&dir.dir, *json, checks.as_deref())
        }
        Command::Journal { command } => headless::run::journal_cmd(command),
        Command::Inventory {
            json,
            resolve_secrets,
        } => {
            let inv = read_inventory(&cli, *resolve_secrets)?;
            if *json {
                println(&headless::inventory::render_json(&inv)?)?;
            } else {
                print(&headless::inventory::render_text(&inv))?;
            }
            Ok(exit::OK)
        }
        Command::Exec {
            selector,
            json,
            timeout,
            command,
        } => {
            let inv = load_inventory(&cli)?;
            let sel: Selector = selector.parse()?;
            let hosts = inv.select(&sel)?;
            let command = command.join(" ");
            let conns = Arc::new(Connections::new());
            let results =
                runtime()?.block_on(headless::exec::exec_all(&conns, &hosts, &command, *timeout));
            if *json {
                println(&secret::to_masked_json(&results, true)?)?;
            } else {
                print(&secret::mask(&headless::exec::render_text(&results)))?;
            }
            Ok(if results.iter().all(headless::exec::HostResult::ok) {
                exit::OK
            } else {
                exit::FAILED
            })
        }
        Command::Health {
            selector,
            json,
            watch,
            interval,
            timeout,
            count,
            concurrency,
        } => {
            let inv = load_inventory(&cli)?;
            let sel: Selector = selector.parse()?;
            let hosts = inv.select(&sel)?;
            let opts = headless::health::Options {
                interval: *interval,
                timeout: *timeout,
                concurrency: *concurrency,
            };
            let conns = Arc::new(Connections::new());
            let rt = runtime()?;
            if *watch {
                let mut out = std::io::stdout();
                let worst = rt.block_on(headless::health::watch(
                    conns, &inv, &hosts, &opts, *count, &mut out,
                ))?;
                return Ok(headless::health::exit_code(worst));
            }
            let report = rt.block_on(headless::health::once(&conns, &inv, &hosts, &opts))?;
            if *json {
                println(&headless::health::to_json(&report, true)?)?;
            } else {
                print(&headless::health::render_text(&inv, &report))?;
            }
            Ok(headless::health::exit_code(report.worst))
        }
        Command::Lab { action } => Ok(opsdeck::lab::cli::lab(action)?),
        Command::Drill { name, json, .. } if name == "scores" => {
            // Scores live in the operator's data dir, not in the lab: no lab needed.
            let path = opsdeck::lab::scores::default_path();
            let (scores, warnings) = opsdeck::lab::scores::read(&path)?;
            for w in &warnings {
                eprintln!("opsdeck: {}", secret::mask(w));
            }
            if *json {
                println(&opsdeck::lab::scores::json(&scores))?;
            } else {
                print(&opsdeck::lab::scores::table(&scores))?;
            }
            Ok(exit::OK)
        }
        Command::Drill {
            name, check, dir, ..
        } => Ok(opsdeck::lab::cli::drill(name, *check, dir)?),
        Command::Learn => {
            let inv = load_inventory(&cli)?;
            console(&cli, inv, opsdeck::app::View::Learn)
        }
        Command::Demo { dir } => {
            let lab = opsdeck::lab::cli::demo(dir)?;
            let inv = inventory::load(Some(&lab.inventory()))?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return console(&cli, inv, opsdeck::app::View::Dashboard);
            }
            // Not a terminal (a script, CI): one health sweep of the lab instead.
            let hosts: Vec<_> = inv.hosts.iter().collect();
            let opts = headless::health::Options::default();
            let conns = Arc::new(Connections::new());
            let report =
                runtime()?.block_on(headless::health::once(&conns, &inv, &hosts, &opts))?;
            print(&headless::health::render_text(&inv, &report))?;
            Ok(headless::health::exit_code(report.worst))
        }
    }
}
