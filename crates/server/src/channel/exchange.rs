//! The `exchange` class: exchange.declare, exchange.delete, exchange.bind and exchange.unbind
//! (exchange-to-exchange bindings, a RabbitMQ extension). Permission checks as RabbitMQ's
//! `rabbit_channel`; the vhost service does the rest.

use warren_codec::Method;
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
        // A new durable exchange of a clustered node: declared on every node through Raft.
        if s.broker.cluster().is_some()
            && !m.passive
            && m.durable
            && !v.read_topology(|t| t.exchange(&m.exchange).is_some())
        {
            let what = format!("declare exchange '{}'", m.exchange);
            let ok = (!m.nowait).then(|| ExchangeDeclareOk {}.into());
            self.propose_ok(s, &v.name, m, what, ok);
            return Ok(());
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
        if s.broker.cluster().is_some()
            && v.read_topology(|t| t.exchange(&m.exchange).is_some_and(|x| x.durable))
        {
            let what = format!("delete exchange '{}'", m.exchange);
            let ok = (!m.nowait).then(|| ExchangeDeleteOk {}.into());
            self.propose_ok(s, &v.name, m, what, ok);
            return Ok(());
        }
        v.delete_exchange(&m.exchange, m.if_unused)?;
        if !m.nowait {
            s.send_method(self.id, ExchangeDeleteOk {});
        }
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, s: &mut Session, m: ExchangeBind) -> AmqpResult<()> {
        let b = BindingRef {
            source: &m.source,
            destination: &m.destination,
            to_queue: false,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        self.binding(s, &b, true, (!m.nowait).then_some(ExchangeBindOk {}.into()))
    }

    pub(super) fn exchange_unbind(&mut self, s: &mut Session, m: ExchangeUnbind) -> AmqpResult<()> {
        let b = BindingRef {
            source: &m.source,
            destination: &m.destination,
            to_queue: false,
            routing_key: &m.routing_key,
            arguments: &m.arguments,
        };
        self.binding(s, &b, false, (!m.nowait).then_some(ExchangeUnbindOk {}.into()))
    }

    /// exchange.bind/unbind and queue.bind/unbind (`bind`: which): write on the destination
    /// (queue or exchange), read on the source, topic read on the key; then the vhost's
    /// operation (a queue binding as this connection, for exclusive queues) and `ok`, if any.
    pub(super) fn binding(
        &mut self,
        s: &mut Session,
        b: &BindingRef,
        bind: bool,
        ok: Option<Method>,
    ) -> AmqpResult<()> {
        let v = s.vhost()?;
        let dest = if b.to_queue {
            Resource::Queue
        } else {
            Resource::Exchange
        };
        s.check_access(dest, b.destination, Access::Write)?;
        s.check_access(Resource::Exchange, b.source, Access::Read)?;
        s.check_topic_bind(b.source, b.routing_key)?;
        // A durable binding (durable exchanges, a durable non-exclusive queue) of a clustered
        // node: made on every node through Raft.
        if s.broker.cluster().is_some()
            && v.read_topology(|t| t.is_durable_binding(b.source, b.destination, b.to_queue))
        {
            let what = format!(
                "{} '{}' to '{}'",
                if bind { "bind" } else { "unbind" },
                b.destination,
                b.source
            );
            self.propose_ok(s, &v.name, b.record(bind), what, ok);
            return Ok(());
        }
        let owner = b.to_queue.then_some(s.shared.id);
        if bind {
            v.bind(b, owner)?;
        } else {
            v.unbind(b, owner)?;
        }
        if let Some(ok) = ok {
            s.send_method(self.id, ok);
        }
        Ok(())
    }
}
