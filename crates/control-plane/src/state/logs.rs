//! CloudWatch Logs' room in the state: log groups and streams of every account, the
//! metadata only. Events live in `logstore`'s segment files, found by each stream's
//! [`LogStream::store_id`]; what a stream holds (bytes, event times) is read from there,
//! so a `PutLogEvents` commits nothing here.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use model::logs::{LogGroupName, LogStreamName, RetentionDays};
use model::Scope;
use store::{Mutation, Record, StoreError};

use super::{decode, encode, put_or_delete};

/// A log group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogGroup {
    pub scope: Scope,
    pub name: LogGroupName,
    /// Milliseconds since the epoch.
    pub creation_time: i64,
    pub retention: Option<RetentionDays>,
    pub tags: BTreeMap<String, String>,
}

/// A log stream as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogStream {
    pub scope: Scope,
    pub group: LogGroupName,
    pub name: LogStreamName,
    pub creation_time: i64,
    /// The stream's directory in the log store: new for every creation, so a stream
    /// created again under a deleted one's name never sees the old events.
    pub store_id: u128,
}

/// Which record changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogsKey {
    Group(Scope, LogGroupName),
    Stream(Scope, LogGroupName, LogStreamName),
}

pub type StreamKey = (Scope, LogGroupName, LogStreamName);

/// The log groups and streams of every account.
#[derive(Debug, Clone, Default)]
pub struct LogsState {
    pub groups: OrdMap<(Scope, LogGroupName), Arc<LogGroup>>,
    pub streams: OrdMap<StreamKey, Arc<LogStream>>,
}

const GROUPS: &str = "logs.groups";
const STREAMS: &str = "logs.streams";

impl LogsState {
    /// The streams of one group, in name order.
    pub fn group_streams<'a>(
        &'a self,
        scope: &Scope,
        group: &LogGroupName,
    ) -> impl Iterator<Item = &'a Arc<LogStream>> + 'a {
        // "\0" is the smallest valid stream name.
        let lo = LogStreamName::parse("\0").expect("a valid name");
        let (s, g) = (scope.clone(), group.clone());
        self.streams
            .range((scope.clone(), group.clone(), lo)..)
            .take_while(move |((ks, kg, _), _)| *ks == s && *kg == g)
            .map(|(_, v)| v)
    }

    /// The store mutation that makes `key` durable as it now is.
    pub(crate) fn mutation(&self, key: &LogsKey) -> Mutation {
        let (table, key, value) = match key {
            LogsKey::Group(s, g) => (
                GROUPS,
                format!("{}/{}/{g}", s.account, s.region),
                self.groups.get(&(s.clone(), g.clone())).map(|v| encode(v.as_ref())),
            ),
            // Group names hold no ':', so the key is unique.
            LogsKey::Stream(s, g, n) => (
                STREAMS,
                format!("{}/{}/{g}:{n}", s.account, s.region),
                self.streams.get(&(s.clone(), g.clone(), n.clone())).map(|v| encode(v.as_ref())),
            ),
        };
        put_or_delete(table, key, value)
    }

    /// Loads one record of a `logs.` table: the record's key, or `None` for a table this
    /// module does not own.
    pub(crate) fn load(&mut self, r: &Record) -> std::result::Result<Option<LogsKey>, StoreError> {
        Ok(Some(match r.table.as_str() {
            GROUPS => {
                let v: LogGroup = decode(r)?;
                let key = LogsKey::Group(v.scope.clone(), v.name.clone());
                self.groups.insert((v.scope.clone(), v.name.clone()), Arc::new(v));
                key
            }
            STREAMS => {
                let v: LogStream = decode(r)?;
                let key = LogsKey::Stream(v.scope.clone(), v.group.clone(), v.name.clone());
                self.streams.insert((v.scope.clone(), v.group.clone(), v.name.clone()), Arc::new(v));
                key
            }
            _ => return Ok(None),
        }))
    }

    /// Forgets what `key` names (its record was deleted).
    pub(crate) fn forget(&mut self, key: &LogsKey) {
        match key {
            LogsKey::Group(s, g) => drop(self.groups.remove(&(s.clone(), g.clone()))),
            LogsKey::Stream(s, g, n) => drop(self.streams.remove(&(s.clone(), g.clone(), n.clone()))),
        };
    }
}
