"""Fixtures: the test core functions compiled for the host, once per session."""

import shutil
import subprocess
from pathlib import Path

import pytest

KERNELS = Path(__file__).with_name("kernels.c")


@pytest.fixture(scope="session")
def core_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kernels.c built with the host C compiler as a shared library."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler (cc) to build the test core functions")
    out = tmp_path_factory.mktemp("corelib") / "libkernels.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(KERNELS), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def libs(core_lib: Path) -> dict[str, Path]:
    """The `libraries` argument for load_design: every test design links with kernels.o."""
    return {"kernels.o": core_lib}
