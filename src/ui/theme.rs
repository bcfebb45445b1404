//! Themes: TOML files in `themes/`, compiled in, overridable by name from the user's config dir
//! (`~/.config/opsdeck/themes/NAME.toml`), field by field. A theme file may set any subset of
//! fields; what it leaves out comes from the built-in theme of the same name, else `dark`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use toml::Spanned;

use crate::inventory::Located;
pub use crate::probes::check::State as StateKind;

/// The built-in themes, in the order `--theme` lists them.
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("colorblind", include_str!("../../themes/colorblind.toml")),
];

#[derive(Debug, Clone, PartialEq)]
pub struct StateStyle {
    pub color: Color,
    pub symbol: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub bg: Color,
    pub dim: Color,
    pub accent: Color,
    pub border: Color,
    pub title: Color,
    pub selection_fg: Color,
    pub selection_bg: Color,
    pub header_bg: Color,
    /// State text in bold (high-contrast).
    pub bold_states: bool,
    /// Always print the state's text label next to its symbol (colour-blind safe).
    pub always_label: bool,
    pub ok: StateStyle,
    pub warning: StateStyle,
    pub critical: StateStyle,
    pub down: StateStyle,
    pub unknown: StateStyle,
    /// `NO_COLOR`: every colour is the terminal default; selection is shown by reversing.
    pub monochrome: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("{0}")]
    Invalid(Located),
    #[error("unknown theme {name:?}\n  hint: built-in themes are {}; or put {name}.toml in {}", builtin_names(), user_dir().map_or_else(|| "~/.config/opsdeck/themes".to_owned(), |d| d.display().to_string()))]
    Unknown { name: String },
    #[error("cannot read theme {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn builtin_names() -> String {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    base: BaseFile,
    #[serde(default)]
    states: StatesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseFile {
    fg: Option<Spanned<String>>,
    bg: Option<Spanned<String>>,
    dim: Option<Spanned<String>>,
    accent: Option<Spanned<String>>,
    border: Option<Spanned<String>>,
    title: Option<Spanned<String>>,
    selection_fg: Option<Spanned<String>>,
    selection_bg: Option<Spanned<String>>,
    header_bg: Option<Spanned<String>>,
    bold_states: Option<bool>,
    always_label: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatesFile {
    ok: Option<StateFile>,
    warning: Option<StateFile>,
    critical: Option<StateFile>,
    down: Option<StateFile>,
    unknown: Option<StateFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    color: Option<Spanned<String>>,
    symbol: Option<String>,
    label: Option<String>,
}

/// The user's theme directory: `$OPSDECK_CONFIG_DIR/themes` or `~/.config/opsdeck/themes`.
pub fn user_dir() -> Option<PathBuf> {
    crate::config::dir().map(|d| d.join("themes"))
}

impl Theme {
    /// Loads a theme by name: the user's file over the built-in one (or over `dark`).
    pub fn load(name: &str) -> Result<Theme, ThemeError> {
        let builtin = BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
        let user = user_dir()
            .map(|d| d.join(format!("{name}.toml")))
            .filter(|p| p.is_file());
        if builtin.is_none() && user.is_none() {
            return Err(ThemeError::Unknown {
                name: name.to_owned(),
            });
        }
        let base_text = builtin.unwrap_or(BUILTIN[0].1);
        let base_path = PathBuf::from(format!(
            "themes/{}.toml",
            if builtin.is_some() { name } else { "dark" }
        ));
        let mut theme = parse(base_text, &base_path, None)?;
        if let Some(path) = user {
            let text = std::fs::read_to_string(&path).map_err(|source| ThemeError::Read {
                path: path.clone(),
                source,
            })?;
            theme = parse(&text, &path, Some(theme))?;
        }
        theme.name = name.to_owned();
        Ok(theme)
    }

    /// Parses a theme file on its own (used by `opsdeck check` and tests); missing fields come
    /// from `dark`.
    pub fn from_file(path: &Path) -> Result<Theme, ThemeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text, path, None)
    }

    pub fn builtin(name: &str) -> Option<Theme> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(n, t)| parse(t, Path::new(&format!("themes/{n}.toml")), None).ok())
    }

    /// The default theme; built in, so it always parses (a test keeps it so).
    pub fn dark() -> Theme {
        Theme::builtin("dark").unwrap_or_else(Theme::fallback)
    }

    fn fallback() -> Theme {
        let s = |symbol: &str, label: &str| StateStyle {
            color: Color::Reset,
            symbol: symbol.to_owned(),
            label: label.to_owned(),
        };
        Theme {
            name: "fallback".to_owned(),
            fg: Color::Reset,
            bg: Color::Reset,
            dim: Color::Reset,
            accent: Color::Reset,
            border: Color::Reset,
            title: Color::Reset,
            selection_fg: Color::Reset,
            selection_bg: Color::Reset,
            header_bg: Color::Reset,
            bold_states: false,
            always_label: false,
            ok: s("●", "ok"),
            warning: s("▲", "warn"),
            critical: s("✖", "crit"),
            down: s("▼", "down"),
            unknown: s("?", "unkn"),
            monochrome: false,
        }
    }

    /// Strips every colour (for `NO_COLOR`); symbols, labels and modifiers remain.
    #[must_use]
    pub fn monochrome(mut self) -> Theme {
        for c in [
            &mut self.fg,
            &mut self.bg,
            &mut self.dim,
            &mut self.accent,
            &mut self.border,
            &mut self.title,
            &mut self.selection_fg,
            &mut self.selection_bg,
            &mut self.header_bg,
        ] {
            *c = Color::Reset;
        }
        for s in [
            &mut self.ok,
            &mut self.warning,
            &mut self.critical,
            &mut self.down,
            &mut self.unknown,
        ] {
            s.color = Color::Reset;
        }
        self.monochrome = true;
        self.always_label = true;
        self
    }

    pub fn state(&self, kind: StateKind) -> &StateStyle {
        match kind {
            StateKind::Ok => &self.ok,
            StateKind::Warning => &self.warning,
            StateKind::Critical => &self.critical,
            StateKind::Down => &self.down,
            StateKind::Unknown => &self.unknown,
        }
    }

    pub fn state_style(&self, kind: StateKind) -> Style {
        let mut st = Style::default().fg(self.state(kind).color);
        if self.bold_states || self.monochrome || kind != StateKind::Ok {
            st = st.add_modifier(Modifier::BOLD);
        }
        st
    }

    pub fn base(&self) -> Style {
        Style::default().fg(self.fg).bg(self.bg)
    }

    pub fn dim(&self) -> Style {
        Style::default().fg(self.dim)
    }

    pub fn accent(&self) -> Style {
        Style::default().fg(self.accent)
    }

    pub fn border(&self) -> Style {
        Style::default().fg(self.border)
    }

    pub fn title(&self) -> Style {
        Style::default().fg(self.title).add_modifier(Modifier::BOLD)
    }

    pub fn selection(&self) -> Style {
        if self.monochrome {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().fg(self.selection_fg).bg(self.selection_bg)
        }
    }

    pub fn header(&self) -> Style {
        Style::default().fg(self.fg).bg(self.header_bg)
    }
}

/// Validates every built-in theme and every file in the user's theme dir; returns the names
/// that load, or every problem with its position.
pub fn check_all() -> Result<Vec<String>, Vec<ThemeError>> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in BUILTIN {
        match parse(text, Path::new(&format!("themes/{name}.toml")), None) {
            Ok(_) => names.push((*name).to_owned()),
            Err(e) => errors.push(e),
        }
    }
    if let Some(dir) = user_dir()
        && let Ok(entries) = std::fs::read_dir(&dir)
    {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match Theme::load(&name) {
                Ok(_) => names.push(format!("{name} (user)")),
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok(names)
    } else {
        Err(errors)
    }
}

fn parse(text: &str, path: &Path, over: Option<Theme>) -> Result<Theme, ThemeError> {
    let file: ThemeFile = toml::from_str(text).map_err(|e| {
        ThemeError::Invalid(
            Located::at(path, text, e.span(), e.message().trim_end().to_owned())
                .hint("theme files take [base] colours and [states.ok|warning|critical|down|unknown] with color, symbol, label; see themes/dark.toml"),
        )
    })?;
    let mut t = match over {
        Some(t) => t,
        None if path.file_stem().is_some_and(|s| s == "dark") && path.starts_with("themes") => {
            Theme::fallback()
        }
        None => Theme::dark(),
    };
    if let Some(n) = file.name {
        t.name = n;
    }
    let color = |c: &Option<Spanned<String>>, into: &mut Color| -> Result<(), ThemeError> {
        if let Some(c) = c {
            *into = parse_color(c.get_ref()).ok_or_else(|| {
                ThemeError::Invalid(
                    Located::at(path, text, Some(c.span()), format!("invalid colour {:?}", c.get_ref()))
                        .hint("write a name (red, lightblue, ...), \"#rrggbb\", an index \"0\"..\"255\", or \"reset\""),
                )
            })?;
        }
        Ok(())
    };
    let b = &file.base;
    color(&b.fg, &mut t.fg)?;
    color(&b.bg, &mut t.bg)?;
    color(&b.dim, &mut t.dim)?;
    color(&b.accent, &mut t.accent)?;
    color(&b.border, &mut t.border)?;
    color(&b.title, &mut t.title)?;
    color(&b.selection_fg, &mut t.selection_fg)?;
    color(&b.selection_bg, &mut t.selection_bg)?;
    color(&b.header_bg, &mut t.header_bg)?;
    if let Some(x) = b.bold_states {
        t.bold_states = x;
    }
    if let Some(x) = b.always_label {
        t.always_label = x;
    }
    let s = &file.states;
    for (f, into) in [
        (&s.ok, &mut t.ok),
        (&s.warning, &mut t.warning),
        (&s.critical, &mut t.critical),
        (&s.down, &mut t.down),
        (&s.unknown, &mut t.unknown),
    ] {
        if let Some(f) = f {
            color(&f.color, &mut into.color)?;
            if let Some(sym) = &f.symbol {
                into.symbol.clone_from(sym);
            }
            if let Some(l) = &f.label {
                into.label.clone_from(l);
            }
        }
    }
    t.monochrome = false;
    Ok(t)
}

fn parse_color(s: &str) -> Option<Color> {
    if s.eq_ignore_ascii_case("reset") || s.eq_ignore_ascii_case("default") {
        return Some(Color::Reset);
    }
    if let Some(hex) = s.strip_prefix('#')
        && (hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Color::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_themes_is_built_in_with_the_same_text() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("themes/")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
        builtin.sort();
        assert_eq!(
            files, builtin,
            "a theme in themes/ is missing from BUILTIN (or the reverse)"
        );
        for (name, text) in BUILTIN {
            let on_disk = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("theme");
            assert_eq!(&on_disk, text, "{name}");
        }
    }

    #[test]
    fn every_builtin_theme_parses_and_has_distinct_state_symbols_and_colours() {
        for (name, text) in BUILTIN {
            let t = parse(text, Path::new(&format!("themes/{name}.toml")), None).expect(name);
            let kinds = [
                StateKind::Ok,
                StateKind::Warning,
                StateKind::Critical,
                StateKind::Down,
                StateKind::Unknown,
            ];
            for (i, a) in kinds.iter().enumerate() {
                for b in &kinds[i + 1..] {
                    assert_ne!(
                        t.state(*a).symbol,
                        t.state(*b).symbol,
                        "{name}: {a:?} and {b:?} share a symbol"
                    );
                    assert_ne!(
                        t.state(*a).color,
                        t.state(*b).color,
                        "{name}: {a:?} and {b:?} share a colour"
                    );
                }
            }
        }
    }

    #[test]
    fn a_partial_user_file_overrides_field_by_field() {
        let base = Theme::dark();
        let t = parse(
            "[states.ok]\ncolor = \"#010203\"\n",
            Path::new("user/dark.toml"),
            Some(base.clone()),
        )
        .expect("parses");
        assert_eq!(t.ok.color, Color::Rgb(1, 2, 3));
        assert_eq!(t.ok.symbol, base.ok.symbol);
        assert_eq!(t.critical, base.critical);
    }

    #[test]
    fn a_bad_colour_is_located() {
        let err =
            parse("[base]\nfg = \"#12\"\n", Path::new("x.toml"), None).expect_err("bad colour");
        assert_eq!(
            err.to_string().lines().next(),
            Some("x.toml:2:6: invalid colour \"#12\"")
        );
    }

    #[test]
    fn monochrome_keeps_symbols_and_drops_colours() {
        let t = Theme::dark().monochrome();
        assert_eq!(t.critical.color, Color::Reset);
        assert_eq!(t.critical.symbol, Theme::dark().critical.symbol);
        assert!(t.selection().add_modifier.contains(Modifier::REVERSED));
    }
}
