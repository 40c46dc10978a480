//! MQTT topic name and topic filter syntax, as far as authorization needs it.

use std::fmt;

/// The longest topic or filter MQTT can carry (a two-byte length prefix).
pub(crate) const MAX_LEN: usize = 65_535;

/// Why a topic filter in an ACL file is not a valid MQTT topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterError {
    /// The filter is empty.
    Empty,
    /// The filter is longer than MQTT allows (65,535 bytes).
    TooLong,
    /// It contains a NUL character, which MQTT forbids in topics.
    NulCharacter,
    /// `#` is not the last level.
    HashNotLast,
    /// `#` shares its level with other characters (as in `a/b#`).
    HashNotAlone,
    /// `+` shares its level with other characters (as in `a/b+`).
    PlusNotAlone,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterError::Empty => "the topic filter is empty",
            FilterError::TooLong => "the topic filter is longer than 65535 bytes",
            FilterError::NulCharacter => "the topic filter contains a NUL character",
            FilterError::HashNotLast => "`#` may only be the last level of a topic filter",
            FilterError::HashNotAlone => "`#` must occupy a whole level of a topic filter",
            FilterError::PlusNotAlone => "`+` must occupy a whole level of a topic filter",
        })
    }
}

/// Checks MQTT topic filter syntax (MQTT 5.0 §4.7.1, 3.1.1 §4.7.1).
pub(crate) fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.len() > MAX_LEN {
        return Err(FilterError::TooLong);
    }
    if filter.contains('\0') {
        return Err(FilterError::NulCharacter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        if level == "#" {
            if !last {
                return Err(FilterError::HashNotLast);
            }
        } else if level.contains('#') {
            return Err(FilterError::HashNotAlone);
        } else if level != "+" && level.contains('+') {
            return Err(FilterError::PlusNotAlone);
        }
    }
    Ok(())
}

/// Cheap check of a filter handed to a per-message check: one pass, no
/// allocation. Rejects what [`validate_filter`] rejects except the NUL and
/// length checks, which the codec already applies to every packet.
#[inline]
pub(crate) fn is_valid_filter_fast(filter: &str) -> bool {
    let b = filter.as_bytes();
    if b.is_empty() {
        return false;
    }
    for (i, &c) in b.iter().enumerate() {
        if c == b'+' || c == b'#' {
            let starts_level = i == 0 || b[i - 1] == b'/';
            let next = b.get(i + 1).copied();
            if !starts_level {
                return false;
            }
            match (c, next) {
                (b'#', None) => {}
                (b'#', Some(_)) => return false,
                (_, None) | (_, Some(b'/')) => {}
                _ => return false,
            }
        }
    }
    true
}

/// A topic name as published: non-empty and without wildcards.
#[inline]
pub(crate) fn is_valid_topic_fast(topic: &str) -> bool {
    // Branch-free so it vectorises: topics are short and nearly always valid.
    !topic.is_empty() && !topic.bytes().fold(false, |bad, c| bad | (c == b'+') | (c == b'#'))
}

/// `$SYS` or anything below it.
#[inline]
pub(crate) fn is_sys(topic: &str) -> bool {
    match topic.strip_prefix("$SYS") {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Splits `$share/{group}/{filter}` into its filter; other filters pass
/// through. `None` when the shared-subscription form is malformed.
#[inline]
pub(crate) fn strip_share(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
                None
            } else {
                Some(inner)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_syntax() {
        for ok in ["a", "#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "$SYS/#", "a b/c"] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
            assert!(is_valid_filter_fast(ok), "{ok}");
        }
        for (bad, err) in [
            ("", FilterError::Empty),
            ("a/#/b", FilterError::HashNotLast),
            ("#/a", FilterError::HashNotLast),
            ("a#", FilterError::HashNotAlone),
            ("a/b#", FilterError::HashNotAlone),
            ("a+", FilterError::PlusNotAlone),
            ("a/+b/c", FilterError::PlusNotAlone),
            ("a\0b", FilterError::NulCharacter),
        ] {
            assert_eq!(validate_filter(bad), Err(err), "{bad:?}");
            if err != FilterError::NulCharacter {
                assert!(!is_valid_filter_fast(bad), "{bad:?}");
            }
        }
        assert_eq!(validate_filter(&"a".repeat(MAX_LEN + 1)), Err(FilterError::TooLong));
    }

    #[test]
    fn topic_syntax_and_sys() {
        assert!(is_valid_topic_fast("a/b"));
        assert!(!is_valid_topic_fast(""));
        assert!(!is_valid_topic_fast("a/+"));
        assert!(!is_valid_topic_fast("a/#"));
        assert!(is_sys("$SYS"));
        assert!(is_sys("$SYS/broker/uptime"));
        assert!(!is_sys("$SYSTEM/x"));
        assert!(!is_sys("a/$SYS"));
    }

    #[test]
    fn shared_subscription_prefix() {
        assert_eq!(strip_share("a/b"), Some("a/b"));
        assert_eq!(strip_share("$share/g/a/#"), Some("a/#"));
        assert_eq!(strip_share("$share/g"), None);
        assert_eq!(strip_share("$share//a"), None);
        assert_eq!(strip_share("$share/g/"), None);
        assert_eq!(strip_share("$share/+/a"), None);
    }
}
