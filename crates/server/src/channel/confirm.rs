//! The `confirm` class: confirm.select, and the publisher confirms of a channel in confirm
//! mode. Confirms leave in publish order: a transient message's ack waits behind an earlier
//! persistent one still being synced, so a `multiple` ack never covers an unsynced message;
//! a run of acks goes out as one `basic.ack(multiple)`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use warren_codec::Method;
use warren_codec::methods::*;
use warren_core::{AmqpError, AmqpResult};

use super::{Channel, Session};

/// A publisher confirm not yet sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirm {
    Ack,
    Nack,
    /// Waits for the group-commit sync with this batch id.
    Sync(u64),
    /// Waits for the verdicts of `nodes` other cluster nodes the message was forwarded to
    /// ([`crate::forward`]), and for the group-commit sync `sync` if one is due.
    Remote {
        nodes: u32,
        failed: bool,
        sync: Option<u64>,
    },
}

/// The confirms of a channel in confirm mode, in publish order.
#[derive(Debug, Default)]
pub(super) struct Confirms {
    next: u64,
    pending: VecDeque<(u64, Confirm)>,
}

impl Confirms {
    /// Takes the next publish sequence number.
    pub(super) fn next_seq(&mut self) -> u64 {
        let s = self.next;
        self.next += 1;
        s
    }

    /// Records how publish `seq` is to be confirmed.
    pub(super) fn push(&mut self, seq: u64, state: Confirm) {
        self.pending.push_back((seq, state));
    }
}

impl Channel {
    pub(super) fn confirm_select(&mut self, s: &mut Session, m: ConfirmSelect) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::precondition("cannot switch from tx to confirm mode"));
        }
        if self.confirms.is_none() {
            self.shared.confirm.store(true, Ordering::Relaxed);
            self.confirms = Some(Confirms {
                next: 1,
                pending: VecDeque::new(),
            });
        }
        if !m.nowait {
            s.send_method(self.id, ConfirmSelectOk {});
        }
        Ok(())
    }

    /// A group-commit sync finished: confirms waiting for batches up to `batch` can go.
    pub fn synced(&mut self, batch: u64, ok: bool) {
        if let Some(cf) = self.confirms.as_mut() {
            for (_, st) in cf.pending.iter_mut() {
                match st {
                    Confirm::Sync(b) if *b <= batch => *st = if ok { Confirm::Ack } else { Confirm::Nack },
                    Confirm::Remote { failed, sync, .. } if sync.is_some_and(|b| b <= batch) => {
                        *sync = None;
                        *failed |= !ok;
                    }
                    _ => {}
                }
            }
        }
    }

    /// A node the message published as `seq` was forwarded to gave its verdict.
    pub fn forwarded(&mut self, seq: u64, ok: bool) {
        let Some(cf) = self.confirms.as_mut() else {
            return;
        };
        let Ok(i) = cf.pending.binary_search_by_key(&seq, |(s, _)| *s) else {
            return;
        };
        if let Confirm::Remote { nodes, failed, sync } = &mut cf.pending[i].1 {
            *nodes = nodes.saturating_sub(1);
            *failed |= !ok;
            if *nodes == 0 {
                cf.pending[i].1 = match (*failed, *sync) {
                    (true, _) => Confirm::Nack,
                    (false, Some(b)) => Confirm::Sync(b),
                    (false, None) => Confirm::Ack,
                };
            }
        }
    }

    /// Whether confirms are ready to be sent (the front one is not waiting for a sync).
    pub fn confirms_ready(&self) -> bool {
        self.confirms.as_ref().is_some_and(|cf| {
            cf.pending
                .front()
                .is_some_and(|(_, st)| !matches!(st, Confirm::Sync(_) | Confirm::Remote { .. }))
        })
    }

    /// Shows the management API this channel's unconfirmed and uncommitted publishes and acks
    /// ([`crate::mailbox::ChannelShared`]): called once per read batch, it stores only what
    /// changed.
    pub fn publish_pending_counts(&self) {
        let unconfirmed = self.confirms.as_ref().map_or(0, |cf| cf.pending.len() as u32);
        let uncommitted = self.tx.as_ref().map_or(0, |tx| tx.publishes());
        let acks_uncommitted = self.tx.as_ref().map_or(0, |tx| tx.acks());
        let held = self.tx.as_ref().map_or(0, |tx| tx.held());
        for (shown, now) in [
            (&self.shared.unconfirmed, unconfirmed),
            (&self.shared.uncommitted, uncommitted),
            (&self.shared.acks_uncommitted, acks_uncommitted),
            (&self.shared.held_by_tx, held),
        ] {
            if shown.load(Ordering::Relaxed) != now {
                shown.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Encodes the coalesced publisher-confirm acks (and nacks) that are ready, in order.
    pub fn flush_confirms(&mut self, s: &mut Session) {
        let Some(cf) = self.confirms.as_mut() else {
            return;
        };
        // Every seq before the front was already confirmed, so a run of acks a..=b is one
        // `basic.ack(b, multiple = b > a)`.
        let mut frames: Vec<Method> = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        while let Some(&(seq, st)) = cf.pending.front() {
            match st {
                Confirm::Sync(_) | Confirm::Remote { .. } => break,
                Confirm::Ack => {
                    s.broker.metrics.confirmed.fetch_add(1, Ordering::Relaxed);
                    run = Some(match run {
                        Some((a, _)) => (a, seq),
                        None => (seq, seq),
                    });
                }
                Confirm::Nack => {
                    if let Some((a, b)) = run.take() {
                        frames.push(
                            BasicAck {
                                delivery_tag: b,
                                multiple: b > a,
                            }
                            .into(),
                        );
                    }
                    frames.push(
                        BasicNack {
                            delivery_tag: seq,
                            multiple: false,
                            requeue: false,
                        }
                        .into(),
                    );
                }
            }
            cf.pending.pop_front();
        }
        if let Some((a, b)) = run {
            frames.push(
                BasicAck {
                    delivery_tag: b,
                    multiple: b > a,
                }
                .into(),
            );
        }
        for f in frames {
            s.send_method(self.id, f);
        }
    }
}
