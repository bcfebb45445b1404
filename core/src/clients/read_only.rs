//! What "read-only" means to the MySQL/MariaDB and Redis protocols: allowlists, never
//! denylists. Anything not known to leave the server as it was counts as a change. The
//! runbook validator classifies steps with these (`runbook::read_only`), and the MySQL
//! client refuses, before sending it, a statement for a read-only session that is not on the
//! list — one definition for both.
//!
//! - **SQL**: exactly one statement (one trailing `;` allowed) that is `SELECT`, `SHOW`,
//!   `EXPLAIN`/`DESCRIBE`/`DESC` or `WITH … SELECT`, read by a real lexer (comments `--`, `#`,
//!   `/* */`, string literals, backtick identifiers; MySQL/MariaDB executable comments
//!   `/*! … */` and `/*M! … */` count as code). Never `INTO` (`OUTFILE`, `DUMPFILE`,
//!   variables), `FOR UPDATE`/`FOR SHARE`/`LOCK IN SHARE MODE`, `:=` assignments, `EXPLAIN
//!   ANALYZE` (it runs the statement), or a call to a function outside [`SQL_FUNCTIONS`]
//!   (stored functions and UDFs can write; `GET_LOCK`, `RELEASE_LOCK`, `LOAD_FILE`,
//!   `BENCHMARK`, `NEXTVAL`, `SETVAL`, `LAST_INSERT_ID` are refused by name). `SLEEP` is
//!   allowed: it changes nothing and the step's timeout bounds it.
//! - **Redis**: the command (and for container commands the subcommand) must be in
//!   [`REDIS_READ_ONLY`]. The list is checked against a real server's `COMMAND INFO` flags by
//!   `tests/runbook_trust.rs`, so it cannot drift into a `write` command. `EVAL`, `FCALL`,
//!   `KEYS` (blocks the server) and everything else not listed are changes.

use std::fmt;

/// Why a command is not read-only, and where (a byte offset in the SQL text, or the index of
/// the Redis argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReadOnly {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for NotReadOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

// ---------------------------------------------------------------------------------------------
// SQL

/// Built-in functions that read and compute only. A call to anything else (a stored function,
/// a UDF, a function with side effects) makes a statement "changes".
pub const SQL_FUNCTIONS: &[&str] = &[
    // aggregates and windows
    "AVG",
    "BIT_AND",
    "BIT_OR",
    "BIT_XOR",
    "COUNT",
    "DENSE_RANK",
    "FIRST_VALUE",
    "GROUP_CONCAT",
    "JSON_ARRAYAGG",
    "JSON_OBJECTAGG",
    "LAG",
    "LAST_VALUE",
    "LEAD",
    "MAX",
    "MIN",
    "NTH_VALUE",
    "NTILE",
    "PERCENT_RANK",
    "RANK",
    "ROW_NUMBER",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "SUM",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "CUME_DIST",
    "ANY_VALUE",
    "MEDIAN",
    "PERCENTILE_CONT",
    "PERCENTILE_DISC",
    // numbers
    "ABS",
    "CEIL",
    "CEILING",
    "CONV",
    "CRC32",
    "EXP",
    "FLOOR",
    "GREATEST",
    "LEAST",
    "LN",
    "LOG",
    "LOG10",
    "LOG2",
    "MOD",
    "PI",
    "POW",
    "POWER",
    "RAND",
    "ROUND",
    "SIGN",
    "SQRT",
    "TRUNCATE",
    "BIT_COUNT",
    // control flow and types
    "CASE",
    "CAST",
    "COALESCE",
    "CONVERT",
    "IF",
    "IFNULL",
    "ISNULL",
    "NULLIF",
    "NVL",
    // strings
    "ASCII",
    "BIN",
    "BIT_LENGTH",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "CONCAT",
    "CONCAT_WS",
    "ELT",
    "FIELD",
    "FIND_IN_SET",
    "FORMAT",
    "FROM_BASE64",
    "HEX",
    "INSTR",
    "LCASE",
    "LEFT",
    "LENGTH",
    "LOCATE",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MD5",
    "MID",
    "OCT",
    "OCTET_LENGTH",
    "ORD",
    "POSITION",
    "QUOTE",
    "REGEXP_INSTR",
    "REGEXP_REPLACE",
    "REGEXP_SUBSTR",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "RPAD",
    "RTRIM",
    "SHA1",
    "SHA2",
    "SOUNDEX",
    "SPACE",
    "STRCMP",
    "SUBSTR",
    "SUBSTRING",
    "SUBSTRING_INDEX",
    "TO_BASE64",
    "TRIM",
    "UCASE",
    "UNHEX",
    "UPPER",
    "WEIGHT_STRING",
    "CHARSET",
    "COLLATION",
    "INET_ATON",
    "INET_NTOA",
    "INET6_ATON",
    "INET6_NTOA",
    "IS_IPV4",
    "IS_IPV6",
    // dates and times
    "ADDDATE",
    "ADDTIME",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "DATE",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DATEDIFF",
    "DAY",
    "DAYNAME",
    "DAYOFMONTH",
    "DAYOFWEEK",
    "DAYOFYEAR",
    "EXTRACT",
    "FROM_DAYS",
    "FROM_UNIXTIME",
    "HOUR",
    "LAST_DAY",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "MAKEDATE",
    "MAKETIME",
    "MICROSECOND",
    "MINUTE",
    "MONTH",
    "MONTHNAME",
    "NOW",
    "QUARTER",
    "SEC_TO_TIME",
    "SECOND",
    "STR_TO_DATE",
    "SUBDATE",
    "SUBTIME",
    "SYSDATE",
    "TIME",
    "TIME_FORMAT",
    "TIME_TO_SEC",
    "TIMEDIFF",
    "TIMESTAMP",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
    "TO_DAYS",
    "TO_SECONDS",
    "UNIX_TIMESTAMP",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "WEEK",
    "WEEKDAY",
    "WEEKOFYEAR",
    "YEAR",
    "YEARWEEK",
    "CONVERT_TZ",
    "TO_CHAR",
    "PERIOD_ADD",
    "PERIOD_DIFF",
    // JSON
    "JSON_ARRAY",
    "JSON_CONTAINS",
    "JSON_CONTAINS_PATH",
    "JSON_DEPTH",
    "JSON_EXTRACT",
    "JSON_KEYS",
    "JSON_LENGTH",
    "JSON_OBJECT",
    "JSON_QUOTE",
    "JSON_TYPE",
    "JSON_UNQUOTE",
    "JSON_VALID",
    "JSON_VALUE",
    "JSON_TABLE",
    "JSON_SEARCH",
    "JSON_OVERLAPS",
    "JSON_PRETTY",
    "JSON_DETAILED",
    "JSON_SET",
    "JSON_INSERT",
    "JSON_REPLACE",
    "JSON_REMOVE",
    "JSON_ARRAY_APPEND",
    "JSON_ARRAY_INSERT",
    "JSON_MERGE",
    "JSON_MERGE_PATCH",
    "JSON_MERGE_PRESERVE",
    "JSON_COMPACT",
    "JSON_LOOSE",
    // the session and the server
    "CONNECTION_ID",
    "CURRENT_ROLE",
    "CURRENT_USER",
    "DATABASE",
    "FOUND_ROWS",
    "ROW_COUNT",
    "SCHEMA",
    "SESSION_USER",
    "SYSTEM_USER",
    "USER",
    "VERSION",
    "UUID",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "SLEEP",
    "BINLOG_GTID_POS",
    "GTID_SUBSET",
    "GTID_SUBTRACT",
    "SFORMAT",
    "NATURAL_SORT_KEY",
    // type names written with a length (CAST(x AS DECIMAL(10,2)), CHAR(n))
    "BINARY",
    "CHAR",
    "DEC",
    "DECIMAL",
    "NUMERIC",
    "VARCHAR",
    "DATETIME",
    "FLOAT",
    "DOUBLE",
    // MATCH(col) AGAINST('x')
    "MATCH",
    "AGAINST",
];

/// Functions refused by name, with the reason (anything else unknown is refused too).
const SQL_FUNCTIONS_REFUSED: &[(&str, &str)] = &[
    ("GET_LOCK", "takes a named lock"),
    ("RELEASE_LOCK", "releases a named lock"),
    ("RELEASE_ALL_LOCKS", "releases named locks"),
    ("LOAD_FILE", "reads a file on the database server"),
    ("BENCHMARK", "loads the server on purpose"),
    ("NEXTVAL", "advances a sequence"),
    ("SETVAL", "sets a sequence"),
    ("LAST_INSERT_ID", "can set the session's insert id"),
    ("SYS_EXEC", "runs a command on the server"),
    ("SYS_EVAL", "runs a command on the server"),
];

/// Keywords that may stand before `(` without being a function call.
const SQL_KEYWORDS_BEFORE_PAREN: &[&str] = &[
    "AGAINST",
    "ALL",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BY",
    "DISTINCT",
    "DIV",
    "ELSE",
    "EXCEPT",
    "EXISTS",
    "FROM",
    "HAVING",
    "IN",
    "INDEX",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LIKE",
    "NOT",
    "ON",
    "OR",
    "OVER",
    "PARTITION",
    "REGEXP",
    "RLIKE",
    "ROW",
    "SELECT",
    "SOME",
    "THEN",
    "UNION",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "XOR",
    "RECURSIVE",
    "LIMIT",
    "OFFSET",
    "EXPLAIN",
    "DESCRIBE",
    "DESC",
    "NULL",
    "ESCAPE",
];

/// One SQL token. Words are upper-cased; literals keep no text (they are data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlTok {
    /// An unquoted word: keyword, identifier, function name.
    Word(String),
    /// A backtick-quoted identifier.
    Quoted(String),
    /// A string literal or a number.
    Literal,
    /// `{{name}}`: one value, sent as a bound parameter.
    Var,
    /// `{{raw name}}`: text inserted as is.
    RawVar(String),
    Semi,
    Open,
    Close,
    Dot,
    /// `:=`
    Assign,
    /// `@` or `@@` before a variable name.
    At,
    /// Any other punctuation or operator character.
    Punct(char),
}

/// A token and its byte offset in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlToken {
    pub at: usize,
    pub tok: SqlTok,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn err<T>(offset: usize, reason: impl Into<String>) -> Result<T, NotReadOnly> {
    Err(NotReadOnly {
        offset,
        reason: reason.into(),
    })
}

/// Splits SQL text into tokens: comments dropped (executable comments kept as code),
/// literals opaque, placeholders as [`SqlTok::Var`]/[`SqlTok::RawVar`]. An unterminated
/// string, identifier or comment is an error.
#[allow(clippy::too_many_lines)]
pub fn sql_tokens(src: &str) -> Result<Vec<SqlToken>, NotReadOnly> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(src.len(), |(o, _)| *o);
    let ch = |i: usize| chars.get(i).map(|(_, c)| *c);
    let mut out = Vec::new();
    let mut i = 0;
    // Inside `/*! ... */`: its closing `*/` is not code.
    let mut exec_comment: Option<usize> = None;
    while let Some(c) = ch(i) {
        let start = at(i);
        let push = |out: &mut Vec<SqlToken>, tok| out.push(SqlToken { at: start, tok });
        match c {
            c if c.is_whitespace() => i += 1,
            '*' if exec_comment.is_some() && ch(i + 1) == Some('/') => {
                exec_comment = None;
                i += 2;
            }
            '/' if ch(i + 1) == Some('*') => {
                let bang = ch(i + 2) == Some('!');
                let mariadb_bang = ch(i + 2) == Some('M') && ch(i + 3) == Some('!');
                if bang || mariadb_bang {
                    if exec_comment.is_some() {
                        return err(start, "nested executable comment");
                    }
                    exec_comment = Some(start);
                    i += if bang { 3 } else { 4 };
                    // An optional version number: the server runs the rest if it is new enough.
                    while ch(i).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1;
                    }
                } else {
                    let mut j = i + 2;
                    loop {
                        match ch(j) {
                            None => return err(start, "unterminated /* comment"),
                            Some('*') if ch(j + 1) == Some('/') => break,
                            Some(_) => j += 1,
                        }
                    }
                    i = j + 2;
                }
            }
            '#' => {
                while ch(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            // `-- ` starts a comment only when followed by whitespace, a control character or
            // the end (MySQL's rule); `--1` is minus minus one.
            '-' if ch(i + 1) == Some('-')
                && ch(i + 2).is_none_or(|c| c.is_whitespace() || c.is_control()) =>
            {
                while ch(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '\'' | '"' => {
                let mut j = i + 1;
                loop {
                    match ch(j) {
                        None => return err(start, format!("unterminated string starting {c}")),
                        Some('\\') => j += 2,
                        Some(q) if q == c && ch(j + 1) == Some(c) => j += 2,
                        Some(q) if q == c => break,
                        Some(_) => j += 1,
                    }
                }
                push(&mut out, SqlTok::Literal);
                i = j + 1;
            }
            '`' => {
                let mut j = i + 1;
                let mut name = String::new();
                loop {
                    match ch(j) {
                        None => return err(start, "unterminated `identifier`"),
                        Some('`') if ch(j + 1) == Some('`') => {
                            name.push('`');
                            j += 2;
                        }
                        Some('`') => break,
                        Some(x) => {
                            name.push(x);
                            j += 1;
                        }
                    }
                }
                push(&mut out, SqlTok::Quoted(name));
                i = j + 1;
            }
            '{' if ch(i + 1) == Some('{') => {
                let mut j = i + 2;
                let mut inner = String::new();
                loop {
                    match ch(j) {
                        None => return err(start, "`{{` without a closing `}}`"),
                        Some('}') if ch(j + 1) == Some('}') => break,
                        Some(x) => {
                            inner.push(x);
                            j += 1;
                        }
                    }
                }
                let inner = inner.trim();
                let tok = match inner.strip_prefix("raw ") {
                    Some(name) => SqlTok::RawVar(name.trim().to_owned()),
                    None => SqlTok::Var,
                };
                push(&mut out, tok);
                i = j + 2;
            }
            ';' => {
                push(&mut out, SqlTok::Semi);
                i += 1;
            }
            '(' => {
                push(&mut out, SqlTok::Open);
                i += 1;
            }
            ')' => {
                push(&mut out, SqlTok::Close);
                i += 1;
            }
            ':' if ch(i + 1) == Some('=') => {
                push(&mut out, SqlTok::Assign);
                i += 2;
            }
            '@' => {
                push(&mut out, SqlTok::At);
                i += if ch(i + 1) == Some('@') { 2 } else { 1 };
            }
            '.' if !ch(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                push(&mut out, SqlTok::Dot);
                i += 1;
            }
            '.' => {
                // `.5` is a number; anything else a qualifier dot.
                if ch(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                    i = number_end(&ch, i + 1);
                    push(&mut out, SqlTok::Literal);
                } else {
                    push(&mut out, SqlTok::Dot);
                    i += 1;
                }
            }
            c if c.is_ascii_digit() => {
                let mut j = i;
                let mut run = String::new();
                while let Some(x) = ch(j).filter(|x| is_word_char(*x)) {
                    run.push(x);
                    j += 1;
                }
                if run.chars().all(|x| x.is_ascii_digit())
                    || (is_number(&run) && run.to_ascii_lowercase().ends_with('e'))
                {
                    // `12.5`, `1e-5`: the rest of the number.
                    j = number_end(&ch, i);
                    push(&mut out, SqlTok::Literal);
                } else if is_number(&run) {
                    push(&mut out, SqlTok::Literal);
                } else {
                    // MySQL allows identifiers that start with a digit.
                    push(&mut out, SqlTok::Word(run.to_uppercase()));
                }
                i = j;
            }
            c if is_word_char(c) => {
                let mut j = i;
                let mut run = String::new();
                while let Some(x) = ch(j).filter(|x| is_word_char(*x)) {
                    run.push(x);
                    j += 1;
                }
                push(&mut out, SqlTok::Word(run.to_uppercase()));
                i = j;
            }
            c => {
                push(&mut out, SqlTok::Punct(c));
                i += 1;
            }
        }
    }
    if let Some(start) = exec_comment {
        return err(start, "unterminated /*! comment");
    }
    Ok(out)
}

/// The index after a decimal number starting at `i`: digits, `.digits`, `e[+-]digits`.
fn number_end(ch: &impl Fn(usize) -> Option<char>, mut i: usize) -> usize {
    let digits = |mut i: usize| {
        while ch(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        i
    };
    i = digits(i);
    if ch(i) == Some('.') {
        i = digits(i + 1);
    }
    if matches!(ch(i), Some('e' | 'E')) {
        let sign = usize::from(matches!(ch(i + 1), Some('+' | '-')));
        if ch(i + 1 + sign).is_some_and(|c| c.is_ascii_digit()) {
            i = digits(i + 1 + sign);
        }
    }
    i
}

/// A numeric literal (`12`, `1.5`, `1e5`, `0x1F`, `0b101`), as opposed to an identifier that
/// starts with a digit (`1abc`, which MySQL allows).
fn is_number(w: &str) -> bool {
    let Some(first) = w.chars().next() else {
        return false;
    };
    if !first.is_ascii_digit() {
        return false;
    }
    let lower = w.to_ascii_lowercase();
    if let Some(h) = lower.strip_prefix("0x") {
        return !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(b) = lower.strip_prefix("0b") {
        return !b.is_empty() && b.chars().all(|c| c == '0' || c == '1');
    }
    let (mantissa, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let frac_ok = parts
        .next()
        .is_none_or(|p| p.chars().all(|c| c.is_ascii_digit()));
    let exp_ok = exp.is_none_or(|e| e.is_empty() || e.chars().all(|c| c.is_ascii_digit()));
    int_ok && frac_ok && exp_ok
}

fn word(t: Option<&SqlToken>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(SqlTok::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

/// Ok if `src` is one read-only statement by the allowlist; else where and why not.
pub fn sql(src: &str) -> Result<(), NotReadOnly> {
    let toks = sql_tokens(src)?;
    // Exactly one statement; one trailing `;` allowed.
    let stmt_end = toks
        .iter()
        .position(|t| t.tok == SqlTok::Semi)
        .unwrap_or(toks.len());
    if let Some(extra) = toks.get(stmt_end + 1) {
        return err(
            extra.at,
            "more than one statement (only one statement, with an optional trailing `;`)",
        );
    }
    let stmt = &toks[..stmt_end];
    let Some(first) = stmt.first() else {
        return err(0, "no statement");
    };
    match word(Some(first)) {
        Some("SELECT" | "SHOW") => {}
        Some("EXPLAIN" | "DESCRIBE" | "DESC") => explain(stmt)?,
        Some("WITH") => with(stmt)?,
        Some(w) => {
            return err(
                first.at,
                format!(
                    "`{w}` is not a read-only statement (SELECT, SHOW, EXPLAIN, DESCRIBE or WITH … SELECT)"
                ),
            );
        }
        None => {
            return err(
                first.at,
                "a statement must start with SELECT, SHOW, EXPLAIN, DESCRIBE or WITH",
            );
        }
    }
    clauses_and_calls(stmt)
}

/// `EXPLAIN`/`DESCRIBE`: never `ANALYZE` (it runs the statement); an explained statement
/// must itself be a SELECT (or WITH … SELECT).
fn explain(stmt: &[SqlToken]) -> Result<(), NotReadOnly> {
    for t in stmt.iter().skip(1) {
        match word(Some(t)) {
            Some("ANALYZE") => {
                return err(t.at, "EXPLAIN ANALYZE runs the statement it explains");
            }
            Some("SELECT" | "WITH" | "FOR") => return Ok(()),
            Some(
                w @ ("UPDATE" | "DELETE" | "INSERT" | "REPLACE" | "TABLE" | "VALUES" | "CALL"
                | "LOAD" | "DO" | "SET" | "HANDLER"),
            ) => {
                return err(t.at, format!("EXPLAIN of `{w}`: only SELECT is read-only"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `WITH [RECURSIVE] name [(cols)] AS (…) [, …] SELECT …`: the main statement must be SELECT.
fn with(stmt: &[SqlToken]) -> Result<(), NotReadOnly> {
    let mut i = 1;
    if word(stmt.get(i)) == Some("RECURSIVE") {
        i += 1;
    }
    loop {
        // The CTE's name.
        match stmt.get(i).map(|t| &t.tok) {
            Some(SqlTok::Word(_) | SqlTok::Quoted(_)) => i += 1,
            _ => {
                return err(
                    stmt.get(i).map_or(0, |t| t.at),
                    "expected a name after WITH",
                );
            }
        }
        if stmt.get(i).map(|t| &t.tok) == Some(&SqlTok::Open) {
            i = skip_parens(stmt, i)?;
        }
        if word(stmt.get(i)) != Some("AS") {
            return err(stmt.get(i).map_or(0, |t| t.at), "expected AS in WITH");
        }
        i += 1;
        if stmt.get(i).map(|t| &t.tok) != Some(&SqlTok::Open) {
            return err(stmt.get(i).map_or(0, |t| t.at), "expected ( after AS");
        }
        i = skip_parens(stmt, i)?;
        if stmt.get(i).map(|t| &t.tok) == Some(&SqlTok::Punct(',')) {
            i += 1;
            continue;
        }
        break;
    }
    match stmt.get(i) {
        Some(t) if word(Some(t)) == Some("SELECT") => Ok(()),
        Some(t) if t.tok == SqlTok::Open => Ok(()),
        Some(t) => err(
            t.at,
            "WITH must lead to a SELECT (WITH … UPDATE/DELETE changes things)",
        ),
        None => err(0, "WITH without a statement"),
    }
}

/// Index just after the parenthesis group opening at `open`.
fn skip_parens(stmt: &[SqlToken], open: usize) -> Result<usize, NotReadOnly> {
    let mut depth = 0usize;
    for (j, t) in stmt.iter().enumerate().skip(open) {
        match t.tok {
            SqlTok::Open => depth += 1,
            SqlTok::Close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(j + 1);
                }
            }
            _ => {}
        }
    }
    err(stmt.get(open).map_or(0, |t| t.at), "unbalanced parentheses")
}

/// Clauses that write or lock, and calls to functions outside the allowlist.
fn clauses_and_calls(stmt: &[SqlToken]) -> Result<(), NotReadOnly> {
    for (i, t) in stmt.iter().enumerate() {
        let next = stmt.get(i + 1);
        match &t.tok {
            SqlTok::RawVar(name) => {
                return err(
                    t.at,
                    format!("`{{{{raw {name}}}}}` inserts text that cannot be checked"),
                );
            }
            SqlTok::Assign => return err(t.at, "`:=` assigns a variable"),
            SqlTok::Word(w) => match w.as_str() {
                "INTO" => {
                    return err(t.at, "`INTO` writes (a file, a variable or a table)");
                }
                "FOR" if matches!(word(next), Some("UPDATE" | "SHARE")) => {
                    return err(t.at, "`FOR UPDATE`/`FOR SHARE` takes row locks");
                }
                "LOCK" if word(next) == Some("IN") => {
                    return err(t.at, "`LOCK IN SHARE MODE` takes row locks");
                }
                "PROCEDURE" => return err(t.at, "`PROCEDURE` runs a procedure"),
                "NEXT" if word(next) == Some("VALUE") => {
                    return err(t.at, "`NEXT VALUE FOR` advances a sequence");
                }
                _ => {}
            },
            _ => {}
        }
        if next.map(|n| &n.tok) != Some(&SqlTok::Open) {
            continue;
        }
        let qualified = i > 0 && stmt[i - 1].tok == SqlTok::Dot;
        match &t.tok {
            SqlTok::Quoted(name) => {
                return err(
                    t.at,
                    format!("calls `{name}`(), a stored function that may write"),
                );
            }
            SqlTok::Word(w) if qualified => {
                return err(
                    t.at,
                    format!("calls stored function `…{w}`(), which may write"),
                );
            }
            SqlTok::Word(w) => {
                if let Some((_, why)) = SQL_FUNCTIONS_REFUSED.iter().find(|(f, _)| f == w) {
                    return err(t.at, format!("`{w}()` {why}"));
                }
                if SQL_FUNCTIONS.contains(&w.as_str())
                    || SQL_KEYWORDS_BEFORE_PAREN.contains(&w.as_str())
                    || cte_columns(stmt, i)
                {
                    continue;
                }
                return err(
                    t.at,
                    format!(
                        "calls `{w}()`, which is not a known read-only built-in function \
                         (stored functions and UDFs can write)"
                    ),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// `name (a, b) AS (` in a WITH list: a column list, not a call.
fn cte_columns(stmt: &[SqlToken], name: usize) -> bool {
    let Ok(after) = skip_parens(stmt, name + 1) else {
        return false;
    };
    word(stmt.get(after)) == Some("AS")
        && stmt.get(after + 1).map(|t| &t.tok) == Some(&SqlTok::Open)
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Read-only Redis commands: the command, and for container commands the subcommands that
/// are allowed (an empty list: the command itself, any arguments).
pub const REDIS_READ_ONLY: &[(&str, &[&str])] = &[
    // keys and values
    ("GET", &[]),
    ("MGET", &[]),
    ("STRLEN", &[]),
    ("GETRANGE", &[]),
    ("EXISTS", &[]),
    ("TYPE", &[]),
    ("TTL", &[]),
    ("PTTL", &[]),
    ("EXPIRETIME", &[]),
    ("PEXPIRETIME", &[]),
    ("SCAN", &[]),
    ("DBSIZE", &[]),
    ("RANDOMKEY", &[]),
    ("LLEN", &[]),
    ("LRANGE", &[]),
    ("LINDEX", &[]),
    ("LPOS", &[]),
    ("SCARD", &[]),
    ("SISMEMBER", &[]),
    ("SMISMEMBER", &[]),
    ("SMEMBERS", &[]),
    ("SSCAN", &[]),
    ("ZCARD", &[]),
    ("ZCOUNT", &[]),
    ("ZRANGE", &[]),
    ("ZRANGEBYSCORE", &[]),
    ("ZREVRANGE", &[]),
    ("ZREVRANGEBYSCORE", &[]),
    ("ZRANK", &[]),
    ("ZREVRANK", &[]),
    ("ZSCORE", &[]),
    ("ZMSCORE", &[]),
    ("ZSCAN", &[]),
    ("HGET", &[]),
    ("HMGET", &[]),
    ("HGETALL", &[]),
    ("HKEYS", &[]),
    ("HVALS", &[]),
    ("HLEN", &[]),
    ("HEXISTS", &[]),
    ("HSTRLEN", &[]),
    ("HSCAN", &[]),
    ("XLEN", &[]),
    ("XRANGE", &[]),
    ("XREVRANGE", &[]),
    ("XPENDING", &[]),
    ("XINFO", &["STREAM", "GROUPS", "CONSUMERS"]),
    ("BITCOUNT", &[]),
    ("GETBIT", &[]),
    ("BITPOS", &[]),
    ("OBJECT", &["ENCODING", "FREQ", "IDLETIME", "REFCOUNT"]),
    ("MEMORY", &["USAGE", "STATS", "DOCTOR"]),
    // the server
    ("PING", &[]),
    ("ECHO", &[]),
    ("INFO", &[]),
    ("ROLE", &[]),
    ("TIME", &[]),
    ("LASTSAVE", &[]),
    ("CONFIG", &["GET"]),
    ("CLIENT", &["LIST", "INFO", "GETNAME", "ID"]),
    ("SLOWLOG", &["GET", "LEN"]),
    ("LATENCY", &["LATEST", "HISTORY", "DOCTOR"]),
    ("COMMAND", &["COUNT", "INFO", "DOCS", "LIST"]),
    ("PUBSUB", &["CHANNELS", "NUMSUB", "NUMPAT"]),
    // Sentinel (sent to the host's Sentinel)
    (
        "SENTINEL",
        &[
            "MASTERS",
            "MASTER",
            "REPLICAS",
            "SLAVES",
            "SENTINELS",
            "GET-MASTER-ADDR-BY-NAME",
            "CKQUORUM",
            "MYID",
        ],
    ),
];

/// Ok if the command (name and subcommand) is on the read-only list.
pub fn redis(args: &[&str]) -> Result<(), NotReadOnly> {
    let Some(name) = args.first() else {
        return err(0, "empty Redis command");
    };
    if name.contains("{{") {
        return err(0, "the Redis command name comes from a variable");
    }
    let upper = name.to_ascii_uppercase();
    let Some((_, subs)) = REDIS_READ_ONLY.iter().find(|(c, _)| *c == upper) else {
        return err(
            0,
            format!("Redis `{upper}` is not on the read-only command list"),
        );
    };
    if subs.is_empty() {
        return Ok(());
    }
    let Some(sub) = args.get(1) else {
        return err(0, format!("Redis `{upper}` needs a subcommand"));
    };
    if sub.contains("{{") {
        return err(
            1,
            format!("the Redis `{upper}` subcommand comes from a variable"),
        );
    }
    let sub = sub.to_ascii_uppercase();
    if subs.contains(&sub.as_str()) {
        Ok(())
    } else {
        err(
            1,
            format!("Redis `{upper} {sub}` is not on the read-only command list"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ro(s: &str) -> bool {
        sql(s).is_ok()
    }

    #[test]
    fn plain_reads_are_read_only() {
        for s in [
            "SELECT 1",
            "select 1;",
            "SELECT Id FROM information_schema.PROCESSLIST WHERE Command = 'Sleep' AND Time >= {{t}} AND User LIKE {{u}}",
            "SHOW SLAVE STATUS",
            "SHOW GLOBAL STATUS LIKE 'Threads%'",
            "EXPLAIN SELECT * FROM t",
            "DESCRIBE t",
            "DESC t id",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "WITH RECURSIVE x (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 3) SELECT n FROM x",
            "SELECT ROUND(100 * (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED') / @@max_connections) AS used_pct",
            "SELECT CAST(x AS DECIMAL(10, 2)), COUNT(*) FROM t -- a comment; DROP TABLE t",
            "SELECT 'a;b', \"c;d\", `e;f` FROM t # DROP TABLE t",
            "SELECT 1 /* ; DROP TABLE t */",
            "SELECT 'it''s', 'back\\'slash' FROM t",
            "SELECT SLEEP(1)",
            "SELECT 1e-5, .5, 0x1F, 2.5e3",
        ] {
            assert!(ro(s), "{s}: {:?}", sql(s));
        }
    }

    #[test]
    fn diagnose_queries_people_write_are_read_only() {
        for s in [
            "SHOW FULL PROCESSLIST",
            "SHOW ENGINE INNODB STATUS",
            "SHOW GLOBAL VARIABLES LIKE 'max%'",
            "SHOW REPLICA STATUS",
            "SELECT @@global.read_only, @@gtid_current_pos",
            "SELECT * FROM information_schema.INNODB_TRX",
            "SELECT COUNT(*) FROM t WHERE created_at > NOW() - INTERVAL 1 HOUR",
            "SELECT table_schema, ROUND(SUM(data_length + index_length) / 1024 / 1024, 1) AS mb \
             FROM information_schema.tables GROUP BY table_schema ORDER BY mb DESC LIMIT 10",
            "SELECT IF(a > 1, 'x', 'y'), COALESCE(a, b), NULLIF(a, 0), a DIV 2, a MOD 2 FROM t",
            "SELECT GROUP_CONCAT(DISTINCT x ORDER BY x SEPARATOR ',') FROM t",
            "SELECT CAST(x AS UNSIGNED), CAST(y AS CHAR(10)), CONVERT(z USING utf8mb4) FROM t",
            "SELECT TIMESTAMPDIFF(SECOND, a, NOW(6)), UNIX_TIMESTAMP() - UNIX_TIMESTAMP(ts) FROM t",
            "SELECT * FROM t USE INDEX (i) WHERE x IN (SELECT y FROM u) AND EXISTS (SELECT 1)",
            "SELECT a FROM t1 JOIN t2 USING (id) WHERE b LIKE 'x!%' ESCAPE '!'",
            "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t",
            "SELECT a, COUNT(*) OVER w FROM t WINDOW w AS (PARTITION BY a)",
            "SELECT SUM(CASE WHEN a THEN 1 ELSE 0 END), COUNT(DISTINCT b) FROM t",
            "SELECT TRIM(BOTH 'x' FROM y), SUBSTRING(x FROM 2 FOR 3), POSITION('a' IN x) FROM t",
            "SELECT JSON_UNQUOTE(JSON_EXTRACT(doc, '$.a')) FROM t",
            "SELECT 1 FROM DUAL",
            "SELECT VERSION(), USER(), DATABASE(), CONNECTION_ID()",
            "EXPLAIN FORMAT=JSON SELECT * FROM t",
            "EXPLAIN EXTENDED SELECT * FROM t",
            "DESCRIBE mysql.user",
            "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5), \
             m AS (SELECT 2) SELECT * FROM n, m",
            "SELECT Id FROM information_schema.PROCESSLIST WHERE Command = 'Sleep' \
             AND Time >= {{t}} AND User LIKE CONCAT('%', {{u}}, '%') AND Id IN ({{ids}})",
        ] {
            assert!(ro(s), "{s}: {:?}", sql(s));
        }
    }

    #[test]
    fn anything_else_is_a_change() {
        for s in [
            "SELECT 1; DROP TABLE t",
            "SELECT 1;;",
            "/**/KILL 5",
            "/*!KILL 1*/",
            "/*!50000 KILL 1*/",
            "SELECT 1 /*!, sys_exec('x') */",
            "SELECT 1 /*M!100000 ; DROP TABLE t */",
            "CALL p()",
            "SELECT * INTO OUTFILE '/tmp/x' FROM t",
            "SELECT * FROM t INTO DUMPFILE '/tmp/x'",
            "SELECT 1 INTO @x",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT GET_LOCK('x', 1)",
            "SELECT LOAD_FILE('/etc/passwd')",
            "SELECT my_func(1)",
            "SELECT db.f(1)",
            "SELECT `count`(1)",
            "SELECT myfunc (1)",
            "SELECT @x := 1",
            "EXPLAIN ANALYZE SELECT 1",
            "EXPLAIN UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "SET GLOBAL read_only = ON",
            "KILL {{item}}",
            "SELECT {{raw cols}} FROM t",
            "SELECT 'unterminated",
            "SELECT 1 /* unterminated",
            "SELECT 1 /*! unterminated",
            "(SELECT 1)",
            "SELECT NEXT VALUE FOR s",
            "SELECT 1 --\nINTO @x",
            "",
            ";",
        ] {
            assert!(!ro(s), "{s} passed as read-only");
        }
    }

    #[test]
    fn minus_minus_without_space_is_not_a_comment() {
        // MySQL: `--1` is minus minus one, so what follows is code.
        assert!(!ro("SELECT 1 --1; DROP TABLE t"));
        assert!(ro("SELECT 1 --1"));
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = sql("SELECT 1; DROP TABLE t").expect_err("two statements");
        assert_eq!(e.offset, 10);
        let e = sql("/**/KILL 5").expect_err("kill");
        assert_eq!(e.offset, 4);
        assert!(e.reason.contains("KILL"), "{e}");
    }

    #[test]
    fn redis_allowlist() {
        assert!(redis(&["GET", "k"]).is_ok());
        assert!(redis(&["config", "get", "maxmemory"]).is_ok());
        assert!(redis(&["SENTINEL", "get-master-addr-by-name", "{{m}}"]).is_ok());
        for bad in [
            &["EVAL", "return 1", "0"][..],
            &["EVALSHA", "abc", "0"],
            &["FCALL", "f", "0"],
            &["ACL", "SETUSER", "x"],
            &["INCR", "k"],
            &["CONFIG", "SET", "maxmemory", "1"],
            &["CLIENT", "KILL", "ID", "5"],
            &["DEBUG", "SLEEP", "0"],
            &["SHUTDOWN"],
            &["FLUSHALL"],
            &["FLUSHDB"],
            &["KEYS", "*"],
            &["CONFIG"],
            &["{{cmd}}", "x"],
            &["CONFIG", "{{sub}}"],
            &["SENTINEL", "FAILOVER", "m"],
            &[],
        ] {
            assert!(redis(bad).is_err(), "{bad:?} passed as read-only");
        }
    }
}
