//! The `quiz` model family over real HTTP (OpenAI chat format).
#![cfg(test)]

use plexus_mock::{MockConfig, MockServer};
use reqwest::Client;
use serde_json::{json, Value};

/// The last integer-looking number of `text`, commas ignored.
fn final_number(text: &str) -> Option<i64> {
    let mut last = None;
    let mut digits = String::new();
    let mut negative = false;
    let mut prev = ' ';
    for c in text.chars().chain([' ']) {
        if c.is_ascii_digit() {
            if digits.is_empty() {
                negative = prev == '-';
            }
            digits.push(c);
        } else if c != ',' && !digits.is_empty() {
            let v: i64 = digits.parse().unwrap();
            last = Some(if negative { -v } else { v });
            digits.clear();
        }
        prev = c;
    }
    last
}

async fn ask(s: &MockServer, body: Value) -> String {
    let resp = Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/v1/chat/completions", s.url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn quiz_models_answer_arithmetic() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let question = "What is 1,234 + 5?";
    let right = ask(
        &s,
        json!({"model": "quiz+acc-1", "messages": [{"role": "user", "content": question}]}),
    )
    .await;
    assert_eq!(final_number(&right), Some(1239), "{right}");
    let wrong = ask(
        &s,
        json!({"model": "quiz+acc-0", "messages": [{"role": "user", "content": question}]}),
    )
    .await;
    let n = final_number(&wrong);
    assert!(n.is_some() && n != Some(1239), "{wrong}");

    // Deterministic per (model, question, seed); the question comes from the first user turn.
    let convo = |seed: i64| {
        json!({"model": "quiz+acc-0.5", "seed": seed, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": "Thinking."},
            {"role": "user", "content": "<candidate id=\"1\">1,239</candidate>\n<candidate id=\"2\">1,240</candidate>\nReply with \"Best: N\"."}
        ]})
    };
    let a = ask(&s, convo(3)).await;
    assert_eq!(a, ask(&s, convo(3)).await);
    assert!(
        a == "After comparing the candidates, Best: 1"
            || a == "After comparing the candidates, Best: 2",
        "{a}"
    );

    // Without a question a quiz model answers like any other model.
    let plain = ask(
        &s,
        json!({"model": "quiz+acc-1", "messages": [{"role": "user", "content": "Hello there"}]}),
    )
    .await;
    assert!(final_number(&plain).is_none(), "{plain}");
}

#[tokio::test]
async fn quiz_models_in_anthropic_and_gemini_formats() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder().no_proxy().build().unwrap();
    let question = "Compute -12 × 3,000.";
    let v: Value = c
        .post(format!("{}/v1/messages", s.url()))
        .header("x-api-key", "sk-ant")
        .header("anthropic-version", "2023-06-01")
        .json(
            &json!({"model": "claude-quiz+acc-1", "max_tokens": 100, "messages": [
                {"role": "user", "content": [{"type": "text", "text": question}]},
                {"role": "assistant", "content": "Hm."},
                {"role": "user", "content": "And again?"}
            ]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = v["content"][0]["text"].as_str().unwrap();
    assert_eq!(final_number(text), Some(-36_000), "{text}");

    // Gemini's seed is part of the draw.
    let mut answers = std::collections::HashSet::new();
    for seed in 0..20 {
        let v: Value = c
            .post(format!(
                "{}/v1beta/models/gemini-quiz+acc-0.5:generateContent",
                s.url()
            ))
            .header("x-goog-api-key", "gm")
            .json(
                &json!({"contents": [{"role": "user", "parts": [{"text": question}]}],
                "generationConfig": {"seed": seed}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        answers.insert(final_number(text) == Some(-36_000));
    }
    assert_eq!(
        answers.len(),
        2,
        "both right and wrong answers across seeds"
    );
}
