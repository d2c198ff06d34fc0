//! The README's two commands share one build: `cargo run -p floatip-lab` (which then builds the
//! floatip binary with `cargo build --workspace`) and `cargo nextest run --workspace` must
//! resolve every dependency with the same features, or cargo compiles it again (aws-sdk-ec2
//! alone takes minutes). A dev-dependency that turns on a feature the normal build lacks, or a
//! lab dependency floatip does not share, shows up here as the crate and the two feature lists.

use std::collections::BTreeMap;
use std::process::Command;

/// Crate (`name version`) to its features, as `cargo tree` resolves them for `args`.
fn features(args: &[&str]) -> BTreeMap<String, String> {
    let root = floatip_lab::repo_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["tree", "--locked", "--offline", "--prefix", "none"])
        .args(["--format", "{p}|{f}"])
        .args(args)
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, feats)) = line.split_once('|') else {
            continue;
        };
        // Build scripts and proc macros run on the host and are resolved apart; "name vX".
        if package.contains("(proc-macro)") {
            continue;
        }
        let id: Vec<&str> = package.split_whitespace().take(2).collect();
        map.insert(id.join(" "), feats.to_string());
    }
    map
}

#[test]
fn the_lab_the_floatip_binary_and_the_tests_resolve_the_same_features() {
    let tests = features(&["--workspace", "-e", "normal,build,dev"]);
    for (what, args) in [
        (
            "cargo run -p floatip-lab",
            &["-p", "floatip-lab", "-e", "normal,build"][..],
        ),
        (
            "cargo build --workspace --bin floatip (the lab's build)",
            &["--workspace", "-e", "normal,build"][..],
        ),
    ] {
        let got = features(args);
        assert!(got.len() > 100, "{what}: only {} crates", got.len());
        let differ: Vec<String> = got
            .iter()
            .filter_map(|(krate, f)| {
                let t = tests.get(krate)?;
                (t != f).then(|| format!("{krate}: [{f}] vs tests [{t}]"))
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{what} and `cargo nextest run --workspace` resolve these crates differently, so each is compiled twice: {differ:#?}"
        );
    }
}
