//! Hash lists as people paste them: bare hex digests, `sha256sum`/`md5sum`/`sha1sum` lines
//! (text or binary mode, GNU-escaped names), and BSD `SHA256 (name) = hex` lines. Also writes
//! the `sha256sum` line format for `hashsweep hash`.

use std::path::{Path, PathBuf};

use hashsweep_core::digest::Digest;

/// One parsed line: the digest and, when the line named one, the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedHash {
    pub digest: Digest,
    pub name: Option<PathBuf>,
}

/// Parse one line. `Ok(None)` for blank lines and `#` comments.
pub fn parse_line(line: &[u8]) -> Result<Option<ListedHash>, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Only the start is trimmed: a file name may end in spaces.
    let trimmed = line.trim_ascii_start();
    if trimmed.trim_ascii_end().is_empty() || trimmed.starts_with(b"#") {
        return Ok(None);
    }
    // BSD tag style: ALGO (name) = hex
    if let Some(open) = trimmed.iter().position(|&b| b == b'(')
        && let Some(eq) = trimmed.windows(4).rposition(|w| w == b") = ")
        && open < eq
        && std::str::from_utf8(&trimmed[..open])
            .is_ok_and(|t| t.trim().parse::<hashsweep_core::digest::Algo>().is_ok())
    {
        let hex =
            std::str::from_utf8(&trimmed[eq + 4..]).map_err(|_| "digest is not hex".to_string())?;
        let digest = Digest::from_hex(hex.trim()).ok_or_else(|| {
            format!(
                "'{}' is not an MD5, SHA-1 or SHA-256 hex digest",
                hex.trim()
            )
        })?;
        let name = hashsweep_core::platform::path_from_vec(trimmed[open + 1..eq].to_vec());
        return Ok(Some(ListedHash {
            digest,
            name: Some(name),
        }));
    }
    let (escaped, rest) = match trimmed.strip_prefix(b"\\") {
        Some(r) => (true, r),
        None => (false, trimmed),
    };
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(rest.len());
    let hex = std::str::from_utf8(&rest[..end]).map_err(|_| "digest is not hex".to_string())?;
    let digest = Digest::from_hex(hex)
        .ok_or_else(|| format!("'{hex}' is not an MD5, SHA-1 or SHA-256 hex digest"))?;
    let mut name = &rest[end..];
    // "HEX  name" (text) or "HEX *name" (binary): exactly one separator space, then a mode char.
    if let Some(n) = name.strip_prefix(b" ") {
        name = n
            .strip_prefix(b" ")
            .or_else(|| n.strip_prefix(b"*"))
            .unwrap_or(n);
    } else {
        name = name.trim_ascii_start();
    }
    let name = (!name.trim_ascii().is_empty()).then(|| {
        let raw = if escaped {
            unescape(name)
        } else {
            name.to_vec()
        };
        hashsweep_core::platform::path_from_vec(raw)
    });
    Ok(Some(ListedHash { digest, name }))
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            match it.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b'\\') => out.push(b'\\'),
                Some(&o) => out.extend([b'\\', o]),
                None => out.push(b'\\'),
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// One `sha256sum`-format line (with its newline), escaped as GNU coreutils does when the name
/// holds a backslash, newline or carriage return.
pub fn sum_line(hex: &str, path: &Path) -> Vec<u8> {
    let name = path.as_os_str().as_encoded_bytes();
    let needs = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    let mut out = Vec::with_capacity(hex.len() + name.len() + 4);
    if needs {
        out.push(b'\\');
    }
    out.extend_from_slice(hex.as_bytes());
    out.extend_from_slice(b"  ");
    if needs {
        for &b in name {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
    } else {
        out.extend_from_slice(name);
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn bare_text_binary_and_bsd_lines() {
        let bare = parse_line(H.as_bytes()).unwrap().unwrap();
        assert_eq!(bare.name, None);
        let text = parse_line(format!("{H}  a b.txt\n").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(text.name.unwrap(), Path::new("a b.txt"));
        let bin = parse_line(format!("{H} *x").as_bytes()).unwrap().unwrap();
        assert_eq!(bin.name.unwrap(), Path::new("x"));
        let bsd = parse_line(format!("SHA256 (my (file)) = {H}").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(bsd.name.unwrap(), Path::new("my (file)"));
        assert_eq!(bsd.digest.to_hex(), H);
        assert_eq!(parse_line(b"  # comment").unwrap(), None);
        assert!(parse_line(b"nothex  file").is_err());
    }

    #[test]
    fn escaped_names_round_trip() {
        let p = Path::new("new\nline\\back");
        let line = sum_line(H, p);
        assert!(line.starts_with(b"\\"));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let back = parse_line(&line).unwrap().unwrap();
        assert_eq!(back.name.unwrap(), p);
    }
}
