// Whole-sequence multi-head attention, one query block per core: the online softmax of
// codegen/kernels/mha.py. Scalar C++: the reference path for Peano (aie2) and the host alike;
// with NPUKIT_VECTOR=1 (path=vector) QK^T and PV run on AIE API mmul blocks (mha_vector.h), the
// Q/K and V elements arrive blocked, Q is stored transposed, and acc holds int32 digit sums
// beside its int64 rows (mha.py, "Vector path"); the softmax stays the scalar code below.
// The state buffer holds [query start row, m[TQ], l[TQ]] as int64; acc is [TQ][D] int64 (on
// the vector path followed by the digit sums, mha_vector.h).
// With runtime parameters (MHA_RUNTIME_PARAMS) the state then holds the three scale-derived
// constants, copied from the params element once per invocation by mha_params.
#include <stdint.h>

#include "mha_params.h"
#include "npukit_fixed.h"

#if defined(NPUKIT_VECTOR) && NPUKIT_VECTOR
#include "mha_vector.h"
#define MHA_VECTOR 1
#else
#define MHA_VECTOR 0
#endif

#if MHA_VECTOR
#define MHA_ACC_LEN (3 * MHA_TQ * MHA_D)  // int64 rows, then MHA_DIGITS x TQ x D int32 sums
#else
#define MHA_ACC_LEN (MHA_TQ * MHA_D)
#endif

// Byte offset of (row, column) of a Q/K element of TK rows x D bytes as the core receives it:
// row-major, or on the vector path blocked [TK/R][D/8][R][8] by the mem tile.
static inline int32_t mha_elem_at(int32_t row, int32_t col) {
#if MHA_VECTOR
  return (row / MHA_R) * MHA_R * MHA_D + (col / 8) * MHA_R * 8 + (row % MHA_R) * 8 + col % 8;
#else
  return row * MHA_D + col;
#endif
}

#define MHA_NONE INT64_MIN

// The block of pass g the core on row r holds: reversed on every other pass of a column, so
// each row alternates early and late query rows (the balance of a causal mask).
static inline int32_t mha_block(int32_t g, int32_t r) {
  return (g / MHA_COLUMNS) % 2 ? MHA_ROWS - 1 - r : r;
}

#ifdef MHA_RUNTIME_PARAMS
// Little-endian int32 word w of the params element (codegen/kernels/mha.py, P_LAYOUT).
static inline int64_t mha_word(const int8_t *elem, int w) {
  const uint8_t *b = (const uint8_t *)elem;
  uint32_t word = 0;
  for (int32_t i = 0; i < 4; ++i) {
    const int32_t at = 4 * w + i;  // byte of the row-major element P was packed as
    word |= (uint32_t)b[mha_elem_at(at / MHA_D, at % MHA_D)] << (8 * i);
  }
  return (int32_t)word;
}

// The params element: logit multiplier, logit shift, output multiplier into the state.
extern "C" void mha_params(const int8_t *elem, int64_t *state) {
  for (int w = 0; w < 3; ++w) state[MHA_PRM + w] = mha_word(elem, w);
}

static inline int64_t mha_logit_mult(const int64_t *state) { return state[MHA_PRM]; }
static inline int32_t mha_logit_shift(const int64_t *state) { return (int32_t)state[MHA_PRM + 1]; }
static inline int64_t mha_out_mult(const int64_t *state) { return state[MHA_PRM + 2]; }
#else
static inline int64_t mha_logit_mult(const int64_t *) { return MHA_LOGIT_MULT; }
static inline int32_t mha_logit_shift(const int64_t *) { return MHA_LOGIT_SHIFT; }
static inline int64_t mha_out_mult(const int64_t *) { return MHA_OUT_MULT; }
#endif

// The part of Q/K element e (one K tile's bytes of the pass's Q rows) that is this core's: row
// major, or on the vector path transposed into [D/8][TQ/8][8][8] (depth x query blocks).
extern "C" void mha_load_q(const int8_t *elem, int8_t *q, int32_t e, int32_t g, int32_t r) {
  const int32_t lo = mha_block(g, r) * MHA_TQ, hi = lo + MHA_TQ;  // pass rows of this core
  const int32_t from = e * MHA_TK, to = from + MHA_TK;            // pass rows of element e
  for (int32_t row = (lo > from ? lo : from); row < (hi < to ? hi : to); ++row) {
    const int32_t i = row - lo;
    for (int32_t d = 0; d < MHA_D; ++d) {
#if MHA_VECTOR
      const int32_t at = ((d / 8) * (MHA_TQ / 8) + i / 8) * 64 + (d % 8) * 8 + i % 8;
#else
      const int32_t at = i * MHA_D + d;
#endif
      q[at] = elem[mha_elem_at(row - from, d)];
    }
  }
}

// A new pass g on the core of row r: its block's first query row, empty rows. Odd heads take
// their passes in reverse order (codegen/kernels/mha.py, pass_head_start).
extern "C" void mha_begin(int64_t *state, int64_t *acc, int32_t g, int32_t r) {
  const int32_t h = g / MHA_PASSES_PER_HEAD;
  const int32_t i = h % 2 ? MHA_PASSES_PER_HEAD - 1 - g % MHA_PASSES_PER_HEAD
                          : g % MHA_PASSES_PER_HEAD;
  const int32_t first = i * MHA_PASS_ROWS < MHA_SEQ_Q - MHA_PASS_ROWS ? i * MHA_PASS_ROWS
                                                                       : MHA_SEQ_Q - MHA_PASS_ROWS;
  state[0] = first + mha_block(g, r) * MHA_TQ;
  for (int i2 = 0; i2 < MHA_TQ; ++i2) {
    state[1 + i2] = MHA_NONE;
    state[1 + MHA_TQ + i2] = 0;
  }
  for (int i2 = 0; i2 < MHA_ACC_LEN; ++i2) acc[i2] = 0;
}

// QK^T for one query row against a tile: score[j] = q . k_j (the swappable vector product).
static inline void mha_qk_row(const int8_t *qi, const int8_t *k, int32_t *score) {
  for (int j = 0; j < MHA_TK; ++j) {
    const int8_t *kj = k + j * MHA_D;
    int32_t s = 0;
    for (int d = 0; d < MHA_D; ++d) s += (int32_t)qi[d] * (int32_t)kj[d];
    score[j] = s;
  }
}

// PV for one query row: acc[d] += sum_j p_j v_jd (the swappable vector product).
static inline void mha_pv_row(const uint32_t *p, const int8_t *v, int64_t *acc) {
  for (int j = 0; j < MHA_TK; ++j) {
    const int64_t pj = p[j];
    if (pj == 0) continue;
    const int8_t *vj = v + j * MHA_D;
    for (int d = 0; d < MHA_D; ++d) acc[d] += pj * (int64_t)vj[d];
  }
}

// The scaled scores x of one query row against a tile and their maximum (MHA_NONE when no key
// is allowed). score[j * stride] is q . k_j (x may be score itself, stride 1); only keys in
// [first_key, last_key) are scaled.
static inline int64_t mha_row_max(const int32_t *score, int32_t stride, int32_t *x,
                                  int32_t first_key, int32_t last_key, int64_t lmult,
                                  int32_t lshift) {
  int64_t mt = MHA_NONE;
  for (int j = first_key; j < last_key; ++j) {
    const int64_t xj =
        ((int64_t)score[j * stride] * lmult + ((int64_t)1 << (lshift - 1))) >> lshift;
    x[j] = (int32_t)xj;
    if (xj > mt) mt = xj;
  }
  return mt;
}

// The running maximum m becomes mt if larger, l and the row's accumulator ai rescaled to it.
static inline void mha_row_rescale(int64_t mt, int64_t *m, int64_t *l, int64_t *ai) {
  if (*m == MHA_NONE) {
    *m = mt;
  } else if (mt > *m) {
    const int64_t u = mt - *m;
    const int64_t g = ((int64_t)mha_exp2_table[u & ((1 << MHA_EXP2_FRAC_BITS) - 1)] +
                       ((int64_t)1 << (MHA_P_BITS - MHA_RESCALE_BITS - 1))) >>
                      (MHA_P_BITS - MHA_RESCALE_BITS);
    const int64_t sh = MHA_RESCALE_BITS + (u >> MHA_EXP2_FRAC_BITS);
    if (sh <= MHA_MAX_SHIFT) {
      *l = npk_round_shift_s64(*l * g, (int)sh);
      for (int d = 0; d < MHA_D; ++d) ai[d] = npk_round_shift_s64(ai[d] * g, (int)sh);
    } else {
      *l = 0;
      for (int d = 0; d < MHA_D; ++d) ai[d] = 0;
    }
    *m = mt;
  }
}

// The weights of the row's keys (0 outside [first_key, last_key)) and their sum: key j's at
// p[(j / 8) * block + j % 8] (block 8: p[j]; the vector path's A-operand order has more).
static inline int64_t mha_row_weights(const int32_t *x, int32_t first_key, int32_t last_key,
                                      int64_t m, uint32_t *p, int32_t block) {
  int64_t sum = 0;
  for (int j = 0; j < MHA_TK; ++j) {
    uint32_t pj = 0;
    if (j >= first_key && j < last_key) {
      const int64_t tt = m - x[j];
      const int64_t whole = tt >> MHA_EXP2_FRAC_BITS;
      if (whole < 32) {
        const uint32_t e = mha_exp2_table[tt & ((1 << MHA_EXP2_FRAC_BITS) - 1)];
        pj = (uint32_t)(((uint64_t)e + (((uint64_t)1 << whole) >> 1)) >> whole);
      }
    }
    p[(j / 8) * block + j % 8] = pj;
    sum += pj;
  }
  return sum;
}

// The keys [first_key, last_key) of the tile that query row q0 + i may see (none when
// last_key <= first_key). Causal: key ks + j is visible to query q0 + i when
// ks + j <= q0 + i + (SEQ_K - SEQ_Q).
static inline int32_t mha_last_key(int32_t q0, int32_t i, int32_t ks) {
  int32_t last_key = MHA_TK;
  if (MHA_CAUSAL) {
    const int32_t lim = q0 + i + (MHA_SEQ_K - MHA_SEQ_Q) - ks + 1;
    last_key = lim < MHA_TK ? lim : MHA_TK;
  }
  return last_key;
}

// One K/V tile (tile t of the head) into every row of the block.
extern "C" void mha_tile(const int8_t *q, const int8_t *k, const int8_t *v, int64_t *state,
                         int64_t *acc, int32_t t) {
  const int32_t ks = t < MHA_KH ? t * MHA_TK : MHA_SEQ_K - (MHA_NT - t) * MHA_TK;
  // Keys below KH*TK in the second run repeat keys of the first: zero weight.
  const int32_t fresh = (t < MHA_KH ? t : MHA_KH) * MHA_TK - ks;
  const int32_t first_key = fresh > 0 ? fresh : 0;
  const int32_t q0 = (int32_t)state[0];
  const int64_t lmult = mha_logit_mult(state);
  const int32_t lshift = mha_logit_shift(state);
#if MHA_VECTOR
  // Per group of 8 query rows: the scores of every key at once (mmul), the softmax row by row
  // with the weights stored in the A-operand order, their int8 digits (vector), then PV for the
  // group (mmul) into the digit sums. A group none of whose rows sees a key of the tile (its
  // last row sees the most) is skipped.
  alignas(64) int32_t score[MHA_TK * 8];
  alignas(64) uint32_t pw[8 * MHA_TK];
  alignas(64) int8_t digits[MHA_DIGITS * 8 * MHA_TK];
  int32_t x[MHA_TK];
  int32_t *sums = mha_digit_sums(acc);
  for (int qg = 0; qg < MHA_TQ / 8; ++qg) {
    if (mha_last_key(q0, qg * 8 + 7, ks) <= first_key) continue;
    mha_qk_group_vector(q, k, score, (unsigned)qg);
    for (int ii = 0; ii < 8; ++ii) {
      const int i = qg * 8 + ii;
      const int32_t last_key = mha_last_key(q0, i, ks);
      uint32_t *pi = pw + npukit_mha::weight_at((unsigned)ii, 0);
      if (last_key <= first_key) {
        for (int j = 0; j < MHA_TK; ++j) pi[(j / 8) * npukit_mha::Mmul::size_A + j % 8] = 0;
        continue;
      }
      int64_t *m = state + 1 + i, *l = state + 1 + MHA_TQ + i, *ai = acc + i * MHA_D;
      const int64_t mt = mha_row_max(score + ii, 8, x, first_key, last_key, lmult, lshift);
      if (*m != MHA_NONE && mt > *m) mha_fold_row(ai, sums, (unsigned)i);  // exact value first
      mha_row_rescale(mt, m, l, ai);
      *l += mha_row_weights(x, first_key, last_key, *m, pi, npukit_mha::Mmul::size_A);
    }
    mha_group_digits_vector(pw, digits);
    mha_pv_group_vector(digits, v, sums, (unsigned)qg);
  }
#else
  int32_t x[MHA_TK];
  uint32_t p[MHA_TK];
  for (int i = 0; i < MHA_TQ; ++i) {
    const int32_t last_key = mha_last_key(q0, i, ks);
    if (last_key <= first_key) continue;
    mha_qk_row(q + i * MHA_D, k, x);
    int64_t *m = state + 1 + i, *l = state + 1 + MHA_TQ + i, *ai = acc + i * MHA_D;
    mha_row_rescale(mha_row_max(x, 1, x, first_key, last_key, lmult, lshift), m, l, ai);
    *l += mha_row_weights(x, first_key, last_key, *m, p, 8);
    mha_pv_row(p, v, ai);
  }
#endif
}

// The block's output: o = round(acc * round(Mo * 2^32 / l) / 2^48), saturated.
extern "C" void mha_end(const int64_t *state, const int64_t *acc, int8_t *o) {
  const int64_t mo = mha_out_mult(state);
  for (int i = 0; i < MHA_TQ; ++i) {
    const int64_t l = state[1 + MHA_TQ + i];  // >= 2^24: the row maximum contributes 2^24
    const int64_t r = ((mo << MHA_ROW_MULT_SHIFT) + l / 2) / l;
    for (int d = 0; d < MHA_D; ++d) {
#if MHA_VECTOR
      const int64_t a = mha_acc_value(acc, (unsigned)i, (unsigned)d);
#else
      const int64_t a = acc[i * MHA_D + d];
#endif
      o[i * MHA_D + d] = npk_sat_i8(npk_round_shift_s64(a * r, MHA_OUT_SHIFT));
    }
  }
}
