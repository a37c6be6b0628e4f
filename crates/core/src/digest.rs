//! Digest values and algorithms: the plain data that flows from the hash stage to the lookup
//! stage. A `Digest` is a fixed-size binary value (never a string) tagged with its algorithm.

use std::fmt;
use std::str::FromStr;

/// A hash algorithm hashsweep can compute and look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
}

impl Algo {
    /// Length of the binary digest in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Algo::Md5 => 16,
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
        }
    }

    /// The algorithm whose hex digest has `hex_len` characters.
    pub fn from_hex_len(hex_len: usize) -> Option<Algo> {
        match hex_len {
            32 => Some(Algo::Md5),
            40 => Some(Algo::Sha1),
            64 => Some(Algo::Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Ok(Algo::Md5),
            "sha1" | "sha-1" => Ok(Algo::Sha1),
            "sha256" | "sha-256" => Ok(Algo::Sha256),
            other => Err(format!(
                "unknown hash algorithm '{other}' (use sha256, sha1 or md5)"
            )),
        }
    }
}

/// One binary digest. Stored inline (no heap), compared and hashed as bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

impl Digest {
    pub fn algo(&self) -> Algo {
        match self {
            Digest::Md5(_) => Algo::Md5,
            Digest::Sha1(_) => Algo::Sha1,
            Digest::Sha256(_) => Algo::Sha256,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Digest::Md5(b) => b,
            Digest::Sha1(b) => b,
            Digest::Sha256(b) => b,
        }
    }

    /// Lower-case hex, as reports and `sha256sum` print it.
    pub fn to_hex(&self) -> String {
        hex_lower(self.as_bytes())
    }

    /// Upper-case hex, as the service echoes it.
    pub fn to_hex_upper(&self) -> String {
        self.to_hex().to_ascii_uppercase()
    }

    /// Parse a hex digest of 32, 40 or 64 characters (either case); the length picks the
    /// algorithm.
    ///
    /// ```
    /// use hashsweep_core::digest::{Algo, Digest};
    /// let d = Digest::from_hex("44D88612FEA8A8F36DE82E1278ABB02F").unwrap();
    /// assert_eq!(d.algo(), Algo::Md5);
    /// assert_eq!(d.to_hex(), "44d88612fea8a8f36de82e1278abb02f");
    /// assert!(Digest::from_hex("not hex").is_none());
    /// ```
    pub fn from_hex(s: &str) -> Option<Digest> {
        Digest::from_hex_bytes(s.as_bytes())
    }

    /// [`Digest::from_hex`] on raw bytes (a line of a hash list, a request body).
    pub fn from_hex_bytes(s: &[u8]) -> Option<Digest> {
        match s.len() {
            32 => decode_hex(s).map(Digest::Md5),
            40 => decode_hex(s).map(Digest::Sha1),
            64 => decode_hex(s).map(Digest::Sha256),
            _ => None,
        }
    }
}

/// Exactly `2 * N` hex digits (either case) as `N` bytes; `None` for any other length or any
/// byte that is not a hex digit (no sign, no prefix, no white space). The project's one hex
/// decoder: table lookups with no branch per digit and no early exit, which is most of the load
/// time of a big hash list.
pub fn decode_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let (pairs, []) = s.as_chunks::<2>() else {
        return None;
    };
    if pairs.len() != N {
        return None;
    }
    let mut out = [0u8; N];
    // Any invalid digit sets the high bit.
    let mut bad = 0u8;
    for (o, &[hi, lo]) in out.iter_mut().zip(pairs) {
        let (hi, lo) = (HEX_VAL[usize::from(hi)], HEX_VAL[usize::from(lo)]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0x80 == 0).then_some(out)
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algo(), self.to_hex())
    }
}

/// The digests computed for one file in one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub sha256: [u8; 32],
    pub md5: Option<[u8; 16]>,
    pub sha1: Option<[u8; 20]>,
}

impl Digests {
    /// The digest of the given algorithm, if it was computed.
    pub fn get(&self, algo: Algo) -> Option<Digest> {
        match algo {
            Algo::Sha256 => Some(Digest::Sha256(self.sha256)),
            Algo::Md5 => self.md5.map(Digest::Md5),
            Algo::Sha1 => self.sha1.map(Digest::Sha1),
        }
    }
}

/// The value of each hex digit; 0xff for every other byte.
const HEX_VAL: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A `BuildHasher` for maps keyed by [`Digest`]: digests are uniformly random already, so the
/// hash is their first eight bytes, mixed once (no SipHash over 33 bytes). Not for keys an
/// attacker could choose in bulk without a bound on their number (a request holds ≤ 1000).
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHash;

impl std::hash::BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// See [`DigestHash`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 = (self.0 ^ u64::from_le_bytes(head)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_isize(&mut self, v: isize) {
        self.write_u64(v as u64);
    }
}

/// Lower-case hex of arbitrary bytes.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex_lower(&mut s, bytes);
    s
}

/// Append the lower-case hex of `bytes` to `out`.
pub fn push_hex_lower(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table decoder against a plain one: every digit class, every length, both cases.
    #[test]
    fn hex_decoder_agrees_with_a_plain_one() {
        fn plain(s: &[u8]) -> Option<Vec<u8>> {
            if !s.len().is_multiple_of(2) || !s.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let s = std::str::from_utf8(s).ok()?;
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                .collect()
        }
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        let mut cases = vec![md5.to_string(), md5.to_uppercase(), String::new()];
        for bad in ['g', 'G', ' ', '/', ':', '@', '`', '+', '-', '\u{e9}', '\0'] {
            for at in [0, 1, 17, 31] {
                let mut h = md5.to_string();
                h.replace_range(at..at + 1, &bad.to_string());
                cases.push(h);
            }
        }
        // `u8::from_str_radix` takes a sign: "+f" must not be a digit pair here.
        cases.push(format!("+f{}", &md5[2..]));
        for c in &cases {
            let want = plain(c.as_bytes()).filter(|v| v.len() == 16);
            let got = decode_hex::<16>(c.as_bytes()).map(|a| a.to_vec());
            assert_eq!(got, want, "{c:?}");
        }
        assert_eq!(decode_hex::<16>(&md5.as_bytes()[..30]), None);
        assert_eq!(decode_hex::<15>(md5.as_bytes()), None);
        assert_eq!(
            Digest::from_hex(md5),
            Some(Digest::Md5(decode_hex(md5.as_bytes()).unwrap()))
        );
        assert_eq!(Digest::from_hex(&md5[..31]), None);
    }

    #[test]
    fn from_hex_rejects_any_non_hex_byte_anywhere_and_takes_both_cases() {
        let good = "0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789abcdef0123";
        let d = Digest::from_hex(good).unwrap();
        assert_eq!(d.to_hex(), good.to_ascii_lowercase());
        for pos in 0..64 {
            for bad in [b'g', b'G', b' ', b'/', b':', b'@', b'`', 0xC3] {
                let mut b = good.as_bytes().to_vec();
                b[pos] = bad;
                if let Ok(s) = std::str::from_utf8(&b) {
                    assert!(Digest::from_hex(s).is_none(), "{s}");
                }
            }
        }
    }

    #[test]
    fn digest_hash_tells_digests_apart_in_a_map() {
        let mut m: std::collections::HashMap<Digest, u32, DigestHash> = Default::default();
        for i in 0..2000u32 {
            let hex = format!("{i:064x}");
            m.insert(Digest::from_hex(&hex).unwrap(), i);
            m.insert(Digest::from_hex(&hex[32..]).unwrap(), i + 10_000);
        }
        assert_eq!(m.len(), 4000);
        assert_eq!(
            m[&Digest::from_hex(&format!("{:064x}", 1234)).unwrap()],
            1234
        );
    }

    #[test]
    fn hex_round_trip_each_algo_and_case() {
        for hex in [
            "d41d8cd98f00b204e9800998ecf8427e",
            "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let d = Digest::from_hex(hex).expect("valid hex");
            assert_eq!(d.to_hex(), hex.to_ascii_lowercase());
            assert_eq!(d.to_hex_upper(), hex.to_ascii_uppercase());
            assert_eq!(d.algo().digest_len() * 2, hex.len());
        }
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(Digest::from_hex("xyz").is_none());
        assert!(Digest::from_hex("g41d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(Digest::from_hex("d41d8cd98f00b204e9800998ecf8427").is_none());
    }
}
