//! `--archives`: the members of zip, tar, gzip, xz, zstd, bzip2 and 7z files, hashed from the
//! decompressed stream and looked up like files. The archives are built at run time (Python's
//! zipfile/tarfile/gzip/lzma/bz2, the zstd and sevenz-rust2 crates).

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::util::*;

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run a Python script with the tree's path as `sys.argv[1]`.
fn py(dir: &Path, script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn offline_scan(root: &Path, extra: &[&str]) -> std::process::Output {
    run(cmd()
        .args(["scan", "--offline", "--format", "ndjson", "--archives"])
        .args(extra)
        .arg(root))
}

fn eicar_py() -> String {
    format!(
        "EICAR = {:?}.encode()\n",
        std::str::from_utf8(EICAR).unwrap()
    )
}

#[test]
fn a_zip_with_eicar_inside_is_infected_under_the_joined_path() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    py(
        t.path(),
        &(eicar_py()
            + r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/mail.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("dir/eicar.com", EICAR)
    z.writestr("readme.txt", b"hello\n")
    z.writestr("empty/", b"")
"#),
    );
    mock.set(&sha256_hex(b"hello\n"), 0, 0);
    let out = run(scan_cmd(&mock, t.path()).arg("--archives"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    let zip = t.path().join("mail.zip");
    let e = rec(&recs, "mail.zip!dir/eicar.com");
    assert_eq!(e["path"], format!("{}!dir/eicar.com", zip.display()));
    assert_eq!(e["verdict"], "infected");
    assert_eq!(e["sha256"], EICAR_SHA256);
    assert_eq!(e["size"], EICAR.len());
    assert_eq!(e["container"], zip.to_str().unwrap());
    assert_eq!(e["member"], "dir/eicar.com");
    assert_eq!(rec(&recs, "mail.zip!readme.txt")["verdict"], "clean");
    // The archive keeps its own record (no container field: it is on disk).
    let own = rec(&recs, "mail.zip");
    assert!(own["container"].is_null(), "{own}");
    assert!(
        !recs
            .iter()
            .any(|r| r["path"].as_str().unwrap().contains("empty")),
        "a directory entry is no member: {recs:#?}"
    );
    assert!(
        stderr(&out).contains("2 members inside 1 archive"),
        "{}",
        stderr(&out)
    );

    // ECS: the joined path is file.path, the file on disk hashsweep.container.
    let out = run(scan_cmd(&mock, t.path()).args(["--archives", "--format", "ecs"]));
    let docs: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = docs
        .iter()
        .find(|d| d["file"]["path"] == format!("{}!dir/eicar.com", zip.display()))
        .unwrap_or_else(|| panic!("{docs:#?}"));
    assert_eq!(d["hashsweep"]["container"], zip.to_str().unwrap());
    assert_eq!(d["hashsweep"]["member"], "dir/eicar.com");

    // Off by default: the archive is one file.
    let out = run(&mut scan_cmd(&mock, t.path()));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_ne!(code(&out), 1);
}

#[test]
fn a_tar_gz_holding_a_zip_holding_eicar_is_found_two_levels_down() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    py(
        t.path(),
        &(eicar_py()
            + r#"
import io, sys, tarfile, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("c.com", EICAR)
data = buf.getvalue()
with tarfile.open(sys.argv[1] + "/a.tar.gz", "w:gz") as tf:
    info = tarfile.TarInfo("inner/b.zip")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
"#),
    );
    let out = run(scan_cmd(&mock, t.path()).arg("--archives"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    let e = rec(&recs, "a.tar.gz!inner/b.zip!c.com");
    assert_eq!(e["verdict"], "infected");
    assert_eq!(e["member"], "inner/b.zip!c.com");
    assert_eq!(e["container"], t.path().join("a.tar.gz").to_str().unwrap());
    // The zip itself is a member too, with its own digest.
    assert!(rec(&recs, "a.tar.gz!inner/b.zip")["sha256"].is_string());

    // --archive-depth 1 opens the tar.gz only, not the zip inside it.
    let out = run(scan_cmd(&mock, t.path()).args(["--archives", "--archive-depth", "1"]));
    let recs = ndjson(&out);
    assert!(
        !recs
            .iter()
            .any(|r| r["path"].as_str().unwrap().ends_with("c.com")),
        "{recs:#?}"
    );
    // The zip left closed says why, and the sweep is not complete (issue 33, 7).
    assert_eq!(
        rec(&recs, "a.tar.gz!inner/b.zip")["note"],
        "a zip archive not opened: deeper than --archive-depth (1)"
    );
    assert!(
        stderr(&out).contains("(1 not read to the end)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// One member in every format, checked against the digest of its content; `hashsweep hash`
/// prints `HEX  outer!inner` lines.
#[test]
fn every_format_is_read_and_hash_prints_joined_lines() {
    let t = Tree::new();
    let content = random_bytes(7, 300_000);
    t.file("payload.bin", &content);
    py(
        t.path(),
        r#"
import bz2, gzip, io, lzma, sys, tarfile, zipfile
d = sys.argv[1]
data = open(d + "/payload.bin", "rb").read()
with zipfile.ZipFile(d + "/f.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("m.bin", data)
with zipfile.ZipFile(d + "/f64.zip", "w", zipfile.ZIP_STORED) as z:
    with z.open("m.bin", "w", force_zip64=True) as m:
        m.write(data)
with tarfile.open(d + "/f.tar", "w") as tf:
    tf.add(d + "/payload.bin", arcname="m.bin")
open(d + "/m.bin.gz", "wb").write(gzip.compress(data))
open(d + "/m.bin.xz", "wb").write(lzma.compress(data))
open(d + "/m.bin.bz2", "wb").write(bz2.compress(data))
for ext, mode in [("tar.gz", "w:gz"), ("tar.xz", "w:xz"), ("tar.bz2", "w:bz2")]:
    with tarfile.open(d + "/t." + ext, mode) as tf:
        tf.add(d + "/payload.bin", arcname="m.bin")
"#,
    );
    std::fs::write(
        t.path().join("m.bin.zst"),
        zstd::encode_all(&content[..], 3).unwrap(),
    )
    .unwrap();
    let src7 = Tree::new();
    src7.file("m.bin", &content);
    sevenz_rust2::compress_to_path(src7.path(), t.path().join("f.7z")).unwrap();

    let out = run(cmd().args(["hash", "--archives"]).arg(t.path()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let want = sha256_hex(&content);
    for member in [
        "f.zip!m.bin",
        "f64.zip!m.bin",
        "f.tar!m.bin",
        "m.bin.gz!m.bin",
        "m.bin.xz!m.bin",
        "m.bin.bz2!m.bin",
        "m.bin.zst!m.bin",
        "t.tar.gz!m.bin",
        "t.tar.xz!m.bin",
        "t.tar.bz2!m.bin",
        "f.7z!m.bin",
    ] {
        let line = format!("{want}  {}/{member}", t.path().display());
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        // The archive's own digest, read in the same pass as its members for a stream.
        let outer = member.split('!').next().unwrap();
        let bytes = std::fs::read(t.path().join(outer)).unwrap();
        let line = format!("{}  {}/{outer}", sha256_hex(&bytes), t.path().display());
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }

    // --archives=zip opens zips only.
    let out = run(cmd().args(["hash", "--archives=zip"]).arg(t.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("f.zip!m.bin"), "{text}");
    assert!(!text.contains("f.tar!"), "{text}");
    assert!(!text.contains("m.bin.gz!"), "{text}");
}

/// Set the "encrypted" flag of every entry of a zip written by Python (local headers and the
/// central directory); the reader must not try to read such a member.
fn mark_encrypted(zip: &Path) {
    let mut b = std::fs::read(zip).unwrap();
    let mut i = 0;
    while i + 10 < b.len() {
        if b[i..i + 4] == *b"PK\x03\x04" {
            b[i + 6] |= 1;
        } else if b[i..i + 4] == *b"PK\x01\x02" {
            b[i + 8] |= 1;
        }
        i += 1;
    }
    std::fs::write(zip, b).unwrap();
}

#[test]
fn an_encrypted_member_is_skipped_and_the_archive_counted_incomplete() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/locked.zip", "w", zipfile.ZIP_STORED) as z:
    z.writestr("secret.exe", b"MZ not really")
"#,
    );
    mark_encrypted(&t.path().join("locked.zip"));
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "--archives"])
        .arg(t.path()));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = doc["records"].as_array().cloned().unwrap_or_else(|| {
        panic!("records in {doc}");
    });
    let m = rec(&recs, "locked.zip!secret.exe");
    assert_eq!(m["verdict"], "skipped", "{m}");
    assert_eq!(m["note"], "encrypted");
    assert!(m["sha256"].is_null(), "unread content has no digest: {m}");
    assert_eq!(
        doc["summary"]["archives_incomplete"], 1,
        "{}",
        doc["summary"]
    );
}

/// Python builds a zip whose one member is a gigabyte of zeros (about 1 MB on disk), and a zip
/// holding five copies of that zip.
fn bombs(dir: &Path) {
    py(
        dir,
        r#"
import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    with z.open("zeros.bin", "w", force_zip64=True) as m:
        block = bytes(1 << 20)
        for _ in range(1024):
            m.write(block)
bomb = buf.getvalue()
open(sys.argv[1] + "/bomb.zip", "wb").write(bomb)
with zipfile.ZipFile(sys.argv[1] + "/nested.zip", "w", zipfile.ZIP_STORED) as z:
    for i in range(5):
        z.writestr(f"b{i}.zip", bomb)
"#,
    );
}

/// `scan --offline --archives` of `root` under Python, which says how much memory the scan
/// held at most: its ndjson records, its stderr, and its peak RSS in KiB.
fn scan_measured(root: &Path, extra: &[&str]) -> (Vec<serde_json::Value>, String, u64) {
    let mut c = Command::new("python3");
    c.arg("-c")
        .arg(
            "import resource, subprocess, sys\n\
             p = subprocess.run(sys.argv[1:], capture_output=True)\n\
             sys.stdout.buffer.write(p.stdout)\n\
             sys.stderr.buffer.write(p.stderr)\n\
             print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
             sys.exit(p.returncode)",
        )
        .arg(env!("CARGO_BIN_EXE_hashsweep"))
        .args(["scan", "--offline", "--format", "ndjson", "--archives", "-j", "2"])
        .args(extra)
        .arg(root)
        .env("HASHSWEEP_NO_CACHE", "1")
        .env("HASHSWEEP_CONFIG", "/dev/null");
    let out = run_with_timeout(&mut c, Duration::from_secs(60));
    let err = stderr(&out);
    let rss: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {err}"));
    (ndjson(&out), err, rss)
}

#[test]
fn zip_bombs_end_in_seconds_in_bounded_memory_with_skipped_records() {
    let t = Tree::new();
    bombs(t.path());
    let started = Instant::now();
    let (recs, err, rss) = scan_measured(t.path(), &[]);
    let took = started.elapsed();
    let z = rec(&recs, "bomb.zip!zeros.bin");
    assert_eq!(z["verdict"], "skipped", "{z}");
    assert!(
        z["note"].as_str().unwrap().contains("compression ratio"),
        "{z}"
    );
    assert!(z["sha256"].is_null(), "{z}");
    for i in 0..5 {
        let n = rec(&recs, &format!("nested.zip!b{i}.zip!zeros.bin"));
        assert_eq!(n["verdict"], "skipped", "{n}");
        // The inner zip itself was read whole: its digest is the bomb's.
        assert_eq!(
            rec(&recs, &format!("nested.zip!b{i}.zip"))["sha256"],
            rec(&recs, "/bomb.zip")["sha256"]
        );
    }
    assert!(err.contains("(2 not read to the end)"), "{err}");
    assert!(rss < 150 * 1024, "held {rss} KiB");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A zip whose central directory holds 600 000 entries (a zip64 one, 32 MB, every entry
/// pointing at the same one-byte member): the directory is walked an entry at a time, so
/// `--archive-max-members` cuts it before its entries are all held in memory.
#[test]
fn a_huge_central_directory_is_cut_by_the_member_limit_in_bounded_memory() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import struct, sys, zlib
n = 600_000
crc = zlib.crc32(b"x")
local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, 1, 1, 1, 0) + b"a" + b"x"
central = bytearray()
for i in range(n):
    name = b"%07d" % i
    central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, 1, 1,
                           len(name), 0, 0, 0, 0, 0, 0) + name
cd_at, cd_len = len(local), len(central)
eocd64_at = cd_at + cd_len
eocd64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_len, cd_at)
locator = struct.pack("<IIQI", 0x07064B50, 0, eocd64_at, 1)
eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, cd_len, cd_at, 0)
with open(sys.argv[1] + "/wide.zip", "wb") as f:
    f.write(local + central + eocd64 + locator + eocd)
"#,
    );
    let started = Instant::now();
    let (recs, err, rss) = scan_measured(t.path(), &["--archive-max-members", "1000"]);
    let took = started.elapsed();
    let rest = rec(&recs, "wide.zip!*");
    assert_eq!(rest["verdict"], "skipped", "{rest}");
    assert!(
        rest["note"]
            .as_str()
            .unwrap()
            .contains("--archive-max-members"),
        "{rest}"
    );
    assert_eq!(
        rec(&recs, "wide.zip!0000999")["sha256"],
        sha256_hex(b"x"),
        "the first thousand are read"
    );
    assert_eq!(recs.len(), 1 + 1000 + 1, "{err}");
    assert!(rss < 60 * 1024, "held {rss} KiB");
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

/// A 7z bomb (8 MiB of zeros in LZMA2, a few KiB on disk, under `--archive-max-member`) is
/// stopped by the compression-ratio guard, as the other formats are; an ordinary member of
/// the same archive is still read.
#[test]
fn a_7z_bomb_is_stopped_by_the_ratio_guard() {
    let t = Tree::new();
    let file = std::fs::File::create(t.path().join("bomb.7z")).unwrap();
    let mut w = sevenz_rust2::ArchiveWriter::new(file).unwrap();
    w.push_archive_entry(
        sevenz_rust2::ArchiveEntry::new_file("zeros.bin"),
        Some(std::io::repeat(0).take(8 << 20)),
    )
    .unwrap();
    w.push_archive_entry(
        sevenz_rust2::ArchiveEntry::new_file("note.txt"),
        Some(&b"an ordinary member\n"[..]),
    )
    .unwrap();
    w.finish().unwrap();
    let out = offline_scan(t.path(), &[]);
    let recs = ndjson(&out);
    let z = rec(&recs, "bomb.7z!zeros.bin");
    assert_eq!(z["verdict"], "skipped", "{z}");
    assert!(
        z["note"].as_str().unwrap().contains("compression ratio"),
        "{z}"
    );
    assert!(z["sha256"].is_null(), "{z}");
    assert_eq!(
        rec(&recs, "bomb.7z!note.txt")["sha256"],
        sha256_hex(b"an ordinary member\n")
    );
}

/// The limits: members per archive (`x.zip!*` for the rest), one member's size.
#[test]
fn limits_leave_visible_skipped_records() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/many.zip", "w") as z:
    for i in range(5):
        z.writestr(f"m{i}.txt", f"member {i}\n" * (i + 1) * 1000)
"#,
    );
    let out = offline_scan(t.path(), &["--archive-max-members", "2"]);
    let recs = ndjson(&out);
    let rest = rec(&recs, "many.zip!*");
    assert_eq!(rest["verdict"], "skipped");
    assert!(
        rest["note"]
            .as_str()
            .unwrap()
            .contains("--archive-max-members"),
        "{rest}"
    );
    assert_eq!(rest["member"], "*");
    let hashed = recs
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains("many.zip!m") && r["sha256"].is_string())
        .count();
    assert_eq!(hashed, 2, "{recs:#?}");

    let out = offline_scan(t.path(), &["--archive-timeout", "0s"]);
    let recs = ndjson(&out);
    let rest = rec(&recs, "many.zip!*");
    assert!(
        rest["note"].as_str().unwrap().contains("--archive-timeout"),
        "{rest}"
    );
    assert!(
        !recs
            .iter()
            .any(|r| r["member"].is_string() && r["sha256"].is_string()),
        "{recs:#?}"
    );

    let out = offline_scan(t.path(), &["--archive-max-member", "9000"]);
    let recs = ndjson(&out);
    assert!(rec(&recs, "many.zip!m0.txt")["sha256"].is_string());
    let big = rec(&recs, "many.zip!m4.txt");
    assert_eq!(big["verdict"], "skipped");
    assert!(
        big["note"]
            .as_str()
            .unwrap()
            .contains("--archive-max-member "),
        "{big}"
    );
}

#[test]
fn a_truncated_archive_keeps_its_record_and_the_members_read_before() {
    let t = Tree::new();
    let first = random_bytes(1, 200_000);
    let second = random_bytes(2, 200_000);
    t.file("a.bin", &first);
    t.file("b.bin", &second);
    py(
        t.path(),
        r#"
import sys, tarfile, os
d = sys.argv[1]
with tarfile.open(d + "/t.tar.gz", "w:gz") as tf:
    tf.add(d + "/a.bin", arcname="a.bin")
    tf.add(d + "/b.bin", arcname="b.bin")
data = open(d + "/t.tar.gz", "rb").read()
open(d + "/t.tar.gz", "wb").write(data[: len(data) * 3 // 4])
os.remove(d + "/a.bin")
os.remove(d + "/b.bin")
"#,
    );
    let out = offline_scan(t.path(), &[]);
    let recs = ndjson(&out);
    let own = rec(&recs, "/t.tar.gz");
    assert!(own["sha256"].is_string(), "{own}");
    assert!(own["note"].as_str().unwrap().contains("damaged"), "{own}");
    assert_eq!(rec(&recs, "t.tar.gz!a.bin")["sha256"], sha256_hex(&first));
    let b = rec(&recs, "t.tar.gz!b.bin");
    assert_eq!(b["verdict"], "error", "{b}");
    assert!(b["sha256"].is_null(), "{b}");
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// Names are reported byte for byte as written, `!` escaped, and never used as paths.
#[test]
fn odd_member_names_are_reported_as_written() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1] + "/odd.tar", "w", format=tarfile.GNU_FORMAT,
                  encoding="utf-8", errors="surrogateescape") as tf:
    for name, data in [("../../x", b"up\n"),
                       (b"caf\xe9.txt".decode("utf-8", "surrogateescape"), b"latin\n"),
                       ("wow!50%.txt", b"bang\n")]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
"#,
    );
    let out = offline_scan(t.path(), &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    let up = rec(&recs, "odd.tar!../../x");
    assert_eq!(up["member"], "../../x");
    assert_eq!(up["sha256"], sha256_hex(b"up\n"));
    assert!(
        !t.path()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("x")
            .exists()
    );
    let bang = rec(&recs, "odd.tar!wow%2150%25.txt");
    assert_eq!(bang["sha256"], sha256_hex(b"bang\n"));
    let raw = [
        t.path().join("odd.tar").as_os_str().as_encoded_bytes(),
        b"!caf\xe9.txt",
    ]
    .concat();
    let latin = recs
        .iter()
        .find(|r| r["sha256"] == sha256_hex(b"latin\n"))
        .expect("the latin-1 member");
    assert_eq!(
        latin["path_bytes"],
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
}

#[test]
fn members_are_deduplicated_with_loose_copies() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("loose/tool.exe", b"MZ same bytes\n");
    py(
        t.path(),
        r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/pack.zip", "w") as z:
    z.writestr("tool.exe", b"MZ same bytes\n")
    z.writestr("copy/tool.exe", b"MZ same bytes\n")
"#,
    );
    let out = run(scan_cmd(&mock, t.path()).arg("--archives"));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    let sent: Vec<String> = mock.requests().into_iter().flat_map(|r| r.hashes).collect();
    let tool = sha256_hex(b"MZ same bytes\n");
    assert_eq!(
        sent.iter()
            .filter(|h| h.eq_ignore_ascii_case(&tool))
            .count(),
        1,
        "{sent:?}"
    );
    assert_eq!(sent.len(), 2, "the zip and the tool, once each: {sent:?}");
    let _ = std::io::stdout().flush();
}

/// Members take part in the rest: a `--known-bad` list names one, a baseline sees another
/// change (`modified`), and a macro-enabled document (a zip) is opened too.
#[test]
fn members_meet_known_sets_and_baselines() {
    let t = Tree::new();
    let write = |second: &[u8]| {
        let script = format!(
            r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/tree/kit.zip", "w") as z:
    z.writestr("ioc.exe", b"MZ our own IOC")
    z.writestr("notes.txt", {second:?}.encode())
with zipfile.ZipFile(sys.argv[1] + "/tree/report.docm", "w") as z:
    z.writestr("word/vbaProject.bin", b"macro bytes")
"#,
            second = std::str::from_utf8(second).unwrap()
        );
        py(t.path(), &script);
    };
    std::fs::create_dir_all(t.path().join("tree")).unwrap();
    write(b"first");
    let list = t.file(
        "bad.sha256",
        format!("{}  ioc.exe\n", sha256_hex(b"MZ our own IOC")).as_bytes(),
    );
    let old = t.path().join("old.ndjson");
    let root = t.path().join("tree");
    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--archives",
            "--format",
            "ndjson",
            "--known-bad",
        ])
        .arg(&list)
        .arg("-o")
        .arg(&old)
        .arg(&root));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&old)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ioc = rec(&recs, "kit.zip!ioc.exe");
    assert_eq!(ioc["verdict"], "infected");
    assert_eq!(ioc["source"], "local");
    assert_eq!(
        rec(&recs, "report.docm!word/vbaProject.bin")["sha256"],
        sha256_hex(b"macro bytes")
    );

    write(b"second");
    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--archives",
            "--format",
            "ndjson",
            "--baseline",
        ])
        .arg(&old)
        .arg(&root));
    let recs = ndjson(&out);
    assert_eq!(rec(&recs, "kit.zip!notes.txt")["change"], "modified");
    assert_eq!(rec(&recs, "kit.zip!ioc.exe")["change"], "unchanged");
}

/// With the digest cache, an unchanged archive is answered whole on the next sweep: its own
/// digest and its members' (the skipped ones and the `!*` records too) come back from the
/// cache, and nothing is read or decompressed. A changed archive is read again, and only its
/// new members are reported. No member's digest is ever stored as a file's.
/// A compressed tar named like a script (its kind by name is `Script`) is opened by content,
/// and its members come back from the cache on the next sweep (they used to vanish: only
/// archives and documents by kind had their row stored and asked for).
#[test]
fn a_compressed_tar_named_like_a_script_keeps_its_members_on_the_cached_sweep() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import gzip, io, os, sys, tarfile
d = sys.argv[1] + "/tree"
os.makedirs(d)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    info = tarfile.TarInfo("x.exe")
    data = b"MZ inside a script-named tar.gz"
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
open(d + "/payload.js", "wb").write(gzip.compress(buf.getvalue()))
os.utime(d + "/payload.js", (1_600_000_000, 1_600_000_000))
"#,
    );
    let tree = t.path().join("tree");
    let cache = t.path().join("cache.sqlite");
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + Duration::from_millis(200));
    let sweep = || {
        let out = run(cmd()
            .env_remove("HASHSWEEP_NO_CACHE")
            .args([
                "scan",
                "--offline",
                "--archives",
                "--format",
                "json",
                "--cache",
            ])
            .arg(&cache)
            .arg(&tree));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut paths: Vec<String> = doc["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect();
        paths.sort();
        (paths, doc["summary"].clone())
    };
    let (first, _) = sweep();
    assert!(
        first.iter().any(|p| p.ends_with("payload.js!x.exe")),
        "{first:?}"
    );
    let (second, s2) = sweep();
    assert_eq!(first, second, "{s2}");
    assert_eq!(s2["archive_members_cached"], 1, "{s2}");
}

#[test]
fn an_unchanged_archive_is_served_from_the_cache_on_the_second_sweep() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import gzip, io, os, sys, tarfile, zipfile
d = sys.argv[1] + "/tree"
os.makedirs(d)
with zipfile.ZipFile(d + "/a.zip", "w") as z:
    z.writestr("x.exe", b"MZ inside")
with zipfile.ZipFile(d + "/locked.zip", "w") as z:
    z.writestr("secret.exe", b"MZ locked")
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                  errors="surrogateescape") as tf:
    odd = b"caf\xe9.txt".decode("utf-8", "surrogateescape")
    for name, data in [("one.txt", b"one\n"), (odd, b"latin\n"), ("two.txt", b"two\n"),
                       ("three.txt", b"3\n")]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
open(d + "/b.tar.gz", "wb").write(gzip.compress(buf.getvalue()))
open(d + "/loose.txt", "wb").write(b"not an archive\n")
open(d + "/report.pdf", "wb").write(b"%PDF-1.4 not an archive\n")
for f in os.listdir(d):
    os.utime(d + "/" + f, (1_600_000_000, 1_600_000_000))
"#,
    );
    mark_encrypted(&t.path().join("tree/locked.zip"));
    let tree = t.path().join("tree");
    let zip_path = tree.join("a.zip");
    let cache = t.path().join("cache.sqlite");
    // Files changed within the racy window are not cached: wait it out (ctime cannot be set).
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + Duration::from_millis(200));
    let sweep = || {
        let out = run(cmd()
            .env_remove("HASHSWEEP_NO_CACHE")
            .args(["scan", "--offline", "--archives", "--format", "json"])
            // Three of the tar's four members: the rest is an `!*` record.
            .args(["--archive-max-members", "3", "--cache"])
            .arg(&cache)
            .arg(&tree));
        // Archives not read to the end (the member limit, the encrypted zip) exit 2.
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut recs = doc["records"].as_array().cloned().unwrap();
        recs.sort_by_key(|r| r["path"].to_string());
        (recs, doc["summary"].clone(), stderr(&out))
    };
    let (first, s1, _) = sweep();
    let (second, s2, err) = sweep();
    assert_eq!(s1["archive_members"], 4, "{s1}");
    assert!(s1["archive_members_cached"].is_null(), "{s1}");
    assert_eq!(first, second, "the same records, from the cache");
    assert_eq!(s2["archive_members"], 4, "{s2}");
    assert_eq!(
        s2["archive_members_cached"], 4,
        "nothing decompressed: {s2}"
    );
    assert_eq!(s2["bytes_read"], 0, "nothing read: {s2}");
    assert_eq!(s2["archives_incomplete"], 2, "{s2}");
    assert!(err.contains("4 from the cache"), "{err}");
    let zip = std::fs::read(&zip_path).unwrap();
    assert_eq!(rec(&second, "/a.zip")["sha256"], sha256_hex(&zip));
    assert_eq!(
        rec(&second, "a.zip!x.exe")["sha256"],
        sha256_hex(b"MZ inside")
    );
    let locked = rec(&second, "locked.zip!secret.exe");
    assert_eq!(
        (&locked["verdict"], &locked["note"]),
        (&"skipped".into(), &"encrypted".into())
    );
    assert_eq!(rec(&second, "b.tar.gz!*")["verdict"], "skipped");
    assert_eq!(
        rec(&second, "b.tar.gz!two.txt")["sha256"],
        sha256_hex(b"two\n")
    );
    let raw = [
        tree.join("b.tar.gz").as_os_str().as_encoded_bytes(),
        b"!caf\xe9.txt",
    ]
    .concat();
    let latin = second
        .iter()
        .find(|r| r["sha256"] == sha256_hex(b"latin\n"))
        .expect("the latin-1 member");
    assert_eq!(
        latin["path_bytes"],
        base64::engine::general_purpose::STANDARD.encode(&raw)
    );
    assert_eq!(second.len(), 11, "{second:#?}");
    // The digest rows are the files': a member's row would be keyed by its identity.
    let rows = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             print(sqlite3.connect(sys.argv[1]).execute('select count(*) from file_digests').fetchone())",
        )
        .arg(&cache)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "(5,)");

    // A changed archive is read again: its new member is there, its old ones are gone.
    py(
        t.path(),
        r#"
import os, sys, zipfile
p = sys.argv[1] + "/tree/a.zip"
with zipfile.ZipFile(p, "w") as z:
    z.writestr("y.exe", b"MZ changed")
os.utime(p, (1_600_000_000, 1_600_000_000))
"#,
    );
    let (third, s3, _) = sweep();
    assert_eq!(
        rec(&third, "a.zip!y.exe")["sha256"],
        sha256_hex(b"MZ changed")
    );
    assert!(
        third
            .iter()
            .all(|r| !r["path"].as_str().unwrap().ends_with("a.zip!x.exe")),
        "{third:#?}"
    );
    assert_eq!(s3["archive_members"], 4, "{s3}");
    assert_eq!(s3["archive_members_cached"], 3, "the tar.gz only: {s3}");
}

/// Without `--archives` a sweep says how many archives it hashed as files without reading
/// inside them, on stderr and in the JSON summary; with `--archives` it does not (they were
/// opened).
#[test]
fn archives_passed_without_archives_are_counted() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import sys, zipfile, gzip
with zipfile.ZipFile(sys.argv[1] + "/a.zip", "w") as z:
    z.writestr("inner.txt", b"inside")
with gzip.open(sys.argv[1] + "/b.txt.gz", "wb") as g:
    g.write(b"compressed")
"#,
    );
    t.file("plain.txt", b"not an archive");
    let out_dir = Tree::new();
    let report = out_dir.path().join("r.json");
    let sweep = |extra: &[&str]| {
        let out = run(cmd()
            .args(["scan", "--offline", "--format", "json", "-o"])
            .arg(&report)
            .args(extra)
            .arg(t.path()));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        (stderr(&out), json)
    };
    let (err, json) = sweep(&[]);
    assert!(
        err.contains(
            "hashsweep: 2 archives were hashed as files, their contents not read: --archives \
             opens zip, tar, gzip, xz, zstd, bzip2, 7z"
        ),
        "{err}"
    );
    assert_eq!(json["summary"]["archives_not_opened"], 2, "{json}");
    let (err, json) = sweep(&["--archives"]);
    assert!(!err.contains("hashed as files"), "{err}");
    assert!(
        json["summary"].get("archives_not_opened").is_none(),
        "{json}"
    );
    assert_eq!(json["summary"]["archives"], 2, "{json}");
}
