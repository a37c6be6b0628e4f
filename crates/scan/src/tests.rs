use super::*;
use std::sync::Mutex;

/// Records warnings.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn file_done(&self, _: u64) {}
    fn lookups(&self, _: u64, _: u64) {}
    fn warn(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}

/// A cache that cannot be written does not fail the sweep: every file is still hashed,
/// the user is told once, and the failures are counted for the summary.
#[test]
fn cache_write_failures_are_warned_once_and_counted() {
    let tree = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(tree.path().join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    // Old enough to be cached (outside the racy window).
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..50 {
        let f = std::fs::File::options()
            .write(true)
            .open(tree.path().join(format!("f{i}")))
            .unwrap();
        f.set_modified(old).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = Cache::open(dir.path().join("c.sqlite")).unwrap();
    cache.fail_writes();
    let cfg = ScanConfig {
        roots: vec![tree.path().to_path_buf()],
        walk: WalkOptions::default(),
        hash: HashOptions::default(),
        threads: 2,
        io: IoOptions::default(),
        lookup: None,
        cache: Some(Arc::new(cache)),
        local: None,
        budget: BudgetOptions::default(),
        processes: None,
        packages: None,
        rules: None,
    };
    let progress = Recorder::default();
    let out = scan(&cfg, None, &progress, &Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(out.files.len(), 50);
    assert!(out.files.iter().all(|f| f.digests().is_some()));
    let warnings = progress.0.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("c.sqlite"),
        "names the cache: {warnings:?}"
    );
    let summary = out.summary();
    assert!(summary.cache_errors >= 1, "{summary:?}");
    assert!(
        summary.human().contains("cache errors"),
        "{}",
        summary.human()
    );
}
