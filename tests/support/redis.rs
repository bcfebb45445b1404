//! Real Redis servers and Sentinels for tests: temp directories, free loopback ports, stopped
//! on drop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use opsdeck::lab::process::{Daemon, free_port};
use opsdeck::lab::redis::{RedisOptions, SentinelOptions, start_redis, start_sentinel};
use tempfile::TempDir;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A running redis-server or sentinel.
pub struct TestRedis {
    pub daemon: Daemon,
    pub addr: SocketAddr,
}

impl TestRedis {
    /// Kills the server now (SIGKILL to its group), as a crash would.
    pub fn kill(&mut self) {
        self.daemon.stop(Duration::ZERO);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.daemon.stop(Duration::from_secs(3));
    }
}

/// A directory holding several servers' configs and logs.
pub struct RedisLab {
    pub dir: TempDir,
}

impl RedisLab {
    pub fn new() -> RedisLab {
        RedisLab {
            dir: tempfile::Builder::new()
                .prefix("opsdeck-redis-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn redis(
        &self,
        name: &str,
        password: Option<&str>,
        replica_of: Option<SocketAddr>,
    ) -> TestRedis {
        self.redis_with(name, |o| {
            o.password = password.map(str::to_owned);
            o.replica_of = replica_of.map(|a| (a.ip(), a.port()));
        })
    }

    /// A server with options adjusted by `configure`.
    pub fn redis_with(&self, name: &str, configure: impl FnOnce(&mut RedisOptions)) -> TestRedis {
        let port = free_port(LOOPBACK).expect("free port");
        let mut opts = RedisOptions::new(self.dir.path(), name, LOOPBACK, port);
        configure(&mut opts);
        let daemon = start_redis(&opts).unwrap_or_else(|e| panic!("start {name}: {e}"));
        TestRedis {
            daemon,
            addr: SocketAddr::new(LOOPBACK, port),
        }
    }

    pub fn sentinel(
        &self,
        name: &str,
        master_name: &str,
        master: SocketAddr,
        password: Option<&str>,
    ) -> TestRedis {
        let port = free_port(LOOPBACK).expect("free port");
        let opts = SentinelOptions {
            dir: self.dir.path().to_path_buf(),
            name: name.to_owned(),
            addr: LOOPBACK,
            port,
            master_name: master_name.to_owned(),
            master: (master.ip(), master.port()),
            quorum: 2,
            password: password.map(str::to_owned),
            down_after_ms: 1000,
            failover_timeout_ms: 3000,
        };
        let daemon = start_sentinel(&opts).unwrap_or_else(|e| panic!("start {name}: {e}"));
        TestRedis {
            daemon,
            addr: SocketAddr::new(LOOPBACK, port),
        }
    }
}
