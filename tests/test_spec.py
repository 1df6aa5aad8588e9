"""KernelSpec parameters: parsing, limits and combination checks, each with a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from codegen.kernels import get_kernel, spec_from_params
from codegen.spec import SpecError, quantize_multiplier


@pytest.mark.parametrize(("params", "message"), [
    ({"head_dim": "70"}, "head_dim 70 is not a multiple of 8"),
    ({"tiles": "0"}, "tiles 0 is below the minimum 1"),
    ({"n_queries": "abc"}, "n_queries='abc' is not a valid int"),
    ({"causal": "maybe"}, "causal='maybe' is not a valid bool"),
    ({"q_scale": "nan"}, "q_scale='nan' is not a valid float"),
    ({"device": "npu1_4col"}, "device npu1_4col is not one of"),
    ({"colour": "red"}, "unknown parameter 'colour' for kernel attention"),
    ({"n_queries": "128", "n_keys": "128", "head_dim": "128"},
     "tile buffers need 135,168 bytes, a core has 65,536"),
    ({"v_scale": "1", "o_scale": "0.001"}, "the output multiplier"),
    ({"q_scale": "1e6", "k_scale": "1e6"}, "logit shift"),
    ({"n_queries": "64", "n_keys": "8", "causal": "1"}, "causal needs n_queries <= n_keys"),
])
def test_bad_parameters_are_named(params: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_from_params("attention", params)


@pytest.mark.parametrize(("params", "message"), [
    ({"beta": "1e12"}, "|beta|/out_scale reaches"),
    ({"gamma": "1e20"}, "|gamma|/out_scale reaches"),
    ({"d": "4096", "rows": "4", "tile_rows": "1", "fifo_depth": "1", "eps": "1.0",
      "in_scale": "0.002"}, "the variance term overflows 64 bits"),
    ({"rows": "10", "tile_rows": "4"}, "tile_rows 4 does not divide rows 10"),
])
def test_layernorm_ranges_that_would_overflow_the_core(params: dict[str, str],
                                                       message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        spec_from_params("layernorm", params)


def test_bad_npy_files_get_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "text.npy", np.array(["a"] * 512))
    np.savez(tmp_path / "z.npz", a=np.ones(512))
    np.save(tmp_path / "complex.npy", np.ones(512, dtype=complex))
    np.save(tmp_path / "short.npy", np.ones(3))
    for name, message in (("text.npy", "real numbers"),
                          ("z.npz", "neither a number nor a .npy file"),
                          ("complex.npy", "real numbers"), ("short.npy", "expected 512 values"),
                          ("none.npy", "neither a number nor a .npy file")):
        with pytest.raises(SpecError, match=re.escape(message)):
            spec_from_params("layernorm", {"gamma": str(tmp_path / name)})


def test_python_floats_must_be_finite() -> None:
    with pytest.raises(SpecError, match="eps=nan is not a finite float"):
        spec_from_params("layernorm", {"eps": float("nan")})


def test_unknown_kernel_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="unknown kernel 'softmax'; known kernels: attention"):
        get_kernel("softmax")


def test_variant_names_the_changed_parameters() -> None:
    assert spec_from_params("attention").variant == "default"
    spec = spec_from_params("attention", {"tiles": "4", "causal": "true", "n_keys": "64"})
    assert spec.variant == "tiles4_causal1"
    assert spec.params["causal"] is True and spec.params["tiles"] == 4


def test_quantize_multiplier_represents_the_real_value() -> None:
    for real in (1e-6, 0.0123, 0.5, 1.0, 3.7, 1234.5):
        m, shift = quantize_multiplier(real, 15, "x")
        assert 1 << 14 <= m < 1 << 15
        assert abs(m * 2.0 ** -shift - real) / real < 2.0 ** -14


def test_stack_grows_with_the_frame() -> None:
    small = spec_from_params("attention")
    big = spec_from_params("attention", {"n_queries": "32", "n_keys": "256", "head_dim": "32"})
    assert big.stack_size > small.stack_size >= small.scratch_bytes + 1024
