//! Build script: puts the commit and the enabled Cargo features into `--version`
//! (`HASHSWEEP_BUILD`, e.g. `commit 1a2b3c4d5e6f, features: none`). Without git, or outside a
//! checkout (a source tarball, `cargo install` from crates.io), the commit is `unknown`.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !s.trim().is_empty()).then(|| s.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        // Run again when HEAD moves: the file HEAD, the branch it names, packed refs.
        let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
        if let Some(r) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]) {
            watch.push(r);
        }
        for w in watch {
            if let Some(p) = git(&["rev-parse", "--git-path", &w]).filter(|p| Path::new(p).exists())
            {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();
    println!(
        "cargo:rustc-env=HASHSWEEP_BUILD=commit {}, features: {}",
        commit.as_deref().unwrap_or("unknown"),
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        }
    );
}
