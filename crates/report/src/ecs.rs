//! `--format ecs`: one Elastic Common Schema document per line, for a SIEM (Filebeat, Elastic
//! Agent, Logstash). Field names are a contract: ECS fields as nested objects, hashsweep's own
//! fields under `hashsweep.*`, optional fields left out rather than written as null.
//!
//! Documents are built from borrowed typed structs (no `serde_json::Value`, no per-document
//! allocation beyond lossy path conversions), since a sweep can write millions of them.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use super::fields::{EcsOwn, View};
use super::{Columns, Record, Removed, Reporter, Summary};
use hashsweep_core::digest::Algo;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// This machine's host name (`gethostname`; Windows: `GetComputerNameExW`), lossy UTF-8; `None`
/// if it cannot be read.
pub use hashsweep_core::platform::host_name;

pub(super) struct EcsReporter<'w> {
    out: Box<dyn Write + 'w>,
    host: Option<String>,
    /// The digest the service was asked about (what an answer matched).
    lookup: Algo,
}

impl<'w> EcsReporter<'w> {
    pub(super) fn new(out: Box<dyn Write + 'w>, cols: Columns) -> Self {
        EcsReporter {
            out,
            host: cols.host_name.or_else(host_name),
            lookup: cols.lookup_algo.unwrap_or(Algo::Sha256),
        }
    }
}

impl EcsReporter<'_> {
    /// One document on one line, stamped now, with the host.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        event: Event,
        file: FileFields<'_>,
        threat: Option<Threat<'_>>,
        hashsweep: EcsOwn<'_>,
        process: Option<ProcessFields<'_>>,
        package: Option<PackageFields<'_>>,
        rule: Option<RuleFields<'_>>,
    ) -> io::Result<()> {
        let doc = Doc {
            process,
            package,
            rule,
            timestamp: Rfc3339::now(),
            ecs: Ecs {
                version: ECS_VERSION,
            },
            event,
            host: self.host.as_deref().map(|name| Host { name }),
            file,
            threat,
            hashsweep,
        };
        serde_json::to_writer(&mut *self.out, &doc)?;
        self.out.write_all(b"\n")
    }
}

impl Reporter for EcsReporter<'_> {
    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        let alert = r.verdict.is_detection();
        // `threat.enrichments` describes an indicator match: only a detection is one. A clean
        // or unknown answer stays under `hashsweep.*`.
        let service = r.answer.filter(|_| alert).and_then(|a| {
            let atomic = match self.lookup {
                Algo::Sha256 => r.sha256.as_deref(),
                Algo::Md5 => r.md5.as_deref(),
                Algo::Sha1 => r.sha1.as_deref(),
            }?;
            Some(Threat {
                indicator: None,
                feed: None,
                enrichments: Some([Enrichment {
                    indicator: Indicator {
                        provider: "metadefender",
                        kind: "file",
                        // -1 means "unknown to the service", not a count.
                        scanner_stats: (a.total_detected_avs >= 0).then_some(a.total_detected_avs),
                        file: IndicatorFile {
                            hash: Hashes::one(self.lookup, atomic),
                        },
                    },
                    matched: Matched {
                        atomic,
                        field: match self.lookup {
                            Algo::Sha256 => "file.hash.sha256",
                            Algo::Md5 => "file.hash.md5",
                            Algo::Sha1 => "file.hash.sha1",
                        },
                        kind: "indicator_match_rule",
                    },
                }]),
            })
        });
        // A file an IOC list names: the list's entry as `threat.indicator.*`, the list as
        // `threat.feed.name` (the service's answer, when one was asked, stays an enrichment).
        let threat = match r.ioc {
            None => match circl_flagged(r) {
                Some((indicator, feed)) => {
                    let mut t = service.unwrap_or(Threat {
                        indicator: None,
                        feed: None,
                        enrichments: None,
                    });
                    t.indicator = Some(indicator);
                    t.feed = Some(feed);
                    Some(t)
                }
                None => service,
            },
            Some(m) => {
                let hex = m.digest.to_hex();
                let mut t = service.unwrap_or(Threat {
                    indicator: None,
                    feed: None,
                    enrichments: None,
                });
                t.indicator = Some(ListIndicator {
                    kind: "file",
                    provider: m.list.kind.provider(),
                    name: m.entry,
                    description: Cow::Borrowed(m.list.kind.as_str()),
                    file: OwnedIndicatorFile {
                        hash: [(m.digest.algo().name(), hex)].into_iter().collect(),
                        name: None,
                    },
                });
                t.feed = Some(Feed {
                    name: String::from_utf8_lossy(m.list.path.as_os_str().as_encoded_bytes()),
                });
                Some(t)
            }
        };
        let mut file = FileFields::new(r.path);
        file.size = r.size;
        file.mtime = r.mtime.and_then(Rfc3339::from_system_time);
        file.inode = r.inode.map(AsString);
        file.hash = Hashes::of(r.sha256.as_deref(), r.md5.as_deref(), r.sha1.as_deref());
        file.kind = file_type(r);
        let event = if alert {
            Event::new("alert", &["malware", "file"], &["info"])
        } else {
            Event::new("event", &["file"], &["info"])
        };
        // The process's executable and its digest: a library's record names the executable of
        // the process that maps it, and leaves the hash to `file.hash` (it is not the
        // process's).
        let process = r.process.map(|p| ProcessFields {
            pid: p.pid,
            name: &p.name,
            args: &p.args,
            executable: p
                .library_of
                .as_deref()
                .or(r.path)
                .map(|e| String::from_utf8_lossy(e.as_os_str().as_encoded_bytes())),
            hash: match p.library() {
                true => None,
                false => Hashes::of(r.sha256.as_deref(), None, None),
            },
        });
        self.write(
            event,
            file,
            threat,
            EcsOwn {
                view: View::Record(r),
            },
            process,
            r.package.map(|p| PackageFields {
                name: &p.name,
                version: &p.version,
                kind: p.manager.name(),
            }),
            r.yara.map(RuleFields::of),
        )
    }

    fn removed(&mut self, r: &Removed<'_>) -> io::Result<()> {
        let mut file = FileFields::new(Some(r.path));
        file.size = r.size;
        file.hash = Hashes::of(r.sha256.as_deref(), None, None);
        file.kind = Some("file");
        self.write(
            Event::new("event", &["file"], &["deletion"]),
            file,
            None,
            EcsOwn {
                view: View::Removed(r),
            },
            None,
            None,
            None,
        )
    }

    /// The summary goes to stderr only: the output stays one file document per line.
    fn finish(&mut self, _: &Summary) -> io::Result<()> {
        self.out.flush()
    }
}

/// `file` for what is (or was) a regular file, `symlink` for a symlink that was not followed,
/// nothing when the record does not say (a FIFO, a device, a path that could not be listed).
fn file_type(r: &Record<'_>) -> Option<&'static str> {
    if r.sha256.is_some() || r.size.is_some() {
        // A size is only known once `fstat` saw a regular file.
        Some("file")
    } else if r.symlink {
        Some("symlink")
    } else {
        None
    }
}

#[derive(Serialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp", skip_serializing_if = "Option::is_none")]
    timestamp: Option<Rfc3339>,
    ecs: Ecs,
    event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<Host<'a>>,
    file: FileFields<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threat: Option<Threat<'a>>,
    /// A running program's image (`--processes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<ProcessFields<'a>>,
    /// The package that owns the file (`--packages`).
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<PackageFields<'a>>,
    /// The `--yara` rules that matched: one value per rule in each field (ECS fields may
    /// hold arrays).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<RuleFields<'a>>,
    hashsweep: EcsOwn<'a>,
}

/// ECS `rule.*` for the matching YARA rules: `name` is the rule's identifier, `ruleset` its
/// namespace (the rule file's stem), and `description`, `author`, `reference` come from the
/// rules' metadata when they have it.
#[derive(Serialize)]
struct RuleFields<'a> {
    name: Vec<&'a str>,
    ruleset: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    description: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    author: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reference: Vec<&'a str>,
}

impl<'a> RuleFields<'a> {
    fn of(hits: &'a [crate::rules::RuleHit]) -> Self {
        let meta = |key: &str| hits.iter().filter_map(|h| h.meta_str(key)).collect();
        RuleFields {
            name: hits.iter().map(|h| h.identifier.as_str()).collect(),
            ruleset: hits.iter().map(|h| h.namespace.as_str()).collect(),
            description: meta("description"),
            author: meta("author"),
            reference: meta("reference"),
        }
    }
}

/// ECS `package.*`: `type` is the package format (`dpkg`, `rpm`, `apk`, `pacman`).
#[derive(Serialize)]
struct PackageFields<'a> {
    name: &'a str,
    version: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// ECS `process.*`: the process a running program's image belongs to.
#[derive(Serialize)]
struct ProcessFields<'a> {
    pid: u32,
    name: &'a str,
    args: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    executable: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<Hashes<'a>>,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event {
    kind: &'static str,
    category: &'static [&'static str],
    #[serde(rename = "type")]
    kind_type: &'static [&'static str],
    module: &'static str,
    dataset: &'static str,
}

impl Event {
    fn new(
        kind: &'static str,
        category: &'static [&'static str],
        kind_type: &'static [&'static str],
    ) -> Event {
        Event {
            kind,
            category,
            kind_type,
            module: "hashsweep",
            dataset: "hashsweep.scan",
        }
    }
}

#[derive(Serialize)]
struct Host<'a> {
    name: &'a str,
}

#[derive(Serialize, Default)]
struct FileFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    directory: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime: Option<Rfc3339>,
    /// A string: ECS maps `file.inode` as a keyword.
    #[serde(skip_serializing_if = "Option::is_none")]
    inode: Option<AsString<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<Hashes<'a>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

impl<'a> FileFields<'a> {
    fn new(path: Option<&'a Path>) -> Self {
        let Some(p) = path else {
            return FileFields::default();
        };
        let lossy = |b: &'a [u8]| String::from_utf8_lossy(b);
        // `hashsweep.path_bytes` carries the raw bytes of a name that is not valid UTF-8.
        FileFields {
            path: Some(lossy(p.as_os_str().as_encoded_bytes())),
            name: p.file_name().map(|n| lossy(n.as_encoded_bytes())),
            directory: p
                .parent()
                .map(|d| d.as_os_str().as_encoded_bytes())
                .filter(|d| !d.is_empty())
                .map(lossy),
            ..FileFields::default()
        }
    }
}

#[derive(Serialize, Default)]
struct Hashes<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha1: Option<&'a str>,
}

impl<'a> Hashes<'a> {
    fn of(sha256: Option<&'a str>, md5: Option<&'a str>, sha1: Option<&'a str>) -> Option<Self> {
        (sha256.is_some() || md5.is_some() || sha1.is_some()).then_some(Hashes {
            sha256,
            md5,
            sha1,
        })
    }

    fn one(algo: Algo, hex: &'a str) -> Self {
        let mut h = Hashes::default();
        match algo {
            Algo::Sha256 => h.sha256 = Some(hex),
            Algo::Md5 => h.md5 = Some(hex),
            Algo::Sha1 => h.sha1 = Some(hex),
        }
        h
    }
}

#[derive(Serialize)]
struct Threat<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    indicator: Option<ListIndicator<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feed: Option<Feed<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enrichments: Option<[Enrichment<'a>; 1]>,
}

/// ECS `threat.indicator.*` for the entry of a `--known-bad` IOC list that names the file, or
/// for CIRCL hashlookup's record of a file its sources flag (`--circl`).
#[derive(Serialize)]
struct ListIndicator<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// MISP, STIX 2.1, MalwareBazaar, ClamAV; CIRCL hashlookup.
    provider: &'static str,
    /// The entry: event uuid and info, indicator id and name, signature name; CIRCL's
    /// `FileName` (the digest when it has none).
    name: &'a str,
    /// The list's kind (`misp_feed`, `stix2_bundle`...); for CIRCL, the sources that flag
    /// the file (`KnownMalicious: ...`).
    description: Cow<'a, str>,
    file: OwnedIndicatorFile<'a>,
}

#[derive(Serialize)]
struct OwnedIndicatorFile<'a> {
    hash: std::collections::BTreeMap<&'static str, String>,
    /// The file's name as the source knows it (CIRCL's `FileName`).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// A record CIRCL hashlookup knows and its sources flag (`KnownMalicious`): the record as
/// `threat.indicator.*` (matched by the digest CIRCL was asked by: SHA-1, else MD5), CIRCL as
/// `threat.feed.name`. `None` for any other record (a file CIRCL knows and nobody flags is no
/// indicator).
fn circl_flagged<'r>(r: &'r Record<'_>) -> Option<(ListIndicator<'r>, Feed<'r>)> {
    let c = r.circl?;
    let sources = c.known_malicious.as_deref()?;
    let (algo, hex) = match (r.sha1.as_deref(), r.md5.as_deref()) {
        (Some(h), _) => ("sha1", h),
        (None, Some(h)) => ("md5", h),
        (None, None) => return None,
    };
    Some((
        ListIndicator {
            kind: "file",
            provider: "CIRCL hashlookup",
            name: c.file_name.as_deref().unwrap_or(hex),
            description: Cow::Owned(format!("KnownMalicious: {sources}")),
            file: OwnedIndicatorFile {
                hash: [(algo, hex.to_string())].into_iter().collect(),
                name: c.file_name.as_deref(),
            },
        },
        Feed {
            name: Cow::Borrowed("CIRCL hashlookup"),
        },
    ))
}

/// ECS `threat.feed.*`: the list file.
#[derive(Serialize)]
struct Feed<'a> {
    name: Cow<'a, str>,
}

#[derive(Serialize)]
struct Enrichment<'a> {
    indicator: Indicator<'a>,
    matched: Matched<'a>,
}

#[derive(Serialize)]
struct Indicator<'a> {
    provider: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scanner_stats: Option<i64>,
    file: IndicatorFile<'a>,
}

#[derive(Serialize)]
struct IndicatorFile<'a> {
    hash: Hashes<'a>,
}

#[derive(Serialize)]
struct Matched<'a> {
    atomic: &'a str,
    field: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A value written as a JSON string through its `Display`.
struct AsString<T>(T);

impl<T: fmt::Display> Serialize for AsString<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A UTC instant written as RFC 3339 with milliseconds (`2024-05-01T12:34:56.789Z`), any
/// time from year 0 to 9999, before the epoch included (an mtime can be set to anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rfc3339 {
    /// Seconds since the epoch, negative before it.
    secs: i64,
    millis: u32,
}

impl Rfc3339 {
    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
    const MIN_SECS: i64 = -62_167_219_200;
    const MAX_SECS: i64 = 253_402_300_799;

    pub(crate) fn now() -> Option<Rfc3339> {
        Rfc3339::from_system_time(hashsweep_core::clock::now())
    }

    pub(crate) fn from_system_time(t: SystemTime) -> Option<Rfc3339> {
        let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (i64::try_from(d.as_secs()).ok()?, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let secs = -i64::try_from(d.as_secs()).ok()?;
                match d.subsec_nanos() {
                    0 => (secs, 0),
                    n => (secs - 1, 1_000_000_000 - n),
                }
            }
        };
        (Self::MIN_SECS..=Self::MAX_SECS)
            .contains(&secs)
            .then_some(Rfc3339 {
                secs,
                millis: nanos / 1_000_000,
            })
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.secs.div_euclid(86_400));
        let sod = self.secs.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            self.millis
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(unix)]
    use base64::Engine as _;
    use hashsweep_lookup::Answer;
    use hashsweep_lookup::Verdict;
    #[cfg(unix)]
    use std::ffi::OsStr;
    use std::time::Duration;

    const SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    const MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

    fn render(
        cols: Columns,
        recs: &[Record<'_>],
        removed: &[Removed<'_>],
    ) -> Vec<serde_json::Value> {
        let mut buf = Vec::new();
        {
            let mut r = super::super::reporter(super::super::Format::Ecs, Box::new(&mut buf), cols);
            for rec in recs {
                r.record(rec).unwrap();
            }
            for rm in removed {
                r.removed(rm).unwrap();
            }
            r.finish(&Summary::default()).unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn cols() -> Columns {
        Columns {
            host_name: Some("testhost".into()),
            lookup_algo: Some(Algo::Sha256),
            ..Columns::default()
        }
    }

    fn rec<'a>(path: &'a Path, verdict: Verdict, answer: Option<&'a Answer>) -> Record<'a> {
        Record {
            size: Some(68),
            mtime: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            inode: Some(4242),
            sha256: Some(SHA256.into()),
            md5: Some(MD5.into()),
            answer,
            ..Record::new(Some(path), verdict)
        }
    }

    fn answer(code: i64, avs: i64) -> Answer {
        Answer {
            scan_result_i: code,
            total_detected_avs: avs,
            data_id: Some("bzI0MDUwMWFi".into()),
            details: None,
            hosts: None,
        }
    }

    #[test]
    fn infected_record_is_an_alert_with_the_digest_as_matched_atomic() {
        let a = answer(1, 30);
        let docs = render(
            cols(),
            &[rec(
                Path::new("/srv/www/eicar.com"),
                Verdict::Infected,
                Some(&a),
            )],
            &[],
        );
        let d = &docs[0];
        assert!(d["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(d["ecs"]["version"], ECS_VERSION);
        assert_eq!(d["event"]["kind"], "alert");
        assert_eq!(
            d["event"]["category"],
            serde_json::json!(["malware", "file"])
        );
        assert_eq!(d["event"]["module"], "hashsweep");
        assert_eq!(d["host"]["name"], "testhost");
        assert_eq!(d["file"]["path"], "/srv/www/eicar.com");
        assert_eq!(d["file"]["name"], "eicar.com");
        assert_eq!(d["file"]["directory"], "/srv/www");
        assert_eq!(d["file"]["size"], 68);
        assert_eq!(d["file"]["mtime"], "2023-11-14T22:13:20.123Z");
        assert_eq!(d["file"]["inode"], "4242");
        assert_eq!(d["file"]["type"], "file");
        assert_eq!(d["file"]["hash"]["sha256"], SHA256);
        assert_eq!(d["file"]["hash"]["md5"], MD5);
        assert!(d["file"]["hash"].get("sha1").is_none(), "not computed: {d}");
        let e = &d["threat"]["enrichments"];
        assert_eq!(e.as_array().unwrap().len(), 1);
        assert_eq!(e[0]["matched"]["atomic"], SHA256);
        assert_eq!(e[0]["matched"]["field"], "file.hash.sha256");
        assert_eq!(e[0]["matched"]["type"], "indicator_match_rule");
        assert_eq!(e[0]["indicator"]["provider"], "metadefender");
        assert_eq!(e[0]["indicator"]["type"], "file");
        assert_eq!(e[0]["indicator"]["scanner_stats"], 30);
        assert_eq!(e[0]["indicator"]["file"]["hash"]["sha256"], SHA256);
        assert_eq!(d["hashsweep"]["verdict"], "infected");
        assert_eq!(d["hashsweep"]["scan_result_i"], 1);
        assert_eq!(d["hashsweep"]["total_detected_avs"], 30);
        assert_eq!(d["hashsweep"]["data_id"], "bzI0MDUwMWFi");
        assert!(d["hashsweep"].get("path_bytes").is_none());
        assert!(d["hashsweep"].get("error").is_none(), "no nulls: {d}");
    }

    #[test]
    fn lookup_by_md5_matches_the_md5_field() {
        let a = answer(1, 4);
        let c = Columns {
            lookup_algo: Some(Algo::Md5),
            ..cols()
        };
        let docs = render(c, &[rec(Path::new("a"), Verdict::Infected, Some(&a))], &[]);
        let e = &docs[0]["threat"]["enrichments"][0];
        assert_eq!(e["matched"]["atomic"], MD5);
        assert_eq!(e["matched"]["field"], "file.hash.md5");
        assert_eq!(e["indicator"]["file"]["hash"]["md5"], MD5);
        assert!(e["indicator"]["file"]["hash"].get("sha256").is_none());
        assert_eq!(docs[0]["event"]["kind"], "alert");
        assert!(
            docs[0]["file"].get("directory").is_none(),
            "no parent: {}",
            docs[0]
        );
    }

    #[test]
    fn only_detections_are_indicator_matches() {
        let (unknown, clean, odd) = (answer(5, -1), answer(0, 0), answer(1, -1));
        let docs = render(
            cols(),
            &[
                rec(Path::new("u"), Verdict::Unknown, Some(&unknown)),
                rec(Path::new("n"), Verdict::NotLookedUp, None),
                rec(Path::new("c"), Verdict::Clean, Some(&clean)),
                rec(Path::new("i"), Verdict::Infected, Some(&odd)),
            ],
            &[],
        );
        // Clean and unknown answers: the service's words under hashsweep.* only.
        for d in [&docs[0], &docs[2]] {
            assert!(d.get("threat").is_none(), "{d}");
            assert_eq!(d["event"]["kind"], "event");
            assert!(d["hashsweep"]["scan_result_i"].is_number(), "{d}");
        }
        assert_eq!(docs[0]["hashsweep"]["total_detected_avs"], -1);
        assert_eq!(docs[2]["hashsweep"]["verdict"], "clean");
        // A detection without a count has no scanner_stats (-1 is no count).
        let ind = &docs[3]["threat"]["enrichments"][0]["indicator"];
        assert!(ind.get("scanner_stats").is_none(), "{ind}");
        assert!(docs[1].get("threat").is_none(), "{}", docs[1]);
        assert_eq!(docs[1]["hashsweep"]["verdict"], "not_looked_up");
        assert!(docs[1]["hashsweep"].get("scan_result_i").is_none());
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there (Windows: platform::tests).
    #[cfg(unix)]
    #[test]
    fn non_utf8_path_keeps_raw_bytes_under_hashsweep() {
        let p = Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            b"dir/caf\xe9",
        ));
        let docs = render(cols(), &[rec(p, Verdict::NotLookedUp, None)], &[]);
        let d = &docs[0];
        assert_eq!(d["file"]["path"], "dir/caf\u{fffd}");
        assert_eq!(d["file"]["name"], "caf\u{fffd}");
        assert_eq!(d["file"]["directory"], "dir");
        let b64 = d["hashsweep"]["path_bytes"].as_str().unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            b"dir/caf\xe9"
        );
        assert!(d["file"].get("raw").is_none());
    }

    #[test]
    fn skipped_special_files_and_removed_paths() {
        let mut link = rec(Path::new("l"), Verdict::Skipped, None);
        (link.size, link.sha256, link.md5, link.mtime, link.inode) = (None, None, None, None, None);
        link.note = Some("symlink: not followed (use -L to follow)");
        link.symlink = true;
        let mut fifo = link.clone();
        fifo.note = Some("FIFO (named pipe): not opened");
        fifo.symlink = false;
        let gone = Removed {
            path: Path::new("old/gone.txt"),
            size: Some(3),
            sha256: Some(SHA256.into()),
        };
        let docs = render(cols(), &[link, fifo], &[gone]);
        assert_eq!(docs[0]["file"]["type"], "symlink");
        assert!(docs[0]["file"].get("hash").is_none());
        assert!(docs[0]["file"].get("inode").is_none());
        assert!(docs[1]["file"].get("type").is_none(), "{}", docs[1]);
        assert_eq!(docs[1]["hashsweep"]["verdict"], "skipped");
        let r = &docs[2];
        assert_eq!(r["event"]["kind"], "event");
        assert_eq!(r["event"]["type"], serde_json::json!(["deletion"]));
        assert_eq!(r["hashsweep"]["change"], "removed");
        assert!(r["hashsweep"].get("verdict").is_none());
        assert_eq!(r["file"]["path"], "old/gone.txt");
        assert_eq!(r["file"]["size"], 3);
        assert_eq!(r["file"]["hash"]["sha256"], SHA256);
        assert_eq!(r["host"]["name"], "testhost");
    }

    #[test]
    fn default_host_name_is_gethostname() {
        let c = Columns {
            host_name: None,
            ..cols()
        };
        let docs = render(c, &[rec(Path::new("a"), Verdict::Clean, None)], &[]);
        let expected = host_name().expect("a host name");
        assert_eq!(docs[0]["host"]["name"], expected.as_str());
    }

    // Unix only: Windows' SystemTime holds no time before 1601.
    #[cfg(unix)]
    #[test]
    fn rfc3339_matches_humantime_and_handles_times_before_the_epoch() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Anything from 1970 to about 9000.
            let t = UNIX_EPOCH + Duration::from_millis(x % 220_000_000_000_000);
            assert_eq!(
                Rfc3339::from_system_time(t).unwrap().to_string(),
                humantime::format_rfc3339_millis(t).to_string()
            );
        }
        let before = |ms: u64| {
            Rfc3339::from_system_time(UNIX_EPOCH - Duration::from_millis(ms))
                .unwrap()
                .to_string()
        };
        assert_eq!(before(1), "1969-12-31T23:59:59.999Z");
        assert_eq!(before(1000), "1969-12-31T23:59:59.000Z");
        assert_eq!(before(315_619_200_000), "1960-01-01T00:00:00.000Z");
        assert_eq!(before(62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert!(
            Rfc3339::from_system_time(UNIX_EPOCH - Duration::from_secs(62_167_219_201)).is_none()
        );
        let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(
            Rfc3339::from_system_time(last).unwrap().to_string(),
            "9999-12-31T23:59:59.000Z"
        );
        assert!(Rfc3339::from_system_time(last + Duration::from_secs(1)).is_none());
    }
}
