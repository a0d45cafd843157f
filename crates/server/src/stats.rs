//! Broker-wide message counters (RabbitMQ's global counters), shared by the vhosts, queues
//! and connections that bump them and read by the metrics and overview endpoints.

use std::sync::atomic::AtomicU64;

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
    /// Messages dropped by a delivery limit with no dead-letter exchange.
    pub delivery_limit_dropped: AtomicU64,
    /// Publishes dropped as duplicates by a queue's or exchange's `x-deduplication-window`.
    pub duplicates_dropped: AtomicU64,
    /// Times a connection parked on a queue's credit (credit flow).
    pub flow_entered: AtomicU64,
}
