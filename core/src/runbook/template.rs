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
    /// what is known before the steps that capture the rest have run). For display only:
    /// never execute its result (`<name>` is a shell redirection); an undefined variable at
    /// run time fails the step.
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
    pub place: String,
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
    ArithBracket {
        depth: usize,
    },
    /// `# …` up to the end of the line.
    Comment,
}

impl Sh {
    fn place(self) -> &'static str {
        match self {
            Sh::Code { .. } => "in code",
            Sh::Cond => "inside [[ … ]] (bash evaluates -eq/-lt/… operands as arithmetic)",
            Sh::Single => "inside single quotes",
            Sh::AnsiC => "inside $'…' quotes",
            Sh::Double => "inside double quotes",
            Sh::Backtick => "inside `…` backticks",
            Sh::Param { .. } => "inside ${…}",
            Sh::Arith { .. } | Sh::ArithBracket { .. } => "inside an arithmetic expression",
            Sh::Comment => "inside a # comment",
        }
    }

    fn is_code(self) -> bool {
        matches!(self, Sh::Code { .. } | Sh::Cond)
    }
}

/// Builtins and commands that run an argument as shell code or arithmetic: a value among
/// their arguments would be code, whatever its quoting.
const CODE_COMMANDS: &[&str] = &["eval", "let", "trap", "alias", "ssh", "watch"];
/// Commands whose `-c` option takes a script.
const SCRIPT_COMMANDS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "busybox", "su", "runuser", "flock",
];
/// Builtins that can give a variable the integer attribute (`-i`).
const DECLARE: &[&str] = &["declare", "typeset", "local", "readonly", "export"];

/// A context on the stack. Code frames keep the words of their current simple command, and
/// the word of the enclosing frame that a `$(…)` interrupted.
#[derive(Debug)]
struct Frame {
    sh: Sh,
    words: Vec<String>,
    outer_word: Word,
}

/// The word being read in code: its text after quote removal (expansions add nothing),
/// whether an unquoted `[` or `=` is in it.
#[derive(Debug, Default)]
struct Word {
    text: String,
    started: bool,
    bracket: bool,
    assign: bool,
}

struct ShellScan<'i, 'a> {
    items: &'i [Item<'a>],
    i: usize,
    stack: Vec<Frame>,
    escaped: bool,
    after_dollar: bool,
    word: Word,
    /// Some `declare -i` (or typeset/local/…) gave a variable the integer attribute.
    integers: bool,
    /// Here-documents announced on this line: (delimiter, strip leading tabs).
    pending: Vec<(String, bool)>,
    /// The here-document being read: delimiter, strip tabs, current line.
    heredoc: Option<(String, bool, String)>,
    out: Vec<Misplaced>,
}

fn shell_misplaced(items: &[Item<'_>]) -> Vec<Misplaced> {
    ShellScan {
        items,
        i: 0,
        stack: vec![Frame {
            sh: Sh::Code {
                subst: false,
                parens: 0,
            },
            words: Vec::new(),
            outer_word: Word::default(),
        }],
        escaped: false,
        after_dollar: false,
        word: Word::default(),
        integers: false,
        pending: Vec::new(),
        heredoc: None,
        out: Vec::new(),
    }
    .run()
}

impl ShellScan<'_, '_> {
    fn run(mut self) -> Vec<Misplaced> {
        while let Some(item) = self.items.get(self.i).copied() {
            self.i += 1;
            if self.heredoc.is_some() {
                self.heredoc_item(item);
                continue;
            }
            match item {
                Item::Var { name, raw, offset } => self.var(name, raw, offset),
                Item::Char(c) => {
                    self.after_dollar = false;
                    self.char(c);
                }
            }
        }
        self.out
    }

    fn ch(&self, i: usize) -> Option<char> {
        match self.items.get(i) {
            Some(Item::Char(c)) => Some(*c),
            _ => None,
        }
    }

    fn top(&self) -> Sh {
        self.stack.last().map_or(
            Sh::Code {
                subst: false,
                parens: 0,
            },
            |f| f.sh,
        )
    }

    fn push(&mut self, sh: Sh) {
        let outer_word = if matches!(sh, Sh::Code { .. } | Sh::Cond) {
            std::mem::take(&mut self.word)
        } else {
            Word::default()
        };
        self.stack.push(Frame {
            sh,
            words: Vec::new(),
            outer_word,
        });
    }

    fn pop(&mut self) {
        if self.stack.len() <= 1 {
            return;
        }
        if self.top().is_code() {
            self.end_word();
        }
        if let Some(f) = self.stack.pop()
            && f.sh.is_code()
        {
            // The substitution is part of the word it interrupted.
            self.word = f.outer_word;
            self.word.started = true;
        }
    }

    fn flag(&mut self, name: &str, offset: usize, place: String) {
        self.out.push(Misplaced {
            name: name.to_owned(),
            offset,
            place,
        });
    }

    fn heredoc_item(&mut self, item: Item<'_>) {
        let Some((delim, strip, line)) = self.heredoc.as_mut() else {
            return;
        };
        match item {
            Item::Var { name, raw, offset } => {
                line.push('\0');
                if !raw {
                    self.flag(name, offset, "inside a here-document".to_owned());
                }
            }
            Item::Char('\n') => {
                let l = if *strip {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if l == delim.as_str() {
                    self.heredoc = None;
                    if !self.pending.is_empty() {
                        let (d, s) = self.pending.remove(0);
                        self.heredoc = Some((d, s, String::new()));
                    }
                } else {
                    line.clear();
                }
            }
            Item::Char(c) => line.push(c),
        }
    }

    /// Why a value in code at this point would run as code or arithmetic, if it would.
    fn code_place(&self) -> Option<String> {
        if self.word.bracket {
            return Some(
                "inside [ ] in a word (bash evaluates array subscripts as arithmetic)".to_owned(),
            );
        }
        if self.integers && self.word.assign {
            return Some(
                "in an assignment after `declare -i` (bash evaluates it as arithmetic)".to_owned(),
            );
        }
        // The simple commands of every enclosing code frame: `eval $(echo {{x}})` runs it.
        for f in self.stack.iter().filter(|f| f.sh.is_code()) {
            for (j, w) in f.words.iter().enumerate() {
                let base = w.rsplit('/').next().unwrap_or(w);
                if CODE_COMMANDS.contains(&base) {
                    return Some(format!(
                        "in a `{base}` command, which runs its arguments as code"
                    ));
                }
                let script = w.starts_with('-') && !w.starts_with("--") && w.contains('c');
                if script
                    && let Some(shell) = f.words[..j].iter().find_map(|s| {
                        let b = s.rsplit('/').next().unwrap_or(s);
                        SCRIPT_COMMANDS.contains(&b).then_some(b)
                    })
                {
                    return Some(format!("in a `{shell} -c` script"));
                }
            }
        }
        None
    }

    fn var(&mut self, name: &str, raw: bool, offset: usize) {
        let top = self.top();
        let place = if self.escaped {
            Some("right after a backslash".to_owned())
        } else if std::mem::take(&mut self.after_dollar) {
            Some("right after `$`".to_owned())
        } else if matches!(top, Sh::Code { .. }) {
            self.code_place()
        } else {
            Some(top.place().to_owned())
        };
        self.escaped = false;
        if let (Some(place), false) = (place, raw) {
            self.flag(name, offset, place);
        }
        self.word.started = true;
        self.word.text.push('\0');
    }

    fn word_char(&mut self, c: char) {
        self.word.started = true;
        self.word.text.push(c);
    }

    fn end_word(&mut self) {
        let w = std::mem::take(&mut self.word);
        if !w.started {
            return;
        }
        if let Some(f) = self.stack.iter_mut().rev().find(|f| f.sh.is_code()) {
            if w.text.starts_with('-')
                && w.text.contains('i')
                && f.words
                    .last()
                    .is_some_and(|p| DECLARE.contains(&p.as_str()))
            {
                self.integers = true;
            }
            f.words.push(w.text);
        }
    }

    /// `;`, `&`, `|` or a newline: the simple command ends.
    fn end_command(&mut self) {
        self.end_word();
        if let Some(f) = self.stack.last_mut() {
            f.words.clear();
        }
    }

    /// After a `$` at `self.i - 1`: opens `$(`, `$((`, `${`, `$[`, `$'` (not in double
    /// quotes), skips a parameter name, or marks a lone `$`.
    fn dollar(&mut self, in_double: bool) {
        match (self.ch(self.i), self.ch(self.i + 1)) {
            (Some('('), Some('(')) => {
                self.push(Sh::Arith { parens: 0 });
                self.i += 2;
            }
            (Some('('), _) => {
                self.push(Sh::Code {
                    subst: true,
                    parens: 0,
                });
                self.i += 1;
            }
            (Some('{'), _) => {
                self.push(Sh::Param { braces: 0 });
                self.i += 1;
            }
            (Some('['), _) => {
                self.push(Sh::ArithBracket { depth: 0 });
                self.i += 1;
            }
            (Some('\''), _) if !in_double => {
                self.push(Sh::AnsiC);
                self.i += 1;
            }
            (Some(c), _) if c.is_ascii_digit() || "@*#?$!-".contains(c) => self.i += 1,
            (Some(c), _) if c.is_ascii_alphabetic() || c == '_' => {
                while self
                    .ch(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.i += 1;
                }
            }
            _ => self.after_dollar = true,
        }
    }

    fn char(&mut self, c: char) {
        let top = self.top();
        // Characters inside quotes of a code word are part of the word's text.
        let in_word = self.stack.len() >= 2 && self.stack[self.stack.len() - 2].sh.is_code();
        match top {
            Sh::Comment => {
                if c == '\n' {
                    self.pop();
                    self.i -= 1; // the newline also ends the command
                }
            }
            Sh::Single => {
                if c == '\'' {
                    self.pop();
                } else if in_word {
                    self.word.text.push(c);
                }
            }
            Sh::AnsiC | Sh::Backtick => {
                let close = if top == Sh::AnsiC { '\'' } else { '`' };
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == close {
                    self.pop();
                }
            }
            Sh::Double => {
                if self.escaped {
                    self.escaped = false;
                    if in_word {
                        self.word.text.push(c);
                    }
                    return;
                }
                match c {
                    '\\' => self.escaped = true,
                    '$' => self.dollar(true),
                    '`' => self.push(Sh::Backtick),
                    '"' => self.pop(),
                    c if in_word => self.word.text.push(c),
                    _ => {}
                }
            }
            Sh::Param { .. } | Sh::Arith { .. } | Sh::ArithBracket { .. } => {
                if self.escaped {
                    self.escaped = false;
                    return;
                }
                self.expansion_char(c, top);
            }
            Sh::Code { .. } | Sh::Cond => self.code_char(c, top),
        }
    }

    fn expansion_char(&mut self, c: char, top: Sh) {
        match c {
            '\\' => self.escaped = true,
            '$' => self.dollar(true),
            '`' => self.push(Sh::Backtick),
            '"' | '\'' if matches!(top, Sh::Param { .. }) => {
                self.push(if c == '"' { Sh::Double } else { Sh::Single });
            }
            '{' | '}' | '(' | ')' | '[' | ']' => {
                let next = self.ch(self.i);
                let Some(f) = self.stack.last_mut() else {
                    return;
                };
                match (&mut f.sh, c) {
                    (Sh::Param { braces: n }, '{') | (Sh::Arith { parens: n }, '(') => *n += 1,
                    (Sh::Param { braces }, '}') => {
                        if *braces > 0 {
                            *braces -= 1;
                        } else {
                            self.pop();
                        }
                    }
                    // Only `))` ends arithmetic; a lone `)` keeps it open (the shell may
                    // re-read the whole as `$( (…) )`: staying inside refuses more, never
                    // less).
                    (Sh::Arith { parens }, ')') => {
                        if *parens > 0 {
                            *parens -= 1;
                        } else if next == Some(')') {
                            self.i += 1;
                            self.pop();
                        }
                    }
                    (Sh::ArithBracket { depth }, '[') => *depth += 1,
                    (Sh::ArithBracket { depth }, ']') => {
                        if *depth > 0 {
                            *depth -= 1;
                        } else {
                            self.pop();
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn code_char(&mut self, c: char, top: Sh) {
        if self.escaped {
            self.escaped = false;
            if c != '\n' {
                self.word_char(c);
            }
            return;
        }
        let word_start = !self.word.started;
        match c {
            '\n' | ';' | '&' | '|' => {
                self.end_command();
                if c == '\n' && !self.pending.is_empty() {
                    let (d, s) = self.pending.remove(0);
                    self.heredoc = Some((d, s, String::new()));
                }
            }
            '\\' => {
                self.escaped = true;
                self.word.started = self.word.started || self.ch(self.i) != Some('\n');
            }
            '\'' => {
                self.word.started = true;
                self.push(Sh::Single);
            }
            '"' => {
                self.word.started = true;
                self.push(Sh::Double);
            }
            '`' => {
                self.word.started = true;
                self.push(Sh::Backtick);
            }
            '#' if word_start => self.push(Sh::Comment),
            '$' => {
                self.word.started = true;
                self.dollar(false);
            }
            '(' => {
                self.end_word();
                if self.ch(self.i) == Some('(') {
                    // `((…))`: arithmetic (bash treats it so even where a subshell was meant).
                    self.push(Sh::Arith { parens: 0 });
                    self.i += 1;
                } else if let Some(Frame {
                    sh: Sh::Code { parens, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    *parens += 1;
                }
            }
            ')' => {
                self.end_word();
                match self.stack.last_mut() {
                    Some(Frame {
                        sh:
                            Sh::Code {
                                subst: true,
                                parens: 0,
                            },
                        ..
                    }) => self.pop(),
                    Some(Frame {
                        sh: Sh::Code { parens, .. },
                        ..
                    }) => *parens = parens.saturating_sub(1),
                    _ => {}
                }
            }
            '<' if self.ch(self.i) == Some('<') && self.ch(self.i + 1) == Some('<') => {
                // A here-string: an ordinary word follows.
                self.end_word();
                self.i += 2;
            }
            '<' if self.ch(self.i) == Some('<') => {
                self.end_word();
                self.i += 1;
                let (delim, strip, used, var) = heredoc_delimiter(self.items, self.i);
                if let Some((name, offset)) = var {
                    self.flag(name, offset, "as a here-document delimiter".to_owned());
                }
                self.pending.push((delim, strip));
                self.i += used;
            }
            // A redirection ends the word before it; its target is an ordinary word.
            '<' | '>' | ' ' | '\t' => self.end_word(),
            '[' if word_start && self.ch(self.i) == Some('[') && top != Sh::Cond => {
                self.push(Sh::Cond);
                self.i += 1;
            }
            ']' if word_start && top == Sh::Cond && self.ch(self.i) == Some(']') => {
                self.i += 1;
                self.pop();
            }
            '[' => {
                self.word.bracket = true;
                self.word_char(c);
            }
            '=' => {
                self.word.assign = true;
                self.word_char(c);
            }
            c => self.word_char(c),
        }
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
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == '\\' => {}
                None if c.is_whitespace() || ";&|<>()".contains(c) => break,
                Some(_) | None => delim.push(c),
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
                        place: place.to_owned(),
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
        Quoting::Shell if s.contains('\n') => {
            // Never a raw newline in the command: bash, recovering from a syntax error earlier
            // on the line, would read the rest of the value as new commands. One line instead:
            // the value's lines joined back by printf (trailing newlines are dropped, as by
            // any command substitution).
            let lines: Vec<String> = s.split('\n').map(shell_word).collect();
            format!("\"$(printf '%s\\n' {})\"", lines.join(" "))
        }
        Quoting::Shell => shell_word(s),
        Quoting::Sql => sql_literal(s),
        Quoting::Arg => s.to_owned(),
        Quoting::Url => url_encode(s),
    }
}

/// One shell word holding `s` (no newline in `s`).
fn shell_word(s: &str) -> String {
    shlex::try_quote(s).map_or_else(
        // Only a NUL byte makes quoting fail; no shell word can hold one.
        |_| "''".to_owned(),
        std::borrow::Cow::into_owned,
    )
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
    fn a_shell_value_never_puts_a_newline_in_the_command() {
        let t = Template::parse("echo {{x}}").expect("parses");
        let v = vars(&[("x", "a b\n'c'\n\ntouch /x #")]);
        let out = t.render(Quoting::Shell, &v).expect("renders");
        assert!(!out.contains('\n'), "{out}");
        assert_eq!(
            out,
            "echo \"$(printf '%s\\n' 'a b' \"'c'\" '' 'touch /x #')\""
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

    fn shell_places(src: &str) -> Vec<(String, String)> {
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
            ("echo $(($()){{x}}))", "inside an arithmetic expression"),
            ("echo $[a[1]{{x}}]", "inside an arithmetic expression"),
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
                "in a `let` command, which runs its arguments as code",
            ),
            (
                "$none let n={{x}}",
                "in a `let` command, which runs its arguments as code",
            ),
            (
                "l'et' n={{x}}",
                "in a `let` command, which runs its arguments as code",
            ),
            (
                "eval echo {{x}}",
                "in a `eval` command, which runs its arguments as code",
            ),
            (
                "eval $(echo {{x}})",
                "in a `eval` command, which runs its arguments as code",
            ),
            (
                "true && trap {{x}} EXIT",
                "in a `trap` command, which runs its arguments as code",
            ),
            (
                "ssh db1 cat {{x}}",
                "in a `ssh` command, which runs its arguments as code",
            ),
            ("/bin/bash -c {{x}}", "in a `bash -c` script"),
            ("sh -ec {{x}}", "in a `sh -c` script"),
            (
                "a[{{x}}]=1",
                "inside [ ] in a word (bash evaluates array subscripts as arithmetic)",
            ),
            (
                "declare -i n; n={{x}}",
                "in an assignment after `declare -i` (bash evaluates it as arithmetic)",
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
            "grep -e pattern {{x}}",
            "echo eval; echo {{x}}",
            "n={{x}}; sh -c 'echo \"$1\"' sh \"$n\"",
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
        let places = |src: &str| -> Vec<String> {
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
