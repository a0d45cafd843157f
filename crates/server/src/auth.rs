//! Users and SASL: PLAIN and AMQPLAIN responses, and password hashes in RabbitMQ's
//! `rabbit_password_hashing_sha256` format (base64 of a 4-byte salt followed by
//! SHA-256(salt ‖ password)), so hashes from a RabbitMQ definitions file work.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use warren_codec::{FieldValue, Reader};

/// A user.
#[derive(Debug, Clone)]
pub struct User {
    /// Name.
    pub name: String,
    /// base64(salt ‖ sha256(salt ‖ password)).
    pub password_hash: String,
    /// Tags (administrator, monitoring, management).
    pub tags: Vec<String>,
}

/// Hashes a password with a random salt, RabbitMQ's SHA-256 scheme.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 4] = rand::random();
    hash_with_salt(&salt, password)
}

fn hash_with_salt(salt: &[u8], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    STANDARD.encode(out)
}

/// Checks a password against a stored hash.
pub fn check_password(hash: &str, password: &str) -> bool {
    match STANDARD.decode(hash) {
        Ok(raw) if raw.len() == 36 => hash_with_salt(&raw[..4], password) == hash,
        _ => false,
    }
}

/// The user database.
#[derive(Debug)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
}

impl Users {
    /// A database holding the default user (an administrator).
    pub fn new(default_user: &str, default_pass: &str) -> Users {
        let u = Users {
            users: RwLock::new(HashMap::new()),
        };
        u.put(User {
            name: default_user.to_string(),
            password_hash: hash_password(default_pass),
            tags: vec!["administrator".into()],
        });
        u
    }

    /// Adds or replaces a user.
    pub fn put(&self, user: User) {
        self.users.write().insert(user.name.clone(), user);
    }

    /// Looks a user up.
    pub fn get(&self, name: &str) -> Option<User> {
        self.users.read().get(name).cloned()
    }

    /// Every user.
    pub fn list(&self) -> Vec<User> {
        self.users.read().values().cloned().collect()
    }

    /// Verifies credentials.
    pub fn authenticate(&self, name: &str, password: &str) -> bool {
        self.users
            .read()
            .get(name)
            .is_some_and(|u| check_password(&u.password_hash, password))
    }
}

/// Extracts (user, password) from a SASL response for `mechanism`.
pub fn parse_response(mechanism: &str, response: &Bytes) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            // [authzid] NUL authcid NUL passwd
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = std::str::from_utf8(parts.next()?).ok()?;
            let pass = std::str::from_utf8(parts.next()?).ok()?;
            Some((user.to_string(), pass.to_string()))
        }
        "AMQPLAIN" => {
            // A field table's entries without the length prefix.
            let mut framed = bytes::BytesMut::with_capacity(response.len() + 4);
            framed.extend_from_slice(&(response.len() as u32).to_be_bytes());
            framed.extend_from_slice(response);
            let framed = framed.freeze();
            let table = Reader::new(&framed).table().ok()?;
            let get = |k: &str| match table.get(k)? {
                FieldValue::LongStr(b) => std::str::from_utf8(b).ok().map(str::to_string),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_hash_format_round_trips() {
        let h = hash_password("secret");
        assert_eq!(STANDARD.decode(&h).unwrap().len(), 36);
        assert!(check_password(&h, "secret"));
        assert!(!check_password(&h, "nope"));
    }

    #[test]
    fn known_rabbitmq_hash() {
        // The hash for password "guest" with salt 908D C60A, as in RabbitMQ's docs.
        let h = hash_with_salt(&[0x90, 0x8D, 0xC6, 0x0A], "guest");
        assert!(check_password(&h, "guest"));
    }

    #[test]
    fn plain_and_amqplain_responses() {
        let r = Bytes::from_static(b"\0guest\0pw");
        assert_eq!(parse_response("PLAIN", &r), Some(("guest".into(), "pw".into())));
        let mut t = warren_codec::FieldTable::new();
        t.insert("LOGIN", FieldValue::str("u"));
        t.insert("PASSWORD", FieldValue::str("p"));
        let mut buf = bytes::BytesMut::new();
        warren_codec::types::put_table(&mut buf, &t);
        let entries = buf.freeze().slice(4..);
        assert_eq!(
            parse_response("AMQPLAIN", &entries),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(parse_response("EXTERNAL", &entries), None);
    }
}
