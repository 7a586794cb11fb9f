//! Documentation generated from code stays equal to it: `docs/options.md` is the options
//! reference printed by `optim::options::reference()`. Run with `UPDATE_DOCS=1` to rewrite it.

use std::path::Path;

#[test]
fn the_options_reference_matches_the_option_tables() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/options.md");
    let generated = optim::options::reference();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/options.md is stale; run `UPDATE_DOCS=1 cargo test --test docs`"
    );
}
