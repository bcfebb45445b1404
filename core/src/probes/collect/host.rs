//! The host probe: CPU, load, memory, swap, disk and inodes, uptime.
//!
//! A [`HostReader`] fetches the raw text and filesystem numbers; parsing is pure
//! ([`crate::probes::parse`]). The local reader reads `/proc` and calls `statvfs` in-process
//! (no fork). SSH hosts are read over one long-lived SFTP session
//! ([`super::sftp::SftpReader`], no remote process per poll); Docker hosts, and SSH hosts
//! without a usable sftp subsystem, with one `exec` per poll (a single shell command that
//! prints every file and the `stat -f` figures).

use std::fmt::Write as _;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::probes::model::{CpuCounters, HostSample};
use crate::probes::parse::{self, Statvfs};
use crate::transport::{self, Transport};

/// How long apart the two `/proc/stat` readings are when there is no earlier one.
pub const CPU_BASELINE_GAP: Duration = Duration::from_millis(200);

/// What one read of a host returns, unparsed.
#[derive(Debug, Clone, Default)]
pub struct HostRaw {
    /// The `cpu` line read [`CPU_BASELINE_GAP`] before `stat`, when asked for.
    pub stat_baseline: Option<String>,
    pub stat: String,
    pub loadavg: String,
    pub meminfo: String,
    pub uptime: String,
    pub mounts: Vec<(String, Result<Statvfs, String>)>,
}

/// Reads a host's `/proc` files and filesystem statistics.
pub trait HostReader: Send + Sync {
    /// One read. With `baseline`, also a first `/proc/stat` reading [`CPU_BASELINE_GAP`]
    /// earlier, so CPU % can be computed from a single call.
    fn read<'a>(
        &'a self,
        mounts: &'a [String],
        baseline: bool,
    ) -> BoxFuture<'a, Result<HostRaw, String>>;
}

/// This machine: plain file reads and `statvfs(3)`, no process started.
pub struct LocalReader;

fn read_local(mounts: &[String], baseline: bool) -> Result<HostRaw, String> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let stat_baseline = if baseline {
        let s = read("/proc/stat")?;
        std::thread::sleep(CPU_BASELINE_GAP);
        Some(s)
    } else {
        None
    };
    Ok(HostRaw {
        stat_baseline,
        stat: read("/proc/stat")?,
        loadavg: read("/proc/loadavg")?,
        meminfo: read("/proc/meminfo")?,
        uptime: read("/proc/uptime")?,
        mounts: mounts
            .iter()
            .map(|m| {
                let r = nix::sys::statvfs::statvfs(m.as_str())
                    .map(|v| Statvfs {
                        block_size: v.fragment_size(),
                        blocks: v.blocks(),
                        blocks_free: v.blocks_free(),
                        blocks_avail: v.blocks_available(),
                        files: v.files(),
                        files_free: v.files_free(),
                    })
                    .map_err(|e| e.desc().to_owned());
                (m.clone(), r)
            })
            .collect(),
    })
}

impl HostReader for LocalReader {
    fn read<'a>(
        &'a self,
        mounts: &'a [String],
        baseline: bool,
    ) -> BoxFuture<'a, Result<HostRaw, String>> {
        let mounts = mounts.to_vec();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_local(&mounts, baseline))
                .await
                .map_err(|e| format!("reading /proc failed: {e}"))?
        })
    }
}

/// Any transport: one shell command per read.
pub struct ExecReader<'t> {
    pub transport: &'t dyn Transport,
    pub timeout: Duration,
}

const MARK: &str = "@@opsdeck:";

/// The one command the exec reader runs.
pub fn exec_command(mounts: &[String], baseline: bool) -> String {
    let mut cmd = String::new();
    if baseline {
        let _ = write!(
            cmd,
            "echo {MARK}stat0; head -n1 /proc/stat; sleep {:.1}; ",
            CPU_BASELINE_GAP.as_secs_f64()
        );
    }
    for (name, file) in [
        ("stat", "/proc/stat"),
        ("loadavg", "/proc/loadavg"),
        ("meminfo", "/proc/meminfo"),
        ("uptime", "/proc/uptime"),
    ] {
        let _ = write!(cmd, "echo {MARK}{name}; cat {file}; ");
    }
    let _ = write!(cmd, "echo {MARK}df; for p in");
    for m in mounts {
        cmd.push(' ');
        // Only a NUL byte cannot be quoted; `''` then fails `stat` and reports an error.
        cmd.push_str(
            &shlex::try_quote(m).map_or_else(|_| "''".into(), std::borrow::Cow::into_owned),
        );
    }
    cmd.push_str(
        "; do stat -f -c '%S %b %f %a %c %d %n' -- \"$p\" 2>/dev/null || echo \"ERR $p\"; done",
    );
    cmd
}

/// Splits the exec reader's output into its sections.
pub fn parse_exec_output(out: &str) -> Result<HostRaw, String> {
    let mut raw = HostRaw::default();
    let mut section: Option<&str> = None;
    let mut df_seen = false;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            section = Some(name);
            if name == "stat0" {
                raw.stat_baseline = Some(String::new());
            }
            df_seen |= name == "df";
            continue;
        }
        let target = match section {
            Some("stat0") => raw.stat_baseline.as_mut(),
            Some("stat") => Some(&mut raw.stat),
            Some("loadavg") => Some(&mut raw.loadavg),
            Some("meminfo") => Some(&mut raw.meminfo),
            Some("uptime") => Some(&mut raw.uptime),
            Some("df") => {
                if let Some(p) = line.strip_prefix("ERR ") {
                    raw.mounts.push((
                        p.to_owned(),
                        Err("cannot read filesystem statistics".to_owned()),
                    ));
                } else if !line.is_empty() {
                    let (s, p) = parse::stat_f_line(line).map_err(|e| e.to_string())?;
                    raw.mounts.push((p, Ok(s)));
                }
                None
            }
            _ => None,
        };
        if let Some(t) = target {
            t.push_str(line);
            t.push('\n');
        }
    }
    if !df_seen {
        return Err(format!(
            "the host's answer was cut short (no filesystem section): {:?}",
            out.chars().take(200).collect::<String>()
        ));
    }
    Ok(raw)
}

impl HostReader for ExecReader<'_> {
    fn read<'a>(
        &'a self,
        mounts: &'a [String],
        baseline: bool,
    ) -> BoxFuture<'a, Result<HostRaw, String>> {
        Box::pin(async move {
            let cmd = exec_command(mounts, baseline);
            let out = transport::run(self.transport, &cmd, self.timeout, CancellationToken::new())
                .await
                .map_err(|e| e.masked())?;
            if !out.status.success() && !out.stdout.contains(MARK) {
                return Err(format!(
                    "reading /proc failed ({}): {}",
                    out.status,
                    out.stderr.trim()
                ));
            }
            parse_exec_output(&out.stdout)
        })
    }
}

/// Parses a read into a sample; `prev` is the previous reading's CPU counters.
pub fn to_sample(raw: &HostRaw, prev: Option<&CpuCounters>) -> Result<HostSample, String> {
    let (cpu, cpus) = parse::proc_stat(&raw.stat).map_err(|e| e.to_string())?;
    let baseline = match &raw.stat_baseline {
        Some(b) => Some(parse::proc_stat(b).map_err(|e| e.to_string())?.0),
        None => prev.copied(),
    };
    let (load1, load5, load15) = parse::loadavg(&raw.loadavg).map_err(|e| e.to_string())?;
    let mem = parse::meminfo(&raw.meminfo).map_err(|e| e.to_string())?;
    let uptime_s = parse::uptime(&raw.uptime).map_err(|e| e.to_string())?;
    Ok(HostSample {
        cpu_percent: baseline.and_then(|b| cpu.busy_percent_since(&b)),
        cpu_counters: cpu,
        cpus,
        load1,
        load5,
        load15,
        mem_total_bytes: mem.total_bytes,
        mem_used_percent: mem.used_percent,
        swap_used_percent: mem.swap_used_percent,
        mounts: raw
            .mounts
            .iter()
            .map(|(p, r)| match r {
                Ok(s) => s.to_mount(p),
                Err(e) => crate::probes::model::MountSample {
                    path: p.clone(),
                    size_bytes: 0,
                    avail_bytes: 0,
                    used_percent: 0.0,
                    inodes_used_percent: None,
                    error: Some(e.clone()),
                },
            })
            .collect(),
        uptime_s,
        top_process: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_sections_and_missing_mount() {
        let out = format!(
            "{MARK}stat0\ncpu  100 0 0 900 0 0 0 0 0 0\n{MARK}stat\ncpu  150 0 0 950 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n\
             {MARK}loadavg\n0.50 0.40 0.30 1/100 42\n{MARK}meminfo\nMemTotal: 1000 kB\nMemAvailable: 250 kB\n\
             {MARK}uptime\n100.5 50.0\n{MARK}df\n4096 100 50 40 1000 900 /\nERR /nope\n"
        );
        let raw = parse_exec_output(&out).expect("parses");
        let s = to_sample(&raw, None).expect("sample");
        assert_eq!(s.cpu_percent, Some(50.0));
        assert_eq!(s.cpus, 1);
        assert!((s.mem_used_percent - 75.0).abs() < 1e-9);
        assert_eq!(s.mounts.len(), 2);
        assert_eq!(s.mounts[0].path, "/");
        assert!(s.mounts[1].error.is_some());
        assert!(parse_exec_output("cpu 1 2 3 4\n").is_err(), "cut short");
    }

    #[test]
    fn exec_command_quotes_mounts() {
        let c = exec_command(&["/".to_owned(), "/mnt/my disk".to_owned()], false);
        assert!(c.contains("for p in / '/mnt/my disk';"), "{c}");
        assert!(!c.contains("stat0"));
        assert!(exec_command(&[], true).contains("stat0"));
    }

    #[tokio::test]
    async fn local_reader_reads_this_machine() {
        let raw = LocalReader
            .read(&["/".to_owned(), "/does/not/exist".to_owned()], true)
            .await
            .expect("reads /proc");
        let s = to_sample(&raw, None).expect("parses");
        let cpu = s.cpu_percent.expect("cpu from the baseline");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(s.uptime_s > 0.0);
        assert!(s.mounts[0].error.is_none() && s.mounts[0].size_bytes > 0);
        assert!(s.mounts[1].error.is_some());
    }
}
