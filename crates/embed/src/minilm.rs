//! [`MiniLm`]: all-MiniLM-L6-v2 (or another mean-pooled BERT sentence-transformers model) loaded
//! from a local directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use crate::bert::{Bert, BertConfig};
use crate::tokenizer::WordPiece;
use crate::{EmbedError, Embedder};

/// Sentences per forward pass, as sentence-transformers' default `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// A sentence-transformers BERT model with mean pooling and L2 normalization, run in process on
/// the CPU. Thread-safe: `embed` borrows it immutably, so one instance (behind an `Arc`) serves
/// every caller.
#[derive(Debug)]
pub struct MiniLm {
    name: String,
    bert: Bert,
    tokenizer: WordPiece,
    max_seq_length: usize,
    batch_size: usize,
    threads: usize,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    do_lower_case: Option<bool>,
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|source| EmbedError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EmbedError> {
    serde_json::from_slice(&read(path)?).map_err(|source| EmbedError::Json {
        path: path.to_owned(),
        source,
    })
}

fn read_json_opt<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, EmbedError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

impl MiniLm {
    /// Loads the model from a sentence-transformers directory: `config.json`,
    /// `model.safetensors`, `vocab.txt`, and, when present, `sentence_bert_config.json`
    /// (`max_seq_length`, else 128), `tokenizer_config.json` (`do_lower_case`, else true) and
    /// `1_Pooling/config.json` (which must ask for mean pooling). Reads files only.
    pub fn load(dir: &Path) -> Result<MiniLm, EmbedError> {
        if !dir.is_dir() {
            return Err(EmbedError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        let max_seq_length =
            read_json_opt::<SentenceBertConfig>(&dir.join("sentence_bert_config.json"))?
                .and_then(|c| c.max_seq_length)
                .unwrap_or(128)
                .min(config.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(EmbedError::Model(format!(
                "max_seq_length {max_seq_length} is below 2"
            )));
        }
        if let Some(p) = read_json_opt::<PoolingConfig>(&dir.join("1_Pooling").join("config.json"))?
        {
            if !p.pooling_mode_mean_tokens
                || p.pooling_mode_cls_token
                || p.pooling_mode_max_tokens
                || p.pooling_mode_mean_sqrt_len_tokens
            {
                return Err(EmbedError::Model(
                    "1_Pooling/config.json: only mean pooling is supported".into(),
                ));
            }
        }
        let lowercase = read_json_opt::<TokenizerConfig>(&dir.join("tokenizer_config.json"))?
            .and_then(|c| c.do_lower_case)
            .unwrap_or(true);
        let vocab_path = dir.join("vocab.txt");
        let vocab = String::from_utf8(read(&vocab_path)?)
            .map_err(|e| EmbedError::Model(format!("{}: {e}", vocab_path.display())))?;
        let tokenizer = WordPiece::from_vocab(&vocab, lowercase).ok_or_else(|| {
            EmbedError::Model(format!(
                "{}: [CLS], [SEP] or [UNK] missing",
                vocab_path.display()
            ))
        })?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(EmbedError::Model(format!(
                "vocab.txt has {} tokens, the model {}",
                tokenizer.vocab_size(),
                config.vocab_size
            )));
        }
        let bert = Bert::from_safetensors(config, &read(&dir.join("model.safetensors"))?)?;
        let name = dir
            .file_name()
            .filter(|n| *n != "model")
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "all-MiniLM-L6-v2".to_owned());
        Ok(MiniLm {
            name,
            bert,
            tokenizer,
            max_seq_length,
            batch_size: DEFAULT_BATCH_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }

    /// Sentences per forward pass (default 32). Batches are padded to their longest sentence.
    pub fn with_batch_size(mut self, batch_size: usize) -> MiniLm {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Threads one `embed` call may use (default: the available parallelism). Batches are
    /// spread over them; a call with a single batch runs on the caller's thread.
    pub fn with_threads(mut self, threads: usize) -> MiniLm {
        self.threads = threads.max(1);
        self
    }

    /// Longest input in tokens, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The token ids the model sees for `text`.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.max_seq_length)
    }
}

impl Embedder for MiniLm {
    fn dim(&self) -> usize {
        self.bert.config().hidden_size
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.tokenize(t)).collect();
        // Sorted by length, so that a batch's sentences need little padding.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        // Enough batches to keep every thread busy.
        let n = texts.len();
        let batches = n.div_ceil(self.batch_size).max(self.threads.min(n));
        let per_batch = n.div_ceil(batches);
        let chunks: Vec<&[usize]> = order.chunks(per_batch).collect();
        let run = |chunk: &[usize]| {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
            self.bert.embed_mean_normalized(&batch)
        };

        let mut out: Vec<Vec<f32>> = vec![Vec::new(); n];
        let workers = self.threads.min(chunks.len());
        if workers <= 1 {
            for chunk in &chunks {
                for (&i, e) in chunk.iter().zip(run(chunk)) {
                    out[i] = e;
                }
            }
            return Ok(out);
        }
        let next = AtomicUsize::new(0);
        let done: Mutex<Vec<(usize, Vec<Vec<f32>>)>> = Mutex::new(Vec::with_capacity(chunks.len()));
        let panicked = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(c) else { break };
                        let embedded = run(chunk);
                        if let Ok(mut d) = done.lock() {
                            d.push((c, embedded));
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join()).any(|r| r.is_err())
        });
        if panicked {
            return Err(EmbedError::Worker);
        }
        let done = done.into_inner().map_err(|_| EmbedError::Worker)?;
        if done.len() != chunks.len() {
            return Err(EmbedError::Worker);
        }
        for (c, embedded) in done {
            for (&i, e) in chunks[c].iter().zip(embedded) {
                out[i] = e;
            }
        }
        Ok(out)
    }
}

/// The model directory named by `PLEXUS_MINILM_DIR`, if set.
pub fn dir_from_env() -> Option<PathBuf> {
    std::env::var_os("PLEXUS_MINILM_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
