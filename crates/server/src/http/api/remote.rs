//! Cluster-wide listings (issue 19): on a clustered node, `/api/queues`, `/api/connections`,
//! `/api/channels`, `/api/consumers`, `/api/nodes` and `/api/overview`'s totals include the
//! other members' objects, each with its `node`, as RabbitMQ's do.
//!
//! Each member renders its own objects ([`render`]: the queues it is home to, its connections,
//! channels, the consumers of its queues, its node record and totals) with the same JSON code
//! its own listings use; [`install`] makes that its answer to a peer's
//! [`crate::forward::Listing`] request. The node answering an HTTP listing asks every other
//! member at once over the cluster link ([`gather`]), each call bounded by
//! [`LISTING_TIMEOUT`]: a member that does not answer in time is left out (its queues are
//! listed from the replicated definitions with `state: down`, as RabbitMQ 4 shows a classic
//! queue whose node is down), never waited for longer.

use std::collections::HashSet;
use std::time::Duration;

use super::common::*;
use crate::forward::Listing;

/// How long a listing waits for another member's answer.
pub(super) const LISTING_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Every other member's answer to `what`: the member and its JSON (`None`: no answer in time).
/// Empty on a node without clustering.
pub(super) async fn gather(st: &Shared, what: Listing) -> Vec<(String, Option<Value>)> {
    let (Some(c), Some(f)) = (st.broker.cluster(), st.broker.forwarder()) else {
        return Vec::new();
    };
    let calls = c.peer_names().into_iter().map(|node| {
        let what = what.clone();
        async move {
            let got = f.listing(&node, what, LISTING_TIMEOUT).await;
            if let Err(e) = &got {
                tracing::debug!(%node, "no listing from cluster member: {e}");
            }
            let v = got.ok().and_then(|j| serde_json::from_str(&j).ok());
            (node, v)
        }
    });
    futures_util::future::join_all(calls).await
}

/// The other members' items of kind `what` that `keep` keeps (every answer is a JSON array).
pub(super) async fn remote_items(st: &Shared, what: Listing, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    gather(st, what)
        .await
        .into_iter()
        .filter_map(|(_, v)| match v {
            Some(Value::Array(items)) => Some(items),
            _ => None,
        })
        .flatten()
        .filter(|v| keep(v))
        .collect()
}

/// A listing item: one of this node's, rendered when its page is written, or another
/// member's, already rendered there.
pub(super) enum Item<L> {
    /// This node's.
    Local(L),
    /// Another member's, with its name.
    Remote(String, Value),
}

impl<L> Item<L> {
    /// Other members' items, named by their `name` field.
    pub(super) fn remote(items: Vec<Value>) -> impl Iterator<Item = Item<L>> {
        items.into_iter().map(|v| {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            Item::Remote(name, v)
        })
    }

    /// Its name, through `local` for this node's.
    pub(super) fn name<'a>(&'a self, local: impl Fn(&'a L) -> &'a str) -> &'a str {
        match self {
            Item::Local(l) => local(l),
            Item::Remote(n, _) => n,
        }
    }

    /// Its JSON, through `local` for this node's.
    pub(super) fn render(&self, local: impl Fn(&L) -> Option<Value>) -> Option<Value> {
        match self {
            Item::Local(l) => local(l),
            Item::Remote(_, v) => Some(v.clone()),
        }
    }
}

/// The queues the other members are home to, by (vhost, name), and the members that answered.
pub(super) async fn remote_queues(
    st: &Shared,
    vhost: Option<&str>,
    name: Option<&str>,
) -> (
    std::collections::HashMap<(String, String), Value>,
    HashSet<String>,
) {
    let what = Listing::Queues {
        vhost: vhost.map(str::to_string),
        name: name.map(str::to_string),
    };
    let mut queues = std::collections::HashMap::new();
    let mut answered = HashSet::new();
    for (node, v) in gather(st, what).await {
        let Some(Value::Array(items)) = v else {
            continue;
        };
        answered.insert(node);
        for q in items {
            let key = (
                q["vhost"].as_str().unwrap_or_default().to_string(),
                q["name"].as_str().unwrap_or_default().to_string(),
            );
            queues.insert(key, q);
        }
    }
    (queues, answered)
}
