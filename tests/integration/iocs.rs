//! `--known-bad` IOC lists as responders receive them, built at test time: MISP feeds, events
//! and restSearch answers (by `pymisp`, which also says what a feed holds), STIX 2.1 bundles
//! (patterns checked by `stix2-patterns`, matches by `stix2-matcher`), MalwareBazaar exports
//! and ClamAV signatures. Every match names its list and entry, in every format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use md5::Md5;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::circl::{python, python_module};
use crate::util::*;

/// A tree of `n` small files, and each one's digests (lower-case hex).
fn files(n: usize) -> (Tree, Vec<Value>) {
    let t = Tree::new();
    let mut info = Vec::new();
    for i in 0..n {
        let name = format!("f{i:02}.bin");
        let data = format!("ioc test file {i}");
        t.file(&name, data.as_bytes());
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        info.push(json!({
            "name": name,
            "md5": hex(&Md5::digest(data.as_bytes())),
            "sha1": hex(&Sha1::digest(data.as_bytes())),
            "sha256": hex(&Sha256::digest(data.as_bytes())),
        }));
    }
    (t, info)
}

/// Run a Python oracle script with the files' digests and a directory; its stdout as JSON.
fn oracle(script: &str, files: &[Value], dir: &Path) -> Value {
    let out = python()
        .args(["-c", script])
        .arg(serde_json::to_string(files).unwrap())
        .arg(dir)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle json")
}

/// `scan --offline --known-bad LIST... TREE` (ndjson), and its records by file name.
fn scan_bad(tree: &Path, lists: &[&Path], extra: &[&str]) -> (BTreeMap<String, Value>, String) {
    let mut c = cmd();
    c.args(["scan", "--offline"]).args(extra);
    for l in lists {
        c.arg("--known-bad").arg(l);
    }
    let out = run(c.arg(tree));
    let err = stderr(&out);
    assert!(matches!(code(&out), 0 | 1), "{err}");
    let recs = ndjson(&out)
        .into_iter()
        .map(|r| {
            let name = Path::new(r["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, r)
        })
        .collect();
    (recs, err)
}

/// File name → `list_entry` of the infected records.
fn infected(recs: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    recs.iter()
        .filter(|(_, r)| r["verdict"] == "infected")
        .map(|(n, r)| (n.clone(), r["list_entry"].as_str().unwrap_or("").to_owned()))
        .collect()
}

const MISP_SCRIPT: &str = r#"
import hashlib, json, os, sys
from pymisp import MISPEvent, MISPObject, MISPOrganisation
files, out = json.loads(sys.argv[1]), sys.argv[2]
org = MISPOrganisation(); org.name = "hashsweep tests"; org.uuid = "5f0e3c1a-0000-4000-8000-000000000001"
kinds = ["sha256", "md5", "sha1", "filename|sha256", "malware-sample", "object"]
events = []
for info, chunk in (("Emotet wave 1", files[:10]), ("Cobalt drop", files[10:20])):
    e = MISPEvent(); e.info = info; e.distribution = 0; e.Orgc = org
    for f in chunk:
        i = int(f["name"][1:3])
        kind, to_ids, deleted = kinds[i % 6], i % 5 != 4, i % 7 == 6
        if kind == "object":
            o = MISPObject("file")
            a = o.add_attribute("sha256", value=f["sha256"], to_ids=to_ids)
            o.add_attribute("filename", value=f["name"])
            e.add_object(o)
        elif kind == "malware-sample":
            a = e.add_attribute(kind, f["name"] + "|" + f["md5"], to_ids=to_ids)
        elif kind.startswith("filename|"):
            a = e.add_attribute(kind, f["name"] + "|" + f[kind[9:]], to_ids=to_ids)
        else:
            a = e.add_attribute(kind, f[kind], to_ids=to_ids)
        if deleted:
            a.deleted = True
    e.add_attribute("sha512", "ab" * 64, to_ids=True)
    e.add_attribute("ip-dst", "198.51.100.7", to_ids=True)
    events.append(e)
feed = os.path.join(out, "feed"); os.makedirs(feed)
manifest, hashes, docs = {}, [], []
for e in events:
    f = e.to_feed(with_meta=True)
    manifest.update(f["Event"].pop("_manifest"))
    hashes += [(h, e.uuid) for h in f["Event"].pop("_hashes")]
    docs.append(f)
    with open(os.path.join(feed, e.uuid + ".json"), "w") as w:
        json.dump(f, w)
with open(os.path.join(feed, "manifest.json"), "w") as w:
    json.dump(manifest, w)
# hashes.csv holds MD5s of attribute values; a file's MD5 in it must not make the file bad.
with open(os.path.join(feed, "hashes.csv"), "w") as w:
    for h, u in hashes + [(files[23]["md5"], events[0].uuid)]:
        w.write(f"{h},{u}\n")
with open(os.path.join(out, "event.json"), "w") as w:
    json.dump(docs[0], w)
with open(os.path.join(out, "rest_events.json"), "w") as w:
    json.dump({"response": docs}, w)
attrs = []
for d in docs:
    ev = {"uuid": d["Event"]["uuid"], "info": d["Event"]["info"]}
    for a in d["Event"].get("Attribute", []) + [a for o in d["Event"].get("Object", []) for a in o["Attribute"]]:
        attrs.append(dict(a, event_id="1", Event=ev))
with open(os.path.join(out, "rest_attributes.json"), "w") as w:
    json.dump({"response": {"Attribute": attrs}}, w)
# What pymisp reads back from each event file: the flat hash attributes for detection.
by_value = {}
for f in files:
    for k in ("md5", "sha1", "sha256"):
        by_value[f[k]] = f["name"]
expected, first = {}, {}
flat = {"md5", "sha1", "sha256", "sha512", "malware-sample"} | {"filename|" + a for a in ("md5", "sha1", "sha256", "sha512")}
for name in sorted(os.listdir(feed)):
    if name in ("manifest.json", "hashes.csv"):
        continue
    ev = MISPEvent(); ev.load_file(os.path.join(feed, name))
    for a in ev.attributes + [a for o in ev.objects for a in o.attributes]:
        if a.type in flat and getattr(a, "to_ids", False) and not getattr(a, "deleted", False):
            v = a.value.split("|")[-1]
            if v in by_value:
                expected[by_value[v]] = f"MISP event {ev.uuid}: {ev.info}"
                if ev.uuid == events[0].uuid:
                    first[by_value[v]] = expected[by_value[v]]
print(json.dumps({"expected": expected, "first": first}))
"#;

/// A MISP feed built by pymisp: the files hashsweep calls infected are those pymisp reads as
/// flat hash attributes for detection (to_ids, not deleted, object attributes included), each
/// naming its event; `hashes.csv` is never read. One event, and restSearch answers of events
/// and of attributes, name the same.
#[test]
fn misp_feed_events_and_restsearch_match_pymisp() {
    if !python_module("pymisp", "pymisp") {
        return;
    }
    let (t, info) = files(24);
    let out = tempfile::tempdir().unwrap();
    let o = oracle(MISP_SCRIPT, &info, out.path());
    let expected: BTreeMap<String, String> = serde_json::from_value(o["expected"].clone()).unwrap();
    let first: BTreeMap<String, String> = serde_json::from_value(o["first"].clone()).unwrap();
    // Not vacuous: some files are in, some are out for each reason.
    assert!(expected.len() >= 8 && expected.len() < 20, "{expected:?}");
    assert!(!expected.contains_key("f23.bin"));

    let feed = out.path().join("feed");
    let (recs, err) = scan_bad(t.path(), &[&feed], &[]);
    assert_eq!(infected(&recs), expected, "{err}");
    let r = &recs["f00.bin"];
    assert_eq!(r["source"], "local");
    assert_eq!(r["list"], feed.display().to_string());
    assert!(
        err.contains(&format!(
            "known-bad: {} (misp_feed, {} digests, 0 days old)",
            feed.display(),
            expected.len()
        )),
        "{err}"
    );
    assert!(err.contains("left out"), "{err}");

    let (recs, _) = scan_bad(t.path(), &[&out.path().join("event.json")], &[]);
    assert_eq!(infected(&recs), first);
    for answer in ["rest_events.json", "rest_attributes.json"] {
        let (recs, err) = scan_bad(t.path(), &[&out.path().join(answer)], &[]);
        assert_eq!(infected(&recs), expected, "{answer}: {err}");
        assert!(err.contains("(misp_restsearch, "), "{err}");
    }
}

const STIX_SCRIPT: &str = r#"
import json, sys
from stix2patterns.validator import validate
from stix2matcher.matcher import match
files, out = json.loads(sys.argv[1]), sys.argv[2]
T = "2026-01-01T00:00:00.000Z"
def ind(n, pattern, **kw):
    return dict({"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-%012d" % n,
                 "created": T, "modified": T, "valid_from": T, "name": "indicator %d" % n,
                 "pattern": pattern, "pattern_type": "stix"}, **kw)
f = files
objs = [
    ind(0, "[file:hashes.'SHA-256' = '%s']" % f[0]["sha256"]),
    ind(1, "[file:hashes.MD5 = '%s']" % f[1]["md5"]),
    ind(2, "[file:hashes.'SHA-1' = '%s']" % f[2]["sha1"]),
    ind(3, "[file:hashes.MD5 = '%s' OR file:hashes.'SHA-256' = '%s']" % (f[3]["md5"], f[4]["sha256"])),
    ind(4, "([file:hashes.MD5 = '%s']) OR [file:hashes.'SHA-1' = '%s']" % (f[5]["md5"], f[6]["sha1"])),
    ind(5, "[file:hashes.MD5 = '%s' AND file:name = 'dropper.exe']" % f[7]["md5"]),
    ind(6, "[file:hashes.MD5 = '%s'] AND [file:hashes.'SHA-256' = '%s']" % (f[8]["md5"], f[8]["sha256"])),
    ind(7, "[file:hashes.MD5 = '%s'] FOLLOWEDBY [file:hashes.MD5 = '%s']" % (f[9]["md5"], f[9]["md5"])),
    ind(8, "[file:hashes.MD5 != '%s']" % f[10]["md5"]),
    ind(9, "[file:hashes.'SHA-256' = '%s']" % f[11]["sha256"], revoked=True),
    ind(10, "[file:hashes.'SHA-256' = '%s']" % f[12]["sha256"], valid_until="2026-06-01T00:00:00Z"),
    ind(11, "[file:hashes.'SHA-256' = '%s']" % f[13]["sha256"], valid_until="2999-01-01T00:00:00Z"),
    ind(12, "alert tcp any any -> any any (msg:\"%s\";)" % f[14]["md5"], pattern_type="snort"),
    ind(13, "[file:hashes.'SHA-512' = '%s']" % ("ab" * 64)),
    {"type": "malware", "spec_version": "2.1", "id": "malware--00000000-0000-4000-8000-000000000099",
     "created": T, "modified": T, "name": "x", "is_family": False},
]
for o in objs:
    if o["type"] == "indicator" and o["pattern_type"] == "stix":
        ok, errs = validate(o["pattern"], ret_errs=True, stix_version="2.1")
        assert ok, (o["pattern"], errs)
bundle = {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000001", "objects": objs}
with open(out + "/bundle.json", "w") as w:
    json.dump(bundle, w)
# The same indicators with the hash keys spelled as seen in the wild (the validator accepts
# them all) and upper-case hex.
def variant(p):
    for a, b in (("'SHA-256'", "SHA256"), ("MD5 ", "md5 "), ("'SHA-1'", "sha1")):
        p = p.replace(a, b)
    import re
    return re.sub(r"'([0-9a-f]{32,128})'", lambda m: "'" + m.group(1).upper() + "'", p)
vobjs = [dict(o, pattern=variant(o["pattern"])) if o["type"] == "indicator" else o for o in objs]
for o in vobjs:
    if o["type"] == "indicator" and o["pattern_type"] == "stix":
        ok, errs = validate(o["pattern"], ret_errs=True, stix_version="2.1")
        assert ok, (o["pattern"], errs)
with open(out + "/variant.json", "w") as w:
    json.dump(dict(bundle, objects=vobjs), w)
# stix2-matcher: one observation of each file (its three hashes, as the spec names them),
# against every indicator a consumer would use (stix patterns, not revoked, still valid).
now = "2026-12-01T00:00:00Z"
expected = {}
for i, fl in enumerate(files):
    fid = "file--00000000-0000-4000-8000-%012d" % i
    obs = [{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-%012d" % (1000 + i), "objects": [
        {"type": "observed-data", "spec_version": "2.1", "id": "observed-data--00000000-0000-4000-8000-%012d" % i,
         "created": T, "modified": T, "first_observed": T, "last_observed": T, "number_observed": 1, "object_refs": [fid]},
        {"type": "file", "spec_version": "2.1", "id": fid,
         "hashes": {"MD5": fl["md5"], "SHA-1": fl["sha1"], "SHA-256": fl["sha256"]}}]}]
    for o in objs:
        if o["type"] != "indicator" or o["pattern_type"] != "stix" or o.get("revoked"):
            continue
        if o.get("valid_until", "9999") <= now:
            continue
        # An inequality matches every other file: the matcher says so, and no consumer takes
        # it as a list of bad files (hashsweep reads only equalities).
        if "!=" in o["pattern"]:
            continue
        if match(o["pattern"], obs, stix_version="2.1"):
            expected[fl["name"]] = "STIX indicator %s: %s" % (o["id"], o["name"])
            break
print(json.dumps({"expected": expected}))
"#;

/// A STIX 2.1 bundle: the files hashsweep calls infected are those `stix2-matcher` matches
/// with the bundle's usable indicators (stix patterns, not revoked, not expired), each naming
/// its indicator; the same bundle with hash keys spelled `SHA256`, `md5`, `sha1` and upper-case
/// hex (all valid to `stix2-patterns`) names the same files.
#[test]
fn stix_bundle_matches_stix2_matcher() {
    if !python_module("stix2matcher", "stix2-matcher")
        || !python_module("stix2patterns", "stix2-patterns")
    {
        return;
    }
    let (t, info) = files(16);
    let out = tempfile::tempdir().unwrap();
    let o = oracle(STIX_SCRIPT, &info, out.path());
    let expected: BTreeMap<String, String> = serde_json::from_value(o["expected"].clone()).unwrap();
    let names: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "f00.bin", "f01.bin", "f02.bin", "f03.bin", "f04.bin", "f05.bin", "f06.bin", "f13.bin"
        ]),
        "the oracle's own answer changed"
    );
    for bundle in ["bundle.json", "variant.json"] {
        let (recs, err) = scan_bad(t.path(), &[&out.path().join(bundle)], &[]);
        assert_eq!(infected(&recs), expected, "{bundle}: {err}");
        assert!(
            err.contains("(stix2_bundle, 8 digests, 0 days old)"),
            "{err}"
        );
    }
}

/// MalwareBazaar's txt and csv exports and ClamAV's hash signatures: entries named, comments
/// and PUA left out (PUA only with --clamav-pua), every format saying which list and entry
/// (ECS as `threat.indicator.*`), an old list warned about.
#[test]
fn malwarebazaar_and_clamav_lists_name_their_entries_in_every_format() {
    let (t, info) = files(8);
    let h = |i: usize, a: &str| info[i][a].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("full_sha256.txt");
    std::fs::write(
        &txt,
        format!(
            "################################################################\n\
             # MalwareBazaar full malware samples dump (SHA256 hashes)      #\n\
             # Last updated: 2026-12-01 00:00:00 UTC                        #\n\
             ################################################################\n\
             #\n# sha256_hash\n#\n{}\n{}\n",
            h(0, "sha256"),
            "0".repeat(64)
        ),
    )
    .unwrap();
    let csv = dir.path().join("full.csv");
    std::fs::write(
        &csv,
        format!(
            "################################################################\n\
             # MalwareBazaar full malware samples dump (CSV)                #\n\
             ################################################################\n\
             # \"first_seen_utc\",\"sha256_hash\",\"md5_hash\",\"sha1_hash\",\"reporter\",\"file_name\",\"file_type_guess\",\"mime_type\",\"signature\",\"clamav\",\"vtpercent\",\"imphash\",\"ssdeep\",\"tlsh\"\n\
             \"2026-11-30 10:00:00\", \"{}\", \"{}\", \"{}\", \"abuse_ch\", \"invoice.exe\", \"exe\", \"application/x-dosexec\", \"AgentTesla\", \"n/a\", \"n/a\", \"n/a\", \"n/a\", \"n/a\"\n",
            h(1, "sha256"),
            h(1, "md5"),
            h(1, "sha1")
        ),
    )
    .unwrap();
    let hdb = dir.path().join("main.hdb");
    std::fs::write(
        &hdb,
        format!(
            "{}:17:Win.Trojan.Agent-1\n{}:17:PUA.Win.Tool.Miner-2\nnot a signature\n",
            h(2, "md5"),
            h(3, "md5")
        ),
    )
    .unwrap();
    let hsb = dir.path().join("main.hsb");
    std::fs::write(
        &hsb,
        format!("{}:*:Unix.Malware.Kaiji-3:73\n", h(4, "sha256")),
    )
    .unwrap();
    let lists = [txt.as_path(), csv.as_path(), hdb.as_path(), hsb.as_path()];
    let (recs, err) = scan_bad(t.path(), &lists, &[]);
    let want = |pua: bool| {
        let mut m = BTreeMap::from([
            ("f00.bin".to_owned(), "MalwareBazaar export".to_owned()),
            (
                "f01.bin".to_owned(),
                "MalwareBazaar AgentTesla (invoice.exe, first seen 2026-11-30 10:00:00)".to_owned(),
            ),
            (
                "f02.bin".to_owned(),
                "ClamAV signature Win.Trojan.Agent-1".to_owned(),
            ),
            (
                "f04.bin".to_owned(),
                "ClamAV signature Unix.Malware.Kaiji-3".to_owned(),
            ),
        ]);
        if pua {
            m.insert(
                "f03.bin".into(),
                "ClamAV signature PUA.Win.Tool.Miner-2".into(),
            );
        }
        m
    };
    assert_eq!(infected(&recs), want(false), "{err}");
    assert_eq!(recs["f02.bin"]["list"], hdb.display().to_string());
    for (l, kind, n) in [
        (&txt, "malwarebazaar", 2),
        (&csv, "malwarebazaar_csv", 3),
        (&hdb, "clamav", 1),
        (&hsb, "clamav", 1),
    ] {
        let line = format!(
            "known-bad: {} ({kind}, {n} {}, 0 days old)",
            l.display(),
            if n == 1 { "digest" } else { "digests" }
        );
        assert!(err.contains(&line), "{line} in {err}");
    }
    assert!(
        err.contains(&format!("{}: left out 2 entries", hdb.display())),
        "{err}"
    );
    let (recs, _) = scan_bad(t.path(), &lists, &["--clamav-pua"]);
    assert_eq!(infected(&recs), want(true));

    // CSV and ECS carry the list and the entry too.
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "csv", "--known-bad"])
        .arg(&hsb)
        .arg(t.path()));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.ends_with(",list,list_entry"), "{header}");
    assert!(
        text.lines().any(|l| l.contains("f04.bin")
            && l.ends_with(&format!(
                ",{},ClamAV signature Unix.Malware.Kaiji-3",
                hsb.display()
            ))),
        "{text}"
    );
    let out = run(cmd()
        .args(["scan", "--offline", "--format", "ecs", "--known-bad"])
        .arg(&csv)
        .arg(t.path()));
    let docs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = docs
        .iter()
        .find(|d| d["file"]["name"] == "f01.bin")
        .unwrap();
    let ind = &d["threat"]["indicator"];
    assert_eq!(ind["type"], "file", "{d}");
    assert_eq!(ind["provider"], "MalwareBazaar");
    assert_eq!(
        ind["name"],
        "MalwareBazaar AgentTesla (invoice.exe, first seen 2026-11-30 10:00:00)"
    );
    assert_eq!(ind["file"]["hash"]["sha256"], h(1, "sha256"));
    assert_eq!(d["threat"]["feed"]["name"], csv.display().to_string());
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(d["hashsweep"]["list_entry"], ind["name"]);
    let clean = docs
        .iter()
        .find(|d| d["file"]["name"] == "f07.bin")
        .unwrap();
    assert!(clean.get("threat").is_none(), "{clean}");

    // A list last changed 40 days ago is named with its age, and warned about.
    let old = SystemTime::now() - Duration::from_secs(40 * 86_400 + 600);
    std::fs::File::options()
        .write(true)
        .open(&hsb)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (_, err) = scan_bad(t.path(), &[&hsb], &[]);
    assert!(err.contains("(clamav, 1 digest, 40 days old)"), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {} is 40 days old (more than 30): update it",
            hsb.display()
        )),
        "{err}"
    );
}

/// Damaged or misplaced lists are errors naming the file (and what is wrong), never a panic
/// or an empty set; an IOC list given as --known-good is refused.
#[test]
fn broken_or_misplaced_ioc_lists_are_refused_by_name() {
    let (t, info) = files(2);
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| -> PathBuf {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let feed = dir.path().join("feed");
    write(
        "feed/manifest.json",
        r#"{"11111111-2222-4333-8444-555555555555": {"info": "x"}}"#,
    );
    let evil = dir.path().join("evil");
    write("evil/manifest.json", r#"{"../../etc/passwd": {}}"#);
    let cut = write(
        "cut.json",
        r#"{"Event": {"uuid": "u", "Attribute": [{"type": "md5""#,
    );
    let bundle = write("bundle.json", r#"{"type": "bundle", "objects": 7}"#);
    for (p, why) in [
        (
            &feed,
            "11111111-2222-4333-8444-555555555555.json".to_owned(),
        ),
        (&evil, "is not a uuid".to_owned()),
        (&cut, "is not valid JSON".to_owned()),
        (&bundle, "\"objects\" is a list".to_owned()),
    ] {
        let out = run(cmd()
            .args(["scan", "--offline", "--known-bad"])
            .arg(p)
            .arg(t.path()));
        let err = stderr(&out);
        assert_eq!(code(&out), 2, "{err}");
        assert!(
            err.contains(&p.display().to_string()) && err.contains(&why),
            "{why} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let hsb = write(
        "x.hsb",
        &format!("{}:*:Win.X:73\n", info[0]["sha256"].as_str().unwrap()),
    );
    let out = run(cmd()
        .args(["scan", "--offline", "--known-good"])
        .arg(&hsb)
        .arg(t.path()));
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(&format!(
            "{} is a ClamAV IOC list: it names known-bad files; give it as --known-bad",
            hsb.display()
        )),
        "{err}"
    );
}
