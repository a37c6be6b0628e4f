//! Local hash sets for `--known-good` / `--known-bad`. This module owns reading hash lists (bare
//! hex, `sha256sum`/`md5sum`/`sha1sum`/BSD-tag output, hashdeep CSV and NSRL RDS CSV, told apart
//! by their first meaningful line, never by file name), holding them as sorted binary digests per
//! algorithm (never as strings), and the optional on-disk index: one file per source list, kept
//! in a directory the caller names, memory-mapped on later runs and rebuilt when the source's
//! size, mtime, ctime or inode change. NSRL RDSv3 databases (SQLite) are recognised by their
//! header and read by [`super::rds`] into the same kind of table.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest as _, Sha256};

use super::bloom::{self, BloomFilter};
pub use super::error::HashSetError;
use super::hashlist;
use super::ioc::{self, IocMatch, IocOptions, IocSet};
use super::rds::{self, RdsInfo, RdsOptions, RdsTable};
pub use super::stamp::index_names;
use super::stamp::{INDEX_NAME, INDEX_TMP, Stamp};
use hashsweep_core::digest::{Algo, Digest, Digests, hex_lower};

/// The layout a hash list was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One digest per line: bare hex (plain lists, NSRL SHA-1/MD5 lists), `*sum` output or
    /// BSD `ALGO (name) = hex` lines; `#` comments allowed.
    Sums,
    /// hashdeep / md5deep audit files: `%%%%` and `#` header lines, a `%%%% size,md5,...` line
    /// naming the columns, then comma-separated data lines in that order.
    Hashdeep,
    /// CSV whose first line names its columns, at least one of them a hash (`"SHA-1"`, `"MD5"`,
    /// `"SHA-256"`): the NSRL RDS `NSRLFile.txt` layout. Every hash column is taken.
    Csv,
    /// An NSRL RDSv3 SQLite database (minimal or full layout, see [`SourceInfo::rds`]).
    Rds,
}

impl ListFormat {
    fn code(self) -> u64 {
        match self {
            ListFormat::Sums => 1,
            ListFormat::Hashdeep => 2,
            ListFormat::Csv => 3,
            ListFormat::Rds => 4,
        }
    }

    fn from_code(c: u64) -> Option<ListFormat> {
        match c {
            1 => Some(ListFormat::Sums),
            2 => Some(ListFormat::Hashdeep),
            3 => Some(ListFormat::Csv),
            _ => None,
        }
    }
}

/// What was loaded from one source list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub path: PathBuf,
    pub format: ListFormat,
    /// Distinct digests in this list: (md5, sha1, sha256).
    pub counts: (usize, usize, usize),
    /// Lines that held no digest; for an RDS database, `FILE` rows without a valid SHA-256.
    pub skipped_lines: u64,
    /// True when the digests came from an existing on-disk index rather than from parsing.
    pub from_index: bool,
    /// Why the index could not be written, when it could not: the list was still loaded (into
    /// memory), so this is a warning to show, not a failure.
    pub index_error: Option<String>,
    /// For an RDS database: its layout, `VERSION` row and row counts.
    pub rds: Option<RdsInfo>,
    /// When the file itself (not its index) was last modified, for its age in the summary.
    pub modified: Option<std::time::SystemTime>,
}

/// A set of digests from one or more hash lists: sorted binary digests per algorithm, one table
/// per source list (owned, or memory-mapped from the index), looked up by binary search.
#[derive(Default)]
pub struct HashSet {
    tables: Vec<Table>,
    sources: Vec<SourceInfo>,
    /// DCSO Bloom filters (CIRCL hashlookup's): they say "probably known", never a verdict,
    /// so they are not among `tables` (see [`HashSet::bloom_hit`]).
    blooms: Vec<BloomFilter>,
    /// MISP, STIX, MalwareBazaar and ClamAV lists: digests with the entry that names them.
    ioc: IocSet,
    counts: (usize, usize, usize),
    skipped: u64,
}

impl fmt::Debug for HashSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashSet")
            .field("counts", &self.counts)
            .field("skipped", &self.skipped)
            .field("sources", &self.sources)
            .finish()
    }
}

impl HashSet {
    /// Load every list in `paths`. With `index_dir`, each regular file's digests are cached there
    /// as a sorted binary index (created on first use, memory-mapped afterwards, rebuilt when the
    /// source changes); an index that cannot be written is reported in
    /// [`SourceInfo::index_error`] and the list is held in memory instead. The directory must not
    /// be inside a tree being scanned.
    pub fn load(paths: &[PathBuf], index_dir: Option<&Path>) -> Result<HashSet, HashSetError> {
        HashSet::load_with(paths, index_dir, &RdsOptions::default())
    }

    /// [`HashSet::load`], with `rds` saying which application types of an NSRL RDS database
    /// are not known good.
    pub fn load_with(
        paths: &[PathBuf],
        index_dir: Option<&Path>,
        rds: &RdsOptions,
    ) -> Result<HashSet, HashSetError> {
        HashSet::load_all(paths, index_dir, rds, &IocOptions::default())
    }

    /// [`HashSet::load_with`], with `iocs` saying what IOC lists (MISP, STIX, MalwareBazaar,
    /// ClamAV, recognised by content) leave out.
    pub fn load_all(
        paths: &[PathBuf],
        index_dir: Option<&Path>,
        rds: &RdsOptions,
        iocs: &IocOptions,
    ) -> Result<HashSet, HashSetError> {
        let mut set = HashSet::default();
        for path in paths {
            // Recognised by its header, whatever its name; mapped, never indexed.
            if bloom::identify(path) {
                set.blooms.push(BloomFilter::open(path)?);
                continue;
            }
            if let Some(kind) = ioc::identify(path) {
                set.ioc.add(path, kind, iocs)?;
                continue;
            }
            let (table, info) = load_source(path, index_dir, rds)?;
            set.skipped += info.skipped_lines;
            set.sources.push(info);
            set.tables.push(table);
        }
        set.counts = (
            distinct(&set.tables.iter().map(Table::md5).collect::<Vec<_>>()),
            distinct(&set.tables.iter().map(Table::sha1).collect::<Vec<_>>()),
            distinct(&set.tables.iter().map(Table::sha256).collect::<Vec<_>>()),
        );
        // A digest in both an IOC list and a hash list counts twice: close enough for a count.
        let i = set.ioc.counts();
        set.counts = (set.counts.0 + i.0, set.counts.1 + i.1, set.counts.2 + i.2);
        Ok(set)
    }

    /// Whether any list holds `d`. An RDS database answers for SHA-256 only (every RDSv3 row
    /// has one), and not for digests of excluded application types.
    pub fn contains(&self, d: &Digest) -> bool {
        self.tables.iter().any(|t| t.find(d).is_some())
    }

    /// The first list that holds any digest of `d`, and how: see [`Match`].
    pub fn find(&self, d: &Digests) -> Option<Match<'_>> {
        let all = [
            Some(Digest::Sha256(d.sha256)),
            d.md5.map(Digest::Md5),
            d.sha1.map(Digest::Sha1),
        ];
        self.tables
            .iter()
            .find_map(|t| all.iter().flatten().find_map(|x| t.find(x)))
            .or_else(|| self.ioc.find(d).map(Match::Ioc))
    }

    /// The IOC lists among the lists (MISP, STIX, MalwareBazaar, ClamAV).
    pub fn ioc(&self) -> &IocSet {
        &self.ioc
    }

    /// The Bloom filter that (probably) holds the file's SHA-1 as CIRCL stores it, if any: a
    /// file CIRCL's hashlookup knows, not a file known to be good. `None` without a SHA-1.
    pub fn bloom_hit(&self, d: &Digests) -> Option<&BloomFilter> {
        let sha1 = d.sha1.as_ref()?;
        self.blooms.iter().find(|b| b.sha1(sha1))
    }

    /// The Bloom filters among the lists, in the order given.
    pub fn blooms(&self) -> &[BloomFilter] {
        &self.blooms
    }

    /// Distinct digests over all lists and algorithms.
    pub fn len(&self) -> usize {
        self.counts.0 + self.counts.1 + self.counts.2
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lines that were not blank, a comment or a header and yet held no digest (and the rows
    /// of RDS databases without a valid SHA-256).
    pub fn skipped_lines(&self) -> u64 {
        self.skipped
    }

    /// Distinct digests per algorithm: (md5, sha1, sha256).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.counts
    }

    /// One entry per loaded list, in the order given.
    pub fn sources(&self) -> &[SourceInfo] {
        &self.sources
    }
}

/// How a list holds a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match<'a> {
    /// A hash list names it.
    Listed,
    /// An NSRL RDS database lists it in a package that is not excluded; the packages'
    /// application types (`", "`-joined, empty when they name none).
    Nsrl { application_type: &'a str },
    /// An IOC list (MISP, STIX, MalwareBazaar, ClamAV) names it: which list, which entry.
    Ioc(IocMatch<'a>),
}

// ---------------------------------------------------------------------------------------------
// Tables

enum Table {
    Rds(RdsTable),
    Owned {
        md5: Vec<[u8; 16]>,
        sha1: Vec<[u8; 20]>,
        sha256: Vec<[u8; 32]>,
    },
    Mapped {
        map: Mmap,
        md5: Range<usize>,
        sha1: Range<usize>,
        sha256: Range<usize>,
    },
}

impl Table {
    fn find(&self, d: &Digest) -> Option<Match<'_>> {
        let listed = |hit: bool| hit.then_some(Match::Listed);
        match (self, d) {
            (Table::Rds(t), Digest::Sha256(b)) => t
                .lookup(b)
                .map(|application_type| Match::Nsrl { application_type }),
            (Table::Rds(_), _) => None,
            (_, Digest::Md5(b)) => listed(self.md5().binary_search(b).is_ok()),
            (_, Digest::Sha1(b)) => listed(self.sha1().binary_search(b).is_ok()),
            (_, Digest::Sha256(b)) => listed(self.sha256().binary_search(b).is_ok()),
        }
    }

    fn md5(&self) -> &[[u8; 16]] {
        match self {
            Table::Rds(_) => &[],
            Table::Owned { md5, .. } => md5,
            Table::Mapped { map, md5, .. } => map[md5.clone()].as_chunks().0,
        }
    }

    fn sha1(&self) -> &[[u8; 20]] {
        match self {
            Table::Rds(_) => &[],
            Table::Owned { sha1, .. } => sha1,
            Table::Mapped { map, sha1, .. } => map[sha1.clone()].as_chunks().0,
        }
    }

    fn sha256(&self) -> &[[u8; 32]] {
        match self {
            Table::Rds(t) => t.sha256(),
            Table::Owned { sha256, .. } => sha256,
            Table::Mapped { map, sha256, .. } => map[sha256.clone()].as_chunks().0,
        }
    }
}

/// Number of distinct values over several sorted, duplicate-free tables. Biggest first; each
/// later table is walked against the earlier ones with galloping search, so a small list next to
/// a big one costs `small * log(big)` and two big ones a linear merge.
fn distinct<const N: usize>(tables: &[&[[u8; N]]]) -> usize {
    let mut order: Vec<&[[u8; N]]> = tables.iter().copied().filter(|t| !t.is_empty()).collect();
    order.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let mut total = 0;
    for (i, table) in order.iter().enumerate() {
        let earlier = &order[..i];
        if earlier.is_empty() {
            // Counted without reading it: a mapped table stays unpaged until looked up.
            total += table.len();
            continue;
        }
        let mut cursors = vec![0usize; i];
        for x in table.iter() {
            let mut seen = false;
            for (c, e) in cursors.iter_mut().zip(earlier) {
                *c = gallop(e, *c, x);
                if e.get(*c) == Some(x) {
                    seen = true;
                    break;
                }
            }
            if !seen {
                total += 1;
            }
        }
    }
    total
}

/// First index `>= start` whose element is `>= x`, in a sorted slice.
fn gallop<T: Ord>(s: &[T], start: usize, x: &T) -> usize {
    let rest = &s[start.min(s.len())..];
    let mut hi = 1;
    while hi < rest.len() && rest[hi] < *x {
        hi *= 2;
    }
    let hi = hi.min(rest.len());
    let lo = hi / 2;
    start.min(s.len()) + lo + rest[lo..hi].partition_point(|e| e < x)
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Default)]
struct Builder {
    md5: Vec<[u8; 16]>,
    sha1: Vec<[u8; 20]>,
    sha256: Vec<[u8; 32]>,
    skipped: u64,
    first_bad: Option<(u64, String)>,
}

impl Builder {
    fn push(&mut self, d: Digest) {
        match d {
            Digest::Md5(b) => self.md5.push(b),
            Digest::Sha1(b) => self.sha1.push(b),
            Digest::Sha256(b) => self.sha256.push(b),
        }
    }

    fn bad(&mut self, line: u64, why: impl FnOnce() -> String) {
        self.skipped += 1;
        if self.first_bad.is_none() {
            self.first_bad = Some((line, why()));
        }
    }

    fn finish(&mut self) {
        sort_dedup(&mut self.md5);
        sort_dedup(&mut self.sha1);
        sort_dedup(&mut self.sha256);
    }

    fn counts(&self) -> (usize, usize, usize) {
        (self.md5.len(), self.sha1.len(), self.sha256.len())
    }
}

/// Sort (lexicographically, as `binary_search` expects) and drop duplicates. Comparing the first
/// eight bytes as one integer first makes the sort several times faster than `memcmp` on
/// uniformly distributed digests.
fn sort_dedup<const N: usize>(v: &mut Vec<[u8; N]>) {
    fn prefix<const N: usize>(a: &[u8; N]) -> u64 {
        let mut p = [0u8; 8];
        p.copy_from_slice(&a[..8]);
        u64::from_be_bytes(p)
    }
    v.sort_unstable_by(|a, b| prefix(a).cmp(&prefix(b)).then_with(|| a.cmp(b)));
    v.dedup();
    v.shrink_to_fit();
}

/// Column roles of a hashdeep or CSV list: `Some(algo)` for a hash column.
type Columns = Vec<Option<Algo>>;

enum Parser {
    /// Nothing but blank lines and comments seen yet.
    Undetected,
    Sums,
    Hashdeep(Option<Columns>),
    Csv(Columns),
}

impl Parser {
    fn format(&self) -> ListFormat {
        match self {
            Parser::Undetected | Parser::Sums => ListFormat::Sums,
            Parser::Hashdeep(_) => ListFormat::Hashdeep,
            Parser::Csv(_) => ListFormat::Csv,
        }
    }

    fn line(&mut self, b: &mut Builder, lineno: u64, raw: &[u8]) {
        let mut line = trim_eol(raw);
        if lineno == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        match self {
            Parser::Undetected => {
                let t = line.trim_ascii();
                if t.is_empty() || t.starts_with(b"#") {
                    return;
                }
                if t.starts_with(b"%%%%") {
                    *self = Parser::Hashdeep(None);
                } else if hashlist::parse_line(t).is_err()
                    && let Some(cols) = csv_header(t)
                {
                    *self = Parser::Csv(cols);
                    return;
                } else {
                    *self = Parser::Sums;
                }
                self.line(b, lineno, line);
            }
            Parser::Sums => sums_line(b, lineno, line),
            Parser::Hashdeep(cols) => hashdeep_line(cols, b, lineno, line),
            Parser::Csv(cols) => {
                if !columns_line(cols, b, line) {
                    // A repeated header (concatenated lists) names the columns again.
                    match csv_header(line.trim_ascii()) {
                        Some(new) => *cols = new,
                        None => b.bad(lineno, || {
                            format!("no digest in the hash columns of '{}'", excerpt(line))
                        }),
                    }
                }
            }
        }
    }
}

fn sums_line(b: &mut Builder, lineno: u64, line: &[u8]) {
    // Fast path for bare hex and `HEX  name` lines; the rest (escaped names, BSD tags, blank
    // lines, comments) goes through `hashlist::parse_line`.
    let token = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .map_or(line, |end| &line[..end]);
    if let Some(d) = Digest::from_hex_bytes(token) {
        b.push(d);
        return;
    }
    match hashlist::parse_line(line) {
        Ok(Some(l)) => b.push(l.digest),
        Ok(None) => {}
        Err(e) => {
            // Quoted hex, or a header-less CSV line that starts with the digest.
            match CsvFields::new(line)
                .next()
                .and_then(|f| Digest::from_hex_bytes(f.trim_ascii()))
            {
                Some(d) => b.push(d),
                None => b.bad(lineno, || e),
            }
        }
    }
}

fn hashdeep_line(cols: &mut Option<Columns>, b: &mut Builder, lineno: u64, line: &[u8]) {
    let t = line.trim_ascii();
    if t.is_empty() {
        return;
    }
    if let Some(rest) = t.strip_prefix(b"%%%%") {
        // `%%%% HASHDEEP-1.0` is the version; `%%%% size,md5,sha256,filename` the columns.
        let rest = rest.trim_ascii();
        if rest.contains(&b',') {
            *cols = Some(
                rest.split(|&c| c == b',')
                    .map(|name| {
                        std::str::from_utf8(name.trim_ascii())
                            .ok()
                            .and_then(|s| s.parse::<Algo>().ok())
                    })
                    .collect(),
            );
        }
        return;
    }
    if t.starts_with(b"#") {
        return;
    }
    match cols {
        Some(cols) => {
            if !columns_line(cols, b, t) {
                b.bad(lineno, || {
                    format!("no digest in the hash columns of '{}'", excerpt(t))
                });
            }
        }
        None => b.bad(lineno, || {
            "data line before the '%%%% size,...' column header".to_string()
        }),
    }
}

/// Take the digest of every hash column; false when the line held none.
fn columns_line(cols: &[Option<Algo>], b: &mut Builder, line: &[u8]) -> bool {
    let last = cols.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    let mut any = false;
    for (field, col) in CsvFields::new(line).zip(&cols[..last]) {
        if let Some(algo) = col
            && let Some(d) = Digest::from_hex_bytes(field.trim_ascii())
            && d.algo() == *algo
        {
            b.push(d);
            any = true;
        }
    }
    any
}

/// The column roles when `line` is a CSV header naming at least one hash column.
fn csv_header(line: &[u8]) -> Option<Columns> {
    let cols: Columns = CsvFields::new(line)
        .map(|f| {
            std::str::from_utf8(f.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<Algo>().ok())
        })
        .collect();
    cols.iter().any(Option::is_some).then_some(cols)
}

/// Fields of one CSV line: double-quoted (with `""` escapes, returned still escaped) or bare.
struct CsvFields<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CsvFields<'a> {
    fn new(line: &'a [u8]) -> Self {
        CsvFields { rest: Some(line) }
    }
}

impl<'a> Iterator for CsvFields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        if let Some(q) = s.trim_ascii_start().strip_prefix(b"\"") {
            let mut i = 0;
            while let Some(p) = q[i..].iter().position(|&c| c == b'"') {
                let j = i + p;
                if q.get(j + 1) == Some(&b'"') {
                    i = j + 2;
                    continue;
                }
                let after = &q[j + 1..];
                self.rest = after
                    .iter()
                    .position(|&c| c == b',')
                    .map(|c| &after[c + 1..]);
                return Some(&q[..j]);
            }
            // Unterminated quote: the rest of the line.
            self.rest = None;
            return Some(q);
        }
        match s.iter().position(|&c| c == b',') {
            Some(c) => {
                self.rest = Some(&s[c + 1..]);
                Some(&s[..c])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(80)]);
    s.into_owned()
}

/// Longest line looked at; the rest of a longer one is skipped (a binary file given by mistake
/// must not be read into memory whole).
const MAX_LINE: u64 = 64 * 1024;

fn parse_file(path: &Path, file: &File) -> Result<(Builder, ListFormat), HashSetError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut b = Builder::default();
    let mut parser = Parser::Undetected;
    let mut buf = Vec::with_capacity(256);
    let mut lineno = 0u64;
    let read_err = |line, source| HashSetError::Read {
        path: path.to_path_buf(),
        line,
        source,
    };
    loop {
        lineno += 1;
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| read_err(lineno, e))?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            skip_past_newline(&mut reader).map_err(|e| read_err(lineno, e))?;
        }
        parser.line(&mut b, lineno, &buf);
    }
    b.finish();
    Ok((b, parser.format()))
}

fn skip_past_newline(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let (done, used) = {
            let buf = match r.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(());
            }
            match buf.iter().position(|&c| c == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, buf.len()),
            }
        };
        r.consume(used);
        if done {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading one source, with the on-disk index

/// What a JSON file given as a hash list is (`None`: not JSON), from its first 4 KiB (read at
/// offset 0, leaving the file's position alone): a hashsweep report, an ECS report, or JSON.
fn json_kind(file: &File) -> Option<&'static str> {
    let mut head = [0u8; 4096];
    let n = hashsweep_core::platform::read_at(file, &mut head, 0).ok()?;
    let head = &head[..n];
    let head = head
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(head)
        .trim_ascii_start();
    if !matches!(head.first(), Some(b'{' | b'[')) {
        return None;
    }
    let has = |key: &[u8]| head.windows(key.len()).any(|w| w == key);
    Some(if has(br#""ecs":"#) {
        "an ECS report (hashsweep scan --format ecs)"
    } else if has(br#""verdict":"#) || has(br#""records":"#) {
        "a hashsweep report"
    } else {
        "a JSON file"
    })
}

fn load_source(
    path: &Path,
    index_dir: Option<&Path>,
    rds_opts: &RdsOptions,
) -> Result<(Table, SourceInfo), HashSetError> {
    let open_err = |source| HashSetError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    let meta = file.metadata().map_err(open_err)?;
    if rds::is_sqlite_file(path, &file, &meta)? {
        let (table, index_error) = rds::load(path, &file, index_dir, rds_opts)?;
        let info = SourceInfo {
            path: path.to_path_buf(),
            format: ListFormat::Rds,
            counts: (0, 0, table.sha256().len()),
            skipped_lines: table.info.skipped,
            from_index: table.from_index,
            index_error,
            rds: Some(table.info.clone()),
            modified: meta.modified().ok(),
        };
        return Ok((Table::Rds(table), info));
    }
    if meta.is_file()
        && let Some(what) = json_kind(&file)
    {
        return Err(HashSetError::Report {
            path: path.to_path_buf(),
            what,
        });
    }
    let slot = match index_dir {
        // Only regular files have a size and mtime that say whether the content changed.
        Some(dir) if meta.is_file() => {
            let canonical = fs::canonicalize(path).map_err(open_err)?;
            Some(IndexSlot {
                file: index_path(dir, &canonical),
                dir: dir.to_path_buf(),
                canonical,
                stamp: Stamp::of(&file, &meta),
            })
        }
        _ => None,
    };
    if let Some(slot) = &slot
        && let Some((table, format, skipped)) = open_index(slot)
    {
        let info = SourceInfo {
            path: path.to_path_buf(),
            format,
            counts: (table.md5().len(), table.sha1().len(), table.sha256().len()),
            skipped_lines: skipped,
            from_index: true,
            index_error: None,
            rds: None,
            modified: meta.modified().ok(),
        };
        return Ok((table, info));
    }

    let (b, format) = parse_file(path, &file)?;
    if b.counts() == (0, 0, 0)
        && let Some((line, reason)) = b.first_bad
    {
        return Err(HashSetError::NoDigests {
            path: path.to_path_buf(),
            skipped: b.skipped,
            line,
            reason,
        });
    }
    let mut info = SourceInfo {
        path: path.to_path_buf(),
        format,
        counts: b.counts(),
        skipped_lines: b.skipped,
        from_index: false,
        index_error: None,
        rds: None,
        modified: meta.modified().ok(),
    };
    if let Some(slot) = slot {
        // Cache only what was read from one unchanged version of the file.
        let unchanged = file
            .metadata()
            .is_ok_and(|m| Stamp::of(&file, &m) == slot.stamp);
        if unchanged {
            match write_index(&slot, format, &b) {
                Ok(()) => {
                    if let Some((table, _, _)) = open_index(&slot) {
                        return Ok((table, info));
                    }
                }
                Err(e) => {
                    info.index_error = Some(format!(
                        "cannot write hash-set index {}: {e}",
                        slot.file.display()
                    ))
                }
            }
        }
    }
    let table = Table::Owned {
        md5: b.md5,
        sha1: b.sha1,
        sha256: b.sha256,
    };
    Ok((table, info))
}

struct IndexSlot {
    dir: PathBuf,
    file: PathBuf,
    canonical: PathBuf,
    stamp: Stamp,
}

/// Index file layout (little-endian): magic, then the words format, stamp (6), skipped lines,
/// md5 count, sha1 count, sha256 count, path length; the canonical source path; then the sorted
/// md5, sha1 and sha256 digests back to back.
const MAGIC: &[u8; 8] = b"HSWIDX\x00\x01";
const WORDS: usize = 12;
const FIXED: usize = MAGIC.len() + 8 * WORDS;

fn index_path(dir: &Path, canonical: &Path) -> PathBuf {
    let h = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let (start, end) = INDEX_NAME;
    dir.join(format!("{start}{}{end}", &hex_lower(&h)[..16]))
}

fn write_index(slot: &IndexSlot, format: ListFormat, b: &Builder) -> io::Result<()> {
    fs::create_dir_all(&slot.dir)?;
    let path = slot.canonical.as_os_str().as_encoded_bytes();
    let mut words = [0u64; WORDS];
    words[0] = format.code();
    words[1..7].copy_from_slice(&slot.stamp.0);
    words[7] = b.skipped;
    words[8] = b.md5.len() as u64;
    words[9] = b.sha1.len() as u64;
    words[10] = b.sha256.len() as u64;
    words[11] = path.len() as u64;
    let mut tmp = tempfile::Builder::new()
        .prefix(INDEX_TMP.0)
        .suffix(INDEX_TMP.1)
        .tempfile_in(&slot.dir)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        w.write_all(MAGIC)?;
        for word in words {
            w.write_all(&word.to_le_bytes())?;
        }
        w.write_all(path)?;
        w.write_all(b.md5.as_flattened())?;
        w.write_all(b.sha1.as_flattened())?;
        w.write_all(b.sha256.as_flattened())?;
        w.flush()?;
    }
    // Rename over the old index: a reader that has the old one mapped keeps its own inode.
    tmp.persist(&slot.file).map_err(|e| e.error)?;
    Ok(())
}

/// The index in `slot`, when it exists, is whole and was built from this version of the source.
/// Anything else (missing, stale, truncated, foreign) means "rebuild", never an error.
fn open_index(slot: &IndexSlot) -> Option<(Table, ListFormat, u64)> {
    let file = File::open(&slot.file).ok()?;
    // SAFETY: index files are only ever replaced by rename (see `write_index`), never written in
    // place, so the mapped inode does not change under us. Another program truncating it would
    // be a SIGBUS, as for every memory-mapped file.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    if map.len() < FIXED || &map[..MAGIC.len()] != MAGIC {
        return None;
    }
    let word = |i: usize| {
        let at = MAGIC.len() + 8 * i;
        map[at..at + 8].try_into().ok().map(u64::from_le_bytes)
    };
    let format = ListFormat::from_code(word(0)?)?;
    let mut stamp = [0u64; 6];
    for (i, s) in stamp.iter_mut().enumerate() {
        *s = word(1 + i)?;
    }
    if Stamp(stamp) != slot.stamp {
        return None;
    }
    let skipped = word(7)?;
    let n = |i| usize::try_from(word(i)?).ok();
    let (n_md5, n_sha1, n_sha256, path_len) = (n(8)?, n(9)?, n(10)?, n(11)?);
    let path_end = FIXED.checked_add(path_len)?;
    if map.get(FIXED..path_end)? != slot.canonical.as_os_str().as_encoded_bytes() {
        return None;
    }
    let md5 = path_end..path_end.checked_add(n_md5.checked_mul(16)?)?;
    let sha1 = md5.end..md5.end.checked_add(n_sha1.checked_mul(20)?)?;
    let sha256 = sha1.end..sha1.end.checked_add(n_sha256.checked_mul(32)?)?;
    if sha256.end != map.len() {
        return None;
    }
    let table = Table::Mapped {
        map,
        md5,
        sha1,
        sha256,
    };
    Some((table, format, skipped))
}

#[cfg(test)]
mod tests;
