//! `plexus orchestrate eval`: the orchestration strategies measured on simulator models whose
//! per-question accuracy is known (the `quiz` family of `plexus mock`), through the real
//! gateway pipeline (every inner call is an HTTP call to an in-process simulator, recorded in
//! a temporary SQLite log).
//!
//! It checks what the theory says and reports the rest (docs/orchestration-eval.md):
//! - three independent members at p = 0.7 whose wrong answers never agree: the plurality vote
//!   is right with 0.784 + 0.189 / 3 ≈ 0.847, reached within the sampling error;
//! - the gain shrinks as the members' errors correlate;
//! - the cascade's cost and accuracy against always-cheap and always-strong;
//! - mixture and debate against a vote at about the same number of calls;
//! - the confidence's reliability table and expected calibration error (≤ 0.05 over 10 bins),
//!   raw for independent members, after isotonic recalibration for correlated ones;
//! - behaviour under injected member faults (quorum met, quorum missed).
//!
//! A failed check makes the command exit non-zero after printing the report.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use futures::stream::{self, StreamExt};
use plexus_core::orchestrate::OrchestrateConfig;
use plexus_mock::{MockConfig, MockServer};
use plexus_orchestrate::{expected_calibration_error, reliability_table, Bucket, Calibrator};
use plexus_protocol::money::Nanos;
use plexus_protocol::openai::{ChatCompletionRequest, Message, Role};
use plexus_protocol::orchestration::OrchestrateFields;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Measure the orchestration strategies on simulator models (see docs/orchestration-eval.md).
#[derive(Args, Debug)]
pub struct OrchestrateCmd {
    #[command(subcommand)]
    cmd: OrchestrateSub,
}

#[derive(Subcommand, Debug)]
enum OrchestrateSub {
    /// Run the evaluation: vote against its closed form, correlation, the cascade's frontier,
    /// mixture and debate against a vote, calibration, faults. Exits non-zero when a check fails.
    Eval(EvalArgs),
    /// Fit a calibration map for an orchestration model's confidence from labelled answers,
    /// for its `calibration:` setting.
    Calibrate(CalibrateArgs),
}

#[derive(Args, Debug)]
struct CalibrateArgs {
    /// JSON lines, one labelled answer each: `{"confidence": 0.93, "correct": true}` (the
    /// `raw_confidence` of an orchestration, or its whole object with a `correct` field added).
    #[arg(long)]
    pairs: PathBuf,
    /// `isotonic` (a monotone step map; needs a few hundred answers) or `platt` (two
    /// parameters; fewer answers).
    #[arg(long, default_value = "isotonic")]
    method: String,
    /// Where to write the map (JSON).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Questions per experiment (the correlation and strategy comparisons use half as many per
    /// setting).
    #[arg(long, default_value_t = 2000)]
    questions: usize,
    /// Seed of the generated questions.
    #[arg(long, default_value_t = 13)]
    seed: u64,
    /// Orchestrations in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print the report as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write the Markdown report to this file.
    #[arg(long)]
    doc: Option<PathBuf>,
}

pub async fn run(cmd: OrchestrateCmd) -> Result<()> {
    match cmd.cmd {
        OrchestrateSub::Eval(args) => eval(args).await,
        OrchestrateSub::Calibrate(args) => calibrate(&args),
    }
}

/// Reads labelled answers: `raw_confidence` (an orchestration's) or `confidence`, and
/// `correct`.
fn read_pairs(path: &std::path::Path) -> Result<Vec<(f64, bool)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let confidence = v
            .get("raw_confidence")
            .or_else(|| v.get("confidence"))
            .and_then(serde_json::Value::as_f64)
            .filter(|c| (0.0..=1.0).contains(c))
            .with_context(|| {
                format!(
                    "{} line {}: needs `confidence` (or `raw_confidence`) from 0 to 1",
                    path.display(),
                    i + 1
                )
            })?;
        let correct = v
            .get("correct")
            .and_then(serde_json::Value::as_bool)
            .with_context(|| {
                format!(
                    "{} line {}: needs `correct` (true or false)",
                    path.display(),
                    i + 1
                )
            })?;
        pairs.push((confidence, correct));
    }
    if pairs.is_empty() {
        bail!("{} has no labelled answers", path.display());
    }
    Ok(pairs)
}

fn calibrate(args: &CalibrateArgs) -> Result<()> {
    let pairs = read_pairs(&args.pairs)?;
    let map = match args.method.as_str() {
        "isotonic" => Calibrator::fit_isotonic(&pairs),
        "platt" => Calibrator::fit_platt(&pairs),
        other => bail!("--method must be isotonic or platt, not `{other}`"),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let after: Vec<(f64, bool)> = pairs.iter().map(|&(c, y)| (map.apply(c), y)).collect();
    std::fs::write(&args.out, serde_json::to_string_pretty(&map)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} labelled answers; ECE over 10 bins {:.4} raw, {:.4} calibrated (on the same answers); map written to {}",
        pairs.len(),
        expected_calibration_error(&pairs, 10),
        expected_calibration_error(&after, 10),
        args.out.display()
    );
    Ok(())
}

/// One arithmetic question and its answer (canonical, as the extractor writes it).
#[derive(Debug, Clone)]
struct Question {
    text: String,
    answer: String,
}

fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn questions(n: usize, seed: u64) -> Vec<Question> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..n)
        .map(|i| {
            let a = 100 + next() % 90_000;
            let b = 100 + next() % 90_000;
            Question {
                text: format!(
                    "Question {i}: What is {} + {}?",
                    with_commas(a),
                    with_commas(b)
                ),
                answer: (a + b).to_string(),
            }
        })
        .collect()
}

/// The simulator models of the lab: (name, upstream model, quality, input and output price per
/// million tokens).
fn lab_models() -> Vec<(String, String, Option<f64>, f64, f64)> {
    let mut m = Vec::new();
    for i in 1..=4 {
        m.push((
            format!("m{i}"),
            format!("quiz-m{i}+acc-0.7"),
            Some(0.7),
            1.0,
            4.0,
        ));
    }
    for corr in CORRELATIONS {
        for i in 1..=3 {
            m.push((
                format!("c{}-{i}", pct(corr)),
                format!("quiz-c{i}+acc-0.7+corr-{corr}"),
                Some(0.7),
                1.0,
                4.0,
            ));
        }
    }
    m.push((
        "cheap".into(),
        "quiz-cheap+acc-0.6".into(),
        Some(0.6),
        0.1,
        0.4,
    ));
    m.push((
        "strong".into(),
        "quiz-strong+acc-0.9".into(),
        Some(0.9),
        5.0,
        20.0,
    ));
    m.push((
        "judge".into(),
        "quiz-judge+acc-0.8".into(),
        Some(0.8),
        0.5,
        2.0,
    ));
    m.push((
        "broken".into(),
        "quiz-broken+fault-500".into(),
        Some(0.7),
        1.0,
        4.0,
    ));
    m
}

const CORRELATIONS: [f64; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];

fn pct(x: f64) -> u32 {
    (x * 100.0).round() as u32
}

fn config_yaml(mock_url: &str, db: &str) -> String {
    let mut yaml = format!(
        "database: {db}\nretries: {{attempts: 1}}\nproviders:\n  - name: sim\n    kind: openai\n    base_url: {mock_url}/v1\n    api_key: sk-sim\nmodels:\n"
    );
    for (name, upstream, quality, input, output) in lab_models() {
        yaml.push_str(&format!("  - name: {name}\n"));
        if let Some(q) = quality {
            yaml.push_str(&format!("    quality: {q}\n"));
        }
        yaml.push_str(&format!(
            "    targets: [{{provider: sim, model: '{upstream}', price: {{input_per_mtok: {input}, output_per_mtok: {output}}}}}]\n"
        ));
    }
    yaml
}

/// The simulator and a gateway over it, in process.
struct Lab {
    gateway: plexus_server::AppState,
    _mock: MockServer,
    writer: Option<plexus_store::WriterHandle>,
    audit: Option<plexus_auth::audit::AuditHandle>,
    dir: PathBuf,
}

/// One orchestration's outcome.
#[derive(Debug, Clone, Copy)]
struct Trial {
    completed: bool,
    correct: bool,
    confidence: f64,
    cost: Nanos,
    calls: usize,
    quorum_missed: bool,
}

impl Lab {
    async fn start() -> Result<Lab> {
        let mock = MockServer::start(MockConfig::default())
            .await
            .context("starting the simulator")?;
        let dir = std::env::temp_dir().join(format!(
            "plexus-orchestrate-eval-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir)?;
        let db = format!("sqlite://{}", dir.join("eval.db").display());
        let yaml = config_yaml(&mock.url(), &db);
        let cfg = plexus_core::config::from_yaml_str(
            &yaml,
            &plexus_core::config::Overrides::default(),
            &|_| None,
        )?;
        let store = plexus_store::Store::connect(&cfg.database).await?;
        let (writer, writer_handle) = plexus_store::LogWriter::spawn(store.clone(), 65_536);
        let (audit, audit_handle) = plexus_auth::audit::AuditWriter::spawn(store.clone());
        let client = plexus_providers::client::UpstreamClient::new(
            &plexus_providers::client::ClientOptions {
                timeouts: cfg.timeouts,
                ca_bundle: None,
            },
        )?;
        let gateway = plexus_server::AppState::new(
            plexus_server::Runtime::new(cfg)?,
            client,
            store,
            writer,
            audit,
            None,
            std::sync::Arc::new(plexus_core::clock::SystemClock),
        )?;
        Ok(Lab {
            gateway,
            _mock: mock,
            writer: Some(writer_handle),
            audit: Some(audit_handle),
            dir,
        })
    }

    async fn shutdown(mut self) {
        self.gateway.shutdown().await;
        if let Some(w) = self.writer.take() {
            w.shutdown().await;
        }
        if let Some(a) = self.audit.take() {
            a.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    async fn trial(&self, spec: &OrchestrateConfig, q: &Question) -> Trial {
        let chat = ChatCompletionRequest {
            model: plexus_gateway::orchestrate::PER_REQUEST_MODEL.into(),
            messages: vec![Message::text(Role::User, q.text.clone())],
            max_tokens: Some(64),
            ..Default::default()
        };
        let ctx = plexus_gateway::CallCtx::client(plexus_auth::roles::Principal::master(), None);
        let done = self
            .gateway
            .orchestrate(
                ctx,
                plexus_gateway::orchestrate::PER_REQUEST_MODEL.into(),
                spec.clone(),
                Box::new(chat),
                "orchestration",
            )
            .await;
        match done {
            Ok(o) => Trial {
                completed: true,
                correct: o.result.final_answer.as_deref() == Some(q.answer.as_str()),
                confidence: o.result.confidence,
                cost: o.result.cost_usd,
                calls: o
                    .result
                    .graph
                    .nodes
                    .iter()
                    .filter(|n| n.kind == plexus_protocol::orchestration::NodeKind::Call)
                    .count(),
                quorum_missed: false,
            },
            Err(f) => Trial {
                completed: false,
                correct: false,
                confidence: 0.0,
                cost: Nanos::ZERO,
                calls: 0,
                quorum_missed: f.error.code == plexus_core::ErrorCode::QuorumNotMet,
            },
        }
    }

    /// Runs `spec` over every question, `concurrency` at a time.
    async fn run(
        &self,
        spec: &OrchestrateConfig,
        qs: &[Question],
        concurrency: usize,
    ) -> Vec<Trial> {
        stream::iter(qs.iter())
            .map(|q| self.trial(spec, q))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }
}

fn spec(fields: serde_json::Value) -> Result<OrchestrateConfig> {
    let f: OrchestrateFields = serde_json::from_value(fields)?;
    OrchestrateConfig::parse(f).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Accuracy, its standard error, mean cost and calls of a run.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    questions: usize,
    completed: usize,
    accuracy: f64,
    standard_error: f64,
    mean_cost_usd: f64,
    mean_calls: f64,
    quorum_missed: usize,
}

fn summarize(trials: &[Trial]) -> Summary {
    let n = trials.len().max(1) as f64;
    let right = trials.iter().filter(|t| t.correct).count() as f64;
    let accuracy = right / n;
    Summary {
        questions: trials.len(),
        completed: trials.iter().filter(|t| t.completed).count(),
        accuracy,
        standard_error: (accuracy * (1.0 - accuracy) / n).sqrt(),
        mean_cost_usd: trials.iter().map(|t| t.cost.usd()).sum::<f64>() / n,
        mean_calls: trials.iter().map(|t| t.calls as f64).sum::<f64>() / n,
        quorum_missed: trials.iter().filter(|t| t.quorum_missed).count(),
    }
}

fn pairs(trials: &[Trial]) -> Vec<(f64, bool)> {
    trials
        .iter()
        .filter(|t| t.completed)
        .map(|t| (t.confidence, t.correct))
        .collect()
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    passed: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct CorrelationRow {
    correlation: f64,
    single: Summary,
    vote: Summary,
    gain: f64,
    raw_ece: f64,
}

#[derive(Debug, Serialize)]
struct NamedSummary {
    name: String,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Debug, Serialize)]
struct Report {
    questions: usize,
    seed: u64,
    seconds: f64,
    inner_calls: usize,
    closed_form: f64,
    single_member: Summary,
    vote: Summary,
    vote_ece: f64,
    vote_reliability: Vec<Bucket>,
    correlation: Vec<CorrelationRow>,
    cascade: Vec<NamedSummary>,
    equal_budget: Vec<NamedSummary>,
    calibration_correlation: f64,
    calibration_raw_ece: f64,
    calibration_isotonic_ece: f64,
    calibration_reliability: Vec<Bucket>,
    faults: Vec<NamedSummary>,
    checks: Vec<Check>,
}

/// Issue 13's closed form: P(majority right) + P(all differ, exactly one right) / 3.
fn closed_form(p: f64) -> f64 {
    let majority = p.powi(3) + 3.0 * p * p * (1.0 - p);
    let one_right = 3.0 * p * (1.0 - p).powi(2);
    majority + one_right / 3.0
}

async fn eval(args: EvalArgs) -> Result<()> {
    if args.questions < 50 {
        bail!("--questions must be at least 50");
    }
    let started = Instant::now();
    let lab = Lab::start().await?;
    let qs = questions(args.questions, args.seed);
    let half = &qs[..qs.len() / 2];
    let c = args.concurrency;
    let mut calls = 0usize;
    let mut count = |t: &[Trial]| calls += t.iter().map(|x| x.calls).sum::<usize>();

    // 1. Three independent members at p = 0.7.
    let single = lab
        .run(
            &spec(serde_json::json!({"strategy": "vote", "members": ["m1"], "answer": "number"}))?,
            &qs,
            c,
        )
        .await;
    count(&single);
    let vote = lab
        .run(&spec(serde_json::json!({"strategy": "vote", "members": ["m1", "m2", "m3"], "answer": "number", "quorum": 2}))?, &qs, c)
        .await;
    count(&vote);
    let vote_pairs = pairs(&vote);
    let vote_ece = expected_calibration_error(&vote_pairs, 10);

    // 2. Correlated errors.
    let mut correlation = Vec::new();
    for corr in CORRELATIONS {
        let p = pct(corr);
        let one = lab
            .run(&spec(serde_json::json!({"strategy": "vote", "members": [format!("c{p}-1")], "answer": "number"}))?, half, c)
            .await;
        count(&one);
        let three = lab
            .run(&spec(serde_json::json!({"strategy": "vote", "members": [format!("c{p}-1"), format!("c{p}-2"), format!("c{p}-3")], "answer": "number", "quorum": 2}))?, half, c)
            .await;
        count(&three);
        let (s, v) = (summarize(&one), summarize(&three));
        correlation.push(CorrelationRow {
            correlation: corr,
            gain: v.accuracy - s.accuracy,
            raw_ece: expected_calibration_error(&pairs(&three), 10),
            single: s,
            vote: v,
        });
    }

    // 3. The cascade's frontier.
    let mut cascade = Vec::new();
    let runs = [
        (
            "always cheap",
            serde_json::json!({"strategy": "vote", "members": ["cheap"], "answer": "number"}),
        ),
        (
            "always strong",
            serde_json::json!({"strategy": "vote", "members": ["strong"], "answer": "number"}),
        ),
        (
            "cascade, judge, escalate below 0.5",
            serde_json::json!({"strategy": "cascade", "members": ["strong", "cheap"], "judge": "judge", "answer": "number", "escalate_below": 0.5}),
        ),
        (
            "cascade, judge, escalate below 0.9",
            serde_json::json!({"strategy": "cascade", "members": ["strong", "cheap"], "judge": "judge", "answer": "number", "escalate_below": 0.9}),
        ),
        (
            "cascade, 3 samples agree, escalate below 0.6",
            serde_json::json!({"strategy": "cascade", "members": ["strong", "cheap"], "samples": 3, "answer": "number", "escalate_below": 0.6}),
        ),
        (
            "cascade, 3 samples agree, escalate below 1.0",
            serde_json::json!({"strategy": "cascade", "members": ["strong", "cheap"], "samples": 3, "answer": "number", "escalate_below": 1.0}),
        ),
    ];
    for (name, fields) in runs {
        let t = lab.run(&spec(fields)?, half, c).await;
        count(&t);
        cascade.push(NamedSummary {
            name: name.into(),
            summary: summarize(&t),
        });
    }

    // 4. Mixture and debate against a vote at about the same number of calls.
    let mut equal_budget = Vec::new();
    let runs = [
        (
            "vote, 3 members x 2 samples",
            serde_json::json!({"strategy": "vote", "members": ["m1", "m2", "m3"], "samples": 2, "answer": "number", "quorum": 3}),
        ),
        (
            "vote, 3 members x 1 sample",
            serde_json::json!({"strategy": "vote", "members": ["m1", "m2", "m3"], "answer": "number", "quorum": 2}),
        ),
        (
            "mixture, 3 members, 2 layers, aggregator",
            serde_json::json!({"strategy": "mixture", "members": ["m1", "m2", "m3"], "aggregator": "m4", "answer": "number", "rounds": 2}),
        ),
        (
            "debate, 3 members, 2 rounds, vote",
            serde_json::json!({"strategy": "debate", "members": ["m1", "m2", "m3"], "answer": "number", "rounds": 2}),
        ),
        (
            "debate, 3 members, 2 rounds, judge",
            serde_json::json!({"strategy": "debate", "members": ["m1", "m2", "m3"], "judge": "m4", "answer": "number", "rounds": 2}),
        ),
        (
            "best_of_n, 3 members, judge",
            serde_json::json!({"strategy": "best_of_n", "members": ["m1", "m2", "m3"], "judge": "m4", "answer": "number"}),
        ),
        (
            "refine, draft m1, critique m2",
            serde_json::json!({"strategy": "refine", "members": ["m1", "m2"], "answer": "number"}),
        ),
    ];
    for (name, fields) in runs {
        let t = lab.run(&spec(fields)?, half, c).await;
        count(&t);
        equal_budget.push(NamedSummary {
            name: name.into(),
            summary: summarize(&t),
        });
    }

    // 5. Calibration under correlated errors: isotonic fitted on one half, measured on the other.
    let calibration_correlation = 0.5;
    let corr_vote = lab
        .run(&spec(serde_json::json!({"strategy": "vote", "members": ["c50-1", "c50-2", "c50-3"], "answer": "number", "quorum": 2}))?, &qs, c)
        .await;
    count(&corr_vote);
    let corr_pairs = pairs(&corr_vote);
    let (fit, test) = corr_pairs.split_at(corr_pairs.len() / 2);
    let isotonic = Calibrator::fit_isotonic(fit).map_err(|e| anyhow::anyhow!("{e}"))?;
    let calibrated: Vec<(f64, bool)> = test.iter().map(|&(c, y)| (isotonic.apply(c), y)).collect();
    let calibration_raw_ece = expected_calibration_error(test, 10);
    let calibration_isotonic_ece = expected_calibration_error(&calibrated, 10);

    // 6. Faults.
    let few = &qs[..qs.len().min(200)];
    let mut faults = Vec::new();
    for (name, members) in [
        (
            "one of three members fails (quorum 2 met)",
            vec!["broken", "m2", "m3"],
        ),
        (
            "two of three members fail (quorum 2 missed)",
            vec!["broken", "broken", "m3"],
        ),
    ] {
        let t = lab
            .run(&spec(serde_json::json!({"strategy": "vote", "members": members, "answer": "number", "quorum": 2}))?, few, c)
            .await;
        count(&t);
        faults.push(NamedSummary {
            name: name.into(),
            summary: summarize(&t),
        });
    }
    lab.shutdown().await;

    let single_summary = summarize(&single);
    let vote_summary = summarize(&vote);
    let expected = closed_form(0.7);
    let mut checks = Vec::new();
    let tolerance = 3.0 * (expected * (1.0 - expected) / qs.len() as f64).sqrt();
    checks.push(Check {
        name: "vote of three independent p=0.7 members reaches the closed form".into(),
        passed: (vote_summary.accuracy - expected).abs() <= tolerance,
        detail: format!(
            "{:.4} vs {:.4} (3 standard errors: ±{:.4})",
            vote_summary.accuracy, expected, tolerance
        ),
    });
    checks.push(Check {
        name: "raw vote confidence is calibrated for independent members (ECE <= 0.05, 10 bins)"
            .into(),
        passed: vote_ece <= 0.05,
        detail: format!("ECE {vote_ece:.4}"),
    });
    let first = correlation.first().map_or(0.0, |r| r.gain);
    let last = correlation.last().map_or(0.0, |r| r.gain);
    checks.push(Check {
        name: "the vote's gain shrinks as errors correlate".into(),
        passed: first > 0.08 && last.abs() < 0.03 && first > last,
        detail: correlation
            .iter()
            .map(|r| format!("corr {:.2}: {:+.3}", r.correlation, r.gain))
            .collect::<Vec<_>>()
            .join(", "),
    });
    checks.push(Check {
        name: "isotonic recalibration brings correlated members' ECE to <= 0.05".into(),
        passed: calibration_isotonic_ece <= 0.05,
        detail: format!("raw {calibration_raw_ece:.4} -> isotonic {calibration_isotonic_ece:.4}"),
    });
    let strong = &cascade[1].summary;
    let cheap = &cascade[0].summary;
    let frontier = cascade[2..].iter().any(|c| {
        c.summary.accuracy > cheap.accuracy + 0.05 && c.summary.mean_cost_usd < strong.mean_cost_usd
    });
    checks.push(Check {
        name: "a cascade beats always-cheap's accuracy for less than always-strong's cost".into(),
        passed: frontier,
        detail: cascade
            .iter()
            .map(|c| {
                format!(
                    "{}: {:.3} at ${:.8}",
                    c.name, c.summary.accuracy, c.summary.mean_cost_usd
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });
    checks.push(Check {
        name: "faults: quorum met with one failing member, missed with two".into(),
        passed: faults[0].summary.completed == faults[0].summary.questions
            && faults[1].summary.quorum_missed == faults[1].summary.questions,
        detail: format!(
            "{} of {} completed; {} of {} quorum_not_met",
            faults[0].summary.completed,
            faults[0].summary.questions,
            faults[1].summary.quorum_missed,
            faults[1].summary.questions
        ),
    });

    let report = Report {
        questions: qs.len(),
        seed: args.seed,
        seconds: started.elapsed().as_secs_f64(),
        inner_calls: calls,
        closed_form: expected,
        single_member: single_summary,
        vote: vote_summary,
        vote_ece,
        vote_reliability: reliability_table(&vote_pairs, 10),
        correlation,
        cascade,
        equal_budget,
        calibration_correlation,
        calibration_raw_ece,
        calibration_isotonic_ece,
        calibration_reliability: reliability_table(&calibrated, 10),
        faults,
        checks,
    };
    let markdown = render(&report);
    if let Some(path) = &args.doc {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{markdown}");
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

fn summary_row(name: &str, s: &Summary) -> String {
    format!(
        "| {name} | {:.3} ± {:.3} | {:.2} | ${:.8} | {} / {} |\n",
        s.accuracy,
        1.96 * s.standard_error,
        s.mean_calls,
        s.mean_cost_usd,
        s.completed,
        s.questions
    )
}

fn reliability_rows(buckets: &[Bucket]) -> String {
    let mut out = String::from(
        "| confidence | answers | mean confidence | accuracy | gap |\n|---|---|---|---|---|\n",
    );
    for b in buckets {
        out.push_str(&format!(
            "| {:.1}–{:.1} | {} | {:.3} | {:.3} | {:+.3} |\n",
            b.lower,
            b.upper,
            b.count,
            b.mean_confidence,
            b.accuracy,
            b.accuracy - b.mean_confidence
        ));
    }
    out
}

const TABLE_HEAD: &str =
    "| run | accuracy (95% CI) | calls | mean cost | completed |\n|---|---|---|---|---|\n";

fn render(r: &Report) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Generated by `plexus orchestrate eval --questions {} --seed {}` ({} inner calls through the gateway pipeline to `plexus mock` quiz models, {:.0} s).\n\n",
        r.questions, r.seed, r.inner_calls, r.seconds
    ));
    md.push_str("## Checks\n\n| check | result | detail |\n|---|---|---|\n");
    for c in &r.checks {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            c.name,
            if c.passed { "pass" } else { "FAIL" },
            c.detail
        ));
    }
    md.push_str(&format!(
        "\n## 1. Vote of three independent members at p = 0.7\n\nWrong answers never agree (each wrong answer is drawn from a billion alternatives). Closed form: 0.784 + 0.189 / 3 = {:.4}.\n\n{TABLE_HEAD}",
        r.closed_form
    ));
    md.push_str(&summary_row("one member (m1)", &r.single_member));
    md.push_str(&summary_row("vote m1, m2, m3 (quorum 2)", &r.vote));
    md.push_str(&format!(
        "\nReliability of the raw vote confidence (ECE over 10 bins: {:.4}):\n\n{}",
        r.vote_ece,
        reliability_rows(&r.vote_reliability)
    ));
    md.push_str("\n## 2. Correlated errors\n\nEach member uses, with probability `corr`, a latent shared by every member for the question (and then shares its wrong answer too).\n\n| correlation | one member | vote of three | gain | raw ECE |\n|---|---|---|---|---|\n");
    for c in &r.correlation {
        md.push_str(&format!(
            "| {:.2} | {:.3} | {:.3} | {:+.3} | {:.3} |\n",
            c.correlation, c.single.accuracy, c.vote.accuracy, c.gain, c.raw_ece
        ));
    }
    md.push_str(&format!("\n## 3. Cascade: cost against accuracy\n\n`cheap` (p = 0.6, $0.1/$0.4 per Mtok) then `strong` (p = 0.9, $5/$20), with a judge (p = 0.8, $0.5/$2) or agreement among 3 samples as the confidence.\n\n{TABLE_HEAD}"));
    for c in &r.cascade {
        md.push_str(&summary_row(&c.name, &c.summary));
    }
    md.push_str(&format!("\n## 4. Mixture, debate, best-of-n and refine against a vote\n\nAll members p = 0.7, independent; revisers and aggregators keep their own answer when their draw is right and otherwise adopt the answers' plurality (the simulator's model of reading others).\n\n{TABLE_HEAD}"));
    for c in &r.equal_budget {
        md.push_str(&summary_row(&c.name, &c.summary));
    }
    md.push_str(&format!(
        "\n## 5. Calibration under correlated errors (corr = {})\n\nThe raw confidence assumes independent errors, so correlated members make it overconfident. An isotonic map fitted on half of the questions, measured on the other half: ECE {:.4} raw, {:.4} recalibrated.\n\n{}",
        r.calibration_correlation,
        r.calibration_raw_ece,
        r.calibration_isotonic_ece,
        reliability_rows(&r.calibration_reliability)
    ));
    md.push_str(&format!("\n## 6. Member faults\n\n{TABLE_HEAD}"));
    for c in &r.faults {
        md.push_str(&summary_row(&c.name, &c.summary));
    }
    md
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_closed_form_and_the_questions() {
        assert!((closed_form(0.7) - 0.847).abs() < 0.0005);
        let qs = questions(100, 1);
        assert_eq!(qs.len(), 100);
        let q = &qs[0];
        let nums: Vec<u64> = q
            .text
            .trim_end_matches('?')
            .split("is ")
            .nth(1)
            .unwrap()
            .split(" + ")
            .map(|s| s.replace(',', "").parse().unwrap())
            .collect();
        assert_eq!((nums[0] + nums[1]).to_string(), q.answer);
        assert_eq!(with_commas(1_234_567), "1,234,567");
        assert_eq!(with_commas(999), "999");
    }
}
