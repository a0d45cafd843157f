//! A live queue: `core::QueueState` behind one narrow mutex (never held across `.await`),
//! the consumers' delivery sinks, and the queue's timer (TTL, delayed retries).
//!
//! Whoever changes the queue — a publisher's connection, an acking consumer's connection, the
//! timer — runs `dispatch` under the same lock, so deliveries to each consumer leave in queue
//! order. Deliveries go to the consumer's connection mailbox; a consumer whose connection's
//! buffers are full is skipped and the queue registers itself to be woken when they drain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use warren_core::AmqpResult;
use warren_core::MessageRef;
use warren_core::deadletter::DeadReason;
use warren_core::queue::{
    ChannelKey, ConsumerKey, ConsumerSpec, Delivery, Effects, Published, QueueState, Return,
};
use warren_core::topology::QueueMeta;

use crate::broker::{VHost, now_ms};
use crate::connection::{ChannelShared, ConnShared};

/// Where a consumer's deliveries go.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The consumer's connection.
    pub conn: Arc<ConnShared>,
    /// Its channel's shared counters (channel-wide prefetch).
    pub channel: Arc<ChannelShared>,
}

#[derive(Debug)]
struct Inner {
    state: QueueState,
    sinks: HashMap<ConsumerKey, Sink>,
}

/// A queue handle, shared by every connection that uses the queue.
#[derive(Debug)]
pub struct Queue {
    /// Declared properties.
    pub meta: QueueMeta,
    vhost: Weak<VHost>,
    inner: Mutex<Inner>,
    deleted: AtomicBool,
    had_consumer: AtomicBool,
    /// When the timer task is due (ms, 0 = none scheduled).
    timer_at: AtomicU64,
    /// Counters for the management API.
    pub stats: QueueStats,
}

/// Per-queue message counters.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Messages enqueued.
    pub published: AtomicU64,
    /// Deliveries (consume and get).
    pub delivered: AtomicU64,
    /// Acks.
    pub acked: AtomicU64,
}

/// A snapshot of a queue's counts.
#[derive(Debug, Clone, Copy)]
pub struct QueueCounts {
    /// Ready messages.
    pub ready: u32,
    /// Unacknowledged deliveries.
    pub unacked: u32,
    /// Consumers.
    pub consumers: u32,
    /// Ready bytes.
    pub ready_bytes: u64,
}

impl Queue {
    /// A new queue handle.
    pub fn new(meta: QueueMeta, vhost: Weak<VHost>) -> Arc<Queue> {
        let state = QueueState::new(&meta.name, meta.args.clone());
        Arc::new(Queue {
            meta,
            vhost,
            inner: Mutex::new(Inner {
                state,
                sinks: HashMap::new(),
            }),
            deleted: AtomicBool::new(false),
            had_consumer: AtomicBool::new(false),
            timer_at: AtomicU64::new(0),
            stats: QueueStats::default(),
        })
    }

    /// Whether the queue was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Counts for declare-ok and the management API.
    pub fn counts(&self) -> QueueCounts {
        let i = self.inner.lock();
        QueueCounts {
            ready: i.state.message_count(),
            unacked: i.state.unacked_count(),
            consumers: i.state.consumer_count(),
            ready_bytes: i.state.ready_bytes(),
        }
    }

    /// Runs dispatch and sends the deliveries, under the lock.
    fn dispatch_locked(self: &Arc<Self>, inner: &mut Inner, now: u64, fx: &mut Effects) {
        let Inner { state, sinks } = inner;
        let me = Arc::downgrade(self);
        state.dispatch(
            now,
            |spec: &ConsumerSpec| {
                let Some(s) = sinks.get(&spec.key) else {
                    return false;
                };
                if !s.conn.has_room() {
                    s.conn.wait_for_room(me.clone());
                    return false;
                }
                if !spec.no_ack && !s.channel.try_reserve() {
                    s.channel.wait_for_room(me.clone());
                    return false;
                }
                s.conn.reserve();
                true
            },
            fx,
        );
        for d in fx.deliveries.drain(..) {
            self.send(sinks, d);
        }
    }

    fn send(self: &Arc<Self>, sinks: &HashMap<ConsumerKey, Sink>, d: Delivery) {
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        let Some(key) = d.consumer else { return };
        if let Some(s) = sinks.get(&key) {
            s.conn.deliver(self.clone(), d);
        }
    }

    /// Handles dead letters and timers after an operation, outside the lock.
    fn finish(self: &Arc<Self>, fx: Effects, deadline: Option<u64>, now: u64) {
        if fx.dropped_by_limit > 0 {
            tracing::warn!(queue = %self.meta.name, n = fx.dropped_by_limit,
                "messages exceeded x-delivery-limit and the queue has no dead-letter exchange; dropped");
            if let Some(v) = self.vhost.upgrade() {
                v.metrics
                    .delivery_limit_dropped
                    .fetch_add(fx.dropped_by_limit, Ordering::Relaxed);
            }
        }
        if !fx.dead_letters.is_empty()
            && let Some(v) = self.vhost.upgrade()
        {
            v.dead_letter(self, fx.dead_letters, now);
        }
        if let Some(at) = deadline {
            self.schedule(at);
        }
    }

    /// Arms the timer for `at` unless an earlier one is armed.
    fn schedule(self: &Arc<Self>, at: u64) {
        let cur = self.timer_at.load(Ordering::Acquire);
        if cur != 0 && cur <= at {
            return;
        }
        if self
            .timer_at
            .compare_exchange(cur, at, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let me = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            if let Some(q) = me.upgrade() {
                let _ = q
                    .timer_at
                    .compare_exchange(at, 0, Ordering::AcqRel, Ordering::Acquire);
                q.tick();
            }
        });
    }

    /// Timer work: due retries back to ready, expiries, then dispatch.
    pub fn tick(self: &Arc<Self>) {
        if self.is_deleted() {
            return;
        }
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.state.tick(now, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// Enqueues a message and dispatches.
    pub fn publish(self: &Arc<Self>, msg: MessageRef, ttl: Option<u64>, now: u64) -> Published {
        let (p, dead) = self.publish_collect(msg, ttl, now);
        if !dead.is_empty()
            && let Some(v) = self.vhost.upgrade()
        {
            v.dead_letter(self, dead, now);
        }
        p
    }

    /// Enqueues and dispatches, returning dead letters for the caller to route.
    pub fn publish_collect(
        self: &Arc<Self>,
        msg: MessageRef,
        ttl: Option<u64>,
        now: u64,
    ) -> (Published, Vec<(MessageRef, DeadReason)>) {
        if self.is_deleted() {
            return (Published::Enqueued, Vec::new());
        }
        let mut fx = Effects::default();
        let (p, deadline) = {
            let mut i = self.inner.lock();
            let p = i.state.publish(msg, now, ttl, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            (p, i.state.next_deadline())
        };
        if p == Published::Enqueued {
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        let dead = std::mem::take(&mut fx.dead_letters);
        self.finish(fx, deadline, now);
        (p, dead)
    }

    /// Runs dispatch (after room appeared on a connection or channel).
    pub fn dispatch(self: &Arc<Self>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// basic.consume: registers and dispatches.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec, sink: Sink, vhost: &str) -> AmqpResult<()> {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            let key = spec.key;
            i.state.add_consumer(spec, vhost)?;
            i.sinks.insert(key, sink);
            self.had_consumer.store(true, Ordering::Release);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
        Ok(())
    }

    /// basic.cancel / channel close: removes a consumer. Returns whether the queue is now an
    /// auto-delete queue that lost its last consumer (the caller deletes it).
    pub fn remove_consumer(self: &Arc<Self>, key: ConsumerKey) -> bool {
        let now = now_ms();
        let mut fx = Effects::default();
        let (left, deadline) = {
            let mut i = self.inner.lock();
            i.state.remove_consumer(key);
            i.sinks.remove(&key);
            // Single active consumer: the next one may take over.
            self.dispatch_locked(&mut i, now, &mut fx);
            (i.state.consumer_count(), i.state.next_deadline())
        };
        self.finish(fx, deadline, now);
        self.meta.auto_delete && left == 0 && self.had_consumer.load(Ordering::Acquire)
    }

    /// basic.get.
    pub fn get(self: &Arc<Self>, channel: ChannelKey, no_ack: bool) -> Option<(Delivery, u32)> {
        let now = now_ms();
        let mut fx = Effects::default();
        let (r, deadline) = {
            let mut i = self.inner.lock();
            let r = i.state.get(channel, no_ack, now, &mut fx);
            (r, i.state.next_deadline())
        };
        if r.is_some() {
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(fx, deadline, now);
        r
    }

    /// Acks several messages and dispatches once.
    pub fn ack(self: &Arc<Self>, seqs: &[u64]) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for s in seqs {
                if i.state.ack(*s) {
                    self.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// Rejects several messages (requeue or dead-letter) and dispatches once.
    pub fn reject(self: &Arc<Self>, seqs: &[u64], requeue: Option<Return>) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for s in seqs {
                i.state.reject(*s, requeue, now, &mut fx);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// Returns deliveries that never reached the client.
    pub fn unsend(self: &Arc<Self>, seqs: &[u64]) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            for s in seqs {
                i.state.unsend(*s);
            }
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// Requeues everything a channel holds unacked.
    pub fn release_channel(self: &Arc<Self>, channel: ChannelKey, how: Return) {
        let now = now_ms();
        let mut fx = Effects::default();
        let deadline = {
            let mut i = self.inner.lock();
            i.state.release_channel(channel, how, now, &mut fx);
            self.dispatch_locked(&mut i, now, &mut fx);
            i.state.next_deadline()
        };
        self.finish(fx, deadline, now);
    }

    /// queue.purge.
    pub fn purge(&self) -> u32 {
        self.inner.lock().state.purge()
    }

    /// Marks the queue deleted and cancels its consumers. Returns the ready count.
    pub fn mark_deleted(self: &Arc<Self>) -> u32 {
        self.deleted.store(true, Ordering::Release);
        let (count, sinks) = {
            let mut i = self.inner.lock();
            let count = i.state.message_count();
            let consumers: Vec<(ConsumerKey, ConsumerSpec)> =
                i.state.consumers().map(|c| (c.key, c.clone())).collect();
            for (k, _) in &consumers {
                i.state.remove_consumer(*k);
            }
            let sinks: Vec<(ConsumerSpec, Sink)> = consumers
                .into_iter()
                .filter_map(|(k, spec)| i.sinks.remove(&k).map(|s| (spec, s)))
                .collect();
            i.state.purge();
            (count, sinks)
        };
        for (spec, sink) in sinks {
            sink.conn
                .consumer_cancelled(spec.channel, spec.tag.clone(), spec.key);
        }
        count
    }
}
