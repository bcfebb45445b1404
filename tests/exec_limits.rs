//! `opsdeck exec` under a timeout and with huge output, on the local host and over SSH (real
//! sshd on loopback, which runs commands on this same machine, so `pgrep` sees what a remote
//! command left behind).
//!
//! Every command carries a marker unique to its test (`sleep 300.0<pid><n>`, which GNU sleep
//! reads as 300 seconds), so the process checks see only this test's processes.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;
use support::sshd::SshHosts;

/// `sleep 300.0PPPPPN`: a 300-second sleep no other test or user runs.
fn unique_sleep() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sleep 300.0{}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Pids of processes whose command line contains `needle`.
fn pgrep(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &regex_escape(needle)])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// Kills what a failed test left behind (only this test's uniquely marked processes).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in pgrep(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
        }
    }
}

fn local_inventory(dir: &Path) -> PathBuf {
    let inv = dir.join("local.toml");
    std::fs::write(&inv, "[tiers.t]\n[hosts.h]\ntier = \"t\"\nlocal = {}\n").expect("inventory");
    inv
}

/// `opsdeck -i INV exec all --timeout T --json-all -- CMD`: (exit code, the one host's result,
/// wall time).
fn exec(inv: &Path, timeout: &str, command: &str) -> (i32, Value, Duration) {
    let started = Instant::now();
    let out = Command::cargo_bin("opsdeck")
        .expect("opsdeck binary")
        .env_remove("SSH_AUTH_SOCK")
        .arg("-i")
        .arg(inv)
        .args([
            "exec",
            "all",
            "--timeout",
            timeout,
            "--json-all",
            "--",
            command,
        ])
        // Far beyond what the tests allow: an opsdeck that hangs fails instead of blocking.
        .timeout(Duration::from_secs(40))
        .output()
        .expect("opsdeck runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON after {elapsed:?} ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), results[0].clone(), elapsed)
}

/// The marked sleep itself is gone at once; a shell whose command line names it (the sh that
/// ran it, sshd's session shell) may take a moment to finish dying, never more than a second.
fn assert_gone(marker: &str) {
    let left = pgrep(&format!("^{marker}"));
    assert!(left.is_empty(), "{marker:?} still runs as {left:?}");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = pgrep(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes naming {marker:?} remain: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_timed_out_and_gone(result: &Value, elapsed: Duration, marker: &str) {
    eprintln!(
        "{} timed out; opsdeck returned after {elapsed:?}",
        result["transport"]
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "returned after {elapsed:?}: {result}"
    );
    let err = result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{result}"));
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(err.contains("stopped"), "{err}");
    assert_eq!(result["may_have_run"], true, "{result}");
    assert_gone(marker);
}

fn assert_ran_and_gone(result: &Value, elapsed: Duration, marker: &str) {
    eprintln!(
        "{} ran; opsdeck returned after {elapsed:?}",
        result["transport"]
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "returned after {elapsed:?}: {result}"
    );
    assert_eq!(result["status"]["code"], 0, "{result}");
    assert_eq!(result["stdout"], "x\n", "{result}");
    assert_gone(marker);
}

#[test]
fn local_timeout_kills_the_command_and_its_background_children() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = local_inventory(dir.path());

    let sleep = unique_sleep();
    let _cleanup = Leftovers(sleep.clone());
    let (code, result, elapsed) = exec(&inv, "1s", &format!("{sleep}; true"));
    assert_ne!(code, 0);
    assert_timed_out_and_gone(&result, elapsed, &sleep);

    // A child that ignores SIGTERM gets SIGKILL after the grace.
    let stubborn = unique_sleep();
    let _cleanup = Leftovers(stubborn.clone());
    let (_, result, elapsed) = exec(&inv, "1s", &format!("trap '' TERM; {stubborn} & wait"));
    assert_timed_out_and_gone(&result, elapsed, &stubborn);
}

#[test]
fn local_command_that_backgrounds_a_child_returns_when_the_shell_exits_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = local_inventory(dir.path());
    let sleep = unique_sleep();
    let _cleanup = Leftovers(sleep.clone());
    // The timeout is far away: the command itself ends at once, its child holds stdout.
    let (code, result, elapsed) = exec(&inv, "30s", &format!("{sleep} & echo x"));
    assert_eq!(code, 0, "{result}");
    assert_ran_and_gone(&result, elapsed, &sleep);
}

fn ssh_inventory(lab: &SshHosts) -> PathBuf {
    lab.write_inventory("one.toml", &[("h1".to_owned(), lab.ssh_table(0, ""))])
}

#[test]
fn ssh_timeout_ends_the_remote_command() {
    let lab = SshHosts::start(1);
    let inv = ssh_inventory(&lab);

    let sleep = unique_sleep();
    let _cleanup = Leftovers(sleep.clone());
    let (code, result, elapsed) = exec(&inv, "1s", &format!("{sleep}; true"));
    assert_ne!(code, 0);
    assert_timed_out_and_gone(&result, elapsed, &sleep);

    // Ignoring SIGTERM does not save it: SIGKILL follows over the channel.
    let stubborn = unique_sleep();
    let _cleanup = Leftovers(stubborn.clone());
    let (_, result, elapsed) = exec(&inv, "1s", &format!("trap '' TERM; {stubborn}"));
    assert_timed_out_and_gone(&result, elapsed, &stubborn);

    // The connection is still good for the next command.
    let (code, result, _) = exec(&inv, "10s", "echo x");
    assert_eq!(code, 0, "{result}");
}

#[test]
fn ssh_command_that_backgrounds_a_child_returns_when_it_exits_and_leaves_nothing() {
    let lab = SshHosts::start(1);
    let inv = ssh_inventory(&lab);
    let sleep = unique_sleep();
    let _cleanup = Leftovers(sleep.clone());
    let (code, result, elapsed) = exec(&inv, "30s", &format!("{sleep} & echo x"));
    assert_eq!(code, 0, "{result}");
    assert_ran_and_gone(&result, elapsed, &sleep);

    // Under a timeout too.
    let sleep = unique_sleep();
    let _cleanup = Leftovers(sleep.clone());
    let (_, result, elapsed) = exec(&inv, "1s", &format!("{sleep} & echo x"));
    assert_ran_and_gone(&result, elapsed, &sleep);
}

/// Bytes of the command's huge output: 2 GiB of `x`, then a last line.
const HUGE: &str = "head -c 2147483648 /dev/zero | tr '\\0' x; echo; echo the-end";
const HUGE_BYTES: u64 = 2_147_483_648 + 1 + 8;

/// Runs `HUGE` through `/usr/bin/time -v opsdeck exec` and returns (result, peak RSS in KiB).
fn exec_huge(inv: &Path) -> (Value, u64) {
    let bin = assert_cmd::cargo::cargo_bin("opsdeck");
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(bin)
        .env_remove("SSH_AUTH_SOCK")
        .arg("-i")
        .arg(inv)
        .args(["exec", "all", "--timeout", "300s", "--json-all", "--", HUGE])
        .output()
        .expect("/usr/bin/time runs opsdeck");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kib = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS figure in:\n{stderr}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{stderr}"));
    (results[0].clone(), rss_kib)
}

fn assert_head_tail_and_mark(result: &Value, rss_kib: u64) {
    assert_eq!(result["status"]["code"], 0, "{}", result["error"]);
    assert_eq!(result["truncated"], true);
    assert_eq!(result["stdout_bytes"], HUGE_BYTES);
    let stdout = result["stdout"].as_str().expect("stdout");
    let kept = opsdeck::transport::DEFAULT_OUTPUT_LIMIT;
    let omitted = HUGE_BYTES - kept as u64;
    let mark = format!("\n[opsdeck: {omitted} bytes omitted]\n");
    let (head, tail) = stdout
        .split_once(&mark)
        .unwrap_or_else(|| panic!("no mark {mark:?} in the output"));
    assert_eq!(head.len(), kept / 2);
    assert!(head.bytes().all(|b| b == b'x'));
    assert_eq!(tail.len(), kept / 2);
    assert!(
        tail.ends_with("xxx\nthe-end\n"),
        "{}",
        &tail[tail.len() - 20..]
    );
    // Generous: the kept output, its JSON copy and the runtime fit easily; 2 GiB never could.
    assert!(rss_kib < 200 * 1024, "peak RSS {rss_kib} KiB");
    eprintln!("peak RSS of opsdeck exec printing 2 GiB: {rss_kib} KiB");
}

#[test]
fn local_output_of_2_gib_keeps_head_and_tail_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let (result, rss_kib) = exec_huge(&local_inventory(dir.path()));
    assert_head_tail_and_mark(&result, rss_kib);
}

#[test]
fn ssh_output_of_2_gib_keeps_head_and_tail_in_bounded_memory() {
    let lab = SshHosts::start(1);
    let (result, rss_kib) = exec_huge(&ssh_inventory(&lab));
    assert_head_tail_and_mark(&result, rss_kib);
}

/// A secret split over two writes (two chunks) or cut by the truncation never shows, in whole
/// or in part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_split_by_chunks_or_by_the_truncation_stay_masked() {
    use opsdeck::transport::{self, OutputLimit, local::LocalHost};
    use tokio_util::sync::CancellationToken;

    let canary = "c4n4ry-Secr3t-value-77";
    let _secret = opsdeck::secret::Secret::new(canary);
    let run = |cmd: String, limit: OutputLimit| async move {
        transport::run_limited(
            &LocalHost,
            &cmd,
            Duration::from_secs(20),
            limit,
            CancellationToken::new(),
        )
        .await
        .expect("runs")
    };
    let (first, rest) = canary.split_at(9);
    // Two writes with a pause between: two chunks.
    let out = run(
        format!("printf 'a {first}'; sleep 0.2; printf '{rest} b'"),
        OutputLimit::DEFAULT,
    )
    .await;
    assert_eq!(out.stdout, "a ******** b");

    // 64 bytes of head end inside one copy, 64 bytes of tail start inside another.
    let pad = "y".repeat(60);
    let filler = "z".repeat(10_000);
    let out = run(
        format!("printf '%s' '{pad}{canary}{filler}{canary}{pad}'"),
        OutputLimit { head: 64, tail: 80 },
    )
    .await;
    assert!(out.truncated, "{out:?}");
    assert_eq!(
        out.stdout_bytes,
        (2 * 60 + 2 * canary.len() + 10_000) as u64
    );
    for part in [
        canary,
        first,
        rest,
        &canary[..4],
        &canary[canary.len() - 4..],
    ] {
        assert!(
            !out.stdout.contains(part),
            "{part:?} shows in {:?}",
            out.stdout
        );
    }
    assert!(
        out.stdout
            .starts_with(&format!("{pad}********\n[opsdeck: ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with(&format!("]\n********{pad}")),
        "{}",
        out.stdout
    );
}
