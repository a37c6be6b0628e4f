//! The README and the user guide (`docs/`, an mdBook) hold together: the README stays short,
//! every link between them (and inside the guide) lands on a chapter and a heading that exist,
//! the book's table of contents lists every chapter, its `{{#include}}`s name anchors the
//! README has, the flags chapter names every flag `--help` shows and no other, and every
//! `hashsweep SUB --flag` the pages show is a flag SUB has. The examples of both are run by
//! `readme.rs`, which finds its blocks in [`docs`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::util::*;

/// The README may grow to about 20 KB; past that, what it gained belongs in a chapter.
pub const README_LIMIT: usize = 20 * 1024;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn guide_src() -> PathBuf {
    root().join("docs/src")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every Markdown file of the guide, as (name relative to the repository, text).
pub fn docs() -> Vec<(String, String)> {
    let mut all = vec![("README.md".to_string(), read(&root().join("README.md")))];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(guide_src())
        .expect("docs/src")
        .map(|e| e.expect("docs/src entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    for p in chapters {
        let name = format!("docs/src/{}", p.file_name().unwrap().to_string_lossy());
        all.push((name, read(&p)));
    }
    all
}

/// The lines of `text` outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The id mdBook (and GitHub, for these headings) gives a heading: its text without the
/// Markdown marks, lower-cased; letters, digits, `-` and `_` kept, spaces made `-`, the rest
/// dropped. A repeated id gets `-1`, `-2`, ... as mdBook numbers them.
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for line in prose(text) {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let id: String = title
            .trim()
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    Some(c.to_lowercase().next().unwrap_or(c))
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let n = seen.entry(id.clone()).or_insert(0);
        ids.insert(if *n == 0 {
            id.clone()
        } else {
            format!("{id}-{n}")
        });
        *n += 1;
    }
    ids
}

/// The targets of the inline Markdown links `[text](target)` in the prose of `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

/// The heading ids of a Markdown file, its README anchors included where a chapter includes
/// part of the README (`{{#include ../../README.md:NAME}}`).
fn ids_of(path: &Path) -> BTreeSet<String> {
    let text = read(path);
    let mut ids = heading_ids(&text);
    for name in includes(&text) {
        ids.extend(heading_ids(&readme_anchor(&name)));
    }
    ids
}

/// Every relative link of `file` (a repository path) resolved and checked: the file exists
/// and, for `#anchor`, a heading of that id is in it. Returns the problems found.
fn check_links(file: &str, text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let dir = root().join(file).parent().unwrap().to_path_buf();
    for target in link_targets(text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            root().join(file)
        } else {
            dir.join(path)
        };
        if !resolved.exists() {
            bad.push(format!(
                "{file}: ({target}): no file {}",
                resolved.display()
            ));
            continue;
        }
        if let Some(anchor) = anchor {
            if resolved.extension().is_none_or(|x| x != "md") {
                bad.push(format!(
                    "{file}: ({target}): an anchor into a file that is not Markdown"
                ));
            } else if !ids_of(&resolved).contains(anchor) {
                bad.push(format!("{file}: ({target}): no heading #{anchor} there"));
            }
        }
    }
    bad
}

#[test]
fn the_readme_stays_under_about_20_kb() {
    let size = read(&root().join("README.md")).len();
    assert!(
        size <= README_LIMIT,
        "README.md is {size} bytes, more than {README_LIMIT}: move the detail to a chapter of docs/src"
    );
}

#[test]
fn every_readme_link_into_the_guide_lands_on_a_chapter_and_heading() {
    let readme = read(&root().join("README.md"));
    let into_docs: Vec<String> = link_targets(&readme)
        .into_iter()
        .filter(|t| t.starts_with("docs/"))
        .collect();
    // The common tasks table links each task to its chapter, so there are many.
    assert!(into_docs.len() >= 9, "{into_docs:?}");
    let bad = check_links("README.md", &readme);
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn every_link_inside_the_guide_lands_on_a_chapter_and_heading() {
    let mut bad = Vec::new();
    let mut links = 0;
    for (name, text) in docs().into_iter().skip(1) {
        links += link_targets(&text).len();
        bad.extend(check_links(&name, &text));
    }
    assert!(links > 50, "{links} links");
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_table_of_contents_lists_every_chapter_once() {
    let summary = read(&guide_src().join("SUMMARY.md"));
    let listed: Vec<String> = link_targets(&summary);
    let unique: BTreeSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a chapter listed twice: {listed:?}"
    );
    let files: BTreeSet<String> = docs()
        .into_iter()
        .skip(1)
        .map(|(n, _)| n.trim_start_matches("docs/src/").to_string())
        .filter(|n| n != "SUMMARY.md")
        .collect();
    let listed: BTreeSet<String> = listed.into_iter().collect();
    assert_eq!(listed, files, "SUMMARY.md and the files of docs/src differ");
    // mdbook would make up an empty page for a missing one; the book says not to.
    let book = read(&root().join("docs/book.toml"));
    assert!(book.contains("create-missing = false"), "{book}");
}

/// The names of the README parts a chapter includes (`{{#include ../../README.md:NAME}}`).
fn includes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{#include ") {
        let after = &rest[at + 11..];
        let end = after.find("}}").expect("a closed include");
        let spec = after[..end].trim();
        let (file, anchor) = spec
            .split_once(':')
            .unwrap_or_else(|| panic!("{spec}: include a named part, not a whole file"));
        assert_eq!(
            file, "../../README.md",
            "only the README is included: {spec}"
        );
        found.push(anchor.to_string());
        rest = &after[end..];
    }
    found
}

/// The text between the README's `ANCHOR: name` and `ANCHOR_END: name` lines.
fn readme_anchor(name: &str) -> String {
    let readme = read(&root().join("README.md"));
    let start = format!("<!-- ANCHOR: {name} -->\n");
    let end = format!("<!-- ANCHOR_END: {name} -->");
    let a = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README.md has no ANCHOR: {name}"))
        + start.len();
    let b = readme[a..]
        .find(&end)
        .unwrap_or_else(|| panic!("README.md has no ANCHOR_END: {name}"));
    readme[a..a + b].to_string()
}

#[test]
fn the_parts_of_the_readme_the_guide_includes_are_there_and_not_empty() {
    let mut names = Vec::new();
    for (file, text) in docs().into_iter().skip(1) {
        for name in includes(&text) {
            let part = readme_anchor(&name);
            assert!(
                part.trim().len() > 100,
                "{file} includes README part {name:?}, which is empty"
            );
            names.push(name);
        }
    }
    for needed in ["intro", "setup", "exit-status", "config"] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }
}

/// The long flags `hashsweep SUB --help` shows, for every subcommand `hashsweep --help` lists.
fn flags_in_help() -> BTreeMap<String, Vec<String>> {
    let top = String::from_utf8(run(cmd().arg("--help")).stdout).expect("UTF-8 help");
    let subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|s| s != "help")
        .collect();
    assert!(subs.len() >= 8, "{subs:?}");
    let mut flags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sub in subs {
        let help = String::from_utf8(run(cmd().args([sub.as_str(), "--help"])).stdout)
            .expect("UTF-8 help");
        for line in help.lines() {
            // Option lines are indented by 2 (`-x, --long`) or 6 (`--long`); their text, and
            // its wrapped lines, further.
            let t = line.trim_start();
            if line.len() - t.len() > 6 {
                continue;
            }
            let b = t.as_bytes();
            let t = if b.len() > 4 && b[0] == b'-' && b[1] != b'-' && &t[2..4] == ", " {
                &t[4..]
            } else {
                t
            };
            let Some(name) = t.strip_prefix("--") else {
                continue;
            };
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() && name != "help" {
                let subs = flags.entry(format!("--{name}")).or_default();
                if !subs.contains(&sub) {
                    subs.push(sub.clone());
                }
            }
        }
    }
    flags
}

#[test]
fn the_flags_chapter_names_every_flag_of_every_subcommand_and_no_other() {
    let chapter = read(&guide_src().join("flags.md"));
    let in_chapter: BTreeSet<String> = chapter
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            let cell = l[3..].split('`').next().unwrap_or("");
            cell.split(", ")
                .filter_map(|f| f.split([' ', '[']).next())
                .filter(|f| f.starts_with("--"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let help = flags_in_help();
    assert!(help.len() > 60, "{help:?}");
    let missing: Vec<_> = help
        .iter()
        .filter(|(f, _)| !in_chapter.contains(*f))
        .map(|(f, subs)| format!("{f} ({})", subs.join(", ")))
        .collect();
    assert!(missing.is_empty(), "docs/src/flags.md lacks {missing:?}");
    let unknown: Vec<_> = in_chapter
        .iter()
        .filter(|f| !help.contains_key(*f))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/src/flags.md names flags no --help shows: {unknown:?}"
    );
}

#[test]
fn heading_ids_follow_mdbook() {
    // Ids as mdbook 0.5.4 wrote them for these headings (docs/book/*.html).
    let ids = heading_ids(
        "# Inside archives (`--archives`)\n## CIRCL hashlookup's Bloom filter\n\
         ```sh\n# a comment, not a heading\n```\n## Limits\n## Limits\n",
    );
    let want: BTreeSet<String> = [
        "inside-archives---archives",
        "circl-hashlookups-bloom-filter",
        "limits",
        "limits-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(ids, want);
}

/// The `hashsweep SUB ...` commands the README and the guide show, in code spans and in sh
/// and ini (systemd) blocks: (where, subcommand, the long flags given).
fn commands_shown() -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    for (name, text) in docs() {
        let mut pieces: Vec<String> = Vec::new();
        let mut fenced = None;
        for line in text.lines() {
            if let Some(lang) = line.trim_start().strip_prefix("```") {
                fenced = match fenced {
                    None => Some(lang.to_string()),
                    Some(_) => None,
                };
                continue;
            }
            match fenced.as_deref() {
                Some("sh" | "ini") => pieces.push(line.to_string()),
                Some(_) => {}
                None => pieces.extend(line.split('`').skip(1).step_by(2).map(str::to_string)),
            }
        }
        // A command continued on the next line (` \` at the end) is one command.
        let joined = pieces.join("\n").replace("\\\n", " ");
        for piece in joined.lines() {
            let words: Vec<&str> = piece.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                if !(w.ends_with("hashsweep") || w.ends_with("/hashsweep")) {
                    continue;
                }
                let Some(sub) = words.get(i + 1) else {
                    continue;
                };
                let flags = words[i + 2..]
                    .iter()
                    .take_while(|w| !matches!(**w, "|" | "&&" | ">" | ";" | "&" | "#"))
                    .filter(|w| w.starts_with("--") && w.len() > 2)
                    .map(|w| w.split('=').next().unwrap_or(w).to_string())
                    .collect();
                found.push((name.clone(), sub.to_string(), flags));
            }
        }
    }
    found
}

#[test]
fn every_command_shown_uses_flags_its_subcommand_has() {
    let help = flags_in_help();
    let subs: BTreeSet<&String> = help.values().flatten().collect();
    let mut checked = 0;
    let mut bad = Vec::new();
    for (file, sub, flags) in commands_shown() {
        if !subs.contains(&sub) {
            continue; // `hashsweep: ...` log lines, `hashsweep/<version>`, ...
        }
        for flag in flags {
            checked += 1;
            if !help.get(&flag).is_some_and(|s| s.contains(&sub)) {
                bad.push(format!("{file}: hashsweep {sub} ... {flag}"));
            }
        }
    }
    assert!(checked > 50, "{checked} flags checked");
    assert!(
        bad.is_empty(),
        "flags the subcommand does not have:\n{}",
        bad.join("\n")
    );
}
