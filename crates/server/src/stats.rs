//! Broker-wide message counters (RabbitMQ's global counters), shared by the vhosts, queues
//! and connections that bump them and read by the metrics and overview endpoints.

use std::sync::atomic::{AtomicU64, Ordering};

/// Broker-wide message counters (RabbitMQ's global counters).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages received from publishers.
    pub published: AtomicU64,
    /// Messages that reached no queue.
    pub unroutable: AtomicU64,
    /// Deliveries to consumers and basic.get.
    pub delivered: AtomicU64,
    /// Acknowledgements.
    pub acked: AtomicU64,
    /// Redeliveries.
    pub redelivered: AtomicU64,
    /// Dead-lettered messages by reason (rejected, expired, maxlen, delivery_limit).
    pub dead_lettered: [AtomicU64; 4],
    /// Messages dropped because their dead-letter exchange does not exist.
    pub dead_letter_dropped: AtomicU64,
    /// Copies of unconfirmed messages for queues of another node that could not be forwarded
    /// (the node unreachable, or it refused them).
    pub forward_dropped: AtomicU64,
    /// Messages dropped by a delivery limit with no dead-letter exchange.
    pub delivery_limit_dropped: AtomicU64,
    /// Publishes dropped as duplicates by a queue's or exchange's `x-deduplication-window`.
    pub duplicates_dropped: AtomicU64,
    /// Times a connection parked on a queue's credit (credit flow).
    pub flow_entered: AtomicU64,
    /// The rest feed the Prometheus families of [`crate::http::prometheus`] (RabbitMQ's
    /// connection churn and global counters). Connections accepted.
    pub connections_opened: AtomicU64,
    /// Connections ended.
    pub connections_closed: AtomicU64,
    /// Channels opened.
    pub channels_opened: AtomicU64,
    /// Channels closed.
    pub channels_closed: AtomicU64,
    /// Successful queue.declare (passive and existing queues included), created, deleted.
    pub queues_declared: AtomicU64,
    /// Queues created.
    pub queues_created: AtomicU64,
    /// Queues deleted (any reason).
    pub queues_deleted: AtomicU64,
    /// Messages received on channels in confirm mode.
    pub received_confirm: AtomicU64,
    /// Messages routed to at least one queue.
    pub routed: AtomicU64,
    /// Enqueues (one per queue a message reached).
    pub enqueued: AtomicU64,
    /// Unroutable mandatory messages returned.
    pub unroutable_returned: AtomicU64,
    /// Publisher confirms (basic.ack) sent, one per message.
    pub confirmed: AtomicU64,
    /// Deliveries by basic.consume with manual, automatic ack; by basic.get manual, automatic.
    pub delivered_by: [AtomicU64; 4],
    /// basic.get that found the queue empty.
    pub get_empty: AtomicU64,
    /// Channels that have published (a gauge).
    pub publishers: AtomicU64,
}

/// Indexes of [`Metrics::delivered_by`].
pub const CONSUME_MANUAL: usize = 0;
/// basic.consume with no_ack.
pub const CONSUME_AUTO: usize = 1;
/// basic.get with manual ack.
pub const GET_MANUAL: usize = 2;
/// basic.get with no_ack.
pub const GET_AUTO: usize = 3;

impl Metrics {
    /// Counts a channel released: closed (unless an error already closed it) and no longer a
    /// publisher.
    pub fn channel_released(&self, closing: bool, was_publisher: bool) {
        if !closing {
            self.channels_closed.fetch_add(1, Ordering::Relaxed);
        }
        if was_publisher {
            self.publishers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Counts one routed publish: confirm mode, queues reached.
    pub fn count_routed(&self, confirm: bool, enqueued: usize) {
        if confirm {
            self.received_confirm.fetch_add(1, Ordering::Relaxed);
        }
        if enqueued > 0 {
            self.routed.fetch_add(1, Ordering::Relaxed);
            self.enqueued.fetch_add(enqueued as u64, Ordering::Relaxed);
        }
    }
}
