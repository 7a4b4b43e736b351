//! Feedback wire types (`POST /v1/feedback`): a user scores a request it made, which trains the
//! model selector near that request's prompt.
//!
//! As in [`crate::admin`]: the request body denies unknown fields (the server answers 400 naming
//! the field), the response keeps the fields it does not know in `extra` and defaults the ones
//! that are missing.

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// The longest `comment` accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 4096;

/// `POST /v1/feedback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The gateway's id of the request (its `x-plexus-request-id`), not the client's own.
    #[serde(deserialize_with = "non_empty")]
    pub request_id: String,
    /// A number from 0 (bad) to 1 (good), or `"up"` (1) / `"down"` (0).
    pub score: Score,
    /// At most 4096 characters.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "comment"
    )]
    pub comment: Option<String>,
}

/// A score from 0 (bad) to 1 (good). On the wire: a number in that range, or the thumbs
/// `"up"` (1) and `"down"` (0); it is always written back as a number.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Score(f64);

impl Score {
    pub const UP: Score = Score(1.0);
    pub const DOWN: Score = Score(0.0);
    const EXPECTING: &'static str = "a number from 0 to 1, or \"up\" or \"down\"";

    /// `None` outside [0, 1] (and for NaN).
    pub fn new(v: f64) -> Option<Score> {
        (0.0..=1.0).contains(&v).then_some(Score(v))
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

impl Serialize for Score {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

struct ScoreVisitor;

impl ScoreVisitor {
    fn number<E: de::Error>(&self, v: f64, unexpected: Unexpected<'_>) -> Result<Score, E> {
        Score::new(v).ok_or_else(|| E::invalid_value(unexpected, self))
    }
}

impl Visitor<'_> for ScoreVisitor {
    type Value = Score;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(Score::EXPECTING)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Score, E> {
        self.number(v, Unexpected::Float(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Score, E> {
        self.number(v as f64, Unexpected::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Score, E> {
        self.number(v as f64, Unexpected::Signed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Score, E> {
        match v {
            "up" => Ok(Score::UP),
            "down" => Ok(Score::DOWN),
            other => Err(E::invalid_value(Unexpected::Str(other), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Score, D::Error> {
        d.deserialize_any(ScoreVisitor)
    }
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Err(de::Error::invalid_value(
            Unexpected::Str(""),
            &"a non-empty request id",
        ));
    }
    Ok(s)
}

fn comment<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let c = Option::<String>::deserialize(d)?;
    if let Some(text) = &c {
        let n = text.chars().count();
        if n > MAX_COMMENT_CHARS {
            return Err(de::Error::custom(format!(
                "the comment has {n} characters, at most {MAX_COMMENT_CHARS} are accepted"
            )));
        }
    }
    Ok(c)
}

/// The answer of `POST /v1/feedback`: the feedback as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Feedback {
    /// `feedback`.
    pub object: String,
    pub request_id: String,
    /// The configured model name that served the request.
    pub model: String,
    /// 0 (bad) to 1 (good).
    pub score: f64,
    pub comment: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Feedback {
    pub const OBJECT: &'static str = "feedback";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<FeedbackRequest, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn scores_are_numbers_in_range_or_thumbs() {
        let score = |s: Value| parse(json!({"request_id": "r", "score": s})).map(|r| r.score);
        assert_eq!(score(json!(0.75)), Ok(Score(0.75)));
        assert_eq!(score(json!(1)), Ok(Score::UP));
        assert_eq!(score(json!(0)), Ok(Score::DOWN));
        assert_eq!(score(json!("up")), Ok(Score::UP));
        assert_eq!(score(json!("down")), Ok(Score::DOWN));
        for bad in [
            json!(1.5),
            json!(-0.1),
            json!(2),
            json!(-1),
            json!("meh"),
            json!(null),
        ] {
            let e = score(bad.clone()).unwrap_err();
            assert!(e.contains("a number from 0 to 1"), "{bad}: {e}");
        }
        assert_eq!(serde_json::to_value(Score::UP).unwrap(), json!(1.0));
    }

    #[test]
    fn request_checks_id_comment_and_unknown_fields() {
        let ok = parse(json!({"request_id": "r", "score": "up", "comment": "good"})).unwrap();
        assert_eq!(ok.comment.as_deref(), Some("good"));
        assert!(parse(json!({"request_id": "", "score": 1})).is_err());
        assert!(parse(json!({"score": 1})).is_err());
        assert!(parse(json!({"request_id": "r"})).is_err());
        let long = "é".repeat(MAX_COMMENT_CHARS);
        assert!(parse(json!({"request_id": "r", "score": 1, "comment": long})).is_ok());
        let e = parse(json!({"request_id": "r", "score": 1, "comment": long + "x"})).unwrap_err();
        assert!(e.contains("at most 4096"), "{e}");
        let e = parse(json!({"request_id": "r", "score": 1, "rating": 3})).unwrap_err();
        assert!(e.contains("unknown field `rating`"), "{e}");
    }

    #[test]
    fn answers_keep_unknown_fields() {
        let f: Feedback = serde_json::from_value(json!({
            "object": "feedback", "request_id": "r", "model": "gpt", "score": 0.5,
            "comment": null, "created_at": 7, "new": true
        }))
        .unwrap();
        assert_eq!(f.score, 0.5);
        assert_eq!(f.extra["new"], json!(true));
    }
}
