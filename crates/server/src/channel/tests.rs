//! The channel state machine driven without a socket: a [`Session`] on an in-memory broker,
//! methods in, the frames the channel encoded out (decoded again), deliveries pumped from the
//! connection's mailbox. One test (at least) per AMQP method a channel handles.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::UnboundedReceiver;
use warren_codec::methods::*;
use warren_codec::{
    BasicProperties, Command, ContentHeader, FieldTable, Frame, Method, ReplyCode, ShortStr, decode_frame,
};
use warren_core::{AmqpError, AmqpResult};

use super::{Channel, Session};
use crate::broker::Broker;
use crate::config::Config;
use crate::mailbox::{ConnEvent, ConnShared};

/// One channel (number 1) of a session logged in as the default user on vhost `/`.
struct Harness {
    s: Session,
    rx: UnboundedReceiver<ConnEvent>,
    c: Channel,
}

/// A frame the channel wrote, content folded into its method.
#[derive(Debug)]
struct Out {
    method: Method,
    body: Option<Bytes>,
    properties: Option<BasicProperties>,
}

fn s(v: &str) -> ShortStr {
    ShortStr::from(v)
}

impl Harness {
    /// A harness whose queue `q` holds messages "a" and "b".
    fn with_a_and_b() -> Harness {
        let mut h = Harness::new();
        h.declare("q");
        h.publish("q", "a").unwrap();
        h.publish("q", "b").unwrap();
        h
    }

    fn new() -> Harness {
        let config = Config::default();
        let user = config.default_user.clone();
        let broker = Broker::new(config);
        let (shared, rx) = ConnShared::new(warren_core::ids::ConnId(broker.next_id()), None);
        let key = warren_core::ids::ChannelKey::new(shared.id, 1);
        let mut session = Session::new(broker.clone(), shared);
        session.vhost = broker.vhost("/");
        session.user = user;
        Harness {
            s: session,
            rx,
            c: Channel::new(1, key),
        }
    }

    /// Runs one content-less method; what the channel wrote, or its error.
    fn call(&mut self, m: impl Into<Method>) -> AmqpResult<Vec<Out>> {
        let cmd = Command {
            method: m.into(),
            content: None,
        };
        self.c.handle(&mut self.s, cmd)?;
        Ok(self.written())
    }

    /// Runs a method expected to fail; its error.
    fn fails(&mut self, m: impl Into<Method>) -> AmqpError {
        match self.call(m) {
            Ok(out) => panic!("expected an error, the channel wrote {out:?}"),
            Err(e) => e,
        }
    }

    /// basic.publish with a body.
    fn publish_with(&mut self, m: BasicPublish, props: BasicProperties, body: &str) -> AmqpResult<Vec<Out>> {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let header = ContentHeader {
            class_id: 60,
            weight: 0,
            body_size: body.len() as u64,
            properties: props,
        };
        self.c.handle(
            &mut self.s,
            Command {
                method: m.into(),
                content: Some((Box::new(header), body)),
            },
        )?;
        Ok(self.written())
    }

    /// basic.publish to the default exchange (routing key = queue name).
    fn publish(&mut self, queue: &str, body: &str) -> AmqpResult<Vec<Out>> {
        self.publish_with(
            BasicPublish {
                routing_key: s(queue),
                ..Default::default()
            },
            BasicProperties::default(),
            body,
        )
    }

    fn declare(&mut self, queue: &str) {
        self.call(QueueDeclare {
            queue: s(queue),
            ..Default::default()
        })
        .expect("declare");
    }

    /// Deliveries the queues pushed to the connection's mailbox, handed to the channel.
    fn pump(&mut self) -> Vec<Out> {
        while let Ok(e) = self.rx.try_recv() {
            if let ConnEvent::Deliver { queue, delivery } = e {
                self.s.shared.took_delivery();
                self.c
                    .deliver(&mut self.s, crate::forward::QueueRef::Local(queue), delivery);
            }
        }
        self.written()
    }

    /// Decodes (and clears) everything encoded so far.
    fn written(&mut self) -> Vec<Out> {
        let mut buf: BytesMut = self.s.out.split();
        let mut out: Vec<Out> = Vec::new();
        while let Some(f) = decode_frame(&mut buf, 1 << 20).expect("valid frames") {
            match f {
                Frame::Method { channel, method } => {
                    assert_eq!(channel, 1);
                    out.push(Out {
                        method,
                        body: None,
                        properties: None,
                    });
                }
                Frame::Header { header, .. } => {
                    let last = out.last_mut().expect("header after a method");
                    last.properties = Some(header.properties);
                    last.body = Some(Bytes::new());
                }
                Frame::Body { body, .. } => {
                    let last = out.last_mut().expect("body after a header");
                    let mut b = last.body.take().unwrap_or_default().to_vec();
                    b.extend_from_slice(&body);
                    last.body = Some(Bytes::from(b));
                }
                Frame::Heartbeat { .. } => panic!("a channel never writes heartbeats"),
            }
        }
        out
    }

    fn ready(&self, queue: &str) -> u32 {
        self.s.queue_for_use(queue).expect("queue").counts().ready
    }
}

fn methods(out: &[Out]) -> Vec<&Method> {
    out.iter().map(|o| &o.method).collect()
}

fn body(o: &Out) -> &str {
    std::str::from_utf8(o.body.as_deref().expect("content")).expect("utf-8")
}

fn deliver_tags(out: &[Out]) -> Vec<(u64, bool)> {
    out.iter()
        .filter_map(|o| match &o.method {
            Method::BasicDeliver(d) => Some((d.delivery_tag, d.redelivered)),
            Method::BasicGetOk(d) => Some((d.delivery_tag, d.redelivered)),
            _ => None,
        })
        .collect()
}

// --- channel class ---------------------------------------------------------------------

#[test]
fn channel_flow_active_is_acknowledged_and_inactive_is_not_implemented() {
    let mut h = Harness::new();
    let out = h.call(ChannelFlow { active: true }).unwrap();
    assert_eq!(methods(&out), [&Method::from(ChannelFlowOk { active: true })]);
    assert_eq!(
        h.fails(ChannelFlow { active: false }).code,
        ReplyCode::NotImplemented
    );
    assert!(h.call(ChannelFlowOk { active: true }).unwrap().is_empty());
}

#[test]
fn a_second_channel_open_is_a_channel_error() {
    let mut h = Harness::new();
    let e = h.fails(ChannelOpen::default());
    assert_eq!(e.code, ReplyCode::ChannelError);
    assert!(e.is_hard(), "504 closes the connection");
}

#[test]
fn access_request_is_granted_as_rabbitmq_does() {
    let mut h = Harness::new();
    let out = h.call(AccessRequest::default()).unwrap();
    assert_eq!(methods(&out), [&Method::from(AccessRequestOk { ticket: 1 })]);
}

#[test]
fn a_connection_method_on_a_channel_is_command_invalid() {
    let mut h = Harness::new();
    assert_eq!(h.fails(ConnectionCloseOk {}).code, ReplyCode::CommandInvalid);
}

// --- exchange class --------------------------------------------------------------------

#[test]
fn exchange_declare_passive_and_delete() {
    let mut h = Harness::new();
    let e = h.fails(ExchangeDeclare {
        exchange: s("x"),
        passive: true,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
    let out = h
        .call(ExchangeDeclare {
            exchange: s("x"),
            kind: s("fanout"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(ExchangeDeclareOk {})]);
    let out = h
        .call(ExchangeDeclare {
            exchange: s("x"),
            passive: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.len(), 1);
    // nowait: nothing written.
    assert!(
        h.call(ExchangeDeclare {
            exchange: s("y"),
            kind: s("direct"),
            nowait: true,
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
    let out = h
        .call(ExchangeDelete {
            exchange: s("x"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(ExchangeDeleteOk {})]);
    let e = h.fails(ExchangeDeclare {
        exchange: s("x"),
        passive: true,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
}

#[test]
fn exchange_declare_is_refused_without_configure_permission() {
    let mut h = Harness::new();
    h.s.user = "nobody".into();
    let e = h.fails(ExchangeDeclare {
        exchange: s("x"),
        kind: s("fanout"),
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::AccessRefused);
    assert!(
        e.text
            .contains("access to exchange 'x' in vhost '/' refused for user 'nobody'")
    );
}

#[test]
fn exchange_bind_routes_through_the_source_and_unbind_stops_it() {
    let mut h = Harness::new();
    for (x, kind) in [("src", "fanout"), ("dst", "fanout")] {
        h.call(ExchangeDeclare {
            exchange: s(x),
            kind: s(kind),
            ..Default::default()
        })
        .unwrap();
    }
    h.declare("q");
    h.call(QueueBind {
        queue: s("q"),
        exchange: s("dst"),
        ..Default::default()
    })
    .unwrap();
    let out = h
        .call(ExchangeBind {
            destination: s("dst"),
            source: s("src"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(ExchangeBindOk {})]);
    let to_src = BasicPublish {
        exchange: s("src"),
        ..Default::default()
    };
    h.publish_with(to_src.clone(), BasicProperties::default(), "one")
        .unwrap();
    assert_eq!(h.ready("q"), 1);
    let out = h
        .call(ExchangeUnbind {
            destination: s("dst"),
            source: s("src"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(ExchangeUnbindOk {})]);
    h.publish_with(to_src, BasicProperties::default(), "two").unwrap();
    assert_eq!(h.ready("q"), 1);
}

// --- queue class -----------------------------------------------------------------------

#[test]
fn queue_declare_server_named_passive_and_reply_to() {
    let mut h = Harness::new();
    let out = h.call(QueueDeclare::default()).unwrap();
    let Method::QueueDeclareOk(ok) = &out[0].method else {
        panic!("{out:?}")
    };
    assert!(ok.queue.starts_with("amq.gen-"), "{}", ok.queue);
    assert_eq!((ok.message_count, ok.consumer_count), (0, 0));
    let e = h.fails(QueueDeclare {
        queue: s("missing"),
        passive: true,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
    h.declare("q");
    h.publish("q", "m").unwrap();
    let out = h
        .call(QueueDeclare {
            queue: s("q"),
            passive: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        methods(&out),
        [&Method::from(QueueDeclareOk {
            queue: s("q"),
            message_count: 1,
            consumer_count: 0
        })]
    );
    let out = h
        .call(QueueDeclare {
            queue: s("amq.rabbitmq.reply-to"),
            passive: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(out.len(), 1, "the direct reply-to pseudo-queue always exists");
}

#[test]
fn queue_declare_with_a_dead_letter_exchange_needs_write_on_it() {
    let mut h = Harness::new();
    h.s.broker
        .set_permission(
            &h.s.user.clone(),
            "/",
            crate::auth::Permission::new(".*", "^q$", ".*").unwrap(),
        )
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange", warren_codec::FieldValue::str("dlx"));
    let e = h.fails(QueueDeclare {
        queue: s("q"),
        arguments: args,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::AccessRefused);
    assert!(e.text.contains("exchange 'dlx'"), "{}", e.text);
}

#[test]
fn queue_bind_and_unbind() {
    let mut h = Harness::new();
    h.declare("q");
    let out = h
        .call(QueueBind {
            queue: s("q"),
            exchange: s("amq.direct"),
            routing_key: s("k"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(QueueBindOk {})]);
    let direct = BasicPublish {
        exchange: s("amq.direct"),
        routing_key: s("k"),
        ..Default::default()
    };
    h.publish_with(direct.clone(), BasicProperties::default(), "a")
        .unwrap();
    assert_eq!(h.ready("q"), 1);
    let out = h
        .call(QueueUnbind {
            queue: s("q"),
            exchange: s("amq.direct"),
            routing_key: s("k"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(QueueUnbindOk {})]);
    h.publish_with(direct, BasicProperties::default(), "b").unwrap();
    assert_eq!(h.ready("q"), 1);
    // Unbind is idempotent, also for a queue that does not exist.
    assert_eq!(
        h.call(QueueUnbind {
            queue: s("gone"),
            exchange: s("amq.direct"),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    let e = h.fails(QueueBind {
        queue: s("q"),
        exchange: s("no-such-exchange"),
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
}

#[test]
fn a_repeated_publish_follows_queue_deletion_and_redeclaration() {
    // The channel reuses its last route while the topology is unchanged; a deleted and
    // redeclared queue of the same name is a new queue, which the next publish must reach.
    let mut h = Harness::with_a_and_b();
    assert_eq!(h.ready("q"), 2);
    h.call(QueueDelete {
        queue: s("q"),
        ..Default::default()
    })
    .unwrap();
    h.publish("q", "lost").unwrap();
    h.declare("q");
    h.publish("q", "c").unwrap();
    assert_eq!(h.ready("q"), 1);
}

#[test]
fn queue_purge_answers_the_count() {
    let mut h = Harness::new();
    h.declare("q");
    for i in 0..3 {
        h.publish("q", &i.to_string()).unwrap();
    }
    let out = h
        .call(QueuePurge {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(QueuePurgeOk { message_count: 3 })]);
    assert_eq!(h.ready("q"), 0);
    let e = h.fails(QueuePurge {
        queue: s("missing"),
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
}

#[test]
fn queue_delete_if_empty_if_unused_and_missing() {
    let mut h = Harness::new();
    h.declare("q");
    h.publish("q", "m").unwrap();
    let e = h.fails(QueueDelete {
        queue: s("q"),
        if_empty: true,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    assert!(e.text.contains("is not empty"));
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    let e = h.fails(QueueDelete {
        queue: s("q"),
        if_unused: true,
        ..Default::default()
    });
    assert!(e.text.contains("in use"), "{}", e.text);
    let out = h
        .call(QueueDelete {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    // The message was delivered to the consumer (unacked), none ready.
    assert!(matches!(out[0].method, Method::QueueDeleteOk(_)));
    // Deleting a queue that does not exist answers 0, as RabbitMQ 3.x.
    let out = h
        .call(QueueDelete {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(QueueDeleteOk { message_count: 0 })]);
}

// --- basic class -----------------------------------------------------------------------

#[test]
fn basic_qos_limits_a_consumer_and_refuses_prefetch_size() {
    let mut h = Harness::new();
    let e = h.fails(BasicQos {
        prefetch_size: 10,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotImplemented);
    let out = h
        .call(BasicQos {
            prefetch_count: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(methods(&out), [&Method::from(BasicQosOk {})]);
    h.declare("q");
    for i in 0..5 {
        h.publish("q", &i.to_string()).unwrap();
    }
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()), [(1, false), (2, false)]);
    h.call(BasicAck {
        delivery_tag: 1,
        multiple: false,
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()), [(3, false)]);
}

#[test]
fn basic_qos_global_is_shared_by_the_channels_consumers() {
    let mut h = Harness::new();
    h.call(BasicQos {
        prefetch_count: 1,
        global: true,
        ..Default::default()
    })
    .unwrap();
    h.declare("a");
    h.declare("b");
    h.publish("a", "1").unwrap();
    h.publish("b", "2").unwrap();
    for q in ["a", "b"] {
        h.call(BasicConsume {
            queue: s(q),
            consumer_tag: s(q),
            ..Default::default()
        })
        .unwrap();
    }
    assert_eq!(
        deliver_tags(&h.pump()).len(),
        1,
        "one unacked for the whole channel"
    );
    h.call(BasicAck {
        delivery_tag: 1,
        multiple: false,
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()), [(2, false)]);
}

#[test]
fn basic_consume_delivers_in_order_and_refuses_a_reused_tag() {
    let mut h = Harness::new();
    h.declare("q");
    h.publish("q", "first").unwrap();
    let out = h
        .call(BasicConsume {
            queue: s("q"),
            consumer_tag: s("c"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        methods(&out),
        [&Method::from(BasicConsumeOk { consumer_tag: s("c") })]
    );
    h.publish("q", "second").unwrap();
    let out = h.pump();
    assert_eq!(out.iter().map(body).collect::<Vec<_>>(), ["first", "second"]);
    assert_eq!(deliver_tags(&out), [(1, false), (2, false)]);
    let e = h.fails(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotAllowed);
    assert!(e.is_hard());
    let e = h.fails(BasicConsume {
        queue: s("missing"),
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::NotFound);
    let mut args = FieldTable::default();
    args.insert("x-priority", warren_codec::FieldValue::str("high"));
    let e = h.fails(BasicConsume {
        queue: s("q"),
        arguments: args,
        ..Default::default()
    });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
}

#[test]
fn basic_cancel_stops_deliveries() {
    let mut h = Harness::new();
    h.declare("q");
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        no_ack: true,
        ..Default::default()
    })
    .unwrap();
    let out = h
        .call(BasicCancel {
            consumer_tag: s("c"),
            nowait: false,
        })
        .unwrap();
    assert_eq!(
        methods(&out),
        [&Method::from(BasicCancelOk { consumer_tag: s("c") })]
    );
    h.publish("q", "m").unwrap();
    assert!(h.pump().is_empty());
    assert_eq!(h.ready("q"), 1);
    // Cancelling an unknown tag is fine (answered), as RabbitMQ.
    assert_eq!(
        h.call(BasicCancel {
            consumer_tag: s("nope"),
            nowait: false
        })
        .unwrap()
        .len(),
        1
    );
}

#[test]
fn basic_publish_mandatory_unroutable_is_returned() {
    let mut h = Harness::new();
    let out = h
        .publish_with(
            BasicPublish {
                routing_key: s("nowhere"),
                mandatory: true,
                ..Default::default()
            },
            BasicProperties::default(),
            "lost?",
        )
        .unwrap();
    let Method::BasicReturn(r) = &out[0].method else {
        panic!("{out:?}")
    };
    assert_eq!((r.reply_code, &*r.reply_text), (312, "NO_ROUTE"));
    assert_eq!(body(&out[0]), "lost?");
    // Without mandatory it is dropped silently.
    assert!(h.publish("nowhere", "x").unwrap().is_empty());
}

#[test]
fn basic_publish_checks_immediate_user_id_and_the_exchange() {
    let mut h = Harness::new();
    let e = h
        .publish_with(
            BasicPublish {
                immediate: true,
                ..Default::default()
            },
            BasicProperties::default(),
            "",
        )
        .unwrap_err();
    assert_eq!(e.code, ReplyCode::NotImplemented);
    let props = BasicProperties {
        user_id: Some(s("somebody-else")),
        ..Default::default()
    };
    let e = h.publish_with(BasicPublish::default(), props, "").unwrap_err();
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    assert!(
        e.text.contains("user_id property set to 'somebody-else'"),
        "{}",
        e.text
    );
    let e = h
        .publish_with(
            BasicPublish {
                exchange: s("no-such-exchange"),
                ..Default::default()
            },
            BasicProperties::default(),
            "",
        )
        .unwrap_err();
    assert_eq!(e.code, ReplyCode::NotFound);
    assert!(
        h.s.publisher,
        "the connection counts as a publisher (alarms block it)"
    );
}

#[test]
fn basic_get_empty_and_ok_with_the_count_left() {
    let mut h = Harness::new();
    h.declare("q");
    let out = h
        .call(BasicGet {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    assert!(matches!(out[0].method, Method::BasicGetEmpty(_)));
    h.publish("q", "a").unwrap();
    h.publish("q", "b").unwrap();
    let out = h
        .call(BasicGet {
            queue: s("q"),
            no_ack: true,
            ..Default::default()
        })
        .unwrap();
    let Method::BasicGetOk(ok) = &out[0].method else {
        panic!("{out:?}")
    };
    assert_eq!((ok.delivery_tag, ok.message_count), (1, 1));
    assert_eq!(body(&out[0]), "a");
    assert_eq!(h.ready("q"), 1);
}

#[test]
fn basic_ack_single_multiple_and_unknown() {
    let mut h = Harness::new();
    h.declare("q");
    for i in 0..4 {
        h.publish("q", &i.to_string()).unwrap();
    }
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()).len(), 4);
    assert!(
        h.call(BasicAck {
            delivery_tag: 3,
            multiple: true
        })
        .unwrap()
        .is_empty()
    );
    let e = h.fails(BasicAck {
        delivery_tag: 2,
        multiple: false,
    });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    assert_eq!(e.text, "unknown delivery tag 2");
    h.call(BasicAck {
        delivery_tag: 4,
        multiple: false,
    })
    .unwrap();
    let counts = h.s.queue_for_use("q").unwrap().counts();
    assert_eq!((counts.ready, counts.unacked), (0, 0));
}

#[test]
fn basic_reject_and_nack_requeue_or_drop() {
    let mut h = Harness::new();
    h.declare("q");
    for i in 0..3 {
        h.publish("q", &i.to_string()).unwrap();
    }
    for _ in 0..3 {
        h.call(BasicGet {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    }
    h.call(BasicReject {
        delivery_tag: 1,
        requeue: true,
    })
    .unwrap();
    assert_eq!(h.ready("q"), 1);
    h.call(BasicNack {
        delivery_tag: 3,
        multiple: true,
        requeue: false,
    })
    .unwrap();
    assert_eq!(
        h.ready("q"),
        1,
        "nack without requeue drops (no dead-letter exchange)"
    );
    let out = h
        .call(BasicGet {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        deliver_tags(&out),
        [(4, true)],
        "the requeued message, redelivered"
    );
    assert_eq!(body(&out[0]), "0");
}

#[test]
fn basic_recover_redelivers_everything_unacked() {
    let mut h = Harness::with_a_and_b();
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()), [(1, false), (2, false)]);
    let out = h.call(BasicRecover { requeue: true }).unwrap();
    assert_eq!(methods(&out), [&Method::from(BasicRecoverOk {})]);
    let out = h.pump();
    assert_eq!(deliver_tags(&out), [(3, true), (4, true)]);
    assert_eq!(out.iter().map(body).collect::<Vec<_>>(), ["a", "b"]);
    // recover-async: the same, without an answer.
    assert!(h.call(BasicRecoverAsync { requeue: true }).unwrap().is_empty());
    assert_eq!(deliver_tags(&h.pump()), [(5, true), (6, true)]);
    let e = h.fails(BasicRecover { requeue: false });
    assert_eq!(e.code, ReplyCode::NotImplemented);
}

#[test]
fn a_redelivery_carries_the_delivery_count_header() {
    let mut h = Harness::new();
    h.declare("q");
    h.publish("q", "a").unwrap();
    h.call(BasicGet {
        queue: s("q"),
        ..Default::default()
    })
    .unwrap();
    h.call(BasicReject {
        delivery_tag: 1,
        requeue: true,
    })
    .unwrap();
    let out = h
        .call(BasicGet {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    let headers = out[0]
        .properties
        .as_ref()
        .unwrap()
        .headers
        .as_ref()
        .expect("headers");
    assert!(headers.get("x-delivery-count").is_some(), "{headers:?}");
}

// --- confirm class ---------------------------------------------------------------------

#[test]
fn confirm_select_then_publishes_are_acked_as_one_multiple() {
    let mut h = Harness::new();
    let out = h.call(ConfirmSelect { nowait: false }).unwrap();
    assert_eq!(methods(&out), [&Method::from(ConfirmSelectOk {})]);
    h.declare("q");
    h.publish("q", "a").unwrap();
    h.publish("q", "b").unwrap();
    h.publish("nowhere", "c").unwrap();
    assert!(h.c.confirms_ready());
    // The management API's count (published at the end of a read batch).
    h.c.publish_pending_counts();
    assert_eq!(h.c.shared.unconfirmed.load(Ordering::Relaxed), 3);
    h.c.flush_confirms(&mut h.s);
    h.c.publish_pending_counts();
    assert_eq!(h.c.shared.unconfirmed.load(Ordering::Relaxed), 0);
    let out = h.written();
    assert_eq!(
        methods(&out),
        [&Method::from(BasicAck {
            delivery_tag: 3,
            multiple: true
        })],
        "unroutable messages are confirmed too"
    );
    assert!(!h.c.confirms_ready());
    let e = h.fails(TxSelect {});
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
}

#[test]
fn a_persistent_confirm_waits_for_its_sync_and_keeps_later_ones_behind_it() {
    let mut h = Harness::new();
    h.call(ConfirmSelect { nowait: true }).unwrap();
    h.call(QueueDeclare {
        queue: s("d"),
        durable: true,
        ..Default::default()
    })
    .unwrap();
    let persistent = BasicProperties {
        delivery_mode: Some(2),
        ..Default::default()
    };
    h.publish_with(
        BasicPublish {
            routing_key: s("d"),
            ..Default::default()
        },
        persistent,
        "p",
    )
    .unwrap();
    h.publish("d", "transient").unwrap();
    // No store in this broker: nothing waits for a sync.
    assert!(!h.s.sync_wanted);
    h.c.flush_confirms(&mut h.s);
    assert_eq!(
        methods(&h.written()),
        [&Method::from(BasicAck {
            delivery_tag: 2,
            multiple: true
        })]
    );
    // A sync outcome for a batch nobody waits on changes nothing.
    h.c.synced(1, false);
    assert!(!h.c.confirms_ready());
}

// --- tx class --------------------------------------------------------------------------

#[test]
fn tx_commit_applies_publishes_and_acks_rollback_discards() {
    let mut h = Harness::new();
    h.declare("q");
    h.publish("q", "before").unwrap();
    h.call(BasicGet {
        queue: s("q"),
        ..Default::default()
    })
    .unwrap();
    let out = h.call(TxSelect {}).unwrap();
    assert_eq!(methods(&out), [&Method::from(TxSelectOk {})]);
    h.publish("q", "in-tx").unwrap();
    h.call(BasicAck {
        delivery_tag: 1,
        multiple: false,
    })
    .unwrap();
    assert_eq!(h.ready("q"), 0, "nothing happens before the commit");
    assert_eq!(h.s.queue_for_use("q").unwrap().counts().unacked, 1);
    let out = h.call(TxCommit {}).unwrap();
    assert_eq!(methods(&out), [&Method::from(TxCommitOk {})]);
    let counts = h.s.queue_for_use("q").unwrap().counts();
    assert_eq!((counts.ready, counts.unacked), (1, 0));
    h.publish("q", "rolled back").unwrap();
    let out = h.call(TxRollback {}).unwrap();
    assert_eq!(methods(&out), [&Method::from(TxRollbackOk {})]);
    h.call(TxCommit {}).unwrap();
    assert_eq!(h.ready("q"), 1);
    let e = h.fails(ConfirmSelect { nowait: false });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    // A publish to a missing exchange fails at once, not at commit.
    let e = h
        .publish_with(
            BasicPublish {
                exchange: s("no-such-exchange"),
                ..Default::default()
            },
            BasicProperties::default(),
            "",
        )
        .unwrap_err();
    assert_eq!(e.code, ReplyCode::NotFound);
}

/// A transactional channel holding two unacked deliveries (tags 1 and 2) of queue `q`.
fn two_unacked_in_tx() -> Harness {
    let mut h = Harness::new();
    h.declare("q");
    for body in ["a", "b"] {
        h.publish("q", body).unwrap();
        h.call(BasicGet {
            queue: s("q"),
            ..Default::default()
        })
        .unwrap();
    }
    h.call(TxSelect {}).unwrap();
    h
}

#[test]
fn tx_acks_take_their_tags_at_once_and_rollback_gives_them_back() {
    let mut h = two_unacked_in_tx();
    h.call(BasicAck {
        delivery_tag: 1,
        multiple: false,
    })
    .unwrap();
    // As RabbitMQ: acking the same tag again inside the transaction fails at once, not at
    // tx.commit.
    let e = h.fails(BasicAck {
        delivery_tag: 1,
        multiple: false,
    });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    assert_eq!(e.text, "unknown delivery tag 1");
    let mut h = two_unacked_in_tx();
    h.call(BasicAck {
        delivery_tag: 2,
        multiple: true,
    })
    .unwrap();
    let e = h.fails(BasicNack {
        delivery_tag: 9,
        multiple: false,
        requeue: true,
    });
    assert_eq!(e.code, ReplyCode::PreconditionFailed);
    let mut h = two_unacked_in_tx();
    h.call(BasicAck {
        delivery_tag: 2,
        multiple: true,
    })
    .unwrap();
    h.call(TxRollback {}).unwrap();
    assert_eq!(
        h.s.queue_for_use("q").unwrap().counts().unacked,
        2,
        "nothing acked"
    );
    // The rolled-back tags are unacked again, in order: a multiple ack of the last one
    // takes both, and the commit applies it.
    h.call(BasicAck {
        delivery_tag: 2,
        multiple: true,
    })
    .unwrap();
    h.call(TxCommit {}).unwrap();
    let c = h.s.queue_for_use("q").unwrap().counts();
    assert_eq!((c.ready, c.unacked), (0, 0));
    // A channel closing with acks in an open transaction requeues those deliveries too.
    let mut h = two_unacked_in_tx();
    h.call(BasicAck {
        delivery_tag: 2,
        multiple: true,
    })
    .unwrap();
    h.c.release(&mut h.s);
    let c = h.s.queue_for_use("q").unwrap().counts();
    assert_eq!((c.ready, c.unacked), (2, 0));
}

#[test]
fn tx_commit_and_rollback_need_tx_select() {
    let mut h = Harness::new();
    assert_eq!(h.fails(TxCommit {}).code, ReplyCode::PreconditionFailed);
    assert_eq!(h.fails(TxRollback {}).code, ReplyCode::PreconditionFailed);
}

// --- lifecycle and deliveries ----------------------------------------------------------

#[test]
fn release_returns_unacked_messages_and_removes_consumers() {
    let mut h = Harness::new();
    h.declare("q");
    h.publish("q", "a").unwrap();
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(deliver_tags(&h.pump()).len(), 1);
    h.c.release(&mut h.s);
    let counts = h.s.queue_for_use("q").unwrap().counts();
    assert_eq!((counts.ready, counts.unacked, counts.consumers), (1, 0, 0));
}

#[test]
fn a_delivery_for_a_cancelled_consumer_goes_back_to_its_queue() {
    let mut h = Harness::new();
    h.declare("q");
    h.call(BasicConsume {
        queue: s("q"),
        consumer_tag: s("c"),
        ..Default::default()
    })
    .unwrap();
    h.publish("q", "a").unwrap();
    // The client cancelled the consumer while the delivery was in the mailbox.
    let Ok(ConnEvent::Deliver { queue, delivery }) = h.rx.try_recv() else {
        panic!("a delivery")
    };
    h.s.shared.took_delivery();
    h.call(BasicCancel {
        consumer_tag: s("c"),
        nowait: true,
    })
    .unwrap();
    h.c.deliver(&mut h.s, crate::forward::QueueRef::Local(queue), delivery);
    assert!(h.written().is_empty());
    assert_eq!(h.ready("q"), 1);
}

#[test]
fn direct_reply_to_consumer_receives_replies() {
    let mut h = Harness::new();
    let e = h.fails(BasicConsume {
        queue: s("amq.rabbitmq.reply-to"),
        ..Default::default()
    });
    assert_eq!(
        e.code,
        ReplyCode::PreconditionFailed,
        "reply consumers are no-ack"
    );
    h.call(BasicConsume {
        queue: s("amq.rabbitmq.reply-to"),
        consumer_tag: s("r"),
        no_ack: true,
        ..Default::default()
    })
    .unwrap();
    let props = BasicProperties {
        reply_to: Some(s("amq.rabbitmq.reply-to")),
        ..Default::default()
    };
    h.declare("rpc");
    h.publish_with(
        BasicPublish {
            routing_key: s("rpc"),
            ..Default::default()
        },
        props,
        "request",
    )
    .unwrap();
    let out = h
        .call(BasicGet {
            queue: s("rpc"),
            no_ack: true,
            ..Default::default()
        })
        .unwrap();
    let reply_to = out[0].properties.as_ref().unwrap().reply_to.clone().unwrap();
    assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");
    h.publish(&reply_to, "response").unwrap();
    let Ok(ConnEvent::DirectReply { tag, msg, .. }) = h.rx.try_recv() else {
        panic!("a direct reply")
    };
    h.c.deliver_reply(&mut h.s, tag, msg);
    let out = h.written();
    assert!(matches!(&out[0].method, Method::BasicDeliver(d) if &*d.consumer_tag == "r"));
    assert_eq!(body(&out[0]), "response");
}
