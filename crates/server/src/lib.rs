//! # warren-server
//!
//! The running broker: tokio listener, connections and channels, queues driving
//! `warren-core`, heartbeats, authentication, and the `warren` command line.
//!
//! ## Layout
//! - [`config`]: flags, `WARREN_*` environment variables, TOML file, defaults.
//! - [`broker`]: shared state (vhosts, users, connections, counters) and the publish path.
//! - [`auth`]: users, RabbitMQ-compatible password hashes, PLAIN/AMQPLAIN.
//! - [`connection`]: one task per connection: handshake, read loop, heartbeats, writer.
//! - [`channel`]: per-channel state and every channel-level method.
//! - [`queue`]: a live queue: `QueueState` behind one lock, consumer sinks, timers.
//! - [`cli`]: `warren` binary entry point.

pub mod auth;
pub mod broker;
pub mod channel;
pub mod cli;
pub mod config;
pub mod connection;
pub mod queue;

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
    /// The broker's state.
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config) -> std::io::Result<RunningBroker> {
    let listener = tokio::net::TcpListener::bind(config.amqp_listen).await?;
    let amqp_addr = listener.local_addr()?;
    tracing::info!("listening on {amqp_addr}");
    let broker = Broker::new(config);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(connection::serve(broker.clone(), listener, rx));
    Ok(RunningBroker {
        amqp_addr,
        broker,
        shutdown: tx,
        task,
    })
}

impl RunningBroker {
    /// Closes every connection with 320 CONNECTION_FORCED and stops listening.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
