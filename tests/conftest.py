"""Shared fixtures: a scratch build root, built attention variants, and the fake toolchain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import BuildResult, build
from codegen.spec import KernelSpec

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"

ATTENTION_VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "causal": {"causal": "1"},
    "rect": {"n_queries": "32", "n_keys": "128", "head_dim": "32", "causal": "1"},
    "tiles3": {"tiles": "3", "fifo_depth": "1"},
}


@pytest.fixture(scope="session")
def emu_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """Emulation artifacts of several attention variants, built once per session."""
    root = tmp_path_factory.mktemp("build")
    return {
        name: build(spec_from_params("attention", params), root, target="emu")
        for name, params in ATTENTION_VARIANTS.items()
    }


@pytest.fixture(params=sorted(ATTENTION_VARIANTS))
def attention_build(request: pytest.FixtureRequest,
                    emu_builds: dict[str, BuildResult]) -> tuple[KernelSpec, BuildResult]:
    result = emu_builds[request.param]
    return spec_from_params("attention", result.manifest.params), result


@pytest.fixture
def fake_toolchain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Put the fake aiecc on PATH and the fake Peano in PEANO_INSTALL_DIR; yields the aiecc log."""
    log = tmp_path / "aiecc.log"
    monkeypatch.setenv("PATH", f"{FAKES / 'bin'}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("PEANO_INSTALL_DIR", str(FAKES / "peano"))
    monkeypatch.setenv("FAKE_AIECC_LOG", str(log))
    monkeypatch.delenv("FAKE_AIECC_FAIL", raising=False)
    yield log
