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
    // Its creator gets full permissions on it (as RabbitMQ); take them back.
    assert_eq!(
        admin(&b, "DELETE", "/api/permissions/other/guest", None).await,
        204
    );
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

async fn get_json(b: &TestBroker, path: &str) -> (u16, Value) {
    let url = format!("http://{}{}", b.running.http_addr, path);
    let r = client::request("GET", &url, Some(("guest", "guest")), None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.json())
}

#[tokio::test]
async fn topic_permissions_are_enforced_like_rabbitmq() {
    let b = start().await;
    let keep = b.data_dir.path.clone();
    // Set-up by the administrator: a catch-all queue on amq.topic and one on amq.direct.
    let g = b.connect().await;
    let gch = g.create_channel().await.unwrap();
    declare(&gch, "all").await;
    for (x, k) in [("amq.topic", "#"), ("amq.direct", "k")] {
        gch.queue_bind(
            "all".into(),
            x.into(),
            k.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        admin(
            &b,
            "PUT",
            "/api/users/t",
            Some(json!({"password": "tp", "tags": ""}))
        )
        .await,
        201
    );
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(admin(&b, "PUT", "/api/permissions/%2F/t", Some(all)).await, 201);

    // Management: RabbitMQ's paths, 201 then 204, variables kept unexpanded in listings.
    let tp = json!({"exchange": "amq.topic", "write": "^{username}\\.", "read": "^public\\."});
    assert_eq!(
        admin(&b, "PUT", "/api/topic-permissions/%2F/t", Some(tp)).await,
        201
    );
    let direct = json!({"exchange": "amq.direct", "write": "^$", "read": "^$"});
    assert_eq!(
        admin(&b, "PUT", "/api/topic-permissions/%2F/t", Some(direct)).await,
        204
    );
    let (status, got) = get_json(&b, "/api/topic-permissions/%2F/t").await;
    assert_eq!(status, 200);
    assert_eq!(
        got,
        json!([
            {"user": "t", "vhost": "/", "exchange": "amq.direct", "write": "^$", "read": "^$"},
            {"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^{username}\\.", "read": "^public\\."}
        ])
    );
    assert_eq!(get_json(&b, "/api/topic-permissions").await.1, got);
    assert_eq!(get_json(&b, "/api/users/t/topic-permissions").await.1, got);
    assert_eq!(get_json(&b, "/api/vhosts/%2F/topic-permissions").await.1, got);
    assert_eq!(get_json(&b, "/api/topic-permissions/%2F/guest").await.0, 404);
    // A bad regex, an unknown user or vhost: 400; not an administrator: 401.
    let bad = json!({"exchange": "amq.topic", "write": "(", "read": ""});
    assert_eq!(
        admin(&b, "PUT", "/api/topic-permissions/%2F/t", Some(bad)).await,
        400
    );
    let ok = json!({"exchange": "amq.topic", "write": ".*", "read": ".*"});
    assert_eq!(
        admin(&b, "PUT", "/api/topic-permissions/%2F/nobody", Some(ok.clone())).await,
        400
    );
    assert_eq!(
        admin(&b, "PUT", "/api/topic-permissions/nope/t", Some(ok.clone())).await,
        400
    );
    assert_eq!(
        call(&b, ("t", "tp"), "PUT", "/api/topic-permissions/%2F/t", Some(ok)).await,
        401
    );

    let conn = connect_as(&b, "t", "tp").await;
    // Publish: the routing key against `write` ({username} expanded), topic exchanges only.
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    publish(&ch, "amq.topic", "t.1", b"mine").await;
    publish(&ch, "amq.direct", "k", b"not a topic exchange").await;
    wait_until(5, "two messages in all", || counts(&b, "all").0 == 2).await;
    publish(&ch, "amq.topic", "other.1", b"no").await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(
        (code, text.as_str()),
        (
            403,
            "ACCESS_REFUSED - write access to topic 'other.1' in exchange 'amq.topic' in vhost '/' refused for user 't'"
        )
    );
    // CC routing keys are checked too (RabbitMQ 3.13+ checks every routing key).
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(
        "CC".into(),
        lapin::types::AMQPValue::FieldArray(vec![lstr("other.2")].into()),
    );
    publish_props(
        &ch,
        "amq.topic",
        "t.2",
        b"cc",
        lapin::BasicProperties::default().with_headers(headers),
    )
    .await;
    let (code, text) = closed_with(&mut w).await;
    assert_eq!(code, 403);
    assert!(text.contains("write access to topic 'other.2'"), "{text}");
    assert_eq!(counts(&b, "all").0, 2, "nothing refused was routed");

    // Bindings from a topic exchange: the binding key against `read`.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "t.q").await;
    ch.queue_bind(
        "t.q".into(),
        "amq.topic".into(),
        "public.#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .expect("permitted binding key");
    let r = ch
        .queue_bind(
            "t.q".into(),
            "amq.topic".into(),
            "secret.#".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(
        r,
        403,
        "read access to topic 'secret.#' in exchange 'amq.topic' in vhost '/' refused for user 't'",
    );
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "t.x".into(),
        lapin::ExchangeKind::Fanout,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let r = ch
        .exchange_bind(
            "t.x".into(),
            "amq.topic".into(),
            "secret.#".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(r, 403, "read access to topic 'secret.#' in exchange 'amq.topic'");

    // Survives a restart (and definitions export shows it).
    let (_, defs) = get_json(&b, "/api/definitions").await;
    assert_eq!(defs["topic_permissions"], got);
    drop(conn);
    drop(g);
    let data_dir = b.data_dir;
    b.running.shutdown().await;
    let b = start_with(move |c| c.data_dir = keep).await;
    assert_eq!(get_json(&b, "/api/topic-permissions").await.1, got);

    // Clearing one exchange's, then all, applies to the open connection.
    let g = b.connect().await;
    let gch = g.create_channel().await.unwrap();
    declare(&gch, "all").await;
    gch.queue_bind(
        "all".into(),
        "amq.topic".into(),
        "#".into(),
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let conn = connect_as(&b, "t", "tp").await;
    let ch = conn.create_channel().await.unwrap();
    let mut w = watch(&ch).await;
    assert_eq!(
        admin(&b, "DELETE", "/api/topic-permissions/%2F/t/amq.direct", None).await,
        204
    );
    assert_eq!(
        get_json(&b, "/api/topic-permissions/%2F/t")
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        admin(&b, "DELETE", "/api/topic-permissions/%2F/t", None).await,
        204
    );
    assert_eq!(
        admin(&b, "DELETE", "/api/topic-permissions/%2F/t", None).await,
        404
    );
    publish(&ch, "amq.topic", "other.3", b"now allowed").await;
    wait_until(5, "a message in all", || counts(&b, "all").0 == 1).await;
    // Definitions import creates them (and rejects bad ones).
    let doc = json!({"topic_permissions": [
        {"user": "t", "vhost": "/", "exchange": "amq.topic", "write": "^t\\.", "read": ".*"}]});
    assert_eq!(admin(&b, "POST", "/api/definitions", Some(doc)).await, 204);
    publish(&ch, "amq.topic", "other.4", b"no").await;
    let (code, _) = closed_with(&mut w).await;
    assert_eq!(code, 403);
    let doc = json!({"topic_permissions": [
        {"user": "ghost", "vhost": "/", "exchange": "amq.topic", "write": ".*", "read": ".*"}]});
    assert_eq!(admin(&b, "POST", "/api/definitions", Some(doc)).await, 400);
    b.running.shutdown().await;
    drop(data_dir);
}

#[tokio::test]
async fn warrenctl_manages_users_vhosts_and_permissions() {
    use warren_server::http::ctl::run_from;
    let b = start().await;
    let url = format!("http://{}", b.running.http_addr);
    let ctl = |args: &[&str]| {
        let mut argv = vec!["warrenctl", "--url", url.as_str()];
        argv.extend_from_slice(args);
        let argv: Vec<String> = argv.into_iter().map(str::to_string).collect();
        async move { run_from(argv).await }
    };
    let users = &b.running.broker.users;

    assert_eq!(
        ctl(&["add_user", "bob", "pw"]).await.unwrap(),
        "Adding user \"bob\" ...\n"
    );
    assert_eq!(
        ctl(&["add_user", "bob", "pw"]).await.unwrap_err(),
        "user_already_exists: bob"
    );
    assert!(users.authenticate("bob", "pw"));
    ctl(&["set_user_tags", "bob", "administrator", "monitoring"])
        .await
        .unwrap();
    ctl(&["change_password", "bob", "pw2"]).await.unwrap();
    assert!(users.authenticate("bob", "pw2"));
    assert_eq!(users.get("bob").unwrap().tags, ["administrator", "monitoring"]);
    let out = ctl(&["list_users"]).await.unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("bob") && l.ends_with("[administrator, monitoring]")),
        "{out}"
    );
    let json_out: Value = serde_json::from_str(&ctl(&["--json", "list_users"]).await.unwrap()).unwrap();
    assert!(json_out.as_array().unwrap().iter().any(|u| u["name"] == "bob"));

    ctl(&["add_vhost", "dev"]).await.unwrap();
    assert!(ctl(&["list_vhosts"]).await.unwrap().lines().any(|l| l == "dev"));
    // rabbitmqctl's `-p VHOST` after the command name.
    ctl(&["set_permissions", "-p", "dev", "bob", "^b", ".*", ".*"])
        .await
        .unwrap();
    let p = users.permission("bob", "dev").expect("set");
    assert_eq!((p.configure.as_str(), p.write.as_str()), ("^b", ".*"));
    let out = ctl(&["list_permissions", "-p", "dev"]).await.unwrap();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["bob", "^b", ".*", ".*"]),
        "{out}"
    );
    let out = ctl(&["list_user_permissions", "bob"]).await.unwrap();
    assert!(out.lines().any(|l| l.starts_with("dev")), "{out}");
    // The hyphenated spellings work too.
    ctl(&[
        "set-topic-permissions",
        "-p",
        "dev",
        "bob",
        "amq.topic",
        "^b\\.",
        ".*",
    ])
    .await
    .unwrap();
    ctl(&["set_topic_permissions", "-p", "dev", "bob", "x2", "", ""])
        .await
        .unwrap();
    assert_eq!(users.topic_permissions_of("bob", "dev").len(), 2);
    let out = ctl(&["list_topic_permissions", "-p", "dev"]).await.unwrap();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["bob", "amq.topic", "^b\\.", ".*"]),
        "{out}"
    );
    assert!(
        ctl(&["list_user_topic_permissions", "bob"])
            .await
            .unwrap()
            .contains("amq.topic")
    );
    ctl(&["clear_topic_permissions", "-p", "dev", "bob", "x2"])
        .await
        .unwrap();
    assert_eq!(users.topic_permissions_of("bob", "dev").len(), 1);
    ctl(&["clear_topic_permissions", "-p", "dev", "bob"])
        .await
        .unwrap();
    assert!(users.topic_permissions_of("bob", "dev").is_empty());
    ctl(&["clear_permissions", "-p", "dev", "bob"]).await.unwrap();
    assert!(users.permission("bob", "dev").is_none());
    // bob (an administrator now) can drive warrenctl himself.
    let url2 = url.clone();
    let out = run_from([
        "warrenctl",
        "--url",
        &url2,
        "--user",
        "bob",
        "--password",
        "pw2",
        "delete_vhost",
        "dev",
    ])
    .await
    .unwrap();
    assert_eq!(out, "Deleting vhost \"dev\" ...\n");
    assert!(b.running.broker.vhost("dev").is_none());
    assert_eq!(
        ctl(&["delete_vhost", "dev"]).await.unwrap_err(),
        "no_such_vhost: dev"
    );
    ctl(&["delete-user", "bob"]).await.unwrap();
    assert!(users.get("bob").is_none());
    assert_eq!(
        ctl(&["delete_user", "bob"]).await.unwrap_err(),
        "no_such_user: bob"
    );
    assert_eq!(
        ctl(&["change_password", "bob", "x"]).await.unwrap_err(),
        "no_such_user: bob"
    );
    b.running.shutdown().await;
}
