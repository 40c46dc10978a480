//! Topic name / topic filter validation, the reference matcher and
//! shared-subscription parsing.

use thiserror::Error;

/// Protocol ceiling on the encoded length of a topic name or filter
/// [MQTT-4.7.3-3]: they are length-prefixed UTF-8 strings.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Why a topic name or topic filter was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long
    /// [MQTT-4.7.3-1].
    #[error("topic must not be empty")]
    Empty,
    /// Longer than the configured limit, or than 65535 bytes [MQTT-4.7.3-3].
    #[error("topic is {len} bytes long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    /// More `/`-separated levels than the configured limit.
    #[error("topic has {levels} levels, the limit is {max}")]
    TooManyLevels { levels: usize, max: usize },
    /// Contains U+0000 [MQTT-4.7.3-2].
    #[error("topic must not contain the null character U+0000")]
    NullCharacter,
    /// A topic name (PUBLISH, will topic) contains `+` or `#` [MQTT-3.3.2-2].
    #[error("topic name must not contain the wildcard characters '+' or '#'")]
    WildcardInTopicName,
    /// `#` is not alone in its level, or not in the last level
    /// [MQTT-4.7.1-2].
    #[error("multi-level wildcard '#' must occupy the whole last level of the filter")]
    InvalidMultiLevelWildcard,
    /// `+` shares its level with other characters [MQTT-4.7.1-3].
    #[error("single-level wildcard '+' must occupy a whole level of the filter")]
    InvalidSingleLevelWildcard,
}

/// `max_len == 0` (and anything above the protocol limit) means the protocol
/// limit.
#[inline]
fn effective_max_len(max_len: usize) -> usize {
    if max_len == 0 || max_len > MAX_TOPIC_LEN {
        MAX_TOPIC_LEN
    } else {
        max_len
    }
}

#[inline]
fn check_common(s: &str, max_len: usize) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    let max = effective_max_len(max_len);
    if s.len() > max {
        return Err(TopicError::TooLong { len: s.len(), max });
    }
    Ok(())
}

#[inline]
fn check_levels(levels: usize, max_levels: usize) -> Result<(), TopicError> {
    if max_levels != 0 && levels > max_levels {
        return Err(TopicError::TooManyLevels {
            levels,
            max: max_levels,
        });
    }
    Ok(())
}

/// Validates a topic name (the topic of a PUBLISH or a will message).
///
/// * non-empty [MQTT-4.7.3-1];
/// * at most `max_len` bytes; `0` means the protocol limit of 65535 bytes,
///   which also caps larger values [MQTT-4.7.3-3];
/// * no `+` or `#` [MQTT-3.3.2-2];
/// * no U+0000 [MQTT-4.7.3-2];
/// * at most `max_levels` `/`-separated levels (`0` = unlimited).
///
/// Runs in a single pass over the bytes: it is called for every PUBLISH.
///
/// # Errors
///
/// The first rule broken, as a [`TopicError`].
pub fn validate_topic_name(
    topic: &str,
    max_levels: usize,
    max_len: usize,
) -> Result<(), TopicError> {
    check_common(topic, max_len)?;
    let mut levels = 1usize;
    // UTF-8 validity is guaranteed by `&str`; in UTF-8 the byte 0 only ever
    // encodes U+0000, and `/`, `+`, `#` never occur inside multi-byte
    // sequences, so a byte scan is exact.
    for &b in topic.as_bytes() {
        match b {
            b'/' => levels += 1,
            b'+' | b'#' => return Err(TopicError::WildcardInTopicName),
            0 => return Err(TopicError::NullCharacter),
            _ => {}
        }
    }
    check_levels(levels, max_levels)
}

/// Validates a topic filter (from SUBSCRIBE / UNSUBSCRIBE).
///
/// * non-empty [MQTT-4.7.3-1];
/// * at most `max_len` bytes (`0` = the protocol limit of 65535) [MQTT-4.7.3-3];
/// * `#` only as the whole last level [MQTT-4.7.1-2];
/// * `+` only as a whole level [MQTT-4.7.1-3];
/// * no U+0000 [MQTT-4.7.3-2];
/// * at most `max_levels` levels (`0` = unlimited).
///
/// A shared subscription `$share/GROUP/FILTER` is validated as an ordinary
/// filter here; use [`parse_shared`] first and validate the inner filter to
/// apply the shared-subscription rules.
///
/// # Errors
///
/// The first rule broken, as a [`TopicError`].
pub fn validate_topic_filter(
    filter: &str,
    max_levels: usize,
    max_len: usize,
) -> Result<(), TopicError> {
    check_common(filter, max_len)?;
    let mut levels = 0usize;
    let mut after_hash = false;
    for level in filter.split('/') {
        levels += 1;
        if after_hash {
            return Err(TopicError::InvalidMultiLevelWildcard);
        }
        match level {
            "#" => after_hash = true,
            "+" => {}
            _ => {
                for &b in level.as_bytes() {
                    match b {
                        b'#' => return Err(TopicError::InvalidMultiLevelWildcard),
                        b'+' => return Err(TopicError::InvalidSingleLevelWildcard),
                        0 => return Err(TopicError::NullCharacter),
                        _ => {}
                    }
                }
            }
        }
    }
    check_levels(levels, max_levels)
}

/// Whether `topic` is a "system" topic, i.e. starts with `$` (`$SYS/...`,
/// `$share/...`). Such topics are not matched by filters starting with a
/// wildcard [MQTT-4.7.2-1].
#[inline]
#[must_use]
pub fn is_system_topic(topic: &str) -> bool {
    topic.starts_with('$')
}

/// Reference matcher: does topic filter `filter` match topic name `topic`?
///
/// Both are assumed valid (see [`validate_topic_filter`] and
/// [`validate_topic_name`]). Applies the `$` rule: a filter starting with `+`
/// or `#` never matches a topic starting with `$` [MQTT-4.7.2-1]. `#` also
/// matches the parent level (`a/#` matches `a`), and `+` matches an empty
/// level (`+/+` matches `/`).
///
/// This is the simple one-filter-at-a-time version; routing uses
/// [`SubscriptionTrie`](super::SubscriptionTrie), which is checked against
/// this function in the tests.
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if is_system_topic(topic) && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` matches whatever is left, including nothing.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits a shared subscription `$share/GROUP/FILTER` into `(GROUP, FILTER)`.
///
/// Returns `None` if `filter` is not a shared subscription or is malformed:
/// the group must be non-empty and must not contain `+` or `#` (it cannot
/// contain `/` by construction), and the inner filter must be non-empty. The
/// inner filter is *not* otherwise validated: pass it to
/// [`validate_topic_filter`].
#[must_use]
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix("$share/")?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return None;
    }
    Some((group, inner))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::MATCH_CASES;
    use super::*;

    #[test]
    fn reference_matcher_agrees_with_the_table() {
        for &(filter, topic, expected) in MATCH_CASES {
            assert_eq!(
                matches(filter, topic),
                expected,
                "matches({filter:?}, {topic:?})"
            );
        }
    }

    #[test]
    fn table_rows_are_valid_except_empty_strings() {
        for &(filter, topic, _) in MATCH_CASES {
            if !filter.is_empty() {
                assert_eq!(validate_topic_filter(filter, 0, 0), Ok(()), "{filter:?}");
            }
            if !topic.is_empty() {
                assert_eq!(validate_topic_name(topic, 0, 0), Ok(()), "{topic:?}");
            }
        }
    }

    #[test]
    fn mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(!matches("+", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        // Only the first level is special.
        assert!(matches("a/+", "a/$SYS"));
    }

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_matches_parent_and_children() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "/"));
    }

    #[test]
    fn mqtt_4_7_1_3_single_level_wildcard_matches_one_level() {
        assert!(matches("+", "sport"));
        assert!(!matches("+", "sport/"));
        assert!(matches("+/+", "/"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("a/+/c", "a//c"));
    }

    #[test]
    fn is_system_topic_checks_leading_dollar() {
        assert!(is_system_topic("$SYS/broker/uptime"));
        assert!(is_system_topic("$"));
        assert!(!is_system_topic("a/$SYS"));
        assert!(!is_system_topic(""));
    }

    // ---- topic names ------------------------------------------------------

    #[test]
    fn valid_topic_names() {
        for t in [
            "a",
            "/",
            "a/b",
            "/finance",
            "a//b",
            "a/",
            "$SYS/x",
            "ünïcödé/日本",
            " ",
        ] {
            assert_eq!(validate_topic_name(t, 0, 0), Ok(()), "{t:?}");
        }
    }

    #[test]
    fn mqtt_4_7_3_1_topic_name_must_not_be_empty() {
        assert_eq!(validate_topic_name("", 0, 0), Err(TopicError::Empty));
    }

    #[test]
    fn mqtt_3_3_2_2_topic_name_must_not_contain_wildcards() {
        for t in ["+", "#", "a/+", "a/#", "a+b", "sport/tennis#", "+/x"] {
            assert_eq!(
                validate_topic_name(t, 0, 0),
                Err(TopicError::WildcardInTopicName),
                "{t:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_3_2_topic_name_must_not_contain_null() {
        assert_eq!(
            validate_topic_name("a\0b", 0, 0),
            Err(TopicError::NullCharacter)
        );
        assert_eq!(
            validate_topic_name("\0", 0, 0),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn mqtt_4_7_3_3_topic_name_length_limit() {
        let max = "a".repeat(MAX_TOPIC_LEN);
        assert_eq!(validate_topic_name(&max, 0, 0), Ok(()));
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            validate_topic_name(&over, 0, 0),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN
            })
        );
        // A configured limit above the protocol limit is capped.
        assert_eq!(
            validate_topic_name(&over, 0, 1 << 20),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN
            })
        );
        assert_eq!(validate_topic_name("abcd", 0, 4), Ok(()));
        assert_eq!(
            validate_topic_name("abcde", 0, 4),
            Err(TopicError::TooLong { len: 5, max: 4 })
        );
        // Bytes, not chars.
        assert_eq!(
            validate_topic_name("éé", 0, 3),
            Err(TopicError::TooLong { len: 4, max: 3 })
        );
    }

    #[test]
    fn topic_name_level_limit() {
        assert_eq!(validate_topic_name("a/b/c", 3, 0), Ok(()));
        assert_eq!(
            validate_topic_name("a/b/c", 2, 0),
            Err(TopicError::TooManyLevels { levels: 3, max: 2 })
        );
        assert_eq!(
            validate_topic_name("/", 1, 0),
            Err(TopicError::TooManyLevels { levels: 2, max: 1 })
        );
        assert_eq!(validate_topic_name(&"/".repeat(1000), 0, 0), Ok(()));
    }

    // ---- topic filters ----------------------------------------------------

    #[test]
    fn valid_topic_filters() {
        for f in [
            "#",
            "+",
            "+/+",
            "/+",
            "a/#",
            "a/+/b",
            "+/#",
            "sport/tennis/player1/#",
            "/",
            "a//b",
            "$SYS/#",
            "$share/g/a/+",
            "ünïcödé/+",
        ] {
            assert_eq!(validate_topic_filter(f, 0, 0), Ok(()), "{f:?}");
        }
    }

    #[test]
    fn mqtt_4_7_3_1_topic_filter_must_not_be_empty() {
        assert_eq!(validate_topic_filter("", 0, 0), Err(TopicError::Empty));
    }

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_must_be_last_and_alone() {
        for f in [
            "#/a",
            "a/#/b",
            "#/#",
            "sport/tennis#",
            "a#",
            "#a",
            "a/#b",
            "##",
        ] {
            assert_eq!(
                validate_topic_filter(f, 0, 0),
                Err(TopicError::InvalidMultiLevelWildcard),
                "{f:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_1_3_single_level_wildcard_must_be_alone() {
        for f in ["sport+", "a/b+/c", "+a", "++", "a/+b"] {
            assert_eq!(
                validate_topic_filter(f, 0, 0),
                Err(TopicError::InvalidSingleLevelWildcard),
                "{f:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_3_2_topic_filter_must_not_contain_null() {
        assert_eq!(
            validate_topic_filter("a/\0/b", 0, 0),
            Err(TopicError::NullCharacter)
        );
    }

    #[test]
    fn mqtt_4_7_3_3_topic_filter_length_limit() {
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            validate_topic_filter(&over, 0, 0),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN
            })
        );
        assert_eq!(validate_topic_filter("a/#", 0, 3), Ok(()));
        assert_eq!(
            validate_topic_filter("a/+/", 0, 3),
            Err(TopicError::TooLong { len: 4, max: 3 })
        );
    }

    #[test]
    fn topic_filter_level_limit() {
        assert_eq!(validate_topic_filter("a/+/#", 3, 0), Ok(()));
        assert_eq!(
            validate_topic_filter("a/+/#", 2, 0),
            Err(TopicError::TooManyLevels { levels: 3, max: 2 })
        );
    }

    #[test]
    fn errors_have_readable_messages() {
        assert_eq!(TopicError::Empty.to_string(), "topic must not be empty");
        assert_eq!(
            TopicError::TooManyLevels { levels: 9, max: 8 }.to_string(),
            "topic has 9 levels, the limit is 8"
        );
        assert_eq!(
            TopicError::TooLong { len: 9, max: 8 }.to_string(),
            "topic is 9 bytes long, the limit is 8"
        );
    }

    // ---- shared subscriptions ---------------------------------------------

    #[test]
    fn parse_shared_subscriptions() {
        assert_eq!(parse_shared("$share/g/a/b"), Some(("g", "a/b")));
        assert_eq!(parse_shared("$share/group1/#"), Some(("group1", "#")));
        assert_eq!(parse_shared("$share/g/+"), Some(("g", "+")));
        assert_eq!(parse_shared("$share/g//"), Some(("g", "/")));
        // Not shared.
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$SHARE/g/a"), None);
        assert_eq!(parse_shared("$sharex/g/a"), None);
        assert_eq!(parse_shared("$share"), None);
        // Malformed.
        assert_eq!(parse_shared("$share/"), None);
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(parse_shared("$share/g/"), None);
        assert_eq!(parse_shared("$share//a"), None);
        assert_eq!(parse_shared("$share/+/a"), None);
        assert_eq!(parse_shared("$share/g#/a"), None);
    }
}
