use super::*;
use crate::hashed::ArchiveOptions;
use hashsweep_core::digest::hex_lower;

/// Streams are told apart by the `:` Windows allows in no file name; elsewhere a `:` is
/// just a character.
#[test]
fn stream_records_are_not_counted_as_walked_paths() {
    let at = |p: &str| FileResult {
        archive: None,
        path: Path::new(p).into(),
        size: None,
        status: FileStatus::Skipped(STREAM_NOT_READ.into()),
    };
    let stream = at("dir/f.txt:payload");
    assert_eq!(is_stream(&stream), cfg!(windows));
    assert_eq!(
        is_stream(&at(
            &unlisted_streams(Path::new("dir/f.txt")).to_string_lossy()
        )),
        cfg!(windows)
    );
    assert!(!is_stream(&at("dir/f.txt")));
}

fn hash_bytes(data: &[u8], md5: bool, sha1: bool) -> FileResult {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, data).unwrap();
    Hasher::new(HashOptions {
        md5,
        sha1,
        ..Default::default()
    })
    .hash_path(p)
}

#[test]
fn known_vectors_for_all_three() {
    let r = hash_bytes(b"abc", true, true);
    let d = r.digests().unwrap();
    assert_eq!(
        hex_lower(&d.sha256),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex_lower(&d.md5.unwrap()),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(
        hex_lower(&d.sha1.unwrap()),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(r.size, Some(3));
}

/// A stop is never `Interrupted` to the decompressor reading a tee (flate2 retries on that
/// kind, forever), while the tee keeps it as `Interrupted` for the file's result.
#[test]
fn a_stopped_tee_tells_the_decoder_a_plain_error_and_keeps_the_interruption() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, vec![1u8; 4096]).unwrap();
    let file = File::open(&p).unwrap();
    let gate = IoGate::single();
    let stop = AtomicBool::new(true);
    let mut tee = TeeFile {
        file: &file,
        gate: &gate,
        stop: &stop,
        nowait: true,
        sum: Sum::new(&HashOptions::default()),
        stat_size: 4096,
        total: 0,
        reads: 0,
        failed: None,
    };
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        let e = io::Read::read(&mut tee, &mut buf).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::Interrupted);
    }
    assert_eq!(
        tee.failed.map(|e| e.kind()),
        Some(io::ErrorKind::Interrupted)
    );
}

/// Hard links met by several workers at once are read by one of them: the others wait for
/// its digests (they used to read the inode too when the first read was still under way).
#[test]
fn links_met_at_once_by_several_workers_are_read_once() {
    let d = tempfile::tempdir().unwrap();
    let first = d.path().join("original");
    std::fs::write(&first, vec![7u8; 8 * BLOCK_SIZE]).unwrap();
    let paths: Vec<PathBuf> = (0..6)
        .map(|i| {
            let p = d.path().join(format!("link{i}"));
            std::fs::hard_link(&first, &p).unwrap();
            p
        })
        .collect();
    let links: Arc<LinkMap> = Arc::default();
    let start = Arc::new(std::sync::Barrier::new(paths.len()));
    let origins: Vec<Origin> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                let (links, start) = (Arc::clone(&links), Arc::clone(&start));
                s.spawn(move || {
                    let mut h = Hasher::new(HashOptions::default()).with_links(links);
                    start.wait();
                    match h.hash_path(p.clone()).status {
                        FileStatus::Hashed { origin, .. } => origin,
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let read = origins.iter().filter(|o| **o == Origin::Read).count();
    assert_eq!(read, 1, "{origins:?}");
    assert!(
        lock(&links.map)
            .values()
            .all(|v| matches!(v, LinkState::Read(..)))
    );
}

#[test]
fn multi_block_file_matches_single_shot() {
    let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 12345))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let r = hash_bytes(&data, true, false);
    let d = r.digests().unwrap();
    assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    assert_eq!(d.md5.unwrap(), <[u8; 16]>::from(Md5::digest(&data)));
    assert!(d.sha1.is_none());
}

#[test]
fn over_max_size_is_skipped_and_missing_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("big");
    std::fs::write(&p, vec![0u8; 100]).unwrap();
    let r = Hasher::new(HashOptions {
        max_size: Some(99),
        ..Default::default()
    })
    .hash_path(p);
    assert!(
        matches!(r.status, FileStatus::Skipped(ref s) if s.contains("max-size")),
        "{r:?}"
    );
    let r = Hasher::new(HashOptions::default()).hash_path(d.path().join("gone"));
    assert!(
        matches!(r.status, FileStatus::Error(ref s) if s.starts_with("cannot open")),
        "{r:?}"
    );
}

/// A guarded read stops at the size stat gave, and at its deadline (then the file is
/// skipped, not hashed); unguarded, the same file is read to its end.
#[test]
fn guarded_reads_stop_at_the_stat_size_and_the_deadline() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("f");
    std::fs::write(&p, vec![7u8; 3 * BLOCK_SIZE]).unwrap();
    let mut h = Hasher::new(HashOptions::default());
    let r = h.hash_guarded(p.clone());
    assert_eq!(r.size, Some(3 * BLOCK_SIZE as u64), "{r:?}");
    assert_eq!(
        r.digests().map(|d| d.sha256),
        h.hash_path(p.clone()).digests().map(|d| d.sha256)
    );
    h.guard_deadline = std::time::Duration::ZERO;
    let r = h.hash_guarded(p.clone());
    assert!(
        matches!(&r.status, FileStatus::Skipped(s) if s.contains("deadline")),
        "{r:?}"
    );
    assert!(h.hash_path(p).digests().is_some());
}

// Unix only: FIFOs.
#[cfg(unix)]
#[test]
fn fifo_swapped_in_after_walk_is_not_read() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("pipe");
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = Hasher::new(HashOptions::default()).hash_path(p);
    assert!(matches!(r.status, FileStatus::Skipped(_)), "{r:?}");
}

/// Bytes this thread has read through `read` calls so far (page cache hits too).
#[cfg(target_os = "linux")]
fn thread_rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// With `--archives`, a tar.gz is read once for its own digest and its members: the
/// bytes read are about the file's size, not twice it; both digests are right.
#[cfg(target_os = "linux")]
#[test]
fn a_compressed_tar_is_read_once_for_its_digest_and_its_members() {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let content: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "data.bin", &content[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    let file = gz.finish().unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.tar.gz");
    std::fs::write(&p, &file).unwrap();
    let mut hasher = Hasher::new(HashOptions {
        archives: Some(ArchiveOptions::default()),
        ..Default::default()
    });
    let before = thread_rchar();
    let res = hasher.hash_path(p);
    let mut out = Vec::new();
    hasher.push_with_members(res, &mut out);
    let read = thread_rchar() - before;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0].digests().map(|d| d.sha256),
        Some(<[u8; 32]>::from(Sha256::digest(&file)))
    );
    assert_eq!(
        out[1].digests().map(|d| d.sha256),
        Some(<[u8; 32]>::from(Sha256::digest(&content)))
    );
    assert!(
        read < file.len() as u64 * 5 / 4,
        "{read} bytes read for a file of {}",
        file.len()
    );
}

/// The second read of a zip (for its members) is billed to `--max-io-rate` like the first:
/// 3 MiB read twice at 8 MiB/s (1 MiB of burst) take at least 5/8 of a second.
#[test]
fn a_zip_read_again_for_its_members_goes_through_the_rate_cap() {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let content: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.zip");
    let mut z = zip::ZipWriter::new(File::create(&p).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("data.bin", stored).unwrap();
    io::Write::write_all(&mut z, &content).unwrap();
    z.finish().unwrap();
    let gate = IoGate::new(
        1,
        crate::io::IoOptions {
            depth: None,
            max_rate: Some(8 << 20),
        },
    );
    let mut hasher = Hasher::new(HashOptions {
        archives: Some(ArchiveOptions::default()),
        ..Default::default()
    })
    .with_gate(Arc::new(gate));
    let started = std::time::Instant::now();
    let res = hasher.hash_path(p);
    let mut out = Vec::new();
    hasher.push_with_members(res, &mut out);
    let took = started.elapsed();
    assert_eq!(
        out.get(1).and_then(|m| m.digests()).map(|d| d.sha256),
        Some(<[u8; 32]>::from(Sha256::digest(&content)))
    );
    assert!(took >= std::time::Duration::from_millis(600), "{took:?}");
}
