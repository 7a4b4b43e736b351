//! `plexus orchestrations show ID` against a served gateway whose models are the simulator's
//! `quiz` models, and the SDK's `Client::orchestrate` / `Client::orchestration` that run and
//! read the orchestrations it shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{plexus, run, Proc};
use plexus_sdk::{
    ChatCompletionRequest, Client, Message, OrchestrateFields, Orchestration, OrchestrationRequest,
    Role,
};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const MASTER: &str = "sk-test-master-0007";
const QUESTION: &str = "What is 1,234 + 5?";

/// `plexus serve` on a config with the simulator at `mock_url` as provider `sim`: three quiz
/// members (two always right, one always wrong), a judge and orchestration models over them.
fn serve(dir: &std::path::Path, mock_url: &str) -> (Proc, String) {
    let db = format!("sqlite://{}", dir.join("plexus.db").display());
    let cfg = dir.join("plexus.yaml");
    let price = "price: {input_per_mtok: 1.0, output_per_mtok: 4.0}";
    std::fs::write(
        &cfg,
        format!(
            r#"listen: 127.0.0.1:0
database: {db}
master_key: {MASTER}
providers:
  - name: sim
    kind: openai
    base_url: {mock_url}/v1
    api_key: sk-upstream
models:
  - name: right-a
    targets: [{{provider: sim, model: 'quiz-a+acc-1', {price}}}]
  - name: right-b
    targets: [{{provider: sim, model: 'quiz-b+acc-1', {price}}}]
  - name: wrong
    targets: [{{provider: sim, model: 'quiz-w+acc-0', {price}}}]
  - name: judge
    targets: [{{provider: sim, model: 'quiz-j+acc-1', {price}}}]
  - name: council
    orchestrate: {{strategy: vote, members: [wrong, right-a, right-b], answer: number}}
  - name: debate
    orchestrate: {{strategy: debate, members: [wrong, right-a], judge: judge, answer: number, rounds: 2}}
"#
        ),
    )
    .unwrap();
    let mut child = plexus()
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("plexus listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    (Proc(child), url)
}

/// `plexus orchestrations show <id> [extra]` against `url`.
fn show(url: &str, id: &str, extra: &[&str]) -> common::Run {
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", url)
        .env("PLEXUS_API_KEY", MASTER)
        .args(["orchestrations", "show", id])
        .args(extra);
    run(cmd)
}

fn question() -> ChatCompletionRequest {
    ChatCompletionRequest {
        messages: vec![Message::text(Role::User, QUESTION)],
        max_tokens: Some(200),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_renders_a_vote_and_a_debate_and_json_round_trips() {
    let mock = plexus_mock::MockServer::start(plexus_mock::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), &mock.url());
    let client = Client::new(&format!("{url}/v1"), Some(MASTER))
        .unwrap()
        .with_max_retries(0);

    // Per-request parameters through the SDK.
    let vote = client
        .orchestrate(&OrchestrationRequest {
            chat: question(),
            fields: OrchestrateFields {
                strategy: Some("vote".into()),
                members: Some(vec!["wrong".into(), "right-a".into(), "right-b".into()]),
                answer: Some("number".into()),
                ..Default::default()
            },
        })
        .await
        .unwrap();
    assert_eq!(vote.status, "completed", "{vote:#?}");
    assert_eq!(vote.final_answer.as_deref(), Some("1239"));
    assert_eq!(vote.model, "orchestration");
    assert_eq!(vote.contributors.len(), 3);
    assert!(vote.id.starts_with("req_"), "{}", vote.id);

    // The stored one, read back through the SDK, is the same orchestration.
    let stored = client.orchestration(&vote.id).await.unwrap();
    assert_eq!(stored.id, vote.id);
    assert_eq!(stored.final_answer.as_deref(), Some("1239"));
    assert_eq!(stored.graph.nodes.len(), vote.graph.nodes.len());

    // The text view.
    let r = show(&url, &vote.id, &[]);
    assert!(r.ok, "{}\n{}", r.stderr, r.stdout);
    let out = &r.stdout;
    println!("{out}");
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "too long: {line}");
    }
    let has = |s: &str| assert!(out.contains(s), "missing {s:?} in\n{out}");
    has(&format!("orchestration  {}", vote.id));
    has("strategy       vote");
    has("status         completed");
    has("final answer   1239");
    // The contributors: who agreed with the final answer.
    let row = |model: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|cells| cells.first().map(String::as_str) == Some(model))
            .unwrap_or_else(|| panic!("no row {model} in\n{out}"))
    };
    has("MODEL");
    assert_eq!(row("right-a")[1..4], ["answer", "1239", "yes"]);
    assert_eq!(row("right-b")[1..4], ["answer", "1239", "yes"]);
    let wrong = row("wrong");
    assert_eq!(wrong[3], "no", "{wrong:?}");
    assert_ne!(wrong[2], "1239");
    // The graph: one round of three answering calls, two votes, one selected.
    has("Evidence graph (3 calls");
    has("round 0");
    for i in 0..3 {
        has(&format!("  call-{i}  answer  "));
    }
    has("via sim/quiz-");
    assert_eq!(out.matches("→ voted for final").count(), 2, "{out}");
    assert_eq!(out.matches("selected as final").count(), 1, "{out}");
    has("final = 1239  confidence ");
    has("  voted for by answer-");
    assert!(!out.contains("other edges"), "{out}");

    // `--json` is the server's orchestration.
    let r = show(&url, &vote.id, &["--json"]);
    assert!(r.ok, "{}", r.stderr);
    let parsed: Orchestration = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(parsed, stored);

    // A configured orchestration model with rounds: what each call read, and the judge.
    let debate = client
        .orchestrate(&OrchestrationRequest {
            chat: ChatCompletionRequest {
                model: "debate".into(),
                ..question()
            },
            fields: OrchestrateFields::default(),
        })
        .await
        .unwrap();
    assert_eq!(debate.model, "debate");
    assert_eq!(debate.final_answer.as_deref(), Some("1239"));
    let r = show(&url, &debate.id, &[]);
    assert!(r.ok, "{}", r.stderr);
    let out = &r.stdout;
    println!("{out}");
    let has = |s: &str| assert!(out.contains(s), "missing {s:?} in\n{out}");
    has("strategy       debate");
    has("round 0");
    has("round 1");
    has("    read answer-");
    has("  judge  judge  via sim/quiz-j+acc-1");
    has("final = 1239");
    assert!(row_roles(out, "judge").contains("judge"), "{out}");

    // Unknown ids: a clear one-line error and a failure status; the SDK says 404 not_found.
    let r = show(&url, "req_does_not_exist", &[]);
    assert!(!r.ok);
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .contains("orchestration `req_does_not_exist` not found"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("not_found") && r.stderr.contains("404"),
        "{}",
        r.stderr
    );
    let err = client
        .orchestration("req_does_not_exist")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("not_found"));

    // A wrong key is refused, and says so.
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", &url)
        .env("PLEXUS_API_KEY", "sk-wrong")
        .args(["orchestrations", "show", &vote.id]);
    let r = run(cmd);
    assert!(!r.ok);
    assert!(r.stderr.contains("401"), "{}", r.stderr);

    // The SDK's orchestrate: the server's refusal of a bad strategy is an API error.
    let err = client
        .orchestrate(&OrchestrationRequest {
            chat: question(),
            fields: OrchestrateFields {
                strategy: Some("telepathy".into()),
                members: Some(vec!["right-a".into()]),
                ..Default::default()
            },
        })
        .await
        .unwrap_err();
    match err {
        plexus_sdk::Error::Api { status, .. } => assert_eq!(status, 400),
        other => panic!("API error expected, got {other:?}"),
    }
}

#[test]
fn show_takes_the_connection_options() {
    let mut cmd = plexus();
    cmd.args(["orchestrations", "show", "--help"]);
    let r = run(cmd);
    assert!(r.ok, "{}", r.stderr);
    for option in ["--url", "--api-key", "PLEXUS_URL", "--json"] {
        assert!(r.stdout.contains(option), "lacks {option}:\n{}", r.stdout);
    }
    let mut cmd = plexus();
    cmd.env("PLEXUS_URL", "ftp://nowhere")
        .args(["orchestrations", "show", "req_1"]);
    let r = run(cmd);
    assert!(!r.ok);
    assert!(r.stderr.contains("not an http(s) URL"), "{}", r.stderr);
}

/// The ROLES cell of a contributor's row.
fn row_roles(out: &str, model: &str) -> String {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&model) && cells.len() > 1)
        .map(|cells| cells[1].to_owned())
        .unwrap_or_default()
}
