//! A published message as the broker holds it: exchange, routing key, properties and body.
//! One `Arc<Message>` is shared by every queue the message is routed to, so fanout to 50
//! queues stores one body.

use std::sync::Arc;

use bytes::Bytes;
use warren_codec::{BasicProperties, FieldValue, ShortStr};

/// An immutable published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Exchange it was published to.
    pub exchange: ShortStr,
    /// Routing key it was published with.
    pub routing_key: ShortStr,
    /// Content properties.
    pub properties: BasicProperties,
    /// Body, shared.
    pub body: Bytes,
    /// Whether the broker dead-lettered this message, so its `x-death` header is the broker's
    /// own history. A client-supplied `x-death` is never interpreted (RabbitMQ 4.x): it passes
    /// through untouched until the broker dead-letters the message and starts its own history.
    pub dead_lettered: bool,
}

/// Shared message handle.
pub type MessageRef = Arc<Message>;

impl Message {
    /// A message with default properties.
    pub fn new(exchange: &str, routing_key: &str, properties: BasicProperties, body: Bytes) -> Self {
        Message {
            exchange: ShortStr::from(exchange),
            routing_key: ShortStr::from(routing_key),
            properties,
            body,
            dead_lettered: false,
        }
    }

    /// Whether delivery-mode is 2.
    pub fn is_persistent(&self) -> bool {
        self.properties.is_persistent()
    }

    /// Body size in bytes (what `x-max-length-bytes` counts).
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    /// A header value, if the message has headers.
    pub fn header(&self, key: &str) -> Option<&FieldValue> {
        self.properties.headers.as_ref()?.get(key)
    }

    /// Per-message TTL from the `expiration` property, in ms. `Err` if present but not a
    /// non-negative integer (RabbitMQ rejects such publishes with 406).
    pub fn expiration_ms(&self) -> Result<Option<u64>, String> {
        match &self.properties.expiration {
            None => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("invalid expiration '{}'", &**s)),
        }
    }

    /// The routing keys of the message: its routing key plus `CC` and `BCC` header entries
    /// (sender-selected distribution).
    pub fn routing_keys(&self) -> Vec<ShortStr> {
        let mut keys = vec![self.routing_key.clone()];
        for h in ["CC", "BCC"] {
            if let Some(FieldValue::Array(items)) = self.header(h) {
                for i in items {
                    if let Some(s) = i.as_str() {
                        keys.push(ShortStr::from(s));
                    }
                }
            }
        }
        keys
    }
}
