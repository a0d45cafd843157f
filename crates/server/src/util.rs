//! Small stateless helpers shared by every layer: the wall clock in milliseconds (the `now`
//! handed to warren-core) and RabbitMQ-style random names (`amq.gen-…`, `amq.ctag-…`).

use std::time::{SystemTime, UNIX_EPOCH};

use warren_codec::ShortStr;

/// Milliseconds since the epoch (the `now` passed to core).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random suffix in RabbitMQ's style for `amq.gen-…` and `amq.ctag-…` names.
pub fn random_name(prefix: &str) -> ShortStr {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    ShortStr::from(format!("{prefix}{suffix}"))
}
