//! Users and SASL: PLAIN and AMQPLAIN responses, and password hashes in RabbitMQ's
//! `rabbit_password_hashing_sha256` format (base64 of a 4-byte salt followed by
//! SHA-256(salt ‖ password)), so hashes from a RabbitMQ definitions file work. Also the
//! per-user-per-vhost permissions (RabbitMQ's `configure` / `write` / `read` regexes).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The three kinds of access RabbitMQ checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Declare / delete.
    Configure,
    /// Publish to an exchange; bind to a queue or destination exchange.
    Write,
    /// Consume / get / purge a queue; bind from an exchange.
    Read,
}

/// A user's permissions on one vhost: three regexes matched like RabbitMQ matches them
/// (Erlang `re:run`, unanchored: `.*` grants everything, `^$` nothing; an empty string
/// grants nothing).
#[derive(Debug, Clone)]
pub struct Permission {
    /// Configure regex source.
    pub configure: String,
    /// Write regex source.
    pub write: String,
    /// Read regex source.
    pub read: String,
    compiled: Arc<[Option<regex::Regex>; 3]>,
}

impl Permission {
    /// Compiles the three regexes; the error names the bad one.
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, String> {
        let compile = |what: &str, s: &str| -> Result<Option<regex::Regex>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            regex::Regex::new(s)
                .map(Some)
                .map_err(|e| format!("invalid {what} regex '{s}': {e}"))
        };
        Ok(Permission {
            compiled: Arc::new([
                compile("configure", configure)?,
                compile("write", write)?,
                compile("read", read)?,
            ]),
            configure: configure.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        })
    }

    /// Full access (`.*` three times).
    pub fn all() -> Permission {
        Permission::new(".*", ".*", ".*").expect("literal regexes")
    }

    /// Whether `access` to the resource `name` is granted.
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let i = match access {
            Access::Configure => 0,
            Access::Write => 1,
            Access::Read => 2,
        };
        self.compiled[i].as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// A user's topic permission on one exchange of a vhost (RabbitMQ's topic authorisation):
/// `write` is matched against the routing keys of messages published to that exchange,
/// `read` against the binding keys of bindings from it; only topic exchanges are checked.
/// `{username}` and `{vhost}` in the regexes are replaced by the user's name and the vhost
/// before compiling (plain text replacement, as RabbitMQ's `expand_topic_permission`); an empty
/// regex means `^$` (only the empty key), as in RabbitMQ.
#[derive(Debug, Clone)]
pub struct TopicPermission {
    /// Exchange name.
    pub exchange: String,
    /// Write regex source (unexpanded).
    pub write: String,
    /// Read regex source (unexpanded).
    pub read: String,
    compiled: Arc<[regex::Regex; 2]>,
}

impl TopicPermission {
    /// Expands and compiles the two regexes for `user` on `vhost`; the error names the bad one.
    pub fn new(user: &str, vhost: &str, exchange: &str, write: &str, read: &str) -> Result<Self, String> {
        let compile = |what: &str, s: &str| -> Result<regex::Regex, String> {
            let s = if s.is_empty() { "^$" } else { s };
            let expanded = s.replace("{username}", user).replace("{vhost}", vhost);
            regex::Regex::new(&expanded).map_err(|e| format!("invalid {what} regex '{s}': {e}"))
        };
        Ok(TopicPermission {
            compiled: Arc::new([compile("write", write)?, compile("read", read)?]),
            exchange: exchange.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        })
    }

    /// Whether `access` (write or read; configure is not a topic permission) to routing key
    /// `key` is granted.
    pub fn allows(&self, access: Access, key: &str) -> bool {
        match access {
            Access::Write => self.compiled[0].is_match(key),
            Access::Read => self.compiled[1].is_match(key),
            Access::Configure => true,
        }
    }
}

/// The user database and the permissions of each user on each vhost.
#[derive(Debug)]
pub struct Users {
    users: RwLock<HashMap<String, User>>,
    perms: RwLock<HashMap<(String, String), Permission>>,
    /// (user, vhost) → topic permissions, one per exchange.
    topic: RwLock<HashMap<(String, String), Vec<TopicPermission>>>,
    generation: AtomicU64,
}

impl Users {
    /// A database holding the default user (an administrator).
    pub fn new(default_user: &str, default_pass: &str) -> Users {
        let u = Users {
            users: RwLock::new(HashMap::new()),
            perms: RwLock::new(HashMap::new()),
            topic: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        };
        u.put(User {
            name: default_user.to_string(),
            password_hash: hash_password(default_pass),
            tags: vec!["administrator".into()],
        });
        u.set_permission(default_user, "/", Permission::all());
        u
    }

    /// Adds or replaces a user.
    pub fn put(&self, user: User) {
        self.users.write().insert(user.name.clone(), user);
        self.bump();
    }

    /// Deletes a user and its permissions. False if it did not exist.
    pub fn delete(&self, name: &str) -> bool {
        let existed = self.users.write().remove(name).is_some();
        self.perms.write().retain(|(u, _), _| u != name);
        self.topic.write().retain(|(u, _), _| u != name);
        self.bump();
        existed
    }

    /// Forgets every user and permission (before replaying a persisted user database).
    pub fn clear(&self) {
        self.users.write().clear();
        self.perms.write().clear();
        self.topic.write().clear();
        self.bump();
    }

    /// Sets `user`'s permissions on `vhost`.
    pub fn set_permission(&self, user: &str, vhost: &str, p: Permission) {
        self.perms
            .write()
            .insert((user.to_string(), vhost.to_string()), p);
        self.bump();
    }

    /// Clears `user`'s permissions on `vhost`. False if there were none.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> bool {
        let r = self
            .perms
            .write()
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some();
        self.bump();
        r
    }

    /// Clears every user's permissions on `vhost` (the vhost was deleted).
    pub fn clear_vhost(&self, vhost: &str) {
        self.perms.write().retain(|(_, v), _| v != vhost);
        self.topic.write().retain(|(_, v), _| v != vhost);
        self.bump();
    }

    /// Sets `user`'s topic permission on one exchange of `vhost` (replacing the one for that
    /// exchange, if any).
    pub fn set_topic_permission(&self, user: &str, vhost: &str, p: TopicPermission) {
        let mut t = self.topic.write();
        let list = t.entry((user.to_string(), vhost.to_string())).or_default();
        list.retain(|x| x.exchange != p.exchange);
        list.push(p);
        list.sort_by(|a, b| a.exchange.cmp(&b.exchange));
        drop(t);
        self.bump();
    }

    /// Clears `user`'s topic permissions on `vhost` (all, or only `exchange`'s). False if
    /// there were none.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) -> bool {
        let key = (user.to_string(), vhost.to_string());
        let mut t = self.topic.write();
        let removed = match (t.get_mut(&key), exchange) {
            (None, _) => false,
            (Some(_), None) => t.remove(&key).is_some(),
            (Some(list), Some(x)) => {
                let before = list.len();
                list.retain(|p| p.exchange != x);
                let removed = list.len() != before;
                if list.is_empty() {
                    t.remove(&key);
                }
                removed
            }
        };
        drop(t);
        self.bump();
        removed
    }

    /// `user`'s topic permissions on `vhost`, sorted by exchange.
    pub fn topic_permissions_of(&self, user: &str, vhost: &str) -> Vec<TopicPermission> {
        self.topic
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every (user, vhost, topic permission), sorted by user, vhost and exchange.
    pub fn topic_permissions(&self) -> Vec<(String, String, TopicPermission)> {
        let mut v: Vec<_> = self
            .topic
            .read()
            .iter()
            .flat_map(|((u, vh), ps)| ps.iter().map(|p| (u.clone(), vh.clone(), p.clone())))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1, &a.2.exchange).cmp(&(&b.0, &b.1, &b.2.exchange)));
        v
    }

    /// `user`'s permissions on `vhost`.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<Permission> {
        self.perms
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }

    /// Every (user, vhost, permission), sorted by user then vhost.
    pub fn permissions(&self) -> Vec<(String, String, Permission)> {
        let mut v: Vec<_> = self
            .perms
            .read()
            .iter()
            .map(|((u, vh), p)| (u.clone(), vh.clone(), p.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Changes with every user or permission update: connections cache permission decisions
    /// and re-read them when this moves (one atomic load per check).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
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
    fn permissions_match_like_rabbitmq() {
        let p = Permission::new("^$", "^amq\\.default$|^out-", ".*").unwrap();
        assert!(!p.allows(Access::Configure, "q"));
        assert!(p.allows(Access::Write, "amq.default"));
        assert!(p.allows(Access::Write, "out-1"));
        assert!(!p.allows(Access::Write, "in-1"));
        assert!(p.allows(Access::Read, "anything"));
        // Unanchored, like Erlang's re:run.
        let p = Permission::new("foo", "", ".*").unwrap();
        assert!(p.allows(Access::Configure, "xfoox"));
        assert!(!p.allows(Access::Write, "foo"), "an empty regex grants nothing");
        assert!(Permission::new("(", ".*", ".*").is_err());
        let u = Users::new("admin", "pw");
        assert!(u.permission("admin", "/").is_some());
        let g = u.generation();
        u.clear_permission("admin", "/");
        assert!(u.permission("admin", "/").is_none());
        assert!(u.generation() > g);
    }

    #[test]
    fn topic_permissions_expand_variables_like_rabbitmq() {
        let p = TopicPermission::new("alice", "prod", "amq.topic", "^{username}\\.", "^{vhost}-.*").unwrap();
        assert!(p.allows(Access::Write, "alice.x"));
        assert!(!p.allows(Access::Write, "bob.x"));
        assert!(p.allows(Access::Read, "prod-1"));
        assert!(!p.allows(Access::Read, "dev-1"));
        // An empty regex is `^$`: only the empty key.
        let p = TopicPermission::new("u", "/", "x", "", ".*").unwrap();
        assert!(p.allows(Access::Write, ""));
        assert!(!p.allows(Access::Write, "a"));
        assert!(TopicPermission::new("u", "/", "x", "(", "").is_err());
        let u = Users::new("admin", "pw");
        u.set_topic_permission(
            "admin",
            "/",
            TopicPermission::new("admin", "/", "b", ".*", ".*").unwrap(),
        );
        u.set_topic_permission(
            "admin",
            "/",
            TopicPermission::new("admin", "/", "a", "^$", ".*").unwrap(),
        );
        u.set_topic_permission(
            "admin",
            "/",
            TopicPermission::new("admin", "/", "a", "x", ".*").unwrap(),
        );
        let ps = u.topic_permissions_of("admin", "/");
        assert_eq!(
            ps.iter().map(|p| p.exchange.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(ps[0].write, "x");
        assert!(u.clear_topic_permissions("admin", "/", Some("a")));
        assert!(!u.clear_topic_permissions("admin", "/", Some("a")));
        assert_eq!(u.topic_permissions().len(), 1);
        u.delete("admin");
        assert!(u.topic_permissions().is_empty());
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
