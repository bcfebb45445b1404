//! The `opsdeck` binary: parse the command line, set up logging and the panic hook, dispatch.
//!
//! Everything printed here is masked, and printed through [`hygiene::print`], so a closed
//! pipe (`opsdeck inventory --json | head -c 10`) ends the process quietly.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

use opsdeck::cli::{Cli, Command, LabAction, RunbookDir};
use opsdeck::config::{Config, Settings};
use opsdeck::headless::progress::Progress;
use opsdeck::headless::table::Colors;
use opsdeck::headless::{self, exit};
use opsdeck::hygiene::{self, print, println};
use opsdeck::inventory::{self, Inventory, LoadOptions, Selector};
use opsdeck::runbook::Sources;
use opsdeck::secret;
use opsdeck::transport::Connections;

fn main() -> ExitCode {
    hygiene::install_panic_hook();
    // A Tab in a shell with `opsdeck completions` installed: answer and exit, before
    // anything else touches stdout.
    opsdeck::complete::answer_if_asked();
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

fn load_inventory(set: &Settings) -> anyhow::Result<Inventory> {
    Ok(inventory::load(set.inventory.as_deref())?)
}

/// For commands that only read the inventory: `password_cmd`s run only when asked.
fn read_inventory(set: &Settings, resolve_secrets: bool) -> anyhow::Result<Inventory> {
    let opts = if resolve_secrets {
        LoadOptions::default()
    } else {
        LoadOptions::without_password_cmds()
    };
    Ok(inventory::load_with(set.inventory.as_deref(), &opts)?)
}

fn runbooks(set: &Settings, dir: Option<&RunbookDir>) -> Sources {
    set.runbooks(dir.and_then(|d| d.dir.as_deref()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the console on `inv`, starting in `view`.
fn console(set: &Settings, inv: Inventory, view: opsdeck::app::View) -> anyhow::Result<i32> {
    let theme = opsdeck::tui::theme_from_env(&set.theme)?;
    let keymap = opsdeck::app::keymap::Keymap::load()?;
    let runbooks = runbooks(set, None);
    runtime()?.block_on(opsdeck::tui::launch(inv, theme, keymap, &runbooks, view))?;
    Ok(exit::OK)
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    // Commands that need no settings (and must work whatever the config says).
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let script = opsdeck::complete::script(*shell, &opsdeck::complete::completer_path())?;
            print(&String::from_utf8_lossy(&script))?;
            return Ok(exit::OK);
        }
        Some(Command::Man { dir }) => {
            use clap::CommandFactory as _;
            let cmd = Cli::command().disable_help_subcommand(true);
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                clap_mangen::generate_to(cmd, dir)
                    .with_context(|| format!("writing the man pages into {}", dir.display()))?;
                eprintln!("man pages written to {}", dir.display());
            } else {
                let mut out = Vec::new();
                clap_mangen::Man::new(cmd).render(&mut out)?;
                print(&String::from_utf8_lossy(&out))?;
            }
            return Ok(exit::OK);
        }
        _ => {}
    }
    let config = Config::load()?;
    opsdeck::config::install(config.clone());
    let set = Settings::resolve(cli.inventory.clone(), cli.theme.clone(), config);
    let Some(command) = &cli.command else {
        let inv = load_inventory(&set)?;
        return console(&set, inv, opsdeck::app::View::Dashboard);
    };
    match command {
        Command::Completions { .. } | Command::Man { .. } => Ok(exit::OK),
        Command::Check {
            resolve_secrets,
            json,
            dir,
        } => check(&set, *resolve_secrets, *json, dir),
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
            approval_wait,
            dir,
        } => {
            let inv = load_inventory(&set)?;
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
                approval_wait: *approval_wait,
                sources: runbooks(&set, Some(dir)),
            };
            headless::run::run(&args, &inv)
        }
        Command::Runbooks {
            json,
            no_health,
            dir,
        } => {
            // Without the sweep nothing connects: no password_cmd needs to run.
            let inv = read_inventory(&set, !no_health).ok();
            // One health sweep, so the list can say what the current state calls for.
            let checks = match (&inv, no_health) {
                (Some(inv), false) => {
                    let hosts: Vec<_> = inv.hosts.iter().collect();
                    let conns = Arc::new(Connections::new());
                    let opts = headless::health::Options::default();
                    sweep_with_progress(&runtime()?, &conns, inv, &hosts, &opts)
                        .map(|r| (inv, r.checks))
                        .ok()
                }
                _ => None,
            };
            let checks = checks.as_ref().map(|(inv, c)| (*inv, c.as_slice()));
            headless::run::list(&runbooks(&set, Some(dir)), *json, checks)
        }
        Command::Journal { command } => {
            let inv = load_inventory(&set).ok();
            headless::run::journal_cmd(command, inv.as_ref())
        }
        Command::Approve { run, step, yes } => {
            let inv = load_inventory(&set)?;
            runtime()?.block_on(headless::team::approve(&inv, run, step, *yes))
        }
        Command::Team { json } => {
            let inv = load_inventory(&set)?;
            runtime()?.block_on(headless::team::status(&inv, *json))
        }
        Command::Inventory {
            json,
            resolve_secrets,
        } => {
            let inv = read_inventory(&set, *resolve_secrets)?;
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
            json_all,
            timeout,
            command,
        } => {
            let inv = load_inventory(&set)?;
            let sel: Selector = selector.parse()?;
            let hosts = inv.select(&sel)?;
            let command = command.join(" ");
            let conns = Arc::new(Connections::new());
            let mut progress = Progress::new("exec", hosts.len(), 2);
            let (mut done, mut failed) = (0, 0);
            let mut write_error = None;
            let mut on_done = |r: &headless::exec::HostResult| {
                done += 1;
                failed += usize::from(!r.ok());
                if *json && write_error.is_none() {
                    // One line per host, the moment it finishes.
                    progress.finish();
                    if let Err(e) = secret::to_masked_json(r, false)
                        .map_err(anyhow::Error::from)
                        .and_then(|line| Ok(println(&line)?))
                    {
                        write_error = Some(e);
                    }
                }
                let detail = if failed > 0 {
                    format!("{failed} failed")
                } else {
                    String::new()
                };
                progress.update(done, &detail);
            };
            let results = runtime()?.block_on(headless::exec::exec_each(
                &conns,
                &hosts,
                &command,
                *timeout,
                &mut on_done,
            ));
            progress.finish();
            if let Some(e) = write_error {
                return Err(e);
            }
            if *json_all {
                println(&secret::to_masked_json(&results, true)?)?;
            } else if !*json {
                print(&secret::mask(&headless::exec::render_text(
                    &results,
                    Colors::for_stdout(),
                )))?;
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
            let inv = load_inventory(&set)?;
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
            let report = sweep_with_progress(&rt, &conns, &inv, &hosts, &opts)?;
            if *json {
                println(&headless::health::to_json(&report, true)?)?;
            } else {
                print(&headless::health::render_text_colored(
                    &inv,
                    &report,
                    Colors::for_stdout(),
                ))?;
            }
            Ok(headless::health::exit_code(report.worst))
        }
        Command::Lab {
            action: LabAction::Status { dir, json: true },
        } => {
            let (text, code) = headless::lab::status_json(dir)?;
            println(&text)?;
            Ok(code)
        }
        Command::Lab { action } => Ok(headless::lab::lab_with_progress(action)?),
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
            name,
            check,
            json: true,
            dir,
        } => {
            let (text, code) = headless::lab::drill_json(name, *check, dir)?;
            println(&text)?;
            Ok(code)
        }
        Command::Drill {
            name, check, dir, ..
        } => Ok(opsdeck::lab::cli::drill(name, *check, dir)?),
        Command::Learn => {
            let inv = load_inventory(&set)?;
            console(&set, inv, opsdeck::app::View::Learn)
        }
        Command::Demo { dir } => {
            let lab = opsdeck::lab::cli::demo(dir)?;
            let inv = inventory::load(Some(&lab.inventory()))?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return console(&set, inv, opsdeck::app::View::Dashboard);
            }
            // Not a terminal (a script, CI): one health sweep of the lab instead.
            let hosts: Vec<_> = inv.hosts.iter().collect();
            let opts = headless::health::Options::default();
            let conns = Arc::new(Connections::new());
            let report = sweep_with_progress(&runtime()?, &conns, &inv, &hosts, &opts)?;
            print(&headless::health::render_text(&inv, &report))?;
            Ok(headless::health::exit_code(report.worst))
        }
    }
}

/// One health sweep, with a progress line on a terminal's stderr over more than one host.
fn sweep_with_progress(
    rt: &tokio::runtime::Runtime,
    conns: &Arc<Connections>,
    inv: &Inventory,
    hosts: &[&opsdeck::inventory::Host],
    opts: &headless::health::Options,
) -> anyhow::Result<headless::health::Report> {
    let mut progress = Progress::new("health", hosts.len(), 2);
    let report = rt.block_on(headless::health::once_with(
        conns,
        inv,
        hosts,
        opts,
        &mut |p| {
            progress.update(
                p.hosts_done,
                &format!("{}/{} probes answered", p.probes_done, p.probes),
            );
        },
    ))?;
    progress.finish();
    Ok(report)
}

/// `opsdeck check`: the config (already loaded), the inventory, every runbook in force,
/// the themes and the key bindings.
fn check(
    set: &Settings,
    resolve_secrets: bool,
    json: bool,
    dir: &RunbookDir,
) -> anyhow::Result<i32> {
    let inv = read_inventory(set, resolve_secrets)?;
    opsdeck::probes::thresholds::resolve(&inv)?;
    let sources = runbooks(set, Some(dir));
    let runbooks = headless::run::check(&sources, &inv)?;
    let themes = opsdeck::ui::theme::check_all();
    let keys = opsdeck::app::keymap::Keymap::load();
    let ok = runbooks.iter().all(|c| c.ok) && themes.is_ok() && keys.is_ok();
    let code = if ok { exit::OK } else { exit::CONFIG };
    if json {
        let doc = serde_json::json!({
            "ok": ok,
            "config": set.config.path,
            "inventory": {
                "name": inv.name, "source": inv.source, "ok": true,
                "tiers": inv.tiers.len(), "hosts": inv.hosts.len(),
            },
            "runbooks": runbooks,
            "themes": match &themes {
                Ok(names) => serde_json::json!({"ok": true, "names": names}),
                Err(errors) => serde_json::json!({
                    "ok": false,
                    "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            },
            "keys": match &keys {
                Ok(_) => serde_json::json!({"ok": true}),
                Err(e) => serde_json::json!({"ok": false, "errors": [e.to_string()]}),
            },
        });
        println(&secret::to_masked_json(&doc, true)?)?;
        return Ok(code);
    }
    let colors = Colors::for_stdout();
    let ok_word = colors.paint(opsdeck::headless::table::Tone::Ok, "ok");
    if let Some(p) = &set.config.path {
        println(&format!("config {}: {ok_word}", p.display()))?;
    }
    println(&secret::mask(&format!(
        "inventory {}: {ok_word} ({} tiers, {} hosts)",
        inv.name,
        inv.tiers.len(),
        inv.hosts.len()
    )))?;
    headless::run::print_check(&sources, &runbooks)?;
    // Themes (built in and the user's) and the user's key bindings.
    match themes {
        Ok(names) => println(&format!("themes: {ok_word} ({})", names.join(", ")))?,
        Err(errors) => {
            for e in errors {
                eprintln!("opsdeck: {e}");
            }
        }
    }
    match keys {
        Ok(_) => println(&format!("keys: {ok_word}"))?,
        Err(e) => eprintln!("opsdeck: {e}"),
    }
    Ok(code)
}
