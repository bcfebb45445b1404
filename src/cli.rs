//! The command line: one subcommand per job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "opsdeck", version, about = "Terminal operations console: live health, codified runbooks, SSH/Docker/MySQL/Redis", long_about = None)]
pub struct Cli {
    /// Inventory file (TOML). Without one, opsdeck watches this machine (local transport).
    #[arg(
        short = 'i',
        long,
        global = true,
        env = "OPSDECK_INVENTORY",
        value_name = "FILE"
    )]
    pub inventory: Option<PathBuf>,

    /// Console theme: dark, light, high-contrast, colorblind, or a file name in
    /// ~/.config/opsdeck/themes/. NO_COLOR is honoured.
    #[arg(
        long,
        global = true,
        env = "OPSDECK_THEME",
        default_value = "dark",
        value_name = "NAME"
    )]
    pub theme: String,

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
    /// Validate the inventory and every runbook against it; exit 2 on any error.
    Check {
        /// Also run every `password_cmd` (with its timeout) to check it prints a password.
        /// Without it, `check` never runs a command named in the inventory.
        #[arg(long)]
        resolve_secrets: bool,
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
        selector: String,
        /// One JSON document with a result per host.
        #[arg(long)]
        json: bool,
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
        #[arg(default_value = "all")]
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
        name: String,
        /// Only look: exit 0 if the fault is present, 1 if not.
        #[arg(long)]
        check: bool,
        /// With `scores`: one JSON document (an array, oldest first) instead of a table.
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
        /// Runbook id (file name in the runbook directory) or path.
        runbook: String,
        /// Set an input: --var name=value (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Act only on these hosts (a selector, resolved exactly: a term that matches no host
        /// is an error). Each step runs on its own hosts within the target; a changing step
        /// with none of its hosts in the target is refused.
        #[arg(long)]
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
        #[arg(long, value_name = "RUN")]
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
        #[command(flatten)]
        dir: RunbookDir,
    },
    /// List the runbooks: id, severity, title, what health conditions they treat.
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
    },
    /// Stop everything the lab started, unmount its disks and remove DIR.
    Down {
        #[command(flatten)]
        dir: LabDir,
    },
}

/// Runbook flags shared by `run`, `runbooks` and `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunbookDir {
    /// Directory of runbook files (`*.toml`).
    #[arg(
        long = "runbooks",
        env = "OPSDECK_RUNBOOKS",
        default_value = "runbooks",
        value_name = "DIR"
    )]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Every recorded run: id, runbook, operator, start, outcome.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run's journal, line by line (JSON Lines as written).
    Show { run: String },
    /// One run as an incident timeline for a postmortem.
    Export {
        run: String,
        /// Markdown (the only format so far; the flag makes the choice explicit).
        #[arg(long)]
        markdown: bool,
    },
}

const HEALTH_HELP: &str = "Exit status: 0 ok, 3 warning, 4 unknown, 5 critical, 6 down (the worst \
check; unknown = no fresh sample), 2 configuration error, 1 internal failure.";

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 10s, 500ms, 2m)"))
}
