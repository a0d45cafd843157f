//! `amqp://user:pass@host:port/vhost` parsing, with percent-decoding of the user, password and
//! vhost (`%2f` is `/`, RabbitMQ's default vhost; an empty path also means `/`).

use std::fmt;

/// A parsed AMQP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    /// User name.
    pub user: String,
    /// Password.
    pub pass: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Virtual host.
    pub vhost: String,
}

impl AmqpUri {
    /// Parses `amqp://[user[:pass]@]host[:port][/vhost]`.
    pub fn parse(s: &str) -> Result<AmqpUri, String> {
        let rest = s
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("{s}: not an amqp:// URI"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(u) => match u.find(':') {
                Some(i) => (decode(&u[..i])?, decode(&u[i + 1..])?),
                None => (decode(u)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = match hostport.rfind(':') {
            Some(i) if !hostport.ends_with(']') => {
                let port = hostport[i + 1..].parse().map_err(|_| format!("{s}: bad port"))?;
                (&hostport[..i], port)
            }
            _ => (hostport, 5672),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) => decode(p)?,
        };
        Ok(AmqpUri {
            user,
            pass,
            host: host.to_string(),
            port,
            vhost,
        })
    }
}

impl fmt::Display for AmqpUri {
    /// The URI without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vhost = self.vhost.replace('%', "%25").replace('/', "%2f");
        write!(f, "amqp://{}@{}:{}/{}", self.user, self.host, self.port, vhost)
    }
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("{s}: bad percent-escape"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("{s}: bad percent-escape"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_uri() {
        let u = AmqpUri::parse("amqp://bob:p%40ss@127.0.0.1:5673/%2f").unwrap();
        assert_eq!(
            u,
            AmqpUri {
                user: "bob".into(),
                pass: "p@ss".into(),
                host: "127.0.0.1".into(),
                port: 5673,
                vhost: "/".into()
            }
        );
        assert_eq!(u.to_string(), "amqp://bob@127.0.0.1:5673/%2f");
    }

    #[test]
    fn defaults() {
        let u = AmqpUri::parse("amqp://localhost").unwrap();
        assert_eq!(
            (u.user.as_str(), u.pass.as_str(), u.port, u.vhost.as_str()),
            ("guest", "guest", 5672, "/")
        );
        assert_eq!(AmqpUri::parse("amqp://h/prod").unwrap().vhost, "prod");
        assert!(AmqpUri::parse("http://h").is_err());
        assert!(AmqpUri::parse("amqp://h:x").is_err());
    }
}
