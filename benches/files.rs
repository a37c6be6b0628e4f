//! Per-file costs (files/s) on a warm page cache.
//!
//! * `scan_5000_files/threads=N`: the whole offline pipeline (`pipeline::scan`, lookup `None`)
//!   over a temp tree of 5 000 files of 0–16 KiB in 50 directories: walk, hash, collect, sort.
//!   The walker gets 2 threads, as the CLI gives it on this machine.
//! * `walk_5000_files`: the walk stage alone on the same tree (events drained, nothing opened),
//!   to split the pipeline's time between walking and hashing.
//! * `hash_path_small/*`: `Hasher::hash_path` over 1 000 of those files with one reused
//!   `Hasher`, against `std::fs::read` + `Sha256::digest` of the same files as a floor; and
//!   single files of 0 B, 4 KiB and 16 KiB (the fixed cost per file: open, 2×fstat, reads).
//!
//! Run: `cargo bench --bench files` (about 1 minute).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hashsweep::progress::NoProgress;
use hashsweep::scan::hash::{FileStatus, HashOptions, Hasher};
use hashsweep::scan::walk::{WalkOptions, walk};
use hashsweep::scan::{ScanConfig, scan};
use sha2::{Digest, Sha256};

const FILES: usize = 5_000;
const DIRS: usize = 50;
const MAX_SIZE: usize = 16 << 10;
/// Files per iteration of the `hash_path_small/1000_files_*` benchmarks.
const SMALL_SET: usize = 1_000;

/// Cheap deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `FILES` files of 0..=16 KiB with distinct contents, spread over `DIRS` directories.
/// Returns the file paths in creation order and the total size.
fn make_tree(root: &Path) -> (Vec<PathBuf>, u64) {
    let mut rng = Rng(42);
    let mut block = vec![0u8; MAX_SIZE];
    for chunk in block.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let mut paths = Vec::with_capacity(FILES);
    let mut total = 0u64;
    for d in 0..DIRS {
        std::fs::create_dir_all(root.join(format!("d{d:03}"))).expect("mkdir");
    }
    for i in 0..FILES {
        let size = (rng.next() % (MAX_SIZE as u64 + 1)) as usize;
        let mut data = block[..size].to_vec();
        // Make every non-trivial file distinct, as real trees mostly are.
        let tag = (i as u64).to_le_bytes();
        let n = tag.len().min(size);
        data[..n].copy_from_slice(&tag[..n]);
        let p = root.join(format!("d{:03}/f{i:05}.bin", i % DIRS));
        std::fs::write(&p, &data).expect("write");
        total += size as u64;
        paths.push(p);
    }
    (paths, total)
}

fn scan_config(root: &Path, threads: usize) -> ScanConfig {
    ScanConfig {
        roots: vec![root.to_path_buf()],
        walk: WalkOptions {
            threads: 2,
            ..WalkOptions::default()
        },
        hash: HashOptions::default(),
        threads,
        io: Default::default(),
        lookup: None,
        cache: None,
        local: None,
        budget: Default::default(),
        processes: None,
        packages: None,
        rules: None,
    }
}

fn bench_files(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("tree");
    let (paths, total) = make_tree(&root);
    eprintln!(
        "tree: {FILES} files, {total} bytes ({:.1} KiB mean) under {}",
        total as f64 / FILES as f64 / 1024.0,
        root.display()
    );
    let stop = Arc::new(AtomicBool::new(false));

    let mut g = c.benchmark_group("scan_5000_files");
    g.throughput(Throughput::Elements(FILES as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for threads in [1usize, 2] {
        let cfg = scan_config(&root, threads);
        g.bench_with_input(BenchmarkId::new("threads", threads), &cfg, |b, cfg| {
            b.iter(|| {
                let out = scan(cfg, None, &NoProgress, &stop).expect("scan");
                assert_eq!(out.files.len(), FILES);
                out
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("walk_5000_files");
    g.throughput(Throughput::Elements(FILES as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let wopts = WalkOptions {
        threads: 2,
        ..WalkOptions::default()
    };
    g.bench_function("walk_threads=2", |b| {
        b.iter(|| {
            let n = std::sync::atomic::AtomicUsize::new(0);
            let sink = |_| {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            };
            walk(std::slice::from_ref(&root), &wopts, &sink, &stop).expect("walk");
            assert_eq!(n.into_inner(), FILES);
        })
    });
    g.finish();

    let set = &paths[..SMALL_SET];
    let set_bytes: u64 = set
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut g = c.benchmark_group("hash_path_small");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(SMALL_SET as u64));
    let mut hasher = Hasher::new(HashOptions::default());
    g.bench_function(format!("{SMALL_SET}_files_hash_path"), |b| {
        b.iter(|| {
            for p in set {
                let r = hasher.hash_path(black_box(p.clone()));
                debug_assert!(matches!(r.status, FileStatus::Hashed { .. }));
                black_box(r);
            }
        })
    });
    g.bench_function(format!("{SMALL_SET}_files_fs_read_sha256"), |b| {
        b.iter(|| {
            for p in set {
                let data = std::fs::read(black_box(p)).expect("read");
                black_box(Sha256::digest(&data));
            }
        })
    });
    eprintln!(
        "hash_path_small: {SMALL_SET} files, {set_bytes} bytes ({:.1} KiB mean)",
        set_bytes as f64 / SMALL_SET as f64 / 1024.0
    );

    g.throughput(Throughput::Elements(1));
    let single = dir.path().join("single");
    std::fs::create_dir(&single).expect("mkdir");
    for (label, size) in [("0B", 0usize), ("4KiB", 4 << 10), ("16KiB", 16 << 10)] {
        let p = single.join(label);
        std::fs::write(&p, vec![0x5a; size]).expect("write");
        g.bench_with_input(BenchmarkId::new("one_file", label), &p, |b, p| {
            b.iter(|| hasher.hash_path(black_box(p.clone())))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_files);
criterion_main!(benches);
