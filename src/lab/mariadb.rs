//! Launching MariaDB servers for the lab and the tests.
//!
//! A server lives in `DIR/NAME/` (data directory `DIR/NAME/data`, created with
//! `mariadb-install-db` on first start), listens on `ADDR:PORT` and on the socket
//! `DIR/NAME.sock`, and writes its log to `DIR/NAME.log` (see [`Daemon::spawn`]). Settings are
//! sized for a laptop: a small buffer pool and redo log, no performance schema, relaxed
//! durability, so a server starts in about a second.

#![allow(
    clippy::doc_markdown,
    reason = "product names (MariaDB, InnoDB) are prose here, not code"
)]

use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::lab::process::{Daemon, find_program};

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for one MariaDB server.
#[derive(Debug, Clone)]
pub struct MariadbOptions {
    /// Parent of the server's directory `DIR/NAME`.
    pub dir: PathBuf,
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub server_id: u32,
    /// MariaDB accepts 10 at the least (smaller values are raised to 10).
    pub max_connections: u32,
    /// Binary log on (a replication source), with GTID strict mode.
    pub log_bin: bool,
    pub read_only: bool,
}

impl MariadbOptions {
    /// A standalone server with 50 connections, no binary log, writable.
    pub fn new(dir: impl Into<PathBuf>, name: &str, addr: IpAddr, port: u16) -> Self {
        MariadbOptions {
            dir: dir.into(),
            name: name.to_owned(),
            addr,
            port,
            server_id: 1,
            max_connections: 50,
            log_bin: false,
            read_only: false,
        }
    }

    /// `DIR/NAME/data`.
    pub fn datadir(&self) -> PathBuf {
        self.dir.join(&self.name).join("data")
    }

    /// `DIR/NAME/tmp`: private, because servers bootstrapping side by side in a shared `/tmp`
    /// can collide on temporary table names.
    pub fn tmpdir(&self) -> PathBuf {
        self.dir.join(&self.name).join("tmp")
    }

    /// `DIR/NAME.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }
}

/// A running MariaDB server.
#[derive(Debug)]
pub struct Mariadb {
    pub daemon: Daemon,
    pub addr: IpAddr,
    pub port: u16,
    pub socket: PathBuf,
}

impl Mariadb {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

/// Starts a server (creating its data directory first if it is empty) and waits until it
/// accepts TCP connections.
pub fn start(opts: &MariadbOptions) -> io::Result<Mariadb> {
    let datadir = opts.datadir();
    fs::create_dir_all(&datadir)?;
    fs::create_dir_all(opts.tmpdir())?;
    if fs::read_dir(&datadir)?.next().is_none() {
        install_db(opts)?;
    }
    let mariadbd = find_program("mariadbd").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "mariadbd not found in PATH or /usr/sbin: install mariadb-server",
        )
    })?;
    let socket = opts.socket();
    let mut cmd = Command::new(mariadbd);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--tmpdir={}", opts.tmpdir().display()))
        .arg(format!(
            "--pid-file={}",
            opts.dir.join(&opts.name).join("mariadbd.pid").display()
        ))
        .arg(format!("--port={}", opts.port))
        .arg(format!("--bind-address={}", opts.addr))
        .arg("--user=root")
        .arg(format!("--server-id={}", opts.server_id))
        .arg(format!("--max-connections={}", opts.max_connections))
        .arg("--skip-name-resolve")
        .arg("--performance-schema=OFF")
        .args(FAST_INNODB)
        .arg(format!("--relay-log={}-relay-bin", opts.name));
    if opts.log_bin {
        cmd.arg(format!("--log-bin={}-bin", opts.name))
            .arg("--binlog-format=ROW")
            .arg("--sync-binlog=0")
            .arg("--gtid-strict-mode=ON");
    } else {
        cmd.arg("--skip-log-bin");
    }
    if opts.read_only {
        cmd.arg("--read-only=ON");
    }
    // No --log-error: the server then logs to stderr, which Daemon::spawn keeps in NAME.log.
    let mut daemon = Daemon::spawn(&opts.name, &mut cmd, &opts.dir)?;
    let addr = SocketAddr::new(opts.addr, opts.port);
    // The TCP port opens a moment before the socket the setup SQL uses: wait for both.
    let ready = wait_until_listening(&mut daemon, addr, START_TIMEOUT)
        .and_then(|()| wait_for_socket(&mut daemon, &socket, START_TIMEOUT));
    if let Err(e) = ready {
        daemon.stop(Duration::from_secs(5));
        return Err(e);
    }
    Ok(Mariadb {
        daemon,
        addr: opts.addr,
        port: opts.port,
        socket,
    })
}

/// InnoDB settings that keep a lab server small and quick to start and stop.
const FAST_INNODB: [&str; 4] = [
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-fast-shutdown=1",
];

fn install_db(opts: &MariadbOptions) -> io::Result<()> {
    let program = find_program("mariadb-install-db").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "mariadb-install-db not found: install mariadb-server",
        )
    })?;
    let datadir = opts.datadir();
    let out = Command::new(program)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", opts.tmpdir().display()))
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg("--user=root")
        .args(&FAST_INNODB[..2])
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        return Ok(());
    }
    let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let head: Vec<&str> = log.lines().take(8).collect();
    Err(io::Error::other(format!(
        "mariadb-install-db for {} failed ({}); remove {} before retrying. Output:\n{}",
        opts.name,
        out.status,
        datadir.display(),
        head.join("\n")
    )))
}

/// Waits for `addr` to accept TCP connections, failing early (with the log's tail) if the
/// process exits first.
pub(crate) fn wait_until_listening(
    daemon: &mut Daemon,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // Alive after the port answers: otherwise the port belongs to someone else (a free
        // port found earlier can be taken by another process before the server binds it).
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            && daemon.is_alive()
        {
            return Ok(());
        }
        if !daemon.is_alive() {
            return Err(io::Error::other(format!(
                "{} exited before listening on {addr}; last log lines ({}):\n{}",
                daemon.name,
                daemon.log.display(),
                crate::secret::mask(&daemon.log_tail(20))
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} does not listen on {addr} after {timeout:?}; see {}",
                    daemon.name,
                    daemon.log.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn wait_for_socket(daemon: &mut Daemon, socket: &Path, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if !daemon.is_alive() {
            return Err(io::Error::other(format!(
                "{} exited before listening on {}; last log lines ({}):\n{}",
                daemon.name,
                socket.display(),
                daemon.log.display(),
                crate::secret::mask(&daemon.log_tail(20))
            )));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} does not listen on {} after {timeout:?}; see {}",
                    daemon.name,
                    socket.display(),
                    daemon.log.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs SQL as root over the server's socket with the `mariadb` client (`-N -B`: tab-separated,
/// no column names) and returns its output. For setup only; the SQL is passed on stdin so that
/// passwords in it do not show up in the process list.
pub fn sql(m: &Mariadb, sql: &str) -> io::Result<String> {
    let client = find_program("mariadb").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "mariadb client not found: install mariadb-client",
        )
    })?;
    let mut child = Command::new(client)
        .arg("--no-defaults")
        .arg("-uroot")
        .arg("-S")
        .arg(&m.socket)
        .args(["-N", "-B"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(sql.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(io::Error::other(
        crate::secret::mask(&format!(
            "SQL on {} ({}) failed ({}): {}",
            m.daemon.name,
            m.socket.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into_owned(),
    ))
}
