//! fbroker's authentication and authorization data: Mosquitto-compatible
//! password files and ACL files, parsed and evaluated in memory. No I/O,
//! no logging, no global state beyond a counter: the caller reads the
//! files, passes their text in, and logs what comes back.
//!
//! * [`PasswordFile`]: `user:$7$…` (PBKDF2-SHA512), `$6$` (salted
//!   SHA-512) and Moquette's legacy unsalted SHA-256 entries;
//!   [`PasswordFile::verify`] is **blocking** (PBKDF2), use it from a
//!   blocking thread, with a [`VerifyCache`] so reconnects are cheap.
//!   [`hash_password`] and [`generate_salt`] create new entries.
//! * [`Acl`]: `user` / `topic` / `pattern` rules, compiled once per file;
//!   [`Acl::compile_for`] at CONNECT gives a [`ClientAcl`] whose
//!   [`can_publish`](ClientAcl::can_publish),
//!   [`can_subscribe`](ClientAcl::can_subscribe) and
//!   [`can_receive`](ClientAcl::can_receive) run per message without
//!   allocating or locking.
//!
//! Every public type is `Send + Sync`.

mod acl;
mod acl_file;
mod password_file;
mod topic;

pub use acl::{Access, Acl, ClientAcl};
pub use acl_file::{AclErrorKind, AclParseError, AclWarning};
pub use password_file::{
    generate_salt, hash_password, is_valid_username, Field, HashScheme, ParseError, ParseErrorKind, PasswordFile,
    PasswordWarning, Verdict, VerifyCache, DEFAULT_CACHE_CAPACITY, DEFAULT_ITERATIONS, SALT_LEN, SHA512_LEN,
};
pub use topic::FilterError;
