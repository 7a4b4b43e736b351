//! The cross-model orchestrator: several models work one task, read each other's answers on a
//! blackboard, and a synthesis answers, with provenance (the evidence graph) and a confidence.
//!
//! An orchestration is a [`Composite`]: it takes the caller's request-rate and concurrency
//! limits once and reserves its budget once (`budget_usd`, or its worst case); every inner call
//! is an ordinary [`Gateway::complete`] with a child context (`parent`, `step`, a cache salt per
//! independent sample), so the key's allowed models, caching, retries, breakers and recording
//! apply to each, and spend is counted on the inner calls only.
//!
//! The decisions over the answers (extraction, the vote, confidence, the judge's reply) are the
//! pure `plexus-orchestrate` crate's; this module runs the calls, concurrently within a phase,
//! under the orchestration's deadline, and cancels a phase's stragglers once its outcome is
//! decided (dropping an inner call settles its holds and records it as cancelled).

use crate::composite::Composite;
use crate::ctx::CallCtx;
use crate::pipeline::{check_model_access, validate, AnswerMeta, ChatRequest, Failure};
use crate::{Answer, Gateway};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use plexus_core::orchestrate::{OrchestrateConfig, Strategy};
use plexus_core::{ApiError, ErrorCode};
use plexus_orchestrate::{
    answer_confidence, extract, plurality, prompts, vote_confidence, AnswerKind, Ballot,
    ConfidenceParams, Member,
};
use plexus_protocol::money::Nanos;
use plexus_protocol::openai::{
    ChatCompletion, ChatCompletionRequest, Choice, Message, ResponseMessage, Role, Usage,
};
use plexus_protocol::orchestration::{
    Contributor, EdgeKind, Graph, GraphEdge, GraphNode, NodeKind, Orchestration,
};
use std::time::Instant;

/// The `error` of a call that was cancelled (decided without it, or past the timeout).
const CANCELLED: &str = "cancelled";
/// The `model` of a `POST /v1/orchestrations` that gives its parameters in the request.
pub const PER_REQUEST_MODEL: &str = "orchestration";
/// The fewest output tokens an inner call is given; a budget that cannot pay for that many per
/// call is refused up front.
pub const MIN_INNER_OUTPUT: u32 = 16;
/// Output tokens of an inner call when the client sets no `max_tokens`.
pub const DEFAULT_INNER_OUTPUT: u32 = 1024;
/// Temperature of independent samples when the client asks for 0 or none.
const SAMPLE_TEMPERATURE: f64 = 0.7;
/// Characters of a call's output kept in the graph.
const GRAPH_TEXT_CHARS: usize = 2000;
/// Observations a configured `quality:` is worth for the confidence.
const CONFIGURED_QUALITY_OBSERVATIONS: u32 = 1000;
/// Estimated prompt tokens of the fields an inner request carries besides the client's (its
/// model name, seed, temperature, output cap).
const INNER_FIELDS_TOKENS: u64 = 32;
/// Estimated prompt tokens an orchestration prompt adds besides the answers it quotes.
const PROMPT_OVERHEAD_TOKENS: u64 = 300;

/// A finished orchestration: the stored result and the answer as a `chat.completion`.
#[derive(Debug)]
pub struct Orchestrated {
    pub result: Orchestration,
    /// The `chat.completion` (with its `plexus` object) as JSON.
    pub body: Bytes,
    pub meta: AnswerMeta,
}

/// What an inner call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Answer,
    Revise,
    Aggregate,
    Judge,
    Score,
    Critique,
    Draft,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Answer => "answer",
            Part::Revise => "revise",
            Part::Aggregate => "aggregate",
            Part::Judge => "judge",
            Part::Score => "score",
            Part::Critique => "critique",
            Part::Draft => "draft",
        }
    }

    /// Whether its output is an answer to the task (rather than a verdict on one).
    fn answers(self) -> bool {
        matches!(
            self,
            Part::Answer | Part::Revise | Part::Aggregate | Part::Draft
        )
    }
}

/// One call to make.
#[derive(Debug, Clone)]
struct CallSpec {
    member: String,
    role: Part,
    round: u32,
    sample: Option<u32>,
    /// The user message appended to the conversation (orchestration prompts).
    prompt: Option<String>,
    seed: Option<i64>,
    temperature: Option<f64>,
    /// Blackboard entries quoted in the prompt.
    reads: Vec<usize>,
    /// The entry a critique, score or pick is about (for the graph's edges).
    about: Vec<usize>,
    /// Cache salt: independent samples never collapse into one call.
    salt: Option<String>,
}

/// One entry of the blackboard: a call and what came of it.
#[derive(Debug, Clone)]
struct Entry {
    spec: CallSpec,
    request_id: String,
    served_by: Option<String>,
    status: u16,
    error: Option<String>,
    text: Option<String>,
    /// The extracted final answer (canonical), for answering roles.
    answer: Option<String>,
    /// A short claim: an answer's first sentence, a critique's verdict, a judge's pick or score.
    claim: Option<String>,
    score: Option<f64>,
    usage: Usage,
    cost: Nanos,
    latency_ms: u64,
    completion: Option<ChatCompletion>,
}

/// How the final answer was reached.
struct Outcome {
    /// The entry whose answer is the orchestration's.
    chosen: usize,
    final_answer: Option<String>,
    raw_confidence: f64,
    agreement: f64,
    /// Entries that voted for the final answer.
    voters: Vec<usize>,
    /// A judge's (or the cascade's) selection: (who selected, what).
    selected_by: Option<usize>,
}

struct Run<'a> {
    gateway: &'a Gateway,
    composite: &'a Composite,
    spec: &'a OrchestrateConfig,
    chat: &'a ChatCompletionRequest,
    max_tokens: u32,
    deadline: tokio::time::Instant,
    board: Vec<Entry>,
    members: Vec<Member>,
    params: ConfidenceParams,
}

fn not_enough(spec: &OrchestrateConfig, got: usize, needed: usize) -> ApiError {
    ApiError::new(
        ErrorCode::QuorumNotMet,
        format!(
            "Only {got} of the {} answers needed by this {} orchestration arrived; the others failed or timed out.",
            needed,
            spec.strategy.as_str()
        ),
    )
}

/// The text of a completion's first choice.
fn completion_text(c: &ChatCompletion) -> Option<String> {
    c.choices
        .first()
        .and_then(|ch| ch.message.content.clone())
        .filter(|t| !t.trim().is_empty())
}

impl Run<'_> {
    fn answer_kind(&self) -> AnswerKind {
        self.spec.answer
    }

    /// Runs `calls` concurrently until all end, `decided` says the rest cannot change the
    /// outcome, or the deadline passes; returns their entries (cancelled ones included).
    async fn phase(
        &mut self,
        calls: Vec<CallSpec>,
        decided: impl Fn(&[&Entry], usize) -> bool,
    ) -> Vec<usize> {
        let first = self.board.len();
        let mut slots: Vec<Option<Entry>> = vec![None; calls.len()];
        let this = &*self;
        let mut running = FuturesUnordered::new();
        for (i, spec) in calls.iter().enumerate() {
            let spec = spec.clone();
            running.push(async move { (i, this.call(spec).await) });
        }
        let mut done = 0usize;
        loop {
            let next = tokio::time::timeout_at(this.deadline, running.next()).await;
            match next {
                Ok(Some((i, entry))) => {
                    slots[i] = Some(entry);
                    done += 1;
                    let finished: Vec<&Entry> = slots.iter().flatten().collect();
                    if done < calls.len() && decided(&finished, calls.len() - done) {
                        break;
                    }
                }
                Ok(None) => break,
                // The deadline: what is still running is cancelled below.
                Err(_) => break,
            }
        }
        // Dropping the futures cancels the calls still running (each records itself as 499).
        drop(running);
        for (i, slot) in slots.into_iter().enumerate() {
            let entry = slot.unwrap_or_else(|| Entry {
                spec: calls[i].clone(),
                request_id: String::new(),
                served_by: None,
                status: 499,
                error: Some(CANCELLED.into()),
                text: None,
                answer: None,
                claim: None,
                score: None,
                usage: Usage::new(0, 0),
                cost: Nanos::ZERO,
                latency_ms: 0,
                completion: None,
            });
            self.board.push(entry);
        }
        (first..self.board.len()).collect()
    }

    /// One inner call through the pipeline.
    async fn call(&self, spec: CallSpec) -> Entry {
        let started = Instant::now();
        let mut entry = Entry {
            spec: spec.clone(),
            request_id: String::new(),
            served_by: None,
            status: 0,
            error: None,
            text: None,
            answer: None,
            claim: None,
            score: None,
            usage: Usage::new(0, 0),
            cost: Nanos::ZERO,
            latency_ms: 0,
            completion: None,
        };
        let mut ctx: CallCtx = match self.composite.child() {
            Ok(c) => c,
            Err(e) => {
                entry.status = e.status();
                entry.error = Some(e.code.as_str().into());
                return entry;
            }
        };
        ctx.cache_salt = spec.salt.clone();
        entry.request_id = ctx.request_id.clone();
        let mut req = self.chat.clone();
        req.model = spec.member.clone();
        req.stream = None;
        req.stream_options = None;
        req.n = None;
        req.seed = spec.seed;
        req.temperature = spec.temperature;
        req.max_tokens = Some(self.max_tokens);
        req.max_completion_tokens = None;
        // Orchestration answers are text; tool calls would be abstentions.
        req.tools = None;
        req.tool_choice = None;
        req.parallel_tool_calls = None;
        if !spec.role.answers() {
            req.response_format = None;
        }
        if let Some(p) = &spec.prompt {
            req.messages.push(Message::text(Role::User, p.clone()));
        }
        let result = self
            .gateway
            .complete(&ctx, ChatRequest::internal(Box::new(req)))
            .await;
        entry.latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(Answer::Full(full)) => {
                entry.status = 200;
                entry.served_by = full.meta.served_by.clone();
                entry.usage = full.usage.clone();
                entry.cost = full.cost;
                match full.completion() {
                    Ok(c) => {
                        entry.text = completion_text(&c);
                        entry.completion = Some(c);
                    }
                    Err(e) => entry.error = Some(e.code.as_str().into()),
                }
            }
            Ok(Answer::Stream(_)) => {
                entry.status = 500;
                entry.error = Some("internal_error".into());
            }
            Err(Failure { error, meta }) => {
                entry.status = error.status();
                entry.error = Some(error.code.as_str().into());
                entry.served_by = meta.served_by;
            }
        }
        if let Some(text) = &entry.text {
            match spec.role {
                r if r.answers() => {
                    entry.answer = extract(self.answer_kind(), text);
                    entry.claim = prompts::first_claim(text);
                }
                Part::Score => {
                    entry.score = prompts::parse_score(text);
                    entry.claim = entry.score.map(|s| format!("score {:.1}/10", s * 10.0));
                }
                Part::Critique => {
                    entry.claim = match prompts::parse_verdict(text) {
                        Some(true) => Some("the draft is right".into()),
                        Some(false) => Some("the draft is wrong".into()),
                        None => prompts::first_claim(text),
                    };
                }
                _ => {}
            }
        }
        entry
    }

    fn text(&self, i: usize) -> &str {
        self.board[i].text.as_deref().unwrap_or("")
    }

    fn answered(&self, ids: &[usize]) -> Vec<usize> {
        ids.iter()
            .copied()
            .filter(|&i| self.board[i].text.is_some())
            .collect()
    }

    fn seed(&self, index: usize) -> i64 {
        self.chat.seed.unwrap_or(0).wrapping_add(index as i64)
    }

    /// The temperature of independent samples.
    fn sample_temperature(&self) -> Option<f64> {
        match self.chat.temperature {
            Some(t) if t > 0.0 => Some(t),
            _ if self.spec.samples > 1 => Some(SAMPLE_TEMPERATURE),
            t => t,
        }
    }

    fn answer_spec(&self, member: &str, index: usize, sample: u32, round: u32) -> CallSpec {
        CallSpec {
            member: member.to_owned(),
            role: Part::Answer,
            round,
            sample: Some(sample),
            prompt: None,
            seed: Some(self.seed(index)),
            temperature: self.sample_temperature(),
            reads: Vec::new(),
            about: Vec::new(),
            salt: Some(format!(
                "orchestrate:{}:{index}",
                self.spec.strategy.as_str()
            )),
        }
    }

    fn prompt_spec(
        &self,
        member: &str,
        role: Part,
        round: u32,
        prompt: String,
        reads: Vec<usize>,
    ) -> CallSpec {
        CallSpec {
            member: member.to_owned(),
            role,
            round,
            sample: None,
            prompt: Some(prompt),
            seed: self.chat.seed,
            temperature: self.chat.temperature,
            about: reads.clone(),
            reads,
            salt: None,
        }
    }

    fn ballots(&self, ids: &[usize]) -> Vec<Ballot> {
        ids.iter()
            .map(|&i| {
                let e = &self.board[i];
                Ballot::new(
                    e.spec.member.clone(),
                    e.spec.sample.unwrap_or(0),
                    e.answer.as_deref(),
                )
            })
            .collect()
    }

    /// Plurality over `ids`; the chosen entry is the first that voted for the winner.
    fn vote_over(&self, ids: &[usize]) -> Option<Outcome> {
        let ballots = self.ballots(ids);
        let outcome = plurality(&ballots, &self.members);
        let winner = outcome.winner.clone()?;
        let voters: Vec<usize> = outcome.winner_ballots.iter().map(|&b| ids[b]).collect();
        let chosen = *voters.first()?;
        let raw = vote_confidence(&ballots, &outcome, &self.members, &self.params);
        Some(Outcome {
            chosen,
            final_answer: Some(winner),
            raw_confidence: raw,
            agreement: outcome.agreement,
            voters,
            selected_by: None,
        })
    }

    /// The outcome when `chosen` is the answer (a judge's pick, a synthesis), with the
    /// confidence of its answer given the ballots `ids`.
    fn outcome_for(&self, chosen: usize, ids: &[usize], selected_by: Option<usize>) -> Outcome {
        let ballots = self.ballots(ids);
        let outcome = plurality(&ballots, &self.members);
        let final_answer = self.board[chosen].answer.clone();
        let raw = match &final_answer {
            Some(a) => answer_confidence(&ballots, a, &self.members, &self.params),
            None => 0.0,
        };
        let voters = ids
            .iter()
            .copied()
            .filter(|&i| final_answer.is_some() && self.board[i].answer == final_answer)
            .collect();
        Outcome {
            chosen,
            final_answer,
            raw_confidence: raw,
            agreement: outcome.agreement,
            voters,
            selected_by,
        }
    }

    /// A model with its recorded accuracy (the config's `quality:`), for the confidence.
    fn member(&self, name: &str) -> Member {
        member_of(&self.gateway.runtime(), name)
    }

    fn quorum(&self, available: usize) -> usize {
        (self.spec.quorum as usize).min(available).max(1)
    }

    /// Every member answers, `samples` times each.
    async fn first_answers(&mut self, round: u32, early_stop: bool) -> Vec<usize> {
        let mut calls = Vec::new();
        let mut index = 0;
        for member in &self.spec.members {
            for s in 0..self.spec.samples {
                calls.push(self.answer_spec(member, index, s, round));
                index += 1;
            }
        }
        let quorum = self.quorum(calls.len());
        let kind_votes = self.answer_kind() != AnswerKind::Text;
        self.phase(calls, move |done, pending| {
            if !(early_stop && kind_votes) {
                return false;
            }
            decided(done, pending, quorum)
        })
        .await
    }

    async fn vote(&mut self) -> Result<Outcome, ApiError> {
        let ids = self.first_answers(0, true).await;
        let answered = self.answered(&ids);
        let with_answer: Vec<usize> = answered
            .iter()
            .copied()
            .filter(|&i| self.board[i].answer.is_some())
            .collect();
        let quorum = self.quorum(ids.len());
        if with_answer.len() < quorum {
            return Err(not_enough(self.spec, with_answer.len(), quorum));
        }
        if self.answer_kind() == AnswerKind::Text {
            // Universal self-consistency: the judge picks the most consistent answer.
            return Ok(self.judge_pick(&with_answer, true, 1).await);
        }
        self.vote_over(&with_answer)
            .ok_or_else(|| not_enough(self.spec, 0, quorum))
    }

    /// The judge picks among `candidates`; without a usable pick, the plurality decides.
    async fn judge_pick(&mut self, candidates: &[usize], consistency: bool, round: u32) -> Outcome {
        let fallback = |run: &Self| {
            run.vote_over(candidates)
                .unwrap_or_else(|| run.outcome_for(candidates[0], candidates, None))
        };
        let Some(judge) = self.spec.judge.clone() else {
            return fallback(self);
        };
        let texts: Vec<&str> = candidates.iter().map(|&i| self.text(i)).collect();
        let prompt = prompts::pick(&texts, consistency);
        let spec = self.prompt_spec(&judge, Part::Judge, round, prompt, candidates.to_vec());
        let ids = self.phase(vec![spec], |_, _| false).await;
        let judge_entry = ids[0];
        let pick = self.board[judge_entry]
            .text
            .as_deref()
            .and_then(|t| prompts::parse_pick(t, candidates.len()));
        match pick {
            Some(p) => {
                self.board[judge_entry].claim = Some(format!("picked candidate {}", p + 1));
                let chosen = candidates[p];
                let mut outcome = self.outcome_for(chosen, candidates, Some(judge_entry));
                // The judge's pick is one more ballot, weighed by the judge's own accuracy.
                if let Some(picked) = &outcome.final_answer {
                    let mut ballots = self.ballots(candidates);
                    ballots.push(Ballot::new(judge.clone(), 0, Some(picked)));
                    let mut members = self.members.clone();
                    members.push(self.member(&judge));
                    outcome.raw_confidence =
                        answer_confidence(&ballots, picked, &members, &self.params);
                }
                if self.answer_kind() == AnswerKind::Text {
                    // Texts rarely match exactly: the judge's pick among n is the evidence.
                    outcome.raw_confidence =
                        outcome.raw_confidence.max(1.0 / candidates.len() as f64);
                }
                outcome
            }
            None => fallback(self),
        }
    }

    async fn cascade(&mut self, order: &[String]) -> Result<Outcome, ApiError> {
        let mut index = 0;
        let mut last: Option<Outcome> = None;
        for (step, member) in order.iter().enumerate() {
            let round = step as u32;
            let calls: Vec<CallSpec> = (0..self.spec.samples)
                .map(|s| {
                    let c = self.answer_spec(member, index, s, round);
                    index += 1;
                    c
                })
                .collect();
            let ids = self.phase(calls, |_, _| false).await;
            let answered: Vec<usize> = self
                .answered(&ids)
                .into_iter()
                .filter(|&i| self.board[i].answer.is_some())
                .collect();
            if answered.is_empty() {
                continue;
            }
            let mut outcome = match self.vote_over(&answered) {
                Some(o) => o,
                None => continue,
            };
            // The answer's confidence: the judge's score, else agreement among the samples,
            // else the member's recorded accuracy.
            let confidence = if let Some(judge) = self.spec.judge.clone() {
                let prompt = prompts::score(self.text(outcome.chosen));
                let spec =
                    self.prompt_spec(&judge, Part::Score, round, prompt, vec![outcome.chosen]);
                let judged = self.phase(vec![spec], |_, _| false).await;
                match self.board[judged[0]].score {
                    Some(s) => {
                        outcome.selected_by = Some(judged[0]);
                        s
                    }
                    None => outcome.raw_confidence,
                }
            } else if answered.len() > 1 {
                outcome.voters.len() as f64 / answered.len() as f64
            } else {
                outcome.raw_confidence
            };
            outcome.raw_confidence = confidence;
            let stop = confidence >= self.spec.escalate_below;
            last = Some(outcome);
            if stop {
                break;
            }
        }
        last.ok_or_else(|| not_enough(self.spec, 0, 1))
    }

    /// Layers of members that read the previous layer; the aggregator synthesizes.
    async fn mixture(&mut self) -> Result<Outcome, ApiError> {
        let mut layer = self.first_answers(0, false).await;
        for round in 1..self.spec.rounds {
            let prev = self.answered(&layer);
            if prev.is_empty() {
                break;
            }
            let texts: Vec<String> = prev.iter().map(|&i| self.text(i).to_owned()).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let prompt = prompts::revise(&refs);
            let calls: Vec<CallSpec> = self
                .spec
                .members
                .iter()
                .map(|m| self.prompt_spec(m, Part::Revise, round, prompt.clone(), prev.clone()))
                .collect();
            layer = self.phase(calls, |_, _| false).await;
        }
        let last = self.answered(&layer);
        let quorum = self.quorum(layer.len());
        if last.len() < quorum {
            return Err(not_enough(self.spec, last.len(), quorum));
        }
        let Some(aggregator) = self.spec.aggregator.clone() else {
            return self
                .vote_over(&last)
                .ok_or_else(|| not_enough(self.spec, 0, quorum));
        };
        let texts: Vec<String> = last.iter().map(|&i| self.text(i).to_owned()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let spec = self.prompt_spec(
            &aggregator,
            Part::Aggregate,
            self.spec.rounds,
            prompts::aggregate(&refs),
            last.clone(),
        );
        let ids = self.phase(vec![spec], |_, _| false).await;
        let agg = ids[0];
        if self.board[agg].text.is_none() {
            // The aggregator failed: the last layer's plurality answers.
            return self
                .vote_over(&last)
                .ok_or_else(|| not_enough(self.spec, 0, quorum));
        }
        let mut all = last.clone();
        all.push(agg);
        Ok(self.outcome_for(agg, &all, None))
    }

    /// Members answer, then revise after reading the others, for `rounds` rounds.
    async fn debate(&mut self) -> Result<Outcome, ApiError> {
        let mut current = self.first_answers(0, false).await;
        for round in 1..self.spec.rounds {
            let prev = self.answered(&current);
            if prev.len() < 2 {
                break;
            }
            let calls: Vec<CallSpec> = prev
                .iter()
                .map(|&mine| {
                    let others: Vec<usize> = prev.iter().copied().filter(|&o| o != mine).collect();
                    let texts: Vec<&str> = others.iter().map(|&o| self.text(o)).collect();
                    let member = self.board[mine].spec.member.clone();
                    let mut spec = self.prompt_spec(
                        &member,
                        Part::Revise,
                        round,
                        prompts::revise(&texts),
                        others,
                    );
                    spec.sample = self.board[mine].spec.sample;
                    spec.seed = self.board[mine].spec.seed;
                    spec
                })
                .collect();
            current = self.phase(calls, |_, _| false).await;
        }
        let last: Vec<usize> = self
            .answered(&current)
            .into_iter()
            .filter(|&i| self.board[i].answer.is_some() || self.answer_kind() == AnswerKind::Text)
            .collect();
        let quorum = self.quorum(current.len());
        if last.len() < quorum {
            return Err(not_enough(self.spec, last.len(), quorum));
        }
        if self.spec.judge.is_some() {
            Ok(self.judge_pick(&last, false, self.spec.rounds).await)
        } else {
            self.vote_over(&last)
                .ok_or_else(|| not_enough(self.spec, 0, quorum))
        }
    }

    /// One member drafts, another critiques, the first revises.
    async fn refine(&mut self) -> Result<Outcome, ApiError> {
        let drafter = self.spec.members[0].clone();
        let critic = self.spec.members[1].clone();
        let mut spec = self.answer_spec(&drafter, 0, 0, 0);
        spec.role = Part::Draft;
        let ids = self.phase(vec![spec], |_, _| false).await;
        let mut current = ids[0];
        if self.board[current].text.is_none() {
            return Err(not_enough(self.spec, 0, 1));
        }
        let first = current;
        for cycle in 0..self.spec.rounds {
            let round = cycle * 2 + 1;
            let draft = self.text(current).to_owned();
            let spec = self.prompt_spec(
                &critic,
                Part::Critique,
                round,
                prompts::critique(&draft),
                vec![current],
            );
            let crit = self.phase(vec![spec], |_, _| false).await[0];
            let Some(critique) = self.board[crit].text.clone() else {
                break;
            };
            let spec = self.prompt_spec(
                &drafter,
                Part::Revise,
                round + 1,
                prompts::revise_after_critique(&draft, &critique),
                vec![current, crit],
            );
            let revised = self.phase(vec![spec], |_, _| false).await[0];
            if self.board[revised].text.is_none() {
                break;
            }
            current = revised;
        }
        let mut ids = vec![first];
        if current != first {
            ids.push(current);
        }
        Ok(self.outcome_for(current, &ids, None))
    }

    async fn best_of_n(&mut self) -> Result<Outcome, ApiError> {
        let ids = self.first_answers(0, false).await;
        let answered = self.answered(&ids);
        let quorum = self.quorum(ids.len());
        if answered.len() < quorum {
            return Err(not_enough(self.spec, answered.len(), quorum));
        }
        Ok(self.judge_pick(&answered, false, 1).await)
    }
}

fn member_of(rt: &crate::Runtime, name: &str) -> Member {
    let quality = rt
        .config
        .models
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.quality);
    let observations = if quality.is_some() {
        CONFIGURED_QUALITY_OBSERVATIONS
    } else {
        0
    };
    Member::new(name, quality, observations)
}

/// Whether the answers in hand already decide the vote: a quorum answered, and the leader's
/// lead is more than the calls still pending could close.
fn decided(done: &[&Entry], pending: usize, quorum: usize) -> bool {
    let answers: Vec<&str> = done.iter().filter_map(|e| e.answer.as_deref()).collect();
    if answers.len() < quorum {
        return false;
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for a in answers {
        match counts.iter_mut().find(|(k, _)| *k == a) {
            Some((_, n)) => *n += 1,
            None => counts.push((a, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let lead = counts.first().map_or(0, |c| c.1);
    let second = counts.get(1).map_or(0, |c| c.1);
    lead > second + pending
}

/// Per-token prices (input, output) of a model: the dearest of its targets (a `select` model's
/// candidates); `None` when one is unknown.
fn model_prices(rt: &crate::Runtime, name: &str) -> Option<(f64, f64)> {
    let names: Vec<String> = match rt.selector(name) {
        Some(s) => s.config.candidates.clone(),
        None => vec![name.to_owned()],
    };
    let mut worst: Option<(f64, f64)> = None;
    for n in names {
        let route = rt.resolve(&n).ok()?;
        for t in &route.targets {
            let p = t.pricing?;
            let one = p.cost(&Usage::new(1_000_000, 0)).usd() / 1e6;
            let out = p.cost(&Usage::new(0, 1_000_000)).usd() / 1e6;
            worst = Some(match worst {
                None => (one, out),
                Some((a, b)) => (a.max(one), b.max(out)),
            });
        }
    }
    worst
}

/// The planned calls' (model, answers quoted in its prompt), for the budget.
fn plan(spec: &OrchestrateConfig) -> Vec<(String, u64)> {
    let n = spec.members.len() as u64;
    let s = u64::from(spec.samples);
    let mut calls: Vec<(String, u64)> = Vec::new();
    let answers = |calls: &mut Vec<(String, u64)>, reads: u64, times: u64| {
        for m in &spec.members {
            for _ in 0..times {
                calls.push((m.clone(), reads));
            }
        }
    };
    match spec.strategy {
        Strategy::Vote => {
            answers(&mut calls, 0, s);
            if let Some(j) = &spec.judge {
                calls.push((j.clone(), n * s));
            }
        }
        Strategy::Cascade => {
            answers(&mut calls, 0, s);
            if let Some(j) = &spec.judge {
                for _ in 0..n {
                    calls.push((j.clone(), 1));
                }
            }
        }
        Strategy::Mixture => {
            answers(&mut calls, 0, 1);
            for _ in 1..spec.rounds {
                answers(&mut calls, n, 1);
            }
            if let Some(a) = &spec.aggregator {
                calls.push((a.clone(), n));
            }
        }
        Strategy::Debate => {
            answers(&mut calls, 0, 1);
            for _ in 1..spec.rounds {
                answers(&mut calls, n.saturating_sub(1), 1);
            }
            if let Some(j) = &spec.judge {
                calls.push((j.clone(), n));
            }
        }
        Strategy::Refine => {
            calls.push((spec.members[0].clone(), 0));
            for _ in 0..spec.rounds {
                calls.push((spec.members[1].clone(), 1));
                calls.push((spec.members[0].clone(), 2));
            }
        }
        Strategy::BestOfN => {
            answers(&mut calls, 0, s);
            if let Some(j) = &spec.judge {
                calls.push((j.clone(), n * s));
            }
        }
    }
    calls
}

/// The inner calls' output cap and the orchestration's worst-case cost under it.
///
/// With `budget_usd`, the cap is the largest that keeps every planned call's worst case (its
/// prompt, the answers it quotes at the cap, its output at the cap) within the budget; a budget
/// that cannot pay for [`MIN_INNER_OUTPUT`] tokens a call is refused up front.
fn budget_plan(
    rt: &crate::Runtime,
    spec: &OrchestrateConfig,
    prompt_tokens: u64,
    wanted: u32,
) -> Result<(u32, Option<Nanos>), ApiError> {
    let calls = plan(spec);
    // cost(M) = fixed + per_token * M
    let mut fixed = 0.0;
    let mut per_token = 0.0;
    let mut unknown: Option<String> = None;
    for (model, reads) in &calls {
        match model_prices(rt, model) {
            Some((input, output)) => {
                let prompt = prompt_tokens
                    + if *reads > 0 {
                        PROMPT_OVERHEAD_TOKENS
                    } else {
                        0
                    };
                fixed += input * prompt as f64;
                // A quoted answer's estimate can exceed its tokens (4 characters a token).
                per_token += input * *reads as f64 * 1.5 + output;
            }
            None => unknown = Some(model.clone()),
        }
    }
    let Some(budget) = spec.budget else {
        let worst = unknown
            .is_none()
            .then(|| Nanos::from_usd(fixed + per_token * f64::from(wanted)));
        return Ok((wanted, worst));
    };
    if let Some(model) = unknown {
        return Err(ApiError::new(
            ErrorCode::PriceUnknown,
            format!(
                "This orchestration has a budget, but the price of `{model}` is unknown, so its cost cannot be bounded. An administrator must declare the target's `price` in the config."
            ),
        ));
    }
    let usd = budget.usd();
    let cap = if per_token > 0.0 {
        ((usd - fixed) / per_token).floor()
    } else {
        f64::from(wanted)
    };
    if !cap.is_finite() || cap < f64::from(MIN_INNER_OUTPUT) {
        return Err(ApiError::new(
            ErrorCode::BudgetExceeded,
            format!(
                "The orchestration's budget of ${budget} cannot pay for its {} inner calls with at least {MIN_INNER_OUTPUT} output tokens each (their prompts alone could cost ${}).",
                calls.len(),
                Nanos::from_usd(fixed)
            ),
        )
        .with_param("budget_usd"));
    }
    let cap = (cap as u64).min(u64::from(wanted)) as u32;
    Ok((cap, Some(budget)))
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The evidence graph of the blackboard and the outcome.
fn graph(board: &[Entry], outcome: Option<&Outcome>, confidence: f64) -> Graph {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let edge = |from: String, to: String, kind: EdgeKind| GraphEdge {
        from,
        to,
        kind,
        extra: Default::default(),
    };
    for (i, e) in board.iter().enumerate() {
        nodes.push(GraphNode {
            id: format!("call-{i}"),
            kind: NodeKind::Call,
            model: Some(e.spec.member.clone()),
            role: Some(e.spec.role.as_str().into()),
            round: e.spec.round,
            sample: e.spec.sample,
            request_id: (!e.request_id.is_empty()).then(|| e.request_id.clone()),
            served_by: e.served_by.clone(),
            status: Some(e.status),
            error: e.error.clone(),
            text: e
                .text
                .as_deref()
                .map(|t| truncate_chars(t, GRAPH_TEXT_CHARS)),
            score: e.score,
            prompt_tokens: e.usage.prompt_tokens,
            completion_tokens: e.usage.completion_tokens,
            cost_usd: e.cost,
            latency_ms: e.latency_ms,
            ..Default::default()
        });
        for &r in &e.spec.reads {
            let from = if board[r].spec.role.answers() && board[r].answer.is_some() {
                format!("answer-{r}")
            } else {
                format!("call-{r}")
            };
            edges.push(edge(from, format!("call-{i}"), EdgeKind::ReadBy));
        }
        if e.spec.role.answers() {
            if let Some(a) = &e.answer {
                nodes.push(GraphNode {
                    id: format!("answer-{i}"),
                    kind: NodeKind::Answer,
                    model: Some(e.spec.member.clone()),
                    round: e.spec.round,
                    sample: e.spec.sample,
                    value: Some(a.clone()),
                    ..Default::default()
                });
                edges.push(edge(
                    format!("call-{i}"),
                    format!("answer-{i}"),
                    EdgeKind::Extracted,
                ));
            }
        }
        if let Some(claim) = &e.claim {
            nodes.push(GraphNode {
                id: format!("claim-{i}"),
                kind: NodeKind::Claim,
                model: Some(e.spec.member.clone()),
                round: e.spec.round,
                value: Some(claim.clone()),
                score: e.score,
                ..Default::default()
            });
            edges.push(edge(
                format!("call-{i}"),
                format!("claim-{i}"),
                EdgeKind::Extracted,
            ));
            let kind = match e.spec.role {
                Part::Critique => Some(EdgeKind::Critiqued),
                Part::Score => Some(EdgeKind::Scored),
                _ => None,
            };
            if let Some(kind) = kind {
                for &a in &e.spec.about {
                    let target = if board[a].answer.is_some() {
                        format!("answer-{a}")
                    } else {
                        format!("call-{a}")
                    };
                    edges.push(edge(format!("claim-{i}"), target, kind));
                }
            }
        }
    }
    if let Some(o) = outcome {
        let chosen = &board[o.chosen];
        nodes.push(GraphNode {
            id: "final".into(),
            kind: NodeKind::Final,
            model: Some(chosen.spec.member.clone()),
            value: o.final_answer.clone(),
            score: Some(confidence),
            prompt_tokens: board.iter().map(|e| e.usage.prompt_tokens).sum(),
            completion_tokens: board.iter().map(|e| e.usage.completion_tokens).sum(),
            cost_usd: board.iter().map(|e| e.cost).sum(),
            ..Default::default()
        });
        let source = |i: usize| {
            if board[i].answer.is_some() {
                format!("answer-{i}")
            } else {
                format!("call-{i}")
            }
        };
        for &v in &o.voters {
            edges.push(edge(source(v), "final".into(), EdgeKind::VotedFor));
        }
        edges.push(edge(source(o.chosen), "final".into(), EdgeKind::Selected));
        if let Some(by) = o.selected_by {
            let from = if board[by].claim.is_some() {
                format!("claim-{by}")
            } else {
                format!("call-{by}")
            };
            edges.push(edge(from, source(o.chosen), EdgeKind::Selected));
        }
    }
    Graph {
        nodes,
        edges,
        extra: Default::default(),
    }
}

fn contributors(board: &[Entry], final_answer: Option<&str>) -> Vec<Contributor> {
    let mut out: Vec<Contributor> = Vec::new();
    for e in board {
        let idx = match out.iter().position(|c| c.model == e.spec.member) {
            Some(i) => i,
            None => {
                out.push(Contributor {
                    model: e.spec.member.clone(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let c = &mut out[idx];
        let role = e.spec.role.as_str().to_owned();
        if !c.roles.contains(&role) {
            c.roles.push(role);
        }
        c.calls += 1;
        if e.error.as_deref() == Some(CANCELLED) {
            c.cancelled_calls += 1;
        } else if e.status != 200 {
            c.failed_calls += 1;
        }
        if e.served_by.is_some() {
            c.served_by = e.served_by.clone();
        }
        if e.spec.role.answers() && e.answer.is_some() {
            c.answer = e.answer.clone();
            c.agrees = final_answer.is_some() && e.answer.as_deref() == final_answer;
        }
        c.prompt_tokens += e.usage.prompt_tokens;
        c.completion_tokens += e.usage.completion_tokens;
        c.cost_usd += e.cost;
    }
    out
}

impl Gateway {
    /// The orchestration model of that name, if it is one.
    pub fn orchestration_config(&self, model: &str) -> Option<OrchestrateConfig> {
        self.runtime()
            .orchestration(model)
            .map(|r| r.config.clone())
    }

    /// Checks a per-request orchestration's models against the running config.
    pub fn check_orchestration(&self, spec: &OrchestrateConfig) -> Result<(), ApiError> {
        if spec.calibration.is_some() {
            return Err(ApiError::invalid_request(
                "Invalid request: `calibration`: a calibration map can only be configured (it names a file on the gateway).",
                "calibration",
            ));
        }
        let rt = self.runtime();
        spec.check_models(None, |name| {
            plexus_core::config::model_kind(&rt.config.models, &rt.config.providers, name)
        })
        .map_err(|e| {
            ApiError::invalid_request(
                format!("Invalid request: `{}`: {}", e.field, e.message),
                &e.field,
            )
        })
    }

    /// Runs an orchestration of `chat` under `spec`, as the model `model` (a configured
    /// orchestration model, or [`PER_REQUEST_MODEL`]), to its end: a tracked task, so a caller
    /// that leaves does not cut it short, and its inner calls are all billed and recorded.
    pub async fn orchestrate(
        &self,
        ctx: CallCtx,
        model: String,
        spec: OrchestrateConfig,
        chat: Box<ChatCompletionRequest>,
        endpoint: &'static str,
    ) -> Result<Orchestrated, Failure> {
        let gateway = self.clone();
        let task = self.tasks().spawn(async move {
            tokio::select! {
                biased;
                done = gateway.run_orchestration(&ctx, &model, &spec, &chat, endpoint) => done,
                // Shutdown's grace is over: dropping the run records it and its inner calls
                // as cancelled.
                () = gateway.in_flight_stop().cancelled() => Err(Failure {
                    error: ApiError::new(
                        ErrorCode::ServiceUnavailable,
                        "The gateway is shutting down; the orchestration was cancelled.",
                    )
                    .with_retry_after(Some(std::time::Duration::from_secs(1))),
                    meta: AnswerMeta::default(),
                }),
            }
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Failure {
                error: ApiError::internal(format!("the orchestration's task failed: {e}")),
                meta: AnswerMeta::default(),
            }),
        }
    }

    async fn run_orchestration(
        &self,
        ctx: &CallCtx,
        model: &str,
        spec: &OrchestrateConfig,
        chat: &ChatCompletionRequest,
        endpoint: &'static str,
    ) -> Result<Orchestrated, Failure> {
        let fail = |error: ApiError| Failure {
            error,
            meta: AnswerMeta::default(),
        };
        let rt = self.runtime();
        let stream = chat.is_stream();
        let refuse = |e: ApiError| async {
            self.record_rejected(ctx, endpoint, &[], &e).await;
            Err(fail(e))
        };
        if let Err(e) = validate(chat) {
            return refuse(e).await;
        }
        if model != PER_REQUEST_MODEL {
            if let Err(e) = check_model_access(&ctx.principal, model) {
                return refuse(e).await;
            }
        }
        // As the pipeline estimates an inner call's prompt (its whole request, serialized),
        // with room for the fields the orchestrator sets.
        let prompt_tokens = serde_json::to_vec(chat)
            .map_or(0, |v| crate::record::estimate_tokens(v.len()))
            + INNER_FIELDS_TOKENS;
        let wanted = chat
            .max_output_tokens()
            .unwrap_or(DEFAULT_INNER_OUTPUT)
            .max(MIN_INNER_OUTPUT);
        let (max_tokens, worst) = match budget_plan(&rt, spec, prompt_tokens, wanted) {
            Ok(p) => p,
            Err(e) => return refuse(e).await,
        };
        let reserve = spec.budget.or(worst).unwrap_or(Nanos::ZERO);
        let mut ctx = ctx.clone();
        let deadline = tokio::time::Instant::now() + spec.timeout;
        ctx.deadline = Some(ctx.deadline.map_or(deadline, |d| d.min(deadline)));
        let mut composite = self
            .begin_composite(&ctx, endpoint, model, stream, reserve, spec.budget)
            .await
            .map_err(fail)?;
        let members: Vec<Member> = spec.members.iter().map(|m| member_of(&rt, m)).collect();
        let mut run = Run {
            gateway: self,
            composite: &composite,
            spec,
            chat,
            max_tokens,
            deadline,
            board: Vec::new(),
            members,
            params: ConfidenceParams::for_kind(spec.answer),
        };
        let skipped_to = if spec.skip_if_easy {
            self.easy_member(&rt, spec, chat).await
        } else {
            None
        };
        let outcome = match &skipped_to {
            Some((member, quality)) => {
                let spec_call = run.answer_spec(member, 0, 0, 0);
                let ids = run.phase(vec![spec_call], |_, _| false).await;
                if run.board[ids[0]].text.is_some() {
                    let mut o = run.outcome_for(ids[0], &ids, None);
                    o.raw_confidence = *quality;
                    Ok(o)
                } else {
                    Err(not_enough(spec, 0, 1))
                }
            }
            None => match spec.strategy {
                Strategy::Vote => run.vote().await,
                Strategy::Cascade => {
                    let mut order = spec.members.clone();
                    order.sort_by(|a, b| {
                        let price =
                            |m: &str| model_prices(&rt, m).map_or(f64::INFINITY, |(i, o)| i + o);
                        price(a).total_cmp(&price(b))
                    });
                    run.cascade(&order).await
                }
                Strategy::Mixture => run.mixture().await,
                Strategy::Debate => run.debate().await,
                Strategy::Refine => run.refine().await,
                Strategy::BestOfN => run.best_of_n().await,
            },
        };
        let board = std::mem::take(&mut run.board);
        drop(run);
        let usage = board.iter().fold(Usage::new(0, 0), |u, e| {
            Usage::new(
                u.prompt_tokens + e.usage.prompt_tokens,
                u.completion_tokens + e.usage.completion_tokens,
            )
        });
        let cost: Nanos = board.iter().map(|e| e.cost).sum();
        let created = self.clock().now_unix_secs();
        let calibrator = rt.orchestration(model).and_then(|r| r.calibrator.as_ref());
        let (confidence, raw, agreement, final_answer) = match &outcome {
            Ok(o) => (
                calibrator.map_or(o.raw_confidence, |c| c.apply(o.raw_confidence)),
                o.raw_confidence,
                o.agreement,
                o.final_answer.clone(),
            ),
            Err(_) => (0.0, 0.0, 0.0, None),
        };
        let mut result = Orchestration {
            id: composite.request_id().to_owned(),
            object: Orchestration::OBJECT.into(),
            created,
            model: model.to_owned(),
            strategy: spec.strategy.as_str().into(),
            status: if outcome.is_ok() {
                "completed"
            } else {
                "failed"
            }
            .into(),
            error: outcome
                .as_ref()
                .err()
                .map(|e| serde_json::json!({"code": e.code.as_str(), "message": e.message})),
            answer: None,
            final_answer: final_answer.clone(),
            confidence,
            raw_confidence: raw,
            agreement,
            contributors: contributors(&board, final_answer.as_deref()),
            skipped_to: skipped_to.map(|(m, _)| m),
            graph: graph(&board, outcome.as_ref().ok(), confidence),
            usage: usage.clone(),
            cost_usd: cost,
            extra: Default::default(),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(error) => {
                if let Ok(json) = serde_json::to_string(&result) {
                    composite.set_orchestration(json);
                }
                composite.finish(error.status(), Some(&error), "").await;
                return Err(Failure {
                    error,
                    meta: AnswerMeta {
                        orchestration: Some((result.id, None)),
                        ..AnswerMeta::default()
                    },
                });
            }
        };
        let chosen = &board[outcome.chosen];
        let mut answer = chosen.completion.clone().unwrap_or_else(|| ChatCompletion {
            id: String::new(),
            object: "chat.completion".into(),
            created,
            model: String::new(),
            choices: vec![Choice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant".into(),
                    content: chosen.text.clone(),
                    ..Default::default()
                },
                finish_reason: Some("stop".into()),
                logprobs: None,
            }],
            usage: None,
            system_fingerprint: None,
            extra: Default::default(),
        });
        answer.id = result.id.clone();
        answer.model = model.to_owned();
        answer.created = created;
        answer.choices.truncate(1);
        answer.usage = Some(usage);
        answer.extra.remove("plexus");
        let summary = serde_json::to_value(result.summary()).unwrap_or_default();
        answer.extra.insert("plexus".into(), summary);
        result.answer = Some(answer.clone());
        let served_by = chosen.served_by.clone().unwrap_or_default();
        if let Ok(json) = serde_json::to_string(&result) {
            composite.set_orchestration(json);
        }
        composite.finish(200, None, &served_by).await;
        let body = serde_json::to_vec(&answer)
            .map(Bytes::from)
            .unwrap_or_default();
        let meta = AnswerMeta {
            served_by: Some(served_by),
            ..AnswerMeta::default()
        };
        Ok(Orchestrated { result, body, meta })
    }

    /// An orchestration model asked for through the chat pipeline: its answer as an ordinary
    /// `chat.completion`, or replayed as a stream of the final synthesis (the `plexus` object
    /// rides on the chunk that finishes the choice).
    pub(crate) async fn complete_orchestrated(
        &self,
        ctx: &CallCtx,
        spec: OrchestrateConfig,
        req: ChatRequest,
    ) -> Result<Answer, Failure> {
        let model = req.chat.model.clone();
        let done = self
            .run_orchestration(ctx, &model, &spec, &req.chat, req.endpoint())
            .await?;
        let Orchestrated {
            result,
            body,
            mut meta,
        } = done;
        meta.orchestration = Some((result.id.clone(), Some(result.confidence)));
        if !req.chat.is_stream() {
            return Ok(Answer::Full(crate::FullAnswer {
                meta,
                body,
                usage: result.usage.clone(),
                cost: result.cost_usd,
            }));
        }
        let Some(answer) = &result.answer else {
            return Err(Failure {
                error: ApiError::internal("the orchestration has no answer"),
                meta,
            });
        };
        let mut chunks = plexus_cache::replay::replay(answer, true);
        if let Some(summary) = answer.extra.get("plexus") {
            if let Some(finish) = chunks
                .iter_mut()
                .rev()
                .find(|c| c.choices.iter().any(|ch| ch.finish_reason.is_some()))
            {
                finish.extra.insert("plexus".into(), summary.clone());
            }
        }
        Ok(Answer::Stream(crate::AnswerStream::ready(meta, chunks)))
    }

    /// Task analysis (`skip_if_easy`): the member the selector's quality predictor rates at
    /// least `escalate_below` for this prompt, the cheapest such; `None` when collaboration is
    /// worth it (or nothing predicts quality).
    async fn easy_member(
        &self,
        rt: &crate::Runtime,
        spec: &OrchestrateConfig,
        chat: &ChatCompletionRequest,
    ) -> Option<(String, f64)> {
        let prompt = crate::select::prompt_text(chat).unwrap_or_default();
        let mut best: Option<(String, f64, f64)> = None;
        for m in &spec.members {
            let selector = rt
                .config
                .models
                .iter()
                .find(|c| c.select.as_ref().is_some_and(|s| s.candidates.contains(m)))
                .map(|c| c.name.clone());
            let quality = match selector {
                Some(s) => self.predicted_quality(&s, m, &prompt).await,
                None => rt
                    .config
                    .models
                    .iter()
                    .find(|c| &c.name == m)
                    .and_then(|c| c.quality),
            };
            let Some(q) = quality else { continue };
            if q < spec.escalate_below {
                continue;
            }
            let price = model_prices(rt, m).map_or(f64::INFINITY, |(i, o)| i + o);
            if best.as_ref().is_none_or(|(_, _, p)| price < *p) {
                best = Some((m.clone(), q, price));
            }
        }
        best.map(|(m, q, _)| (m, q))
    }
}
