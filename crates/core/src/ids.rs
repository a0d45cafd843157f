//! The broker-wide identities a queue and the topology refer to: a connection ([`ConnId`]), a
//! channel on it ([`ChannelKey`]), a consumer ([`ConsumerKey`]) and a message's place in the
//! durable store ([`StorePos`]). Each is a newtype so that one cannot be passed for another; a
//! channel key packs its connection and channel number, and only this module knows how.

/// Identifies a connection broker-wide (exclusive queue owners, channel keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Identifies a channel broker-wide: its connection and its channel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey(u64);

impl ChannelKey {
    /// Channel `number` of connection `conn` (connection ids stay below 2^48).
    pub const fn new(conn: ConnId, number: u16) -> ChannelKey {
        ChannelKey((conn.0 << 16) | number as u64)
    }

    /// The connection the channel belongs to.
    pub const fn connection(self) -> ConnId {
        ConnId(self.0 >> 16)
    }

    /// The channel number on its connection.
    pub const fn number(self) -> u16 {
        self.0 as u16
    }
}

/// Identifies a consumer broker-wide (unique for the broker's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsumerKey(pub u64);

impl std::fmt::Display for ConsumerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a message is kept in the durable store: opaque to the queue, meaningful only to the
/// store that handed it out (the server packs the store's segment and offset into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StorePos(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_key_round_trips_connection_and_number() {
        for (conn, n) in [(0, 0), (1, 1), (7, 65_535), ((1 << 48) - 1, 42)] {
            let k = ChannelKey::new(ConnId(conn), n);
            assert_eq!(k.connection(), ConnId(conn));
            assert_eq!(k.number(), n);
        }
        assert_ne!(ChannelKey::new(ConnId(1), 2), ChannelKey::new(ConnId(2), 1));
    }
}
