//! Reads from a JSON event only the values a pattern's selectors name. The event is still
//! checked whole (an event that is not JSON matches nothing), but what no selector names
//! is skipped without being built, so a JSON pattern costs one pass over the event and an
//! allocation per selected string rather than a whole `serde_json::Value` tree.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// What a selector found in an event.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Found {
    Missing,
    Null,
    Bool(bool),
    Number(Number),
    Text(String),
    /// An object or an array, which no comparison matches.
    Container,
}

/// The selectors of a pattern as a tree of steps; selector `id` ends at the nodes whose
/// `ends` holds it.
#[derive(Debug, Clone, Default)]
pub(super) struct Tree {
    keys: Vec<(String, Tree)>,
    indices: Vec<(usize, Tree)>,
    ends: Vec<usize>,
    /// The ids ending here or below: what a value met here again (a repeated key)
    /// must forget, since the last occurrence of a key is the one that counts.
    below: Vec<usize>,
}

/// One step of a selector.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

impl Tree {
    pub fn insert(&mut self, steps: &[Step], id: usize) {
        self.below.push(id);
        let Some((first, rest)) = steps.split_first() else {
            self.ends.push(id);
            return;
        };
        let child = match first {
            Step::Key(k) => match self.keys.iter().position(|(key, _)| key == k) {
                Some(i) => &mut self.keys[i].1,
                None => {
                    self.keys.push((k.clone(), Tree::default()));
                    &mut self.keys.last_mut().expect("just pushed").1
                }
            },
            Step::Index(n) => match self.indices.iter().position(|(i, _)| i == n) {
                Some(i) => &mut self.indices[i].1,
                None => {
                    self.indices.push((*n, Tree::default()));
                    &mut self.indices.last_mut().expect("just pushed").1
                }
            },
        };
        child.insert(rest, id);
    }

    /// The values of the selectors `0..count` in `message`, or `None` if it is not JSON.
    pub fn read(&self, count: usize, message: &str) -> Option<Vec<Found>> {
        let mut found = vec![Found::Missing; count];
        let mut de = serde_json::Deserializer::from_str(message);
        Node { tree: self, found: &mut found }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(found)
    }
}

struct Node<'t, 'f> {
    tree: &'t Tree,
    found: &'f mut [Found],
}

impl Node<'_, '_> {
    /// Records the value met here for the selectors ending here (building it only if
    /// there are any), and forgets what an earlier occurrence recorded below.
    fn set(&mut self, value: impl FnOnce() -> Found) {
        for &id in &self.tree.below {
            self.found[id] = Found::Missing;
        }
        if let Some((&last, others)) = self.tree.ends.split_last() {
            let value = value();
            for &id in others {
                self.found[id] = value.clone();
            }
            self.found[last] = value;
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(mut self) -> Result<(), E> {
        self.set(|| Found::Null);
        Ok(())
    }

    fn visit_bool<E>(mut self, v: bool) -> Result<(), E> {
        self.set(|| Found::Bool(v));
        Ok(())
    }

    fn visit_i64<E>(mut self, v: i64) -> Result<(), E> {
        self.set(|| Found::Number(v.into()));
        Ok(())
    }

    fn visit_u64<E>(mut self, v: u64) -> Result<(), E> {
        self.set(|| Found::Number(v.into()));
        Ok(())
    }

    fn visit_f64<E>(mut self, v: f64) -> Result<(), E> {
        // serde_json reads no NaN or infinity, so a number is always there.
        self.set(|| Number::from_f64(v).map_or(Found::Missing, Found::Number));
        Ok(())
    }

    fn visit_str<E>(mut self, v: &str) -> Result<(), E> {
        self.set(|| Found::Text(v.to_string()));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.set(|| Found::Container);
        while let Some(child) = map.next_key_seed(Key(&self.tree.keys))? {
            match child {
                Some(i) => map.next_value_seed(Node { tree: &self.tree.keys[i].1, found: &mut *self.found })?,
                None => map.next_value::<IgnoredAny>().map(drop)?,
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.set(|| Found::Container);
        let mut n = 0;
        loop {
            let more = match self.tree.indices.iter().find(|(i, _)| *i == n) {
                Some((_, tree)) => seq.next_element_seed(Node { tree, found: &mut *self.found })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            n += 1;
        }
    }
}

/// An object's key, compared with the keys the tree wants without being copied.
struct Key<'t>(&'t [(String, Tree)]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(k, _)| k == v))
    }
}
