//! Substitution that cannot be defeated and read-only by allowlist, attacked through the real
//! binary and real servers: placeholders in quotes and non-read-only diagnose steps are refused
//! by `opsdeck check` and `opsdeck run` with file:line:col; an injected value never runs
//! (`touch` never happens, a table survives); SQL values bound as parameters reach MariaDB as
//! data; every Redis command on the read-only list is one the server does not flag `write`.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use mysql_async::prelude::Queryable;
use opsdeck::runbook::read_only::{REDIS_READ_ONLY, redis as redis_read_only};
use opsdeck::runbook::{Template, Value, Vars};
use support::mariadb::TestMariadb;
use support::redis::RedisLab;

/// A directory with an inventory (one local host, optionally a MariaDB service) and runbooks.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(mysql: Option<(u16, &str)>) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("runbooks")).expect("mkdir");
        let mut inv =
            "name = \"here\"\n[tiers.app]\n[hosts.here]\ntier = \"app\"\nlocal = {}\n".to_owned();
        if let Some((port, pw)) = mysql {
            let pw_file = dir.path().join("db-pw");
            std::fs::write(&pw_file, pw).expect("password file");
            let _ = write!(
                inv,
                "[[hosts.here.mysql]]\nrole = \"primary\"\naddress = \"127.0.0.1\"\nport = {port}\nuser = \"opsdeck\"\npassword_file = \"{}\"\n",
                pw_file.display()
            );
        }
        std::fs::write(dir.path().join("inv.toml"), inv).expect("inventory");
        Fixture { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runbook(&self, id: &str, body: &str) {
        let text = format!("id = \"{id}\"\ntitle = \"{id}\"\n{body}");
        std::fs::write(self.p(&format!("runbooks/{id}.toml")), text).expect("runbook");
    }

    fn run(&self, args: &[&str]) -> (i32, String) {
        let o = Command::cargo_bin("opsdeck")
            .expect("binary")
            .env_remove("OPSDECK_INVENTORY")
            .env("OPSDECK_JOURNAL_DIR", self.p("journal"))
            .env("OPSDECK_RUNBOOKS", self.p("runbooks"))
            .env("OPSDECK_LOG_DIR", self.p("logs"))
            .arg("-i")
            .arg(self.p("inv.toml"))
            .args(args)
            .output()
            .expect("runs");
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }
}

/// The value that used to break out of `'{{x}}'`: it closes the quote and runs `touch`.
fn breakout(marker: &Path) -> String {
    format!("'; touch {}; '", marker.display())
}

#[test]
fn a_quoted_placeholder_is_refused_and_an_injected_value_never_runs() {
    let f = Fixture::new(None);
    let marker = f.p("pwned");
    let out = f.p("out");
    f.runbook(
        "quoted",
        &format!(
            "[inputs.x]\ndefault = \"a\"\n[[steps]]\nid = \"say\"\ntitle = \"say\"\nkind = \"action\"\nconfirm = \"yes\"\ntarget = {{ selector = \"here\" }}\nshell = \"echo '{{{{x}}}}' > {}\"\n",
            out.display()
        ),
    );
    let (code, text) = f.run(&["check"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("quoted.toml:11:16: step `say`: `{{x}}` is written inside single quotes"),
        "{text}"
    );
    assert!(
        text.contains("hint: write {{x}} bare: opsdeck quotes it as one shell word"),
        "{text}"
    );

    let var = format!("x={}", breakout(&marker));
    let (code, text) = f.run(&["run", "quoted", "--approve", "all", "--var", &var]);
    assert_eq!(code, 2, "the run is refused before anything runs: {text}");
    assert!(!marker.exists(), "the injected command ran: {text}");
    assert!(!out.exists(), "the step ran: {text}");

    // Written bare, the same value is one word: printed, never run.
    std::fs::remove_file(f.p("runbooks/quoted.toml")).expect("rm");
    f.runbook(
        "bare",
        &format!(
            "[inputs.x]\ndefault = \"a\"\n[[steps]]\nid = \"say\"\ntitle = \"say\"\nkind = \"action\"\nconfirm = \"yes\"\ntarget = {{ selector = \"here\" }}\nshell = \"echo {{{{x}}}} > {}\"\n",
            out.display()
        ),
    );
    let (code, text) = f.run(&["run", "bare", "--approve", "all", "--var", &var]);
    assert_eq!(code, 0, "{text}");
    assert!(!marker.exists(), "the injected command ran: {text}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("out"),
        format!("{}\n", breakout(&marker))
    );
}

#[test]
fn diagnose_steps_that_are_not_read_only_by_the_allowlist_are_refused_by_check() {
    let f = Fixture::new(Some((3306, "unused")));
    let cases = [
        (
            "multi",
            "sql = \"SELECT 1; DROP TABLE t\"",
            18,
            "more than one statement",
        ),
        (
            "comment-kill",
            "sql = \"/**/KILL 1\"",
            12,
            "`KILL` is not a read-only statement",
        ),
        (
            "exec-comment",
            "sql = \"/*!KILL 1*/\"",
            11,
            "`KILL` is not a read-only statement",
        ),
        (
            "call",
            "sql = \"CALL p()\"",
            8,
            "`CALL` is not a read-only statement",
        ),
        (
            "outfile",
            "sql = \"SELECT * INTO OUTFILE '/tmp/x' FROM t\"",
            17,
            "`INTO` writes",
        ),
        (
            "eval",
            "redis = [\"EVAL\", \"return 1\", \"0\"]",
            9,
            "Redis `EVAL` is not on the read-only command list",
        ),
        (
            "acl",
            "redis = [\"ACL\", \"SETUSER\", \"x\", \"on\"]",
            9,
            "Redis `ACL` is not on the read-only command list",
        ),
        (
            "incr",
            "redis = [\"INCR\", \"k\"]",
            9,
            "Redis `INCR` is not on the read-only command list",
        ),
    ];
    for (id, exec, _, _) in cases {
        f.runbook(
            id,
            &format!(
                "[[steps]]\nid = \"look\"\ntitle = \"look\"\nkind = \"diagnose\"\ntarget = {{ selector = \"here\" }}\n{exec}\n"
            ),
        );
    }
    let (code, text) = f.run(&["check"]);
    assert_eq!(code, 2, "{text}");
    for (id, _, col, why) in cases {
        let want = format!("{id}.toml:8:{col}: step `look`: diagnose step runs ");
        let line = text
            .lines()
            .find(|l| l.contains(&want))
            .unwrap_or_else(|| panic!("no located error {want:?} in:\n{text}"));
        assert!(line.contains(why), "{id}: {why:?} in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_neither_through_quotes_nor_through_a_diagnose_step_drops_a_table() {
    let db = TestMariadb::start("trust", |_| {});
    db.create_user("opsdeck", "trust-pw", "ALL PRIVILEGES");
    db.sql("CREATE DATABASE keep; CREATE TABLE keep.t (name VARCHAR(64)); INSERT INTO keep.t VALUES ('alice');");
    let survives = || db.sql("SELECT COUNT(*) FROM keep.t").trim() == "1";
    let f = Fixture::new(Some((db.addr().port(), "trust-pw")));
    f.runbook(
        "drop-diag",
        "[[steps]]\nid = \"look\"\ntitle = \"look\"\nkind = \"diagnose\"\ntarget = { selector = \"here\" }\nsql = \"SELECT 1; DROP TABLE keep.t\"\n",
    );
    f.runbook(
        "quoted-sql",
        "[inputs.x]\ndefault = \"a\"\n[[steps]]\nid = \"look\"\ntitle = \"look\"\nkind = \"diagnose\"\ntarget = { selector = \"here\" }\nsql = \"SELECT name FROM keep.t WHERE name = '{{x}}'\"\n",
    );
    let (code, text) = f.run(&["run", "drop-diag"]);
    assert_eq!(
        code, 2,
        "refused before it runs (default --approve diagnose): {text}"
    );
    assert!(text.contains("drop-diag.toml:8:18: step `look`"), "{text}");
    assert!(survives(), "the diagnose step dropped the table: {text}");

    let (code, text) = f.run(&["run", "quoted-sql", "--var", "x='; DROP TABLE keep.t; -- "]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "quoted-sql.toml:10:46: step `look`: `{{x}}` is written inside a '…' string literal"
        ),
        "{text}"
    );
    assert!(survives(), "the injected value dropped the table: {text}");

    // Bound parameters: what `render_sql_params` produces reaches the server as data, also
    // for KILL and LIKE, and a list becomes one parameter per item.
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.addr().port())
        .user(Some("opsdeck"))
        .pass(Some("trust-pw"))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts.clone()).await.expect("connect");
    let exec = |t: &str, vars: &Vars| {
        let (q, params) = Template::parse(t)
            .expect("template")
            .render_sql_params(vars)
            .expect("renders");
        let params: Vec<mysql_async::Value> = params
            .into_iter()
            .map(|p| mysql_async::Value::Bytes(p.into_bytes()))
            .collect();
        (q, params)
    };
    let mut vars = Vars::new();
    vars.insert("x".into(), Value::Str("'; DROP TABLE keep.t; -- ".into()));
    vars.insert(
        "names".into(),
        Value::List(vec!["bob".into(), "alice".into(), "x' OR '1'='1".into()]),
    );
    let (q, p) = exec(
        "SELECT name FROM keep.t WHERE name LIKE {{x}} OR name = {{x}}",
        &vars,
    );
    let rows: Vec<String> = conn.exec(q, p).await.expect("runs as one statement");
    assert!(rows.is_empty(), "{rows:?}");
    vars.insert("n".into(), Value::Str("1".into()));
    let (q, p) = exec("SELECT name FROM keep.t LIMIT {{n}}", &vars);
    let limited: Vec<String> = conn
        .exec(q, p)
        .await
        .expect("LIMIT takes a string parameter");
    assert_eq!(limited, vec!["alice".to_owned()]);
    let (q, p) = exec("SELECT name FROM keep.t WHERE name IN ({{names}})", &vars);
    let rows: Vec<String> = conn.exec(q, p).await.expect("list");
    assert_eq!(rows, vec!["alice".to_owned()]);
    assert!(survives());

    let mut victim = mysql_async::Conn::new(opts).await.expect("victim");
    let id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .expect("id")
        .expect("a row");
    vars.insert("item".into(), Value::Str(id.to_string()));
    let (q, p) = exec("KILL CONNECTION {{item}}", &vars);
    conn.exec_drop(q, p).await.expect("KILL takes a bound id");
    assert!(
        victim.query_drop("SELECT 1").await.is_err(),
        "the victim connection was killed"
    );
    vars.insert("item".into(), Value::Str("1; DROP TABLE keep.t".into()));
    let (q, p) = exec("KILL CONNECTION {{item}}", &vars);
    let _ = conn.exec_drop(q, p).await;
    assert!(survives());
}

/// The answer of `COMMAND INFO name` (Redis 7: `container|sub` for subcommands): its flags
/// and the flags of its key specs; `None` for a command the server does not know.
fn command_info(
    con: &mut redis::Connection,
    name: &str,
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let v: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(con)
        .expect("COMMAND INFO");
    let redis::Value::Array(mut entries) = v else {
        panic!("COMMAND INFO {name}: {v:?}");
    };
    let entry = entries.pop()?;
    let redis::Value::Array(fields) = entry else {
        return None;
    };
    let strings = |v: &redis::Value| -> Vec<String> {
        match v {
            redis::Value::Array(items) | redis::Value::Set(items) => items
                .iter()
                .filter_map(|i| redis::from_redis_value::<String>(i.clone()).ok())
                .collect(),
            _ => Vec::new(),
        }
    };
    let flags = strings(&fields[2]);
    // Key specs (index 8): maps with a "flags" entry (RO, RW, OW, RM, access, update, ...).
    let mut specs = Vec::new();
    if let Some(redis::Value::Array(ks)) = fields.get(8) {
        for spec in ks {
            let pairs: Vec<(String, redis::Value)> = match spec {
                redis::Value::Array(kv) => kv
                    .chunks(2)
                    .filter_map(|c| {
                        Some((
                            redis::from_redis_value::<String>(c[0].clone()).ok()?,
                            c.get(1)?.clone(),
                        ))
                    })
                    .collect(),
                redis::Value::Map(kv) => kv
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((
                            redis::from_redis_value::<String>(k.clone()).ok()?,
                            v.clone(),
                        ))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            if let Some((_, f)) = pairs.iter().find(|(k, _)| k == "flags") {
                specs.push(strings(f));
            }
        }
    }
    Some((flags, specs))
}

#[test]
fn every_read_only_redis_command_is_one_the_server_does_not_flag_write() {
    let lab = RedisLab::new();
    let server = lab.redis("ro", None, None);
    let sentinel = lab.sentinel("ro-sentinel", "mymaster", server.addr, None);
    let connect = |addr: std::net::SocketAddr| {
        let client = redis::Client::open(format!("redis://{addr}/")).expect("client");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match client.get_connection() {
                Ok(c) => return c,
                Err(e) if std::time::Instant::now() > deadline => panic!("{addr}: {e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    };
    let mut con = connect(server.addr);
    let mut scon = connect(sentinel.addr);
    let mut checked = 0;
    for (cmd, subs) in REDIS_READ_ONLY {
        let names: Vec<String> = if subs.is_empty() {
            vec![cmd.to_lowercase()]
        } else {
            subs.iter()
                .map(|s| format!("{}|{}", cmd.to_lowercase(), s.to_lowercase()))
                .collect()
        };
        for name in names {
            // Sentinel commands exist only on a Sentinel.
            let c = if *cmd == "SENTINEL" {
                &mut scon
            } else {
                &mut con
            };
            let (flags, specs) = command_info(c, &name)
                .unwrap_or_else(|| panic!("the server does not know `{name}`"));
            assert!(
                !flags.iter().any(|f| f == "write"),
                "`{name}` is on the read-only list but the server flags it write: {flags:?}"
            );
            for spec in &specs {
                assert!(
                    spec.iter().any(|f| f == "RO"),
                    "`{name}` touches keys other than read-only: {spec:?}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked} commands checked");
    // The key-spec flags are read (so the RO check above is not vacuous).
    let (_, get) = command_info(&mut con, "get").expect("get");
    assert_eq!(get.len(), 1, "{get:?}");
    assert!(get[0].iter().any(|f| f == "RO"), "{get:?}");
    let (_, incr) = command_info(&mut con, "incr").expect("incr");
    assert!(
        !incr.is_empty() && incr.iter().all(|s| !s.iter().any(|f| f == "RO")),
        "{incr:?}"
    );
    // The method sees writes: these are flagged by the server and refused by the list.
    for name in ["incr", "set", "del", "flushall", "config|set", "lpush"] {
        let (flags, _) = command_info(&mut con, name).expect("known");
        assert!(
            flags.iter().any(|f| f == "write" || f == "admin"),
            "{name}: {flags:?}"
        );
    }
    // Not flagged `write` by the server, yet they change things (scripts, ACLs, clients,
    // failovers): the list, not the flag, is the authority.
    for args in [
        &["EVAL", "redis.call('set', 'k', 1)", "0"][..],
        &["FCALL", "f", "0"],
        &["ACL", "SETUSER", "x"],
        &["CLIENT", "KILL", "ID", "1"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["SENTINEL", "FAILOVER", "mymaster"],
        &["DEBUG", "SLEEP", "0"],
        &["SHUTDOWN"],
    ] {
        assert!(
            redis_read_only(args).is_err(),
            "{args:?} passed as read-only"
        );
    }
}

/// Shell text built from pieces that matter to quoting, with at least one `{{x}}`.
fn shell_template() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = proptest::sample::select(vec![
        "echo ",
        "{{x}}",
        "{{x}}",
        "{{x}}",
        " ",
        "'",
        "\"",
        "`",
        "$(",
        ")",
        "${",
        "}",
        "$((",
        "))",
        "#",
        "\\",
        "\n",
        ";",
        "&&",
        "|",
        "cat <<EOF\n",
        "EOF\n",
        "cat <<'EOF'\n",
        "<<<",
        "[[ ",
        " -eq 1 ]]",
        "(( ",
        "let ",
        "$",
        "$'",
        "case a in a) ",
        ";; esac",
        "x=",
        "true ",
        "printf %s ",
        "-",
        "a",
        "1",
        "eval ",
        "trap ",
        " EXIT",
        "sh -c ",
        "declare -i n; ",
        "n=",
        "a[",
        "]=1",
        "[ ",
        " -eq 1 ]",
        "printf %d ",
        "$none ",
        "exit ",
        "$(echo ",
        "test ",
        "l'et' ",
        "${#",
        "case {{x}} in *) ",
        "for i in {{x}}; do ",
        "done",
    ]);
    proptest::collection::vec(piece, 1..14).prop_map(|v| {
        let s = v.concat();
        if s.contains("{{x}}") {
            s
        } else {
            format!("{s} {{{{x}}}}")
        }
    })
}

/// Every shell template the scanner accepts (no misplaced placeholder), rendered with values
/// built to break out of quoting, comments and arithmetic, runs under `sh` and `bash` without
/// running any of the value's commands. The shells are the oracle for the scanner.
#[test]
fn no_value_breaks_out_of_a_shell_template_the_validator_accepts() {
    use opsdeck::runbook::Quoting;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let dir = tempfile::tempdir().expect("tmp");
    let m = |n: u8| dir.path().join(format!("m{n}"));
    let values = [
        format!(
            "a'b\"c$(touch {})`touch {}`;touch {};'\ntouch {} #",
            m(1).display(),
            m(2).display(),
            m(3).display(),
            m(4).display()
        ),
        format!("a[$(touch {})]", m(5).display()),
        format!("\\'; touch {} ; '\\", m(6).display()),
        format!("x\ntouch {}\nEOF\ntouch {}", m(7).display(), m(8).display()),
    ];
    let accepted = std::cell::Cell::new(0);
    // Each value is one word that reads back exactly (newlines included) in both shells.
    let echo = Template::parse("printf '[%s]' {{x}}").expect("parses");
    for v in &values {
        let mut vars = Vars::new();
        vars.insert("x".into(), Value::Str(v.clone()));
        let cmd = echo.render(Quoting::Shell, &vars).expect("renders");
        for shell in ["sh", "bash"] {
            let o = std::process::Command::new(shell)
                .args(["-c", &cmd])
                .current_dir(dir.path())
                .output()
                .expect("runs");
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                format!("[{v}]"),
                "{shell}: {cmd}"
            );
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&shell_template(), |src| {
            // A template that does not parse is refused by the validator.
            let Ok(t) = Template::parse(&src) else {
                return Ok(());
            };
            if !t.misplaced(Quoting::Shell).is_empty() {
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            for v in &values {
                let mut vars = Vars::new();
                vars.insert("x".into(), Value::Str(v.clone()));
                let cmd = t
                    .render(Quoting::Shell, &vars)
                    .map_err(|e| TestCaseError::fail(e.clone()))?;
                for shell in ["sh", "bash"] {
                    let _ = std::process::Command::new("timeout")
                        .args(["5", shell, "-c", &cmd])
                        .current_dir(dir.path())
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                    for n in 1..=8 {
                        if m(n).exists() {
                            let _ = std::fs::remove_file(m(n));
                            return Err(TestCaseError::fail(format!(
                                "{shell}: the value ran `touch m{n}` through {src:?} (rendered {cmd:?})"
                            )));
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let accepted = accepted.get();
    eprintln!("{accepted} generated templates accepted, each run under sh and bash");
    assert!(
        accepted > 50,
        "only {accepted} templates accepted: the test says little"
    );
}

/// SQL built from pieces that matter to the lexer: comments of every kind, quotes, `;`,
/// executable comments, and statements that change things.
fn sql_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = proptest::sample::select(vec![
        "SELECT 1",
        "SELECT name FROM keep.t",
        " ",
        "\n",
        ";",
        "-- ",
        "--",
        "#",
        "/*",
        "*/",
        "/*!",
        "/*!50000 ",
        "/*M!",
        "'",
        "\"",
        "`",
        "\\",
        "DROP TABLE keep.t",
        "INSERT INTO keep.t VALUES ('x')",
        "DELETE FROM keep.t",
        " INTO @v",
        "SELECT GET_LOCK('l', 0)",
        "UPDATE keep.t SET name = 'x'",
        "1",
        ",",
        "(",
        ")",
        "'a;b'",
        "SHOW TABLES",
        "WITH w AS (SELECT 1) ",
        "EXPLAIN ",
        " FOR UPDATE",
        " UNION SELECT 2",
        "x",
        " @v := 2",
        "DO 1",
    ]);
    (
        proptest::sample::select(vec![
            "SELECT 1",
            "SHOW TABLES",
            "",
            "WITH w AS (SELECT 1) SELECT 1",
        ]),
        proptest::collection::vec(piece, 0..10),
    )
        .prop_map(|(head, v)| format!("{head}{}", v.concat()))
}

/// Every statement the read-only classifier accepts, sent to a real MariaDB over a connection
/// that allows multi-statements (what the old client did): the table, the session variables
/// and the named locks are as before. The server is the oracle for the lexer.
#[test]
fn sql_the_classifier_calls_read_only_changes_nothing_on_mariadb() {
    use opsdeck::runbook::read_only::sql as sql_read_only;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let db = TestMariadb::start("oracle", |_| {});
    db.create_user("opsdeck", "oracle-pw", "ALL PRIVILEGES");
    db.sql("CREATE DATABASE keep; CREATE TABLE keep.t (name VARCHAR(64)); INSERT INTO keep.t VALUES ('alice');");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(db.addr().port())
        .user(Some("opsdeck"))
        .pass(Some("oracle-pw"))
        .prefer_socket(false);
    let conn = std::cell::RefCell::new(rt.block_on(mysql_async::Conn::new(opts)).expect("connect"));
    // The oracle sees a change that hides behind a first statement.
    let mut guard = conn.borrow_mut();
    let c = &mut *guard;
    rt.block_on(async {
        let mut r = c.query_iter("SELECT 1; SET @v = 5").await.expect("multi");
        while !r.is_empty() {
            let _ = r.collect::<mysql_async::Row>().await;
        }
        drop(r);
        let v: Option<Option<i64>> = c.query_first("SELECT @v").await.expect("@v");
        assert_eq!(v, Some(Some(5)), "multi-statements run on this connection");
        c.query_drop("SET @v = NULL").await.expect("reset");
    });
    drop(guard);
    let accepted = std::cell::Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&sql_text(), |q| {
            if sql_read_only(&q).is_err() {
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let mut conn = conn.borrow_mut();
            let state: (String, Option<i64>, Option<i64>) = rt.block_on(async {
                // Errors are fine (a syntax error changes nothing); read every result set.
                if let Ok(mut r) = conn.query_iter(q.as_str()).await {
                    while !r.is_empty() {
                        if r.collect::<mysql_async::Row>().await.is_err() {
                            break;
                        }
                    }
                }
                let names: Vec<String> = conn
                    .query("SELECT name FROM keep.t")
                    .await
                    .unwrap_or_default();
                let row: Option<(Option<i64>, Option<i64>)> = conn
                    .query_first("SELECT @v, IS_USED_LOCK('l')")
                    .await
                    .unwrap_or(None);
                let (v, lock) = row.unwrap_or((None, None));
                (names.join(","), v, lock)
            });
            if state != ("alice".to_owned(), None, None) {
                return Err(TestCaseError::fail(format!(
                    "{q:?} passed as read-only and changed the server: {state:?}"
                )));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let accepted = accepted.get();
    eprintln!("{accepted} generated statements passed as read-only, each run on MariaDB");
    assert!(
        accepted > 50,
        "only {accepted} statements accepted: the test says little"
    );
}
