//! A BERT encoder's forward pass (inference only) on `ndarray`, with the weights of a
//! `model.safetensors` in the layout of Hugging Face's `BertModel` (with or without the `bert.`
//! prefix). Post-layer-norm, absolute positions, exact (erf) GELU, as in all-MiniLM-L6-v2.
//!
//! A batch is one matrix of `batch × len` rows: the dense layers are single matrix products over
//! all tokens, attention is computed per sequence and head, and padded keys are masked out, so a
//! sequence's output does not depend on how much padding its batch has.

use ndarray::linalg::general_mat_mul;
use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Slice};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::EmbedError;

/// The fields of `config.json` the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

struct Linear {
    /// `[out, in]`, as stored by PyTorch; used transposed.
    weight: Array2<f32>,
    bias: Array1<f32>,
}

impl Linear {
    /// `x · Wᵀ + b`.
    fn forward(&self, x: &ArrayView2<f32>) -> Array2<f32> {
        let mut y = Array2::from_shape_fn((x.nrows(), self.bias.len()), |(_, j)| self.bias[j]);
        general_mat_mul(1.0, x, &self.weight.t(), 1.0, &mut y);
        y
    }
}

struct LayerNorm {
    weight: Array1<f32>,
    bias: Array1<f32>,
    eps: f32,
}

impl LayerNorm {
    fn forward_inplace(&self, x: &mut Array2<f32>) {
        let n = x.ncols() as f32;
        for mut row in x.rows_mut() {
            let mean = row.sum() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

struct Layer {
    /// Query, key and value projections stacked: `[3·hidden, hidden]`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// BERT's encoder: embeddings and the transformer layers (no pooler).
pub struct Bert {
    config: BertConfig,
    word: Array2<f32>,
    position: Array2<f32>,
    token_type: Array2<f32>,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Reads tensors by name, accepting the `bert.` prefix, checking dtype and shape.
struct Tensors<'a> {
    st: SafeTensors<'a>,
    prefix: &'static str,
}

impl Tensors<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .st
            .tensor(&full)
            .map_err(|_| EmbedError::MissingTensor(full.clone()))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape {
            return Err(EmbedError::BadTensor {
                name: full,
                expected: format!("F32 {shape:?}"),
                found: format!("{:?} {:?}", view.dtype(), view.shape()),
            });
        }
        Ok(view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>, EmbedError> {
        let data = self.get(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), data)
            .map_err(|e| EmbedError::Model(format!("{name}: {e}")))
    }

    fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>, EmbedError> {
        Ok(Array1::from(self.get(name, &[len])?))
    }

    fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear, EmbedError> {
        Ok(Linear {
            weight: self.matrix(&format!("{name}.weight"), out, inp)?,
            bias: self.vector(&format!("{name}.bias"), out)?,
        })
    }

    fn norm(&self, name: &str, len: usize, eps: f32) -> Result<LayerNorm, EmbedError> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{name}.weight"), len)?,
            bias: self.vector(&format!("{name}.bias"), len)?,
            eps,
        })
    }
}

impl Bert {
    /// Loads the weights from the bytes of a safetensors file.
    pub fn from_safetensors(config: BertConfig, bytes: &[u8]) -> Result<Bert, EmbedError> {
        if config.hidden_act != "gelu" {
            return Err(EmbedError::Model(format!(
                "unsupported hidden_act {:?} (only \"gelu\")",
                config.hidden_act
            )));
        }
        if config.position_embedding_type != "absolute" {
            return Err(EmbedError::Model(format!(
                "unsupported position_embedding_type {:?}",
                config.position_embedding_type
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(EmbedError::Model(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| EmbedError::Model(e.to_string()))?;
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.")) {
            "bert."
        } else {
            ""
        };
        let t = Tensors { st, prefix };
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps as f32;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let q = t.linear(&format!("{p}attention.self.query"), h, h)?;
            let k = t.linear(&format!("{p}attention.self.key"), h, h)?;
            let v = t.linear(&format!("{p}attention.self.value"), h, h)?;
            let qkv = Linear {
                weight: ndarray::concatenate(
                    Axis(0),
                    &[q.weight.view(), k.weight.view(), v.weight.view()],
                )
                .map_err(|e| EmbedError::Model(e.to_string()))?,
                bias: ndarray::concatenate(Axis(0), &[q.bias.view(), k.bias.view(), v.bias.view()])
                    .map_err(|e| EmbedError::Model(e.to_string()))?,
            };
            layers.push(Layer {
                qkv,
                attn_out: t.linear(&format!("{p}attention.output.dense"), h, h)?,
                attn_norm: t.norm(&format!("{p}attention.output.LayerNorm"), h, eps)?,
                intermediate: t.linear(&format!("{p}intermediate.dense"), i, h)?,
                output: t.linear(&format!("{p}output.dense"), h, i)?,
                out_norm: t.norm(&format!("{p}output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert {
            word: t.matrix("embeddings.word_embeddings.weight", config.vocab_size, h)?,
            position: t.matrix(
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
                h,
            )?,
            token_type: t.matrix(
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
                h,
            )?,
            emb_norm: t.norm("embeddings.LayerNorm", h, eps)?,
            layers,
            config,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Mean-pooled (over real tokens), L2-normalized sentence embeddings of a batch of token id
    /// sequences (each non-empty, at most `max_position_embeddings` long, ids within the
    /// vocabulary: the caller's tokenizer guarantees all three).
    pub fn embed_mean_normalized(&self, batch: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let h = self.config.hidden_size;
        let len = batch.iter().map(Vec::len).max().unwrap_or(0);
        if len == 0 {
            return batch.iter().map(|_| vec![0.0; h]).collect();
        }
        let hidden = self.encode(batch, len);
        batch
            .iter()
            .enumerate()
            .map(|(b, ids)| {
                let rows = hidden.slice_axis(Axis(0), Slice::from(b * len..b * len + ids.len()));
                let mut mean = rows.sum_axis(Axis(0));
                mean /= ids.len().max(1) as f32;
                let norm = mean.dot(&mean).sqrt().max(1e-12);
                mean.iter().map(|v| v / norm).collect()
            })
            .collect()
    }

    /// The last hidden state, `[batch·len, hidden]`, sequence `b` in rows `b·len ..`; rows past a
    /// sequence's own length are padding (computed, never attended to).
    fn encode(&self, batch: &[Vec<u32>], len: usize) -> Array2<f32> {
        let cfg = &self.config;
        let h = cfg.hidden_size;
        let mut x = Array2::<f32>::zeros((batch.len() * len, h));
        for (b, ids) in batch.iter().enumerate() {
            for (p, &id) in ids.iter().enumerate() {
                let mut row = x.row_mut(b * len + p);
                row += &self.word.row(id as usize);
                row += &self.position.row(p);
                row += &self.token_type.row(0);
            }
        }
        self.emb_norm.forward_inplace(&mut x);

        let heads = cfg.num_attention_heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = Array2::<f32>::zeros((len, len));
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x.view());
            let mut ctx = Array2::<f32>::zeros((batch.len() * len, h));
            for (b, ids) in batch.iter().enumerate() {
                let rows = b * len..(b + 1) * len;
                let real = ids.len();
                for head in 0..heads {
                    let c = head * hd;
                    let q = block(&qkv, rows.clone(), c..c + hd);
                    let k = block(&qkv, rows.clone(), h + c..h + c + hd);
                    let v = block(&qkv, rows.clone(), 2 * h + c..2 * h + c + hd);
                    general_mat_mul(scale, &q, &k.t(), 0.0, &mut scores);
                    for mut row in scores.rows_mut() {
                        softmax_masked(row.as_slice_mut().unwrap_or(&mut []), real);
                    }
                    let mut out = block_mut(&mut ctx, rows.clone(), c..c + hd);
                    general_mat_mul(1.0, &scores, &v, 0.0, &mut out);
                }
            }
            let mut attn = layer.attn_out.forward(&ctx.view());
            attn += &x;
            layer.attn_norm.forward_inplace(&mut attn);
            x = attn;

            let mut inter = layer.intermediate.forward(&x.view());
            inter.mapv_inplace(gelu);
            let mut out = layer.output.forward(&inter.view());
            out += &x;
            layer.out_norm.forward_inplace(&mut out);
            x = out;
        }
        x
    }
}

/// `a[rows, cols]` (without `ndarray::s!`, whose expansion the workspace's `forbid(unsafe_code)`
/// rejects).
fn block(a: &Array2<f32>, rows: Range<usize>, cols: Range<usize>) -> ArrayView2<'_, f32> {
    a.slice_axis(Axis(0), Slice::from(rows))
        .slice_axis_move(Axis(1), Slice::from(cols))
}

fn block_mut(
    a: &mut Array2<f32>,
    rows: Range<usize>,
    cols: Range<usize>,
) -> ArrayViewMut2<'_, f32> {
    a.slice_axis_mut(Axis(0), Slice::from(rows))
        .slice_axis_move(Axis(1), Slice::from(cols))
}

/// Softmax over the first `real` entries; the rest (padding keys) get weight zero.
fn softmax_masked(row: &mut [f32], real: usize) {
    let (keep, pad) = row.split_at_mut(real.min(row.len()));
    pad.fill(0.0);
    let max = keep.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in keep.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 {
        for v in keep.iter_mut() {
            *v /= sum;
        }
    }
}

/// Exact GELU, `x·Φ(x)`, as BERT's `"gelu"`.
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_softmax_ignores_padding() {
        let mut row = [1.0, 2.0, 3.0, 100.0, -5.0];
        softmax_masked(&mut row, 3);
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert_eq!(&row[3..], &[0.0, 0.0]);
        assert!(row[2] > row[1] && row[1] > row[0]);
    }

    #[test]
    fn gelu_matches_known_values() {
        assert!((gelu(0.0)).abs() < 1e-7);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-6);
    }
}
