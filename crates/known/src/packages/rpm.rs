//! rpm (Fedora, RHEL, SUSE): the package database under `usr/lib/sysimage/rpm` or
//! `var/lib/rpm`, read without librpm or libdb, read-only:
//! - `rpmdb.sqlite` (rpm >= 4.16): `SELECT blob FROM Packages`, opened immutable (a `-wal`
//!   with content is read too, then the file is only opened read-only);
//! - `Packages.db` (ndb, SUSE): slot pages of `{magic "Slot", package index, block offset,
//!   block count}` after a 32-byte header (`RpmP`), each block a blob header (`BlbS`) and the
//!   header blob;
//! - `Packages` (Berkeley DB hash database): the values of the hash pages that live on
//!   overflow pages (a header is always larger than a page's inline item), followed along their
//!   page chains.
//!
//! A header blob is rpm's `headerExport` form: big-endian `il` (index entries), `dl` (data
//! bytes), `il` entries of `{tag, type, offset, count}`, then the data. The first entry is
//! normally a region tag (63, HEADERIMMUTABLE) whose 16-byte trailer says how many entries
//! the region holds; entries after it ("dribbles") override the region's. Files:
//! `DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]` (or `OLDFILENAMES`), their digests from
//! `FILEDIGESTS` in the algorithm of `FILEDIGESTALGO` (absent: MD5), `FILEFLAGS` (config 1,
//! ghost 64), `FILESTATES` (only normal and netshared files are installed),
//! `FILEVERIFYFLAGS` (digest bit off: not compared).
//!
//! Everything in a header is checked before it is used: lengths, offsets, counts, types,
//! indexes. The database may come from evidence: a damaged or hostile header is an error that
//! names the database, never a panic, an allocation the size of a lie, or a loop.

use std::path::{Path, PathBuf};

use super::{Builder, Claim, Manager, Package, PackageError, Read, Recorded, hex};

/// A header larger than this is refused (rpm's own limit).
pub const MAX_HEADER: usize = 256 << 20;
/// Index entries in one header at most.
const MAX_ENTRIES: u32 = 0xffff;

pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_OLDFILENAMES: u32 = 1027;
pub const TAG_FILESTATES: u32 = 1029;
pub const TAG_FILEMODES: u32 = 1030;
pub const TAG_FILEDIGESTS: u32 = 1035;
pub const TAG_FILEFLAGS: u32 = 1037;
pub const TAG_FILEVERIFYFLAGS: u32 = 1045;
pub const TAG_DIRINDEXES: u32 = 1116;
pub const TAG_BASENAMES: u32 = 1117;
pub const TAG_DIRNAMES: u32 = 1118;
pub const TAG_FILEDIGESTALGO: u32 = 5011;
/// Region tags: HEADERIMAGE, HEADERSIGNATURES, HEADERIMMUTABLE.
const REGION_TAGS: [u32; 3] = [61, 62, 63];

pub const TYPE_CHAR: u32 = 1;
pub const TYPE_INT8: u32 = 2;
pub const TYPE_INT16: u32 = 3;
pub const TYPE_INT32: u32 = 4;
pub const TYPE_INT64: u32 = 5;
pub const TYPE_STRING: u32 = 6;
pub const TYPE_BIN: u32 = 7;
pub const TYPE_STRING_ARRAY: u32 = 8;
pub const TYPE_I18NSTRING: u32 = 9;

/// `FILEFLAGS` bits.
pub const FLAG_CONFIG: u32 = 1;
pub const FLAG_GHOST: u32 = 1 << 6;
/// `FILEVERIFYFLAGS`: the digest is verified.
pub const VERIFY_DIGEST: u32 = 1;

/// One index entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

/// A parsed header blob: its entries and its data store.
pub struct Header<'a> {
    entries: Vec<Entry>,
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Header<'a> {
    /// Check a blob's shape: sizes, every entry's type and place, the region trailer.
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, String> {
        if blob.len() > MAX_HEADER {
            return Err(format!(
                "header of {} bytes (at most {MAX_HEADER})",
                blob.len()
            ));
        }
        let il = be32(blob, 0).ok_or("header shorter than 8 bytes")?;
        let dl = be32(blob, 4).ok_or("header shorter than 8 bytes")?;
        if il == 0 || il > MAX_ENTRIES {
            return Err(format!("header claims {il} index entries"));
        }
        let start = 8 + 16 * il as usize;
        let end = start
            .checked_add(dl as usize)
            .filter(|&e| e <= blob.len())
            .ok_or_else(|| {
                format!(
                    "header claims {il} entries and {dl} data bytes, but has {} bytes",
                    blob.len()
                )
            })?;
        let data = &blob[start..end];
        let mut entries = Vec::with_capacity(il as usize);
        for i in 0..il as usize {
            let at = 8 + 16 * i;
            let e = Entry {
                tag: be32(blob, at).unwrap_or(0),
                kind: be32(blob, at + 4).unwrap_or(0),
                offset: be32(blob, at + 8).unwrap_or(0),
                count: be32(blob, at + 12).unwrap_or(0),
            };
            entries.push(e);
        }
        let mut first = 0;
        if REGION_TAGS.contains(&entries[0].tag) {
            let r = entries[0];
            if r.kind != TYPE_BIN || r.count != 16 {
                return Err(format!("region tag {} is not 16 bytes of BIN", r.tag));
            }
            let trailer = data
                .get(r.offset as usize..(r.offset as usize).saturating_add(16))
                .ok_or_else(|| format!("region tag {}'s trailer lies outside the data", r.tag))?;
            let t_tag = be32(trailer, 0).unwrap_or(0);
            let t_off = be32(trailer, 8).unwrap_or(0) as i32;
            // The trailer's offset is minus the region's size in index bytes.
            let ril = t_off
                .checked_neg()
                .filter(|n| *n > 0 && n % 16 == 0)
                .map(|n| n / 16);
            match ril {
                Some(ril) if (ril as u32) <= il && (t_tag == r.tag || t_tag == 62) => {}
                _ => {
                    return Err(format!("region tag {}'s trailer is damaged", r.tag));
                }
            }
            first = 1;
        }
        for e in &entries[first..] {
            if !(TYPE_CHAR..=TYPE_I18NSTRING).contains(&e.kind) {
                return Err(format!("tag {} has unknown type {}", e.tag, e.kind));
            }
            if e.count == 0 || e.offset as usize >= data.len() {
                return Err(format!(
                    "tag {} lies outside the header's {} data bytes (offset {}, count {})",
                    e.tag,
                    data.len(),
                    e.offset,
                    e.count
                ));
            }
        }
        entries.drain(..first);
        Ok(Header { entries, data })
    }

    /// The entry of `tag`: the last one (a dribble overrides the region).
    fn entry(&self, tag: u32) -> Option<Entry> {
        self.entries.iter().rev().find(|e| e.tag == tag).copied()
    }

    /// A string array (or a single string, or an i18n string's first translation).
    pub fn strings(&self, tag: u32) -> Result<Option<Vec<&'a [u8]>>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if !matches!(e.kind, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(format!("tag {tag} is type {}, not strings", e.kind));
        }
        let mut rest = &self.data[e.offset as usize..];
        // Each string takes a byte at least: a larger count is a lie.
        if e.count as usize > rest.len() {
            return Err(format!("tag {tag} claims {} strings", e.count));
        }
        let n = if e.kind == TYPE_STRING_ARRAY {
            e.count as usize
        } else {
            1
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let nul = rest
                .iter()
                .position(|&c| c == 0)
                .ok_or_else(|| format!("tag {tag}: a string runs past the header's data"))?;
            out.push(&rest[..nul]);
            rest = &rest[nul + 1..];
        }
        Ok(Some(out))
    }

    /// A single string.
    pub fn string(&self, tag: u32) -> Result<Option<&'a [u8]>, String> {
        Ok(self.strings(tag)?.and_then(|v| v.first().copied()))
    }

    /// Integers of any width as `u32` (`INT8`/`CHAR`, `INT16`, `INT32`).
    pub fn ints(&self, tag: u32) -> Result<Option<Vec<u32>>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        let width = match e.kind {
            TYPE_CHAR | TYPE_INT8 => 1,
            TYPE_INT16 => 2,
            TYPE_INT32 => 4,
            k => return Err(format!("tag {tag} is type {k}, not integers")),
        };
        let bytes = (e.count as usize)
            .checked_mul(width)
            .and_then(|n| {
                self.data
                    .get(e.offset as usize..(e.offset as usize).checked_add(n)?)
            })
            .ok_or_else(|| format!("tag {tag}'s {} values run past the header's data", e.count))?;
        Ok(Some(
            bytes
                .chunks_exact(width)
                .map(|c| match width {
                    1 => u32::from(c[0]),
                    2 => u32::from(u16::from_be_bytes([c[0], c[1]])),
                    _ => u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                })
                .collect(),
        ))
    }
}

/// One package's files as its header says: (path, claim without its package index).
pub type HeaderFiles = (Package, Vec<(Vec<u8>, Option<Recorded>, bool)>, u64);

/// The package and its installed regular files from one header. The last element counts the
/// files whose digest is in an algorithm hashsweep does not compute.
pub fn package_files(h: &Header<'_>) -> Result<HeaderFiles, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let name = h
        .string(TAG_NAME)?
        .filter(|n| !n.is_empty())
        .ok_or("no package name (tag 1000)")?;
    let mut version = String::new();
    if let Some(epoch) = h.ints(TAG_EPOCH)?.and_then(|v| v.first().copied()) {
        version.push_str(&format!("{epoch}:"));
    }
    version.push_str(&text(h.string(TAG_VERSION)?.unwrap_or_default()));
    if let Some(r) = h.string(TAG_RELEASE)? {
        version.push('-');
        version.push_str(&text(r));
    }
    let package = Package {
        name: text(name),
        version,
        manager: Manager::Rpm,
    };
    let paths: Vec<Vec<u8>> = match h.strings(TAG_BASENAMES)? {
        Some(base) => {
            let dirs = h
                .strings(TAG_DIRNAMES)?
                .ok_or("BASENAMES without DIRNAMES")?;
            let index = h
                .ints(TAG_DIRINDEXES)?
                .ok_or("BASENAMES without DIRINDEXES")?;
            if index.len() != base.len() {
                return Err(format!(
                    "{} BASENAMES but {} DIRINDEXES",
                    base.len(),
                    index.len()
                ));
            }
            base.iter()
                .zip(&index)
                .map(|(b, &i)| {
                    let d = dirs.get(i as usize).ok_or_else(|| {
                        format!("DIRINDEXES points at directory {i} of {}", dirs.len())
                    })?;
                    Ok([*d, *b].concat())
                })
                .collect::<Result<_, String>>()?
        }
        None => h
            .strings(TAG_OLDFILENAMES)?
            .unwrap_or_default()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect(),
    };
    let n = paths.len();
    let same = |what: &str, v: Option<Vec<u32>>| -> Result<Option<Vec<u32>>, String> {
        match v {
            Some(v) if v.len() != n => Err(format!("{n} files but {} {what}", v.len())),
            v => Ok(v),
        }
    };
    let digests = match h.strings(TAG_FILEDIGESTS)? {
        Some(d) if d.len() != n => {
            return Err(format!("{n} files but {} FILEDIGESTS", d.len()));
        }
        d => d,
    };
    let flags = same("FILEFLAGS", h.ints(TAG_FILEFLAGS)?)?;
    let states = same("FILESTATES", h.ints(TAG_FILESTATES)?)?;
    let verify = same("FILEVERIFYFLAGS", h.ints(TAG_FILEVERIFYFLAGS)?)?;
    let modes = same("FILEMODES", h.ints(TAG_FILEMODES)?)?;
    let algo = h
        .ints(TAG_FILEDIGESTALGO)?
        .and_then(|v| v.first().copied())
        .unwrap_or(1);
    let mut files = Vec::with_capacity(n);
    let mut other_algo = 0u64;
    for (i, path) in paths.into_iter().enumerate() {
        let at = |v: &Option<Vec<u32>>| v.as_ref().map(|v| v[i]);
        // Replaced, not installed, wrong colour: another package's, or nobody's.
        if !matches!(at(&states), None | Some(0) | Some(3)) {
            continue;
        }
        // Directories, symlinks, devices: nothing a sweep hashes.
        if at(&modes).is_some_and(|m| m & 0o170000 != 0o100000) {
            continue;
        }
        let f = at(&flags).unwrap_or(0);
        let checked = f & FLAG_GHOST == 0 && at(&verify).is_none_or(|v| v & VERIFY_DIGEST != 0);
        let hexd = digests.as_ref().map_or(&b""[..], |d| d[i]);
        let digest = if !checked || hexd.is_empty() {
            None
        } else {
            let parsed = match algo {
                1 => hex::<16>(hexd).map(Recorded::Md5),
                2 => hex::<20>(hexd).map(Recorded::Sha1),
                8 => hex::<32>(hexd).map(Recorded::Sha256),
                _ => {
                    other_algo += 1;
                    None
                }
            };
            if parsed.is_none() && matches!(algo, 1 | 2 | 8) {
                return Err(format!(
                    "file {} has a digest that is not algorithm {algo}'s hex",
                    String::from_utf8_lossy(&path)
                ));
            }
            parsed
        };
        files.push((path, digest, f & FLAG_CONFIG != 0));
    }
    Ok((package, files, other_algo))
}

/// Read the rpm database under the builder's root.
pub fn load(b: &mut Builder) -> Read {
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in ["usr/lib/sysimage/rpm", "var/lib/rpm"] {
        let dir = b.path(dir);
        if seen.contains(&dir) {
            continue;
        }
        seen.push(dir.clone());
        for (name, read) in [
            (
                "rpmdb.sqlite",
                read_sqlite as fn(&Path) -> Result<Vec<Vec<u8>>, PackageError>,
            ),
            ("Packages.db", read_ndb),
            ("Packages", read_bdb),
        ] {
            let db = dir.join(name);
            if !db.is_file() {
                continue;
            }
            let blobs = read(&db)?;
            let count = blobs.len() as u64;
            let mut other_algo = 0u64;
            for (i, blob) in blobs.iter().enumerate() {
                let corrupt = |what: String| PackageError::Corrupt {
                    path: db.clone(),
                    what: format!("package header {}: {what}", i + 1),
                };
                let h = Header::parse(blob).map_err(corrupt)?;
                let (package, files, other) = package_files(&h).map_err(corrupt)?;
                other_algo += other;
                let id = b.package(package);
                for (path, digest, config) in files {
                    b.claim(
                        &path,
                        Claim {
                            package: id,
                            digest,
                            config,
                        },
                    );
                }
            }
            if other_algo > 0 {
                b.warn(format!(
                    "{}: {other_algo} file digest(s) in an algorithm other than MD5, SHA-1 or \
                     SHA-256: those files are not compared",
                    db.display()
                ));
            }
            return Ok(Some((db, count)));
        }
    }
    Ok(None)
}

/// The header blobs of an `rpmdb.sqlite`.
pub fn read_sqlite(path: &Path) -> Result<Vec<Vec<u8>>, PackageError> {
    let err = |source| PackageError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = open_read_only(path).map_err(err)?;
    let mut stmt = conn
        .prepare("SELECT blob FROM Packages ORDER BY hnum")
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Read-only; immutable (no lock, no `-shm` written: it may be evidence) unless a `-wal`
/// holds transactions not yet in the file, which only a normal read-only open sees.
fn open_read_only(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let pending = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    let mut uri = url::Url::from_file_path(path)
        .map_err(|()| rusqlite::Error::InvalidPath(path.to_path_buf()))?;
    uri.set_query(Some(if pending {
        "mode=ro"
    } else {
        "mode=ro&immutable=1"
    }));
    rusqlite::Connection::open_with_flags(
        uri.as_str(),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

fn read_all(path: &Path) -> Result<Vec<u8>, PackageError> {
    std::fs::read(path).map_err(|source| PackageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The header blobs of an ndb `Packages.db`.
pub fn read_ndb(path: &Path) -> Result<Vec<Vec<u8>>, PackageError> {
    let file = read_all(path)?;
    parse_ndb(&file).map_err(|what| PackageError::Corrupt {
        path: path.to_path_buf(),
        what,
    })
}

const NDB_MAGIC: u32 = u32::from_le_bytes(*b"RpmP");
const NDB_SLOT_MAGIC: u32 = u32::from_le_bytes(*b"Slot");
const NDB_BLOB_MAGIC: u32 = u32::from_le_bytes(*b"BlbS");

/// Slot pages: 4 KiB of 16-byte slots, the first two of the first page the file's header.
pub fn parse_ndb(file: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let magic = le32(file, 0).ok_or("shorter than its header")?;
    let version = le32(file, 4).ok_or("shorter than its header")?;
    let pages = le32(file, 12).ok_or("shorter than its header")?;
    if magic != NDB_MAGIC || version != 0 {
        return Err("not an ndb database (no RpmP header, version 0)".into());
    }
    if pages == 0 || pages > 2048 {
        return Err(format!("{pages} slot pages"));
    }
    let slots = pages as usize * 4096 / 16;
    let mut blobs = Vec::new();
    for s in 2..slots {
        let at = s * 16;
        let (Some(m), Some(idx), Some(blk)) =
            (le32(file, at), le32(file, at + 4), le32(file, at + 8))
        else {
            return Err(format!("slot {s} lies past the end of the file"));
        };
        if m != NDB_SLOT_MAGIC {
            return Err(format!("slot {s} has no Slot magic"));
        }
        if idx == 0 {
            continue;
        }
        let head = blk as usize * 16;
        if le32(file, head) != Some(NDB_BLOB_MAGIC) || le32(file, head + 4) != Some(idx) {
            return Err(format!("package {idx}: no blob where its slot points"));
        }
        let len = le32(file, head + 12).unwrap_or(0) as usize;
        let blob = file
            .get(head + 16..(head + 16).saturating_add(len))
            .ok_or_else(|| format!("package {idx}: its blob runs past the end of the file"))?;
        blobs.push(blob.to_vec());
    }
    Ok(blobs)
}

/// The header blobs of a Berkeley DB hash database (`Packages`).
pub fn read_bdb(path: &Path) -> Result<Vec<Vec<u8>>, PackageError> {
    let file = read_all(path)?;
    parse_bdb(&file).map_err(|what| PackageError::Corrupt {
        path: path.to_path_buf(),
        what,
    })
}

const BDB_HASH_MAGIC: u32 = 0x0006_1561;
const BDB_PAGE_HEADER: usize = 26;
const BDB_HASH_META: u8 = 8;
const BDB_HASH: u8 = 13;
const BDB_HASH_UNSORTED: u8 = 2;
const BDB_OVERFLOW: u8 = 7;
const BDB_HOFFPAGE: u8 = 3;

/// Berkeley DB's hash pages, in the database's byte order (the magic says which).
pub fn parse_bdb(file: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let raw_magic = le32(file, 12).ok_or("shorter than its metadata page")?;
    let swapped = if raw_magic == BDB_HASH_MAGIC {
        false
    } else if raw_magic.swap_bytes() == BDB_HASH_MAGIC {
        true
    } else {
        return Err("not a Berkeley DB hash database".into());
    };
    let u32_at =
        |b: &[u8], at: usize| le32(b, at).map(|v| if swapped { v.swap_bytes() } else { v });
    let u16_at = |b: &[u8], at: usize| {
        b.get(at..at + 2).map(|s| {
            let v = u16::from_le_bytes([s[0], s[1]]);
            if swapped { v.swap_bytes() } else { v }
        })
    };
    let page_size = u32_at(file, 20).unwrap_or(0) as usize;
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    if file.get(24) != Some(&0) {
        return Err("encrypted".into());
    }
    if file.get(25) != Some(&BDB_HASH_META) {
        return Err("page 0 is not hash metadata".into());
    }
    let pages = file.len() / page_size;
    let last = (u32_at(file, 32).unwrap_or(0) as usize).min(pages.saturating_sub(1));
    let page = |n: usize| file.get(n * page_size..(n + 1) * page_size);
    let mut blobs = Vec::new();
    for n in 1..=last {
        let Some(p) = page(n) else { break };
        if !matches!(p[25], BDB_HASH | BDB_HASH_UNSORTED) {
            continue;
        }
        let entries = usize::from(u16_at(p, 20).unwrap_or(0));
        if entries % 2 != 0 || BDB_PAGE_HEADER + 2 * entries > page_size {
            return Err(format!("hash page {n} has {entries} entries"));
        }
        // Key, value, key, value: the values.
        for k in (1..entries).step_by(2) {
            let off = usize::from(u16_at(p, BDB_PAGE_HEADER + 2 * k).unwrap_or(0));
            if off + 12 > page_size {
                return Err(format!("hash page {n}: item {k} lies outside the page"));
            }
            if p[off] != BDB_HOFFPAGE {
                continue;
            }
            let first = u32_at(p, off + 4).unwrap_or(0) as usize;
            let total = u32_at(p, off + 8).unwrap_or(0) as usize;
            if total > MAX_HEADER {
                return Err(format!("hash page {n}: an item of {total} bytes"));
            }
            let mut value = Vec::with_capacity(total.min(file.len()));
            let mut next = first;
            // Each page of the chain at most once: a chain that loops is damage.
            let mut hops = 0usize;
            while next != 0 && value.len() < total {
                hops += 1;
                if hops > pages {
                    return Err(format!("hash page {n}: an overflow chain loops"));
                }
                let o = page(next).ok_or_else(|| {
                    format!("hash page {n}: overflow page {next} lies past the end of the file")
                })?;
                if o[25] != BDB_OVERFLOW {
                    return Err(format!(
                        "hash page {n}: page {next} is not an overflow page"
                    ));
                }
                let used = usize::from(u16_at(o, 22).unwrap_or(0));
                let room = page_size - BDB_PAGE_HEADER;
                let take = if u32_at(o, 16).unwrap_or(0) == 0 {
                    used.min(room)
                } else {
                    room
                };
                value.extend_from_slice(&o[BDB_PAGE_HEADER..BDB_PAGE_HEADER + take]);
                next = u32_at(o, 16).unwrap_or(0) as usize;
            }
            value.truncate(total);
            blobs.push(value);
        }
    }
    Ok(blobs)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header blob from `(tag, type, count, data)` entries, with a region tag 63 and its
    /// trailer, as `headerExport` lays one out (each entry's data aligned to its type).
    pub(crate) fn blob(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut data = Vec::new();
        let mut index = Vec::new();
        for (tag, kind, count, d) in entries {
            let align = match *kind {
                TYPE_INT16 => 2,
                TYPE_INT32 => 4,
                TYPE_INT64 => 8,
                _ => 1,
            };
            while data.len() % align != 0 {
                data.push(0);
            }
            index.push((*tag, *kind, data.len() as u32, *count));
            data.extend_from_slice(d);
        }
        let il = entries.len() as u32 + 1;
        // The trailer: tag 63, BIN, minus the region's index bytes, 16.
        let trailer_at = data.len() as u32;
        data.extend_from_slice(&63u32.to_be_bytes());
        data.extend_from_slice(&TYPE_BIN.to_be_bytes());
        data.extend_from_slice(&(-(16 * il as i32)).to_be_bytes());
        data.extend_from_slice(&16u32.to_be_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&il.to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (tag, kind, off, count) in std::iter::once((63, TYPE_BIN, trailer_at, 16)).chain(index)
        {
            out.extend_from_slice(&tag.to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&off.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        out.extend_from_slice(&data);
        out
    }

    pub(crate) fn strs(v: &[&str]) -> Vec<u8> {
        v.iter().flat_map(|s| s.bytes().chain([0])).collect()
    }

    pub(crate) fn ints32(v: &[u32]) -> Vec<u8> {
        v.iter().flat_map(|i| i.to_be_bytes()).collect()
    }

    /// A package `tool-1.0-1` of four files: a binary (SHA-256), a %config file, a %ghost
    /// and one whose digest is not verified.
    pub(crate) fn sample(digests: &[&str; 4]) -> Vec<u8> {
        blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["tool"])),
            (TAG_VERSION, TYPE_STRING, 1, strs(&["1.0"])),
            (TAG_RELEASE, TYPE_STRING, 1, strs(&["1"])),
            (TAG_FILESTATES, TYPE_CHAR, 4, vec![0, 0, 0, 0]),
            (
                TAG_FILEMODES,
                TYPE_INT16,
                4,
                [0o100755u16, 0o100644, 0o100644, 0o100644]
                    .iter()
                    .flat_map(|m| m.to_be_bytes())
                    .collect(),
            ),
            (TAG_FILEDIGESTS, TYPE_STRING_ARRAY, 4, strs(digests)),
            (
                TAG_FILEFLAGS,
                TYPE_INT32,
                4,
                ints32(&[0, FLAG_CONFIG, FLAG_GHOST, 0]),
            ),
            (
                TAG_FILEVERIFYFLAGS,
                TYPE_INT32,
                4,
                ints32(&[u32::MAX, u32::MAX, u32::MAX, 0]),
            ),
            (TAG_DIRINDEXES, TYPE_INT32, 4, ints32(&[0, 1, 2, 0])),
            (
                TAG_BASENAMES,
                TYPE_STRING_ARRAY,
                4,
                strs(&["tool", "tool.conf", "tool.log", "quiet"]),
            ),
            (
                TAG_DIRNAMES,
                TYPE_STRING_ARRAY,
                3,
                strs(&["/usr/bin/", "/etc/", "/var/log/"]),
            ),
            (TAG_FILEDIGESTALGO, TYPE_INT32, 1, ints32(&[8])),
        ])
    }

    const D: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_header_gives_paths_digests_and_flags() {
        let b = sample(&[D, D, "", D]);
        let h = Header::parse(&b).unwrap();
        let (p, files, other) = package_files(&h).unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("tool", "1.0-1"));
        assert_eq!(other, 0);
        let paths: Vec<String> = files
            .iter()
            .map(|f| String::from_utf8_lossy(&f.0).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "/usr/bin/tool",
                "/etc/tool.conf",
                "/var/log/tool.log",
                "/usr/bin/quiet"
            ]
        );
        assert!(matches!(files[0].1, Some(Recorded::Sha256(_))) && !files[0].2);
        assert!(files[1].1.is_some() && files[1].2, "config");
        assert_eq!(files[2].1, None, "ghost: not compared");
        assert_eq!(files[3].1, None, "verify flags without the digest bit");
    }

    /// Every truncation and every single-byte change of a header is an error or a header,
    /// never a panic; and no lie about a count or length costs more than the blob.
    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let b = sample(&[D, D, "", D]);
        for cut in 0..b.len() {
            if let Ok(h) = Header::parse(&b[..cut]) {
                let _ = package_files(&h);
            }
        }
        for i in 0..b.len() {
            for v in [0u8, 0x7f, 0x80, 0xff] {
                let mut m = b.clone();
                m[i] = v;
                if let Ok(h) = Header::parse(&m) {
                    let _ = package_files(&h);
                }
            }
        }
        // A count of 4 billion strings on a tiny blob is refused, not allocated.
        let huge = blob(&[(TAG_NAME, TYPE_STRING_ARRAY, u32::MAX, strs(&["x"]))]);
        assert!(Header::parse(&huge).unwrap().strings(TAG_NAME).is_err());
        // A directory index past the directories.
        let bad = blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["p"])),
            (TAG_DIRINDEXES, TYPE_INT32, 1, ints32(&[7])),
            (TAG_BASENAMES, TYPE_STRING_ARRAY, 1, strs(&["f"])),
            (TAG_DIRNAMES, TYPE_STRING_ARRAY, 1, strs(&["/"])),
        ]);
        let e = package_files(&Header::parse(&bad).unwrap()).unwrap_err();
        assert!(e.contains("DIRINDEXES"), "{e}");
        assert!(Header::parse(&[0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(Header::parse(&[0xff; 8]).is_err());
    }

    /// Only normal and netshared files are the package's: a replaced, not installed or
    /// wrong-colour one is not claimed at all.
    #[test]
    fn only_installed_file_states_are_claimed() {
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["p"])),
            (TAG_FILESTATES, TYPE_CHAR, 5, vec![0, 1, 2, 3, 4]),
            (
                TAG_OLDFILENAMES,
                TYPE_STRING_ARRAY,
                5,
                strs(&[
                    "/normal",
                    "/replaced",
                    "/notinstalled",
                    "/netshared",
                    "/wrongcolor",
                ]),
            ),
            (
                TAG_FILEDIGESTS,
                TYPE_STRING_ARRAY,
                5,
                strs(&[D, D, D, D, D]),
            ),
            (TAG_FILEDIGESTALGO, TYPE_INT32, 1, ints32(&[8])),
        ]);
        let (_, files, _) = package_files(&Header::parse(&b).unwrap()).unwrap();
        let paths: Vec<&[u8]> = files.iter().map(|f| f.0.as_slice()).collect();
        assert_eq!(paths, [&b"/normal"[..], b"/netshared"]);
    }

    #[test]
    fn a_missing_algorithm_means_md5_and_dribbles_override_the_region() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["old"])),
            (TAG_FILEDIGESTS, TYPE_STRING_ARRAY, 1, strs(&[md5])),
            (TAG_OLDFILENAMES, TYPE_STRING_ARRAY, 1, strs(&["/bin/x"])),
            (TAG_NAME, TYPE_STRING, 1, strs(&["new"])),
        ]);
        let (p, files, _) = package_files(&Header::parse(&b).unwrap()).unwrap();
        assert_eq!(p.name, "new");
        assert!(matches!(files[0].1, Some(Recorded::Md5(_))));
        // A SHA-256 algorithm with an MD5-length digest is damage.
        let b = blob(&[
            (TAG_NAME, TYPE_STRING, 1, strs(&["p"])),
            (TAG_FILEDIGESTS, TYPE_STRING_ARRAY, 1, strs(&[md5])),
            (TAG_OLDFILENAMES, TYPE_STRING_ARRAY, 1, strs(&["/bin/x"])),
            (TAG_FILEDIGESTALGO, TYPE_INT32, 1, ints32(&[8])),
        ]);
        assert!(package_files(&Header::parse(&b).unwrap()).is_err());
    }

    #[test]
    fn ndb_and_bdb_files_give_their_blobs_and_refuse_damage() {
        let h = sample(&[D, D, "", D]);
        // ndb: one slot page, one package at block 256 (byte 4096).
        let mut f = vec![0u8; 4096];
        f[0..4].copy_from_slice(b"RpmP");
        f[12..16].copy_from_slice(&1u32.to_le_bytes());
        for s in 2..256 {
            f[s * 16..s * 16 + 4].copy_from_slice(b"Slot");
        }
        f[32 + 4..32 + 8].copy_from_slice(&1u32.to_le_bytes());
        f[32 + 8..32 + 12].copy_from_slice(&256u32.to_le_bytes());
        f.extend_from_slice(b"BlbS");
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(h.len() as u32).to_le_bytes());
        f.extend_from_slice(&h);
        assert_eq!(parse_ndb(&f).unwrap(), vec![h.clone()]);
        let mut cut = f.clone();
        cut.truncate(f.len() - 3);
        assert!(parse_ndb(&cut).is_err());
        for i in 0..64 {
            let mut m = f.clone();
            m[i] ^= 0xff;
            let _ = parse_ndb(&m);
        }

        // bdb: metadata, one hash page with one key/HOFFPAGE pair, two overflow pages.
        let ps = 512usize;
        let mut f = vec![0u8; ps * 4];
        f[12..16].copy_from_slice(&BDB_HASH_MAGIC.to_le_bytes());
        f[20..24].copy_from_slice(&(ps as u32).to_le_bytes());
        f[25] = BDB_HASH_META;
        f[32..36].copy_from_slice(&3u32.to_le_bytes());
        let p1 = ps;
        f[p1 + 20..p1 + 22].copy_from_slice(&2u16.to_le_bytes());
        f[p1 + 25] = BDB_HASH;
        f[p1 + 26..p1 + 28].copy_from_slice(&400u16.to_le_bytes());
        f[p1 + 28..p1 + 30].copy_from_slice(&420u16.to_le_bytes());
        f[p1 + 420] = BDB_HOFFPAGE;
        f[p1 + 424..p1 + 428].copy_from_slice(&2u32.to_le_bytes());
        f[p1 + 428..p1 + 432].copy_from_slice(&(h.len() as u32).to_le_bytes());
        let room = ps - BDB_PAGE_HEADER;
        assert!(h.len() > room && h.len() < 2 * room, "{}", h.len());
        let p2 = 2 * ps;
        f[p2 + 16..p2 + 20].copy_from_slice(&3u32.to_le_bytes());
        f[p2 + 25] = BDB_OVERFLOW;
        f[p2 + 26..p2 + ps].copy_from_slice(&h[..room]);
        let p3 = 3 * ps;
        f[p3 + 22..p3 + 24].copy_from_slice(&((h.len() - room) as u16).to_le_bytes());
        f[p3 + 25] = BDB_OVERFLOW;
        f[p3 + 26..p3 + 26 + h.len() - room].copy_from_slice(&h[room..]);
        assert_eq!(parse_bdb(&f).unwrap(), vec![h.clone()]);
        // A chain that points back at itself is an error, not a loop.
        let mut looped = f.clone();
        looped[p3 + 16..p3 + 20].copy_from_slice(&2u32.to_le_bytes());
        looped[p1 + 428..p1 + 432].copy_from_slice(&u32::from(u16::MAX).to_le_bytes());
        assert!(parse_bdb(&looped).is_err());
        for i in 0..f.len() {
            let mut m = f.clone();
            m[i] ^= 0xa5;
            let _ = parse_bdb(&m);
        }
    }
}
