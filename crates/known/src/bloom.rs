//! DCSO Bloom filters (the format of CIRCL hashlookup's offline filter): recognised by their
//! header, memory-mapped (CIRCL's is about 1 GB), every parameter read from the header.
//!
//! The layout (DCSO/bloom `io.go`, DCSO/flor `filter.py`), little-endian: u64 flags whose low
//! byte is the version, 1; u64 capacity n; f64 false-positive rate p; u64 k, the number of hash
//! functions; u64 m, the number of bits; u64 N, the values inserted; then `ceil(m/64)` u64 words
//! of bits (bit `i` in word `i/64` at `i%64`, which is byte `i/8` at bit `i%8`); then, to the
//! end, an optional data blob. A value's k bit indices are FNV-1 (not 1a) 64 of its bytes,
//! reduced modulo the largest prime below 2^64, then multiplied k times by a constant `g`
//! (wrapping) modulo that prime, each reduced modulo m.
//!
//! CIRCL's filter holds SHA-1 digests as 40 upper-case hex ASCII bytes: [`BloomFilter::sha1`]
//! asks it that way. A hit means "probably known to CIRCL", never "good".

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use memmap2::Mmap;

/// Bytes before the bit array.
pub const HEADER_LEN: usize = 48;
/// The largest prime below 2^64 (DCSO's `m`, not to be confused with the filter's bit count).
const PRIME: u64 = 18_446_744_073_709_551_557;
/// DCSO's multiplier `g`.
const G: u64 = 18_446_744_073_709_550_147;
const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
const FNV_PRIME: u64 = 1_099_511_628_211;
/// More hash functions than any sane filter uses (CIRCL's: 14; p = 1e-30 needs 100): a header
/// asking for more is corrupt, and would make every check a long loop.
pub const MAX_K: u64 = 256;

/// Why a Bloom filter could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BloomError {
    #[error("cannot read Bloom filter {path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a usable DCSO Bloom filter: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The header's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BloomParams {
    /// Capacity the filter was sized for.
    pub n: u64,
    /// False-positive rate it was sized for (at capacity).
    pub p: f64,
    pub k: u64,
    /// Bits.
    pub m: u64,
    /// Values inserted.
    pub inserted: u64,
}

impl BloomParams {
    /// DCSO's sizing for `n` values at rate `p` (`Initialize`): m = |ceil(n ln p / ln² 2)|,
    /// k = ceil(ln 2 · m / n).
    pub fn sized(n: u64, p: f64) -> BloomParams {
        let ln2 = std::f64::consts::LN_2;
        let m = (n as f64 * p.ln() / (ln2 * ln2)).ceil().abs() as u64;
        let k = (ln2 * m as f64 / n as f64).ceil() as u64;
        BloomParams {
            n,
            p,
            k,
            m,
            inserted: 0,
        }
    }

    /// Bytes of the bit array: whole 64-bit words.
    pub fn bit_bytes(&self) -> Option<usize> {
        let words = self.m.div_ceil(64);
        usize::try_from(words.checked_mul(8)?).ok()
    }

    /// The false-positive rate expected with `inserted` values: (1 - e^(-kN/m))^k.
    pub fn expected_rate(&self) -> f64 {
        let (k, m, n) = (self.k as f64, self.m as f64, self.inserted as f64);
        (1.0 - (-k * n / m).exp()).powf(k)
    }
}

/// The header, when `head` (a file's first bytes) starts like a DCSO filter: flags whose low
/// byte is 1 (no text list starts with byte 0x01) and all six fields present. Not validated:
/// see [`BloomFilter::open`].
pub fn parse_header(head: &[u8]) -> Option<BloomParams> {
    let word = |i: usize| -> Option<u64> {
        let b: [u8; 8] = head.get(i * 8..i * 8 + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    if word(0)? & 0xFF != 1 {
        return None;
    }
    Some(BloomParams {
        n: word(1)?,
        p: f64::from_bits(word(2)?),
        k: word(3)?,
        m: word(4)?,
        inserted: word(5)?,
    })
}

/// Whether the file at `path` starts like a DCSO Bloom filter (its header, not its name). A
/// file that cannot be read is not one: whoever opens it next says why.
pub fn identify(path: &Path) -> bool {
    // Stat before opening: a FIFO (a list piped in) is opened once, by whoever reads it.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(r) => got += r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    parse_header(&head[..got]).is_some()
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open filter: the file mapped, its header read and checked against its size.
pub struct BloomFilter {
    path: PathBuf,
    params: BloomParams,
    bytes: Bytes,
    modified: Option<SystemTime>,
}

impl std::fmt::Debug for BloomFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BloomFilter")
            .field("path", &self.path)
            .field("params", &self.params)
            .finish()
    }
}

impl BloomFilter {
    /// Map and check the filter at `path`: version 1, 1 ≤ k ≤ [`MAX_K`], m ≥ 1, p in (0, 1),
    /// and the whole bit array present. Nothing is read but the header until a value is asked.
    pub fn open(path: &Path) -> Result<BloomFilter, BloomError> {
        let io_err = |source| BloomError::Io {
            path: path.to_path_buf(),
            source,
        };
        let corrupt = |reason: String| BloomError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        if meta.len() < HEADER_LEN as u64 {
            return Err(corrupt(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                meta.len()
            )));
        }
        // SAFETY: the map is read-only and the file is not written by hashsweep; another
        // program truncating it while mapped would be a SIGBUS, as for every mapped file (the
        // filter is replaced by download-and-rename in practice).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        #[cfg(unix)]
        {
            // Checks touch k random pages: no read-ahead. Advice only: a failure changes nothing.
            let _ = map.advise(memmap2::Advice::Random);
        }
        BloomFilter::from_bytes(path, Bytes::Mapped(map), meta.modified().ok())
    }

    /// A filter from bytes in memory (a filter built by [`BloomBuilder`], or tests).
    pub fn from_vec(name: &Path, bytes: Vec<u8>) -> Result<BloomFilter, BloomError> {
        BloomFilter::from_bytes(name, Bytes::Owned(bytes), None)
    }

    fn from_bytes(
        path: &Path,
        bytes: Bytes,
        modified: Option<SystemTime>,
    ) -> Result<BloomFilter, BloomError> {
        let corrupt = |reason: String| BloomError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let b = bytes.get();
        if b.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                b.len()
            )));
        }
        let Some(params) = parse_header(b) else {
            return Err(corrupt(format!("version byte {}, expected 1", b[0])));
        };
        if params.k == 0 || params.k > MAX_K {
            return Err(corrupt(format!(
                "header says k = {} hash functions (1 to {MAX_K} expected)",
                params.k
            )));
        }
        if params.m == 0 {
            return Err(corrupt("header says m = 0 bits".into()));
        }
        if !(params.p > 0.0 && params.p < 1.0) {
            return Err(corrupt(format!(
                "header says false-positive rate p = {} (0 < p < 1 expected)",
                params.p
            )));
        }
        let need = params
            .bit_bytes()
            .and_then(|n| n.checked_add(HEADER_LEN))
            .filter(|&n| n <= b.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "header says m = {} bits, {} bytes of bit array; the file has {} after the header (truncated?)",
                    params.m,
                    params.m.div_ceil(64).saturating_mul(8),
                    b.len() - HEADER_LEN
                ))
            })?;
        debug_assert!(need <= b.len());
        Ok(BloomFilter {
            path: path.to_path_buf(),
            params,
            bytes,
            modified,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn params(&self) -> BloomParams {
        self.params
    }

    /// The file's modification time (its age in the summary).
    pub fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    /// Whether the filter (probably) holds `value`: every one of its k bits set.
    pub fn contains(&self, value: &[u8]) -> bool {
        let bits = &self.bytes.get()[HEADER_LEN..];
        indices(value, self.params.k, self.params.m)
            .all(|i| bits[(i / 8) as usize] & (1 << (i % 8)) != 0)
    }

    /// Whether the filter (probably) holds this SHA-1, as CIRCL inserts it: 40 upper-case hex
    /// ASCII bytes, no newline.
    pub fn sha1(&self, sha1: &[u8; 20]) -> bool {
        self.contains(&upper_hex(sha1))
    }
}

/// The 40 upper-case hex ASCII bytes of a SHA-1.
pub fn upper_hex(sha1: &[u8; 20]) -> [u8; 40] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 40];
    for (i, b) in sha1.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xF)];
    }
    out
}

/// FNV-1 64 (multiply, then xor).
pub fn fnv1_64(value: &[u8]) -> u64 {
    value
        .iter()
        .fold(FNV_OFFSET, |h, &b| h.wrapping_mul(FNV_PRIME) ^ u64::from(b))
}

/// The k bit indices of `value` in a filter of `m` bits (DCSO's `Fingerprint`).
pub fn indices(value: &[u8], k: u64, m: u64) -> impl Iterator<Item = u64> {
    let mut h = fnv1_64(value) % PRIME;
    (0..k).map(move |_| {
        h = h.wrapping_mul(G) % PRIME;
        h % m
    })
}

/// Builds a filter in memory (tests and benchmarks; hashsweep itself only reads filters).
pub struct BloomBuilder {
    params: BloomParams,
    bits: Vec<u8>,
}

impl BloomBuilder {
    /// An empty filter sized as DCSO sizes one for `n` values at rate `p`.
    pub fn new(n: u64, p: f64) -> BloomBuilder {
        let params = BloomParams::sized(n, p);
        let len = params.bit_bytes().unwrap_or(0);
        BloomBuilder {
            params,
            bits: vec![0; len],
        }
    }

    /// Insert `value`; N grows only when a bit was new (as DCSO counts).
    pub fn add(&mut self, value: &[u8]) {
        let mut new = false;
        for i in indices(value, self.params.k, self.params.m) {
            let (byte, bit) = ((i / 8) as usize, 1u8 << (i % 8));
            new |= self.bits[byte] & bit == 0;
            self.bits[byte] |= bit;
        }
        self.params.inserted += u64::from(new);
    }

    /// Insert a SHA-1 as CIRCL does (upper-case hex ASCII).
    pub fn add_sha1(&mut self, sha1: &[u8; 20]) {
        self.add(&upper_hex(sha1));
    }

    pub fn params(&self) -> BloomParams {
        self.params
    }

    /// The file's bytes: header, bit array (no data blob).
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let p = &self.params;
        for w in [1u64, p.n, p.p.to_bits(), p.k, p.m, p.inserted] {
            out.write_all(&w.to_le_bytes())?;
        }
        out.write_all(&self.bits)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.bits.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DCSO/bloom `bloom_test.go`: TestFingerprinting and TestInitialization.
    #[test]
    fn upstream_vectors() {
        assert_eq!(fnv1_64(b"bar"), 0xd8d9a5186bad3880);
        let p = BloomParams::sized(100_000, 0.01);
        assert_eq!((p.m, p.k), (958_505, 7));
        let fp: Vec<u64> = indices(b"bar", p.k, p.m).collect();
        assert_eq!(fp, [20311, 36825, 412501, 835777, 658914, 853361, 307361]);
        let p = BloomParams::sized(10_000, 0.001);
        assert_eq!((p.m, p.k), (143_775, 10));
    }

    /// DCSO/bloom `testdata/test.bloom`'s parameters: n=1000, p=1e-6, values foo, bar, baz.
    #[test]
    fn builds_and_reads_back() {
        let mut b = BloomBuilder::new(1000, 1e-6);
        assert_eq!((b.params().k, b.params().m), (20, 28755));
        for v in [&b"foo"[..], b"bar", b"baz"] {
            b.add(v);
        }
        let f = BloomFilter::from_vec(Path::new("t.bloom"), b.to_bytes()).unwrap();
        assert_eq!(f.params().inserted, 3);
        assert!(f.contains(b"foo") && f.contains(b"bar") && f.contains(b"baz"));
        assert!(!f.contains(b"") && !f.contains(b"12345"));
        assert_eq!(b.to_bytes().len(), 3648);
    }

    #[test]
    fn upper_hex_is_circls_key() {
        let mut d = [0u8; 20];
        d[0] = 0x6f;
        d[19] = 0xab;
        let s = upper_hex(&d);
        assert_eq!(&s[..2], b"6F");
        assert_eq!(&s[38..], b"AB");
    }

    #[test]
    fn corrupt_headers_are_errors_naming_the_file() {
        let good = BloomBuilder::new(1000, 0.01).to_bytes();
        let name = Path::new("x.bloom");
        let with = |off: usize, w: u64| {
            let mut v = good.clone();
            v[off..off + 8].copy_from_slice(&w.to_le_bytes());
            BloomFilter::from_vec(name, v).unwrap_err().to_string()
        };
        assert!(with(24, 0).contains("k = 0"), "{}", with(24, 0));
        assert!(with(24, u64::MAX).contains("hash functions"));
        assert!(with(32, 0).contains("m = 0"));
        assert!(with(32, u64::MAX).contains("truncated"));
        assert!(with(16, f64::NAN.to_bits()).contains("false-positive"));
        assert!(with(16, 1.0f64.to_bits()).contains("false-positive"));
        let e = with(0, 2);
        assert!(e.contains("x.bloom") && e.contains("version byte 2"), "{e}");
        let short = BloomFilter::from_vec(name, good[..100].to_vec()).unwrap_err();
        assert!(short.to_string().contains("truncated"), "{short}");
        assert!(BloomFilter::from_vec(name, good[..20].to_vec()).is_err());
    }
}
