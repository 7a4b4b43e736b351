//! The `quiz` model family: arithmetic answers that are right with a configured probability,
//! for evaluating orchestrators that combine several models (voting, judging, critique).
//!
//! The question is the last `<int> <op> <int>` in the conversation's first user message
//! (op: `+ - * x ×`); everything is drawn deterministically from (model name, question,
//! request seed). `acc` is the probability of a right answer; `corr` the probability that a
//! draw uses a latent shared by every quiz model for the same question instead of the
//! model's own, so correlated models are right and wrong together and, when wrong, agree on
//! the same wrong answer. See the crate docs for the orchestration prompts understood.

use crate::gen::{splitmix, Fnv, Input};

/// The quiz directives: `acc-P`, `corr-P`, `wrong-K`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct QuizKnobs {
    /// Probability of a right answer.
    pub acc: f64,
    /// Probability of drawing from the latent shared by all quiz models.
    pub corr: f64,
    /// Wrong answers come from this many alternatives; `None`: practically never equal.
    pub wrong: Option<u64>,
}

impl Default for QuizKnobs {
    fn default() -> Self {
        QuizKnobs {
            acc: 0.7,
            corr: 0.0,
            wrong: None,
        }
    }
}

impl QuizKnobs {
    pub fn sanitize(&mut self) {
        self.acc = clamp01(self.acc, 0.7);
        self.corr = clamp01(self.corr, 0.0);
        self.wrong = self.wrong.filter(|k| *k > 0);
    }
}

fn clamp01(x: f64, default: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        default
    }
}

/// Markers of the orchestration prompts.
const BEST_MARKER: &str = "Reply with \"Best: ";
const SCORE_MARKER: &str = "Reply with \"Score: ";
const CRITIQUE_MARKER: &str = "Critique";
/// Tags that start orchestration material; the question is looked for before them.
const BLOCK_TAGS: [&str; 3] = ["<answer", "<candidate", "<draft"];

/// An arithmetic question found in a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub a: i64,
    pub op: char,
    pub b: i64,
    pub answer: i64,
    /// The text the question was found in, trimmed: what the draws hash.
    pub text: String,
}

/// The last `<int> <op> <int>` of `text` (before any orchestration block), with its exact
/// result; `None` when there is none or the result overflows.
pub(crate) fn parse_question(text: &str) -> Option<Question> {
    let region = BLOCK_TAGS
        .iter()
        .filter_map(|t| text.find(t))
        .min()
        .map_or(text, |end| text.get(..end).unwrap_or(text))
        .trim();
    let chars: Vec<char> = region.chars().collect();
    let mut found = None;
    for i in 0..chars.len() {
        if let Some(m) = expression_at(&chars, i) {
            found = Some(m);
        }
    }
    let (a, op, b) = found?;
    let answer = match op {
        '+' => a.checked_add(b),
        '-' => a.checked_sub(b),
        _ => a.checked_mul(b),
    }?;
    Some(Question {
        a,
        op,
        b,
        answer,
        text: region.to_owned(),
    })
}

fn at(chars: &[char], i: usize) -> Option<char> {
    chars.get(i).copied()
}

fn is_digit(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

/// Whether an integer may start at `i`: a digit or a sign glued to one, not continuing a
/// word, another number or a decimal.
fn number_starts(chars: &[char], i: usize) -> bool {
    let c = at(chars, i);
    let starts = is_digit(c) || (c == Some('-') && is_digit(at(chars, i + 1)));
    if !starts {
        return false;
    }
    match i.checked_sub(1).and_then(|p| at(chars, p)) {
        None => true,
        Some(p) => !(p.is_alphanumeric() || matches!(p, '.' | ',' | '-' | '_')),
    }
}

/// An integer at `i` (optional `-`, digits, `,ddd` groups): its value and end.
fn integer_at(chars: &[char], i: usize) -> Option<(i64, usize)> {
    let mut j = i;
    let negative = at(chars, j) == Some('-');
    if negative {
        j += 1;
    }
    if !is_digit(at(chars, j)) {
        return None;
    }
    let mut value: i64 = 0;
    let mut push = |d: char| -> Option<()> {
        let d = i64::from(d.to_digit(10)?);
        value = value.checked_mul(10)?.checked_add(d)?;
        Some(())
    };
    while let Some(c) = at(chars, j).filter(char::is_ascii_digit) {
        push(c)?;
        j += 1;
    }
    // Thousands groups: a comma and exactly three digits.
    while at(chars, j) == Some(',')
        && (1..=3).all(|k| is_digit(at(chars, j + k)))
        && !is_digit(at(chars, j + 4))
    {
        for k in 1..=3 {
            push(at(chars, j + k)?)?;
        }
        j += 4;
    }
    // A decimal is not an integer.
    if at(chars, j) == Some('.') && is_digit(at(chars, j + 1)) {
        return None;
    }
    Some((if negative { -value } else { value }, j))
}

fn skip_spaces(chars: &[char], mut j: usize) -> usize {
    while at(chars, j).is_some_and(char::is_whitespace) {
        j += 1;
    }
    j
}

/// `<int> <op> <int>` starting at `i`.
fn expression_at(chars: &[char], i: usize) -> Option<(i64, char, i64)> {
    if !number_starts(chars, i) {
        return None;
    }
    let (a, end) = integer_at(chars, i)?;
    let j = skip_spaces(chars, end);
    let op = at(chars, j).filter(|c| matches!(c, '+' | '-' | '*' | 'x' | '×'))?;
    let j = skip_spaces(chars, j + 1);
    let (b, end) = integer_at(chars, j)?;
    // `0x1F`, `3 + 4y`: not arithmetic on two integers.
    if at(chars, end).is_some_and(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((a, op, b))
}

/// The last integer-looking number of `text`, commas ignored.
pub(crate) fn last_number(text: &str) -> Option<i64> {
    let chars: Vec<char> = text.chars().collect();
    let mut last = None;
    let mut i = 0;
    while i < chars.len() {
        let c = at(&chars, i);
        let sign = c == Some('-')
            && is_digit(at(&chars, i + 1))
            && !i
                .checked_sub(1)
                .and_then(|p| at(&chars, p))
                .is_some_and(char::is_alphanumeric);
        if is_digit(c) || sign {
            let mut j = if sign { i + 1 } else { i };
            let mut digits = String::new();
            while let Some(d) = at(&chars, j) {
                if d.is_ascii_digit() {
                    digits.push(d);
                } else if !(d == ',' && is_digit(at(&chars, j + 1))) {
                    break;
                }
                j += 1;
            }
            if let Ok(v) = digits.parse::<i64>() {
                last = Some(if sign { -v } else { v });
            }
            i = j;
        } else {
            i += 1;
        }
    }
    last
}

/// `-1,234`.
pub(crate) fn with_commas(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (k, d) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A block `<tag …>content</tag>`: its `id` attribute, if any, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block<'a> {
    pub id: Option<&'a str>,
    pub content: &'a str,
}

pub(crate) fn blocks<'a>(text: &'a str, tag: &str) -> Vec<Block<'a>> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = rest.get(start + open.len()..).unwrap_or("");
        // `<answers>` is not `<answer>`.
        if !after.starts_with(|c: char| c == '>' || c.is_whitespace()) {
            rest = after;
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let attrs = after.get(..gt).unwrap_or("");
        let body = after.get(gt + 1..).unwrap_or("");
        let Some(end) = body.find(&close) else { break };
        out.push(Block {
            id: attr(attrs, "id"),
            content: body.get(..end).unwrap_or(""),
        });
        rest = body.get(end + close.len()..).unwrap_or("");
    }
    out
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = attrs.find(&key)? + key.len();
    let value = attrs.get(start..)?;
    value.get(..value.find('"')?)
}

fn hash(parts: &[&str]) -> u64 {
    let mut h = Fnv::default();
    for p in parts {
        h.segment(p);
    }
    h.0
}

/// A uniform number in `[0, 1)` from a hash.
pub(crate) fn uniform(h: u64) -> f64 {
    (splitmix(h) >> 11) as f64 / (1u64 << 53) as f64
}

/// A nonzero offset: one of `k` (`1, -1, 2, -2, …`) or any of `±[1, 10^9]`.
fn offset(h: u64, k: Option<u64>) -> i64 {
    let x = splitmix(h);
    match k {
        Some(k) => {
            let i = x % k.max(1);
            let magnitude = i64::try_from(i / 2 + 1).unwrap_or(i64::MAX);
            if i.is_multiple_of(2) {
                magnitude
            } else {
                -magnitude
            }
        }
        None => {
            let magnitude = i64::try_from((x >> 1) % 1_000_000_000 + 1).unwrap_or(1);
            if x & 1 == 0 {
                magnitude
            } else {
                -magnitude
            }
        }
    }
}

/// One draw: right or not, and the answer it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Draw {
    pub correct: bool,
    /// The shared latent decided it.
    pub shared: bool,
    pub answer: i64,
}

/// A quiz model facing a question.
#[derive(Debug, Clone)]
pub(crate) struct Quiz<'a> {
    pub model: &'a str,
    pub question: Question,
    pub seed: String,
    pub knobs: QuizKnobs,
}

impl<'a> Quiz<'a> {
    pub fn new(model: &'a str, question: Question, seed: Option<i64>, knobs: QuizKnobs) -> Self {
        Quiz {
            model,
            question,
            seed: seed.unwrap_or(0).to_string(),
            knobs,
        }
    }

    fn hash(&self, kind: &str, own: bool, salt: Option<&str>) -> u64 {
        let q = self.question.text.as_str();
        let mut parts: Vec<&str> = vec![kind];
        if own {
            parts.extend([self.model, q, self.seed.as_str()]);
        } else {
            parts.push(q);
        }
        parts.extend(salt);
        hash(&parts)
    }

    /// The draw of a round: `None` for the answer itself, `revise` / `judge` for later ones,
    /// independent of it at the same accuracy and correlation.
    pub fn draw(&self, salt: Option<&str>) -> Draw {
        let shared_latent = uniform(self.hash("shared", false, salt));
        let own = uniform(self.hash("own", true, salt));
        let mix = uniform(self.hash("mix", true, salt));
        let shared = mix < self.knobs.corr;
        let used = if shared { shared_latent } else { own };
        let correct = used < self.knobs.acc;
        let answer = if correct {
            self.question.answer
        } else {
            self.wrong_answer(shared)
        };
        Draw {
            correct,
            shared,
            answer,
        }
    }

    /// The same for every quiz model when `shared`, else this model's own.
    fn wrong_answer(&self, shared: bool) -> i64 {
        let off = offset(self.hash("wrong", !shared, None), self.knobs.wrong);
        let right = self.question.answer;
        right
            .checked_add(off)
            .or_else(|| right.checked_sub(off))
            .unwrap_or(right ^ 1)
    }

    /// `n` written as a final answer, in a phrasing picked by hash.
    pub fn phrase(&self, n: i64, salt: &str) -> String {
        let q = &self.question;
        let pick = splitmix(self.hash("phrase", true, Some(salt))) % 4;
        match pick {
            0 if n == q.answer => format!(
                "Let me work through it: {} {} {} = {n}. The answer is {}.",
                q.a,
                q.op,
                q.b,
                with_commas(n)
            ),
            0 => format!("Let me work through it. The answer is {}.", with_commas(n)),
            1 => format!("Final answer: \\boxed{{{n}}}"),
            2 => format!("The answer is **{}**.", with_commas(n)),
            _ => format!("That makes {} units in total.", with_commas(n)),
        }
    }

    /// The reply to the conversation whose last user message is `last_user`.
    pub fn reply(&self, last_user: &str) -> String {
        let right = self.question.answer;
        let candidates = blocks(last_user, "candidate");
        if !candidates.is_empty() && last_user.contains(BEST_MARKER) {
            return self.pick(&candidates);
        }
        if let [only] = candidates.as_slice() {
            if last_user.contains(SCORE_MARKER) {
                let judge = self.draw(Some("judge")).correct;
                let good = last_number(only.content) == Some(right);
                let score = match (judge, good) {
                    (true, true) => 9,
                    (true, false) => 2,
                    (false, true) => 3,
                    (false, false) => 8,
                };
                return format!("Score: {score}");
            }
        }
        if let Some(draft) = blocks(last_user, "draft").first() {
            if last_user.contains(CRITIQUE_MARKER) {
                return self.critique(draft.content);
            }
        }
        let answers = blocks(last_user, "answer");
        if !answers.is_empty() {
            let draw = self.draw(Some("revise"));
            let n = if draw.correct {
                right
            } else {
                plurality(answers.iter().filter_map(|b| last_number(b.content)))
                    .unwrap_or(draw.answer)
            };
            return self.phrase(n, "revise");
        }
        self.phrase(self.draw(None).answer, "answer")
    }

    fn pick(&self, candidates: &[Block<'_>]) -> String {
        let right = self.question.answer;
        let good = |b: &Block<'_>| last_number(b.content) == Some(right);
        let chosen = if self.draw(Some("judge")).correct {
            candidates.iter().position(good)
        } else {
            candidates.iter().position(|b| !good(b))
        }
        .unwrap_or(0);
        let id = candidates
            .get(chosen)
            .and_then(|b| b.id)
            .map_or_else(|| (chosen + 1).to_string(), str::to_owned);
        format!("After comparing the candidates, Best: {id}")
    }

    fn critique(&self, draft: &str) -> String {
        let number = last_number(draft);
        let draft_right = number == Some(self.question.answer);
        let judge = self.draw(Some("judge")).correct;
        let says_right = draft_right == judge;
        match (says_right, number) {
            (true, Some(n)) => format!("The draft is correct: its answer {n} checks out."),
            (true, None) => "The draft is correct: its answer checks out.".to_owned(),
            (false, Some(n)) => {
                format!("The draft is wrong: {n} does not follow. Recompute it carefully.")
            }
            (false, None) => {
                "The draft is wrong: its answer does not follow. Recompute it carefully.".to_owned()
            }
        }
    }
}

/// The most frequent value; ties go to the first seen.
fn plurality(values: impl Iterator<Item = i64>) -> Option<i64> {
    let mut counts: Vec<(i64, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(x, _)| *x == v) {
            Some((_, c)) => *c += 1,
            None => counts.push((v, 1)),
        }
    }
    let mut best: Option<(i64, usize)> = None;
    for (v, c) in counts {
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((v, c));
        }
    }
    best.map(|(v, _)| v)
}

/// The quiz reply for this request, when the model is a quiz model and the first user
/// message holds a question.
pub(crate) fn reply(model: &str, input: &Input<'_>, knobs: QuizKnobs) -> Option<String> {
    let question = parse_question(&input.first_user)?;
    Some(Quiz::new(model, question, input.seed, knobs).reply(&input.last_user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiz(model: &str, text: &str, seed: Option<i64>, acc: f64, corr: f64) -> Quiz<'static> {
        let model: &'static str = Box::leak(model.to_owned().into_boxed_str());
        Quiz::new(
            model,
            parse_question(text).unwrap(),
            seed,
            QuizKnobs {
                acc,
                corr,
                wrong: None,
            },
        )
    }

    fn questions(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("What is {} + {}?", i * 7 + 3, i % 97))
            .collect()
    }

    #[test]
    fn parses_questions() {
        let q = parse_question("What is 1,234 + 5?").unwrap();
        assert_eq!((q.a, q.op, q.b, q.answer), (1234, '+', 5, 1239));
        assert_eq!(q.text, "What is 1,234 + 5?");
        assert_eq!(parse_question("  7×6 ").unwrap().answer, 42);
        assert_eq!(parse_question("compute 12 x 3").unwrap().answer, 36);
        assert_eq!(parse_question("compute 12x3").unwrap().answer, 36);
        assert_eq!(parse_question("5*-3").unwrap().answer, -15);
        assert_eq!(parse_question("-3 + 4").unwrap().answer, 1);
        assert_eq!(parse_question("10-3").unwrap().answer, 7);
        assert_eq!(parse_question("5 - -3").unwrap().answer, 8);
        assert_eq!(
            parse_question("-1,000,000 * 2,000").unwrap().answer,
            -2_000_000_000
        );
        // The last expression wins.
        assert_eq!(
            parse_question("First 2 + 2, then: what is 6 * 7?")
                .unwrap()
                .answer,
            42
        );
        // A comma and space separates numbers; a thousands group is not a number of its own.
        assert_eq!(parse_question("1, 2 + 3").unwrap().answer, 5);
        assert_eq!(parse_question("1,234+1").unwrap().answer, 1235);
        assert_eq!(parse_question("Hello there"), None);
        assert_eq!(parse_question("2.5 + 1"), None);
        assert_eq!(parse_question("0x1F"), None);
        assert_eq!(parse_question("9223372036854775807 + 1"), None);
        assert_eq!(parse_question("99999999999999999999 + 1"), None);
        // Orchestration blocks are not part of the question.
        let q =
            parse_question("What is 2 + 3?\n<candidate id=\"1\">4 + 4 = 8</candidate>").unwrap();
        assert_eq!((q.answer, q.text.as_str()), (5, "What is 2 + 3?"));
    }

    #[test]
    fn numbers_and_blocks() {
        assert_eq!(last_number("The answer is 1,239."), Some(1239));
        assert_eq!(last_number("Final answer: \\boxed{-42}"), Some(-42));
        assert_eq!(last_number("a 1 b 2,000,000 units"), Some(2_000_000));
        assert_eq!(last_number("none"), None);
        assert_eq!(last_number("x-1"), Some(1));
        assert_eq!(with_commas(-1234), "-1,234");
        assert_eq!(with_commas(999), "999");
        assert_eq!(with_commas(1_000_000), "1,000,000");
        assert_eq!(with_commas(i64::MIN), "-9,223,372,036,854,775,808");
        let b = blocks(
            "x <answer id=\"1\">is 5</answer><answers>no</answers> <answer id=\"2\">\n7\n</answer>",
            "answer",
        );
        assert_eq!(
            b,
            vec![
                Block {
                    id: Some("1"),
                    content: "is 5"
                },
                Block {
                    id: Some("2"),
                    content: "\n7\n"
                }
            ]
        );
        assert_eq!(blocks("<draft>d 3</draft>", "draft")[0].content, "d 3");
        assert_eq!(plurality([1, 2, 2, 1, 3].into_iter()), Some(1));
        assert_eq!(plurality([1, 2, 2].into_iter()), Some(2));
        assert_eq!(plurality(std::iter::empty()), None);
    }

    #[test]
    fn draws_are_deterministic() {
        let a = quiz("quiz+acc-0.5", "What is 3 * 4?", Some(7), 0.5, 0.3);
        let b = quiz("quiz+acc-0.5", "What is 3 * 4?", Some(7), 0.5, 0.3);
        for salt in [None, Some("revise"), Some("judge")] {
            assert_eq!(a.draw(salt), b.draw(salt));
        }
        assert_eq!(a.reply("What is 3 * 4?"), b.reply("What is 3 * 4?"));
    }

    #[test]
    fn marginal_accuracy_matches_acc() {
        for (acc, corr) in [(0.7, 0.0), (0.3, 0.5), (0.9, 1.0)] {
            let qs = questions(20_000);
            let right = qs
                .iter()
                .filter(|q| quiz("quiz-a", q, None, acc, corr).draw(None).correct)
                .count();
            let rate = right as f64 / qs.len() as f64;
            assert!((rate - acc).abs() < 0.01, "acc {acc} corr {corr}: {rate}");
            let judged = qs
                .iter()
                .filter(|q| {
                    quiz("quiz-a", q, None, acc, corr)
                        .draw(Some("judge"))
                        .correct
                })
                .count();
            let rate = judged as f64 / qs.len() as f64;
            assert!(
                (rate - acc).abs() < 0.01,
                "judge acc {acc} corr {corr}: {rate}"
            );
        }
    }

    #[test]
    fn edge_accuracies() {
        for q in questions(500) {
            let right = quiz("quiz", &q, None, 1.0, 0.5).draw(None);
            assert!(right.correct);
            let wrong = quiz("quiz", &q, None, 0.0, 0.5).draw(None);
            assert!(!wrong.correct);
            assert_ne!(wrong.answer, right.answer);
        }
    }

    #[test]
    fn independent_wrong_answers_never_agree() {
        let mut both_wrong = 0;
        for q in questions(20_000) {
            let a = quiz("quiz-a", &q, None, 0.5, 0.0).draw(None);
            let b = quiz("quiz-b", &q, None, 0.5, 0.0).draw(None);
            if !a.correct && !b.correct {
                both_wrong += 1;
                assert_ne!(a.answer, b.answer, "{q}");
            }
        }
        assert!(both_wrong > 4000, "{both_wrong}");
    }

    #[test]
    fn full_correlation_gives_identical_answers() {
        for q in questions(20_000) {
            let a = quiz("quiz-a+acc-0.6+corr-1", &q, Some(3), 0.6, 1.0).draw(None);
            let b = quiz("quiz-b+acc-0.6+corr-1", &q, Some(9), 0.6, 1.0).draw(None);
            assert_eq!(a.answer, b.answer, "{q}");
        }
    }

    #[test]
    fn agreement_on_wrong_answers_grows_with_correlation() {
        let qs = questions(20_000);
        let rates: Vec<usize> = [0.0, 0.25, 0.5, 0.75, 1.0]
            .iter()
            .map(|&corr| {
                qs.iter()
                    .filter(|q| {
                        let a = quiz("quiz-a", q, None, 0.6, corr).draw(None);
                        let b = quiz("quiz-b", q, None, 0.6, corr).draw(None);
                        !a.correct && !b.correct && a.answer == b.answer
                    })
                    .count()
            })
            .collect();
        assert_eq!(rates[0], 0);
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
    }

    #[test]
    fn wrong_k_bounds_the_wrong_answers() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..2000 {
            let mut z = quiz("quiz", "What is 10 + 5?", Some(seed), 0.0, 0.0);
            z.knobs.wrong = Some(3);
            let d = z.draw(None);
            assert!(!d.correct);
            assert_ne!(d.answer, 15);
            seen.insert(d.answer);
        }
        let mut seen: Vec<i64> = seen.into_iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![14, 16, 17]);
    }

    #[test]
    fn the_seed_changes_the_draw() {
        let qs = questions(1000);
        let differ = qs
            .iter()
            .filter(|q| {
                quiz("quiz", q, Some(1), 0.5, 0.0).draw(None).correct
                    != quiz("quiz", q, Some(2), 0.5, 0.0).draw(None).correct
            })
            .count();
        assert!(differ > 300, "{differ}");
        // No seed is seed 0.
        let q = &qs[0];
        assert_eq!(
            quiz("quiz", q, None, 0.5, 0.0).draw(None),
            quiz("quiz", q, Some(0), 0.5, 0.0).draw(None)
        );
    }

    #[test]
    fn replies_end_with_the_answer() {
        let mut variants = std::collections::HashSet::new();
        for (i, q) in questions(200).iter().enumerate() {
            let z = quiz(&format!("quiz-{i}"), q, None, 0.5, 0.0);
            let d = z.draw(None);
            let text = z.reply(q);
            assert_eq!(last_number(&text), Some(d.answer), "{text}");
            if !d.correct {
                assert!(!text.contains('='), "{text}");
            }
            let variant = [
                "Let me work through it:",
                "Let me work through it.",
                "Final answer:",
                "The answer is",
                "That makes",
            ]
            .iter()
            .position(|p| text.starts_with(p));
            variants.insert(variant.unwrap());
        }
        assert_eq!(variants.len(), 5, "{variants:?}");
    }

    /// A model whose judge draw is right, and one whose judge draw is wrong.
    fn judges(q: &str) -> (Quiz<'static>, Quiz<'static>) {
        let mut right = None;
        let mut wrong = None;
        for i in 0.. {
            let z = quiz(&format!("quiz-{i}"), q, None, 0.5, 0.0);
            match z.draw(Some("judge")).correct {
                true if right.is_none() => right = Some(z),
                false if wrong.is_none() => wrong = Some(z),
                _ => {}
            }
            if let (Some(r), Some(w)) = (&right, &wrong) {
                return (r.clone(), w.clone());
            }
        }
        unreachable!()
    }

    #[test]
    fn pick_score_and_critique() {
        let q = "What is 1,234 + 5?";
        let (good, bad) = judges(q);
        let pick = "Which is best?\n<candidate id=\"1\">It is 1,240.</candidate>\n<candidate id=\"2\">\\boxed{1239}</candidate>\n<candidate id=\"3\">1,239</candidate>\nReply with \"Best: N\".";
        assert_eq!(good.reply(pick), "After comparing the candidates, Best: 2");
        assert_eq!(bad.reply(pick), "After comparing the candidates, Best: 1");
        let all_right = "<candidate id=\"4\">1239</candidate><candidate id=\"5\">1239</candidate> Reply with \"Best: N\"";
        assert_eq!(
            bad.reply(all_right),
            "After comparing the candidates, Best: 4"
        );
        let none_right = "<candidate id=\"4\">12</candidate><candidate id=\"5\">13</candidate> Reply with \"Best: N\"";
        assert_eq!(
            good.reply(none_right),
            "After comparing the candidates, Best: 4"
        );

        let score = |n: &str| {
            format!("<candidate id=\"1\">The answer is {n}.</candidate>\nReply with \"Score: N\" from 1 to 10.")
        };
        assert_eq!(good.reply(&score("1,239")), "Score: 9");
        assert_eq!(good.reply(&score("1,238")), "Score: 2");
        assert_eq!(bad.reply(&score("1,239")), "Score: 3");
        assert_eq!(bad.reply(&score("1,238")), "Score: 8");

        let critique =
            |n: &str| format!("<draft>So the result is {n}.</draft>\nCritique the draft.");
        assert_eq!(
            good.reply(&critique("1,239")),
            "The draft is correct: its answer 1239 checks out."
        );
        assert_eq!(
            good.reply(&critique("1240")),
            "The draft is wrong: 1240 does not follow. Recompute it carefully."
        );
        assert_eq!(
            bad.reply(&critique("1239")),
            "The draft is wrong: 1239 does not follow. Recompute it carefully."
        );
        assert_eq!(
            bad.reply(&critique("1240")),
            "The draft is correct: its answer 1240 checks out."
        );
    }

    #[test]
    fn read_others_revises() {
        let q = "What is 1,234 + 5?";
        let others = "Other answers:\n<answer id=\"1\">It is 1,240.</answer>\n<answer id=\"2\">\\boxed{77}</answer>\n<answer id=\"3\">Surely 77 units</answer>\n<answer id=\"4\">no idea</answer>\nGive your final answer.";
        let tie = "<answer id=\"1\">5</answer><answer id=\"2\">6</answer><answer id=\"3\">6</answer><answer id=\"4\">5</answer>";
        let silent = "<answer id=\"1\">no idea</answer>";
        let (mut right, mut wrong) = (0, 0);
        for i in 0..200 {
            let z = quiz(&format!("quiz-{i}"), q, None, 0.5, 0.0);
            let d = z.draw(Some("revise"));
            let n = last_number(&z.reply(others));
            let t = last_number(&z.reply(tie));
            let s = last_number(&z.reply(silent));
            if d.correct {
                right += 1;
                assert_eq!((n, t, s), (Some(1239), Some(1239), Some(1239)));
            } else {
                wrong += 1;
                assert_eq!((n, t, s), (Some(77), Some(5), Some(d.answer)));
                assert_ne!(d.answer, 1239);
            }
        }
        assert!(right > 50 && wrong > 50);
    }
}
