//! The `tx` class: tx.select, tx.commit and tx.rollback. A transactional channel buffers its
//! publishes, acks and rejects and applies them in order at commit (RabbitMQ's semantics:
//! atomic only in that nothing happens before the commit; a publish checks its exchange when
//! it arrives).

use std::sync::atomic::Ordering;

use warren_codec::methods::*;
use warren_core::queue::Return;
use warren_core::{AmqpError, AmqpResult, MessageRef};

use super::{Channel, Session};

/// An operation buffered until tx.commit.
#[derive(Debug)]
pub(super) enum TxOp {
    Publish {
        msg: MessageRef,
        ttl: Option<u64>,
        mandatory: bool,
    },
    Ack {
        tag: u64,
        multiple: bool,
    },
    Reject {
        tag: u64,
        multiple: bool,
        requeue: Option<Return>,
    },
}

/// A transaction's buffered operations, and how many are publishes (RabbitMQ's
/// `messages_uncommitted`).
#[derive(Debug, Default)]
pub(super) struct Tx {
    ops: Vec<TxOp>,
    publishes: u32,
}

impl Tx {
    pub(super) fn push(&mut self, op: TxOp) {
        if matches!(op, TxOp::Publish { .. }) {
            self.publishes += 1;
        }
        self.ops.push(op);
    }

    pub(super) fn publishes(&self) -> u32 {
        self.publishes
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
                TxOp::Ack { tag, multiple } => self.ack(s, tag, multiple)?,
                TxOp::Reject {
                    tag,
                    multiple,
                    requeue,
                } => self.reject(tag, multiple, requeue)?,
            }
        }
        s.send_method(self.id, TxCommitOk {});
        Ok(())
    }

    pub(super) fn tx_rollback(&mut self, s: &mut Session) -> AmqpResult<()> {
        let Some(tx) = self.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        *tx = Tx::default();
        s.send_method(self.id, TxRollbackOk {});
        Ok(())
    }
}
