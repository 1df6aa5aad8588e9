// Layernorm of LN_ROWS rows of LN_D int8 values, the scheme of codegen/kernels/layernorm.py.
#include <stdint.h>

#include "layernorm_params.h"
#include "npukit_fixed.h"

extern "C" void layernorm_i8(const int8_t *x, int8_t *y) {
  for (int r = 0; r < LN_ROWS; ++r) {
    const int8_t *xr = x + r * LN_D;
    int8_t *yr = y + r * LN_D;
    int32_t sum = 0, sumsq = 0;
    for (int j = 0; j < LN_D; ++j) {
      sum += xr[j];
      sumsq += (int32_t)xr[j] * xr[j];
    }
    const int64_t dvar = (int64_t)LN_D * sumsq - (int64_t)sum * sum;
    const uint64_t s = npk_isqrt_u64(((uint64_t)dvar << (2 * LN_SQRT_SHIFT)) + LN_EPS_TERM);
    const int k = npk_log2_u64(s);
    const int64_t rinv = (int64_t)(((uint64_t)1 << (30 + k)) / s);
    for (int j = 0; j < LN_D; ++j) {
      const int64_t c = (int64_t)LN_D * xr[j] - sum;
      const int64_t xhat = npk_round_shift_s64(c * rinv, k + 3);
      yr[j] = npk_sat_i8(npk_round_shift_s64(xhat * ln_gamma[j] + ln_beta[j], LN_OUT_SHIFT));
    }
  }
}
