//! Cluster-wide listings (issue 19): on a clustered node, `/api/queues`, `/api/connections`,
//! `/api/channels`, `/api/consumers`, `/api/nodes` and `/api/overview`'s totals include the
//! other members' objects, each with its `node`, as RabbitMQ's do.
//!
//! Each member renders its own objects with the same JSON code its own listings use and answers
//! a peer's [`crate::forward::Listing`] request with them (`super::peer_listing`). The node
//! answering an HTTP listing asks every other
//! member at once over the cluster link ([`gather`]), each call bounded by
//! [`LISTING_TIMEOUT`]: a member that does not answer in time is left out (its queues are
//! listed from the replicated definitions with `state: down`, as RabbitMQ 4 shows a classic
//! queue whose node is down), never waited for longer.
//!
//! Requests about one object of another member (a message get or a dead-letter move on a queue
//! it is home to, closing one of its connections) are handed over to it ([`hand_over`]) and
//! answered with its answer, so that operators' tools work through any node.

use std::collections::HashSet;
use std::time::Duration;

use super::common::*;
use crate::forward::Listing;

/// How long a listing waits for another member's answer.
pub(super) const LISTING_TIMEOUT: Duration = Duration::from_secs(2);

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

/// How long a handed-over management request may take (a `get` of many messages, a move).
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Has member `node` run this management request (it holds the object) as `caller`, and
/// answers with its status and body; `503` with the reason when it cannot be reached
/// (RabbitMQ's answer in that case was not compared).
pub(super) async fn hand_over(
    st: &Shared,
    node: &str,
    caller: &Caller,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let Some(f) = st.broker.forwarder() else {
        return ApiError::not_found().into_response();
    };
    let call = crate::forward::ManagementCall {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.to_string()),
        user: caller.name.clone(),
        headers: headers
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-") || *k == header::CONTENT_TYPE)
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    match f.management(node, call, HAND_OVER_TIMEOUT).await {
        Ok((status, body)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(why) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({"error": "service_unavailable", "reason": format!("node '{node}' did not answer: {why}")}),
        }
        .into_response(),
    }
}
