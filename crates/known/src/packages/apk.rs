//! apk (Alpine): `lib/apk/db/installed` under the root, records separated by blank lines, one
//! `X:value` per line: `P:` name, `V:` version, `f:` the package's features, `F:` a
//! directory (relative), `R:` a file in the last `F:`, `Z:` that file's digest. `Z:Q1` is
//! base64 of 20 bytes: the content's SHA-1, or, when the package's `f:` holds `S`, its
//! SHA-256 cut to 160 bits; `Z:Q2` is a whole SHA-256 (`X1`/`X2`: the same in hex).
//!
//! Protected paths (apk's config files: `etc` by default, and what
//! `etc/apk/protected_paths.d/*.list` adds or removes with `+`, `-`, `!`; `@` protects only
//! symlinks) that differ are `config_changed`.

use base64::Engine as _;

use super::{Builder, Claim, Manager, Package, PackageError, Read, Recorded, hex};

/// apk's built-in protected paths.
const DEFAULT_PROTECTED: &str = "+etc\n@etc/init.d\n!etc/apk\n";

/// Read the apk database under the builder's root.
pub fn load(b: &mut Builder) -> Read {
    let db = b.path("lib/apk/db").join("installed");
    let text = match std::fs::read(&db) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PackageError::Read { path: db, source }),
    };
    let protected = Protected::load(b);
    let mut count = 0u64;
    let mut bad = 0u64;
    let mut record: Vec<&[u8]> = Vec::new();
    let mut flush = |record: &mut Vec<&[u8]>, b: &mut Builder| {
        if !record.is_empty() {
            let (n, skipped) = package(record, b, &protected);
            count += n;
            bad += skipped;
            record.clear();
        }
    };
    for line in text.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            flush(&mut record, b);
        } else {
            record.push(line);
        }
    }
    flush(&mut record, b);
    if bad > 0 {
        b.warn(format!(
            "{}: skipped {bad} file digest(s) that are not Q1/Q2/X1/X2 digests",
            db.display()
        ));
    }
    Ok(Some((db, count)))
}

/// One record: its package and files. Returns (packages added, digests skipped).
fn package(lines: &[&[u8]], b: &mut Builder, protected: &Protected) -> (u64, u64) {
    let field = |k: u8| {
        lines
            .iter()
            .find(|l| l.len() >= 2 && l[0] == k && l[1] == b':')
            .map(|l| &l[2..])
    };
    let Some(name) = field(b'P').filter(|n| !n.is_empty()) else {
        return (0, 0);
    };
    let cut = field(b'f').is_some_and(|f| f.contains(&b'S'));
    let id = b.package(Package {
        name: String::from_utf8_lossy(name).into_owned(),
        version: String::from_utf8_lossy(field(b'V').unwrap_or_default()).into_owned(),
        manager: Manager::Apk,
    });
    let mut dir: &[u8] = b"";
    let mut file: Option<Vec<u8>> = None;
    let mut skipped = 0;
    let finish = |file: &mut Option<Vec<u8>>, digest: Option<Recorded>, b: &mut Builder| {
        if let Some(path) = file.take() {
            let config = protected.covers(&path);
            b.claim(
                &path,
                Claim {
                    package: id,
                    digest,
                    config,
                },
            );
        }
    };
    for l in lines {
        if l.len() < 2 || l[1] != b':' {
            continue;
        }
        let v = &l[2..];
        match l[0] {
            b'F' => {
                finish(&mut file, None, b);
                dir = v;
            }
            b'R' => {
                finish(&mut file, None, b);
                let mut p = dir.to_vec();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(v);
                file = Some(p);
            }
            b'Z' if file.is_some() => match parse_digest(v, cut) {
                Some(d) => finish(&mut file, Some(d), b),
                None => {
                    skipped += 1;
                    finish(&mut file, None, b);
                }
            },
            _ => {}
        }
    }
    finish(&mut file, None, b);
    (1, skipped)
}

/// `Q1…` (base64, 20 bytes), `Q2…` (32), `X1…`/`X2…` (hex).
pub fn parse_digest(v: &[u8], cut: bool) -> Option<Recorded> {
    let twenty = |d: [u8; 20]| {
        if cut {
            Recorded::Sha256Prefix(d)
        } else {
            Recorded::Sha1(d)
        }
    };
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.decode(s).ok();
    match v.get(..2)? {
        b"Q1" => b64(&v[2..])?.try_into().ok().map(twenty),
        b"Q2" => b64(&v[2..])?.try_into().ok().map(Recorded::Sha256),
        b"X1" => hex::<20>(&v[2..]).map(twenty),
        b"X2" => hex::<32>(&v[2..]).map(Recorded::Sha256),
        _ => None,
    }
}

/// Protected paths: (path, protected) rules, the longest matching prefix deciding.
struct Protected {
    rules: Vec<(Vec<u8>, bool)>,
}

impl Protected {
    fn load(b: &mut Builder) -> Protected {
        let mut rules = Vec::new();
        let mut add = |text: &[u8]| {
            for line in text.split(|&c| c == b'\n') {
                let line = line.trim_ascii();
                let Some((&op, path)) = line.split_first() else {
                    continue;
                };
                let path = path.strip_prefix(b"/").unwrap_or(path);
                let path = path.strip_suffix(b"/").unwrap_or(path).to_vec();
                match op {
                    b'+' => rules.push((path, true)),
                    // `@`: only symlinks are protected; a regular file there is not.
                    b'-' | b'!' | b'@' => rules.push((path, false)),
                    _ => {}
                }
            }
        };
        add(DEFAULT_PROTECTED.as_bytes());
        let dir = b.path("etc/apk/protected_paths.d");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut lists: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "list"))
                .collect();
            lists.sort();
            for p in lists {
                if let Ok(t) = std::fs::read(&p) {
                    add(&t);
                }
            }
        }
        Protected { rules }
    }

    fn covers(&self, path: &[u8]) -> bool {
        self.rules
            .iter()
            .filter(|(p, _)| {
                path.starts_with(p) && (path.len() == p.len() || path.get(p.len()) == Some(&b'/'))
            })
            .max_by_key(|(p, _)| p.len())
            .is_some_and(|(_, on)| *on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_both_kinds() {
        let sha1 = [7u8; 20];
        let q1 = format!(
            "Q1{}",
            base64::engine::general_purpose::STANDARD.encode(sha1)
        );
        assert_eq!(
            parse_digest(q1.as_bytes(), false),
            Some(Recorded::Sha1(sha1))
        );
        assert_eq!(
            parse_digest(q1.as_bytes(), true),
            Some(Recorded::Sha256Prefix(sha1))
        );
        let q2 = format!(
            "Q2{}",
            base64::engine::general_purpose::STANDARD.encode([9u8; 32])
        );
        assert_eq!(
            parse_digest(q2.as_bytes(), false),
            Some(Recorded::Sha256([9; 32]))
        );
        assert!(parse_digest(b"Q1short", false).is_none());
        assert!(parse_digest(b"", false).is_none());
        let p = Protected {
            rules: vec![
                (b"etc".to_vec(), true),
                (b"etc/init.d".to_vec(), false),
                (b"etc/apk".to_vec(), false),
            ],
        };
        assert!(p.covers(b"etc/passwd"));
        assert!(!p.covers(b"etc/init.d/x"));
        assert!(!p.covers(b"etcetera/x"));
        assert!(!p.covers(b"usr/bin/x"));
    }
}
