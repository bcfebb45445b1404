//! Drills: real faults injected into the lab, one per runbook, judged from the real servers.
//!
//! `inject` breaks something and says what it did; `check` looks at the servers (not at this
//! module's bookkeeping) and says whether the fault is present; `reset` restores a healthy lab.
//! Drill processes (sleepers, burners) keep their pid files in `DIR/drills/`.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use super::invfile::REDIS_SECRET;
use super::layout::{
    self, HTTP_PORT, Lab, LabError, QUEUE_KEY, REDIS_PORT, Result, SENTINEL_MASTER,
};
use super::process::{Daemon, find_program, pid_alive};
use super::stack;
use super::web;
use super::wire::{self, Reply};

/// Every drill: name and what it does (the list lives in the core, which checks the
/// `drill = "..."` a runbook names against it).
pub use crate::runbook::drills::DRILLS;

/// The outcome of `--check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub present: bool,
    pub detail: String,
}

fn obs(present: bool, detail: impl Into<String>) -> Observation {
    Observation {
        present,
        detail: detail.into(),
    }
}

pub fn list_text() -> String {
    DRILLS.iter().fold(String::new(), |mut s, (n, d)| {
        let _ = writeln!(s, "{n:<22} {d}");
        s
    })
}

fn known(name: &str) -> Result<()> {
    if DRILLS.iter().any(|(n, _)| *n == name) {
        Ok(())
    } else {
        Err(LabError::Failed(format!(
            "unknown drill {name:?}; the drills are: {} (see `opsdeck drill list`)",
            DRILLS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn require_lab(lab: &Lab) -> Result<()> {
    if lab.exists() {
        Ok(())
    } else {
        Err(LabError::NotRunning {
            dir: lab.dir.display().to_string(),
        })
    }
}

/// A job the lab's worker never finishes (see `assets/worker.php`).
const RUNAWAY_JOB: &str = "{\"job\":\"GenerateMonthlyReport\",\"runaway\":true}";

/// Queue worker processes running a runaway job: runnable (state R) at every look over half a
/// second. A worker waiting for jobs sleeps in BRPOP; a busy loop is always runnable, however
/// little of the CPU a busy machine leaves it.
fn burning_workers() -> Vec<u32> {
    let mut pids = wire::pids_matching("queue:work");
    for _ in 0..5 {
        pids.retain(|p| wire::process_state(*p) == Some('R'));
        std::thread::sleep(Duration::from_millis(100));
    }
    pids
}
const FILL_PREFIX: &str = "drill-fill-";
const BACKLOG_JOBS: usize = 1500;
/// Age of the rotated log the disk-full drill leaves (past the usual 7-day retention).
const ROTATED_AGE_DAYS: u64 = 10;

fn redis_pw(lab: &Lab) -> Result<String> {
    lab.read_secret(REDIS_SECRET)
}

fn spawn_drill(lab: &Lab, name: &str, cmd: &mut Command) -> Result<u32> {
    let d = Daemon::spawn(name, cmd, &lab.drills())
        .map_err(LabError::io(format!("starting drill process {name}")))?;
    let pid = d.pid;
    d.detach();
    Ok(pid)
}

fn stop_drill(lab: &Lab, name: &str) -> bool {
    let p = lab.drills().join(format!("{name}.pid"));
    match Daemon::from_pidfile(name, &p) {
        Some(mut d) => {
            d.stop(Duration::from_secs(2));
            true
        }
        None => false,
    }
}

/// Injects a drill's fault; returns what was done.
pub fn inject(lab: &Lab, name: &str) -> Result<String> {
    known(name)?;
    require_lab(lab)?;
    match name {
        "connection-exhaustion" => {
            let php =
                find_program("php").ok_or_else(|| LabError::Failed("php not found".into()))?;
            let mut cmd = Command::new(php);
            cmd.arg(lab.app().join("sleeper.php"))
                .env("LAB_CONFIG", lab.app_config());
            let pid = spawn_drill(lab, "sleepers-db1", &mut cmd)?;
            let log = lab.drills().join("sleepers-db1.log");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = fs::read_to_string(&log).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with("holding")) {
                    return Ok(format!(
                        "connection-exhaustion: process {pid} (php sleeper.php) on db1 is {line}"
                    ));
                }
                if !pid_alive(pid) || Instant::now() >= deadline {
                    return Err(LabError::Failed(format!(
                        "the sleeper process did not fill db1's connections; its log ({}) says: {}",
                        log.display(),
                        text.trim()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "redis-down" => {
            let n = layout::redis_name(layout::redis_master().name);
            let mut d = Daemon::from_pidfile(&n, &lab.pidfile(&n))
                .ok_or_else(|| LabError::Failed(format!("{n} has no pid file: is the lab up?")))?;
            let pid = d.pid;
            let _ = d.signal(nix::sys::signal::Signal::SIGKILL);
            d.stop(Duration::from_secs(2));
            Ok(format!(
                "redis-down: killed redis-server {pid} on {} (SIGKILL)",
                layout::redis_master_addr()
            ))
        }
        "disk-full" => {
            let logs = lab.logs("app1");
            let point = lab.disk("app1");
            let st = nix::sys::statvfs::statvfs(&point)
                .map_err(|e| LabError::Failed(format!("statvfs {}: {e}", point.display())))?;
            let block = st.fragment_size().max(1);
            let total = st.blocks() * block;
            let avail = st.blocks_available() * block;
            // Leave about 2 % free: past 95 %, not quite 100 %, as a filling log would.
            let keep = total / 50;
            let size = avail.saturating_sub(keep);
            // What fills real disks: rotated logs nobody cleans. logrotate leaves `NAME.log.1`
            // with the old modification time, which is what a cleanup with a retention finds.
            let file = logs.join(format!("{FILL_PREFIX}laravel.log.1"));
            let f = fs::File::create(&file)
                .map_err(LabError::io(format!("creating {}", file.display())))?;
            write_zeros(f, size).map_err(LabError::io(format!("filling {}", file.display())))?;
            let old = std::time::SystemTime::now() - Duration::from_secs(ROTATED_AGE_DAYS * 86_400);
            fs::File::options()
                .write(true)
                .open(&file)
                .and_then(|f| f.set_modified(old))
                .map_err(LabError::io(format!("dating {}", file.display())))?;
            let used = wire::disk_used_percent(&point)
                .map_err(LabError::io(format!("statvfs {}", point.display())))?;
            Ok(format!(
                "disk-full: wrote {} MB to {}; {} is {used:.0}% full",
                size / (1024 * 1024),
                file.display(),
                point.display()
            ))
        }
        "primary-down" => {
            let n = layout::primary_db().name;
            let mut d = Daemon::from_pidfile(n, &lab.pidfile(n))
                .ok_or_else(|| LabError::Failed(format!("{n} has no pid file: is the lab up?")))?;
            let pid = d.pid;
            d.stop(Duration::from_secs(20));
            Ok(format!("primary-down: stopped mariadbd {pid} on db1"))
        }
        "sentinel-failover" => {
            let s = layout::sentinel_addrs()[0];
            let before = wire::sentinel_master(s, SENTINEL_MASTER)
                .map_err(LabError::io("asking Sentinel for the master"))?;
            // Right after a restart Sentinel may not yet judge the replica fit (NOGOODSLAVE):
            // it refreshes replica INFO every 10 s.
            let deadline = Instant::now() + Duration::from_secs(30);
            while let Err(e) = wire::redis1(s, None, &["SENTINEL", "FAILOVER", SENTINEL_MASTER]) {
                if Instant::now() >= deadline {
                    return Err(LabError::Failed(format!("SENTINEL FAILOVER: {e}")));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let after = wait_master(|m| m != before, Duration::from_secs(30))?;
            Ok(format!(
                "sentinel-failover: Sentinel moved {SENTINEL_MASTER} from {before} to {after}"
            ))
        }
        "high-cpu" => {
            let pw = redis_pw(lab)?;
            let master = current_master()?;
            wire::redis1(
                master,
                Some(&pw),
                &["RPUSH", QUEUE_KEY, RUNAWAY_JOB, RUNAWAY_JOB],
            )
            .map_err(LabError::io("queueing the runaway jobs"))?;
            let flag = lab.drills().join("high-cpu");
            fs::write(&flag, "runaway jobs queued\n")
                .map_err(LabError::io(format!("writing {}", flag.display())))?;
            // Taken within a second (BRPOP wakes at once); then both workers burn.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let burning = burning_workers();
                if burning.len() >= 2 {
                    return Ok(format!(
                        "high-cpu: two runaway report jobs on {QUEUE_KEY}; queue workers {burning:?} on worker1 each burn a CPU"
                    ));
                }
                if Instant::now() >= deadline {
                    return Err(LabError::Failed(format!(
                        "the queue workers did not take the runaway jobs within 10 s (burning: {burning:?}); is the worker running? (opsdeck lab status)"
                    )));
                }
            }
        }
        "slow-api" => {
            // The php-fpm masters running now: their workers are the degraded ones.
            let mut masters = Vec::new();
            for h in layout::app_hosts() {
                let n = layout::fpm_name(h.name);
                let d = Daemon::from_pidfile(&n, &lab.pidfile(&n)).ok_or_else(|| {
                    LabError::Failed(format!("{n} is not running: is the lab up?"))
                })?;
                masters.push(d.pid.to_string());
            }
            let flag = lab.drills().join("slow-api");
            fs::write(&flag, format!("{}\n", masters.join(" ")))
                .map_err(LabError::io(format!("writing {}", flag.display())))?;
            Ok(format!(
                "slow-api: php-fpm masters {} on app1 and app2 answer every request 400 ms late until they restart",
                masters.join(", ")
            ))
        }
        "queue-backlog" => {
            let n = layout::worker_name("worker1");
            if let Some(mut d) = Daemon::from_pidfile(&n, &lab.pidfile(&n)) {
                d.stop(Duration::from_secs(5));
            }
            let pw = redis_pw(lab)?;
            let master = current_master()?;
            let jobs: Vec<String> = (0..BACKLOG_JOBS)
                .map(|i| format!("{{\"job\":\"SendWelcomeEmail\",\"id\":{i}}}"))
                .collect();
            let mut cmd = vec!["RPUSH", QUEUE_KEY];
            cmd.extend(jobs.iter().map(String::as_str));
            let len = wire::redis1(master, Some(&pw), &cmd)
                .map_err(LabError::io("pushing jobs"))?
                .text();
            Ok(format!(
                "queue-backlog: stopped the worker on worker1 and pushed {BACKLOG_JOBS} jobs to {QUEUE_KEY} on {master} (length now {len})"
            ))
        }
        "bad-release" => {
            let flag = lab.drills().join("bad-release");
            fs::write(&flag, "green\n")
                .map_err(LabError::io(format!("writing {}", flag.display())))?;
            switch_lb(lab, "green")?;
            Ok(format!(
                "bad-release: the load balancer sends traffic to the green release on {}, which answers 500 to everything",
                layout::app_hosts()
                    .map(|a| format!("{}:{}", a.addr, layout::GREEN_PORT))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        "cache-full" => {
            let pw = redis_pw(lab)?;
            let master = current_master()?;
            // Half-megabyte pages until Redis refuses a write (noeviction at maxmemory), then
            // smaller ones until those are refused too: the cache ends truly full (above any
            // critical level), not wherever the last big page happened to stop.
            let mut size = 512 * 1024;
            let mut page = "x".repeat(size);
            let mut n = 0;
            loop {
                let key = format!("page:warmup:{n:05}");
                let r = wire::redis(
                    master,
                    Some(&pw),
                    &[
                        vec!["SELECT", layout::PAGE_CACHE_DB],
                        vec!["SET", &key, &page],
                    ],
                )
                .map_err(LabError::io("filling the page cache"))?;
                match r.last() {
                    Some(Reply::Error(e)) if e.starts_with("OOM") && size > 4096 => {
                        size /= 8;
                        page = "x".repeat(size);
                    }
                    Some(Reply::Error(e)) if e.starts_with("OOM") => break,
                    Some(Reply::Error(e)) => {
                        return Err(LabError::Failed(format!("SET {key}: {e}")));
                    }
                    _ => n += 1,
                }
                if n > 1000 {
                    return Err(LabError::Failed(
                        "Redis never refused a write: is maxmemory set?".to_owned(),
                    ));
                }
            }
            Ok(format!(
                "cache-full: {n} warm-up pages in db {} on {master}; Redis now refuses writes (maxmemory {})",
                layout::PAGE_CACHE_DB,
                layout::REDIS_MAXMEMORY
            ))
        }
        "haproxy-maint" => {
            let h = layout::haproxy_lb();
            let server = format!("{}/app2", layout::HAPROXY_BACKEND);
            let out = wire::unix_command(
                &lab.haproxy_socket(h.name),
                &format!("set server {server} state maint"),
            )
            .map_err(LabError::io("HAProxy's runtime API"))?;
            if !out.trim().is_empty() {
                return Err(LabError::Failed(format!(
                    "HAProxy refused to put {server} in maintenance: {}",
                    out.trim()
                )));
            }
            Ok(format!(
                "haproxy-maint: {server} is in maintenance on HAProxy ({}): it gets no traffic",
                h.name
            ))
        }
        _ => known(name).map(|()| String::new()),
    }
}

fn write_zeros(mut f: fs::File, mut size: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let buf = vec![b'x'; 1 << 20];
    while size > 0 {
        let n = size.min(buf.len() as u64);
        let n = usize::try_from(n).unwrap_or(buf.len());
        f.write_all(&buf[..n])?;
        size -= n as u64;
    }
    f.sync_all()
}

/// The master Sentinel names now (the first sentinel that answers).
fn current_master() -> Result<SocketAddr> {
    let mut last = String::new();
    for s in layout::sentinel_addrs() {
        match wire::sentinel_master(s, SENTINEL_MASTER) {
            Ok(m) => return Ok(m),
            Err(e) => last = e.to_string(),
        }
    }
    Err(LabError::Failed(format!("no Sentinel answers: {last}")))
}

fn wait_master(done: impl Fn(SocketAddr) -> bool, timeout: Duration) -> Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    loop {
        // Every Sentinel must agree, not just the first: clients may ask any of them.
        let answers: Vec<Option<SocketAddr>> = layout::sentinel_addrs()
            .into_iter()
            .map(|s| wire::sentinel_master(s, SENTINEL_MASTER).ok())
            .collect();
        if let Some(Some(m)) = answers.first()
            && answers.iter().all(|a| *a == Some(*m))
            && done(*m)
        {
            return Ok(*m);
        }
        if Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "Sentinel did not name the expected master within {timeout:?} (now: {:?})",
                current_master().ok()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Looks at the real servers: is the drill's fault present?
pub fn check(lab: &Lab, name: &str) -> Result<Observation> {
    known(name)?;
    require_lab(lab)?;
    Ok(match name {
        "connection-exhaustion" => {
            let cnf = lab.mysql_cnf(layout::APP_USER, layout::primary_db());
            match wire::mariadb_cli(&cnf, "SELECT 1").map_err(LabError::io("running mariadb"))? {
                Ok(_) => obs(false, "a new connection to db1 as app succeeds"),
                Err(e) if e.contains("1040") => {
                    obs(true, format!("a new connection to db1 as app fails: {e}"))
                }
                Err(e) => obs(
                    false,
                    format!("a new connection to db1 fails, but not with 1040: {e}"),
                ),
            }
        }
        "redis-down" => {
            let pw = redis_pw(lab)?;
            let addr = layout::redis_master_addr();
            match wire::redis1(addr, Some(&pw), &["PING"]) {
                Ok(r) => obs(false, format!("PING {addr} answers {}", r.text())),
                Err(e) => obs(true, format!("PING {addr} fails: {e}")),
            }
        }
        "disk-full" => {
            let point = lab.disk("app1");
            let used = wire::disk_used_percent(&point)
                .map_err(LabError::io(format!("statvfs {}", point.display())))?;
            obs(
                used > 95.0,
                format!("{} is {used:.1}% full", point.display()),
            )
        }
        "primary-down" => {
            let cnf = lab.mysql_cnf(layout::MONITOR_USER, layout::primary_db());
            match wire::mariadb_cli(&cnf, "SELECT 1").map_err(LabError::io("running mariadb"))? {
                Ok(_) => obs(false, "db1 accepts connections"),
                Err(e) => obs(true, format!("connecting to db1 fails: {e}")),
            }
        }
        "sentinel-failover" => {
            let expected = layout::redis_master_addr();
            let m = current_master()?;
            obs(
                m != expected,
                format!(
                    "Sentinel names {m} as master of {SENTINEL_MASTER}; the inventory says {expected}"
                ),
            )
        }
        "high-cpu" => {
            let burners = burning_workers();
            let busy = wire::cpu_busy_percent(Duration::from_millis(500))
                .map_err(LabError::io("reading /proc/stat"))?;
            obs(
                !burners.is_empty() && busy > 50.0,
                format!(
                    "{} queue workers burn a CPU {burners:?}; CPU {busy:.0}% busy",
                    burners.len()
                ),
            )
        }
        "slow-api" => {
            let addr = SocketAddr::new(layout::lb().ip(), HTTP_PORT);
            let mut worst = Duration::ZERO;
            for _ in 0..3 {
                let r = wire::http_get(addr, "/health", Duration::from_secs(10))
                    .map_err(LabError::io(format!("GET http://{addr}/health")))?;
                worst = worst.max(r.elapsed);
                if r.elapsed <= Duration::from_millis(200) {
                    return Ok(obs(
                        false,
                        format!("GET http://{addr}/health took {} ms", r.elapsed.as_millis()),
                    ));
                }
            }
            obs(
                true,
                format!(
                    "GET http://{addr}/health took up to {} ms (3 requests)",
                    worst.as_millis()
                ),
            )
        }
        "queue-backlog" => {
            let pw = redis_pw(lab)?;
            let master = current_master()?;
            let len = match wire::redis1(master, Some(&pw), &["LLEN", QUEUE_KEY]) {
                Ok(Reply::Int(n)) => n,
                Ok(r) => return Err(LabError::Failed(format!("LLEN answered {}", r.text()))),
                Err(e) => {
                    return Err(LabError::Failed(format!(
                        "LLEN {QUEUE_KEY} on {master}: {e}"
                    )));
                }
            };
            let workers = wire::pids_matching("queue:work");
            obs(
                len > 1000 && workers.is_empty(),
                format!(
                    "{QUEUE_KEY} holds {len} jobs on {master}; {} queue:work processes",
                    workers.len()
                ),
            )
        }
        "bad-release" => {
            let addr = SocketAddr::new(layout::lb().ip(), HTTP_PORT);
            let r = wire::http_get(addr, "/health", Duration::from_secs(10))
                .map_err(LabError::io(format!("GET http://{addr}/health")))?;
            obs(
                r.status >= 500,
                format!(
                    "GET http://{addr}/health answers {} ({}); live colour: {}",
                    r.status,
                    r.body.lines().next().unwrap_or("").trim(),
                    live_color(lab)
                ),
            )
        }
        "cache-full" => {
            let pw = redis_pw(lab)?;
            let master = current_master()?;
            let field = |f: &str| -> Result<f64> {
                wire::redis_info_field(master, Some(&pw), f)
                    .map_err(LabError::io(format!("INFO memory on {master}")))?
                    .parse::<f64>()
                    .map_err(|_| LabError::Failed(format!("INFO {f} on {master} is not a number")))
            };
            let (used, max) = (field("used_memory")?, field("maxmemory")?);
            let pct = if max > 0.0 { used * 100.0 / max } else { 0.0 };
            obs(
                pct >= 90.0,
                format!("{master} uses {pct:.0} % of its maxmemory"),
            )
        }
        "haproxy-maint" => {
            let servers = stack::haproxy_servers()?;
            let out: Vec<String> = servers
                .iter()
                .filter(|(_, st)| st != "UP")
                .map(|(n, st)| format!("{n} {st}"))
                .collect();
            obs(
                !out.is_empty(),
                format!(
                    "HAProxy backend {}: {}",
                    layout::HAPROXY_BACKEND,
                    servers
                        .iter()
                        .map(|(n, st)| format!("{n} {st}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }
        _ => obs(false, "unknown"),
    })
}

/// Points the load balancer at a colour's servers (as the blue-green runbook does).
fn switch_lb(lab: &Lab, color: &str) -> Result<()> {
    let live = lab.lb_upstream();
    fs::copy(lab.lb_upstream_of(color), &live)
        .map_err(LabError::io(format!("writing {}", live.display())))?;
    let n = layout::nginx_name(layout::lb().name);
    let d = Daemon::from_pidfile(&n, &lab.pidfile(&n))
        .ok_or_else(|| LabError::Failed(format!("{n} is not running")))?;
    d.signal(nix::sys::signal::Signal::SIGHUP)
        .map_err(|e| LabError::Failed(format!("reloading {n}: {e}")))?;
    // The new workers take over within a moment.
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

/// The colour whose file the live upstream file equals.
pub fn live_color(lab: &Lab) -> String {
    let live = fs::read(lab.lb_upstream()).unwrap_or_default();
    layout::COLORS
        .iter()
        .find(|(c, _)| fs::read(lab.lb_upstream_of(c)).is_ok_and(|b| b == live))
        .map_or_else(|| "unknown".to_owned(), |(c, _)| (*c).to_owned())
}

/// Restores a healthy lab: restarts what was stopped, removes every injected fault, and
/// verifies `/health` through the load balancer.
pub fn reset(lab: &Lab) -> Result<Vec<String>> {
    require_lab(lab)?;
    let mut done = Vec::new();
    if stop_drill(lab, "sleepers-db1") {
        done.push("killed the idle sleeper connections on db1".to_owned());
    }
    let cpu_flag = lab.drills().join("high-cpu");
    if cpu_flag.exists() {
        // Runaway jobs not yet taken must not start burning again in the new workers.
        if let Ok(master) = current_master() {
            let _ = wire::redis1(
                master,
                Some(&redis_pw(lab)?),
                &["LREM", QUEUE_KEY, "0", RUNAWAY_JOB],
            );
        }
        // The runaway jobs end only with their processes.
        let n = layout::worker_name("worker1");
        if let Some(mut d) = Daemon::from_pidfile(&n, &lab.pidfile(&n)) {
            d.stop(Duration::from_secs(5));
            done.push("stopped the queue workers running away".to_owned());
        }
        fs::remove_file(&cpu_flag)
            .map_err(LabError::io(format!("removing {}", cpu_flag.display())))?;
    }
    let release = lab.drills().join("bad-release");
    if release.exists() {
        fs::remove_file(&release)
            .map_err(LabError::io(format!("removing {}", release.display())))?;
        done.push("removed the bad-release flag".to_owned());
    }
    if live_color(lab) != "blue" {
        switch_lb(lab, "blue")?;
        done.push("switched the load balancer back to blue".to_owned());
    }
    let flag = lab.drills().join("slow-api");
    if flag.exists() {
        fs::remove_file(&flag).map_err(LabError::io(format!("removing {}", flag.display())))?;
        done.push("removed the slow-api flag".to_owned());
    }
    for h in &layout::HOSTS {
        let logs = lab.logs(h.name);
        for e in fs::read_dir(&logs).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(FILL_PREFIX) {
                fs::remove_file(e.path())
                    .map_err(LabError::io(format!("removing {}", e.path().display())))?;
                done.push(format!("deleted {}", e.path().display()));
            }
        }
    }
    // The database: restart the primary, make sure the replica follows it again.
    if stack::start_mariadb(lab, layout::primary_db())? == web::Started::Started {
        done.push("restarted MariaDB on db1".to_owned());
    }
    if stack::start_mariadb(lab, layout::replica_db())? == web::Started::Started {
        done.push("restarted MariaDB on db2".to_owned());
    }
    stack::root_sql(lab, layout::replica_db(), "START SLAVE;")?;
    stack::wait_replication(lab, Duration::from_secs(30))?;

    // Redis: both servers up, the master back on cache1.
    done.extend(reset_redis(lab)?);

    // The page cache: the warm-up pages go (the cache refills as pages are served).
    if let Ok(master) = current_master() {
        let pw = redis_pw(lab)?;
        let keys = wire::redis(
            master,
            Some(&pw),
            &[
                vec!["SELECT", layout::PAGE_CACHE_DB],
                vec!["KEYS", "page:warmup:*"],
            ],
        )
        .map_err(LabError::io("listing the warm-up pages"))?;
        if let Some(Reply::Array(items)) = keys.get(1)
            && !items.is_empty()
        {
            let names: Vec<String> = items.iter().map(Reply::text).collect();
            let mut del = vec!["DEL"];
            del.extend(names.iter().map(String::as_str));
            wire::redis(
                master,
                Some(&pw),
                &[vec!["SELECT", layout::PAGE_CACHE_DB], del],
            )
            .map_err(LabError::io("deleting the warm-up pages"))?;
            done.push(format!(
                "deleted {} warm-up pages from the page cache",
                names.len()
            ));
        }
    }

    // The queue: worker running, backlog drained.
    if let Some(w) = layout::lab_host("worker1")
        && web::start_worker(lab, w)? == web::Started::Started
    {
        done.push("restarted the queue worker on worker1".to_owned());
    }
    let pw = redis_pw(lab)?;
    let master = layout::redis_master_addr();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let len = wire::redis1(master, Some(&pw), &["LLEN", QUEUE_KEY]).map(|r| r.text());
        if len.is_ok_and(|l| l == "0") {
            break;
        }
        if Instant::now() >= deadline {
            wire::redis1(master, Some(&pw), &["DEL", QUEUE_KEY])
                .map_err(LabError::io("DEL queue"))?;
            done.push("the worker did not drain the queue in 30 s: deleted it".to_owned());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stack::wait_healthy(Duration::from_secs(30))?;
    done.push("verified: /health through the load balancer is 200 and all ok".to_owned());
    // HAProxy: every app server back in rotation.
    let hp = layout::haproxy_lb();
    if !web::running(lab, &layout::haproxy_name(hp.name)) {
        web::start_haproxy(lab, hp)?;
        done.push(format!("restarted HAProxy on {}", hp.name));
    }
    for (server, status) in stack::haproxy_servers()? {
        if status == "MAINT" || status == "DRAIN" {
            wire::unix_command(
                &lab.haproxy_socket(hp.name),
                &format!(
                    "set server {}/{server} state ready",
                    layout::HAPROXY_BACKEND
                ),
            )
            .map_err(LabError::io("HAProxy's runtime API"))?;
            done.push(format!("put {server} back into rotation on HAProxy"));
        }
    }
    stack::wait_haproxy_backend(Duration::from_secs(30))?;
    Ok(done)
}

fn reset_redis(lab: &Lab) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let pw = redis_pw(lab)?;
    let (m, r) = (layout::redis_master(), layout::redis_replica());
    let home = layout::redis_master_addr();
    let replica_addr = SocketAddr::new(r.ip(), REDIS_PORT);
    let now = current_master()?;
    // Restart whatever is dead, as a replica of the master Sentinel names now.
    for (h, addr) in [(m, home), (r, replica_addr)] {
        let name = layout::redis_name(h.name);
        if !web::running(lab, &name) {
            let of = if addr == now { None } else { Some(now) };
            stack::start_redis(lab, h, &pw, of)?;
            done.push(format!("restarted Redis on {}", h.name));
        }
    }
    // Sentinel may still be mid-failover when the reset starts (the master died moments
    // ago): keep looking until cache1 is the master with cache2 following it, failing back
    // whenever Sentinel names another master.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = current_master()?;
        if now != home {
            fail_back(&pw, home, now)?;
            done.push(format!(
                "failed {SENTINEL_MASTER} back from {now} to {home}"
            ));
            continue;
        }
        let role = wire::redis_info_field(home, Some(&pw), "role").unwrap_or_default();
        let link = wire::redis_info_field(replica_addr, Some(&pw), "master_link_status")
            .unwrap_or_default();
        let host =
            wire::redis_info_field(replica_addr, Some(&pw), "master_host").unwrap_or_default();
        if role == "master" && link == "up" && host == m.addr.to_string() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "after reset {home} is {role}, and {replica_addr} follows {host:?} (link {link})"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(done)
}

/// Waits for `home` to be a synced replica of `now`, then has Sentinel fail over back to it.
fn fail_back(pw: &str, home: SocketAddr, now: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let role = wire::redis_info_field(home, Some(pw), "role").unwrap_or_default();
        let link = wire::redis_info_field(home, Some(pw), "master_link_status").unwrap_or_default();
        if role == "slave" && link == "up" {
            match wire::redis1(
                layout::sentinel_addrs()[0],
                None,
                &["SENTINEL", "FAILOVER", SENTINEL_MASTER],
            ) {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("SENTINEL FAILOVER not yet possible: {e}");
                }
                Err(e) => return Err(LabError::Failed(format!("cannot fail back to {home}: {e}"))),
            }
        } else if Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "{home} did not become a synced replica of {now} (role {role}, link {link})"
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_master(|a| a == home, Duration::from_secs(40)).map(|_| ())
}
