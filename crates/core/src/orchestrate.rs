//! An orchestration's settings (`orchestrate:` on a model, or the fields of a
//! `POST /v1/orchestrations` body), parsed into [`OrchestrateConfig`].
//!
//! One parser serves both: in the config a problem is a start-up error naming the key
//! (`models[2].orchestrate.quorum`); in a request it is a 400 naming the field.

use crate::config::parse_duration;
use plexus_orchestrate::AnswerKind;
use plexus_protocol::money::Nanos;
use plexus_protocol::orchestration::OrchestrateFields;
use std::time::Duration;

/// Most independent samples per member.
pub const MAX_SAMPLES: u32 = 16;
/// Most mixture layers, debate rounds or refine cycles.
pub const MAX_ROUNDS: u32 = 5;
/// Most inner calls one orchestration may make.
pub const MAX_INNER_CALLS: u32 = 64;
/// The whole orchestration's time limit when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How the members work together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Every member answers (`samples` times); a plurality of extracted answers wins.
    Vote,
    /// Cheapest first; escalate while the confidence is below `escalate_below`.
    Cascade,
    /// Mixture-of-agents: layers of members that read the previous layer, then an aggregator.
    Mixture,
    /// Members answer, then revise after reading each other, for `rounds` rounds; the judge or
    /// a vote decides.
    Debate,
    /// One member drafts, another critiques, the first revises (`rounds` cycles).
    Refine,
    /// N candidates; the judge picks.
    BestOfN,
}

impl Strategy {
    pub const ALL: [Strategy; 6] = [
        Strategy::Vote,
        Strategy::Cascade,
        Strategy::Mixture,
        Strategy::Debate,
        Strategy::Refine,
        Strategy::BestOfN,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Vote => "vote",
            Strategy::Cascade => "cascade",
            Strategy::Mixture => "mixture",
            Strategy::Debate => "debate",
            Strategy::Refine => "refine",
            Strategy::BestOfN => "best_of_n",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A checked orchestration.
#[derive(Debug, Clone, PartialEq)]
pub struct OrchestrateConfig {
    pub strategy: Strategy,
    /// Configured models, in order (repeats allowed). Refine: the first drafts and revises,
    /// the second critiques.
    pub members: Vec<String>,
    pub samples: u32,
    pub answer: AnswerKind,
    /// Answers needed for a vote (the rest may fail or time out).
    pub quorum: u32,
    pub judge: Option<String>,
    pub aggregator: Option<String>,
    /// Mixture layers and debate rounds (the first answers included); refine cycles.
    pub rounds: u32,
    pub escalate_below: f64,
    /// The whole orchestration's budget, reserved up front.
    pub budget: Option<Nanos>,
    pub timeout: Duration,
    pub skip_if_easy: bool,
    /// A calibration map for the raw confidence (config only).
    pub calibration: Option<std::path::PathBuf>,
}

/// What is wrong, and with which field (`strategy`, `members[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// What a name refers to, for checking members, judges and aggregators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// A model with targets (or a `provider/model` name).
    Plain,
    /// A `select` model.
    Select,
    /// An orchestration model.
    Orchestration,
    /// Not a model.
    Unknown,
}

impl OrchestrateConfig {
    /// Parses the fields on their own (names are checked by [`OrchestrateConfig::check_models`]).
    pub fn parse(f: OrchestrateFields) -> Result<OrchestrateConfig, FieldError> {
        let strategy = match f.strategy.as_deref() {
            None => {
                return Err(bad(
                    "strategy",
                    "is required: vote, cascade, mixture, debate, refine or best_of_n",
                ))
            }
            Some(s) => Strategy::parse(s).ok_or_else(|| {
                bad(
                    "strategy",
                    format!(
                        "`{s}` is not one of vote, cascade, mixture, debate, refine, best_of_n"
                    ),
                )
            })?,
        };
        let members = f.members.unwrap_or_default();
        if members.is_empty() {
            return Err(bad("members", "needs at least one configured model"));
        }
        for (i, m) in members.iter().enumerate() {
            if m.trim().is_empty() {
                return Err(bad(format!("members[{i}]"), "must be a model name"));
            }
        }
        let samples = f.samples.unwrap_or(1);
        if !(1..=MAX_SAMPLES).contains(&samples) {
            return Err(bad(
                "samples",
                format!("must be between 1 and {MAX_SAMPLES}"),
            ));
        }
        let answer = match f.answer.as_deref() {
            None => AnswerKind::Text,
            Some("number") => AnswerKind::Number,
            Some("choice") => AnswerKind::Choice,
            Some("json") => AnswerKind::Json,
            Some("text") => AnswerKind::Text,
            Some(other) => {
                return Err(bad(
                    "answer",
                    format!("`{other}` is not one of number, choice, json, text"),
                ))
            }
        };
        let default_rounds = match strategy {
            Strategy::Refine => 1,
            Strategy::Mixture | Strategy::Debate => 2,
            _ => 1,
        };
        let rounds = f.rounds.unwrap_or(default_rounds);
        if !(1..=MAX_ROUNDS).contains(&rounds) {
            return Err(bad("rounds", format!("must be between 1 and {MAX_ROUNDS}")));
        }
        let ballots = members.len() as u64 * u64::from(samples);
        let quorum = match f.quorum {
            None => u32::try_from(ballots / 2 + 1).unwrap_or(u32::MAX).min(u32::try_from(ballots).unwrap_or(u32::MAX)),
            Some(0) => return Err(bad("quorum", "must be at least 1")),
            Some(q) if u64::from(q) > ballots => {
                return Err(bad(
                    "quorum",
                    format!(
                        "{q} is more answers than the members give ({} members x {samples} samples = {ballots})",
                        members.len()
                    ),
                ))
            }
            Some(q) => q,
        };
        let escalate_below = f.escalate_below.unwrap_or(0.7);
        if !(0.0..=1.0).contains(&escalate_below) {
            return Err(bad("escalate_below", "must be between 0 and 1"));
        }
        let budget = match f.budget_usd {
            None => None,
            Some(v) if v.is_finite() && v > 0.0 => Some(Nanos::from_usd(v)),
            Some(_) => return Err(bad("budget_usd", "must be a positive amount of USD")),
        };
        let timeout = match &f.timeout {
            None => DEFAULT_TIMEOUT,
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| bad("timeout", "must be a positive number of seconds"))?,
            Some(serde_json::Value::String(s)) => {
                parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| {
                    bad(
                        "timeout",
                        format!("`{s}` is not a duration such as 30s or 1500ms"),
                    )
                })?
            }
            Some(_) => return Err(bad("timeout", "must be a duration such as 30s, or seconds")),
        };
        let needs_judge = match strategy {
            Strategy::BestOfN => Some("best_of_n needs a `judge` to pick the best candidate"),
            Strategy::Vote if answer == AnswerKind::Text => Some(
                "a vote over `text` answers needs a `judge` (universal self-consistency picks the most consistent answer)",
            ),
            _ => None,
        };
        if let (Some(why), None) = (needs_judge, &f.judge) {
            return Err(bad("judge", why));
        }
        if strategy == Strategy::Mixture && f.aggregator.is_none() {
            return Err(bad(
                "aggregator",
                "mixture needs an `aggregator` to synthesize the answers",
            ));
        }
        if strategy == Strategy::Refine && members.len() < 2 {
            return Err(bad(
                "members",
                "refine needs two members: the first drafts and revises, the second critiques",
            ));
        }
        let config = OrchestrateConfig {
            strategy,
            members,
            samples,
            answer,
            quorum,
            judge: f.judge,
            aggregator: f.aggregator,
            rounds,
            escalate_below,
            budget,
            timeout,
            skip_if_easy: f.skip_if_easy.unwrap_or(false),
            calibration: f.calibration.map(std::path::PathBuf::from),
        };
        let calls = config.max_inner_calls();
        if calls > u64::from(MAX_INNER_CALLS) {
            return Err(bad(
                "members",
                format!(
                    "this orchestration could make {calls} inner calls; at most {MAX_INNER_CALLS} are allowed (fewer members, samples or rounds)"
                ),
            ));
        }
        Ok(config)
    }

    /// The most inner calls the orchestration can make.
    pub fn max_inner_calls(&self) -> u64 {
        let n = self.members.len() as u64;
        let s = u64::from(self.samples);
        let r = u64::from(self.rounds);
        let judge = u64::from(self.judge.is_some());
        match self.strategy {
            Strategy::Vote => n * s + judge,
            // Each member's samples, and a judge's score of each.
            Strategy::Cascade => n * s + judge * n,
            Strategy::Mixture => n * r + 1,
            Strategy::Debate => n * r + judge,
            Strategy::Refine => 1 + 2 * r,
            Strategy::BestOfN => n * s + 1,
        }
    }

    /// Every model name it uses, with the field that names it.
    pub fn named_models(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("members[{i}]"), m.as_str()))
            .collect();
        if let Some(j) = &self.judge {
            out.push(("judge".into(), j));
        }
        if let Some(a) = &self.aggregator {
            out.push(("aggregator".into(), a));
        }
        out
    }

    /// Checks that every name is a model that can serve an inner call, and that `own_name`
    /// (the orchestration model itself, if it is one) is not among them.
    pub fn check_models(
        &self,
        own_name: Option<&str>,
        kind_of: impl Fn(&str) -> ModelKind,
    ) -> Result<(), FieldError> {
        for (field, name) in self.named_models() {
            if Some(name) == own_name {
                return Err(bad(
                    field,
                    format!("`{name}` is this orchestration model itself"),
                ));
            }
            match kind_of(name) {
                ModelKind::Plain | ModelKind::Select => {}
                ModelKind::Orchestration => {
                    return Err(bad(
                        field,
                        format!("`{name}` is itself an orchestration model; members, judges and aggregators must be models that answer"),
                    ))
                }
                ModelKind::Unknown => {
                    return Err(bad(field, format!("`{name}` is not a configured model")))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<OrchestrateConfig, FieldError> {
        OrchestrateConfig::parse(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn defaults_and_fields() {
        let c = parse(json!({"strategy": "vote", "members": ["a", "b", "a"], "answer": "number"}))
            .unwrap();
        assert_eq!(c.quorum, 2, "a majority of the ballots by default");
        assert_eq!(c.samples, 1);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.max_inner_calls(), 3);
        let c = parse(json!({"strategy": "mixture", "members": ["a", "b"], "aggregator": "c", "timeout": "1500ms", "budget_usd": 0.05})).unwrap();
        assert_eq!(c.rounds, 2);
        assert_eq!(c.max_inner_calls(), 5);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.budget, Some(Nanos::from_usd(0.05)));
        let c = parse(json!({"strategy": "refine", "members": ["a", "b"], "timeout": 2})).unwrap();
        assert_eq!((c.rounds, c.max_inner_calls()), (1, 3));
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_field() {
        for (v, field, text) in [
            (json!({"members": ["a"]}), "strategy", "required"),
            (
                json!({"strategy": "chorus", "members": ["a"]}),
                "strategy",
                "chorus",
            ),
            (json!({"strategy": "vote"}), "members", "at least one"),
            (
                json!({"strategy": "vote", "members": ["a"], "samples": 17}),
                "samples",
                "between 1 and 16",
            ),
            (
                json!({"strategy": "debate", "members": ["a"], "rounds": 6}),
                "rounds",
                "between 1 and 5",
            ),
            (
                json!({"strategy": "vote", "members": ["a", "b"], "quorum": 3}),
                "quorum",
                "more answers",
            ),
            (
                json!({"strategy": "vote", "members": ["a"], "answer": "text"}),
                "judge",
                "universal self-consistency",
            ),
            (
                json!({"strategy": "best_of_n", "members": ["a"]}),
                "judge",
                "best_of_n",
            ),
            (
                json!({"strategy": "mixture", "members": ["a"]}),
                "aggregator",
                "mixture",
            ),
            (
                json!({"strategy": "refine", "members": ["a"]}),
                "members",
                "two members",
            ),
            (
                json!({"strategy": "vote", "members": ["a", "b", "c", "d", "e"], "samples": 16, "answer": "number"}),
                "members",
                "at most 64",
            ),
            (
                json!({"strategy": "vote", "members": ["a"], "timeout": "soon"}),
                "timeout",
                "soon",
            ),
            (
                json!({"strategy": "vote", "members": ["a"], "budget_usd": 0}),
                "budget_usd",
                "positive",
            ),
            (
                json!({"strategy": "cascade", "members": ["a"], "escalate_below": 2}),
                "escalate_below",
                "between",
            ),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e}");
            assert!(e.message.contains(text), "{v}: {e}");
        }
    }

    #[test]
    fn models_are_checked() {
        let c =
            parse(json!({"strategy": "best_of_n", "members": ["a", "b"], "judge": "j"})).unwrap();
        let kind = |n: &str| match n {
            "a" | "j" => ModelKind::Plain,
            "b" => ModelKind::Select,
            "council" => ModelKind::Orchestration,
            _ => ModelKind::Unknown,
        };
        c.check_models(Some("me"), kind).unwrap();
        let e = c.check_models(Some("a"), kind).unwrap_err();
        assert_eq!(e.field, "members[0]");
        assert!(e.message.contains("itself"));
        let c = parse(json!({"strategy": "vote", "members": ["a", "council"], "answer": "number"}))
            .unwrap();
        assert_eq!(c.check_models(None, kind).unwrap_err().field, "members[1]");
        let c =
            parse(json!({"strategy": "vote", "members": ["a", "zz"], "answer": "number"})).unwrap();
        let e = c.check_models(None, kind).unwrap_err();
        assert!(e.message.contains("not a configured model"), "{e}");
    }
}
