//! One AMQP connection: the protocol header, the start/tune/open handshake with SASL, the
//! read loop (every complete frame in the buffer is decoded per read), heartbeats both ways,
//! connection-level errors and close, and the writer task that writes each batch of encoded
//! frames with one `write_all`.
//!
//! The connection task owns its [`Session`] (what its channels share) and the map of its
//! channels ([`crate::channel`]): it opens them, hands each complete command to its channel,
//! and closes a channel on `channel.close` or a soft error. Queues reach it through its mailbox
//! ([`crate::mailbox`]); credit flow (parking on queues out of credit) and resource alarms
//! (`connection.blocked`) stop it reading its socket.

use foldhash::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use warren_codec::frame::{HEARTBEAT_FRAME, PROTOCOL_HEADER};
use warren_codec::methods::*;
use warren_codec::{
    Assembled, FieldTable, FieldValue, Frame, Method, ProtocolHeader, ReplyCode, ShortStr,
    classify_protocol_header, decode_frame,
};
use warren_core::ids::{ChannelKey, ConnId};
use warren_core::queue::Delivery;
use warren_core::{AmqpError, AmqpResult};

use crate::broker::Broker;
use crate::channel::Channel;
use crate::mailbox::{ConnEvent, ConnShared, HARD_WRITE_BACKLOG};
use crate::queue::Queue;
use crate::session::Session;

/// Input bytes a connection task handles before it yields its worker to other connections
/// (a flooding publisher must not hold the core that its consumers' acks wait for).
const INPUT_PER_TURN: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok, discarding everything else.
    Closing,
    /// The client sent connection.close and we answered close-ok: what it still sends is read
    /// and discarded until it closes the socket (or [`Connection::closing_timeout`] passes),
    /// so our end never closes with unread data (which would reset the connection).
    Draining,
    Done,
}

/// Capabilities the client announced in start-ok.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    /// `basic.cancel` on queue deletion.
    pub consumer_cancel_notify: bool,
    /// `connection.blocked`.
    pub connection_blocked: bool,
    /// 403 close on auth failure.
    pub authentication_failure_close: bool,
}

/// A connection task's state.
#[derive(Debug)]
pub struct Connection {
    /// What the channels share: broker, vhost, user, the write buffer, sync batches.
    pub(crate) session: Session,
    peer: SocketAddr,
    phase: Phase,
    writer: Option<mpsc::UnboundedSender<Bytes>>,
    channel_max: u16,
    heartbeat: u16,
    pub(crate) channels: HashMap<u16, Channel>,
    pub(crate) caps: ClientCaps,
    last_recv: Instant,
    last_send: Instant,
    started: Instant,
    closing_since: Option<Instant>,
    /// Blocked by an alarm since.
    blocked: Option<Instant>,
    /// The write backlog has been over [`HARD_WRITE_BACKLOG`] since.
    stalled: Option<Instant>,
    /// SASL EXTERNAL: the login name from the client's verified TLS certificate.
    cert_login: Option<CertLogin>,
    /// Why the connection ended, for the close log line (empty: the socket closed).
    close_reason: String,
    /// Credit flow: queues whose last credit this connection's publishes took; while any is
    /// out of credit the connection does not read its client (TCP back-pressure).
    pub(crate) flow: Vec<Arc<Queue>>,
    /// Forwarding links to other cluster nodes over their byte bound that this connection's
    /// publishes fed; parked on like `flow`.
    link_flow: Vec<Arc<crate::forward::LinkCredit>>,
    /// When the earliest of those queues grants a fresh window anyway (slow consumers).
    flow_wake: Option<Instant>,
    /// `process_input` stopped with frames left in the read buffer (write backlog, flow).
    input_held: bool,
}

/// What a TLS client's verified certificate yields for SASL EXTERNAL (RabbitMQ's
/// rabbitmq_auth_mechanism_ssl): the login name, or why none could be taken from it. A
/// connection without one (plain TCP, or TLS without a client certificate) is not offered
/// EXTERNAL.
pub type CertLogin = Result<String, String>;

/// Accepts connections until `shutdown` turns true; then waits for connections to close.
pub async fn serve(broker: Arc<Broker>, listener: tokio::net::TcpListener, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let b = broker.clone();
                    let s = shutdown.clone();
                    tasks.spawn(async move { handle(b, stream, peer, s).await });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Serves one client socket.
pub async fn handle(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // TCP keeps its lock-free owned halves; other streams (TLS) go through tokio::io::split.
    let (rd, wr) = stream.into_split();
    handle_split(broker, rd, wr, peer, shutdown, None).await
}

/// Serves one client over any byte stream (plain TCP halves, TLS); `cert_login` is what the
/// TLS client's certificate yields for EXTERNAL (`None`: EXTERNAL is not offered).
pub async fn handle_split<R, W>(
    broker: Arc<Broker>,
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    cert_login: Option<CertLogin>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut header = [0u8; 8];
    match tokio::time::timeout(broker.config.handshake_timeout, rd.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => return,
    }
    if classify_protocol_header(&header) != ProtocolHeader::Amqp091 {
        tracing::debug!(%peer, "unsupported protocol header {:?}", header);
        let _ = wr.write_all(&PROTOCOL_HEADER).await;
        let _ = wr.shutdown().await;
        return;
    }
    let (shared, mut rx) = ConnShared::new(ConnId(broker.next_id()), Some(peer));
    let (wtx, wrx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(wr, wrx, shared.clone()));
    let now = Instant::now();
    let mut conn = Connection {
        session: Session::new(broker, shared),
        peer,
        phase: Phase::AwaitStartOk,
        writer: Some(wtx),
        channel_max: 0,
        heartbeat: 0,
        channels: HashMap::default(),
        caps: ClientCaps::default(),
        last_recv: now,
        last_send: now,
        started: now,
        closing_since: None,
        blocked: None,
        stalled: None,
        cert_login,
        close_reason: String::new(),
        flow: Vec::new(),
        link_flow: Vec::new(),
        flow_wake: None,
        input_held: false,
    };
    conn.session.broker.register(conn.session.shared.clone());
    conn.send_start();
    conn.flush();
    // A bug in a handler must cost this connection only: its cleanup (consumers removed,
    // unacked and in-flight messages returned, exclusive queues deleted) runs on every exit
    // path, a panic included, and other clients never notice.
    let ran = AssertUnwindSafe(conn.run(&mut rd, &mut rx, &mut shutdown))
        .catch_unwind()
        .await;
    if let Err(panic) = ran {
        let what = panic_text(&*panic);
        tracing::error!(peer = %conn.peer, "connection task failed: {what}; releasing what it held");
        conn.close_reason = format!("internal error: {what}");
        conn.phase = Phase::Done;
    }
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| conn.cleanup(&mut rx))) {
        tracing::error!(peer = %conn.peer, "connection cleanup failed: {}", panic_text(&*panic));
    }
    conn.session.broker.unregister(conn.session.shared.id);
    conn.log_closed();
    if conn.phase == Phase::Draining {
        conn.drain_input(&mut rd).await;
    }
    drop(conn.writer.take());
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// The message of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<ConnShared>,
) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        for b in batch.drain(..) {
            if wr.write_all(&b).await.is_err() {
                return;
            }
            shared.octets[1].fetch_add(b.len() as u64, Ordering::Relaxed);
            let before = shared.backlog.fetch_sub(b.len(), Ordering::AcqRel);
            if before >= HARD_WRITE_BACKLOG && before - b.len() < HARD_WRITE_BACKLOG {
                shared.drained.notify_one();
            }
        }
        shared.wake();
    }
    let _ = wr.shutdown().await;
}

fn table(entries: Vec<(&str, FieldValue)>) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(k, v);
    }
    t
}

impl Connection {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        rx: &mut mpsc::UnboundedReceiver<ConnEvent>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut events = Vec::with_capacity(256);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutting_down = *shutdown.borrow();
        if shutting_down {
            self.close_forced();
        }
        let mut alarms = self.session.broker.alarms.subscribe();
        let shared = self.session.shared.clone();
        // The slow-consumer grace of the queues parked on (reset when parking).
        let flow_sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(flow_sleep);
        let mut flow_armed: Option<Instant> = None;
        let mut waiting: Option<crate::session::Pending> = None;
        while !matches!(self.phase, Phase::Done | Phase::Draining) {
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(64 * 1024);
            }
            // A client that does not read what we send is not read either (so nothing it
            // asks for can pile up here) until the writer drains.
            let backed_up = shared.backlog.load(Ordering::Acquire) >= HARD_WRITE_BACKLOG;
            // Parked on a queue's credit (credit flow): input waits in the socket.
            let in_flow = self.parked() && self.phase == Phase::Open;
            // A blocked publisher is not read (TCP backpressure) until the alarm clears.
            // A channel waits for the cluster to commit its topology change: input waits too
            // (so the channel's later methods see the change), everything else goes on.
            if waiting.is_none() {
                waiting = self.session.pending.take();
            }
            let reading = (self.blocked.is_none() || matches!(self.phase, Phase::Closing))
                && !backed_up
                && !in_flow
                && waiting.is_none();
            // Input left in the buffer when processing stopped (backlog, flow) goes first once
            // that condition is gone: the client may have sent everything already, and the
            // socket would never wake us for it.
            if reading && self.input_held {
                self.process_input(&mut rbuf);
                self.flush();
                continue;
            }
            if in_flow && flow_armed != self.flow_wake {
                flow_armed = self.flow_wake;
                if let Some(at) = flow_armed {
                    flow_sleep.as_mut().reset(at.into());
                }
            }
            let mut read_bytes = 0;
            tokio::select! {
                _ = shared.drained.notified(), if backed_up => self.process_input(&mut rbuf),
                _ = shared.flow_notify.notified(), if in_flow => self.resume_flow(&mut rbuf),
                _ = &mut flow_sleep, if in_flow && flow_armed.is_some() => {
                    flow_armed = None;
                    self.resume_flow(&mut rbuf);
                }
                r = rd.read_buf(&mut rbuf), if reading => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        read_bytes = n;
                        self.session.shared.octets[0].fetch_add(n as u64, Ordering::Relaxed);
                        self.last_recv = Instant::now();
                        self.process_input(&mut rbuf);
                        if self.session.publisher && self.blocked.is_none() {
                            let state = self.session.broker.alarms.current();
                            if state.any() {
                                self.block(state);
                            }
                        }
                    }
                },
                r = alarms.changed() => {
                    if r.is_ok() {
                        let state = *alarms.borrow_and_update();
                        match (state.any(), self.blocked.is_some()) {
                            (true, false) if self.session.publisher => self.block(state),
                            (false, true) => self.unblock(),
                            _ => {}
                        }
                    }
                }
                n = rx.recv_many(&mut events, 256) => {
                    if n == 0 { break; }
                    for e in events.drain(..) {
                        self.handle_event(e);
                    }
                }
                r = async {
                    match waiting.as_mut() {
                        Some(p) => p.work.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(p) = waiting.take() {
                        self.finish_pending(p, r);
                    }
                }
                _ = tick.tick() => self.on_tick(),
                r = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    if r.is_ok() { self.close_forced(); }
                }
            }
            self.flush();
            // Fairness: after a full read the client has more waiting; let every other
            // connection on this worker (consumers' acks, deliveries) run before reading again.
            if read_bytes >= INPUT_PER_TURN {
                tokio::task::yield_now().await;
            }
        }
        self.flush();
    }

    /// A channel's topology change is committed (its `-ok` sent) or failed (the channel or,
    /// for a hard error, the connection closed); held input is processed next.
    fn finish_pending(&mut self, p: crate::session::Pending, r: AmqpResult<crate::clustering::Outcome>) {
        let open = self.channels.get(&p.channel).is_some_and(|c| c.is_open());
        match r {
            Ok(outcome) if open => (p.done)(&mut self.session, outcome),
            Ok(_) => {}
            Err(e) if e.is_hard() => self.close_connection(e.with_method(p.ids.0, p.ids.1)),
            Err(e) if open => self.channel_error(p.channel, e.with_method(p.ids.0, p.ids.1)),
            Err(_) => {}
        }
        self.input_held = true;
    }

    /// Parks this connection on `queues` (each out of credit after its publish). Those that
    /// have credit again by now are dropped; if none is left the connection goes on.
    pub(crate) fn enter_flow(&mut self, queues: Vec<Arc<Queue>>) {
        for q in queues {
            if !self.flow.iter().any(|f| Arc::ptr_eq(f, &q)) {
                self.flow.push(q);
            }
        }
        self.check_flow();
    }

    /// Parked on a queue's credit or a forwarding link's.
    fn parked(&self) -> bool {
        !self.flow.is_empty() || !self.link_flow.is_empty()
    }

    /// Re-checks the queues and links parked on; true when the connection may read again.
    fn check_flow(&mut self) -> bool {
        let now = crate::util::now_ms();
        let shared = self.session.shared.clone();
        let mut wake_ms: Option<u64> = None;
        self.flow.retain(|q| match q.flow_park(&shared, now) {
            None => false,
            Some(at) => {
                wake_ms = Some(wake_ms.map_or(at, |w| w.min(at)));
                true
            }
        });
        self.link_flow.retain(|l| l.park(&shared));
        let was = self.session.shared.in_flow.load(Ordering::Acquire);
        let is = self.parked();
        if was != is {
            self.session.shared.in_flow.store(is, Ordering::Release);
            self.session.shared.flow_at_ms.store(now, Ordering::Release);
            if is {
                self.session
                    .broker
                    .metrics
                    .flow_entered
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flow_wake = wake_ms.map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now)));
        !is
    }

    /// A parked-on queue has credit again, or its grace period passed: go on with the input
    /// already buffered once every one of them has.
    fn resume_flow(&mut self, rbuf: &mut BytesMut) {
        if self.check_flow() {
            // Silence while parked was ours, not the client's.
            self.last_recv = Instant::now();
            self.process_input(rbuf);
        }
    }

    /// Stops reading a publishing connection while an alarm is up, telling the client.
    fn block(&mut self, state: crate::alarms::AlarmState) {
        self.blocked = Some(Instant::now());
        if self.caps.connection_blocked && self.phase == Phase::Open {
            self.send_method(
                0,
                ConnectionBlocked {
                    reason: ShortStr::from(state.reason()),
                },
            );
        }
        tracing::info!(peer = %self.peer, reason = state.reason(), "connection blocked");
    }

    /// Resumes reading after the alarm cleared.
    fn unblock(&mut self) {
        self.blocked = None;
        // Silence while blocked was ours, not the client's.
        self.last_recv = Instant::now();
        if self.caps.connection_blocked && self.phase == Phase::Open {
            self.send_method(0, ConnectionUnblocked {});
        }
        tracing::info!(peer = %self.peer, "connection unblocked");
    }

    fn close_forced(&mut self) {
        self.close_connection(AmqpError::new(
            ReplyCode::ConnectionForced,
            "broker forced connection closure with reason 'shutdown'",
        ));
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.session.shared.backlog.load(Ordering::Acquire) >= HARD_WRITE_BACKLOG {
            let since = *self.stalled.get_or_insert(now);
            // Its heartbeats wait unread in the socket: the stall timeout judges it instead.
            self.last_recv = now;
            if now.duration_since(since) > self.session.broker.config.write_stall_timeout {
                tracing::warn!(peer = %self.peer, "client does not read its socket; disconnecting");
                self.close_reason = "the client did not read its socket".into();
                self.phase = Phase::Done;
                return;
            }
        } else {
            self.stalled = None;
        }
        if self.phase == Phase::Open
            && let Some(timeout) = self.session.broker.config.consumer_timeout
        {
            self.check_consumer_timeouts(now, timeout);
        }
        // The handshake deadline also bounds a close started before the connection opened.
        if self.session.vhost.is_none()
            && now.duration_since(self.started) > self.session.broker.config.handshake_timeout
        {
            tracing::info!(peer = %self.peer, "handshake timeout; closing");
            self.phase = Phase::Done;
            return;
        }
        if self.phase != Phase::Open && self.phase != Phase::Closing {
            return;
        }
        if let Some(t) = self.closing_since
            && now.duration_since(t) > self.closing_timeout()
        {
            self.phase = Phase::Done;
            return;
        }
        if self.heartbeat > 0 {
            let hb = Duration::from_secs(self.heartbeat as u64);
            if self.blocked.is_some() || !self.flow.is_empty() {
                // We are not reading: the client's heartbeats wait in the socket.
                self.last_recv = now;
            }
            if now.duration_since(self.last_recv) > hb * 2 {
                tracing::info!(peer = %self.peer, "missed heartbeats from client, closing connection");
                self.close_reason = "missed heartbeats from the client".into();
                self.phase = Phase::Done;
                return;
            }
            if now.duration_since(self.last_send) >= hb / 2 && self.session.out.is_empty() {
                self.session.out.extend_from_slice(&HEARTBEAT_FRAME);
            }
        }
    }

    /// Sends everything encoded so far to the writer.
    pub(crate) fn flush(&mut self) {
        self.sync_dirty();
        self.flush_all_confirms();
        if self.session.out.is_empty() {
            return;
        }
        let chunk = self.session.out.split().freeze();
        self.last_send = Instant::now();
        if let Some(w) = &self.writer {
            self.session
                .shared
                .backlog
                .fetch_add(chunk.len(), Ordering::AcqRel);
            if w.send(chunk).is_err() {
                self.phase = Phase::Done;
            }
        }
        if self.session.out.capacity() < 16 * 1024 {
            self.session.out.reserve(64 * 1024);
        }
    }

    /// Pushes this batch's log writes to the OS and, if a confirm waits, asks for one group
    /// commit; the confirms go out when the syncer reports back (`ConnEvent::Synced`).
    fn sync_dirty(&mut self) {
        let mut flushed = true;
        for q in self.session.dirty.drain(..) {
            flushed &= q.flush_log();
        }
        if !self.session.sync_wanted {
            return;
        }
        self.session.sync_wanted = false;
        let batch = self.session.sync_batch;
        self.session.sync_batch += 1;
        if !flushed {
            // Some of this batch's records never reached the file: nack, whatever a later
            // sync pass (after the store recovers) would say.
            self.session
                .broker
                .alarms
                .raise_disk("the message store could not write a batch");
            self.synced(batch, false);
            return;
        }
        match &self.session.broker.persistence {
            Some(p) => {
                let tx = self.session.shared.tx.clone();
                p.syncer.request(Box::new(move |r| {
                    if let Err(e) = &r {
                        tracing::error!("group commit failed: {e}");
                    }
                    let _ = tx.send(ConnEvent::Synced { batch, ok: r.is_ok() });
                }));
            }
            None => self.synced(batch, true),
        }
    }

    fn process_input(&mut self, rbuf: &mut BytesMut) {
        self.input_held = false;
        self.session.clock_ms = crate::util::now_ms();
        loop {
            if matches!(self.phase, Phase::Done | Phase::Draining) {
                // What follows a connection.close is discarded, never acted on.
                rbuf.clear();
                return;
            }
            match decode_frame(rbuf, self.session.frame_max) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(frame) {
                        self.close_connection(e);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    rbuf.clear();
                    if self.phase == Phase::Closing {
                        self.phase = Phase::Done;
                    } else {
                        self.close_connection(e.into());
                    }
                    return;
                }
            }
            // Keep the write buffer from growing without bound on a long read batch.
            if self.session.out.len() > 256 * 1024 {
                self.flush();
            }
            // The client does not read what it asks for: leave the rest of its input
            // unprocessed until the writer drains (run() resumes on `drained`).
            if self.session.shared.backlog.load(Ordering::Acquire) >= HARD_WRITE_BACKLOG {
                self.input_held = true;
                return;
            }
            // Parked on a queue's credit: the rest waits (run() resumes on `flow_notify`).
            if self.parked() && self.phase == Phase::Open {
                self.input_held = true;
                return;
            }
            // A channel waits for a cluster commit: the rest waits (run() resumes after it).
            if self.session.pending.is_some() {
                self.input_held = true;
                return;
            }
        }
    }

    /// Sends connection.close for a hard error and waits for close-ok.
    pub(crate) fn close_connection(&mut self, e: AmqpError) {
        if matches!(self.phase, Phase::Closing | Phase::Done) {
            return;
        }
        tracing::info!(peer = %self.peer, "closing connection: {}", e.reply_text());
        self.close_reason = e.reply_text();
        self.send_method(
            0,
            ConnectionClose {
                reply_code: e.code.code(),
                reply_text: ShortStr::from(e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            },
        );
        self.phase = Phase::Closing;
        self.closing_since = Some(Instant::now());
        // RabbitMQ terminates the channels when it sends connection.close, not when close-ok
        // arrives: consumers are cancelled and unacked messages requeued at once, so a client
        // that never answers does not hold them for the closing timeout. Exclusive queues stay
        // until the connection ends.
        self.release_channels();
    }

    /// Encodes a method frame into the write buffer.
    pub(crate) fn send_method(&mut self, channel: u16, m: impl warren_codec::MethodArgs) {
        self.session.send_method(channel, m);
    }

    fn send_start(&mut self) {
        let caps = table(
            [
                "publisher_confirms",
                "exchange_exchange_bindings",
                "basic.nack",
                "consumer_cancel_notify",
                "connection.blocked",
                "consumer_priorities",
                "authentication_failure_close",
                "per_consumer_qos",
                "direct_reply_to",
            ]
            .into_iter()
            .map(|c| (c, FieldValue::Bool(true)))
            .collect(),
        );
        let props = table(vec![
            ("capabilities", FieldValue::Table(caps)),
            (
                "cluster_name",
                FieldValue::str(&self.session.broker.cluster_name()),
            ),
            ("copyright", FieldValue::str("Copyright (c) the Warren authors")),
            (
                "information",
                FieldValue::str("Warren, an AMQP 0-9-1 broker. Licensed under Apache-2.0"),
            ),
            ("platform", FieldValue::str("Rust")),
            ("product", FieldValue::str("Warren")),
            ("version", FieldValue::str(env!("CARGO_PKG_VERSION"))),
        ]);
        self.send_method(
            0,
            ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                // EXTERNAL only where it can work, as RabbitMQ's `should_offer`.
                mechanisms: if self.cert_login.is_some() {
                    Bytes::from_static(b"PLAIN AMQPLAIN EXTERNAL")
                } else {
                    Bytes::from_static(b"PLAIN AMQPLAIN")
                },
                locales: Bytes::from_static(b"en_US"),
            },
        );
    }

    fn handle_event(&mut self, e: ConnEvent) {
        match e {
            ConnEvent::Deliver { queue, delivery } => {
                self.session.shared.took_delivery();
                self.deliver(queue, delivery);
            }
            ConnEvent::ConsumerCancelled { channel, tag, key } => {
                let ch = channel.number();
                let notify = self.caps.consumer_cancel_notify;
                if let Some(c) = self.channels.get_mut(&ch)
                    && c.forget_consumer(&tag, key)
                    && notify
                    && c.is_open()
                {
                    self.send_method(
                        ch,
                        BasicCancel {
                            consumer_tag: tag,
                            nowait: true,
                        },
                    );
                }
            }
            ConnEvent::DirectReply { channel, tag, msg } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    c.deliver_reply(&mut self.session, tag, msg);
                }
            }
            ConnEvent::Synced { batch, ok } => self.synced(batch, ok),
            ConnEvent::RemoteDeliver { queue, delivery } => {
                let ch = delivery.channel.number();
                let Ok(queue) = queue.downcast::<crate::forward::RemoteQueue>() else {
                    return;
                };
                let queue = crate::forward::QueueRef::Remote(queue);
                match self.channels.get_mut(&ch) {
                    Some(c) => c.deliver(&mut self.session, queue, delivery),
                    None => queue.unsend(&delivery),
                }
            }
            ConnEvent::RemoteGot {
                queue,
                delivery,
                left,
            } => {
                let ch = delivery.channel.number();
                let Ok(queue) = queue.downcast::<crate::forward::RemoteQueue>() else {
                    return;
                };
                let queue = crate::forward::QueueRef::Remote(queue);
                match self.channels.get_mut(&ch) {
                    Some(c) if c.is_open() => c.get_ok(&mut self.session, queue, delivery, left),
                    _ => queue.unsend(&delivery),
                }
            }
            ConnEvent::Forwarded { channel, seq, ok } => {
                if let Some(c) = self.channels.get_mut(&channel) {
                    c.forwarded(seq, ok);
                }
            }
            ConnEvent::Close { code, text } => self.close_connection(AmqpError::new(code, text)),
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> AmqpResult<()> {
        if self.phase == Phase::Closing {
            // Only close / close-ok matter now.
            if let Frame::Method { channel: 0, method } = frame {
                match method {
                    Method::ConnectionCloseOk(_) => self.phase = Phase::Done,
                    // Both sides closed at once: answer, then wait for the client to go.
                    Method::ConnectionClose(_) => self.send_close_ok(),
                    _ => {}
                }
            }
            return Ok(());
        }
        match frame {
            Frame::Heartbeat { channel } => {
                if channel != 0 {
                    return Err(AmqpError::new(
                        ReplyCode::UnexpectedFrame,
                        "heartbeat frame on non-zero channel",
                    ));
                }
                Ok(())
            }
            Frame::Method { channel: 0, method } => self.connection_method(method),
            Frame::Header { channel: 0, .. } | Frame::Body { channel: 0, .. } => Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "content frame on channel 0",
            )),
            frame => {
                if self.phase != Phase::Open {
                    return Err(AmqpError::channel_error(format!(
                        "unexpected frame on channel {} before the connection is open",
                        frame.channel()
                    )));
                }
                self.channel_frame(frame)
            }
        }
    }

    fn connection_method(&mut self, method: Method) -> AmqpResult<()> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let r = match (self.phase, method) {
            (Phase::AwaitStartOk, Method::ConnectionStartOk(m)) => self.start_ok(*m),
            (Phase::AwaitTuneOk, Method::ConnectionTuneOk(m)) => self.tune_ok(m),
            (Phase::AwaitOpen, Method::ConnectionOpen(m)) => self.open(m),
            (_, Method::ConnectionClose(m)) => {
                self.close_reason =
                    format!("client sent connection.close ({} {})", m.reply_code, m.reply_text);
                // Channels and exclusive queues go before close-ok, as RabbitMQ does: a
                // client that reconnects after close-ok finds them gone.
                self.release_all();
                self.send_close_ok();
                Ok(())
            }
            (_, Method::ConnectionCloseOk(_)) => {
                self.phase = Phase::Done;
                Ok(())
            }
            (Phase::Open, Method::ConnectionUpdateSecret(_)) => {
                self.send_method(0, ConnectionUpdateSecretOk {});
                Ok(())
            }
            (_, m) if m.class_id() == 10 => Err(AmqpError::channel_error(format!(
                "unexpected method in connection state {:?}: {}",
                self.phase,
                m.name()
            ))),
            (_, m) => Err(AmqpError::command_invalid(format!(
                "unexpected method on channel 0: {}",
                m.name()
            ))),
        };
        r.map_err(|e| e.with_method(class_id, method_id))
    }

    fn start_ok(&mut self, m: ConnectionStartOk) -> AmqpResult<()> {
        if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
            let cap = |k: &str| matches!(caps.get(k), Some(FieldValue::Bool(true)));
            self.caps = ClientCaps {
                consumer_cancel_notify: cap("consumer_cancel_notify"),
                connection_blocked: cap("connection.blocked"),
                authentication_failure_close: cap("authentication_failure_close"),
            };
            self.session
                .shared
                .cancel_notify
                .store(self.caps.consumer_cancel_notify, Ordering::Release);
        }
        {
            let mut info = self.session.shared.info.lock();
            info.user_provided_name = m
                .client_properties
                .get("connection_name")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            info.client_properties = m.client_properties.clone();
        }
        let mech = m.mechanism.to_string();
        let login: Result<String, String> = match mech.as_str() {
            "PLAIN" | "AMQPLAIN" => match crate::auth::parse_response(&mech, &m.response) {
                Some((user, pass)) if self.session.broker.users.authenticate(&user, &pass) => Ok(user),
                Some((user, _)) => Err(format!("user '{user}' - invalid credentials")),
                None => Err("malformed response".into()),
            },
            // The certificate was verified in the TLS handshake; the user must exist (no
            // password), as RabbitMQ's EXTERNAL with the internal backend.
            "EXTERNAL" => match &self.cert_login {
                None => {
                    return Err(AmqpError::command_invalid(
                        "invalid authentication mechanism 'EXTERNAL'",
                    ));
                }
                Some(Ok(user)) if self.session.broker.users.get(user).is_some() => Ok(user.clone()),
                Some(Ok(user)) => Err(format!("user '{user}' - invalid credentials")),
                Some(Err(why)) => Err(why.clone()),
            },
            _ => {
                return Err(AmqpError::command_invalid(format!(
                    "unknown authentication mechanism '{mech}'"
                )));
            }
        };
        let login = login.and_then(|user| {
            if user == "guest" && !self.session.broker.config.guest_anywhere && !self.peer.ip().is_loopback()
            {
                Err("user 'guest' can only connect via localhost".into())
            } else {
                Ok(user)
            }
        });
        let user = match login {
            Ok(user) => user,
            Err(why) => {
                tracing::warn!(peer = %self.peer, "{mech} login refused: {why}");
                if self.caps.authentication_failure_close {
                    return Err(AmqpError::access_refused(format!(
                        "Login was refused using authentication mechanism {mech}. For details see the broker logfile."
                    )));
                }
                self.phase = Phase::Done;
                return Ok(());
            }
        };
        self.session.shared.info.lock().user = user.clone();
        self.session.user = user;
        self.send_method(
            0,
            ConnectionTune {
                channel_max: self.session.broker.config.channel_max,
                frame_max: self.session.broker.config.frame_max,
                heartbeat: self.session.broker.config.heartbeat,
            },
        );
        self.phase = Phase::AwaitTuneOk;
        Ok(())
    }

    fn tune_ok(&mut self, m: ConnectionTuneOk) -> AmqpResult<()> {
        let server_max = self.session.broker.config.frame_max;
        if m.frame_max != 0 && m.frame_max < warren_codec::frame::FRAME_MIN_SIZE {
            return Err(AmqpError::not_allowed(format!(
                "frame_max={} < {} min size",
                m.frame_max,
                warren_codec::frame::FRAME_MIN_SIZE
            )));
        }
        if m.frame_max > server_max {
            return Err(AmqpError::not_allowed(format!(
                "frame_max={} > {} max size",
                m.frame_max, server_max
            )));
        }
        self.session.frame_max = if m.frame_max == 0 { server_max } else { m.frame_max };
        let server_ch = self.session.broker.config.channel_max;
        self.channel_max = if m.channel_max == 0 {
            server_ch
        } else {
            m.channel_max.min(server_ch)
        };
        self.heartbeat = m.heartbeat;
        self.phase = Phase::AwaitOpen;
        Ok(())
    }

    fn open(&mut self, m: ConnectionOpen) -> AmqpResult<()> {
        let name = m.virtual_host.to_string();
        let Some(v) = self.session.broker.vhost(&name) else {
            return Err(AmqpError::not_allowed(format!("vhost {name} not found")));
        };
        if self
            .session
            .broker
            .users
            .permission(&self.session.user, &name)
            .is_none()
        {
            return Err(crate::access::vhost_refused(&name, &self.session.user));
        }
        let broker = &self.session.broker;
        let node_limit = broker.config.max_connections;
        let vhost_limit = broker.vhost_connection_limit(&name);
        let user_limit = broker.user_connection_limit(&self.session.user);
        if node_limit > 0 || vhost_limit.is_some() || user_limit.is_some() {
            let (mut open, mut in_vhost, mut mine) = (0u32, 0u32, 0u32);
            for c in broker.connections() {
                let info = c.info.lock();
                if !info.vhost.is_empty() {
                    open += 1;
                    in_vhost += (info.vhost == name) as u32;
                    mine += (info.user == self.session.user) as u32;
                }
            }
            if node_limit > 0 && open >= node_limit {
                return Err(AmqpError::not_allowed(format!(
                    "connection refused: node connection limit ({node_limit}) is reached"
                )));
            }
            // RabbitMQ's texts for its vhost and user limits.
            if let Some(n) = vhost_limit.filter(|n| in_vhost >= *n) {
                return Err(AmqpError::not_allowed(format!(
                    "access to vhost '{name}' refused for user '{}': connection limit ({n}) is reached",
                    self.session.user
                )));
            }
            if let Some(n) = user_limit.filter(|n| mine >= *n) {
                return Err(AmqpError::not_allowed(format!(
                    "Connection refused for user '{}': user connection limit ({n}) is reached",
                    self.session.user
                )));
            }
        }
        {
            let mut info = self.session.shared.info.lock();
            tracing::info!(
                peer = %self.peer,
                user = %self.session.user,
                vhost = %name,
                name = %info.user_provided_name.as_deref().unwrap_or(""),
                "connection opened"
            );
            info.vhost = name;
        }
        self.session.vhost = Some(v);
        self.send_method(
            0,
            ConnectionOpenOk {
                known_hosts: ShortStr::from(""),
            },
        );
        self.phase = Phase::Open;
        Ok(())
    }

    fn channel_frame(&mut self, frame: Frame) -> AmqpResult<()> {
        let ch = frame.channel();
        if !self.channels.contains_key(&ch) {
            return match frame {
                Frame::Method {
                    method: Method::ChannelOpen(_),
                    ..
                } => {
                    if ch > self.channel_max {
                        return Err(self.channel_max_exceeded(ch).with_method(20, 10));
                    }
                    self.check_user_channel_limit()?;
                    let key = ChannelKey::new(self.session.shared.id, ch);
                    self.channels.insert(ch, Channel::new(ch, key));
                    self.session
                        .broker
                        .metrics
                        .channels_opened
                        .fetch_add(1, Ordering::Relaxed);
                    self.publish_channels();
                    self.send_method(
                        ch,
                        ChannelOpenOk {
                            channel_id: Bytes::new(),
                        },
                    );
                    Ok(())
                }
                Frame::Method { method, .. } => Err(AmqpError::channel_error(format!(
                    "expected 'channel.open' on channel {ch}, got '{}'",
                    method.name()
                ))
                .with_method(method.class_id(), method.method_id())),
                _ => Err(AmqpError::channel_error(format!(
                    "content frame on unopened channel {ch}"
                ))),
            };
        }
        self.channel_input(ch, frame)
    }

    /// One frame for an open channel: content assembly, then the channel's state machine;
    /// `channel.close` and a channel closed by an error are the connection's (its map).
    pub(crate) fn channel_input(&mut self, ch: u16, frame: Frame) -> AmqpResult<()> {
        let max = self.session.broker.config.max_message_size;
        let c = self.channels.get_mut(&ch).expect("caller checked");
        if !c.is_open() {
            if let Frame::Method { method, .. } = frame {
                match method {
                    Method::ChannelCloseOk(_) => {
                        self.channels.remove(&ch);
                    }
                    Method::ChannelClose(_) => {
                        self.channels.remove(&ch);
                        self.send_method(ch, ChannelCloseOk {});
                    }
                    _ => {}
                }
                self.publish_channels();
            }
            return Ok(());
        }
        if let Frame::Header { header, .. } = &frame
            && header.body_size > max
        {
            let e = AmqpError::precondition(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .with_method(60, 40);
            self.channel_error(ch, e);
            return Ok(());
        }
        let cmd = match c.assembler().handle(frame)? {
            Assembled::Pending => return Ok(()),
            Assembled::Command(cmd) => cmd,
        };
        let (cid, mid) = (cmd.method.class_id(), cmd.method.method_id());
        let r = if let Method::ChannelClose(_) = cmd.method {
            if let Some(mut c) = self.channels.remove(&ch) {
                c.release(&mut self.session);
            }
            self.publish_channels();
            self.send_method(ch, ChannelCloseOk {});
            Ok(())
        } else {
            c.handle(&mut self.session, cmd)
        };
        if let Some(p) = &mut self.session.pending {
            p.ids = (cid, mid);
        }
        if !self.session.out_of_link_credit.is_empty() {
            let links = std::mem::take(&mut self.session.out_of_link_credit);
            for l in links {
                if !self.link_flow.iter().any(|f| Arc::ptr_eq(f, &l)) {
                    self.link_flow.push(l);
                }
            }
            if self.session.out_of_credit.is_empty() {
                self.check_flow();
            }
        }
        if !self.session.out_of_credit.is_empty() {
            let queues = std::mem::take(&mut self.session.out_of_credit);
            self.enter_flow(queues);
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.is_hard() => Err(e.with_method(cid, mid)),
            Err(e) => {
                self.channel_error(ch, e.with_method(cid, mid));
                Ok(())
            }
        }
    }

    /// Closes a channel with a soft error: its consumers and unacked messages released, then
    /// `channel.close`; the channel ignores everything but close/close-ok from then on.
    fn channel_error(&mut self, ch: u16, e: AmqpError) {
        tracing::debug!(channel = ch, "channel error: {}", e.reply_text());
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        c.release(&mut self.session);
        c.set_closing();
        self.send_method(
            ch,
            ChannelClose {
                reply_code: e.code.code(),
                reply_text: ShortStr::from(e.reply_text()),
                class_id: e.class_id,
                method_id: e.method_id,
            },
        );
    }

    /// Closes, with RabbitMQ's 406, every channel whose oldest unacked delivery is older than
    /// `timeout` (`consumer_timeout`). Only each channel's oldest delivery is looked at.
    pub(crate) fn check_consumer_timeouts(&mut self, now: Instant, timeout: Duration) {
        let late: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| c.timed_out(now, timeout))
            .map(|(id, _)| *id)
            .collect();
        for ch in late {
            tracing::warn!(channel = ch, "consumer timeout; closing the channel");
            self.channel_error(
                ch,
                AmqpError::precondition(format!(
                    "delivery acknowledgement on channel {ch} timed out. Timeout value used: {} ms. \
                     This timeout value can be configured, see consumers doc guide to learn more",
                    timeout.as_millis()
                )),
            );
        }
    }

    /// A delivery from a queue for one of this connection's channels, or back to the queue if
    /// that channel is gone.
    pub(crate) fn deliver(&mut self, queue: Arc<Queue>, d: Delivery) {
        let ch = d.channel.number();
        match self.channels.get_mut(&ch) {
            Some(c) => c.deliver(&mut self.session, crate::forward::QueueRef::Local(queue), d),
            None => queue.unsend(&d),
        }
    }

    /// A group-commit sync finished: confirms waiting for batches up to `batch` can go.
    pub(crate) fn synced(&mut self, batch: u64, ok: bool) {
        for c in self.channels.values_mut() {
            c.synced(batch, ok);
        }
    }

    /// Sends every channel's ready confirms and shows the management API what is left
    /// unconfirmed or uncommitted (end of a read batch).
    pub(crate) fn flush_all_confirms(&mut self) {
        for c in self.channels.values_mut() {
            if c.confirms_ready() {
                c.flush_confirms(&mut self.session);
            }
            c.publish_pending_counts();
        }
    }

    /// RabbitMQ's user `max-channels` limit: a `channel.open` beyond the channels the user has
    /// open over all its connections closes the connection (530, RabbitMQ's text).
    fn check_user_channel_limit(&self) -> AmqpResult<()> {
        let broker = &self.session.broker;
        let Some(n) = broker.user_channel_limit(&self.session.user) else {
            return Ok(());
        };
        let open: usize = broker
            .connections()
            .iter()
            .filter(|c| c.info.lock().user == self.session.user)
            .map(|c| c.channel_count())
            .sum();
        if open >= n as usize {
            return Err(AmqpError::not_allowed(format!(
                "number of channels opened for user '{}' has reached the maximum allowed user limit of ({n})",
                self.session.user
            )));
        }
        Ok(())
    }

    /// 530 for a channel number above the negotiated channel_max, saying whose limit it is (the
    /// client's tune-ok value or the broker's `--channel-max`). RabbitMQ 3.x never checked
    /// channel numbers, only how many channels were open; AMQP makes channel_max the highest
    /// usable number, and Warren holds clients to it.
    fn channel_max_exceeded(&self, ch: u16) -> AmqpError {
        let server = self.session.broker.config.channel_max;
        let whose = if self.channel_max < server {
            "the client's own limit from connection.tune-ok".to_string()
        } else {
            format!("the broker's limit (--channel-max {server})")
        };
        AmqpError::not_allowed(format!(
            "channel number {ch} is above the negotiated channel_max ({}), {whose}; \
             channel numbers must be 1 to channel_max",
            self.channel_max
        ))
    }

    /// Releases everything the connection holds: deliveries in flight go back untouched,
    /// consumers are removed, unacked messages are requeued, exclusive queues deleted.
    fn cleanup(&mut self, rx: &mut mpsc::UnboundedReceiver<ConnEvent>) {
        let drain = |rx: &mut mpsc::UnboundedReceiver<ConnEvent>, shared: &ConnShared| {
            while let Ok(e) = rx.try_recv() {
                if let ConnEvent::Deliver { queue, delivery } = e {
                    shared.pending.fetch_sub(1, Ordering::AcqRel);
                    queue.unsend(&delivery);
                }
            }
        };
        drain(rx, &self.session.shared);
        self.release_all();
        drain(rx, &self.session.shared);
        rx.close();
        drain(rx, &self.session.shared);
    }

    /// Shows the open channels' shared state to other tasks (the management API's listings
    /// and counts); after every channel open and close.
    fn publish_channels(&self) {
        let shared = &self.session.shared;
        *shared.channels.lock() = self
            .channels
            .iter()
            .map(|(&n, c)| (n, c.shared().clone()))
            .collect();
    }

    /// Closes every channel (consumers removed, unacked messages requeued) and deletes the
    /// connection's exclusive queues. Idempotent.
    fn release_all(&mut self) {
        self.release_channels();
        if let Some(v) = self.session.vhost.clone() {
            let exclusive = v.exclusive_queues(self.session.shared.id);
            for q in exclusive {
                v.delete_queue(&q);
            }
        }
    }

    /// Closes every channel: consumers cancelled, unacked messages requeued.
    fn release_channels(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.channels.remove(&id) {
                c.release(&mut self.session);
            }
        }
        self.publish_channels();
    }

    /// Answers the client's connection.close; the connection then drains its input.
    fn send_close_ok(&mut self) {
        self.send_method(0, ConnectionCloseOk {});
        self.phase = Phase::Draining;
    }

    /// How long a closing connection waits for the peer: for close-ok after our
    /// connection.close, or for the socket to close after our close-ok. RabbitMQ's rule: the
    /// negotiated heartbeat interval if it is shorter than 30 s, else 30 s.
    fn closing_timeout(&self) -> Duration {
        const CLOSING_TIMEOUT: u16 = 30;
        let secs = match self.heartbeat {
            h @ 1..CLOSING_TIMEOUT => h,
            _ => CLOSING_TIMEOUT,
        };
        Duration::from_secs(secs.into())
    }

    /// After close-ok: reads and discards what the client still sends until it closes the
    /// socket, for at most [`Connection::closing_timeout`].
    async fn drain_input<R: AsyncRead + Unpin>(&mut self, rd: &mut R) {
        let deadline = tokio::time::Instant::now() + self.closing_timeout();
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            buf.clear();
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }

    /// Logs the connection's end (at info, with RabbitMQ's facts: peer, user, vhost, name).
    fn log_closed(&self) {
        let info = self.session.shared.info.lock();
        if info.vhost.is_empty() {
            return;
        }
        let reason = if self.close_reason.is_empty() {
            "client closed the socket"
        } else {
            &self.close_reason
        };
        tracing::info!(
            peer = %self.peer,
            user = %info.user,
            vhost = %info.vhost,
            name = %info.user_provided_name.as_deref().unwrap_or(""),
            "connection closed: {reason}"
        );
    }
}
