//! Host key trust the way OpenSSH decides it, against real OpenSSH sshd on loopback: a key of
//! another type than the recorded one, `@revoked`, `@cert-authority` with real host
//! certificates, the global known_hosts file, hashed and wildcard entries, and `accept-new`
//! racing from separate processes. Every refusal must happen before authentication: sshd's log
//! must show no accepted key.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use support::sshd::{SshHosts, keygen, new_key};

/// `opsdeck exec` of `command` on every host of `inventory`, with the global known_hosts
/// files set to `global` (none when empty): (exit code, one JSON result per host).
fn exec(inventory: &Path, global: &[&Path], command: &str) -> (i32, Vec<Value>) {
    let global: Vec<String> = global.iter().map(|p| p.display().to_string()).collect();
    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .env("OPSDECK_GLOBAL_KNOWN_HOSTS", global.join(" "))
        .env_remove("SSH_AUTH_SOCK")
        .arg("-i")
        .arg(inventory)
        .args(["exec", "all", "--json-all", "--", command])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("opsdeck runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().expect("exit code"),
        results.as_array().expect("array").clone(),
    )
}

/// The single host's error text (panics if it ran).
fn refusal(results: &[Value]) -> String {
    results[0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a refusal: {results:?}"))
        .to_owned()
}

fn inventory_with(lab: &SshHosts, file: &str, known_hosts: &Path, policy: &str) -> PathBuf {
    let table = support::sshd::ssh_table(
        &lab.hosts[0].addr.to_string(),
        lab.hosts[0].port,
        &lab.key,
        known_hosts,
        &format!(", host_key_policy = \"{policy}\""),
    );
    lab.write_inventory(file, &[("h1".to_owned(), table)])
}

fn host_key_path(lab: &SshHosts) -> PathBuf {
    lab.dir.path().join("sshd").join("h1_host_ed25519_key")
}

fn assert_nothing_authenticated(lab: &SshHosts) {
    let log = lab.log(0);
    assert!(!log.contains("Accepted publickey"), "{log}");
    assert!(!log.contains("Starting session"), "{log}");
}

fn ran(results: &[Value], expected: &str) {
    assert!(
        results[0].get("error").is_none(),
        "expected success: {results:?}"
    );
    assert_eq!(results[0]["stdout"], expected, "{results:?}");
}

#[test]
fn a_host_recorded_with_ed25519_that_now_offers_rsa_is_changed_under_both_policies() {
    let mut lab = SshHosts::start(1);
    // known_hosts records the host's ed25519 key; sshd now only has an RSA key.
    let rsa = lab.path("rsa_host_key");
    let rsa_public = new_key(&rsa, "rsa");
    lab.reconfigure(0, &[format!("HostKey {}", rsa.display())]);
    let before = std::fs::read_to_string(&lab.known_hosts).expect("known_hosts");
    for policy in ["strict", "accept-new"] {
        let inv = inventory_with(&lab, &format!("{policy}.toml"), &lab.known_hosts, policy);
        let (code, results) = exec(&inv, &[], "echo should-not-run");
        assert_ne!(code, 0, "{policy}: {results:?}");
        let err = refusal(&results);
        assert!(err.contains("CHANGED"), "{policy}: {err}");
        assert!(err.contains("ssh-rsa"), "names the offered type: {err}");
        assert!(
            err.contains("ssh-ed25519"),
            "names the recorded type: {err}"
        );
        assert!(err.contains("line 1"), "{err}");
        assert_eq!(results[0]["may_have_run"], false, "{results:?}");
        assert_eq!(
            std::fs::read_to_string(&lab.known_hosts).expect("known_hosts"),
            before,
            "{policy} must not record the new key"
        );
    }
    assert!(!before.contains(&rsa_public));
    assert_nothing_authenticated(&lab);
}

#[test]
fn a_revoked_key_is_refused_even_when_it_is_also_recorded() {
    let lab = SshHosts::start(1);
    let host_public = lab.hosts[0].host_public_key.clone();
    let kh = lab.path("revoking_known_hosts");
    std::fs::write(
        &kh,
        format!(
            "{}\n# revoked after the incident\n@revoked * {host_public}\n",
            lab.hosts[0].known_hosts_line()
        ),
    )
    .expect("known_hosts");
    for policy in ["strict", "accept-new"] {
        let inv = inventory_with(&lab, &format!("{policy}.toml"), &kh, policy);
        let (code, results) = exec(&inv, &[], "echo should-not-run");
        assert_ne!(code, 0);
        let err = refusal(&results);
        assert!(err.contains("REVOKED"), "{policy}: {err}");
        assert!(err.contains("line 3"), "points at the @revoked line: {err}");
    }
    // Revoked and otherwise unknown: accept-new must not record it either.
    let only_revoked = lab.path("only_revoked");
    std::fs::write(&only_revoked, format!("@revoked * {host_public}\n")).expect("write");
    let inv = inventory_with(&lab, "revoked-new.toml", &only_revoked, "accept-new");
    let (_, results) = exec(&inv, &[], "echo should-not-run");
    assert!(refusal(&results).contains("REVOKED"));
    assert_eq!(
        std::fs::read_to_string(&only_revoked).expect("read"),
        format!("@revoked * {host_public}\n")
    );
    assert_nothing_authenticated(&lab);
}

/// Signs host 0's key with `ca` for `principal` (validity `validity`, e.g. `always:forever`;
/// a user certificate if `user`) and restarts its sshd presenting the certificate.
fn present_certificate(lab: &mut SshHosts, ca: &Path, principal: &str, validity: &str, user: bool) {
    let host_key = host_key_path(lab);
    let public = format!("{}.pub", host_key.display());
    let ca_s = ca.display().to_string();
    let mut args = vec![
        "-q", "-s", &ca_s, "-I", "h1-test", "-n", principal, "-V", validity,
    ];
    if !user {
        args.push("-h");
    }
    args.push(&public);
    keygen(&args);
    let cert = format!("{}-cert.pub", host_key.display());
    lab.reconfigure(
        0,
        &[
            format!("HostKey {}", host_key.display()),
            format!("HostCertificate {cert}"),
        ],
    );
}

#[test]
fn a_host_certificate_signed_by_a_trusted_ca_is_accepted_and_a_bad_one_refused() {
    let mut lab = SshHosts::start(1);
    let port = lab.hosts[0].port;
    let ca = lab.path("host_ca");
    let ca_public = new_key(&ca, "ed25519");
    // Nothing but the CA is recorded: the plain host key is not in any file.
    let kh = lab.path("ca_known_hosts");
    std::fs::write(
        &kh,
        format!("# our host CA\n@cert-authority [127.0.0.*]:* {ca_public}\n"),
    )
    .expect("known_hosts");
    let inv = inventory_with(&lab, "ca.toml", &kh, "strict");

    present_certificate(&mut lab, &ca, "127.0.0.2", "always:forever", false);
    let (code, results) = exec(&inv, &[], "echo certified");
    assert_eq!(code, 0, "{results:?}");
    ran(&results, "certified\n");
    let log = lab.log(0);
    assert!(log.contains("Accepted publickey"), "{log}");

    // Each of these is refused before authentication, with the reason.
    let other_ca = lab.path("other_ca");
    new_key(&other_ca, "ed25519");
    for (ca_path, principal, validity, user, reason) in [
        (
            &ca,
            "db.example.com",
            "always:forever",
            false,
            "not for \"127.0.0.2\"",
        ),
        (&ca, "127.0.0.2", "20200101:20200102", false, "expired"),
        (&ca, "127.0.0.2", "always:forever", true, "user certificate"),
        // Signed by a CA nobody trusts: judged by its plain key, which is not recorded, while
        // a CA is recorded for the host: changed.
        (&other_ca, "127.0.0.2", "always:forever", false, "CHANGED"),
    ] {
        present_certificate(&mut lab, ca_path, principal, validity, user);
        let (code, results) = exec(&inv, &[], "echo should-not-run");
        assert_ne!(code, 0, "{principal} {validity}: {results:?}");
        let err = refusal(&results);
        assert!(err.contains(reason), "want {reason:?}: {err}");
        assert!(err.contains(&format!("127.0.0.2:{port}")), "{err}");
        assert_nothing_authenticated(&lab);
    }

    // A host vouched for by a CA that offers a bare key is not "new" under accept-new either.
    lab.reconfigure(0, &[format!("HostKey {}", host_key_path(&lab).display())]);
    let inv = inventory_with(&lab, "ca-accept-new.toml", &kh, "accept-new");
    let (_, results) = exec(&inv, &[], "echo should-not-run");
    assert!(refusal(&results).contains("CHANGED"), "{results:?}");
    assert_nothing_authenticated(&lab);
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        format!("# our host CA\n@cert-authority [127.0.0.*]:* {ca_public}\n"),
        "nothing recorded"
    );
}

#[test]
fn the_global_known_hosts_file_is_honoured() {
    let lab = SshHosts::start(1);
    let user = lab.path("empty_user_known_hosts");
    std::fs::write(&user, "").expect("write");
    let global = lab.path("ssh_known_hosts");
    std::fs::write(&global, format!("{}\n", lab.hosts[0].known_hosts_line())).expect("write");
    let inv = inventory_with(&lab, "global.toml", &user, "strict");
    let (code, results) = exec(&inv, &[&global], "echo via-global");
    assert_eq!(code, 0, "{results:?}");
    ran(&results, "via-global\n");

    // A different key recorded globally is a changed key, named with the global file's line,
    // and accept-new does not add the offered key to the user's file.
    let changed = lab.path("changed_global");
    std::fs::write(
        &changed,
        format!(
            "# fleet keys\n{}\n",
            opsdeck::lab::sshd::known_hosts_line(
                lab.hosts[0].addr,
                lab.hosts[0].port,
                &support::sshd::stranger_key(lab.dir.path())
            )
        ),
    )
    .expect("write");
    let inv = inventory_with(&lab, "global-new.toml", &user, "accept-new");
    let (_, results) = exec(&inv, &[&changed], "echo should-not-run");
    let err = refusal(&results);
    assert!(err.contains("CHANGED"), "{err}");
    assert!(
        err.contains(&format!("{} line 2", changed.display())),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&user).expect("read"), "");
}

#[test]
fn hashed_wildcard_and_negated_entries_match_like_openssh() {
    let lab = SshHosts::start(1);
    let port = lab.hosts[0].port;
    let key = lab.hosts[0].host_public_key.clone();

    // Hashed by ssh-keygen itself.
    let hashed = lab.path("hashed_known_hosts");
    std::fs::write(&hashed, format!("{}\n", lab.hosts[0].known_hosts_line())).expect("write");
    keygen(&["-q", "-H", "-f", &hashed.display().to_string()]);
    let text = std::fs::read_to_string(&hashed).expect("read");
    assert!(text.starts_with("|1|"), "{text}");
    let (code, results) = exec(
        &inventory_with(&lab, "hashed.toml", &hashed, "strict"),
        &[],
        "echo hashed",
    );
    assert_eq!(code, 0, "{results:?}");
    ran(&results, "hashed\n");

    // A hashed entry of another type for the host: changed, not unknown.
    let rsa_line = {
        let p = lab.path("some_rsa");
        new_key(&p, "rsa")
    };
    let hashed_rsa = lab.path("hashed_rsa_known_hosts");
    std::fs::write(&hashed_rsa, format!("[127.0.0.2]:{port} {rsa_line}\n")).expect("write");
    keygen(&["-q", "-H", "-f", &hashed_rsa.display().to_string()]);
    let (_, results) = exec(
        &inventory_with(&lab, "hashed-rsa.toml", &hashed_rsa, "accept-new"),
        &[],
        "echo should-not-run",
    );
    assert!(refusal(&results).contains("CHANGED"), "{results:?}");

    // Wildcards: every port of 127.0.0.x.
    let wild = lab.path("wild_known_hosts");
    std::fs::write(&wild, format!("[127.0.0.?]:*,other {key}\n")).expect("write");
    let (code, results) = exec(
        &inventory_with(&lab, "wild.toml", &wild, "strict"),
        &[],
        "echo wild",
    );
    assert_eq!(code, 0, "{results:?}");
    ran(&results, "wild\n");

    // A matching negation excludes the host whatever else matches: it is unknown.
    let negated = lab.path("negated_known_hosts");
    std::fs::write(
        &negated,
        format!("[127.0.0.*]:*,![127.0.0.2]:{port} {key}\n"),
    )
    .expect("write");
    let (_, results) = exec(
        &inventory_with(&lab, "negated.toml", &negated, "strict"),
        &[],
        "echo should-not-run",
    );
    let err = refusal(&results);
    assert!(err.contains("unknown"), "{err}");
    assert_nothing_authenticated_after_the_successes(&lab, 2);
}

/// The successes above authenticated `n` times; the refusals added nothing.
fn assert_nothing_authenticated_after_the_successes(lab: &SshHosts, n: usize) {
    let log = lab.log(0);
    assert_eq!(log.matches("Accepted publickey").count(), n, "{log}");
}

#[test]
fn accept_new_racing_from_ten_processes_records_one_line() {
    let lab = SshHosts::start(1);
    let learned = lab.path("learned_known_hosts");
    let inv = inventory_with(&lab, "race.toml", &learned, "accept-new");
    let bin = assert_cmd::cargo::cargo_bin("opsdeck");
    let children: Vec<std::process::Child> = (0..10)
        .map(|_| {
            std::process::Command::new(&bin)
                .env("OPSDECK_GLOBAL_KNOWN_HOSTS", "")
                .env_remove("SSH_AUTH_SOCK")
                .arg("-i")
                .arg(&inv)
                .args(["exec", "all", "--json", "--", "echo raced"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("opsdeck starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("opsdeck ends");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "every racer connects: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("raced\\n"), "{stdout}");
    }
    let text = std::fs::read_to_string(&learned).expect("known_hosts written");
    assert_eq!(text.lines().count(), 1, "exactly one line:\n{text}");
    assert_eq!(text.trim(), lab.hosts[0].known_hosts_line());
    assert_eq!(lab.log(0).matches("Accepted publickey").count(), 10);
}
