//! Loading rules the way `--yara PATH` names them: finding the rule files (a `.yar`/`.yara` file
//! or a folder of them), giving each its namespace, and compiling them with the per-file globals
//! defined; compile errors become a typed [`LoadError`] naming file, line and column.
//!
//! # Files and namespaces
//! - A path that is a file is read whatever its name ends with (it was named on purpose).
//! - A folder is walked recursively; files whose name ends in `.yar` or `.yara` (any case) are
//!   read, in byte order of their path relative to the folder, so the order (and the compiled
//!   rules, and the cache key) does not depend on the order the file system lists them in.
//!   Symbolic links to files are followed, links to folders are not (no loops).
//! - Every file is its own namespace, named after its file stem (`apt_foo.yar` is `apt_foo`),
//!   so two files may each have a rule `Suspicious_Strings`. When two files have the same stem,
//!   the second (in the order above, paths given first come first) is `stem_2`, the third
//!   `stem_3`, and so on. A match names a rule `namespace:identifier`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use yara_x::{Compiler, SourceCode};

use crate::{CacheStatus, GLOBALS, MODULES};

/// One rule file to compile.
#[derive(Debug, Clone)]
pub struct RuleSource {
    /// The file as found (the `--yara` path joined with the relative path).
    pub path: PathBuf,
    /// Which `--yara` argument it came from (0 for the first).
    pub arg: usize,
    /// Its path relative to that argument, `/`-separated (the file name when the argument is
    /// the file itself).
    pub relative: String,
    /// Its namespace (see the module documentation).
    pub namespace: String,
    /// Its bytes.
    pub text: Vec<u8>,
    /// SHA-256 of [`Self::text`].
    pub sha256: [u8; 32],
}

/// Where and why a rule file does not compile, from yara-x's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompileDiagnostic {
    /// The rule file.
    pub path: String,
    /// 1-based line and column of the error.
    pub line: u64,
    pub column: u64,
    /// yara-x's error code, e.g. `E001`.
    pub code: String,
    /// One line, e.g. ``unknown module `cuckoo` ``.
    pub title: String,
    /// yara-x's full report, with the source snippet.
    pub text: String,
}

impl fmt::Display for CompileDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {}",
            self.path, self.line, self.column, self.code, self.title
        )
    }
}

/// Why rules could not be loaded. Every variant stops the run before any file is read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading YARA rules {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no .yar or .yara file", path.display())]
    NoRules { path: PathBuf },
    #[error(
        "{}:{line}:{column}: the rules import module `{module}`, which this build leaves out \
         (it has: {})",
        path,
        MODULES.join(", ")
    )]
    ModuleLeftOut {
        path: String,
        line: u64,
        column: u64,
        module: String,
    },
    #[error("{}", summary(errors))]
    Compile { errors: Vec<CompileDiagnostic> },
    #[error("defining the YARA global `{name}`")]
    Global {
        name: &'static str,
        #[source]
        source: yara_x::errors::VariableError,
    },
}

/// The first error, and how many more there are.
fn summary(errors: &[CompileDiagnostic]) -> String {
    match errors {
        [] => "the YARA rules do not compile".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more errors)", rest.len()),
    }
}

/// Compiled rules and what the summary says about them.
pub struct Loaded {
    pub rules: yara_x::Rules,
    /// Rules in the set (private and global ones included).
    pub rule_count: usize,
    /// Rule files read.
    pub files: usize,
    /// Time to compile, or to load from the cache.
    pub elapsed: Duration,
    /// Whether they came from the cache.
    pub cache: CacheStatus,
    /// yara-x's warnings (slow patterns and the like), one report each.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("rule_count", &self.rule_count)
            .field("files", &self.files)
            .field("elapsed", &self.elapsed)
            .field("cache", &self.cache)
            .field("warnings", &self.warnings.len())
            .finish_non_exhaustive()
    }
}

fn is_rule_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yar") || lower.ends_with(".yara")
}

/// Rule files under `dir`, as (relative path, full path), unsorted.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), LoadError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LoadError::Read { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let entry = entry.map_err(read_err(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let ty = entry.file_type().map_err(read_err(&path))?;
        if ty.is_dir() {
            walk(&path, &relative, out)?;
        } else if is_rule_file(&name) {
            // A link to a folder is not followed; to a file, it is.
            let is_file = if ty.is_symlink() {
                std::fs::metadata(&path).map_err(read_err(&path))?.is_file()
            } else {
                ty.is_file()
            };
            if is_file {
                out.push((relative, path));
            }
        }
    }
    Ok(())
}

/// Finds and reads the rule files of every `--yara` path, in a fixed order, with their
/// namespaces (see the module documentation).
pub fn collect_sources(paths: &[PathBuf]) -> Result<Vec<RuleSource>, LoadError> {
    let mut sources: Vec<RuleSource> = Vec::new();
    for (arg, root) in paths.iter().enumerate() {
        let meta = std::fs::metadata(root).map_err(|source| LoadError::Read {
            path: root.clone(),
            source,
        })?;
        let mut found = Vec::new();
        if meta.is_dir() {
            walk(root, "", &mut found)?;
            found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if found.is_empty() {
                return Err(LoadError::NoRules { path: root.clone() });
            }
        } else {
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            found.push((name, root.clone()));
        }
        for (relative, path) in found {
            let text = std::fs::read(&path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            let stem = Path::new(&relative)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut namespace = stem.clone();
            let mut n = 1;
            while sources.iter().any(|s| s.namespace == namespace) {
                n += 1;
                namespace = format!("{stem}_{n}");
            }
            sources.push(RuleSource {
                sha256: Sha256::digest(&text).into(),
                path,
                arg,
                relative,
                namespace,
                text,
            });
        }
    }
    Ok(sources)
}

/// yara-x's report as a diagnostic: line and column come only from its serde form.
fn diagnostic(err: &yara_x::errors::CompileError) -> CompileDiagnostic {
    let v = serde_json::to_value(err).unwrap_or_default();
    let label = &v["labels"][0];
    let num = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    CompileDiagnostic {
        path: label["code_origin"]
            .as_str()
            .unwrap_or("<unknown file>")
            .to_string(),
        line: num(if v["line"].is_null() {
            &label["line"]
        } else {
            &v["line"]
        }),
        column: num(if v["column"].is_null() {
            &label["column"]
        } else {
            &v["column"]
        }),
        code: err.code().to_string(),
        title: err.title().to_string(),
        text: err.to_string(),
    }
}

/// The module an "unknown module" error names (yara-x gives it only in the title:
/// ``unknown module `name` ``).
fn unknown_module(err: &yara_x::errors::CompileError) -> Option<String> {
    if !matches!(err, yara_x::errors::CompileError::UnknownModule(_)) {
        return None;
    }
    let title = err.title();
    let start = title.find('`')? + 1;
    let end = start + title[start..].find('`')?;
    Some(title[start..end].to_string())
}

/// Compiles `sources`, each in its namespace, with [`GLOBALS`] defined as empty strings first.
/// Returns the rules and yara-x's warnings, or every compile error (a module left out first).
pub fn compile(sources: &[RuleSource]) -> Result<(yara_x::Rules, Vec<String>), LoadError> {
    let mut compiler = Compiler::new();
    for &name in GLOBALS {
        compiler
            .define_global(name, "")
            .map_err(|source| LoadError::Global { name, source })?;
    }
    for s in sources {
        compiler.new_namespace(&s.namespace);
        let origin = s.path.display().to_string();
        // The first error of a file is also in `errors()`, with those of the other files.
        let _ = compiler.add_source(SourceCode::from(s.text.as_slice()).with_origin(origin));
    }
    let errors = compiler.errors();
    if let Some((err, module)) = errors
        .iter()
        .find_map(|e| unknown_module(e).map(|m| (e, m)))
    {
        let d = diagnostic(err);
        return Err(LoadError::ModuleLeftOut {
            path: d.path,
            line: d.line,
            column: d.column,
            module,
        });
    }
    if !errors.is_empty() {
        return Err(LoadError::Compile {
            errors: errors.iter().map(diagnostic).collect(),
        });
    }
    let warnings = compiler.warnings().iter().map(|w| w.to_string()).collect();
    Ok((compiler.build(), warnings))
}
