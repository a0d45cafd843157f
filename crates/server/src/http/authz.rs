//! Management API authorisation (issue 14): RabbitMQ's user tags and vhost permissions applied
//! to every HTTP route by one middleware ([`authorize`]) and one table ([`RULES`]).
//!
//! - Tags: none → no management access (401 `Not management user`); `management` → the vhosts
//!   the user has permissions on; `policymaker` → also policies there; `monitoring` → also a
//!   read-only view of every connection, channel, node and vhost; `administrator` →
//!   everything (users, permissions, definitions, vhosts, objects of every vhost).
//!   `impersonator` grants no management access of its own; it lets a publish through the API
//!   set a `user_id` other than the caller's.
//! - Every route template has one [`Rule`] in [`RULES`]; the middleware matches the request
//!   against the table, authenticates, checks the rule (tag, vhost access, and the
//!   `configure`/`write`/`read` permission on the queue or exchange named in the path, as AMQP
//!   checks it) and hands the handler a [`Caller`]. A request on a route missing from the table
//!   is refused (fail closed). Checks that depend on the body (the `move` destination, topic
//!   permissions and `user_id` on publish) call [`Caller::check`] from the handler.
//! - Listings are filtered by [`Caller::lists_vhost`] / [`Caller::sees_connection`].
//! - `GET /` and `GET /ui/app.js` (the management UI, [`Rule::Public`]) need no credentials:
//!   they hold no data; the page shows a login form and authenticates every `/api` call.
//!
//! Bodies and codes are RabbitMQ 3.10's (checked against a running RabbitMQ): missing
//! credentials 401 with an empty body and `WWW-Authenticate`; wrong ones 401
//! `{"error":"not_authorized","reason":"Login failed"}`; a missing tag or vhost 401
//! `{"error":"not_authorised","reason":…}`. One difference: a request carrying an
//! `X-Requested-With` header (the UI's fetches send one) gets its 401 without
//! `WWW-Authenticate`, so a browser never opens its native credentials prompt over the UI's
//! login form (RabbitMQ always sends the header); clients that do not send it (curl,
//! rabbitmqadmin, `warrenctl`) see RabbitMQ's answers unchanged.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::shared::{ApiError, Shared};
use crate::access::{Resource, refused};
use crate::auth::Access;
use crate::broker::Broker;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No credentials needed: the management UI's page (static, no data of its own).
    Public,
    /// Any `management`, `policymaker`, `monitoring` or `administrator` user (listings are
    /// filtered by the handler).
    Management,
    /// `monitoring` or `administrator`.
    Monitor,
    /// `administrator`.
    Admin,
    /// A management user with access to the `{vhost}` of the path (administrators: any).
    Vhost,
    /// `policymaker` or `administrator` with access to `{vhost}`.
    Policymaker,
    /// `/metrics`: public when `--metrics-public`, otherwise as [`Rule::Monitor`].
    Metrics,
    /// [`Rule::Vhost`] + `configure` on the `{name}` queue.
    ConfigureQueue,
    /// [`Rule::Vhost`] + `configure` on the `{name}` exchange.
    ConfigureExchange,
    /// [`Rule::Vhost`] + `read` on the `{name}` queue (purge).
    Purge,
    /// [`Rule::Vhost`] + `read` on the `{name}` queue (get, move; 401 with AMQP's text).
    ReadQueue,
    /// [`Rule::Vhost`] + `write` on the `{name}` exchange (400 with AMQP's text, as RabbitMQ).
    Publish,
    /// [`Rule::Vhost`] + `write` on the `{dest}` queue and `read` on the `{source}` exchange.
    BindQueue,
    /// [`Rule::Vhost`] + `write` on the `{dest}` exchange and `read` on the `{source}` one.
    BindExchange,
}

/// Route templates (axum's syntax) and methods → rule. Every route the router registers must
/// be here (the route walk in `tests/authz.rs` checks it); anything else is refused.
pub const RULES: &[(&str, &str, Rule)] = &[
    ("GET", "/", Rule::Public),
    ("GET", "/ui/app.js", Rule::Public),
    ("GET", "/metrics", Rule::Metrics),
    ("GET", "/api/overview", Rule::Management),
    ("GET", "/api/nodes", Rule::Monitor),
    ("GET", "/api/cluster", Rule::Admin),
    ("POST", "/api/cluster/join", Rule::Admin),
    ("DELETE", "/api/cluster/nodes/{name}", Rule::Admin),
    ("GET", "/api/whoami", Rule::Management),
    ("GET", "/api/cluster-name", Rule::Management),
    ("PUT", "/api/cluster-name", Rule::Admin),
    ("GET", "/api/auth", Rule::Management),
    ("GET", "/api/extensions", Rule::Management),
    ("GET", "/api/feature-flags", Rule::Admin),
    ("GET", "/api/vhosts", Rule::Management),
    ("GET", "/api/vhosts/{name}", Rule::Admin),
    ("PUT", "/api/vhosts/{name}", Rule::Admin),
    ("DELETE", "/api/vhosts/{name}", Rule::Admin),
    ("GET", "/api/exchanges", Rule::Management),
    ("GET", "/api/exchanges/{vhost}", Rule::Vhost),
    ("GET", "/api/exchanges/{vhost}/{name}", Rule::Vhost),
    ("PUT", "/api/exchanges/{vhost}/{name}", Rule::ConfigureExchange),
    ("DELETE", "/api/exchanges/{vhost}/{name}", Rule::ConfigureExchange),
    ("POST", "/api/exchanges/{vhost}/{name}/publish", Rule::Publish),
    (
        "GET",
        "/api/exchanges/{vhost}/{name}/bindings/source",
        Rule::Vhost,
    ),
    (
        "GET",
        "/api/exchanges/{vhost}/{name}/bindings/destination",
        Rule::Vhost,
    ),
    ("GET", "/api/queues", Rule::Management),
    ("GET", "/api/queues/detailed", Rule::Management),
    ("GET", "/api/queues/{vhost}", Rule::Vhost),
    ("GET", "/api/queues/{vhost}/{name}", Rule::Vhost),
    ("PUT", "/api/queues/{vhost}/{name}", Rule::ConfigureQueue),
    ("DELETE", "/api/queues/{vhost}/{name}", Rule::ConfigureQueue),
    ("DELETE", "/api/queues/{vhost}/{name}/contents", Rule::Purge),
    ("POST", "/api/queues/{vhost}/{name}/get", Rule::ReadQueue),
    ("POST", "/api/queues/{vhost}/{name}/move", Rule::ReadQueue),
    ("GET", "/api/queues/{vhost}/{name}/bindings", Rule::Vhost),
    (
        "POST",
        "/api/queues/quorum/{vhost}/{name}/replicas/add",
        Rule::Admin,
    ),
    (
        "DELETE",
        "/api/queues/quorum/{vhost}/{name}/replicas/delete",
        Rule::Admin,
    ),
    ("POST", "/api/queues/quorum/replicas/on/{node}/grow", Rule::Admin),
    (
        "DELETE",
        "/api/queues/quorum/replicas/on/{node}/shrink",
        Rule::Admin,
    ),
    ("GET", "/api/bindings", Rule::Management),
    ("GET", "/api/bindings/{vhost}", Rule::Vhost),
    ("GET", "/api/bindings/{vhost}/e/{source}/q/{dest}", Rule::Vhost),
    (
        "POST",
        "/api/bindings/{vhost}/e/{source}/q/{dest}",
        Rule::BindQueue,
    ),
    (
        "GET",
        "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}",
        Rule::Vhost,
    ),
    (
        "DELETE",
        "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}",
        Rule::BindQueue,
    ),
    ("GET", "/api/bindings/{vhost}/e/{source}/e/{dest}", Rule::Vhost),
    (
        "POST",
        "/api/bindings/{vhost}/e/{source}/e/{dest}",
        Rule::BindExchange,
    ),
    (
        "GET",
        "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}",
        Rule::Vhost,
    ),
    (
        "DELETE",
        "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}",
        Rule::BindExchange,
    ),
    ("GET", "/api/connections", Rule::Management),
    ("GET", "/api/nodes/{name}", Rule::Monitor),
    ("GET", "/api/nodes/{name}/memory", Rule::Monitor),
    ("GET", "/api/auth/attempts/{name}", Rule::Monitor),
    ("GET", "/api/auth/attempts/{name}/source", Rule::Monitor),
    ("GET", "/api/parameters", Rule::Policymaker),
    ("GET", "/api/parameters/{component}", Rule::Policymaker),
    ("GET", "/api/parameters/{component}/{vhost}", Rule::Policymaker),
    (
        "GET",
        "/api/parameters/{component}/{vhost}/{name}",
        Rule::Policymaker,
    ),
    (
        "PUT",
        "/api/parameters/{component}/{vhost}/{name}",
        Rule::Policymaker,
    ),
    (
        "DELETE",
        "/api/parameters/{component}/{vhost}/{name}",
        Rule::Policymaker,
    ),
    ("GET", "/api/global-parameters", Rule::Policymaker),
    ("GET", "/api/global-parameters/{name}", Rule::Policymaker),
    ("GET", "/api/operator-policies", Rule::Management),
    ("GET", "/api/operator-policies/{vhost}", Rule::Vhost),
    ("GET", "/api/operator-policies/{vhost}/{name}", Rule::Admin),
    ("PUT", "/api/operator-policies/{vhost}/{name}", Rule::Admin),
    ("DELETE", "/api/operator-policies/{vhost}/{name}", Rule::Admin),
    ("GET", "/api/deprecated-features", Rule::Management),
    ("GET", "/api/deprecated-features/used", Rule::Management),
    ("GET", "/api/vhost-limits", Rule::Management),
    ("GET", "/api/vhost-limits/{vhost}", Rule::Vhost),
    ("GET", "/api/user-limits", Rule::Management),
    ("GET", "/api/user-limits/{user}", Rule::Management),
    ("PUT", "/api/vhost-limits/{vhost}/{name}", Rule::Admin),
    ("DELETE", "/api/vhost-limits/{vhost}/{name}", Rule::Admin),
    ("PUT", "/api/user-limits/{user}/{name}", Rule::Admin),
    ("DELETE", "/api/user-limits/{user}/{name}", Rule::Admin),
    ("GET", "/api/connections/{name}", Rule::Management),
    ("DELETE", "/api/connections/{name}", Rule::Management),
    ("GET", "/api/connections/{name}/channels", Rule::Management),
    ("GET", "/api/connections/username/{user}", Rule::Management),
    ("DELETE", "/api/connections/username/{user}", Rule::Admin),
    ("GET", "/api/vhosts/{name}/connections", Rule::Management),
    ("GET", "/api/vhosts/{name}/channels", Rule::Management),
    ("GET", "/api/channels", Rule::Management),
    ("GET", "/api/channels/{name}", Rule::Management),
    ("GET", "/api/consumers", Rule::Management),
    ("GET", "/api/consumers/{vhost}", Rule::Management),
    ("GET", "/api/users", Rule::Admin),
    ("GET", "/api/users/without-permissions", Rule::Admin),
    ("GET", "/api/users/{name}", Rule::Admin),
    ("PUT", "/api/users/{name}", Rule::Admin),
    ("DELETE", "/api/users/{name}", Rule::Admin),
    ("GET", "/api/users/{name}/permissions", Rule::Admin),
    ("GET", "/api/vhosts/{name}/permissions", Rule::Admin),
    ("GET", "/api/permissions", Rule::Admin),
    ("GET", "/api/permissions/{vhost}/{user}", Rule::Admin),
    ("PUT", "/api/permissions/{vhost}/{user}", Rule::Admin),
    ("DELETE", "/api/permissions/{vhost}/{user}", Rule::Admin),
    ("GET", "/api/users/{name}/topic-permissions", Rule::Admin),
    ("GET", "/api/vhosts/{name}/topic-permissions", Rule::Admin),
    ("GET", "/api/topic-permissions", Rule::Admin),
    ("GET", "/api/topic-permissions/{vhost}/{user}", Rule::Admin),
    ("PUT", "/api/topic-permissions/{vhost}/{user}", Rule::Admin),
    ("DELETE", "/api/topic-permissions/{vhost}/{user}", Rule::Admin),
    (
        "DELETE",
        "/api/topic-permissions/{vhost}/{user}/{exchange}",
        Rule::Admin,
    ),
    ("GET", "/api/policies", Rule::Management),
    ("GET", "/api/policies/{vhost}", Rule::Vhost),
    ("GET", "/api/policies/{vhost}/{name}", Rule::Policymaker),
    ("PUT", "/api/policies/{vhost}/{name}", Rule::Policymaker),
    ("DELETE", "/api/policies/{vhost}/{name}", Rule::Policymaker),
    ("GET", "/api/definitions", Rule::Admin),
    ("POST", "/api/definitions", Rule::Admin),
    ("GET", "/api/definitions/{vhost}", Rule::Admin),
    ("POST", "/api/definitions/{vhost}", Rule::Admin),
    ("GET", "/api/quarantine", Rule::Admin),
    ("POST", "/api/quarantine/{dir}/reattach", Rule::Admin),
    ("GET", "/api/alerts", Rule::Management),
    ("GET", "/api/healthchecks/node", Rule::Management),
    ("GET", "/api/healthchecks/alarms", Rule::Management),
    ("GET", "/api/healthchecks/port-listener/{port}", Rule::Management),
    ("GET", "/api/health/checks/alarms", Rule::Management),
    ("GET", "/api/health/checks/local-alarms", Rule::Management),
    ("GET", "/api/health/checks/virtual-hosts", Rule::Management),
    (
        "GET",
        "/api/health/checks/node-is-quorum-critical",
        Rule::Management,
    ),
    (
        "GET",
        "/api/health/checks/node-is-mirror-sync-critical",
        Rule::Management,
    ),
    (
        "GET",
        "/api/health/checks/ready-to-serve-clients",
        Rule::Management,
    ),
    ("GET", "/api/health/checks/port-listener/{port}", Rule::Management),
    (
        "GET",
        "/api/health/checks/protocol-listener/{protocol}",
        Rule::Management,
    ),
    (
        "GET",
        "/api/health/checks/certificate-expiration/{within}/{unit}",
        Rule::Management,
    ),
    (
        "GET",
        "/api/health/checks/below-node-connection-limit",
        Rule::Management,
    ),
    ("GET", "/api/health/checks/is-in-service", Rule::Management),
    ("GET", "/api/aliveness-test/{vhost}", Rule::Vhost),
];

/// A request extension naming the caller of a management request another cluster member
/// authenticated and handed over ([`crate::forward::ManagementCall`]); only this node's own
/// code can set it, never a client.
#[derive(Debug, Clone)]
pub struct PeerCaller(pub String);

/// The authenticated user of a request, handed to handlers as an `Extension`.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// User name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
}

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// `administrator`.
    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// `monitoring` or `administrator`.
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// `policymaker` or `administrator`.
    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    /// Any tag that grants management access.
    pub fn is_management(&self) -> bool {
        self.is_monitor() || self.is_policymaker() || self.has("management")
    }

    /// Whether the caller's listings of queues, exchanges, bindings, consumers, policies and
    /// alerts include `vhost`: administrators see every vhost, others those they have
    /// permissions on (RabbitMQ filters these by login vhosts even for `monitoring`).
    pub fn lists_vhost(&self, broker: &Broker, vhost: &str) -> bool {
        self.is_admin() || broker.users.permission(&self.name, vhost).is_some()
    }

    /// Whether `GET /api/vhosts` shows `vhost`: every vhost for `monitoring`.
    pub fn sees_vhost(&self, broker: &Broker, vhost: &str) -> bool {
        self.is_monitor() || self.lists_vhost(broker, vhost)
    }

    /// Whether connection and channel listings show a connection of `user`: the caller's own,
    /// or all for `monitoring`.
    pub fn sees_connection(&self, user: &str) -> bool {
        self.is_monitor() || self.name == user
    }

    /// `access` to a queue or exchange (`""` is the default exchange) of `vhost`, exactly as
    /// AMQP checks it — administrators included, as in RabbitMQ. `Err` is AMQP's 403 text.
    pub fn check(
        &self,
        broker: &Broker,
        vhost: &str,
        kind: Resource,
        name: &str,
        access: Access,
    ) -> Result<(), warren_core::AmqpError> {
        let checked = if kind == Resource::Exchange && name.is_empty() {
            "amq.default"
        } else {
            name
        };
        let ok = broker
            .users
            .permission(&self.name, vhost)
            .is_some_and(|p| p.allows(access, checked));
        if ok {
            Ok(())
        } else {
            Err(refused(kind, checked, vhost, &self.name))
        }
    }

    /// Topic `write` on `routing_key` of `exchange` for a publish through the API (only topic
    /// exchanges the caller has a topic permission for are checked, as on AMQP).
    pub fn check_topic_write(
        &self,
        broker: &Broker,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), warren_core::AmqpError> {
        let perms = broker.users.topic_permissions_of(&self.name, vhost);
        let Some(p) = perms.iter().find(|p| p.exchange == exchange) else {
            return Ok(());
        };
        let is_topic = broker.vhost(vhost).is_some_and(|v| {
            v.read_topology(|t| {
                t.exchange(exchange)
                    .is_some_and(|x| x.kind == warren_core::topology::ExchangeKind::Topic)
            })
        });
        if !is_topic || p.allows(Access::Write, routing_key) {
            return Ok(());
        }
        Err(warren_core::AmqpError::access_refused(format!(
            "write access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{}'",
            self.name
        )))
    }

    /// RabbitMQ's `user_id` check on a publish: the property must name the caller unless it
    /// has the `impersonator` tag (406 text).
    pub fn check_user_id(&self, user_id: Option<&str>) -> Result<(), warren_core::AmqpError> {
        match user_id {
            Some(u) if u != self.name && !self.has("impersonator") => {
                Err(warren_core::AmqpError::precondition(format!(
                    "user_id property set to '{u}' but authenticated user was '{}'",
                    self.name
                )))
            }
            _ => Ok(()),
        }
    }
}

/// 401 `{"error":"not_authorised","reason":reason}` (no `WWW-Authenticate`: the credentials
/// were fine, the user may not do this).
pub fn not_authorised(reason: impl Into<String>) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "not_authorised", "reason": reason.into()})),
    )
        .into_response()
}

/// 401 for missing credentials: empty body and `WWW-Authenticate`, as RabbitMQ.
fn challenge() -> Response {
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
    );
    r
}

/// 401 for wrong credentials (RabbitMQ spells this one `not_authorized`; [`ApiError`] adds
/// the challenge to every 401).
fn login_failed() -> Response {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        body: json!({"error": "not_authorized", "reason": "Login failed"}),
    }
    .into_response()
}

/// Percent-decodes one path segment (as axum's `Path` does); `None` if not UTF-8.
fn decode_segment(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A request's path parameters: (name in the route template, percent-decoded value).
pub type Params = Vec<(&'static str, String)>;

/// The rule and path parameters of the route template in [`RULES`] that `path` matches
/// (literal segments win over parameters, as in axum's router: `PUT /api/users/without-permissions`
/// is that GET-only route's 405, not `PUT /api/users/{name}`). `Err(true)` when the path
/// matches a template but not for `method` (axum answers 405), `Err(false)` when it matches
/// none (404).
pub fn lookup(method: &Method, path: &str) -> Result<(Rule, Params), bool> {
    let segs: Vec<&str> = path.split('/').collect();
    // (literal segments, method matches, rule, parameters) of the most literal template.
    let mut best: Option<(usize, bool, Rule, Params)> = None;
    for (m, template, rule) in RULES {
        let tsegs: Vec<&'static str> = template.split('/').collect();
        if tsegs.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut literals = 0;
        let matched = tsegs.iter().zip(&segs).all(|(t, s)| {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                match decode_segment(s) {
                    Some(v) if !s.is_empty() => {
                        params.push((name, v));
                        true
                    }
                    _ => false,
                }
            } else {
                literals += 1;
                t == s
            }
        });
        if !matched {
            continue;
        }
        let same_method = *m == method.as_str();
        let better = best
            .as_ref()
            .is_none_or(|(l, ok, _, _)| literals > *l || (literals == *l && same_method && !ok));
        if better {
            best = Some((literals, same_method, *rule, params));
        }
    }
    match best {
        Some((_, true, rule, params)) => Ok((rule, params)),
        Some((_, false, _, _)) => Err(true),
        None => Err(false),
    }
}

fn param<'a>(params: &'a [(&'static str, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Checks `rule` for `caller` on a request with path `params`: `Err` is the response.
pub fn check_rule(
    broker: &Broker,
    caller: &Caller,
    rule: Rule,
    params: &[(&'static str, String)],
) -> Result<(), Response> {
    if rule == Rule::Public {
        return Ok(());
    }
    if !caller.is_management() {
        return Err(not_authorised("Not management user"));
    }
    match rule {
        Rule::Admin if !caller.is_admin() => return Err(not_authorised("Not administrator user")),
        Rule::Monitor | Rule::Metrics if !caller.is_monitor() => {
            return Err(not_authorised("Not monitor user"));
        }
        _ => {}
    }
    if matches!(
        rule,
        Rule::Admin | Rule::Monitor | Rule::Metrics | Rule::Management
    ) {
        return Ok(());
    }
    let vhost = param(params, "vhost");
    // A vhost that does not exist passes here and is the handler's 404, as in RabbitMQ.
    let exists = broker.vhost(vhost).is_some();
    let vhost_ok = !exists || caller.lists_vhost(broker, vhost);
    if rule == Rule::Policymaker {
        return if caller.is_policymaker() && vhost_ok {
            Ok(())
        } else {
            Err(not_authorised("User not authorised to access object"))
        };
    }
    if !vhost_ok {
        return Err(not_authorised("User not authorised to access virtual host"));
    }
    if !exists {
        return Ok(());
    }
    let name = param(params, "name");
    let api_exchange = |n: &str| super::shared::exchange_name(n).to_string();
    let checks: Vec<(Resource, String, Access)> = match rule {
        Rule::ConfigureQueue => vec![(Resource::Queue, name.to_string(), Access::Configure)],
        Rule::ConfigureExchange => vec![(Resource::Exchange, api_exchange(name), Access::Configure)],
        Rule::Purge | Rule::ReadQueue => vec![(Resource::Queue, name.to_string(), Access::Read)],
        Rule::Publish => vec![(Resource::Exchange, api_exchange(name), Access::Write)],
        Rule::BindQueue => vec![
            (Resource::Queue, param(params, "dest").to_string(), Access::Write),
            (
                Resource::Exchange,
                api_exchange(param(params, "source")),
                Access::Read,
            ),
        ],
        Rule::BindExchange => vec![
            (
                Resource::Exchange,
                api_exchange(param(params, "dest")),
                Access::Write,
            ),
            (
                Resource::Exchange,
                api_exchange(param(params, "source")),
                Access::Read,
            ),
        ],
        _ => Vec::new(),
    };
    for (kind, n, access) in checks {
        if let Err(e) = caller.check(broker, vhost, kind, &n, access) {
            return Err(match rule {
                // RabbitMQ answers a refused publish as a failed AMQP operation.
                Rule::Publish => ApiError::amqp_failure(&e).into_response(),
                Rule::ReadQueue => not_authorised(e.reply_text()),
                _ => not_authorised("Access refused."),
            });
        }
    }
    Ok(())
}

/// The one authorisation step of every request: matches the route in [`RULES`],
/// authenticates, checks the rule and stores the [`Caller`] for the handler. A request with
/// an `X-Requested-With` header (the UI's fetches) gets no `WWW-Authenticate` on its 401s,
/// so the browser leaves the login to the page's form.
pub async fn authorize(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let quiet = req.headers().contains_key("x-requested-with");
    let mut r = authorize_and_run(st, peer, req, next).await;
    if quiet {
        r.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    r
}

async fn authorize_and_run(st: Shared, peer: SocketAddr, mut req: Request, next: Next) -> Response {
    let (rule, params) = match lookup(req.method(), req.uri().path()) {
        Ok(r) => r,
        // A method the route does not have: the router's own 405.
        Err(true) => return next.run(req).await,
        // A registered route without a rule: refused (fail closed).
        Err(false) => {
            tracing::error!(path = req.uri().path(), "no authorisation rule for this route");
            return ApiError {
                status: StatusCode::FORBIDDEN,
                body: json!({"error": "not_authorised", "reason": "no authorisation rule for this route"}),
            }
            .into_response();
        }
    };
    if rule == Rule::Public || (rule == Rule::Metrics && st.broker.config.metrics_public) {
        return next.run(req).await;
    }
    let user = match req.extensions_mut().remove::<PeerCaller>() {
        // Handed over by another cluster member, which authenticated the caller; the rule is
        // checked again here, against this node's copy of the replicated users.
        Some(PeerCaller(user)) if st.broker.users.get(&user).is_some() => user,
        Some(_) => return login_failed(),
        None => {
            let Some((user, pass)) = super::shared::basic_credentials(req.headers()) else {
                return challenge();
            };
            let cfg = &st.broker.config;
            let guest_blocked = user == "guest" && !cfg.guest_anywhere && !peer.ip().is_loopback();
            if guest_blocked || !st.broker.users.authenticate(&user, &pass) {
                return login_failed();
            }
            user
        }
    };
    let tags = st.broker.users.get(&user).map(|u| u.tags).unwrap_or_default();
    let caller = Caller { name: user, tags };
    if let Err(r) = check_rule(&st.broker, &caller, rule, &params) {
        return r;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
