"""test-hw: passes a correct kernel, catches constant and input-independent ones, fails loudly."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import codegen.kernels
from codegen.testhw import compare, run_test_hw
from tests.test_runtime_support import (
    StandinSpec,
    hide_pyxrt,
    install_fake_pyxrt,
    make_standin,
    standin_spec_from_params,
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setattr(codegen.kernels, "spec_from_params", standin_spec_from_params)
    return install_fake_pyxrt(monkeypatch)


def build(root: Path, variant: str, symbol: str = "add_one", **kwargs: Any) -> Path:
    return make_standin(root / "standin" / variant, symbol, kernel="standin", variant=variant,
                        **kwargs)


def test_hw(build_dir: Path, tmp_path: Path, backend: str = "xrt") -> tuple[int, dict, ET.Element]:
    status = run_test_hw(build_dir, None, backend, seeds=3, iterations=5,
                         report=tmp_path / "report.json", junit=tmp_path / "junit.xml",
                         progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    return status, report, ET.parse(tmp_path / "junit.xml").getroot()


test_hw.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.mark.parametrize("backend", ["xrt", "emu", "auto"])
def test_correct_kernel_is_verified(fake: ModuleType, tmp_path: Path, backend: str) -> None:
    build(tmp_path / "build", "good", params={"tiles": 2})
    status, report, junit = test_hw(tmp_path / "build", tmp_path, backend)
    assert status == 0 and report["verified"]
    (r,) = report["results"]
    assert r["passed"] and r["flags"] == [] and r["error"] == ""
    assert [c["name"] for c in r["cases"]] == ["seed0", "seed1", "seed2", "zeros", "max", "min"]
    assert r["backend"] == ("emu" if backend == "emu" else "xrt")
    t = r["timing"]
    assert t["calls"] == 5 and t["p99_us"] >= t["p50_us"] > 0
    assert t["mean_us_per_tile"] == pytest.approx(t["mean_us"] / 2)
    assert junit.find(".//testcase[@name='good']") is not None
    assert junit.find(".//failure") is None and junit.find(".//error") is None


def test_constant_output_is_caught(fake: ModuleType, tmp_path: Path) -> None:
    build(tmp_path / "build", "const", "constant")
    status, report, junit = test_hw(tmp_path / "build", tmp_path)
    assert status == 1
    (r,) = report["results"]
    assert any("is constant (all 7" in f for f in r["flags"])
    failure = junit.find(".//testcase[@name='const']/failure")
    assert failure is not None and "constant" in failure.get("message", "")


def test_input_independent_output_is_caught(fake: ModuleType, tmp_path: Path) -> None:
    build(tmp_path / "build", "ignores", "ignore_input")
    status, report, _ = test_hw(tmp_path / "build", tmp_path)
    assert status == 1
    (r,) = report["results"]
    assert any("does not depend on the input" in f for f in r["flags"])
    assert not any("constant" in f for f in r["flags"])


def test_one_bad_build_fails_the_run(fake: ModuleType, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    build(tmp_path / "build", "good")
    build(tmp_path / "build", "ignores", "ignore_input")
    status, report, junit = test_hw(tmp_path / "build", tmp_path)
    assert status == 1 and not report["verified"]
    verdicts = {r["variant"]: r["passed"] for r in report["results"]}
    assert verdicts == {"good": True, "ignores": False}
    assert len(junit.findall(".//testcase")) == 2
    assert "FAIL standin/ignores" in capsys.readouterr().out


def test_wrong_bytes_report_the_first_mismatch(
    fake: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path / "build", "good")
    monkeypatch.setattr(StandinSpec, "golden",
                        lambda self, inputs: [(inputs[0].astype(np.int16) + 2).astype(np.int8)])
    status, report, _ = test_hw(tmp_path / "build", tmp_path)
    assert status == 1
    (r,) = report["results"]
    assert not any(c["passed"] for c in r["cases"])
    assert "first at (0,)" in r["reason"] and "max abs diff" in r["reason"]


def test_compare_is_bit_exact() -> None:
    want = np.array([1.0, np.nan, 0.0], dtype=np.float32)
    assert compare("o", want.copy(), want) is None
    m = compare("o", np.array([1.0, np.nan, -0.0], dtype=np.float32), want)
    assert m is not None and m.count == 1 and m.first_index == [2]
    m = compare("o", np.array([5, 3, 9], np.int8), np.array([5, -3, 9], np.int8))
    assert m is not None and (m.count, m.first_index, m.got, m.want, m.max_abs_diff) == (
        1, [1], 3.0, -3.0, 6.0)
    m = compare("o", np.zeros(3, np.int16), np.zeros(3, np.int8))
    assert m is not None and m.count == 3


@pytest.mark.parametrize("how", ["no device", "no pyxrt"])
def test_xrt_without_an_npu_fails_with_one_line(
    fake: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], how: str,
) -> None:
    build(tmp_path / "build", "good")
    if how == "no device":
        fake.config.devices = 0
    else:
        hide_pyxrt(monkeypatch)
    status, report, junit = test_hw(tmp_path / "build", tmp_path)
    assert status == 1 and not report["verified"]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    expected = "amdxdna" if how == "no device" else "setup.sh"
    assert lines[0].startswith("test-hw: backend xrt needs an NPU") and expected in lines[0]
    assert junit.find(".//testcase/error") is not None


def test_tampered_build_fails_naming_the_file(fake: ModuleType, tmp_path: Path) -> None:
    art = build(tmp_path / "build", "good")
    with open(art / "insts.bin", "r+b") as f:
        f.seek(20)
        f.write(b"\x7f")
    status, report, _ = test_hw(tmp_path / "build", tmp_path)
    assert status == 1
    assert "insts.bin: content does not match its manifest hash" in report["results"][0]["error"]


def test_no_artifacts_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_test_hw(tmp_path, None, "emu", 2, 1, None, None, progress=False) == 1
    assert "test-hw: no artifacts under" in capsys.readouterr().err


def test_a_requested_kernel_without_builds_is_a_failure(
    fake: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build(tmp_path / "build", "good")
    assert run_test_hw(tmp_path / "build", ["standin"], "emu", 2, 1, None, None,
                       progress=False) == 0
    assert run_test_hw(tmp_path / "build", ["standin", "gelu"], "emu", 2, 1, None, None,
                       progress=False) == 1
    assert "no artifacts for gelu" in capsys.readouterr().err
    assert run_test_hw(tmp_path / "build", None, "emu", 1, 1, None, None, progress=False) == 1
    assert "--seeds 1 is too few" in capsys.readouterr().err


def test_a_degenerate_build_is_not_verified(tmp_path: Path) -> None:
    """Core == golden is not enough: a golden model off its accuracy targets fails the build."""
    from codegen.kernels import spec_from_params
    from codegen.pipeline import build
    from codegen.testhw import verify

    good = build(spec_from_params("gelu", {"length": "256"}), tmp_path, target="emu")
    flat = build(spec_from_params("gelu", {"length": "256", "in_scale": "1e-30"}), tmp_path,
                 target="emu")
    assert verify(good.artifact_dir, "emu", seeds=2, iterations=0).passed
    bad = verify(flat.artifact_dir, "emu", seeds=2, iterations=0)
    assert not bad.passed and all(c.passed for c in bad.cases)
    assert "misses its accuracy target" in bad.reason()


def test_a_changed_parameter_file_is_stale_not_a_mismatch(tmp_path: Path) -> None:
    from codegen.kernels import spec_from_params
    from codegen.pipeline import build
    from codegen.testhw import verify

    gamma = tmp_path / "gamma.npy"
    np.save(gamma, np.full(512, 1.5))
    result = build(spec_from_params("layernorm", {"gamma": str(gamma)}), tmp_path, target="emu")
    assert verify(result.artifact_dir, "emu", seeds=2, iterations=0).passed
    np.save(gamma, np.full(512, 0.5))
    stale = verify(result.artifact_dir, "emu", seeds=2, iterations=0)
    assert stale.error == f"gamma {gamma.resolve()} changed since the build; rebuild"


def test_a_crashing_core_fails_its_artifact_not_the_run(tmp_path: Path) -> None:
    """With isolation, a core that kills its process is one FAIL row; the others still run."""
    import subprocess

    from codegen.kernels import spec_from_params
    from codegen.pipeline import build
    from codegen.testhw import run_test_hw
    from runtime.manifest import file_entry, load_manifest, write_manifest

    build(spec_from_params("gelu", {"length": "256"}), tmp_path, target="emu")
    crashing = build(spec_from_params("gelu", {"length": "512"}), tmp_path, target="emu")
    source = tmp_path / "crash.c"
    source.write_text('#include <stdlib.h>\nvoid gelu_i8(const char *x, char *y) { abort(); }\n')
    lib = crashing.artifact_dir / "libgelu.host.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(source), "-o", str(lib)], check=True)
    manifest = load_manifest(crashing.artifact_dir, verify=False)
    manifest.files[lib.name] = file_entry(lib, "host_core")
    write_manifest(crashing.artifact_dir, manifest)

    report = tmp_path / "report.json"
    code = run_test_hw(tmp_path, None, "emu", 2, 1, report, None, progress=False, isolate=True)
    results = {r["variant"]: r for r in json.loads(report.read_text())["results"]}
    assert code == 1
    assert results["length256"]["passed"]
    assert "died (signal SIGABRT)" in results["length512"]["error"]
    # the crash is the latest verdict on that build: recorded, not an older report left standing
    crashed = json.loads((tmp_path / "gelu" / "length512.test-hw.json").read_text())
    assert "died (signal SIGABRT)" in crashed["error"]


def test_a_failed_submit_is_reported_as_such_not_as_a_crash(
    fake: ModuleType, tmp_path: Path
) -> None:
    """run.start() raising (the submit ioctl failing) is the artifact's error line."""
    build(tmp_path / "build", "good")
    fake.config.start_error = "DRM_IOCTL_AMDXDNA_EXEC_CMD IOCTL failed (err=-22): Invalid argument"
    status, report, _ = test_hw(tmp_path / "build", tmp_path)
    (r,) = report["results"]
    assert status == 1 and "starting the kernel run failed: DRM_IOCTL" in r["error"]
    assert "crashed" not in r["error"]


def test_whole_array_matmul_verifies_on_the_emulator_with_its_projection(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`test-hw --backend emu` on whole-array matmuls prints the labelled projection beside."""
    from codegen.kernels import spec_from_params as real_spec
    from codegen.pipeline import build as build_kernel

    for params in ({"M": "256", "K": "256", "N": "256", "device": "npu1"},
                   {"M": "128", "K": "320", "N": "512", "tm": "32", "device": "npu2"}):
        build_kernel(real_spec("matmul", params), tmp_path / "build", target="emu")
    status = run_test_hw(tmp_path / "build", ["matmul"], "emu", seeds=2, iterations=2,
                         report=tmp_path / "r.json", junit=None, progress=False)
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert status == 0 and report["verified"] and len(report["results"]) == 2
    for r in report["results"]:
        p = r["projection"]
        assert p["label"] == "cost-model projection, not a measurement"
        assert p["projected_us"] > 0 and p["device"] in ("npu1", "npu2")
    assert "model µs" in out and "not NPU time" in out


def test_a_report_is_bound_to_the_manifest_it_tested(fake: ModuleType, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild during the run must not receive the passing report of the build it replaced."""
    import codegen.testhw as testhw
    from codegen.publish import report_path

    root = tmp_path / "build"
    art = build(root, "good")
    tested = testhw.verify

    def verify_then_rebuild(*args: Any, **kwargs: Any) -> testhw.Result:
        result = tested(*args, **kwargs)
        build(root, "good", params={"rebuilt": 1})  # another manifest in its place meanwhile
        return result

    monkeypatch.setattr(testhw, "verify", verify_then_rebuild)
    status, report, _ = test_hw(root, tmp_path)
    assert status == 1
    (r,) = report["results"]
    assert "rebuilt while it was tested" in r["error"] and not r["passed"]
    assert not report_path(art).exists()


def test_leftovers_of_interrupted_builds_are_not_artifacts_and_are_swept(tmp_path: Path) -> None:
    """`.default.tmp-PID` / `.default.old-PID` are never verified as variants; the next build of
    the variant removes them (and a stage's temporaries) under its lock."""
    import shutil

    from codegen.kernels import spec_from_params
    from codegen.pipeline import Build
    from codegen.pipeline import build as build_kernel

    spec = spec_from_params("gelu", {"length": "256"})
    art = build_kernel(spec, tmp_path, target="emu").artifact_dir
    leftovers = [art.parent / f".{art.name}.tmp-4242", art.parent / f".{art.name}.old-4243"]
    for p in leftovers:
        shutil.copytree(art, p)
    report_tmp = art.parent / f".{art.name}.test-hw.json.4244-0123abcd.tmp"
    report_tmp.write_text("{")
    key = Build(spec, tmp_path, target="emu").keys["render"]
    stage_tmp = tmp_path / ".cache" / "render" / f".tmp-{key[:16]}-4245"
    stage_tmp.mkdir()
    code = run_test_hw(tmp_path, None, "emu", seeds=2, iterations=0,
                       report=tmp_path / "report.json", junit=None, progress=False)
    results = json.loads((tmp_path / "report.json").read_text())["results"]
    assert [r["path"] for r in results] == [str(art)] and code == 0
    Build(spec, tmp_path, target="emu", force=True).run()
    assert not any(p.exists() for p in [*leftovers, report_tmp, stage_tmp])
    kept = art.parent / f".{art.name}x.tmp-1"  # not this variant's pattern: left alone
    kept.mkdir()
    Build(spec, tmp_path, target="emu").run()
    assert kept.is_dir()


def test_saturated_outputs_warn_and_fail_under_strict(tmp_path: Path) -> None:
    """v_scale/o_scale = 100 verifies bit for bit, yet pins most outputs to -128/127: reported,
    warned about, and with strict a failure. A calibrated build reports its (small) share."""
    from codegen.kernels import spec_from_params
    from codegen.pipeline import build
    from codegen.testhw import SATURATION_LIMIT, verify

    small = {"n_queries": "8", "n_keys": "16", "head_dim": "16", "fifo_depth": "1"}
    good = build(spec_from_params("attention", small), tmp_path, target="emu")
    clipped = build(spec_from_params("attention", {**small, "o_scale": str(4 / 127 / 100)}),
                    tmp_path, target="emu")
    ok = verify(good.artifact_dir, "emu", seeds=2, iterations=0)
    assert ok.passed and ok.warnings == [] and ok.saturation["out"] <= SATURATION_LIMIT
    warned = verify(clipped.artifact_dir, "emu", seeds=2, iterations=0)
    print(f"attention o_scale/100: saturated {warned.saturation['out']:.1%} of outputs")
    assert warned.passed and warned.saturation["out"] > 0.5
    (warning,) = warned.warnings
    assert "output 'out' saturates" in warning and "limit 5%" in warning
    strict = verify(clipped.artifact_dir, "emu", seeds=2, iterations=0, strict=True)
    assert not strict.passed and "output 'out' saturates" in strict.reason()
    assert strict.to_json()["saturation"] == warned.saturation
