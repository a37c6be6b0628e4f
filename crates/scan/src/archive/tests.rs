use super::*;
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;

/// Members as (name, content): names from a small set so that duplicates are common.
fn members() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop::sample::select(vec!["a.exe", "dir/b.txt", "c", "dir/a.exe", "%21!*"]);
    prop::collection::vec(
        (
            name.prop_map(str::to_string),
            prop::collection::vec(any::<u8>(), 0..3000),
        ),
        0..12,
    )
}

fn tar_of(m: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in m {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn zip_of(m: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in m {
        // The writer refuses a name twice: raw entries would do, but keep them apart.
        if w.start_file(name.as_str(), o).is_err() {
            continue;
        }
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Checks one archive read back: one record per entry, in order, each under a distinct
/// path, each member's digest that of its extracted bytes.
fn check(format: Format, data: &[u8], written: &[(String, Vec<u8>)]) -> Result<(), TestCaseError> {
    let opts = ArchiveOptions::default();
    let (inside, out) = read_in_memory(b"/x/a", data, Some(format), &opts)
        .ok_or_else(|| TestCaseError::fail("not read as an archive"))?;
    let complete = matches!(inside, Inside::Container { complete: true, .. });
    prop_assert!(complete, "{:?}", inside);
    prop_assert_eq!(out.len(), written.len());
    let mut seen = std::collections::HashSet::new();
    for (r, (name, content)) in out.iter().zip(written) {
        prop_assert!(seen.insert(r.path.clone()), "{:?} twice", r.path);
        let (_, member) = r.container_member().unwrap();
        let member = member.as_os_str().as_encoded_bytes();
        let escaped = escape(name.as_bytes());
        prop_assert!(member.starts_with(&escaped), "{:?} for {name}", r.path);
        let want: [u8; 32] = Sha256::digest(content).into();
        let got = r
            .digests()
            .and_then(|d| d.get(hashsweep_core::digest::Algo::Sha256));
        prop_assert_eq!(got, Some(hashsweep_core::digest::Digest::Sha256(want)));
        prop_assert_eq!(r.size, Some(content.len() as u64));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Issue 33's invariants for archives: every entry gets exactly one record (duplicate
    /// names too), and a member's digest is the digest of its extracted bytes.
    #[test]
    fn every_member_is_one_record_with_its_contents_digest(m in members()) {
        check(Format::Tar, &tar_of(&m), &m)?;
        let mut unique = Vec::new();
        for e in &m {
            if !unique.iter().any(|(n, _): &(String, Vec<u8>)| *n == e.0) {
                unique.push(e.clone());
            }
        }
        check(Format::Zip, &zip_of(&unique), &unique)?;
    }
}

#[test]
fn names_are_escaped_so_the_separators_stay_unambiguous() {
    assert_eq!(escape(b"a!b%c"), b"a%21b%25c".to_vec());
    assert_eq!(escape(b"*"), b"%2A".to_vec());
    assert_eq!(escape(b"x*"), b"x*".to_vec());
    assert_eq!(escape(b"../../x\xff"), b"../../x\xff".to_vec());
}

#[test]
fn formats_parse_and_sniff() {
    let f = Formats::parse("zip,tar").unwrap();
    assert!(f.contains(Format::Zip) && f.contains(Format::Tar));
    assert!(!f.contains(Format::Gzip));
    assert_eq!(Formats::parse("all").unwrap(), Formats::ALL);
    assert_eq!(f.names(), ["zip", "tar"]);
    assert!(Formats::parse("rar").is_err());
    assert_eq!(Format::sniff(b"PK\x03\x04.."), Some(Format::Zip));
    assert_eq!(Format::sniff(b"BZh9"), Some(Format::Bzip2));
    assert_eq!(Format::sniff(b"BZhx"), None);
    assert_eq!(Format::sniff(b"MZ"), None);
    assert_eq!(inner_name(b"/d/a.exe.gz"), b"a.exe".to_vec());
    assert_eq!(inner_name(b"/d/x.zip!b.tgz"), b"b.tar".to_vec());
}
