use super::sealed::{Stored, Unserved, unsealed};
use super::*;
use hashsweep_lookup::EngineResult;

fn answer(code: i64, total: i64, id: Option<&str>) -> Answer {
    Answer {
        scan_result_i: code,
        total_detected_avs: total,
        data_id: id.map(Box::from),
        details: None,
        hosts: None,
    }
}

#[test]
fn stored_answers_round_trip_with_and_without_details() {
    let mut a = answer(1, 33, Some("abc\"def"));
    assert_eq!(
        Stored::decode(&Stored::encode(&a, None)),
        Some((a.clone(), None))
    );
    a.details = Some(Box::new([EngineResult {
        engine: "X".into(),
        threat_found: "EICAR".into(),
        scan_result_i: Some(1),
        def_time: None,
    }]));
    assert_eq!(
        Stored::decode(&Stored::encode(&a, Some(7))),
        Some((a, Some(7)))
    );
    let unknown = answer(5, -1, None);
    let bytes = Stored::encode(&unknown, None);
    assert!(bytes.len() < 20, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(Stored::decode(&bytes), Some((unknown, None)));
    assert_eq!(Stored::decode(b"not json"), None);
}

#[test]
fn a_signed_value_opens_only_under_its_key_and_with_its_tag() {
    let k = StoreKey::new(&[7u8; 32]).unwrap();
    let other = StoreKey::new(&[8u8; 32]).unwrap();
    let a = Stored::encode(&answer(1, 30, Some("x")), Some(100));
    let sealed = k.seal("hashsweep:v1:sha256:ab", a.clone());
    assert_eq!(k.open("hashsweep:v1:sha256:ab", &sealed), Some(&a[..]));
    assert_eq!(k.open("hashsweep:v1:sha256:cd", &sealed), None);
    assert_eq!(other.open("hashsweep:v1:sha256:ab", &sealed), None);
    assert_eq!(k.open("hashsweep:v1:sha256:ab", &a), None);
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert_eq!(k.open("hashsweep:v1:sha256:ab", &tampered), None);
    assert!(StoreKey::new(&[1u8; 31]).is_none());
    assert_eq!(format!("{k:?}"), "StoreKey([hidden])");
}

#[test]
fn a_signed_value_is_served_only_before_its_signed_expiry() {
    let k = StoreKey::new(&[7u8; 32]).unwrap();
    let key = "hashsweep:v1:sha256:ab";
    let a = answer(1, 30, None);
    let sealed = k.seal(key, Stored::encode(&a, Some(100)));
    assert_eq!(unsealed(Some(&k), key, &sealed, 99), Ok(a.clone()));
    // A copy replayed after its expiry.
    assert_eq!(
        unsealed(Some(&k), key, &sealed, 100),
        Err(Unserved::Expired)
    );
    // Signed before values carried an expiry: asked again once.
    let old = k.seal(key, Stored::encode(&a, None));
    assert_eq!(unsealed(Some(&k), key, &old, 0), Err(Unserved::Expired));
    assert_eq!(
        unsealed(Some(&k), "hashsweep:v1:sha256:cd", &sealed, 0),
        Err(Unserved::Forged)
    );
    // Unsigned values carry no expiry (Redis's EX is all there is).
    let plain = Stored::encode(&a, None);
    assert_eq!(unsealed(None, key, &plain, u64::MAX), Ok(a));
    assert_eq!(unsealed(None, key, b"{", 0), Err(Unserved::Garbled));
}

#[test]
fn keys_name_the_algorithm_and_claims_live_apart() {
    let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
    assert_eq!(
        verdict_key(&d),
        format!("hashsweep:v1:sha256:{}", "ab".repeat(32))
    );
    assert_eq!(
        claim_key(&d),
        format!("hashsweep:v1:claim:sha256:{}", "ab".repeat(32))
    );
}

#[test]
fn cluster_keys_tag_the_digest_so_claim_and_verdict_share_a_slot() {
    let d = Digest::from_hex(&"cd".repeat(32)).unwrap();
    let v = digest_key(&d, "", true);
    let c = digest_key(&d, "claim:", true);
    // 0xcd >> 2 = 0x33.
    assert_eq!(v, format!("hashsweep:v1:sha256:{{33}}{}", "cd".repeat(32)));
    // Every digest of a bucket (the top six bits of its first byte) shares the slot: one
    // MGET reads them; the next bucket is another slot.
    let slot_of = |hex: String| {
        let d = Digest::from_hex(&hex).unwrap();
        super::super::cluster::slot(digest_key(&d, "", true).as_bytes())
    };
    let here = super::super::cluster::slot(v.as_bytes());
    for first in ["cc", "ce", "cf"] {
        assert_eq!(
            slot_of(format!("{first}{}", "01".repeat(31))),
            here,
            "{first}"
        );
    }
    assert_ne!(slot_of(format!("d0{}", "01".repeat(31))), here);
    assert_eq!(
        super::super::cluster::slot(v.as_bytes()),
        super::super::cluster::slot(c.as_bytes())
    );
    assert_eq!(
        redacted_cluster("redis-cluster://:hunter2secret@h1:7000,h2:7000"),
        "redis-cluster://:REDACTED@h1:7000,h2:7000"
    );
    let s = Store::open(
        "redis-cluster://app:hunter2secret@127.0.0.1:1,127.0.0.1:2",
        Ttls::default(),
        Duration::from_secs(30),
        hashsweep_cache::LEGACY_SERVICE,
    )
    .unwrap();
    assert!(s.is_shared());
    assert!(!s.describe().contains("hunter2"), "{}", s.describe());
}

#[test]
fn store_specs_are_checked_and_passwords_never_shown() {
    let e = Store::open(
        "memcached://x",
        Ttls::default(),
        Duration::from_secs(30),
        hashsweep_cache::LEGACY_SERVICE,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("redis://HOST"), "{e}");
    assert_eq!(
        redacted("redis://:hunter2secret@127.0.0.1:6379/0"),
        "redis://:REDACTED@127.0.0.1:6379/0"
    );
    assert!(matches!(
        Store::open(
            "sqlite:",
            Ttls::default(),
            Duration::from_secs(30),
            hashsweep_cache::LEGACY_SERVICE
        ),
        Err(StoreError::Spec(..))
    ));
}
