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
            warren_core::args::QueueArgs::check_declared(&m.arguments, &name, &v.name)?;
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
        let queue = name.to_string();
        self.await_home(s, (vhost, &queue, node), answer, move |(ready, consumers)| {
            Some(
                QueueDeclareOk {
                    queue: name,
                    message_count: ready,
                    consumer_count: consumers,
                }
                .into(),
            )
        });
    }

    /// Waits (the connection waits, as for a commit) for `answer`, the home node's answer
    /// about remote queue `(vhost, queue, node)`, then sends the method `ok` makes of it; a
    /// refusal is the home's error, no answer RabbitMQ's 404 for a down queue. (`ok` makes
    /// none for nowait.)
    fn await_home<T: Send + 'static>(
        &self,
        s: &mut Session,
        (vhost, queue, node): (&str, &str, String),
        answer: impl std::future::Future<Output = Result<T, crate::forward::Verdict>> + Send + 'static,
        ok: impl FnOnce(T) -> Option<warren_codec::Method> + Send + 'static,
    ) {
        let slot = std::sync::Arc::new(parking_lot::Mutex::new(None));
        let got = slot.clone();
        let (queue, vhost, ch) = (queue.to_string(), vhost.to_string(), self.id);
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(async move {
                let t = answer.await.map_err(|v| v.into_error(&queue, &vhost, &node))?;
                *got.lock() = Some(t);
                Ok(crate::clustering::Outcome::Updated)
            }),
            done: Box::new(move |s, _| {
                if let Some(m) = slot.lock().take().and_then(ok) {
                    s.send_method(ch, m);
                }
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
        let v = s.vhost()?;
        if let Some(node) = v.remote_home(&m.queue)
            && let Some(f) = s.broker.forwarder()
        {
            // Purged by its home node, which answers the count (the connection waits).
            let answer = f.purge(&node, &v.name, &m.queue);
            let nowait = m.nowait;
            self.await_home(s, (&v.name, &m.queue, node), answer, move |n| {
                (!nowait).then(|| QueuePurgeOk { message_count: n }.into())
            });
            return Ok(());
        }
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
                None => match (v.home_node(meta.id), s.broker.forwarder()) {
                    (Some(node), Some(f)) if m.if_unused || m.if_empty => {
                        let counts = f.counts(&node, &v.name, &meta.name);
                        self.remote_delete(s, &v.name, m, node, counts);
                        return Ok(());
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

impl Channel {
    /// queue.delete with if-unused or if-empty of a queue of another node: its home's counts
    /// (`counts`) are checked against the conditions, then the deletion is proposed as for any
    /// durable queue; the connection waits for both. Home unreachable: RabbitMQ's 404 for a
    /// down queue. (A consumer or message arriving at the home between the check and the
    /// commit is not seen.)
    fn remote_delete(
        &self,
        s: &mut Session,
        vhost: &str,
        m: QueueDelete,
        node: String,
        counts: impl std::future::Future<Output = Result<(u32, u32), crate::forward::Verdict>> + Send + 'static,
    ) {
        let broker = s.broker.clone();
        let (vh, ch, nowait) = (vhost.to_string(), self.id, m.nowait);
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let got = count.clone();
        s.pending = Some(crate::session::Pending {
            channel: self.id,
            ids: (0, 0),
            work: Box::pin(async move {
                let (ready, consumers) = counts.await.map_err(|e| e.into_error(&m.queue, &vh, &node))?;
                check_delete(&m, consumers, ready, &vh)?;
                got.store(ready, std::sync::atomic::Ordering::Relaxed);
                let what = format!("delete queue '{}'", m.queue);
                let change = crate::clustering::Change::define(&vh, &broker.config.node_name, m);
                crate::clustering::define(broker, change, what).await
            }),
            done: Box::new(move |s, _| {
                if !nowait {
                    let message_count = count.load(std::sync::atomic::Ordering::Relaxed);
                    s.send_method(ch, QueueDeleteOk { message_count });
                }
            }),
        });
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
