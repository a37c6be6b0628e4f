//! The oracle: the PyPI `yara-x` package at this crate's yara-x version compiles the same
//! third-party rules (quicksand's, vendored under tests/fixtures; pdfalyzer's, downloaded by
//! `.ci/run` into the venv and named by `HASHSWEEP_YARA_PDFALYZER_RULES`) and scans the same
//! tree of real files (executables, PE launchers, PDFs, an RTF, scripts, zips) the Python
//! helper writes; for every file, the set of `namespace:rule` must equal what this crate's
//! matcher gives when fed the file in blocks, as the hasher reads it.
//!
//! Python is `HASHSWEEP_PYTHON` (else `python3`). Without the package, or without the
//! pdfalyzer rules, the test is skipped loudly, unless `HASHSWEEP_REQUIRE_PY_ORACLES` is set
//! (`.ci/run`): then it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hashsweep_yara::{FileGlobals, Matcher, Outcome, YARA_X_VERSION, load_cached};
use serde_json::{Value, json};

fn python() -> Command {
    Command::new(std::env::var_os("HASHSWEEP_PYTHON").unwrap_or_else(|| "python3".into()))
}

fn required() -> bool {
    std::env::var_os("HASHSWEEP_REQUIRE_PY_ORACLES").is_some()
}

/// Skips (loudly), or fails when the oracles are required.
fn unavailable(what: &str) {
    assert!(
        !required(),
        "{what}, and HASHSWEEP_REQUIRE_PY_ORACLES is set"
    );
    eprintln!("SKIPPED: {what}");
}

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/yara_oracle.py");

/// A block size that is not a power of two, so patterns straddle block boundaries.
const BLOCK: usize = 65_537;

fn quicksand() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quicksand")
}

/// The rule files, as (namespace, path) the way the crate names them: the file stem.
fn rule_files(dirs: &[PathBuf]) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("yar") || e.eq_ignore_ascii_case("yara")
                })
            })
            .collect();
        files.sort();
        for p in files {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            out.push((stem, p));
        }
    }
    out
}

fn files_under(root: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// This crate's matches for `file`, fed in [`BLOCK`]-sized reads.
fn ours(m: &mut Matcher<'_>, file: &Path) -> BTreeSet<String> {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let dir = file.parent().unwrap().display().to_string();
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_string())
        .unwrap_or_default();
    m.begin(&FileGlobals {
        filename: &name,
        filepath: &dir,
        extension: &ext,
        ..FileGlobals::default()
    });
    let mut f = std::fs::File::open(file).unwrap();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        m.feed(&buf[..n]);
    }
    match m.finish() {
        Outcome::Matched { rules } => rules.iter().map(|r| r.name()).collect(),
        Outcome::NoMatch => BTreeSet::new(),
        other => panic!("{}: {other:?}", file.display()),
    }
}

#[test]
fn pypi_yara_x_matches_the_same_rules_on_every_file() {
    let probe = python()
        .args([
            "-c",
            "from importlib.metadata import version; import yara_x; print(version('yara-x'))",
        ])
        .output();
    let version = match probe {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            return unavailable(&format!(
                "python cannot import yara_x (pip install yara-x=={YARA_X_VERSION}; or set \
                 HASHSWEEP_PYTHON)"
            ));
        }
    };
    assert_eq!(
        version, YARA_X_VERSION,
        "the PyPI yara-x must be the crate's version"
    );
    let mut dirs = vec![quicksand()];
    match std::env::var_os("HASHSWEEP_YARA_PDFALYZER_RULES") {
        Some(d) if Path::new(&d).is_dir() => dirs.push(PathBuf::from(d)),
        _ => unavailable(
            "HASHSWEEP_YARA_PDFALYZER_RULES does not name pdfalyzer's yara_rules folder \
             (.ci/run downloads it): only quicksand's rules are compared",
        ),
    }
    let rules = rule_files(&dirs);

    let tree = tempfile::tempdir().unwrap();
    let made = python()
        .arg(HELPER)
        .arg("make-tree")
        .arg(tree.path())
        .status()
        .unwrap();
    assert!(made.success(), "make-tree failed");
    let mut files = Vec::new();
    files_under(tree.path(), &mut files);
    files.sort();

    // The oracle.
    let req = json!({
        "rules": rules.iter().map(|(ns, p)| json!([ns, p])).collect::<Vec<_>>(),
        "files": files,
    });
    let mut child = python()
        .arg(HELPER)
        .arg("scan")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the oracle failed");
    let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(theirs["version"], YARA_X_VERSION);
    let theirs: BTreeMap<PathBuf, BTreeSet<String>> = theirs["matches"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(p, v)| {
            let set = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            (PathBuf::from(p), set)
        })
        .collect();

    // This crate: the same rule folders as `--yara` arguments.
    let loaded = load_cached(&dirs, None).unwrap();
    let mut m = Matcher::new(&loaded.rules, hashsweep_yara::DEFAULT_MAX_SIZE, 0);
    let mine: BTreeMap<PathBuf, BTreeSet<String>> =
        files.iter().map(|f| (f.clone(), ours(&mut m, f))).collect();

    let differ: Vec<String> = files
        .iter()
        .filter(|f| mine[*f] != theirs[*f])
        .map(|f| {
            format!(
                "{}: ours {:?}, yara-x (PyPI) {:?}",
                f.display(),
                mine[f],
                theirs[f]
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} files differ:\n{}",
        differ.len(),
        differ.join("\n")
    );

    // And the comparison was not empty: real matches, from several rules and rule files.
    let pairs: usize = mine.values().map(BTreeSet::len).sum();
    let distinct: BTreeSet<&String> = mine.values().flatten().collect();
    let namespaces: BTreeSet<&str> = distinct
        .iter()
        .map(|n| n.split_once(':').unwrap().0)
        .collect();
    let matched_files = mine.values().filter(|s| !s.is_empty()).count();
    eprintln!(
        "{} rules in {} files; {} files, {matched_files} with matches; {pairs} (file, rule) \
         pairs; {} distinct rules in {namespaces:?}",
        loaded.rule_count,
        loaded.files,
        files.len(),
        distinct.len()
    );
    assert!(files.len() >= 40, "{} files", files.len());
    assert!(matched_files >= 10, "{matched_files} files matched");
    assert!(distinct.len() >= 15, "{distinct:?}");
    assert!(namespaces.len() >= 3, "{namespaces:?}");
    assert!(loaded.rule_count >= 215, "{} rules", loaded.rule_count);
}
