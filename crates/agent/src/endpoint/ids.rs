//! The ids in the task endpoint's paths: `<port>-<32 hex digits>`.
//!
//! The hex part is 128 random bits, so a container cannot guess another task's id; it is
//! the only thing that lets a caller read a task's metadata or credentials. The port is
//! the owning agent's own endpoint port: the agent holding the host's shared port reads
//! it to forward a request for a task it does not run (see `forward`). Parsing is strict
//! (no sign, no leading zero, lowercase hex of exactly 32 digits), so an id has exactly
//! one spelling and nothing else in a path can pass for one.

use std::fmt;

/// A task endpoint id: the owning agent's port and 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointId {
    port: u16,
    secret: u128,
}

/// A path segment that is not an endpoint id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a task endpoint id")]
pub struct InvalidId;

impl EndpointId {
    /// A fresh id for an agent whose endpoint listens on `port`.
    pub fn random(port: u16) -> EndpointId {
        EndpointId { port, secret: rand::random() }
    }

    /// The owning agent's endpoint port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn parse(text: &str) -> Result<EndpointId, InvalidId> {
        let (port, secret) = text.split_once('-').ok_or(InvalidId)?;
        let digits_only = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || port.starts_with('0') {
            return Err(InvalidId);
        }
        let port: u16 = port.parse().map_err(|_| InvalidId)?;
        let lower_hex = secret.len() == 32 && secret.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex {
            return Err(InvalidId);
        }
        let secret = u128::from_str_radix(secret, 16).map_err(|_| InvalidId)?;
        Ok(EndpointId { port, secret })
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:032x}", self.port, self.secret)
    }
}

impl fmt::Debug for EndpointId {
    // The id is a capability: a log line names only its port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointId({}-…)", self.port)
    }
}

impl std::str::FromStr for EndpointId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EndpointId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_carry_their_port() {
        let id = EndpointId::random(40123);
        let text = id.to_string();
        assert_eq!(text.len(), "40123-".len() + 32);
        assert!(text.starts_with("40123-"));
        assert_eq!(EndpointId::parse(&text), Ok(id));
        assert_eq!(id.port(), 40123);
        assert_ne!(EndpointId::random(40123), id, "random");
        assert!(!format!("{id:?}").contains(&text[6..]), "Debug hides the secret");
        let zero = EndpointId { port: 1, secret: 0 };
        assert_eq!(zero.to_string(), format!("1-{}", "0".repeat(32)));
    }

    #[test]
    fn anything_but_the_one_spelling_is_refused() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(EndpointId::parse(&format!("65535-{hex}")).is_ok());
        for bad in [
            String::new(),
            hex.to_string(),
            format!("-{hex}"),
            format!("0-{hex}"),
            format!("080-{hex}"),
            format!("+80-{hex}"),
            format!("65536-{hex}"),
            format!("123456-{hex}"),
            format!("80-{}", hex.to_uppercase()),
            format!("80-{}", &hex[1..]),
            format!("80-{hex}0"),
            format!("80-{hex}/task"),
            format!("80--{}", &hex[1..]),
            format!("80-{}g", &hex[1..]),
            format!("80 -{hex}"),
        ] {
            assert_eq!(EndpointId::parse(&bad), Err(InvalidId), "{bad:?}");
        }
    }
}
