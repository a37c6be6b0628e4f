//! Hashing throughput (MB/s).
//!
//! * `digest_mem/<algo>/<block>`: the digest crates alone on an in-memory buffer, fed in
//!   `update` calls of 64 KiB or 1 MiB (the hash stage's `SUB_BLOCK` and `BLOCK_SIZE`).
//!   `all3` feeds SHA-256, MD5 and SHA-1 the same chunk in turn, as one read does with
//!   `--md5 --sha1`; at 1 MiB the chunk no longer stays in L2 between the three passes.
//! * `hash_path_64MiB/<algos>`: `Hasher::hash_path` on a 64 MiB temp file that is in the page
//!   cache (open, fstat, 1 MiB reads, digests, fstat): the per-core ceiling of the hash stage.
//! * `read_sha256_64MiB/<buffer>`: the same file read with plain `read` calls into a buffer of
//!   64 KiB … 1 MiB, each chunk hashed with SHA-256 right after it is read: shows what the
//!   hash stage's `BLOCK_SIZE` (1 MiB) costs against buffers that stay in L2 with the kernel's
//!   copy.
//!
//! Run: `cargo bench --bench hashing` (about 1.5 minutes). Compare `digest_mem/sha256` with
//! `openssl speed -bytes 1048576 sha256` to see whether SHA-NI is in use.

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use hashsweep::scan::hash::{FileStatus, HashOptions, Hasher};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes hashed per iteration of the in-memory benchmarks (larger than the blocks, so every
/// block size sees several `update` calls, small enough to keep an iteration short).
const MEM_BUF: usize = 8 << 20;
/// Size of the file for `hash_path`.
const FILE_SIZE: usize = 64 << 20;
const BLOCKS: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];

/// Deterministic incompressible-looking bytes (xorshift64*), no extra dependency.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        v.extend_from_slice(&s.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn hash_chunks<D: Digest>(data: &[u8], block: usize) -> sha2::digest::Output<D> {
    let mut h = D::new();
    for c in data.chunks(block) {
        h.update(c);
    }
    h.finalize()
}

fn all3_chunks(data: &[u8], block: usize) -> ([u8; 32], [u8; 16], [u8; 20]) {
    let (mut a, mut b, mut c) = (Sha256::new(), Md5::new(), Sha1::new());
    for chunk in data.chunks(block) {
        a.update(chunk);
        b.update(chunk);
        c.update(chunk);
    }
    (
        a.finalize().into(),
        b.finalize().into(),
        c.finalize().into(),
    )
}

fn digest_mem(c: &mut Criterion) {
    let data = pseudo_random(MEM_BUF);
    let mut g = c.benchmark_group("digest_mem");
    g.throughput(Throughput::Bytes(MEM_BUF as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sampling_mode(SamplingMode::Flat);
    for (block, label) in BLOCKS {
        g.bench_with_input(BenchmarkId::new("sha256", label), &block, |b, &bs| {
            b.iter(|| hash_chunks::<Sha256>(black_box(&data), bs))
        });
        g.bench_with_input(BenchmarkId::new("md5", label), &block, |b, &bs| {
            b.iter(|| hash_chunks::<Md5>(black_box(&data), bs))
        });
        g.bench_with_input(BenchmarkId::new("sha1", label), &block, |b, &bs| {
            b.iter(|| hash_chunks::<Sha1>(black_box(&data), bs))
        });
        g.bench_with_input(BenchmarkId::new("all3", label), &block, |b, &bs| {
            b.iter(|| all3_chunks(black_box(&data), bs))
        });
    }
    g.finish();
}

fn hash_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    {
        let mut f = std::fs::File::create(&path).expect("create temp file");
        f.write_all(&pseudo_random(FILE_SIZE))
            .expect("write temp file");
    }
    let mut g = c.benchmark_group("hash_path_64MiB");
    g.throughput(Throughput::Bytes(FILE_SIZE as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .sampling_mode(SamplingMode::Flat);
    for (name, md5, sha1) in [("sha256", false, false), ("sha256+md5+sha1", true, true)] {
        let mut hasher = Hasher::new(HashOptions {
            md5,
            sha1,
            max_size: None,
            ..HashOptions::default()
        });
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = hasher.hash_path(black_box(path.clone()));
                assert!(matches!(r.status, FileStatus::Hashed { .. }), "{r:?}");
                r
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("read_sha256_64MiB");
    g.throughput(Throughput::Bytes(FILE_SIZE as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .sampling_mode(SamplingMode::Flat);
    for (size, label) in [
        (64usize << 10, "64KiB"),
        (256 << 10, "256KiB"),
        (1 << 20, "1MiB"),
    ] {
        let mut buf = vec![0u8; size];
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut f = std::fs::File::open(&path).expect("open");
                let mut h = Sha256::new();
                loop {
                    let n = f.read(&mut buf).expect("read");
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.finalize()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, digest_mem, hash_path);
criterion_main!(benches);
