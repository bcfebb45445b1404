//! Process hygiene for the `opsdeck` binary: a panic hook that masks secrets (and chains with
//! the console's terminal-restoring hook), and a quiet end when stdout is a closed pipe
//! (`opsdeck runbooks --json | head -c 100`).
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an `EPIPE` error and `println!` turns
//! it into a panic. Every headless output goes through [`print`], which ends the process with
//! [`BROKEN_PIPE_EXIT`] instead; the panic hook catches the `println!`s that remain.

use std::io::{self, Write as _};

use crate::secret;

/// Exit status after stdout was closed under us: 128 + SIGPIPE, what a shell reports for a
/// program killed by a broken pipe.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes `text` to stdout and flushes. A closed pipe ends the process quietly with
/// [`BROKEN_PIPE_EXIT`]; other errors are returned.
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit_broken_pipe(),
        other => other,
    }
}

/// [`print`] with a newline.
pub fn println(text: &str) -> io::Result<()> {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    print(&line)
}

/// Ends the process after stdout was closed: nothing more can be said there, and saying it on
/// stderr would only be noise in a pipeline.
pub fn exit_broken_pipe() -> ! {
    std::process::exit(BROKEN_PIPE_EXIT)
}

/// True if `e` (or anything in its chain) is a broken pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

/// The text of a panic payload (`&str` or `String`; anything else has none).
fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// `println!` to a closed stdout panics with this (std's wording, stable for years).
fn is_print_to_closed_pipe(message: &str) -> bool {
    message.starts_with("failed printing to std") && message.contains("Broken pipe")
}

/// Replaces the default panic hook (which would print the message unmasked) with one that
/// masks the message (and the backtrace, with `RUST_BACKTRACE`), logs it, and prints it on
/// stderr; a `println!` into a closed pipe ends the process quietly instead.
///
/// Install it first thing in `main`: the console's `ratatui::init` then wraps it with its own
/// hook, which restores the terminal and calls this one, so the message lands on a sane
/// screen.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = payload_text(info.payload());
        if is_print_to_closed_pipe(&message) {
            exit_broken_pipe();
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let message = secret::mask(&message);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        tracing::error!(thread, "panic{at}: {message}");
        let mut text = format!(
            "opsdeck: internal error (panic in thread {thread}{at}): {message}\n  \
             this is a bug: please report it with the log ({})\n",
            crate::logging::log_dir()
                .join(crate::logging::LOG_FILE)
                .display()
        );
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&secret::mask(&bt.to_string()));
            text.push('\n');
        }
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_library_wording_of_a_closed_pipe_is_recognised() {
        assert!(is_print_to_closed_pipe(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_print_to_closed_pipe("index out of bounds"));
        let e = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing");
        assert!(is_broken_pipe(&e));
        assert!(!is_broken_pipe(&anyhow::anyhow!("other")));
    }
}
