//! `tape::testing` stays dev-only: proptest is an optional dependency of `tape`, switched on by
//! the `testing` feature alone (never by default), and the workspace crates turn that feature on
//! under `[dev-dependencies]` only, so a release build of the libraries and the binary compiles
//! neither the module nor proptest. The manifests are read as text: the sections are few and flat.

use std::path::Path;

/// The body of `[section]` in the manifest at `path` (relative to the workspace root), up to the
/// next section header.
fn section(path: &str, name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(path)).unwrap();
    let header = format!("[{name}]\n");
    let Some(start) = text.find(&header) else {
        return String::new();
    };
    let body = &text[start + header.len()..];
    let end = body.find("\n[").map_or(body.len(), |i| i + 1);
    body[..end].to_string()
}

/// The lines of a section that are not comments.
fn entries(body: &str) -> Vec<&str> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn proptest_is_optional_and_only_the_testing_feature_enables_it() {
    let deps = section("crates/tape/Cargo.toml", "dependencies");
    let proptest: Vec<&str> = entries(&deps)
        .into_iter()
        .filter(|l| l.starts_with("proptest"))
        .collect();
    assert_eq!(
        proptest,
        ["proptest = { workspace = true, optional = true }"],
        "tape's [dependencies]:\n{deps}"
    );
    let features = section("crates/tape/Cargo.toml", "features");
    assert_eq!(
        entries(&features),
        ["testing = [\"dep:proptest\"]"],
        "tape's [features] (no default feature may turn testing on):\n{features}"
    );
}

#[test]
fn dependents_enable_testing_under_dev_dependencies_only() {
    let wanted = "tape = { workspace = true, features = [\"testing\"] }";
    for manifest in [
        "Cargo.toml",
        "crates/optim/Cargo.toml",
        "crates/nets/Cargo.toml",
    ] {
        for name in ["dependencies", "build-dependencies", "features"] {
            let body = section(manifest, name);
            assert!(
                !body.contains("testing"),
                "{manifest} [{name}] mentions testing:\n{body}"
            );
        }
        let dev = section(manifest, "dev-dependencies");
        assert!(
            entries(&dev).contains(&wanted),
            "{manifest} [dev-dependencies] lacks `{wanted}`:\n{dev}"
        );
    }
}
