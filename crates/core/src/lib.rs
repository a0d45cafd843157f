//! # warren-core
//!
//! The broker's semantics as deterministic logic: no sockets, no clock of its own (callers
//! pass `now` in milliseconds), no task spawning. The server crate drives it.
//!
//! ## Layout
//! - [`topology`]: one vhost's exchanges, queues and bindings; declare/bind/delete rules with
//!   RabbitMQ's reply codes and texts; routing (default exchange, e2e bindings, alternate
//!   exchanges, CC/BCC).
//! - [`routing`]: the topic word trie and the headers matcher.
//! - [`queue`]: [`QueueState`](queue::QueueState), one queue's messages and consumers: FIFO
//!   and priorities, prefetch, ack/reject/requeue to the original position, delivery counts
//!   and limits, delayed retry, TTL, length limits.
//! - [`flow`]: credit flow, a queue's ingest credit for the connections publishing into it.
//! - [`dedup`]: publish deduplication windows (`x-deduplication-window`).
//! - [`deadletter`]: `x-death` and the dead-letter rewrite and cycle rule.
//! - [`args`]: queue arguments, their validation and redeclare equivalence.
//! - [`policy`]: policies (pattern, priority, definition) and a queue's effective arguments.
//! - [`message`]: the shared, immutable [`Message`](message::Message).
//! - [`error`]: [`AmqpError`](error::AmqpError), reply code + text + class/method.

pub mod args;
pub mod deadletter;
pub mod dedup;
pub mod error;
pub mod flow;
pub mod ids;
pub mod message;
pub mod policy;
pub mod queue;
pub mod quorum;
pub mod routing;
pub mod topology;

pub use error::{AmqpError, AmqpResult};
pub use message::{Message, MessageRef};
