//! Resource alarms, as RabbitMQ raises them: a memory alarm when the process's resident memory
//! passes the high watermark, and a disk alarm when free space under the data directory drops
//! below the free-disk limit or the store has refused writes after a failed write or fsync —
//! raised from the failure itself, not only from the next sample. While an alarm is up, publishing connections receive `connection.blocked` and are not read (TCP
//! backpressure); consumers keep draining. `connection.unblocked` follows when it clears.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// Which alarms are up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    /// Resident memory above the high watermark.
    pub memory: bool,
    /// Free disk below the limit, or the store is poisoned.
    pub disk: bool,
}

impl AlarmState {
    /// Whether publishers must be blocked.
    pub fn any(self) -> bool {
        self.memory || self.disk
    }

    /// The reason sent in `connection.blocked` (RabbitMQ's texts).
    pub fn reason(self) -> &'static str {
        match (self.memory, self.disk) {
            (true, true) => "low on memory and disk",
            (true, false) => "low on memory",
            (false, true) => "low on disk",
            (false, false) => "",
        }
    }
}

/// The broker's alarms and their limits (adjustable at run time).
#[derive(Debug)]
pub struct Alarms {
    memory_limit: AtomicU64,
    disk_free_limit: AtomicU64,
    state: watch::Sender<AlarmState>,
}

impl Alarms {
    /// Alarms with these limits (bytes; 0 disables a limit).
    pub fn new(memory_limit: u64, disk_free_limit: u64) -> Alarms {
        Alarms {
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            state: watch::channel(AlarmState::default()).0,
        }
    }

    /// Follows alarm changes.
    pub fn subscribe(&self) -> watch::Receiver<AlarmState> {
        self.state.subscribe()
    }

    /// The alarms now.
    pub fn current(&self) -> AlarmState {
        *self.state.borrow()
    }

    /// The memory high watermark in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// The free-disk limit in bytes.
    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    /// Changes the memory high watermark (bytes; 0 = none).
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    /// Changes the free-disk limit (bytes; 0 = none).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
    }

    /// Raises the disk alarm now (a store write just failed), without waiting for the next
    /// sample; the monitor clears it once free space is back above the limit and the store
    /// has recovered.
    pub fn raise_disk(&self, why: &str) {
        self.state.send_if_modified(|cur| {
            if cur.disk {
                return false;
            }
            tracing::warn!(why, "disk alarm set: publishers are blocked");
            cur.disk = true;
            true
        });
    }

    /// Re-evaluates the alarms from a measurement.
    pub fn check(&self, rss: u64, free_disk: Option<u64>, store_poisoned: bool) -> AlarmState {
        let mem_limit = self.memory_limit();
        let disk_limit = self.disk_free_limit();
        let next = AlarmState {
            memory: mem_limit != 0 && rss > mem_limit,
            disk: store_poisoned || (disk_limit != 0 && free_disk.is_some_and(|f| f < disk_limit)),
        };
        self.state.send_if_modified(|cur| {
            if *cur == next {
                return false;
            }
            if next.memory != cur.memory {
                if next.memory {
                    tracing::warn!(rss, limit = mem_limit, "memory alarm set: publishers are blocked");
                } else {
                    tracing::info!(rss, limit = mem_limit, "memory alarm cleared");
                }
            }
            if next.disk != cur.disk {
                if next.disk {
                    tracing::warn!(
                        ?free_disk,
                        limit = disk_limit,
                        store_poisoned,
                        "disk alarm set: publishers are blocked"
                    );
                } else {
                    tracing::info!(?free_disk, limit = disk_limit, "disk alarm cleared");
                }
            }
            *cur = next;
            true
        });
        next
    }
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`).
pub fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Total physical memory in bytes (`/proc/meminfo`), if known.
pub fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Free bytes available to us on the filesystem holding `path`.
pub fn free_disk(path: &PathBuf) -> Option<u64> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// How often the monitor samples while free disk is comfortably above the limit.
const SAMPLE: Duration = Duration::from_millis(500);
/// How often it samples near the limit (or with no limit): a fast publisher fills a few MB in
/// this time, not hundreds, so the alarm normally fires before a write fails.
const SAMPLE_NEAR_LIMIT: Duration = Duration::from_millis(20);
/// "Near": free space within this much of the limit (or within the limit again).
const NEAR_LIMIT: u64 = 256 << 20;

/// How long to wait before the next sample, given the free space just measured.
pub(crate) fn next_sample(free_disk: Option<u64>, limit: u64) -> Duration {
    match free_disk {
        Some(free) if free.saturating_sub(limit) < NEAR_LIMIT.max(limit) => SAMPLE_NEAR_LIMIT,
        _ => SAMPLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_follow_limits() {
        let a = Alarms::new(1000, 100);
        let mut rx = a.subscribe();
        assert_eq!(a.check(500, Some(1000), false), AlarmState::default());
        assert!(!rx.has_changed().unwrap());
        let s = a.check(2000, Some(1000), false);
        assert!(s.memory && !s.disk);
        assert_eq!(s.reason(), "low on memory");
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let s = a.check(2000, Some(50), false);
        assert_eq!(s.reason(), "low on memory and disk");
        a.set_memory_limit(0);
        let s = a.check(2000, Some(5000), true);
        assert!(!s.memory && s.disk, "a poisoned store raises the disk alarm");
        assert!(a.check(10, Some(5000), false) == AlarmState::default());
    }

    #[test]
    fn sampling_tightens_near_the_disk_limit() {
        let limit = 50_000_000;
        assert_eq!(next_sample(Some(10 << 30), limit), SAMPLE);
        assert_eq!(next_sample(Some(limit + (10 << 20)), limit), SAMPLE_NEAR_LIMIT);
        assert_eq!(next_sample(Some(limit / 2), limit), SAMPLE_NEAR_LIMIT);
        assert_eq!(
            next_sample(Some(64 << 20), 0),
            SAMPLE_NEAR_LIMIT,
            "a small disk without a limit"
        );
        assert_eq!(next_sample(None, limit), SAMPLE);
    }

    #[test]
    fn a_store_failure_raises_the_disk_alarm_at_once() {
        let a = Alarms::new(0, 100);
        let rx = a.subscribe();
        a.raise_disk("test");
        assert!(a.current().disk && rx.has_changed().unwrap());
        assert_eq!(a.current().reason(), "low on disk");
        assert!(!a.check(10, Some(5000), false).disk, "the monitor clears it");
    }

    #[test]
    fn measurements_work_here() {
        assert!(resident_memory() > 0);
        assert!(total_memory().is_some());
        assert!(free_disk(&std::env::temp_dir()).is_some());
    }
}
