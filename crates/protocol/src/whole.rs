//! Integer fields that also accept a whole number spelled as a float (`2.0`).
//!
//! JSON Schema's `integer` admits `2.0` (it is the same number as `2`), so a request that the
//! published OpenAPI description allows must not be refused because a client's JSON encoder
//! wrote a whole float. A fraction, or a value out of the type's range, is still an error that
//! says what was expected. Use with `#[serde(default, deserialize_with = "whole::option")]` on
//! `Option<u32>`/`Option<i64>` fields, and [`vec`]/[`vec_of_vecs`] on arrays of them.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// An integer type read through this module.
pub trait Whole: Sized {
    /// What the error message says was expected.
    const EXPECTING: &'static str;
    fn from_i128(v: i128) -> Option<Self>;
}

macro_rules! whole {
    ($($t:ty => $expecting:literal),*) => {$(
        impl Whole for $t {
            const EXPECTING: &'static str = $expecting;
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
whole!(
    u32 => "an integer from 0 to 4294967295",
    u64 => "an integer from 0 to 18446744073709551615",
    i64 => "an integer from -9223372036854775808 to 9223372036854775807"
);

/// 2^53: every integer up to it is exact as an f64.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

struct WholeVisitor<T>(PhantomData<T>);

impl<T: Whole> WholeVisitor<T> {
    fn range_error<E: de::Error>(&self, unexpected: Unexpected<'_>) -> E {
        E::invalid_value(unexpected, self)
    }
}

impl<'de, T: Whole> Visitor<'de> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_i128(i128::from(v)).ok_or_else(|| self.range_error(Unexpected::Unsigned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_i128(i128::from(v)).ok_or_else(|| self.range_error(Unexpected::Signed(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if !v.is_finite() || v.fract() != 0.0 {
            return Err(E::invalid_type(Unexpected::Float(v), &self));
        }
        // Past 2^53 a float no longer holds the integer the client wrote (serde_json reads an
        // integer literal beyond i64/u64 as one): refuse rather than round.
        if v.abs() > EXACT_FLOAT_LIMIT {
            return Err(self.range_error(Unexpected::Float(v)));
        }
        // `as` saturates past i128's range, which no target type holds anyway.
        let n = v as i128;
        T::from_i128(n).ok_or_else(|| self.range_error(Unexpected::Float(v)))
    }
}

/// One integer of type `T` (a whole float accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int<T>(pub T);

impl<'de, T: Whole> Deserialize<'de> for Int<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WholeVisitor(PhantomData)).map(Int)
    }
}

/// `Option<T>`: absent or `null` is `None`.
pub fn option<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Int<T>>::deserialize(d)?.map(|Int(v)| v))
}

/// `Vec<T>`.
pub fn vec<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Vec::<Int<T>>::deserialize(d)?
        .into_iter()
        .map(|Int(v)| v)
        .collect())
}

/// `Vec<Vec<T>>`.
pub fn vec_of_vecs<'de, D: Deserializer<'de>, T: Whole>(d: D) -> Result<Vec<Vec<T>>, D::Error> {
    Ok(Vec::<Vec<Int<T>>>::deserialize(d)?
        .into_iter()
        .map(|inner| inner.into_iter().map(|Int(v)| v).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct S {
        #[serde(default, deserialize_with = "option")]
        n: Option<u32>,
        #[serde(default, deserialize_with = "option")]
        seed: Option<i64>,
    }

    fn parse(s: &str) -> Result<S, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers() {
        assert_eq!(
            parse(r#"{"n": 2.0, "seed": -3.0}"#),
            Ok(S {
                n: Some(2),
                seed: Some(-3)
            })
        );
        assert_eq!(
            parse(r#"{"n": 2, "seed": null}"#),
            Ok(S {
                n: Some(2),
                seed: None
            })
        );
        assert_eq!(
            parse("{}"),
            Ok(S {
                n: None,
                seed: None
            })
        );
        assert_eq!(
            parse(r#"{"n": 4294967295.0}"#).map(|s| s.n),
            Ok(Some(u32::MAX))
        );
    }

    #[test]
    fn fractions_and_out_of_range_values_are_refused_with_the_range() {
        let e = parse(r#"{"n": 2.5}"#).unwrap_err();
        assert!(e.contains("invalid type: floating point `2.5`"), "{e}");
        assert!(
            e.contains("expected an integer from 0 to 4294967295"),
            "{e}"
        );
        let e = parse(r#"{"n": -1}"#).unwrap_err();
        assert!(e.contains("invalid value: integer `-1`"), "{e}");
        let e = parse(r#"{"n": 4294967296.0}"#).unwrap_err();
        assert!(
            e.contains("invalid value: floating point `4294967296.0`"),
            "{e}"
        );
        let e = parse(r#"{"n": "2"}"#).unwrap_err();
        assert!(e.contains("invalid type: string"), "{e}");
        let e = parse(r#"{"seed": 1e300}"#).unwrap_err();
        assert!(e.contains("invalid value"), "{e}");
        // An integer literal just past i64 is read as a float that rounds into range: refused.
        let e = parse(r#"{"seed": -9223372036854775809}"#).unwrap_err();
        assert!(e.contains("invalid value"), "{e}");
        let e = parse(r#"{"seed": 9007199254740994.0}"#).unwrap_err();
        assert!(e.contains("invalid value"), "{e}");
    }

    #[test]
    fn arrays() {
        #[derive(Debug, Deserialize)]
        struct A {
            #[serde(deserialize_with = "vec")]
            one: Vec<u32>,
            #[serde(deserialize_with = "vec_of_vecs")]
            many: Vec<Vec<u32>>,
        }
        let a: A = serde_json::from_str(r#"{"one": [1, 2.0], "many": [[3.0], []]}"#).unwrap();
        assert_eq!(a.one, vec![1, 2]);
        assert_eq!(a.many, vec![vec![3], vec![]]);
        assert!(serde_json::from_str::<A>(r#"{"one": [1.5], "many": []}"#).is_err());
    }
}
