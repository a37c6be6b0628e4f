//! The stated minimum Rust version is true: no crate the lock builds (dependencies, build and
//! dev dependencies of every workspace member) asks for a newer one than `Cargo.toml`'s
//! `rust-version`, and the README, the user guide and the stand-in crate say the same number. Only one
//! toolchain is at hand, so this derives it from `cargo metadata --locked`.
//!
//! Offline, as tests are: a new clone's `cargo test` has downloaded only the crates this
//! platform builds, so when the other platforms' are missing the check covers this platform's
//! graph and says so; with `HASHSWEEP_REQUIRE_ALL_PLATFORMS` set (`.ci/run`, after
//! `cargo fetch`) that is a failure.

use std::process::Command;

use serde_json::Value;

use crate::util::skip;

/// `1.89` or `1.89.0` as comparable numbers (a missing patch is 0).
fn version(s: &str) -> (u64, u64, u64) {
    let mut it = s.trim().split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// `cargo metadata --locked --offline` (with `extra` arguments) as JSON, or its error text.
fn metadata_with(extra: &[&str]) -> Result<Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("cargo metadata JSON"))
}

/// The host's target triple, from `rustc -vV`.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("run rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// Every platform's graph; this platform's when the others' crates are not downloaded.
fn metadata() -> Value {
    let all = match metadata_with(&[]) {
        Ok(m) => return m,
        Err(e) => e,
    };
    assert!(
        std::env::var_os("HASHSWEEP_REQUIRE_ALL_PLATFORMS").is_none(),
        "cargo metadata (every platform; run `cargo fetch --locked` first): {all}"
    );
    let host = host();
    let m = metadata_with(&["--filter-platform", &host])
        .unwrap_or_else(|e| panic!("cargo metadata --filter-platform {host}: {e}"));
    skip(&format!(
        "the crates of platforms other than {host} are not downloaded (`cargo fetch --locked` \
         gets them): only {host}'s graph was checked"
    ));
    m
}

#[test]
fn the_stated_minimum_rust_covers_every_locked_crate_and_the_readme_says_it() {
    let m = metadata();
    let packages = m["packages"].as_array().expect("packages");
    let by_id = |id: &str| {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("package {id}"))
    };
    let members: Vec<&str> = m["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let root = members
        .iter()
        .map(|id| by_id(id))
        .find(|p| p["name"] == "hashsweep")
        .expect("the hashsweep package");
    let stated = root["rust_version"]
        .as_str()
        .expect("Cargo.toml states a rust-version");
    // Every workspace member states the same.
    for id in &members {
        let p = by_id(id);
        assert_eq!(
            p["rust_version"].as_str(),
            Some(stated),
            "{} states another rust-version",
            p["name"]
        );
    }
    // The build graph: every node the resolve reaches (normal, build and dev edges of the
    // members; dev edges of dependencies are not built).
    let nodes = m["resolve"]["nodes"].as_array().expect("resolve");
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).expect("node");
    let mut seen: Vec<String> = members.iter().map(|s| s.to_string()).collect();
    let mut stack = seen.clone();
    while let Some(id) = stack.pop() {
        let member = members.contains(&id.as_str());
        for d in node(&id)["deps"].as_array().into_iter().flatten() {
            let dev_only = d["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|k| k["kind"] == "dev");
            let pkg = d["pkg"].as_str().expect("pkg").to_string();
            if (member || !dev_only) && !seen.contains(&pkg) {
                seen.push(pkg.clone());
                stack.push(pkg);
            }
        }
    }
    let (needed, by) = seen
        .iter()
        .map(|id| by_id(id))
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((
                version(v),
                format!(
                    "{} {} needs {v}",
                    p["name"].as_str().unwrap_or("?"),
                    p["version"].as_str().unwrap_or("?")
                ),
            ))
        })
        .max()
        .expect("some crate states a rust-version");
    assert!(
        version(stated) >= needed,
        "Cargo.toml says rust-version {stated}, but {by}"
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let said = format!("Rust toolchain ({stated} or later)");
    assert!(
        readme.contains(&said),
        "the README's set-up section must say {said:?}"
    );
    // And no other place, in the README or the user guide, says another number.
    for (name, text) in crate::guide::docs() {
        for (at, _) in text.match_indices(" or later)") {
            let start = text[..at].rfind('(').expect("an opening parenthesis");
            let v = &text[start + 1..at];
            if v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                assert_eq!(v, stated, "{name} says ({v} or later) somewhere");
            }
        }
    }
}
