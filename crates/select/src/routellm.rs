//! RouteLLM-format training data: a CSV file with a `prompt` column and one correctness column
//! per model (`True`/`False`), optionally a `subject` column; the subject otherwise comes from
//! a file name `mmlu_<subject>.csv`. Also the contaminated-prompts JSONL (prompts to exclude)
//! and the seeded split over unique prompts that the evaluation uses.
//!
//! The CSV reader follows RFC 4180: fields may be quoted, a quoted field may hold commas, line
//! breaks and doubled quotes (`""`), records end in CRLF or LF. A UTF-8 byte-order mark is
//! skipped.

use crate::error::SelectError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{HashMap, HashSet};

/// The name of the prompt column.
pub const PROMPT_COLUMN: &str = "prompt";
/// The name of the optional subject column.
pub const SUBJECT_COLUMN: &str = "subject";

/// One parsed RouteLLM file: its model columns and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Every column other than `prompt` and `subject`, in file order.
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// One prompt and the correctness of each of the table's columns (`None`: empty cell).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub prompt: String,
    pub subject: Option<String>,
    pub values: Vec<Option<bool>>,
}

/// A prompt with the correctness of the models a caller asked for, in the caller's order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPrompt {
    pub prompt: String,
    pub subject: Option<String>,
    pub correct: Vec<Option<bool>>,
}

/// The subject that a file name such as `mmlu_college_physics.csv` gives (`college_physics`).
pub fn subject_from_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let stem = base.strip_suffix(".csv")?;
    let subject = stem.strip_prefix("mmlu_")?;
    (!subject.is_empty()).then(|| subject.to_string())
}

/// Parses RFC 4180 CSV text into records of fields.
pub fn parse_records(text: &str) -> Result<Vec<Vec<String>>, SelectError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    // Whether the current record has any content (so a trailing newline adds no empty record).
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if field.is_empty() => {
                started = true;
                let quote_line = line;
                loop {
                    match chars.next() {
                        Some('"') => {
                            if chars.peek() == Some(&'"') {
                                chars.next();
                                field.push('"');
                            } else {
                                break;
                            }
                        }
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            field.push(ch);
                        }
                        None => {
                            return Err(SelectError::Csv {
                                line: quote_line,
                                message: "unterminated quoted field".into(),
                            })
                        }
                    }
                }
                match chars.peek() {
                    None | Some(',') | Some('\n') | Some('\r') => {}
                    Some(_) => {
                        return Err(SelectError::Csv {
                            line,
                            message: "unexpected character after a closing quote".into(),
                        })
                    }
                }
            }
            ',' => {
                started = true;
                record.push(std::mem::take(&mut field));
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                line += 1;
                if started || !field.is_empty() {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                started = false;
            }
            '"' => {
                return Err(SelectError::Csv {
                    line,
                    message: "a quote inside an unquoted field".into(),
                })
            }
            other => {
                started = true;
                field.push(other);
            }
        }
    }
    if started || !field.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

/// A correctness cell: `True`/`False` (any case), `1`/`0`, `1.0`/`0.0`; empty is `None`.
pub fn parse_bool(cell: &str) -> Result<Option<bool>, String> {
    let t = cell.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.to_ascii_lowercase().as_str() {
        "true" | "1" | "1.0" | "yes" => Ok(Some(true)),
        "false" | "0" | "0.0" | "no" => Ok(Some(false)),
        _ => Err(format!("{t:?} is not a boolean")),
    }
}

/// Parses one RouteLLM CSV file. `file_name` gives the subject when the file has no `subject`
/// column (`mmlu_<subject>.csv`).
pub fn parse_csv(text: &str, file_name: Option<&str>) -> Result<Table, SelectError> {
    let mut records = parse_records(text)?.into_iter();
    let header = records.next().ok_or(SelectError::Csv {
        line: 1,
        message: "empty file (no header)".into(),
    })?;
    let header: Vec<String> = header.into_iter().map(|h| h.trim().to_string()).collect();
    let prompt_at = header
        .iter()
        .position(|h| h == PROMPT_COLUMN)
        .ok_or_else(|| SelectError::MissingColumn {
            column: PROMPT_COLUMN.into(),
            available: header.join(", "),
        })?;
    let subject_at = header.iter().position(|h| h == SUBJECT_COLUMN);
    let file_subject = file_name.and_then(subject_from_file_name);
    let value_at: Vec<usize> = (0..header.len())
        .filter(|&i| i != prompt_at && Some(i) != subject_at && !header[i].is_empty())
        .collect();
    let columns = value_at.iter().map(|&i| header[i].clone()).collect();
    let mut rows = Vec::new();
    for (n, record) in records.enumerate() {
        let record_no = n + 2;
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if record.len() != header.len() {
            return Err(SelectError::Csv {
                line: record_no,
                message: format!(
                    "record {record_no} has {} fields, the header {}",
                    record.len(),
                    header.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(value_at.len());
        for &i in &value_at {
            values.push(parse_bool(&record[i]).map_err(|message| SelectError::Csv {
                line: record_no,
                message: format!("record {record_no}, column {:?}: {message}", header[i]),
            })?);
        }
        let subject = match subject_at {
            Some(i) if !record[i].trim().is_empty() => Some(record[i].trim().to_string()),
            _ => file_subject.clone(),
        };
        rows.push(Row {
            prompt: record[prompt_at].clone(),
            subject,
            values,
        });
    }
    Ok(Table { columns, rows })
}

impl Table {
    /// The rows with the correctness of `columns`, in that order; an error names a missing one.
    pub fn extract(&self, columns: &[String]) -> Result<Vec<LabelledPrompt>, SelectError> {
        let mut at = Vec::with_capacity(columns.len());
        for c in columns {
            at.push(self.columns.iter().position(|x| x == c).ok_or_else(|| {
                SelectError::MissingColumn {
                    column: c.clone(),
                    available: self.columns.join(", "),
                }
            })?);
        }
        Ok(self
            .rows
            .iter()
            .map(|r| LabelledPrompt {
                prompt: r.prompt.clone(),
                subject: r.subject.clone(),
                correct: at.iter().map(|&i| r.values[i]).collect(),
            })
            .collect())
    }
}

/// The prompts of a contaminated-prompts JSONL file (RouteLLM's `contaminated_prompts.jsonl`):
/// each line's `eval_prompt` (the benchmark prompt found in some training set), or `prompt`.
/// Blank lines are skipped.
pub fn parse_contaminated(text: &str) -> Result<HashSet<String>, SelectError> {
    let mut out = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| SelectError::Jsonl {
                line: n + 1,
                message: e.to_string(),
            })?;
        let prompt = value
            .get("eval_prompt")
            .or_else(|| value.get("prompt"))
            .and_then(|p| p.as_str())
            .ok_or_else(|| SelectError::Jsonl {
                line: n + 1,
                message: "no string field `eval_prompt` or `prompt`".into(),
            })?;
        out.insert(prompt.to_string());
    }
    Ok(out)
}

/// The distinct prompts, sorted (so a split does not depend on the order of the files).
fn unique_sorted<'a>(prompts: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut unique: Vec<&str> = prompts.into_iter().collect();
    unique.sort_unstable();
    unique.dedup();
    unique
}

/// The seeded split over unique prompts: for each input prompt, whether it is in the training
/// half. The distinct prompts are sorted, shuffled with `StdRng::seed_from_u64(seed)`, and the
/// first `round(train_share × distinct)` go to training, so duplicates always land on the same
/// side and the split depends only on the set of prompts and the seed.
pub fn split_unique(prompts: &[&str], train_share: f64, seed: u64) -> Vec<bool> {
    let mut unique = unique_sorted(prompts.iter().copied());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    unique.shuffle(&mut rng);
    let share = train_share.clamp(0.0, 1.0);
    let n_train = (share * unique.len() as f64).round() as usize;
    let train: HashSet<&str> = unique[..n_train].iter().copied().collect();
    prompts.iter().map(|p| train.contains(p)).collect()
}

/// A seeded subsample of `n` distinct prompts: for each input prompt, whether it is kept
/// (every copy of a kept prompt is kept). Keeps everything when there are at most `n`.
pub fn sample_unique(prompts: &[&str], n: usize, seed: u64) -> Vec<bool> {
    let mut unique = unique_sorted(prompts.iter().copied());
    if unique.len() <= n {
        return vec![true; prompts.len()];
    }
    // A different stream from split_unique's for the same seed.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5a4d_504c_4553_4545);
    unique.shuffle(&mut rng);
    let kept: HashSet<&str> = unique[..n].iter().copied().collect();
    prompts.iter().map(|p| kept.contains(p)).collect()
}

/// Counts of each distinct prompt (used by tests and reports).
pub fn duplicate_counts<'a>(prompts: &[&'a str]) -> HashMap<&'a str, usize> {
    let mut counts = HashMap::new();
    for p in prompts {
        *counts.entry(*p).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "prompt,weak,strong\r\n\
\"What is 2+2?\nA. 3\nB. 4\",True,True\r\n\
\"He said \"\"hi\"\", then, left\",False,True\r\n\
plain prompt,False,\r\n";

    #[test]
    fn parses_quoted_multiline_prompts_and_escaped_quotes() {
        let t = parse_csv(FIXTURE, Some("data/mmlu_college_physics.csv")).unwrap();
        assert_eq!(t.columns, vec!["weak", "strong"]);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].prompt, "What is 2+2?\nA. 3\nB. 4");
        assert_eq!(t.rows[0].values, vec![Some(true), Some(true)]);
        assert_eq!(t.rows[1].prompt, "He said \"hi\", then, left");
        assert_eq!(t.rows[1].values, vec![Some(false), Some(true)]);
        assert_eq!(t.rows[2].values, vec![Some(false), None]);
        assert_eq!(t.rows[0].subject.as_deref(), Some("college_physics"));
    }

    #[test]
    fn subject_column_wins_over_the_file_name() {
        let text = "subject,prompt,m\nalgebra,\"x\ny\",1\n,z,0\n";
        let t = parse_csv(text, Some("mmlu_history.csv")).unwrap();
        assert_eq!(t.columns, vec!["m"]);
        assert_eq!(t.rows[0].subject.as_deref(), Some("algebra"));
        assert_eq!(t.rows[0].prompt, "x\ny");
        assert_eq!(t.rows[1].subject.as_deref(), Some("history"));
        let none = parse_csv("prompt,m\na,1\n", Some("other.csv")).unwrap();
        assert_eq!(none.rows[0].subject, None);
    }

    #[test]
    fn extract_orders_columns_and_names_missing_ones() {
        let t = parse_csv(FIXTURE, None).unwrap();
        let ex = t
            .extract(&["strong".to_string(), "weak".to_string()])
            .unwrap();
        assert_eq!(ex[1].correct, vec![Some(true), Some(false)]);
        let err = t.extract(&["gpt".to_string()]).unwrap_err();
        assert!(err.to_string().contains("gpt"), "{err}");
    }

    #[test]
    fn malformed_csv_is_an_error() {
        assert!(parse_csv("prompt,m\n\"open,1\n", None).is_err());
        assert!(parse_csv("prompt,m\na,maybe\n", None).is_err());
        assert!(parse_csv("prompt,m\na,1,2\n", None).is_err());
        assert!(parse_csv("m\n1\n", None).is_err());
        assert!(parse_csv("", None).is_err());
    }

    #[test]
    fn contaminated_prompts_come_from_eval_prompt() {
        let text = concat!(
            r#"{"train_prompt":"t","eval_prompt":"e1","train_idx":1,"eval_idx":2}"#,
            "\n\n",
            r#"{"prompt":"e2"}"#,
            "\n"
        );
        let set = parse_contaminated(text).unwrap();
        assert!(set.contains("e1") && set.contains("e2") && !set.contains("t"));
        assert!(parse_contaminated("{\"x\":1}\n").is_err());
    }

    #[test]
    fn split_is_deterministic_by_seed_and_keeps_duplicates_together() {
        let owned: Vec<String> = (0..200).map(|i| format!("p{}", i % 150)).collect();
        let prompts: Vec<&str> = owned.iter().map(String::as_str).collect();
        let a = split_unique(&prompts, 0.5, 7);
        let b = split_unique(&prompts, 0.5, 7);
        let c = split_unique(&prompts, 0.5, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Duplicates (p0..p49 appear twice) are on one side.
        for i in 0..50 {
            assert_eq!(a[i], a[i + 150], "p{i}");
        }
        // Half of the 150 distinct prompts train.
        let mut train = HashSet::new();
        for (p, t) in prompts.iter().zip(&a) {
            if *t {
                train.insert(*p);
            }
        }
        assert_eq!(train.len(), 75);
        // The split does not depend on the order of the input.
        let mut reversed = prompts.clone();
        reversed.reverse();
        let r = split_unique(&reversed, 0.5, 7);
        for (i, p) in reversed.iter().enumerate() {
            let j = prompts.iter().position(|q| q == p).unwrap();
            assert_eq!(r[i], a[j]);
        }
    }

    #[test]
    fn sample_keeps_n_distinct_prompts() {
        let owned: Vec<String> = (0..100).map(|i| format!("p{}", i % 80)).collect();
        let prompts: Vec<&str> = owned.iter().map(String::as_str).collect();
        let kept = sample_unique(&prompts, 30, 1);
        let distinct: HashSet<&str> = prompts
            .iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(distinct.len(), 30);
        assert_eq!(kept, sample_unique(&prompts, 30, 1));
        assert!(sample_unique(&prompts, 500, 1).iter().all(|k| *k));
        assert_eq!(duplicate_counts(&prompts)["p0"], 2);
    }
}
