//! The connection-level state every channel of a connection works with: the broker and the
//! open vhost, the authenticated user and the cache of their permissions, the buffer frames
//! are encoded into, the durable queues written in this read batch and the group-commit batch
//! a confirm waits for, and the queues whose credit a publish took.
//!
//! [`crate::connection::Connection`] owns one `Session` next to its channels and hands it to
//! each [`crate::channel::Channel`] call; a test builds one without a socket
//! ([`Session::new`]) and reads what the channel encoded from [`Session::out`].
//!
//! Permission checks (issue 11) sit here because they are per connection: a session caches its
//! permissions on its vhost together with the user database's generation; every check is one
//! atomic load plus, on the publish hot path, one lookup in a map of exchange name → decision.

use foldhash::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use warren_codec::{MethodArgs, ShortStr, encode_method};
use warren_core::{AmqpError, AmqpResult};

use crate::access::{Resource, refused, resource_name};
use crate::auth::{Access, Permission, TopicPermission};
use crate::broker::Broker;
use crate::mailbox::ConnShared;
use crate::queue::Queue;
use crate::vhost::VHost;

/// A session's cached permissions on its vhost.
#[derive(Debug, Default)]
pub struct PermCache {
    generation: u64,
    loaded: bool,
    perm: Option<Permission>,
    /// Exchange name → may publish; bounded.
    publish: HashMap<ShortStr, bool>,
    /// The exchange of the last allowed publish (the hot path: one string comparison).
    last_publish: Option<ShortStr>,
    /// The user's topic permissions on the vhost (usually none: then topic checks cost one
    /// `is_empty`).
    topic: Vec<TopicPermission>,
}

const PUBLISH_CACHE_MAX: usize = 1024;

/// A channel's topology change waiting for the cluster to commit it (a clustered node only):
/// the connection stops processing input (its other channels' too) until `work` completes,
/// but goes on delivering, sending heartbeats and handling events; no lock is held meanwhile.
pub struct Pending {
    /// The channel.
    pub channel: u16,
    /// The method's class and method ids (for the error's close).
    pub ids: (u16, u16),
    /// Proposes and waits ([`crate::clustering::define`]).
    pub work:
        std::pin::Pin<Box<dyn std::future::Future<Output = AmqpResult<crate::clustering::Outcome>> + Send>>,
    /// Answers the client once committed (the method's `-ok`, unless nowait).
    pub done: Box<dyn FnOnce(&mut Session, crate::clustering::Outcome) + Send>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending(channel {})", self.channel)
    }
}

/// What the channels of one connection share (see the module comment).
#[derive(Debug)]
pub struct Session {
    /// A topology change a channel proposed to the cluster, waiting for its commit.
    pub pending: Option<Pending>,
    /// The broker.
    pub broker: Arc<Broker>,
    /// The part of the connection other tasks may touch (its mailbox, listing facts).
    pub shared: Arc<ConnShared>,
    /// Encoded frames not yet handed to the writer.
    pub out: BytesMut,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// The vhost opened by connection.open.
    pub vhost: Option<Arc<VHost>>,
    /// The authenticated user.
    pub user: String,
    /// Cached permissions on the vhost.
    perm_cache: PermCache,
    /// The connection has published (alarms block publishers only).
    pub publisher: bool,
    /// A confirm waits for the current sync batch.
    pub sync_wanted: bool,
    /// Id of the sync batch being filled.
    pub sync_batch: u64,
    /// Durable queues written since the last flush.
    pub dirty: Vec<Arc<Queue>>,
    /// Queues whose last credit a publish took since the connection last looked (credit flow).
    pub out_of_credit: Vec<Arc<Queue>>,
    /// Forwarding links (to other cluster nodes) the last command's publishes filled past
    /// their bound: the connection parks on them as on `out_of_credit`.
    pub out_of_link_credit: Vec<Arc<crate::forward::LinkCredit>>,
    /// Wall-clock milliseconds when the connection started processing its current input
    /// batch: the enqueue time of every message published in it. Read once per batch (what one
    /// socket read brought), not once per message: the clock read cost 3–4% of a publish.
    pub clock_ms: u64,
}

impl Session {
    /// A session of the connection behind `shared`, not yet on a vhost.
    pub fn new(broker: Arc<Broker>, shared: Arc<ConnShared>) -> Session {
        Session {
            pending: None,
            frame_max: broker.config.frame_max,
            broker,
            shared,
            out: BytesMut::with_capacity(64 * 1024),
            clock_ms: crate::util::now_ms(),
            vhost: None,
            user: String::new(),
            perm_cache: PermCache::default(),
            publisher: false,
            sync_wanted: false,
            sync_batch: 1,
            dirty: Vec::new(),
            out_of_credit: Vec::new(),
            out_of_link_credit: Vec::new(),
        }
    }

    /// The open vhost (504 before connection.open).
    pub fn vhost(&self) -> AmqpResult<Arc<VHost>> {
        self.vhost
            .clone()
            .ok_or_else(|| AmqpError::channel_error("connection not open"))
    }

    /// Encodes a method frame into the write buffer.
    pub fn send_method(&mut self, channel: u16, m: impl MethodArgs) {
        encode_method(&mut self.out, channel, &m);
    }

    /// Encodes a content-bearing method (`basic.deliver`, `basic.return`) with `msg`'s header
    /// and body frames into the write buffer.
    pub fn send_content(&mut self, channel: u16, m: impl MethodArgs, msg: &warren_core::Message) {
        encode_method(&mut self.out, channel, &m);
        warren_codec::encode_basic_header(&mut self.out, channel, msg.body.len() as u64, &msg.properties);
        warren_codec::encode_body(&mut self.out, channel, &msg.body, self.frame_max);
    }

    /// Remembers a durable queue written in this batch (flushed and synced by the connection).
    pub fn mark_dirty(&mut self, q: Arc<Queue>) {
        if !self.dirty.iter().any(|d| Arc::ptr_eq(d, &q)) {
            self.dirty.push(q);
        }
    }

    /// A queue the connection may use (exists, not another connection's exclusive queue).
    pub fn queue_for_use(&self, name: &str) -> AmqpResult<Arc<Queue>> {
        self.vhost()?.queue_for_use(name, self.shared.id)
    }

    fn perms_fresh(&mut self) -> Option<&Permission> {
        let generation = self.broker.users.generation();
        if !self.perm_cache.loaded || self.perm_cache.generation != generation {
            let vhost = self.vhost.as_ref().map(|v| v.name.as_str()).unwrap_or("");
            self.perm_cache = PermCache {
                generation,
                loaded: true,
                perm: self.broker.users.permission(&self.user, vhost),
                publish: HashMap::default(),
                last_publish: None,
                topic: self.broker.users.topic_permissions_of(&self.user, vhost),
            };
        }
        self.perm_cache.perm.as_ref()
    }

    /// Checks `access` to a queue or exchange of the session's vhost (403 if refused).
    pub fn check_access(&mut self, kind: Resource, name: &str, access: Access) -> AmqpResult<()> {
        let ok = self
            .perms_fresh()
            .is_some_and(|p| p.allows(access, resource_name(kind, name)));
        if ok {
            Ok(())
        } else {
            let vhost = self.vhost.as_ref().map(|v| v.name.clone()).unwrap_or_default();
            Err(refused(kind, name, &vhost, &self.user))
        }
    }

    /// `write` on the exchange a message is published to, cached per exchange name.
    pub fn check_publish(&mut self, exchange: &ShortStr) -> AmqpResult<()> {
        self.perms_fresh();
        if self.perm_cache.last_publish.as_ref() == Some(exchange) {
            return Ok(());
        }
        if let Some(&ok) = self.perm_cache.publish.get(exchange) {
            return if ok {
                self.perm_cache.last_publish = Some(exchange.clone());
                Ok(())
            } else {
                self.check_access(Resource::Exchange, exchange, Access::Write)
            };
        }
        let r = self.check_access(Resource::Exchange, exchange, Access::Write);
        if self.perm_cache.publish.len() >= PUBLISH_CACHE_MAX {
            self.perm_cache.publish.clear();
        }
        self.perm_cache.publish.insert(exchange.clone(), r.is_ok());
        r
    }

    /// RabbitMQ's topic authorisation: `access` on routing (or binding) key `key` of
    /// `exchange`, checked only when the user has a topic permission for that exchange on the
    /// vhost and the exchange is a topic exchange (403 otherwise).
    /// The caller refreshed the cache.
    fn check_topic(&mut self, exchange: &str, keys: &[&str], access: Access) -> AmqpResult<()> {
        if self.perm_cache.topic.is_empty() {
            return Ok(());
        }
        let Some(i) = self.perm_cache.topic.iter().position(|p| p.exchange == exchange) else {
            return Ok(());
        };
        let Some(v) = self.vhost.clone() else {
            return Ok(());
        };
        let is_topic = v.read_topology(|t| {
            t.exchange(exchange)
                .is_some_and(|x| x.kind == warren_core::topology::ExchangeKind::Topic)
        });
        if !is_topic {
            return Ok(());
        }
        let p = &self.perm_cache.topic[i];
        match keys.iter().find(|k| !p.allows(access, k)) {
            None => Ok(()),
            Some(k) => Err(AmqpError::access_refused(format!(
                "{} access to topic '{k}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
                if access == Access::Read { "read" } else { "write" },
                v.name,
                self.user
            ))),
        }
    }

    /// Topic `write` on every routing key of a message published to its exchange (the routing
    /// key and any `CC`/`BCC` keys, as RabbitMQ's `check_write_permitted_on_topics`). Called
    /// right after [`Session::check_publish`], which refreshed the cache.
    pub fn check_topic_publish(&mut self, msg: &warren_core::Message) -> AmqpResult<()> {
        if self.perm_cache.topic.is_empty() {
            return Ok(());
        }
        if msg.header("CC").is_some() || msg.header("BCC").is_some() {
            let keys = msg.routing_keys();
            let refs: Vec<&str> = keys.iter().map(|k| &**k).collect();
            self.check_topic(&msg.exchange, &refs, Access::Write)
        } else {
            self.check_topic(&msg.exchange, &[&msg.routing_key], Access::Write)
        }
    }

    /// Topic `read` on the binding key of a binding from `exchange`.
    pub fn check_topic_bind(&mut self, exchange: &str, key: &str) -> AmqpResult<()> {
        self.perms_fresh();
        self.check_topic(exchange, &[key], Access::Read)
    }

    /// As RabbitMQ: a `user_id` property must name the connection's user, unless that user has
    /// the `impersonator` tag (406 PRECONDITION_FAILED, channel closed).
    pub fn check_user_id(&self, user_id: Option<&str>) -> AmqpResult<()> {
        match user_id {
            Some(u)
                if u != self.user
                    && !self
                        .broker
                        .users
                        .get(&self.user)
                        .is_some_and(|x| x.tags.iter().any(|t| t == "impersonator")) =>
            {
                Err(AmqpError::precondition(format!(
                    "user_id property set to '{u}' but authenticated user was '{}'",
                    self.user
                )))
            }
            _ => Ok(()),
        }
    }
}
