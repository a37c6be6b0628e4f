//! `hashsweep lookup`: look up hashes given as arguments or on stdin.

use super::*;

/// `hashsweep lookup`
pub fn run_lookup(a: LookupArgs) -> Result<u8, Error> {
    refuse_ecs(&a.output, "lookup")?;
    check_output(&a.output)?;
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
    let client = Arc::new(build_client(&a.api, false)?);
    let started = hashsweep::clock::now();
    let digests: Vec<_> = listed.iter().map(|h| h.digest).collect();
    let stop = Interrupt::install()?;
    let outcomes = lookup_digests(
        &digests,
        Arc::clone(&client) as Arc<dyn ReputationClient>,
        &config::lookup_options(&a.api),
        &stop.flag,
    );

    let records: Vec<Record<'_>> = listed
        .iter()
        .map(|h| {
            let (verdict, answer, error, note) = outcome_fields(outcomes.get(&h.digest));
            let hex = Some(h.digest.to_hex());
            let (mut sha256, mut md5, mut sha1) = (None, None, None);
            match h.digest.algo() {
                Algo::Sha256 => sha256 = hex,
                Algo::Md5 => md5 = hex,
                Algo::Sha1 => sha1 = hex,
            }
            Record {
                sha256,
                md5,
                sha1,
                answer,
                error,
                note,
                ..Record::new(h.name.as_deref(), verdict)
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
    summary.set_elapsed(started.elapsed().unwrap_or_default());
    summary.run = Some(run_info(
        &[],
        started,
        None,
        api_options(&a.api, &a.view),
        Some(&client),
    ));
    summary.report_file = a.output.output.clone();

    let format = resolve_format(&a.output);
    let has = |algo| listed.iter().any(|h| h.digest.algo() == algo);
    let algos = [Algo::Sha256, Algo::Md5, Algo::Sha1].map(has);
    // The table's digest column says what it shows.
    let digest_header = match algos {
        [true, false, false] => None,
        [false, true, false] => Some("MD5"),
        [false, false, true] => Some("SHA1"),
        _ => Some("DIGEST"),
    };
    tolerate_broken_pipe(write_report(
        &a.output,
        &a.view,
        format,
        Columns {
            md5: has(Algo::Md5),
            sha1: has(Algo::Sha1),
            change: false,
            digest_header,
            ..table_view(&a.view, &a.output, a.api.details)
        },
        &summary,
        |rep| {
            let mut order: Vec<&Record<'_>> = records.iter().collect();
            if matches!(format, Format::Table | Format::Html) {
                order.sort_by_key(|r| r.verdict.rank());
            }
            order.into_iter().try_for_each(|r| rep.record(r))
        },
    ))?;
    print_summary(&summary);
    print_halt(Some(&client));
    Ok(finish_status(&stop, summary.exit_status()))
}
