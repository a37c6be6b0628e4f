//! pacman (Arch): `var/lib/pacman/local/NAME-VERSION/` under the root: `desc` (`%NAME%`,
//! `%VERSION%`), `files` (`%BACKUP%`: the config files, `PATH<TAB>MD5`), and `mtree`, a
//! gzip'd BSD mtree (`/set` defaults, then `./path key=value ...` with `type`,
//! `sha256digest`, `md5digest`; names octal-escaped, `\` continues a line). `./.PKGINFO`,
//! `./.BUILDINFO`, `./.INSTALL` and `./.MTREE` are the package's, not the system's.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;

use super::{Builder, Claim, Manager, Package, PackageError, Read, Recorded, hex};

/// An mtree larger than this once decompressed is refused (a package lists far less).
const MAX_MTREE: u64 = 256 << 20;

/// Read the pacman database under the builder's root.
pub fn load(b: &mut Builder) -> Read {
    let local = b.path("var/lib/pacman/local");
    let entries = match std::fs::read_dir(&local) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PackageError::Read {
                path: local,
                source,
            });
        }
    };
    let mut dirs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut count = 0u64;
    for dir in dirs {
        let read = |name: &str| -> Result<Option<Vec<u8>>, PackageError> {
            let p = dir.join(name);
            match std::fs::read(&p) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(PackageError::Read { path: p, source }),
            }
        };
        let Some(desc) = read("desc")? else { continue };
        let desc = sections(&desc);
        let Some(name) = desc.get("NAME").and_then(|v| v.first()) else {
            continue;
        };
        let backup: HashSet<Vec<u8>> = match read("files")? {
            Some(f) => sections(&f)
                .get("BACKUP")
                .map(|v| {
                    v.iter()
                        .map(|l| l.split(|&c| c == b'\t').next().unwrap_or(l).to_vec())
                        .collect()
                })
                .unwrap_or_default(),
            None => HashSet::new(),
        };
        let id = b.package(Package {
            name: String::from_utf8_lossy(name).into_owned(),
            version: desc
                .get("VERSION")
                .and_then(|v| v.first())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default(),
            manager: Manager::Pacman,
        });
        count += 1;
        let Some(raw) = read("mtree")? else { continue };
        let corrupt = |what: String| PackageError::Corrupt {
            path: dir.join("mtree"),
            what,
        };
        let text = gunzip(&raw).map_err(corrupt)?;
        for (path, digest) in parse_mtree(&text) {
            let config = backup.contains(&path);
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
    Ok(Some((local, count)))
}

/// `%NAME%` sections: the lines up to the next blank line.
fn sections(text: &[u8]) -> HashMap<String, Vec<&[u8]>> {
    let mut out: HashMap<String, Vec<&[u8]>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.split(|&c| c == b'\n') {
        if line.is_empty() {
            current = None;
        } else if line.len() > 2 && line.starts_with(b"%") && line.ends_with(b"%") {
            let name = String::from_utf8_lossy(&line[1..line.len() - 1]).into_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(c) = &current {
            out.entry(c.clone()).or_default().push(line);
        }
    }
    out
}

/// The mtree's text: gunzipped (plain text is taken as it is), at most [`MAX_MTREE`] bytes.
fn gunzip(raw: &[u8]) -> Result<Vec<u8>, String> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw)
        .take(MAX_MTREE + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a readable gzip'd mtree: {e}"))?;
    if out.len() as u64 > MAX_MTREE {
        return Err(format!("more than {MAX_MTREE} bytes once decompressed"));
    }
    Ok(out)
}

/// Regular files and their digests (SHA-256, else MD5) from an mtree.
pub fn parse_mtree(text: &[u8]) -> Vec<(Vec<u8>, Option<Recorded>)> {
    let mut defaults: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for raw in text.split(|&c| c == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // A line ending in an unescaped `\` goes on.
        if let Some(head) = raw.strip_suffix(b"\\")
            && !head.ends_with(b"\\")
        {
            pending.extend_from_slice(head);
            pending.push(b' ');
            continue;
        }
        pending.extend_from_slice(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let mut words = line
            .split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let Some(first) = words.next() else { continue };
        let keys = words.map(|w| match w.iter().position(|&c| c == b'=') {
            Some(i) => (w[..i].to_vec(), w[i + 1..].to_vec()),
            None => (w.to_vec(), Vec::new()),
        });
        match first {
            b"/set" => defaults.extend(keys),
            b"/unset" => {
                for (k, _) in keys {
                    defaults.remove(&k);
                }
            }
            name => {
                let own: HashMap<Vec<u8>, Vec<u8>> = keys.collect();
                let get = |k: &[u8]| own.get(k).or_else(|| defaults.get(k));
                if get(b"type").is_some_and(|t| t.as_slice() != b"file") {
                    continue;
                }
                let path = unescape(name);
                let path = path.strip_prefix(b"./").unwrap_or(&path).to_vec();
                if matches!(
                    path.as_slice(),
                    b".PKGINFO" | b".BUILDINFO" | b".INSTALL" | b".MTREE" | b"." | b""
                ) {
                    continue;
                }
                let digest = get(b"sha256digest")
                    .and_then(|h| hex::<32>(h))
                    .map(Recorded::Sha256)
                    .or_else(|| {
                        get(b"md5digest")
                            .and_then(|h| hex::<16>(h))
                            .map(Recorded::Md5)
                    });
                out.push((path, digest));
            }
        }
    }
    out
}

/// mtree's escapes: `\NNN` (octal) and `\\`.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct.iter().fold(0u32, |a, c| a * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else if s[i] == b'\\' && s.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtree_sets_escapes_and_continuations() {
        let d = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let text = format!(
            "#mtree\n/set type=file uid=0 gid=0 mode=644\n./.PKGINFO time=1 size=1 sha256digest={d}\n\
             ./usr type=dir mode=755\n./usr/bin/a\\040b time=1 mode=755 \\\n  sha256digest={d}\n\
             ./usr/lib/l.so type=link link=l.so.1\n./etc/x.conf md5digest=d41d8cd98f00b204e9800998ecf8427e\n"
        );
        let files = parse_mtree(text.as_bytes());
        let paths: Vec<&[u8]> = files.iter().map(|f| f.0.as_slice()).collect();
        assert_eq!(paths, [&b"usr/bin/a b"[..], b"etc/x.conf"]);
        assert!(matches!(files[0].1, Some(Recorded::Sha256(_))));
        assert!(matches!(files[1].1, Some(Recorded::Md5(_))));
        let s = sections(b"%NAME%\nbash\n\n%BACKUP%\netc/bash.bashrc\tabc\n");
        assert_eq!(s["NAME"], [&b"bash"[..]]);
        assert_eq!(s["BACKUP"].len(), 1);
        assert!(gunzip(&[0x1f, 0x8b, 0, 0]).is_err());
    }
}
