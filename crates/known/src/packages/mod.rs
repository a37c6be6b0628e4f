//! The system vouches for its own files: the package databases of a system (dpkg, rpm, apk,
//! pacman) as a known set, and the files that differ from what their package installed.
//!
//! Each manager records, for every file it installed, the digest it had: dpkg an MD5
//! (`info/*.md5sums`, conffiles in `status`), rpm the algorithm of its `FILEDIGESTALGO`
//! (SHA-256 on any current distribution), apk a SHA-1 (or SHA-256 cut to 160 bits), pacman a
//! SHA-256 (`local/*/mtree`). [`PackageDb::load`] reads them all (read-only) into one table
//! from a file's path on disk to the packages that claim it, and [`PackageDb::check`] says
//! what a file's digests make of that claim:
//! - [`PackageCheck::Match`]: the digest is the package's (`known_good`, never asked, unless
//!   [`PackageMode::VerifyOnly`]);
//! - [`PackageCheck::Modified`]: it differs, and the file is no conffile, `%config`,
//!   `%BACKUP%` or protected path (those are [`PackageCheck::ConfigChanged`]); `%ghost` files,
//!   files whose digest the package says not to verify, files of other packages' replacing
//!   (rpm `FILESTATES`, dpkg's `.list`), and diverted paths (checked at the place dpkg put
//!   them, against the package whose file is there) are never `Modified`.
//!
//! **Paths.** The databases' paths are relative to the package root (the system's `/`, or
//! `--packages-root`); each is taken through the real path of its parent directory, resolved
//! inside the root (an absolute symlink in a mounted image points into the image, not the
//! host), so that dpkg's `bin/cat` on a merged-`/usr` system is the `usr/bin/cat` the walk
//! finds. A scanned path is looked up as it is, then through its own parent's real path.
//!
//! **Evidence, not proof.** A match says the file is what the database says it installed: the
//! database is writable by root, and MD5 (dpkg) and SHA-1 (apk) collide on purpose. See the
//! guide (docs/src/packages.md); `--packages=verify-only` reports mismatches without taking matches as known good.

pub mod apk;
pub mod dpkg;
pub mod pacman;
mod resolve;
pub mod rpm;

use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashMapExt as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashsweep_core::digest::Digests;
use hashsweep_core::sync::lock;

pub use resolve::Resolver;

/// A package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Manager {
    Dpkg,
    Rpm,
    Apk,
    Pacman,
}

impl Manager {
    /// As reports name it (`source`, `package.type` in ECS).
    pub const fn name(self) -> &'static str {
        match self {
            Manager::Dpkg => "dpkg",
            Manager::Rpm => "rpm",
            Manager::Apk => "apk",
            Manager::Pacman => "pacman",
        }
    }
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// As the manager writes it (rpm: `[EPOCH:]VERSION-RELEASE`).
    pub version: String,
    pub manager: Manager,
}

/// A file's digest as a package database records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Md5([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
    /// apk v3's SHA-256 cut to its first 160 bits.
    Sha256Prefix([u8; 20]),
}

impl Recorded {
    /// The digests beyond SHA-256 a file must be read through for this one to be compared.
    pub fn needs(self) -> Need {
        Need {
            md5: matches!(self, Recorded::Md5(_)),
            sha1: matches!(self, Recorded::Sha1(_)),
        }
    }

    /// Whether `d` agrees; `None` when the digest needed was not computed.
    pub fn matches(&self, d: &Digests) -> Option<bool> {
        match self {
            Recorded::Md5(m) => d.md5.map(|x| x == *m),
            Recorded::Sha1(m) => d.sha1.map(|x| x == *m),
            Recorded::Sha256(m) => Some(d.sha256 == *m),
            Recorded::Sha256Prefix(m) => Some(d.sha256[..20] == m[..]),
        }
    }
}

/// Digests a read must compute besides SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub md5: bool,
    pub sha1: bool,
}

impl Need {
    fn or(self, o: Need) -> Need {
        Need {
            md5: self.md5 || o.md5,
            sha1: self.sha1 || o.sha1,
        }
    }

    /// Whether `d` holds every digest needed.
    pub fn met_by(self, d: &Digests) -> bool {
        (!self.md5 || d.md5.is_some()) && (!self.sha1 || d.sha1.is_some())
    }
}

/// One package's claim on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Index into the database's packages.
    pub package: u32,
    /// `None`: owned but not compared (a `%ghost`, verification turned off, `newconffile`,
    /// an algorithm hashsweep does not compute).
    pub digest: Option<Recorded>,
    /// A conffile, `%config`, pacman `%BACKUP%` or apk protected path: a difference is
    /// informational.
    pub config: bool,
}

/// The claims on one path: nearly always one.
#[derive(Debug, Clone)]
struct Claims {
    first: Claim,
    more: Vec<Claim>,
}

impl Claims {
    fn iter(&self) -> impl Iterator<Item = &Claim> {
        std::iter::once(&self.first).chain(self.more.iter())
    }
}

/// What a file's digests say of its package's claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageCheck {
    /// The digest is the package's.
    Match,
    /// It differs, and the file is not one a package expects to change.
    Modified,
    /// A conffile (or `%config`, `%BACKUP%`, protected path) that differs: informational.
    ConfigChanged,
}

impl PackageCheck {
    /// The report's word (`package_check`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PackageCheck::Match => "match",
            PackageCheck::Modified => "modified",
            PackageCheck::ConfigChanged => "config_changed",
        }
    }
}

/// A file that a package claims, and what its digests make of the claim (`None`: nothing to
/// compare, see [`Claim::digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageFile<'a> {
    pub package: &'a Package,
    pub check: Option<PackageCheck>,
}

/// `--packages` or `--packages=verify-only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackageMode {
    /// A match is `known_good` and not asked.
    #[default]
    Trust,
    /// Matches are looked up as usual; only the package fields and mismatches are reported.
    VerifyOnly,
}

/// What one database held and how long it took to read, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub manager: Manager,
    /// The file or folder read.
    pub database: PathBuf,
    pub packages: u64,
    /// Paths claimed, with or without a digest.
    pub files: u64,
    /// Of those, the ones with no digest hashsweep can compare.
    pub unchecked: u64,
    pub elapsed: Duration,
}

/// Why a package database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("--packages-root {}: not a folder that can be read", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the package database {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the package database {}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// Damaged or hostile content (the database may come from evidence).
    #[error("package database {}: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
}

/// The package databases of one system, as one table from paths to claims.
pub struct PackageDb {
    /// The package root as given (absolute), and its real path.
    root: PathBuf,
    real_root: PathBuf,
    mode: PackageMode,
    packages: Vec<Package>,
    files: HashMap<Box<[u8]>, Claims>,
    loaded: Vec<Loaded>,
    /// Lines of a database that were skipped (malformed), said once each by the caller.
    warnings: Vec<String>,
    /// Directories of scanned paths, through their real paths inside the root.
    dirs: Mutex<Resolver>,
    /// The working directory, for relative scanned paths.
    cwd: PathBuf,
}

impl std::fmt::Debug for PackageDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageDb")
            .field("root", &self.root)
            .field("packages", &self.packages.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// Where the readers put what they find: packages, and claims keyed by path.
pub struct Builder {
    root: PathBuf,
    resolver: Resolver,
    packages: Vec<Package>,
    files: HashMap<Box<[u8]>, Claims>,
    warnings: Vec<String>,
    /// Claims added by the reader now running (for its [`Loaded`]).
    claimed: u64,
    unchecked: u64,
}

impl Builder {
    fn new(root: &Path) -> Builder {
        Builder {
            root: root.to_path_buf(),
            resolver: Resolver::new(root),
            packages: Vec::new(),
            files: HashMap::new(),
            warnings: Vec::new(),
            claimed: 0,
            unchecked: 0,
        }
    }

    /// A path given relative to the root (`var/lib/dpkg`), through its real path inside it.
    pub fn path(&mut self, rel: &str) -> PathBuf {
        // A symlink loop: the path as written (reading it then fails like any bad path).
        let real = self
            .resolver
            .dir(rel.as_bytes())
            .unwrap_or_else(|| rel.as_bytes().to_vec());
        self.root
            .join(hashsweep_core::platform::path_from_vec(real))
    }

    pub fn package(&mut self, p: Package) -> u32 {
        self.packages.push(p);
        u32::try_from(self.packages.len() - 1).unwrap_or(u32::MAX)
    }

    /// `path` as the database writes it (with or without a leading `/`) is claimed. A second
    /// claim by the same package replaces its first.
    pub fn claim(&mut self, path: &[u8], claim: Claim) {
        let path = path.strip_prefix(b"/").unwrap_or(path);
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.is_empty() {
            return;
        }
        let key = self.resolver.file(path);
        self.claimed += 1;
        self.unchecked += u64::from(claim.digest.is_none());
        match self.files.entry(key.into_boxed_slice()) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Claims {
                    first: claim,
                    more: Vec::new(),
                });
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let c = o.get_mut();
                if c.first.package == claim.package {
                    c.first = claim;
                } else if let Some(m) = c.more.iter_mut().find(|m| m.package == claim.package) {
                    *m = claim;
                } else {
                    c.more.push(claim);
                }
            }
        }
    }

    /// A malformed line or record, skipped: said once by the caller.
    pub fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    fn take_counts(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.claimed),
            std::mem::take(&mut self.unchecked),
        )
    }
}

/// One reader's result: the database it read and how many packages it held (`None`: this
/// manager's database is not there).
pub(crate) type Read = Result<Option<(PathBuf, u64)>, PackageError>;

/// A manager's reader.
type Reader = fn(&mut Builder) -> Read;

impl PackageDb {
    /// Read every package database found under `root` (the running system's `/`, or a mounted
    /// image). No database at all is not an error: [`PackageDb::loaded`] is empty.
    pub fn load(root: &Path, mode: PackageMode) -> Result<PackageDb, PackageError> {
        let cwd = std::env::current_dir().unwrap_or_default();
        let root = if root.is_relative() {
            cwd.join(root)
        } else {
            root.to_path_buf()
        };
        let meta = std::fs::metadata(&root).map_err(|source| PackageError::Root {
            path: root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(PackageError::Root {
                path: root,
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let real_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        let mut b = Builder::new(&real_root);
        let mut loaded = Vec::new();
        let readers: [(Manager, Reader); 4] = [
            (Manager::Dpkg, dpkg::load),
            (Manager::Rpm, rpm::load),
            (Manager::Apk, apk::load),
            (Manager::Pacman, pacman::load),
        ];
        for (manager, read) in readers {
            let started = Instant::now();
            let found = read(&mut b)?;
            let (files, unchecked) = b.take_counts();
            if let Some((database, packages)) = found {
                loaded.push(Loaded {
                    manager,
                    database,
                    packages,
                    files,
                    unchecked,
                    elapsed: started.elapsed(),
                });
            }
        }
        Ok(PackageDb {
            dirs: Mutex::new(Resolver::new(&real_root)),
            root,
            real_root,
            mode,
            packages: b.packages,
            files: b.files,
            loaded,
            warnings: b.warnings,
            cwd,
        })
    }

    /// The databases read.
    pub fn loaded(&self) -> &[Loaded] {
        &self.loaded
    }

    /// Lines or records that were skipped while reading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn mode(&self) -> PackageMode {
        self.mode
    }

    /// The package root (as given, made absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Distinct paths claimed.
    pub fn paths(&self) -> usize {
        self.files.len()
    }

    /// The claims on a scanned path: as it is, then through its parent's real path.
    fn locate(&self, path: &Path) -> Option<&Claims> {
        let abs;
        let path = if path.is_relative() {
            abs = self.cwd.join(path);
            &abs
        } else {
            path
        };
        let rel = path
            .strip_prefix(&self.root)
            .or_else(|_| path.strip_prefix(&self.real_root))
            .ok()?;
        let bytes = rel.as_os_str().as_encoded_bytes();
        if bytes.is_empty() {
            return None;
        }
        if let Some(c) = self.files.get(bytes) {
            return Some(c);
        }
        // Through the real path of its folder: `bin/cat` on a merged-/usr system.
        let (dir, name) = match bytes.iter().rposition(|&b| b == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => return None,
        };
        let real = lock(&self.dirs).dir(dir)?;
        if real == dir {
            return None;
        }
        let mut key = real;
        if !key.is_empty() {
            key.push(b'/');
        }
        key.extend_from_slice(name);
        self.files.get(key.as_slice())
    }

    /// The digests a read of `path` must compute for its package to be checked (decided by
    /// the path alone, before the read).
    pub fn needs(&self, path: &Path) -> Need {
        self.locate(path).map_or(Need::default(), |c| {
            c.iter()
                .filter_map(|c| c.digest)
                .fold(Need::default(), |n, d| n.or(d.needs()))
        })
    }

    /// What the package that claims `path` says of a file with digests `d`; `None` when no
    /// package claims it. Any claim that matches makes a match; otherwise a claim that
    /// differs makes `Modified` (`ConfigChanged` when that claim is a conffile).
    pub fn check(&self, path: &Path, d: &Digests) -> Option<PackageFile<'_>> {
        let claims = self.locate(path)?;
        let mut differs: Option<&Claim> = None;
        for c in claims.iter() {
            match c.digest.and_then(|r| r.matches(d)) {
                Some(true) => {
                    return Some(PackageFile {
                        package: &self.packages[c.package as usize],
                        check: Some(PackageCheck::Match),
                    });
                }
                // The first claim that differs is the one said, unless a later one is a
                // conffile's (see `ConfigChanged`).
                Some(false) if differs.is_none_or(|p| c.config && !p.config) => differs = Some(c),
                Some(false) | None => {}
            }
        }
        Some(match differs {
            Some(c) => PackageFile {
                package: &self.packages[c.package as usize],
                check: Some(if c.config {
                    PackageCheck::ConfigChanged
                } else {
                    PackageCheck::Modified
                }),
            },
            None => PackageFile {
                package: &self.packages[claims.first.package as usize],
                check: None,
            },
        })
    }

    /// Whether a match makes a file `known_good` (not with `--packages=verify-only`).
    pub fn vouches(&self, f: Option<&PackageFile<'_>>) -> bool {
        self.mode == PackageMode::Trust && f.is_some_and(|f| f.check == Some(PackageCheck::Match))
    }

    /// Paths claimed with a digest to compare that are not among `seen`, under one of the
    /// scanned `roots` (absolute, as walked): package files missing from disk. Sorted.
    pub fn missing_under(
        &self,
        roots: &[PathBuf],
        seen: &dyn Fn(&Path) -> bool,
    ) -> Vec<(PathBuf, &Package)> {
        let real_roots: Vec<Vec<u8>> = roots
            .iter()
            .filter_map(|r| {
                let abs = if r.is_relative() {
                    self.cwd.join(r)
                } else {
                    r.clone()
                };
                let real = std::fs::canonicalize(&abs).ok()?;
                let rel = real.strip_prefix(&self.real_root).ok()?;
                Some(rel.as_os_str().as_encoded_bytes().to_vec())
            })
            .collect();
        let under = |key: &[u8]| {
            real_roots.iter().any(|r| {
                r.is_empty()
                    || (key.starts_with(r) && key.get(r.len()) == Some(&b'/'))
                    || key == r.as_slice()
            })
        };
        let mut out: Vec<(PathBuf, &Package)> = self
            .files
            .iter()
            .filter(|(k, c)| c.iter().any(|c| c.digest.is_some() && !c.config) && under(k))
            .filter_map(|(k, c)| {
                let p = self
                    .real_root
                    .join(hashsweep_core::platform::path_from_vec(k.to_vec()));
                (!seen(&p) && std::fs::symlink_metadata(&p).is_err())
                    .then(|| (p, &self.packages[c.first.package as usize]))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The first `n` bytes of `s` as lower-case hex digits decoded, or `None`.
pub(crate) fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    hashsweep_core::digest::decode_hex::<N>(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(data: &[u8]) -> Digests {
        use md5::Md5;
        use sha1::Sha1;
        use sha2::{Digest as _, Sha256};
        Digests {
            sha256: Sha256::digest(data).into(),
            md5: Some(Md5::digest(data).into()),
            sha1: Some(Sha1::digest(data).into()),
        }
    }

    #[test]
    fn a_recorded_digest_needs_its_algorithm_and_compares() {
        let d = digests(b"x");
        let md5 = Recorded::Md5(d.md5.unwrap());
        assert_eq!(md5.matches(&d), Some(true));
        assert_eq!(
            md5.matches(&Digests { md5: None, ..d }),
            None,
            "not computed: not compared"
        );
        assert!(md5.needs().md5 && !md5.needs().sha1);
        let mut cut = [0u8; 20];
        cut.copy_from_slice(&d.sha256[..20]);
        assert_eq!(Recorded::Sha256Prefix(cut).matches(&d), Some(true));
        cut[0] ^= 1;
        assert_eq!(Recorded::Sha256Prefix(cut).matches(&d), Some(false));
        assert_eq!(Recorded::Sha256Prefix(cut).needs(), Need::default());
    }
}
