//! The `tx` class: tx.select, tx.commit and tx.rollback. A transactional channel buffers its
//! publishes, acks and rejects and applies them in order at commit (RabbitMQ's semantics:
//! atomic only in that nothing happens before the commit; a publish checks its exchange when
//! it arrives). An ack or reject takes its deliveries out of the channel's unacked ones when it
//! arrives, as RabbitMQ does: an unknown or already acknowledged tag fails at once (406), the
//! management API counts them as `acks_uncommitted` rather than unacknowledged, and a
//! rollback (or the channel closing) puts them back.

use std::sync::atomic::Ordering;

use warren_codec::methods::*;
use warren_core::queue::Return;
use warren_core::{AmqpError, AmqpResult, MessageRef};

use super::{Channel, Session, Unacked};

/// An operation buffered until tx.commit.
#[derive(Debug)]
pub(super) enum TxOp {
    Publish {
        msg: MessageRef,
        ttl: Option<u64>,
        mandatory: bool,
    },
    /// The deliveries a basic.ack named, already taken out of the unacked ones.
    Ack(Vec<Unacked>),
    /// The deliveries a basic.reject or basic.nack named, already taken out.
    Reject {
        taken: Vec<Unacked>,
        requeue: Option<Return>,
    },
}

/// A transaction's buffered operations, how many are publishes (RabbitMQ's
/// `messages_uncommitted`) and how many deliveries its acks name (`acks_uncommitted`).
#[derive(Debug, Default)]
pub(super) struct Tx {
    ops: Vec<TxOp>,
    publishes: u32,
    acks: u32,
    /// Deliveries held by acks and rejects (out of the channel's unacked ones).
    held: u32,
}

impl Tx {
    pub(super) fn push(&mut self, op: TxOp) {
        match &op {
            TxOp::Publish { .. } => self.publishes += 1,
            TxOp::Ack(taken) => {
                self.acks += taken.len() as u32;
                self.held += taken.len() as u32;
            }
            TxOp::Reject { taken, .. } => self.held += taken.len() as u32,
        }
        self.ops.push(op);
    }

    pub(super) fn publishes(&self) -> u32 {
        self.publishes
    }

    pub(super) fn acks(&self) -> u32 {
        self.acks
    }

    pub(super) fn held(&self) -> u32 {
        self.held
    }

    /// The deliveries the buffered acks and rejects took, dropping the rest.
    pub(super) fn into_held(self) -> impl Iterator<Item = Unacked> {
        self.ops.into_iter().flat_map(|op| match op {
            TxOp::Ack(taken) | TxOp::Reject { taken, .. } => taken,
            TxOp::Publish { .. } => Vec::new(),
        })
    }
}

impl Channel {
    pub(super) fn tx_select(&mut self, s: &mut Session) -> AmqpResult<()> {
        if self.confirms.is_some() {
            return Err(AmqpError::precondition("cannot switch from confirm to tx mode"));
        }
        if self.tx.is_none() {
            self.shared.transactional.store(true, Ordering::Relaxed);
            self.tx = Some(Tx::default());
        }
        s.send_method(self.id, TxSelectOk {});
        Ok(())
    }

    pub(super) fn tx_commit(&mut self, s: &mut Session) -> AmqpResult<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let ops = std::mem::take(tx).ops;
        for op in ops {
            match op {
                TxOp::Publish { msg, ttl, mandatory } => self.route_publish(s, msg, ttl, mandatory)?,
                TxOp::Ack(taken) => self.ack_taken(s, taken),
                TxOp::Reject { taken, requeue } => self.reject_taken(taken, requeue),
            }
        }
        s.send_method(self.id, TxCommitOk {});
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self, s: &mut Session) -> AmqpResult<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let tx = std::mem::take(tx);
        self.restore_unacked(tx.into_held());
        s.send_method(self.id, TxRollbackOk {});
        Ok(())
    }
}
