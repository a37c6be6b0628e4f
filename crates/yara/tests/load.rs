//! Loading rules: which files a folder gives and in what order, their namespaces, and compile
//! errors that name file, line and column (a module left out by name) before anything is read.

use std::path::{Path, PathBuf};

use hashsweep_yara::{LoadError, collect_sources, load_cached};

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_folder_gives_its_rule_files_sorted_one_namespace_per_file_unique() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "z.yar", "rule z { condition: true }");
    write(d.path(), "b/a.YARA", "rule a2 { condition: true }");
    write(d.path(), "a.yar", "rule a1 { condition: true }");
    write(d.path(), "notes.txt", "not a rule");
    write(d.path(), "b/c.yara.bak", "not a rule either");
    let single = write(
        d.path(),
        "elsewhere/rules.txt",
        "rule named { condition: true }",
    );
    let sources = collect_sources(&[d.path().to_path_buf(), single]).unwrap();
    let got: Vec<(&str, usize, &str)> = sources
        .iter()
        .map(|s| (s.relative.as_str(), s.arg, s.namespace.as_str()))
        .collect();
    // `elsewhere/` is under the folder too, but holds no .yar/.yara file; the file named on
    // purpose is read whatever its extension.
    assert_eq!(
        got,
        [
            ("a.yar", 0, "a"),
            ("b/a.YARA", 0, "a_2"),
            ("z.yar", 0, "z"),
            ("rules.txt", 1, "rules"),
        ]
    );
    // And the namespaces are the ones matches report.
    let loaded = load_cached(&[d.path().to_path_buf()], None).unwrap();
    assert_eq!(loaded.rule_count, 3);
    assert_eq!(loaded.files, 3);
    let mut names: Vec<String> = loaded
        .rules
        .iter()
        .map(|r| format!("{}:{}", r.namespace(), r.identifier()))
        .collect();
    names.sort();
    assert_eq!(names, ["a:a1", "a_2:a2", "z:z"]);
}

#[test]
fn an_empty_folder_or_a_missing_path_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "readme.md", "no rules here");
    let err = load_cached(&[d.path().to_path_buf()], None).unwrap_err();
    assert!(matches!(err, LoadError::NoRules { .. }), "{err:?}");
    assert!(err.to_string().contains(&d.path().display().to_string()));
    let missing = d.path().join("nope.yar");
    let err = load_cached(std::slice::from_ref(&missing), None).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.yar"), "{err}");
}

#[test]
fn a_compile_error_names_file_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "good.yar", "rule fine { condition: true }");
    // Line 4, column 14: the undefined `$b`.
    let bad = write(
        d.path(),
        "sub/bad.yar",
        "rule broken {\n  strings:\n    $a = \"x\"\n  condition: $b\n}\n",
    );
    let err = load_cached(&[d.path().to_path_buf()], None).unwrap_err();
    let LoadError::Compile { errors } = &err else {
        panic!("expected a compile error, got {err:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    // (Compared as paths: on Windows the crate's `\` and the test's `/` are both separators.)
    assert_eq!(Path::new(&e.path), bad);
    assert_eq!((e.line, e.column), (4, 14), "{e:?}");
    assert!(e.title.contains("$b"), "{e:?}");
    // The same place as yara-x's own rendering of the error says.
    assert!(
        e.text.contains(&format!("--> {}:4:14", e.path)),
        "{}",
        e.text
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}:4:14: error[E025]", e.path)),
        "{err}"
    );
}

#[test]
fn errors_in_two_files_are_both_reported() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "one.yar", "rule a { condition: nope }");
    write(d.path(), "two.yar", "\n\nrule b { condition: true and }");
    let err = load_cached(&[d.path().to_path_buf()], None).unwrap_err();
    let LoadError::Compile { errors } = &err else {
        panic!("{err:?}");
    };
    let at: Vec<(String, u64)> = errors
        .iter()
        .map(|e| {
            (
                Path::new(&e.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                e.line,
            )
        })
        .collect();
    assert_eq!(at, [("one.yar".to_string(), 1), ("two.yar".to_string(), 3)]);
    assert!(err.to_string().contains("(and 1 more errors)"), "{err}");
}

#[test]
fn a_module_left_out_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    // `cuckoo` exists in yara-x but this build leaves it out; `pe` is in.
    write(
        d.path(),
        "sandbox.yar",
        "import \"pe\"\nimport \"cuckoo\"\nrule r { condition: pe.is_pe }",
    );
    let err = load_cached(&[d.path().to_path_buf()], None).unwrap_err();
    let LoadError::ModuleLeftOut {
        module,
        line,
        column,
        path,
    } = &err
    else {
        panic!("expected ModuleLeftOut, got {err:?}");
    };
    assert_eq!(module, "cuckoo");
    // yara-x points at the `import` statement.
    assert_eq!((*line, *column), (2, 1));
    assert!(path.ends_with("sandbox.yar"));
    assert!(err.to_string().contains("module `cuckoo`"), "{err}");
    // The modules that are in compile.
    write(
        d.path(),
        "sandbox.yar",
        "import \"pe\"\nimport \"dotnet\"\nimport \"hash\"\nimport \"elf\"\nimport \"math\"\n\
         rule r { condition: pe.is_pe }",
    );
    load_cached(&[d.path().to_path_buf()], None).unwrap();
}
