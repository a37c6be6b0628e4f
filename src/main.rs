//! The `hashsweep` binary: parse flags, dispatch, map errors to exit status 2.

use std::process::ExitCode;

use clap::Parser;
use hashsweep::app;
use hashsweep::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(a) => app::run_scan(*a),
        Command::Hash(a) => app::run_hash(a),
        Command::Lookup(a) => app::run_lookup(a),
        Command::Diff(a) => app::run_diff(a),
        Command::Serve(a) => app::run_serve(*a),
        Command::MockApi(a) => app::run_mock(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(hashsweep::Error::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hashsweep: error: {:#}", anyhow::Error::from(e));
            ExitCode::from(2)
        }
    }
}
