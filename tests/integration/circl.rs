//! CIRCL hashlookup's offline Bloom filter (DCSO format) as `--known-good`: filters built at
//! test time, checked byte for byte and value for value against DCSO's Python reader (`flor`),
//! their measured false-positive rate, and what a hit does to a sweep (asked last, `source:
//! circl-bloom`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use hashsweep::known::bloom::{BloomBuilder, BloomFilter, upper_hex};
use serde_json::Value;
use sha1::{Digest as _, Sha1};

use crate::util::*;

/// The Python that runs the oracles: `HASHSWEEP_PYTHON` (`.ci/run` points it at a venv holding
/// them), else `python3`.
pub fn python() -> Command {
    Command::new(std::env::var_os("HASHSWEEP_PYTHON").unwrap_or_else(|| "python3".into()))
}

/// Can [`python`] import `module` (PyPI `pip`)? Without it the oracle tests are skipped
/// (loudly), unless `HASHSWEEP_REQUIRE_PY_ORACLES` is set, as `.ci/run` does (it installs
/// them): then its absence is a failure.
pub fn python_module(module: &str, pip: &str) -> bool {
    let found = python()
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("HASHSWEEP_REQUIRE_PY_ORACLES").is_none(),
            "python cannot import {module} and HASHSWEEP_REQUIRE_PY_ORACLES is set \
             (pip install {pip})"
        );
        skip(&format!(
            "python3 cannot import {module} (pip install {pip}; or set HASHSWEEP_PYTHON)"
        ));
    }
    found
}

/// The SHA-1 of `i` as a 20-byte digest (distinct values for the filters).
fn sha1_of(tag: &str, i: u64) -> [u8; 20] {
    Sha1::digest(format!("{tag} {i}").as_bytes()).into()
}

fn sha1_file(p: &Path) -> [u8; 20] {
    Sha1::digest(std::fs::read(p).unwrap()).into()
}

/// Values in, 100 000 values out: hashsweep's filter and flor's, built from the same values
/// with the same n and p, are the same bytes; each reader finds every member in the other's
/// file, and both call exactly the same absent values present (the false positives).
#[test]
fn filters_match_flor_byte_for_byte_and_value_for_value() {
    if !python_module("flor", "flor") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (n, p, members, absent) = (6000u64, 0.01, 5000u64, 100_000u64);
    let ours = dir.path().join("ours.bloom");
    let theirs = dir.path().join("flor.bloom");
    let mut b = BloomBuilder::new(n, p);
    for i in 0..members {
        b.add_sha1(&sha1_of("member", i));
    }
    std::fs::write(&ours, b.to_bytes()).unwrap();
    let script = r#"
import hashlib, sys, flor
n, p, members, absent, ours, theirs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
key = lambda tag, i: hashlib.sha1(f"{tag} {i}".encode()).hexdigest().upper().encode()
f = flor.BloomFilter(n=n, p=p)
for i in range(members):
    f.add(key("member", i))
with open(theirs, "wb") as out:
    f.write(out)
g = flor.BloomFilter()
with open(ours, "rb") as src:
    g.read(src)
assert all(key("member", i) in g for i in range(members)), "flor misses a member of ours"
print(" ".join(str(i) for i in range(absent) if key("absent", i) in g))
"#;
    let out = python()
        .args(["-c", script])
        .args([
            n.to_string(),
            p.to_string(),
            members.to_string(),
            absent.to_string(),
        ])
        .arg(&ours)
        .arg(&theirs)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flor_fp: BTreeSet<u64> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        std::fs::read(&ours).unwrap(),
        "flor's filter and ours differ"
    );
    let f = BloomFilter::open(&theirs).expect("flor's filter");
    assert_eq!(f.params(), b.params());
    assert!((0..members).all(|i| f.sha1(&sha1_of("member", i))));
    let our_fp: BTreeSet<u64> = (0..absent)
        .filter(|&i| f.sha1(&sha1_of("absent", i)))
        .collect();
    assert_eq!(our_fp, flor_fp);
    // Not a vacuous agreement: at p = 0.01 some absent values must hit.
    assert!(!our_fp.is_empty());
}

/// A filter at its capacity, checked with 100 000 digests that were never inserted: the
/// measured false-positive rate is the one its header promises (within five standard
/// deviations of the rate its parameters predict, and at most a quarter above p).
#[test]
fn measured_false_positive_rate_on_100k_absent_digests() {
    let (n, p) = (20_000u64, 0.01);
    let mut b = BloomBuilder::new(n, p);
    for i in 0..n {
        b.add_sha1(&sha1_of("in", i));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.bloom");
    std::fs::write(&path, b.to_bytes()).unwrap();
    let f = BloomFilter::open(&path).unwrap();
    assert!((0..n).all(|i| f.sha1(&sha1_of("in", i))), "a member missed");
    let trials = 100_000u64;
    let hits = (0..trials).filter(|&i| f.sha1(&sha1_of("out", i))).count() as f64;
    let rate = hits / trials as f64;
    let expected = f.params().expected_rate();
    let sd = (expected * (1.0 - expected) / trials as f64).sqrt();
    eprintln!(
        "measured {rate} expected {expected} (p = {p}, N = {})",
        f.params().inserted
    );
    assert!(
        (rate - expected).abs() <= 5.0 * sd,
        "measured {rate}, expected {expected} ± {}",
        5.0 * sd
    );
    assert!(rate <= p * 1.25, "measured {rate} for p = {p}");
}

/// A tree whose most urgent file (a fresh executable) CIRCL's filter knows, and a plain old
/// data file it does not: the budget of one asks the data file, the executable is deferred and
/// says `source: circl-bloom`, and every record carries the SHA-1 the filter needed.
fn tree_and_filter() -> (Tree, PathBuf, PathBuf, PathBuf) {
    let t = Tree::new();
    let exe = t.file("bin/tool", b"\x7fELF\x02\x01\x01known to circl");
    let data = t.file("d/old.dat", b"plain old data");
    let old = SystemTime::now() - Duration::from_secs(365 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut b = BloomBuilder::new(1000, 1e-6);
    b.add_sha1(&sha1_file(&exe));
    let filter = t.dir.path().with_extension("filter.bloom");
    std::fs::write(&filter, b.to_bytes()).unwrap();
    (t, exe, data, filter)
}

#[test]
fn a_bloom_hit_is_asked_last_and_says_circl_bloom() {
    let (t, exe, data, filter) = tree_and_filter();
    let _cleanup = Cleanup(filter.clone());
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(["--budget", "1", "--format", "json", "--known-good"])
        .arg(&filter);
    let out = run(&mut c);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let asked: Vec<String> = mock
        .requests()
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert_eq!(asked, [coreutils("sha256sum", &data).to_ascii_uppercase()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap().clone();
    let e = rec(&recs, "bin/tool");
    assert_eq!(e["verdict"], "deferred", "{e}");
    assert_eq!(e["source"], "circl-bloom", "{e}");
    assert_eq!(
        e["sha1"].as_str().unwrap(),
        String::from_utf8(upper_hex(&sha1_file(&exe)).to_vec())
            .unwrap()
            .to_lowercase()
    );
    let d = rec(&recs, "d/old.dat");
    assert_eq!(d["verdict"], "unknown", "{d}");
    assert!(d["source"].is_null(), "{d}");
    let k = &v["summary"]["known_sets"][0];
    assert_eq!(k["format"], "circl_bloom", "{k}");
    assert_eq!(k["digests"], 1);
    assert_eq!(k["age_days"], 0);
    assert_eq!(
        (k["bloom"]["capacity"].as_u64(), k["bloom"]["k"].as_u64()),
        (Some(1000), Some(20))
    );
    let err = stderr(&out);
    assert!(
        err.contains("(circl_bloom: Bloom filter of 1 SHA-1, sized for 1000 at p=0.000001, k=20, 0 days old; a hit is probably known, not good)"),
        "{err}"
    );
    assert!(!err.contains("days old (more than 30)"), "{err}");

    // With budget to spare the hit is asked too, and still says where it was known.
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(ONE_REQUEST)
        .arg("--known-good")
        .arg(&filter);
    let out = run(&mut c);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "bin/tool")["verdict"], "unknown");
    assert_eq!(rec(&recs, "bin/tool")["source"], "circl-bloom");
    assert_eq!(
        mock.requests()
            .iter()
            .map(|r| r.hashes.len())
            .sum::<usize>(),
        2
    );

    // Offline: not looked up, still known to CIRCL; without a filter no SHA-1 is computed.
    let out = run(cmd()
        .args(["scan", "--offline", "--known-good"])
        .arg(&filter)
        .arg(t.path()));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "bin/tool")["verdict"], "not_looked_up");
    assert_eq!(rec(&recs, "bin/tool")["source"], "circl-bloom");
    assert!(rec(&recs, "d/old.dat")["source"].is_null());
    let out = run(cmd().args(["scan", "--offline"]).arg(t.path()));
    assert!(ndjson(&out).iter().all(|r| r["sha1"].is_null()));
}

/// A filter older than 30 days is named with its age and a warning.
#[test]
fn an_old_filter_is_warned_about() {
    let (t, _, _, filter) = tree_and_filter();
    let _cleanup = Cleanup(filter.clone());
    let old = SystemTime::now() - Duration::from_secs(45 * 24 * 3600 + 600);
    std::fs::File::options()
        .write(true)
        .open(&filter)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = run(cmd()
        .args(["scan", "--offline", "--known-good"])
        .arg(&filter)
        .arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("45 days old; a hit"), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {} is 45 days old (more than 30): update it",
            filter.display()
        )),
        "{err}"
    );
}

/// A damaged filter is an error naming the file, never a panic or a set of nothing; a filter
/// given as --known-bad is refused (its false positives would be infected).
#[test]
fn corrupt_or_misplaced_filters_are_refused_by_name() {
    let (t, _, _, filter) = tree_and_filter();
    let _cleanup = Cleanup(filter.clone());
    let good = std::fs::read(&filter).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.bloom",
            good[..good.len() - 8].to_vec(),
            "truncated",
        ),
        ("header-only.bloom", good[..48].to_vec(), "truncated"),
        (
            "k.bloom",
            [&good[..24], &u64::MAX.to_le_bytes(), &good[32..]].concat(),
            "hash functions",
        ),
        (
            "m.bloom",
            [&good[..32], &(u64::MAX - 7).to_le_bytes(), &good[40..]].concat(),
            "truncated",
        ),
    ];
    for (name, bytes, why) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = run(cmd()
            .args(["scan", "--offline", "--known-good"])
            .arg(&p)
            .arg(t.path()));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{name}: {err}");
        assert!(
            err.contains(&p.display().to_string()) && err.contains(why),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(cmd()
        .args(["scan", "--offline", "--known-bad"])
        .arg(&filter)
        .arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(&format!("{} is a Bloom filter", filter.display())),
        "{err}"
    );
}

/// Removes a file beside the tree when the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The CIRCL bulk client against the stand-in (which follows the published contract): SHA-1s
/// and MD5s in chunks of at most 300, with a User-Agent, never a SHA-256 endpoint; records
/// matched back by their own field, `KnownMalicious` kept; an outage or a throttle leaves the
/// digests of that request and every later one without an answer (failed, not "not found").
#[test]
fn circl_bulk_client_follows_the_contract_and_an_outage_costs_only_its_answers() {
    use hashsweep::digest::Digest;
    use hashsweep::lookup::circl::{CHUNK, CirclClient, CirclError};
    use hashsweep_mock::circl::CirclServer;

    let s = CirclServer::start().unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let sha1s: Vec<[u8; 20]> = (0..650).map(|i| sha1_of("circl", i)).collect();
    let md5s = [[0x11u8; 16], [0x22u8; 16]];
    s.add(CirclServer::record(
        &"0".repeat(32),
        &hex(&sha1s[5]),
        &"1".repeat(64),
        "libc.so.6",
        None,
    ));
    s.add(CirclServer::record(
        &"2".repeat(32),
        &hex(&sha1s[640]),
        &"3".repeat(64),
        "a.exe",
        Some("malshare.com"),
    ));
    s.add(CirclServer::record(
        &hex(&md5s[1]),
        &"4".repeat(40),
        &"5".repeat(64),
        "b.dll",
        None,
    ));
    let mut asked: Vec<Digest> = sha1s.iter().map(|b| Digest::Sha1(*b)).collect();
    asked.extend(md5s.iter().map(|b| Digest::Md5(*b)));
    asked.push(Digest::Sha256([7; 32]));

    let c = CirclClient::new(&s.url(), Duration::from_secs(10)).unwrap();
    let a = c.lookup(&asked);
    assert!(a.error.is_none(), "{:?}", a.error);
    let reqs = s.requests();
    let shape: Vec<(&str, usize)> = reqs
        .iter()
        .map(|r| (r.path.as_str(), r.hashes.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("/bulk/sha1", CHUNK),
            ("/bulk/sha1", CHUNK),
            ("/bulk/sha1", 50),
            ("/bulk/md5", 2)
        ]
    );
    assert!(reqs.iter().all(|r| r.status == 200 && r.method == "POST"));
    assert!(reqs.iter().all(|r| {
        r.user_agent
            .as_deref()
            .is_some_and(|u| u.starts_with("hashsweep/"))
    }));
    // Sent as CIRCL stores them: upper-case hex.
    assert_eq!(reqs[0].hashes[0], hex(&sha1s[0]).to_uppercase());
    assert_eq!(a.found.len(), 3);
    let libc = &a.found[&Digest::Sha1(sha1s[5])];
    assert_eq!(
        (libc.file_name.as_deref(), libc.known_malicious.as_deref()),
        (Some("libc.so.6"), None)
    );
    assert_eq!(libc.product.as_deref(), Some("190742"));
    assert_eq!(
        a.found[&Digest::Sha1(sha1s[640])]
            .known_malicious
            .as_deref(),
        Some("malshare.com")
    );
    assert!(a.found.contains_key(&Digest::Md5(md5s[1])));
    assert_eq!(a.not_found.len(), 650 - 2 + 1);
    assert!(a.failed.is_empty());

    // An outage on the first request: nothing found, nothing "not found", everything failed,
    // and nothing more asked.
    for (status, want) in [(503u16, "HTTP 503"), (429, "throttled")] {
        let s = CirclServer::start().unwrap();
        s.push_fault(status, r#"{"message": "down"}"#);
        let a = CirclClient::new(&s.url(), Duration::from_secs(10))
            .unwrap()
            .lookup(&asked);
        let e = a.error.expect("an error");
        assert!(
            e.to_string().contains(want) && e.to_string().contains(&s.url()),
            "{e}"
        );
        assert_eq!(matches!(e, CirclError::Throttled { .. }), status == 429);
        assert!(a.found.is_empty() && a.not_found.is_empty());
        assert_eq!(a.failed.len(), 652);
        assert_eq!(s.requests().len(), 1);
    }
    // An answer that does not say which file a record is about is refused, not guessed.
    let s = CirclServer::start().unwrap();
    s.push_fault(200, r#"[{"FileName": "x"}]"#);
    let a = CirclClient::new(&s.url(), Duration::from_secs(10))
        .unwrap()
        .lookup(&asked[..1]);
    assert!(
        matches!(a.error, Some(CirclError::BadAnswer { .. })),
        "{:?}",
        a.error
    );
    assert_eq!(a.failed.len(), 1);
}

/// `--circl` against both stand-ins: a file CIRCL knows (no source flags it) is known_good with
/// `source: circl` and costs no MetaDefender lookup; one its sources flag is asked of
/// MetaDefender first (a budget of one goes to it) and keeps CIRCL's words; the rest is asked
/// as usual. An outage of CIRCL costs only its answers: everything goes to MetaDefender, with
/// a warning, and nothing is known_good.
#[test]
fn circl_online_settles_known_files_and_puts_flagged_ones_first() {
    use hashsweep_mock::circl::CirclServer;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let t = Tree::new();
    let old = SystemTime::now() - Duration::from_secs(365 * 24 * 3600);
    let mut paths = Vec::new();
    for (name, data) in [
        (
            "lib/libknown.so",
            &b"\x7fELF\x02\x01\x01 a library CIRCL knows"[..],
        ),
        ("d/flagged.dat", b"old data some source flags"),
        ("bin/new", b"\x7fELF\x02\x01\x01 nobody knows this one"),
    ] {
        let p = t.file(name, data);
        if name.starts_with("d/") {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        paths.push(p);
    }
    let sha1 = |p: &Path| hex(&sha1_file(p));
    let sha256 = |p: &Path| coreutils("sha256sum", p).to_ascii_uppercase();
    let circl = CirclServer::start().unwrap();
    circl.add(CirclServer::record(
        &"0".repeat(32),
        &sha1(&paths[0]),
        &"1".repeat(64),
        "libknown.so",
        None,
    ));
    circl.add(CirclServer::record(
        &"2".repeat(32),
        &sha1(&paths[1]),
        &"3".repeat(64),
        "flagged.dat",
        Some("malshare.com"),
    ));
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(&sha256(&paths[1]), 1, 12);

    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(["--budget", "1", "--circl", "--circl-url", &circl.url()]);
    let out = run(&mut c);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    let recs = ndjson(&out);
    let known = rec(&recs, "lib/libknown.so");
    assert_eq!(
        (known["verdict"].as_str(), known["source"].as_str()),
        (Some("known_good"), Some("circl")),
        "{known}"
    );
    assert_eq!(
        known["list_entry"],
        "CIRCL hashlookup: libknown.so (product 190742)"
    );
    let flagged = rec(&recs, "d/flagged.dat");
    assert_eq!(flagged["verdict"], "infected", "{flagged}");
    assert_eq!(flagged["source"], "circl");
    assert!(
        flagged["list_entry"]
            .as_str()
            .unwrap()
            .ends_with("; KnownMalicious: malshare.com")
    );
    // The budget of one went to the flagged file, not to the fresh executable.
    let asked: Vec<String> = mock
        .requests()
        .iter()
        .flat_map(|r| r.hashes.clone())
        .collect();
    assert_eq!(asked, [sha256(&paths[1])]);
    assert_eq!(rec(&recs, "bin/new")["verdict"], "deferred");
    let creqs = circl.requests();
    assert_eq!(creqs.len(), 1, "{creqs:?}");
    assert_eq!(creqs[0].path, "/bulk/sha1");
    assert_eq!(creqs[0].hashes.len(), 3);
    assert!(
        creqs[0]
            .user_agent
            .as_deref()
            .is_some_and(|u| u.starts_with("hashsweep/"))
    );
    assert!(
        err.contains("CIRCL hashlookup: 3 digests asked in 1 request: 1 known"),
        "{err}"
    );

    // CIRCL down: nothing known_good, everything asked of MetaDefender, one warning.
    let circl = CirclServer::start().unwrap();
    circl.push_fault(503, r#"{"message": "maintenance"}"#);
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(ONE_REQUEST)
        .args(["--circl", "--circl-url", &circl.url()]);
    let out = run(&mut c);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let recs = ndjson(&out);
    assert!(
        recs.iter()
            .all(|r| r["verdict"] == "unknown" && r["source"].is_null()),
        "{recs:?}"
    );
    assert_eq!(
        mock.requests()
            .iter()
            .map(|r| r.hashes.len())
            .sum::<usize>(),
        3
    );
    assert!(err.contains("CIRCL hashlookup did not answer"), "{err}");
    assert!(err.contains("HTTP 503"), "{err}");

    // With a Bloom filter, only its hits are sent to CIRCL (a miss is not in CIRCL either).
    let circl = CirclServer::start().unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    let mut b = BloomBuilder::new(1000, 1e-6);
    b.add_sha1(&sha1_file(&paths[0]));
    let filter = t.dir.path().with_extension("hybrid.bloom");
    let _cleanup = Cleanup(filter.clone());
    std::fs::write(&filter, b.to_bytes()).unwrap();
    let mut c = scan_cmd(&mock, Path::new("."));
    c.current_dir(t.path())
        .args(ONE_REQUEST)
        .args(["--circl", "--circl-url", &circl.url(), "--known-good"])
        .arg(&filter);
    let out = run(&mut c);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let creqs = circl.requests();
    assert_eq!(creqs.len(), 1);
    assert_eq!(creqs[0].hashes, [sha1(&paths[0]).to_uppercase()]);

    // --help says what --circl sends, and to whom.
    let help = String::from_utf8(run(cmd().args(["scan", "--help"])).stdout).unwrap();
    assert!(
        help.contains("PRIVACY") && help.contains("third party"),
        "{help}"
    );
}

/// In ECS, a file CIRCL's sources flag is a threat indicator from CIRCL hashlookup (matched by
/// the SHA-1 it was asked by, its FileName, the sources as the description, CIRCL as the
/// feed), next to the service's own enrichment; a file CIRCL knows and nobody flags is none.
#[test]
fn a_flagged_circl_record_is_an_ecs_threat_indicator() {
    use hashsweep_mock::circl::CirclServer;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let t = Tree::new();
    let known = t.file(
        "lib/libknown.so",
        b"\x7fELF\x02\x01\x01 known, flagged by none",
    );
    let flagged = t.file("bin/flagged", b"\x7fELF\x02\x01\x01 known, flagged");
    let circl = CirclServer::start().unwrap();
    for (p, name, bad) in [
        (&known, "libknown.so", None),
        (&flagged, "dropper.exe", Some("malshare.com")),
    ] {
        circl.add(CirclServer::record(
            &"0".repeat(32),
            &hex(&sha1_file(p)),
            &"1".repeat(64),
            name,
            bad,
        ));
    }
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(
        &coreutils("sha256sum", &flagged).to_ascii_uppercase(),
        1,
        12,
    );
    let mut c = scan_cmd(&mock, t.path());
    c.args(ONE_REQUEST)
        .args(["--format", "ecs", "--circl", "--circl-url", &circl.url()]);
    let out = run(&mut c);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let docs = ndjson(&out);
    let doc = |suffix: &str| {
        docs.iter()
            .find(|d| {
                d["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(suffix))
            })
            .unwrap_or_else(|| panic!("no {suffix} in {docs:?}"))
    };
    let d = doc("bin/flagged");
    let ind = &d["threat"]["indicator"];
    assert_eq!(ind["type"], "file", "{d}");
    assert_eq!(ind["provider"], "CIRCL hashlookup");
    assert_eq!(ind["name"], "dropper.exe");
    assert_eq!(ind["description"], "KnownMalicious: malshare.com");
    assert_eq!(ind["file"]["name"], "dropper.exe");
    assert_eq!(ind["file"]["hash"]["sha1"], hex(&sha1_file(&flagged)));
    assert_eq!(d["threat"]["feed"]["name"], "CIRCL hashlookup");
    assert_eq!(
        d["threat"]["enrichments"][0]["indicator"]["provider"],
        "metadefender"
    );
    assert_eq!(d["event"]["kind"], "alert");
    let k = doc("lib/libknown.so");
    assert!(k.get("threat").is_none(), "{k}");
}
