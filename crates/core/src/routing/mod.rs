//! Routing algorithms for the exchange types that need more than a hash lookup.
//!
//! - [`topic`]: a word trie over binding patterns (`*` = exactly one word, `#` = zero or more
//!   words) with a bounded cache of routing results, matching RabbitMQ's topic exchange.
//! - [`headers`]: RabbitMQ's headers-exchange predicate (`x-match` = `all` / `any` /
//!   `all-with-x` / `any-with-x`) and its binding-argument validation.
//! - [`consistent_hash`]: the weighted hash ring of the `x-consistent-hash` exchange.
//!
//! Both are pure data structures with no IO and no locking; the caller owns synchronisation.

pub mod consistent_hash;
pub mod headers;
pub mod topic;
