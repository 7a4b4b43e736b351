//! OpenAI Responses API wire types (`POST /v1/responses`), as a client sends them to Plexus.
//!
//! The request keeps its input items as JSON (`Value`): item types come and go faster than a
//! gateway's releases, and the translation reads the ones it knows and keeps the rest visible.
//! Every object keeps unknown fields in `extra`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub type Extra = Map<String, Value>;

/// `input`: a string (one user message) or items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

impl Default for Input {
    fn default() -> Input {
        Input::Text(String::new())
    }
}

/// `POST /v1/responses` request body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Input,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    /// `{"effort": "minimal" | "low" | "medium" | "high", "summary": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    #[serde(
        default,
        deserialize_with = "crate::whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Default true, as at OpenAI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Extra,
}

/// Token usage of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResponseUsage {
    pub input_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: TokensDetails,
    pub output_tokens: u64,
    #[serde(default)]
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

/// The `response` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: String,
    /// `response`.
    pub object: String,
    pub created_at: i64,
    /// `completed | incomplete | in_progress | queued | failed | cancelled`.
    pub status: String,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub incomplete_details: Option<Value>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    pub model: String,
    /// Output items: `message`, `function_call`, `reasoning`.
    #[serde(default)]
    pub output: Vec<Value>,
    #[serde(default)]
    pub parallel_tool_calls: bool,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub store: bool,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub tool_choice: Value,
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub usage: Option<ResponseUsage>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub background: bool,
    #[serde(flatten, skip_serializing_if = "Map::is_empty")]
    pub extra: Extra,
}

/// A page of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemList {
    /// `list`.
    pub object: String,
    /// Input items (`message`, `function_call`, `function_call_output`, ...), each with an `id`.
    pub data: Vec<Value>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// The query of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemsQuery {
    /// 1 to 100; the server's default is 20.
    pub limit: Option<u32>,
    /// `asc` or `desc` (the server's default).
    pub order: Option<String>,
    /// An item id: the page starts after it.
    pub after: Option<String>,
}

impl Response {
    /// The text of the response's assistant messages, concatenated.
    pub fn output_text(&self) -> String {
        self.output
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) == Some("message"))
            .filter_map(|o| o.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("output_text"))
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_parse_with_string_or_items_and_keep_unknown_fields() {
        let r: ResponsesRequest = serde_json::from_value(json!({
            "model": "gpt-5", "input": "Hi", "max_output_tokens": 100.0, "future": 1
        }))
        .unwrap();
        assert_eq!(r.input, Input::Text("Hi".into()));
        assert_eq!(r.max_output_tokens, Some(100));
        assert_eq!(r.extra["future"], 1);
        let r: ResponsesRequest = serde_json::from_value(json!({
            "model": "m", "input": [{"role": "user", "content": "x"}]
        }))
        .unwrap();
        assert!(matches!(r.input, Input::Items(ref i) if i.len() == 1));
    }
}
