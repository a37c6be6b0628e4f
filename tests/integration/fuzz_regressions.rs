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
