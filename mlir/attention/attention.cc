// One tile of int8 scaled dot-product attention, the scheme of codegen/kernels/attention.py.
// Scalar C++: the reference path for Peano (aie2) and the host build alike.
#include <stdint.h>

#include "attention_params.h"
#include "npukit_fixed.h"

extern "C" void attention_i8(const int8_t *qkv, int8_t *out) {
  const int8_t *q = qkv;
  const int8_t *k = qkv + ATT_NQ * ATT_D;
  const int8_t *v = k + ATT_NK * ATT_D;
  int32_t score[ATT_NK];
  uint32_t weight[ATT_NK];
  int64_t acc[ATT_D];

  for (int i = 0; i < ATT_NQ; ++i) {
    const int8_t *qi = q + i * ATT_D;
    // Causal: key j is visible to query i when j <= i + (NK - NQ).
    const int visible = ATT_CAUSAL ? i + (ATT_NK - ATT_NQ) + 1 : ATT_NK;
    int32_t best = INT32_MIN;
    for (int j = 0; j < visible; ++j) {
      const int8_t *kj = k + j * ATT_D;
      int32_t s = 0;
      for (int d = 0; d < ATT_D; ++d) s += (int32_t)qi[d] * (int32_t)kj[d];
      score[j] = s;
      if (s > best) best = s;
    }

    uint64_t total = 0;
    for (int j = 0; j < visible; ++j) {
      const int64_t t = ((int64_t)(best - score[j]) * ATT_LOGIT_MULT +
                         ((int64_t)1 << (ATT_LOGIT_SHIFT - 1))) >> ATT_LOGIT_SHIFT;
      const int64_t whole = t >> ATT_EXP2_FRAC_BITS;
      const int frac = (int)(t & ((1 << ATT_EXP2_FRAC_BITS) - 1));
      // Rounded to nearest, not truncated: truncation biases every small weight down.
      uint32_t p = 0;
      if (whole == 0) {
        p = att_exp2_table[frac];
      } else if (whole <= ATT_P_BITS) {
        p = (att_exp2_table[frac] + (1u << (whole - 1))) >> whole;
      }
      weight[j] = p;
      total += p;
    }

    for (int d = 0; d < ATT_D; ++d) acc[d] = 0;
    for (int j = 0; j < visible; ++j) {
      const int8_t *vj = v + j * ATT_D;
      const int64_t p = weight[j];
      for (int d = 0; d < ATT_D; ++d) acc[d] += p * (int64_t)vj[d];
    }

    // total >= 2^24: the row maximum contributes exactly 2^24.
    const int64_t row = (int64_t)(((uint64_t)ATT_OUT_MULT << ATT_ROW_MULT_SHIFT) + total / 2) / total;
    int8_t *oi = out + i * ATT_D;
    for (int d = 0; d < ATT_D; ++d) oi[d] = npk_sat_i8(npk_round_shift_s64(acc[d] * row, ATT_OUT_SHIFT));
  }
}
