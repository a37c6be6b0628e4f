//! `--packages`: the system's package databases as a known set, and the files that differ from
//! their package. The fixtures are built here, at test time: a dpkg admin directory (a
//! diversion, a conffile, a merged-`/usr` path, a file another package took over, a modified
//! binary and a missing file) checked against `dpkg --verify` and `debsums`, and an
//! `rpmdb.sqlite` made by Debian's `rpmbuild` and `rpm -i` checked against `rpm -V` (each
//! tool where installed; CI installs them, and `HASHSWEEP_REQUIRE_PACKAGE_TOOLS` makes a
//! missing one a failure). apk and pacman databases are written by hand (no such tool on
//! Debian).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::*;

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest as _;
    hex(&md5::Md5::digest(data))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(data))
}

fn sha1_raw(data: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `tool` runs; a missing one skips the test (fails it in CI).
fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("HASHSWEEP_REQUIRE_PACKAGE_TOOLS").is_some() {
            panic!("{tool} is required (HASHSWEEP_REQUIRE_PACKAGE_TOOLS) and does not run");
        }
        skip(&format!("{tool} is not installed"));
    }
    ok
}

/// A system root with a dpkg database:
/// - `tool` 1.0-1: `/bin/tool` (merged `/usr`: on disk at `usr/bin/tool`), `/usr/bin/evil`
///   (modified on disk), `/usr/bin/gone` (missing), `/usr/bin/real` (diverted by `wrap` to
///   `/usr/bin/real.distrib`), `/etc/tool.conf` (a conffile, edited), `/etc/tool.new`
///   (`newconffile`), `/usr/share/doc/tool/moved` (taken over by `newer`: still in tool's
///   md5sums, gone from its `.list`);
/// - `wrap` 2.0: the diverting package, its own `/usr/bin/real`;
/// - `newer` 3.0: `/usr/share/doc/tool/moved` as it is now;
/// - `libx:amd64` 1.0 (Multi-Arch: same: arch-qualified info files): `/usr/lib/libx.so.1`;
/// - `/usr/local/bin/own`: no package's (a script).
struct Dpkg {
    tree: Tree,
}

impl Dpkg {
    fn root(&self) -> &Path {
        self.tree.path()
    }

    fn new() -> Dpkg {
        let tree = Tree::new();
        let root = tree.path();
        let file = |rel: &str, data: &[u8]| tree.file(rel, data);
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        let tool = b"#!/bin/sh\necho tool\n";
        let evil_orig = b"ELF original evil\n";
        let real_tool = b"the real real\n";
        let real_wrap = b"wrap's real\n";
        let conf_orig = b"setting=1\n";
        let moved_old = b"moved, as tool shipped it\n";
        let moved_new = b"moved, as newer ships it\n";
        let libx = b"\x7fELF libx\n";
        file("usr/bin/tool", tool);
        file("usr/bin/evil", b"ELF replaced by an attacker\n");
        file("usr/bin/real.distrib", real_tool);
        file("usr/bin/real", real_wrap);
        file("etc/tool.conf", b"setting=2 # edited by the admin\n");
        file("etc/tool.new", b"not configured yet\n");
        file("usr/share/doc/tool/moved", moved_new);
        file("usr/lib/libx.so.1", libx);
        // A script: by kind alone it would be asked before the modified data file.
        file(
            "usr/local/bin/own",
            b"#!/bin/sh\necho the admin's own script\n",
        );
        let admin = root.join("var/lib/dpkg");
        std::fs::create_dir_all(admin.join("info")).unwrap();
        std::fs::create_dir_all(admin.join("updates")).unwrap();
        std::fs::create_dir_all(admin.join("triggers")).unwrap();
        file("var/lib/dpkg/available", b"");
        let status = format!(
            "Package: tool\nStatus: install ok installed\nPriority: optional\nSection: misc\n\
             Maintainer: t <t@example.org>\nArchitecture: all\nVersion: 1.0-1\n\
             Conffiles:\n /etc/tool.conf {}\n /etc/tool.new newconffile\nDescription: tool\n\n\
             Package: wrap\nStatus: install ok installed\nPriority: optional\nSection: misc\n\
             Maintainer: t <t@example.org>\nArchitecture: all\nVersion: 2.0\nDescription: wrap\n\n\
             Package: newer\nStatus: install ok installed\nPriority: optional\nSection: misc\n\
             Maintainer: t <t@example.org>\nArchitecture: all\nVersion: 3.0\n\
             Replaces: tool\nDescription: newer\n\n\
             Package: libx\nStatus: install ok installed\nPriority: optional\nSection: libs\n\
             Maintainer: t <t@example.org>\nArchitecture: amd64\nMulti-Arch: same\n\
             Version: 1.0\nDescription: libx\n\n\
             Package: gone-pkg\nStatus: deinstall ok config-files\nPriority: optional\n\
             Section: misc\nMaintainer: t <t@example.org>\nArchitecture: all\nVersion: 0.1\n\
             Description: removed\n",
            md5_hex(conf_orig)
        );
        file("var/lib/dpkg/status", status.as_bytes());
        let info = |name: &str, list: &[&str], sums: &[(&[u8], &str)]| {
            let mut l = String::from("/.\n");
            for p in list {
                l.push_str(p);
                l.push('\n');
            }
            file(&format!("var/lib/dpkg/info/{name}.list"), l.as_bytes());
            let s: String = sums
                .iter()
                .map(|(d, p)| format!("{}  {p}\n", md5_hex(d)))
                .collect();
            file(&format!("var/lib/dpkg/info/{name}.md5sums"), s.as_bytes());
        };
        info(
            "tool",
            &[
                "/bin",
                "/bin/tool",
                "/usr",
                "/usr/bin",
                "/usr/bin/evil",
                "/usr/bin/gone",
                "/usr/bin/real",
                "/etc",
                "/etc/tool.conf",
                "/etc/tool.new",
                "/usr/share/doc/tool",
            ],
            &[
                (tool, "bin/tool"),
                (evil_orig, "usr/bin/evil"),
                (b"gone\n", "usr/bin/gone"),
                (real_tool, "usr/bin/real"),
                (moved_old, "usr/share/doc/tool/moved"),
            ],
        );
        info(
            "wrap",
            &["/usr", "/usr/bin", "/usr/bin/real"],
            &[(real_wrap, "usr/bin/real")],
        );
        info(
            "newer",
            &["/usr/share/doc/tool", "/usr/share/doc/tool/moved"],
            &[(moved_new, "usr/share/doc/tool/moved")],
        );
        info(
            "libx:amd64",
            &["/usr/lib", "/usr/lib/libx.so.1"],
            &[(libx, "usr/lib/libx.so.1")],
        );
        file(
            "var/lib/dpkg/diversions",
            b"/usr/bin/real\n/usr/bin/real.distrib\nwrap\n",
        );
        Dpkg { tree }
    }
}

/// `scan --offline --packages-root ROOT ROOT --format json` and more flags.
fn offline(root: &Path, extra: &[&str]) -> std::process::Output {
    run(cmd()
        .args(["scan", "--offline", "--format", "json", "--packages-root"])
        .arg(root)
        .args(extra)
        .arg(root))
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The record of `rel` (relative to the root).
fn record<'a>(v: &'a Value, rel: &str) -> &'a Value {
    let recs = v["records"].as_array().expect("records");
    rec(recs, &format!("/{rel}"))
}

/// Paths (relative to `root`, with a leading `/`) of the records whose `package_check` is
/// `check`.
fn checked(v: &Value, root: &Path, check: &str) -> BTreeSet<String> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["package_check"] == check)
        .map(|r| {
            let p = r["path"].as_str().unwrap();
            p.strip_prefix(root.to_str().unwrap())
                .unwrap_or(p)
                .to_string()
        })
        .collect()
}

#[test]
fn a_dpkg_system_vouches_for_its_files_and_names_the_modified_ones() {
    let f = Dpkg::new();
    let out = offline(f.root(), &[]);
    // A modified package file and nothing detected: exit 4.
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v = json(&out);
    let pkg = |name: &str, version: &str| serde_json::json!({"name": name, "version": version, "manager": "dpkg"});
    // Through the merged-/usr alias (bin/tool in the md5sums).
    let tool = record(&v, "usr/bin/tool");
    assert_eq!(tool["verdict"], "known_good", "{tool}");
    assert_eq!(tool["source"], "dpkg");
    assert_eq!(tool["package_check"], "match");
    assert_eq!(tool["package"], pkg("tool", "1.0-1"));
    // MD5 computed for the package's file, in the same read; not for a file no package owns.
    assert_eq!(
        tool["md5"],
        coreutils("md5sum", &f.root().join("usr/bin/tool"))
    );
    let own = record(&v, "usr/local/bin/own");
    assert!(
        own.get("md5").is_none() && own.get("package").is_none(),
        "{own}"
    );
    assert_eq!(own["verdict"], "not_looked_up");
    let evil = record(&v, "usr/bin/evil");
    assert_eq!(evil["package_check"], "modified", "{evil}");
    assert_eq!(evil["verdict"], "not_looked_up");
    assert_eq!(evil["package"], pkg("tool", "1.0-1"));
    // The diversion: tool's real is at real.distrib, wrap's at real; both match.
    assert_eq!(record(&v, "usr/bin/real")["package"], pkg("wrap", "2.0"));
    assert_eq!(record(&v, "usr/bin/real")["package_check"], "match");
    assert_eq!(
        record(&v, "usr/bin/real.distrib")["package"],
        pkg("tool", "1.0-1")
    );
    assert_eq!(record(&v, "usr/bin/real.distrib")["package_check"], "match");
    // Taken over by newer (tool's md5sums still lists its old content).
    let moved = record(&v, "usr/share/doc/tool/moved");
    assert_eq!(moved["package"], pkg("newer", "3.0"));
    assert_eq!(moved["package_check"], "match");
    // A conffile that differs is informational; one not configured yet is only owned.
    let conf = record(&v, "etc/tool.conf");
    assert_eq!(conf["package_check"], "config_changed", "{conf}");
    assert_eq!(conf["verdict"], "not_looked_up");
    let new = record(&v, "etc/tool.new");
    assert!(new.get("package_check").is_none(), "{new}");
    assert_eq!(new["package"], pkg("tool", "1.0-1"));
    // Multi-Arch: same, arch-qualified info files.
    assert_eq!(record(&v, "usr/lib/libx.so.1")["package_check"], "match");
    // The summary: the database read, the counts, the modified and missing files.
    let p = &v["summary"]["packages"];
    assert_eq!(p["databases"][0]["manager"], "dpkg", "{p}");
    assert_eq!(p["databases"][0]["packages"], 4, "{p}");
    assert!(p["databases"][0]["load_secs"].is_number());
    assert_eq!(
        (
            &p["modified"],
            &p["config_changed"],
            &p["missing"],
            &p["matched"]
        ),
        (&1.into(), &1.into(), &1.into(), &5.into()),
        "{p}"
    );
    let shown = p["modified_paths"][0].as_str().unwrap();
    assert!(
        shown.ends_with("/usr/bin/evil (dpkg tool 1.0-1)"),
        "{shown}"
    );
    assert!(
        p["missing_paths"][0]
            .as_str()
            .unwrap()
            .ends_with("/usr/bin/gone (dpkg tool 1.0-1)"),
        "{p}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("hashsweep: modified package files: 1: ")
            && err.contains("/usr/bin/evil (dpkg tool 1.0-1)"),
        "{err}"
    );
    assert!(err.contains("hashsweep: packages: dpkg "), "{err}");
    assert!(err.contains("(4 packages, "), "{err}");
    assert!(
        err.contains("package files missing from disk: 1: "),
        "{err}"
    );

    // The file newer took over, changed: newer's (tool gave it up in its .list).
    std::fs::write(f.root().join("usr/share/doc/tool/moved"), b"changed\n").unwrap();
    let v = json(&offline(f.root(), &[]));
    let moved = record(&v, "usr/share/doc/tool/moved");
    assert_eq!(moved["package_check"], "modified", "{moved}");
    assert_eq!(moved["package"], pkg("newer", "3.0"));

    // --no-packages: none of it.
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "--no-packages"])
        .arg(f.root()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v = json(&out);
    assert!(v["summary"].get("packages").is_none());
    assert!(record(&v, "usr/bin/evil").get("package").is_none());
}

/// dpkg's own verification and debsums find the same modified files, conffiles and missing
/// files as hashsweep on the same admin directory.
#[test]
fn dpkg_verify_and_debsums_agree_on_what_was_modified() {
    let f = Dpkg::new();
    let root = f.root();
    let v = json(&offline(root, &[]));
    let modified = checked(&v, root, "modified");
    let config = checked(&v, root, "config_changed");
    let missing: BTreeSet<String> = v["summary"]["packages"]["missing_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let m = m.as_str().unwrap();
            let path = &m[..m.find(" (").unwrap()];
            path.strip_prefix(root.to_str().unwrap())
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(modified, BTreeSet::from(["/usr/bin/evil".to_string()]));
    assert_eq!(config, BTreeSet::from(["/etc/tool.conf".to_string()]));
    assert_eq!(missing, BTreeSet::from(["/usr/bin/gone".to_string()]));

    if have("dpkg") {
        let admin = root.join("var/lib/dpkg");
        let out = Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .arg(format!("--admindir={}", admin.display()))
            .arg("--verify")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // `printf("%.9s %c %s\n")`: the result, the attribute (c: conffile), the path.
        let (mut d_mod, mut d_conf, mut d_missing) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for line in text.lines() {
            let (result, rest) = line.split_at(9);
            let conffile = rest.as_bytes()[1] == b'c';
            let path = rest[3..].trim().to_string();
            if result.starts_with("missing") {
                d_missing.insert(path);
            } else if result.as_bytes()[2] == b'5' {
                if conffile {
                    d_conf.insert(path);
                } else {
                    d_mod.insert(path);
                }
            }
        }
        assert_eq!(d_mod, modified, "dpkg --verify: {text}");
        // dpkg compares a conffile not configured yet with the word `newconffile` it holds
        // instead of a digest, and calls it changed; hashsweep has nothing to compare it with.
        assert!(d_conf.remove("/etc/tool.new"), "dpkg --verify: {text}");
        assert_eq!(d_conf, config, "dpkg --verify: {text}");
        assert_eq!(d_missing, missing, "dpkg --verify: {text}");
    }
    if have("debsums") {
        // debsums reads the admin directory under --root (its --admindir is relative to it).
        let changed = |all: bool| {
            let mut c = Command::new("debsums");
            c.arg(format!("--root={}", root.display())).arg("-c");
            if all {
                c.arg("-a");
            }
            let out = c.output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| {
                    l.strip_prefix(root.to_str().unwrap())
                        .unwrap_or(l)
                        .to_string()
                })
                .collect::<BTreeSet<String>>()
        };
        assert_eq!(changed(false), modified, "debsums -c");
        let both: BTreeSet<String> = modified.union(&config).cloned().collect();
        assert_eq!(changed(true), both, "debsums -c -a");
    }
}

/// With lookups: a modified package file is asked first (a budget of one asks it), files
/// that match their package are never asked, the rest as usual; a detection still wins
/// the exit status. `--packages=verify-only` asks the matching files too.
#[test]
fn a_modified_package_file_is_asked_first_and_matching_ones_never() {
    let f = Dpkg::new();
    let root = f.root();
    let evil = sha256_hex(&std::fs::read(root.join("usr/bin/evil")).unwrap()).to_uppercase();
    let tool = sha256_hex(&std::fs::read(root.join("usr/bin/tool")).unwrap()).to_uppercase();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(scan_cmd(&mock, root)
        .args(["--budget", "1", "--format", "json", "--packages-root"])
        .arg(root));
    let asked: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert_eq!(asked, vec![evil.clone()], "{}", stderr(&out));
    // Modified (4) wins over deferred (3).
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(record(&v, "usr/bin/tool")["verdict"], "known_good");
    assert_eq!(record(&v, "usr/local/bin/own")["verdict"], "deferred");
    assert_ne!(record(&v, "usr/bin/evil")["verdict"], "deferred");

    // The modified binary is known malware: a detection, exit 1.
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(&evil, 1, 12);
    let out = run(scan_cmd(&mock, root)
        .args(["--format", "json", "--packages-root"])
        .arg(root)
        .args(ONE_REQUEST));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(record(&v, "usr/bin/evil")["verdict"], "infected");
    assert_eq!(record(&v, "usr/bin/evil")["package_check"], "modified");

    // verify-only: matches are reported and asked.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let out = run(scan_cmd(&mock, root)
        .args([
            "--format",
            "json",
            "--packages=verify-only",
            "--packages-root",
        ])
        .arg(root)
        .args(ONE_REQUEST));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let asked: Vec<String> = mock
        .requests()
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert!(asked.contains(&tool), "{asked:?}");
    let v = json(&out);
    let t = record(&v, "usr/bin/tool");
    assert_eq!(t["package_check"], "match");
    assert_ne!(t["verdict"], "known_good", "{t}");
    assert!(t.get("source").is_none(), "{t}");
    assert_eq!(v["summary"]["packages"]["mode"], "verify-only");
}

/// Every format names the package; `--only problems` keeps a modified file; the HTML page
/// lists modified files above the detections; the table says so on the line.
#[test]
fn every_format_names_the_package_and_problems_keep_a_modified_file() {
    let f = Dpkg::new();
    let root = f.root();
    let ecs = run(cmd()
        .args(["scan", "--offline", "--format", "ecs", "--packages-root"])
        .arg(root)
        .arg(root));
    let docs: Vec<Value> = String::from_utf8(ecs.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let evil = docs
        .iter()
        .find(|d| {
            d["file"]["path"]
                .as_str()
                .unwrap()
                .ends_with("/usr/bin/evil")
        })
        .unwrap();
    assert_eq!(
        evil["package"],
        serde_json::json!({"name": "tool", "version": "1.0-1", "type": "dpkg"})
    );
    assert_eq!(evil["hashsweep"]["package_check"], "modified");
    let csv = run(cmd()
        .args(["scan", "--offline", "--format", "csv", "--packages-root"])
        .arg(root)
        .arg(root));
    let mut rows = csv::Reader::from_reader(&csv.stdout[..]);
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    let (pi, ci) = (
        header.iter().position(|h| h == "package").unwrap(),
        header.iter().position(|h| h == "package_check").unwrap(),
    );
    let row = rows
        .records()
        .map(Result::unwrap)
        .find(|r| r[0].ends_with("/usr/bin/evil"))
        .unwrap();
    assert_eq!((&row[pi], &row[ci]), ("dpkg:tool=1.0-1", "modified"));
    let problems = run(cmd()
        .args(["scan", "--offline", "--only", "problems", "--packages-root"])
        .arg(root)
        .arg(root));
    let kept: Vec<Value> = ndjson(&problems);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0]["path"].as_str().unwrap().ends_with("/usr/bin/evil"));
    let html = run(cmd()
        .args(["scan", "--offline", "--format", "html", "--packages-root"])
        .arg(root)
        .arg(root));
    let page = String::from_utf8(html.stdout).unwrap();
    let modified = page.find("id=\"modified\"").expect("a modified section");
    assert!(modified < page.find("id=\"detections\"").unwrap());
    assert!(page[modified..].contains("/usr/bin/evil (dpkg tool 1.0-1)"));
    let table = run(cmd()
        .args(["scan", "--offline", "--format", "table", "--packages-root"])
        .arg(root)
        .arg(root));
    let text = String::from_utf8(table.stdout).unwrap();
    let line = text.lines().find(|l| l.contains("/usr/bin/evil")).unwrap();
    assert!(
        line.ends_with("[package modified: dpkg tool 1.0-1]"),
        "{line}"
    );
    // Modified files come right after the header (no detections here).
    assert!(
        text.lines().nth(1).unwrap().contains("/usr/bin/evil"),
        "{text}"
    );
}

/// A report with package fields reads back as a baseline and in `diff` like any other.
#[test]
fn a_report_with_packages_is_a_baseline() {
    let f = Dpkg::new();
    let root = f.root();
    let t = Tree::new();
    let first = t.path().join("first.ndjson");
    let second = t.path().join("second.ndjson");
    for (out, baseline) in [(&first, None), (&second, Some(&first))] {
        let mut c = cmd();
        c.args(["scan", "--offline", "--packages-root"])
            .arg(root)
            .arg("-o")
            .arg(out);
        if let Some(b) = baseline {
            c.arg("--baseline").arg(b);
        }
        let o = run(c.arg(root));
        assert_eq!(code(&o), 4, "{}", stderr(&o));
        assert!(!stderr(&o).contains("unreadable"), "{}", stderr(&o));
    }
    let o = run(cmd().arg("diff").arg(&first).arg(&second));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// A package file read from the digest cache on a second run is checked too: its MD5 comes
/// from the cache (or the file is read again when the first run did not compute it).
#[test]
fn the_digest_cache_keeps_what_packages_need() {
    let f = Dpkg::new();
    let root = f.root();
    let t = Tree::new();
    let cache = t.path().join("c.sqlite");
    // Old enough for the digest cache (its ctime too: outside the racy window).
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + std::time::Duration::from_millis(200));
    // First without packages (no MD5 in the cache), then twice with.
    for (run_no, packages) in [false, true, true].into_iter().enumerate() {
        let mut c = cmd();
        c.env_remove("HASHSWEEP_NO_CACHE")
            .args(["scan", "--offline", "--format", "json", "--cache"])
            .arg(&cache);
        if packages {
            c.arg("--packages-root").arg(root);
        } else {
            c.arg("--no-packages");
        }
        let out = run(c.arg(root));
        let v = json(&out);
        let files = v["summary"]["files"].as_u64().unwrap();
        let cached = v["summary"]["files_cached"].as_u64().unwrap();
        match run_no {
            0 => assert_eq!(cached, 0),
            // The package files lack their MD5 in the cache: read again, the others not.
            1 => assert_eq!(cached, files - 7, "{}", v["summary"]),
            _ => assert_eq!(cached, files, "{}", v["summary"]),
        }
        if packages {
            assert_eq!(record(&v, "usr/bin/tool")["package_check"], "match");
            assert_eq!(record(&v, "usr/bin/evil")["package_check"], "modified");
        }
    }
}

/// A package database that cannot be read is an error naming it (exit 2), never a panic; a
/// sweep of a root with no database, asked for packages, says so and goes on.
#[test]
fn a_damaged_database_is_an_error_that_names_it() {
    let t = Tree::new();
    t.file(
        "sys/var/lib/rpm/Packages.db",
        b"RpmP\0\0\0\0\0\0\0\0\xff\xff\xff\xff",
    );
    let root = t.path().join("sys");
    let out = offline(&root, &[]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Packages.db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let empty = Tree::new();
    empty.file("a.txt", b"a");
    let out = offline(empty.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no package database (dpkg, rpm, apk, pacman) found under"),
        "{}",
        stderr(&out)
    );
}

/// An `rpmdb.sqlite` made by Debian's rpm: a SHA-256 package with a `%config` and a `%ghost`
/// file and an MD5 package; `rpm -V` and hashsweep agree on what was modified.
#[test]
fn an_rpm_database_made_by_rpm_agrees_with_rpm_verify() {
    if !have("rpmbuild") || !have("rpm") {
        return;
    }
    let t = Tree::new();
    let top = t.path().join("build");
    let root = t.path().join("root");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let spec = |name: &str, files: &[(&str, &str, &str)]| {
        let mut s = format!(
            "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\n\
             BuildArch: noarch\n%description\nt\n%install\n"
        );
        for (path, content, _) in files {
            let dir = Path::new(path).parent().unwrap().display().to_string();
            s.push_str(&format!(
                "mkdir -p %{{buildroot}}{dir}\nprintf '{content}\\n' > %{{buildroot}}{path}\n"
            ));
        }
        s.push_str("%files\n");
        for (path, _, attr) in files {
            s.push_str(&format!("{attr} {path}\n"));
        }
        s
    };
    let build = |name: &str, text: String, algo: &str| {
        let p = top.join(format!("SPECS/{name}.spec"));
        std::fs::write(&p, text).unwrap();
        let out = Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .args(["--define", "_build_id_links none"])
            .arg("--define")
            .arg(format!("_binary_filedigest_algorithm {algo}"))
            .arg("-bb")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        top.join(format!("RPMS/noarch/{name}-1.0-1.noarch.rpm"))
    };
    let sha = build(
        "shapkg",
        spec(
            "shapkg",
            &[
                ("/usr/bin/shatool", "sha tool", ""),
                ("/usr/bin/shaevil", "sha evil", ""),
                ("/etc/sha.conf", "conf=1", "%config"),
                ("/var/log/sha.log", "log", "%ghost"),
            ],
        ),
        "8",
    );
    let md5 = build(
        "md5pkg",
        spec(
            "md5pkg",
            &[
                ("/usr/bin/md5tool", "md5 tool", ""),
                ("/usr/bin/md5evil", "md5 evil", ""),
            ],
        ),
        "1",
    );
    for pkg in [&sha, &md5] {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts"])
            .arg(pkg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for rel in ["usr/bin/shaevil", "usr/bin/md5evil", "etc/sha.conf"] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join(rel))
            .unwrap();
        f.write_all(b"changed\n").unwrap();
    }
    let out = offline(&root, &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v = json(&out);
    let modified = checked(&v, &root, "modified");
    let config = checked(&v, &root, "config_changed");
    assert_eq!(
        modified,
        BTreeSet::from([
            "/usr/bin/md5evil".to_string(),
            "/usr/bin/shaevil".to_string()
        ])
    );
    assert_eq!(config, BTreeSet::from(["/etc/sha.conf".to_string()]));
    let sha_tool = record(&v, "usr/bin/shatool");
    assert_eq!(sha_tool["verdict"], "known_good");
    assert_eq!(sha_tool["source"], "rpm");
    assert_eq!(
        sha_tool["package"],
        serde_json::json!({"name": "shapkg", "version": "1.0-1", "manager": "rpm"})
    );
    // SHA-256 needs nothing more; MD5 is computed for the MD5 package's files only.
    assert!(sha_tool.get("md5").is_none(), "{sha_tool}");
    assert!(record(&v, "usr/bin/md5tool").get("md5").is_some());
    assert_eq!(record(&v, "usr/bin/md5tool")["package_check"], "match");
    assert_eq!(v["summary"]["packages"]["databases"][0]["manager"], "rpm");

    let out = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "-Va"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut r_mod, mut r_conf) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        // `S.5....T.  c /etc/sha.conf`: nine results, the attribute, the path.
        let (result, rest) = line.split_at(9);
        if result.as_bytes()[2] != b'5' {
            continue;
        }
        let rest = rest.trim_start();
        match rest.strip_prefix("c ") {
            Some(p) => r_conf.insert(p.trim().to_string()),
            None => r_mod.insert(rest.trim().to_string()),
        };
    }
    assert_eq!(r_mod, modified, "rpm -V: {text}");
    assert_eq!(r_conf, config, "rpm -V: {text}");
}

/// apk and pacman databases, written as the tools write them: apk's SHA-1 and SHA-256/160
/// digests (`f:` with `S`), its protected `etc`; pacman's gzip'd mtree and `%BACKUP%`.
#[test]
fn apk_and_pacman_databases_check_their_files() {
    use base64::Engine as _;
    let t = Tree::new();
    let root = t.path();
    let q1 = |d: &[u8]| format!("Q1{}", base64::engine::general_purpose::STANDARD.encode(d));
    let sha1_file = b"busybox binary\n";
    let cut_file = b"apk3 binary\n";
    t.file("bin/busybox", sha1_file);
    t.file("usr/bin/apk3", b"apk3 binary, patched\n");
    t.file("etc/motd", b"edited motd\n");
    let mut cut = [0u8; 20];
    use sha2::Digest as _;
    cut.copy_from_slice(&sha2::Sha256::digest(cut_file)[..20]);
    let installed = format!(
        "C:Q1x\nP:busybox\nV:1.36.1-r5\nA:x86_64\nF:bin\nR:busybox\na:0:0:755\nZ:{}\n\
         F:etc\nR:motd\nZ:{}\n\nP:apk3\nV:3.0.0-r1\nf:S\nF:usr/bin\nR:apk3\nZ:{}\n",
        q1(&sha1_raw(sha1_file)),
        q1(&sha1_raw(b"original motd\n")),
        q1(&cut),
    );
    t.file("lib/apk/db/installed", installed.as_bytes());
    let bash = b"bash binary\n";
    t.file("usr/bin/bash", bash);
    t.file("usr/bin/sh-evil", b"changed\n");
    t.file("etc/bash.bashrc", b"edited\n");
    let mtree = format!(
        "#mtree\n/set type=file uid=0 gid=0 mode=644\n./.PKGINFO time=1 size=1 \
         sha256digest={}\n./usr/bin/bash time=1 mode=755 sha256digest={}\n\
         ./usr/bin/sh-evil time=1 mode=755 sha256digest={}\n./etc/bash.bashrc time=1 \
         sha256digest={}\n",
        sha256_hex(b"x"),
        sha256_hex(bash),
        sha256_hex(b"original\n"),
        sha256_hex(b"original rc\n"),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(mtree.as_bytes()).unwrap();
    t.file(
        "var/lib/pacman/local/bash-5.2-1/mtree",
        &gz.finish().unwrap(),
    );
    t.file(
        "var/lib/pacman/local/bash-5.2-1/desc",
        b"%NAME%\nbash\n\n%VERSION%\n5.2-1\n\n",
    );
    t.file(
        "var/lib/pacman/local/bash-5.2-1/files",
        b"%FILES%\nusr/bin/bash\netc/bash.bashrc\n\n%BACKUP%\netc/bash.bashrc\t00\n\n",
    );
    let out = offline(root, &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let v = json(&out);
    let busybox = record(&v, "bin/busybox");
    assert_eq!(busybox["package_check"], "match", "{busybox}");
    assert_eq!(busybox["source"], "apk");
    // SHA-1 computed for apk's files.
    assert_eq!(
        busybox["sha1"],
        coreutils("sha1sum", &root.join("bin/busybox"))
    );
    assert_eq!(record(&v, "usr/bin/apk3")["package_check"], "modified");
    assert_eq!(record(&v, "etc/motd")["package_check"], "config_changed");
    assert_eq!(record(&v, "usr/bin/bash")["package_check"], "match");
    assert_eq!(record(&v, "usr/bin/bash")["source"], "pacman");
    assert_eq!(record(&v, "usr/bin/sh-evil")["package_check"], "modified");
    assert_eq!(
        record(&v, "etc/bash.bashrc")["package_check"],
        "config_changed"
    );
    let managers: Vec<&Value> = v["summary"]["packages"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["manager"])
        .collect();
    assert_eq!(managers, [&Value::from("apk"), &Value::from("pacman")]);
    // The apk3 file matches once the cut SHA-256 is what it holds.
    std::fs::write(root.join("usr/bin/apk3"), cut_file).unwrap();
    let v = json(&offline(root, &[]));
    assert_eq!(record(&v, "usr/bin/apk3")["package_check"], "match");
}

/// A root given as a symlink to the folder (`/bin` on a merged-/usr system) finds its files'
/// packages through the folder's real path.
#[test]
fn a_root_through_a_symlink_finds_its_packages() {
    let f = Dpkg::new();
    let root = f.root();
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "--packages-root"])
        .arg(root)
        .arg(root.join("bin")));
    let v = json(&out);
    let recs = v["records"].as_array().unwrap();
    let tool = rec(recs, "/bin/tool");
    assert_eq!(tool["package_check"], "match", "{tool}");
    let _ = PathBuf::new();
}
