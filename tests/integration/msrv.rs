//! The stated minimum Rust version is true: no crate the lock builds (dependencies, build and
//! dev dependencies of every workspace member) asks for a newer one than `Cargo.toml`'s
//! `rust-version`, and the README and the stand-in crate say the same number. Only one
//! toolchain is at hand, so this derives it from `cargo metadata --locked`.

use std::process::Command;

use serde_json::Value;

/// `1.89` or `1.89.0` as comparable numbers (a missing patch is 0).
fn version(s: &str) -> (u64, u64, u64) {
    let mut it = s.trim().split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
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
}
