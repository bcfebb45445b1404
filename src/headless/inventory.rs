//! `opsdeck inventory` and `opsdeck check`.
//!
//! The JSON form shows every resolved SSH setting with where it came from (`origin`:
//! `inventory`, `ssh_config`, `defaults` or `builtin`) and the jump chain as nested `jump`
//! objects (the outermost is the hop that reaches the host).
//!
//! Both outputs are masked: a password never sits in the inventory, but a `password_cmd` or
//! a description can still spell a secret loaded from elsewhere.

use std::fmt::Write as _;

use crate::inventory::{Host, HostKeyPolicy, Inventory, SshSpec, TransportSpec};
use crate::secret::{mask, to_masked_json};

/// The inventory as one JSON document, every string masked.
pub fn render_json(inv: &Inventory) -> serde_json::Result<String> {
    to_masked_json(inv, true)
}

/// The inventory as text, masked.
pub fn render_text(inv: &Inventory) -> String {
    mask(&text(inv)).into_owned()
}

fn text(inv: &Inventory) -> String {
    let mut out = String::new();
    let source = inv.source.as_ref().map_or_else(
        || "embedded default".to_owned(),
        |p| p.display().to_string(),
    );
    let _ = writeln!(
        out,
        "inventory {} ({source}): {} tiers, {} hosts",
        inv.name,
        inv.tiers.len(),
        inv.hosts.len()
    );
    for tier in &inv.tiers {
        let desc = tier
            .description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        let ro = if tier.read_only { " [read-only]" } else { "" };
        let _ = writeln!(out, "\n{}{desc}{ro}", tier.name);
        for h in inv.hosts_in(&tier.name) {
            host_text(&mut out, h);
        }
    }
    out
}

fn host_text(out: &mut String, h: &Host) {
    let transport = match &h.transport {
        TransportSpec::Ssh(s) => ssh_text(s),
        TransportSpec::Docker(d) => {
            let ep = d
                .endpoint
                .clone()
                .unwrap_or_else(|| "default engine".to_owned());
            match &d.target {
                crate::inventory::ContainerTarget::Name(n) => {
                    format!("docker container {n} on {ep}")
                }
                crate::inventory::ContainerTarget::Compose { project, service } => {
                    format!("docker compose {project}/{service} on {ep}")
                }
            }
        }
        TransportSpec::Local => "local".to_owned(),
    };
    let roles = if h.roles.is_empty() {
        String::new()
    } else {
        format!(" [{}]", h.roles.join(", "))
    };
    let ro = if h.read_only { " read-only" } else { "" };
    let _ = writeln!(out, "  {}{roles}{ro}: {transport}", h.name);
    let s = &h.services;
    for m in &s.mysql {
        let pw = m.password.as_ref().map(password_text).unwrap_or_default();
        let _ = writeln!(
            out,
            "    mysql {:?} {}:{} user {} via {:?}{pw}",
            m.role, m.address, m.port, m.user, m.via
        );
    }
    for r in &s.redis {
        let pw = r.password.as_ref().map(password_text).unwrap_or_default();
        let master = r
            .master_name
            .as_ref()
            .map(|m| format!(" master {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    redis {:?} {}:{}{master} via {:?}{pw}",
            r.role, r.address, r.port, r.via
        );
    }
    for c in &s.http {
        let _ = writeln!(
            out,
            "    http {}{}",
            c.url,
            if c.app_health { " (app health)" } else { "" }
        );
    }
    if let Some(n) = &s.nginx {
        let _ = writeln!(
            out,
            "    nginx{}{}",
            n.status_url
                .as_ref()
                .map(|u| format!(" status {u}"))
                .unwrap_or_default(),
            if n.upstreams.is_empty() {
                String::new()
            } else {
                format!(" upstreams {}", n.upstreams.join(", "))
            }
        );
    }
    if let Some(p) = &s.php_fpm {
        let _ = writeln!(out, "    php-fpm status {}", p.status_url);
    }
    if !s.mounts.is_empty() {
        let _ = writeln!(out, "    mounts {}", s.mounts.join(", "));
    }
    for q in &s.queues {
        let _ = writeln!(
            out,
            "    queue {}{}",
            q.name,
            q.redis_host
                .as_ref()
                .map(|r| format!(" on {r}"))
                .unwrap_or_default()
        );
    }
    if !s.processes.is_empty() {
        let _ = writeln!(out, "    processes {}", s.processes.join(", "));
    }
}

/// `ssh user@host:port via b1 -> b2 (host keys: strict)`, with the ProxyCommand and
/// certificates when there are any.
fn ssh_text(s: &SshSpec) -> String {
    let chain = s.jump_chain();
    let via = if chain.is_empty() {
        String::new()
    } else {
        let hops: Vec<String> = chain
            .iter()
            .map(|j| match &j.proxy_command {
                Some(c) => format!("{} (through `{c}`)", j.display()),
                None => j.display(),
            })
            .collect();
        format!(" via {}", hops.join(" -> "))
    };
    let proxy = s
        .proxy_command
        .as_ref()
        .map(|c| format!(" through `{c}`"))
        .unwrap_or_default();
    let certs = if s.certificate_files.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = s
            .certificate_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        format!(", certificates {}", names.join(", "))
    };
    let policy = match s.host_key_policy {
        HostKeyPolicy::Strict => "strict",
        HostKeyPolicy::AcceptNew => "accept-new",
    };
    format!(
        "ssh {}{via}{proxy} (host keys: {policy}{certs})",
        s.display()
    )
}

fn password_text(p: &crate::inventory::Password) -> String {
    let not_run = if p.resolved {
        ""
    } else {
        " (not run: add --resolve-secrets)"
    };
    format!(", password from {}{not_run}", p.source)
}
