//! CIRCL-scale Bloom filter checks (`--known-good FILE.bloom`): build a synthetic DCSO filter
//! of 10 000 000 SHA-1s at CIRCL's p = 1e-4, write it, open it as a scan does (mapped, header
//! checked), then check 1 000 000 SHA-1s as a scan does (upper-case hex, k FNV-1 indices):
//! half inserted, half not. Prints the time to open, the check rate, and the false-positive
//! rate measured on the 500 000 absent digests against the rate the header predicts.
//!
//! Run: `cargo bench --bench bloom` (about half a minute after the build; the filter is
//! 24 MB in a temp dir, in the page cache when checked). `-- N CHECKS` changes the sizes.

use std::hint::black_box;
use std::time::Instant;

use hashsweep::known::bloom::{BloomBuilder, BloomFilter};
use sha1::{Digest, Sha1};

fn sha1(tag: u8, i: u64) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update([tag]);
    h.update(i.to_le_bytes());
    h.finalize().into()
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let args: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(10_000_000);
    let checks = args.get(1).copied().unwrap_or(1_000_000);
    let p = 1e-4;

    let t = Instant::now();
    let mut b = BloomBuilder::new(n, p);
    for i in 0..n {
        b.add_sha1(&sha1(0, i));
    }
    let params = b.params();
    println!(
        "built: n={n} p={p} -> m={} bits ({:.1} MiB), k={}, N={} in {:.2?}",
        params.m,
        params.m as f64 / 8.0 / 1048576.0,
        params.k,
        params.inserted,
        t.elapsed()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("synthetic.bloom");
    std::fs::write(&path, b.to_bytes()).expect("write filter");
    drop(b);

    let t = Instant::now();
    let f = BloomFilter::open(&path).expect("open filter");
    let opened = t.elapsed();
    println!("opened (mmap, header checked) in {opened:.2?}");

    let half = checks / 2;
    let queries: Vec<[u8; 20]> = (0..half)
        .map(|i| sha1(0, i * (n / half.max(1)).max(1) % n))
        .chain((0..checks - half).map(|i| sha1(1, i)))
        .collect();
    // One pass to page the filter in as a long scan would have it, then the measured pass.
    let warm = queries.iter().filter(|q| f.sha1(q)).count();
    let t = Instant::now();
    let hits = queries.iter().filter(|q| f.sha1(black_box(q))).count();
    let took = t.elapsed();
    assert_eq!(hits, warm);
    let present = queries[..half as usize]
        .iter()
        .filter(|q| f.sha1(q))
        .count();
    assert_eq!(present as u64, half, "an inserted digest was missed");
    let fp = hits - present;
    println!(
        "checked {checks} SHA-1s in {took:.2?}: {:.2} M checks/s ({:.0} ns each)",
        checks as f64 / took.as_secs_f64() / 1e6,
        took.as_nanos() as f64 / checks as f64
    );
    println!(
        "false positives: {fp} of {} absent = {:.6} (header predicts {:.6})",
        checks - half,
        fp as f64 / (checks - half) as f64,
        f.params().expected_rate()
    );
}
