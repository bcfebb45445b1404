//! `opsdeck lab up | status | down`: the whole stack, started in parallel, tracked by pid files.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::invfile::{self, MYSQL_APP_SECRET, MYSQL_REPL_SECRET, MYSQL_SECRET, REDIS_SECRET};
use super::layout::{
    self, COMPOSE_PROJECT, Component, Lab, LabError, LabHost, MYSQL_PORT, REDIS_PORT, Result, Role,
    SENTINEL_MASTER, SENTINEL_PORT, SESSIONS_ADDR, SESSIONS_CONTAINER, SESSIONS_IMAGE,
};
use super::process::{Daemon, find_program, pid_alive};
use super::web::{self, Started};
use super::{account, mariadb, packages, redis, sshd, wire};

/// Sentinel timings: quick enough for drills, slow enough not to flap on a busy 2-core machine.
const DOWN_AFTER_MS: u64 = 3000;
const FAILOVER_TIMEOUT_MS: u64 = 10_000;

/// What `lab up` did.
#[derive(Debug, Default)]
pub struct UpReport {
    pub started: Vec<String>,
    pub already_running: Vec<String>,
    /// Parts left out, with the reason (e.g. no Docker engine).
    pub left_out: Vec<String>,
    pub elapsed: Duration,
}

impl UpReport {
    fn note(&mut self, name: &str, s: Started) {
        match s {
            Started::Started => self.started.push(name.to_owned()),
            Started::AlreadyRunning => self.already_running.push(name.to_owned()),
        }
    }
}

/// The lab's passwords, read or generated.
struct Secrets {
    monitor: String,
    app: String,
    repl: String,
    redis: String,
}

fn prepare(lab: &Lab) -> Result<Secrets> {
    for d in [lab.run(), lab.drills(), lab.ssh(), lab.secrets()] {
        crate::private_fs::private_dir(&d)
            .map_err(LabError::io(format!("creating {}", d.display())))?;
    }
    layout::write_private(
        &lab.marker(),
        "opsdeck lab directory; `opsdeck lab down` removes it\n",
    )?;
    let s = Secrets {
        monitor: lab.secret(MYSQL_SECRET)?,
        app: lab.secret(MYSQL_APP_SECRET)?,
        repl: lab.secret(MYSQL_REPL_SECRET)?,
        redis: lab.secret(REDIS_SECRET)?,
    };
    // Option files for the mariadb CLI: the drills and tests connect as these users.
    for h in [layout::primary_db(), layout::replica_db()] {
        for (user, pw) in [
            (layout::APP_USER, &s.app),
            (layout::MONITOR_USER, &s.monitor),
        ] {
            layout::write_private(
                &lab.mysql_cnf(user, h),
                &format!(
                    "[client]\nuser={user}\npassword={pw}\nhost={}\nport={MYSQL_PORT}\nprotocol=tcp\n",
                    h.addr
                ),
            )?;
        }
        layout::write_private(
            &lab.mysql_cnf("root", h),
            &format!(
                "[client]\nuser=root\nsocket={}\n",
                lab.run().join(format!("{}.sock", h.name)).display()
            ),
        )?;
    }
    Ok(s)
}

/// Brings the lab up, starting only what is not running; prints progress to `out`.
pub fn up(lab: &Lab, out: &mut dyn Write) -> Result<UpReport> {
    let t0 = Instant::now();
    // Before anything else: a directory someone else prepared is never used.
    lab.create_or_check()?;
    packages::check_required()?;
    let ours = layout::components()
        .iter()
        .any(|c| web::running(lab, &c.name));
    let lb = SocketAddr::new(layout::lb().ip(), layout::HTTP_PORT);
    if !ours && wire::tcp_open(lb) {
        return Err(LabError::Failed(format!(
            "something already listens on {lb} (another lab directory?): run `opsdeck lab down --dir OTHER` first"
        )));
    }
    let secrets = prepare(lab)?;
    let _ = writeln!(out, "lab in {}", lab.dir.display());
    if account::ensure()? {
        let _ = writeln!(
            out,
            "created the account {} (sudo rule {}); lab down removes both",
            account::LAB_USER,
            account::SUDOERS
        );
    }

    let client_pub = sshd::generate_client_key(&lab.client_key())
        .map_err(LabError::io("creating the lab's ssh client key"))?;
    layout::write_private(&lab.authorized_keys(), &format!("{client_pub}\n"))?;
    open_for_the_account(lab)?;
    for h in &layout::HOSTS {
        web::mount_disk(lab, h.name)?;
    }
    web::write_app(
        lab,
        &web::AppSecrets {
            app_password: &secrets.app,
            redis_password: &secrets.redis,
        },
    )?;

    let mut report = UpReport::default();
    let results: Vec<Result<Vec<(String, Started)>>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for h in &layout::HOSTS {
            handles.push(
                s.spawn(move || start_sshd(lab, h).map(|st| vec![(layout::sshd_name(h.name), st)])),
            );
        }
        handles.push(s.spawn(|| start_databases(lab, &secrets)));
        handles.push(s.spawn(|| start_redis_tier(lab, &secrets.redis)));
        for h in layout::app_hosts() {
            handles.push(s.spawn(move || {
                let fpm = web::start_fpm(lab, h)?;
                let nginx = web::start_nginx(lab, h)?;
                Ok(vec![
                    (layout::fpm_name(h.name), fpm),
                    (layout::nginx_name(h.name), nginx),
                ])
            }));
        }
        let lb = layout::lb();
        handles.push(s.spawn(move || {
            Ok(vec![(
                layout::nginx_name(lb.name),
                web::start_nginx(lab, lb)?,
            )])
        }));
        let hp = layout::haproxy_lb();
        handles.push(s.spawn(move || {
            Ok(vec![(
                layout::haproxy_name(hp.name),
                web::start_haproxy(lab, hp)?,
            )])
        }));
        let docker = s.spawn(|| start_docker(lab, &secrets.redis));
        let mut results: Vec<Result<Vec<(String, Started)>>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LabError::Failed("a start thread panicked".into())))
            })
            .collect();
        match docker.join() {
            Ok(Ok(st)) => results.push(Ok(vec![(SESSIONS_CONTAINER.to_owned(), st)])),
            Ok(Err(why)) => report.left_out.push(why),
            Err(_) => report
                .left_out
                .push("docker: the start thread panicked".to_owned()),
        }
        results
    });
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(list) => list.into_iter().for_each(|(n, s)| report.note(&n, s)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(LabError::Failed(format!(
            "lab up failed in {}:\n  {}\nsee the logs in {}; `opsdeck lab down --dir {}` cleans up",
            lab.dir.display(),
            errors.join("\n  "),
            lab.run().display(),
            lab.dir.display()
        )));
    }
    for h in layout::HOSTS.iter().filter(|h| h.role == Role::Worker) {
        let st = web::start_worker(lab, h)?;
        report.note(&layout::worker_name(h.name), st);
    }
    write_known_hosts(lab)?;
    let docker = !report
        .started
        .iter()
        .chain(&report.already_running)
        .all(|n| n != SESSIONS_CONTAINER);
    invfile::write(lab, docker)?;
    // Last: writing private files above narrows their directories back to 0700.
    open_for_the_account(lab)?;
    wait_healthy(Duration::from_secs(30))?;
    wait_haproxy_backend(Duration::from_secs(20))?;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// What the lab account needs to reach through the lab directory: sshd reads its
/// `authorized_keys` as that user, and the disk probes `statvfs` each host's mount under
/// `DIR/hosts/`. The directory and `ssh/` become traversable (0711: nothing listed, nothing
/// writable); the key list is public (0644); secrets, configs and the private key stay 0600
/// in 0700 directories.
fn open_for_the_account(lab: &Lab) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let hosts = lab.dir.join("hosts");
    fs::create_dir_all(&hosts).map_err(LabError::io(format!("creating {}", hosts.display())))?;
    for (p, mode) in [
        (lab.dir.clone(), 0o711),
        (lab.ssh(), 0o711),
        (hosts, 0o755),
        (lab.authorized_keys(), 0o644),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .map_err(LabError::io(format!("chmod {mode:o} {}", p.display())))?;
    }
    Ok(())
}

/// The lab's sshd: only the lab account logs in (root never), with the lab's key.
pub fn sshd_hardening() -> Vec<String> {
    vec![
        "PermitRootLogin no".to_owned(),
        format!("AllowUsers {}", account::LAB_USER),
    ]
}

pub fn start_sshd(lab: &Lab, h: &LabHost) -> Result<Started> {
    let name = layout::sshd_name(h.name);
    if web::running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let d = sshd::start_with(
        &sshd::SshdOptions {
            dir: lab.run(),
            name,
            addr: h.ip(),
            port: layout::SSH_PORT,
            authorized_keys: lab.authorized_keys(),
            max_sessions: Some(20),
        },
        &sshd_hardening(),
    )
    .map_err(LabError::io(format!("starting sshd for {}", h.name)))?;
    d.daemon.detach();
    Ok(Started::Started)
}

fn write_known_hosts(lab: &Lab) -> Result<()> {
    let mut text = String::new();
    for h in &layout::HOSTS {
        let p = lab.run().join(format!(
            "{}_host_ed25519_key.pub",
            layout::sshd_name(h.name)
        ));
        let key =
            fs::read_to_string(&p).map_err(LabError::io(format!("reading {}", p.display())))?;
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let _ = writeln!(
            text,
            "{}",
            sshd::known_hosts_line(h.ip(), layout::SSH_PORT, &key.join(" "))
        );
    }
    layout::write_private(&lab.known_hosts(), &text)
}

fn mariadb_options(lab: &Lab, h: &LabHost) -> mariadb::MariadbOptions {
    mariadb::MariadbOptions {
        dir: lab.run(),
        name: h.name.to_owned(),
        addr: h.ip(),
        port: MYSQL_PORT,
        server_id: if h.role == Role::DbPrimary { 1 } else { 2 },
        max_connections: layout::MAX_CONNECTIONS,
        log_bin: true,
        read_only: h.role == Role::DbReplica,
    }
}

/// Starts one MariaDB server unless it runs (used by `lab up` and `drill reset`).
pub fn start_mariadb(lab: &Lab, h: &LabHost) -> Result<Started> {
    if web::running(lab, h.name) {
        return Ok(Started::AlreadyRunning);
    }
    let m = mariadb::start(&mariadb_options(lab, h))
        .map_err(LabError::io(format!("starting MariaDB on {}", h.name)))?;
    m.daemon.detach();
    Ok(Started::Started)
}

/// SQL as root over the server's socket; `Err` with the client's message.
pub fn root_sql(lab: &Lab, h: &LabHost, sql: &str) -> Result<String> {
    wire::mariadb_cli(&lab.mysql_cnf("root", h), sql)
        .map_err(LabError::io(format!(
            "running the mariadb client on {}",
            h.name
        )))?
        .map_err(|e| LabError::Failed(format!("SQL on {}: {}", h.name, crate::secret::mask(&e))))
}

#[allow(
    clippy::many_single_char_names,
    reason = "p/r primary and replica, ps/rs their start results"
)]
fn start_databases(lab: &Lab, s: &Secrets) -> Result<Vec<(String, Started)>> {
    let (p, r) = (layout::primary_db(), layout::replica_db());
    seed_datadirs(lab);
    let (ps, rs) = std::thread::scope(|sc| {
        let a = sc.spawn(|| start_mariadb(lab, p));
        let b = sc.spawn(|| start_mariadb(lab, r));
        (
            a.join()
                .unwrap_or_else(|_| Err(LabError::Failed("db1 start panicked".into()))),
            b.join()
                .unwrap_or_else(|_| Err(LabError::Failed("db2 start panicked".into()))),
        )
    });
    let (ps, rs) = (ps?, rs?);
    if ps == Started::Started {
        root_sql(lab, p, &primary_setup_sql(s))?;
    }
    configure_replica(lab, &s.repl)?;
    wait_replication(lab, Duration::from_secs(20))?;
    Ok(vec![(p.name.to_owned(), ps), (r.name.to_owned(), rs)])
}

/// Creates both servers' data directories with one `mariadb-install-db` run and a copy, which
/// is faster on a small machine than two installs and avoids their racing on one tmpdir.
/// On any failure the launcher installs each data directory itself.
fn seed_datadirs(lab: &Lab) {
    let dirs: Vec<PathBuf> = [layout::primary_db(), layout::replica_db()]
        .iter()
        .map(|h| mariadb_options(lab, h).datadir())
        .collect();
    let empty = |d: &Path| fs::read_dir(d).map_or(true, |mut it| it.next().is_none());
    if !dirs.iter().all(|d| empty(d)) {
        return;
    }
    let Some(install) = find_program("mariadb-install-db") else {
        return;
    };
    let template = lab.run().join("db-template");
    let tmp = lab.run().join("db-template-tmp");
    let _ = fs::remove_dir_all(&template);
    let ok = fs::create_dir_all(&tmp).is_ok()
        && Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", template.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        for d in &dirs {
            if let Some(parent) = d.parent() {
                let _ = fs::create_dir_all(parent);
            }
            let _ = fs::remove_dir_all(d);
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(d)
                .status()
                .is_ok_and(|s| s.success());
            if !copied {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
    let _ = fs::remove_dir_all(&template);
    let _ = fs::remove_dir_all(&tmp);
}

fn quote_sql(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

fn primary_setup_sql(s: &Secrets) -> String {
    let db = layout::DATABASE;
    format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
         CREATE USER IF NOT EXISTS '{app}'@'%' IDENTIFIED BY '{app_pw}';\n\
         GRANT ALL PRIVILEGES ON `{db}`.* TO '{app}'@'%';\n\
         CREATE USER IF NOT EXISTS '{repl}'@'%' IDENTIFIED BY '{repl_pw}';\n\
         GRANT REPLICATION SLAVE ON *.* TO '{repl}'@'%';\n\
         CREATE USER IF NOT EXISTS '{mon}'@'%' IDENTIFIED BY '{mon_pw}';\n\
         GRANT PROCESS, SLAVE MONITOR, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, \
           REPLICATION SLAVE ADMIN, SUPER, RELOAD, SELECT ON *.* TO '{mon}'@'%';\n\
         CREATE TABLE IF NOT EXISTS `{db}`.users (id INT AUTO_INCREMENT PRIMARY KEY, \
           email VARCHAR(190) NOT NULL UNIQUE, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);\n\
         INSERT IGNORE INTO `{db}`.users (email) VALUES ('ada@marg.test'), ('grace@marg.test'), ('linus@marg.test');\n\
         CREATE TABLE IF NOT EXISTS `{db}`.orders (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT NOT NULL, \
           total DECIMAL(10,2) NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, KEY (user_id));\n\
         INSERT INTO `{db}`.orders (user_id, total) SELECT u.id, 10 * u.id + s.n FROM `{db}`.users u \
           CROSS JOIN (SELECT 1 AS n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) s \
           WHERE NOT EXISTS (SELECT 1 FROM `{db}`.orders);\n",
        app = layout::APP_USER,
        app_pw = quote_sql(&s.app),
        repl = layout::REPL_USER,
        repl_pw = quote_sql(&s.repl),
        mon = layout::MONITOR_USER,
        mon_pw = quote_sql(&s.monitor),
    )
}

/// Points db2 at db1 (GTID, slave_pos) unless it already replicates from somewhere.
fn configure_replica(lab: &Lab, repl_pw: &str) -> Result<()> {
    let r = layout::replica_db();
    let status = root_sql(lab, r, "SHOW SLAVE STATUS\\G")?;
    if status.contains("Master_Host") {
        root_sql(lab, r, "START SLAVE;")?;
        return Ok(());
    }
    root_sql(
        lab,
        r,
        &format!(
            "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={MYSQL_PORT}, MASTER_USER='{}', \
             MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;\nSTART SLAVE;\n",
            layout::primary_db().addr,
            layout::REPL_USER,
            quote_sql(repl_pw)
        ),
    )?;
    Ok(())
}

/// A field of `SHOW SLAVE STATUS` on the replica.
pub fn slave_field(lab: &Lab, field: &str) -> Result<String> {
    let status = root_sql(lab, layout::replica_db(), "SHOW SLAVE STATUS\\G")?;
    Ok(status
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Waits until both replication threads run and the replica has caught up.
pub fn wait_replication(lab: &Lab, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let io = slave_field(lab, "Slave_IO_Running")?;
        let sql = slave_field(lab, "Slave_SQL_Running")?;
        let lag = slave_field(lab, "Seconds_Behind_Master")?;
        if io == "Yes" && sql == "Yes" && lag == "0" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let err = slave_field(lab, "Last_IO_Error")? + &slave_field(lab, "Last_SQL_Error")?;
            return Err(LabError::Failed(format!(
                "db2 does not replicate from db1 after {timeout:?} (IO {io}, SQL {sql}, lag {lag}): {err}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a lab Redis unless it runs; `replica_of` names the master for a replica.
pub fn start_redis(
    lab: &Lab,
    h: &LabHost,
    password: &str,
    replica_of: Option<SocketAddr>,
) -> Result<Started> {
    let name = layout::redis_name(h.name);
    if web::running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let d = redis::start_redis(&redis::RedisOptions {
        dir: lab.run(),
        name,
        addr: h.ip(),
        port: REDIS_PORT,
        password: Some(password.to_owned()),
        replica_of: replica_of.map(|a| (a.ip(), a.port())),
        maxclients: Some(200),
        persist: true,
    })
    .map_err(LabError::io(format!("starting Redis on {}", h.name)))?;
    d.detach();
    let addr = SocketAddr::new(h.ip(), REDIS_PORT);
    wire::redis(
        addr,
        Some(password),
        &[
            vec!["CONFIG", "SET", "maxmemory", layout::REDIS_MAXMEMORY],
            vec!["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        ],
    )
    .map_err(LabError::io(format!("capping Redis memory on {}", h.name)))?;
    if replica_of.is_some() {
        // Up means replicating: wait (bounded) for the first sync.
        let addr = SocketAddr::new(h.ip(), REDIS_PORT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline
            && !wire::redis1(addr, Some(password), &["INFO", "replication"])
                .is_ok_and(|r| r.text().contains("master_link_status:up"))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(Started::Started)
}

/// Seed 000's use of Redis on the master: the sessions of logged-in users (db 0, kept a week)
/// and the application's default cache (db 1). The page cache (db 2) fills as pages are
/// served. Existing keys are kept.
pub fn seed_redis(password: &str) -> Result<()> {
    let master = layout::redis_master_addr();
    let mut cmds: Vec<Vec<String>> = vec![vec!["SELECT".into(), layout::SESSIONS_DB.into()]];
    for n in 1..=layout::SESSIONS {
        cmds.push(vec![
            "SET".into(),
            format!("marg_database_laravel_session:{n:04}"),
            format!("{{\"user_id\":{n},\"cart\":[]}}"),
            "EX".into(),
            "604800".into(),
            "NX".into(),
        ]);
    }
    cmds.push(vec!["SELECT".into(), layout::CACHE_DB.into()]);
    for (k, v) in [
        ("marg_cache:config", "{\"locale\":\"en\"}"),
        ("marg_cache:routes", "[]"),
    ] {
        cmds.push(vec!["SET".into(), k.into(), v.into(), "NX".into()]);
    }
    let cmds: Vec<Vec<&str>> = cmds
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    wire::redis(master, Some(password), &cmds)
        .map_err(LabError::io("seeding sessions and cache in Redis"))?;
    Ok(())
}

pub fn start_sentinel(lab: &Lab, h: &LabHost, password: &str) -> Result<Started> {
    let name = layout::sentinel_name(h.name);
    if web::running(lab, &name) {
        return Ok(Started::AlreadyRunning);
    }
    let m = layout::redis_master_addr();
    let d = redis::start_sentinel(&redis::SentinelOptions {
        dir: lab.run(),
        name,
        addr: h.ip(),
        port: SENTINEL_PORT,
        master_name: SENTINEL_MASTER.to_owned(),
        master: (m.ip(), m.port()),
        quorum: 2,
        password: Some(password.to_owned()),
        down_after_ms: DOWN_AFTER_MS,
        failover_timeout_ms: FAILOVER_TIMEOUT_MS,
    })
    .map_err(LabError::io(format!("starting Sentinel on {}", h.name)))?;
    d.detach();
    // Likewise each Sentinel must announce its own address, or all three look like one.
    wire::redis1(
        SocketAddr::new(h.ip(), SENTINEL_PORT),
        None,
        &[
            "SENTINEL",
            "CONFIG",
            "SET",
            "announce-ip",
            &h.addr.to_string(),
        ],
    )
    .map_err(LabError::io(format!(
        "setting announce-ip on Sentinel {}",
        h.name
    )))?;
    Ok(Started::Started)
}

fn start_redis_tier(lab: &Lab, password: &str) -> Result<Vec<(String, Started)>> {
    let (m, r) = (layout::redis_master(), layout::redis_replica());
    let mut out = vec![(
        layout::redis_name(m.name),
        start_redis(lab, m, password, None)?,
    )];
    seed_redis(password)?;
    out.push((
        layout::redis_name(r.name),
        start_redis(lab, r, password, Some(layout::redis_master_addr()))?,
    ));
    let sentinels: Vec<Result<Started>> = std::thread::scope(|s| {
        let hs: Vec<_> = layout::sentinel_hosts()
            .map(|h| s.spawn(move || start_sentinel(lab, h, password)))
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LabError::Failed("sentinel start panicked".into())))
            })
            .collect()
    });
    let mut fresh = false;
    for (h, st) in layout::sentinel_hosts().zip(sentinels) {
        let st = st?;
        fresh |= st == Started::Started;
        out.push((layout::sentinel_name(h.name), st));
    }
    if fresh {
        // Forget what was learnt before the announce addresses were set.
        for s in layout::sentinel_addrs() {
            wire::redis1(s, None, &["SENTINEL", "RESET", SENTINEL_MASTER])
                .map_err(LabError::io(format!("SENTINEL RESET on {s}")))?;
        }
        // The lab is up when it is healthy: Sentinels find each other through hello messages
        // within a few seconds; wait for their quorum rather than hand back a lab that alerts.
        let deadline = Instant::now() + Duration::from_secs(20);
        for s in layout::sentinel_addrs() {
            while !wire::redis1(s, None, &["SENTINEL", "CKQUORUM", SENTINEL_MASTER])
                .is_ok_and(|r| r.text().starts_with("OK"))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(out)
}

/// Where dockerd keeps its pid file and log when the lab starts it: outside the lab directory,
/// because the engine is machine-wide and outlives `lab down`.
fn dockerd_state_dir() -> PathBuf {
    std::env::temp_dir().join("opsdeck-lab-dockerd")
}

fn docker(args: &[&str]) -> std::result::Result<String, String> {
    let cli = find_program("docker").ok_or("the docker CLI is not installed (docker.io)")?;
    let out = Command::new(cli)
        .args(args)
        .output()
        .map_err(|e| format!("running docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The sessions Redis in a container (compose labels, host network). `Err` says why it was
/// left out; the rest of the lab does not depend on it.
fn start_docker(lab: &Lab, password: &str) -> std::result::Result<Started, String> {
    if find_program("dockerd").is_none() {
        return Err("docker tier: dockerd is not installed (apt-get install -y docker.io)".into());
    }
    if let Some(why) = super::docker::chroot_reason() {
        return Err(format!("docker tier: {why}"));
    }
    super::docker::ensure_dockerd(&dockerd_state_dir())
        .map_err(|e| format!("docker tier: no Docker engine: {e}"))?;
    if docker(&["inspect", "-f", "{{.State.Running}}", SESSIONS_CONTAINER]).as_deref() == Ok("true")
    {
        return Ok(Started::AlreadyRunning);
    }
    let redis_server =
        find_program("redis-server").ok_or("docker tier: redis-server is not installed")?;
    super::docker::build_image(SESSIONS_IMAGE, &[redis_server.as_path()])
        .map_err(|e| format!("docker tier: {e}"))?;
    let conf = lab.run().join("sessions-redis.conf");
    layout::write_private(
        &conf,
        &format!(
            "bind {SESSIONS_ADDR}\nport {REDIS_PORT}\nprotected-mode no\nrequirepass \"{password}\"\nsave \"\"\nappendonly no\ndir /tmp\n"
        ),
    )
    .map_err(|e| format!("docker tier: {e}"))?;
    let _ = docker(&["rm", "-f", SESSIONS_CONTAINER]);
    let mount = format!("{}:/etc/redis.conf:ro", conf.display());
    let project = format!("com.docker.compose.project={COMPOSE_PROJECT}");
    let redis_bin = redis_server.display().to_string();
    docker(&[
        "run",
        "-d",
        "--name",
        SESSIONS_CONTAINER,
        "--network",
        "host",
        "--label",
        &project,
        "--label",
        "com.docker.compose.service=sessions",
        "--label",
        "com.docker.compose.container-number=1",
        "-v",
        &mount,
        SESSIONS_IMAGE,
        &redis_bin,
        "/etc/redis.conf",
    ])
    .map_err(|e| format!("docker tier: docker run {SESSIONS_CONTAINER}: {e}"))?;
    let addr = SocketAddr::new(SESSIONS_ADDR.into(), REDIS_PORT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !wire::tcp_open(addr) {
        if Instant::now() >= deadline {
            return Err(format!(
                "docker tier: container {SESSIONS_CONTAINER} does not listen on {addr}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Started::Started)
}

/// Waits until `/health` through the load balancer answers 200 with every field ok.
pub fn wait_healthy(timeout: Duration) -> Result<()> {
    let addr = SocketAddr::new(layout::lb().ip(), layout::HTTP_PORT);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match wire::http_get(addr, "/health", Duration::from_secs(5)) {
            Ok(r) if r.status == 200 && r.body.contains("\"status\":\"ok\"") => return Ok(()),
            Ok(r) => format!("HTTP {}: {}", r.status, r.body.trim()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "the lab is up but http://{addr}/health is not healthy after {timeout:?}: {}",
                crate::secret::mask(&last)
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// HAProxy's backend servers as its stats show them: (server, status).
pub fn haproxy_servers() -> Result<Vec<(String, String)>> {
    let h = layout::haproxy_lb();
    let addr = SocketAddr::new(h.ip(), layout::HAPROXY_STATS_PORT);
    let r = wire::http_get(addr, "/stats;csv", Duration::from_secs(5))
        .map_err(LabError::io(format!("GET http://{addr}/stats;csv")))?;
    let s = crate::probes::haproxy::parse(&r.body).map_err(LabError::Failed)?;
    Ok(s.backends
        .iter()
        .filter(|b| b.name == layout::HAPROXY_BACKEND)
        .flat_map(|b| b.servers.iter().map(|s| (s.name.clone(), s.status.clone())))
        .collect())
}

/// Waits until every server of HAProxy's backend is up (its checks pass twice in a row).
pub fn wait_haproxy_backend(timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let servers = haproxy_servers();
        if let Ok(s) = &servers
            && !s.is_empty()
            && s.iter().all(|(_, st)| st == "UP")
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Failed(format!(
                "HAProxy on {} does not have every app server up after {timeout:?}: {servers:?}",
                layout::haproxy_lb().name
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One line of `lab status`.
#[derive(Debug, Clone)]
pub struct ProcessStatus {
    pub name: String,
    pub host: String,
    pub kind: String,
    pub pid: Option<u32>,
    pub running: bool,
    pub listen: String,
}

pub fn process_status(lab: &Lab) -> Vec<ProcessStatus> {
    let mut out: Vec<ProcessStatus> = layout::components()
        .into_iter()
        .map(|c: Component| {
            let pid = Daemon::from_pidfile(&c.name, &lab.pidfile(&c.name)).map(|d| d.pid);
            ProcessStatus {
                running: pid.is_some_and(pid_alive),
                pid,
                name: c.name,
                host: c.host.name.to_owned(),
                kind: c.kind.to_string(),
                listen: c.listen.unwrap_or_else(|| "-".into()),
            }
        })
        .collect();
    if let Ok(state) = docker(&[
        "inspect",
        "-f",
        "{{.State.Pid}} {{.State.Running}}",
        SESSIONS_CONTAINER,
    ]) {
        let mut it = state.split_whitespace();
        let pid = it.next().and_then(|p| p.parse().ok()).filter(|p| *p != 0);
        out.push(ProcessStatus {
            name: SESSIONS_CONTAINER.into(),
            host: "sessions1".into(),
            kind: "container".into(),
            pid,
            running: it.next() == Some("true"),
            listen: format!("{SESSIONS_ADDR}:{REDIS_PORT}"),
        });
    }
    for p in drill_pidfiles(lab) {
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid = Daemon::from_pidfile(&name, &p).map(|d| d.pid);
        out.push(ProcessStatus {
            running: pid.is_some_and(pid_alive),
            pid,
            name,
            host: "-".into(),
            kind: "drill".into(),
            listen: "-".into(),
        });
    }
    out
}

fn drill_pidfiles(lab: &Lab) -> Vec<PathBuf> {
    pidfiles_in(&lab.drills())
}

fn pidfiles_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pid"))
        .collect();
    v.sort();
    v
}

/// `lab status` as text.
pub fn status_text(lab: &Lab) -> Result<String> {
    if !lab.exists() {
        return Err(LabError::NotRunning {
            dir: lab.dir.display().to_string(),
        });
    }
    let mut s = format!("lab in {}\n", lab.dir.display());
    let _ = writeln!(
        s,
        "{:<22} {:<9} {:<15} {:>8}  {:<8} ADDRESS",
        "PROCESS", "HOST", "KIND", "PID", "STATE"
    );
    let procs = process_status(lab);
    for p in &procs {
        let _ = writeln!(
            s,
            "{:<22} {:<9} {:<15} {:>8}  {:<8} {}",
            p.name,
            p.host,
            p.kind,
            p.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            if p.running { "running" } else { "stopped" },
            p.listen
        );
    }
    let _ = writeln!(s, "\n{:<40} {:>6}  STATE", "MOUNT", "USED");
    for h in &layout::HOSTS {
        let point = lab.disk(h.name);
        let mounted = web::is_mounted(&point);
        let used = if mounted {
            wire::disk_used_percent(&point).map_or_else(|_| "?".into(), |u| format!("{u:.0}%"))
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{:<40} {:>6}  {}",
            point.display(),
            used,
            if mounted {
                format!("tmpfs {} MB", layout::DISK_MB)
            } else {
                "not mounted".into()
            }
        );
    }
    let down = procs
        .iter()
        .filter(|p| !p.running && p.kind != "drill")
        .count();
    let _ = writeln!(
        s,
        "\n{} processes running, {down} stopped; inventory: {}",
        procs.iter().filter(|p| p.running).count(),
        lab.inventory().display()
    );
    Ok(s)
}

/// True when `lab up` has run here and every lab process is alive.
pub fn is_running(lab: &Lab) -> bool {
    lab.exists()
        && layout::components()
            .iter()
            .all(|c| web::running(lab, &c.name))
}

/// Stops a process group named by a pid file, if it is one the lab started (a group leader).
fn stop_pidfile(path: &Path, grace: Duration) {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(mut d) = Daemon::from_pidfile(&name, path) {
        let leader = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(
            i32::try_from(d.pid).unwrap_or(i32::MAX),
        )))
        .is_ok_and(|g| u32::try_from(g.as_raw()).ok() == Some(d.pid));
        if leader {
            d.stop(grace);
        } else {
            let _ = fs::remove_file(path);
        }
    }
}

/// Stops every process started in this lab directory, removes the lab's container, unmounts the
/// disks and deletes the directory.
pub fn down(lab: &Lab, out: &mut dyn Write) -> Result<()> {
    // Its pid files decide which process groups get killed: only from a directory of ours.
    lab.check_trusted()?;
    if !lab.dir.exists() {
        let _ = writeln!(out, "no lab in {}: nothing to do", lab.dir.display());
        return Ok(());
    }
    if !lab.exists() {
        return Err(LabError::Failed(format!(
            "{} is not a lab directory (no {}); refusing to delete it",
            lab.dir.display(),
            lab.marker().display()
        )));
    }
    // Drill processes first (they hold database connections), then every server, in parallel.
    for p in drill_pidfiles(lab) {
        stop_pidfile(&p, Duration::from_secs(2));
    }
    let pidfiles = pidfiles_in(&lab.run());
    let n = pidfiles.len();
    std::thread::scope(|s| {
        for p in &pidfiles {
            s.spawn(move || stop_pidfile(p, Duration::from_secs(15)));
        }
    });
    if docker(&["inspect", SESSIONS_CONTAINER]).is_ok()
        && let Err(e) = docker(&["rm", "-f", SESSIONS_CONTAINER])
    {
        {
            let _ = writeln!(
                out,
                "warning: could not remove container {SESSIONS_CONTAINER}: {e}"
            );
        }
    }
    let mut mounts = web::mounts_under(&lab.dir);
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in &mounts {
        web::unmount(m)?;
    }
    let left = web::mounts_under(&lab.dir);
    if !left.is_empty() {
        return Err(LabError::Failed(format!(
            "still mounted under {}: {left:?}; unmount them and run `lab down` again",
            lab.dir.display()
        )));
    }
    fs::remove_dir_all(&lab.dir)
        .map_err(LabError::io(format!("removing {}", lab.dir.display())))?;
    let _ = writeln!(
        out,
        "lab down: stopped {n} processes, unmounted {} disks, removed {}",
        mounts.len(),
        lab.dir.display()
    );
    // Its sessions ended with its sshd: the account and its sudo rule go too.
    for line in account::remove()? {
        let _ = writeln!(out, "lab down: {line}");
    }
    Ok(())
}

/// How to use the lab, printed after `lab up`.
pub fn usage_text(lab: &Lab, r: &UpReport) -> String {
    let mut s = format!(
        "lab up in {:.1}s: {} started, {} already running\n",
        r.elapsed.as_secs_f64(),
        r.started.len(),
        r.already_running.len()
    );
    for l in &r.left_out {
        let _ = writeln!(s, "left out: {l}");
    }
    let inv = lab.inventory();
    let _ = write!(
        s,
        "inventory: {inv}\n\nuse it with:\n  opsdeck -i {inv} inventory\n  export OPSDECK_INVENTORY={inv}\n\
         then: opsdeck check, opsdeck drill list, opsdeck lab status, opsdeck lab down\n",
        inv = inv.display()
    );
    s
}
