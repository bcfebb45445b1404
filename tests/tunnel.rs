//! MySQL and Redis reached through an SSH tunnel (direct-tcpip over the host's one SSH
//! connection) as well as directly, against real sshd, mariadbd and redis-server on loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use opsdeck::clients::mysql::MysqlClient;
use opsdeck::clients::redis::RedisClient;
use opsdeck::inventory::{self, Via};
use opsdeck::transport::Connections;
use support::mariadb::TestMariadb;
use support::redis::RedisLab;
use support::sshd::SshHosts;

const CANARY_DB: &str = "tunnel-canary-db-91Ka";
const CANARY_REDIS: &str = "tunnel-canary-redis-44Pq";
const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_and_redis_through_the_ssh_tunnel_and_directly() {
    let mut ssh = SshHosts::start(1);
    let db = TestMariadb::start("tunneldb", |_| {});
    db.create_user("opsdeck", CANARY_DB, "PROCESS");
    let redis_lab = RedisLab::new();
    let redis = redis_lab.redis("tunnelredis", Some(CANARY_REDIS), None);

    std::fs::write(ssh.path("mysql.pw"), format!("{CANARY_DB}\n")).expect("pw");
    std::fs::write(ssh.path("redis.pw"), CANARY_REDIS).expect("pw");
    // The services listen on 127.0.0.1; the SSH host is 127.0.0.2. `via = "ssh"` makes opsdeck
    // dial them from the SSH host's side of the connection.
    let inv_text = format!(
        "[tiers.db]\n[hosts.db1]\ntier = \"db\"\nssh = {ssh_table}\n\
         [[hosts.db1.mysql]]\nrole = \"primary\"\naddress = \"127.0.0.1\"\nport = {mp}\nuser = \"opsdeck\"\nvia = \"ssh\"\npassword_file = \"mysql.pw\"\n\
         [[hosts.db1.mysql]]\nrole = \"replica\"\naddress = \"127.0.0.1\"\nport = {mp}\nuser = \"opsdeck\"\npassword_file = \"mysql.pw\"\n\
         [[hosts.db1.redis]]\nrole = \"master\"\naddress = \"127.0.0.1\"\nport = {rp}\nvia = \"ssh\"\npassword_file = \"redis.pw\"\n\
         [[hosts.db1.redis]]\nrole = \"replica\"\naddress = \"127.0.0.1\"\nport = {rp}\npassword_file = \"redis.pw\"\n",
        ssh_table = ssh.ssh_table(0, ""),
        mp = db.addr().port(),
        rp = redis.addr.port(),
    );
    let inv_path = ssh.path("tunnel.toml");
    std::fs::write(&inv_path, inv_text).expect("inventory");
    let inv = inventory::load(Some(&inv_path)).expect("inventory loads");
    let host = inv.host("db1").expect("db1");
    let (m_tunnel, m_direct) = (&host.services.mysql[0], &host.services.mysql[1]);
    let (r_tunnel, r_direct) = (&host.services.redis[0], &host.services.redis[1]);
    assert_eq!((m_tunnel.via, m_direct.via), (Via::Ssh, Via::Direct));

    let conns = Arc::new(Connections::new());

    // Through the tunnel: the client dials a local forward, not the server's own port.
    let fwd = conns
        .service_addr(host, &m_tunnel.address, m_tunnel.port, Via::Ssh)
        .await
        .expect("forward");
    assert!(fwd.ip().is_loopback());
    assert_ne!(
        fwd.port(),
        db.addr().port(),
        "a forward, not the server port"
    );
    let m = MysqlClient::connect_service(&conns, host, m_tunnel, T)
        .await
        .expect("mysql via ssh");
    let r = m
        .query_table("SELECT CURRENT_USER() AS u, @@port AS p")
        .await
        .expect("query");
    assert_eq!(r.rows[0][0].as_deref(), Some("opsdeck@%"));
    assert_eq!(
        r.rows[0][1].as_deref(),
        Some(db.addr().port().to_string().as_str())
    );
    let rc = RedisClient::connect_service(&conns, host, r_tunnel, T)
        .await
        .expect("redis via ssh");
    rc.ping().await.expect("ping via ssh");
    assert_eq!(rc.info().await.expect("info").role(), Some("master"));

    // Directly.
    let md = MysqlClient::connect_service(&conns, host, m_direct, T)
        .await
        .expect("mysql direct");
    assert!(
        md.global_status()
            .await
            .expect("status")
            .contains_key("Threads_connected")
    );
    let rd = RedisClient::connect_service(&conns, host, r_direct, T)
        .await
        .expect("redis direct");
    rd.ping().await.expect("ping direct");

    // The tunnel really rides the SSH connection: with sshd gone, new tunnelled connections
    // fail while direct ones still work.
    drop((m, rc));
    ssh.stop(0);
    let fresh = Connections::new();
    let err = MysqlClient::connect_service(&fresh, host, m_tunnel, Duration::from_secs(3))
        .await
        .expect_err("no sshd, no tunnel");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(CANARY_DB), "{text}");
    let err = RedisClient::connect_service(&fresh, host, r_tunnel, Duration::from_secs(3))
        .await
        .expect_err("no sshd, no tunnel");
    assert!(!format!("{err} {err:?}").contains(CANARY_REDIS));
    MysqlClient::connect_service(&fresh, host, m_direct, T)
        .await
        .expect("direct still fine");
    RedisClient::connect_service(&fresh, host, r_direct, T)
        .await
        .expect("direct still fine");
}
