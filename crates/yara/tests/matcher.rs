//! The per-worker matcher: globals visible to rules, blocks fed as the hasher reads them giving
//! the same matches as the whole file, the size cap, the timeout, and the record's shape.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hashsweep_yara::{
    FileGlobals, MAX_MATCH_BYTES, MAX_STRINGS_PER_RULE, Matcher, NotMatched, Outcome, load_cached,
};

fn rules(text: &str) -> yara_x::Rules {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.yar");
    std::fs::write(&p, text).unwrap();
    load_cached(&[p], None).unwrap().rules
}

fn names(o: &Outcome) -> Vec<String> {
    match o {
        Outcome::Matched { rules } => rules.iter().map(|r| r.name()).collect(),
        _ => Vec::new(),
    }
}

fn scan(m: &mut Matcher<'_>, g: &FileGlobals<'_>, blocks: &[&[u8]]) -> Outcome {
    m.begin(g);
    for b in blocks {
        m.feed(b);
    }
    m.finish()
}

#[test]
fn the_five_globals_are_set_per_file() {
    let r = rules(
        r#"
        rule by_name { condition: filename == "invoice.pdf.exe" }
        rule by_ext { condition: extension == "exe" }
        rule by_path { condition: filepath contains "Temp" }
        rule by_type { condition: filetype == "EXE" }
        rule by_owner { condition: owner == "bob" }
        "#,
    );
    let mut m = Matcher::new(&r, 1024, 0);
    let g = FileGlobals {
        filename: "invoice.pdf.exe",
        filepath: "C:\\Users\\bob\\AppData\\Local\\Temp",
        extension: "exe",
        filetype: "EXE",
        owner: "bob",
    };
    assert_eq!(
        names(&scan(&mut m, &g, &[b"MZ"])),
        [
            "t:by_name",
            "t:by_ext",
            "t:by_path",
            "t:by_type",
            "t:by_owner"
        ]
    );
    // The next file's globals replace them (nothing left over from the previous file).
    let g2 = FileGlobals {
        filename: "notes.txt",
        extension: "txt",
        ..FileGlobals::default()
    };
    assert_eq!(scan(&mut m, &g2, &[b"MZ"]), Outcome::NoMatch);
    assert_eq!(
        names(&scan(&mut m, &g, &[])),
        names(&scan(&mut m, &g, &[b"x"]))
    );
}

#[test]
fn blocks_are_matched_as_one_file_across_their_boundaries() {
    // A pattern split between two blocks, a header check and filesize: the block scanner of
    // yara-x would miss all three.
    let r = rules(
        r#"
        rule split { strings: $a = "HELLOWORLD" condition: $a at 4 }
        rule header { condition: uint16(0) == 0x5a4d }
        rule size { condition: filesize == 14 }
        "#,
    );
    let mut m = Matcher::new(&r, 1024, 0);
    let g = FileGlobals::default();
    let o = scan(&mut m, &g, &[b"MZ..HELL", b"OWORLD"]);
    assert_eq!(names(&o), ["t:split", "t:header", "t:size"]);
    // Reused for the next file: the buffer starts empty again.
    assert_eq!(
        names(&scan(&mut m, &g, &[b"HELLOWORLD"])),
        Vec::<String>::new()
    );
}

#[test]
fn files_over_the_cap_are_not_matched_and_say_so() {
    let r = rules(r#"rule any_a { strings: $a = "a" condition: $a }"#);
    let mut m = Matcher::new(&r, 10, 0);
    let g = FileGlobals::default();
    // Exactly the cap: matched.
    assert_eq!(names(&scan(&mut m, &g, &[b"aaaaa", b"aaaaa"])), ["t:any_a"]);
    // One byte over, in the second block or the first: too big, with the whole size.
    let over = scan(&mut m, &g, &[b"aaaaa", b"aaaaaa", b"aaaaaaaaaaaaaaa"]);
    assert_eq!(
        over,
        Outcome::NotMatched {
            reason: NotMatched::TooBig { size: 26, cap: 10 }
        }
    );
    assert_eq!(
        serde_json::to_value(&over).unwrap(),
        serde_json::json!({"status": "not_matched", "reason": "too_big", "size": 26, "cap": 10})
    );
    assert!(matches!(
        scan(&mut m, &g, &[&[b'a'; 11]]),
        Outcome::NotMatched {
            reason: NotMatched::TooBig { size: 11, cap: 10 }
        }
    ));
    // And the next small file is matched again.
    assert_eq!(names(&scan(&mut m, &g, &[b"a"])), ["t:any_a"]);
    assert_eq!(hashsweep_yara::DEFAULT_MAX_SIZE, 64 << 20);
}

#[test]
fn a_slow_rule_times_out_after_the_per_file_timeout() {
    // Quadratic in the file size: 200 000² iterations take far longer than a second.
    let r = rules(
        r#"
        rule slow {
          condition:
            for any i in (0..filesize) : (
              for any j in (0..filesize) : ( uint8(i) + uint8(j) == 1000 )
            )
        }
        "#,
    );
    let mut m = Matcher::new(&r, 1 << 20, 1);
    let data = vec![0u8; 200_000];
    let start = Instant::now();
    let o = scan(&mut m, &FileGlobals::default(), &[&data]);
    let took = start.elapsed();
    assert_eq!(
        o,
        Outcome::NotMatched {
            reason: NotMatched::Timeout { seconds: 1 }
        }
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The scanner is still usable for the next file.
    assert_eq!(
        scan(&mut m, &FileGlobals::default(), &[b"x"]),
        Outcome::NoMatch
    );
}

#[test]
fn the_record_follows_yr_ndjson_and_caps_the_strings() {
    let r = rules(
        r#"
        rule many : tag1 tag2 {
          meta:
            description = "many matches"
            score = 70
            ok = true
            author = "a"
            author = "b"
          strings:
            $x = "ab"
            $long = /Z{130}/
            $xor = "secret" xor(1-255)
          condition: any of them
        }
        "#,
    );
    let mut m = Matcher::new(&r, 1 << 20, 0);
    let secret_x5: Vec<u8> = b"secret".iter().map(|b| b ^ 5).collect();
    let mut data = b"ab\n".repeat(12);
    data.extend_from_slice(&[b'Z'; 130]);
    data.extend_from_slice(&secret_x5);
    let o = scan(&mut m, &FileGlobals::default(), &[&data]);
    let Outcome::Matched { rules } = &o else {
        panic!("{o:?}")
    };
    let v = serde_json::to_value(&rules[0]).unwrap();
    assert_eq!(v["identifier"], "many");
    assert_eq!(v["namespace"], "t");
    assert_eq!(v["tags"], serde_json::json!(["tag1", "tag2"]));
    assert_eq!(
        v["meta"],
        serde_json::json!([
            ["description", "many matches"],
            ["score", 70],
            ["ok", true],
            ["author", "a"],
            ["author", "b"]
        ])
    );
    let strings = v["strings"].as_array().unwrap();
    // 12 matches of $x, 1 of $long, 1 of $xor: the first 10 kept, in yr's order.
    assert_eq!(strings.len(), MAX_STRINGS_PER_RULE);
    assert_eq!(v["strings_omitted"], 14 - MAX_STRINGS_PER_RULE as u64);
    assert_eq!(
        strings[0],
        serde_json::json!({"identifier": "$x", "offset": 0, "match": "ab"})
    );
    assert_eq!(strings[9]["offset"], 27);
    // Without a cap, the long and xor matches: yr's escaping and " ... N more bytes".
    let mut m2 = Matcher::new(&r, 1 << 20, 0);
    let tail = data[36..].to_vec();
    let o = scan(&mut m2, &FileGlobals::default(), &[&tail]);
    let Outcome::Matched { rules } = &o else {
        panic!("{o:?}")
    };
    let v = serde_json::to_value(&rules[0]).unwrap();
    assert!(v.get("strings_omitted").is_none(), "{v}");
    let long = &v["strings"][0];
    assert_eq!(long["identifier"], "$long");
    assert_eq!(
        long["match"],
        format!("{} ... 10 more bytes", "Z".repeat(MAX_MATCH_BYTES))
    );
    let xor = &v["strings"][1];
    assert_eq!(xor["identifier"], "$xor");
    assert_eq!(xor["offset"], 130);
    assert_eq!(xor["xor_key"], 5);
    assert_eq!(xor["plaintext"], "secret");
    let shown: Vec<u8> = secret_x5.iter().flat_map(|b| b.escape_ascii()).collect();
    assert_eq!(xor["match"], String::from_utf8(shown).unwrap());
}

#[test]
fn rules_are_shared_and_each_thread_owns_its_matcher() {
    let d = tempfile::tempdir().unwrap();
    let p: PathBuf = d.path().join("t.yar");
    std::fs::write(&p, r#"rule mz { condition: uint16(0) == 0x5a4d }"#).unwrap();
    let loaded = load_cached(&[p], None).unwrap();
    let rules = &loaded.rules;
    std::thread::scope(|s| {
        for i in 0..2 {
            s.spawn(move || {
                let mut m = Matcher::new(rules, 1 << 20, 0);
                for _ in 0..50 {
                    let data: &[u8] = if i == 0 { b"MZ\x90\x00" } else { b"\x7fELF" };
                    let o = scan(&mut m, &FileGlobals::default(), &[data]);
                    assert_eq!(names(&o).len(), 1 - i);
                }
            });
        }
    });
}
