//! Connections, channels and consumers listings (`/api/connections`, `/api/channels`, `/api/consumers`).

use super::*;

pub(super) fn conn_name(st: &Shared, info: &crate::connection::ConnInfo) -> String {
    match info.peer {
        Some(p) => format!("{p} -> {}", st.amqp_addr),
        None => format!("? -> {}", st.amqp_addr),
    }
}

pub(super) async fn connections(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items: Vec<(String, Arc<crate::connection::ConnShared>)> = st
        .broker
        .connections()
        .into_iter()
        .filter(|c| caller.sees_connection(&c.info.lock().user))
        .map(|c| {
            let name = conn_name(&st, &c.info.lock());
            (name, c)
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    crate::http::listing::reply(
        q.as_deref(),
        true,
        items,
        |(n, _)| n,
        move |(name, c)| {
            let info = c.info.lock().clone();
            let mut conn = json!({
                "name": name, "node": st.node(), "user": info.user, "vhost": info.vhost,
                "channels": info.channels, "state": c.state(crate::broker::now_ms()), "protocol": "AMQP 0-9-1", "type": "network",
                "peer_host": info.peer.map(|p| p.ip().to_string()), "peer_port": info.peer.map(|p| p.port()),
                "host": st.amqp_addr.ip().to_string(), "port": st.amqp_addr.port(),
                "client_properties": table_to_json(&info.client_properties), "connected_at": info.connected_at,
            });
            // Present only when the client named the connection, as in RabbitMQ.
            if let Some(n) = &info.user_provided_name {
                conn["user_provided_name"] = json!(n);
            }
            Some(conn)
        },
    )
}

pub(super) async fn channels(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items = Vec::new();
    for c in st.broker.connections() {
        let info = c.info.lock().clone();
        if !caller.sees_connection(&info.user) {
            continue;
        }
        let name = conn_name(&st, &info);
        for n in 1..=info.channels {
            items.push((format!("{name} ({n})"), n, info.clone()));
        }
    }
    crate::http::listing::reply(
        q.as_deref(),
        true,
        items,
        |(n, _, _)| n,
        move |(cname, n, info)| {
            let name = conn_name(&st, info);
            Some(json!({
                "name": cname, "number": n, "node": st.node(), "user": info.user,
                "vhost": info.vhost, "state": "running",
                "connection_details": {"name": name, "peer_host": info.peer.map(|p| p.ip().to_string()),
                                       "peer_port": info.peer.map(|p| p.port())},
            }))
        },
    )
}

/// One consumer of a listing.
pub(super) type ConsumerItem = (Arc<VHost>, Arc<Queue>, warren_core::queue::ConsumerSpec);

pub(super) fn consumers_of(v: &Arc<VHost>) -> Vec<ConsumerItem> {
    let handles = v.queue_handles();
    let mut out = Vec::new();
    for q in handles {
        for c in q.consumer_specs() {
            out.push((v.clone(), q.clone(), c));
        }
    }
    out
}

/// Consumers are listed (streamed) but not paginated, as RabbitMQ.
pub(super) fn consumers_reply(st: Shared, query: Option<String>, items: Vec<ConsumerItem>) -> Response {
    let conns: std::collections::HashMap<u64, crate::connection::ConnInfo> = st
        .broker
        .connections()
        .iter()
        .map(|c| (c.id, c.info.lock().clone()))
        .collect();
    crate::http::listing::reply(
        query.as_deref(),
        false,
        items,
        |(_, _, c)| &c.tag,
        move |(v, q, c)| {
            let conn_id = c.channel >> 16;
            let number = c.channel & 0xffff;
            let info = conns.get(&conn_id).cloned().unwrap_or_default();
            let cname = conn_name(&st, &info);
            Some(json!({
                "consumer_tag": c.tag.to_string(),
                "queue": {"name": q.meta.name.to_string(), "vhost": v.name},
                "channel_details": {"name": format!("{cname} ({number})"), "number": number,
                                    "connection_name": cname, "node": st.node(), "user": info.user,
                                    "peer_host": info.peer.map(|p| p.ip().to_string()),
                                    "peer_port": info.peer.map(|p| p.port())},
                "ack_required": !c.no_ack, "exclusive": c.exclusive, "prefetch_count": c.prefetch,
                "priority": c.priority, "arguments": {}, "active": true, "activity_status": "up",
            }))
        },
    )
}

pub(super) async fn consumers_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let items = listed_vhosts(&st, &c).iter().flat_map(consumers_of).collect();
    consumers_reply(st, q, items)
}

pub(super) async fn consumers_vhost(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    if !c.lists_vhost(&st.broker, &vh) {
        return Ok(consumers_reply(st, q, Vec::new()));
    }
    Ok(consumers_reply(st, q, consumers_of(&v)))
}
