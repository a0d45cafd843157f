//! Topic-exchange routing: a word trie over binding patterns plus a bounded cache of results.
//!
//! # Semantics (RabbitMQ's, see `rabbit_db_topic_exchange` / `rabbit_exchange_type_topic`)
//!
//! - Routing keys and binding patterns are split into words on `.`. Empty words are words:
//!   `"a..b"` has three words (`a`, ``, `b`), `"a."` has two, `"."` has two empty words.
//! - The empty string is **zero** words, not one empty word (RabbitMQ's `split_topic_key(<<>>)`
//!   returns `[]`). So an empty routing key matches the patterns `""`, `"#"`, `"#.#"`, … but not
//!   `"*"`; and the pattern `""` matches only the empty routing key.
//! - In a pattern, the word `*` matches exactly one word (which may be empty) and `#` matches
//!   zero or more words; `#` alone matches every key. Any other pattern word matches only the
//!   identical key word. A key word that happens to be `*` or `#` is just a literal word: it is
//!   matched by a `*`/`#` pattern word like any other word, and by nothing else.
//! - A destination bound through several patterns that match the same key is routed to once.
//!
//! # Implementation
//!
//! Patterns live in a trie of word edges: per node, a map of literal words plus dedicated `*`
//! and `#` child slots. Literal words are interned to dense ids (one SipHash lookup per key word
//! per route, whatever the number of live trie nodes); the per-node child maps are keyed by those
//! ids with a cheap multiplicative hash, which attackers cannot steer because ids are handed out
//! sequentially. Matching simulates the trie as an NFA over the key's words: the set of live nodes
//! is deduplicated per word with a generation-stamped mark array, and a `#` node loops on itself,
//! so matching costs `O(words × live nodes)` even for patterns like `#.#.#.#.#` (no exponential
//! backtracking). A destination bound through a single pattern is stored apart from those bound
//! through several, so only the latter need sorting and deduplicating per route. Results are
//! cached per routing key in a bounded `HashMap` (cleared whenever a binding changes, and when it
//! fills up), so a hot key costs one hash lookup. The maps keyed by strings use std's randomly
//! seeded SipHash because keys come off the network.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

/// How many routing keys [`TopicIndex::new`] caches results for.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

type NodeId = u32;
type WordId = u32;

const ROOT: NodeId = 0;

/// Hashes our own sequentially assigned [`WordId`]s: a multiply spreads them over hashbrown's
/// high control bits while keeping distinct ids in distinct buckets.
#[derive(Default, Clone, Copy)]
struct WordIdHasher(u64);

impl Hasher for WordIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Children = HashMap<WordId, NodeId, BuildHasherDefault<WordIdHasher>>;

#[derive(Debug)]
struct Node<D> {
    children: Children,
    star: Option<NodeId>,
    hash: Option<NodeId>,
    /// Reached through a `#` edge: it also consumes any word by looping on itself.
    is_hash: bool,
    /// Destinations bound here and through no other pattern; sorted, no duplicates.
    unique: Vec<D>,
    /// Destinations bound here and through other patterns too; sorted, no duplicates.
    shared: Vec<D>,
}

impl<D> Node<D> {
    fn new(is_hash: bool) -> Self {
        Node {
            children: Children::default(),
            star: None,
            hash: None,
            is_hash,
            unique: Vec::new(),
            shared: Vec::new(),
        }
    }

    fn is_unused(&self) -> bool {
        self.unique.is_empty()
            && self.shared.is_empty()
            && self.children.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

/// One pattern word, classified.
#[derive(Debug, Clone, Copy)]
enum Word<'a> {
    Lit(&'a str),
    Star,
    Hash,
}

impl<'a> Word<'a> {
    fn of(w: &'a str) -> Self {
        match w {
            "*" => Word::Star,
            "#" => Word::Hash,
            _ => Word::Lit(w),
        }
    }
}

/// Splits a routing key or pattern into words, RabbitMQ's way: `""` is zero words.
fn words(s: &str) -> impl Iterator<Item = &str> {
    (!s.is_empty()).then(|| s.split('.')).into_iter().flatten()
}

/// Adds `id` and its chain of `#` children (which match zero words) to `list`, once per generation.
fn visit<D>(nodes: &[Node<D>], marks: &mut [u32], generation: u32, list: &mut Vec<NodeId>, mut id: NodeId) {
    loop {
        let mark = &mut marks[id as usize];
        if *mark == generation {
            return;
        }
        *mark = generation;
        list.push(id);
        match nodes[id as usize].hash {
            Some(h) => id = h,
            None => return,
        }
    }
}

/// Interned literal pattern words, reference-counted by the trie edges that use them.
#[derive(Debug, Default)]
struct Vocab {
    ids: HashMap<Box<str>, WordId>,
    refs: Vec<u32>,
    free: Vec<WordId>,
}

impl Vocab {
    fn get(&self, w: &str) -> Option<WordId> {
        self.ids.get(w).copied()
    }

    /// The id of `w`, counting one more edge that uses it.
    fn acquire(&mut self, w: &str) -> WordId {
        if let Some(&id) = self.ids.get(w) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.refs.push(1);
                WordId::try_from(self.refs.len() - 1).expect("topic trie exceeds u32::MAX words")
            }
        };
        self.ids.insert(w.into(), id);
        id
    }

    /// Counts one edge fewer using `w` (whose id is `id`), forgetting it when none is left.
    fn release(&mut self, w: &str, id: WordId) {
        let refs = &mut self.refs[id as usize];
        *refs -= 1;
        if *refs == 0 {
            self.ids.remove(w);
            self.free.push(id);
        }
    }
}

/// A trie edge on the path of a pattern, as recorded by [`TopicIndex::unbind`].
#[derive(Debug, Clone, Copy)]
enum Edge<'a> {
    Lit(&'a str, WordId),
    Star,
    Hash,
}

/// A set of `(pattern, destination)` topic bindings that routes keys to destinations.
#[derive(Debug)]
pub struct TopicIndex<D> {
    nodes: Vec<Node<D>>,
    free: Vec<NodeId>,
    vocab: Vocab,
    /// For each destination, the nodes of the patterns it is bound with.
    dest_nodes: HashMap<D, Vec<NodeId>>,
    bindings: usize,
    cache_capacity: usize,
    /// What routing mutates (the result cache and the matching scratch), behind its own lock so
    /// that routing takes `&self`: publishes to different exchanges never wait for each other.
    matcher: Mutex<Matcher<D>>,
}

/// The cache of routing results and the scratch state for matching (kept to avoid allocating
/// per route).
#[derive(Debug)]
struct Matcher<D> {
    cache: HashMap<Box<str>, Box<[D]>>,
    marks: Vec<u32>,
    generation: u32,
    cur: Vec<NodeId>,
    next: Vec<NodeId>,
    found: Vec<D>,
    found_shared: Vec<D>,
}

impl<D> Default for TopicIndex<D>
where
    D: Copy + Eq + Hash + Ord,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<D> TopicIndex<D>
where
    D: Copy + Eq + Hash + Ord,
{
    /// An empty index caching up to [`DEFAULT_CACHE_CAPACITY`] routing keys.
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// An empty index caching up to `capacity` routing keys (0 disables the cache).
    pub fn with_cache_capacity(capacity: usize) -> Self {
        TopicIndex {
            nodes: vec![Node::new(false)],
            free: Vec::new(),
            vocab: Vocab::default(),
            dest_nodes: HashMap::new(),
            bindings: 0,
            cache_capacity: capacity,
            matcher: Mutex::new(Matcher {
                cache: HashMap::new(),
                marks: vec![0],
                generation: 0,
                cur: Vec::new(),
                next: Vec::new(),
                found: Vec::new(),
                found_shared: Vec::new(),
            }),
        }
    }

    /// Number of `(pattern, destination)` bindings.
    pub fn len(&self) -> usize {
        self.bindings
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.bindings == 0
    }

    /// Adds the binding `(pattern, dest)`; returns `true` if it was not already present.
    ///
    /// Distinct patterns are distinct bindings even when they match the same keys
    /// (`a.#.b` and `a.#.#.b`), as in RabbitMQ.
    pub fn bind(&mut self, pattern: &str, dest: D) -> bool {
        let mut node = ROOT;
        for w in words(pattern) {
            node = self.child_or_insert(node, Word::of(w));
        }
        let bound_at = self.dest_nodes.entry(dest).or_default();
        if bound_at.contains(&node) {
            return false;
        }
        match bound_at[..] {
            [] => insert_sorted(&mut self.nodes[node as usize].unique, dest),
            [other] => {
                // No longer bound through a single pattern: both nodes must deduplicate it.
                let o = &mut self.nodes[other as usize];
                remove_sorted(&mut o.unique, dest);
                insert_sorted(&mut o.shared, dest);
                insert_sorted(&mut self.nodes[node as usize].shared, dest);
            }
            _ => insert_sorted(&mut self.nodes[node as usize].shared, dest),
        }
        bound_at.push(node);
        self.bindings += 1;
        self.matcher_mut().cache.clear();
        true
    }

    /// Removes the binding `(pattern, dest)`; returns `true` if it was present. Trie nodes left
    /// without bindings or children are freed for reuse.
    pub fn unbind(&mut self, pattern: &str, dest: D) -> bool {
        let mut path: Vec<(NodeId, Edge<'_>)> = Vec::new();
        let mut node = ROOT;
        for w in words(pattern) {
            let n = &self.nodes[node as usize];
            let (edge, child) = match Word::of(w) {
                Word::Lit(s) => {
                    let id = self.vocab.get(s);
                    (
                        Edge::Lit(s, id.unwrap_or(0)),
                        id.and_then(|id| n.children.get(&id).copied()),
                    )
                }
                Word::Star => (Edge::Star, n.star),
                Word::Hash => (Edge::Hash, n.hash),
            };
            let Some(child) = child else {
                return false;
            };
            path.push((node, edge));
            node = child;
        }
        let Some(bound_at) = self.dest_nodes.get_mut(&dest) else {
            return false;
        };
        let Some(at) = bound_at.iter().position(|&n| n == node) else {
            return false;
        };
        bound_at.swap_remove(at);
        let n = &mut self.nodes[node as usize];
        match bound_at[..] {
            [] => {
                remove_sorted(&mut n.unique, dest);
                self.dest_nodes.remove(&dest);
            }
            [other] => {
                remove_sorted(&mut n.shared, dest);
                let o = &mut self.nodes[other as usize];
                remove_sorted(&mut o.shared, dest);
                insert_sorted(&mut o.unique, dest);
            }
            _ => remove_sorted(&mut n.shared, dest),
        }
        self.bindings -= 1;
        self.matcher_mut().cache.clear();
        while let Some((parent, edge)) = path.pop() {
            if !self.nodes[node as usize].is_unused() {
                break;
            }
            let p = &mut self.nodes[parent as usize];
            match edge {
                Edge::Lit(s, id) => {
                    p.children.remove(&id);
                    self.vocab.release(s, id);
                }
                Edge::Star => p.star = None,
                Edge::Hash => p.hash = None,
            }
            // Drop the node's allocations now rather than when the slot is reused.
            self.nodes[node as usize] = Node::new(false);
            self.free.push(node);
            node = parent;
        }
        true
    }

    /// Appends to `out` every destination bound with a pattern matching `key`, each exactly once
    /// (in no particular order).
    pub fn route(&self, key: &str, out: &mut Vec<D>) {
        if self.bindings == 0 {
            return;
        }
        // A panic while holding the lock leaves nothing half-updated that matters: the scratch
        // is cleared before each use and the cache holds complete results only.
        let mut m = self.matcher.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = m.cache.get(key) {
            out.extend_from_slice(hit);
            return;
        }
        self.match_key(&mut m, key);
        out.extend_from_slice(&m.found);
        if self.cache_capacity > 0 {
            if m.cache.len() >= self.cache_capacity {
                m.cache.clear();
            }
            let found: Box<[D]> = m.found.as_slice().into();
            m.cache.insert(key.into(), found);
        }
    }

    fn matcher_mut(&mut self) -> &mut Matcher<D> {
        self.matcher.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the trie match for `key`, leaving the deduplicated result in `m.found`.
    fn match_key(&self, m: &mut Matcher<D>, key: &str) {
        let TopicIndex { nodes, vocab, .. } = self;
        let Matcher {
            marks,
            generation,
            cur,
            next,
            found,
            found_shared,
            ..
        } = m;
        found.clear();
        found_shared.clear();
        cur.clear();
        let g = next_generation(generation, marks);
        visit(nodes, marks, g, cur, ROOT);
        for w in words(key) {
            // Absent from every pattern: only `*` and `#` can consume this word.
            let wid = vocab.get(w);
            let g = next_generation(generation, marks);
            next.clear();
            for &id in cur.iter() {
                let node = &nodes[id as usize];
                if node.is_hash {
                    visit(nodes, marks, g, next, id);
                }
                if let Some(wid) = wid
                    && let Some(&c) = node.children.get(&wid)
                {
                    visit(nodes, marks, g, next, c);
                }
                if let Some(s) = node.star {
                    visit(nodes, marks, g, next, s);
                }
            }
            std::mem::swap(cur, next);
            if cur.is_empty() {
                return;
            }
        }
        // A node is live at most once, so a destination bound through a single pattern comes
        // up at most once; only the others need deduplicating.
        for &id in cur.iter() {
            let node = &nodes[id as usize];
            found.extend_from_slice(&node.unique);
            found_shared.extend_from_slice(&node.shared);
        }
        if !found_shared.is_empty() {
            found_shared.sort_unstable();
            found_shared.dedup();
            found.extend_from_slice(found_shared);
        }
    }

    fn child_or_insert(&mut self, node: NodeId, w: Word<'_>) -> NodeId {
        let n = &self.nodes[node as usize];
        let existing = match w {
            Word::Lit(s) => self.vocab.get(s).and_then(|id| n.children.get(&id).copied()),
            Word::Star => n.star,
            Word::Hash => n.hash,
        };
        if let Some(c) = existing {
            return c;
        }
        let id = self.alloc(matches!(w, Word::Hash));
        match w {
            Word::Lit(s) => {
                let wid = self.vocab.acquire(s);
                self.nodes[node as usize].children.insert(wid, id);
            }
            Word::Star => self.nodes[node as usize].star = Some(id),
            Word::Hash => self.nodes[node as usize].hash = Some(id),
        }
        id
    }

    fn alloc(&mut self, is_hash: bool) -> NodeId {
        if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = Node::new(is_hash);
            return id;
        }
        let id = NodeId::try_from(self.nodes.len()).expect("topic trie exceeds u32::MAX nodes");
        self.nodes.push(Node::new(is_hash));
        self.matcher_mut().marks.push(0);
        id
    }

    /// Trie nodes in use, the root included (for tests of pruning).
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Checks the unique/shared split against `dest_nodes`.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut count = 0;
        for (id, n) in self.nodes.iter().enumerate() {
            for d in &n.unique {
                assert_eq!(self.dest_nodes[d], [id as NodeId]);
            }
            for d in &n.shared {
                assert!(self.dest_nodes[d].len() > 1 && self.dest_nodes[d].contains(&(id as NodeId)));
            }
            count += n.unique.len() + n.shared.len();
        }
        assert_eq!(count, self.bindings);
        assert_eq!(
            self.dest_nodes.values().map(Vec::len).sum::<usize>(),
            self.bindings
        );
    }
}

fn insert_sorted<D: Ord>(v: &mut Vec<D>, d: D) {
    if let Err(at) = v.binary_search(&d) {
        v.insert(at, d);
    }
}

fn remove_sorted<D: Ord>(v: &mut Vec<D>, d: D) {
    if let Ok(at) = v.binary_search(&d) {
        v.remove(at);
    }
}

/// Advances the mark generation, resetting all marks when it wraps.
fn next_generation(generation: &mut u32, marks: &mut [u32]) -> u32 {
    *generation = generation.wrapping_add(1);
    if *generation == 0 {
        marks.fill(0);
        *generation = 1;
    }
    *generation
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    fn routed(ix: &mut TopicIndex<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        ix.route(key, &mut out);
        out.sort_unstable();
        out
    }

    /// Whether `pattern` alone matches `key`.
    fn matches(pattern: &str, key: &str) -> bool {
        let mut ix = TopicIndex::with_cache_capacity(0);
        ix.bind(pattern, 1u32);
        let hit = !routed(&mut ix, key).is_empty();
        assert_eq!(
            hit,
            reference(pattern, key),
            "trie vs reference for {pattern:?} / {key:?}"
        );
        hit
    }

    fn split(s: &str) -> Vec<&str> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').collect()
        }
    }

    /// Straightforward recursive matcher, the specification the trie is checked against.
    fn reference_words(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| reference_words(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && reference_words(rest, &k[1..]),
            Some((w, rest)) => k.first() == Some(w) && reference_words(rest, &k[1..]),
        }
    }

    fn reference(pattern: &str, key: &str) -> bool {
        reference_words(&split(pattern), &split(key))
    }

    #[test]
    fn literal_words() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b.d"));
        assert!(!matches("a", "A"));
    }

    #[test]
    fn star_matches_exactly_one_word() {
        assert!(matches("*", "a"));
        assert!(matches("a.*", "a.b"));
        assert!(matches("*.b.*", "a.b.c"));
        assert!(!matches("a.*", "a"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(!matches("*", "a.b"));
        assert!(matches("*.*", "a.b"));
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        assert!(matches("#", "a"));
        assert!(matches("#", "a.b.c.d.e"));
        assert!(matches("a.#", "a"));
        assert!(matches("a.#", "a.b.c"));
        assert!(matches("#.c", "c"));
        assert!(matches("#.c", "a.b.c"));
        assert!(!matches("#.c", "a.b.c.d"));
        assert!(matches("a.#.b", "a.b"));
        assert!(matches("a.#.b", "a.x.b"));
        assert!(matches("a.#.b", "a.x.y.z.b"));
        assert!(matches("a.#.b", "a.b.b"));
        assert!(!matches("a.#.b", "a.b.c"));
        assert!(!matches("a.#.b", "b.a.b"));
    }

    #[test]
    fn combined_wildcards() {
        assert!(matches("#.#", "a.b"));
        assert!(matches("#.#", ""));
        assert!(matches("*.#", "a"));
        assert!(matches("*.#", "a.b.c"));
        assert!(!matches("*.#", ""));
        assert!(matches("#.*", "a"));
        assert!(!matches("#.*", ""));
        assert!(matches("#.*.#", "x"));
        assert!(matches("*.*.#", "a.b"));
        assert!(!matches("*.*.#", "a"));
        assert!(matches("#.a.#", "x.a.y"));
        assert!(matches("#.a.#", "a"));
        assert!(!matches("#.a.#", "x.b.y"));
        assert!(matches("a.*.#.b", "a.x.b"));
        assert!(!matches("a.*.#.b", "a.b"));
    }

    #[test]
    fn empty_key_is_zero_words() {
        // RabbitMQ: split_topic_key(<<>>) = [], so "" matches "" and "#" but not "*".
        assert!(matches("", ""));
        assert!(matches("#", ""));
        assert!(matches("#.#.#", ""));
        assert!(!matches("*", ""));
        assert!(!matches("a", ""));
        assert!(!matches("", "a"));
        assert!(!matches("", "."));
    }

    #[test]
    fn empty_words_are_words() {
        assert!(matches("a..b", "a..b"));
        assert!(matches("a.*.b", "a..b"));
        assert!(matches("*.*.*", "a..b"));
        assert!(matches("a.#.b", "a..b"));
        assert!(!matches("a.b", "a..b"));
        assert!(!matches("a..b", "a.b"));
        assert!(matches("a.*", "a."));
        assert!(matches("a.", "a."));
        assert!(!matches("a.", "a"));
        assert!(!matches("a", "a."));
        assert!(matches("*.a", ".a"));
        assert!(matches("*.*", "."));
        assert!(!matches("*", "."));
        assert!(matches(".", "."));
        assert!(matches("#", "..."));
        assert!(matches("..", ".."));
    }

    #[test]
    fn wildcard_characters_in_keys_are_literal_words() {
        assert!(matches("a.*", "a.*"));
        assert!(matches("a.#", "a.#"));
        assert!(matches("*", "#"));
        assert!(!matches("a.b", "a.*"));
        assert!(!matches("a.b", "a.#"));
        assert!(!matches("a", "#"));
        // Only whole words are wildcards.
        assert!(!matches("a*", "ab"));
        assert!(matches("a*", "a*"));
        assert!(!matches("a#", "a.b"));
        assert!(matches("a#.b", "a#.b"));
    }

    #[test]
    fn long_keys() {
        let key = vec!["w"; 128].join(".");
        assert_eq!(key.len(), 255);
        assert!(matches("#", &key));
        assert!(matches("w.#.w", &key));
        assert!(matches("#.w.*", &key));
        assert!(!matches("#.x", &key));
        let mut pattern = vec!["*"; 128].join(".");
        assert!(matches(&pattern, &key));
        pattern.push_str(".*");
        assert!(!matches(&pattern, &key));
    }

    #[test]
    fn many_hashes_are_not_exponential() {
        let mut ix = TopicIndex::with_cache_capacity(0);
        let hashes = vec!["#"; 60].join(".");
        ix.bind(&hashes, 1u32);
        ix.bind(&format!("{hashes}.z"), 2);
        ix.bind(&format!("#.{hashes}.a.{hashes}.b.{hashes}.c"), 3);
        ix.bind(&vec!["#.*"; 40].join("."), 4);
        let key = vec!["a"; 127].join(".");
        let start = Instant::now();
        assert_eq!(routed(&mut ix, &key), vec![1, 4]);
        assert_eq!(routed(&mut ix, &format!("{key}.z")), vec![1, 2, 4]);
        assert_eq!(routed(&mut ix, "x.a.b.c"), vec![1, 3]);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn destination_routed_once() {
        let mut ix = TopicIndex::new();
        for p in ["#", "a.*", "*.b", "a.b", "#.b", "a.#.#"] {
            assert!(ix.bind(p, 7u32));
        }
        ix.bind("a.b", 8);
        ix.bind("c", 9);
        assert_eq!(routed(&mut ix, "a.b"), vec![7, 8]);
        assert_eq!(routed(&mut ix, "a.b"), vec![7, 8]); // cached
        assert_eq!(routed(&mut ix, "c"), vec![7, 9]);
        assert_eq!(routed(&mut ix, "d.e"), vec![7]);
    }

    #[test]
    fn route_appends() {
        let mut ix = TopicIndex::new();
        ix.bind("a", 2u32);
        let mut out = vec![1];
        ix.route("a", &mut out);
        ix.route("a", &mut out);
        ix.route("b", &mut out);
        assert_eq!(out, vec![1, 2, 2]);
    }

    #[test]
    fn bind_unbind_bookkeeping() {
        let mut ix = TopicIndex::new();
        assert!(ix.is_empty());
        assert_eq!(ix.len(), 0);
        assert!(ix.bind("a.#.b", 1u32));
        assert!(!ix.bind("a.#.b", 1));
        assert!(ix.bind("a.#.#.b", 1)); // a different pattern: a different binding
        assert!(ix.bind("a.#.b", 2));
        assert!(ix.bind("", 3));
        assert_eq!(ix.len(), 4);
        assert!(!ix.is_empty());
        assert!(!ix.unbind("a.#.b", 9));
        assert!(!ix.unbind("a.*.b", 1));
        assert!(!ix.unbind("a.#.b.c", 1));
        assert!(ix.unbind("a.#.b", 1));
        assert!(!ix.unbind("a.#.b", 1));
        assert_eq!(ix.len(), 3);
        assert_eq!(routed(&mut ix, "a.x.b"), vec![1, 2]); // 1 still bound via a.#.#.b
        assert!(ix.unbind("a.#.#.b", 1));
        assert_eq!(routed(&mut ix, "a.x.b"), vec![2]);
        assert_eq!(routed(&mut ix, ""), vec![3]);
        assert!(ix.unbind("a.#.b", 2));
        assert!(ix.unbind("", 3));
        assert!(ix.is_empty());
        assert_eq!(routed(&mut ix, "a.x.b"), Vec::<u32>::new());
    }

    #[test]
    fn unbind_prunes_and_reuses_nodes() {
        let mut ix = TopicIndex::new();
        assert_eq!(ix.live_nodes(), 1);
        ix.bind("a.b.c", 1u32);
        ix.bind("a.*.#", 1);
        assert_eq!(ix.live_nodes(), 6);
        ix.unbind("a.b.c", 1);
        assert_eq!(ix.live_nodes(), 4); // root, a, *, #
        ix.unbind("a.*.#", 1);
        assert_eq!(ix.live_nodes(), 1);
        assert!(ix.vocab.ids.is_empty(), "unused words are forgotten");
        let allocated = ix.nodes.len();
        ix.bind("x.y.z", 1);
        assert_eq!(ix.nodes.len(), allocated, "freed nodes are reused");
        assert_eq!(routed(&mut ix, "x.y.z"), vec![1]);
        assert_eq!(routed(&mut ix, "a.b.c"), Vec::<u32>::new());
        // A node that still has bindings is kept even when its subtree goes.
        ix.bind("x", 2);
        ix.unbind("x.y.z", 1);
        assert_eq!(ix.live_nodes(), 2);
        assert_eq!(routed(&mut ix, "x"), vec![2]);
    }

    #[test]
    fn cache_is_invalidated_by_bind_and_unbind() {
        let mut ix = TopicIndex::new();
        ix.bind("a.*", 1u32);
        assert_eq!(routed(&mut ix, "a.b"), vec![1]);
        assert_eq!(ix.matcher_mut().cache.len(), 1);
        ix.bind("#.b", 2);
        assert_eq!(routed(&mut ix, "a.b"), vec![1, 2]);
        ix.unbind("a.*", 1);
        assert_eq!(routed(&mut ix, "a.b"), vec![2]);
        // A no-op bind or unbind may keep the cache, but results stay right.
        ix.bind("#.b", 2);
        ix.unbind("nothing", 2);
        assert_eq!(routed(&mut ix, "a.b"), vec![2]);
        // Unroutable keys are cached too.
        assert_eq!(routed(&mut ix, "zzz"), Vec::<u32>::new());
        assert!(ix.matcher_mut().cache.contains_key("zzz"));
    }

    #[test]
    fn cache_is_bounded() {
        let mut ix = TopicIndex::with_cache_capacity(3);
        ix.bind("#", 1u32);
        for i in 0..20 {
            assert_eq!(routed(&mut ix, &format!("k{i}")), vec![1]);
            assert!(ix.matcher_mut().cache.len() <= 3);
        }
        let mut ix = TopicIndex::with_cache_capacity(0);
        ix.bind("#", 1u32);
        assert_eq!(routed(&mut ix, "k"), vec![1]);
        assert!(ix.matcher_mut().cache.is_empty());
    }

    #[test]
    fn generation_wraparound() {
        let mut ix = TopicIndex::with_cache_capacity(0);
        ix.bind("a.#", 1u32);
        ix.bind("*.b", 2);
        ix.matcher_mut().generation = u32::MAX - 3;
        for _ in 0..4 {
            assert_eq!(routed(&mut ix, "a.b"), vec![1, 2]);
            assert_eq!(routed(&mut ix, "a.c.d"), vec![1]);
        }
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "c", "", "*", "#"])
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 0..6).prop_map(|w| w.join("."))
    }

    fn key() -> impl Strategy<Value = String> {
        // Keys mostly avoid '*' and '#', but they are legal literal words.
        let w = prop::sample::select(vec!["a", "b", "c", "", "a", "b", "*", "#"]);
        prop::collection::vec(w, 0..7).prop_map(|w| w.join("."))
    }

    fn expected(bindings: &BTreeSet<(String, u32)>, key: &str) -> Vec<u32> {
        let set: BTreeSet<u32> = bindings
            .iter()
            .filter(|(p, _)| reference(p, key))
            .map(|&(_, d)| d)
            .collect();
        set.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn trie_agrees_with_reference(
            binds in prop::collection::vec((pattern(), 0u32..6), 0..24),
            unbinds in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            keys in prop::collection::vec(key(), 1..16),
            capacity in prop::sample::select(vec![0usize, 2, 4096]),
        ) {
            let mut ix = TopicIndex::with_cache_capacity(capacity);
            let mut model = BTreeSet::new();
            for (p, d) in &binds {
                prop_assert_eq!(ix.bind(p, *d), model.insert((p.clone(), *d)));
            }
            prop_assert_eq!(ix.len(), model.len());
            ix.check_invariants();
            for k in &keys {
                prop_assert_eq!(routed(&mut ix, k), expected(&model, k), "key {:?}", k);
            }
            for i in &unbinds {
                if binds.is_empty() {
                    break;
                }
                let (p, d) = &binds[i.index(binds.len())];
                prop_assert_eq!(ix.unbind(p, *d), model.remove(&(p.clone(), *d)));
                prop_assert_eq!(ix.len(), model.len());
                ix.check_invariants();
                // Route after every unbind, so stale cache entries would show.
                for k in &keys {
                    prop_assert_eq!(routed(&mut ix, k), expected(&model, k), "key {:?}", k);
                }
            }
            for (p, d) in model.clone() {
                prop_assert!(ix.unbind(&p, d));
            }
            prop_assert!(ix.is_empty());
            prop_assert_eq!(ix.live_nodes(), 1, "all nodes but the root pruned");
            prop_assert!(ix.vocab.ids.is_empty());
            prop_assert!(ix.dest_nodes.is_empty());
            prop_assert_eq!(ix.vocab.free.len(), ix.vocab.refs.len());
        }
    }
}
