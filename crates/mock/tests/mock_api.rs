//! The `mock-api` binary: its `--help` says what it knows and how to teach it more, and
//! `--verdict` does teach it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use hashsweep_mock::{EICAR_MD5, EICAR_SHA1, EICAR_SHA256};

fn mock_api() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mock-api"));
    c.env_remove("METADEFENDER_APIKEY");
    c
}

#[test]
fn help_names_the_digests_it_knows_and_how_to_teach_it() {
    let out = mock_api().arg("--help").output().expect("run mock-api");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("UTF-8");
    for known in ["EICAR", EICAR_SHA256, EICAR_SHA1, EICAR_MD5, "--verdict"] {
        assert!(help.contains(known), "{known} in {help}");
    }
}

/// POST /v4/hash with one hash; the answer's body.
fn ask(addr: &str, hash: &str) -> String {
    let body = format!("{{\"hash\":[\"{hash}\"]}}");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST /v4/hash HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(answer)
}

#[test]
fn verdict_teaches_it_a_hash() {
    let taught = "00112233445566778899aabbccddeeff";
    let mut child = mock_api()
        .args(["--listen", "127.0.0.1:0", "--verdict"])
        .arg(format!("{taught}=2/7"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mock-api");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("an address")
        .to_string();
    let taught_answer = ask(&addr, taught);
    let other = ask(&addr, "ffeeddccbbaa99887766554433221100");
    let eicar = ask(&addr, EICAR_MD5);
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&taught_answer).expect("JSON");
    let r = &v["data"][0]["scan_result_i"];
    assert_eq!(r, 2, "{taught_answer}");
    assert_eq!(v["data"][0]["total_detected_avs"], 7, "{taught_answer}");
    let v: serde_json::Value = serde_json::from_str(&other).expect("JSON");
    assert_eq!(v["data"][0]["scan_result_i"], 5, "{other}");
    let v: serde_json::Value = serde_json::from_str(&eicar).expect("JSON");
    assert_eq!(v["data"][0]["scan_result_i"], 1, "{eicar}");

    let bad = mock_api()
        .args(["--verdict", "nothex=1"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}
