use super::*;

const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";
const SHA1_EMPTY: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MD5_ABC: &str = "900150983cd24fb0d6963f7d28e17f72";
const SHA1_ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
const SHA256_ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn d(hex: &str) -> Digest {
    Digest::from_hex(hex).expect("test digest")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write test list");
    p
}

fn load_one(text: &str) -> HashSet {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "list", text);
    HashSet::load(&[p], None).expect("load")
}

#[test]
fn plain_list_one_digest_per_line_each_algo() {
    let s = load_one(&format!("{MD5_EMPTY}\n{SHA1_EMPTY}\n{SHA256_EMPTY}\n"));
    assert_eq!(s.counts(), (1, 1, 1));
    assert_eq!(s.len(), 3);
    assert!(!s.is_empty());
    assert_eq!(s.skipped_lines(), 0);
    assert_eq!(s.sources()[0].format, ListFormat::Sums);
    assert!(s.contains(&d(MD5_EMPTY)));
    assert!(s.contains(&d(SHA1_EMPTY)));
    assert!(s.contains(&d(SHA256_EMPTY)));
}

#[test]
fn contains_true_and_false_per_algo() {
    let s = load_one(&format!("{MD5_ABC}\n{SHA1_ABC}\n{SHA256_ABC}\n"));
    assert!(s.contains(&d(MD5_ABC)));
    assert!(s.contains(&d(SHA1_ABC)));
    assert!(s.contains(&d(SHA256_ABC)));
    assert!(!s.contains(&d(MD5_EMPTY)));
    assert!(!s.contains(&d(SHA1_EMPTY)));
    assert!(!s.contains(&d(SHA256_EMPTY)));
    // The same leading bytes under another algorithm are not a match.
    assert!(!s.contains(&d(&SHA256_ABC[..32])));
    assert!(!s.contains(&d(&SHA256_ABC[..40])));
}

#[test]
fn sha256sum_output_with_names() {
    let s = load_one(&format!(
        "{SHA256_EMPTY}  empty file.txt\n{SHA256_ABC} *bin/abc\n\\{SHA1_ABC}  back\\\\slash\n"
    ));
    assert_eq!(s.counts(), (0, 1, 2));
    assert!(s.contains(&d(SHA256_EMPTY)));
    assert!(s.contains(&d(SHA256_ABC)));
    assert!(s.contains(&d(SHA1_ABC)));
    assert_eq!(s.skipped_lines(), 0);
}

#[test]
fn md5sum_and_bsd_tag_output() {
    let s = load_one(&format!(
        "{MD5_EMPTY}  a\n{MD5_ABC}  b c\nSHA1 (x (1).bin) = {SHA1_ABC}\n"
    ));
    assert_eq!(s.counts(), (2, 1, 0));
    assert!(s.contains(&d(MD5_ABC)));
    assert!(s.contains(&d(SHA1_ABC)));
    assert_eq!(s.sources()[0].format, ListFormat::Sums);
}

#[test]
fn hashdeep_csv_with_its_header() {
    let text = format!(
        "%%%% HASHDEEP-1.0\n\
         %%%% size,md5,sha256,filename\n\
         ## Invoked from: /home/user\n\
         ## $ hashdeep -r .\n\
         ##\n\
         0,{MD5_EMPTY},{SHA256_EMPTY},/home/user/empty\n\
         3,{MD5_ABC},{SHA256_ABC},/home/user/a,b.txt\n"
    );
    let s = load_one(&text);
    assert_eq!(s.sources()[0].format, ListFormat::Hashdeep);
    assert_eq!(s.counts(), (2, 0, 2));
    assert_eq!(s.skipped_lines(), 0);
    for h in [MD5_EMPTY, SHA256_EMPTY, MD5_ABC, SHA256_ABC] {
        assert!(s.contains(&d(h)), "{h}");
    }
}

#[test]
fn hashdeep_column_order_comes_from_the_header() {
    // sha1 before md5, and a data line before any column header is skipped.
    let text = format!(
        "%%%% HASHDEEP-1.0\n\
         1,{MD5_ABC},x\n\
         %%%% size,sha1,md5,filename\n\
         3,{SHA1_ABC},{MD5_ABC},abc\n\
         0,{SHA1_EMPTY},{SHA256_EMPTY},sha256 in the md5 column\n"
    );
    let s = load_one(&text);
    assert_eq!(s.counts(), (1, 2, 0));
    assert!(s.contains(&d(SHA1_ABC)));
    assert!(s.contains(&d(SHA1_EMPTY)));
    assert!(!s.contains(&d(SHA256_EMPTY)));
    assert_eq!(s.skipped_lines(), 1);
}

#[test]
fn nsrl_rds_csv_takes_every_sha1_and_md5() {
    let text = format!(
        "\"SHA-1\",\"MD5\",\"CRC32\",\"FileName\",\"FileSize\",\"ProductCode\",\"OpSystemCode\",\"SpecialCode\"\r\n\
         \"{}\",\"{}\",\"352441C2\",\"a, \"\"quoted\"\" name\",3,1234,\"358\",\"\"\r\n\
         \"{}\",\"{}\",\"00000000\",\"empty\",0,1234,\"358\",\"\"\r\n",
        SHA1_ABC.to_uppercase(),
        MD5_ABC.to_uppercase(),
        SHA1_EMPTY.to_uppercase(),
        MD5_EMPTY.to_uppercase(),
    );
    let s = load_one(&text);
    assert_eq!(s.sources()[0].format, ListFormat::Csv);
    assert_eq!(s.counts(), (2, 2, 0));
    assert_eq!(s.skipped_lines(), 0);
    for h in [SHA1_ABC, MD5_ABC, SHA1_EMPTY, MD5_EMPTY] {
        assert!(s.contains(&d(h)), "{h}");
    }
}

#[test]
fn csv_repeated_header_names_the_columns_again() {
    // Two lists concatenated, the second with its columns in another order.
    let text = format!(
        "\"SHA-1\",\"MD5\",\"FileName\"\n\"{SHA1_ABC}\",\"{MD5_ABC}\",\"abc\"\n\
         \"MD5\",\"SHA-1\",\"FileName\"\n\"{MD5_EMPTY}\",\"{SHA1_EMPTY}\",\"empty\"\n"
    );
    let s = load_one(&text);
    assert_eq!(s.counts(), (2, 2, 0));
    assert_eq!(s.skipped_lines(), 0);
    assert!(s.contains(&d(MD5_EMPTY)) && s.contains(&d(SHA1_EMPTY)));
}

#[test]
fn nsrl_plain_sha1_list() {
    let text = format!(
        "{}\r\n{}\r\n",
        SHA1_ABC.to_uppercase(),
        SHA1_EMPTY.to_uppercase()
    );
    let s = load_one(&text);
    assert_eq!(s.sources()[0].format, ListFormat::Sums);
    assert_eq!(s.counts(), (0, 2, 0));
    assert!(s.contains(&d(SHA1_ABC)));
    assert!(s.contains(&d(SHA1_EMPTY)));
}

#[test]
fn format_is_detected_from_content_not_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "list.sha256",
        &format!("\u{feff}\"SHA-1\",\"FileName\"\n\"{SHA1_ABC}\",\"x\"\n"),
    );
    let s = HashSet::load(&[p], None).expect("load");
    assert_eq!(s.sources()[0].format, ListFormat::Csv);
    assert_eq!(s.counts(), (0, 1, 0));
    // Comments and blank lines before the first header do not decide the format.
    let p = write(
        dir.path(),
        "audit.csv",
        &format!(
            "# exported by ops\n\n%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n0,{MD5_EMPTY},e\n"
        ),
    );
    let s = HashSet::load(&[p], None).expect("load");
    assert_eq!(s.sources()[0].format, ListFormat::Hashdeep);
    assert_eq!(s.counts(), (1, 0, 0));
    assert_eq!(s.skipped_lines(), 0);
}

#[test]
fn mixed_case_hex() {
    let s = load_one(&format!(
        "{}\n{}\n",
        SHA256_ABC.to_uppercase(),
        "D41d8Cd98f00B204e9800998ECF8427e"
    ));
    assert!(s.contains(&d(SHA256_ABC)));
    assert!(s.contains(&d(MD5_EMPTY)));
    assert_eq!(s.counts(), (1, 0, 1));
}

#[test]
fn duplicates_count_once_within_and_across_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(
        dir.path(),
        "a",
        &format!(
            "{SHA256_ABC}\n{}\n{SHA256_ABC}  x\n",
            SHA256_ABC.to_uppercase()
        ),
    );
    let b = write(dir.path(), "b", &format!("{SHA256_ABC}\n{SHA256_EMPTY}\n"));
    let s = HashSet::load(&[a, b], None).expect("load");
    assert_eq!(s.sources()[0].counts, (0, 0, 1));
    assert_eq!(s.sources()[1].counts, (0, 0, 2));
    assert_eq!(s.counts(), (0, 0, 2));
    assert_eq!(s.len(), 2);
}

#[test]
fn distinct_counts_over_overlapping_tables() {
    let big: Vec<[u8; 16]> = (0u16..1000)
        .map(|i| {
            [
                (i >> 8) as u8,
                i as u8,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ]
        })
        .collect();
    let odd: Vec<[u8; 16]> = big.iter().copied().skip(1).step_by(2).collect();
    let mut extra = big[990..].to_vec();
    extra.push([0xff; 16]);
    assert_eq!(distinct(&[&odd, &big, &extra]), 1001);
    assert_eq!(distinct(&[&odd, &extra]), 500 + 6);
    assert_eq!(distinct::<16>(&[]), 0);
}

#[test]
fn blank_and_comment_lines_are_not_skipped_lines() {
    let s = load_one(&format!("# my list\n\n   \n{SHA256_ABC}\n\t\n# end\n"));
    assert_eq!(s.counts(), (0, 0, 1));
    assert_eq!(s.skipped_lines(), 0);
}

#[test]
fn bad_line_is_counted_not_fatal() {
    let s = load_one(&format!(
        "{SHA256_ABC}\nnot a digest\n{}\n{MD5_ABC}\n",
        &SHA256_EMPTY[..63]
    ));
    assert_eq!(s.skipped_lines(), 2);
    assert_eq!(s.counts(), (1, 0, 1));
    assert!(s.contains(&d(MD5_ABC)));
}

#[test]
fn overlong_line_is_skipped_and_the_next_one_read() {
    let long = "x".repeat(200_000);
    let s = load_one(&format!("{long}\n{SHA256_ABC}\n"));
    assert_eq!(s.skipped_lines(), 1);
    assert!(s.contains(&d(SHA256_ABC)));
}

#[test]
fn list_without_any_digest_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "notes.txt", "# header\nhello\nworld\n");
    match HashSet::load(std::slice::from_ref(&p), None) {
        Err(HashSetError::NoDigests {
            path,
            skipped,
            line,
            ..
        }) => {
            assert_eq!(path, p);
            assert_eq!(skipped, 2);
            assert_eq!(line, 2);
        }
        other => panic!("expected NoDigests, got {other:?}"),
    }
    // Empty and comment-only lists are fine: an empty set.
    let e = write(dir.path(), "empty", "# nothing yet\n");
    assert!(HashSet::load(&[e], None).expect("load").is_empty());
}

#[test]
fn missing_file_error_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("nope.txt");
    let err = HashSet::load(std::slice::from_ref(&p), None).expect_err("missing file");
    assert!(matches!(&err, HashSetError::Open { path, .. } if *path == p));
    assert!(err.to_string().contains("nope.txt"), "{err}");
    let idx = dir.path().join("idx");
    let err = HashSet::load(std::slice::from_ref(&p), Some(&idx)).expect_err("missing file");
    assert!(matches!(&err, HashSetError::Open { path, .. } if *path == p));
}

// Unix only: a directory opens as a file (Windows refuses the open).
#[cfg(unix)]
#[test]
fn unreadable_file_error_has_path_and_line() {
    // A directory opens but fails on the first read.
    let dir = tempfile::tempdir().expect("tempdir");
    let err = HashSet::load(&[dir.path().to_path_buf()], None).expect_err("directory");
    match &err {
        HashSetError::Read { path, line, .. } => {
            assert_eq!(path, dir.path());
            assert_eq!(*line, 1);
        }
        other => panic!("expected Read, got {other:?}"),
    }
    assert!(err.to_string().contains("at line 1"), "{err}");
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn index_is_built_once_and_reused() {
    let src = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let idx = cache.path().join("hashsets");
    let p = write(
        src.path(),
        "list",
        &format!("{MD5_ABC}\n{SHA1_ABC}\n{SHA256_ABC}\nbad\n"),
    );
    let first = HashSet::load(std::slice::from_ref(&p), Some(&idx)).expect("first load");
    assert!(!first.sources()[0].from_index);
    let files = index_files(&idx);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        index_files(src.path()),
        vec![p.clone()],
        "nothing written next to the list"
    );

    let second = HashSet::load(std::slice::from_ref(&p), Some(&idx)).expect("second load");
    assert!(second.sources()[0].from_index);
    assert_eq!(second.counts(), (1, 1, 1));
    assert_eq!(second.skipped_lines(), 1);
    assert_eq!(second.sources()[0].format, ListFormat::Sums);
    for h in [MD5_ABC, SHA1_ABC, SHA256_ABC] {
        assert!(second.contains(&d(h)), "{h}");
    }
    assert!(!second.contains(&d(SHA256_EMPTY)));
    assert_eq!(index_files(&idx), files);
}

#[test]
fn index_is_rebuilt_when_the_source_grows() {
    let src = tempfile::tempdir().expect("tempdir");
    let idx = tempfile::tempdir().expect("tempdir");
    let p = write(src.path(), "list", &format!("{SHA256_ABC}\n"));
    let paths = [p.clone()];
    HashSet::load(&paths, Some(idx.path())).expect("first load");
    fs::write(&p, format!("{SHA256_ABC}\n{SHA256_EMPTY}\n")).expect("rewrite");
    let s = HashSet::load(&paths, Some(idx.path())).expect("after change");
    assert!(!s.sources()[0].from_index);
    assert!(s.contains(&d(SHA256_EMPTY)));
    let again = HashSet::load(&paths, Some(idx.path())).expect("reuse");
    assert!(again.sources()[0].from_index);
    assert!(again.contains(&d(SHA256_EMPTY)));
}

#[test]
fn index_is_rebuilt_on_same_size_rewrite_even_with_old_mtime() {
    let src = tempfile::tempdir().expect("tempdir");
    let idx = tempfile::tempdir().expect("tempdir");
    let p = write(src.path(), "list", &format!("{SHA256_ABC}\n"));
    let paths = [p.clone()];
    HashSet::load(&paths, Some(idx.path())).expect("first load");
    let mtime = fs::metadata(&p).and_then(|m| m.modified()).expect("mtime");
    // File times tick coarsely (a few ms): let the rewrite land on a later tick.
    std::thread::sleep(std::time::Duration::from_millis(50));
    // Same length, other digest, mtime put back: only ctime tells.
    fs::write(&p, format!("{SHA256_EMPTY}\n")).expect("rewrite");
    File::options()
        .write(true)
        .open(&p)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    let s = HashSet::load(&paths, Some(idx.path())).expect("after change");
    assert!(!s.sources()[0].from_index);
    assert!(s.contains(&d(SHA256_EMPTY)));
    assert!(!s.contains(&d(SHA256_ABC)));
}

#[test]
fn corrupt_index_is_rebuilt_not_fatal() {
    let src = tempfile::tempdir().expect("tempdir");
    let idx = tempfile::tempdir().expect("tempdir");
    let p = write(src.path(), "list", &format!("{SHA256_ABC}\n{MD5_ABC}\n"));
    let paths = [p.clone()];
    HashSet::load(&paths, Some(idx.path())).expect("first load");
    let files = index_files(idx.path());
    assert_eq!(files.len(), 1);
    let full = fs::read(&files[0]).expect("read index");
    fs::write(&files[0], &full[..full.len() - 5]).expect("truncate index");
    let s = HashSet::load(&paths, Some(idx.path())).expect("load over corrupt index");
    assert!(!s.sources()[0].from_index);
    assert!(s.contains(&d(SHA256_ABC)) && s.contains(&d(MD5_ABC)));
    assert_eq!(fs::read(&files[0]).expect("read index"), full);
}

#[test]
fn each_list_gets_its_own_index() {
    let src = tempfile::tempdir().expect("tempdir");
    let idx = tempfile::tempdir().expect("tempdir");
    let a = write(src.path(), "a", &format!("{SHA256_ABC}\n"));
    let b = write(src.path(), "b", &format!("{MD5_ABC}\n"));
    HashSet::load(&[a.clone(), b.clone()], Some(idx.path())).expect("first");
    assert_eq!(index_files(idx.path()).len(), 2);
    fs::write(&b, format!("{MD5_EMPTY}\n{MD5_ABC}\n")).expect("rewrite b");
    let s = HashSet::load(&[a, b], Some(idx.path())).expect("second");
    assert!(s.sources()[0].from_index);
    assert!(!s.sources()[1].from_index);
    assert_eq!(s.counts(), (2, 0, 1));
}

#[test]
fn unwritable_index_dir_is_a_warning_not_a_failure() {
    let src = tempfile::tempdir().expect("tempdir");
    let p = write(src.path(), "list", &format!("{SHA256_ABC}\n"));
    // A plain file where the index directory should be: nothing can be created in it.
    let not_a_dir = write(src.path(), "cache", "");
    let s = HashSet::load(std::slice::from_ref(&p), Some(&not_a_dir)).expect("load");
    assert!(s.contains(&d(SHA256_ABC)));
    assert!(!s.sources()[0].from_index);
    let warning = s.sources()[0].index_error.as_deref().expect("warning");
    assert!(warning.contains("cannot write hash-set index"), "{warning}");
    assert!(warning.contains("cache"), "{warning}");
    assert_eq!(s.sources()[0].counts, (0, 0, 1));
}

#[test]
fn no_lists_is_an_empty_set() {
    let s = HashSet::load(&[], None).expect("load");
    assert!(s.is_empty());
    assert!(!s.contains(&d(SHA256_ABC)));
}
