//! Human table: one line per path, detections first (the caller sorts), paths escaped so that
//! one record stays one line whatever bytes the name holds. Digests are shown whole when the
//! terminal is wide enough for them (or with `--wide`), else their first 16 digits; with
//! `--details` a threat column names what the engines found.

use std::io::{self, Write};
use std::path::Path;

use anstyle::{AnsiColor, Style};

use super::{Columns, Record, Removed, Reporter, Summary, human_bytes, threat_names};
use hashsweep_known::packages::PackageCheck;
use hashsweep_lookup::Verdict;

/// Digits of a digest shown in a narrow table.
const SHORT: usize = 16;
/// Width of the threat column.
const THREAT: usize = 32;

/// The terminal width from which the table shows whole SHA-256 digests without `--wide`: the
/// fixed columns, 64 digits, and room for a path.
pub const FULL_DIGEST_WIDTH: usize = 22 + 1 + 5 + 1 + 10 + 2 + 64 + 2 + 40;

pub(super) struct TableReporter<'w> {
    out: Box<dyn Write + 'w>,
    header_done: bool,
    cols: Columns,
    /// Width of the digest column.
    digest: usize,
}

impl<'w> TableReporter<'w> {
    pub(super) fn new(out: Box<dyn Write + 'w>, cols: Columns) -> Self {
        TableReporter {
            out,
            header_done: false,
            digest: if cols.wide { 64 } else { SHORT },
            cols,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_done {
            return Ok(());
        }
        self.header_done = true;
        let name = self.cols.digest_header.unwrap_or("SHA256");
        write!(
            self.out,
            "{:<22} {:>5} {:>10}  {:<w$}  ",
            "VERDICT",
            "AVS",
            "SIZE",
            name,
            w = self.digest
        )?;
        if self.cols.details {
            write!(self.out, "{:<THREAT$}  ", "THREAT")?;
        }
        writeln!(self.out, "PATH")
    }

    fn digest<'h>(&self, h: Option<&'h str>) -> &'h str {
        h.map(|h| &h[..h.len().min(self.digest)]).unwrap_or("-")
    }
}

/// The colour of a verdict word on a terminal.
fn style(v: &Verdict) -> Style {
    let c = match v {
        Verdict::Infected => AnsiColor::Red,
        Verdict::Suspicious | Verdict::Error => AnsiColor::Yellow,
        Verdict::Deferred | Verdict::Other(_) => AnsiColor::Magenta,
        Verdict::Clean | Verdict::KnownGood => AnsiColor::Green,
        _ => return Style::new(),
    };
    let s = Style::new().fg_color(Some(c.into()));
    if v.is_detection() { s.bold() } else { s }
}

/// `s` cut to `n` characters, with `…` when it was longer.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

impl Reporter for TableReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        self.header()?;
        let avs = match r.answer {
            Some(a) if a.total_detected_avs >= 0 => a.total_detected_avs.to_string(),
            _ => "-".into(),
        };
        let size = r.size.map(human_bytes).unwrap_or_else(|| "-".into());
        let hash = self.digest(
            r.sha256
                .as_deref()
                .or(r.sha1.as_deref())
                .or(r.md5.as_deref()),
        );
        let path = match r.path {
            Some(p) => escape_path(p),
            None => "-".into(),
        };
        let word = format!("{:<22}", r.verdict.to_string());
        if self.cols.color {
            let st = style(&r.verdict);
            write!(self.out, "{st}{word}{st:#}")?;
        } else {
            self.out.write_all(word.as_bytes())?;
        }
        write!(
            self.out,
            " {:>5} {:>10}  {:<w$}  ",
            avs,
            size,
            hash,
            w = self.digest
        )?;
        if self.cols.details {
            let threats = r.answer.map(threat_names).unwrap_or_default();
            let t = if threats.is_empty() {
                "-".to_string()
            } else {
                escape_for_line(threats.join(", ").as_bytes())
            };
            write!(self.out, "{:<THREAT$}  ", fit(&t, THREAT))?;
        }
        self.out.write_all(path.as_bytes())?;
        if let Some(t) = r.stale_text() {
            write!(self.out, "  ({t})")?;
        }
        if let Some(c) = r.change {
            write!(self.out, "  [{}]", c.as_str())?;
        }
        if let Some(e) = r.error.or(r.note) {
            write!(self.out, "  ({})", escape_for_line(e.as_bytes()))?;
        }
        // The --yara rules that matched (the verdict alone does not say a rule made it).
        if let Some(hits) = r.yara {
            let names = super::rules::names(hits);
            write!(self.out, "  [yara: {}]", escape_for_line(names.as_bytes()))?;
        }
        // A difference from the package says more than a match (the verdict says that).
        if matches!(
            r.package_check,
            Some(PackageCheck::Modified | PackageCheck::ConfigChanged)
        ) && let Some(t) = super::html::package_text(r)
        {
            write!(self.out, "  [{}]", escape_for_line(t.as_bytes()))?;
        }
        writeln!(self.out)
    }

    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        self.header()?;
        let size = r.size.map(human_bytes).unwrap_or_else(|| "-".into());
        let hash = self.digest(r.sha256.as_deref());
        let path = escape_path(r.path);
        write!(
            self.out,
            "{:<22} {:>5} {:>10}  {:<w$}  ",
            "-",
            "-",
            size,
            hash,
            w = self.digest
        )?;
        if self.cols.details {
            write!(self.out, "{:<THREAT$}  ", "-")?;
        }
        writeln!(self.out, "{path}  [removed]")
    }

    fn finish(&mut self, _: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

/// Printable on one line: control characters and bytes that are not UTF-8 become `\n`, `\t`,
/// `\xNN`; a backslash is doubled, so the escaping is unambiguous.
pub fn escape_for_line(bytes: &[u8]) -> String {
    escape(bytes, false)
}

/// A path printable on one line: [`escape_for_line`], except that on Windows the separator
/// `\` is left as it is (a Windows name holds neither `\` nor control characters, so only a
/// name that is not valid UTF-16 is escaped, as `\xNN` of its WTF-8 bytes).
pub fn escape_path(p: &Path) -> String {
    escape(p.as_os_str().as_encoded_bytes(), cfg!(windows))
}

fn escape(bytes: &[u8], backslash_is_separator: bool) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' if !backslash_is_separator => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter;
    use hashsweep_lookup::{Answer, EngineResult};

    #[test]
    fn escapes_keep_one_line_and_are_unambiguous() {
        assert_eq!(escape_for_line(b"a\nb\\n\tc\xff"), "a\\nb\\\\n\\tc\\xff");
        assert_eq!(escape_for_line("ünï".as_bytes()), "ünï");
    }

    /// Windows' separator is shown as it is, not doubled; elsewhere a backslash in a name is.
    #[test]
    fn a_path_keeps_its_own_separator() {
        let shown = escape_path(Path::new("dir\\sub\\f\n"));
        if cfg!(windows) {
            assert_eq!(shown, "dir\\sub\\f\\n");
        } else {
            assert_eq!(shown, "dir\\\\sub\\\\f\\n");
        }
    }

    fn render(cols: Columns, r: &Record<'_>) -> String {
        let mut buf = Vec::new();
        {
            let mut t = reporter(super::super::Format::Table, Box::new(&mut buf), cols);
            t.record(r).unwrap();
            t.finish(&Summary::default()).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    const SHA: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn infected(a: &Answer) -> Record<'_> {
        Record {
            sha256: Some(SHA.into()),
            answer: Some(a),
            ..Record::new(Some(Path::new("/srv/eicar.com")), Verdict::Infected)
        }
    }

    fn answer() -> Answer {
        let engine = |e: &str, t: &str| EngineResult {
            engine: e.into(),
            threat_found: t.into(),
            scan_result_i: Some(1),
            def_time: None,
        };
        Answer {
            scan_result_i: 1,
            total_detected_avs: 2,
            data_id: None,
            details: Some(Box::new([
                engine("A", "EICAR-Test-File"),
                engine("B", ""),
                engine("C", "EICAR-Test-File"),
                engine("D", "Eicar\nTest"),
            ])),
            hosts: None,
        }
    }

    #[test]
    fn wide_tables_show_the_whole_digest_and_narrow_ones_sixteen_digits() {
        let a = answer();
        let wide = render(
            Columns {
                wide: true,
                ..Columns::default()
            },
            &infected(&a),
        );
        assert!(wide.lines().nth(1).unwrap().contains(SHA), "{wide}");
        let narrow = render(Columns::default(), &infected(&a));
        let row = narrow.lines().nth(1).unwrap();
        assert!(!row.contains(SHA) && row.contains(&SHA[..16]), "{narrow}");
    }

    #[test]
    fn details_add_a_threat_column_with_distinct_escaped_names() {
        let a = answer();
        let out = render(
            Columns {
                details: true,
                ..Columns::default()
            },
            &infected(&a),
        );
        let mut lines = out.lines();
        assert!(lines.next().unwrap().contains("THREAT"), "{out}");
        let row = lines.next().unwrap();
        assert!(row.contains("EICAR-Test-File, Eicar\\nTest"), "{out}");
        assert_eq!(row.matches("EICAR-Test-File").count(), 1, "{out}");
        let plain = render(Columns::default(), &infected(&a));
        assert!(
            !plain.contains("THREAT") && !plain.contains("EICAR"),
            "{plain}"
        );
    }

    #[test]
    fn the_digest_header_names_what_is_shown_and_colour_only_when_asked() {
        let a = answer();
        let out = render(
            Columns {
                digest_header: Some("MD5"),
                ..Columns::default()
            },
            &infected(&a),
        );
        assert!(out.lines().next().unwrap().contains(" MD5 "), "{out}");
        assert!(!out.contains('\x1b'), "{out:?}");
        let coloured = render(
            Columns {
                color: true,
                ..Columns::default()
            },
            &infected(&a),
        );
        assert!(coloured.contains("\x1b["), "{coloured:?}");
    }
}
