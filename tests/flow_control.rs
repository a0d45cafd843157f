//! Flow control: memory and disk alarms block publishing connections with
//! `connection.blocked` and stop reading them, consumers keep draining, and
//! `connection.unblocked` follows when the alarm clears.

mod common;

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use warren_server::alarms::Alarms;

async fn alarm_blocks_publishers(raise: impl Fn(&Alarms), clear: impl Fn(&Alarms), reason: &str) {
    let b = common::start().await;
    let alarms = &b.running.broker.alarms;
    let publisher = b.connect().await;
    let consumer_conn = b.connect().await;
    let pch = publisher.create_channel().await.unwrap();
    pch.queue_declare("fc".into(), QueueDeclareOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..5 {
        let body = format!("before-{i}");
        pch.basic_publish(
            "".into(),
            "fc".into(),
            Default::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    common::wait_until(5, "5 messages queued", || common::counts(&b, "fc").0 == 5).await;

    raise(alarms);
    common::wait_until(5, "alarm raised", || alarms.current().any()).await;
    assert_eq!(alarms.current().reason(), reason);
    common::wait_until(5, "publisher blocked", || publisher.status().blocked()).await;
    assert!(
        !consumer_conn.status().blocked(),
        "a connection that never published is not blocked"
    );

    // Publishes while blocked are not read by the broker (lapin itself holds publishes back
    // while its connection is blocked, so they go out from a task).
    let held = tokio::spawn(async move {
        for i in 0..5 {
            let body = format!("during-{i}");
            pch.basic_publish(
                "".into(),
                "fc".into(),
                Default::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        }
        pch
    });
    // Consumers keep draining.
    let cch = consumer_conn.create_channel().await.unwrap();
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = cch
        .basic_consume("fc".into(), "".into(), opts, FieldTable::default())
        .await
        .unwrap();
    for i in 0..5 {
        let d = common::within(5, "drain while blocked", consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.data, format!("before-{i}").into_bytes());
    }
    assert_eq!(
        common::counts(&b, "fc").0,
        0,
        "nothing new was read from the blocked publisher"
    );

    clear(alarms);
    common::wait_until(5, "publisher unblocked", || !publisher.status().blocked()).await;
    for i in 0..5 {
        let d = common::within(5, "held-back publishes arrive", consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.data, format!("during-{i}").into_bytes());
    }
    let _pch = common::within(5, "held-back publishes done", held).await.unwrap();
    b.running.shutdown().await;
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_until_cleared() {
    alarm_blocks_publishers(
        |a| a.set_memory_limit(1),
        |a| a.set_memory_limit(0),
        "low on memory",
    )
    .await;
}

#[tokio::test]
async fn disk_alarm_blocks_publishers_until_cleared() {
    alarm_blocks_publishers(
        |a| a.set_disk_free_limit(u64::MAX),
        |a| a.set_disk_free_limit(0),
        "low on disk",
    )
    .await;
}
