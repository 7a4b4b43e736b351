//! The provider simulator behind `plexus mock`: speaks the OpenAI (and Azure OpenAI),
//! Anthropic and Gemini wire formats, plain and streamed, with deterministic answers and
//! injectable latency and faults. Used by tests, benchmarks and users' load tests.
//!
//! Endpoints: OpenAI `POST /v1/chat/completions`, `POST /v1/responses` (the Responses API),
//! `POST /v1/embeddings`, `GET /v1/models[/{id}]`; Azure OpenAI
//! `/openai/deployments/{deployment}/{chat/completions,embeddings}`; Anthropic
//! `POST /v1/messages[/count_tokens]`; Gemini `/v1beta/models/{model}:{generateContent,
//! streamGenerateContent,countTokens,embedContent,…}`. Every format's request is reduced to
//! the same neutral input, so a conversation gets the same answer through any of them.
//!
//! The Responses endpoint takes `input` as a string or items (messages of any role,
//! `function_call`, `function_call_output`), `instructions`, `function` tools (other tool
//! types, such as `web_search` or Codex's `custom` and `namespace`, are ignored),
//! `tool_choice`, `max_output_tokens` (`status: "incomplete"` when it cuts the answer),
//! `text.format` JSON schemas, and `reasoning` (`effort: "none"` turns reasoning off; a
//! `summary` returns the reasoning text as a summary). Streamed, it sends the semantic events
//! (`response.created` … `response.completed` / `response.incomplete`) with a strictly
//! increasing `sequence_number`. It is stateless: `previous_response_id`, `store` and
//! `background` are echoed, not acted on.
//!
//! Behaviour comes from the model name, `base+directive+directive…`:
//!
//! * base keywords (substring of the part before the first `+`): `echo` repeats the last
//!   user message; `tool` calls the first offered tool (`parallel` anywhere in the name: the
//!   first two) and acknowledges tool results; `json` answers a JSON object fitting the
//!   requested schema; `think` / `reason` adds reasoning; `quiz` answers arithmetic (see
//!   below); `agent` drives an agent client's shell tool (see below). Anything else answers
//!   a deterministic sentence of `tokens` words derived from the prompt.
//! * directives: `agent` (the agent behaviour on any base, e.g.
//!   `claude-sonnet-4-5+agent`), `latency-MS`, `ttft-MS`, `jitter-MS` (uniform extra delay, drawn per request), `tps-N`, `tokens-N`, `cached-N`, `fault-STATUS`,
//!   `retry-after-S`, `timeout`, `reset`, `malformed`, `cut-after-N`, `stall-after-N`,
//!   `fail-first-N`.
//! * headers override both: `x-mock-latency-ms`, `x-mock-ttft-ms`, `x-mock-latency-jitter-ms`,
//!   `x-mock-tokens-per-second`, `x-mock-tokens`, `x-mock-cached-tokens`, and `x-mock-fault`
//!   (`429;retry-after=2`, `timeout`, `reset`, `malformed`, `cut-after=3`, `stall-after=2`,
//!   `fail-first=2`, `500`).
//!
//! # The `agent` behaviour
//!
//! For agent clients (Claude Code, Codex) end to end, in every wire format. A model whose
//! base contains `agent`, or any model with the `+agent` directive:
//!
//! * with tools offered (and `tool_choice` not ruling the tool out) and no tool result yet,
//!   calls the client's shell tool with the first command quoted in backticks in the last
//!   user message (`` Run `echo hi` `` → `echo hi`; a ```` ``` ```` fence gives the first
//!   line of its content; `<system-reminder>`, `<environment_context>` and
//!   `<user_instructions>` sections are skipped). The shell tool is the first offered tool
//!   named `Bash` (input `{"command": "…"}`), `exec_command` (`{"cmd": "…"}`) or `shell`,
//!   else the first whose schema has a `command` or `cmd` property; the property's schema
//!   decides between a string and an array (`["bash", "-lc", "…"]`, Codex's `shell`). Other
//!   required properties get dummy values. Without a command or a shell-like tool the model
//!   behaves as its base says;
//! * with the conversation ending in tool results, answers `The command printed: <result>`
//!   (trimmed, at most 2000 characters; `The command failed: …` for an Anthropic
//!   `is_error` or a Gemini `error` response).
//!
//! # The `quiz` family
//!
//! For evaluating orchestrators that combine models (voting, judging, critique). A model
//! whose base contains `quiz` looks for the last `<int> <op> <int>` (op `+ - * x ×`, ints
//! may be negative and have thousands commas) in the conversation's **first** user message
//! (the text before any `<answer`/`<candidate`/`<draft` tag) and answers it right with
//! probability `acc`, deterministically per (full model name, question, request seed; OpenAI
//! `seed`, Gemini `generationConfig.seed`, none for Anthropic). Without a question it
//! behaves like any other model. Directives:
//!
//! * `acc-P`: probability of a right answer (default 0.7, clamped to 0..1).
//! * `corr-P`: probability that a draw uses a latent shared by every quiz model for the
//!   question instead of the model's own (default 0). Models drawing from it are right
//!   together and, when wrong, give the same wrong answer.
//! * `wrong-K`: wrong answers are one of K alternatives (default: unbounded, so independent
//!   wrong answers practically never agree).
//!
//! The answer is free text ending with the final number, in one of several phrasings
//! (`Final answer: \boxed{1239}`, `The answer is **1,239**.`, `That makes 1,239 units in
//! total.`, …). The last user message may be an orchestration prompt; each uses its own
//! independent draw at the same `acc`/`corr`:
//!
//! * pick: `<candidate id="N">…</candidate>` blocks and `Reply with "Best: ` →
//!   `After comparing the candidates, Best: N` (a right judge picks a right candidate, a
//!   wrong one a wrong candidate; else the first);
//! * score: one `<candidate id="1">…</candidate>` and `Reply with "Score: ` → `Score: 9`
//!   (right judge: right 9, wrong 2; wrong judge: right 3, wrong 8);
//! * critique: `<draft>…</draft>` and `Critique` → `The draft is correct: its answer N
//!   checks out.` or `The draft is wrong: N does not follow. Recompute it carefully.`;
//! * read others: `<answer id="N">…</answer>` blocks → the right answer if the revision
//!   draw is right, else the plurality of the blocks' last numbers (ties: first seen).
//!
//! Non-streamed answers take `latency + ttft + tokens / tps`; streamed ones send the head
//! after `latency`, the first chunk after `ttft`, then one chunk per token at `tps`.
#![forbid(unsafe_code)]
// Handlers return their error as the finished HTTP response; it is built on error paths only.
#![allow(clippy::result_large_err)]

mod agent;
mod anthropic;
mod behavior;
mod common;
mod config;
mod gemini;
mod gen;
mod openai;
mod quiz;
mod responses;
mod server;
mod sse;
mod state;

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;

pub use config::{MockConfig, ModelProfile};
pub use server::{run, serve, serve_state, MockServer};
pub use state::{MockState, RecordedRequest};

/// All endpoints, on `state`. Served by anything axum can run; only the `reset` fault needs
/// [`serve`] (elsewhere it aborts the response body instead of resetting the connection).
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route(
            "/v1/models/{target}",
            get(openai::model).post(gemini::model_action),
        )
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(openai::azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(openai::azure_embeddings),
        )
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1beta/models", get(gemini::list_models))
        .route(
            "/v1beta/models/{target}",
            get(gemini::get_model).post(gemini::model_action),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(State(state): State<MockState>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let flavor = if path.starts_with("/v1beta") {
        common::Flavor::Gemini
    } else {
        common::Flavor::OpenAi
    };
    let ctx = common::Ctx::read(&state, req, flavor).await;
    ctx.error(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {path})"),
    )
}
