//! Where the inventory is silent, `~/.ssh/config` decides (alias, user, port, identity file,
//! ProxyJump); keys can come from ssh-agent. Against real sshd and a real ssh-agent.

mod support;

use std::process::Command as Proc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use support::sshd::{SshHosts, toml_str};

fn opsdeck() -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("bin");
    c.env_remove("OPSDECK_INVENTORY")
        .env_remove("SSH_AUTH_SOCK");
    c
}

#[test]
fn ssh_config_alias_user_port_identity_and_proxyjump_are_honoured() {
    let hosts = SshHosts::start(2);
    let cfg = hosts.path("ssh_config");
    std::fs::write(
        &cfg,
        format!(
            "Host web-alias\n  HostName {a}\n  Port {pa}\n  User root\n  IdentityFile {key}\n\n\
             Host behind\n  HostName {b}\n  Port {pb}\n  User root\n  IdentityFile {key}\n  ProxyJump web-alias\n",
            a = hosts.hosts[0].addr,
            pa = hosts.hosts[0].port,
            b = hosts.hosts[1].addr,
            pb = hosts.hosts[1].port,
            key = hosts.key.display(),
        ),
    )
    .expect("ssh config");
    let kh = toml_str(&hosts.known_hosts.to_string_lossy());
    let inv = hosts.path("alias.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.web1]\ntier = \"app\"\nssh = {{ host = \"web-alias\", known_hosts = {kh}, agent = false }}\n\
             [hosts.inner]\ntier = \"app\"\nssh = {{ host = \"behind\", known_hosts = {kh}, agent = false }}\n"
        ),
    )
    .expect("inventory");

    // The resolved topology shows what ssh_config said.
    let out = opsdeck()
        .env("OPSDECK_SSH_CONFIG", &cfg)
        .args(["-i", inv.to_str().expect("utf8"), "inventory", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let web1 = &json["hosts"][0]["transport"];
    assert_eq!(web1["address"], hosts.hosts[0].addr.to_string());
    assert_eq!(web1["port"], hosts.hosts[0].port);
    assert_eq!(web1["user"], "root");
    assert_eq!(
        web1["identity_files"][0],
        hosts.key.to_string_lossy().as_ref()
    );
    assert_eq!(
        json["hosts"][1]["transport"]["jump"]["address"],
        hosts.hosts[0].addr.to_string(),
        "ProxyJump from ssh_config"
    );

    // And commands reach both, the second through the first.
    let out = opsdeck()
        .env("OPSDECK_SSH_CONFIG", &cfg)
        .args([
            "-i",
            inv.to_str().expect("utf8"),
            "exec",
            "all",
            "--json-all",
            "--",
            "echo $SSH_CONNECTION",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let server_addr = |i: usize| {
        json[i]["stdout"]
            .as_str()
            .and_then(|s| s.split_whitespace().nth(2))
            .map(str::to_owned)
    };
    assert_eq!(server_addr(0), Some(hosts.hosts[0].addr.to_string()));
    assert_eq!(server_addr(1), Some(hosts.hosts[1].addr.to_string()));
    // The jump host ran web1's command only; inner's ran on inner.
    assert_eq!(
        hosts.log(0).matches("Starting session").count(),
        1,
        "{}",
        hosts.log(0)
    );
    assert_eq!(
        hosts.log(1).matches("Starting session").count(),
        1,
        "{}",
        hosts.log(1)
    );
}

#[test]
fn keys_held_by_ssh_agent_authenticate() {
    let hosts = SshHosts::start(1);
    let sock = hosts.path("agent.sock");
    let mut agent = Proc::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent socket never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Proc::new("ssh-add")
        .arg(&hosts.key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("ssh-add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    // No identity file: only the agent holds the key.
    let inv = hosts.path("agent.toml");
    let h = &hosts.hosts[0];
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.h1]\ntier = \"app\"\nssh = {{ host = \"{}\", port = {}, user = \"root\", agent = true, known_hosts = {} }}\n",
            h.addr,
            h.port,
            toml_str(&hosts.known_hosts.to_string_lossy())
        ),
    )
    .expect("inventory");
    let run = |with_agent: bool| {
        let mut c = opsdeck();
        c.env("HOME", hosts.dir.path())
            .env("OPSDECK_SSH_CONFIG", "/dev/null");
        if with_agent {
            c.env("SSH_AUTH_SOCK", &sock);
        }
        c.args([
            "-i",
            inv.to_str().expect("utf8"),
            "exec",
            "all",
            "--json-all",
            "--timeout",
            "10s",
            "--",
            "echo via-agent",
        ])
        .output()
        .expect("runs")
    };
    let out = run(true);
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("via-agent"));
    assert!(
        hosts.log(0).contains("Accepted publickey"),
        "{}",
        hosts.log(0)
    );
    // Without the agent there is nothing to authenticate with: a clear error, no panic.
    let out = run(false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("authentication") || text.contains("agent"),
        "{text}"
    );
}
