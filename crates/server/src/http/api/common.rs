//! What the `/api` sections share: the imports every handler file uses, the JSON reply type
//! and the vhost lookups and listing helpers.

#![allow(unused_imports)]

pub(super) use std::sync::Arc;
pub(super) use std::sync::atomic::Ordering;

pub(super) use axum::Router;
pub(super) use axum::body::Bytes;
pub(super) use axum::extract::{Extension, Path, RawQuery, State};
pub(super) use axum::http::{StatusCode, header};
pub(super) use axum::response::{IntoResponse, Response};
pub(super) use axum::routing::{get, post};
pub(super) use serde::Deserialize;
pub(super) use serde_json::{Value, json};
pub(super) use warren_codec::{FieldTable, ShortStr};
pub(super) use warren_core::Message;
pub(super) use warren_core::queue::Return;
pub(super) use warren_core::topology::{BindingInfo, ExchangeDeclare, ExchangeMeta, QueueDeclare, QueueMeta};

pub(super) use crate::clustering::{Change, Outcome};
pub(super) use crate::convert::{
    decode_payload, encode_payload, json_to_props, json_to_table, lenient, props_to_json, table_to_json,
};
pub(super) use crate::http::authz::Caller;
pub(super) use crate::http::dlq;
pub(super) use crate::http::shared::{ApiError, ApiResult, Shared, exchange_name, parse_body};
pub(super) use crate::queue::Queue;
pub(super) use crate::util::now_ms;
pub(super) use crate::vhost::BindingRef;
pub(super) use crate::vhost::VHost;

pub(super) type J = ApiResult<axum::Json<Value>>;

/// 201 for a created object, 204 otherwise (a declaration's answer).
pub(super) fn created_or_updated(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
}

pub(super) fn ok(v: Value) -> J {
    Ok(axum::Json(v))
}

pub(super) fn vhost(st: &Shared, name: &str) -> ApiResult<Arc<VHost>> {
    st.broker.vhost(name).ok_or_else(ApiError::not_found)
}

pub(super) fn sorted_vhosts(st: &Shared) -> Vec<Arc<VHost>> {
    let mut v = st.broker.vhosts();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The vhosts whose objects `caller`'s listings include (see [`Caller::lists_vhost`]).
pub(super) fn listed_vhosts(st: &Shared, caller: &Caller) -> Vec<Arc<VHost>> {
    let mut v = sorted_vhosts(st);
    v.retain(|v| caller.lists_vhost(&st.broker, &v.name));
    v
}

pub(super) fn rate(r: f64) -> Value {
    json!({"rate": (r * 10.0).round() / 10.0})
}

pub(super) fn query_flag(q: &Option<String>, name: &str) -> bool {
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == format!("{name}=true") || kv == name)
}

pub(super) fn direct() -> String {
    "direct".into()
}
pub(super) fn yes() -> bool {
    true
}
