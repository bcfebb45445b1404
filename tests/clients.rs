//! The MySQL/MariaDB and Redis/Sentinel clients against real servers on loopback.
//!
//! Every server here is started by the test (temp dir, free port on 127.0.0.1) and stopped on
//! drop. Waits for replication and failover are bounded loops with a deadline, not timings.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use opsdeck::clients::mysql::{MysqlClient, MysqlError};
use opsdeck::clients::redis::{RedisClient, RedisError, Role, SentinelClient, resolve_master};
use opsdeck::secret::{MASK, Secret};
use support::mariadb::TestMariadb;
use support::redis::RedisLab;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn secret(s: &str) -> Secret {
    Secret::new(s)
}

// ---------------------------------------------------------------------------------------------
// MariaDB
// ---------------------------------------------------------------------------------------------

/// MariaDB's `ed25519` authentication plugin (the account type MariaDB recommends over
/// `mysql_native_password`): the right password logs in, a wrong one is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_ed25519_accounts_log_in() {
    let db = TestMariadb::start("ed25519", |_| {});
    db.sql(
        "INSTALL SONAME 'auth_ed25519'; \
         CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw-4Tq'); \
         GRANT PROCESS ON *.* TO 'ed'@'%';",
    );
    let c = MysqlClient::connect(db.addr(), "ed", Some(&secret("ed-pw-4Tq")), None, TIMEOUT)
        .await
        .expect("ed25519 login");
    let r = c
        .query_table("SELECT CURRENT_USER() AS u")
        .await
        .expect("query");
    assert_eq!(r.rows[0][0].as_deref(), Some("ed@%"));
    assert_eq!(
        db.sql("SELECT plugin FROM mysql.user WHERE user = 'ed'")
            .trim(),
        "ed25519"
    );
    let err = MysqlClient::connect(db.addr(), "ed", Some(&secret("wrong")), None, TIMEOUT)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, MysqlError::AccessDenied { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_status_variables_processlist_and_kill() {
    let db = TestMariadb::start("db", |o| o.max_connections = 23);
    db.create_user("monitor", "monitor-pw", "PROCESS, SLAVE MONITOR");
    let pw = secret("monitor-pw");
    let client = MysqlClient::connect(db.addr(), "monitor", Some(&pw), None, TIMEOUT)
        .await
        .expect("connect as monitor");

    let status = client.global_status().await.expect("global status");
    let uptime: u64 = status["Uptime"].parse().expect("Uptime is a number");
    assert!(uptime < 3600, "fresh server, Uptime {uptime}");
    let threads: u64 = status["Threads_connected"]
        .parse()
        .expect("Threads_connected");
    assert!(threads >= 1);

    let vars = client.global_variables().await.expect("global variables");
    assert_eq!(vars["max_connections"], "23");
    assert_eq!(
        client.variable("max_connections").await.expect("variable"),
        Some("23".to_owned())
    );
    assert_eq!(
        client.variable("no_such_variable").await.expect("unknown"),
        None
    );
    let bad = client.variable("x; DROP DATABASE mysql").await;
    assert!(matches!(bad, Err(MysqlError::Invalid { .. })), "{bad:?}");
    assert!(!client.read_only().await.expect("read_only"));

    // Our own connection is in the full processlist, under our user.
    let my_id = client.connection_id().await.expect("connection id");
    let procs = client.processlist().await.expect("processlist");
    let me = procs
        .iter()
        .find(|p| p.id == my_id)
        .unwrap_or_else(|| panic!("connection {my_id} not in {procs:?}"));
    assert_eq!(me.user, "monitor");
    assert!(me.host.starts_with("127.0.0.1:"), "{me:?}");
    assert_eq!(me.info.as_deref(), Some("SHOW FULL PROCESSLIST"));

    // A generic result set: names, NULL, affected rows.
    let t = client
        .query_table("SELECT 1 AS one, NULL AS nothing, 'x' AS letter")
        .await
        .expect("query");
    assert_eq!(t.columns, ["one", "nothing", "letter"]);
    assert_eq!(
        t.rows,
        vec![vec![Some("1".to_owned()), None, Some("x".to_owned())]]
    );

    // A statement longer than the timeout is cut off with Timeout; KILL QUERY stops it on the
    // server.
    let root = MysqlClient::connect(db.addr(), "root", None, None, TIMEOUT)
        .await
        .expect("root over TCP");
    let impatient = MysqlClient::connect(db.addr(), "root", None, None, Duration::from_millis(500))
        .await
        .expect("root, short timeout");
    let slow = impatient
        .query_table("SELECT SLEEP(30) AS slept")
        .await
        .expect_err("a 30 s statement with a 500 ms timeout");
    assert!(matches!(slow, MysqlError::Timeout { .. }), "{slow:?}");
    assert!(slow.to_string().contains("timed out after 500ms"), "{slow}");
    let sleeper = wait_for("the SLEEP in the processlist", TIMEOUT, || async {
        let procs = root.processlist().await.ok()?;
        procs
            .into_iter()
            .find(|p| p.info.as_deref().is_some_and(|i| i.contains("SLEEP(30)")))
    })
    .await;
    root.kill_query(sleeper.id).await.expect("kill query");
    wait_for("the SLEEP to end", TIMEOUT, || async {
        let procs = root.processlist().await.ok()?;
        let busy = procs
            .iter()
            .any(|p| p.info.as_deref().is_some_and(|i| i.contains("SLEEP(30)")));
        (!busy).then_some(())
    })
    .await;
    // ... which frees the impatient client's connection for its next call.
    wait_for("the impatient client to answer again", TIMEOUT, || async {
        impatient.query_table("SELECT 1").await.ok()
    })
    .await;

    // KILL CONNECTION removes a connection.
    let victim = MysqlClient::connect(db.addr(), "monitor", Some(&pw), None, TIMEOUT)
        .await
        .expect("victim");
    let victim_id = victim.connection_id().await.expect("victim id");
    root.kill(victim_id).await.expect("kill");
    wait_for("the killed connection to leave", TIMEOUT, || async {
        let procs = root.processlist().await.ok()?;
        (!procs.iter().any(|p| p.id == victim_id)).then_some(())
    })
    .await;
    let unknown = root.kill(victim_id).await;
    assert_eq!(
        unknown.as_ref().err().and_then(MysqlError::code),
        Some(1094),
        "{unknown:?}"
    );

    // read_only can be switched by an admin.
    root.set_read_only(true).await.expect("set read_only");
    assert!(root.read_only().await.expect("read_only"));
    root.set_read_only(false).await.expect("clear read_only");
    assert!(!root.read_only().await.expect("read_only"));

    client.disconnect().await.expect("disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_replication_status_on_a_gtid_replica() {
    let primary = TestMariadb::start("primary", |o| {
        o.server_id = 1;
        o.log_bin = true;
    });
    let replica = TestMariadb::start("replica", |o| {
        o.server_id = 2;
        o.read_only = true;
    });
    primary.sql(
        "CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-pw'; \
         GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';",
    );
    // Created before replication starts; the replica replays it from the binlog.
    primary.create_user("monitor", "monitor-pw", "PROCESS, SLAVE MONITOR");
    primary.create_user("weak", "weak-pw", "REPLICATION CLIENT");
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
         MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=slave_pos; START SLAVE;",
        primary.addr().port()
    ));
    primary.sql(
        "CREATE DATABASE app; CREATE TABLE app.orders (id INT PRIMARY KEY); \
         INSERT INTO app.orders VALUES (1), (2), (3);",
    );
    // The write lands on the replica (root over its socket, bounded wait).
    wait_for(
        "the write to reach the replica",
        Duration::from_secs(30),
        || async {
            let n = mariadb_sql_quiet(&replica, "SELECT COUNT(*) FROM app.orders")?;
            (n.trim() == "3").then_some(())
        },
    )
    .await;

    let pw = secret("monitor-pw");
    let on_replica = MysqlClient::connect(replica.addr(), "monitor", Some(&pw), None, TIMEOUT)
        .await
        .expect("monitor on replica (user replicated from the primary)");
    let st = wait_for(
        "both replication threads running",
        Duration::from_secs(30),
        || async {
            let st = on_replica.replication_status().await.ok()??;
            (st.io_running && st.sql_running && st.seconds_behind.is_some()).then_some(st)
        },
    )
    .await;
    assert_eq!(st.io_state, "Yes");
    assert_eq!(st.sql_state, "Yes");
    assert_eq!(st.seconds_behind, Some(0));
    assert_eq!(st.source_host, "127.0.0.1");
    assert_eq!(st.source_port, Some(primary.addr().port()));
    assert_eq!(st.using_gtid.as_deref(), Some("Slave_Pos"));
    assert!(
        st.gtid_io_pos
            .as_deref()
            .is_some_and(|p| p.starts_with("0-1-")),
        "{st:?}"
    );
    assert_eq!(
        (st.last_io_error.as_str(), st.last_sql_error.as_str()),
        ("", "")
    );
    assert!(on_replica.read_only().await.expect("read_only"));

    let on_primary = MysqlClient::connect(primary.addr(), "monitor", Some(&pw), None, TIMEOUT)
        .await
        .expect("monitor on primary");
    assert_eq!(on_primary.replication_status().await.expect("status"), None);
    assert!(!on_primary.read_only().await.expect("read_only"));

    // REPLICATION CLIENT is not enough on MariaDB 10.11: a typed server error, not a crash.
    let weak_pw = secret("weak-pw");
    let weak = MysqlClient::connect(replica.addr(), "weak", Some(&weak_pw), None, TIMEOUT)
        .await
        .expect("weak user connects");
    let denied = weak.replication_status().await;
    match &denied {
        Err(MysqlError::Server {
            code: 1227,
            message,
            ..
        }) => {
            assert!(message.contains("SLAVE MONITOR"), "{message}");
        }
        other => panic!("expected error 1227, got {other:?}"),
    }
}

/// Root SQL that returns `None` instead of panicking (for polling while a table appears).
fn mariadb_sql_quiet(db: &TestMariadb, sql: &str) -> Option<String> {
    opsdeck::lab::mariadb::sql(&db.server, sql).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_full_server_is_reported_as_too_many_connections() {
    // 10 is MariaDB's smallest max_connections.
    let db = TestMariadb::start("full", |o| o.max_connections = 10);
    db.create_user("app", "app-pw", "USAGE");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.addr().port())
        .user(Some("app"))
        .pass(Some("app-pw"))
        .prefer_socket(false);
    let mut held = Vec::new();
    let refusal = loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => held.push(c),
            Err(e) => break e,
        }
        assert!(
            held.len() <= 10,
            "server accepted more than max_connections"
        );
    };
    assert_eq!(held.len(), 10);
    assert!(
        matches!(&refusal, mysql_async::Error::Server(s) if s.code == 1040),
        "{refusal:?}"
    );

    let pw = secret("app-pw");
    let err = MysqlClient::connect(db.addr(), "app", Some(&pw), None, TIMEOUT)
        .await
        .expect_err("the server is full");
    assert!(
        matches!(err, MysqlError::TooManyConnections { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("Too many connections"), "{text}");
    assert!(text.contains(&db.addr().to_string()), "{text}");

    // The reserved admin slot still lets root in to see why. A refused connection holds a
    // slot until its server thread has finished sending the refusal, so allow a short retry.
    let root = wait_for("root to get the reserved slot", TIMEOUT, || async {
        MysqlClient::connect(db.addr(), "root", None, None, TIMEOUT)
            .await
            .ok()
    })
    .await;
    let status = root.global_status().await.expect("status");
    let max_used: u64 = status["Max_used_connections"].parse().expect("number");
    assert_eq!(max_used, 11, "10 app connections and root's");
    let app_conns = root
        .processlist()
        .await
        .expect("processlist")
        .iter()
        .filter(|p| p.user == "app")
        .count();
    assert_eq!(app_conns, 10);

    for c in held {
        c.disconnect().await.expect("disconnect");
    }
    // Once they are gone, the application user gets in again.
    wait_for("a free connection slot", TIMEOUT, || async {
        MysqlClient::connect(db.addr(), "app", Some(&pw), None, TIMEOUT)
            .await
            .ok()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_master_and_replica_report_their_state() {
    let lab = RedisLab::new();
    let master = lab.redis_with("master", |o| o.maxclients = Some(123));
    let replica = lab.redis("replica", None, Some(master.addr));

    let c = RedisClient::connect(master.addr, None, TIMEOUT)
        .await
        .expect("connect");
    let rtt = c.ping().await.expect("ping");
    assert!(rtt < TIMEOUT);

    let info = c.info().await.expect("info");
    assert_eq!(info.role(), Some("master"));
    assert!(info.connected_clients().expect("connected_clients") >= 1);
    assert_eq!(info.rejected_connections(), Some(0));
    assert!(info.used_memory().expect("used_memory") > 0);
    assert_eq!(info.maxmemory(), Some(0));
    assert!(matches!(c.role().await.expect("role"), Role::Master { .. }));

    let my_id = c.client_id().await.expect("client id");
    let clients = c.client_list().await.expect("client list");
    let me = clients
        .iter()
        .find(|cl| cl.get("id") == Some(&my_id.to_string()))
        .unwrap_or_else(|| panic!("client {my_id} not in {clients:?}"));
    assert_eq!(me.get("name").map(String::as_str), Some("opsdeck"));

    let maxclients = c.config_get("maxclients").await.expect("config get");
    assert_eq!(
        maxclients.get("maxclients").map(String::as_str),
        Some("123")
    );

    let push = c
        .command(&[
            "RPUSH".into(),
            "jobs".into(),
            "a".into(),
            "b".into(),
            "c".into(),
        ])
        .await
        .expect("rpush");
    assert_eq!(push, "(integer) 3");
    assert_eq!(c.llen("jobs").await.expect("llen"), 3);
    assert_eq!(c.llen("no-such-list").await.expect("llen"), 0);
    let range = c
        .command(&["LRANGE".into(), "jobs".into(), "0".into(), "-1".into()])
        .await
        .expect("lrange");
    assert_eq!(range, "1) \"a\"\n2) \"b\"\n3) \"c\"");
    let wrong = c.command(&["LLEN".into()]).await;
    assert!(matches!(wrong, Err(RedisError::Server { .. })), "{wrong:?}");

    // The replica links up (bounded wait) and says so in INFO and ROLE.
    let r = RedisClient::connect(replica.addr, None, TIMEOUT)
        .await
        .expect("connect replica");
    let rinfo = wait_for(
        "the replica link to come up",
        Duration::from_secs(20),
        || async {
            let info = r.info().await.ok()?;
            (info.master_link_status() == Some("up")).then_some(info)
        },
    )
    .await;
    assert_eq!(rinfo.role(), Some("slave"));
    match r.role().await.expect("role") {
        Role::Replica {
            master_port, state, ..
        } => {
            assert_eq!(master_port, master.addr.port());
            assert_eq!(state, "connected");
        }
        other => panic!("replica reports {other:?}"),
    }
    let replicas = c.info().await.expect("info").replicas();
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0].port, replica.addr.port());
    // The replicated list is there too.
    wait_for("the list to replicate", Duration::from_secs(10), || async {
        (r.llen("jobs").await.ok()? == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_reports_the_master_and_follows_a_failover() {
    const NAME: &str = "opsmaster";
    let lab = RedisLab::new();
    let mut master = lab.redis("master", Some("sentinel-pw"), None);
    let replica = lab.redis("replica", Some("sentinel-pw"), Some(master.addr));
    let sentinels: Vec<_> = (1..=3)
        .map(|i| {
            lab.sentinel(
                &format!("sentinel{i}"),
                NAME,
                master.addr,
                Some("sentinel-pw"),
            )
        })
        .collect();
    let addrs: Vec<_> = sentinels.iter().map(|s| s.addr).collect();

    let s1 = SentinelClient::connect(addrs[0], None, TIMEOUT)
        .await
        .expect("connect sentinel");
    assert_eq!(
        s1.get_master_addr_by_name(NAME).await.expect("master addr"),
        Some(("127.0.0.1".to_owned(), master.addr.port()))
    );
    assert_eq!(
        s1.get_master_addr_by_name("nope").await.expect("unknown"),
        None
    );
    let masters = s1.masters().await.expect("masters");
    assert_eq!(masters.len(), 1);
    assert_eq!(masters[0]["name"], NAME);

    // Sentinels find each other and the replica through the master (bounded wait).
    let quorum = wait_for(
        "CKQUORUM to count all three Sentinels",
        Duration::from_secs(30),
        || async {
            let verdict = s1.ckquorum(NAME).await.ok()?.ok()?;
            verdict
                .starts_with("OK 3 usable Sentinels")
                .then_some(verdict)
        },
    )
    .await;
    assert!(
        quorum.contains("failover authorization can be reached"),
        "{quorum}"
    );
    let others = s1.sentinels(NAME).await.expect("sentinels");
    assert_eq!(others.len(), 2, "{others:?}");
    let replicas = wait_for(
        "the replica to be known",
        Duration::from_secs(30),
        || async {
            let r = s1.replicas(NAME).await.ok()?;
            (!r.is_empty()).then_some(r)
        },
    )
    .await;
    assert_eq!(replicas[0]["port"], replica.addr.port().to_string());
    let bad = s1.ckquorum("nope").await.expect("asked");
    assert!(bad.is_err(), "{bad:?}");

    assert_eq!(
        resolve_master(&addrs, None, NAME, TIMEOUT)
            .await
            .expect("resolve"),
        master.addr
    );

    // The master dies; the Sentinels promote the replica and name it.
    master.kill();
    let killed = Instant::now();
    let new_master = wait_for("the failover", Duration::from_secs(60), || async {
        let m = resolve_master(&addrs, None, NAME, TIMEOUT).await.ok()?;
        (m != master.addr).then_some(m)
    })
    .await;
    assert_eq!(new_master, replica.addr);
    // A figure, not an assertion (see --nocapture): down-after 1 s plus election and promotion.
    eprintln!("sentinel failover seen after {:?}", killed.elapsed());
    let promoted = RedisClient::connect(new_master, Some(&secret("sentinel-pw")), TIMEOUT)
        .await
        .expect("connect new master");
    let role = wait_for(
        "the promoted replica to act as master",
        Duration::from_secs(30),
        || async {
            match promoted.role().await.ok()? {
                r @ Role::Master { .. } => Some(r),
                _ => None,
            }
        },
    )
    .await;
    assert!(matches!(role, Role::Master { .. }));

    // Asking a dead address first still resolves through the others.
    let mut with_dead = vec![master.addr];
    with_dead.extend(&addrs);
    assert_eq!(
        resolve_master(&with_dead, None, NAME, TIMEOUT)
            .await
            .expect("resolve"),
        replica.addr
    );
    let none = resolve_master(&[master.addr], None, NAME, Duration::from_secs(1)).await;
    assert!(matches!(none, Err(RedisError::Connect { .. })), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replies_slower_than_half_a_second_respect_the_configured_timeout() {
    let lab = RedisLab::new();
    let server = lab.redis("slow", None, None);
    let patient = RedisClient::connect(server.addr, None, Duration::from_secs(3))
        .await
        .expect("connect");
    let reply = patient
        .command(&["DEBUG".into(), "SLEEP".into(), "0.8".into()])
        .await
        .expect("0.8 s reply within a 3 s timeout");
    assert_eq!(reply, "OK");

    let impatient = RedisClient::connect(server.addr, None, Duration::from_millis(200))
        .await
        .expect("connect");
    let err = impatient
        .command(&["DEBUG".into(), "SLEEP".into(), "0.8".into()])
        .await
        .expect_err("0.8 s reply with a 200 ms timeout");
    assert!(matches!(err, RedisError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 200ms"), "{err}");
    // The connection is still usable once the server is free again.
    wait_for(
        "the server to answer again",
        Duration::from_secs(5),
        || async { impatient.ping().await.ok() },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

const CANARY: &str = "opsdeck-canary-7Qx9";

fn assert_no_canary(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what} shows the canary: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_never_shows_the_password() {
    let db = TestMariadb::start("canary", |_| {});
    db.create_user("canary", CANARY, "PROCESS");
    let right = secret(CANARY);
    let wrong = secret(&format!("{CANARY}-wrong"));

    let err = MysqlClient::connect(db.addr(), "canary", Some(&wrong), None, TIMEOUT)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, MysqlError::AccessDenied { .. }), "{err:?}");
    assert_no_canary("error", &err.to_string());
    assert_no_canary("error debug", &format!("{err:?}"));

    let c = MysqlClient::connect(db.addr(), "canary", Some(&right), None, TIMEOUT)
        .await
        .expect("right password");
    assert_no_canary("client debug", &format!("{c:?}"));

    // The server echoes the value: the client masks it in results, processlist and errors.
    let t = c
        .query_table(&format!(
            "SELECT '{CANARY}' AS `{CANARY}`, 'plain' AS other"
        ))
        .await
        .expect("select");
    assert_eq!(t.columns, [MASK, "other"]);
    assert_eq!(
        t.rows,
        vec![vec![Some(MASK.to_owned()), Some("plain".to_owned())]]
    );
    assert_no_canary("result", &format!("{t:?} {}", t.to_text()));
    let procs = c.processlist().await.expect("processlist");
    assert_no_canary("processlist", &format!("{procs:?}"));
    let err = c
        .query_table(&format!("SELECT * FROM information_schema.`{CANARY}`"))
        .await
        .expect_err("no such table");
    assert_no_canary("server error", &format!("{err} {err:?}"));
    assert!(err.to_string().contains(MASK), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_shows_the_password() {
    let lab = RedisLab::new();
    let server = lab.redis("canary", Some(CANARY), None);
    let right = secret(CANARY);
    let wrong = secret(&format!("{CANARY}-wrong"));

    let err = RedisClient::connect(server.addr, Some(&wrong), TIMEOUT)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, RedisError::Auth { .. }), "{err:?}");
    assert_no_canary("error", &format!("{err} {err:?}"));
    let noauth = RedisClient::connect(server.addr, None, TIMEOUT)
        .await
        .expect_err("no password");
    assert!(matches!(noauth, RedisError::Auth { .. }), "{noauth:?}");

    let c = RedisClient::connect(server.addr, Some(&right), TIMEOUT)
        .await
        .expect("right password");
    assert_no_canary("client debug", &format!("{c:?}"));
    let conf = c.config_get("requirepass").await.expect("config get");
    assert_eq!(conf.get("requirepass").map(String::as_str), Some(MASK));
    let echoed = c
        .command(&["ECHO".into(), CANARY.into()])
        .await
        .expect("echo");
    assert_eq!(echoed, MASK);
    let all = c
        .command(&["CONFIG".into(), "GET".into(), "*pass*".into()])
        .await
        .expect("config get");
    assert_no_canary("CONFIG GET *pass*", &all);
    let err = c
        .command(&["NO-SUCH-COMMAND".into(), CANARY.into()])
        .await
        .expect_err("unknown command");
    assert_no_canary("server error", &format!("{err} {err:?}"));
}

/// A password built to break naive escaping: quote, backslash, apostrophe, percent, space,
/// non-ASCII. Unique per test so one test's masking cannot hide another's leak.
fn hostile_canary(tag: &str) -> String {
    format!("cn-{tag}-a\"b\\c'%d \u{fc}")
}

/// Every form the canary could leak in: raw, JSON-escaped, Debug-escaped, percent-encoded.
fn leaked_forms(canary: &str) -> Vec<String> {
    let json = serde_json::to_string(canary).expect("json");
    let debug = format!("{canary:?}");
    let percent: String = canary
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        canary.to_owned(),
        json[1..json.len() - 1].to_owned(),
        debug[1..debug.len() - 1].to_owned(),
        percent,
    ]
}

fn assert_no_form(canary: &str, what: &str, text: &str) {
    for f in leaked_forms(canary) {
        assert!(
            !text.contains(&f),
            "{what} shows the canary as {f:?}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_config_get_of_a_hostile_password_is_masked_in_every_form() {
    let canary = hostile_canary("redis-cfg");
    let lab = RedisLab::new();
    let server = lab.redis("hostile", Some(&canary), None);
    let pw = secret(&canary);
    let c = RedisClient::connect(server.addr, Some(&pw), TIMEOUT)
        .await
        .expect("a password with quotes, backslash and ü logs in");
    // What a `CONFIG GET requirepass` diagnose step prints.
    let text = c
        .command(&["CONFIG".into(), "GET".into(), "requirepass".into()])
        .await
        .expect("config get");
    assert_no_form(&canary, "CONFIG GET requirepass", &text);
    assert_eq!(text, format!("1) \"requirepass\"\n2) \"{MASK}\""));
    let conf = c.config_get("*pass*").await.expect("config get");
    assert_no_form(&canary, "config_get", &format!("{conf:?}"));
    let echoed = c
        .command(&["ECHO".into(), format!("pw={canary};")])
        .await
        .expect("echo");
    assert_eq!(echoed, format!("pw={MASK};"));
    let err = c
        .command(&["NO-SUCH-COMMAND".into(), canary.clone()])
        .await
        .expect_err("unknown command");
    assert_no_form(&canary, "server error", &format!("{err} {err:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replies_are_bounded_with_a_mark() {
    use opsdeck::clients::redis::{REPLY_MAX_BYTES, REPLY_MAX_ELEMENTS};
    let lab = RedisLab::new();
    let server = lab.redis("big", None, None);
    let c = RedisClient::connect(server.addr, None, Duration::from_secs(30))
        .await
        .expect("connect");
    // A 50 MB value: GET shows its head and tail and says how much it left out.
    let value = format!("HEAD{}TAIL", "x".repeat(50 * 1024 * 1024));
    let set = c
        .command(&["SET".into(), "big".into(), value.clone()])
        .await
        .expect("set");
    assert_eq!(set, "OK");
    let got = c.command(&["GET".into(), "big".into()]).await.expect("get");
    assert!(got.len() <= REPLY_MAX_BYTES + 100, "{} bytes", got.len());
    assert!(got.starts_with("HEAD") && got.ends_with("TAIL"));
    let omitted = value.len() - (got.len() - got.lines().nth(1).map_or(0, |l| l.len() + 2));
    assert!(
        got.contains(&format!("[opsdeck: {omitted} more bytes omitted]")),
        "{}",
        got.lines().nth(1).unwrap_or_default()
    );
    // A list of 200 000 items: LRANGE 0 -1 lists the first ones and counts the rest.
    let n = 200_000;
    for chunk in (0..n).collect::<Vec<u32>>().chunks(10_000) {
        let mut args = vec!["RPUSH".to_owned(), "long".to_owned()];
        args.extend(chunk.iter().map(|i| format!("item-{i}")));
        c.command(&args).await.expect("rpush");
    }
    let range = c
        .command(&["LRANGE".into(), "long".into(), "0".into(), "-1".into()])
        .await
        .expect("lrange");
    let listed = range.lines().count() - 1;
    assert!(listed <= REPLY_MAX_ELEMENTS, "{listed} lines");
    assert!(range.starts_with("1) \"item-0\"\n2) \"item-1\""));
    assert!(
        range.ends_with(&format!(
            "[opsdeck: {} more elements omitted]",
            n as usize - listed
        )),
        "{}",
        &range[range.len() - 100..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_results_are_bounded_and_the_connection_stays_usable() {
    use opsdeck::clients::mysql::{MAX_ROWS, MAX_TEXT_BYTES};
    let db = TestMariadb::start("bounded", |_| {});
    db.sql("CREATE DATABASE s");
    let c = MysqlClient::connect(db.addr(), "root", None, Some("s"), Duration::from_secs(60))
        .await
        .expect("root");
    // 100 000 rows: the first MAX_ROWS are kept, the rest counted.
    let t = c
        .query_table("SELECT seq FROM seq_1_to_100000")
        .await
        .expect("select 100 000 rows");
    assert_eq!(t.rows.len(), MAX_ROWS);
    assert_eq!(t.omitted_rows, (100_000 - MAX_ROWS) as u64);
    assert_eq!(t.rows[0], vec![Some("1".to_owned())]);
    let text = t.to_text();
    assert!(
        text.ends_with(&format!(
            "\n{MAX_ROWS}\n[opsdeck: {} more rows omitted]",
            100_000 - MAX_ROWS
        )),
        "{}",
        &text[text.len() - 80..]
    );
    // 50 rows of 100 kB: cut at MAX_TEXT_BYTES of text.
    let t = c
        .query_params(
            "SELECT seq, REPEAT('y', ?) FROM seq_1_to_50",
            &["100000".into()],
        )
        .await
        .expect("wide rows");
    let kept: usize = t.rows.iter().flatten().flatten().map(String::len).sum();
    assert!(kept <= MAX_TEXT_BYTES, "{kept}");
    assert_eq!(t.rows.len() as u64 + t.omitted_rows, 50);
    assert!(t.omitted_rows > 0);
    // One cell larger than the bound keeps its head.
    let t = c
        .query_table("SELECT REPEAT('z', 3000000) AS huge")
        .await
        .expect("one huge cell");
    let cell = t.rows[0][0].as_deref().expect("cell");
    assert!(cell.len() < MAX_TEXT_BYTES + 100, "{}", cell.len());
    assert!(
        cell.ends_with("more bytes omitted]"),
        "{}",
        &cell[cell.len() - 60..]
    );
    // The rows left out were read away: the connection answers the next query.
    let t = c.query_table("SELECT 42").await.expect("next query");
    assert_eq!(t.rows, vec![vec![Some("42".to_owned())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_values_travel_as_bound_parameters() {
    let db = TestMariadb::start("params", |_| {});
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, name VARCHAR(50)); \
         INSERT INTO app.t VALUES (1, 'one'), (2, 'two');",
    );
    let c = MysqlClient::connect(db.addr(), "root", None, None, TIMEOUT)
        .await
        .expect("root");
    let t = c
        .query_params("SELECT name FROM app.t WHERE id = ?", &["2".into()])
        .await
        .expect("select");
    assert_eq!(t.rows, vec![vec![Some("two".to_owned())]]);
    // A value that would break out of a quoted literal is just a value.
    for attack in ["x' OR '1'='1", "1 OR 1=1", "1; DROP TABLE app.t"] {
        let t = c
            .query_params("SELECT name FROM app.t WHERE name = ?", &[attack.into()])
            .await
            .expect("select");
        assert!(t.rows.is_empty(), "{attack}: {t:?}");
        let t = c
            .query_params("SELECT ? AS v", &[attack.into()])
            .await
            .expect("echo");
        assert_eq!(t.rows, vec![vec![Some(attack.to_owned())]]);
    }
    let t = c
        .query_params(
            "UPDATE app.t SET name = ? WHERE id = ?",
            &["it's".into(), "1".into()],
        )
        .await
        .expect("update");
    assert_eq!(t.affected_rows, 1);
    assert_eq!(db.sql("SELECT name FROM app.t WHERE id = 1").trim(), "it's");
    // KILL with the id bound (the server converts the string).
    let victim = MysqlClient::connect(db.addr(), "root", None, None, TIMEOUT)
        .await
        .expect("victim");
    let id = victim.connection_id().await.expect("id");
    c.query_params("KILL CONNECTION ?", &[id.to_string()])
        .await
        .expect("kill");
    wait_for("the victim to be gone", TIMEOUT, || async {
        let procs = c.processlist().await.ok()?;
        (!procs.iter().any(|p| p.id == id)).then_some(())
    })
    .await;
    // Numeric system variables need the string cast; ON/OFF ones take it as is.
    c.query_params(
        "SET GLOBAL max_connections = CAST(? AS UNSIGNED)",
        &["77".into()],
    )
    .await
    .expect("set max_connections");
    c.query_params("SET GLOBAL read_only = ?", &["ON".into()])
        .await
        .expect("set read_only");
    assert_eq!(
        db.sql("SELECT @@GLOBAL.max_connections, @@GLOBAL.read_only")
            .trim(),
        "77\t1"
    );
    // A second statement cannot ride along: the server prepares one statement only.
    let e = c
        .query_params("SELECT 1; DROP TABLE app.t", &[])
        .await
        .expect_err("two statements");
    assert_eq!(e.code(), Some(1064), "{e}");
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.t").trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_read_only_queries_cannot_change_anything() {
    let db = TestMariadb::start("readonly", |_| {});
    db.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, name VARCHAR(50)); \
         INSERT INTO app.t VALUES (1, 'one');\n\
         DELIMITER //\n\
         CREATE FUNCTION app.sneaky() RETURNS INT MODIFIES SQL DATA \
           BEGIN INSERT INTO app.t VALUES (99, 'sneaked'); RETURN 1; END//\n\
         DELIMITER ;\n",
    );
    let c = MysqlClient::connect(db.addr(), "root", None, None, TIMEOUT)
        .await
        .expect("root");
    for sql in [
        "SELECT 1; DROP TABLE app.t",
        "UPDATE app.t SET name = 'x'",
        "/**/DROP TABLE app.t",
        "SELECT * FROM app.t INTO OUTFILE '/tmp/opsdeck-ro-test'",
        "CALL app.nothing()",
    ] {
        let e = c
            .query_read_only(sql, &[])
            .await
            .expect_err("refused before sending");
        assert!(matches!(e, MysqlError::NotReadOnly { .. }), "{sql}: {e:?}");
    }
    // A SELECT that writes through a stored function: refused before it is sent (only
    // built-in functions known to compute are allowed); were it sent, the READ ONLY
    // transaction would stop the write.
    let e = c
        .query_read_only("SELECT app.sneaky()", &[])
        .await
        .expect_err("a stored function may write");
    assert!(matches!(e, MysqlError::NotReadOnly { .. }), "{e:?}");
    assert_eq!(db.sql("SELECT COUNT(*) FROM app.t").trim(), "1");
    assert_eq!(db.sql("SHOW TABLES FROM app").trim(), "t");
    // Reads work, SHOW included, with bound parameters; the connection is usable after.
    let t = c
        .query_read_only("SELECT name FROM app.t WHERE id = ?", &["1".into()])
        .await
        .expect("select");
    assert_eq!(t.rows, vec![vec![Some("one".to_owned())]]);
    let t = c
        .query_read_only(
            "SHOW GLOBAL STATUS WHERE Variable_name = ?",
            &["Uptime".into()],
        )
        .await
        .expect("show status");
    assert_eq!(t.rows.len(), 1);
    for sql in [
        "SHOW FULL PROCESSLIST",
        "SHOW SLAVE STATUS",
        "SHOW ENGINE INNODB STATUS",
        "EXPLAIN SELECT * FROM app.t",
        "DESCRIBE app.t",
    ] {
        c.query_read_only(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // No transaction is left open on the pooled connection: a write works after.
    let t = c
        .query_table("INSERT INTO app.t VALUES (2, 'two')")
        .await
        .expect("write after read-only");
    assert_eq!(t.affected_rows, 1);
}
