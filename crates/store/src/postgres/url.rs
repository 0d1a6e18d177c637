//! `postgres://` URLs: parsed once, shown without their password.

use std::fmt;
use std::str::FromStr;

/// A PostgreSQL connection URL (`postgres://user[:password]@host[:port]/database`, with
/// libpq's query parameters) that tokio-postgres accepts. Its `Display` hides the
/// password, so it can go into logs and error messages.
#[derive(Clone)]
pub struct PgUrl {
    text: String,
    config: tokio_postgres::Config,
}

impl PgUrl {
    /// Parses `text`; only the URL form is accepted (not libpq's `key=value` form), so that
    /// a store location is either a URL or a path, never ambiguous.
    pub fn parse(text: &str) -> Result<PgUrl, String> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(format!("'{text}' is not a postgres:// URL"));
        }
        let config = tokio_postgres::Config::from_str(text).map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        if config.get_dbname().is_none() {
            return Err("the PostgreSQL URL names no database (postgres://user@host:port/database)".into());
        }
        if config.get_user().is_none() {
            return Err("the PostgreSQL URL names no user (postgres://user@host:port/database)".into());
        }
        Ok(PgUrl { text: text.to_string(), config })
    }

    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl FromStr for PgUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PgUrl::parse(s)
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://[user[:password]@]rest: the password is the part of the user info after
        // the first ':' (user names cannot hold an unescaped ':').
        let (scheme, rest) = self.text.split_once("://").unwrap_or(("postgres", &self.text));
        match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                write!(f, "{scheme}://{user}:***@{host}")
            }
            _ => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = PgUrl::parse("postgres://berth:s3cret@db.example:5433/berth?connect_timeout=3").unwrap();
        assert_eq!(url.to_string(), "postgres://berth:***@db.example:5433/berth?connect_timeout=3");
        assert!(!format!("{url:?}").contains("s3cret"));
        let plain = PgUrl::parse("postgresql://berth@db/berth").unwrap();
        assert_eq!(plain.to_string(), "postgresql://berth@db/berth");
    }

    #[test]
    fn refuses_what_is_not_a_complete_url() {
        for bad in [
            "host=db user=berth",
            "/var/lib/berth.db",
            "postgres://db:5432/berth",
            "postgres://berth@db",
            "postgres://berth@db:notaport/x",
        ] {
            assert!(PgUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
