//! Compiled access control: [`Acl`] for the whole broker, [`ClientAcl`] for
//! one connected client.
//!
//! An ACL file is compiled once into tries of rule filters whose nodes carry
//! access bits: one trie for the anonymous section, one per `user` section
//! and one for all `pattern` lines. [`Acl::compile_for`] picks the tries
//! that apply to a client and records its client id and username; pattern
//! levels such as `%c` or `dev-%u` are compared against those values in
//! place, which is the same as substituting them but needs neither a copy
//! of the rules per client nor an allocation per check.
//!
//! A check walks each applicable trie once along the topic (or filter), so
//! its cost grows with the topic's depth and with the number of rules that
//! actually match, not with the number of rules in the file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::topic::{is_sys, is_valid_filter_fast, is_valid_topic_fast, strip_share};

pub(crate) const READ: u8 = 1;
pub(crate) const WRITE: u8 = 2;
pub(crate) const DENY: u8 = 4;

/// The access word of a `topic` or `pattern` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `read`: subscribe to, and receive messages on, matching topics.
    Read,
    /// `write`: publish to matching topics.
    Write,
    /// `readwrite`, also what a line without an access word means.
    ReadWrite,
    /// `deny`: neither, whatever other lines grant (Mosquitto 2 semantics).
    Deny,
}

impl Access {
    /// Parses an access word as written in an ACL file (lower case).
    pub fn from_word(word: &str) -> Option<Access> {
        match word {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "readwrite" => Some(Access::ReadWrite),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }

    /// The word an ACL file uses for this access.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
            Access::Deny => "deny",
        }
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::ReadWrite => READ | WRITE,
            Access::Deny => DENY,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Trie
// ---------------------------------------------------------------------------

type LiteralMap = HashMap<Box<str>, u32, ahash::RandomState>;

#[derive(Debug, Default)]
struct Node {
    /// Children by literal level.
    literal: LiteralMap,
    /// Child for a `+` level.
    plus: Option<u32>,
    /// Children for pattern levels holding `%c` and/or `%u`.
    templates: Vec<TemplateEdge>,
    /// Access bits of rules whose filter ends at this node.
    end: u8,
    /// Access bits of rules whose filter ends with `#` right below this node.
    hash: u8,
    /// A deny rule ends at this node or anywhere below it.
    deny_below: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    ClientId,
    Username,
}

#[derive(Debug)]
struct TemplateEdge {
    pieces: Box<[Piece]>,
    uses_client_id: bool,
    uses_username: bool,
    /// The level starts with a placeholder, so a `$` at its start would come
    /// from the client's own id or name.
    leading_placeholder: bool,
    child: u32,
}

impl TemplateEdge {
    /// Whether `level` equals this template with the subject's values
    /// substituted. The caller has made sure the values it needs exist.
    #[inline]
    fn matches(&self, mut level: &str, subject: &Subject) -> bool {
        for piece in self.pieces.iter() {
            let text: &str = match piece {
                Piece::Text(t) => t,
                Piece::ClientId => &subject.client_id,
                Piece::Username => subject.username.as_deref().unwrap_or(""),
            };
            match level.strip_prefix(text) {
                Some(rest) => level = rest,
                None => return false,
            }
        }
        level.is_empty()
    }
}

/// Splits a pattern level into literal text and placeholders; `None` when it
/// holds no placeholder.
fn template_pieces(level: &str) -> Option<Vec<Piece>> {
    if !level.contains("%c") && !level.contains("%u") {
        return None;
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = level;
    while let Some(i) = rest.find('%') {
        let after = &rest[i + 1..];
        let placeholder = if after.starts_with('c') {
            Some(Piece::ClientId)
        } else if after.starts_with('u') {
            Some(Piece::Username)
        } else {
            None
        };
        match placeholder {
            Some(p) => {
                text.push_str(&rest[..i]);
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text).into_boxed_str()));
                }
                pieces.push(p);
                rest = &after[1..];
            }
            None => {
                text.push_str(&rest[..=i]);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into_boxed_str()));
    }
    Some(pieces)
}

/// Rule filters of one section, with access bits on their end nodes.
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Box<[Node]>,
    has_deny: bool,
}

#[derive(Debug)]
pub(crate) struct TrieBuilder {
    nodes: Vec<Node>,
    rules: usize,
}

impl TrieBuilder {
    pub(crate) fn new() -> Self {
        TrieBuilder { nodes: vec![Node::default()], rules: 0 }
    }

    fn push(&mut self) -> u32 {
        let id = u32::try_from(self.nodes.len()).expect("ACL trie has fewer than 2^32 nodes");
        self.nodes.push(Node::default());
        id
    }

    /// Adds one rule. `filter` is a valid topic filter; with `placeholders`
    /// its levels holding `%c` or `%u` are substituted per client.
    pub(crate) fn insert(&mut self, filter: &str, access: Access, placeholders: bool) {
        self.rules += 1;
        let bits = access.bits();
        let mut node = 0u32;
        for level in filter.split('/') {
            if level == "#" {
                self.nodes[node as usize].hash |= bits;
                return;
            }
            node = if level == "+" {
                match self.nodes[node as usize].plus {
                    Some(child) => child,
                    None => {
                        let child = self.push();
                        self.nodes[node as usize].plus = Some(child);
                        child
                    }
                }
            } else if let Some(pieces) = placeholders.then(|| template_pieces(level)).flatten() {
                let existing =
                    self.nodes[node as usize].templates.iter().find(|e| *e.pieces == *pieces).map(|e| e.child);
                match existing {
                    Some(child) => child,
                    None => {
                        let child = self.push();
                        let edge = TemplateEdge {
                            uses_client_id: pieces.contains(&Piece::ClientId),
                            uses_username: pieces.contains(&Piece::Username),
                            leading_placeholder: !matches!(pieces[0], Piece::Text(_)),
                            pieces: pieces.into_boxed_slice(),
                            child,
                        };
                        self.nodes[node as usize].templates.push(edge);
                        child
                    }
                }
            } else {
                match self.nodes[node as usize].literal.get(level) {
                    Some(&child) => child,
                    None => {
                        let child = self.push();
                        self.nodes[node as usize].literal.insert(level.into(), child);
                        child
                    }
                }
            }
        }
        self.nodes[node as usize].end |= bits;
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules
    }

    /// `None` when no rule was added.
    pub(crate) fn finish(mut self) -> Option<Trie> {
        if self.rules == 0 {
            return None;
        }
        // Children are always created after their parent, so one backwards
        // pass sees every child before its parent.
        for i in (0..self.nodes.len()).rev() {
            let node = &self.nodes[i];
            let mut below = (node.end | node.hash) & DENY != 0;
            let children =
                node.literal.values().copied().chain(node.plus).chain(node.templates.iter().map(|e| e.child));
            for child in children {
                below |= self.nodes[child as usize].deny_below;
            }
            self.nodes[i].deny_below = below;
        }
        let has_deny = self.nodes[0].deny_below;
        for node in &mut self.nodes {
            node.literal.shrink_to_fit();
            node.templates.shrink_to_fit();
        }
        Some(Trie { nodes: self.nodes.into_boxed_slice(), has_deny })
    }
}

/// What a template edge means for one client.
enum EdgeState {
    /// The rule cannot apply (it needs a username the client does not have).
    Skip,
    /// A substituted value holds `+`, `#` or `/`: grants through this edge
    /// are ignored and denies through it are widened to the whole subtree.
    Unsafe,
    /// Compare the level with the substituted template.
    Compare,
}

impl Trie {
    /// Access bits of every rule whose filter covers `filter` (for a topic
    /// name: matches it).
    #[inline]
    fn covering_bits(&self, filter: &str, subject: &Subject) -> u8 {
        let mut out = 0;
        self.walk(0, Some(filter), true, subject, &mut out);
        out
    }

    /// `rest` is what remains of the filter below `id`: `None` once every
    /// level has been consumed. A rule covers the filter when every topic
    /// the filter matches is matched by the rule:
    ///
    /// * rule `#` covers anything that remains, the parent level included;
    /// * rule `+` covers a `+` or literal level, not `#`;
    /// * a rule literal covers only the same literal;
    /// * a rule starting with a wildcard never covers a level starting with
    ///   `$` at the top (MQTT 5.0 §4.7.2).
    fn walk(&self, id: u32, rest: Option<&str>, top: bool, subject: &Subject, out: &mut u8) {
        let node = &self.nodes[id as usize];
        let dollar = top && rest.is_some_and(|r| r.starts_with('$'));
        if !dollar {
            *out |= node.hash;
        }
        let Some(rest) = rest else {
            *out |= node.end;
            self.widen_unsafe_denies(node, subject, out);
            return;
        };
        let (level, next) = match rest.bytes().position(|b| b == b'/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if level == "#" {
            self.widen_unsafe_denies(node, subject, out);
            return;
        }
        let plus = level == "+";
        if !plus {
            if let Some(&child) = node.literal.get(level) {
                self.walk(child, next, false, subject, out);
            }
        }
        if !dollar {
            if let Some(child) = node.plus {
                self.walk(child, next, false, subject, out);
            }
        }
        for edge in node.templates.iter() {
            match subject.edge_state(edge) {
                EdgeState::Skip => {}
                EdgeState::Unsafe => {
                    if self.nodes[edge.child as usize].deny_below {
                        *out |= DENY;
                    }
                }
                EdgeState::Compare => {
                    if !plus && edge.matches(level, subject) {
                        if dollar && edge.leading_placeholder {
                            // The `$` comes from the client's own id or
                            // name: such a level may deny but never grant.
                            let mut inner = 0;
                            self.walk(edge.child, next, false, subject, &mut inner);
                            *out |= inner & DENY;
                        } else {
                            self.walk(edge.child, next, false, subject, out);
                        }
                    }
                }
            }
        }
    }

    #[inline]
    fn widen_unsafe_denies(&self, node: &Node, subject: &Subject, out: &mut u8) {
        for edge in node.templates.iter() {
            if matches!(subject.edge_state(edge), EdgeState::Unsafe) && self.nodes[edge.child as usize].deny_below {
                *out |= DENY;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Acl
// ---------------------------------------------------------------------------

/// The broker's access control list: either "allow everything" (no ACL file
/// configured) or the compiled rules of an ACL file.
///
/// Immutable once built; `Send + Sync`, cheap to clone (an `Arc`). On reload
/// build a new one and [`compile_for`](Acl::compile_for) again for every
/// connected client: a [`ClientAcl`] keeps the rules it was compiled from.
#[derive(Debug, Clone)]
pub struct Acl {
    inner: AclInner,
}

#[derive(Debug, Clone)]
enum AclInner {
    AllowAll,
    Rules(Arc<Rules>),
}

#[derive(Debug)]
struct Rules {
    anonymous: Option<Arc<Trie>>,
    users: HashMap<Box<str>, Arc<Trie>>,
    patterns: Option<Arc<Trie>>,
    rule_count: usize,
}

/// Collects the rules of an ACL file by section.
#[derive(Debug)]
pub(crate) struct AclBuilder {
    anonymous: TrieBuilder,
    users: HashMap<String, TrieBuilder>,
    patterns: TrieBuilder,
}

impl AclBuilder {
    pub(crate) fn new() -> Self {
        AclBuilder { anonymous: TrieBuilder::new(), users: HashMap::new(), patterns: TrieBuilder::new() }
    }

    /// Opens (or reopens) the section of `user`.
    pub(crate) fn user_section(&mut self, user: &str) {
        self.users.entry(user.to_owned()).or_insert_with(TrieBuilder::new);
    }

    /// A `topic` line: in the anonymous section when `user` is `None`.
    pub(crate) fn topic(&mut self, user: Option<&str>, access: Access, filter: &str) {
        let section = match user {
            None => &mut self.anonymous,
            Some(u) => self.users.entry(u.to_owned()).or_insert_with(TrieBuilder::new),
        };
        section.insert(filter, access, false);
    }

    /// A `pattern` line.
    pub(crate) fn pattern(&mut self, access: Access, filter: &str) {
        self.patterns.insert(filter, access, true);
    }

    pub(crate) fn build(self) -> Acl {
        let mut rule_count = self.anonymous.rule_count() + self.patterns.rule_count();
        let users = self
            .users
            .into_iter()
            .filter_map(|(name, section)| {
                rule_count += section.rule_count();
                section.finish().map(|t| (name.into_boxed_str(), Arc::new(t)))
            })
            .collect();
        Acl {
            inner: AclInner::Rules(Arc::new(Rules {
                anonymous: self.anonymous.finish().map(Arc::new),
                users,
                patterns: self.patterns.finish().map(Arc::new),
                rule_count,
            })),
        }
    }
}

impl Acl {
    /// What the broker uses when no ACL file is configured: every topic may
    /// be published, subscribed to and received, except that no client may
    /// publish to `$SYS` or below.
    pub fn allow_all() -> Acl {
        Acl { inner: AclInner::AllowAll }
    }

    /// Whether this is [`Acl::allow_all`].
    pub fn is_allow_all(&self) -> bool {
        matches!(self.inner, AclInner::AllowAll)
    }

    /// Number of `topic` and `pattern` rules (0 for [`Acl::allow_all`]).
    pub fn rule_count(&self) -> usize {
        match &self.inner {
            AclInner::AllowAll => 0,
            AclInner::Rules(r) => r.rule_count,
        }
    }

    /// The rules that apply to one client, ready for per-message checks.
    ///
    /// Called at CONNECT with the client identifier the session ends up
    /// with (the assigned one when the client sent an empty id) and the
    /// CONNECT username (`None` for an anonymous client). A client with a
    /// username gets the rules of that user's section (if any) plus every
    /// `pattern` rule; an anonymous client gets the `topic` lines that come
    /// before the first `user` line plus the patterns that do not use `%u`.
    ///
    /// Cost: two `Arc` clones and copies of the two strings; the rules
    /// themselves are shared by all clients.
    pub fn compile_for(&self, client_id: &str, username: Option<&str>) -> ClientAcl {
        let rules = match &self.inner {
            AclInner::AllowAll => return ClientAcl { inner: ClientInner::AllowAll },
            AclInner::Rules(r) => r,
        };
        let own = match username {
            None => rules.anonymous.clone(),
            Some(u) => rules.users.get(u).cloned(),
        };
        let patterns = rules.patterns.clone();
        let deny_possible = own.as_ref().is_some_and(|t| t.has_deny) || patterns.as_ref().is_some_and(|t| t.has_deny);
        let subject = Subject::new(client_id, username);
        ClientAcl { inner: ClientInner::Rules(Box::new(ClientRules { own, patterns, subject, deny_possible })) }
    }
}

impl Default for Acl {
    /// [`Acl::allow_all`].
    fn default() -> Self {
        Acl::allow_all()
    }
}

// ---------------------------------------------------------------------------
// ClientAcl
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Subject {
    client_id: Box<str>,
    username: Option<Box<str>>,
    client_id_unsafe: bool,
    username_unsafe: bool,
}

fn unsafe_value(value: &str) -> bool {
    value.contains(['+', '#', '/'])
}

impl Subject {
    fn new(client_id: &str, username: Option<&str>) -> Self {
        Subject {
            client_id: client_id.into(),
            username: username.map(Into::into),
            client_id_unsafe: unsafe_value(client_id),
            username_unsafe: username.is_some_and(unsafe_value),
        }
    }

    #[inline]
    fn edge_state(&self, edge: &TemplateEdge) -> EdgeState {
        if edge.uses_username && self.username.is_none() {
            EdgeState::Skip
        } else if (edge.uses_client_id && self.client_id_unsafe) || (edge.uses_username && self.username_unsafe) {
            EdgeState::Unsafe
        } else {
            EdgeState::Compare
        }
    }
}

/// The access rules of one connected client, compiled by
/// [`Acl::compile_for`]. Checks borrow it immutably, never allocate and
/// never lock; it is `Send + Sync`.
///
/// A check walks the client's section and the pattern rules along the
/// topic's levels: its cost depends on the topic's depth and the number of
/// matching rules, not on the size of the file.
///
/// Topic names and filters are expected to be syntactically valid already
/// (the broker validates them); malformed ones (empty, wildcards in a topic
/// name, `#` not last, `a+`) are refused.
#[derive(Debug, Clone)]
pub struct ClientAcl {
    inner: ClientInner,
}

#[derive(Debug, Clone)]
enum ClientInner {
    AllowAll,
    Rules(Box<ClientRules>),
}

#[derive(Debug, Clone)]
struct ClientRules {
    own: Option<Arc<Trie>>,
    patterns: Option<Arc<Trie>>,
    subject: Subject,
    deny_possible: bool,
}

impl ClientRules {
    /// Whether some rule granting `want` covers `filter` and no deny rule
    /// does.
    #[inline]
    fn allows(&self, filter: &str, want: u8) -> bool {
        let mut bits = 0;
        if let Some(t) = &self.own {
            bits = t.covering_bits(filter, &self.subject);
            if bits & DENY != 0 {
                return false;
            }
        }
        if let Some(t) = &self.patterns {
            // Only a pattern could still deny, or grant what is missing.
            if bits & want == 0 || t.has_deny {
                bits |= t.covering_bits(filter, &self.subject);
            }
        }
        bits & want != 0 && bits & DENY == 0
    }
}

impl ClientAcl {
    /// A client that may do anything but publish to `$SYS`; the same as
    /// `Acl::allow_all().compile_for(..)`.
    pub fn allow_all() -> ClientAcl {
        ClientAcl { inner: ClientInner::AllowAll }
    }

    /// May the client PUBLISH to `topic` (a topic name, no wildcards)?
    ///
    /// True when a `write` or `readwrite` rule matches the topic and no
    /// `deny` rule does. Never true for `$SYS` or anything below it.
    #[inline]
    pub fn can_publish(&self, topic: &str) -> bool {
        if !is_valid_topic_fast(topic) || is_sys(topic) {
            return false;
        }
        match &self.inner {
            ClientInner::AllowAll => true,
            ClientInner::Rules(r) => r.allows(topic, WRITE),
        }
    }

    /// May a message published on `topic` be delivered to this client?
    /// Checked at delivery, for every message, retained ones included.
    ///
    /// True when a `read` or `readwrite` rule matches the topic and no
    /// `deny` rule does. A rule beginning with a wildcard (`#`, `+/…`) does
    /// not match topics beginning with `$`, so `$SYS` topics need a rule
    /// that names them (`$SYS/#`, `$SYS/broker/+`, …).
    #[inline]
    pub fn can_receive(&self, topic: &str) -> bool {
        if !is_valid_topic_fast(topic) {
            return false;
        }
        match &self.inner {
            ClientInner::AllowAll => true,
            ClientInner::Rules(r) => r.allows(topic, READ),
        }
    }

    /// May the client SUBSCRIBE to `filter`?
    ///
    /// True when a single `read` or `readwrite` rule covers the filter —
    /// matches every topic the filter could match (rule `a/#` covers
    /// `a/+/b` and `a/#`; rule `a/+` covers `a/b` and `a/+` but not `a/#`)
    /// — and no `deny` rule covers it. So with a rule `sensors/#` a client
    /// may subscribe to `sensors/#` but not to `#`.
    ///
    /// A deny rule that covers only part of the filter does not refuse the
    /// subscription (rule `#` and deny `secret/#` still allow subscribing to
    /// `#`): deliveries must therefore be re-checked per topic with
    /// [`can_receive`](Self::can_receive), which is where the
    /// `secret/…` messages are dropped (see
    /// [`needs_delivery_check`](Self::needs_delivery_check)).
    ///
    /// A shared subscription `$share/{group}/{filter}` is checked as
    /// `{filter}`.
    #[inline]
    pub fn can_subscribe(&self, filter: &str) -> bool {
        let Some(filter) = strip_share(filter) else { return false };
        if !is_valid_filter_fast(filter) {
            return false;
        }
        match &self.inner {
            ClientInner::AllowAll => true,
            ClientInner::Rules(r) => r.allows(filter, READ),
        }
    }

    /// Whether [`can_receive`](Self::can_receive) can refuse a message that
    /// matched a subscription [`can_subscribe`](Self::can_subscribe)
    /// accepted through this same `ClientAcl`. That happens only when a
    /// `deny` rule applies to the client; without one the broker may skip
    /// the per-delivery check. Subscriptions kept from before an ACL reload
    /// must be re-checked (or deliveries checked) regardless.
    pub fn needs_delivery_check(&self) -> bool {
        match &self.inner {
            ClientInner::AllowAll => false,
            ClientInner::Rules(r) => r.deny_possible,
        }
    }

    /// Whether this client is unrestricted (except for `$SYS` writes).
    pub fn is_allow_all(&self) -> bool {
        matches!(self.inner, ClientInner::AllowAll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_pieces_split_text_and_placeholders() {
        assert_eq!(template_pieces("plain"), None);
        assert_eq!(template_pieces("%x"), None);
        assert_eq!(template_pieces("%c"), Some(vec![Piece::ClientId]));
        assert_eq!(
            template_pieces("dev-%c.%u%"),
            Some(vec![
                Piece::Text("dev-".into()),
                Piece::ClientId,
                Piece::Text(".".into()),
                Piece::Username,
                Piece::Text("%".into()),
            ])
        );
        assert_eq!(template_pieces("%%c"), Some(vec![Piece::Text("%".into()), Piece::ClientId]));
    }

    #[test]
    fn identical_rules_share_trie_nodes() {
        let mut b = TrieBuilder::new();
        b.insert("a/b/c", Access::Read, false);
        b.insert("a/b/d", Access::Write, false);
        b.insert("a/+/c", Access::Read, false);
        b.insert("a/%c/c", Access::Read, true);
        b.insert("a/%c/#", Access::Deny, true);
        let t = b.finish().unwrap();
        // root, a, a/b, a/b/c, a/b/d, a/+, a/+/c, a/%c, a/%c/c
        assert_eq!(t.nodes.len(), 9);
        assert!(t.has_deny);
        assert!(TrieBuilder::new().finish().is_none());
    }

    #[test]
    fn acl_types_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Acl>();
        check::<ClientAcl>();
    }
}
