//! Compiles the shipped runbooks in: every `runbooks/*.toml` becomes an entry of
//! `BUILTIN` (id = file stem, text = `include_str!` of the file), so a new runbook file needs
//! no code change. Cargo reruns this when anything under `runbooks/` changes.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    // The shipped runbooks live at the top of the repository, beside this crate.
    let dir = manifest.join("..").join("runbooks");
    println!("cargo:rerun-if-changed=../runbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// The shipped runbooks: (id, file name, text), sorted by file name.\n\
         pub const BUILTIN: &[(&str, &str, &str)] = &[\n",
    );
    for f in &files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let name = f.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({stem:?}, {name:?}, include_str!({:?})),",
            f.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"))
        .join("builtin_runbooks.rs");
    std::fs::write(&dest, out).expect("writing the built-in runbook list");
}
