//! How a broker comes back from its data directory, and how its definitions are written
//! back compacted: opening the store, replaying the definitions log (users, permissions and
//! vhosts, policies, then topology methods, in order), recovering every durable queue's
//! messages, quarantining queue directories no definition names, re-attaching one on
//! request, and the snapshot of every durable definition that replaces the log at start.
//!
//! It sits above the broker, the vhost service and the access and policy operations, and is
//! the only module that drives all of them at once.

use std::sync::Arc;

use bytes::Bytes;
use warren_codec::methods::*;
use warren_codec::{Method, ShortStr};

use crate::broker::Broker;
use crate::config::Config;
use crate::persist::{
    Persistence, QUARANTINE_DIR, dir_definition, encode_definition, queue_dir, queue_record,
};

impl Broker {
    /// Opens the durable store under `config.data_dir`, replays definitions, recovers every
    /// durable queue's messages and compacts the definitions log.
    pub fn open(config: Config) -> Result<Arc<Broker>, String> {
        let (p, records) = Persistence::open(&config.data_dir, config.store_fs.clone())
            .map_err(|e| format!("cannot open store in {}: {e}", config.data_dir.display()))?;
        let broker = Broker::build(config, Some(Arc::new(p)));
        let n = records.len();
        broker.replay_definitions(records);
        let mut recovered = 0;
        for v in broker.vhosts() {
            for q in v.open_recovered_queues() {
                recovered += q.counts().ready as u64;
            }
        }
        let snapshot = snapshot(&broker);
        if let Some(p) = &broker.persistence {
            p.rewrite(&snapshot);
            let live = broker.durable_queue_dirs();
            // Never deleted: a directory no definition names (a damaged or lost definitions
            // log) is moved to quarantine/, where it can be re-attached.
            crate::persist::quarantine_unknown(p, &live);
            crate::persist::log_recovery_summary(p);
        }
        tracing::info!(
            definitions = n,
            compacted = snapshot.len(),
            messages = recovered,
            "store opened"
        );
        Ok(broker)
    }

    /// Applies definitions-log records (access records, then topology methods) in order.
    pub fn replay_definitions(&self, records: Vec<bytes::Bytes>) {
        // Once the log holds the user database, it (not the configured default user) decides
        // who may log in: a broker creates its default user on its first start only.
        if records.iter().filter_map(crate::persist::decode_access).any(|a| {
            !crate::policies::is_policy_record(&a)
                && !crate::broker::is_cluster_name_record(&a)
                && !crate::limits::is_record(&a)
        }) {
            self.users.clear();
        }
        for rec in records {
            if let Some(a) = crate::persist::decode_access(&rec) {
                if !self.apply_cluster_name_record(&a)
                    && !crate::policies::apply_record(self, &a)
                    && !crate::limits::apply_record(self, &a)
                {
                    crate::access::apply_record(self, &a);
                }
                continue;
            }
            match crate::persist::decode_definition(&rec) {
                Some((vhost, m)) => replay(self, &vhost, m),
                None => tracing::warn!("undecodable definitions record skipped"),
            }
        }
    }

    /// The queue-log directory names of every queue the definitions name.
    pub fn durable_queue_dirs(&self) -> std::collections::HashSet<String> {
        self.vhosts()
            .iter()
            .flat_map(|v| {
                v.read_topology(|t| {
                    t.queues()
                        .map(|q| crate::persist::queue_dir(&v.name, &q.name))
                        .collect::<Vec<_>>()
                })
            })
            .collect()
    }
}

/// Applies one replayed definitions record to the broker's topology.
pub fn replay(broker: &Broker, vhost: &str, m: Method) {
    let v = broker.add_vhost(vhost);
    let r = v.replay_definition(&m);
    if let Err(e) = r {
        tracing::debug!(
            "definitions replay: {} in vhost {vhost}: {}",
            m.name(),
            e.reply_text()
        );
    }
}

/// Why a re-attach failed: an HTTP status and a reason.
pub type ReattachError = (u16, String);

/// Re-attaches `<data-dir>/quarantine/<dir>`: declares its queue again from the definition
/// copy in the directory and recovers its messages. Returns `(vhost, queue, messages)`.
pub fn reattach(broker: &Broker, dir: &str) -> Result<(String, String, u64), ReattachError> {
    let p = broker
        .persistence
        .as_ref()
        .ok_or((400, "the broker runs without a data directory".to_string()))?;
    if !warren_store::is_valid_queue_name(dir) {
        return Err((400, format!("invalid quarantined directory name '{dir}'")));
    }
    let path = p.data_dir.join(QUARANTINE_DIR).join(dir);
    if !path.is_dir() {
        return Err((404, format!("no quarantined directory '{dir}'")));
    }
    let (vhost, q) = dir_definition(&path).ok_or((
        409,
        format!("'{dir}' holds no intact queue definition; it cannot be re-attached"),
    ))?;
    let v = broker
        .vhost(&vhost)
        .ok_or((404, format!("vhost '{vhost}' does not exist; create it first")))?;
    if v.read_topology(|t| t.queue(&q.queue).is_some()) {
        return Err((
            409,
            format!("queue '{}' already exists in vhost '{vhost}'", q.queue),
        ));
    }
    let target = queue_dir(&vhost, &q.queue);
    p.store
        .restore_queue(&path, &target)
        .map_err(|e| (409, format!("cannot move '{dir}' back: {e}")))?;
    let declared = v.declare_queue(&crate::vhost::recorded_queue(&q), None);
    let (queue, _) = declared.map_err(|e| (400, e.reply_text().to_string()))?;
    let messages = queue.counts().ready as u64;
    tracing::warn!(
        vhost = %vhost,
        queue = %q.queue,
        messages,
        "quarantined queue directory {dir} re-attached"
    );
    Ok((vhost, q.queue.to_string(), messages))
}

/// The durable definitions of every vhost, as records for a compacted log.
pub fn snapshot(broker: &Broker) -> Vec<Bytes> {
    let mut out = crate::access::snapshot_records(broker);
    out.extend(crate::policies::snapshot_records(broker));
    out.extend(broker.cluster_name_snapshot());
    out.extend(crate::limits::snapshot_records(broker));
    for v in broker.vhosts() {
        v.read_topology(|t| snapshot_vhost(&v.name, t, &mut out));
    }
    out
}

/// One vhost's durable definitions, appended to `out` as records.
fn snapshot_vhost(vhost: &str, t: &warren_core::topology::Topology, out: &mut Vec<Bytes>) {
    {
        let durable_x = |name: &str| name.is_empty() || t.exchange(name).is_some_and(|x| x.durable);
        for x in t.exchanges() {
            if x.durable && !x.name.is_empty() && !x.name.starts_with("amq.") {
                let m: Method = ExchangeDeclare {
                    ticket: 0,
                    exchange: x.name.clone(),
                    kind: ShortStr::from(x.kind.name()),
                    passive: false,
                    durable: true,
                    auto_delete: x.auto_delete,
                    internal: x.internal,
                    nowait: false,
                    arguments: x.arguments.clone(),
                }
                .into();
                out.push(encode_definition(vhost, &m));
            }
        }
        for q in t.queues() {
            if q.durable && q.exclusive_owner.is_none() {
                out.push(queue_record(vhost, q));
            }
        }
        for b in t.bindings() {
            if b.source.is_empty() || !durable_x(&b.source) {
                continue;
            }
            let m: Method = if b.destination_is_queue {
                if !t
                    .queue(&b.destination)
                    .is_some_and(|q| q.durable && q.exclusive_owner.is_none())
                {
                    continue;
                }
                QueueBind {
                    ticket: 0,
                    queue: b.destination.clone(),
                    exchange: b.source.clone(),
                    routing_key: b.routing_key.clone(),
                    nowait: false,
                    arguments: b.arguments.clone(),
                }
                .into()
            } else {
                if !durable_x(&b.destination) {
                    continue;
                }
                ExchangeBind {
                    ticket: 0,
                    destination: b.destination.clone(),
                    source: b.source.clone(),
                    routing_key: b.routing_key.clone(),
                    nowait: false,
                    arguments: b.arguments.clone(),
                }
                .into()
            };
            out.push(encode_definition(vhost, &m));
        }
    }
}
