//! Access control end to end (issue 11): users and permissions managed through the HTTP API,
//! enforced on every AMQP operation where RabbitMQ enforces them (403 with RabbitMQ's text),
//! vhost access at connection.open (530), live revocation, and durability across a restart.

mod common;

use common::raw::Raw;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};
use warren_server::http::client;

async fn call(b: &TestBroker, who: (&str, &str), method: &str, path: &str, body: Option<Value>) -> u16 {
    let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
    let url = format!("http://{}{}", b.running.http_addr, path);
    client::request(method, &url, Some(who), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        .status
}

async fn admin(b: &TestBroker, method: &str, path: &str, body: Option<Value>) -> u16 {
    call(b, ("guest", "guest"), method, path, body).await
}

async fn connect_as(b: &TestBroker, user: &str, pass: &str) -> Connection {
    let url = format!("amqp://{user}:{pass}@{}/%2f", b.running.amqp_addr);
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("connect")
}

const REFUSED_Q: &str = "ACCESS_REFUSED - access to queue";
const REFUSED_X: &str = "ACCESS_REFUSED - access to exchange";

#[tokio::test]
async fn permissions_are_enforced_where_rabbitmq_enforces_them() {
    let b = start().await;
    let mut by = Bystander::new(&b).await;
    // Set-up by the administrator: resources `u` may not touch.
    let g = b.connect().await;
    let gch = g.create_channel().await.unwrap();
    declare(&gch, "other").await;
    declare(&gch, "u.q").await;
    for x in ["other.x", "u.x"] {
        gch.exchange_declare(
            x.into(),
            lapin::ExchangeKind::Direct,
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    publish(&gch, "", "other", b"secret").await;
    wait_until(5, "message in other", || counts(&b, "other").0 == 1).await;

    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/users/u",
            Some(json!({"password": "p", "tags": ""}))
        )
        .await,
        201
    );
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/users/u",
            Some(json!({"password": "p", "tags": ""}))
        )
        .await,
        204
    );
    let perms = json!({"configure": "^(u\\.|amq\\.gen)", "write": "^(u\\.|amq\\.default$|amq\\.gen)", "read": "^(u\\.|amq\\.gen)"});
    assert_eq!(
        admin(&b, "PUT", "/api/permissions/%2F/u", Some(perms.clone())).await,
        201
    );
    let url = format!("http://{}/api/permissions/%2F/u", b.running.http_addr);
    let got = client::request("GET", &url, Some(("guest", "guest")), None)
        .await
        .unwrap()
        .json();
    assert_eq!(got["configure"], perms["configure"]);
    assert_eq!(got["user"], "u");
    // A bad regex is a 400; a non-administrator may not change permissions.
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/permissions/%2F/u",
            Some(json!({"configure": "(", "write": "", "read": ""}))
        )
        .await,
        400
    );
    assert_eq!(
        call(&b, ("u", "p"), "DELETE", "/api/permissions/%2F/u", None).await,
        401
    );

    let conn = connect_as(&b, "u", "p").await;
    let ch = conn.create_channel().await.unwrap();
    // Allowed: its own names, the default exchange, passive declares of anything.
    declare(&ch, "u.mine").await;
    ch.queue_declare(
        "other".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare needs no permission");
    ch.queue_bind(
        "u.mine".into(),
        "u.x".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    // Each refusal closes its channel with 403 and RabbitMQ's text.
    macro_rules! refused {
        ($op:expr, $text:expr) => {{
            let ch = conn.create_channel().await.unwrap();
            #[allow(clippy::redundant_closure_call)]
            let r = ($op)(ch.clone()).await;
            assert_code(r, 403, $text);
        }};
    }
    refused!(
        |ch: lapin::Channel| async move {
            ch.queue_declare("q2".into(), Default::default(), FieldTable::default())
                .await
        },
        "access to queue 'q2' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move {
            ch.exchange_declare(
                "x2".into(),
                lapin::ExchangeKind::Fanout,
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to exchange 'x2' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move { ch.queue_delete("other".into(), Default::default()).await },
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move { ch.exchange_delete("other.x".into(), Default::default()).await },
        "access to exchange 'other.x' in vhost '/' refused for user 'u'"
    );
    // queue.bind: write on the queue, read on the exchange.
    refused!(
        |ch: lapin::Channel| async move {
            ch.queue_bind(
                "u.mine".into(),
                "other.x".into(),
                "k".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to exchange 'other.x' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move {
            ch.queue_bind(
                "other".into(),
                "u.x".into(),
                "k".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    // exchange.bind: write on the destination, read on the source.
    refused!(
        |ch: lapin::Channel| async move {
            ch.exchange_bind(
                "u.x".into(),
                "other.x".into(),
                "k".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to exchange 'other.x' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move {
            ch.exchange_bind(
                "other.x".into(),
                "u.x".into(),
                "k".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to exchange 'other.x' in vhost '/' refused for user 'u'"
    );
    // consume / get / purge: read on the queue.
    refused!(
        |ch: lapin::Channel| async move {
            ch.basic_consume(
                "other".into(),
                "c".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await
        },
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move { ch.basic_get("other".into(), Default::default()).await },
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    refused!(
        |ch: lapin::Channel| async move { ch.queue_purge("other".into(), Default::default()).await },
        "access to queue 'other' in vhost '/' refused for user 'u'"
    );
    // A dead-letter exchange needs write on it.
    refused!(
        |ch: lapin::Channel| async move {
            ch.queue_declare(
                "u.dl".into(),
                Default::default(),
                table(vec![("x-dead-letter-exchange", lstr("other.x"))]),
            )
            .await
        },
        "access to exchange 'other.x' in vhost '/' refused for user 'u'"
    );

    // basic.publish: write on the exchange (the default exchange is `amq.default`).
    let pch = conn.create_channel().await.unwrap();
    let mut w = watch(&pch).await;
    publish(&pch, "", "u.mine", b"ok").await;
    publish(&pch, "u.x", "k", b"ok").await;
    wait_until(5, "two messages in u.mine", || counts(&b, "u.mine").0 == 2).await;
    publish(&pch, "other.x", "k", b"no").await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 403);
    assert!(text.starts_with(REFUSED_X), "{text}");
    assert!(text.contains("'other.x'"), "{text}");

    // Nothing of `other` leaked or changed.
    assert_eq!(counts(&b, "other").0, 1);

    // Revocation applies to the open connection at its next operation.
    let pch = conn.create_channel().await.unwrap();
    let mut w = watch(&pch).await;
    publish(&pch, "u.x", "k", b"before").await;
    wait_until(5, "three messages in u.mine", || counts(&b, "u.mine").0 == 3).await;
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/permissions/%2F/u",
            Some(json!({"configure": ".*", "write": "^$", "read": ".*"}))
        )
        .await,
        204
    );
    publish(&pch, "u.x", "k", b"after").await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 403, "{text}");
    assert_eq!(counts(&b, "u.mine").0, 3);
    let _ = REFUSED_Q;
    by.check().await;
}

#[tokio::test]
async fn vhost_access_is_checked_at_connection_open() {
    let b = start().await;
    let addr = b.running.amqp_addr;
    assert_eq!(admin(&b, "PUT", "/api/vhosts/other", None).await, 201);
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/users/v",
            Some(json!({"password": "vp", "tags": []}))
        )
        .await,
        201
    );
    // A user without permissions on a vhost: 530 with RabbitMQ's text.
    let (code, text) = Raw::login(addr, "v", "vp", "/").await.err().expect("refused");
    assert_eq!(code, 530);
    assert_eq!(text, "NOT_ALLOWED - access to vhost '/' refused for user 'v'");
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/permissions/other/v",
            Some(json!({"configure": ".*", "write": ".*", "read": ".*"}))
        )
        .await,
        201
    );
    Raw::login(addr, "v", "vp", "other")
        .await
        .expect("permitted vhost");
    assert!(Raw::login(addr, "v", "vp", "/").await.is_err());
    // guest has `.*` on `/` only.
    let (code, text) = Raw::login(addr, "guest", "guest", "other")
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (code, text.as_str()),
        (
            530,
            "NOT_ALLOWED - access to vhost 'other' refused for user 'guest'"
        )
    );
    // Wrong password: 403 (the client announced authentication_failure_close).
    let (code, _) = Raw::login(addr, "v", "wrong", "other")
        .await
        .err()
        .expect("refused");
    assert_eq!(code, 403);
    // Deleting the permission, then the user.
    assert_eq!(admin(&b, "DELETE", "/api/permissions/other/v", None).await, 204);
    assert_eq!(admin(&b, "DELETE", "/api/permissions/other/v", None).await, 404);
    assert!(Raw::login(addr, "v", "vp", "other").await.is_err());
    assert_eq!(admin(&b, "DELETE", "/api/users/v", None).await, 204);
    assert_eq!(admin(&b, "DELETE", "/api/users/v", None).await, 404);
    assert!(!b.running.broker.users.authenticate("v", "vp"));
    // Permissions for unknown users or vhosts are refused.
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/permissions/nope/guest",
            Some(json!({"configure": ".*", "write": ".*", "read": ".*"}))
        )
        .await,
        400
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn users_vhosts_and_permissions_survive_a_restart() {
    let first = start().await;
    let dir = first.data_dir.path.clone();
    let keep = first.data_dir;
    assert_eq!(
        admin_raw(
            &first.running.http_addr,
            ("guest", "guest"),
            "PUT",
            "/api/vhosts/prod",
            None
        )
        .await,
        201
    );
    assert_eq!(
        admin_raw(
            &first.running.http_addr,
            ("guest", "guest"),
            "PUT",
            "/api/users/root",
            Some(json!({"password": "rootpw", "tags": "administrator"}))
        )
        .await,
        201
    );
    assert_eq!(
        admin_raw(
            &first.running.http_addr,
            ("guest", "guest"),
            "PUT",
            "/api/permissions/prod/root",
            Some(json!({"configure": "^c", "write": "^w", "read": "^r"}))
        )
        .await,
        201
    );
    // The new administrator removes the default user.
    assert_eq!(
        admin_raw(
            &first.running.http_addr,
            ("root", "rootpw"),
            "DELETE",
            "/api/users/guest",
            None
        )
        .await,
        204
    );
    first.running.shutdown().await;

    let dir2 = dir.clone();
    let second = start_with(move |c| c.data_dir = dir2).await;
    let users = &second.running.broker.users;
    assert!(users.authenticate("root", "rootpw"));
    assert!(
        users.get("guest").is_none(),
        "a deleted default user is not recreated"
    );
    let p = users.permission("root", "prod").expect("permission persisted");
    assert_eq!(
        (p.configure.as_str(), p.write.as_str(), p.read.as_str()),
        ("^c", "^w", "^r")
    );
    assert!(
        second.running.broker.vhost("prod").is_some(),
        "empty vhost persisted"
    );
    Raw::login(second.running.amqp_addr, "root", "rootpw", "prod")
        .await
        .expect("root logs in");
    second.running.shutdown().await;
    drop(keep);
}

async fn admin_raw(
    http: &std::net::SocketAddr,
    who: (&str, &str),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> u16 {
    let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
    client::request(method, &format!("http://{http}{path}"), Some(who), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        .status
}

#[tokio::test]
async fn default_user_from_config_on_first_start() {
    let b = start_with(|c| {
        c.default_user = "boss".into();
        c.default_pass = "bosspw".into();
    })
    .await;
    assert!(b.running.broker.users.get("guest").is_none());
    Raw::login(b.running.amqp_addr, "boss", "bosspw", "/")
        .await
        .expect("default user logs in");
    b.running.shutdown().await;
}
