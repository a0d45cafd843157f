//! Exchanges (`/api/exchanges`): listings, declare and delete through the vhost service, and publish.

use super::common::*;

pub fn exchange_json(vhost: &str, x: &ExchangeMeta) -> Value {
    json!({
        "name": x.name.to_string(), "vhost": vhost, "type": x.kind.name(), "durable": x.durable,
        "auto_delete": x.auto_delete, "internal": x.internal, "arguments": table_to_json(&x.arguments),
        "user_who_performed_action": "rmq-internal", "policy": null,
    })
}

/// The exchanges of `v` by name (a light snapshot, rendered by [`exchanges_reply`]).
pub(super) fn exchanges_of(v: &Arc<VHost>) -> Vec<(Arc<VHost>, ShortStr)> {
    let mut names: Vec<ShortStr> = v.read_topology(|t| t.exchanges().map(|x| x.name.clone()).collect());
    names.sort();
    names.into_iter().map(|n| (v.clone(), n)).collect()
}

pub(super) fn exchanges_reply(query: Option<String>, items: Vec<(Arc<VHost>, ShortStr)>) -> Response {
    crate::http::listing::reply(
        query.as_deref(),
        true,
        items,
        |(_, n)| n,
        |(v, n)| v.read_topology(|t| t.exchange(n).map(|x| exchange_json(&v.name, x))),
    )
}

pub(super) async fn exchanges_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    exchanges_reply(q, listed_vhosts(&st, &c).iter().flat_map(exchanges_of).collect())
}

pub(super) async fn exchanges_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    Ok(exchanges_reply(q, exchanges_of(&v)))
}

pub(super) async fn exchange_get(State(st): State<Shared>, Path((vh, name)): Path<(String, String)>) -> J {
    let v = vhost(&st, &vh)?;
    let x = v.read_topology(|t| {
        t.exchange(exchange_name(&name))
            .map(|x| exchange_json(&v.name, x))
    });
    ok(x.ok_or_else(ApiError::not_found)?)
}

/// `PUT /api/exchanges/{vhost}/{name}` body.
#[derive(Debug, Deserialize)]
pub struct ExchangeBody {
    /// Type name.
    #[serde(rename = "type", default = "direct")]
    pub kind: String,
    /// Durable.
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub durable: bool,
    /// Auto-delete.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub auto_delete: bool,
    /// Internal.
    #[serde(default, deserialize_with = "lenient::bool")]
    pub internal: bool,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// Declares an exchange through the vhost's one declare path. Returns whether it was created.
pub fn declare_exchange(v: &VHost, name: &str, b: &ExchangeBody) -> ApiResult<bool> {
    let args = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    Ok(v.declare_exchange(&ExchangeDeclare {
        name,
        kind: &b.kind,
        passive: false,
        durable: b.durable,
        auto_delete: b.auto_delete,
        internal: b.internal,
        arguments: &args,
    })?)
}

/// Declares an exchange as `PUT /api/exchanges/{vhost}/{name}` does (and a definitions
/// import): a new durable exchange of a clustered node on every node through the cluster
/// ([`Change::Define`]), anything else through [`declare_exchange`]. Whether it was created.
pub async fn put_exchange(st: &Shared, v: &VHost, name: &str, b: &ExchangeBody) -> ApiResult<bool> {
    if st.broker.cluster().is_some() && b.durable && !v.read_topology(|t| t.exchange(name).is_some()) {
        let m = warren_codec::methods::ExchangeDeclare {
            exchange: ShortStr::from(name),
            kind: ShortStr::from(b.kind.as_str()),
            durable: true,
            auto_delete: b.auto_delete,
            internal: b.internal,
            arguments: json_to_table(&b.arguments).map_err(ApiError::bad_request)?,
            ..Default::default()
        };
        let o = ApiError::define(&st.broker, Change::define(&v.name, &st.node(), m)).await?;
        return Ok(o == Outcome::Created);
    }
    declare_exchange(v, name, b)
}

pub(super) async fn exchange_put(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let b: ExchangeBody = parse_body(&body)?;
    Ok(created_or_updated(
        put_exchange(&st, &v, exchange_name(&name), &b).await?,
    ))
}

pub(super) async fn exchange_delete(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let v = vhost(&st, &vh)?;
    let name = exchange_name(&name);
    let Some(durable) = v.read_topology(|t| t.exchange(name).map(|x| x.durable)) else {
        return Err(ApiError::not_found());
    };
    if st.broker.cluster().is_some() && durable {
        let m = warren_codec::methods::ExchangeDelete {
            exchange: ShortStr::from(name),
            if_unused: query_flag(&q, "if-unused"),
            ..Default::default()
        };
        ApiError::define(&st.broker, Change::define(&vh, &st.node(), m)).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    v.delete_exchange(name, query_flag(&q, "if-unused"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/exchanges/{vhost}/{name}/publish` body.
#[derive(Debug, Deserialize)]
pub(super) struct PublishBody {
    #[serde(default)]
    properties: Value,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    payload_encoding: String,
}

pub(super) async fn exchange_publish(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    Path((vh, name)): Path<(String, String)>,
    body: Bytes,
) -> J {
    let v = vhost(&st, &vh)?;
    let b: PublishBody = parse_body(&body)?;
    let exchange = exchange_name(&name);
    if !exchange.is_empty() && !v.read_topology(|t| t.exchange(exchange).is_some()) {
        return Err(ApiError::not_found());
    }
    let properties = json_to_props(&b.properties).map_err(ApiError::bad_request)?;
    // What AMQP checks on basic.publish besides `write` (checked by the route's rule).
    c.check_user_id(properties.user_id.as_deref())
        .and_then(|()| c.check_topic_write(&st.broker, &vh, exchange, &b.routing_key))
        .map_err(|e| ApiError::amqp_failure(&e))?;
    let payload = decode_payload(&b.payload, &b.payload_encoding).map_err(ApiError::bad_request)?;
    if b.routing_key.len() > 255 {
        return Err(ApiError::bad_request("routing key too long"));
    }
    let msg = Arc::new(Message::new(exchange, &b.routing_key, properties, payload));
    let ttl = msg.expiration_ms().map_err(ApiError::bad_request)?;
    st.broker.metrics.published.fetch_add(1, Ordering::Relaxed);
    let mut o = v.publish(msg.clone(), ttl, now_ms())?;
    o.replicate_unconfirmed(&msg, ttl);
    let remote = o.remote.len();
    if let Some(f) = st.broker.forwarder() {
        // No confirm to wait for: copies for queues of other nodes go as unconfirmed
        // publishes do.
        for (node, queues) in o.remote {
            f.publish(&node, &v.name, queues, msg.clone(), ttl, None);
        }
    }
    if o.enqueued + o.rejected + o.duplicates + remote == 0 {
        st.broker.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
    }
    ok(json!({"routed": o.enqueued + o.duplicates + remote > 0}))
}
