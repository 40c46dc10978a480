//! The Mosquitto/Moquette ACL file format.
//!
//! ```text
//! # Lines before the first `user` line apply to anonymous clients.
//! topic read public/#
//!
//! # `pattern` lines apply to every client, wherever they appear;
//! # %c is the client id, %u the username.
//! pattern readwrite devices/%c/#
//! pattern read users/%u/inbox
//!
//! user alice
//! # No access word means readwrite.
//! topic sensors/#
//! # A deny wins over any grant.
//! topic deny sensors/secret/#
//! ```
//!
//! Comments are whole lines only: `#` inside a line is a topic wildcard.
//!
//! * `user NAME` opens the section of NAME (the rest of the line, so names
//!   may contain spaces); a later `user` line for the same name adds to it.
//! * `topic [ACCESS] FILTER` adds a rule to the current section, or to the
//!   anonymous section before any `user` line. `pattern [ACCESS] FILTER`
//!   adds a rule for all clients. ACCESS is `read`, `write`, `readwrite`
//!   (the default) or `deny`. FILTER is the rest of the line; a filter
//!   containing spaces needs an explicit ACCESS word.
//! * Keywords and access words are lower case. Blank lines and lines whose
//!   first non-blank character is `#` are ignored; surrounding whitespace
//!   is ignored.
//!
//! A client whose id (or username) contains `+`, `#` or `/` gets no access
//! through a pattern using `%c` (or `%u`), and a `deny` pattern using it is
//! widened to everything below the placeholder's level, so such values can
//! never widen what the client may do. A `%u` pattern never applies to an
//! anonymous client. A pattern level that starts with `%c`/`%u` at the top
//! of a filter grants nothing on `$` topics (a client named `$SYS` does not
//! get `$SYS/#` from `pattern read %c/#`).

use std::fmt;

use crate::acl::{Access, Acl, AclBuilder};
use crate::topic::{validate_filter, FilterError};

/// A line of an ACL file that cannot be used. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ACL file line {line}: {kind}")]
pub struct AclParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: AclErrorKind,
}

/// What is wrong with a line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclErrorKind {
    /// The first word is none of `user`, `topic`, `pattern`.
    UnknownKeyword(String),
    /// `user` without a name.
    MissingUsername,
    /// `topic` or `pattern` without a filter (also `topic read` alone).
    MissingFilter {
        /// `topic` or `pattern`.
        keyword: &'static str,
    },
    /// `topic WORD FILTER` where WORD is not an access word.
    UnknownAccess(String),
    /// The filter is not a valid MQTT topic filter.
    InvalidFilter(FilterError),
}

/// Longest excerpt of a line quoted in an error message.
const QUOTE_MAX: usize = 40;

fn quote(word: &str) -> String {
    match word.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!("{}…", &word[..i]),
        None => word.to_owned(),
    }
}

impl fmt::Display for AclErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclErrorKind::UnknownKeyword(w) => {
                write!(f, "unknown keyword `{w}` (expected `user`, `topic` or `pattern`)")
            }
            AclErrorKind::MissingUsername => f.write_str("`user` needs a username"),
            AclErrorKind::MissingFilter { keyword } => write!(f, "`{keyword}` needs a topic filter"),
            AclErrorKind::UnknownAccess(w) => write!(
                f,
                "unknown access type `{w}` (expected `read`, `write`, `readwrite` or `deny`; \
                 a topic filter containing spaces needs an explicit access type)"
            ),
            AclErrorKind::InvalidFilter(e) => write!(f, "invalid topic filter: {e}"),
        }
    }
}

/// Something in an ACL file that is accepted but probably not meant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AclWarning {
    /// A `topic` line contains `%c` or `%u`, which only `pattern` lines
    /// substitute: the rule matches those two characters literally.
    PlaceholderInTopicRule {
        /// 1-based line number.
        line: usize,
    },
}

impl fmt::Display for AclWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclWarning::PlaceholderInTopicRule { line } => write!(
                f,
                "ACL file line {line}: `topic` rules do not substitute %c or %u \
                 (the rule matches them literally); use `pattern` for that"
            ),
        }
    }
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn first_word(s: &str) -> (&str, &str) {
    match s.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// `[ACCESS] FILTER` after `topic` or `pattern`.
fn access_and_filter<'a>(args: &'a str, keyword: &'static str) -> Result<(Access, &'a str), AclErrorKind> {
    let (word, rest) = first_word(args);
    if word.is_empty() {
        return Err(AclErrorKind::MissingFilter { keyword });
    }
    let (access, filter) = if rest.is_empty() {
        if Access::from_word(word).is_some() {
            return Err(AclErrorKind::MissingFilter { keyword });
        }
        (Access::ReadWrite, word)
    } else {
        match Access::from_word(word) {
            Some(a) => (a, rest),
            None => return Err(AclErrorKind::UnknownAccess(quote(word))),
        }
    };
    validate_filter(filter).map_err(AclErrorKind::InvalidFilter)?;
    Ok((access, filter))
}

impl Acl {
    /// Parses and compiles an ACL file.
    ///
    /// Fails on the first unusable line. An empty file (or one holding only
    /// comments) is valid and grants nothing: not the same as
    /// [`Acl::allow_all`].
    pub fn parse(text: &str) -> Result<(Acl, Vec<AclWarning>), AclParseError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut builder = AclBuilder::new();
        let mut warnings = Vec::new();
        let mut user: Option<&str> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let err = |kind| AclParseError { line, kind };
            let (keyword, args) = first_word(content);
            match keyword {
                "user" => {
                    if args.is_empty() {
                        return Err(err(AclErrorKind::MissingUsername));
                    }
                    builder.user_section(args);
                    user = Some(args);
                }
                "topic" => {
                    let (access, filter) = access_and_filter(args, "topic").map_err(err)?;
                    if filter.contains("%c") || filter.contains("%u") {
                        warnings.push(AclWarning::PlaceholderInTopicRule { line });
                    }
                    builder.topic(user, access, filter);
                }
                "pattern" => {
                    let (access, filter) = access_and_filter(args, "pattern").map_err(err)?;
                    builder.pattern(access, filter);
                }
                other => return Err(err(AclErrorKind::UnknownKeyword(quote(other)))),
            }
        }
        Ok((builder.build(), warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> AclParseError {
        Acl::parse(text).expect_err("should not parse")
    }

    #[test]
    fn unknown_keyword_names_its_line() {
        let e = error("topic a\n\nusr bob\n");
        assert_eq!(e, AclParseError { line: 3, kind: AclErrorKind::UnknownKeyword("usr".into()) });
        assert_eq!(e.to_string(), "ACL file line 3: unknown keyword `usr` (expected `user`, `topic` or `pattern`)");
        // Keywords are case-sensitive, as in Mosquitto.
        assert_eq!(error("Topic a").kind, AclErrorKind::UnknownKeyword("Topic".into()));
        // A keyword must be a whole word.
        assert_eq!(error("topicread a").kind, AclErrorKind::UnknownKeyword("topicread".into()));
    }

    #[test]
    fn user_without_name() {
        assert_eq!(error("user").kind, AclErrorKind::MissingUsername);
        assert_eq!(error("# c\nuser   \t ").line, 2);
    }

    #[test]
    fn topic_or_pattern_without_filter() {
        assert_eq!(error("topic").kind, AclErrorKind::MissingFilter { keyword: "topic" });
        assert_eq!(error("pattern  ").kind, AclErrorKind::MissingFilter { keyword: "pattern" });
        assert_eq!(error("topic read").kind, AclErrorKind::MissingFilter { keyword: "topic" });
        assert_eq!(error("pattern deny").kind, AclErrorKind::MissingFilter { keyword: "pattern" });
    }

    #[test]
    fn unknown_access_word() {
        let e = error("user a\ntopic raed sensors/#");
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, AclErrorKind::UnknownAccess("raed".into()));
        // Access words are lower case.
        assert_eq!(error("topic READ a").kind, AclErrorKind::UnknownAccess("READ".into()));
    }

    #[test]
    fn invalid_filters() {
        assert_eq!(error("topic a/#/b").kind, AclErrorKind::InvalidFilter(FilterError::HashNotLast));
        assert_eq!(error("topic read a#").kind, AclErrorKind::InvalidFilter(FilterError::HashNotAlone));
        assert_eq!(error("pattern write a/%c+").kind, AclErrorKind::InvalidFilter(FilterError::PlusNotAlone));
        assert_eq!(error("topic read a\0b").kind, AclErrorKind::InvalidFilter(FilterError::NulCharacter));
        let long = format!("topic read {}", "a".repeat(70_000));
        assert_eq!(error(&long).kind, AclErrorKind::InvalidFilter(FilterError::TooLong));
        assert_eq!(
            error("\n\ntopic read a/#/b").to_string(),
            "ACL file line 3: invalid topic filter: `#` may only be the last level of a topic filter"
        );
    }

    #[test]
    fn long_words_are_shortened_in_errors() {
        let e = error(&format!("{} a", "x".repeat(500)));
        match e.kind {
            AclErrorKind::UnknownKeyword(w) => assert_eq!(w.chars().count(), QUOTE_MAX + 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comments_blank_lines_crlf_and_bom_are_accepted() {
        let text = "\u{feff}# comment\r\n\r\n   # indented comment\r\n\t topic read a/b \t\r\nuser  bob smith \r\n";
        let (acl, warnings) = Acl::parse(text).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(acl.rule_count(), 1);
        assert!(!acl.is_allow_all());
    }

    #[test]
    fn placeholder_in_topic_line_warns() {
        let (_, warnings) = Acl::parse("user a\ntopic read x/%c\npattern read y/%c").unwrap();
        assert_eq!(warnings, vec![AclWarning::PlaceholderInTopicRule { line: 2 }]);
        assert!(warnings[0].to_string().starts_with("ACL file line 2: "));
    }
}
