"""The hand-picked mutants of the sweep: each one a claim of the README or a docstring, broken.

Keep `find` short but unique in its file; `tests` is the smallest selection that should catch
the bug (the sweep runs it with -x, so put the fastest first).
"""

from __future__ import annotations

from devtools.mutation import Mutant

KEYS = ("tests/test_cache_keys.py",)

MUTANTS: list[Mutant] = [
    # -- cache keys (README "The build": each stage keyed by everything that changes it) -----
    Mutant("key-check-code", "keys", "codegen/pipeline.py",
           'k["check"] = _hash("check", k["render"], code_digest(CHECK_CODE))',
           'k["check"] = _hash("check", k["render"])', KEYS,
           "the check stage's key covers the checks' own code"),
    Mutant("key-lint-code", "keys", "codegen/pipeline.py",
           "                              code_digest(LINT_CODE))",
           "                              )", KEYS,
           "the lint stage's key covers the linters' code"),
    Mutant("key-host-cxx", "keys", "codegen/pipeline.py",
           "cxx.identity, *HOST_FLAGS", "*HOST_FLAGS", KEYS,
           "the host-core key covers the host compiler's identity"),
    Mutant("key-host-flags", "keys", "codegen/pipeline.py",
           "cxx.identity, *HOST_FLAGS,", "cxx.identity,", KEYS,
           "the host-core key covers the host compiler's flags"),
    Mutant("key-bootgen", "keys", "codegen/pipeline.py",
           'self.tc.bootgen.identity if self.tc.bootgen else "no bootgen"', '"no bootgen"', KEYS,
           "the aiecc key covers bootgen's identity"),
    Mutant("key-peano", "keys", "codegen/pipeline.py",
           'k["aie-core"] = _hash("aie-core", k["render"], self.tc.peano.identity,',
           'k["aie-core"] = _hash("aie-core", k["render"],', ("tests/test_pipeline.py",),
           "the aie-core key covers Peano's identity"),
]

NUMERICS_CORE = ("tests/test_core_equivalence.py", "-k", "attention")

MUTANTS += [
    # -- core numerics: the host core must equal the golden model on every input ---------------
    Mutant("att-causal-short", "numerics", "mlir/attention/attention.cc",
           "i + (ATT_NK - ATT_NQ) + 1 : ATT_NK", "i + (ATT_NK - ATT_NQ) : ATT_NK",
           NUMERICS_CORE, "causal: key j is visible to query i when j <= i + (NK - NQ)"),
    Mutant("att-row-div-floor", "numerics", "mlir/attention/attention.cc",
           "ATT_ROW_MULT_SHIFT) + total / 2) / total", "ATT_ROW_MULT_SHIFT)) / total",
           NUMERICS_CORE, "one rounded division per row folds 1/sum(p) into a multiplier"),
    Mutant("att-weight-trunc", "numerics", "mlir/attention/attention.cc",
           "(att_exp2_table[frac] + (1u << (whole - 1))) >> whole",
           "att_exp2_table[frac] >> whole", NUMERICS_CORE,
           "softmax weights rounded to nearest, not truncated"),
    Mutant("att-pv-short", "numerics", "mlir/attention/attention.cc",
           "for (int j = 0; j < visible; ++j) {\n      const int8_t *vj",
           "for (int j = 0; j + 1 < visible; ++j) {\n      const int8_t *vj", NUMERICS_CORE,
           "every visible key's value enters the weighted sum"),
]

MANIFEST = ("tests/test_manifest_consistency.py",)

MUTANTS += [
    # -- the manifest contract (runtime/manifest.py) --------------------------------------------
    Mutant("manifest-order", "manifest", "runtime/manifest.py",
           "[b.seq_index for b in buffers] != list(range(len(buffers)))", "False", MANIFEST,
           "buffers are listed in runtime-sequence order"),
    Mutant("manifest-bo-layout", "manifest", "runtime/manifest.py",
           'd.get("bo_layout") not in (None, m.bo_layout)', "False", MANIFEST,
           "the BO layout is the baseline layout of the buffers"),
    Mutant("manifest-hw-files", "manifest", "runtime/manifest.py",
           'not m.emulation_only and (m.file_for("xclbin") is None', "False and (m.file_for",
           MANIFEST, "a hardware artifact lists its xclbin and insts.bin"),
    Mutant("manifest-bytes", "manifest", "runtime/manifest.py",
           'd.get("bytes", spec.nbytes) != spec.nbytes or', "False or", MANIFEST,
           "a buffer's bytes agree with its shape"),
    Mutant("manifest-arg-index", "manifest", "runtime/manifest.py",
           '"arg_index", spec.arg_index) != spec.arg_index', '"arg_index", 0) is None', MANIFEST,
           "a buffer's kernel argument is 3 + its runtime-sequence index"),
]

ATT_ACCURACY = ("tests/test_attention_accuracy.py", "tests/test_kernels.py", "-k",
                "accuracy and attention")
LN_ACCURACY = ("tests/test_layernorm_accuracy.py", "tests/test_kernels.py", "-k",
               "accuracy and layernorm or near_constant")

MUTANTS += [
    # -- golden and core changed together: only the accuracy targets can catch these ----------
    Mutant("att-out-floor", "accuracy", "mlir/attention/attention.cc",
           "npk_round_shift_s64(acc[d] * row, ATT_OUT_SHIFT)", "((acc[d] * row) >> ATT_OUT_SHIFT)",
           ATT_ACCURACY, "attention's output is rounded half away from zero, not floored",
           also=(("codegen/kernels/attention.py",
                  "o = np.where(prod >= 0, (prod + half) >> out_shift, -((-prod + half) >> "
                  "out_shift))", "o = prod >> out_shift"),)),
    Mutant("ln-out-floor", "accuracy", "mlir/layernorm/layernorm.cc",
           "npk_round_shift_s64(xhat * LN_GAMMA(j) + LN_BETA(j), LN_OUT_SHIFT)",
           "((xhat * LN_GAMMA(j) + LN_BETA(j)) >> LN_OUT_SHIFT)",
           LN_ACCURACY, "layernorm's output is rounded half away from zero, not floored",
           also=(("codegen/kernels/layernorm.py",
                  "y = _round_shift(xhat * g[None, :] + b[None, :], np.int64(OUT_SHIFT))",
                  "y = (xhat * g[None, :] + b[None, :]) >> np.int64(OUT_SHIFT)"),)),
    Mutant("ln-eps-30x", "accuracy", "codegen/kernels/layernorm.py",
           "round(eps / in_scale**2 * d**2", "round(30 * eps / in_scale**2 * d**2",
           LN_ACCURACY, "layernorm adds eps (1e-5) to the variance, golden and core alike"),
]

XRT = ("tests/test_runtime_xrt.py",)

MUTANTS += [
    # -- the XRT backend's baseline layout (NPU_FACTS 5) ----------------------------------------
    Mutant("xrt-groups-swapped", "xrt", "runtime/xrt.py",
           "groups = tuple(FIRST_DATA_ARG + i for i in range(n_buffers))",
           "groups = tuple(FIRST_DATA_ARG + (i + 1) % n_buffers for i in range(n_buffers))", XRT,
           "data BO i is allocated in the group of argument 3+i"),
    Mutant("xrt-bank-tag", "xrt", "runtime/xrt.py",
           "if info.mem_banks[bank] != tag:", "if False:", XRT,
           "the xclbin must connect instr to SRAM and every data buffer to HOST"),
    Mutant("xrt-instr-group", "xrt", "runtime/xrt.py",
           'return BoLayout("baseline", INSTR_ARG, groups)',
           'return BoLayout("baseline", 2, groups)', XRT,
           "the instruction BO is allocated in the group of argument 1"),
]

BUNDLE = ("tests/test_bundle.py", "-k", "rejected or longer")

MUTANTS += [
    # -- bundle verification (runtime/bundle.py; README "What verification checks") ------------
    Mutant("bundle-failing-report", "bundles", "runtime/bundle.py",
           'not (report.get("passed") is True', 'not (True', BUNDLE,
           "verified needs a report that passed"),
    Mutant("bundle-report-backend", "bundles", "runtime/bundle.py",
           'and report.get("backend") == "xrt")', ")", BUNDLE,
           "verified needs a report from the NPU (xrt), not the emulator"),
    Mutant("bundle-emulation-only", "bundles", "runtime/bundle.py",
           "if status == VERIFIED and manifest.emulation_only:", "if False:", BUNDLE,
           "an emulation-only artifact is never verified"),
    Mutant("bundle-report-manifest", "bundles", "runtime/bundle.py",
           'if report.get("manifest_sha256") != manifest_sha:', "if False:", BUNDLE,
           "the report is for this very manifest"),
    Mutant("bundle-duplicates", "bundles", "runtime/bundle.py",
           "if name in seen:", "if False:", BUNDLE, "no member name appears twice"),
    Mutant("bundle-report-presence", "bundles", "runtime/bundle.py",
           'if has_report != (verification.get("report") == REPORT_NAME):', "if False:", BUNDLE,
           "the report is in the bundle exactly when bundle.json names it"),
    Mutant("bundle-longer", "bundles", "runtime/bundle.py",
           "if read > member.size:", "if False:", BUNDLE,
           "no member yields more data than its header declares"),
]

MHA_CORE = ("tests/test_mha.py", "-k", "bit_for_bit or rescale or padding or causal_first")
MHA_VECTOR = ("tests/test_mha_vector.py", "-k", "host_core")

MUTANTS += [
    # -- more core numerics: host core vs golden of the other kernels --------------------------
    Mutant("mm-requant-floor", "numerics", "mlir/matmul/matmul.cc",
           "npk_sat_i8(npk_round_shift_s64(v * mm_mult[q], mm_shift[q]))",
           "npk_sat_i8((v * mm_mult[q]) >> mm_shift[q])",
           ("tests/test_matmul.py", "tests/test_core_path.py"),
           "matmul requantises with round half away from zero"),
    Mutant("ln-xhat-floor", "numerics", "mlir/layernorm/layernorm.cc",
           "npk_round_shift_s64(c * rinv, k + 3)", "((c * rinv) >> (k + 3))",
           ("tests/test_core_equivalence.py", "-k", "layernorm"),
           "layernorm's normalised value is rounded half away from zero"),
    # runtime_params=1 (README "layernorm"/"gelu"): the params input, read right, every tile
    Mutant("ln-param-word-sign", "numerics", "mlir/layernorm/layernorm.cc",
           "| (uint32_t)w[0]);", "| (uint64_t)(int64_t)w[0]);",
           ("tests/test_stream_runtime.py", "-k", "host_core"),
           "a params int64 is its (low, high) word pair, the low word unsigned"),
    Mutant("stream-params-per-tile", "numerics", "mlir/common/stream.mlir.j2",
           '"Produce") }}\n        }\n        {{ aie.give("paramq", "Consume") }}',
           '"Produce") }}\n          {{ aie.give("paramq", "Consume") }}\n        }',
           ("tests/test_stream_runtime.py", "-k", "emulated"),
           "the core holds the params element for all the tiles of an invocation"),
    # Not listed: flooring mha's accumulator rescale (ai[d] * g >> sh). One unit of that
    # Q24-weighted accumulator is 2^-24 LSB of the output, so no output can show it but an exact
    # tie: a sweep found it surviving every output-level test, as it must.
    Mutant("mha-weight-trunc", "numerics", "mlir/mha/mha.cc",
           "(((uint64_t)e + (((uint64_t)1 << whole) >> 1)) >> whole)",
           "((uint64_t)e >> whole)", MHA_CORE, "mha's softmax weights are rounded to nearest"),
    Mutant("mha-params-word", "numerics", "mlir/mha/mha.cc",
           "const int32_t at = 4 * w + i;", "const int32_t at = w + i;",
           ("tests/test_mha_runtime.py", "-k", "host_core or serves"),
           "mha's core reads P's constants as the int32 words pack_params writes"),
    # path=vector (README "mha"): the mmul operands walk the blocked layouts, the digit sums are
    # folded before a rescale, and the cost model counts the scalar work the vector path adds.
    Mutant("mha-vector-depth-stride", "numerics", "mlir/mha/mha_vector.h",
           "pq += kGroups * Mmul::size_B;", "pq += Mmul::size_B;", MHA_VECTOR,
           "mha's vector QK^T takes Q^T's depth blocks of the row group, tq/8 blocks apart"),
    Mutant("mha-vector-q-untransposed", "numerics", "mlir/mha/mha.cc",
           "(d % 8) * 8 + i % 8;", "(i % 8) * 8 + d % 8;", MHA_VECTOR,
           "mha_load_q stores Q transposed (8 depth x 8 query blocks) on the vector path"),
    Mutant("mha-vector-no-fold", "numerics", "mlir/mha/mha.cc",
           "if (*m != MHA_NONE && mt > *m) mha_fold_row(ai, sums, (unsigned)i);", "",
           MHA_VECTOR, "a row's digit sums are folded into its int64 row before it is rescaled"),
    Mutant("mha-vector-digit-radix", "numerics", "mlir/mha/mha_vector.h",
           "radix.set((int16)-(1 << MHA_DIGIT_BITS), l);", "radix.set((int16)-(1 << 6), l);",
           MHA_VECTOR, "a weight's digits are 7 bits: digit_k = q_k - 2^7 q_(k+1)"),
    Mutant("mha-vector-digits-free", "cost", "codegen/kernels/mha.py",
           "+ rows_done * self.tk // DIGIT_LANES * DIGIT_VECTOR_CYCLES", "",
           ("tests/test_mha_vector.py", "-k", "workload"),
           "mha path=vector's workload counts the vector digit split's cycles"),
    # Swapped, not shifted: every qkv byte is still read, so the static checks pass.
    Mutant("mha-packed-kv-swap", "numerics", "codegen/kernels/mha.py",
           "(self.width, 2 * self.width) if self.packed_qkv", "(2 * self.width, self.width) if "
           "self.packed_qkv", ("tests/test_mha_packed.py", "-k", "emulated"),
           "packed_qkv=1 reads k from qkv's middle third, v from its last (offsets n, 2n)"),
    # -- the manifest's own integrity and the cache's ----------------------------------------
    Mutant("manifest-content-hash", "manifest", "runtime/manifest.py",
           "if d.get(CONTENT_KEY) != content_digest(d):", "if False:",
           ("tests/test_manifest.py",), "an edited manifest.json is refused (its own hash)"),
    Mutant("cache-entry-trusted", "keys", "codegen/pipeline.py",
           "return bool(recorded == _entry_sums(entry))", "return True",
           ("tests/test_pipeline.py",),
           "a cache entry is used only if its files still have their recorded hashes"),
    # -- more of the XRT backend ---------------------------------------------------------------
    Mutant("xrt-ninstr-bytes", "xrt", "runtime/xrt.py",
           "self.run_handle.set_arg(2, self.n_words)",
           "self.run_handle.set_arg(2, self.n_words * 4)", XRT,
           "ninstr is passed in 32-bit words (NPU_FACTS 5)"),
    Mutant("xrt-state-unchecked", "xrt", "runtime/xrt.py",
           "if int(state) != COMPLETED:", "if False:", XRT,
           "any state but COMPLETED fails before outputs are read"),
    Mutant("xrt-no-sync-back", "xrt", "runtime/xrt.py",
           "            bo.sync(self._from_device, nbytes, 0)", "            pass", XRT,
           "outputs are synced from the device before they are read"),
]

MUTANTS += [
    # -- matmul runtime_params=1: the core decodes the records pack_params writes --------------
    Mutant("mm-record-byte-order", "numerics", "mlir/matmul/matmul_records.h",
           "k0 + 1, j) << 8 |\n                   mm_rec_byte(rec, k0 + 2, j) << 16",
           "k0 + 1, j) << 16 |\n                   mm_rec_byte(rec, k0 + 2, j) << 8",
           ("tests/test_matmul_runtime.py", "-k", "host_core"),
           "a record's multiplier and bias are int32 little-endian bytes"),
    Mutant("mm-gelu-table-index", "numerics", "mlir/matmul/matmul_records.h",
           "rec[MM_REC_TABLE + (int)v + 128]", "rec[MM_REC_TABLE + (int)v + 127]",
           ("tests/test_matmul_epilogue.py", "-k", "host_core"),
           "epilogue=gelu maps the pre-activation v to T[v + 128] of the record tile's table"),
]

TOKENS = ("tests/test_checks.py", "-k", "token_rule")
TOKEN_FAULTS = ("tests/emulator/test_faults.py", "-k", "token or queued")

MUTANTS += [
    # -- task-completion tokens (runtime/emulator/tokens.py; README "The emulator") ----------
    Mutant("mha-qk-token", "tokens", "mlir/mha/design.mlir.j2",
           "{{ c }}, id = {{ t.id }} : i64} : {{ aie.memref(t.elems) }}",
           "{{ c }}, id = {{ t.id }} : i64, issue_token = true} : {{ aie.memref(t.elems) }}",
           TOKENS, "mha's Q, K and V transfers issue no token: nobody waits for them, and a "
           "left-over token on @qk would end the next invocation's wait for P early"),
    Mutant("matmul-a-token", "tokens", "codegen/kernels/matmul.py",
           '"id": 1 + 2 * i, "token": False,', '"id": 1 + 2 * i, "token": True,', TOKENS,
           "matmul's A transfers issue no token (only the waited C transfers have one)"),
    Mutant("emu-token-leftover", "tokens", "runtime/emulator/host.py",
           "elif self.to_fifo and t.token and not t.taken:", "elif False:", TOKEN_FAULTS,
           "the emulator fails a run that leaves a token nobody takes"),
    Mutant("emu-queue-depth", "tokens", "runtime/emulator/host.py",
           "if len(in_flight) >= TASK_QUEUE_DEPTH:", "if len(in_flight) > TASK_QUEUE_DEPTH:",
           TOKEN_FAULTS, "a shim channel's task queue holds 4 transfers"),
    Mutant("matmul-group-queue", "tokens", "codegen/kernels/matmul.py",
           "MAX_GROUP = min((SHIM_BDS - 1) // 2, TASK_QUEUE_DEPTH)",
           "MAX_GROUP = (SHIM_BDS - 1) // 2", ("tests/test_emulated.py", "-k", "whole_array"),
           "matmul issues at most 4 row blocks per column before its waits (the task queue)"),
]

MUTANTS += [
    # -- stream kernels over several cores (codegen/wide.py) -----------------------------------
    Mutant("wide-join-order", "numerics", "mlir/common/stream_wide.mlir.j2",
           "[[% for r in range(core_rows) %]{{ r * out_tile }}",
           "[[% for r in range(core_rows) %]{{ (core_rows - 1 - r) * out_tile }}",
           ("tests/test_stream_wide.py", "-k", "equals_golden and gelu-0-2-npu1_1col"),
           "a column's mem tile joins its cores' outputs back in tile order"),
    Mutant("wide-column-output", "numerics", "codegen/wide.py",
           'steps.append(linear(self.out_name, f"outq{c}", 0, c * out,',
           'steps.append(linear(self.out_name, f"outq{c}", 0, 0,',
           ("tests/test_stream_wide.py", "-k", "static_checks and gelu-0-4-npu1"),
           "column c's shim writes part c of the output"),
]
