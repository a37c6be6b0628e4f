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
