//! Load the package databases under a root (default `/`) and print what each held and how long
//! reading it took, best of `--runs N` (default 5). The measurement the user guide's performance
//! chapter (`docs/src/performance.md`, "Package databases") quotes.
//!
//! Usage: packages_load [--runs N] [ROOT]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hashsweep::known::packages::{PackageDb, PackageMode};

fn main() -> ExitCode {
    let mut runs = 5u32;
    let mut root = PathBuf::from("/");
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            match args.next().and_then(|n| n.to_str()?.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => {
                    eprintln!("--runs needs a number above 0");
                    return ExitCode::from(2);
                }
            }
        } else {
            root = PathBuf::from(arg);
        }
    }
    let mut best = Duration::MAX;
    let mut db = None;
    for _ in 0..runs {
        let started = Instant::now();
        match PackageDb::load(&root, PackageMode::Trust) {
            Ok(d) => {
                best = best.min(started.elapsed());
                db = Some(d);
            }
            Err(e) => {
                eprintln!("{}", hashsweep::ErrorChain(&e));
                return ExitCode::from(2);
            }
        }
    }
    let Some(db) = db else {
        return ExitCode::from(2);
    };
    for l in db.loaded() {
        println!(
            "{}: {} ({} packages, {} files, {} without a digest compared), last run {:.1} ms",
            l.manager,
            l.database.display(),
            l.packages,
            l.files,
            l.unchecked,
            l.elapsed.as_secs_f64() * 1e3
        );
    }
    for w in db.warnings() {
        println!("warning: {w}");
    }
    println!(
        "{} distinct paths; best of {runs}: {:.1} ms",
        db.paths(),
        best.as_secs_f64() * 1e3
    );
    ExitCode::SUCCESS
}
