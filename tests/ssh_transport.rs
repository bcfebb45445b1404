//! The SSH transport against real OpenSSH sshd on loopback: through the `opsdeck` binary where
//! that is what a user runs, through the library where finer control is needed.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use assert_cmd::Command;
use opsdeck::inventory::{HostKeyPolicy, SshSpec};
use opsdeck::transport::ssh::SshHost;
use opsdeck::transport::{self, Connections, ExitStatus, Transport, TransportError};
use serde_json::Value;
use support::sshd::{SshHosts, ssh_table, stranger_key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// `opsdeck -i INV exec SEL --json-all -- CMD`: (exit code, one JSON object per host by name).
fn opsdeck_exec(inventory: &std::path::Path, selector: &str, command: &str) -> (i32, Vec<Value>) {
    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .arg("-i")
        .arg(inventory)
        .args(["exec", selector, "--json-all", "--", command])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("opsdeck runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "opsdeck printed no JSON ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().expect("exit code"),
        results.as_array().expect("array").clone(),
    )
}

fn result<'a>(results: &'a [Value], host: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no result for {host}: {results:?}"))
}

fn error_of(r: &Value) -> String {
    r["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {r}"))
        .to_owned()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// SHA256 fingerprint of host `i`'s key, as `ssh-keygen -l` prints it.
fn fingerprint(lab: &SshHosts, i: usize) -> String {
    let pubkey = lab
        .dir
        .path()
        .join("sshd")
        .join(format!("h{}_host_ed25519_key.pub", i + 1));
    let out = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(pubkey)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

// a. ---------------------------------------------------------------------------------------

#[test]
fn exec_on_three_hosts_returns_each_hosts_output_and_status() {
    let lab = SshHosts::start(3);
    let inv = lab.inventory();
    // $SSH_CONNECTION ends with the server's address: output and status differ per host.
    let cmd = "set -- $SSH_CONNECTION; echo out-$3; echo err-$3 >&2; \
               if [ $3 = 127.0.0.3 ]; then exit 3; fi";
    let (code, results) = opsdeck_exec(&inv, "all", cmd);
    assert_ne!(
        code, 0,
        "one host failed, so opsdeck must fail: {results:?}"
    );
    assert_eq!(results.len(), 3);
    for (name, ip, status) in [
        ("h1", "127.0.0.2", 0),
        ("h2", "127.0.0.3", 3),
        ("h3", "127.0.0.4", 0),
    ] {
        let r = result(&results, name);
        assert_eq!(r["stdout"], format!("out-{ip}\n"), "{r}");
        assert_eq!(r["stderr"], format!("err-{ip}\n"), "{r}");
        assert_eq!(r["status"]["code"], status, "{r}");
        assert!(r.get("error").is_none(), "{r}");
    }

    let (code, results) = opsdeck_exec(&inv, "all", "set -- $SSH_CONNECTION; echo ok-$3");
    assert_eq!(code, 0, "all hosts succeeded: {results:?}");
    assert_eq!(result(&results, "h3")["stdout"], "ok-127.0.0.4\n");
}

// b. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_commands_share_one_connection() {
    let lab = SshHosts::start(1);
    let inv = opsdeck::inventory::load(Some(&lab.inventory())).expect("inventory loads");
    let host = inv.host("h1").expect("h1");
    let conns = Connections::new();
    let conn = conns.host(host);
    let runs = (0..20).map(|n| {
        let conn = conn.clone();
        async move {
            let r = transport::run(
                conn.transport(),
                &format!("sleep 0.2; echo {n}"),
                Duration::from_secs(30),
                CancellationToken::new(),
            )
            .await;
            (n, r)
        }
    });
    for (n, r) in futures::future::join_all(runs).await {
        let out = r.unwrap_or_else(|e| panic!("command {n} failed: {e}"));
        assert_eq!(out.status, ExitStatus::Code(0));
        assert_eq!(out.stdout, format!("{n}\n"));
    }
    let log = lab.log(0);
    assert_eq!(
        count(&log, "Accepted publickey"),
        1,
        "one connection:\n{log}"
    );
    assert_eq!(
        count(&log, "Starting session"),
        20,
        "twenty sessions:\n{log}"
    );
}

// c. ---------------------------------------------------------------------------------------

#[test]
fn strict_refuses_a_changed_host_key_before_authenticating() {
    let lab = SshHosts::start(2);
    let (h1, h2) = (&lab.hosts[0], &lab.hosts[1]);
    // h1's entry sits on file line 3, after a comment and h2's entry.
    let recorded = stranger_key(lab.dir.path());
    std::fs::write(
        &lab.known_hosts,
        format!(
            "# hosts of the ssh test\n{}\n{}\n",
            h2.known_hosts_line(),
            opsdeck::lab::sshd::known_hosts_line(h1.addr, h1.port, &recorded)
        ),
    )
    .expect("known_hosts");
    let inv = lab.inventory();
    let (code, results) = opsdeck_exec(&inv, "h1", "echo should-not-run");
    assert_ne!(code, 0);
    let err = error_of(result(&results, "h1"));
    let kh = lab.known_hosts.display().to_string();
    assert!(err.contains(&format!("127.0.0.2:{}", h1.port)), "{err}");
    assert!(err.contains(&kh), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(
        err.contains(&fingerprint(&lab, 0)),
        "names the offered key: {err}"
    );
    assert!(err.contains("SHA256:"), "{err}");
    assert!(err.contains("ssh-keygen -R"), "says what to do: {err}");
    let log = lab.log(0);
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert!(!log.contains("Starting session"), "{log}");
}

#[test]
fn strict_refuses_an_unknown_host() {
    let lab = SshHosts::start(2);
    // Only h2 is known.
    std::fs::write(
        &lab.known_hosts,
        format!("{}\n", lab.hosts[1].known_hosts_line()),
    )
    .expect("known_hosts");
    let inv = lab.inventory();
    let (code, results) = opsdeck_exec(&inv, "all", "echo hi");
    assert_ne!(code, 0);
    let err = error_of(result(&results, "h1"));
    assert!(
        err.contains(&format!("127.0.0.2:{}", lab.hosts[0].port)),
        "{err}"
    );
    assert!(err.contains("unknown"), "{err}");
    assert!(
        err.contains(&lab.known_hosts.display().to_string()),
        "{err}"
    );
    assert!(err.contains(&fingerprint(&lab, 0)), "{err}");
    assert_eq!(result(&results, "h2")["stdout"], "hi\n");
    let log = lab.log(0);
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert!(!log.contains("Starting session"), "{log}");
    // Nothing was learned under strict.
    assert_eq!(
        std::fs::read_to_string(&lab.known_hosts)
            .expect("read")
            .lines()
            .count(),
        1
    );
}

// d. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_a_racing_first_key_once_and_refuses_a_changed_one() {
    let lab = SshHosts::start(1);
    let learned = lab.path("learned_known_hosts");
    let spec = SshSpec {
        known_hosts: learned.clone(),
        host_key_policy: HostKeyPolicy::AcceptNew,
        ..lab.spec(0)
    };
    let hosts: Vec<Arc<SshHost>> = (0..10)
        .map(|_| Arc::new(SshHost::new(spec.clone())))
        .collect();
    let runs = hosts.iter().map(|h| {
        transport::run(
            h.as_ref(),
            "echo first",
            Duration::from_secs(30),
            CancellationToken::new(),
        )
    });
    for r in futures::future::join_all(runs).await {
        assert_eq!(r.expect("accept-new connects").stdout, "first\n");
    }
    let text = std::fs::read_to_string(&learned).expect("known_hosts written");
    assert_eq!(text.lines().count(), 1, "exactly one line:\n{text}");
    assert_eq!(text.trim(), lab.hosts[0].known_hosts_line());
    assert_eq!(count(&lab.log(0), "Accepted publickey"), 10);

    // A changed key is still refused under accept-new, and the file is left alone.
    let changed = lab.path("changed_known_hosts");
    let h1 = &lab.hosts[0];
    let line =
        opsdeck::lab::sshd::known_hosts_line(h1.addr, h1.port, &stranger_key(lab.dir.path()));
    std::fs::write(&changed, format!("{line}\n")).expect("write");
    let host = SshHost::new(SshSpec {
        known_hosts: changed.clone(),
        ..spec
    });
    let err = transport::run(
        &host,
        "true",
        Duration::from_secs(30),
        CancellationToken::new(),
    )
    .await
    .expect_err("changed key refused");
    assert!(matches!(err, TransportError::HostKey(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("CHANGED") && msg.contains("line 1"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(&changed).expect("read"),
        format!("{line}\n")
    );
    assert_eq!(count(&lab.log(0), "Accepted publickey"), 10);
}

// e. ---------------------------------------------------------------------------------------

#[test]
fn unreachable_hosts_fail_alone_with_clear_errors() {
    let lab = SshHosts::start(2);
    // Accepts TCP connections and never says a word.
    let mute = TcpListener::bind("127.0.0.5:0").expect("bind");
    let mute_port = mute.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s);
        }
    });
    // Nothing listens here.
    let closed_port =
        opsdeck::lab::process::free_port("127.0.0.6".parse().expect("ip")).expect("free port");
    let hosts = vec![
        ("h1".to_owned(), lab.ssh_table(0, "")),
        ("h2".to_owned(), lab.ssh_table(1, "")),
        (
            "mute".to_owned(),
            ssh_table(
                "127.0.0.5",
                mute_port,
                &lab.key,
                &lab.known_hosts,
                ", connect_timeout = \"1s\"",
            ),
        ),
        (
            "closed".to_owned(),
            ssh_table("127.0.0.6", closed_port, &lab.key, &lab.known_hosts, ""),
        ),
    ];
    let inv = lab.write_inventory("unreachable.toml", &hosts);
    let (code, results) = opsdeck_exec(&inv, "all", "echo fine");
    assert_ne!(code, 0);
    for good in ["h1", "h2"] {
        let r = result(&results, good);
        assert_eq!(r["status"]["code"], 0, "{r}");
        assert_eq!(r["stdout"], "fine\n");
    }
    let err = error_of(result(&results, "mute"));
    assert!(err.contains("timed out") && err.contains("1s"), "{err}");
    assert!(err.contains(&format!("127.0.0.5:{mute_port}")), "{err}");
    let err = error_of(result(&results, "closed"));
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains(&format!("127.0.0.6:{closed_port}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_users_share_one_connect_attempt_and_its_failure() {
    let lab = SshHosts::start(1);
    // Counts the TCP connections it accepts, and never speaks.
    let mute = TcpListener::bind("127.0.0.5:0").expect("bind");
    let mute_port = mute.local_addr().expect("addr").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in mute.incoming() {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
    }
    let host = SshHost::new(SshSpec {
        address: "127.0.0.5".to_owned(),
        port: mute_port,
        connect_timeout: Duration::from_secs(1),
        ..lab.spec(0)
    });
    let runs = (0..5).map(|_| {
        transport::run(
            &host,
            "true",
            Duration::from_secs(30),
            CancellationToken::new(),
        )
    });
    for r in futures::future::join_all(runs).await {
        let err = r.expect_err("nothing answers");
        assert!(
            matches!(err, TransportError::ConnectTimeout { .. }),
            "{err:?}"
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A later user tries again.
    let err = transport::run(
        &host,
        "true",
        Duration::from_secs(30),
        CancellationToken::new(),
    )
    .await
    .expect_err("still mute");
    assert!(
        matches!(err, TransportError::ConnectTimeout { .. }),
        "{err:?}"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

// f. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshd_killed_mid_command_fails_cleanly_and_the_next_call_reconnects() {
    let mut lab = SshHosts::start(1);
    let host = Arc::new(SshHost::new(lab.spec(0)));
    let running = {
        let host = host.clone();
        tokio::spawn(async move {
            transport::run(
                host.as_ref(),
                "sleep 5; echo done",
                Duration::from_secs(30),
                CancellationToken::new(),
            )
            .await
        })
    };
    tokio::task::block_in_place(|| {
        lab.wait_for_log(0, "Starting session");
        lab.crash(0);
    });
    let r = running.await.expect("no panic");
    let err = r.expect_err("the command cannot finish without its sshd");
    assert!(
        matches!(err, TransportError::Disconnected { .. }),
        "{err:?}"
    );
    assert!(!host.is_connected().await);

    tokio::task::block_in_place(|| lab.restart(0));
    let out = transport::run(
        host.as_ref(),
        "echo again",
        Duration::from_secs(30),
        CancellationToken::new(),
    )
    .await
    .expect("reconnects");
    assert_eq!(out.stdout, "again\n");
    assert!(host.is_connected().await);
    assert_eq!(
        count(&lab.log(0), "Accepted publickey"),
        2,
        "one connection per sshd run"
    );
}

// g. ---------------------------------------------------------------------------------------

#[test]
fn jump_host_reaches_the_target_through_the_first_host() {
    let lab = SshHosts::start(2);
    let hosts = vec![
        ("a".to_owned(), lab.ssh_table(0, "")),
        ("b".to_owned(), lab.ssh_table(1, ", jump = \"a\"")),
    ];
    let inv = lab.write_inventory("jump.toml", &hosts);
    let (code, results) = opsdeck_exec(&inv, "b", "set -- $SSH_CONNECTION; echo on-$3");
    assert_eq!(code, 0, "{results:?}");
    assert_eq!(results.len(), 1);
    assert_eq!(result(&results, "b")["stdout"], "on-127.0.0.3\n");
    // A authenticated us (the jump) but ran nothing; B ran the command.
    let (a_log, b_log) = (lab.log(0), lab.log(1));
    assert_eq!(count(&a_log, "Accepted publickey"), 1, "{a_log}");
    assert!(!a_log.contains("Starting session"), "{a_log}");
    assert!(b_log.contains("Starting session"), "{b_log}");
}

#[test]
fn jump_host_checks_the_targets_host_key_too() {
    let lab = SshHosts::start(2);
    // Only the jump host is trusted.
    std::fs::write(
        &lab.known_hosts,
        format!("{}\n", lab.hosts[0].known_hosts_line()),
    )
    .expect("known_hosts");
    let hosts = vec![
        ("a".to_owned(), lab.ssh_table(0, "")),
        ("b".to_owned(), lab.ssh_table(1, ", jump = \"a\"")),
    ];
    let inv = lab.write_inventory("jump.toml", &hosts);
    let (code, results) = opsdeck_exec(&inv, "b", "echo no");
    assert_ne!(code, 0);
    let err = error_of(result(&results, "b"));
    assert!(
        err.contains(&format!("127.0.0.3:{}", lab.hosts[1].port)),
        "{err}"
    );
    assert!(err.contains("unknown"), "{err}");
    assert!(!lab.log(1).contains("Accepted publickey"));
}

// h. ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_local_reaches_a_service_on_the_hosts_loopback() {
    let lab = SshHosts::start(1);
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let echo_port = echo.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let host = SshHost::new(lab.spec(0));
    let local = host
        .forward_local("127.0.0.1", echo_port)
        .await
        .expect("forward");
    assert!(local.ip().is_loopback());
    assert_ne!(local.port(), echo_port);
    assert_eq!(
        host.forward_local("127.0.0.1", echo_port)
            .await
            .expect("again"),
        local
    );
    for msg in ["ping through sshd\n", "second connection\n"] {
        let mut s = tokio::net::TcpStream::connect(local)
            .await
            .expect("connect");
        s.write_all(msg.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
            .await
            .expect("echo answers")
            .expect("read");
        assert_eq!(buf, msg.as_bytes());
    }
    assert_eq!(count(&lab.log(0), "Accepted publickey"), 1);
}

// Cancellation closes the channel and reports Cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_command_returns_cancelled_and_keeps_the_connection() {
    let lab = SshHosts::start(1);
    let host = SshHost::new(lab.spec(0));
    let cancel = CancellationToken::new();
    let trigger = {
        let cancel = cancel.clone();
        let log = lab.hosts[0].daemon.log.clone();
        tokio::spawn(async move {
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Starting session")
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cancel.cancel();
        })
    };
    let err = host
        .exec("sleep 30", None, cancel)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, TransportError::Cancelled { .. }), "{err:?}");
    trigger.await.expect("trigger");
    let out = transport::run(
        &host,
        "echo after",
        Duration::from_secs(30),
        CancellationToken::new(),
    )
    .await
    .expect("connection still usable");
    assert_eq!(out.stdout, "after\n");
    assert_eq!(count(&lab.log(0), "Accepted publickey"), 1);
}

#[test]
fn wrong_key_is_an_auth_error_naming_what_was_tried() {
    let lab = SshHosts::start(1);
    let other = lab.path("other_key");
    opsdeck::lab::sshd::generate_client_key(&other).expect("key");
    let missing = lab.path("no_such_key");
    let table =
        support::sshd::ssh_table("127.0.0.2", lab.hosts[0].port, &other, &lab.known_hosts, "")
            .replace(
                "identity_files = [",
                &format!(
                    "identity_files = [{}, ",
                    support::sshd::toml_str(&missing.to_string_lossy())
                ),
            );
    let inv = lab.write_inventory("auth.toml", &[("h1".to_owned(), table)]);
    let (code, results) = opsdeck_exec(&inv, "h1", "true");
    assert_ne!(code, 0);
    let err = error_of(result(&results, "h1"));
    assert!(
        err.contains(&format!("root@127.0.0.2:{}", lab.hosts[0].port)),
        "{err}"
    );
    assert!(err.contains("authentication"), "{err}");
    assert!(
        err.contains(&format!("{} (rejected)", other.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} (cannot load", missing.display())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_killed_by_a_signal_reports_the_signal_and_streams_output() {
    let lab = SshHosts::start(1);
    let host = SshHost::new(lab.spec(0));
    let out = transport::run(
        &host,
        "echo before; echo warn >&2; kill -TERM $$",
        Duration::from_secs(30),
        CancellationToken::new(),
    )
    .await
    .expect("runs");
    assert_eq!(out.status, ExitStatus::Signal("TERM".to_owned()));
    assert_eq!(out.stdout, "before\n");
    assert_eq!(out.stderr, "warn\n");

    // Output streams into the sink as it comes: the command waits for a file that is only
    // created after its first line has arrived here.
    let gate = lab.path("gate");
    let cmd = format!(
        "echo first; while [ ! -e {0} ]; do sleep 0.05; done; echo second",
        gate.display()
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let exec = host.exec(&cmd, Some(tx), CancellationToken::new());
    let driver = async {
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("first line arrives while the command still runs");
        std::fs::write(&gate, "").expect("gate");
        let second = rx.recv().await;
        (first, second)
    };
    let (status, (first, second)) = tokio::join!(exec, driver);
    assert_eq!(status.expect("runs"), ExitStatus::Code(0));
    assert_eq!(
        first,
        Some(transport::OutputChunk::Stdout(b"first\n".to_vec()))
    );
    assert_eq!(
        second,
        Some(transport::OutputChunk::Stdout(b"second\n".to_vec()))
    );
}

// i. ---------------------------------------------------------------------------------------

/// `may_have_run` is false exactly when the command certainly did not start: the run engine
/// retries only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_whether_the_command_may_have_run() {
    let mut lab = SshHosts::start(1);
    let run = |host: SshHost, cmd: &'static str, timeout: Duration| async move {
        transport::run(&host, cmd, timeout, CancellationToken::new())
            .await
            .expect_err("fails")
    };
    let long = Duration::from_secs(30);

    // Certainly not run.
    let closed_port =
        opsdeck::lab::process::free_port("127.0.0.6".parse().expect("ip")).expect("free port");
    let refused = SshHost::new(SshSpec {
        address: "127.0.0.6".to_owned(),
        port: closed_port,
        ..lab.spec(0)
    });
    let e = run(refused, "true", long).await;
    assert!(matches!(e, TransportError::Connect { .. }), "{e:?}");
    assert!(!e.may_have_run(), "{e:?}");

    let mute = TcpListener::bind("127.0.0.5:0").expect("bind");
    let mute_port = mute.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in mute.incoming() {
            held.push(s);
        }
    });
    let mute_spec = SshSpec {
        address: "127.0.0.5".to_owned(),
        port: mute_port,
        connect_timeout: Duration::from_millis(300),
        ..lab.spec(0)
    };
    let e = run(SshHost::new(mute_spec.clone()), "true", long).await;
    assert!(matches!(e, TransportError::ConnectTimeout { .. }), "{e:?}");
    assert!(!e.may_have_run(), "{e:?}");
    // The command's own timeout running out while still connecting: nothing ran.
    let e = run(
        SshHost::new(SshSpec {
            connect_timeout: Duration::from_secs(20),
            ..mute_spec
        }),
        "true",
        Duration::from_millis(300),
    )
    .await;
    assert!(
        matches!(e, TransportError::Timeout { started: false, .. }),
        "{e:?}"
    );
    assert!(!e.may_have_run(), "{e:?}");
    assert!(e.to_string().contains("nothing ran"), "{e}");

    let nobody_known = lab.path("empty_known_hosts");
    std::fs::write(&nobody_known, "").expect("write");
    let e = run(
        SshHost::new(SshSpec {
            known_hosts: nobody_known,
            ..lab.spec(0)
        }),
        "true",
        long,
    )
    .await;
    assert!(matches!(e, TransportError::HostKey(_)), "{e:?}");
    assert!(!e.may_have_run(), "{e:?}");

    let stranger = lab.path("stranger_key");
    opsdeck::lab::sshd::generate_client_key(&stranger).expect("key");
    let e = run(
        SshHost::new(SshSpec {
            identity_files: vec![stranger],
            ..lab.spec(0)
        }),
        "true",
        long,
    )
    .await;
    assert!(matches!(e, TransportError::Auth { .. }), "{e:?}");
    assert!(!e.may_have_run(), "{e:?}");

    // May have run: the outcome is unknown.
    let e = run(
        SshHost::new(lab.spec(0)),
        "sleep 30",
        Duration::from_millis(500),
    )
    .await;
    assert!(
        matches!(e, TransportError::Timeout { started: true, .. }),
        "{e:?}"
    );
    assert!(e.may_have_run(), "{e:?}");

    let host = SshHost::new(lab.spec(0));
    let cancel = CancellationToken::new();
    let trigger = {
        let cancel = cancel.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        }
    };
    let (r, ()) = tokio::join!(host.exec("sleep 30", None, cancel), trigger);
    let e = r.expect_err("cancelled");
    assert!(
        matches!(e, TransportError::Cancelled { started: true, .. }),
        "{e:?}"
    );
    assert!(e.may_have_run(), "{e:?}");

    let host = Arc::new(SshHost::new(lab.spec(0)));
    let sessions = count(&lab.log(0), "Starting session");
    let running = {
        let host = host.clone();
        tokio::spawn(async move {
            transport::run(host.as_ref(), "sleep 5", long, CancellationToken::new()).await
        })
    };
    tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(&lab.log(0), "Starting session") == sessions {
            assert!(
                std::time::Instant::now() < deadline,
                "the session never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lab.crash(0);
    });
    let e = running.await.expect("no panic").expect_err("sshd gone");
    assert!(matches!(e, TransportError::Disconnected { .. }), "{e:?}");
    assert!(e.may_have_run(), "{e:?}");
}
