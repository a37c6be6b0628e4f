//! `--archives` on what old tools and attackers write (issue 33): duplicate member names,
//! signed tar checksums, sparse tar members, damage part way, archives past the depth,
//! packages (`.deb`, `.rpm`, cpio) and containers left closed. Every archive is made here:
//! Python's tarfile/zipfile (the independent reader the digests are checked against), GNU tar
//! for sparse members, sevenz-rust2 for 7z.

use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::util::*;

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run a Python script with the tree's path as `sys.argv[1]`; its stdout.
fn py(dir: &Path, script: &str) -> String {
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
    String::from_utf8(out.stdout).unwrap()
}

fn scan_json(
    root: &Path,
    extra: &[&str],
) -> (Vec<serde_json::Value>, serde_json::Value, i32, String) {
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "json", "--archives"])
        .args(extra)
        .arg(root));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    let recs = doc["records"].as_array().cloned().unwrap();
    (recs, doc["summary"].clone(), code(&out), stderr(&out))
}

/// The record whose path ends with `suffix` (exactly one).
fn one<'a>(recs: &'a [serde_json::Value], suffix: &str) -> &'a serde_json::Value {
    let found: Vec<_> = recs
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
        .collect();
    assert_eq!(found.len(), 1, "one record ending {suffix:?} in {recs:#?}");
    found[0]
}

/// Issue 33, 1: two members of one name are two records, the same ones on every run, each
/// with the digest Python's reader gives that entry.
#[test]
fn members_of_the_same_name_are_kept_apart_in_archive_order() {
    let t = Tree::new();
    let digests = py(
        t.path(),
        r#"
import hashlib, io, sys, tarfile, warnings, zipfile
warnings.simplefilter("ignore")
d = sys.argv[1]
with tarfile.open(d + "/dup.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
    for data in [b"MZ first payload", b"MZ second payload", b"MZ third payload"]:
        info = tarfile.TarInfo("bin/payload.exe")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
with zipfile.ZipFile(d + "/dup.zip", "w") as z:
    z.writestr("a.txt", b"one")
    z.writestr("a.txt", b"two")
# The independent reader: every entry, in order.
with zipfile.ZipFile(d + "/dup.zip") as z:
    for i in z.infolist():
        print("zip", hashlib.sha256(z.read(i)).hexdigest())
with tarfile.open(d + "/dup.tar") as tf:
    for m in tf.getmembers():
        print("tar", hashlib.sha256(tf.extractfile(m).read()).hexdigest())
"#,
    );
    let want = |kind: &str| -> Vec<String> {
        digests
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{kind} ")))
            .map(str::to_string)
            .collect()
    };
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (recs, _, code, err) = scan_json(t.path(), &["-j", "4"]);
        assert_eq!(code, 0, "{err}");
        let tar = want("tar");
        assert_eq!(one(&recs, "dup.tar!bin/payload.exe")["sha256"], tar[0]);
        let second = one(&recs, "dup.tar!bin/payload.exe%#2");
        assert_eq!(second["sha256"], tar[1]);
        assert_eq!(second["member"], "bin/payload.exe%#2");
        assert!(
            second["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("duplicate name: member 2 of that name")),
            "{second}"
        );
        assert_eq!(one(&recs, "dup.tar!bin/payload.exe%#3")["sha256"], tar[2]);
        let zip = want("zip");
        assert_eq!(one(&recs, "dup.zip!a.txt")["sha256"], zip[0]);
        assert_eq!(one(&recs, "dup.zip!a.txt%#2")["sha256"], zip[1]);
        runs.push(recs);
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
}

/// Issue 33, 5: a header whose checksum was summed over signed bytes (old writers) is read
/// as GNU tar and Python read it, and the members after it are not lost.
#[test]
fn a_tar_header_with_a_signed_checksum_is_read_on() {
    let t = Tree::new();
    let digests = py(
        t.path(),
        r#"
import hashlib, io, sys, tarfile
d = sys.argv[1]
members = [("caf\xe9\xff.txt", b"high bytes in the name"), ("after.txt", b"read on")]
with tarfile.open(d + "/signed.tar", "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tf:
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
b = bytearray(open(d + "/signed.tar", "rb").read())
s = sum((32 if 148 <= i < 156 else (c - 256 if c > 127 else c)) for i, c in enumerate(b[:512]))
unsigned = sum((32 if 148 <= i < 156 else c) for i, c in enumerate(b[:512]))
assert s != unsigned
b[148:156] = b"%06o\0 " % s
open(d + "/signed.tar", "wb").write(bytes(b))
with tarfile.open(d + "/signed.tar") as tf:
    for m in tf.getmembers():
        print(hashlib.sha256(tf.extractfile(m).read()).hexdigest())
"#,
    );
    let want: Vec<&str> = digests.lines().collect();
    assert_eq!(want.len(), 2, "python reads both: {digests}");
    let (recs, summary, code, err) = scan_json(t.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(one(&recs, "signed.tar!after.txt")["sha256"], want[1]);
    let first = recs
        .iter()
        .find(|r| r["path_bytes"].is_string() || r["path"].as_str().unwrap().contains("caf"))
        .unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(first["sha256"], want[0]);
    assert_eq!(summary["archive_members"], 2, "{summary}");
    assert_eq!(
        summary["archives_incomplete"].as_u64().unwrap_or(0),
        0,
        "{summary}"
    );
}

/// Issue 33, 4: what `tar --sparse` writes (PAX 0.0, 0.1, 1.0 and the old GNU format) is
/// hashed as the file it extracts to, under its real name.
#[test]
fn sparse_tar_members_are_hashed_as_extracted_under_their_names() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import sys
with open(sys.argv[1] + "/sparse.bin", "wb") as f:
    f.seek(1 << 20); f.write(b"data after a hole" * 300)
    f.seek(3 << 20); f.write(b"the end")
"#,
    );
    let want = sha256_hex(&std::fs::read(t.path().join("sparse.bin")).unwrap());
    let out = Tree::new();
    let variants = [
        ("pax00.tar", vec!["--format=pax", "--sparse-version=0.0"]),
        ("pax01.tar", vec!["--format=pax", "--sparse-version=0.1"]),
        ("pax10.tar", vec!["--format=pax", "--sparse-version=1.0"]),
        ("pax.tar", vec!["--format=pax"]),
        ("gnu.tar", vec!["--format=gnu"]),
    ];
    for (name, args) in &variants {
        let st = Command::new("tar")
            .arg("--sparse")
            .args(args)
            .arg("-cf")
            .arg(out.path().join(name))
            .arg("-C")
            .arg(t.path())
            .arg("sparse.bin")
            .status()
            .expect("GNU tar");
        assert!(st.success());
        let bytes = std::fs::read(out.path().join(name)).unwrap();
        // Stored sparse (the file system has holes): far smaller than the file.
        assert!(bytes.len() < 1 << 20, "{name} is not sparse");
    }
    let (recs, _, code, err) = scan_json(out.path(), &[]);
    assert_eq!(code, 0, "{err}");
    for (name, _) in &variants {
        let m = one(&recs, &format!("{name}!sparse.bin"));
        assert_eq!(m["sha256"], want, "{name}: {m}");
        assert_eq!(m["size"], 3 << 20 | 7, "{name}: {m}");
    }
    assert!(
        !recs
            .iter()
            .any(|r| r["path"].as_str().unwrap().contains("GNUSparseFile")),
        "{recs:#?}"
    );
}

/// Issue 33, 2 and 3: an archive not read to the end makes `hash --archives` say so and exit
/// 2, and `scan` exit 2.
#[test]
fn archives_not_read_to_the_end_fail_the_exit_status() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import io, sys, tarfile
d = sys.argv[1]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    for name, size in [("a.bin", 3000), ("b.bin", 50000)]:
        info = tarfile.TarInfo(name)
        info.size = size
        tf.addfile(info, io.BytesIO(bytes(range(256)) * (size // 256 + 1)))
data = buf.getvalue()
open(d + "/cut.tar", "wb").write(data[:20000])
"#,
    );
    let out = run(cmd().args(["hash", "--archives"]).arg(t.path()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cut.tar: damaged archive"), "{err}");
    assert!(
        err.contains("cut.tar!b.bin: read failed inside the archive"),
        "{err}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cut.tar!a.bin"), "{text}");
    assert!(
        !text.contains("cut.tar!b.bin"),
        "a cut member has no digest: {text}"
    );

    let (recs, summary, status, err) = scan_json(t.path(), &[]);
    assert_eq!(status, 2, "{err}");
    assert_eq!(summary["archives_incomplete"], 1, "{summary}");
    assert_eq!(one(&recs, "cut.tar!b.bin")["verdict"], "error");

    // Nothing failed, but a limit left members unread: still not a clean exit.
    let whole = Tree::new();
    py(
        whole.path(),
        r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1] + "/two.tar", "w") as tf:
    for name in ["a.txt", "b.txt"]:
        info = tarfile.TarInfo(name)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"data"))
"#,
    );
    let limit = ["--archive-max-members", "1"];
    let out = run(cmd()
        .args(["hash", "--archives"])
        .args(limit)
        .arg(whole.path()));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("two.tar: not read to the end: more than --archive-max-members"),
        "{}",
        stderr(&out)
    );
    let (recs, _, status, err) = scan_json(whole.path(), &limit);
    assert_eq!(one(&recs, "two.tar!*")["verdict"], "skipped");
    assert_eq!(status, 2, "{err}");
}

/// Issue 33, 6: one unreadable zip member does not make the note claim the rest unread; an
/// empty 7z member is a record like an empty zip member.
#[test]
fn notes_say_what_happened() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(d + "/bad.zip", "w", zipfile.ZIP_STORED) as z:
    z.writestr("one.txt", b"first member")
    z.writestr("two.txt", b"SECOND MEMBER")
    z.writestr("three.txt", b"third member")
b = open(d + "/bad.zip", "rb").read()
i = b.index(b"SECOND MEMBER")
open(d + "/bad.zip", "wb").write(b[:i] + b"XECOND MEMBER" + b[i + 13:])
"#,
    );
    let src7 = Tree::new();
    src7.file("empty.txt", b"");
    src7.file("full.txt", b"full");
    sevenz_rust2::compress_to_path(src7.path(), t.path().join("e.7z")).unwrap();

    let (recs, _, code, err) = scan_json(t.path(), &[]);
    assert_eq!(code, 2, "{err}");
    let own = one(&recs, "/bad.zip");
    let note = own["note"].as_str().unwrap();
    assert!(
        note.contains("every other member was read") && !note.contains("the rest could not"),
        "{note}"
    );
    assert_eq!(one(&recs, "bad.zip!two.txt")["verdict"], "error");
    assert_eq!(
        one(&recs, "bad.zip!three.txt")["sha256"],
        sha256_hex(b"third member")
    );
    assert_eq!(one(&recs, "e.7z!empty.txt")["sha256"], sha256_hex(b""));
    assert_eq!(one(&recs, "e.7z!full.txt")["sha256"], sha256_hex(b"full"));
}

/// Issue 33, 8: a `.deb` (ar of tars) and an `.rpm` (headers, gzip'd cpio) are opened down to
/// their files; a RAR or CAB, on disk or inside, says its contents were not examined.
#[test]
fn packages_are_opened_and_closed_containers_say_so() {
    let t = Tree::new();
    py(
        t.path(),
        r#"
import gzip, io, lzma, struct, sys, tarfile, zipfile
d = sys.argv[1]
def tar(files, compress):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return compress(buf.getvalue())
def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        out += b"%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, b"100644", len(data))
        out += data + (b"\n" if len(data) % 2 else b"")
    return out
open(d + "/tool.deb", "wb").write(ar([
    (b"debian-binary", b"2.0\n"),
    (b"control.tar.gz", tar([("./control", b"Package: tool\n")], gzip.compress)),
    (b"data.tar.xz", tar([("./usr/bin/tool", b"MZ the tool itself")], lzma.compress)),
]))
def newc(name, data, mode=0o100755):
    name = name.encode() + b"\0"
    h = b"070701" + b"".join(b"%08X" % v for v in
        [1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0])
    out = h + name
    out += b"\0" * (-len(out) % 4)
    return out + data + b"\0" * (-len(data) % 4)
cpio = newc("./usr/bin/rpmtool", b"ELF rpm tool") + newc("./etc/conf", b"x=1\n", 0o100644) \
    + newc("TRAILER!!!", b"", 0)
open(d + "/plain.cpio", "wb").write(cpio)
def header(entries, data):
    return b"\x8e\xad\xe8\x01\0\0\0\0" + struct.pack(">II", entries, len(data)) \
        + b"\0" * (16 * entries) + data
lead = b"\xed\xab\xee\xdb" + b"\0" * 92
sig = header(1, b"sigdata")
sig += b"\0" * (-len(sig) % 8)
open(d + "/tool.rpm", "wb").write(lead + sig + header(2, b"headerdata!") + gzip.compress(cpio))
rar = b"Rar!\x1a\x07\x01\x00" + b"\0" * 64
open(d + "/old.rar", "wb").write(rar)
with zipfile.ZipFile(d + "/holds.zip", "w") as z:
    z.writestr("inner.rar", rar)
    z.writestr("setup.cab", b"MSCF\0\0\0\0" + b"\0" * 64)
"#,
    );
    let (recs, _, code, err) = scan_json(t.path(), &[]);
    assert_eq!(
        one(&recs, "tool.deb!data.tar.xz!./usr/bin/tool")["sha256"],
        sha256_hex(b"MZ the tool itself")
    );
    assert_eq!(
        one(&recs, "tool.deb!control.tar.gz!./control")["sha256"],
        sha256_hex(b"Package: tool\n")
    );
    assert_eq!(
        one(&recs, "tool.deb!debian-binary")["sha256"],
        sha256_hex(b"2.0\n")
    );
    assert_eq!(
        one(&recs, "tool.rpm!./usr/bin/rpmtool")["sha256"],
        sha256_hex(b"ELF rpm tool")
    );
    assert_eq!(
        one(&recs, "tool.rpm!./etc/conf")["sha256"],
        sha256_hex(b"x=1\n")
    );
    assert_eq!(
        one(&recs, "plain.cpio!./usr/bin/rpmtool")["sha256"],
        sha256_hex(b"ELF rpm tool")
    );
    assert!(one(&recs, "/tool.rpm")["note"].is_null(), "read whole");
    assert_eq!(
        one(&recs, "/old.rar")["note"],
        "its contents were not examined: --archives does not open RAR archives"
    );
    assert_eq!(
        one(&recs, "holds.zip!inner.rar")["note"],
        "its contents were not examined: --archives does not open RAR archives"
    );
    assert_eq!(
        one(&recs, "holds.zip!setup.cab")["note"],
        "its contents were not examined: --archives does not open CAB archives"
    );
    // Contents not examined: the sweep is not complete.
    assert_eq!(code, 2, "{err}");

    // A format left out of --archives= is said to be, without failing the sweep.
    let out = run(cmd()
        .args([
            "scan",
            "--offline",
            "--format",
            "ndjson",
            "--archives=zip,tar,gzip,xz",
        ])
        .arg(t.path()));
    let recs = ndjson(&out);
    assert_eq!(
        one(&recs, "/tool.rpm")["note"],
        "its contents were not examined: --archives= does not name rpm"
    );
}

/// Issue 33, 8: a zip behind a self-extractor's stub is opened (Python's zipfile reads it
/// too); a program that merely holds the zip end marker is left a program.
#[test]
fn a_self_extracting_zip_is_opened() {
    let t = Tree::new();
    let digest = py(
        t.path(),
        r#"
import hashlib, io, sys, zipfile
d = sys.argv[1]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("payload/inside.exe", b"MZ the program inside")
open(d + "/setup.exe", "wb").write(b"MZ" + b"\x90" * 5000 + buf.getvalue())
open(d + "/other.exe", "wb").write(b"MZ" + b"\x90" * 5000 + b"PK\x05\x06 not a zip")
with zipfile.ZipFile(d + "/setup.exe") as z:
    print(hashlib.sha256(z.read("payload/inside.exe")).hexdigest())
"#,
    );
    let (recs, _, code, err) = scan_json(t.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        one(&recs, "setup.exe!payload/inside.exe")["sha256"],
        digest.trim()
    );
    let other = one(&recs, "/other.exe");
    assert!(other["note"].is_null(), "{other}");
    assert_eq!(recs.len(), 3, "{recs:#?}");
}

/// Issue 33, 6: an AES-encrypted 7z (written by 7-Zip) is `encrypted`, not an
/// "unsupported compression method".
#[test]
fn an_encrypted_7z_says_encrypted() {
    let t = Tree::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/archives");
    std::fs::copy(fixtures.join("encrypted.7z"), t.path().join("encrypted.7z")).unwrap();
    let (recs, summary, code, err) = scan_json(t.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(summary["archives_incomplete"], 1, "{summary}");
    let enc = one(&recs, "encrypted.7z!*");
    assert_eq!(enc["verdict"], "skipped");
    assert_eq!(enc["note"], "encrypted");
}
