//! The small condition language of `when`, `until` and numeric expectations.
//!
//! ```text
//! used_pct > 90
//! health.mysql.connections >= warning and not replica_ok
//! ids.count == 0 or (role == 'master' and lag < 5)
//! ```
//!
//! Operands are numbers, quoted strings, variables (captures, inputs, builtins; `NAME.count`
//! for the length of a list), `health.CHECK_ID` (the check's current state) and the health
//! states `ok < warning < critical < down` (`unknown` only compares with `==`/`!=`). A bare
//! operand is true when it is non-empty, not `0`/`false`, and for health not `ok`.

use std::collections::BTreeMap;

use super::template::{Value, Vars, lookup};

/// A health check's state: the probes' own five states ([`crate::probes::check::State`]).
pub use crate::probes::check::State as HealthState;

/// Current health: check id -> state.
pub type Health = BTreeMap<String, HealthState>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" | "=" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Num(f64),
    Str(String),
    /// A variable, `health.X`, or a health state word.
    Ident(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Truthy(Operand),
    Cmp(Operand, Op, Operand),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CondError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-/*".contains(c)
}

#[allow(clippy::many_single_char_names)]
fn lex(src: &str) -> Result<Vec<(usize, Tok)>, CondError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push((at, if c == '(' { Tok::Open } else { Tok::Close }));
            i += 1;
        } else if "<>=!".contains(c) {
            let two = chars.get(i + 1).is_some_and(|(_, n)| *n == '=');
            let s: String = if two {
                [c, '='].iter().collect()
            } else {
                c.to_string()
            };
            let op = Op::parse(&s).ok_or_else(|| CondError {
                offset: at,
                message: format!("{s:?} is not an operator (use < <= > >= == !=)"),
            })?;
            out.push((at, Tok::Op(op)));
            i += if two { 2 } else { 1 };
        } else if c == '\'' || c == '"' {
            let mut j = i + 1;
            let mut s = String::new();
            while j < chars.len() && chars[j].1 != c {
                s.push(chars[j].1);
                j += 1;
            }
            if j >= chars.len() {
                return Err(CondError {
                    offset: at,
                    message: "unterminated string".to_owned(),
                });
            }
            out.push((at, Tok::Str(s)));
            i = j + 1;
        } else if ident_char(c) {
            let mut j = i;
            let mut s = String::new();
            while j < chars.len() && ident_char(chars[j].1) {
                s.push(chars[j].1);
                j += 1;
            }
            let tok = match s.as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                _ => match s.parse::<f64>() {
                    Ok(n) if s.starts_with(|c: char| c.is_ascii_digit() || c == '-') => Tok::Num(n),
                    _ => Tok::Ident(s),
                },
            };
            out.push((at, tok));
            i = j;
        } else {
            return Err(CondError {
                offset: at,
                message: format!("unexpected {c:?}"),
            });
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, CondError> {
        Err(CondError {
            offset: self.at(),
            message: message.into(),
        })
    }
    fn or(&mut self) -> Result<Cond, CondError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            left = Cond::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Cond, CondError> {
        let mut left = self.atom()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            left = Cond::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }
    fn operand(&mut self) -> Result<Operand, CondError> {
        let t = self.peek().cloned();
        let o = match t {
            Some(Tok::Num(n)) => Operand::Num(n),
            Some(Tok::Str(s)) => Operand::Str(s),
            Some(Tok::Ident(s)) => Operand::Ident(s),
            _ => return self.err("expected a value, variable or health.CHECK"),
        };
        self.pos += 1;
        Ok(o)
    }
    fn atom(&mut self) -> Result<Cond, CondError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.atom()?)))
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let c = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return self.err("expected `)`");
                }
                self.pos += 1;
                Ok(c)
            }
            _ => {
                let left = self.operand()?;
                if let Some(Tok::Op(op)) = self.peek().cloned() {
                    self.pos += 1;
                    let right = self.operand()?;
                    Ok(Cond::Cmp(left, op, right))
                } else {
                    Ok(Cond::Truthy(left))
                }
            }
        }
    }
}

impl Cond {
    pub fn parse(src: &str) -> Result<Cond, CondError> {
        let toks = lex(src)?;
        let mut p = Parser {
            toks,
            pos: 0,
            end: src.len(),
        };
        let c = p.or()?;
        if p.pos < p.toks.len() {
            return p.err("unexpected text after the condition (join conditions with and/or)");
        }
        Ok(c)
    }

    /// Every identifier used (variables, `health.*`, state words), for the validator.
    pub fn idents(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        let mut op = |o: &Operand| {
            if let Operand::Ident(s) = o {
                out.push(s.clone());
            }
        };
        match self {
            Cond::Truthy(a) => op(a),
            Cond::Cmp(a, _, b) => {
                op(a);
                op(b);
            }
            Cond::Not(c) => c.collect(out),
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
        }
    }

    /// Evaluates against variables and health. `Err` names what could not be resolved.
    pub fn eval(&self, vars: &Vars, health: &Health) -> Result<bool, String> {
        match self {
            Cond::Truthy(o) => Ok(match resolve(o, vars, health)? {
                Resolved::Num(n) => n != 0.0,
                Resolved::Text(s) => !(s.is_empty() || s == "0" || s == "false"),
                Resolved::List(l) => !l.is_empty(),
                Resolved::State(s) => s != HealthState::Ok,
            }),
            Cond::Cmp(a, op, b) => {
                let (a, b) = (resolve(a, vars, health)?, resolve(b, vars, health)?);
                compare(&a, *op, &b)
            }
            Cond::Not(c) => Ok(!c.eval(vars, health)?),
            Cond::And(a, b) => Ok(a.eval(vars, health)? && b.eval(vars, health)?),
            Cond::Or(a, b) => Ok(a.eval(vars, health)? || b.eval(vars, health)?),
        }
    }
}

enum Resolved {
    Num(f64),
    Text(String),
    List(Vec<String>),
    State(HealthState),
}

fn resolve(o: &Operand, vars: &Vars, health: &Health) -> Result<Resolved, String> {
    match o {
        Operand::Num(n) => Ok(Resolved::Num(*n)),
        Operand::Str(s) => Ok(Resolved::Text(s.clone())),
        Operand::Ident(name) => {
            if let Some(check) = name.strip_prefix("health.") {
                return Ok(Resolved::State(
                    health.get(check).copied().unwrap_or(HealthState::Unknown),
                ));
            }
            if let Some(v) = lookup(vars, name) {
                return Ok(match v {
                    Value::Str(s) => match s.trim().parse::<f64>() {
                        Ok(n) => Resolved::Num(n),
                        Err(_) => Resolved::Text(s),
                    },
                    Value::List(l) => Resolved::List(l),
                });
            }
            if let Some(s) = HealthState::parse(name) {
                return Ok(Resolved::State(s));
            }
            Err(format!("`{name}` is not defined"))
        }
    }
}

#[allow(clippy::many_single_char_names)]
fn compare(a: &Resolved, op: Op, b: &Resolved) -> Result<bool, String> {
    use Resolved::{List, Num, State, Text};
    match (a, b) {
        (Num(x), Num(y)) => Ok(x.partial_cmp(y).is_some_and(|o| op.holds(o))),
        (State(x), State(y)) => match (x.rank(), y.rank()) {
            (Some(p), Some(q)) => Ok(op.holds(p.cmp(&q))),
            _ => match op {
                Op::Eq => Ok(x == y),
                Op::Ne => Ok(x != y),
                _ => Ok(false),
            },
        },
        (State(s), Text(t)) | (Text(t), State(s)) => match op {
            Op::Eq => Ok(s.as_str() == t),
            Op::Ne => Ok(s.as_str() != t),
            _ => Err(format!("cannot order health state against {t:?}")),
        },
        (List(l), Text(t)) | (Text(t), List(l)) => match op {
            Op::Eq => Ok(l.contains(t)),
            Op::Ne => Ok(!l.contains(t)),
            _ => Err("a list compares only with == / != (use NAME.count for its length)".into()),
        },
        _ => {
            let text = |r: &Resolved| match r {
                Num(n) => n.to_string(),
                Text(s) => s.clone(),
                List(l) => l.join(" "),
                State(s) => s.as_str().to_owned(),
            };
            match op {
                Op::Eq => Ok(text(a) == text(b)),
                Op::Ne => Ok(text(a) != text(b)),
                _ => Err(format!(
                    "cannot compare {:?} and {:?} as numbers",
                    text(a),
                    text(b)
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, x)| ((*k).to_owned(), Value::Str((*x).to_owned())))
            .collect()
    }

    #[test]
    fn numbers_compare_numerically() {
        let c = Cond::parse("used_pct > 90").expect("parses");
        assert!(
            c.eval(&v(&[("used_pct", "93")]), &Health::new())
                .expect("ok")
        );
        assert!(
            !c.eval(&v(&[("used_pct", "9")]), &Health::new())
                .expect("ok")
        );
        assert!(c.eval(&Vars::new(), &Health::new()).is_err());
    }

    #[test]
    fn health_states_are_ordered() {
        let c = Cond::parse("health.mysql.connections >= warning").expect("parses");
        let mut h = Health::new();
        h.insert("mysql.connections".into(), HealthState::Critical);
        assert!(c.eval(&Vars::new(), &h).expect("ok"));
        h.insert("mysql.connections".into(), HealthState::Ok);
        assert!(!c.eval(&Vars::new(), &h).expect("ok"));
        // Unknown is not "at least warning".
        assert!(!c.eval(&Vars::new(), &Health::new()).expect("ok"));
    }

    #[test]
    fn and_or_not_and_parentheses() {
        let c = Cond::parse("not (a == 'x' or b < 2) and c").expect("parses");
        assert!(
            c.eval(&v(&[("a", "y"), ("b", "3"), ("c", "1")]), &Health::new())
                .expect("ok")
        );
        assert!(
            !c.eval(&v(&[("a", "x"), ("b", "3"), ("c", "1")]), &Health::new())
                .expect("ok")
        );
        assert!(Cond::parse("a >").is_err());
        assert!(Cond::parse("a b").is_err());
        assert!(Cond::parse("(a").is_err());
        assert!(Cond::parse("a ~ b").is_err());
    }

    #[test]
    fn list_count() {
        let mut vars = Vars::new();
        vars.insert("ids".into(), Value::List(vec!["1".into(), "2".into()]));
        assert!(
            Cond::parse("ids.count == 2")
                .expect("p")
                .eval(&vars, &Health::new())
                .expect("ok")
        );
        assert!(
            Cond::parse("ids")
                .expect("p")
                .eval(&vars, &Health::new())
                .expect("ok")
        );
    }
}
