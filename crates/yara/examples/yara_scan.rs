//! A tiny command line over the crate, for measuring what yara-x adds to a release binary and
//! for trying rules by hand: `yara_scan RULES [CACHE_DIR] -- FILE...` prints the load summary
//! and one ndjson line per matching file (`{"path", "rules": [...]}`, `yr`'s shape).

use std::io::Read as _;
use std::path::PathBuf;

use hashsweep_yara::{DEFAULT_MAX_SIZE, FileGlobals, Matcher, Outcome, load_cached};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args
        .iter()
        .position(|a| a == "--")
        .ok_or("usage: RULES [CACHE] -- FILE...")?;
    let rules = PathBuf::from(args.first().ok_or("no RULES")?);
    let cache = args.get(1).filter(|_| split == 2).map(PathBuf::from);
    let loaded = load_cached(&[rules], cache.as_deref())?;
    eprintln!(
        "{} rules from {} files in {:?} ({:?})",
        loaded.rule_count, loaded.files, loaded.elapsed, loaded.cache
    );
    let mut m = Matcher::new(&loaded.rules, DEFAULT_MAX_SIZE, 10);
    let mut buf = vec![0u8; 1 << 20];
    for path in &args[split + 1..] {
        let name = path.rsplit('/').next().unwrap_or(path);
        m.begin(&FileGlobals {
            filename: name,
            ..FileGlobals::default()
        });
        let mut f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            m.feed(&buf[..n]);
        }
        match m.finish() {
            Outcome::Matched { rules } => {
                println!("{}", serde_json::json!({"path": path, "rules": rules}));
            }
            Outcome::NoMatch => {}
            Outcome::NotMatched { reason } => eprintln!("{path}: not matched: {reason:?}"),
        }
    }
    Ok(())
}
