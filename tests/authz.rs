//! Management API authorisation end to end (issue 14): RabbitMQ's user tags and vhost
//! permissions on every HTTP route, through real HTTP against a broker on an ephemeral port.
//!
//! `every_route_answers_each_tag_as_rabbitmq` walks every route the router registers (found
//! in the source of `crates/server/src/http/`, confirmed by asking the broker) with a user of
//! each tag and asserts the status and reason of the expected matrix below, which was checked
//! against RabbitMQ 3.10; a route missing from the matrix fails it.

mod common;

use std::collections::BTreeSet;

use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use warren_server::http::client::{self, encode_segment};

/// What the test expects a route to require (independent of the broker's own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No credentials at all (the UI's static page and script).
    Public,
    /// Any management tag.
    Mgmt,
    /// `monitoring` or `administrator`.
    Monitor,
    /// `administrator`.
    Admin,
    /// Access to the vhost of the path (administrators: any vhost).
    Vhost,
    /// `policymaker`/`administrator` and access to the vhost.
    Policy,
    /// Access to the vhost + a permission on a queue or exchange: 401 `Access refused.`
    Res,
    /// As `Res`, refused with 401 and AMQP's text (get, move).
    ResRead,
    /// As `Res`, refused with 400 and `403 ACCESS_REFUSED - …` (publish).
    ResPublish,
}

use Need::*;

/// The route × requirement matrix (method, axum path template, requirement).
const MATRIX: &[(&str, &str, Need)] = &[
    ("GET", "/", Public),
    ("GET", "/ui/app.js", Public),
    ("GET", "/metrics", Monitor),
    ("GET", "/api/overview", Mgmt),
    ("GET", "/api/nodes", Monitor),
    ("GET", "/api/cluster", Admin),
    ("POST", "/api/cluster/join", Admin),
    ("DELETE", "/api/cluster/nodes/{name}", Admin),
    ("POST", "/api/queues/quorum/{vhost}/{name}/replicas/add", Admin),
    (
        "DELETE",
        "/api/queues/quorum/{vhost}/{name}/replicas/delete",
        Admin,
    ),
    ("POST", "/api/queues/quorum/replicas/on/{node}/grow", Admin),
    ("DELETE", "/api/queues/quorum/replicas/on/{node}/shrink", Admin),
    ("GET", "/api/nodes/{name}/memory", Monitor),
    ("GET", "/api/auth/attempts/{name}", Monitor),
    ("GET", "/api/auth/attempts/{name}/source", Monitor),
    ("GET", "/api/whoami", Mgmt),
    ("GET", "/api/cluster-name", Mgmt),
    ("PUT", "/api/cluster-name", Admin),
    ("GET", "/api/auth", Mgmt),
    ("GET", "/api/extensions", Mgmt),
    ("GET", "/api/feature-flags", Admin),
    ("GET", "/api/vhosts", Mgmt),
    ("GET", "/api/vhosts/{name}", Admin),
    ("PUT", "/api/vhosts/{name}", Admin),
    ("DELETE", "/api/vhosts/{name}", Admin),
    ("GET", "/api/exchanges", Mgmt),
    ("GET", "/api/exchanges/{vhost}", Vhost),
    ("GET", "/api/exchanges/{vhost}/{name}", Vhost),
    ("PUT", "/api/exchanges/{vhost}/{name}", Res),
    ("DELETE", "/api/exchanges/{vhost}/{name}", Res),
    ("POST", "/api/exchanges/{vhost}/{name}/publish", ResPublish),
    ("GET", "/api/exchanges/{vhost}/{name}/bindings/source", Vhost),
    ("GET", "/api/exchanges/{vhost}/{name}/bindings/destination", Vhost),
    ("GET", "/api/queues", Mgmt),
    ("GET", "/api/queues/detailed", Mgmt),
    ("GET", "/api/queues/{vhost}", Vhost),
    ("GET", "/api/queues/{vhost}/{name}", Vhost),
    ("PUT", "/api/queues/{vhost}/{name}", Res),
    ("DELETE", "/api/queues/{vhost}/{name}", Res),
    ("DELETE", "/api/queues/{vhost}/{name}/contents", Res),
    ("POST", "/api/queues/{vhost}/{name}/get", ResRead),
    ("POST", "/api/queues/{vhost}/{name}/move", ResRead),
    ("GET", "/api/queues/{vhost}/{name}/bindings", Vhost),
    ("GET", "/api/bindings", Mgmt),
    ("GET", "/api/bindings/{vhost}", Vhost),
    ("GET", "/api/bindings/{vhost}/e/{source}/q/{dest}", Vhost),
    ("POST", "/api/bindings/{vhost}/e/{source}/q/{dest}", Res),
    ("GET", "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}", Vhost),
    ("DELETE", "/api/bindings/{vhost}/e/{source}/q/{dest}/{props}", Res),
    ("GET", "/api/bindings/{vhost}/e/{source}/e/{dest}", Vhost),
    ("POST", "/api/bindings/{vhost}/e/{source}/e/{dest}", Res),
    ("GET", "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}", Vhost),
    ("DELETE", "/api/bindings/{vhost}/e/{source}/e/{dest}/{props}", Res),
    ("GET", "/api/connections", Mgmt),
    ("GET", "/api/nodes/{name}", Monitor),
    ("GET", "/api/parameters", Policy),
    ("GET", "/api/parameters/{component}", Policy),
    ("GET", "/api/parameters/{component}/{vhost}", Policy),
    ("GET", "/api/parameters/{component}/{vhost}/{name}", Policy),
    ("PUT", "/api/parameters/{component}/{vhost}/{name}", Policy),
    ("DELETE", "/api/parameters/{component}/{vhost}/{name}", Policy),
    ("GET", "/api/global-parameters", Policy),
    ("GET", "/api/global-parameters/{name}", Policy),
    ("GET", "/api/operator-policies", Mgmt),
    ("GET", "/api/operator-policies/{vhost}", Vhost),
    ("GET", "/api/operator-policies/{vhost}/{name}", Admin),
    ("PUT", "/api/operator-policies/{vhost}/{name}", Admin),
    ("DELETE", "/api/operator-policies/{vhost}/{name}", Admin),
    ("GET", "/api/deprecated-features", Mgmt),
    ("GET", "/api/deprecated-features/used", Mgmt),
    ("GET", "/api/vhost-limits", Mgmt),
    ("GET", "/api/vhost-limits/{vhost}", Vhost),
    ("GET", "/api/user-limits", Mgmt),
    ("GET", "/api/user-limits/{user}", Mgmt),
    ("PUT", "/api/vhost-limits/{vhost}/{name}", Admin),
    ("DELETE", "/api/vhost-limits/{vhost}/{name}", Admin),
    ("PUT", "/api/user-limits/{user}/{name}", Admin),
    ("DELETE", "/api/user-limits/{user}/{name}", Admin),
    ("GET", "/api/connections/{name}", Mgmt),
    ("DELETE", "/api/connections/{name}", Mgmt),
    ("GET", "/api/connections/{name}/channels", Mgmt),
    ("GET", "/api/connections/username/{user}", Mgmt),
    ("DELETE", "/api/connections/username/{user}", Admin),
    ("GET", "/api/vhosts/{name}/connections", Mgmt),
    ("GET", "/api/vhosts/{name}/channels", Mgmt),
    ("GET", "/api/channels", Mgmt),
    ("GET", "/api/channels/{name}", Mgmt),
    ("GET", "/api/consumers", Mgmt),
    ("GET", "/api/consumers/{vhost}", Mgmt),
    ("GET", "/api/users", Admin),
    ("GET", "/api/users/without-permissions", Admin),
    ("GET", "/api/users/{name}", Admin),
    ("PUT", "/api/users/{name}", Admin),
    ("DELETE", "/api/users/{name}", Admin),
    ("GET", "/api/users/{name}/permissions", Admin),
    ("GET", "/api/vhosts/{name}/permissions", Admin),
    ("GET", "/api/permissions", Admin),
    ("GET", "/api/permissions/{vhost}/{user}", Admin),
    ("PUT", "/api/permissions/{vhost}/{user}", Admin),
    ("DELETE", "/api/permissions/{vhost}/{user}", Admin),
    ("GET", "/api/users/{name}/topic-permissions", Admin),
    ("GET", "/api/vhosts/{name}/topic-permissions", Admin),
    ("GET", "/api/topic-permissions", Admin),
    ("GET", "/api/topic-permissions/{vhost}/{user}", Admin),
    ("PUT", "/api/topic-permissions/{vhost}/{user}", Admin),
    ("DELETE", "/api/topic-permissions/{vhost}/{user}", Admin),
    (
        "DELETE",
        "/api/topic-permissions/{vhost}/{user}/{exchange}",
        Admin,
    ),
    ("GET", "/api/policies", Mgmt),
    ("GET", "/api/policies/{vhost}", Vhost),
    ("GET", "/api/policies/{vhost}/{name}", Policy),
    ("PUT", "/api/policies/{vhost}/{name}", Policy),
    ("DELETE", "/api/policies/{vhost}/{name}", Policy),
    ("GET", "/api/definitions", Admin),
    ("POST", "/api/definitions", Admin),
    ("GET", "/api/definitions/{vhost}", Admin),
    ("POST", "/api/definitions/{vhost}", Admin),
    ("GET", "/api/quarantine", Admin),
    ("POST", "/api/quarantine/{dir}/reattach", Admin),
    ("GET", "/api/alerts", Mgmt),
    ("GET", "/api/healthchecks/node", Mgmt),
    ("GET", "/api/healthchecks/alarms", Mgmt),
    ("GET", "/api/healthchecks/port-listener/{port}", Mgmt),
    ("GET", "/api/health/checks/alarms", Mgmt),
    ("GET", "/api/health/checks/local-alarms", Mgmt),
    ("GET", "/api/health/checks/virtual-hosts", Mgmt),
    ("GET", "/api/health/checks/node-is-quorum-critical", Mgmt),
    ("GET", "/api/health/checks/node-is-mirror-sync-critical", Mgmt),
    ("GET", "/api/health/checks/ready-to-serve-clients", Mgmt),
    (
        "GET",
        "/api/health/checks/certificate-expiration/{within}/{unit}",
        Mgmt,
    ),
    ("GET", "/api/health/checks/below-node-connection-limit", Mgmt),
    ("GET", "/api/health/checks/is-in-service", Mgmt),
    ("GET", "/api/health/checks/port-listener/{port}", Mgmt),
    ("GET", "/api/health/checks/protocol-listener/{protocol}", Mgmt),
    ("GET", "/api/aliveness-test/{vhost}", Vhost),
];

/// The tags of the walk's users (`""`: no tag), in the order of the matrix's columns.
const TAGS: &[&str] = &[
    "",
    "impersonator",
    "management",
    "policymaker",
    "monitoring",
    "administrator",
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE"];

fn url(b: &TestBroker, path: &str) -> String {
    format!("http://{}{}", b.running.http_addr, path)
}

/// One request with `who`'s basic credentials (none: no `Authorization` header).
async fn http(
    b: &TestBroker,
    who: Option<(&str, &str)>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> client::Response {
    let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
    client::request(method, &url(b, path), who, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn as_guest(b: &TestBroker, method: &str, path: &str, body: Value) -> u16 {
    http(b, Some(("guest", "guest")), method, path, Some(body))
        .await
        .status
}

/// Creates `name` (password `p`) with `tags` and, for each vhost, full permissions.
async fn add_user(b: &TestBroker, name: &str, tags: &str, vhosts: &[&str]) {
    let s = as_guest(
        b,
        "PUT",
        &format!("/api/users/{name}"),
        json!({"password": "p", "tags": tags}),
    )
    .await;
    assert_eq!(s, 201, "create {name}");
    for v in vhosts {
        set_perms(b, name, v, ".*", ".*", ".*").await;
    }
}

async fn set_perms(b: &TestBroker, user: &str, vhost: &str, c: &str, w: &str, r: &str) {
    let path = format!("/api/permissions/{}/{user}", encode_segment(vhost));
    let s = as_guest(b, "PUT", &path, json!({"configure": c, "write": w, "read": r})).await;
    assert!(s == 201 || s == 204, "permissions of {user} on {vhost}: {s}");
}

/// Every `.route("…")` path registered in the server's HTTP source.
fn registered_paths() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/server/src/http");
    let mut out = BTreeSet::new();
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                // The Prometheus listener's routes: another port, unauthenticated as RabbitMQ's
                // plugin (tests/prometheus.rs).
                && !path.ends_with("prometheus.rs")
            {
                files.push(path);
            }
        }
    }
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let mut rest = src.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let t = rest.trim_start();
            if let Some(t) = t.strip_prefix('"') {
                out.insert(t[..t.find('"').unwrap()].to_string());
            }
        }
    }
    out
}

/// A concrete path for `template` with every parameter filled in, on `vhost`.
fn concrete(template: &str, vhost: &str) -> String {
    template
        .replace("{vhost}", &encode_segment(vhost))
        .replace("{name}", "walk-x")
        .replace("{user}", "walk-u")
        .replace("{source}", "walk-x")
        .replace("{dest}", "walk-q")
        .replace("{exchange}", "walk-x")
        .replace("{props}", "~")
        .replace("{port}", "1")
        .replace("{protocol}", "amqp")
        .replace("{dir}", "walk-d")
        .replace("{component}", "walk-c")
        .replace("{node}", "walk-n")
        .replace("{within}", "1")
        .replace("{unit}", "days")
}

/// The expected (status, reason) for a user with `tag` on a route needing `need`, on a vhost
/// where the user has full permissions (`own`) or none. `None` status: allowed (the handler's
/// own answer, anything but 401/403/405/500).
fn expected(need: Need, tag: &str, own: bool) -> Option<(u16, &'static str)> {
    if need == Public {
        return None;
    }
    let admin = tag == "administrator";
    let monitor = admin || tag == "monitoring";
    let policymaker = admin || tag == "policymaker";
    if !(monitor || policymaker || tag == "management") {
        return Some((401, "Not management user"));
    }
    match need {
        Mgmt => None,
        Monitor if monitor => None,
        Monitor => Some((401, "Not monitor user")),
        Admin if admin => None,
        Admin => Some((401, "Not administrator user")),
        Vhost if own || admin => None,
        Policy if policymaker && (own || admin) => None,
        Policy => Some((401, "User not authorised to access object")),
        _ if own => None,
        // An administrator sees every vhost but needs permissions for operations on objects.
        Res if admin => Some((401, "Access refused.")),
        ResRead if admin => Some((
            401,
            "ACCESS_REFUSED - access to queue 'walk-x' in vhost 'other' refused for user 'u_administrator'",
        )),
        ResPublish if admin => Some((
            400,
            "403 ACCESS_REFUSED - access to exchange 'walk-x' in vhost 'other' refused for user 'u_administrator'",
        )),
        _ => Some((401, "User not authorised to access virtual host")),
    }
}

fn short(need: Option<(u16, &str)>) -> String {
    match need {
        None => "ok".into(),
        Some((s, r)) => match r {
            "Not management user" => format!("{s} mgmt"),
            "Not monitor user" => format!("{s} monitor"),
            "Not administrator user" => format!("{s} admin"),
            "User not authorised to access object" => format!("{s} object"),
            "User not authorised to access virtual host" => format!("{s} vhost"),
            _ => format!("{s} perm"),
        },
    }
}

#[tokio::test]
async fn every_route_answers_each_tag_as_rabbitmq() {
    let b = start().await;
    assert_eq!(as_guest(&b, "PUT", "/api/vhosts/walk", json!({})).await, 201);
    assert_eq!(as_guest(&b, "PUT", "/api/vhosts/other", json!({})).await, 201);
    for tag in TAGS {
        let name = if tag.is_empty() {
            "u_none".to_string()
        } else {
            format!("u_{tag}")
        };
        add_user(&b, &name, tag, &["walk"]).await;
    }

    // 1. The routes the broker registers are exactly the matrix's (a new route without a
    //    rule and a row here fails). Asked without credentials, so nothing changes: a
    //    registered route answers 401 (200 for the UI's public files), another method 405.
    let mut registered = BTreeSet::new();
    let public: BTreeSet<&str> = MATRIX
        .iter()
        .filter(|(_, _, n)| *n == Public)
        .map(|(_, t, _)| *t)
        .collect();
    for template in registered_paths() {
        for m in METHODS {
            let r = http(&b, None, m, &concrete(&template, "walk"), Some(json!({}))).await;
            match r.status {
                405 => {}
                200 if *m == "GET" && public.contains(template.as_str()) => {
                    registered.insert((m.to_string(), template.clone()));
                }
                401 => {
                    assert_eq!(
                        r.header("www-authenticate"),
                        Some("Basic realm=\"RabbitMQ Management\""),
                        "{m} {template}"
                    );
                    assert!(r.body.is_empty(), "{m} {template}: {}", r.text());
                    registered.insert((m.to_string(), template.clone()));
                }
                s => panic!("{m} {template} without credentials: {s} {}", r.text()),
            }
        }
    }
    let matrix: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, t, _)| (m.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        registered, matrix,
        "registered routes vs the authorisation matrix"
    );

    // 2. Wrong password: RabbitMQ's `not_authorized` / `Login failed` with a challenge.
    let r = http(&b, Some(("u_management", "wrong")), "GET", "/api/overview", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    assert!(r.header("www-authenticate").is_some());

    // 3. Every route × every tag, on a vhost the user has full permissions on and on one it
    //    has none on.
    let mut table =
        String::from("route | none | impersonator | management | policymaker | monitoring | administrator\n");
    for (m, template, need) in MATRIX {
        for (vhost, own) in [("walk", true), ("other", false)] {
            let path = concrete(template, vhost);
            if !own && !template.contains("{vhost}") {
                continue;
            }
            let mut row = format!("{m} {}", template.replace("{vhost}", vhost));
            for tag in TAGS {
                let user = if tag.is_empty() {
                    "u_none".to_string()
                } else {
                    format!("u_{tag}")
                };
                let r = http(&b, Some((&user, "p")), m, &path, Some(json!({}))).await;
                let want = expected(*need, tag, own);
                match want {
                    None => assert!(
                        ![401, 403, 405, 500].contains(&r.status),
                        "{m} {path} as {user}: expected to be allowed, got {} {}",
                        r.status,
                        r.text()
                    ),
                    Some((status, reason)) => {
                        assert_eq!(r.status, status, "{m} {path} as {user}: {}", r.text());
                        let body = r.json();
                        let error = if status == 400 {
                            "bad_request"
                        } else {
                            "not_authorised"
                        };
                        assert_eq!(body["error"], error, "{m} {path} as {user}");
                        assert_eq!(body["reason"], reason, "{m} {path} as {user}");
                        assert!(r.header("www-authenticate").is_none(), "{m} {path} as {user}");
                    }
                }
                row.push_str(" | ");
                row.push_str(&short(want));
            }
            table.push_str(&row);
            table.push('\n');
        }
    }
    println!("{table}");
    b.running.shutdown().await;
}

/// `lim`: a management user on `/` with `configure` `^cfg`, `write` `^w`, `read` `^r`.
async fn limited(b: &TestBroker) {
    add_user(b, "lim", "management", &[]).await;
    set_perms(b, "lim", "/", "^cfg", "^w", "^r").await;
}

#[tokio::test]
async fn vhost_permissions_apply_to_http_operations_as_to_amqp() {
    let b = start().await;
    limited(&b).await;
    let lim = Some(("lim", "p"));
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["qq", "rq", "wq"] {
        declare(&ch, q).await;
        publish(&ch, "", q, b"m").await;
    }
    for (x, kind) in [
        ("xx", lapin::ExchangeKind::Topic),
        ("wx", lapin::ExchangeKind::Topic),
        ("rx", lapin::ExchangeKind::Direct),
    ] {
        ch.exchange_declare(
            x.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    wait_until(5, "messages enqueued", || counts(&b, "wq").0 == 1).await;
    let refused = |r: &client::Response, reason: &str| {
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json(), json!({"error": "not_authorised", "reason": reason}));
    };
    let get = json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"});

    // configure: declare and delete.
    refused(
        &http(&b, lim, "PUT", "/api/queues/%2F/nope", Some(json!({}))).await,
        "Access refused.",
    );
    assert_eq!(
        http(&b, lim, "PUT", "/api/queues/%2F/cfgq", Some(json!({})))
            .await
            .status,
        201
    );
    refused(
        &http(&b, lim, "DELETE", "/api/queues/%2F/qq", None).await,
        "Access refused.",
    );
    assert_eq!(
        http(&b, lim, "DELETE", "/api/queues/%2F/cfgq", None).await.status,
        204
    );
    refused(
        &http(&b, lim, "PUT", "/api/exchanges/%2F/nope", Some(json!({}))).await,
        "Access refused.",
    );
    refused(
        &http(&b, lim, "DELETE", "/api/exchanges/%2F/xx", None).await,
        "Access refused.",
    );
    assert_eq!(
        http(&b, lim, "PUT", "/api/exchanges/%2F/cfgx", Some(json!({})))
            .await
            .status,
        201
    );
    assert_eq!(
        http(&b, lim, "DELETE", "/api/exchanges/%2F/cfgx", None)
            .await
            .status,
        204
    );

    // read: get and purge (the queue keeps its message when refused).
    refused(
        &http(&b, lim, "POST", "/api/queues/%2F/qq/get", Some(get.clone())).await,
        "ACCESS_REFUSED - access to queue 'qq' in vhost '/' refused for user 'lim'",
    );
    assert_eq!(counts(&b, "qq").0, 1);
    let r = http(&b, lim, "POST", "/api/queues/%2F/rq/get", Some(get.clone())).await;
    assert_eq!(r.json()[0]["payload"], "m", "{}", r.text());
    refused(
        &http(&b, lim, "DELETE", "/api/queues/%2F/qq/contents", None).await,
        "Access refused.",
    );
    assert_eq!(counts(&b, "qq").0, 1);
    assert_eq!(
        http(&b, lim, "DELETE", "/api/queues/%2F/wq/contents", None)
            .await
            .status,
        401
    );
    publish(&ch, "", "rq", b"again").await;
    wait_until(5, "rq refilled", || counts(&b, "rq").0 == 1).await;
    assert_eq!(
        http(&b, lim, "DELETE", "/api/queues/%2F/rq/contents", None)
            .await
            .status,
        204
    );
    assert_eq!(counts(&b, "rq").0, 0);

    // write: publish (400 with AMQP's text, as RabbitMQ), including the default exchange.
    let msg =
        |rk: &str| json!({"properties": {}, "routing_key": rk, "payload": "x", "payload_encoding": "string"});
    let r = http(&b, lim, "POST", "/api/exchanges/%2F/xx/publish", Some(msg("a"))).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "403 ACCESS_REFUSED - access to exchange 'xx' in vhost '/' refused for user 'lim'"
    );
    let r = http(
        &b,
        lim,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(msg("rq")),
    )
    .await;
    assert_eq!(
        r.json()["reason"],
        "403 ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'lim'"
    );
    let r = http(&b, lim, "POST", "/api/exchanges/%2F/wx/publish", Some(msg("a"))).await;
    assert_eq!((r.status, r.json()), (200, json!({"routed": false})));

    // user_id must be the caller's unless it is an impersonator.
    let mut spoof = msg("a");
    spoof["properties"] = json!({"user_id": "guest"});
    let r = http(
        &b,
        lim,
        "POST",
        "/api/exchanges/%2F/wx/publish",
        Some(spoof.clone()),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "406 PRECONDITION_FAILED - user_id property set to 'guest' but authenticated user was 'lim'"
    );
    let s = as_guest(
        &b,
        "PUT",
        "/api/users/lim",
        json!({"password": "p", "tags": "management,impersonator"}),
    )
    .await;
    assert_eq!(s, 204);
    let r = http(&b, lim, "POST", "/api/exchanges/%2F/wx/publish", Some(spoof)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Topic permissions apply to publishes through the API.
    let s = as_guest(
        &b,
        "PUT",
        "/api/topic-permissions/%2F/lim",
        json!({"exchange": "wx", "write": "^ok\\.", "read": ".*"}),
    )
    .await;
    assert_eq!(s, 201);
    let r = http(
        &b,
        lim,
        "POST",
        "/api/exchanges/%2F/wx/publish",
        Some(msg("bad.key")),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "403 ACCESS_REFUSED - write access to topic 'bad.key' in exchange 'wx' in vhost '/' refused for user 'lim'"
    );
    assert_eq!(
        http(
            &b,
            lim,
            "POST",
            "/api/exchanges/%2F/wx/publish",
            Some(msg("ok.key"))
        )
        .await
        .status,
        200
    );

    // Bindings: write on the destination, read on the source.
    refused(
        &http(&b, lim, "POST", "/api/bindings/%2F/e/xx/q/wq", Some(json!({}))).await,
        "Access refused.",
    );
    refused(
        &http(&b, lim, "POST", "/api/bindings/%2F/e/rx/q/qq", Some(json!({}))).await,
        "Access refused.",
    );
    assert_eq!(
        http(
            &b,
            lim,
            "POST",
            "/api/bindings/%2F/e/rx/q/wq",
            Some(json!({"routing_key": "k"}))
        )
        .await
        .status,
        201
    );
    refused(
        &http(&b, lim, "POST", "/api/bindings/%2F/e/rx/e/xx", Some(json!({}))).await,
        "Access refused.",
    );
    assert_eq!(
        http(&b, lim, "POST", "/api/bindings/%2F/e/rx/e/wx", Some(json!({})))
            .await
            .status,
        201
    );
    assert_eq!(
        http(&b, lim, "DELETE", "/api/bindings/%2F/e/rx/q/wq/k", None)
            .await
            .status,
        204
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn dlq_move_needs_read_on_the_source_and_write_on_the_destination() {
    let b = start().await;
    limited(&b).await;
    let lim = Some(("lim", "p"));
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for q in ["rdlq", "qdlq", "wtarget"] {
        declare(&ch, q).await;
    }
    publish(&ch, "", "rdlq", b"m").await;
    publish(&ch, "", "qdlq", b"m").await;
    wait_until(5, "messages enqueued", || {
        counts(&b, "rdlq").0 == 1 && counts(&b, "qdlq").0 == 1
    })
    .await;
    let to = |x: &str| json!({"target": {"exchange": x, "routing_key": "wtarget"}});

    // No read on the source.
    let r = http(
        &b,
        lim,
        "POST",
        "/api/queues/%2F/qdlq/move",
        Some(to("amq.default")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["reason"],
        "ACCESS_REFUSED - access to queue 'qdlq' in vhost '/' refused for user 'lim'"
    );
    // Read on the source, no write on the destination (the default exchange): nothing moves.
    let r = http(
        &b,
        lim,
        "POST",
        "/api/queues/%2F/rdlq/move",
        Some(to("amq.default")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["reason"],
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'lim'"
    );
    assert_eq!(counts(&b, "rdlq").0, 1);
    // Write on the destination exchange: moved.
    ch.exchange_declare(
        "wmove".into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "wtarget".into(),
        "wmove".into(),
        "wtarget".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let r = http(&b, lim, "POST", "/api/queues/%2F/rdlq/move", Some(to("wmove"))).await;
    assert_eq!(
        (r.status, r.json()["moved"].clone()),
        (200, json!(1)),
        "{}",
        r.text()
    );
    assert_eq!(counts(&b, "wtarget").0, 1);
    b.running.shutdown().await;
}

#[tokio::test]
async fn listings_show_only_what_the_tag_and_permissions_allow() {
    let b = start().await;
    assert_eq!(as_guest(&b, "PUT", "/api/vhosts/mine", json!({})).await, 201);
    add_user(&b, "mgr", "management", &["mine"]).await;
    add_user(&b, "mon", "monitoring", &["mine"]).await;
    // Objects in `/` (guest's) and in `mine`.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "guest-q").await;
    ch.basic_consume(
        "guest-q".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mine_url = format!("amqp://mgr:p@{}/mine", b.running.amqp_addr);
    let mine = lapin::Connection::connect(&mine_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let mch = mine.create_channel().await.unwrap();
    declare(&mch, "mgr-q").await;
    mch.queue_bind(
        "mgr-q".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    let names = |v: Value, field: &str| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x[field].as_str().unwrap_or("").to_string())
            .collect()
    };
    let list = async |who: &str, path: &str| {
        let pass = if who == "guest" { "guest" } else { "p" };
        let r = http(&b, Some((who, pass)), "GET", path, None).await;
        assert_eq!(r.status, 200, "{path} as {who}: {}", r.text());
        r.json()
    };
    for who in ["mgr", "mon"] {
        assert_eq!(
            names(list(who, "/api/queues").await, "vhost"),
            BTreeSet::from(["mine".into()])
        );
        assert_eq!(
            names(list(who, "/api/exchanges").await, "vhost"),
            BTreeSet::from(["mine".into()])
        );
        assert_eq!(
            names(list(who, "/api/bindings").await, "vhost"),
            BTreeSet::from(["mine".into()])
        );
        assert!(list(who, "/api/consumers").await.as_array().unwrap().is_empty());
        assert!(
            list(who, "/api/consumers/%2F")
                .await
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
    // Connections and channels: a management user sees its own, monitoring sees all.
    wait_until(5, "both connections listed", || {
        b.running.broker.connections().len() == 2
    })
    .await;
    assert_eq!(
        names(list("mgr", "/api/connections").await, "user"),
        BTreeSet::from(["mgr".into()])
    );
    assert_eq!(
        names(list("mgr", "/api/channels").await, "user"),
        BTreeSet::from(["mgr".into()])
    );
    assert_eq!(
        names(list("mon", "/api/connections").await, "user"),
        BTreeSet::from(["guest".into(), "mgr".into()])
    );
    assert_eq!(
        names(list("mon", "/api/channels").await, "user"),
        BTreeSet::from(["guest".into(), "mgr".into()])
    );
    // Vhosts: its own for management, every one for monitoring.
    assert_eq!(
        names(list("mgr", "/api/vhosts").await, "name"),
        BTreeSet::from(["mine".into()])
    );
    assert_eq!(
        names(list("mon", "/api/vhosts").await, "name"),
        BTreeSet::from(["/".into(), "mine".into()])
    );
    // The administrator sees everything, password hashes included; nobody else gets them.
    assert_eq!(
        names(list("guest", "/api/queues").await, "vhost"),
        BTreeSet::from(["/".into(), "mine".into()])
    );
    let users = http(&b, Some(("guest", "guest")), "GET", "/api/users", None)
        .await
        .json();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["password_hash"].is_string())
    );
    for who in ["mgr", "mon"] {
        for path in ["/api/users", "/api/users/guest", "/api/definitions"] {
            let r = http(&b, Some((who, "p")), "GET", path, None).await;
            assert_eq!(r.status, 401, "{path} as {who}");
            assert!(!r.text().contains("password_hash"));
        }
    }
    b.running.shutdown().await;
}

#[tokio::test]
async fn metrics_need_a_monitoring_user_unless_public() {
    let b = start().await;
    add_user(&b, "mgr", "management", &["/"]).await;
    add_user(&b, "mon", "monitoring", &[]).await;
    let r = http(&b, None, "GET", "/metrics", None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = http(&b, Some(("mgr", "p")), "GET", "/metrics", None).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("Not monitor user"))
    );
    let r = http(&b, Some(("mon", "p")), "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("rabbitmq_"), "{}", r.text());
    b.running.shutdown().await;

    let b = start_with(|c| c.metrics_public = true).await;
    let r = http(&b, None, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    // Only /metrics is opened.
    assert_eq!(http(&b, None, "GET", "/api/overview", None).await.status, 401);
    b.running.shutdown().await;
}

#[tokio::test]
async fn warrenctl_and_the_dashboard_get_the_same_answers() {
    use warren_server::http::ctl::run_from;
    let b = start().await;
    add_user(&b, "mgr", "management", &["/"]).await;
    add_user(&b, "nobody", "", &["/"]).await;
    let base = format!("http://{}", b.running.http_addr);
    let ctl = |user: &str, args: &[&str]| {
        let mut argv: Vec<String> = ["warrenctl", "--url", &base, "--user", user, "--password", "p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(args.iter().map(|s| s.to_string()));
        async move { run_from(argv).await }
    };
    let e = ctl("mgr", &["add_user", "eve", "pw"]).await.unwrap_err();
    assert!(
        e.contains("HTTP 401") && e.contains("Not administrator user"),
        "{e}"
    );
    assert!(b.running.broker.users.get("eve").is_none());
    let e = ctl("nobody", &["list", "queues"]).await.unwrap_err();
    assert!(e.contains("HTTP 401") && e.contains("Not management user"), "{e}");
    assert!(ctl("mgr", &["list", "queues"]).await.is_ok());

    // The UI's page is public (its login form asks /api/whoami, which refuses users without
    // a management tag as warrenctl's calls are refused).
    let r = http(&b, None, "GET", "/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("<html"));
    let r = http(&b, Some(("nobody", "p")), "GET", "/api/whoami", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Not management user");
    assert_eq!(
        http(&b, Some(("mgr", "p")), "GET", "/api/whoami", None)
            .await
            .status,
        200
    );
    b.running.shutdown().await;
}
