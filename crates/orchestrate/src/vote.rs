//! The plurality vote over extracted final answers.
//!
//! Every ballot is one sample of one member with its extracted answer (`None`: nothing could be
//! extracted, or the call failed; an abstention). The answer with the most ballots wins. A tie
//! between answers goes to the answer backed by the member with the best recorded quality; when
//! that ties too (equal qualities, or none recorded), to the answer backed by the member listed
//! first. Members with no recorded quality rank below every member with one; members missing
//! from the list rank after every listed member, in ballot order.

use serde::{Deserialize, Serialize};

/// One sample of one member and its extracted answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ballot {
    pub member: String,
    /// Which of the member's independent samples this is (0-based).
    pub sample: u32,
    /// The canonical extracted answer; `None` is an abstention.
    pub answer: Option<String>,
}

impl Ballot {
    pub fn new(member: impl Into<String>, sample: u32, answer: Option<&str>) -> Self {
        Self {
            member: member.into(),
            sample,
            answer: answer.map(str::to_string),
        }
    }
}

/// A member of the orchestration, in configured order, with its recorded quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// The member's recorded accuracy in [0, 1] (the tie-break's quality and the confidence's
    /// evidence); `None` when nothing is recorded.
    pub accuracy: Option<f64>,
    /// How many graded answers `accuracy` was measured on (the confidence shrinks small counts
    /// toward a prior).
    #[serde(default)]
    pub observations: u32,
}

impl Member {
    pub fn new(name: impl Into<String>, accuracy: Option<f64>, observations: u32) -> Self {
        Self {
            name: name.into(),
            accuracy,
            observations,
        }
    }

    /// The accuracy when it is a finite number.
    pub(crate) fn quality(&self) -> Option<f64> {
        self.accuracy.filter(|a| a.is_finite())
    }
}

/// One answer's tally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerCount {
    pub answer: String,
    pub votes: usize,
    /// Indexes into the ballots that voted for this answer, in ballot order.
    pub ballots: Vec<usize>,
}

/// What decided a tie at the top, if there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// The winner's backers include the member with the best recorded quality.
    Quality,
    /// Qualities tied (or none recorded): the winner's backers include the first listed member.
    MemberOrder,
}

/// The result of a plurality vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoteOutcome {
    /// The winning answer; `None` when every ballot abstained.
    pub winner: Option<String>,
    /// Every answer's tally, the winner first, then by votes, then by the tie order.
    pub counts: Vec<AnswerCount>,
    /// Ballots with an answer.
    pub valid: usize,
    /// Indexes of the ballots without an answer.
    pub abstentions: Vec<usize>,
    /// Indexes of the ballots that voted for the winner.
    pub winner_ballots: Vec<usize>,
    /// The winner's votes over the valid ballots (0 when there are none).
    pub winning_share: f64,
    /// The share of pairs of valid ballots that agree (1 for a single ballot, 0 for none).
    pub agreement: f64,
    /// What decided a tie at the top, if there was one.
    pub tie_break: Option<TieBreak>,
}

impl VoteOutcome {
    /// Whether at least `quorum` ballots gave an answer.
    pub fn meets_quorum(&self, quorum: usize) -> bool {
        self.valid >= quorum
    }
}

/// How an answer ranks in a tie: best quality among its backers (higher first, `None` last),
/// then the earliest member position among its backers.
#[derive(Debug, Clone, Copy)]
struct TieKey {
    quality: Option<f64>,
    position: usize,
}

/// The plurality vote of `ballots`; `members` gives the configured order and recorded qualities.
pub fn plurality(ballots: &[Ballot], members: &[Member]) -> VoteOutcome {
    // Position of a member: its index in `members`, else after every listed member, in order of
    // its first ballot.
    let position = |name: &str| -> usize {
        members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| {
                members.len() + ballots.iter().position(|b| b.member == name).unwrap_or(0)
            })
    };
    let quality = |name: &str| -> Option<f64> {
        members
            .iter()
            .find(|m| m.name == name)
            .and_then(Member::quality)
    };

    let mut counts: Vec<AnswerCount> = Vec::new();
    let mut abstentions = Vec::new();
    for (i, ballot) in ballots.iter().enumerate() {
        match &ballot.answer {
            None => abstentions.push(i),
            Some(answer) => match counts.iter_mut().find(|c| &c.answer == answer) {
                Some(count) => {
                    count.votes += 1;
                    count.ballots.push(i);
                }
                None => counts.push(AnswerCount {
                    answer: answer.clone(),
                    votes: 1,
                    ballots: vec![i],
                }),
            },
        }
    }
    let valid = ballots.len() - abstentions.len();

    let tie_key = |count: &AnswerCount| -> TieKey {
        let mut key = TieKey {
            quality: None,
            position: usize::MAX,
        };
        for &i in &count.ballots {
            let member = &ballots[i].member;
            if let Some(q) = quality(member) {
                if key.quality.is_none_or(|best| q > best) {
                    key.quality = Some(q);
                }
            }
            key.position = key.position.min(position(member));
        }
        key
    };
    let keys: Vec<TieKey> = counts.iter().map(tie_key).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (keys[a], keys[b]);
        counts[b]
            .votes
            .cmp(&counts[a].votes)
            .then_with(|| match (ka.quality, kb.quality) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| ka.position.cmp(&kb.position))
            .then_with(|| a.cmp(&b))
    });

    let tie_break = match order.as_slice() {
        [first, second, ..] if counts[*first].votes == counts[*second].votes => {
            let (k1, k2) = (keys[*first], keys[*second]);
            let by_quality = match (k1.quality, k2.quality) {
                (Some(x), Some(y)) => x > y,
                (Some(_), None) => true,
                _ => false,
            };
            Some(if by_quality {
                TieBreak::Quality
            } else {
                TieBreak::MemberOrder
            })
        }
        _ => None,
    };

    let mut sorted: Vec<AnswerCount> = Vec::with_capacity(counts.len());
    for i in order {
        sorted.push(counts[i].clone());
    }
    let winner = sorted.first().map(|c| c.answer.clone());
    let winner_ballots = sorted
        .first()
        .map(|c| c.ballots.clone())
        .unwrap_or_default();
    let winning_share = if valid == 0 {
        0.0
    } else {
        winner_ballots.len() as f64 / valid as f64
    };
    let agreement = match valid {
        0 => 0.0,
        1 => 1.0,
        n => {
            let agreeing: usize = sorted.iter().map(|c| c.votes * (c.votes - 1) / 2).sum();
            agreeing as f64 / (n * (n - 1) / 2) as f64
        }
    };

    VoteOutcome {
        winner,
        counts: sorted,
        valid,
        abstentions,
        winner_ballots,
        winning_share,
        agreement,
        tie_break,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, Option<f64>)]) -> Vec<Member> {
        list.iter().map(|(n, q)| Member::new(*n, *q, 100)).collect()
    }

    #[test]
    fn majority_wins_with_counts_share_and_agreement() {
        let ballots = vec![
            Ballot::new("gpt", 0, Some("72")),
            Ballot::new("claude", 0, Some("72")),
            Ballot::new("gemini", 0, Some("70")),
        ];
        let out = plurality(
            &ballots,
            &members(&[("gpt", None), ("claude", None), ("gemini", None)]),
        );
        assert_eq!(out.winner.as_deref(), Some("72"));
        assert_eq!(out.counts.len(), 2);
        assert_eq!(out.counts[0].votes, 2);
        assert_eq!(out.counts[1].answer, "70");
        assert_eq!(out.winner_ballots, vec![0, 1]);
        assert_eq!(out.valid, 3);
        assert!((out.winning_share - 2.0 / 3.0).abs() < 1e-12);
        assert!((out.agreement - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(out.tie_break, None);
        assert!(out.meets_quorum(3));
        assert!(!out.meets_quorum(4));
    }

    #[test]
    fn abstentions_are_reported_and_do_not_count_toward_quorum() {
        let ballots = vec![
            Ballot::new("a", 0, None),
            Ballot::new("b", 0, Some("B")),
            Ballot::new("c", 0, None),
        ];
        let out = plurality(&ballots, &members(&[("a", None), ("b", None), ("c", None)]));
        assert_eq!(out.abstentions, vec![0, 2]);
        assert_eq!(out.valid, 1);
        assert_eq!(out.winner.as_deref(), Some("B"));
        assert_eq!(out.winning_share, 1.0);
        assert_eq!(out.agreement, 1.0);
        assert!(out.meets_quorum(1));
        assert!(!out.meets_quorum(2));
    }

    #[test]
    fn all_abstain_gives_no_winner() {
        let ballots = vec![Ballot::new("a", 0, None)];
        let out = plurality(&ballots, &[]);
        assert_eq!(out.winner, None);
        assert_eq!(out.winning_share, 0.0);
        assert_eq!(out.agreement, 0.0);
        assert!(out.winner_ballots.is_empty());
        let empty = plurality(&[], &[]);
        assert_eq!(empty.winner, None);
        assert!(empty.meets_quorum(0));
    }

    #[test]
    fn tie_goes_to_best_recorded_quality() {
        let ballots = vec![
            Ballot::new("gpt", 0, Some("1")),
            Ballot::new("claude", 0, Some("2")),
            Ballot::new("gemini", 0, Some("3")),
        ];
        let ms = members(&[("gpt", Some(0.6)), ("claude", Some(0.9)), ("gemini", None)]);
        let out = plurality(&ballots, &ms);
        assert_eq!(out.winner.as_deref(), Some("2"));
        assert_eq!(out.tie_break, Some(TieBreak::Quality));
        // Unrecorded ranks below any recorded quality, even a low one.
        let ms = members(&[("gpt", None), ("claude", Some(0.1)), ("gemini", None)]);
        assert_eq!(plurality(&ballots, &ms).winner.as_deref(), Some("2"));
    }

    #[test]
    fn equal_quality_tie_goes_to_first_listed_member() {
        let ballots = vec![
            Ballot::new("gemini", 0, Some("3")),
            Ballot::new("claude", 0, Some("2")),
        ];
        let ms = members(&[("claude", Some(0.8)), ("gemini", Some(0.8))]);
        let out = plurality(&ballots, &ms);
        assert_eq!(out.winner.as_deref(), Some("2"));
        assert_eq!(out.tie_break, Some(TieBreak::MemberOrder));
        let ms = members(&[("claude", None), ("gemini", None)]);
        assert_eq!(plurality(&ballots, &ms).winner.as_deref(), Some("2"));
    }

    #[test]
    fn tie_quality_is_the_best_backer_of_each_answer() {
        // "x" is backed by a weak and a strong member, "y" by two medium ones.
        let ballots = vec![
            Ballot::new("weak", 0, Some("x")),
            Ballot::new("mid1", 0, Some("y")),
            Ballot::new("strong", 0, Some("x")),
            Ballot::new("mid2", 0, Some("y")),
        ];
        let ms = members(&[
            ("mid1", Some(0.7)),
            ("mid2", Some(0.7)),
            ("weak", Some(0.3)),
            ("strong", Some(0.95)),
        ]);
        let out = plurality(&ballots, &ms);
        assert_eq!(out.winner.as_deref(), Some("x"));
        assert_eq!(out.winner_ballots, vec![0, 2]);
    }

    #[test]
    fn samples_of_one_member_each_count() {
        let ballots = vec![
            Ballot::new("gpt", 0, Some("5")),
            Ballot::new("gpt", 1, Some("5")),
            Ballot::new("gpt", 2, Some("6")),
            Ballot::new("claude", 0, Some("6")),
            Ballot::new("claude", 1, Some("7")),
        ];
        let out = plurality(&ballots, &members(&[("claude", None), ("gpt", None)]));
        // 5 and 6 tie at two; claude (listed first) backs 6.
        assert_eq!(out.winner.as_deref(), Some("6"));
        assert_eq!(out.tie_break, Some(TieBreak::MemberOrder));
        assert_eq!(
            out.counts.iter().map(|c| c.votes).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    #[test]
    fn unlisted_members_rank_after_listed_ones() {
        let ballots = vec![
            Ballot::new("stranger", 0, Some("a")),
            Ballot::new("listed", 0, Some("b")),
        ];
        let out = plurality(&ballots, &members(&[("listed", None)]));
        assert_eq!(out.winner.as_deref(), Some("b"));
        let out = plurality(&ballots, &[]);
        assert_eq!(out.winner.as_deref(), Some("a"));
    }

    #[test]
    fn nan_quality_counts_as_unrecorded() {
        let ballots = vec![
            Ballot::new("a", 0, Some("1")),
            Ballot::new("b", 0, Some("2")),
        ];
        let ms = members(&[("a", Some(f64::NAN)), ("b", Some(0.5))]);
        assert_eq!(plurality(&ballots, &ms).winner.as_deref(), Some("2"));
    }

    #[test]
    fn outcome_serializes() {
        let out = plurality(&[Ballot::new("a", 0, Some("1"))], &[]);
        let text = serde_json::to_string(&out).unwrap_or_default();
        assert!(text.contains("\"winner\":\"1\""), "{text}");
    }

    /// Small deterministic generator for the simulation (xorshift64*).
    struct XorShift(u64);
    impl XorShift {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Issue 13's closed form: three independent members at p = 0.7 whose wrong answers never
    /// agree; plurality with the member-order tie-break is right with 0.784 + 0.189 / 3 ≈ 0.847.
    #[test]
    fn three_members_at_point_seven_reach_the_closed_form() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let ms = members(&[("a", None), ("b", None), ("c", None)]);
        let trials = 40_000;
        let mut right = 0;
        for _ in 0..trials {
            let ballots: Vec<Ballot> = ["a", "b", "c"]
                .iter()
                .map(|m| {
                    let answer = if rng.next_f64() < 0.7 {
                        "right".to_string()
                    } else {
                        format!("wrong-{m}")
                    };
                    Ballot::new(*m, 0, Some(&answer))
                })
                .collect();
            if plurality(&ballots, &ms).winner.as_deref() == Some("right") {
                right += 1;
            }
        }
        let rate = right as f64 / trials as f64;
        let closed = 0.784 + 0.189 / 3.0;
        // Standard error ≈ sqrt(0.847·0.153/40000) ≈ 0.0018; allow four of them.
        assert!((rate - closed).abs() < 0.008, "rate {rate} vs {closed}");
    }
}
