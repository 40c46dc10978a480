//! Password files: Mosquitto's format, plus Moquette's legacy one.
//!
//! One entry per line, `username:hash`, where hash is one of
//!
//! * `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 with a 64-byte
//!   output; salt and hash in standard base64 (padding optional). What
//!   `mosquitto_passwd` writes by default since Mosquitto 2.0, and what
//!   [`hash_password`] produces.
//! * `$6$<salt>$<hash>`: one round of SHA-512 over password ‖ salt
//!   (`mosquitto_passwd -H sha512`, the default before Mosquitto 2.0).
//!   Accepted so existing files keep working; reported as weak.
//! * 64 hexadecimal digits: unsalted SHA-256 of the password (Moquette's
//!   format). Accepted and reported as deprecated.
//!
//! The username is everything before the first `:`. Surrounding whitespace,
//! blank lines and lines starting with `#` are ignored.
//!
//! Nothing here reads files, logs, or keeps a password: the caller passes
//! the text in and logs the [`PasswordWarning`]s and [`ParseError`]s it gets
//! back, none of which contains any part of a hash.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// PBKDF2 iterations for new `$7$` entries (OWASP's figure for
/// PBKDF2-HMAC-SHA512). 0.1 to 0.25 s of one core per verification
/// (about 0.16 s on a current 2-core x86-64 VM).
pub const DEFAULT_ITERATIONS: u32 = 210_000;

/// Salt length of new entries, as `mosquitto_passwd` uses.
pub const SALT_LEN: usize = 12;

/// Length of a `$7$` or `$6$` hash (SHA-512 output).
pub const SHA512_LEN: usize = 64;

/// Default number of entries a [`VerifyCache`] holds.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

// ---------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------

/// A line of a password file that cannot be used. `line` is 1-based. The
/// message never contains the line's hash or salt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password file line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// Which part of a `$7$`/`$6$` entry is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The salt.
    Salt,
    /// The hash.
    Hash,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Salt => "salt",
            Field::Hash => "hash",
        })
    }
}

/// What is wrong with a line of a password file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No `:` between username and hash.
    MissingSeparator,
    /// Nothing before the `:`.
    EmptyUsername,
    /// Nothing after the `:`.
    MissingHash,
    /// Neither `$7$…`, `$6$…` nor 64 hex digits (for instance a plain-text
    /// password, which is never accepted).
    UnrecognisedHash,
    /// A `$…$` scheme other than `$7$` and `$6$`.
    UnsupportedScheme,
    /// A `$7$` or `$6$` entry without the right number of `$` fields.
    WrongFieldCount {
        /// `"$7$"` or `"$6$"`.
        scheme: &'static str,
    },
    /// The iteration count of a `$7$` entry is not an integer from 1 to
    /// 4294967295.
    BadIterations,
    /// Salt or hash is not valid base64.
    BadBase64(Field),
    /// The salt is empty.
    EmptySalt,
    /// The hash decodes to the wrong number of bytes.
    BadHashLength {
        /// Bytes required.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::MissingSeparator => f.write_str("expected `username:hash` (no `:` found)"),
            ParseErrorKind::EmptyUsername => f.write_str("the username before `:` is empty"),
            ParseErrorKind::MissingHash => f.write_str("no password hash after `:`"),
            ParseErrorKind::UnrecognisedHash => f.write_str(
                "unrecognised password hash (expected `$7$…`, `$6$…` or 64 hex digits; \
                 plain-text passwords are not accepted)",
            ),
            ParseErrorKind::UnsupportedScheme => {
                f.write_str("unsupported hash scheme (expected `$7$` PBKDF2-SHA512 or `$6$` SHA-512)")
            }
            ParseErrorKind::WrongFieldCount { scheme: "$7$" } => {
                f.write_str("a `$7$` entry must read `$7$<iterations>$<salt>$<hash>`")
            }
            ParseErrorKind::WrongFieldCount { scheme } => {
                write!(f, "a `{scheme}` entry must read `{scheme}<salt>$<hash>`")
            }
            ParseErrorKind::BadIterations => f.write_str("the iteration count is not a positive 32-bit integer"),
            ParseErrorKind::BadBase64(field) => write!(f, "the {field} is not valid base64"),
            ParseErrorKind::EmptySalt => f.write_str("the salt is empty"),
            ParseErrorKind::BadHashLength { expected, actual } => {
                write!(f, "the hash is {actual} bytes long, expected {expected}")
            }
        }
    }
}

/// Something in a password file that is accepted but deserves a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordWarning {
    /// A user appears more than once; the last entry is used.
    DuplicateUser {
        /// The username.
        user: String,
        /// Line of the entry that is used.
        line: usize,
        /// Line of the entry it replaces.
        previous_line: usize,
    },
    /// Entries in Moquette's legacy format (unsalted SHA-256) are in use.
    /// Reported once per file.
    LegacySha256 {
        /// How many users have such an entry.
        count: usize,
        /// The first such line.
        first_line: usize,
    },
    /// Entries in Mosquitto's old `$6$` format (one round of salted
    /// SHA-512) are in use. Reported once per file.
    WeakSha512 {
        /// How many users have such an entry.
        count: usize,
        /// The first such line.
        first_line: usize,
    },
}

impl fmt::Display for PasswordWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordWarning::DuplicateUser { user, line, previous_line } => write!(
                f,
                "password file line {line}: user `{user}` already defined on line {previous_line}; the later entry is used"
            ),
            PasswordWarning::LegacySha256 { count, first_line } => write!(
                f,
                "password file: {count} entr{} in the deprecated unsalted SHA-256 format (first on line {first_line}); \
                 support will be removed, re-create them with `fbroker passwd`",
                if *count == 1 { "y" } else { "ies" }
            ),
            PasswordWarning::WeakSha512 { count, first_line } => write!(
                f,
                "password file: {count} entr{} in the weak `$6$` salted SHA-512 format (first on line {first_line}); \
                 re-create them with `fbroker passwd`",
                if *count == 1 { "y" } else { "ies" }
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------

/// How a user's password is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashScheme {
    /// `$7$`: PBKDF2-HMAC-SHA512. Slow by design.
    Pbkdf2Sha512,
    /// `$6$`: one salted SHA-512. Fast, weak.
    SaltedSha512,
    /// Moquette's 64 hex digits: unsalted SHA-256. Fast, deprecated.
    LegacySha256,
}

#[derive(Clone)]
enum StoredHash {
    Pbkdf2Sha512 { iterations: u32, salt: Box<[u8]>, hash: Box<[u8; SHA512_LEN]> },
    SaltedSha512 { salt: Box<[u8]>, hash: Box<[u8; SHA512_LEN]> },
    LegacySha256 { hash: [u8; 32] },
}

impl StoredHash {
    fn scheme(&self) -> HashScheme {
        match self {
            StoredHash::Pbkdf2Sha512 { .. } => HashScheme::Pbkdf2Sha512,
            StoredHash::SaltedSha512 { .. } => HashScheme::SaltedSha512,
            StoredHash::LegacySha256 { .. } => HashScheme::LegacySha256,
        }
    }

    fn salt(&self) -> &[u8] {
        match self {
            StoredHash::Pbkdf2Sha512 { salt, .. } | StoredHash::SaltedSha512 { salt, .. } => salt,
            StoredHash::LegacySha256 { .. } => &[],
        }
    }

    /// Recomputes the hash of `password` and compares in constant time.
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            StoredHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                let mut out = [0u8; SHA512_LEN];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out.ct_eq(&hash[..]).into()
            }
            StoredHash::SaltedSha512 { salt, hash } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                h.finalize().as_slice().ct_eq(&hash[..]).into()
            }
            StoredHash::LegacySha256 { hash } => Sha256::digest(password).as_slice().ct_eq(&hash[..]).into(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    hash: StoredHash,
    line: usize,
}

/// The outcome of checking a username and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The password is right.
    Ok,
    /// The user exists and the password is wrong.
    BadPassword,
    /// The file has no such user.
    UnknownUser,
}

impl Verdict {
    /// `true` for [`Verdict::Ok`].
    pub fn is_ok(self) -> bool {
        self == Verdict::Ok
    }
}

/// Distinguishes parsed files so a [`VerifyCache`] notices a reload.
static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// A parsed password file. Immutable, `Send + Sync`; reload by parsing the
/// new text and swapping the value.
#[derive(Clone)]
pub struct PasswordFile {
    id: u64,
    entries: HashMap<Box<str>, Entry>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Usernames and hashes stay out of logs.
        f.debug_struct("PasswordFile").field("users", &self.entries.len()).finish_non_exhaustive()
    }
}

fn decode_b64(text: &str, field: Field) -> Result<Vec<u8>, ParseErrorKind> {
    STANDARD_PAD_INDIFFERENT.decode(text).map_err(|_| ParseErrorKind::BadBase64(field))
}

fn decode_sha512(text: &str) -> Result<Box<[u8; SHA512_LEN]>, ParseErrorKind> {
    let bytes = decode_b64(text, Field::Hash)?;
    let actual = bytes.len();
    let array: [u8; SHA512_LEN] =
        bytes.try_into().map_err(|_| ParseErrorKind::BadHashLength { expected: SHA512_LEN, actual })?;
    Ok(Box::new(array))
}

fn decode_salt(text: &str) -> Result<Box<[u8]>, ParseErrorKind> {
    let salt = decode_b64(text, Field::Salt)?;
    if salt.is_empty() {
        return Err(ParseErrorKind::EmptySalt);
    }
    Ok(salt.into_boxed_slice())
}

fn parse_hash(text: &str) -> Result<StoredHash, ParseErrorKind> {
    if let Some(rest) = text.strip_prefix("$7$") {
        let mut fields = rest.split('$');
        let (Some(iterations), Some(salt), Some(hash), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(ParseErrorKind::WrongFieldCount { scheme: "$7$" });
        };
        let iterations = match iterations.parse::<u32>() {
            Ok(n) if n > 0 && iterations.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(ParseErrorKind::BadIterations),
        };
        Ok(StoredHash::Pbkdf2Sha512 { iterations, salt: decode_salt(salt)?, hash: decode_sha512(hash)? })
    } else if let Some(rest) = text.strip_prefix("$6$") {
        let mut fields = rest.split('$');
        let (Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(ParseErrorKind::WrongFieldCount { scheme: "$6$" });
        };
        Ok(StoredHash::SaltedSha512 { salt: decode_salt(salt)?, hash: decode_sha512(hash)? })
    } else if text.starts_with('$') {
        Err(ParseErrorKind::UnsupportedScheme)
    } else if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).map_err(|_| ParseErrorKind::UnrecognisedHash)?;
        Ok(StoredHash::LegacySha256 { hash })
    } else {
        Err(ParseErrorKind::UnrecognisedHash)
    }
}

impl PasswordFile {
    /// Parses a password file's text.
    ///
    /// Fails on the first malformed line. Returns the warnings to log:
    /// duplicate users (the last entry wins), then at most one
    /// [`PasswordWarning::LegacySha256`] and one
    /// [`PasswordWarning::WeakSha512`] summarising the entries in use in
    /// those formats.
    pub fn parse(text: &str) -> Result<(PasswordFile, Vec<PasswordWarning>), ParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut entries: HashMap<Box<str>, Entry> = HashMap::new();
        let mut warnings = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let err = |kind| ParseError { line, kind };
            let (user, hash) = content.split_once(':').ok_or(err(ParseErrorKind::MissingSeparator))?;
            if user.is_empty() {
                return Err(err(ParseErrorKind::EmptyUsername));
            }
            if hash.is_empty() {
                return Err(err(ParseErrorKind::MissingHash));
            }
            let hash = parse_hash(hash).map_err(err)?;
            if let Some(previous) = entries.insert(user.into(), Entry { hash, line }) {
                warnings.push(PasswordWarning::DuplicateUser {
                    user: user.to_owned(),
                    line,
                    previous_line: previous.line,
                });
            }
        }
        let summary = |scheme: HashScheme| {
            let lines = entries.values().filter(|e| e.hash.scheme() == scheme).map(|e| e.line);
            let (count, first_line) = lines.fold((0, usize::MAX), |(n, first), l| (n + 1, first.min(l)));
            (count > 0).then_some((count, first_line))
        };
        if let Some((count, first_line)) = summary(HashScheme::LegacySha256) {
            warnings.push(PasswordWarning::LegacySha256 { count, first_line });
        }
        if let Some((count, first_line)) = summary(HashScheme::SaltedSha512) {
            warnings.push(PasswordWarning::WeakSha512 { count, first_line });
        }
        let id = NEXT_FILE_ID.fetch_add(1, Ordering::Relaxed);
        Ok((PasswordFile { id, entries }, warnings))
    }

    /// Checks `password` for `user`, without any cache.
    ///
    /// **Blocking**: for a `$7$` entry this runs the full PBKDF2 (0.1 to
    /// 0.25 s of CPU at [`DEFAULT_ITERATIONS`], proportionally more or less
    /// for the entry's own count), so call it from a blocking thread (e.g.
    /// `tokio::task::spawn_blocking`), never on an async worker. It takes
    /// `&self` and `PasswordFile` is `Send + Sync`, so an `Arc` of it can be
    /// moved there. `$6$` and legacy entries cost one hash.
    ///
    /// The hash comparison is constant-time. [`Verdict::UnknownUser`] is
    /// returned without hashing, so response time tells whether a user
    /// exists; answer both failures alike if that matters.
    pub fn verify(&self, user: &str, password: &[u8]) -> Verdict {
        match self.entries.get(user) {
            None => Verdict::UnknownUser,
            Some(entry) if entry.hash.matches(password) => Verdict::Ok,
            Some(_) => Verdict::BadPassword,
        }
    }

    /// Like [`verify`](Self::verify), but a `$7$` check that succeeded
    /// before with the same user and password (against this same file) is
    /// answered from `cache` in well under a microsecond, and a success is
    /// recorded there. Blocking on a cache miss, like `verify`.
    pub fn verify_cached(&self, cache: &VerifyCache, user: &str, password: &[u8]) -> Verdict {
        if let Some(verdict) = self.verify_fast(cache, user, password) {
            return verdict;
        }
        let verdict = self.verify(user, password);
        if verdict == Verdict::Ok {
            if let Some(entry) = self.entries.get(user) {
                cache.insert(self.id, cache.key(user, entry.hash.salt(), password));
            }
        }
        verdict
    }

    /// The verdict when it can be had without PBKDF2: unknown user, a
    /// `$6$` or legacy entry (one hash), or a `$7$` success found in
    /// `cache`. `None` means the slow path is needed: call
    /// [`verify_cached`](Self::verify_cached) on a blocking thread.
    ///
    /// Never blocks for more than a hash and a short mutex hold, so it can
    /// run on an async worker first to avoid a thread hop for reconnects.
    pub fn verify_fast(&self, cache: &VerifyCache, user: &str, password: &[u8]) -> Option<Verdict> {
        let entry = match self.entries.get(user) {
            None => return Some(Verdict::UnknownUser),
            Some(entry) => entry,
        };
        match &entry.hash {
            StoredHash::Pbkdf2Sha512 { salt, .. } => {
                cache.contains(self.id, &cache.key(user, salt, password)).then_some(Verdict::Ok)
            }
            _ => Some(self.verify(user, password)),
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no user.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `user` has an entry.
    pub fn contains_user(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// How `user`'s password is stored.
    pub fn scheme(&self, user: &str) -> Option<HashScheme> {
        self.entries.get(user).map(|e| e.hash.scheme())
    }

    /// Whether any entry uses Moquette's legacy unsalted SHA-256 format.
    pub fn has_legacy_entries(&self) -> bool {
        self.entries.values().any(|e| e.hash.scheme() == HashScheme::LegacySha256)
    }
}

// ---------------------------------------------------------------------------
// Creating entries
// ---------------------------------------------------------------------------

/// The `$7$` hash of `password`: `$7$<iterations>$<salt b64>$<hash b64>`,
/// PBKDF2-HMAC-SHA512 with a 64-byte output, as Mosquitto writes it. The
/// password file line is `format!("{user}:{hash}")` (see
/// [`is_valid_username`]).
///
/// Takes as long as one verification (0.1 to 0.25 s at
/// [`DEFAULT_ITERATIONS`]): blocking.
///
/// # Panics
///
/// If `iterations` is 0 or `salt` is empty, neither of which the parser
/// would accept back.
pub fn hash_password(password: &[u8], iterations: u32, salt: &[u8]) -> String {
    assert!(iterations > 0, "PBKDF2 needs at least one iteration");
    assert!(!salt.is_empty(), "the salt must not be empty");
    let mut out = [0u8; SHA512_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    format!("$7${iterations}${}${}", STANDARD.encode(salt), STANDARD.encode(out))
}

/// A fresh random salt of [`SALT_LEN`] bytes from the operating system.
///
/// # Panics
///
/// If the operating system's random source fails, which on supported
/// platforms does not happen once it is initialised.
pub fn generate_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).expect("the operating system's random number generator failed");
    salt
}

/// Whether `user` can be written to a password file and read back as the
/// same name: not empty, no `:` (the separator), no line break or NUL, no
/// leading or trailing whitespace, not starting with `#`.
pub fn is_valid_username(user: &str) -> bool {
    !user.is_empty() && !user.contains([':', '\n', '\r', '\0']) && !user.starts_with('#') && user.trim() == user
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

/// Recently verified credentials, so a reconnecting client skips PBKDF2.
///
/// Holds only successes, as a keyed HMAC-SHA256 of (user, salt, password)
/// under a random key made per cache: neither passwords nor anything
/// usable offline without that key. Bounded: entries live in two
/// generations of `capacity / 2`; when the current one fills, the older is
/// dropped (hits are moved to the current one, so this is roughly LRU).
///
/// Tied to one [`PasswordFile`] at a time: used with a different (e.g.
/// reloaded) file it empties itself, so a changed or removed password is
/// never accepted from the cache. Keep one cache and swap the file on
/// reload. `Send + Sync`; a short mutex guards the sets.
pub struct VerifyCache {
    key: [u8; 32],
    half: usize,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    file_id: u64,
    current: HashSet<[u8; 32]>,
    previous: HashSet<[u8; 32]>,
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyCache").field("capacity", &(self.half * 2)).field("len", &self.len()).finish()
    }
}

impl Default for VerifyCache {
    /// A cache of [`DEFAULT_CACHE_CAPACITY`] entries.
    fn default() -> Self {
        VerifyCache::new(DEFAULT_CACHE_CAPACITY)
    }
}

impl VerifyCache {
    /// A cache holding at most `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random number generator failed");
        VerifyCache { key, half: (capacity / 2).max(1), state: Mutex::new(CacheState::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The sets stay consistent whatever a panicking holder was doing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, user: &str, salt: &[u8], password: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(&(salt.len() as u64).to_be_bytes());
        mac.update(salt);
        mac.update(password);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    fn contains(&self, file_id: u64, key: &[u8; 32]) -> bool {
        let mut state = self.lock();
        if state.file_id != file_id {
            state.file_id = file_id;
            state.current.clear();
            state.previous.clear();
            return false;
        }
        if state.current.contains(key) {
            return true;
        }
        if state.previous.remove(key) {
            self.insert_locked(&mut state, *key);
            return true;
        }
        false
    }

    fn insert(&self, file_id: u64, key: [u8; 32]) {
        let mut state = self.lock();
        // A verification that started before a reload finishes after it:
        // its result belongs to the old file.
        if state.file_id == file_id {
            self.insert_locked(&mut state, key);
        }
    }

    fn insert_locked(&self, state: &mut CacheState, key: [u8; 32]) {
        if state.current.len() >= self.half {
            state.previous = std::mem::take(&mut state.current);
        }
        state.current.insert(key);
    }

    /// Number of credentials held.
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.current.len() + state.previous.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (e.g. after a password change that did not go
    /// through a file reload).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.current.clear();
        state.previous.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> ParseErrorKind {
        PasswordFile::parse(text).expect_err("should not parse").kind
    }

    #[test]
    fn parse_errors_carry_line_numbers() {
        let e = PasswordFile::parse("# users\n\nalice\n").unwrap_err();
        assert_eq!(e, ParseError { line: 3, kind: ParseErrorKind::MissingSeparator });
        assert_eq!(e.to_string(), "password file line 3: expected `username:hash` (no `:` found)");
    }

    #[test]
    fn each_malformed_line_kind() {
        let salt = STANDARD.encode([1u8; 12]);
        let hash = STANDARD.encode([2u8; 64]);
        assert_eq!(kind(":abc"), ParseErrorKind::EmptyUsername);
        assert_eq!(kind("alice:"), ParseErrorKind::MissingHash);
        assert_eq!(kind("alice:secret"), ParseErrorKind::UnrecognisedHash);
        assert_eq!(kind(&format!("alice:{}", "g".repeat(64))), ParseErrorKind::UnrecognisedHash);
        assert_eq!(kind(&format!("alice:{}", "a".repeat(63))), ParseErrorKind::UnrecognisedHash);
        assert_eq!(kind("alice:$2y$10$abcdefghijklmnopqrstuv"), ParseErrorKind::UnsupportedScheme);
        assert_eq!(kind(&format!("alice:$7$100${salt}")), ParseErrorKind::WrongFieldCount { scheme: "$7$" });
        assert_eq!(kind(&format!("alice:$7$100${salt}${hash}$x")), ParseErrorKind::WrongFieldCount { scheme: "$7$" });
        assert_eq!(kind(&format!("alice:$6${salt}")), ParseErrorKind::WrongFieldCount { scheme: "$6$" });
        assert_eq!(kind(&format!("alice:$7$0${salt}${hash}")), ParseErrorKind::BadIterations);
        assert_eq!(kind(&format!("alice:$7$-5${salt}${hash}")), ParseErrorKind::BadIterations);
        assert_eq!(kind(&format!("alice:$7$+5${salt}${hash}")), ParseErrorKind::BadIterations);
        assert_eq!(kind(&format!("alice:$7$x${salt}${hash}")), ParseErrorKind::BadIterations);
        assert_eq!(kind(&format!("alice:$7$4294967296${salt}${hash}")), ParseErrorKind::BadIterations);
        assert_eq!(kind(&format!("alice:$7$100$!!!!${hash}")), ParseErrorKind::BadBase64(Field::Salt));
        assert_eq!(kind(&format!("alice:$7$100${salt}$not*b64")), ParseErrorKind::BadBase64(Field::Hash));
        assert_eq!(kind(&format!("alice:$7$100$${hash}")), ParseErrorKind::EmptySalt);
        assert_eq!(kind(&format!("alice:$6$${hash}")), ParseErrorKind::EmptySalt);
        let short = STANDARD.encode([2u8; 32]);
        assert_eq!(
            kind(&format!("alice:$7$100${salt}${short}")),
            ParseErrorKind::BadHashLength { expected: 64, actual: 32 }
        );
        assert_eq!(
            kind(&format!("alice:$6${salt}${short}")),
            ParseErrorKind::BadHashLength { expected: 64, actual: 32 }
        );
    }

    #[test]
    fn error_messages_never_echo_the_hash() {
        let salt = STANDARD.encode(b"SALTSALTSALT");
        let hash = STANDARD.encode([0x5au8; 40]);
        let lines = [
            format!("alice:$7$100${salt}${hash}"),
            format!("alice:$7$100${salt}$zz{hash}"),
            format!("alice:$6${salt}${hash}"),
            "alice:mysecretpassword".to_owned(),
            "alice:$9$mysecretpassword".to_owned(),
        ];
        for line in lines {
            let message = PasswordFile::parse(&line).unwrap_err().to_string();
            assert!(!message.contains(&salt) && !message.contains(&hash), "{message}");
            assert!(!message.contains("mysecret"), "{message}");
        }
    }

    #[test]
    fn debug_output_hides_entries() {
        let (file, _) = PasswordFile::parse(&format!("alice:{}", "ab".repeat(32))).unwrap();
        let debug = format!("{file:?}");
        assert!(!debug.contains("alice") && !debug.contains("abab"), "{debug}");
    }

    #[test]
    fn cache_generations_bound_its_size() {
        let cache = VerifyCache::new(4);
        for i in 0..10u8 {
            // File id 0 is the state a new cache starts in.
            cache.insert(0, [i; 32]);
            assert!(cache.len() <= 4);
        }
        assert!(cache.contains(0, &[9; 32]));
        assert!(cache.contains(0, &[8; 32]));
        assert!(!cache.contains(0, &[0; 32]));
        // Another file empties it.
        assert!(!cache.contains(1, &[9; 32]));
        assert!(cache.is_empty());
        // Results computed against the previous file are not recorded.
        cache.insert(0, [1; 32]);
        assert!(cache.is_empty());
    }

    #[test]
    fn password_types_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<PasswordFile>();
        check::<VerifyCache>();
    }
}
