//! Inside archives (`--archives`): the members of zip, tar, gzip, xz, zstd, bzip2, 7z, ar
//! (`.deb`), cpio and rpm files, found by their magic bytes (and a zip behind a
//! self-extractor's stub by its end record), hashed from the decompressed stream and returned
//! as results of their own (`outer.zip!dir/inner.exe`, nesting `a.tar.gz!b.zip!c.exe`). Tars
//! are read by [`tarball`], ar/cpio/rpm by [`packages`]; two members of one name get distinct
//! paths (`name%#2`, see `Walker::name_escaped`); containers left closed (RAR, CAB, a format
//! not chosen, an archive past the depth) say so in a note.
//!
//! A tar or a compressed stream on disk is read once: its members are decompressed from the
//! bytes read for its own digest ([`expand_stream`]). A zip or 7z needs seeking: it is opened
//! again right after its digest, while it is in the page cache ([`expand`]). Either way the
//! reads go through the run's I/O gate (`--max-io-rate`) and hashing a member holds a CPU
//! permit, as for a file.
//!
//! Nothing is written to disk and no member name is ever used to touch the file system. Memory
//! is bounded: streams go through fixed buffers; only a zip or 7z *nested inside another
//! archive* is held in memory (it needs seeking), at most `--archive-max-member` bytes each, so
//! one worker holds at most `depth × max_member` (500 MiB with the defaults, in practice the
//! size of the nested archives).
//!
//! Limits (ClamAV's defaults): bytes decompressed from one archive (every level counted), bytes
//! of one member, members of one archive, time for one archive, and a compression-ratio guard.
//! What a limit leaves unread is reported `skipped` with the reason, never clean: the member
//! itself, or `outer.zip!*` for the rest of an archive.

mod limits;
use limits::{
    Budget, Counting, Limit, Limited, Packed, ReadSeek, Scope, Stop, Tee, drain, read_up_to,
};
mod packages;
mod tarball;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub use super::hashed::{
    ArchiveOptions, DEFAULT_DEPTH, DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBER, DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_RATIO, DEFAULT_TIMEOUT, Inside,
};
use super::hashed::{FileResult, FileStatus, HashOptions, MatchBytes, Origin, Sum};
use super::io::IoGate;
use hashsweep_core::file::{FileKind, FileMeta};
use hashsweep_core::platform::describe_io;
use hashsweep_core::platform::open_for_hashing;
use hashsweep_core::platform::path_from_bytes;

use self::tarball::WalkError;
pub use hashsweep_core::archive_format::{Format, Formats, closed_format};

/// The most an xz decoder may allocate (its dictionary: `xz -9` needs 65 MiB); zstd's own
/// default cap is a 128 MiB window. A stream that needs more is an error, not read.
const DECODER_MEMORY: u64 = 128 << 20;
/// The ratio guard leaves the first MiB of any stream alone (tiny files compress absurdly).
const RATIO_FLOOR: u64 = 1 << 20;

/// The note of an archive left closed because hashsweep cannot open its format.
fn closed_note(name: &str) -> String {
    format!("its contents were not examined: --archives does not open {name} archives")
}

/// The note of an archive left closed because `--archives=` did not name its format.
fn excluded_note(f: Format) -> String {
    format!(
        "its contents were not examined: --archives= does not name {}",
        f.name()
    )
}

/// A member name as it appears after a `!`: `%` becomes `%25` and `!` becomes `%21`, so the
/// separators stay unambiguous; a name that is exactly `*` becomes `%2A` (the `*` record says
/// "the rest of this archive"). Every other byte is kept as it was, non-UTF-8 too.
pub fn escape(name: &[u8]) -> Vec<u8> {
    if name == b"*" {
        return b"%2A".to_vec();
    }
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'!' => out.extend_from_slice(b"%21"),
            _ => out.push(b),
        }
    }
    out
}

/// The format of a file that starts with `head`, when `--archives` reads it as a stream
/// (tar and the compressed streams: no seeking), so its members can be read in the same pass
/// as its own digest ([`expand_stream`]).
pub fn stream_format(head: &[u8], opts: &ArchiveOptions) -> Option<Format> {
    Format::sniff(head).filter(|f| {
        opts.depth > 0 && opts.formats.contains(*f) && !matches!(f, Format::Zip | Format::SevenZ)
    })
}

/// Read the members of the archive at `path` (`meta`) from `src`, the file's own bytes as
/// they are read for its digest (see [`stream_format`]): one read of the file for both. The
/// caller reads what is left of `src` for the digest.
#[allow(clippy::too_many_arguments)]
pub fn expand_stream(
    path: &Path,
    meta: &FileMeta,
    hash: &HashOptions,
    opts: &ArchiveOptions,
    stop: &AtomicBool,
    gate: &IoGate,
    buf: &mut [u8],
    format: Format,
    src: &mut dyn Read,
    rules: Option<&mut dyn MatchBytes>,
) -> (Inside, Vec<FileResult>) {
    let reading = Reading {
        container: path.as_os_str().as_encoded_bytes(),
        meta,
        hash,
        opts,
        stop,
        gate,
    };
    reading.levels(format, Source::Stream(src), buf, rules)
}

/// Open `path` (already hashed as a whole, with `meta`) and read its members, if it is an
/// archive in a chosen format. `None`: not one (nothing to add). Otherwise the container's
/// [`Inside`] and one result per member (and per part left unread). The file is read again
/// right after its digest, from the page cache (a zip or 7z needs seeking), through `gate`.
#[allow(clippy::too_many_arguments)]
pub fn expand(
    path: &Path,
    meta: &FileMeta,
    hash: &HashOptions,
    opts: &ArchiveOptions,
    stop: &AtomicBool,
    gate: &IoGate,
    buf: &mut [u8],
    rules: Option<&mut dyn MatchBytes>,
) -> Option<(Inside, Vec<FileResult>)> {
    if opts.depth == 0 {
        return None;
    }
    let container = path.as_os_str().as_encoded_bytes();
    // Its members cannot be read: say so on the archive and in an `archive!*` record.
    let unreadable = |why: String| {
        Some((
            Inside::Container {
                complete: false,
                note: Some(format!("its members were not read: {why}").into()),
                repeatable: false,
            },
            vec![unread(container, container, &why)],
        ))
    };
    let file = match open_for_hashing(path, hash.follow_symlinks) {
        Ok(f) => f,
        Err(e) => return unreadable(format!("cannot open it again: {}", describe_io(&e))),
    };
    let same = file
        .metadata()
        .and_then(|m| hashsweep_core::platform::meta_of_file(&file, &m))
        .is_ok_and(|m| (m.dev, m.ino, m.ino_hi) == (meta.dev, meta.ino, meta.ino_hi));
    let mut file = GatedFile {
        file: &file,
        gate,
        nowait: true,
    };
    let mut head = [0u8; 512];
    let n = match read_up_to(&mut file, &mut head).and_then(|n| file.rewind().map(|()| n)) {
        Ok(n) => n,
        Err(e) => return unreadable(format!("cannot read it again: {}", describe_io(&e))),
    };
    // Left closed: the archive keeps a note saying its contents were not examined.
    let closed = |note: String, complete: bool| {
        Some((
            Inside::Container {
                complete,
                note: Some(note.into()),
                repeatable: true,
            },
            Vec::new(),
        ))
    };
    let format = match Format::sniff(&head[..n]) {
        Some(f) if opts.formats.contains(f) => f,
        // The user's choice: said, but no reason to call the sweep incomplete.
        Some(f) => return closed(excluded_note(f), true),
        // A zip behind a self-extractor's stub (an .exe), found by its end record, as
        // 7-Zip and unzip find it.
        None if opts.formats.contains(Format::Zip) && zip_behind_stub(&mut file, &head[..n]) => {
            Format::Zip
        }
        None => return closed(closed_note(closed_format(&head[..n])?), false),
    };
    if !same {
        // Replaced between the hash and this open: its members would not be of that digest.
        return unreadable("the archive was replaced while it was read".into());
    }
    let reading = Reading {
        container,
        meta,
        hash,
        opts,
        stop,
        gate,
    };
    Some(reading.levels(format, Source::Seek(&mut file), buf, rules))
}

/// Whether an executable (`head`) ends in a zip: a self-extracting archive, whose end of
/// central directory record is in its last 64 KiB (the record, and a comment of at most
/// 65535 bytes). Leaves `file` at its start.
fn zip_behind_stub(file: &mut GatedFile<'_>, head: &[u8]) -> bool {
    if !(head.starts_with(b"MZ") || head.starts_with(b"\x7fELF")) {
        return false;
    }
    const TAIL: u64 = 22 + 65_535;
    let found = (|| -> io::Result<bool> {
        let len = file.seek(io::SeekFrom::End(0))?;
        file.seek(io::SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut tail = Vec::with_capacity(TAIL as usize);
        file.by_ref().take(TAIL).read_to_end(&mut tail)?;
        if !tail.windows(4).any(|w| w == b"PK\x05\x06") {
            return Ok(false);
        }
        // Those four bytes may be anything in a program: only a zip that opens counts (an
        // executable is never called a damaged archive).
        file.rewind()?;
        Ok(zip::unstable::read::ZipIterable::try_new(&mut *file, Default::default()).is_ok())
    })();
    file.rewind().is_ok() && found.unwrap_or(false)
}

/// The members of `data`, an archive in memory named `name`, read as a sweep reads a file on
/// disk with `opts`: as `format`, or the format its first bytes say (`None` when it is no
/// archive of those formats). For the fuzz targets and property tests: nothing touches the
/// file system.
#[doc(hidden)]
pub fn read_in_memory(
    name: &[u8],
    data: &[u8],
    format: Option<Format>,
    opts: &ArchiveOptions,
) -> Option<(Inside, Vec<FileResult>)> {
    let format = format
        .or_else(|| Format::sniff(data))
        .filter(|f| opts.depth > 0 && opts.formats.contains(*f))?;
    let meta = FileMeta::default();
    let hash = HashOptions::default();
    let stop = AtomicBool::new(false);
    let gate = IoGate::new(1, super::io::IoOptions::default());
    let mut buf = vec![0u8; 64 << 10];
    let reading = Reading {
        container: name,
        meta: &meta,
        hash: &hash,
        opts,
        stop: &stop,
        gate: &gate,
    };
    let mut cur = io::Cursor::new(data);
    let src = match format {
        Format::Zip | Format::SevenZ => Source::Seek(&mut cur),
        _ => Source::Stream(&mut cur),
    };
    Some(reading.levels(format, src, &mut buf, None))
}

/// The archive file on disk, read through the run's I/O gate (`--max-io-rate`, the adaptive
/// depth), like any file.
struct GatedFile<'f> {
    file: &'f File,
    gate: &'f IoGate,
    nowait: bool,
}

impl Read for GatedFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.gate.read(self.file, buf, &mut self.nowait)?;
        // Billed after the read, for what it read: a zip is read in many small pieces, and
        // a buffer's length says nothing of what is left.
        if n > 0 {
            self.gate.throttle(n as u64);
        }
        self.gate.tick();
        Ok(n)
    }
}

impl Seek for GatedFile<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

/// One archive on disk being read, and what for.
struct Reading<'a> {
    container: &'a [u8],
    meta: &'a FileMeta,
    hash: &'a HashOptions,
    opts: &'a ArchiveOptions,
    stop: &'a AtomicBool,
    gate: &'a IoGate,
}

impl Reading<'_> {
    /// Read every level of the archive from `src` under the limits.
    fn levels(
        &self,
        format: Format,
        src: Source<'_>,
        buf: &mut [u8],
        rules: Option<&mut dyn MatchBytes>,
    ) -> (Inside, Vec<FileResult>) {
        let (container, opts, stop) = (self.container, self.opts, self.stop);
        let budget = Budget {
            opts,
            stop,
            deadline: Instant::now() + opts.timeout,
            bytes: Cell::new(0),
            members: Cell::new(0),
            hit: RefCell::new(None),
        };
        let mut w = Walker {
            container,
            meta: *self.meta,
            hash: *self.hash,
            gate: self.gate,
            budget: &budget,
            out: Vec::new(),
            incomplete: false,
            buf,
            rules,
            seen: HashMap::new(),
            notes: HashMap::new(),
        };
        let r = w.walk(format, src, container, 1);
        let note = match r {
            Ok(()) => None,
            Err(Stop::Damaged(why)) => {
                w.incomplete = true;
                Some(format!(
                    "damaged archive ({why}): the members read before the damage are reported, \
                     the rest could not be read"
                ))
            }
            Err(Stop::MembersDamaged(why)) => {
                w.incomplete = true;
                Some(format!(
                    "damaged archive ({why}): the members that could not be read are errors, \
                     every other member was read"
                ))
            }
            Err(Stop::Limit(l)) => {
                w.incomplete = true;
                if l.scope != Scope::Interrupted {
                    w.out.push(unread(container, container, &l.why));
                }
                Some(format!("not read to the end: {}", l.why))
            }
        };
        let Walker {
            out, incomplete, ..
        } = w;
        // A reading cut by the clock or by Ctrl-C could go further next time.
        let repeatable = Instant::now() < budget.deadline && !stop.load(Ordering::Relaxed);
        (
            Inside::Container {
                complete: !incomplete,
                note: note.map(String::into_boxed_str),
                repeatable,
            },
            out,
        )
    }
}

/// An archive's bytes: seekable (the file on disk, a nested zip held in memory) or a stream.
enum Source<'s> {
    Seek(&'s mut dyn ReadSeek),
    Stream(&'s mut dyn Read),
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Seek(r) => r.read(buf),
            Source::Stream(r) => r.read(buf),
        }
    }
}

/// Reads one archive on disk, level by level.
struct Walker<'a, 'b, 'm> {
    container: &'a [u8],
    meta: FileMeta,
    hash: HashOptions,
    /// Hashing a member holds a CPU permit, as hashing a file does.
    gate: &'a IoGate,
    budget: &'b Budget<'b>,
    out: Vec<FileResult>,
    /// Something was left unread (a limit, damage, an encrypted member).
    incomplete: bool,
    buf: &'a mut [u8],
    /// `--yara`: the worker's matcher, for each member's bytes.
    rules: Option<&'m mut dyn MatchBytes>,
    /// Member paths met so far, and how many times each: a second member of the same name
    /// (a tar may carry `payload.exe` twice) is `name%#2` (see [`Walker::name`]).
    seen: HashMap<Vec<u8>, u32>,
    /// Notes of members, by path, set before their records are made.
    notes: HashMap<Vec<u8>, String>,
}

impl Walker<'_, '_, '_> {
    /// Read the archive at `prefix` (its joined path) at archive level `depth`.
    fn walk(
        &mut self,
        format: Format,
        src: Source<'_>,
        prefix: &[u8],
        depth: u32,
    ) -> Result<(), Stop> {
        match format {
            Format::Zip => match src {
                Source::Seek(r) => self.zip(r, prefix, depth),
                Source::Stream(_) => Err(Stop::Damaged("a zip needs seeking".into())),
            },
            Format::SevenZ => match src {
                Source::Seek(r) => self.sevenz(r, prefix, depth),
                Source::Stream(_) => Err(Stop::Damaged("a 7z needs seeking".into())),
            },
            Format::Tar => {
                let mut src = src;
                self.tar(&mut src, prefix, depth)
            }
            Format::Ar => {
                let mut src = src;
                let r = packages::walk_ar(&mut src, |name, data| {
                    let path = self.name(prefix, name);
                    self.member(&path, data, Packed::Unknown, depth)
                });
                self.walked(r)
            }
            Format::Cpio => {
                let mut src = src;
                self.cpio(&mut src, prefix, depth)
            }
            Format::Rpm => {
                let mut src = src;
                self.walked(packages::skip_rpm_headers(&mut src))?;
                self.payload(src, prefix, depth)
            }
            Format::Gzip | Format::Xz | Format::Zstd | Format::Bzip2 => {
                self.compressed(format, src, prefix, depth)
            }
        }
    }

    /// A compressed stream: a tar inside is read at this same level (`a.tar.gz!member`);
    /// anything else is the one member (`a.exe.gz!a.exe`).
    fn compressed(
        &mut self,
        format: Format,
        mut src: Source<'_>,
        prefix: &[u8],
        depth: u32,
    ) -> Result<(), Stop> {
        let packed = Cell::new(0u64);
        let input = Counting {
            inner: &mut src,
            n: &packed,
        };
        let decoder: Box<dyn Read + '_> = match format {
            Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Format::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    DECODER_MEMORY,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(|e| Stop::Damaged(e.to_string()))?;
                Box::new(liblzma::read::XzDecoder::new_stream(input, stream))
            }
            Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
            Format::Zstd => Box::new(
                zstd::stream::read::Decoder::new(input)
                    .map_err(|e| Stop::Damaged(describe_io(&e)))?,
            ),
            _ => return Err(Stop::Damaged("not a compressed stream".into())),
        };
        let mut stream = Limited {
            inner: decoder,
            budget: self.budget,
            scope: Scope::Stream(depth),
            read: 0,
            max: u64::MAX,
            packed: Packed::Counter(&packed),
            counted: false,
            failed: None,
        };
        let mut head = [0u8; 512];
        let r = match read_up_to(&mut stream, &mut head) {
            Err(e) => Err(self.budget.take(&e)),
            Ok(n) => {
                let mut whole = io::Cursor::new(&head[..n]).chain(&mut stream);
                match Format::sniff(&head[..n]) {
                    Some(Format::Tar) if self.budget.opts.formats.contains(Format::Tar) => {
                        self.tar(&mut whole, prefix, depth)
                    }
                    Some(Format::Cpio) if self.budget.opts.formats.contains(Format::Cpio) => {
                        self.cpio(&mut whole, prefix, depth)
                    }
                    _ => {
                        let name = inner_name(prefix);
                        let path = self.name_escaped(prefix, &name);
                        self.member(&path, &mut whole, Packed::Unknown, depth)
                    }
                }
            }
        };
        self.stream_end(r, prefix, depth)
    }

    /// A limit of this level's own stream ends this level: the rest is one `prefix!*` record.
    fn stream_end(&mut self, r: Result<(), Stop>, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        match r {
            Err(Stop::Limit(l)) if l.scope == Scope::Stream(depth) => {
                self.incomplete = true;
                self.out.push(unread(self.container, prefix, &l.why));
                Ok(())
            }
            other => other,
        }
    }

    fn tar(&mut self, src: &mut dyn Read, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        let r = tarball::walk(src, |name, data| {
            let path = self.name(prefix, name);
            self.member(&path, data, Packed::Unknown, depth)
        });
        self.walked(r)
    }

    fn cpio(&mut self, src: &mut dyn Read, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        let r = packages::walk_cpio(src, |name, data| {
            let path = self.name(prefix, name);
            self.member(&path, data, Packed::Unknown, depth)
        });
        self.walked(r)
    }

    /// An RPM's payload: a cpio, compressed or not, read at the package's level.
    fn payload(&mut self, mut src: Source<'_>, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        let mut head = [0u8; 6];
        let n = read_up_to(&mut src, &mut head).map_err(|e| self.budget.take(&e))?;
        let mut rest = io::Cursor::new(&head[..n]).chain(&mut src);
        match Format::sniff(&head[..n]) {
            Some(f @ (Format::Gzip | Format::Xz | Format::Zstd | Format::Bzip2)) => {
                self.compressed(f, Source::Stream(&mut rest), prefix, depth)
            }
            Some(Format::Cpio) => self.cpio(&mut rest, prefix, depth),
            _ => Err(Stop::Damaged(
                "an RPM payload in a format not read (not a cpio in gzip, xz, zstd or bzip2)"
                    .into(),
            )),
        }
    }

    /// What a stream walker's error means here.
    fn walked(&mut self, r: Result<(), WalkError<Stop>>) -> Result<(), Stop> {
        match r {
            Ok(()) => Ok(()),
            Err(WalkError::Member(s)) => Err(s),
            Err(WalkError::Io(e)) => Err(self.budget.take(&e)),
            Err(WalkError::Damaged(why)) => Err(Stop::Damaged(why)),
        }
    }

    /// The path of the member named `raw` (as stored) in the archive at `prefix`.
    fn name(&mut self, prefix: &[u8], raw: &[u8]) -> Vec<u8> {
        self.name_escaped(prefix, &escape(raw))
    }

    /// `prefix!name` (`name` escaped), made unique: the n-th member of one name in an
    /// archive (n > 1) is `name%#n` (a `%` in a name is always written `%25`, so `%#` is
    /// never part of one) and says so in its note. Reading the same archive again gives the
    /// same paths.
    fn name_escaped(&mut self, prefix: &[u8], name: &[u8]) -> Vec<u8> {
        let mut path = join(prefix, name);
        let n = self.seen.entry(path.clone()).or_insert(0);
        *n += 1;
        let n = *n;
        if n > 1 {
            path.extend_from_slice(format!("%#{n}").as_bytes());
            self.notes.insert(
                path.clone(),
                format!(
                    "duplicate name: member {n} of that name in this archive (its path has %#{n} \
                     added; extracting keeps only one of them)"
                ),
            );
        }
        path
    }

    /// A zip, its central directory walked one entry at a time (zip's `ZipIterable`): memory
    /// does not grow with the entries it claims, and `--archive-max-members` stops the walk.
    fn zip(&mut self, src: &mut dyn ReadSeek, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        let consumed = Cell::new(0u64);
        let src = Counting {
            inner: src,
            n: &consumed,
        };
        let mut archive = zip::unstable::read::ZipIterable::try_new(src, Default::default())
            .map_err(|e| Stop::Damaged(format!("not a readable zip: {e}")))?;
        let entries = archive
            .files()
            .map_err(|e| Stop::Damaged(format!("not a readable zip: {e}")))?;
        let mut damage = None;
        // A member that could not be read: the walk goes on.
        let mut bad_member = None;
        let mut i = 0usize;
        while let Some(entry) = entries.next() {
            i += 1;
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    // The walk of the directory cannot go on past a damaged entry.
                    damage = Some(format!("member {i}: {e}"));
                    break;
                }
            };
            if entry.is_dir() {
                continue;
            }
            let path = self.name(prefix, entry.name_raw());
            if entry.encrypted() {
                self.count()?;
                self.incomplete = true;
                self.out
                    .push(self.result(&path, None, skipped("encrypted")));
                continue;
            }
            let mut file = match entry.with_reader(entries.reader_mut(), Default::default()) {
                Ok(f) => f,
                Err(e) => {
                    self.count()?;
                    self.incomplete = true;
                    let why = format!("cannot read this member: {e}");
                    self.out
                        .push(self.result(&path, None, FileStatus::Error(why.clone())));
                    bad_member.get_or_insert(why);
                    continue;
                }
            };
            let packed = Packed::Since(&consumed, consumed.get());
            match self.member(&path, &mut file, packed, depth) {
                // One damaged member (a bad CRC) does not stop the others in a zip.
                Err(Stop::Damaged(why) | Stop::MembersDamaged(why)) => {
                    bad_member.get_or_insert(why);
                }
                other => other?,
            }
        }
        match (damage, bad_member) {
            (Some(why), _) => Err(Stop::Damaged(why)),
            (None, Some(why)) => Err(Stop::MembersDamaged(why)),
            (None, None) => Ok(()),
        }
    }

    fn sevenz(&mut self, src: &mut dyn ReadSeek, prefix: &[u8], depth: u32) -> Result<(), Stop> {
        // What the decoders take from the archive, for the ratio guard: a member's packed
        // bytes are those read while it is decompressed (in a solid block, its share).
        let consumed = Cell::new(0u64);
        let src = Counting {
            inner: src,
            n: &consumed,
        };
        let mut reader =
            match sevenz_rust2::ArchiveReader::new(src, sevenz_rust2::Password::empty()) {
                Ok(r) => r,
                // Encrypted headers: not even the names can be read.
                Err(sevenz_rust2::Error::PasswordRequired) => {
                    self.incomplete = true;
                    self.out.push(unread(self.container, prefix, "encrypted"));
                    return Ok(());
                }
                Err(e) => return Err(Stop::Damaged(format!("not a readable 7z: {e}"))),
            };
        let mut stopped: Option<Stop> = None;
        let r = reader.for_each_entries(|entry, data| {
            // An empty file has no stream, but is a member like an empty zip or tar member.
            if entry.is_directory() || entry.is_anti_item() {
                return Ok(true);
            }
            let path = self.name(prefix, entry.name().as_bytes());
            let packed = Packed::Since(&consumed, consumed.get());
            match self.member(&path, data, packed, depth) {
                Ok(()) => Ok(true),
                Err(s) => {
                    stopped = Some(s);
                    Ok(false)
                }
            }
        });
        if let Some(s) = stopped {
            return Err(s);
        }
        match r {
            Ok(()) => Ok(()),
            Err(sevenz_rust2::Error::PasswordRequired) => {
                self.incomplete = true;
                self.out.push(unread(self.container, prefix, "encrypted"));
                Ok(())
            }
            // Built without AES, the reader names the cipher as a method it lacks.
            Err(sevenz_rust2::Error::UnsupportedCompressionMethod(m)) if m.contains("AES") => {
                self.incomplete = true;
                self.out.push(unread(self.container, prefix, "encrypted"));
                Ok(())
            }
            // Not damage: a method this reader lacks (PPMd, BCJ2, ...). What it holds is not
            // read, and says so.
            Err(sevenz_rust2::Error::UnsupportedCompressionMethod(m)) => {
                self.incomplete = true;
                let why = format!("compressed with {m}, a method not supported: not read");
                self.out.push(unread(self.container, prefix, &why));
                Ok(())
            }
            Err(e) => Err(Stop::Damaged(e.to_string())),
        }
    }

    /// One more member; past `--archive-max-members` the rest of the archive is left.
    fn count(&mut self) -> Result<(), Stop> {
        let b = self.budget;
        b.members.set(b.members.get() + 1);
        if b.members.get() > b.opts.max_members {
            return Err(Stop::Limit(Limit {
                scope: Scope::Archive,
                why: format!(
                    "more than --archive-max-members ({}) members: the rest were not read",
                    b.opts.max_members
                ),
            }));
        }
        Ok(())
    }

    /// Hash one member from `data`; open it as an archive when it is one and depth allows.
    fn member(
        &mut self,
        path: &[u8],
        data: &mut dyn Read,
        packed: Packed<'_>,
        depth: u32,
    ) -> Result<(), Stop> {
        self.count()?;
        let budget = self.budget;
        let mut lim = Limited {
            inner: data,
            budget,
            scope: Scope::Member(depth),
            read: 0,
            max: budget.opts.max_member,
            packed,
            counted: true,
            failed: None,
        };
        let mut head = [0u8; 512];
        let n = match read_up_to(&mut lim, &mut head) {
            Ok(n) => n,
            Err(e) => return self.failed(path, &e, depth),
        };
        let head = &head[..n];
        let name = path.rsplit(|&b| b == b'!').next().unwrap_or(path);
        let kind = FileKind::sniff(head, &path_from_bytes(name));
        let sniffed = Format::sniff(head);
        let nested =
            sniffed.filter(|f| depth < budget.opts.depth && budget.opts.formats.contains(*f));
        let mut sum = Sum::new(&self.hash).with_capture(self.rules.as_deref());
        // An archive inside left closed says so (and one past the depth leaves the archive
        // not read to the end).
        let mut note = match sniffed {
            Some(f) if !budget.opts.formats.contains(f) => Some(excluded_note(f)),
            Some(f) if nested.is_none() => {
                self.incomplete = true;
                Some(format!(
                    "a {} archive not opened: deeper than --archive-depth ({})",
                    f.name(),
                    budget.opts.depth
                ))
            }
            Some(_) => None,
            None => closed_format(head).map(|name| {
                self.incomplete = true;
                closed_note(name)
            }),
        };
        {
            let mut tee = Tee {
                inner: io::Cursor::new(head).chain(&mut lim),
                sum: &mut sum,
                gate: self.gate,
            };
            let drained = match nested {
                Some(f @ (Format::Zip | Format::SevenZ)) => {
                    // Needs seeking: held in memory (at most --archive-max-member bytes).
                    let mut held = Vec::new();
                    match tee.read_to_end(&mut held) {
                        Ok(_) => {
                            let mut cur = io::Cursor::new(held);
                            note = self.nested(f, Source::Seek(&mut cur), path, depth + 1)?;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Some(f) => {
                    note = self.nested(f, Source::Stream(&mut tee), path, depth + 1)?;
                    drain(&mut tee, self.buf)
                }
                None => drain(&mut tee, self.buf),
            };
            if let Err(e) = drained {
                return self.failed(path, &e, depth);
            }
        }
        let size = lim.read;
        let capture = sum.capture.take();
        let rules = match (self.rules.as_deref_mut(), capture) {
            (Some(m), Some(c)) => Some(Box::new(m.match_capture(&path_from_bytes(path), &c))),
            _ => None,
        };
        let status = FileStatus::Hashed {
            digests: sum.finish(),
            meta: self.meta,
            warning: None,
            origin: Origin::Archive,
            kind,
            rules,
        };
        let mut r = self.result(path, Some(size), status);
        if let Some(Inside::Member { note: n, .. }) = r.archive.as_deref_mut()
            && let Some(note) = note
        {
            // What the archive inside says comes first; a duplicate name is kept after it.
            *n = Some(match n.take() {
                Some(dup) => format!("{note}; {dup}").into(),
                None => note.into(),
            });
        }
        self.out.push(r);
        Ok(())
    }

    /// An archive inside a member: what went wrong inside is the member's note (the member's
    /// own digest is still right); limits of outer levels go on up.
    fn nested(
        &mut self,
        format: Format,
        src: Source<'_>,
        path: &[u8],
        depth: u32,
    ) -> Result<Option<String>, Stop> {
        match self.walk(format, src, path, depth) {
            Ok(()) => Ok(None),
            Err(Stop::Damaged(why)) => {
                self.incomplete = true;
                Ok(Some(format!(
                    "damaged archive inside ({why}): the members read before the damage are \
                     reported"
                )))
            }
            Err(Stop::MembersDamaged(why)) => {
                self.incomplete = true;
                Ok(Some(format!(
                    "damaged archive inside ({why}): the members that could not be read are \
                     errors, every other member was read"
                )))
            }
            Err(Stop::Limit(l)) if l.scope == Scope::Stream(depth) => {
                self.incomplete = true;
                self.out.push(unread(self.container, path, &l.why));
                Ok(Some(format!("not read to the end: {}", l.why)))
            }
            Err(e) => Err(e),
        }
    }

    /// A member's read failed: a limit of its own skips it; anything else goes up.
    fn failed(&mut self, path: &[u8], e: &io::Error, depth: u32) -> Result<(), Stop> {
        self.incomplete = true;
        match self.budget.take(e) {
            Stop::Limit(l) if l.scope == Scope::Member(depth) => {
                self.out.push(self.result(path, None, skipped(&l.why)));
                Ok(())
            }
            Stop::Limit(l) => {
                let status = match l.scope {
                    Scope::Interrupted => FileStatus::Interrupted,
                    _ => skipped(&l.why),
                };
                self.out.push(self.result(path, None, status));
                Err(Stop::Limit(l))
            }
            Stop::Damaged(why) | Stop::MembersDamaged(why) => {
                self.out.push(self.result(
                    path,
                    None,
                    FileStatus::Error(format!("read failed inside the archive: {why}")),
                ));
                Err(Stop::Damaged(why))
            }
        }
    }

    fn result(&self, path: &[u8], size: Option<u64>, status: FileStatus) -> FileResult {
        let mut r = member_result(self.container, path, size, status);
        if let Some(dup) = self.notes.get(path)
            && let Some(Inside::Member { note, .. }) = r.archive.as_deref_mut()
        {
            *note = Some(dup.as_str().into());
        }
        r
    }
}

pub(super) fn member_result(
    container: &[u8],
    path: &[u8],
    size: Option<u64>,
    status: FileStatus,
) -> FileResult {
    FileResult {
        path: path_from_bytes(path).into(),
        size,
        status,
        archive: Some(Box::new(Inside::Member {
            container_len: container.len(),
            note: None,
        })),
    }
}

/// `prefix!*`, skipped: the rest of the archive at `prefix`, with why.
fn unread(container: &[u8], prefix: &[u8], why: &str) -> FileResult {
    member_result(container, &join(prefix, b"*"), None, skipped(why))
}

fn skipped(why: &str) -> FileStatus {
    FileStatus::Skipped(why.to_string())
}

/// `prefix!name` (the name already escaped).
fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    p.extend_from_slice(prefix);
    p.push(b'!');
    p.extend_from_slice(name);
    p
}

/// The one member of a compressed stream: the archive's name without its compression
/// extension (`a.exe.gz` → `a.exe`, `a.tgz` → `a.tar`).
fn inner_name(prefix: &[u8]) -> Vec<u8> {
    let last = prefix
        .rsplit(|&b| b == b'!' || b == b'/')
        .next()
        .unwrap_or(prefix);
    for (ext, instead) in [
        (&b".tgz"[..], &b".tar"[..]),
        (b".gz", b""),
        (b".xz", b""),
        (b".zst", b""),
        (b".bz2", b""),
    ] {
        if let Some(stem) = last.strip_suffix(ext)
            && !stem.is_empty()
        {
            return [stem, instead].concat();
        }
    }
    // Already escaped: it came from the prefix.
    let mut v = last.to_vec();
    v.extend_from_slice(b".out");
    v
}

#[cfg(test)]
mod tests;
