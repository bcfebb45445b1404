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

/// A placeholder written where quoting cannot protect its value: inside quotes, a comment, a
/// here-document, an arithmetic expression, or right after `\` or `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misplaced {
    pub name: String,
    /// Byte offset of the `{{` in the template text.
    pub offset: usize,
    /// Where it stands, e.g. "inside single quotes".
    pub place: &'static str,
}

/// One piece of template text: a character, or a placeholder.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Char(char),
    Var {
        name: &'a str,
        raw: bool,
        offset: usize,
    },
}

impl Template {
    fn items(&self) -> Vec<Item<'_>> {
        let mut out = Vec::new();
        let mut vars = self.parts.iter().filter_map(|p| match p {
            Part::Var { name, raw, offset } => Some((name.as_str(), *raw, *offset)),
            Part::Lit(_) => None,
        });
        let mut next = vars.next();
        let mut chars = self.source.char_indices();
        while let Some((at, c)) = chars.next() {
            match next {
                Some((name, raw, offset)) if offset == at => {
                    out.push(Item::Var { name, raw, offset });
                    next = vars.next();
                    // Skip to just after the closing `}}`.
                    let close = self.source[at + 2..]
                        .find("}}")
                        .map_or(self.source.len(), |c| at + 2 + c + 2);
                    for (i, _) in chars.by_ref() {
                        if i + 1 >= close {
                            break;
                        }
                    }
                }
                _ => out.push(Item::Char(c)),
            }
        }
        out
    }

    /// Placeholders a value could escape from once rendered for `q` (shell or SQL; other
    /// quotings put each value in a place of its own). `{{raw x}}` placeholders are not
    /// reported: they are unquoted on purpose, and the validator warns about each.
    ///
    /// `{{x}}` becomes one shell word, or one bound SQL parameter. Written inside the
    /// author's own quotes (`'{{x}}'`, `"{{x}}"`), the quoting of the value closes the
    /// author's quote and lets the value's text run as code; the same in a `#` comment (a
    /// newline in the value ends it), a here-document, `$((…))`/`((…))`/`[[…]]`/`let` (bash
    /// evaluates operands as arithmetic, and `a[$(cmd)]` runs `cmd`), `${…}`, backticks, and
    /// right after `\` or `$`. In SQL a bound parameter is only a parameter outside string
    /// literals, identifiers and comments.
    pub fn misplaced(&self, q: Quoting) -> Vec<Misplaced> {
        match q {
            Quoting::Shell => shell_misplaced(&self.items()),
            Quoting::Sql => sql_misplaced(&self.items()),
            Quoting::Arg | Quoting::Url => Vec::new(),
        }
    }

    /// SQL with one `?` per value and the values in order, for a prepared statement: the
    /// server never parses a value as SQL. A list becomes `?, ?, ?` (one parameter per item;
    /// an empty list becomes `NULL`, so `IN ({{ids}})` matches nothing). `{{raw x}}` is
    /// inlined as text (the validator warns). `Err(name)` names the first undefined variable.
    pub fn render_sql_params(&self, vars: &Vars) -> Result<(String, Vec<String>), String> {
        let mut query = String::new();
        let mut params = Vec::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => query.push_str(s),
                Part::Var { name, raw, .. } => {
                    let v = lookup(vars, name).ok_or_else(|| name.clone())?;
                    match (v, *raw) {
                        (v, true) => query.push_str(&v.as_text()),
                        (Value::Str(s), false) => {
                            query.push('?');
                            params.push(s);
                        }
                        (Value::List(items), false) if items.is_empty() => {
                            query.push_str("NULL");
                        }
                        (Value::List(items), false) => {
                            query.push_str(&vec!["?"; items.len()].join(", "));
                            params.extend(items);
                        }
                    }
                }
            }
        }
        Ok((query, params))
    }

    /// What an operator reads for an SQL step: each value shown inline as a quoted string
    /// literal (as the server receives it: a string parameter), lists as `'a', 'b'`;
    /// undefined variables as `<name>` (dry runs). For display only, never for execution.
    pub fn render_sql_display(&self, vars: &Vars) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var { name, raw, .. } => match lookup(vars, name) {
                    Some(v) if *raw => out.push_str(&v.as_text()),
                    Some(Value::Str(s)) => out.push_str(&sql_string_literal(&s)),
                    Some(Value::List(items)) if items.is_empty() => out.push_str("NULL"),
                    Some(Value::List(items)) => out.push_str(
                        &items
                            .iter()
                            .map(|s| sql_string_literal(s))
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    None => {
                        let _ = write!(out, "<{name}>");
                    }
                },
            }
        }
        out
    }
}

/// Shell contexts, innermost last on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sh {
    /// Unquoted code: the whole command, or the inside of `$(…)` (closed by `)` at depth 0).
    Code {
        subst: bool,
        parens: usize,
    },
    /// `[[ … ]]` (bash): words as in code, but `-eq`/`-lt` operands are arithmetic.
    Cond,
    /// The arguments of `let`, up to the end of the command.
    Let,
    Single,
    /// `$'…'`
    AnsiC,
    Double,
    Backtick,
    /// `${…}`
    Param {
        braces: usize,
    },
    /// `$((…))` and `((…))`
    Arith {
        parens: usize,
    },
    /// `$[…]`
    ArithBracket,
    /// `# …` up to the end of the line.
    Comment,
}

impl Sh {
    fn place(self) -> &'static str {
        match self {
            Sh::Code { .. } => "in code",
            Sh::Cond => "inside [[ … ]] (bash evaluates -eq/-lt/… operands as arithmetic)",
            Sh::Let => "in a `let` expression (evaluated as arithmetic)",
            Sh::Single => "inside single quotes",
            Sh::AnsiC => "inside $'…' quotes",
            Sh::Double => "inside double quotes",
            Sh::Backtick => "inside `…` backticks",
            Sh::Param { .. } => "inside ${…}",
            Sh::Arith { .. } | Sh::ArithBracket => "inside an arithmetic expression",
            Sh::Comment => "inside a # comment",
        }
    }
}

/// Words after which the next word is again a command.
const SHELL_KEYWORDS: &[&str] = &[
    "then", "do", "else", "elif", "if", "while", "until", "time", "!", "{", "exec", "command",
    "sudo", "env", "nice", "nohup", "timeout",
];

#[allow(clippy::too_many_lines)]
fn shell_misplaced(items: &[Item<'_>]) -> Vec<Misplaced> {
    let ch = |i: usize| match items.get(i) {
        Some(Item::Char(c)) => Some(*c),
        _ => None,
    };
    let mut out = Vec::new();
    let flag = |out: &mut Vec<Misplaced>, name: &str, offset, place| {
        out.push(Misplaced {
            name: name.to_owned(),
            offset,
            place,
        });
    };
    let mut stack = vec![Sh::Code {
        subst: false,
        parens: 0,
    }];
    let mut escaped = false;
    let mut after_dollar = false;
    // In code: at the start of a word (`#` starts a comment), and of a command.
    let mut word_start = true;
    let mut cmd_pos = true;
    let mut word = String::new();
    let mut word_at_cmd = true;
    // Here-documents announced on this line: (delimiter, strip leading tabs).
    let mut pending: Vec<(String, bool)> = Vec::new();
    // The here-document being read: delimiter, strip tabs, current line, line holds a var.
    let mut heredoc: Option<(String, bool, String)> = None;
    let mut i = 0;
    while let Some(item) = items.get(i).copied() {
        i += 1;
        let top = stack.last().copied().unwrap_or(Sh::Code {
            subst: false,
            parens: 0,
        });
        // A here-document body: only its closing line matters.
        if let Some((delim, strip, line)) = heredoc.as_mut() {
            match item {
                Item::Var { name, raw, offset } => {
                    if !raw {
                        flag(&mut out, name, offset, "inside a here-document");
                    }
                    line.push('\0');
                }
                Item::Char('\n') => {
                    let l = if *strip {
                        line.trim_start_matches('\t')
                    } else {
                        line.as_str()
                    };
                    if l == delim.as_str() {
                        heredoc = None;
                        if !pending.is_empty() {
                            let (d, s) = pending.remove(0);
                            heredoc = Some((d, s, String::new()));
                        }
                    } else {
                        line.clear();
                    }
                }
                Item::Char(c) => line.push(c),
            }
            continue;
        }
        let c = match item {
            Item::Var { name, raw, offset } => {
                let in_code = matches!(top, Sh::Code { .. });
                if !raw {
                    if escaped {
                        flag(&mut out, name, offset, "right after a backslash");
                    } else if after_dollar {
                        flag(&mut out, name, offset, "right after `$`");
                    } else if !in_code {
                        flag(&mut out, name, offset, top.place());
                    }
                }
                escaped = false;
                after_dollar = false;
                if in_code {
                    if word.is_empty() {
                        word_at_cmd = cmd_pos;
                    }
                    word_start = false;
                    cmd_pos = false;
                    word.push('\0');
                }
                continue;
            }
            Item::Char(c) => c,
        };
        let was_dollar = std::mem::take(&mut after_dollar);
        match top {
            Sh::Comment => {
                if c == '\n' {
                    stack.pop();
                    i -= 1; // the newline ends the command too
                }
            }
            Sh::Single => {
                if c == '\'' {
                    stack.pop();
                }
            }
            Sh::AnsiC | Sh::Backtick => {
                let close = if top == Sh::AnsiC { '\'' } else { '`' };
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == close {
                    stack.pop();
                }
            }
            Sh::Double | Sh::Param { .. } | Sh::Arith { .. } | Sh::ArithBracket => {
                if escaped {
                    escaped = false;
                    continue;
                }
                match c {
                    '\\' => escaped = true,
                    '$' => {
                        if let Some(n) = dollar(&mut stack, ch(i), ch(i + 1)) {
                            i += n;
                            // Inside a new `$(`, a command starts.
                            word_start = true;
                            cmd_pos = true;
                            word.clear();
                        } else {
                            after_dollar = true;
                        }
                    }
                    '`' => stack.push(Sh::Backtick),
                    '"' if top == Sh::Double => {
                        stack.pop();
                    }
                    '"' | '\'' if matches!(top, Sh::Param { .. }) => {
                        stack.push(if c == '"' { Sh::Double } else { Sh::Single });
                    }
                    '{' => {
                        if let Some(Sh::Param { braces }) = stack.last_mut() {
                            *braces += 1;
                        }
                    }
                    '}' => {
                        if let Some(Sh::Param { braces }) = stack.last_mut() {
                            if *braces == 0 {
                                stack.pop();
                            } else {
                                *braces -= 1;
                            }
                        }
                    }
                    '(' => {
                        if let Some(Sh::Arith { parens }) = stack.last_mut() {
                            *parens += 1;
                        }
                    }
                    ')' => {
                        if let Some(Sh::Arith { parens }) = stack.last_mut() {
                            if *parens == 0 {
                                stack.pop();
                                if ch(i) == Some(')') {
                                    i += 1;
                                }
                            } else {
                                *parens -= 1;
                            }
                        }
                    }
                    ']' if top == Sh::ArithBracket => {
                        stack.pop();
                    }
                    _ => {}
                }
            }
            Sh::Code { .. } | Sh::Cond | Sh::Let => {
                if escaped {
                    escaped = false;
                    word_start = false;
                    if word.is_empty() {
                        word_at_cmd = cmd_pos;
                    }
                    cmd_pos = false;
                    word.push(c);
                    continue;
                }
                let starts_word = word_start;
                let separator = matches!(
                    c,
                    ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
                );
                if separator && !word.is_empty() {
                    // A word ended in command position: a keyword keeps the next word there,
                    // `let` makes the rest of the command arithmetic.
                    let w = std::mem::take(&mut word);
                    if word_at_cmd && SHELL_KEYWORDS.contains(&w.as_str()) {
                        cmd_pos = true;
                    }
                    if word_at_cmd && w == "let" && top != Sh::Let {
                        stack.push(Sh::Let);
                    }
                }
                if top == Sh::Let && matches!(c, '\n' | ';' | '&' | '|' | ')') {
                    // The command ends: handle the character in the enclosing context.
                    stack.pop();
                    i -= 1;
                    continue;
                }
                match c {
                    ' ' | '\t' => word_start = true,
                    '\n' | ';' | '&' | '|' => {
                        word_start = true;
                        cmd_pos = true;
                        if c == '\n' && !pending.is_empty() {
                            let (d, s) = pending.remove(0);
                            heredoc = Some((d, s, String::new()));
                        }
                    }
                    '\\' => {
                        escaped = true;
                        word_start = false;
                    }
                    '\'' => {
                        stack.push(if was_dollar { Sh::AnsiC } else { Sh::Single });
                        word_start = false;
                        cmd_pos = false;
                    }
                    '"' => {
                        stack.push(Sh::Double);
                        word_start = false;
                        cmd_pos = false;
                    }
                    '`' => {
                        stack.push(Sh::Backtick);
                        word_start = false;
                        cmd_pos = false;
                    }
                    '#' if starts_word => stack.push(Sh::Comment),
                    '$' => {
                        let opened = dollar(&mut stack, ch(i), ch(i + 1));
                        if let Some(n) = opened {
                            i += n;
                        } else {
                            after_dollar = true;
                        }
                        // Inside a new `$(`, a command starts.
                        let subst = matches!(
                            stack.last(),
                            Some(Sh::Code {
                                subst: true,
                                parens: 0
                            })
                        ) && opened.is_some();
                        word_start = subst;
                        cmd_pos = subst;
                    }
                    '(' => {
                        if cmd_pos && ch(i) == Some('(') {
                            stack.push(Sh::Arith { parens: 0 });
                            i += 1;
                        } else if let Some(Sh::Code { parens, .. }) = stack.last_mut() {
                            *parens += 1;
                        }
                        word_start = true;
                        cmd_pos = true;
                    }
                    ')' => {
                        match stack.last_mut() {
                            Some(Sh::Code {
                                subst: true,
                                parens: 0,
                            }) => {
                                stack.pop();
                            }
                            Some(Sh::Code { parens, .. }) => *parens = parens.saturating_sub(1),
                            _ => {}
                        }
                        word_start = true;
                        cmd_pos = true;
                    }
                    '<' if ch(i) == Some('<') && ch(i + 1) == Some('<') => {
                        // A here-string: an ordinary word follows.
                        i += 2;
                        word_start = true;
                    }
                    '<' if ch(i) == Some('<') => {
                        i += 1;
                        let (delim, strip, used, var) = heredoc_delimiter(items, i);
                        if let Some((name, offset)) = var {
                            flag(&mut out, name, offset, "as a here-document delimiter");
                        }
                        pending.push((delim, strip));
                        i += used;
                        word_start = true;
                    }
                    '<' | '>' => word_start = true,
                    '[' if starts_word && ch(i) == Some('[') && top != Sh::Cond => {
                        stack.push(Sh::Cond);
                        i += 1;
                        word_start = false;
                        cmd_pos = false;
                    }
                    ']' if starts_word && top == Sh::Cond && ch(i) == Some(']') => {
                        stack.pop();
                        i += 1;
                        word_start = false;
                    }
                    c => {
                        if word.is_empty() {
                            word_at_cmd = cmd_pos;
                        }
                        word.push(c);
                        word_start = false;
                        cmd_pos = false;
                    }
                }
            }
        }
    }
    out
}

/// After a `$` whose next two characters are `a` and `b`: opens `$(`, `$((`, `${`, `$[` or
/// `$'` and returns how many characters that consumed.
fn dollar(stack: &mut Vec<Sh>, a: Option<char>, b: Option<char>) -> Option<usize> {
    match (a, b) {
        (Some('('), Some('(')) => {
            stack.push(Sh::Arith { parens: 0 });
            Some(2)
        }
        (Some('('), _) => {
            stack.push(Sh::Code {
                subst: true,
                parens: 0,
            });
            Some(1)
        }
        (Some('{'), _) => {
            stack.push(Sh::Param { braces: 0 });
            Some(1)
        }
        (Some('['), _) => {
            stack.push(Sh::ArithBracket);
            Some(1)
        }
        (Some('\''), _) => {
            stack.push(Sh::AnsiC);
            Some(1)
        }
        _ => None,
    }
}

/// The delimiter after `<<` starting at `i`: (delimiter with quotes removed, `<<-`, items
/// consumed, a placeholder in it).
fn heredoc_delimiter<'a>(
    items: &[Item<'a>],
    mut i: usize,
) -> (String, bool, usize, Option<(&'a str, usize)>) {
    let start = i;
    let mut strip = false;
    if matches!(items.get(i), Some(Item::Char('-'))) {
        strip = true;
        i += 1;
    }
    while matches!(items.get(i), Some(Item::Char(' ' | '\t'))) {
        i += 1;
    }
    let mut delim = String::new();
    let mut var = None;
    let mut quote: Option<char> = None;
    while let Some(item) = items.get(i) {
        match *item {
            Item::Var { name, offset, .. } => {
                var.get_or_insert((name, offset));
                delim.push('\0');
            }
            Item::Char(c) => match quote {
                Some(q) if c == q => quote = None,
                Some(_) => delim.push(c),
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '\\' => {}
                None if c.is_whitespace() || ";&|<>()".contains(c) => break,
                None => delim.push(c),
            },
        }
        i += 1;
    }
    (delim, strip, i - start, var)
}

fn sql_misplaced(items: &[Item<'_>]) -> Vec<Misplaced> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum St {
        Code,
        Str(char),
        Ident,
        LineComment,
        BlockComment,
    }
    let ch = |i: usize| match items.get(i) {
        Some(Item::Char(c)) => Some(*c),
        _ => None,
    };
    let mut out = Vec::new();
    let mut st = St::Code;
    let mut i = 0;
    while let Some(item) = items.get(i).copied() {
        i += 1;
        let c = match item {
            Item::Var { name, raw, offset } => {
                let place = match st {
                    St::Code => None,
                    St::Str('"') => Some("inside a \"…\" string literal"),
                    St::Str(_) => Some("inside a '…' string literal"),
                    St::Ident => Some("inside a `…` identifier"),
                    St::LineComment | St::BlockComment => Some("inside a comment"),
                };
                if let (Some(place), false) = (place, raw) {
                    out.push(Misplaced {
                        name: name.to_owned(),
                        offset,
                        place,
                    });
                }
                continue;
            }
            Item::Char(c) => c,
        };
        st = match (st, c) {
            (St::Code, '\'' | '"') => St::Str(c),
            (St::Code, '`') => St::Ident,
            (St::Code, '#') => St::LineComment,
            (St::Code, '-')
                if ch(i) == Some('-')
                    && match items.get(i + 1) {
                        None => true,
                        Some(Item::Char(n)) => n.is_whitespace() || n.is_control(),
                        Some(Item::Var { .. }) => false,
                    } =>
            {
                St::LineComment
            }
            (St::Code, '/') if ch(i) == Some('*') => {
                i += 1;
                St::BlockComment
            }
            (St::Str(q), '\\') => {
                i += 1;
                St::Str(q)
            }
            (St::Str(q), x) if x == q => {
                if ch(i) == Some(q) {
                    i += 1;
                    St::Str(q)
                } else {
                    St::Code
                }
            }
            (St::Ident, '`') => {
                if ch(i) == Some('`') {
                    i += 1;
                    St::Ident
                } else {
                    St::Code
                }
            }
            (St::LineComment, '\n') => St::Code,
            (St::BlockComment, '*') if ch(i) == Some('/') => {
                i += 1;
                St::Code
            }
            (s, _) => s,
        };
    }
    out
}

/// Always a quoted string literal (display of a bound string parameter).
fn sql_string_literal(s: &str) -> String {
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

    fn shell_places(src: &str) -> Vec<(String, &'static str)> {
        Template::parse(src)
            .expect("parses")
            .misplaced(Quoting::Shell)
            .into_iter()
            .map(|m| (m.name, m.place))
            .collect()
    }

    #[test]
    fn shell_placeholders_in_quotes_and_other_unsafe_places_are_found() {
        for (src, place) in [
            ("echo '{{x}}'", "inside single quotes"),
            ("echo \"{{x}}\"", "inside double quotes"),
            (
                "echo \"a $(printf '%s' '{{x}}') b\"",
                "inside single quotes",
            ),
            ("echo `cat {{x}}`", "inside `…` backticks"),
            ("echo {{y}} # and {{x}}", "inside a # comment"),
            ("echo \\{{x}}", "right after a backslash"),
            ("echo ${{x}}", "right after `$`"),
            ("echo ${v:-{{x}}}", "inside ${…}"),
            ("echo $(( {{x}} + 1 ))", "inside an arithmetic expression"),
            (
                "(( {{x}} > 1 )) && echo big",
                "inside an arithmetic expression",
            ),
            (
                "if [[ {{x}} -eq 1 ]]; then echo; fi",
                "inside [[ … ]] (bash evaluates -eq/-lt/… operands as arithmetic)",
            ),
            (
                "let n={{x}}+1",
                "in a `let` expression (evaluated as arithmetic)",
            ),
            ("echo $'{{x}}'", "inside $'…' quotes"),
            (
                "cat <<EOF\nline {{x}}\nEOF\necho {{y}}",
                "inside a here-document",
            ),
            ("cat <<-'EOF'\n\t{{x}}\n\tEOF", "inside a here-document"),
            ("cat <<{{x}}\nEOF", "as a here-document delimiter"),
        ] {
            let got = shell_places(src);
            assert!(
                got.iter().any(|(n, p)| n == "x" && *p == place),
                "{src:?}: {got:?}"
            );
            assert!(
                got.iter().all(|(n, _)| n == "x"),
                "{src:?}: only x: {got:?}"
            );
        }
    }

    #[test]
    fn bare_shell_placeholders_pass() {
        for src in [
            "du -sh {{x}} | head",
            "echo \"$(cat {{x}})\"",
            "x=$(echo {{x}}); echo \"$x\"",
            "echo a#{{x}} --opt={{x}} {{x}}.log",
            "echo 'it''s' {{x}} 'a\\' {{x}}",
            "echo \"a\\\"b\" {{x}}",
            "[ {{x}} -eq 1 ] && echo one",
            "grep let {{x}}",
            "cat <<< {{x}}",
            "cat <<EOF\nbody\nEOF\necho {{x}}",
            "case \"$out\" in PONG|NOAUTH*) echo {{x}};; *) echo \"down\";; esac",
            "for i in 1 2; do echo {{x}}; done",
            "echo '{{raw x}}'",
            "df -P {{x}} | tail -1 # usage",
            "echo $((1 + 2)) {{x}}",
            "echo ${HOME} {{x}}",
        ] {
            assert_eq!(shell_places(src), vec![], "{src:?}");
        }
    }

    #[test]
    fn sql_placeholders_in_literals_identifiers_and_comments_are_found() {
        let places = |src: &str| -> Vec<&'static str> {
            Template::parse(src)
                .expect("parses")
                .misplaced(Quoting::Sql)
                .into_iter()
                .map(|m| m.place)
                .collect()
        };
        let lit = "inside a '…' string literal";
        assert_eq!(places("SELECT * FROM t WHERE user LIKE '{{x}}'"), vec![lit]);
        assert_eq!(
            places("SELECT \"{{x}}\""),
            vec!["inside a \"…\" string literal"]
        );
        assert_eq!(places("SELECT `{{x}}`"), vec!["inside a `…` identifier"]);
        assert_eq!(places("SELECT 1 -- {{x}}"), vec!["inside a comment"]);
        assert_eq!(places("SELECT 1 # {{x}}"), vec!["inside a comment"]);
        assert_eq!(places("SELECT 1 /* {{x}} */"), vec!["inside a comment"]);
        assert_eq!(places("SELECT 'a''{{x}}'"), vec![lit]);
        assert_eq!(places("SELECT 'a\\'{{x}}'"), vec![lit]);
        assert!(
            places("SELECT 'it''s', 'a\\'', {{x}} FROM t WHERE a = {{x}} --\nAND b IN ({{x}})")
                .is_empty()
        );
        assert!(
            places("SELECT 1 --{{x}}").is_empty(),
            "`--` without a space is minus minus"
        );
    }

    #[test]
    fn sql_values_become_bound_parameters() {
        let t = Template::parse(
            "SELECT Id FROM p WHERE Time >= {{t}} AND User LIKE {{u}} AND Id IN ({{ids}}) AND db = {{raw db}}",
        )
        .expect("parses");
        let mut v = vars(&[("t", "60"), ("u", "'; DROP TABLE x; -- "), ("db", "'app'")]);
        v.insert(
            "ids".into(),
            Value::List(vec!["1".into(), "2".into(), "3".into()]),
        );
        let (q, params) = t.render_sql_params(&v).expect("renders");
        assert_eq!(
            q,
            "SELECT Id FROM p WHERE Time >= ? AND User LIKE ? AND Id IN (?, ?, ?) AND db = 'app'"
        );
        assert_eq!(params, vec!["60", "'; DROP TABLE x; -- ", "1", "2", "3"]);
        assert_eq!(
            t.render_sql_display(&v),
            "SELECT Id FROM p WHERE Time >= '60' AND User LIKE '''; DROP TABLE x; -- ' \
             AND Id IN ('1', '2', '3') AND db = 'app'"
        );
        v.insert("ids".into(), Value::List(vec![]));
        let (q, params) = t.render_sql_params(&v).expect("renders");
        assert!(q.contains("IN (NULL)"), "{q}");
        assert_eq!(params.len(), 2);
        assert_eq!(t.render_sql_params(&Vars::new()), Err("t".to_owned()));
        assert!(t.render_sql_display(&Vars::new()).contains("Time >= <t>"));
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
