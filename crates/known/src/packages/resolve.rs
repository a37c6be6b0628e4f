//! Real paths inside a package root, as the system that owns the root sees them: symlinks are
//! followed with the root as `/` (an absolute link in a mounted image leads into the image,
//! never into the host), `..` stops at the root, and a loop gives up after
//! [`MAX_LINKS`] links. Directories are remembered, so each is looked at once.

use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashMapExt as _};

/// Symlinks followed for one path at most (Linux's `MAXSYMLINKS`).
pub const MAX_LINKS: u32 = 40;

/// Directories of one root and their real paths (both relative to the root, `/`-separated).
pub struct Resolver {
    root: PathBuf,
    memo: HashMap<Vec<u8>, Vec<u8>>,
}

impl Resolver {
    pub fn new(root: &Path) -> Resolver {
        Resolver {
            root: root.to_path_buf(),
            memo: HashMap::new(),
        }
    }

    /// The real path of the directory `rel` (relative to the root); a component that does not
    /// exist (or cannot be read) is kept as written. `None`: a symlink loop.
    pub fn dir(&mut self, rel: &[u8]) -> Option<Vec<u8>> {
        self.dir_at(rel, 0)
    }

    /// A file's path with its parent directory through its real path (the name is kept: a
    /// symlink there is the file's business, not the path's).
    pub fn file(&mut self, rel: &[u8]) -> Vec<u8> {
        let (dir, name) = split_last(rel);
        if dir.is_empty() {
            return name.to_vec();
        }
        match self.dir(dir) {
            Some(mut real) => {
                if !real.is_empty() {
                    real.push(b'/');
                }
                real.extend_from_slice(name);
                real
            }
            None => rel.to_vec(),
        }
    }

    fn dir_at(&mut self, rel: &[u8], links: u32) -> Option<Vec<u8>> {
        let rel = trim(rel);
        if rel.is_empty() {
            return Some(Vec::new());
        }
        if let Some(r) = self.memo.get(rel) {
            return Some(r.clone());
        }
        if links > MAX_LINKS {
            return None;
        }
        let (parent, name) = split_last(rel);
        let base = self.dir_at(parent, links)?;
        let real = match name {
            b"." | b"" => base,
            b".." => {
                let (up, _) = split_last(&base);
                up.to_vec()
            }
            _ => {
                let here = join(&base, name);
                let on_disk = self
                    .root
                    .join(hashsweep_core::platform::path_from_vec(here.clone()));
                match std::fs::symlink_metadata(&on_disk) {
                    Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&on_disk) {
                        Ok(target) => {
                            let t = target.as_os_str().as_encoded_bytes();
                            let next = match t.strip_prefix(b"/") {
                                Some(abs) => abs.to_vec(),
                                None => join(&base, t),
                            };
                            self.dir_at(&next, links + 1)?
                        }
                        Err(_) => here,
                    },
                    _ => here,
                }
            }
        };
        self.memo.insert(rel.to_vec(), real.clone());
        Some(real)
    }
}

fn trim(p: &[u8]) -> &[u8] {
    let mut p = p;
    while let Some(r) = p.strip_prefix(b"/") {
        p = r;
    }
    while let Some(r) = p.strip_suffix(b"/") {
        p = r;
    }
    p
}

/// (everything before the last `/`, what follows it).
fn split_last(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let b = trim(b);
    let mut out = Vec::with_capacity(a.len() + 1 + b.len());
    out.extend_from_slice(a);
    if !a.is_empty() && !b.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(b);
    out
}

// Unix only: symlinks are made with std::os::unix.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_followed_inside_the_root_and_loops_give_up() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        // Absolute: inside the root, not the host's /usr.
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../lib", root.join("usr/bin/up")).unwrap();
        symlink("a", root.join("b")).unwrap();
        symlink("b", root.join("a")).unwrap();
        let mut r = Resolver::new(root);
        assert_eq!(r.file(b"bin/cat"), b"usr/bin/cat");
        assert_eq!(r.file(b"usr/bin/cat"), b"usr/bin/cat");
        assert_eq!(
            r.file(b"lib/x86_64-linux-gnu/libc.so.6"),
            b"usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(r.dir(b"usr/bin/up").unwrap(), b"usr/lib");
        assert_eq!(r.dir(b"bin/../../../etc").unwrap(), b"etc");
        assert_eq!(r.dir(b"a"), None);
        assert_eq!(r.file(b"a/x"), b"a/x");
        assert_eq!(r.file(b"nowhere/x"), b"nowhere/x");
        assert_eq!(r.file(b"top"), b"top");
    }
}
