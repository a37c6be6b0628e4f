//! The `hashsweep` binary: parse flags, dispatch, map errors to exit status 2.

mod cli;
mod commands;

use std::process::ExitCode;

use cli::Command;

/// musl's own allocator serialises the hash workers' allocations; mimalloc keeps the static
/// binary as fast as the glibc one (the guide's performance chapter, docs/src/performance.md, has the figures).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// musl's `memcpy` and `memcmp` are slow on short lengths; this crate's replace them in the
/// static binary (its doc comment has the figures).
#[cfg(target_env = "musl")]
use hashsweep_fastmem as _;

fn main() -> ExitCode {
    let (cli, common) = cli::parse();
    #[cfg(feature = "gateway")]
    let serving = matches!(cli.command, Command::Serve(_));
    #[cfg(not(feature = "gateway"))]
    let serving = false;
    commands::set_ui(common.ui, !serving);
    let result = match cli.command {
        Command::Scan(a) => commands::run_scan(*a),
        Command::Hash(a) => commands::run_hash(a),
        Command::Lookup(a) => commands::run_lookup(a),
        Command::Diff(a) => commands::run_diff(a),
        #[cfg(feature = "gateway")]
        Command::Serve(a) => commands::run_serve(*a),
        Command::Check(a) => commands::run_check(a),
        #[cfg(feature = "gateway")]
        Command::Prevalence(a) => commands::run_prevalence(a),
        Command::Config(a) => commands::run_config(a, common.config.as_deref()),
        Command::Completions(a) => commands::run_completions(a),
        Command::Man(a) => commands::run_man(a),
        Command::YaraCheck(a) => commands::run_yara_check(a),
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
