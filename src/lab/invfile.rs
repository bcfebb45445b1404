//! The inventory `lab up` writes (`DIR/inventory.toml`): every lab host with ssh transport to
//! its own sshd, its services, and secrets by file reference (`secrets/...`, relative to the
//! inventory).

use std::fmt::Write as _;

use super::layout::{
    self, COMPOSE_PROJECT, HTTP_PORT, Lab, MYSQL_PORT, QUEUE_KEY, REDIS_PORT, Result, Role,
    SENTINEL_MASTER, SENTINEL_PORT, SESSIONS_ADDR, SSH_PORT,
};
use super::service::{self, Action};

/// Secret file names under `DIR/secrets/`.
pub const MYSQL_SECRET: &str = "mysql";
pub const MYSQL_APP_SECRET: &str = "mysql-app";
pub const MYSQL_REPL_SECRET: &str = "mysql-repl";
pub const REDIS_SECRET: &str = "redis";

/// Renders the inventory; `docker` adds the Docker-run sessions Redis as a `docker` tier host.
pub fn render(lab: &Lab, docker: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `opsdeck lab up` for the lab in {dir}. Regenerated on every `lab up`.\n\
         # Use it with: opsdeck -i {inv} ...   or   export OPSDECK_INVENTORY={inv}\n\
         name = \"opsdeck-lab\"\n\n\
         # Root cannot log in: every host is reached as {user}, and runbook commands\n\
         # escalate with sudo (the lab's sudo rule lets {user} run them).\n\
         [defaults]\n\
         become = \"sudo\"\n\n\
         [defaults.ssh]\n\
         user = \"{user}\"\n\
         port = {SSH_PORT}\n\
         identity_files = [\"ssh/id_ed25519\"]\n\
         known_hosts = \"ssh/known_hosts\"\n\
         host_key_policy = \"strict\"\n\
         agent = false\n\
         connect_timeout = \"5s\"\n",
        dir = lab.dir.display(),
        inv = lab.inventory().display(),
        user = super::account::LAB_USER,
    );
    let cmd = |action: Action, name: String| toml_str(&service::command(lab, action, &name));
    let tiers: &[(&str, &str)] = &[
        ("lb", "load balancers: nginx (lb) and HAProxy (lb2)"),
        ("app", "nginx + php-fpm application servers"),
        ("cache", "Redis master, replica and Sentinels"),
        ("db", "MariaDB primary and replica (GTID replication)"),
        ("worker", "queue workers (queue:work)"),
    ];
    for (t, d) in tiers {
        let _ = writeln!(s, "[tiers.{t}]\ndescription = \"{d}\"\n");
    }
    if docker {
        let _ = writeln!(
            s,
            "[tiers.docker]\ndescription = \"containers of compose project {COMPOSE_PROJECT}\"\n"
        );
    }
    for h in &layout::HOSTS {
        let roles: &[&str] = match h.role {
            Role::Lb => &["nginx"],
            Role::Haproxy => &["haproxy"],
            Role::DbPrimary => &["primary"],
            Role::DbReplica | Role::CacheReplica => &["replica"],
            Role::CacheMaster => &["master"],
            _ => &[],
        };
        let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
        let _ = writeln!(
            s,
            "[hosts.{name}]\ntier = \"{tier}\"\nroles = [{roles}]\nmounts = [\"{mount}\"]\nssh = {{ host = \"{addr}\" }}",
            name = h.name,
            tier = h.tier,
            roles = roles.join(", "),
            mount = lab.disk(h.name).display(),
            addr = h.addr,
        );
        match h.role {
            Role::Lb => {
                let ups: Vec<String> = layout::app_hosts()
                    .map(|a| format!("\"{}:{HTTP_PORT}\"", a.addr))
                    .collect();
                let _ = writeln!(
                    s,
                    "nginx = {{ status_url = \"http://{a}/nginx_status\", upstreams = [{u}], reload = {reload}, upstream_file = {file} }}\n\
                     http = [{{ url = \"http://{a}/health\", app_health = true }}]",
                    a = h.addr,
                    u = ups.join(", "),
                    reload = cmd(Action::Reload, layout::nginx_name(h.name)),
                    file = toml_str(&lab.lb_upstream().display().to_string()),
                );
            }
            Role::App => {
                let _ = writeln!(
                    s,
                    "nginx = {{ status_url = \"http://{a}/nginx_status\", reload = {reload} }}\n\
                     php_fpm = {{ status_url = \"http://{a}/fpm-status\", restart = {restart} }}\n\
                     app = {{ env = {env} }}\n\
                     http = [{{ url = \"http://{a}/health\", app_health = true }}, {{ url = \"http://{a}/\" }}]",
                    a = h.addr,
                    reload = cmd(Action::Reload, layout::nginx_name(h.name)),
                    restart = cmd(Action::Restart, layout::fpm_name(h.name)),
                    env = toml_str(&lab.app_env(h.name).display().to_string()),
                );
            }
            Role::DbPrimary | Role::DbReplica => {
                let role = if h.role == Role::DbPrimary {
                    "primary"
                } else {
                    "replica"
                };
                let _ = writeln!(
                    s,
                    "mysql = [{{ role = \"{role}\", address = \"{a}\", port = {MYSQL_PORT}, user = \"{u}\", password_file = \"secrets/{MYSQL_SECRET}\", database = \"{db}\", defaults_file = {cnf} }}]",
                    a = h.addr,
                    u = layout::MONITOR_USER,
                    db = layout::DATABASE,
                    cnf = toml_str(&lab.mysql_cnf("root", h).display().to_string()),
                );
            }
            Role::Haproxy => {
                let ups: Vec<String> = layout::app_hosts()
                    .map(|a| format!("\"{}:{HTTP_PORT}\"", a.addr))
                    .collect();
                let _ = writeln!(
                    s,
                    "description = \"HAProxy (seed 001 phase 3) in front of the app servers\"\n\
                     haproxy = {{ stats_url = \"http://{a}:{port}/stats;csv\", socket = {sock}, upstreams = [{u}] }}\n\
                     http = [{{ url = \"http://{a}/health\", app_health = true }}]",
                    u = ups.join(", "),
                    a = h.addr,
                    port = layout::HAPROXY_STATS_PORT,
                    sock = toml_str(&lab.haproxy_socket(h.name).display().to_string()),
                );
            }
            Role::CacheMaster | Role::CacheReplica | Role::Worker => {}
        }
        let mut redis = Vec::new();
        match h.role {
            Role::CacheMaster | Role::CacheReplica => {
                let role = if h.role == Role::CacheMaster {
                    "master"
                } else {
                    "replica"
                };
                redis.push(format!(
                    "{{ role = \"{role}\", address = \"{}\", port = {REDIS_PORT}, master_name = \"{SENTINEL_MASTER}\", password_file = \"secrets/{REDIS_SECRET}\", restart = {} }}",
                    h.addr,
                    cmd(Action::Restart, layout::redis_name(h.name)),
                ));
            }
            _ => {}
        }
        if h.sentinel {
            redis.push(format!(
                "{{ role = \"sentinel\", address = \"{}\", port = {SENTINEL_PORT}, master_name = \"{SENTINEL_MASTER}\" }}",
                h.addr
            ));
        }
        if !redis.is_empty() {
            let _ = writeln!(s, "redis = [\n    {},\n]", redis.join(",\n    "));
        }
        if h.role == Role::Worker {
            let _ = writeln!(
                s,
                "processes = [{{ name = \"queue:work\", restart = {} }}]\nqueues = [{{ name = \"{QUEUE_KEY}\", redis_host = \"{}\" }}]",
                cmd(Action::Restart, layout::worker_name(h.name)),
                layout::redis_master().name
            );
        }
        s.push('\n');
    }
    if docker {
        let _ = writeln!(
            s,
            "[hosts.sessions1]\ntier = \"docker\"\nroles = [\"master\"]\ndescription = \"Redis for sessions, in a container\"\n\
             docker = {{ project = \"{COMPOSE_PROJECT}\", service = \"sessions\" }}\n\
             redis = [{{ role = \"master\", address = \"{SESSIONS_ADDR}\", port = {REDIS_PORT}, password_file = \"secrets/{REDIS_SECRET}\" }}]"
        );
    }
    s
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn write(lab: &Lab, docker: bool) -> Result<()> {
    let path = lab.inventory();
    // Private like the secrets it points at: it names every host, user and password file.
    super::layout::write_private(&path, &render(lab, docker))
}
