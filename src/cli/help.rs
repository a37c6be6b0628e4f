//! How the help reads: which flags `scan -h` shows (the first screen) and in what order, the
//! headings of `serve --help`, which shared flags and report formats each subcommand shows (only
//! those that apply to it), sizes shown as sizes, and the examples every subcommand's `--help`
//! ends with. Presentation only: nothing here adds, removes or renames a flag.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Arg, Command, ValueEnum};

use hashsweep::report::Format;

use super::leak;

/// `scan -h`, first and in this order, under "Options": what a first sweep needs. The one-line
/// help replaces the full text on `-h` only; `--help` keeps the full text.
const SCAN_FIRST: &[(&str, &str)] = &[
    (
        "output",
        "Write the report to FILE (its extension picks the format)",
    ),
    (
        "format",
        "Report format (default: from -o, else table on a terminal, else ndjson)",
    ),
    ("only", "Keep only detections or problems in the report"),
    (
        "archives",
        "Also hash archive members (zip, tar, 7z, ...); each costs a lookup",
    ),
    (
        "budget",
        "Ask the service about at most N hashes; defer the rest to later runs",
    ),
    (
        "known_good",
        "Hash list of known-good files (sha256sum, NSRL, ...): not looked up",
    ),
];

/// Also on `scan -h`, under their own headings, after those.
const SCAN_ALSO: &[(&str, &str)] = &[
    (
        "exclude",
        "Skip paths matching this gitignore-style glob (repeatable)",
    ),
    ("one_file_system", "Do not cross into other file systems"),
    (
        "known_bad",
        "Hash list (or MISP, STIX, ClamAV) of known-bad files: infected",
    ),
    ("offline", "Hash and report without any lookup"),
    (
        "apikey_file",
        "Read the API key from this file (default: $METADEFENDER_APIKEY)",
    ),
    ("quiet", "Errors only: no summary and no progress"),
    ("verbose", "Also say each retry of a request and why"),
];

/// What `scan -h` ends with (the exit statuses in full are in `--help`).
const SCAN_SHORT_AFTER: &str = "\
Exit status: 0 nothing detected, 1 a detection, 2 something incomplete, 3 deferred by the
budget, 4 a file differs from its package. Every option, the exit statuses and examples: --help";

/// The flags every subcommand accepts (the message flags and `--config`, once global) that
/// each one shows: those that change what it does. The others are accepted and hidden, so that
/// a wrapper passing `-q` to every command keeps working.
const COMMON_SHOWN: &[(&str, &[&str])] = &[
    ("scan", &["quiet", "verbose", "no_progress", "config"]),
    ("lookup", &["quiet", "verbose", "config"]),
    ("check", &["quiet", "verbose", "config"]),
    ("diff", &["quiet", "config"]),
    ("hash", &["config"]),
    ("serve", &["config"]),
    ("prevalence", &["config"]),
    ("config", &["config"]),
    ("completions", &[]),
    ("man", &[]),
    ("yara-check", &["quiet", "config"]),
];

/// The ids of [`super::Common`]'s flags.
const COMMON: &[&str] = &["quiet", "verbose", "no_progress", "config"];

/// `serve`'s shared groups, under serve's own headings: the upstream connection and batching,
/// and the verdict lifetimes next to the store they are kept in.
const SERVE_HEADINGS: &[(&str, &[&str])] = &[
    (
        "Upstream",
        &[
            "api_url",
            "apikey_file",
            "retries",
            "max_wait",
            "timeout",
            "connect_timeout",
            "insecure_http",
            "ca_cert",
            "batch_size",
            "concurrency",
            "batch_wait",
            "rate",
        ],
    ),
    (
        "Verdict store",
        &["verdict_ttl", "detection_ttl", "unknown_ttl"],
    ),
];

/// The examples each subcommand's `--help` ends with. Each line is a command line that parses
/// (a unit test runs every `hashsweep ...` in them through the parser).
pub const EXAMPLES: &[(&str, &[&str])] = &[
    (
        "scan",
        &[
            "hashsweep scan -o triage.html ~/Downloads",
            "hashsweep scan -x --budget 500 --known-good /srv/nsrl/RDS.db -o /var/log/sweep.ndjson /",
            "hashsweep scan --offline --archives -o evidence.csv /mnt/evidence",
        ],
    ),
    (
        "hash",
        &[
            "hashsweep hash /usr/bin > sums.txt && sha256sum -c sums.txt",
            "hashsweep hash --md5 --archives ~/Downloads | hashsweep lookup --only detections",
        ],
    ),
    (
        "lookup",
        &[
            "hashsweep lookup 275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            "sha256sum /usr/bin/* | hashsweep lookup --only problems",
            "hashsweep lookup --format json -o answers.json < hashes.txt",
        ],
    ),
    (
        "diff",
        &[
            "hashsweep diff monday.ndjson tuesday.ndjson",
            "hashsweep diff --format csv -o changes.csv old.json new.json",
        ],
    ),
    (
        "serve",
        &[
            "hashsweep serve --tokens /etc/hashsweep/tokens --admin-listen 127.0.0.1:8738",
            "hashsweep serve --tokens tokens --listen 0.0.0.0:8737 --tls-cert gw.pem --tls-key gw.key",
            "METADEFENDER_APIKEY=<endpoint token> hashsweep scan --api-url https://gateway.example.org:8737 /",
        ],
    ),
    (
        "prevalence",
        &[
            "hashsweep prevalence --api-url http://127.0.0.1:8738 44d88612fea8a8f36de82e1278abb02f",
            "hashsweep prevalence --api-url http://gw:8738 --format json 44d88612fea8a8f36de82e1278abb02f",
        ],
    ),
    (
        "check",
        &[
            "hashsweep check",
            "hashsweep check --api-url https://gateway.example.org:8737 --apikey-file /etc/hashsweep/key",
        ],
    ),
    (
        "config",
        &[
            "hashsweep config",
            "hashsweep --config /etc/hashsweep/nightly.toml config serve",
        ],
    ),
    (
        "completions",
        &[
            "hashsweep completions bash > /etc/bash_completion.d/hashsweep",
            "hashsweep completions fish > ~/.config/fish/completions/hashsweep.fish",
        ],
    ),
    (
        "man",
        &[
            "hashsweep man | man -l -",
            "hashsweep man scan > /usr/local/share/man/man1/hashsweep-scan.1",
        ],
    ),
    (
        "yara-check",
        &[
            "hashsweep yara-check rules/",
            "hashsweep yara-check signature-base/yara extra.yar && hashsweep scan --yara rules/ /srv",
        ],
    ),
];

/// The help of the whole command line, shaped: see the module's doc.
pub fn shape(cmd: Command) -> Command {
    let mut cmd = cmd;
    for (sub, shown) in COMMON_SHOWN {
        cmd = sub_of(cmd, sub, |c| {
            COMMON
                .iter()
                .fold(c, |c, id| c.mut_arg(id, |a| a.hide(!shown.contains(id))))
        });
    }
    for (sub, lines) in EXAMPLES {
        cmd = sub_of(cmd, sub, |c| with_examples(c, lines));
    }
    let cmd = sub_of(cmd, "scan", scan);
    let cmd = sub_of(cmd, "serve", |c| {
        SERVE_HEADINGS.iter().fold(c, |c, (heading, ids)| {
            ids.iter()
                .fold(c, |c, id| edit(c, id, |a| a.help_heading(*heading)))
        })
    });
    let cmd = sub_of(cmd, "lookup", |c| formats(c, &[Format::Ecs]));
    sub_of(cmd, "diff", diff)
}

/// `f` applied to the subcommand `name` where this build has it (`serve` and `prevalence` are
/// left out of a build without the `gateway` feature; clap panics on a missing one).
fn sub_of(cmd: Command, name: &str, f: impl FnOnce(Command) -> Command) -> Command {
    if cmd.find_subcommand(name).is_some() {
        cmd.mut_subcommand(name, f)
    } else {
        cmd
    }
}

/// `diff` writes a comparison, not a report: its own words, and no ecs or html.
fn diff(c: Command) -> Command {
    let c = formats(c, &[Format::Ecs, Format::Html]);
    let c = edit(c, "format", |a| {
        a.help(
            "Format of the comparison (default: from -o's extension (.json, .csv, \
             .ndjson/.jsonl), else table on a terminal and ndjson otherwise)",
        )
    });
    edit(c, "output", |a| {
        a.help("Write the comparison to FILE instead of stdout")
    })
}

/// `scan -h` fits a screen: [`SCAN_FIRST`] first, then [`SCAN_ALSO`], each with a one-line
/// help; every other flag only in `--help`, which also has the exit statuses and examples.
fn scan(c: Command) -> Command {
    let ids: Vec<String> = c
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().to_string())
        .collect();
    let c = ids.iter().fold(c, |c, id| {
        let short = SCAN_FIRST
            .iter()
            .chain(SCAN_ALSO)
            .find(|(first, _)| first == id)
            .map(|(_, text)| *text);
        edit(c, id, |a| {
            // The full text as the long help: `--help` and the man page (which shows no short
            // help hidden from `-h`) keep it.
            let a = match a.get_long_help().or(a.get_help()).cloned() {
                Some(long) => a.long_help(long),
                None => a,
            };
            match short {
                Some(text) => a.help(text),
                None => a.hide_short_help(true),
            }
        })
    });
    let c = SCAN_FIRST.iter().enumerate().fold(c, |c, (i, (id, _))| {
        edit(c, id, |a| a.help_heading(None::<&str>).display_order(i))
    });
    c.after_help(SCAN_SHORT_AFTER)
}

/// `--format` offers the formats this subcommand writes; `hidden` are still accepted, so that
/// the subcommand can say which it writes instead (`--format ecs is only for scan`).
fn formats(c: Command, hidden: &'static [Format]) -> Command {
    edit(c, "format", |a| {
        let values = Format::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value().map(|v| v.hide(hidden.contains(f))));
        a.value_parser(PossibleValuesParser::new(values).try_map(|s| Format::from_str(&s, false)))
    })
}

/// Change argument `id` where it is: `Command::mut_arg` moves it last, which reorders the
/// headings (they come in the order of their first argument).
fn edit(c: Command, id: &str, f: impl FnOnce(Arg) -> Arg) -> Command {
    debug_assert!(
        c.get_arguments().any(|a| a.get_id() == id),
        "{} has no argument {id}",
        c.get_name()
    );
    let mut f = Some(f);
    c.mut_args(|a| match f.take_if(|_| a.get_id() == id) {
        Some(f) => f(a),
        None => a,
    })
}

/// `--help` ends with `lines`, after what it said there before (the exit statuses, say).
fn with_examples(c: Command, lines: &[&str]) -> Command {
    let mut text = c
        .get_after_long_help()
        .or(c.get_after_help())
        .map(|t| format!("{}\n\n", t.to_string().trim_end()))
        .unwrap_or_default();
    text.push_str("Examples:");
    for l in lines {
        text.push_str("\n  ");
        text.push_str(l);
    }
    c.after_long_help(text)
}

/// A size as `--help` shows it and `parse_size` reads it back: `400M`, not `419430400`.
pub fn size_text(bytes: u64) -> &'static str {
    leak(hashsweep::scan::sizes::flag_size(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_size;
    #[cfg(feature = "gateway")]
    use crate::cli::{command, try_parse_from};

    #[test]
    fn sizes_are_shown_as_sizes_and_read_back() {
        for (bytes, text) in [
            (400 << 20, "400M"),
            (100 << 20, "100M"),
            (2 << 30, "2G"),
            (1536, "1536"),
            (64 << 10, "64K"),
            (1000, "1000"),
            (0, "0"),
        ] {
            assert_eq!(size_text(bytes), text);
            assert_eq!(parse_size(text).unwrap(), bytes, "{text}");
        }
    }

    /// Every subcommand is in each table, and every name in them is a subcommand.
    // Names `serve` and `prevalence`, which only the gateway feature builds.
    #[cfg(feature = "gateway")]
    #[test]
    fn the_tables_name_every_subcommand() {
        let c = command();
        let subs: Vec<&str> = c.get_subcommands().map(|s| s.get_name()).collect();
        let mut shown: Vec<&str> = COMMON_SHOWN.iter().map(|(s, _)| *s).collect();
        let mut examples: Vec<&str> = EXAMPLES.iter().map(|(s, _)| *s).collect();
        let mut want = subs.clone();
        want.sort_unstable();
        shown.sort_unstable();
        examples.sort_unstable();
        assert_eq!(shown, want);
        assert_eq!(examples, want);
    }

    /// The words of one shell command line: single and double quotes group; a `<placeholder>`
    /// is part of its word; `<` and `>` alone are redirections (words of their own).
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur: Option<String> = None;
        let mut quote = None;
        let mut chars = line.chars().peekable();
        while let Some(ch) = chars.next() {
            match (quote, ch) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => cur.get_or_insert_default().push(c),
                (None, '\'' | '"') => {
                    quote = Some(ch);
                    cur.get_or_insert_default();
                }
                (None, '<') if chars.peek().is_some_and(|c| c.is_alphanumeric()) => {
                    quote = Some('>');
                    cur.get_or_insert_default().push('<');
                }
                (None, c) if c.is_whitespace() => out.extend(cur.take()),
                (None, c) => cur.get_or_insert_default().push(c),
            }
        }
        out.extend(cur);
        out
    }

    /// Every `hashsweep ...` in the examples parses: its flags exist, with values they take.
    /// Shell operators end a command; `VAR=value` before it is the environment.
    // Names `serve` and `prevalence`, which only the gateway feature builds.
    #[cfg(feature = "gateway")]
    #[test]
    fn every_example_parses() {
        let mut seen = 0;
        for (sub, lines) in EXAMPLES {
            assert!(
                (2..=3).contains(&lines.len()),
                "{sub}: two or three examples"
            );
            for line in *lines {
                assert!(line.len() <= 96, "{line}: wraps at 100 columns");
                let mut rest = line.to_string();
                for op in ["&&", "|"] {
                    rest = rest.replace(op, "\n");
                }
                for part in rest.lines() {
                    let w = words(part);
                    let w: Vec<String> = w
                        .into_iter()
                        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                        .take_while(|w| !matches!(w.as_str(), ">" | "<"))
                        .collect();
                    if w.first().map(String::as_str) != Some("hashsweep") {
                        continue;
                    }
                    try_parse_from(&w).unwrap_or_else(|e| panic!("{line}: {e}"));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 22, "{seen} commands parsed");
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            words("A=<a b> hashsweep 'x y' \"\" > f < g"),
            ["A=<a b", "hashsweep", "x y", "", ">", "f", "<", "g"]
        );
    }
}
