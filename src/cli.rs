//! The command line: one subcommand per job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use clap_complete::ArgValueCompleter;

use crate::complete;

#[derive(Debug, Parser)]
#[command(
    name = "opsdeck",
    version,
    about = "Terminal operations console: live health, codified runbooks, SSH/Docker/MySQL/Redis",
    long_about = None,
    after_help = FILES_HELP
)]
pub struct Cli {
    /// Inventory file (TOML) [default: config.toml's `inventory`]. Without one, opsdeck
    /// watches this machine (local transport).
    #[arg(
        short = 'i',
        long,
        global = true,
        env = "OPSDECK_INVENTORY",
        value_name = "FILE",
        value_hint = clap::ValueHint::FilePath
    )]
    pub inventory: Option<PathBuf>,

    /// Console theme: dark, light, high-contrast, colorblind, or a file name in
    /// ~/.config/opsdeck/themes/ [default: config.toml's `theme`, else dark]. NO_COLOR is
    /// honoured.
    #[arg(
        long,
        global = true,
        env = "OPSDECK_THEME",
        value_name = "NAME",
        add = ArgValueCompleter::new(complete::theme)
    )]
    pub theme: Option<String>,

    /// More detail in the log file: -v debug, -vv trace (counts from OPSDECK_LOG / RUST_LOG,
    /// default info).
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less detail in the log file: -q warnings only, -qq errors only.
    #[arg(short = 'q', long = "quiet", global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// `-v` count minus `-q` count: how many steps the log level moves.
    pub fn verbosity(&self) -> i16 {
        i16::from(self.verbose) - i16::from(self.quiet)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config, the inventory, every runbook (the user's and the built-in ones)
    /// against it, the themes and key bindings; exit 2 on any error.
    Check {
        /// Also run every `password_cmd` (with its timeout) to check it prints a password.
        /// Without it, `check` never runs a command named in the inventory.
        #[arg(long)]
        resolve_secrets: bool,
        /// One JSON document: each part's result, every problem located.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: RunbookDir,
    },
    /// Print the resolved topology: tiers, hosts, transports, services.
    Inventory {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also run every `password_cmd` (with its timeout). Without it, no command named in
        /// the inventory runs.
        #[arg(long)]
        resolve_secrets: bool,
    },
    /// Run one shell command on every selected host in parallel.
    Exec {
        /// `all`, a host, a tier, `tier:role` (e.g. `db:primary`), or a comma-separated list.
        #[arg(add = ArgValueCompleter::new(complete::selector))]
        selector: String,
        /// JSON Lines: one JSON object per host, printed the moment that host finishes
        /// (finish order; each names its host).
        #[arg(long, conflicts_with = "json_all")]
        json: bool,
        /// One JSON document (an array, in selector order) after every host finished.
        #[arg(long)]
        json_all: bool,
        /// Per-host limit for connecting and running (e.g. `10s`, `500ms`).
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
        /// The command, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Probe every selected host once (or keep watching) and report each check's state.
    #[command(after_help = HEALTH_HELP)]
    Health {
        /// `all` (default), a host, a tier, `tier:role`, or a comma-separated list.
        #[arg(default_value = "all", add = ArgValueCompleter::new(complete::selector))]
        selector: String,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Keep probing; print one JSON line per interval (JSON Lines) until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Probe interval (and, with --watch, report interval).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: Duration,
        /// Limit for one probe run (connect + measure).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// With --watch: stop after this many lines.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Probe runs in flight at once.
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
    },
    /// The lab: the seeds' stack as real servers on loopback (127.0.10.x), with its own
    /// inventory. Needs root (tmpfs disks, port 80/22 on loopback addresses).
    Lab {
        #[command(subcommand)]
        action: LabAction,
    },
    /// Inject a real fault into the lab: `drill list`, `drill NAME [--check]`, `drill reset`;
    /// `drill scores [--json]` lists the drills resolved in `opsdeck learn`.
    Drill {
        /// `list`, `reset`, `scores`, or a drill name (see `opsdeck drill list`).
        #[arg(add = ArgValueCompleter::new(complete::drill))]
        name: String,
        /// Only look: exit 0 if the fault is present, 1 if not.
        #[arg(long)]
        check: bool,
        /// One JSON document instead of text (with `scores`: an array, oldest first).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: LabDir,
    },
    /// Bring the lab up if it is not running (installing its packages with apt-get when root)
    /// and show it.
    Demo {
        #[command(flatten)]
        dir: LabDir,
    },
    /// Onboarding: the stack tier by tier, each runbook in training mode (a dry run with every
    /// step's explanation), then a drill on the lab resolved in the console against the RTO.
    Learn,
    /// Run a runbook headless.
    ///
    /// Diagnose, check and wait steps run; action and manual steps run only if --approve allows
    /// them. Exit statuses: 0 succeeded; 1 a step failed; 2 configuration error (runbook,
    /// inventory, flags); 10 needs approval or a decision (nothing of that step ran);
    /// 11 aborted; 12 refused (read-only mode, or the runbook already runs on this target).
    #[command(verbatim_doc_comment)]
    Run {
        /// Runbook id (see `opsdeck runbooks`: the user's directories, then the built-in
        /// runbooks) or the path of a runbook file.
        #[arg(add = ArgValueCompleter::new(complete::runbook))]
        runbook: String,
        /// Set an input: --var name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Act only on these hosts (a selector, resolved exactly: a term that matches no host
        /// is an error). Each step runs on its own hosts within the target; a changing step
        /// with none of its hosts in the target is refused.
        #[arg(long, add = ArgValueCompleter::new(complete::selector))]
        target: Option<String>,
        /// Which changing steps may run: none, diagnose, all, or step ids (a,b).
        #[arg(long, default_value = "diagnose")]
        approve: String,
        /// Refuse every changing step (before connecting).
        #[arg(long)]
        read_only: bool,
        /// Show per host exactly what would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// In a dry run, really run the read-only steps (so captures feed the plan).
        #[arg(long, requires = "dry_run")]
        run_diagnose: bool,
        /// JSON Lines events on stdout instead of human progress.
        #[arg(long)]
        json: bool,
        /// Continue an interrupted run from its journal.
        #[arg(long, value_name = "RUN", add = ArgValueCompleter::new(complete::run_id))]
        resume: Option<String>,
        /// With --resume: what to do with a step whose outcome is unknown (verify, retry, skip).
        #[arg(long, value_name = "CHOICE", requires = "resume")]
        resolve: Option<String>,
        /// With --resume: continue although the runbook file changed since the run started.
        #[arg(long, requires = "resume")]
        accept_changed: bool,
        /// How long the end check re-probes the runbook's triggers before the run ends
        /// "not resolved" (exit 13).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "90s")]
        verify_timeout: std::time::Duration,
        /// Team mode: how long to wait for a second person's approval before stopping
        /// (exit 10; resume once approved).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "15m")]
        approval_wait: std::time::Duration,
        #[command(flatten)]
        dir: RunbookDir,
    },
    /// List the runbooks: id, severity, title, where each comes from (a user's file
    /// overrides the built-in runbook of the same id), what health conditions they treat.
    Runbooks {
        #[arg(long)]
        json: bool,
        /// Do not probe the inventory first (by default one health sweep says which runbooks
        /// the current state suggests).
        #[arg(long)]
        no_health: bool,
        #[command(flatten)]
        dir: RunbookDir,
    },
    /// Recorded runs: list, show, export as an incident timeline.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Team mode: approve, as a second person, a step another operator's run waits on (it
    /// shows the exact commands and hosts first).
    Approve {
        run: String,
        step: String,
        /// Approve without asking (scripts); the commands are still printed.
        #[arg(long)]
        yes: bool,
    },
    /// Team mode: who runs what right now, and the state of the team's etcd.
    Team {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: host, tier and runbook names complete from the
    /// inventory and runbooks in force when Tab is pressed.
    ///
    /// bash:  echo 'source <(opsdeck completions bash)' >> ~/.bashrc
    /// zsh:   echo 'source <(opsdeck completions zsh)' >> ~/.zshrc
    /// fish:  opsdeck completions fish > ~/.config/fish/completions/opsdeck.fish
    #[command(verbatim_doc_comment)]
    Completions {
        #[arg(value_enum)]
        shell: complete::Shell,
    },
    /// Print the man page (roff), or write it and one page per command into a directory:
    /// `opsdeck man --dir ~/.local/share/man/man1` (then `man opsdeck`, `man opsdeck-run`).
    Man {
        /// Write opsdeck.1 and opsdeck-COMMAND.1 for every command here instead of printing.
        #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct LabDir {
    /// Lab directory [default: $OPSDECK_LAB_DIR, else /var/tmp/opsdeck-lab].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Start every lab server that is not running and write DIR/inventory.toml.
    Up {
        #[command(flatten)]
        dir: LabDir,
    },
    /// List every lab process (name, pid, state, address) and disk.
    Status {
        #[command(flatten)]
        dir: LabDir,
        /// One JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Stop everything the lab started, unmount its disks and remove DIR.
    Down {
        #[command(flatten)]
        dir: LabDir,
    },
    /// The lab's service manager (its hosts have no systemd): start, stop, restart or reload
    /// one lab server (`lab service restart redis-cache1`). Runbooks run it through the
    /// inventory's `restart`/`reload` commands.
    Service {
        /// start, stop, restart or reload.
        action: String,
        /// A process of `lab status` (e.g. redis-cache1, fpm-app1, nginx-lb, worker-worker1).
        name: String,
        #[command(flatten)]
        dir: LabDir,
    },
}

/// Runbook flags shared by `run`, `runbooks` and `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunbookDir {
    /// A directory of runbook files (`*.toml`) searched first [default: $OPSDECK_RUNBOOKS].
    /// Then ./runbooks (if present), config.toml's `runbook_dirs`,
    /// ~/.config/opsdeck/runbooks (if present) and the built-in runbooks; the first file
    /// with an id wins.
    #[arg(long = "runbooks", value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Every recorded run: id, runbook, operator, start, outcome.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run's journal: a line per record (time, what happened); --json for the records
    /// themselves.
    Show {
        #[arg(add = ArgValueCompleter::new(complete::run_id))]
        run: String,
        /// One JSON document: the records as written.
        #[arg(long)]
        json: bool,
    },
    /// One run as an incident timeline for a postmortem.
    Export {
        #[arg(add = ArgValueCompleter::new(complete::run_id))]
        run: String,
        /// Markdown (the only format so far; the flag makes the choice explicit).
        #[arg(long)]
        markdown: bool,
    },
}

const FILES_HELP: &str = "Files: config.toml in $OPSDECK_CONFIG_DIR or ~/.config/opsdeck/ \
(inventory, theme, runbook_dirs, journal_dir); a flag beats the environment, which beats the \
config. Shell completion: `opsdeck completions bash|zsh|fish`; man page: `opsdeck man`.";

const HEALTH_HELP: &str = "Exit status: 0 ok, 3 warning, 4 unknown, 5 critical, 6 down (the worst \
check; unknown = no fresh sample), 2 configuration error, 1 internal failure.";

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 10s, 500ms, 2m)"))
}
