//! `hashsweep diff OLD NEW`: compare two reports.

use super::*;

/// `hashsweep diff OLD NEW`: exit 0 when nothing changed, 1 when something did, 2 on trouble.
pub fn run_diff(a: DiffArgs) -> Result<u8, Error> {
    refuse_ecs(&a.output, "diff")?;
    check_output(&a.output)?;
    let d = diff(&a.old, &a.new)?;
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
        counts.verdict_changed += u64::from(e.verdict_changed());
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
            Format::Ecs | Format::Html => {
                unreachable!("--format ecs and html are refused before the diff is made")
            }
            Format::Table => {
                let mut rows = d
                    .entries
                    .iter()
                    .filter(|e| e.change != DiffChange::Unchanged || e.verdict_changed())
                    .peekable();
                if rows.peek().is_some() {
                    writeln!(
                        out,
                        "{:<10} {:<16} {:<16} {:<27} PATH",
                        "CHANGE", "OLD_SHA256", "NEW_SHA256", "VERDICT"
                    )?;
                }
                rows.try_for_each(|e| {
                    let short = |h: &Option<String>| {
                        h.as_deref()
                            .map(|h| h[..h.len().min(16)].to_string())
                            .unwrap_or("-".into())
                    };
                    let verdict = match (&e.old_verdict, &e.new_verdict) {
                        (Some(o), Some(n)) if o != n => format!("{o} -> {n}"),
                        (_, Some(n)) => n.clone(),
                        (Some(o), None) => o.clone(),
                        (None, None) => "-".into(),
                    };
                    writeln!(
                        out,
                        "{:<10} {:<16} {:<16} {:<27} {}",
                        e.change.as_str(),
                        short(&e.old_sha256),
                        short(&e.new_sha256),
                        escape_for_line(verdict.as_bytes()),
                        escape_path(&e.path)
                    )
                })
            }
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
    if !ui().quiet {
        eprintln!("hashsweep: {}", counts.human());
    }
    let bad = d.old_bad.count + d.new_bad.count > 0;
    Ok(if bad {
        2
    } else if counts.any() {
        1
    } else {
        0
    })
}
