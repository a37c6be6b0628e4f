//! What kind of file system a directory is on, for the walk: a kernel pseudo file system
//! (proc, sysfs, cgroup, ...: not entered unless `--pseudo-fs`, since its files are not files
//! and their sizes lie), a network file system (entered, but named in the summary so `-x` is
//! an informed choice), or an ordinary one. Decided by `statfs`'s `f_type`, once per device
//! id; the two types a magic number cannot tell apart (tmpfs from devtmpfs, and which FUSE
//! file system) are told by the mount's type in `/proc/self/mountinfo`. Elsewhere (macOS) every
//! file system is ordinary for now: the magic numbers below are Linux's.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hashsweep_core::sync::lock;

/// What the walk does with a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsClass {
    Ordinary,
    /// A kernel pseudo file system: its name and the report's reason for skipping it.
    Pseudo {
        name: &'static str,
        reason: &'static str,
    },
    /// A network (or FUSE) file system, by name.
    Network(&'static str),
}

macro_rules! pseudo {
    ($magic:expr, $name:literal) => {
        (
            $magic,
            FsClass::Pseudo {
                name: $name,
                reason: concat!("pseudo file system (", $name, ")"),
            },
        )
    };
}

/// `statfs` magic numbers (linux/magic.h) of the kernel's pseudo and network file systems.
const MAGICS: &[(u32, FsClass)] = &[
    pseudo!(0x9fa0, "proc"),
    pseudo!(0x6265_6572, "sysfs"),
    pseudo!(0x1cd1, "devpts"),
    pseudo!(0x0027_e0eb, "cgroup"),
    pseudo!(0x6367_7270, "cgroup2"),
    pseudo!(0x6462_6720, "debugfs"),
    pseudo!(0x7472_6163, "tracefs"),
    pseudo!(0x7363_6673, "securityfs"),
    pseudo!(0xcafe_4a11, "bpf"),
    pseudo!(0x6165_676c, "pstore"),
    pseudo!(0x6265_6570, "configfs"),
    pseudo!(0xde5e_81e4, "efivarfs"),
    pseudo!(0x1980_0202, "mqueue"),
    pseudo!(0x9584_58f6, "hugetlbfs"),
    pseudo!(0x6573_5543, "fusectl"),
    pseudo!(0x4249_4e4d, "binfmt_misc"),
    pseudo!(0x0187, "autofs"),
    pseudo!(0xf97c_ff8c, "selinuxfs"),
    pseudo!(0x4341_5d53, "smackfs"),
    pseudo!(0x6e73_6673, "nsfs"),
    pseudo!(0x6759_6969, "rpc_pipefs"),
    pseudo!(0x6e66_7364, "nfsd"),
    pseudo!(0x6365_6673, "ceph-debugfs"),
    (0x6969, FsClass::Network("nfs")),
    (0x517b, FsClass::Network("smb")),
    (0xff53_4d42, FsClass::Network("cifs")),
    (0xfe53_4d42, FsClass::Network("smb2")),
    (0x00c3_6400, FsClass::Network("ceph")),
    (0x5346_414f, FsClass::Network("afs")),
    (0x0102_1997, FsClass::Network("9p")),
    (0x7375_7245, FsClass::Network("coda")),
    (0x564c, FsClass::Network("ncp")),
    (0x0bd0_0bd0, FsClass::Network("lustre")),
    (FUSE_MAGIC, FsClass::Network("fuse")),
];

const TMPFS_MAGIC: u32 = 0x0102_1994;
const FUSE_MAGIC: u32 = 0x6573_5546;

/// The class of a file system by its magic number alone.
fn by_magic(magic: u32) -> FsClass {
    MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map_or(FsClass::Ordinary, |(_, c)| *c)
}

/// `f_type` of the file system holding `path` (Linux's magic numbers).
#[cfg(target_os = "linux")]
pub fn statfs_type(path: &Path) -> io::Result<u32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st` is a buffer of the
    // size `statfs` writes; it is read only when the call succeeded.
    let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `statfs` returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // `f_type` is a signed word on some targets: the magic numbers are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u32)
}

/// The mount type `/proc/self/mountinfo` gives for device `dev` (`devtmpfs`, `fuse.sshfs`).
#[cfg(target_os = "linux")]
fn mount_type(dev: u64) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = format!("{}:{}", libc::major(dev), libc::minor(dev));
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (left.split(' ').nth(2)? == want).then(|| right.split(' ').next().map(str::to_string))?
    })
}

/// A mount point as `/proc/self/mountinfo` spells it: space, tab, newline and backslash are
/// octal escapes (`\040`).
fn unescape_mount_point(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// The mount points in `mountinfo` (its text) strictly below `dir` (an absolute path without
/// symlinks), each once, outermost first.
fn mount_points_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|f| hashsweep_core::platform::path_from_vec(unescape_mount_point(f)))
        .filter(|m| m != dir && m.starts_with(dir))
        .collect();
    out.sort_by_key(|m| (m.components().count(), m.clone()));
    out.dedup();
    out
}

/// The mount points strictly below directory `dir`, spelled as `dir` joined with the rest,
/// outermost first: what a walk that does not enter `dir` would miss.
#[cfg(target_os = "linux")]
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let (Ok(real), Ok(text)) = (
        std::fs::canonicalize(dir),
        std::fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return Vec::new();
    };
    mount_points_below(&text, &real)
        .into_iter()
        .filter_map(|m| Some(dir.join(m.strip_prefix(&real).ok()?)))
        .collect()
}

/// Elsewhere no file system is pseudo, so nothing is pruned and nothing is below one.
#[cfg(not(target_os = "linux"))]
pub fn mounts_below(_: &Path) -> Vec<PathBuf> {
    Vec::new()
}

/// Elsewhere the magic numbers mean other things: every file system is walked.
#[cfg(not(target_os = "linux"))]
fn classify(_: &Path, _: u64) -> FsClass {
    FsClass::Ordinary
}

/// The class of the file system holding `path` (on device `dev`).
#[cfg(target_os = "linux")]
fn classify(path: &Path, dev: u64) -> FsClass {
    let Ok(magic) = statfs_type(path) else {
        return FsClass::Ordinary;
    };
    match magic {
        // tmpfs and devtmpfs share a magic number; /dev/shm (tmpfs) is walked, /dev is not.
        TMPFS_MAGIC if mount_type(dev).as_deref() == Some("devtmpfs") => FsClass::Pseudo {
            name: "devtmpfs",
            reason: "pseudo file system (devtmpfs)",
        },
        FUSE_MAGIC => match mount_type(dev) {
            Some(t) if t.contains("sshfs") => FsClass::Network("sshfs"),
            Some(t) if t.contains("s3fs") => FsClass::Network("s3fs"),
            Some(t) if t.contains("rclone") => FsClass::Network("rclone"),
            _ => FsClass::Network("fuse"),
        },
        m => by_magic(m),
    }
}

/// The class of each device the walk met, asked of `statfs` once per device, and the network
/// mounts crossed (the first directory seen on each: the mount point).
#[derive(Debug, Default)]
pub struct FsTypes {
    by_dev: Mutex<HashMap<u64, FsClass>>,
    network: Mutex<Vec<(u64, PathBuf, &'static str)>>,
}

impl FsTypes {
    /// The class of the file system of `path`, a directory (or file) on device `dev`.
    pub fn class(&self, path: &Path, dev: u64) -> FsClass {
        if let Some(c) = lock(&self.by_dev).get(&dev) {
            if let FsClass::Network(name) = c {
                self.note_network(dev, path, name);
            }
            return *c;
        }
        let c = classify(path, dev);
        lock(&self.by_dev).insert(dev, c);
        if let FsClass::Network(name) = c {
            self.note_network(dev, path, name);
        }
        c
    }

    /// Device `dev` already known to be of `class` (what `statfs` would say; for tests of
    /// file systems the test machine does not have).
    #[cfg(test)]
    pub fn known(dev: u64, class: FsClass) -> FsTypes {
        let fs = FsTypes::default();
        lock(&fs.by_dev).insert(dev, class);
        fs
    }

    fn note_network(&self, dev: u64, path: &Path, name: &'static str) {
        let mut n = lock(&self.network);
        if !n.iter().any(|(d, ..)| *d == dev) {
            n.push((dev, path.to_path_buf(), name));
        }
    }

    /// The network mounts crossed, as `PATH (TYPE)`, in the order met.
    pub fn network_mounts(&self) -> Vec<String> {
        lock(&self.network)
            .iter()
            .map(|(_, p, name)| format!("{} ({name})", p.display()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Linux only: /proc and statfs's magic numbers.
    #[cfg(target_os = "linux")]
    #[test]
    fn magic_numbers_name_pseudo_and_network_file_systems() {
        assert_eq!(
            by_magic(0x9fa0),
            FsClass::Pseudo {
                name: "proc",
                reason: "pseudo file system (proc)"
            }
        );
        assert_eq!(by_magic(0x6969), FsClass::Network("nfs"));
        // ext4 and tmpfs are walked.
        assert_eq!(by_magic(0xef53), FsClass::Ordinary);
        assert_eq!(by_magic(TMPFS_MAGIC), FsClass::Ordinary);
        // /proc is proc on any Linux machine the tests run on.
        let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/proc").unwrap());
        assert!(matches!(
            FsTypes::default().class(Path::new("/proc"), dev),
            FsClass::Pseudo { name: "proc", .. }
        ));
    }

    #[test]
    fn mount_points_below_a_directory_are_read_from_mountinfo() {
        let info = "\
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
31 24 0:28 / /dev/my\\040disk rw - ext4 /dev/sdb1 rw
32 27 0:29 / /devices rw - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
";
        assert_eq!(
            mount_points_below(info, Path::new("/dev")),
            ["/dev/my disk", "/dev/pts", "/dev/shm"].map(PathBuf::from)
        );
        assert_eq!(unescape_mount_point("a\\011b\\134c\\9"), b"a\tb\\c\\9");
        assert!(mount_points_below(info, Path::new("/dev/shm")).is_empty());
    }
}
