//! The help as a newcomer meets it: `scan -h` fits a screen with the first-sweep flags first,
//! every subcommand's `--help` ends with examples, each shows only the flags that apply to it,
//! `serve --help` is grouped, sizes read as sizes and counts agree with their nouns, in help
//! and in messages.

use crate::util::*;

/// Help text at 100 columns (clap wraps at `COLUMNS` when stdout is not a terminal).
fn help(args: &[&str]) -> String {
    let out = run(cmd().env("COLUMNS", "100").args(args));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// Every subcommand, as `hashsweep --help` lists them.
fn subcommands() -> Vec<String> {
    let top = help(&["--help"]);
    let list = top.split_once("Commands:\n").expect("a Commands section").1;
    let list = list.split("\n\n").next().unwrap_or_default();
    let subs: Vec<String> = list
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_owned)
        .collect();
    assert!(subs.len() >= 10, "{subs:?}");
    subs
}

/// The long flags of the option lines (`  -o, --output <FILE>  ...`), in order.
fn option_lines(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| l.starts_with("  -") || l.starts_with("      --"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.split(['[', '<', '=']).next().unwrap_or(w).to_string())
        })
        .collect()
}

#[test]
fn scan_short_help_fits_a_screen_with_the_first_sweep_flags_first() {
    let short = help(&["scan", "-h"]);
    let lines = short.lines().count();
    assert!(
        lines <= 45,
        "scan -h is {lines} lines at 100 columns:\n{short}"
    );
    let flags = option_lines(&short);
    assert_eq!(
        flags[..6],
        [
            "--output",
            "--format",
            "--only",
            "--archives",
            "--budget",
            "--known-good"
        ],
        "{short}"
    );
    // The rest is in --help, which keeps every flag and its full text.
    let long = help(&["scan", "--help"]);
    for flag in [
        "--archive-depth",
        "--upload-unknown",
        "--verdict-ttl",
        "--io-depth",
    ] {
        assert!(!short.contains(flag), "{flag} in scan -h");
        assert!(long.contains(flag), "{flag} not in scan --help");
    }
    assert!(long.contains("Exit status:") && short.contains("--help"));
}

#[test]
fn every_subcommands_long_help_ends_with_examples() {
    for sub in subcommands() {
        let text = help(&[&sub, "--help"]);
        let (_, examples) = text
            .rsplit_once("\nExamples:\n")
            .unwrap_or_else(|| panic!("{sub} --help has no examples:\n{text}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            (2..=3).contains(&lines.len()),
            "{sub}: {} examples: {examples}",
            lines.len()
        );
        for l in &lines {
            assert!(
                l.starts_with("  ") && l.contains("hashsweep "),
                "{sub}: not an example: {l:?}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("hashsweep {sub}"))),
            "{sub}: no example runs it"
        );
    }
}

#[test]
fn options_are_shown_only_where_they_apply() {
    // Nothing to retry, quiet or show progress for.
    for sub in [&["man"][..], &["completions"], &["hash"], &["config"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let text = help(&args);
        for flag in ["--verbose", "--no-progress", "retr"] {
            assert!(!text.contains(flag), "{args:?} shows {flag}:\n{text}");
        }
    }
    // ... though they are still taken there, as when they were global flags.
    let out = run(cmd().args(["man", "-v"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // check sends one request: no batch flags.
    let check = help(&["check", "--help"]);
    for flag in [
        "--batch-size",
        "--concurrency",
        "--batch-wait",
        "--rate <N>",
    ] {
        assert!(!check.contains(flag), "check shows {flag}");
    }
    assert!(check.contains("--retries") && check.contains("--verbose"));
    // diff writes table, json, ndjson or csv; lookup no ecs; scan all of them.
    let formats = |sub: &str| {
        let text = help(&[sub, "--help"]);
        // From --format's line to the next option's.
        let from = text.find("--format <FORMAT>").expect("--format");
        text[from..]
            .lines()
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !(l.starts_with("  -") || l.starts_with("      --")))
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let diff = formats("diff");
    assert!(diff.contains("csv"), "{diff}");
    assert!(!diff.contains("html") && !diff.contains("ecs"), "{diff}");
    let lookup = formats("lookup");
    assert!(
        lookup.contains("html") && !lookup.contains("ecs"),
        "{lookup}"
    );
    let scan = formats("scan");
    assert!(scan.contains("html") && scan.contains("ecs"), "{scan}");
    // Hidden, not gone: the refusal says what diff writes.
    let t = Tree::new();
    let a = t.file("a.ndjson", b"");
    let out = run(cmd().args(["diff", "--format", "html"]).arg(&a).arg(&a));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("diff writes table, json, ndjson or csv"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_help_is_grouped_and_says_where_metrics_are() {
    let text = help(&["serve", "--help"]);
    let headings: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        .collect();
    for h in [
        "Listeners:",
        "Endpoints:",
        "Connections:",
        "Verdict store:",
        "Upstream:",
        "Logs:",
    ] {
        assert!(headings.contains(&h), "{h} in {headings:?}");
    }
    // A flag is under the heading of what it is about.
    let under = |flag: &str| {
        let at = text.find(flag).unwrap_or_else(|| panic!("{flag}"));
        text[..at]
            .lines()
            .rev()
            .find(|l| !l.starts_with(' ') && l.ends_with(':'))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(under("--admin-listen <ADDR>"), "Listeners:");
    assert_eq!(under("--client-budget <N>"), "Endpoints:");
    assert_eq!(under("--idle-timeout <DURATION>"), "Connections:");
    assert_eq!(under("--store-key-file <PATH>"), "Verdict store:");
    assert_eq!(under("--batch-size <N>"), "Upstream:");
    let metrics = text
        .split("\n\n")
        .find(|p| p.contains("GET /metrics"))
        .expect("a paragraph on /metrics");
    assert!(
        metrics.contains("admin listener (--admin-listen)"),
        "{metrics}"
    );
}

#[test]
fn sizes_are_shown_as_sizes() {
    let text = help(&["scan", "--help"]);
    let default_of = |flag: &str| {
        let at = text.find(flag).unwrap_or_else(|| panic!("{flag}"));
        let rest = &text[at..];
        let d = rest.find("[default: ").expect("a default") + "[default: ".len();
        rest[d..d + rest[d..].find(']').expect("]")].to_string()
    };
    assert_eq!(default_of("--archive-max-bytes"), "400M");
    assert_eq!(default_of("--archive-max-member"), "100M");
    // And they are read back as the same number of bytes: a config file may say what help says.
    let out = run(cmd().args(["config", "scan"]));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("archive-max-bytes = \"400M\""), "{shown}");
    assert!(!text.contains("419430400") && !shown.contains("419430400"));
}

/// One file, one digest, one request: the summary says so in the singular; a limit in a skip
/// reason reads as it was given (`1K`), not as a byte count.
#[test]
fn messages_count_in_the_singular_and_name_limits_as_sizes() {
    let mock = MockServer::start(Some(KEY)).unwrap();
    let t = Tree::new();
    t.file("eicar.com", EICAR);
    t.file("big.bin", &[7u8; 2048]);
    let out = run(scan_cmd(&mock, t.path()).args(["--max-size", "1K"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    for said in ["hashsweep: 1 file,", "1 distinct digest,", "1 request sent"] {
        assert!(err.contains(said), "{said:?} in {err}");
    }
    for wrong in ["1 files", "1 distinct digests", "1 requests"] {
        assert!(!err.contains(wrong), "{wrong:?} in {err}");
    }
    let big = rec(&ndjson(&out), "big.bin").clone();
    let reason = big.to_string();
    assert!(
        reason.contains("larger than --max-size (2048 bytes > 1K)"),
        "{reason}"
    );
}
