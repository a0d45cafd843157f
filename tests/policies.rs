//! Policies end to end (`PUT/DELETE /api/policies/{vhost}/{name}` with lapin clients): a
//! policy's dead-letter exchange on a queue declared without arguments, a `max-length` policy
//! trimming a live queue, queue arguments against policy keys, priorities, deleting a policy,
//! `expires` via policy, validation errors, definitions export/import and a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};
use warren_server::http::client;

// ---------------------------------------------------------------- HTTP

async fn call(b: &TestBroker, method: &str, path: &str, body: Option<Value>) -> client::Response {
    let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
    let url = format!("http://{}{}", b.running.http_addr, path);
    client::request(method, &url, Some(("guest", "guest")), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
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

async fn get_json(b: &TestBroker, path: &str) -> Value {
    expect(b, "GET", path, None, 200).await.json()
}

/// `PUT /api/policies/%2F/{name}` for queues; 201 or 204.
async fn put_policy(b: &TestBroker, name: &str, pattern: &str, priority: i64, definition: Value) {
    let r = call(
        b,
        "PUT",
        &format!("/api/policies/%2F/{name}"),
        Some(
            json!({"pattern": pattern, "definition": definition, "priority": priority,
                    "apply-to": "queues"}),
        ),
    )
    .await;
    assert!(
        r.status == 201 || r.status == 204,
        "PUT policy {name}: {} {}",
        r.status,
        r.text()
    );
}

// ---------------------------------------------------------------- AMQP

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(v.into())
}

async fn declare_with(ch: &Channel, name: &str, durable: bool, a: FieldTable) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        a,
    )
    .await
    .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

/// A fanout exchange `name` with one queue `name.q` bound to it; returns the queue's name.
async fn dlx_with_queue(ch: &Channel, name: &str, durable: bool) -> String {
    ch.exchange_declare(
        name.into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = format!("{name}.q");
    declare_with(ch, &q, durable, FieldTable::default()).await;
    ch.queue_bind(
        q.as_str().into(),
        name.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    q
}

/// Publishes to the default exchange and waits for the confirm.
async fn send(ch: &Channel, queue: &str, body: &[u8]) {
    let c = ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(c.is_ack(), "publish to {queue} confirmed");
}

/// A confirm-mode channel.
async fn channel(b: &TestBroker) -> (lapin::Connection, Channel) {
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

/// basic.get of one message (unacked) and basic.reject without requeue.
async fn get_and_reject(ch: &Channel, queue: &str) -> Vec<u8> {
    let m = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("a message in {queue}"));
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    m.delivery.data.clone()
}

/// The next message of `queue` (auto-ack), waiting up to 5 s.
async fn take(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            return m;
        }
        assert!(Instant::now() < deadline, "no message in {queue} within 5s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `(reason, queue)` of the newest `x-death` entry.
fn death(props: &BasicProperties) -> (String, String) {
    let text = |t: &FieldTable, k: &str| match t.inner().get(k) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("x-death {k}: {other:?}"),
    };
    let headers = props.headers().as_ref().expect("headers");
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => match a.as_slice().first() {
            Some(AMQPValue::FieldTable(t)) => (text(t, "reason"), text(t, "queue")),
            other => panic!("x-death entry: {other:?}"),
        },
        other => panic!("no x-death: {other:?}"),
    }
}

fn ready(b: &TestBroker, queue: &str) -> u32 {
    counts(b, queue).0
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_dead_letter_exchange_applies_to_a_queue_declared_without_arguments() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let dlq = dlx_with_queue(&ch, "dlx", false).await;
    put_policy(&b, "dlx", "^work$", 0, json!({"dead-letter-exchange": "dlx"})).await;
    declare_with(&ch, "work", false, FieldTable::default()).await;
    // A queue the pattern does not match is left alone.
    declare_with(&ch, "other", false, FieldTable::default()).await;

    send(&ch, "work", b"poison").await;
    assert_eq!(get_and_reject(&ch, "work").await, b"poison");
    let m = take(&ch, &dlq).await;
    assert_eq!(m.delivery.data, b"poison");
    assert_eq!(
        death(&m.delivery.properties),
        ("rejected".to_string(), "work".to_string())
    );

    // The management API shows the policy; the declared arguments stay empty.
    let q = get_json(&b, "/api/queues/%2F/work").await;
    assert_eq!(q["policy"], "dlx");
    assert_eq!(
        q["effective_policy_definition"],
        json!({"dead-letter-exchange": "dlx"})
    );
    assert_eq!(q["arguments"], json!({}));
    let o = get_json(&b, "/api/queues/%2F/other").await;
    assert_eq!(o["policy"], Value::Null);
    assert_eq!(o["effective_policy_definition"], json!({}));
    // The DLQ is recognised as one through the policy's dead-letter exchange.
    assert_eq!(
        get_json(&b, &format!("/api/queues/%2F/{dlq}")).await["dead_letter_queue"],
        true
    );
    // Redeclaring with the declared (empty) arguments is still equivalent.
    declare_with(&ch, "work", false, FieldTable::default()).await;
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_policy_trims_a_live_queue_with_drop_head() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let dlq = dlx_with_queue(&ch, "trim.dlx", false).await;
    declare_with(&ch, "backlog", false, FieldTable::default()).await;
    for i in 0..10 {
        send(&ch, "backlog", format!("m{i}").as_bytes()).await;
    }
    assert_eq!(ready(&b, "backlog"), 10);

    put_policy(
        &b,
        "cap",
        "^backlog$",
        0,
        json!({"max-length": 3, "dead-letter-exchange": "trim.dlx"}),
    )
    .await;
    // Applied before the PUT returns: the oldest seven were dropped (dead-lettered `maxlen`).
    assert_eq!(ready(&b, "backlog"), 3);
    for i in 7..10 {
        assert_eq!(
            take(&ch, "backlog").await.delivery.data,
            format!("m{i}").as_bytes()
        );
    }
    for i in 0..7 {
        let m = take(&ch, &dlq).await;
        assert_eq!(m.delivery.data, format!("m{i}").as_bytes());
        assert_eq!(death(&m.delivery.properties).0, "maxlen");
    }
    // New publishes keep the limit.
    for i in 10..15 {
        send(&ch, "backlog", format!("m{i}").as_bytes()).await;
    }
    assert_eq!(ready(&b, "backlog"), 3);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_argument_wins_over_the_policy_dead_letter_exchange_and_the_lower_limit_applies() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let arg_dlq = dlx_with_queue(&ch, "arg.dlx", false).await;
    let pol_dlq = dlx_with_queue(&ch, "pol.dlx", false).await;
    put_policy(
        &b,
        "p",
        "^mixed$",
        0,
        json!({"dead-letter-exchange": "pol.dlx", "max-length": 2}),
    )
    .await;
    declare_with(
        &ch,
        "mixed",
        false,
        args(&[
            ("x-dead-letter-exchange", s("arg.dlx")),
            ("x-max-length", AMQPValue::LongLongInt(5)),
        ]),
    )
    .await;
    for i in 0..4 {
        send(&ch, "mixed", format!("m{i}").as_bytes()).await;
    }
    // max-length: min(5 from the argument, 2 from the policy) = 2.
    assert_eq!(ready(&b, "mixed"), 2);
    assert_eq!(get_and_reject(&ch, "mixed").await, b"m2");
    // Every dead letter went to the argument's exchange, none to the policy's.
    let reasons: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(death(&take(&ch, &arg_dlq).await.delivery.properties).0);
        }
        v
    };
    assert_eq!(reasons, ["maxlen", "maxlen", "rejected"]);
    assert_eq!(ready(&b, &pol_dlq), 0);
    let q = get_json(&b, "/api/queues/%2F/mixed").await;
    assert_eq!(q["policy"], "p");
    assert_eq!(q["arguments"]["x-dead-letter-exchange"], "arg.dlx");
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_higher_priority_policy_wins_and_deleting_it_falls_back() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let low_dlq = dlx_with_queue(&ch, "low.dlx", false).await;
    let high_dlq = dlx_with_queue(&ch, "high.dlx", false).await;
    put_policy(
        &b,
        "high",
        "^prio\\.",
        5,
        json!({"dead-letter-exchange": "high.dlx"}),
    )
    .await;
    put_policy(&b, "low", "prio", 1, json!({"dead-letter-exchange": "low.dlx"})).await;
    declare_with(&ch, "prio.q", false, FieldTable::default()).await;

    send(&ch, "prio.q", b"one").await;
    get_and_reject(&ch, "prio.q").await;
    assert_eq!(take(&ch, &high_dlq).await.delivery.data, b"one");
    assert_eq!(get_json(&b, "/api/queues/%2F/prio.q").await["policy"], "high");

    expect(&b, "DELETE", "/api/policies/%2F/high", None, 204).await;
    assert_eq!(get_json(&b, "/api/queues/%2F/prio.q").await["policy"], "low");
    send(&ch, "prio.q", b"two").await;
    get_and_reject(&ch, "prio.q").await;
    assert_eq!(take(&ch, &low_dlq).await.delivery.data, b"two");
    assert_eq!(ready(&b, &high_dlq), 0);

    // The listing is ordered by priority, highest first.
    put_policy(&b, "top", "^nothing$", 9, json!({"max-length": 1})).await;
    let names: Vec<String> = get_json(&b, "/api/policies/%2F")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["top", "low"]);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_policy_stops_dead_lettering() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let dlq = dlx_with_queue(&ch, "dlx", false).await;
    declare_with(&ch, "work", false, FieldTable::default()).await;
    // A queue that dead-letters by its own argument: its dead letters arriving prove that the
    // rejects before them were fully handled.
    declare_with(
        &ch,
        "sentinel",
        false,
        args(&[("x-dead-letter-exchange", s("dlx"))]),
    )
    .await;

    // Set after the queue exists: applied live.
    put_policy(&b, "dlx", "^work$", 0, json!({"dead-letter-exchange": "dlx"})).await;
    send(&ch, "work", b"first").await;
    get_and_reject(&ch, "work").await;
    assert_eq!(take(&ch, &dlq).await.delivery.data, b"first");

    expect(&b, "DELETE", "/api/policies/%2F/dlx", None, 204).await;
    expect(&b, "DELETE", "/api/policies/%2F/dlx", None, 404).await;
    send(&ch, "work", b"second").await;
    get_and_reject(&ch, "work").await;
    send(&ch, "sentinel", b"sentinel").await;
    get_and_reject(&ch, "sentinel").await;
    assert_eq!(
        take(&ch, &dlq).await.delivery.data,
        b"sentinel",
        "the rejected message was dropped, not dead-lettered"
    );
    assert_eq!(ready(&b, &dlq), 0);
    assert_eq!(get_json(&b, "/api/queues/%2F/work").await["policy"], Value::Null);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ttl_and_expires_by_policy() {
    let b = start().await;
    let (_conn, ch) = channel(&b).await;
    let dlq = dlx_with_queue(&ch, "ttl.dlx", false).await;
    declare_with(&ch, "short", false, FieldTable::default()).await;
    put_policy(
        &b,
        "ttl",
        "^short$",
        0,
        json!({"message-ttl": 50, "dead-letter-exchange": "ttl.dlx"}),
    )
    .await;
    send(&ch, "short", b"stale").await;
    let m = take(&ch, &dlq).await;
    assert_eq!(m.delivery.data, b"stale");
    assert_eq!(death(&m.delivery.properties).0, "expired");

    // `expires` set by a policy on an existing, unused queue deletes it.
    declare_with(&ch, "idle", false, FieldTable::default()).await;
    put_policy(&b, "gc", "^idle$", 0, json!({"expires": 200})).await;
    wait_until(5, "the idle queue expired", || queue(&b, "idle").is_none()).await;
    assert!(queue(&b, "short").is_some());
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_validation_and_the_api_shapes() {
    let b = start().await;
    let put = |name: &str, body: Value| {
        let path = format!("/api/policies/%2F/{name}");
        let b = &b;
        async move { call(b, "PUT", &path, Some(body)).await }
    };
    let r = put(
        "bad",
        json!({"pattern": ".*", "definition": {"max-length": "ten"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "bad_request");
    assert_eq!(
        r.json()["reason"],
        "Validation failed\n\n<<\"ten\">> is not a valid maximum length\n"
    );
    let r = put("bad", json!({"pattern": ".*", "definition": {"bogus-key": 1}})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("[{<<\"bogus-key\">>,1}] are not recognised policy settings"),
        "{}",
        r.text()
    );
    let r = put("bad", json!({"pattern": "(", "definition": {"max-length": 1}})).await;
    assert_eq!(r.status, 400);
    let r = put(
        "bad",
        json!({"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "topics"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("apply-to 'topics' unrecognised")
    );
    let r = put("bad", json!({"definition": {"max-length": 1}})).await;
    assert_eq!(r.status, 400);
    expect(&b, "GET", "/api/policies/%2F/bad", None, 404).await;
    expect(
        &b,
        "PUT",
        "/api/policies/nowhere/p",
        Some(json!({"pattern": ".*", "definition": {"max-length": 1}})),
        404,
    )
    .await;

    // Created, then updated; defaults apply-to "all" and priority 0.
    let r = put("p", json!({"pattern": "^a", "definition": {"max-length": 1}})).await;
    assert_eq!(r.status, 201);
    let r = put(
        "p",
        json!({"pattern": "^a", "definition": {"max-length": 2}, "priority": "3"}),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        get_json(&b, "/api/policies/%2F/p").await,
        json!({"vhost": "/", "name": "p", "pattern": "^a", "apply-to": "all",
               "definition": {"max-length": 2}, "priority": 3})
    );
    assert_eq!(get_json(&b, "/api/policies").await.as_array().unwrap().len(), 1);

    // A management user without the administrator or policymaker tag may list but not read
    // one, change or delete policies (RabbitMQ's `User not authorised to access object`).
    expect(
        &b,
        "PUT",
        "/api/users/dev",
        Some(json!({"password": "devpw", "tags": "management"})),
        201,
    )
    .await;
    expect(
        &b,
        "PUT",
        "/api/permissions/%2F/dev",
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
        201,
    )
    .await;
    let url = format!("http://{}/api/policies/%2F/p", b.running.http_addr);
    let r = client::request("DELETE", &url, Some(("dev", "devpw")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = client::request("GET", &url, Some(("dev", "devpw")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "User not authorised to access object");
    let r = client::request("GET", url.trim_end_matches("/p"), Some(("dev", "devpw")), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_and_import_carry_policies() {
    let a = start().await;
    put_policy(&a, "dlx", "^work$", 2, json!({"dead-letter-exchange": "dlx"})).await;
    let defs = get_json(&a, "/api/definitions").await;
    assert_eq!(
        defs["policies"],
        json!([{"vhost": "/", "name": "dlx", "pattern": "^work$", "apply-to": "queues",
                "definition": {"dead-letter-exchange": "dlx"}, "priority": 2}])
    );
    let one = get_json(&a, "/api/definitions/%2F").await;
    assert_eq!(one["policies"][0]["name"], "dlx");
    assert!(one["policies"][0].get("vhost").is_none());
    a.running.shutdown().await;

    // Imported into a fresh broker together with a queue: the queue starts with the policy.
    let b = start().await;
    let mut doc = defs.clone();
    doc["queues"] = json!([{"name": "work", "vhost": "/", "durable": true, "auto_delete": false,
                            "arguments": {}}]);
    doc["exchanges"] = json!([{"name": "dlx", "vhost": "/", "type": "fanout", "durable": true,
                               "auto_delete": false, "internal": false, "arguments": {}}]);
    doc["bindings"] = json!([{"source": "dlx", "vhost": "/", "destination": "dead",
                              "destination_type": "queue", "routing_key": "", "arguments": {}}]);
    doc["queues"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "dead", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}));
    expect(&b, "POST", "/api/definitions", Some(doc), 204).await;
    assert_eq!(get_json(&b, "/api/queues/%2F/work").await["policy"], "dlx");
    let (_conn, ch) = channel(&b).await;
    send(&ch, "work", b"imported").await;
    get_and_reject(&ch, "work").await;
    assert_eq!(take(&ch, "dead").await.delivery.data, b"imported");

    // An invalid policy fails the import with the validation text.
    let bad = json!({"policies": [{"vhost": "/", "name": "bad", "pattern": ".*",
                                   "definition": {"message-ttl": -5}}]});
    let r = expect(&b, "POST", "/api/definitions", Some(bad), 400).await;
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("-5 is not a valid message TTL"),
        "{}",
        r.text()
    );
    b.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_survive_a_restart() {
    let first = start().await;
    // `first.data_dir` (removed when `first` goes out of scope) holds the store for all three.
    let dir = first.data_dir.path.clone();
    {
        let (_conn, ch) = channel(&first).await;
        dlx_with_queue(&ch, "dlx", true).await;
        declare_with(&ch, "work", true, FieldTable::default()).await;
    }
    put_policy(&first, "dlx", "^work$", 1, json!({"dead-letter-exchange": "dlx"})).await;
    put_policy(&first, "gone", "^work$", 0, json!({"max-length": 1})).await;
    expect(&first, "DELETE", "/api/policies/%2F/gone", None, 204).await;
    first.running.shutdown().await;

    let dir2 = dir.clone();
    let second = start_with(move |c| c.data_dir = dir2).await;
    let ps = get_json(&second, "/api/policies/%2F").await;
    assert_eq!(
        ps,
        json!([{"vhost": "/", "name": "dlx", "pattern": "^work$", "apply-to": "queues",
                "definition": {"dead-letter-exchange": "dlx"}, "priority": 1}])
    );
    assert_eq!(get_json(&second, "/api/queues/%2F/work").await["policy"], "dlx");
    let (_conn, ch) = channel(&second).await;
    send(&ch, "work", b"after restart").await;
    get_and_reject(&ch, "work").await;
    let m = take(&ch, "dlx.q").await;
    assert_eq!(m.delivery.data, b"after restart");
    assert_eq!(death(&m.delivery.properties).1, "work");
    second.running.shutdown().await;

    // A third start (after the start-up compaction rewrote the log) still has it.
    let dir3 = dir.clone();
    let third = start_with(move |c| c.data_dir = dir3).await;
    assert_eq!(
        get_json(&third, "/api/policies").await.as_array().unwrap().len(),
        1
    );
    third.running.shutdown().await;
}
