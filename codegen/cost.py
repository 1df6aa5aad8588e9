"""The cost model: what one design moves and computes, and its projected time on npu1 and npu2.

A spec describes its design as a `Workload` (`spec.workload()`): MACs and other scalar work per
core, bytes per shim, mem-tile and core DMA channel per invocation, the buffer descriptors the
runtime sequence writes, and the invocations. `project(workload, device)` turns it into a
`Projection` from stated assumptions, each with its public source: a projection, never a
measurement. The model:

  compute = max over cores of (MACs / MACs-per-cycle + scalar cycles) / clock
  dma     = max over channels of bytes / (bytes-per-cycle x clock)
  time    = invocations x (max(compute, dma) + dispatch)

Compute and DMA overlap (the object FIFOs double-buffer); a design with depth-1 FIFOs overlaps
less, which this model does not see. Start-up latency (the first tiles before the cores start)
and the command processor's time per buffer descriptor are not modelled; BDs are counted.

Per-call overheads of a model (several kernels run in turn, codegen/models/cost.py): the
dispatch of each kernel call (in `time` above, `DeviceModel.dispatch_s`), a design (PDI) switch
between consecutive calls of different variants (`PDI_SWITCH`, whose cost inside one context is
unknown: totals are shown with and without it), and the host ops between them, which run on the
CPU and are counted, not given a time (a bench may measure them, labelled host-measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.spec import SpecError

PATHS = ("scalar", "vector")


@dataclass(frozen=True)
class Assumption:
    """One number the projection rests on, with its unit and where it comes from."""

    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class DeviceModel:
    """The assumptions for one device family."""

    family: str
    arch: str
    clock_hz: Assumption
    macs_per_cycle: dict[str, Assumption]
    dma_bytes_per_cycle: Assumption
    dispatch_s: Assumption
    cores: int

    def assumptions(self, path: str) -> list[Assumption]:
        return [self.clock_hz, self.macs_per_cycle[path], SCALAR_OPS, self.dma_bytes_per_cycle,
                self.dispatch_s]


# The scalar unit issues one instruction per cycle, a 32x32-bit multiply among them (AMD AM020,
# AIE-ML Architecture Manual, "Arithmetic Logic Unit and Scalar Functions"; AM027 the same for
# AIE-ML v2). A scalar int8 MAC is at least a multiply and an add with its loads, so one MAC per
# cycle is an upper bound for the scalar path, assuming the VLIW slots overlap them fully.
_SCALAR = Assumption(
    "scalar MACs per cycle", 1.0, "MAC/cycle",
    "upper bound: AMD AM020 'Arithmetic Logic Unit and Scalar Functions' (one 32x32 multiply "
    "issued per cycle on the scalar unit)")
# Scalar work besides MACs (requantisation, softmax steps) is given in cycles by each spec.
SCALAR_OPS = Assumption(
    "other scalar work", 1.0, "op/cycle",
    "AMD AM020 'Arithmetic Logic Unit and Scalar Functions' (issue rate one instruction per "
    "cycle); the op counts per element are each spec's estimate from its core code")

DEVICES = {
    "npu1": DeviceModel(
        family="npu1",
        arch="aie2",
        clock_hz=Assumption(
            "AIE clock", 1.6e9, "Hz",
            "xdna-driver npu1_regs.c npu1_dpm_clk_table, top DPM level H-clock 1600 MHz "
            "(the driver scales TOPS to 1028 MHz; a peer reports 1.8 GHz, NPU_FACTS 8)"),
        macs_per_cycle={
            "scalar": _SCALAR,
            "vector": Assumption(
                "vector int8 MACs per cycle", 256.0, "MAC/cycle",
                "AIE API aie::mmul<4,8,8> int8 on aie2 (AMD AM020 'Functional Overview': 256 "
                "int8 MACs per cycle); peak: the stock mlir-aie kernel reaches ~107 (NPU_FACTS 8)"),
        },
        dma_bytes_per_cycle=Assumption(
            "DMA bytes per channel per cycle", 4.0, "B/cycle",
            "AMD AM020 'Array Interface DMA Memory Mapped AXI4 Master Interface' (each channel "
            "sustains 4 bytes per cycle); UG1603 'Data Communication via AXI4-Stream "
            "Interconnect' (a stream is 32 bits per cycle), for mem-tile and core channels too"),
        dispatch_s=Assumption(
            "dispatch per invocation", 42e-6, "s",
            "xdna-driver PR #599: 24,058 ops/s pipelined on Phoenix/Linux (NPU_FACTS 1)"),
        cores=16,
    ),
    "npu2": DeviceModel(
        family="npu2",
        arch="aie2p",
        clock_hz=Assumption(
            "AIE clock", 1.8e9, "Hz",
            "xdna-driver npu4_regs.c npu4_dpm_clk_table (Strix), top DPM level H-clock 1800 MHz"),
        macs_per_cycle={
            "scalar": _SCALAR,
            "vector": Assumption(
                "vector int8 MACs per cycle", 512.0, "MAC/cycle",
                "aie2p int8 8x8x8 mmul (NPU_FACTS 8); xdna-driver aie2_smu.c NPU4_DPM_TOPS = "
                "4096 ops per column per cycle = 4 cores x 512 MAC x 2"),
        },
        dma_bytes_per_cycle=Assumption(
            "DMA bytes per channel per cycle", 4.0, "B/cycle",
            "assumed as AIE-ML (AMD AM020 'Array Interface DMA ...': 4 bytes per cycle); "
            "AM027 gives AIE-ML v2 mem tiles 64-bit streams, not assumed here"),
        dispatch_s=Assumption(
            "dispatch per invocation", 50e-6, "s",
            "Strix/Linux 50-65 us per tiny op (IRON #43, xdna-driver #513; NPU_FACTS 1), "
            "lower end"),
        cores=32,
    ),
}


# Switching designs: whisper-xdna (npu1, bf16) reports ~2.8 ms per switch between designs, and
# ~2.5 ms to create a hardware context (NPU_FACTS 8). npukit's variants are PDIs of one xclbin on
# one context (codegen/link.py); whether a switch between them costs the same is not known.
PDI_SWITCH = Assumption(
    "design (PDI) switch between kernel calls", 2.8e-3, "s",
    "whisper-xdna's ~2.8 ms per design switch (NPU_FACTS 8); unknown whether a switch between "
    "PDIs of one hardware context costs that, so totals are shown with and without it")


def device_family(device: str) -> str:
    """`npu1_2col` -> `npu1`; a SpecError for a device the model does not know."""
    family = device.split("_", 1)[0]
    if family not in DEVICES:
        raise SpecError(f"device {device!r}: the cost model knows {', '.join(DEVICES)}")
    return family


@dataclass(frozen=True)
class Workload:
    """What one invocation of a design does, per core and per DMA channel.

    Channel keys name the tile, direction and FIFO, e.g. `shim(0) MM2S @a0`; core keys the tile,
    e.g. `core(0, 2)`. `scalar_cycles` is per core work the MAC count does not cover
    (requantisation and the like), in scalar-unit cycles.
    """

    kernel: str
    device: str
    path: str
    macs: dict[str, int]
    shim_bytes: dict[str, int]
    mem_tile_bytes: dict[str, int] = field(default_factory=dict)
    core_bytes: dict[str, int] = field(default_factory=dict)
    scalar_cycles: dict[str, int] = field(default_factory=dict)
    bds: int = 0
    invocations: int = 1
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise SpecError(f"workload path {self.path!r} is not one of {', '.join(PATHS)}")
        if self.invocations < 1:
            raise SpecError(f"workload invocations {self.invocations} must be at least 1")

    @property
    def cores(self) -> int:
        return len(self.macs)

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    def channels(self) -> dict[str, int]:
        """Every DMA channel's bytes per invocation."""
        return {**self.shim_bytes, **self.mem_tile_bytes, **self.core_bytes}


@dataclass(frozen=True)
class Projection:
    """A projected time and what it rests on; `bound` names the term that sets it."""

    family: str
    path: str
    seconds: float
    compute_s: float
    dma_s: float
    dispatch_s: float
    bound: str
    busiest_core: str
    busiest_channel: str
    tops: float
    assumptions: tuple[Assumption, ...]

    def describe(self) -> str:
        return (f"{self.family} {self.path}: {self.seconds * 1e6:,.1f} us projected "
                f"({self.tops:.2f} TOPS), bound by {self.bound}")


def project(workload: Workload, device: str, path: str | None = None,
            model: DeviceModel | None = None) -> Projection:
    """The projected time of `workload` on `device`'s family (npu1 or npu2), a model figure.

    `path` overrides the workload's MAC path (to compare scalar and vector for one design);
    `model` replaces the family's assumptions (a what-if, e.g. a measured MAC rate).
    """
    model = model or DEVICES[device_family(device)]
    path = path or workload.path
    if path not in PATHS:
        raise SpecError(f"path {path!r} is not one of {', '.join(PATHS)}")
    clock = model.clock_hz.value
    rate = model.macs_per_cycle[path].value
    core_cycles = {
        core: macs / rate + workload.scalar_cycles.get(core, 0) / SCALAR_OPS.value
        for core, macs in workload.macs.items()
    }
    busiest_core = max(core_cycles, key=lambda c: core_cycles[c], default="-")
    compute = core_cycles.get(busiest_core, 0.0) / clock
    channels = workload.channels()
    busiest_channel = max(channels, key=lambda c: channels[c], default="-")
    dma = channels.get(busiest_channel, 0) / (model.dma_bytes_per_cycle.value * clock)
    dispatch = model.dispatch_s.value
    per_call = max(compute, dma) + dispatch
    seconds = workload.invocations * per_call
    terms = {f"compute ({busiest_core})": compute, f"DMA ({busiest_channel})": dma,
             "dispatch": dispatch}
    bound = max(terms, key=lambda k: terms[k])
    tops = 2 * workload.total_macs * workload.invocations / seconds / 1e12
    return Projection(model.family, path, seconds, compute * workload.invocations,
                      dma * workload.invocations, dispatch * workload.invocations, bound,
                      busiest_core, busiest_channel, tops, tuple(model.assumptions(path)))
