//! OpenSSH user certificates: sshd trusts a user CA (`TrustedUserCAKeys`) and accepts nothing
//! else (`AuthorizedKeysFile none`). opsdeck logs in with a certificate next to the key, one
//! named by ssh_config's `CertificateFile`, one held by ssh-agent, and one from a file paired
//! with a key only the agent holds (found through `IdentityAgent`). Against real sshd and a
//! real ssh-agent.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use support::sshd::{SshHosts, keygen, new_key, toml_str};

/// One sshd that accepts only certificates signed by `ca`.
struct CertHost {
    hosts: SshHosts,
    ca: PathBuf,
}

impl CertHost {
    fn start() -> CertHost {
        let mut hosts = SshHosts::start(1);
        let ca = hosts.path("user_ca");
        new_key(&ca, "ed25519");
        let ca_pub = format!("{}.pub", ca.display());
        hosts.reconfigure_with(
            0,
            &["AuthorizedKeysFile "],
            &[
                "AuthorizedKeysFile none".to_owned(),
                format!("TrustedUserCAKeys {ca_pub}"),
            ],
        );
        CertHost { hosts, ca }
    }

    /// A new key in `dir/name` with, when `principal` is given, a certificate for it next to
    /// it (`name-cert.pub`) valid for an hour.
    fn key(&self, name: &str, principal: Option<&str>) -> PathBuf {
        let dir = self.hosts.path("users");
        std::fs::create_dir_all(&dir).expect("users dir");
        let key = dir.join(name);
        new_key(&key, "ed25519");
        if let Some(p) = principal {
            keygen(&[
                "-q",
                "-s",
                &self.ca.to_string_lossy(),
                "-I",
                &format!("opsdeck-test-{name}"),
                "-n",
                p,
                "-V",
                "-5m:+1h",
                &format!("{}.pub", key.display()),
            ]);
        }
        key
    }

    fn cert_of(key: &Path) -> PathBuf {
        PathBuf::from(format!("{}-cert.pub", key.display()))
    }

    fn inventory(&self, file: &str, ssh_extra: &str) -> PathBuf {
        let h = &self.hosts.hosts[0];
        let path = self.hosts.path(file);
        std::fs::write(
            &path,
            format!(
                "[tiers.app]\n[hosts.h1]\ntier = \"app\"\nssh = {{ host = \"{}\", port = {}, user = \"root\", known_hosts = {}{ssh_extra} }}\n",
                h.addr,
                h.port,
                toml_str(&self.hosts.known_hosts.to_string_lossy())
            ),
        )
        .expect("inventory");
        path
    }

    /// `opsdeck exec all -- echo cert-ok`: (exit code, stdout).
    fn exec(&self, inventory: &Path, ssh_config: &Path, agent: Option<&Path>) -> (i32, String) {
        let mut c = Command::cargo_bin("opsdeck").expect("bin");
        c.env_remove("OPSDECK_INVENTORY")
            .env_remove("SSH_AUTH_SOCK")
            .env("HOME", self.hosts.dir.path())
            .env("OPSDECK_SSH_CONFIG", ssh_config);
        if let Some(sock) = agent {
            c.env("SSH_AUTH_SOCK", sock);
        }
        let out = c
            .args([
                "-i",
                inventory.to_str().expect("utf8"),
                "exec",
                "all",
                "--json",
                "--timeout",
                "15s",
                "--",
                "echo cert-ok",
            ])
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn log(&self) -> String {
        self.hosts.log(0)
    }
}

struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Proc::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent socket never appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, sock }
    }

    /// `ssh-add KEY` (which adds `KEY-cert.pub` too when it is there).
    fn add(&self, key: &Path) -> String {
        let out = Proc::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .output()
            .expect("ssh-add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_certificate_next_to_the_key_logs_in_where_only_certificates_are_accepted() {
    let host = CertHost::start();
    let no_config = Path::new("/dev/null");

    // A key the server has never seen, without a certificate: refused, and the error says
    // what was tried and what the server wants.
    let bare = host.key("bare", None);
    let inv = host.inventory(
        "bare.toml",
        &format!(
            ", identity_files = [{}], agent = false",
            toml_str(&bare.to_string_lossy())
        ),
    );
    let (code, out) = host.exec(&inv, no_config, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("authentication"), "{out}");
    assert!(out.contains("bare (rejected)"), "{out}");
    assert!(out.contains("TrustedUserCAKeys"), "{out}");

    // The same kind of key with `KEY-cert.pub` beside it: accepted, as a certificate.
    let key = host.key("id_ed25519", Some("root"));
    let inv = host.inventory(
        "beside.toml",
        &format!(
            ", identity_files = [{}], agent = false",
            toml_str(&key.to_string_lossy())
        ),
    );
    let (code, out) = host.exec(&inv, no_config, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cert-ok"), "{out}");
    assert!(
        host.log().contains("ED25519-CERT") && host.log().contains("opsdeck-test-id_ed25519"),
        "{}",
        host.log()
    );

    // A certificate for another principal: refused, and the error says why.
    let other = host.key("other", Some("somebody-else"));
    let inv = host.inventory(
        "other.toml",
        &format!(
            ", identity_files = [{}], agent = false",
            toml_str(&other.to_string_lossy())
        ),
    );
    let (code, out) = host.exec(&inv, no_config, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("principals (somebody-else) do not include \\\"root\\\""),
        "{out}"
    );
}

#[test]
fn a_certificate_named_by_ssh_config_certificate_file_logs_in() {
    let host = CertHost::start();
    let key = host.key("work", Some("root"));
    // The certificate lives elsewhere, named with a token (%r: the remote user).
    let certs = host.hosts.path("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::rename(CertHost::cert_of(&key), certs.join("root-cert.pub")).expect("move cert");
    let h = &host.hosts.hosts[0];
    let config = host.hosts.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host certhost\n  HostName {}\n  Port {}\n  User root\n  IdentityFile {}\n\
             \x20 CertificateFile {}/%r-cert.pub\n  IdentitiesOnly yes\n",
            h.addr,
            h.port,
            key.display(),
            certs.display()
        ),
    )
    .expect("ssh_config");
    let inv = host.hosts.path("alias.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.h1]\ntier = \"app\"\nssh = {{ host = \"certhost\", known_hosts = {}, agent = false }}\n",
            toml_str(&host.hosts.known_hosts.to_string_lossy())
        ),
    )
    .expect("inventory");
    let (code, out) = host.exec(&inv, &config, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cert-ok"), "{out}");
    assert!(host.log().contains("opsdeck-test-work"), "{}", host.log());
}

#[test]
fn certificates_held_by_ssh_agent_log_in() {
    let host = CertHost::start();
    let agent = Agent::start(host.hosts.dir.path());
    let key = host.key("agent_key", Some("root"));
    let added = agent.add(&key);
    assert!(added.contains("Certificate added"), "{added}");
    // Only the agent has them now.
    std::fs::remove_file(&key).expect("rm key");
    std::fs::remove_file(CertHost::cert_of(&key)).expect("rm cert");

    let inv = host.inventory("agent.toml", ", agent = true");
    let (code, out) = host.exec(&inv, Path::new("/dev/null"), Some(&agent.sock));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cert-ok"), "{out}");
    assert!(
        host.log().contains("opsdeck-test-agent_key"),
        "{}",
        host.log()
    );
}

#[test]
fn a_certificate_file_pairs_with_a_key_only_the_agent_holds_found_through_identity_agent() {
    let host = CertHost::start();
    let agent = Agent::start(host.hosts.dir.path());
    let key = host.key("paired", Some("root"));
    let cert = host.hosts.path("paired-cert.pub");
    std::fs::rename(CertHost::cert_of(&key), &cert).expect("move cert");
    // The agent gets the key alone (no certificate beside it any more), then the key file goes.
    let added = agent.add(&key);
    assert!(!added.contains("Certificate added"), "{added}");
    std::fs::remove_file(&key).expect("rm key");

    let h = &host.hosts.hosts[0];
    let config = host.hosts.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host paired\n  HostName {}\n  Port {}\n  User root\n  CertificateFile {}\n\
             \x20 IdentityAgent {}\n",
            h.addr,
            h.port,
            cert.display(),
            agent.sock.display()
        ),
    )
    .expect("ssh_config");
    let inv = host.hosts.path("paired.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.h1]\ntier = \"app\"\nssh = {{ host = \"paired\", known_hosts = {} }}\n",
            toml_str(&host.hosts.known_hosts.to_string_lossy())
        ),
    )
    .expect("inventory");
    // SSH_AUTH_SOCK unset: the agent is found through IdentityAgent.
    let (code, out) = host.exec(&inv, &config, None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cert-ok"), "{out}");
    assert!(host.log().contains("opsdeck-test-paired"), "{}", host.log());
}
