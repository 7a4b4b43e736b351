//! Pass-through helpers: a JSON body with only its top-level `model` replaced, the other
//! members kept in their order with their values as sent.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// The members of a JSON object in order, values unparsed.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// `body` (a JSON object) with its top-level `model` set to `model` (added when missing).
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, serde_json::Error> {
    let Members(members) = serde_json::from_slice(body)?;
    let model = serde_json::to_string(model)?;
    let mut out = Vec::with_capacity(body.len() + model.len());
    out.push(b'{');
    let mut seen = false;
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(serde_json::to_string(k)?.as_bytes());
        out.push(b':');
        if k == "model" {
            seen = true;
            out.extend_from_slice(model.as_bytes());
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    if !seen {
        if !members.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"model\":");
        out.extend_from_slice(model.as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_the_model_changes() {
        let body = br#"{"model": "claude-x", "zeta": {"keep":  [1, 2.50]}, "alpha": "\u00e9", "max_tokens": 5}"#;
        let out = with_model(body, "claude-sonnet-4-5").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"claude-sonnet-4-5","zeta":{"keep":  [1, 2.50]},"alpha":"\u00e9","max_tokens":5}"#
        );
        let out = with_model(br#"{"a": 1}"#, "m").unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), r#"{"a":1,"model":"m"}"#);
        assert!(with_model(b"[1]", "m").is_err());
    }
}
