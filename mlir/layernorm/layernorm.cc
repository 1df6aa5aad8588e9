// Layernorm of LN_ROWS rows of LN_D int8 values, the scheme of codegen/kernels/layernorm.py.
#include <stdint.h>

#include "layernorm_params.h"
#include "npukit_fixed.h"

#ifdef LN_RUNTIME_PARAMS
// The int64 of a (low, high) pair of int32 words of the params input.
static inline int64_t ln_word_pair(const int32_t *w) {
  return (int64_t)(((uint64_t)(uint32_t)w[1] << 32) | (uint32_t)w[0]);
}
#define LN_PARAMS , const int32_t *p
#define LN_EPS ln_word_pair(p + LN_P_EPS)
#define LN_GAMMA(j) p[LN_P_GAMMA + (j)]
#define LN_BETA(j) ln_word_pair(p + LN_P_BETA + 2 * (j))
#else
#define LN_PARAMS
#define LN_EPS LN_EPS_TERM
#define LN_GAMMA(j) ln_gamma[j]
#define LN_BETA(j) ln_beta[j]
#endif

extern "C" void layernorm_i8(const int8_t *x, int8_t *y LN_PARAMS) {
  for (int r = 0; r < LN_ROWS; ++r) {
    const int8_t *xr = x + r * LN_D;
    int8_t *yr = y + r * LN_D;
    int32_t sum = 0, sumsq = 0;
    for (int j = 0; j < LN_D; ++j) {
      sum += xr[j];
      sumsq += (int32_t)xr[j] * xr[j];
    }
    const int64_t dvar = (int64_t)LN_D * sumsq - (int64_t)sum * sum;
    const uint64_t s = npk_isqrt_u64(((uint64_t)dvar << (2 * LN_SQRT_SHIFT)) + LN_EPS);
    const int k = npk_log2_u64(s);
    const int64_t rinv = (int64_t)(((uint64_t)1 << (30 + k)) / s);
    for (int j = 0; j < LN_D; ++j) {
      const int64_t c = (int64_t)LN_D * xr[j] - sum;
      const int64_t xhat = npk_round_shift_s64(c * rinv, k + 3);
      yr[j] = npk_sat_i8(npk_round_shift_s64(xhat * LN_GAMMA(j) + LN_BETA(j), LN_OUT_SHIFT));
    }
  }
}
