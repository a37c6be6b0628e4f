//! A live system: kernel pseudo file systems in the tree are left alone (one `skipped` record
//! per mount point), or read with guards under `--pseudo-fs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Kernel file systems mounted inside a temp tree, unmounted (lazily) when dropped.
struct Mounts {
    points: Vec<PathBuf>,
}

impl Mounts {
    /// Mount each `(type, dir)`; `None` (after a visible SKIPPED) when mounting is refused.
    fn new(what: &[(&str, &Path)]) -> Option<Mounts> {
        let mut m = Mounts { points: Vec::new() };
        for (fstype, dir) in what {
            std::fs::create_dir_all(dir).unwrap();
            let ok = Command::new("mount")
                .args(["-t", fstype, fstype])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                skip(&format!("cannot mount {fstype} (needs root): not tested"));
                return None;
            }
            m.points.push(dir.to_path_buf());
        }
        Some(m)
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.points.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// A tree holding a mounted proc and sysfs sweeps in seconds: each mount point is one skipped
/// record naming its file system, nothing under them is listed, the ordinary files are hashed.
#[test]
fn pseudo_file_systems_in_the_tree_are_one_skipped_record_each() {
    let t = Tree::new();
    t.file("etc/hosts", b"127.0.0.1 localhost\n");
    t.file("bin/tool", b"\x7fELF tool");
    let Some(_m) = Mounts::new(&[
        ("proc", &t.path().join("proc")),
        ("sysfs", &t.path().join("sys")),
    ]) else {
        return;
    };
    let started = Instant::now();
    let out = run_with_timeout(
        cmd().args(["scan", "--offline"]).arg(t.path()),
        Duration::from_secs(30),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 4, "{recs:#?}");
    let proc_ = rec(&recs, "/proc");
    assert_eq!(proc_["verdict"], "skipped");
    assert_eq!(proc_["note"], "pseudo file system (proc)");
    let sys = rec(&recs, "/sys");
    assert_eq!(sys["verdict"], "skipped");
    assert_eq!(sys["note"], "pseudo file system (sysfs)");
    for f in ["etc/hosts", "bin/tool"] {
        assert_eq!(rec(&recs, f)["verdict"], "not_looked_up", "{f}");
        assert!(rec(&recs, f)["sha256"].is_string(), "{f}");
    }
}

/// An ordinary mount below a pseudo file system that is not entered is walked on its own:
/// tmpfs at `dev/shm` under devtmpfs's `dev` (where a dropper stages what it runs) is hashed,
/// `dev` is one skipped record. `-x` stays on the root's device (the tmpfs is named as a root
/// to be swept), and `--exclude` still applies below the pseudo mount.
#[test]
fn an_ordinary_mount_below_a_pseudo_one_is_walked() {
    let t = Tree::new();
    t.file("etc/hosts", b"127.0.0.1 localhost\n");
    let dev = t.path().join("dev");
    let Some(_dev) = Mounts::new(&[("devtmpfs", &dev)]) else {
        return;
    };
    // devtmpfs is the kernel's one instance: /dev itself. Its `shm` directory is used as the
    // mount point, a fresh tmpfs on it holds only this test's file.
    if !dev.join("shm").is_dir() {
        skip("devtmpfs has no shm directory: not tested");
        return;
    }
    let Some(_shm) = Mounts::new(&[("tmpfs", &dev.join("shm"))]) else {
        return;
    };
    let dropper = dev.join("shm/dropper");
    std::fs::write(&dropper, b"\x7fELF staged").unwrap();
    let want = coreutils("sha256sum", &dropper);

    let out = run_with_timeout(
        cmd().args(["scan", "--offline"]).arg(t.path()),
        Duration::from_secs(30),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let d = rec(&recs, "/dev");
    assert_eq!(d["verdict"], "skipped", "{d}");
    assert_eq!(d["note"], "pseudo file system (devtmpfs)", "{d}");
    let f = rec(&recs, "/dev/shm/dropper");
    assert_eq!(f["path"], dropper.to_str().unwrap(), "{f}");
    assert_eq!(f["sha256"], want.as_str(), "{f}");
    assert!(rec(&recs, "etc/hosts")["sha256"].is_string());

    for extra in [&["-x"][..], &["--exclude", "dev/shm"][..]] {
        let out = run_with_timeout(
            cmd().args(["scan", "--offline"]).args(extra).arg(t.path()),
            Duration::from_secs(30),
        );
        assert_eq!(code(&out), 0, "{extra:?}: {}", stderr(&out));
        let recs = ndjson(&out);
        assert!(
            !recs
                .iter()
                .any(|r| r["path"].as_str().is_some_and(|p| p.contains("dropper"))),
            "{extra:?}: {recs:#?}"
        );
        assert!(rec(&recs, "etc/hosts")["sha256"].is_string(), "{extra:?}");
    }
}

/// A root on a pseudo file system is the same one record, with a message that says why and
/// how to read it anyway.
#[test]
fn a_pseudo_root_is_one_skipped_record_and_a_message() {
    let out = run(cmd().args(["scan", "--offline", "/proc"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["path"], "/proc");
    assert_eq!(recs[0]["verdict"], "skipped");
    assert_eq!(recs[0]["note"], "pseudo file system (proc)");
    let err = stderr(&out);
    assert!(
        err.contains("/proc is on a pseudo file system (proc)"),
        "{err}"
    );
    assert!(err.contains("--pseudo-fs"), "{err}");
}

/// `--pseudo-fs` reads a proc file (size 0 for stat, content when read) to its end under the
/// guards, and a sysfs directory is walked, within the deadline.
#[test]
fn pseudo_fs_reads_proc_files_with_guards() {
    let t = Tree::new();
    let Some(_m) = Mounts::new(&[("proc", &t.path().join("proc"))]) else {
        return;
    };
    let version = t.path().join("proc/version");
    let want = coreutils("sha256sum", &version);
    let out = run_with_timeout(
        cmd()
            .args(["scan", "--offline", "--pseudo-fs"])
            .arg(&version),
        Duration::from_secs(30),
    );
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["sha256"], want.as_str(), "{recs:#?}");
    assert!(recs[0]["size"].as_u64().unwrap() > 0, "{recs:#?}");
    // pagemap says 0 bytes and streams 8 bytes per page of the address space (hundreds of
    // GiB): the cap stops it, it is skipped with the reason, and the sweep goes on.
    let pagemap = t.path().join("proc/self/pagemap");
    let started = Instant::now();
    let out = run_with_timeout(
        cmd()
            .args(["scan", "--offline", "--pseudo-fs"])
            .arg(&pagemap),
        Duration::from_secs(30),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = ndjson(&out);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["verdict"], "skipped", "{recs:#?}");
    let note = recs[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("pseudo file system: read stopped at the 1048576-byte cap"),
        "{note}"
    );
}

/// A program started from a copy of a system binary that was then deleted is found under
/// `--processes` with `deleted: true`, the digest of the copy, its process fields, and the
/// verdict the service gives that digest (infected here: exit 1); the summary lists it.
#[test]
fn a_deleted_running_executable_is_found_with_its_digest_and_verdict() {
    let t = Tree::new();
    let bin = t.file("bin/hs-test-sleeper", &std::fs::read("/bin/sleep").unwrap());
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sha = coreutils("sha256sum", &bin);
    let mut child = Command::new(&bin).arg("120").spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    // Wait until the kernel shows the new image (exec done), then delete it.
    let link = PathBuf::from(format!("/proc/{pid}/exe"));
    let started = Instant::now();
    while std::fs::read_link(&link).ok().as_deref() != Some(bin.as_path()) {
        assert!(started.elapsed() < Duration::from_secs(10), "no exec");
        if let Ok(Some(s)) = child.try_wait() {
            panic!("sleeper exited: {s}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _child = Kill(child);
    std::fs::remove_file(&bin).unwrap();
    let mock = MockServer::start(Some(KEY)).unwrap();
    mock.set(&sha, 1, 5);
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_with_timeout(
        scan_cmd(&mock, &empty).arg("--processes=exe"),
        Duration::from_secs(300),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let recs = ndjson(&out);
    let r = recs
        .iter()
        .find(|r| r["pid"] == pid)
        .unwrap_or_else(|| panic!("no record of pid {pid}: {recs:#?}"));
    assert_eq!(r["path"], bin.to_str().unwrap(), "{r}");
    assert_eq!(r["deleted"], true, "{r}");
    assert_eq!(r["sha256"], sha.as_str(), "{r}");
    assert_eq!(r["verdict"], "infected", "{r}");
    assert_eq!(r["process_name"], "hs-test-sleeper", "{r}");
    assert_eq!(r["cmdline"], format!("{} 120", bin.display()), "{r}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(r["uid"], unsafe { libc::getuid() }, "{r}");
    let err = stderr(&out);
    assert!(
        err.contains("running, deleted from disk: ")
            && err.contains(&format!("{pid} hs-test-sleeper ({})", bin.display())),
        "{err}"
    );
    // The run's other processes are there too, and none of them is an error.
    assert!(
        recs.iter().filter(|r| r["pid"].is_u64()).count() > 1,
        "{recs:#?}"
    );
}

/// With `--cache`, an unchanged running program's image is answered from the digest cache as
/// an unchanged file is: the second sweep has the same digest for it and reads nothing. The
/// sweeps run in a PID namespace of their own (`unshare --pid --mount-proc`, as root), so the
/// running programs are the test's only: a shell, the sleeper, hashsweep itself.
#[test]
fn running_programs_unchanged_since_the_last_sweep_are_answered_from_the_cache() {
    let t = Tree::new();
    let bin = t.file(
        "bin/hs-cached-sleeper",
        &std::fs::read("/bin/sleep").unwrap(),
    );
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sha = coreutils("sha256sum", &bin);
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cache = t.path().join("c.sqlite");
    let ns = |c: &mut Command| {
        c.args(["--pid", "--fork", "--mount-proc"]);
    };
    let mut probe = Command::new("unshare");
    ns(&mut probe);
    if !probe.arg("true").status().is_ok_and(|s| s.success()) {
        skip("cannot make a PID namespace (unshare --pid needs root): not tested");
        return;
    }
    // Files changed within the cache's racy window are not kept: let the copy age.
    std::thread::sleep(hashsweep::cache::RACY_WINDOW + Duration::from_millis(200));
    // The sleeper runs (its exec done) before the first sweep and until after the second.
    let script = r#"
        "$1" 120 &
        n=0
        while [ "$(readlink /proc/$!/exe)" != "$1" ] && [ $n -lt 1000 ]; do
            sleep 0.01; n=$((n + 1))
        done
        for run in 1 2; do
            "$2" scan --offline --processes=exe --format json --cache "$3" -o "$4/run$run.json" "$5"
            echo "run $run: exit $?" >&2
        done
        kill $!
    "#;
    // The environment `cmd()` gives hashsweep, but with the cache.
    let mut c = Command::new("unshare");
    for (k, v) in cmd().get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env_remove("HASHSWEEP_NO_CACHE");
    ns(&mut c);
    c.args(["sh", "-c", script, "sh"])
        .arg(&bin)
        .arg(binary())
        .arg(&cache)
        .arg(t.path())
        .arg(&empty);
    let out = run_with_timeout(&mut c, Duration::from_secs(300));
    let err = stderr(&out);
    assert!(
        err.contains("run 1: exit 0") && err.contains("run 2: exit 0"),
        "{err}"
    );
    let report = |n: u32| -> serde_json::Value {
        let text = std::fs::read(t.path().join(format!("run{n}.json"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    };
    let (r1, r2) = (report(1), report(2));
    let sleeper = |r: &serde_json::Value| -> serde_json::Value {
        r["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["path"] == bin.to_str().unwrap())
            .unwrap_or_else(|| panic!("no record of the sleeper: {r:#}"))
            .clone()
    };
    assert_eq!(sleeper(&r1)["sha256"], sha.as_str(), "{r1:#}");
    assert!(r1["summary"]["bytes_read"].as_u64().unwrap() > 0, "{r1:#}");
    let s2 = sleeper(&r2);
    assert_eq!(s2["sha256"], sha.as_str(), "{s2}");
    assert!(s2["pid"].is_u64(), "{s2}");
    assert_eq!(
        r2["summary"]["bytes_read"], 0,
        "nothing read again: {:#}",
        r2["summary"]
    );
    assert!(
        r2["summary"]["files_cached"].as_u64().unwrap() >= 3,
        "{:#}",
        r2["summary"]
    );
}

/// ECS of running programs: an executable's document has it as `process.executable` with its
/// digest as `process.hash.sha256`; a library's names the executable of the process that maps
/// it (not the library, which is `file.path`), no `process.hash` (the digest is the library's,
/// in `file.hash`), and `hashsweep.library: true`.
#[test]
fn ecs_process_fields_are_the_process_s_for_libraries_too() {
    let t = Tree::new();
    let bin = t.file("bin/hs-ecs-sleeper", &std::fs::read("/bin/sleep").unwrap());
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sha = coreutils("sha256sum", &bin);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Kill(Command::new(&bin).arg("120").spawn().unwrap());
    let pid = child.0.id();
    let started = Instant::now();
    while std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .as_deref()
        != Some(bin.as_path())
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no exec");
        std::thread::sleep(Duration::from_millis(10));
    }
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_with_timeout(
        cmd()
            .args(["scan", "--offline", "--processes", "--format", "ecs"])
            .arg(&empty),
        Duration::from_secs(300),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let docs = ndjson(&out);
    let exe = docs
        .iter()
        .find(|d| d["process"]["pid"] == pid && d["hashsweep"]["library"].is_null())
        .unwrap_or_else(|| panic!("no executable document of pid {pid}"));
    assert_eq!(exe["file"]["path"], bin.to_str().unwrap(), "{exe}");
    assert_eq!(exe["process"]["executable"], bin.to_str().unwrap(), "{exe}");
    assert_eq!(exe["process"]["hash"]["sha256"], sha.as_str(), "{exe}");
    // libc is mapped by this test and the sleeper; its one document goes to the first
    // process listed that maps it, whichever that is.
    let lib = docs
        .iter()
        .find(|d| {
            d["file"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("/libc.so") || p.contains("/libc-"))
        })
        .unwrap_or_else(|| panic!("no libc document"));
    assert_eq!(lib["hashsweep"]["library"], true, "{lib}");
    assert!(lib["process"]["hash"].is_null(), "{lib}");
    assert!(lib["file"]["hash"]["sha256"].is_string(), "{lib}");
    let owner = &lib["process"]["executable"];
    assert!(owner.is_string() && *owner != lib["file"]["path"], "{lib}");
    // The executable named is the one of that process's own document.
    let its_exe = docs
        .iter()
        .find(|d| {
            d["process"]["pid"] == lib["process"]["pid"] && d["hashsweep"]["library"].is_null()
        })
        .unwrap_or_else(|| panic!("no executable document for {lib}"));
    assert_eq!(*owner, its_exe["process"]["executable"], "{lib}\n{its_exe}");
    drop(child);
}

/// Without root, a kernel thread's `exe` is refused (it is root's) rather than found to lead
/// nowhere: it is still counted as a kernel thread, not as a process that could not be
/// inspected.
#[test]
fn kernel_threads_are_counted_as_such_without_root() {
    // kthreadd is pid 2 wherever the kernel's threads are visible (not in a PID namespace).
    let kthreadd = std::fs::read_to_string("/proc/2/stat").unwrap_or_default();
    if !kthreadd.contains("(kthreadd)") {
        skip("no kernel threads visible (a PID namespace?): not tested");
        return;
    }
    let t = Tree::new();
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_with_timeout(
        cmd_unprivileged()
            .args(["scan", "--offline", "--processes=exe", "--format", "json"])
            .arg(&empty),
        Duration::from_secs(300),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = &report["summary"]["processes"];
    assert!(counts["kernel_threads"].as_u64().unwrap() >= 1, "{counts}");
}

/// A sweep of the running programs while many short-lived processes come and go: those that
/// exit between the listing and the read are counted, the sweep has no error record and
/// exits 0.
#[test]
fn processes_exiting_during_the_sweep_do_not_fail_it() {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Eight children at a time, each gone within 50 ms, for as long as the sweep lasts.
    let _churn = Kill(
        Command::new("sh")
            .args([
                "-c",
                "while :; do for i in 1 2 3 4 5 6 7 8; do sleep 0.0$((i % 5 + 1)) & done; wait; done",
            ])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let t = Tree::new();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for scope in ["--processes", "--processes=exe"] {
        let out = run_with_timeout(
            cmd()
                .args(["scan", "--offline", "--format", "json", scope])
                .arg(&empty),
            Duration::from_secs(300),
        );
        assert_eq!(code(&out), 0, "{scope}: {}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors: Vec<_> = report["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["verdict"] == "error" || !r["error"].is_null())
            .collect();
        assert!(errors.is_empty(), "{scope}: {errors:#?}");
        assert!(
            report["summary"]["processes"]["processes"]
                .as_u64()
                .unwrap()
                > 1,
            "{scope}: {}",
            report["summary"]
        );
    }
}
