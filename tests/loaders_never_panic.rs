//! No loader panics, whatever the text. Arbitrary Unicode (any character, not only ASCII),
//! runbooks whose every string field holds arbitrary Unicode (so the validator, the condition
//! parser, the template scanner and the read-only lexers all see it), and mutated copies of
//! every shipped file — runbooks, themes, the keymap and the test inventories — with bytes and
//! characters inserted, deleted and replaced at random positions. A failure must be an error
//! located inside the file: a line within its line count and a column within that line.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use opsdeck::app::keymap::Keymap;
use opsdeck::inventory::{self, Inventory, InventoryError, Located};
use opsdeck::runbook::{RunbookError, load_file, load_str};
use opsdeck::ui::theme::{Theme, ThemeError};
use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lab_inventory() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        inventory::load(Some(&root().join("tests/inventories/lab-shaped.toml")))
            .expect("lab-shaped inventory loads")
    })
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Every shipped file a loader reads, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Runbook,
    Theme,
    Keymap,
    Inventory,
}

fn shipped() -> &'static [(Kind, PathBuf, Vec<u8>)] {
    static FILES: OnceLock<Vec<(Kind, PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut out = Vec::new();
        for p in files("runbooks") {
            out.push((Kind::Runbook, p));
        }
        for p in files("themes") {
            out.push((Kind::Theme, p));
        }
        out.push((Kind::Keymap, root().join("src/app/keys.toml")));
        for p in files("tests/inventories")
            .into_iter()
            .chain(files("tests/inventories/invalid"))
        {
            out.push((Kind::Inventory, p));
        }
        out.into_iter()
            .map(|(k, p)| {
                let mut bytes = std::fs::read(&p).expect("read shipped file");
                if k == Kind::Inventory {
                    // Loading an inventory runs its password_cmd: never run mutated commands.
                    let text = String::from_utf8(bytes).expect("utf8");
                    bytes = text.replace("password_cmd", "password_env").into_bytes();
                }
                (k, p, bytes)
            })
            .collect()
    })
}

/// The error points inside the text: 1-based line within the file, column within the line.
fn assert_located(l: &Located, text: &str, what: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        l.line >= 1 && l.line <= lines.len(),
        "{what}: line {} outside 1..={}: {l}",
        l.line,
        lines.len()
    );
    let width = lines[l.line - 1].chars().count();
    assert!(
        l.col >= 1 && l.col <= width + 1,
        "{what}: column {} outside 1..={} of line {}: {l}",
        l.col,
        width + 1,
        l.line
    );
}

fn check_runbook(text: &str, path: &Path) {
    match load_str(text, path, Some(lab_inventory())) {
        Ok((_, warnings)) => {
            for w in &warnings {
                assert_located(&w.located, text, "runbook warning");
            }
        }
        Err(RunbookError::Invalid(diags)) => {
            assert!(!diags.is_empty(), "an error without a diagnostic");
            for d in &diags {
                assert_located(&d.located, text, "runbook");
            }
        }
        Err(e) => panic!("load_str gave a non-located error: {e}"),
    }
    // And without an inventory (what `opsdeck runbooks` does).
    let _ = load_str(text, path, None);
}

fn check_inventory(text: &str, path: &Path) {
    if text.contains("password_cmd") {
        return;
    }
    match inventory::load_str(text, path) {
        Ok(_) => {}
        Err(InventoryError::Invalid(locs)) => {
            assert!(!locs.is_empty(), "an error without a location");
            for l in &locs {
                assert_located(l, text, "inventory");
            }
        }
        Err(e) => panic!("inventory::load_str gave a non-located error: {e}"),
    }
}

fn check_keymap(text: &str, path: &Path) {
    if let Err(e) = Keymap::defaults().apply(text, path) {
        assert_located(&e.0, text, "keymap");
    }
}

fn check_theme(bytes: &[u8], name: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    match (Theme::from_file(&path), std::str::from_utf8(bytes)) {
        (Ok(_), _) | (Err(ThemeError::Read { .. }), Err(_)) => {}
        (Err(ThemeError::Invalid(l)), Ok(text)) => assert_located(&l, text, "theme"),
        (Err(e), _) => panic!("theme: unexpected error {e}"),
    }
}

/// Loads `bytes` as the shipped file `path` of kind `kind` would be loaded.
fn check(kind: Kind, path: &Path, bytes: &[u8]) {
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    match (kind, std::str::from_utf8(bytes)) {
        (Kind::Theme, _) => check_theme(bytes, &name),
        (Kind::Runbook, Ok(text)) => check_runbook(text, path),
        (Kind::Inventory, Ok(text)) => check_inventory(text, path),
        (Kind::Keymap, Ok(text)) => check_keymap(text, path),
        // Not UTF-8: the file loaders refuse to read it, naming the file.
        (Kind::Runbook, Err(_)) => {
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join(&name);
            std::fs::write(&p, bytes).expect("write");
            match load_file(&p, None) {
                Err(RunbookError::Read { path, .. }) => assert_eq!(path, p),
                other => panic!("invalid UTF-8 loaded: {:?}", other.map(|_| ())),
            }
        }
        (Kind::Inventory, Err(_)) => {
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join(&name);
            std::fs::write(&p, bytes).expect("write");
            assert!(matches!(
                inventory::load(Some(&p)),
                Err(InventoryError::Read { .. })
            ));
        }
        (Kind::Keymap, Err(_)) => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    InsertByte(u8),
    InsertChar(char),
    DeleteByte,
    DeleteChar,
    ReplaceByte(u8),
    ReplaceChar(char),
}

fn mutation() -> impl Strategy<Value = (f64, Mutation)> {
    let m = prop_oneof![
        any::<u8>().prop_map(Mutation::InsertByte),
        any::<char>().prop_map(Mutation::InsertChar),
        // Characters that matter to TOML, templates, shells, SQL and conditions.
        proptest::sample::select(vec![
            '"', '\'', '`', '{', '}', '[', ']', '=', '\\', '\n', '#', '$', '(', ')', ';', '*', '.',
            ',', '-', 'é', '€', '\u{0}', '\u{feff}',
        ])
        .prop_map(Mutation::InsertChar),
        Just(Mutation::DeleteByte),
        Just(Mutation::DeleteChar),
        any::<u8>().prop_map(Mutation::ReplaceByte),
        any::<char>().prop_map(Mutation::ReplaceChar),
    ];
    (0.0..1.0f64, m)
}

fn mutate(bytes: &[u8], muts: &[(f64, Mutation)]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for (at, m) in muts {
        let pos = ((b.len() as f64) * at) as usize;
        let pos = pos.min(b.len());
        // Character mutations act on the character at (or before) the position.
        let char_start = |b: &[u8]| {
            let mut p = pos.min(b.len());
            while p > 0 && p < b.len() && (b[p] & 0xC0) == 0x80 {
                p -= 1;
            }
            p
        };
        match m {
            Mutation::InsertByte(x) => b.insert(pos, *x),
            Mutation::InsertChar(c) => {
                let p = char_start(&b);
                let mut buf = [0; 4];
                b.splice(p..p, c.encode_utf8(&mut buf).bytes());
            }
            Mutation::DeleteByte if pos < b.len() => {
                b.remove(pos);
            }
            Mutation::DeleteChar => {
                let p = char_start(&b);
                let mut end = (p + 1).min(b.len());
                while end < b.len() && (b[end] & 0xC0) == 0x80 {
                    end += 1;
                }
                b.drain(p..end);
            }
            Mutation::ReplaceByte(x) if pos < b.len() => b[pos] = *x,
            Mutation::ReplaceChar(c) => {
                let p = char_start(&b);
                let mut end = (p + 1).min(b.len());
                while end < b.len() && (b[end] & 0xC0) == 0x80 {
                    end += 1;
                }
                let mut buf = [0; 4];
                b.splice(p..end, c.encode_utf8(&mut buf).bytes());
            }
            Mutation::DeleteByte | Mutation::ReplaceByte(_) => {}
        }
    }
    b
}

/// Text for a string field: any characters, or ones that matter to the lexers.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "\\PC{0,40}",
        any::<String>(),
        "[{}'\"`$()#;\\\\ a-zA-Z0-9_.*:!/é€\n-]{0,40}",
        "(SELECT|SHOW|WITH|KILL|/\\*!|--|#|'|\"|`|\\{\\{x\\}\\}|\\{\\{raw x\\}\\}|;| |\\(|\\)|é){0,12}",
        "(echo|'|\"|`|\\$\\(|\\$\\{|\\$\\(\\(|\\)|\\}|<<|EOF|\n|#|\\\\|\\{\\{x\\}\\}|\\[\\[|let| |é){0,12}",
    ]
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A runbook whose every string value is arbitrary.
fn runbook_with(f: &[String]) -> String {
    let s = |i: usize| toml_str(&f[i % f.len()]);
    format!(
        r#"id = "t"
title = {}
rto = {}
triggers = [{{ check = {}, state = {} }}]
[inputs.x]
default = {}
pattern = {}
[[steps]]
id = "a"
title = "a"
kind = "diagnose"
target = {{ selector = {} }}
sql = {}
capture = {{ var = "v", regex = {} }}
when = {}
[[steps]]
id = "b"
title = "b"
kind = "action"
confirm = "yes"
target = {{ selector = "app1" }}
shell = {}
on_failure = {}
guards = [{{ redis = [{}, {}], expect = {{ regex = {} }} }}, {{ shell = {} }}]
[[steps]]
id = "c"
title = "c"
kind = "wait"
target = {{ selector = "db1" }}
sql = {}
until = {}
timeout = {}
[[steps]]
id = "d"
title = "d"
kind = "check"
target = {{ selector = "app1" }}
docker = {{ action = "exec", command = {} }}
expect = {{ capture = {}, op = {}, value = 1 }}
[[steps]]
id = "e"
title = "e"
kind = "diagnose"
target = {{ selector = "cache:master" }}
redis = [{}, {}, {}]
"#,
        s(0),
        s(1),
        s(2),
        s(3),
        s(4),
        s(5),
        s(6),
        s(7),
        s(8),
        s(9),
        s(10),
        s(11),
        s(12),
        s(13),
        s(14),
        s(15),
        s(16),
        s(17),
        s(18),
        s(19),
        s(20),
        s(21),
        s(22),
        s(23),
        s(24),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_loads_or_fails_with_a_located_error(
        s in prop_oneof!["(?s).{0,400}", any::<String>(), "\\PC{0,300}"],
    ) {
        check_runbook(&s, Path::new("x.toml"));
        check_inventory(&s, Path::new("inv.toml"));
        check_keymap(&s, Path::new("keys.toml"));
        check_theme(s.as_bytes(), "t.toml");
    }

    #[test]
    fn runbooks_with_arbitrary_unicode_in_every_field_never_panic(
        f in proptest::collection::vec(field(), 26),
    ) {
        let text = runbook_with(&f);
        check_runbook(&text, Path::new("t.toml"));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_shipped_files_never_panic(
        which in any::<proptest::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let all = shipped();
        let (kind, path, bytes) = &all[which.index(all.len())];
        let mutated = mutate(bytes, &muts);
        check(*kind, path, &mutated);
    }
}

#[test]
fn every_shipped_file_is_covered_and_loads() {
    let all = shipped();
    for kind in [Kind::Runbook, Kind::Theme, Kind::Keymap, Kind::Inventory] {
        assert!(all.iter().any(|(k, ..)| *k == kind), "{kind:?}");
    }
    assert!(all.iter().filter(|(k, ..)| *k == Kind::Runbook).count() >= 8);
    for (kind, path, bytes) in all {
        check(*kind, path, bytes);
    }
}

/// SQL-ish text: statements, comments, quotes, executable comments.
fn sql_like() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(vec![
        "SELECT 1",
        "SHOW STATUS",
        "WITH w AS (SELECT 1) SELECT 1",
        " ",
        "\n",
        ";",
        "-- ",
        "--",
        "#",
        "/*",
        "*/",
        "/*!",
        "/*M!",
        "'",
        "\"",
        "`",
        "\\",
        "''",
        "KILL 1",
        "DROP TABLE t",
        " INTO @v",
        "{{x}}",
        "{{raw x}}",
        "(",
        ")",
        "é",
        "1e",
        "-",
        "0x",
        ".5",
        "a.b(",
        "COUNT(",
        "@@",
        ":=",
    ]);
    proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The lexers take any text: SQL tokens, the read-only verdicts, the template scanners,
    /// conditions.
    #[test]
    fn the_lexers_never_panic(s in prop_oneof![any::<String>(), sql_like()]) {
        use opsdeck::runbook::{Cond, Quoting, Template, read_only};
        let _ = opsdeck::clients::read_only::sql_tokens(&s);
        let _ = read_only::sql(&s);
        let words: Vec<&str> = s.split_whitespace().collect();
        let _ = read_only::redis(&words);
        if let Ok(t) = Template::parse(&s) {
            let _ = t.misplaced(Quoting::Shell);
            let _ = t.misplaced(Quoting::Sql);
        }
        let _ = Cond::parse(&s);
    }

    /// A `;` can only fail to end the statement inside a comment or a literal: if appending
    /// `; DROP TABLE t` still leaves one read-only statement, the DROP is not code.
    #[test]
    fn a_second_statement_is_never_read_only(s in sql_like()) {
        use opsdeck::clients::read_only::{SqlTok, sql, sql_tokens};
        let text = format!("{s}; DROP TABLE t");
        if sql(&text).is_ok() {
            let toks = sql_tokens(&text).expect("lexes");
            // The appended DROP starts right after "; ".
            let at = s.len() + 2;
            prop_assert!(
                !toks.iter().any(|t| t.at == at && t.tok == SqlTok::Word("DROP".into())),
                "{text:?} passed as read-only with the appended DROP as code"
            );
        }
    }
}
