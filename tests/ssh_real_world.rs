//! SSH the way real stacks are reached: hosts behind a chain of bastions and behind a
//! `ProxyCommand`, named in an ssh_config with `Include`, `Match` and `%` tokens, resolved
//! exactly as OpenSSH resolves them (`ssh -G` is the oracle), and one connection per bastion.
//! Against real sshd on loopback.

mod support;

use std::fmt::Write as _;
use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use support::sshd::{SshHosts, toml_str};

fn opsdeck(home: &Path, ssh_config: &Path) -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("bin");
    c.env_remove("OPSDECK_INVENTORY")
        .env_remove("SSH_AUTH_SOCK")
        .env("HOME", home)
        .env("OPSDECK_SSH_CONFIG", ssh_config);
    c
}

fn inventory_json(home: &Path, ssh_config: &Path, inventory: &Path) -> Value {
    let out = opsdeck(home, ssh_config)
        .args([
            "-i",
            inventory.to_str().expect("utf8"),
            "inventory",
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "inventory --json failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// `opsdeck exec all --json -- COMMAND`: (exit code, per-host results).
fn exec_all(home: &Path, ssh_config: &Path, inventory: &Path, command: &str) -> (i32, Value) {
    let out = opsdeck(home, ssh_config)
        .args([
            "-i",
            inventory.to_str().expect("utf8"),
            "exec",
            "all",
            "--json",
            "--timeout",
            "20s",
            "--",
            command,
        ])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // One JSON document, or one JSON line per host.
    let json = serde_json::from_str(&text).unwrap_or_else(|_| {
        Value::Array(
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn result_for<'a>(results: &'a Value, host: &str) -> &'a Value {
    results
        .as_array()
        .and_then(|a| a.iter().find(|r| r["host"] == host))
        .unwrap_or_else(|| panic!("no result for {host} in {results}"))
}

/// `ssh -G [-l user] [-p port] -F config alias` as keyword → values.
fn ssh_g(
    config: &Path,
    alias: &str,
    user: Option<&str>,
    port: Option<u64>,
) -> Vec<(String, String)> {
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-G").arg("-F").arg(config);
    if let Some(u) = user {
        cmd.args(["-l", u]);
    }
    if let Some(p) = port {
        cmd.args(["-p", &p.to_string()]);
    }
    let out = cmd
        .arg(alias)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh -G runs");
    assert!(
        out.status.success(),
        "ssh -G {alias}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(printed: &'a [(String, String)], key: &str) -> Option<&'a str> {
    printed
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A ProxyJump entry: `[user@]host[:port]`.
fn hop(entry: &str) -> (Option<String>, String, Option<u64>) {
    let entry = entry.strip_prefix("ssh://").unwrap_or(entry);
    let (user, rest) = match entry.split_once('@') {
        Some((u, r)) => (Some(u.to_owned()), r),
        None => (None, entry),
    };
    // ssh -G prints the hop that reaches the host as `user@[host]:port`.
    if let Some(inner) = rest.strip_prefix('[') {
        let (h, after) = inner.split_once(']').expect("closing bracket");
        let port = after.strip_prefix(':').map(|p| p.parse().expect("port"));
        return (user, h.to_owned(), port);
    }
    match rest.rsplit_once(':') {
        Some((h, p)) => (user, h.to_owned(), Some(p.parse().expect("port"))),
        None => (user, rest.to_owned(), None),
    }
}

/// Checks one resolved SSH transport against what `ssh -G` prints for `alias` (with `user`
/// and `port` as on ssh's command line), and its jump chain hop by hop. `jump_override`: the
/// hops `ssh -J` would pass on (a hop in a chain no longer uses its own ProxyJump).
fn assert_matches_ssh(
    config: &Path,
    what: &str,
    t: &Value,
    alias: &str,
    user: Option<&str>,
    port: Option<u64>,
    jump_override: Option<Vec<String>>,
) {
    let printed = ssh_g(config, alias, user, port);
    assert_eq!(t["alias"], alias, "{what}: alias in {t}");
    assert_eq!(
        t["address"].as_str(),
        get(&printed, "hostname"),
        "{what}: host name"
    );
    assert_eq!(t["user"].as_str(), get(&printed, "user"), "{what}: user");
    assert_eq!(
        t["port"].as_u64(),
        get(&printed, "port").and_then(|p| p.parse().ok()),
        "{what}: port"
    );
    let chain: Vec<String> = match jump_override {
        Some(hops) => hops,
        None => get(&printed, "proxyjump")
            .map(|j| j.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    if chain.is_empty() {
        assert!(t["jump"].is_null(), "{what}: no jump expected, got {t}");
    } else {
        // The hop that reaches the host is the last entry; its own jump the entries before.
        let (last, before) = chain.split_last().expect("non-empty");
        let (u, h, p) = hop(last);
        let inner = (!before.is_empty()).then(|| before.to_vec());
        assert_matches_ssh(
            config,
            &format!("{what} -> jump {last}"),
            &t["jump"],
            &h,
            u.as_deref(),
            p,
            inner,
        );
    }
    match get(&printed, "proxycommand") {
        Some(pc) if t["jump"].is_null() => {
            let expanded = pc
                .replace("%h", get(&printed, "hostname").unwrap_or_default())
                .replace("%p", get(&printed, "port").unwrap_or_default())
                .replace("%r", get(&printed, "user").unwrap_or_default())
                .replace("%n", alias);
            assert_eq!(
                t["proxy_command"],
                expanded.as_str(),
                "{what}: ProxyCommand"
            );
        }
        _ => assert!(
            t["proxy_command"].is_null(),
            "{what}: no ProxyCommand expected: {t}"
        ),
    }
}

#[test]
fn a_two_bastion_chain_and_a_proxy_command_host_from_ssh_config_are_reached() {
    // h1, h2: bastions; h3, h4: behind both; h5: behind a ProxyCommand.
    let hosts = SshHosts::start(5);
    let dir = hosts.dir.path();
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    // One key file per host address, found through `IdentityFile .../id_%h`.
    for h in &hosts.hosts {
        std::fs::copy(&hosts.key, keys.join(format!("id_{}", h.addr))).expect("copy key");
    }
    let conf_d = dir.join("conf.d");
    std::fs::create_dir_all(&conf_d).expect("conf.d");
    std::fs::write(
        conf_d.join("bastions.conf"),
        format!(
            "Host bastion-one\n  HostName {a1}\n  Port {p1}\n\n\
             Host bastion-two\n  HostName {a2}\n  Port {p2}\n",
            a1 = hosts.hosts[0].addr,
            p1 = hosts.hosts[0].port,
            a2 = hosts.hosts[1].addr,
            p2 = hosts.hosts[1].port,
        ),
    )
    .expect("included file");
    let trace = dir.join("proxy-trace");
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Include {conf_d}/*.conf\n\n\
             Host app-*\n  ProxyJump bastion-one,bastion-two\n\n\
             Host app-1\n  HostName {a3}\n  Port {p3}\n\n\
             # A Match block: it must not leak into the Host block above it.\n\
             Match originalhost app-2\n  HostName {a4}\n  Port {p4}\n\n\
             Match user nobody\n  Port 1\n\n\
             Host legacy\n  HostName {a5}\n  Port {p5}\n\
             \x20 ProxyCommand sh -c 'echo \"%n %h %p %r\" >> {trace}; exec socat - TCP:%h:%p'\n\n\
             Match all\n  User root\n  IdentityFile {keys}/id_%h\n  UserKnownHostsFile {kh}\n",
            conf_d = conf_d.display(),
            a3 = hosts.hosts[2].addr,
            p3 = hosts.hosts[2].port,
            a4 = hosts.hosts[3].addr,
            p4 = hosts.hosts[3].port,
            a5 = hosts.hosts[4].addr,
            p5 = hosts.hosts[4].port,
            trace = trace.display(),
            keys = keys.display(),
            kh = hosts.known_hosts.display(),
        ),
    )
    .expect("ssh_config");
    let inv = dir.join("real.toml");
    std::fs::write(
        &inv,
        "[tiers.app]\n\
         [hosts.app-1]\ntier = \"app\"\nssh = { agent = false }\n\
         [hosts.app-2]\ntier = \"app\"\nssh = { agent = false }\n\
         [hosts.legacy]\ntier = \"app\"\nssh = { agent = false }\n",
    )
    .expect("inventory");

    // Resolved as ssh resolves it, with where each value came from.
    let json = inventory_json(dir, &config, &inv);
    for (i, name) in ["app-1", "app-2", "legacy"].iter().enumerate() {
        let t = &json["hosts"][i]["transport"];
        assert_matches_ssh(&config, name, t, name, None, None, None);
    }
    let app1 = &json["hosts"][0]["transport"];
    assert_eq!(app1["jump"]["alias"], "bastion-two");
    assert_eq!(app1["jump"]["jump"]["alias"], "bastion-one");
    assert!(app1["jump"]["jump"]["jump"].is_null());
    assert_eq!(
        app1["identity_files"][0],
        keys.join(format!("id_{}", hosts.hosts[2].addr))
            .to_string_lossy()
            .as_ref(),
        "%h expanded in IdentityFile"
    );
    assert_eq!(app1["origin"]["address"], "ssh_config");
    assert_eq!(app1["origin"]["jump"], "ssh_config");
    assert_eq!(app1["origin"]["agent"], "inventory");
    assert_eq!(app1["origin"]["max_sessions"], "builtin");
    let legacy = &json["hosts"][2]["transport"];
    assert_eq!(legacy["origin"]["proxy_command"], "ssh_config");

    // Commands reach all three: two through both bastions, one through the ProxyCommand.
    let (code, results) = exec_all(dir, &config, &inv, "echo reached-$(id -un)");
    assert_eq!(code, 0, "{results}");
    for name in ["app-1", "app-2", "legacy"] {
        let r = result_for(&results, name);
        assert!(
            r["stdout"]
                .as_str()
                .is_some_and(|s| s.contains("reached-root")),
            "{name}: {r}"
        );
    }
    // Each bastion logged in once, though two hosts are behind them; each target once.
    assert_eq!(hosts.logins(0), 1, "bastion-one:\n{}", hosts.log(0));
    assert_eq!(hosts.logins(1), 1, "bastion-two:\n{}", hosts.log(1));
    assert_eq!(hosts.logins(2), 1, "app-1:\n{}", hosts.log(2));
    assert_eq!(hosts.logins(3), 1, "app-2:\n{}", hosts.log(3));
    assert_eq!(hosts.logins(4), 1, "legacy:\n{}", hosts.log(4));
    // The ProxyCommand ran once, with its tokens expanded.
    let traced = std::fs::read_to_string(&trace).expect("the ProxyCommand ran");
    assert_eq!(
        traced.trim(),
        format!(
            "legacy {} {} root",
            hosts.hosts[4].addr, hosts.hosts[4].port
        )
    );
}

#[test]
fn a_failing_proxy_command_is_a_clear_error_with_what_the_command_said() {
    let hosts = SshHosts::start(1);
    let dir = hosts.dir.path();
    let config = dir.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host broken\n  HostName 127.0.0.1\n  Port 9\n  User root\n  IdentityFile {key}\n\
             \x20 ProxyCommand sh -c 'echo \"no route to %h:%p\" >&2; exit 3'\n",
            key = hosts.key.display()
        ),
    )
    .expect("ssh_config");
    let inv = dir.join("broken.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.app]\n[hosts.broken]\ntier = \"app\"\nssh = {{ agent = false, known_hosts = {} }}\n",
            toml_str(&hosts.known_hosts.to_string_lossy())
        ),
    )
    .expect("inventory");
    let (code, results) = exec_all(dir, &config, &inv, "true");
    assert_eq!(code, 1, "{results}");
    let text = results.to_string();
    assert!(text.contains("ProxyCommand"), "{text}");
    assert!(text.contains("no route to 127.0.0.1:9"), "{text}");
}

#[test]
fn one_connection_per_bastion_serves_every_host_behind_it() {
    // h1: the bastion; h2..h4 behind it.
    let hosts = SshHosts::start(4);
    let dir = hosts.dir.path();
    let kh = toml_str(&hosts.known_hosts.to_string_lossy());
    let key = toml_str(&hosts.key.to_string_lossy());

    // The bastion as an inventory host, named by the others' `jump`.
    let mut text = String::from("[tiers.edge]\n[tiers.app]\n");
    let _ = writeln!(
        text,
        "[hosts.bastion]\ntier = \"edge\"\nssh = {}",
        hosts.ssh_table(0, "")
    );
    for i in 1..4 {
        let _ = writeln!(
            text,
            "[hosts.app{i}]\ntier = \"app\"\nssh = {}",
            hosts.ssh_table(i, ", jump = \"bastion\"")
        );
    }
    let inv = dir.join("jump.toml");
    std::fs::write(&inv, text).expect("inventory");
    let no_config = Path::new("/dev/null");
    let (code, results) = exec_all(dir, no_config, &inv, "echo ok");
    assert_eq!(code, 0, "{results}");
    // The bastion ran its own command and carried three tunnels: one login.
    assert_eq!(hosts.logins(0), 1, "{}", hosts.log(0));
    for i in 1..4 {
        assert_eq!(hosts.logins(i), 1, "h{}: {}", i + 1, hosts.log(i));
    }

    // The bastion met only in ssh_config (`ProxyJump bastion` for every app host): still one
    // connection for the three hosts behind it.
    let mut cfg = format!(
        "Host bastion\n  HostName {a}\n  Port {p}\n  User root\n  IdentityFile {k}\n\
         Host app*\n  ProxyJump bastion\n",
        a = hosts.hosts[0].addr,
        p = hosts.hosts[0].port,
        k = hosts.key.display(),
    );
    for i in 1..4 {
        let _ = write!(
            cfg,
            "Host app{i}\n  HostName {}\n  Port {}\n",
            hosts.hosts[i].addr, hosts.hosts[i].port
        );
    }
    let config = dir.join("ssh_config");
    std::fs::write(&config, cfg).expect("ssh_config");
    let mut text = String::from("[tiers.app]\n");
    for i in 1..4 {
        let _ = writeln!(
            text,
            "[hosts.app{i}]\ntier = \"app\"\nssh = {{ host = \"app{i}\", user = \"root\", \
             identity_files = [{key}], known_hosts = {kh}, agent = false }}"
        );
    }
    let inv = dir.join("config-jump.toml");
    std::fs::write(&inv, text).expect("inventory");
    let before = hosts.logins(0);
    let (code, results) = exec_all(dir, &config, &inv, "echo ok");
    assert_eq!(code, 0, "{results}");
    assert_eq!(hosts.logins(0) - before, 1, "{}", hosts.log(0));
}

/// Twenty ssh_configs, each with several hosts: what `opsdeck inventory --json` resolves
/// (host name, user, port, jump chain hop by hop, ProxyCommand) is what `ssh -G` prints.
#[test]
fn twenty_configurations_resolve_exactly_as_ssh_g_prints_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let inc = d.join("inc");
    std::fs::create_dir_all(&inc).expect("inc dir");
    std::fs::write(
        inc.join("10-bastions.conf"),
        "Host bast-a\n  HostName 10.0.0.1\n  User jumper\n  Port 2201\n\
         Host bast-b\n  HostName 10.0.0.2\n  ProxyJump bast-a\n\
         Host bast-c\n  HostName %h.jump.example\n",
    )
    .expect("include");
    std::fs::write(
        inc.join("20-users.conf"),
        "Match user admin\n  Port 2022\nHost *.corp\n  User corpuser\n",
    )
    .expect("include");
    let i = inc.display();
    // (config, hosts as `name` or `name:user` — the user given in the inventory).
    let configs: Vec<(String, Vec<&str>)> = vec![
        (
            "Host web\n  HostName 192.0.2.10\n  User deploy\n  Port 2222\n".into(),
            vec!["web", "other"],
        ),
        (
            "Host a\n  ProxyJump b,c\nHost b\n  HostName 10.1.0.2\nHost c\n  HostName 10.1.0.3\n  User cu\n".into(),
            vec!["a", "b", "c"],
        ),
        (
            "Host x\n  ProxyJump none\nHost gw\n  ProxyJump none\nHost *\n  ProxyJump gw\n".into(),
            vec!["x", "y", "gw"],
        ),
        (
            "Host web\n  User first\nHost web\n  User second\nHost *\n  Port 2000\n".into(),
            vec!["web", "db"],
        ),
        (
            "Host top\n  HostName 10.2.0.1\nMatch host 10.2.0.1\n  Port 2345\nMatch originalhost top\n  User matched\n".into(),
            vec!["top", "bottom"],
        ),
        (
            "Host h\n  HostName 10.3.0.1\nMatch user nobody\n  Port 1\n  User leaked\n".into(),
            vec!["h", "h:nobody"],
        ),
        (
            format!("Include {i}/*.conf\nHost app\n  ProxyJump bast-b\n"),
            vec!["app", "bast-a", "bast-b"],
        ),
        (
            format!("Include {i}/10-bastions.conf\nHost deep\n  ProxyJump bast-a,bast-b,bast-c\n"),
            vec!["deep"],
        ),
        (
            "Host %h-test\n  Port 1\nHost *.example.com\n  HostName %h.internal\n  User %r\n".into(),
            vec!["www.example.com", "api.example.com:svc"],
        ),
        (
            "Host !bastion *\n  ProxyJump bastion\nHost bastion\n  HostName 10.4.0.1\n".into(),
            vec!["bastion", "inner1", "inner2"],
        ),
        (
            "Match exec \"test 1 = 1\"\n  User viaexec\nMatch exec \"false\"\n  Port 1\n".into(),
            vec!["anything"],
        ),
        (
            "Host p\n  ProxyCommand socat - TCP:%h:%p\n  HostName 10.5.0.1\n  Port 2200\nHost q\n  ProxyCommand nc %h %p\n  ProxyJump ignored\n".into(),
            vec!["p", "q"],
        ),
        (
            "Host j\n  ProxyJump ssh://ju@10.6.0.1:2022,jv@10.6.0.2\n".into(),
            vec!["j"],
        ),
        (
            "HOST upper\n  HOSTNAME 10.7.0.1\n  PORT 7\n  uSeR MixedCase\n".into(),
            vec!["upper", "UPPER"],
        ),
        (
            format!("Match all\n  Include {i}/20-users.conf\nHost *\n  User fallback\n"),
            vec!["srv.corp", "srv.other", "srv.other:admin"],
        ),
        (
            "Host a b c\n  User abc\nHost b\n  User bee\n  Port 22\nHost c\n  HostName 10.8.0.3\n".into(),
            vec!["a", "b", "c"],
        ),
        (
            "Host t\n  ProxyJump m1\nHost m1\n  ProxyJump m2\n  HostName 10.9.0.1\nHost m2\n  HostName 10.9.0.2\n  User m2user\n".into(),
            vec!["t"],
        ),
        (
            "Match host *.db,!primary.db\n  User replica\nHost *.db\n  User dbuser\n  Port 3322\n".into(),
            vec!["one.db", "primary.db"],
        ),
        (
            "Host 10.10.*\n  User net\n  ProxyJump gw10\nHost gw10\n  HostName 10.10.0.254\n  ProxyJump none\n".into(),
            vec!["10.10.1.1", "gw10"],
        ),
        (
            "Match originalhost alias\n  HostName 10.11.0.1\nMatch host 10.11.0.1\n  User byaddr\n  Port 2111\n".into(),
            vec!["alias", "10.11.0.1"],
        ),
    ];
    assert_eq!(configs.len(), 20);
    for (n, (config_text, names)) in configs.iter().enumerate() {
        let config = d.join(format!("config-{n}"));
        std::fs::write(&config, config_text).expect("config");
        let mut inv = String::from("[defaults.ssh]\nagent = true\n[tiers.t]\n");
        for (k, entry) in names.iter().enumerate() {
            let (alias, user) = match entry.split_once(':') {
                Some((a, u)) => (a, Some(u)),
                None => (*entry, None),
            };
            let user = user
                .map(|u| format!(", user = {}", toml_str(u)))
                .unwrap_or_default();
            let _ = writeln!(
                inv,
                "[hosts.h{k}]\ntier = \"t\"\nssh = {{ host = {}{user} }}",
                toml_str(alias)
            );
        }
        let inv_path = d.join(format!("inv-{n}.toml"));
        std::fs::write(&inv_path, inv).expect("inventory");
        let json = inventory_json(d, &config, &inv_path);
        for (k, entry) in names.iter().enumerate() {
            let (alias, user) = match entry.split_once(':') {
                Some((a, u)) => (a, Some(u)),
                None => (*entry, None),
            };
            assert_matches_ssh(
                &config,
                &format!("config {n} host {entry}"),
                &json["hosts"][k]["transport"],
                alias,
                user,
                None,
                None,
            );
        }
    }
}

/// The tokens of `IdentityFile` expand as ssh expands them (checked against the same tokens in
/// `UserKnownHostsFile`, which `ssh -G` prints expanded), and precedence and provenance hold:
/// the host's own settings, then ssh_config, then `[defaults.ssh]`.
#[test]
fn tokens_expand_like_ssh_and_precedence_is_inventory_then_ssh_config_then_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tokens = "%C-%d-%h-%i-%k-%L-%l-%n-%p-%r-%u-%%";
    let config = d.join("config");
    std::fs::write(
        &config,
        format!(
            "Host tok\n  HostName 10.20.0.1\n  Port 2020\n  User tokuser\n  HostKeyAlias tokkey\n\
             \x20 IdentityFile /keys/{tokens}\n  UserKnownHostsFile /kh/{tokens}\n\
             Host prec\n  HostName 10.20.0.2\n  User from-config\n  ConnectTimeout 7\n\
             \x20 ServerAliveInterval 9\n  StrictHostKeyChecking accept-new\n\
             \x20 IdentitiesOnly yes\n  CertificateFile /certs/%r-cert.pub\n\
             \x20 IdentityAgent /agents/%h.sock\n\
             Host nojump chained\n  ProxyJump far-away\n"
        ),
    )
    .expect("config");
    let inv = d.join("inv.toml");
    std::fs::write(
        &inv,
        "[defaults.ssh]\nuser = \"from-defaults\"\nport = 2999\nkeepalive = \"44s\"\nmax_sessions = 4\n\
         agent = true\n[tiers.t]\n\
         [hosts.tok]\ntier = \"t\"\nssh = { host = \"tok\" }\n\
         [hosts.prec]\ntier = \"t\"\nssh = { host = \"prec\", connect_timeout = \"3s\" }\n\
         [hosts.plain]\ntier = \"t\"\nssh = { host = \"10.20.0.3\" }\n\
         [hosts.nojump]\ntier = \"t\"\nssh = { host = \"nojump\", jump = \"none\" }\n\
         [hosts.edge1]\ntier = \"t\"\nssh = { host = \"10.20.1.1\", user = \"e1\" }\n\
         [hosts.edge2]\ntier = \"t\"\nssh = { host = \"10.20.1.2\", jump = \"elsewhere\" }\n\
         [hosts.chained]\ntier = \"t\"\nssh = { host = \"chained\", jump = \"edge1,edge2\" }\n",
    )
    .expect("inventory");
    // %d is the home directory: ssh takes it from the password database, so keep HOME.
    let home = std::env::var_os("HOME").map_or_else(|| d.to_path_buf(), Into::into);
    let json = inventory_json(&home, &config, &inv);
    let printed = ssh_g(&config, "tok", None, None);
    let expanded = get(&printed, "userknownhostsfile")
        .and_then(|k| k.strip_prefix("/kh/"))
        .expect("ssh expands UserKnownHostsFile");
    let tok = &json["hosts"][0]["transport"];
    assert_eq!(tok["identity_files"][0], format!("/keys/{expanded}"));
    assert_eq!(tok["known_hosts"], format!("/kh/{expanded}"));
    assert_eq!(tok["host_key_alias"], "tokkey");

    let prec = &json["hosts"][1]["transport"];
    assert_eq!(
        prec["user"], "from-config",
        "ssh_config beats [defaults.ssh]"
    );
    assert_eq!(prec["origin"]["user"], "ssh_config");
    assert_eq!(prec["port"], 2999, "ssh_config is silent: [defaults.ssh]");
    assert_eq!(prec["origin"]["port"], "defaults");
    assert_eq!(prec["connect_timeout"], "3s", "the host's own setting wins");
    assert_eq!(prec["origin"]["connect_timeout"], "inventory");
    assert_eq!(prec["keepalive"], "9s");
    assert_eq!(prec["origin"]["keepalive"], "ssh_config");
    assert_eq!(prec["host_key_policy"], "accept-new");
    assert_eq!(prec["identities_only"], true);
    assert_eq!(prec["certificate_files"][0], "/certs/from-config-cert.pub");
    assert_eq!(prec["agent_socket"], "/agents/10.20.0.2.sock");
    assert_eq!(prec["max_sessions"], 4);
    assert_eq!(prec["origin"]["max_sessions"], "defaults");

    let plain = &json["hosts"][2]["transport"];
    assert_eq!(plain["user"], "from-defaults");
    assert_eq!(plain["origin"]["user"], "defaults");
    assert_eq!(plain["origin"]["address"], "inventory");
    assert_eq!(plain["origin"]["host_key_policy"], "builtin");
    assert_eq!(plain["connect_timeout"], "5s");

    // The inventory's jump beats ssh_config's ProxyJump: "none" removes it, a list of
    // inventory hosts is a chain (edge2 reached through edge1, its own jump overridden).
    let nojump = &json["hosts"][3]["transport"];
    assert!(nojump["jump"].is_null(), "{nojump}");
    let chained = &json["hosts"][6]["transport"];
    assert_eq!(chained["origin"]["jump"], "inventory");
    assert_eq!(chained["jump"]["address"], "10.20.1.2");
    assert_eq!(chained["jump"]["jump"]["address"], "10.20.1.1");
    assert_eq!(chained["jump"]["jump"]["user"], "e1");
    assert!(chained["jump"]["jump"]["jump"].is_null(), "{chained}");
}

#[test]
fn a_broken_ssh_config_is_an_error_that_names_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let config = d.join("config");
    std::fs::write(
        &config,
        "Host x\n  HostName 10.0.0.1\n  NoSuchKeyword yes\n",
    )
    .expect("config");
    let inv = d.join("inv.toml");
    std::fs::write(
        &inv,
        "[tiers.t]\n[hosts.x]\ntier = \"t\"\nssh = { agent = true }\n",
    )
    .expect("inventory");
    let out = opsdeck(d, &config)
        .args(["-i", inv.to_str().expect("utf8"), "check"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("line 3"), "{text}");
    assert!(text.to_lowercase().contains("nosuchkeyword"), "{text}");
    assert!(text.contains("inv.toml:4"), "{text}");
}
