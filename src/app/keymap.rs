//! Key bindings: defaults compiled in from `keys.toml`, overridable from the user's config dir.
//! The help overlay and the key hints on screen are generated from the live keymap.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;
use toml::Spanned;

use crate::inventory::Located;

const DEFAULTS: &str = include_str!("keys.toml");

/// Everything a key can do. The `context` says where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Quit,
    Help,
    Dashboard,
    Runbooks,
    Run,
    Journal,
    Learn,
    NextView,
    PrevView,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Search,
    TopProcesses,
    Hint,
    Approve,
    Confirm,
    Deny,
    Skip,
    Retry,
    Abort,
    MarkDone,
    Note,
    NextHost,
    PrevHost,
    Export,
    ChangeInput,
    FilterTier,
    FilterSeverity,
    SuggestedFirst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    Global,
    Run,
    Browser,
}

/// (context, config name, action, what it does) — the single list the help overlay is built from.
pub const ACTIONS: &[(Context, &str, Action, &str)] = &[
    (Context::Global, "quit", Action::Quit, "quit opsdeck"),
    (
        Context::Global,
        "help",
        Action::Help,
        "show or hide this help",
    ),
    (Context::Global, "dashboard", Action::Dashboard, "dashboard"),
    (
        Context::Global,
        "runbooks",
        Action::Runbooks,
        "runbook browser",
    ),
    (Context::Global, "run", Action::Run, "the current run"),
    (
        Context::Global,
        "journal",
        Action::Journal,
        "journal of past runs",
    ),
    (
        Context::Global,
        "learn",
        Action::Learn,
        "onboarding walkthrough",
    ),
    (Context::Global, "next_view", Action::NextView, "next view"),
    (
        Context::Global,
        "prev_view",
        Action::PrevView,
        "previous view",
    ),
    (Context::Global, "up", Action::Up, "move up"),
    (Context::Global, "down", Action::Down, "move down"),
    (
        Context::Global,
        "left",
        Action::Left,
        "move left / previous tier",
    ),
    (
        Context::Global,
        "right",
        Action::Right,
        "move right / next tier",
    ),
    (
        Context::Global,
        "page_up",
        Action::PageUp,
        "scroll up a page",
    ),
    (
        Context::Global,
        "page_down",
        Action::PageDown,
        "scroll down a page",
    ),
    (Context::Global, "top", Action::Top, "go to the top"),
    (
        Context::Global,
        "bottom",
        Action::Bottom,
        "go to the bottom",
    ),
    (Context::Global, "open", Action::Open, "open the selection"),
    (Context::Global, "back", Action::Back, "back / close"),
    (Context::Global, "search", Action::Search, "search"),
    (
        Context::Global,
        "top_processes",
        Action::TopProcesses,
        "host detail: top processes now",
    ),
    (
        Context::Global,
        "hint",
        Action::Hint,
        "a hint for the running drill (counted in its score)",
    ),
    (
        Context::Global,
        "approve",
        Action::Approve,
        "approve another operator's step (team mode)",
    ),
    (
        Context::Run,
        "confirm",
        Action::Confirm,
        "confirm the pending action",
    ),
    (
        Context::Run,
        "deny",
        Action::Deny,
        "decline the pending action",
    ),
    (Context::Run, "skip", Action::Skip, "skip the step"),
    (Context::Run, "retry", Action::Retry, "retry the step"),
    (Context::Run, "abort", Action::Abort, "abort the run"),
    (
        Context::Run,
        "mark_done",
        Action::MarkDone,
        "mark a manual step done",
    ),
    (
        Context::Run,
        "note",
        Action::Note,
        "add a note to the journal",
    ),
    (
        Context::Run,
        "next_host",
        Action::NextHost,
        "next host's output",
    ),
    (
        Context::Run,
        "prev_host",
        Action::PrevHost,
        "previous host's output",
    ),
    (
        Context::Run,
        "export",
        Action::Export,
        "export the run as Markdown",
    ),
    (
        Context::Run,
        "change_input",
        Action::ChangeInput,
        "change an input and go back to the step that reads it",
    ),
    (
        Context::Browser,
        "filter_tier",
        Action::FilterTier,
        "cycle the tier filter",
    ),
    (
        Context::Browser,
        "filter_severity",
        Action::FilterSeverity,
        "cycle the severity filter",
    ),
    (
        Context::Browser,
        "suggested_first",
        Action::SuggestedFirst,
        "suggested runbooks first",
    ),
];

/// A key with modifiers, as written in the keymap (`ctrl-c`, `G`, `enter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
}

/// `KeyCode` subset with an order, so keymaps are deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    Char(char),
    F(u8),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
}

impl Key {
    pub fn from_event(ev: &KeyEvent) -> Option<Key> {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let alt = ev.modifiers.contains(KeyModifiers::ALT);
        let code = match ev.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(c),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::BackTab => KeyCodeOrd::BackTab,
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            _ => return None,
        };
        Some(Key { code, ctrl, alt })
    }

    pub fn parse(s: &str) -> Option<Key> {
        let mut ctrl = false;
        let mut alt = false;
        let mut shift = false;
        let mut rest = s;
        loop {
            if let Some(r) = rest.strip_prefix("ctrl-") {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("alt-") {
                alt = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("shift-").filter(|r| !r.is_empty()) {
                shift = true;
                rest = r;
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCodeOrd::Char(if shift { c.to_ascii_uppercase() } else { c }),
            _ => match rest {
                "enter" => KeyCodeOrd::Enter,
                "esc" => KeyCodeOrd::Esc,
                "tab" if shift => KeyCodeOrd::BackTab,
                "tab" => KeyCodeOrd::Tab,
                "backtab" => KeyCodeOrd::BackTab,
                "up" => KeyCodeOrd::Up,
                "down" => KeyCodeOrd::Down,
                "left" => KeyCodeOrd::Left,
                "right" => KeyCodeOrd::Right,
                "pageup" => KeyCodeOrd::PageUp,
                "pagedown" => KeyCodeOrd::PageDown,
                "home" => KeyCodeOrd::Home,
                "end" => KeyCodeOrd::End,
                "space" => KeyCodeOrd::Char(' '),
                "backspace" => KeyCodeOrd::Backspace,
                f if f.starts_with('f') => {
                    KeyCodeOrd::F(f[1..].parse().ok().filter(|n| (1..=12).contains(n))?)
                }
                _ => return None,
            },
        };
        Some(Key { code, ctrl, alt })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "F{n}"),
            other => {
                let s = match other {
                    KeyCodeOrd::Enter => "enter",
                    KeyCodeOrd::Esc => "esc",
                    KeyCodeOrd::Tab => "tab",
                    KeyCodeOrd::BackTab => "shift-tab",
                    KeyCodeOrd::Up => "↑",
                    KeyCodeOrd::Down => "↓",
                    KeyCodeOrd::Left => "←",
                    KeyCodeOrd::Right => "→",
                    KeyCodeOrd::PageUp => "pgup",
                    KeyCodeOrd::PageDown => "pgdn",
                    KeyCodeOrd::Home => "home",
                    KeyCodeOrd::End => "end",
                    _ => "backspace",
                };
                f.write_str(s)
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymapFile {
    #[serde(default)]
    global: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    run: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    browser: BTreeMap<String, Spanned<Vec<String>>>,
}

/// The live keymap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: BTreeMap<(Context, Action), Vec<Key>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeymapError(pub Located);

impl Keymap {
    /// The compiled-in defaults (always valid: a test keeps them so).
    pub fn defaults() -> Keymap {
        let mut k = Keymap {
            bindings: BTreeMap::new(),
        };
        let _ = k.apply(DEFAULTS, Path::new("keys.toml"));
        k
    }

    /// Defaults, then the user's `keys.toml` if there is one.
    pub fn load() -> Result<Keymap, KeymapError> {
        let mut k = Keymap::defaults();
        if let Some(p) = user_file().filter(|p| p.is_file()) {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| KeymapError(Located::at(&p, "", None, format!("cannot read: {e}"))))?;
            k.apply(&text, &p)?;
        }
        Ok(k)
    }

    /// Applies a keymap file over this one: each action it names gets exactly the keys listed.
    pub fn apply(&mut self, text: &str, path: &Path) -> Result<(), KeymapError> {
        let file: KeymapFile = toml::from_str(text).map_err(|e| {
            KeymapError(
                Located::at(path, text, e.span(), e.message().trim_end().to_owned()).hint(
                    "sections are [global], [run], [browser]; see the defaults in the README",
                ),
            )
        })?;
        for (ctx, table) in [
            (Context::Global, &file.global),
            (Context::Run, &file.run),
            (Context::Browser, &file.browser),
        ] {
            for (name, keys) in table {
                let Some((_, _, action, _)) =
                    ACTIONS.iter().find(|(c, n, _, _)| *c == ctx && n == name)
                else {
                    let known: Vec<&str> = ACTIONS
                        .iter()
                        .filter(|(c, ..)| *c == ctx)
                        .map(|(_, n, ..)| *n)
                        .collect();
                    return Err(KeymapError(
                        Located::at(
                            path,
                            text,
                            Some(keys.span()),
                            format!("unknown action {name:?}"),
                        )
                        .hint(format!("actions here: {}", known.join(", "))),
                    ));
                };
                let mut parsed = Vec::new();
                for k in keys.get_ref() {
                    parsed.push(Key::parse(k).ok_or_else(|| {
                        KeymapError(
                            Located::at(
                                path,
                                text,
                                Some(keys.span()),
                                format!("cannot read key {k:?} for {name}"),
                            )
                            .hint("write e.g. \"q\", \"ctrl-c\", \"enter\", \"pagedown\", \"f1\""),
                        )
                    })?);
                }
                self.bindings.insert((ctx, *action), parsed);
            }
        }
        Ok(())
    }

    /// The action bound to `key` in `ctx`, falling back to global bindings.
    pub fn action(&self, ctx: Context, key: Key) -> Option<Action> {
        let find = |c: Context| {
            self.bindings
                .iter()
                .find(|((bc, _), keys)| *bc == c && keys.contains(&key))
                .map(|((_, a), _)| *a)
        };
        if ctx != Context::Global
            && let Some(a) = find(ctx)
        {
            return Some(a);
        }
        find(Context::Global)
    }

    pub fn keys(&self, ctx: Context, action: Action) -> &[Key] {
        self.bindings.get(&(ctx, action)).map_or(&[], Vec::as_slice)
    }

    /// "q/ctrl-c" for hints.
    pub fn hint(&self, ctx: Context, action: Action) -> String {
        self.keys(ctx, action)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// (context, keys, description) rows for the help overlay, in `ACTIONS` order.
    pub fn help_rows(&self) -> Vec<(Context, String, &'static str)> {
        ACTIONS
            .iter()
            .map(|(c, _, a, d)| (*c, self.hint(*c, *a), *d))
            .filter(|(_, k, _)| !k.is_empty())
            .collect()
    }
}

/// The user's keymap: `keys.toml` in the config directory ([`crate::config::dir`]).
pub fn user_file() -> Option<PathBuf> {
    crate::config::dir().map(|d| d.join("keys.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_bind_every_action() {
        let mut k = Keymap {
            bindings: BTreeMap::new(),
        };
        k.apply(DEFAULTS, Path::new("keys.toml"))
            .expect("defaults parse");
        for (ctx, name, action, _) in ACTIONS {
            assert!(
                !k.keys(*ctx, *action).is_empty(),
                "{name} has no default key"
            );
        }
    }

    #[test]
    fn run_context_falls_back_to_global_and_user_overrides_replace() {
        let mut k = Keymap::defaults();
        let q = Key::parse("q").expect("key");
        assert_eq!(k.action(Context::Run, q), Some(Action::Quit));
        assert_eq!(
            k.action(Context::Run, Key::parse("y").expect("key")),
            Some(Action::Confirm)
        );
        k.apply("[global]\nquit = [\"ctrl-q\"]\n", Path::new("user.toml"))
            .expect("applies");
        assert_eq!(k.action(Context::Global, q), None);
        assert_eq!(
            k.action(Context::Global, Key::parse("ctrl-q").expect("key")),
            Some(Action::Quit)
        );
        assert_eq!(k.hint(Context::Global, Action::Quit), "ctrl-q");
    }

    #[test]
    fn unknown_action_and_bad_key_are_located() {
        let mut k = Keymap::defaults();
        let e = k
            .apply("[global]\nqiut = [\"q\"]\n", Path::new("keys.toml"))
            .expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("keys.toml:2:8: unknown action \"qiut\""),
            "{e}"
        );
        let e = k
            .apply("[run]\nconfirm = [\"ctrl-\"]\n", Path::new("keys.toml"))
            .expect_err("bad key");
        assert!(e.to_string().contains("cannot read key \"ctrl-\""), "{e}");
    }

    #[test]
    fn keys_round_trip_through_display() {
        for s in ["q", "ctrl-c", "enter", "G", "f1", "?"] {
            let k = Key::parse(s).expect(s);
            assert_eq!(
                Key::parse(&k.to_string().replace('F', "f")).expect("again"),
                k,
                "{s}"
            );
        }
    }
}
