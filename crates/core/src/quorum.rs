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
//!
//! Where a message's record is kept is each replica's own choice ([`Bodies`]): in memory, or
//! in a file of its own ([`Body::Stored`]) once its queue's backlog outgrows memory. That
//! choice is not replicated state; a snapshot always carries the records themselves.

use std::collections::BTreeMap;

use bytes::Bytes;

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

/// Where a replica keeps a message's record (see [`Bodies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// In memory.
    Held(Vec<u8>),
    /// In the replica's own files, where its [`Bodies`] put it (opaque here).
    Stored {
        /// The file.
        segment: u32,
        /// Where in it.
        offset: u64,
        /// The record's length.
        len: u32,
        /// Where the keeper finds the record again should this copy fail (opaque here).
        origin: u64,
    },
}

impl Body {
    /// The record's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Held(r) => r.len() as u64,
            Body::Stored { len, .. } => u64::from(*len),
        }
    }

    /// An empty record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A replica's keeper of message records: the replicated state says which messages exist,
/// the keeper where their bytes are.
pub trait Bodies {
    /// A message was enqueued: keep its record.
    fn keep(&mut self, record: Vec<u8>) -> Body;
    /// A message left the queue: its record is no longer needed.
    fn release(&mut self, body: Body);
    /// Message `id`'s kept record's bytes (`None` if they cannot be read back).
    fn read(&mut self, id: u64, body: &Body) -> Option<Bytes>;
}

/// Keeps every record in memory.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemory;

impl Bodies for InMemory {
    fn keep(&mut self, record: Vec<u8>) -> Body {
        Body::Held(record)
    }

    fn release(&mut self, _: Body) {}

    fn read(&mut self, _: u64, body: &Body) -> Option<Bytes> {
        match body {
            Body::Held(r) => Some(Bytes::copy_from_slice(r)),
            Body::Stored { .. } => None,
        }
    }
}

/// One message of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The store's record of the message, where this replica keeps it.
    pub record: Body,
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

    /// The record of the command's `nth` enqueue (0-based; a batch's enqueues in order): what
    /// a replica reads back from its log when its own copy of a record fails.
    pub fn enqueued(&self, nth: usize) -> Option<&[u8]> {
        match self {
            Command::Enqueue(r) if nth == 0 => Some(r),
            Command::Batch(cmds) => cmds
                .iter()
                .filter_map(|c| match c {
                    Command::Enqueue(r) => Some(r.as_slice()),
                    _ => None,
                })
                .nth(nth),
            _ => None,
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
    /// Applies one committed command, its records kept by `bodies`; returns the id an
    /// `Enqueue` assigned, or for a `Batch` the id its first `Enqueue` got (its enqueues get
    /// consecutive ids), 0 otherwise. Ids that name no message (settled already, or never)
    /// are ignored, as a retried command must be harmless.
    pub fn apply(&mut self, cmd: Command, bodies: &mut impl Bodies) -> u64 {
        match cmd {
            Command::Batch(cmds) => {
                let first = self.next_id + 1;
                for c in cmds {
                    self.apply(c, bodies);
                }
                return first;
            }
            Command::Enqueue(record) => {
                self.next_id += 1;
                let m = Message {
                    record: bodies.keep(record),
                    delivery_count: 0,
                    redelivered: false,
                    unacked: false,
                };
                self.messages.insert(self.next_id, m);
                return self.next_id;
            }
            Command::Deliver(ids) => self.each(&ids, |m| m.unacked = true),
            Command::Settle(ids) => {
                for id in ids {
                    if let Some(m) = self.messages.remove(&id) {
                        bodies.release(m.record);
                    }
                }
            }
            Command::Return(ids) => self.each(&ids, |m| {
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

    /// Whether message `id` is in the queue (ready or unacked).
    pub fn contains(&self, id: u64) -> bool {
        self.messages.contains_key(&id)
    }

    /// Messages (ready and unacked) from id `from` on, in queue order.
    pub fn messages_from(&self, from: u64) -> impl Iterator<Item = (u64, &Message)> {
        self.messages.range(from..).map(|(id, m)| (*id, m))
    }

    /// Every message leaves this state (it is being replaced): their records are released.
    pub fn release_all(&mut self, bodies: &mut impl Bodies) {
        for m in std::mem::take(&mut self.messages).into_values() {
            bodies.release(m.record);
        }
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
    /// delivery count and record (read from `bodies`), all little-endian with lengths.
    /// A record that cannot be read is written empty (and its message is dropped, as an
    /// undecodable record, by whoever serves from the snapshot); the ids of those are
    /// returned with the bytes.
    pub fn encode(&self, bodies: &mut impl Bodies) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        out.extend_from_slice(&self.next_id.to_le_bytes());
        for (id, m) in &self.messages {
            out.extend_from_slice(&id.to_le_bytes());
            out.push(u8::from(m.redelivered) | u8::from(m.unacked) << 1);
            out.extend_from_slice(&m.delivery_count.to_le_bytes());
            let read;
            let record: &[u8] = match &m.record {
                Body::Held(r) => r,
                stored => {
                    read = bodies.read(*id, stored);
                    match &read {
                        Some(r) => r,
                        None => {
                            unreadable.push(*id);
                            &[]
                        }
                    }
                }
            };
            out.extend_from_slice(&(record.len() as u64).to_le_bytes());
            out.extend_from_slice(record);
        }
        (out, unreadable)
    }

    /// Decodes [`QuorumState::encode`]'s bytes, the records kept by `bodies`; `None` if they
    /// are damaged (what was kept of them is released again).
    pub fn decode(b: &[u8], bodies: &mut impl Bodies) -> Option<QuorumState> {
        let mut s = QuorumState::default();
        if s.decode_into(b, bodies).is_none() {
            s.release_all(bodies);
            return None;
        }
        Some(s)
    }

    fn decode_into(&mut self, b: &[u8], bodies: &mut impl Bodies) -> Option<()> {
        let mut r = SnapshotReader::new(b)?;
        self.next_id = r.next_id;
        while let Some((id, flags, count, record)) = r.next()? {
            let m = Message {
                record: bodies.keep(record.to_vec()),
                delivery_count: count,
                redelivered: flags & 1 != 0,
                unacked: flags & 2 != 0,
            };
            if let Some(old) = self.messages.insert(id, m) {
                bodies.release(old.record);
            }
        }
        Some(())
    }
}

/// A snapshot's records by message id, found in one pass over [`QuorumState::encode`]'s bytes:
/// what a replica reads back from when its own copies of records fail (many lookups, one
/// decode). Records before a damaged part are still found.
#[derive(Debug)]
pub struct SnapshotRecords {
    bytes: Vec<u8>,
    /// (id, start, length) of each record, by id.
    index: Vec<(u64, usize, usize)>,
}

impl SnapshotRecords {
    /// Indexes snapshot bytes; `None` if not even their header can be read.
    pub fn new(bytes: Vec<u8>) -> Option<SnapshotRecords> {
        let mut index = Vec::new();
        let mut r = SnapshotReader::new(&bytes)?;
        while let Some(Some((id, _, _, record))) = r.next() {
            let start = record.as_ptr() as usize - bytes.as_ptr() as usize;
            index.push((id, start, record.len()));
        }
        // Written in id order; a damaged or hand-made snapshot may not be.
        index.sort_by_key(|(id, _, _)| *id);
        Some(SnapshotRecords { bytes, index })
    }

    /// Message `id`'s record, if the snapshot holds it.
    pub fn get(&self, id: u64) -> Option<&[u8]> {
        let i = self.index.binary_search_by_key(&id, |(id, _, _)| *id).ok()?;
        let (_, start, len) = self.index[i];
        self.bytes.get(start..start + len)
    }
}

/// Reads [`QuorumState::encode`]'s bytes message by message.
struct SnapshotReader<'a> {
    next_id: u64,
    rest: &'a [u8],
}

impl<'a> SnapshotReader<'a> {
    fn new(mut b: &'a [u8]) -> Option<SnapshotReader<'a>> {
        let next_id = Self::u64_of(&mut b)?;
        Some(SnapshotReader { next_id, rest: b })
    }

    fn take(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }

    fn u64_of(b: &mut &'a [u8]) -> Option<u64> {
        Self::take(b, 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    }

    /// The next message's id, flags, delivery count and record; `Some(None)` at the end,
    /// `None` if the bytes are damaged.
    #[allow(clippy::type_complexity)]
    fn next(&mut self) -> Option<Option<(u64, u8, u32, &'a [u8])>> {
        if self.rest.is_empty() {
            return Some(None);
        }
        let b = &mut self.rest;
        let id = Self::u64_of(b)?;
        let flags = Self::take(b, 1)?[0];
        let count = u32::from_le_bytes(Self::take(b, 4)?.try_into().ok()?);
        let len = usize::try_from(Self::u64_of(b)?).ok()?;
        Some(Some((id, flags, count, Self::take(b, len)?)))
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
            let a = replicas[0].apply(cmd.clone(), &mut InMemory);
            let b = replicas[1].apply(Command::decode(&bytes).expect("decodes"), &mut InMemory);
            let c = replicas[2].apply(cmd, &mut InMemory);
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
        for cmd in sequence().into_iter().take(14) {
            s.apply(cmd, &mut InMemory);
        }
        let (bytes, unreadable) = s.encode(&mut InMemory);
        assert!(unreadable.is_empty());
        assert_eq!(QuorumState::decode(&bytes, &mut InMemory), Some(s.clone()));
        for cut in [1, 7, 9, bytes.len() - 1] {
            assert_eq!(
                QuorumState::decode(&bytes[..cut], &mut InMemory),
                None,
                "cut at {cut}"
            );
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
        s.apply(Command::Enqueue(b"a".to_vec()), &mut InMemory);
        let batch = Command::Batch(vec![
            Command::Deliver(vec![1]),
            Command::Enqueue(b"b".to_vec()),
            Command::Settle(vec![1]),
            Command::Enqueue(b"c".to_vec()),
        ]);
        let decoded = Command::decode(&batch.encode()).expect("decodes");
        assert_eq!(decoded, batch);
        assert_eq!(s.apply(decoded, &mut InMemory), 2);
        let ids: Vec<(u64, Option<Bytes>)> = s
            .messages()
            .map(|(id, m)| (id, InMemory.read(id, &m.record)))
            .collect();
        assert_eq!(
            ids,
            vec![
                (2, Some(Bytes::from_static(b"b"))),
                (3, Some(Bytes::from_static(b"c")))
            ]
        );
    }

    /// Keeps records longer than 1 byte "on disk" (a vector), and can lose them.
    #[derive(Default)]
    struct Disk {
        files: Vec<Option<Vec<u8>>>,
        released: Vec<u32>,
    }

    impl Bodies for Disk {
        fn keep(&mut self, record: Vec<u8>) -> Body {
            if record.len() <= 1 {
                return Body::Held(record);
            }
            self.files.push(Some(record.clone()));
            Body::Stored {
                segment: (self.files.len() - 1) as u32,
                offset: 0,
                len: record.len() as u32,
                origin: 0,
            }
        }
        fn release(&mut self, body: Body) {
            if let Body::Stored { segment, .. } = body {
                self.released.push(segment);
            }
        }
        fn read(&mut self, _: u64, body: &Body) -> Option<Bytes> {
            match body {
                Body::Held(r) => Some(Bytes::copy_from_slice(r)),
                Body::Stored { segment, .. } => self.files[*segment as usize].clone().map(Bytes::from),
            }
        }
    }

    #[test]
    fn records_kept_elsewhere_are_released_when_settled_and_read_into_snapshots() {
        let mut disk = Disk::default();
        let mut s = QuorumState::default();
        for r in [&b"a"[..], b"bb", b"cc", b"dd"] {
            s.apply(Command::Enqueue(r.to_vec()), &mut disk);
        }
        assert_eq!(s.messages().nth(1).map(|(_, m)| m.record.len()), Some(2));
        s.apply(Command::Settle(vec![2, 1]), &mut disk);
        assert_eq!(disk.released, vec![0], "only the stored record is released");
        // A snapshot carries the records themselves; an unreadable one is written empty.
        disk.files[2] = None;
        let (bytes, unreadable) = s.encode(&mut disk);
        assert_eq!(unreadable, vec![4]);
        let back = QuorumState::decode(&bytes, &mut InMemory).expect("decodes");
        let records: Vec<(u64, Option<Bytes>)> = back
            .messages()
            .map(|(id, m)| (id, InMemory.read(id, &m.record)))
            .collect();
        assert_eq!(
            records,
            vec![(3, Some(Bytes::from_static(b"cc"))), (4, Some(Bytes::new()))]
        );
        let mut all = QuorumState::decode(&bytes, &mut disk).expect("decodes");
        assert_eq!(
            all.messages_from(4).map(|(id, _)| id).collect::<Vec<_>>(),
            vec![4]
        );
        let before = disk.released.len();
        all.release_all(&mut disk);
        assert_eq!(
            disk.released.len(),
            before + 1,
            "the one stored record of the two"
        );
        assert!(all.is_empty());
    }

    #[test]
    fn a_record_is_found_again_in_its_command_and_in_a_snapshot() {
        let batch = Command::Batch(vec![
            Command::Enqueue(b"x".to_vec()),
            Command::Settle(vec![7]),
            Command::Enqueue(b"y".to_vec()),
        ]);
        assert_eq!(batch.enqueued(0), Some(&b"x"[..]));
        assert_eq!(batch.enqueued(1), Some(&b"y"[..]));
        assert_eq!(batch.enqueued(2), None);
        assert_eq!(Command::Enqueue(b"z".to_vec()).enqueued(0), Some(&b"z"[..]));
        assert_eq!(Command::Settle(vec![1]).enqueued(0), None);

        let mut s = QuorumState::default();
        s.apply(batch, &mut InMemory);
        s.apply(Command::Enqueue(b"zz".to_vec()), &mut InMemory);
        let (bytes, _) = s.encode(&mut InMemory);
        let snap = SnapshotRecords::new(bytes.clone()).unwrap();
        assert_eq!(snap.get(1), Some(&b"x"[..]));
        assert_eq!(snap.get(2), Some(&b"y"[..]));
        assert_eq!(snap.get(3), Some(&b"zz"[..]));
        assert_eq!(snap.get(9), None);
        // A damaged tail loses its record only.
        let cut = SnapshotRecords::new(bytes[..bytes.len() - 1].to_vec()).unwrap();
        assert_eq!((cut.get(2), cut.get(3)), (Some(&b"y"[..]), None));
        assert!(SnapshotRecords::new(vec![1, 2, 3]).is_none());
    }
}
