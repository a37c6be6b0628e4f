//! The operating system's seams, one place per fact: how a name is bytes, a file's identity
//! and times ([`FileMeta`]), how a file is opened for hashing, reads at an offset, the kinds of
//! special files, the host name, and how an I/O error reads in a report ([`describe_io`]: a
//! Windows sharing violation is "locked"). The rest of hashsweep calls these and holds no
//! `cfg(unix)`/`cfg(windows)` of its own for them.
//!
//! Names as bytes are [`std::ffi::OsStr::as_encoded_bytes`] everywhere: on Unix a name's own
//! bytes; on Windows WTF-8 (UTF-8, with an unpaired UTF-16 surrogate written as its 3-byte
//! sequence `ED A0..BF 80..BF`). [`path_from_bytes`] is the way back.

use std::borrow::Cow;
use std::fs::{File, FileType, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use crate::file::{FileId, FileMeta, SpecialKind};

/// The path whose `as_encoded_bytes` are `bytes`. On Windows, bytes that are not WTF-8 become
/// U+FFFD (they cannot name a file there).
pub fn path_from_bytes(bytes: &[u8]) -> Cow<'_, Path> {
    imp::path_from_bytes(bytes)
}

/// [`path_from_bytes`] for owned bytes.
pub fn path_from_vec(bytes: Vec<u8>) -> PathBuf {
    imp::path_from_vec(bytes)
}

/// Identity and times of what `path` names (following a final symlink when `follow`), with its
/// metadata: one `stat` on Unix; on Windows the file is opened without read access (so a file
/// locked by another process is no obstacle) to ask its handle.
pub fn stat_path(path: &Path, follow: bool) -> io::Result<(Metadata, FileMeta)> {
    imp::stat_path(path, follow)
}

/// Identity and times of an open file whose metadata is `m`.
pub fn meta_of_file(file: &File, m: &Metadata) -> io::Result<FileMeta> {
    imp::meta_of_file(file, m)
}

/// The identity of what `path` names (following symlinks).
pub fn file_id(path: &Path) -> io::Result<FileId> {
    stat_path(path, true).map(|(_, m)| m.id())
}

/// How many names the open file has (hard links).
pub fn link_count(file: &File, m: &Metadata) -> io::Result<u64> {
    imp::link_count(file, m)
}

/// The last modification time in nanoseconds since 1970, as [`FileMeta::mtime_ns`] has it.
pub fn mtime_ns(m: &Metadata) -> i64 {
    imp::mtime_ns(m)
}

/// The id of the device (Unix) a file is on, for the file system classes of `scan::fstype`
/// (Linux only; 0 elsewhere).
pub fn device(m: &Metadata) -> u64 {
    imp::device(m)
}

/// What identifies one version of an open file (size, modification and change times, inode):
/// the stamp of an on-disk hash-set index.
pub fn stamp(file: &File, m: &Metadata) -> [u64; 6] {
    imp::stamp(file, m)
}

/// Open read-only for hashing: without following a final symlink (or reparse point) unless
/// `follow`, without blocking on a FIFO that replaced the file and without updating the
/// access time where the OS allows it (Unix); sharing read, write and delete with other
/// processes (Windows).
pub fn open_for_hashing(path: &Path, follow: bool) -> io::Result<File> {
    imp::open_for_hashing(path, follow)
}

/// Whether an open or a read failed because another process holds the file without sharing
/// it or has locked the range (Windows' `ERROR_SHARING_VIOLATION`, `ERROR_LOCK_VIOLATION`);
/// never on Unix, where locks are advisory.
pub fn is_locked(e: &io::Error) -> bool {
    imp::is_locked(e)
}

/// What a file another process holds open without sharing (or has locked a range of) is, in a
/// report: Windows' sharing and lock violations.
pub const LOCKED: &str = "locked by another process";

/// A short human description of an I/O error, without Rust's "(os error N)" noise.
pub fn describe_io(e: &io::Error) -> String {
    if is_locked(e) {
        return LOCKED.to_string();
    }
    match e.raw_os_error() {
        Some(code) => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => format!("{s} (errno {code})"),
            }
        }
        None => e.to_string(),
    }
}

/// Read at `offset` without moving the file's cursor.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    imp::read_at(file, buf, offset)
}

/// The Unix special file kinds (FIFO, socket, device); `None` for everything else.
pub fn device_kind(ft: FileType) -> Option<SpecialKind> {
    imp::device_kind(ft)
}

/// A named data stream of a file (an NTFS alternate data stream): its name, without the
/// leading `:` and the `:$DATA` type, as UTF-16, and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedStream {
    pub name: Vec<u16>,
    pub size: u64,
}

impl NamedStream {
    /// The name for messages (lossy where it is not valid UTF-16).
    pub fn shown(&self) -> String {
        String::from_utf16_lossy(&self.name)
    }
}

/// The named data streams of an open file (Windows: `GetFileInformationByHandleEx` with
/// `FileStreamInfo` on the handle already open, no second open); none where the file system
/// has no streams (FAT, Wine's) and on Unix, which has no such thing.
pub fn named_streams(file: &File) -> io::Result<Vec<NamedStream>> {
    imp::named_streams(file)
}

/// The path that opens `stream` of the file at `path`: `path:name`. A bare one-letter name
/// gets `.` before it: `a:name` would be drive A:.
pub fn stream_path(path: &Path, stream: &NamedStream) -> PathBuf {
    let bare = path.parent().is_some_and(|p| p.as_os_str().is_empty());
    let mut s = if bare {
        Path::new(".").join(path).into_os_string()
    } else {
        path.as_os_str().to_owned()
    };
    s.push(":");
    s.push(imp::os_from_wide(&stream.name));
    PathBuf::from(s)
}

/// The named streams in a list of `FILE_STREAM_INFO` entries as Windows fills it: each holds
/// `NextEntryOffset` (u32, 0 on the last), `StreamNameLength` (u32, in bytes), `StreamSize`
/// (i64), `StreamAllocationSize` (i64), then the name in UTF-16 (`:name:$DATA`, not
/// NUL-terminated). The unnamed stream (`::$DATA`) is the file's own content and is left out;
/// so is an entry that does not fit the buffer.
#[cfg_attr(not(windows), allow(dead_code))] // Windows fills such lists; tests build them anywhere.
fn parse_stream_info(buf: &[u8]) -> Vec<NamedStream> {
    const HEADER: usize = 24;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    while let (Some(next), Some(len)) = (u32_at(at), u32_at(at + 4)) {
        let Some(size) = buf
            .get(at + 8..at + 16)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
        else {
            break;
        };
        let start = at + HEADER;
        let Some(raw) = buf.get(start..start + len as usize) else {
            break;
        };
        let wide: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let colon = u16::from(b':');
        let data_suffix: Vec<u16> = ":$DATA".encode_utf16().collect();
        if let Some(name) = wide
            .strip_prefix(&[colon])
            .and_then(|w| w.strip_suffix(data_suffix.as_slice()))
            && !name.is_empty()
        {
            out.push(NamedStream {
                name: name.to_vec(),
                size: u64::try_from(size).unwrap_or(0),
            });
        }
        if next == 0 {
            break;
        }
        at += next as usize;
    }
    out
}

/// Whether this process runs as the superuser (Unix); `false` on Windows.
pub fn is_superuser() -> bool {
    imp::is_superuser()
}

/// This machine's host name, lossy UTF-8; `None` if it cannot be read.
pub fn host_name() -> Option<String> {
    imp::host_name()
}

#[cfg(unix)]
mod imp {
    use std::borrow::Cow;
    use std::ffi::{OsStr, OsString};
    use std::fs::{File, FileType, Metadata};
    use std::io;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use crate::file::{FileMeta, SpecialKind, nanos};

    pub fn path_from_bytes(bytes: &[u8]) -> Cow<'_, Path> {
        Cow::Borrowed(Path::new(OsStr::from_bytes(bytes)))
    }

    pub fn path_from_vec(bytes: Vec<u8>) -> PathBuf {
        PathBuf::from(OsString::from_vec(bytes))
    }

    fn meta(m: &Metadata) -> FileMeta {
        FileMeta {
            dev: m.dev(),
            ino: m.ino(),
            ino_hi: 0,
            mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
            ctime_ns: nanos(m.ctime(), m.ctime_nsec()),
        }
    }

    pub fn stat_path(path: &Path, follow: bool) -> io::Result<(Metadata, FileMeta)> {
        let m = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        }?;
        let fm = meta(&m);
        Ok((m, fm))
    }

    pub fn meta_of_file(_: &File, m: &Metadata) -> io::Result<FileMeta> {
        Ok(meta(m))
    }

    pub fn link_count(_: &File, m: &Metadata) -> io::Result<u64> {
        Ok(m.nlink())
    }

    pub fn mtime_ns(m: &Metadata) -> i64 {
        nanos(m.mtime(), m.mtime_nsec())
    }

    pub fn device(m: &Metadata) -> u64 {
        m.dev()
    }

    pub fn stamp(_: &File, m: &Metadata) -> [u64; 6] {
        [
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
            m.ino(),
        ]
    }

    pub fn open_for_hashing(path: &Path, follow: bool) -> io::Result<File> {
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        let open = |extra: i32| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags | extra)
                .open(path)
        };
        // O_NOATIME is Linux's; macOS and the BSDs have no such flag (noatime is a mount
        // option).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        match open(libc::O_NOATIME) {
            // O_NOATIME is refused for files the caller does not own (unless privileged).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0),
            other => other,
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        open(0)
    }

    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    pub fn is_locked(_: &io::Error) -> bool {
        false
    }

    pub fn device_kind(ft: FileType) -> Option<SpecialKind> {
        if ft.is_fifo() {
            Some(SpecialKind::Fifo)
        } else if ft.is_socket() {
            Some(SpecialKind::Socket)
        } else if ft.is_block_device() {
            Some(SpecialKind::BlockDevice)
        } else if ft.is_char_device() {
            Some(SpecialKind::CharDevice)
        } else {
            None
        }
    }

    pub fn is_superuser() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    pub fn named_streams(_: &File) -> io::Result<Vec<super::NamedStream>> {
        Ok(Vec::new())
    }

    pub fn os_from_wide(wide: &[u16]) -> OsString {
        OsString::from(String::from_utf16_lossy(wide))
    }

    pub fn host_name() -> Option<String> {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is writable for its whole length; gethostname writes at most that.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..len]).into_owned();
        (!name.is_empty()).then_some(name)
    }
}

#[cfg(windows)]
mod imp {
    use std::borrow::Cow;
    use std::ffi::{OsStr, OsString};
    use std::fs::{File, FileType, Metadata};
    use std::io::{self, Seek, SeekFrom};
    use std::os::windows::ffi::OsStringExt;
    use std::os::windows::fs::{FileExt, MetadataExt, OpenOptionsExt};
    use std::os::windows::io::AsRawHandle;
    use std::path::{Path, PathBuf};

    use windows_sys::Win32::Foundation::{FILETIME, GENERIC_READ};
    use windows_sys::Win32::Storage::FileSystem::{
        FILE_BASIC_INFO, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT, FILE_ID_INFO,
        FILE_INFO_BY_HANDLE_CLASS, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
        FILE_STANDARD_INFO, FILE_WRITE_ATTRIBUTES, FileBasicInfo, FileIdInfo, FileStandardInfo,
        GetFileInformationByHandleEx, SetFileTime,
    };

    use crate::file::{FileMeta, SpecialKind};

    /// 100 ns intervals from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
    const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;

    /// A FILETIME-like count (100 ns since 1601) as nanoseconds since 1970, saturating.
    fn filetime_ns(t: i64) -> i64 {
        t.saturating_sub(UNIX_EPOCH_AS_FILETIME).saturating_mul(100)
    }

    /// Decode WTF-8; what is not WTF-8 becomes U+FFFD.
    fn wtf8_to_wide(bytes: &[u8]) -> Vec<u16> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            let (good, err) = match std::str::from_utf8(rest) {
                Ok(s) => (s, None),
                Err(e) => {
                    // The prefix up to `valid_up_to` is valid UTF-8 by definition.
                    let s = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                    (s, Some(e))
                }
            };
            out.extend(good.encode_utf16());
            rest = &rest[good.len()..];
            let Some(e) = err else { break };
            match *rest {
                [0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF, ..] => {
                    out.push(0xD000 | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F));
                    rest = &rest[3..];
                }
                _ => {
                    out.push(0xFFFD);
                    rest = &rest[e.error_len().unwrap_or(rest.len()).min(rest.len())..];
                }
            }
        }
        out
    }

    pub fn path_from_bytes(bytes: &[u8]) -> Cow<'_, Path> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Cow::Borrowed(Path::new(s)),
            Err(_) => Cow::Owned(path_from_vec(bytes.to_vec())),
        }
    }

    pub fn path_from_vec(bytes: Vec<u8>) -> PathBuf {
        match String::from_utf8(bytes) {
            Ok(s) => PathBuf::from(s),
            Err(e) => PathBuf::from(OsString::from_wide(&wtf8_to_wide(e.as_bytes()))),
        }
    }

    /// One `GetFileInformationByHandleEx` query into a `T`.
    fn query<T>(file: &File, class: FILE_INFO_BY_HANDLE_CLASS) -> io::Result<T> {
        let mut out = std::mem::MaybeUninit::<T>::uninit();
        let size = u32::try_from(size_of::<T>()).unwrap_or(u32::MAX);
        // SAFETY: the handle is open for the life of `file`; `out` is a writable buffer of
        // `size` bytes, of the type the class fills; it is read only when the call succeeded.
        let ok = unsafe {
            GetFileInformationByHandleEx(file.as_raw_handle(), class, out.as_mut_ptr().cast(), size)
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the call succeeded, so it filled `out`.
        Ok(unsafe { out.assume_init() })
    }

    pub fn meta_of_file(file: &File, _: &Metadata) -> io::Result<FileMeta> {
        let id: FILE_ID_INFO = query(file, FileIdInfo)?;
        let basic: FILE_BASIC_INFO = query(file, FileBasicInfo)?;
        let raw = u128::from_le_bytes(id.FileId.Identifier);
        // NTFS ids fit 64 bits (the high half is 0); ReFS's use all 128.
        Ok(FileMeta {
            dev: id.VolumeSerialNumber,
            ino: raw as u64,
            ino_hi: (raw >> 64) as u64,
            mtime_ns: filetime_ns(basic.LastWriteTime),
            ctime_ns: filetime_ns(basic.ChangeTime),
        })
    }

    /// Open without read access (attributes only), so that sharing modes do not matter.
    fn open_attributes(path: &Path, follow: bool) -> io::Result<File> {
        let mut flags = FILE_FLAG_BACKUP_SEMANTICS;
        if !follow {
            flags |= FILE_FLAG_OPEN_REPARSE_POINT;
        }
        std::fs::OpenOptions::new()
            .access_mode(0)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            .custom_flags(flags)
            .open(path)
    }

    pub fn stat_path(path: &Path, follow: bool) -> io::Result<(Metadata, FileMeta)> {
        let file = open_attributes(path, follow)?;
        let m = file.metadata()?;
        let fm = meta_of_file(&file, &m)?;
        Ok((m, fm))
    }

    pub fn link_count(file: &File, _: &Metadata) -> io::Result<u64> {
        let std: FILE_STANDARD_INFO = query(file, FileStandardInfo)?;
        Ok(u64::from(std.NumberOfLinks))
    }

    pub fn mtime_ns(m: &Metadata) -> i64 {
        filetime_ns(m.last_write_time() as i64)
    }

    pub fn device(_: &Metadata) -> u64 {
        0
    }

    pub fn stamp(file: &File, m: &Metadata) -> [u64; 6] {
        // Without the handle's answer (it does not fail on an open file) the times alone.
        let fm = meta_of_file(file, m).unwrap_or(FileMeta {
            mtime_ns: mtime_ns(m),
            ..FileMeta::default()
        });
        [
            m.file_size(),
            fm.mtime_ns as u64,
            0,
            fm.ctime_ns as u64,
            0,
            fm.ino ^ fm.ino_hi,
        ]
    }

    pub fn open_for_hashing(path: &Path, follow: bool) -> io::Result<File> {
        let mut flags = FILE_FLAG_BACKUP_SEMANTICS;
        if !follow {
            flags |= FILE_FLAG_OPEN_REPARSE_POINT;
        }
        let open = |access: u32| {
            std::fs::OpenOptions::new()
                .access_mode(access)
                .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
                .custom_flags(flags)
                .open(path)
        };
        // Windows' O_NOATIME: a handle that may write attributes can tell the system to leave
        // the access time alone. Where that right is refused, the file is read anyway.
        match open(GENERIC_READ | FILE_WRITE_ATTRIBUTES) {
            Ok(f) => {
                let keep = FILETIME {
                    dwLowDateTime: u32::MAX,
                    dwHighDateTime: u32::MAX,
                };
                // SAFETY: the handle is open for the life of `f`; `keep` outlives the call and
                // the other times are null (left alone). A failure only means the access time
                // may be updated.
                let _ = unsafe {
                    SetFileTime(f.as_raw_handle(), std::ptr::null(), &keep, std::ptr::null())
                };
                Ok(f)
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => open(GENERIC_READ),
            Err(e) => Err(e),
        }
    }

    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // `seek_read` moves the cursor on Windows: put it back.
        let mut f = file;
        let pos = f.stream_position()?;
        let n = file.seek_read(buf, offset);
        f.seek(SeekFrom::Start(pos))?;
        n
    }

    pub fn device_kind(_: FileType) -> Option<SpecialKind> {
        None
    }

    pub fn is_locked(e: &io::Error) -> bool {
        use windows_sys::Win32::Foundation::{ERROR_LOCK_VIOLATION, ERROR_SHARING_VIOLATION};
        matches!(e.raw_os_error(), Some(c) if c == ERROR_SHARING_VIOLATION as i32 || c == ERROR_LOCK_VIOLATION as i32)
    }

    pub fn is_superuser() -> bool {
        false
    }

    pub fn named_streams(file: &File) -> io::Result<Vec<super::NamedStream>> {
        use windows_sys::Win32::Foundation::{
            ERROR_HANDLE_EOF, ERROR_INVALID_FUNCTION, ERROR_INVALID_PARAMETER, ERROR_MORE_DATA,
            ERROR_NOT_SUPPORTED,
        };
        use windows_sys::Win32::Storage::FileSystem::FileStreamInfo;
        /// Past this, a file's list of streams is not believed (each entry is a few dozen
        /// bytes: this is over a million streams).
        const MAX_LIST: usize = 64 << 20;
        // u64s: the entries hold 64-bit fields and must be 8-byte aligned.
        let mut buf = vec![0u64; 1024];
        loop {
            let bytes = buf.len() * 8;
            // SAFETY: the handle is open for the life of `file`; `buf` is writable for `bytes`.
            let ok = unsafe {
                GetFileInformationByHandleEx(
                    file.as_raw_handle(),
                    FileStreamInfo,
                    buf.as_mut_ptr().cast(),
                    u32::try_from(bytes).unwrap_or(u32::MAX),
                )
            };
            if ok != 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error().and_then(|c| u32::try_from(c).ok()) {
                Some(ERROR_MORE_DATA) if bytes < MAX_LIST => buf.resize(buf.len() * 4, 0),
                // No streams to list: a file system without them (FAT, some SMB servers), or
                // Wine's.
                Some(
                    ERROR_HANDLE_EOF
                    | ERROR_INVALID_PARAMETER
                    | ERROR_INVALID_FUNCTION
                    | ERROR_NOT_SUPPORTED,
                ) => {
                    return Ok(Vec::new());
                }
                _ => return Err(e),
            }
        }
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_le_bytes()).collect();
        Ok(super::parse_stream_info(&bytes))
    }

    pub fn os_from_wide(wide: &[u16]) -> OsString {
        OsString::from_wide(wide)
    }

    pub fn host_name() -> Option<String> {
        use windows_sys::Win32::System::SystemInformation::{
            ComputerNameDnsHostname, GetComputerNameExW,
        };
        let mut buf = [0u16; 256];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` is writable for `len` UTF-16 units, and the call writes at most that
        // many, setting `len` to the count written (without the NUL).
        let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut len) };
        if ok == 0 {
            return None;
        }
        let name = OsString::from_wide(&buf[..(len as usize).min(buf.len())]);
        let name = OsStr::new(&name).to_string_lossy().into_owned();
        (!name.is_empty()).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let p = Path::new("dir/caf\u{e9}");
        let bytes = p.as_os_str().as_encoded_bytes();
        assert_eq!(&*path_from_bytes(bytes), p);
        assert_eq!(path_from_vec(bytes.to_vec()), p);
    }

    /// One `FILE_STREAM_INFO` entry as Windows writes it, padded to 8 bytes; `last`: no next.
    fn stream_entry(name: &str, size: i64, last: bool) -> Vec<u8> {
        let wide: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let len = (24 + wide.len()).next_multiple_of(8);
        let mut e = Vec::with_capacity(len);
        e.extend(
            u32::try_from(if last { 0 } else { len })
                .unwrap()
                .to_le_bytes(),
        );
        e.extend(u32::try_from(wide.len()).unwrap().to_le_bytes());
        e.extend(size.to_le_bytes());
        e.extend(((size + 4095) / 4096 * 4096).to_le_bytes());
        e.extend(&wide);
        e.resize(len, 0);
        e
    }

    #[test]
    fn stream_lists_give_the_named_streams_without_the_files_own() {
        let mut buf = stream_entry("::$DATA", 1234, false);
        buf.extend(stream_entry(":Zone.Identifier:$DATA", 26, false));
        buf.extend(stream_entry(":caf\u{e9} payload:$DATA", 9, true));
        let got = parse_stream_info(&buf);
        let names: Vec<(String, u64)> = got.iter().map(|s| (s.shown(), s.size)).collect();
        assert_eq!(
            names,
            [
                ("Zone.Identifier".to_string(), 26),
                ("caf\u{e9} payload".to_string(), 9)
            ]
        );
        assert_eq!(
            stream_path(Path::new("dir/f.txt"), &got[0]),
            Path::new("dir/f.txt:Zone.Identifier")
        );
        // Not drive A: (built by hand: a join with "a:..." would itself read it as a drive).
        let mut bare = Path::new(".").join("a").into_os_string();
        bare.push(":Zone.Identifier");
        assert_eq!(stream_path(Path::new("a"), &got[0]).as_os_str(), bare);
        // An entry cut short by the buffer, or an empty list, gives what fits.
        assert_eq!(parse_stream_info(&buf[..buf.len() - 30]).len(), 1);
        assert!(parse_stream_info(&[]).is_empty());
        assert!(parse_stream_info(&stream_entry("::$DATA", 5, true)).is_empty());
    }

    #[cfg(windows)]
    #[test]
    fn unpaired_surrogate_round_trips_as_wtf8() {
        use std::ffi::OsString;
        use std::os::windows::ffi::OsStringExt;
        let name = OsString::from_wide(&[u16::from(b'a'), 0xD800, u16::from(b'b')]);
        let bytes = name.as_encoded_bytes();
        assert_eq!(bytes, b"a\xED\xA0\x80b");
        assert_eq!(path_from_bytes(bytes).as_os_str(), name.as_os_str());
        // What is not WTF-8 cannot name a file: it becomes U+FFFD.
        assert_eq!(
            path_from_bytes(b"a\xFFb").as_os_str(),
            std::ffi::OsStr::new("a\u{FFFD}b")
        );
    }
}
