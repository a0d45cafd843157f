//! One vhost's topology: exchanges, queues' metadata and bindings, with AMQP's and RabbitMQ's
//! declare / bind / delete rules (reply codes and texts as RabbitMQ sends them), and routing of
//! a message to the set of queues it reaches (exchange-to-exchange bindings, alternate
//! exchanges, CC/BCC, each queue at most once). Besides RabbitMQ's four built-in exchange
//! types it has `x-consistent-hash` (RabbitMQ's plugin, see
//! [`consistent_hash`](crate::routing::consistent_hash)) and `x-random`, and exchanges may
//! deduplicate publishes (`x-deduplication-window`, see [`dedup`](crate::dedup)).

use foldhash::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use warren_codec::{BasicProperties, FieldTable, FieldValue, ShortStr};

use crate::args::{QueueArgs, check_equivalent, render, type_name};
use crate::dedup::{self, DedupWindow};
use crate::error::{AmqpError, AmqpResult};
use crate::routing::consistent_hash::{ConsistentHash, HashOn, mix64, parse_weight};
use crate::routing::headers::{headers_match, validate_binding_args};
use crate::routing::topic::TopicIndex;

pub use crate::ids::ConnId;

/// A queue's id within its vhost (stable for the queue's life, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

/// An exchange's id within its vhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(pub u32);

/// A binding's destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    /// A queue.
    Queue(QueueId),
    /// An exchange (exchange-to-exchange binding).
    Exchange(ExchangeId),
}

/// Exchange types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Exact routing-key match.
    Direct,
    /// Every bound destination.
    Fanout,
    /// Dotted-word patterns with `*` and `#`.
    Topic,
    /// Header matching with `x-match`.
    Headers,
    /// `x-consistent-hash`: weighted consistent hashing (RabbitMQ's plugin).
    ConsistentHash,
    /// `x-random`: one bound destination picked at random.
    Random,
}

impl ExchangeKind {
    /// Parses RabbitMQ's type name.
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            "x-consistent-hash" => ExchangeKind::ConsistentHash,
            "x-random" => ExchangeKind::Random,
            _ => return None,
        })
    }

    /// The type name.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::ConsistentHash => "x-consistent-hash",
            ExchangeKind::Random => "x-random",
        }
    }
}

/// An exchange's declared properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeMeta {
    /// Name.
    pub name: ShortStr,
    /// Type.
    pub kind: ExchangeKind,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Cannot be published to directly.
    pub internal: bool,
    /// Declared arguments.
    pub arguments: FieldTable,
}

/// A queue's declared properties.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMeta {
    /// Id.
    pub id: QueueId,
    /// Name.
    pub name: ShortStr,
    /// Survives restarts.
    pub durable: bool,
    /// Owning connection of an exclusive queue.
    pub exclusive_owner: Option<ConnId>,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Declared arguments as received.
    pub arguments: FieldTable,
    /// Parsed arguments.
    pub args: QueueArgs,
}

/// A binding, for listing.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingInfo {
    /// Source exchange.
    pub source: ShortStr,
    /// Destination queue or exchange name.
    pub destination: ShortStr,
    /// Whether the destination is a queue.
    pub destination_is_queue: bool,
    /// Binding key.
    pub routing_key: ShortStr,
    /// Binding arguments.
    pub arguments: FieldTable,
}

#[derive(Debug)]
enum Index {
    Direct(HashMap<ShortStr, Vec<Dest>>),
    Fanout,
    Topic(TopicIndex<Dest>),
    Headers,
    ConsistentHash {
        hash: ConsistentHash<Dest>,
        on: HashOn,
    },
    /// xorshift64 state (routing takes `&self`; concurrent publishes may draw the same
    /// number, which a random exchange tolerates).
    Random(AtomicU64),
}

/// Seeds `x-random` exchanges' generators.
static RANDOM_SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

#[derive(Debug)]
struct Exchange {
    id: ExchangeId,
    meta: ExchangeMeta,
    alternate: Option<ShortStr>,
    /// Every binding from this exchange: (destination, key, arguments).
    bindings: Vec<(Dest, ShortStr, FieldTable)>,
    index: Index,
    /// `x-deduplication-window` on the exchange (its own lock: routing takes `&self`).
    dedup: Option<Mutex<DedupWindow>>,
}

impl Exchange {
    fn new(id: ExchangeId, meta: ExchangeMeta) -> Exchange {
        let index = match meta.kind {
            ExchangeKind::Direct => Index::Direct(HashMap::default()),
            ExchangeKind::Fanout => Index::Fanout,
            ExchangeKind::Topic => Index::Topic(TopicIndex::new()),
            ExchangeKind::Headers => Index::Headers,
            ExchangeKind::ConsistentHash => Index::ConsistentHash {
                hash: ConsistentHash::new(),
                on: HashOn::parse(&meta.arguments).unwrap_or_default(),
            },
            ExchangeKind::Random => {
                let seed = RANDOM_SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
                Index::Random(AtomicU64::new(mix64(seed) | 1))
            }
        };
        let dedup = dedup::parse_args(&meta.arguments)
            .ok()
            .flatten()
            .map(|(w, src)| Mutex::new(DedupWindow::new(w, src)));
        let alternate = meta
            .arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
            .map(ShortStr::from);
        Exchange {
            id,
            meta,
            alternate,
            bindings: Vec::new(),
            index,
            dedup,
        }
    }

    /// Adds a binding; `dest_name` is the destination's name (stable across restarts, which
    /// consistent hashing hashes).
    fn add(&mut self, dest: Dest, dest_name: &str, key: &ShortStr, args: &FieldTable) -> bool {
        if self
            .bindings
            .iter()
            .any(|(d, k, a)| *d == dest && k == key && a == args)
        {
            return false;
        }
        self.bindings.push((dest, key.clone(), args.clone()));
        match &mut self.index {
            Index::Direct(m) => m.entry(key.clone()).or_default().push(dest),
            Index::Topic(t) => {
                t.bind(key, dest);
            }
            Index::ConsistentHash { hash, .. } => {
                hash.add(dest, dest_name, key);
            }
            Index::Fanout | Index::Headers | Index::Random(_) => {}
        }
        true
    }

    fn remove(&mut self, dest: Dest, key: &str, args: &FieldTable) -> bool {
        let Some(pos) = self
            .bindings
            .iter()
            .position(|(d, k, a)| *d == dest && &**k == key && a == args)
        else {
            return false;
        };
        self.bindings.remove(pos);
        let still_bound_same_key = self.bindings.iter().any(|(d, k, _)| *d == dest && &**k == key);
        match &mut self.index {
            Index::Direct(m) => {
                if !still_bound_same_key && let Some(v) = m.get_mut(key) {
                    v.retain(|d| *d != dest);
                    if v.is_empty() {
                        m.remove(key);
                    }
                }
            }
            Index::Topic(t) => {
                if !still_bound_same_key {
                    t.unbind(key, dest);
                }
            }
            Index::ConsistentHash { hash, .. } => hash.remove(dest, key),
            Index::Fanout | Index::Headers | Index::Random(_) => {}
        }
        true
    }

    fn remove_dest(&mut self, dest: Dest) -> usize {
        let doomed: Vec<(ShortStr, FieldTable)> = self
            .bindings
            .iter()
            .filter(|(d, _, _)| *d == dest)
            .map(|(_, k, a)| (k.clone(), a.clone()))
            .collect();
        for (k, a) in &doomed {
            self.remove(dest, k, a);
        }
        doomed.len()
    }

    fn route_into(
        &self,
        keys: &[&str],
        headers: Option<&FieldTable>,
        props: Option<&BasicProperties>,
        out: &mut Vec<Dest>,
    ) {
        match &self.index {
            Index::Direct(m) => {
                for k in keys {
                    if let Some(d) = m.get(*k) {
                        out.extend_from_slice(d);
                    }
                }
            }
            Index::Fanout => out.extend(self.bindings.iter().map(|(d, _, _)| *d)),
            Index::Topic(t) => {
                for k in keys {
                    t.route(k, out);
                }
            }
            Index::Headers => {
                for (d, _, a) in &self.bindings {
                    if headers_match(a, headers) {
                        out.push(*d);
                    }
                }
            }
            Index::ConsistentHash { hash, on } => {
                // As the plugin: the routing key only (not CC/BCC).
                let rk = keys.first().copied().unwrap_or("");
                if let Some(input) = on.input(rk, headers, props)
                    && let Some(d) = hash.route(&input)
                {
                    out.push(d);
                }
            }
            Index::Random(state) => {
                if !self.bindings.is_empty() {
                    // xorshift64
                    let mut x = state.load(Ordering::Relaxed);
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    state.store(x, Ordering::Relaxed);
                    let i = (x % self.bindings.len() as u64) as usize;
                    out.push(self.bindings[i].0);
                }
            }
        }
    }
}

/// Parameters of a queue.declare.
#[derive(Debug, Clone)]
pub struct QueueDeclare<'a> {
    /// Name (never empty here: the caller generates `amq.gen-…` names).
    pub name: &'a str,
    /// Only check existence.
    pub passive: bool,
    /// Durable.
    pub durable: bool,
    /// Exclusive to `owner`.
    pub exclusive: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: &'a FieldTable,
    /// The declaring connection.
    pub owner: ConnId,
    /// The broker generated `name` (the client sent an empty name), so the reserved
    /// `amq.` prefix is allowed, as in RabbitMQ.
    pub server_named: bool,
}

/// Parameters of an exchange.declare.
#[derive(Debug, Clone)]
pub struct ExchangeDeclare<'a> {
    /// Name.
    pub name: &'a str,
    /// Type name.
    pub kind: &'a str,
    /// Only check existence.
    pub passive: bool,
    /// Durable.
    pub durable: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Internal.
    pub internal: bool,
    /// Arguments.
    pub arguments: &'a FieldTable,
}

/// What deleting a queue removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// Exchanges auto-deleted because their last binding went.
    pub exchanges: Vec<ShortStr>,
}

/// The result of routing one message.
#[derive(Debug, Default)]
pub struct Routed {
    /// Queues reached, each once, sorted.
    pub queues: Vec<QueueId>,
    /// An exchange on the way dropped the message as a duplicate (`x-deduplication-window`).
    pub duplicate: bool,
    /// The queues depend only on the exchange and the keys (direct, fanout and topic
    /// exchanges without a deduplication window, all along the way), so the same publish
    /// routes the same while the topology is unchanged: the caller may cache the result.
    pub key_only: bool,
}

thread_local! {
    /// The destinations of one exchange while routing, kept per thread so that routing takes
    /// `&self` and allocates nothing but its result.
    static ROUTE_SCRATCH: std::cell::RefCell<Vec<Dest>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One vhost's exchanges, queues and bindings. Routing takes `&self` (what it mutates — topic
/// result caches, deduplication windows, random exchanges' state — has its own interior lock or
/// atomic), so a vhost routes publishes under a shared read lock.
#[derive(Debug)]
pub struct Topology {
    vhost: String,
    exchanges: HashMap<ShortStr, Exchange>,
    exchange_names: HashMap<ExchangeId, ShortStr>,
    queues: HashMap<ShortStr, QueueMeta>,
    queue_names: HashMap<QueueId, ShortStr>,
    /// Exchanges with bindings to each destination.
    sources: HashMap<Dest, Vec<ExchangeId>>,
    next_exchange: u32,
    next_queue: u64,
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The standard exchanges every vhost has.
pub const STANDARD_EXCHANGES: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

impl Topology {
    /// A vhost with the standard exchanges.
    pub fn new(vhost: &str) -> Topology {
        let mut t = Topology {
            vhost: vhost.to_string(),
            exchanges: HashMap::default(),
            exchange_names: HashMap::default(),
            queues: HashMap::default(),
            queue_names: HashMap::default(),
            sources: HashMap::default(),
            next_exchange: 0,
            next_queue: 1,
        };
        for (name, kind) in STANDARD_EXCHANGES {
            t.insert_exchange(ExchangeMeta {
                name: name.into(),
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::new(),
            });
        }
        t
    }

    /// The vhost's name.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    fn insert_exchange(&mut self, meta: ExchangeMeta) -> ExchangeId {
        let id = ExchangeId(self.next_exchange);
        self.next_exchange += 1;
        self.exchange_names.insert(id, meta.name.clone());
        self.exchanges.insert(meta.name.clone(), Exchange::new(id, meta));
        id
    }

    fn no_exchange(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.vhost))
    }

    fn no_queue(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.vhost))
    }

    /// 405: another connection's exclusive queue, or an exclusive-flag mismatch.
    fn locked(&self, name: &str) -> AmqpError {
        AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It could be originally \
             declared on another connection or the exclusive property value does not match that of the \
             original declaration.",
            self.vhost
        ))
    }

    fn default_exchange_refused() -> AmqpError {
        AmqpError::access_refused("operation not permitted on the default exchange")
    }

    /// An exchange's properties.
    pub fn exchange(&self, name: &str) -> Option<&ExchangeMeta> {
        self.exchanges.get(name).map(|e| &e.meta)
    }

    /// Every exchange.
    pub fn exchanges(&self) -> impl Iterator<Item = &ExchangeMeta> {
        self.exchanges.values().map(|e| &e.meta)
    }

    /// A queue's properties by name.
    pub fn queue(&self, name: &str) -> Option<&QueueMeta> {
        self.queues.get(name)
    }

    /// A queue's properties by id.
    pub fn queue_by_id(&self, id: QueueId) -> Option<&QueueMeta> {
        self.queues.get(self.queue_names.get(&id)?)
    }

    /// Every queue.
    pub fn queues(&self) -> impl Iterator<Item = &QueueMeta> {
        self.queues.values()
    }

    /// Whether a binding between these two survives a restart: both ends durable (and a
    /// queue destination not exclusive).
    pub fn is_durable_binding(&self, source: &str, destination: &str, destination_is_queue: bool) -> bool {
        let src = self.exchanges.get(source).is_some_and(|x| x.meta.durable);
        let dst = if destination_is_queue {
            self.queues
                .get(destination)
                .is_some_and(|q| q.durable && q.exclusive_owner.is_none())
        } else {
            self.exchanges.get(destination).is_some_and(|x| x.meta.durable)
        };
        src && dst
    }

    /// Every binding, including the implicit default-exchange ones.
    pub fn bindings(&self) -> Vec<BindingInfo> {
        let mut out = Vec::new();
        for q in self.queues.values() {
            out.push(BindingInfo {
                source: "".into(),
                destination: q.name.clone(),
                destination_is_queue: true,
                routing_key: q.name.clone(),
                arguments: FieldTable::new(),
            });
        }
        for x in self.exchanges.values() {
            for (d, k, a) in &x.bindings {
                let (destination, destination_is_queue) = match d {
                    Dest::Queue(q) => (self.queue_names[q].clone(), true),
                    Dest::Exchange(e) => (self.exchange_names[e].clone(), false),
                };
                out.push(BindingInfo {
                    source: x.meta.name.clone(),
                    destination,
                    destination_is_queue,
                    routing_key: k.clone(),
                    arguments: a.clone(),
                });
            }
        }
        out
    }

    /// exchange.declare.
    pub fn declare_exchange(&mut self, d: &ExchangeDeclare<'_>) -> AmqpResult<()> {
        // RabbitMQ refuses every declare of the default exchange, passive ones included.
        if d.name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if let Some(x) = self.exchanges.get(d.name) {
            if d.passive {
                return Ok(());
            }
            let m = &x.meta;
            let ineq = |arg: &str, received: &str, current: &str| {
                AmqpError::precondition(format!(
                    "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
                    d.name, self.vhost
                ))
            };
            if m.kind.name() != d.kind {
                return Err(ineq("type", d.kind, m.kind.name()));
            }
            if m.durable != d.durable {
                return Err(ineq("durable", bool_str(d.durable), bool_str(m.durable)));
            }
            if m.auto_delete != d.auto_delete {
                return Err(ineq(
                    "auto_delete",
                    bool_str(d.auto_delete),
                    bool_str(m.auto_delete),
                ));
            }
            if m.internal != d.internal {
                return Err(ineq("internal", bool_str(d.internal), bool_str(m.internal)));
            }
            let cur = m.arguments.get("alternate-exchange");
            let new = d.arguments.get("alternate-exchange");
            if cur != new {
                let show = |v: Option<&FieldValue>| v.map(render).unwrap_or_else(|| "none".into());
                return Err(ineq("alternate-exchange", &show(new), &show(cur)));
            }
            return Ok(());
        }
        if d.passive {
            return Err(self.no_exchange(d.name));
        }
        let Some(kind) = ExchangeKind::parse(d.kind) else {
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{}'",
                d.kind
            )));
        };
        if d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        if kind == ExchangeKind::ConsistentHash
            && let Err(why) = HashOn::parse(d.arguments)
        {
            return Err(AmqpError::precondition(format!(
                "invalid arguments for exchange '{}' in vhost '{}': {why}",
                d.name, self.vhost
            )));
        }
        if let Err((arg, why)) = dedup::parse_args(d.arguments) {
            return Err(AmqpError::precondition(format!(
                "invalid arg '{arg}' for exchange '{}' in vhost '{}': {why}",
                d.name, self.vhost
            )));
        }
        if let Some(v) = d.arguments.get("alternate-exchange")
            && v.as_str().is_none()
        {
            return Err(AmqpError::precondition(format!(
                "invalid arg 'alternate-exchange' for exchange '{}' in vhost '{}': {{unacceptable_type,{}}}",
                d.name,
                self.vhost,
                type_name(v)
            )));
        }
        self.insert_exchange(ExchangeMeta {
            name: d.name.into(),
            kind,
            durable: d.durable,
            auto_delete: d.auto_delete,
            internal: d.internal,
            arguments: d.arguments.clone(),
        });
        Ok(())
    }

    /// exchange.delete. Deleting a missing exchange succeeds, as in RabbitMQ.
    pub fn delete_exchange(&mut self, name: &str, if_unused: bool) -> AmqpResult<Deleted> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if name.starts_with("amq.") && self.exchanges.contains_key(name) {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let Some(x) = self.exchanges.get(name) else {
            return Ok(Deleted::default());
        };
        if if_unused && !x.bindings.is_empty() {
            return Err(AmqpError::precondition(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.vhost
            )));
        }
        let mut deleted = Deleted::default();
        self.remove_exchange(name, &mut deleted);
        Ok(deleted)
    }

    fn remove_exchange(&mut self, name: &str, deleted: &mut Deleted) {
        let Some(x) = self.exchanges.remove(name) else {
            return;
        };
        self.exchange_names.remove(&x.id);
        for (d, _, _) in &x.bindings {
            if let Some(srcs) = self.sources.get_mut(d) {
                srcs.retain(|s| *s != x.id);
            }
        }
        deleted.exchanges.push(x.meta.name.clone());
        // Bindings in which this exchange is the destination.
        self.remove_dest(Dest::Exchange(x.id), deleted);
    }

    /// Removes every binding to `dest`, auto-deleting source exchanges left with none.
    fn remove_dest(&mut self, dest: Dest, deleted: &mut Deleted) {
        let Some(srcs) = self.sources.remove(&dest) else {
            return;
        };
        let mut emptied = Vec::new();
        for sid in srcs {
            let Some(sname) = self.exchange_names.get(&sid).cloned() else {
                continue;
            };
            if let Some(x) = self.exchanges.get_mut(&sname)
                && x.remove_dest(dest) > 0
                && x.bindings.is_empty()
                && x.meta.auto_delete
            {
                emptied.push(sname);
            }
        }
        for name in emptied {
            self.remove_exchange(&name, deleted);
        }
    }

    /// queue.declare. Returns the queue and whether it was created.
    pub fn declare_queue(&mut self, d: &QueueDeclare<'_>) -> AmqpResult<(QueueMeta, bool)> {
        if let Some(q) = self.queues.get(d.name) {
            if let Some(owner) = q.exclusive_owner
                && owner != d.owner
            {
                return Err(self.locked(d.name));
            }
            if d.passive {
                return Ok((q.clone(), false));
            }
            let ineq = |arg: &str, received: bool, current: bool| {
                AmqpError::precondition(format!(
                    "inequivalent arg '{arg}' for queue '{}' in vhost '{}': received '{}' but current is '{}'",
                    d.name,
                    self.vhost,
                    bool_str(received),
                    bool_str(current)
                ))
            };
            if q.durable != d.durable {
                return Err(ineq("durable", d.durable, q.durable));
            }
            if q.exclusive_owner.is_some() != d.exclusive {
                return Err(self.locked(d.name));
            }
            if q.auto_delete != d.auto_delete {
                return Err(ineq("auto_delete", d.auto_delete, q.auto_delete));
            }
            check_equivalent(&q.arguments, d.arguments, d.name, &self.vhost)?;
            return Ok((q.clone(), false));
        }
        if d.passive {
            return Err(self.no_queue(d.name));
        }
        if !d.server_named && d.name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let args = QueueArgs::parse(d.arguments, d.name, &self.vhost)?;
        if args.quorum {
            // rabbit_quorum_queue:declare checks auto-delete, exclusive, then durable.
            let invalid = [
                (d.auto_delete, "auto-delete"),
                (d.exclusive, "exclusive-owner"),
                (!d.durable, "non-durable"),
            ];
            if let Some((_, prop)) = invalid.iter().find(|(bad, _)| *bad) {
                return Err(AmqpError::precondition(format!(
                    "invalid property '{prop}' for queue '{}' in vhost '{}'",
                    d.name, self.vhost
                )));
            }
        }
        Ok((self.insert_queue(d, args), true))
    }

    /// Inserts a queue without checks (declare after validation, or recovery).
    fn insert_queue(&mut self, d: &QueueDeclare<'_>, args: QueueArgs) -> QueueMeta {
        let id = QueueId(self.next_queue);
        self.next_queue += 1;
        let meta = QueueMeta {
            id,
            name: d.name.into(),
            durable: d.durable,
            exclusive_owner: d.exclusive.then_some(d.owner),
            auto_delete: d.auto_delete,
            arguments: d.arguments.clone(),
            args,
        };
        self.queue_names.insert(id, meta.name.clone());
        self.queues.insert(meta.name.clone(), meta.clone());
        meta
    }

    /// Checks that `owner` may use queue `name` (exists, not another connection's exclusive
    /// queue).
    pub fn check_queue_access(&self, name: &str, owner: ConnId) -> AmqpResult<&QueueMeta> {
        let q = self.queues.get(name).ok_or_else(|| self.no_queue(name))?;
        if let Some(o) = q.exclusive_owner
            && o != owner
        {
            return Err(self.locked(name));
        }
        Ok(q)
    }

    /// Removes a queue and its bindings (the caller checked if-unused / if-empty and access).
    pub fn delete_queue(&mut self, name: &str) -> Option<(QueueMeta, Deleted)> {
        let q = self.queues.remove(name)?;
        self.queue_names.remove(&q.id);
        let mut deleted = Deleted::default();
        self.remove_dest(Dest::Queue(q.id), &mut deleted);
        Some((q, deleted))
    }

    /// Queues owned exclusively by `owner`.
    pub fn exclusive_queues(&self, owner: ConnId) -> Vec<ShortStr> {
        self.queues
            .values()
            .filter(|q| q.exclusive_owner == Some(owner))
            .map(|q| q.name.clone())
            .collect()
    }

    fn resolve_dest_queue(&self, name: &str) -> AmqpResult<Dest> {
        self.queues
            .get(name)
            .map(|q| Dest::Queue(q.id))
            .ok_or_else(|| self.no_queue(name))
    }

    fn resolve_dest_exchange(&self, name: &str) -> AmqpResult<Dest> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        self.exchanges
            .get(name)
            .map(|x| Dest::Exchange(x.id))
            .ok_or_else(|| self.no_exchange(name))
    }

    fn check_source(&self, name: &str) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        if !self.exchanges.contains_key(name) {
            return Err(self.no_exchange(name));
        }
        Ok(())
    }

    fn bind(&mut self, source: &str, dest: Dest, key: &str, args: &FieldTable) -> AmqpResult<bool> {
        let dest_name = match dest {
            Dest::Queue(q) => self.queue_names.get(&q).cloned().unwrap_or_default(),
            Dest::Exchange(e) => self.exchange_names.get(&e).cloned().unwrap_or_default(),
        };
        let x = self.exchanges.get_mut(source).expect("checked");
        if x.meta.kind == ExchangeKind::Headers {
            validate_binding_args(args).map_err(AmqpError::precondition)?;
        }
        if x.meta.kind == ExchangeKind::ConsistentHash && parse_weight(key).is_none() {
            return Err(AmqpError::precondition(format!(
                "invalid binding key '{key}' for exchange '{source}' in vhost '{}': \
                 the binding key of an x-consistent-hash exchange is an integer weight",
                self.vhost
            )));
        }
        let sid = x.id;
        let added = x.add(dest, &dest_name, &key.into(), args);
        if added {
            let srcs = self.sources.entry(dest).or_default();
            if !srcs.contains(&sid) {
                srcs.push(sid);
            }
        }
        Ok(added)
    }

    fn unbind(&mut self, source: &str, dest: Dest, key: &str, args: &FieldTable) -> Deleted {
        let mut deleted = Deleted::default();
        let Some(x) = self.exchanges.get_mut(source) else {
            return deleted;
        };
        if !x.remove(dest, key, args) {
            return deleted;
        }
        let sid = x.id;
        let still = x.bindings.iter().any(|(d, _, _)| *d == dest);
        let auto_delete_now = x.bindings.is_empty() && x.meta.auto_delete;
        if !still && let Some(srcs) = self.sources.get_mut(&dest) {
            srcs.retain(|s| *s != sid);
        }
        if auto_delete_now {
            self.remove_exchange(source, &mut deleted);
        }
        deleted
    }

    /// queue.bind. True when the binding is new (binding again is a no-op, as in RabbitMQ).
    pub fn bind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<bool> {
        let dest = self.resolve_dest_queue(queue)?;
        self.check_source(exchange)?;
        self.bind(exchange, dest, key, args)
    }

    /// queue.unbind. Idempotent as RabbitMQ's: a missing binding, queue or exchange is fine
    /// (nothing is bound to what does not exist); only the default exchange is refused (403).
    pub fn unbind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<Deleted> {
        if exchange.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        match self.queues.get(queue) {
            Some(q) => Ok(self.unbind(exchange, Dest::Queue(q.id), key, args)),
            None => Ok(Deleted::default()),
        }
    }

    /// exchange.bind (destination ← source). True when the binding is new.
    pub fn bind_exchange(
        &mut self,
        destination: &str,
        source: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<bool> {
        let dest = self.resolve_dest_exchange(destination)?;
        self.check_source(source)?;
        self.bind(source, dest, key, args)
    }

    /// exchange.unbind. Idempotent like [`Topology::unbind_queue`]: missing exchanges are fine,
    /// the default exchange on either side is refused (403).
    pub fn unbind_exchange(
        &mut self,
        destination: &str,
        source: &str,
        key: &str,
        args: &FieldTable,
    ) -> AmqpResult<Deleted> {
        if destination.is_empty() || source.is_empty() {
            return Err(Self::default_exchange_refused());
        }
        match self.exchanges.get(destination) {
            Some(x) => Ok(self.unbind(source, Dest::Exchange(x.id), key, args)),
            None => Ok(Deleted::default()),
        }
    }

    /// Routes a message published to `exchange` with `keys` (routing key, then CC/BCC) and
    /// `headers`. Each queue appears at most once. A missing exchange is 404.
    pub fn route(&self, exchange: &str, keys: &[&str], headers: Option<&FieldTable>) -> AmqpResult<Routed> {
        self.route_inner(exchange, keys, headers, None, None)
    }

    /// Routes a message with all its properties (for `hash-property` of consistent-hash
    /// exchanges) at time `now` (for exchanges' `x-deduplication-window`).
    pub fn route_message(
        &self,
        exchange: &str,
        keys: &[&str],
        props: &BasicProperties,
        now: u64,
    ) -> AmqpResult<Routed> {
        self.route_inner(exchange, keys, props.headers.as_ref(), Some(props), Some(now))
    }

    fn route_inner(
        &self,
        exchange: &str,
        keys: &[&str],
        headers: Option<&FieldTable>,
        props: Option<&BasicProperties>,
        now: Option<u64>,
    ) -> AmqpResult<Routed> {
        let mut routed = Routed {
            key_only: true,
            ..Routed::default()
        };
        if exchange.is_empty() {
            for k in keys {
                if let Some(q) = self.queues.get(*k) {
                    routed.queues.push(q.id);
                }
            }
            routed.queues.sort_unstable();
            routed.queues.dedup();
            return Ok(routed);
        }
        // The published-to exchange is looked up once, by `&str` (no `ShortStr` copy); only
        // exchanges reached through e2e bindings or alternates go through `pending` and
        // `visited`, so a plain route allocates nothing but its result.
        let mut visited: Vec<ExchangeId> = Vec::new();
        let mut pending: Vec<ShortStr> = Vec::new();
        let mut first = Some(exchange);
        let mut first_id = None;
        let mut dests = ROUTE_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        loop {
            let popped;
            let name: &str = match first.take() {
                Some(f) => f,
                None => match pending.pop() {
                    Some(n) => {
                        popped = n;
                        &popped
                    }
                    None => break,
                },
            };
            let Some(x) = self.exchanges.get(name) else {
                if first_id.is_none() {
                    ROUTE_SCRATCH.with(|s| *s.borrow_mut() = dests);
                    return Err(self.no_exchange(exchange));
                }
                continue;
            };
            if first_id == Some(x.id) || visited.contains(&x.id) {
                continue;
            }
            if first_id.is_none() {
                first_id = Some(x.id);
            } else {
                visited.push(x.id);
            }
            if x.dedup.is_some() || !matches!(x.index, Index::Direct(_) | Index::Fanout | Index::Topic(_)) {
                routed.key_only = false;
            }
            if let (Some(w), Some(p), Some(now)) = (&x.dedup, props, now)
                && w.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .check_and_record(p, now)
            {
                routed.duplicate = true;
                continue;
            }
            dests.clear();
            x.route_into(keys, headers, props, &mut dests);
            if dests.is_empty() {
                if let Some(ae) = x.alternate.clone() {
                    pending.push(ae);
                }
                continue;
            }
            for d in dests.iter() {
                match d {
                    Dest::Queue(q) => routed.queues.push(*q),
                    Dest::Exchange(e) => {
                        if let Some(n) = self.exchange_names.get(e) {
                            pending.push(n.clone());
                        }
                    }
                }
            }
        }
        ROUTE_SCRATCH.with(|s| *s.borrow_mut() = dests);
        routed.queues.sort_unstable();
        routed.queues.dedup();
        Ok(routed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Topology {
        Topology::new("/")
    }
    fn none() -> FieldTable {
        FieldTable::new()
    }
    fn xdecl<'a>(name: &'a str, kind: &'a str, args: &'a FieldTable) -> ExchangeDeclare<'a> {
        ExchangeDeclare {
            name,
            kind,
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            arguments: args,
        }
    }
    fn qdecl<'a>(name: &'a str, args: &'a FieldTable) -> QueueDeclare<'a> {
        QueueDeclare {
            name,
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: args,
            owner: ConnId(1),
            server_named: false,
        }
    }
    fn code(e: AmqpError) -> u16 {
        e.code.code()
    }

    #[test]
    fn quorum_queues_must_be_durable_not_exclusive_not_auto_delete() {
        let mut t = t();
        let mut args = none();
        args.insert("x-queue-type", warren_codec::FieldValue::str("quorum"));
        let mut d = qdecl("qq", &args);
        // (durable, exclusive, auto_delete) -> the property RabbitMQ names.
        for (durable, exclusive, auto_delete, prop) in [
            (false, false, false, "non-durable"),
            (true, true, false, "exclusive-owner"),
            (true, false, true, "auto-delete"),
        ] {
            (d.durable, d.exclusive, d.auto_delete) = (durable, exclusive, auto_delete);
            let err = t.declare_queue(&d).unwrap_err();
            let want = format!("invalid property '{prop}' for queue 'qq' in vhost '/'");
            assert_eq!((err.code.code(), err.text.as_str()), (406, want.as_str()));
        }
        d.auto_delete = false;
        assert!(t.declare_queue(&d).unwrap().1);
    }

    #[test]
    fn threads_route_through_one_shared_topology_at_once() {
        let mut t = t();
        let none = none();
        t.declare_exchange(&xdecl("t", "topic", &none)).unwrap();
        let mut ids = Vec::new();
        for i in 0..8 {
            let q = format!("q{i}");
            let (meta, _) = t.declare_queue(&qdecl(&q, &none)).unwrap();
            t.bind_queue(&q, "t", &format!("k.{i}.#"), &none).unwrap();
            ids.push(meta.id);
        }
        let (t, ids) = (&t, &ids);
        std::thread::scope(|s| {
            for th in 0..4 {
                s.spawn(move || {
                    for n in 0..2_000 {
                        let i = (n + th) % 8;
                        let key = format!("k.{i}.x");
                        let r = t.route("t", &[&key], None).unwrap();
                        assert_eq!(r.queues, vec![ids[i]], "{key}");
                    }
                });
            }
        });
    }

    #[test]
    fn standard_exchanges_exist() {
        let t = t();
        for (n, k) in STANDARD_EXCHANGES {
            assert_eq!(t.exchange(n).unwrap().kind, k);
        }
    }

    #[test]
    fn default_exchange_routes_by_queue_name() {
        let mut t = t();
        let a = none();
        let (q, created) = t.declare_queue(&qdecl("q1", &a)).unwrap();
        assert!(created);
        assert_eq!(t.route("", &["q1"], None).unwrap().queues, vec![q.id]);
        assert!(t.route("", &["nope"], None).unwrap().queues.is_empty());
    }

    #[test]
    fn default_exchange_cannot_be_bound_deleted_or_declared() {
        let mut t = t();
        let a = none();
        t.declare_queue(&qdecl("q", &a)).unwrap();
        assert_eq!(code(t.bind_queue("q", "", "q", &a).unwrap_err()), 403);
        assert_eq!(code(t.delete_exchange("", false).unwrap_err()), 403);
        assert_eq!(
            code(t.declare_exchange(&xdecl("", "direct", &a)).unwrap_err()),
            403
        );
        let passive = ExchangeDeclare {
            passive: true,
            ..xdecl("", "direct", &a)
        };
        assert_eq!(code(t.declare_exchange(&passive).unwrap_err()), 403);
    }

    #[test]
    fn redeclare_rules() {
        let mut t = t();
        let a = none();
        t.declare_exchange(&xdecl("x", "direct", &a)).unwrap();
        t.declare_exchange(&xdecl("x", "direct", &a)).unwrap();
        let e = t.declare_exchange(&xdecl("x", "fanout", &a)).unwrap_err();
        assert_eq!(code(e.clone()), 406);
        assert_eq!(
            e.text,
            "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'"
        );
        let mut d = xdecl("x", "direct", &a);
        d.durable = true;
        assert_eq!(code(t.declare_exchange(&d).unwrap_err()), 406);
        let mut p = xdecl("missing", "direct", &a);
        p.passive = true;
        let e = t.declare_exchange(&p).unwrap_err();
        assert_eq!(
            (code(e.clone()), e.text.as_str()),
            (404, "no exchange 'missing' in vhost '/'")
        );
        assert_eq!(
            code(t.declare_exchange(&xdecl("amq.foo", "direct", &a)).unwrap_err()),
            403
        );
        assert_eq!(
            code(t.declare_exchange(&xdecl("y", "nonsense", &a)).unwrap_err()),
            503
        );
        // Redeclaring a standard exchange with its own properties is fine.
        let mut s = xdecl("amq.direct", "direct", &a);
        s.durable = true;
        t.declare_exchange(&s).unwrap();
    }

    #[test]
    fn queue_declare_rules() {
        let mut t = t();
        let a = none();
        let mut p = qdecl("nope", &a);
        p.passive = true;
        let e = t.declare_queue(&p).unwrap_err();
        assert_eq!(
            (code(e.clone()), e.text.as_str()),
            (404, "no queue 'nope' in vhost '/'")
        );
        assert_eq!(code(t.declare_queue(&qdecl("amq.q", &a)).unwrap_err()), 403);
        let mut ex = qdecl("ex", &a);
        ex.exclusive = true;
        t.declare_queue(&ex).unwrap();
        let mut other = ex.clone();
        other.owner = ConnId(2);
        assert_eq!(code(t.declare_queue(&other).unwrap_err()), 405);
        other.passive = true;
        assert_eq!(code(t.declare_queue(&other).unwrap_err()), 405);
        t.declare_queue(&qdecl("d", &a)).unwrap();
        let mut d2 = qdecl("d", &a);
        d2.durable = true;
        let e = t.declare_queue(&d2).unwrap_err();
        assert_eq!(
            e.text,
            "inequivalent arg 'durable' for queue 'd' in vhost '/': received 'true' but current is 'false'"
        );
        let mut ttl = FieldTable::new();
        ttl.insert("x-message-ttl", FieldValue::I32(5));
        assert_eq!(code(t.declare_queue(&qdecl("d", &ttl)).unwrap_err()), 406);
        assert_eq!(t.exclusive_queues(ConnId(1)), vec![ShortStr::from("ex")]);
    }

    #[test]
    fn bind_and_unbind_rules() {
        let mut t = t();
        let a = none();
        t.declare_queue(&qdecl("q", &a)).unwrap();
        assert_eq!(code(t.bind_queue("q", "nox", "k", &a).unwrap_err()), 404);
        assert_eq!(code(t.bind_queue("noq", "amq.direct", "k", &a).unwrap_err()), 404);
        t.bind_queue("q", "amq.direct", "k", &a).unwrap();
        t.bind_queue("q", "amq.direct", "k", &a).unwrap(); // idempotent
        assert_eq!(t.route("amq.direct", &["k"], None).unwrap().queues.len(), 1);
        t.unbind_queue("q", "amq.direct", "k", &a).unwrap();
        t.unbind_queue("q", "amq.direct", "k", &a).unwrap(); // missing binding is fine
        // Missing queue or exchange: fine too (RabbitMQ's unbind is idempotent).
        t.unbind_queue("noq", "amq.direct", "k", &a).unwrap();
        t.unbind_queue("q", "nox", "k", &a).unwrap();
        t.unbind_exchange("nox", "amq.direct", "k", &a).unwrap();
        t.unbind_exchange("amq.fanout", "nox", "k", &a).unwrap();
        assert_eq!(code(t.unbind_queue("noq", "", "k", &a).unwrap_err()), 403);
        assert_eq!(
            code(t.unbind_exchange("amq.fanout", "", "k", &a).unwrap_err()),
            403
        );
        assert!(t.route("amq.direct", &["k"], None).unwrap().queues.is_empty());
        assert_eq!(code(t.route("nox", &["k"], None).unwrap_err()), 404);
    }

    #[test]
    fn exchange_to_exchange_with_cycle_reaches_each_queue_once() {
        let mut t = t();
        let a = none();
        t.declare_exchange(&xdecl("x1", "fanout", &a)).unwrap();
        t.declare_exchange(&xdecl("x2", "fanout", &a)).unwrap();
        let (q, _) = t.declare_queue(&qdecl("q", &a)).unwrap();
        t.bind_exchange("x2", "x1", "", &a).unwrap();
        t.bind_exchange("x1", "x2", "", &a).unwrap();
        t.bind_queue("q", "x1", "", &a).unwrap();
        t.bind_queue("q", "x2", "", &a).unwrap();
        assert_eq!(t.route("x1", &[""], None).unwrap().queues, vec![q.id]);
    }

    #[test]
    fn alternate_exchange_gets_unroutable() {
        let mut t = t();
        let a = none();
        let mut args = FieldTable::new();
        args.insert("alternate-exchange", FieldValue::str("ae"));
        t.declare_exchange(&xdecl("ae", "fanout", &a)).unwrap();
        t.declare_exchange(&xdecl("main", "direct", &args)).unwrap();
        let (q, _) = t.declare_queue(&qdecl("unrouted", &a)).unwrap();
        t.bind_queue("unrouted", "ae", "", &a).unwrap();
        assert_eq!(t.route("main", &["whatever"], None).unwrap().queues, vec![q.id]);
    }

    #[test]
    fn auto_delete_exchange_goes_with_last_binding() {
        let mut t = t();
        let a = none();
        let mut d = xdecl("ad", "direct", &a);
        d.auto_delete = true;
        t.declare_exchange(&d).unwrap();
        t.declare_queue(&qdecl("q", &a)).unwrap();
        t.bind_queue("q", "ad", "k", &a).unwrap();
        let (_, deleted) = t.delete_queue("q").unwrap();
        assert_eq!(deleted.exchanges, vec![ShortStr::from("ad")]);
        assert!(t.exchange("ad").is_none());
    }

    #[test]
    fn delete_exchange_if_unused_and_missing() {
        let mut t = t();
        let a = none();
        t.declare_exchange(&xdecl("x", "direct", &a)).unwrap();
        t.declare_queue(&qdecl("q", &a)).unwrap();
        t.bind_queue("q", "x", "k", &a).unwrap();
        assert_eq!(code(t.delete_exchange("x", true).unwrap_err()), 406);
        t.delete_exchange("x", false).unwrap();
        t.delete_exchange("x", false).unwrap();
        assert_eq!(code(t.delete_exchange("amq.direct", false).unwrap_err()), 403);
    }

    #[test]
    fn cc_keys_route() {
        let mut t = t();
        let a = none();
        let (q1, _) = t.declare_queue(&qdecl("a", &a)).unwrap();
        let (q2, _) = t.declare_queue(&qdecl("b", &a)).unwrap();
        t.bind_queue("a", "amq.direct", "ka", &a).unwrap();
        t.bind_queue("b", "amq.direct", "kb", &a).unwrap();
        assert_eq!(
            t.route("amq.direct", &["ka", "kb"], None).unwrap().queues,
            vec![q1.id, q2.id]
        );
    }

    #[test]
    fn consistent_hash_exchange_is_sticky_and_validates_weights() {
        let mut t = t();
        let a = none();
        t.declare_exchange(&xdecl("ch", "x-consistent-hash", &a)).unwrap();
        assert_eq!(t.exchange("ch").unwrap().kind.name(), "x-consistent-hash");
        let mut ids = Vec::new();
        for n in ["q1", "q2", "q3"] {
            ids.push(t.declare_queue(&qdecl(n, &a)).unwrap().0.id);
            t.bind_queue(n, "ch", "10", &a).unwrap();
        }
        assert_eq!(code(t.bind_queue("q1", "ch", "heavy", &a).unwrap_err()), 406);
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let k = format!("k{i}");
            let r = t.route("ch", &[k.as_str()], None).unwrap().queues;
            assert_eq!(r.len(), 1);
            assert_eq!(t.route("ch", &[k.as_str()], None).unwrap().queues, r);
            seen.insert(r[0]);
        }
        assert_eq!(seen.len(), 3, "every queue gets keys");
        // Unbinding takes the queue out of the hash.
        t.unbind_queue("q2", "ch", "10", &a).unwrap();
        for i in 0..300 {
            let k = format!("k{i}");
            assert_ne!(t.route("ch", &[k.as_str()], None).unwrap().queues, vec![ids[1]]);
        }
    }

    #[test]
    fn consistent_hash_on_header_and_property() {
        let mut t = t();
        let a = none();
        let mut bad = FieldTable::new();
        bad.insert("hash-property", FieldValue::str("body"));
        assert_eq!(
            code(
                t.declare_exchange(&xdecl("bad", "x-consistent-hash", &bad))
                    .unwrap_err()
            ),
            406
        );
        let mut hh = FieldTable::new();
        hh.insert("hash-header", FieldValue::str("user"));
        t.declare_exchange(&xdecl("byh", "x-consistent-hash", &hh))
            .unwrap();
        let mut hp = FieldTable::new();
        hp.insert("hash-property", FieldValue::str("correlation_id"));
        t.declare_exchange(&xdecl("byp", "x-consistent-hash", &hp))
            .unwrap();
        for n in ["q1", "q2", "q3", "q4"] {
            t.declare_queue(&qdecl(n, &a)).unwrap();
            t.bind_queue(n, "byh", "1", &a).unwrap();
            t.bind_queue(n, "byp", "1", &a).unwrap();
        }
        let mut h = FieldTable::new();
        h.insert("user", FieldValue::str("alice"));
        let first = t.route("byh", &["a"], Some(&h)).unwrap().queues;
        assert_eq!(first.len(), 1);
        for rk in ["b", "c", "d", "e"] {
            assert_eq!(t.route("byh", &[rk], Some(&h)).unwrap().queues, first);
        }
        assert!(
            t.route("byh", &["a"], None).unwrap().queues.is_empty(),
            "no header: unroutable"
        );
        let p = BasicProperties {
            correlation_id: Some("c-42".into()),
            ..Default::default()
        };
        let first = t.route_message("byp", &["x"], &p, 0).unwrap().queues;
        assert_eq!(first.len(), 1);
        for rk in ["y", "z"] {
            assert_eq!(t.route_message("byp", &[rk], &p, 0).unwrap().queues, first);
        }
    }

    #[test]
    fn random_exchange_spreads_over_bound_queues() {
        let mut t = t();
        let a = none();
        t.declare_exchange(&xdecl("rnd", "x-random", &a)).unwrap();
        assert!(t.route("rnd", &["k"], None).unwrap().queues.is_empty());
        for n in ["q1", "q2", "q3"] {
            t.declare_queue(&qdecl(n, &a)).unwrap();
            t.bind_queue(n, "rnd", "", &a).unwrap();
        }
        let mut counts: HashMap<QueueId, usize> = HashMap::default();
        for _ in 0..3000 {
            let r = t.route("rnd", &["k"], None).unwrap().queues;
            assert_eq!(r.len(), 1);
            *counts.entry(r[0]).or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|c| *c > 800), "{counts:?}");
    }

    #[test]
    fn exchange_deduplication_window() {
        let mut t = t();
        let a = none();
        let mut args = FieldTable::new();
        args.insert("x-deduplication-window", FieldValue::I32(100));
        t.declare_exchange(&xdecl("dx", "fanout", &args)).unwrap();
        let (q, _) = t.declare_queue(&qdecl("q", &a)).unwrap();
        t.bind_queue("q", "dx", "", &a).unwrap();
        let p = BasicProperties {
            message_id: Some("m1".into()),
            ..Default::default()
        };
        let r = t.route_message("dx", &[""], &p, 0).unwrap();
        assert_eq!((r.queues, r.duplicate), (vec![q.id], false));
        let r = t.route_message("dx", &[""], &p, 50).unwrap();
        assert!(r.queues.is_empty() && r.duplicate);
        let r = t.route_message("dx", &[""], &p, 100).unwrap();
        assert_eq!((r.queues, r.duplicate), (vec![q.id], false));
        let mut bad = FieldTable::new();
        bad.insert("x-deduplication-window", FieldValue::str("soon"));
        assert_eq!(
            code(t.declare_exchange(&xdecl("bad", "fanout", &bad)).unwrap_err()),
            406
        );
    }
}
