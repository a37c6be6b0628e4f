//! dpkg (Debian, Ubuntu): `var/lib/dpkg` under the root.
//!
//! - `status`: one stanza per package; `Status:`'s last word is the state (packages
//!   `not-installed` or with only `config-files` left have no files to check), `Version:`, and
//!   `Conffiles:`, one line per conffile ` PATH HASH[ obsolete][ remove-on-upgrade]`, read from
//!   the right as dpkg does (a path may hold spaces); `HASH` is the MD5 at install time, or
//!   `newconffile` for one not configured yet (owned, nothing to compare).
//! - `info/NAME[:ARCH].md5sums`: `HEX  PATH` (32 hex digits, two spaces, the path without its
//!   leading `/`); `info/NAME[:ARCH].list`: the paths the package owns. An md5sums path missing
//!   from the package's `.list` was taken over by another package (`Replaces`): not claimed.
//! - `diversions`: three lines each (the path, where it was diverted to, the diverting package,
//!   `:` for a local diversion). Another package's file at a diverted path is installed at the
//!   diverted-to path, and is checked there; the diverting package's own file stays.

use std::path::Path;

use foldhash::{HashMap, HashSet};

use super::{Builder, Claim, Package, PackageError, Read, Recorded, hex};

/// Read the dpkg database under the builder's root.
pub fn load(b: &mut Builder) -> Read {
    let admin = b.path("var/lib/dpkg");
    let status_path = admin.join("status");
    let status = match read_optional(&status_path)? {
        Some(s) => s,
        None => return Ok(None),
    };
    let diversions = match read_optional(&admin.join("diversions"))? {
        Some(d) => parse_diversions(&d),
        None => HashMap::default(),
    };
    let info = admin.join("info");
    let mut count = 0u64;
    let mut bad_lines = 0u64;
    let mut first_bad: Option<String> = None;
    // The installed packages: (stanza, name, name:arch, version).
    let mut installed = Vec::new();
    for stanza in stanzas(&status) {
        let Some(name) = stanza.value(b"Package") else {
            continue;
        };
        let state = stanza
            .value(b"Status")
            .and_then(|s| s.split(|&c| c == b' ').rfind(|w| !w.is_empty()))
            .unwrap_or(b"");
        if matches!(state, b"not-installed" | b"config-files") || name.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let arch = stanza.value(b"Architecture").unwrap_or(b"");
        let version = String::from_utf8_lossy(stanza.value(b"Version").unwrap_or(b"")).into_owned();
        // Multi-Arch: same packages have arch-qualified info files.
        let qualified = format!("{name}:{}", String::from_utf8_lossy(arch));
        installed.push((stanza, name, qualified, version));
    }
    // Two small files a package, some 1 500 on a desktop: read side by side, so a cold page
    // cache costs the device's latency a few times, not 1 500 times.
    let mut fetched: Vec<Option<InfoFiles>> = (0..installed.len()).map(|_| None).collect();
    let per = installed.len().div_ceil(READERS).max(1);
    std::thread::scope(|s| {
        for (out, jobs) in fetched.chunks_mut(per).zip(installed.chunks(per)) {
            let info = &info;
            s.spawn(move || {
                for (o, (_, name, qualified, _)) in out.iter_mut().zip(jobs) {
                    *o = Some(info_files(info, name, qualified));
                }
            });
        }
    });
    for ((stanza, name, _, version), files) in installed.into_iter().zip(fetched) {
        let (list, md5sums) = files.unwrap_or(Ok((None, None)))?;
        let owned: Option<HashSet<&[u8]>> = list.as_deref().map(|l| {
            l.split(|&c| c == b'\n')
                .filter(|p| !p.is_empty())
                .map(|p| p.strip_suffix(b"/").unwrap_or(p))
                .collect()
        });
        let conffiles = parse_conffiles(stanza.lines(b"Conffiles"));
        let id = b.package(Package {
            name: name.clone(),
            version,
            manager: super::Manager::Dpkg,
        });
        count += 1;
        let divert = |path: &[u8]| -> Vec<u8> {
            match diversions.get(path) {
                Some((to, by)) if by.as_slice() != name.as_bytes() => to.clone(),
                _ => path.to_vec(),
            }
        };
        let conf_paths: HashSet<&[u8]> = conffiles.iter().map(|c| c.0).collect();
        if let Some(sums) = md5sums.as_deref() {
            for line in sums.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let Some((digest, path)) = parse_md5sums_line(line) else {
                    bad_lines += 1;
                    if first_bad.is_none() {
                        first_bad = Some(format!(
                            "{}: {:?}",
                            info.join(format!("{name}.md5sums")).display(),
                            String::from_utf8_lossy(line)
                        ));
                    }
                    continue;
                };
                let mut abs = Vec::with_capacity(path.len() + 1);
                abs.push(b'/');
                abs.extend_from_slice(path);
                if owned.as_ref().is_some_and(|o| !o.contains(abs.as_slice())) {
                    continue;
                }
                if conf_paths.contains(abs.as_slice()) {
                    continue;
                }
                b.claim(
                    &divert(&abs),
                    Claim {
                        package: id,
                        digest: Some(Recorded::Md5(digest)),
                        config: false,
                    },
                );
            }
        }
        for (path, digest) in conffiles {
            b.claim(
                &divert(path),
                Claim {
                    package: id,
                    digest: digest.map(Recorded::Md5),
                    config: true,
                },
            );
        }
    }
    if bad_lines > 0 {
        b.warn(format!(
            "dpkg: skipped {bad_lines} malformed md5sums line(s), the first in {}",
            first_bad.unwrap_or_default()
        ));
    }
    Ok(Some((admin, count)))
}

/// Threads reading `info/` at once.
const READERS: usize = 8;

/// A package's `.list` and `.md5sums`, each `None` when it does not exist.
type InfoFiles = Result<(Option<Vec<u8>>, Option<Vec<u8>>), PackageError>;

/// `info/NAME:ARCH.*` when the package has them (Multi-Arch: same), else `info/NAME.*`.
fn info_files(info: &Path, name: &str, qualified: &str) -> InfoFiles {
    let q_list = read_optional(&info.join(format!("{qualified}.list")))?;
    let base = if q_list.is_some() { qualified } else { name };
    let list = match q_list {
        Some(l) => Some(l),
        None => read_optional(&info.join(format!("{name}.list")))?,
    };
    let sums = match read_optional(&info.join(format!("{base}.md5sums")))? {
        Some(s) => Some(s),
        None if base != name => read_optional(&info.join(format!("{name}.md5sums")))?,
        None => None,
    };
    Ok((list, sums))
}

/// A file's content, `None` when it does not exist.
fn read_optional(p: &Path) -> Result<Option<Vec<u8>>, PackageError> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PackageError::Read {
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// One stanza of a deb822 file: its fields, each with its lines (the first line's value,
/// then each continuation line without its leading space).
pub(crate) struct Stanza<'a> {
    fields: Vec<(&'a [u8], Vec<&'a [u8]>)>,
}

impl<'a> Stanza<'a> {
    /// A single-line field's value, trimmed.
    pub(crate) fn value(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.fields
            .iter()
            .find(|f| f.0.eq_ignore_ascii_case(name))
            .and_then(|f| f.1.first().copied())
            .map(<[u8]>::trim_ascii)
    }

    /// A multi-line field's continuation lines.
    pub(crate) fn lines(&self, name: &[u8]) -> &[&'a [u8]] {
        self.fields
            .iter()
            .find(|f| f.0.eq_ignore_ascii_case(name))
            .map_or(&[], |f| f.1.get(1..).unwrap_or(&[]))
    }
}

/// The stanzas of a deb822 file (`status`), separated by blank lines.
pub(crate) fn stanzas(text: &[u8]) -> impl Iterator<Item = Stanza<'_>> {
    let mut lines = text.split(|&c| c == b'\n').peekable();
    std::iter::from_fn(move || {
        // Skip blank lines between stanzas.
        while lines.peek().is_some_and(|l| l.trim_ascii().is_empty()) {
            lines.next();
        }
        lines.peek()?;
        let mut fields: Vec<(&[u8], Vec<&[u8]>)> = Vec::new();
        while let Some(line) = lines.next_if(|l| !l.trim_ascii().is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b" ") || line.starts_with(b"\t") {
                if let Some(f) = fields.last_mut() {
                    f.1.push(&line[1..]);
                }
                continue;
            }
            if let Some(colon) = line.iter().position(|&c| c == b':') {
                fields.push((&line[..colon], vec![&line[colon + 1..]]));
            }
        }
        Some(Stanza { fields })
    })
}

/// `Conffiles:` lines: (path, MD5 or `None` for `newconffile`), read from the right.
fn parse_conffiles<'a>(lines: &[&'a [u8]]) -> Vec<(&'a [u8], Option<[u8; 16]>)> {
    let mut out = Vec::new();
    for line in lines {
        let mut l = line.trim_ascii();
        loop {
            if let Some(r) = l.strip_suffix(b" obsolete") {
                l = r.trim_ascii_end();
            } else if let Some(r) = l.strip_suffix(b" remove-on-upgrade") {
                l = r.trim_ascii_end();
            } else {
                break;
            }
        }
        let Some(sp) = l.iter().rposition(|&c| c == b' ') else {
            continue;
        };
        let (path, hash) = (l[..sp].trim_ascii_end(), &l[sp + 1..]);
        if path.is_empty() {
            continue;
        }
        if hash == b"newconffile" {
            out.push((path, None));
        } else if let Some(d) = hex::<16>(hash) {
            out.push((path, Some(d)));
        }
    }
    out
}

/// `HEX  PATH` (dpkg writes exactly two spaces; one trailing `/` is trimmed).
fn parse_md5sums_line(line: &[u8]) -> Option<([u8; 16], &[u8])> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digest = hex::<16>(line.get(..32)?)?;
    let path = line.get(32..)?.strip_prefix(b"  ")?;
    let path = path.strip_prefix(b"/").unwrap_or(path);
    let path = path.strip_suffix(b"/").unwrap_or(path);
    (!path.is_empty()).then_some((digest, path))
}

/// `diversions`: path → (diverted to, diverting package or `:`).
fn parse_diversions(text: &[u8]) -> HashMap<Vec<u8>, (Vec<u8>, Vec<u8>)> {
    let lines: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
    lines
        .chunks_exact(3)
        .filter(|c| !c[0].is_empty() && !c[1].is_empty())
        .map(|c| (c[0].to_vec(), (c[1].to_vec(), c[2].to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conffiles_are_read_from_the_right() {
        let lines: Vec<&[u8]> = vec![
            b" /etc/a b/c.conf 0123456789abcdef0123456789abcdef",
            b" /etc/old 0123456789abcdef0123456789abcdef obsolete",
            b" /etc/new newconffile remove-on-upgrade",
            b" /etc/bad nothex",
        ];
        let c = parse_conffiles(&lines);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].0, b"/etc/a b/c.conf");
        assert!(c[0].1.is_some());
        assert_eq!(c[1].0, b"/etc/old");
        assert_eq!(c[2], (&b"/etc/new"[..], None));
    }

    #[test]
    fn md5sums_lines_need_two_spaces() {
        let ok = parse_md5sums_line(b"7a4179e3d1e3aa4e8a1d8e38d4a3b1c2  bin/cat").unwrap();
        assert_eq!(ok.1, b"bin/cat");
        assert!(parse_md5sums_line(b"7a4179e3d1e3aa4e8a1d8e38d4a3b1c2 bin/cat").is_none());
        assert!(parse_md5sums_line(b"zz4179e3d1e3aa4e8a1d8e38d4a3b1c2  bin/cat").is_none());
        assert!(parse_md5sums_line(b"7a4179e3d1e3aa4e8a1d8e38d4a3b1c2  ").is_none());
    }

    #[test]
    fn stanzas_keep_continuation_lines() {
        let text = b"Package: a\nStatus: install ok installed\nConffiles:\n /etc/x 00\n /etc/y 11\n\n\nPackage: b\nVersion: 1\n";
        let s: Vec<Stanza<'_>> = stanzas(text).collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value(b"package"), Some(&b"a"[..]));
        assert_eq!(s[0].lines(b"Conffiles").len(), 2);
        assert_eq!(s[1].value(b"Version"), Some(&b"1"[..]));
        let d = parse_diversions(b"/usr/bin/x\n/usr/bin/x.real\npkg\n");
        assert_eq!(d[&b"/usr/bin/x"[..]].1, b"pkg");
    }
}
