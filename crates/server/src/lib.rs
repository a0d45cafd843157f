//! # warren-server
//!
//! The running broker: tokio listener, connections and channels, queues driving
//! `warren-core`, heartbeats, authentication, and the `warren` command line.
//!
//! ## Layout
//! - [`config`]: flags, `WARREN_*` environment variables, TOML file, defaults.
//! - [`broker`]: shared state (vhosts, users, connections, counters) and the publish path.
//! - [`auth`]: users, RabbitMQ-compatible password hashes, PLAIN/AMQPLAIN, permissions.
//! - [`access`]: permission checks on AMQP operations; durable users/vhosts/permissions.
//! - [`connection`]: one task per connection: handshake, read loop, heartbeats, writer.
//! - [`channel`]: per-channel state and every channel-level method.
//! - [`queue`]: a live queue: `QueueState` behind one lock, its consuming channels' delivery routes, timers.
//! - [`policies`]: policies per vhost: applied to queues live, persisted in the definitions log.
//! - [`limits`]: per-vhost and per-user limits (RabbitMQ's vhost and user limits), durable.
//! - [`clustering`]: the node's cluster layer (Raft) and the replicated definitions commands.
//! - [`cli`]: `warren` binary entry point; [`fsck`]: `warren --check-data-dir`, the offline check.
//! - [`tls`]: the AMQPS (TLS) listener.
//! - [`http`]: management HTTP API, Prometheus metrics, DLQ tooling, management UI, `warrenctl`.

pub mod access;
pub mod alarms;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod cli;
pub mod clustering;
pub mod config;
pub mod connection;
pub mod convert;
pub mod forward;
pub mod fsck;
pub mod http;
pub mod limits;
pub mod mailbox;
pub mod monitor;
pub mod persist;
pub mod pki;
pub mod policies;
pub mod queue;
pub mod quorum;
pub mod quorum_bodies;
pub mod quorum_membership;
pub mod recovery;
pub mod session;
pub mod stats;
pub mod tls;
pub mod util;
pub mod vhost;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use broker::Broker;
pub use config::Config;

/// A broker started in this process.
#[derive(Debug)]
pub struct RunningBroker {
    /// Where the AMQP listener is bound.
    pub amqp_addr: SocketAddr,
    /// Where the management HTTP listener is bound.
    pub http_addr: SocketAddr,
    /// Where the Prometheus listener is bound, unless it is off.
    pub prometheus_addr: Option<SocketAddr>,
    /// Where the AMQPS (TLS) listener is bound, if TLS is configured.
    pub tls_addr: Option<SocketAddr>,
    /// The broker's state.
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    http_task: tokio::task::JoinHandle<()>,
    tls_task: Option<tokio::task::JoinHandle<()>>,
    alarms_task: tokio::task::JoinHandle<()>,
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config) -> std::io::Result<RunningBroker> {
    // Recover the durable state before accepting anyone.
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    // Clustering (only with --cluster-listen / --cluster-seeds): the Raft node, before any
    // listener, so the management API never answers without it.
    clustering::start(&broker).await?;
    match serve(broker.clone()).await {
        Ok(r) => Ok(r),
        Err(e) => {
            // A listener that cannot bind stops the start: stop the cluster node with it.
            if let Some(c) = broker.cluster() {
                c.shutdown().await;
            }
            Err(e)
        }
    }
}

/// Binds the listeners of an opened broker and starts serving.
async fn serve(broker: Arc<Broker>) -> std::io::Result<RunningBroker> {
    let config = &broker.config;
    // A bad webhook URL or CA file stops the start, not every alert later.
    let webhook = http::webhook::Webhook::from_config(config).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(config.amqp_listen).await?;
    let amqp_addr = listener.local_addr()?;
    tracing::info!("listening on {amqp_addr}");
    let http_listener = tokio::net::TcpListener::bind(config.http_listen).await?;
    let http_addr = http_listener.local_addr()?;
    tracing::info!("listening on {http_addr}");
    // RabbitMQ's rabbitmq_prometheus port, served by the management listener's task (one
    // shared state, stopped with it).
    let prometheus_listener = match config.prometheus_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    let prometheus_addr = match &prometheus_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    if let Some(a) = prometheus_addr {
        tracing::info!("listening on {a} (Prometheus)");
    }
    let tls_listener = match crate::tls::server_config(config).map_err(std::io::Error::other)? {
        Some(tls) => {
            let l = tokio::net::TcpListener::bind(config.tls_listen).await?;
            tracing::info!("listening on {} (TLS)", l.local_addr()?);
            Some((l, tls))
        }
        None => None,
    };
    let (tx, rx) = watch::channel(false);
    let http_task = tokio::spawn(http::serve(
        broker.clone(),
        http_listener,
        prometheus_listener,
        amqp_addr,
        webhook,
        rx.clone(),
    ));
    let alarms_task = tokio::spawn(monitor::monitor(broker.clone(), rx.clone()));
    let mut tls_addr = None;
    let tls_task = match tls_listener {
        Some((l, tls)) => {
            tls_addr = Some(l.local_addr()?);
            Some(tokio::spawn(crate::tls::serve(
                broker.clone(),
                l,
                tls,
                rx.clone(),
            )))
        }
        None => None,
    };
    let task = tokio::spawn(connection::serve(broker.clone(), listener, rx));
    Ok(RunningBroker {
        amqp_addr,
        http_addr,
        prometheus_addr,
        tls_addr,
        tls_task,
        broker,
        shutdown: tx,
        task,
        http_task,
        alarms_task,
    })
}

impl RunningBroker {
    /// Closes every connection with 320 CONNECTION_FORCED and stops listening.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let _ = self.http_task.await;
        if let Some(t) = self.tls_task {
            let _ = t.await;
        }
        let _ = self.alarms_task.await;
        if let Some(c) = self.broker.cluster() {
            c.shutdown().await;
        }
        // Every queue's buffered log writes (acks of auto-ack deliveries and settlements that
        // no publish batch flushed) reach the files now, whoever still holds the queue.
        self.broker.flush_queue_logs();
        // The data directory's lock is free when this returns, for a broker started next on
        // it: the tasks above have ended, but a connection task aborted after the close
        // timeout, or an HTTP connection's task finishing its drop on another worker, may
        // still hold the broker for a moment. Wait for the store to be dropped (bounded).
        let store = self.broker.persistence.as_ref().map(Arc::downgrade);
        drop(self.broker);
        if let Some(store) = store {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.strong_count() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            if store.strong_count() > 0 {
                tracing::warn!(
                    "shutdown: the store is still held after 10 s; its data directory stays locked"
                );
            }
        }
    }
}
