//! The lab's own servers: nginx (load balancer and app servers), php-fpm, the PHP application
//! and queue worker, and each host's small tmpfs.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::layout::{
    self, HTTP_PORT, Lab, LabError, LabHost, QUEUE_KEY, Result, SENTINEL_MASTER, render,
};
use super::process::{Daemon, find_program, pid_alive};

const APP_PHP: &str = include_str!("assets/app.php");
const WORKER_PHP: &str = include_str!("assets/worker.php");
const SLEEPER_PHP: &str = include_str!("assets/sleeper.php");
const NGINX_LB: &str = include_str!("assets/nginx-lb.conf");
const NGINX_APP: &str = include_str!("assets/nginx-app.conf");
const PHP_FPM: &str = include_str!("assets/php-fpm.conf");
const HAPROXY: &str = include_str!("assets/haproxy.cfg");

/// The application's credentials and where to find its servers (`DIR/app/config.json`, 0600).
pub struct AppSecrets<'a> {
    pub app_password: &'a str,
    pub redis_password: &'a str,
}

/// Writes the PHP code and its config file.
pub fn write_app(lab: &Lab, s: &AppSecrets<'_>) -> Result<()> {
    let app = lab.app();
    fs::create_dir_all(&app).map_err(LabError::io(format!("creating {}", app.display())))?;
    for (name, text) in [
        ("app.php", APP_PHP),
        ("worker.php", WORKER_PHP),
        ("sleeper.php", SLEEPER_PHP),
    ] {
        let p = app.join(name);
        fs::write(&p, text).map_err(LabError::io(format!("writing {}", p.display())))?;
    }
    let db = layout::primary_db();
    let master = layout::redis_master();
    let sentinels: Vec<serde_json::Value> = layout::sentinel_hosts()
        .map(|h| serde_json::json!([h.addr.to_string(), layout::SENTINEL_PORT]))
        .collect();
    let config = serde_json::json!({
        "db": {
            "host": db.addr.to_string(),
            "port": layout::MYSQL_PORT,
            "user": layout::APP_USER,
            "password": s.app_password,
            "database": layout::DATABASE,
        },
        "redis": {
            "sentinels": sentinels,
            "master_name": SENTINEL_MASTER,
            "master": [master.addr.to_string(), layout::REDIS_PORT],
            "password": s.redis_password,
        },
        "queues": { "default": QUEUE_KEY },
        "flags_dir": lab.drills().display().to_string(),
    });
    layout::write_private(&lab.app_config(), &format!("{config:#}\n"))?;
    // Each app server's own environment file, as the seeds' `.env`: where it finds its
    // database. Written once: a failover repoints it, and `lab up` must not undo that.
    for h in layout::app_hosts() {
        let env = lab.app_env(h.name);
        if !env.exists() {
            let text = format!(
                "# The application's environment on {} (as seed 001's .env), read on every request.\n\
                 DB_HOST={}\nDB_PORT={}\n",
                h.name,
                db.addr,
                layout::MYSQL_PORT
            );
            fs::write(&env, text).map_err(LabError::io(format!("writing {}", env.display())))?;
        }
    }
    Ok(())
}

fn host_vars(lab: &Lab, h: &LabHost, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HOST", h.name.to_owned()),
        ("NAME", name.to_owned()),
        ("ADDR", h.addr.to_string()),
        ("RUN", lab.run().display().to_string()),
        ("LOGS", lab.logs(h.name).display().to_string()),
        ("TMP", lab.tmp(h.name).display().to_string()),
        ("APP_DIR", lab.app().display().to_string()),
        ("CONFIG", lab.app_config().display().to_string()),
        ("FPM_SOCKET", lab.fpm_socket(h.name).display().to_string()),
        ("ENV", lab.app_env(h.name).display().to_string()),
    ]
}

fn program(name: &str, package: &str) -> Result<std::path::PathBuf> {
    find_program(name).ok_or_else(|| LabError::MissingPackages {
        programs: name.to_owned(),
        packages: package.to_owned(),
    })
}

/// Starts nginx for a host (the load balancer or an app server) unless it already runs.
pub fn start_nginx(lab: &Lab, h: &LabHost) -> Result<Started> {
    let name = layout::nginx_name(h.name);
    if running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let conf = if h.role == layout::Role::Lb {
        write_upstreams(lab)?;
        let mut vars = host_vars(lab, h, &name);
        vars.push(("UPSTREAM_FILE", lab.lb_upstream().display().to_string()));
        render(NGINX_LB, &vars)
    } else {
        let mut vars = host_vars(lab, h, &name);
        vars.push(("GREEN_PORT", layout::GREEN_PORT.to_string()));
        render(NGINX_APP, &vars)
    };
    let path = lab.run().join(format!("{name}.conf"));
    fs::write(&path, conf).map_err(LabError::io(format!("writing {}", path.display())))?;
    let nginx = program("nginx", "nginx")?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(lab.run())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(lab.logs(h.name).join("nginx-error.log"));
    let d = spawn(lab, &name, &mut cmd)?;
    wait_listening(d, SocketAddr::new(h.ip(), HTTP_PORT))
}

/// Each colour's upstream servers, and the live file (blue unless a switch chose otherwise).
fn write_upstreams(lab: &Lab) -> Result<()> {
    for (color, port) in layout::COLORS {
        let servers = layout::app_hosts().fold(String::new(), |mut s, a| {
            let _ = writeln!(s, "server {}:{port} max_fails=3 fail_timeout=10s;", a.addr);
            s
        });
        let p = lab.lb_upstream_of(color);
        fs::write(&p, format!("# the {color} deployment\n{servers}"))
            .map_err(LabError::io(format!("writing {}", p.display())))?;
    }
    let live = lab.lb_upstream();
    if !live.exists() {
        fs::copy(lab.lb_upstream_of("blue"), &live)
            .map_err(LabError::io(format!("writing {}", live.display())))?;
    }
    Ok(())
}

/// Starts HAProxy for the HAProxy load balancer unless it already runs.
pub fn start_haproxy(lab: &Lab, h: &LabHost) -> Result<Started> {
    let name = layout::haproxy_name(h.name);
    if running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    // The seed's backend: every app server, checked on /health every second.
    let servers = layout::app_hosts()
        .map(|a| {
            format!(
                "    server {} {}:{HTTP_PORT} check inter 1s fall 2 rise 2",
                a.name, a.addr
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut vars = host_vars(lab, h, &name);
    vars.push(("SERVERS", servers));
    vars.push(("SOCKET", lab.haproxy_socket(h.name).display().to_string()));
    vars.push(("STATS_PORT", layout::HAPROXY_STATS_PORT.to_string()));
    let path = lab.run().join(format!("{name}.cfg"));
    fs::write(&path, render(HAPROXY, &vars))
        .map_err(LabError::io(format!("writing {}", path.display())))?;
    let _ = fs::remove_file(lab.haproxy_socket(h.name));
    let haproxy = program("haproxy", "haproxy")?;
    let mut cmd = Command::new(haproxy);
    // -db: stay in the foreground, in the lab's process group, like every lab server.
    cmd.arg("-db").arg("-f").arg(&path);
    let d = spawn(lab, &name, &mut cmd)?;
    wait_listening(d, SocketAddr::new(h.ip(), HTTP_PORT))
}

/// Starts php-fpm for an app host unless it already runs.
pub fn start_fpm(lab: &Lab, h: &LabHost) -> Result<Started> {
    let name = layout::fpm_name(h.name);
    if running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let path = lab.run().join(format!("{name}.conf"));
    fs::write(&path, render(PHP_FPM, &host_vars(lab, h, &name)))
        .map_err(LabError::io(format!("writing {}", path.display())))?;
    let _ = fs::remove_file(lab.fpm_socket(h.name));
    let fpm = program("php-fpm8.2", "php8.2-fpm")?;
    let mut cmd = Command::new(fpm);
    // -R: the lab runs as root and so does the pool.
    cmd.arg("-F").arg("-R").arg("-y").arg(&path);
    let d = spawn(lab, &name, &mut cmd)?;
    let socket = lab.fpm_socket(h.name);
    wait_until(d, Duration::from_secs(10), || socket.exists())
}

/// Starts the queue worker on a worker host unless one runs.
pub fn start_worker(lab: &Lab, h: &LabHost) -> Result<Started> {
    let name = layout::worker_name(h.name);
    if running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let php = program("php", "php8.2-cli")?;
    let mut cmd = Command::new(php);
    cmd.arg(lab.app().join("worker.php"))
        .args([
            "queue:work",
            "redis",
            "--queue=default",
            "--sleep=3",
            "--processes=2",
        ])
        .env("LAB_CONFIG", lab.app_config())
        .current_dir(lab.disk(h.name));
    let mut d = spawn(lab, &name, &mut cmd)?;
    // The worker has no port; give it a moment to fail on a broken config.
    std::thread::sleep(Duration::from_millis(150));
    if d.is_alive() {
        d.detach();
        Ok(Started::Started)
    } else {
        Err(LabError::Failed(format!(
            "queue worker on {} exited at start; its log ({}) says:\n{}",
            h.name,
            d.log.display(),
            d.log_tail(10)
        )))
    }
}

/// Whether `start_*` started the server or found it running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Started,
    AlreadyRunning,
}

/// True if `DIR/run/NAME.pid` names a live process.
pub fn running(lab: &Lab, name: &str) -> bool {
    Daemon::from_pidfile(name, &lab.pidfile(name)).is_some_and(|d| pid_alive(d.pid))
}

fn spawn(lab: &Lab, name: &str, cmd: &mut Command) -> Result<Daemon> {
    Daemon::spawn(name, cmd, &lab.run()).map_err(LabError::io(format!("starting {name}")))
}

fn wait_listening(d: Daemon, addr: SocketAddr) -> Result<Started> {
    wait_until(d, Duration::from_secs(10), || super::wire::tcp_open(addr))
}

/// Waits for `ready`, then lets the process outlive this handle; stops it on failure.
fn wait_until(mut d: Daemon, timeout: Duration, ready: impl Fn() -> bool) -> Result<Started> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ready() {
            d.detach();
            return Ok(Started::Started);
        }
        if !d.is_alive() || std::time::Instant::now() >= deadline {
            let tail = d.log_tail(10);
            d.stop(Duration::from_secs(1));
            return Err(LabError::Failed(format!(
                "{} did not come up within {timeout:?}; its log ({}) says:\n{tail}",
                d.name,
                d.log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Mounts a host's tmpfs (unless mounted) and creates `logs/` and `tmp/` on it.
pub fn mount_disk(lab: &Lab, host: &str) -> Result<()> {
    let point = lab.disk(host);
    fs::create_dir_all(&point).map_err(LabError::io(format!("creating {}", point.display())))?;
    if !is_mounted(&point) {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={}m,mode=0755", layout::DISK_MB))
            .arg(format!("opsdeck-lab-{host}"))
            .arg(&point)
            .output()
            .map_err(LabError::io("running mount"))?;
        if !out.status.success() {
            return Err(LabError::Failed(format!(
                "cannot mount a {} MB tmpfs on {}: {} (the lab needs root for its per-host disks)",
                layout::DISK_MB,
                point.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    for sub in [lab.logs(host), lab.tmp(host)] {
        fs::create_dir_all(&sub).map_err(LabError::io(format!("creating {}", sub.display())))?;
    }
    Ok(())
}

/// Mount points at or under `dir`, from `/proc/self/mounts` (octal escapes decoded).
pub fn mounts_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| std::path::PathBuf::from(unescape_mount(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

pub fn is_mounted(point: &Path) -> bool {
    mounts_under(point).iter().any(|p| p == point)
}

fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(char::from(v));
            i += 4;
            continue;
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

/// Unmounts (lazily if busy).
pub fn unmount(point: &Path) -> Result<()> {
    let ok = Command::new("umount")
        .arg(point)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Ok(());
    }
    let out = Command::new("umount")
        .arg("-l")
        .arg(point)
        .output()
        .map_err(LabError::io("running umount"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Failed(format!(
            "cannot unmount {}: {}",
            point.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
