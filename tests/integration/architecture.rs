//! The shape of the code, checked so it cannot slip back unseen: no module of a crate uses a
//! sibling that uses it back (directly or around a circle), the workspace's crates depend only
//! on the layers below them, and no source file grows past about 1 000 lines (issue 29).
//!
//! The module graph is read from the sources: every `crate::`, `super::` and `self::` path
//! outside comments and `#[cfg(test)]` modules is an edge from the file it is written in to the
//! deepest module it names. A circle is looked for among the children of every module (the
//! modules under one parent, each child standing for its whole subtree), which is what a reader
//! meets: a parent re-exporting its children, and children using their parent's items, is how
//! a Rust module is built and is not a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's layers, lowest first: a crate may depend on crates before it only.
const LAYERS: [&str; 8] = [
    "core", "yara", "lookup", "known", "cache", "report", "scan", "gateway",
];

/// The longest a source file may be, in lines. Files past it are listed with their reason.
const MAX_LINES: usize = 1_000;

/// Files allowed past [`MAX_LINES`], each with the reason it is one thing.
const LONG_FILES: &[(&str, &str)] = &[];

type Module = Vec<String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every crate's `src` folder: the binary's and each workspace crate's.
fn source_roots() -> Vec<PathBuf> {
    let mut v = vec![root().join("src")];
    let crates = std::fs::read_dir(root().join("crates")).expect("crates/");
    let mut dirs: Vec<PathBuf> = crates.map(|e| e.unwrap().path().join("src")).collect();
    dirs.sort();
    v.extend(dirs.into_iter().filter(|d| d.is_dir()));
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file defines: `a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`/`main.rs` the root.
/// Files under `src/bin` are binaries of their own, not modules of the library.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if m.first().is_some_and(|s| s == "bin") {
        return None;
    }
    if m.last()
        .is_some_and(|s| s == "lib" || s == "main" || s == "mod")
    {
        m.pop();
    }
    // Unit tests in a file of their own (`foo/tests.rs`) are no part of the design.
    if m.last()
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
    {
        return None;
    }
    Some(m)
}

/// The source without comments and without a trailing `#[cfg(test)] mod tests { … }`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `crate::a::b`, `super::x`, `self::y` in `code`, as segment lists.
fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut segs = Vec::new();
            let mut rest = &code[from..];
            loop {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    break;
                }
                segs.push(rest[..end].to_string());
                rest = &rest[end..];
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            out.push((start.trim_end_matches("::").to_string(), segs));
        }
    }
    out
}

/// The module graph of one crate: file modules and the modules each refers to.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(src, f)?, f.clone())))
        .collect();
    let resolve = |path: Vec<String>| -> Module {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
            .unwrap_or_default()
    };
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, file) in &modules {
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for (kind, mut segs) in paths(&code) {
            let mut base: Module = match kind.as_str() {
                "crate" => Vec::new(),
                "self" => m.clone(),
                _ => {
                    // `super` in a file module is its parent; each further `super` goes up one.
                    let mut b = m.clone();
                    b.pop();
                    while segs.first().is_some_and(|s| s == "super") {
                        segs.remove(0);
                        b.pop();
                    }
                    b
                }
            };
            base.extend(segs);
            let target = resolve(base);
            if &target != m {
                edges.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

/// Circles among the children of each module: sets of sibling names that reach each other.
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<(Module, Vec<String>)> {
    let parents: BTreeSet<Module> = edges
        .keys()
        .chain(edges.values().flatten())
        .filter(|m| !m.is_empty())
        .map(|m| m[..m.len() - 1].to_vec())
        .collect();
    let mut found = Vec::new();
    for p in parents {
        let mut kids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, bs) in edges {
            for b in bs {
                let under = |m: &Module| m.len() > p.len() && m[..p.len()] == p[..];
                if under(a) && under(b) && a[p.len()] != b[p.len()] {
                    kids.entry(a[p.len()].clone())
                        .or_default()
                        .insert(b[p.len()].clone());
                }
            }
        }
        // Two siblings are in one circle when each reaches the other.
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(x) = todo.pop() {
                for y in kids.get(&x).into_iter().flatten() {
                    if seen.insert(y.clone()) {
                        todo.push(y.clone());
                    }
                }
            }
            seen
        };
        let mut done = BTreeSet::new();
        for k in kids.keys() {
            if done.contains(k) {
                continue;
            }
            let from_k = reach(k);
            let circle: Vec<String> = from_k
                .iter()
                .filter(|o| reach(o).contains(k))
                .cloned()
                .collect();
            if !circle.is_empty() {
                done.extend(circle.iter().cloned());
                found.push((p.clone(), circle));
            }
        }
    }
    found
}

#[test]
fn no_module_uses_a_sibling_that_uses_it_back() {
    let mut all = Vec::new();
    for src in source_roots() {
        for (parent, circle) in circles(&graph(&src)) {
            let at = if parent.is_empty() {
                "the crate root".to_string()
            } else {
                parent.join("::")
            };
            all.push(format!(
                "{}: under {at}: {}",
                src.display(),
                circle.join(" <-> ")
            ));
        }
    }
    assert!(all.is_empty(), "module circles:\n{}", all.join("\n"));
}

/// The checker finds a circle where there is one (so the test above can fail).
#[test]
fn the_circle_check_sees_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::x::Y;\n// crate::c is only a comment\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "mod x;\n").unwrap();
    std::fs::write(src.join("b/x.rs"), "pub struct Y(super::super::a::Z);\n").unwrap();
    std::fs::write(src.join("c.rs"), "use crate::a;\n").unwrap();
    let found = circles(&graph(src));
    assert_eq!(
        found,
        vec![(vec![], vec!["a".to_string(), "b".to_string()])]
    );
}

#[test]
fn crates_depend_only_on_the_layers_below_them() {
    let mut wrong = Vec::new();
    for (i, name) in LAYERS.iter().enumerate() {
        let manifest = root().join("crates").join(name).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let doc: toml::Table = text.parse().unwrap();
        let mut deps: Vec<String> = Vec::new();
        for section in ["dependencies", "dev-dependencies"] {
            if let Some(t) = doc.get(section).and_then(|v| v.as_table()) {
                deps.extend(t.keys().cloned());
            }
        }
        for d in deps.iter().filter_map(|d| d.strip_prefix("hashsweep-")) {
            let Some(j) = LAYERS.iter().position(|l| *l == d) else {
                continue; // mock, fastmem: test and platform helpers, outside the layers
            };
            if j >= i {
                wrong.push(format!("hashsweep-{name} depends on hashsweep-{d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_source_file_grows_past_a_thousand_lines() {
    let mut long = Vec::new();
    for src in source_roots() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let rel = f
                .strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let n = std::fs::read_to_string(&f).unwrap().lines().count();
            if n > MAX_LINES && !LONG_FILES.iter().any(|(p, _)| *p == rel) {
                long.push(format!("{rel}: {n} lines"));
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "split these by responsibility (or add them to LONG_FILES with the reason they are one thing):\n{}",
        long.join("\n")
    );
}
