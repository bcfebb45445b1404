//! `opsdeck lab service start|stop|restart|reload NAME`: the lab's service manager.
//!
//! The lab's hosts have no systemd: their servers are processes the lab started, known by pid
//! files. A real host restarts Redis with `systemctl restart redis-server`; a lab host with
//! this command, which the lab's inventory declares as the service's `restart` (or nginx's
//! `reload`), so runbooks restart what they must the way the inventory says. Run as root
//! (runbooks escalate with sudo).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::invfile::REDIS_SECRET;
use super::layout::{self, Component, Kind, Lab, LabError, Result, Role, SENTINEL_MASTER};
use super::process::Daemon;
use super::web::{self, Started};
use super::{stack, wire};

/// What `lab service` does to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
    Reload,
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "start" => Ok(Action::Start),
            "stop" => Ok(Action::Stop),
            "restart" => Ok(Action::Restart),
            "reload" => Ok(Action::Reload),
            other => Err(format!(
                "unknown action {other:?}: use start, stop, restart or reload"
            )),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Reload => "reload",
        }
    }
}

/// The shell command a runbook runs to `action` the lab server `name` (for the inventory):
/// this very binary, with the lab directory, logging into the lab's own run directory (the
/// command runs as root from the lab account's session).
pub fn command(lab: &Lab, action: Action, name: &str) -> String {
    let exe =
        std::env::current_exe().map_or_else(|_| "opsdeck".to_owned(), |p| p.display().to_string());
    let q = |s: &str| {
        shlex::try_quote(s).map_or_else(|_| "''".to_owned(), std::borrow::Cow::into_owned)
    };
    format!(
        "env OPSDECK_LOG_DIR={} {} lab service {} {} --dir {}",
        q(&lab.run().display().to_string()),
        q(&exe),
        action.as_str(),
        q(name),
        q(&lab.dir.display().to_string())
    )
}

fn component(name: &str) -> Result<Component> {
    layout::components()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            let names: Vec<String> = layout::components().into_iter().map(|c| c.name).collect();
            LabError::Failed(format!(
                "no lab service {name:?}; the services are: {}",
                names.join(", ")
            ))
        })
}

/// Carries out `action` on the lab server `name`; returns what was done.
pub fn run(lab: &Lab, action: Action, name: &str) -> Result<String> {
    if !lab.exists() {
        return Err(LabError::NotRunning {
            dir: lab.dir.display().to_string(),
        });
    }
    let c = component(name)?;
    let mut out = String::new();
    match action {
        Action::Stop => {
            let _ = write!(out, "{}", stop(lab, &c));
        }
        Action::Start => {
            let _ = write!(out, "{}", start(lab, &c)?);
        }
        Action::Restart => {
            let _ = writeln!(out, "{}", stop(lab, &c));
            let _ = write!(out, "{}", start(lab, &c)?);
        }
        Action::Reload => {
            let _ = write!(out, "{}", reload(lab, &c)?);
        }
    }
    Ok(out)
}

fn stop(lab: &Lab, c: &Component) -> String {
    match Daemon::from_pidfile(&c.name, &lab.pidfile(&c.name)) {
        Some(mut d) => {
            let pid = d.pid;
            d.stop(Duration::from_secs(10));
            format!("stopped {} (pid {pid})", c.name)
        }
        None => format!("{} was not running", c.name),
    }
}

fn started(c: &Component, s: Started) -> String {
    match s {
        Started::Started => format!("started {}", c.name),
        Started::AlreadyRunning => format!("{} is already running", c.name),
    }
}

fn start(lab: &Lab, c: &Component) -> Result<String> {
    let h = c.host;
    let s = match c.kind {
        Kind::Sshd => stack::start_sshd(lab, h)?,
        Kind::Nginx => web::start_nginx(lab, h)?,
        Kind::PhpFpm => web::start_fpm(lab, h)?,
        Kind::Worker => web::start_worker(lab, h)?,
        Kind::Haproxy => web::start_haproxy(lab, h)?,
        Kind::Mariadb => stack::start_mariadb(lab, h)?,
        Kind::Sentinel => stack::start_sentinel(lab, h, &lab.read_secret(REDIS_SECRET)?)?,
        Kind::Redis => {
            // Back as a replica of whatever Sentinel names now, unless that is itself: a
            // server that comes back as a second master would split the data.
            let pw = lab.read_secret(REDIS_SECRET)?;
            let me = SocketAddr::new(h.ip(), layout::REDIS_PORT);
            let master = layout::sentinel_addrs()
                .into_iter()
                .find_map(|s| wire::sentinel_master(s, SENTINEL_MASTER).ok());
            let replica_of = match master {
                Some(m) if m != me => Some(m),
                Some(_) => None,
                // No Sentinel answers: the inventory's roles decide.
                None => (h.role == Role::CacheReplica).then(layout::redis_master_addr),
            };
            stack::start_redis(lab, h, &pw, replica_of)?
        }
    };
    Ok(started(c, s))
}

fn reload(lab: &Lab, c: &Component) -> Result<String> {
    let signal = match c.kind {
        // nginx re-reads its configuration on SIGHUP (what `nginx -s reload` sends).
        Kind::Nginx => Signal::SIGHUP,
        // php-fpm: a graceful reload of the configuration and its workers.
        Kind::PhpFpm => Signal::SIGUSR2,
        k => {
            return Err(LabError::Failed(format!(
                "{} ({k}) has no reload: use restart",
                c.name
            )));
        }
    };
    let d = Daemon::from_pidfile(&c.name, &lab.pidfile(&c.name))
        .ok_or_else(|| LabError::Failed(format!("{} is not running", c.name)))?;
    d.signal(signal)
        .map_err(|e| LabError::Failed(format!("signalling {}: {e}", c.name)))?;
    Ok(format!("reloaded {} (pid {}, {signal})", c.name, d.pid))
}
