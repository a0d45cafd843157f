//! The `queue` class: queue.declare (server-named queues, the direct reply-to pseudo-queue,
//! dead-letter exchange permissions), queue.bind, queue.unbind, queue.purge and queue.delete
//! (if-unused, if-empty). Permission checks as RabbitMQ's `rabbit_channel`; the vhost service
//! enforces limits, records definitions and registers queue handles.

use warren_codec::methods::*;
use warren_core::topology::QueueDeclare as QueueDecl;
use warren_core::{AmqpError, AmqpResult};

use super::{Channel, Session};
use crate::access::Resource;
use crate::auth::Access;
use crate::broker::REPLY_TO_QUEUE;
use crate::util::random_name;
use crate::vhost::BindingRef;

impl Channel {
    pub(super) fn queue_declare(&mut self, s: &mut Session, m: QueueDeclare) -> AmqpResult<()> {
        let v = s.vhost()?;
        if &*m.queue == REPLY_TO_QUEUE {
            // The direct reply-to pseudo-queue always exists, empty.
            if !m.nowait {
                s.send_method(
                    self.id,
                    QueueDeclareOk {
                        queue: m.queue,
                        message_count: 0,
                        consumer_count: 0,
                    },
                );
            }
            return Ok(());
        }
        let name = if m.queue.is_empty() {
            random_name("amq.gen-")
        } else {
            m.queue.clone()
        };
        if !m.passive {
            s.check_access(Resource::Queue, &name, Access::Configure)?;
            // As RabbitMQ: a dead-letter exchange needs write on it and read on the queue.
            if let Some(dlx) = m.arguments.get("x-dead-letter-exchange").and_then(|x| x.as_str()) {
                s.check_access(Resource::Queue, &name, Access::Read)?;
                s.check_access(Resource::Exchange, dlx, Access::Write)?;
            }
        }
        if s.broker.cluster().is_some() && !m.passive && m.durable && !m.exclusive {
            let existing = v.read_topology(|t| t.queue(&name).map(|q| q.id));
            match existing {
                // A new durable queue of a clustered node: declared on every node through Raft,
                // with this node as its home.
                None => {
                    let (ch, nowait) = (self.id, m.nowait);
                    let what = format!("declare queue '{name}'");
                    let decl = QueueDeclare {
                        queue: name.clone(),
                        durable: true,
                        auto_delete: m.auto_delete,
                        arguments: m.arguments.clone(),
                        ..Default::default()
                    };
                    let vhost = v.clone();
                    self.propose(s, &v.name, decl, what, move |s, _| {
                        let counts = vhost.queue(&name).map(|q| q.counts());
                        if !nowait {
                            s.send_method(
                                ch,
                                QueueDeclareOk {
                                    queue: name,
                                    message_count: counts.as_ref().map_or(0, |c| c.ready),
                                    consumer_count: counts.as_ref().map_or(0, |c| c.consumers),
                                },
                            );
                        }
                    });
                    return Ok(());
                }
                // Another node's queue: the declaration is checked against its definition;
                // its counts are asked of its home.
                Some(id) if v.home_node(id).is_some() => {
                    v.redeclare_remote_queue(&QueueDecl {
                        name: &name,
                        passive: false,
                        durable: true,
                        exclusive: false,
                        auto_delete: m.auto_delete,
                        arguments: &m.arguments,
                        owner: s.shared.id,
                        server_named: false,
                    })?;
                    if !m.nowait {
                        let node = v.home_node(id).unwrap_or_default();
                        self.remote_declare_ok(s, &v.name, name, node);
                    }
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        if m.passive
            && let Some(node) = v.remote_home(&name)
            && s.broker.forwarder().is_some()
        {
            if !m.nowait {
                self.remote_declare_ok(s, &v.name, name, node);
            }
            return Ok(());
        }
        let (q, _) = v.declare_queue(
            &QueueDecl {
                name: &name,
                passive: m.passive,
                durable: m.durable,
                exclusive: m.exclusive,
                auto_delete: m.auto_delete,
                arguments: &m.arguments,
                owner: s.shared.id,
                server_named: m.queue.is_empty(),
            },
            s.broker.queue_limit(&v.name),
        )?;
        q.touch();
        if !m.nowait {
            let counts = q.counts();
            s.send_method(
                self.id,
                QueueDeclareOk {
                    queue: name,
                    message_count: counts.ready,
                    consumer_count: counts.consumers,
                },
            );
        }
        Ok(())
    }

    /// queue.declare-ok for a queue of another node, with the counts its home answers (the
    /// connection waits); home unreachable: RabbitMQ's 404 for a down queue.
    fn remote_declare_ok(&self, s: &mut Session, vhost: &str, name: warren_codec::ShortStr, node: String) {
        let Some(f) = s.broker.forwarder() else {
            s.send_method(
                self.id,
                QueueDeclareOk {
                    queue: name,
                    message_count: 0,
                    consumer_count: 0,
                },
            );
            return;
        };
        let answer = f.counts(&node, vhost, &name);
        let counts = std::sync::Arc::new(parking_lot::Mutex::new((0, 0)));
        let got = counts.clone();
        let (queue, vhost, ch) = (name.to_string(), vhost.to_string(), self.id);
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(async move {
                match answer.await {
                    Ok(c) => {
                        *got.lock() = c;
                        Ok(crate::clustering::Outcome::Updated)
                    }
                    Err(v) => Err(v.into_error(&queue, &vhost, &node)),
                }
            }),
            done: Box::new(move |s, _| {
                let (ready, consumers) = *counts.lock();
                s.send_method(
                    ch,
                    QueueDeclareOk {
                        queue: name,
                        message_count: ready,
                        consumer_count: consumers,
                    },
                );
            }),
        });
    }

    pub(super) fn queue_bind(&mut self, s: &mut Session, m: QueueBind) -> AmqpResult<()> {
        let b = BindingRef {
            source: &m.exchange,
            destination: &m.queue,
            to_queue: true,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        self.binding(s, &b, true, (!m.nowait).then_some(QueueBindOk {}.into()))
    }

    /// queue.unbind has no nowait. A missing queue is fine (unbind is idempotent); another
    /// connection's exclusive queue is not.
    pub(super) fn queue_unbind(&mut self, s: &mut Session, m: QueueUnbind) -> AmqpResult<()> {
        let b = BindingRef {
            source: &m.exchange,
            destination: &m.queue,
            to_queue: true,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        self.binding(s, &b, false, Some(QueueUnbindOk {}.into()))
    }

    pub(super) fn queue_purge(&mut self, s: &mut Session, m: QueuePurge) -> AmqpResult<()> {
        s.check_access(Resource::Queue, &m.queue, Access::Read)?;
        let q = s.queue_for_use(&m.queue)?;
        let n = q.purge();
        if !m.nowait {
            s.send_method(self.id, QueuePurgeOk { message_count: n });
        }
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, s: &mut Session, m: QueueDelete) -> AmqpResult<()> {
        let v = s.vhost()?;
        s.check_access(Resource::Queue, &m.queue, Access::Configure)?;
        let replicated = v
            .read_topology(|t| t.queue(&m.queue).cloned())
            .filter(|q| q.durable && q.exclusive_owner.is_none());
        if s.broker.cluster().is_some()
            && let Some(meta) = replicated
        {
            // A durable queue of a clustered node: deleted on every node through Raft (its
            // home node drops its messages).
            let count = match v.queue_by_id(meta.id) {
                Some(q) => {
                    let counts = q.counts();
                    check_delete(&m, counts.consumers, counts.ready, &v.name)?;
                    counts.ready
                }
                None => match v.home_node(meta.id) {
                    Some(node) if m.if_unused || m.if_empty => {
                        return Err(crate::vhost::remote_queue(&m.queue, &v.name, &node));
                    }
                    _ => 0,
                },
            };
            let what = format!("delete queue '{}'", m.queue);
            let ok = (!m.nowait).then(|| QueueDeleteOk { message_count: count }.into());
            self.propose_ok(s, &v.name, m, what, ok);
            return Ok(());
        }
        let count = match s.queue_for_use(&m.queue) {
            Ok(q) => {
                let counts = q.counts();
                check_delete(&m, counts.consumers, counts.ready, &v.name)?;
                v.delete_queue(&m.queue).unwrap_or(0)
            }
            Err(e) if e.code == warren_codec::ReplyCode::NotFound => 0,
            Err(e) => return Err(e),
        };
        if !m.nowait {
            s.send_method(self.id, QueueDeleteOk { message_count: count });
        }
        Ok(())
    }
}

/// queue.delete's if-unused and if-empty conditions (406 PRECONDITION_FAILED).
fn check_delete(m: &QueueDelete, consumers: u32, ready: u32, vhost: &str) -> AmqpResult<()> {
    if m.if_unused && consumers > 0 {
        return Err(AmqpError::precondition(format!(
            "queue '{}' in vhost '{vhost}' in use",
            m.queue
        )));
    }
    if m.if_empty && ready > 0 {
        return Err(AmqpError::precondition(format!(
            "queue '{}' in vhost '{vhost}' is not empty",
            m.queue
        )));
    }
    Ok(())
}
