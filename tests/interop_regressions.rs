//! Regressions found by the client interop suites (`interop/`): each test reproduces, with
//! lapin against an in-process broker, what an off-the-shelf client tripped over.

mod common;

use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

/// pika `queue_declare("")`, amqplib `assertQueue('')`, aio-pika `declare_queue("")`, rabbitmq-c
/// `amqp-declare-queue -q ""`: a server-named queue. The broker generated an `amq.gen-…` name
/// and then refused it with 403 ACCESS_REFUSED "contains reserved prefix 'amq.*'".
#[tokio::test]
async fn server_named_queue_declare_is_not_refused() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = common::within(
        5,
        "queue.declare-ok",
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("a server-named queue is declared");
    let name = q.name().to_string();
    assert!(name.starts_with("amq.gen-"), "{name}");
    // Usable like any other queue.
    ch.basic_publish(
        "".into(),
        name.as_str().into(),
        BasicPublishOptions::default(),
        b"gen",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = common::within(5, "basic.get", async {
        loop {
            if let Some(m) = ch
                .basic_get(name.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                break m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(got.delivery.data, b"gen");
    // A second server-named queue gets a different name.
    let q2 = ch
        .queue_declare("".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert_ne!(q2.name().as_str(), name);
    assert!(q2.name().as_str().starts_with("amq.gen-"));

    // A client-chosen `amq.` name is still refused, as in RabbitMQ.
    let ch2 = conn.create_channel().await.unwrap();
    let err = ch2
        .queue_declare(
            "amq.mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        common::reply_code(&err),
        Some(403),
        "{}",
        common::reply_text(&err)
    );
    conn.close(200, "bye".into()).await.unwrap();
    b.running.shutdown().await;
}
