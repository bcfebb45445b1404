//! Pure parsers for what the probes read: `/proc` files, filesystem statistics, nginx
//! `stub_status`, php-fpm status and the application's `/health` JSON.
//!
//! Every parser takes text and returns a typed value or a [`ParseError`] that names the
//! source and the line that did not fit; none of them panics on input.

use super::model::{AppHealth, CpuCounters, MountSample, NginxSample, PhpFpmSample};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {source_name}: {message}")]
pub struct ParseError {
    pub source_name: &'static str,
    pub message: String,
}

fn err(source_name: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        source_name,
        message: message.into(),
    }
}

/// The aggregate `cpu` line of `/proc/stat`, and the number of `cpuN` lines.
pub fn proc_stat(text: &str) -> Result<(CpuCounters, u32), ParseError> {
    const SRC: &str = "/proc/stat";
    let mut total = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let nums = fields
                    .map(str::parse::<u64>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(SRC, format!("bad number in {line:?}: {e}")))?;
                if nums.len() < 4 {
                    return Err(err(
                        SRC,
                        format!(
                            "the cpu line has {} fields, expected at least 4",
                            nums.len()
                        ),
                    ));
                }
                let at = |i: usize| nums.get(i).copied().unwrap_or(0);
                total = Some(CpuCounters {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                });
            }
            Some(f) if f.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    let total = total.ok_or_else(|| err(SRC, "no aggregate \"cpu\" line"))?;
    Ok((total, cpus.max(1)))
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn loadavg(text: &str) -> Result<(f64, f64, f64), ParseError> {
    const SRC: &str = "/proc/loadavg";
    let mut f = text.split_ascii_whitespace().map(str::parse::<f64>);
    match (f.next(), f.next(), f.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Ok((a, b, c)),
        _ => Err(err(
            SRC,
            format!("expected three numbers, got {:?}", text.trim()),
        )),
    }
}

/// `/proc/uptime`: seconds since boot.
pub fn uptime(text: &str) -> Result<f64, ParseError> {
    text.split_ascii_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| {
            err(
                "/proc/uptime",
                format!("expected a number, got {:?}", text.trim()),
            )
        })
}

/// Memory figures from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    pub total_bytes: u64,
    pub used_percent: f64,
    /// `None` without swap.
    pub swap_used_percent: Option<f64>,
}

/// `/proc/meminfo`: used = total - available (`MemAvailable`, or free + buffers + cached on
/// kernels before 3.14).
pub fn meminfo(text: &str) -> Result<Memory, ParseError> {
    const SRC: &str = "/proc/meminfo";
    let get = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_ascii_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = get("MemTotal").ok_or_else(|| err(SRC, "no MemTotal line"))?;
    if total == 0 {
        return Err(err(SRC, "MemTotal is 0"));
    }
    let available = if let Some(a) = get("MemAvailable") {
        a
    } else {
        let free = get("MemFree").ok_or_else(|| err(SRC, "neither MemAvailable nor MemFree"))?;
        free + get("Buffers").unwrap_or(0) + get("Cached").unwrap_or(0)
    };
    let used = total.saturating_sub(available);
    let swap_total = get("SwapTotal").unwrap_or(0);
    let swap_free = get("SwapFree").unwrap_or(0);
    let swap_used_percent = (swap_total > 0)
        .then(|| swap_total.saturating_sub(swap_free) as f64 * 100.0 / swap_total as f64);
    Ok(Memory {
        total_bytes: total.saturating_mul(1024),
        used_percent: used as f64 * 100.0 / total as f64,
        swap_used_percent,
    })
}

/// Filesystem statistics as `statvfs(3)` reports them (or `stat -f -c '%S %b %f %a %c %d'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Statvfs {
    /// Fundamental block size (`f_frsize`).
    pub block_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    /// Free for unprivileged users.
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
}

impl Statvfs {
    /// Disk and inode use the way `df` shows them: used / (used + available to users).
    pub fn to_mount(&self, path: &str) -> MountSample {
        let used = self.blocks.saturating_sub(self.blocks_free);
        let denom = used.saturating_add(self.blocks_avail);
        let used_percent = if denom == 0 {
            0.0
        } else {
            used as f64 * 100.0 / denom as f64
        };
        let inodes_used_percent = (self.files > 0)
            .then(|| self.files.saturating_sub(self.files_free) as f64 * 100.0 / self.files as f64);
        MountSample {
            path: path.to_owned(),
            size_bytes: self.blocks.saturating_mul(self.block_size),
            avail_bytes: self.blocks_avail.saturating_mul(self.block_size),
            used_percent,
            inodes_used_percent,
            error: None,
        }
    }
}

/// One line of `stat -f -c '%S %b %f %a %c %d %n' PATH...`: six numbers then the path.
pub fn stat_f_line(line: &str) -> Result<(Statvfs, String), ParseError> {
    const SRC: &str = "stat -f output";
    let mut parts = line.trim_end().splitn(7, ' ');
    let mut nums = [0u64; 6];
    for n in &mut nums {
        *n = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(SRC, format!("expected six numbers and a path in {line:?}")))?;
    }
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err(SRC, format!("no path in {line:?}")))?;
    Ok((
        Statvfs {
            block_size: nums[0],
            blocks: nums[1],
            blocks_free: nums[2],
            blocks_avail: nums[3],
            files: nums[4],
            files_free: nums[5],
        },
        path.to_owned(),
    ))
}

/// nginx `stub_status`.
pub fn nginx_stub_status(text: &str) -> Result<NginxSample, ParseError> {
    const SRC: &str = "nginx stub_status";
    let bad = || err(SRC, format!("unexpected text {:?}", truncate(text, 200)));
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(bad)?;
    if lines.next() != Some("server accepts handled requests") {
        return Err(bad());
    }
    let counts: Vec<u64> = lines
        .next()
        .ok_or_else(bad)?
        .split_ascii_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [accepts, handled, requests] = counts[..] else {
        return Err(bad());
    };
    let rww: Vec<&str> = lines
        .next()
        .ok_or_else(bad)?
        .split_ascii_whitespace()
        .collect();
    let field = |name: &str| -> Option<u64> {
        let i = rww.iter().position(|w| *w == name)?;
        rww.get(i + 1)?.parse().ok()
    };
    Ok(NginxSample {
        active,
        accepts,
        handled,
        requests,
        reading: field("Reading:").ok_or_else(bad)?,
        writing: field("Writing:").ok_or_else(bad)?,
        waiting: field("Waiting:").ok_or_else(bad)?,
        upstreams: Vec::new(),
    })
}

/// php-fpm status page, plain-text form (`key: value` lines).
pub fn php_fpm_status(text: &str) -> Result<PhpFpmSample, ParseError> {
    const SRC: &str = "php-fpm status";
    let mut s = PhpFpmSample::default();
    let mut seen = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let num = || value.parse::<u64>().ok();
        let slot = match key.trim() {
            "pool" => {
                value.clone_into(&mut s.pool);
                continue;
            }
            "process manager" => {
                value.clone_into(&mut s.process_manager);
                continue;
            }
            "accepted conn" => &mut s.accepted_conn,
            "listen queue" => &mut s.listen_queue,
            "max listen queue" => &mut s.max_listen_queue,
            "listen queue len" => &mut s.listen_queue_len,
            "idle processes" => &mut s.idle_processes,
            "active processes" => &mut s.active_processes,
            "total processes" => &mut s.total_processes,
            "max active processes" => &mut s.max_active_processes,
            "max children reached" => &mut s.max_children_reached,
            "slow requests" => &mut s.slow_requests,
            _ => continue,
        };
        *slot = num().ok_or_else(|| err(SRC, format!("bad number in {line:?}")))?;
        seen += 1;
    }
    if s.pool.is_empty() || seen < 5 {
        return Err(err(
            SRC,
            format!(
                "not a php-fpm status page (is pm.status_path enabled and the URL right?): {:?}",
                truncate(text, 200)
            ),
        ));
    }
    Ok(s)
}

/// The application's `/health` JSON (seed 001: `status`, `database`, `redis`, `queue`).
/// Fields may be strings or booleans; absent fields stay `None`.
pub fn app_health(body: &str) -> Result<AppHealth, ParseError> {
    const SRC: &str = "the /health JSON";
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| err(SRC, format!("{e} in {:?}", truncate(body, 200))))?;
    let obj = v.as_object().ok_or_else(|| {
        err(
            SRC,
            format!("expected a JSON object, got {}", truncate(body, 200)),
        )
    })?;
    let field = |k: &str| -> Option<String> {
        match obj.get(k)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Bool(b) => Some(if *b { "ok" } else { "failed" }.to_owned()),
            serde_json::Value::Object(o) => o
                .get("status")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            other => Some(other.to_string()),
        }
    };
    Ok(AppHealth {
        status: field("status"),
        database: field("database"),
        redis: field("redis"),
        queue: field("queue"),
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // values compared are set exactly from integers
mod tests {
    use super::*;

    // Captured on the build machine (2 cores).
    const PROC_STAT: &str = "cpu  66163 0 10519 36237 984 0 182 69 0 0
cpu0 32724 0 4881 19003 403 0 11 32 0 0
cpu1 33438 0 5637 17234 581 0 170 37 0 0
intr 5011372 0 9 0 0 0 0 0 0 0 0 0 0
ctxt 10213443
btime 1763300000
processes 30461
procs_running 3
procs_blocked 0
softirq 1840231 0 360511 2 19085 0 0 1234 771399 0 688000
";

    const MEMINFO: &str = "MemTotal:       24683656 kB
MemFree:        17736836 kB
MemAvailable:   23517868 kB
Buffers:          207084 kB
Cached:          5539964 kB
SwapCached:            0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
";

    #[test]
    fn proc_stat_reads_the_aggregate_line_and_counts_cpus() {
        let (c, cpus) = proc_stat(PROC_STAT).expect("parses");
        assert_eq!(cpus, 2);
        assert_eq!(c.user, 66163);
        assert_eq!(c.system, 10519);
        assert_eq!(c.idle, 36237);
        assert_eq!(c.iowait, 984);
        assert_eq!(c.steal, 69);
        assert_eq!(c.total(), 66163 + 10519 + 36237 + 984 + 182 + 69);
    }

    #[test]
    fn proc_stat_rejects_garbage_with_a_message() {
        let e = proc_stat("intr 1 2 3\n").expect_err("no cpu line");
        assert!(e.to_string().contains("no aggregate \"cpu\" line"), "{e}");
        let e = proc_stat("cpu 1 x 3 4\n").expect_err("bad number");
        assert!(e.to_string().contains("/proc/stat"), "{e}");
        assert!(proc_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn loadavg_and_uptime() {
        assert_eq!(
            loadavg("3.73 1.82 0.92 8/169 30423\n"),
            Ok((3.73, 1.82, 0.92))
        );
        assert!(loadavg("3.73\n").is_err());
        assert_eq!(uptime("574.23 362.37\n"), Ok(574.23));
        assert!(uptime("").is_err());
    }

    #[test]
    fn meminfo_uses_available_and_reports_no_swap() {
        let m = meminfo(MEMINFO).expect("parses");
        assert_eq!(m.total_bytes, 24_683_656 * 1024);
        let expected = (24_683_656.0 - 23_517_868.0) * 100.0 / 24_683_656.0;
        assert!((m.used_percent - expected).abs() < 1e-9);
        assert_eq!(m.swap_used_percent, None);
    }

    #[test]
    fn meminfo_old_kernel_and_swap() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 50 kB\n\
                    SwapTotal: 200 kB\nSwapFree: 50 kB\n";
        let m = meminfo(text).expect("parses");
        assert!((m.used_percent - 80.0).abs() < 1e-9);
        assert_eq!(m.swap_used_percent, Some(75.0));
        assert!(meminfo("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn stat_f_line_to_mount_like_df() {
        // Captured: `stat -f -c '%S %b %f %a %c %d %n' /`
        let (s, path) =
            stat_f_line("4096 66053021 60716137 18484588 16777216 16302218 /").expect("parses");
        assert_eq!(path, "/");
        let m = s.to_mount(&path);
        let used = 66_053_021.0 - 60_716_137.0;
        assert!((m.used_percent - used * 100.0 / (used + 18_484_588.0)).abs() < 1e-9);
        let inodes = (16_777_216.0 - 16_302_218.0) * 100.0 / 16_777_216.0;
        assert!((m.inodes_used_percent.expect("inodes") - inodes).abs() < 1e-9);
        assert_eq!(m.avail_bytes, 18_484_588 * 4096);
        // Paths with spaces survive.
        let (_, p) = stat_f_line("4096 10 5 5 0 0 /mnt/my disk").expect("parses");
        assert_eq!(p, "/mnt/my disk");
        assert!(stat_f_line("4096 10 /").is_err());
    }

    #[test]
    fn full_disk_and_no_inodes() {
        let s = Statvfs {
            block_size: 4096,
            blocks: 100,
            blocks_free: 0,
            blocks_avail: 0,
            files: 0,
            files_free: 0,
        };
        let m = s.to_mount("/var/log");
        assert!((m.used_percent - 100.0).abs() < 1e-9);
        assert_eq!(m.inodes_used_percent, None);
    }

    #[test]
    fn nginx_stub_status_as_served() {
        let text = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";
        let s = nginx_stub_status(text).expect("parses");
        assert_eq!(s.active, 291);
        assert_eq!(s.accepts, 16_630_948);
        assert_eq!(s.requests, 31_070_465);
        assert_eq!((s.reading, s.writing, s.waiting), (6, 179, 106));
        let e = nginx_stub_status("<html>404</html>").expect_err("not stub_status");
        assert!(e.to_string().contains("nginx stub_status"), "{e}");
    }

    #[test]
    fn php_fpm_plain_status() {
        let text = "pool:                 www
process manager:      dynamic
start time:           01/Jul/2011:17:53:49 +0200
start since:          62636
accepted conn:        190460
listen queue:         3
max listen queue:     7
listen queue len:     42
idle processes:       0
active processes:     5
total processes:      5
max active processes: 5
max children reached: 2
slow requests:        0
";
        let s = php_fpm_status(text).expect("parses");
        assert_eq!(s.pool, "www");
        assert_eq!(s.process_manager, "dynamic");
        assert_eq!(s.listen_queue, 3);
        assert_eq!(s.max_listen_queue, 7);
        assert_eq!(s.active_processes, 5);
        assert_eq!(s.idle_processes, 0);
        assert_eq!(s.max_children_reached, 2);
        assert!(php_fpm_status("File not found.\n").is_err());
        assert!(php_fpm_status("pool: www\nlisten queue: x\n").is_err());
    }

    #[test]
    fn app_health_json_of_seed_001() {
        let h = app_health(
            r#"{"status":"healthy","database":"connected","redis":"disconnected","queue":"backlog"}"#,
        )
        .expect("parses");
        assert_eq!(h.status.as_deref(), Some("healthy"));
        assert_eq!(h.database.as_deref(), Some("connected"));
        assert_eq!(h.redis.as_deref(), Some("disconnected"));
        assert_eq!(h.queue.as_deref(), Some("backlog"));
        let h = app_health(r#"{"status":"ok","database":true,"redis":{"status":"down"}}"#)
            .expect("parses");
        assert_eq!(h.database.as_deref(), Some("ok"));
        assert_eq!(h.redis.as_deref(), Some("down"));
        assert_eq!(h.queue, None);
        assert!(app_health("<html>").is_err());
        assert!(app_health("[1,2]").is_err());
    }
}
