//! The fuzz targets' checks (`fuzz/src/lib.rs`, compiled in here) on every input a fuzz run
//! ever crashed on (`tests/fixtures/fuzz/<target>/`), and on the seed corpora `fuzz/seeds.py`
//! makes: a crash found once stays fixed, and the seeds hold the targets' invariants without
//! `cargo fuzz`.

use std::path::Path;

use hashsweep::scan::archive::Format;

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

/// Run `target`'s check on `data`.
fn check(target: &str, data: &[u8]) {
    let format = match target {
        "archive_zip" => Some(Format::Zip),
        "archive_tar" => Some(Format::Tar),
        "archive_gzip" => Some(Format::Gzip),
        "archive_xz" => Some(Format::Xz),
        "archive_zstd" => Some(Format::Zstd),
        "archive_bzip2" => Some(Format::Bzip2),
        "archive_sevenz" => Some(Format::SevenZ),
        "archive_ar" => Some(Format::Ar),
        "archive_cpio" => Some(Format::Cpio),
        "archive_rpm" => Some(Format::Rpm),
        _ => None,
    };
    match target {
        _ if format.is_some() => checks::archive(data, format),
        "archive_nested" => checks::archive(data, None),
        "hashset" => checks::hashset(data),
        "hashlist_line" => checks::hashlist_line(data),
        "vendor_answer" => checks::vendor_answer(data),
        "gateway_request" => checks::gateway_request(data),
        "report_read" => checks::report_read(data),
        "package_rpm" => checks::package_rpm(data),
        "package_db" => checks::package_db(data),
        "bloom" => checks::bloom(data),
        "ioc" => checks::ioc(data),
        "circl_answer" => checks::circl_answer(data),
        "upload_answer" => checks::upload_answer(data),
        "gateway_upload" => checks::gateway_upload(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// Every input under `dir/<target>/`, through its target's check; how many.
fn run_all(dir: &Path) -> usize {
    let mut n = 0;
    let Ok(targets) = std::fs::read_dir(dir) else {
        return 0;
    };
    for t in targets {
        let t = t.unwrap();
        if !t.file_type().unwrap().is_dir() {
            continue;
        }
        let target = t.file_name().into_string().unwrap();
        for input in std::fs::read_dir(t.path()).unwrap() {
            let input = input.unwrap().path();
            let data = std::fs::read(&input).unwrap();
            let r = std::panic::catch_unwind(|| check(&target, &data));
            assert!(r.is_ok(), "{target} fails on {}", input.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_fuzz_finding_stays_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    run_all(&dir);
}

// Unix only: the seeds are made with python3 (and GNU tar for sparse members).
#[cfg(unix)]
#[test]
fn the_seed_corpora_hold_the_fuzz_targets_checks() {
    let out = tempfile::tempdir().unwrap();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds.py");
    let st = std::process::Command::new("python3")
        .arg(&seeds)
        .arg(out.path())
        .status()
        .expect("python3");
    assert!(st.success());
    let n = run_all(out.path());
    assert!(n >= 50, "only {n} seeds");
}

/// The seeds of the targets added for package databases, Bloom filters, IOC lists and CIRCL
/// are read as what they are (not refused at the first byte): a corpus the parsers refuse
/// would fuzz nothing but their first checks.
#[cfg(unix)]
#[test]
fn the_new_targets_seeds_are_accepted_by_their_parsers() {
    use hashsweep::known::ioc::{IocKind, IocOptions, IocSet};
    use hashsweep::known::packages::{PackageDb, PackageMode, rpm};
    let out = tempfile::tempdir().unwrap();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds.py");
    let st = std::process::Command::new("python3")
        .arg(&seeds)
        .arg(out.path())
        .status()
        .expect("python3");
    assert!(st.success());
    let seed = |t: &str, n: &str| std::fs::read(out.path().join(t).join(n)).unwrap();

    // rpm: every header, and the ndb and Berkeley DB files holding them.
    let mut files = 0;
    for i in 0..5 {
        let data = seed("package_rpm", &format!("header{i}"));
        let h = rpm::Header::parse(&data[1..]).unwrap();
        files += rpm::package_files(&h).unwrap().1.len();
    }
    assert_eq!(
        files,
        3 + 3 + 2 + 1 + 1,
        "installed regular files of the 5 headers"
    );
    assert_eq!(
        rpm::parse_ndb(&seed("package_rpm", "Packages.db")[1..])
            .unwrap()
            .len(),
        3
    );
    for name in ["Packages", "Packages-be"] {
        let blobs = rpm::parse_bdb(&seed("package_rpm", name)[1..]).unwrap();
        assert_eq!(blobs.len(), 3, "{name}");
        for b in blobs {
            rpm::package_files(&rpm::Header::parse(&b).unwrap()).unwrap();
        }
    }

    // dpkg, apk, pacman: laid out as the target lays them out, each claims files.
    for name in ["dpkg", "dpkg-multiarch", "apk", "pacman", "pacman-gz"] {
        let data = seed("package_db", name);
        let root = tempfile::tempdir().unwrap();
        let layout = checks::package_layout(data[0]);
        for (rel, part) in layout
            .iter()
            .zip(data[1..].splitn(layout.len(), |&b| b == 0))
        {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, part).unwrap();
        }
        let db = PackageDb::load(root.path(), PackageMode::Trust).unwrap();
        assert_eq!(db.loaded().len(), 1, "{name}");
        assert!(db.loaded()[0].files >= 2, "{name}: {:?}", db.loaded());
    }

    // IOC lists: each kind loads digests.
    for (name, kind) in [
        ("misp-event.json", IocKind::MispEvent),
        ("misp-rest-attrs.json", IocKind::MispRestSearch),
        ("misp-rest-events.json", IocKind::MispRestSearch),
        ("stix.json", IocKind::Stix2Bundle),
        ("mb-sha256.txt", IocKind::MalwareBazaar),
        ("mb-full.csv", IocKind::MalwareBazaarCsv),
        ("clamav.hdb", IocKind::Clamav),
        ("clamav.hsb", IocKind::Clamav),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, &seed("ioc", name)[1..]).unwrap();
        assert_eq!(hashsweep::known::ioc::identify(&p), Some(kind), "{name}");
        let mut set = IocSet::default();
        set.add(&p, kind, &IocOptions::default()).unwrap();
        assert!(set.lists()[0].entries >= 1, "{name}");
    }

    // CIRCL: both records found by SHA-1.
    let circl = seed("circl_answer", "sha1");
    let found = hashsweep::lookup::circl::parse_bulk(
        hashsweep::digest::Algo::Sha1,
        std::str::from_utf8(&circl[1..]).unwrap(),
    )
    .unwrap();
    assert_eq!(found.len(), 2);

    // The Bloom filter written by seeds.py holds what it was made of.
    let f = hashsweep::known::bloom::BloomFilter::from_vec(
        Path::new("f"),
        seed("bloom", "filter")[1..].to_vec(),
    )
    .unwrap();
    let sha1 = hashsweep::digest::decode_hex::<20>(b"3395856ce81f2b7382dee72602f798b642f14140");
    assert!(f.sha1(&sha1.unwrap()));
}
