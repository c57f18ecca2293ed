//! Strict JSON: one value, no trailing bytes, and no duplicate member names
//! at any depth (two parsers that pick different duplicates are a classic
//! confused-deputy bug). Used for the credential and for STS's JSON answer.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::quote;

/// Parses `bytes` as one JSON value, refusing duplicate member names.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(value) = Strict::deserialize(&mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A [`Value`] whose objects had no duplicate members.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = access.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut seen = BTreeMap::new();
        while let Some((key, Strict(value))) = access.next_entry::<String, Strict>()? {
            if seen.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate member {}",
                    quote(&key)
                )));
            }
            seen.insert(key, value);
        }
        Ok(Value::Object(seen.into_iter().collect::<Map<_, _>>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_duplicates_at_any_depth() {
        let v = parse(br#"{"a":[1,-2,1.5,true,null,{"b":"c"}]}"#).unwrap();
        assert_eq!(v, serde_json::json!({"a":[1,-2,1.5,true,null,{"b":"c"}]}));
        for (text, needle) in [
            (r#"{"a":1,"a":2}"#, "duplicate member `a`"),
            (r#"{"x":[{"k":1,"k":1}]}"#, "duplicate member `k`"),
            (r#"{"a":1} {}"#, "trailing characters"),
            (r#"{"a":1"#, "EOF"),
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
