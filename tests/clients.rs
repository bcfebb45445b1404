//! The MySQL/MariaDB and Redis/Sentinel clients against real servers on loopback.

mod support;

use support::mariadb::TestMariadb;
use support::redis::RedisLab;

#[test]
fn lab_launchers_start_mariadb_and_redis() {
    let m = TestMariadb::start("db1", |o| o.max_connections = 12);
    assert_eq!(m.sql("SELECT @@max_connections").trim(), "12");
    let lab = RedisLab::new();
    let r = lab.redis("r1", Some("pw-smoke"), None);
    let s = lab.sentinel("s1", "mymaster", r.addr, Some("pw-smoke"));
    assert!(s.addr.port() != r.addr.port());
}
