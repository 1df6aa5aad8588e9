"""Context artifacts: several kernel builds linked into one xclbin, run from ONE hw_context.

Built with the fake aiecc and Peano, run on the fake pyxrt (one context, BOs counted) and on
the emulator; every output is compared bit for bit with the kernels' golden models.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.link import MAX_MEMBERS, link_context, lint_context_xclbin
from codegen.pipeline import BuildError, build
from codegen.spec import KernelSpec
from runtime.context import CONTEXT_NAME, NpuContext, read_context
from runtime.errors import ArtifactError, RunError, ToolchainError
from runtime.xclbin import read_xclbin
from tests.conftest import FAKES, use_fake_toolchain
from tests.test_runtime_support import hide_pyxrt

VARIANTS = {
    "gelu": ("gelu", {"length": "256", "max_tile": "64"}),
    "ln": ("layernorm", {"rows": "4", "d": "32", "tile_rows": "2"}),
    "mm": ("matmul", {"M": "16", "K": "16", "N": "16", "tm": "16", "tk": "16", "tn": "16"}),
}


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Path],
                                                                       dict[str, KernelSpec]]]:
    """(context dir, member artifact dirs, spec by member name): three tiny hardware builds
    made with the fake toolchain and linked once."""
    root = tmp_path_factory.mktemp("ctx")
    log = root / "aiecc.log"
    with pytest.MonkeyPatch.context() as mp:
        use_fake_toolchain(mp, log)
        specs = {name: spec_from_params(k, p) for name, (k, p) in VARIANTS.items()}
        arts = [build(s, root / "build", target="hw").artifact_dir for s in specs.values()]
        log.write_text("")
        result = link_context(arts, root / "context", target="hw", names=list(specs))
    assert result.members == tuple(specs) and not result.emulation_only
    yield result.directory, arts, specs


def copy_of(directory: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(directory, tmp_path / directory.name))


def one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_one_context_and_every_member_equals_golden(linked: tuple, fake: ModuleType) -> None:
    directory, _arts, specs = linked
    with NpuContext.load(directory, backend="xrt") as ctx:
        assert ctx.backend_name == "xrt" and ctx.names == list(specs)
        assert fake.live_contexts() == 1  # three kernels, one hardware context
        for name, spec in specs.items():
            for seed in (1, 2):
                inputs = spec.random_inputs(seed)
                outs = ctx.kernel(name)(*inputs)
                gold = spec.golden(inputs)
                assert len(outs) == len(gold)
                for out, g in zip(outs, gold, strict=True):
                    np.testing.assert_array_equal(out, g)
    assert fake.messages == []  # no BO was cloned into another bank
    assert fake.runs_started == 2 * len(specs)


def test_aiecc_ran_once_per_member_chaining_the_xclbin(linked: tuple) -> None:
    directory, _arts, specs = linked
    calls = [json.loads(line)["argv"] for line in
             (directory.parent / "aiecc.log").read_text().splitlines()]
    calls = [c for c in calls if c[1:] != ["--version"]]
    assert len(calls) == len(specs)
    for i, (argv, name) in enumerate(zip(calls, specs, strict=True)):
        chain = [a for a in argv if a.startswith("--xclbin-") and "name=final" not in a]
        assert chain[:3] == [f"--xclbin-kernel-name={name}", f"--xclbin-instance-name={name}_i",
                             f"--xclbin-kernel-id=0x{0x901 + i:x}"]
        assert (len(chain) == 4) == (i > 0)  # every run but the first extends the last xclbin
    info = read_xclbin(directory / "final.xclbin")
    assert info.kernel_names == tuple(specs)
    assert sorted(info.dpu_kernel_ids) == [0x901, 0x902, 0x903]
    data = read_context(directory, verify=True)
    assert [m["kernel_id"] for m in data["members"]] == [0x901, 0x902, 0x903]
    for m in data["members"]:
        assert (directory / m["dir"] / "insts.bin").is_file()  # each keeps its own stream


def test_the_merged_xclbin_lint_names_a_missing_or_extra_kernel(linked: tuple) -> None:
    directory, arts, _specs = linked
    final = directory / "final.xclbin"
    with pytest.raises(ArtifactError, match="expected"):
        lint_context_xclbin(final, [("gelu", 2), ("ln", 2)], "npu1_1col")
    with pytest.raises(ArtifactError, match="'other'"):
        lint_context_xclbin(final, [("gelu", 2), ("ln", 2), ("other", 3)], "npu1_1col")
    with pytest.raises(ArtifactError, match="MLIR_AIE"):  # a single-kernel xclbin is not it
        lint_context_xclbin(arts[0] / "final.xclbin", [("gelu", 2)], "npu1_1col")


def test_bindings_switch_layers_with_no_allocation_after_load(linked: tuple,
                                                              fake: ModuleType) -> None:
    directory, _arts, specs = linked
    spec = specs["mm"]
    layers = [spec.random_inputs(seed) for seed in (3, 4)]  # [A, B] each; B is the "weights"
    assert not np.array_equal(layers[0][1], layers[1][1])
    with NpuContext.load(directory, backend="xrt") as ctx:
        mm = ctx.kernel("mm")
        loaded = fake.bos_allocated()
        bindings = [mm.bind({"B": b}) for _a, b in layers]
        assert fake.bos_allocated() == loaded + 2  # one BO per bound input, once
        bound = fake.bos_allocated()
        rng = np.random.default_rng(9)
        for step in range(6):
            k = step % 2
            a = rng.integers(-128, 128, layers[k][0].shape, dtype=np.int8)
            (out,) = mm(a, binding=bindings[k])
            np.testing.assert_array_equal(out, spec.golden([a, layers[k][1]])[0])
            if step == 3:  # unbound in between: both inputs copied, as a plain call
                (plain,) = mm(a, layers[0][1])
                np.testing.assert_array_equal(plain, spec.golden([a, layers[0][1]])[0])
            (gelu_out,) = ctx.kernel("gelu")(specs["gelu"].random_inputs(step)[0])
        assert fake.bos_allocated() == bound  # 13 calls over 2 members and 2 layers: none
        assert fake.live_contexts() == 1
        with pytest.raises(RunError, match="binding is for mm"):
            ctx.kernel("ln")(layers[0][0], binding=bindings[0])
        with pytest.raises(RunError, match="'Z' is not an input"):
            mm.bind({"Z": layers[0][1]})
    assert fake.messages == [] and gelu_out.dtype == np.int8


def test_emulator_equals_xrt_for_every_member(linked: tuple, fake: ModuleType) -> None:
    directory, _arts, specs = linked
    with NpuContext.load(directory, backend="xrt") as hw, \
            NpuContext.load(directory, backend="emu") as emu:
        assert emu.backend_name == "emu"
        for name, spec in specs.items():
            inputs = spec.random_inputs(7)
            for a, b in zip(hw.kernel(name)(*inputs), emu.kernel(name)(*inputs), strict=True):
                np.testing.assert_array_equal(a, b)
        a, b = specs["mm"].random_inputs(8)
        hb, eb = hw.kernel("mm").bind({"B": b}), emu.kernel("mm").bind({"B": b})
        np.testing.assert_array_equal(hw.kernel("mm")(A=a, binding=hb)[0],
                                      emu.kernel("mm")(a, binding=eb)[0])


def test_tampered_member_file_is_refused_in_one_line(linked: tuple, tmp_path: Path,
                                                     fake: ModuleType) -> None:
    directory = copy_of(linked[0], tmp_path)
    insts = directory / "members" / "ln" / "insts.bin"
    raw = bytearray(insts.read_bytes())
    raw[-1] ^= 1
    insts.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError) as e:
        NpuContext.load(directory, backend="xrt")
    assert "members/ln/insts.bin" in one_line(e) and "does not match" in str(e.value)
    assert fake.live_contexts() == 0

    directory = copy_of(linked[0], tmp_path / "b")
    data = json.loads((directory / CONTEXT_NAME).read_text())
    data["members"][0]["kernel_id"] = 0x905
    (directory / CONTEXT_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as e:
        NpuContext.load(directory, backend="emu")
    assert "edited after linking" in one_line(e)


def test_more_than_16_members_are_refused_in_one_line(linked: tuple, tmp_path: Path) -> None:
    _directory, arts, _specs = linked
    with pytest.raises(BuildError) as e:
        link_context([arts[0]] * (MAX_MEMBERS + 1), tmp_path / "big", target="emu")
    assert "17 kernels" in one_line(e) and "16" in str(e.value)
    assert not (tmp_path / "big").exists()


def test_the_fake_driver_refuses_a_context_over_16_pdis(fake: ModuleType, tmp_path: Path) -> None:
    from tests.fakes.artifacts import make_multi_xclbin

    path = tmp_path / "big.xclbin"
    kernels = [(f"k{i}", f"k{i}_i", 0x901 + i, 2) for i in range(MAX_MEMBERS + 1)]
    path.write_bytes(make_multi_xclbin(kernels, 1, (1, 2, 3, 4)))
    dev = fake.device(0)
    xb = fake.xclbin(str(path))
    dev.register_xclbin(xb)
    with pytest.raises(RuntimeError, match="16 PDIs"):
        fake.hw_context(dev, xb.get_uuid())
    assert fake.live_contexts() == 0


def test_relink_is_cached_and_a_member_change_relinks(linked: tuple, tmp_path: Path,
                                                      fake_toolchain: Path) -> None:
    _directory, arts, specs = linked
    out = tmp_path / "ctx"
    first = link_context(arts, out, target="hw", names=list(specs))
    steps: list[tuple[str, str]] = []
    again = link_context(arts, out, target="hw", names=list(specs),
                         log=lambda s, st: steps.append((s, st)))
    assert not first.up_to_date and again.up_to_date and steps == [("link", "up to date")]
    other = link_context(arts[:2], out, target="hw", names=list(specs)[:2])
    assert not other.up_to_date and read_context(out)["members"][-1]["name"] == "ln"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aiecc.log", "ctx", "ctx.lock"]


def test_a_relative_output_and_relative_members_link(linked: tuple, tmp_path: Path,
                                                    fake_toolchain: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """aiecc runs in each member's own directory, so the chained --xclbin-input must be
    absolute even when `out` and the artifacts were given relative to the caller's cwd."""
    _directory, arts, specs = linked
    for a in arts[:2]:
        shutil.copytree(a, tmp_path / "arts" / a.name)
    monkeypatch.chdir(tmp_path)
    rel = [Path("arts") / a.name for a in arts[:2]]
    result = link_context(rel, "ctxrel", target="hw", names=list(specs)[:2])
    assert result.directory == tmp_path / "ctxrel" and not result.emulation_only
    assert sorted(read_xclbin(tmp_path / "ctxrel" / "final.xclbin").kernel_names) == \
        sorted(list(specs)[:2])


def test_a_failed_link_leaves_nothing_and_foreign_directories_are_kept(
        linked: tuple, tmp_path: Path, fake_toolchain: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _directory, arts, _specs = linked
    out = tmp_path / "ctx"
    link_context(arts, out, target="hw")
    monkeypatch.setenv("FAKE_AIECC_FAIL", "overflow")
    with pytest.raises(BuildError) as e:
        link_context(arts, out, target="hw", force=True)
    assert "aiecc failed for member" in one_line(e) and "overflowed" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aiecc.log", "ctx.lock"]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own\n")
    monkeypatch.delenv("FAKE_AIECC_FAIL")
    with pytest.raises(BuildError) as e:
        link_context(arts, mine, target="hw")
    assert "refusing to overwrite" in one_line(e)
    assert (mine / "notes.txt").read_text() == "my own\n"


def test_missing_aiecc_is_one_actionable_line(linked: tuple, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _directory, arts, _specs = linked
    monkeypatch.setenv("PATH", str(tmp_path))  # no aiecc anywhere
    monkeypatch.setenv("PEANO_INSTALL_DIR", str(FAKES / "peano"))
    with pytest.raises(ToolchainError) as e:
        link_context(arts, tmp_path / "ctx", target="hw")
    assert "aiecc (mlir-aie) not found" in one_line(e) and "install" in str(e.value)
    assert not (tmp_path / "ctx").exists()
    result = link_context(arts, tmp_path / "ctx", target="auto")
    assert result.emulation_only and result.missing_line
    assert "aiecc (mlir-aie) not found" in result.missing_line
    assert read_context(tmp_path / "ctx")["xclbin"] is None


def test_emulation_only_context_runs_on_the_emulator_only(linked: tuple, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _directory, arts, specs = linked
    out = link_context(arts, tmp_path / "ctx", target="emu", names=list(specs)).directory
    assert not (out / "final.xclbin").exists()
    hide_pyxrt(monkeypatch)
    with pytest.raises(RunError) as e:
        NpuContext.load(out, backend="xrt")
    assert "emulation-only context" in one_line(e)
    with NpuContext.load(out) as ctx:
        assert ctx.backend_name == "emu"
        inputs = specs["ln"].random_inputs(5)
        np.testing.assert_array_equal(ctx.kernel("ln")(*inputs)[0], specs["ln"].golden(inputs)[0])


def test_auto_falls_back_to_the_emulator_without_pyxrt(linked: tuple,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    directory, _arts, specs = linked
    hide_pyxrt(monkeypatch)
    monkeypatch.setattr("runtime.xrt.npu_device_node", lambda: "")
    with NpuContext.load(directory) as ctx:
        assert ctx.backend_name == "emu"
        inputs = specs["gelu"].random_inputs(3)
        np.testing.assert_array_equal(ctx.kernel("gelu")(*inputs)[0],
                                      specs["gelu"].golden(inputs)[0])
    with pytest.raises(ToolchainError):
        NpuContext.load(directory, backend="xrt")


def test_fake_aiecc_refuses_chaining_options_out_of_order(tmp_path: Path) -> None:
    (tmp_path / "aie.mlir").write_text("module {}\n")
    argv = [sys.executable, str(FAKES / "bin" / "aiecc"), "--aie-generate-xclbin",
            "--aie-generate-npu-insts", "--no-xchesscc", "--no-xbridge", "--peano",
            str(FAKES / "peano"), "--xclbin-name=final.xclbin", "--npu-insts-name=insts.bin",
            "--alloc-scheme=basic-sequential", f"--tmpdir={tmp_path / 'prj'}",
            "--xclbin-instance-name=a_i", "--xclbin-kernel-name=a", "--xclbin-kernel-id=0x901",
            "aie.mlir"]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "expected --xclbin-kernel-name" in proc.stderr


def test_unknown_member_and_closed_context(linked: tuple, fake: ModuleType) -> None:
    directory, _arts, specs = linked
    ctx = NpuContext.load(directory, backend="xrt")
    with pytest.raises(RunError, match="no member 'attn'"):
        ctx.kernel("attn")
    gelu = ctx.kernel("gelu")
    ctx.close()
    with pytest.raises(RunError, match="closed"):
        gelu(*specs["gelu"].random_inputs(0))


def test_an_edited_context_is_ours_and_relinked(linked: tuple, tmp_path: Path,
                                                fake_toolchain: Path) -> None:
    _directory, arts, specs = linked
    out = tmp_path / "ctx"
    link_context(arts, out, target="emu", names=list(specs))
    (out / CONTEXT_NAME).write_text((out / CONTEXT_NAME).read_text().replace('"ln"', '"LN"'))
    with pytest.raises(ArtifactError, match="edited after linking"):
        read_context(out)
    again = link_context(arts, out, target="emu", names=list(specs))
    assert not again.up_to_date and read_context(out, verify=True)["members"][1]["name"] == "ln"


def test_hw_link_of_an_emulation_only_member_names_it(tmp_path: Path,
                                                      fake_toolchain: Path) -> None:
    spec = spec_from_params(*VARIANTS["gelu"])
    art = build(spec, tmp_path / "build", target="emu").artifact_dir
    with pytest.raises(BuildError) as e:
        link_context([art], tmp_path / "ctx", target="hw")
    assert "member gelu_length256_max_tile64 is an emulation-only build" in one_line(e)
    assert link_context([art], tmp_path / "ctx", target="auto").emulation_only


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _readme_section(title: str) -> str:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start:end if end >= 0 else None]


def _example_names(linked: tuple) -> dict[str, object]:
    """The names the examples use: the tiny builds, two weight sets and an activation."""
    _directory, arts, specs = linked
    by = dict(zip(specs, arts, strict=True))
    (x, w0), (_, w1) = specs["mm"].random_inputs(1), specs["mm"].random_inputs(2)
    return {"mm_dir": by["mm"], "ln_dir": by["ln"], "gelu_dir": by["gelu"], "x": x, "w0": w0,
            "w1": w1}


def test_the_readme_context_examples_run(linked: tuple, tmp_path: Path, fake: ModuleType,
                                         fake_toolchain: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python block of the README's "Context artifacts" section runs as written, and
    its y is the golden model's for the bound weights."""
    blocks = _python_blocks(_readme_section("Context artifacts"))
    assert blocks
    monkeypatch.chdir(tmp_path)
    names = _example_names(linked)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), names)
    gold = linked[2]["mm"].golden([names["x"], names["w0"]])[0]
    np.testing.assert_array_equal(np.asarray(names["y"]).reshape(gold.shape), gold)


def test_the_context_module_docstring_example_runs(linked: tuple, tmp_path: Path,
                                                   fake: ModuleType,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime/context.py's usage lines run against a context linked with the names they use."""
    import runtime.context as module

    doc = module.__doc__ or ""
    lines = [ln[4:] for ln in doc.splitlines() if ln.startswith("    ")]
    code = "\n".join(re.sub(r"\s+# .*$", "", ln) for ln in lines)
    monkeypatch.chdir(tmp_path)
    names = {**_example_names(linked), "NpuContext": NpuContext}  # the module's own class
    link_context([names["mm_dir"]], "build/ctx/encoder", target="emu", names=["mm_q"])
    exec(compile(code, "runtime/context.py", "exec"), names)
    gold = linked[2]["mm"].golden([names["x"], names["w0"]])[0]
    np.testing.assert_array_equal(np.asarray(names["y"]).reshape(gold.shape), gold)
