//! Connections, channels and consumers listings (`/api/connections`, `/api/channels`, `/api/consumers`).

use super::common::*;
use super::remote::Item;
use crate::forward::Listing;
use crate::mailbox::{ChannelShared, ConnInfo, ConnShared};
use warren_core::ids::ChannelKey;

pub(super) fn conn_name(st: &Shared, info: &crate::mailbox::ConnInfo) -> String {
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
    connection_listing(st, &caller, q, None).await
}

/// Whether the caller sees another member's connection or channel `v` (of vhost `vhost`, if
/// given).
fn sees_remote(caller: &Caller, vhost: Option<&str>, v: &Value) -> bool {
    caller.sees_connection(v["user"].as_str().unwrap_or_default())
        && vhost.is_none_or(|vh| v["vhost"].as_str() == Some(vh))
}

/// The connections of every member the caller sees (of vhost `vhost`, if given), as
/// `/api/connections` lists them.
async fn connection_listing(
    st: Shared,
    caller: &Caller,
    q: Option<String>,
    vhost: Option<String>,
) -> Response {
    let mut items: Vec<Item<(String, Arc<ConnShared>)>> = st
        .broker
        .connections()
        .into_iter()
        .filter(|c| {
            let info = c.info.lock();
            caller.sees_connection(&info.user) && vhost.as_ref().is_none_or(|v| *v == info.vhost)
        })
        .map(|c| {
            let name = conn_name(&st, &c.info.lock());
            Item::Local((name, c))
        })
        .collect();
    let remote = super::remote::remote_items(&st, Listing::Connections, |v| {
        sees_remote(caller, vhost.as_deref(), v)
    })
    .await;
    items.extend(Item::remote(remote));
    items.sort_by(|a, b| a.name(|l| &l.0).cmp(b.name(|l| &l.0)));
    crate::http::listing::reply(
        q.as_deref(),
        true,
        items,
        |i| i.name(|l| &l.0),
        move |i| i.render(|(name, c)| Some(conn_json(&st, name, c))),
    )
}

/// This node's connections, as another member's listing asks for them.
pub(super) fn local_connections(st: &Shared) -> Value {
    st.broker
        .connections()
        .iter()
        .map(|c| {
            let name = conn_name(st, &c.info.lock());
            conn_json(st, &name, c)
        })
        .collect()
}

/// This node's channels, as another member's listing asks for them.
pub(super) fn local_channels(st: &Shared) -> Value {
    let consumers = channel_consumers(st);
    st.broker
        .connections()
        .iter()
        .flat_map(|c| {
            let info = c.info.lock().clone();
            channel_items(st, c, &info)
        })
        .map(|i| channel_json(st, &i, &consumers))
        .collect()
}

/// The consumers of this node's queues, as another member's listing asks for them.
pub(super) fn local_consumers(st: &Shared) -> Value {
    let render = consumer_renderer(st.clone());
    st.broker
        .vhosts()
        .iter()
        .flat_map(consumers_of)
        .filter_map(|i| render(&i))
        .collect()
}

/// One connection as RabbitMQ's management API shows it.
fn conn_json(st: &Shared, name: &str, c: &crate::mailbox::ConnShared) -> Value {
    let info = c.info.lock().clone();
    let mut conn = json!({
        "name": name, "node": st.node(), "user": info.user, "vhost": info.vhost,
        "channels": c.channel_count(), "state": c.state(crate::util::now_ms()), "protocol": "AMQP 0-9-1", "type": "network",
        "peer_host": info.peer.map(|p| p.ip().to_string()), "peer_port": info.peer.map(|p| p.port()),
        "host": st.amqp_addr.ip().to_string(), "port": st.amqp_addr.port(),
        "client_properties": table_to_json(&info.client_properties), "connected_at": info.connected_at,
        "recv_oct": c.octets[0].load(Ordering::Relaxed), "send_oct": c.octets[1].load(Ordering::Relaxed),
        "user_who_performed_action": info.user,
    });
    // The broker's limits (what it proposes in connection.tune; a client may settle on less).
    let cfg = &st.broker.config;
    conn["channel_max"] = json!(cfg.channel_max);
    conn["frame_max"] = json!(cfg.frame_max);
    conn["timeout"] = json!(cfg.heartbeat);
    // Present only when the client named the connection, as in RabbitMQ.
    if let Some(n) = &info.user_provided_name {
        conn["user_provided_name"] = json!(n);
    }
    conn
}

/// The connection named `name` (`"PEER -> HOST:PORT"`, as listed), if the caller may see it.
fn find_connection(st: &Shared, caller: &Caller, name: &str) -> Option<Arc<crate::mailbox::ConnShared>> {
    st.broker.connections().into_iter().find(|c| {
        let info = c.info.lock();
        conn_name(st, &info) == name && caller.sees_connection(&info.user)
    })
}

/// RabbitMQ's reason for a connection closed through the API: the `X-Reason` header, or its
/// default (the client reads `CONNECTION_FORCED - ` and this).
fn close_reason(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|r| !r.is_empty())
        .unwrap_or("Closed via management plugin")
        .to_string()
}

/// `GET /api/connections/{name}`.
pub(super) async fn connection_get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    if let Some(c) = find_connection(&st, &caller, &name) {
        return axum::Json(conn_json(&st, &name, &c)).into_response();
    }
    // Another member's (on a clustered node), as RabbitMQ shows any node's connection.
    let remote = super::remote::remote_items(&st, Listing::Connections, |v| {
        v["name"].as_str() == Some(name.as_str()) && sees_remote(&caller, None, v)
    })
    .await;
    match remote.into_iter().next() {
        Some(v) => axum::Json(v).into_response(),
        None => ApiError::not_found().into_response(),
    }
}

/// `DELETE /api/connections/{name}`: closes it with 320 CONNECTION_FORCED and the `X-Reason`
/// header's text, as RabbitMQ (its owner or an administrator may).
pub(super) async fn connection_delete(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    (method, uri, headers): super::queues::Parts,
) -> Response {
    let Some(c) = find_connection(&st, &caller, &name) else {
        // Another member's connection: closed by that member.
        let remote = super::remote::remote_items(&st, Listing::Connections, |v| {
            v["name"].as_str() == Some(name.as_str()) && sees_remote(&caller, None, v)
        })
        .await;
        return match remote.first().and_then(|v| v["node"].as_str()) {
            Some(node) => {
                super::remote::hand_over(&st, node, &caller, &method, &uri, &headers, Bytes::new()).await
            }
            None => ApiError::not_found().into_response(),
        };
    };
    let owner = c.info.lock().user.clone();
    if owner != caller.name && !caller.is_admin() {
        return crate::http::authz::not_authorised("Not administrator user");
    }
    c.close(warren_codec::ReplyCode::ConnectionForced, close_reason(&headers));
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /api/connections/{name}/channels`.
pub(super) async fn connection_channels(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(c) = find_connection(&st, &caller, &name) {
        let info = c.info.lock().clone();
        return channel_listing(st, q, vec![(c, info)], Vec::new());
    }
    // Another member's connection: its channels as that member lists them.
    let remote = super::remote::remote_items(&st, Listing::Channels, |v| {
        v["connection_details"]["name"].as_str() == Some(name.as_str()) && sees_remote(&caller, None, v)
    })
    .await;
    if remote.is_empty() {
        let known = super::remote::remote_items(&st, Listing::Connections, |v| {
            v["name"].as_str() == Some(name.as_str()) && sees_remote(&caller, None, v)
        })
        .await;
        if known.is_empty() {
            return ApiError::not_found().into_response();
        }
    }
    channel_listing(st, q, Vec::new(), remote)
}

/// `GET /api/vhosts/{vhost}/connections`.
pub(super) async fn vhost_connections(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(vhost): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    connection_listing(st, &caller, q, Some(vhost)).await
}

/// `GET /api/connections/username/{user}`: that user's connections.
pub(super) async fn user_connections(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    // A management user sees its own connections only (an empty list for another user's).
    let visible = caller.sees_connection(&user);
    let mut items: Vec<Value> = st
        .broker
        .connections()
        .into_iter()
        .filter(|c| visible && c.info.lock().user == user)
        .map(|c| {
            let name = conn_name(&st, &c.info.lock());
            conn_json(&st, &name, &c)
        })
        .collect();
    items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    crate::http::listing::reply_json(q.as_deref(), false, items)
}

/// `DELETE /api/connections/username/{user}`: closes every connection of `user`
/// (administrators only), with the `X-Reason` text.
pub(super) async fn user_connections_delete(
    State(st): State<Shared>,
    Path(user): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let reason = close_reason(&headers);
    for c in st.broker.connections() {
        if c.info.lock().user == user {
            c.close(warren_codec::ReplyCode::ConnectionForced, reason.clone());
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn channels(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let conns = visible_conns(&st, &caller, |_| true);
    let remote = super::remote::remote_items(&st, Listing::Channels, |v| sees_remote(&caller, None, v)).await;
    channel_listing(st, q, conns, remote)
}

/// `GET /api/vhosts/{vhost}/channels`: the channels of the vhost's connections the caller
/// sees (RabbitMQ's 404 for a missing vhost).
pub(super) async fn vhost_channels(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    vhost(&st, &vh)?;
    let conns = visible_conns(&st, &caller, |info| info.vhost == vh);
    let remote =
        super::remote::remote_items(&st, Listing::Channels, |v| sees_remote(&caller, Some(&vh), v)).await;
    Ok(channel_listing(st, q, conns, remote))
}

/// `GET /api/channels/{name}` (`"PEER -> HOST:PORT (N)"`, as listed).
pub(super) async fn channel_get(
    State(st): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let consumers = channel_consumers(&st);
    for (c, info) in visible_conns(&st, &caller, |_| true) {
        if let Some(item) = channel_items(&st, &c, &info).into_iter().find(|i| i.0 == name) {
            return axum::Json(channel_json(&st, &item, &consumers)).into_response();
        }
    }
    ApiError::not_found().into_response()
}

/// The connections the caller sees (and `keep` keeps), with their facts.
fn visible_conns(
    st: &Shared,
    caller: &Caller,
    keep: impl Fn(&ConnInfo) -> bool,
) -> Vec<(Arc<ConnShared>, ConnInfo)> {
    st.broker
        .connections()
        .into_iter()
        .map(|c| {
            let info = c.info.lock().clone();
            (c, info)
        })
        .filter(|(_, info)| caller.sees_connection(&info.user) && keep(info))
        .collect()
}

/// Per channel: its consumers and their largest prefetch, from the queues.
type ChannelConsumers = std::collections::HashMap<ChannelKey, (u32, u32)>;

fn channel_consumers(st: &Shared) -> ChannelConsumers {
    let mut out = ChannelConsumers::new();
    for v in st.broker.vhosts() {
        for (_, _, c) in consumers_of(&v) {
            let e = out.entry(c.channel).or_default();
            e.0 += 1;
            e.1 = e.1.max(c.prefetch);
        }
    }
    out
}

/// One open channel of a listing: its name, key, shared state and its connection's facts.
type ChannelItem = (String, ChannelKey, Arc<ChannelShared>, ConnInfo);

/// The open channels of connection `c`, by number.
fn channel_items(st: &Shared, c: &ConnShared, info: &ConnInfo) -> Vec<ChannelItem> {
    let cname = conn_name(st, info);
    let channels = c.channels.lock();
    channels
        .iter()
        .map(|(&n, ch)| {
            (
                format!("{cname} ({n})"),
                ChannelKey::new(c.id, n),
                ch.clone(),
                info.clone(),
            )
        })
        .collect()
}

/// One channel as RabbitMQ's management API shows it (the fields rabbitmqadmin v2 requires
/// included). Unconfirmed and uncommitted publishes and uncommitted acks are as of the
/// connection's last read batch; deliveries acked or rejected inside an open transaction are
/// not counted as unacknowledged (RabbitMQ takes them out of the channel's unacked ones).
fn channel_json(st: &Shared, item: &ChannelItem, consumers: &ChannelConsumers) -> Value {
    let (name, key, ch, info) = item;
    let (consumer_count, prefetch) = consumers.get(key).copied().unwrap_or_default();
    json!({
        "name": name, "number": key.number(), "node": st.node(), "user": info.user,
        "vhost": info.vhost, "state": "running",
        "connection_details": connection_details(st, info),
        "consumer_count": consumer_count, "prefetch_count": prefetch,
        "global_prefetch_count": ch.limit.load(Ordering::Relaxed),
        "confirm": ch.confirm.load(Ordering::Relaxed),
        "transactional": ch.transactional.load(Ordering::Relaxed),
        "messages_unacknowledged": ch.unacked.load(Ordering::Relaxed).saturating_sub(ch.held_by_tx.load(Ordering::Relaxed)),
        "messages_unconfirmed": ch.unconfirmed.load(Ordering::Relaxed),
        "messages_uncommitted": ch.uncommitted.load(Ordering::Relaxed),
        "acks_uncommitted": ch.acks_uncommitted.load(Ordering::Relaxed), "pending_raft_commands": 0,
    })
}

/// `connection_details` of a channel: never `null` fields (rabbitmqadmin v2 requires them).
fn connection_details(st: &Shared, info: &ConnInfo) -> Value {
    json!({"name": conn_name(st, info),
           "peer_host": info.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
           "peer_port": info.peer.map_or(0, |p| p.port())})
}

/// The channels of `conns`, and other members' `remote` ones, as `/api/channels` lists them.
fn channel_listing(
    st: Shared,
    q: Option<String>,
    conns: Vec<(Arc<ConnShared>, ConnInfo)>,
    remote: Vec<Value>,
) -> Response {
    let mut items: Vec<Item<ChannelItem>> = conns
        .iter()
        .flat_map(|(c, info)| channel_items(&st, c, info))
        .map(Item::Local)
        .collect();
    items.extend(Item::remote(remote));
    items.sort_by(|a, b| a.name(|l| &l.0).cmp(b.name(|l| &l.0)));
    let consumers = channel_consumers(&st);
    crate::http::listing::reply(
        q.as_deref(),
        true,
        items,
        |i| i.name(|l| l.0.as_str()),
        move |i| i.render(|l| Some(channel_json(&st, l, &consumers))),
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

/// Renders one consumer of this node's queues as RabbitMQ's `/api/consumers` shows it.
fn consumer_renderer(st: Shared) -> impl Fn(&ConsumerItem) -> Option<Value> + Send + 'static {
    let conns: std::collections::HashMap<warren_core::ids::ConnId, crate::mailbox::ConnInfo> = st
        .broker
        .connections()
        .iter()
        .map(|c| (c.id, c.info.lock().clone()))
        .collect();
    // RabbitMQ's `consumer_timeout` of each consumer, in ms (0: none).
    let timeout = st
        .broker
        .config
        .consumer_timeout
        .map_or(0, |d| d.as_millis() as u64);
    move |(v, q, c)| {
        let conn_id = c.channel.connection();
        let number = c.channel.number();
        // A consumer whose connection just went, or of another member's channel (served
        // through a stand-in here): RabbitMQ's empty `channel_details`.
        let channel_details = match conns.get(&conn_id) {
            Some(info) => {
                let cname = conn_name(&st, info);
                let mut d = connection_details(&st, info);
                d["connection_name"] = json!(cname);
                d["name"] = json!(format!("{cname} ({number})"));
                d["number"] = json!(number);
                d["node"] = json!(st.node());
                d["user"] = json!(info.user);
                d
            }
            None => json!({}),
        };
        Some(json!({
            "consumer_tag": c.tag.to_string(),
            "queue": {"name": q.meta.name.to_string(), "vhost": v.name},
            "channel_details": channel_details,
            "ack_required": !c.no_ack, "exclusive": c.exclusive, "prefetch_count": c.prefetch,
            "priority": c.priority, "arguments": {}, "active": true, "activity_status": "up",
            "consumer_timeout": timeout, "node": st.node(),
        }))
    }
}

/// Consumers are listed (streamed) but not paginated, as RabbitMQ. Other members' consumers
/// (of the queues they are home to) in the listed vhosts follow this node's.
pub(super) async fn consumers_reply(
    st: Shared,
    query: Option<String>,
    items: Vec<ConsumerItem>,
    vhosts: Vec<String>,
) -> Response {
    let mut items: Vec<Item<ConsumerItem>> = items.into_iter().map(Item::Local).collect();
    let remote = super::remote::remote_items(&st, Listing::Consumers, |v| {
        vhosts.iter().any(|vh| v["queue"]["vhost"].as_str() == Some(vh))
    })
    .await;
    items.extend(remote.into_iter().map(|v| {
        let tag = v["consumer_tag"].as_str().unwrap_or_default().to_string();
        Item::Remote(tag, v)
    }));
    let render = consumer_renderer(st);
    crate::http::listing::reply(
        query.as_deref(),
        false,
        items,
        |i| i.name(|(_, _, c)| &c.tag),
        move |i| i.render(&render),
    )
}

pub(super) async fn consumers_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let vhosts = listed_vhosts(&st, &c);
    let items = vhosts.iter().flat_map(consumers_of).collect();
    let names = vhosts.iter().map(|v| v.name.clone()).collect();
    consumers_reply(st, q, items, names).await
}

pub(super) async fn consumers_vhost(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    if !c.lists_vhost(&st.broker, &vh) {
        return Ok(consumers_reply(st, q, Vec::new(), Vec::new()).await);
    }
    Ok(consumers_reply(st, q, consumers_of(&v), vec![vh]).await)
}
