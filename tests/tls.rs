//! TLS against real servers configured the real-world way, on loopback, with a test CA made by
//! `openssl`: nginx serving `/health` over HTTPS (probes, the status page, runbook HTTP steps,
//! directly and through `via = "ssh"`), redis-server on a `tls-port` with an ACL user and no
//! plaintext port, MariaDB with `require_secure_transport`.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use opsdeck::clients::mysql::MysqlClient;
use opsdeck::clients::redis::{Login, RedisClient};
use opsdeck::inventory::{self, TlsSettings, TlsVerify};
use opsdeck::secret::Secret;
use opsdeck::transport::Connections;
use serde_json::Value;
use support::sshd::SshHosts;
use support::tls::{Pki, TlsMariadb, https_nginx, tls_redis, toml_str};

const T: Duration = Duration::from_secs(10);

fn opsdeck(work: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY")
        .env("OPSDECK_LOG_DIR", work.join("logs"))
        .env("OPSDECK_JOURNAL_DIR", work.join("journal"))
        .env("OPSDECK_RUNBOOKS", work.join("runbooks"));
    c
}

fn health(work: &Path, inv: &Path) -> Value {
    let out = opsdeck(work)
        .arg("-i")
        .arg(inv)
        .args(["health", "--json", "--timeout", "5s"])
        .output()
        .expect("runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn check<'a>(doc: &'a Value, host: &str, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["host"] == host && c["id"] == id)
        .unwrap_or_else(|| panic!("no check {host} {id} in {doc:#}"))
}

fn output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn https_health_probes_pass_with_the_test_ca_and_fail_clearly_without_it() {
    let pki = Pki::new();
    let nginx = https_nginx(pki.dir.path(), &pki.server);
    let ssh = SshHosts::start(1);
    let port = nginx.addr.port();
    let url = format!("https://127.0.0.1:{port}/health");
    let ca = toml_str(&pki.ca.cert.to_string_lossy());
    let other = toml_str(&pki.other_ca.cert.to_string_lossy());
    let mut inv = String::from("name = \"tls\"\n[tiers.web]\n");
    let mut host = |name: &str, transport: &str, extra: &str| {
        let _ = write!(
            inv,
            "\n[hosts.{name}]\ntier = \"web\"\n{transport}\n[[hosts.{name}.http]]\nurl = \"{url}\"\napp_health = true\n{extra}\n"
        );
    };
    host(
        "good",
        "local = {}\nnginx = { status_url = \"https://127.0.0.1:PORT/status\" }",
        &format!("tls = {{ ca_file = {ca} }}"),
    );
    host(
        "untrusted",
        "local = {}",
        &format!("tls = {{ ca_file = {other} }}"),
    );
    host("system", "local = {}", "");
    host(
        "wrongname",
        "local = {}",
        &format!("tls = {{ ca_file = {ca}, server_name = \"db.internal\" }}"),
    );
    host(
        "caonly",
        "local = {}",
        &format!("tls = {{ ca_file = {ca}, server_name = \"db.internal\", verify = \"ca\" }}"),
    );
    // nginx listens on 127.0.0.1; the SSH host is 127.0.0.2. Through the tunnel the
    // certificate is still checked against the URL's host, not the loopback forward.
    host(
        "tunnelled",
        &format!("ssh = {}", ssh.ssh_table(0, "")),
        &format!("via = \"ssh\"\ntls = {{ ca_file = {ca} }}"),
    );
    let inv = inv.replace("PORT", &port.to_string());
    let path = pki.path("inv.toml");
    std::fs::write(&path, inv).expect("inventory");

    let doc = health(pki.dir.path(), &path);
    for ok in ["good", "caonly", "tunnelled"] {
        let c = check(&doc, ok, "http.status");
        assert_eq!(c["state"], "ok", "{ok}: {c}");
        assert_eq!(check(&doc, ok, "app.database")["state"], "ok", "{ok}");
    }
    // The status page is found under the same origin and uses its TLS settings.
    let st = check(&doc, "good", "nginx.status");
    assert_eq!(st["state"], "ok", "{st}");
    assert!(
        st["reason"]
            .as_str()
            .is_some_and(|r| r.contains("active connections")),
        "{st}"
    );

    let reason = |h: &str| {
        let c = check(&doc, h, "http.status");
        assert_eq!(c["state"], "down", "{h}: {c}");
        c["reason"].as_str().unwrap_or_default().to_owned()
    };
    let r = reason("untrusted");
    assert!(
        r.contains("TLS handshake")
            && r.contains("not signed by a CA in")
            && r.contains("other-ca.pem")
            && r.contains("tls.ca_file"),
        "{r}"
    );
    let r = reason("system");
    assert!(
        r.contains("not signed by a CA in the system bundle") && r.contains("tls.ca_file"),
        "{r}"
    );
    let r = reason("wrongname");
    assert!(
        r.contains("db.internal") && r.contains("tls.server_name"),
        "{r}"
    );
}

#[test]
fn runbook_http_steps_speak_https_directly_and_through_the_ssh_tunnel() {
    let pki = Pki::new();
    let nginx = https_nginx(pki.dir.path(), &pki.server);
    let ssh = SshHosts::start(1);
    let work = pki.dir.path();
    let url = format!("https://127.0.0.1:{}/health", nginx.addr.port());
    let ca = toml_str(&pki.ca.cert.to_string_lossy());
    let inv = format!(
        "[tiers.web]\n\
         [hosts.web1]\ntier = \"web\"\nlocal = {{}}\n\
         [[hosts.web1.http]]\nurl = \"{url}\"\ntls = {{ ca_file = {ca} }}\n\
         [hosts.web2]\ntier = \"web\"\nssh = {}\n\
         [[hosts.web2.http]]\nurl = \"{url}\"\nvia = \"ssh\"\ntls = {{ ca_file = {ca} }}\n",
        ssh.ssh_table(0, "")
    );
    let path = work.join("inv.toml");
    std::fs::write(&path, inv).expect("inventory");
    std::fs::create_dir_all(work.join("runbooks")).expect("mkdir");
    for (id, target) in [
        ("https-direct", "{ selector = \"web1\" }"),
        ("https-tunnel", "{ selector = \"web2\" }"),
        ("https-untargeted", ""),
    ] {
        let target = if target.is_empty() {
            String::new()
        } else {
            format!("target = {target}\n")
        };
        std::fs::write(
            work.join("runbooks").join(format!("{id}.toml")),
            format!(
                "id = \"{id}\"\ntitle = \"{id}\"\ntriggers = []\n\n[[steps]]\nid = \"get\"\n\
                 title = \"the health URL answers 200\"\nkind = \"check\"\n{target}\
                 http = {{ url = \"{url}\", expect_status = 200 }}\n\
                 expect = {{ regex = \"database\" }}\n"
            ),
        )
        .expect("runbook");
    }
    let run = |id: &str| {
        opsdeck(work)
            .arg("-i")
            .arg(&path)
            .args(["run", id, "--approve", "all"])
            .output()
            .expect("runs")
    };
    for id in ["https-direct", "https-tunnel"] {
        let o = run(id);
        assert_eq!(o.status.code(), Some(0), "{id}: {}", output(&o));
    }
    // Without a target the step uses the system CAs, which do not know the test CA.
    let o = run("https-untargeted");
    assert_eq!(o.status.code(), Some(1), "{}", output(&o));
    let text = output(&o);
    assert!(
        text.contains("not signed by a CA in the system bundle"),
        "{text}"
    );
}

const REDIS_PW: &str = "tls-acl-canary-7Qx";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user_and_a_database_index() {
    let pki = Pki::new();
    let server = tls_redis(pki.dir.path(), &pki, REDIS_PW, false);
    let pw = Secret::new(REDIS_PW);
    let tls = TlsSettings {
        ca_file: Some(pki.ca.cert.clone()),
        ..TlsSettings::default()
    };

    // Plaintext is refused: the server has no plaintext port, and its TLS port drops a client
    // that does not start a handshake.
    let err = RedisClient::connect(server.addr, Some(&pw), Duration::from_secs(3))
        .await
        .expect_err("plaintext refused");
    assert!(!format!("{err} {err:?}").contains(REDIS_PW));
    // The `default` user is off: a password alone is not enough.
    let login = Login {
        tls: Some(&tls),
        ..Login::password(Some(&pw))
    };
    let err = RedisClient::connect_with(server.addr, &login, T)
        .await
        .expect_err("default user is off");
    assert!(err.to_string().contains("refused the login"), "{err}");

    let ops = |db| Login {
        username: Some("ops"),
        password: Some(&pw),
        db,
        tls: Some(&tls),
        server: "127.0.0.1",
    };
    let c2 = RedisClient::connect_with(server.addr, &ops(2), T)
        .await
        .expect("ACL user over TLS");
    c2.ping().await.expect("ping");
    assert_eq!(
        c2.command(&["ACL".into(), "WHOAMI".into()])
            .await
            .expect("whoami"),
        "ops"
    );
    c2.command(&["SET".into(), "where".into(), "two".into()])
        .await
        .expect("set");
    let c0 = RedisClient::connect_with(server.addr, &ops(0), T)
        .await
        .expect("db 0");
    assert_eq!(
        c0.command(&["GET".into(), "where".into()])
            .await
            .expect("get"),
        "(nil)",
        "db 0 does not see db 2's key"
    );

    // An untrusted CA is a clear error, not a hang.
    let other = TlsSettings {
        ca_file: Some(pki.other_ca.cert.clone()),
        ..TlsSettings::default()
    };
    let err = RedisClient::connect_with(
        server.addr,
        &Login {
            tls: Some(&other),
            ..ops(0)
        },
        T,
    )
    .await
    .expect_err("untrusted");
    assert!(err.to_string().contains("not signed by a CA in"), "{err}");

    // The inventory way: probes and runbook steps through `opsdeck` itself.
    let work = pki.dir.path();
    std::fs::write(work.join("redis.pw"), REDIS_PW).expect("pw");
    let inv = format!(
        "[tiers.cache]\n[hosts.cache1]\ntier = \"cache\"\nlocal = {{}}\n\
         [[hosts.cache1.redis]]\nrole = \"master\"\naddress = \"127.0.0.1\"\nport = {}\n\
         username = \"ops\"\npassword_file = \"redis.pw\"\ndb = 2\ntls = {{ ca_file = {} }}\n",
        server.addr.port(),
        toml_str(&pki.ca.cert.to_string_lossy())
    );
    let path = work.join("inv.toml");
    std::fs::write(&path, inv).expect("inventory");
    let loaded = inventory::load(Some(&path)).expect("inventory loads");
    let svc = &loaded.hosts[0].services.redis[0];
    assert_eq!((svc.username.as_deref(), svc.db), (Some("ops"), 2));
    let conns = Arc::new(Connections::new());
    let c = RedisClient::connect_service(&conns, &loaded.hosts[0], svc, T)
        .await
        .expect("service over TLS");
    assert_eq!(
        c.command(&["GET".into(), "where".into()])
            .await
            .expect("get"),
        "two",
        "the service's db = 2 is selected"
    );

    let doc = health(work, &path);
    let ping = check(&doc, "cache1", "redis.ping");
    assert_eq!(ping["state"], "ok", "{ping}");

    std::fs::create_dir_all(work.join("runbooks")).expect("mkdir");
    std::fs::write(
        work.join("runbooks/redis-tls.toml"),
        "id = \"redis-tls\"\ntitle = \"redis over TLS\"\ntriggers = []\n\n[[steps]]\nid = \"get\"\n\
         title = \"read the key\"\nkind = \"diagnose\"\ntarget = { selector = \"cache1\" }\n\
         redis = [\"GET\", \"where\"]\nexpect = { regex = \"two\" }\n",
    )
    .expect("runbook");
    let o = opsdeck(work)
        .arg("-i")
        .arg(&path)
        .args(["run", "redis-tls", "--approve", "all"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    assert!(!output(&o).contains(REDIS_PW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_wants_a_client_certificate_gets_one() {
    let pki = Pki::new();
    let server = tls_redis(pki.dir.path(), &pki, REDIS_PW, true);
    let pw = Secret::new(REDIS_PW);
    let without = TlsSettings {
        ca_file: Some(pki.ca.cert.clone()),
        ..TlsSettings::default()
    };
    let with = TlsSettings {
        client_cert: Some(pki.client.cert.clone()),
        client_key: Some(pki.client.key.clone()),
        ..without.clone()
    };
    let login = |tls| Login {
        username: Some("ops"),
        password: Some(&pw),
        db: 0,
        tls: Some(tls),
        server: "127.0.0.1",
    };
    let err = RedisClient::connect_with(server.addr, &login(&without), T)
        .await
        .expect_err("no client certificate");
    let text = err.to_string();
    assert!(
        text.contains("requires a client certificate") && text.contains("tls.client_cert"),
        "{text}"
    );
    let c = RedisClient::connect_with(server.addr, &login(&with), T)
        .await
        .expect("with a client certificate");
    c.ping().await.expect("ping");
}

const DB_PW: &str = "tls-mysql-canary-3Vb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_requiring_secure_transport_is_reached_over_tls_only() {
    let pki = Pki::new();
    let db = TlsMariadb::start("tlsdb", &pki, &pki.server);
    // No REQUIRE SSL on the account: the server-wide require_secure_transport refuses.
    db.sql(&format!(
        "CREATE USER 'ops'@'%' IDENTIFIED BY '{DB_PW}'; \
         GRANT PROCESS, SLAVE MONITOR ON *.* TO 'ops'@'%';"
    ));
    let pw = Secret::new(DB_PW);

    // Plaintext is refused by the server (MariaDB 10.11 answers a plaintext login under
    // require_secure_transport with "Access denied"); the same login over TLS works below.
    let err = MysqlClient::connect(db.addr(), "ops", Some(&pw), None, T)
        .await
        .expect_err("plaintext refused");
    let text = err.to_string();
    assert!(text.contains("denied access"), "{text}");
    assert!(!format!("{text} {err:?}").contains(DB_PW));

    let tls = TlsSettings {
        ca_file: Some(pki.ca.cert.clone()),
        ..TlsSettings::default()
    };
    let c = MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &tls, T)
        .await
        .expect("TLS login");
    let r = c
        .query_table("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .expect("status");
    let version = r.rows[0][1].clone().unwrap_or_default();
    assert!(version.starts_with("TLSv1."), "{version}");

    // A CA that did not sign the server's certificate is refused.
    let other = TlsSettings {
        ca_file: Some(pki.other_ca.cert.clone()),
        ..TlsSettings::default()
    };
    let err = MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &other, T)
        .await
        .expect_err("untrusted CA");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // The inventory way: the probe and a runbook SQL step through `opsdeck`.
    let work = pki.dir.path();
    std::fs::write(work.join("db.pw"), DB_PW).expect("pw");
    let inv = format!(
        "[tiers.db]\n[hosts.db1]\ntier = \"db\"\nlocal = {{}}\n\
         [[hosts.db1.mysql]]\nrole = \"primary\"\naddress = \"127.0.0.1\"\nport = {}\n\
         user = \"ops\"\npassword_file = \"db.pw\"\ntls = {{ ca_file = {} }}\n",
        db.addr().port(),
        toml_str(&pki.ca.cert.to_string_lossy())
    );
    let path = work.join("inv.toml");
    std::fs::write(&path, inv).expect("inventory");
    let doc = health(work, &path);
    let up = check(&doc, "db1", "mysql.up");
    assert_eq!(up["state"], "ok", "{up}");

    std::fs::create_dir_all(work.join("runbooks")).expect("mkdir");
    std::fs::write(
        work.join("runbooks/sql-tls.toml"),
        "id = \"sql-tls\"\ntitle = \"sql over TLS\"\ntriggers = []\n\n[[steps]]\nid = \"tls\"\n\
         title = \"the session is encrypted\"\nkind = \"diagnose\"\n\
         target = { selector = \"db1\" }\n\
         sql = \"SHOW SESSION STATUS LIKE 'Ssl_cipher'\"\nexpect = { regex = \"Ssl_cipher\\\\s+\\\\S+\" }\n",
    )
    .expect("runbook");
    let o = opsdeck(work)
        .arg("-i")
        .arg(&path)
        .args(["run", "sql-tls", "--approve", "all"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(0), "{}", output(&o));
    assert!(!output(&o).contains(DB_PW));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_tls_checks_the_configured_server_name() {
    let pki = Pki::new();
    // The certificate names db.internal only; the server is dialled by IP address.
    let db = TlsMariadb::start("nameddb", &pki, &pki.named);
    db.sql(&format!(
        "CREATE USER 'ops'@'%' IDENTIFIED BY '{DB_PW}' REQUIRE SSL;"
    ));
    let pw = Secret::new(DB_PW);
    let by_ip = TlsSettings {
        ca_file: Some(pki.ca.cert.clone()),
        ..TlsSettings::default()
    };
    let err = MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &by_ip, T)
        .await
        .expect_err("the certificate does not name 127.0.0.1");
    assert!(
        err.to_string()
            .to_lowercase()
            .contains("not valid for name"),
        "{err}"
    );
    let named = TlsSettings {
        server_name: Some("db.internal".to_owned()),
        ..by_ip.clone()
    };
    MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &named, T)
        .await
        .expect("server_name = db.internal");
    let ca_only = TlsSettings {
        verify: TlsVerify::Ca,
        ..by_ip.clone()
    };
    // mysql_async 0.37 cannot check the CA without the name: said, not silently weakened.
    let err = MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &ca_only, T)
        .await
        .expect_err("verify = ca is refused for MySQL");
    assert!(err.to_string().contains("server_name"), "{err}");
    let none = TlsSettings {
        verify: TlsVerify::None,
        ca_file: Some(pki.other_ca.cert.clone()),
        ..TlsSettings::default()
    };
    MysqlClient::connect_tls(db.addr(), "ops", Some(&pw), None, &none, T)
        .await
        .expect("verify = none accepts anything");
}
