//! Command runners: turn parsed flags into the library's configuration, run the pipeline and
//! write the report. Each returns the process exit status (0, 1 or 2; see `cli`).

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::baseline::{BadRecords, Baseline, Change, DiffChange, diff};
use crate::cache::{Cache, Ttls};
use crate::cli::{
    ApiArgs, CacheArgs, DiffArgs, HashArgs, LookupArgs, MockArgs, OutputArgs, ScanArgs, ServeArgs,
    WalkArgs,
};
use crate::client::{ApiKey, ClientConfig, HttpClient, ReputationClient};
use crate::digest::Algo;
use crate::digest::hex_lower;
use crate::hash::{FileStatus, HashOptions};
use crate::hashlist::{ListedHash, parse_line, sum_line};
use crate::hashset::HashSet;
use crate::interrupt::Interrupt;
use crate::pipeline::{LocalSets, LookupOptions, ScanConfig, lookup_digests, outcome_fields, scan};
use crate::progress::{BarProgress, NoProgress, Progress};
use crate::report::{
    ChangeCounts, Columns, Format, Record, Removed, Reporter, Summary, escape_for_line, reporter,
};
use crate::walk::WalkOptions;
use crate::{Error, mock};

/// The environment variable holding the API key.
pub const APIKEY_ENV: &str = "METADEFENDER_APIKEY";

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn walk_options(w: &WalkArgs) -> WalkOptions {
    WalkOptions {
        follow_symlinks: w.follow_symlinks,
        one_file_system: w.one_file_system,
        threads: w.threads.unwrap_or_else(default_threads),
        excludes: w.exclude.clone(),
    }
}

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
    let mut cfg = ClientConfig::new(api.api_url.clone(), load_key(api.apikey_file.as_deref())?);
    cfg.details = api.details;
    cfg.retries = api.retries;
    cfg.max_wait = api.max_wait;
    cfg.timeout = api.timeout;
    cfg.connect_timeout = api.connect_timeout;
    cfg.insecure_http = api.insecure_http;
    cfg.rate = api.rate;
    cfg.ca_cert = read_ca_cert(api.ca_cert.as_deref())?;
    Ok(HttpClient::new(cfg)?)
}

fn lookup_options(api: &ApiArgs) -> LookupOptions {
    LookupOptions {
        algo: api.lookup_hash,
        batch_size: usize::from(api.batch_size),
        concurrency: usize::from(api.concurrency),
        batch_wait: api.batch_wait,
    }
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

/// Open the cache unless `--no-cache`. A cache that cannot be opened is a warning, not a
/// failure: the sweep runs without it.
fn open_cache(c: &CacheArgs, roots: &[PathBuf]) -> Option<Arc<Cache>> {
    if c.no_cache {
        return None;
    }
    let Some(path) = c.cache.clone().or_else(Cache::default_path) else {
        eprintln!(
            "hashsweep: warning: no cache directory found; running without the cache (use --cache PATH)"
        );
        return None;
    };
    // hashsweep never writes into the tree it sweeps (the cache would also be hashed while
    // it is written). Hash-set indexes live beside the cache, so this covers them too.
    if let Some(root) = roots.iter().find(|r| is_inside(&path, r)) {
        eprintln!(
            "hashsweep: warning: the cache {} is inside the scanned tree {}; running without it \
             (use --cache PATH elsewhere)",
            path.display(),
            root.display()
        );
        return None;
    }
    match Cache::open(&path) {
        Ok((cache, warning)) => {
            if let Some(w) = warning {
                eprintln!("hashsweep: warning: {w}");
            }
            let ttls = Ttls {
                clean: c.verdict_ttl,
                other: c.verdict_ttl,
                detection: c.detection_ttl,
                unknown: c.unknown_ttl,
            };
            Some(Arc::new(cache.with_ttls(ttls)))
        }
        Err(e) => {
            eprintln!("hashsweep: warning: running without the cache: {e}");
            None
        }
    }
}

/// Whether `path` (which may not exist yet) lies inside the directory `root`, comparing
/// canonical paths: the nearest existing ancestor of `path` is resolved, the rest appended.
fn is_inside(path: &Path, root: &Path) -> bool {
    let Ok(root) = root.canonicalize() else {
        return false;
    };
    let mut existing = path;
    let mut rest = Vec::new();
    let resolved = loop {
        if let Ok(p) = existing.canonicalize() {
            break p;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return false,
        }
    };
    let full = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    full.starts_with(&root)
}

fn print_halt(client: Option<&Arc<HttpClient>>) {
    if let Some(why) = client.and_then(|c| c.halted()) {
        eprintln!("hashsweep: lookups stopped: {why}");
    }
}

/// `hashsweep scan`
pub fn run_scan(a: ScanArgs) -> Result<u8, Error> {
    let mut baseline = match &a.baseline {
        Some(p) => Some(load_baseline(p)?),
        None => None,
    };
    let client = if a.offline {
        None
    } else {
        Some(Arc::new(build_client(&a.api)?))
    };
    let cache = open_cache(&a.cache, &a.paths);
    let local = load_local_sets(&a, cache.as_deref())?;
    // Sets of MD5 or SHA-1 entries (NSRL) can only match if those digests are computed.
    let (local_md5, local_sha1) = local.as_ref().map_or((false, false), |l| {
        let (g, b) = (l.good.counts(), l.bad.counts());
        (g.0 + b.0 > 0, g.1 + b.1 > 0)
    });
    // ECS's file.path is the full path: relative roots are made absolute (lexically, as
    // `realpath -s` would; symlinks are not resolved).
    let roots = if a.output.format == Some(Format::Ecs) {
        a.paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect()
    } else {
        a.paths.clone()
    };
    let cfg = ScanConfig {
        roots,
        walk: walk_options(&a.walk),
        hash: HashOptions {
            md5: a.md5 || local_md5 || a.api.lookup_hash == Algo::Md5,
            sha1: a.sha1 || local_sha1 || a.api.lookup_hash == Algo::Sha1,
            max_size: a.walk.max_size,
            follow_symlinks: a.walk.follow_symlinks,
        },
        threads: a.walk.threads.unwrap_or_else(default_threads),
        lookup: (!a.offline).then(|| lookup_options(&a.api)),
        cache,
        local,
    };
    let stop = Interrupt::install()?;
    let progress = progress();
    let out = scan(
        &cfg,
        client.clone().map(|c| c as Arc<dyn ReputationClient>),
        &*progress,
        &stop.flag,
    )?;
    let mut summary = out.summary();
    let format = resolve_format(&a.output);
    let order = out.order(format == Format::Table);
    // With a baseline, classify every path first (one byte each) so the summary has the counts.
    let mut removed = Vec::new();
    let changes: Vec<Option<Change>> = match &mut baseline {
        Some(b) => {
            let ch: Vec<_> = out
                .files
                .iter()
                .map(|f| b.change_record(&out.record(f)))
                .collect();
            removed = b.removed();
            let mut counts = ChangeCounts {
                removed: removed.len() as u64,
                ..ChangeCounts::default()
            };
            ch.iter().flatten().for_each(|c| counts.add(*c));
            summary.changes = Some(counts);
            ch
        }
        None => Vec::new(),
    };
    let cols = Columns {
        md5: cfg.hash.md5,
        sha1: cfg.hash.sha1,
        change: baseline.is_some(),
        lookup_algo: out.lookup_algo,
        host_name: a.host_name.clone(),
    };
    tolerate_broken_pipe(write_report(&a.output, format, cols, &summary, |rep| {
        for i in order {
            let mut r = out.record(&out.files[i]);
            r.change = changes.get(i).copied().flatten();
            rep.record(&r)?;
        }
        for path in &removed {
            let old = baseline.as_ref().and_then(|b| b.get(path));
            rep.removed(&Removed {
                path,
                size: old.as_ref().and_then(|o| o.size),
                sha256: old.as_ref().and_then(|o| o.sha256).map(|d| hex_lower(&d)),
            })?;
        }
        Ok(())
    }))?;
    eprintln!("{}", summary.human());
    print_halt(client.as_ref());
    Ok(finish_status(&stop, summary.exit_status()))
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
        walk: walk_options(&a.walk),
        hash: HashOptions {
            md5: a.md5,
            sha1: a.sha1,
            max_size: a.walk.max_size,
            follow_symlinks: a.walk.follow_symlinks,
        },
        threads: a.walk.threads.unwrap_or_else(default_threads),
        lookup: None,
        cache: None,
        local: None,
    };
    let stop = Interrupt::install()?;
    let out = scan(&cfg, None, &NoProgress, &stop.flag)?;
    let mut stdout = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut incomplete = false;
    // A reader that went away (`| head`) stops the output, not the status.
    let mut reader_gone = false;
    for f in &out.files {
        let shown = || escape_for_line(std::os::unix::ffi::OsStrExt::as_bytes(f.path.as_os_str()));
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
            }
            FileStatus::Skipped(why) => eprintln!("hashsweep: {}: skipped: {why}", shown()),
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

/// `hashsweep lookup`
pub fn run_lookup(a: LookupArgs) -> Result<u8, Error> {
    refuse_ecs(&a.output, "lookup")?;
    let mut listed: Vec<ListedHash> = Vec::new();
    let mut bad = 0u64;
    let mut take = |line: &[u8], where_: String| match parse_line(line) {
        Ok(Some(h)) => listed.push(h),
        Ok(None) => {}
        Err(e) => {
            bad += 1;
            eprintln!("hashsweep: {where_}: {e}");
        }
    };
    if a.hashes.is_empty() {
        let stdin = io::stdin().lock();
        for (n, line) in stdin.split(b'\n').enumerate() {
            let line = line.map_err(|source| Error::Input {
                path: "<stdin>".into(),
                source,
            })?;
            take(&line, format!("stdin line {}", n + 1));
        }
    } else {
        for (n, h) in a.hashes.iter().enumerate() {
            take(h.as_bytes(), format!("argument {}", n + 1));
        }
    }
    if listed.is_empty() {
        return Err(Error::Usage(
            "no valid hashes given (as arguments or on stdin)".into(),
        ));
    }
    let client = Arc::new(build_client(&a.api)?);
    let digests: Vec<_> = listed.iter().map(|h| h.digest).collect();
    let started = std::time::Instant::now();
    let stop = Interrupt::install()?;
    let outcomes = lookup_digests(
        &digests,
        Arc::clone(&client) as Arc<dyn ReputationClient>,
        &lookup_options(&a.api),
        &stop.flag,
    );

    let records: Vec<Record<'_>> = listed
        .iter()
        .map(|h| {
            let (verdict, answer, error) = outcome_fields(outcomes.get(&h.digest));
            let hex = Some(h.digest.to_hex());
            let (mut sha256, mut md5, mut sha1) = (None, None, None);
            match h.digest.algo() {
                Algo::Sha256 => sha256 = hex,
                Algo::Md5 => md5 = hex,
                Algo::Sha1 => sha1 = hex,
            }
            Record {
                path: h.name.as_deref(),
                size: None,
                mtime: None,
                inode: None,
                sha256,
                md5,
                sha1,
                verdict,
                answer,
                error,
                note: None,
                change: None,
                source: None,
            }
        })
        .collect();
    let mut summary = Summary {
        distinct_digests: outcomes.len() as u64,
        ..Summary::default()
    };
    for r in &records {
        summary.count(r);
    }
    let s = client.stats();
    summary.requests = s.requests;
    summary.retries = s.retries;
    summary.errors += bad;
    summary.set_elapsed(started.elapsed());

    let format = resolve_format(&a.output);
    let has = |algo| listed.iter().any(|h| h.digest.algo() == algo);
    tolerate_broken_pipe(write_report(
        &a.output,
        format,
        Columns {
            md5: has(Algo::Md5),
            sha1: has(Algo::Sha1),
            change: false,
            ..Columns::default()
        },
        &summary,
        |rep| {
            let mut order: Vec<&Record<'_>> = records.iter().collect();
            if format == Format::Table {
                order.sort_by_key(|r| r.verdict.rank());
            }
            order.into_iter().try_for_each(|r| rep.record(r))
        },
    ))?;
    eprintln!("{}", summary.human());
    print_halt(Some(&client));
    Ok(finish_status(&stop, summary.exit_status()))
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

/// Load `--known-good` / `--known-bad` lists. Their indexes live beside the cache (never in the
/// scanned tree); without a cache they are loaded from text each time.
fn load_local_sets(a: &ScanArgs, cache: Option<&Cache>) -> Result<Option<Arc<LocalSets>>, Error> {
    if a.known_good.is_empty() && a.known_bad.is_empty() {
        return Ok(None);
    }
    let index_dir = cache.and_then(|c| c.path().parent()).map(Path::to_path_buf);
    let load = |paths: &[std::path::PathBuf]| -> Result<HashSet, Error> {
        let set =
            HashSet::load(paths, index_dir.as_deref()).map_err(|e| Error::Usage(e.to_string()))?;
        for s in set.sources() {
            if s.skipped_lines > 0 {
                eprintln!(
                    "hashsweep: warning: {}: skipped {} line(s) with no digest",
                    s.path.display(),
                    s.skipped_lines
                );
            }
            if let Some(e) = &s.index_error {
                eprintln!(
                    "hashsweep: warning: {}: index not written: {e}",
                    s.path.display()
                );
            }
        }
        Ok(set)
    };
    Ok(Some(Arc::new(LocalSets {
        good: load(&a.known_good)?,
        bad: load(&a.known_bad)?,
        also_lookup: a.also_lookup,
    })))
}

/// Load a baseline report, warning about the records it had to skip.
fn load_baseline(path: &Path) -> Result<Baseline, Error> {
    let b = Baseline::load(path).map_err(|e| Error::Usage(e.to_string()))?;
    warn_bad(b.bad());
    Ok(b)
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

/// `hashsweep diff OLD NEW`: exit 0 when nothing changed, 1 when something did, 2 on trouble.
pub fn run_diff(a: DiffArgs) -> Result<u8, Error> {
    refuse_ecs(&a.output, "diff")?;
    let d = diff(&a.old, &a.new).map_err(|e| Error::Usage(e.to_string()))?;
    warn_bad(&d.old_bad);
    warn_bad(&d.new_bad);
    let mut counts = ChangeCounts::default();
    for e in &d.entries {
        match e.change {
            DiffChange::Removed => counts.removed += 1,
            DiffChange::New => counts.add(Change::New),
            DiffChange::Modified => counts.add(Change::Modified),
            DiffChange::Unchanged => counts.add(Change::Unchanged),
        }
    }
    let format = resolve_format(&a.output);
    let emit = |out: &mut dyn Write| -> io::Result<()> {
        let mut out = io::BufWriter::with_capacity(1 << 16, out);
        match format {
            Format::Ndjson => d.entries.iter().try_for_each(|e| {
                serde_json::to_writer(&mut out, e)?;
                out.write_all(b"\n")
            }),
            Format::Json => {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "entries": d.entries, "summary": counts }),
                )?;
                out.write_all(b"\n")
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut out);
                for e in &d.entries {
                    w.serialize(e)?;
                }
                w.flush()
            }
            Format::Ecs => unreachable!("--format ecs is refused before the diff is made"),
            Format::Table => d
                .entries
                .iter()
                .filter(|e| e.change != DiffChange::Unchanged)
                .try_for_each(|e| {
                    let short = |h: &Option<String>| {
                        h.as_deref()
                            .map(|h| h[..h.len().min(16)].to_string())
                            .unwrap_or("-".into())
                    };
                    writeln!(
                        out,
                        "{:<10} {:<16} {:<16} {}",
                        e.change.as_str(),
                        short(&e.old_sha256),
                        short(&e.new_sha256),
                        escape_for_line(std::os::unix::ffi::OsStrExt::as_bytes(e.path.as_os_str()))
                    )
                }),
        }?;
        out.flush()
    };
    match &a.output.output {
        None => {
            tolerate_broken_pipe(emit(&mut io::stdout().lock()).map_err(Error::Write))?;
        }
        Some(p) => emit(
            &mut std::fs::File::create(p).map_err(|source| Error::Output {
                path: p.clone(),
                source,
            })?,
        )
        .map_err(|source| Error::Output {
            path: p.clone(),
            source,
        })?,
    }
    eprintln!("hashsweep: {}", counts.human());
    let bad = d.old_bad.count + d.new_bad.count > 0;
    Ok(if bad {
        2
    } else if counts.new + counts.modified + counts.removed > 0 {
        1
    } else {
        0
    })
}

/// `hashsweep serve`: run the fleet gateway until SIGTERM/SIGINT.
pub fn run_serve(a: ServeArgs) -> Result<u8, Error> {
    use crate::gateway::{ServeConfig, Tokens, UpstreamConfig};
    let filter = tracing_subscriber::EnvFilter::try_new(&a.log)
        .map_err(|e| Error::Usage(format!("invalid --log '{}': {e}", a.log)))?;
    // Log lines go to stderr (the journal under systemd); never the keys or tokens.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
    let tokens = Tokens::load(&a.tokens).map_err(|e| Error::Usage(e.to_string()))?;
    let ttls = Ttls {
        clean: a.verdict_ttl,
        detection: a.detection_ttl,
        unknown: a.unknown_ttl,
        other: a.verdict_ttl,
    };
    let store = match &a.store {
        Some(s) => s.clone(),
        None => {
            let path = Cache::default_path().ok_or_else(|| {
                Error::Usage("no cache directory for the default store: use --store".into())
            })?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Output {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            format!("sqlite:{}", path.display())
        }
    };
    let mut client = ClientConfig::new(a.api_url.clone(), load_key(a.apikey_file.as_deref())?);
    client.retries = a.retries;
    client.max_wait = a.max_wait;
    client.timeout = a.timeout;
    client.connect_timeout = a.connect_timeout;
    client.insecure_http = a.insecure_http;
    client.rate = a.rate;
    client.ca_cert = read_ca_cert(a.ca_cert.as_deref())?;
    let cfg = ServeConfig {
        listen: a.listen,
        tokens,
        store,
        ttls,
        upstream: UpstreamConfig {
            client,
            batch_size: usize::from(a.batch_size),
            batch_wait: a.batch_wait,
            concurrency: usize::from(a.concurrency),
            max_pending: a.max_pending,
            // Long enough for one whole lookup: every attempt, the backoffs and a 429 wait,
            // so a claim does not lapse while its lookup still runs.
            claim_ttl: a.timeout.saturating_mul(a.retries.saturating_add(1))
                + a.max_wait
                + std::time::Duration::from_secs(30),
        },
        client_rate: a.client_rate,
        insecure_http: a.insecure_http,
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        shutdown_grace: a.shutdown_grace,
    };
    crate::gateway::serve(cfg, |_, what| {
        eprintln!("hashsweep serve: listening on {what}");
    })
    .map_err(|e| Error::Usage(e.to_string()))?;
    eprintln!("hashsweep serve: stopped");
    Ok(0)
}

/// `hashsweep mock-api`: serve the stand-in until killed.
pub fn run_mock(a: MockArgs) -> Result<u8, Error> {
    let key = std::env::var(APIKEY_ENV).ok();
    let server = mock::MockServer::start_on(&a.listen, key.as_deref(), a.latency)
        .map_err(|e| Error::Usage(format!("cannot listen on {}: {e}", a.listen)))?;
    println!("mock MetaDefender API listening on {}", server.url());
    io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}
