//! `hashsweep scan`: the sweep. Opens the cache, loads known-file sets and a baseline, runs
//! the pipeline and writes the report.

use super::*;
use hashsweep::report::YaraSummary;

/// Open the cache unless `--no-cache`, with what the walk must leave unread so that a sweep
/// of a tree holding it (`/`, or `$HOME` with the default location) uses it: its files and
/// the hash-set indexes beside it are reported as skipped, never read. A cache that cannot be
/// opened (or written: read-only media, permissions) is a warning, not a failure: the sweep
/// runs without it. `details`: `--details`, whose answers keep their engine details.
/// `service`: whose answers it serves (`--cache-service`, else the endpoint asked).
fn open_cache(
    c: &CacheArgs,
    details: bool,
    service: Option<&str>,
) -> Option<(Arc<Cache>, SkipRule)> {
    if c.no_cache {
        return None;
    }
    let Some(path) = c.cache.clone().or_else(Cache::default_path) else {
        warn("no cache directory found; running without the cache (use --cache PATH)");
        return None;
    };
    let unusable = |why: String| {
        warn(format_args!(
            "running without the cache: {why}; everything is read and asked \
             again (use --cache PATH on a writable disk, or --no-cache to say so)"
        ));
        None
    };
    let cache = match Cache::open(&path) {
        Ok((cache, warning)) => {
            if let Some(w) = warning {
                warn(w);
            }
            cache
        }
        Err(e) => return unusable(ErrorChain(&e).to_string()),
    };
    let mut rule = match cache.skip_rule() {
        Ok(rule) => rule,
        // Without its identity the walk could read the cache under SQLite's locks.
        Err(e) => {
            return unusable(format!(
                "cache {}: cannot find its files: {}",
                path.display(),
                hashsweep::platform::describe_io(&e)
            ));
        }
    };
    // Hash-set indexes are written beside the cache (see `load_local_sets`).
    rule.names.extend(
        hashsweep::known::hashset::index_names()
            .into_iter()
            .map(|n| (n, SpecialKind::OwnIndex)),
    );
    let use_details = if details {
        DetailsUse::Required
    } else {
        DetailsUse::Ignored
    };
    let mut cache = cache
        .with_ttls(config::ttls(&c.ttl))
        .with_details(use_details);
    if let Some(service) = c.cache_service.as_deref().or(service) {
        cache = cache.with_service(service);
    }
    Some((Arc::new(cache), rule))
}

/// `hashsweep scan`
pub fn run_scan(a: ScanArgs) -> Result<u8, Error> {
    let started = hashsweep::clock::now();
    check_output(&a.output)?;
    let mut baseline = match &a.baseline {
        Some(p) => Some(load_baseline(p)?),
        None => None,
    };
    let client = if a.offline {
        None
    } else {
        Some(Arc::new(build_client(&a.api, true)?))
    };
    if let Some(n) = hashsweep::clock::offset_note() {
        note(n);
    }
    let (cache, own_files) = open_cache(
        &a.cache,
        a.api.details,
        client.as_deref().map(HttpClient::endpoint),
    )
    .unzip();
    let local = load_local_sets(&a, cache.as_deref())?;
    let circl = match (a.circl, a.offline) {
        (true, false) => Some(Arc::new(
            hashsweep::lookup::circl::CirclClient::new(&a.circl_url, a.api.conn.timeout)
                .map_err(|e| Error::Usage(e.to_string()))?,
        )),
        _ => None,
    };
    let packages = load_packages(&a)?;
    // Before the walk: rules that do not compile stop the run before any file is read.
    let (rules, yara_summary) = yara::load_rules(&a.yara, &a.cache)?.unzip();
    // Sets of MD5 or SHA-1 entries (NSRL) can only match if those digests are computed.
    let (local_md5, local_sha1) = local.as_ref().map_or((false, false), |l| {
        let (g, b) = (l.good.counts(), l.bad.counts());
        // A Bloom filter (CIRCL's) holds SHA-1s: computed in the same read only for it.
        (g.0 + b.0 > 0, g.1 + b.1 > 0 || !l.good.blooms().is_empty())
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
    let mut walk = config::walk_options(&a.walk);
    walk.skip.extend(own_files);
    walk.skip.extend(own_report_rule(&a.output));
    let cfg = ScanConfig {
        roots,
        walk,
        hash: config::hash_options(
            &a.walk,
            a.md5 || local_md5 || a.api.lookup_hash == Algo::Md5,
            // --circl asks CIRCL by SHA-1.
            a.sha1 || local_sha1 || a.circl || a.api.lookup_hash == Algo::Sha1,
        ),
        threads: a.walk.threads.unwrap_or_else(config::default_threads),
        io: config::io_options(&a.walk),
        lookup: (!a.offline).then(|| hashsweep::lookup::LookupOptions {
            circl: circl.clone(),
            ..config::lookup_options(&a.api)
        }),
        cache,
        local,
        budget: BudgetOptions {
            cap: a.budget,
            priority_paths: a.priority_path.clone(),
            scope: client.as_ref().map(|c| c.budget_scope()),
            max_age: a.cache.max_age,
        },
        processes: a.processes.map(|p| match p {
            crate::cli::ProcessesArg::All => hashsweep::scan::process::ProcessScope::All,
            crate::cli::ProcessesArg::Exe => hashsweep::scan::process::ProcessScope::Exe,
        }),
        packages,
        rules,
    };
    let stop = Interrupt::install()?;
    let progress = progress();
    let mut out = scan(
        &cfg,
        client.clone().map(|c| c as Arc<dyn ReputationClient>),
        &*progress,
        &stop.flag,
    )?;
    // The counts are in the summary; the outage is a warning of its own.
    if let Some(e) = out.circl_report.as_ref().and_then(|r| r.error.as_ref()) {
        warn(format_args!(
            "CIRCL hashlookup did not answer ({e}): the digests it left went to the service \
             as usual"
        ));
    }
    // --upload-unknown: the unknown files' answers from the vendor's multiscanning.
    let uploads = upload::run(
        &a.upload,
        a.api.details,
        &mut out,
        client.as_ref(),
        cfg.cache.as_deref(),
        &cfg.budget,
        &stop.flag,
        &*progress,
    )?;
    let mut summary = out.summary();
    summary.yara = yara_summary.map(|y| YaraSummary {
        matched: summary.yara_matched,
        ..y
    });
    summary.uploads = uploads.as_ref().map(|u| u.counts);
    summary.root_errors = out.root_errors(&cfg.roots);
    if let Some(p) = summary.packages.as_mut() {
        p.set_missing(&out.missing_package_files(&cfg.roots));
    }
    if cfg.hash.archives.is_none() {
        summary.archives_not_opened = out.archives_hashed_as_files();
    }
    let format = resolve_format(&a.output);
    let order = out.order(matches!(format, Format::Table | Format::Html));
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
        application_type: cfg.local.as_ref().is_some_and(|l| {
            [&l.good, &l.bad]
                .iter()
                .any(|s| s.sources().iter().any(|src| src.rds.is_some()))
        }),
        process: cfg.processes.is_some(),
        lookup_algo: out.lookup_algo,
        archives: cfg.hash.archives.is_some(),
        packages: cfg.packages.is_some(),
        yara: cfg.rules.is_some(),
        host_name: a.host_name.clone(),
        ..table_view(&a.view, &a.output, a.api.details)
    };
    summary.run = Some(run_info(
        &a.paths,
        started,
        a.host_name.clone(),
        scan_options(&a),
        client.as_deref(),
    ));
    summary.report_file = a.output.output.clone();
    tolerate_broken_pipe(write_report(
        &a.output,
        &a.view,
        format,
        cols,
        &summary,
        |rep| {
            for i in order {
                let mut r = out.record(&out.files[i]);
                r.change = changes.get(i).copied().flatten();
                if let Some(u) = &uploads {
                    let algo = out.lookup_algo;
                    u.amend(
                        &mut r,
                        out.files[i].digests().zip(algo).and_then(|(d, a)| d.get(a)),
                    );
                }
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
        },
    ))?;
    print_summary(&summary);
    print_halt(client.as_ref());
    Ok(finish_status(&stop, summary.exit_status()))
}

/// The options of a sweep that change what its report says, by their long names (the JSON
/// summary's `run.options`).
fn scan_options(a: &ScanArgs) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let paths =
        |v: &[PathBuf]| -> Value { v.iter().map(|p| Value::from(escape_path(p))).collect() };
    let mut m = if a.offline {
        let mut m = serde_json::Map::new();
        m.insert("offline".into(), true.into());
        m
    } else {
        api_options(&a.api, &a.view)
    };
    if a.offline
        && let Some(o) = a.view.only
    {
        m.insert("only".into(), serde_json::to_value(o).unwrap_or_default());
    }
    m.insert("follow-symlinks".into(), a.walk.follow_symlinks.into());
    m.insert("one-file-system".into(), a.walk.one_file_system.into());
    m.insert("pseudo-fs".into(), a.walk.pseudo_fs.into());
    m.insert(
        "processes".into(),
        match a.processes {
            Some(crate::cli::ProcessesArg::All) => "all".into(),
            Some(crate::cli::ProcessesArg::Exe) => "exe".into(),
            None => Value::Null,
        },
    );
    m.insert("exclude".into(), a.walk.exclude.clone().into());
    m.insert("max-size".into(), a.walk.max_size.into());
    // Only with --archives (a report without it has no members to explain).
    if let Some(o) = config::archive_options(&a.walk.archive) {
        m.insert("archives".into(), o.formats.names().into());
        m.insert("archive-depth".into(), o.depth.into());
        m.insert("archive-max-bytes".into(), o.max_bytes.into());
        m.insert("archive-max-member".into(), o.max_member.into());
        m.insert("archive-max-members".into(), o.max_members.into());
        m.insert(
            "archive-timeout".into(),
            humantime::format_duration(o.timeout).to_string().into(),
        );
        m.insert("archive-max-ratio".into(), o.max_ratio.into());
    }
    m.insert("md5".into(), a.md5.into());
    m.insert("sha1".into(), a.sha1.into());
    // Only with --yara (a report without it has no rule matches to explain).
    if !a.yara.paths.is_empty() {
        m.insert("yara".into(), paths(&a.yara.paths));
        m.insert("yara-max-size".into(), a.yara.yara_max_size.into());
        m.insert("yara-timeout".into(), a.yara.yara_timeout.into());
    }
    m.insert("known-good".into(), paths(&a.known_good));
    // The list in effect (the defaults and the user's), only with known-good sets: it decides
    // which files an NSRL RDS database among them leaves to be looked up.
    if !a.known_good.is_empty() {
        let rds = RdsOptions::with_extra(&a.nsrl_exclude_type);
        m.insert("nsrl-exclude-type".into(), rds.excluded_types.into());
    }
    m.insert("known-bad".into(), paths(&a.known_bad));
    m.insert("also-lookup".into(), a.also_lookup.into());
    m.insert("clamav-pua".into(), a.clamav_pua.into());
    m.insert("circl".into(), a.circl.into());
    m.insert(
        "packages".into(),
        match (a.no_packages, a.packages) {
            (true, _) => Value::Bool(false),
            (false, Some(crate::cli::PackagesArg::VerifyOnly)) => "verify-only".into(),
            (false, Some(crate::cli::PackagesArg::KnownGood)) => "known-good".into(),
            // On by default for a sweep of / (the summary's `packages` says what was read).
            (false, None) => Value::Null,
        },
    );
    m.insert(
        "packages-root".into(),
        a.packages_root.as_deref().map(escape_path).into(),
    );
    m.insert("budget".into(), a.budget.into());
    upload::report_options(&a.upload, &mut m);
    m.insert("priority-path".into(), a.priority_path.clone().into());
    m.insert(
        "baseline".into(),
        a.baseline.as_deref().map(escape_path).into(),
    );
    m.insert("no-cache".into(), a.cache.no_cache.into());
    if !a.cache.no_cache {
        let t = |d: std::time::Duration| Value::from(humantime::format_duration(d).to_string());
        m.insert("verdict-ttl".into(), t(a.cache.ttl.verdict_ttl));
        m.insert("detection-ttl".into(), t(a.cache.ttl.detection_ttl));
        m.insert("unknown-ttl".into(), t(a.cache.ttl.unknown_ttl));
        m.insert("max-age".into(), t(a.cache.max_age));
        m.insert("cache-service".into(), a.cache.cache_service.clone().into());
    }
    m
}

/// Load `--known-good` / `--known-bad` lists. Their indexes live beside the cache (a sweep of a
/// tree holding it leaves them unread, see `open_cache`); without a cache they are loaded from
/// text each time.
fn load_local_sets(a: &ScanArgs, cache: Option<&Cache>) -> Result<Option<Arc<LocalSets>>, Error> {
    if a.known_good.is_empty() && a.known_bad.is_empty() {
        return Ok(None);
    }
    // The RDS says "known", not "bad": as --known-bad it would mark Windows as infected. Refused
    // from its schema, before a load reads the whole database (minutes at NSRL scale).
    for p in &a.known_bad {
        if hashsweep::known::rds::identify(p)?.is_some() {
            return Err(Error::Usage(format!(
                "{} is an NSRL RDS database: it lists known software, not known-bad files; \
                 give it as --known-good",
                p.display()
            )));
        }
    }
    // A Bloom filter says "probably": as --known-bad its false positives would be infected.
    for p in &a.known_bad {
        if hashsweep::known::bloom::identify(p) {
            return Err(Error::Usage(format!(
                "{} is a Bloom filter: it says \"probably known\" (with false positives), \
                 never \"bad\"; give it as --known-good",
                p.display()
            )));
        }
    }
    // An IOC list names bad files: as --known-good it would hide exactly those.
    for p in &a.known_good {
        if let Some(kind) = hashsweep::known::ioc::identify(p) {
            return Err(Error::Usage(format!(
                "{} is a {} IOC list: it names known-bad files; give it as --known-bad",
                p.display(),
                kind.provider()
            )));
        }
    }
    let index_dir = cache.and_then(|c| c.path().parent()).map(Path::to_path_buf);
    let iocs = hashsweep::known::ioc::IocOptions {
        clamav_pua: a.clamav_pua,
        ..Default::default()
    };
    let rds = RdsOptions::with_extra(&a.nsrl_exclude_type);
    let load = |paths: &[PathBuf]| -> Result<HashSet, Error> {
        let set = HashSet::load_all(paths, index_dir.as_deref(), &rds, &iocs)?;
        for l in set.ioc().lists() {
            if l.entries == 0 {
                warn(format_args!(
                    "{}: {} list with no usable MD5, SHA-1 or SHA-256",
                    l.path.display(),
                    l.kind.as_str()
                ));
            }
            if l.skipped > 0 {
                warn(format_args!(
                    "{}: left out {} (not a file digest hashsweep computes, not for \
                     detection, deleted, revoked or expired, PUA)",
                    l.path.display(),
                    plural(l.skipped, "entry", "entries")
                ));
            }
        }
        for s in set.sources() {
            if s.skipped_lines > 0 {
                let what = match s.rds {
                    Some(_) => "row(s) with no valid SHA-256",
                    None => "line(s) with no digest",
                };
                warn(format_args!(
                    "{}: skipped {} {what}",
                    s.path.display(),
                    s.skipped_lines
                ));
            }
            if let Some(e) = &s.index_error {
                warn(format_args!("{}: index not written: {e}", s.path.display()));
            }
        }
        Ok(set)
    };
    Ok(Some(Arc::new(LocalSets {
        bad: load(&a.known_bad)?,
        good: load(&a.known_good)?,
        also_lookup: a.also_lookup,
    })))
}

/// The package databases, when asked (`--packages`, `--packages-root`) or by default for a
/// sweep of `/` (the running system), unless `--no-packages`. Asked for, a database that
/// cannot be read stops the run (exit 2); by default, it is a warning and the sweep goes on
/// without it, as it does when this system has no package database at all.
fn load_packages(a: &ScanArgs) -> Result<Option<Arc<PackageDb>>, Error> {
    if a.no_packages {
        return Ok(None);
    }
    let asked = a.packages.is_some() || a.packages_root.is_some();
    if !asked && !a.paths.iter().any(|p| is_system_root(p)) {
        return Ok(None);
    }
    let mode = match a.packages {
        Some(crate::cli::PackagesArg::VerifyOnly) => PackageMode::VerifyOnly,
        _ => PackageMode::Trust,
    };
    let root = a
        .packages_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/"));
    let db = match PackageDb::load(&root, mode) {
        Ok(db) => db,
        Err(e) if asked => return Err(e.into()),
        Err(e) => {
            warn(format_args!(
                "{}; the sweep goes on without the package databases (--no-packages says so)",
                ErrorChain(&e)
            ));
            return Ok(None);
        }
    };
    for w in db.warnings() {
        warn(w);
    }
    if db.loaded().is_empty() {
        if !asked {
            return Ok(None);
        }
        warn(format_args!(
            "--packages: no package database (dpkg, rpm, apk, pacman) found under {}",
            root.display()
        ));
    }
    Ok(Some(Arc::new(db)))
}

/// Whether `p` is this system's `/` (however it is spelled).
fn is_system_root(p: &Path) -> bool {
    cfg!(unix) && std::fs::canonicalize(p).is_ok_and(|r| r == Path::new("/"))
}

/// Load a baseline report, warning about the records it had to skip.
/// A baseline that does not exist yet is the first night of an audit, not a mistake: every
/// path is new, and the report written tonight is tomorrow's baseline.
fn load_baseline(path: &Path) -> Result<Baseline, Error> {
    if std::fs::metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        note(format_args!(
            "no baseline yet at {}: every path is new",
            path.display()
        ));
        return Ok(Baseline::empty(path));
    }
    let b = Baseline::load(path)?;
    warn_bad(b.bad());
    Ok(b)
}
