//! `mock-api`: serve the MetaDefender stand-in ([`hashsweep_mock::MockServer`]) until killed,
//! for benchmarks and demos. With `METADEFENDER_APIKEY` set, requests with another key get 401.
//! Prints `mock MetaDefender API listening on http://ADDR` on stdout once it accepts requests.
//! It knows the EICAR test file (infected); `--verdict HASH=RESULT` teaches it more.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hashsweep_mock::MockServer;

/// The variable the key is read from, the same one hashsweep reads.
const APIKEY_ENV: &str = "METADEFENDER_APIKEY";

/// What `--help` ends with: which digests the stand-in knows, and how to teach it more.
fn knows() -> String {
    use hashsweep_mock::{EICAR_MD5, EICAR_SHA1, EICAR_SHA256};
    format!(
        "\
What it knows:
  The EICAR test file is infected (scan_result_i 1, 31 engines, threat EICAR-Test-File),
  by any of its digests:
    SHA-256 {EICAR_SHA256}
    SHA-1   {EICAR_SHA1}
    MD5     {EICAR_MD5}
  Every other hash is unknown (scan_result_i 5, total_detected_avs -1).

Teaching it more:
  --verdict HASH=RESULT[/DETECTIONS] (repeatable): RESULT is the vendor's scan_result_i
  (0 clean, 1 infected, 2 suspicious, ...), DETECTIONS its total_detected_avs (default: 0
  when clean, else 1). From Rust: MockServer::set(hash, scan_result_i, total_detected_avs).

Example:
  mock-api --verdict $(sha256sum sample.exe | cut -c1-64)=1/12
  hashsweep scan --api-url http://127.0.0.1:8738 ."
    )
}

/// Serve a local stand-in for MetaDefender's POST /v4/hash (for tests, demos and benchmarks)
#[derive(Debug, Parser)]
#[command(name = "mock-api", version, after_help = knows())]
struct Args {
    /// Address to listen on (loopback only)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8738")]
    listen: String,
    /// Delay added to every answer
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// The daily budget in hashes; past it requests get 429 with code 429000
    #[arg(long, value_name = "N", default_value_t = hashsweep_mock::DEFAULT_DAILY_BUDGET)]
    daily_budget: u64,
    /// Answer HASH (hex) with scan_result_i RESULT, DETECTIONS engines (repeatable)
    #[arg(long, value_name = "HASH=RESULT[/DETECTIONS]", value_parser = parse_verdict)]
    verdict: Vec<Verdict>,
}

/// One `--verdict`.
#[derive(Debug, Clone)]
struct Verdict {
    hash: String,
    scan_result_i: i64,
    total_detected_avs: i64,
}

fn parse_verdict(s: &str) -> Result<Verdict, String> {
    let usage = || format!("{s:?}: expected HASH=RESULT[/DETECTIONS], e.g. 44d8...=1/12");
    let (hash, answer) = s.split_once('=').ok_or_else(usage)?;
    if ![32, 40, 64].contains(&hash.len()) || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{hash:?} is not an MD5, SHA-1 or SHA-256 in hex"));
    }
    let (result, detections) = match answer.split_once('/') {
        Some((r, d)) => (r, Some(d)),
        None => (answer, None),
    };
    let scan_result_i: i64 = result.parse().map_err(|_| usage())?;
    let total_detected_avs = match detections {
        Some(d) => d.parse().map_err(|_| usage())?,
        None => i64::from(scan_result_i != 0),
    };
    Ok(Verdict {
        hash: hash.to_string(),
        scan_result_i,
        total_detected_avs,
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 10m)"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let key = std::env::var(APIKEY_ENV).ok();
    let server = match MockServer::start_on(&args.listen, key.as_deref(), args.latency) {
        Ok(s) => {
            s.set_daily_budget(args.daily_budget);
            for v in &args.verdict {
                s.set(&v.hash, v.scan_result_i, v.total_detected_avs);
            }
            s
        }
        Err(e) => {
            eprintln!("mock-api: error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "mock MetaDefender API listening on {}", server.url())
        .and_then(|()| out.flush())
    {
        eprintln!("mock-api: error: cannot write the address to stdout: {e}");
        return ExitCode::from(2);
    }
    drop(out);
    loop {
        std::thread::park();
    }
}
