//! `hashsweep completions` and `hashsweep man`: generated from the flags, so every flag that
//! `--help` shows is in them, with the same defaults.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;

use crate::util::*;

fn stdout_of(args: &[&str]) -> String {
    let out = run(cmd().args(args));
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The long flags (`--name`) a help text shows.
fn long_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 2 && w.starts_with("--") && !w.starts_with("---"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_cover_every_flag_of_every_shell() {
    let scan_flags = long_flags(&stdout_of(&["scan", "--help"]));
    assert!(scan_flags.contains("--max-size"), "{scan_flags:?}");
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for flag in &scan_flags {
            // fish writes `-l max-size`; the others spell the flag out.
            let name = flag.trim_start_matches("--");
            assert!(
                script.contains(flag.as_str()) || script.contains(&format!("-l {name}")),
                "{shell} completion lacks {flag}"
            );
        }
        for sub in [
            "scan",
            "hash",
            "lookup",
            "diff",
            "serve",
            "completions",
            "man",
        ] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    let out = run(cmd().args(["completions", "tcsh"]));
    assert_eq!(code(&out), 2, "an unknown shell is a usage error");
}

#[test]
#[cfg(unix)]
fn bash_completion_is_valid_bash() {
    let script = stdout_of(&["completions", "bash"]);
    let mut bash = match std::process::Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(b) => b,
        Err(_) => return skip("bash is not installed"),
    };
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(bash.wait().unwrap().success(), "bash -n rejects the script");
}

#[test]
fn man_pages_match_help() {
    let main = stdout_of(&["man"]);
    assert!(main.contains(".TH hashsweep 1"), "{main}");
    // The exit status table keeps its columns: unfilled (.nf ... .fi), hyphens escaped.
    let notes = main
        .split_once(".SH NOTES\n.nf\n")
        .expect("a NOTES section, unfilled")
        .1;
    let notes = notes.split_once("\n.fi\n").expect("NOTES ends with .fi").0;
    assert!(
        notes.contains(
            "\n  1  at least one detection (verdict infected or suspicious, or a \\-\\-yara rule \
             match)\n"
        ),
        "{notes}"
    );
    assert!(
        notes.contains("\n\\-\\-apikey\\-file; it is never taken"),
        "{notes}"
    );
    for sub in ["scan", "hash", "lookup", "diff", "serve"] {
        assert!(
            main.contains(&format!("hashsweep\\-{sub}(1)")),
            "main page lacks {sub}"
        );
        let help = stdout_of(&[sub, "--help"]);
        let page = stdout_of(&["man", sub]);
        assert!(page.contains(&format!(".TH hashsweep-{sub} 1")), "{page}");
        for flag in long_flags(&help) {
            let roff = flag.replace('-', "\\-");
            assert!(page.contains(&roff), "hashsweep-{sub}(1) lacks {flag}");
        }
        // The defaults filled in per subcommand (e.g. --timeout) are the ones --help shows.
        for (_, rest) in help.lines().filter_map(|l| l.split_once("[default: ")) {
            let default = format!("[default: {rest}").replace('-', "\\-");
            assert!(
                page.contains(&default),
                "hashsweep-{sub}(1) lacks {default:?}"
            );
        }
    }
    let out = run(cmd().args(["man", "nope"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no subcommand \"nope\""),
        "{}",
        stderr(&out)
    );
}
