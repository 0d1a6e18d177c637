//! A follower's copy of the state, kept current from the store's change log.
//!
//! The change log names the records each batch touched, and the follower reads their
//! values as they are now: a present record is loaded over what the state held under its
//! key, a missing one was deleted. Record keys are strings the state's rooms make from
//! typed keys; rather than parse them back, the mirror remembers which resource each
//! record it loaded holds ([`Touched`]), which is what a deletion needs to find it.

use std::collections::HashMap;

use store::{Change, Record, StoreError};

use super::{State, Touched};

/// Which resource of the state each stored record holds, by table and key.
#[derive(Debug, Default)]
pub struct Mirror {
    held: HashMap<(String, String), Touched>,
}

impl Mirror {
    /// The state of `records` (every record of the store), and the mirror that follows it.
    pub fn load(records: Vec<Record>) -> Result<(State, Mirror), StoreError> {
        let mut state = State::default();
        let mut mirror = Mirror::default();
        for r in records {
            mirror.put(&mut state, r)?;
        }
        state.ssm.finish_load();
        Ok((state, mirror))
    }

    /// Brings `state` to the records' values in `changes`. On an error (a record this
    /// version cannot read) `state` is partly changed: the caller discards it.
    pub fn apply(&mut self, state: &mut State, changes: Vec<Change>) -> Result<(), StoreError> {
        for c in changes {
            match c.value {
                Some(value) => self.put(state, Record { table: c.table, key: c.key, value })?,
                None => {
                    if let Some(held) = self.held.remove(&(c.table, c.key)) {
                        state.forget(&held);
                    }
                }
            }
        }
        Ok(())
    }

    /// How many records the state holds.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn put(&mut self, state: &mut State, r: Record) -> Result<(), StoreError> {
        if let Some(held) = state.load_record(&r)? {
            self.held.insert((r.table, r.key), held);
        }
        Ok(())
    }
}
