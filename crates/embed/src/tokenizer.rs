//! BERT's uncased WordPiece tokenizer over `vocab.txt`, written to give the same ids as Hugging
//! Face `tokenizers` with the model's `tokenizer.json` (`BertNormalizer` with clean-text, CJK
//! spacing, accent stripping and lowercasing; `BertPreTokenizer`; `WordPiece` with `##`
//! continuations and 100 characters per word at most; `[CLS] … [SEP]`), minus its fixed padding:
//! sequences are only truncated, and padded per batch by the caller.
//!
//! The Unicode tables are those `tokenizers` uses (`unicode_categories` for categories,
//! canonical decomposition for accents), so corner cases (emoji, fullwidth forms, combining marks)
//! agree too; `tests/reference/minilm_reference.json` holds ids produced by `tokenizers` that the
//! tests compare exactly.

use std::collections::HashMap;

use unicode_categories::UnicodeCategories;
use unicode_normalization::UnicodeNormalization;

/// A WordPiece vocabulary and BERT's normalization rules.
#[derive(Debug)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    lowercase: bool,
    strip_accents: bool,
    cls: u32,
    sep: u32,
    unk: u32,
    max_chars_per_word: usize,
}

impl WordPiece {
    /// Builds the tokenizer from the lines of `vocab.txt` (the id of a token is its line number).
    /// `None` when one of `[CLS]`, `[SEP]`, `[UNK]` is missing.
    pub fn from_vocab(vocab_txt: &str, lowercase: bool) -> Option<WordPiece> {
        let vocab: HashMap<String, u32> = vocab_txt
            .lines()
            .enumerate()
            .map(|(i, token)| (token.trim_end_matches('\r').to_owned(), i as u32))
            .collect();
        Some(WordPiece {
            cls: *vocab.get("[CLS]")?,
            sep: *vocab.get("[SEP]")?,
            unk: *vocab.get("[UNK]")?,
            vocab,
            lowercase,
            strip_accents: lowercase,
            max_chars_per_word: 100,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// `[CLS] wordpieces… [SEP]`, with the word pieces cut so that the whole stays within
    /// `max_len` ids (`max_len` ≥ 2).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let budget = max_len.saturating_sub(2);
        let mut ids = Vec::with_capacity(16);
        ids.push(self.cls);
        let normalized = self.normalize(text);
        'words: for word in pre_tokenize(&normalized) {
            for id in self.word_pieces(word) {
                if ids.len() > budget {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    /// `BertNormalizer`: drop NUL, U+FFFD and other control characters, map whitespace to a
    /// space, surround CJK ideographs with spaces, strip accents (NFD, then drop nonspacing
    /// marks), lowercase, in that order.
    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            if is_whitespace(c) {
                out.push(' ');
            } else if is_chinese_char(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out.nfd().filter(|c| !c.is_mark_nonspacing()).collect();
        }
        if self.lowercase {
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }

    /// Greedy longest-match-first WordPiece; a word with a piece not in the vocabulary, or longer
    /// than 100 characters, is one `[UNK]`.
    fn word_pieces(&self, word: &str) -> Vec<u32> {
        if word.chars().count() > self.max_chars_per_word {
            return vec![self.unk];
        }
        let mut pieces = Vec::new();
        let mut candidate = String::with_capacity(word.len() + 2);
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                candidate.clear();
                if start > 0 {
                    candidate.push_str("##");
                }
                candidate.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(candidate.as_str()) {
                    found = Some(id);
                    break;
                }
                end -= word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => pieces.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        pieces
    }
}

/// `BertPreTokenizer`: split on whitespace (dropped) and around each punctuation character
/// (kept as a word of its own).
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace)
        .flat_map(split_punctuation)
        .filter(|w| !w.is_empty())
}

fn split_punctuation(word: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in word.char_indices() {
        if is_punctuation(c) {
            parts.push(&word[start..i]);
            parts.push(&word[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&word[start..]);
    parts
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let vocab =
            "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n,\nworld\n!\nun\n##aff\n##able\ncafe\n北\n京\n";
        WordPiece::from_vocab(vocab, true).unwrap()
    }

    #[test]
    fn splits_punctuation_and_word_pieces() {
        let t = tiny();
        assert_eq!(t.encode("Hello, World!", 128), vec![2, 4, 5, 6, 7, 3]);
        assert_eq!(t.encode("unaffable", 128), vec![2, 8, 9, 10, 3]);
        // A word with an unknown piece is a single [UNK].
        assert_eq!(t.encode("unaffablex hello", 128), vec![2, 1, 4, 3]);
    }

    #[test]
    fn strips_accents_spaces_cjk_and_drops_controls() {
        let t = tiny();
        assert_eq!(t.encode("CAFÉ\u{0}\u{7}", 128), vec![2, 11, 3]);
        assert_eq!(t.encode("北京", 128), vec![2, 12, 13, 3]);
        assert_eq!(t.encode("", 128), vec![2, 3]);
    }

    #[test]
    fn truncates_to_max_len_including_specials() {
        let t = tiny();
        let ids = t.encode("hello hello hello hello hello", 4);
        assert_eq!(ids, vec![2, 4, 4, 3]);
    }

    #[test]
    fn long_words_are_unknown() {
        let t = tiny();
        assert_eq!(t.encode(&"a".repeat(101), 128), vec![2, 1, 3]);
    }
}
