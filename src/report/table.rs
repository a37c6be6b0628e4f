//! Human table: one line per path, detections first (the caller sorts), paths escaped so that
//! one record stays one line whatever bytes the name holds.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use super::{Record, Removed, Reporter, Summary, human_bytes};

pub(super) struct TableReporter<'w> {
    out: Box<dyn Write + 'w>,
    header_done: bool,
}

impl<'w> TableReporter<'w> {
    pub(super) fn new(out: Box<dyn Write + 'w>) -> Self {
        TableReporter {
            out,
            header_done: false,
        }
    }
}

impl Reporter for TableReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        if !self.header_done {
            writeln!(
                self.out,
                "{:<22} {:>5} {:>10}  {:<16}  PATH",
                "VERDICT", "AVS", "SIZE", "SHA256"
            )?;
            self.header_done = true;
        }
        let avs = match r.answer {
            Some(a) if a.total_detected_avs >= 0 => a.total_detected_avs.to_string(),
            _ => "-".into(),
        };
        let size = r.size.map(human_bytes).unwrap_or_else(|| "-".into());
        let hash = r
            .sha256
            .as_deref()
            .or(r.sha1.as_deref())
            .or(r.md5.as_deref())
            .map(|h| &h[..h.len().min(16)])
            .unwrap_or("-");
        let path = match r.path {
            Some(p) => escape_for_line(p.as_os_str().as_bytes()),
            None => "-".into(),
        };
        write!(
            self.out,
            "{:<22} {:>5} {:>10}  {:<16}  {}",
            r.verdict.to_string(),
            avs,
            size,
            hash,
            path
        )?;
        if let Some(c) = r.change {
            write!(self.out, "  [{}]", c.as_str())?;
        }
        if let Some(e) = r.error.or(r.note) {
            write!(self.out, "  ({})", escape_for_line(e.as_bytes()))?;
        }
        writeln!(self.out)
    }

    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        let size = r.size.map(human_bytes).unwrap_or_else(|| "-".into());
        let hash = r
            .sha256
            .as_deref()
            .map(|h| &h[..h.len().min(16)])
            .unwrap_or("-");
        let path = escape_for_line(r.path.as_os_str().as_bytes());
        writeln!(
            self.out,
            "{:<22} {:>5} {:>10}  {:<16}  {}  [removed]",
            "-", "-", size, hash, path
        )
    }

    fn finish(&mut self, _: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

/// Printable on one line: control characters and bytes that are not UTF-8 become `\n`, `\t`,
/// `\xNN`; a backslash is doubled, so the escaping is unambiguous.
pub fn escape_for_line(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
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

    #[test]
    fn escapes_keep_one_line_and_are_unambiguous() {
        assert_eq!(escape_for_line(b"a\nb\\n\tc\xff"), "a\\nb\\\\n\\tc\\xff");
        assert_eq!(escape_for_line("ünï".as_bytes()), "ünï");
    }
}
