//! Running programs (`--processes`, Linux): the executable image of every process, read
//! through `/proc/<pid>/exe` (which works when the file was deleted or replaced after the
//! program started), and with [`ProcessScope::All`] the file-backed libraries it maps
//! (`/proc/<pid>/maps`), each distinct library once. Each image becomes a hash task whose path
//! is the `/proc` spelling it is read through (unique per process), and a [`ProcessInfo`] the
//! report shows instead: the path as the kernel shows it, pid, name, command line, uid, and
//! whether the file is gone from disk.
//!
//! Processes that vanish while listed, kernel threads (no executable) and processes this user
//! may not inspect are counted ([`ProcessCounts`]), not errors.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::hash::{FileResult, FileStatus};
pub use hashsweep_report::scanned::{ProcessCounts, ProcessInfo};

/// The most characters of a command line a record keeps.
pub const CMDLINE_MAX: usize = 256;

/// What `--processes` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessScope {
    /// Executables only (`--processes=exe`).
    Exe,
    /// Executables and the libraries they map (`--processes`).
    #[default]
    All,
}

/// The images to hash: the `/proc` path each is read through, and what it is.
#[derive(Debug, Default)]
pub struct Found {
    pub images: Vec<(PathBuf, ProcessInfo)>,
    pub counts: ProcessCounts,
}

const DELETED: &[u8] = b" (deleted)";

/// Strip the kernel's ` (deleted)` mark: the path, and whether it was there.
fn undeleted(raw: &[u8]) -> (PathBuf, bool) {
    match raw.strip_suffix(DELETED) {
        Some(p) => (hashsweep_core::platform::path_from_vec(p.to_vec()), true),
        None => (hashsweep_core::platform::path_from_vec(raw.to_vec()), false),
    }
}

/// Arguments from `/proc/<pid>/cmdline` (NUL-separated), cut to [`CMDLINE_MAX`] characters.
fn args_of(raw: &[u8]) -> Vec<String> {
    let mut left = CMDLINE_MAX;
    let mut out = Vec::new();
    for a in raw.split(|b| *b == 0).filter(|a| !a.is_empty()) {
        if left == 0 {
            break;
        }
        let a = String::from_utf8_lossy(a);
        let cut: String = a.chars().take(left).collect();
        left -= cut.chars().count();
        out.push(cut);
    }
    out
}

/// The real uid from `/proc/<pid>/status`.
fn uid_of(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The kernel's flag of a kernel thread in `/proc/<pid>/stat` (linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether `/proc/<pid>/stat` (its text) is a kernel thread's: its flags (the 9th field;
/// counted after the name, which is in parentheses and may hold spaces and parentheses
/// itself) have [`PF_KTHREAD`]. `None` when the text does not parse.
fn kernel_thread(stat: &str) -> Option<bool> {
    let (_, rest) = stat.rsplit_once(')')?;
    let flags: u64 = rest.split_whitespace().nth(6)?.parse().ok()?;
    Some(flags & PF_KTHREAD != 0)
}

/// One mapping of `/proc/<pid>/maps` that is a file: its address range, device, inode, path.
fn file_mapping(line: &str) -> Option<(&str, &str, u64, &str)> {
    let mut f = line.splitn(6, ' ');
    let range = f.next()?;
    let _perms = f.next()?;
    let _offset = f.next()?;
    let dev = f.next()?;
    let inode: u64 = f.next()?.parse().ok()?;
    let path = f.next()?.trim_start();
    (inode != 0 && path.starts_with('/')).then_some((range, dev, inode, path))
}

/// Every running program's image (and with `All`, the libraries), from `proc` (normally
/// `/proc`).
pub fn list(proc_root: &Path, scope: ProcessScope) -> io::Result<Found> {
    let mut found = Found::default();
    let mut libraries: HashSet<(String, u64)> = HashSet::new();
    let mut pids: Vec<u32> = std::fs::read_dir(proc_root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let link = match std::fs::read_link(dir.join("exe")) {
            Ok(l) => l,
            Err(e) => {
                let c = &mut found.counts;
                // Not root: the link of a kernel thread (root's) is refused before it is found
                // to lead nowhere; its stat, readable by all, says what it is.
                let kthread = || {
                    std::fs::read_to_string(dir.join("stat"))
                        .ok()
                        .and_then(|s| kernel_thread(&s))
                        == Some(true)
                };
                match e.kind() {
                    _ if !dir.exists() => c.vanished += 1,
                    io::ErrorKind::PermissionDenied if kthread() => c.kernel_threads += 1,
                    io::ErrorKind::PermissionDenied => c.denied += 1,
                    // A kernel thread's exe links nowhere.
                    io::ErrorKind::NotFound => c.kernel_threads += 1,
                    _ => c.denied += 1,
                }
                continue;
            }
        };
        found.counts.processes += 1;
        let name = std::fs::read_to_string(dir.join("comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let args = std::fs::read(dir.join("cmdline"))
            .map(|r| args_of(&r))
            .unwrap_or_default();
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| uid_of(&s));
        let (path, deleted) = undeleted(link.as_os_str().as_encoded_bytes());
        let info = ProcessInfo {
            pid,
            name,
            args,
            uid,
            path,
            deleted,
            library_of: None,
        };
        if scope == ProcessScope::All
            && let Ok(maps) = std::fs::read_to_string(dir.join("maps"))
        {
            for (range, dev, inode, shown) in maps.lines().filter_map(file_mapping) {
                if shown.as_bytes() == link.as_os_str().as_encoded_bytes()
                    || !libraries.insert((dev.to_string(), inode))
                {
                    continue;
                }
                let (path, deleted) = undeleted(shown.as_bytes());
                // Read as the process sees it (its root, its mount namespace); a deleted one
                // only through its mapping.
                let read = if deleted {
                    dir.join("map_files").join(range)
                } else {
                    dir.join("root")
                        .join(path.strip_prefix("/").unwrap_or(&path))
                };
                found.images.push((
                    read,
                    ProcessInfo {
                        path,
                        deleted,
                        library_of: Some(info.path.clone()),
                        ..info.clone()
                    },
                ));
            }
        }
        found.images.push((dir.join("exe"), info));
    }
    found.counts.images = found.images.len() as u64;
    Ok(found)
}

/// A program that exited before its image was read is counted, not an error (once, however
/// many of its images, its executable and libraries, were left unread); so is one whose image
/// this user may not read. Drops those results from `files`.
pub(super) fn settle(
    files: &mut Vec<FileResult>,
    images: &HashMap<Box<Path>, ProcessInfo>,
    counts: &mut ProcessCounts,
) {
    let mut vanished: HashSet<u32> = HashSet::new();
    files.retain(|f| match (&f.status, images.get(&f.path)) {
        (FileStatus::Error(e), Some(p)) => {
            if !Path::new("/proc").join(p.pid.to_string()).exists() {
                vanished.insert(p.pid);
                false
            } else if e.contains("Permission denied") {
                counts.denied += 1;
                false
            } else {
                true
            }
        }
        _ => true,
    });
    counts.vanished += vanished.len() as u64;
}

// Linux only: /proc.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::hash::{HashOptions, Hasher};
    use crate::walk::WalkEvent;

    /// A process that exits between the listing and the read is counted as gone, not
    /// reported as an error; a live one's image is hashed as usual.
    #[test]
    fn a_process_that_exits_before_its_image_is_read_is_counted_not_an_error() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut alive = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let found = list(Path::new("/proc"), ProcessScope::Exe).unwrap();
        let images: HashMap<Box<Path>, ProcessInfo> = found
            .images
            .into_iter()
            .filter(|(_, i)| i.pid == child.id() || i.pid == alive.id())
            .map(|(p, i)| (p.into_boxed_path(), i))
            .collect();
        assert_eq!(images.len(), 2, "{images:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let mut hasher = Hasher::new(HashOptions::default());
        let mut files: Vec<FileResult> = images
            .keys()
            .map(|p| hasher.process(WalkEvent::Process(p.to_path_buf())))
            .collect();
        assert!(
            files
                .iter()
                .any(|f| matches!(f.status, FileStatus::Error(_))),
            "{files:?}"
        );
        let mut counts = ProcessCounts::default();
        settle(&mut files, &images, &mut counts);
        assert_eq!(counts.vanished, 1, "{counts:?}");
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].digests().is_some(), "{files:?}");
        assert_eq!(images[&files[0].path].pid, alive.id());
        let _ = alive.kill();
        let _ = alive.wait();
    }

    /// A process gone with its executable and two libraries unread is one vanished process.
    #[test]
    fn a_vanished_process_counts_once_whatever_its_images() {
        // Above the kernel's pid_max (2^22): never a running process.
        let gone = 1 << 23;
        let info = |path: &str, library: bool| ProcessInfo {
            pid: gone,
            name: "gone".into(),
            args: Vec::new(),
            uid: None,
            path: PathBuf::from(path),
            deleted: false,
            library_of: library.then(|| PathBuf::from("/bin/gone")),
        };
        let dir = PathBuf::from(format!("/proc/{gone}"));
        let images: HashMap<Box<Path>, ProcessInfo> = [
            (dir.join("exe"), info("/bin/gone", false)),
            (dir.join("root/lib/a.so"), info("/lib/a.so", true)),
            (dir.join("root/lib/b.so"), info("/lib/b.so", true)),
        ]
        .into_iter()
        .map(|(p, i)| (p.into_boxed_path(), i))
        .collect();
        let mut files: Vec<FileResult> = images
            .keys()
            .map(|p| FileResult {
                archive: None,
                path: p.clone(),
                size: None,
                status: FileStatus::Error("cannot open: No such file or directory".into()),
            })
            .collect();
        let mut counts = ProcessCounts::default();
        settle(&mut files, &images, &mut counts);
        assert!(files.is_empty(), "{files:?}");
        assert_eq!(counts.vanished, 1, "{counts:?}");
    }

    #[test]
    fn proc_texts_are_parsed() {
        assert_eq!(
            undeleted(b"/tmp/x/sleep (deleted)"),
            (PathBuf::from("/tmp/x/sleep"), true)
        );
        assert_eq!(undeleted(b"/bin/sh"), (PathBuf::from("/bin/sh"), false));
        assert_eq!(args_of(b"sleep\x0030\x00"), vec!["sleep", "30"]);
        let long = vec![b'a'; 1000];
        assert_eq!(args_of(&long)[0].len(), CMDLINE_MAX);
        assert_eq!(
            uid_of("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        // kthreadd: flags 0x208040.
        assert_eq!(
            kernel_thread("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 25"),
            Some(true)
        );
        // A program whose name holds a space and parentheses; flags 0x400100.
        assert_eq!(
            kernel_thread("4242 (a (b) c) S 1 4242 4242 34816 4242 4194560 120 0 0 0"),
            Some(false)
        );
        assert_eq!(kernel_thread("4242 (cut"), None);
        assert_eq!(kernel_thread("4242 (x) S 1 2 3 4 5 notanumber"), None);
        assert_eq!(
            file_mapping(
                "7f0c-7f0d r-xp 00001000 08:01 1234                       /usr/lib/libc.so.6"
            ),
            Some(("7f0c-7f0d", "08:01", 1234, "/usr/lib/libc.so.6"))
        );
        assert_eq!(
            file_mapping("7f0c-7f0d rw-p 00000000 00:00 0      [heap]"),
            None
        );
        assert_eq!(
            file_mapping("7f0c-7f0d r-xp 0 08:01 99  /tmp/lib.so (deleted)").map(|m| m.3),
            Some("/tmp/lib.so (deleted)")
        );
    }

    /// This test's own process is listed, with its executable and (with `All`) its libraries.
    #[test]
    fn the_running_test_is_listed() {
        let found = list(Path::new("/proc"), ProcessScope::All).unwrap();
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap();
        let mine: Vec<_> = found.images.iter().filter(|(_, i)| i.pid == me).collect();
        assert!(
            mine.iter()
                .any(|(p, i)| !i.library() && i.path == exe && p.ends_with("exe")),
            "{mine:?}"
        );
        assert!(found.counts.processes >= 1);
    }
}
