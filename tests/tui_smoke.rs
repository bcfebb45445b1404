//! A smoke test of the built binary in a real terminal (tmux): start the console, see its
//! title, resize, open help, quit, and find the terminal restored.

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .expect("tmux runs (apt-get install tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(socket: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux(socket, &["capture-pane", "-p", "-t", "smoke"]);
        if pred(&screen) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .output();
    }
}

#[test]
fn console_starts_resizes_shows_help_and_restores_the_terminal_on_quit() {
    let bin = env!("CARGO_BIN_EXE_opsdeck");
    let logs = tempfile::tempdir().expect("tempdir");
    let socket = format!("opsdeck-smoke-{}", std::process::id());
    let _session = Session(socket.clone());
    tmux(
        &socket,
        &[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "smoke",
            "-x",
            "80",
            "-y",
            "24",
            "sh",
        ],
    );
    let cmd = format!(
        "unset OPSDECK_INVENTORY; OPSDECK_LOG_DIR={} {bin}; echo EXIT\"\"ED-$?",
        logs.path().display()
    );
    tmux(&socket, &["send-keys", "-t", "smoke", &cmd, "Enter"]);

    let screen = wait_for(&socket, "the title", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("opsdeck") && l.contains("Dashboard"))
    });
    assert!(
        screen.contains("LOCAL"),
        "the default inventory's tier is shown:\n{screen}"
    );
    assert_eq!(
        tmux(
            &socket,
            &["display", "-p", "-t", "smoke", "#{alternate_on}"]
        )
        .trim(),
        "1",
        "console uses the alternate screen"
    );

    tmux(
        &socket,
        &["resize-window", "-t", "smoke", "-x", "120", "-y", "40"],
    );
    wait_for(&socket, "a redraw at the new width", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.chars().count() >= 110 && l.trim_end().ends_with("UTC"))
    });

    tmux(&socket, &["send-keys", "-t", "smoke", "?"]);
    wait_for(&socket, "the help overlay", |s| {
        s.contains("Help — keys") && s.contains("quit opsdeck")
    });
    tmux(&socket, &["send-keys", "-t", "smoke", "Escape"]);
    wait_for(&socket, "help to close", |s| !s.contains("Help — keys"));

    tmux(&socket, &["send-keys", "-t", "smoke", "q"]);
    let screen = wait_for(&socket, "exit", |s| s.contains("EXITED-"));
    assert!(screen.contains("EXITED-0"), "clean exit status:\n{screen}");
    assert_eq!(
        tmux(
            &socket,
            &["display", "-p", "-t", "smoke", "#{alternate_on}"]
        )
        .trim(),
        "0",
        "alternate screen left"
    );
    assert_eq!(
        tmux(&socket, &["display", "-p", "-t", "smoke", "#{cursor_flag}"]).trim(),
        "1",
        "cursor visible again"
    );
    // Raw mode is off again: the shell echoes what we type.
    tmux(
        &socket,
        &["send-keys", "-t", "smoke", "echo typed-$((40+2))", "Enter"],
    );
    wait_for(&socket, "the shell to echo", |s| s.contains("typed-42"));
}
