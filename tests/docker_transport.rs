//! The Docker transport against a real dockerd on this machine. Images are imported from this
//! machine's busybox and redis-server; every container uses the host network.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use assert_cmd::Command;
use opsdeck::inventory::{ContainerTarget, DockerSpec};
use opsdeck::lab::process::{free_port, wait_for_tcp};
use opsdeck::transport::docker::{DockerClients, DockerHost};
use opsdeck::transport::{self, ExitStatus, Transport, TransportError};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use support::docker::{ContainerSpec, redis_image, unique_name};

/// A long-running container body that exits promptly on SIGTERM (sh as PID 1 ignores it
/// otherwise).
fn idle(prelude: &str) -> String {
    format!("trap 'exit 0' TERM; {prelude} while true; do sleep 1 & wait $!; done")
}

fn host_named(name: &str, clients: &DockerClients) -> DockerHost {
    DockerHost::new(
        DockerSpec {
            endpoint: None,
            context: None,
            tls: None,
            ssh: None,
            target: ContainerTarget::Name(name.to_owned()),
        },
        clients,
    )
}

fn host_compose(project: &str, service: &str, clients: &DockerClients) -> DockerHost {
    DockerHost::new(
        DockerSpec {
            endpoint: None,
            context: None,
            tls: None,
            ssh: None,
            target: ContainerTarget::Compose {
                project: project.to_owned(),
                service: service.to_owned(),
            },
        },
        clients,
    )
}

async fn run(host: &DockerHost, cmd: &str) -> Result<transport::ExecOutcome, TransportError> {
    transport::run(host, cmd, Duration::from_secs(30), CancellationToken::new()).await
}

#[tokio::test]
async fn cli_exec_reaches_containers_by_name_and_by_compose_labels_next_to_a_local_host() {
    let by_name = ContainerSpec::busybox("byname", &idle("echo c1 > /etc/opsdeck-who;"))
        .start()
        .await;
    let project = unique_name("proj");
    let _by_labels = ContainerSpec::busybox("bylabel", &idle("echo c2 > /etc/opsdeck-who;"))
        .compose(&project, "cache")
        .start()
        .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        format!(
            r#"
[tiers.cache]
[tiers.ops]

[hosts.c1]
tier = "cache"
docker = {{ container = "{name}" }}

[hosts.c2]
tier = "cache"
docker = {{ project = "{project}", service = "cache" }}

[hosts.l1]
tier = "ops"
local = {{}}
"#,
            name = by_name.name
        ),
    )
    .expect("write inventory");

    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .args(["-i"])
        .arg(&inv)
        .args(["exec", "all", "--json-all", "--"])
        .arg("cat /etc/opsdeck-who 2>/dev/null || echo local; echo err >&2; exit 4")
        .output()
        .expect("run opsdeck");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing command fails opsdeck; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let results = results.as_array().expect("an array of host results");
    assert_eq!(results.len(), 3);
    let by_host = |h: &str| {
        results
            .iter()
            .find(|r| r["host"] == h)
            .unwrap_or_else(|| panic!("no result for {h}: {results:?}"))
    };
    for (host, who, transport) in [
        ("c1", "c1\n", format!("docker {}", by_name.name)),
        ("c2", "c2\n", format!("docker {project}/cache")),
        ("l1", "local\n", "local".to_owned()),
    ] {
        let r = by_host(host);
        assert_eq!(r["error"], Value::Null, "{host}: {r}");
        assert_eq!(r["stdout"], who, "{host}: {r}");
        assert_eq!(r["stderr"], "err\n", "{host}: {r}");
        assert_eq!(r["status"]["code"], 4, "{host}: {r}");
        assert_eq!(r["transport"], transport.as_str(), "{host}: {r}");
    }
}

#[tokio::test]
async fn exec_streams_all_output_and_reports_success() {
    let c = ContainerSpec::busybox("stream", &idle("")).start().await;
    let clients = DockerClients::default();
    let host = host_named(&c.name, &clients);
    // ~190 KB: many frames of the engine's multiplexed stream.
    let out = run(&host, "seq 1 30000; seq 1 5 >&2").await.expect("exec");
    assert_eq!(out.status, ExitStatus::Code(0));
    let expected = (1..=30000).fold(String::new(), |mut s, i| {
        s.push_str(&i.to_string());
        s.push('\n');
        s
    });
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "stdout differs from seq 1 30000");
    assert_eq!(out.stderr, "1\n2\n3\n4\n5\n");
    // A second exec reuses the cached client.
    let again = run(&host, "exit 0").await.expect("second exec");
    assert!(again.status.success());
}

#[tokio::test]
async fn cancelling_an_exec_returns_cancelled() {
    let c = ContainerSpec::busybox("cancel", &idle("")).start().await;
    let clients = DockerClients::default();
    let host = host_named(&c.name, &clients);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let r = host.exec("sleep 60", None, cancel).await;
    assert!(
        matches!(r, Err(TransportError::Cancelled { .. })),
        "expected Cancelled, got {r:?}"
    );
}

#[tokio::test]
async fn lifecycle_stop_start_restart_health_logs_and_stats() {
    let c = ContainerSpec::busybox(
        "life",
        &idle("echo hello-from-container; echo oops-on-stderr >&2; touch /tmp/ok;"),
    )
    .healthcheck("test -f /tmp/ok")
    .start()
    .await;
    let clients = DockerClients::default();
    let host = host_named(&c.name, &clients);

    let st = host.inspect().await.expect("inspect");
    assert!(st.running);
    assert_eq!(st.state, "running");
    assert_eq!(st.name, c.name);
    assert_eq!(st.id, c.id);

    // Health: starting until the first check passes, then healthy.
    let mut health = None;
    for _ in 0..300 {
        health = host.inspect().await.expect("inspect").health;
        if health.as_deref() == Some("healthy") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health.as_deref(), Some("healthy"));

    let logs = host.logs_tail(10).await.expect("logs");
    assert!(logs.contains("hello-from-container\n"), "logs: {logs:?}");
    assert!(logs.contains("oops-on-stderr\n"), "logs: {logs:?}");
    let one = host.logs_tail(1).await.expect("logs");
    assert_eq!(one.lines().count(), 1, "tail 1: {one:?}");

    let stats = host.stats_once().await.expect("stats");
    let used = stats.mem_used_bytes.expect("a memory figure");
    assert!(used > 0, "{stats:?}");
    if let Some(limit) = stats.mem_limit_bytes {
        assert!(limit >= used, "{stats:?}");
    }

    host.stop(Duration::from_secs(5)).await.expect("stop");
    let st = host.inspect().await.expect("inspect after stop");
    assert!(!st.running, "{st:?}");
    assert_eq!(st.state, "exited");
    assert_eq!(st.exit_code, Some(0), "the TERM trap exits 0: {st:?}");
    let err = run(&host, "true")
        .await
        .expect_err("exec on a stopped container");
    let msg = err.to_string();
    assert!(
        msg.contains("not running") && msg.contains("exited") && msg.contains(&c.name),
        "{msg}"
    );

    host.start().await.expect("start");
    let st = host.inspect().await.expect("inspect after start");
    assert!(st.running, "{st:?}");
    let started_before = st.started_at.clone().expect("started_at");

    host.restart(Duration::from_secs(5)).await.expect("restart");
    let st = host.inspect().await.expect("inspect after restart");
    assert!(st.running, "{st:?}");
    assert_eq!(st.state, "running");
    let started_after = st.started_at.expect("started_at");
    assert_ne!(
        started_before, started_after,
        "restart starts the process anew"
    );
    let out = run(&host, "echo alive").await.expect("exec after restart");
    assert_eq!(out.stdout, "alive\n");
}

#[tokio::test]
async fn redis_in_an_imported_image_answers_ping_on_the_host_network() {
    let image = redis_image();
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("free port");
    let mut spec = ContainerSpec::busybox("redis", "");
    spec.image = image.to_owned();
    spec.cmd = [
        "/usr/bin/redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .map(String::from)
    .to_vec();
    let c = spec.start().await;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_for_tcp(addr, Duration::from_secs(30)).unwrap_or_else(|e| {
        panic!("redis in container {}: {e}", c.name);
    });
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"PING\r\n").expect("send");
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).expect("reply");
    assert_eq!(&buf, b"+PONG\r\n");

    // The same container through the transport: the binary is the one from this machine.
    let clients = DockerClients::default();
    let out = run(
        &host_named(&c.name, &clients),
        "/usr/bin/redis-server --version",
    )
    .await
    .expect("exec");
    assert!(out.stdout.starts_with("Redis server v="), "{out:?}");
}

#[tokio::test]
async fn missing_containers_are_named_in_the_error() {
    support::docker::engine();
    let clients = DockerClients::default();

    let name = unique_name("missing");
    let err = run(&host_named(&name, &clients), "true")
        .await
        .expect_err("no such container");
    let msg = err.to_string();
    assert!(msg.contains(&name) && msg.contains("docker ps -a"), "{msg}");
    let err = host_named(&name, &clients)
        .inspect()
        .await
        .expect_err("inspect");
    assert!(err.to_string().contains(&name), "{err}");

    let project = unique_name("noproj");
    let err = run(&host_compose(&project, "web", &clients), "true")
        .await
        .expect_err("no compose container");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("project {project:?}")) && msg.contains("service \"web\""),
        "{msg}"
    );

    // Through the CLI: the error is reported for the host, and opsdeck fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        format!("[tiers.t]\n[hosts.gone]\ntier = \"t\"\ndocker = {{ container = \"{name}\" }}\n"),
    )
    .expect("write inventory");
    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .arg("-i")
        .arg(&inv)
        .args(["exec", "gone", "--json-all", "--", "true"])
        .output()
        .expect("run opsdeck");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let error = v[0]["error"].as_str().expect("an error for the host");
    assert!(error.contains(&name), "{error}");
}

#[tokio::test]
async fn explicit_endpoints_work_and_a_dead_one_says_to_check_dockerd() {
    let c = ContainerSpec::busybox("endpoint", &idle("")).start().await;
    let clients = DockerClients::default();
    let host = DockerHost::new(
        DockerSpec {
            endpoint: Some("unix:///var/run/docker.sock".to_owned()),
            context: None,
            tls: None,
            ssh: None,
            target: ContainerTarget::Name(c.name.clone()),
        },
        &clients,
    );
    let out = run(&host, "echo via-endpoint").await.expect("exec");
    assert_eq!(out.stdout, "via-endpoint\n");

    let dead = DockerHost::new(
        DockerSpec {
            endpoint: Some("unix:///nonexistent/opsdeck-docker.sock".to_owned()),
            context: None,
            tls: None,
            ssh: None,
            target: ContainerTarget::Name(c.name.clone()),
        },
        &clients,
    );
    let msg = run(&dead, "true")
        .await
        .expect_err("dead endpoint")
        .to_string();
    assert!(
        msg.contains("is dockerd running") && msg.contains("/nonexistent/opsdeck-docker.sock"),
        "{msg}"
    );
}

#[tokio::test]
async fn compose_targeting_prefers_the_running_container_of_a_service() {
    let project = unique_name("pref");
    let running = ContainerSpec::busybox("pref-run", &idle("echo running > /etc/opsdeck-who;"))
        .compose(&project, "worker")
        .start()
        .await;
    // Created after the running one, so the engine lists it first.
    let exited = ContainerSpec::busybox("pref-exited", "exit 3")
        .compose(&project, "worker")
        .start()
        .await;
    let clients = DockerClients::default();
    let exited_host = host_named(&exited.name, &clients);
    let mut st = exited_host.inspect().await.expect("inspect");
    for _ in 0..100 {
        if !st.running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        st = exited_host.inspect().await.expect("inspect");
    }
    assert_eq!((st.running, st.exit_code), (false, Some(3)), "{st:?}");

    let host = host_compose(&project, "worker", &clients);
    assert_eq!(host.resolve().await.expect("resolve"), running.id);
    let out = run(&host, "cat /etc/opsdeck-who").await.expect("exec");
    assert_eq!(out.stdout, "running\n");

    // With the running one stopped, the service still resolves, and exec says why it fails.
    host_named(&running.name, &clients)
        .stop(Duration::from_secs(5))
        .await
        .expect("stop");
    let msg = run(&host, "true")
        .await
        .expect_err("nothing running")
        .to_string();
    assert!(
        msg.contains("not running") && msg.contains("exited"),
        "{msg}"
    );
}

#[test]
fn lab_setup_is_idempotent() {
    support::docker::engine();
    let state = tempfile::tempdir().expect("tempdir");
    let again = opsdeck::lab::docker::ensure_dockerd(state.path()).expect("ensure_dockerd");
    assert_eq!(again, opsdeck::lab::docker::EngineState::AlreadyRunning);
    assert!(
        !state.path().join("dockerd.log").exists(),
        "no second dockerd was started"
    );
    opsdeck::lab::docker::build_image(support::docker::BUSYBOX_IMAGE, &[])
        .expect("building an existing tag is a no-op");
    assert!(opsdeck::lab::docker::image_exists(support::docker::BUSYBOX_IMAGE).expect("inspect"));
    let err = opsdeck::lab::docker::build_image(
        "opsdeck-test-bad:1",
        &[std::path::Path::new("relative/bin")],
    )
    .expect_err("relative path");
    assert!(err.to_string().contains("relative/bin"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Engines elsewhere: DOCKER_HOST=ssh://, docker contexts, tcp:// with TLS
// ---------------------------------------------------------------------------------------------

/// `opsdeck exec HOST --json-all -- cat /etc/opsdeck-who` with exactly `env` (plus a PATH holding
/// no `ssh` program), returning the host's result.
fn exec_who(
    work: &std::path::Path,
    inv: &std::path::Path,
    host: &str,
    env: &[(&str, String)],
) -> Value {
    let empty_path = work.join("no-programs");
    std::fs::create_dir_all(&empty_path).expect("mkdir");
    let mut cmd = Command::cargo_bin("opsdeck").expect("opsdeck binary");
    cmd.env_clear()
        .env("PATH", &empty_path)
        .env("HOME", work)
        .env("OPSDECK_LOG_DIR", work.join("logs"))
        .arg("-i")
        .arg(inv)
        .args(["exec", host, "--json-all", "--", "cat /etc/opsdeck-who"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run opsdeck");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v[0].clone()
}

/// An inventory whose SSH defaults (key, known_hosts) reach the test sshd, with one container
/// host `c` described by `docker_table`.
fn ssh_docker_inventory(ssh: &support::sshd::SshHosts, docker_table: &str) -> std::path::PathBuf {
    let text = format!(
        "[defaults.ssh]\nidentity_files = [{}]\nknown_hosts = {}\nagent = false\n\
         [tiers.app]\n[hosts.c]\ntier = \"app\"\ndocker = {docker_table}\n",
        support::sshd::toml_str(&ssh.key.to_string_lossy()),
        support::sshd::toml_str(&ssh.known_hosts.to_string_lossy()),
    );
    let path = ssh.path(&format!("docker-{}.toml", unique_name("inv")));
    std::fs::write(&path, text).expect("inventory");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_host_ssh_reaches_the_engine_over_opsdeck_s_own_ssh_connection() {
    let c = ContainerSpec::busybox("overssh", &idle("echo over-ssh > /etc/opsdeck-who;"))
        .start()
        .await;
    let mut ssh = support::sshd::SshHosts::start(1);
    let inv = ssh_docker_inventory(&ssh, &format!("{{ container = \"{}\" }}", c.name));
    let docker_host = format!("ssh://root@{}:{}", ssh.hosts[0].addr, ssh.hosts[0].port);
    let work = tempfile::tempdir().expect("tempdir");
    let env = [("DOCKER_HOST", docker_host.clone())];
    // No `ssh` program on PATH: the engine is reached through opsdeck's own SSH connection
    // (a direct-streamlocal channel to the remote /var/run/docker.sock).
    let r = exec_who(work.path(), &inv, "c", &env);
    assert_eq!(r["error"], Value::Null, "{r}");
    assert_eq!(r["stdout"], "over-ssh\n", "{r}");
    assert_eq!(r["status"]["code"], 0, "{r}");

    // With sshd gone the engine is out of reach, and the error says it is the SSH leg.
    ssh.stop(0);
    let r = exec_who(work.path(), &inv, "c", &env);
    let error = r["error"].as_str().expect("an error");
    assert!(
        error.contains(&docker_host) && error.contains("over ssh") && error.contains("root@"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_contexts_are_used_by_name_and_as_the_current_context() {
    let c = ContainerSpec::busybox("context", &idle("echo from-context > /etc/opsdeck-who;"))
        .start()
        .await;
    let ssh = support::sshd::SshHosts::start(1);
    let config = tempfile::tempdir().expect("tempdir");
    let context = |name: &str, host: &str| {
        let dir = config
            .path()
            .join("contexts/meta")
            .join(opsdeck::transport::docker::endpoint::context_id(name));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("meta.json"),
            serde_json::json!({
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
            })
            .to_string(),
        )
        .expect("meta.json");
    };
    context(
        "remote",
        &format!("ssh://root@{}:{}", ssh.hosts[0].addr, ssh.hosts[0].port),
    );
    context("here", "unix:///var/run/docker.sock");
    std::fs::write(
        config.path().join("config.json"),
        r#"{"currentContext": "here"}"#,
    )
    .expect("config.json");
    let env = [(
        "DOCKER_CONFIG",
        config.path().to_string_lossy().into_owned(),
    )];
    let work = tempfile::tempdir().expect("tempdir");

    // By name in the inventory: the ssh:// context.
    let by_name = ssh_docker_inventory(
        &ssh,
        &format!("{{ context = \"remote\", container = \"{}\" }}", c.name),
    );
    let r = exec_who(work.path(), &by_name, "c", &env);
    assert_eq!(r["stdout"], "from-context\n", "{r}");

    // No endpoint, no DOCKER_HOST: the current context of config.json.
    let current = ssh_docker_inventory(&ssh, &format!("{{ container = \"{}\" }}", c.name));
    let r = exec_who(work.path(), &current, "c", &env);
    assert_eq!(r["stdout"], "from-context\n", "{r}");

    // A context that does not exist is an inventory error with its position.
    let missing = ssh_docker_inventory(
        &ssh,
        &format!("{{ context = \"nope\", container = \"{}\" }}", c.name),
    );
    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .env("DOCKER_CONFIG", config.path())
        .env("OPSDECK_LOG_DIR", work.path().join("logs"))
        .arg("-i")
        .arg(&missing)
        .arg("check")
        .output()
        .expect("run opsdeck");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("docker context \"nope\" not found") && text.contains(":8:"),
        "{text}"
    );
}

/// A TLS endpoint in front of the local engine socket that, like `dockerd --tlsverify`, wants
/// a client certificate signed by the test CA.
async fn tls_engine_proxy(pki: &support::tls::Pki) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server.cert)
        .expect("server cert")
        .collect::<Result<_, _>>()
        .expect("server cert");
    let key = PrivateKeyDer::from_pem_file(&pki.server.key).expect("server key");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca.cert).expect("ca") {
        roots.add(c.expect("ca")).expect("ca");
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_host_tcp_with_tls_verify_uses_the_cert_path() {
    let c = ContainerSpec::busybox("tlsengine", &idle("echo over-tls > /etc/opsdeck-who;"))
        .start()
        .await;
    let pki = support::tls::Pki::new();
    let addr = tls_engine_proxy(&pki).await;
    let certs = pki.path("docker-certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    for (from, to) in [
        (&pki.ca.cert, "ca.pem"),
        (&pki.client.cert, "cert.pem"),
        (&pki.client.key, "key.pem"),
    ] {
        std::fs::copy(from, certs.join(to)).expect("copy");
    }
    let wrong = pki.path("wrong-certs");
    std::fs::create_dir_all(&wrong).expect("mkdir");
    std::fs::copy(&pki.other_ca.cert, wrong.join("ca.pem")).expect("copy");
    let inv = pki.path("inv.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.c]\ntier = \"app\"\ndocker = {{ container = \"{}\" }}\n",
            c.name
        ),
    )
    .expect("inventory");
    let work = pki.path("work");
    let docker_host = format!("tcp://{addr}");
    let run = move |env: Vec<(&'static str, String)>| {
        let (work, inv) = (work.clone(), inv.clone());
        tokio::task::spawn_blocking(move || exec_who(&work, &inv, "c", &env))
    };

    let r = run(vec![
        ("DOCKER_HOST", docker_host.clone()),
        ("DOCKER_TLS_VERIFY", "1".to_owned()),
        ("DOCKER_CERT_PATH", certs.to_string_lossy().into_owned()),
    ])
    .await
    .expect("join");
    assert_eq!(r["error"], Value::Null, "{r}");
    assert_eq!(r["stdout"], "over-tls\n", "{r}");

    // A CA that did not sign the engine's certificate: refused, and said so.
    let r = run(vec![
        ("DOCKER_HOST", docker_host.clone()),
        ("DOCKER_TLS_VERIFY", "1".to_owned()),
        ("DOCKER_CERT_PATH", wrong.to_string_lossy().into_owned()),
    ])
    .await
    .expect("join");
    let error = r["error"].as_str().expect("an error");
    assert!(error.contains("not signed by a CA in"), "{error}");

    // Without DOCKER_TLS_VERIFY the client speaks plain HTTP to a TLS port: no answer, an
    // error (TLS is never silently assumed or dropped).
    let r = run(vec![("DOCKER_HOST", docker_host)]).await.expect("join");
    assert!(r["error"].is_string(), "{r}");
}
