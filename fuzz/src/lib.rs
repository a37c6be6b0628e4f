//! The fuzz targets' bodies: each hands arbitrary bytes to one parser of untrusted input and
//! checks what must hold whatever the input (a panic, an endless loop or unbounded memory
//! is the finding). Kept in a library so a crash found becomes a regression test by calling
//! the same function (see `fuzz/README.md`).

use std::collections::HashSet;
use std::time::Duration;

use hashsweep::digest::Digest;
use hashsweep::scan::archive::{ArchiveOptions, Format, Inside, read_in_memory};

/// Limits small enough for many executions a second; the checks are the same.
fn archive_options(depth: u32) -> ArchiveOptions {
    ArchiveOptions {
        depth,
        max_bytes: 8 << 20,
        max_member: 4 << 20,
        max_members: 2_000,
        timeout: Duration::from_secs(5),
        ..ArchiveOptions::default()
    }
}

/// An archive walker (as `format`, or as its first bytes say, nested six deep).
pub fn archive(data: &[u8], format: Option<Format>) {
    let depth = if format.is_some() { 2 } else { 6 };
    let opts = archive_options(depth);
    let name = b"/fuzz/in.bin";
    let Some((inside, members)) = read_in_memory(name, data, format, &opts) else {
        return;
    };
    assert!(matches!(inside, Inside::Container { .. }));
    let mut seen = HashSet::new();
    for m in &members {
        let path = m.path.as_os_str().as_encoded_bytes();
        // Every member is under the archive, after a `!`.
        assert!(path.starts_with(b"/fuzz/in.bin!"), "{:?}", m.path);
        // One record per member: no two share a path (issue 33, 1).
        assert!(seen.insert(path.to_vec()), "two records for {:?}", m.path);
        assert!(m.container_member().is_some(), "{:?}", m.path);
        if let Some(size) = m.size {
            assert!(size <= opts.max_member, "{:?}: {size}", m.path);
        }
    }
    assert!(
        members.len() as u64 <= opts.max_members + 8,
        "{}",
        members.len()
    );
}

/// Hash lists and sets, from a file (every text format; an NSRL RDS SQLite database when
/// the bytes are one).
pub fn hashset(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("set.txt");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = hashsweep::known::hashset::HashSet::load(&[path], None);
}

/// One line of a `sha256sum`-style list.
pub fn hashlist_line(data: &[u8]) {
    let _ = hashsweep::known::hashlist::parse_line(data);
}

/// The vendor's answers: the first byte picks a bulk/detailed 200 body, an error body, or
/// rate-limit headers (`name: value` lines).
pub fn vendor_answer(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let asked: Vec<Digest> = [
                "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
                "44d88612fea8a8f36de82e1278abb02f",
                "3395856ce81f2b7382dee72602f798b642f14140",
            ]
            .iter()
            .filter_map(|h| Digest::from_hex(h))
            .collect();
            if let Ok(outcomes) = hashsweep::lookup::protocol::parse_answer(body, &asked) {
                // One outcome per digest asked, whatever the answer holds.
                assert_eq!(outcomes.len(), asked.len());
            }
        }
        1 => {
            let _ = hashsweep::lookup::protocol::parse_error(body);
        }
        _ => {
            let mut h = reqwest::header::HeaderMap::new();
            for line in body.split(|&b| b == b'\n') {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                if let (Ok(n), Ok(v)) = (
                    reqwest::header::HeaderName::from_bytes(&line[..colon]),
                    reqwest::header::HeaderValue::from_bytes(&line[colon + 1..]),
                ) {
                    h.append(n, v);
                }
            }
            let _ = hashsweep::lookup::http::RateHeaders::read(&h);
            let _ = hashsweep::lookup::http::retry_after(&h);
        }
    }
}

/// The gateway's `POST /v4/hash` body. (An empty or malformed hash string is accepted here:
/// each is answered on its own later, as the vendor does.)
pub fn gateway_request(data: &[u8]) {
    if let Ok(hashes) = hashsweep::gateway::api::parse_request(data) {
        assert!((1..=1000).contains(&hashes.len()), "{}", hashes.len());
    }
}

/// A report read back for `diff` and baselines (JSON, NDJSON or CSV, as sniffed).
pub fn report_read(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("report");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut n = 0u64;
    let _ = hashsweep::report::read::read_report(&path, |_| n += 1);
}

/// rpm's package database, byte by byte (the first byte picks): a header blob, an ndb
/// `Packages.db` or a Berkeley DB `Packages`, each blob then parsed as a header and its files.
/// (`rpmdb.sqlite` is SQLite's to parse: its blobs are the same header blobs.)
pub fn package_rpm(data: &[u8]) {
    use hashsweep::known::packages::{Recorded, rpm};
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let blobs = match mode % 3 {
        0 => vec![file.to_vec()],
        1 => rpm::parse_ndb(file).unwrap_or_default(),
        _ => rpm::parse_bdb(file).unwrap_or_default(),
    };
    for blob in &blobs {
        // No allocation the size of a lie: every blob is made of the file's own bytes.
        assert!(blob.len() <= file.len(), "{} > {}", blob.len(), file.len());
        let Ok(h) = rpm::Header::parse(blob) else {
            continue;
        };
        for tag in [
            rpm::TAG_NAME,
            rpm::TAG_BASENAMES,
            rpm::TAG_DIRINDEXES,
            rpm::TAG_EPOCH,
        ] {
            let _ = h.strings(tag);
            let _ = h.ints(tag);
        }
        let Ok((package, files, other)) = rpm::package_files(&h) else {
            continue;
        };
        assert!(!package.name.is_empty());
        let algo = h
            .ints(rpm::TAG_FILEDIGESTALGO)
            .ok()
            .flatten()
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        // A digest is read in the algorithm the header names, and only in one hashsweep has.
        for (path, digest, _) in &files {
            match (algo, digest) {
                (_, None) | (1, Some(Recorded::Md5(_))) | (2, Some(Recorded::Sha1(_))) => {}
                (8, Some(Recorded::Sha256(_))) => {}
                (a, Some(d)) => panic!("{path:?}: algorithm {a} read as {d:?}"),
            }
        }
        assert!(
            other == 0 || !matches!(algo, 1 | 2 | 8),
            "{other} with algo {algo}"
        );
    }
}

/// The files of the package databases [`package_db`] lays out, by its first byte: dpkg, apk or
/// pacman (also what the regression test of its seeds lays out).
pub fn package_layout(mode: u8) -> &'static [&'static str] {
    match mode % 3 {
        0 => &[
            "var/lib/dpkg/status",
            "var/lib/dpkg/info/p.md5sums",
            "var/lib/dpkg/info/p.list",
            "var/lib/dpkg/diversions",
            "var/lib/dpkg/info/p:amd64.list",
            "var/lib/dpkg/info/p:amd64.md5sums",
        ],
        1 => &[
            "lib/apk/db/installed",
            "etc/apk/protected_paths.d/local.list",
        ],
        _ => &[
            "var/lib/pacman/local/p-1.0-1/desc",
            "var/lib/pacman/local/p-1.0-1/files",
            "var/lib/pacman/local/p-1.0-1/mtree",
        ],
    }
}

/// The text package databases as a system holds them (the first byte picks dpkg, apk or
/// pacman; NUL bytes split the rest into its files, the last taking what remains), read by `--packages` from a root made of
/// them. Every claim stays inside the root and can be found again by its path.
pub fn package_db(data: &[u8]) {
    use hashsweep::known::packages::{PackageDb, PackageError, PackageMode};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path();
    let files = package_layout(mode);
    // The last file takes the rest, NUL bytes and all (a gzip'd mtree).
    for (rel, content) in files.iter().zip(rest.splitn(files.len(), |&b| b == 0)) {
        let p = root.join(rel);
        if let Some(parent) = p.parent()
            && std::fs::create_dir_all(parent).is_err()
        {
            return;
        }
        if std::fs::write(&p, content).is_err() {
            return;
        }
    }
    let db = match PackageDb::load(root, PackageMode::Trust) {
        Ok(db) => db,
        // Damage is an error that names the database, never a panic.
        Err(PackageError::Corrupt { .. } | PackageError::Read { .. }) => return,
        Err(e) => panic!("{e}"),
    };
    assert!(db.loaded().len() <= 1, "{:?}", db.loaded());
    let claimed: u64 = db.loaded().iter().map(|l| l.files).sum();
    for l in db.loaded() {
        assert!(l.unchecked <= l.files, "{l:?}");
    }
    assert!(db.paths() as u64 <= claimed, "{} > {claimed}", db.paths());
    let Ok(real_root) = std::fs::canonicalize(root) else {
        return;
    };
    let none = hashsweep::digest::Digests {
        sha256: [0; 32],
        md5: Some([0; 16]),
        sha1: Some([0; 20]),
    };
    for (p, _) in db.missing_under(&[root.to_path_buf()], &|_| false) {
        // Inside the root, whatever `..` and `/` the database wrote.
        assert!(p.starts_with(&real_root), "{p:?}");
        assert!(
            !p.components().any(|c| c == std::path::Component::ParentDir),
            "{p:?}"
        );
        // A file at a claimed path is checked against its claim.
        assert!(
            db.check(&p, &none).is_some(),
            "{p:?} is claimed but not found"
        );
    }
}

/// DCSO Bloom filters: any bytes as a filter (first byte 0), and filters built from the
/// input's lines read back (first byte 1): every value added is found (no false negative).
pub fn bloom(data: &[u8]) {
    use hashsweep::known::bloom::{BloomBuilder, BloomFilter, indices};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let name = std::path::Path::new("fuzz.bloom");
    if mode % 2 == 0 {
        let Ok(f) = BloomFilter::from_vec(name, rest.to_vec()) else {
            return;
        };
        let p = f.params();
        assert!(p.k >= 1 && p.m >= 1 && p.p > 0.0 && p.p < 1.0, "{p:?}");
        for value in rest.chunks(20).take(8) {
            assert!(indices(value, p.k, p.m).all(|i| i < p.m));
            let _ = f.contains(value);
        }
        let _ = f.sha1(&[0x5a; 20]);
        return;
    }
    let Some((&size, values)) = rest.split_first() else {
        return;
    };
    let n = u64::from(size) + 1;
    let p = [0.1, 0.01, 0.001, 1e-6][usize::from(size % 4)];
    let mut b = BloomBuilder::new(n, p);
    let values: Vec<&[u8]> = values.split(|&c| c == b'\n').collect();
    for v in &values {
        b.add(v);
    }
    let f = match BloomFilter::from_vec(name, b.to_bytes()) {
        Ok(f) => f,
        Err(e) => panic!("a filter built by BloomBuilder is refused: {e}"),
    };
    assert_eq!(f.params(), b.params());
    for v in &values {
        assert!(f.contains(v), "{v:?} added but not found");
    }
}

/// IOC lists, each kind given directly (the first byte picks; its bit 3 loads ClamAV `PUA.`):
/// MISP event, restSearch, STIX bundle (and its patterns), MalwareBazaar text and CSV, ClamAV
/// hdb/hsb, and a MISP feed (a `manifest.json`, a NUL, then the one event it may list,
/// `5e6b7c1a-0000-4000-8000-000000000001.json`). `hashset` reaches all but the feed through
/// content recognition; this target reaches each parser whatever recognition would say.
pub fn ioc(data: &[u8]) {
    use hashsweep::known::ioc::{IocKind, IocOptions, IocSet, identify};
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let kinds = [
        IocKind::MispEvent,
        IocKind::MispRestSearch,
        IocKind::Stix2Bundle,
        IocKind::MalwareBazaar,
        IocKind::MalwareBazaarCsv,
        IocKind::Clamav,
        IocKind::MispFeed,
    ];
    let kind = kinds[usize::from(mode & 7) % kinds.len()];
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = if kind == IocKind::MispFeed {
        let (manifest, event) = match body.iter().position(|&b| b == 0) {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, &b""[..]),
        };
        let ok = std::fs::write(dir.path().join("manifest.json"), manifest).is_ok()
            && std::fs::write(
                dir.path().join("5e6b7c1a-0000-4000-8000-000000000001.json"),
                event,
            )
            .is_ok();
        if !ok {
            return;
        }
        dir.path().to_path_buf()
    } else {
        let p = dir.path().join("list");
        if std::fs::write(&p, body).is_err() {
            return;
        }
        p
    };
    let _ = identify(&path);
    let opts = IocOptions {
        clamav_pua: mode & 8 != 0,
        now: std::time::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
    };
    let mut set = IocSet::default();
    if set.add(&path, kind, &opts).is_err() {
        assert!(set.is_empty());
        return;
    }
    assert_eq!(set.lists().len(), 1);
    // One list: every digest it loaded is in the tables once.
    let (a, b, c) = set.counts();
    assert_eq!((a + b + c) as u64, set.lists()[0].entries);
}

/// CIRCL hashlookup's bulk answers (the first byte: asked by SHA-1 or by MD5).
pub fn circl_answer(data: &[u8]) {
    use hashsweep::digest::Algo;
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let algo = if mode % 2 == 0 { Algo::Sha1 } else { Algo::Md5 };
    if let Ok(found) = hashsweep::lookup::circl::parse_bulk(algo, text) {
        for (d, r) in &found {
            // A record is matched only to a digest of the algorithm asked.
            assert_eq!(d.algo(), algo, "{d:?}");
            let _ = r.describe();
        }
    }
}

/// The vendor's file API answers (the first byte picks): `POST /v4/file`, a
/// `GET /v4/file/{data_id}` poll, `GET /v4/apikey`, and a gateway's upload intent answer.
pub fn upload_answer(data: &[u8]) {
    use hashsweep::lookup::upload::{
        Intent, Poll, parse_intent, parse_key_info, parse_poll, parse_upload,
    };
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(id) = parse_upload(body) {
                assert!(!id.is_empty());
            }
        }
        1 => match parse_poll(body, "fuzz-id") {
            // A final answer is final: never "in queue" or "in progress", and it is the
            // answer for the data_id polled.
            Ok(Poll::Done(a)) => {
                assert!(!matches!(a.scan_result_i, 254 | 255), "{a:?}");
                assert_eq!(a.data_id.as_deref(), Some("fuzz-id"));
            }
            Ok(Poll::Pending(_)) => {}
            Err(e) => assert!(e.to_string().len() < 1024, "{e}"),
        },
        2 => {
            let _ = parse_key_info(body);
        }
        _ => match parse_intent(body) {
            Ok(Intent::Wait(id)) => assert!(!id.is_empty()),
            Ok(Intent::Answered(a)) => {
                assert!(a.data_id.as_deref().is_none_or(|id| !id.is_empty()))
            }
            Ok(Intent::Send) | Err(_) => {}
        },
    }
}

/// The gateway's upload requests (the first byte picks): a `POST /v1/upload/intent` body,
/// which reads back as what the endpoint sent; a `filename` header, decoded as the endpoints
/// encode it.
pub fn gateway_upload(data: &[u8]) {
    use hashsweep::gateway::api::{parse_intent, url_decode};
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Some((d, size)) = parse_intent(body) {
            // What the endpoint sends for this file is read as the same file.
            let again = format!(r#"{{"hash":"{}","size":{size}}}"#, d.to_hex());
            assert_eq!(parse_intent(again.as_bytes()), Some((d, size)));
        }
    } else {
        let _ = url_decode(&String::from_utf8_lossy(body));
        let name = String::from_utf8_lossy(body);
        let sent = hashsweep::lookup::upload::url_encode(&name);
        assert_eq!(url_decode(&sent), name, "{sent}");
    }
}
