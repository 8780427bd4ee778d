//! The claims a route's rules name, read from a token's payload for the rules alone: one pass over
//! the JSON in which every other claim is skipped without being built into a value.

use super::check::Reads;
use super::facts::Caller;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// The claims the rules name, when the identity carries none decoded; `None` when it does (they
/// are borrowed from it), or the rules name none, or the payload is not a JSON object.
pub fn named_claims(caller: &dyn Caller, reads: &Reads) -> Option<Value> {
    if caller.claims().is_some() || reads.claim_names.is_empty() {
        return None;
    }
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(caller.payload())
        .ok()?;
    let mut de = serde_json::Deserializer::from_slice(&json);
    let named = Named(&reads.claim_names).deserialize(&mut de).ok()?;
    Some(Value::Object(named))
}

/// Keeps the members of a JSON object whose names are in the set.
struct Named<'n>(&'n BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for Named<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Named<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(Name(name)) = m.next_key::<Name<'de>>()? {
            if self.0.contains(name.as_ref()) {
                out.insert(name.into_owned(), m.next_value()?);
            } else {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// A member's name, borrowed from the payload unless it was written with escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}
