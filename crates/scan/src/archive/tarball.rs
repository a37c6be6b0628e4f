//! A streaming tar reader: ustar, GNU (long names, old sparse members) and PAX (`path`,
//! `size`, and the three GNU sparse formats 0.0, 0.1 and 1.0 that `tar --sparse
//! --format=pax` writes), read as GNU tar and Python's tarfile read them: a header whose
//! checksum was summed over signed bytes (old writers) is accepted, and a sparse member is
//! hashed as the file it extracts to (its holes as zeros), under its real name.
//!
//! Every length comes from the archive: each is checked before it is used, and nothing is
//! held in memory but one header, a PAX record (at most [`MAX_EXTENSION`] bytes) and a
//! sparse map (bounded by the same).

use super::limits::read_up_to;
use std::io::{self, Read};

/// The most a PAX header, a GNU long name or a sparse map may take (bytes): far past any
/// real one, and a hostile one costs no more than this.
pub(super) const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// Why an archive (tar, ar, cpio, rpm) could not be read on.
#[derive(Debug)]
pub(super) enum WalkError<E> {
    /// Reading the stream failed (a limit under it, or damage to the compressed data).
    Io(io::Error),
    /// The tar itself is damaged (the message).
    Damaged(String),
    /// What the caller's `each` returned.
    Member(E),
}

impl<E> From<io::Error> for WalkError<E> {
    fn from(e: io::Error) -> Self {
        WalkError::Io(e)
    }
}

pub(super) fn damaged<T, E>(why: impl Into<String>) -> Result<T, WalkError<E>> {
    Err(WalkError::Damaged(why.into()))
}

/// Where a sparse member's data segments go: (offset in the file, length), in order.
type SparseMap = Vec<(u64, u64)>;

/// The PAX records that matter here, of the next member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
    sparse_name: Option<Vec<u8>>,
    sparse_real: Option<u64>,
    /// 0.1: `GNU.sparse.map`; 0.0: the `GNU.sparse.offset`/`numbytes` pairs, in order.
    sparse_map: Option<Vec<(u64, u64)>>,
    pending_offset: Option<u64>,
    /// 1.0: the map is at the start of the member's data.
    sparse_v1: bool,
}

/// Walk the tar in `src`, calling `each(name, data)` for every regular file (directories,
/// links and devices have no content). `data` gives the file as extracted; what `each` leaves
/// unread is skipped. The stream is left right after the end-of-archive block.
pub(super) fn walk<E>(
    src: &mut dyn Read,
    mut each: impl FnMut(&[u8], &mut dyn Read) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut at = 0u64;
    let mut pax: Option<Pax> = None;
    let mut long_name: Option<Vec<u8>> = None;
    loop {
        let mut h = [0u8; BLOCK as usize];
        match read_up_to(src, &mut h)? {
            0 if pax.is_none() && long_name.is_none() => return Ok(()),
            0 => return damaged("the archive ends after an extended header, before its member"),
            n if n < h.len() => return damaged(format!("truncated header at byte {at}")),
            _ => {}
        }
        let header_at = at;
        at += BLOCK;
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        check_sum(&h)
            .map_err(|why| WalkError::Damaged(format!("header at byte {header_at}: {why}")))?;
        let kind = h[156];
        let header_size = number(&h[124..136]).map_err(|why| {
            WalkError::Damaged(format!("header at byte {header_at}: size: {why}"))
        })?;
        let extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = match &pax {
            Some(p) if !extension => p.size.unwrap_or(header_size),
            _ => header_size,
        };
        let padded = size
            .checked_add(BLOCK - 1)
            .map(|s| s & !(BLOCK - 1))
            .ok_or_else(|| {
                WalkError::Damaged(format!("header at byte {header_at}: size overflow"))
            })?;
        match kind {
            b'x' | b'L' => {
                if size > MAX_EXTENSION {
                    return damaged(format!(
                        "header at byte {header_at}: an extended header of {size} bytes"
                    ));
                }
                let mut data = vec![0u8; size as usize];
                if read_up_to(src, &mut data)? < data.len() {
                    return damaged("truncated extended header");
                }
                skip(src, padded - size)?;
                if kind == b'x' {
                    pax = Some(parse_pax(&data).map_err(WalkError::Damaged)?);
                } else {
                    long_name = Some(until_nul(&data).to_vec());
                }
            }
            b'0' | b'\0' | b'7' | b'S' => {
                let p = pax.take();
                let long = long_name.take();
                let name = member_name(&h, p.as_ref(), long);
                if kind == b'S' {
                    let (map, real, ext_blocks) = gnu_sparse_map(&h, src)?;
                    at += ext_blocks * BLOCK;
                    let mut data = Exact::new(&mut *src, size);
                    let r = {
                        let mut s = Sparse::new(&mut data, map, real, size).map_err(|why| {
                            WalkError::Damaged(format!("{}: {why}", lossy(&name)))
                        })?;
                        each(&name, &mut s)
                    };
                    finish(&mut data, r)?;
                } else if let Some(p) = p.as_ref().filter(|p| p.sparse_v1 || p.sparse_map.is_some())
                {
                    let mut data = Exact::new(&mut *src, size);
                    let (map, stored) = if p.sparse_v1 {
                        let (map, used) = sparse_v1_map(&mut data)?;
                        (map, size - used)
                    } else {
                        (p.sparse_map.clone().unwrap_or_default(), size)
                    };
                    let real = p.sparse_real.ok_or_else(|| {
                        WalkError::Damaged(format!(
                            "{}: a sparse member without its size",
                            lossy(&name)
                        ))
                    })?;
                    let r = {
                        let mut s = Sparse::new(&mut data, map, real, stored).map_err(|why| {
                            WalkError::Damaged(format!("{}: {why}", lossy(&name)))
                        })?;
                        each(&name, &mut s)
                    };
                    finish(&mut data, r)?;
                } else {
                    let mut data = Exact::new(&mut *src, size);
                    let r = each(&name, &mut data);
                    finish(&mut data, r)?;
                }
                skip(src, padded - size)?;
            }
            _ => {
                // Global headers, long link names, directories, links, devices: no member.
                if !matches!(kind, b'g' | b'K') {
                    pax = None;
                    long_name = None;
                }
                skip(src, padded)?;
            }
        }
        at = at.saturating_add(padded);
    }
}

/// After `each`: its error goes up; otherwise what it left of the member is skipped.
pub(super) fn finish<E>(data: &mut dyn Read, r: Result<(), E>) -> Result<(), WalkError<E>> {
    r.map_err(WalkError::Member)?;
    let left = io::copy(data, &mut io::sink())?;
    let _ = left;
    Ok(())
}

/// A member's data, `left` bytes of it: the stream ending first is an error (the archive is
/// truncated), never a shorter member with a digest that is no file's.
pub(super) struct Exact<'r> {
    inner: &'r mut dyn Read,
    left: u64,
}

impl<'r> Exact<'r> {
    pub(super) fn new(inner: &'r mut dyn Read, left: u64) -> Exact<'r> {
        Exact { inner, left }
    }
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this member (truncated)",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Skip `n` bytes; the stream ending first is damage.
pub(super) fn skip<E>(src: &mut dyn Read, n: u64) -> Result<(), WalkError<E>> {
    let got = io::copy(&mut src.take(n), &mut io::sink())?;
    if got < n {
        return damaged("the archive is truncated");
    }
    Ok(())
}

/// The stored checksum must be the sum of the header's bytes (the checksum field counted as
/// spaces), as unsigned bytes or, as old writers summed them, signed.
fn check_sum(h: &[u8; 512]) -> Result<(), String> {
    let stored = octal(&h[148..156]).map_err(|e| format!("checksum: {e}"))?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if stored as i64 == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err("checksum mismatch (not a tar header, or a damaged one)".into())
    }
}

/// An octal field: digits, optionally surrounded by spaces and ended by NUL.
fn octal(field: &[u8]) -> Result<u64, String> {
    let t = until_nul(field);
    let s = std::str::from_utf8(t)
        .map_err(|_| "not a number".to_string())?
        .trim_matches(' ');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| format!("not an octal number: {s:?}"))
}

/// A numeric field: octal, or GNU's base-256 (high bit of the first byte set).
fn number(field: &[u8]) -> Result<u64, String> {
    match field.first() {
        Some(&b) if b & 0x80 != 0 => {
            if b & 0x40 != 0 {
                return Err("a negative number".into());
            }
            let mut v: u64 = u64::from(b & 0x3f);
            for &x in &field[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(x)))
                    .ok_or("a number past 64 bits")?;
            }
            Ok(v)
        }
        _ => octal(field),
    }
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The member's name: the real name of a sparse member, else PAX `path`, else a GNU long
/// name, else the header's (with the ustar prefix).
fn member_name(h: &[u8; 512], pax: Option<&Pax>, long: Option<Vec<u8>>) -> Vec<u8> {
    if let Some(p) = pax {
        if let Some(n) = p
            .sparse_name
            .as_ref()
            .filter(|_| p.sparse_v1 || p.sparse_map.is_some())
        {
            return n.clone();
        }
        if let Some(n) = &p.path {
            return n.clone();
        }
    }
    if let Some(n) = long {
        return n;
    }
    let name = until_nul(&h[0..100]);
    // POSIX ustar ("ustar\0"), not GNU ("ustar  \0", whose bytes there are times).
    if &h[257..263] == b"ustar\0" {
        let prefix = until_nul(&h[345..500]);
        if !prefix.is_empty() {
            return [prefix, b"/", name].concat();
        }
    }
    name.to_vec()
}

/// `len key=value\n` records.
fn parse_pax(data: &[u8]) -> Result<Pax, String> {
    let mut p = Pax::default();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a PAX record without its length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a PAX record with a bad length")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("a PAX record with a bad length".into());
        }
        let record = &rest[sp + 1..len - 1];
        rest = &rest[len..];
        let Some(eq) = record.iter().position(|&b| b == b'=') else {
            return Err("a PAX record without '='".into());
        };
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let num = || -> Result<u64, String> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("PAX {}: not a number", lossy(key)))
        };
        match key {
            b"path" => p.path = Some(value.to_vec()),
            b"size" => p.size = Some(num()?),
            b"GNU.sparse.name" => p.sparse_name = Some(value.to_vec()),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => p.sparse_real = Some(num()?),
            b"GNU.sparse.major" => p.sparse_v1 = num()? == 1,
            b"GNU.sparse.map" => {
                let nums: Result<Vec<u64>, String> = value
                    .split(|&b| b == b',')
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| "GNU.sparse.map: not a number".to_string())
                    })
                    .collect();
                let nums = nums?;
                if nums.len() % 2 != 0 {
                    return Err("GNU.sparse.map: an odd count of numbers".into());
                }
                p.sparse_map = Some(nums.chunks(2).map(|c| (c[0], c[1])).collect());
            }
            b"GNU.sparse.offset" => p.pending_offset = Some(num()?),
            b"GNU.sparse.numbytes" => {
                let off = p
                    .pending_offset
                    .take()
                    .ok_or("GNU.sparse.numbytes without its offset")?;
                let n = num()?;
                p.sparse_map.get_or_insert_with(Vec::new).push((off, n));
            }
            _ => {}
        }
    }
    Ok(p)
}

/// An old GNU sparse member's map: four entries in the header, then 21 per extension block.
/// Returns the map, the real size, and how many extension blocks were read.
fn gnu_sparse_map<E>(
    h: &[u8; 512],
    src: &mut dyn Read,
) -> Result<(SparseMap, u64, u64), WalkError<E>> {
    let bad = |why: String| WalkError::Damaged(format!("sparse member: {why}"));
    let mut map = Vec::new();
    let entries = |block: &[u8], count: usize, map: &mut Vec<(u64, u64)>| {
        for i in 0..count {
            let e = &block[i * 24..i * 24 + 24];
            if e.iter().all(|&b| b == 0) {
                break;
            }
            map.push((number(&e[..12])?, number(&e[12..])?));
        }
        Ok::<(), String>(())
    };
    entries(&h[386..482], 4, &mut map).map_err(bad)?;
    let real = number(&h[483..495]).map_err(bad)?;
    let mut extended = h[482] != 0;
    let mut blocks = 0u64;
    while extended {
        let mut ext = [0u8; 512];
        if read_up_to(src, &mut ext)? < ext.len() {
            return damaged("a sparse member's map is truncated");
        }
        blocks += 1;
        if blocks * BLOCK > MAX_EXTENSION {
            return damaged("a sparse member's map is too long");
        }
        entries(&ext[..504], 21, &mut map).map_err(bad)?;
        extended = ext[504] != 0;
    }
    Ok((map, real, blocks))
}

/// PAX sparse 1.0: the map at the start of the data, decimal numbers one a line (the count,
/// then offset and size pairs), padded to a block. Returns it and the bytes it took.
fn sparse_v1_map<E>(data: &mut dyn Read) -> Result<(SparseMap, u64), WalkError<E>> {
    let mut used = 0u64;
    let mut block = Vec::new();
    let mut pos = 0usize;
    let mut line = || -> Result<u64, WalkError<E>> {
        let mut digits = Vec::new();
        loop {
            if pos == block.len() {
                if used >= MAX_EXTENSION {
                    return damaged("a sparse member's map is too long");
                }
                block = vec![0u8; BLOCK as usize];
                if read_up_to(data, &mut block)? < block.len() {
                    return damaged("a sparse member's map is truncated");
                }
                used += BLOCK;
                pos = 0;
            }
            let b = block[pos];
            pos += 1;
            if b == b'\n' {
                break;
            }
            if !b.is_ascii_digit() || digits.len() >= 20 {
                return damaged("a sparse member's map is not numbers");
            }
            digits.push(b);
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| WalkError::Damaged("a sparse member's map is not numbers".into()))
    };
    let count = line()?;
    let mut map = Vec::new();
    for _ in 0..count {
        // Bounded by MAX_EXTENSION through `line`.
        map.push((line()?, line()?));
    }
    Ok((map, used))
}

/// A sparse member as extracted: its data segments where the map puts them, zeros between
/// and after them up to its real size.
struct Sparse<'r> {
    data: &'r mut dyn Read,
    map: Vec<(u64, u64)>,
    next: usize,
    pos: u64,
    real: u64,
}

impl<'r> Sparse<'r> {
    /// Checks the map: in order, not overlapping, within the real size, and its segments
    /// adding up to the `stored` bytes.
    fn new(
        data: &'r mut dyn Read,
        map: Vec<(u64, u64)>,
        real: u64,
        stored: u64,
    ) -> Result<Sparse<'r>, String> {
        let mut end = 0u64;
        let mut total = 0u64;
        for &(off, len) in &map {
            let stop = off.checked_add(len).ok_or("a sparse map past 64 bits")?;
            if off < end || stop > real {
                return Err("a sparse map out of order or past the file's size".into());
            }
            end = stop;
            total = total.checked_add(len).ok_or("a sparse map past 64 bits")?;
        }
        if total != stored {
            return Err(format!(
                "a sparse map of {total} bytes for {stored} bytes of data"
            ));
        }
        Ok(Sparse {
            data,
            map,
            next: 0,
            pos: 0,
            real,
        })
    }
}

impl Read for Sparse<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Past finished segments (empty ones too).
        while let Some(&(off, len)) = self.map.get(self.next) {
            if self.pos >= off + len {
                self.next += 1;
            } else {
                break;
            }
        }
        let (zeros_until, seg_end) = match self.map.get(self.next) {
            Some(&(off, _)) if self.pos < off => (off, None),
            Some(&(off, len)) => (self.pos, Some(off + len)),
            None => (self.real, None),
        };
        let n = if let Some(end) = seg_end {
            let want = usize::try_from(end - self.pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = self.data.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a sparse member's data is truncated",
                ));
            }
            n
        } else {
            let want = usize::try_from(zeros_until - self.pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            buf[..want].fill(0);
            want
        };
        self.pos += n as u64;
        Ok(n)
    }
}
