//! Known-bad lists as responders receive them, recognised by content (never by name): MISP
//! feeds, events and `restSearch` answers, STIX 2.1 bundles, the MalwareBazaar exports, ClamAV
//! hash signatures. Each digest keeps the entry it came from (event uuid and info, indicator id
//! and name, signature name), so a match says which list and which entry.
//!
//! What is taken, and what is not:
//! - MISP: attributes of the flat hash types (`md5`, `sha1`, `sha256`, `sha512`,
//!   `filename|<algo>`, `malware-sample`) with `to_ids` set and not `deleted`, object
//!   attributes included. A feed's `hashes.csv` is never read: it holds MD5s of attribute
//!   values, not of files.
//! - STIX 2.1: indicators with `pattern_type` `stix`, not `revoked`, not past `valid_until`,
//!   whose pattern is a disjunction (`OR`, brackets, parentheses) of equality comparisons on
//!   `file:hashes.<algo>`, the algorithm named as the pattern validator normalises it (upper
//!   case, without `-` and quotes: `'SHA-256'`, `SHA256` and `sha256` are one). A pattern that
//!   needs more than the hash (`AND`, `FOLLOWEDBY`, `NOT`, qualifiers, other properties) is
//!   skipped, never read as "the hash alone".
//! - MalwareBazaar: `full_sha256.txt` and its md5/sha1 twins (`#` comments), and the CSV export
//!   whose header is a comment line.
//! - ClamAV `.hdb`/`.hsb`: `hash:size:name[:flevel]`, size `*` allowed; signatures named `PUA.`
//!   only when asked ([`IocOptions::clamav_pua`]).
//!
//! SHA-512 (and other algorithms hashsweep does not compute) are counted and left out: no file
//! digest could match them.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use hashsweep_core::digest::{Digest, Digests};

/// Why an IOC list could not be loaded. Every variant names the file (and the entry or line).
#[derive(Debug, thiserror::Error)]
pub enum IocError {
    #[error("cannot read {what} {path}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// The kinds of list recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IocKind {
    /// A directory with `manifest.json` and one `<uuid>.json` per event.
    MispFeed,
    /// One event: `{"Event": {...}}`.
    MispEvent,
    /// A `restSearch` answer: `{"response": ...}` (attributes or events).
    MispRestSearch,
    /// `{"type": "bundle", "objects": [...]}`.
    Stix2Bundle,
    /// `full_sha256.txt` and its twins: one digest per line after a `#` banner.
    MalwareBazaar,
    /// The CSV export (`full.csv`), its header in a comment line.
    MalwareBazaarCsv,
    /// `.hdb` / `.hsb` hash signatures.
    Clamav,
}

impl IocKind {
    /// The word reports and the summary use.
    pub fn as_str(self) -> &'static str {
        match self {
            IocKind::MispFeed => "misp_feed",
            IocKind::MispEvent => "misp_event",
            IocKind::MispRestSearch => "misp_restsearch",
            IocKind::Stix2Bundle => "stix2_bundle",
            IocKind::MalwareBazaar => "malwarebazaar",
            IocKind::MalwareBazaarCsv => "malwarebazaar_csv",
            IocKind::Clamav => "clamav",
        }
    }

    /// Who publishes this kind of list (ECS `threat.indicator.provider`).
    pub fn provider(self) -> &'static str {
        match self {
            IocKind::MispFeed | IocKind::MispEvent | IocKind::MispRestSearch => "MISP",
            IocKind::Stix2Bundle => "STIX 2.1",
            IocKind::MalwareBazaar | IocKind::MalwareBazaarCsv => "MalwareBazaar",
            IocKind::Clamav => "ClamAV",
        }
    }
}

/// What the caller decides about the lists.
#[derive(Debug, Clone, Copy)]
pub struct IocOptions {
    /// Load ClamAV signatures named `PUA.` (potentially unwanted, not malware).
    pub clamav_pua: bool,
    /// "Now" for STIX `valid_until`.
    pub now: SystemTime,
}

impl Default for IocOptions {
    fn default() -> IocOptions {
        IocOptions {
            clamav_pua: false,
            now: hashsweep_core::clock::now(),
        }
    }
}

/// One loaded list.
#[derive(Debug, Clone)]
pub struct IocList {
    pub path: PathBuf,
    pub kind: IocKind,
    /// Distinct digests loaded from it.
    pub entries: u64,
    /// Entries left out: not a usable hash, SHA-512 and other algorithms not computed, not
    /// `to_ids`, deleted, revoked, expired, patterns that need more than a hash, PUA.
    pub skipped: u64,
    /// The file's (for a feed: its manifest's) modification time.
    pub modified: Option<SystemTime>,
}

/// A digest's entry: the list, and the entry's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IocMatch<'a> {
    pub list: &'a IocList,
    /// `MISP event <uuid>: <info>`, `STIX indicator <id>: <name>`, `ClamAV signature <name>`,
    /// `MalwareBazaar <signature> (<file name>)`, `MalwareBazaar export`.
    pub entry: &'a str,
    /// The digest that matched.
    pub digest: Digest,
}

impl PartialEq for IocList {
    fn eq(&self, o: &IocList) -> bool {
        self.path == o.path && self.kind == o.kind
    }
}
impl Eq for IocList {}

/// All IOC lists given: digest → entry, one table per algorithm (the first list naming a
/// digest keeps it).
#[derive(Debug, Default)]
pub struct IocSet {
    lists: Vec<IocList>,
    /// (list index, label)
    labels: Vec<(u32, Box<str>)>,
    md5: HashMap<[u8; 16], u32>,
    sha1: HashMap<[u8; 20], u32>,
    sha256: HashMap<[u8; 32], u32>,
}

impl IocSet {
    pub fn lists(&self) -> &[IocList] {
        &self.lists
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Distinct digests per algorithm: (md5, sha1, sha256).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.md5.len(), self.sha1.len(), self.sha256.len())
    }

    /// The entry that names any computed digest of the file (SHA-256 first).
    pub fn find(&self, d: &Digests) -> Option<IocMatch<'_>> {
        let hit = self
            .sha256
            .get(&d.sha256)
            .map(|&i| (i, Digest::Sha256(d.sha256)))
            .or_else(|| {
                let s = d.sha1?;
                self.sha1.get(&s).map(|&i| (i, Digest::Sha1(s)))
            })
            .or_else(|| {
                let m = d.md5?;
                self.md5.get(&m).map(|&i| (i, Digest::Md5(m)))
            })?;
        let (list, label) = &self.labels[hit.0 as usize];
        Some(IocMatch {
            list: &self.lists[*list as usize],
            entry: label,
            digest: hit.1,
        })
    }

    /// Load one list of a kind [`identify`] recognised.
    pub fn add(&mut self, path: &Path, kind: IocKind, opts: &IocOptions) -> Result<(), IocError> {
        let list = self.lists.len() as u32;
        let modified = fs::metadata(match kind {
            IocKind::MispFeed => path.join("manifest.json"),
            _ => path.to_path_buf(),
        })
        .and_then(|m| m.modified())
        .ok();
        let mut l = Loader {
            set: self,
            list,
            loaded: 0,
            skipped: 0,
            label: None,
        };
        match kind {
            IocKind::MispFeed => l.misp_feed(path)?,
            IocKind::MispEvent | IocKind::MispRestSearch => {
                let v = read_json(path)?;
                l.misp_value(path, &v)?;
            }
            IocKind::Stix2Bundle => {
                let v = read_json(path)?;
                l.stix(path, &v, opts)?;
            }
            IocKind::MalwareBazaar | IocKind::MalwareBazaarCsv | IocKind::Clamav => {
                l.text(path, kind, opts)?
            }
        }
        let (loaded, skipped) = (l.loaded, l.skipped);
        self.lists.push(IocList {
            path: path.to_path_buf(),
            kind,
            entries: loaded,
            skipped,
            modified,
        });
        Ok(())
    }
}

/// What kind of IOC list `path` holds, by its content: `None` for anything else (a hash list,
/// a report, an unreadable path: whoever reads it next says why).
pub fn identify(path: &Path) -> Option<IocKind> {
    let meta = fs::metadata(path).ok()?;
    if meta.is_dir() {
        return path
            .join("manifest.json")
            .is_file()
            .then_some(IocKind::MispFeed);
    }
    if !meta.is_file() {
        return None;
    }
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&head);
    let first = text.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        // Only the top level decides. JSON that does not parse, and starts like one of these,
        // is claimed anyway: loading it then says where it is broken.
        let Ok(v) = read_json(path) else {
            let has = |s: &[u8]| text.windows(s.len()).any(|w| w == s);
            return if has(b"\"Event\"") {
                Some(IocKind::MispEvent)
            } else if has(b"\"response\"") {
                Some(IocKind::MispRestSearch)
            } else if has(b"\"bundle\"") && has(b"\"objects\"") {
                Some(IocKind::Stix2Bundle)
            } else {
                None
            };
        };
        let o = v.as_object()?;
        if o.contains_key("Event") {
            return Some(IocKind::MispEvent);
        }
        if o.contains_key("response") {
            return Some(IocKind::MispRestSearch);
        }
        if o.get("type").and_then(Value::as_str) == Some("bundle") && o.contains_key("objects") {
            return Some(IocKind::Stix2Bundle);
        }
        return None;
    }
    let mut banner = false;
    for line in text.split(|&b| b == b'\n').take(200) {
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix(b"#") {
            let c = trim(c);
            if c.starts_with(b"\"first_seen_utc\"") {
                return Some(IocKind::MalwareBazaarCsv);
            }
            banner |= contains_ci(c, b"malwarebazaar");
            continue;
        }
        if banner {
            return Some(IocKind::MalwareBazaar);
        }
        return clamav_line(line).is_some().then_some(IocKind::Clamav);
    }
    banner.then_some(IocKind::MalwareBazaar)
}

fn read_json(path: &Path) -> Result<Value, IocError> {
    let f = File::open(path).map_err(|source| IocError::Io {
        path: path.to_path_buf(),
        what: "IOC list",
        source,
    })?;
    serde_json::from_reader(BufReader::new(f)).map_err(|source| IocError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// `hash:size:name[:flevel]` with a 32/40/64-digit hash and a size of digits or `*`.
fn clamav_line(line: &[u8]) -> Option<(Digest, &[u8])> {
    let mut parts = line.splitn(4, |&b| b == b':');
    let hash = Digest::from_hex_bytes(parts.next()?)?;
    let size = parts.next()?;
    if !(size == b"*" || (!size.is_empty() && size.iter().all(u8::is_ascii_digit))) {
        return None;
    }
    let name = parts.next().filter(|n| !n.is_empty())?;
    Some((hash, name))
}

struct Loader<'s> {
    set: &'s mut IocSet,
    list: u32,
    loaded: u64,
    skipped: u64,
    /// One label for every entry of a list without names of its own (MalwareBazaar's txt).
    label: Option<u32>,
}

/// A digest an entry names, or why it names none usable.
enum Hash {
    Usable(Digest),
    /// Valid hex of an algorithm hashsweep does not compute (SHA-512, SHA3...).
    NotComputed,
    Bad,
}

impl Loader<'_> {
    fn new_label(&mut self, text: &str) -> u32 {
        let i = self.set.labels.len() as u32;
        self.set.labels.push((self.list, text.into()));
        i
    }

    /// Digests of one entry, under `label` (pushed only if one digest is usable).
    fn entry(&mut self, label: &str, hashes: impl IntoIterator<Item = Hash>) {
        let mut idx = None;
        for h in hashes {
            match h {
                Hash::Usable(d) => {
                    let i = *idx.get_or_insert_with(|| self.new_label(label));
                    self.insert(i, d);
                }
                Hash::NotComputed | Hash::Bad => self.skipped += 1,
            }
        }
    }

    fn insert(&mut self, label: u32, d: Digest) {
        let new = match d {
            Digest::Md5(b) => self.set.md5.try_insert_or_keep(b, label),
            Digest::Sha1(b) => self.set.sha1.try_insert_or_keep(b, label),
            Digest::Sha256(b) => self.set.sha256.try_insert_or_keep(b, label),
        };
        self.loaded += u64::from(new);
    }

    // -----------------------------------------------------------------------------------------
    // MISP

    fn misp_feed(&mut self, dir: &Path) -> Result<(), IocError> {
        let manifest = dir.join("manifest.json");
        let v = read_json(&manifest)?;
        let Some(events) = v.as_object() else {
            return Err(IocError::Format {
                path: manifest,
                reason: "a MISP feed manifest is an object of event uuids".into(),
            });
        };
        for uuid in events.keys() {
            // A uuid is a file name in the same directory: nothing else is read.
            if uuid.is_empty() || !uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(IocError::Format {
                    path: manifest.clone(),
                    reason: format!("event key {uuid:?} is not a uuid"),
                });
            }
            let file = dir.join(format!("{uuid}.json"));
            let ev = read_json(&file)?;
            let Some(event) = ev.get("Event") else {
                return Err(IocError::Format {
                    path: file,
                    reason: "no \"Event\" object (the manifest lists it)".into(),
                });
            };
            self.misp_event(event);
        }
        Ok(())
    }

    /// An event, or a `restSearch` answer (events, or attributes).
    fn misp_value(&mut self, path: &Path, v: &Value) -> Result<(), IocError> {
        if let Some(e) = v.get("Event") {
            self.misp_event(e);
            return Ok(());
        }
        let bad = |reason: &str| IocError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let r = v
            .get("response")
            .ok_or_else(|| bad("no \"Event\" or \"response\""))?;
        match r {
            // /events/restSearch: a list of {"Event": ...}.
            Value::Array(events) => {
                for e in events {
                    if let Some(e) = e.get("Event") {
                        self.misp_event(e);
                    } else {
                        self.skipped += 1;
                    }
                }
            }
            // /attributes/restSearch: {"Attribute": [...]}, each with its event's id (and,
            // with includeContext, its "Event").
            Value::Object(o) => {
                let attrs = o
                    .get("Attribute")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("\"response\" has no \"Attribute\" list"))?;
                for a in attrs {
                    let label = match a.get("Event") {
                        Some(e) => event_label(e),
                        None => format!(
                            "MISP event {}",
                            a.get("event_uuid")
                                .or_else(|| a.get("event_id"))
                                .map(json_text)
                                .unwrap_or_else(|| "?".into())
                        ),
                    };
                    self.entry(&label, misp_attribute(a));
                }
            }
            _ => return Err(bad("\"response\" is neither a list nor an object")),
        }
        Ok(())
    }

    fn misp_event(&mut self, e: &Value) {
        let label = event_label(e);
        let attrs = e.get("Attribute").and_then(Value::as_array);
        let objects = e.get("Object").and_then(Value::as_array);
        let object_attrs = objects
            .into_iter()
            .flatten()
            .filter(|o| !truthy(o.get("deleted")))
            .filter_map(|o| o.get("Attribute").and_then(Value::as_array))
            .flatten();
        let all: Vec<Hash> = attrs
            .into_iter()
            .flatten()
            .chain(object_attrs)
            .flat_map(misp_attribute)
            .collect();
        self.entry(&label, all);
    }

    // -----------------------------------------------------------------------------------------
    // STIX 2.1

    fn stix(&mut self, path: &Path, v: &Value, opts: &IocOptions) -> Result<(), IocError> {
        let objects =
            v.get("objects")
                .and_then(Value::as_array)
                .ok_or_else(|| IocError::Format {
                    path: path.to_path_buf(),
                    reason: "a STIX bundle's \"objects\" is a list".into(),
                })?;
        for o in objects {
            if o.get("type").and_then(Value::as_str) != Some("indicator") {
                continue;
            }
            let id = o.get("id").map(json_text).unwrap_or_else(|| "?".into());
            let label = match o.get("name").and_then(Value::as_str) {
                Some(n) => format!("STIX indicator {id}: {n}"),
                None => format!("STIX indicator {id}"),
            };
            let usable = o.get("pattern_type").and_then(Value::as_str) == Some("stix")
                && !truthy(o.get("revoked"))
                && !expired(o.get("valid_until"), opts.now);
            let hashes = o
                .get("pattern")
                .and_then(Value::as_str)
                .filter(|_| usable)
                .and_then(stix_hashes);
            match hashes {
                Some(h) => self.entry(&label, h),
                None => self.skipped += 1,
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Text: MalwareBazaar, ClamAV

    fn text(&mut self, path: &Path, kind: IocKind, opts: &IocOptions) -> Result<(), IocError> {
        let f = File::open(path).map_err(|source| IocError::Io {
            path: path.to_path_buf(),
            what: "IOC list",
            source,
        })?;
        let mut r = BufReader::new(f);
        let mut buf = Vec::new();
        let mut lineno = 0u64;
        loop {
            buf.clear();
            let n = r
                .read_until(b'\n', &mut buf)
                .map_err(|source| IocError::Io {
                    path: path.to_path_buf(),
                    what: "IOC list",
                    source,
                })?;
            if n == 0 {
                break;
            }
            lineno += 1;
            let line = trim(&buf);
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            match kind {
                IocKind::MalwareBazaar => {
                    let i = match self.label {
                        Some(i) => i,
                        None => {
                            let i = self.new_label("MalwareBazaar export");
                            self.label = Some(i);
                            i
                        }
                    };
                    match Digest::from_hex_bytes(line) {
                        Some(d) => self.insert(i, d),
                        None => self.skipped += 1,
                    }
                }
                IocKind::MalwareBazaarCsv => {
                    let row = csv_row(line);
                    let col =
                        |i: usize| row.get(i).copied().filter(|v| !v.is_empty() && *v != "n/a");
                    let label = format!(
                        "MalwareBazaar {} ({}, first seen {})",
                        col(8).unwrap_or("unnamed"),
                        col(5).unwrap_or("no file name"),
                        col(0).unwrap_or("?")
                    );
                    let hashes = [1, 2, 3].map(|c| match col(c) {
                        Some(h) => hash_of(h.as_bytes()),
                        None => Hash::Bad,
                    });
                    self.entry(&label, hashes);
                }
                IocKind::Clamav => match clamav_line(line) {
                    Some((_, name)) if name.starts_with(b"PUA.") && !opts.clamav_pua => {
                        self.skipped += 1
                    }
                    Some((d, name)) => {
                        let label = format!("ClamAV signature {}", String::from_utf8_lossy(name));
                        self.entry(&label, [Hash::Usable(d)]);
                    }
                    None => self.skipped += 1,
                },
                _ => {
                    return Err(IocError::Format {
                        path: path.to_path_buf(),
                        reason: format!("line {lineno}: not a text list"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Insert unless present (the first list naming a digest keeps it); whether it was new.
trait InsertOrKeep<K> {
    fn try_insert_or_keep(&mut self, k: K, v: u32) -> bool;
}

impl<K: std::hash::Hash + Eq> InsertOrKeep<K> for HashMap<K, u32> {
    fn try_insert_or_keep(&mut self, k: K, v: u32) -> bool {
        match self.entry(k) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
                true
            }
        }
    }
}

/// A hex digest of any length: usable (MD5, SHA-1, SHA-256), of an algorithm not computed
/// (other even lengths of hex), or not a digest.
fn hash_of(hex: &[u8]) -> Hash {
    let hex = trim(hex);
    if let Some(d) = Digest::from_hex_bytes(hex) {
        return Hash::Usable(d);
    }
    if !hex.is_empty() && hex.len().is_multiple_of(2) && hex.iter().all(u8::is_ascii_hexdigit) {
        Hash::NotComputed
    } else {
        Hash::Bad
    }
}

/// JSON booleans as MISP exports write them: `true`, `1`, `"1"`, `"true"`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => matches!(s.as_str(), "1" | "true" | "True"),
        _ => false,
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn event_label(e: &Value) -> String {
    let uuid = e.get("uuid").map(json_text).unwrap_or_else(|| "?".into());
    match e.get("info").and_then(Value::as_str) {
        Some(info) => format!("MISP event {uuid}: {info}"),
        None => format!("MISP event {uuid}"),
    }
}

/// The file digest one MISP attribute gives, if it is a flat hash type, `to_ids` and not
/// deleted; nothing for other attributes (not counted: most of an event is not hashes).
fn misp_attribute(a: &Value) -> Option<Hash> {
    let ty = a.get("type").and_then(Value::as_str)?;
    let algo_ok = |t: &str| {
        matches!(
            t,
            "md5"
                | "sha1"
                | "sha224"
                | "sha256"
                | "sha384"
                | "sha512"
                | "sha512/224"
                | "sha512/256"
                | "sha3-224"
                | "sha3-256"
                | "sha3-384"
                | "sha3-512"
        )
    };
    let composite = match ty.strip_prefix("filename|") {
        Some(t) if algo_ok(t) => true,
        None if algo_ok(ty) => false,
        None if ty == "malware-sample" => true,
        _ => return None,
    };
    if !truthy(a.get("to_ids")) || truthy(a.get("deleted")) {
        // Not for detection, or deleted: left out (and counted).
        return Some(Hash::Bad);
    }
    let value = a.get("value").and_then(Value::as_str).unwrap_or("");
    let hex = if composite {
        value.rsplit_once('|').map_or("", |(_, h)| h)
    } else {
        value
    };
    let h = hash_of(hex.as_bytes());
    // A usable digest of the declared algorithm only (an "md5" holding 64 digits is not one).
    let declared = ty.trim_start_matches("filename|");
    let declared = if declared == "malware-sample" {
        "md5"
    } else {
        declared
    };
    Some(match h {
        Hash::Usable(d) if d.algo().name() == declared => Hash::Usable(d),
        // SHA-512/256 is 64 digits too: an algorithm not computed, not a SHA-256.
        Hash::Usable(_) if !matches!(declared, "md5" | "sha1" | "sha256") => Hash::NotComputed,
        Hash::Usable(_) => Hash::Bad,
        other => other,
    })
}

/// Whether `valid_until` (RFC 3339) is in the past.
fn expired(v: Option<&Value>, now: SystemTime) -> bool {
    let Some(s) = v.and_then(Value::as_str) else {
        return false;
    };
    // An unreadable date is not taken as "still valid".
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).map_or(true, |t| t <= now)
}

// ---------------------------------------------------------------------------------------------
// STIX patterns

#[derive(Debug, PartialEq)]
enum Tok {
    Open(char),
    Close(char),
    Word(String),
    Str(String),
    Op(String),
}

/// The tokens of a STIX pattern; `None` for one that cannot be read.
fn tokens(p: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut it = p.chars().peekable();
    let quoted = |it: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<String> {
        let mut s = String::new();
        loop {
            match it.next()? {
                '\\' => s.push(it.next()?),
                '\'' => return Some(s),
                c => s.push(c),
            }
        }
    };
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '[' | '(' => {
                it.next();
                out.push(Tok::Open(c));
            }
            ']' | ')' => {
                it.next();
                out.push(Tok::Close(c));
            }
            '\'' => {
                it.next();
                out.push(Tok::Str(quoted(&mut it)?));
            }
            '=' | '!' | '<' | '>' => {
                let mut op = String::new();
                while let Some(&c) = it.peek().filter(|c| "=!<>".contains(**c)) {
                    op.push(c);
                    it.next();
                }
                out.push(Tok::Op(op));
            }
            _ => {
                // A word: an object path (its components may be quoted: hashes.'SHA-256'),
                // a keyword, a number.
                let mut w = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_alphanumeric() || "_-:.*".contains(c) {
                        w.push(c);
                        it.next();
                    } else if c == '\'' && w.ends_with('.') {
                        it.next();
                        w.push_str(&quoted(&mut it)?);
                    } else {
                        break;
                    }
                }
                if w.is_empty() {
                    return None;
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Some(out)
}

/// The file digests a pattern names, when it is nothing but a disjunction of
/// `file:hashes.<algo> = '<hex>'` comparisons; `None` otherwise.
fn stix_hashes(pattern: &str) -> Option<Vec<Hash>> {
    let toks = tokens(pattern)?;
    let mut out = Vec::new();
    let mut depth: Vec<char> = Vec::new();
    let mut i = 0;
    // Expect: operand (OR operand)*, an operand being a comparison or a bracketed group.
    let mut want_operand = true;
    while i < toks.len() {
        match (&toks[i], want_operand) {
            (Tok::Open(c), true) => {
                // Comparisons only inside an observation expression.
                if *c == '[' && depth.contains(&'[') {
                    return None;
                }
                depth.push(*c);
                i += 1;
            }
            (Tok::Close(c), false) => {
                let open = depth.pop()?;
                if (open, *c) != ('[', ']') && (open, *c) != ('(', ')') {
                    return None;
                }
                i += 1;
            }
            (Tok::Word(w), false) if w == "OR" => {
                want_operand = true;
                i += 1;
            }
            (Tok::Word(path), true) => {
                if !depth.contains(&'[') {
                    return None;
                }
                let key = path.strip_prefix("file:hashes.")?;
                match (toks.get(i + 1), toks.get(i + 2)) {
                    (Some(Tok::Op(op)), Some(Tok::Str(v))) if op == "=" => {
                        let algo = key.to_ascii_uppercase().replace(['-', '\''], "");
                        out.push(match algo.as_str() {
                            "MD5" | "SHA1" | "SHA256" => match hash_of(v.as_bytes()) {
                                Hash::Usable(d) if d.algo().name() == algo.to_lowercase() => {
                                    Hash::Usable(d)
                                }
                                _ => Hash::Bad,
                            },
                            _ => Hash::NotComputed,
                        });
                    }
                    _ => return None,
                }
                want_operand = false;
                i += 3;
            }
            _ => return None,
        }
    }
    (depth.is_empty() && !want_operand && !out.is_empty()).then_some(out)
}

/// The fields of a MalwareBazaar CSV row: `"a", "b", ...`.
fn csv_row(line: &[u8]) -> Vec<&str> {
    let Ok(s) = std::str::from_utf8(line) else {
        return Vec::new();
    };
    let s = s.trim();
    let s = s.strip_prefix('"').unwrap_or(s);
    let s = s.strip_suffix('"').unwrap_or(s);
    s.split("\", \"").map(str::trim).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(p: &str) -> Option<Vec<String>> {
        stix_hashes(p).map(|v| {
            v.into_iter()
                .map(|h| match h {
                    Hash::Usable(d) => d.to_hex(),
                    Hash::NotComputed => "not computed".into(),
                    Hash::Bad => "bad".into(),
                })
                .collect()
        })
    }

    const MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
    const SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

    #[test]
    fn stix_hash_keys_are_normalised_as_the_validator_does() {
        for key in ["'SHA-256'", "SHA256", "sha256", "'sha-256'", "'SHA256'"] {
            let p = format!("[file:hashes.{key} = '{SHA256}']");
            assert_eq!(usable(&p), Some(vec![SHA256.into()]), "{p}");
        }
        for key in ["MD5", "'MD5'", "md5"] {
            let p = format!("[file:hashes.{key} = '{}']", MD5.to_uppercase());
            assert_eq!(usable(&p), Some(vec![MD5.into()]), "{p}");
        }
        let p = format!("[file:hashes.'SHA-1' = '{}']", "a".repeat(40));
        assert_eq!(usable(&p), Some(vec!["a".repeat(40)]));
    }

    #[test]
    fn only_plain_disjunctions_of_hash_equalities() {
        let or = format!("[file:hashes.MD5 = '{MD5}' OR file:hashes.'SHA-256' = '{SHA256}']");
        assert_eq!(usable(&or), Some(vec![MD5.into(), SHA256.into()]));
        let or2 = format!("([file:hashes.MD5 = '{MD5}']) OR [file:hashes.SHA256 = '{SHA256}']");
        assert_eq!(usable(&or2).map(|v| v.len()), Some(2));
        for p in [
            format!("[file:hashes.MD5 = '{MD5}' AND file:name = 'x.exe']"),
            format!("[file:hashes.MD5 = '{MD5}'] AND [file:hashes.'SHA-256' = '{SHA256}']"),
            format!("[file:hashes.MD5 = '{MD5}'] FOLLOWEDBY [file:hashes.MD5 = '{MD5}']"),
            format!("[file:hashes.MD5 != '{MD5}']"),
            format!("[file:hashes.MD5 NOT = '{MD5}']"),
            format!("[file:hashes.MD5 = '{MD5}'] WITHIN 300 SECONDS"),
            format!("[file:name = '{MD5}']"),
            "[ipv4-addr:value = '198.51.100.1']".into(),
            format!("[file:hashes.MD5 = '{MD5}'"),
            "".into(),
        ] {
            assert_eq!(usable(&p), None, "{p}");
        }
        let p = format!("[file:hashes.'SHA-512' = '{}']", "ab".repeat(64));
        assert_eq!(usable(&p), Some(vec!["not computed".into()]));
    }

    #[test]
    fn clamav_lines() {
        let line = format!("{MD5}:68:Eicar-Test-Signature");
        let (d, n) = clamav_line(line.as_bytes()).unwrap();
        assert_eq!((d.to_hex(), n), (MD5.into(), &b"Eicar-Test-Signature"[..]));
        assert!(clamav_line(format!("{SHA256}:*:Win.X:73").as_bytes()).is_some());
        assert!(clamav_line(format!("{MD5}:x:Name").as_bytes()).is_none());
        assert!(clamav_line(format!("{MD5}:12:").as_bytes()).is_none());
        assert!(clamav_line(b"44d8:12:Name").is_none());
    }
}
