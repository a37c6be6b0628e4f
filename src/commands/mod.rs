//! Command runners, one file per subcommand: each takes its parsed flags, runs the library and
//! writes the report, and returns the process exit status (0, 1 or 2; see `cli`). What they
//! share (the key, the client, the report file, the exit status after a signal) is here.

mod diff;
mod hash;
mod interrupt;
mod lookup;
mod scan;
mod serve;
mod shell;

pub use diff::run_diff;
pub use hash::run_hash;
pub use lookup::run_lookup;
pub use scan::run_scan;
pub use serve::run_serve;
pub use shell::{run_completions, run_man};

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashsweep::audit::{Baseline, diff};
use hashsweep::cache::{Cache, DetailsUse};
use hashsweep::digest::{Algo, hex_lower};
use hashsweep::known::LocalSets;
use hashsweep::known::hashlist::{ListedHash, parse_line, sum_line};
use hashsweep::known::hashset::HashSet;
use hashsweep::lookup::{ApiKey, HttpClient, ReputationClient, lookup_digests};
use hashsweep::progress::{BarProgress, NoProgress, Progress};
use hashsweep::report::read::BadRecords;
use hashsweep::report::{
    Change, ChangeCounts, Columns, DiffChange, Format, Record, Removed, Reporter, Summary,
    escape_for_line, reporter,
};
use hashsweep::scan::hash::FileStatus;
use hashsweep::scan::plan::BudgetOptions;
use hashsweep::scan::walk::{SkipRule, SpecialKind};
use hashsweep::scan::{ScanConfig, outcome_fields, scan};
use hashsweep::{Error, ErrorChain};

use crate::cli::config;
use crate::cli::{
    ApiArgs, CacheArgs, DiffArgs, HashArgs, LookupArgs, OutputArgs, ScanArgs, ServeArgs,
};
use interrupt::Interrupt;

/// The environment variable holding the API key.
pub const APIKEY_ENV: &str = "METADEFENDER_APIKEY";

fn load_key(apikey_file: Option<&Path>) -> Result<ApiKey, Error> {
    match apikey_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path).map_err(|source| Error::Input { path: path.to_path_buf(), source })?;
            ApiKey::new(&raw).ok_or_else(|| Error::Usage(format!("the API key file {} is empty", path.display())))
        }
        None => std::env::var(APIKEY_ENV).ok().and_then(|k| ApiKey::new(&k)).ok_or_else(|| {
            Error::Usage(format!(
                "no API key: set {APIKEY_ENV} or use --apikey-file PATH (or --offline to hash without lookups)"
            ))
        }),
    }
}

fn read_ca_cert(path: Option<&Path>) -> Result<Option<Vec<u8>>, Error> {
    path.map(|p| {
        std::fs::read(p).map_err(|source| Error::Input {
            path: p.to_path_buf(),
            source,
        })
    })
    .transpose()
}

fn build_client(api: &ApiArgs) -> Result<HttpClient, Error> {
    let key = load_key(api.conn.apikey_file.as_deref())?;
    let ca_cert = read_ca_cert(api.conn.ca_cert.as_deref())?;
    let client = HttpClient::new(config::api_client_config(api, key, ca_cert))?;
    if let Some(notice) = client.notice() {
        eprintln!("hashsweep: warning: {notice}");
    }
    Ok(client)
}

fn progress() -> Box<dyn Progress> {
    if io::stderr().is_terminal() {
        Box::new(BarProgress::new())
    } else {
        Box::new(NoProgress)
    }
}

/// Table on a terminal, ndjson otherwise (a file named by `-o` is not a terminal).
fn resolve_format(o: &OutputArgs) -> Format {
    o.format
        .unwrap_or(if o.output.is_none() && io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Ndjson
        })
}

/// Write a report to stdout or to `-o FILE`. A regular file (or a new one) is written to a
/// temp file beside it and renamed into place, so it is never seen half-written; anything else
/// that already exists there (`/dev/null`, a FIFO, a terminal) is written to directly, never
/// replaced.
fn write_report(
    o: &OutputArgs,
    format: Format,
    cols: Columns,
    summary: &Summary,
    body: impl FnOnce(&mut dyn Reporter) -> io::Result<()>,
) -> Result<(), Error> {
    let emit = |out: &mut dyn Write| -> io::Result<()> {
        let mut rep = reporter(
            format,
            Box::new(io::BufWriter::with_capacity(1 << 16, out)),
            cols,
        );
        body(&mut *rep)?;
        rep.finish(summary)
    };
    let Some(path) = &o.output else {
        return Ok(emit(&mut io::stdout().lock())?);
    };
    let fail = |source: io::Error| Error::Output {
        path: path.clone(),
        source,
    };
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(fail)?;
        return emit(&mut f).map_err(fail);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".hashsweep-report.")
        .tempfile_in(dir)
        .map_err(fail)?;
    emit(tmp.as_file_mut()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

fn print_halt(client: Option<&Arc<HttpClient>>) {
    if let Some(why) = client.and_then(|c| c.halted()) {
        eprintln!("hashsweep: lookups stopped: {why}");
    }
}

/// 130/143 after a signal (saying so), else `status`.
fn finish_status(stop: &Interrupt, status: u8) -> u8 {
    match stop.exit_code() {
        Some(code) => {
            eprintln!(
                "hashsweep: interrupted by {}: the report covers what was done before; the rest is marked not_looked_up",
                stop.signal_name()
            );
            code
        }
        None => status,
    }
}

/// `--format ecs` describes files on this host as they were swept: only `scan` writes it.
fn refuse_ecs(o: &OutputArgs, command: &str) -> Result<(), Error> {
    if o.format == Some(Format::Ecs) {
        return Err(Error::Usage(format!(
            "--format ecs is only for scan; {command} writes table, json, ndjson or csv"
        )));
    }
    Ok(())
}

/// A reader that went away (`hashsweep scan | head`) is not a failure of the sweep: the output
/// stops, the summary and the exit status still say what was found. Returns whether it went.
fn tolerate_broken_pipe(r: Result<(), Error>) -> Result<bool, Error> {
    match r {
        Err(Error::Write(e)) | Err(Error::Output { source: e, .. })
            if e.kind() == io::ErrorKind::BrokenPipe =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(false),
    }
}

fn warn_bad(bad: &BadRecords) {
    if bad.count > 0 {
        eprintln!(
            "hashsweep: warning: skipped {} unreadable record(s) in a report",
            bad.count
        );
        for r in &bad.first {
            eprintln!("hashsweep:   {r}");
        }
    }
}
