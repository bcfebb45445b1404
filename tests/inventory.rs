//! The inventory as a user meets it: `opsdeck check` and `opsdeck inventory` on good and broken
//! files, through the real binary.

use std::path::Path;

use assert_cmd::Command;
use proptest::prelude::*;

fn opsdeck() -> Command {
    let mut c = Command::cargo_bin("opsdeck").expect("binary built");
    c.env_remove("OPSDECK_INVENTORY").env(
        "OPSDECK_LOG_DIR",
        std::env::temp_dir().join("opsdeck-test-logs"),
    );
    c
}

fn fixture(name: &str) -> String {
    format!("{}/tests/inventories/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `opsdeck check` on a broken fixture and returns stderr with the path made relative.
fn check_error(name: &str) -> String {
    let out = opsdeck()
        .args(["-i", &fixture(&format!("invalid/{name}")), "check"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "config errors exit 2: {out:?}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for a broken inventory"
    );
    String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", env!("CARGO_MANIFEST_DIR")), "")
}

#[test]
fn bad_toml_points_at_the_line_and_column() {
    let err = check_error("bad_toml.toml");
    assert!(
        err.starts_with("opsdeck: tests/inventories/invalid/bad_toml.toml:2:"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_field_is_named_with_its_position_and_the_valid_fields() {
    let err = check_error("unknown_field.toml");
    assert!(
        err.contains("unknown_field.toml:7:1: unknown field `max_conections`"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_tier_reference_names_the_tier_and_the_known_ones() {
    let err = check_error("unknown_tier.toml");
    assert!(
        err.contains("unknown_tier.toml:9:8: host \"db1\" names unknown tier \"database\""),
        "{err}"
    );
    assert!(err.contains("use one of: app, db"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn unset_secret_variable_is_an_error_at_its_reference() {
    let err = check_error("secret_env_unset.toml");
    assert!(err.contains("secret_env_unset.toml:10:16:"), "{err}");
    assert!(err.contains("OPSDECK_TEST_UNSET_PASSWORD"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn plain_text_password_is_refused_without_echoing_it() {
    let err = check_error("plain_password.toml");
    assert!(
        err.contains(
            "plain_password.toml:9:12: host \"cache1\": redis password written in plain text"
        ),
        "{err}"
    );
    assert!(
        !err.contains("s3cret-in-plain-text"),
        "the value must not be echoed: {err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn two_transports_one_host_is_refused() {
    let err = check_error("two_transports.toml");
    assert!(
        err.contains("has 2 transports; it needs exactly one"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn bad_enum_value_and_bad_duration_are_located() {
    let err = check_error("bad_enum.toml");
    assert!(err.contains("bad_enum.toml:5:"), "{err}");
    assert!(err.contains("trust-everything"), "{err}");
    assert!(
        err.contains("strict") && err.contains("accept-new"),
        "{err}"
    );
    let err = check_error("bad_duration.toml");
    assert!(err.contains("bad_duration.toml:5:"), "{err}");
    assert!(err.contains("five seconds"), "{err}");
    insta::assert_snapshot!("bad_enum", check_error("bad_enum.toml"));
    insta::assert_snapshot!("bad_duration", err);
}

#[test]
fn missing_file_says_which_and_exits_2() {
    let out = opsdeck()
        .args(["-i", "/nonexistent/inv.toml", "check"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read inventory /nonexistent/inv.toml"),
        "{err}"
    );
}

#[test]
fn the_example_inventory_checks_and_resolves_secrets_by_reference_only() {
    let out = opsdeck()
        .args(["-i", &fixture("example.toml"), "check"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = opsdeck()
        .args(["-i", &fixture("example.toml"), "inventory", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("example-mysql-pw") && !text.contains("example-redis-pw"),
        "secret leaked: {text}"
    );
    let hosts = json["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 4);
    let app1 = hosts.iter().find(|h| h["name"] == "app1").expect("app1");
    // Defaults applied, jump host resolved from another inventory host.
    assert_eq!(app1["transport"]["kind"], "ssh");
    assert_eq!(app1["transport"]["user"], "deploy");
    assert_eq!(app1["transport"]["jump"]["address"], "127.0.0.2");
    assert_eq!(app1["transport"]["host_key_policy"], "strict");
    let db1 = hosts.iter().find(|h| h["name"] == "db1").expect("db1");
    assert_eq!(db1["roles"][0], "primary");
    let src = db1["services"]["mysql"][0]["password"]["source"]
        .as_str()
        .expect("source");
    assert!(
        src.starts_with("file:") && src.ends_with("secrets/mysql"),
        "{src}"
    );
    let cache1 = hosts
        .iter()
        .find(|h| h["name"] == "cache1")
        .expect("cache1");
    assert_eq!(
        cache1["read_only"], true,
        "tier read_only applies to its hosts"
    );
    assert_eq!(cache1["transport"]["target"]["compose"]["service"], "redis");

    let out = opsdeck()
        .args(["-i", &fixture("example.toml"), "inventory"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("app1 [") || text.contains("app1:"), "{text}");
    assert!(text.contains("password from file:"), "{text}");
    assert!(!text.contains("example-mysql-pw"));
}

#[test]
fn env_inventory_variable_is_honoured() {
    let out = opsdeck()
        .env("OPSDECK_INVENTORY", fixture("invalid/unknown_tier.toml"))
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown tier"));
}

#[test]
fn no_inventory_means_this_machine_over_the_local_transport() {
    let out = opsdeck()
        .args(["inventory", "--json"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["hosts"][0]["transport"]["kind"], "local");
    assert!(
        json["hosts"][0]["services"]["mounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x == "/"))
    );
}

#[test]
fn exec_on_the_local_transport_reports_status_stdout_and_stderr() {
    let out = opsdeck()
        .args([
            "exec",
            "all",
            "--json-all",
            "--",
            "echo out; echo err >&2; exit 3",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "a failing host makes exec fail");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["status"]["code"], 3);
    assert_eq!(json[0]["stdout"], "out\n");
    assert_eq!(json[0]["stderr"], "err\n");

    let out = opsdeck()
        .args(["exec", "all", "--", "true"])
        .output()
        .expect("runs");
    assert!(out.status.success());
}

#[test]
fn exec_timeout_stops_a_slow_command() {
    let out = opsdeck()
        .args([
            "exec",
            "all",
            "--json-all",
            "--timeout",
            "300ms",
            "--",
            "sleep 5",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        json[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out after 300ms")),
        "{json}"
    );
}

#[test]
fn bad_selector_is_a_configuration_error() {
    let out = opsdeck()
        .args([
            "-i",
            &fixture("example.toml"),
            "exec",
            "nosuchtier",
            "--",
            "true",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\"nosuchtier\" matches no host, tier or tier:role")
    );
}

#[test]
fn selectors_combine_hosts_tiers_and_roles() {
    let inv = opsdeck::inventory::load(Some(Path::new(&fixture("example.toml")))).expect("loads");
    let pick = |s: &str| -> Vec<String> {
        let sel: opsdeck::inventory::Selector = s.parse().expect("parses");
        inv.select(&sel)
            .expect("resolves")
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    assert_eq!(pick("all").len(), 4);
    assert_eq!(pick("db:primary"), ["db1"]);
    assert_eq!(
        pick("app1,lb"),
        ["lb1", "app1"],
        "inventory order, not selector order"
    );
    assert_eq!(pick("cache:master,cache1"), ["cache1"], "no duplicates");
    assert!(
        "db:nosuchrole"
            .parse::<opsdeck::inventory::Selector>()
            .expect("parses")
            .resolve(&inv)
            .is_err()
    );
    assert!("a b".parse::<opsdeck::inventory::Selector>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the bytes, loading returns Ok or a located error; it never panics.
    #[test]
    fn loader_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = opsdeck::inventory::load_str(&text, Path::new("fuzz.toml"));
    }

    /// Mutations of a valid inventory (a byte removed, inserted or changed) never panic, and
    /// every error carries a position inside the file.
    #[test]
    fn loader_never_panics_on_mutated_inventories(pos in 0usize..2000, byte in any::<u8>(), op in 0u8..3) {
        let base = std::fs::read_to_string(fixture("example.toml")).expect("fixture");
        let mut bytes = base.into_bytes();
        let pos = pos % bytes.len();
        match op {
            0 => { bytes.remove(pos); }
            1 => bytes.insert(pos, byte),
            _ => bytes[pos] = byte,
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let path = Path::new(&fixture("example.toml")).to_path_buf();
        if let Err(opsdeck::inventory::InventoryError::Invalid(errors)) = opsdeck::inventory::load_str(&text, &path) {
            let lines = text.lines().count().max(1) + 1;
            for e in errors {
                prop_assert!(e.line >= 1 && e.line <= lines, "line {} of {}", e.line, lines);
                prop_assert!(e.col >= 1);
            }
        }
    }
}

#[test]
fn a_canary_password_never_appears_in_output_json_or_logs_even_when_a_command_echoes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.toml");
    std::fs::write(
        &inv,
        "[tiers.db]\n[hosts.db1]\ntier = \"db\"\nlocal = {}\n[[hosts.db1.mysql]]\nrole = \"primary\"\npassword_env = \"OPSDECK_CANARY_PW\"\n",
    )
    .expect("write");
    let canary = "opsdeck-canary-Zq81x";
    let logs = dir.path().join("logs");
    for json in [false, true] {
        let mut cmd = opsdeck();
        cmd.env("OPSDECK_CANARY_PW", canary)
            .env("OPSDECK_LOG_DIR", &logs)
            .env("OPSDECK_LOG", "trace");
        cmd.args(["-i", inv.to_str().expect("utf8"), "exec", "all"]);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .args([
                "--",
                "echo pw=$OPSDECK_CANARY_PW; echo $OPSDECK_CANARY_PW >&2; exit 1",
            ])
            .output()
            .expect("runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(canary), "canary leaked: {all}");
        assert!(
            all.contains("pw=********"),
            "output is masked, not dropped: {all}"
        );
    }
    let out = opsdeck()
        .env("OPSDECK_CANARY_PW", canary)
        .args(["-i", inv.to_str().expect("utf8"), "inventory", "--json"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("env:OPSDECK_CANARY_PW") && !text.contains(canary),
        "{text}"
    );
    for entry in std::fs::read_dir(&logs).expect("log dir exists") {
        let log = std::fs::read_to_string(entry.expect("entry").path()).expect("read log");
        assert!(!log.contains(canary), "canary in log: {log}");
    }
}

/// An inventory whose only password comes from `cmd` (written as a TOML string).
fn password_cmd_inventory(dir: &Path, cmd: &str) -> String {
    let inv = dir.join("inv.toml");
    std::fs::write(
        &inv,
        format!(
            "[tiers.db]\n[hosts.db1]\ntier = \"db\"\nlocal = {{}}\n\n[[hosts.db1.mysql]]\nrole = \"primary\"\npassword_cmd = {}\n",
            toml::Value::String(cmd.to_owned())
        ),
    )
    .expect("write");
    inv.to_str().expect("utf8").to_owned()
}

/// An empty runbook directory, so `check` looks at the inventory only.
fn empty_runbooks(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("runbooks");
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) {
                found.push(format!("{}: {text}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn check_and_inventory_never_run_password_cmd_unless_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let inv = password_cmd_inventory(
        dir.path(),
        &format!("touch {}; echo pw-from-cmd", ran.display()),
    );
    let runbooks = empty_runbooks(dir.path());
    let out = opsdeck()
        .args(["-i", &inv, "check"])
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = opsdeck()
        .args(["-i", &inv, "inventory", "--json"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"resolved\": false"), "{text}");
    let out = opsdeck()
        .args(["-i", &inv, "inventory"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not run: add --resolve-secrets"), "{text}");
    assert!(!ran.exists(), "check or inventory ran the password_cmd");

    let out = opsdeck()
        .args(["-i", &inv, "inventory", "--json", "--resolve-secrets"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(ran.exists(), "--resolve-secrets runs it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("pw-from-cmd\n") && text.contains("\"resolved\": true"),
        "{text}"
    );
}

#[test]
fn a_hanging_password_cmd_is_not_run_by_check_and_times_out_when_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A fractional duration no other process uses, to find leftovers by command line.
    let marker = format!("600.{}", std::process::id());
    let inv = password_cmd_inventory(dir.path(), &format!("sleep {marker}"));
    let runbooks = empty_runbooks(dir.path());
    let started = std::time::Instant::now();
    let out = opsdeck()
        .args(["-i", &inv, "check"])
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "check passes without running it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "check took {:?}",
        started.elapsed()
    );

    // Asked to resolve, it runs the command, kills it after 10 s and says where it is.
    let started = std::time::Instant::now();
    let out = opsdeck()
        .args(["-i", &inv, "check", "--resolve-secrets"])
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("runs");
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        elapsed < std::time::Duration::from_secs(20),
        "took {elapsed:?}"
    );
    assert!(
        err.contains("inv.toml:8:16:")
            && err.contains("host \"db1\": mysql password_cmd did not finish within 10s"),
        "{err}"
    );
    assert!(err.contains("must not prompt"), "{err}");
    assert!(
        processes_with(&marker).is_empty(),
        "the password_cmd's processes are left: {:?}",
        processes_with(&marker)
    );

    // A failing command names its exit status and what it said.
    let inv = password_cmd_inventory(dir.path(), "echo 'gpg: decryption failed' >&2; exit 3");
    let out = opsdeck()
        .args(["-i", &inv, "inventory", "--resolve-secrets"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("password_cmd exited with exit status: 3: gpg: decryption failed"),
        "{err}"
    );
}
