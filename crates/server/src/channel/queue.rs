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
        let count = match s.queue_for_use(&m.queue) {
            Ok(q) => {
                let counts = q.counts();
                if m.if_unused && counts.consumers > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '{}' in use",
                        m.queue, v.name
                    )));
                }
                if m.if_empty && counts.ready > 0 {
                    return Err(AmqpError::precondition(format!(
                        "queue '{}' in vhost '{}' is not empty",
                        m.queue, v.name
                    )));
                }
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
