"""Small openai-whisper checkpoints with seeded random weights, in whisper's exact `.pt` format.

Written as `whisper.load_model` reads them: `{"dims": asdict(ModelDimensions), "model_state_dict":
Whisper(dims).state_dict()}`, so the loader under test is the one a real checkpoint meets.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

TINY = {"n_mels": 80, "n_audio_ctx": 64, "n_audio_state": 128, "n_audio_head": 2,
        "n_audio_layer": 2}
BASE = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 512, "n_audio_head": 8,
        "n_audio_layer": 6}
# openai-whisper's own audio dims of its tiny and small models (BASE is base's), for the benches
WHISPER_DIMS = {
    "tiny": {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
             "n_audio_layer": 4},
    "base": BASE,
    "small": {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 768, "n_audio_head": 12,
              "n_audio_layer": 12},
}
TEXT = {"n_vocab": 64, "n_text_ctx": 8, "n_text_state": 64, "n_text_head": 1,
        "n_text_layer": 1}


def write_checkpoint(path: Path, seed: int, **audio: int) -> Path:
    """A checkpoint with `audio` dims (TINY by default) and seeded weights; returns `path`."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(**(TINY | audio), **TEXT)
    torch.manual_seed(seed)
    model = Whisper(dims)
    with torch.no_grad():
        # torch's default init leaves layernorms at gamma 1, beta 0 and biases tiny; spread them
        # as a trained model's are, so the loader's mapping of every tensor is exercised.
        for name, p in model.encoder.named_parameters():
            if name.endswith("ln.weight") or name == "ln_post.weight":
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    torch.save({"dims": asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path
