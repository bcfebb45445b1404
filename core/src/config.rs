//! `config.toml`: the user's defaults, in the XDG config dir (`~/.config/opsdeck/config.toml`,
//! or `$OPSDECK_CONFIG_DIR/config.toml`).
//!
//! ```toml
//! inventory = "~/ops/inventory.toml"   # used when neither -i nor $OPSDECK_INVENTORY is given
//! theme = "light"                      # used when neither --theme nor $OPSDECK_THEME is given
//! runbook_dirs = ["~/ops/runbooks"]    # searched after --runbooks/$OPSDECK_RUNBOOKS and ./runbooks
//! journal_dir = "~/ops/journal"        # used when $OPSDECK_JOURNAL_DIR is not set
//! ```
//!
//! Precedence everywhere: flag > environment > config > built-in default. Paths may start with
//! `~/`; relative paths are relative to the config file's directory. Unknown keys are errors,
//! located by file:line:col like every other file opsdeck reads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use toml::Spanned;

use crate::inventory::Located;

/// The config file's name in [`dir`].
pub const FILE: &str = "config.toml";

/// The user's config directory: `$OPSDECK_CONFIG_DIR`, else the XDG config dir
/// (`$XDG_CONFIG_HOME/opsdeck`, `~/.config/opsdeck`).
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OPSDECK_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    directories::ProjectDirs::from("", "", "opsdeck").map(|d| d.config_dir().to_path_buf())
}

/// The user's defaults, paths resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The file they came from (`None`: no config file).
    pub path: Option<PathBuf>,
    pub inventory: Option<PathBuf>,
    pub theme: Option<String>,
    pub runbook_dirs: Vec<PathBuf>,
    pub journal_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(Located),
    #[error("cannot read {}: {source}\n  hint: fix its permissions, or set OPSDECK_CONFIG_DIR to another directory", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    inventory: Option<Spanned<String>>,
    theme: Option<Spanned<String>>,
    runbook_dirs: Option<Vec<Spanned<String>>>,
    journal_dir: Option<Spanned<String>>,
}

const KEYS_HINT: &str =
    "config.toml knows: inventory, theme, runbook_dirs (a list), journal_dir (see `opsdeck help`)";

impl Config {
    /// Reads `dir()/config.toml`; no file is the empty config.
    pub fn load() -> Result<Config, ConfigError> {
        match dir() {
            Some(d) => Config::load_from(&d.join(FILE)),
            None => Ok(Config::default()),
        }
    }

    /// Reads one config file; a missing file is the empty config.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Config::parse(&text, path),
                Err(_) => Err(ConfigError::Invalid(
                    Located::at(path, "", None, "not UTF-8 text").hint("save the file as UTF-8"),
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses config text read from `path` (which relative paths are resolved against).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let hint = if e.message().starts_with("unknown field") {
                format!("remove or correct the key; {KEYS_HINT}")
            } else {
                format!("fix the TOML at this position; {KEYS_HINT}")
            };
            ConfigError::Invalid(
                Located::at(path, text, e.span(), e.message().trim_end().to_owned()).hint(hint),
            )
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let resolve = |s: &Spanned<String>, what: &str| -> Result<PathBuf, ConfigError> {
            if s.get_ref().trim().is_empty() {
                return Err(ConfigError::Invalid(
                    Located::at(path, text, Some(s.span()), format!("{what} is empty"))
                        .hint("write a path, or remove the key"),
                ));
            }
            Ok(resolve_path(s.get_ref(), base))
        };
        let theme = match file.theme {
            Some(t) if t.get_ref().trim().is_empty() => {
                return Err(ConfigError::Invalid(
                    Located::at(path, text, Some(t.span()), "theme is empty").hint(
                        "write a theme name (dark, light, high-contrast, colorblind, or a file name in the themes/ directory beside config.toml)",
                    ),
                ));
            }
            Some(t) => Some(t.into_inner()),
            None => None,
        };
        Ok(Config {
            path: Some(path.to_path_buf()),
            inventory: file
                .inventory
                .as_ref()
                .map(|s| resolve(s, "inventory"))
                .transpose()?,
            theme,
            runbook_dirs: file
                .runbook_dirs
                .unwrap_or_default()
                .iter()
                .map(|s| resolve(s, "a runbook directory"))
                .collect::<Result<_, _>>()?,
            journal_dir: file
                .journal_dir
                .as_ref()
                .map(|s| resolve(s, "journal_dir"))
                .transpose()?,
        })
    }
}

/// `~/x` under the home directory; a relative path under `base`; an absolute one as is.
fn resolve_path(p: &str, base: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    if p == "~"
        && let Some(home) = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf())
    {
        return home;
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// What a command runs with: each value from its flag (clap has already put the flag's
/// environment variable there when the flag was absent), else config.toml, else the
/// built-in default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub config: Config,
    /// `-i` / `$OPSDECK_INVENTORY`, else `inventory`; `None` watches this machine.
    pub inventory: Option<PathBuf>,
    /// `--theme` / `$OPSDECK_THEME`, else `theme`, else `dark`.
    pub theme: String,
}

impl Settings {
    pub fn resolve(inventory: Option<PathBuf>, theme: Option<String>, config: Config) -> Settings {
        Settings {
            inventory: inventory.or_else(|| config.inventory.clone()),
            theme: theme
                .or_else(|| config.theme.clone())
                .unwrap_or_else(|| "dark".to_owned()),
            config,
        }
    }

    /// Where runbooks are looked up: `--runbooks DIR` (else `$OPSDECK_RUNBOOKS`),
    /// `./runbooks`, the config's `runbook_dirs`, the user's, then the built-in ones.
    pub fn runbooks(&self, flag: Option<&Path>) -> crate::runbook::Sources {
        crate::runbook::Sources::standard(flag, &self.config.runbook_dirs)
    }
}

static CURRENT: OnceLock<Config> = OnceLock::new();

/// Makes `config` the process's config (the binary calls this once, after parsing flags).
/// Library users and tests that never call it get no config: nothing is read behind their back.
pub fn install(config: Config) {
    let _ = CURRENT.set(config);
}

/// The installed config, if any.
pub fn current() -> Option<&'static Config> {
    CURRENT.get()
}

/// The journal directory the config names (the journal's default when
/// `$OPSDECK_JOURNAL_DIR` is not set).
pub fn journal_dir() -> Option<PathBuf> {
    current().and_then(|c| c.journal_dir.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_relative_to_the_file() {
        let c = Config::parse(
            "inventory = \"inv.toml\"\ntheme = \"light\"\nrunbook_dirs = [\"rb\", \"/abs/rb\"]\njournal_dir = \"/j\"\n",
            Path::new("/etc/opsdeck/config.toml"),
        )
        .expect("parses");
        assert_eq!(c.inventory, Some(PathBuf::from("/etc/opsdeck/inv.toml")));
        assert_eq!(c.theme.as_deref(), Some("light"));
        assert_eq!(
            c.runbook_dirs,
            vec![PathBuf::from("/etc/opsdeck/rb"), PathBuf::from("/abs/rb")]
        );
        assert_eq!(c.journal_dir, Some(PathBuf::from("/j")));
    }

    #[test]
    fn an_unknown_key_is_located() {
        let e = Config::parse(
            "theme = \"dark\"\ninventroy = \"x\"\n",
            Path::new("/c/config.toml"),
        )
        .expect_err("unknown key");
        let text = e.to_string();
        assert!(
            text.starts_with("/c/config.toml:2:1: unknown field `inventroy`"),
            "{text}"
        );
        assert!(text.contains("config.toml knows: inventory"), "{text}");
    }

    #[test]
    fn a_wrong_type_and_an_empty_path_are_located() {
        let e = Config::parse("runbook_dirs = \"rb\"\n", Path::new("c.toml")).expect_err("type");
        assert!(e.to_string().starts_with("c.toml:1:16: "), "{e}");
        let e = Config::parse("\n\ninventory = \"\"\n", Path::new("c.toml")).expect_err("empty");
        assert!(
            e.to_string().starts_with("c.toml:3:13: inventory is empty"),
            "{e}"
        );
    }

    #[test]
    fn a_flag_beats_the_config_which_beats_the_default() {
        let config = Config {
            inventory: Some(PathBuf::from("/c/inv.toml")),
            theme: Some("light".to_owned()),
            ..Config::default()
        };
        let s = Settings::resolve(None, None, config.clone());
        assert_eq!(s.inventory, Some(PathBuf::from("/c/inv.toml")));
        assert_eq!(s.theme, "light");
        let s = Settings::resolve(
            Some(PathBuf::from("flag.toml")),
            Some("colorblind".to_owned()),
            config,
        );
        assert_eq!(s.inventory, Some(PathBuf::from("flag.toml")));
        assert_eq!(s.theme, "colorblind");
        let s = Settings::resolve(None, None, Config::default());
        assert_eq!((s.inventory, s.theme.as_str()), (None, "dark"));
    }

    #[test]
    fn a_missing_file_is_the_empty_config() {
        let c = Config::load_from(Path::new("/nonexistent/opsdeck/config.toml")).expect("ok");
        assert_eq!(c, Config::default());
    }
}
