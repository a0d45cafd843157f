//! This node's answer to another cluster member's listing request (issue 19): its own queues,
//! connections, channels, consumers, node record and totals, rendered by the same code its own
//! `/api` listings use. The asking side is `super::remote`.

use super::common::*;
use crate::forward::Listing;

/// Installs [`render`] as this node's answer to its peers' listing requests (a clustered node
/// only).
pub(crate) fn install(st: &Shared) {
    let Some(f) = st.broker.forwarder() else {
        return;
    };
    let weak = Arc::downgrade(st);
    f.set_lister(Box::new(move |what| match weak.upgrade() {
        Some(st) => render(&st, what).to_string(),
        None => "[]".into(),
    }));
}

/// This node's own objects of kind `what`, as its listings render them.
fn render(st: &Shared, what: &Listing) -> Value {
    match what {
        Listing::Queues { vhost, name } => {
            let vhosts = match vhost {
                Some(v) => st.broker.vhost(v).into_iter().collect(),
                None => st.broker.vhosts(),
            };
            let mut out = Vec::new();
            for v in vhosts {
                let dlqs = dlq::vhost_dead_letter_queues(&v);
                for q in v.queue_handles() {
                    if name.as_ref().is_some_and(|n| **n != *q.meta.name) {
                        continue;
                    }
                    let meta = v
                        .read_topology(|t| t.queue(&q.meta.name).cloned())
                        .unwrap_or_else(|| q.meta.clone());
                    let dlq = dlqs.contains(&*meta.name);
                    out.push(super::queues::queue_json(st, &v.name, &meta, Some(&q), dlq));
                }
            }
            Value::Array(out)
        }
        Listing::Node => super::overview::node_json(st),
        Listing::Connections => super::connections::local_connections(st),
        Listing::Channels => super::connections::local_channels(st),
        Listing::Consumers => super::connections::local_consumers(st),
        Listing::Totals => super::overview::local_totals(st),
    }
}
