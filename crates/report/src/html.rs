//! `--format html`: one self-contained page to read a sweep in a browser, offline. The header
//! says what ran (host, roots, time, the known-file sets used) and counts the verdicts in a
//! small inline SVG chart; detections come first, each with its engines and threat names
//! (`--details`) and a link to the vendor's result page for its digest; then every other record
//! in a table that a few lines of inline script filter by verdict and search
//! (`report.html#verdict=unknown&q=tmp` opens it filtered).
//!
//! Nothing is loaded from anywhere: no external script, style, font or image, and a
//! Content-Security-Policy that forbids them. Every name and word from the tree or the
//! service is escaped (file names are hostile input). Detections are written as they come;
//! the other rows go to an unnamed temporary file and are copied in at the end, so records in
//! any order give the same page and a big tree does not sit in memory.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};

use super::{Columns, Record, Removed, Reporter, Summary, counted, human_bytes, threat_names};
use hashsweep_core::digest::Algo;
use hashsweep_lookup::Verdict;

/// The vendor's page for a digest's result; the digest (hex) follows, then [`VENDOR_PAGE_END`].
pub const VENDOR_PAGE: &str = "https://metadefender.opswat.com/results/file/";
pub const VENDOR_PAGE_END: &str = "/hash/overview";

pub(super) struct HtmlReporter<'w> {
    out: Box<dyn Write + 'w>,
    cols: Columns,
    /// Rows of the second table, until the detections are all written.
    others: Option<BufWriter<File>>,
    /// Detections written so far.
    detections: u64,
    began: bool,
}

impl<'w> HtmlReporter<'w> {
    pub(super) fn new(out: Box<dyn Write + 'w>, cols: Columns) -> Self {
        HtmlReporter {
            out,
            cols,
            others: None,
            detections: 0,
            began: false,
        }
    }

    fn others(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.others.is_none() {
            self.others = Some(BufWriter::new(tempfile::tempfile()?));
        }
        Ok(self.others.as_mut().expect("set above"))
    }

    /// The digest the service was asked about, for the vendor's link.
    fn looked_up<'r>(&self, r: &'r Record<'_>) -> Option<&'r str> {
        match self.cols.lookup_algo {
            Some(Algo::Md5) => r.md5.as_deref(),
            Some(Algo::Sha1) => r.sha1.as_deref(),
            _ => r.sha256.as_deref(),
        }
        .or(r.sha256.as_deref())
        .or(r.sha1.as_deref())
        .or(r.md5.as_deref())
    }

    fn detection(&mut self, r: &Record<'_>) -> io::Result<()> {
        if self.detections == 0 {
            self.out.write_all(b"<div class=\"dets\">\n")?;
        }
        self.detections += 1;
        let path = path_text(r);
        let v = r.verdict.to_string();
        let avs = r
            .answer
            .filter(|a| a.total_detected_avs >= 0)
            .map_or("-".to_string(), |a| a.total_detected_avs.to_string());
        writeln!(
            self.out,
            "<article class=\"det v-{}\"><h3><span class=\"verdict\">{}</span> <span class=\"path\">{}</span></h3>",
            class(&r.verdict),
            esc(&v),
            esc(&path)
        )?;
        write!(self.out, "<dl>")?;
        write!(self.out, "<dt>engines detecting</dt><dd>{}</dd>", esc(&avs))?;
        if let Some(s) = r.size {
            write!(self.out, "<dt>size</dt><dd>{}</dd>", esc(&human_bytes(s)))?;
        }
        if let Some(h) = self.looked_up(r) {
            write!(self.out, "<dt>digest</dt><dd>{}</dd>", digest_link(h))?;
        }
        if let Some(src) = r.source {
            write!(self.out, "<dt>source</dt><dd>{}</dd>", esc(src))?;
        }
        if let Some(t) = package_text(r) {
            write!(self.out, "<dt>package</dt><dd>{}</dd>", esc(&t))?;
        }
        if let Some(e) = r.error.or(r.note) {
            write!(self.out, "<dt>note</dt><dd>{}</dd>", esc(e))?;
        }
        if let Some(c) = r.change {
            write!(self.out, "<dt>change</dt><dd>{}</dd>", esc(c.as_str()))?;
        }
        if let Some(t) = r.stale_text() {
            write!(self.out, "<dt>answer</dt><dd>{}</dd>", esc(&t))?;
        }
        // The --yara rules that matched, each with what its metadata says of it.
        for hit in r.yara.unwrap_or_default() {
            write!(self.out, "<dt>YARA rule</dt><dd><b>{}</b>", esc(&hit.rule))?;
            for key in ["description", "author", "reference"] {
                if let Some(v) = hit.meta_str(key) {
                    write!(self.out, "<br>{key}: {}", esc(v))?;
                }
            }
            write!(self.out, "</dd>")?;
        }
        writeln!(self.out, "</dl>")?;
        if let Some(a) = r.answer {
            let names = threat_names(a);
            if !names.is_empty() {
                writeln!(
                    self.out,
                    "<p class=\"threats\">Threats: {}</p>",
                    names
                        .iter()
                        .map(|n| format!("<b>{}</b>", esc(n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
            let found: Vec<_> = a
                .details
                .iter()
                .flatten()
                .filter(|e| !e.threat_found.trim().is_empty() || e.scan_result_i.unwrap_or(0) != 0)
                .collect();
            if !found.is_empty() {
                writeln!(
                    self.out,
                    "<table class=\"engines\"><thead><tr><th>engine</th><th>threat</th><th>definitions</th></tr></thead><tbody>"
                )?;
                for e in found {
                    writeln!(
                        self.out,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&e.engine),
                        esc(&e.threat_found),
                        esc(e.def_time.as_deref().unwrap_or("-"))
                    )?;
                }
                writeln!(self.out, "</tbody></table>")?;
            }
        }
        writeln!(self.out, "</article>")
    }

    fn other_row(&mut self, verdict: &str, cls: &str, cells: [String; 4]) -> io::Result<()> {
        let [path, size, digest, note] = cells;
        let o = self.others()?;
        writeln!(
            o,
            "<tr data-verdict=\"{}\"><td class=\"v-{cls}\">{}</td><td class=\"path\">{path}</td><td class=\"num\">{size}</td><td class=\"mono\">{digest}</td><td>{note}</td></tr>",
            esc(verdict),
            esc(verdict),
        )
    }
}

impl Reporter for HtmlReporter<'_> {
    fn begin(&mut self, s: &Summary) -> io::Result<()> {
        self.began = true;
        let run = s.run.clone().unwrap_or_default();
        let host = run.host.as_deref().unwrap_or("-");
        write!(
            self.out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>hashsweep report: {}</title>\n<style>{STYLE}</style></head><body>\n",
            esc(host)
        )?;
        writeln!(
            self.out,
            "<header><h1>hashsweep report</h1><dl class=\"run\">"
        )?;
        writeln!(self.out, "<dt>host</dt><dd id=\"host\">{}</dd>", esc(host))?;
        let roots: Vec<String> = run.roots.iter().map(|r| esc(r)).collect();
        writeln!(
            self.out,
            "<dt>roots</dt><dd id=\"roots\">{}</dd>",
            if roots.is_empty() {
                "-".into()
            } else {
                roots.join("<br>")
            }
        )?;
        writeln!(
            self.out,
            "<dt>started</dt><dd>{}</dd><dt>finished</dt><dd>{}</dd>",
            esc(run.started_at.as_deref().unwrap_or("-")),
            esc(run.finished_at.as_deref().unwrap_or("-"))
        )?;
        writeln!(
            self.out,
            "<dt>files</dt><dd>{} ({}), {}, {}, {:.1} s</dd>",
            s.files,
            esc(&human_bytes(s.bytes)),
            counted(s.distinct_digests, "distinct digest", "distinct digests"),
            counted(s.requests, "request", "requests"),
            s.elapsed_secs
        )?;
        if !s.known_sets.is_empty() {
            let sets: Vec<String> = s.known_sets.iter().map(|k| esc(&k.human())).collect();
            writeln!(
                self.out,
                "<dt>known sets</dt><dd id=\"known-sets\">{}</dd>",
                sets.join("<br>")
            )?;
        }
        if let Some(y) = &s.yara {
            let line = y.human();
            let line = line.strip_prefix("YARA: ").unwrap_or(&line);
            writeln!(
                self.out,
                "<dt>YARA rules</dt><dd id=\"yara\">{}</dd>",
                esc(line)
            )?;
        }
        if let Some(line) = s.circl_line() {
            let line = line.strip_prefix("CIRCL hashlookup: ").unwrap_or(&line);
            writeln!(
                self.out,
                "<dt>CIRCL hashlookup</dt><dd id=\"circl\">{}</dd>",
                esc(line)
            )?;
        }
        if let Some(p) = &s.packages {
            let dbs: Vec<String> = p
                .databases
                .iter()
                .map(|d| {
                    esc(&format!(
                        "{} {} ({} packages, {} files), read in {:.2} s",
                        d.manager, d.database, d.packages, d.files, d.load_secs
                    ))
                })
                .collect();
            writeln!(
                self.out,
                "<dt>packages</dt><dd id=\"packages\">{}</dd>",
                if dbs.is_empty() {
                    esc(&format!("no package database found under {}", p.root))
                } else {
                    dbs.join("<br>")
                }
            )?;
        }
        if !run.version.is_empty() {
            writeln!(self.out, "<dt>hashsweep</dt><dd>{}</dd>", esc(&run.version))?;
        }
        writeln!(self.out, "</dl>")?;
        chart(&mut self.out, s)?;
        writeln!(self.out, "</header>")?;
        // Files that differ from what their package installed: first, above the detections.
        if let Some(p) = s.packages.as_ref().filter(|p| p.modified > 0) {
            writeln!(
                self.out,
                "<section id=\"modified\"><h2>Modified package files ({})</h2>\n\
                 <p>These files differ from the digest their package recorded when it \
                 installed them (not conffiles): a replaced program or library, or another \
                 installer's doing.</p><ul class=\"modified\">",
                p.modified
            )?;
            for m in &p.all_modified {
                writeln!(self.out, "<li class=\"path\">{}</li>", esc(m))?;
            }
            writeln!(self.out, "</ul></section>")?;
        }
        writeln!(
            self.out,
            "<section id=\"detections\"><h2>Detections ({})</h2>",
            s.detections
        )?;
        if s.detections == 0 {
            writeln!(self.out, "<p class=\"none\">No detections.</p>")?;
        }
        Ok(())
    }

    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        if !self.began {
            self.begin(&Summary::default())?;
        }
        if r.verdict.is_detection() {
            return self.detection(r);
        }
        let v = r.verdict.to_string();
        let digest = self.looked_up(r).map_or("-".to_string(), digest_link);
        let mut note = match (r.error.or(r.note), r.change) {
            (Some(n), Some(c)) => format!("{} [{}]", esc(n), esc(c.as_str())),
            (Some(n), None) => esc(n),
            (None, Some(c)) => format!("[{}]", esc(c.as_str())),
            (None, None) => String::new(),
        };
        if let Some(t) = r.stale_text() {
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(&format!("({})", esc(&t)));
        }
        if let Some(t) = package_text(r).filter(|_| r.package_check.is_some()) {
            if !note.is_empty() {
                note.push(' ');
            }
            note.push_str(&format!("[{}]", esc(&t)));
        }
        let cells = [
            esc(&path_text(r)),
            r.size.map_or("-".into(), |s| esc(&human_bytes(s))),
            digest,
            note,
        ];
        self.other_row(&v, class(&r.verdict), cells)
    }

    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        let cells = [
            esc(&String::from_utf8_lossy(
                r.path.as_os_str().as_encoded_bytes(),
            )),
            r.size.map_or("-".into(), |s| esc(&human_bytes(s))),
            r.sha256.as_deref().map_or("-".into(), esc),
            "[removed]".into(),
        ];
        self.other_row("removed", "removed", cells)
    }

    fn finish(&mut self, s: &Summary) -> io::Result<()> {
        if !self.began {
            self.begin(s)?;
        }
        if self.detections > 0 {
            self.out.write_all(b"</div>\n")?;
        }
        self.out.write_all(b"</section>\n")?;
        writeln!(
            self.out,
            "<section id=\"records\"><h2>Other records</h2>\n<p class=\"controls\">\
             <label>verdict <select id=\"verdict\"><option value=\"\">all</option>"
        )?;
        for (v, n) in s.verdicts.iter().filter(|(v, _)| !v.is_detection()) {
            let w = esc(&v.to_string());
            writeln!(self.out, "<option value=\"{w}\">{w} ({n})</option>")?;
        }
        if s.changes.is_some_and(|c| c.removed > 0) {
            writeln!(self.out, "<option value=\"removed\">removed</option>")?;
        }
        writeln!(
            self.out,
            "</select></label> <label>search <input id=\"q\" type=\"search\" placeholder=\"path, digest, note\"></label> \
             <span id=\"shown\"></span> shown</p>\n<table id=\"others\"><thead><tr><th>verdict</th><th>path</th><th>size</th><th>digest</th><th>note</th></tr></thead><tbody>"
        )?;
        if let Some(o) = self.others.take() {
            let mut f = o.into_inner().map_err(|e| e.into_error())?;
            f.rewind()?;
            io::copy(&mut f, &mut self.out)?;
        }
        writeln!(
            self.out,
            "</tbody></table></section>\n<footer>Digests link to the vendor's result pages \
             (MetaDefender Cloud); this page loads nothing.</footer>\n<script>{SCRIPT}</script>\n</body></html>"
        )?;
        self.out.flush()
    }
}

/// Counts per verdict as horizontal bars, in an inline SVG.
fn chart(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    let rows: Vec<(&Verdict, u64)> = s.verdicts.iter().collect();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let (bar, label, h) = (320.0, 130, 20);
    let height = h * rows.len().max(1);
    writeln!(
        out,
        "<svg id=\"chart\" role=\"img\" aria-label=\"paths per verdict\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\">",
        label + 400
    )?;
    for (i, (v, n)) in rows.iter().enumerate() {
        let y = i * h;
        let w = (*n as f64 / max as f64 * bar).max(1.0);
        writeln!(
            out,
            "<g class=\"v-{}\"><text x=\"0\" y=\"{}\">{}</text><rect x=\"{label}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\"></rect><text x=\"{:.1}\" y=\"{}\">{n}</text></g>",
            class(v),
            y + 14,
            esc(&v.to_string()),
            y + 3,
            h - 6,
            label as f64 + w + 6.0,
            y + 14,
        )?;
    }
    writeln!(out, "</svg>")
}

/// `package modified: dpkg coreutils 9.1-1` (or `match`, `config_changed`, or just the
/// package when nothing was compared).
pub(super) fn package_text(r: &Record<'_>) -> Option<String> {
    let p = r.package?;
    Some(match r.package_check {
        Some(c) => format!(
            "package {}: {} {} {}",
            c.as_str(),
            p.manager,
            p.name,
            p.version
        ),
        None => format!("{} {} {}", p.manager, p.name, p.version),
    })
}

/// The record's path (escaped for one line), or its digest for a bare `lookup` hash.
fn path_text(r: &Record<'_>) -> String {
    match r.path {
        Some(p) => super::escape_path(p),
        None => "-".into(),
    }
}

/// A digest as a link to the vendor's result page (only hex digits are linked).
fn digest_link(h: &str) -> String {
    if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("<a class=\"mono\" href=\"{VENDOR_PAGE}{h}{VENDOR_PAGE_END}\">{h}</a>")
    } else {
        esc(h)
    }
}

/// A CSS class name for a verdict (`other:<name>` is `other`).
fn class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Clean => "clean",
        Verdict::Infected => "infected",
        Verdict::Suspicious => "suspicious",
        Verdict::Unknown => "unknown",
        Verdict::Other(_) => "other",
        Verdict::Error => "error",
        Verdict::Skipped => "skipped",
        Verdict::NotLookedUp => "not_looked_up",
        Verdict::KnownGood => "known_good",
        Verdict::Deferred => "deferred",
    }
}

/// Text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em;margin:0 0 .4em}h2{font-size:1.15em;margin:1.2em 0 .5em}h3{font-size:1em;margin:0 0 .3em}\
dl.run{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0 0 1em}dt{color:#666}dd{margin:0}\
.det dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:.3em 0}\
.det{border-left:4px solid #c00;background:#fff4f4;padding:.6em .9em;margin:0 0 .8em}\
.det.v-suspicious{border-color:#d80;background:#fffaf0}\
#modified{border-left:4px solid #c00;background:#fff4f4;padding:.2em .9em .6em;margin:0 0 .8em}\
.path{font-family:ui-monospace,monospace;overflow-wrap:anywhere}.mono{font-family:ui-monospace,monospace}\
td.path{min-width:18em}td .mono{font-size:.85em}\
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
td.num{text-align:right;white-space:nowrap}\
#chart text{font-size:12px;fill:#333}#chart rect{fill:#888}\
#chart .v-infected rect{fill:#c00}#chart .v-suspicious rect{fill:#d80}#chart .v-error rect{fill:#a60}\
#chart .v-clean rect,#chart .v-known_good rect{fill:#393}#chart .v-deferred rect{fill:#85a}\
td.v-error,td.v-deferred{color:#a60;font-weight:bold}\
.controls input,.controls select{font:inherit}footer{margin-top:2em;color:#666;font-size:.9em}";

/// Filter by verdict and search: reads `#verdict=WORD&q=TEXT` from the address too.
const SCRIPT: &str = r#"(function(){
var q=document.getElementById('q'),v=document.getElementById('verdict'),n=document.getElementById('shown');
var rows=document.querySelectorAll('#others tbody tr');
function apply(){var t=q.value.toLowerCase(),w=v.value,c=0;
for(var i=0;i<rows.length;i++){var r=rows[i];
var ok=(!w||r.getAttribute('data-verdict')===w)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);
if(ok){r.removeAttribute('hidden');c++;}else{r.setAttribute('hidden','');}}
n.textContent=String(c);}
var h=new URLSearchParams(location.hash.slice(1));
if(h.has('verdict')){v.value=h.get('verdict');}
if(h.has('q')){q.value=h.get('q');}
q.addEventListener('input',apply);v.addEventListener('change',apply);apply();
})();"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, RunInfo, reporter};
    use hashsweep_lookup::{Answer, EngineResult};
    #[cfg(unix)]
    use std::ffi::OsStr;
    use std::path::Path;

    const SHA: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    fn page(recs: &[Record<'_>]) -> String {
        let mut s = Summary {
            run: Some(RunInfo {
                host: Some("<host>".into()),
                roots: vec!["/srv/<i>x".into()],
                ..RunInfo::default()
            }),
            ..Summary::default()
        };
        recs.iter().for_each(|r| s.count(r));
        let mut buf = Vec::new();
        {
            let mut w = reporter(Format::Html, Box::new(&mut buf), Columns::default());
            w.begin(&s).unwrap();
            for r in recs {
                w.record(r).unwrap();
            }
            w.finish(&s).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    fn answer() -> Answer {
        Answer {
            scan_result_i: 1,
            total_detected_avs: 1,
            data_id: None,
            details: Some(Box::new([EngineResult {
                engine: "Engine<One>".into(),
                threat_found: "EICAR\"<script>".into(),
                scan_result_i: Some(1),
                def_time: None,
            }])),
            hosts: None,
        }
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there (Windows: platform::tests).
    #[cfg(unix)]
    #[test]
    fn hostile_names_are_escaped_and_detections_come_first_whatever_the_order() {
        let a = answer();
        let evil = Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            b"/t/<img src=x onerror=alert(1)>\n\xff",
        ));
        let recs = [
            Record {
                sha256: Some("ab".repeat(32)),
                ..Record::new(Some(Path::new("/t/clean&dandy")), Verdict::Clean)
            },
            Record {
                sha256: Some(SHA.into()),
                answer: Some(&a),
                ..Record::new(Some(evil), Verdict::Infected)
            },
        ];
        let html = page(&recs);
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<host>") && !html.contains("<i>") && !html.contains("<One>"));
        assert!(html.contains("/srv/&lt;i&gt;x") && html.contains("&lt;host&gt;"));
        assert!(!html.contains("\"<script>"), "{html}");
        assert!(
            html.contains("/t/&lt;img src=x onerror=alert(1)&gt;\\n\\xff"),
            "{html}"
        );
        assert!(html.contains("clean&amp;dandy"));
        assert!(html.contains("Engine&lt;One&gt;") && html.contains("EICAR&quot;&lt;script&gt;"));
        let det = html.find("id=\"detections\"").unwrap();
        let evil_at = html.find("onerror").unwrap();
        let others = html.find("id=\"others\"").unwrap();
        let clean_at = html.find("clean&amp;dandy").unwrap();
        assert!(
            det < evil_at && evil_at < others && others < clean_at,
            "{html}"
        );
        assert!(html.contains(&format!("{VENDOR_PAGE}{SHA}{VENDOR_PAGE_END}")));
        assert_eq!(html.matches("<script>").count(), 1);
    }

    #[test]
    fn the_page_loads_nothing_from_outside() {
        let a = answer();
        let recs = [Record {
            sha256: Some(SHA.into()),
            answer: Some(&a),
            ..Record::new(Some(Path::new("/t/e")), Verdict::Infected)
        }];
        let html = page(&recs);
        for bad in [" src=", "<link", "@import", "url(", "<img", "<iframe"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        // The only addresses are the vendor's result pages (links, not loads) and the SVG
        // namespace.
        for (i, _) in html.match_indices("http") {
            let rest = &html[i..];
            assert!(
                rest.starts_with(VENDOR_PAGE)
                    || rest.starts_with("http://www.w3.org/2000/svg")
                    || rest.starts_with("http-equiv"),
                "{}",
                &rest[..rest.len().min(60)]
            );
        }
        assert!(html.contains("default-src 'none'"));
        assert!(html.contains("<svg id=\"chart\""));
    }
}
