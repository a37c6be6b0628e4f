//! Archive members to and from the digest cache (`--archives` with the cache): what a sweep
//! found inside an archive file becomes an [`ArchiveRow`] under the file's [`FileKey`], and
//! an unchanged archive's row becomes its members' results again, without decompressing it.
//! The settings that shape what is found (formats, depth, limits) are part of the key.

use std::path::Path;

use super::archive::{ArchiveOptions, Inside, member_result};
use super::hash::{FileResult, FileStatus, Origin};
use hashsweep_cache::{ArchiveRow, MemberRow, MemberState};
use hashsweep_core::file::FileMeta;

/// The settings an archive's row is kept under: a row read with other settings is a miss.
/// `r2` names this way of reading (r2: sparse tar members, duplicate names, ar/cpio/rpm); a
/// change to what the reading finds bumps it.
pub fn fingerprint(o: &ArchiveOptions) -> String {
    format!(
        "r2 formats={} depth={} max-bytes={} max-member={} max-members={} max-ratio={}",
        o.formats.names().join(","),
        o.depth,
        o.max_bytes,
        o.max_member,
        o.max_members,
        o.max_ratio
    )
}

/// The row for an archive file read in this run, from its result and its members' (which
/// follow it); `None` when it must not be kept (see [`Inside::Container`]'s `repeatable`).
/// A file that proved no archive (`archive` unset) keeps an empty, unopened row.
pub fn to_row(container: &FileResult, members: &[FileResult]) -> Option<ArchiveRow> {
    let (complete, note) = match container.archive.as_deref() {
        None => {
            return Some(ArchiveRow {
                opened: false,
                complete: true,
                note: None,
                members: Vec::new(),
            });
        }
        Some(Inside::Container {
            complete,
            note,
            repeatable: true,
        }) => (*complete, note.as_deref().map(str::to_string)),
        Some(_) => return None,
    };
    let mut rows = Vec::with_capacity(members.len());
    for m in members {
        let (_, inside) = m.container_member()?;
        let state = match &m.status {
            FileStatus::Hashed { digests, kind, .. } => MemberState::Hashed(*digests, *kind),
            FileStatus::Skipped(why) => MemberState::Skipped(why.clone()),
            FileStatus::Error(why) => MemberState::Error(why.clone()),
            FileStatus::Interrupted => return None,
        };
        rows.push(MemberRow {
            member: inside.as_os_str().as_encoded_bytes().to_vec(),
            size: m.size,
            state,
            note: m.archive_note().map(str::to_string),
        });
    }
    Some(ArchiveRow {
        opened: true,
        complete,
        note,
        members: rows,
    })
}

/// The archive's [`Inside`] (`None`: not opened) and its members' results, from its row, for
/// the file at `path` as it is now (`meta`).
pub fn from_row(
    path: &Path,
    meta: &FileMeta,
    row: ArchiveRow,
) -> (Option<Inside>, Vec<FileResult>) {
    if !row.opened {
        return (None, Vec::new());
    }
    let container = path.as_os_str().as_encoded_bytes();
    let members = row
        .members
        .into_iter()
        .map(|m| {
            let mut joined = Vec::with_capacity(container.len() + 1 + m.member.len());
            joined.extend_from_slice(container);
            joined.push(b'!');
            joined.extend_from_slice(&m.member);
            let status = match m.state {
                MemberState::Hashed(digests, kind) => FileStatus::Hashed {
                    digests,
                    meta: *meta,
                    warning: None,
                    origin: Origin::ArchiveCache,
                    kind,
                    rules: None,
                },
                MemberState::Skipped(why) => FileStatus::Skipped(why),
                MemberState::Error(why) => FileStatus::Error(why),
            };
            let mut r = member_result(container, &joined, m.size, status);
            if let Some(Inside::Member { note, .. }) = r.archive.as_deref_mut() {
                *note = m.note.map(String::into_boxed_str);
            }
            r
        })
        .collect();
    (
        Some(Inside::Container {
            complete: row.complete,
            note: row.note.map(String::into_boxed_str),
            repeatable: true,
        }),
        members,
    )
}
