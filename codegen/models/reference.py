"""The encoder in float64 numpy, every intermediate tensor named: calibration reads these.

Mirrors openai-whisper's AudioEncoder (conv1 -> GELU -> conv2 (stride 2) -> GELU -> + positional
embedding -> blocks -> ln_post); the tests check it against whisper's own module.
"""

from __future__ import annotations

import math

import numpy as np

from codegen.models.checkpoint import Checkpoint

LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which whisper's LayerNorm keeps


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact erf GELU (torch's default), vectorised through math.erf."""
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))


def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * gamma + beta


def conv_windows(x: np.ndarray, stride: int) -> np.ndarray:
    """im2col of a kernel-3, padding-1 conv over frames: row t = x[s·t-1], x[s·t], x[s·t+1]."""
    frames, width = x.shape
    padded = np.zeros((frames + 2, width), dtype=x.dtype)
    padded[1:-1] = x
    out = frames // stride
    starts = np.arange(out) * stride
    return np.concatenate([padded[starts + k] for k in range(3)], axis=1)


def conv_matrix(weight: np.ndarray) -> np.ndarray:
    """A conv1d weight [out, in, 3] as the B matrix [3·in, out] of `conv_windows` rows."""
    return np.ascontiguousarray(weight.transpose(2, 1, 0).reshape(-1, weight.shape[0]))


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, heads: int) -> np.ndarray:
    t, n = q.shape
    d = n // heads
    qh, kh, vh = (a.reshape(t, heads, d).transpose(1, 0, 2) for a in (q, k, v))
    logits = qh @ kh.transpose(0, 2, 1) / math.sqrt(d)
    w = np.exp(logits - logits.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return (w @ vh).transpose(1, 0, 2).reshape(t, n)


def forward(ckpt: Checkpoint, mel: np.ndarray) -> dict[str, np.ndarray]:
    """Every named tensor of the encoder on `mel` [n_mels, 2·n_audio_ctx] (float)."""
    w = {k: v.astype(np.float64) for k, v in ckpt.weights.items()}
    dims = ckpt.dims
    t: dict[str, np.ndarray] = {"mel": np.asarray(mel, dtype=np.float64).T}
    t["conv1"] = conv_windows(t["mel"], 1) @ conv_matrix(w["conv1.weight"]) + w["conv1.bias"]
    t["gelu1"] = gelu(t["conv1"])
    t["conv2"] = conv_windows(t["gelu1"], 2) @ conv_matrix(w["conv2.weight"]) + w["conv2.bias"]
    t["gelu2"] = gelu(t["conv2"])
    x = t["x0"] = t["gelu2"] + w["positional_embedding"]
    for i in range(dims.n_audio_layer):
        b, p = f"blocks.{i}.", f"b{i}."
        h = t[p + "ln1"] = layernorm(x, w[b + "attn_ln.weight"], w[b + "attn_ln.bias"])
        q = t[p + "q"] = h @ w[b + "attn.query.weight"].T + w[b + "attn.query.bias"]
        k = t[p + "k"] = h @ w[b + "attn.key.weight"].T
        v = t[p + "v"] = h @ w[b + "attn.value.weight"].T + w[b + "attn.value.bias"]
        a = t[p + "attn"] = attention(q, k, v, dims.n_audio_head)
        o = t[p + "out"] = a @ w[b + "attn.out.weight"].T + w[b + "attn.out.bias"]
        x = t[p + "x1"] = x + o
        h = t[p + "ln2"] = layernorm(x, w[b + "mlp_ln.weight"], w[b + "mlp_ln.bias"])
        f = t[p + "fc1"] = h @ w[b + "mlp.0.weight"].T + w[b + "mlp.0.bias"]
        g = t[p + "gelu"] = gelu(f)
        m = t[p + "fc2"] = g @ w[b + "mlp.2.weight"].T + w[b + "mlp.2.bias"]
        x = t[p + "x2"] = x + m
    t["ln_post"] = layernorm(x, w["ln_post.weight"], w["ln_post.bias"])
    return t
