//! The prompts an orchestration sends after the first answers, and the reading of a judge's
//! reply.
//!
//! Each prompt is appended to the client's conversation as one more user message, so every
//! participant still sees the original task. Earlier answers are quoted in numbered blocks
//! (`<answer id="1">`, `<candidate id="1">`, `<draft>`), which keeps them apart from the
//! instructions and lets the reply name one by its number.

/// The most characters of one earlier answer quoted into a later prompt.
pub const MAX_QUOTED_CHARS: usize = 6000;

fn quote(text: &str) -> &str {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn blocks(tag: &str, answers: &[&str]) -> String {
    let mut out = String::new();
    for (i, a) in answers.iter().enumerate() {
        out.push_str(&format!(
            "<{tag} id=\"{}\">\n{}\n</{tag}>\n\n",
            i + 1,
            quote(a.trim())
        ));
    }
    out
}

/// Mixture layers and debate rounds: revise after reading the others' answers.
pub fn revise(others: &[&str]) -> String {
    format!(
        "Other assistants answered the task above. Their answers:\n\n{}\
         Weigh these answers critically: some may be wrong, and agreement alone does not make an \
         answer right. Then give your own best answer to the original task, ending with your final \
         answer.",
        blocks("answer", others)
    )
}

/// The mixture's aggregator: synthesize one answer from the last layer's.
pub fn aggregate(answers: &[&str]) -> String {
    format!(
        "Several assistants answered the task above. Their answers:\n\n{}\
         Synthesize them into a single, high-quality answer to the original task. Evaluate them \
         critically: some may be wrong or biased. Do not simply copy one; give the answer you \
         judge correct, ending with your final answer.",
        blocks("answer", answers)
    )
}

/// A judge picks one of `candidates`; `consistency` asks for the most consistent one
/// (universal self-consistency) rather than the most accurate.
pub fn pick(candidates: &[&str], consistency: bool) -> String {
    let ask = if consistency {
        "Which candidate answer is the most consistent with the others (the answer the \
         candidates agree on most)?"
    } else {
        "Which candidate answer is the most accurate and complete answer to the task?"
    };
    format!(
        "Candidate answers to the task above:\n\n{}{ask} Reply with \"Best: <id>\", where <id> is \
         the candidate's number.",
        blocks("candidate", candidates)
    )
}

/// A judge scores one answer (the cascade's confidence).
pub fn score(answer: &str) -> String {
    format!(
        "Proposed answer to the task above:\n\n{}How likely is this answer to be correct? Reply \
         with \"Score: <0 to 10>\", where 10 means certainly correct.",
        blocks("candidate", &[answer])
    )
}

/// Refine: a critic reviews a draft.
pub fn critique(draft: &str) -> String {
    format!(
        "A draft answer to the task above:\n\n<draft>\n{}\n</draft>\n\nCritique this draft: check \
         each step, say whether its final answer is right, and list any errors.",
        quote(draft.trim())
    )
}

/// Refine: the drafter revises after the critique.
pub fn revise_after_critique(draft: &str, critique: &str) -> String {
    format!(
        "Your draft answer:\n\n<draft>\n{}\n</draft>\n\nA reviewer's critique:\n\n<critique>\n{}\n\
         </critique>\n\nRevise your answer to the original task in light of the critique (keep \
         what was right), ending with your final answer.",
        quote(draft.trim()),
        quote(critique.trim())
    )
}

/// The candidate a judge picked (1-based in the reply, 0-based here): the number after the
/// last `Best:`, else the last number in range; `None` when the reply names none of the
/// `count` candidates.
pub fn parse_pick(reply: &str, count: usize) -> Option<usize> {
    let in_range = |n: usize| (1..=count).contains(&n).then(|| n - 1);
    let lower = reply.to_ascii_lowercase();
    if let Some(pos) = lower.rfind("best") {
        if let Some(n) = first_integer(&lower[pos + 4..]) {
            return in_range(n);
        }
    }
    integers(&lower).into_iter().rev().find_map(in_range)
}

/// A judge's score in [0, 1]: the number after the last `Score:` (out of 10), else the last
/// number from 0 to 10; `None` when there is none.
pub fn parse_score(reply: &str) -> Option<f64> {
    let lower = reply.to_ascii_lowercase();
    let value = lower
        .rfind("score")
        .and_then(|pos| first_number(&lower[pos + 5..]))
        .or_else(|| {
            numbers(&lower)
                .into_iter()
                .rev()
                .find(|n| (0.0..=10.0).contains(n))
        })?;
    (0.0..=10.0).contains(&value).then_some(value / 10.0)
}

/// A critique's verdict: `Some(true)` when it calls the draft right, `Some(false)` wrong.
pub fn parse_verdict(critique: &str) -> Option<bool> {
    let lower = critique.to_ascii_lowercase();
    let negative = [
        "is wrong",
        "is incorrect",
        "not correct",
        "does not follow",
        "error in",
    ];
    let positive = ["is correct", "is right", "checks out", "no errors"];
    let last = |words: &[&str]| words.iter().filter_map(|w| lower.rfind(w)).max();
    match (last(&negative), last(&positive)) {
        (Some(n), Some(p)) => Some(p > n),
        (Some(_), None) => Some(false),
        (None, Some(_)) => Some(true),
        (None, None) => None,
    }
}

/// The first sentence of `text` (at most 200 characters): an answer's short claim.
pub fn first_claim(text: &str) -> Option<String> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?' | '\n')
                && t[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map_or(t.len(), |(i, c)| i + c.len_utf8());
    let sentence: String = t[..end].chars().take(200).collect();
    let sentence = sentence.trim().to_string();
    (!sentence.is_empty()).then_some(sentence)
}

fn integers(s: &str) -> Vec<usize> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter_map(|d| d.parse().ok())
        .collect()
}

fn first_integer(s: &str) -> Option<usize> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    // Only a number close to the marker counts ("Best: 2", "best candidate is 3").
    if start > 24 {
        return None;
    }
    let digits: String = s[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn numbers(s: &str) -> Vec<f64> {
    s.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|d| d.trim_matches('.').parse().ok())
        .collect()
}

fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    if start > 24 {
        return None;
    }
    let digits: String = s[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.trim_end_matches('.').parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn picks_and_scores_are_read_from_free_text() {
        assert_eq!(
            parse_pick("After comparing the candidates, Best: 2", 3),
            Some(1)
        );
        assert_eq!(parse_pick("**Best:** 3.", 3), Some(2));
        assert_eq!(parse_pick("Candidate 2 is the best one", 3), Some(1));
        assert_eq!(parse_pick("Best: 7", 3), None);
        assert_eq!(parse_pick("I cannot decide.", 3), None);
        assert_eq!(parse_score("Score: 9"), Some(0.9));
        assert_eq!(parse_score("I'd give it a score of 7.5/10"), Some(0.75));
        assert_eq!(parse_score("It is right. 8"), Some(0.8));
        assert_eq!(parse_score("Score: 42"), None);
        assert_eq!(parse_score("no idea"), None);
    }

    #[test]
    fn verdicts_and_claims() {
        assert_eq!(
            parse_verdict("The draft is correct: its answer 12 checks out."),
            Some(true)
        );
        assert_eq!(
            parse_verdict("The draft is wrong: 13 does not follow. Recompute it carefully."),
            Some(false)
        );
        assert_eq!(parse_verdict("Hmm."), None);
        assert_eq!(
            first_claim("3.5 plus 2 is 5.5. So the answer is 5.5.").as_deref(),
            Some("3.5 plus 2 is 5.5.")
        );
        assert_eq!(first_claim("  "), None);
    }

    #[test]
    fn prompts_number_their_blocks_and_bound_quotes() {
        let p = pick(&["A", "B"], true);
        assert!(p.contains("<candidate id=\"2\">\nB\n</candidate>"), "{p}");
        assert!(p.contains("Reply with \"Best: <id>\""));
        assert!(score("x").contains("Reply with \"Score: "));
        assert!(revise(&["one"]).contains("<answer id=\"1\">\none\n</answer>"));
        assert!(
            critique("d").contains("<draft>\nd\n</draft>") && critique("d").contains("Critique")
        );
        let long = "x".repeat(MAX_QUOTED_CHARS + 50);
        assert!(aggregate(&[&long]).len() < MAX_QUOTED_CHARS + 600);
    }
}
