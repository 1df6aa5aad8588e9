"""Host core vs golden at parameter extremes the specs accept: scales, shapes, eps, gamma, beta.

The realistic variants elsewhere exercise typical values; here hypothesis draws accepted
parameter sets from the corners, where int32/int64 intermediates and shifts are at their limits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from codegen.kernels import spec_from_params
from codegen.pipeline import build
from codegen.spec import KernelSpec, SpecError
from codegen.stream import StreamSpec
from tests.test_kernels import run_stream_core
from tests.test_matmul import run_tiled_host_core

SCALES = st.floats(1e-4, 2.0).map(lambda x: f"{x:.6g}")


def host_outputs(spec: KernelSpec, lib: Path, inputs: list[np.ndarray]) -> np.ndarray:
    if isinstance(spec, StreamSpec):
        return run_stream_core(spec, lib, inputs[0])
    return run_tiled_host_core(spec, lib, *inputs).reshape(-1)  # type: ignore[arg-type]


def draw_params(kernel: str, draw: st.DrawFn) -> dict[str, str]:
    if kernel == "attention":
        nk = draw(st.sampled_from([8, 64, 256]))
        return {"n_queries": str(draw(st.sampled_from([8, 32, 64]))), "n_keys": str(nk),
                "head_dim": str(draw(st.sampled_from([8, 64, 128]))),
                "causal": str(draw(st.integers(0, 1))), "fifo_depth": "1",
                "q_scale": draw(SCALES), "k_scale": draw(SCALES), "v_scale": draw(SCALES),
                "o_scale": draw(SCALES)}
    if kernel == "layernorm":
        return {"rows": "2", "tile_rows": "1", "d": str(draw(st.sampled_from([8, 512, 4096]))),
                "fifo_depth": "1", "in_scale": draw(SCALES), "out_scale": draw(SCALES),
                "eps": f"{draw(st.floats(0.0, 1.0)):.6g}",
                "gamma": f"{draw(st.floats(-8.0, 8.0)):.6g}",
                "beta": f"{draw(st.floats(-8.0, 8.0)):.6g}"}
    return {"M": "64", "K": str(draw(st.sampled_from([64, 1024]))), "N": "64", "tm": "32",
            "tk": "64", "tn": "32", "a_scale": draw(SCALES), "b_scale": draw(SCALES),
            "c_scale": draw(SCALES)}


@pytest.mark.parametrize("kernel", ["attention", "layernorm", "matmul"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_core_matches_golden_at_accepted_extremes(kernel: str, data: st.DataObject,
                                                  tmp_path: Path) -> None:
    params = data.draw(st.composite(lambda draw: draw_params(kernel, draw))())
    try:
        spec = spec_from_params(kernel, params)
    except SpecError:
        event("rejected")
        return
    event("accepted")
    result = build(spec, tmp_path, target="emu")  # the static checks must pass here too
    lib = result.artifact_dir / result.manifest.host_libraries[spec.object_name]
    cases = [("seed", spec.random_inputs(1)), *spec.edge_inputs()]
    for name, inputs in cases:
        got = host_outputs(spec, lib, inputs)
        want = spec.golden(inputs)[0].reshape(-1)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{kernel} {params} {name}: {bad.size} differ, first at {bad[0]}"
