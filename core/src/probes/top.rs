//! Top processes on demand: one `ps` over the host's transport when an operator asks (not a
//! poll: it forks a process on the host, which the periodic probes avoid).

use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::inventory::Host;
use crate::transport::{self, Connections};

const PS: &str = "ps -eo pid=,user=,pcpu=,pmem=,etime=,args= --sort=-pcpu | head -n 15";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub user: String,
    pub cpu_percent: f64,
    pub mem_percent: f64,
    pub elapsed: String,
    pub command: String,
}

/// Parses `ps -eo pid=,user=,pcpu=,pmem=,etime=,args=` output; lines that do not fit are
/// skipped.
pub fn parse(text: &str) -> Vec<ProcessRow> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let pid = it.next()?.parse().ok()?;
            let user = it.next()?.to_owned();
            let cpu_percent = it.next()?.parse().ok()?;
            let mem_percent = it.next()?.parse().ok()?;
            let elapsed = it.next()?.to_owned();
            let command = it.collect::<Vec<_>>().join(" ");
            Some(ProcessRow {
                pid,
                user,
                cpu_percent,
                mem_percent,
                elapsed,
                command,
            })
        })
        .collect()
}

/// The busiest processes on `host`, by CPU.
pub async fn top_processes(
    conns: &Connections,
    host: &Host,
    timeout: Duration,
) -> Result<Vec<ProcessRow>, String> {
    let conn = conns.host(host);
    let out = transport::run(conn.transport(), PS, timeout, CancellationToken::new())
        .await
        .map_err(|e| e.masked())?;
    if !out.status.success() {
        return Err(format!("ps failed ({}): {}", out.status, out.stderr.trim()));
    }
    Ok(parse(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ps_rows_with_spaces_in_commands() {
        let rows = parse(
            "  4242 root      99.5  0.1    01:02 sh -c while :; do :; done\n   1 root 0.0 0.0 1-02:03:04 /sbin/init\nbogus\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pid, 4242);
        assert!((rows[0].cpu_percent - 99.5).abs() < f64::EPSILON);
        assert_eq!(rows[0].command, "sh -c while :; do :; done");
        assert_eq!(rows[1].elapsed, "1-02:03:04");
    }

    #[tokio::test]
    async fn lists_processes_of_this_machine_over_the_local_transport() {
        let inv = crate::inventory::load(None).expect("default inventory");
        let rows = top_processes(&Connections::new(), &inv.hosts[0], Duration::from_secs(10))
            .await
            .expect("ps runs");
        assert!(!rows.is_empty());
        assert!(
            rows.iter()
                .any(|r| r.pid == std::process::id() || r.pid > 0)
        );
        assert!(
            rows.windows(2)
                .all(|w| w[0].cpu_percent >= w[1].cpu_percent),
            "sorted by CPU"
        );
    }
}
