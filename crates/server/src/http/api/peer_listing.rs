//! This node's answer to another cluster member's listing request (issue 19): its own queues,
//! connections, channels, consumers, node record and totals, rendered by the same code its own
//! `/api` listings use; and to a management request about one of its objects another member
//! handed over, run by its own router. The asking side is `super::remote`.

use super::common::*;
use crate::forward::{Listing, ManagementCall};

/// Installs [`render`] as this node's answer to its peers' listing requests, and [`run`] (with
/// the routes `router` makes) for their handed-over management requests (a clustered node
/// only).
pub(crate) fn install(st: &Shared, router: fn(Shared) -> Router) {
    let Some(f) = st.broker.forwarder() else {
        return;
    };
    let weak = Arc::downgrade(st);
    f.set_lister(Box::new(move |what| match weak.upgrade() {
        Some(st) => render(&st, what).to_string(),
        None => "[]".into(),
    }));
    // A weak hold: the forwarder (the broker's) must not keep the HTTP state alive.
    let weak = Arc::downgrade(st);
    f.set_manager(Box::new(move |call| {
        let st = weak.upgrade();
        Box::pin(async move {
            match st {
                Some(st) => run(router(st), call).await,
                None => (503, b"{\"error\":\"shutting down\"}".to_vec()),
            }
        })
    }));
}

/// Runs a handed-over management request through `router` as its caller (authorised again
/// here by the same rules): its status and body.
async fn run(router: Router, call: ManagementCall) -> (u16, Vec<u8>) {
    let mut req = axum::http::Request::builder()
        .method(call.method.as_str())
        .uri(call.path.as_str());
    for (k, v) in &call.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let Ok(mut req) = req.body(axum::body::Body::from(call.body)) else {
        return (400, b"{\"error\":\"bad_request\"}".to_vec());
    };
    req.extensions_mut()
        .insert(crate::http::authz::PeerCaller(call.user));
    // The asking member authenticated the client; the loopback address stands for the link.
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))));
    let resp = match tower::ServiceExt::oneshot(router, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 256 << 20)
        .await
        .unwrap_or_default();
    (status, body.to_vec())
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
