//! `hashsweep completions SHELL` and `hashsweep man [SUBCOMMAND]`: a completion script and the
//! roff man pages, generated from the same clap definition as `--help` (with each subcommand's
//! defaults filled in), so they cannot drift from it.

use std::io::{self, Write};

use hashsweep::Error;

use crate::cli::{CompletionsArgs, ManArgs, command};

/// The binary's name as the completions and man pages spell it.
const BIN: &str = "hashsweep";

pub fn run_completions(args: CompletionsArgs) -> Result<u8, Error> {
    let mut cmd = command();
    // clap_complete panics on a failed write; render into memory, then write (a closed pipe
    // is then an ordinary write error).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    write_stdout(&script)?;
    Ok(0)
}

pub fn run_man(args: ManArgs) -> Result<u8, Error> {
    let page = render_man(args.subcommand.as_deref())?;
    write_stdout(&page)?;
    Ok(0)
}

/// The roff text of hashsweep(1), or of hashsweep-`sub`(1).
pub fn render_man(sub: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut cmd = command().disable_help_subcommand(true);
    // Building sets each subcommand's display name ("hashsweep-scan"), which titles its page.
    cmd.build();
    let page = match sub {
        None => cmd,
        Some(name) => cmd
            .get_subcommands()
            .find(|c| c.get_name() == name)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                Error::Usage(format!(
                    "no subcommand {name:?} (one of: {})",
                    known.join(", ")
                ))
            })?,
    };
    // The after-help text (exit status, how the key is read, the examples) is laid out in
    // columns: it goes in unfilled, as NOTES, where clap_mangen's own EXTRA section would
    // reflow it. The long one, as `--help` shows it.
    let notes = page
        .get_after_long_help()
        .or(page.get_after_help())
        .map(|h| h.to_string());
    let page = page.after_help(None::<&str>).after_long_help(None::<&str>);
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .source(format!("{BIN} {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(Error::Write)?;
    let Some(notes) = notes else { return Ok(out) };
    let mut section = String::from(".SH NOTES\n.nf\n");
    for line in notes.lines() {
        section.push_str(&roff_line(line));
        section.push('\n');
    }
    section.push_str(".fi\n");
    // Before VERSION (the last section), like the EXTRA section it replaces.
    let text = String::from_utf8_lossy(&out).into_owned();
    let at = text.rfind("\n.SH VERSION").map_or(text.len(), |i| i + 1);
    let mut text = text;
    text.insert_str(at, &section);
    Ok(text.into_bytes())
}

/// One line of text as roff shows it literally: backslashes and hyphens escaped, and a leading
/// `.` or `'` (a request) defused.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes).map_err(Error::Write)?;
    stdout.flush().map_err(Error::Write)
}
