//! The report record's fields, defined once: their names, their order, when each is written,
//! and where ECS puts it. The JSON/NDJSON writer, the CSV header and rows, and the
//! `hashsweep.*` object of ECS documents are all derived from [`FIELDS`], so the formats
//! cannot drift apart (a field added here appears in every format or fails a test).

use std::borrow::Cow;
use std::path::Path;

use base64::Engine as _;
use serde::ser::{SerializeMap, Serializer};

use super::{Change, Record, Removed};
use hashsweep_lookup::{EngineResult, Verdict};

/// One field of a report record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Path,
    PathBytes,
    Size,
    Sha256,
    Md5,
    Sha1,
    Verdict,
    ScanResultI,
    TotalDetectedAvs,
    DataId,
    Error,
    Note,
    Change,
    Source,
    ApplicationType,
    ScanDetails,
    Pid,
    ProcessName,
    Cmdline,
    Deleted,
    Uid,
    Library,
    Container,
    Member,
    Hosts,
    AnsweredAt,
    Stale,
    List,
    ListEntry,
    Package,
    PackageCheck,
    Yara,
}

/// When a field is written in JSON and NDJSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Json {
    /// Always, `null` when empty: scripts can rely on the key.
    Always,
    /// Only with a value.
    WhenSet,
}

/// Whether a field is a CSV column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csv {
    Always,
    /// Only when the run computed that digest or compared with a baseline (see [`Columns`]).
    ///
    /// [`Columns`]: super::Columns
    When(Optional),
    /// Not in CSV (nested data).
    Never,
}

/// The columns a CSV report has only for some runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optional {
    Md5,
    Sha1,
    Change,
    /// When an NSRL RDS database is among the known sets.
    ApplicationType,
    /// With `--processes`.
    Process,
    /// With `--archives`: `container` and `member`.
    Archives,
    /// With `--packages`: `package` and `package_check`.
    Packages,
    /// With `--yara`: `yara`.
    Yara,
}

/// Where an ECS document carries a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecs {
    /// An ECS field of its own (the dotted name), written by the ECS writer.
    Ecs(&'static str),
    /// Under `hashsweep.` with the record's name, written from this list.
    Own,
}

/// A field's name and where it is written.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub field: Field,
    /// The key in JSON, the CSV column, the name under `hashsweep.` in ECS.
    pub name: &'static str,
    pub json: Json,
    pub csv: Csv,
    pub ecs: Ecs,
}

const fn spec(field: Field, name: &'static str, json: Json, csv: Csv, ecs: Ecs) -> Spec {
    Spec {
        field,
        name,
        json,
        csv,
        ecs,
    }
}

/// Every field of a record, in report order. The names are a contract scripts rely on.
pub const FIELDS: &[Spec] = {
    use Csv::{Always as Col, Never, When};
    use Ecs::Own;
    use Json::{Always, WhenSet};
    &[
        spec(Field::Path, "path", Always, Col, Ecs::Ecs("file.path")),
        spec(Field::PathBytes, "path_bytes", WhenSet, Col, Own),
        spec(Field::Size, "size", Always, Col, Ecs::Ecs("file.size")),
        spec(
            Field::Sha256,
            "sha256",
            Always,
            Col,
            Ecs::Ecs("file.hash.sha256"),
        ),
        spec(
            Field::Md5,
            "md5",
            WhenSet,
            When(Optional::Md5),
            Ecs::Ecs("file.hash.md5"),
        ),
        spec(
            Field::Sha1,
            "sha1",
            WhenSet,
            When(Optional::Sha1),
            Ecs::Ecs("file.hash.sha1"),
        ),
        spec(Field::Verdict, "verdict", Always, Col, Own),
        spec(Field::ScanResultI, "scan_result_i", Always, Col, Own),
        spec(
            Field::TotalDetectedAvs,
            "total_detected_avs",
            Always,
            Col,
            Own,
        ),
        spec(Field::DataId, "data_id", Always, Col, Own),
        spec(Field::Error, "error", Always, Col, Own),
        spec(Field::Note, "note", WhenSet, Col, Own),
        spec(
            Field::Change,
            "change",
            WhenSet,
            When(Optional::Change),
            Own,
        ),
        spec(Field::Source, "source", WhenSet, Col, Own),
        spec(
            Field::ApplicationType,
            "application_type",
            WhenSet,
            When(Optional::ApplicationType),
            Own,
        ),
        spec(Field::ScanDetails, "scan_details", WhenSet, Never, Own),
        // A running program's image (`--processes`).
        spec(
            Field::Pid,
            "pid",
            WhenSet,
            When(Optional::Process),
            Ecs::Ecs("process.pid"),
        ),
        spec(
            Field::ProcessName,
            "process_name",
            WhenSet,
            When(Optional::Process),
            Ecs::Ecs("process.name"),
        ),
        spec(
            Field::Cmdline,
            "cmdline",
            WhenSet,
            When(Optional::Process),
            Ecs::Ecs("process.args"),
        ),
        spec(
            Field::Deleted,
            "deleted",
            WhenSet,
            When(Optional::Process),
            Own,
        ),
        spec(Field::Uid, "uid", WhenSet, When(Optional::Process), Own),
        // A library the process maps: its `pid` and process fields are of the process, its
        // path and digests of the library.
        spec(
            Field::Library,
            "library",
            WhenSet,
            When(Optional::Process),
            Own,
        ),
        // A member of an archive: the file on disk, and the path inside (`path` joins them).
        spec(
            Field::Container,
            "container",
            WhenSet,
            When(Optional::Archives),
            Own,
        ),
        spec(
            Field::Member,
            "member",
            WhenSet,
            When(Optional::Archives),
            Own,
        ),
        // On how many hosts of the fleet the digest is: from a gateway with `--prevalence`
        // (`hashsweep_hosts`); absent when unknown. Last, so that no CSV column moves.
        spec(Field::Hosts, "hosts", WhenSet, Col, Own),
        // When the service gave the answer (RFC 3339), and whether it is stale: kept from an
        // earlier run past its TTL, not refreshed yet (see `--max-age`). With every answer.
        spec(Field::AnsweredAt, "answered_at", WhenSet, Col, Own),
        spec(Field::Stale, "stale", WhenSet, Col, Own),
        // A file an IOC list names (`--known-bad` MISP, STIX, MalwareBazaar, ClamAV): the list
        // and its entry (event uuid and info, indicator id and name, signature name). In ECS
        // also as `threat.indicator.*`. Last, so that no CSV column moves.
        spec(Field::List, "list", WhenSet, Col, Own),
        spec(Field::ListEntry, "list_entry", WhenSet, Col, Own),
        // The package that owns the file (`--packages`): an object `{name, version, manager}`
        // (CSV: `manager:name=version`; ECS: `package.name`, `package.version`,
        // `package.type`), and what the file's digest says of it: `match`, `modified`,
        // `config_changed` (absent when nothing could be compared). After `stale`, and only
        // with --packages, so that no CSV column moves.
        spec(
            Field::Package,
            "package",
            WhenSet,
            When(Optional::Packages),
            Ecs::Ecs("package.name"),
        ),
        spec(
            Field::PackageCheck,
            "package_check",
            WhenSet,
            When(Optional::Packages),
            Own,
        ),
        // The `--yara` rules that matched (`yr`'s ndjson shape, with `rule` as
        // `namespace:identifier`); CSV: the names, `;`-separated; ECS: `rule.name`,
        // `rule.ruleset`. Last, and only with --yara, so that no CSV column moves.
        spec(
            Field::Yara,
            "yara",
            WhenSet,
            When(Optional::Yara),
            Ecs::Ecs("rule.name"),
        ),
    ]
};

/// One field's value.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    Bool(bool),
    Verdict(&'a Verdict),
    Details(&'a [EngineResult]),
    Package(&'a hashsweep_known::packages::Package),
    Rules(&'a [super::rules::RuleHit]),
}

impl serde::Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) => s.serialize_str(v),
            Value::U64(v) => s.serialize_u64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::Verdict(v) => v.serialize(s),
            Value::Details(v) => v.serialize(s),
            Value::Rules(v) => v.serialize(s),
            Value::Package(p) => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("name", &p.name)?;
                m.serialize_entry("version", &p.version)?;
                m.serialize_entry("manager", p.manager.name())?;
                m.end()
            }
        }
    }
}

impl Value<'_> {
    /// The CSV cell (nested values have no column).
    fn cell(&self) -> String {
        match self {
            Value::Str(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::Verdict(v) => v.to_string(),
            Value::Details(_) => String::new(),
            Value::Rules(v) => super::rules::names(v),
            Value::Package(p) => format!("{}:{}={}", p.manager, p.name, p.version),
        }
    }
}

/// What a writer sees of one record: a path's joined result, or a path of the baseline that is
/// gone (written with the old size and digest, `change: "removed"`, and nothing else).
#[derive(Clone, Copy)]
pub enum View<'a> {
    Record(&'a Record<'a>),
    Removed(&'a Removed<'a>),
}

impl<'a> View<'a> {
    /// The value of `field`, `None` when the record has none.
    pub fn value(&self, field: Field) -> Option<Value<'a>> {
        let s = |v: &'a Option<String>| v.as_deref().map(|v| Value::Str(Cow::Borrowed(v)));
        let r = match *self {
            View::Record(r) => r,
            View::Removed(r) => {
                return match field {
                    Field::Path => Some(Value::Str(lossy(r.path))),
                    Field::PathBytes => path_bytes(r.path).map(|b| Value::Str(b.into())),
                    Field::Size => r.size.map(Value::U64),
                    Field::Sha256 => s(&r.sha256),
                    Field::Change => Some(Value::Str("removed".into())),
                    _ => None,
                };
            }
        };
        match field {
            Field::Path => r.path.map(|p| Value::Str(lossy(p))),
            Field::PathBytes => r.path.and_then(path_bytes).map(|b| Value::Str(b.into())),
            Field::Size => r.size.map(Value::U64),
            Field::Sha256 => s(&r.sha256),
            Field::Md5 => s(&r.md5),
            Field::Sha1 => s(&r.sha1),
            Field::Verdict => Some(Value::Verdict(&r.verdict)),
            Field::ScanResultI => r.answer.map(|a| Value::I64(a.scan_result_i)),
            Field::TotalDetectedAvs => r.answer.map(|a| Value::I64(a.total_detected_avs)),
            Field::DataId => r
                .answer
                .and_then(|a| a.data_id.as_deref())
                .map(|d| Value::Str(d.into())),
            Field::Error => r.error.map(|e| Value::Str(e.into())),
            Field::Note => r.note.map(|n| Value::Str(n.into())),
            Field::Change => r.change.map(|c| Value::Str(Change::as_str(c).into())),
            Field::Source => r.source.map(|v| Value::Str(v.into())),
            Field::ApplicationType => r.application_type.map(|v| Value::Str(v.into())),
            Field::ScanDetails => r
                .answer
                .and_then(|a| a.details.as_deref())
                .map(Value::Details),
            Field::Pid => r.process.map(|p| Value::U64(p.pid.into())),
            Field::ProcessName => r.process.map(|p| Value::Str(p.name.as_str().into())),
            Field::Cmdline => r.process.map(|p| Value::Str(p.cmdline().into())),
            // Written only when true: a file on disk is not "not deleted" news.
            Field::Deleted => r.process.filter(|p| p.deleted).map(|_| Value::Bool(true)),
            Field::Uid => r.process.and_then(|p| p.uid).map(|u| Value::U64(u.into())),
            // Written only when true, as `deleted`.
            Field::Library => r.process.filter(|p| p.library()).map(|_| Value::Bool(true)),
            Field::Container => r.container.map(|p| Value::Str(lossy(p))),
            Field::Member => r.member.map(|p| Value::Str(lossy(p))),
            Field::Hosts => r.answer.and_then(|a| a.hosts).map(|n| Value::U64(n.into())),
            Field::AnsweredAt => r
                .answered_at
                .and_then(super::rfc3339)
                .map(|t| Value::Str(t.into())),
            Field::Stale => r.answered_at.map(|_| Value::Bool(r.stale)),
            Field::List => match (r.ioc, r.circl) {
                (Some(m), _) => Some(Value::Str(lossy(&m.list.path))),
                (None, Some(_)) => Some(Value::Str("CIRCL hashlookup".into())),
                (None, None) => None,
            },
            Field::ListEntry => match (r.ioc, r.circl) {
                (Some(m), _) => Some(Value::Str(m.entry.into())),
                (None, Some(c)) => Some(Value::Str(c.describe().into())),
                (None, None) => None,
            },
            Field::Package => r.package.map(Value::Package),
            Field::PackageCheck => r.package_check.map(|c| Value::Str(c.as_str().into())),
            Field::Yara => r.yara.map(Value::Rules),
        }
    }

    /// Whether this kind of record has `field` at all. A path of the baseline that is gone has
    /// only its path, old size and digest, and its change: no verdict, answer or error.
    fn carries(&self, field: Field) -> bool {
        match self {
            View::Record(_) => true,
            View::Removed(_) => matches!(
                field,
                Field::Path | Field::PathBytes | Field::Size | Field::Sha256 | Field::Change
            ),
        }
    }
}

/// `path` as lossy UTF-8 (borrowed when the name is valid UTF-8).
fn lossy(p: &Path) -> Cow<'_, str> {
    String::from_utf8_lossy(p.as_os_str().as_encoded_bytes())
}

/// The base64 of the raw path bytes, only when the name is not valid UTF-8.
pub fn path_bytes(p: &Path) -> Option<String> {
    let raw = p.as_os_str().as_encoded_bytes();
    std::str::from_utf8(raw)
        .is_err()
        .then(|| base64::engine::general_purpose::STANDARD.encode(raw))
}

/// A record as one JSON object: the fields of [`FIELDS`] in order, by their [`Json`] rule.
pub struct JsonRecord<'a>(pub View<'a>);

impl serde::Serialize for JsonRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for f in FIELDS {
            match (self.0.value(f.field), f.json) {
                (Some(v), _) => m.serialize_entry(f.name, &v)?,
                (None, Json::Always) if self.0.carries(f.field) => {
                    m.serialize_entry(f.name, &None::<()>)?
                }
                (None, _) => {}
            }
        }
        m.end()
    }
}

/// The `hashsweep.*` object of an ECS document: the fields ECS has no place for, set ones only.
pub struct EcsOwn<'a> {
    pub view: View<'a>,
}

impl serde::Serialize for EcsOwn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for f in FIELDS.iter().filter(|f| f.ecs == Ecs::Own) {
            if let Some(v) = self.view.value(f.field) {
                m.serialize_entry(f.name, &v)?;
            }
        }
        m.end()
    }
}

/// The CSV columns of a run, in order.
pub fn csv_columns(optional: impl Fn(Optional) -> bool) -> Vec<&'static Spec> {
    FIELDS
        .iter()
        .filter(|f| match f.csv {
            Csv::Always => true,
            Csv::When(o) => optional(o),
            Csv::Never => false,
        })
        .collect()
}

/// One CSV row for `columns` (empty cells for fields without a value).
pub fn csv_row(view: &View<'_>, columns: &[&Spec]) -> Vec<String> {
    columns
        .iter()
        .map(|f| view.value(f.field).map(|v| v.cell()).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Columns, Format, Reporter, Summary, reporter};
    #[cfg(unix)]
    use hashsweep_lookup::Answer;
    #[cfg(unix)]
    use std::ffi::OsStr;

    fn render(format: Format, write: impl FnOnce(&mut dyn Reporter)) -> String {
        let mut buf = Vec::new();
        {
            let cols = Columns {
                md5: true,
                sha1: true,
                change: true,
                application_type: true,
                process: true,
                archives: true,
                packages: true,
                yara: true,
                host_name: Some("h".into()),
                ..Columns::default()
            };
            let mut r = reporter(format, Box::new(&mut buf), cols);
            write(&mut *r);
            r.finish(&Summary::default()).unwrap();
        }
        String::from_utf8(buf).unwrap()
    }

    /// A dotted ECS path in a document.
    #[cfg(unix)]
    fn at<'v>(doc: &'v serde_json::Value, dotted: &str) -> &'v serde_json::Value {
        dotted.split('.').fold(doc, |v, k| &v[k])
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there (Windows: platform::tests).
    #[cfg(unix)]
    /// Every field of the list is written by every format, under its name (JSON, CSV) or at
    /// its ECS place; a field added to one writer only, or left out of one, fails here.
    #[test]
    fn every_field_appears_in_json_csv_and_ecs() {
        let answer = Answer {
            scan_result_i: 1,
            total_detected_avs: 7,
            data_id: Some("d1".into()),
            details: Some(Box::new([EngineResult {
                engine: "e".into(),
                threat_found: "t".into(),
                scan_result_i: Some(1),
                def_time: None,
            }])),
            hosts: Some(3),
        };
        let path = Path::new(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(
            b"/d/caf\xe9",
        ));
        let process = crate::scanned::ProcessInfo {
            pid: 42,
            name: "caf".into(),
            args: vec!["caf".into(), "-x".into()],
            uid: Some(0),
            path: path.to_path_buf(),
            deleted: true,
            library_of: Some(std::path::PathBuf::from("/d/prog")),
        };
        let list = hashsweep_known::ioc::IocList {
            path: "/ioc/feed".into(),
            kind: hashsweep_known::ioc::IocKind::MispFeed,
            entries: 1,
            skipped: 0,
            modified: None,
        };
        let package = hashsweep_known::packages::Package {
            name: "coreutils".into(),
            version: "9.1-1".into(),
            manager: hashsweep_known::packages::Manager::Dpkg,
        };
        let hits = [crate::rules::RuleHit {
            rule: "ns:R".into(),
            identifier: "R".into(),
            namespace: "ns".into(),
            meta: serde_json::json!([]),
            tags: Vec::new(),
            strings: serde_json::json!([]),
            strings_omitted: 0,
        }];
        let r = Record {
            path: Some(path),
            size: Some(3),
            mtime: None,
            inode: None,
            sha256: Some("aa".into()),
            md5: Some("bb".into()),
            sha1: Some("cc".into()),
            verdict: Verdict::Infected,
            answer: Some(&answer),
            error: Some("err"),
            note: Some("n"),
            change: Some(Change::Modified),
            source: Some("local"),
            application_type: Some("Operating System"),
            ioc: Some(hashsweep_known::ioc::IocMatch {
                list: &list,
                entry: "MISP event u: x",
                digest: hashsweep_core::digest::Digest::Sha256([0xaa; 32]),
            }),
            circl: None,
            symlink: false,
            process: Some(&process),
            container: Some(Path::new("/d/a.zip")),
            member: Some(Path::new("x.exe")),
            answered_at: Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_220_120),
            ),
            stale: true,
            package: Some(&package),
            package_check: Some(hashsweep_known::packages::PackageCheck::Modified),
            yara: Some(&hits),
        };
        for f in FIELDS {
            assert!(
                View::Record(&r).value(f.field).is_some(),
                "the test record leaves {} empty",
                f.name
            );
        }
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Ndjson, |w| w.record(&r).unwrap())).unwrap();
        let csv = render(Format::Csv, |w| w.record(&r).unwrap());
        let mut rows = csv::Reader::from_reader(csv.as_bytes());
        let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
        let row = rows.records().next().unwrap().unwrap();
        let ecs: serde_json::Value =
            serde_json::from_str(&render(Format::Ecs, |w| w.record(&r).unwrap())).unwrap();
        for f in FIELDS {
            assert!(!json[f.name].is_null(), "json lacks {}: {json}", f.name);
            let col = header.iter().position(|h| h == f.name);
            match f.csv {
                Csv::Never => assert_eq!(col, None, "csv has {}", f.name),
                _ => {
                    let i = col.unwrap_or_else(|| panic!("csv lacks {}: {header:?}", f.name));
                    assert!(!row[i].is_empty(), "csv cell {} is empty", f.name);
                }
            }
            let place = match f.ecs {
                Ecs::Ecs(dotted) => dotted.to_string(),
                Ecs::Own => format!("hashsweep.{}", f.name),
            };
            assert!(!at(&ecs, &place).is_null(), "ecs lacks {place}: {ecs}");
        }
        assert_eq!(header.len(), FIELDS.len() - 1, "{header:?}");
        // A library's ECS process is the one that maps it: its executable, not its hash.
        assert_eq!(at(&ecs, "process.executable"), "/d/prog", "{ecs}");
        assert!(at(&ecs, "process.hash").is_null(), "{ecs}");
        // The package in each format's own shape.
        assert_eq!(
            json["package"],
            serde_json::json!({"name": "coreutils", "version": "9.1-1", "manager": "dpkg"})
        );
        assert_eq!(json["package_check"], "modified");
        let i = header.iter().position(|h| h == "package").unwrap();
        assert_eq!(&row[i], "dpkg:coreutils=9.1-1");
        assert_eq!(
            ecs["package"],
            serde_json::json!({"name": "coreutils", "version": "9.1-1", "type": "dpkg"})
        );
        assert_eq!(at(&ecs, "hashsweep.package_check"), "modified");
    }

    /// A path of the baseline that is gone keeps the shape it always had in every format.
    #[test]
    fn removed_paths_have_path_size_digest_and_change_only() {
        let gone = Removed {
            path: Path::new("/d/gone"),
            size: None,
            sha256: Some("aa".into()),
        };
        let json = render(Format::Ndjson, |w| w.removed(&gone).unwrap());
        assert_eq!(
            json.trim(),
            r#"{"path":"/d/gone","size":null,"sha256":"aa","change":"removed"}"#
        );
        let csv = render(Format::Csv, |w| w.removed(&gone).unwrap());
        let second = csv.lines().nth(1).unwrap();
        assert_eq!(second, "/d/gone,,,aa,,,,,,,,,removed,,,,,,,,,,,,,,,,,,");
        let ecs: serde_json::Value =
            serde_json::from_str(&render(Format::Ecs, |w| w.removed(&gone).unwrap())).unwrap();
        assert_eq!(ecs["hashsweep"], serde_json::json!({"change": "removed"}));
    }
}
