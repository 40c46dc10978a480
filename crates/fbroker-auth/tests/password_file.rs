//! Password file behaviour against vectors made by Mosquitto's own tool.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fbroker_auth::{
    generate_salt, hash_password, is_valid_username, HashScheme, PasswordFile, PasswordWarning, Verdict, VerifyCache,
    DEFAULT_ITERATIONS, SALT_LEN,
};

/// `mosquitto_passwd -b -c pw alice secret` (Mosquitto 2.0.11, which uses
/// 101 PBKDF2 iterations).
const MOSQUITTO_ALICE: &str = "alice:$7$101$IdxyyfwH54IQeZSH$3cFsBJs9bKrKbW7xRMPDTRdcSgBZU3JMs0R+paz6sfMlVZRM64vIQLXVlrfxD0tZZKuNyEvlYb1GPIf8m2ehnA==";
/// `mosquitto_passwd -b pw bob 'p@ss:word'`: a `:` inside the password.
const MOSQUITTO_BOB: &str = "bob:$7$101$VJFWe5Dg1Rf8BwN3$vt9B3yML7tXhdZaWJHE6guXVnducK4O8ie7DAL72Vr9HJtD2nRH1tDLXcVTkJivXtYNZuYoeDeUS1Jduy/C5IQ==";
/// `mosquitto_passwd -b -c pw 'dave smith' 'ünïcødé pass'`: a space in the
/// username, UTF-8 in the password.
const MOSQUITTO_DAVE: &str = "dave smith:$7$101$pL3zIiL+7VlY3qAn$OR4gKL6BewCjbqUyNLZSSGtjvDd13E2KSZ4i0aqoZNmSGXNpIGVHMx/EmOGm4jWcu8ZXt46cVU1eFgV/sBnAuw==";
/// `mosquitto_passwd -H sha512 -b -c pw carol hunter2`: the pre-2.0 `$6$`
/// format.
const MOSQUITTO_CAROL_SHA512: &str = "carol:$6$oonr74owYTBt3FOc$qQHqS2m1DzIYdg28vHEDBwjX69xpFwXuwq2QULEN6qmqbxbRnm0fySM4oO1J2SiBGELOM+vBVwQ/VGAwxGuU7Q==";
/// Moquette's format: `echo -n secret | sha256sum`.
const MOQUETTE_ERIN: &str = "erin:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

fn parse(text: &str) -> (PasswordFile, Vec<PasswordWarning>) {
    PasswordFile::parse(text).expect("valid password file")
}

#[test]
fn mosquitto_pbkdf2_entry_verifies() {
    let (file, warnings) = parse(MOSQUITTO_ALICE);
    assert!(warnings.is_empty());
    assert_eq!(file.scheme("alice"), Some(HashScheme::Pbkdf2Sha512));
    assert_eq!(file.verify("alice", b"secret"), Verdict::Ok);
    assert_eq!(file.verify("alice", b"Secret"), Verdict::BadPassword);
    assert_eq!(file.verify("alice", b""), Verdict::BadPassword);
    assert_eq!(file.verify("alice", b"secret "), Verdict::BadPassword);
    assert_eq!(file.verify("Alice", b"secret"), Verdict::UnknownUser);
}

#[test]
fn mosquitto_entries_with_colon_space_and_utf8_verify() {
    let (file, _) = parse(&format!("{MOSQUITTO_BOB}\n{MOSQUITTO_DAVE}\n"));
    assert_eq!(file.verify("bob", b"p@ss:word"), Verdict::Ok);
    assert_eq!(file.verify("bob", b"p@ss"), Verdict::BadPassword);
    assert_eq!(file.verify("dave smith", "ünïcødé pass".as_bytes()), Verdict::Ok);
    assert_eq!(file.verify("dave", "ünïcødé pass".as_bytes()), Verdict::UnknownUser);
}

#[test]
fn mosquitto_salted_sha512_entry_verifies_and_is_reported_weak() {
    let (file, warnings) = parse(MOSQUITTO_CAROL_SHA512);
    assert_eq!(file.scheme("carol"), Some(HashScheme::SaltedSha512));
    assert_eq!(file.verify("carol", b"hunter2"), Verdict::Ok);
    assert_eq!(file.verify("carol", b"hunter3"), Verdict::BadPassword);
    assert_eq!(warnings, vec![PasswordWarning::WeakSha512 { count: 1, first_line: 1 }]);
    assert!(!file.has_legacy_entries());
}

#[test]
fn moquette_legacy_sha256_entry_verifies_and_is_reported_once() {
    let upper = "frank:2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B";
    let text = format!("{MOSQUITTO_ALICE}\n# legacy below\n{MOQUETTE_ERIN}\n{upper}\n");
    let (file, warnings) = parse(&text);
    assert_eq!(file.scheme("erin"), Some(HashScheme::LegacySha256));
    assert_eq!(file.verify("erin", b"secret"), Verdict::Ok);
    assert_eq!(file.verify("erin", b"secreT"), Verdict::BadPassword);
    assert_eq!(file.verify("frank", b"secret"), Verdict::Ok, "upper-case hex is accepted");
    assert!(file.has_legacy_entries());
    assert_eq!(warnings, vec![PasswordWarning::LegacySha256 { count: 2, first_line: 3 }]);
    let message = warnings[0].to_string();
    assert!(message.contains("deprecated") && message.contains("line 3"), "{message}");
    assert!(!message.contains("2bb80d"), "{message}");
}

#[test]
fn formats_mix_in_one_file_with_comments_blank_lines_and_crlf() {
    let text = format!(
        "\u{feff}# fbroker users\r\n\r\n  {MOSQUITTO_ALICE}  \r\n\t\r\n{MOSQUITTO_CAROL_SHA512}\r\n   # {MOQUETTE_ERIN}\r\n"
    );
    let (file, _) = parse(&text);
    assert_eq!(file.len(), 2);
    assert!(file.contains_user("alice") && file.contains_user("carol"));
    assert!(!file.contains_user("erin"), "commented-out entries are ignored");
    assert_eq!(file.verify("alice", b"secret"), Verdict::Ok);
    assert_eq!(file.verify("carol", b"hunter2"), Verdict::Ok);
}

#[test]
fn empty_file_knows_no_user() {
    let (file, warnings) = parse("# nobody yet\n\n");
    assert!(file.is_empty() && warnings.is_empty());
    assert_eq!(file.verify("alice", b"secret"), Verdict::UnknownUser);
}

#[test]
fn duplicate_user_last_entry_wins_with_warning() {
    let text = format!("{MOQUETTE_ERIN}\n\n{}\n", MOSQUITTO_ALICE.replacen("alice", "erin", 1));
    let (file, warnings) = parse(&text);
    assert_eq!(file.len(), 1);
    assert_eq!(file.scheme("erin"), Some(HashScheme::Pbkdf2Sha512));
    assert_eq!(file.verify("erin", b"secret"), Verdict::Ok);
    assert_eq!(
        warnings,
        vec![PasswordWarning::DuplicateUser { user: "erin".into(), line: 3, previous_line: 1 }],
        "the replaced legacy entry is not in use, so no legacy warning"
    );
}

#[test]
fn hash_password_reproduces_mosquitto_passwd_output() {
    let salt = STANDARD.decode("IdxyyfwH54IQeZSH").unwrap();
    let line = format!("alice:{}", hash_password(b"secret", 101, &salt));
    assert_eq!(line, MOSQUITTO_ALICE);
}

#[test]
fn hash_password_round_trips_through_the_parser() {
    let salt = generate_salt();
    let hash = hash_password(&[0xff, 0x00, 0x80], 1_000, &salt);
    assert!(hash.starts_with("$7$1000$"));
    let (file, _) = parse(&format!("zoe:{hash}"));
    assert_eq!(file.verify("zoe", &[0xff, 0x00, 0x80]), Verdict::Ok, "binary passwords work");
    assert_eq!(file.verify("zoe", &[0xff, 0x00]), Verdict::BadPassword);
}

#[test]
fn generated_salts_are_random_and_sized_like_mosquittos() {
    let a = generate_salt();
    let b = generate_salt();
    assert_eq!(a.len(), SALT_LEN);
    assert_eq!(SALT_LEN, 12);
    assert_ne!(a, b);
    assert_eq!(DEFAULT_ITERATIONS, 210_000);
}

#[test]
#[should_panic(expected = "at least one iteration")]
fn hash_password_refuses_zero_iterations() {
    hash_password(b"x", 0, &[1, 2, 3]);
}

#[test]
#[should_panic(expected = "salt must not be empty")]
fn hash_password_refuses_an_empty_salt() {
    hash_password(b"x", 1, &[]);
}

#[test]
fn usernames_that_survive_a_round_trip() {
    assert!(is_valid_username("alice"));
    assert!(is_valid_username("dave smith"));
    assert!(is_valid_username("ünï"));
    for bad in ["", "a:b", "a\nb", "a\rb", "#alice", " alice", "alice ", "a\0b"] {
        assert!(!is_valid_username(bad), "{bad:?}");
    }
}

#[test]
fn verify_cache_answers_a_repeated_success_without_pbkdf2() {
    let (file, _) = parse(&format!("{MOSQUITTO_ALICE}\n{MOSQUITTO_BOB}\n"));
    let cache = VerifyCache::new(100);
    assert_eq!(file.verify_fast(&cache, "alice", b"secret"), None, "first time needs PBKDF2");
    assert_eq!(file.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
    assert_eq!(cache.len(), 1);
    assert_eq!(file.verify_fast(&cache, "alice", b"secret"), Some(Verdict::Ok));
    assert_eq!(file.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
    // Failures are never cached, and a cached success is per user and password.
    assert_eq!(file.verify_cached(&cache, "alice", b"wrong"), Verdict::BadPassword);
    assert_eq!(file.verify_fast(&cache, "alice", b"wrong"), None);
    assert_eq!(file.verify_fast(&cache, "bob", b"secret"), None);
    assert_eq!(file.verify_cached(&cache, "bob", b"secret"), Verdict::BadPassword);
    assert_eq!(cache.len(), 1);
    // Unknown users and the one-hash formats never need the slow path.
    assert_eq!(file.verify_fast(&cache, "mallory", b"x"), Some(Verdict::UnknownUser));
    let (legacy, _) = parse(MOQUETTE_ERIN);
    let cache2 = VerifyCache::default();
    assert_eq!(legacy.verify_fast(&cache2, "erin", b"secret"), Some(Verdict::Ok));
    assert_eq!(legacy.verify_fast(&cache2, "erin", b"nope"), Some(Verdict::BadPassword));
    assert!(cache2.is_empty(), "cheap formats are not cached");
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(file.verify_fast(&cache, "alice", b"secret"), None);
}

#[test]
fn verify_cache_is_invalidated_by_a_reload() {
    let cache = VerifyCache::new(100);
    let (old, _) = parse(MOSQUITTO_ALICE);
    assert_eq!(old.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
    assert_eq!(old.verify_fast(&cache, "alice", b"secret"), Some(Verdict::Ok));

    // The same text parsed again is a reload too: nothing carries over.
    let (same, _) = parse(MOSQUITTO_ALICE);
    assert_eq!(same.verify_fast(&cache, "alice", b"secret"), None);

    // Alice's password changed: the old one must stop working at once.
    let changed = format!("alice:{}", hash_password(b"new secret", 50, &generate_salt()));
    let (new, _) = parse(&changed);
    assert_eq!(old.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
    assert_eq!(new.verify_fast(&cache, "alice", b"secret"), None);
    assert_eq!(new.verify_cached(&cache, "alice", b"secret"), Verdict::BadPassword);
    assert_eq!(new.verify_cached(&cache, "alice", b"new secret"), Verdict::Ok);
    assert_eq!(new.verify_fast(&cache, "alice", b"new secret"), Some(Verdict::Ok));

    // A verification against the old file finishing late is not recorded.
    assert_eq!(old.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
    assert_eq!(new.verify_fast(&cache, "alice", b"secret"), None);
    assert_eq!(new.verify_fast(&cache, "alice", b"new secret"), None, "the old file's use emptied it");
}

#[test]
fn verify_cache_stays_bounded() {
    let mut text = String::new();
    let salt = generate_salt();
    for i in 0..40 {
        text.push_str(&format!("u{i}:{}\n", hash_password(format!("p{i}").as_bytes(), 1, &salt)));
    }
    let (file, _) = parse(&text);
    let cache = VerifyCache::new(10);
    for i in 0..40 {
        assert_eq!(file.verify_cached(&cache, &format!("u{i}"), format!("p{i}").as_bytes()), Verdict::Ok);
        assert!(cache.len() <= 10);
    }
    assert_eq!(file.verify_fast(&cache, "u39", b"p39"), Some(Verdict::Ok), "recent entries are kept");
    assert_eq!(file.verify_fast(&cache, "u0", b"p0"), None, "old entries are dropped");
}

#[test]
fn verification_works_from_many_threads_sharing_one_file_and_cache() {
    let (file, _) = parse(&format!("{MOSQUITTO_ALICE}\n{MOSQUITTO_BOB}\n"));
    let file = std::sync::Arc::new(file);
    let cache = std::sync::Arc::new(VerifyCache::new(64));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (file, cache) = (file.clone(), cache.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    assert_eq!(file.verify_cached(&cache, "alice", b"secret"), Verdict::Ok);
                    assert_eq!(file.verify_cached(&cache, "bob", b"p@ss:word"), Verdict::Ok);
                    assert_eq!(file.verify_cached(&cache, "bob", format!("x{i}").as_bytes()), Verdict::BadPassword);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(cache.len(), 2);
}
