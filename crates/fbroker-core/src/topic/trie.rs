//! The subscription trie: topic filter -> subscribers, matched against
//! published topic names on the routing hot path.

use std::fmt;
use std::hash::Hash;
use std::ops::ControlFlow;

use smallvec::SmallVec;

use super::{maybe_shrink, next_level, FastMap, END};

/// Subscriptions indexed by topic filter, one trie level per `/`-separated
/// filter level.
///
/// `K` identifies a subscriber (typically an `Arc<str>` client id) and `V` is
/// what the router needs about the subscription (`QoS`, no-local, subscription
/// identifier, ...). A subscription is the pair `(filter, key)`: one key may
/// hold several subscriptions with different filters, and subscribing again
/// with the same filter replaces the value [MQTT-3.8.4-3].
///
/// Filters are expected to have passed
/// [`validate_topic_filter`](super::validate_topic_filter), and shared
/// subscriptions to have had their `$share/GROUP/` prefix stripped (see
/// [`parse_shared`](super::parse_shared)). Invalid filters are stored without
/// panicking, but their matching behaviour is unspecified.
///
/// Nothing in here recurses, so neither very deep filters nor very deep
/// topics can overflow the stack (not even on drop).
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    /// Number of `(filter, key)` subscriptions.
    len: usize,
}

struct Node<K, V> {
    /// Literal children, keyed by level string.
    children: FastMap<Box<str>, Node<K, V>>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
    /// The `#` child. Only its `subs` matter: `#` is always the last level.
    hash: Option<Box<Node<K, V>>>,
    /// Subscriptions whose filter ends at this node.
    subs: FastMap<K, V>,
}

/// Which child of a node a filter level leads to.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Plus,
    Hash,
    Literal(&'a str),
}

impl<'a> Edge<'a> {
    #[inline]
    fn of(level: &'a str) -> Self {
        match level {
            "+" => Edge::Plus,
            "#" => Edge::Hash,
            _ => Edge::Literal(level),
        }
    }
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            children: FastMap::default(),
            plus: None,
            hash: None,
            subs: FastMap::default(),
        }
    }

    #[inline]
    fn child(&self, edge: Edge<'_>) -> Option<&Self> {
        match edge {
            Edge::Plus => self.plus.as_deref(),
            Edge::Hash => self.hash.as_deref(),
            Edge::Literal(level) => self.children.get(level),
        }
    }

    #[inline]
    fn child_mut(&mut self, edge: Edge<'_>) -> Option<&mut Self> {
        match edge {
            Edge::Plus => self.plus.as_deref_mut(),
            Edge::Hash => self.hash.as_deref_mut(),
            Edge::Literal(level) => self.children.get_mut(level),
        }
    }

    fn child_or_insert(&mut self, edge: Edge<'_>) -> &mut Self {
        match edge {
            Edge::Plus => self.plus.get_or_insert_with(|| Box::new(Node::new())),
            Edge::Hash => self.hash.get_or_insert_with(|| Box::new(Node::new())),
            // Look up before `entry` so an existing level does not cost a
            // `Box<str>` allocation.
            Edge::Literal(level) => {
                if self.children.contains_key(level) {
                    self.children
                        .get_mut(level)
                        .expect("checked by contains_key")
                } else {
                    self.children
                        .entry(Box::from(level))
                        .or_insert_with(Node::new)
                }
            }
        }
    }

    /// Detaches a child (and its whole subtree).
    fn take_child(&mut self, edge: Edge<'_>) -> Option<Self> {
        match edge {
            Edge::Plus => self.plus.take().map(|node| *node),
            Edge::Hash => self.hash.take().map(|node| *node),
            Edge::Literal(level) => {
                let node = self.children.remove(level);
                maybe_shrink(&mut self.children);
                node
            }
        }
    }

    #[inline]
    fn child_count(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some()) + usize::from(self.hash.is_some())
    }

    fn has_children(&self) -> bool {
        !self.children.is_empty() || self.plus.is_some() || self.hash.is_some()
    }

    fn move_children_into(&mut self, out: &mut Vec<Self>) {
        out.extend(self.children.drain().map(|(_, node)| node));
        out.extend(self.plus.take().map(|node| *node));
        out.extend(self.hash.take().map(|node| *node));
    }

    fn for_each_child<'a>(&'a self, mut f: impl FnMut(&'a Self)) {
        self.children.values().for_each(&mut f);
        self.plus.as_deref().into_iter().for_each(&mut f);
        self.hash.as_deref().into_iter().for_each(&mut f);
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Iterative drop: the derived one would recurse once per level, and a
    /// client may subscribe to a filter with tens of thousands of levels.
    fn drop(&mut self) {
        if !self.has_children() {
            return;
        }
        let mut pending = Vec::new();
        self.move_children_into(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.move_children_into(&mut pending);
            // `node` now has no children: its own drop is shallow.
        }
    }
}

impl<K, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Number of `(filter, key)` subscriptions.
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no subscriptions at all.
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes, not counting the root. O(nodes); meant for
    /// statistics and tests. Drops back to 0 once every subscription is
    /// removed.
    #[must_use]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack: Vec<&Node<K, V>> = vec![&self.root];
        while let Some(node) = stack.pop() {
            node.for_each_child(|child| {
                count += 1;
                stack.push(child);
            });
        }
        count
    }

    /// Removes every subscription.
    pub fn clear(&mut self) {
        self.root = Node::new();
        self.len = 0;
    }
}

impl<K: Eq + Hash, V> SubscriptionTrie<K, V> {
    /// Subscribes `key` to `filter` with `value`.
    ///
    /// If `key` already had a subscription with exactly this filter its value
    /// is replaced and the previous one returned [MQTT-3.8.4-3]; `len()` is
    /// then unchanged.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(Edge::of(level));
        }
        let previous = node.subs.insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes `key`'s subscription to exactly `filter`, returning its value,
    /// or `None` if there was none. Nodes left without subscriptions and
    /// children are freed.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        // Pass 1 (shared borrows): find the subscription and the deepest
        // node that survives the removal; everything below it on the
        // filter's path can go.
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in filter.split('/').enumerate() {
            if depth > 0 && (!node.subs.is_empty() || node.child_count() > 1) {
                keep_depth = depth;
            }
            node = node.child(Edge::of(level))?;
        }
        if !node.subs.contains_key(key) {
            return None;
        }
        let prune = node.subs.len() == 1 && !node.has_children();

        // Pass 2: remove the subscription.
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(Edge::of(level))?;
        }
        let value = node.subs.remove(key)?;
        maybe_shrink(&mut node.subs);
        self.len -= 1;

        // Pass 3: cut off the branch that is now empty.
        if prune {
            let mut levels = filter.split('/');
            let mut node = &mut self.root;
            for level in levels.by_ref().take(keep_depth) {
                node = node.child_mut(Edge::of(level))?;
            }
            if let Some(level) = levels.next() {
                drop(node.take_child(Edge::of(level)));
            }
        }
        Some(value)
    }

    /// Calls `f(key, value)` for every subscription whose filter matches
    /// `topic`, applying the `$` rule [MQTT-4.7.2-1] at the first level.
    ///
    /// A key is visited once per matching subscription: a client subscribed
    /// to both `a/+` and `a/#` is reported twice for `a/b`. The caller
    /// de-duplicates per client and, for MQTT 3.1.1, delivers once at the
    /// maximum granted `QoS` (MQTT 5 additionally collects the subscription
    /// identifiers of all matches). Visiting order is unspecified.
    ///
    /// Does not allocate unless a matching path is more than ~32 levels
    /// deep.
    #[inline]
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        let _ = self.walk(topic, |subs| {
            for (key, value) in subs {
                f(key, value);
            }
            ControlFlow::Continue(())
        });
    }

    /// Whether at least one subscription matches `topic`. Stops at the
    /// first match.
    #[inline]
    #[must_use]
    pub fn has_match(&self, topic: &str) -> bool {
        self.walk(topic, |_| ControlFlow::Break(())).is_break()
    }

    /// Depth-first walk over the nodes matching `topic`, calling `visit` with
    /// every non-empty subscriber map whose filter matches.
    #[inline]
    fn walk<'s>(
        &'s self,
        topic: &str,
        mut visit: impl FnMut(&'s FastMap<K, V>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let dollar = topic.starts_with('$');
        // (node, position of the first unconsumed topic level or END). Only
        // the root is ever paired with position 0.
        let mut stack: SmallVec<[(&'s Node<K, V>, usize); 32]> = SmallVec::new();
        stack.push((&self.root, 0));
        while let Some((node, pos)) = stack.pop() {
            // [MQTT-4.7.2-1]: wildcards at the first level skip `$` topics.
            let wildcards = !(dollar && pos == 0);
            // `#` matches all remaining levels, including none (so `a/#`
            // matches `a`).
            if let Some(hash) = node.hash.as_deref() {
                if wildcards && !hash.subs.is_empty() {
                    visit(&hash.subs)?;
                }
            }
            if pos == END {
                if !node.subs.is_empty() {
                    visit(&node.subs)?;
                }
                continue;
            }
            let (level, next) = next_level(topic, pos);
            if let Some(child) = node.children.get(level) {
                stack.push((child, next));
            }
            if wildcards {
                if let Some(plus) = node.plus.as_deref() {
                    stack.push((plus, next));
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::super::test_support::{random_filter, random_topic, XorShift, MATCH_CASES};
    use super::super::{matches, validate_topic_filter, validate_topic_name};
    use super::*;

    fn collect<K: Eq + Hash + Clone + Ord, V: Clone + Ord>(
        trie: &SubscriptionTrie<K, V>,
        topic: &str,
    ) -> Vec<(K, V)> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |k, v| out.push((k.clone(), v.clone())));
        out.sort();
        out
    }

    #[test]
    fn trie_agrees_with_the_table() {
        for &(filter, topic, expected) in MATCH_CASES {
            let mut trie = SubscriptionTrie::new();
            trie.insert(filter, 7u32, 'v');
            let want = if expected { vec![(7, 'v')] } else { vec![] };
            assert_eq!(collect(&trie, topic), want, "{filter:?} vs {topic:?}");
            assert_eq!(
                trie.has_match(topic),
                expected,
                "has_match {filter:?} vs {topic:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("#", "all", 0u8);
        trie.insert("+/monitor/Clients", "plus", 0);
        trie.insert("+/#", "plushash", 0);
        trie.insert("$SYS/#", "sys", 0);
        trie.insert("$SYS/monitor/+", "sysplus", 0);
        let mut got: Vec<&str> = Vec::new();
        trie.for_each_match("$SYS/monitor/Clients", |k, _| got.push(k));
        got.sort_unstable();
        assert_eq!(got, ["sys", "sysplus"]);

        let mut got: Vec<&str> = Vec::new();
        trie.for_each_match("x/monitor/Clients", |k, _| got.push(k));
        got.sort_unstable();
        assert_eq!(got, ["all", "plus", "plushash"]);
        assert!(!SubscriptionTrie::<&str, ()>::new().has_match("$SYS"));
    }

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_matches_parent_level() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("sport/tennis/player1/#", 1, ());
        for topic in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(trie.has_match(topic), "{topic}");
        }
        assert!(!trie.has_match("sport/tennis"));
        trie.insert("sport/#", 2, ());
        assert_eq!(collect(&trie, "sport"), [(2, ())]);
        assert_eq!(collect(&trie, "sport/tennis/player1"), [(1, ()), (2, ())]);
    }

    #[test]
    fn overlapping_subscriptions_of_one_key_are_each_reported() {
        let mut trie = SubscriptionTrie::new();
        let client: Arc<str> = Arc::from("client-1");
        trie.insert("a/b", client.clone(), 0u8);
        trie.insert("a/+", client.clone(), 1);
        trie.insert("a/#", client.clone(), 2);
        trie.insert("#", client.clone(), 1);
        trie.insert("+/+", client.clone(), 0);
        trie.insert("a/c", client.clone(), 2);
        trie.insert("a/b", Arc::from("other"), 1);
        assert_eq!(trie.len(), 7);

        let mut qos_for_client = Vec::new();
        let mut other = 0;
        trie.for_each_match("a/b", |k, &qos| {
            if **k == *"client-1" {
                qos_for_client.push(qos);
            } else {
                other += 1;
            }
        });
        qos_for_client.sort_unstable();
        assert_eq!(qos_for_client, [0, 0, 1, 1, 2]);
        assert_eq!(other, 1);
    }

    #[test]
    fn mqtt_3_8_4_3_resubscribe_replaces_the_subscription() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert("a/+", "c", 0u8), None);
        assert_eq!(trie.insert("a/+", "c", 2), Some(0));
        assert_eq!(trie.len(), 1);
        assert_eq!(collect(&trie, "a/x"), [("c", 2)]);
        // Same key, different filter: a separate subscription.
        assert_eq!(trie.insert("a/#", "c", 1), None);
        assert_eq!(trie.len(), 2);
        // Same filter, different key: a separate subscription.
        assert_eq!(trie.insert("a/+", "d", 1), None);
        assert_eq!(trie.len(), 3);
    }

    #[test]
    fn remove_returns_the_value_and_only_touches_that_subscription() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("a/b", "c", 1u8);
        trie.insert("a/b", "d", 2);
        trie.insert("a/+", "c", 0);
        assert_eq!(trie.remove("a/b", &"x"), None);
        assert_eq!(trie.remove("a/c", &"c"), None);
        assert_eq!(trie.remove("a", &"c"), None);
        assert_eq!(trie.remove("a/b/c", &"c"), None);
        assert_eq!(trie.remove("#", &"c"), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.remove("a/b", &"c"), Some(1));
        assert_eq!(trie.remove("a/b", &"c"), None);
        assert_eq!(trie.len(), 2);
        assert_eq!(collect(&trie, "a/b"), [("c", 0), ("d", 2)]);
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let filters = [
            "a/b/c",
            "a/b",
            "a/+/c",
            "a/#",
            "#",
            "+",
            "+/+",
            "/",
            "//",
            "/+/#",
            "$SYS/#",
            "$SYS/monitor/+",
            "a/b/c/d/e/f",
        ];
        let mut trie = SubscriptionTrie::new();
        for (i, f) in filters.iter().enumerate() {
            trie.insert(f, i % 3, i);
        }
        assert!(trie.node_count() > 0);
        for (i, f) in filters.iter().enumerate() {
            assert_eq!(trie.remove(f, &(i % 3)), Some(i), "{f}");
        }
        assert_eq!(trie.len(), 0);
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);

        // Partial removal keeps exactly the nodes still needed.
        trie.insert("a/b/c/d", 1, 0);
        trie.insert("a/b", 1, 0);
        assert_eq!(trie.node_count(), 4);
        trie.remove("a/b/c/d", &1);
        assert_eq!(trie.node_count(), 2);
        trie.insert("a/+/x", 1, 0);
        trie.insert("a/+/y", 1, 0);
        assert_eq!(trie.node_count(), 5);
        trie.remove("a/+/x", &1);
        assert_eq!(trie.node_count(), 4);
        trie.remove("a/b", &1);
        assert_eq!(trie.node_count(), 3);
        trie.remove("a/+/y", &1);
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn clear_empties_the_trie() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("a/#", 1, ());
        trie.clear();
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
        assert!(!trie.has_match("a"));
    }

    #[test]
    fn randomized_cross_check_against_reference_matcher() {
        let mut rng = XorShift::new(0x05EE_D0F7_091C);
        let mut trie = SubscriptionTrie::new();
        let mut model: HashMap<(String, u32), u32> = HashMap::new();
        let mut checked_topics = 0;
        for step in 0..6000u32 {
            if rng.below(3) > 0 || model.is_empty() {
                let filter = random_filter(&mut rng);
                assert_eq!(validate_topic_filter(&filter, 0, 0), Ok(()), "{filter:?}");
                let key = rng.below(8) as u32;
                assert_eq!(
                    trie.insert(&filter, key, step),
                    model.insert((filter.clone(), key), step),
                    "insert {filter:?}"
                );
            } else {
                // Half the time an existing subscription, otherwise a random one.
                let (filter, key) = if rng.below(2) == 0 {
                    let nth = rng.below(model.len());
                    model.keys().nth(nth).cloned().expect("non-empty")
                } else {
                    (random_filter(&mut rng), rng.below(8) as u32)
                };
                assert_eq!(
                    trie.remove(&filter, &key),
                    model.remove(&(filter.clone(), key)),
                    "remove {filter:?}"
                );
            }
            assert_eq!(trie.len(), model.len());

            if step % 4 == 0 {
                let topic = random_topic(&mut rng);
                assert_eq!(validate_topic_name(&topic, 0, 0), Ok(()), "{topic:?}");
                let mut want: Vec<(u32, u32)> = model
                    .iter()
                    .filter(|((f, _), _)| matches(f, &topic))
                    .map(|((_, k), v)| (*k, *v))
                    .collect();
                want.sort_unstable();
                assert_eq!(collect(&trie, &topic), want, "topic {topic:?}");
                assert_eq!(
                    trie.has_match(&topic),
                    !want.is_empty(),
                    "has_match {topic:?}"
                );
                checked_topics += 1;
            }
        }
        assert!(checked_topics >= 1000);

        // Remove everything that is left: nothing may leak.
        let left: Vec<(String, u32)> = model.keys().cloned().collect();
        for (filter, key) in left {
            assert!(trie.remove(&filter, &key).is_some());
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    /// Filters and topics of 65536 levels (a 65535-byte string of slashes is
    /// a valid filter) must neither recurse on insert, match, remove nor drop.
    #[test]
    fn very_deep_filters_do_not_overflow_the_stack() {
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep = "/".repeat(40_000);
                let mut trie = SubscriptionTrie::new();
                trie.insert(&deep, 1, ());
                trie.insert(&format!("{deep}/#"), 2, ());
                trie.insert(&format!("{deep}a"), 3, ());
                assert_eq!(collect(&trie, &deep), [(1, ()), (2, ())]);
                assert_eq!(trie.remove(&deep, &1), Some(()));
                assert_eq!(trie.remove(&format!("{deep}/#"), &2), Some(()));
                assert_eq!(trie.len(), 1);
                // Dropping a 40001-level chain.
                drop(trie);
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
    }
}
