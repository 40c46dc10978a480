//! The topic layer: validation, matching, subscription routing and the
//! retained-message store.
//!
//! * [`validate_topic_name`] / [`validate_topic_filter`] enforce the MQTT
//!   3.1.1 / 5.0 syntax rules (section 4.7) plus the broker's configured
//!   limits. Everything else in this module *assumes* its input passed them.
//! * [`matches()`] is the straightforward reference matcher: one filter against
//!   one topic. It is what the tests check the tries against.
//! * [`SubscriptionTrie`] is the routing hot path: given a published topic it
//!   visits every subscriber whose filter matches, walking only the matching
//!   branches and without allocating (for topics up to 32 levels deep).
//! * [`RetainedStore`] keeps the retained messages in a trie of topic levels,
//!   so a wildcard SUBSCRIBE only walks the branches its filter can match.
//!
//! Matching rules, applied identically by all three matchers:
//!
//! * Levels are separated by `/`; empty levels are ordinary levels, so
//!   `/finance` has the two levels `""` and `"finance"`, and `a/` has `"a"`
//!   and `""`.
//! * `+` matches exactly one level, which may be empty (`+/+` matches `/`).
//! * `#` matches any number of levels *including zero*, so `a/#` matches
//!   `a`, `a/` and `a/b/c`, and `#` matches every topic.
//! * A filter starting with a wildcard never matches a topic starting with
//!   `$` [MQTT-4.7.2-1]: `#` and `+/monitor/Clients` do not match
//!   `$SYS/monitor/Clients`, while `$SYS/#` and `$SYS/monitor/+` do.
//!
//! Shared subscriptions (`$share/GROUP/FILTER`) are only parsed here
//! ([`parse_shared`]); callers strip the prefix before inserting the filter
//! into a trie.

mod retained;
mod trie;
mod validate;

pub use retained::RetainedStore;
pub use trie::SubscriptionTrie;
pub use validate::{
    is_system_topic, matches, parse_shared, validate_topic_filter, validate_topic_name, TopicError,
    MAX_TOPIC_LEN,
};

/// Hash map used by the tries: ahash with per-map random keys, so level
/// strings chosen by clients cannot be used for hash flooding.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Position sentinel meaning "every level has been consumed".
pub(crate) const END: usize = usize::MAX;

/// Splits the level starting at byte `pos` off `s`.
///
/// Returns the level and the position of the next level, or [`END`] if this
/// was the last one. `pos` must be `0` or a value previously returned by this
/// function (i.e. just after a `/`), never [`END`].
#[inline]
pub(crate) fn next_level(s: &str, pos: usize) -> (&str, usize) {
    let rest = &s[pos..];
    match rest.as_bytes().iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    }
}

/// Shrinks a map that has become mostly empty, so a burst of subscriptions
/// on one node does not pin its peak capacity (and slow iteration over it)
/// forever. The 4x hysteresis keeps this amortised O(1).
#[inline]
pub(crate) fn maybe_shrink<K: Eq + std::hash::Hash, V>(map: &mut FastMap<K, V>) {
    let cap = map.capacity();
    if cap > 32 && map.len() < cap / 4 {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    /// `(filter, topic, expected)`: the shared table every matcher is checked
    /// against.
    pub(crate) const MATCH_CASES: &[(&str, &str, bool)] = &[
        // Spec examples, MQTT 3.1.1 section 4.7.1.2 / 5.0 section 4.7.1.2.
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/tennis/player1/#", "sport/tennis/player2", false),
        ("sport/tennis/player1/#", "sport/tennis", false),
        ("sport/#", "sport", true),
        ("sport/#", "sport/", true),
        ("sport/#", "sports", false),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennis/player1/ranking", true),
        ("sport/tennis/#", "sport/football", false),
        ("#", "sport", true),
        ("#", "/", true),
        ("#", "", true),
        ("#", "a/b/c/d", true),
        // Section 4.7.1.3.
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+", "sport", true),
        ("+", "sport/", false),
        ("+", "", true),
        ("+/+", "/", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+/+", "/finance", true),
        ("+/tennis/#", "sport/tennis/player1", true),
        ("+/tennis/#", "sport/tennis", true),
        ("+/tennis/#", "sport/football", false),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a/b/d", false),
        ("a/+/c", "a/c", false),
        ("a/+", "a", false),
        ("a/+/#", "a/b", true),
        ("a/+/#", "a", false),
        ("+/#", "a", true),
        ("+/#", "/", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b/c", true),
        ("a/#", "b", false),
        ("a/#", "ab", false),
        // Literal matching, empty levels.
        ("a/b", "a/b", true),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b", false),
        ("a/b/", "a/b/", true),
        ("/", "/", true),
        ("/", "", false),
        ("", "", true),
        ("", "/", false),
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("/a", "a", false),
        ("a", "A", false),
        // $ topics [MQTT-4.7.2-1].
        ("#", "$SYS/x", false),
        ("#", "$SYS", false),
        ("#", "$", false),
        ("+", "$SYS", false),
        ("+/#", "$SYS/x", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/#", "$SYS", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("$SYS/+/Clients", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/Clients", "$SYS/monitor/Clients", true),
        ("$SYS/+", "$SYS/monitor/Clients", false),
        ("$SYS", "$SYS", true),
        ("+/$SYS", "a/$SYS", true),
        ("a/#", "a/$SYS", true),
        ("#", "a/$SYS", true),
        ("#", "x$", true),
    ];

    /// Tiny deterministic xorshift64* generator for the randomized tests.
    pub(crate) struct XorShift(u64);

    impl XorShift {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish value in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    const TOPIC_LEVELS: &[&str] = &["a", "b", "$SYS", ""];

    /// A random valid topic name of 1..=4 levels drawn from {a, b, $SYS, ""}.
    /// (A lone empty level, i.e. the invalid empty topic, is redrawn.)
    pub(crate) fn random_topic(rng: &mut XorShift) -> String {
        loop {
            let n = 1 + rng.below(4);
            let topic = (0..n)
                .map(|_| TOPIC_LEVELS[rng.below(TOPIC_LEVELS.len())])
                .collect::<Vec<_>>()
                .join("/");
            if !topic.is_empty() {
                return topic;
            }
        }
    }

    /// A random valid topic filter of 1..=4 levels drawn from
    /// {a, b, $SYS, "", +}, the last level possibly being `#`.
    /// (The invalid empty filter is redrawn.)
    pub(crate) fn random_filter(rng: &mut XorShift) -> String {
        loop {
            let n = 1 + rng.below(4);
            let filter = (0..n)
                .map(|i| match rng.below(7) {
                    0..=3 => TOPIC_LEVELS[rng.below(TOPIC_LEVELS.len())],
                    4 | 5 => "+",
                    _ if i + 1 == n => "#",
                    _ => "+",
                })
                .collect::<Vec<_>>()
                .join("/");
            if !filter.is_empty() {
                return filter;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::MATCH_CASES;
    use super::*;

    /// The reference matcher, the subscription trie and the retained store
    /// agree with each other and with the table.
    #[test]
    fn all_matchers_agree_with_the_table() {
        for &(filter, topic, expected) in MATCH_CASES {
            assert_eq!(
                matches(filter, topic),
                expected,
                "matches({filter:?}, {topic:?})"
            );

            let mut trie = SubscriptionTrie::new();
            trie.insert(filter, "client", 1u8);
            let mut hits = 0;
            trie.for_each_match(topic, |_, _| hits += 1);
            assert_eq!(hits, usize::from(expected), "trie: {filter:?} vs {topic:?}");
            assert_eq!(
                trie.has_match(topic),
                expected,
                "trie.has_match: {filter:?} vs {topic:?}"
            );

            let mut store = RetainedStore::new();
            store.set(topic, ());
            let mut found = Vec::new();
            store.for_each_matching(filter, |t, _| found.push(t.to_owned()));
            let want: Vec<String> = if expected {
                vec![topic.to_owned()]
            } else {
                vec![]
            };
            assert_eq!(found, want, "retained: {filter:?} vs {topic:?}");
        }
    }

    /// All table rows loaded at once: each topic sees exactly the filters the
    /// table says, and each filter exactly the retained topics.
    #[test]
    fn all_matchers_agree_with_everything_loaded() {
        let mut trie = SubscriptionTrie::new();
        let mut store = RetainedStore::new();
        for (i, &(filter, topic, _)) in MATCH_CASES.iter().enumerate() {
            trie.insert(filter, i, ());
            store.set(topic, i);
        }
        for &(_, topic, _) in MATCH_CASES {
            let mut got = Vec::new();
            trie.for_each_match(topic, |&i, _| got.push(MATCH_CASES[i].0));
            got.sort_unstable();
            let mut want: Vec<&str> = MATCH_CASES
                .iter()
                .map(|c| c.0)
                .filter(|f| matches(f, topic))
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "trie vs matches for topic {topic:?}");
        }
        for &(filter, _, _) in MATCH_CASES {
            let mut got = Vec::new();
            store.for_each_matching(filter, |t, _| got.push(t.to_owned()));
            got.sort_unstable();
            let mut want: Vec<String> = MATCH_CASES
                .iter()
                .map(|c| c.1)
                .filter(|t| matches(filter, t))
                .map(str::to_owned)
                .collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(got, want, "retained vs matches for filter {filter:?}");
        }
    }

    #[test]
    fn next_level_splits_on_slash() {
        assert_eq!(next_level("a/b", 0), ("a", 2));
        assert_eq!(next_level("a/b", 2), ("b", END));
        assert_eq!(next_level("a/", 2), ("", END));
        assert_eq!(next_level("/a", 0), ("", 1));
        assert_eq!(next_level("", 0), ("", END));
    }
}
