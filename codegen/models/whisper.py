"""The Whisper encoder planned as kernel ops: which kernel variant each step uses, its weights.

Where each step runs, and why:
- mel kernel: the log-mel front end (DFT, filters, log10); host: the reflect pad and the
  clamp/normalise over the whole window, as for `codegen.kernels.mel.log_mel`.
- conv1, conv2 (kernel 3, padding 1, stride 1 and 2): matmul kernels over windows of frames.
  The windows (im2col, 3x the data) are cut on the host for now; the mem tile's
  dimensionsToStream could read them as overlapping rows like the mel kernel's framing.
- GELU: fused into the output step of conv1's, conv2's and each fc1's matmul (epilogue gelu:
  the layer's table rides in B's record tile), bit for bit the matmul + gelu kernel chain.
- positional embedding and residual adds: host. A fused add would need the residual as a third
  stream into every matmul core, and each column that carries A already uses both of its shim's
  input channels (A and B); no elementwise-add kernel yet.
- per block: layernorm kernel; Q|K|V as ONE matmul (K's bias is zero) with per-column scales
  that also give q, k and v their own output scales; multi-head attention reading q, k and v
  out of that one [t, 3n] output (mha packed_qkv);
  out projection, fc1, fc2 matmuls with per-column scales and int32 bias; final layernorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from codegen.kernels import KERNELS
from codegen.kernels.matmul import MatmulSpec, core_grid
from codegen.kernels.mel import log_mel
from codegen.models import reference
from codegen.models.checkpoint import Checkpoint, EncoderDims
from codegen.models.graph import Graph, Op, Tensor
from codegen.models.quantise import QMAX, TensorScale, calibrate, quantise, weight_scales
from codegen.spec import DEVICE_COLUMNS, SpecError
from runtime.errors import NpukitError

ADD_SHIFT = 16  # host add: z = round((x·mx + y·my) / 2^16)
SAMPLE_RATE = 16_000
DEVICE = "npu1"
# One hardware context is one partition (the xclbin's AIE_PARTITION): every kernel the encoder
# links into it targets the whole array, the one-core stream kernels included (they use column 0).
STREAM_DEVICE = DEVICE
# Every kernel takes its per-layer values (scales, bias, gamma/beta, GELU table) as an input
# buffer, so one build per shape serves every layer (RTPARAMS: runtime_params=1).
RUNTIME = {"runtime_params": 1}
# The matmuls and mha run AIE API's int8 mmul blocks (verified on the host through npukit's
# AIE API subset; not compiled for aie2 here); layernorm and mel have only a scalar core.
VECTOR_PATH = "vector"


class PlanError(NpukitError):
    """No kernel variant fits a step of the model."""


def activation_names(dims: EncoderDims) -> list[str]:
    """Every int8 activation tensor of the graph, in order (the float reference's names)."""
    names = ["mel", "conv1", "gelu1", "conv2", "gelu2", "x0"]
    for i in range(dims.n_audio_layer):
        names += [f"b{i}.{t}" for t in ("ln1", "q", "k", "v", "attn", "out", "x1", "ln2", "fc1",
                                        "gelu", "fc2", "x2")]
    return [*names, "ln_post"]


def window(pcm: np.ndarray, dims: EncoderDims) -> np.ndarray:
    """The clip zero-padded or trimmed to the encoder's window (whisper's pad_or_trim)."""
    out = np.zeros(dims.n_samples, dtype=np.int16)
    take = min(pcm.size, dims.n_samples)
    out[:take] = pcm[:take]
    return out


def float_tensors(ckpt: Checkpoint, pcm: np.ndarray) -> dict[str, np.ndarray]:
    """The float encoder's tensors on one clip, its mel from the mel kernel's golden model."""
    mel = log_mel(window(pcm, ckpt.dims), SAMPLE_RATE)
    return reference.forward(ckpt, mel)


def calibrate_encoder(ckpt: Checkpoint, clips: Sequence[np.ndarray], **kwargs: Any
                      ) -> dict[str, TensorScale]:
    """Activation scales for every int8 tensor from the float encoder on `clips`."""
    runs = [float_tensors(ckpt, c) for c in clips]
    return calibrate(runs, activation_names(ckpt.dims), **kwargs)


# -- kernel variants ----------------------------------------------------------------------
def _divisors(n: int, step: int, top: int) -> list[int]:
    return [d for d in range(step, min(n, top) + 1, step) if n % d == 0]


def matmul_params(m: int, k: int, n: int, fixed: dict[str, Any]) -> dict[str, Any]:
    """The matmul variant of an [m,k]x[k,n] product: the most cores (the kernel's own grid
    rule), then the most MACs per core call, that fit."""
    options = []
    for tm in _divisors(m, 4, 256):
        for tk in _divisors(k, 4, 256):
            for tn in _divisors(n, 4, 256):
                for cols in (4, 3, 2, 1):
                    if (n // tn) % cols == 0:
                        rows, _ = core_grid(m // tm, n // tn, 0, cols, DEVICE_COLUMNS[DEVICE])
                        options.append((rows * cols, tm * tn * tk, tm * tn, tm, tk, tn, cols))
    for *_, tm, tk, tn, cols in sorted(options, reverse=True):
        params = {"M": m, "K": k, "N": n, "tm": tm, "tk": tk, "tn": tn, "columns": cols,
                  "device": DEVICE, "path": VECTOR_PATH, **fixed}
        try:
            MatmulSpec(params)
        except SpecError:
            continue
        return params
    raise PlanError(f"no matmul variant fits [{m}x{k}]·[{k}x{n}] (tiles must divide the shape "
                    "in multiples of 4 and fit a core's 64 KiB)")




def widest(cls: type, base: dict[str, Any], tile: str, tiles: Sequence[int]) -> dict[str, Any]:
    """The stream kernel variant on the most cores (then the largest `tile`) that builds:
    its rows (frames) must split evenly over the cores' tiles."""
    from codegen.wide import device_cores

    for cores in sorted(device_cores(base["device"]), reverse=True):
        for size in sorted(tiles, reverse=True):
            params = {**base, tile: size, "cores": cores}
            try:
                cls(params)
            except SpecError:
                continue
            return params
    raise PlanError(f"no {cls.name} variant fits {base}")


def layernorm_params(rows: int, d: int, fixed: dict[str, Any]) -> dict[str, Any]:
    from codegen.kernels.layernorm import LayerNormSpec

    return widest(LayerNormSpec, {"rows": rows, "d": d, "device": STREAM_DEVICE, **fixed},
                  "tile_rows", _divisors(rows, 1, 64))


class _Planner:
    """Builds the op list and the constant tensors: weights and packed per-layer values."""

    def __init__(self, ckpt: Checkpoint, scales: dict[str, TensorScale]) -> None:
        self.ck, self.dims, self.s = ckpt, ckpt.dims, scales
        self.ops: list[Op] = []
        self.tensors: dict[str, Tensor] = {}
        self.constants: dict[str, np.ndarray] = {}

    def scale(self, name: str) -> float:
        return self.s[name].scale

    def tensor(self, name: str, dtype: str, shape: tuple[int, ...], scale: float | None) -> str:
        self.tensors[name] = Tensor(name, dtype, shape, scale)
        return name

    def act(self, name: str, shape: tuple[int, ...]) -> str:
        return self.tensor(name, "int8", shape, self.scale(name))

    def host(self, name: str, fn: str, inputs: Sequence[str], outputs: Sequence[str],
             **attrs: Any) -> None:
        self.ops.append(Op(name, "host", fn, tuple(inputs), tuple(outputs), attrs=attrs))

    def kernel(self, name: str, fn: str, inputs: Sequence[str], outputs: Sequence[str],
               params: dict[str, Any]) -> None:
        if fn not in KERNELS:
            raise PlanError(f"op {name} needs kernel {fn!r}, which this npukit does not have")
        self.ops.append(Op(name, "kernel", fn, tuple(inputs), tuple(outputs), params=params))

    # -- steps --------------------------------------------------------------------------
    def packed(self, name: str, spec: Any, **values: Any) -> str:
        """The op's per-layer values packed by its kernel into a constant input tensor."""
        try:
            value = spec.pack_params(**values)
        except SpecError as e:
            raise PlanError(f"{name}: {e}") from None
        self.constants[name] = value
        self.tensor(name, str(value.dtype), value.shape, None)
        return name

    def matmul(self, name: str, x: str, w: np.ndarray, bias: np.ndarray | None,
               out_scales: np.ndarray, out: str, out_shape: tuple[int, int],
               gelu: str | None = None) -> None:
        """out = x · w + bias: w [K, N] float, per-column scales; `out_scales` per column.

        With `gelu` (the GELU output's tensor name) the matmul's output step applies the GELU
        table to its int8 result at out's scale (epilogue gelu): `gelu` is its output, and the
        pre-activation `out` never leaves the core; bit for bit the two-kernel chain."""
        a_scale = self.tensors[x].scale
        assert a_scale is not None
        ws = weight_scales(w)
        b = quantise(w, ws[None, :])
        common = float(out_scales[0])
        q_bias = None
        if bias is not None:
            q_bias = np.round(bias / (a_scale * ws))
            if np.abs(q_bias).max() >= 2**31:
                raise PlanError(f"{name}: the bias does not fit int32 at this input scale")
            q_bias = q_bias.astype(np.int64)
        m, k = self.tensors[x].shape
        fixed: dict[str, Any] = dict(RUNTIME)
        extra: dict[str, Any] = {}
        if gelu is not None:
            fixed["epilogue"] = "gelu"
            extra["gelu_table"] = self.gelu_table(f"{name}.gelu", out_shape, common, gelu)
        params = matmul_params(m, k, w.shape[1], fixed)
        # Per-column requantisation also gives each column group its own output scale:
        # (a·ws_j/c_j) = (a·(ws_j·c/c_j)/c) with c the one c_scale the records are made for.
        weight = self.packed(f"{name}.B", MatmulSpec(params), b=b,
                             b_scales=ws * common / out_scales, a_scale=a_scale,
                             c_scale=common, bias=q_bias, **extra)
        if gelu is None:
            self.tensors[out] = Tensor(out, "int8", out_shape, common)
        else:
            out = self.act(gelu, out_shape)
        self.kernel(name, "matmul", [x, weight], [out], params)

    def gelu_table(self, name: str, shape: tuple[int, ...], in_scale: float, out: str
                   ) -> np.ndarray:
        """The GELU table from `in_scale` to out's scale, as the gelu kernel packs it."""
        from codegen.kernels.gelu import GeluSpec

        spec = GeluSpec({"length": int(np.prod(shape)), "device": STREAM_DEVICE, **RUNTIME})
        try:
            return spec.pack_params(in_scale=in_scale, out_scale=self.scale(out))
        except SpecError as e:
            raise PlanError(f"{name}: {e}") from None

    def layernorm(self, name: str, x: str, prefix: str, out: str) -> None:
        from codegen.kernels.layernorm import LayerNormSpec

        rows, d = self.tensors[x].shape
        self.act(out, (rows, d))
        params = layernorm_params(rows, d, dict(RUNTIME))
        values = self.packed(
            f"{name}.P", LayerNormSpec(params), in_scale=self.tensors[x].scale,
            out_scale=self.scale(out), gamma=self.ck[prefix + ".weight"].astype(np.float64),
            beta=self.ck[prefix + ".bias"].astype(np.float64), eps=reference.LN_EPS)
        self.kernel(name, "layernorm", [x, values], [out], params)

    def add(self, name: str, x: str, y: str, out: str) -> None:
        sx, sy = self.tensors[x].scale, self.tensors[y].scale
        assert sx is not None and sy is not None
        self.act(out, self.tensors[x].shape)
        sz = self.scale(out)
        mx, my = (round(s / sz * (1 << ADD_SHIFT)) for s in (sx, sy))
        if not (0 < mx < 1 << 30 and 0 < my < 1 << 30):
            raise PlanError(f"{name}: input/output scales too far apart for the host add")
        self.host(name, "add", [x, y], [out], mx=mx, my=my, shift=ADD_SHIFT)

    def attention(self, p: str, heads: int) -> None:
        """Whole-sequence multi-head attention: the mha kernel, its scale constants packed."""
        from codegen.kernels.mha import MhaSpec

        t, n3 = self.tensors[p + "qkv"].shape
        n = n3 // 3
        scales = {"q_scale": self.scale(p + "q"), "k_scale": self.scale(p + "k"),
                  "v_scale": self.scale(p + "v"), "o_scale": self.scale(p + "attn")}
        self.act(p + "attn", (t, n))
        # packed_qkv: the kernel's DMAs read q, k and v straight out of the fused projection's
        # [t, 3n] output (column offsets 0, n, 2n), so nothing is split on the host.
        params = {"seq_q": t, "seq_k": t, "heads": heads, "head_dim": self.dims.head_dim,
                  "causal": 0, "packed_qkv": 1, "path": VECTOR_PATH, **RUNTIME}
        try:
            spec = MhaSpec(params)
        except SpecError as e:
            raise PlanError(f"{p}mha: {e}") from None
        values = self.packed(p + "mha.P", spec, **scales)
        self.kernel(p + "mha", "mha", [p + "qkv", values], [p + "attn"], params)

    def block(self, i: int) -> None:
        n, t = self.dims.n_audio_state, self.dims.n_audio_ctx
        b, p = f"blocks.{i}.", f"b{i}."
        x = f"b{i - 1}.x2" if i else "x0"
        self.layernorm(p + "ln1", x, b + "attn_ln", p + "ln1")
        w = np.concatenate([self.ck[b + f"attn.{m}.weight"].T for m in ("query", "key", "value")],
                           axis=1).astype(np.float64)
        bias = np.concatenate([self.ck[b + "attn.query.bias"], np.zeros(n),
                               self.ck[b + "attn.value.bias"]]).astype(np.float64)
        groups = np.repeat([self.scale(p + c) for c in "qkv"], n)
        # q, k and v each keep their own calibrated scale through the per-column records
        self.matmul(p + "qkv", p + "ln1", w, bias, groups, p + "qkv", (t, 3 * n))
        self.attention(p, self.dims.n_audio_head)
        self.linear(p + "out", p + "attn", b + "attn.out", p + "out")
        self.add(p + "res1", x, p + "out", p + "x1")
        self.layernorm(p + "ln2", p + "x1", b + "mlp_ln", p + "ln2")
        self.linear(p + "fc1", p + "ln2", b + "mlp.0", p + "fc1", gelu=p + "gelu")
        self.linear(p + "fc2", p + "gelu", b + "mlp.2", p + "fc2")
        self.add(p + "res2", p + "x1", p + "fc2", p + "x2")

    def linear(self, name: str, x: str, prefix: str, out: str, gelu: str | None = None
               ) -> None:
        w = self.ck[prefix + ".weight"].T.astype(np.float64)
        rows = self.tensors[x].shape[0]
        scales = np.full(w.shape[1], self.scale(out))
        self.matmul(name, x, w, self.ck[prefix + ".bias"].astype(np.float64), scales, out,
                    (rows, w.shape[1]), gelu)

    def conv(self, name: str, x: str, stride: int, out: str, gelu: str) -> None:
        frames, width = self.tensors[x].shape
        win = self.tensor(name + ".windows", "int8", (frames // stride, 3 * width),
                          self.tensors[x].scale)
        self.host(name + ".windows", "windows", [x], [win], stride=stride)
        w = reference.conv_matrix(self.ck[name + ".weight"].astype(np.float64))
        scales = np.full(w.shape[1], self.scale(out))
        self.matmul(name, win, w, self.ck[name + ".bias"].astype(np.float64), scales, out,
                    (frames // stride, w.shape[1]), gelu)

    def plan(self) -> Graph:
        from codegen.kernels.mel import MelSpec

        d = self.dims
        mel_params = widest(MelSpec, {"frames": d.n_frames, "n_mels": d.n_mels,
                                      "device": STREAM_DEVICE}, "tile_frames",
                            _divisors(d.n_frames, 1, 32))
        mel = MelSpec(mel_params)
        self.tensor("pcm", "int16", (d.n_samples,), None)
        self.tensor("pcm_padded", "int16", (mel.pcm_len,), None)
        self.tensor("mel_codes", "int16", (d.n_frames, d.n_mels), None)
        self.host("mel_pad", "mel_pad", ["pcm"], ["pcm_padded"])
        self.kernel("mel", "mel", ["pcm_padded"], ["mel_codes"], mel_params)
        self.act("mel", (d.n_frames, d.n_mels))
        self.host("mel_normalise", "mel_normalise", ["mel_codes"], ["mel"],
                  scale=self.scale("mel"))
        self.conv("conv1", "mel", 1, "conv1", gelu="gelu1")
        self.conv("conv2", "gelu1", 2, "conv2", gelu="gelu2")
        pos = self.ck["positional_embedding"].astype(np.float64)
        pos_scale = float(np.abs(pos).max()) / QMAX
        self.constants["pos"] = quantise(pos, pos_scale)
        self.tensor("pos", "int8", pos.shape, pos_scale)
        self.add("pos_add", "gelu2", "pos", "x0")
        for i in range(d.n_audio_layer):
            self.block(i)
        last = f"b{d.n_audio_layer - 1}.x2"
        self.layernorm("ln_post", last, "ln_post", "ln_post")
        self.tensor("features", "float32", self.tensors["ln_post"].shape, None)
        self.host("dequantise", "dequantise", ["ln_post"], ["features"],
                  scale=self.scale("ln_post"))
        return Graph(self.ops, self.tensors, set(self.constants), "pcm", "features")


def plan_encoder(ckpt: Checkpoint, scales: dict[str, TensorScale]
                 ) -> tuple[Graph, dict[str, np.ndarray]]:
    """The encoder's graph and its constant tensors (weights and packed per-layer values)."""
    planner = _Planner(ckpt, scales)
    return planner.plan(), planner.constants
