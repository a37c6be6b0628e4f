//! `mock-api`: serve the MetaDefender stand-in ([`hashsweep_mock::MockServer`]) until killed,
//! for benchmarks and demos. With `METADEFENDER_APIKEY` set, requests with another key get 401.
//! Prints `mock MetaDefender API listening on http://ADDR` on stdout once it accepts requests.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hashsweep_mock::MockServer;

/// The variable the key is read from, the same one hashsweep reads.
const APIKEY_ENV: &str = "METADEFENDER_APIKEY";

/// Serve a local stand-in for MetaDefender's POST /v4/hash (for tests, demos and benchmarks)
#[derive(Debug, Parser)]
#[command(name = "mock-api", version)]
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
