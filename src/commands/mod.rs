//! Command runners, one file per subcommand: each takes its parsed flags, runs the library and
//! writes the report, and returns the process exit status (0, 1 or 2; see `cli`). What they
//! share (the key, the client, the report file, the exit status after a signal) is here.

mod check;
mod config_cmd;
mod diff;
mod hash;
mod interrupt;
mod lookup;
#[cfg(feature = "gateway")]
mod prevalence;
mod scan;
#[cfg(feature = "gateway")]
mod serve;
mod shell;
mod upload;
mod yara;

pub use check::run_check;
pub use config_cmd::run_config;
pub use diff::run_diff;
pub use hash::run_hash;
pub use lookup::run_lookup;
#[cfg(feature = "gateway")]
pub use prevalence::run_prevalence;
pub use scan::run_scan;
#[cfg(feature = "gateway")]
pub use serve::run_serve;
pub use shell::{run_completions, run_man};
pub use yara::run_yara_check;

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use hashsweep::audit::{Baseline, diff};
use hashsweep::cache::{Cache, DetailsUse};
use hashsweep::digest::{Algo, hex_lower};
use hashsweep::known::LocalSets;
use hashsweep::known::hashlist::{ListedHash, parse_line, sum_line};
use hashsweep::known::hashset::HashSet;
use hashsweep::known::packages::{PackageDb, PackageMode};
use hashsweep::known::rds::RdsOptions;
use hashsweep::lookup::{ApiKey, HttpClient, ReputationClient, lookup_digests};
use hashsweep::progress::{BarProgress, NoProgress, Progress, Silent};
use hashsweep::report::read::BadRecords;
use hashsweep::report::{
    Change, ChangeCounts, Columns, DiffChange, FULL_DIGEST_WIDTH, Format, OnlyReporter,
    RateLimitState, Record, Removed, Reporter, RunInfo, Summary, escape_for_line, escape_path,
    reporter, rfc3339,
};
use hashsweep::scan::hash::FileStatus;
use hashsweep::scan::plan::BudgetOptions;
use hashsweep::scan::walk::{SkipRule, SpecialKind};
use hashsweep::scan::{ScanConfig, outcome_fields, scan};
use hashsweep::{Error, ErrorChain};

#[cfg(feature = "gateway")]
use crate::cli::ServeArgs;
use crate::cli::config;
use crate::cli::{
    ApiArgs, CacheArgs, DiffArgs, HashArgs, LookupArgs, OutputArgs, ScanArgs, UiArgs, ViewArgs,
};
use interrupt::Interrupt;

/// The environment variable holding the API key.
pub const APIKEY_ENV: &str = "METADEFENDER_APIKEY";

/// The key from `--apikey-file` or the environment; `offline`: the command has `--offline`,
/// which the message then offers.
fn load_key(apikey_file: Option<&Path>, offline: bool) -> Result<ApiKey, Error> {
    match apikey_file {
        Some(path) => {
            let raw = std::fs::read_to_string(path).map_err(|source| Error::Input {
                path: path.to_path_buf(),
                source,
            })?;
            ApiKey::new(&raw).ok_or_else(|| {
                Error::Usage(format!("the API key file {} is empty", path.display()))
            })
        }
        None => std::env::var(APIKEY_ENV)
            .ok()
            .and_then(|k| ApiKey::new(&k))
            .ok_or_else(|| {
                let or_offline = if offline {
                    " (or --offline to hash without lookups)"
                } else {
                    ""
                };
                Error::Usage(format!(
                    "no API key: set {APIKEY_ENV} or use --apikey-file PATH{or_offline}"
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

fn build_client(api: &ApiArgs, offline: bool) -> Result<HttpClient, Error> {
    let key = load_key(api.conn.apikey_file.as_deref(), offline)?;
    let ca_cert = read_ca_cert(api.conn.ca_cert.as_deref())?;
    let client = HttpClient::new(config::api_client_config(api, key, ca_cert))?;
    if let Some(notice) = client.notice() {
        warn(notice);
    }
    Ok(client)
}

/// `-q`, `-v`, `--no-progress`, set once by `main` before a command runs.
static UI: OnceLock<UiArgs> = OnceLock::new();

/// Take the message flags. With `-v` (and `log_retries`: not for `serve`, which has `--log`),
/// each retry of a request is said on stderr with its reason.
pub fn set_ui(ui: UiArgs, log_retries: bool) {
    let _ = UI.set(ui);
    if ui.verbose > 0 && !ui.quiet && log_retries {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| Said(Vec::new()))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_max_level(if ui.verbose > 1 {
                tracing::Level::DEBUG
            } else {
                tracing::Level::INFO
            })
            .try_init();
    }
}

/// One `-v` message: written as a `hashsweep: ` line around the progress line when dropped.
struct Said(Vec<u8>);

impl Write for Said {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Said {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            hashsweep::progress::eprint_line(&format!("hashsweep: {}", line.trim_start()));
        }
    }
}

fn ui() -> UiArgs {
    UI.get().copied().unwrap_or_default()
}

/// A warning from the command code (before or after the pipeline, which has its own
/// [`Progress`](hashsweep::progress::Progress) for these): not said under `-q`.
pub(crate) fn warn(message: impl std::fmt::Display) {
    if !ui().quiet {
        eprintln!("hashsweep: warning: {message}");
    }
}

/// `1 request`, `2 requests`: a count with its noun agreeing, for messages.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A notice from the command code: not said under `-q`.
pub(crate) fn note(message: impl std::fmt::Display) {
    if !ui().quiet {
        eprintln!("hashsweep: {message}");
    }
}

/// The live line on a terminal; plain warning lines otherwise or with `--no-progress`;
/// nothing with `-q`.
fn progress() -> Box<dyn Progress> {
    let ui = ui();
    if ui.quiet {
        Box::new(Silent)
    } else if !ui.no_progress && io::stderr().is_terminal() {
        Box::new(BarProgress::new())
    } else {
        Box::new(NoProgress)
    }
}

/// The summary on stderr, unless `-q`.
fn print_summary(summary: &Summary) {
    if !ui().quiet {
        eprintln!("{}", summary.human());
    }
}

/// `--format`, else what `-o`'s extension names, else table on a terminal and ndjson
/// otherwise (a file named by `-o` is not a terminal).
fn resolve_format(o: &OutputArgs) -> Format {
    o.format
        .or_else(|| o.output.as_deref().and_then(Format::from_extension))
        .unwrap_or(if o.output.is_none() && io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Ndjson
        })
}

/// How the table looks: whole digests on a wide terminal or with `--wide`; colour when the
/// report goes to a terminal and `NO_COLOR` is not set (anstream's rules, which also honour
/// `CLICOLOR_FORCE`).
fn table_view(view: &ViewArgs, o: &OutputArgs, details: bool) -> Columns {
    let to_terminal = o.output.is_none() && io::stdout().is_terminal();
    let width = terminal_size::terminal_size_of(io::stdout()).map(|(w, _)| usize::from(w.0));
    Columns {
        details,
        wide: view.wide || (to_terminal && width.is_some_and(|w| w >= FULL_DIGEST_WIDTH)),
        color: o.output.is_none()
            && anstream::AutoStream::choice(&io::stdout()) != anstream::ColorChoice::Never,
        ..Columns::default()
    }
}

/// An API URL as the JSON summary may show it: no user, password, query or fragment.
fn shown_api_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

/// What ran, for the JSON summary and the HTML header.
fn run_info(
    roots: &[PathBuf],
    started: SystemTime,
    host: Option<String>,
    options: serde_json::Map<String, serde_json::Value>,
    client: Option<&HttpClient>,
) -> RunInfo {
    RunInfo {
        version: crate::cli::VERSION.to_string(),
        host: host.or_else(hashsweep::report::ecs::host_name),
        started_at: rfc3339(started),
        finished_at: rfc3339(hashsweep::clock::now()),
        roots: roots.iter().map(|r| escape_path(r)).collect(),
        options,
        rate_limit: client.map(|c| {
            let b = c.budget();
            RateLimitState {
                limit: b.and_then(|b| b.limit),
                remaining: b.map(|b| b.remaining),
                resets_at: b
                    .and_then(|b| b.resets_at)
                    .map(hashsweep::lookup::budget::unix_secs),
                throttled: c.stats().throttled,
            }
        }),
    }
}

/// The options of `lookup` and `scan` that change what the service says.
fn api_options(api: &ApiArgs, view: &ViewArgs) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("api-url".into(), shown_api_url(&api.conn.api_url).into());
    m.insert("details".into(), api.details.into());
    m.insert("lookup-hash".into(), api.lookup_hash.to_string().into());
    if let Some(o) = view.only {
        m.insert("only".into(), serde_json::to_value(o).unwrap_or_default());
    }
    m
}

/// Write a report to stdout or to `-o FILE`. A regular file (or a new one) is written to a
/// temp file beside it and renamed into place, so it is never seen half-written; anything else
/// that already exists there (`/dev/null`, a FIFO, a terminal) is written to directly, never
/// replaced.
fn write_report(
    o: &OutputArgs,
    view: &ViewArgs,
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
        if let Some(only) = view.only {
            rep = Box::new(OnlyReporter { inner: rep, only });
        }
        rep.begin(summary)?;
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
    let mut tmp = report_temp_builder()
        .tempfile_in(report_dir(path))
        .map_err(|e| fail(bare_os_error(e)))?;
    keep_mode(path, tmp.as_file()).map_err(fail)?;
    emit(tmp.as_file_mut()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path)
        .map_err(|e| fail(bare_os_error(e.error)))?;
    Ok(())
}

/// Refuse an `-o FILE` that cannot be written, before anything is read or asked: its folder
/// must exist and take a new file (the report is written beside it and renamed), and the path
/// must not be a folder. Something else that exists there (`/dev/null`, a FIFO) is written to
/// directly, and opened only then. One line each, the OS's reason once.
fn check_output(o: &OutputArgs) -> Result<(), Error> {
    let Some(path) = &o.output else {
        return Ok(());
    };
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(Error::Usage(format!(
                "-o {shown} is a folder; name a file in it, e.g. -o {}",
                path.join("report.ndjson").display()
            )));
        }
        // Opened only when the report is written: opening a FIFO now would wait for its
        // reader.
        Ok(m) if !m.is_file() => return Ok(()),
        _ => {}
    }
    let dir = report_dir(path);
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "-o {shown}: the folder {} does not exist (create it first)",
                dir.display()
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(Error::Usage(format!(
                "-o {shown}: {} is not a folder",
                dir.display()
            )));
        }
        _ => {}
    }
    // A file of the temp file's kind, made and removed now (not through tempfile, whose
    // error text repeats the path).
    let probe = dir.join(format!("{REPORT_TEMP_PREFIX}probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
    std::fs::remove_file(&probe).map_err(|source| Error::Output {
        path: path.clone(),
        source,
    })
}

/// The temp file a report is written to before it is renamed into place.
const REPORT_TEMP_PREFIX: &str = ".hashsweep-report.";

/// The temp file a report is written to: created like any new file (mode 0666 less the umask,
/// so 0644 under the usual 022), not owner-only as temp files are by default, since it becomes
/// the report.
fn report_temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(REPORT_TEMP_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b
}

/// A report that replaces an existing file keeps that file's mode, as the shell's `>` would
/// (a report someone made private stays private); a new one keeps the umask's.
/// (Unix: elsewhere a file has no mode to keep.)
fn keep_mode(path: &Path, tmp: &std::fs::File) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if cfg!(unix) && m.is_file() => tmp.set_permissions(m.permissions()),
        _ => Ok(()),
    }
}

/// The folder `-o FILE` is written in.
fn report_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An OS error without the path tempfile adds to its text (`... at path "/x/.tmpAbC"`): the
/// caller names the report's path, and the reason is said once.
fn bare_os_error(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None if e.get_ref().is_some() => io::Error::from(e.kind()),
        None => e,
    }
}

/// What the walk must leave unread so that a report written inside the swept tree (`-o`) is
/// not read as one of its files: the report and the temp files it is written through, listed
/// as skipped. `None` without `-o` or when its folder cannot be identified.
fn own_report_rule(o: &OutputArgs) -> Option<SkipRule> {
    use hashsweep::file::NamePattern;
    let path = o.output.as_ref()?;
    let name = path.file_name()?;
    let dir = hashsweep::platform::file_id(report_dir(path)).ok()?;
    Some(SkipRule {
        dir,
        names: vec![
            (NamePattern::Is(name.to_os_string()), SpecialKind::OwnReport),
            (
                NamePattern::Around(REPORT_TEMP_PREFIX.into(), "".into()),
                SpecialKind::OwnReport,
            ),
        ],
        files: Vec::new(),
    })
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
/// `diff` writes no HTML page either.
fn refuse_ecs(o: &OutputArgs, command: &str) -> Result<(), Error> {
    let format = o
        .format
        .or_else(|| o.output.as_deref().and_then(Format::from_extension));
    match format {
        Some(Format::Ecs) => {
            let writes = if command == "diff" {
                "table, json, ndjson or csv"
            } else {
                "table, json, ndjson, csv or html"
            };
            return Err(Error::Usage(format!(
                "--format ecs is only for scan; {command} writes {writes}"
            )));
        }
        Some(Format::Html) if command == "diff" => {
            return Err(Error::Usage(
                "--format html is for scan and lookup; diff writes table, json, ndjson or csv"
                    .into(),
            ));
        }
        _ => {}
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
