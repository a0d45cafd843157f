//! Bindings (`/api/bindings`, `…/bindings/source|destination`): listings, create and delete through the vhost service.

use super::common::*;
use super::queues::find_queue;

/// RabbitMQ's `properties_key`: the routing key (`~` if empty), plus `~` and a hash of the
/// arguments when there are any.
pub fn props_key(b: &BindingInfo) -> String {
    let key = warren_ctl::client::encode_segment(&b.routing_key);
    if b.arguments.is_empty() {
        return if key.is_empty() { "~".into() } else { key };
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    table_to_json(&b.arguments).to_string().hash(&mut h);
    format!("{key}~{:x}", h.finish())
}

pub(super) fn binding_json(vhost: &str, b: &BindingInfo) -> Value {
    json!({
        "source": b.source.to_string(), "vhost": vhost, "destination": b.destination.to_string(),
        "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
        "routing_key": b.routing_key.to_string(), "arguments": table_to_json(&b.arguments),
        "properties_key": props_key(b),
    })
}

pub(super) fn bindings_of(v: &VHost) -> Vec<BindingInfo> {
    let mut b = v.read_topology(|t| t.bindings());
    b.sort_by(|x, y| {
        (&x.source, &x.destination, &x.routing_key).cmp(&(&y.source, &y.destination, &y.routing_key))
    });
    b
}

/// Bindings are listed (streamed) but not paginated, as RabbitMQ.
pub(super) fn bindings_reply(query: Option<String>, items: Vec<(Arc<VHost>, BindingInfo)>) -> Response {
    crate::http::listing::reply(
        query.as_deref(),
        false,
        items,
        |(_, b)| &b.source,
        |(v, b)| Some(binding_json(&v.name, b)),
    )
}

pub(super) async fn bindings_all(
    State(st): State<Shared>,
    Extension(c): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let mut items = Vec::new();
    for v in listed_vhosts(&st, &c) {
        items.extend(bindings_of(&v).into_iter().map(|b| (v.clone(), b)));
    }
    bindings_reply(q, items)
}

pub(super) async fn bindings_vhost(
    State(st): State<Shared>,
    Path(vh): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    Ok(bindings_reply(
        q,
        bindings_of(&v).into_iter().map(|b| (v.clone(), b)).collect(),
    ))
}

/// The vhost's bindings for which `f` holds, as a listing (sorted, column-picked, as
/// RabbitMQ's; `q` is the query string).
pub(super) fn filtered(
    st: &Shared,
    q: Option<String>,
    vh: &str,
    f: impl Fn(&BindingInfo) -> bool,
) -> ApiResult<Response> {
    let v = vhost(st, vh)?;
    let items = bindings_of(&v)
        .into_iter()
        .filter(|b| f(b))
        .map(|b| (v.clone(), b));
    Ok(bindings_reply(q, items.collect()))
}

pub(super) async fn exchange_bindings_source(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let name = exchange_name(&name).to_string();
    filtered(&st, q, &vh, |b| *b.source == *name)
}

pub(super) async fn exchange_bindings_destination(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    filtered(&st, q, &vh, |b| {
        !b.destination_is_queue && *b.destination == *name
    })
}

pub(super) async fn queue_bindings(
    State(st): State<Shared>,
    Path((vh, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let v = vhost(&st, &vh)?;
    find_queue(&v, &name)?;
    filtered(&st, q, &vh, |b| b.destination_is_queue && *b.destination == *name)
}

pub(super) fn between(
    st: &Shared,
    q: Option<String>,
    vh: &str,
    source: &str,
    dest: &str,
    to_queue: bool,
) -> ApiResult<Response> {
    let v = vhost(st, vh)?;
    let exists = v.read_topology(|t| {
        let dest_exists = if to_queue {
            t.queue(dest).is_some()
        } else {
            t.exchange(dest).is_some()
        };
        dest_exists && t.exchange(exchange_name(source)).is_some()
    });
    if !exists {
        return Err(ApiError::not_found());
    }
    let src = exchange_name(source).to_string();
    filtered(st, q, vh, |b| {
        b.destination_is_queue == to_queue && *b.source == *src && *b.destination == *dest
    })
}

pub(super) async fn bindings_between_q(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    between(&st, q, &vh, &s, &d, true)
}

pub(super) async fn bindings_between_e(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    between(&st, q, &vh, &s, &d, false)
}

/// `POST /api/bindings/…` body.
#[derive(Debug, Deserialize, Default)]
pub struct BindingBody {
    /// Binding key.
    #[serde(default)]
    pub routing_key: String,
    /// Arguments.
    #[serde(default)]
    pub arguments: Value,
}

/// Creates a binding as `POST /api/bindings/…` does (and a definitions import), through the
/// topology's bind rules: a durable binding of a clustered node on every node through the
/// cluster ([`Change::Define`]), anything else on this node.
pub async fn put_binding(
    st: &Shared,
    v: &VHost,
    source: &str,
    dest: &str,
    to_queue: bool,
    b: &BindingBody,
) -> ApiResult<BindingInfo> {
    let args: FieldTable = json_to_table(&b.arguments).map_err(ApiError::bad_request)?;
    let r = BindingRef {
        source,
        destination: dest,
        to_queue,
        routing_key: &b.routing_key,
        arguments: &args,
    };
    if st.broker.cluster().is_some() && v.read_topology(|t| t.is_durable_binding(source, dest, to_queue)) {
        ApiError::define(&st.broker, Change::define(&v.name, &st.node(), r.record(true))).await?;
    } else {
        v.bind(&r, None)?;
    }
    Ok(BindingInfo {
        source: ShortStr::from(source),
        destination: ShortStr::from(dest),
        destination_is_queue: to_queue,
        routing_key: ShortStr::from(b.routing_key.as_str()),
        arguments: args,
    })
}

pub(super) async fn create(
    st: &Shared,
    vh: &str,
    source: &str,
    dest: &str,
    to_queue: bool,
    body: &[u8],
) -> ApiResult<Response> {
    let v = vhost(st, vh)?;
    let b: BindingBody = parse_body(body)?;
    let source = exchange_name(source);
    if source.is_empty() {
        return Err(ApiError::bad_request(
            "operation not permitted on the default exchange",
        ));
    }
    let info = put_binding(st, &v, source, dest, to_queue, &b).await?;
    let kind = if to_queue { "q" } else { "e" };
    let loc = format!(
        "/api/bindings/{}/e/{}/{kind}/{}/{}",
        warren_ctl::client::encode_segment(vh),
        warren_ctl::client::encode_segment(source),
        warren_ctl::client::encode_segment(dest),
        props_key(&info)
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, loc)]).into_response())
}

pub(super) async fn binding_create_q(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(&st, &vh, &s, &d, true, &body).await
}

pub(super) async fn binding_create_e(
    State(st): State<Shared>,
    Path((vh, s, d)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    create(&st, &vh, &s, &d, false, &body).await
}

pub(super) fn find_binding(
    st: &Shared,
    vh: &str,
    s: &str,
    d: &str,
    to_queue: bool,
    props: &str,
) -> ApiResult<BindingInfo> {
    let v = vhost(st, vh)?;
    let src = exchange_name(s);
    bindings_of(&v)
        .into_iter()
        .find(|b| {
            b.destination_is_queue == to_queue
                && *b.source == *src
                && *b.destination == *d
                && (props_key(b) == props || props_key(b) == warren_ctl::client::encode_segment(props))
        })
        .ok_or_else(ApiError::not_found)
}

pub(super) async fn binding_get_q(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> J {
    ok(binding_json(&vh, &find_binding(&st, &vh, &s, &d, true, &p)?))
}

pub(super) async fn binding_get_e(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> J {
    ok(binding_json(&vh, &find_binding(&st, &vh, &s, &d, false, &p)?))
}

pub(super) async fn unbind(
    st: &Shared,
    vh: &str,
    s: &str,
    d: &str,
    to_queue: bool,
    p: &str,
) -> ApiResult<StatusCode> {
    let b = find_binding(st, vh, s, d, to_queue, p)?;
    if b.source.is_empty() {
        return Err(ApiError::bad_request(
            "operation not permitted on the default exchange",
        ));
    }
    let v = vhost(st, vh)?;
    let r = BindingRef {
        source: &b.source,
        destination: &b.destination,
        to_queue,
        routing_key: &b.routing_key,
        arguments: &b.arguments,
    };
    if st.broker.cluster().is_some()
        && v.read_topology(|t| t.is_durable_binding(&b.source, &b.destination, to_queue))
    {
        ApiError::define(&st.broker, Change::define(vh, &st.node(), r.record(false))).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    v.unbind(&r, None)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn binding_delete_q(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    unbind(&st, &vh, &s, &d, true, &p).await
}

pub(super) async fn binding_delete_e(
    State(st): State<Shared>,
    Path((vh, s, d, p)): Path<(String, String, String, String)>,
) -> ApiResult<StatusCode> {
    unbind(&st, &vh, &s, &d, false, &p).await
}
