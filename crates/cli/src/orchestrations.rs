//! `plexus orchestrations show ID`: a stored orchestration (`GET /v1/orchestrations/{id}`)
//! through the SDK, printed as a header, a contributors table and the evidence graph as a tree
//! by round; `--json` prints the server's JSON instead.

use crate::admin::{self, Conn, Output};
use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use plexus_sdk::admin::Nanos;
use plexus_sdk::{EdgeKind, GraphEdge, GraphNode, NodeKind, Orchestration};
use std::collections::HashSet;

/// The width the text view keeps to: longer lines are cut with `…`.
const WIDTH: usize = 100;

/// `plexus orchestrations`.
#[derive(Args, Debug)]
pub struct OrchestrationsCmd {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    out: Output,
    #[command(subcommand)]
    cmd: OrchestrationsSub,
}

#[derive(Subcommand, Debug)]
enum OrchestrationsSub {
    /// Show one orchestration: its answer, confidence, contributors and evidence graph (every
    /// inner call by round, what it read, the answers and claims taken from it, and how the
    /// final answer was reached).
    Show {
        /// The orchestration's id (its `x-plexus-orchestration-id` header, or
        /// `plexus.orchestration_id` in an orchestration model's answer).
        id: String,
    },
}

pub async fn run(cmd: OrchestrationsCmd) -> Result<()> {
    let root = cmd.conn.root()?;
    let key = cmd.conn.api_key.as_deref().filter(|k| !k.is_empty());
    let client = plexus_sdk::Client::new(&format!("{root}/v1"), key)
        .map_err(|e| anyhow!("cannot build the HTTP client: {e}"))?;
    match cmd.cmd {
        OrchestrationsSub::Show { id } => {
            if id.trim().is_empty() {
                bail!("the orchestration id is empty");
            }
            let o = client
                .orchestration(id.trim())
                .await
                .map_err(|e| admin::describe(e, &root))?;
            if cmd.out.json {
                return admin::print_json(&o);
            }
            admin::print_out(&render(&o))
        }
    }
}

/// The text view of an orchestration, every line at most [`WIDTH`] characters.
pub fn render(o: &Orchestration) -> String {
    let mut lines: Vec<String> = Vec::new();
    header(o, &mut lines);
    lines.push(String::new());
    contributors(o, &mut lines);
    lines.push(String::new());
    graph(o, &mut lines);
    let mut out = String::new();
    for line in lines {
        out.push_str(admin::clip(line.trim_end(), WIDTH).trim_end());
        out.push('\n');
    }
    out
}

fn usd(n: Nanos) -> String {
    format!("{:.6} USD", n.usd())
}

/// One line: whitespace runs (newlines included) collapsed, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    admin::clip(&text.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

fn header(o: &Orchestration, lines: &mut Vec<String>) {
    let mut rows: Vec<(&str, String)> = vec![
        ("orchestration", o.id.clone()),
        ("model", o.model.clone()),
        ("strategy", o.strategy.clone()),
    ];
    let status = match &o.error {
        Some(e) => format!("{}: {}", o.status, error_text(e)),
        None => o.status.clone(),
    };
    rows.push(("status", status));
    if o.created > 0 {
        rows.push(("created", admin::fmt_time(o.created, true)));
    }
    rows.push((
        "final answer",
        o.final_answer
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), |a| one_line(a, 80)),
    ));
    let reply = o
        .answer
        .as_ref()
        .and_then(|a| a.choices.first())
        .and_then(|c| c.message.content.as_ref())
        .and_then(|c| serde_json::to_value(c).ok())
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    if let Some(reply) = reply.filter(|r| !r.trim().is_empty()) {
        rows.push(("reply", one_line(&reply, 80)));
    }
    if let Some(to) = &o.skipped_to {
        rows.push((
            "skipped to",
            format!("{to} (an easy request: one model answered)"),
        ));
    }
    rows.push((
        "confidence",
        format!("{:.3} (raw {:.3})", o.confidence, o.raw_confidence),
    ));
    rows.push(("agreement", format!("{:.3}", o.agreement)));
    rows.push(("cost", usd(o.cost_usd)));
    rows.push((
        "tokens",
        format!(
            "{} prompt + {} completion = {}",
            o.usage.prompt_tokens,
            o.usage.completion_tokens,
            o.usage.prompt_tokens + o.usage.completion_tokens
        ),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        lines.push(format!("{k:width$}  {v}"));
    }
}

/// An error object as `message (code)`, anything else as compact JSON.
fn error_text(e: &serde_json::Value) -> String {
    let message = e
        .get("message")
        .and_then(|m| m.as_str())
        .or_else(|| e.as_str());
    let code = e.get("code").and_then(|c| c.as_str());
    match (message, code) {
        (Some(m), Some(c)) => format!("{} ({c})", one_line(m, 70)),
        (Some(m), None) => one_line(m, 80),
        _ => one_line(&e.to_string(), 80),
    }
}

fn contributors(o: &Orchestration, lines: &mut Vec<String>) {
    if o.contributors.is_empty() {
        lines.push("Contributors: none".to_owned());
        return;
    }
    lines.push("Contributors".to_owned());
    let rows: Vec<Vec<String>> = o
        .contributors
        .iter()
        .map(|c| {
            vec![
                admin::clip(&c.model, 18),
                admin::clip(&c.roles.join(","), 20),
                c.answer
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |a| one_line(a, 14)),
                if c.agrees { "yes" } else { "no" }.to_owned(),
                c.calls.to_string(),
                c.failed_calls.to_string(),
                c.cancelled_calls.to_string(),
                (c.prompt_tokens + c.completion_tokens).to_string(),
                format!("{:.6}", c.cost_usd.usd()),
            ]
        })
        .collect();
    let table = admin::table_right(
        &[
            "MODEL",
            "ROLES",
            "ANSWER",
            "AGREES",
            "CALLS",
            "FAILED",
            "CANCELLED",
            "TOKENS",
            "COST USD",
        ],
        &rows,
        4,
    );
    lines.extend(table.lines().map(str::to_owned));
}

fn edge_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Extracted => "extracted",
        EdgeKind::ReadBy => "read by",
        EdgeKind::Critiqued => "critiqued",
        EdgeKind::VotedFor => "voted for",
        EdgeKind::Selected => "selected",
        EdgeKind::Scored => "scored",
        EdgeKind::Unknown => "linked to",
    }
}

fn node_kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Call => "call",
        NodeKind::Answer => "answer",
        NodeKind::Claim => "claim",
        NodeKind::Final => "final",
        NodeKind::Unknown => "node",
    }
}

/// A list of ids, cut after `max` of them.
fn ids(list: &[&str], max: usize) -> String {
    let mut out = list
        .iter()
        .take(max)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > max {
        out.push_str(&format!(" (+{} more)", list.len() - max));
    }
    out
}

/// The graph's edges, each rendered once.
struct Edges<'a> {
    all: &'a [GraphEdge],
    used: HashSet<usize>,
}

impl<'a> Edges<'a> {
    /// Takes the edges matching `pick` that no line shows yet.
    fn take(&mut self, pick: impl Fn(&GraphEdge) -> bool) -> Vec<&'a GraphEdge> {
        let mut out = Vec::new();
        for (i, e) in self.all.iter().enumerate() {
            if !self.used.contains(&i) && pick(e) {
                self.used.insert(i);
                out.push(e);
            }
        }
        out
    }

    /// Whether an edge `from -kind-> to` exists (whether or not it was shown).
    fn has(&self, from: &str, to: &str, kind: EdgeKind) -> bool {
        self.all
            .iter()
            .any(|e| e.from == from && e.to == to && e.kind == kind)
    }
}

fn status_text(n: &GraphNode) -> String {
    match (n.status, n.error.as_deref()) {
        (Some(200), None) => "ok".to_owned(),
        (Some(s), Some(e)) => format!("failed: {} (HTTP {s})", admin::clip(e, 24)),
        (Some(s), None) => format!("HTTP {s}"),
        (None, Some(e)) => admin::clip(e, 24),
        (None, None) => "-".to_owned(),
    }
}

fn graph(o: &Orchestration, lines: &mut Vec<String>) {
    let g = &o.graph;
    let calls: Vec<&GraphNode> = g
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Call)
        .collect();
    if g.nodes.is_empty() {
        lines.push("Evidence graph: empty (no call was made)".to_owned());
        return;
    }
    lines.push(format!(
        "Evidence graph ({} calls, {} nodes, {} edges)",
        calls.len(),
        g.nodes.len(),
        g.edges.len()
    ));
    let mut edges = Edges {
        all: &g.edges,
        used: HashSet::new(),
    };
    let mut shown: HashSet<&str> = HashSet::new();
    let mut rounds: Vec<u32> = calls.iter().map(|c| c.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    for round in rounds {
        lines.push(format!("round {round}"));
        for call in calls.iter().filter(|c| c.round == round) {
            shown.insert(&call.id);
            call_lines(call, g, &mut edges, &mut shown, lines);
        }
    }
    if let Some(f) = g.nodes.iter().find(|n| n.kind == NodeKind::Final) {
        shown.insert(&f.id);
        let mut line = format!(
            "{} = {}",
            f.id,
            f.value
                .as_deref()
                .map_or_else(|| "(no extracted answer)".to_owned(), |v| one_line(v, 40))
        );
        if let Some(s) = f.score {
            line.push_str(&format!("  confidence {s:.3}"));
        }
        if let Some(m) = &f.model {
            line.push_str(&format!("  from {}", admin::clip(m, 24)));
        }
        lines.push(line);
        let into = edges.take(|e| e.to == f.id);
        for kind in [EdgeKind::VotedFor, EdgeKind::Selected, EdgeKind::Unknown] {
            let from: Vec<&str> = into
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.from.as_str())
                .collect();
            if from.is_empty() {
                continue;
            }
            let what = match kind {
                EdgeKind::VotedFor => "voted for by",
                EdgeKind::Selected => "selected",
                _ => "linked from",
            };
            lines.push(format!("  {what} {}", ids(&from, 8)));
        }
        let other: Vec<String> = into
            .iter()
            .filter(|e| {
                !matches!(
                    e.kind,
                    EdgeKind::VotedFor | EdgeKind::Selected | EdgeKind::Unknown
                )
            })
            .map(|e| format!("{} ({})", e.from, edge_name(e.kind)))
            .collect();
        if !other.is_empty() {
            lines.push(format!("  also {}", other.join(", ")));
        }
    } else {
        lines.push("final: none (no answer was chosen)".to_owned());
    }
    let orphans: Vec<&GraphNode> = g
        .nodes
        .iter()
        .filter(|n| !shown.contains(n.id.as_str()))
        .collect();
    if !orphans.is_empty() {
        lines.push("other nodes".to_owned());
        for n in orphans {
            let value = n
                .value
                .as_deref()
                .map(|v| format!(" = {}", one_line(v, 50)))
                .unwrap_or_default();
            lines.push(format!("  {} ({}){value}", n.id, node_kind_name(n.kind)));
        }
    }
    let rest = edges.take(|_| true);
    if !rest.is_empty() {
        lines.push("other edges".to_owned());
        for e in rest {
            lines.push(format!("  {} {} {}", e.from, edge_name(e.kind), e.to));
        }
    }
}

fn call_lines<'a>(
    call: &'a GraphNode,
    g: &'a plexus_sdk::Graph,
    edges: &mut Edges<'a>,
    shown: &mut HashSet<&'a str>,
    lines: &mut Vec<String>,
) {
    let mut line = format!(
        "  {}  {}  {}",
        call.id,
        call.role.as_deref().unwrap_or("?"),
        admin::clip(call.model.as_deref().unwrap_or("?"), 20)
    );
    if let Some(by) = &call.served_by {
        line.push_str(&format!("  via {}", admin::clip(by, 28)));
    }
    line.push_str(&format!(
        "  {}  {}+{} tok  {}  {} ms",
        status_text(call),
        call.prompt_tokens,
        call.completion_tokens,
        usd(call.cost_usd),
        call.latency_ms
    ));
    lines.push(line);
    let read: Vec<&str> = edges
        .take(|e| e.to == call.id && e.kind == EdgeKind::ReadBy)
        .iter()
        .map(|e| e.from.as_str())
        .collect();
    if !read.is_empty() {
        lines.push(format!("    read {}", ids(&read, 8)));
    }
    let extracted = edges.take(|e| e.from == call.id && e.kind == EdgeKind::Extracted);
    // The output, unless a claim taken from it already says the same.
    let collapse = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(text) = call.text.as_deref().filter(|t| !t.trim().is_empty()) {
        let said = collapse(text);
        let repeated = extracted.iter().any(|e| {
            g.nodes
                .iter()
                .any(|n| n.id == e.to && n.value.as_deref().map(collapse) == Some(said.clone()))
        });
        if !repeated {
            lines.push(format!("    said \"{}\"", one_line(text, WIDTH - 12)));
        }
    }
    for e in extracted {
        let Some(node) = g.nodes.iter().find(|n| n.id == e.to) else {
            lines.push(format!("    extracted {} (missing)", e.to));
            continue;
        };
        shown.insert(&node.id);
        let value = node
            .value
            .as_deref()
            .map_or_else(|| "-".to_owned(), |v| one_line(v, 50));
        match node.kind {
            NodeKind::Answer => {
                let mut marks = Vec::new();
                if edges.has(&node.id, "final", EdgeKind::VotedFor) {
                    marks.push("voted for final");
                }
                if edges.has(&node.id, "final", EdgeKind::Selected) {
                    marks.push("selected as final");
                }
                let mut line = format!("    {} = {value}", node.id);
                if !marks.is_empty() {
                    line.push_str(&format!("  → {}", marks.join(", ")));
                }
                lines.push(line);
            }
            _ => {
                let mut line = format!("    {}: \"{value}\"", node.id);
                if let Some(s) = node.score {
                    line.push_str(&format!(" (score {s:.2})"));
                }
                lines.push(line);
                let from_claim = edges.take(|x| x.from == node.id && x.to != "final");
                for kind in [
                    EdgeKind::Critiqued,
                    EdgeKind::Scored,
                    EdgeKind::Selected,
                    EdgeKind::VotedFor,
                    EdgeKind::ReadBy,
                    EdgeKind::Extracted,
                    EdgeKind::Unknown,
                ] {
                    let to: Vec<&str> = from_claim
                        .iter()
                        .filter(|x| x.kind == kind)
                        .map(|x| x.to.as_str())
                        .collect();
                    if !to.is_empty() {
                        lines.push(format!("      {} {}", edge_name(kind), ids(&to, 8)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    /// A vote of three members (one failed) judged in a second round.
    fn fixture() -> Orchestration {
        serde_json::from_value(json!({
            "id": "req_orch1", "object": "orchestration", "created": 1_735_689_599,
            "model": "council", "strategy": "vote", "status": "completed",
            "final_answer": "1239", "confidence": 0.9123, "raw_confidence": 0.87,
            "agreement": 0.5, "cost_usd": 0.000321,
            "usage": {"prompt_tokens": 120, "completion_tokens": 45, "total_tokens": 165},
            "answer": {"id": "c1", "object": "chat.completion", "created": 1, "model": "council",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant",
                                                "content": "1,234 + 5 = 1,239.\nThe answer is 1239."}}]},
            "contributors": [
                {"model": "right-a", "roles": ["answer"], "answer": "1239", "agrees": true,
                 "calls": 1, "failed_calls": 0, "prompt_tokens": 30, "completion_tokens": 10,
                 "cost_usd": 0.0001},
                {"model": "broken", "roles": ["answer"], "agrees": false,
                 "calls": 1, "failed_calls": 1},
                {"model": "judge", "roles": ["judge"], "answer": "1239", "agrees": true,
                 "calls": 1, "prompt_tokens": 60, "completion_tokens": 25, "cost_usd": 0.0002}
            ],
            "graph": {
                "nodes": [
                    {"id": "call-0", "kind": "call", "model": "right-a", "role": "answer",
                     "round": 0, "served_by": "oai/quiz-a+acc-1", "status": 200,
                     "text": "Let me add.\n\n1,234 + 5 = 1,239. ".repeat(20),
                     "prompt_tokens": 30, "completion_tokens": 10, "cost_usd": 0.0001,
                     "latency_ms": 12},
                    {"id": "answer-0", "kind": "answer", "model": "right-a", "value": "1239"},
                    {"id": "call-1", "kind": "call", "model": "broken", "role": "answer",
                     "round": 0, "status": 500, "error": "upstream_error", "latency_ms": 3},
                    {"id": "call-2", "kind": "call", "model": "judge", "role": "judge",
                     "round": 1, "served_by": "oai/quiz-j+acc-1", "status": 200,
                     "text": "Best: 1", "prompt_tokens": 60, "completion_tokens": 25,
                     "cost_usd": 0.0002, "latency_ms": 40},
                    {"id": "claim-2", "kind": "claim", "model": "judge", "round": 1,
                     "value": "picks answer 1", "score": 0.9},
                    {"id": "final", "kind": "final", "model": "right-a", "value": "1239",
                     "score": 0.9123},
                    {"id": "x-9", "kind": "hunch", "value": "later"}
                ],
                "edges": [
                    {"from": "call-0", "to": "answer-0", "kind": "extracted"},
                    {"from": "answer-0", "to": "call-2", "kind": "read_by"},
                    {"from": "call-1", "to": "call-2", "kind": "read_by"},
                    {"from": "call-2", "to": "claim-2", "kind": "extracted"},
                    {"from": "claim-2", "to": "answer-0", "kind": "scored"},
                    {"from": "answer-0", "to": "final", "kind": "voted_for"},
                    {"from": "answer-0", "to": "final", "kind": "selected"},
                    {"from": "claim-2", "to": "answer-0", "kind": "selected"},
                    {"from": "x-9", "to": "final", "kind": "telepathy"}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn renders_header_contributors_and_the_graph_by_round() {
        let out = render(&fixture());
        println!("{out}");
        for line in out.lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line}");
        }
        let has = |s: &str| assert!(out.contains(s), "missing {s:?} in\n{out}");
        has("orchestration  req_orch1");
        has("strategy       vote");
        has("status         completed");
        has("created        2024-12-31 23:59:59Z");
        has("final answer   1239");
        has("reply          1,234 + 5 = 1,239. The answer is 1239.");
        has("confidence     0.912 (raw 0.870)");
        has("cost           0.000321 USD");
        has("tokens         120 prompt + 45 completion = 165");
        // The contributors table.
        let table: Vec<&str> = out
            .lines()
            .skip_while(|l| *l != "Contributors")
            .skip(1)
            .take(4)
            .collect();
        assert!(table[0].starts_with("MODEL"), "{out}");
        let right: Vec<&str> = table[1].split_whitespace().collect();
        assert_eq!(
            right,
            ["right-a", "answer", "1239", "yes", "1", "0", "0", "40", "0.000100"]
        );
        let broken: Vec<&str> = table[2].split_whitespace().collect();
        assert_eq!(broken[..5], ["broken", "answer", "-", "no", "1"]);
        // The graph, by round.
        let round0 = out.find("round 0").unwrap();
        let round1 = out.find("round 1").unwrap();
        assert!(round0 < round1);
        has("  call-0  answer  right-a  via oai/quiz-a+acc-1  ok  30+10 tok  0.000100 USD  12 ms");
        has("    answer-0 = 1239  → voted for final, selected as final");
        has("  call-1  answer  broken  failed: upstream_error (HTTP 500)");
        has("    read answer-0, call-1");
        has("    said \"Best: 1\"");
        has("    claim-2: \"picks answer 1\" (score 0.90)");
        has("      scored answer-0");
        has("      selected answer-0");
        has("final = 1239  confidence 0.912  from right-a");
        has("  voted for by answer-0");
        has("  selected answer-0");
        has("  linked from x-9");
        has("other nodes\n  x-9 (node) = later");
        // A long text is one cut line.
        let said = out
            .lines()
            .find(|l| l.starts_with("    said \"Let me"))
            .unwrap();
        assert!(said.ends_with("…\""), "{said}");
        assert!(!out.contains("other edges"), "{out}");
    }

    #[test]
    fn a_failed_orchestration_without_a_graph() {
        let o: Orchestration = serde_json::from_value(json!({
            "id": "req_2", "model": "orchestration", "strategy": "vote", "status": "failed",
            "error": {"message": "quorum not reached: 1 of 2 answers", "code": "quorum_not_met"}
        }))
        .unwrap();
        let out = render(&o);
        assert!(
            out.contains(
                "status         failed: quorum not reached: 1 of 2 answers (quorum_not_met)"
            ),
            "{out}"
        );
        assert!(out.contains("final answer   (none)"), "{out}");
        assert!(out.contains("Contributors: none"), "{out}");
        assert!(out.contains("Evidence graph: empty"), "{out}");
    }
}
