//! Every theme file shipped in `themes/` loads, and `opsdeck check` rejects a broken user
//! theme or key binding with its position.

use assert_cmd::Command;

#[test]
fn every_shipped_theme_file_parses() {
    let dir = format!("{}/themes", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("themes dir") {
        let path = entry.expect("entry").path();
        let theme = opsdeck::ui::theme::Theme::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!theme.critical.symbol.is_empty());
        n += 1;
    }
    assert!(n >= 4, "dark, light, high-contrast and colorblind at least");
}

#[test]
fn check_rejects_a_broken_user_theme_and_keymap_with_positions() {
    let cfg = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(cfg.path().join("themes")).expect("dir");
    std::fs::write(
        cfg.path().join("themes/mine.toml"),
        "[base]\nfg = \"#12345\"\n",
    )
    .expect("theme");
    let out = Command::cargo_bin("opsdeck")
        .expect("bin")
        .env("OPSDECK_CONFIG_DIR", cfg.path())
        .env_remove("OPSDECK_INVENTORY")
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("themes/mine.toml:2:6: invalid colour \"#12345\""),
        "{err}"
    );

    std::fs::remove_file(cfg.path().join("themes/mine.toml")).expect("rm");
    std::fs::write(
        cfg.path().join("keys.toml"),
        "[global]\nquit = [\"ctrl-\"]\n",
    )
    .expect("keys");
    let out = Command::cargo_bin("opsdeck")
        .expect("bin")
        .env("OPSDECK_CONFIG_DIR", cfg.path())
        .env_remove("OPSDECK_INVENTORY")
        .arg("check")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keys.toml:2:8: cannot read key \"ctrl-\" for quit"),
        "{err}"
    );
}
