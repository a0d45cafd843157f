//! Direct reply-to (`amq.rabbitmq.reply-to`): RPC without declaring a reply queue.

mod common;

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test]
async fn rpc_over_direct_reply_to() {
    let b = common::start().await;
    let conn = b.connect().await;
    let server = conn.create_channel().await.unwrap();
    server
        .queue_declare(
            "rpc".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut requests = server
        .basic_consume(
            "rpc".into(),
            "srv".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let client = conn.create_channel().await.unwrap();
    // The pseudo-queue exists for a passive declare, as in RabbitMQ.
    let q = client
        .queue_declare(
            "amq.rabbitmq.reply-to".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    client
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"2+2",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("c1".into()),
        )
        .await
        .unwrap();

    let req = common::within(5, "request", requests.next())
        .await
        .unwrap()
        .unwrap();
    let reply_to = req.properties.reply_to().clone().expect("reply_to set");
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "rewritten: {reply_to}"
    );
    server
        .basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            b"4",
            BasicProperties::default().with_correlation_id("c1".into()),
        )
        .await
        .unwrap();
    req.ack(BasicAckOptions::default()).await.unwrap();

    let reply = common::within(5, "reply", replies.next()).await.unwrap().unwrap();
    assert_eq!(reply.data, b"4");
    assert_eq!(
        reply.properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("c1")
    );
    b.running.shutdown().await;
}

#[tokio::test]
async fn direct_reply_to_requires_no_ack_and_a_consumer() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&err), Some(406));
    let ch = conn.create_channel().await.unwrap();
    let mut watch = common::watch(&ch).await;
    ch.queue_declare(
        "rpc2".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "rpc2".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await
    .unwrap();
    // Publishing with reply_to set but no reply consumer closes the channel with 406 (read
    // from a watching consumer: the close may arrive before any next operation is sent).
    let (code, text) = common::closed_with(&mut watch).await;
    assert_eq!(code, 406, "{text}");
    assert!(text.contains("fast reply consumer does not exist"), "{text}");
    b.running.shutdown().await;
}
