"""The cost model over a built model artifact: `invoke cost --model`, its totals and refusals.

One tiny-dims encoder (2 blocks of 128, 64 frames), built for the emulator and calibrated on
noise; every projection is a model figure, checked here for its bookkeeping, not its accuracy.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from rich.console import Console

from codegen.cli import model_cost_report
from codegen.cost import DEVICES, PDI_SWITCH
from codegen.kernels import layernorm
from codegen.models.cost import BUILT, ModelCostError, model_cost
from runtime.errors import NpukitError
from tests import encoder_support as es
from tests.test_cli import invoke
from tests.whisper_checkpoints import write_checkpoint

pytest.importorskip("whisper")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from codegen.models.artifact import build_encoder
    from codegen.models.checkpoint import load_checkpoint

    ckpt = write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", seed=21)
    dims = load_checkpoint(ckpt).dims
    root = tmp_path_factory.mktemp("build")
    return build_encoder(ckpt, root, clips=[es.noise(dims, 1)], name="tiny").directory


def test_every_op_is_projected_and_the_window_adds_up(model: Path) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    cost = model_cost(model)
    assert [o.name for o in cost.ops] == [op["name"] for op in manifest["ops"]]
    assert cost.complete and cost.families == ["npu1"]
    kernels = [op for op in manifest["ops"] if op["kind"] == "kernel"]
    assert len(cost.kernel_ops) == len(kernels) and cost.host_ops
    variants = [(op["context"], op["member"]) for op in kernels]
    assert cost.switches == sum(a != b for a, b in itertools.pairwise(variants)) > 0
    assert cost.dispatch_s() == pytest.approx(len(kernels) * DEVICES["npu1"].dispatch_s.value)
    for path in ("vector", "scalar"):
        assert cost.window(path, True) - cost.window(path, False) == pytest.approx(
            cost.switches * PDI_SWITCH.value)
        assert cost.window(path, False) == pytest.approx(
            sum(cost.seconds(path, ops) for ops in cost.groups().values()))
    assert list(cost.groups()) == ["front end", "block 0", "block 1", "final"]
    assert cost.window("vector", False) < cost.window("scalar", False)
    # a layernorm op: each core's rows x (d x per-element ops + per-row ops) at the clock, +
    # dispatch (the rows split evenly over its cores)
    ln = next(o for o in cost.ops if o.name == "b0.ln1")
    op = next(op for op in kernels if op["name"] == "b0.ln1")
    rows, d = op["params"]["rows"] // op["params"].get("cores", 1), op["params"]["d"]
    npu1 = DEVICES["npu1"]
    cycles = rows * (d * (layernorm.STATS_OPS + layernorm.NORM_OPS) + layernorm.ROW_OPS)
    assert ln.seconds("scalar") == pytest.approx(cycles / npu1.clock_hz.value
                                                 + npu1.dispatch_s.value)


def test_as_built_takes_each_op_on_its_own_path(model: Path) -> None:
    """The matmuls and mha are built on the vector path, layernorm and mel have scalar code:
    "as built" sums each op's projection on its own path."""
    cost = model_cost(model)
    built = {o.fn: o.built for o in cost.kernel_ops}
    assert built == {"mel": "scalar", "matmul": "vector", "layernorm": "scalar", "mha": "vector"}
    for o in cost.kernel_ops:
        assert o.seconds(BUILT) == o.projections[o.built].seconds
    assert cost.seconds(BUILT) < cost.seconds("scalar")


def test_cost_model_report_prints_per_op_rows_and_the_window(model: Path, tmp_path: Path
                                                             ) -> None:
    console = Console(record=True, width=240)
    cost = model_cost_report(model, console)
    text = console.export_text()
    for o in cost.ops:
        assert o.name in text
    assert "not a measurement" in text and "whisper-xdna" in text and "xdna-driver" in text
    total = f"{cost.window('vector', False) * 1e3:,.1f} ms without PDI switches"
    assert total in text
    proc = invoke("cost", "--model", str(model), build_dir=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "b1.fc2" in proc.stdout and "window, vector path" in proc.stdout


def test_bench_report_has_every_op_and_the_window(model: Path) -> None:
    from bench.whisper_encoder_cost import host_seconds, report

    cost = model_cost(model)
    host = host_seconds(model)
    assert set(host) == {o.name for o in cost.host_ops} and all(t > 0 for t in host.values())
    text = "\n".join(report("test", cost, host))
    for o in cost.ops:
        if o.group != "block 1":  # both blocks project the same: block 0's rows stand for both
            assert f"| {o.name} |" in text, o.name
    assert "each of the 2 blocks" in text and "**window, with PDI switches**" in text


@pytest.mark.parametrize(("what", "message"), [
    ("missing", "no such directory; give a built model artifact"),
    ("file", "a file, not a model artifact directory"),
    ("empty", "not an npukit model artifact (no manifest.json)"),
    ("kernel", "a kernel artifact (gelu), not a model; for one kernel run `invoke cost --kernel"),
    ("garbled", "not valid JSON"),
])
def test_not_a_model_is_one_line(what: str, message: str, tmp_path: Path) -> None:
    target = tmp_path / "m"
    if what == "file":
        target.write_text("x")
    elif what != "missing":
        target.mkdir()
        if what == "kernel":
            (target / "manifest.json").write_text(json.dumps({"kernel": "gelu"}))
        elif what == "garbled":
            (target / "manifest.json").write_text("{")
    with pytest.raises(NpukitError) as info:
        model_cost(target)
    assert message in str(info.value) and "\n" not in str(info.value)
    if what == "empty":
        assert isinstance(info.value, ModelCostError)
        proc = invoke("cost", "--model", str(target), build_dir=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and message in out and len(out.strip().splitlines()) == 1


def test_an_op_whose_params_make_no_spec_is_one_line(model: Path, tmp_path: Path) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    op = next(op for op in manifest["ops"] if op["name"] == "b0.ln1")
    op["params"]["tile_rows"] = 7  # does not divide the rows
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelCostError, match=r"op b0.ln1: tile_rows 7 does not divide rows 64; "
                                             r"rebuild the model"):
        model_cost(tmp_path)


@pytest.mark.parametrize(("args", "message"), [
    (["cost"], "give one of --kernel K"),
    (["cost", "--kernel", "gelu", "--model", "x"], "give one of --kernel K"),
    (["cost", "--model", "x", "-p", "a=1"], "--param applies to --kernel"),
])
def test_cost_flags_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    proc = invoke(*args, build_dir=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out and message in out
    assert len(out.strip().splitlines()) == 1
