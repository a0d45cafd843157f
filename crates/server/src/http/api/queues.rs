//! Queues (`/api/queues`): listings, declare and delete through the vhost service, purge, get messages, and Warren's move.

use super::common::*;

/// A queue as RabbitMQ's `/api/queues` shows it, plus `dead_letter_queue` and `alerts`.
pub fn queue_json(st: &Shared, vhost: &str, meta: &QueueMeta, q: Option<&Arc<Queue>>, is_dlq: bool) -> Value {
    let c = q.map(|q| q.counts());
    let (ready, unacked, consumers, bytes) = c
        .map(|c| {
            (
                c.ready as u64,
                c.unacked as u64,
                c.consumers as u64,
                c.ready_bytes,
            )
        })
        .unwrap_or_default();
    let (ready_ram, paged_out) = q.map(|q| q.memory_counts()).unwrap_or_default();
    let counters = q
        .map(|q| {
            [
                q.stats.published.load(Ordering::Relaxed),
                q.stats.delivered.load(Ordering::Relaxed),
                q.stats.acked.load(Ordering::Relaxed),
            ]
        })
        .unwrap_or_default();
    let (rates, growth, alerts) = {
        let s = st.sampler.lock();
        let (r, g) = s.queue_rates(vhost, &meta.name);
        let alerts: Vec<Value> = s
            .alerts
            .values()
            .filter(|a| a.vhost == vhost && *a.queue == *meta.name)
            .map(|a| a.to_json())
            .collect();
        (r, g, alerts)
    };
    let qtype = if meta.args.quorum { "quorum" } else { "classic" };
    let policy = st.broker.vhost(vhost).and_then(|v| v.queue_policy(meta));
    // A remote queue (clustering) is shown with its home node.
    let home = st.broker.vhost(vhost).and_then(|v| v.home_node(meta.id));
    let policy_definition = policy
        .as_ref()
        .map(|p| table_to_json(&p.definition))
        .unwrap_or_else(|| json!({}));
    let mut item = json!({
        "name": meta.name.to_string(), "vhost": vhost, "durable": meta.durable,
        "auto_delete": meta.auto_delete, "exclusive": meta.exclusive_owner.is_some(),
        "arguments": table_to_json(&meta.arguments), "type": qtype, "state": "running",
        "node": home.unwrap_or_else(|| st.node()), "policy": policy.map(|p| p.name), "operator_policy": null,
        "effective_policy_definition": policy_definition, "exclusive_consumer_tag": null,
        "messages": ready + unacked, "messages_details": rate(0.0),
        "messages_ready": ready, "messages_ready_details": rate(0.0),
        "messages_unacknowledged": unacked, "messages_unacknowledged_details": rate(0.0),
        "message_bytes": bytes, "message_bytes_ready": bytes,
        "memory": bytes + 1024,
        "messages_ready_ram": ready_ram, "messages_paged_out": paged_out,
        "consumers": consumers,
        "message_stats": {
            "publish": counters[0], "publish_details": rate(rates[0]),
            "deliver_get": counters[1], "deliver_get_details": rate(rates[1]),
            "ack": counters[2], "ack_details": rate(rates[2]),
        },
        "dead_letter_queue": is_dlq,
        "growth_per_minute": (growth * 10.0).round() / 10.0,
        "alerts": alerts,
    });
    // A quorum queue's Raft group, as this node sees it (a member of it).
    let group = st
        .broker
        .cluster()
        .filter(|_| meta.args.quorum)
        .and_then(|c| c.group_status(&crate::quorum::group_id(vhost, &meta.name)));
    if let Some(g) = group {
        item["leader"] = json!(g.leader);
        item["members"] = json!(g.members);
        if !g.lag.is_empty() {
            // Shown by the leader's node (which renders the queue's item).
            item["online"] = json!(g.online);
            item["member_lag"] = json!(g.lag);
        }
        if let Some(r) = st.broker.quorum.get(vhost, &meta.name) {
            // This member's copy of the replicated messages (as far as it has applied).
            item["replica_messages"] = json!(r.len());
            // Where it keeps their records: bytes held in memory, records on disk.
            let (held, on_disk) = r.usage();
            item["replica_memory_bytes"] = json!(held);
            item["replica_messages_on_disk"] = json!(on_disk);
            item["replica_records_recovered"] = json!(r.recovered());
        }
    }
    item
}

/// One queue of a listing: rendered from the live topology when its page is written, or
/// as its home node rendered it (a queue of another cluster member).
pub(super) struct QueueItem {
    vhost: Arc<VHost>,
    name: ShortStr,
    dlq: bool,
    home: Option<Value>,
}

/// The queues of `v` by name: a light snapshot; [`crate::http::listing`] renders them.
pub(super) fn queues_of(v: &Arc<VHost>) -> Vec<QueueItem> {
    let dlqs = dlq::vhost_dead_letter_queues(v);
    let mut names: Vec<ShortStr> = v.read_topology(|t| t.queues().map(|m| m.name.clone()).collect());
    names.sort();
    names
        .into_iter()
        .map(|name| QueueItem {
            vhost: v.clone(),
            dlq: dlqs.contains(&*name),
            name,
            home: None,
        })
        .collect()
}

/// `items` (the queues of `vhosts`) with the figures their home nodes answer for the queues
/// of other members, and the other members' queues this node has no definition of (transient
/// and exclusive ones); a queue whose home did not answer is listed as `down`.
async fn with_remote(
    st: &Shared,
    vhost: Option<&str>,
    mut items: Vec<QueueItem>,
    vhosts: &[Arc<VHost>],
) -> Vec<QueueItem> {
    if st.broker.cluster().is_none() {
        return items;
    }
    let (mut remote, answered) = super::remote::remote_queues(st, vhost, None).await;
    for i in items.iter_mut() {
        let Some(node) = i.vhost.remote_home(&i.name) else {
            continue;
        };
        let key = (i.vhost.name.clone(), i.name.to_string());
        i.home = match remote.remove(&key) {
            Some(q) => Some(q),
            None if answered.contains(&node) => None,
            None => down_json(st, &i.vhost, &i.name),
        };
    }
    for ((vh, name), q) in remote {
        let Some(v) = vhosts.iter().find(|v| v.name == vh) else {
            continue;
        };
        if v.read_topology(|t| t.queue(&name).is_none()) {
            items.push(QueueItem {
                vhost: v.clone(),
                name: ShortStr::from(name.as_str()),
                dlq: false,
                home: Some(q),
            });
        }
    }
    items.sort_by(|a, b| (&a.vhost.name, &a.name).cmp(&(&b.vhost.name, &b.name)));
    items
}

/// A queue of another member whose home did not answer: its definition, `state: down`.
fn down_json(st: &Shared, v: &VHost, name: &str) -> Option<Value> {
    let meta = v.read_topology(|t| t.queue(name).cloned())?;
    let mut q = queue_json(st, &v.name, &meta, None, false);
    q["state"] = json!("down");
    Some(q)
}

pub(super) fn queues_reply(st: Shared, query: Option<String>, items: Vec<QueueItem>) -> Response {
    crate::http::listing::reply(
        query.as_deref(),
        true,
        items,
        |i| &i.name,
        move |i| {
            if let Some(q) = &i.home {
                return Some(q.clone());
            }
            let meta = i.vhost.read_topology(|t| t.queue(&i.name).cloned())?;
            let handle = i.vhost.queue_by_id(meta.id);
            Some(queue_json(&st, &i.vhost.name, &meta, handle.as_ref(), i.dlq))
        },
    )
}

pub(super) async fn queues_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let vhosts = listed_vhosts(&st, &c);
    let items = vhosts.iter().flat_map(queues_of).collect();
    let items = with_remote(&st, None, items, &vhosts).await;
    queues_reply(st, q, items)
}

pub(super) async fn queues_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    let items = with_remote(&st, Some(&vh), queues_of(&v), std::slice::from_ref(&v)).await;
    Ok(queues_reply(st, q, items))
}

pub(super) fn find_queue(v: &VHost, name: &str) -> ApiResult<(QueueMeta, Arc<Queue>, bool)> {
    let meta = v
        .read_topology(|t| t.queue(name).cloned())
        .ok_or_else(ApiError::not_found)?;
    let is_dlq = dlq::vhost_dead_letter_queues(v).contains(name);
    let q = v.queue_by_id(meta.id).ok_or_else(ApiError::not_found)?;
    Ok((meta, q, is_dlq))
}

pub(super) async fn queue_get(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = vhost(&st, &vh)?;
    if let Some(node) = v.remote_home(&name) {
        // Asked of its home node; not answering: `down`.
        let (mut remote, answered) = super::remote::remote_queues(&st, Some(&vh), Some(&name)).await;
        return match remote.remove(&(v.name.clone(), name.clone())) {
            Some(q) => ok(q),
            None if answered.contains(&node) => match v.read_topology(|t| t.queue(&name).cloned()) {
                Some(meta) => ok(queue_json(&st, &v.name, &meta, None, false)),
                None => Err(ApiError::not_found()),
            },
            None => down_json(&st, &v, &name)
                .map(ok)
                .unwrap_or_else(|| Err(ApiError::not_found())),
        };
    }
    let (meta, q, is_dlq) = find_queue(&v, &name)?;
    ok(queue_json(&st, &v.name, &meta, Some(&q), is_dlq))
}

/// `PUT /api/queues/{vhost}/{name}` body.
#[derive(Debug, Deserialize)]
pub struct QueueBody {
    /// Durable.
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub durable: bool,
    /// Auto-delete.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub auto_delete: bool,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// Declares a queue through the vhost's one declare path (limits, definition record, handle).
/// Returns whether it was created.
pub fn declare_queue(v: &Arc<VHost>, name: &str, b: &QueueBody, limit: Option<u32>) -> ApiResult<bool> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request("invalid queue name"));
    }
    let args = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    let (_, created) = v.declare_queue(
        &QueueDeclare {
            name,
            passive: false,
            durable: b.durable,
            exclusive: false,
            auto_delete: b.auto_delete,
            arguments: &args,
            owner: warren_core::ids::ConnId(0),
            server_named: false,
        },
        limit,
    )?;
    Ok(created)
}

/// Declares a queue as `PUT /api/queues/{vhost}/{name}` does (and a definitions import): a
/// new durable queue of a clustered node on every node through the cluster, with this node as
/// its home; an existing remote queue checked against its definition; anything else through
/// [`declare_queue`]. Whether it was created.
pub async fn put_queue(st: &Shared, v: &Arc<VHost>, name: &str, b: &QueueBody) -> ApiResult<bool> {
    if let Ok(args) = json_to_table(&b.arguments) {
        warren_core::args::QueueArgs::check_declared(&args, name, &v.name)?;
    }
    if st.broker.cluster().is_some() && b.durable {
        if name.is_empty() || name.len() > 255 {
            return Err(ApiError::bad_request("invalid queue name"));
        }
        let arguments = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
        match v.read_topology(|t| t.queue(name).map(|q| q.id)) {
            None => {
                let m = warren_codec::methods::QueueDeclare {
                    queue: ShortStr::from(name),
                    durable: true,
                    auto_delete: b.auto_delete,
                    arguments,
                    ..Default::default()
                };
                let o = ApiError::define(&st.broker, Change::define(&v.name, &st.node(), m)).await?;
                return Ok(o == Outcome::Created);
            }
            Some(id) if v.home_node(id).is_some() => {
                v.redeclare_remote_queue(&QueueDeclare {
                    name,
                    passive: false,
                    durable: true,
                    exclusive: false,
                    auto_delete: b.auto_delete,
                    arguments: &arguments,
                    owner: warren_core::ids::ConnId(0),
                    server_named: false,
                })?;
                return Ok(false);
            }
            Some(_) => {}
        }
    }
    declare_queue(v, name, b, st.broker.queue_limit(&v.name))
}

pub(super) async fn queue_put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let b: QueueBody = parse_body(&body)?;
    Ok(created_or_updated(put_queue(&st, &v, &name, &b).await?))
}

pub(super) async fn queue_delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let meta = v
        .read_topology(|t| t.queue(&name).cloned())
        .ok_or_else(ApiError::not_found)?;
    let (ready, consumers) = match (v.queue_by_id(meta.id), v.home_node(meta.id)) {
        (Some(q), _) => {
            let c = q.counts();
            (c.ready, c.consumers)
        }
        // The conditions are checked against the home node's counts.
        (None, Some(node)) if query_flag(&query, "if-unused") || query_flag(&query, "if-empty") => {
            let f = st.broker.forwarder().ok_or_else(ApiError::not_found)?;
            f.counts(&node, &vh, &name)
                .await
                .map_err(|e| home_error(e.into_error(&name, &vh, &node)))?
        }
        (None, Some(_)) => (0, 0),
        (None, None) => return Err(ApiError::not_found()),
    };
    if query_flag(&query, "if-unused") && consumers > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' in use"
        )));
    }
    if query_flag(&query, "if-empty") && ready > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' is not empty"
        )));
    }
    if st.broker.cluster().is_some() && meta.durable && meta.exclusive_owner.is_none() {
        let m = warren_codec::methods::QueueDelete {
            queue: meta.name.clone(),
            ..Default::default()
        };
        ApiError::define(&st.broker, Change::define(&vh, &st.node(), m)).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    v.delete_queue(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// A home node's refusal as the API answers it; its being down is a 404 naming it (RabbitMQ
/// 4's text for a down queue), not the bare "Not Found".
fn home_error(e: warren_core::AmqpError) -> ApiError {
    match e.code {
        warren_codec::ReplyCode::NotFound => ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "Object Not Found", "reason": e.reply_text()}),
        },
        _ => e.into(),
    }
}

pub(super) async fn queue_purge(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    if let Some(node) = v.remote_home(&name)
        && let Some(f) = st.broker.forwarder()
    {
        // Purged by its home node.
        f.purge(&node, &vh, &name)
            .await
            .map_err(|e| home_error(e.into_error(&name, &vh, &node)))?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let (_, q, _) = find_queue(&v, &name)?;
    q.purge();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/get` body.
#[derive(Debug, Deserialize)]
pub(super) struct GetBody {
    #[serde(default = "one", deserialize_with = "lenient::usize")]
    count: usize,
    #[serde(default = "requeue_true")]
    ackmode: String,
    #[serde(default = "auto")]
    encoding: String,
    #[serde(default, deserialize_with = "lenient::opt_usize")]
    truncate: Option<usize>,
}
pub(super) fn one() -> usize {
    1
}
pub(super) fn requeue_true() -> String {
    "ack_requeue_true".into()
}
pub(super) fn auto() -> String {
    "auto".into()
}

/// The parts of a request a handler hands over to another member ([`super::remote::hand_over`]).
pub(super) type Parts = (axum::http::Method, axum::http::Uri, axum::http::HeaderMap);

/// `POST /api/queues/{vhost}/{name}/get`: on a queue another member is home to (or serves,
/// for a quorum queue), run by that member.
pub(super) async fn queue_get_messages(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    (method, uri, headers): Parts,
    body: Bytes,
) -> Response {
    if let Some(node) = vhost(&st, &vh).ok().and_then(|v| v.remote_home(&name)) {
        return super::remote::hand_over(&st, &node, &c, &method, &uri, &headers, body).await;
    }
    get_messages(&st, &vh, &name, &body).into_response()
}

fn get_messages(st: &Shared, vh: &str, name: &str, body: &[u8]) -> J {
    let v = vhost(st, vh)?;
    let b: GetBody = parse_body(body)?;
    let settle: Option<Option<Return>> = match b.ackmode.as_str() {
        "ack_requeue_true" | "reject_requeue_true" => Some(Some(Return::Returned)),
        "ack_requeue_false" => None,
        "reject_requeue_false" => Some(None),
        other => return Err(ApiError::bad_request(format!("unknown ackmode {other}"))),
    };
    if !matches!(b.encoding.as_str(), "auto" | "base64") {
        return Err(ApiError::bad_request(format!("unknown encoding {}", b.encoding)));
    }
    let (_, q, _) = find_queue(&v, name)?;
    let key = st.op_key();
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..b.count.min(10_000) {
        let Some((d, remaining)) = q.get(key, false) else {
            break;
        };
        st.broker.metrics.delivered.fetch_add(1, Ordering::Relaxed);
        seqs.push(d.seq);
        let m = &d.msg;
        let body = match b.truncate {
            Some(n) if n < m.body.len() => &m.body[..n],
            _ => &m.body[..],
        };
        let (payload, enc) = encode_payload(body, &b.encoding);
        out.push(json!({
            "payload_bytes": m.body.len(),
            "redelivered": d.redelivered,
            "exchange": m.exchange.to_string(),
            "routing_key": m.routing_key.to_string(),
            "message_count": remaining,
            "properties": props_to_json(&m.properties),
            "payload": payload,
            "payload_encoding": enc,
        }));
    }
    match settle {
        None => {
            q.ack(&seqs);
            st.broker
                .metrics
                .acked
                .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        }
        Some(how) => q.reject(&seqs, how),
    }
    ok(Value::Array(out))
}

/// `POST /api/queues/{vhost}/{name}/move` (Warren's dead-letter move): on a queue another
/// member is home to, run by that member.
pub(super) async fn queue_move(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    (method, uri, headers): Parts,
    body: Bytes,
) -> Response {
    if let Some(node) = vhost(&st, &vh).ok().and_then(|v| v.remote_home(&name)) {
        return super::remote::hand_over(&st, &node, &c, &method, &uri, &headers, body).await;
    }
    move_messages(&st, &c, &vh, &name, &body).into_response()
}

fn move_messages(st: &Shared, c: &Caller, vh: &str, name: &str, body: &[u8]) -> J {
    let v = vhost(st, vh)?;
    let req: dlq::MoveRequest = parse_body(body)?;
    // `read` on the DLQ is the route's rule; `write` on where the messages go (the default
    // exchange unless a target names another).
    let dest = req.target.as_ref().map_or("", |t| exchange_name(&t.exchange));
    c.check(
        &st.broker,
        vh,
        crate::access::Resource::Exchange,
        dest,
        crate::auth::Access::Write,
    )
    .map_err(|e| ApiError {
        status: StatusCode::UNAUTHORIZED,
        body: json!({"error": "not_authorised", "reason": e.reply_text()}),
    })?;
    let (_, q, _) = find_queue(&v, name)?;
    let key = st.op_key();
    let report = dlq::move_messages(&v, &q, &req, key);
    if !req.dry_run {
        tracing::info!(vhost = %vh, queue = %name, moved = %report["moved"], failed = report["failed"].as_array().map_or(0, |a| a.len()), "dead-lettered messages moved");
    }
    ok(report)
}
