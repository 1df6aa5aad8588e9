"""openai-whisper checkpoints: the `.pt` dict with `dims` and `model_state_dict`, read locally.

`whisper.load_model` reads exactly this format (`torch.load(..., weights_only=True)`, then
`ModelDimensions(**ckpt["dims"])` and `load_state_dict(ckpt["model_state_dict"])`); only the
audio encoder's tensors are kept, as float32 numpy arrays. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import NpukitError

DIM_NAMES = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")
TEXT_DIM_NAMES = ("n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")
HEAD_DIM = 64  # the mha kernel's head dimension (shared contract 3); every Whisper size has 64
MELS = (80, 128)  # what the mel kernel computes
MAX_CTX = 1500  # a 30 s window: 3000 mel frames, the mel kernel's and whisper's maximum
PREFIX = "encoder."


class CheckpointError(NpukitError):
    """A checkpoint that is missing, malformed, or has dims the kernels do not accept."""


@dataclass(frozen=True)
class EncoderDims:
    """The audio encoder's dimensions, as openai-whisper's ModelDimensions names them."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int

    @property
    def head_dim(self) -> int:
        return self.n_audio_state // self.n_audio_head

    @property
    def n_frames(self) -> int:
        """Mel frames the encoder takes (conv2 halves them)."""
        return 2 * self.n_audio_ctx

    @property
    def n_samples(self) -> int:
        """16 kHz samples in one window."""
        return self.n_frames * 160


@dataclass(frozen=True)
class Checkpoint:
    """The encoder's dims and float32 weights (state-dict names without `encoder.`)."""

    path: Path
    sha256: str
    dims: EncoderDims
    weights: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.weights[name]


def check_dims(dims: EncoderDims) -> None:
    """Refuse dims the kernels cannot run, naming the dimension and what would fit."""
    if dims.n_mels not in MELS:
        raise CheckpointError(f"n_mels {dims.n_mels}: the mel kernel computes 80 or 128 bands")
    if not 1 <= dims.n_audio_ctx <= MAX_CTX or dims.n_audio_ctx % 4:
        raise CheckpointError(f"n_audio_ctx {dims.n_audio_ctx}: expected a multiple of 4 in "
                              f"4..{MAX_CTX} (int8 rows travel in 32-bit DMA words)")
    if dims.n_audio_head < 1 or dims.n_audio_state % dims.n_audio_head:
        raise CheckpointError(f"n_audio_head {dims.n_audio_head} does not divide "
                              f"n_audio_state {dims.n_audio_state}")
    if dims.head_dim != HEAD_DIM:
        raise CheckpointError(f"n_audio_state/n_audio_head = {dims.head_dim}: the mha kernel "
                              f"takes head_dim {HEAD_DIM} (as every openai-whisper size has)")
    if dims.n_audio_layer < 1:
        raise CheckpointError(f"n_audio_layer {dims.n_audio_layer}: need at least one block")


def expected_shapes(dims: EncoderDims) -> dict[str, tuple[int, ...]]:
    """Every encoder tensor of the state dict and its shape."""
    n, m = dims.n_audio_state, dims.n_mels
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (n, m, 3), "conv1.bias": (n,),
        "conv2.weight": (n, n, 3), "conv2.bias": (n,),
        "positional_embedding": (dims.n_audio_ctx, n),
        "ln_post.weight": (n,), "ln_post.bias": (n,),
    }
    for i in range(dims.n_audio_layer):
        b = f"blocks.{i}."
        shapes |= {
            b + "attn.query.weight": (n, n), b + "attn.query.bias": (n,),
            b + "attn.key.weight": (n, n),
            b + "attn.value.weight": (n, n), b + "attn.value.bias": (n,),
            b + "attn.out.weight": (n, n), b + "attn.out.bias": (n,),
            b + "attn_ln.weight": (n,), b + "attn_ln.bias": (n,),
            b + "mlp.0.weight": (4 * n, n), b + "mlp.0.bias": (4 * n,),
            b + "mlp.2.weight": (n, 4 * n), b + "mlp.2.bias": (n,),
            b + "mlp_ln.weight": (n,), b + "mlp_ln.bias": (n,),
        }
    return shapes


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading a .pt checkpoint needs PyTorch: pip install torch "
                              "(or npukit's dev extra, which pulls openai-whisper)") from None
    return torch


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read an openai-whisper checkpoint from `path`; one CheckpointError line for any problem."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file (give the path of a whisper .pt)")
    torch = _torch()
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; all mean "not a checkpoint"
        # torch's first line, to its first sentence end (its advice about weights_only does
        # not apply: a whisper checkpoint loads with weights_only=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". ")[0].rstrip(".")[:160]
        raise CheckpointError(f"checkpoint {p}: not a PyTorch checkpoint ({first}); give the "
                              "path of an openai-whisper .pt") from None
    if not isinstance(raw, dict) or "dims" not in raw or "model_state_dict" not in raw:
        raise CheckpointError(f"checkpoint {p}: expected openai-whisper's dict with 'dims' and "
                              "'model_state_dict'")
    dims = _dims(p, raw["dims"])
    check_dims(dims)
    state = raw["model_state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p}: 'model_state_dict' is not a dict of tensors")
    weights = {}
    for name, shape in expected_shapes(dims).items():
        tensor = state.get(PREFIX + name)
        if tensor is None:
            raise CheckpointError(f"checkpoint {p}: tensor {PREFIX + name} is missing")
        if not hasattr(tensor, "detach"):
            raise CheckpointError(f"checkpoint {p}: {PREFIX + name} is not a tensor")
        array = tensor.detach().to(torch.float32).numpy()
        if array.shape != shape:
            raise CheckpointError(f"checkpoint {p}: {PREFIX + name} has shape "
                                  f"{tuple(array.shape)}, the dims say {shape}")
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"checkpoint {p}: {PREFIX + name} holds NaN or inf")
        weights[name] = np.ascontiguousarray(array)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    return Checkpoint(p.resolve(), digest, dims, weights)


def _dims(p: Path, raw: Any) -> EncoderDims:
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {p}: 'dims' is not a dict")
    missing = [k for k in DIM_NAMES if k not in raw]
    if missing:
        raise CheckpointError(f"checkpoint {p}: dims lack {', '.join(missing)}")
    values = {}
    for k in DIM_NAMES:
        v = raw[k]
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"checkpoint {p}: dims {k}={v!r} is not an integer")
        values[k] = v
    return EncoderDims(**values)
