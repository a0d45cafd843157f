//! # warren-perf
//!
//! A PerfTest-style AMQP 0-9-1 load generator with a lean client built on `warren-codec`, so
//! that the tool, not the broker, is never what limits the figure: publishes are pipelined and
//! written in batches, deliveries are parsed in place from a large read buffer, acks are
//! coalesced. Every body carries a send timestamp, a producer id and a sequence number; the
//! run reports publish/consume rates, end-to-end latency percentiles, confirmed and consumed
//! counts, and lost or duplicated messages.
//!
//! ## Layout
//! - [`config`]: flags and the topology they imply.
//! - [`uri`]: `amqp://` URI parsing.
//! - [`body`]: the 16-byte stamp at the front of every body.
//! - [`accounting`]: pure sequence and confirm tracking (lost / duplicate / out-of-order).
//! - [`client`]: handshake, setup RPCs and the zero-copy frame scanner.
//! - [`producer`], [`consumer`]: the hot loops.
//! - [`stats`]: shared counters, histograms, process CPU time.
//! - [`engine`]: one whole run; [`report`]: its summary.
//!
//! Use as a library: `warren_perf::run(config, false).await` returns a [`Report`].

pub mod accounting;
pub mod body;
pub mod client;
pub mod config;
pub mod consumer;
pub mod engine;
pub mod producer;
pub mod report;
pub mod stats;
pub mod uri;

pub use config::{ExchangeType, Pacing, PerfConfig};
pub use engine::run;
pub use report::Report;
