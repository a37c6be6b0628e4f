//! `hashsweep hash`: sha256sum-compatible lines (md5sum/sha1sum with --md5/--sha1).

use super::*;
use hashsweep::scan::archive::Inside;

/// `hashsweep hash`: sha256sum-compatible lines (md5sum/sha1sum with --md5/--sha1).
pub fn run_hash(a: HashArgs) -> Result<u8, Error> {
    let algo = if a.md5 {
        Algo::Md5
    } else if a.sha1 {
        Algo::Sha1
    } else {
        Algo::Sha256
    };
    let cfg = ScanConfig {
        roots: a.paths.clone(),
        walk: config::walk_options(&a.walk),
        hash: config::hash_options(&a.walk, a.md5, a.sha1),
        threads: a.walk.threads.unwrap_or_else(config::default_threads),
        io: config::io_options(&a.walk),
        lookup: None,
        cache: None,
        local: None,
        budget: BudgetOptions::default(),
        processes: None,
        packages: None,
        rules: None,
    };
    let stop = Interrupt::install()?;
    let out = scan(&cfg, None, &NoProgress, &stop.flag)?;
    let mut stdout = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut incomplete = false;
    // A reader that went away (`| head`) stops the output, not the status.
    let mut reader_gone = false;
    for f in &out.files {
        let shown = || escape_path(&f.path);
        match &f.status {
            FileStatus::Hashed {
                digests, warning, ..
            } => {
                if let Some(d) = digests.get(algo)
                    && !reader_gone
                {
                    reader_gone = tolerate_broken_pipe(
                        stdout
                            .write_all(&sum_line(&d.to_hex(), &f.path))
                            .map_err(Error::Write),
                    )?;
                }
                if let Some(w) = warning {
                    incomplete = true;
                    eprintln!("hashsweep: {}: {w}", shown());
                }
                // With --archives: what could not be read inside (and archives left closed).
                match f.archive.as_deref() {
                    Some(Inside::Container { complete, note, .. }) => {
                        incomplete |= !complete;
                        if let Some(n) = note {
                            eprintln!("hashsweep: {}: {n}", shown());
                        }
                    }
                    Some(Inside::Member { note: Some(n), .. }) => {
                        eprintln!("hashsweep: {}: {n}", shown());
                    }
                    _ => {}
                }
            }
            FileStatus::Skipped(why) => {
                // A member left unread (a limit, encrypted) leaves its archive incomplete.
                incomplete |= f.archive.is_some();
                eprintln!("hashsweep: {}: skipped: {why}", shown());
            }
            FileStatus::Interrupted => {}
            FileStatus::Error(e) => {
                incomplete = true;
                eprintln!("hashsweep: {}: {e}", shown());
            }
        }
    }
    if !reader_gone {
        tolerate_broken_pipe(stdout.flush().map_err(Error::Write))?;
    }
    Ok(finish_status(&stop, if incomplete { 2 } else { 0 }))
}
