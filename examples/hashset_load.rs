//! Load hash lists into a `hashsweep::known::hashset::HashSet` and print what was loaded and how long
//! it took. Used by `benches/hashset_load.sh`.
//!
//! Usage: hashset_load [--index-dir DIR] [--probe N] LIST...
//! `--probe N` then looks up N random SHA-256 digests and prints the time per lookup.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use hashsweep::digest::Digest;
use hashsweep::known::hashset::HashSet;

fn main() -> ExitCode {
    let mut index_dir = None;
    let mut probes = 0u64;
    let mut lists = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--index-dir" {
            index_dir = args.next().map(PathBuf::from);
        } else if arg == "--probe" {
            probes = match args.next().and_then(|n| n.to_str()?.parse().ok()) {
                Some(n) => n,
                None => {
                    eprintln!("--probe needs a number");
                    return ExitCode::from(2);
                }
            };
        } else {
            lists.push(PathBuf::from(arg));
        }
    }
    if lists.is_empty() {
        eprintln!("usage: hashset_load [--index-dir DIR] [--probe N] LIST...");
        return ExitCode::from(2);
    }
    let start = Instant::now();
    match HashSet::load(&lists, index_dir.as_deref()) {
        Ok(set) => {
            let elapsed = start.elapsed();
            let (md5, sha1, sha256) = set.counts();
            let reused = set.sources().iter().filter(|s| s.from_index).count();
            println!(
                "loaded {} digests (md5 {md5}, sha1 {sha1}, sha256 {sha256}), {} lines skipped, \
                 {reused}/{} lists from index, in {:.3} s",
                set.len(),
                set.skipped_lines(),
                lists.len(),
                elapsed.as_secs_f64()
            );
            if probes > 0 {
                let mut rng = fastrand::Rng::with_seed(7);
                let start = Instant::now();
                let mut hits = 0u64;
                for _ in 0..probes {
                    let mut b = [0u8; 32];
                    rng.fill(&mut b);
                    hits += u64::from(set.contains(&Digest::Sha256(b)));
                }
                let per = start.elapsed().as_nanos() as f64 / probes as f64;
                println!("{probes} random lookups: {hits} hits, {per:.0} ns per lookup");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hashset_load: {e}");
            ExitCode::FAILURE
        }
    }
}
