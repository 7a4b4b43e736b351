//! Orchestration wire types: `POST /v1/orchestrations` (a chat request plus the `orchestrate`
//! fields), its answer and the stored evidence graph (`GET /v1/orchestrations/{id}`), and the
//! `plexus` object an orchestration model adds to an ordinary `chat.completion`.
//!
//! As in [`crate::admin`]: the fields a client sends are checked by the server (unknown ones
//! are refused, naming them), and what the server answers keeps the fields it does not know in
//! `extra` and defaults the ones that are missing, so an older client reads a newer server.

use crate::money::Nanos;
use crate::openai::{ChatCompletion, Extra, Usage};
use serde::{Deserialize, Serialize};

/// The `orchestrate` fields: in the config under a model's `orchestrate:`, or at the top level
/// of a `POST /v1/orchestrations` body. Every field is optional here; the server checks them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestrateFields {
    /// `vote`, `cascade`, `mixture`, `debate`, `refine` or `best_of_n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Configured models; the same model may appear twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// Independent samples per member (self-consistency), 1 to 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    /// How final answers are compared: `number`, `choice`, `json` or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Answers needed; the rest may fail or time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// The model that scores or decides (cascade, best_of_n, debate; `text` votes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    /// The model that synthesizes (mixture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregator: Option<String>,
    /// Mixture layers, debate rounds (1 to 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    /// Cascade: escalate while the confidence is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_below: Option<f64>,
    /// The whole orchestration's budget, reserved up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// The whole orchestration's time limit: a duration (`30s`, `1500ms`, `2m`) or seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<serde_json::Value>,
    /// Let the selector's quality predictor send an easy request to one model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if_easy: Option<bool>,
    /// Config only: a calibration map (JSON written by `plexus orchestrate calibrate`) applied
    /// to the raw confidence. Refused in a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

impl OrchestrateFields {
    /// The names of the fields, as they appear at the top level of a request body.
    pub const NAMES: [&'static str; 13] = [
        "strategy",
        "members",
        "samples",
        "answer",
        "quorum",
        "judge",
        "aggregator",
        "rounds",
        "escalate_below",
        "budget_usd",
        "timeout",
        "skip_if_easy",
        "calibration",
    ];
}

/// Who contributed what to an orchestration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// The configured model.
    #[serde(default)]
    pub model: String,
    /// What it did: `answer`, `revise`, `aggregate`, `judge`, `critique`, `draft`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `provider/upstream_model` that served its last call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// Its last extracted final answer (canonical), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Whether that answer is the final one.
    #[serde(default)]
    pub agrees: bool,
    #[serde(default)]
    pub calls: u32,
    /// Calls that failed (an error from the pipeline or the provider).
    #[serde(default)]
    pub failed_calls: u32,
    /// Calls cancelled because the outcome was already decided or the timeout passed.
    #[serde(default)]
    pub cancelled_calls: u32,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub cost_usd: Nanos,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

/// The `plexus` object of an orchestration model's `chat.completion` (OpenAI SDKs keep unknown
/// fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlexusSummary {
    /// The orchestration's id (`GET /v1/orchestrations/{id}`).
    #[serde(default)]
    pub orchestration_id: String,
    #[serde(default)]
    pub strategy: String,
    /// Calibrated probability (0 to 1) that the answer is right.
    #[serde(default)]
    pub confidence: f64,
    /// The share of pairs of answers that agree.
    #[serde(default)]
    pub agreement: f64,
    /// The final extracted answer (canonical), if one was extracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_answer: Option<String>,
    #[serde(default)]
    pub contributors: Vec<Contributor>,
    /// When task analysis sent an easy request to one model: that model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_to: Option<String>,
    #[serde(default)]
    pub cost_usd: Nanos,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

/// What a graph node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// One inner model call.
    #[default]
    Call,
    /// A final answer extracted from a call.
    Answer,
    /// A short claim taken from a call (a critique's verdict, a judge's pick or score).
    Claim,
    /// The orchestration's answer.
    Final,
    #[serde(other)]
    Unknown,
}

/// How two nodes relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// A call produced this answer or claim.
    Extracted,
    /// A call read this answer (it was in its prompt).
    ReadBy,
    /// A call (critique) critiqued this answer.
    Critiqued,
    /// An answer voted for the final answer.
    VotedFor,
    /// A judge (or the cascade) selected this answer.
    Selected,
    /// A judge scored this answer.
    Scored,
    #[serde(other)]
    Unknown,
}

/// A node of the evidence graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Unique within the graph: `call-3`, `answer-3`, `claim-5`, `final`.
    #[serde(default)]
    pub id: String,
    #[serde(default = "unknown_node")]
    pub kind: NodeKind,
    /// The configured model (calls, and what they produced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A call's role: `answer`, `revise`, `aggregate`, `judge`, `score`, `critique`, `draft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Layer, round or cascade step (0 first).
    #[serde(default)]
    pub round: u32,
    /// Which independent sample of its model, for answers in a vote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    /// A call's gateway request id (its record in the request log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// A call's HTTP status (200 when it answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A failed call's error code, or why a call did not run (`cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A call's output text (the first 2,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An answer's canonical value, a claim's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A judge's score (0 to 1) or a confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub cost_usd: Nanos,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

fn unknown_node() -> NodeKind {
    NodeKind::Unknown
}

fn unknown_edge() -> EdgeKind {
    EdgeKind::Unknown
}

/// An edge of the evidence graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphEdge {
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default = "unknown_edge")]
    pub kind: EdgeKind,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

/// The evidence graph of one orchestration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    #[serde(default)]
    pub nodes: Vec<GraphNode>,
    #[serde(default)]
    pub edges: Vec<GraphEdge>,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

/// `POST /v1/orchestrations`'s answer, and what `GET /v1/orchestrations/{id}` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Orchestration {
    #[serde(default)]
    pub id: String,
    /// `orchestration`.
    #[serde(default)]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// The orchestration model asked for, or `orchestration` for per-request parameters.
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub strategy: String,
    /// `completed`, or `failed` (quorum missed, budget, timeout: see `error`).
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<serde_json::Value>,
    /// The answer as an ordinary `chat.completion` (absent when the orchestration failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<ChatCompletion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_answer: Option<String>,
    #[serde(default)]
    pub confidence: f64,
    /// The confidence before calibration.
    #[serde(default)]
    pub raw_confidence: f64,
    #[serde(default)]
    pub agreement: f64,
    #[serde(default)]
    pub contributors: Vec<Contributor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_to: Option<String>,
    #[serde(default)]
    pub graph: Graph,
    /// The inner calls' usage, summed.
    #[serde(default = "zero_usage")]
    pub usage: Usage,
    /// The inner calls' cost, summed (the orchestration itself costs nothing).
    #[serde(default)]
    pub cost_usd: Nanos,
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

fn zero_usage() -> Usage {
    Usage::new(0, 0)
}

impl Orchestration {
    pub const OBJECT: &'static str = "orchestration";

    /// The `plexus` object of the answer.
    pub fn summary(&self) -> PlexusSummary {
        PlexusSummary {
            orchestration_id: self.id.clone(),
            strategy: self.strategy.clone(),
            confidence: self.confidence,
            agreement: self.agreement,
            final_answer: self.final_answer.clone(),
            contributors: self.contributors.clone(),
            skipped_to: self.skipped_to.clone(),
            cost_usd: self.cost_usd,
            extra: Extra::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_kept_and_missing_ones_defaulted() {
        let o: Orchestration = serde_json::from_value(json!({
            "id": "req_1", "confidence": 0.8, "future": [1],
            "graph": {"nodes": [{"id": "call-0", "kind": "telepathy"}],
                      "edges": [{"from": "a", "to": "b", "kind": "read_by"}]}
        }))
        .unwrap();
        assert_eq!(o.extra.get("future"), Some(&json!([1])));
        assert_eq!(o.graph.nodes[0].kind, NodeKind::Unknown);
        assert_eq!(o.graph.edges[0].kind, EdgeKind::ReadBy);
        assert_eq!(o.usage.total_tokens, 0);
        let back = serde_json::to_value(&o).unwrap();
        assert_eq!(back["future"], json!([1]));
    }

    #[test]
    fn request_fields_refuse_unknown_names() {
        let e = serde_json::from_value::<OrchestrateFields>(json!({"stratgy": "vote"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("stratgy"), "{e}");
        let f: OrchestrateFields = serde_json::from_value(
            json!({"strategy": "vote", "members": ["a", "a"], "timeout": "5s"}),
        )
        .unwrap();
        assert_eq!(f.members.unwrap().len(), 2);
    }
}

/// A `POST /v1/orchestrations` body: a chat request with the [`OrchestrateFields`] at its top
/// level. Either `chat.model` names a configured orchestration model and `fields` is empty, or
/// `chat.model` is empty (it is then left out: the server's per-request `orchestration`) and
/// `fields` gives at least `strategy` and `members`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrchestrationRequest {
    pub chat: crate::openai::ChatCompletionRequest,
    pub fields: OrchestrateFields,
}

impl Serialize for OrchestrationRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut body = match serde_json::to_value(&self.chat).map_err(S::Error::custom)? {
            serde_json::Value::Object(m) => m,
            _ => return Err(S::Error::custom("a chat request is a JSON object")),
        };
        if body.get("model").and_then(|m| m.as_str()) == Some("") {
            body.remove("model");
        }
        if let serde_json::Value::Object(fields) =
            serde_json::to_value(&self.fields).map_err(S::Error::custom)?
        {
            body.extend(fields);
        }
        body.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for OrchestrationRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut body = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut fields = serde_json::Map::new();
        for name in OrchestrateFields::NAMES {
            if let Some(v) = body.remove(name) {
                fields.insert(name.to_owned(), v);
            }
        }
        body.entry("model")
            .or_insert_with(|| serde_json::Value::String(String::new()));
        Ok(OrchestrationRequest {
            chat: serde_json::from_value(serde_json::Value::Object(body))
                .map_err(D::Error::custom)?,
            fields: serde_json::from_value(serde_json::Value::Object(fields))
                .map_err(D::Error::custom)?,
        })
    }
}

#[cfg(test)]
mod request_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::openai::{ChatCompletionRequest, Message, Role};
    use serde_json::json;

    #[test]
    fn the_fields_sit_at_the_top_level_and_an_empty_model_is_left_out() {
        let req = OrchestrationRequest {
            chat: ChatCompletionRequest {
                messages: vec![Message::text(Role::User, "2+2?")],
                max_tokens: Some(50),
                ..Default::default()
            },
            fields: OrchestrateFields {
                strategy: Some("vote".into()),
                members: Some(vec!["a".into(), "b".into()]),
                answer: Some("number".into()),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["strategy"], "vote");
        assert_eq!(v["members"], json!(["a", "b"]));
        assert_eq!(v["max_tokens"], 50);
        assert_eq!(v["messages"][0]["content"], "2+2?");
        assert!(v.get("model").is_none(), "{v}");
        assert!(v.get("quorum").is_none(), "{v}");
        let back: OrchestrationRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);

        let named = OrchestrationRequest {
            chat: ChatCompletionRequest {
                model: "council".into(),
                ..Default::default()
            },
            fields: OrchestrateFields::default(),
        };
        let v = serde_json::to_value(&named).unwrap();
        assert_eq!(v["model"], "council");
        assert!(v.get("strategy").is_none(), "{v}");
        let e =
            serde_json::from_value::<OrchestrationRequest>(json!({"messages": [], "rounds": "x"}))
                .unwrap_err()
                .to_string();
        assert!(e.contains("invalid type"), "{e}");
    }
}
