//! The replicated state of a quorum queue: what every replica of the queue's Raft group applies,
//! command by command in log order, so every replica holds the same messages with the same
//! delivery state.
//!
//! Deterministic and IO-free: [`QuorumState::apply`] depends only on the state and the command
//! (ids are assigned from a counter in the state, never from a clock or randomness), so the
//! same committed sequence gives the same state on every node. The leader's node serves
//! consumers from it; a new leader starts from it after failover.
//!
//! Commands (RabbitMQ's `rabbit_fifo` names in brackets):
//! - [`Command::Enqueue`] (`enqueue`): a message (the store's record bytes) gets the next id;
//! - [`Command::Deliver`] (`checkout`): messages handed to a consumer, now unacked;
//! - [`Command::Settle`] (`settle`, `discard`): acked, or rejected without requeue /
//!   dead-lettered: they leave the queue;
//! - [`Command::Return`] (`return`): requeued by the consumer; delivery count + 1;
//! - [`Command::ReleaseAll`]: a new leader takes over; every unacked message is ready again,
//!   flagged redelivered (its consumers were on the old leader's node);
//! - [`Command::Batch`]: several commands in one log entry (one Raft round for a batch of
//!   publishes and settlements), applied in order.

use std::collections::BTreeMap;

/// One command of a quorum queue's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A published message (the store's record of it).
    Enqueue(Vec<u8>),
    /// These messages were delivered to a consumer.
    Deliver(Vec<u64>),
    /// These messages were acked (or rejected without requeue, or dead-lettered).
    Settle(Vec<u64>),
    /// These messages were requeued.
    Return(Vec<u64>),
    /// Every delivered, unacked message is ready again (leader change).
    ReleaseAll,
    /// These commands in order (never nested).
    Batch(Vec<Command>),
}

/// One message of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The store's record of the message.
    pub record: Vec<u8>,
    /// Times it was requeued (`x-delivery-count`).
    pub delivery_count: u32,
    /// It was delivered at least once (the `redelivered` flag of its next delivery).
    pub redelivered: bool,
    /// Delivered and not yet settled or returned.
    pub unacked: bool,
}

/// The queue's replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumState {
    next_id: u64,
    messages: BTreeMap<u64, Message>,
}

const ENQUEUE: u8 = 1;
const DELIVER: u8 = 2;
const SETTLE: u8 = 3;
const RETURN: u8 = 4;
const RELEASE_ALL: u8 = 5;
const BATCH: u8 = 6;

impl Command {
    /// The command's bytes in the log: a tag byte, then the record, or ids as u64 LE.
    pub fn encode(&self) -> Vec<u8> {
        let ids = |tag: u8, ids: &[u64]| {
            let mut out = Vec::with_capacity(1 + 8 * ids.len());
            out.push(tag);
            for id in ids {
                out.extend_from_slice(&id.to_le_bytes());
            }
            out
        };
        match self {
            Command::Enqueue(r) => [&[ENQUEUE][..], r].concat(),
            Command::Deliver(v) => ids(DELIVER, v),
            Command::Settle(v) => ids(SETTLE, v),
            Command::Return(v) => ids(RETURN, v),
            Command::ReleaseAll => vec![RELEASE_ALL],
            Command::Batch(cmds) => {
                let mut out = vec![BATCH];
                for c in cmds {
                    let b = c.encode();
                    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
                    out.extend_from_slice(&b);
                }
                out
            }
        }
    }

    /// Decodes [`Command::encode`]'s bytes; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Command> {
        let (&tag, rest) = b.split_first()?;
        let ids = || -> Option<Vec<u64>> {
            if rest.len() % 8 != 0 {
                return None;
            }
            Some(
                rest.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
        match tag {
            ENQUEUE => Some(Command::Enqueue(rest.to_vec())),
            DELIVER => ids().map(Command::Deliver),
            SETTLE => ids().map(Command::Settle),
            RETURN => ids().map(Command::Return),
            RELEASE_ALL if rest.is_empty() => Some(Command::ReleaseAll),
            BATCH => {
                let mut cmds = Vec::new();
                let mut b = rest;
                while !b.is_empty() {
                    let (len, tail) = b.split_at_checked(8)?;
                    let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
                    let (one, tail) = tail.split_at_checked(len)?;
                    match Command::decode(one)? {
                        Command::Batch(_) => return None,
                        c => cmds.push(c),
                    }
                    b = tail;
                }
                Some(Command::Batch(cmds))
            }
            _ => None,
        }
    }
}

impl QuorumState {
    /// Applies one committed command; returns the id an `Enqueue` assigned, or for a `Batch`
    /// the id its first `Enqueue` got (its enqueues get consecutive ids), 0 otherwise.
    /// Ids that name no message (settled already, or never) are ignored, as a retried command
    /// must be harmless.
    pub fn apply(&mut self, cmd: &Command) -> u64 {
        match cmd {
            Command::Batch(cmds) => {
                let first = self.next_id + 1;
                for c in cmds {
                    self.apply(c);
                }
                return first;
            }
            Command::Enqueue(record) => {
                self.next_id += 1;
                let m = Message {
                    record: record.clone(),
                    delivery_count: 0,
                    redelivered: false,
                    unacked: false,
                };
                self.messages.insert(self.next_id, m);
                return self.next_id;
            }
            Command::Deliver(ids) => self.each(ids, |m| m.unacked = true),
            Command::Settle(ids) => {
                for id in ids {
                    self.messages.remove(id);
                }
            }
            Command::Return(ids) => self.each(ids, |m| {
                m.unacked = false;
                m.redelivered = true;
                m.delivery_count = m.delivery_count.saturating_add(1);
            }),
            Command::ReleaseAll => {
                for m in self.messages.values_mut().filter(|m| m.unacked) {
                    m.unacked = false;
                    m.redelivered = true;
                }
            }
        }
        0
    }

    /// Every message (ready and unacked) in queue order, with its id.
    pub fn messages(&self) -> impl Iterator<Item = (u64, &Message)> {
        self.messages.iter().map(|(id, m)| (*id, m))
    }

    fn each(&mut self, ids: &[u64], f: impl Fn(&mut Message)) {
        for id in ids {
            if let Some(m) = self.messages.get_mut(id) {
                f(m);
            }
        }
    }

    /// Messages in the queue (ready and unacked).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// No messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Ready messages (not unacked), in queue order (enqueue order).
    pub fn ready(&self) -> impl Iterator<Item = (u64, &Message)> {
        self.messages
            .iter()
            .filter(|(_, m)| !m.unacked)
            .map(|(id, m)| (*id, m))
    }

    /// Unacked messages, by id.
    pub fn unacked(&self) -> impl Iterator<Item = (u64, &Message)> {
        self.messages
            .iter()
            .filter(|(_, m)| m.unacked)
            .map(|(id, m)| (*id, m))
    }

    /// The whole state as bytes (a snapshot): next id, then per message its id, flags,
    /// delivery count and record, all little-endian with lengths.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next_id.to_le_bytes());
        for (id, m) in &self.messages {
            out.extend_from_slice(&id.to_le_bytes());
            out.push(u8::from(m.redelivered) | u8::from(m.unacked) << 1);
            out.extend_from_slice(&m.delivery_count.to_le_bytes());
            out.extend_from_slice(&(m.record.len() as u64).to_le_bytes());
            out.extend_from_slice(&m.record);
        }
        out
    }

    /// Decodes [`QuorumState::encode`]'s bytes; `None` if they are damaged.
    pub fn decode(mut b: &[u8]) -> Option<QuorumState> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Some(head)
        }
        let u64_of = |b: &mut &[u8]| take(b, 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
        let mut s = QuorumState {
            next_id: u64_of(&mut b)?,
            messages: BTreeMap::new(),
        };
        while !b.is_empty() {
            let id = u64_of(&mut b)?;
            let flags = take(&mut b, 1)?[0];
            let count = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?);
            let len = usize::try_from(u64_of(&mut b)?).ok()?;
            let record = take(&mut b, len)?.to_vec();
            let m = Message {
                record,
                delivery_count: count,
                redelivered: flags & 1 != 0,
                unacked: flags & 2 != 0,
            };
            s.messages.insert(id, m);
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence() -> Vec<Command> {
        let mut cmds: Vec<Command> = (0..10)
            .map(|i| Command::Enqueue(format!("m{i}").into_bytes()))
            .collect();
        cmds.push(Command::Deliver(vec![1, 2, 3, 4]));
        cmds.push(Command::Settle(vec![1]));
        cmds.push(Command::Return(vec![2]));
        cmds.push(Command::Deliver(vec![2, 5]));
        cmds.push(Command::Settle(vec![1, 99]));
        cmds.push(Command::ReleaseAll);
        cmds.push(Command::Enqueue(b"late".to_vec()));
        cmds
    }

    #[test]
    fn replicas_applying_the_same_log_hold_the_same_state() {
        // Three replicas; one gets the commands through their encoding, as from the log.
        let mut replicas = vec![QuorumState::default(); 3];
        for cmd in sequence() {
            let bytes = cmd.encode();
            let a = replicas[0].apply(&cmd);
            let b = replicas[1].apply(&Command::decode(&bytes).expect("decodes"));
            let c = replicas[2].apply(&cmd);
            assert_eq!((a, b), (c, c));
        }
        assert_eq!(replicas[0], replicas[1]);
        assert_eq!(replicas[1], replicas[2]);
        let s = &replicas[0];
        // 11 enqueued, 1 settled.
        assert_eq!(s.len(), 10);
        assert_eq!(s.unacked().count(), 0, "ReleaseAll readied every unacked message");
        let ready: Vec<(u64, bool, u32)> = s
            .ready()
            .map(|(id, m)| (id, m.redelivered, m.delivery_count))
            .collect();
        // 2 was returned (count 1) and delivered again; 3, 4, 5 delivered then released.
        assert_eq!(ready[0], (2, true, 1));
        assert_eq!(ready[1], (3, true, 0));
        assert_eq!(ready[3], (5, true, 0));
        assert_eq!(ready[4], (6, false, 0));
        assert_eq!(ready.last(), Some(&(11, false, 0)));
    }

    #[test]
    fn a_snapshot_restores_the_same_state_and_damage_is_refused() {
        let mut s = QuorumState::default();
        for cmd in sequence().iter().take(14) {
            s.apply(cmd);
        }
        let bytes = s.encode();
        assert_eq!(QuorumState::decode(&bytes), Some(s.clone()));
        for cut in [1, 7, 9, bytes.len() - 1] {
            assert_eq!(QuorumState::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Command::decode(&[]), None);
        assert_eq!(Command::decode(&[DELIVER, 1, 2]), None);
        assert_eq!(Command::decode(&[77]), None);
        let nested = Command::Batch(vec![Command::Batch(vec![])]).encode();
        assert_eq!(Command::decode(&nested), None);
        assert_eq!(Command::decode(&[BATCH, 9, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }

    #[test]
    fn a_batch_applies_in_order_and_answers_its_first_enqueue_id() {
        let mut s = QuorumState::default();
        s.apply(&Command::Enqueue(b"a".to_vec()));
        let batch = Command::Batch(vec![
            Command::Deliver(vec![1]),
            Command::Enqueue(b"b".to_vec()),
            Command::Settle(vec![1]),
            Command::Enqueue(b"c".to_vec()),
        ]);
        let decoded = Command::decode(&batch.encode()).expect("decodes");
        assert_eq!(decoded, batch);
        assert_eq!(s.apply(&decoded), 2);
        let ids: Vec<(u64, &[u8])> = s.messages().map(|(id, m)| (id, &m.record[..])).collect();
        assert_eq!(ids, vec![(2, &b"b"[..]), (3, &b"c"[..])]);
    }
}
