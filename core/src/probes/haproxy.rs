//! HAProxy as a load balancer (seed 001, phase 3): its stats page in CSV (`stats uri`, with
//! `;csv`), read over HTTP like nginx's `stub_status`. One availability check (`haproxy.up`)
//! and one per backend (`haproxy.backend.NAME`): ok when every server is in rotation and
//! passes its health check, warning when some are out (down, drained or in maintenance),
//! critical when none serves.
//!
//! ```toml
//! haproxy = { stats_url = "http://127.0.0.1:8404/stats;csv", socket = "/run/haproxy/admin.sock" }
//! ```
//! `socket` is the runtime API runbooks use to drain and enable servers (`{{haproxy.socket}}`).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::inventory::model::HaproxyDef;
use crate::inventory::{Host, Via};
use crate::transport::Connections;

/// One server of a backend, as the stats show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStat {
    pub name: String,
    /// `UP`, `DOWN`, `MAINT`, `DRAIN`, `NOLB`, `no check`, `UP 1/2`, ...
    pub status: String,
    /// The last health check's result (`L7OK`, `L4CON`, `L7STS`, ...), when checked.
    pub check: String,
    /// Current sessions.
    pub sessions: u64,
}

impl ServerStat {
    /// Serving new traffic: up (or not checked) and neither drained nor in maintenance.
    pub fn in_rotation(&self) -> bool {
        self.status == "UP" || self.status == "no check" || self.status.starts_with("UP ")
    }
}

/// One backend and its servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStat {
    pub name: String,
    /// The backend's own status (`UP` while at least one server serves, else `DOWN`).
    pub status: String,
    pub sessions: u64,
    pub servers: Vec<ServerStat>,
}

/// What one read of the stats page found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaproxySample {
    pub backends: Vec<BackendStat>,
    /// Current sessions over every frontend.
    pub frontend_sessions: u64,
}

/// Parses HAProxy's stats CSV (`# pxname,svname,qcur,...` then one line per proxy and
/// server), reading columns by name.
pub fn parse(csv: &str) -> Result<HaproxySample, String> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| "not HAProxy stats CSV (no `# pxname,...` header)".to_owned())?;
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(scur), Some(status)) =
        (at("pxname"), at("svname"), at("scur"), at("status"))
    else {
        return Err("HAProxy stats CSV lacks pxname, svname, scur or status".to_owned());
    };
    let check = at("check_status");
    let mut out = HaproxySample {
        backends: Vec::new(),
        frontend_sessions: 0,
    };
    let mut servers: Vec<(String, ServerStat)> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("").trim();
        let sessions = get(scur).parse().unwrap_or(0);
        match get(sv) {
            "FRONTEND" => out.frontend_sessions += sessions,
            "BACKEND" => out.backends.push(BackendStat {
                name: get(px).to_owned(),
                status: get(status).to_owned(),
                sessions,
                servers: Vec::new(),
            }),
            name => servers.push((
                get(px).to_owned(),
                ServerStat {
                    name: name.to_owned(),
                    status: get(status).to_owned(),
                    check: check.map(get).unwrap_or("").to_owned(),
                    sessions,
                },
            )),
        }
    }
    for (px, s) in servers {
        if let Some(b) = out.backends.iter_mut().find(|b| b.name == px) {
            b.servers.push(s);
        }
    }
    // The stats page's own `listen` section has no servers: not a backend to judge.
    out.backends.retain(|b| !b.servers.is_empty());
    Ok(out)
}

/// Reads the stats page.
pub async fn collect(
    conns: &Connections,
    host: &Host,
    def: &HaproxyDef,
    timeout: Duration,
) -> Result<HaproxySample, String> {
    let resp =
        super::collect::http::get(conns, host, &def.stats_url, Via::Direct, None, timeout).await?;
    if resp.status != 200 {
        return Err(format!("{} answered HTTP {}", def.stats_url, resp.status));
    }
    parse(&resp.body)
}

/// A check: id, state, reason, value.
pub type Verdict = (String, super::check::State, String, Option<f64>);

/// The checks one sample yields.
pub fn evaluate(s: &HaproxySample) -> Vec<Verdict> {
    use super::check::State;
    let mut out = vec![(
        "haproxy.up".to_owned(),
        State::Ok,
        format!(
            "stats answered: {} backends, {} sessions",
            s.backends.len(),
            s.frontend_sessions
        ),
        Some(s.frontend_sessions as f64),
    )];
    for b in &s.backends {
        let serving = b.servers.iter().filter(|s| s.in_rotation()).count();
        let total = b.servers.len();
        let mut reason = format!(
            "backend {}: {serving}/{total} servers in rotation, {} sessions",
            b.name, b.sessions
        );
        let out_of: Vec<String> = b
            .servers
            .iter()
            .filter(|s| !s.in_rotation())
            .map(|s| {
                if s.check.is_empty() {
                    format!("{} {}", s.name, s.status)
                } else {
                    format!("{} {} ({})", s.name, s.status, s.check)
                }
            })
            .collect();
        if !out_of.is_empty() {
            let _ = write!(reason, "; out: {}", out_of.join(", "));
        }
        let state = if serving == total {
            State::Ok
        } else if serving == 0 {
            State::Critical
        } else {
            State::Warning
        };
        out.push((
            format!("haproxy.backend.{}", b.name),
            state,
            reason,
            Some(serving as f64),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::check::State;

    /// The first columns of HAProxy 2.6's stats CSV, as it prints them.
    const CSV: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,\n\
http_front,FRONTEND,,,3,5,262120,40,,,,,,,,,,OPEN,,,,,,,,,1,2,0,,,,0,1,0,4,,\n\
http_back,app1,0,0,1,2,,20,,,,,,0,0,0,0,UP,1,1,0,0,0,60,0,,1,3,1,,20,,2,0,,3,L7OK,\n\
http_back,app2,0,0,0,1,,20,,,,,,0,0,0,0,MAINT,1,1,0,0,0,5,5,,1,3,2,,20,,2,0,,3,L7OK,\n\
http_back,BACKEND,0,0,1,5,26212,40,,,,,,0,0,0,0,UP,1,1,0,,0,60,0,,1,3,0,,40,,1,0,,4,,\n\
stats,FRONTEND,,,0,1,262120,3,,,,,,,,,,OPEN,,,,,,,,,1,4,0,,,,0,0,0,1,,\n\
stats,BACKEND,0,0,0,0,26212,0,,,,,,0,0,0,0,UP,0,0,0,,0,60,,,1,4,0,,0,,1,0,,0,,\n";

    #[test]
    fn reads_backends_and_servers_by_column_name() {
        let s = parse(CSV).expect("parses");
        assert_eq!(s.frontend_sessions, 3);
        assert_eq!(
            s.backends.len(),
            1,
            "the stats listen section is not a backend"
        );
        let b = &s.backends[0];
        assert_eq!(b.name, "http_back");
        assert_eq!(
            b.servers
                .iter()
                .map(|s| (
                    s.name.as_str(),
                    s.status.as_str(),
                    s.check.as_str(),
                    s.sessions
                ))
                .collect::<Vec<_>>(),
            [("app1", "UP", "L7OK", 1), ("app2", "MAINT", "L7OK", 0)]
        );
    }

    #[test]
    fn a_backend_with_a_server_out_of_rotation_warns_and_names_it() {
        let c = evaluate(&parse(CSV).expect("parses"));
        let b = c
            .iter()
            .find(|c| c.0 == "haproxy.backend.http_back")
            .expect("backend check");
        assert_eq!(b.1, State::Warning);
        assert_eq!(
            b.2,
            "backend http_back: 1/2 servers in rotation, 1 sessions; out: app2 MAINT (L7OK)"
        );
        let all_down = CSV
            .replace(",UP,1,1,0,0,0,60", ",DOWN,1,1,0,0,0,60")
            .replace(",MAINT,", ",DRAIN,");
        let c = evaluate(&parse(&all_down).expect("parses"));
        let b = c
            .iter()
            .find(|c| c.0 == "haproxy.backend.http_back")
            .expect("backend check");
        assert_eq!(b.1, State::Critical, "{}", b.2);
        let healthy = CSV.replace(",MAINT,", ",UP,");
        let c = evaluate(&parse(&healthy).expect("parses"));
        assert!(c.iter().all(|c| c.1 == State::Ok), "{c:?}");
    }

    #[test]
    fn other_text_is_an_error_not_a_panic() {
        for bad in ["", "<html>", "# foo,bar\n1,2", "# pxname,svname\nx"] {
            assert!(parse(bad).is_err() || parse(bad).is_ok_and(|s| s.backends.is_empty()));
        }
    }
}
