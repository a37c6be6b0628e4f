use super::*;
use hashsweep_lookup::{Answer, EngineResult};
use std::sync::{Arc, Barrier};
use std::time::Instant;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn key(i: u64) -> FileKey {
    FileKey {
        dev: 2049,
        ino: 1000 + i,
        ino_hi: 0,
        size: 4096 + i,
        mtime_ns: T0 * 1_000_000_000 + 123,
        ctime_ns: T0 * 1_000_000_000 + 456,
    }
}

fn digests(i: u64, md5: bool, sha1: bool) -> Digests {
    let b = (i % 251) as u8;
    Digests {
        sha256: [b; 32],
        md5: md5.then_some([b ^ 0x55; 16]),
        sha1: sha1.then_some([b ^ 0xaa; 20]),
    }
}

fn answer(code: i64, total: i64) -> Answer {
    Answer {
        scan_result_i: code,
        total_detected_avs: total,
        data_id: Some(format!("data-{code}").into()),
        details: None,
        hosts: None,
    }
}

fn fresh() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cache, warning) = Cache::open(dir.path().join("c.sqlite")).expect("open");
    assert_eq!(warning, None);
    (dir, cache)
}

/// A gateway's host count is kept with the answer and read back for the lookup plan,
/// even once the answer has expired (schema 5).
#[test]
fn host_counts_are_kept_with_answers_for_the_plan() {
    let (_dir, cache) = fresh();
    let (on_many, unknown) = (Digest::Sha256([1; 32]), Digest::Sha256([2; 32]));
    let mut a = answer(0, 0);
    a.hosts = Some(4000);
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    cache
        .put_verdicts(&[(on_many, a.clone()), (unknown, answer(0, 0))], long_ago)
        .unwrap();
    let h = cache.history(&[on_many, unknown]).unwrap();
    assert_eq!(h.hosts, HashMap::from([(on_many, 4000)]));
    assert_eq!(h.answered.len(), 2);
    cache
        .put_verdicts(&[(on_many, a.clone())], SystemTime::now())
        .unwrap();
    let got = cache.get_verdicts(&[on_many], SystemTime::now()).unwrap();
    assert_eq!(got.get(&on_many), Some(&a));
}

#[test]
fn digest_hit_returns_what_was_stored() {
    let (_dir, cache) = fresh();
    let d = digests(7, true, true);
    assert_eq!(cache.put_digests(&[(key(7), d)]).unwrap(), 1);
    assert_eq!(cache.get_digests(&key(7), true, true).unwrap(), Some(d));
    assert_eq!(cache.get_digests(&key(7), false, false).unwrap(), Some(d));
    assert_eq!(cache.get_digests(&key(8), false, false).unwrap(), None);
}

#[test]
fn digest_batch_lookup_answers_each_key_in_order() {
    let (_dir, cache) = fresh();
    cache
        .put_digests(&[
            (key(1), digests(1, true, false)),
            (key(3), digests(3, false, false)),
        ])
        .unwrap();
    let got = cache
        .get_digests_many(&[key(3), key(2), key(1)], false, false)
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(digests(3, false, false)),
            None,
            Some(digests(1, true, false))
        ]
    );
    let need_md5 = cache
        .get_digests_many(&[key(3), key(1)], true, false)
        .unwrap();
    assert_eq!(need_md5, vec![None, Some(digests(1, true, false))]);
    let s = cache.stats();
    assert_eq!((s.digest_hits, s.digest_misses), (3, 2));
}

fn assert_miss_after(change: impl Fn(&mut FileKey), field: &str) {
    let (_dir, cache) = fresh();
    cache
        .put_digests(&[(key(1), digests(1, true, true))])
        .unwrap();
    assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
    let mut k = key(1);
    change(&mut k);
    assert_ne!(k, key(1));
    assert_eq!(
        cache.get_digests(&k, false, false).unwrap(),
        None,
        "{field} changed: must miss"
    );
}

#[test]
fn digest_miss_when_dev_changes() {
    assert_miss_after(|k| k.dev += 1, "dev");
}

#[test]
fn digest_miss_when_ino_changes() {
    assert_miss_after(|k| k.ino += 1, "ino");
}

/// A schema-2 cache (no `ino_hi`, no archive tables, no host counts) opens as the current
/// schema and still serves its rows.
#[test]
fn a_schema_2_cache_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.sqlite");
    let (cache, _) = Cache::open(&path).expect("open");
    cache
        .put_digests(&[(key(1), digests(1, true, true))])
        .unwrap();
    drop(cache);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE file_digests DROP COLUMN ino_hi;
         DROP TABLE archive_reads; DROP TABLE archive_members;
         ALTER TABLE verdicts DROP COLUMN hosts;",
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    drop(conn);
    let (cache, warning) = Cache::open(&path).expect("open the old cache");
    assert_eq!(warning, None);
    let version: i32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert!(cache.get_digests(&key(1), true, true).unwrap().is_some());
}

/// A schema 5 cache's answers become the default service's, first answered and last used
/// when they were looked up.
#[test]
fn a_schema_5_cache_keeps_its_answers_as_the_default_services() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.sqlite");
    drop(Cache::open(&path).expect("open"));
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE verdicts;
         CREATE TABLE verdicts (algo TEXT NOT NULL, digest BLOB NOT NULL,
             scan_result_i INTEGER NOT NULL, total_detected_avs INTEGER NOT NULL,
             verdict TEXT NOT NULL, data_id TEXT, looked_up_at INTEGER NOT NULL,
             details TEXT, hosts INTEGER, PRIMARY KEY (algo, digest)) WITHOUT ROWID;",
    )
    .unwrap();
    let d = Digest::Sha256([4; 32]);
    conn.execute(
        "INSERT INTO verdicts VALUES ('sha256', ?1, 1, 9, 'infected', 'id', ?2, NULL, 3)",
        params![d.as_bytes(), T0],
    )
    .unwrap();
    conn.pragma_update(None, "user_version", 5).unwrap();
    drop(conn);
    let (cache, warning) = Cache::open(&path).expect("open the old cache");
    assert_eq!(warning, None);
    let got = cache.get_answers(&[d], at(T0 + 10)).unwrap();
    let a = &got[&d];
    assert_eq!(
        (a.answer.scan_result_i, a.answer.total_detected_avs),
        (1, 9)
    );
    assert_eq!((a.looked_up_at, a.first_answered_at), (T0, T0));
    assert_eq!(a.answer.hosts, Some(3));
    let other = cache.with_service("http://127.0.0.1:1/v4/hash");
    assert!(other.get_answers(&[d], at(T0 + 10)).unwrap().is_empty());
}

/// A schema 7 cache (before CIRCL's answers) opens as the current schema with its answers,
/// and stores and serves CIRCL's answers from then on.
#[test]
fn a_schema_7_cache_gains_circls_answers_and_keeps_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.sqlite");
    let (cache, _) = Cache::open(&path).expect("open");
    let d = Digest::Sha256([6; 32]);
    cache.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
    drop(cache);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("DROP TABLE circl_answers;").unwrap();
    conn.pragma_update(None, "user_version", 7).unwrap();
    drop(conn);
    let (cache, warning) = Cache::open(&path).expect("open the old cache");
    assert_eq!(warning, None);
    let version: i32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert!(
        cache
            .get_verdicts(&[d], at(T0 + 10))
            .unwrap()
            .contains_key(&d)
    );
    let sha1 = Digest::Sha1([7; 20]);
    assert_eq!(cache.put_circl("c", &[], &[sha1], at(T0)).unwrap(), 1);
    let got = cache.get_circl("c", &[sha1], at(T0 + 10)).unwrap();
    assert_eq!(got.get(&sha1), Some(&None));
}

/// The default service's name is what the client calls the default endpoint.
#[test]
fn the_legacy_service_is_the_default_endpoint() {
    assert_eq!(
        LEGACY_SERVICE,
        format!("{}/v4/hash", hashsweep_lookup::http::DEFAULT_API_URL)
    );
}

/// Two ReFS files whose 128-bit ids share the low half are not each other's.
#[test]
fn digest_miss_when_the_high_half_of_the_file_id_changes() {
    assert_miss_after(|k| k.ino_hi += 1, "ino_hi");
}

#[test]
fn digest_miss_when_size_changes() {
    assert_miss_after(|k| k.size += 1, "size");
}

#[test]
fn digest_miss_when_mtime_changes() {
    assert_miss_after(|k| k.mtime_ns += 1, "mtime_ns");
}

#[test]
fn digest_miss_when_ctime_changes() {
    assert_miss_after(|k| k.ctime_ns += 1, "ctime_ns");
}

#[test]
fn digest_miss_when_md5_or_sha1_needed_but_not_cached() {
    let (_dir, cache) = fresh();
    cache
        .put_digests(&[(key(1), digests(1, false, false))])
        .unwrap();
    assert_eq!(cache.get_digests(&key(1), true, false).unwrap(), None);
    assert_eq!(cache.get_digests(&key(1), false, true).unwrap(), None);
    assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
}

#[test]
fn digest_rows_merge_for_the_same_file_and_replace_for_a_changed_one() {
    let (_dir, cache) = fresh();
    cache
        .put_digests(&[(key(1), digests(1, true, false))])
        .unwrap();
    cache
        .put_digests(&[(key(1), digests(1, false, true))])
        .unwrap();
    assert_eq!(
        cache.get_digests(&key(1), true, true).unwrap(),
        Some(digests(1, true, true)),
        "same key and sha256: md5 kept, sha1 added"
    );
    let mut changed = key(1);
    changed.mtime_ns += 1_000;
    cache
        .put_digests(&[(changed, digests(2, false, false))])
        .unwrap();
    assert_eq!(cache.get_digests(&key(1), false, false).unwrap(), None);
    assert_eq!(
        cache.get_digests(&changed, false, false).unwrap(),
        Some(digests(2, false, false)),
        "a changed file's old md5/sha1 must not survive"
    );
}

#[test]
fn recently_changed_files_are_not_cached() {
    let (_dir, cache) = fresh();
    let now = unix_nanos(SystemTime::now());
    let mut recent_m = key(1);
    recent_m.mtime_ns = now;
    let mut recent_c = key(2);
    recent_c.ctime_ns = now - 500_000_000;
    let rows = [
        (recent_m, digests(1, false, false)),
        (recent_c, digests(2, false, false)),
        (key(3), digests(3, false, false)),
    ];
    assert_eq!(cache.put_digests(&rows).unwrap(), 1);
    assert_eq!(cache.get_digests(&recent_m, false, false).unwrap(), None);
    assert_eq!(cache.get_digests(&recent_c, false, false).unwrap(), None);
    assert!(cache.get_digests(&key(3), false, false).unwrap().is_some());
}

#[test]
fn verdict_round_trip_for_each_algorithm() {
    let (_dir, cache) = fresh();
    let ds = [
        Digest::Md5([1; 16]),
        Digest::Sha1([1; 20]),
        Digest::Sha256([1; 32]),
    ];
    let rows: Vec<_> = ds.iter().map(|d| (*d, answer(1, 12))).collect();
    assert_eq!(cache.put_verdicts(&rows, at(T0)).unwrap(), 3);
    let got = cache.get_verdicts(&ds, at(T0 + 10)).unwrap();
    assert_eq!(got.len(), 3);
    for d in ds {
        assert_eq!(got.get(&d), Some(&answer(1, 12)), "{d:?}");
    }
    let other = Digest::Sha256([2; 32]);
    assert!(cache.get_verdicts(&[other], at(T0)).unwrap().is_empty());
}

fn engines() -> Box<[EngineResult]> {
    Box::new([EngineResult {
        engine: "AV".into(),
        threat_found: "EICAR".into(),
        scan_result_i: Some(1),
        def_time: Some("2026-11-01T00:00:00.000Z".into()),
    }])
}

/// Engine details were paid for: they are kept with the answer and served to whoever
/// wants them; a sweep that wants them does not take a plain answer as enough, and a
/// sweep that does not want them gets none (the same report either way).
#[test]
fn engine_details_are_kept_and_served_per_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let (with, plain, empty) = (
        Digest::Sha256([1; 32]),
        Digest::Sha256([2; 32]),
        Digest::Sha256([3; 32]),
    );
    let detailed = Answer {
        details: Some(engines()),
        ..answer(1, 12)
    };
    // As a --details sweep stores them: an unknown hash has no details from the service.
    let (cache, _) = Cache::open(&path).unwrap();
    let cache = cache.with_details(DetailsUse::Required);
    cache
        .put_verdicts(&[(with, detailed.clone()), (empty, answer(5, -1))], at(T0))
        .unwrap();
    drop(cache);
    let (cache, _) = Cache::open(&path).unwrap();
    cache
        .put_verdicts(&[(plain, answer(0, 0))], at(T0))
        .unwrap();
    let all = [with, plain, empty];

    let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
    assert_eq!(got[&with], detailed, "as stored");
    assert_eq!(got[&plain], answer(0, 0));
    assert_eq!(
        got[&empty].details.as_deref(),
        Some(&[][..]),
        "asked with details, none given: serves a details request"
    );

    let cache = cache.with_details(DetailsUse::Required);
    let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
    assert_eq!(got.get(&with), Some(&detailed));
    assert_eq!(got.get(&plain), None, "a plain answer is not enough");
    assert_eq!(
        got.get(&empty),
        Some(&answer(5, -1)),
        "as the client gives it"
    );

    let cache = cache.with_details(DetailsUse::Ignored);
    let got = cache.get_verdicts(&all, at(T0 + 1)).unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.values().all(|a| a.details.is_none()), "{got:?}");
}

// Unix only: the test makes a symlink (Windows needs a privilege for one).
#[cfg(unix)]
/// The walk's rule names the files SQLite really uses: through a symlinked cache path,
/// the database it leads to and the journals beside that.
#[test]
fn skip_rule_names_the_real_files_and_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let real_dir = dir.path().join("real");
    fs::create_dir(&real_dir).unwrap();
    std::os::unix::fs::symlink(real_dir.join("c.sqlite"), dir.path().join("link.sqlite")).unwrap();
    let (cache, _) = Cache::open(dir.path().join("link.sqlite")).unwrap();
    cache
        .put_verdicts(&[(Digest::Md5([1; 16]), answer(0, 0))], at(T0))
        .unwrap();
    let rule = cache.skip_rule().unwrap();
    assert_eq!(rule.dir, file_id(&real_dir).unwrap());
    let is = |n: &str| rule.names.iter().any(|(p, _)| p.matches(n.as_ref()));
    for n in [
        "c.sqlite",
        "c.sqlite-wal",
        "c.sqlite-shm",
        "c.sqlite.corrupt-1700000000",
    ] {
        assert!(is(n), "{n}: {rule:?}");
    }
    assert!(!is("link.sqlite") && !is("c.sqlite2"), "{rule:?}");
    let db = file_id(&real_dir.join("c.sqlite")).unwrap();
    assert!(rule.files.iter().any(|(id, _)| *id == db), "{rule:?}");
}

#[test]
fn verdicts_expire_per_class() {
    let ttls = Ttls {
        clean: Duration::from_secs(100),
        detection: Duration::from_secs(200),
        unknown: Duration::from_secs(50),
        other: Duration::from_secs(150),
    };
    let (_dir, cache) = fresh();
    let cache = cache.with_ttls(ttls);
    let cases = [
        ("clean", Digest::Md5([1; 16]), answer(0, 0), 100),
        ("infected", Digest::Md5([2; 16]), answer(1, 9), 200),
        ("suspicious", Digest::Md5([3; 16]), answer(0, 2), 200),
        ("unknown", Digest::Md5([4; 16]), answer(5, 0), 50),
        ("other", Digest::Md5([5; 16]), answer(12, 0), 150),
    ];
    let rows: Vec<_> = cases.iter().map(|c| (c.1, c.2.clone())).collect();
    cache.put_verdicts(&rows, at(T0)).unwrap();
    for (class, d, a, ttl) in &cases {
        let before = cache.get_verdicts(&[*d], at(T0 + ttl - 1)).unwrap();
        assert_eq!(
            before.get(d),
            Some(a),
            "{class}: fresh one second before its TTL"
        );
        let after = cache.get_verdicts(&[*d], at(T0 + ttl)).unwrap();
        assert!(after.is_empty(), "{class}: expired at its TTL");
    }
    let past = cache.get_verdicts(&[cases[0].1], at(T0 - 1)).unwrap();
    assert!(past.is_empty(), "an entry dated in the future is stale");
}

#[test]
fn default_ttls() {
    let t = Ttls::default();
    assert_eq!(t.clean, Duration::from_secs(86_400));
    assert_eq!(t.detection, Duration::from_secs(7 * 86_400));
    assert_eq!(t.unknown, Duration::from_secs(3_600));
    assert_eq!(t.other, Duration::from_secs(86_400));
}

#[test]
fn errors_and_non_answers_are_refused() {
    // An `Answer` derives its verdict from the service's code, so it can never carry
    // `error`; what is left to check is that no such verdict has a TTL.
    let t = Ttls::default();
    for v in [
        Verdict::Error,
        Verdict::Skipped,
        Verdict::NotLookedUp,
        Verdict::KnownGood,
    ] {
        assert_eq!(t.for_verdict(&v), None, "{v}");
    }
    for code in [0, 1, 2, 5, 3, 23] {
        assert!(
            t.for_verdict(&Verdict::from_code(code, Some(0))).is_some(),
            "code {code}"
        );
    }
}

/// An answer stays as long as sweeps use it, whatever its age: pruning takes only the ones
/// no sweep has needed for FORGET_AFTER. Each use dates it (once a TOUCH_AFTER), so a
/// digest answered long ago and still on disk is never taken for one never asked.
#[test]
fn answers_in_use_survive_pruning_whatever_their_age() {
    let (_dir, cache) = fresh();
    let used = Digest::Sha1([1; 20]);
    let unused = Digest::Sha1([2; 20]);
    cache
        .put_verdicts(&[(used, answer(1, 3)), (unused, answer(0, 0))], at(T0))
        .unwrap();
    let day = 86_400;
    // A sweep needs `used` every 30 days for 200 days; prunes run in between.
    for n in 1..=6 {
        let t = T0 + n * 30 * day + 1;
        let got = cache.get_answers(&[used], at(t)).unwrap();
        assert_eq!(got[&used].looked_up_at, T0, "night {n}");
        assert_eq!(got[&used].first_answered_at, T0);
        cache.maintain(at(t + 1), Duration::from_secs(10)).unwrap();
    }
    let t = T0 + 200 * day;
    let got = cache.get_answers(&[used, unused], at(t)).unwrap();
    assert!(got.contains_key(&used));
    assert!(!got.contains_key(&unused), "unused for 200 days: pruned");
    // Expired long ago, so never served as fresh.
    assert!(cache.get_verdicts(&[used], at(t)).unwrap().is_empty());
    // A refresh keeps the first date.
    cache.put_verdicts(&[(used, answer(0, 0))], at(t)).unwrap();
    let got = cache.get_answers(&[used], at(t)).unwrap();
    assert_eq!(
        (got[&used].looked_up_at, got[&used].first_answered_at),
        (t, T0)
    );
}

/// Answers belong to their service: another service's answer for the same digest is
/// neither served nor replaced.
#[test]
fn answers_are_kept_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let a = Cache::open(&path)
        .unwrap()
        .0
        .with_service("http://a/v4/hash");
    let b = Cache::open(&path)
        .unwrap()
        .0
        .with_service("http://b/v4/hash");
    let d = Digest::Sha256([3; 32]);
    a.put_verdicts(&[(d, answer(1, 5))], at(T0)).unwrap();
    assert!(b.get_answers(&[d], at(T0)).unwrap().is_empty());
    assert!(b.get_verdicts(&[d], at(T0)).unwrap().is_empty());
    assert!(!b.history(&[d]).unwrap().answered.contains(&d));
    b.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
    assert_eq!(a.get_verdicts(&[d], at(T0)).unwrap()[&d].scan_result_i, 1);
    assert_eq!(b.get_verdicts(&[d], at(T0)).unwrap()[&d].scan_result_i, 0);
}

/// A cache that cannot be written still serves its old answers (dating them fails,
/// counted as an error, and the answers come back all the same).
#[test]
fn old_answers_serve_from_a_cache_that_cannot_be_written() {
    let (_dir, cache) = fresh();
    let d = Digest::Sha256([5; 32]);
    cache.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
    cache.fail_writes();
    let later = at(T0 + 30 * 86_400);
    let got = cache.get_answers(&[d], later).unwrap();
    assert_eq!(got[&d].looked_up_at, T0);
    assert_eq!(cache.stats().errors, 1);
}

/// An unknown program's answer is due sooner than an unknown data file's.
#[test]
fn unknown_programs_are_due_before_unknown_data() {
    let t = Ttls::DEFAULT;
    let unknown = Verdict::Unknown;
    assert_eq!(
        t.for_answer(&unknown, FileKind::Executable),
        Some(t.unknown)
    );
    assert_eq!(t.for_answer(&unknown, FileKind::Script), Some(t.unknown));
    assert_eq!(t.for_answer(&unknown, FileKind::Other), Some(t.clean));
    assert_eq!(
        t.for_answer(&Verdict::Clean, FileKind::Executable),
        Some(t.clean)
    );
}

#[test]
fn stats_count_hits_and_misses() {
    let (_dir, cache) = fresh();
    cache
        .put_digests(&[(key(1), digests(1, false, false))])
        .unwrap();
    cache.get_digests(&key(1), false, false).unwrap();
    cache.get_digests(&key(2), false, false).unwrap();
    cache.get_digests(&key(1), true, false).unwrap();
    let d = Digest::Md5([9; 16]);
    cache.put_verdicts(&[(d, answer(0, 0))], at(T0)).unwrap();
    cache
        .get_verdicts(&[d, Digest::Md5([8; 16])], at(T0))
        .unwrap();
    assert_eq!(
        cache.stats(),
        CacheStats {
            digest_hits: 1,
            digest_misses: 2,
            verdict_hits: 1,
            verdict_misses: 1,
            digests_written: 1,
            verdicts_written: 1,
            errors: 0,
        }
    );
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/c.sqlite");
    let d = Digest::Sha256([3; 32]);
    {
        let (cache, _) = Cache::open(&path).unwrap();
        cache
            .put_digests(&[(key(1), digests(1, true, false))])
            .unwrap();
        cache.put_verdicts(&[(d, answer(1, 5))], at(T0)).unwrap();
    }
    let (cache, warning) = Cache::open(&path).unwrap();
    assert_eq!(warning, None);
    assert_eq!(
        cache.get_digests(&key(1), true, false).unwrap(),
        Some(digests(1, true, false))
    );
    assert_eq!(
        cache.get_verdicts(&[d], at(T0 + 1)).unwrap().get(&d),
        Some(&answer(1, 5))
    );
}

fn assert_recovers(path: &Path) {
    let (cache, warning) = Cache::open(path).expect("a corrupt cache is recovered");
    let warning = warning.expect("recovery is reported");
    assert!(warning.contains("moved it aside"), "{warning}");
    let aside: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the bad file is kept aside");
    cache
        .put_digests(&[(key(1), digests(1, false, false))])
        .unwrap();
    assert!(cache.get_digests(&key(1), false, false).unwrap().is_some());
    drop(cache);
    let (_, again) = Cache::open(path).unwrap();
    assert_eq!(again, None, "the fresh cache is sound");
}

#[test]
fn garbage_file_is_moved_aside_and_cache_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    fs::write(
        &path,
        b"this is not a database, just some garbage bytes\n".repeat(100),
    )
    .unwrap();
    assert_recovers(&path);
}

#[test]
fn truncated_file_is_moved_aside_and_cache_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    {
        let (cache, _) = Cache::open(&path).unwrap();
        let rows: Vec<_> = (0..5_000)
            .map(|i| (key(i), digests(i, true, true)))
            .collect();
        cache.put_digests(&rows).unwrap();
    }
    let len = fs::metadata(&path).unwrap().len();
    assert!(len > 100_000, "checkpointed on close: {len}");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_recovers(&path);
}

#[test]
fn foreign_sqlite_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE precious (x); INSERT INTO precious VALUES (1);")
            .unwrap();
    }
    let err = Cache::open(&path).err().expect("refused");
    assert!(matches!(err, CacheError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("theirs.sqlite"), "{err}");
    let conn = Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM precious", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    drop(Cache::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Cache::open(&path).err().expect("refused");
    assert!(matches!(err, CacheError::NewerSchema { .. }), "{err}");
}

#[test]
fn schema_version_and_wal_are_set() {
    let (_dir, cache) = fresh();
    let conn = lock(&cache.writer);
    let v: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(
        (v, id, mode.as_str()),
        (SCHEMA_VERSION, APPLICATION_ID, "wal")
    );
}

#[test]
fn two_instances_on_one_file_work_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.sqlite"));
    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let (path, start) = (Arc::clone(&path), Arc::clone(&start));
            std::thread::spawn(move || -> Result<(), CacheError> {
                start.wait();
                // Both create the file at once, as two processes would.
                let (cache, _) = Cache::open(path.as_path())?;
                for round in 0..30u64 {
                    let base = w * 1_000_000 + round * 200;
                    let rows: Vec<_> = (base..base + 200)
                        .map(|i| (key(i), digests(i, true, false)))
                        .collect();
                    cache.put_digests(&rows)?;
                    let d = Digest::Sha256([(w * 100 + round) as u8; 32]);
                    cache.put_verdicts(&[(d, answer(0, 0))], at(T0))?;
                    for (k, want) in &rows {
                        assert_eq!(cache.get_digests(k, true, false)?, Some(*want));
                    }
                    let theirs = (1 - w) * 1_000_000 + round * 200;
                    cache.get_digests(&key(theirs), false, false)?;
                    cache.get_verdicts(&[d], at(T0))?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().expect("no panic").expect("no cache error");
    }
    let (cache, _) = Cache::open(path.as_path()).unwrap();
    for w in 0..2 {
        let k = key(w * 1_000_000 + 29 * 200 + 199);
        assert!(cache.get_digests(&k, true, false).unwrap().is_some());
    }
}

#[test]
fn file_key_from_meta() {
    let meta = FileMeta {
        dev: 1,
        ino: 2,
        ino_hi: 6,
        mtime_ns: 3,
        ctime_ns: 4,
    };
    let k = FileKey::new(&meta, 5);
    assert_eq!(
        (k.dev, k.ino, k.size, k.mtime_ns, k.ctime_ns, k.ino_hi),
        (1, 2, 5, 3, 4, 6)
    );
}

#[test]
fn default_path_is_cache_sqlite() {
    if let Some(p) = Cache::default_path() {
        // Linux: ~/.cache/hashsweep/; Windows: %LOCALAPPDATA%\hashsweep\cache\.
        assert!(p.ends_with("cache.sqlite"), "{}", p.display());
        assert!(
            p.components().any(|c| c.as_os_str() == "hashsweep"),
            "{}",
            p.display()
        );
    }
}

/// Timing, not an assertion:
/// `cargo test --release --lib cache::tests::timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing_100k_digest_lookups() {
    let (_dir, cache) = fresh();
    let n = 100_000u64;
    let rows: Vec<_> = (0..n).map(|i| (key(i), digests(i, true, false))).collect();
    let t = Instant::now();
    for chunk in rows.chunks(1000) {
        cache.put_digests(chunk).unwrap();
    }
    eprintln!("put {n} rows in batches of 1000: {:?}", t.elapsed());
    let t = Instant::now();
    let hits = rows
        .iter()
        .filter(|(k, _)| cache.get_digests(k, true, false).unwrap().is_some())
        .count();
    eprintln!("{n} lookups, one thread: {:?} ({hits} hits)", t.elapsed());
    let keys: Vec<_> = rows.iter().map(|r| r.0).collect();
    let t = Instant::now();
    let hits: usize = keys
        .chunks(1000)
        .map(|c| {
            let got = cache.get_digests_many(c, true, false).unwrap();
            got.iter().flatten().count()
        })
        .sum();
    eprintln!(
        "{n} lookups, get_digests_many by 1000: {:?} ({hits} hits)",
        t.elapsed()
    );
    let cache = Arc::new(cache);
    let rows = Arc::new(rows);
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|j| {
            let (cache, rows) = (Arc::clone(&cache), Arc::clone(&rows));
            std::thread::spawn(move || {
                rows.iter()
                    .skip(j)
                    .step_by(4)
                    .filter(|(k, _)| cache.get_digests(k, true, false).unwrap().is_some())
                    .count()
            })
        })
        .collect();
    let hits: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    eprintln!("{n} lookups, four threads: {:?} ({hits} hits)", t.elapsed());
    let t = Instant::now();
    let conn = lock(&cache.writer);
    let ok: String = conn
        .pragma_query_value(None, "quick_check", |r| r.get(0))
        .unwrap();
    eprintln!("quick_check of {n} rows: {:?} ({ok})", t.elapsed());
}
