//! End-to-end tests of the management HTTP API, Prometheus metrics, DLQ tooling, alerts and
//! `warrenctl`, against an in-process broker (HTTP through Warren's own tiny client).

mod common;

use std::time::Duration;

use common::*;
use lapin::options::{BasicAckOptions, BasicRejectOptions, QueueDeclareOptions};
use serde_json::{Value, json};
use warren_server::http::{client, ctl};

fn url(b: &TestBroker, path: &str) -> String {
    format!("http://{}{}", b.running.http_addr, path)
}

async fn call(b: &TestBroker, method: &str, path: &str, body: Option<Value>) -> client::Response {
    let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
    client::request(method, &url(b, path), Some(("guest", "guest")), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn get(b: &TestBroker, path: &str) -> Value {
    let r = call(b, "GET", path, None).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

async fn expect(
    b: &TestBroker,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> client::Response {
    let r = call(b, method, path, body).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.text());
    r
}

async fn metrics(b: &TestBroker) -> String {
    let r = client::request("GET", &url(b, "/metrics"), Some(("guest", "guest")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    r.text()
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn poll(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_error_shapes() {
    let b = start().await;
    let r = client::request("GET", &url(&b, "/api/overview"), None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    // RabbitMQ 3.10 answers missing credentials with an empty body.
    assert!(r.body.is_empty());
    let r = client::request("GET", &url(&b, "/api/overview"), Some(("guest", "nope")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = expect(&b, "GET", "/api/queues/%2F/missing", None, 404).await;
    assert_eq!(
        r.json(),
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    let r = expect(&b, "GET", "/api/no/such/path", None, 404).await;
    assert_eq!(r.json()["error"], "Object Not Found");
    let r = client::request(
        "PUT",
        &url(&b, "/api/queues/%2F/q"),
        Some(("guest", "guest")),
        Some(("application/json", b"{not json".to_vec())),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    assert!(r.json()["reason"].as_str().unwrap().contains("invalid JSON"));
    // Inequivalent redeclare: 400 with RabbitMQ's text.
    expect(
        &b,
        "PUT",
        "/api/queues/%2F/q",
        Some(json!({"durable": true})),
        201,
    )
    .await;
    let r = expect(
        &b,
        "PUT",
        "/api/queues/%2F/q",
        Some(json!({"durable": false})),
        400,
    )
    .await;
    // RabbitMQ's reason is the AMQP reply text without its `PRECONDITION_FAILED - ` prefix.
    assert_eq!(
        r.json()["reason"],
        "inequivalent arg 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'"
    );
    // An argument of another queue type: RabbitMQ 3.10.8's text (checked side by side).
    let qq = json!({"durable": true, "arguments": {"x-queue-type": "quorum", "x-queue-mode": "lazy"}});
    let r = expect(&b, "PUT", "/api/queues/%2F/qq", Some(qq), 400).await;
    assert_eq!(
        r.json(),
        json!({"error": "bad_request",
               "reason": "invalid arg 'x-queue-mode' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue"})
    );
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_and_listings() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "work").await;
    publish(&ch, "", "work", b"one").await;
    publish(&ch, "", "work", b"two").await;
    let mut c = consume(&ch, "work", "ctag-1").await;
    let d = next(&mut c).await;
    d.ack(BasicAckOptions::default()).await.unwrap();
    let _held = next(&mut c).await; // one unacked
    wait_until(5, "1 unacked", || counts(&b, "work") == (0, 1, 1)).await;

    let o = get(&b, "/api/overview").await;
    assert_eq!(o["product_name"], "Warren");
    assert!(o["management_version"].is_string() && o["product_version"].is_string());
    assert_eq!(o["message_stats"]["publish"], 2);
    assert_eq!(o["message_stats"]["deliver_get"], 2);
    assert_eq!(o["message_stats"]["ack"], 1);
    assert!(o["message_stats"]["publish_details"]["rate"].is_number());
    assert_eq!(
        o["queue_totals"],
        json!({"messages": 1, "messages_ready": 0, "messages_unacknowledged": 1})
    );
    assert_eq!(o["object_totals"]["connections"], 1);
    assert_eq!(o["object_totals"]["channels"], 1);
    assert_eq!(o["object_totals"]["queues"], 1);
    assert_eq!(o["object_totals"]["consumers"], 1);
    assert_eq!(o["object_totals"]["exchanges"], 6);
    let ports: Vec<u64> = o["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["port"].as_u64().unwrap())
        .collect();
    assert!(ports.contains(&(b.running.amqp_addr.port() as u64)));

    let v = get(&b, "/api/vhosts").await;
    assert_eq!(v[0]["name"], "/");
    assert_eq!(v[0]["messages"], 1);
    assert_eq!(get(&b, "/api/vhosts/%2F").await["name"], "/");

    let xs = get(&b, "/api/exchanges").await;
    assert!(
        xs.as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "amq.topic" && x["type"] == "topic")
    );
    assert_eq!(get(&b, "/api/exchanges/%2F").await.as_array().unwrap().len(), 6);
    let d = get(&b, "/api/exchanges/%2F/amq.default").await;
    assert_eq!(
        (d["name"].as_str(), d["type"].as_str(), d["durable"].as_bool()),
        (Some(""), Some("direct"), Some(true))
    );

    let qs = get(&b, "/api/queues").await;
    assert_eq!(qs.as_array().unwrap().len(), 1);
    let q = get(&b, "/api/queues/%2F/work").await;
    assert_eq!(q["name"], "work");
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], false);
    assert_eq!(q["auto_delete"], false);
    assert_eq!(q["exclusive"], false);
    assert_eq!(q["arguments"], json!({}));
    assert_eq!(q["messages"], 1);
    assert_eq!(q["messages_ready"], 0);
    assert_eq!(q["messages_unacknowledged"], 1);
    assert_eq!(q["consumers"], 1);
    assert_eq!(q["message_stats"]["publish"], 2);
    assert_eq!(q["message_stats"]["deliver_get"], 2);
    assert_eq!(q["message_stats"]["ack"], 1);
    assert!(q["message_stats"]["ack_details"]["rate"].is_number());
    assert_eq!(q["dead_letter_queue"], false);
    assert_eq!(get(&b, "/api/queues/%2F").await.as_array().unwrap().len(), 1);

    let bs = get(&b, "/api/bindings").await;
    assert_eq!(bs[0]["source"], "");
    assert_eq!(bs[0]["destination"], "work");
    assert_eq!(bs[0]["destination_type"], "queue");
    assert_eq!(get(&b, "/api/bindings/%2F").await.as_array().unwrap().len(), 1);

    let cs = get(&b, "/api/connections").await;
    assert_eq!(cs[0]["user"], "guest");
    assert_eq!(cs[0]["vhost"], "/");
    assert_eq!(cs[0]["channels"], 1);
    assert_eq!(cs[0]["protocol"], "AMQP 0-9-1");
    let chs = get(&b, "/api/channels").await;
    assert_eq!(chs.as_array().unwrap().len(), 1);
    assert_eq!(chs[0]["connection_details"]["name"], cs[0]["name"]);
    let cons = get(&b, "/api/consumers").await;
    assert_eq!(cons[0]["consumer_tag"], "ctag-1");
    assert_eq!(cons[0]["queue"], json!({"name": "work", "vhost": "/"}));
    assert_eq!(cons[0]["ack_required"], true);
    assert_eq!(cons[0]["channel_details"]["number"], 1);
    assert_eq!(cons[0]["channel_details"]["connection_name"], cs[0]["name"]);
    assert_eq!(get(&b, "/api/consumers/%2F").await.as_array().unwrap().len(), 1);

    let us = get(&b, "/api/users").await;
    assert_eq!(us[0]["name"], "guest");
    assert_eq!(us[0]["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(us[0]["tags"], json!(["administrator"]));
    let ps = get(&b, "/api/permissions").await;
    assert_eq!(
        ps,
        json!([{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}])
    );
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_bind_publish_get_purge_delete() {
    let b = start().await;
    expect(&b, "PUT", "/api/vhosts/staging", Some(json!({})), 201).await;
    expect(&b, "PUT", "/api/vhosts/staging", None, 204).await;
    expect(
        &b,
        "PUT",
        "/api/exchanges/staging/jobs",
        Some(json!({"type": "topic", "durable": true})),
        201,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/exchanges/staging/jobs",
        Some(json!({"type": "topic", "durable": true})),
        204,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/queues/staging/jobs.q",
        Some(json!({"durable": true, "auto_delete": false, "arguments": {"x-max-length": 100, "x-message-ttl": 60000}})),
        201,
    )
    .await;
    let q = get(&b, "/api/queues/staging/jobs.q").await;
    assert_eq!(
        q["arguments"],
        json!({"x-max-length": 100, "x-message-ttl": 60000})
    );
    assert_eq!(q["durable"], true);
    let r = expect(
        &b,
        "POST",
        "/api/bindings/staging/e/jobs/q/jobs.q",
        Some(json!({"routing_key": "job.#", "arguments": {}})),
        201,
    )
    .await;
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.ends_with("/job.%23"), "{loc}");
    let bs = get(&b, "/api/bindings/staging/e/jobs/q/jobs.q").await;
    assert_eq!(bs.as_array().unwrap().len(), 1);
    assert_eq!(bs[0]["routing_key"], "job.#");
    let props = bs[0]["properties_key"].as_str().unwrap().to_string();
    assert_eq!(
        get(&b, "/api/exchanges/staging/jobs/bindings/source")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&b, "/api/queues/staging/jobs.q/bindings")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Publish: routed and unroutable.
    let pub_body = |rk: &str, payload: &str| {
        json!({"properties": {"delivery_mode": 2, "headers": {"trace": "abc"}, "message_id": "m-1"},
               "routing_key": rk, "payload": payload, "payload_encoding": "string"})
    };
    let r = expect(
        &b,
        "POST",
        "/api/exchanges/staging/jobs/publish",
        Some(pub_body("job.a", "hello")),
        200,
    )
    .await;
    assert_eq!(r.json(), json!({"routed": true}));
    let r = expect(
        &b,
        "POST",
        "/api/exchanges/staging/jobs/publish",
        Some(pub_body("other", "x")),
        200,
    )
    .await;
    assert_eq!(r.json(), json!({"routed": false}));
    let r = expect(
        &b,
        "POST",
        "/api/exchanges/staging/amq.default/publish",
        Some(json!({"properties": {}, "routing_key": "jobs.q", "payload": "/wAB", "payload_encoding": "base64"})),
        200,
    )
    .await;
    assert_eq!(r.json()["routed"], true);
    expect(
        &b,
        "POST",
        "/api/exchanges/staging/nope/publish",
        Some(pub_body("k", "x")),
        404,
    )
    .await;

    // Get with requeue leaves messages; ack_requeue_false removes them.
    let r = expect(
        &b,
        "POST",
        "/api/queues/staging/jobs.q/get",
        Some(json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})),
        200,
    )
    .await;
    let msgs = r.json();
    assert_eq!(msgs.as_array().unwrap().len(), 2);
    assert_eq!(msgs[0]["payload"], "hello");
    assert_eq!(msgs[0]["payload_encoding"], "string");
    assert_eq!(msgs[0]["payload_bytes"], 5);
    assert_eq!(msgs[0]["exchange"], "jobs");
    assert_eq!(msgs[0]["routing_key"], "job.a");
    assert_eq!(msgs[0]["redelivered"], false);
    assert_eq!(msgs[0]["message_count"], 1);
    assert_eq!(msgs[0]["properties"]["headers"], json!({"trace": "abc"}));
    assert_eq!(msgs[0]["properties"]["delivery_mode"], 2);
    assert_eq!(msgs[1]["payload"], "/wAB");
    assert_eq!(msgs[1]["payload_encoding"], "base64");
    assert_eq!(get(&b, "/api/queues/staging/jobs.q").await["messages_ready"], 2);
    let r = expect(
        &b,
        "POST",
        "/api/queues/staging/jobs.q/get",
        Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})),
        200,
    )
    .await;
    assert_eq!(r.json()[0]["redelivered"], true);
    assert_eq!(get(&b, "/api/queues/staging/jobs.q").await["messages_ready"], 1);
    expect(
        &b,
        "POST",
        "/api/queues/staging/jobs.q/get",
        Some(json!({"count": 1, "ackmode": "bogus"})),
        400,
    )
    .await;

    // Purge, unbind, delete.
    expect(&b, "DELETE", "/api/queues/staging/jobs.q/contents", None, 204).await;
    assert_eq!(get(&b, "/api/queues/staging/jobs.q").await["messages"], 0);
    expect(
        &b,
        "DELETE",
        &format!("/api/bindings/staging/e/jobs/q/jobs.q/{props}"),
        None,
        204,
    )
    .await;
    assert_eq!(get(&b, "/api/bindings/staging/e/jobs/q/jobs.q").await, json!([]));
    expect(
        &b,
        "DELETE",
        "/api/bindings/staging/e/jobs/q/jobs.q/nope",
        None,
        404,
    )
    .await;
    expect(&b, "DELETE", "/api/queues/staging/jobs.q", None, 204).await;
    expect(&b, "GET", "/api/queues/staging/jobs.q", None, 404).await;
    expect(&b, "DELETE", "/api/exchanges/staging/jobs", None, 204).await;
    expect(&b, "DELETE", "/api/exchanges/staging/jobs", None, 404).await;
    expect(&b, "DELETE", "/api/vhosts/staging", None, 204).await;
    expect(&b, "GET", "/api/vhosts/staging", None, 404).await;
    expect(&b, "PUT", "/api/queues/staging/q", Some(json!({})), 404).await;
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks() {
    let b = start().await;
    for p in [
        "/api/healthchecks/node",
        "/api/healthchecks/alarms",
        "/api/health/checks/alarms",
        "/api/health/checks/local-alarms",
        "/api/health/checks/virtual-hosts",
        "/api/health/checks/protocol-listener/amqp",
        "/api/aliveness-test/%2F",
    ] {
        assert_eq!(get(&b, p).await["status"], "ok", "{p}");
    }
    let port = b.running.amqp_addr.port();
    for prefix in ["/api/healthchecks", "/api/health/checks"] {
        let r = get(&b, &format!("{prefix}/port-listener/{port}")).await;
        assert_eq!(r, json!({"status": "ok", "port": port}));
        let r = expect(&b, "GET", &format!("{prefix}/port-listener/1"), None, 503).await;
        assert_eq!(r.json()["status"], "failed");
    }
    expect(&b, "GET", "/api/health/checks/protocol-listener/stomp", None, 503).await;
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip() {
    let b = start().await;
    expect(&b, "PUT", "/api/vhosts/app", None, 201).await;
    expect(
        &b,
        "PUT",
        "/api/exchanges/app/in",
        Some(json!({"type": "direct", "durable": true})),
        201,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/exchanges/app/fan",
        Some(json!({"type": "fanout", "durable": true})),
        201,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/queues/app/work",
        Some(json!({"durable": true, "arguments": {"x-dead-letter-exchange": "fan", "x-max-length": 7}})),
        201,
    )
    .await;
    expect(
        &b,
        "POST",
        "/api/bindings/app/e/in/q/work",
        Some(json!({"routing_key": "w"})),
        201,
    )
    .await;
    expect(
        &b,
        "POST",
        "/api/bindings/app/e/in/e/fan",
        Some(json!({"routing_key": "all"})),
        201,
    )
    .await;
    let defs = get(&b, "/api/definitions").await;
    assert_eq!(defs["product_name"], "Warren");
    assert!(defs["rabbit_version"].is_string());
    assert_eq!(
        defs["users"][0]["hashing_algorithm"],
        "rabbit_password_hashing_sha256"
    );
    assert_eq!(defs["policies"], json!([]));
    assert!(
        defs["vhosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "app")
    );
    assert_eq!(
        defs["queues"],
        json!([{"name": "work", "vhost": "app", "durable": true, "auto_delete": false,
                "arguments": {"x-dead-letter-exchange": "fan", "x-max-length": 7}}])
    );
    assert_eq!(defs["exchanges"].as_array().unwrap().len(), 2);
    assert_eq!(defs["bindings"].as_array().unwrap().len(), 2);
    assert!(
        defs["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["destination_type"] == "exchange" && b["destination"] == "fan")
    );

    let b2 = start_with(|c| c.default_pass = "other".into()).await;
    let r = client::request(
        "POST",
        &url(&b2, "/api/definitions"),
        Some(("guest", "other")),
        Some(("application/json", defs.to_string().into_bytes())),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    // The imported user hash replaced guest's: the old password now works on b2.
    let again = get(&b2, "/api/definitions").await;
    for k in [
        "vhosts",
        "queues",
        "exchanges",
        "bindings",
        "users",
        "permissions",
    ] {
        assert_eq!(again[k], defs[k], "{k}");
    }
    b.running.shutdown().await;
    b2.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_definitions_file_imports() {
    let b = start().await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rabbitmq-definitions.json"
    ))
    .unwrap();
    let r = client::request(
        "POST",
        &url(&b, "/api/definitions"),
        Some(("guest", "guest")),
        Some(("application/json", text.into_bytes())),
    )
    .await
    .unwrap();
    // Issue 18: 200 with what was not applied (RabbitMQ answers 204; so does Warren when
    // everything was applied).
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "skipped": [
                {"kind": "global_parameter", "vhost": null, "name": "internal_cluster_id",
                 "reason": "RabbitMQ's internal cluster identity; Warren has none"},
                {"kind": "exchange", "vhost": "shop", "name": "delayed",
                 "reason": "exchange type 'x-delayed-message' is not supported"},
                {"kind": "queue", "vhost": "shop", "name": "audit.stream",
                 "reason": "queue type 'stream' is not supported"},
                {"kind": "binding", "vhost": "shop", "name": "delayed -> payments",
                 "reason": "its exchange 'delayed' was skipped"},
            ],
            "ignored": [
                {"kind": "policy", "vhost": "/", "name": "ha-all",
                 "reason": "ha-mode, ha-sync-mode accepted without effect in Warren"},
            ],
        })
    );
    // The export's cluster name renames the cluster, as in RabbitMQ.
    assert_eq!(get(&b, "/api/cluster-name").await["name"], "rabbit@prod-mq-1");
    // Users with RabbitMQ hashes can log in (HTTP and AMQP).
    let r = client::request("GET", &url(&b, "/api/whoami"), Some(("admin", "s3cret")), None)
        .await
        .unwrap();
    assert_eq!(r.json()["name"], "admin");
    assert!(b.running.broker.users.authenticate("orders-svc", "orders-pw"));
    assert_eq!(
        get(&b, "/api/users/legacy").await["tags"],
        json!(["monitoring", "management"])
    );
    let q = get(&b, "/api/queues/shop/orders.created").await;
    assert_eq!(q["arguments"]["x-dead-letter-exchange"], "orders.dlx");
    assert_eq!(q["arguments"]["x-max-length"], 100000);
    assert_eq!(get(&b, "/api/queues/shop/payments").await["type"], "quorum");
    assert_eq!(
        get(&b, "/api/queues/%2F/notifications").await["arguments"]["x-max-priority"],
        10
    );
    // Unsupported queue and exchange types are skipped (and reported, above).
    expect(&b, "GET", "/api/queues/shop/audit.stream", None, 404).await;
    expect(&b, "GET", "/api/exchanges/shop/delayed", None, 404).await;
    assert_eq!(
        get(&b, "/api/exchanges/shop/events.internal").await["internal"],
        true
    );
    let bs = get(&b, "/api/bindings/shop/e/events/e/events.internal").await;
    assert_eq!(bs.as_array().unwrap().len(), 1);
    let bs = get(&b, "/api/bindings/shop/e/events.internal/q/payments").await;
    assert_eq!(bs[0]["arguments"], json!({"x-match": "all", "kind": "payment"}));
    assert_eq!(
        get(&b, "/api/bindings/%2F/e/amq.direct/q/notifications").await[0]["routing_key"],
        "notify"
    );
    // The DLQ is recognised through the DLX binding.
    assert_eq!(
        get(&b, "/api/queues/shop/orders.dlq").await["dead_letter_queue"],
        true
    );
    // Policies are stored and exported again.
    let pol = get(&b, "/api/policies").await;
    assert_eq!(pol.as_array().unwrap().len(), 2);
    assert_eq!(get(&b, "/api/policies/shop").await[0]["name"], "orders-ttl");
    assert_eq!(
        get(&b, "/api/definitions").await["policies"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Routing works through the imported topology. The file grants guest nothing on `shop`,
    // so (as RabbitMQ) a publish through the API needs write permission first.
    let denied = r#"{"properties": {}, "routing_key": "order.eu.created", "payload": "o0", "payload_encoding": "string"}"#;
    expect(
        &b,
        "POST",
        "/api/exchanges/shop/orders/publish",
        Some(serde_json::from_str(denied).unwrap()),
        400,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/permissions/shop/guest",
        Some(json!({"configure": "", "write": ".*", "read": ""})),
        201,
    )
    .await;
    let r = expect(
        &b,
        "POST",
        "/api/exchanges/shop/orders/publish",
        Some(json!({"properties": {}, "routing_key": "order.eu.created", "payload": "o1", "payload_encoding": "string"})),
        200,
    )
    .await;
    assert_eq!(r.json()["routed"], true);
    b.running.shutdown().await;
}

/// Sets up `orders` (DLX `dlx`, fanout) → `orders.dlq`, publishes `n` messages with a header
/// and rejects them all into the DLQ.
async fn reject_into_dlq(b: &TestBroker, ch: &lapin::Channel, n: usize) {
    ch.exchange_declare(
        "dlx".into(),
        lapin::ExchangeKind::Fanout,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    declare(ch, "orders.dlq").await;
    ch.queue_bind(
        "orders.dlq".into(),
        "dlx".into(),
        "".into(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    ch.queue_declare(
        "orders".into(),
        QueueDeclareOptions::default(),
        table(vec![("x-dead-letter-exchange", lstr("dlx"))]),
    )
    .await
    .unwrap();
    for i in 0..n {
        let props = lapin::BasicProperties::default()
            .with_headers(table(vec![("tenant", lstr("acme"))]))
            .with_message_id(format!("m{i}").into());
        publish_props(ch, "", "orders", format!("order-{i}").as_bytes(), props).await;
    }
    let mut c = consume(ch, "orders", "worker").await;
    for _ in 0..n {
        let d = next(&mut c).await;
        d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    }
    ch.basic_cancel("worker".into(), Default::default())
        .await
        .unwrap();
    wait_until(5, "messages in the DLQ", || counts(b, "orders.dlq").0 == n as u32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_is_marked_and_moved_back() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    reject_into_dlq(&b, &ch, 3).await;

    let q = get(&b, "/api/queues/%2F/orders.dlq").await;
    assert_eq!(q["dead_letter_queue"], true);
    assert_eq!(
        get(&b, "/api/queues/%2F/orders").await["dead_letter_queue"],
        false
    );
    let m = metrics(&b).await;
    assert_eq!(
        metric(&m, "warren_queue_is_dlq{vhost=\"/\",queue=\"orders.dlq\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "warren_queue_is_dlq{vhost=\"/\",queue=\"orders\"}"),
        Some(0.0)
    );

    // Peek: x-death as JSON.
    let msgs = expect(
        &b,
        "POST",
        "/api/queues/%2F/orders.dlq/get",
        Some(json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})),
        200,
    )
    .await
    .json();
    let h = &msgs[0]["properties"]["headers"];
    assert_eq!(h["tenant"], "acme");
    assert_eq!(h["x-first-death-reason"], "rejected");
    assert_eq!(h["x-first-death-queue"], "orders");
    assert_eq!(h["x-death"][0]["reason"], "rejected");
    assert_eq!(h["x-death"][0]["queue"], "orders");
    assert_eq!(h["x-death"][0]["count"], 1);
    assert!(h["x-death"][0]["time"].is_number());

    // Dry run: grouped, nothing moves.
    let r = expect(
        &b,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        Some(json!({"dry_run": true})),
        200,
    )
    .await
    .json();
    assert_eq!(r["would_move"], 3);
    assert_eq!(r["moved"], 0);
    assert_eq!(
        r["groups"],
        json!([{"reason": "rejected", "queue": "orders", "count": 3}])
    );
    assert_eq!(counts(&b, "orders.dlq"), (3, 0, 0));

    // Missing target exchange: nothing lost, reported.
    let r = expect(
        &b,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        Some(json!({"count": 1, "target": {"exchange": "gone", "routing_key": "x"}})),
        200,
    )
    .await
    .json();
    assert_eq!(r["moved"], 0);
    assert!(
        r["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert_eq!(counts(&b, "orders.dlq"), (3, 0, 0));

    // Move two back to x-first-death-queue.
    let r = expect(
        &b,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        Some(json!({"count": 2})),
        200,
    )
    .await
    .json();
    assert_eq!(r["moved"], 2);
    assert_eq!(r["remaining"], 1);
    assert_eq!(counts(&b, "orders"), (2, 0, 0));
    assert_eq!(counts(&b, "orders.dlq"), (1, 0, 0));
    let mut c = consume(&ch, "orders", "again").await;
    let d = next(&mut c).await;
    let headers = d.properties.headers().clone().unwrap();
    let inner = headers.inner();
    assert_eq!(inner.get("tenant").unwrap(), &lstr("acme"));
    assert!(inner.contains_key("x-death"));
    assert_eq!(inner.get("x-first-death-queue").unwrap(), &lstr("orders"));
    assert!(d.properties.message_id().is_some());
    assert!(String::from_utf8_lossy(&d.data).starts_with("order-"));
    d.ack(BasicAckOptions::default()).await.unwrap();

    // Explicit target (default exchange, another queue).
    declare(&ch, "replay").await;
    let r = expect(
        &b,
        "POST",
        "/api/queues/%2F/orders.dlq/move",
        Some(json!({"target": {"exchange": "amq.default", "routing_key": "replay"}})),
        200,
    )
    .await
    .json();
    assert_eq!(r["moved"], 1);
    assert_eq!(counts(&b, "replay"), (1, 0, 0));
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_values() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    reject_into_dlq(&b, &ch, 2).await;
    declare(&ch, "plain").await;
    for _ in 0..4 {
        publish(&ch, "", "plain", b"x").await;
    }
    let mut c = consume(&ch, "plain", "p").await;
    let d = next(&mut c).await;
    d.ack(BasicAckOptions::default()).await.unwrap();
    let _unacked = next(&mut c).await;
    // Unlimited prefetch: all four were delivered, one acked; cancelling keeps three unacked.
    ch.basic_cancel("p".into(), Default::default()).await.unwrap();
    wait_until(5, "plain settled", || counts(&b, "plain") == (0, 3, 0)).await;
    wait_until(5, "acked counted", || {
        b.running
            .broker
            .metrics
            .acked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    let m = metrics(&b).await;
    let (r, u, cons) = counts(&b, "plain");
    assert_eq!(
        metric(&m, "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"plain\"}"),
        Some(r as f64)
    );
    assert_eq!(
        metric(&m, "rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"plain\"}"),
        Some(u as f64)
    );
    assert_eq!(
        metric(&m, "rabbitmq_queue_consumers{vhost=\"/\",queue=\"plain\"}"),
        Some(cons as f64)
    );
    assert_eq!(
        metric(
            &m,
            "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"orders.dlq\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            "rabbitmq_global_messages_received_total{protocol=\"amqp091\"}"
        ),
        Some(6.0)
    );
    let delivered = b
        .running
        .broker
        .metrics
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed) as f64;
    assert!(delivered >= 4.0);
    assert_eq!(
        metric(
            &m,
            "rabbitmq_global_messages_delivered_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}"
        ),
        Some(delivered)
    );
    assert_eq!(
        metric(
            &m,
            "rabbitmq_global_messages_acknowledged_total{protocol=\"amqp091\",queue_type=\"rabbit_classic_queue\"}"
        ),
        Some(1.0)
    );
    let dl = "{queue_type=\"rabbit_classic_queue\",dead_letter_strategy=\"at_most_once\"}";
    assert_eq!(
        metric(
            &m,
            &format!("rabbitmq_global_messages_dead_lettered_rejected_total{dl}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            &format!("rabbitmq_global_messages_dead_lettered_expired_total{dl}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            &format!("rabbitmq_global_messages_dead_lettered_maxlen_total{dl}")
        ),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &m,
            &format!("rabbitmq_global_messages_dead_lettered_delivery_limit_total{dl}")
        ),
        Some(0.0)
    );
    assert_eq!(metric(&m, "warren_dead_letter_dropped_total"), Some(0.0));
    assert_eq!(metric(&m, "rabbitmq_connections"), Some(1.0));
    assert_eq!(metric(&m, "rabbitmq_channels"), Some(1.0));
    assert!(metric(&m, "rabbitmq_process_resident_memory_bytes").unwrap() > 0.0);
    assert!(m.contains("# TYPE rabbitmq_queue_messages_ready gauge"));
    // Families are contiguous: one TYPE line each.
    assert_eq!(m.matches("# TYPE rabbitmq_queue_messages_ready ").count(), 1);
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

/// Issue 18: what an import skips or applies without effect, exactly; 204 when nothing;
/// 400 with the lists on invalid input; the single-vhost import; warrenctl's table and JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_import_reports_what_it_skips() {
    let b = start().await;
    let doc = json!({
        "rabbit_version": "3.13.7",
        "users": [
            {"name": "capped", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
             "tags": [], "limits": {"max-connections": 10}},
            {"name": "old", "password_hash": "x", "hashing_algorithm": "rabbit_password_hashing_md5",
             "tags": []},
        ],
        "vhosts": [{"name": "edge", "limits": [], "metadata": {"description": "", "tags": []},
                    "default_queue_type": "quorum"}],
        "parameters": [
            {"vhost": "edge", "component": "shovel", "name": "move-orders",
             "value": {"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"}},
            {"vhost": "edge", "component": "federation-upstream", "name": "origin",
             "value": {"uri": "amqp://origin"}},
            {"vhost": "edge", "component": "vhost-limits", "name": "limits",
             "value": {"max-queues": 50}},
        ],
        "global_parameters": [{"name": "cluster_name", "value": "warren"}],
        "policies": [
            {"vhost": "edge", "name": "federate", "pattern": "^fed\\.", "apply-to": "exchanges",
             "definition": {"federation-upstream-set": "all"}, "priority": 0},
            {"vhost": "edge", "name": "capped", "pattern": "^work$", "apply-to": "queues",
             "definition": {"federation-upstream-set": "all", "max-length": 5, "ha-mode": "all"},
             "priority": 1},
        ],
        "exchanges": [
            {"name": "hash", "vhost": "edge", "type": "x-consistent-hash", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {}},
            {"name": "later", "vhost": "edge", "type": "x-delayed-message", "durable": true,
             "auto_delete": false, "internal": false, "arguments": {"x-delayed-type": "direct"}},
        ],
        "queues": [
            {"name": "work", "vhost": "edge", "durable": true, "auto_delete": false, "arguments": {}},
            {"name": "log", "vhost": "edge", "durable": true, "auto_delete": false,
             "arguments": {"x-queue-type": "stream"}},
        ],
        "bindings": [
            {"source": "hash", "vhost": "edge", "destination": "work", "destination_type": "queue",
             "routing_key": "1", "arguments": {}},
            {"source": "hash", "vhost": "edge", "destination": "log", "destination_type": "queue",
             "routing_key": "1", "arguments": {}},
        ],
    });
    let r = expect(&b, "POST", "/api/definitions", Some(doc.clone()), 200).await;
    let expected = json!({
        "skipped": [
            {"kind": "parameter", "vhost": "edge", "name": "move-orders",
             "reason": "shovel: dynamic shovels (rabbitmq_shovel) are not supported"},
            {"kind": "parameter", "vhost": "edge", "name": "origin",
             "reason": "federation-upstream: federation (rabbitmq_federation) is not supported"},
            {"kind": "policy", "vhost": "edge", "name": "federate",
             "reason": "federation-upstream-set (the federation plugin) not supported"},
            {"kind": "exchange", "vhost": "edge", "name": "later",
             "reason": "exchange type 'x-delayed-message' is not supported"},
            {"kind": "queue", "vhost": "edge", "name": "log",
             "reason": "queue type 'stream' is not supported"},
            {"kind": "binding", "vhost": "edge", "name": "hash -> log",
             "reason": "its queue 'log' was skipped"},
        ],
        "ignored": [
            {"kind": "vhost", "vhost": "edge", "name": "edge",
             "reason": "default queue type 'quorum' has no effect: queues declared without x-queue-type are classic"},
            {"kind": "user", "vhost": null, "name": "old",
             "reason": "password hashing algorithm rabbit_password_hashing_md5 is not supported: the user cannot log in until its password is reset"},
            {"kind": "policy", "vhost": "edge", "name": "capped",
             "reason": "federation-upstream-set (the federation plugin) not supported; dropped from the policy"},
            {"kind": "policy", "vhost": "edge", "name": "capped",
             "reason": "ha-mode accepted without effect in Warren"},
        ],
    });
    assert_eq!(r.json(), expected);
    // What was applied was applied: the user's and the vhost's limits (as RabbitMQ), the
    // consistent-hash exchange (supported), its binding to `work`, and the policy without its
    // federation key.
    assert_eq!(
        get(&b, "/api/user-limits/capped").await,
        json!([{"user": "capped", "value": {"max-connections": 10}}])
    );
    assert_eq!(
        get(&b, "/api/vhost-limits/edge").await,
        json!([{"vhost": "edge", "value": {"max-queues": 50}}])
    );
    assert_eq!(
        get(&b, "/api/exchanges/edge/hash").await["type"],
        "x-consistent-hash"
    );
    assert_eq!(
        get(&b, "/api/bindings/edge/e/hash/q/work")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let work = get(&b, "/api/queues/edge/work").await;
    assert_eq!(work["policy"], "capped");
    assert_eq!(
        get(&b, "/api/policies/edge/capped").await["definition"],
        json!({"max-length": 5, "ha-mode": "all"})
    );
    expect(&b, "GET", "/api/policies/edge/federate", None, 404).await;
    expect(&b, "GET", "/api/exchanges/edge/later", None, 404).await;

    // Nothing skipped: RabbitMQ's 204, empty body.
    let r = expect(
        &b,
        "POST",
        "/api/definitions",
        Some(
            json!({"queues": [{"name": "plain", "vhost": "edge", "durable": true,
                                "auto_delete": false, "arguments": {}}]}),
        ),
        204,
    )
    .await;
    assert!(r.body.is_empty());
    // Invalid input: 400 with RabbitMQ's reason, and the lists.
    let r = expect(
        &b,
        "POST",
        "/api/definitions",
        Some(
            json!({"queues": [{"name": "x", "vhost": "nowhere", "durable": true,
                                "auto_delete": false, "arguments": {}}],
                    "exchanges": [{"name": "y", "vhost": "edge", "type": "x-delayed-message",
                                   "durable": true, "auto_delete": false, "internal": false,
                                   "arguments": {}}]}),
        ),
        400,
    )
    .await;
    let v = r.json();
    assert_eq!(v["error"], "bad_request");
    assert_eq!(v["reason"], "queue 'x': no vhost 'nowhere'");
    assert_eq!(v["errors"], json!(["queue 'x': no vhost 'nowhere'"]));
    assert_eq!(v["skipped"][0]["name"], "y");
    assert_eq!(v["ignored"], json!([]));

    // A full export into one vhost: its users, vhosts and global parameters are not imported.
    expect(&b, "PUT", "/api/vhosts/one", None, 201).await;
    let single = json!({
        "users": [{"name": "u1", "password_hash": "", "tags": []}],
        "vhosts": [{"name": "one"}],
        "global_parameters": [{"name": "cluster_name", "value": "rabbit@a"}],
        "queues": [{"name": "q", "durable": true, "auto_delete": false, "arguments": {}}],
    });
    let r = expect(&b, "POST", "/api/definitions/one", Some(single), 200).await;
    let why = "not imported into vhost 'one': a single-vhost import takes only its queues, exchanges, bindings, policies and parameters";
    assert_eq!(
        r.json(),
        json!({"skipped": [
            {"kind": "user", "vhost": null, "name": "u1", "reason": why},
            {"kind": "vhost", "vhost": "one", "name": "one", "reason": why},
            {"kind": "global_parameter", "vhost": null, "name": "cluster_name", "reason": why},
        ], "ignored": []})
    );
    expect(&b, "GET", "/api/users/u1", None, 404).await;
    get(&b, "/api/queues/one/q").await;

    // warrenctl import-definitions prints the report as a table, or as JSON.
    let file = b.data_dir.path.join("rabbit.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let base = format!("http://{}", b.running.http_addr);
    let ctl_args = |extra: &[&str]| {
        let mut v = vec!["warrenctl", "--url", base.as_str(), "import-definitions"];
        v.push(file.to_str().unwrap());
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = ctl::run_from(ctl_args(&[])).await.unwrap();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "imported definitions from {}: 6 skipped, 4 ignored",
            file.display()
        )
    );
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["result", "kind", "vhost", "name", "reason"]
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("skipped  parameter") && l.contains("move-orders")),
        "{out}"
    );
    assert!(out.contains("its queue 'log' was skipped"), "{out}");
    let out = ctl::run_from(ctl_args(&["--json"])).await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    b.running.shutdown().await;
}

/// A webhook receiver on 127.0.0.1 (an ephemeral port): reads each request, answers the
/// `n`th with `statuses[n]` (the last one repeated; an empty body), and sends the request's
/// head and body on the channel. With `tls`, it speaks HTTPS.
async fn webhook_receiver(
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    statuses: Vec<u16>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (tx, seen, statuses) = (tx.clone(), seen.clone(), statuses.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(s) = a.accept(s).await {
                            serve_webhook_requests(s, tx, seen, statuses).await;
                        }
                    }
                    None => serve_webhook_requests(s, tx, seen, statuses).await,
                }
            });
        }
    });
    (format!("{scheme}://{addr}/hooks/warren"), rx)
}

/// Serves the requests of one webhook connection (see [`webhook_receiver`]).
async fn serve_webhook_requests(
    mut s: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    statuses: Vec<u16>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let reply = format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\n\r\n");
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                s.flush().await.ok();
                let _ = tx.send((head, body));
                continue;
            }
        }
        let n = s.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Plain HTTP, answering 200.
async fn webhook_listener() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    webhook_receiver(None, vec![200]).await
}

/// Declares queue `q` alerting above `max_length` messages and publishes `n` messages to it.
async fn fill_alerting_queue(b: &TestBroker, q: &str, max_length: u32, n: usize) {
    expect(
        b,
        "PUT",
        &format!("/api/queues/%2F/{q}"),
        Some(json!({"durable": true, "arguments": {"x-alert-max-length": max_length}})),
        201,
    )
    .await;
    let one = json!({"properties": {}, "routing_key": q, "payload": "x", "payload_encoding": "string"});
    for _ in 0..n {
        expect(
            b,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            Some(one.clone()),
            200,
        )
        .await;
    }
}

/// Issue 18: an https:// webhook whose certificate is signed by a CA made in the test,
/// trusted through `alert_webhook_ca`; the alert's JSON arrives over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_webhook_over_https_with_private_ca() {
    let pki = common::pki::Pki::new("warren webhook test CA");
    let dir = common::tempdir::Dir::new();
    let ca = dir.path.join("hooks-ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let (hook, mut rx) = webhook_receiver(Some(pki.server_config()), vec![200]).await;
    assert!(hook.starts_with("https://127.0.0.1:"), "{hook}");
    // Without the CA the receiver's certificate is refused.
    let untrusted = warren_server::http::webhook::Webhook::new(
        &hook,
        None,
        warren_server::http::webhook::RetryPolicy {
            attempts: 1,
            ..Default::default()
        },
    )
    .unwrap();
    match untrusted.deliver(b"{}".to_vec().into()).await {
        warren_server::http::webhook::Outcome::Failed { attempts: 1, last } => {
            assert!(last.contains("certificate"), "{last}")
        }
        other => panic!("delivered without trusting the CA: {other:?}"),
    }
    assert!(rx.try_recv().is_err());
    let b = start_with(|c| {
        c.alert_webhook = Some(hook.clone());
        c.alert_webhook_ca = Some(ca.clone());
    })
    .await;
    fill_alerting_queue(&b, "tls-alerts", 1, 2).await;
    let (head, body) = within(10, "webhook POST over HTTPS", rx.recv()).await.unwrap();
    assert!(head.starts_with("POST /hooks/warren HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["event"], "alert_firing");
    assert_eq!(ev["product"], "Warren");
    assert_eq!(ev["alert"]["vhost"], "/");
    assert_eq!(ev["alert"]["queue"], "tls-alerts");
    assert_eq!(ev["alert"]["kind"], "max_length");
    assert_eq!(ev["alert"]["threshold"], 1.0);
    assert_eq!(ev["alert"]["value"], 2.0);
    b.running.shutdown().await;
}

/// Issue 18: a receiver that fails the first attempt with 500 gets the same alert again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_webhook_retries_after_a_server_error() {
    let (hook, mut rx) = webhook_receiver(None, vec![500, 200]).await;
    let b = start_with(|c| c.alert_webhook = Some(hook.clone())).await;
    fill_alerting_queue(&b, "retried", 0, 1).await;
    let (_, first) = within(10, "first webhook attempt", rx.recv()).await.unwrap();
    let (head, second) = within(10, "retried webhook attempt", rx.recv()).await.unwrap();
    assert!(head.starts_with("POST /hooks/warren HTTP/1.1"), "{head}");
    assert_eq!(first, second);
    let ev: Value = serde_json::from_slice(&second).unwrap();
    assert_eq!(ev["event"], "alert_firing");
    assert_eq!(ev["alert"]["queue"], "retried");
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_fires_once_and_posts_webhook() {
    let (hook, mut rx) = webhook_listener().await;
    let b = start_with(|c| c.alert_webhook = Some(hook.clone())).await;
    expect(
        &b,
        "PUT",
        "/api/queues/%2F/dlq",
        Some(json!({"durable": true, "arguments": {"x-alert-max-length": 2, "x-alert-max-growth-per-minute": 1000}})),
        201,
    )
    .await;
    let pub_one =
        json!({"properties": {}, "routing_key": "dlq", "payload": "x", "payload_encoding": "string"});
    for _ in 0..3 {
        expect(
            &b,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            Some(pub_one.clone()),
            200,
        )
        .await;
    }
    let (head, body) = within(10, "webhook POST", rx.recv()).await.unwrap();
    assert!(head.starts_with("POST /hooks/warren HTTP/1.1"), "{head}");
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["event"], "alert_firing");
    assert_eq!(ev["alert"]["queue"], "dlq");
    assert_eq!(ev["alert"]["kind"], "max_length");
    assert_eq!(ev["alert"]["threshold"], 2.0);
    assert_eq!(ev["alert"]["value"], 3.0);
    let alerts = get(&b, "/api/alerts").await;
    assert_eq!(alerts.as_array().unwrap().len(), 1);
    assert_eq!(alerts[0]["kind"], "max_length");
    let m = metrics(&b).await;
    assert_eq!(
        metric(
            &m,
            "warren_queue_alert{vhost=\"/\",queue=\"dlq\",kind=\"max_length\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            "warren_queue_alert{vhost=\"/\",queue=\"dlq\",kind=\"max_growth_per_minute\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        get(&b, "/api/queues/%2F/dlq").await["alerts"][0]["kind"],
        "max_length"
    );
    // Once per episode: one more message does not post again; purging resolves it.
    expect(
        &b,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(pub_one.clone()),
        200,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(rx.try_recv().is_err(), "a second alert_firing was posted");
    expect(&b, "DELETE", "/api/queues/%2F/dlq/contents", None, 204).await;
    let (_, body) = within(10, "resolved POST", rx.recv()).await.unwrap();
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["event"], "alert_resolved");
    poll(5, "alerts cleared", async || {
        get(&b, "/api/alerts").await == json!([])
    })
    .await;
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warrenctl_commands() {
    let b = start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    reject_into_dlq(&b, &ch, 2).await;
    let base = format!("http://{}", b.running.http_addr);
    let ctl = |args: &[&str]| {
        let mut v = vec![
            "warrenctl",
            "--url",
            base.as_str(),
            "--user",
            "guest",
            "--password",
            "guest",
        ];
        v.extend_from_slice(args);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = ctl::run_from(ctl(&["list", "queues"])).await.unwrap();
    let line = out.lines().find(|l| l.starts_with("orders.dlq")).unwrap();
    assert!(line.contains(" 2 ") && line.ends_with("yes"), "{out}");
    assert!(out.lines().next().unwrap().starts_with("name"));
    let out = ctl::run_from(ctl(&["list", "exchanges", "--json"]))
        .await
        .unwrap();
    assert!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
            >= 7
    );
    let out = ctl::run_from(ctl(&["list", "bindings"])).await.unwrap();
    assert!(out.contains("dlx") && out.contains("orders.dlq"));
    let out = ctl::run_from(ctl(&["list", "connections"])).await.unwrap();
    assert!(out.contains("guest"));
    let out = ctl::run_from(ctl(&["list", "consumers"])).await.unwrap();
    assert!(out.starts_with("queue"));
    let out = ctl::run_from(ctl(&["dlq", "peek", "orders.dlq", "--count", "1"]))
        .await
        .unwrap();
    assert!(
        out.contains("first death: rejected in 'orders'") && out.contains("x-death: rejected"),
        "{out}"
    );
    let out = ctl::run_from(ctl(&["dlq", "stats", "orders.dlq"])).await.unwrap();
    assert!(
        out.contains("rejected") && out.contains("orders") && out.contains("dead_letter_queue=true"),
        "{out}"
    );
    let out = ctl::run_from(ctl(&["dlq", "move", "orders.dlq", "--dry-run"]))
        .await
        .unwrap();
    assert!(out.contains("would move"), "{out}");
    let out = ctl::run_from(ctl(&["dlq", "move", "orders.dlq", "--count", "1"]))
        .await
        .unwrap();
    assert!(out.starts_with("moved 1 message(s); 1 left"), "{out}");
    assert_eq!(counts(&b, "orders").0, 1);
    let out = ctl::run_from(ctl(&["purge", "orders.dlq"])).await.unwrap();
    assert!(out.contains("purged"));
    assert_eq!(counts(&b, "orders.dlq").0, 0);
    let out = ctl::run_from(ctl(&["status"])).await.unwrap();
    assert!(out.starts_with("Warren ") && out.contains("alerts: 0"), "{out}");
    let file = b.data_dir.path.join("defs.json");
    ctl::run_from(ctl(&["export-definitions", file.to_str().unwrap()]))
        .await
        .unwrap();
    ctl::run_from(ctl(&["delete", "queue", "orders.dlq"]))
        .await
        .unwrap();
    ctl::run_from(ctl(&["delete", "exchange", "dlx"])).await.unwrap();
    assert!(common::queue(&b, "orders.dlq").is_none());
    ctl::run_from(ctl(&["import-definitions", file.to_str().unwrap()]))
        .await
        .unwrap();
    assert!(common::queue(&b, "orders.dlq").is_some());
    let err = ctl::run_from(ctl(&["delete", "queue", "nope"]))
        .await
        .unwrap_err();
    assert!(err.contains("404"), "{err}");
    conn.close(200, "bye".into()).await.ok();
    b.running.shutdown().await;
}

/// One raw HTTP/1.1 GET with extra header lines (the client sends none of its own choosing).
async fn get_with_headers(b: &TestBroker, path: &str, headers: &str) -> client::Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.running.http_addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: warren\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    client::parse_response(&raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_is_served_without_credentials_and_the_api_still_needs_them() {
    let b = start().await;
    // The page and its script: no credentials needed, no data in them.
    let r = client::request("GET", &url(&b, "/"), None, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("www-authenticate").is_none());
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = r.text();
    assert!(
        html.contains("id=\"login\"") && html.contains("/ui/app.js"),
        "{html}"
    );
    let r = client::request("GET", &url(&b, "/ui/app.js"), None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/javascript"));
    let js = r.text();
    for used in [
        "/api/whoami",
        "/api/overview",
        "/move",
        "/contents",
        "dead_letter_queue",
        "X-Requested-With",
    ] {
        assert!(js.contains(used), "app.js uses {used}");
    }

    // The API: RabbitMQ's 401 with a challenge for clients like curl …
    let r = client::request("GET", &url(&b, "/api/overview"), None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = client::request("GET", &url(&b, "/api/queues"), Some(("guest", "nope")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    // … and without one for the UI's fetches (no browser prompt over the login form).
    let xrw = "X-Requested-With: XMLHttpRequest\r\n";
    let r = get_with_headers(&b, "/api/overview", xrw).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
    let wrong = "Authorization: Basic Z3Vlc3Q6bm9wZQ==\r\n"; // guest:nope
    let r = get_with_headers(&b, "/api/whoami", &format!("{xrw}{wrong}")).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
    assert_eq!(r.json()["reason"], "Login failed");
    let right = "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"; // guest:guest
    let r = get_with_headers(&b, "/api/whoami", &format!("{xrw}{right}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["name"], "guest");
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_definitions_survive_restart() {
    let first = start().await;
    let dir = first.data_dir.path.clone();
    // Keep the first broker's data directory alive across the restart.
    let keep = first.data_dir;
    let first = TestBroker {
        url: first.url,
        running: first.running,
        data_dir: common::tempdir::Dir::new(),
    };
    let b = &first;
    expect(
        b,
        "PUT",
        "/api/exchanges/%2F/api.x",
        Some(json!({"type": "topic", "durable": true})),
        201,
    )
    .await;
    expect(
        b,
        "PUT",
        "/api/exchanges/%2F/api.tmp",
        Some(json!({"type": "direct", "durable": false})),
        201,
    )
    .await;
    expect(
        b,
        "PUT",
        "/api/exchanges/%2F/api.gone",
        Some(json!({"type": "fanout"})),
        201,
    )
    .await;
    expect(
        b,
        "PUT",
        "/api/queues/%2F/api.q",
        Some(json!({"durable": true, "arguments": {"x-max-length": 10}})),
        201,
    )
    .await;
    expect(
        b,
        "PUT",
        "/api/queues/%2F/api.gone.q",
        Some(json!({"durable": true})),
        201,
    )
    .await;
    expect(
        b,
        "PUT",
        "/api/queues/%2F/api.transient",
        Some(json!({"durable": false})),
        201,
    )
    .await;
    expect(
        b,
        "POST",
        "/api/bindings/%2F/e/api.x/q/api.q",
        Some(json!({"routing_key": "a.#"})),
        201,
    )
    .await;
    expect(
        b,
        "POST",
        "/api/bindings/%2F/e/api.x/q/api.q",
        Some(json!({"routing_key": "b.*"})),
        201,
    )
    .await;
    expect(
        b,
        "POST",
        "/api/bindings/%2F/e/api.x/e/api.gone",
        Some(json!({"routing_key": "k"})),
        201,
    )
    .await;
    // Deleted through the API: must stay deleted after the restart.
    expect(b, "DELETE", "/api/bindings/%2F/e/api.x/q/api.q/b.*", None, 204).await;
    expect(b, "DELETE", "/api/exchanges/%2F/api.gone", None, 204).await;
    expect(b, "DELETE", "/api/queues/%2F/api.gone.q", None, 204).await;
    // And through a definitions import.
    let defs = json!({
        "queues": [{"name": "imported.q", "vhost": "/", "durable": true, "auto_delete": false,
                    "arguments": {"x-message-ttl": 60000}}],
        "exchanges": [{"name": "imported.x", "vhost": "/", "type": "direct", "durable": true,
                       "auto_delete": false, "internal": false, "arguments": {}}],
        "bindings": [{"source": "imported.x", "vhost": "/", "destination": "imported.q",
                      "destination_type": "queue", "routing_key": "rk", "arguments": {}}],
    });
    expect(b, "POST", "/api/definitions", Some(defs), 204).await;
    first.running.shutdown().await;

    let dir2 = dir.clone();
    let second = common::start_with(move |c| c.data_dir = dir2).await;
    let b = &second;
    let x = get(b, "/api/exchanges/%2F/api.x").await;
    assert_eq!(
        (x["type"].as_str(), x["durable"].as_bool()),
        (Some("topic"), Some(true))
    );
    let q = get(b, "/api/queues/%2F/api.q").await;
    assert_eq!(q["durable"], true);
    assert_eq!(q["arguments"]["x-max-length"], 10);
    let binds = get(b, "/api/bindings/%2F/e/api.x/q/api.q").await;
    let keys: Vec<&str> = binds
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["routing_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a.#"], "the deleted binding stays deleted");
    expect(b, "GET", "/api/exchanges/%2F/api.gone", None, 404).await;
    expect(b, "GET", "/api/queues/%2F/api.gone.q", None, 404).await;
    expect(b, "GET", "/api/exchanges/%2F/api.tmp", None, 404).await;
    expect(b, "GET", "/api/queues/%2F/api.transient", None, 404).await;
    assert_eq!(
        get(b, "/api/queues/%2F/imported.q").await["arguments"]["x-message-ttl"],
        60000
    );
    get(b, "/api/exchanges/%2F/imported.x").await;
    let binds = get(b, "/api/bindings/%2F/e/imported.x/q/imported.q").await;
    assert_eq!(binds[0]["routing_key"], "rk");
    // Routing works on the recovered topology.
    let r = get_routed(b, "api.x", "a.b.c").await;
    assert!(r, "message routed through the recovered binding");
    second.running.shutdown().await;
    drop(keep);
}

async fn get_routed(b: &TestBroker, exchange: &str, key: &str) -> bool {
    let r = expect(
        b,
        "POST",
        &format!("/api/exchanges/%2F/{exchange}/publish"),
        Some(json!({"properties": {}, "routing_key": key, "payload": "x", "payload_encoding": "string"})),
        200,
    )
    .await;
    r.json()["routed"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fail_health_checks_and_show_in_metrics() {
    let b = start().await;
    let m = metrics(&b).await;
    assert_eq!(metric(&m, "rabbitmq_alarms_memory_used_watermark"), Some(0.0));
    assert_eq!(metric(&m, "rabbitmq_alarms_free_disk_space_watermark"), Some(0.0));
    assert_eq!(get(&b, "/api/healthchecks/alarms").await["status"], "ok");

    b.running.broker.alarms.set_memory_limit(1);
    poll(10, "memory alarm", async || {
        b.running.broker.alarms.current().memory
    })
    .await;
    for (path, reason) in [
        (
            "/api/healthchecks/alarms",
            "There are alarms in effect in the cluster",
        ),
        (
            "/api/health/checks/alarms",
            "There are alarms in effect in the cluster",
        ),
        (
            "/api/health/checks/local-alarms",
            "There are alarms in effect on the node",
        ),
    ] {
        let r = expect(&b, "GET", path, None, 503).await.json();
        assert_eq!(r["status"], "failed", "{path}");
        assert_eq!(r["reason"], reason, "{path}");
        assert_eq!(r["alarms"][0]["resource"], "memory", "{path}");
    }
    let m = metrics(&b).await;
    assert_eq!(metric(&m, "rabbitmq_alarms_memory_used_watermark"), Some(1.0));
    assert_eq!(metric(&m, "rabbitmq_alarms_free_disk_space_watermark"), Some(0.0));
    assert_eq!(metric(&m, "rabbitmq_resident_memory_limit_bytes"), Some(1.0));
    assert_eq!(get(&b, "/api/nodes").await[0]["mem_alarm"], true);

    b.running.broker.alarms.set_memory_limit(0);
    poll(10, "memory alarm cleared", async || {
        !b.running.broker.alarms.current().memory
    })
    .await;
    assert_eq!(get(&b, "/api/health/checks/local-alarms").await["status"], "ok");
    let m = metrics(&b).await;
    assert_eq!(metric(&m, "rabbitmq_alarms_memory_used_watermark"), Some(0.0));

    // The disk alarm, through an impossible free-disk limit.
    b.running.broker.alarms.set_disk_free_limit(u64::MAX);
    poll(10, "disk alarm", async || b.running.broker.alarms.current().disk).await;
    let r = expect(&b, "GET", "/api/health/checks/alarms", None, 503)
        .await
        .json();
    assert_eq!(r["alarms"][0]["resource"], "disk");
    let m = metrics(&b).await;
    assert_eq!(metric(&m, "rabbitmq_alarms_free_disk_space_watermark"), Some(1.0));
    b.running.broker.alarms.set_disk_free_limit(0);
    poll(10, "disk alarm cleared", async || {
        !b.running.broker.alarms.current().disk
    })
    .await;
    b.running.shutdown().await;
}

/// Scrape time of `/metrics` with 10,000 queues (printed; the target is < 100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_with_10k_queues() {
    let b = start().await;
    let v = b.running.broker.vhost("/").unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..10_000 {
        let body = warren_server::http::api::QueueBody {
            durable: false,
            auto_delete: false,
            arguments: json!({}),
        };
        warren_server::http::api::declare_queue(&v, &format!("bulk-{i:05}"), &body, None).unwrap();
    }
    eprintln!("declared 10000 queues in {:?}", t0.elapsed());
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let m = metrics(&b).await;
        times.push(t.elapsed());
        assert_eq!(metric(&m, "rabbitmq_queues"), Some(10_000.0));
        assert!(m.contains("rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"bulk-09999\"} 0"));
    }
    times.sort();
    println!(
        "METRICS SCRAPE 10k queues: min {:?}, median {:?}, max {:?} (HTTP round trip, debug={})",
        times[0],
        times[2],
        times[4],
        cfg!(debug_assertions)
    );
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_definitions_and_nodes_for_rabbitmqadmin() {
    let b = start().await;
    expect(&b, "PUT", "/api/vhosts/src", Some(json!({})), 201).await;
    expect(&b, "PUT", "/api/vhosts/dst", Some(json!({})), 201).await;
    expect(
        &b,
        "PUT",
        "/api/exchanges/src/x",
        Some(json!({"type": "topic"})),
        201,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/queues/src/q",
        Some(json!({"arguments": {"x-max-length": 5}})),
        201,
    )
    .await;
    expect(
        &b,
        "POST",
        "/api/bindings/src/e/x/q/q",
        Some(json!({"routing_key": "k.#"})),
        201,
    )
    .await;
    let doc = get(&b, "/api/definitions/src").await;
    assert_eq!(doc["queues"].as_array().unwrap().len(), 1);
    assert_eq!(doc["queues"][0]["name"], "q");
    assert!(doc["queues"][0].get("vhost").is_none(), "{doc}");
    assert_eq!(doc["bindings"][0]["routing_key"], "k.#");
    assert!(doc.get("users").is_none() && doc.get("vhosts").is_none());
    expect(&b, "POST", "/api/definitions/dst", Some(doc), 204).await;
    assert_eq!(get(&b, "/api/queues/dst/q").await["arguments"]["x-max-length"], 5);
    assert_eq!(
        get(&b, "/api/bindings/dst/e/x/q/q").await[0]["routing_key"],
        "k.#"
    );
    expect(&b, "GET", "/api/definitions/nope", None, 404).await;
    let n = get(&b, "/api/nodes").await;
    assert_eq!(n[0]["being_drained"], false);
    assert_eq!(n[0]["mem_alarm"], false);
    assert!(n[0]["mem_limit"].as_u64().is_some());
    b.running.shutdown().await;
}

/// rabbitmqadmin v1 sends every value as a string (`"durable":"true"`, `"count":"2"`);
/// RabbitMQ's API accepts that, and so does Warren's. Anything else is still a 400.
#[tokio::test]
async fn string_booleans_and_numbers_are_accepted_as_rabbitmq_does() {
    let b = start().await;
    let body = json!({"durable": "false", "auto_delete": "false", "arguments": {}});
    expect(&b, "PUT", "/api/queues/%2F/v1q", Some(body), 201).await;
    assert_eq!(get(&b, "/api/queues/%2F/v1q").await["durable"], false);
    let body = json!({"type": "fanout", "durable": "true", "auto_delete": "false",
                      "internal": "false", "arguments": {}});
    expect(&b, "PUT", "/api/exchanges/%2F/v1x", Some(body), 201).await;
    assert_eq!(get(&b, "/api/exchanges/%2F/v1x").await["durable"], true);
    for i in 0..3 {
        let body = json!({"properties": {}, "routing_key": "v1q", "payload": format!("m{i}"),
                          "payload_encoding": "string"});
        expect(
            &b,
            "POST",
            "/api/exchanges/%2F/amq.default/publish",
            Some(body),
            200,
        )
        .await;
    }
    let body = json!({"count": "2", "ackmode": "ack_requeue_false", "encoding": "auto",
                      "truncate": "50000"});
    let got = expect(&b, "POST", "/api/queues/%2F/v1q/get", Some(body), 200)
        .await
        .json();
    assert_eq!(got.as_array().map(Vec::len), Some(2), "{got}");
    expect(
        &b,
        "PUT",
        "/api/queues/%2F/bad",
        Some(json!({"durable": "yes"})),
        400,
    )
    .await;
    b.running.shutdown().await;
}

/// Endpoints tools call for features Warren has no equivalent of answer as RabbitMQ does with
/// none (an empty list), and the cluster name is the one the overview carries — not a 404.
#[tokio::test]
async fn cluster_name_extensions_and_feature_flags_answer() {
    let b = start().await;
    let overview = get(&b, "/api/overview").await;
    let name = get(&b, "/api/cluster-name").await;
    assert_eq!(name["name"], overview["cluster_name"], "{name}");
    assert_eq!(get(&b, "/api/extensions").await, json!([]));
    assert_eq!(get(&b, "/api/feature-flags").await, json!([]));
    b.running.shutdown().await;
}

#[tokio::test]
async fn one_connection_its_channels_and_closing_it_through_the_api() {
    let b = common::start_with(|c| {
        c.max_queues_per_vhost = 7;
        c.max_connections_per_user = 9;
    })
    .await;
    let conn = b.connect().await;
    let _ch = conn.create_channel().await.unwrap();
    let list = get(&b, "/api/connections").await;
    let name = list[0]["name"].as_str().unwrap().to_string();
    let path = format!("/api/connections/{}", client::encode_segment(&name));
    let one = get(&b, &path).await;
    assert_eq!(one["name"], name.as_str());
    assert_eq!(one["user"], "guest");
    assert_eq!(one["state"], "running");
    assert_eq!(
        get(&b, &format!("{path}/channels"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        get(&b, "/api/vhosts/%2F/connections").await[0]["name"],
        name.as_str()
    );
    assert_eq!(
        get(&b, "/api/connections/username/guest").await[0]["name"],
        name.as_str()
    );
    assert_eq!(get(&b, "/api/connections/username/nobody").await, json!([]));
    expect(&b, "GET", "/api/connections/nope", None, 404).await;

    let node = get(&b, "/api/nodes").await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&b, &format!("/api/nodes/{node}")).await["name"],
        node.as_str()
    );
    expect(&b, "GET", "/api/nodes/nope@nowhere", None, 404).await;
    for empty in [
        "/api/parameters",
        "/api/parameters/shovel",
        "/api/parameters/shovel/%2F",
        "/api/operator-policies",
        "/api/deprecated-features",
        "/api/deprecated-features/used",
    ] {
        assert_eq!(get(&b, empty).await, json!([]), "{empty}");
    }
    assert_eq!(
        get(&b, "/api/global-parameters").await,
        json!([{"name": "cluster_name", "value": "warren"}])
    );
    assert_eq!(
        get(&b, "/api/vhost-limits").await,
        json!([{"vhost": "/", "value": {"max-queues": 7}}])
    );
    assert!(
        get(&b, "/api/user-limits")
            .await
            .as_array()
            .unwrap()
            .contains(&json!({"user": "guest", "value": {"max-connections": 9}}))
    );

    // DELETE closes it with 320 and RabbitMQ's default reason.
    expect(&b, "DELETE", &path, None, 204).await;
    poll(5, "the client sees its connection closed", async || {
        !conn.status().connected()
    })
    .await;
    poll(5, "connection gone from the listing", async || {
        get(&b, "/api/connections").await.as_array().unwrap().is_empty()
    })
    .await;
}
