"""Shared fixtures: a scratch build root, built kernel variants, and the fake toolchain."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from codegen.kernels import spec_from_params
from codegen.pipeline import BuildResult, build
from codegen.spec import KernelSpec

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"

#: (kernel, params) of every variant the tests build and verify, by a short name
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "attention": ("attention", {}),
    "attention-causal": ("attention", {"causal": "1"}),
    "attention-rect": ("attention", {"n_queries": "32", "n_keys": "128", "head_dim": "32",
                                     "causal": "1"}),
    "attention-tiles3": ("attention", {"tiles": "3", "fifo_depth": "1"}),
    "gelu": ("gelu", {}),
    "gelu-odd": ("gelu", {"length": "1000", "in_scale": "0.02", "out_scale": "0.05"}),
    "layernorm": ("layernorm", {}),
    "layernorm-affine": ("layernorm", {"gamma": "@gamma", "beta": "@beta"}),
    "layernorm-384": ("layernorm", {"rows": "6", "d": "384", "tile_rows": "3"}),
}


def _resolve(params: dict[str, str], data: Path) -> dict[str, str]:
    """Replace `@name` values by a .npy file of learned-looking values made in `data`."""
    out = {}
    rng = np.random.default_rng(5)
    for key, value in params.items():
        if value.startswith("@"):
            path = data / f"{value[1:]}.npy"
            centre = 1.0 if key == "gamma" else 0.0
            np.save(path, rng.normal(centre, 0.2, 512))
            value = str(path)
        out[key] = value
    return out


@pytest.fixture(scope="session")
def emu_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """Emulation artifacts of every test variant, built once per session."""
    root = tmp_path_factory.mktemp("build")
    data = tmp_path_factory.mktemp("data")
    return {
        name: build(spec_from_params(kernel, _resolve(params, data)), root, target="emu")
        for name, (kernel, params) in VARIANTS.items()
    }


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest,
            emu_builds: dict[str, BuildResult]) -> tuple[KernelSpec, BuildResult]:
    """(spec, build) of each test variant in turn."""
    result = emu_builds[request.param]
    return spec_from_params(result.manifest.kernel, result.manifest.params), result


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The fake pyxrt installed as `pyxrt` for this test."""
    from tests.test_runtime_support import install_fake_pyxrt

    return install_fake_pyxrt(monkeypatch)


@pytest.fixture
def artifact(fake: ModuleType, tmp_path: Path) -> Path:
    """The stand-in add-one artifact (design, host core, fake xclbin and insts)."""
    from tests.test_runtime_support import make_standin

    return make_standin(tmp_path / "standin")


@pytest.fixture
def fake_toolchain(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Put the fake aiecc on PATH and the fake Peano in PEANO_INSTALL_DIR; yields the aiecc log."""
    log = tmp_path / "aiecc.log"
    use_fake_toolchain(monkeypatch, log)
    yield log


def use_fake_toolchain(mp: pytest.MonkeyPatch, log: Path) -> None:
    """The fake aiecc on PATH, the fake Peano in PEANO_INSTALL_DIR, aiecc's calls logged to
    `log`, for the scope of `mp` (a fixture's or a `MonkeyPatch.context()`)."""
    mp.setenv("PATH", f"{FAKES / 'bin'}:{os.environ['PATH']}")
    mp.setenv("PEANO_INSTALL_DIR", str(FAKES / "peano"))
    mp.setenv("FAKE_AIECC_LOG", str(log))
    mp.delenv("FAKE_AIECC_FAIL", raising=False)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make `directory` unwritable for this process: chmod, or, for root (whom modes do not
    stop), the immutable attribute; skips the test when neither works here."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)],
                                        capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: cannot make a directory read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def run_with_file_size_limit(code: str, limit: int) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in a child whose writes fail past `limit` bytes a file (RLIMIT_FSIZE:
    the same EFBIG a full disk's ENOSPC is to a writer), from the project root."""
    prelude = ("import resource, signal\n"
               "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
