//! A TCP proxy on loopback for partition tests: it forwards every connection it accepts to
//! one target, and can be cut (every open connection through it closed at once, new ones
//! closed as soon as they are accepted) and healed (forwarding again). Put one between each
//! ordered pair of cluster nodes (`Config::cluster_dial_via`) to partition a node away in
//! both directions. It can also be stalled: connections stay open but no byte moves (a link
//! that is slow to the point of standing still) until it is healed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One proxy: `addr` forwards to its target while not cut.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
    stall: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(watch::channel(false).0);
        let state = cut.clone();
        let stall = Arc::new(watch::channel(false).0);
        let stalled = stall.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *state.borrow() {
                    // Cut: the dialler sees the connection close at once.
                    continue;
                }
                let mut cut = state.subscribe();
                let (s1, s2) = (stalled.subscribe(), stalled.subscribe());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.split();
                    let (ro, wo) = outbound.into_split();
                    tokio::select! {
                        _ = pipe(ri, wo, s1) => {}
                        _ = pipe(ro, wi, s2) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            stall,
            task,
        }
    }

    /// Stops moving bytes (connections stay open) until [`Proxy::heal`].
    pub fn stall(&self) {
        self.stall.send_replace(true);
    }

    /// Stops forwarding: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
        self.stall.send_replace(false);
    }
}

/// Copies `from` to `to`, holding each chunk while `stalled`.
async fn pipe(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    mut stalled: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}
