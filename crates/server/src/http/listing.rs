//! Management listings (`/api/queues`, `/api/exchanges`, `/api/bindings`,
//! `/api/connections`, `/api/channels`, `/api/consumers`, `/api/vhosts`, and through
//! [`reply_json`] `/api/users`, `/api/policies`, `/api/permissions`) at a cost proportional to a
//! page, not to the whole broker (issue 21), with RabbitMQ's query parameters (issue 18).
//!
//! A handler snapshots light *items* (names and handles, in RabbitMQ's default order) and
//! passes a `render` function that turns one item into its JSON object. [`reply`] then
//! honours RabbitMQ's query parameters:
//! - `page`, `page_size` (default 100, at most 500), `name` (substring, or a regex with
//!   `use_regex=true`; both only with `page`, as RabbitMQ): the answer is
//!   `{filtered_count, item_count, items, page, page_count, page_size, total_count}` and only the
//!   page's items are rendered;
//! - `sort` (a field, dotted for nested ones: `message_stats.publish`) and `sort_reverse`;
//!   sorting renders each item once to read its key and keeps only the key;
//! - `columns` (comma-separated, dotted paths): each item keeps only those fields.
//!
//! A parameter given twice counts once, the first time (RabbitMQ reads the first). Pagination
//! parameters are checked on every listing (400 as RabbitMQ's pageable ones answer; on the
//! listings it does not page, RabbitMQ 3.10.8 fails them with an empty 500).
//!
//! Without `page` the whole listing is streamed: items are rendered and serialised a chunk at
//! a time as the client reads, never held as one `serde_json::Value` tree or one string.

use std::cmp::Ordering;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::shared::{ApiError, ApiResult};

/// RabbitMQ's default and largest page sizes (`rabbit_mgmt_util`).
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 500;
/// Bytes of serialised items per chunk of a streamed listing.
const CHUNK: usize = 64 * 1024;

/// The listing parameters of a request's query string.
#[derive(Debug, Default)]
struct ListQuery {
    page: Option<(usize, usize)>,
    name: Option<String>,
    use_regex: bool,
    sort: Option<Vec<String>>,
    sort_reverse: bool,
    columns: Option<Vec<Vec<String>>>,
}

/// Decodes one `application/x-www-form-urlencoded` query component.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn dotted(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

impl ListQuery {
    /// `pageable: false` checks the pagination parameters but does not page.
    fn parse(raw: Option<&str>, pageable: bool) -> ApiResult<ListQuery> {
        let mut q = ListQuery::default();
        let (mut page, mut page_size) = (None, None);
        let mut seen = std::collections::HashSet::new();
        for kv in raw.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let (k, v) = (unescape(k), unescape(v));
            if !seen.insert(k.clone()) {
                continue;
            }
            match k.as_str() {
                "page" => page = Some(v),
                "page_size" => page_size = Some(v),
                "name" if !v.is_empty() => q.name = Some(v),
                "use_regex" => q.use_regex = v == "true",
                "sort" if !v.is_empty() => q.sort = Some(dotted(&v)),
                "sort_reverse" => q.sort_reverse = v == "true",
                "columns" if !v.is_empty() => {
                    q.columns = Some(v.split(',').filter(|c| !c.is_empty()).map(dotted).collect())
                }
                _ => {}
            }
        }
        // rabbit_mgmt_util:pagination_params/1: integers, page > 0, 0 < page_size <= 500.
        if let Some(p) = page {
            let int = |s: &str| s.parse::<i64>().map_err(|_| invalid());
            let num = int(&p)?;
            let size = page_size.as_deref().map(int).transpose()?;
            match (num, size) {
                (n, None) if n > 0 => q.page = Some((n as usize, DEFAULT_PAGE_SIZE)),
                (n, Some(s)) if n > 0 && s > 0 && s as usize <= MAX_PAGE_SIZE => {
                    q.page = Some((n as usize, s as usize))
                }
                _ => {
                    return Err(error(
                        "invalid_pagination_parameters",
                        format!(
                            "Invalid pagination parameters: page number {num}, page size {}",
                            size.map_or("undefined".to_string(), |s| s.to_string())
                        ),
                    ));
                }
            }
        }
        if !pageable {
            q.page = None;
        }
        Ok(q)
    }
}

/// A 400 with RabbitMQ's error name.
fn error(name: &str, reason: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({"error": name, "reason": reason}),
    }
}

/// RabbitMQ's answer to a non-integer page or page size, or a bad `name` regex.
fn invalid() -> ApiError {
    ApiError::bad_request("Pagination parameters are invalid")
}

/// A field of `v` by dotted path.
fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// Keeps only the requested columns (dotted paths build nested objects, as RabbitMQ).
fn project(v: Value, columns: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for path in columns {
        let Some(x) = get_path(&v, path) else {
            continue;
        };
        let mut m = &mut out;
        for k in &path[..path.len() - 1] {
            let e = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !e.is_object() {
                *e = Value::Object(Map::new());
            }
            m = e.as_object_mut().expect("object");
        }
        m.insert(path[path.len() - 1].clone(), x.clone());
    }
    // RabbitMQ renders an item with none of the columns as an empty (Erlang) list.
    if out.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Object(out)
    }
}

/// Erlang's term order on the JSON RabbitMQ sorts: number < atom (null, booleans, by name) <
/// object < array < string.
fn term_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> (u8, &'static str) {
        match v {
            Value::Number(_) => (0, ""),
            Value::Bool(false) => (1, "false"),
            Value::Null => (1, "null"),
            Value::Bool(true) => (1, "true"),
            Value::Object(_) => (2, ""),
            Value::Array(_) => (3, ""),
            Value::String(_) => (4, ""),
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = term_cmp(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Answers a listing request: `raw` is the request's query string, `items` the listing in
/// RabbitMQ's default order (vhost, then name), `name` an item's name for `name=` filtering,
/// `render` one item's JSON (`None`: it went away since the snapshot; it is left out).
/// `pageable`: whether RabbitMQ paginates this listing (not bindings, consumers, users,
/// policies nor permissions, whose valid `page` parameters it ignores).
pub fn reply<T, N, R>(raw: Option<&str>, pageable: bool, items: Vec<T>, name: N, render: R) -> Response
where
    T: Send + 'static,
    N: Fn(&T) -> &str,
    R: Fn(&T) -> Option<Value> + Send + 'static,
{
    match reply_inner(raw, pageable, items, name, render) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// [`reply`] for a listing already rendered as JSON objects (small ones: users, policies,
/// permissions), named by their `name` field.
pub fn reply_json(raw: Option<&str>, pageable: bool, items: Vec<Value>) -> Response {
    reply(
        raw,
        pageable,
        items,
        |v| v["name"].as_str().unwrap_or(""),
        |v| Some(v.clone()),
    )
}

fn reply_inner<T, N, R>(
    raw: Option<&str>,
    pageable: bool,
    mut items: Vec<T>,
    name: N,
    render: R,
) -> ApiResult<Response>
where
    T: Send + 'static,
    N: Fn(&T) -> &str,
    R: Fn(&T) -> Option<Value> + Send + 'static,
{
    let q = ListQuery::parse(raw, pageable)?;
    let total = items.len();
    if q.page.is_some()
        && let Some(pat) = &q.name
    {
        if q.use_regex {
            let re = regex::RegexBuilder::new(pat)
                .case_insensitive(true)
                .build()
                .map_err(|_| invalid())?;
            items.retain(|i| re.is_match(name(i)));
        } else {
            let pat = pat.to_lowercase();
            items.retain(|i| name(i).to_lowercase().contains(&pat));
        }
    }
    if let Some(sort) = &q.sort {
        // One rendering per item to read its key; only the key is kept.
        let mut keyed: Vec<(Value, T)> = items
            .into_iter()
            .filter_map(|i| {
                let v = render(&i)?;
                Some((get_path(&v, sort).cloned().unwrap_or(Value::Null), i))
            })
            .collect();
        keyed.sort_by(|a, b| term_cmp(&a.0, &b.0));
        items = keyed.into_iter().map(|(_, i)| i).collect();
    }
    if q.sort_reverse {
        items.reverse();
    }
    let columns = q.columns;
    let shape = move |v: Value| match &columns {
        Some(c) => project(v, c),
        None => v,
    };
    if let Some((page, size)) = q.page {
        let filtered = items.len();
        let offset = (page - 1) * size;
        if offset > filtered {
            return Err(error(
                "page_out_of_range",
                format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
            ));
        }
        let page_items: Vec<Value> = items
            .iter()
            .skip(offset)
            .take(size)
            .filter_map(|i| render(i).map(&shape))
            .collect();
        let body = json!({
            "filtered_count": filtered,
            "item_count": page_items.len(),
            "items": page_items,
            "page": page,
            "page_count": filtered.div_ceil(size),
            "page_size": size,
            "total_count": total,
        });
        return Ok(axum::Json(body).into_response());
    }
    // The full listing, streamed: `[`, items a chunk at a time, `]`.
    let mut rest = items.into_iter();
    let mut first = true;
    let mut done = false;
    let chunks = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK + 4096);
        if first {
            buf.push(b'[');
        }
        while buf.len() < CHUNK {
            let Some(item) = rest.next() else {
                buf.push(b']');
                done = true;
                break;
            };
            let Some(v) = render(&item) else {
                continue;
            };
            if !first {
                buf.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut buf, &shape(v)).expect("serialising JSON to memory");
        }
        Some(Ok::<_, std::convert::Infallible>(Bytes::from(buf)))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_follows_rabbitmq() {
        let q = ListQuery::parse(Some("page=2&page_size=50&name=a%2Bb+c&use_regex=true&sort=message_stats.publish&sort_reverse=true&columns=name,vhost"), true).unwrap();
        assert_eq!(q.page, Some((2, 50)));
        assert_eq!(q.name.as_deref(), Some("a+b c"));
        assert!(q.use_regex && q.sort_reverse);
        assert_eq!(
            q.sort,
            Some(vec!["message_stats".to_string(), "publish".to_string()])
        );
        assert_eq!(q.columns.unwrap().len(), 2);
        assert_eq!(
            ListQuery::parse(Some("page=1"), true).unwrap().page,
            Some((1, 100))
        );
        assert_eq!(ListQuery::parse(Some("page_size=5"), true).unwrap().page, None);
        assert_eq!(ListQuery::parse(Some("page=2"), false).unwrap().page, None);
        assert!(ListQuery::parse(Some("page=x"), false).is_err());
        // The first of a repeated parameter counts, as RabbitMQ's.
        assert_eq!(
            ListQuery::parse(Some("page=1&page_size=1&page_size=2&page=3"), true)
                .unwrap()
                .page,
            Some((1, 1))
        );
        for bad in [
            "page=0",
            "page=x",
            "page=1&page_size=501",
            "page=1&page_size=0",
            "page=-1",
        ] {
            assert!(ListQuery::parse(Some(bad), true).is_err(), "{bad}");
        }
    }

    #[test]
    fn columns_keep_nested_paths() {
        let v = json!({"name": "q", "messages": 3, "message_stats": {"publish": 7, "ack": 1}});
        let cols = vec![dotted("name"), dotted("message_stats.publish"), dotted("missing")];
        assert_eq!(
            project(v, &cols),
            json!({"name": "q", "message_stats": {"publish": 7}})
        );
    }

    #[test]
    fn sort_order_is_erlang_term_order() {
        let mut v = vec![
            json!("b"),
            json!(null),
            json!(10),
            json!("a"),
            json!(2),
            json!(true),
        ];
        v.sort_by(term_cmp);
        assert_eq!(
            v,
            vec![
                json!(2),
                json!(10),
                json!(null),
                json!(true),
                json!("a"),
                json!("b")
            ]
        );
    }
}
