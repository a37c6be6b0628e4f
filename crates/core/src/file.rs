//! What the operating system says about a file, in the project's terms: its identity and
//! timestamps as `fstat` gave them ([`FileMeta`], the digest cache's key and the hard-link
//! detector's), what a file is for
//! the lookup budget ([`FileKind`]), and the kinds of entries that are not read
//! ([`SpecialKind`], [`SkipRule`]), shared by the walk, the cache and the report.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Identity and timestamps of a file as seen by `fstat` when it was opened (on Windows: the
/// volume serial number, the file id and the last-write and change times of its handle; see
/// `platform::meta_of_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileMeta {
    pub dev: u64,
    /// The inode number; on Windows the low 64 bits of the 128-bit file id.
    pub ino: u64,
    /// The high 64 bits of a Windows file id (non-zero on ReFS); 0 on Unix.
    pub ino_hi: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileMeta {
    /// The identity skip rules and the `-L` loop check compare: the high half of a 128-bit
    /// file id folded into the low one.
    pub fn id(&self) -> FileId {
        (self.dev, self.ino ^ self.ino_hi)
    }
}

/// Seconds and nanoseconds as one i64 of nanoseconds, saturating: a timestamp past 2262 (any
/// user can set one) must not overflow.
pub fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// What a file is, as far as the lookup budget cares: decided from the first bytes of its first
/// read (magic numbers) and, for scripts and macro-enabled documents that have none, its name.
/// Costs no extra read; kept in the digest cache so a file served from there keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum FileKind {
    /// PE (`MZ`), ELF, Mach-O (thin or fat): programs and libraries.
    Executable = 0,
    /// `#!` or a script extension (`.ps1`, `.vbs`, `.js`, `.bat`, ...).
    Script = 1,
    /// Documents that carry macros or scripts: OLE2 (old Office, MSI), PDF, RTF, and the
    /// macro-enabled Office formats (`.docm`, `.xlsm`, ...).
    Document = 2,
    /// zip, gzip, xz, zstd, bzip2, 7z, rar, cab, tar.
    Archive = 3,
    /// Anything else (data, media, text).
    #[default]
    Other = 4,
}

/// Extensions of scripts (compared lower-case).
const SCRIPT_EXTENSIONS: &[&str] = &[
    "ps1",
    "psm1",
    "psd1",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "hta",
    "bat",
    "cmd",
    "sh",
    "bash",
    "py",
    "pl",
    "rb",
    "php",
    "lnk",
    "scr",
    "applescript",
    "command",
];

/// Extensions of macro-enabled Office documents (zip inside, so no magic of their own).
const MACRO_EXTENSIONS: &[&str] = &[
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppam",
];

impl FileKind {
    /// Classify a file from its first bytes (as many as the first read gave) and its name.
    pub fn sniff(head: &[u8], path: &Path) -> FileKind {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let ext = ext.as_deref();
        let starts = |m: &[u8]| head.starts_with(m);
        let executable = starts(b"MZ")
            || starts(b"\x7fELF")
            || [
                [0xfe, 0xed, 0xfa, 0xce],
                [0xfe, 0xed, 0xfa, 0xcf],
                [0xce, 0xfa, 0xed, 0xfe],
                [0xcf, 0xfa, 0xed, 0xfe],
                // Fat Mach-O; also Java class files, which are programs as well.
                [0xca, 0xfe, 0xba, 0xbe],
            ]
            .iter()
            .any(|m| starts(m));
        if executable {
            return FileKind::Executable;
        }
        if starts(b"#!") || ext.is_some_and(|e| SCRIPT_EXTENSIONS.contains(&e)) {
            return FileKind::Script;
        }
        if starts(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])
            || starts(b"%PDF-")
            || starts(b"{\\rtf")
            || ext.is_some_and(|e| MACRO_EXTENSIONS.contains(&e))
        {
            return FileKind::Document;
        }
        let tar = head.get(257..262) == Some(b"ustar");
        if tar
            || starts(b"PK\x03\x04")
            || starts(b"PK\x05\x06")
            || starts(&[0x1f, 0x8b])
            || starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
            || starts(&[0x28, 0xb5, 0x2f, 0xfd])
            || starts(b"BZh")
            || starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c])
            || starts(b"Rar!\x1a\x07")
            || starts(b"MSCF")
            || starts(b"!<arch>\n")
            || starts(&[0xed, 0xab, 0xee, 0xdb])
            || starts(b"070701")
            || starts(b"070702")
            || starts(b"070707")
        {
            return FileKind::Archive;
        }
        FileKind::Other
    }

    /// The stored form (the digest cache's `kind` column).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Back from [`FileKind::code`]; `None` for a code this version does not know.
    pub fn from_code(code: u8) -> Option<FileKind> {
        [
            FileKind::Executable,
            FileKind::Script,
            FileKind::Document,
            FileKind::Archive,
            FileKind::Other,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }
}

/// A file's identity: `(st_dev, st_ino)` (Windows: volume serial number, file id).
pub type FileId = (u64, u64);

/// Files the walk leaves unread, reporting each as `WalkEvent::Special` (in `scan::walk`) with its kind: the
/// files of one directory whose names match (the directory known by identity, so any spelling
/// of it matches: symlinks, `..`, a bind mount; the files by name, since some come and go while
/// the sweep runs, as SQLite's `-wal` and `-shm` do), and files known by identity wherever the
/// walk reaches them (another hard link, a symlink followed with `-L`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRule {
    pub dir: FileId,
    pub names: Vec<(NamePattern, SpecialKind)>,
    pub files: Vec<(FileId, SpecialKind)>,
}

/// Which names in a [`SkipRule`]'s directory are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// Exactly this name.
    Is(OsString),
    /// A name that starts with the first string and ends with the second (they may not overlap).
    Around(OsString, OsString),
}

impl NamePattern {
    pub fn matches(&self, name: &OsStr) -> bool {
        match self {
            NamePattern::Is(n) => name == n,
            NamePattern::Around(start, end) => {
                let (n, a, b) = (
                    name.as_encoded_bytes(),
                    start.as_encoded_bytes(),
                    end.as_encoded_bytes(),
                );
                n.len() >= a.len() + b.len() && n.starts_with(a) && n.ends_with(b)
            }
        }
    }
}

/// Kinds of directory entries that are listed as `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    /// A symlink while symlinks are not followed.
    Symlink,
    /// A symlink whose target does not exist (with `-L`).
    DanglingSymlink,
    /// hashsweep's own cache: the database, its journals, a copy set aside as corrupt.
    OwnCache,
    /// A hash-set index hashsweep keeps beside its cache.
    OwnIndex,
    /// The report this run writes (`-o`), or a temp file of one being written.
    OwnReport,
    /// A directory on a kernel pseudo file system, not entered (the reason names it).
    PseudoFs(&'static str),
    Other,
}

impl SpecialKind {
    pub fn reason(self) -> &'static str {
        match self {
            SpecialKind::Fifo => "FIFO (named pipe): not opened",
            SpecialKind::Socket => "socket: not opened",
            SpecialKind::BlockDevice => "block device: not opened",
            SpecialKind::CharDevice => "character device: not opened",
            SpecialKind::Symlink => "symlink: not followed (use -L to follow)",
            SpecialKind::DanglingSymlink => "dangling symlink: target does not exist",
            SpecialKind::OwnCache => "hashsweep's own cache: not read",
            SpecialKind::OwnIndex => "hashsweep's own hash-set index (beside its cache): not read",
            SpecialKind::OwnReport => "hashsweep's own report (-o): not read",
            SpecialKind::PseudoFs(reason) => reason,
            SpecialKind::Other => "not a regular file",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn kinds_from_magic_and_names() {
        let k = |head: &[u8], name: &str| FileKind::sniff(head, Path::new(name));
        assert_eq!(k(b"MZ\x90\x00", "a.dat"), FileKind::Executable);
        assert_eq!(k(b"\x7fELF\x02\x01", "ls"), FileKind::Executable);
        assert_eq!(k(&[0xcf, 0xfa, 0xed, 0xfe, 7], "x"), FileKind::Executable);
        assert_eq!(k(b"#!/bin/sh\n", "run"), FileKind::Script);
        assert_eq!(k(b"Write-Host hi", "a.PS1"), FileKind::Script);
        assert_eq!(k(b"PK\x03\x04rest", "report.docm"), FileKind::Document);
        assert_eq!(k(b"%PDF-1.7", "a.pdf"), FileKind::Document);
        assert_eq!(
            k(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1], "a.doc"),
            FileKind::Document
        );
        assert_eq!(k(b"PK\x03\x04rest", "a.zip"), FileKind::Archive);
        assert_eq!(k(&[0x1f, 0x8b, 8], "a.gz"), FileKind::Archive);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(k(&tar, "a"), FileKind::Archive);
        assert_eq!(k(b"hello", "notes.txt"), FileKind::Other);
        assert_eq!(k(b"", "empty"), FileKind::Other);
        for kind in [FileKind::Executable, FileKind::Other, FileKind::Archive] {
            assert_eq!(FileKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(FileKind::from_code(200), None);
    }
}
