//! Real `MariaDB` servers for tests: a temp directory, a free port on loopback, stopped on drop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use opsdeck::lab::mariadb::{self, Mariadb, MariadbOptions};
use opsdeck::lab::process::free_port;
use tempfile::TempDir;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct TestMariadb {
    pub server: Mariadb,
    pub opts: MariadbOptions,
    // Dropped after the server is stopped (fields drop in declaration order after Drop::drop).
    _dir: TempDir,
}

impl TestMariadb {
    /// Starts a fresh server; `configure` adjusts the options (server id, binlog, ...).
    pub fn start(name: &str, configure: impl FnOnce(&mut MariadbOptions)) -> TestMariadb {
        let dir = tempfile::Builder::new()
            .prefix("opsdeck-mariadb-")
            .tempdir()
            .expect("temp dir");
        let port = free_port(LOOPBACK).expect("free port");
        let mut opts = MariadbOptions::new(dir.path(), name, LOOPBACK, port);
        configure(&mut opts);
        let server = mariadb::start(&opts).unwrap_or_else(|e| panic!("start {name}: {e}"));
        TestMariadb {
            server,
            opts,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.socket_addr()
    }

    /// Root SQL over the socket; panics with the server's message on failure.
    pub fn sql(&self, sql: &str) -> String {
        mariadb::sql(&self.server, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates `user`@`%` (TCP clients come from 127.0.0.1) with `grants` on `*.*`.
    pub fn create_user(&self, user: &str, password: &str, grants: &str) {
        let pw = password.replace('\\', "\\\\").replace('\'', "\\'");
        self.sql(&format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'; GRANT {grants} ON *.* TO '{user}'@'%';"
        ));
    }
}

impl Drop for TestMariadb {
    fn drop(&mut self) {
        self.server.daemon.stop(Duration::from_secs(10));
    }
}
