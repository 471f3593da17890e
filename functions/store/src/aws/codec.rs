//! Attribute values to typed fields and back, and the expiry check every read makes.

use crate::corrupt;
use aula_domain::inventory::RecordKind;
use aula_domain::ports::*;
use aula_domain::*;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(super) fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}
/// The sort-key range of every key that starts with `p` ("~" sorts after every key character used).
pub(super) fn prefix(p: &str) -> Option<(String, String)> {
    Some((p.to_owned(), format!("{p}~")))
}
pub(super) fn padded(t: Timestamp) -> String {
    format!("{:015}", t.millis().max(0))
}

pub(super) fn item<const N: usize>(kind: RecordKind, attrs: [(&str, AttributeValue); N]) -> Item {
    let mut m: Item = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    m.insert("kind".into(), s(kind.name()));
    m
}

/// Reads typed fields out of an item; anything missing or malformed is `Corrupt`.
pub(super) struct Fields<'a> {
    item: &'a Item,
    kind: &'static str,
}

impl<'a> Fields<'a> {
    pub(super) fn of(item: &'a Item, kind: RecordKind) -> Self {
        Fields {
            item,
            kind: kind.name(),
        }
    }
    pub(super) fn corrupt(&self, what: String) -> StoreError {
        corrupt(self.kind)(what)
    }
    pub(super) fn opt_str(&self, name: &str) -> StoreResult<Option<&'a str>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }
    pub(super) fn str(&self, name: &str) -> StoreResult<&'a str> {
        self.opt_str(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }
    pub(super) fn parse<T>(
        &self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> StoreResult<T> {
        f(self.str(name)?).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }
    pub(super) fn opt_num<T: std::str::FromStr>(&self, name: &str) -> StoreResult<Option<T>> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name} is not a number in range"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
        }
    }
    pub(super) fn num<T: std::str::FromStr>(&self, name: &str) -> StoreResult<T> {
        self.opt_num(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }
    pub(super) fn ts(&self, name: &str) -> StoreResult<Timestamp> {
        self.num(name).map(Timestamp::from_millis)
    }
    pub(super) fn expiry(&self) -> StoreResult<Expiry> {
        self.num("expires_at").map(Expiry::from_epoch_secs)
    }
    pub(super) fn bool(&self, name: &str) -> StoreResult<bool> {
        match self.item.get(name) {
            Some(AttributeValue::Bool(v)) => Ok(*v),
            _ => Err(self.corrupt(format!("{name} is not a boolean"))),
        }
    }
}

/// Whether an item may be served at `now`. Items without an expiry never expire.
pub(super) fn is_live(item: &Item, now: Timestamp) -> bool {
    match item.get("expires_at") {
        Some(AttributeValue::N(v)) => v
            .parse::<i64>()
            .is_ok_and(|secs| Expiry::from_epoch_secs(secs).is_live_at(now)),
        Some(_) => false,
        None => true,
    }
}

pub(super) fn live<T>(
    items: Vec<Item>,
    now: Timestamp,
    from: fn(&Item) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    items.iter().filter(|i| is_live(i, now)).map(from).collect()
}
