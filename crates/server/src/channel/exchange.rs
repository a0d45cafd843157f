//! The `exchange` class: exchange.declare, exchange.delete, exchange.bind and exchange.unbind
//! (exchange-to-exchange bindings, a RabbitMQ extension). Permission checks as RabbitMQ's
//! `rabbit_channel`; the vhost service does the rest.

use warren_codec::methods::*;
use warren_core::AmqpResult;
use warren_core::topology::ExchangeDeclare as ExchangeDecl;

use super::{Channel, Session};
use crate::access::Resource;
use crate::auth::Access;
use crate::vhost::BindingRef;

impl Channel {
    pub(super) fn exchange_declare(&mut self, s: &mut Session, m: ExchangeDeclare) -> AmqpResult<()> {
        let v = s.vhost()?;
        if !m.passive && !m.exchange.is_empty() {
            s.check_access(Resource::Exchange, &m.exchange, Access::Configure)?;
        }
        v.declare_exchange(&ExchangeDecl {
            name: &m.exchange,
            kind: &m.kind,
            passive: m.passive,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: &m.arguments,
        })?;
        if !m.nowait {
            s.send_method(self.id, ExchangeDeclareOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_delete(&mut self, s: &mut Session, m: ExchangeDelete) -> AmqpResult<()> {
        let v = s.vhost()?;
        s.check_access(Resource::Exchange, &m.exchange, Access::Configure)?;
        v.delete_exchange(&m.exchange, m.if_unused)?;
        if !m.nowait {
            s.send_method(self.id, ExchangeDeleteOk {});
        }
        Ok(())
    }

    /// Write on the destination, read on the source, topic read on the key.
    fn check_exchange_binding(s: &mut Session, b: &BindingRef) -> AmqpResult<()> {
        s.check_access(Resource::Exchange, b.destination, Access::Write)?;
        s.check_access(Resource::Exchange, b.source, Access::Read)?;
        s.check_topic_bind(b.source, b.routing_key)
    }

    pub(super) fn exchange_bind(&mut self, s: &mut Session, m: ExchangeBind) -> AmqpResult<()> {
        let v = s.vhost()?;
        let b = BindingRef {
            source: &m.source,
            destination: &m.destination,
            to_queue: false,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        Self::check_exchange_binding(s, &b)?;
        v.bind(&b, None)?;
        if !m.nowait {
            s.send_method(self.id, ExchangeBindOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_unbind(&mut self, s: &mut Session, m: ExchangeUnbind) -> AmqpResult<()> {
        let v = s.vhost()?;
        let b = BindingRef {
            source: &m.source,
            destination: &m.destination,
            to_queue: false,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        Self::check_exchange_binding(s, &b)?;
        v.unbind(&b, None)?;
        if !m.nowait {
            s.send_method(self.id, ExchangeUnbindOk {});
        }
        Ok(())
    }
}
