//! The containers packages come in: `ar` (a Debian `.deb` is an ar of tars), cpio (the
//! ASCII formats: "new", "crc" and "odc") and RPM (headers, then a compressed cpio). Each is
//! a stream read front to back, like a tar, with every length checked before it is used.

use std::io::Read;

use super::limits::read_up_to;
use super::tarball::{Exact, MAX_EXTENSION, WalkError, damaged, finish, skip};

/// Walk an `ar` archive (`!<arch>\n` already sniffed, not yet read), calling `each(name,
/// data)` for every member but the symbol tables. GNU long names (`//` table, `/N`) and BSD
/// ones (`#1/N`, the name before the data) are both read.
pub(super) fn walk_ar<E>(
    src: &mut dyn Read,
    mut each: impl FnMut(&[u8], &mut dyn Read) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut magic = [0u8; 8];
    if read_up_to(src, &mut magic)? < 8 || &magic != b"!<arch>\n" {
        return damaged("not an ar archive");
    }
    let mut at = 8u64;
    let mut long_names: Vec<u8> = Vec::new();
    loop {
        let mut h = [0u8; 60];
        match read_up_to(src, &mut h)? {
            0 => return Ok(()),
            60 => {}
            _ => return damaged(format!("truncated member header at byte {at}")),
        }
        if &h[58..60] != b"`\n" {
            return damaged(format!("not an ar member header at byte {at}"));
        }
        let size = decimal(&h[48..58])
            .ok_or_else(|| WalkError::Damaged(format!("member at byte {at}: a bad size")))?;
        let padded = size
            .checked_add(size & 1)
            .ok_or_else(|| WalkError::Damaged("size overflow".into()))?;
        at = at.saturating_add(60).saturating_add(padded);
        let raw = trim_end(&h[..16], b' ');
        if raw == b"/" || raw == b"/SYM64/" || raw == b"__.SYMDEF" || raw == b"__.SYMDEF SORTED" {
            skip(src, padded)?;
            continue;
        }
        if raw == b"//" {
            if size > MAX_EXTENSION {
                return damaged("an ar long-name table too large");
            }
            long_names = vec![0u8; size as usize];
            if read_up_to(src, &mut long_names)? < long_names.len() {
                return damaged("truncated ar long-name table");
            }
            skip(src, padded - size)?;
            continue;
        }
        let mut data_size = size;
        let name: Vec<u8> = if let Some(n) = raw.strip_prefix(b"#1/") {
            // BSD: the name is the first N bytes of the data.
            let n = decimal(n)
                .filter(|&n| n <= size && n <= 4096)
                .ok_or_else(|| WalkError::Damaged("a bad BSD long name".into()))?;
            let mut name = vec![0u8; n as usize];
            if read_up_to(src, &mut name)? < name.len() {
                return damaged("truncated ar member name");
            }
            data_size = size - n;
            trim_end(&name, 0).to_vec()
        } else if let Some(off) = raw.strip_prefix(b"/").and_then(decimal) {
            // GNU: an offset into the `//` table, the name ending in "/\n".
            let off = usize::try_from(off).unwrap_or(usize::MAX);
            let rest = long_names.get(off..).ok_or_else(|| {
                WalkError::Damaged("a long name past the ar long-name table".into())
            })?;
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let n = &rest[..end];
            n.strip_suffix(b"/").unwrap_or(n).to_vec()
        } else {
            raw.strip_suffix(b"/").unwrap_or(raw).to_vec()
        };
        let mut data = Exact::new(&mut *src, data_size);
        let r = each(&name, &mut data);
        finish(&mut data, r)?;
        skip(src, padded - size)?;
    }
}

/// Walk a cpio archive (ASCII "new"/"crc" `07070[12]`, or "odc" `070707`), calling
/// `each(name, data)` for every regular file, up to the `TRAILER!!!` entry.
pub(super) fn walk_cpio<E>(
    src: &mut dyn Read,
    mut each: impl FnMut(&[u8], &mut dyn Read) -> Result<(), E>,
) -> Result<(), WalkError<E>> {
    let mut at = 0u64;
    loop {
        let mut magic = [0u8; 6];
        match read_up_to(src, &mut magic)? {
            0 => return damaged("the cpio archive ends without its trailer"),
            6 => {}
            _ => return damaged(format!("truncated cpio header at byte {at}")),
        }
        let newc = match &magic {
            b"070701" | b"070702" => true,
            b"070707" => false,
            _ => return damaged(format!("not a cpio header at byte {at}")),
        };
        let (mode, nlink, size, namesize, header_len) = if newc {
            let mut h = [0u8; 104];
            if read_up_to(src, &mut h)? < h.len() {
                return damaged("truncated cpio header");
            }
            let f = |i: usize| hex(&h[i * 8..i * 8 + 8]);
            // ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize check
            match (f(1), f(4), f(6), f(11)) {
                (Some(m), Some(l), Some(s), Some(n)) => (m, l, s, n, 110u64),
                _ => return damaged(format!("a bad cpio header at byte {at}")),
            }
        } else {
            let mut h = [0u8; 70];
            if read_up_to(src, &mut h)? < h.len() {
                return damaged("truncated cpio header");
            }
            // dev ino mode uid gid nlink rdev (6 each) mtime (11) namesize (6) filesize (11)
            let o = |a: usize, b: usize| octal(&h[a..b]);
            match (o(12, 18), o(30, 36), o(59, 70), o(53, 59)) {
                (Some(m), Some(l), Some(s), Some(n)) => (m, l, s, n, 76u64),
                _ => return damaged(format!("a bad cpio header at byte {at}")),
            }
        };
        if namesize == 0 || namesize > 4096 {
            return damaged(format!("a cpio name of {namesize} bytes at byte {at}"));
        }
        let mut name = vec![0u8; namesize as usize];
        if read_up_to(src, &mut name)? < name.len() {
            return damaged("truncated cpio name");
        }
        let name_pad = if newc { pad4(header_len + namesize) } else { 0 };
        skip(src, name_pad)?;
        let name = trim_end(&name, 0).to_vec();
        if name == b"TRAILER!!!" {
            return Ok(());
        }
        let data_pad = if newc { pad4(size) } else { 0 };
        at = at
            .saturating_add(header_len + namesize + name_pad)
            .saturating_add(size)
            .saturating_add(data_pad);
        // Regular files; the other links to a file stored once have no data of their own.
        let regular = mode & 0o170_000 == 0o100_000 && !(nlink > 1 && size == 0);
        if regular {
            let mut data = Exact::new(&mut *src, size);
            let r = each(&name, &mut data);
            finish(&mut data, r)?;
        } else {
            skip(src, size)?;
        }
        skip(src, data_pad)?;
    }
}

/// Skip an RPM's lead and headers (sniffed, not yet read): what follows is its payload.
pub(super) fn skip_rpm_headers<E>(src: &mut dyn Read) -> Result<(), WalkError<E>> {
    let mut lead = [0u8; 96];
    if read_up_to(src, &mut lead)? < lead.len() || lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return damaged("not an RPM package");
    }
    // The signature header (padded to 8 bytes), then the header.
    for padded in [true, false] {
        let mut h = [0u8; 16];
        if read_up_to(src, &mut h)? < h.len() || h[..3] != [0x8e, 0xad, 0xe8] {
            return damaged("an RPM header is missing or damaged");
        }
        let index = u64::from(u32::from_be_bytes([h[8], h[9], h[10], h[11]]));
        let data = u64::from(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
        let len = index * 16 + data;
        // What rpm itself accepts (a header of at most 256 MiB).
        if len > 256 << 20 {
            return damaged(format!("an RPM header of {len} bytes"));
        }
        let pad = if padded { (8 - (16 + len) % 8) % 8 } else { 0 };
        skip(src, len + pad)?;
    }
    Ok(())
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn trim_end(b: &[u8], c: u8) -> &[u8] {
    let end = b.iter().rposition(|&x| x != c).map_or(0, |i| i + 1);
    &b[..end]
}

fn decimal(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?.trim_matches(' ');
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn hex(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn octal(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    if !s.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return None;
    }
    u64::from_str_radix(s, 8).ok()
}
