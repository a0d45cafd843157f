//! The resource monitor task: samples memory, free disk and the message store, raises and
//! clears the alarms ([`crate::alarms`]) and, once a store poisoned by a failed write has
//! room again, recovers it and has every queue write what waited in memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::alarms::{free_disk, next_sample, resident_memory};
use crate::broker::Broker;

/// How often a poisoned store is asked to recover (each try writes a 1 MiB probe).
const RECOVERY_INTERVAL: Duration = Duration::from_millis(250);

/// How often every queue's buffered log writes are pushed to the OS when nothing else did:
/// acks and auto-ack deliveries of a queue nobody publishes to wait in its buffers until a
/// publish batch flushes them, and would come back redelivered after a crash.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Samples memory, disk and the store until `shutdown`: twice a second, every 20 ms when free
/// disk is near the limit, and at once when the store reports a failed write. Once the store
/// was poisoned by a failed write (a full disk) and free space is back above the limit, it
/// recovers the store and has every queue write what waited in memory.
pub async fn monitor(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let failed = broker.persistence.as_ref().map(|p| p.store_failed.clone());
    let mut wait = Duration::ZERO;
    let mut last_recovery = std::time::Instant::now();
    let mut last_flush = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = async {
                match &failed {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = shutdown.changed() => return,
        }
        let free = free_disk(&broker.config.data_dir);
        let limit = broker.alarms.disk_free_limit();
        if let Some(p) = &broker.persistence
            && last_recovery.elapsed() >= RECOVERY_INTERVAL
        {
            last_recovery = std::time::Instant::now();
            recover_store(&broker, p, free, limit);
        }
        let poisoned = broker.persistence.as_ref().is_some_and(|p| p.store.is_poisoned());
        if !poisoned && last_flush.elapsed() >= FLUSH_INTERVAL {
            last_flush = std::time::Instant::now();
            broker.flush_queue_logs();
        }
        broker.alarms.check(resident_memory(), free, poisoned);
        wait = next_sample(free, limit);
    }
}

/// Clears a write-failure poison once free space is back above the limit (an fsync failure
/// needs a restart and stays), then flushes and syncs every durable queue's log: records and
/// acks that waited in memory reach the disk.
fn recover_store(broker: &Broker, p: &crate::persist::Persistence, free: Option<u64>, limit: u64) {
    // The scratch store (transient backlogs) recovers on the same terms, silently.
    let room = limit == 0 || free.is_some_and(|f| f >= limit);
    if room && p.scratch.is_poisoned() {
        let _ = p.scratch.try_recover();
    }
    let Some(info) = p.store.poison_info() else { return };
    if info.restart_required || !room || p.store.try_recover().is_err() {
        return;
    }
    tracing::warn!(
        error = %info.error,
        ?free,
        "message store recovered from a failed write: space is free again; publishing resumes"
    );
    broker.flush_queue_logs();
    p.syncer.request(Box::new(|r| {
        if let Err(e) = r {
            tracing::warn!("sync after store recovery failed: {e}");
        }
    }));
}

/// The message store's state for the management API: `None` if it is healthy.
pub fn store_problem(broker: &Broker) -> Option<warren_store::PoisonInfo> {
    broker.persistence.as_ref()?.store.poison_info()
}
