//! `opsdeck runbooks` probes first and says which runbooks the current health calls for.

use assert_cmd::Command;

#[test]
fn runbooks_lists_what_current_health_suggests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.toml");
    // This machine as an app host whose disk thresholds it already exceeds: a real probe of `/`
    // turns disk./ critical, so the disk runbook is suggested.
    std::fs::write(
        &inv,
        "[tiers.app]\n[hosts.here]\ntier = \"app\"\nlocal = {}\nmounts = [\"/\"]\n[hosts.here.thresholds]\ndisk_warning = 0.001\ndisk_critical = 0.002\n",
    )
    .expect("inventory");
    let runbooks = format!("{}/runbooks", env!("CARGO_MANIFEST_DIR"));
    let out = Command::cargo_bin("opsdeck")
        .expect("bin")
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .args(["-i", inv.to_str().expect("utf8"), "runbooks", "--json"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let disk = json
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["id"] == "disk-space-critical")
        .expect("disk runbook listed");
    assert_eq!(disk["suggested"]["state"], "critical", "{disk}");
    assert!(
        disk["suggested"]["because"][0]
            .as_str()
            .is_some_and(|b| b.contains("disk./ on here")),
        "{disk}"
    );
    let db = json
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["id"] == "db-connection-exhaustion")
        .expect("listed");
    assert!(db["suggested"].is_null(), "nothing calls for it: {db}");

    // Human output puts the suggestions first; --no-health skips the probe.
    let out = Command::cargo_bin("opsdeck")
        .expect("bin")
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .args(["-i", inv.to_str().expect("utf8"), "runbooks"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(
            "current health suggests, most severe first:\n  critical  disk-space-critical"
        ),
        "{text}"
    );
    let out = Command::cargo_bin("opsdeck")
        .expect("bin")
        .env("OPSDECK_RUNBOOKS", &runbooks)
        .args(["-i", inv.to_str().expect("utf8"), "runbooks", "--no-health"])
        .output()
        .expect("runs");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("current health"));
}
