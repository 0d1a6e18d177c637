//! Opaque `nextToken` pagination over ordered keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, Result};

/// Where a page starts and how long it is.
#[derive(Debug, Clone)]
pub struct Page {
    max: usize,
    after: Option<String>,
}

const TOKEN_PREFIX: &str = "berth1:";

impl Page {
    /// Checks `maxResults` against `1..=limit` (absent means `limit`) and decodes the token.
    pub fn parse(max_results: Option<i32>, token: Option<&str>, limit: i32) -> Result<Page> {
        let max = match max_results {
            None => limit,
            Some(m) if (1..=limit).contains(&m) => m,
            Some(m) => return Err(Error::parameter(format!("maxResults must be between 1 and {limit}; got {m}."))),
        };
        let after = match token {
            None => None,
            Some(t) => {
                let bad = || {
                    Error::parameter("The nextToken is not valid; pass the nextToken of a previous response unchanged.")
                };
                let bytes = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
                let text = String::from_utf8(bytes).map_err(|_| bad())?;
                Some(text.strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?.to_string())
            }
        };
        Ok(Page { max: max as usize, after })
    }

    /// Takes one page from `items`, which come ordered by key (descending if `desc`).
    pub fn take<T>(&self, items: impl Iterator<Item = (String, T)>, desc: bool) -> (Vec<T>, Option<String>) {
        let mut out = Vec::new();
        let mut last = None;
        let mut more = false;
        for (key, item) in items {
            if let Some(after) = &self.after {
                let past = if desc { key.as_str() < after.as_str() } else { key.as_str() > after.as_str() };
                if !past {
                    continue;
                }
            }
            if out.len() == self.max {
                more = true;
                break;
            }
            last = Some(key);
            out.push(item);
        }
        let token = if more { last.map(|k| URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{k}"))) } else { None };
        (out, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("k{i:03}"), i)).collect()
    }

    #[test]
    fn walks_all_pages_in_both_directions() {
        for desc in [false, true] {
            let mut items = keys(25);
            if desc {
                items.reverse();
            }
            let mut seen = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = Page::parse(Some(10), token.as_deref(), 100).unwrap();
                let (got, next) = page.take(items.clone().into_iter(), desc);
                seen.extend(got);
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            let expected: Vec<usize> = items.iter().map(|(_, i)| *i).collect();
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Page::parse(Some(0), None, 100).is_err());
        assert!(Page::parse(Some(101), None, 100).is_err());
        assert!(Page::parse(None, Some("not a token"), 100).is_err());
        assert!(Page::parse(None, Some(&URL_SAFE_NO_PAD.encode("x")), 100).is_err());
    }
}
