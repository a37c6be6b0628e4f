//! Test helpers: a temp tree, the binary runner, report parsing.
// On Windows the helpers of the Unix-only tests go unused.
#![cfg_attr(windows, allow(dead_code))]

use std::ffi::OsStr;
use std::io::Read;
#[cfg(unix)]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use hashsweep_mock::{EICAR, EICAR_SHA256, Fault, MockServer};
use serde_json::Value;

/// The key the mock accepts.
pub const KEY: &str = "test-key-0123456789abcdef-SECRET";

/// A temporary directory tree.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Create a file (and its parent directories) with `data`. `rel` may hold any bytes.
    pub fn file(&self, rel: impl AsRef<OsStr>, data: &[u8]) -> PathBuf {
        let p = self.path().join(rel.as_ref());
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    // Unix only: a name of raw non-UTF-8 bytes exists only there.
    #[cfg(unix)]
    pub fn file_bytes(&self, rel: &[u8], data: &[u8]) -> PathBuf {
        self.file(OsStr::from_bytes(rel), data)
    }

    // Unix only: FIFOs.
    #[cfg(unix)]
    pub fn fifo(&self, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        p
    }
}

/// The binary under test: cargo's build of this crate, or `HASHSWEEP_TEST_BIN` (CI runs these
/// tests against the static musl build that way).
pub fn binary() -> PathBuf {
    std::env::var_os("HASHSWEEP_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hashsweep")))
}

/// A `hashsweep` command with a clean environment (no key, no API URL from the outside).
pub fn cmd() -> Command {
    let mut c = Command::new(binary());
    // No test touches the user's cache; the cache tests name their own with --cache.
    c.env_remove("METADEFENDER_APIKEY")
        .env_remove("HASHSWEEP_API_URL")
        .env_remove("HASHSWEEP_CACHE")
        .env("HASHSWEEP_NO_CACHE", "1")
        // Nor the machine's config files (/etc/hashsweep, the user's): an empty one.
        .env("HASHSWEEP_CONFIG", "/dev/null")
        .stdin(Stdio::null());
    c
}

/// Run with a deadline: a hang is a test failure, not a stuck CI job.
pub fn run(c: &mut Command) -> Output {
    run_with_timeout(c, Duration::from_secs(60))
}

pub fn run_with_timeout(c: &mut Command, limit: Duration) -> Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hashsweep");
    // Drain both pipes while waiting, so a large report cannot block the child.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_t.join().unwrap_or_default();
            panic!(
                "hashsweep did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Flags that send a small tree's digests in one request: a budget known from the start (no
/// digest goes alone first to learn it) and a long batch wait.
pub const ONE_REQUEST: [&str; 4] = ["--budget", "100000", "--batch-wait", "60s"];

/// `hashsweep scan` against `mock` with the right key (the report is ndjson: stdout is a pipe).
pub fn scan_cmd(mock: &MockServer, root: &Path) -> Command {
    let mut c = cmd();
    c.env("METADEFENDER_APIKEY", KEY)
        .args(["scan", "--api-url", &mock.url()])
        .arg(root);
    c
}

pub fn ndjson(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf8 report")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad ndjson line {l:?}: {e}")))
        .collect()
}

/// The record whose path ends with `suffix` (`/` matching Windows' `\` too).
pub fn rec<'a>(recs: &'a [Value], suffix: &str) -> &'a Value {
    let slash = |s: &str| s.replace('\\', "/");
    let ends =
        |p: &str| p.ends_with(suffix) || (cfg!(windows) && slash(p).ends_with(&slash(suffix)));
    recs.iter()
        .find(|r| r["path"].as_str().is_some_and(ends))
        .unwrap_or_else(|| panic!("no record for {suffix} in {recs:#?}"))
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A file's digest from coreutils (`sha256sum`, `md5sum`, `sha1sum`): an independent
/// implementation to check hashsweep against.
#[cfg(unix)]
pub fn coreutils(tool: &str, path: &Path) -> String {
    let out = Command::new(tool)
        .arg(path)
        .output()
        .expect("coreutils present");
    String::from_utf8(out.stdout)
        .expect("hex")
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// On Windows (under Wine, which cannot start Linux's coreutils) the digest of the whole file
/// read at once, by the same hash crates but not through hashsweep's reads.
#[cfg(windows)]
pub fn coreutils(tool: &str, path: &Path) -> String {
    use sha2::Digest as _;
    let data = std::fs::read(path).expect("read for the digest");
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match tool {
        "sha256sum" => hex(&sha2::Sha256::digest(&data)),
        "md5sum" => hex(&md5::Md5::digest(&data)),
        "sha1sum" => hex(&sha1::Sha1::digest(&data)),
        other => panic!("no stand-in for {other}"),
    }
}

/// Say that the current test did not test what it is about, where a reader of `cargo test`
/// sees it. libtest's output capture only takes what `print!`/`eprint!` write; a write to the
/// stderr handle itself goes to the terminal (or the CI log) as `cargo test` runs, capture or
/// not. The test is named from its thread (libtest names each test's thread after it).
pub fn skip(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main").unwrap_or("a test");
    let _ = writeln!(std::io::stderr().lock(), "\nSKIPPED {name}: {why}");
}

// Unix only: file modes and users.
#[cfg(unix)]
/// A `hashsweep` command (as `cmd`) that runs without root's power to read everything: as
/// `nobody` (uid and gid 65534, no supplementary groups) when we are root, set by the spawn
/// itself so no `setpriv` is needed; as ourselves otherwise.
pub fn cmd_unprivileged() -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = cmd();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // With uid set and no groups given, std calls setgroups(0) before setuid when root.
        c.uid(65534).gid(65534);
    }
    c
}

/// Set a file's access time to 2001, older than its modification time: a read then updates
/// it on `strictatime` and `relatime` mounts alike. Returns the time set.
pub fn set_old_atime(path: &Path) -> std::time::SystemTime {
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(old))
        .unwrap();
    old
}

/// Whether reading a file in `dir` updates its access time (false on `noatime` mounts, where
/// an atime check proves nothing). A plain read, without `O_NOATIME`, is the probe.
fn reads_update_atime(dir: &Path) -> bool {
    let probe = dir.join(".atime-probe");
    std::fs::write(&probe, b"probe").unwrap();
    let old = set_old_atime(&probe);
    std::fs::read(&probe).unwrap();
    let changed = std::fs::metadata(&probe).unwrap().accessed().unwrap() != old;
    std::fs::remove_file(&probe).unwrap();
    changed
}

/// A temp tree on a mount where reads update access times: the usual temp dir if its mount
/// does (checked by reading a file there), else, as root, a `strictatime` tmpfs mounted in a
/// temp dir for the test and unmounted when this drops. None (having said so) if neither.
pub struct AtimeTree {
    tree: Tree,
    mounted: bool,
}

impl AtimeTree {
    pub fn new() -> Option<AtimeTree> {
        let tree = Tree::new();
        if reads_update_atime(tree.path()) {
            return Some(AtimeTree {
                tree,
                mounted: false,
            });
        }
        let mounted = mount_strictatime_tmpfs(tree.path());
        if !mounted {
            skip(&format!(
                "reads do not update access times in {} (noatime?) and a strictatime tmpfs \
                 cannot be mounted there ({}); run as root or with TMPDIR on a strictatime or \
                 relatime mount",
                tree.path().display(),
                std::io::Error::last_os_error()
            ));
            return None;
        }
        let t = AtimeTree { tree, mounted };
        assert!(
            reads_update_atime(t.path()),
            "reads on a strictatime tmpfs update the access time"
        );
        Some(t)
    }
}

impl std::ops::Deref for AtimeTree {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

impl Drop for AtimeTree {
    fn drop(&mut self) {
        if self.mounted {
            unmount(self.tree.path());
        }
    }
}

/// Mount a `strictatime` tmpfs on `dir` (Linux, as root); false if that failed.
#[cfg(target_os = "linux")]
fn mount_strictatime_tmpfs(dir: &Path) -> bool {
    let dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_STRICTATIME | libc::MS_NOSUID | libc::MS_NODEV,
            c"size=16m,mode=0700".as_ptr().cast(),
        )
    };
    rc == 0
}

/// No tmpfs to mount outside Linux: the atime tests skip there unless TMPDIR updates atimes.
#[cfg(not(target_os = "linux"))]
fn mount_strictatime_tmpfs(_dir: &Path) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn unmount(dir: &Path) {
    let dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // Detached, so a file still open somewhere cannot leave the mount behind; the temp dir
    // under it is removed when `tree` drops next.
    // SAFETY: `dir` is a NUL-terminated path that outlives the call.
    unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
}

#[cfg(not(target_os = "linux"))]
fn unmount(_dir: &Path) {}

/// Wait until `sig` is no longer pending for process `pid` (neither for a thread nor for the
/// process, per `/proc/PID/status`), i.e. it has been taken, or the process has exited. Two
/// signals sent closer together could merge into one delivery.
pub fn wait_until_delivered(pid: u32, sig: i32, limit: Duration) {
    let bit = 1u64 << (sig - 1);
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let pending = status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .map(|l| u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap())
            .fold(0, |a, m| a | m);
        // A process that has exited (a zombie, or gone) will never take it.
        let exited = status.is_empty() || status.lines().any(|l| l.starts_with("State:\tZ"));
        if pending & bit == 0 || exited {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "signal {sig} still pending after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
