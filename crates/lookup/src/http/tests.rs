use super::pacing::{Permit, RAISE_AFTER};
use super::*;

#[test]
fn the_key_is_scrubbed_in_any_case_and_in_pieces() {
    let key = "0123456789abcdefABCDEF0123456789";
    let clean = |s: &str| {
        let out = scrub_key(s, key);
        let low = out.to_ascii_lowercase();
        let k = key.to_ascii_lowercase();
        for w in k.as_bytes().windows(SCRUB_PIECE) {
            assert!(!low.contains(std::str::from_utf8(w).unwrap()), "{out}");
        }
        out
    };
    assert_eq!(clean(&format!("bad key {key}!")), "bad key [redacted]!");
    assert_eq!(
        clean(&format!("bad key {}!", key.to_ascii_lowercase())),
        "bad key [redacted]!"
    );
    assert_eq!(
        clean("key starts 01234567, ends"),
        "key starts [redacted], ends"
    );
    assert_eq!(clean("EF012345x"), "[redacted]x");
    // Shorter pieces are not the key; other text passes unchanged.
    assert_eq!(clean("0123456 is fine, é too"), "0123456 is fine, é too");
}
use std::sync::Arc;

fn cfg(url: &str) -> ClientConfig {
    ClientConfig::new(url, ApiKey::new("k").unwrap())
}

#[test]
fn plain_http_only_for_loopback_unless_insecure() {
    assert!(HttpClient::new(cfg("http://127.0.0.1:9")).is_ok());
    assert!(HttpClient::new(cfg("http://localhost:9/")).is_ok());
    assert!(HttpClient::new(cfg("https://api.metadefender.com")).is_ok());
    assert!(matches!(
        HttpClient::new(cfg("http://gw.example:8737")),
        Err(ClientError::PlainHttp(_))
    ));
    let mut c = cfg("http://gw.example:8737");
    c.insecure_http = true;
    assert!(HttpClient::new(c).is_ok());
    assert!(HttpClient::new(cfg("ftp://x")).is_err());
}

#[test]
fn path_is_joined_to_base() {
    let c = HttpClient::new(cfg("http://127.0.0.1:9/metadefender/")).unwrap();
    assert_eq!(
        c.endpoint.as_str(),
        "http://127.0.0.1:9/metadefender/v4/hash"
    );
}

#[test]
fn a_trailing_v4_is_dropped_with_a_notice() {
    for url in [
        "https://api.metadefender.com/v4",
        "https://api.metadefender.com/v4/",
        "https://api.metadefender.com/V4",
    ] {
        let (endpoint, notice) = join_endpoint(url).unwrap();
        assert_eq!(endpoint.as_str(), "https://api.metadefender.com/v4/hash");
        let notice = notice.expect("a notice");
        assert!(
            notice.contains("using https://api.metadefender.com as the base")
                && notice.contains("without /v4"),
            "{notice}"
        );
    }
    for (url, want) in [
        (
            "https://api.metadefender.com",
            "https://api.metadefender.com/v4/hash",
        ),
        (
            "http://127.0.0.1:9/metadefender/",
            "http://127.0.0.1:9/metadefender/v4/hash",
        ),
        ("https://gw.example/v4x", "https://gw.example/v4x/v4/hash"),
        ("https://v4", "https://v4/v4/hash"),
    ] {
        let (endpoint, notice) = join_endpoint(url).unwrap();
        assert_eq!((endpoint.as_str(), notice), (want, None), "{url}");
    }
    // A password in the URL is not repeated in the notice.
    let (_, notice) = join_endpoint("https://u:hunter2@proxy.example/v4").unwrap();
    assert!(!notice.unwrap().contains("hunter2"));
    let c = HttpClient::new(cfg("http://127.0.0.1:9/v4/")).unwrap();
    assert_eq!(c.endpoint(), "http://127.0.0.1:9/v4/hash");
    assert!(c.notice().is_some());
}

#[test]
fn rate_headers_in_either_casing_and_form() {
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-reset-in", HeaderValue::from_static("86400s"));
    h.insert("x-ratelimit-limit", HeaderValue::from_static("4000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("3999"));
    let r = RateHeaders::read(&h);
    assert_eq!(
        r,
        RateHeaders {
            limit: Some(4000),
            remaining: Some(3999),
            reset_in: Some(Duration::from_secs(86400))
        }
    );
    assert_eq!(retry_after(&h), None, "reset-in is not a time to wait");
    let mut h = HeaderMap::new();
    h.insert("X-RateLimit-Reset-In", HeaderValue::from_static("3294"));
    h.insert("X-RateLimit-Remaining", HeaderValue::from_static(" 0 "));
    h.insert("Retry-After", HeaderValue::from_static("2"));
    let r = RateHeaders::read(&h);
    assert_eq!(
        (r.remaining, r.reset_in),
        (Some(0), Some(Duration::from_secs(3294)))
    );
    assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
    assert_eq!(RateHeaders::read(&HeaderMap::new()), RateHeaders::default());
}

/// Found by the `vendor_answer` fuzz target: seconds past `u64` panicked, and seconds
/// within it but past `SystemTime` would have panicked in `merge`. Such a header is ignored.
#[test]
fn absurd_seconds_in_rate_headers_are_ignored_not_a_panic() {
    for absurd in [
        "8640055555555555555555555",
        "1e300",
        "18446744073709551616",
        "1e10s",
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-reset-in",
            HeaderValue::from_str(absurd).unwrap(),
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("5"));
        h.insert("retry-after", HeaderValue::from_str(absurd).unwrap());
        let r = RateHeaders::read(&h);
        assert_eq!(r.reset_in, None, "{absurd}");
        assert_eq!(retry_after(&h), None, "{absurd}");
        let b = r.merge(None, SystemTime::now()).unwrap();
        assert_eq!(b.remaining, 5);
    }
}

#[test]
fn the_budget_keeps_the_lowest_remaining_of_a_window() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let seen = |remaining, reset_in| RateHeaders {
        limit: Some(100),
        remaining: Some(remaining),
        reset_in: Some(Duration::from_secs(reset_in)),
    };
    let b = seen(90, 500).merge(None, t0);
    assert_eq!(
        b,
        Some(Budget {
            limit: Some(100),
            remaining: 90,
            resets_at: Some(t0 + Duration::from_secs(500))
        })
    );
    // An answer of an earlier request, arriving late, does not raise it.
    let t1 = t0 + Duration::from_secs(10);
    let b = seen(95, 490).merge(b, t1);
    assert_eq!(b.unwrap().remaining, 90);
    let b = seen(80, 489).merge(b, t1);
    assert_eq!(b.unwrap().remaining, 80);
    // Headers without a remaining count change nothing.
    assert_eq!(RateHeaders::default().merge(b, t1), b);
    // A window that ends later than this one is a new window.
    let b2 = seen(100, 86_400).merge(b, t1);
    assert_eq!(b2.unwrap().remaining, 100);
    // So is any answer after the window's end.
    let t2 = t0 + Duration::from_secs(501);
    let b3 = RateHeaders {
        remaining: Some(99),
        ..RateHeaders::default()
    }
    .merge(b, t2);
    assert_eq!((b3.unwrap().remaining, b3.unwrap().resets_at), (99, None));
}

#[test]
fn a_short_window_spent_does_not_spend_the_day() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = Duration::from_secs(86_000);
    let daily = RateHeaders {
        limit: Some(100_000),
        remaining: Some(99_900),
        reset_in: Some(day),
    };
    let b = daily.merge(None, t0);
    // A throttle of a window that ends in a second, with nothing left in it.
    let short = RateHeaders {
        limit: Some(100_000),
        remaining: Some(0),
        reset_in: Some(Duration::from_secs(1)),
    };
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(short.merge(b, t1), b, "the day's budget stands");
    // The next answer of the day still lowers it as usual.
    let later = RateHeaders {
        remaining: Some(99_850),
        reset_in: Some(day - Duration::from_secs(6)),
        ..daily
    };
    assert_eq!(later.merge(b, t1).unwrap().remaining, 99_850);
    // The short window first, then the day's: the day's replaces it (a later end).
    let first = short.merge(None, t0).unwrap();
    assert_eq!(first.remaining, 0);
    assert_eq!(daily.merge(Some(first), t0).unwrap().remaining, 99_900);
}

#[test]
fn fewer_requests_in_flight_after_throttles_then_more_again() {
    let f = Flight::default();
    let permits: Vec<Permit<'_>> = (0..8).map(|_| f.acquire()).collect();
    assert_eq!(lock(&f.state).peak, 8);
    // Eight in flight, all told "too many connections": halved once, not eight times.
    for p in &permits {
        f.throttled(p, true);
    }
    assert_eq!(lock(&f.state).limit, Some(4));
    drop(permits);
    let p = f.acquire();
    f.throttled(&p, false);
    assert_eq!(lock(&f.state).limit, Some(3), "429001: one fewer");
    f.throttled(&p, true);
    assert_eq!(
        lock(&f.state).limit,
        Some(3),
        "already lowered since it was sent"
    );
    drop(p);
    let p = f.acquire();
    f.throttled(&p, true);
    assert_eq!(lock(&f.state).limit, Some(1));
    drop(p);
    f.throttled(&f.acquire(), true);
    assert_eq!(lock(&f.state).limit, Some(1), "never below one");
    // Raised by one after RAISE_AFTER answers, and lifted once no lower than the peak.
    let mut limits = Vec::new();
    for _ in 0..(RAISE_AFTER * 8) {
        f.answered();
        limits.push(lock(&f.state).limit);
    }
    assert_eq!(limits[RAISE_AFTER as usize - 1], Some(2));
    assert_eq!(limits[RAISE_AFTER as usize * 2 - 1], Some(3));
    assert_eq!(limits.last(), Some(&None));
}

#[test]
fn a_waiting_request_goes_when_another_is_done() {
    let f = Arc::new(Flight::default());
    let p = f.acquire();
    f.throttled(&p, true);
    assert_eq!(lock(&f.state).limit, Some(1));
    let started = Arc::new(AtomicU64::new(0));
    let t = {
        let (f, started) = (Arc::clone(&f), Arc::clone(&started));
        std::thread::spawn(move || {
            let _p = f.acquire();
            started.store(1, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(started.load(Ordering::SeqCst), 0, "one at a time");
    drop(p);
    t.join().unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[test]
fn forbidden_sub_codes_say_what_happened() {
    let m = forbidden(Some(403002), "HTTP 403 (code 403002): blocked");
    assert!(
        m.contains("IP address is blocked") && m.contains("about an hour"),
        "{m}"
    );
    assert!(!m.contains("rights"), "{m}");
    let m = forbidden(Some(403004), "HTTP 403 (code 403004)");
    assert!(m.contains("not on the API key's allow list"), "{m}");
    assert!(forbidden(Some(403003), "x").contains("privilege"));
    assert!(forbidden(Some(403001), "x").contains("does not match"));
    assert!(forbidden(Some(403000), "x").contains("forbade"));
    assert!(forbidden(None, "x").contains("forbade"));
    for code in 403000..=403004 {
        assert!(forbidden(Some(code), "x").contains("no further lookups"));
    }
}

/// Nothing listening: a run stops at the first request and says so once; a gateway's
/// upstream (`stop_on_wrong_endpoint: false`) only fails that batch and tries again.
#[test]
fn a_refused_connection_halts_a_run_but_not_a_gateway_upstream() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let batch = LookupBatch {
        id: 1,
        digests: vec![Digest::Sha256([7; 32])],
    };
    for stop in [true, false] {
        let mut c = cfg(&format!("http://127.0.0.1:{port}"));
        c.retries = 0;
        c.stop_on_wrong_endpoint = stop;
        let client = HttpClient::new(c).unwrap();
        let out = client.lookup(&batch);
        assert!(
            matches!(&out[0].1, Err(LookupError::Transport(_))),
            "{out:?}"
        );
        assert_eq!(client.halted().is_some(), stop, "{:?}", client.halted());
        assert_eq!(client.stats().requests, 0, "nothing was sent");
    }
}

/// A local server that answers every request `401` and counts them.
fn refusing_server() -> (String, Arc<AtomicU64>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = reader.read_exact(&mut vec![0; len]);
            count.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"error":{"code":401006,"messages":["Invalid apikey"]}}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// Poison `m` the way a real one gets poisoned: a thread panics while holding it.
fn poison<T: Send>(m: &Mutex<T>) {
    std::thread::scope(|s| {
        let _ = s
            .spawn(|| {
                let _held = m.lock();
                panic!("poisoning the lock on purpose");
            })
            .join();
    });
    assert!(m.is_poisoned());
}

#[test]
fn a_poisoned_lock_does_not_lose_the_stop_after_a_refused_key() {
    let (url, seen) = refusing_server();
    let mut c = cfg(&url);
    c.retries = 0;
    let client = HttpClient::new(c).unwrap();
    poison(&client.stopped);
    poison(&client.pause_until);
    poison(&client.next_slot);
    poison(&client.quota_reset);
    let batch = |id| LookupBatch {
        id,
        digests: vec![Digest::Sha256([id as u8; 32])],
    };

    let first = client.lookup(&batch(1));
    // The record says it briefly; the halt (said once) has the whole reason.
    assert!(
        matches!(&first[0].1, Err(LookupError::KeyRefused(r)) if r.as_str() == KEY_REFUSED),
        "{first:?}"
    );
    assert!(
        matches!(client.halted(), Some(LookupError::KeyRefused(r)) if r.as_str().contains("401")),
        "{:?}",
        client.halted()
    );
    // Nothing more is sent: the next batch is failed from the halt, not asked.
    let second = client.lookup(&batch(2));
    assert!(
        matches!(&second[0].1, Err(LookupError::KeyRefused(r)) if r.as_str() == "not looked up: API key refused"),
        "{second:?}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "a request was sent after the 401"
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    assert!(backoff(1) <= Duration::from_millis(500));
    assert!(backoff(4) >= Duration::from_secs(2));
    assert!(backoff(30) <= Duration::from_secs(30));
}

#[test]
fn throttle_backoff_is_1s_doubling_to_60s_with_jitter() {
    let c = HttpClient::new(cfg("http://127.0.0.1:9")).unwrap();
    for (n, full) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (40, 60)] {
        let d = c.throttle_backoff(n);
        let full = Duration::from_secs(full);
        assert!(d >= full / 2 && d <= full, "throttle {n}: {d:?}");
    }
}
