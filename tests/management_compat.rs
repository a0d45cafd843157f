//! The management API as RabbitMQ's own CLIs (rabbitmqadmin v1 and v2) read and drive it
//! (issue 18): the fields v2's response types require of connections, channels and
//! consumers, closing connections with RabbitMQ's reply texts, the cluster name, and the
//! endpoints tools call for features Warren answers as RabbitMQ does without them. Each test
//! drives an in-process broker on 127.0.0.1 (ephemeral ports) over real HTTP and AMQP.

mod common;

use std::time::Duration;

use common::raw::Raw;
use common::*;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_server::http::client::{self, encode_segment};

/// One request as `guest` with extra `headers` (`X-Reason`); `(status, JSON body or Null)`.
async fn api(
    b: &TestBroker,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let addr = b.running.http_addr;
    let payload = body.map(|v| v.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n",
        payload.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    let raw = within(10, "an HTTP answer", async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    })
    .await;
    let r = client::parse_response(&raw).unwrap();
    let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, json)
}

/// `GET path` answered 200; its JSON.
async fn ok(b: &TestBroker, path: &str) -> Value {
    let (status, v) = api(b, "GET", path, None, &[]).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Polls `GET path` until `cond` holds on its JSON (5 s deadline); returns that JSON.
async fn ok_when(b: &TestBroker, path: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let v = ok(b, path).await;
        if cond(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path}: never as expected: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The channel numbered `n` in a `/api/channels` listing.
fn numbered(chans: &Value, n: u64) -> &Value {
    chans
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["number"] == n)
        .unwrap_or_else(|| panic!("no channel {n} in {chans}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_consumers_and_connections_carry_what_rabbitmqadmin_v2_requires() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    ch.queue_declare("cq".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let _consumer = ch
        .basic_consume(
            "cq".into(),
            "ctag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _idle = conn.create_channel().await.unwrap();

    let chans = ok_when(&b, "/api/channels", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let channel = |n: u64| numbered(&chans, n);
    let busy = channel(1);
    assert_eq!(busy["consumer_count"], 1, "{busy}");
    assert_eq!(busy["prefetch_count"], 7, "{busy}");
    for (field, want) in [
        ("confirm", json!(false)),
        ("transactional", json!(false)),
        ("messages_unacknowledged", json!(0)),
        ("messages_unconfirmed", json!(0)),
        ("state", json!("running")),
        ("vhost", json!("/")),
    ] {
        assert_eq!(busy[field], want, "{field}: {busy}");
    }
    assert!(busy["connection_details"]["peer_host"].is_string(), "{busy}");
    assert!(busy["connection_details"]["peer_port"].is_u64(), "{busy}");
    let idle = channel(2);
    assert_eq!(idle["consumer_count"], 0, "{idle}");

    // One channel by name, and the vhost's channels.
    let name = busy["name"].as_str().unwrap();
    let one = ok(&b, &format!("/api/channels/{}", encode_segment(name))).await;
    assert_eq!(one["consumer_count"], 1);
    assert_eq!(one["name"], name);
    assert_eq!(
        ok(&b, "/api/vhosts/%2F/channels").await.as_array().unwrap().len(),
        2
    );
    assert_eq!(
        api(&b, "GET", "/api/vhosts/nope/channels", None, &[]).await.0,
        404
    );
    assert_eq!(api(&b, "GET", "/api/channels/nope%20(1)", None, &[]).await.0, 404);

    // Consumers: RabbitMQ 4's consumer_timeout (the broker's, in ms) and channel_details.
    let cons = ok(&b, "/api/consumers").await;
    assert_eq!(cons[0]["consumer_tag"], "ctag");
    assert_eq!(cons[0]["consumer_timeout"], 1_800_000);
    assert_eq!(cons[0]["channel_details"]["number"], 1);
    assert_eq!(cons[0]["channel_details"]["name"], name);
    assert!(cons[0]["channel_details"]["peer_host"].is_string());

    // Connections: connected_at and the limits and counters v2 shows.
    let c = &ok(&b, "/api/connections").await[0];
    assert!(c["connected_at"].as_u64().unwrap() > 1_600_000_000_000, "{c}");
    assert_eq!(c["channel_max"], 2047, "{c}");
    assert!(c["frame_max"].as_u64().unwrap() > 0, "{c}");
    assert!(c["recv_oct"].as_u64().unwrap() > 0, "{c}");
    assert!(c["send_oct"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["channels"], 2, "{c}");
    b.running.shutdown().await;
}

/// A channel's modes and unacknowledged count as the connection task records them, and the
/// real channel numbers after a channel in the middle closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_show_their_modes_unacked_counts_and_real_numbers() {
    let b = start().await;
    let conn = b.connect().await;
    let confirming = conn.create_channel().await.unwrap();
    let closed = conn.create_channel().await.unwrap();
    let transactional = conn.create_channel().await.unwrap();
    confirming
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    transactional.tx_select().await.unwrap();
    closed.close(200, "bye".into()).await.unwrap();
    confirming
        .queue_declare("mq".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    confirming
        .basic_publish(
            "".into(),
            "mq".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let _consumer = confirming
        .basic_consume(
            "mq".into(),
            "unacking".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let numbers = |v: &Value| -> Vec<u64> {
        let mut n: Vec<u64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["number"].as_u64().unwrap())
            .collect();
        n.sort();
        n
    };
    let chans = ok_when(&b, "/api/channels", |v| {
        numbers(v) == [1, 3]
            && v.as_array()
                .unwrap()
                .iter()
                .any(|c| c["messages_unacknowledged"] == 1)
    })
    .await;
    let (one, three) = (numbered(&chans, 1).clone(), numbered(&chans, 3).clone());
    assert_eq!(
        (&one["confirm"], &one["transactional"]),
        (&json!(true), &json!(false)),
        "{one}"
    );
    assert_eq!(one["messages_unacknowledged"], 1, "{one}");
    assert_eq!(
        (&three["confirm"], &three["transactional"]),
        (&json!(false), &json!(true)),
        "{three}"
    );
    assert_eq!(three["messages_unacknowledged"], 0, "{three}");
    // By name: the third channel is "... (3)", and "(2)" is gone.
    let name = three["name"].as_str().unwrap();
    assert!(name.ends_with(" (3)"), "{name}");
    let gone = name.replace(" (3)", " (2)");
    assert_eq!(
        api(
            &b,
            "GET",
            &format!("/api/channels/{}", encode_segment(&gone)),
            None,
            &[]
        )
        .await
        .0,
        404
    );
    b.running.shutdown().await;
}

/// The connection named in `/api/connections` for the only open connection.
async fn only_connection(b: &TestBroker) -> String {
    let list = ok_when(b, "/api/connections", |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    list[0]["name"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_through_the_api_read_rabbitmqs_texts() {
    let b = start().await;
    let addr = b.running.amqp_addr;

    // DELETE /api/connections/{name} with X-Reason: 320 and that text.
    let mut raw = Raw::handshake(addr, 0).await;
    let name = only_connection(&b).await;
    let path = format!("/api/connections/{}", encode_segment(&name));
    assert_eq!(
        api(&b, "DELETE", &path, None, &[("X-Reason", "bye now")]).await.0,
        204
    );
    assert_eq!(
        raw.expect_connection_close().await,
        (320, "CONNECTION_FORCED - bye now".to_string())
    );
    ok_when(&b, "/api/connections", |v| {
        v.as_array().is_some_and(Vec::is_empty)
    })
    .await;

    // Every connection of a user, RabbitMQ's default reason.
    let mut raw = Raw::handshake(addr, 0).await;
    only_connection(&b).await;
    assert_eq!(
        api(&b, "DELETE", "/api/connections/username/guest", None, &[])
            .await
            .0,
        204
    );
    assert_eq!(
        raw.expect_connection_close().await,
        (
            320,
            "CONNECTION_FORCED - Closed via management plugin".to_string()
        )
    );

    // Deleting a vhost closes its connections with RabbitMQ's text.
    assert_eq!(
        api(&b, "PUT", "/api/vhosts/vd", Some(json!({})), &[]).await.0,
        201
    );
    let mut raw = Raw::login(addr, "guest", "guest", "vd").await.unwrap();
    assert_eq!(api(&b, "DELETE", "/api/vhosts/vd", None, &[]).await.0, 204);
    assert_eq!(
        raw.expect_connection_close().await,
        (320, "CONNECTION_FORCED - vhost 'vd' is deleted".to_string())
    );
    b.running.shutdown().await;
}

/// RabbitMQ terminates a connection's channels when it sends connection.close, not when the
/// client's close-ok arrives: a client that never answers (a hung or careless one) does not
/// keep its consumers or its unacked messages for the 30 s closing timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_gives_back_its_messages_before_close_ok() {
    use warren_codec::Method;
    use warren_codec::methods::BasicConsume;
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "held").await;
    publish(&ch, "", "held", b"m1").await;

    let mut raw = Raw::handshake(b.running.amqp_addr, 0).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        BasicConsume {
            queue: "held".into(),
            consumer_tag: "raw".into(),
            ..Default::default()
        },
    )
    .await;
    // The raw client holds m1 unacked.
    loop {
        match raw.next_frame().await {
            Some(warren_codec::Frame::Method {
                method: Method::BasicDeliver(_),
                ..
            }) => break,
            Some(_) => continue,
            None => panic!("socket closed before the delivery"),
        }
    }
    let port = raw.stream.local_addr().unwrap().port();
    let name = ok_when(&b, "/api/connections", |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await
    .as_array()
    .unwrap()
    .iter()
    .map(|c| c["name"].as_str().unwrap().to_string())
    .find(|n| n.contains(&format!(":{port} ->")))
    .expect("the raw client's connection is listed");
    let path = format!("/api/connections/{}", encode_segment(&name));
    assert_eq!(api(&b, "DELETE", &path, None, &[]).await.0, 204);
    // connection.close arrives; the raw client does not answer it. Its consumer is gone and
    // m1 is back, well within the closing timeout.
    loop {
        match raw.next_frame().await {
            Some(warren_codec::Frame::Method {
                channel: 0,
                method: Method::ConnectionClose(c),
            }) => {
                assert_eq!(c.reply_code, 320);
                break;
            }
            Some(_) => continue,
            None => panic!("socket closed without connection.close"),
        }
    }
    ok_when(&b, "/api/consumers", |v| v.as_array().is_some_and(Vec::is_empty)).await;
    let mut consumer = consume(&ch, "held", "after").await;
    let d = within(5, "m1 redelivered", next(&mut consumer)).await;
    assert_eq!(&d.data[..], b"m1");
    assert!(d.redelivered);
    drop(raw);
    b.running.shutdown().await;
}

#[tokio::test]
async fn the_cluster_name_can_be_renamed() {
    let b = start().await;
    assert_eq!(ok(&b, "/api/cluster-name").await, json!({"name": "warren"}));
    let put = |body| api(&b, "PUT", "/api/cluster-name", Some(body), &[]);
    assert_eq!(put(json!({"name": "east"})).await.0, 204);
    assert_eq!(put(json!({})).await.0, 400);
    assert_eq!(put(json!({"name": ""})).await.0, 400);
    assert_eq!(ok(&b, "/api/cluster-name").await, json!({"name": "east"}));
    assert_eq!(ok(&b, "/api/overview").await["cluster_name"], "east");
    let param = json!({"name": "cluster_name", "value": "east"});
    assert_eq!(ok(&b, "/api/global-parameters").await, json!([param.clone()]));
    assert_eq!(ok(&b, "/api/global-parameters/cluster_name").await, param);
    assert_eq!(
        ok(&b, "/api/definitions").await["global_parameters"],
        json!([param])
    );
    assert_eq!(
        api(&b, "GET", "/api/global-parameters/nope", None, &[]).await.0,
        404
    );
    // An import renames it; one with an empty name is reported and changes nothing.
    let import = |value: Value| {
        let doc = json!({"global_parameters": [{"name": "cluster_name", "value": value}]});
        api(&b, "POST", "/api/definitions", Some(doc), &[])
    };
    assert_eq!(import(json!("west")).await.0, 204);
    assert_eq!(ok(&b, "/api/cluster-name").await, json!({"name": "west"}));
    let (status, report) = import(json!("")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["skipped"],
        json!([{"kind": "global_parameter", "vhost": null, "name": "cluster_name",
                "reason": "the cluster name must be a non-empty string"}])
    );
    assert_eq!(import(json!("east")).await.0, 204);
    assert_eq!(ok(&b, "/api/cluster-name").await, json!({"name": "east"}));
    // Durable: a restart on the same data directory keeps the name, and the default user
    // still logs in (a cluster-name record is not a user database).
    let TestBroker {
        running, data_dir, ..
    } = b;
    running.shutdown().await;
    let dir = data_dir.path.clone();
    let b = start_with(move |c| c.data_dir = dir).await;
    assert_eq!(ok(&b, "/api/cluster-name").await, json!({"name": "east"}));
    let conn = b.connect().await;
    conn.close(200, "bye".into()).await.unwrap();
    b.running.shutdown().await;
    drop(data_dir);
}

#[tokio::test]
async fn endpoints_tools_read_answer_as_rabbitmq_does() {
    let b = start_with(|c| {
        c.max_queues_per_vhost = 5;
        c.max_connections_per_user = 3;
    })
    .await;
    let auth = ok(&b, "/api/auth").await;
    assert_eq!(auth["oauth_enabled"], false);
    assert_eq!(auth["enable_uaa"], false);

    // A user without permissions is listed; guest (who has some) is not.
    let body = json!({"password": "p", "tags": "management"});
    assert_eq!(api(&b, "PUT", "/api/users/loner", Some(body), &[]).await.0, 201);
    let names: Vec<Value> = ok(&b, "/api/users/without-permissions")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("loner")]);
    // A literal route's other methods are its 405, not a user named "without-permissions".
    let (status, _) = api(
        &b,
        "PUT",
        "/api/users/without-permissions",
        Some(json!({"password": "x", "tags": ""})),
        &[],
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(
        api(&b, "GET", "/api/users/without-permissions", None, &[])
            .await
            .0,
        200
    );

    assert_eq!(
        api(&b, "PUT", "/api/queues/%2F/dq", Some(json!({})), &[]).await.0,
        201
    );
    let detailed = ok(&b, "/api/queues/detailed").await;
    assert_eq!(detailed[0]["name"], "dq", "{detailed}");

    assert_eq!(
        ok(&b, "/api/vhost-limits/%2F").await,
        json!([{"vhost": "/", "value": {"max-queues": 5}}])
    );
    assert_eq!(api(&b, "GET", "/api/vhost-limits/nope", None, &[]).await.0, 404);
    assert_eq!(
        ok(&b, "/api/user-limits/guest").await,
        json!([{"user": "guest", "value": {"max-connections": 3}}])
    );
    assert_eq!(api(&b, "GET", "/api/user-limits/nobody", None, &[]).await.0, 404);
    for missing in [
        "/api/parameters/federation-upstream/%2F/up",
        "/api/operator-policies/%2F/op",
    ] {
        assert_eq!(api(&b, "GET", missing, None, &[]).await.0, 404, "{missing}");
    }

    let node = ok(&b, "/api/nodes").await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ok(&b, &format!("/api/nodes/{node}/memory")).await,
        json!({"memory": "not_available"})
    );
    assert_eq!(ok(&b, &format!("/api/auth/attempts/{node}")).await, json!([]));
    assert_eq!(
        ok(&b, &format!("/api/auth/attempts/{node}/source")).await,
        json!([])
    );
    assert_eq!(api(&b, "GET", "/api/nodes/nope@x/memory", None, &[]).await.0, 404);

    let types: Vec<Value> = ok(&b, "/api/overview").await["exchange_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(types.contains(&json!("x-consistent-hash")), "{types:?}");
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connection_limit_and_service_health_checks() {
    let b = start_with(|c| c.max_connections = 1).await;
    let check = "/api/health/checks/below-node-connection-limit";
    assert_eq!(api(&b, "GET", check, None, &[]).await.0, 200);
    assert_eq!(
        ok(&b, "/api/health/checks/is-in-service").await,
        json!({"status": "ok"})
    );
    let _raw = Raw::handshake(b.running.amqp_addr, 0).await;
    only_connection(&b).await;
    let (status, body) = api(&b, "GET", check, None, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "failed");
    b.running.shutdown().await;
}

/// A self-signed `localhost` certificate valid until `not_after`, as (cert PEM, key PEM).
fn certificate(not_after: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn certificate_expiration_reads_the_tls_listeners_certificate() {
    // Without a TLS listener: argument checks, then ok.
    let b = start().await;
    let path = "/api/health/checks/certificate-expiration";
    assert_eq!(ok(&b, &format!("{path}/1/weeks")).await, json!({"status": "ok"}));
    for bad in ["0/days", "x/days", "1/fortnights"] {
        let (status, body) = api(&b, "GET", &format!("{path}/{bad}"), None, &[]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    b.running.shutdown().await;

    // A certificate valid for centuries passes; an expired one fails every period.
    for (not_after, healthy) in [((4000, 1, 1), true), ((2001, 1, 1), false)] {
        let dir = tempdir::Dir::new();
        let (cert, key) = certificate(not_after);
        let (cert_path, key_path) = (dir.path.join("cert.pem"), dir.path.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let b = start_with(|c| {
            c.tls_listen = "127.0.0.1:0".parse().unwrap();
            c.tls_cert = Some(cert_path.clone());
            c.tls_key = Some(key_path);
        })
        .await;
        let (status, body) = api(&b, "GET", &format!("{path}/1/years"), None, &[]).await;
        if healthy {
            assert_eq!((status, body), (200, json!({"status": "ok"})));
        } else {
            assert_eq!(status, 503, "{body}");
            assert_eq!(body["reason"], "Certificates expiring");
            assert_eq!(body["expired"][0]["certfile"], cert_path.display().to_string());
            assert!(body["expired"][0]["expires_on"].as_i64().unwrap() < 1_000_000_000);
        }
        b.running.shutdown().await;
    }
}

/// rabbitmqadmin v1 sends booleans and counts as strings, which RabbitMQ (3.10, checked side
/// by side) accepts; values inside `arguments` and `properties` it parses as JSON, and
/// RabbitMQ refuses strings there ("expected integer, got longstr") — so does Warren.
#[tokio::test]
async fn rabbitmqadmin_v1_string_values_as_rabbitmq_takes_them() {
    let b = start().await;
    let put = |path: &'static str, body: Value| api(&b, "PUT", path, Some(body), &[]);
    assert_eq!(put("/api/vhosts/v1", json!({"tracing": "true"})).await.0, 201);
    let q = json!({"durable": "true", "auto_delete": "false", "arguments": {}, "node": "warren@x"});
    assert_eq!(put("/api/queues/v1/q", q).await.0, 201);
    let x = json!({"type": "direct", "durable": "false", "internal": "false", "auto_delete": "true"});
    assert_eq!(put("/api/exchanges/v1/x", x).await.0, 201);
    let xq = ok(&b, "/api/exchanges/v1/x").await;
    assert_eq!(
        (xq["durable"].clone(), xq["auto_delete"].clone()),
        (json!(false), json!(true))
    );
    let bind = json!({"routing_key": "k", "arguments": {}, "destination_type": "queue"});
    assert_eq!(
        api(&b, "POST", "/api/bindings/v1/e/x/q/q", Some(bind), &[])
            .await
            .0,
        201
    );
    let publish = json!({"routing_key": "k", "payload": "p", "payload_encoding": "string",
                         "properties": {"delivery_mode": 2}});
    let (status, routed) = api(&b, "POST", "/api/exchanges/v1/x/publish", Some(publish), &[]).await;
    assert_eq!((status, routed), (200, json!({"routed": true})));
    let get = json!({"count": "5", "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": "50000"});
    let (status, got) = api(&b, "POST", "/api/queues/v1/q/get", Some(get), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(got[0]["payload"], "p", "{got}");
    let policy = json!({"pattern": "^q", "definition": {"max-length": 5}, "priority": "1",
                        "apply-to": "queues"});
    assert_eq!(put("/api/policies/v1/p", policy).await.0, 201);
    let user = json!({"password": "p", "tags": "management,monitoring"});
    assert_eq!(put("/api/users/u1", user).await.0, 201);
    assert_eq!(
        ok(&b, "/api/users/u1").await["tags"],
        json!(["management", "monitoring"])
    );
    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(put("/api/permissions/v1/u1", perm).await.0, 201);

    // As RabbitMQ: strings where an argument or property needs a number are refused.
    let q = json!({"durable": "true", "arguments": {"x-max-length": "10"}});
    assert_eq!(put("/api/queues/v1/q2", q).await.0, 400);
    let publish = json!({"routing_key": "k", "payload": "p", "properties": {"delivery_mode": "2"}});
    let (status, _) = api(&b, "POST", "/api/exchanges/v1/x/publish", Some(publish), &[]).await;
    assert_eq!(status, 400);
    b.running.shutdown().await;
}

/// `/api/vhosts` pages, filters and sorts as RabbitMQ's (3.10.8 answers it paged).
#[tokio::test]
async fn vhosts_are_paginated_as_rabbitmq() {
    let b = start().await;
    for v in ["alpha", "beta", "gamma"] {
        assert_eq!(
            api(&b, "PUT", &format!("/api/vhosts/{v}"), Some(json!({})), &[])
                .await
                .0,
            201
        );
    }
    let page = ok(&b, "/api/vhosts?page=2&page_size=2&sort=name&columns=name").await;
    assert_eq!(
        page["items"],
        json!([{"name": "beta"}, {"name": "gamma"}]),
        "{page}"
    );
    assert_eq!(
        (page["total_count"].clone(), page["page_count"].clone()),
        (json!(4), json!(2))
    );
    let filtered = ok(&b, "/api/vhosts?page=1&name=^(a|b)&use_regex=true&columns=name").await;
    assert_eq!(
        filtered["items"],
        json!([{"name": "alpha"}, {"name": "beta"}]),
        "{filtered}"
    );
    assert_eq!(filtered["filtered_count"], 2);
    // Without `page`: the plain list, every vhost.
    assert_eq!(ok(&b, "/api/vhosts").await.as_array().unwrap().len(), 4);
    b.running.shutdown().await;
}

/// Every listing takes RabbitMQ's `sort`, `sort_reverse` and `columns`; the ones RabbitMQ
/// pages (queues, exchanges, connections, channels, vhosts) take `page`, `page_size` and
/// `name`, the others (users, policies, permissions, bindings, consumers) list everything,
/// as RabbitMQ 3.10.8 answers them side by side. A repeated parameter counts the first time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_sorts_picks_columns_and_pages_as_rabbitmq() {
    let b = start().await;
    for u in ["alice", "bob", "carol"] {
        let user = json!({"password": "x", "tags": ""});
        let path = format!("/api/users/{u}");
        assert_eq!(api(&b, "PUT", &path, Some(user), &[]).await.0, 201);
    }
    for p in ["pa", "pb", "pc"] {
        let policy = json!({"pattern": format!("^{p}"), "definition": {"max-length": 10}});
        let path = format!("/api/policies/%2F/{p}");
        assert_eq!(api(&b, "PUT", &path, Some(policy), &[]).await.0, 201);
    }
    let users = ok(&b, "/api/users?sort=name&sort_reverse=true&columns=name,tags").await;
    assert_eq!(
        users,
        json!([{"name": "guest", "tags": ["administrator"]}, {"name": "carol", "tags": []},
               {"name": "bob", "tags": []}, {"name": "alice", "tags": []}])
    );
    // Not paged: the page parameters are checked, then the whole list answers.
    let all = ok(&b, "/api/users?page=1&page_size=2&columns=name").await;
    assert_eq!(all.as_array().unwrap().len(), 4, "{all}");
    let without = ok(&b, "/api/users/without-permissions?columns=name").await;
    assert_eq!(
        without,
        json!([{"name": "alice"}, {"name": "bob"}, {"name": "carol"}])
    );
    for path in [
        "/api/permissions?columns=user",
        "/api/vhosts/%2F/permissions?columns=user",
    ] {
        assert_eq!(ok(&b, path).await, json!([{"user": "guest"}]), "{path}");
    }
    let policies = ok(&b, "/api/policies?sort=name&sort_reverse=true&columns=name,vhost").await;
    assert_eq!(
        policies,
        json!([{"name": "pc", "vhost": "/"}, {"name": "pb", "vhost": "/"}, {"name": "pa", "vhost": "/"}])
    );
    let policies = ok(&b, "/api/policies/%2F?page=2&page_size=2&columns=name").await;
    assert_eq!(policies.as_array().unwrap().len(), 3, "{policies}");

    // Queues, exchanges, connections, channels: paged, filtered and sorted.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for (q, n) in [("qa", 2), ("qb", 0), ("qc", 1)] {
        declare(&ch, q).await;
        for _ in 0..n {
            publish(&ch, "", q, b"m").await;
        }
    }
    let _consumer = consume(&ch, "qb", "tag-b").await;
    ok_when(&b, "/api/queues?columns=name,messages", |v| {
        v == &json!([{"name": "qa", "messages": 2}, {"name": "qb", "messages": 0},
                     {"name": "qc", "messages": 1}])
    })
    .await;
    let page = ok(
        &b,
        "/api/queues/%2F?page=1&page_size=2&sort=messages&sort_reverse=true&columns=name,messages",
    )
    .await;
    assert_eq!(
        page,
        json!({"filtered_count": 3, "item_count": 2,
               "items": [{"name": "qa", "messages": 2}, {"name": "qc", "messages": 1}],
               "page": 1, "page_count": 2, "page_size": 2, "total_count": 3})
    );
    let page = ok(
        &b,
        "/api/exchanges/%2F?page=1&page_size=2&name=amq.d&columns=name,type",
    )
    .await;
    assert_eq!(
        page["items"],
        json!([{"name": "amq.direct", "type": "direct"}]),
        "{page}"
    );
    assert_eq!(page["filtered_count"], 1, "{page}");
    // The first of a repeated parameter counts.
    let page = ok(&b, "/api/exchanges?page=1&page_size=1&page_size=2&columns=name").await;
    assert_eq!(
        (&page["page_size"], &page["items"]),
        (&json!(1), &json!([{"name": ""}]))
    );
    for path in ["/api/connections", "/api/channels"] {
        let page = ok(&b, &format!("{path}?page=1&page_size=1&columns=user,vhost")).await;
        assert_eq!(
            page["items"],
            json!([{"user": "guest", "vhost": "/"}]),
            "{path}: {page}"
        );
    }
    let consumers = ok(&b, "/api/consumers?columns=consumer_tag,queue.name").await;
    assert_eq!(
        consumers,
        json!([{"consumer_tag": "tag-b", "queue": {"name": "qb"}}])
    );
    let bindings = ok(
        &b,
        "/api/bindings/%2F?sort=destination&sort_reverse=true&columns=destination",
    )
    .await;
    assert_eq!(
        bindings,
        json!([{"destination": "qc"}, {"destination": "qb"}, {"destination": "qa"}])
    );

    let path = "/api/queues/%2F/qa/bindings?columns=source,destination";
    assert_eq!(ok(&b, path).await, json!([{"source": "", "destination": "qa"}]));
    let path = "/api/exchanges/%2F/amq.direct/bindings/source?columns=destination";
    assert_eq!(ok(&b, path).await, json!([]));

    // RabbitMQ's 400s: a page past the end, a bad page size, a non-integer page (on the
    // listings RabbitMQ does not page too, where 3.10.8 fails with an empty 500).
    let (status, e) = api(&b, "GET", "/api/queues?page=3&page_size=2", None, &[]).await;
    assert_eq!(
        (status, e),
        (
            400,
            json!({"error": "page_out_of_range", "reason": "Page out of range, page: 3 page size: 2, len: 3"})
        )
    );
    let (status, e) = api(&b, "GET", "/api/exchanges?page=1&page_size=501", None, &[]).await;
    assert_eq!(
        (status, e),
        (
            400,
            json!({"error": "invalid_pagination_parameters",
                      "reason": "Invalid pagination parameters: page number 1, page size 501"})
        )
    );
    for path in [
        "/api/channels?page=x",
        "/api/users?page=x",
        "/api/policies?page=0",
    ] {
        let (status, _) = api(&b, "GET", path, None, &[]).await;
        assert_eq!(status, 400, "{path}");
    }
    b.running.shutdown().await;
}

/// `messages_uncommitted` counts a transactional channel's publishes waiting for tx.commit
/// (RabbitMQ's channel info item), and reads 0 again once committed; a confirm channel whose
/// publishes are all confirmed shows `messages_unconfirmed: 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_count_uncommitted_and_unconfirmed_publishes() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "txq").await;
    ch.tx_select().await.unwrap();
    for _ in 0..3 {
        publish(&ch, "", "txq", b"m").await;
    }
    let uncommitted = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["messages_uncommitted"].clone())
            .collect::<Vec<_>>()
    };
    let chans = ok_when(&b, "/api/channels", |v| uncommitted(v) == [json!(3)]).await;
    assert_eq!(chans[0]["transactional"], true, "{chans}");
    assert_eq!(counts(&b, "txq").0, 0, "nothing enqueued before the commit");
    ch.tx_commit().await.unwrap();
    ok_when(&b, "/api/channels", |v| uncommitted(v) == [json!(0)]).await;
    assert_eq!(counts(&b, "txq").0, 3);
    // A rollback drops the count as well.
    publish(&ch, "", "txq", b"m").await;
    ok_when(&b, "/api/channels", |v| uncommitted(v) == [json!(1)]).await;
    ch.tx_rollback().await.unwrap();
    ok_when(&b, "/api/channels", |v| uncommitted(v) == [json!(0)]).await;

    // Acks inside a transaction leave the channel's unacked ones at once and are counted as
    // `acks_uncommitted` (a multiple ack counts every delivery it names), as RabbitMQ 3.10.8
    // shows side by side; a rollback puts them back.
    let mut tags = Vec::new();
    for _ in 0..3 {
        let m = ch
            .basic_get("txq".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("a message");
        tags.push(m.delivery.delivery_tag);
    }
    ch.basic_ack(tags[1], BasicAckOptions { multiple: true })
        .await
        .unwrap();
    let acks = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["acks_uncommitted"].clone(),
                    c["messages_unacknowledged"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    ok_when(&b, "/api/channels", |v| acks(v) == [(json!(2), json!(1))]).await;
    ch.tx_rollback().await.unwrap();
    ok_when(&b, "/api/channels", |v| acks(v) == [(json!(0), json!(3))]).await;
    // After the rollback the tags are unacked again: acking all of them commits.
    ch.basic_ack(tags[2], BasicAckOptions { multiple: true })
        .await
        .unwrap();
    ch.tx_commit().await.unwrap();
    ok_when(&b, "/api/channels", |v| acks(v) == [(json!(0), json!(0))]).await;
    let (ready, unacked, _) = counts(&b, "txq");
    assert_eq!((ready, unacked), (0, 0));

    let confirming = conn.create_channel().await.unwrap();
    confirming
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for _ in 0..3 {
        confirming
            .basic_publish(
                "".into(),
                "txq".into(),
                BasicPublishOptions::default(),
                b"c",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let chans = ok(&b, "/api/channels").await;
    let c = chans
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["confirm"] == true)
        .unwrap();
    assert_eq!(c["messages_unconfirmed"], 0, "{c}");
    b.running.shutdown().await;
}

/// `queue.declare` of `name` refused with a 406 whose text contains `text`.
async fn declare_refused(ch: &lapin::Channel, name: &str, text: &str) {
    let r = ch
        .queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default())
        .await;
    assert_code(r, 406, text);
}

/// Vhost and user limits as RabbitMQ's (`rabbitmqadmin declare|delete vhost_limit|user_limit`,
/// checked side by side with RabbitMQ 3.10.8): `PUT`/`DELETE` with RabbitMQ's answers, listed
/// in `/api/vhost-limits`, `/api/user-limits` and a user's `limits`; enforced with RabbitMQ's
/// texts (a vhost's `max-queues` and `max-connections`, a user's `max-channels`), durable
/// across a restart and dropped with their vhost. Runtime parameters and operator policies,
/// which Warren lacks, answer writes with a 400 saying so (nothing stored) and deletes 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_and_user_limits_are_set_enforced_and_kept() {
    let b = start().await;
    let addr = b.running.amqp_addr;
    let put = |path: &'static str, body: Value| api(&b, "PUT", path, Some(body), &[]);
    assert_eq!(
        put("/api/vhost-limits/%2F/max-queues", json!({"value": 1}))
            .await
            .0,
        204
    );
    assert_eq!(
        put("/api/vhost-limits/%2F/max-foo", json!({"value": 2})).await,
        (
            400,
            json!({"error": "bad_request",
                      "reason": "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,2}] in limits\n"})
        )
    );
    assert_eq!(
        put("/api/vhost-limits/nope/max-queues", json!({"value": 2})).await,
        (404, json!({"error": "not_found", "reason": "vhost_not_found"}))
    );
    assert_eq!(
        put("/api/user-limits/nope/max-channels", json!({"value": 2})).await,
        (
            400,
            json!({"error": "bad_request", "reason": ["no_such_user", "nope"]})
        )
    );
    assert_eq!(
        put("/api/user-limits/guest/max-channels", json!({"value": "x"})).await,
        (
            400,
            json!({"error": "bad_request",
                      "reason": "max-channels should be a number, actually was <<\"x\">>"})
        )
    );
    assert_eq!(
        put("/api/user-limits/guest/max-channels", json!({"value": 2}))
            .await
            .0,
        204
    );
    assert_eq!(
        ok(&b, "/api/vhost-limits").await,
        json!([{"vhost": "/", "value": {"max-queues": 1}}])
    );
    assert_eq!(
        ok(&b, "/api/user-limits/guest").await,
        json!([{"user": "guest", "value": {"max-channels": 2}}])
    );
    assert_eq!(
        ok(&b, "/api/users/guest").await["limits"],
        json!({"max-channels": 2})
    );

    // max-queues: RabbitMQ's 406; redeclaring an existing queue is never refused.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "one").await;
    declare(&ch, "one").await;
    declare_refused(
        &ch,
        "two",
        "cannot declare queue 'two': queue limit in vhost '/' (1) is reached",
    )
    .await;
    // max-channels: the user's channels over all its connections (the first one was closed
    // by the 406); RabbitMQ closes the connection with 530.
    let _first = conn.create_channel().await.unwrap();
    let _second = conn.create_channel().await.unwrap();
    let third = conn.create_channel().await;
    assert_code(
        third,
        530,
        "number of channels opened for user 'guest' has reached the maximum allowed user limit of (2)",
    );
    // max-connections on the vhost: 0 refuses every connection, a negative value none.
    assert_eq!(
        put("/api/vhost-limits/%2F/max-connections", json!({"value": 0}))
            .await
            .0,
        204
    );
    let (code, text) = Raw::login(addr, "guest", "guest", "/")
        .await
        .err()
        .expect("refused");
    assert_eq!(
        (code, text.as_str()),
        (
            530,
            "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (0) is reached"
        )
    );
    assert_eq!(
        put("/api/vhost-limits/%2F/max-connections", json!({"value": -1}))
            .await
            .0,
        204
    );
    let _raw = Raw::login(addr, "guest", "guest", "/").await.expect("no limit");

    // As RabbitMQ, a vhost's limits are also its `vhost-limits` runtime parameter: listed,
    // exported with the definitions (a user's in its `limits`), and settable as a whole.
    let param = json!({"value": {"max-connections": -1, "max-queues": 1}, "vhost": "/",
                       "component": "vhost-limits", "name": "limits"});
    assert_eq!(ok(&b, "/api/parameters").await, json!([param.clone()]));
    assert_eq!(ok(&b, "/api/parameters/vhost-limits/%2F/limits").await, param);
    let defs = ok(&b, "/api/definitions").await;
    assert_eq!(defs["parameters"], json!([param]));
    let guest = defs["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "guest")
        .unwrap();
    assert_eq!(guest["limits"], json!({"max-channels": 2}), "{guest}");
    assert_eq!(put("/api/vhosts/side", json!({})).await.0, 201);
    let whole = json!({"value": {"max-queues": 3, "max-connections": 4}});
    assert_eq!(
        put("/api/parameters/vhost-limits/side/limits", whole).await.0,
        201
    );
    assert_eq!(
        ok(&b, "/api/vhost-limits/side").await,
        json!([{"vhost": "side", "value": {"max-connections": 4, "max-queues": 3}}])
    );
    let path = "/api/parameters/vhost-limits/side/limits";
    assert_eq!(api(&b, "DELETE", path, None, &[]).await.0, 204);
    assert_eq!(api(&b, "DELETE", path, None, &[]).await.0, 404);
    assert_eq!(ok(&b, "/api/vhost-limits/side").await, json!([]));

    // Operator policies and other runtime parameters: refused, nothing stored.
    let policy = json!({"pattern": "^a", "definition": {"max-length": 1}, "apply-to": "queues"});
    let (status, e) = put("/api/operator-policies/%2F/op", policy).await;
    assert_eq!((status, &e["error"]), (400, &json!("bad_request")), "{e}");
    assert_eq!(ok(&b, "/api/operator-policies").await, json!([]));
    let param = json!({"value": {"uri": "amqp://"}});
    assert_eq!(
        put("/api/parameters/federation-upstream/%2F/up", param).await,
        (
            400,
            json!({"error": "bad_request",
                      "reason": "Validation failed\n\ncomponent federation-upstream not found\n"})
        )
    );
    for path in [
        "/api/operator-policies/%2F/op",
        "/api/parameters/federation-upstream/%2F/up",
    ] {
        assert_eq!(api(&b, "DELETE", path, None, &[]).await.0, 404, "{path}");
    }

    // DELETE: 204 whether set or not; a vhost's limits go with it.
    assert_eq!(
        api(&b, "DELETE", "/api/user-limits/guest/max-channels", None, &[])
            .await
            .0,
        204
    );
    assert_eq!(
        api(&b, "DELETE", "/api/user-limits/guest/max-channels", None, &[])
            .await
            .0,
        204
    );
    assert_eq!(ok(&b, "/api/user-limits").await, json!([]));
    assert_eq!(
        api(&b, "PUT", "/api/vhosts/gone", Some(json!({})), &[]).await.0,
        201
    );
    assert_eq!(
        put("/api/vhost-limits/gone/max-queues", json!({"value": 5}))
            .await
            .0,
        204
    );
    assert_eq!(api(&b, "DELETE", "/api/vhosts/gone", None, &[]).await.0, 204);
    assert_eq!(
        api(&b, "PUT", "/api/vhosts/gone", Some(json!({})), &[]).await.0,
        201
    );
    assert_eq!(ok(&b, "/api/vhost-limits/gone").await, json!([]));

    // Durable: a restart on the same data directory keeps them, and guest still logs in.
    drop((ch, _first, _second, conn, _raw));
    let TestBroker {
        running, data_dir, ..
    } = b;
    running.shutdown().await;
    let dir = data_dir.path.clone();
    let b = start_with(move |c| c.data_dir = dir).await;
    assert_eq!(
        ok(&b, "/api/vhost-limits").await,
        json!([{"vhost": "/", "value": {"max-connections": -1, "max-queues": 1}}])
    );
    // ("one" was not durable: the vhost starts empty.)
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "three").await;
    declare_refused(&ch, "four", "queue limit in vhost '/' (1) is reached").await;
    b.running.shutdown().await;
    drop(data_dir);
}
