//! `{{name}}` substitution in step commands, quoted for where the value lands.
//!
//! By default a value can never change the shape of the command it is put into: in a shell
//! command it becomes one shell word (shlex-quoted), in SQL an integer literal or a quoted
//! string literal, in a Redis command exactly one argument, in a URL a percent-encoded piece.
//! `{{raw name}}` inserts the value as is; the validator warns about every such use.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A variable's value: captured text, or a captured list (from `list = true` captures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

impl Value {
    pub fn as_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::List(l) => l.join(" "),
        }
    }
}

/// Variables in scope: inputs, captures, builtins.
pub type Vars = BTreeMap<String, Value>;

/// Where a rendered template goes, which decides how values are quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    Shell,
    Sql,
    /// One Redis argument: no quoting needed, the value is one argument whatever it holds.
    Arg,
    Url,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var {
        name: String,
        raw: bool,
        offset: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Byte offset in the template text.
    pub offset: usize,
    pub message: String,
}

/// A variable a template uses, with its byte offset in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarUse {
    pub name: String,
    pub raw: bool,
    pub offset: usize,
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.ends_with('.')
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: base + open,
                    message: "`{{` without a closing `}}`".to_owned(),
                });
            };
            let inner = after[..close].trim();
            let (raw, name) = match inner.strip_prefix("raw ") {
                Some(n) => (true, n.trim()),
                None => (false, inner),
            };
            if !valid_name(name) {
                return Err(TemplateError {
                    offset: base + open,
                    message: format!(
                        "{inner:?} is not a variable name (letters, digits, `_` and `.`; \
                         `{{{{raw name}}}}` to skip quoting)"
                    ),
                });
            }
            parts.push(Part::Var {
                name: name.to_owned(),
                raw,
                offset: base + open,
            });
            let consumed = open + 2 + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    pub fn vars(&self) -> Vec<VarUse> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Var { name, raw, offset } => Some(VarUse {
                    name: name.clone(),
                    raw: *raw,
                    offset: *offset,
                }),
                Part::Lit(_) => None,
            })
            .collect()
    }

    /// Renders with every value quoted for `q`; `Err(name)` names the first undefined variable.
    pub fn render(&self, q: Quoting, vars: &Vars) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, raw, .. } => {
                    let v = lookup(vars, name).ok_or_else(|| name.clone())?;
                    if *raw {
                        out.push_str(&v.as_text());
                    } else {
                        out.push_str(&quote_value(&v, q));
                    }
                }
            }
        }
        Ok(out)
    }

    /// SQL with every value as a bound parameter: one `?` per value (a list becomes
    /// `?, ?, ?`), the values in order. `{{raw x}}` is inlined as written. `Err(name)` names
    /// the first undefined variable.
    pub fn render_sql_params(&self, vars: &Vars) -> Result<(String, Vec<String>), String> {
        let mut out = String::new();
        let mut params = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, raw, .. } => {
                    let v = lookup(vars, name).ok_or_else(|| name.clone())?;
                    match (raw, v) {
                        (true, v) => out.push_str(&v.as_text()),
                        (false, Value::Str(s)) => {
                            out.push('?');
                            params.push(s);
                        }
                        (false, Value::List(items)) => {
                            out.push_str(&vec!["?"; items.len().max(1)].join(", "));
                            if items.is_empty() {
                                // `IN ()` is a syntax error; `IN (NULL)` matches nothing.
                                out.replace_range(out.len() - 1.., "NULL");
                            }
                            params.extend(items);
                        }
                    }
                }
            }
        }
        Ok((out, params))
    }

    /// Like [`Template::render`], but an undefined variable shows as `<name>` (dry runs show
    /// what is known before the steps that capture the rest have run).
    pub fn render_lenient(&self, q: Quoting, vars: &Vars) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, raw, .. } => match lookup(vars, name) {
                    Some(v) if *raw => out.push_str(&v.as_text()),
                    Some(v) => out.push_str(&quote_value(&v, q)),
                    None => {
                        let _ = write!(out, "<{name}>");
                    }
                },
            }
        }
        out
    }
}

/// A variable's value; `NAME.count` is the length of a list (or 0/1 for text).
pub fn lookup(vars: &Vars, name: &str) -> Option<Value> {
    if let Some(v) = vars.get(name) {
        return Some(v.clone());
    }
    let base = name.strip_suffix(".count")?;
    vars.get(base).map(|v| {
        Value::Str(
            match v {
                Value::List(l) => l.len(),
                Value::Str(s) => usize::from(!s.is_empty()),
            }
            .to_string(),
        )
    })
}

fn quote_value(v: &Value, q: Quoting) -> String {
    match v {
        Value::Str(s) => quote(s, q),
        Value::List(items) => {
            let sep = if q == Quoting::Sql { ", " } else { " " };
            items
                .iter()
                .map(|s| quote(s, q))
                .collect::<Vec<_>>()
                .join(sep)
        }
    }
}

pub fn quote(s: &str, q: Quoting) -> String {
    match q {
        Quoting::Shell => shlex::try_quote(s).map_or_else(
            // Only a NUL byte makes quoting fail; no shell word can hold one.
            |_| "''".to_owned(),
            std::borrow::Cow::into_owned,
        ),
        Quoting::Sql => sql_literal(s),
        Quoting::Arg => s.to_owned(),
        Quoting::Url => url_encode(s),
    }
}

/// An integer stays a bare integer (so `KILL {{id}}` works); anything else becomes a quoted
/// string literal with quotes and backslashes escaped.
fn sql_literal(s: &str) -> String {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.len() < 19 && digits.chars().all(|c| c.is_ascii_digit()) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::Str((*v).to_owned())))
            .collect()
    }

    #[test]
    fn shell_values_are_one_word_whatever_they_hold() {
        let t = Template::parse("du -sh {{dir}} | head").expect("parses");
        let v = vars(&[("dir", "/var/log; rm -rf /")]);
        assert_eq!(
            t.render(Quoting::Shell, &v).expect("renders"),
            "du -sh '/var/log; rm -rf /' | head"
        );
        let raw = Template::parse("echo {{raw dir}}").expect("parses");
        assert_eq!(
            raw.render(Quoting::Shell, &v).expect("renders"),
            "echo /var/log; rm -rf /"
        );
    }

    #[test]
    fn sql_integers_stay_bare_and_text_is_a_safe_literal() {
        let t = Template::parse("KILL {{id}}").expect("parses");
        assert_eq!(
            t.render(Quoting::Sql, &vars(&[("id", "42")])).expect("ok"),
            "KILL 42"
        );
        assert_eq!(
            t.render(Quoting::Sql, &vars(&[("id", "1; DROP TABLE x")]))
                .expect("ok"),
            "KILL '1; DROP TABLE x'"
        );
        assert_eq!(
            t.render(Quoting::Sql, &vars(&[("id", "a'b\\")]))
                .expect("ok"),
            "KILL 'a''b\\\\'"
        );
    }

    #[test]
    fn undefined_and_malformed_variables_are_reported() {
        let t = Template::parse("a {{x}} {{ raw y }}").expect("parses");
        assert_eq!(t.render(Quoting::Shell, &Vars::new()), Err("x".to_owned()));
        assert_eq!(t.render_lenient(Quoting::Shell, &Vars::new()), "a <x> <y>");
        let names: Vec<_> = t.vars().into_iter().map(|v| (v.name, v.raw)).collect();
        assert_eq!(names, vec![("x".to_owned(), false), ("y".to_owned(), true)]);
        assert!(Template::parse("a {{x").is_err());
        assert!(Template::parse("a {{x y}}").is_err());
    }

    #[test]
    fn list_count_and_list_rendering() {
        let mut v = Vars::new();
        v.insert(
            "ids".to_owned(),
            Value::List(vec!["1".into(), "2".into(), "x y".into()]),
        );
        assert_eq!(lookup(&v, "ids.count"), Some(Value::Str("3".into())));
        let t = Template::parse("echo {{ids}}").expect("parses");
        assert_eq!(t.render(Quoting::Shell, &v).expect("ok"), "echo 1 2 'x y'");
        assert_eq!(quote("a b/ü", Quoting::Url), "a%20b%2F%C3%BC");
    }
}
