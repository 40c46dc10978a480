//! The retained-message store: one value per topic name, organised as a trie
//! of topic levels so wildcard lookups walk only the matching branches.

use std::fmt;

use smallvec::SmallVec;

use super::{maybe_shrink, next_level, FastMap, END};

/// Retained messages keyed by topic name.
///
/// Topics are expected to be valid topic names (see
/// [`validate_topic_name`](super::validate_topic_name)). Deleting the
/// retained message when a zero-length retained PUBLISH arrives is the
/// caller's job ([`remove`](Self::remove)).
///
/// The full topic string is not stored: [`for_each_matching`] rebuilds it
/// in one reusable buffer while walking. Nothing in here recurses, so very
/// deep topics cannot overflow the stack.
///
/// [`for_each_matching`]: Self::for_each_matching
pub struct RetainedStore<V> {
    root: Node<V>,
    len: usize,
}

struct Node<V> {
    children: FastMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Self {
            children: FastMap::default(),
            value: None,
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        // Look up before `entry` so an existing level does not cost a
        // `Box<str>` allocation.
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

impl<V> Drop for Node<V> {
    /// Iterative drop: the derived one would recurse once per level.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut pending: Vec<Node<V>> = self.children.drain().map(|(_, node)| node).collect();
        while let Some(mut node) = pending.pop() {
            pending.extend(node.children.drain().map(|(_, child)| child));
        }
    }
}

/// What the rest of the filter asks of a node being visited.
#[derive(Clone, Copy)]
enum Want {
    /// Match the filter level starting at this byte position.
    Level(usize),
    /// The filter is consumed: this node's own value matches.
    Exact,
    /// Under a `#`: this node and everything below it match.
    Subtree,
}

struct Frame<'a, V> {
    node: &'a Node<V>,
    /// Level leading to `node` (unused for the root).
    name: &'a str,
    /// Number of levels from the root to `node`.
    depth: usize,
    /// Length of the path buffer for the parent of `node`.
    parent_len: usize,
    want: Want,
}

impl<V> RetainedStore<V> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// Number of retained messages.
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no retained messages.
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of trie nodes, not counting the root. O(nodes); meant for
    /// statistics and tests. Drops back to 0 once everything is removed.
    #[must_use]
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.children.len();
            stack.extend(node.children.values());
        }
        count
    }

    /// Removes every retained message.
    pub fn clear(&mut self) {
        self.root = Node::new();
        self.len = 0;
    }

    /// Stores `value` as the retained message of `topic`, returning the one
    /// it replaces.
    pub fn set(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.child_or_insert(level);
        }
        let previous = node.value.replace(value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// The retained message of exactly `topic`.
    #[must_use]
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Mutable access to the retained message of exactly `topic`.
    pub fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        node.value.as_mut()
    }

    /// Removes the retained message of `topic`, returning it. Nodes left
    /// without a value and children are freed.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        // Pass 1 (shared borrows): find the value and the deepest node that
        // survives the removal.
        let mut node = &self.root;
        let mut keep_depth = 0;
        for (depth, level) in topic.split('/').enumerate() {
            if depth > 0 && (node.value.is_some() || node.children.len() > 1) {
                keep_depth = depth;
            }
            node = node.children.get(level)?;
        }
        node.value.as_ref()?;
        let prune = node.children.is_empty();

        // Pass 2: take the value.
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        let value = node.value.take()?;
        self.len -= 1;

        // Pass 3: cut off the branch that is now empty.
        if prune {
            let mut levels = topic.split('/');
            let mut node = &mut self.root;
            for level in levels.by_ref().take(keep_depth) {
                node = node.children.get_mut(level)?;
            }
            if let Some(level) = levels.next() {
                drop(node.children.remove(level));
                maybe_shrink(&mut node.children);
            }
        }
        Some(value)
    }

    /// Calls `f(topic, value)` for every retained message whose topic matches
    /// `filter`, which may contain `+` and `#`. A filter starting with a
    /// wildcard never returns topics starting with `$` [MQTT-4.7.2-1].
    ///
    /// Only branches the filter can match are walked. The order is
    /// unspecified. A filter without wildcards is a plain lookup; otherwise
    /// the topic strings are assembled in one buffer allocated per call.
    pub fn for_each_matching(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        if !filter.contains(['+', '#']) {
            if let Some(value) = self.get(filter) {
                f(filter, value);
            }
            return;
        }

        let mut path = String::with_capacity(filter.len().max(64));
        let mut stack: SmallVec<[Frame<'_, V>; 16]> = SmallVec::new();
        stack.push(Frame {
            node: &self.root,
            name: "",
            depth: 0,
            parent_len: 0,
            want: Want::Level(0),
        });
        while let Some(frame) = stack.pop() {
            let Frame {
                node,
                name,
                depth,
                parent_len,
                want,
            } = frame;
            path.truncate(parent_len);
            if depth > 1 {
                path.push('/');
            }
            path.push_str(name);
            let path_len = path.len();

            match want {
                Want::Exact => {
                    if let Some(value) = &node.value {
                        f(&path, value);
                    }
                }
                Want::Subtree => {
                    if let Some(value) = &node.value {
                        f(&path, value);
                    }
                    push_children(&mut stack, node, depth, path_len, Want::Subtree);
                }
                Want::Level(pos) => {
                    let (level, next) = next_level(filter, pos);
                    let next_want = if next == END {
                        Want::Exact
                    } else {
                        Want::Level(next)
                    };
                    match level {
                        "#" => {
                            // `a/#` also matches `a` itself. (The root never
                            // holds a value: every topic has a level.)
                            if let Some(value) = &node.value {
                                f(&path, value);
                            }
                            push_children(&mut stack, node, depth, path_len, Want::Subtree);
                        }
                        "+" => push_children(&mut stack, node, depth, path_len, next_want),
                        literal => {
                            if let Some((level, child)) = node.children.get_key_value(literal) {
                                stack.push(Frame {
                                    node: child,
                                    name: level,
                                    depth: depth + 1,
                                    parent_len: path_len,
                                    want: next_want,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Queues the children of `node` (at `depth`, whose path is `path_len`
/// bytes long), skipping `$` topics when the wildcard is at the first level
/// [MQTT-4.7.2-1].
fn push_children<'a, V>(
    stack: &mut SmallVec<[Frame<'a, V>; 16]>,
    node: &'a Node<V>,
    depth: usize,
    path_len: usize,
    want: Want,
) {
    for (level, child) in &node.children {
        if depth == 0 && level.starts_with('$') {
            continue;
        }
        stack.push(Frame {
            node: child,
            name: level,
            depth: depth + 1,
            parent_len: path_len,
            want,
        });
    }
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> fmt::Debug for RetainedStore<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::matches;
    use super::super::test_support::{random_filter, random_topic, XorShift, MATCH_CASES};
    use super::*;

    fn collect<V: Clone + Ord>(store: &RetainedStore<V>, filter: &str) -> Vec<(String, V)> {
        let mut out = Vec::new();
        store.for_each_matching(filter, |t, v| out.push((t.to_owned(), v.clone())));
        out.sort();
        out
    }

    #[test]
    fn retained_store_agrees_with_the_table() {
        for &(filter, topic, expected) in MATCH_CASES {
            let mut store = RetainedStore::new();
            store.set(topic, 1u8);
            let want = if expected {
                vec![(topic.to_owned(), 1)]
            } else {
                vec![]
            };
            assert_eq!(collect(&store, filter), want, "{filter:?} vs {topic:?}");
        }
    }

    #[test]
    fn set_get_replace_remove() {
        let mut store = RetainedStore::new();
        assert_eq!(store.set("a/b", 1), None);
        assert_eq!(store.set("a/b", 2), Some(1));
        assert_eq!(store.set("a", 3), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a/b"), Some(&2));
        assert_eq!(store.get("a"), Some(&3));
        assert_eq!(store.get("a/"), None);
        assert_eq!(store.get("a/b/c"), None);
        *store.get_mut("a").expect("present") += 10;
        assert_eq!(store.get("a"), Some(&13));
        assert_eq!(store.remove("a/c"), None);
        assert_eq!(store.remove("a/b/c"), None);
        assert_eq!(store.remove("a/b"), Some(2));
        assert_eq!(store.remove("a/b"), None);
        assert_eq!(store.len(), 1);
        assert_eq!(store.get("a"), Some(&13));
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let topics = [
            "a/b/c",
            "a/b",
            "a",
            "/",
            "//",
            "a//b",
            "$SYS/monitor/Clients",
            "$SYS",
            "x/y/z/w",
        ];
        let mut store = RetainedStore::new();
        for (i, t) in topics.iter().enumerate() {
            store.set(t, i);
        }
        for (i, t) in topics.iter().enumerate() {
            assert_eq!(store.remove(t), Some(i), "{t}");
        }
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);

        store.set("a/b/c/d", 0);
        store.set("a/b", 0);
        assert_eq!(store.node_count(), 4);
        store.remove("a/b/c/d");
        assert_eq!(store.node_count(), 2);
        store.set("a/x", 0);
        store.remove("a/b");
        assert_eq!(store.node_count(), 2);
        store.remove("a/x");
        assert_eq!(store.node_count(), 0);

        store.set("q", 0);
        store.clear();
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn callback_topics_are_rebuilt_exactly() {
        let topics = ["/", "//", "a/", "/a", "a//b", "a/b/c", "a", "", "ünï/cödé"];
        let mut store = RetainedStore::new();
        for t in topics {
            store.set(t, ());
        }
        let mut all: Vec<String> = collect(&store, "#").into_iter().map(|(t, ())| t).collect();
        all.sort();
        let mut want: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        want.sort();
        assert_eq!(all, want);
    }

    #[test]
    fn mqtt_4_7_2_1_wildcards_do_not_match_dollar_topics() {
        let mut store = RetainedStore::new();
        store.set("$SYS/monitor/Clients", 1);
        store.set("$SYS", 2);
        store.set("a/$SYS", 3);
        store.set("x/monitor/Clients", 4);
        assert_eq!(
            collect(&store, "#"),
            [
                ("a/$SYS".to_owned(), 3),
                ("x/monitor/Clients".to_owned(), 4)
            ]
        );
        assert_eq!(
            collect(&store, "+/monitor/Clients"),
            [("x/monitor/Clients".to_owned(), 4)]
        );
        assert_eq!(collect(&store, "+"), []);
        assert_eq!(
            collect(&store, "$SYS/#"),
            [
                ("$SYS".to_owned(), 2),
                ("$SYS/monitor/Clients".to_owned(), 1)
            ]
        );
        assert_eq!(
            collect(&store, "$SYS/monitor/+"),
            [("$SYS/monitor/Clients".to_owned(), 1)]
        );
        assert_eq!(collect(&store, "+/$SYS"), [("a/$SYS".to_owned(), 3)]);
    }

    #[test]
    fn mqtt_4_7_1_2_multi_level_wildcard_matches_parent_level() {
        let mut store = RetainedStore::new();
        for t in [
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
            "sport/tennis/player2",
        ] {
            store.set(t, ());
        }
        let got: Vec<String> = collect(&store, "sport/tennis/player1/#")
            .into_iter()
            .map(|(t, ())| t)
            .collect();
        assert_eq!(
            got,
            [
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon"
            ]
        );
        assert_eq!(collect(&store, "sport/#").len(), 6);
    }

    #[test]
    fn randomized_cross_check_against_reference_matcher() {
        let mut rng = XorShift::new(0x00DE_C0DE_5EED);
        let mut store = RetainedStore::new();
        let mut model: HashMap<String, u32> = HashMap::new();
        for step in 0..4000u32 {
            let topic = random_topic(&mut rng);
            if rng.below(3) > 0 {
                assert_eq!(
                    store.set(&topic, step),
                    model.insert(topic.clone(), step),
                    "set {topic:?}"
                );
            } else {
                assert_eq!(
                    store.remove(&topic),
                    model.remove(&topic),
                    "remove {topic:?}"
                );
            }
            assert_eq!(store.len(), model.len());
            assert_eq!(store.get(&topic), model.get(&topic));

            if step % 3 == 0 {
                let filter = random_filter(&mut rng);
                let mut want: Vec<(String, u32)> = model
                    .iter()
                    .filter(|(t, _)| matches(&filter, t))
                    .map(|(t, v)| (t.clone(), *v))
                    .collect();
                want.sort();
                assert_eq!(collect(&store, &filter), want, "filter {filter:?}");
            }
        }
        let left: Vec<String> = model.keys().cloned().collect();
        for topic in left {
            assert!(store.remove(&topic).is_some());
        }
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn very_deep_topics_do_not_overflow_the_stack() {
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let deep = "/".repeat(40_000);
                let mut store = RetainedStore::new();
                store.set(&deep, 1);
                store.set(&format!("{deep}a"), 2);
                assert_eq!(collect(&store, "#").len(), 2);
                assert_eq!(collect(&store, &format!("{deep}+")).len(), 2);
                assert_eq!(store.remove(&deep), Some(1));
                drop(store);
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
    }
}
