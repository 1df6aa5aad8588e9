"""One Jinja environment for every template: strict, deterministic, rooted at `mlir/`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from codegen.spec import KernelSpec

MLIR_ROOT = Path(__file__).resolve().parent.parent / "mlir"
COMMON = MLIR_ROOT / "common"
#: npukit's host stand-in for AIE API: on the include path of the host-core stage only
HOST_AIE_API = COMMON / "host_aie_api"
DESIGN_TEMPLATE = "design.mlir.j2"
DESIGN_NAME = "aie.mlir"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(MLIR_ROOT)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
    trim_blocks=False,
    # MLIR writes `{%core}` for consumer lists, so Jinja statements use [% %] and [# #].
    block_start_string="[%",
    block_end_string="%]",
    comment_start_string="[#",
    comment_end_string="#]",
)


@dataclass(frozen=True)
class Rendered:
    """The text of every file a kernel's build starts from, by file name."""

    files: dict[str, str]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            h.update(name.encode() + b"\0" + self.files[name].encode() + b"\0")
        return h.hexdigest()


def kernel_dir(spec: KernelSpec) -> Path:
    return MLIR_ROOT / spec.name


def render(spec: KernelSpec) -> Rendered:
    """The design, the rendered headers, the core sources and the shared headers of `spec`."""
    ctx = spec.render_context()
    files: dict[str, str] = {}
    folder = kernel_dir(spec)
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".j2"):
            out = DESIGN_NAME if path.name == DESIGN_TEMPLATE else path.name[: -len(".j2")]
            files[out] = _ENV.get_template(f"{spec.name}/{path.name}").render(ctx)
        elif path.is_file():
            files[path.name] = path.read_text()
    for path in sorted(COMMON.glob("*.h")):
        files.setdefault(path.name, path.read_text())
    missing = [s for s in spec.CORE_SOURCES if s not in files]
    if missing or DESIGN_NAME not in files:
        raise FileNotFoundError(f"{folder}: missing {missing or DESIGN_TEMPLATE}")
    return Rendered(files)


def template_digest(spec: KernelSpec) -> str:
    """A hash of the kernel's template folder and the common folder, as sources."""
    h = hashlib.sha256()
    for folder in (kernel_dir(spec), COMMON):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
