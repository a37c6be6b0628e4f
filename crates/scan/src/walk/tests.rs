use super::*;
use std::ffi::OsStr;
#[cfg(unix)]
use std::os::unix::fs::symlink;

fn collect(root: &Path, opts: &WalkOptions) -> Vec<WalkEvent> {
    collect_probed(root, opts, &Probe::default())
}

fn collect_probed(root: &Path, opts: &WalkOptions, probe: &Probe) -> Vec<WalkEvent> {
    let got = Mutex::new(Vec::new());
    let sink = |ev| got.lock().unwrap().push(ev);
    walk_with(
        Arc::new(FsTypes::default()),
        &[root.to_path_buf()],
        opts,
        &sink,
        &Arc::new(AtomicBool::new(false)),
        probe,
    )
    .unwrap();
    let mut v = got.into_inner().unwrap();
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    v
}

#[test]
fn excludes_match_relative_paths_and_prune_directories() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("a/skip")).unwrap();
    std::fs::write(d.path().join("a/keep.txt"), b"x").unwrap();
    std::fs::write(d.path().join("a/skip/no.txt"), b"x").unwrap();
    std::fs::write(d.path().join("a/x.log"), b"x").unwrap();
    let opts = WalkOptions {
        excludes: vec!["a/skip".into(), "*.log".into()],
        ..Default::default()
    };
    let ev = collect(d.path(), &opts);
    assert_eq!(ev, vec![WalkEvent::File(d.path().join("a/keep.txt"))]);
}

// Unix only: the test makes symlinks (Windows needs a privilege for one).
#[cfg(unix)]
#[test]
fn symlinks_are_listed_not_followed_by_default_and_loops_detected_with_follow() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/f"), b"x").unwrap();
    symlink(d.path(), d.path().join("sub/loop")).unwrap();
    symlink(d.path().join("nowhere"), d.path().join("dangling")).unwrap();

    let ev = collect(d.path(), &WalkOptions::default());
    assert!(ev.contains(&WalkEvent::Special {
        path: d.path().join("sub/loop"),
        kind: SpecialKind::Symlink
    }));
    assert!(ev.contains(&WalkEvent::Special {
        path: d.path().join("dangling"),
        kind: SpecialKind::Symlink
    }));

    let ev = collect(
        d.path(),
        &WalkOptions {
            follow_symlinks: true,
            ..Default::default()
        },
    );
    assert!(
        ev.contains(&WalkEvent::Special {
            path: d.path().join("dangling"),
            kind: SpecialKind::DanglingSymlink
        }),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(e, WalkEvent::Error { path, error } if path.ends_with("sub/loop") && error.contains("loop"))),
        "{ev:?}"
    );
    assert!(ev.contains(&WalkEvent::File(d.path().join("sub/f"))));
    let forgetful = Probe {
        forget_types: true,
        ..Default::default()
    };
    let follow = WalkOptions {
        follow_symlinks: true,
        ..Default::default()
    };
    assert_eq!(collect_probed(d.path(), &follow, &forgetful), ev);
}

/// A root on a network mount is named as crossed, with its own path (not that of the
/// first directory below it).
#[test]
fn a_root_on_a_network_mount_is_named_as_crossed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/f"), b"x").unwrap();
    let dev = hashsweep_core::platform::device(&std::fs::metadata(d.path()).unwrap());
    let fs = Arc::new(FsTypes::known(dev, FsClass::Network("nfs")));
    let stats = walk_with(
        fs,
        &[d.path().to_path_buf()],
        &WalkOptions::default(),
        &|_| {},
        &Arc::new(AtomicBool::new(false)),
        &Probe::default(),
    )
    .unwrap();
    assert_eq!(
        stats.network_mounts,
        vec![format!("{} (nfs)", d.path().display())]
    );
}

/// Where a file system's listing gives no entry types (FUSE, some network file systems),
/// each entry needs a `stat`: those run on several walker threads at once, not one after
/// another in the thread that listed the directory, and the walk finds the same as when the
/// types are given.
#[test]
fn entries_without_listed_types_are_stat_ed_side_by_side_with_the_same_result() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("sub/deeper")).unwrap();
    for i in 0..12 {
        std::fs::write(d.path().join(format!("f{i}")), b"x").unwrap();
    }
    std::fs::write(d.path().join("sub/deeper/g"), b"x").unwrap();
    std::fs::write(d.path().join("sub/x.log"), b"x").unwrap();
    #[cfg(unix)]
    symlink(d.path().join("f0"), d.path().join("sub/link")).unwrap();
    let opts = WalkOptions {
        threads: 4,
        excludes: vec!["*.log".into()],
        ..Default::default()
    };
    let typed = collect(d.path(), &opts);
    let probe = Probe {
        forget_types: true,
        stat_pause: Duration::from_millis(30),
        ..Default::default()
    };
    let untyped = collect_probed(
        d.path(),
        &opts,
        &Probe {
            forget_types: true,
            ..Default::default()
        },
    );
    assert_eq!(untyped, typed);
    assert!(typed.contains(&WalkEvent::File(d.path().join("sub/deeper/g"))));
    assert!(!typed.iter().any(|e| format!("{e:?}").contains("x.log")));

    // One directory of files: one thread lists it, so only handing the `stat`s on to the
    // other threads puts more than one under way.
    let flat = tempfile::tempdir().unwrap();
    for i in 0..12 {
        std::fs::write(flat.path().join(format!("f{i}")), b"x").unwrap();
    }
    let ev = collect_probed(flat.path(), &opts, &probe);
    assert_eq!(ev.len(), 12);
    let most = probe.most_in_stat.load(Ordering::SeqCst);
    assert!(most > 1, "at most {most} stat under way at once");
}

/// A panic while handing on an event (the sink's) ends the walk with that panic; the
/// other walker threads do not wait forever for the job that panicked.
#[test]
fn a_panicking_sink_ends_the_walk_instead_of_hanging_it() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::create_dir(d.path().join(format!("d{i}"))).unwrap();
        std::fs::write(d.path().join(format!("d{i}/f")), b"x").unwrap();
    }
    let root = d.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opts = WalkOptions {
            threads: 4,
            ..Default::default()
        };
        // Only the first event panics: the threads that did not panic must still finish.
        let failed = AtomicBool::new(false);
        let sink = |_| {
            if !failed.swap(true, Ordering::SeqCst) {
                panic!("sink fails");
            }
        };
        let walked = std::panic::catch_unwind(|| {
            let stop = Arc::new(AtomicBool::new(false));
            walk(&[root], &opts, &sink, &stop)
        });
        let _ = tx.send(walked.is_err());
    });
    let panicked = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the walk hung after its sink panicked");
    assert!(panicked);
}

#[test]
fn name_patterns_match_whole_names_or_both_ends() {
    let is = NamePattern::Is("c.sqlite-wal".into());
    assert!(is.matches(OsStr::new("c.sqlite-wal")));
    assert!(!is.matches(OsStr::new("c.sqlite-wal2")));
    let around = NamePattern::Around("hashset-".into(), ".idx".into());
    assert!(around.matches(OsStr::new("hashset-0123456789abcdef.idx")));
    assert!(around.matches(OsStr::new("hashset-.idx")));
    assert!(!around.matches(OsStr::new("hashset-.id")));
    assert!(!around.matches(OsStr::new("hashset.idx")));
    let short = NamePattern::Around("ab".into(), "bc".into());
    assert!(
        !short.matches(OsStr::new("abc")),
        "the ends may not overlap"
    );
    assert!(!around.matches(OsStr::new("my-hashset-1.idx")));
}

// Unix only: the test makes symlinks (Windows needs a privilege for one).
#[cfg(unix)]
/// hashsweep's own files are listed as skipped, never passed on to be read: by name in
/// their directory however that directory is spelled (here through a symlinked root), and
/// by identity wherever else they are reached (a hard link). Same names elsewhere, and
/// other names beside them, are walked as usual.
#[test]
fn own_files_are_skipped_by_directory_identity_and_name_or_by_file_identity() {
    let d = tempfile::tempdir().unwrap();
    let cache_dir = d.path().join("home/.cache/hs");
    std::fs::create_dir_all(&cache_dir).unwrap();
    for name in ["c.db", "c.db-wal", "mine.txt"] {
        std::fs::write(cache_dir.join(name), b"x").unwrap();
    }
    std::fs::create_dir(d.path().join("home/other")).unwrap();
    std::fs::write(d.path().join("home/other/c.db-wal"), b"x").unwrap();
    std::fs::hard_link(cache_dir.join("c.db"), d.path().join("home/other/link")).unwrap();
    symlink(d.path().join("home"), d.path().join("alias")).unwrap();
    let rule = SkipRule {
        dir: file_id(&cache_dir).unwrap(),
        names: vec![
            (NamePattern::Is("c.db".into()), SpecialKind::OwnCache),
            (NamePattern::Is("c.db-wal".into()), SpecialKind::OwnCache),
        ],
        files: vec![(
            file_id(&cache_dir.join("c.db")).unwrap(),
            SpecialKind::OwnCache,
        )],
    };
    let opts = WalkOptions {
        skip: vec![rule],
        ..Default::default()
    };
    let root = d.path().join("alias");
    let ev = collect(&root, &opts);
    let own = |rel: &str| WalkEvent::Special {
        path: root.join(rel),
        kind: SpecialKind::OwnCache,
    };
    let file = |rel: &str| WalkEvent::File(root.join(rel));
    let mut want = vec![
        own(".cache/hs/c.db"),
        own(".cache/hs/c.db-wal"),
        file(".cache/hs/mine.txt"),
        file("other/c.db-wal"),
        own("other/link"),
    ];
    want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(ev, want);
    assert!(
        SpecialKind::OwnCache
            .reason()
            .contains("hashsweep's own cache")
    );
}
